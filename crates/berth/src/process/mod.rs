//! The container's process (runtime-spec "Process"): args, env, cwd, user,
//! rlimits, capabilities, noNewPrivileges, terminal, and the init that
//! sets them up and execs the program.

pub(crate) mod exec;
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
    /// The working directory and its ancestors, shortest first: the init
    /// creates the missing ones (mode 0755) as runc and crun do.
    pub cwd_dirs: Vec<CString>,
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
    /// personality(2) persona from `linux.personality`, and its label.
    pub personality: Option<(libc::c_ulong, u32)>,
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

impl ProcessPlan {
    /// Takes the container's `linux.personality`. Only the domain is
    /// supported: the spec defines no flag values, so any flag is refused.
    pub fn set_personality(
        &mut self,
        persona: Option<&oci_spec::runtime::LinuxPersonality>,
        labels: &mut Labels,
    ) -> Result<()> {
        use oci_spec::runtime::LinuxPersonalityDomain as Domain;
        let Some(persona) = persona else {
            return Ok(());
        };
        if let Some(flag) = persona.flags().as_deref().unwrap_or_default().first() {
            return Err(Error::spec(
                "linux.personality.flags",
                format!("unsupported flag {flag:?}: no personality flags are defined"),
            ));
        }
        let (value, name) = match persona.domain() {
            Domain::PerLinux => (0x0000, "LINUX"),
            Domain::PerLinux32 => (0x0008, "LINUX32"),
        };
        let label = labels.add(format!("set personality {name} (linux.personality)"));
        self.personality = Some((value, label));
        Ok(())
    }

    /// Compiles the container's `linux.seccomp`, if any, for this process
    /// (its no_new_privs decides when the filter is loaded).
    pub fn add_seccomp(
        &mut self,
        profile: Option<&oci_spec::runtime::LinuxSeccomp>,
        labels: &mut Labels,
    ) -> Result<()> {
        if let Some(profile) = profile {
            self.seccomp = Some(SeccompPlan::new(profile, self.no_new_privs, labels)?);
        }
        Ok(())
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
    /// The container's root directory, where /etc/passwd gives HOME when
    /// the process env has none (as runc and crun do).
    pub root: Option<std::path::PathBuf>,
}

/// Prepares the process setup.
pub fn plan(p: &Process, input: PlanInput, labels: &mut Labels) -> Result<ProcessPlan> {
    let args = p.args().clone().unwrap_or_default();
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(input.extra_env);
    let mut env = dedup_env(env);
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        if let Some(root) = &input.root {
            env.push(format!("HOME={}", home_of(root, p.user().uid())));
        }
    }
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
        cwd_dirs: ancestors(p.cwd())?,
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
        personality: None,
        labels: plan_labels,
    })
}

/// The home directory of `uid` in `root`'s /etc/passwd, `/` when there is
/// none. The file is opened with the lookup confined to `root`: a symlink
/// planted in the container cannot point the read at the host's files.
pub fn home_of(root: &std::path::Path, uid: u32) -> String {
    use std::io::Read as _;
    use std::os::fd::{AsRawFd, FromRawFd};
    let read = || -> Option<String> {
        let dir = std::fs::File::open(root).ok()?;
        let fd = crate::sys::open_in_root(dir.as_raw_fd(), c"/etc/passwd", libc::O_RDONLY).ok()?;
        // SAFETY: `fd` was just opened and nothing else owns it.
        let f = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut text = String::new();
        std::fs::File::from(f)
            .take(1 << 20)
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    };
    read()
        .as_deref()
        .and_then(|t| passwd_home(t, uid))
        .unwrap_or("/")
        .to_string()
}

/// The home field of `uid`'s line in passwd(5) text.
fn passwd_home(text: &str, uid: u32) -> Option<&str> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5])
    })
}

/// `/a`, `/a/b`, `/a/b/c` for `/a/b/c`.
fn ancestors(cwd: &std::path::Path) -> Result<Vec<CString>> {
    let mut out = Vec::new();
    let mut cur = std::path::PathBuf::from("/");
    for c in cwd.components() {
        if let std::path::Component::Normal(name) = c {
            cur.push(name);
            out.push(
                CString::new(cur.as_os_str().as_encoded_bytes())
                    .map_err(|_| Error::spec("process.cwd", "NUL byte"))?,
            );
        }
    }
    Ok(out)
}

/// One entry per variable: a later `KEY=` replaces an earlier one's value
/// in the earlier one's place, as runc's environment handling does (so
/// `exec --env PATH=...` overrides the config's PATH for getenv(3), which
/// returns the first match).
fn dedup_env(env: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(env.len());
    for e in env {
        let key = e.split('=').next().unwrap_or_default();
        match out
            .iter_mut()
            .find(|o| o.split('=').next().unwrap_or_default() == key)
        {
            Some(slot) => *slot = e,
            None => out.push(e),
        }
    }
    out
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
            root: None,
        };
        let plan = plan(&p, input, &mut Labels::default()).unwrap();
        let c: Vec<_> = plan
            .exec_candidates
            .iter()
            .map(|c| c.to_str().unwrap())
            .collect();
        assert_eq!(c, ["/bin/sh", "/usr/bin/sh"]);
        assert_eq!(plan.umask, 0o022);
        assert!(plan.cwd_dirs.is_empty());
        assert_eq!(plan.argv.items().len(), 3);
    }

    #[test]
    fn later_variables_replace_earlier_ones_in_place() {
        let env = dedup_env(
            ["PATH=/bin", "A=1", "PATH=/x", "B=", "A=2"]
                .map(String::from)
                .to_vec(),
        );
        assert_eq!(env, ["PATH=/x", "A=2", "B="]);
    }

    #[test]
    fn home_comes_from_the_roots_passwd_and_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n",
        )
        .unwrap();
        assert_eq!(home_of(&root, 0), "/root");
        assert_eq!(home_of(&root, 1000), "/home/bob");
        assert_eq!(home_of(&root, 7), "/");
        // A symlink to the host's passwd resolves inside the root.
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("etc/passwd")).unwrap();
        assert_eq!(home_of(&root, 0), "/");
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../../../../../etc/passwd", root.join("etc/passwd"))
            .unwrap();
        assert_eq!(home_of(&root, 0), "/");
    }
}
