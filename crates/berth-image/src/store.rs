//! The content-addressed image store (default `/var/lib/berth`):
//!
//! ```text
//! blobs/sha256/<hex>      manifests, configs and layers, named by digest
//! refs.json               name:tag -> manifest digest
//! layers/sha256/<hex>/    layers unpacked for overlay, named by diff-id
//! tmp/                    downloads and unpacks in progress
//! lock                    flock: refs, garbage collection
//! ```
//!
//! Blobs and unpacked layers appear by rename from `tmp/`, so a reader
//! never sees half of one and two concurrent pulls of the same image
//! both succeed (the second rename finds the same content in place).
//! `refs.json` changes under an exclusive lock, as does the garbage
//! collector, which keeps every blob and layer reachable from a ref.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hashing, HashingWriter};
use crate::error::{Error, Result};
use crate::unpack::{self, Compression, Mode};

/// Media types berth writes into manifests it makes.
pub mod media {
    /// OCI image manifest.
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Uncompressed layer.
    pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    /// Gzip layer.
    pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// Docker schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
}

/// A content descriptor (OCI image spec "Descriptors"), tolerant of
/// fields berth does not use.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The content's media type.
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
    /// The platform (in an index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations (`org.opencontainers.image.ref.name` in a layout).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A platform in an index.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Platform {
    /// e.g. `amd64`.
    pub architecture: String,
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `v8` for arm64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema 2: the same shape).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// 2.
    pub schema_version: u32,
    /// The manifest's media type, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index or Docker manifest list.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// 2.
    pub schema_version: u32,
    /// The index's media type, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests (or nested indexes).
    pub manifests: Vec<Descriptor>,
}

/// `os/arch[/variant]`, the platform images are chosen for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformSpec {
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `amd64`.
    pub arch: String,
    /// e.g. `v8`.
    pub variant: Option<String>,
}

impl PlatformSpec {
    /// This machine's platform (`linux/amd64` here).
    pub fn host() -> PlatformSpec {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        PlatformSpec {
            os: "linux".into(),
            arch: arch.into(),
            variant: None,
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<PlatformSpec> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts[..] {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(PlatformSpec {
                os: os.into(),
                arch: arch.into(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() => Ok(PlatformSpec {
                os: os.into(),
                arch: arch.into(),
                variant: Some(variant.into()),
            }),
            _ => Err(Error::format(
                format!("--platform {s:?}"),
                "expected os/arch[/variant], e.g. linux/amd64",
            )),
        }
    }

    /// Whether `p` is this platform (a missing variant matches any).
    pub fn matches(&self, p: &Platform) -> bool {
        p.os == self.os
            && p.architecture == self.arch
            && (self.variant.is_none() || p.variant == self.variant)
    }
}

impl std::fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Picks the manifest for `platform` from an index's descriptors.
pub fn pick_platform<'a>(
    image: &str,
    manifests: &'a [Descriptor],
    platform: &PlatformSpec,
) -> Result<&'a Descriptor> {
    manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
        .or_else(|| {
            // An index whose entries say no platform: take the only one.
            (manifests.len() == 1 && manifests[0].platform.is_none()).then(|| &manifests[0])
        })
        .ok_or_else(|| Error::NoPlatform {
            image: image.to_string(),
            platform: platform.to_string(),
            available: manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .map(|p| match &p.variant {
                    Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                    None => format!("{}/{}", p.os, p.architecture),
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Normalises an image reference the way docker does for local names:
/// `busybox` -> `busybox:latest`; a digest reference stays.
pub fn normalize_ref(r: &str) -> String {
    let last = r.rsplit('/').next().unwrap_or(r);
    if r.contains('@') || last.contains(':') {
        r.to_string()
    } else {
        format!("{r}:latest")
    }
}

/// An image in the store.
#[derive(Clone, Debug)]
pub struct Image {
    /// The reference it is stored under.
    pub reference: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// The manifest.
    pub manifest: Manifest,
    /// The raw config JSON.
    pub config_json: Vec<u8>,
}

impl Image {
    /// The config, parsed.
    pub fn config(&self) -> Result<oci_spec::image::ImageConfiguration> {
        serde_json::from_slice(&self.config_json)
            .map_err(|e| Error::format(format!("image {} config", self.reference), e.to_string()))
    }

    /// The layers' diff-ids (digests of the uncompressed tars), base first.
    pub fn diff_ids(&self) -> Result<Vec<Digest>> {
        let v: serde_json::Value = serde_json::from_slice(&self.config_json).map_err(|e| {
            Error::format(format!("image {} config", self.reference), e.to_string())
        })?;
        let ids = v["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let ids: Vec<Digest> = ids
            .iter()
            .map(|d| Digest::parse(d.as_str().unwrap_or_default()))
            .collect::<Result<_>>()?;
        if ids.len() != self.manifest.layers.len() {
            return Err(Error::format(
                format!("image {} config: rootfs.diff_ids", self.reference),
                format!(
                    "{} diff_ids for {} layers",
                    ids.len(),
                    self.manifest.layers.len()
                ),
            ));
        }
        Ok(ids)
    }
}

/// The store.
pub struct Store {
    root: PathBuf,
}

/// The default store root.
pub const DEFAULT_ROOT: &str = "/var/lib/berth";

impl Store {
    /// Opens (creating) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        for d in ["blobs/sha256", "layers/sha256", "tmp", "containers"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(|e| Error::io("create", &p, e))?;
        }
        Ok(Store { root })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// Whether the blob is present.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Reads a whole blob (manifests, configs).
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(d);
        fs::read(&p).map_err(|e| Error::io("read blob", &p, e))
    }

    /// Opens a blob for streaming (layers).
    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        let p = self.blob_path(d);
        File::open(&p).map_err(|e| Error::io("open blob", &p, e))
    }

    /// Opens a blob for streaming, with its size.
    pub fn open_blob_sized(&self, d: &Digest) -> Result<(File, u64)> {
        let f = self.open_blob(d)?;
        let size = f
            .metadata()
            .map_err(|e| Error::io("stat blob", self.blob_path(d), e))?
            .len();
        Ok((f, size))
    }

    /// A fresh directory under `tmp/`, removed on drop unless kept.
    pub fn temp_dir(&self) -> Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix("in-")
            .tempdir_in(self.root.join("tmp"))
            .map_err(|e| Error::io("create temp dir in", self.root.join("tmp"), e))
    }

    /// Stores what `r` yields, verifying it against `expected` when given
    /// (nothing is stored on a mismatch). Returns the digest and size.
    pub fn put_blob(
        &self,
        r: impl Read,
        expected: Option<&Digest>,
        what: &str,
    ) -> Result<(Digest, u64)> {
        if let Some(d) = expected {
            if self.has_blob(d) {
                let mut r = Hashing::new(r);
                r.drain().map_err(|e| Error::io("read", what, e))?;
                let (got, n) = r.finish();
                if &got != d {
                    return Err(Error::DigestMismatch {
                        what: what.to_string(),
                        expected: d.to_string(),
                        actual: got.to_string(),
                    });
                }
                return Ok((got, n));
            }
        }
        let tmp = tempfile::NamedTempFile::new_in(self.root.join("tmp"))
            .map_err(|e| Error::io("create temp file in", self.root.join("tmp"), e))?;
        let mut w = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, tmp));
        let mut r = r;
        io::copy(&mut r, &mut w).map_err(|e| Error::io("store", what, e))?;
        let (buf, got, n) = w.finish();
        let tmp = buf
            .into_inner()
            .map_err(|e| Error::io("store", what, e.into_error()))?;
        if let Some(d) = expected {
            if &got != d {
                return Err(Error::DigestMismatch {
                    what: what.to_string(),
                    expected: d.to_string(),
                    actual: got.to_string(),
                });
            }
        }
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io("sync", tmp.path(), e))?;
        let dest = self.blob_path(&got);
        tmp.persist(&dest)
            .map_err(|e| Error::io("rename into", &dest, e.error))?;
        Ok((got, n))
    }

    /// Stores a small document and returns its descriptor.
    pub fn put_json(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
        let (digest, size) = self.put_blob(bytes, None, media_type)?;
        Ok(Descriptor {
            media_type: media_type.into(),
            digest: digest.to_string(),
            size,
            platform: None,
            annotations: BTreeMap::new(),
        })
    }

    /// Stores an image made of `config` and `layers` (blobs already in
    /// the store, base first, one per `rootfs.diff_ids` entry): the config
    /// as JSON with its keys sorted, and an OCI image manifest naming it
    /// and the layers, so the same inputs always give the same digests.
    /// Tags it `reference` when given; without one, the image is named by
    /// its digest and goes at the next [`Store::gc`] unless tagged.
    pub fn put_image(
        &self,
        config: &oci_spec::image::ImageConfiguration,
        layers: &[Descriptor],
        annotations: Option<BTreeMap<String, String>>,
        reference: Option<&str>,
    ) -> Result<Image> {
        let value = serde_json::to_value(config)
            .map_err(|e| Error::format("image config", e.to_string()))?;
        self.put_image_json(&value, layers, annotations, reference)
    }

    /// [`Store::put_image`] for a config given as JSON, which keeps the
    /// fields `ImageConfiguration` does not model (docker's
    /// `config.Healthcheck`, `config.Shell`, `config.OnBuild`).
    pub fn put_image_json(
        &self,
        value: &serde_json::Value,
        layers: &[Descriptor],
        annotations: Option<BTreeMap<String, String>>,
        reference: Option<&str>,
    ) -> Result<Image> {
        let ids = value["rootfs"]["diff_ids"].as_array().map_or(0, Vec::len);
        if ids != layers.len() {
            return Err(Error::format(
                "image config: rootfs.diff_ids",
                format!("{ids} diff_ids for {} layers", layers.len()),
            ));
        }
        for (i, l) in layers.iter().enumerate() {
            let d = Digest::parse(&l.digest)
                .map_err(|e| Error::format(format!("layers[{i}].digest"), e.to_string()))?;
            if !self.has_blob(&d) {
                return Err(Error::NotFound(format!("layer blob {d} (layers[{i}])")));
            }
        }
        let config_desc = self.put_json(media::CONFIG, &canonical_json(value))?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media::MANIFEST.into()),
            config: config_desc,
            layers: layers.to_vec(),
            annotations: annotations.unwrap_or_default(),
        };
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| Error::format("image manifest", e.to_string()))?;
        let digest = Digest::parse(&self.put_json(media::MANIFEST, &bytes)?.digest)?;
        let name = match reference {
            Some(r) => {
                self.tag(r, &digest)?;
                normalize_ref(r)
            }
            None => digest.to_string(),
        };
        self.image_by_digest(&name, &digest)
    }

    fn lock(&self) -> Result<Lock> {
        let p = self.root.join("lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| Error::io("open", &p, e))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map(|f| Lock { _f: f })
            .map_err(|(_, e)| Error::io("lock", &p, e.into()))
    }

    fn read_refs(&self) -> Result<BTreeMap<String, String>> {
        let p = self.root.join("refs.json");
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::format(p.display().to_string(), e.to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(Error::io("read", &p, e)),
        }
    }

    fn write_refs(&self, refs: &BTreeMap<String, String>) -> Result<()> {
        let p = self.root.join("refs.json");
        let mut tmp = tempfile::NamedTempFile::new_in(&self.root)
            .map_err(|e| Error::io("create temp file in", &self.root, e))?;
        let body = serde_json::to_vec_pretty(refs).unwrap_or_default();
        tmp.write_all(&body)
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(|e| Error::io("write", tmp.path(), e))?;
        tmp.persist(&p)
            .map_err(|e| Error::io("rename into", &p, e.error))?;
        Ok(())
    }

    /// Points `reference` at the manifest `digest` (which must be stored).
    pub fn tag(&self, reference: &str, digest: &Digest) -> Result<()> {
        if !self.has_blob(digest) {
            return Err(Error::NotFound(digest.to_string()));
        }
        let _l = self.lock()?;
        let mut refs = self.read_refs()?;
        refs.insert(normalize_ref(reference), digest.to_string());
        self.write_refs(&refs)
    }

    /// Every reference and the manifest digest it names.
    pub fn refs(&self) -> Result<BTreeMap<String, String>> {
        self.read_refs()
    }

    /// The image a reference (or a manifest digest, or a unique prefix of
    /// one) names.
    pub fn image(&self, reference: &str) -> Result<Image> {
        let refs = self.read_refs()?;
        let norm = normalize_ref(reference);
        let (name, digest) = if let Some(d) = refs.get(&norm) {
            (norm, Digest::parse(d)?)
        } else {
            let want = reference.trim_start_matches("sha256:");
            let hits: Vec<(&String, &String)> = refs
                .iter()
                .filter(|(_, d)| {
                    !want.is_empty() && d.trim_start_matches("sha256:").starts_with(want)
                })
                .collect();
            match hits.first() {
                Some((n, d)) if hits.iter().all(|(_, x)| x == d) => {
                    ((*n).clone(), Digest::parse(d)?)
                }
                _ => return Err(Error::NotFound(reference.to_string())),
            }
        };
        self.image_by_digest(&name, &digest)
    }

    /// The image whose manifest is `digest`.
    pub fn image_by_digest(&self, name: &str, digest: &Digest) -> Result<Image> {
        let bytes = self.read_blob(digest)?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| Error::format(format!("manifest {digest}"), e.to_string()))?;
        let cd = Digest::parse(&manifest.config.digest)?;
        let config_json = self.read_blob(&cd)?;
        Ok(Image {
            reference: name.to_string(),
            digest: digest.clone(),
            manifest,
            config_json,
        })
    }

    /// Removes a reference; the blobs go at the next [`Store::gc`].
    pub fn untag(&self, reference: &str) -> Result<String> {
        let _l = self.lock()?;
        let mut refs = self.read_refs()?;
        let norm = normalize_ref(reference);
        let key = if refs.contains_key(&norm) {
            norm
        } else {
            let img = self.image(reference)?;
            img.reference
        };
        let d = refs
            .remove(&key)
            .ok_or_else(|| Error::NotFound(reference.to_string()))?;
        self.write_refs(&refs)?;
        Ok(d)
    }

    /// The uncompressed tar stream of the layer blob `desc`.
    pub fn open_layer(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send>> {
        let d = Digest::parse(&desc.digest)?;
        let c = layer_compression(&desc.media_type, &self.blob_path(&d))?;
        let f = io::BufReader::with_capacity(1 << 20, self.open_blob(&d)?);
        Ok(match c {
            Compression::None => Box::new(f),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(f)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(f)
                    .map_err(|e| Error::io("start zstd decoder for", self.blob_path(&d), e))?,
            ),
        })
    }

    /// The directory of the unpacked layer `diff_id` (overlay form),
    /// unpacking it from `blob` first when it is not there yet.
    pub fn layer_dir(&self, diff_id: &Digest, blob: &Descriptor) -> Result<PathBuf> {
        self.layer_dir_with_progress(diff_id, blob, &mut |_| {})
    }

    /// [`Store::layer_dir`], reporting the unpack's progress to `progress`
    /// when there is one (nothing when the layer is unpacked already).
    pub fn layer_dir_with_progress(
        &self,
        diff_id: &Digest,
        blob: &Descriptor,
        progress: &mut dyn FnMut(unpack::Progress),
    ) -> Result<PathBuf> {
        let dest = self.root.join("layers/sha256").join(diff_id.hex());
        if dest.is_dir() {
            return Ok(dest);
        }
        let bd = Digest::parse(&blob.digest)?;
        let tmp = self.temp_dir()?;
        let dir = tmp.path().join("layer");
        fs::create_dir(&dir).map_err(|e| Error::io("create", &dir, e))?;
        let (f, size) = self.open_blob_sized(&bd)?;
        let mut reported = unpack::BlobProgress::start(f, &bd, size, progress);
        let mut buffered = io::BufReader::with_capacity(1 << 20, &mut reported);
        let compression = layer_compression(&blob.media_type, &self.blob_path(&bd))?;
        let mut counted = DiffIdCheck::new(&mut buffered, compression)?;
        let stats = unpack::apply_layer(
            &mut counted,
            Compression::None,
            &dir,
            Mode::Overlay,
            bd.as_str(),
        )?;
        counted
            .drain()
            .map_err(|e| Error::io("read", self.blob_path(&bd), e))?;
        let got = counted.finish();
        if &got != diff_id {
            return Err(Error::DigestMismatch {
                what: format!("layer {bd} (uncompressed)"),
                expected: diff_id.to_string(),
                actual: got.to_string(),
            });
        }
        match fs::rename(&dir, &dest) {
            Ok(()) => {}
            // Another unpack of the same layer won the race: same content.
            Err(_) if dest.is_dir() => {}
            Err(e) => return Err(Error::io("rename into", &dest, e)),
        }
        drop(buffered);
        reported.finish(stats);
        Ok(dest)
    }

    /// Removes blobs and unpacked layers no reference reaches; returns
    /// how many of each went and the bytes freed.
    pub fn gc(&self) -> Result<GcReport> {
        let _l = self.lock()?;
        let refs = self.read_refs()?;
        let mut keep_blobs = BTreeSet::new();
        let mut keep_layers = BTreeSet::new();
        for (name, d) in &refs {
            let d = Digest::parse(d)?;
            keep_blobs.insert(d.hex().to_string());
            let Ok(img) = self.image_by_digest(name, &d) else {
                continue;
            };
            keep_blobs.insert(
                Digest::parse(&img.manifest.config.digest)?
                    .hex()
                    .to_string(),
            );
            for l in &img.manifest.layers {
                keep_blobs.insert(Digest::parse(&l.digest)?.hex().to_string());
            }
            for id in img.diff_ids().unwrap_or_default() {
                keep_layers.insert(id.hex().to_string());
            }
        }
        // Layers a container still runs on stay too.
        for e in read_dir(&self.root.join("containers")) {
            if let Ok(text) = fs::read_to_string(e.join("layers")) {
                keep_layers.extend(text.lines().map(str::to_string));
            }
        }
        let mut r = GcReport::default();
        for p in read_dir(&self.root.join("blobs/sha256")) {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if !keep_blobs.contains(&name) {
                r.bytes += fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
                r.blobs += 1;
            }
        }
        for p in read_dir(&self.root.join("layers/sha256")) {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if !keep_layers.contains(&name) {
                fs::remove_dir_all(&p).map_err(|e| Error::io("remove", &p, e))?;
                r.layers += 1;
            }
        }
        Ok(r)
    }
}

/// What [`Store::gc`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed.
    pub blobs: usize,
    /// Unpacked layers removed.
    pub layers: usize,
    /// Bytes of blobs freed.
    pub bytes: u64,
}

struct Lock {
    _f: nix::fcntl::Flock<File>,
}

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

/// `v` as compact JSON with every object's keys sorted: maps such as
/// `Labels` come from hash maps, whose order changes from run to run, and
/// serde_json keeps insertion order whenever any crate in the build turns
/// on its `preserve_order` feature.
pub fn canonical_json(v: &serde_json::Value) -> Vec<u8> {
    fn sorted(v: &serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                serde_json::Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_vec(&sorted(v)).unwrap_or_default()
}

/// The compression of a layer blob: from its media type, or sniffed
/// from its first bytes when the type does not say (docker archives).
pub fn layer_compression(media_type: &str, path: &Path) -> Result<Compression> {
    match Compression::from_media_type(media_type) {
        Ok(c) => Ok(c),
        Err(e) if media_type.is_empty() => {
            let _ = e;
            let mut head = [0u8; 8];
            let mut f = File::open(path).map_err(|e| Error::io("open", path, e))?;
            let n = f.read(&mut head).map_err(|e| Error::io("read", path, e))?;
            Ok(Compression::sniff(&head[..n]))
        }
        Err(e) => Err(e),
    }
}

/// Decompresses a layer stream while hashing the uncompressed bytes, so
/// the diff-id is checked in the same pass as the unpack.
struct DiffIdCheck<'a> {
    inner: Hashing<Box<dyn Read + 'a>>,
}

impl<'a> DiffIdCheck<'a> {
    fn new(r: &'a mut dyn Read, c: Compression) -> Result<Self> {
        let inner: Box<dyn Read + 'a> = match c {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::new(r)
                    .map_err(|e| Error::io("start zstd decoder", "layer", e))?,
            ),
        };
        Ok(DiffIdCheck {
            inner: Hashing::new(inner),
        })
    }

    fn drain(&mut self) -> io::Result<()> {
        self.inner.drain()
    }

    fn finish(self) -> Digest {
        self.inner.finish().0
    }
}

impl Read for DiffIdCheck<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}
