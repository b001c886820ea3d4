//! Handing a seccomp user-notification descriptor to the profile's listener
//! (config-linux.md "Seccomp", listenerPath): one message on a unix stream
//! socket carrying the container process state as JSON and the descriptor
//! as SCM_RIGHTS, named `seccompFd` in the state's `fds`.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use serde::Serialize;

use super::Listener;
use crate::{Error, Result};

/// The `ContainerProcessState` of the runtime spec.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProcessState<'a> {
    oci_version: &'a str,
    fds: [&'a str; 1],
    pid: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a str>,
    state: serde_json::Value,
}

/// Sends `fd` with the state of the container (`state`, the JSON the hooks
/// get) and its process `pid` to the listener.
pub fn send(listener: &Listener, fd: BorrowedFd<'_>, pid: i32, state: &[u8]) -> Result<()> {
    let state: serde_json::Value = serde_json::from_slice(state).map_err(|e| Error::State {
        id: String::new(),
        msg: format!("container state for the seccomp listener: {e}"),
    })?;
    let msg = ProcessState {
        oci_version: crate::container::OCI_VERSION,
        fds: ["seccompFd"],
        pid,
        metadata: listener.metadata.as_deref(),
        state,
    };
    let body = serde_json::to_vec(&msg).expect("plain data serialises");
    let path = &listener.path;
    let sock = UnixStream::connect(path)
        .map_err(|e| Error::io("connect to the seccomp listener", path, e))?;
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(&body)];
    let sent = sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)
        .map_err(|e| Error::io("send to the seccomp listener", path, e.into()))?;
    if sent != body.len() {
        // The descriptor went with the first bytes; the rest follow.
        use std::io::Write;
        (&sock)
            .write_all(&body[sent..])
            .map_err(|e| Error::io("send to the seccomp listener", path, e))?;
    }
    Ok(())
}
