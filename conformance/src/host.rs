//! What the driver knows of the host: its own namespaces (a container's
//! new namespace must differ), which cgroup hierarchies it has, and the
//! cgroup parent every case's container goes under.

use std::collections::BTreeMap;
use std::path::Path;

/// The cgroup parent of every case's container.
pub const CGROUP_PARENT: &str = "berth-conformance";

/// Facts about the host.
#[derive(Clone, Debug, Default)]
pub struct Host {
    /// `/proc/self/ns/<type>` link text of the driver, by type.
    pub ns: BTreeMap<String, String>,
    /// Whether the cgroup2 mount was hidden for this run.
    pub unified_hidden: bool,
    /// Whether `/sys/fs/cgroup/memory` is a v1 hierarchy.
    pub cgroup_v1: bool,
}

impl Host {
    /// Reads the driver's own view.
    pub fn detect(unified_hidden: bool) -> Host {
        let mut ns = BTreeMap::new();
        for t in ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"] {
            if let Ok(l) = std::fs::read_link(format!("/proc/self/ns/{t}")) {
                ns.insert(t.to_string(), l.display().to_string());
            }
        }
        Host {
            ns,
            unified_hidden,
            cgroup_v1: Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists(),
        }
    }

    /// The host's link for namespace type `t` (empty when unknown).
    pub fn ns(&self, t: &str) -> String {
        self.ns.get(t).cloned().unwrap_or_default()
    }
}
