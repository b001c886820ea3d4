//! OCI image layouts (OCI image spec "Image Layout"): `oci-layout`,
//! `index.json` and `blobs/<alg>/<hex>`, read with nested indexes and
//! multi-platform indexes resolved to one platform, and written from the
//! store with the annotations containerd, skopeo and umoci look images up
//! by.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::{
    media, normalize_ref, pick_platform, Descriptor, Image, Index, Platform, PlatformSpec, Store,
};

/// The annotation naming an image in a layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The annotation containerd (and `docker save` with the containerd
/// store) names an image by in a layout's index: the full reference.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Imports one image from the layout at `dir` into `store` and tags it
/// `name`. `tag` picks the index entry by its `org.opencontainers.image.
/// ref.name` (as `umoci` and `skopeo` write them); without it the index
/// must hold exactly one entry. Indexes are followed down to the manifest
/// for `platform`. Every blob is verified against its digest.
pub fn import(
    store: &Store,
    dir: &Path,
    tag: Option<&str>,
    name: &str,
    platform: &PlatformSpec,
) -> Result<Image> {
    let layout_file = dir.join("oci-layout");
    let text = std::fs::read(&layout_file).map_err(|e| Error::io("read", &layout_file, e))?;
    let v: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| Error::format(layout_file.display().to_string(), e.to_string()))?;
    if v["imageLayoutVersion"].as_str() != Some("1.0.0") {
        return Err(Error::format(
            format!("{}: imageLayoutVersion", layout_file.display()),
            format!("expected \"1.0.0\", found {}", v["imageLayoutVersion"]),
        ));
    }
    let index_file = dir.join("index.json");
    let index: Index = read_json(&index_file)?;
    let mut desc = choose(&index.manifests, tag, &index_file)?.clone();
    let label = format!(
        "{}{}",
        dir.display(),
        tag.map(|t| format!(":{t}")).unwrap_or_default()
    );
    // Down through nested indexes to a manifest.
    for _ in 0..8 {
        if !is_index(&desc.media_type) {
            break;
        }
        let d = Digest::parse(&desc.digest)?;
        copy_blob(store, dir, &d, &label)?;
        let nested: Index = serde_json::from_slice(&store.read_blob(&d)?)
            .map_err(|e| Error::format(format!("index {d}"), e.to_string()))?;
        desc = pick_platform(&label, &nested.manifests, platform)?.clone();
    }
    if is_index(&desc.media_type) {
        return Err(Error::format(&label, "indexes nested more than 8 deep"));
    }
    let md = Digest::parse(&desc.digest)?;
    copy_blob(store, dir, &md, &label)?;
    let manifest: crate::store::Manifest = serde_json::from_slice(&store.read_blob(&md)?)
        .map_err(|e| Error::format(format!("manifest {md}"), e.to_string()))?;
    copy_blob(store, dir, &Digest::parse(&manifest.config.digest)?, &label)?;
    for l in &manifest.layers {
        copy_blob(store, dir, &Digest::parse(&l.digest)?, &label)?;
    }
    store.tag(name, &md)?;
    store.image_by_digest(name, &md)
}

/// Writes `images` (each under its name) into the OCI image layout at
/// `dir`: a new or empty directory, or an existing layout, where an entry
/// with the same `ref.name` is replaced and the others are kept. Each
/// index entry carries `org.opencontainers.image.ref.name` (the tag, as
/// `skopeo`'s and `umoci`'s `DIR:TAG` name it) and
/// `io.containerd.image.name` (the full normalised name). Blobs already
/// in the layout are kept; new ones and `index.json` appear by rename.
/// Two images whose names share a tag cannot go in one layout (the tag
/// would name either) and are refused.
pub fn export(store: &Store, images: &[(String, Image)], dir: &Path) -> Result<()> {
    let mut entries: Vec<Descriptor> = Vec::new();
    let mut by_tag: BTreeMap<String, (String, Digest)> = BTreeMap::new();
    for (name, img) in images {
        let full = normalize_ref(name);
        let tag = tag_of(&full);
        if let Some(t) = &tag {
            if let Some((other, d)) = by_tag.get(t) {
                if *other == full && *d == img.digest {
                    continue;
                }
                return Err(Error::format(
                    format!("{}: {REF_NAME} {t:?}", dir.display()),
                    format!("both {other} and {full} would be named {t:?}: write them to separate layouts"),
                ));
            }
            by_tag.insert(t.clone(), (full.clone(), img.digest.clone()));
        }
        let mut annotations = BTreeMap::new();
        if let Some(t) = tag {
            annotations.insert(REF_NAME.to_string(), t);
        }
        annotations.insert(CONTAINERD_NAME.to_string(), full);
        entries.push(Descriptor {
            media_type: img
                .manifest
                .media_type
                .clone()
                .unwrap_or_else(|| media::MANIFEST.into()),
            digest: img.digest.to_string(),
            size: blob_len(store, &img.digest)?,
            platform: platform_of(img),
            annotations,
        });
    }

    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(|e| Error::io("create", &blobs, e))?;
    let layout_file = dir.join("oci-layout");
    if layout_file.exists() {
        let v: Value = read_json(&layout_file)?;
        if v["imageLayoutVersion"].as_str() != Some("1.0.0") {
            return Err(Error::format(
                format!("{}: imageLayoutVersion", layout_file.display()),
                format!("expected \"1.0.0\", found {}", v["imageLayoutVersion"]),
            ));
        }
    } else {
        write_file(dir, &layout_file, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    }
    for (_, img) in images {
        export_blob(store, &img.digest, dir)?;
        export_blob(store, &Digest::parse(&img.manifest.config.digest)?, dir)?;
        for l in &img.manifest.layers {
            export_blob(store, &Digest::parse(&l.digest)?, dir)?;
        }
    }

    let index_file = dir.join("index.json");
    let mut index: Value = if index_file.exists() {
        read_json(&index_file)?
    } else {
        json!({"schemaVersion": 2, "mediaType": media::INDEX, "manifests": []})
    };
    let what = || format!("{}: manifests", index_file.display());
    let manifests = index
        .get_mut("manifests")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| Error::format(what(), "missing or not an array"))?;
    manifests.retain(
        |d| !matches!(d["annotations"][REF_NAME].as_str(), Some(t) if by_tag.contains_key(t)),
    );
    for d in &entries {
        manifests.push(serde_json::to_value(d).map_err(|e| Error::format(what(), e.to_string()))?);
    }
    let body = serde_json::to_vec(&index).map_err(|e| Error::format(what(), e.to_string()))?;
    write_file(dir, &index_file, &body)
}

/// The tag of a normalised reference (`example.com:5000/a/b:v1` -> `v1`);
/// none for a digest reference.
fn tag_of(full: &str) -> Option<String> {
    if full.contains('@') {
        return None;
    }
    let last = full.rsplit('/').next().unwrap_or(full);
    last.split_once(':').map(|(_, t)| t.to_string())
}

/// The platform an image's config names, for its index entry.
fn platform_of(img: &Image) -> Option<Platform> {
    let v: Value = serde_json::from_slice(&img.config_json).ok()?;
    Some(Platform {
        architecture: v["architecture"].as_str()?.to_string(),
        os: v["os"].as_str()?.to_string(),
        variant: v["variant"].as_str().map(String::from),
    })
}

fn blob_len(store: &Store, d: &Digest) -> Result<u64> {
    let p = store.blob_path(d);
    fs::metadata(&p)
        .map(|m| m.len())
        .map_err(|e| Error::io("stat blob", &p, e))
}

/// Copies blob `d` from the store into the layout at `dir`, unless a
/// file of its size is already there (blobs are named by their content).
fn export_blob(store: &Store, d: &Digest, dir: &Path) -> Result<()> {
    let dest = blob_file(dir, d);
    let len = blob_len(store, d)?;
    if fs::metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == len) {
        return Ok(());
    }
    let src = store.blob_path(d);
    let mut from = File::open(&src).map_err(|e| Error::io("open blob", &src, e))?;
    let mut tmp = temp_file(dir)?;
    std::io::copy(&mut from, tmp.as_file_mut()).map_err(|e| Error::io("write", tmp.path(), e))?;
    publish(tmp, &dest)
}

/// Writes `path` (in `dir`) whole, by rename.
fn write_file(dir: &Path, path: &Path, body: &[u8]) -> Result<()> {
    let mut tmp = temp_file(dir)?;
    tmp.write_all(body)
        .map_err(|e| Error::io("write", tmp.path(), e))?;
    publish(tmp, path)
}

/// A temporary file in `dir`, removed unless published.
pub(crate) fn temp_file(dir: &Path) -> Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(".berth-")
        .tempfile_in(dir)
        .map_err(|e| Error::io("create temp file in", dir, e))
}

/// Makes `tmp` readable by all (as a file written without it would be),
/// syncs it and renames it to `dest`.
pub(crate) fn publish(tmp: tempfile::NamedTempFile, dest: &Path) -> Result<()> {
    let f = tmp.as_file();
    f.set_permissions(fs::Permissions::from_mode(0o644))
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("write", tmp.path(), e))?;
    tmp.persist(dest)
        .map_err(|e| Error::io("rename into", dest, e.error))?;
    Ok(())
}

/// The names (`ref.name` annotations) in a layout's index.
pub fn names(dir: &Path) -> Result<Vec<String>> {
    let index: Index = read_json(&dir.join("index.json"))?;
    Ok(index
        .manifests
        .iter()
        .filter_map(|d| d.annotations.get(REF_NAME).cloned())
        .collect())
}

fn is_index(media_type: &str) -> bool {
    media_type == media::INDEX || media_type == media::DOCKER_LIST
}

fn choose<'a>(entries: &'a [Descriptor], tag: Option<&str>, file: &Path) -> Result<&'a Descriptor> {
    match tag {
        Some(t) => entries
            .iter()
            .find(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(t))
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "{t} in {} (names: {})",
                    file.display(),
                    names_of(entries)
                ))
            }),
        None if entries.len() == 1 => Ok(&entries[0]),
        None => Err(Error::format(
            file.display().to_string(),
            format!(
                "{} images: name one with DIR:NAME (names: {})",
                entries.len(),
                names_of(entries)
            ),
        )),
    }
}

fn names_of(entries: &[Descriptor]) -> String {
    let v: Vec<&str> = entries
        .iter()
        .filter_map(|d| d.annotations.get(REF_NAME).map(String::as_str))
        .collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn blob_file(dir: &Path, d: &Digest) -> PathBuf {
    dir.join("blobs/sha256").join(d.hex())
}

fn copy_blob(store: &Store, dir: &Path, d: &Digest, label: &str) -> Result<()> {
    let p = blob_file(dir, d);
    let f = File::open(&p).map_err(|e| Error::io("open blob", &p, e))?;
    store.put_blob(f, Some(d), &format!("{label}: blob {d}"))?;
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Result<T> {
    let b = std::fs::read(p).map_err(|e| Error::io("read", p, e))?;
    serde_json::from_slice(&b).map_err(|e| Error::format(p.display().to_string(), e.to_string()))
}
