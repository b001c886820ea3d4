//! The terminal of a foreground `run` (pty(7), termios(3), unix(7)
//! SCM_RIGHTS): berth receives the pseudoterminal master over its own
//! console socket, puts the caller's terminal in raw mode, relays bytes both
//! ways and passes window size changes on.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

/// A listening AF_UNIX socket in a private temporary directory, removed
/// with it on drop.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl ConsoleSocket {
    pub fn new() -> Result<Self> {
        // The directory is 0700, so only root can connect and hand in a pty.
        let dir = tempfile::Builder::new()
            .prefix("berth-console-")
            .tempdir()
            .context("create a directory for the console socket")?;
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("listen on console socket {}", path.display()))?;
        Ok(ConsoleSocket {
            listener,
            path,
            _dir: dir,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts one connection and takes the file descriptor it carries.
    /// The sender may already have gone: its connection and message wait
    /// in the socket's backlog.
    pub fn receive(&self, timeout: Duration) -> Result<OwnedFd> {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::from(ms))
            .with_context(|| format!("wait on console socket {}", self.path.display()))?;
        if ready == 0 {
            bail!(
                "no terminal received on console socket {} within {timeout:?}",
                self.path.display()
            );
        }
        let (stream, _) = self
            .listener
            .accept()
            .with_context(|| format!("accept on console socket {}", self.path.display()))?;
        recv_fd(stream.as_fd())
            .with_context(|| format!("receive the terminal on {}", self.path.display()))
    }
}

/// Receives one SCM_RIGHTS file descriptor; the data (the pty's name) is
/// not needed.
fn recv_fd(sock: BorrowedFd<'_>) -> Result<OwnedFd> {
    let mut data = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut data)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut received = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just installed these descriptors in this
            // process for this message; nothing else owns them.
            received.extend(
                fds.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    // Any extra descriptors are closed when `received` drops.
    match received.into_iter().next() {
        Some(fd) => Ok(fd),
        None => bail!("the message carried no file descriptor"),
    }
}

nix::ioctl_read_bad!(tiocgwinsz, libc::TIOCGWINSZ, libc::winsize);
nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, libc::winsize);

/// Copies the window size of berth's own terminal (stdin, else stdout) to
/// the pty; a no-op when berth has no terminal.
pub fn resize(master: BorrowedFd<'_>) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO] {
        // SAFETY: TIOCGWINSZ writes one winsize into `ws`, which is valid
        // for the call; a non-terminal fd just fails with ENOTTY.
        if unsafe { tiocgwinsz(fd, &mut ws) }.is_ok() {
            // SAFETY: TIOCSWINSZ reads one winsize from `ws`; `master` is
            // an open descriptor borrowed for the call.
            let _ = unsafe { tiocswinsz(master.as_raw_fd(), &ws) };
            return;
        }
    }
}

/// Puts stdin's terminal in raw mode and restores it on drop, so keys like
/// ^C reach the container's terminal instead of signalling berth.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> Result<Option<RawMode>> {
        let stdin = io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = tcgetattr(&stdin).context("read the terminal settings of stdin")?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).context("put stdin in raw mode")?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(io::stdin(), SetArg::TCSANOW, &self.saved);
    }
}

/// The running relay between berth's stdio and the pty master.
pub struct Relay {
    master: Arc<File>,
    done: Arc<AtomicBool>,
    output: Option<JoinHandle<()>>,
    _raw: Option<RawMode>,
}

impl Relay {
    /// Sizes the pty, enters raw mode and starts copying stdin to the
    /// master and the master to stdout.
    pub fn start(master: OwnedFd) -> Result<Relay> {
        let master = Arc::new(File::from(master));
        resize(master.as_fd());
        let raw = RawMode::enter()?;
        let done = Arc::new(AtomicBool::new(false));

        let input = Arc::clone(&master);
        // Never joined: it sits in read(2) on stdin until berth exits.
        std::thread::Builder::new()
            .name("tty-in".into())
            .spawn(move || {
                let _ = io::copy(&mut io::stdin().lock(), &mut &*input);
            })
            .context("start the terminal input thread")?;

        let (output, finished) = (Arc::clone(&master), Arc::clone(&done));
        let output = std::thread::Builder::new()
            .name("tty-out".into())
            .spawn(move || copy_output(&output, &finished))
            .context("start the terminal output thread")?;

        Ok(Relay {
            master,
            done,
            output: Some(output),
            _raw: raw,
        })
    }

    /// A handle for resizing the pty from the signal thread.
    pub fn master(&self) -> Arc<File> {
        Arc::clone(&self.master)
    }

    /// Drains what the container wrote before it exited, then restores the
    /// terminal (on drop).
    pub fn finish(mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(output) = self.output.take() {
            let _ = output.join();
        }
    }
}

/// Copies the master to stdout until the pty is closed (EIO once every
/// slave is gone) or, after the container exited, until it goes quiet:
/// leftover processes may hold the slave open indefinitely.
fn copy_output(master: &File, done: &AtomicBool) {
    let mut buf = [0u8; 8192];
    let mut stdout = io::stdout();
    loop {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) if done.load(Ordering::SeqCst) => return,
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
            Ok(_) => {}
        }
        match (&*master).read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if stdout
                    .write_all(&buf[..n])
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{sendmsg, ControlMessage};
    use std::os::unix::net::UnixStream;

    #[test]
    fn receives_a_descriptor_sent_before_accept() {
        let sock = ConsoleSocket::new().unwrap();
        let dir = sock.path().parent().unwrap().to_path_buf();
        // Like a runtime that sends and hangs up before berth accepts.
        {
            let (r, w) = nix::unistd::pipe().unwrap();
            let stream = UnixStream::connect(sock.path()).unwrap();
            let fds = [r.as_raw_fd()];
            let iov = [io::IoSlice::new(b"/dev/pts/7")];
            sendmsg::<()>(
                stream.as_raw_fd(),
                &iov,
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::empty(),
                None,
            )
            .unwrap();
            drop(r);
            let mut w = File::from(w);
            w.write_all(b"ping").unwrap();
        }
        let fd = sock.receive(Duration::from_secs(5)).unwrap();
        let mut got = String::new();
        File::from(fd).read_to_string(&mut got).unwrap();
        assert_eq!(got, "ping");
        drop(sock);
        assert!(!dir.exists(), "the socket directory is removed");
    }

    #[test]
    fn times_out_without_a_sender() {
        let sock = ConsoleSocket::new().unwrap();
        let err = sock.receive(Duration::from_millis(50)).unwrap_err();
        assert!(err.to_string().contains("no terminal received"), "{err}");
    }

    #[test]
    fn message_without_descriptor_is_an_error() {
        let sock = ConsoleSocket::new().unwrap();
        let mut stream = UnixStream::connect(sock.path()).unwrap();
        stream.write_all(b"no fd").unwrap();
        drop(stream);
        let err = sock.receive(Duration::from_secs(5)).unwrap_err();
        assert!(format!("{err:#}").contains("no file descriptor"), "{err:#}");
    }
}
