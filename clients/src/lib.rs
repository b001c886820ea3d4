//! Test support for running Berth under real container managers:
//! containerd (through `ctr` and its runc shim), podman (through conmon)
//! and dockerd, each started by the tests themselves with their own state
//! directories and sockets, and stopped and cleaned up afterwards.
//!
//! The tests live in `tests/`; this library holds what they share: the
//! `berth` binary, installing the managers' Debian packages, a busybox
//! image as a `docker save` archive, commands with time limits, daemons
//! that stop when dropped, and leak checks.

pub mod daemon;
pub mod host;

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use daemon::Daemon;
pub use testbed::image;

/// How long one client command may take.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// The `berth` binary of this build (`target/<profile>/berth`): a
/// workspace test run builds it for runtime-shim's tests.
pub fn berth() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .expect("test binary directory");
    let b = dir.join("berth");
    assert!(
        b.is_file(),
        "{} is missing: build it first (cargo build -p berth-shim)",
        b.display()
    );
    b
}

/// The runtime binary under test: berth, or the runc-compatible binary
/// named by `BERTH_TEST_RUNTIME` (to check the tests against runc).
pub fn runtime() -> PathBuf {
    match std::env::var_os(testbed::RUNTIME_VAR) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => berth(),
    }
}

/// Installing the managers' Debian packages when missing.
pub use testbed::packages::ensure_packages;

/// What a finished command printed, and how it ended.
pub struct Out {
    /// The command line, for messages.
    pub cmdline: String,
    /// Exit code; None when killed by a signal or timed out.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Panics unless the command exited 0.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "command failed:\n{self}");
        self
    }

    /// Panics unless the command exited with `code`.
    #[track_caller]
    pub fn exits(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit:\n{self}");
        self
    }

    /// Panics unless stdout contains `needle`.
    #[track_caller]
    pub fn has(&self, needle: &str) -> &Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}:\n{self}"
        );
        self
    }

    /// Stdout without surrounding whitespace.
    pub fn out(&self) -> &str {
        self.stdout.trim()
    }
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ {}", self.cmdline)?;
        writeln!(f, "exit: {:?}", self.code)?;
        writeln!(f, "stdout:\n{}", self.stdout)?;
        write!(f, "stderr:\n{}", self.stderr)
    }
}

/// Runs `cmd` to the end with output in files (a daemon it starts may keep
/// a pipe open), killing its process group after `limit`.
pub fn run(cmd: &mut Command, limit: Duration) -> Out {
    let cmdline = format!("{cmd:?}").replace('"', "");
    let mut out = tempfile::tempfile().expect("tempfile");
    let mut err = tempfile::tempfile().expect("tempfile");
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"))
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
    let until = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() >= until {
            host::kill_group(child.id() as i32);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |f: &mut File| {
        let mut s = String::new();
        let _ = f.rewind();
        let _ = f.read_to_string(&mut s);
        s
    };
    let mut stderr = read(&mut err);
    if status.is_none() {
        stderr.push_str(&format!("\n(killed after {limit:?})"));
    }
    Out {
        cmdline,
        code: status.and_then(|s| s.code()),
        stdout: read(&mut out),
        stderr,
    }
}

/// `cmd` run under a pseudo-terminal by util-linux's `script`, for
/// clients that need one on their stdin (`ctr run -t`, `podman run -t`).
pub fn in_terminal(cmd: &Command) -> Command {
    let mut line = shell_quote(cmd.get_program().to_string_lossy().as_ref());
    for a in cmd.get_args() {
        line.push(' ');
        line.push_str(&shell_quote(&a.to_string_lossy()));
    }
    let mut s = Command::new("script");
    s.args(["-qefc", &line, "/dev/null"]);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => s.env(k, v),
            None => s.env_remove(k),
        };
    }
    s
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A fresh name for this process: `<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `f` every 50 ms until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that `leaks` finds nothing, allowing up to 10 s for exiting
/// processes and cgroups to go.
#[track_caller]
pub fn assert_clean(mut leaks: impl FnMut() -> Vec<String>) {
    let mut found = Vec::new();
    let clean = eventually(Duration::from_secs(10), || {
        found = leaks();
        found.is_empty()
    });
    assert!(clean, "left behind:\n  {}", found.join("\n  "));
}

/// The kernel's count of OOM kills so far (`oom_kill` in /proc/vmstat).
pub fn oom_kills() -> u64 {
    std::fs::read_to_string("/proc/vmstat")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}
