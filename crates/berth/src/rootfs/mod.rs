//! The container's root file system (runtime-spec "Root", "Mounts",
//! "rootfsPropagation", "maskedPaths", "readonlyPaths", "sysctl"): mounts
//! in config order with their options, devices, pivot_root (or move +
//! chroot), and the finishing remounts.
//!
//! [`plan`] runs in the runtime and prepares every argument; the
//! `pub(crate)` functions below run in the container's init and only walk
//! that plan.

pub mod devices;
pub mod options;
pub mod path;

use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::cgroups::Cgroup;
use crate::error::{Error, Result};
use crate::namespaces::NamespacePlan;
use crate::plan::{At, Fail, Labels};
use crate::sys;
use devices::DeviceStep;
use path::{ensure, Kind, PathInRoot};

/// What a mount step does.
#[derive(Debug)]
pub enum MountKind {
    /// A new file system (proc, tmpfs, sysfs, devpts, mqueue, ...).
    Fs {
        /// mount(2) source.
        source: CString,
        /// File system type.
        fstype: CString,
        /// File system data (options that are not flags).
        data: Option<CString>,
    },
    /// A bind mount of a host path.
    Bind {
        /// The host path.
        source: CString,
        /// Whether the source is a directory (else a file target is made).
        is_dir: bool,
    },
    /// A `cgroup` mount on a v1 host: a tmpfs with each controller's
    /// container cgroup bind-mounted below it.
    CgroupV1 {
        /// (dest inside the root, host cgroup dir) per controller.
        entries: Vec<(PathInRoot, CString)>,
    },
    /// A `cgroup` mount on a v2 host: the container's cgroup dir.
    CgroupV2 {
        /// The host cgroup dir (bind-mounted when no cgroup namespace).
        source: CString,
        /// Mount a fresh cgroup2 (the container has its own cgroup namespace).
        fresh: bool,
    },
}

/// One entry of `mounts`.
#[derive(Debug)]
pub struct MountStep {
    /// Step label (names `mounts[i]`).
    pub label: u32,
    /// Destination inside the root.
    pub dest: PathInRoot,
    /// What to mount.
    pub kind: MountKind,
    /// MS_* flags.
    pub flags: libc::c_ulong,
    /// Flags the options cleared explicitly.
    pub cleared: libc::c_ulong,
    /// Propagation changes applied after mounting.
    pub propagation: Vec<libc::c_ulong>,
}

/// The root file system part of a plan.
#[derive(Debug)]
pub struct RootfsPlan {
    /// The root file system directory on the host.
    pub rootfs: CString,
    /// The host mount point holding `rootfs` (made private for pivot_root).
    pub parent_mount: CString,
    /// Propagation applied to `/` before anything is mounted.
    pub root_propagation: libc::c_ulong,
    /// `linux.rootfsPropagation`, applied to the new `/` after pivoting.
    pub rootfs_propagation: Option<libc::c_ulong>,
    /// The mounts, in config order.
    pub mounts: Vec<MountStep>,
    /// Whether /dev is populated (no bind mount of /dev in the config).
    pub setup_dev: bool,
    /// Device nodes.
    pub devices: Vec<DeviceStep>,
    /// Whether /proc/kcore exists (for the /dev/core link).
    pub kcore: bool,
    /// Move + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Remount `/` read-only at the end.
    pub readonly: bool,
    /// `linux.maskedPaths`.
    pub masked: Vec<CString>,
    /// `linux.readonlyPaths`.
    pub readonly_paths: Vec<CString>,
    /// (/proc/sys path, value, label) per sysctl.
    pub sysctls: Vec<(CString, CString, u32)>,
    /// Hostname.
    pub hostname: Option<CString>,
    /// Domain name.
    pub domainname: Option<CString>,
    /// Labels of the fixed steps.
    pub labels: FixedLabels,
}

/// Labels for steps that are not per-entry.
#[derive(Debug, Default)]
pub struct FixedLabels {
    /// Preparing the root (propagation, bind onto itself).
    pub prepare: u32,
    /// /dev symlinks.
    pub symlinks: u32,
    /// pivot_root / chroot.
    pub pivot: u32,
    /// read-only root remount.
    pub readonly: u32,
    /// masked paths.
    pub masked: u32,
    /// readonly paths.
    pub readonly_paths: u32,
    /// sethostname / setdomainname.
    pub hostname: u32,
    /// rootfsPropagation.
    pub propagation: u32,
}

fn cstring(s: impl Into<Vec<u8>>, field: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::spec(field.to_string(), "contains a NUL byte"))
}

fn path_c(p: &Path, field: &str) -> Result<CString> {
    cstring(p.as_os_str().as_encoded_bytes(), field)
}

/// The host mount point that holds `path` (longest mountinfo prefix).
fn mount_point_of(path: &Path) -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut best = PathBuf::from("/");
    for line in info.lines() {
        let Some(mp) = line.split(' ').nth(4) else {
            continue;
        };
        let mp = PathBuf::from(unescape(mp));
        if path.starts_with(&mp) && mp.as_os_str().len() > best.as_os_str().len() {
            best = mp;
        }
    }
    best
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn known_filesystems() -> Vec<String> {
    std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split('\t').next_back().map(str::to_string))
        .collect()
}

/// Inputs to [`plan`] besides the spec.
pub struct PlanInput<'a> {
    /// The bundle directory (relative bind sources resolve against it).
    pub bundle: &'a Path,
    /// The root file system directory.
    pub rootfs: &'a Path,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// The container's cgroup (for `cgroup` mounts).
    pub cgroup: Option<&'a Cgroup>,
    /// The namespace plan.
    pub namespaces: &'a NamespacePlan,
}

/// Prepares the root file system setup.
pub fn plan(spec: &Spec, input: &PlanInput, labels: &mut Labels) -> Result<RootfsPlan> {
    let rootfs = input.rootfs;
    let meta = std::fs::metadata(rootfs)
        .map_err(|e| Error::spec("root.path", format!("{}: {e}", rootfs.display())))?;
    if !meta.is_dir() {
        return Err(Error::spec(
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }
    let rootfs = rootfs
        .canonicalize()
        .map_err(|e| Error::spec("root.path", format!("{}: {e}", rootfs.display())))?;
    let linux = spec.linux().clone().unwrap_or_default();
    let userns = input.namespaces.has(LinuxNamespaceType::User);
    let fs_types = known_filesystems();
    let mut mounts = Vec::new();
    let mut setup_dev = true;
    for (i, m) in spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let field = format!("mounts[{i}]");
        let opts = options::parse(
            m.options().as_deref().unwrap_or_default(),
            &format!("{field}.options"),
        )?;
        let dest = PathInRoot::new(
            &path::resolve(&rootfs, m.destination()),
            &format!("{field}.destination"),
        )?;
        let typ = m.typ().clone().unwrap_or_default();
        let bind = opts.is_bind() || typ == "bind";
        if bind && dest.path.as_bytes() == b"/dev" {
            setup_dev = false;
        }
        let label = labels.add(format!(
            "mount {} on {} ({field})",
            if bind {
                "bind".to_string()
            } else {
                format!("{typ:?}")
            },
            m.destination().display()
        ));
        let kind = if bind {
            let src = m.source().clone().ok_or_else(|| {
                Error::spec(format!("{field}.source"), "a bind mount needs a source")
            })?;
            let src = if src.is_absolute() {
                src
            } else {
                input.bundle.join(src)
            };
            let meta = std::fs::metadata(&src).map_err(|e| {
                Error::spec(format!("{field}.source"), format!("{}: {e}", src.display()))
            })?;
            MountKind::Bind {
                source: path_c(&src, &field)?,
                is_dir: meta.is_dir(),
            }
        } else if typ == "cgroup" || typ == "cgroup2" {
            let cg = input.cgroup.ok_or_else(|| {
                Error::spec(
                    format!("{field}.type"),
                    "a cgroup mount needs linux.cgroupsPath",
                )
            })?;
            if cg.is_v2() {
                let (_, dir) = cg.mount_sources().into_iter().next().unwrap_or_default();
                MountKind::CgroupV2 {
                    source: path_c(&dir, &field)?,
                    fresh: input.namespaces.creates(LinuxNamespaceType::Cgroup),
                }
            } else {
                let mut entries = Vec::new();
                for (name, dir) in cg.mount_sources() {
                    let d = path::resolve(&rootfs, &m.destination().join(&name));
                    entries.push((PathInRoot::new(&d, &field)?, path_c(&dir, &field)?));
                }
                MountKind::CgroupV1 { entries }
            }
        } else {
            if typ.is_empty() {
                return Err(Error::spec(format!("{field}.type"), "missing"));
            }
            if !fs_types.contains(&typ) {
                return Err(Error::spec(
                    format!("{field}.type"),
                    format!(
                        "unknown file system type {typ:?} for {} (not in /proc/filesystems)",
                        m.destination().display()
                    ),
                ));
            }
            let source = m.source().clone().unwrap_or_else(|| PathBuf::from(&typ));
            MountKind::Fs {
                source: path_c(&source, &field)?,
                fstype: cstring(typ.clone(), &format!("{field}.type"))?,
                data: (!opts.data.is_empty())
                    .then(|| cstring(opts.data.clone(), &format!("{field}.options")))
                    .transpose()?,
            }
        };
        mounts.push(MountStep {
            label,
            dest,
            kind,
            flags: opts.flags,
            cleared: opts.cleared,
            propagation: opts.propagation,
        });
    }
    let devices = if setup_dev {
        devices::plan(
            linux.devices().as_deref().unwrap_or_default(),
            userns,
            labels,
        )?
    } else {
        Vec::new()
    };
    let rootfs_propagation = linux
        .rootfs_propagation()
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(options::propagation)
        .transpose()?;
    // `/` must not propagate our mounts back to the host: slave unless the
    // config asked for private (shared is applied after pivoting).
    let root_propagation = match rootfs_propagation {
        Some(p) if p & libc::MS_PRIVATE != 0 => libc::MS_PRIVATE | libc::MS_REC,
        _ => libc::MS_SLAVE | libc::MS_REC,
    };
    let list = |v: &Option<Vec<String>>, field: &str| -> Result<Vec<CString>> {
        v.as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if !p.starts_with('/') {
                    return Err(Error::spec(
                        format!("{field}[{i}]"),
                        format!("{p:?} is not an absolute path"),
                    ));
                }
                cstring(p.as_bytes(), &format!("{field}[{i}]"))
            })
            .collect()
    };
    let mut sysctls = Vec::new();
    if let Some(s) = linux.sysctl() {
        let mut keys: Vec<_> = s.iter().collect();
        keys.sort();
        for (k, v) in keys {
            let field = format!("linux.sysctl.{k}");
            let path = format!("/proc/sys/{}", k.replace('.', "/"));
            sysctls.push((
                cstring(path, &field)?,
                cstring(v.as_bytes(), &field)?,
                labels.add(format!("set sysctl {k}={v} ({field})")),
            ));
        }
    }
    let fixed = FixedLabels {
        prepare: labels.add(format!(
            "prepare root file system {} (root.path)",
            rootfs.display()
        )),
        symlinks: labels.add("create /dev symlinks"),
        pivot: labels.add(if input.no_pivot {
            "move root file system and chroot (--no-pivot)"
        } else {
            "pivot_root into the root file system (root.path)"
        }),
        readonly: labels.add("remount root read-only (root.readonly)"),
        masked: labels.add("mask path (linux.maskedPaths)"),
        readonly_paths: labels.add("make path read-only (linux.readonlyPaths)"),
        hostname: labels.add("set hostname/domainname (hostname, domainname)"),
        propagation: labels.add("set root propagation (linux.rootfsPropagation)"),
    };
    Ok(RootfsPlan {
        parent_mount: path_c(&mount_point_of(&rootfs), "root.path")?,
        rootfs: path_c(&rootfs, "root.path")?,
        root_propagation,
        rootfs_propagation,
        mounts,
        setup_dev,
        devices,
        kcore: Path::new("/proc/kcore").exists(),
        no_pivot: input.no_pivot,
        readonly: spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false),
        masked: list(linux.masked_paths(), "linux.maskedPaths")?,
        readonly_paths: list(linux.readonly_paths(), "linux.readonlyPaths")?,
        sysctls,
        hostname: spec
            .hostname()
            .as_deref()
            .filter(|h| !h.is_empty())
            .map(|h| cstring(h.as_bytes(), "hostname"))
            .transpose()?,
        domainname: spec
            .domainname()
            .as_deref()
            .filter(|h| !h.is_empty())
            .map(|h| cstring(h.as_bytes(), "domainname"))
            .transpose()?,
        labels: fixed,
    })
}

// ---- run in the container's init ----

/// Bind flags the kernel keeps locked on a mount made in a user namespace.
const LOCKABLE: libc::c_ulong = libc::MS_NOSUID
    | libc::MS_NODEV
    | libc::MS_NOEXEC
    | libc::MS_NOATIME
    | libc::MS_NODIRATIME
    | libc::MS_RELATIME
    | libc::MS_RDONLY;

/// Remounts the bind mount at `target` with `flags`; where the kernel
/// refuses to drop a locked flag, keeps the mount's current flags.
fn bind_remount(
    target: &std::ffi::CStr,
    fd: RawFd,
    flags: libc::c_ulong,
    cleared: libc::c_ulong,
) -> sys::SysResult<()> {
    let base = libc::MS_BIND | libc::MS_REMOUNT;
    match sys::mount(None, target, None, base | flags, None) {
        Err(Errno::EPERM) => {
            let locked = sys::mount_flags_of(fd)? & LOCKABLE & !cleared;
            sys::mount(None, target, None, base | flags | locked, None)
        }
        r => r,
    }
}

/// Opens `dest` (creating it as `kind`) and runs `f` on its
/// `/proc/self/fd` path. Called again after each mount: a descriptor opened
/// before a mount names the directory underneath it.
fn at_target<T>(
    root: RawFd,
    dest: &PathInRoot,
    kind: Kind,
    f: impl FnOnce(&std::ffi::CStr, RawFd) -> sys::SysResult<T>,
) -> sys::SysResult<T> {
    let fd = ensure(root, dest, kind)?;
    let t = sys::FdPath::new(fd);
    let r = f(t.as_cstr(), fd);
    sys::close(fd);
    r
}

fn mount_one(root: RawFd, m: &MountStep) -> Result<(), Fail> {
    let l = m.label;
    let bind_flags = m.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
    let (dest, kind) = (&m.dest, &m.kind);
    match kind {
        MountKind::Fs {
            source,
            fstype,
            data,
        } => {
            at_target(root, dest, Kind::Dir, |t, _| {
                sys::mount(Some(source), t, Some(fstype), m.flags, data.as_deref())
            })
            .at(l)?;
        }
        MountKind::Bind { source, is_dir } => {
            let k = if *is_dir { Kind::Dir } else { Kind::File };
            let rec = m.flags & libc::MS_REC;
            at_target(root, dest, k, |t, _| {
                sys::mount(Some(source), t, None, libc::MS_BIND | rec, None)
            })
            .at(l)?;
            if bind_flags != 0 {
                at_target(root, dest, k, |t, fd| {
                    bind_remount(t, fd, bind_flags, m.cleared)
                })
                .at(l)?;
            }
        }
        MountKind::CgroupV1 { entries } => {
            let tmpfs_flags = m.flags & !libc::MS_RDONLY;
            at_target(root, dest, Kind::Dir, |t, _| {
                sys::mount(
                    Some(c"tmpfs"),
                    t,
                    Some(c"tmpfs"),
                    tmpfs_flags,
                    Some(c"mode=755"),
                )
            })
            .at(l)?;
            let sub_flags = bind_flags | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            for (sub, host) in entries {
                at_target(root, sub, Kind::Dir, |t, _| {
                    sys::mount(Some(host), t, None, libc::MS_BIND | libc::MS_REC, None)
                })
                .at(l)?;
                at_target(root, sub, Kind::Dir, |t, fd| {
                    bind_remount(t, fd, sub_flags, m.cleared)
                })
                .at(l)?;
            }
            if m.flags & libc::MS_RDONLY != 0 {
                at_target(root, dest, Kind::Dir, |t, _| {
                    sys::mount(None, t, None, libc::MS_REMOUNT | m.flags, Some(c"mode=755"))
                })
                .at(l)?;
            }
        }
        MountKind::CgroupV2 { source, fresh } => {
            if *fresh {
                at_target(root, dest, Kind::Dir, |t, _| {
                    sys::mount(Some(c"cgroup2"), t, Some(c"cgroup2"), m.flags, None)
                })
                .at(l)?;
            } else {
                at_target(root, dest, Kind::Dir, |t, _| {
                    sys::mount(Some(source), t, None, libc::MS_BIND | libc::MS_REC, None)
                })
                .at(l)?;
                at_target(root, dest, Kind::Dir, |t, fd| {
                    bind_remount(t, fd, bind_flags, m.cleared)
                })
                .at(l)?;
            }
        }
    }
    if !m.propagation.is_empty() {
        let k = match kind {
            MountKind::Bind { is_dir: false, .. } => Kind::File,
            _ => Kind::Dir,
        };
        at_target(root, dest, k, |t, _| propagate(t, &m.propagation)).at(l)?;
    }
    Ok(())
}

fn propagate(target: &std::ffi::CStr, flags: &[libc::c_ulong]) -> sys::SysResult<()> {
    for &f in flags {
        sys::mount(None, target, None, f, None)?;
    }
    Ok(())
}

/// Before pivoting: propagation, the root bound onto itself, every mount,
/// devices and /dev symlinks. Returns the root's descriptor.
pub(crate) fn prepare(p: &RootfsPlan) -> Result<RawFd, Fail> {
    let l = p.labels.prepare;
    sys::mount(None, c"/", None, p.root_propagation, None).at(l)?;
    sys::mount(
        Some(&p.rootfs),
        &p.rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .at(l)?;
    // pivot_root refuses a shared parent mount.
    match sys::mount(None, &p.parent_mount, None, libc::MS_PRIVATE, None) {
        Ok(()) | Err(Errno::EINVAL) => {}
        Err(e) => return Err(Fail { label: l, errno: e }),
    }
    let root = sys::open(&p.rootfs, libc::O_PATH | libc::O_DIRECTORY, 0).at(l)?;
    for m in &p.mounts {
        mount_one(root, m)?;
    }
    if p.setup_dev {
        for d in &p.devices {
            devices::create(root, d)?;
        }
        devices::symlinks(root, p.kcore, p.labels.symlinks)?;
    }
    Ok(root)
}

/// Makes the root the process's `/`.
pub(crate) fn pivot(p: &RootfsPlan) -> Result<(), Fail> {
    let l = p.labels.pivot;
    nix::unistd::chdir(p.rootfs.as_c_str()).at(l)?;
    if p.no_pivot {
        sys::mount(Some(&p.rootfs), c"/", None, libc::MS_MOVE, None).at(l)?;
        nix::unistd::chroot(c".").at(l)?;
    } else {
        sys::pivot_root(c".", c".").at(l)?;
        // The old root is stacked on the new one. It is already a slave
        // (or private) since `prepare`, so detaching it cannot propagate to
        // the host.
        nix::mount::umount2(c".", nix::mount::MntFlags::MNT_DETACH).at(l)?;
    }
    nix::unistd::chdir(c"/").at(l)?;
    if let Some(f) = p.rootfs_propagation {
        sys::mount(None, c"/", None, f, None).at(p.labels.propagation)?;
    }
    Ok(())
}

/// After pivoting: hostname, sysctls, masked and read-only paths, and the
/// read-only root.
pub(crate) fn finish(p: &RootfsPlan) -> Result<(), Fail> {
    if let Some(h) = &p.hostname {
        nix::unistd::sethostname(h.as_c_str().to_bytes_as_osstr()).at(p.labels.hostname)?;
    }
    if let Some(d) = &p.domainname {
        // SAFETY: pointer and length describe `d`'s bytes.
        let r = unsafe { libc::setdomainname(d.as_ptr(), d.as_bytes().len()) };
        if r != 0 {
            return Err(Fail {
                label: p.labels.hostname,
                errno: Errno::last(),
            });
        }
    }
    for (path, value, label) in &p.sysctls {
        let fd = sys::open(path, libc::O_WRONLY, 0).at(*label)?;
        let r = sys::write_all(fd, value.as_bytes());
        sys::close(fd);
        r.at(*label)?;
    }
    for path in &p.masked {
        mask(path).at(p.labels.masked)?;
    }
    for path in &p.readonly_paths {
        readonly(path).at(p.labels.readonly_paths)?;
    }
    if p.readonly {
        let fd = sys::open(c"/", libc::O_PATH | libc::O_DIRECTORY, 0).at(p.labels.readonly)?;
        let r = bind_remount(c"/", fd, libc::MS_RDONLY, 0);
        sys::close(fd);
        r.at(p.labels.readonly)?;
    }
    Ok(())
}

trait AsOsStr {
    fn to_bytes_as_osstr(&self) -> &std::ffi::OsStr;
}

impl AsOsStr for std::ffi::CStr {
    fn to_bytes_as_osstr(&self) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(self.to_bytes())
    }
}

fn mask(path: &std::ffi::CStr) -> sys::SysResult<()> {
    match sys::mount(Some(c"/dev/null"), path, None, libc::MS_BIND, None) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::ENOTDIR) | Err(Errno::EISDIR) => {
            sys::mount(Some(c"tmpfs"), path, Some(c"tmpfs"), libc::MS_RDONLY, None)
        }
        Err(e) => Err(e),
    }
}

fn readonly(path: &std::ffi::CStr) -> sys::SysResult<()> {
    match sys::mount(Some(path), path, None, libc::MS_BIND | libc::MS_REC, None) {
        Err(Errno::ENOENT) => return Ok(()),
        r => r?,
    }
    let fd = sys::open(path, libc::O_PATH, 0)?;
    let r = bind_remount(path, fd, libc::MS_RDONLY | libc::MS_REC, 0);
    sys::close(fd);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn finds_mount_point() {
        assert_eq!(
            mount_point_of(Path::new("/proc/self")),
            PathBuf::from("/proc")
        );
    }
}
