//! Debian packages the tests need, installed when missing: the command
//! each provides is looked for on PATH first, and apt runs with a
//! `policy-rc.d` in place so that no package starts its service.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Whether `cmd` is on PATH.
fn which(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs `(command, package)` pairs whose command is missing, with a
/// `policy-rc.d` that keeps the packages' services from starting.
pub fn ensure_packages(wanted: &[(&str, &str)]) {
    static APT: Mutex<()> = Mutex::new(());
    let _g = APT.lock().unwrap_or_else(|e| e.into_inner());
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(c, _)| !which(c))
        .map(|&(_, p)| p)
        .collect();
    if missing.is_empty() {
        return;
    }
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let made_policy = !policy.exists();
    if made_policy {
        fs::write(policy, "#!/bin/sh\nexit 101\n").expect("write policy-rc.d");
        let _ = Command::new("chmod").arg("755").arg(policy).status();
    }
    let install = |update: bool| {
        if update {
            let _ = Command::new("apt-get")
                .args(["update", "-qq"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status();
        }
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let ok = install(false) || install(true);
    if made_policy {
        let _ = fs::remove_file(policy);
    }
    assert!(ok, "apt-get install {missing:?} failed");
    for (c, p) in wanted {
        assert!(which(c), "{p} is installed but {c} is not on PATH");
    }
}
