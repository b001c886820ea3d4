//! A runc-compatible runtime driven through its command line only: its
//! own `--root`, a time limit on every command, output captured.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one runtime command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A runtime binary under test.
#[derive(Clone, Debug)]
pub struct Runtime {
    /// The column name: the binary's file name (`berth`, `runc`, `crun`).
    pub name: String,
    /// The binary.
    pub path: PathBuf,
    /// Its state root for this run.
    pub root: PathBuf,
}

/// What a command did.
#[derive(Clone, Debug)]
pub struct Output {
    /// The command line, for messages.
    pub command: String,
    /// Exit code; 128+N when killed by signal N; -1 when it timed out.
    pub code: i32,
    /// Its stdout (for `run`, the container's too).
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Output {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// `Err` naming the command unless it exited 0.
    pub fn ok(&self) -> Result<&Self, String> {
        if self.success() {
            Ok(self)
        } else {
            Err(format!(
                "`{}` exited {}: {}",
                self.command,
                self.code,
                self.stderr.trim()
            ))
        }
    }

    /// `Err` naming the command if it exited 0.
    pub fn fails(&self) -> Result<&Self, String> {
        if self.success() {
            Err(format!("`{}` succeeded but must fail", self.command))
        } else {
            Ok(self)
        }
    }
}

impl Runtime {
    /// A runtime at `path` keeping its state under `root`.
    pub fn new(path: &Path, root: PathBuf) -> Runtime {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Runtime {
            name,
            path: path.to_path_buf(),
            root,
        }
    }

    /// Runs `<runtime> --root <root> args...` with stdin from /dev/null.
    pub fn cmd(&self, args: &[&str]) -> Output {
        self.cmd_within(args, COMMAND_TIMEOUT)
    }

    /// [`Runtime::cmd`] with its own time limit.
    pub fn cmd_within(&self, args: &[&str], limit: Duration) -> Output {
        let mut c = Command::new(&self.path);
        c.arg("--root").arg(&self.root).args(args);
        run_command(c, limit)
    }
}

/// Runs `c` with stdout and stderr going to files (a container that
/// inherits them cannot hold the call open), killed after `limit`.
pub fn run_command(mut c: Command, limit: Duration) -> Output {
    let command = format!("{c:?}").replace('"', "");
    let (mut out, mut err) = match (tempfile::tempfile(), tempfile::tempfile()) {
        (Ok(o), Ok(e)) => (o, e),
        _ => {
            return Output {
                command,
                code: -1,
                stdout: String::new(),
                stderr: "cannot make temporary files".into(),
            }
        }
    };
    c.stdin(Stdio::null());
    match (out.try_clone(), err.try_clone()) {
        (Ok(o), Ok(e)) => {
            c.stdout(o).stderr(e);
        }
        _ => {
            c.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => {
            return Output {
                command,
                code: -1,
                stdout: String::new(),
                stderr: format!("spawn: {e}"),
            }
        }
    };
    drop(c);
    let deadline = Instant::now() + limit;
    let code = loop {
        match child.try_wait() {
            Ok(Some(st)) => break exit_code(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                // A command started as its own process group leader takes
                // its whole group with it.
                kill_group(child.id());
                let _ = child.kill();
                let _ = child.wait();
                break -1;
            }
        }
    };
    let read = |f: &mut std::fs::File| {
        use std::io::Seek as _;
        let mut s = String::new();
        let _ = f.seek(std::io::SeekFrom::Start(0));
        let _ = f.read_to_string(&mut s);
        s
    };
    let mut stderr = read(&mut err);
    if code == -1 {
        stderr.push_str(&format!("\n(timed out after {limit:?})"));
    }
    Output {
        command,
        code,
        stdout: read(&mut out),
        stderr,
    }
}

/// SIGKILLs the process group `pgid`, if there is one by that number (a
/// child not made a group leader has none).
fn kill_group(pgid: u32) {
    if let Ok(p) = i32::try_from(pgid) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// The exit code a shell reports: the code, or 128+signal.
pub fn exit_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt as _;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}
