//! eBPF device control for cgroup v2 (the BPF_PROG_TYPE_CGROUP_DEVICE
//! program type, Linux 4.15): the program a device [`Policy`] compiles to,
//! and the bpf(2) commands that load it and attach it to a cgroup directory
//! in place of the one before.
//!
//! The program is emitted here instruction by instruction, so no compiler or
//! BPF library is needed. For each access it reads the device type, the
//! requested access, major and minor from `struct bpf_cgroup_dev_ctx`,
//! tests the policy's exceptions one block each, and returns the
//! exception's verdict on the first match or the policy's default (1 allows,
//! 0 makes the kernel answer EPERM).

use std::fs::OpenOptions;
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::devices::{Access, Node, Policy};
use super::{CgroupError, Result};

/// `struct bpf_insn`: opcode, destination and source registers, offset and
/// immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Insn {
    code: u8,
    dst: u8,
    src: u8,
    off: i16,
    imm: i32,
}

// Opcodes: class | operation | source (include/uapi/linux/bpf.h).
/// `dst = *(u32 *)(src + off)`: BPF_LDX | BPF_MEM | BPF_W.
const LDX_W: u8 = 0x61;
/// 32-bit ALU ops, which zero the upper half of `dst`: BPF_ALU | op | BPF_K/X.
const AND32_K: u8 = 0x54;
const RSH32_K: u8 = 0x74;
const MOV32_K: u8 = 0xb4;
const MOV32_X: u8 = 0xbc;
/// 64-bit compares that skip `off` instructions: BPF_JMP | op | BPF_K/X.
const JNE_K: u8 = 0x55;
const JNE_X: u8 = 0x5d;
const JEQ_K: u8 = 0x15;
/// BPF_JMP | BPF_EXIT.
const EXIT: u8 = 0x95;

/// r0 holds the verdict, r1 the context pointer (then scratch); r2..r5 the
/// device type, requested access, major and minor.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// The 8 bytes the kernel reads, as a u64 in native byte order: the
    /// register nibbles are a C bitfield, whose order follows endianness.
    pub(super) fn raw(self) -> u64 {
        let regs = if cfg!(target_endian = "little") {
            self.dst | (self.src << 4)
        } else {
            (self.dst << 4) | self.src
        };
        let [o0, o1] = self.off.to_ne_bytes();
        let [i0, i1, i2, i3] = self.imm.to_ne_bytes();
        u64::from_ne_bytes([self.code, regs, o0, o1, i0, i1, i2, i3])
    }
}

/// Compiles `policy`: the loads, one block per exception (in the policy's
/// order; they all carry the same verdict, so order does not matter), then
/// the default.
pub(super) fn device_filter(policy: &Policy) -> Vec<Insn> {
    let mut prog = vec![
        // access_type is (BPF_DEVCG_ACC_* << 16) | BPF_DEVCG_DEV_*.
        Insn::new(LDX_W, R2, R1, 0, 0),
        Insn::new(AND32_K, R2, 0, 0, 0xffff),
        Insn::new(LDX_W, R3, R1, 0, 0),
        Insn::new(RSH32_K, R3, 0, 0, 16),
        Insn::new(LDX_W, R4, R1, 4, 0),
        Insn::new(LDX_W, R5, R1, 8, 0),
    ];
    for (node, access) in &policy.exceptions {
        prog.extend(block(node, *access, !policy.default_allow));
    }
    prog.extend(verdict(policy.default_allow));
    prog
}

/// Tests that each skip to the next block when the request is not this
/// exception's, then its verdict. An allow exception must cover every
/// requested access (v1's rule for allow lists); a deny exception applies
/// when it shares any of them (v1's rule for deny lists).
fn block(node: &Node, access: Access, allow: bool) -> Vec<Insn> {
    let mut insns = vec![Insn::new(JNE_K, R2, 0, 0, node.kind.bpf_type() as i32)];
    if access != Access::ALL {
        insns.push(Insn::new(MOV32_X, R1, R3, 0, 0));
        insns.push(Insn::new(AND32_K, R1, 0, 0, access.bits() as i32));
        insns.push(if allow {
            Insn::new(JNE_X, R1, R3, 0, 0)
        } else {
            Insn::new(JEQ_K, R1, 0, 0, 0)
        });
    }
    for (reg, number) in [(R4, node.major), (R5, node.minor)] {
        let Some(n) = number else { continue };
        match i32::try_from(n) {
            Ok(imm) => insns.push(Insn::new(JNE_K, reg, 0, 0, imm)),
            // A jump's immediate is sign-extended to 64 bits while the
            // loaded number is zero-extended: compare through a register.
            Err(_) => {
                insns.push(Insn::new(MOV32_K, R1, 0, 0, n as i32));
                insns.push(Insn::new(JNE_X, reg, R1, 0, 0));
            }
        }
    }
    let tests = insns.len();
    insns.extend(verdict(allow));
    let len = insns.len();
    for (i, insn) in insns[..tests].iter_mut().enumerate() {
        if matches!(insn.code, JNE_K | JNE_X | JEQ_K) {
            // A block is a handful of instructions: always in range.
            insn.off = (len - i - 1) as i16;
        }
    }
    insns
}

fn verdict(allow: bool) -> [Insn; 2] {
    [
        Insn::new(MOV32_K, R0, 0, 0, i32::from(allow)),
        Insn::new(EXIT, 0, 0, 0, 0),
    ]
}

// bpf(2) commands, program and attach types, flags (include/uapi/linux/bpf.h).
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Programs attached with it run together with the ones below and above,
/// and access is allowed only if every one allows it.
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;

/// The kernel checks the license only for GPL-only helpers, which the
/// program does not call.
const LICENSE: &[u8] = b"Apache-2.0\0";
/// Shown by `bpftool prog`; letters, digits, `_` and `.` only.
const PROG_NAME: &[u8] = b"berth_devices";
const LOG_START: usize = 64 * 1024;
const LOG_MAX: usize = 16 << 20;

/// `union bpf_attr` for BPF_PROG_LOAD, up to `expected_attach_type`; the
/// kernel takes a shorter struct as zero-filled.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// For BPF_PROG_ATTACH and BPF_PROG_DETACH.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// For BPF_PROG_QUERY. The padding is a named field so that it is zero:
/// older kernels refuse non-zero bytes past the last field they know.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    pad: u32,
}

/// For BPF_PROG_GET_FD_BY_ID.
#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(2) with the attribute struct of one command.
///
/// # Safety
///
/// `T` must be the `union bpf_attr` member `cmd` reads, with no padding
/// bytes, and every pointer in it valid for the call (writable where the
/// kernel writes).
unsafe fn sys_bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller vouches for the contents of `attr`; the size passed
    // is its own, so the kernel reads and writes no further.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned_fd(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this descriptor to us and nothing
    // else refers to it.
    unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) }
}

/// BPF_PROG_LOAD; with a non-empty `log` the verifier writes what it did
/// (and why it refused) there.
fn prog_load(insns: &[u64], log: &mut [u8]) -> io::Result<OwnedFd> {
    let too_big = |_| io::Error::from_raw_os_error(libc::E2BIG);
    let mut prog_name = [0u8; 16];
    prog_name[..PROG_NAME.len()].copy_from_slice(PROG_NAME);
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len()).map_err(too_big)?,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        log_level: u32::from(!log.is_empty()),
        log_size: u32::try_from(log.len()).map_err(too_big)?,
        log_buf: if log.is_empty() {
            0
        } else {
            log.as_mut_ptr() as u64
        },
        prog_name,
        ..ProgLoadAttr::default()
    };
    // SAFETY: `insns` holds insn_cnt instructions, the license is
    // NUL-terminated, and `log` (if any) is log_size writable bytes; all
    // outlive the call.
    unsafe { sys_bpf(BPF_PROG_LOAD, &mut attr) }.map(owned_fd)
}

/// Loads the program; on failure, loads it again with a log to learn why.
fn load(insns: &[u64]) -> std::result::Result<OwnedFd, (io::Error, String)> {
    let first = match prog_load(insns, &mut []) {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    let mut size = LOG_START;
    loop {
        let mut log = vec![0u8; size];
        match prog_load(insns, &mut log) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && size < LOG_MAX => size *= 4,
            Err(_) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]).trim().to_string();
                return Err((first, text));
            }
        }
    }
}

fn attach_attr(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>, flags: u32) -> AttachAttr {
    AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: flags,
        ..AttachAttr::default()
    }
}

fn attach(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = attach_attr(cgroup, prog, BPF_F_ALLOW_MULTI);
    // SAFETY: the struct holds only descriptors and numbers.
    unsafe { sys_bpf(BPF_PROG_ATTACH, &mut attr) }.map(drop)
}

fn detach(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = attach_attr(cgroup, prog, 0);
    // SAFETY: the struct holds only descriptors and numbers.
    unsafe { sys_bpf(BPF_PROG_DETACH, &mut attr) }.map(drop)
}

/// The ids of the device programs attached to the cgroup itself (not those
/// it inherits).
fn query(cgroup: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    // 64 is the most a cgroup can hold; ENOSPC says how many there are.
    let mut ids = vec![0u32; 64];
    for _ in 0..10 {
        let mut attr = QueryAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..QueryAttr::default()
        };
        // SAFETY: prog_ids points at prog_cnt writable u32s that outlive
        // the call.
        match unsafe { sys_bpf(BPF_PROG_QUERY, &mut attr) } {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                ids.resize(attr.prog_cnt as usize, 0);
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::ENOSPC))
}

fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdAttr {
        prog_id: id,
        ..GetFdAttr::default()
    };
    // SAFETY: the struct holds only numbers.
    unsafe { sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) }.map(owned_fd)
}

/// Descriptors for the device programs now attached to the cgroup itself.
fn attached(cgroup: BorrowedFd<'_>) -> io::Result<Vec<OwnedFd>> {
    let mut fds = Vec::new();
    for id in query(cgroup)? {
        match prog_fd_by_id(id) {
            Ok(fd) => fds.push(fd),
            // Gone since the query, or hidden from us by an LSM policy. A
            // program left attached only restricts further, so, as runc
            // does, it is left alone.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::EPERM | libc::EACCES)
                ) =>
            {
                tracing::debug!(id, error = %e, "attached device program skipped");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(fds)
}

fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .map(OwnedFd::from)
}

/// Loads `program` and attaches it to the cgroup directory `dir`, then
/// detaches the device programs that were there before. While both are
/// attached an access needs both to allow it, so there is no moment without
/// a filter, nor one where either policy is loosened.
pub(super) fn replace_device_filter(dir: &Path, program: &[Insn]) -> Result<()> {
    let fail = |op: &'static str| {
        move |source: io::Error| CgroupError::Bpf {
            op,
            path: dir.to_path_buf(),
            source,
            log: String::new(),
        }
    };
    let cgroup = open_dir(dir).map_err(fail("open"))?;
    let old = attached(cgroup.as_fd()).map_err(fail("BPF_PROG_QUERY"))?;
    let raw: Vec<u64> = program.iter().map(|i| i.raw()).collect();
    let prog = load(&raw).map_err(|(source, log)| CgroupError::Bpf {
        op: "BPF_PROG_LOAD",
        path: dir.to_path_buf(),
        source,
        log,
    })?;
    attach(cgroup.as_fd(), prog.as_fd()).map_err(fail("BPF_PROG_ATTACH"))?;
    for fd in &old {
        match detach(cgroup.as_fd(), fd.as_fd()) {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                return Err(fail("BPF_PROG_DETACH")(e));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The verifier's log, for [`CgroupError::Bpf`]'s message.
pub(super) fn log_suffix(log: &str) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!("; verifier log:\n{log}")
    }
}

#[cfg(test)]
mod tests {
    use super::super::devices::testing::{self, Verdict};
    use super::super::devices::Kind;
    use super::*;
    use serde_json::json;

    impl Insn {
        /// The verifier's notation, for the instructions emitted here.
        fn text(&self) -> String {
            let (d, s, off, imm) = (self.dst, self.src, self.off, self.imm);
            match self.code {
                LDX_W => format!("r{d} = *(u32 *)(r{s} + {off})"),
                AND32_K => format!("w{d} &= {imm:#x}"),
                RSH32_K => format!("w{d} >>= {imm}"),
                MOV32_K => format!("w{d} = {}", imm as u32),
                MOV32_X => format!("w{d} = w{s}"),
                JNE_K => format!("if r{d} != {imm} goto +{off}"),
                JNE_X => format!("if r{d} != r{s} goto +{off}"),
                JEQ_K => format!("if r{d} == {imm} goto +{off}"),
                EXIT => "exit".to_string(),
                c => panic!("opcode {c:#x} is not emitted here"),
            }
        }
    }

    fn text(prog: &[Insn]) -> Vec<String> {
        prog.iter().map(Insn::text).collect()
    }

    fn policy(v: serde_json::Value) -> Policy {
        Policy::from_spec(&serde_json::from_value::<Vec<_>>(v).unwrap()).unwrap()
    }

    /// Runs the instructions emitted here the way the kernel would, on a
    /// request; returns r0.
    fn run(prog: &[Insn], kind: Kind, access: Access, major: u32, minor: u32) -> u64 {
        let ctx = [(access.bits() << 16) | kind.bpf_type(), major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (d, s) = (usize::from(i.dst), usize::from(i.src));
            let k64 = i64::from(i.imm) as u64;
            let mut jump = false;
            match i.code {
                LDX_W => {
                    assert_eq!(s, 1, "only the context is read");
                    r[d] = u64::from(ctx[i.off as usize / 4]);
                }
                AND32_K => r[d] = u64::from(r[d] as u32 & i.imm as u32),
                RSH32_K => r[d] = u64::from((r[d] as u32) >> i.imm),
                MOV32_K => r[d] = u64::from(i.imm as u32),
                MOV32_X => r[d] = u64::from(r[s] as u32),
                JNE_K => jump = r[d] != k64,
                JNE_X => jump = r[d] != r[s],
                JEQ_K => jump = r[d] == k64,
                EXIT => return r[0],
                c => panic!("opcode {c:#x}"),
            }
            pc += 1;
            if jump {
                pc += i.off as usize;
            }
        }
    }

    #[test]
    fn instruction_encoding() {
        // r2 = *(u32 *)(r1 + 4): code 0x61, dst 2 in the low nibble.
        let i = Insn::new(LDX_W, R2, R1, 4, 0);
        assert_eq!(i.raw().to_ne_bytes(), [0x61, 0x12, 4, 0, 0, 0, 0, 0]);
        let j = Insn::new(JNE_K, R4, 0, -2, -7);
        assert_eq!(
            j.raw().to_le_bytes(),
            [0x55, 0x04, 0xfe, 0xff, 0xf9, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn program_shape() {
        let p = policy(json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "b", "major": 7, "minor": 0, "access": "r"},
        ]));
        let prog = device_filter(&p);
        let t = text(&prog);
        assert_eq!(
            t[..6],
            [
                "r2 = *(u32 *)(r1 + 0)",
                "w2 &= 0xffff",
                "r3 = *(u32 *)(r1 + 0)",
                "w3 >>= 16",
                "r4 = *(u32 *)(r1 + 4)",
                "r5 = *(u32 *)(r1 + 8)",
            ]
        );
        // One block per exception, in the policy's order (character
        // devices first, wildcards first), then deny.
        let blocks: Vec<&[String]> = t[6..t.len() - 2].split_inclusive(|l| l == "exit").collect();
        assert_eq!(blocks.len(), p.exceptions.len());
        assert_eq!(t[t.len() - 2..], ["w0 = 0", "exit"]);
        // c *:* m: type and access only.
        assert_eq!(
            blocks[0],
            [
                "if r2 != 2 goto +5",
                "w1 = w3",
                "w1 &= 0x1",
                "if r1 != r3 goto +2",
                "w0 = 1",
                "exit",
            ]
        );
        // c 1:3 rwm: no access test.
        assert_eq!(
            blocks[1],
            [
                "if r2 != 2 goto +4",
                "if r4 != 1 goto +3",
                "if r5 != 3 goto +2",
                "w0 = 1",
                "exit",
            ]
        );
        // c 136:* rwm, then the block devices last.
        assert_eq!(
            blocks[9],
            [
                "if r2 != 2 goto +3",
                "if r4 != 136 goto +2",
                "w0 = 1",
                "exit"
            ]
        );
        assert_eq!(
            blocks[10],
            [
                "if r2 != 1 goto +5",
                "w1 = w3",
                "w1 &= 0x1",
                "if r1 != r3 goto +2",
                "w0 = 1",
                "exit",
            ]
        );
        assert_eq!(
            blocks[11],
            [
                "if r2 != 1 goto +7",
                "w1 = w3",
                "w1 &= 0x2",
                "if r1 != r3 goto +4",
                "if r4 != 7 goto +3",
                "if r5 != 0 goto +2",
                "w0 = 1",
                "exit",
            ]
        );
    }

    #[test]
    fn deny_lists_and_numbers_past_i32() {
        let p = policy(json!([
            {"allow": true, "access": "rwm"},
            {"allow": false, "type": "c", "major": 4294967295u32, "minor": 3, "access": "w"},
        ]));
        let t = text(&device_filter(&p));
        assert_eq!(
            t[6..],
            [
                "if r2 != 2 goto +8",
                "w1 = w3",
                "w1 &= 0x4",
                "if r1 == 0 goto +5",
                "w1 = 4294967295",
                "if r4 != r1 goto +3",
                "if r5 != 3 goto +2",
                "w0 = 0",
                "exit",
                "w0 = 1",
                "exit",
            ]
        );
    }

    /// The program answers exactly as the v1 kernel would for the same
    /// policy, over a spread of devices and every access combination.
    #[test]
    fn program_agrees_with_the_policy() {
        let policies = [
            json!([]),
            json!([
                {"allow": true, "type": "c", "major": 240, "minor": 1, "access": "rwm"},
                {"allow": false, "type": "c", "major": 240, "minor": 1, "access": "w"},
                {"allow": true, "type": "c", "major": 241, "access": "r"},
                {"allow": true, "type": "b", "minor": 9, "access": "rw"},
                {"allow": true, "type": "c", "major": 3000000000u32, "minor": 4000000000u32, "access": "rw"},
            ]),
            json!([
                {"allow": true, "access": "rwm"},
                {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "r"},
                {"allow": false, "type": "b", "major": 240, "access": "wm"},
                {"allow": false, "type": "c", "minor": 4000000000u32, "access": "rwm"},
            ]),
        ];
        let numbers = [
            0,
            1,
            3,
            5,
            9,
            136,
            240,
            241,
            3000000000,
            4000000000,
            u32::MAX,
        ];
        for v in policies {
            let p = policy(v.clone());
            let prog = device_filter(&p);
            for kind in [Kind::Char, Kind::Block] {
                for &major in &numbers {
                    for &minor in &numbers {
                        for bits in 1..=7u8 {
                            let access = Access::from_bits(bits);
                            let want = p.allows(kind, major, minor, access);
                            let got = run(&prog, kind, access, major, minor);
                            assert_eq!(
                                got,
                                u64::from(want),
                                "{kind:?} {major}:{minor} {access} under {v}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The real cgroup2 mount of this host, if there is one.
    fn unified() -> Option<&'static Path> {
        use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
        let root = Path::new("/sys/fs/cgroup/unified");
        let fs = statfs(root).ok()?;
        if fs.filesystem_type() == CGROUP2_SUPER_MAGIC {
            Some(root)
        } else {
            let root = Path::new("/sys/fs/cgroup");
            (statfs(root).ok()?.filesystem_type() == CGROUP2_SUPER_MAGIC).then_some(root)
        }
    }

    fn attached_ids(dir: &Path) -> Vec<u32> {
        query(open_dir(dir).unwrap().as_fd()).unwrap()
    }

    fn probes(tmp: &Path) -> Vec<(&'static str, String)> {
        vec![
            ("null-w", "exec 3>/dev/null".to_string()),
            ("null-r", "exec 3</dev/null".to_string()),
            ("zero-r", "exec 3</dev/zero".to_string()),
            ("full-r", "exec 3</dev/full".to_string()),
            ("loop0-r", "exec 3</dev/loop0".to_string()),
            (
                "mknod-null",
                format!("busybox mknod {0}/n c 1 3 && rm {0}/n", tmp.display()),
            ),
        ]
    }

    fn verdicts(cg: &Path, tmp: &Path) -> Vec<(String, Verdict)> {
        testing::probe(cg, &probes(tmp))
    }

    fn expect(pairs: &[(&str, Verdict)]) -> Vec<(String, Verdict)> {
        pairs.iter().map(|(l, v)| (l.to_string(), *v)).collect()
    }

    fn attach_rules(dir: &Path, v: serde_json::Value) {
        let p = Policy::from_spec(&serde_json::from_value::<Vec<_>>(v).unwrap()).unwrap();
        super::super::devices::apply_v2(dir, &p).unwrap();
    }

    #[test]
    fn v2_program_enforces_rules_on_the_real_kernel() {
        let Some(root) = unified() else {
            eprintln!("no cgroup2 mount; skipped");
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        let cg = testing::Dir::new(root, "bpf");
        use Verdict::{Eperm, Ok};

        // Deny-all and the defaults, plus read of /dev/loop0 (b 7:0) and,
        // for the type test, c 7:0 which must not open the block device.
        attach_rules(
            cg.path(),
            json!([
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "b", "major": 7, "minor": 0, "access": "r"},
            ]),
        );
        assert_eq!(attached_ids(cg.path()).len(), 1);
        assert_eq!(
            verdicts(cg.path(), tmp.path()),
            expect(&[
                ("null-w", Ok),
                ("null-r", Ok),
                ("zero-r", Ok),
                ("full-r", Ok),
                ("loop0-r", Ok),
                ("mknod-null", Ok),
            ])
        );

        // Deny-all and c 1:3 alone (without runc's defaults): /dev/zero
        // (1:5) is refused, then a later deny of write, wildcards, and
        // allow-all with deny exceptions.
        let only = |extra: serde_json::Value| {
            let mut rules = vec![
                json!({"allow": false, "access": "rwm"}),
                json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}),
            ];
            rules.extend(extra.as_array().unwrap().iter().cloned());
            Policy::without_defaults(&serde_json::from_value::<Vec<_>>(json!(rules)).unwrap())
                .unwrap()
        };
        let apply = |p: &Policy| replace_device_filter(cg.path(), &device_filter(p)).unwrap();

        apply(&only(json!([])));
        assert_eq!(
            verdicts(cg.path(), tmp.path()),
            expect(&[
                ("null-w", Ok),
                ("null-r", Ok),
                ("zero-r", Eperm),
                ("full-r", Eperm),
                ("loop0-r", Eperm),
                ("mknod-null", Ok),
            ])
        );

        // A later deny overrides the earlier allow: read stays, write and
        // mknod go.
        apply(&only(json!([
            {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "wm"},
        ])));
        assert_eq!(
            verdicts(cg.path(), tmp.path()),
            expect(&[
                ("null-w", Eperm),
                ("null-r", Ok),
                ("zero-r", Eperm),
                ("full-r", Eperm),
                ("loop0-r", Eperm),
                ("mknod-null", Eperm),
            ])
        );

        // Wildcards: c 1:* r opens every memory device for read only, and a
        // char rule for 7:* does not reach the block device 7:0.
        apply(&only(json!([
            {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "access": "r"},
            {"allow": true, "type": "c", "major": 7, "access": "rwm"},
        ])));
        assert_eq!(
            verdicts(cg.path(), tmp.path()),
            expect(&[
                ("null-w", Eperm),
                ("null-r", Ok),
                ("zero-r", Ok),
                ("full-r", Ok),
                ("loop0-r", Eperm),
                ("mknod-null", Eperm),
            ])
        );

        // Allow-all with a deny exception for one access.
        apply(&only(json!([
            {"allow": true, "type": "a", "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "r"},
            {"allow": false, "type": "b", "major": 7, "access": "rwm"},
        ])));
        assert_eq!(
            verdicts(cg.path(), tmp.path()),
            expect(&[
                ("null-w", Ok),
                ("null-r", Ok),
                ("zero-r", Eperm),
                ("full-r", Ok),
                ("loop0-r", Eperm),
                ("mknod-null", Ok),
            ])
        );
    }

    #[test]
    fn v2_update_replaces_the_program_leaving_exactly_one() {
        let Some(root) = unified() else {
            eprintln!("no cgroup2 mount; skipped");
            return;
        };
        let cg = testing::Dir::new(root, "bpf-update");
        attach_rules(cg.path(), json!([]));
        let first = attached_ids(cg.path());
        assert_eq!(first.len(), 1);
        attach_rules(
            cg.path(),
            json!([{"allow": true, "type": "c", "major": 1, "minor": 11, "access": "r"}]),
        );
        let second = attached_ids(cg.path());
        assert_eq!(second.len(), 1);
        assert_ne!(first, second);
        // The first program (which refuses /dev/kmsg) is gone, or the
        // kernel would still refuse it.
        let kmsg = || testing::probe(cg.path(), &[("kmsg-r", "exec 3</dev/kmsg".to_string())]);
        assert_eq!(kmsg(), [("kmsg-r".to_string(), Verdict::Ok)]);
        // A second cgroup's program is its own business.
        let other = testing::Dir::new(root, "bpf-other");
        attach_rules(other.path(), json!([]));
        attach_rules(cg.path(), json!([]));
        assert_eq!(attached_ids(cg.path()).len(), 1);
        assert_eq!(attached_ids(other.path()).len(), 1);
        assert_eq!(kmsg(), [("kmsg-r".to_string(), Verdict::Eperm)]);
    }

    /// Through the cgroup API: create applies the rules, a later apply
    /// replaces them.
    #[test]
    fn v2_create_and_apply_attach_the_device_program() {
        use super::super::{Cgroup, Hierarchy};
        use oci_spec::runtime::LinuxResources;
        let Some(root) = unified() else {
            eprintln!("no cgroup2 mount; skipped");
            return;
        };
        struct Destroy(Cgroup);
        impl Drop for Destroy {
            fn drop(&mut self) {
                if let Err(e) = self.0.destroy() {
                    eprintln!("{e}");
                }
            }
        }
        let resources = |devices: serde_json::Value| -> LinuxResources {
            serde_json::from_value(json!({ "devices": devices })).unwrap()
        };
        let name = format!("/berth-test-dev-h-{}", std::process::id());
        let cg = Hierarchy::v2_at(root)
            .create(
                Some(Path::new(&name)),
                "unused",
                Some(&resources(json!([
                    {"allow": false, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "r"},
                ]))),
            )
            .unwrap();
        let cg = Destroy(cg);
        let dir = cg.0.dir_of("devices").unwrap().to_path_buf();
        assert_eq!(dir, root.join(&name[1..]));
        let probes = [
            ("kmsg-r", "exec 3</dev/kmsg".to_string()),
            ("zero-r", "exec 3</dev/zero".to_string()),
            ("loop0-r", "exec 3</dev/loop0".to_string()),
        ];
        use Verdict::{Eperm, Ok};
        assert_eq!(
            testing::probe(&dir, &probes),
            expect(&[("kmsg-r", Ok), ("zero-r", Ok), ("loop0-r", Eperm)])
        );
        assert_eq!(attached_ids(&dir).len(), 1);

        cg.0.apply(&resources(json!([]))).unwrap();
        assert_eq!(
            testing::probe(&dir, &probes),
            expect(&[("kmsg-r", Eperm), ("zero-r", Ok), ("loop0-r", Eperm)])
        );
        assert_eq!(attached_ids(&dir).len(), 1);

        // A bad rule fails apply and leaves the program in place.
        let err =
            cg.0.apply(&resources(
                json!([{"allow": true, "type": "c", "access": "rwx"}]),
            ))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("linux.resources.devices[0].access"),
            "{err}"
        );
        assert_eq!(attached_ids(&dir).len(), 1);
    }

    #[test]
    fn refused_program_reports_the_verifier_log() {
        let Some(root) = unified() else {
            eprintln!("no cgroup2 mount; skipped");
            return;
        };
        let cg = testing::Dir::new(root, "bpf-bad");
        // Returns without setting r0.
        let bad = [Insn::new(EXIT, 0, 0, 0, 0)];
        let err = replace_device_filter(cg.path(), &bad).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "BPF_PROG_LOAD for the device filter of cgroup {}: Permission denied",
                cg.path().display()
            )),
            "{msg}"
        );
        assert!(
            msg.contains("verifier log:\n") && msg.contains("R0 !read_ok"),
            "{msg}"
        );
        assert!(attached_ids(cg.path()).is_empty());

        let gone = cg.path().join("missing");
        let err = replace_device_filter(&gone, &device_filter(&policy(json!([])))).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "open for the device filter of cgroup {}: ",
                gone.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn fake_trees_are_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        super::super::devices::apply_v2(tmp.path(), &policy(json!([]))).unwrap();
    }
}
