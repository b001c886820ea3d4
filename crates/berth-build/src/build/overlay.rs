//! The overlay mounts a build step works on: the parent's layers as lower
//! dirs (the store's unpacked layers), a fresh upper dir that becomes the
//! step's layer, or none for a read-only view (`COPY --from`, looking up
//! users). Mounted with `redirect_dir=off` and `metacopy=off`, so every
//! change in the upper dir is one a layer can express.

use std::fs;
use std::path::{Path, PathBuf};

use berth_image::store::{Descriptor, Store};
use berth_image::Digest;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{BuildError, Result};

/// The layers of an image being built, base first.
#[derive(Clone, Debug, Default)]
pub(crate) struct Layers {
    pub descriptors: Vec<Descriptor>,
    pub diff_ids: Vec<Digest>,
}

/// A mounted overlay in a directory it owns; unmounted and removed on drop.
pub(crate) struct Overlay {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl Overlay {
    /// Mounts `layers` at `<tmp>/merged`, with `<tmp>/upper` as the upper
    /// dir when `writable`.
    pub fn mount(store: &Store, layers: &Layers, writable: bool) -> Result<Overlay> {
        let dir = store.temp_dir()?;
        let mut o = Overlay {
            dir,
            mounted: false,
        };
        let mut lowers: Vec<PathBuf> = Vec::new();
        for (id, desc) in layers.diff_ids.iter().zip(&layers.descriptors).rev() {
            // Two steps can make the same layer (the same diff-id, so the
            // same directory), and overlayfs refuses a directory twice.
            // The topmost copy alone gives the same view: it re-applies
            // every path the lower copy decided, above what lies between.
            let dir = store.layer_dir(id, desc)?;
            if !lowers.contains(&dir) {
                lowers.push(dir);
            }
        }
        // An empty bottom layer: FROM scratch has no other, and a
        // read-only overlay needs two lower dirs on older kernels.
        let empty = o.path("empty");
        lowers.push(empty.clone());
        let mut made = vec![empty, o.path("merged")];
        if writable {
            made.extend([o.path("upper"), o.path("work")]);
        }
        for d in &made {
            fs::create_dir(d).map_err(|e| BuildError::io("create", d, e))?;
        }
        let lower = lowers
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        let mut data = format!("lowerdir={lower}");
        if writable {
            data.push_str(&format!(
                ",upperdir={},workdir={},redirect_dir=off,metacopy=off",
                o.path("upper").display(),
                o.path("work").display()
            ));
        }
        if data.len() >= 4096 {
            return Err(BuildError::Unsupported(format!(
                "{} layers: the overlay mount options exceed one page",
                lowers.len()
            )));
        }
        let flags = if writable {
            MsFlags::empty()
        } else {
            MsFlags::MS_RDONLY
        };
        let merged = o.path("merged");
        mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            flags,
            Some(data.as_str()),
        )
        .map_err(|e| BuildError::io("mount an overlay on", &merged, e.into()))?;
        o.mounted = true;
        Ok(o)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The merged view: the root file system the step sees.
    pub fn merged(&self) -> PathBuf {
        self.path("merged")
    }

    /// The upper dir (the step's changes); read it once unmounted.
    pub fn upper(&self) -> PathBuf {
        self.path("upper")
    }

    /// A scratch directory next to the mount, removed with it.
    pub fn scratch(&self, name: &str) -> Result<PathBuf> {
        let p = self.path(name);
        fs::create_dir(&p).map_err(|e| BuildError::io("create", &p, e))?;
        Ok(p)
    }

    pub fn unmount(&mut self) -> Result<()> {
        if self.mounted {
            let m = self.merged();
            match umount2(&m, MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
                Err(e) => return Err(BuildError::io("unmount", &m, e.into())),
            }
            self.mounted = false;
        }
        Ok(())
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = self.unmount();
    }
}

/// Whether `rel` (an absolute path in the container) is a real directory
/// or file chain under `base` with no symlink on the way; the lookups
/// never leave `base`.
pub(crate) fn lexists_plain(base: &Path, rel: &Path) -> Option<fs::Metadata> {
    let mut p = base.to_path_buf();
    let mut meta = None;
    for c in rel.components() {
        match c {
            std::path::Component::Normal(n) => {
                p.push(n);
                let m = fs::symlink_metadata(&p).ok()?;
                if m.file_type().is_symlink() {
                    return None;
                }
                meta = Some(m);
            }
            std::path::Component::RootDir | std::path::Component::CurDir => {}
            _ => return None,
        }
    }
    meta
}
