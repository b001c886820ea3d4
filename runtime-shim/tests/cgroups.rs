//! Control groups, first cut (runtime spec `linux.cgroupsPath`,
//! `linux.resources`): limits read back from the cgroup v1 files, the
//! container placed in its cgroups, and `delete` removing them.

mod common;

use std::fs;
use std::path::PathBuf;

use common::*;

fn cg_file(ctrl: &str, cgroups_path: &str, file: &str) -> PathBuf {
    PathBuf::from("/sys/fs/cgroup")
        .join(ctrl)
        .join(cgroups_path.trim_start_matches('/'))
        .join(file)
}

#[track_caller]
fn read(ctrl: &str, cgroups_path: &str, file: &str) -> String {
    let p = cg_file(ctrl, cgroups_path, file);
    fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

#[test]
fn resource_limits_are_written_and_removed_on_delete() {
    let t = berth();
    let mut b = t.bundle(&["sleep", "1000"]);
    b.set(
        "/linux/resources",
        json!({
            "devices": [{"allow": false, "access": "rwm"}],
            "memory": {"limit": 67108864},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
            "pids": {"limit": 77},
        }),
    );
    let cg = b.cgroups_path().to_string();
    let id = t.id("limits");
    t.create(&id, &b, &[]).ok();
    assert_eq!(read("memory", &cg, "memory.limit_in_bytes"), "67108864");
    assert_eq!(read("cpu", &cg, "cpu.shares"), "512");
    assert_eq!(read("cpu", &cg, "cpu.cfs_quota_us"), "50000");
    assert_eq!(read("cpu", &cg, "cpu.cfs_period_us"), "100000");
    assert_eq!(read("cpuset", &cg, "cpuset.cpus"), "0");
    assert_eq!(read("cpuset", &cg, "cpuset.mems"), "0");
    assert_eq!(read("pids", &cg, "pids.max"), "77");

    // The init is in the container's cgroup in every controller.
    let pid = t.pid(&id);
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for ctrl in ["memory", "cpu", "cpuset", "pids", "devices", "freezer"] {
        let line = own
            .lines()
            .find(|l| l.split(':').nth(1).unwrap().split(',').any(|c| c == ctrl))
            .unwrap_or_else(|| panic!("no {ctrl} line in\n{own}"));
        assert_eq!(line.rsplit(':').next().unwrap(), cg, "{ctrl}: {line}");
    }
    let procs = read("pids", &cg, "cgroup.procs");
    assert_eq!(procs, pid.to_string());

    t.start(&id).ok();
    t.delete(&id, true).ok();
    for ctrl in ["memory", "cpu", "cpuset", "pids", "devices", "freezer"] {
        let d = cg_file(ctrl, &cg, "");
        assert!(!d.exists(), "{} survived delete", d.display());
    }
    t.leak_check(&id, &b);
}

#[test]
fn pids_limit_is_enforced() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.set("/linux/resources/pids", json!({"limit": 4}));
    // The outer sh, the inner sh and two sleeps fill the limit, so the
    // inner sh's third fork fails (and a failed fork ends an ash script).
    let o = run_sh(
        &t,
        &mut b,
        "sh -c 'for i in 1 2 3; do sleep 100 & done; wait' 2>&1; echo rc=$?",
    );
    assert_eq!(
        o.lines(),
        ["sh: can't fork: Resource temporarily unavailable", "rc=2"]
    );
}

#[test]
fn cgroup_filesystem_mount_shows_the_containers_cgroups() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.mount(
        "cgroup",
        "cgroup",
        "/sys/fs/cgroup",
        &["nosuid", "noexec", "nodev", "relatime", "ro"],
    )
    .set("/linux/resources/pids", json!({"limit": 77}));
    let o = run_sh(
        &t,
        &mut b,
        "ls /sys/fs/cgroup; cat /sys/fs/cgroup/pids/pids.max; \
         (echo 5 > /sys/fs/cgroup/pids/pids.max) 2>&1; true",
    );
    let lines = o.lines();
    for ctrl in [
        "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids",
    ] {
        assert!(
            lines.contains(&ctrl),
            "{ctrl} missing from /sys/fs/cgroup:\n{o}"
        );
    }
    let n = lines.len();
    assert_eq!(lines[n - 2], "77");
    assert!(lines[n - 1].contains("Read-only file system"), "{o}");
}
