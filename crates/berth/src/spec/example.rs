//! The starter `config.json` that `berth spec` writes (runtime-spec
//! config.md and config-linux.md): the same document as runc's, and its
//! rootless variant, which trades the network namespace and cgroup settings
//! for a user namespace mapping the caller to root.

use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
use nix::unistd::{getegid, geteuid};
use oci_spec::runtime::Spec;
use serde_json::{json, Value};

/// The runtime-spec version the example declares; runc 1.1 writes the same.
const OCI_VERSION: &str = "1.0.2-dev";

/// Returns the example spec `berth spec` writes (`berth spec --rootless`
/// when `rootless`): `sh` on a terminal in a read-only `rootfs`, with runc's
/// default capabilities, mounts, masked paths and namespaces.
///
/// Like runc, the cgroup namespace is added only when the host runs the
/// unified cgroup v2 hierarchy, and the rootless variant maps the caller's
/// effective uid and gid to root.
pub fn example(rootless: bool) -> Spec {
    let host = Host {
        euid: geteuid().as_raw(),
        egid: getegid().as_raw(),
        cgroup2: statfs("/sys/fs/cgroup")
            .is_ok_and(|fs| fs.filesystem_type() == CGROUP2_SUPER_MAGIC),
    };
    build(rootless, &host).expect("the example document matches the oci-spec types")
}

/// The facts about the calling host the example depends on.
struct Host {
    euid: u32,
    egid: u32,
    cgroup2: bool,
}

/// Builds the document as JSON and reads it into the typed spec: the
/// oci-spec builders start from their own (youki's) defaults, which would
/// add fields runc does not write.
fn build(rootless: bool, host: &Host) -> Result<Spec, serde_json::Error> {
    // runc sets no inheritable set: with it, the ambient capabilities would
    // also be kept across exec of binaries with file capabilities.
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);

    let mut namespaces = vec!["pid", "network", "ipc", "uts", "mount"];
    if host.cgroup2 {
        namespaces.push("cgroup");
    }
    if rootless {
        // An unprivileged user cannot configure a new network namespace.
        namespaces.retain(|ns| *ns != "network");
        namespaces.push("user");
    }
    let namespaces: Vec<Value> = namespaces.iter().map(|t| json!({ "type": t })).collect();

    let mut linux = json!({
        "namespaces": namespaces,
        "maskedPaths": [
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi"
        ],
        "readonlyPaths": [
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
        ]
    });
    if rootless {
        linux["uidMappings"] = json!([{ "containerID": 0, "hostID": host.euid, "size": 1 }]);
        linux["gidMappings"] = json!([{ "containerID": 0, "hostID": host.egid, "size": 1 }]);
    } else {
        // Deny every device; the runtime adds the default allow list.
        linux["resources"] = json!({ "devices": [{ "allow": false, "access": "rwm" }] });
    }

    let doc = json!({
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": true,
            "user": { "uid": 0, "gid": 0 },
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
                "ambient": caps
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": "berth",
        "mounts": mounts(rootless),
        "linux": linux
    });
    serde_json::from_value(doc)
}

fn mounts(rootless: bool) -> Vec<Value> {
    let mut mounts = vec![
        json!({ "destination": "/proc", "type": "proc", "source": "proc" }),
        json!({ "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] }),
        json!({ "destination": "/dev/pts", "type": "devpts", "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] }),
        json!({ "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] }),
        json!({ "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"] }),
        json!({ "destination": "/sys", "type": "sysfs", "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"] }),
        json!({ "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }),
    ];
    if rootless {
        for mount in &mut mounts {
            if mount["destination"] == "/sys" {
                // A fresh sysfs needs a network namespace owned by the user
                // namespace; bind the host's instead.
                *mount = json!({ "destination": "/sys", "type": "none", "source": "/sys",
                                 "options": ["rbind", "nosuid", "noexec", "nodev", "ro"] });
            } else if let Some(Value::Array(options)) = mount.get_mut("options") {
                // Only the caller's own ids are mapped, so fixed owners like
                // gid=5 (tty) do not exist inside the container.
                options.retain(|o| {
                    let o = o.as_str().unwrap_or_default();
                    !o.starts_with("uid=") && !o.starts_with("gid=")
                });
            }
        }
    }
    mounts
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxNamespaceType;

    const ROOT: Host = Host {
        euid: 0,
        egid: 0,
        cgroup2: false,
    };

    /// Serializes a spec with its capability sets (hash sets) sorted, so
    /// documents compare independently of hash order.
    fn to_json(spec: &Spec) -> Value {
        let mut v = serde_json::to_value(spec).unwrap();
        if let Some(Value::Object(caps)) = v.pointer_mut("/process/capabilities") {
            for set in caps.values_mut() {
                if let Value::Array(items) = set {
                    items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
                }
            }
        }
        v
    }

    fn runc_default() -> Value {
        let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        json!({
            "ociVersion": "1.0.2-dev",
            "process": {
                "terminal": true,
                "user": {"uid": 0, "gid": 0},
                "args": ["sh"],
                "env": [
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"
                ],
                "cwd": "/",
                "capabilities": {
                    "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs", "readonly": true},
            "hostname": "berth",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                 "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                 "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                 "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
            ],
            "linux": {
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
                "namespaces": [
                    {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                    {"type": "uts"}, {"type": "mount"}
                ],
                "maskedPaths": [
                    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                    "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
                ],
                "readonlyPaths": [
                    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
                ]
            }
        })
    }

    #[test]
    fn default_matches_runc() {
        assert_eq!(to_json(&build(false, &ROOT).unwrap()), runc_default());
    }

    #[test]
    fn rootless_matches_runc() {
        let host = Host {
            euid: 1000,
            egid: 100,
            cgroup2: false,
        };
        let mut want = runc_default();
        let linux = want["linux"].as_object_mut().unwrap();
        linux.remove("resources");
        linux.insert(
            "uidMappings".into(),
            json!([{"containerID": 0, "hostID": 1000, "size": 1}]),
        );
        linux.insert(
            "gidMappings".into(),
            json!([{"containerID": 0, "hostID": 100, "size": 1}]),
        );
        linux.insert(
            "namespaces".into(),
            json!([{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "user"}]),
        );
        want["mounts"][2]["options"] = json!([
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620"
        ]);
        want["mounts"][5] = json!({"destination": "/sys", "type": "none", "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
        assert_eq!(to_json(&build(true, &host).unwrap()), want);
    }

    #[test]
    fn cgroup2_host_adds_cgroup_namespace() {
        let host = Host {
            cgroup2: true,
            ..ROOT
        };
        let spec = build(false, &host).unwrap();
        let types: Vec<_> = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|ns| ns.typ())
            .collect();
        assert_eq!(
            types,
            [
                LinuxNamespaceType::Pid,
                LinuxNamespaceType::Network,
                LinuxNamespaceType::Ipc,
                LinuxNamespaceType::Uts,
                LinuxNamespaceType::Mount,
                LinuxNamespaceType::Cgroup,
            ]
        );
        let rootless = build(true, &host).unwrap();
        let types: Vec<_> = rootless
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|ns| ns.typ())
            .collect();
        assert_eq!(types.last(), Some(&LinuxNamespaceType::User));
        assert!(types.contains(&LinuxNamespaceType::Cgroup));
        assert!(!types.contains(&LinuxNamespaceType::Network));
    }

    #[test]
    fn example_round_trips_through_json() {
        for rootless in [false, true] {
            let spec = example(rootless);
            let text = serde_json::to_string(&spec).unwrap();
            let back: Spec = serde_json::from_str(&text).unwrap();
            assert_eq!(back, spec);
        }
    }
}
