//! The host state the benchmark touches: signal dispositions (Ctrl-C
//! ends the run through the normal cleanup path), a private mount
//! namespace with a pure cgroup v1 view of `/sys/fs/cgroup`, and the cgroup v1/v2
//! directories under `/sys/fs/cgroup/*/berth-bench`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// The cgroup parent every benchmark container is placed under.
pub const CGROUP_PARENT: &str = "berth-bench";

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

/// A pure cgroup v1 view for all three runtimes (crun refuses this
/// hybrid host); see [`testbed::cgroupfs::hide_unified_cgroup2`].
pub fn hide_unified_cgroup2(staging: &Path) -> Result<bool> {
    Ok(testbed::cgroupfs::hide_unified_cgroup2(staging)?)
}

/// Removes what runs cut short left under `berth-bench`.
pub fn remove_cgroups() -> Vec<(PathBuf, io::Error)> {
    testbed::cgroupfs::remove_cgroup_trees(CGROUP_PARENT)
}
