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
    fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let mut total = unpack::Stats::default();
    for l in &image.manifest.layers {
        let d = Digest::parse(&l.digest)?;
        let c = layer_compression(&l.media_type, &store.blob_path(&d))?;
        let f = std::io::BufReader::with_capacity(1 << 20, store.open_blob(&d)?);
        let s = unpack::apply_layer(f, c, dir, Mode::Flat, d.as_str())?;
        total.entries += s.entries;
        total.bytes += s.bytes;
    }
    Ok(total)
}

/// The unpacked layer directories of `image`, top first (overlayfs's
/// lowerdir order), unpacking those not yet in the store.
pub fn layer_dirs(store: &Store, image: &Image) -> Result<Vec<PathBuf>> {
    let ids = image.diff_ids()?;
    let mut dirs = Vec::new();
    for (id, desc) in ids.iter().zip(&image.manifest.layers) {
        dirs.push(store.layer_dir(id, desc)?);
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
    match p.setup(store, image, o) {
        Ok(()) => Ok(p),
        Err(e) => {
            let _ = p.remove();
            Err(e)
        }
    }
}

impl Prepared {
    fn setup(&self, store: &Store, image: &Image, o: &Overrides) -> Result<()> {
        let ids: Vec<String> = image
            .diff_ids()?
            .iter()
            .map(|d| d.hex().to_string())
            .collect();
        let lf = self.dir.join("layers");
        fs::write(&lf, ids.join("\n")).map_err(|e| Error::io("write", &lf, e))?;
        let lowers = layer_dirs(store, image)?;
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
