//! Reading extended attributes (listxattr(2), getxattr(2)) through an
//! open descriptor, or, for what cannot be opened without side effects
//! (symlinks, devices, fifos), by name under a directory descriptor
//! without following the last component.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

/// Where the attributes are read from.
#[derive(Clone, Copy)]
pub(super) enum Source<'a> {
    /// An open file or directory.
    Fd(BorrowedFd<'a>),
    /// `entry` (one component) in the directory `dir`.
    At(BorrowedFd<'a>, &'a CStr),
}

/// Every attribute of `src` as (name, value), sorted by name. A file
/// system without xattrs gives none.
pub(super) fn read_all(src: Source<'_>) -> nix::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let path = match src {
        Source::Fd(_) => None,
        Source::At(dir, entry) => {
            let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
            p.extend_from_slice(entry.to_bytes());
            Some(CString::new(p).map_err(|_| Errno::EINVAL)?)
        }
    };
    let list = sized(|buf| match (src, &path) {
        // SAFETY: `buf` is writable for its length (a null pointer with
        // length 0 asks for the size); the descriptor is open.
        (Source::Fd(fd), _) => unsafe {
            libc::flistxattr(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
        },
        // SAFETY: as above; `p` is NUL-terminated.
        (_, Some(p)) => unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) },
        (Source::At(..), None) => -1,
    });
    let list = match list {
        Ok(l) => l,
        Err(Errno::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = CString::new(name).map_err(|_| Errno::EINVAL)?;
        let value = sized(|buf| match (src, &path) {
            // SAFETY: `cname` is NUL-terminated, `buf` writable for its
            // length, the descriptor open.
            (Source::Fd(fd), _) => unsafe {
                libc::fgetxattr(
                    fd.as_raw_fd(),
                    cname.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            },
            // SAFETY: as above; `p` is NUL-terminated.
            (_, Some(p)) => unsafe {
                libc::lgetxattr(
                    p.as_ptr(),
                    cname.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            },
            (Source::At(..), None) => -1,
        });
        match value {
            Ok(v) => out.push((name.to_vec(), v)),
            // Removed between the list and the read.
            Err(Errno::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

/// Calls `f` first for the size, then with a buffer of that size, again
/// if the value grew in between (ERANGE).
fn sized(mut f: impl FnMut(&mut [u8]) -> isize) -> nix::Result<Vec<u8>> {
    loop {
        let n = Errno::result(f(&mut []))?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; n as usize];
        match Errno::result(f(&mut buf)) {
            Ok(m) => {
                buf.truncate(m as usize);
                return Ok(buf);
            }
            Err(Errno::ERANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn reads_by_descriptor_and_by_name_without_following() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        let c = CString::new(f.as_os_str().as_encoded_bytes()).unwrap();
        for (k, v) in [(c"user.b", &b"2"[..]), (c"user.a", &b""[..])] {
            // SAFETY: both strings are NUL-terminated, `v` is valid for
            // its length.
            let r =
                unsafe { libc::setxattr(c.as_ptr(), k.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
            assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        }
        let file = std::fs::File::open(&f).unwrap();
        let got = read_all(Source::Fd(file.as_fd())).unwrap();
        let user: Vec<_> = got
            .iter()
            .filter(|(k, _)| k.starts_with(b"user."))
            .collect();
        assert_eq!(
            user,
            [
                &(b"user.a".to_vec(), vec![]),
                &(b"user.b".to_vec(), b"2".to_vec())
            ]
        );
        std::os::unix::fs::symlink("f", dir.path().join("l")).unwrap();
        let d = std::fs::File::open(dir.path()).unwrap();
        let by_name = read_all(Source::At(d.as_fd(), c"f")).unwrap();
        assert_eq!(by_name, got);
        // The symlink's own attributes, not its target's.
        let link = read_all(Source::At(d.as_fd(), c"l")).unwrap();
        assert!(
            link.iter().all(|(k, _)| !k.starts_with(b"user.")),
            "{link:?}"
        );
    }
}
