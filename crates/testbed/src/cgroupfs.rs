//! A pure cgroup v1 view of this hybrid host for runtimes that refuse
//! hybrid hosts (crun), and removal of the cgroup trees a run cut short
//! left behind.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const UNIFIED: &str = "/sys/fs/cgroup/unified";

/// `anyhow`-style context for io results.
trait Context<T> {
    fn context(self, what: &str) -> io::Result<T>;
    fn with_context(self, what: impl FnOnce() -> String) -> io::Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn context(self, what: &str) -> io::Result<T> {
        self.with_context(|| what.to_string())
    }

    fn with_context(self, what: impl FnOnce() -> String) -> io::Result<T> {
        self.map_err(|e| io::Error::other(format!("{}: {e}", what())))
    }
}

/// crun refuses a hybrid host (v1 controllers plus a cgroup2 mount at
/// `/sys/fs/cgroup/unified`), so the calling process gives itself, and the
/// runtimes it starts, a pure v1 view: in a private mount namespace a
/// fresh read-only tmpfs covers `/sys/fs/cgroup`, holding bind mounts of
/// the v1 hierarchies (and the same symlinks) but no `unified`. Merely
/// unmounting `unified` would leave its empty directory on the host's
/// tmpfs, where a runtime in legacy mode creates plain directories that
/// then hide under the host's cgroup2 mount. `staging` is an empty path
/// the old tree is bound to meanwhile. Returns whether anything was
/// hidden.
pub fn hide_unified_cgroup2(staging: &Path) -> io::Result<bool> {
    if !is_mount_point(UNIFIED)? {
        return Ok(false);
    }
    unshare(CloneFlags::CLONE_NEWNS).context("unshare(CLONE_NEWNS)")?;
    // Without this the mounts below would propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making / rprivate in a private mount namespace")?;
    fs::create_dir(staging).with_context(|| format!("creating {}", staging.display()))?;
    bind(Path::new(CGROUP_ROOT), staging)?;
    let covered = cover_cgroup_root(staging);
    // Detached even on failure: the staging path lies in the tempdir, and
    // removing that tree must not descend into the live hierarchies.
    let detached = umount2(staging, MntFlags::MNT_DETACH)
        .with_context(|| format!("unmounting {}", staging.display()));
    covered?;
    detached?;
    fs::remove_dir(staging).with_context(|| format!("removing {}", staging.display()))?;
    Ok(true)
}

/// Mounts the read-only tmpfs with the v1 hierarchies of the old tree,
/// which is bound at `staging`.
fn cover_cgroup_root(staging: &Path) -> io::Result<()> {
    let mut hierarchies = Vec::new();
    let mut links = Vec::new();
    for entry in fs::read_dir(staging).with_context(|| format!("listing {CGROUP_ROOT}"))? {
        let entry = entry.with_context(|| format!("listing {CGROUP_ROOT}"))?;
        let name = entry.file_name();
        let kind = entry
            .file_type()
            .with_context(|| format!("{CGROUP_ROOT}/{name:?}"))?;
        if name == "unified" {
            continue;
        } else if kind.is_symlink() {
            let target = fs::read_link(entry.path()).with_context(|| format!("{name:?}"))?;
            links.push((name, target));
        } else if kind.is_dir() {
            hierarchies.push(name);
        }
    }

    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        CGROUP_ROOT,
        Some("tmpfs"),
        flags,
        Some("mode=755"),
    )
    .with_context(|| format!("mounting a tmpfs on {CGROUP_ROOT}"))?;
    let root = Path::new(CGROUP_ROOT);
    for name in &hierarchies {
        let target = root.join(name);
        fs::create_dir(&target).with_context(|| format!("creating {}", target.display()))?;
        bind(&staging.join(name), &target)?;
    }
    for (name, target) in &links {
        std::os::unix::fs::symlink(target, root.join(name))
            .with_context(|| format!("linking {CGROUP_ROOT}/{name:?}"))?;
    }
    // Read-only, as on a host set up by an init system: a runtime cannot
    // leave stray directories beside the hierarchies.
    mount(
        None::<&str>,
        CGROUP_ROOT,
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | flags,
        Some("mode=755"),
    )
    .with_context(|| format!("remounting {CGROUP_ROOT} read-only"))
}

fn bind(source: &Path, target: &Path) -> io::Result<()> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("bind-mounting {} on {}", source.display(), target.display()))
}

fn is_mount_point(path: &str) -> io::Result<bool> {
    let info =
        fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    // Field 5 is the mount point; spaces in it are octal-escaped, which
    // cannot matter for the fixed path asked about.
    Ok(info.lines().any(|l| l.split(' ').nth(4) == Some(path)))
}

/// Removes `/sys/fs/cgroup/<hierarchy>/<parent>` (and the v2 root's
/// `<parent>`) with everything below it, leaves first. Runtimes normally
/// remove their own leaf; this catches runs cut short. Returns the
/// directories that could not be removed.
pub fn remove_cgroup_trees(parent: &str) -> Vec<(PathBuf, io::Error)> {
    let mut tops = vec![Path::new(CGROUP_ROOT).join(parent)];
    if let Ok(entries) = fs::read_dir(CGROUP_ROOT) {
        for entry in entries.flatten() {
            // Symlinks (cpu -> cpu,cpuacct) name a hierarchy already listed.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                tops.push(entry.path().join(parent));
            }
        }
    }
    let mut failed = Vec::new();
    for top in tops {
        remove_tree(&top, &mut failed);
    }
    failed
}

/// cgroup directories go with rmdir alone (their control files cannot be
/// unlinked), children before parents.
fn remove_tree(dir: &Path, failed: &mut Vec<(PathBuf, io::Error)>) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => return failed.push((dir.to_path_buf(), e)),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path(), failed);
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => failed.push((dir.to_path_buf(), e)),
    }
}
