//! Running another process in a container (runc's `exec`): the process
//! joins every namespace of the container's init, enters its cgroup, and
//! gets the rlimits, capabilities, user and seccomp filter its process
//! spec and the container's config give it.

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;

use nix::errno::Errno;
use oci_spec::runtime::{LinuxNamespaceType, Process};

use super::create::{connect_console, prepare_child, write_pid_file};
use super::{Container, Status};
use crate::error::{Error, Result};
use crate::namespaces::Join;
use crate::plan::{ExecPlan, Labels};
use crate::process::sync::{self, Msg};
use crate::sys;

/// Options of `exec` that are not part of the process spec (runc's flags).
#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    /// Unix socket the pty master is sent to when `process.terminal`.
    pub console_socket: Option<PathBuf>,
    /// File the new process's pid is written to.
    pub pid_file: Option<PathBuf>,
    /// Pass descriptors 3..3+N to the process.
    pub preserve_fds: u32,
}

/// A process started by [`Container::exec`]. It is a child of the calling
/// process, so [`ExecProcess::wait`] can reap it.
#[derive(Debug)]
pub struct ExecProcess {
    pid: i32,
}

impl ExecProcess {
    /// Its pid in the caller's pid namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for it to exit; returns its exit code, or 128+N when killed by
    /// signal N.
    pub fn wait(&self) -> Result<i32> {
        use nix::sys::wait::{waitpid, WaitStatus};
        let pid = nix::unistd::Pid::from_raw(self.pid);
        loop {
            match waitpid(pid, None) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys(format!("wait for pid {pid}"), e)),
            }
        }
    }
}

impl Container {
    /// Runs `process` in the container, which must be created or running:
    /// a paused container's cgroup would freeze the process mid-setup.
    /// Returns once the process has
    /// exec'd its program, or with the step that failed.
    ///
    /// The seccomp filter comes from the container's config; everything
    /// else (user, capabilities, rlimits, noNewPrivileges, env, cwd,
    /// terminal) from `process`.
    pub fn exec(&self, process: &Process, opts: &ExecOptions) -> Result<ExecProcess> {
        crate::spec::check_process(process).map_err(|(field, msg)| Error::Exec {
            id: self.id().to_string(),
            msg: format!("{field}: {msg}"),
        })?;
        let lock = self.lock()?;
        let status = self.status();
        if !matches!(status, Status::Created | Status::Running) {
            return Err(Error::InvalidState {
                id: self.id().to_string(),
                op: "exec in",
                status: status.to_string(),
            });
        }
        let spec = self.spec().ok_or_else(|| Error::State {
            id: self.id().to_string(),
            msg: "the saved config is unreadable".into(),
        })?;
        let linux = spec.linux().clone().unwrap_or_default();
        let mut labels = Labels::default();
        let join = self.open_namespaces(&linux, &mut labels)?;
        let in_user_ns = join.iter().any(|j| j.typ == LinuxNamespaceType::User);
        let console_socket = opts
            .console_socket
            .as_deref()
            .map(connect_console)
            .transpose()?;
        if process.terminal().unwrap_or(false) && console_socket.is_none() {
            return Err(Error::Exec {
                id: self.id().to_string(),
                msg: "process.terminal: a terminal needs a console socket (--console-socket)"
                    .into(),
            });
        }
        let mut process_plan = crate::process::plan(
            process,
            crate::process::PlanInput {
                preserve_fds: opts.preserve_fds,
                extra_env: Vec::new(),
                console_socket,
                keyring: (!self.saved.no_new_keyring).then(|| format!("_ses.{}", self.id())),
                setgroups_denied: in_user_ns && self.setgroups_denied(),
                root: Some(PathBuf::from(format!("/proc/{}/root", self.saved.pid))),
            },
            &mut labels,
        )?;
        process_plan.add_seccomp(linux.seccomp().as_ref(), &mut labels)?;
        process_plan.set_personality(linux.personality().as_ref(), &mut labels)?;
        let fork = labels.add("start the process in the container's pid namespace");
        let plan = ExecPlan {
            labels,
            join,
            process: process_plan,
            fork,
        };

        let (parent_end, child_end) = crate::process::sync::pair()?;
        let sync_fd = child_end.as_raw_fd();
        let mut keep: Vec<RawFd> = vec![sync_fd];
        keep.extend(plan.join.iter().map(|j| j.fd.as_raw_fd()));
        keep.extend(plan.process.console_socket.as_ref().map(|s| s.as_raw_fd()));
        let first_closed = 3 + plan.process.preserve_fds as RawFd;
        let runtime_fds = [parent_end.as_raw_fd(), lock.raw_fd()];
        let stage1 = sys::clone_fork(0).map_err(|e| Error::sys("clone the exec process", e))?;
        if stage1 == 0 {
            prepare_child(&runtime_fds, first_closed, &mut keep);
            crate::process::exec::stage1(&plan, sync_fd);
        }
        drop(child_end);
        let mut undo = Undo {
            stage1: Some(stage1),
            process: None,
        };
        let id = self.id().to_string();
        let fail = |m: Msg| Error::Exec {
            id: id.clone(),
            msg: format!(
                "{}: {}",
                plan.labels.get(m.a as u32),
                Errno::from_raw(m.b).desc()
            ),
        };
        let gone = || Error::Exec {
            id: id.clone(),
            msg: "the process exited during setup".into(),
        };
        if let Some(cg) = &self.saved.cgroup {
            cg.add_pid(stage1)?;
        }
        let parent_raw = parent_end.as_raw_fd();
        sync::send(parent_raw, Msg::new(sync::CONTINUE, 0, 0))
            .map_err(|e| Error::sys("write to the exec process", e))?;
        let pid = match sync::recv(parent_raw)
            .map_err(|e| Error::sys("read from the exec process", e))?
        {
            Some(m) if m.tag == sync::EXEC_PID => m.a,
            Some(m) if m.tag == sync::ERROR => return Err(fail(m)),
            _ => return Err(gone()),
        };
        undo.process = Some(pid);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(stage1), None);
        undo.stage1 = None;
        // The process's end closes at execve; before that it may send a
        // seccomp notify descriptor, or the step that failed.
        loop {
            let got = match sync::recv_with_fd(parent_raw) {
                Ok(got) => got,
                Err(Errno::ECONNRESET) => None,
                Err(e) => return Err(Error::sys("read from the exec process", e)),
            };
            let Some((m, fd)) = got else { break };
            match m.tag {
                sync::SECCOMP_FD => {
                    let listener = linux
                        .seccomp()
                        .as_ref()
                        .and_then(crate::seccomp::Listener::of);
                    if let (Some(fd), Some(l)) = (fd, listener) {
                        let state = self.hook_state(Status::Running);
                        crate::seccomp::notify::send(&l, fd.as_fd(), pid, &state)?;
                    }
                }
                sync::ERROR => return Err(fail(m)),
                _ => return Err(gone()),
            }
        }
        if let Some(pid_file) = &opts.pid_file {
            write_pid_file(pid_file, pid)?;
        }
        undo.process = None;
        Ok(ExecProcess { pid })
    }

    /// The container's namespaces, opened through its init's /proc entry,
    /// and checked to still belong to the init afterwards.
    fn open_namespaces(
        &self,
        linux: &oci_spec::runtime::Linux,
        labels: &mut Labels,
    ) -> Result<Vec<Join>> {
        let configured = linux.namespaces().as_deref().unwrap_or_default();
        let mut join = Vec::new();
        for t in crate::namespaces::JOIN_ORDER {
            if !configured.iter().any(|n| n.typ() == t) {
                continue;
            }
            let path = format!("/proc/{}/ns/{t}", self.saved.pid);
            let fd = std::fs::File::open(&path).map_err(|e| Error::io("open", &path, e))?;
            join.push(Join {
                typ: t,
                fd: fd.into(),
                label: labels.add(format!("join the container's {t} namespace ({path})")),
            });
        }
        // The pid may have been reused between the status check and the
        // opens: the namespaces must be the init's.
        if !self.alive() {
            return Err(Error::InvalidState {
                id: self.id().to_string(),
                op: "exec in",
                status: Status::Stopped.to_string(),
            });
        }
        Ok(join)
    }

    /// Whether the init's user namespace refuses setgroups(2).
    fn setgroups_denied(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/setgroups", self.saved.pid))
            .is_ok_and(|s| s.trim() == "deny")
    }
}

/// Kills and reaps what a failed exec started.
struct Undo {
    stage1: Option<i32>,
    process: Option<i32>,
}

impl Drop for Undo {
    fn drop(&mut self) {
        for pid in [self.stage1.take(), self.process.take()]
            .into_iter()
            .flatten()
        {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}
