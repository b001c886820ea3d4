//! A manager daemon started by a test: its output goes to a log file, it
//! runs in its own process group, and dropping it stops it (SIGTERM, then
//! SIGKILL for the whole group).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::host::kill_group;

/// A running daemon.
pub struct Daemon {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` with stdout and stderr in `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Daemon {
        let f = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        cmd.stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Daemon {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    /// Waits until `ready` holds; panics with the log when the daemon
    /// exits or `limit` passes first.
    pub fn wait_ready(&mut self, limit: Duration, mut ready: impl FnMut() -> bool) {
        let ok = crate::eventually(limit, || {
            if let Some(Ok(Some(s))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "{} exited ({s}) while starting:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            ready()
        });
        assert!(
            ok,
            "{} not ready after {limit:?}:\n{}",
            self.name,
            self.log_text()
        );
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Everything the daemon has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the daemon: SIGTERM, up to 20 s for a clean exit, then
    /// SIGKILL for its process group.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as i32;
        // SAFETY: kill(2) with integer arguments; `pid` is our unreaped
        // child, so it cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let exited = crate::eventually(Duration::from_secs(20), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !exited {
            kill_group(pid);
            let _ = child.wait();
        }
        kill_group(pid);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
