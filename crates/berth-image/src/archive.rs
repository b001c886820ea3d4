//! `docker save` tarballs: `manifest.json` (with `Config`, `RepoTags`,
//! `Layers` paths, as docker 1.10+ and `podman save` write it, including
//! docker 25's OCI-layout-inside-a-tar), and the legacy format before it
//! (`repositories` plus `<id>/json` and `<id>/layer.tar` per layer). Each
//! image becomes an OCI manifest in the store.
//!
//! Export writes the docker 1.10+ form: `manifest.json`, the config as
//! `<hex>.json`, each layer uncompressed as `<diff-id hex>/layer.tar`, and
//! `repositories`. `docker load` reads only `manifest.json` and the files
//! it names when `manifest.json` is there, so the legacy per-layer `json`
//! and `VERSION` files are not written.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde_json::{json, Value};

use crate::digest::{Digest, Hashing};
use crate::error::{Error, Result};
use crate::store::{media, normalize_ref, Descriptor, Image, Manifest, Store};
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

/// Writes `images` (each under its name) as a `docker save` archive at
/// `file`. An image named more than once is written once with all its
/// names in `RepoTags`; layers and configs shared by images are written
/// once. Each layer is decompressed from the store and checked against
/// its diff-id on the way. The archive is written next to `file` and
/// renamed over it when complete.
pub fn export(store: &Store, images: &[(String, Image)], file: &Path) -> Result<()> {
    let mut grouped: Vec<(&Image, Vec<String>)> = Vec::new();
    for (name, img) in images {
        let full = normalize_ref(name);
        // RepoTags holds name:tag references only.
        let tag = (!full.contains('@')).then_some(full);
        match grouped.iter_mut().find(|(i, _)| i.digest == img.digest) {
            Some((_, tags)) => tags.extend(tag.filter(|t| !tags.contains(t))),
            None => grouped.push((img, tag.into_iter().collect())),
        }
    }
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = crate::layout::temp_file(dir)?;
    let out = tmp
        .as_file()
        .try_clone()
        .map_err(|e| Error::io("open", tmp.path(), e))?;
    let mut w = Writer {
        out: BufWriter::with_capacity(1 << 20, out),
        path: tmp.path().to_path_buf(),
    };
    let mut written = HashSet::new();
    let mut manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (img, tags) in &grouped {
        let config = format!("{}.json", Digest::parse(&img.manifest.config.digest)?.hex());
        if written.insert(config.clone()) {
            w.member(&config, &img.config_json)?;
        }
        let mut layers = Vec::new();
        for (id, desc) in img.diff_ids()?.iter().zip(&img.manifest.layers) {
            let name = format!("{}/layer.tar", id.hex());
            if written.insert(name.clone()) {
                w.dir(&format!("{}/", id.hex()))?;
                w.layer(store, &name, id, desc)?;
            }
            layers.push(name);
        }
        if let Some(top) = img.diff_ids()?.last() {
            for t in tags {
                if let Some((repo, tag)) = t.rsplit_once(':') {
                    repositories
                        .entry(repo.to_string())
                        .or_default()
                        .insert(tag.to_string(), top.hex().to_string());
                }
            }
        }
        manifest.push(json!({"Config": config, "RepoTags": tags, "Layers": layers}));
    }
    let json_of = |v: &Value| serde_json::to_vec(v).unwrap_or_default();
    w.member("manifest.json", &json_of(&Value::Array(manifest)))?;
    w.member("repositories", &json_of(&json!(repositories)))?;
    let path = w.path.clone();
    let mut out = w.out;
    out.write_all(&[0u8; 1024])
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("write", &path, e))?;
    drop(out);
    crate::layout::publish(tmp, file)
}

/// The archive being written.
struct Writer {
    out: BufWriter<File>,
    path: std::path::PathBuf,
}

impl Writer {
    fn header(name: &str, size: u64, kind: tar::EntryType) -> Result<tar::Header> {
        let mut h = tar::Header::new_ustar();
        h.set_path(name)
            .map_err(|e| Error::format(format!("archive member {name:?}"), e.to_string()))?;
        h.set_size(size);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(0);
        h.set_entry_type(kind);
        h.set_cksum();
        Ok(h)
    }

    fn io(&self, e: io::Error) -> Error {
        Error::io("write", &self.path, e)
    }

    fn dir(&mut self, name: &str) -> Result<()> {
        let h = Self::header(name, 0, tar::EntryType::Directory)?;
        self.out.write_all(h.as_bytes()).map_err(|e| self.io(e))
    }

    fn member(&mut self, name: &str, body: &[u8]) -> Result<()> {
        let h = Self::header(name, body.len() as u64, tar::EntryType::Regular)?;
        self.out
            .write_all(h.as_bytes())
            .and_then(|()| self.out.write_all(body))
            .and_then(|()| pad(&mut self.out, body.len() as u64))
            .map_err(|e| self.io(e))
    }

    /// The layer `desc` uncompressed as member `name`. Its size is known
    /// only once it has been read, so the header is written first with
    /// none and filled in afterwards.
    fn layer(
        &mut self,
        store: &Store,
        name: &str,
        diff_id: &Digest,
        desc: &Descriptor,
    ) -> Result<()> {
        let at = self.out.stream_position().map_err(|e| self.io(e))?;
        let h = Self::header(name, 0, tar::EntryType::Regular)?;
        self.out.write_all(h.as_bytes()).map_err(|e| self.io(e))?;
        let mut r = Hashing::new(store.open_layer(desc)?);
        let blob = store.blob_path(&Digest::parse(&desc.digest)?);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("read layer", &blob, e)),
            };
            self.out.write_all(&buf[..n]).map_err(|e| self.io(e))?;
        }
        let (got, size) = r.finish();
        if &got != diff_id {
            return Err(Error::DigestMismatch {
                what: format!("layer {} (uncompressed)", desc.digest),
                expected: diff_id.to_string(),
                actual: got.to_string(),
            });
        }
        pad(&mut self.out, size).map_err(|e| self.io(e))?;
        let h = Self::header(name, size, tar::EntryType::Regular)?;
        self.out
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.out.write_all(h.as_bytes()))
            .and_then(|()| self.out.seek(SeekFrom::End(0)).map(drop))
            .map_err(|e| self.io(e))
    }
}

fn pad(out: &mut impl Write, size: u64) -> io::Result<()> {
    let rem = (size % 512) as usize;
    if rem == 0 {
        return Ok(());
    }
    out.write_all(&[0u8; 512][..512 - rem])
}
