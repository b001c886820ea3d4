//! Driving a runc-compatible runtime binary (`berth`, or `runc`/`crun` to
//! check the tests themselves) through its command line, with a per-test
//! `--root`, unique ids, captured output and a time limit on every call.

use std::fmt;
use std::fs::{self, File};
use std::ops::Deref;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bundle::{Bundle, MARK_VAR};
use crate::sandbox::Sandbox;

/// Setting this to a runtime binary (e.g. `/usr/sbin/runc`), optionally
/// followed by global flags (`/usr/bin/crun --cgroup-manager=disabled`),
/// runs the tests against it instead of the binary they were built with.
pub const RUNTIME_VAR: &str = "BERTH_TEST_RUNTIME";

/// How long one runtime command may take before the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The result of one runtime command.
#[derive(Clone, Debug)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    /// Exit code, or 128+N when killed by signal N.
    pub code: i32,
    /// Everything written to stdout (the runtime's and, for `run`, the
    /// container's).
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

impl Output {
    /// Whether the command exited 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Panics unless the command exited 0.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert!(self.success(), "expected success:\n{self}");
        self
    }

    /// Panics if the command exited 0.
    #[track_caller]
    pub fn fails(&self) -> &Self {
        assert!(!self.success(), "expected failure:\n{self}");
        self
    }

    /// Panics unless stderr contains every one of `needles`.
    #[track_caller]
    pub fn stderr_has(&self, needles: &[&str]) -> &Self {
        for n in needles {
            assert!(self.stderr.contains(n), "stderr lacks {n:?}:\n{self}");
        }
        self
    }

    /// Stdout without the trailing newline.
    pub fn out(&self) -> &str {
        self.stdout.trim_end_matches('\n')
    }

    /// Stdout lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Stdout parsed as JSON; panics when it is not.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ {}", self.command)?;
        writeln!(f, "exit code: {}", self.code)?;
        writeln!(f, "stdout:\n{}", self.stdout)?;
        write!(f, "stderr:\n{}", self.stderr)
    }
}

/// The exit code a shell would report: the code, or 128+signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// A runtime binary bound to a [`Sandbox`]. Dropping it force-deletes
/// every container it handed out an id for, then the sandbox checks for
/// leaks and cleans up.
pub struct Berth {
    bin: PathBuf,
    global: Vec<String>,
    sandbox: Sandbox,
}

impl Berth {
    /// A runner for `bin`, or for `$BERTH_TEST_RUNTIME` when that is set.
    pub fn new(bin: impl Into<PathBuf>) -> Berth {
        crate::require_root();
        let over = std::env::var(RUNTIME_VAR).unwrap_or_default();
        let mut words = over.split_whitespace().map(String::from);
        let (bin, global) = match words.next() {
            Some(b) => (PathBuf::from(b), words.collect()),
            None => (bin.into(), Vec::new()),
        };
        Berth {
            bin,
            global,
            sandbox: Sandbox::new(),
        }
    }

    /// The runtime binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The binary's file name (`berth`, `runc`, `crun`), for the few
    /// places where the reference runtimes document a different behaviour.
    pub fn flavour(&self) -> String {
        self.bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Whether the runtime under test is Berth itself.
    pub fn is_berth(&self) -> bool {
        !matches!(self.flavour().as_str(), "runc" | "crun" | "youki")
    }

    /// Global flags given before `--root` (from [`RUNTIME_VAR`]).
    pub fn global_args(&self) -> &[String] {
        &self.global
    }

    /// The sandbox.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// A command for the runtime with `--root` set, stdin from /dev/null
    /// and the mark for `id` (or the sandbox's) in its environment.
    pub fn command(&self, id: Option<&str>, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(&self.global);
        c.arg("--root").arg(self.sandbox.root());
        c.args(args);
        let mark = match id {
            Some(id) => self.sandbox.mark_for(id),
            None => self.sandbox.mark_prefix(),
        };
        c.env(MARK_VAR, mark);
        c.stdin(Stdio::null());
        c
    }

    /// Runs a prepared command with stdout/stderr going to files (so a
    /// container that inherits them cannot hold the call open), within
    /// [`COMMAND_TIMEOUT`].
    #[track_caller]
    pub fn output(&self, cmd: &mut Command) -> Output {
        self.output_within(cmd, COMMAND_TIMEOUT)
    }

    /// [`Berth::output`] with an explicit time limit.
    #[track_caller]
    pub fn output_within(&self, cmd: &mut Command, limit: Duration) -> Output {
        let n = crate::sandbox::unique();
        let out_path = self.sandbox.dir().join(format!("out-{n}"));
        let err_path = self.sandbox.dir().join(format!("err-{n}"));
        let out = File::create(&out_path).expect("create stdout file");
        let err = File::create(&err_path).expect("create stderr file");
        cmd.stdout(out).stderr(err);
        let command = describe(cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command}: {e}"));
        let status = wait_within(child, limit)
            .unwrap_or_else(|| panic!("{command}: no exit within {limit:?}"));
        let read = |p: &Path| {
            let s = String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
            let _ = fs::remove_file(p);
            s
        };
        Output {
            command,
            code: exit_code(status),
            stdout: read(&out_path),
            stderr: read(&err_path),
        }
    }

    /// Runs `<bin> --root <root> args...` (no id mark).
    #[track_caller]
    pub fn cmd(&self, args: &[&str]) -> Output {
        self.output(&mut self.command(None, args))
    }

    /// Runs a command that concerns container `id` (marked for it).
    #[track_caller]
    pub fn cmd_for(&self, id: &str, args: &[&str]) -> Output {
        self.output(&mut self.command(Some(id), args))
    }

    /// A fresh container id, force-deleted when the runner drops.
    pub fn id(&self, name: &str) -> String {
        self.sandbox.id(name)
    }

    /// A new bundle in the sandbox; see [`Sandbox::bundle`].
    pub fn bundle(&self, args: &[&str]) -> Bundle {
        self.sandbox.bundle(args)
    }

    /// `create --bundle <b> [extra...] <id>`, writing config.json first.
    #[track_caller]
    pub fn create(&self, id: &str, bundle: &Bundle, extra: &[&str]) -> Output {
        bundle.write().expect("write config.json");
        let b = bundle.path().to_str().expect("utf-8 bundle path");
        let mut args = vec!["create", "--bundle", b];
        args.extend_from_slice(extra);
        args.push(id);
        self.cmd_for(id, &args)
    }

    /// `run --bundle <b> [extra...] <id>` in the foreground, writing
    /// config.json first.
    #[track_caller]
    pub fn run(&self, id: &str, bundle: &Bundle, extra: &[&str]) -> Output {
        self.output(&mut self.run_command(id, bundle, extra))
    }

    /// The command [`Berth::run`] runs, to adjust (stdin, fds) first.
    pub fn run_command(&self, id: &str, bundle: &Bundle, extra: &[&str]) -> Command {
        bundle.write().expect("write config.json");
        let b = bundle.path().to_str().expect("utf-8 bundle path");
        let mut args = vec!["run", "--bundle", b];
        args.extend_from_slice(extra);
        args.push(id);
        self.command(Some(id), &args)
    }

    /// `start <id>`.
    #[track_caller]
    pub fn start(&self, id: &str) -> Output {
        self.cmd_for(id, &["start", id])
    }

    /// `state <id>`.
    #[track_caller]
    pub fn state(&self, id: &str) -> Output {
        self.cmd_for(id, &["state", id])
    }

    /// `state <id>` parsed; panics when it fails.
    #[track_caller]
    pub fn state_json(&self, id: &str) -> Value {
        self.state(id).ok().json()
    }

    /// The `status` field of `state <id>`.
    #[track_caller]
    pub fn status(&self, id: &str) -> String {
        self.state_json(id)["status"]
            .as_str()
            .expect("state has a status string")
            .to_string()
    }

    /// The `pid` field of `state <id>`.
    #[track_caller]
    pub fn pid(&self, id: &str) -> i32 {
        self.state_json(id)["pid"]
            .as_i64()
            .expect("state has a pid") as i32
    }

    /// Polls `state <id>` until its status is `status`; false on timeout.
    pub fn wait_status(&self, id: &str, status: &str, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        loop {
            let o = self.state(id);
            if o.success() && o.json()["status"] == status {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill <id> <signal>`.
    #[track_caller]
    pub fn kill(&self, id: &str, signal: &str) -> Output {
        self.cmd_for(id, &["kill", id, signal])
    }

    /// `delete [--force] <id>`.
    #[track_caller]
    pub fn delete(&self, id: &str, force: bool) -> Output {
        if force {
            self.cmd_for(id, &["delete", "--force", id])
        } else {
            self.cmd_for(id, &["delete", id])
        }
    }

    /// Asserts container `id` from `bundle` left nothing behind.
    #[track_caller]
    pub fn leak_check(&self, id: &str, bundle: &Bundle) {
        self.sandbox.leak_check(id, bundle)
    }
}

impl Deref for Berth {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        for id in self.sandbox.ids() {
            if self.sandbox.root().join(&id).exists() {
                let mut c = self.command(Some(&id), &["delete", "--force", &id]);
                c.stdout(Stdio::null()).stderr(Stdio::null());
                if let Ok(child) = c.spawn() {
                    wait_within(child, Duration::from_secs(20));
                }
            }
        }
    }
}

/// Waits for `child` for at most `limit`; kills it and returns None when
/// it takes longer.
pub fn wait_within(mut child: Child, limit: Duration) -> Option<ExitStatus> {
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => {
            let _ = waiter.join();
            r.ok()
        }
        Err(_) => {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid
            // is our unreaped child, so it cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = waiter.join();
            None
        }
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Arranges for `fds` to be open as 3, 4, ... (without close-on-exec) in
/// the process `cmd` spawns, for `--preserve-fds` and `LISTEN_FDS`.
pub fn pass_fds(cmd: &mut Command, fds: Vec<OwnedFd>) {
    // Move the sources out of the way first so dup2 onto 3.. cannot
    // clobber a source that already sits there.
    let high: Vec<OwnedFd> = fds
        .iter()
        .map(|fd| {
            let raw = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(100))
                .expect("F_DUPFD_CLOEXEC");
            // SAFETY: fcntl just returned this new descriptor; we own it.
            unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) }
        })
        .collect();
    drop(fds);
    let raws: Vec<i32> = high.iter().map(|f| f.as_raw_fd()).collect();
    // SAFETY: the closure runs between fork and exec and only calls
    // dup2(2), which is async-signal-safe; it allocates nothing. `high`
    // is moved into the closure so the descriptors stay open until spawn.
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &high;
            for (i, &fd) in raws.iter().enumerate() {
                if libc::dup2(fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}
