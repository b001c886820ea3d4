//! The container lifecycle (runtime-spec "Lifecycle", "Operations",
//! "State"): create, start, kill, delete and state, with the state kept
//! under the runtime root and every command on one id serialised by a
//! lock.

mod create;
mod exec;
mod ops;
pub mod state;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::sys;
use state::{Lock, Saved};

pub use exec::{ExecOptions, ExecProcess};
pub use ops::{Event, EventKind};

/// The OCI runtime-spec version Berth implements.
pub const OCI_VERSION: &str = "1.2.0";

/// A container's status (runtime-spec "State").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created.
    Creating,
    /// Created, the user program not yet started.
    Created,
    /// The user program runs.
    Running,
    /// Frozen.
    Paused,
    /// The init has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What `state` reports: the OCI state plus runc's extra fields.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// runtime-spec version.
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Init pid, 0 once stopped.
    pub pid: i32,
    /// Status, derived live.
    pub status: Status,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Root file system directory.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// Owner's user name.
    pub owner: String,
    /// config.json annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Options of `create` (runc's flags).
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Unix socket the pty master is sent to when `process.terminal`.
    pub console_socket: Option<PathBuf>,
    /// File the init's pid is written to.
    pub pid_file: Option<PathBuf>,
    /// Use move + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Do not create a new session keyring.
    pub no_new_keyring: bool,
    /// Pass descriptors 3..3+N into the container.
    pub preserve_fds: u32,
    /// Descriptors that become the init's stdin, stdout and stderr instead
    /// of the caller's own (a library host capturing a container's output
    /// through pipes). They are the caller's: they must stay open until
    /// `create` returns, and the caller closes them.
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
}

impl CreateOptions {
    /// Options for `bundle`, everything else default.
    pub fn new(bundle: impl Into<PathBuf>) -> Self {
        CreateOptions {
            bundle: bundle.into(),
            ..Default::default()
        }
    }
}

/// A runtime root holding containers' state.
#[derive(Clone, Debug)]
pub struct Runtime {
    root: PathBuf,
}

/// Checks a container id the way runc does.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

impl Runtime {
    /// A runtime keeping state under `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Runtime {
        Runtime { root: root.into() }
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Creates a container from a bundle: everything is set up and the init
    /// waits for [`Container::start`] before exec'ing the program.
    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<Container> {
        validate_id(id)?;
        create::create(self, id, opts)
    }

    /// Loads an existing container.
    pub fn load(&self, id: &str) -> Result<Container> {
        validate_id(id).map_err(|_| Error::NotFound(id.to_string()))?;
        let dir = self.dir(id);
        let saved = state::read(&dir, id)?;
        Ok(Container { dir, saved })
    }

    /// All containers under the root, sorted by id.
    pub fn list(&self) -> Result<Vec<Container>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read", &self.root, e)),
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(c) = self.load(&name) {
                out.push(c);
            }
        }
        out.sort_by(|a, b| a.id().cmp(b.id()));
        Ok(out)
    }
}

/// A created container.
#[derive(Clone, Debug)]
pub struct Container {
    dir: PathBuf,
    saved: Saved,
}

impl Container {
    /// The container id.
    pub fn id(&self) -> &str {
        &self.saved.id
    }

    /// The bundle directory.
    pub fn bundle(&self) -> &Path {
        &self.saved.bundle
    }

    /// The init's pid while it is alive.
    pub fn pid(&self) -> Option<i32> {
        self.alive().then_some(self.saved.pid)
    }

    /// Whether the init is alive: the pid exists, is the same process
    /// (start time) and is not a zombie.
    fn alive(&self) -> bool {
        let pid = self.saved.pid;
        pid > 0
            && sys::process_start_time(pid) == Some(self.saved.start_time)
            && sys::process_state(pid).is_some_and(|s| s != 'Z' && s != 'X')
    }

    /// The status, derived from the live process.
    pub fn status(&self) -> Status {
        // A created container can be paused too (as in runc).
        if !self.alive() {
            Status::Stopped
        } else if self.frozen() {
            Status::Paused
        } else if self.dir.join(state::START_SOCKET).exists() {
            Status::Created
        } else {
            Status::Running
        }
    }

    /// The state as `berth state` prints it.
    pub fn state(&self) -> State {
        let status = self.status();
        State {
            oci_version: OCI_VERSION.to_string(),
            id: self.saved.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.saved.pid
            },
            status,
            bundle: self.saved.bundle.clone(),
            rootfs: self.saved.rootfs.clone(),
            created: self.saved.created.clone(),
            owner: self.saved.owner.clone(),
            annotations: self.saved.annotations.clone(),
        }
    }

    /// Takes the container's lock, then checks it still exists: a command
    /// that waited for the lock may find the container deleted meanwhile.
    fn lock(&self) -> Result<Lock> {
        let lock = Lock::acquire(&self.dir, self.id())?;
        if !self.dir.join(state::STATE_FILE).exists() {
            return Err(Error::NotFound(self.id().to_string()));
        }
        Ok(lock)
    }

    /// The OCI state document given to hooks.
    fn hook_state(&self, status: Status) -> Vec<u8> {
        hook_state_json(&self.saved, status)
    }

    /// The config the container was created from.
    pub fn spec(&self) -> Option<oci_spec::runtime::Spec> {
        serde_json::from_value(self.saved.config.clone()).ok()
    }

    /// Starts the user program; returns once it has been exec'd.
    pub fn start(&self) -> Result<()> {
        let _lock = self.lock()?;
        let status = self.status();
        if status != Status::Created {
            return Err(Error::InvalidState {
                id: self.id().to_string(),
                op: "start",
                status: status.to_string(),
            });
        }
        let (_dirfd, sock) = state::short_path(&self.dir, state::START_SOCKET)?;
        let conn = UnixStream::connect(&sock).map_err(|e| Error::io("connect", &sock, e))?;
        let spec = self.spec();
        let has_start_hooks = spec
            .as_ref()
            .is_some_and(|s| !crate::hooks::hooks_of(s, "startContainer").is_empty());
        if has_start_hooks {
            // The init reads the state for its startContainer hooks.
            let _ = crate::sys::send_all(
                std::os::fd::AsRawFd::as_raw_fd(&conn),
                &self.hook_state(Status::Created),
            );
        }
        let _ = conn.shutdown(std::net::Shutdown::Write);
        let _ = std::fs::remove_file(self.dir.join(state::START_SOCKET));
        // The init execs (closing its end) or reports why it could not;
        // first it may hand over a seccomp notify descriptor.
        loop {
            let got = match crate::process::sync::recv_with_fd(conn.as_raw_fd()) {
                Ok(got) => got,
                // The init's end closed by its exec.
                Err(nix::errno::Errno::ECONNRESET) => None,
                Err(e) => return Err(Error::io("read", &sock, e.into())),
            };
            let Some((m, fd)) = got else { break };
            if m.tag == crate::process::sync::SECCOMP_FD {
                // create validated the profile; only its listener is needed.
                let listener = spec
                    .as_ref()
                    .and_then(|s| s.linux().as_ref()?.seccomp().as_ref())
                    .and_then(crate::seccomp::Listener::of);
                if let (Some(fd), Some(l)) = (fd, listener) {
                    let state = self.hook_state(Status::Created);
                    crate::seccomp::notify::send(&l, fd.as_fd(), self.saved.pid, &state)?;
                }
                continue;
            }
            let what = self
                .saved
                .labels
                .get(m.a as usize)
                .cloned()
                .unwrap_or_else(|| "start".to_string());
            return Err(Error::Init {
                what,
                errno: nix::errno::Errno::from_raw(m.b),
            });
        }
        if let Some(spec) = spec {
            let state = self.hook_state(Status::Running);
            for h in crate::hooks::hooks_of(&spec, "poststart") {
                if let Err(e) = crate::hooks::run("poststart", h, &state, &[]) {
                    tracing::warn!("{e}");
                }
            }
        }
        Ok(())
    }

    /// Sends `signal` to the init, or with `all` to every process in the
    /// container's cgroup.
    pub fn kill(&self, signal: i32, all: bool) -> Result<()> {
        let _lock = self.lock()?;
        self.kill_locked(signal, all)
    }

    fn kill_locked(&self, signal: i32, all: bool) -> Result<()> {
        let status = self.status();
        if status == Status::Stopped && !all {
            return Err(Error::InvalidState {
                id: self.id().to_string(),
                op: "kill",
                status: status.to_string(),
            });
        }
        let sig = nix::sys::signal::Signal::try_from(signal).ok();
        let send = |pid: i32| -> Result<()> {
            match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
                Err(e) => Err(Error::sys(format!("kill {pid} with signal {signal}"), e)),
            }
        };
        let realtime = sig.is_none();
        if realtime {
            // nix has no Signal for real-time numbers: send them raw.
            let raw = |pid: i32| {
                // SAFETY: kill(2) with integer arguments.
                let r = unsafe { libc::kill(pid, signal) };
                if r != 0 && nix::errno::Errno::last() != nix::errno::Errno::ESRCH {
                    return Err(Error::sys(
                        format!("kill {pid} with signal {signal}"),
                        nix::errno::Errno::last(),
                    ));
                }
                Ok(())
            };
            return self.for_each_pid(all, raw);
        }
        self.for_each_pid(all, send)?;
        self.thaw_after_kill(signal);
        Ok(())
    }

    fn for_each_pid(&self, all: bool, mut f: impl FnMut(i32) -> Result<()>) -> Result<()> {
        if all {
            if let Some(cg) = &self.saved.cgroup {
                for pid in cg.pids()? {
                    f(pid)?;
                }
                return Ok(());
            }
        }
        if self.alive() {
            f(self.saved.pid)?;
        }
        Ok(())
    }

    /// Deletes the container: its cgroup, its state, after the poststop
    /// hooks. A running container needs `force` (it is killed first).
    pub fn delete(self, force: bool) -> Result<()> {
        let _lock = self.lock()?;
        let status = self.status();
        match status {
            Status::Stopped => {}
            Status::Created | Status::Creating => self.kill_and_wait()?,
            Status::Running | Status::Paused if force => self.kill_and_wait()?,
            _ => {
                return Err(Error::InvalidState {
                    id: self.id().to_string(),
                    op: "delete",
                    status: format!("{status} (stop it first or use --force)"),
                })
            }
        }
        if let Some(cg) = &self.saved.cgroup {
            // Processes outside a pid namespace may outlive the init.
            if let Ok(pids) = cg.pids() {
                for pid in pids {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            cg.destroy()?;
        }
        let hooks_state = self.hook_state(Status::Stopped);
        std::fs::remove_dir_all(&self.dir).map_err(|e| Error::io("remove", &self.dir, e))?;
        if let Some(spec) = self.spec() {
            for h in crate::hooks::hooks_of(&spec, "poststop") {
                if let Err(e) = crate::hooks::run("poststop", h, &hooks_state, &[]) {
                    tracing::warn!("{e}");
                }
            }
        }
        Ok(())
    }

    fn kill_and_wait(&self) -> Result<()> {
        if self.saved.cgroup.is_some() {
            let _ = self.kill_locked(libc::SIGKILL, true);
        }
        if self.alive() {
            let _ = self.kill_locked(libc::SIGKILL, false);
        }
        wait_gone(
            self.saved.pid,
            self.saved.start_time,
            Duration::from_secs(10),
        );
        Ok(())
    }

    /// Waits for the init to exit and returns its exit code (128+N when
    /// killed by signal N). The caller must be the init's parent or a
    /// child subreaper ([`crate::process::set_child_subreaper`]).
    pub fn wait(&self) -> Result<i32> {
        use nix::sys::wait::{waitpid, WaitStatus};
        let pid = nix::unistd::Pid::from_raw(self.saved.pid);
        loop {
            match waitpid(pid, None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys(format!("wait for pid {pid}"), e)),
            }
        }
    }
}

/// Waits until `pid` (with `start_time`) has exited, at most `limit`.
pub(crate) fn wait_gone(pid: i32, start_time: u64, limit: Duration) {
    if pid <= 0 {
        return;
    }
    let deadline = Instant::now() + limit;
    if let Ok(fd) = sys::pidfd_open(pid) {
        if sys::process_start_time(pid) == Some(start_time) {
            let _ = sys::poll_readable(fd, limit.as_millis() as i32);
        }
        sys::close(fd);
    }
    while Instant::now() < deadline
        && sys::process_start_time(pid) == Some(start_time)
        && sys::process_state(pid).is_some_and(|s| s != 'Z')
    {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The OCI state document (runtime-spec "State") given to hooks.
pub(crate) fn hook_state_json(saved: &Saved, status: Status) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct OciState<'a> {
        oci_version: &'a str,
        id: &'a str,
        status: Status,
        pid: i32,
        bundle: &'a Path,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        annotations: &'a BTreeMap<String, String>,
    }
    serde_json::to_vec(&OciState {
        oci_version: OCI_VERSION,
        id: &saved.id,
        status,
        pid: if status == Status::Stopped {
            0
        } else {
            saved.pid
        },
        bundle: &saved.bundle,
        annotations: &saved.annotations,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_like_runc() {
        for ok in ["a", "abc-1.2_x+y", "X"] {
            validate_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "../x", "a/b", "a b", &"x".repeat(1025)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_container_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime::new(dir.path());
        assert!(matches!(rt.load("nope"), Err(Error::NotFound(_))));
        assert!(rt.list().unwrap().is_empty());
    }
}
