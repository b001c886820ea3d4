//! The compiler checked against a direct reading of the profile: for
//! random profiles and syscalls, the BPF program and the reference must
//! decide alike.

use super::*;
use oci_spec::runtime::LinuxSeccompArg;
use serde_json::json;

fn profile(v: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(v).unwrap()
}

/// What the profile means, read directly: the reference the program must
/// agree with.
fn reference(s: &LinuxSeccomp, arch: Arch, nr: u32, args: &[u64; 6]) -> u32 {
    let default = action_value(s.default_action(), s.default_errno_ret(), "").unwrap();
    let listed: Vec<Arch> = {
        let mut v: Vec<Arch> = s
            .architectures()
            .iter()
            .flatten()
            .filter_map(|a| match a {
                SpecArch::ScmpArchX86_64 | SpecArch::ScmpArchNative => Some(Arch::X86_64),
                SpecArch::ScmpArchX86 => Some(Arch::X86),
                SpecArch::ScmpArchX32 => Some(Arch::X32),
                _ => None,
            })
            .collect();
        if v.is_empty() {
            v.push(Arch::X86_64);
        }
        v
    };
    if !listed.contains(&arch) {
        return RET_BAD_ARCH;
    }
    let holds = |a: &LinuxSeccompArg| -> bool {
        let (x, v, v2) = if arch.is_32bit() {
            (
                args[a.index()] as u32 as u64,
                a.value() as u32 as u64,
                a.value_two().unwrap_or(0) as u32 as u64,
            )
        } else {
            (args[a.index()], a.value(), a.value_two().unwrap_or(0))
        };
        match a.op() {
            LinuxSeccompOperator::ScmpCmpEq => x == v,
            LinuxSeccompOperator::ScmpCmpNe => x != v,
            LinuxSeccompOperator::ScmpCmpLt => x < v,
            LinuxSeccompOperator::ScmpCmpLe => x <= v,
            LinuxSeccompOperator::ScmpCmpGt => x > v,
            LinuxSeccompOperator::ScmpCmpGe => x >= v,
            LinuxSeccompOperator::ScmpCmpMaskedEq => x & v == v2,
        }
    };
    let mut conditional = None;
    let mut plain = None;
    let mut newest = None;
    for sc in s.syscalls().iter().flatten() {
        for name in sc.names() {
            let Some(n) = arch.number(name) else { continue };
            newest = newest.max(Some(n));
            if n != nr {
                continue;
            }
            let action = action_value(sc.action(), sc.errno_ret(), "").unwrap();
            let args = sc.args().clone().unwrap_or_default();
            let same_index = args
                .iter()
                .enumerate()
                .any(|(k, c)| args[..k].iter().any(|d| d.index() == c.index()));
            let matched = if args.is_empty() {
                plain.get_or_insert(action);
                false
            } else if same_index {
                args.iter().any(holds)
            } else {
                args.iter().all(holds)
            };
            if matched {
                conditional.get_or_insert(action);
            }
        }
    }
    if let Some(a) = conditional.or(plain) {
        return a;
    }
    let enosys = !matches!(default, RET_ALLOW | RET_LOG | RET_NOTIFY);
    match newest {
        Some(n) if enosys && nr > n => RET_ERRNO | libc::ENOSYS as u32,
        _ => default,
    }
}

/// A small deterministic generator, so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
    /// Values near the interesting edges: 0, small, 32-bit boundaries, max.
    fn value(&mut self) -> u64 {
        let edges = [
            0,
            1,
            2,
            7,
            0xffff_ffff,
            0x1_0000_0000,
            0x1_0000_0001,
            u64::MAX,
            u64::MAX - 1,
            0x8000_0000,
        ];
        match self.below(3) {
            0 => *self.pick(&edges),
            1 => self.below(16),
            _ => self.next(),
        }
    }
}

const NAMES: &[&str] = &[
    "read",
    "write",
    "mkdir",
    "mkdirat",
    "kill",
    "clone",
    "clone3",
    "uname",
    "socket",
    "personality",
    "rt_sigaction",
    "execve",
    "socketcall",
    "uselib",
    "no_such_call",
];
const OPS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_GT",
    "SCMP_CMP_GE",
    "SCMP_CMP_MASKED_EQ",
];
const ACTS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_LOG",
    "SCMP_ACT_TRACE",
];

fn random_profile(r: &mut Rng, all: &[String]) -> serde_json::Value {
    let mut syscalls = Vec::new();
    let n = if r.below(5) == 0 { 60 } else { 8 };
    for _ in 0..r.below(n) {
        let names: Vec<String> = (0..1 + r.below(3))
            .map(|_| {
                if r.below(4) == 0 {
                    r.pick(all).clone()
                } else {
                    r.pick::<&str>(NAMES).to_string()
                }
            })
            .collect();
        let args: Vec<serde_json::Value> = (0..r.below(4))
            .map(|_| {
                json!({"index": r.below(3), "value": r.value(), "valueTwo": r.value(),
                       "op": r.pick(OPS)})
            })
            .collect();
        syscalls.push(json!({"names": names, "action": r.pick(ACTS),
                             "errnoRet": r.below(200), "args": args}));
    }
    let arches: Vec<&str> = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        .into_iter()
        .filter(|_| r.below(3) != 0)
        .collect();
    json!({"defaultAction": r.pick(ACTS), "defaultErrnoRet": r.below(100),
           "architectures": arches, "syscalls": syscalls})
}

#[test]
fn random_profiles_agree_with_the_reference() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let all = syscalls_all();
    for round in 0..3000 {
        let v = random_profile(&mut r, &all);
        let s = profile(v.clone());
        let f = compile(&s).unwrap_or_else(|e| panic!("round {round}: {e}\n{v}"));
        for _ in 0..40 {
            let arch = *r.pick(&[Arch::X86_64, Arch::X86, Arch::X32]);
            let nr = match r.below(4) {
                0 => r.below(600) as u32 | if arch == Arch::X32 { X32 } else { 0 },
                1 => arch
                    .number(r.pick::<String>(&all))
                    .unwrap_or(if arch == Arch::X32 { X32 | 3 } else { 3 }),
                _ => arch
                    .number(r.pick::<&str>(NAMES))
                    .unwrap_or(if arch == Arch::X32 { X32 | 3 } else { 3 }),
            };
            let args = [r.value(), r.value(), r.value(), r.value(), 0, 0];
            let got = f.evaluate(arch, nr, &args);
            let want = reference(&s, arch, nr, &args);
            assert_eq!(
                got, want,
                "round {round}: {arch:?} nr {nr:#x} args {args:x?}\n{v}"
            );
        }
    }
}

const X32: u32 = syscalls::X32_SYSCALL_BIT;

#[test]
fn docker_like_profile_compiles_small_enough() {
    let names: Vec<String> = syscalls_all().into_iter().take(400).collect();
    let s = profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"},
                     {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]
    }));
    let f = compile(&s).unwrap();
    assert!(f.program().len() < 1024, "{}", f.program().len());
    for arch in [Arch::X86_64, Arch::X86, Arch::X32] {
        let base = if arch == Arch::X32 { X32 } else { 0 };
        for nr in 0..700 {
            for arg in [0, 8, 9] {
                let args = [arg, 0, 0, 0, 0, 0];
                let want = reference(&s, arch, base | nr, &args);
                assert_eq!(f.evaluate(arch, base | nr, &args), want, "{arch:?} {nr}");
            }
        }
    }
    let a = [0u64; 6];
    assert_eq!(f.evaluate(Arch::X86_64, 0, &a), RET_ALLOW);
    assert_eq!(f.evaluate(Arch::X86, 3, &a), RET_ALLOW);
    assert_eq!(f.evaluate(Arch::X32, X32, &a), RET_ALLOW);
}

fn syscalls_all() -> Vec<String> {
    ::syscalls::x86_64::Sysno::iter()
        .map(|s| s.name().to_string())
        .collect()
}

#[test]
fn actions_map_to_kernel_values() {
    let cases = [
        ("SCMP_ACT_KILL", None, 0),
        ("SCMP_ACT_KILL_THREAD", None, 0),
        ("SCMP_ACT_KILL_PROCESS", None, 0x8000_0000),
        ("SCMP_ACT_TRAP", None, 0x0003_0000),
        ("SCMP_ACT_ERRNO", None, 0x0005_0001),
        ("SCMP_ACT_ERRNO", Some(38), 0x0005_0026),
        ("SCMP_ACT_TRACE", Some(7), 0x7ff0_0007),
        ("SCMP_ACT_LOG", None, 0x7ffc_0000),
        ("SCMP_ACT_ALLOW", None, 0x7fff_0000),
    ];
    for (act, errno, want) in cases {
        let s = profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["uname"], "action": act, "errnoRet": errno}]}));
        let f = compile(&s).unwrap();
        assert_eq!(f.evaluate(Arch::X86_64, 63, &[0; 6]), want, "{act}");
        assert_eq!(f.evaluate(Arch::X86_64, 62, &[0; 6]), RET_ALLOW, "{act}");
    }
}

#[test]
fn unlisted_arch_is_killed_and_x32_is_told_apart() {
    let s = profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"]}));
    let f = compile(&s).unwrap();
    assert_eq!(f.evaluate(Arch::X86_64, 0, &[0; 6]), RET_ALLOW);
    assert_eq!(f.evaluate(Arch::X86, 0, &[0; 6]), RET_BAD_ARCH);
    assert_eq!(f.evaluate(Arch::X32, X32, &[0; 6]), RET_BAD_ARCH);
    // Unlisted architectures mean the native one only.
    let f = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW"}))).unwrap();
    assert_eq!(f.evaluate(Arch::X86, 0, &[0; 6]), RET_BAD_ARCH);
}

#[test]
fn newer_syscalls_get_enosys_unless_the_default_allows() {
    let s = profile(json!({"defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": ["read", "clone"], "action": "SCMP_ACT_ALLOW"}]}));
    let f = compile(&s).unwrap();
    let clone3 = Arch::X86_64.number("clone3").unwrap();
    let write = Arch::X86_64.number("write").unwrap();
    assert_eq!(f.evaluate(Arch::X86_64, clone3, &[0; 6]), RET_ERRNO | 38);
    assert_eq!(f.evaluate(Arch::X86_64, write, &[0; 6]), RET_ERRNO | 1);
}

#[test]
fn bad_values_name_their_field() {
    let e = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]})))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "linux.seccomp.syscalls[0].args[0].index: 6 is not a syscall argument index (0-5)"
    );
    let e = compile(&profile(json!({"defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 70000})))
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("linux.seccomp.defaultErrnoRet: 70000"),
        "{e}"
    );
    let e = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]})))
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("linux.seccomp.listenerPath: required"),
        "{e}"
    );
    let e = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/l.sock",
        "syscalls": [{"names": ["sendmsg"], "action": "SCMP_ACT_NOTIFY"}]})))
    .unwrap_err();
    assert!(
        e.to_string().starts_with("linux.seccomp.syscalls[0].names"),
        "{e}"
    );
}

#[test]
fn notify_sets_the_listener_flag_and_drops_tsync() {
    let f = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/l.sock", "listenerMetadata": "m",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]})))
    .unwrap();
    assert_eq!(f.flags(), FLAG_NEW_LISTENER | FLAG_LOG);
    let l = f.listener().unwrap();
    assert_eq!(l.path, PathBuf::from("/run/l.sock"));
    assert_eq!(l.metadata.as_deref(), Some("m"));
    assert_eq!(f.evaluate(Arch::X86_64, 83, &[0; 6]), RET_NOTIFY);
}

#[test]
fn unknown_names_are_skipped() {
    let f = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["no_such_call", "uname"], "action": "SCMP_ACT_KILL"}]})))
    .unwrap();
    assert_eq!(f.evaluate(Arch::X86_64, 63, &[0; 6]), 0);
}
