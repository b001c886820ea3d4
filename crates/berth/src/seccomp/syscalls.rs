//! Syscall names to numbers for the x86 family: x86_64 and i386 from the
//! kernel's tables (through the `syscalls` crate), x32 from the x86_64
//! table with its own ABI's differences.

use std::str::FromStr;

/// The architectures a filter on an x86_64 host distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    /// 64-bit code.
    X86_64,
    /// 32-bit code (ia32 emulation).
    X86,
    /// The x32 ABI: 64-bit mode with 32-bit pointers, syscall numbers with
    /// bit 30 set, reported as x86_64 in `seccomp_data.arch`.
    X32,
}

/// `AUDIT_ARCH_X86_64`.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386`.
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// Bit 30, set in every x32 syscall number.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// x32 syscalls whose numbers differ from x86_64's (the "x32" rows of the
/// kernel's syscall_64.tbl, 512 onwards, in order).
const X32_OWN: [&str; 36] = [
    "rt_sigaction",
    "rt_sigreturn",
    "ioctl",
    "readv",
    "writev",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "execve",
    "ptrace",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigqueueinfo",
    "sigaltstack",
    "timer_create",
    "mq_notify",
    "kexec_load",
    "waitid",
    "set_robust_list",
    "get_robust_list",
    "vmsplice",
    "move_pages",
    "preadv",
    "pwritev",
    "rt_tgsigqueueinfo",
    "recvmmsg",
    "sendmmsg",
    "process_vm_readv",
    "process_vm_writev",
    "setsockopt",
    "getsockopt",
    "io_setup",
    "io_submit",
    "execveat",
    "preadv2",
    "pwritev2",
];

/// x86_64-only rows ("64" ABI) that x32 lacks altogether.
const X32_ABSENT: [&str; 16] = [
    "uselib",
    "_sysctl",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "nfsservctl",
    "getpmsg",
    "putpmsg",
    "afs_syscall",
    "tuxcall",
    "security",
    "set_thread_area",
    "get_thread_area",
    "epoll_ctl_old",
    "epoll_wait_old",
    "vserver",
];

impl Arch {
    /// The value of `seccomp_data.arch` for this architecture.
    pub fn audit_arch(self) -> u32 {
        match self {
            Arch::X86_64 | Arch::X32 => AUDIT_ARCH_X86_64,
            Arch::X86 => AUDIT_ARCH_I386,
        }
    }

    /// The number of `name` as `seccomp_data.nr` carries it (x32 numbers
    /// include bit 30), or `None` if this architecture has no such syscall.
    pub fn number(self, name: &str) -> Option<u32> {
        match self {
            Arch::X86_64 => syscalls::x86_64::Sysno::from_str(name)
                .ok()
                .map(|s| s.id() as u32),
            Arch::X86 => syscalls::x86::Sysno::from_str(name)
                .ok()
                .map(|s| s.id() as u32),
            Arch::X32 => {
                if let Some(i) = X32_OWN.iter().position(|n| *n == name) {
                    return Some(X32_SYSCALL_BIT | (512 + i as u32));
                }
                if X32_ABSENT.contains(&name) {
                    return None;
                }
                Arch::X86_64.number(name).map(|n| n | X32_SYSCALL_BIT)
            }
        }
    }

    /// The highest syscall number this build knows for the architecture:
    /// anything above it is newer than the profile could have named.
    pub fn newest(self) -> u32 {
        match self {
            Arch::X86_64 => syscalls::x86_64::Sysno::last().id() as u32,
            Arch::X86 => syscalls::x86::Sysno::last().id() as u32,
            // x32 shares x86_64's newest numbers (above its own 512..547).
            Arch::X32 => X32_SYSCALL_BIT | (syscalls::x86_64::Sysno::last().id() as u32).max(547),
        }
    }

    /// Whether arguments are compared as 32-bit values (their low words
    /// only), as libseccomp does for i386 and x32.
    pub fn is_32bit(self) -> bool {
        matches!(self, Arch::X86 | Arch::X32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_the_kernel_tables() {
        assert_eq!(Arch::X86_64.number("read"), Some(0));
        assert_eq!(Arch::X86_64.number("mkdir"), Some(83));
        assert_eq!(Arch::X86_64.number("clone3"), Some(435));
        assert_eq!(Arch::X86.number("mkdir"), Some(39));
        assert_eq!(Arch::X86.number("socketcall"), Some(102));
        assert_eq!(Arch::X86_64.number("socketcall"), None);
        assert_eq!(Arch::X32.number("read"), Some(X32_SYSCALL_BIT));
        assert_eq!(
            Arch::X32.number("rt_sigaction"),
            Some(X32_SYSCALL_BIT | 512)
        );
        assert_eq!(Arch::X32.number("execve"), Some(X32_SYSCALL_BIT | 520));
        assert_eq!(Arch::X32.number("pwritev2"), Some(X32_SYSCALL_BIT | 547));
        assert_eq!(Arch::X32.number("uselib"), None);
        assert_eq!(Arch::X86_64.number("no_such_call"), None);
        assert!(Arch::X86_64.newest() >= 435);
        assert!(Arch::X32.newest() >= X32_SYSCALL_BIT | 547);
    }
}
