//! The host state the benchmark touches: signal dispositions (Ctrl-C
//! ends the run through the normal cleanup path), a private mount
//! namespace with a pure cgroup v1 view of `/sys/fs/cgroup`, and the cgroup v1/v2
//! directories under `/sys/fs/cgroup/*/berth-bench`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// The cgroup parent every benchmark container is placed under.
pub const CGROUP_PARENT: &str = "berth-bench";

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const UNIFIED: &str = "/sys/fs/cgroup/unified";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// True once SIGINT, SIGTERM or SIGHUP arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

extern "C" fn note_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turns SIGINT/SIGTERM/SIGHUP into a flag checked between runs, so an
/// interrupted benchmark still deletes its containers and cgroups. The
/// runtime in flight gets a terminal's SIGINT itself (same process group)
/// and is reaped as usual.
pub fn catch_signals() -> Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(note_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe, and it replaces no handler Rust relies on.
        unsafe { sigaction(sig, &action) }.with_context(|| format!("sigaction {sig}"))?;
    }
    Ok(())
}

/// crun refuses a hybrid host (v1 controllers plus a cgroup2 mount at
/// `/sys/fs/cgroup/unified`), so the benchmark gives itself, and the
/// runtimes it starts, a pure v1 view: in a private mount namespace a
/// fresh read-only tmpfs covers `/sys/fs/cgroup`, holding bind mounts of
/// the v1 hierarchies (and the same symlinks) but no `unified`. Merely
/// unmounting `unified` would leave its empty directory on the host's
/// tmpfs, where a runtime in legacy mode creates plain directories that
/// then hide under the host's cgroup2 mount. `staging` is an empty path
/// the old tree is bound to meanwhile. Returns whether anything was
/// hidden.
pub fn hide_unified_cgroup2(staging: &Path) -> Result<bool> {
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
    .context("making / rprivate in the benchmark's mount namespace")?;
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
fn cover_cgroup_root(staging: &Path) -> Result<()> {
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

fn bind(source: &Path, target: &Path) -> Result<()> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("bind-mounting {} on {}", source.display(), target.display()))
}

fn is_mount_point(path: &str) -> Result<bool> {
    let info =
        fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    // Field 5 is the mount point; spaces in it are octal-escaped, which
    // cannot matter for the fixed path asked about.
    Ok(info.lines().any(|l| l.split(' ').nth(4) == Some(path)))
}

/// Removes `/sys/fs/cgroup/<hierarchy>/berth-bench` (and the v2 root's
/// `berth-bench`) with everything below it, leaves first. Runtimes
/// normally remove their own leaf; this catches runs cut short. Returns
/// the directories that could not be removed.
pub fn remove_cgroups() -> Vec<(PathBuf, io::Error)> {
    let mut tops = vec![Path::new(CGROUP_ROOT).join(CGROUP_PARENT)];
    if let Ok(entries) = fs::read_dir(CGROUP_ROOT) {
        for entry in entries.flatten() {
            // Symlinks (cpu -> cpu,cpuacct) name a hierarchy already listed.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                tops.push(entry.path().join(CGROUP_PARENT));
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
