//! The container's setup processes, run after clone: stage 1 joins and
//! creates namespaces and forks the init; the init sets up the root, the
//! console and the process credentials, waits for `start`, runs the
//! startContainer hooks and execs. Both only walk the prepared [`Plan`]:
//! no allocation, no locks, errors reported as (label, errno).

use std::os::fd::{AsRawFd, RawFd};

use nix::errno::Errno;

use super::sync::{self, Msg};
use super::ProcessPlan;
use crate::hooks::ChildHook;
use crate::namespaces::clone_flag;
use crate::plan::{At, Fail, Plan};
use crate::sys;

/// Descriptors the setup processes use.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChildFds {
    /// Our end of the sync socket pair.
    pub sync: RawFd,
    /// The listening socket `start` connects to.
    pub start: RawFd,
}

pub(crate) fn report(fd: RawFd, f: Fail) -> ! {
    let _ = sync::send(fd, Msg::new(sync::ERROR, f.label as i32, f.errno as i32));
    sys::exit_now(1)
}

/// Waits for `tag` from the runtime; exits quietly when it has gone.
pub(super) fn expect(fd: RawFd, tag: u32) -> Result<Msg, Errno> {
    match sync::recv(fd)? {
        Some(m) if m.tag == tag => Ok(m),
        Some(_) => Err(Errno::EPROTO),
        None => sys::exit_now(1),
    }
}

/// Stage 1: namespaces, then fork the init (which lands in the new pid and
/// time namespaces) and exit.
pub(crate) fn stage1(plan: &Plan, fds: ChildFds, hook_buf: &mut [u8]) -> ! {
    match stage1_inner(plan, fds, hook_buf) {
        Ok(()) => sys::exit_now(0),
        Err(f) => report(fds.sync, f),
    }
}

fn stage1_inner(plan: &Plan, fds: ChildFds, hook_buf: &mut [u8]) -> Result<(), Fail> {
    let ns = &plan.namespaces;
    let l = &plan.ns_labels;
    for j in &ns.join {
        sys::setns(j.fd.as_raw_fd(), clone_flag(j.typ)).at(j.label)?;
    }
    if ns.new_user {
        sys::unshare(libc::CLONE_NEWUSER).at(l.user)?;
    }
    sync::send(
        fds.sync,
        Msg::new(sync::STAGE1_READY, ns.new_user as i32, 0),
    )
    .at(l.fork)?;
    expect(fds.sync, sync::CONTINUE).at(l.fork)?;
    if ns.new_user {
        sys::setresgid(0).at(l.root)?;
        sys::setresuid(0).at(l.root)?;
        // Changing credentials made us non-dumpable, which hands our
        // /proc/self files to the host's root, unmapped here.
        sys::prctl(libc::PR_SET_DUMPABLE, 1, 0).at(l.root)?;
    }
    if ns.new_flags != 0 {
        sys::unshare(ns.new_flags).at(l.unshare)?;
    }
    if let Some(offsets) = &ns.time_offsets {
        let fd = sys::open(c"/proc/self/timens_offsets", libc::O_WRONLY, 0).at(l.offsets)?;
        let r = sys::write_all(fd, offsets.as_bytes());
        sys::close(fd);
        r.at(l.offsets)?;
    }
    let gate = sync::Gate::new().at(l.fork)?;
    let pid = sys::clone_fork(0).at(l.fork)?;
    if pid == 0 {
        gate.pass();
        init(plan, fds, hook_buf);
    }
    sync::send(fds.sync, Msg::new(sync::INIT_PID, pid, 0)).at(l.fork)?;
    gate.open();
    Ok(())
}

/// The init: everything up to the exec of the user's program.
fn init(plan: &Plan, fds: ChildFds, hook_buf: &mut [u8]) -> ! {
    match init_inner(plan, fds, hook_buf) {
        Ok(never) => match never {},
        Err(f) => report(fds.sync, f),
    }
}

enum Never {}

fn init_inner(plan: &Plan, fds: ChildFds, hook_buf: &mut [u8]) -> Result<Never, Fail> {
    let p = &plan.process;
    let l = &p.labels;
    // Device nodes and mount points get exactly the modes asked for.
    // SAFETY: umask only changes this process's mask.
    unsafe { libc::umask(0) };
    oom_score_adj(p)?;
    personality(p)?;
    // Until it execs, the init is the runtime's own binary: keep other
    // processes (hooks, anything sharing its namespaces) from reaching it
    // through /proc/PID/exe or ptrace. exec makes the program dumpable again.
    sys::prctl(libc::PR_SET_DUMPABLE, 0, 0).at(l.session)?;
    let root = crate::rootfs::prepare(&plan.rootfs)?;
    if plan.has_create_hooks {
        sync::send(fds.sync, Msg::new(sync::RUN_HOOKS, 0, 0)).at(l.session)?;
        expect(fds.sync, sync::HOOKS_DONE).at(l.session)?;
    }
    crate::rootfs::pivot(&plan.rootfs)?;
    sys::close(root);
    nix::unistd::setsid().at(l.session)?;
    if p.terminal {
        console(p, true)?;
    }
    // A missing cwd is made before the root may turn read-only, as runc
    // does.
    for d in &p.cwd_dirs {
        // SAFETY: `d` is NUL-terminated; mkdir only creates a directory.
        if unsafe { libc::mkdir(d.as_ptr(), 0o755) } != 0 && Errno::last() != Errno::EEXIST {
            return Err(Fail {
                label: l.cwd,
                errno: Errno::last(),
            });
        }
    }
    crate::rootfs::finish(&plan.rootfs)?;
    join_keyring(p)?;
    sys::cloexec_from(3 + p.preserve_fds).at(l.session)?;
    if let Some(sc) = p.seccomp.as_ref().filter(|s| s.early) {
        load_seccomp(sc, fds.sync).at(sc.label)?;
    }
    credentials(p)?;
    let exe = find_executable(p)?;
    sync::send(fds.sync, Msg::new(sync::READY, 0, 0)).at(l.session)?;
    // Blocks until `start` connects.
    let conn = loop {
        // SAFETY: accept4 with null address pointers.
        let c = unsafe {
            libc::accept4(
                fds.start,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if c >= 0 {
            break c;
        }
        if Errno::last() != Errno::EINTR {
            return Err(Fail {
                label: l.session,
                errno: Errno::last(),
            });
        }
    };
    sys::close(fds.start);
    if !plan.start_hooks.is_empty() {
        let n = read_to_end(conn, hook_buf).map_err(|e| start_fail(conn, l.session, e))?;
        for h in &plan.start_hooks {
            run_child_hook(h, &hook_buf[..n]).map_err(|e| start_fail(conn, h.label, e))?;
        }
    }
    if let Some(sc) = p.seccomp.as_ref().filter(|s| !s.early) {
        load_seccomp(sc, conn).map_err(|e| start_fail(conn, sc.label, e))?;
    }
    // SAFETY: exe, argv and envp are NUL-terminated and stay alive; execve
    // only returns on failure.
    unsafe { libc::execve(exe.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr()) };
    Err(start_fail(conn, l.exec, Errno::last()))
}

/// Joins (or makes) the container's session keyring.
pub(super) fn join_keyring(p: &ProcessPlan) -> Result<(), Fail> {
    if let Some(name) = &p.keyring {
        // Kernels without keyrings (or with them blocked) are not an error,
        // as with runc.
        match sys::join_session_keyring(name) {
            Ok(()) | Err(Errno::ENOSYS) | Err(Errno::EPERM) | Err(Errno::EACCES) => {}
            Err(e) => {
                return Err(Fail {
                    label: p.labels.keyring,
                    errno: e,
                })
            }
        }
    }
    Ok(())
}

/// Writes the process's oom_score_adj.
pub(super) fn oom_score_adj(p: &ProcessPlan) -> Result<(), Fail> {
    if let Some(v) = &p.oom_score_adj {
        let fd = sys::open(c"/proc/self/oom_score_adj", libc::O_WRONLY, 0).at(p.labels.oom)?;
        let r = sys::write_all(fd, v.as_bytes());
        sys::close(fd);
        r.at(p.labels.oom)?;
    }
    Ok(())
}

/// Sets the persona (linux.personality); inherited across execve.
pub(super) fn personality(p: &ProcessPlan) -> Result<(), Fail> {
    if let Some((persona, label)) = p.personality {
        // SAFETY: personality(2) takes a plain value and changes only this
        // process's execution domain.
        if unsafe { libc::personality(persona) } == -1 {
            return Err(Fail {
                label,
                errno: Errno::last(),
            });
        }
    }
    Ok(())
}

/// Loads the filter; with a listener, sends its descriptor over `sock` to
/// the runtime process on the other end, which hands it on.
pub(super) fn load_seccomp(sc: &crate::process::SeccompPlan, sock: RawFd) -> Result<(), Errno> {
    let fd = sys::seccomp_set_filter(sc.filter.flags(), sc.filter.program())?;
    if sc.filter.listener().is_some() {
        let sent = sync::send_with_fd(sock, Msg::new(sync::SECCOMP_FD, 0, 0), fd);
        sys::close(fd);
        sent?;
    }
    Ok(())
}

/// Reports a failure after `start` connected: to `start` itself, since the
/// runtime that created the container is gone.
fn start_fail(conn: RawFd, label: u32, errno: Errno) -> Fail {
    let _ = sync::send(conn, Msg::new(sync::ERROR, label as i32, errno as i32));
    Fail { label, errno }
}

fn read_to_end(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    let mut n = 0;
    loop {
        if n == buf.len() {
            return Err(Errno::EMSGSIZE);
        }
        match sys::read(fd, &mut buf[n..])? {
            0 => return Ok(n),
            k => n += k,
        }
    }
}

/// Runs one startContainer hook: state on stdin, killed at its timeout.
fn run_child_hook(h: &ChildHook, state: &[u8]) -> Result<(), Errno> {
    // A socket pair rather than a pipe: a hook that exits without reading
    // gives EPIPE (MSG_NOSIGNAL), not a SIGPIPE that would kill the init.
    let mut pipe = [0 as libc::c_int; 2];
    // SAFETY: `pipe` has room for two descriptors.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            pipe.as_mut_ptr(),
        )
    } != 0
    {
        return Err(Errno::last());
    }
    let pid = sys::clone_fork(0)?;
    if pid == 0 {
        // SAFETY: dup2 onto stdin, then exec with prepared arrays.
        unsafe {
            libc::dup2(pipe[0], 0);
            libc::execve(h.path.as_ptr(), h.argv.as_ptr(), h.envp.as_ptr());
        }
        sys::exit_now(127);
    }
    sys::close(pipe[0]);
    let _ = sys::send_all(pipe[1], state);
    sys::close(pipe[1]);
    let pidfd = sys::pidfd_open(pid)?;
    let done = sys::poll_readable(pidfd, h.timeout_ms);
    sys::close(pidfd);
    if !matches!(done, Ok(true)) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    match done {
        Ok(true) if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 => Ok(()),
        Ok(true) => Err(Errno::ECANCELED),
        Ok(false) => Err(Errno::ETIMEDOUT),
        Err(e) => Err(e),
    }
}

/// The pty: created on the container's devpts, the master sent over the
/// console socket, the slave made the controlling terminal, stdio and
/// /dev/console.
pub(super) fn console(p: &ProcessPlan, bind_console: bool) -> Result<(), Fail> {
    let l = p.labels.console;
    let master = sys::open(c"/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY, 0).at(l)?;
    let unlock: libc::c_int = 0;
    let mut n: libc::c_uint = 0;
    // SAFETY: ioctls on the pty master with valid out-pointers.
    let slave = unsafe {
        if libc::ioctl(master, libc::TIOCSPTLCK, &unlock) != 0
            || libc::ioctl(master, libc::TIOCGPTN, &mut n) != 0
        {
            return Err(Fail {
                label: l,
                errno: Errno::last(),
            });
        }
        libc::ioctl(
            master,
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(Fail {
            label: l,
            errno: Errno::last(),
        });
    }
    if let Some((rows, cols)) = p.console_size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: valid winsize pointer.
        if unsafe { libc::ioctl(slave, libc::TIOCSWINSZ, &ws) } != 0 {
            return Err(Fail {
                label: l,
                errno: Errno::last(),
            });
        }
    }
    if let Some(sock) = &p.console_socket {
        sys::send_fd(sock.as_raw_fd(), master, b"/dev/ptmx").at(l)?;
    }
    sys::close(master);
    if bind_console {
        bind_dev_console(l, n)?;
    }
    for target in 0..3 {
        // SAFETY: duplicating a valid descriptor onto stdio.
        if unsafe { libc::dup3(slave, target, 0) } < 0 {
            return Err(Fail {
                label: l,
                errno: Errno::last(),
            });
        }
    }
    sys::close(slave);
    // SAFETY: TIOCSCTTY on our new session's terminal.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
        return Err(Fail {
            label: l,
            errno: Errno::last(),
        });
    }
    Ok(())
}

/// The init's /dev/console: a bind mount of its pty slave number `n`.
fn bind_dev_console(l: u32, n: libc::c_uint) -> Result<(), Fail> {
    let mut pts = [0u8; 32];
    let prefix = b"/dev/pts/";
    pts[..prefix.len()].copy_from_slice(prefix);
    let digits = sys::FdPath::new(n as RawFd);
    let d = &digits.as_cstr().to_bytes()[b"/proc/self/fd/".len()..];
    pts[prefix.len()..prefix.len() + d.len()].copy_from_slice(d);
    let pts = std::ffi::CStr::from_bytes_until_nul(&pts).map_err(|_| Fail {
        label: l,
        errno: Errno::EINVAL,
    })?;
    match sys::open(
        c"/dev/console",
        libc::O_CREAT | libc::O_RDWR | libc::O_NOCTTY,
        0o600,
    ) {
        Ok(fd) => sys::close(fd),
        Err(e) => return Err(Fail { label: l, errno: e }),
    }
    sys::mount(Some(pts), c"/dev/console", None, libc::MS_BIND, None).at(l)?;
    Ok(())
}

/// rlimits, groups, uid/gid, capabilities, no_new_privs, umask, cwd.
pub(super) fn credentials(p: &ProcessPlan) -> Result<(), Fail> {
    let l = &p.labels;
    for &(res, soft, hard, label) in &p.rlimits {
        let r = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: valid rlimit pointer.
        if unsafe { libc::setrlimit(res as _, &r) } != 0 {
            return Err(Fail {
                label,
                errno: Errno::last(),
            });
        }
    }
    if p.set_groups {
        sys::setgroups(&p.groups).at(l.groups)?;
    }
    for cap in 0..=p.last_cap {
        if p.caps.bounding & (1u64 << cap) == 0 {
            match sys::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0) {
                Ok(()) | Err(Errno::EINVAL) => {}
                Err(e) => {
                    return Err(Fail {
                        label: l.caps,
                        errno: e,
                    })
                }
            }
        }
    }
    sys::prctl(libc::PR_SET_KEEPCAPS, 1, 0).at(l.caps)?;
    sys::setresgid(p.gid).at(l.user)?;
    sys::setresuid(p.uid).at(l.user)?;
    sys::prctl(libc::PR_SET_KEEPCAPS, 0, 0).at(l.caps)?;
    // Try the working directory while still privileged; again below after
    // the capabilities drop, where it must work as the user.
    let cwd_early = nix::unistd::chdir(p.cwd.as_c_str());
    sys::capset(&sys::CapSets {
        effective: p.caps.effective,
        permitted: p.caps.permitted,
        inheritable: p.caps.inheritable,
    })
    .at(l.caps)?;
    for cap in 0..=p.last_cap {
        if p.caps.ambient & (1u64 << cap) != 0 {
            // A capability missing from the inheritable set cannot be
            // ambient; like runc, that is not an error.
            match sys::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap as libc::c_ulong,
            ) {
                Ok(()) | Err(Errno::EPERM) => {}
                Err(e) => {
                    return Err(Fail {
                        label: l.caps,
                        errno: e,
                    })
                }
            }
        }
    }
    if p.no_new_privs {
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).at(l.nnp)?;
    }
    // SAFETY: umask only changes this process's mask.
    unsafe { libc::umask(p.umask) };
    if cwd_early.is_err() {
        nix::unistd::chdir(p.cwd.as_c_str()).at(l.cwd)?;
    }
    Ok(())
}

/// The first candidate for args[0] that is an executable regular file.
pub(super) fn find_executable(p: &ProcessPlan) -> Result<&std::ffi::CStr, Fail> {
    let mut err = Errno::ENOENT;
    for c in &p.exec_candidates {
        // SAFETY: zeroed stat is a valid out-parameter; `c` is NUL-terminated.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::stat(c.as_ptr(), &mut st) } != 0 {
            continue;
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            err = Errno::EACCES;
            continue;
        }
        // SAFETY: `c` is NUL-terminated.
        if unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::X_OK, libc::AT_EACCESS) } == 0
        {
            return Ok(c);
        }
        err = Errno::EACCES;
    }
    Err(Fail {
        label: p.labels.exec,
        errno: err,
    })
}
