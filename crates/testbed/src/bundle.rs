//! OCI bundles (runtime spec "Filesystem Bundle") on a busybox root
//! filesystem: the rootfs layout, a base `config.json` close to what
//! `runc spec` writes, and small editors for the JSON tests mutate.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::busybox::{applets, ensure_busybox};

/// The environment variable that marks every process a test starts, so
/// leak checks can find stray ones in `/proc/<pid>/environ`.
pub const MARK_VAR: &str = "BERTH_TEST_MARK";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
test:x:1000:1000:test:/home/test:/bin/sh\n";

const GROUP: &str = "root:x:0:\ntty:x:5:\nnobody:x:65534:\ntest:x:1000:\n";

/// An OCI bundle: a directory holding `rootfs/` and `config.json`.
///
/// The config lives in memory as JSON until [`Bundle::write`] (the
/// runner writes it before every `create`/`run`).
#[derive(Debug)]
pub struct Bundle {
    dir: PathBuf,
    mark: String,
    cgroups_path: String,
    config: Value,
    raw: Option<Vec<u8>>,
}

impl Bundle {
    /// Builds a bundle in `dir` (created if missing) whose process runs
    /// `args`, carries `MARK_VAR=mark` in its environment and lives in
    /// cgroup `cgroups_path`.
    pub fn create(dir: &Path, args: &[&str], mark: &str, cgroups_path: &str) -> io::Result<Bundle> {
        fs::create_dir_all(dir)?;
        build_rootfs(&dir.join("rootfs"))?;
        let bundle = Bundle {
            dir: dir.to_path_buf(),
            mark: mark.to_string(),
            cgroups_path: cgroups_path.to_string(),
            config: base_config(args, mark, cgroups_path),
            raw: None,
        };
        bundle.write()?;
        Ok(bundle)
    }

    /// The bundle directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The default root filesystem directory, `<bundle>/rootfs`.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// `<bundle>/config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// The value of `MARK_VAR` in the container's environment.
    pub fn mark(&self) -> &str {
        &self.mark
    }

    /// The `linux.cgroupsPath` the bundle was built with.
    pub fn cgroups_path(&self) -> &str {
        &self.cgroups_path
    }

    /// The config as JSON.
    pub fn config(&self) -> &Value {
        &self.config
    }

    /// The config as JSON, to edit in place.
    pub fn config_mut(&mut self) -> &mut Value {
        self.raw = None;
        &mut self.config
    }

    /// The config as a typed OCI spec. Panics when the JSON no longer
    /// parses as one (the test made it invalid on purpose).
    pub fn spec(&self) -> oci_spec::runtime::Spec {
        serde_json::from_value(self.config.clone()).expect("bundle config is a valid oci Spec")
    }

    /// Replaces the config with a typed OCI spec.
    pub fn set_spec(&mut self, spec: &oci_spec::runtime::Spec) -> &mut Self {
        *self.config_mut() = serde_json::to_value(spec).expect("oci Spec serialises");
        self
    }

    /// Sets the value at a JSON pointer (`/process/args`), creating the
    /// objects on the way; an array index one past the end appends.
    pub fn set(&mut self, pointer: &str, value: Value) -> &mut Self {
        *pointer_mut(self.config_mut(), pointer) = value;
        self
    }

    /// Appends to the array at a JSON pointer, creating it when missing.
    pub fn push(&mut self, pointer: &str, value: Value) -> &mut Self {
        let slot = pointer_mut(self.config_mut(), pointer);
        if !slot.is_array() {
            *slot = Value::Array(Vec::new());
        }
        slot.as_array_mut().expect("array").push(value);
        self
    }

    /// Removes the value at a JSON pointer; missing paths are ignored.
    pub fn remove(&mut self, pointer: &str) -> &mut Self {
        let (parent, last) = match pointer.rfind('/') {
            Some(i) => (&pointer[..i], unescape(&pointer[i + 1..])),
            None => return self,
        };
        if let Some(p) = self.config_mut().pointer_mut(parent) {
            match p {
                Value::Object(m) => {
                    m.remove(&last);
                }
                Value::Array(a) => {
                    if let Ok(i) = last.parse::<usize>() {
                        if i < a.len() {
                            a.remove(i);
                        }
                    }
                }
                _ => {}
            }
        }
        self
    }

    /// Sets `process.args`.
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.set("/process/args", json!(args))
    }

    /// Adds `NAME=value` to `process.env`.
    pub fn env(&mut self, var: &str) -> &mut Self {
        self.push("/process/env", json!(var))
    }

    /// Appends a mount.
    pub fn mount(&mut self, ty: &str, source: &str, dest: &str, options: &[&str]) -> &mut Self {
        self.push(
            "/mounts",
            json!({"destination": dest, "type": ty, "source": source, "options": options}),
        )
    }

    /// Appends a bind mount of a host path (`options` besides `rbind`).
    pub fn bind(&mut self, host: &Path, dest: &str, options: &[&str]) -> &mut Self {
        let mut opts = vec!["rbind"];
        opts.extend_from_slice(options);
        let host = host.to_str().expect("utf-8 host path").to_string();
        self.mount("bind", &host, dest, &opts)
    }

    /// Adds a namespace (replacing one of the same type), joining `path`
    /// when given.
    pub fn namespace(&mut self, ty: &str, path: Option<&str>) -> &mut Self {
        self.remove_namespace(ty);
        let ns = match path {
            Some(p) => json!({"type": ty, "path": p}),
            None => json!({"type": ty}),
        };
        self.push("/linux/namespaces", ns)
    }

    /// Removes the namespace of type `ty`.
    pub fn remove_namespace(&mut self, ty: &str) -> &mut Self {
        if let Some(Value::Array(list)) = self.config_mut().pointer_mut("/linux/namespaces") {
            list.retain(|n| n.get("type").and_then(Value::as_str) != Some(ty));
        }
        self
    }

    /// Appends a hook to `hooks.<kind>`: `path` run with `args` (args[0]
    /// included), `env`, and an optional timeout in seconds. The mark is
    /// added to the hook's environment so stray hook processes are found.
    pub fn hook(
        &mut self,
        kind: &str,
        path: &str,
        args: &[&str],
        env: &[&str],
        timeout: Option<u32>,
    ) -> &mut Self {
        let mut env: Vec<String> = env.iter().map(|s| s.to_string()).collect();
        env.push(format!("{MARK_VAR}={}", self.mark));
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        }
        let mut hook = json!({"path": path, "args": args, "env": env});
        if let Some(t) = timeout {
            hook["timeout"] = json!(t);
        }
        self.push(&format!("/hooks/{kind}"), hook)
    }

    /// Makes [`Bundle::write`] write these bytes instead of the JSON (for
    /// broken configs); any later edit of the JSON drops them.
    pub fn set_raw_config(&mut self, bytes: impl Into<Vec<u8>>) -> &mut Self {
        self.raw = Some(bytes.into());
        self
    }

    /// Writes `config.json`.
    pub fn write(&self) -> io::Result<()> {
        let bytes = match &self.raw {
            Some(raw) => raw.clone(),
            None => serde_json::to_vec_pretty(&self.config).map_err(io::Error::other)?,
        };
        fs::write(self.config_path(), bytes)
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn pointer_mut<'a>(mut v: &'a mut Value, pointer: &str) -> &'a mut Value {
    if pointer.is_empty() {
        return v;
    }
    assert!(
        pointer.starts_with('/'),
        "JSON pointer {pointer:?} must start with /"
    );
    for token in pointer[1..].split('/').map(unescape) {
        if v.is_null() {
            *v = if token.parse::<usize>().is_ok() {
                Value::Array(Vec::new())
            } else {
                Value::Object(Map::new())
            };
        }
        v = match v {
            Value::Object(m) => m.entry(token).or_insert(Value::Null),
            Value::Array(a) => {
                let i: usize = token
                    .parse()
                    .unwrap_or_else(|_| panic!("{pointer}: {token:?} is not an array index"));
                assert!(
                    i <= a.len(),
                    "{pointer}: index {i} past the end ({})",
                    a.len()
                );
                if i == a.len() {
                    a.push(Value::Null);
                }
                &mut a[i]
            }
            other => panic!("{pointer}: cannot descend into {other}"),
        };
    }
    v
}

/// Lays out a busybox root filesystem at `rootfs`: `/bin/busybox` plus a
/// symlink per applet, `/etc/passwd` and `/etc/group` (root, nobody, test
/// 1000), and empty `/proc /sys /dev /tmp /root /home/test`.
pub fn build_rootfs(rootfs: &Path) -> io::Result<()> {
    let bin = rootfs.join("bin");
    fs::create_dir_all(&bin)?;
    // A copy, not a hard link: tests may change the rootfs, and the host's
    // busybox must stay as it is.
    fs::copy(ensure_busybox(), bin.join("busybox"))?;
    fs::set_permissions(bin.join("busybox"), fs::Permissions::from_mode(0o755))?;
    for applet in applets() {
        symlink("busybox", bin.join(applet))?;
    }
    for d in ["proc", "sys", "dev", "etc", "root", "home/test"] {
        fs::create_dir_all(rootfs.join(d))?;
    }
    let tmp = rootfs.join("tmp");
    fs::create_dir_all(&tmp)?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777))?;
    fs::write(rootfs.join("etc/passwd"), PASSWD)?;
    fs::write(rootfs.join("etc/group"), GROUP)?;
    Ok(())
}

/// The base config: `runc spec` with `terminal: false`, the given args,
/// no seccomp, a writable root (tests that need a read-only one say so),
/// no ambient capabilities (without inheritable ones the kernel refuses
/// to raise them) and no `/sys/fs/cgroup` mount (tested on its own), plus
/// the test's mark in the environment and its own `linux.cgroupsPath`.
pub fn base_config(args: &[&str], mark: &str, cgroups_path: &str) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
                format!("{MARK_VAR}={mark}"),
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": false},
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
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"},
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_edits_create_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Bundle::create(dir.path(), &["true"], "m", "/berth-test/x").unwrap();
        b.set("/linux/sysctl/kernel.shm_rmid_forced", json!("1"));
        b.set("/process/args/1", json!("extra"));
        b.namespace("user", None).remove_namespace("network");
        assert_eq!(b.config()["linux"]["sysctl"]["kernel.shm_rmid_forced"], "1");
        assert_eq!(b.config()["process"]["args"], json!(["true", "extra"]));
        let types: Vec<&str> = b.config()["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["pid", "ipc", "uts", "mount", "user"]);
        b.remove("/process/rlimits/0");
        assert_eq!(b.config()["process"]["rlimits"], json!([]));
        let spec = b.spec();
        assert_eq!(spec.hostname().as_deref(), Some("berth"));
        assert!(b.rootfs().join("bin/sh").is_symlink());
        assert!(is_static(&b.rootfs().join("bin/busybox")));
    }

    fn is_static(p: &Path) -> bool {
        crate::busybox::is_static_elf(p).unwrap()
    }
}
