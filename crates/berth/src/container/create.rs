//! `create`: compile the plan, clone the setup processes, drive them
//! through the sync protocol, run the create hooks, and record the state.
//! Any failure undoes everything: processes, cgroup, state directory.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use oci_spec::runtime::LinuxNamespaceType;

use super::state::{self, Saved};
use super::{hook_state_json, Container, CreateOptions, Runtime, Status};
use crate::cgroups::{Cgroup, Hierarchy};
use crate::error::{Error, Result};
use crate::hooks::{self, ChildHook};
use crate::plan::{Labels, NsLabels, Plan};
use crate::process::init::{self, ChildFds};
use crate::process::sync::{self, Msg};
use crate::sys;

/// Undoes a failed create: kills what was started, removes the cgroup and
/// the state directory.
struct Undo {
    dir: Option<PathBuf>,
    cgroup: Option<Cgroup>,
    stage1: Option<i32>,
    init: Option<(i32, u64)>,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(pid) = self.stage1.take() {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        }
        if let Some((pid, start)) = self.init.take() {
            if sys::process_start_time(pid) == Some(start) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::SIGKILL,
                );
                super::wait_gone(pid, start, Duration::from_secs(5));
            }
        }
        if let Some(cg) = self.cgroup.take() {
            if let Err(e) = cg.destroy() {
                tracing::warn!("cleaning up after a failed create: {e}");
            }
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Undo {
    fn disarm(mut self) {
        self.dir = None;
        self.cgroup = None;
        self.stage1 = None;
        self.init = None;
    }
}

/// `p` made absolute against the working directory and cleaned lexically
/// (`.` and `..` removed), as runc does with the bundle path.
fn absolute(p: &Path) -> Result<PathBuf> {
    let p = if p.is_absolute() {
        p.to_path_buf()
    } else {
        let cwd = std::env::current_dir().map_err(|e| Error::io("getcwd", ".", e))?;
        cwd.join(p)
    };
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    Ok(out)
}

pub(super) fn create(rt: &Runtime, id: &str, opts: &CreateOptions) -> Result<Container> {
    std::fs::create_dir_all(rt.root()).map_err(|e| Error::io("create", rt.root(), e))?;
    let dir = rt.dir(id);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::AlreadyExists(id.to_string()))
        }
        Err(e) => return Err(Error::io("create", &dir, e)),
    }
    let mut undo = Undo {
        dir: Some(dir.clone()),
        cgroup: None,
        stage1: None,
        init: None,
    };
    let lock = state::Lock::acquire(&dir, id)?;
    let bundle = absolute(&opts.bundle)?;
    let spec = crate::spec::load(&bundle)?;
    let rootfs = crate::spec::rootfs_path(&bundle, &spec);
    let linux = spec.linux().clone().unwrap_or_default();
    let process = spec.process().clone().expect("validated");
    let mut labels = Labels::default();

    let namespaces = crate::namespaces::plan(&linux, &mut |s| labels.add(s))?;

    if process.terminal().unwrap_or(false) && opts.console_socket.is_none() {
        return Err(Error::spec(
            "process.terminal",
            "a terminal needs a console socket (--console-socket)",
        ));
    }
    let console_socket = opts
        .console_socket
        .as_deref()
        .map(connect_console)
        .transpose()?;

    // LISTEN_FDS (socket activation) passes through like --preserve-fds.
    let listen_fds: u32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let extra_env = if listen_fds > 0 {
        vec![
            format!("LISTEN_FDS={listen_fds}"),
            "LISTEN_PID=1".to_string(),
        ]
    } else {
        Vec::new()
    };
    let mut process_plan = crate::process::plan(
        &process,
        crate::process::PlanInput {
            preserve_fds: opts.preserve_fds + listen_fds,
            extra_env,
            console_socket,
            keyring: (!opts.no_new_keyring).then(|| format!("_ses.{id}")),
            setgroups_denied: namespaces.new_user && !nix::unistd::geteuid().is_root(),
            root: Some(rootfs.clone()),
        },
        &mut labels,
    )?;
    process_plan.add_seccomp(linux.seccomp().as_ref(), &mut labels)?;
    process_plan.set_personality(linux.personality().as_ref(), &mut labels)?;

    let cgroup = if spec.linux().is_some() {
        let h = Hierarchy::detect()?;
        let cg = h.create(
            linux.cgroups_path().as_deref(),
            id,
            linux.resources().as_ref(),
        )?;
        undo.cgroup = Some(cg.clone());
        Some(cg)
    } else {
        None
    };

    let rootfs_plan = crate::rootfs::plan(
        &spec,
        &crate::rootfs::PlanInput {
            bundle: &bundle,
            rootfs: &rootfs,
            no_pivot: opts.no_pivot,
            cgroup: cgroup.as_ref(),
            namespaces: &namespaces,
        },
        &mut labels,
    )?;
    let mut start_hooks = Vec::new();
    for (i, h) in hooks::hooks_of(&spec, "startContainer").iter().enumerate() {
        let l = labels.add(format!(
            "startContainer hook {} (hooks.startContainer[{i}])",
            h.path().display()
        ));
        start_hooks.push(ChildHook::prepare(h, l)?);
    }
    let has_create_hooks = ["prestart", "createRuntime", "createContainer"]
        .iter()
        .any(|k| !hooks::hooks_of(&spec, k).is_empty());
    let ns_labels = NsLabels {
        user: labels.add("create user namespace (linux.namespaces)"),
        root: labels.add("become root in the user namespace (linux.uidMappings)"),
        unshare: labels.add("create namespaces (linux.namespaces)"),
        offsets: labels.add("write time namespace offsets (linux.timeOffsets)"),
        fork: labels.add("start the container init"),
    };
    let annotations: BTreeMap<String, String> = spec
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut saved = Saved {
        id: id.to_string(),
        bundle: bundle.clone(),
        rootfs: rootfs.canonicalize().unwrap_or(rootfs.clone()),
        pid: 0,
        start_time: 0,
        created: state::rfc3339(SystemTime::now()),
        owner: state::user_name(nix::unistd::geteuid().as_raw()),
        annotations,
        cgroup: cgroup.clone(),
        config: serde_json::to_value(&spec).unwrap_or_default(),
        labels: Vec::new(),
        no_new_keyring: opts.no_new_keyring,
    };
    let hook_state_capacity = if start_hooks.is_empty() {
        0
    } else {
        saved.pid = i32::MAX;
        let n = hook_state_json(&saved, Status::Created).len() + 64;
        saved.pid = 0;
        n
    };
    let stdio_label = labels.add("connect the init's stdio (CreateOptions.stdio)");
    let plan = Plan {
        id: id.to_string(),
        bundle,
        spec,
        labels,
        namespaces,
        rootfs: rootfs_plan,
        process: process_plan,
        start_hooks,
        has_create_hooks,
        ns_labels,
        hook_state_capacity,
    };

    let (dirfd, sock_path) = state::short_path(&dir, state::START_SOCKET)?;
    let listener = UnixListener::bind(&sock_path)
        .map_err(|e| Error::io("bind", dir.join(state::START_SOCKET), e))?;
    let (parent_end, child_end) = crate::process::sync::pair()?;
    let mut hook_buf = vec![0u8; plan.hook_state_capacity];
    let fds = ChildFds {
        sync: child_end.as_raw_fd(),
        start: listener.as_raw_fd(),
    };
    let parent_raw = parent_end.as_raw_fd();
    // The setup processes keep only what the plan needs: in a threaded
    // host, any other descriptor may be another container's lock (held
    // until our init execs) or a file the host never meant to share.
    let mut keep: Vec<RawFd> = vec![fds.sync, fds.start];
    keep.extend(plan.namespaces.join.iter().map(|j| j.fd.as_raw_fd()));
    keep.extend(plan.process.console_socket.as_ref().map(|s| s.as_raw_fd()));
    let first_closed = 3 + plan.process.preserve_fds as RawFd;
    // Copies above the preserved range, so that moving them onto 0..2 in
    // the child cannot clobber one another or a preserved descriptor; the
    // child's close_all_but drops the copies afterwards.
    let stdio = opts
        .stdio
        .map(|fds| -> Result<[OwnedFd; 3]> {
            let dup = |fd: RawFd| {
                sys::dup_above(fd, first_closed).map_err(|e| {
                    Error::sys("duplicate a stdio descriptor (CreateOptions.stdio)", e)
                })
            };
            Ok([dup(fds[0])?, dup(fds[1])?, dup(fds[2])?])
        })
        .transpose()?;
    let stdio_raw = stdio
        .as_ref()
        .map(|s| [s[0].as_raw_fd(), s[1].as_raw_fd(), s[2].as_raw_fd()]);
    let runtime_fds = [parent_raw, lock.raw_fd(), dirfd.as_raw_fd()];
    let stage1 =
        sys::clone_fork(0).map_err(|e| Error::sys("clone the container's setup process", e))?;
    if stage1 == 0 {
        child_entry(
            &plan,
            fds,
            stdio_raw.map(|s| (s, stdio_label)),
            &runtime_fds,
            (first_closed, &mut keep),
            &mut hook_buf,
        );
    }
    undo.stage1 = Some(stage1);
    drop(child_end);
    drop(listener);
    drop(dirfd);
    drop(stdio);

    let fail = |m: Msg, plan: &Plan| Error::Init {
        what: plan.labels.get(m.a as u32).to_string(),
        errno: Errno::from_raw(m.b),
    };
    let gone = || Error::Init {
        what: "the container's setup process exited".into(),
        errno: Errno::ECHILD,
    };
    // Stage 1: place it in the cgroup (and map its user namespace) before
    // it creates the cgroup namespace and forks the init.
    match sync::recv(parent_raw).map_err(|e| Error::sys("read from the setup process", e))? {
        Some(m) if m.tag == sync::STAGE1_READY => {}
        Some(m) if m.tag == sync::ERROR => return Err(fail(m, &plan)),
        _ => return Err(gone()),
    }
    if plan.namespaces.new_user {
        if !nix::unistd::geteuid().is_root() {
            let _ = std::fs::write(format!("/proc/{stage1}/setgroups"), "deny");
        }
        crate::namespaces::write_id_maps(stage1, &plan.namespaces)?;
    }
    if let Some(cg) = &cgroup {
        cg.add_pid(stage1)?;
    }
    sync::send(parent_raw, Msg::new(sync::CONTINUE, 0, 0))
        .map_err(|e| Error::sys("write to the setup process", e))?;
    let init_pid =
        match sync::recv(parent_raw).map_err(|e| Error::sys("read from the setup process", e))? {
            Some(m) if m.tag == sync::INIT_PID => m.a,
            Some(m) if m.tag == sync::ERROR => return Err(fail(m, &plan)),
            _ => return Err(gone()),
        };
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(stage1), None);
    undo.stage1 = None;
    let start_time = sys::process_start_time(init_pid).ok_or_else(gone)?;
    undo.init = Some((init_pid, start_time));
    saved.pid = init_pid;
    saved.start_time = start_time;

    loop {
        let got = sync::recv_with_fd(parent_raw)
            .map_err(|e| Error::sys("read from the container init", e))?;
        let m = got.as_ref().map(|(m, _)| *m);
        match m {
            Some(m) if m.tag == sync::SECCOMP_FD => {
                let fd = got.and_then(|(_, fd)| fd).ok_or_else(|| {
                    Error::sys("receive the seccomp notify descriptor", Errno::EPROTO)
                })?;
                let listener = plan
                    .process
                    .seccomp
                    .as_ref()
                    .and_then(|s| s.filter.listener())
                    .ok_or_else(|| Error::sys("unexpected seccomp descriptor", Errno::EPROTO))?;
                let state = hook_state_json(&saved, Status::Creating);
                crate::seccomp::notify::send(listener, fd.as_fd(), init_pid, &state)?;
            }
            Some(m) if m.tag == sync::RUN_HOOKS => {
                run_create_hooks(&plan, &saved, init_pid)?;
                sync::send(parent_raw, Msg::new(sync::HOOKS_DONE, 0, 0))
                    .map_err(|e| Error::sys("write to the container init", e))?;
            }
            Some(m) if m.tag == sync::READY => break,
            Some(m) if m.tag == sync::ERROR => return Err(fail(m, &plan)),
            _ => return Err(gone()),
        }
    }
    drop(parent_end);
    saved.labels = plan.labels_vec();
    state::write(&dir, &saved)?;
    if let Some(pid_file) = &opts.pid_file {
        write_pid_file(pid_file, init_pid)?;
    }
    undo.disarm();
    Ok(Container { dir, saved })
}

/// The child side of clone: drop the runtime's descriptors, reset
/// signal state inherited from the host, then stage 1.
fn child_entry(
    plan: &Plan,
    fds: ChildFds,
    stdio: Option<([RawFd; 3], u32)>,
    runtime_fds: &[RawFd],
    (first_closed, keep): (RawFd, &mut [RawFd]),
    hook_buf: &mut [u8],
) -> ! {
    if let Some((stdio, label)) = stdio {
        for (target, &fd) in stdio.iter().enumerate() {
            if let Err(errno) = sys::dup2(fd, target as RawFd) {
                init::report(fds.sync, crate::plan::Fail { label, errno });
            }
        }
    }
    prepare_child(runtime_fds, first_closed, keep);
    init::stage1(plan, fds, hook_buf)
}

/// In a freshly cloned setup process: close every descriptor but stdio,
/// the preserved ones (3..first_closed) and `keep`, and reset the signal
/// state inherited from the host. In a threaded host, any other
/// descriptor may be another container's lock or a file the host never
/// meant to share.
pub(super) fn prepare_child(runtime_fds: &[RawFd], first_closed: RawFd, keep: &mut [RawFd]) {
    // Preserved descriptors may be the runtime's own numbers: close those
    // explicitly, the rest by range.
    for &fd in runtime_fds {
        if !keep.contains(&fd) {
            sys::close(fd);
        }
    }
    sys::close_all_but(first_closed, keep);
    reset_signals();
}

/// Connects to a console socket (`--console-socket`), through a short
/// /proc/self/fd path so long paths stay under the socket path limit.
pub(super) fn connect_console(path: &Path) -> Result<OwnedFd> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (_d, short) = state::short_path(parent, &name)?;
    let s =
        UnixStream::connect(&short).map_err(|e| Error::io("connect to console socket", path, e))?;
    Ok(OwnedFd::from(s))
}

/// Default dispositions and an empty mask: the container must not inherit
/// the host program's signal handling.
fn reset_signals() {
    // SAFETY: sigaction/sigprocmask with valid, zero-initialised structs;
    // no handler code is installed.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = libc::SIG_DFL;
        for sig in 1..=libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaction(sig, &act, std::ptr::null_mut());
            }
        }
    }
}

fn run_create_hooks(plan: &Plan, saved: &Saved, init_pid: i32) -> Result<()> {
    let state = hook_state_json(saved, Status::Creating);
    hooks::run_all(
        "prestart",
        hooks::hooks_of(&plan.spec, "prestart"),
        &state,
        &[],
    )?;
    hooks::run_all(
        "createRuntime",
        hooks::hooks_of(&plan.spec, "createRuntime"),
        &state,
        &[],
    )?;
    let cc = hooks::hooks_of(&plan.spec, "createContainer");
    if !cc.is_empty() {
        // Joined in the container's namespaces except pid, which only a
        // child of the joining process would enter.
        let types: Vec<LinuxNamespaceType> = [
            LinuxNamespaceType::User,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Network,
            LinuxNamespaceType::Cgroup,
            LinuxNamespaceType::Mount,
        ]
        .into_iter()
        .filter(|t| plan.namespaces.has(*t))
        .collect();
        let ns = crate::namespaces::open_of_pid(init_pid, &types)?;
        hooks::run_all("createContainer", cc, &state, &ns)?;
    }
    Ok(())
}

pub(super) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = absolute(path)?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, pid.to_string()).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))
}
