//! The OCI bundle (runtime spec "Filesystem Bundle") every runtime runs:
//! a root filesystem holding only a static busybox, and a `config.json`
//! shaped like `runc spec`'s default with `/bin/true` as the process.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

const BUSYBOX_CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// A bundle directory whose config is rewritten before each run, since
/// every run gets its own `linux.cgroupsPath`.
pub struct Bundle {
    dir: PathBuf,
    config: Value,
}

impl Bundle {
    /// Lays out `dir/rootfs` with busybox and writes a first config.
    pub fn create(dir: &Path) -> Result<Bundle> {
        let busybox = find_static_busybox()?;
        let rootfs = dir.join("rootfs");
        for sub in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
            let p = rootfs.join(sub);
            fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        }
        let target = rootfs.join("bin/busybox");
        fs::copy(busybox, &target)
            .with_context(|| format!("copying {} to {}", busybox.display(), target.display()))?;
        for applet in ["true", "sh"] {
            let link = rootfs.join("bin").join(applet);
            symlink("busybox", &link).with_context(|| format!("linking {}", link.display()))?;
        }
        let bundle = Bundle {
            dir: dir.to_path_buf(),
            config: base_config(),
        };
        bundle.write()?;
        Ok(bundle)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Points `linux.cgroupsPath` at `cgroup` and rewrites config.json.
    pub fn set_cgroups_path(&mut self, cgroup: &str) -> Result<()> {
        self.config["linux"]["cgroupsPath"] = json!(cgroup);
        self.write()
    }

    fn write(&self) -> Result<()> {
        let path = self.dir.join("config.json");
        let text = serde_json::to_vec_pretty(&self.config).context("serialising config.json")?;
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }
}

/// The busybox copied into the root filesystem must be static: the
/// rootfs holds no dynamic loader or libraries.
fn find_static_busybox() -> Result<&'static Path> {
    for candidate in BUSYBOX_CANDIDATES {
        let path = Path::new(candidate);
        if let Ok(bytes) = fs::read(path) {
            if is_static_elf(&bytes) {
                return Ok(path);
            }
        }
    }
    bail!(
        "no static busybox at {}: apt-get install busybox-static",
        BUSYBOX_CANDIDATES.join(" or ")
    )
}

/// True for a 64-bit little-endian ELF without a `PT_INTERP` program
/// header, i.e. one the kernel runs without a dynamic loader.
fn is_static_elf(b: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[32..40].try_into().unwrap_or_default()) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let off = phoff + i * phentsize;
        match b.get(off..off + 4) {
            Some(t) => u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != PT_INTERP,
            None => false,
        }
    })
}

/// `runc spec`'s defaults (namespaces, mounts, capabilities, masked and
/// read-only paths), so each runtime does its usual amount of setup, but
/// with no terminal: the benchmark has none to give.
fn base_config() -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/true"],
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
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "bench",
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
            "cgroupsPath": "/berth-bench/setup",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_elf_and_truncated_headers() {
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        let mut header = vec![0u8; 64];
        header[..6].copy_from_slice(b"\x7fELF\x02\x01");
        // phnum 1 pointing past the end: unreadable, so not static.
        header[56] = 1;
        header[32] = 200;
        assert!(!is_static_elf(&header));
    }

    #[test]
    fn config_runs_true_without_terminal() {
        let c = base_config();
        assert_eq!(c["process"]["args"], json!(["/bin/true"]));
        assert_eq!(c["process"]["terminal"], json!(false));
    }
}
