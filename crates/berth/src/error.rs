//! The crate's error type: one variant family per module, each naming the
//! config field, path or value involved.

use std::path::PathBuf;

/// Errors returned by the Berth library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No container with this id exists under the runtime root.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// A container with this id already exists.
    #[error("container {0} already exists")]
    AlreadyExists(String),
    /// The id is empty, too long or contains characters other than
    /// `[A-Za-z0-9_+.-]`.
    #[error("invalid container id {0:?}: use letters, digits and _+.- (at most 1024 characters)")]
    InvalidId(String),
    /// The operation is not allowed in the container's current status.
    #[error("cannot {op} container {id}: container is {status}")]
    InvalidState {
        /// The container id.
        id: String,
        /// The operation attempted, e.g. `start`.
        op: &'static str,
        /// The status the container is in.
        status: String,
    },
    /// config.json is unreadable, malformed or invalid; `field` is the JSON
    /// path of the offending value (e.g. `linux.namespaces[2].type`).
    #[error("config.json: {field}: {msg}")]
    Spec {
        /// The JSON path of the offending field.
        field: String,
        /// What is wrong with it.
        msg: String,
    },
    /// An `exec` request is invalid (its process spec or options).
    #[error("exec in container {id}: {msg}")]
    Exec {
        /// The container id.
        id: String,
        /// What is wrong, naming the process field.
        msg: String,
    },
    /// The requested feature exists in the spec but Berth does not support it.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An I/O error on a named path.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A system call failed; `what` says which step and which config field.
    #[error("{what}: {errno}")]
    Sys {
        /// The step that failed, with the config field it came from.
        what: String,
        /// The kernel's answer.
        errno: nix::errno::Errno,
    },
    /// The container's init process failed during setup.
    #[error("container init: {what}: {errno}")]
    Init {
        /// The setup step that failed, naming the config field.
        what: String,
        /// The kernel's answer.
        errno: nix::errno::Errno,
    },
    /// A lifecycle hook failed.
    #[error("{kind} hook {path}: {msg}")]
    Hook {
        /// Which hook list (e.g. `createRuntime`).
        kind: &'static str,
        /// The hook's path.
        path: String,
        /// What went wrong (exit status, timeout, spawn failure).
        msg: String,
    },
    /// A cgroup operation failed.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    /// The seccomp profile cannot be compiled.
    #[error("config.json: {0}")]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// The container's state file is unreadable or corrupt.
    #[error("state of container {id}: {msg}")]
    State {
        /// The container id.
        id: String,
        /// What is wrong.
        msg: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn spec(field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Spec {
            field: field.into(),
            msg: msg.into(),
        }
    }

    pub(crate) fn sys(what: impl Into<String>, errno: nix::errno::Errno) -> Self {
        Error::Sys {
            what: what.into(),
            errno,
        }
    }
}
