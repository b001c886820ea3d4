//! Compiling a validated config into a [`Plan`]: every path resolved, every
//! C string built, every capability mask computed in the calling process,
//! so that the container's init only walks prepared data.

use std::path::PathBuf;

use nix::errno::Errno;
use oci_spec::runtime::Spec;

use crate::error::Result;
use crate::hooks::ChildHook;
use crate::namespaces::{Join, NamespacePlan};
use crate::process::ProcessPlan;
use crate::rootfs::RootfsPlan;

/// Descriptions of the plan's steps; the init reports failures by index.
#[derive(Debug, Default)]
pub struct Labels(Vec<String>);

impl Labels {
    /// Registers a step description, returning its index.
    pub fn add(&mut self, s: impl Into<String>) -> u32 {
        self.0.push(s.into());
        self.0.len() as u32 - 1
    }

    /// All descriptions, in index order.
    pub fn to_vec(&self) -> Vec<String> {
        self.0.clone()
    }

    /// The description of step `i`.
    pub fn get(&self, i: u32) -> &str {
        self.0
            .get(i as usize)
            .map(String::as_str)
            .unwrap_or("container setup")
    }
}

/// A failed step in the init: which step (label index) and the errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fail {
    /// Index into [`Labels`].
    pub label: u32,
    /// The kernel's answer.
    pub errno: Errno,
}

/// Attaches a step label to a system call's error.
pub trait At<T> {
    /// Maps `Err(errno)` to `Err(Fail { label, errno })`.
    fn at(self, label: u32) -> Result<T, Fail>;
}

impl<T> At<T> for Result<T, Errno> {
    fn at(self, label: u32) -> Result<T, Fail> {
        self.map_err(|errno| Fail { label, errno })
    }
}

/// Everything needed to create one container, prepared before clone.
#[derive(Debug)]
pub struct Plan {
    /// The container id.
    pub id: String,
    /// The bundle directory (absolute).
    pub bundle: PathBuf,
    /// The validated config.
    pub spec: Spec,
    /// Step descriptions for error reports.
    pub labels: Labels,
    /// Namespaces to create and join.
    pub namespaces: NamespacePlan,
    /// Root file system setup.
    pub rootfs: RootfsPlan,
    /// The user process.
    pub process: ProcessPlan,
    /// startContainer hooks, run by the init after `start`.
    pub start_hooks: Vec<ChildHook>,
    /// Whether the runtime must be asked to run hooks before pivot_root.
    pub has_create_hooks: bool,
    /// Labels of the namespace steps.
    pub ns_labels: NsLabels,
    /// Room for the state JSON sent to startContainer hooks (empty when
    /// there are none).
    pub hook_state_capacity: usize,
}

impl Plan {
    /// The step descriptions, for keeping in the state.
    pub fn labels_vec(&self) -> Vec<String> {
        self.labels.to_vec()
    }
}

/// Labels of the namespace steps done by the first setup process.
#[derive(Debug, Default)]
pub struct NsLabels {
    /// unshare(CLONE_NEWUSER).
    pub user: u32,
    /// becoming root in the new user namespace.
    pub root: u32,
    /// unshare of the other namespaces.
    pub unshare: u32,
    /// /proc/self/timens_offsets.
    pub offsets: u32,
    /// forking the init.
    pub fork: u32,
}

/// Everything needed to run one more process in a container (`exec`),
/// prepared before clone.
#[derive(Debug)]
pub struct ExecPlan {
    /// Step descriptions for error reports.
    pub labels: Labels,
    /// The container's namespaces, opened through its init, in join order.
    pub join: Vec<Join>,
    /// The process.
    pub process: ProcessPlan,
    /// Label of forking the process into the joined pid namespace.
    pub fork: u32,
}
