//! config-linux.md "Seccomp": the filter is installed (Seccomp: 2 in
//! /proc/self/status) and each action, errno value and argument
//! comparison has its effect on a real system call.

use serde_json::{json, Value};

use crate::case::{eq, inside, Case, Expect};

const SECTION: &str = "config-linux.md#seccomp";
/// getppid: cannot fail on its own, so any error is the filter's.
const GETPPID: &str = "syscall:110";

/// A profile allowing everything but `rules`.
fn allow_but(rules: Value) -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": rules,
    })
}

fn with(name: &str, profile: Value) -> Case {
    inside(format!("seccomp.{name}"), SECTION).set("/linux/seccomp", profile)
}

/// getpriority(which, who) with a rule on its arguments: `(args, calls)`
/// where each call is `(which, who, blocked)`.
fn by_args(name: &str, args: Value, calls: &[(i64, i64, bool)]) -> Case {
    let mut c = with(
        name,
        allow_but(
            json!([{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": 1, "args": args}]),
        ),
    );
    for &(which, who, blocked) in calls {
        // An unblocked call may still fail on its own (no such process
        // group), never with the filter's EPERM.
        let want = if blocked {
            Expect::Errno("EPERM")
        } else {
            Expect::Ne("!EPERM".into())
        };
        c = c.expect(format!("syscall:140,{which},{who}"), want);
    }
    c
}

pub fn cases(v: &mut Vec<Case>) {
    v.push(
        with("installed", allow_but(json!([])))
            .expect("status:Seccomp", eq("2"))
            .expect(GETPPID, eq("ok")),
    );
    v.push(inside("seccomp.none", SECTION).expect("status:Seccomp", eq("0")));
    v.push(
        with(
            "errno.default-is-EPERM",
            allow_but(json!([{"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}])),
        )
        .expect(GETPPID, Expect::Errno("EPERM")),
    );
    v.push(
        with(
            "errno.errnoRet",
            allow_but(json!([{"names": ["getppid"], "action": "SCMP_ACT_ERRNO",
                              "errnoRet": 13}])),
        )
        .expect(GETPPID, Expect::Errno("EACCES")),
    );
    v.push(
        with(
            "errno.several-names",
            allow_but(
                json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                              "errnoRet": 30}]),
            ),
        )
        .expect("mkdir:/tmp/conformance-dir", Expect::Errno("EROFS"))
        .expect(GETPPID, eq("ok")),
    );
    v.push(
        with(
            "errno.unknown-name-ignored",
            allow_but(json!([{"names": ["getppid", "no_such_syscall_conformance"],
                              "action": "SCMP_ACT_ERRNO"}])),
        )
        .expect(GETPPID, Expect::Errno("EPERM")),
    );
    // Killed by SIGSYS: the container's status is 128 + 31.
    for action in ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"] {
        let name = action.trim_start_matches("SCMP_ACT_").to_lowercase();
        v.push(
            with(
                &format!("action.{name}"),
                allow_but(json!([{"names": ["getppid"], "action": action}])),
            )
            .probe(GETPPID)
            .exit(159),
        );
    }
    v.push(
        with(
            "action.log",
            allow_but(json!([{"names": ["getppid"], "action": "SCMP_ACT_LOG"}])),
        )
        .expect(GETPPID, eq("ok")),
    );
    v.push(
        with(
            "action.allow-over-default-errno",
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ALLOW"},
                                {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO"}]}),
        )
        .expect(GETPPID, eq("ok"))
        .expect("syscall:140,0,0", Expect::Errno("EPERM")),
    );
    v.push(
        with(
            "defaultErrnoRet",
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
                   "syscalls": [{"names": everything_the_checker_needs(),
                                 "action": "SCMP_ACT_ALLOW"}]}),
        )
        .expect("syscall:140,0,0", Expect::Errno("ENOSYS"))
        .expect(GETPPID, eq("ok")),
    );
    v.push(by_args(
        "args.SCMP_CMP_EQ",
        json!([{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]),
        &[(0, 0, false), (1, 0, true), (2, 0, false)],
    ));
    v.push(by_args(
        "args.SCMP_CMP_NE",
        json!([{"index": 0, "value": 1, "op": "SCMP_CMP_NE"}]),
        &[(0, 0, true), (1, 0, false)],
    ));
    v.push(by_args(
        "args.SCMP_CMP_LT",
        json!([{"index": 0, "value": 1, "op": "SCMP_CMP_LT"}]),
        &[(0, 0, true), (1, 0, false), (2, 0, false)],
    ));
    v.push(by_args(
        "args.SCMP_CMP_LE",
        json!([{"index": 0, "value": 1, "op": "SCMP_CMP_LE"}]),
        &[(0, 0, true), (1, 0, true), (2, 0, false)],
    ));
    v.push(by_args(
        "args.SCMP_CMP_GT",
        json!([{"index": 0, "value": 1, "op": "SCMP_CMP_GT"}]),
        &[(0, 0, false), (1, 0, false), (2, 0, true)],
    ));
    v.push(by_args(
        "args.SCMP_CMP_GE",
        json!([{"index": 0, "value": 1, "op": "SCMP_CMP_GE"}]),
        &[(0, 0, false), (1, 0, true), (2, 0, true)],
    ));
    v.push(by_args(
        "args.SCMP_CMP_MASKED_EQ",
        json!([{"index": 0, "value": 2, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}]),
        &[(0, 0, false), (1, 0, false), (2, 0, true)],
    ));
    v.push(by_args(
        "args.second-index",
        json!([{"index": 1, "value": 7, "op": "SCMP_CMP_EQ"}]),
        &[(0, 0, false), (0, 7, true)],
    ));
    v.push(by_args(
        "args.all-must-match",
        json!([{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
               {"index": 1, "value": 7, "op": "SCMP_CMP_EQ"}]),
        &[(0, 0, false), (1, 7, false), (0, 7, true)],
    ));
    v.push(
        with(
            "without-noNewPrivileges",
            allow_but(json!([{"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}])),
        )
        .set("/process/noNewPrivileges", json!(false))
        .expect("status:NoNewPrivs", eq("0"))
        .expect(GETPPID, Expect::Errno("EPERM")),
    );
    v.push(
        with(
            "flags.SECCOMP_FILTER_FLAG_LOG",
            allow_but(json!([{"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}])),
        )
        .set("/linux/seccomp/flags", json!(["SECCOMP_FILTER_FLAG_LOG"]))
        .expect(GETPPID, Expect::Errno("EPERM")),
    );
}

/// An allow list wide enough for the runtime's last steps, the exec of the
/// checker and its probes; getpriority is left out on purpose.
fn everything_the_checker_needs() -> Vec<&'static str> {
    vec![
        "access",
        "arch_prctl",
        "brk",
        "capget",
        "capset",
        "chdir",
        "close",
        "close_range",
        "dup",
        "dup2",
        "dup3",
        "epoll_ctl",
        "epoll_pwait",
        "epoll_wait",
        "execve",
        "execveat",
        "exit",
        "exit_group",
        "faccessat",
        "faccessat2",
        "fchdir",
        "fchown",
        "fcntl",
        "fstat",
        "fstatfs",
        "futex",
        "getcwd",
        "getdents64",
        "getegid",
        "geteuid",
        "getgid",
        "getgroups",
        "getpid",
        "getppid",
        "getrandom",
        "getrlimit",
        "gettid",
        "getuid",
        "ioctl",
        "lseek",
        "madvise",
        "mmap",
        "mprotect",
        "munmap",
        "nanosleep",
        "newfstatat",
        "open",
        "openat",
        "openat2",
        "poll",
        "prctl",
        "pread64",
        "prlimit64",
        "read",
        "readlink",
        "readlinkat",
        "rseq",
        "rt_sigaction",
        "rt_sigprocmask",
        "rt_sigreturn",
        "sched_getaffinity",
        "sched_yield",
        "set_robust_list",
        "set_tid_address",
        "setgid",
        "setgroups",
        "setresgid",
        "setresuid",
        "setsid",
        "setuid",
        "sigaltstack",
        "stat",
        "statx",
        "tgkill",
        "umask",
        "uname",
        "write",
        "writev",
    ]
}
