//! The container's process (runtime-spec "Process"): args, env, cwd, user,
//! rlimits, capabilities, noNewPrivileges, terminal, and the init that
//! sets them up and execs the program.

pub(crate) mod init;
pub mod signal;
pub mod sync;

use std::ffi::CString;
use std::os::fd::OwnedFd;

use oci_spec::runtime::{PosixRlimitType, Process};

use crate::capabilities::{self, CapMasks};
use crate::error::{Error, Result};
use crate::plan::Labels;

/// A NULL-terminated array of C strings, as execve(2) takes.
#[derive(Debug)]
pub struct CStrArray {
    owned: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

impl CStrArray {
    /// Builds the array; a NUL byte inside an item is an error.
    pub fn new<S: AsRef<str>>(items: &[S]) -> Result<CStrArray> {
        let owned = items
            .iter()
            .map(|s| CString::new(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| Error::spec("process", "an argument or variable contains a NUL byte"))?;
        let mut ptrs: Vec<_> = owned.iter().map(|c| c.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        Ok(CStrArray { owned, ptrs })
    }

    /// The pointer array for execve.
    pub fn as_ptr(&self) -> *const *const libc::c_char {
        self.ptrs.as_ptr()
    }

    /// The strings.
    pub fn items(&self) -> &[CString] {
        &self.owned
    }
}

/// The default PATH when the process env has none (as runc).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process part of a plan.
#[derive(Debug)]
pub struct ProcessPlan {
    /// argv.
    pub argv: CStrArray,
    /// envp.
    pub envp: CStrArray,
    /// Paths tried in order for args[0] (PATH lookup done in advance).
    pub exec_candidates: Vec<CString>,
    /// Working directory.
    pub cwd: CString,
    /// uid.
    pub uid: libc::uid_t,
    /// gid.
    pub gid: libc::gid_t,
    /// Supplementary groups.
    pub groups: Vec<libc::gid_t>,
    /// Whether setgroups(2) may be called (not in a user namespace with
    /// setgroups denied).
    pub set_groups: bool,
    /// umask (0022 when unset, as runc).
    pub umask: libc::mode_t,
    /// (resource, soft, hard, label).
    pub rlimits: Vec<(libc::c_int, u64, u64, u32)>,
    /// noNewPrivileges.
    pub no_new_privs: bool,
    /// Capability sets.
    pub caps: CapMasks,
    /// Highest capability number of the kernel.
    pub last_cap: u8,
    /// Allocate a pty.
    pub terminal: bool,
    /// (rows, cols) for the pty.
    pub console_size: Option<(u16, u16)>,
    /// Connected console socket the pty master is sent over.
    pub console_socket: Option<OwnedFd>,
    /// Number of extra descriptors passed in (3..3+N).
    pub preserve_fds: u32,
    /// Session keyring name (None with --no-new-keyring).
    pub keyring: Option<CString>,
    /// Value for /proc/self/oom_score_adj.
    pub oom_score_adj: Option<CString>,
    /// The compiled seccomp filter, if the config has one.
    pub seccomp: Option<SeccompPlan>,
    /// Step labels.
    pub labels: ProcessLabels,
}

/// When and how the init loads the seccomp filter.
#[derive(Debug)]
pub struct SeccompPlan {
    /// The compiled profile.
    pub filter: crate::seccomp::Filter,
    /// Load it before the credentials change rather than right before
    /// execve: without no_new_privs, loading a filter needs CAP_SYS_ADMIN,
    /// which the process may be about to lose (as in runc).
    pub early: bool,
    /// Label of the load step.
    pub label: u32,
}

impl SeccompPlan {
    /// Compiles `linux.seccomp` for a process with (or without)
    /// no_new_privs.
    pub fn new(
        profile: &oci_spec::runtime::LinuxSeccomp,
        no_new_privs: bool,
        labels: &mut Labels,
    ) -> Result<SeccompPlan> {
        Ok(SeccompPlan {
            filter: crate::seccomp::compile(profile)?,
            early: !no_new_privs,
            label: labels.add("load the seccomp filter (linux.seccomp)"),
        })
    }
}

/// Labels of the process steps.
#[derive(Debug, Default)]
pub struct ProcessLabels {
    /// exec / lookup of args[0].
    pub exec: u32,
    /// chdir to cwd.
    pub cwd: u32,
    /// setgroups.
    pub groups: u32,
    /// setresgid / setresuid.
    pub user: u32,
    /// capabilities.
    pub caps: u32,
    /// noNewPrivileges.
    pub nnp: u32,
    /// console setup.
    pub console: u32,
    /// session keyring.
    pub keyring: u32,
    /// oomScoreAdj.
    pub oom: u32,
    /// setsid and descriptors.
    pub session: u32,
}

fn rlimit_resource(t: PosixRlimitType) -> libc::c_int {
    use PosixRlimitType::*;
    (match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }) as libc::c_int
}

/// Inputs to [`plan`] besides the process config.
pub struct PlanInput {
    /// `--preserve-fds` (plus LISTEN_FDS).
    pub preserve_fds: u32,
    /// Extra environment (LISTEN_FDS/LISTEN_PID).
    pub extra_env: Vec<String>,
    /// Connected console socket.
    pub console_socket: Option<OwnedFd>,
    /// Session keyring name, None for `--no-new-keyring`.
    pub keyring: Option<String>,
    /// Whether the container has a user namespace whose setgroups is denied.
    pub setgroups_denied: bool,
}

/// Prepares the process setup.
pub fn plan(p: &Process, input: PlanInput, labels: &mut Labels) -> Result<ProcessPlan> {
    let args = p.args().clone().unwrap_or_default();
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(input.extra_env);
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_string();
    let arg0 = &args[0];
    let exec_candidates = if arg0.contains('/') {
        vec![CString::new(arg0.as_str()).map_err(|_| Error::spec("process.args[0]", "NUL byte"))?]
    } else {
        path_var
            .split(':')
            .map(|d| if d.is_empty() { "." } else { d })
            .map(|d| CString::new(format!("{d}/{arg0}")))
            .collect::<Result<_, _>>()
            .map_err(|_| Error::spec("process.args[0]", "NUL byte"))?
    };
    let user = p.user();
    let mut rlimits = Vec::new();
    let mut seen = Vec::new();
    for (i, r) in p
        .rlimits()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let field = format!("process.rlimits[{i}]");
        if seen.contains(&r.typ()) {
            return Err(Error::spec(field, format!("{:?} is given twice", r.typ())));
        }
        seen.push(r.typ());
        if r.soft() > r.hard() {
            return Err(Error::spec(
                field,
                format!("soft limit {} is above hard limit {}", r.soft(), r.hard()),
            ));
        }
        rlimits.push((
            rlimit_resource(r.typ()),
            r.soft(),
            r.hard(),
            labels.add(format!(
                "set rlimit {:?} soft={} hard={} ({field})",
                r.typ(),
                r.soft(),
                r.hard()
            )),
        ));
    }
    let (console_size, terminal) = (
        p.console_size()
            .map(|b| (b.height() as u16, b.width() as u16)),
        p.terminal().unwrap_or(false),
    );
    if terminal && input.console_socket.is_none() {
        return Err(Error::spec(
            "process.terminal",
            "a terminal needs a console socket (--console-socket)",
        ));
    }
    let plan_labels = ProcessLabels {
        exec: labels.add(format!(
            "executable {arg0:?} (process.args[0]) not found in the container (PATH={path_var})"
        )),
        cwd: labels.add(format!("chdir to {} (process.cwd)", p.cwd().display())),
        groups: labels.add("set supplementary groups (process.user.additionalGids)"),
        user: labels.add(format!(
            "switch to uid {} gid {} (process.user)",
            user.uid(),
            user.gid()
        )),
        caps: labels.add("set capabilities (process.capabilities)"),
        nnp: labels.add("set no_new_privs (process.noNewPrivileges)"),
        console: labels.add("set up the console (process.terminal)"),
        keyring: labels.add("join a new session keyring"),
        oom: labels.add(format!(
            "write {:?} to /proc/self/oom_score_adj (process.oomScoreAdj)",
            p.oom_score_adj().unwrap_or_default()
        )),
        session: labels.add("create session"),
    };
    Ok(ProcessPlan {
        argv: CStrArray::new(&args)?,
        envp: CStrArray::new(&env)?,
        exec_candidates,
        cwd: CString::new(p.cwd().as_os_str().as_encoded_bytes())
            .map_err(|_| Error::spec("process.cwd", "NUL byte"))?,
        uid: user.uid(),
        gid: user.gid(),
        groups: user.additional_gids().clone().unwrap_or_default(),
        set_groups: !input.setgroups_denied,
        umask: user.umask().unwrap_or(0o022) as libc::mode_t,
        rlimits,
        no_new_privs: p.no_new_privileges().unwrap_or(false),
        caps: capabilities::masks(p.capabilities().as_ref())?,
        last_cap: capabilities::last_cap(),
        terminal,
        console_size,
        console_socket: input.console_socket,
        preserve_fds: input.preserve_fds,
        keyring: input
            .keyring
            .map(|k| CString::new(k).map_err(|_| Error::spec("id", "NUL byte")))
            .transpose()?,
        oom_score_adj: p
            .oom_score_adj()
            .map(|v| CString::new(v.to_string()).expect("digits")),
        seccomp: None,
        labels: plan_labels,
    })
}

/// Makes the calling process a child subreaper, so that a container's init
/// is reparented to it (and can be waited for) once the setup process
/// between them exits.
pub fn set_child_subreaper() -> Result<()> {
    crate::sys::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0)
        .map_err(|e| Error::sys("prctl(PR_SET_CHILD_SUBREAPER)", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_lookup_is_prepared() {
        let p: Process = serde_json::from_value(serde_json::json!({
            "user": {"uid": 0, "gid": 0}, "cwd": "/", "args": ["sh", "-c", "true"],
            "env": ["PATH=/bin:/usr/bin"]
        }))
        .unwrap();
        let input = PlanInput {
            preserve_fds: 0,
            extra_env: vec![],
            console_socket: None,
            keyring: None,
            setgroups_denied: false,
        };
        let plan = plan(&p, input, &mut Labels::default()).unwrap();
        let c: Vec<_> = plan
            .exec_candidates
            .iter()
            .map(|c| c.to_str().unwrap())
            .collect();
        assert_eq!(c, ["/bin/sh", "/usr/bin/sh"]);
        assert_eq!(plan.umask, 0o022);
        assert_eq!(plan.argv.items().len(), 3);
    }
}
