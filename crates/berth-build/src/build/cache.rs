//! The build cache: what a file-system step (RUN, COPY, ADD, WORKDIR)
//! produced, by a key over everything that decides it (the parent's key,
//! the instruction after substitution, the build args in scope, the
//! content and metadata of the files it copies). Entries are small JSON
//! files under `<store>/build-cache/`; the layers they name are ordinary
//! store blobs, so an entry whose blob the garbage collector removed is a
//! miss, never an error.

use std::fs;
use std::io::Write as _;
use std::path::PathBuf;

use berth_image::store::{Descriptor, Store};
use berth_image::Digest;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{BuildError, Result};

/// A chain of cache keys: each step's key hashes its parent's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Key(pub String);

impl Key {
    pub fn root(what: &str) -> Key {
        Key::hash(&["base", what])
    }

    pub fn child(&self, parts: &[&str]) -> Key {
        let mut all = vec![self.0.as_str()];
        all.extend_from_slice(parts);
        Key::hash(&all)
    }

    fn hash(parts: &[&str]) -> Key {
        let mut h = Sha256::new();
        for p in parts {
            // Length-prefixed, so no two part lists hash alike.
            h.update((p.len() as u64).to_le_bytes());
            h.update(p.as_bytes());
        }
        Key(hex(&h.finalize()))
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What a step produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// The layer, or none when the step changed nothing.
    pub layer: Option<(Descriptor, String)>,
    /// The history entry's time.
    pub created: String,
}

pub(crate) struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn open(store: &Store) -> Result<Cache> {
        let dir = store.root().join("build-cache");
        fs::create_dir_all(&dir).map_err(|e| BuildError::io("create", &dir, e))?;
        Ok(Cache { dir })
    }

    /// The entry for `key`, when it and its layer blob are there.
    pub fn get(&self, store: &Store, key: &Key) -> Option<Entry> {
        let bytes = fs::read(self.dir.join(&key.0)).ok()?;
        let e: Entry = serde_json::from_slice(&bytes).ok()?;
        if let Some((desc, diff_id)) = &e.layer {
            let d = Digest::parse(&desc.digest).ok()?;
            Digest::parse(diff_id).ok()?;
            if !store.has_blob(&d) {
                return None;
            }
        }
        Some(e)
    }

    pub fn put(&self, key: &Key, e: &Entry) -> Result<()> {
        let body = serde_json::to_vec(e).unwrap_or_default();
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)
            .map_err(|err| BuildError::io("create a temp file in", &self.dir, err))?;
        tmp.write_all(&body)
            .map_err(|err| BuildError::io("write", tmp.path(), err))?;
        let p = self.dir.join(&key.0);
        tmp.persist(&p)
            .map_err(|err| BuildError::io("rename into", &p, err.error))?;
        Ok(())
    }
}
