//! The in-container checker: a static binary the driver copies into each
//! case's root file system and runs as the container's process. Each
//! argument is a probe; for each it prints one line `probe<TAB>value`,
//! where a failed system call gives `!ERRNO` (e.g. `!EROFS`). It depends
//! on nothing but std and the C library std already links, so build.rs
//! can link it statically.
//!
//! Probes: uid gid groups umask cwd pid ppid hostname domainname machine
//! personality oom tty fds env:NAME ns:TYPE status:Field rlimit:NAME
//! read:PATH open:PATH openw:PATH create:PATH stat:PATH readlink:PATH
//! mount:PATH ls:DIR sysctl:KEY access-x:PATH mkdir:PATH chdir:PATH
//! sethostname:NAME unshare:TYPE sleep:MS

use std::ffi::CString;
use std::io::Write as _;
use std::os::raw::{c_char, c_int, c_long, c_ulong};

#[repr(C)]
struct Utsname {
    sysname: [c_char; 65],
    nodename: [c_char; 65],
    release: [c_char; 65],
    version: [c_char; 65],
    machine: [c_char; 65],
    domainname: [c_char; 65],
}

#[repr(C)]
struct Rlimit {
    cur: u64,
    max: u64,
}

extern "C" {
    fn getuid() -> u32;
    fn getgid() -> u32;
    fn getgroups(size: c_int, list: *mut u32) -> c_int;
    fn umask(mask: u32) -> u32;
    fn getpid() -> c_int;
    fn getppid() -> c_int;
    fn uname(buf: *mut Utsname) -> c_int;
    fn personality(persona: c_ulong) -> c_int;
    fn isatty(fd: c_int) -> c_int;
    fn getrlimit(resource: c_int, rlim: *mut Rlimit) -> c_int;
    fn open(path: *const c_char, flags: c_int, mode: u32) -> c_int;
    fn close(fd: c_int) -> c_int;
    fn unlink(path: *const c_char) -> c_int;
    fn access(path: *const c_char, mode: c_int) -> c_int;
    fn mkdir(path: *const c_char, mode: u32) -> c_int;
    fn rmdir(path: *const c_char) -> c_int;
    fn chdir(path: *const c_char) -> c_int;
    fn sethostname(name: *const c_char, len: usize) -> c_int;
    fn unshare(flags: c_int) -> c_int;
    fn __errno_location() -> *mut c_int;
    fn syscall(n: c_long, ...) -> c_long;
}

const O_RDONLY: c_int = 0;
const O_WRONLY: c_int = 1;
const O_CREAT: c_int = 0o100;
const O_EXCL: c_int = 0o200;
const O_CLOEXEC: c_int = 0o2000000;
const X_OK: c_int = 1;

fn errno() -> c_int {
    // SAFETY: __errno_location returns the calling thread's errno slot.
    unsafe { *__errno_location() }
}

fn errno_name(e: c_int) -> String {
    let name = match e {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        6 => "ENXIO",
        7 => "E2BIG",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        18 => "EXDEV",
        19 => "ENODEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        24 => "EMFILE",
        25 => "ENOTTY",
        26 => "ETXTBSY",
        28 => "ENOSPC",
        30 => "EROFS",
        36 => "ENAMETOOLONG",
        38 => "ENOSYS",
        40 => "ELOOP",
        95 => "EOPNOTSUPP",
        _ => return format!("E{e}"),
    };
    name.to_string()
}

fn err() -> String {
    format!("!{}", errno_name(errno()))
}

fn io_err(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => format!("!{}", errno_name(n)),
        None => format!("!{e}"),
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

fn field(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn uts() -> Option<Utsname> {
    // SAFETY: Utsname is plain bytes; all-zero is valid, and uname fills it.
    let mut u: Utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    (unsafe { uname(&mut u) } == 0).then_some(u)
}

fn read_file(path: &str) -> String {
    match std::fs::read(path) {
        Ok(b) => {
            let s = String::from_utf8_lossy(&b[..b.len().min(4096)]).into_owned();
            s.trim_end_matches('\n').replace('\n', "\\n")
        }
        Err(e) => io_err(&e),
    }
}

fn rlimit_resource(name: &str) -> Option<c_int> {
    Some(match name.trim_start_matches("RLIMIT_") {
        "CPU" => 0,
        "FSIZE" => 1,
        "DATA" => 2,
        "STACK" => 3,
        "CORE" => 4,
        "RSS" => 5,
        "NPROC" => 6,
        "NOFILE" => 7,
        "MEMLOCK" => 8,
        "AS" => 9,
        "LOCKS" => 10,
        "SIGPENDING" => 11,
        "MSGQUEUE" => 12,
        "NICE" => 13,
        "RTPRIO" => 14,
        "RTTIME" => 15,
        _ => return None,
    })
}

fn limit(v: u64) -> String {
    if v == u64::MAX {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

/// `type mode uid gid [major:minor]` of a path (not following a final
/// symlink).
fn stat(path: &str) -> String {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
    let m = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => return io_err(&e),
    };
    let t = m.file_type();
    let kind = if t.is_dir() {
        "d"
    } else if t.is_symlink() {
        "l"
    } else if t.is_char_device() {
        "c"
    } else if t.is_block_device() {
        "b"
    } else if t.is_fifo() {
        "p"
    } else if t.is_socket() {
        "s"
    } else {
        "f"
    };
    let mut s = format!("{kind} {:04o} {} {}", m.mode() & 0o7777, m.uid(), m.gid());
    if t.is_char_device() || t.is_block_device() {
        let r = m.rdev();
        let major = ((r >> 8) & 0xfff) | ((r >> 32) & !0xfff);
        let minor = (r & 0xff) | ((r >> 12) & !0xff);
        s.push_str(&format!(" {major}:{minor}"));
    }
    s
}

/// `fstype mount-options super-options propagation` of the last mount
/// on `path` in /proc/self/mountinfo.
fn mount(path: &str) -> String {
    let text = match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(t) => t,
        Err(e) => return io_err(&e),
    };
    let mut found = None;
    for line in text.lines() {
        let (pre, post) = match line.split_once(" - ") {
            Some(p) => p,
            None => continue,
        };
        let f: Vec<&str> = pre.split(' ').collect();
        if f.len() < 6 || unescape(f[4]) != path {
            continue;
        }
        let g: Vec<&str> = post.split(' ').collect();
        let prop: Vec<&str> = f[6..]
            .iter()
            .map(|t| t.split(':').next().unwrap_or(""))
            .collect();
        let prop = if prop.is_empty() {
            "private".to_string()
        } else {
            prop.join(",")
        };
        found = Some(format!(
            "{} {} {} {}",
            g.first().unwrap_or(&""),
            f[5],
            g.get(2).unwrap_or(&""),
            prop
        ));
    }
    found.unwrap_or_else(|| "!ENOENT".into())
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t")
}

fn ns_flag(t: &str) -> c_int {
    match t {
        "mnt" | "mount" => 0x0002_0000,
        "uts" => 0x0400_0000,
        "ipc" => 0x0800_0000,
        "user" => 0x1000_0000,
        "pid" => 0x2000_0000,
        "net" | "network" => 0x4000_0000,
        "cgroup" => 0x0200_0000,
        "time" => 0x80,
        _ => 0,
    }
}

fn probe(p: &str) -> String {
    let (kind, arg) = p.split_once(':').unwrap_or((p, ""));
    let c = cstr(arg);
    match kind {
        // SAFETY: getuid/getgid cannot fail.
        "uid" => unsafe { getuid() }.to_string(),
        // SAFETY: as above.
        "gid" => unsafe { getgid() }.to_string(),
        "groups" => {
            let mut g = [0u32; 256];
            // SAFETY: `g` has room for 256 entries.
            let n = unsafe { getgroups(256, g.as_mut_ptr()) };
            if n < 0 {
                return err();
            }
            let mut v: Vec<u32> = g[..n as usize].to_vec();
            v.sort_unstable();
            v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
        }
        "umask" => {
            // SAFETY: umask only swaps the process's mask; it is restored.
            let m = unsafe { umask(0o022) };
            // SAFETY: as above.
            unsafe { umask(m) };
            format!("{m:04o}")
        }
        "cwd" => match std::env::current_dir() {
            Ok(d) => d.display().to_string(),
            Err(e) => io_err(&e),
        },
        // SAFETY: getpid cannot fail.
        "pid" => unsafe { getpid() }.to_string(),
        // SAFETY: getppid cannot fail.
        "ppid" => unsafe { getppid() }.to_string(),
        "hostname" => uts().map(|u| field(&u.nodename)).unwrap_or_else(err),
        "domainname" => uts().map(|u| field(&u.domainname)).unwrap_or_else(err),
        "machine" => uts().map(|u| field(&u.machine)).unwrap_or_else(err),
        "personality" => {
            // SAFETY: 0xffffffff queries the persona without changing it.
            let p = unsafe { personality(0xffff_ffff) };
            format!("{:#x}", p & 0xff)
        }
        "oom" => read_file("/proc/self/oom_score_adj"),
        // SAFETY: isatty on a descriptor number.
        "tty" => (unsafe { isatty(arg.parse().unwrap_or(0)) } == 1).to_string(),
        "fds" => match std::fs::read_dir("/proc/self/fd") {
            Ok(d) => {
                let mut v: Vec<u32> = d
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect();
                v.sort_unstable();
                // The last is the directory being read.
                v.pop();
                v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            }
            Err(e) => io_err(&e),
        },
        "env" => std::env::var(arg).unwrap_or_else(|_| "!UNSET".into()),
        "ns" => match std::fs::read_link(format!("/proc/self/ns/{arg}")) {
            Ok(l) => l.display().to_string(),
            Err(e) => io_err(&e),
        },
        "status" => match std::fs::read_to_string("/proc/self/status") {
            Ok(t) => t
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{arg}:")))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| "!ENOENT".into()),
            Err(e) => io_err(&e),
        },
        "rlimit" => match rlimit_resource(arg) {
            Some(r) => {
                let mut l = Rlimit { cur: 0, max: 0 };
                // SAFETY: valid out-pointer.
                if unsafe { getrlimit(r, &mut l) } != 0 {
                    return err();
                }
                format!("{} {}", limit(l.cur), limit(l.max))
            }
            None => "!EINVAL".into(),
        },
        "read" => read_file(arg),
        "sysctl" => read_file(&format!("/proc/sys/{}", arg.replace('.', "/"))),
        "open" | "openw" | "create" => {
            let flags = match kind {
                "open" => O_RDONLY,
                "openw" => O_WRONLY,
                _ => O_WRONLY | O_CREAT | O_EXCL,
            };
            // SAFETY: `c` is NUL-terminated.
            let fd = unsafe { open(c.as_ptr(), flags | O_CLOEXEC, 0o644) };
            if fd < 0 {
                return err();
            }
            // SAFETY: closing the descriptor just opened.
            unsafe { close(fd) };
            if kind == "create" {
                // SAFETY: `c` is NUL-terminated.
                unsafe { unlink(c.as_ptr()) };
            }
            "ok".into()
        }
        "write" => match std::fs::write(arg, "container data\n") {
            Ok(()) => "ok".into(),
            Err(e) => io_err(&e),
        },
        "stat" => stat(arg),
        "readlink" => match std::fs::read_link(arg) {
            Ok(l) => l.display().to_string(),
            Err(e) => io_err(&e),
        },
        "mount" => mount(arg),
        "ls" => match std::fs::read_dir(arg) {
            Ok(d) => {
                let mut v: Vec<String> = d
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                v.sort();
                v.join(",")
            }
            Err(e) => io_err(&e),
        },
        // SAFETY: `c` is NUL-terminated.
        "access-x" => match unsafe { access(c.as_ptr(), X_OK) } {
            0 => "ok".into(),
            _ => err(),
        },
        // SAFETY: `c` is NUL-terminated; the directory is removed again.
        "mkdir" => match unsafe { mkdir(c.as_ptr(), 0o755) } {
            0 => {
                // SAFETY: as above.
                unsafe { rmdir(c.as_ptr()) };
                "ok".into()
            }
            _ => err(),
        },
        // SAFETY: `c` is NUL-terminated.
        "chdir" => match unsafe { chdir(c.as_ptr()) } {
            0 => "ok".into(),
            _ => err(),
        },
        // SAFETY: `c` holds `arg.len()` bytes.
        "sethostname" => match unsafe { sethostname(c.as_ptr(), arg.len()) } {
            0 => "ok".into(),
            _ => err(),
        },
        // SAFETY: unshare with a flag value; affects only this process.
        "unshare" => match unsafe { unshare(ns_flag(arg)) } {
            0 => "ok".into(),
            _ => err(),
        },
        "getcwd-raw" => {
            let mut buf = [0u8; 256];
            // SAFETY: SYS_getcwd (79) with a valid buffer of that size.
            let r = unsafe { syscall(79, buf.as_mut_ptr(), buf.len()) };
            if r < 0 {
                err()
            } else {
                "ok".into()
            }
        }
        "syscall" => {
            // `NR[,arg...]`: a raw system call with integer arguments.
            let n: Vec<c_long> = arg.split(',').map(|a| parse_int(a).unwrap_or(-1)).collect();
            let a = |i: usize| n.get(i).copied().unwrap_or(0);
            // SAFETY: only integer arguments; the cases pick calls whose
            // integer arguments are harmless (getppid, getpriority).
            let r = unsafe { syscall(a(0), a(1), a(2), a(3)) };
            if r < 0 {
                err()
            } else {
                "ok".into()
            }
        }
        "cgroup" | "cgroup-mkdir" => {
            // `v1-path|v2-path`, both relative to /sys/fs/cgroup.
            let (v1, v2) = arg.split_once('|').unwrap_or((arg, arg));
            let rel = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
                v2
            } else {
                v1
            };
            let path = format!("/sys/fs/cgroup/{rel}");
            if kind == "cgroup" {
                read_file(&path)
            } else {
                probe(&format!("mkdir:{path}"))
            }
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_millis(arg.parse().unwrap_or(0)));
            "ok".into()
        }
        _ => format!("!unknown probe {p}"),
    }
}

fn parse_int(s: &str) -> Option<c_long> {
    match s.strip_prefix("0x") {
        Some(h) => c_long::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn main() {
    let mut out = std::io::stdout().lock();
    for p in std::env::args().skip(1) {
        let v = probe(&p);
        let _ = writeln!(out, "{p}\t{v}");
    }
    let _ = out.flush();
}
