//! The system calls nix does not wrap: extended attributes, set through a
//! descriptor or, for nodes that cannot be opened (symlinks, devices),
//! by name under a directory descriptor.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

/// fsetxattr(2) on an open file or directory.
pub(crate) fn fsetxattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8]) -> nix::Result<()> {
    // SAFETY: `name` is NUL-terminated, `value` is valid for `value.len()`
    // bytes, and `fd` is open for the duration of the call.
    let ret = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(ret).map(drop)
}

/// lsetxattr(2) on `dir`/`entry` without following `entry` if it is a
/// symlink. The directory is named through `/proc/self/fd`, so no path
/// outside the descriptor is looked up; `entry` must be a single component.
pub(crate) fn lsetxattr_at(
    dir: BorrowedFd<'_>,
    entry: &CStr,
    name: &CStr,
    value: &[u8],
) -> nix::Result<()> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(entry.to_bytes());
    let path = CString::new(path).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `path` and `name` are NUL-terminated, `value` is valid for
    // `value.len()` bytes.
    let ret = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(ret).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn lgetxattr(path: &CStr, name: &CStr) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 256];
        // SAFETY: both strings are NUL-terminated; `buf` is writable for
        // its length.
        let n = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        (n >= 0).then(|| {
            buf.truncate(n as usize);
            buf
        })
    }

    #[test]
    fn sets_user_xattrs_by_descriptor_and_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(dir.path().join("f")).unwrap();
        fsetxattr(f.as_fd(), c"user.a", b"1").unwrap();
        let d = std::fs::File::open(dir.path()).unwrap();
        std::fs::File::create(dir.path().join("g")).unwrap();
        lsetxattr_at(d.as_fd(), c"g", c"user.b", b"2").unwrap();
        let p = |n: &str| {
            CString::new(dir.path().join(n).into_os_string().into_encoded_bytes()).unwrap()
        };
        assert_eq!(lgetxattr(&p("f"), c"user.a").unwrap(), b"1");
        assert_eq!(lgetxattr(&p("g"), c"user.b").unwrap(), b"2");
        // user.* is not allowed on symlinks: an error, not a follow.
        std::os::unix::fs::symlink("g", dir.path().join("l")).unwrap();
        assert_eq!(
            lsetxattr_at(d.as_fd(), c"l", c"user.c", b"3"),
            Err(Errno::EPERM)
        );
        assert!(lgetxattr(&p("g"), c"user.c").is_none());
    }
}
