//! The child side of `exec` (runtime-spec "Operations", runc's exec): the
//! first process joins the container's namespaces and forks the new
//! process, which lands in the container's pid and time namespaces as a
//! child of the runtime (CLONE_PARENT); that process sets up its console
//! and credentials and execs. Like the init, both only walk a prepared
//! [`ExecPlan`] and report failures as (label, errno).

use std::os::fd::{AsRawFd, RawFd};

use super::init::{
    console, credentials, expect, find_executable, join_keyring, load_seccomp, oom_score_adj,
    personality, report,
};
use super::sync::{self, Msg};
use crate::namespaces::clone_flag;
use crate::plan::{At, ExecPlan, Fail};
use crate::sys;

/// The first process: wait until the runtime has put it in the container's
/// cgroup, join the namespaces, fork the process and exit.
pub(crate) fn stage1(plan: &ExecPlan, sync_fd: RawFd) -> ! {
    match stage1_inner(plan, sync_fd) {
        Ok(()) => sys::exit_now(0),
        Err(f) => report(sync_fd, f),
    }
}

fn stage1_inner(plan: &ExecPlan, sync_fd: RawFd) -> Result<(), Fail> {
    // Until it execs, the process is the runtime's binary with the
    // runtime's memory: once in the container's pid namespace, the
    // container's processes must not reach it through ptrace or
    // /proc/PID/{exe,mem,fd}. The flag is inherited by the fork below and
    // cleared by execve.
    sys::prctl(libc::PR_SET_DUMPABLE, 0, 0).at(plan.fork)?;
    expect(sync_fd, sync::CONTINUE).at(plan.fork)?;
    for j in &plan.join {
        sys::setns(j.fd.as_raw_fd(), clone_flag(j.typ)).at(j.label)?;
    }
    let gate = sync::Gate::new().at(plan.fork)?;
    let pid = sys::clone_fork(libc::CLONE_PARENT).at(plan.fork)?;
    if pid == 0 {
        gate.pass();
        process(plan, sync_fd);
    }
    sync::send(sync_fd, Msg::new(sync::EXEC_PID, pid, 0)).at(plan.fork)?;
    gate.open();
    Ok(())
}

fn process(plan: &ExecPlan, sync_fd: RawFd) -> ! {
    match process_inner(plan, sync_fd) {
        Ok(never) => match never {},
        Err(f) => report(sync_fd, f),
    }
}

enum Never {}

fn process_inner(plan: &ExecPlan, sync_fd: RawFd) -> Result<Never, Fail> {
    let p = &plan.process;
    let l = &p.labels;
    oom_score_adj(p)?;
    personality(p)?;
    // Its own session, as runc's exec'd processes: signals for the caller's
    // terminal reach the runtime, which forwards them.
    nix::unistd::setsid().at(l.session)?;
    if p.terminal {
        console(p, false)?;
    }
    join_keyring(p)?;
    sys::cloexec_from(3 + p.preserve_fds).at(l.session)?;
    if let Some(sc) = p.seccomp.as_ref().filter(|s| s.early) {
        load_seccomp(sc, sync_fd).at(sc.label)?;
    }
    credentials(p)?;
    let exe = find_executable(p)?;
    if let Some(sc) = p.seccomp.as_ref().filter(|s| !s.early) {
        load_seccomp(sc, sync_fd).at(sc.label)?;
    }
    // SAFETY: exe, argv and envp are NUL-terminated and stay alive; execve
    // only returns on failure.
    unsafe { libc::execve(exe.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr()) };
    Err(Fail {
        label: l.exec,
        errno: nix::errno::Errno::last(),
    })
}
