//! Root file systems from stored images: flat (every layer applied into
//! one directory, whiteouts deleting) or overlay (the store's unpacked
//! layers as read-only lower dirs under a fresh upper dir per container,
//! mounted with overlayfs).
//!
//! ```text
//! <store>/containers/<id>/layers   diff-ids it runs on (kept by gc)
//!                        /upper /work /merged
//!                        /bundle/config.json
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use crate::bundle::{self, Overrides};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::{layer_compression, Image, Store};
use crate::unpack::{self, Mode};

/// Applies every layer of `image` into `dir` (created if missing), base
/// first: the flat form `umoci unpack` and `docker export` give.
pub fn unpack_flat(store: &Store, image: &Image, dir: &Path) -> Result<unpack::Stats> {
    unpack_flat_with_progress(store, image, dir, &mut |_| {})
}

/// [`unpack_flat`], reporting each layer's progress to `progress`.
pub fn unpack_flat_with_progress(
    store: &Store,
    image: &Image,
    dir: &Path,
    progress: &mut dyn FnMut(unpack::Progress),
) -> Result<unpack::Stats> {
    fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let mut total = unpack::Stats::default();
    for l in &image.manifest.layers {
        let d = Digest::parse(&l.digest)?;
        let c = layer_compression(&l.media_type, &store.blob_path(&d))?;
        let (f, size) = store.open_blob_sized(&d)?;
        let mut counted = unpack::BlobProgress::start(f, &d, size, progress);
        let buffered = std::io::BufReader::with_capacity(1 << 20, &mut counted);
        let s = unpack::apply_layer(buffered, c, dir, Mode::Flat, d.as_str())?;
        counted.finish(s);
        total += s;
    }
    Ok(total)
}

/// The unpacked layer directories of `image`, top first (overlayfs's
/// lowerdir order), unpacking those not yet in the store.
pub fn layer_dirs(store: &Store, image: &Image) -> Result<Vec<PathBuf>> {
    layer_dirs_with_progress(store, image, &mut |_| {})
}

/// [`layer_dirs`], reporting the progress of each layer it unpacks (not
/// of those the store has unpacked already) to `progress`.
pub fn layer_dirs_with_progress(
    store: &Store,
    image: &Image,
    progress: &mut dyn FnMut(unpack::Progress),
) -> Result<Vec<PathBuf>> {
    let ids = image.diff_ids()?;
    let mut dirs = Vec::new();
    for (id, desc) in ids.iter().zip(&image.manifest.layers) {
        dirs.push(store.layer_dir_with_progress(id, desc, progress)?);
    }
    dirs.reverse();
    Ok(dirs)
}

/// A container's overlay root file system and bundle in the store.
#[derive(Debug)]
pub struct Prepared {
    /// `<store>/containers/<id>`.
    pub dir: PathBuf,
    /// The bundle directory (its config.json names [`Prepared::rootfs`]).
    pub bundle: PathBuf,
    /// The mounted overlay.
    pub rootfs: PathBuf,
}

/// Mounts an overlay of `image`'s layers with a fresh upper dir for
/// container `id` and writes its bundle from the image config and `o`.
/// On failure nothing is left mounted or written.
pub fn prepare(store: &Store, image: &Image, id: &str, o: &Overrides) -> Result<Prepared> {
    prepare_with_progress(store, image, id, o, &mut |_| {})
}

/// [`prepare`], reporting the progress of each layer it unpacks into the
/// store (layers unpacked there already report nothing) to `progress`.
pub fn prepare_with_progress(
    store: &Store,
    image: &Image,
    id: &str,
    o: &Overrides,
    progress: &mut dyn FnMut(unpack::Progress),
) -> Result<Prepared> {
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        return Err(Error::format(
            format!("container name {id:?}"),
            "use letters, digits and _.-",
        ));
    }
    let dir = store.root().join("containers").join(id);
    fs::create_dir(&dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::format(
                format!("container {id}"),
                format!("{} already exists", dir.display()),
            )
        } else {
            Error::io("create", &dir, e)
        }
    })?;
    let p = Prepared {
        bundle: dir.join("bundle"),
        rootfs: dir.join("merged"),
        dir,
    };
    match p.setup(store, image, o, progress) {
        Ok(()) => Ok(p),
        Err(e) => {
            let _ = p.remove();
            Err(e)
        }
    }
}

impl Prepared {
    fn setup(
        &self,
        store: &Store,
        image: &Image,
        o: &Overrides,
        progress: &mut dyn FnMut(unpack::Progress),
    ) -> Result<()> {
        let ids: Vec<String> = image
            .diff_ids()?
            .iter()
            .map(|d| d.hex().to_string())
            .collect();
        let lf = self.dir.join("layers");
        fs::write(&lf, ids.join("\n")).map_err(|e| Error::io("write", &lf, e))?;
        let lowers = layer_dirs_with_progress(store, image, progress)?;
        for d in ["upper", "work", "merged", "bundle"] {
            let p = self.dir.join(d);
            fs::create_dir(&p).map_err(|e| Error::io("create", &p, e))?;
        }
        let lower = lowers
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let data = format!(
            "lowerdir={lower},upperdir={},workdir={}",
            self.dir.join("upper").display(),
            self.dir.join("work").display()
        );
        if data.len() >= 4096 {
            return Err(Error::Unsupported(format!(
                "{} layers: the overlay mount options exceed one page",
                lowers.len()
            )));
        }
        nix::mount::mount(
            Some("overlay"),
            &self.rootfs,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|e| Error::io("mount overlay on", &self.rootfs, e.into()))?;
        let config = image.config()?;
        let spec = bundle::runtime_spec(&config, &self.rootfs, o)?;
        bundle::write_bundle(&self.bundle, &self.rootfs, &spec)
    }

    /// Unmounts the overlay (kept: the upper dir, with the container's
    /// changes).
    pub fn unmount(&self) -> Result<()> {
        match nix::mount::umount2(&self.rootfs, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(Error::io("unmount", &self.rootfs, e.into())),
        }
    }

    /// Unmounts and removes everything of the container.
    pub fn remove(&self) -> Result<()> {
        self.unmount()?;
        fs::remove_dir_all(&self.dir).map_err(|e| Error::io("remove", &self.dir, e))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::Write as _;

    use super::*;
    use crate::store::{media, Manifest};
    use crate::unpack::{Event, Progress, REPORT_EVERY};

    /// A tar of `files` (name, content) under a directory `d/`.
    fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, "d/", &[][..]).unwrap();
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, format!("d/{name}"), &data[..])
                .unwrap();
        }
        b.into_inner().unwrap()
    }

    /// Bytes gzip cannot shrink, so the blob is as large as its content.
    fn noise(n: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// A two-layer image: gzip (3 MiB of noise and 50 small files: 52
    /// entries) under a plain tar (one file: 2 entries).
    fn two_layers(store: &Store) -> Image {
        let mut files: Vec<(String, Vec<u8>)> = (0..50)
            .map(|i| (format!("f{i}"), format!("{i}\n").into_bytes()))
            .collect();
        files.push(("big".into(), noise(3 << 20)));
        let base = tar_of(&files);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&base).unwrap();
        let base_gz = gz.finish().unwrap();
        let top = tar_of(&[("top".into(), b"top\n".to_vec())]);
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [
                Digest::of(&base).to_string(), Digest::of(&top).to_string()]},
        });
        let config = store
            .put_json(media::CONFIG, config.to_string().as_bytes())
            .unwrap();
        let layers = vec![
            store.put_json(media::LAYER_GZIP, &base_gz).unwrap(),
            store.put_json(media::LAYER_TAR, &top).unwrap(),
        ];
        let m = Manifest {
            schema_version: 2,
            media_type: Some(media::MANIFEST.into()),
            config,
            layers,
            annotations: BTreeMap::new(),
        };
        let d = store
            .put_json(media::MANIFEST, &serde_json::to_vec(&m).unwrap())
            .unwrap();
        store
            .image_by_digest("test", &Digest::parse(&d.digest).unwrap())
            .unwrap()
    }

    /// Checks one layer's reports: a start at 0 of the blob's size,
    /// growing byte counts at least [`REPORT_EVERY`] apart, and a done at
    /// the full size with `entries`.
    fn check_layer(events: &[Progress], digest: &str, size: u64, entries: u64) {
        let mine: Vec<&Progress> = events
            .iter()
            .filter(|p| p.digest.as_str() == digest)
            .collect();
        assert!(mine.len() >= 2, "{events:?}");
        assert!(mine.iter().all(|p| p.total == size), "{mine:?}");
        assert_eq!((mine[0].event, mine[0].done), (Event::Start, 0));
        let last = mine[mine.len() - 1];
        assert_eq!(last.done, size, "{mine:?}");
        match last.event {
            Event::Done(s) => assert_eq!(s.entries, entries, "{mine:?}"),
            e => panic!("last event {e:?}"),
        }
        let bytes: Vec<u64> = mine[1..mine.len() - 1]
            .iter()
            .map(|p| {
                assert_eq!(p.event, Event::Bytes);
                p.done
            })
            .collect();
        let mut prev = 0;
        for b in &bytes {
            assert!(*b >= prev + REPORT_EVERY && *b <= size, "{bytes:?}");
            prev = *b;
        }
        // Throttled, yet a large layer moves the bar.
        assert!(bytes.len() as u64 <= size / REPORT_EVERY, "{bytes:?}");
        assert!(size < REPORT_EVERY || !bytes.is_empty(), "{mine:?}");
    }

    #[test]
    fn flat_and_overlay_unpacks_report_each_layer() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("store")).unwrap();
        let img = two_layers(&store);
        let (base, top) = (&img.manifest.layers[0], &img.manifest.layers[1]);
        assert!(base.size > 3 << 20);

        let mut events = Vec::new();
        let out = tmp.path().join("flat");
        let stats = unpack_flat_with_progress(&store, &img, &out, &mut |p| events.push(p)).unwrap();
        check_layer(&events, &base.digest, base.size, 52);
        check_layer(&events, &top.digest, top.size, 2);
        assert_eq!(stats.entries, 54);
        // Base first.
        assert_eq!(events[0].digest.as_str(), base.digest);
        assert_eq!(fs::read(out.join("d/big")).unwrap().len(), 3 << 20);

        let mut events = Vec::new();
        let dirs = layer_dirs_with_progress(&store, &img, &mut |p| events.push(p)).unwrap();
        check_layer(&events, &base.digest, base.size, 52);
        check_layer(&events, &top.digest, top.size, 2);
        assert!(dirs[0].join("d/top").is_file() && dirs[1].join("d/big").is_file());
        // Unpacked already: nothing to report.
        let mut events = Vec::new();
        assert_eq!(
            layer_dirs_with_progress(&store, &img, &mut |p| events.push(p)).unwrap(),
            dirs
        );
        assert!(events.is_empty(), "{events:?}");
    }
}
