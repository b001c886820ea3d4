//! A busybox image as a `docker save` archive (manifest.json, the config
//! and one layer tar), which `ctr images import`, `podman load` and
//! `docker load` all read.

use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha256};

/// Writes `<dir>/busybox.tar`, a one-layer image tagged `reference`
/// (`localhost/busybox:berth` style) whose root file system is the
/// tests' busybox rootfs, with `sh` as its command.
pub fn busybox_archive(dir: &Path, reference: &str) -> PathBuf {
    let tmp = tempfile::tempdir_in(dir).expect("tempdir");
    let rootfs = tmp.path().join("rootfs");
    crate::build_rootfs(&rootfs).expect("build busybox rootfs");
    let layer = layer_tar(&rootfs);
    let diff_id = hex(&Sha256::digest(&layer));
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "busybox rootfs"}],
    });
    let config = serde_json::to_vec(&config).expect("config json");
    let config_name = format!("{}.json", hex(&Sha256::digest(&config)));
    let layer_name = format!("{diff_id}/layer.tar");
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name,
        "RepoTags": [reference],
        "Layers": [layer_name],
    }]))
    .expect("manifest json");
    let out = dir.join("busybox.tar");
    let f = std::fs::File::create(&out).expect("create archive");
    let mut b = tar::Builder::new(f);
    for (name, data) in [
        (config_name.as_str(), &config[..]),
        (layer_name.as_str(), &layer[..]),
        ("manifest.json", &manifest[..]),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        b.append_data(&mut h, name, data).expect("append");
    }
    b.finish().expect("finish archive");
    out
}

/// The root file system as an uncompressed tar, owned by root.
fn layer_tar(rootfs: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    b.follow_symlinks(false);
    b.append_dir_all(".", rootfs).expect("tar rootfs");
    b.into_inner().expect("finish layer")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
