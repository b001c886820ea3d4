//! Device nodes and /dev symlinks (runtime-spec "Devices" and "Default
//! Devices"): mknod, or a bind mount of the host's node inside a user
//! namespace where mknod is not allowed.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::Path;

use nix::errno::Errno;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::path::{ensure, Kind, PathInRoot};
use crate::error::{Error, Result};
use crate::plan::{At, Fail, Labels};
use crate::sys;

/// One device node to create.
#[derive(Debug)]
pub struct DeviceStep {
    /// Where, inside the root.
    pub dest: PathInRoot,
    /// Type and permission bits for mknod.
    pub mode: libc::mode_t,
    /// Device number.
    pub dev: libc::dev_t,
    /// Owner.
    pub uid: libc::uid_t,
    /// Group.
    pub gid: libc::gid_t,
    /// The host's node, bind-mounted when mknod is not allowed.
    pub host: CString,
    /// Bind-mount instead of mknod (inside a new user namespace).
    pub bind: bool,
    /// Step label.
    pub label: u32,
}

/// The devices every container gets (runtime-spec "Default Devices").
const DEFAULTS: [(&str, u32, u32); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Plans `linux.devices` plus the default devices not overridden there.
pub fn plan(devices: &[LinuxDevice], bind: bool, labels: &mut Labels) -> Result<Vec<DeviceStep>> {
    let mut out = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let field = format!("linux.devices[{i}]");
        if !d.path().is_absolute() {
            return Err(Error::spec(
                format!("{field}.path"),
                format!("{:?} is not an absolute path", d.path()),
            ));
        }
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(Error::spec(
                    format!("{field}.type"),
                    "\"a\" is not a device node type",
                ))
            }
        };
        let perm = d.file_mode().unwrap_or(0o666) & 0o7777;
        out.push(step(
            d.path(),
            kind | perm,
            (d.major() as u32, d.minor() as u32),
            (d.uid().unwrap_or(0), d.gid().unwrap_or(0)),
            bind,
            labels.add(format!("create device {} ({field})", d.path().display())),
            &field,
        )?);
    }
    for (path, major, minor) in DEFAULTS {
        if devices.iter().any(|d| d.path() == Path::new(path)) {
            continue;
        }
        out.push(step(
            Path::new(path),
            libc::S_IFCHR | 0o666,
            (major, minor),
            (0, 0),
            bind,
            labels.add(format!("create default device {path}")),
            path,
        )?);
    }
    Ok(out)
}

fn step(
    path: &Path,
    mode: libc::mode_t,
    (major, minor): (u32, u32),
    (uid, gid): (u32, u32),
    bind: bool,
    label: u32,
    field: &str,
) -> Result<DeviceStep> {
    Ok(DeviceStep {
        dest: PathInRoot::new(path, field)?,
        mode,
        dev: libc::makedev(major, minor),
        uid,
        gid,
        host: CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::spec(field.to_string(), "path contains a NUL byte"))?,
        bind,
        label,
    })
}

/// Creates one device inside `root`.
pub(crate) fn create(root: RawFd, d: &DeviceStep) -> Result<(), Fail> {
    if d.bind {
        let fd = ensure(root, &d.dest, Kind::File).at(d.label)?;
        let target = sys::FdPath::new(fd);
        let r = sys::mount(Some(&d.host), target.as_cstr(), None, libc::MS_BIND, None);
        sys::close(fd);
        return r.at(d.label);
    }
    // Parents first, then the node itself in its parent directory.
    let n = d.dest.components.len();
    let parent = if n > 1 {
        let parent_path = PathInRoot {
            path: d.dest.prefixes[n - 2].clone(),
            components: d.dest.components[..n - 1].to_vec(),
            prefixes: d.dest.prefixes[..n - 1].to_vec(),
        };
        ensure(root, &parent_path, Kind::Dir).at(d.label)?
    } else {
        sys::open_in_root(root, c"/", libc::O_PATH | libc::O_DIRECTORY).at(d.label)?
    };
    let name = &d.dest.components[n - 1];
    // SAFETY: `name` is NUL-terminated; `parent` is a directory descriptor.
    let r = unsafe { libc::mknodat(parent, name.as_ptr(), d.mode, d.dev) };
    let r = if r == 0 { Ok(()) } else { Err(Errno::last()) };
    let r = match r {
        Ok(()) | Err(Errno::EEXIST) => {
            // SAFETY: as above; AT_SYMLINK_NOFOLLOW keeps a planted symlink
            // from redirecting the chown.
            let c = unsafe {
                libc::fchownat(
                    parent,
                    name.as_ptr(),
                    d.uid,
                    d.gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            if c == 0 {
                Ok(())
            } else {
                Err(Errno::last())
            }
        }
        Err(e) => Err(e),
    };
    sys::close(parent);
    r.at(d.label)
}

/// The /dev symlinks every container gets: (target, link).
pub const SYMLINKS: [(&str, &str); 5] = [
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
    ("pts/ptmx", "ptmx"),
];

/// Creates the /dev symlinks (an existing entry is left as it is, except
/// /dev/ptmx, which must point at the container's devpts).
pub(crate) fn symlinks(root: RawFd, with_kcore: bool, label: u32) -> Result<(), Fail> {
    let dev = ensure(
        root,
        &PathInRoot::new(Path::new("/dev"), "/dev").map_err(|_| Fail {
            label,
            errno: Errno::EINVAL,
        })?,
        Kind::Dir,
    )
    .at(label)?;
    let mut r = Ok(());
    for (target, link) in SYMLINKS
        .iter()
        .copied()
        .chain(with_kcore.then_some(("/proc/kcore", "core")))
    {
        let mut t = [0u8; 32];
        let mut l = [0u8; 16];
        t[..target.len()].copy_from_slice(target.as_bytes());
        l[..link.len()].copy_from_slice(link.as_bytes());
        if link == "ptmx" {
            // SAFETY: `l` is NUL-terminated.
            unsafe { libc::unlinkat(dev, l.as_ptr().cast(), 0) };
        }
        // SAFETY: both buffers are NUL-terminated (zero-filled past the text).
        let s = unsafe { libc::symlinkat(t.as_ptr().cast(), dev, l.as_ptr().cast()) };
        if s != 0 && Errno::last() != Errno::EEXIST {
            r = Err(Errno::last());
            break;
        }
    }
    sys::close(dev);
    r.at(label)
}
