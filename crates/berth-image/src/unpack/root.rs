//! The directory a layer is unpacked into, held as a descriptor. Every
//! lookup below it goes through openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS), so `..` and symlinks (`evil -> /etc`,
//! `up -> ../../..`) resolve as if the root were `/`; creating missing
//! parents walks one component at a time with O_NOFOLLOW, reading each
//! symlink itself and re-rooting it. Entries are then created, changed and
//! removed relative to their parent's descriptor, never followed at the
//! last component: nothing in a layer can reach outside the root.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::path::EntryPath;

/// Symlinks followed while creating one entry's parents, as the kernel's
/// own limit (MAXSYMLINKS).
const MAX_LINKS: u32 = 40;

/// Flags for a directory used only as the base of `*at` calls.
fn dir_path_flags() -> OFlag {
    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC
}

/// Flags for opening a directory itself (to change its owner, mode,
/// xattrs or times), never through a symlink.
pub(crate) fn dir_open_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// The root of an unpack.
pub(crate) struct Root {
    fd: Rc<OwnedFd>,
    path: PathBuf,
    /// The last parent directory resolved (or created), by name. Layers
    /// list a directory's entries together, so most entries hit it.
    cache: Option<(Vec<u8>, Rc<OwnedFd>)>,
    /// Overlay: a 0/0 character device in the way of a parent is this
    /// layer's whiteout, replaced by an opaque directory.
    overlay: bool,
}

impl Root {
    /// Opens `path` (it must exist and be a directory); `overlay` when it
    /// is to hold one layer in overlayfs's form.
    pub(crate) fn open(path: &Path, overlay: bool) -> nix::Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd: Rc::new(fd),
            path: path.to_path_buf(),
            cache: None,
            overlay,
        })
    }

    /// `name` (relative, `.` for the root) under the root on the host, for
    /// messages.
    pub(crate) fn host_path(&self, name: &[u8]) -> PathBuf {
        self.path.join(std::ffi::OsStr::from_bytes(name))
    }

    /// Opens `name` with `flags`, resolved with the root as `/`.
    pub(crate) fn open_in_root(&self, name: &CStr, flags: OFlag) -> nix::Result<OwnedFd> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        // RESOLVE_IN_ROOT fails with EAGAIN when a rename raced with the
        // lookup; nothing else renames in the root, so a few tries do.
        let mut tries = 0;
        loop {
            match openat2(self.fd.as_fd(), name, how) {
                Err(Errno::EAGAIN) if tries < 16 => tries += 1,
                r => return r,
            }
        }
    }

    /// The directory that holds `p`, resolved inside the root; with
    /// `create`, missing directories are made (0755, owned by the caller),
    /// following symlinks met on the way within the root (EINVAL if one
    /// would be named as a whiteout).
    pub(crate) fn parent_of(
        &mut self,
        p: &mut EntryPath,
        create: bool,
    ) -> nix::Result<Rc<OwnedFd>> {
        let key = p.parent_bytes();
        if key.is_empty() {
            return Ok(self.fd.clone());
        }
        if let Some((k, fd)) = &self.cache {
            if k.as_slice() == key {
                return Ok(fd.clone());
            }
        }
        let key = key.to_vec();
        let fd = match self.open_in_root(p.parent_cstr(), dir_path_flags()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create => self.create_dirs(&key)?,
            Err(Errno::ENOTDIR) if create && self.overlay => self.create_dirs(&key)?,
            Err(e) => return Err(e),
        };
        let fd = Rc::new(fd);
        self.cache = Some((key, fd.clone()));
        Ok(fd)
    }

    /// Caches `fd` as the directory `name` (one just made), so the entries
    /// inside it that follow need no lookup.
    pub(crate) fn remember(&mut self, name: &[u8], fd: OwnedFd) {
        match &mut self.cache {
            Some((k, f)) => {
                k.clear();
                k.extend_from_slice(name);
                *f = Rc::new(fd);
            }
            None => self.cache = Some((name.to_vec(), Rc::new(fd))),
        }
    }

    /// Drops the cached directory: called after anything is removed, since
    /// its name may now lead elsewhere.
    pub(crate) fn forget(&mut self) {
        self.cache = None;
    }

    /// Makes the directories of `name` that are missing, one component at a
    /// time: each is looked up without following, a symlink is read and
    /// its target walked instead (an absolute one from the root, `..`
    /// clamped at the root), and a missing one is created.
    fn create_dirs(&self, name: &[u8]) -> nix::Result<OwnedFd> {
        let mut todo: Vec<Vec<u8>> = components(name).rev().map(<[u8]>::to_vec).collect();
        let mut done: Vec<u8> = Vec::new();
        let mut cur = self.open_in_root(c".", dir_path_flags())?;
        let mut links = 0;
        while let Some(c) = todo.pop() {
            if c == b".." {
                let cut = done.iter().rposition(|&b| b == b'/').unwrap_or(0);
                done.truncate(cut);
                cur = self.open_in_root(&cstring(&done)?, dir_path_flags())?;
                continue;
            }
            let name = CString::new(c).map_err(|_| Errno::EINVAL)?;
            match lstat_at(cur.as_fd(), &name)? {
                Some(st) if is_type(&st, SFlag::S_IFDIR) => {
                    cur = openat(
                        cur.as_fd(),
                        name.as_c_str(),
                        dir_path_flags() | OFlag::O_NOFOLLOW,
                        Mode::empty(),
                    )?;
                }
                Some(st) if is_type(&st, SFlag::S_IFLNK) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Errno::ELOOP);
                    }
                    let target = nix::fcntl::readlinkat(cur.as_fd(), name.as_c_str())?;
                    let target = target.as_bytes();
                    if target.starts_with(b"/") {
                        done.clear();
                        cur = self.open_in_root(c".", dir_path_flags())?;
                    }
                    todo.extend(components(target).rev().map(<[u8]>::to_vec));
                    continue;
                }
                // `.wh.d` then `d/x` with no `d/` entry: `d` is new in this
                // layer and hides the lower layers' `d`.
                Some(st) if self.overlay && is_whiteout_device(&st) => {
                    unlinkat(cur.as_fd(), name.as_c_str(), UnlinkatFlags::NoRemoveDir)?;
                    cur = make_dir(cur.as_fd(), &name)?;
                    super::sys::fsetxattr(cur.as_fd(), super::whiteout::OVERLAY_OPAQUE, b"y")?;
                }
                Some(_) => return Err(Errno::ENOTDIR),
                // Reached through a symlink (`a -> .wh.x`, then `a/b`): a
                // whiteout's name must not appear as a directory.
                None if name.as_bytes().starts_with(super::whiteout::PREFIX) => {
                    return Err(Errno::EINVAL);
                }
                None => cur = make_dir(cur.as_fd(), &name)?,
            }
            if !done.is_empty() {
                done.push(b'/');
            }
            done.extend_from_slice(name.as_bytes());
        }
        Ok(cur)
    }
}

/// Makes the directory `dir`/`name`, 0755 whatever the umask (a
/// restrictive one would lock non-root users out of the image), and opens
/// it.
fn make_dir(dir: BorrowedFd<'_>, name: &CStr) -> nix::Result<OwnedFd> {
    mkdirat(dir, name, Mode::from_bits_truncate(0o755))?;
    let fd = openat(dir, name, dir_open_flags(), Mode::empty())?;
    fchmod(fd.as_fd(), Mode::from_bits_truncate(0o755))?;
    Ok(fd)
}

/// The non-empty components of `name` other than `.`.
fn components(name: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    name.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
}

/// `name` with a NUL; `.` when empty.
fn cstring(name: &[u8]) -> nix::Result<CString> {
    CString::new(if name.is_empty() { &b"."[..] } else { name }).map_err(|_| Errno::EINVAL)
}

/// True when `st` is of file type `t`.
pub(crate) fn is_type(st: &FileStat, t: SFlag) -> bool {
    st.st_mode & SFlag::S_IFMT.bits() == t.bits()
}

/// True when `st` is overlayfs's whiteout: a character device 0/0.
pub(crate) fn is_whiteout_device(st: &FileStat) -> bool {
    is_type(st, SFlag::S_IFCHR) && st.st_rdev == 0
}

/// fstatat(2) of `dir`/`name` without following it; `None` if missing.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &CStr) -> nix::Result<Option<FileStat>> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes `dir`/`name` and, if it is a directory, everything under it;
/// no symlink is followed. Missing is not an error.
///
/// Walks down holding one descriptor at a time (climbing back with `..`
/// from a directory reached without following any symlink), so a tree
/// deeper than the descriptor limit is still removed.
pub(crate) fn remove_all(dir: BorrowedFd<'_>, name: &CStr) -> nix::Result<()> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR) => {}
        Err(e) => return Err(e),
    }
    let mut names: Vec<CString> = Vec::new();
    let mut cur = openat(dir, name, dir_open_flags(), Mode::empty())?;
    loop {
        if let Some(sub) = empty_but_dirs(cur.as_fd())? {
            let next = openat(cur.as_fd(), sub.as_c_str(), dir_open_flags(), Mode::empty())?;
            names.push(sub);
            cur = next;
            continue;
        }
        let Some(sub) = names.pop() else { break };
        let up = openat(cur.as_fd(), c"..", dir_open_flags(), Mode::empty())?;
        unlinkat(up.as_fd(), sub.as_c_str(), UnlinkatFlags::RemoveDir)?;
        cur = up;
    }
    drop(cur);
    unlinkat(dir, name, UnlinkatFlags::RemoveDir)
}

/// Unlinks every non-directory in `dir` until it meets a subdirectory,
/// whose name it returns; `None` once `dir` is empty.
fn empty_but_dirs(dir: BorrowedFd<'_>) -> nix::Result<Option<CString>> {
    let mut d = Dir::openat(dir, c".", dir_open_flags(), Mode::empty())?;
    for e in d.iter() {
        let e = e?;
        let n = e.file_name();
        if n == c"." || n == c".." {
            continue;
        }
        if is_dir_entry(dir, n, e.file_type())? {
            return Ok(Some(n.to_owned()));
        }
        match unlinkat(dir, n, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// True when the directory entry `name` in `dir` is a directory (by its
/// d_type, or by lstat when the file system does not fill that in).
pub(crate) fn is_dir_entry(dir: BorrowedFd<'_>, name: &CStr, t: Option<Type>) -> nix::Result<bool> {
    Ok(match t {
        Some(t) => t == Type::Directory,
        None => lstat_at(dir, name)?.is_some_and(|st| is_type(&st, SFlag::S_IFDIR)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn entry(p: &str) -> EntryPath {
        let mut e = EntryPath::default();
        e.set(p.as_bytes()).unwrap();
        e
    }

    #[test]
    fn parents_resolve_and_are_created_inside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let root_dir = tempfile::tempdir().unwrap();
        let r = root_dir.path();
        symlink(outside.path(), r.join("abs")).unwrap();
        symlink("../../../../..", r.join("up")).unwrap();
        symlink("real/x", r.join("rel")).unwrap();
        let mut root = Root::open(r, false).unwrap();
        for (name, made) in [
            (
                "abs/a/file",
                r.join(outside.path().strip_prefix("/").unwrap()).join("a"),
            ),
            ("up/b/file", r.join("b")),
            ("rel/c/file", r.join("real/x/c")),
            ("up/../../d/file", r.join("d")),
        ] {
            let mut p = entry(name);
            let fd = root.parent_of(&mut p, true).unwrap();
            nix::sys::stat::mknodat(
                fd.as_fd(),
                p.name(),
                SFlag::S_IFREG,
                Mode::from_bits_truncate(0o600),
                0,
            )
            .unwrap();
            assert!(made.join("file").is_file(), "{name}: {}", made.display());
            assert_eq!(
                fs::metadata(&made).unwrap().permissions().mode() & 0o7777,
                0o755
            );
        }
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
        // Without `create`, a missing parent is an error.
        let mut p = entry("nowhere/x");
        assert_eq!(root.parent_of(&mut p, false).unwrap_err(), Errno::ENOENT);
        // A file in the way is not a directory.
        fs::write(r.join("f"), "").unwrap();
        let mut p = entry("f/x");
        assert_eq!(root.parent_of(&mut p, true).unwrap_err(), Errno::ENOTDIR);
        // A whiteout's name is not made a directory, even through a link.
        symlink(".wh.x", r.join("wh")).unwrap();
        let mut p = entry("wh/y");
        assert_eq!(root.parent_of(&mut p, true).unwrap_err(), Errno::EINVAL);
        assert!(!r.join(".wh.x").exists());
        // A symlink loop ends.
        symlink("loop", r.join("loop")).unwrap();
        let mut p = entry("loop/x");
        assert_eq!(root.parent_of(&mut p, true).unwrap_err(), Errno::ELOOP);
    }

    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn removes_trees_without_following_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("keep"), "x").unwrap();
        let d = tempfile::tempdir().unwrap();
        let mut p = d.path().join("t");
        for i in 0..50 {
            p.push(format!("d{i}"));
            fs::create_dir_all(&p).unwrap();
            fs::write(p.join("f"), "x").unwrap();
            symlink(outside.path(), p.join("out")).unwrap();
        }
        let fd = fs::File::open(d.path()).unwrap();
        remove_all(fd.as_fd(), c"t").unwrap();
        assert!(!d.path().join("t").exists());
        assert!(outside.path().join("keep").exists());
        // Missing is fine; a plain file and a symlink go too.
        remove_all(fd.as_fd(), c"t").unwrap();
        fs::write(d.path().join("f"), "").unwrap();
        symlink(outside.path(), d.path().join("l")).unwrap();
        remove_all(fd.as_fd(), c"f").unwrap();
        remove_all(fd.as_fd(), c"l").unwrap();
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
        assert!(outside.path().join("keep").exists());
    }
}
