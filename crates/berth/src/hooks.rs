//! Lifecycle hooks (runtime-spec "POSIX-platform Hooks"): which hooks run
//! when, their state on stdin, their env, args and timeout.
//!
//! Hooks that run in the runtime namespace (prestart, createRuntime,
//! poststart, poststop) and createContainer (joined to the container's
//! namespaces before its root is pivoted) are spawned by the runtime;
//! startContainer hooks are spawned by the container's init from a
//! prepared [`ChildHook`], because they must resolve inside the container.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, LinuxNamespaceType, Spec};

use crate::error::{Error, Result};
use crate::process::CStrArray;

/// Every hook list of `spec` with its name in config.json, in lifecycle
/// order.
pub fn all_hooks(spec: &Spec) -> Vec<(&'static str, &[Hook])> {
    let Some(h) = spec.hooks() else {
        return Vec::new();
    };
    #[allow(deprecated)]
    let prestart = h.prestart();
    [
        ("prestart", prestart),
        ("createRuntime", h.create_runtime()),
        ("createContainer", h.create_container()),
        ("startContainer", h.start_container()),
        ("poststart", h.poststart()),
        ("poststop", h.poststop()),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.as_deref().unwrap_or_default()))
    .collect()
}

/// The hooks of one kind (e.g. "poststop").
pub fn hooks_of<'a>(spec: &'a Spec, kind: &str) -> &'a [Hook] {
    all_hooks(spec)
        .into_iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// Runs one hook to completion: `state` on stdin, the hook's own args and
/// env (nothing inherited), killed after its timeout. `namespaces` are
/// joined before exec (createContainer hooks).
pub fn run(
    kind: &'static str,
    hook: &Hook,
    state: &[u8],
    namespaces: &[(LinuxNamespaceType, OwnedFd)],
) -> Result<()> {
    let path = hook.path().display().to_string();
    let fail = |msg: String| Error::Hook {
        kind,
        path: path.clone(),
        msg,
    };
    let mut cmd = Command::new(hook.path());
    let args = hook.args().as_deref().unwrap_or_default();
    if let Some((arg0, rest)) = args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().as_deref().unwrap_or_default() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    // stdin is a socket, not a pipe: writing to a hook that exits without
    // reading must be EPIPE for us, never a SIGPIPE that ends the caller.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| fail(format!("cannot make its stdin: {e}")))?;
    cmd.stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let ns: Vec<(libc::c_int, libc::c_int)> = namespaces
        .iter()
        .map(|(t, fd)| (crate::namespaces::clone_flag(*t), fd.as_raw_fd()))
        .collect();
    if !ns.is_empty() {
        // SAFETY: the closure only calls setns(2) on descriptors that stay
        // open in the parent until spawn returns; it does not allocate.
        unsafe {
            cmd.pre_exec(move || {
                for &(flag, fd) in &ns {
                    crate::sys::setns(fd, flag).map_err(std::io::Error::from)?;
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().map_err(|e| fail(format!("cannot run: {e}")))?;
    drop(cmd);
    // A hook may exit without reading its stdin: that is fine.
    let _ = send_all(&ours, state);
    drop(ours);
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let deadline = hook
        .timeout()
        .map(|t| Instant::now() + Duration::from_secs(t.max(1) as u64));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(fail(format!("wait: {e}"))),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "timed out after {}s",
                hook.timeout().unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "failed".to_string(),
    };
    Err(fail(format!(
        "{how}, stdout: {}, stderr: {}",
        stdout.trim_end(),
        stderr.trim_end()
    )))
}

fn send_all(sock: &std::os::unix::net::UnixStream, mut data: &[u8]) -> std::io::Result<()> {
    use nix::sys::socket::{send, MsgFlags};
    while !data.is_empty() {
        match send(sock.as_raw_fd(), data, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Runs every hook of a list in order, stopping at the first failure.
pub fn run_all(
    kind: &'static str,
    hooks: &[Hook],
    state: &[u8],
    namespaces: &[(LinuxNamespaceType, OwnedFd)],
) -> Result<()> {
    for h in hooks {
        run(kind, h, state, namespaces)?;
    }
    Ok(())
}

/// A startContainer hook prepared for the container's init: everything
/// execve needs, built before clone.
#[derive(Debug)]
pub struct ChildHook {
    /// The hook's path, resolved inside the container.
    pub path: CString,
    /// argv (falls back to the path).
    pub argv: CStrArray,
    /// envp.
    pub envp: CStrArray,
    /// Timeout in milliseconds; -1 for none.
    pub timeout_ms: i32,
    /// Index into the plan's labels.
    pub label: u32,
}

impl ChildHook {
    /// Prepares `hook` for the init.
    pub fn prepare(hook: &Hook, label: u32) -> Result<ChildHook> {
        let cs = |s: &str, field: &str| {
            CString::new(s).map_err(|_| Error::spec(field.to_string(), "contains a NUL byte"))
        };
        let path = cs(
            &hook.path().display().to_string(),
            "hooks.startContainer.path",
        )?;
        let args = hook.args().clone().unwrap_or_default();
        let argv = if args.is_empty() {
            CStrArray::new(&[hook.path().display().to_string()])?
        } else {
            CStrArray::new(&args)?
        };
        Ok(ChildHook {
            path,
            argv,
            envp: CStrArray::new(hook.env().as_deref().unwrap_or_default())?,
            timeout_ms: hook
                .timeout()
                .map_or(-1, |t| (t.clamp(1, i32::MAX as i64 / 1000) * 1000) as i32),
            label,
        })
    }
}
