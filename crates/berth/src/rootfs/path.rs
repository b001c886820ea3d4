//! Paths inside the container's root, created and opened without ever
//! leaving it: every component is resolved with openat2(RESOLVE_IN_ROOT),
//! so a symlink in the image (`/evil -> /etc` or `../../..`) resolves
//! within the root and a mount can never land outside it.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::{Component, Path};

use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::sys::{self, SysResult};

/// An absolute path inside the root, split in advance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathInRoot {
    /// The whole path, e.g. `/dev/pts`.
    pub path: CString,
    /// Each component, e.g. `dev`, `pts`.
    pub components: Vec<CString>,
    /// Each prefix, e.g. `/dev`, `/dev/pts`.
    pub prefixes: Vec<CString>,
}

impl PathInRoot {
    /// Splits `path` (made absolute, `..` and `.` removed lexically: the
    /// kernel still confines whatever symlinks do at run time).
    pub fn new(path: &Path, field: &str) -> Result<PathInRoot> {
        let mut components = Vec::new();
        for c in path.components() {
            match c {
                Component::Normal(s) => components.push(s.to_os_string()),
                Component::ParentDir => {
                    components.pop();
                }
                _ => {}
            }
        }
        let nul = |_| Error::spec(field.to_string(), "path contains a NUL byte");
        let mut prefixes = Vec::new();
        let mut acc = String::new();
        let mut comps = Vec::new();
        for c in &components {
            let s = c.to_string_lossy();
            acc.push('/');
            acc.push_str(&s);
            prefixes.push(CString::new(acc.clone()).map_err(nul)?);
            comps.push(CString::new(s.as_bytes()).map_err(nul)?);
        }
        Ok(PathInRoot {
            path: CString::new(if acc.is_empty() { "/".into() } else { acc }).map_err(nul)?,
            components: comps,
            prefixes,
        })
    }
}

/// Resolves `path` inside `root` the way the kernel would with `root` as
/// `/`: symlinks are followed (absolute ones re-rooted), `..` stops at the
/// root, and a missing component ends the resolution. The result is a
/// symlink-free path inside the root, so the init can create the missing
/// parts of a destination whose link dangles (`/var/run -> /run`).
pub fn resolve(root: &Path, path: &Path) -> std::path::PathBuf {
    let mut done: Vec<std::ffi::OsString> = Vec::new();
    let mut todo: Vec<std::ffi::OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .rev()
        .collect();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        let mut here = root.to_path_buf();
        here.extend(&done);
        here.push(&c);
        match std::fs::read_link(&here) {
            Ok(target) if links < 40 => {
                links += 1;
                if target.is_absolute() {
                    done.clear();
                }
                for t in target.components().rev() {
                    match t {
                        Component::Normal(s) => todo.push(s.to_os_string()),
                        Component::ParentDir => todo.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => done.push(c),
        }
    }
    let mut out = std::path::PathBuf::from("/");
    out.extend(done);
    out
}

/// What to create at the end of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// An empty regular file (a bind mount target for a file).
    File,
}

/// Creates `p` (and missing parents) inside `root`, returning an O_PATH
/// descriptor of it.
pub fn ensure(root: RawFd, p: &PathInRoot, kind: Kind) -> SysResult<RawFd> {
    match sys::open_in_root(root, &p.path, libc::O_PATH) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let mut parent = sys::open_in_root(root, c"/", libc::O_PATH | libc::O_DIRECTORY)?;
    let n = p.components.len();
    for i in 0..n {
        let last = i + 1 == n;
        let name = &p.components[i];
        let made = if last && kind == Kind::File {
            // SAFETY: `name` is NUL-terminated; O_EXCL never follows a
            // symlink at the last component.
            let fd = unsafe {
                libc::openat(
                    parent,
                    name.as_ptr(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                )
            };
            if fd >= 0 {
                sys::close(fd);
                Ok(())
            } else {
                Err(Errno::last())
            }
        } else {
            // SAFETY: `name` is NUL-terminated.
            let r = unsafe { libc::mkdirat(parent, name.as_ptr(), 0o755) };
            if r == 0 {
                Ok(())
            } else {
                Err(Errno::last())
            }
        };
        if let Err(e) = made {
            if e != Errno::EEXIST {
                sys::close(parent);
                return Err(e);
            }
        }
        let flags = if last && kind == Kind::File {
            libc::O_PATH
        } else {
            libc::O_PATH | libc::O_DIRECTORY
        };
        let next = sys::open_in_root(root, &p.prefixes[i], flags);
        sys::close(parent);
        parent = next?;
    }
    Ok(parent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn splits_and_normalises() {
        let p = PathInRoot::new(Path::new("/a/./b/../c"), "f").unwrap();
        assert_eq!(p.path.to_str().unwrap(), "/a/c");
        assert_eq!(p.prefixes[1].to_str().unwrap(), "/a/c");
        assert_eq!(p.components[0].to_str().unwrap(), "a");
        let p = PathInRoot::new(Path::new("/../../etc"), "f").unwrap();
        assert_eq!(p.path.to_str().unwrap(), "/etc");
    }

    #[test]
    fn symlinks_cannot_escape_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("evil")).unwrap();
        std::os::unix::fs::symlink("../../../..", root.path().join("up")).unwrap();
        let rootfd = std::fs::File::open(root.path()).unwrap();
        for (link, kind) in [("/evil/x/y", Kind::Dir), ("/up/z", Kind::File)] {
            let resolved = resolve(root.path(), Path::new(link));
            let p = PathInRoot::new(&resolved, "f").unwrap();
            let fd = ensure(rootfd.as_raw_fd(), &p, kind).unwrap();
            sys::close(fd);
        }
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // The absolute symlink target was re-rooted: created inside the root.
        assert!(root
            .path()
            .join(outside.path().strip_prefix("/").unwrap())
            .join("x/y")
            .is_dir());
        assert!(root.path().join("z").is_file());
    }
}
