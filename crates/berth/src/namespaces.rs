//! Linux namespaces (runtime-spec "Linux Container Configuration",
//! namespaces, user namespace mappings, time offsets): which to create,
//! which to join by path, and the id maps and time offsets to write.

use std::ffi::CString;
use std::fmt::Write as _;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType};

use crate::error::{Error, Result};

/// The order in which existing namespaces are joined: the user namespace
/// first (it grants the capabilities to join the others), the mount
/// namespace last (after it, paths resolve in the container).
pub(crate) const JOIN_ORDER: [LinuxNamespaceType; 8] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Mount,
];

/// The clone(2) flag of a namespace type.
pub fn clone_flag(t: LinuxNamespaceType) -> libc::c_int {
    t as libc::c_int
}

/// A namespace to join: an open descriptor of its `path`.
#[derive(Debug)]
pub struct Join {
    /// Which namespace.
    pub typ: LinuxNamespaceType,
    /// The descriptor from `linux.namespaces[].path`, opened by the parent.
    pub fd: OwnedFd,
    /// Index into the plan's labels describing this join.
    pub label: u32,
}

/// The namespace part of a plan.
#[derive(Debug, Default)]
pub struct NamespacePlan {
    /// Namespaces joined by path, in join order.
    pub join: Vec<Join>,
    /// Whether a new user namespace is created.
    pub new_user: bool,
    /// clone flags of the other namespaces created (not user).
    pub new_flags: libc::c_int,
    /// Contents for /proc/PID/uid_map and gid_map.
    pub uid_map: String,
    /// See `uid_map`.
    pub gid_map: String,
    /// Contents for /proc/self/timens_offsets, when a time namespace is new.
    pub time_offsets: Option<CString>,
}

impl NamespacePlan {
    /// Whether namespace `t` is new (created, not joined).
    pub fn creates(&self, t: LinuxNamespaceType) -> bool {
        if t == LinuxNamespaceType::User {
            self.new_user
        } else {
            self.new_flags & clone_flag(t) != 0
        }
    }

    /// Whether the container has a namespace of type `t` at all.
    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.creates(t) || self.join.iter().any(|j| j.typ == t)
    }

    /// The descriptor of a joined namespace, if `t` is joined.
    pub fn joined_fd(&self, t: LinuxNamespaceType) -> Option<RawFd> {
        self.join
            .iter()
            .find(|j| j.typ == t)
            .map(|j| j.fd.as_raw_fd())
    }
}

/// Builds the namespace plan from `linux`. `label` registers a description
/// of a step for error reports and returns its index.
pub fn plan(linux: &Linux, label: &mut dyn FnMut(String) -> u32) -> Result<NamespacePlan> {
    let mut p = NamespacePlan::default();
    let namespaces = linux.namespaces().as_deref().unwrap_or_default();
    for t in JOIN_ORDER {
        let Some((i, ns)) = namespaces.iter().enumerate().find(|(_, n)| n.typ() == t) else {
            continue;
        };
        match ns.path() {
            Some(path) => {
                let fd = std::fs::File::open(path).map_err(|e| {
                    Error::spec(
                        format!("linux.namespaces[{i}].path"),
                        format!("cannot open {}: {e}", path.display()),
                    )
                })?;
                let label = label(format!(
                    "join {t} namespace {} (linux.namespaces[{i}].path)",
                    path.display()
                ));
                p.join.push(Join {
                    typ: t,
                    fd: fd.into(),
                    label,
                });
            }
            None if t == LinuxNamespaceType::User => p.new_user = true,
            None => p.new_flags |= clone_flag(t),
        }
    }
    if p.new_user {
        p.uid_map = id_map(linux.uid_mappings().as_deref().unwrap_or_default());
        p.gid_map = id_map(linux.gid_mappings().as_deref().unwrap_or_default());
    }
    if p.creates(LinuxNamespaceType::Time) {
        let mut text = String::new();
        if let Some(offsets) = linux.time_offsets() {
            let mut clocks: Vec<_> = offsets.iter().collect();
            clocks.sort_by_key(|(k, _)| k.as_str());
            for (clock, off) in clocks {
                if clock != "monotonic" && clock != "boottime" {
                    return Err(Error::spec(
                        format!("linux.timeOffsets.{clock}"),
                        "only monotonic and boottime clocks can be offset",
                    ));
                }
                let nanos = off.nanosecs().unwrap_or(0);
                if nanos >= 1_000_000_000 {
                    return Err(Error::spec(
                        format!("linux.timeOffsets.{clock}.nanosecs"),
                        format!("{nanos} is not below one second"),
                    ));
                }
                let _ = writeln!(text, "{clock} {} {nanos}", off.secs().unwrap_or(0));
            }
        }
        if !text.is_empty() {
            p.time_offsets = Some(CString::new(text).expect("no NUL in formatted numbers"));
        }
    }
    Ok(p)
}

fn id_map(maps: &[LinuxIdMapping]) -> String {
    let mut s = String::new();
    for m in maps {
        let _ = writeln!(s, "{} {} {}", m.container_id(), m.host_id(), m.size());
    }
    s
}

/// Writes the uid and gid maps of `pid` (called by the parent once the child
/// has unshared its user namespace).
pub fn write_id_maps(pid: i32, plan: &NamespacePlan) -> Result<()> {
    for (file, map, field) in [
        ("uid_map", &plan.uid_map, "linux.uidMappings"),
        ("gid_map", &plan.gid_map, "linux.gidMappings"),
    ] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, map.as_bytes()).map_err(|e| {
            Error::spec(
                field,
                format!(
                    "the kernel refused the mapping {:?} ({path}): {e}",
                    map.trim_end()
                ),
            )
        })?;
    }
    Ok(())
}

/// Opens the namespaces of a running process, for joining them (exec,
/// hooks run in the container's namespaces).
pub fn open_of_pid(
    pid: i32,
    types: &[LinuxNamespaceType],
) -> Result<Vec<(LinuxNamespaceType, OwnedFd)>> {
    let mut out = Vec::new();
    for &t in JOIN_ORDER.iter().filter(|t| types.contains(t)) {
        let path = format!("/proc/{pid}/ns/{t}");
        let f = std::fs::File::open(&path).map_err(|e| Error::io("open", &path, e))?;
        out.push((t, f.into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_new_and_joined_namespaces() {
        let linux: Linux = serde_json::from_value(serde_json::json!({
            "namespaces": [{"type": "pid"}, {"type": "network", "path": "/proc/self/ns/net"},
                           {"type": "mount"}, {"type": "user"}, {"type": "time"}],
            "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 10}],
            "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 1}],
            "timeOffsets": {"monotonic": {"secs": 86400, "nanosecs": 5}}
        }))
        .unwrap();
        let mut labels = Vec::new();
        let p = plan(&linux, &mut |s| {
            labels.push(s);
            labels.len() as u32 - 1
        })
        .unwrap();
        assert!(p.new_user);
        assert_eq!(
            p.new_flags,
            libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWTIME
        );
        assert_eq!(p.join.len(), 1);
        assert_eq!(p.join[0].typ, LinuxNamespaceType::Network);
        assert!(labels[0].contains("linux.namespaces[1].path"));
        assert_eq!(p.uid_map, "0 1000 10\n");
        assert_eq!(p.gid_map, "0 2000 1\n");
        assert_eq!(
            p.time_offsets.unwrap().to_str().unwrap(),
            "monotonic 86400 5\n"
        );
    }

    #[test]
    fn missing_namespace_path_names_field() {
        let linux: Linux = serde_json::from_value(serde_json::json!({
            "namespaces": [{"type": "network", "path": "/nonexistent/ns"}]
        }))
        .unwrap();
        let e = plan(&linux, &mut |_| 0).unwrap_err().to_string();
        assert!(e.contains("linux.namespaces[0].path"), "{e}");
    }
}
