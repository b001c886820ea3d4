//! The sync protocol between the runtime and the container's setup
//! processes: fixed-size messages over a SOCK_SEQPACKET pair, so neither
//! side allocates.

use std::os::fd::RawFd;

use nix::errno::Errno;

use crate::sys;

/// Stage 1 has joined/created its user namespace and waits for its id maps
/// and cgroup placement.
pub const STAGE1_READY: u32 = 1;
/// The runtime has written the maps and placed the process: go on.
pub const CONTINUE: u32 = 2;
/// The init's pid (`a`), as seen by the runtime.
pub const INIT_PID: u32 = 3;
/// The init has mounted everything and asks for the create hooks.
pub const RUN_HOOKS: u32 = 4;
/// The runtime has run the create hooks.
pub const HOOKS_DONE: u32 = 5;
/// The init is set up and waits for `start`.
pub const READY: u32 = 6;
/// A step failed: label `a`, errno `b`.
pub const ERROR: u32 = 7;
/// The seccomp notify descriptor travels with this message (SCM_RIGHTS).
pub const SECCOMP_FD: u32 = 8;
/// The pid (`a`) of a process started by `exec`, as seen by the runtime.
pub const EXEC_PID: u32 = 9;

/// One message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msg {
    /// What it says.
    pub tag: u32,
    /// First argument.
    pub a: i32,
    /// Second argument.
    pub b: i32,
}

impl Msg {
    /// A message with arguments.
    pub fn new(tag: u32, a: i32, b: i32) -> Msg {
        Msg { tag, a, b }
    }
}

/// A connected pair of close-on-exec seqpacket sockets: (runtime's end,
/// child's end).
pub fn pair() -> crate::error::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| crate::error::Error::sys("socketpair", e))
}

/// Holds a freshly forked process until its parent has announced it: the
/// child's messages share the parent's socket and must not overtake the
/// message that carries its pid.
pub(crate) struct Gate {
    read: RawFd,
    write: RawFd,
}

impl Gate {
    /// A closed gate (a close-on-exec pipe), made before the fork.
    pub(crate) fn new() -> Result<Gate, Errno> {
        let (read, write) = sys::pipe()?;
        Ok(Gate { read, write })
    }

    /// In the child: waits until the parent opens the gate or exits.
    pub(crate) fn pass(self) {
        sys::close(self.write);
        let mut b = [0u8; 1];
        let _ = sys::read(self.read, &mut b);
        sys::close(self.read);
    }

    /// In the parent, once the child is announced.
    pub(crate) fn open(self) {
        sys::close(self.read);
        sys::close(self.write);
    }
}

/// Sends a message.
pub fn send(fd: RawFd, m: Msg) -> Result<(), Errno> {
    sys::send_all(fd, &encode(m))
}

/// Sends a message with a descriptor attached.
pub fn send_with_fd(sock: RawFd, m: Msg, fd: RawFd) -> Result<(), Errno> {
    sys::send_fd(sock, fd, &encode(m))
}

fn encode(m: Msg) -> [u8; 12] {
    let mut buf = [0u8; 12];
    buf[..4].copy_from_slice(&m.tag.to_ne_bytes());
    buf[4..8].copy_from_slice(&m.a.to_ne_bytes());
    buf[8..].copy_from_slice(&m.b.to_ne_bytes());
    buf
}

fn decode(buf: &[u8; 12]) -> Msg {
    let word = |i: usize| [buf[i], buf[i + 1], buf[i + 2], buf[i + 3]];
    Msg {
        tag: u32::from_ne_bytes(word(0)),
        a: i32::from_ne_bytes(word(4)),
        b: i32::from_ne_bytes(word(8)),
    }
}

/// Receives a message and the descriptor that came with it, if any (the
/// runtime's side: this allocates). `Ok(None)` when the other side has gone.
pub fn recv_with_fd(sock: RawFd) -> Result<Option<(Msg, Option<std::os::fd::OwnedFd>)>, Errno> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    let mut buf = [0u8; 12];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let (n, fd) = loop {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(r) => {
                let mut fd = None;
                for c in r.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        for f in fds {
                            // SAFETY: the kernel just installed this
                            // descriptor for us; nothing else owns it.
                            let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(f) };
                            fd.get_or_insert(owned);
                        }
                    }
                }
                break (r.bytes, fd);
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    };
    if n == 0 {
        return Ok(None);
    }
    if n != 12 {
        return Err(Errno::EPROTO);
    }
    Ok(Some((decode(&buf), fd)))
}

/// Receives a message; `Ok(None)` when the other side has gone.
pub fn recv(fd: RawFd) -> Result<Option<Msg>, Errno> {
    let mut buf = [0u8; 12];
    let n = sys::read(fd, &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if n != 12 {
        return Err(Errno::EPROTO);
    }
    Ok(Some(decode(&buf)))
}
