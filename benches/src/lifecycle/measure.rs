//! Running one runtime command and reading its cost from `wait4(2)`:
//! wall time around spawn + reap, and `ru_maxrss` from the rusage the
//! kernel hands back when the process is reaped.
//!
//! What `ru_maxrss` from `wait4` covers: the kernel fills it as
//! `getrusage(RUSAGE_BOTH)` of the reaped process, i.e. the larger of the
//! process's own RSS high-water mark (including the images it had before
//! any `execve`) and the high-water marks of the descendants it reaped
//! itself, recursively. It is the peak of the single largest process in
//! the runtime's tree, not a sum, and a descendant re-parented away from
//! the runtime (to the host init) is not counted. The same holds for every
//! runtime, since each is measured the same way.

use std::fs::File;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// One finished command.
pub struct Outcome {
    pub status: ExitStatus,
    pub elapsed: Duration,
    /// `ru_maxrss` in KiB.
    pub max_rss_kib: u64,
}

/// Runs `program args`, with stdout discarded and stderr sent to
/// `stderr_file` (a file rather than a pipe, so nothing needs draining
/// while the process runs), and reaps it with `wait4`.
pub fn run(program: &Path, args: &[&str], stderr_file: &Path) -> Result<Outcome> {
    let stderr =
        File::create(stderr_file).with_context(|| format!("creating {}", stderr_file.display()))?;
    let start = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("spawning {}", program.display()))?;
    let pid = i32::try_from(child.id()).context("child pid out of range")?;
    // The child is reaped below, not through `Child::wait`; dropping a
    // `Child` neither waits for nor kills the process.
    drop(child);
    let (status, usage) =
        wait4(pid).with_context(|| format!("wait4 on {} (pid {pid})", program.display()))?;
    let elapsed = start.elapsed();
    Ok(Outcome {
        status: ExitStatus::from_raw(status),
        elapsed,
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    })
}

/// `wait4(pid, &status, 0, &rusage)`, retried on EINTR (a benchmark
/// interrupted by Ctrl-C still reaps the runtime it started).
fn wait4(pid: libc::pid_t) -> io::Result<(libc::c_int, libc::rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is a plain C struct of integers; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both out-pointers point to live, writable locals of the
        // types wait4 expects.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((status, usage));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
