//! The suite against the `berth` binary built with this workspace, with
//! runc and crun beside it when they are installed (for the table only).
//! Every case must pass for berth.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `berth` binary next to the driver in the target directory: a
/// workspace test run builds it (runtime-shim's tests need it).
fn berth() -> PathBuf {
    let driver = Path::new(env!("CARGO_BIN_EXE_berth-conformance"));
    let b = driver.with_file_name("berth");
    assert!(
        b.is_file(),
        "{} is missing: build it first (cargo build -p berth-shim)",
        b.display()
    );
    b
}

#[test]
fn every_case_passes_for_berth() {
    testbed::require_root();
    let mut args = vec!["--runtime".to_string(), berth().display().to_string()];
    for peer in ["/usr/sbin/runc", "/usr/bin/crun"] {
        if Path::new(peer).is_file() {
            args.push("--runtime".into());
            args.push(peer.into());
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_berth-conformance"))
        .args(&args)
        .output()
        .expect("run berth-conformance");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.ends_with(" 0 failed"),
        "berth failed cases: {last}\n{stderr}"
    );
    assert!(out.status.success(), "exit status {}", out.status);
    let passed: usize = last
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(passed >= 150, "only {passed} cases ran");
    // Nothing left behind: no cgroup parent, no containers.
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p = h.path().join(berth_conformance::host::CGROUP_PARENT);
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

#[test]
fn list_names_every_case_with_its_section() {
    let out = Command::new(env!("CARGO_BIN_EXE_berth-conformance"))
        .arg("--list")
        .output()
        .expect("run berth-conformance --list");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let n = text.lines().count();
    assert_eq!(n, berth_conformance::cases::all().len());
    for l in text.lines() {
        let (name, section) = l.split_once('\t').expect("name<TAB>section");
        assert!(!name.is_empty() && section.contains(".md"), "{l}");
    }
}
