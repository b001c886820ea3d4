//! The default seccomp profile `berth spec --seccomp` writes: the policy of
//! Docker's (moby's) default profile (moby/profiles `seccomp/default.json`)
//! as the engine renders it for a container on an x86_64 host.
//!
//! moby keeps one profile for every architecture and filters it per
//! container: by the host's architecture, by the kernel version and by the
//! container's bounding capabilities. Only the x86_64 host's view is kept
//! here (x86_64, i386 and x32 code; rules for other architectures are
//! dropped), and the capability filter is [`default_profile`]'s argument.
//!
//! The rules keep moby's order and grouping, so that the generated JSON
//! reads side by side with moby's.

use oci_spec::runtime::{
    Arch as SpecArch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// What a syscall the profile does not allow gets.
const DEFAULT_ERRNO: u32 = libc::EPERM as u32;

/// Syscalls every container may make, whatever its capabilities. The list
/// is moby's, less `riscv_hwprobe`, which only RISC-V has.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listmount",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "setxattrat",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statmount",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "uretprobe",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Allowed to everyone on kernels from 4.8 on, where seccomp also checks
/// the syscalls a tracer makes its tracee perform (before that, ptrace
/// could bypass the filter). moby adds them by kernel version; every kernel
/// Berth runs on is newer, so they are always in.
const TRACE: &[&str] = &["process_vm_readv", "process_vm_writev", "ptrace"];

/// The socket(2) domains a container may create, from the kernel's
/// `include/linux/socket.h`, in order. Left out: `AF_UNSPEC` (nothing to
/// create), the families the kernel no longer implements (`AF_DECnet` 12,
/// `AF_ECONET` 19, `AF_ATMSVC` 20, `AF_IRDA` 23, `AF_WANPIPE` 25, `AF_ISDN`
/// 34, `AF_CAIF` 37), `AF_ALG` 38 (the kernel crypto API, an attack surface
/// containers have no use for) and `AF_VSOCK` 40 (host/guest sockets, not
/// confined by network namespaces on most kernels).
const SOCKET_DOMAINS: &[(&str, u64)] = &[
    ("AF_UNIX", 1),
    ("AF_INET", 2),
    ("AF_AX25", 3),
    ("AF_IPX", 4),
    ("AF_APPLETALK", 5),
    ("AF_NETROM", 6),
    ("AF_BRIDGE", 7),
    ("AF_ATMPVC", 8),
    ("AF_X25", 9),
    ("AF_INET6", 10),
    ("AF_ROSE", 11),
    ("AF_NETBEUI", 13),
    ("AF_SECURITY", 14),
    ("AF_KEY", 15),
    ("AF_NETLINK", 16),
    ("AF_PACKET", 17),
    ("AF_ASH", 18),
    ("AF_RDS", 21),
    ("AF_SNA", 22),
    ("AF_PPPOX", 24),
    ("AF_LLC", 26),
    ("AF_IB", 27),
    ("AF_MPLS", 28),
    ("AF_CAN", 29),
    ("AF_TIPC", 30),
    ("AF_BLUETOOTH", 31),
    ("AF_IUCV", 32),
    ("AF_RXRPC", 33),
    ("AF_PHONET", 35),
    ("AF_IEEE802154", 36),
    ("AF_NFC", 39),
    ("AF_KCM", 41),
    ("AF_QIPCRTR", 42),
    ("AF_SMC", 43),
    ("AF_XDP", 44),
    ("AF_MCTP", 45),
];

/// The personality(2) values allowed: `PER_LINUX`, `PER_LINUX32`,
/// `UNAME26` alone and with `PER_LINUX32`, and 0xffffffff, which only
/// queries the current persona.
const PERSONAS: &[u64] = &[0x0, 0x0008, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// The namespace flags of clone(2) (`CLONE_NEWNS`, `CLONE_NEWUTS`,
/// `CLONE_NEWIPC`, `CLONE_NEWUSER`, `CLONE_NEWPID`, `CLONE_NEWNET`,
/// `CLONE_NEWCGROUP`) that a container without `CAP_SYS_ADMIN` may not
/// pass.
const CLONE_NAMESPACES: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// When a rule is part of the profile, by the container's bounding set.
#[derive(Clone, Copy, Debug)]
enum When {
    Always,
    /// Only when the container has the capability.
    With(&'static str),
    /// Only when it lacks it.
    Without(&'static str),
}

/// One rule of the profile as moby writes it: at most one argument
/// condition, and the capability that decides whether it applies.
#[derive(Clone, Copy, Debug)]
struct Rule {
    names: &'static [&'static str],
    /// `None` allows; `Some(errno)` fails the call with it.
    errno: Option<u32>,
    /// `(index, value, operator)`; a masked comparison's mask is `value`
    /// and its expected result 0.
    arg: Option<(usize, u64, LinuxSeccompOperator)>,
    when: When,
}

const fn allow(names: &'static [&'static str]) -> Rule {
    Rule {
        names,
        errno: None,
        arg: None,
        when: When::Always,
    }
}

const fn with(cap: &'static str, names: &'static [&'static str]) -> Rule {
    Rule {
        when: When::With(cap),
        ..allow(names)
    }
}

/// The rules before socket(2)'s.
const HEAD: &[Rule] = &[allow(ALLOWED), allow(TRACE)];

/// The rules after socket(2)'s and personality(2)'s.
const TAIL: &[Rule] = &[
    allow(&["arch_prctl"]),
    allow(&["modify_ldt"]),
    with("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    with(
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    // Without CAP_SYS_ADMIN, threads and processes but no namespaces.
    Rule {
        names: &["clone"],
        errno: None,
        arg: Some((0, CLONE_NAMESPACES, LinuxSeccompOperator::ScmpCmpMaskedEq)),
        when: When::Without("CAP_SYS_ADMIN"),
    },
    // clone3 passes its flags behind a pointer, which seccomp cannot read:
    // ENOSYS makes libc fall back to clone, whose flags it can.
    Rule {
        names: &["clone3"],
        errno: Some(libc::ENOSYS as u32),
        arg: None,
        when: When::Without("CAP_SYS_ADMIN"),
    },
    with("CAP_SYS_BOOT", &["reboot"]),
    with("CAP_SYS_CHROOT", &["chroot"]),
    with(
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    with("CAP_SYS_PACCT", &["acct"]),
    with(
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    with("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    with(
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    with("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    with(
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    with("CAP_SYSLOG", &["syslog"]),
    with("CAP_BPF", &["bpf"]),
    with("CAP_PERFMON", &["perf_event_open"]),
];

/// socket(2)'s rules: one per allowed domain, except that the run of
/// domains from `AF_UNIX` up is one "less than" comparison, as moby writes
/// it. A bounded range would need two comparisons on one argument, which
/// runtimes read as alternatives, not as both.
fn socket_rules() -> Vec<(u64, LinuxSeccompOperator)> {
    let domains: Vec<u64> = SOCKET_DOMAINS.iter().map(|(_, d)| *d).collect();
    let mut run = 0;
    while run < domains.len() && domains[run] == run as u64 + 1 {
        run += 1;
    }
    let mut rules = Vec::new();
    let rest = if run >= 2 {
        rules.push((domains[run - 1] + 1, LinuxSeccompOperator::ScmpCmpLt));
        &domains[run..]
    } else {
        &domains[..]
    };
    rules.extend(rest.iter().map(|d| (*d, LinuxSeccompOperator::ScmpCmpEq)));
    rules
}

/// Docker's default policy for a container whose bounding set is
/// `capabilities` (names such as `"CAP_SYS_ADMIN"`): syscalls the profile
/// does not allow fail with EPERM; x86_64, i386 and x32 code is filtered
/// alike.
pub fn default_profile(capabilities: &[String]) -> LinuxSeccomp {
    let has = |cap: &str| capabilities.iter().any(|c| c == cap);
    let applies = |r: &Rule| match r.when {
        When::Always => true,
        When::With(cap) => has(cap),
        When::Without(cap) => !has(cap),
    };
    let mut syscalls: Vec<LinuxSyscall> =
        HEAD.iter().filter(|r| applies(r)).map(to_syscall).collect();
    syscalls.extend(socket_rules().into_iter().map(|(value, op)| {
        to_syscall(&Rule {
            names: &["socket"],
            errno: None,
            arg: Some((0, value, op)),
            when: When::Always,
        })
    }));
    syscalls.extend(PERSONAS.iter().map(|&value| {
        to_syscall(&Rule {
            names: &["personality"],
            errno: None,
            arg: Some((0, value, LinuxSeccompOperator::ScmpCmpEq)),
            when: When::Always,
        })
    }));
    syscalls.extend(TAIL.iter().filter(|r| applies(r)).map(to_syscall));

    let mut profile = LinuxSeccomp::default();
    profile
        .set_default_action(LinuxSeccompAction::ScmpActErrno)
        .set_default_errno_ret(Some(DEFAULT_ERRNO))
        .set_architectures(Some(vec![
            SpecArch::ScmpArchX86_64,
            SpecArch::ScmpArchX86,
            SpecArch::ScmpArchX32,
        ]))
        .set_syscalls(Some(syscalls));
    profile
}

fn to_syscall(r: &Rule) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(r.names.iter().map(|n| n.to_string()).collect());
    match r.errno {
        None => s.set_action(LinuxSeccompAction::ScmpActAllow),
        Some(e) => s
            .set_action(LinuxSeccompAction::ScmpActErrno)
            .set_errno_ret(Some(e)),
    };
    if let Some((index, value, op)) = r.arg {
        // A masked comparison expects 0, valueTwo's default, as moby
        // leaves it out.
        let a = LinuxSeccompArgBuilder::default()
            .index(index)
            .value(value)
            .op(op)
            .build()
            .expect("every field of a seccomp argument has a value");
        s.set_args(Some(vec![a]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::{compile, Arch, Filter, RET_ALLOW, RET_ERRNO};

    /// runc's default bounding set, as `berth spec` writes it.
    fn runc_caps() -> Vec<String> {
        let spec = crate::spec::example(false);
        let caps = spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().as_ref())
            .and_then(|c| c.bounding().as_ref())
            .expect("the example has a bounding set");
        let mut names: Vec<String> = caps.iter().map(|c| format!("CAP_{c}")).collect();
        names.sort();
        names
    }

    fn plus(extra: &str) -> Vec<String> {
        let mut caps = runc_caps();
        caps.push(extra.to_string());
        caps
    }

    const EPERM: u32 = RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;

    /// What the compiled profile does with syscall `name`, called as
    /// 64-bit code with `args`.
    fn decide(f: &Filter, name: &str, args: [u64; 6]) -> u32 {
        decide_as(f, Arch::X86_64, name, args)
    }

    fn decide_as(f: &Filter, arch: Arch, name: &str, args: [u64; 6]) -> u32 {
        let nr = arch
            .number(name)
            .unwrap_or_else(|| panic!("{name} has no number on {arch:?}"));
        f.evaluate(arch, nr, &args)
    }

    fn arg0(v: u64) -> [u64; 6] {
        [v, 0, 0, 0, 0, 0]
    }

    /// Names that appear in an allowing rule with no argument condition.
    fn plainly_allowed(p: &LinuxSeccomp) -> Vec<&str> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow && s.args().is_none())
            .flat_map(|s| s.names().iter().map(String::as_str))
            .collect()
    }

    #[test]
    fn runc_default_caps_allow_ordinary_calls_and_no_admin_ones() {
        let p = default_profile(&runc_caps());
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        assert_eq!(
            p.architectures().as_deref(),
            Some(
                &[
                    SpecArch::ScmpArchX86_64,
                    SpecArch::ScmpArchX86,
                    SpecArch::ScmpArchX32
                ][..]
            )
        );
        let allowed = plainly_allowed(&p);
        for name in ["read", "write", "execve", "openat", "exit_group", "wait4"] {
            assert!(allowed.contains(&name), "{name} is not allowed");
        }
        for name in [
            "mount",
            "umount2",
            "reboot",
            "kexec_load",
            "init_module",
            "unshare",
            "setns",
            "bpf",
            "io_uring_setup",
            "keyctl",
        ] {
            assert!(!allowed.contains(&name), "{name} is allowed");
        }
        // clone is allowed only through its namespace-flag condition.
        assert!(!allowed.contains(&"clone"));
        let clone: Vec<&LinuxSyscall> = p
            .syscalls()
            .iter()
            .flatten()
            .filter(|s| s.names().iter().any(|n| n == "clone"))
            .collect();
        assert_eq!(clone.len(), 1, "{clone:?}");
        let a = &clone[0].args().as_ref().unwrap()[0];
        assert_eq!(
            (a.index(), a.value(), a.value_two(), a.op()),
            (0, 0x7E02_0000, None, LinuxSeccompOperator::ScmpCmpMaskedEq)
        );
        let clone3: Vec<&LinuxSyscall> = p
            .syscalls()
            .iter()
            .flatten()
            .filter(|s| s.names().iter().any(|n| n == "clone3"))
            .collect();
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(38));
    }

    #[test]
    fn compiled_policy_for_runc_default_caps() {
        let f = compile(&default_profile(&runc_caps())).unwrap();
        // Three architectures, ~370 syscalls each, argument rules: the
        // range checks keep it well inside the kernel's 4096.
        assert!(
            f.program().len() < 1000,
            "{} instructions",
            f.program().len()
        );
        eprintln!("docker default: {} instructions", f.program().len());
        assert_eq!(decide(&f, "read", [0; 6]), RET_ALLOW);
        assert_eq!(decide(&f, "write", [0; 6]), RET_ALLOW);
        assert_eq!(decide(&f, "mount", [0; 6]), EPERM);
        assert_eq!(decide(&f, "reboot", [0; 6]), EPERM);
        assert_eq!(decide(&f, "kexec_load", [0; 6]), EPERM);
        assert_eq!(decide(&f, "chroot", [0; 6]), EPERM);

        let fork_flags = (libc::CLONE_CHILD_SETTID | libc::SIGCHLD) as u64;
        let thread_flags = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM) as u64;
        assert_eq!(decide(&f, "clone", arg0(fork_flags)), RET_ALLOW);
        assert_eq!(decide(&f, "clone", arg0(thread_flags)), RET_ALLOW);
        for ns in [
            libc::CLONE_NEWNS,
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWCGROUP,
        ] {
            assert_eq!(
                decide(&f, "clone", arg0(fork_flags | ns as u64)),
                EPERM,
                "clone with {ns:#x}"
            );
        }
        assert_eq!(decide(&f, "clone3", [0; 6]), ENOSYS);

        for persona in PERSONAS {
            assert_eq!(decide(&f, "personality", arg0(*persona)), RET_ALLOW);
        }
        // READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE: not allowed.
        assert_eq!(decide(&f, "personality", arg0(0x0040_0000)), EPERM);
        assert_eq!(decide(&f, "personality", arg0(0x0004_0000)), EPERM);

        for domain in [
            libc::AF_UNIX,
            libc::AF_INET,
            libc::AF_INET6,
            libc::AF_NETLINK,
        ] {
            assert_eq!(
                decide(&f, "socket", arg0(domain as u64)),
                RET_ALLOW,
                "{domain}"
            );
        }
        // AF_UNSPEC passes the "less than" rule: the kernel refuses it.
        for domain in [libc::AF_VSOCK, libc::AF_ALG, 12, 46] {
            assert_eq!(decide(&f, "socket", arg0(domain as u64)), EPERM, "{domain}");
        }

        // The same decisions for 32-bit and x32 code.
        assert_eq!(decide_as(&f, Arch::X86, "read", [0; 6]), RET_ALLOW);
        assert_eq!(decide_as(&f, Arch::X86, "mount", [0; 6]), EPERM);
        assert_eq!(decide_as(&f, Arch::X86, "socketcall", [0; 6]), RET_ALLOW);
        assert_eq!(
            decide_as(&f, Arch::X86, "socket", arg0(libc::AF_VSOCK as u64)),
            EPERM
        );
        assert_eq!(decide_as(&f, Arch::X32, "execve", [0; 6]), RET_ALLOW);
        assert_eq!(decide_as(&f, Arch::X32, "clone3", [0; 6]), ENOSYS);
    }

    #[test]
    fn sys_admin_lifts_the_clone_restriction_and_allows_mount() {
        let p = default_profile(&plus("CAP_SYS_ADMIN"));
        let allowed = plainly_allowed(&p);
        for name in ["mount", "umount2", "clone", "clone3", "unshare", "setns"] {
            assert!(allowed.contains(&name), "{name} is not allowed");
        }
        for s in p.syscalls().iter().flatten() {
            assert_eq!(s.action(), LinuxSeccompAction::ScmpActAllow, "{s:?}");
            if s.names().iter().any(|n| n == "clone" || n == "clone3") {
                assert!(s.args().is_none(), "a clone restriction is left: {s:?}");
            }
        }
        let f = compile(&p).unwrap();
        let ns = (libc::CLONE_NEWNS | libc::CLONE_NEWUSER | libc::SIGCHLD) as u64;
        assert_eq!(decide(&f, "clone", arg0(ns)), RET_ALLOW);
        assert_eq!(decide(&f, "clone3", [0; 6]), RET_ALLOW);
        assert_eq!(decide(&f, "mount", [0; 6]), RET_ALLOW);
        // Capabilities other than CAP_SYS_ADMIN still gate their own calls.
        assert_eq!(decide(&f, "reboot", [0; 6]), EPERM);
        assert_eq!(decide(&f, "ptrace", [0; 6]), RET_ALLOW);
        assert_eq!(decide(&f, "kcmp", [0; 6]), EPERM);
    }

    #[test]
    fn each_capability_allows_its_calls() {
        for (cap, name) in [
            ("CAP_SYS_BOOT", "reboot"),
            ("CAP_SYS_CHROOT", "chroot"),
            ("CAP_SYS_MODULE", "finit_module"),
            ("CAP_SYS_PACCT", "acct"),
            ("CAP_SYS_PTRACE", "kcmp"),
            ("CAP_SYS_PTRACE", "pidfd_getfd"),
            ("CAP_SYS_RAWIO", "iopl"),
            ("CAP_SYS_TIME", "settimeofday"),
            ("CAP_SYS_TTY_CONFIG", "vhangup"),
            ("CAP_SYS_NICE", "mbind"),
            ("CAP_SYSLOG", "syslog"),
            ("CAP_BPF", "bpf"),
            ("CAP_PERFMON", "perf_event_open"),
            ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
        ] {
            let without = compile(&default_profile(&runc_caps())).unwrap();
            assert_eq!(decide(&without, name, [0; 6]), EPERM, "{name}");
            let with = compile(&default_profile(&plus(cap))).unwrap();
            assert_eq!(decide(&with, name, [0; 6]), RET_ALLOW, "{name} with {cap}");
            // A capability opens its own calls, not CAP_SYS_ADMIN's.
            assert_eq!(decide(&with, "mount", [0; 6]), EPERM, "{cap}");
        }
    }

    #[test]
    fn socket_domains_are_sorted_and_match_libc() {
        assert!(SOCKET_DOMAINS.windows(2).all(|w| w[0].1 < w[1].1));
        for (name, value) in SOCKET_DOMAINS {
            let known = match *name {
                "AF_UNIX" => Some(libc::AF_UNIX),
                "AF_INET" => Some(libc::AF_INET),
                "AF_INET6" => Some(libc::AF_INET6),
                "AF_NETLINK" => Some(libc::AF_NETLINK),
                "AF_PACKET" => Some(libc::AF_PACKET),
                "AF_BLUETOOTH" => Some(libc::AF_BLUETOOTH),
                "AF_NFC" => Some(libc::AF_NFC),
                "AF_XDP" => Some(libc::AF_XDP),
                "AF_TIPC" => Some(libc::AF_TIPC),
                "AF_IB" => Some(libc::AF_IB),
                _ => None,
            };
            if let Some(k) = known {
                assert_eq!(*value, k as u64, "{name}");
            }
        }
        assert_eq!(
            socket_rules()[0],
            (12, LinuxSeccompOperator::ScmpCmpLt),
            "AF_UNIX..AF_ROSE as one comparison"
        );
        assert_eq!(socket_rules().len(), 1 + SOCKET_DOMAINS.len() - 11);
    }

    #[test]
    fn every_name_is_an_x86_syscall() {
        // i386 has these only through socketcall(2); libseccomp resolves
        // them itself.
        let multiplexed = ["recv", "send"];
        let names = HEAD
            .iter()
            .chain(TAIL)
            .flat_map(|r| r.names.iter().copied())
            .chain(["socket", "personality"]);
        for name in names {
            let known = [Arch::X86_64, Arch::X86, Arch::X32]
                .iter()
                .any(|a| a.number(name).is_some());
            assert!(
                known || multiplexed.contains(&name),
                "{name} is not a syscall of x86_64, i386 or x32"
            );
        }
        let distinct: std::collections::HashSet<_> = ALLOWED.iter().collect();
        assert_eq!(distinct.len(), ALLOWED.len(), "a name is listed twice");
    }

    #[test]
    fn round_trips_through_config_json() {
        for caps in [runc_caps(), plus("CAP_SYS_ADMIN")] {
            let p = default_profile(&caps);
            let text = serde_json::to_string(&p).unwrap();
            let back: LinuxSeccomp = serde_json::from_str(&text).unwrap();
            assert_eq!(back, p);

            let mut spec = serde_json::to_value(crate::spec::example(false)).unwrap();
            spec["linux"]["seccomp"] = serde_json::from_str(&text).unwrap();
            let doc = serde_json::to_vec(&spec).unwrap();
            let parsed = crate::spec::parse(&doc).unwrap();
            assert_eq!(
                parsed.linux().as_ref().unwrap().seccomp().as_ref(),
                Some(&p)
            );
        }
        let v = serde_json::to_value(default_profile(&runc_caps())).unwrap();
        assert_eq!(v["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(v["defaultErrnoRet"], 1);
        assert_eq!(
            v["architectures"],
            serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        let clone = v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["names"] == serde_json::json!(["clone"]))
            .unwrap();
        assert_eq!(
            clone["args"],
            serde_json::json!([{"index": 0, "value": 2114060288u64, "op": "SCMP_CMP_MASKED_EQ"}])
        );
    }
}
