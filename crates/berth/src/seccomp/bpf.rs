//! Classic BPF for seccomp: an assembler with symbolic labels and an
//! interpreter.
//!
//! Conditional jumps in classic BPF reach at most 255 instructions ahead.
//! The assembler lets the compiler jump anywhere forward and, where a target
//! is too far, routes the jump through an unconditional `ja` (32-bit offset)
//! placed right after it. The interpreter runs a program over one
//! `seccomp_data`, so a filter's decisions can be checked without loading it.

/// `BPF_LD | BPF_W | BPF_ABS`: A = the 32-bit word at offset k.
const LD_ABS: u16 = 0x20;
/// `BPF_ALU | BPF_AND | BPF_K`: A &= k.
const AND_K: u16 = 0x54;
/// `BPF_JMP | BPF_JA`.
const JA: u16 = 0x05;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
const JEQ_K: u16 = 0x15;
/// `BPF_JMP | BPF_JGT | BPF_K`.
const JGT_K: u16 = 0x25;
/// `BPF_JMP | BPF_JGE | BPF_K`.
const JGE_K: u16 = 0x35;
/// `BPF_RET | BPF_K`.
const RET_K: u16 = 0x06;

/// The kernel's limit on a classic BPF program's length (BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;

/// `struct seccomp_data` offsets.
pub const NR_OFFSET: u32 = 0;
/// Offset of `arch`.
pub const ARCH_OFFSET: u32 = 4;
/// Offset of the low word of `args[i]` (x86 is little-endian).
pub fn arg_lo(i: usize) -> u32 {
    16 + 8 * i as u32
}
/// Offset of the high word of `args[i]`.
pub fn arg_hi(i: usize) -> u32 {
    arg_lo(i) + 4
}

/// One instruction as the kernel takes it (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

/// A position in the program, bound with [`Asm::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// Where a jump goes: the next instruction, or a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum To {
    /// Fall through.
    Next,
    /// A label.
    L(Label),
}

#[derive(Clone, Copy, Debug)]
enum Item {
    Stmt(u16, u32),
    Jump(u16, u32, To, To),
    Ja(Label),
    Bind(Label),
}

/// The comparison of a conditional jump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// A == k.
    Eq,
    /// A > k.
    Gt,
    /// A >= k.
    Ge,
}

/// An assembler for forward-jumping classic BPF.
#[derive(Debug, Default)]
pub struct Asm {
    items: Vec<Item>,
    labels: usize,
}

impl Asm {
    /// A new, unbound label.
    pub fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    /// Binds `l` to the next instruction emitted.
    pub fn bind(&mut self, l: Label) {
        self.items.push(Item::Bind(l));
    }

    /// A = the word at `offset` of `seccomp_data`.
    pub fn load(&mut self, offset: u32) {
        self.items.push(Item::Stmt(LD_ABS, offset));
    }

    /// A &= k.
    pub fn and(&mut self, k: u32) {
        self.items.push(Item::Stmt(AND_K, k));
    }

    /// Returns `k` (a seccomp action).
    pub fn ret(&mut self, k: u32) {
        self.items.push(Item::Stmt(RET_K, k));
    }

    /// Jumps to `jt` if `A cmp k`, else to `jf`.
    pub fn jump(&mut self, cmp: Cmp, k: u32, jt: To, jf: To) {
        let code = match cmp {
            Cmp::Eq => JEQ_K,
            Cmp::Gt => JGT_K,
            Cmp::Ge => JGE_K,
        };
        self.items.push(Item::Jump(code, k, jt, jf));
    }

    /// Jumps to `l` unconditionally.
    pub fn goto(&mut self, l: Label) {
        self.items.push(Item::Ja(l));
    }

    /// Resolves every label into offsets. Fails with the program's length
    /// when it exceeds what the kernel loads, or when a label is unbound or
    /// lies behind its jump (the compiler only jumps forward).
    pub fn finish(mut self) -> Result<Vec<Insn>, AsmError> {
        // Route too-long conditional jumps through `ja`s until every offset
        // fits; each jump is rewritten at most once, so this ends.
        loop {
            let pos = self.positions()?;
            let mut rewrite = None;
            let mut at = 0usize;
            for (i, item) in self.items.iter().enumerate() {
                if let Item::Jump(_, _, jt, jf) = item {
                    let far = |t: &To| match t {
                        To::Next => false,
                        To::L(l) => pos[l.0] > at + 1 + 255,
                    };
                    if far(jt) || far(jf) {
                        rewrite = Some(i);
                        break;
                    }
                }
                if !matches!(item, Item::Bind(_)) {
                    at += 1;
                }
            }
            let Some(i) = rewrite else { break };
            let Item::Jump(code, k, jt, jf) = self.items[i] else {
                unreachable!("only jumps are rewritten")
            };
            let mut after = Vec::new();
            let mut near = |t: To, asm: &mut Asm| match t {
                To::L(far) => {
                    let l = asm.label();
                    after.push(Item::Bind(l));
                    after.push(Item::Ja(far));
                    To::L(l)
                }
                To::Next => To::Next,
            };
            let jt2 = near(jt, &mut self);
            let jf2 = near(jf, &mut self);
            // A fall-through side must skip the trampolines now placed
            // after the jump.
            let (jt2, jf2) = if after.is_empty() {
                (jt2, jf2)
            } else {
                let next = self.label();
                after.push(Item::Bind(next));
                let fix = |t: To| if t == To::Next { To::L(next) } else { t };
                (fix(jt2), fix(jf2))
            };
            self.items[i] = Item::Jump(code, k, jt2, jf2);
            self.items.splice(i + 1..i + 1, after);
        }
        let pos = self.positions()?;
        let mut out = Vec::new();
        for item in &self.items {
            let at = out.len();
            let off = |t: &To| -> Result<u32, AsmError> {
                match t {
                    To::Next => Ok(0),
                    To::L(l) => pos[l.0]
                        .checked_sub(at + 1)
                        .map(|d| d as u32)
                        .ok_or(AsmError::Backward),
                }
            };
            match item {
                Item::Bind(_) => {}
                Item::Stmt(code, k) => out.push(Insn {
                    code: *code,
                    jt: 0,
                    jf: 0,
                    k: *k,
                }),
                Item::Jump(code, k, jt, jf) => {
                    let (t, f) = (off(jt)?, off(jf)?);
                    out.push(Insn {
                        code: *code,
                        jt: u8::try_from(t).map_err(|_| AsmError::Backward)?,
                        jf: u8::try_from(f).map_err(|_| AsmError::Backward)?,
                        k: *k,
                    });
                }
                Item::Ja(l) => {
                    let k = off(&To::L(*l))?;
                    out.push(Insn {
                        code: JA,
                        jt: 0,
                        jf: 0,
                        k,
                    })
                }
            }
        }
        if out.len() > MAX_INSNS {
            return Err(AsmError::TooLong(out.len()));
        }
        Ok(out)
    }

    /// The instruction index each label is bound to; labels nothing jumps
    /// to may stay unbound.
    fn positions(&self) -> Result<Vec<usize>, AsmError> {
        let mut pos = vec![usize::MAX; self.labels];
        let mut at = 0;
        for item in &self.items {
            match item {
                Item::Bind(l) => pos[l.0] = at,
                _ => at += 1,
            }
        }
        let unbound = |t: &To| matches!(t, To::L(l) if pos[l.0] == usize::MAX);
        let dangling = self.items.iter().any(|item| match item {
            Item::Jump(_, _, jt, jf) => unbound(jt) || unbound(jf),
            Item::Ja(l) => unbound(&To::L(*l)),
            _ => false,
        });
        if dangling {
            return Err(AsmError::Unbound);
        }
        Ok(pos)
    }
}

/// Why a program could not be assembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AsmError {
    /// Longer than the kernel's limit.
    #[error("the filter needs {0} BPF instructions; the kernel loads at most 4096")]
    TooLong(usize),
    /// A compiler bug: a label was never bound.
    #[error("internal error: unbound label")]
    Unbound,
    /// A compiler bug: a jump goes backwards.
    #[error("internal error: backward jump")]
    Backward,
}

/// Runs `prog` over one `seccomp_data` (`nr`, `arch`, the six arguments)
/// and returns the action it decides, or `None` if the program is malformed
/// (runs off its end, jumps out of it, or uses an opcode this
/// assembler does not emit).
pub fn run(prog: &[Insn], nr: u32, arch: u32, args: &[u64; 6]) -> Option<u32> {
    let word = |off: u32| -> Option<u32> {
        match off {
            0 => Some(nr),
            4 => Some(arch),
            // instruction_pointer (8..16) is never loaded by our programs.
            16..=63 if off.is_multiple_of(4) => {
                let i = ((off - 16) / 8) as usize;
                let v = args[i];
                Some(if (off - 16).is_multiple_of(8) {
                    v as u32
                } else {
                    (v >> 32) as u32
                })
            }
            _ => None,
        }
    };
    let mut a = 0u32;
    let mut pc = 0usize;
    loop {
        let insn = prog.get(pc)?;
        pc += 1;
        match insn.code {
            LD_ABS => a = word(insn.k)?,
            AND_K => a &= insn.k,
            RET_K => return Some(insn.k),
            JA => pc = pc.checked_add(insn.k as usize)?,
            JEQ_K | JGT_K | JGE_K => {
                let taken = match insn.code {
                    JEQ_K => a == insn.k,
                    JGT_K => a > insn.k,
                    _ => a >= insn.k,
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_conditional_jumps_go_through_trampolines() {
        let mut asm = Asm::default();
        let far = asm.label();
        let other = asm.label();
        asm.load(NR_OFFSET);
        asm.jump(Cmp::Eq, 7, To::L(far), To::Next);
        asm.jump(Cmp::Eq, 8, To::Next, To::L(other));
        for _ in 0..600 {
            asm.and(0xffff_ffff);
        }
        asm.ret(1);
        asm.bind(far);
        asm.ret(2);
        asm.bind(other);
        asm.ret(3);
        let prog = asm.finish().unwrap();
        assert!(prog.len() > 600);
        assert_eq!(run(&prog, 7, 0, &[0; 6]), Some(2));
        assert_eq!(run(&prog, 8, 0, &[0; 6]), Some(1));
        assert_eq!(run(&prog, 9, 0, &[0; 6]), Some(3));
    }

    #[test]
    fn too_long_programs_are_refused() {
        let mut asm = Asm::default();
        for _ in 0..=MAX_INSNS {
            asm.and(1);
        }
        assert_eq!(asm.finish(), Err(AsmError::TooLong(MAX_INSNS + 1)));
    }

    #[test]
    fn arguments_are_read_as_low_and_high_words() {
        let mut asm = Asm::default();
        let no = asm.label();
        asm.load(arg_hi(2));
        asm.jump(Cmp::Eq, 0xdead, To::Next, To::L(no));
        asm.load(arg_lo(2));
        asm.jump(Cmp::Eq, 0xbeef, To::Next, To::L(no));
        asm.ret(1);
        asm.bind(no);
        asm.ret(9);
        let prog = asm.finish().unwrap();
        assert_eq!(
            run(&prog, 0, 0, &[0, 0, 0xdead_0000_beef, 0, 0, 0]),
            Some(1)
        );
        assert_eq!(run(&prog, 0, 0, &[0, 0, 0xbeef, 0, 0, 0]), Some(9));
        assert_eq!(run(&prog, 0, 0, &[0; 6]), Some(9));
    }
}
