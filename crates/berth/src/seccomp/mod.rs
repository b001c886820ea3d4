//! seccomp: compiling `linux.seccomp` (OCI runtime spec, config-linux.md
//! "Seccomp") into a classic BPF program in the caller, loading it in the
//! init as the last step before execve, and handing a user-notification
//! descriptor to the profile's listener.
//!
//! The program checks the architecture first (x86_64, i386 and x32 are told
//! apart as the kernel reports them), then finds the syscall by a binary
//! search over the numbers the profile names, then tries that syscall's
//! rules in order: rules with argument conditions first, in profile order,
//! then unconditional ones; the first rule that matches decides. A syscall
//! the profile does not name gets the default action, except that one newer
//! than every syscall the profile names gets ENOSYS (when the default is
//! not to allow), so that programs fall back from calls the profile's author
//! could not know about, as runc does. Names this build does not know are
//! skipped with a debug message, as runc does.

mod bpf;
mod docker;
pub mod notify;
mod syscalls;

use std::collections::BTreeMap;
use std::path::PathBuf;

use oci_spec::runtime::{
    Arch as SpecArch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

pub use bpf::Insn;
pub use docker::default_profile;
pub use syscalls::Arch;

use bpf::{Asm, Cmp, Label, To};

/// The actions Berth implements, as the spec names them.
pub const ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];

/// The argument comparison operators Berth implements.
pub const OPERATORS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

/// The architectures a profile may name on this build (x86_64 hosts run
/// x86_64, i386 and x32 code).
pub const ARCHES: &[&str] = &["SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"];

/// The filter flags Berth accepts.
pub const FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];

/// `SECCOMP_RET_KILL_PROCESS`: what a syscall from an architecture the
/// profile does not list gets. libseccomp kills only the thread; killing
/// the process leaves no half-dead multi-threaded program behind.
const RET_BAD_ARCH: u32 = 0x8000_0000;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_NOTIFY: u32 = 0x7fc0_0000;
const RET_ERRNO: u32 = 0x0005_0000;
/// The largest errno the kernel passes back from SECCOMP_RET_ERRNO.
const MAX_ERRNO: u32 = 4095;

const FLAG_TSYNC: u32 = 1;
const FLAG_LOG: u32 = 2;
const FLAG_SPEC_ALLOW: u32 = 4;
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`.
pub const FLAG_NEW_LISTENER: u32 = 8;
const FLAG_WAIT_KILLABLE_RECV: u32 = 16;

/// Why a profile could not be compiled; each names the config field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeccompError {
    /// A value in the profile is out of range or inconsistent.
    #[error("{field}: {msg}")]
    Invalid {
        /// e.g. `linux.seccomp.syscalls[2].args[0].index`.
        field: String,
        /// What is wrong with it.
        msg: String,
    },
    /// The compiled program is more than the kernel loads.
    #[error("linux.seccomp: {0}")]
    Program(#[from] bpf::AsmError),
}

fn invalid(field: impl Into<String>, msg: impl Into<String>) -> SeccompError {
    SeccompError::Invalid {
        field: field.into(),
        msg: msg.into(),
    }
}

/// Where the notify descriptor goes (`listenerPath`, `listenerMetadata`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// The unix socket the listener accepts on.
    pub path: PathBuf,
    /// Opaque data passed along to it.
    pub metadata: Option<String>,
}

impl Listener {
    /// The listener a profile names, if any (`listenerPath` set and not
    /// empty); [`compile`] checks it.
    pub fn of(profile: &LinuxSeccomp) -> Option<Listener> {
        let path = profile
            .listener_path()
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty())?;
        Some(Listener {
            path: path.clone(),
            metadata: profile.listener_metadata().clone(),
        })
    }
}

/// A compiled profile, ready to load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    program: Vec<Insn>,
    flags: u32,
    listener: Option<Listener>,
}

impl Filter {
    /// The BPF program.
    pub fn program(&self) -> &[Insn] {
        &self.program
    }

    /// The flags for seccomp(SECCOMP_SET_MODE_FILTER), including
    /// NEW_LISTENER when the profile notifies.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Where the notify descriptor goes, when the profile uses
    /// SCMP_ACT_NOTIFY.
    pub fn listener(&self) -> Option<&Listener> {
        self.listener.as_ref()
    }

    /// The action the filter returns for a syscall (the raw
    /// `SECCOMP_RET_*` value), without loading it. `arch` is the
    /// architecture the calling code runs as; `nr` is the number as that
    /// architecture numbers it (x32 numbers include bit 30).
    pub fn evaluate(&self, arch: Arch, nr: u32, args: &[u64; 6]) -> u32 {
        bpf::run(&self.program, nr, arch.audit_arch(), args)
            .expect("compiled programs always return")
    }
}

/// A rule for one syscall number on one architecture.
#[derive(Clone, Debug)]
struct Rule {
    conds: Vec<Cond>,
    action: u32,
}

#[derive(Clone, Copy, Debug)]
struct Cond {
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: u64,
}

/// Compiles a profile. Fails, naming the field, on values the kernel or
/// the spec does not allow.
pub fn compile(s: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    let default = action_value(
        s.default_action(),
        s.default_errno_ret(),
        "linux.seccomp.defaultErrnoRet",
    )?;
    let mut arches: Vec<Arch> = Vec::new();
    for (i, a) in s.architectures().iter().flatten().enumerate() {
        let arch = match a {
            SpecArch::ScmpArchX86_64 | SpecArch::ScmpArchNative => Arch::X86_64,
            SpecArch::ScmpArchX86 => Arch::X86,
            SpecArch::ScmpArchX32 => Arch::X32,
            other => {
                // Code for another architecture cannot run on this host.
                tracing::debug!(arch = ?other, index = i, "seccomp: skipping foreign architecture");
                continue;
            }
        };
        if !arches.contains(&arch) {
            arches.push(arch);
        }
    }
    if arches.is_empty() {
        arches.push(Arch::X86_64);
    }

    let mut notify = default == RET_NOTIFY;
    let mut rules: BTreeMap<Arch, ArchRules> = BTreeMap::new();
    for (i, sc) in s.syscalls().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        let action = action_value(sc.action(), sc.errno_ret(), &format!("{field}.errnoRet"))?;
        let args = sc.args().as_deref().unwrap_or(&[]);
        let mut conds = Vec::with_capacity(args.len());
        for (k, a) in args.iter().enumerate() {
            if a.index() > 5 {
                return Err(invalid(
                    format!("{field}.args[{k}].index"),
                    format!("{} is not a syscall argument index (0-5)", a.index()),
                ));
            }
            conds.push(Cond {
                index: a.index(),
                op: a.op(),
                value: a.value(),
                value_two: a.value_two().unwrap_or(0),
            });
        }
        // Conditions on one argument cannot all hold at once the way
        // profiles mean them (e.g. two allowed values): as in runc, each
        // becomes a rule of its own.
        let split = conds
            .iter()
            .enumerate()
            .any(|(k, c)| conds[..k].iter().any(|d| d.index == c.index));
        let sets: Vec<Vec<Cond>> = if split {
            conds.iter().map(|c| vec![*c]).collect()
        } else {
            vec![conds]
        };
        if action == RET_NOTIFY {
            notify = true;
            if sc.names().iter().any(|n| n == "sendmsg") {
                return Err(invalid(
                    format!("{field}.names"),
                    "SCMP_ACT_NOTIFY cannot be used for sendmsg: the notify descriptor is \
                     handed to the listener with it",
                ));
            }
        }
        for name in sc.names() {
            let mut known = false;
            for &arch in &arches {
                let Some(nr) = arch.number(name) else {
                    continue;
                };
                known = true;
                let slot = rules.entry(arch).or_default().entry(nr).or_default();
                for conds in &sets {
                    let rule = Rule {
                        conds: conds.clone(),
                        action,
                    };
                    if conds.is_empty() {
                        slot.1.push(rule);
                    } else {
                        slot.0.push(rule);
                    }
                }
            }
            if !known {
                tracing::debug!(syscall = %name, field = %field, "seccomp: unknown syscall skipped");
            }
        }
    }

    let mut flags = 0;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => FLAG_WAIT_KILLABLE_RECV,
        };
    }
    let listener = match (notify, Listener::of(s)) {
        (true, Some(l)) => {
            if !l.path.is_absolute() {
                return Err(invalid(
                    "linux.seccomp.listenerPath",
                    format!("{} is not an absolute path", l.path.display()),
                ));
            }
            Some(l)
        }
        (true, None) => {
            return Err(invalid(
                "linux.seccomp.listenerPath",
                "required when an action is SCMP_ACT_NOTIFY",
            ))
        }
        (false, Some(_)) => {
            tracing::debug!("seccomp: listenerPath set but no action is SCMP_ACT_NOTIFY");
            None
        }
        (false, None) => None,
    };
    if listener.is_some() {
        // The init is single-threaded, so there is nothing to synchronise,
        // and the kernel refuses TSYNC together with a listener.
        flags = (flags & !FLAG_TSYNC) | FLAG_NEW_LISTENER;
    } else if flags & FLAG_WAIT_KILLABLE_RECV != 0 {
        tracing::debug!("seccomp: WAIT_KILLABLE_RECV has no effect without a listener");
        flags &= !FLAG_WAIT_KILLABLE_RECV;
    }

    let enosys = !matches!(default, RET_ALLOW | RET_LOG | RET_NOTIFY);
    let program = emit(&arches, &rules, default, enosys)?;
    Ok(Filter {
        program,
        flags,
        listener,
    })
}

/// The `SECCOMP_RET_*` value of an action.
fn action_value(
    action: LinuxSeccompAction,
    errno: Option<u32>,
    field: &str,
) -> Result<u32, SeccompError> {
    match action {
        LinuxSeccompAction::ScmpActErrno => {
            let e = errno.unwrap_or(libc::EPERM as u32);
            if e > MAX_ERRNO {
                return Err(invalid(
                    field,
                    format!("{e} is not an errno (0-{MAX_ERRNO})"),
                ));
            }
            Ok(RET_ERRNO | e)
        }
        LinuxSeccompAction::ScmpActTrace => {
            let e = errno.unwrap_or(libc::EPERM as u32);
            if e > 0xffff {
                return Err(invalid(
                    field,
                    format!("{e} does not fit the 16-bit trace message"),
                ));
            }
            Ok(action.as_u32(Some(e)))
        }
        other => Ok(other.as_u32(None)),
    }
}

/// Per syscall number: (conditional rules, unconditional rules).
type ArchRules = BTreeMap<u32, (Vec<Rule>, Vec<Rule>)>;

fn emit(
    arches: &[Arch],
    rules: &BTreeMap<Arch, ArchRules>,
    default: u32,
    enosys: bool,
) -> Result<Vec<Insn>, SeccompError> {
    let empty = ArchRules::new();
    let rules_of = |a: Arch| rules.get(&a).unwrap_or(&empty);
    let has = |a: Arch| arches.contains(&a);
    let mut asm = Asm::default();
    let bad = asm.label();
    let x86_64_family = asm.label();
    let x86 = asm.label();

    asm.load(bpf::ARCH_OFFSET);
    if has(Arch::X86_64) || has(Arch::X32) {
        asm.jump(
            Cmp::Eq,
            syscalls::AUDIT_ARCH_X86_64,
            To::L(x86_64_family),
            To::Next,
        );
    }
    if has(Arch::X86) {
        asm.jump(Cmp::Eq, syscalls::AUDIT_ARCH_I386, To::L(x86), To::Next);
    }
    asm.ret(RET_BAD_ARCH);

    if has(Arch::X86_64) || has(Arch::X32) {
        asm.bind(x86_64_family);
        asm.load(bpf::NR_OFFSET);
        let x32 = asm.label();
        asm.jump(
            Cmp::Ge,
            syscalls::X32_SYSCALL_BIT,
            To::L(if has(Arch::X32) { x32 } else { bad }),
            To::Next,
        );
        if has(Arch::X86_64) {
            body(
                &mut asm,
                Arch::X86_64,
                rules_of(Arch::X86_64),
                default,
                enosys,
            );
        } else {
            asm.ret(RET_BAD_ARCH);
        }
        if has(Arch::X32) {
            asm.bind(x32);
            body(&mut asm, Arch::X32, rules_of(Arch::X32), default, enosys);
        }
    }
    if has(Arch::X86) {
        asm.bind(x86);
        asm.load(bpf::NR_OFFSET);
        body(&mut asm, Arch::X86, rules_of(Arch::X86), default, enosys);
    }
    asm.bind(bad);
    asm.ret(RET_BAD_ARCH);
    Ok(asm.finish()?)
}

/// Where a syscall number leads: straight to an action, or to the block
/// that tries its conditional rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Action(u32),
    Block(usize),
}

/// A run of consecutive syscall numbers with one target.
#[derive(Clone, Copy, Debug)]
struct Run {
    first: u32,
    last: u32,
    target: Target,
}

/// One architecture's part: A holds the syscall number on entry.
fn body(asm: &mut Asm, arch: Arch, rules: &ArchRules, default: u32, enosys: bool) {
    // Syscalls whose outcome does not depend on their arguments go straight
    // to their action, and neighbours with the same action share one range
    // check: that keeps long allow lists small.
    let mut runs: Vec<Run> = Vec::new();
    let mut blocks = Vec::new();
    for (&nr, (conditional, plain)) in rules {
        let target = if conditional.is_empty() {
            Target::Action(plain.first().map_or(default, |r| r.action))
        } else {
            blocks.push((asm.label(), conditional, plain));
            Target::Block(blocks.len() - 1)
        };
        match runs.last_mut() {
            Some(r)
                if r.last + 1 == nr
                    && r.target == target
                    && matches!(target, Target::Action(_)) =>
            {
                r.last = nr;
            }
            _ => runs.push(Run {
                first: nr,
                last: nr,
                target,
            }),
        }
    }
    let block_labels: Vec<Label> = blocks.iter().map(|b| b.0).collect();
    let miss = asm.label();
    dispatch(asm, &runs, &block_labels, miss);

    asm.bind(miss);
    if let (true, Some(newest)) = (enosys, rules.keys().next_back()) {
        // Only numbers of this architecture reach here (x32 ones were sent
        // on before), so "newer" compares within one numbering.
        let old = asm.label();
        asm.jump(Cmp::Gt, *newest, To::Next, To::L(old));
        asm.ret(RET_ERRNO | libc::ENOSYS as u32);
        asm.bind(old);
    }
    asm.ret(default);

    for (label, conditional, plain) in blocks {
        asm.bind(label);
        for rule in conditional.iter().chain(plain) {
            let next = asm.label();
            for c in &rule.conds {
                condition(asm, arch, c, next);
            }
            asm.ret(rule.action);
            asm.bind(next);
        }
        asm.ret(default);
    }
}

/// How many runs a leaf of the search tests one after another.
const LEAF: usize = 6;

/// A binary search over the sorted runs, with short linear scans at the
/// leaves. Each leaf returns its actions itself, so that its jumps stay
/// short.
fn dispatch(asm: &mut Asm, runs: &[Run], blocks: &[Label], miss: Label) {
    if runs.len() > LEAF {
        let mid = runs.len() / 2;
        let right = asm.label();
        asm.jump(Cmp::Ge, runs[mid].first, To::L(right), To::Next);
        dispatch(asm, &runs[..mid], blocks, miss);
        asm.bind(right);
        dispatch(asm, &runs[mid..], blocks, miss);
        return;
    }
    let mut returns: Vec<(u32, Label)> = Vec::new();
    let mut to = |asm: &mut Asm, t: Target| match t {
        Target::Block(i) => To::L(blocks[i]),
        Target::Action(a) => match returns.iter().find(|(b, _)| *b == a) {
            Some((_, l)) => To::L(*l),
            None => {
                let l = asm.label();
                returns.push((a, l));
                To::L(l)
            }
        },
    };
    // Ascending: a number below a run's start fell between runs (every
    // earlier run ended below it).
    for (i, r) in runs.iter().enumerate() {
        let hit = to(asm, r.target);
        if r.first == r.last {
            asm.jump(Cmp::Eq, r.first, hit, To::Next);
        } else {
            if i > 0 || r.first > 0 {
                asm.jump(Cmp::Ge, r.first, To::Next, To::L(miss));
            }
            asm.jump(Cmp::Gt, r.last, To::Next, hit);
        }
    }
    asm.goto(miss);
    for (action, l) in returns {
        asm.bind(l);
        asm.ret(action);
    }
}

/// Falls through when `c` holds, jumps to `fail` otherwise. A is
/// clobbered.
fn condition(asm: &mut Asm, arch: Arch, c: &Cond, fail: Label) {
    use LinuxSeccompOperator as Op;
    let fail = To::L(fail);
    let (lo, hi) = (bpf::arg_lo(c.index), bpf::arg_hi(c.index));
    let (v_lo, v_hi) = (c.value as u32, (c.value >> 32) as u32);
    if arch.is_32bit() {
        asm.load(lo);
        match c.op {
            Op::ScmpCmpEq => asm.jump(Cmp::Eq, v_lo, To::Next, fail),
            Op::ScmpCmpNe => asm.jump(Cmp::Eq, v_lo, fail, To::Next),
            Op::ScmpCmpGt => asm.jump(Cmp::Gt, v_lo, To::Next, fail),
            Op::ScmpCmpGe => asm.jump(Cmp::Ge, v_lo, To::Next, fail),
            Op::ScmpCmpLt => asm.jump(Cmp::Ge, v_lo, fail, To::Next),
            Op::ScmpCmpLe => asm.jump(Cmp::Gt, v_lo, fail, To::Next),
            Op::ScmpCmpMaskedEq => {
                asm.and(v_lo);
                asm.jump(Cmp::Eq, c.value_two as u32, To::Next, fail);
            }
        }
        return;
    }
    let pass = asm.label();
    let ok = To::L(pass);
    asm.load(hi);
    match c.op {
        Op::ScmpCmpEq => {
            asm.jump(Cmp::Eq, v_hi, To::Next, fail);
            asm.load(lo);
            asm.jump(Cmp::Eq, v_lo, To::Next, fail);
        }
        Op::ScmpCmpNe => {
            asm.jump(Cmp::Eq, v_hi, To::Next, ok);
            asm.load(lo);
            asm.jump(Cmp::Eq, v_lo, fail, To::Next);
        }
        Op::ScmpCmpGt | Op::ScmpCmpGe => {
            asm.jump(Cmp::Gt, v_hi, ok, To::Next);
            asm.jump(Cmp::Eq, v_hi, To::Next, fail);
            asm.load(lo);
            let cmp = if c.op == Op::ScmpCmpGt {
                Cmp::Gt
            } else {
                Cmp::Ge
            };
            asm.jump(cmp, v_lo, To::Next, fail);
        }
        Op::ScmpCmpLt | Op::ScmpCmpLe => {
            asm.jump(Cmp::Gt, v_hi, fail, To::Next);
            asm.jump(Cmp::Eq, v_hi, To::Next, ok);
            asm.load(lo);
            // LT is "not GE", LE is "not GT".
            let cmp = if c.op == Op::ScmpCmpLt {
                Cmp::Ge
            } else {
                Cmp::Gt
            };
            asm.jump(cmp, v_lo, fail, To::Next);
        }
        Op::ScmpCmpMaskedEq => {
            asm.and(v_hi);
            asm.jump(Cmp::Eq, (c.value_two >> 32) as u32, To::Next, fail);
            asm.load(lo);
            asm.and(v_lo);
            asm.jump(Cmp::Eq, c.value_two as u32, To::Next, fail);
        }
    }
    asm.bind(pass);
}

#[cfg(test)]
mod tests;
