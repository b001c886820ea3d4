//! Small wrappers over the system calls nix does not cover (or covers only
//! with allocation). Each is safe to call between `clone` and `execve`: no
//! allocation, no locks, errors as `Errno`.

use std::ffi::CStr;
use std::os::fd::RawFd;

use nix::errno::Errno;

/// The result of a raw system call.
pub(crate) type SysResult<T> = Result<T, Errno>;

fn check(ret: libc::c_long) -> SysResult<libc::c_long> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

fn check_int(ret: libc::c_int) -> SysResult<libc::c_int> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// fork(2) through clone(2) with extra namespace flags. Returns 0 in the child.
///
/// The child shares nothing with the parent's threads: in a multi-threaded
/// caller it may only use async-signal-safe operations until it execs.
pub(crate) fn clone_fork(flags: libc::c_int) -> SysResult<libc::pid_t> {
    // SAFETY: clone with a null stack behaves like fork: the child runs on a
    // copy of the caller's stack; no pointers are passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    check(ret).map(|p| p as libc::pid_t)
}

/// Ends the current process without running atexit handlers or destructors.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no user-space state.
    unsafe { libc::_exit(code) }
}

/// openat2(2) with `RESOLVE_IN_ROOT`: `path` is resolved as if `root` were
/// the file system root, so `..` and absolute symlinks cannot escape it.
pub(crate) fn open_in_root(root: RawFd, path: &CStr, flags: libc::c_int) -> SysResult<RawFd> {
    // SAFETY: open_how is plain integers; all-zero is its default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `path` is NUL-terminated and `how` is a valid open_how of the
    // size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root,
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    check(ret).map(|fd| fd as RawFd)
}

/// A `/proc/self/fd/N` path built on the stack, for operating on an O_PATH
/// descriptor with calls that take only paths (mount(2)).
pub(crate) struct FdPath {
    buf: [u8; 32],
}

impl FdPath {
    pub(crate) fn new(fd: RawFd) -> Self {
        let mut buf = [0u8; 32];
        let prefix = b"/proc/self/fd/";
        buf[..prefix.len()].copy_from_slice(prefix);
        let mut digits = [0u8; 12];
        let mut n = fd.max(0) as u32;
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in 0..len {
            buf[prefix.len() + i] = digits[len - 1 - i];
        }
        FdPath { buf }
    }

    pub(crate) fn as_cstr(&self) -> &CStr {
        // The buffer always holds a NUL after the digits (32 > 14 + 10).
        CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"/proc/self/fd")
    }
}

/// pivot_root(2).
pub(crate) fn pivot_root(new_root: &CStr, put_old: &CStr) -> SysResult<()> {
    // SAFETY: both arguments are NUL-terminated strings.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    check(ret).map(drop)
}

/// Marks every descriptor from `first` up close-on-exec (close_range(2)).
pub(crate) fn cloexec_from(first: u32) -> SysResult<()> {
    // SAFETY: close_range takes plain integers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    check(ret).map(drop)
}

/// Closes every descriptor from `first` up except those in `keep`
/// (close_range(2) over the gaps; `keep` is sorted in place).
pub(crate) fn close_all_but(first: RawFd, keep: &mut [RawFd]) {
    keep.sort_unstable();
    let mut lo = first;
    for &k in keep.iter() {
        if k < lo {
            continue;
        }
        if k > lo {
            // SAFETY: close_range takes plain integers.
            unsafe { libc::syscall(libc::SYS_close_range, lo as u32, (k - 1) as u32, 0) };
        }
        lo = k + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, lo as u32, u32::MAX, 0) };
}

/// dup2(2) for the setup process (no allocation; the new descriptor is
/// not close-on-exec).
pub(crate) fn dup2(old: RawFd, new: RawFd) -> SysResult<()> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::dup2(old, new) };
    check_int(ret).map(drop)
}

/// A close-on-exec duplicate of `fd` numbered `min` or above
/// (fcntl F_DUPFD_CLOEXEC).
pub(crate) fn dup_above(fd: RawFd, min: RawFd) -> SysResult<std::os::fd::OwnedFd> {
    // SAFETY: fcntl with integer arguments.
    let ret = check_int(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) })?;
    // SAFETY: F_DUPFD_CLOEXEC returned a fresh descriptor nothing else owns.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(ret) })
}

/// pidfd_open(2).
pub(crate) fn pidfd_open(pid: libc::pid_t) -> SysResult<RawFd> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    check(ret).map(|fd| fd as RawFd)
}

/// Waits until `fd` is readable or `timeout_ms` passes (-1: forever).
/// Returns whether it became readable.
pub(crate) fn poll_readable(fd: RawFd, timeout_ms: i32) -> SysResult<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        let ret = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        match check_int(ret) {
            Ok(n) => return Ok(n > 0),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// write(2) of the whole buffer, retrying on EINTR and short writes.
pub(crate) fn write_all(fd: RawFd, mut buf: &[u8]) -> SysResult<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid slice for its length.
        let ret = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        match check(ret as libc::c_long) {
            Ok(n) => buf = &buf[n as usize..],
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// send(2) of the whole buffer with MSG_NOSIGNAL: a closed peer is EPIPE,
/// never SIGPIPE.
pub(crate) fn send_all(fd: RawFd, mut buf: &[u8]) -> SysResult<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid slice for its length.
        let ret = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        match check(ret as libc::c_long) {
            Ok(n) => buf = &buf[n as usize..],
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// read(2) retrying on EINTR. Returns 0 at end of file.
pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> SysResult<usize> {
    loop {
        // SAFETY: `buf` is a valid mutable slice for its length.
        let ret = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        match check(ret as libc::c_long) {
            Ok(n) => return Ok(n as usize),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// pipe2(2) with O_CLOEXEC: (read end, write end).
pub(crate) fn pipe() -> SysResult<(RawFd, RawFd)> {
    let mut fds: [libc::c_int; 2] = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let ret = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    check_int(ret)?;
    Ok((fds[0], fds[1]))
}

/// close(2), ignoring errors (the descriptor is gone either way).
pub(crate) fn close(fd: RawFd) {
    // SAFETY: closing an integer descriptor has no memory effects.
    unsafe { libc::close(fd) };
}

/// Opens `path` with `flags` (always O_CLOEXEC), without allocating.
pub(crate) fn open(path: &CStr, flags: libc::c_int, mode: libc::mode_t) -> SysResult<RawFd> {
    // SAFETY: `path` is NUL-terminated.
    let ret = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    check_int(ret)
}

/// mount(2) with optional arguments as C strings.
pub(crate) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> SysResult<()> {
    let p = |s: Option<&CStr>| s.map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is either null or a NUL-terminated string.
    let ret = unsafe { libc::mount(p(source), target.as_ptr(), p(fstype), flags, p(data).cast()) };
    check_int(ret).map(drop)
}

/// The mount flags of the file system holding `fd` (statfs f_flags mapped to
/// MS_* values), needed to keep locked flags on a bind remount.
pub(crate) fn mount_flags_of(fd: RawFd) -> SysResult<libc::c_ulong> {
    // SAFETY: zeroed statvfs is a valid out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer.
    check_int(unsafe { libc::fstatvfs(fd, &mut st) })?;
    let mut flags = 0;
    for (st_flag, ms) in [
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & st_flag != 0 {
            flags |= ms;
        }
    }
    Ok(flags)
}

/// Loads a seccomp filter for the calling thread; returns the notify
/// descriptor when `flags` asks for a listener, otherwise 0.
pub(crate) fn seccomp_set_filter(flags: u32, prog: &[crate::seccomp::Insn]) -> SysResult<RawFd> {
    let fprog = libc::sock_fprog {
        len: prog.len() as libc::c_ushort,
        // The kernel only reads the program; Insn has sock_filter's layout.
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points to `prog.len()` valid instructions that live
    // across the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    check(ret).map(|fd| fd as RawFd)
}

/// Sends `fd` over the unix socket `sock` with SCM_RIGHTS, with `payload` as
/// the message body.
pub(crate) fn send_fd(sock: RawFd, fd: RawFd, payload: &[u8]) -> SysResult<()> {
    // Room for one cmsghdr carrying one int, aligned for cmsghdr.
    let mut cbuf = [0u64; 4];
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: zeroed msghdr is valid; fields are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    // SAFETY: msg_control points to a buffer of at least msg_controllen bytes,
    // so the first header and its data fit.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
    }
    loop {
        // SAFETY: `msg` and everything it points to live across the call.
        let ret = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        match check(ret as libc::c_long) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The capability sets as capset(2) takes them (version 3: two 32-bit words).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

/// capset(2) for the calling thread.
pub(crate) fn capset(sets: &CapSets) -> SysResult<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let lo = |v: u64| v as u32;
    let hi = |v: u64| (v >> 32) as u32;
    let data = [
        Data {
            effective: lo(sets.effective),
            permitted: lo(sets.permitted),
            inheritable: lo(sets.inheritable),
        },
        Data {
            effective: hi(sets.effective),
            permitted: hi(sets.permitted),
            inheritable: hi(sets.inheritable),
        },
    ];
    // SAFETY: header and data are valid for capset's v3 layout.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    check(ret).map(drop)
}

/// prctl(2) with integer arguments.
pub(crate) fn prctl(
    option: libc::c_int,
    arg2: libc::c_ulong,
    arg3: libc::c_ulong,
) -> SysResult<()> {
    // SAFETY: the options used here take only integer arguments.
    let ret = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    check_int(ret).map(drop)
}

/// Joins a new session keyring named `name` (keyctl JOIN_SESSION_KEYRING).
pub(crate) fn join_session_keyring(name: &CStr) -> SysResult<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: `name` is NUL-terminated.
    let ret =
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    check(ret).map(drop)
}

/// setresuid(2) as a raw system call. glibc's wrapper broadcasts the change
/// to every thread it believes exists, which after a raw clone in a
/// threaded host are threads the child does not have: it would wait forever.
pub(crate) fn setresuid(uid: libc::uid_t) -> SysResult<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) }).map(drop)
}

/// setresgid(2) as a raw system call (see [`setresuid`]).
pub(crate) fn setresgid(gid: libc::gid_t) -> SysResult<()> {
    // SAFETY: plain integer arguments.
    check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) }).map(drop)
}

/// setgroups(2) as a raw system call (see [`setresuid`]).
pub(crate) fn setgroups(groups: &[libc::gid_t]) -> SysResult<()> {
    // SAFETY: pointer and length describe `groups`.
    check(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) }).map(drop)
}

/// setns(2).
pub(crate) fn setns(fd: RawFd, nstype: libc::c_int) -> SysResult<()> {
    // SAFETY: plain integer arguments.
    check_int(unsafe { libc::setns(fd, nstype) }).map(drop)
}

/// unshare(2).
pub(crate) fn unshare(flags: libc::c_int) -> SysResult<()> {
    // SAFETY: plain integer arguments.
    check_int(unsafe { libc::unshare(flags) }).map(drop)
}

/// The start time of `pid` in clock ticks since boot (field 22 of
/// /proc/PID/stat), which together with the pid names one process for its
/// whole life. None when the process does not exist.
pub(crate) fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // rest starts at field 3 (state); start time is field 22.
    rest.split(' ').nth(19)?.parse().ok()
}

/// The state letter of `pid` (R, S, Z, ...) from /proc/PID/stat.
pub(crate) fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_path_formats_digits() {
        assert_eq!(FdPath::new(0).as_cstr(), c"/proc/self/fd/0");
        assert_eq!(FdPath::new(1234567).as_cstr(), c"/proc/self/fd/1234567");
    }

    #[test]
    fn start_time_of_self_is_stable() {
        let me = std::process::id() as i32;
        let a = process_start_time(me).unwrap();
        assert_eq!(Some(a), process_start_time(me));
        assert!(process_state(me).is_some());
        assert_eq!(process_start_time(i32::MAX), None);
    }
}
