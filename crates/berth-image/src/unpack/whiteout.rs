//! Whiteouts (image-spec "Whiteouts"), all handled here: `.wh.NAME` hides
//! NAME of the lower layers, `.wh..wh..opq` hides everything the lower
//! layers put in its directory. A whiteout never hides what its own layer
//! adds, whatever the order of the entries.
//!
//! Flat: the lower layers are already in the root, so hidden entries are
//! removed. To spare this layer's own entries, the unpacker remembers every
//! name the layer wrote (and their ancestors).
//!
//! Overlay: the root is this layer alone, so whiteouts become what
//! overlayfs reads in a lower directory: a character device 0/0 for
//! `.wh.NAME`, the xattr `trusted.overlay.opaque=y` for an opaque
//! directory.

use std::ffi::CString;
use std::os::fd::AsFd;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{mknodat, Mode, SFlag};

use super::root::{dir_open_flags, is_dir_entry, is_type, lstat_at, remove_all};
use super::sys;
use super::{Result, Unpacker};

/// The prefix that marks a whiteout.
pub(crate) const PREFIX: &[u8] = b".wh.";

/// The opaque marker's name.
const OPAQUE: &[u8] = b".wh..wh..opq";

/// The xattr overlayfs reads to know a directory hides the lower ones.
pub(crate) const OVERLAY_OPAQUE: &std::ffi::CStr = c"trusted.overlay.opaque";

/// What a whiteout entry asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Whiteout<'a> {
    /// Hide the lower layers' content of the entry's directory.
    Opaque,
    /// Hide the sibling with this name.
    Remove(&'a [u8]),
    /// Nothing: aufs's own metadata (`.wh..wh.plnk`, ...) or a name that
    /// hides nothing (`.wh.`, `.wh..`, `.wh...`).
    Ignore,
}

/// Classifies the last component `name` of an entry starting with `.wh.`.
pub(crate) fn classify(name: &[u8]) -> Whiteout<'_> {
    if name == OPAQUE {
        return Whiteout::Opaque;
    }
    match name.strip_prefix(PREFIX) {
        Some(b"" | b"." | b"..") | None => Whiteout::Ignore,
        Some(n) if n.starts_with(PREFIX) => Whiteout::Ignore,
        Some(n) => Whiteout::Remove(n),
    }
}

impl Unpacker<'_> {
    /// Applies the whiteout entry in `self.path`.
    pub(super) fn whiteout(&mut self) -> Result<()> {
        let target = match classify(self.path.name_bytes()) {
            Whiteout::Ignore => {
                tracing::debug!(layer = self.layer, entry = %self.entry_name(), "whiteout ignored");
                return Ok(());
            }
            Whiteout::Opaque => {
                self.stats.whiteouts += 1;
                return match self.mode {
                    super::Mode::Flat => self.flat_opaque(),
                    super::Mode::Overlay => self.overlay_opaque(),
                };
            }
            Whiteout::Remove(n) => n,
        };
        self.stats.whiteouts += 1;
        // The hidden sibling's name, in `self.link`.
        let mut hidden = self.path.parent_bytes().to_vec();
        if !hidden.is_empty() {
            hidden.push(b'/');
        }
        hidden.extend_from_slice(target);
        self.link
            .set(&hidden)
            .map_err(|_| self.refuse("name contains a NUL byte"))?;
        match self.mode {
            super::Mode::Flat => self.flat_remove(),
            super::Mode::Overlay => self.overlay_remove(),
        }
    }

    /// Flat `.wh.NAME`: removes NAME, or if this layer wrote NAME, only
    /// what the lower layers have under it.
    fn flat_remove(&mut self) -> Result<()> {
        let parent = match self.root.parent_of(&mut self.link, false) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(()),
            Err(e) => return Err(self.io_error("resolve", self.link.parent_bytes(), e)),
        };
        self.root.forget();
        if self.ours.contains(self.link.as_bytes()) {
            let name = self.link.as_bytes().to_vec();
            return self.prune(name);
        }
        remove_all(parent.as_fd(), self.link.name())
            .map_err(|e| self.io_error("remove", self.link.as_bytes(), e))
    }

    /// Flat `.wh..wh..opq`: empties the directory of what the lower layers
    /// put there.
    fn flat_opaque(&mut self) -> Result<()> {
        self.root.forget();
        let dir = self.path.parent_bytes().to_vec();
        self.prune(dir)
    }

    /// Removes everything under the directory `dir` that this layer did not
    /// write, keeping (and descending into) what it did. `dir` itself is
    /// opened without following a symlink at its last component: a link
    /// this layer put there does not lead the removal elsewhere.
    fn prune(&mut self, dir: Vec<u8>) -> Result<()> {
        let mut work = vec![dir];
        while let Some(dir) = work.pop() {
            let c = CString::new(if dir.is_empty() { &b"."[..] } else { &dir[..] })
                .map_err(|_| self.refuse("name contains a NUL byte"))?;
            let fd = match self.root.open_in_root(&c, dir_open_flags()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP) => continue,
                Err(e) => return Err(self.io_error("open", &dir, e)),
            };
            let mut d = Dir::openat(fd.as_fd(), c".", dir_open_flags(), Mode::empty())
                .map_err(|e| self.io_error("read directory", &dir, e))?;
            let mut lower = Vec::new();
            for e in d.iter() {
                let e = e.map_err(|e| self.io_error("read directory", &dir, e))?;
                let n = e.file_name();
                if n == c"." || n == c".." {
                    continue;
                }
                let mut child = dir.clone();
                if !child.is_empty() {
                    child.push(b'/');
                }
                child.extend_from_slice(n.to_bytes());
                if !self.ours.contains(child.as_slice()) {
                    lower.push(n.to_owned());
                } else if is_dir_entry(fd.as_fd(), n, e.file_type())
                    .map_err(|e| self.io_error("stat", &child, e))?
                {
                    work.push(child);
                }
            }
            for n in lower {
                remove_all(fd.as_fd(), &n).map_err(|e| {
                    let mut p = dir.clone();
                    p.push(b'/');
                    p.extend_from_slice(n.as_bytes());
                    self.io_error("remove", &p, e)
                })?;
            }
        }
        Ok(())
    }

    /// Overlay `.wh.NAME`: a 0/0 character device NAME, unless this layer
    /// already wrote NAME (a directory of this layer is made opaque
    /// instead, hiding the lower one's content).
    fn overlay_remove(&mut self) -> Result<()> {
        let parent = self
            .root
            .parent_of(&mut self.link, true)
            .map_err(|e| self.parent_error(e))?;
        let name = self.link.name();
        match lstat_at(parent.as_fd(), name) {
            Ok(Some(st)) if is_type(&st, SFlag::S_IFDIR) => {
                let fd = openat(parent.as_fd(), name, dir_open_flags(), Mode::empty())
                    .map_err(|e| self.io_error("open", self.link.as_bytes(), e))?;
                sys::fsetxattr(fd.as_fd(), OVERLAY_OPAQUE, b"y").map_err(|e| {
                    self.io_error("set trusted.overlay.opaque on", self.link.as_bytes(), e)
                })
            }
            Ok(Some(_)) => Ok(()),
            Ok(None) => match mknodat(parent.as_fd(), name, SFlag::S_IFCHR, Mode::empty(), 0) {
                Ok(()) => Ok(()),
                Err(e @ Errno::EPERM) => Err(self.refuse(&format!(
                    "cannot create the overlay whiteout {:?} (a 0/0 character device): {e}",
                    String::from_utf8_lossy(self.link.as_bytes())
                ))),
                Err(e) => Err(self.io_error("create whiteout", self.link.as_bytes(), e)),
            },
            Err(e) => Err(self.io_error("stat", self.link.as_bytes(), e)),
        }
    }

    /// Overlay `.wh..wh..opq`: marks the directory opaque.
    fn overlay_opaque(&mut self) -> Result<()> {
        let dir = self
            .root
            .parent_of(&mut self.path, true)
            .map_err(|e| self.parent_error(e))?;
        // The cached descriptor may be O_PATH, which takes no xattrs.
        let fd = openat(
            dir.as_fd(),
            c".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.io_error("open", self.path.parent_bytes(), e))?;
        sys::fsetxattr(fd.as_fd(), OVERLAY_OPAQUE, b"y").map_err(|e| {
            self.io_error("set trusted.overlay.opaque on", self.path.parent_bytes(), e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_whiteouts() {
        assert_eq!(classify(b".wh..wh..opq"), Whiteout::Opaque);
        assert_eq!(classify(b".wh.passwd"), Whiteout::Remove(b"passwd"));
        assert_eq!(classify(b".wh..hidden"), Whiteout::Remove(b".hidden"));
        assert_eq!(classify(b".wh...."), Whiteout::Remove(b"..."));
        for ignored in [
            &b".wh."[..],
            b".wh..",
            b".wh...",
            b".wh..wh.plnk",
            b".wh..wh.aufs",
        ] {
            assert_eq!(classify(ignored), Whiteout::Ignore, "{ignored:?}");
        }
    }
}
