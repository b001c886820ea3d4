//! OCI image layouts (OCI image spec "Image Layout"): `oci-layout`,
//! `index.json` and `blobs/<alg>/<hex>`, with nested indexes and
//! multi-platform indexes resolved to one platform.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::{media, pick_platform, Descriptor, Image, Index, PlatformSpec, Store};

/// The annotation naming an image in a layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

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
