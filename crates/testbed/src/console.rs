//! The receiving end of `--console-socket` (runtime spec "Console" and
//! runc's convention): an AF_UNIX listener that takes the pty master the
//! runtime sends with SCM_RIGHTS, and a reader for the container's output.

use std::io::{self, IoSliceMut, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// A listening console socket.
pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Listens on `path`.
    pub fn bind(path: impl Into<PathBuf>) -> io::Result<ConsoleSocket> {
        let path = path.into();
        let listener = UnixListener::bind(&path)?;
        Ok(ConsoleSocket { path, listener })
    }

    /// The socket's path, for `--console-socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts one connection and receives the fd it sends; fails after
    /// `limit` without one.
    pub fn recv_master(&self, limit: Duration) -> io::Result<OwnedFd> {
        wait_readable(self.listener.as_fd(), limit)?;
        let (conn, _) = self.listener.accept()?;
        wait_readable(conn.as_fd(), limit)?;
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut got: Option<OwnedFd> = None;
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for fd in fds {
                    // SAFETY: the kernel just installed this descriptor in
                    // our table for us; nothing else owns it.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    got.get_or_insert(owned);
                }
            }
        }
        got.ok_or_else(|| io::Error::other("console socket message carried no fd"))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, limit: Duration) -> io::Result<()> {
    let ms = u16::try_from(limit.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    let n = poll(&mut fds, PollTimeout::from(ms))?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "nothing arrived in time",
        ));
    }
    Ok(())
}

/// Reads a pty master until the slave side is closed everywhere (EIO) or
/// `limit` passes, and returns what was read.
pub fn read_pty(master: &OwnedFd, limit: Duration) -> String {
    let until = Instant::now() + limit;
    let mut out = Vec::new();
    let mut f = std::fs::File::from(master.try_clone().expect("dup pty master"));
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || wait_readable(master.as_fd(), left).is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
