//! Berth: an OCI runtime as a library.
//!
//! The front door is [`Runtime`]: it owns a state root (by default
//! `/run/berth`) and creates, loads and lists [`Container`]s. A container is
//! created from an OCI bundle (a directory with `config.json` and a root
//! filesystem) and then driven through the lifecycle of the OCI runtime
//! spec: `create`, `start`, `kill`, `delete`, with `state` at any time.
//!
//! ```no_run
//! use berth::{CreateOptions, Runtime};
//! let rt = Runtime::new("/run/berth");
//! let c = rt.create("demo", &CreateOptions::new("/path/to/bundle"))?;
//! c.start()?;
//! c.kill(libc::SIGTERM, false)?;
//! # Ok::<(), berth::Error>(())
//! ```
//!
//! Creation follows one rule: compile, then execute. The config is parsed,
//! validated and compiled into a [`plan::Plan`] in the calling process; the
//! container's init only walks that plan with prepared arguments, so no
//! allocation or locking happens after `clone`, which keeps the library safe
//! to call from multi-threaded programs.

pub mod capabilities;
pub mod cgroups;
pub mod container;
pub mod error;
pub mod features;
pub mod hooks;
pub mod namespaces;
pub mod plan;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
mod sys;

pub use cgroups::{OomWatcher, Stats};
pub use container::{
    Container, CreateOptions, Event, EventKind, ExecOptions, ExecProcess, Runtime, State, Status,
};
pub use error::{Error, Result};
/// The `linux.resources` type [`Container::update`] takes.
pub use oci_spec::runtime::LinuxResources;
pub use process::signal::parse_signal;
