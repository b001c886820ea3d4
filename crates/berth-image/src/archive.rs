//! `docker save` tarballs: `manifest.json` (with `Config`, `RepoTags`,
//! `Layers` paths, as docker 1.10+ and `podman save` write it, including
//! docker 25's OCI-layout-inside-a-tar), and the legacy format before it
//! (`repositories` plus `<id>/json` and `<id>/layer.tar` per layer). Each
//! image becomes an OCI manifest in the store.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::{json, Value};

use crate::digest::{Digest, Hashing};
use crate::error::{Error, Result};
use crate::store::{media, Descriptor, Image, Manifest, Store};
use crate::unpack::Compression;

/// A member of the archive: where its bytes are.
#[derive(Clone, Copy)]
struct Member {
    offset: u64,
    size: u64,
}

/// The archive's members by normalised path, symlinks resolved.
struct Members {
    file: File,
    path: String,
    map: HashMap<String, Member>,
}

impl Members {
    fn scan(path: &Path) -> Result<Members> {
        let f = File::open(path).map_err(|e| Error::io("open", path, e))?;
        let mut ar = tar::Archive::new(f);
        let mut map = HashMap::new();
        let mut links = Vec::new();
        let entries = ar.entries().map_err(|e| Error::io("read", path, e))?;
        for e in entries {
            let e = e.map_err(|e| Error::io("read", path, e))?;
            let name = clean(&String::from_utf8_lossy(&e.path_bytes()));
            match e.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    map.insert(
                        name,
                        Member {
                            offset: e.raw_file_position(),
                            size: e.size(),
                        },
                    );
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Some(t) = e.link_name_bytes() {
                        let t = String::from_utf8_lossy(&t).into_owned();
                        let target = if e.header().entry_type() == tar::EntryType::Symlink {
                            let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                            clean(&format!("{dir}/{t}"))
                        } else {
                            clean(&t)
                        };
                        links.push((name, target));
                    }
                }
                _ => {}
            }
        }
        for _ in 0..4 {
            for (name, target) in &links {
                if let Some(m) = map.get(target).copied() {
                    map.entry(name.clone()).or_insert(m);
                }
            }
        }
        let file = ar.into_inner();
        Ok(Members {
            file,
            path: path.display().to_string(),
            map,
        })
    }

    fn has(&self, name: &str) -> bool {
        self.map.contains_key(&clean(name))
    }

    fn reader(&self, name: &str) -> Result<impl Read + '_> {
        let m = self
            .map
            .get(&clean(name))
            .copied()
            .ok_or_else(|| Error::format(&self.path, format!("no member {name:?}")))?;
        let mut f = &self.file;
        f.seek(SeekFrom::Start(m.offset))
            .map_err(|e| Error::io("seek in", &self.path, e))?;
        Ok(f.take(m.size))
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.reader(name)?
            .read_to_end(&mut v)
            .map_err(|e| Error::io("read", &self.path, e))?;
        Ok(v)
    }

    fn json(&self, name: &str) -> Result<Value> {
        serde_json::from_slice(&self.read(name)?)
            .map_err(|e| Error::format(format!("{}: {name}", self.path), e.to_string()))
    }
}

/// A member path without `./`, leading `/` or `..` climbing out.
fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

/// Imports every image of the archive at `path`. Each is tagged with its
/// `RepoTags`, or with `name` when given (then the archive must hold one
/// image). Returns the images stored.
pub fn import(store: &Store, path: &Path, name: Option<&str>) -> Result<Vec<Image>> {
    let m = Members::scan(path)?;
    let found = if m.has("manifest.json") {
        from_manifest_json(store, &m)?
    } else if m.has("repositories") {
        from_legacy(store, &m)?
    } else {
        return Err(Error::format(
            path.display().to_string(),
            "not a docker archive: no manifest.json or repositories",
        ));
    };
    if name.is_some() && found.len() != 1 {
        return Err(Error::format(
            path.display().to_string(),
            format!(
                "{} images in the archive: a name fits only one",
                found.len()
            ),
        ));
    }
    let mut images = Vec::new();
    for (digest, tags) in found {
        let tags = match name {
            Some(n) => vec![n.to_string()],
            None => tags,
        };
        for t in &tags {
            store.tag(t, &digest)?;
        }
        let label = tags.first().cloned().unwrap_or_else(|| digest.to_string());
        images.push(store.image_by_digest(&label, &digest)?);
    }
    Ok(images)
}

/// `manifest.json`: one entry per image.
fn from_manifest_json(store: &Store, m: &Members) -> Result<Vec<(Digest, Vec<String>)>> {
    let list = m.json("manifest.json")?;
    let list = list
        .as_array()
        .ok_or_else(|| Error::format(format!("{}: manifest.json", m.path), "expected an array"))?;
    let mut out = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let what = |f: &str| format!("{}: manifest.json[{i}].{f}", m.path);
        let config_path = entry["Config"]
            .as_str()
            .ok_or_else(|| Error::format(what("Config"), "missing"))?;
        let config = m.read(config_path)?;
        let layers: Vec<&str> = entry["Layers"]
            .as_array()
            .ok_or_else(|| Error::format(what("Layers"), "missing"))?
            .iter()
            .map(|l| l.as_str().unwrap_or_default())
            .collect();
        let tags: Vec<String> = entry["RepoTags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let digest = store_image(store, m, &config, &layers, &what("Layers"))?;
        out.push((digest, tags));
    }
    Ok(out)
}

/// The format before docker 1.10: `repositories` names top layer ids;
/// each layer's `json` names its parent and holds the v1 image config.
fn from_legacy(store: &Store, m: &Members) -> Result<Vec<(Digest, Vec<String>)>> {
    let repos = m.json("repositories")?;
    let mut by_top: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (repo, tags) in repos.as_object().into_iter().flatten() {
        for (tag, id) in tags.as_object().into_iter().flatten() {
            if let Some(id) = id.as_str() {
                by_top
                    .entry(id.to_string())
                    .or_default()
                    .push(format!("{repo}:{tag}"));
            }
        }
    }
    let mut out = Vec::new();
    for (top, tags) in by_top {
        let top_json = m.json(&format!("{top}/json"))?;
        let mut chain = vec![top.clone()];
        let mut cur = top_json.clone();
        while let Some(parent) = cur["parent"].as_str().filter(|p| !p.is_empty()) {
            if chain.len() > 256 {
                return Err(Error::format(
                    format!("{}: {top}/json", m.path),
                    "parent chain too long",
                ));
            }
            chain.push(parent.to_string());
            cur = m.json(&format!("{parent}/json"))?;
        }
        chain.reverse();
        let layers: Vec<String> = chain.iter().map(|id| format!("{id}/layer.tar")).collect();
        let mut diff_ids = Vec::new();
        for l in &layers {
            let mut h = Hashing::new(m.reader(l)?);
            h.drain().map_err(|e| Error::io("read", &m.path, e))?;
            diff_ids.push(h.finish().0.to_string());
        }
        let config = json!({
            "architecture": top_json["architecture"].as_str().unwrap_or("amd64"),
            "os": top_json["os"].as_str().unwrap_or("linux"),
            "created": top_json["created"],
            "author": top_json["author"],
            "config": top_json["config"],
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": chain.iter().map(|_| json!({"created_by": "imported from a legacy docker archive"})).collect::<Vec<_>>(),
        });
        let config = serde_json::to_vec(&config).unwrap_or_default();
        let refs: Vec<&str> = layers.iter().map(String::as_str).collect();
        let digest = store_image(
            store,
            m,
            &config,
            &refs,
            &format!("{}: repositories", m.path),
        )?;
        out.push((digest, tags));
    }
    Ok(out)
}

/// Stores the config, the layers as found (uncompressed tars, or
/// compressed ones in newer archives) and an OCI manifest for them;
/// returns the manifest's digest. Uncompressed layers are checked against
/// the config's diff_ids here; compressed ones when they are unpacked.
fn store_image(
    store: &Store,
    m: &Members,
    config: &[u8],
    layers: &[&str],
    what: &str,
) -> Result<Digest> {
    let cfg: Value = serde_json::from_slice(config)
        .map_err(|e| Error::format(format!("{what}: config"), e.to_string()))?;
    let diff_ids: Vec<&str> = cfg["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if diff_ids.len() != layers.len() {
        return Err(Error::format(
            format!("{what}: config rootfs.diff_ids"),
            format!("{} diff_ids for {} layers", diff_ids.len(), layers.len()),
        ));
    }
    let config_desc = store.put_json(media::CONFIG, config)?;
    let mut layer_descs = Vec::new();
    for (l, diff_id) in layers.iter().zip(&diff_ids) {
        let mut head = [0u8; 8];
        let n = m
            .reader(l)?
            .read(&mut head)
            .map_err(|e| Error::io("read", &m.path, e))?;
        let c = Compression::sniff(&head[..n]);
        let expected = match c {
            Compression::None => Some(Digest::parse(diff_id)?),
            _ => None,
        };
        let (digest, size) =
            store.put_blob(m.reader(l)?, expected.as_ref(), &format!("{}: {l}", m.path))?;
        layer_descs.push(Descriptor {
            media_type: match c {
                Compression::None => media::LAYER_TAR.into(),
                Compression::Gzip => media::LAYER_GZIP.into(),
                Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd".into(),
            },
            digest: digest.to_string(),
            size,
            platform: None,
            annotations: BTreeMap::new(),
        });
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::MANIFEST.into()),
        config: config_desc,
        layers: layer_descs,
        annotations: BTreeMap::new(),
    };
    let bytes = serde_json::to_vec(&manifest).unwrap_or_default();
    let d = store.put_json(media::MANIFEST, &bytes)?;
    Digest::parse(&d.digest)
}
