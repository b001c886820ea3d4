//! Control groups, first cut (runtime spec `linux.cgroupsPath`,
//! `linux.resources`): limits read back from the cgroup v1 files, the
//! container placed in its cgroups, and `delete` removing them.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

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

/// A real disk's `MAJ:MIN` (one with a `device` link: not a loop, zram or
/// ram device), e.g. the root disk.
fn real_disk() -> Option<(i64, i64)> {
    let mut disks: Vec<PathBuf> = fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("device").exists())
        .collect();
    disks.sort();
    let dev = fs::read_to_string(disks.first()?.join("dev")).ok()?;
    let (maj, min) = dev.trim().split_once(':')?;
    Some((maj.parse().ok()?, min.parse().ok()?))
}

#[test]
fn every_v1_resource_the_host_has_files_for_is_written() {
    let t = berth();
    let Some((maj, min)) = real_disk() else {
        eprintln!("skipped: no real disk in /sys/block");
        return;
    };
    let mut b = t.bundle(&["sleep", "1000"]);
    let mem_root = Path::new("/sys/fs/cgroup/memory");
    let mut memory = json!({
        "limit": 134217728,
        "reservation": 67108864,
        "swappiness": 20,
        "disableOOMKiller": true,
        "useHierarchy": true,
        "checkBeforeUpdate": true,
    });
    let kmem_tcp = mem_root.join("memory.kmem.tcp.limit_in_bytes").exists();
    if kmem_tcp {
        memory["kernelTCP"] = json!(16777216);
    }
    let dev = |rate: u64| json!([{"major": maj, "minor": min, "rate": rate}]);
    b.set(
        "/linux/resources",
        json!({
            "devices": [{"allow": false, "access": "rwm"}],
            "memory": memory,
            "cpu": {"quota": 50000, "period": 100000, "burst": 10000, "idle": 1},
            "blockIO": {
                "weight": 300,
                "throttleReadBpsDevice": dev(1048576),
                "throttleWriteBpsDevice": dev(2097152),
                "throttleReadIOPSDevice": dev(100),
                "throttleWriteIOPSDevice": dev(200),
            },
            "pids": {"limit": 50},
        }),
    );
    let cg = b.cgroups_path().to_string();
    let id = t.id("broad");
    t.create(&id, &b, &[]).ok();

    assert_eq!(read("memory", &cg, "memory.limit_in_bytes"), "134217728");
    assert_eq!(
        read("memory", &cg, "memory.soft_limit_in_bytes"),
        "67108864"
    );
    assert_eq!(read("memory", &cg, "memory.swappiness"), "20");
    let oom = read("memory", &cg, "memory.oom_control");
    assert!(oom.lines().any(|l| l == "oom_kill_disable 1"), "{oom}");
    assert_eq!(read("memory", &cg, "memory.use_hierarchy"), "1");
    if kmem_tcp {
        assert_eq!(
            read("memory", &cg, "memory.kmem.tcp.limit_in_bytes"),
            "16777216"
        );
    }
    assert_eq!(read("cpu", &cg, "cpu.cfs_quota_us"), "50000");
    assert_eq!(read("cpu", &cg, "cpu.cfs_period_us"), "100000");
    assert_eq!(read("cpu", &cg, "cpu.cfs_burst_us"), "10000");
    assert_eq!(read("cpu", &cg, "cpu.idle"), "1");
    let weight = if cg_file("blkio", &cg, "blkio.weight").exists() {
        "blkio.weight"
    } else {
        "blkio.bfq.weight"
    };
    assert_eq!(read("blkio", &cg, weight), "300");
    for (file, rate) in [
        ("read_bps_device", 1048576),
        ("write_bps_device", 2097152),
        ("read_iops_device", 100),
        ("write_iops_device", 200),
    ] {
        assert_eq!(
            read("blkio", &cg, &format!("blkio.throttle.{file}")),
            format!("{maj}:{min} {rate}")
        );
    }
    assert_eq!(read("pids", &cg, "pids.max"), "50");
    let pid = t.pid(&id).to_string();
    for ctrl in ["memory", "cpu", "blkio"] {
        assert_eq!(read(ctrl, &cg, "cgroup.procs"), pid, "{ctrl}");
    }

    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
}

/// Runs `script` with `sh` in a private mount namespace where net_cls and
/// net_prio (compiled into the kernel but not mounted on this host) are
/// mounted on `at`; the script sees that directory as `$0` and any extra
/// words as `$@`. The host's mount table is not touched, and the
/// hierarchy outlives each mount, so every call sees the same cgroups.
fn with_net_cls(at: &Path, script: &str, args: &[&std::ffi::OsStr]) -> Command {
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t cgroup -o net_cls,net_prio cgroup \"$0\" && {script}"
        ))
        .arg(at)
        .args(args)
        .stdin(Stdio::null());
    c
}

/// `berth <args>` in the namespace of [`with_net_cls`], marked for `id`.
fn berth_with_net_cls(t: &Berth, at: &Path, id: &str, args: &[&str]) -> Output {
    let mut words: Vec<&std::ffi::OsStr> = vec![t.bin().as_os_str()];
    words.extend(t.global_args().iter().map(std::ffi::OsStr::new));
    words.push("--root".as_ref());
    words.push(t.sandbox().root().as_os_str());
    words.extend(args.iter().map(std::ffi::OsStr::new));
    let mut c = with_net_cls(at, "exec \"$@\"", &words);
    c.env(testbed::MARK_VAR, t.sandbox().mark_for(id));
    t.output(&mut c)
}

#[test]
fn network_class_id_and_priorities_are_written() {
    let t = berth();
    let at = t.sandbox().host_dir("net_cls,net_prio");
    if !t.output(&mut with_net_cls(&at, "true", &[])).success() {
        eprintln!("skipped: net_cls,net_prio cannot be mounted here");
        return;
    }
    let mut b = t.bundle(&["sleep", "1000"]);
    b.set(
        "/linux/resources/network",
        json!({"classID": 1048577, "priorities": [{"name": "lo", "priority": 5}]}),
    );
    let cg = b.cgroups_path().to_string();
    let dir = at.join(cg.trim_start_matches('/'));
    {
        // Whatever happens, nothing stays in the hidden hierarchy (that
        // would keep it alive): after the runner's force delete, remove
        // what is left.
        let (at, dir) = (at.clone(), dir.clone());
        t.sandbox().on_drop(move || {
            let _ = with_net_cls(
                &at,
                "if [ -d \"$1\" ]; then find \"$1\" -depth -type d -exec rmdir {} +; fi; \
                 rmdir \"$(dirname \"$1\")\" 2>/dev/null; true",
                &[dir.as_os_str()],
            )
            .status();
        });
    }
    b.write().unwrap();
    let bundle = b.path().to_str().unwrap().to_string();

    // Without the hierarchy the host has no net_cls: refused up front.
    let id0 = t.id("no-net-cls");
    t.create(&id0, &b, &[]).fails().stderr_has(&[
        "linux.resources.network.classID needs the net_cls cgroup controller, \
         which is not available on this host",
    ]);
    t.leak_check(&id0, &b);

    let id = t.id("net");
    berth_with_net_cls(&t, &at, &id, &["create", "--bundle", &bundle, &id]).ok();
    let pid = t.pid(&id);
    let show = |what: &str| {
        let script = format!("cat \"$0\"/\"$1\"/{what}");
        let rel: &std::ffi::OsStr = cg.trim_start_matches('/').as_ref();
        let o = t.output(&mut with_net_cls(&at, &script, &[rel]));
        o.ok();
        o.stdout
    };
    assert_eq!(show("net_cls.classid").trim(), "1048577");
    let map = show("net_prio.ifpriomap");
    assert!(map.lines().any(|l| l == "lo 5"), "{map}");
    assert_eq!(show("cgroup.procs").trim(), pid.to_string());

    berth_with_net_cls(&t, &at, &id, &["delete", "--force", &id]).ok();
    t.output(&mut with_net_cls(
        &at,
        "test ! -e \"$1\"",
        &[dir.as_os_str()],
    ))
    .ok();
    t.leak_check(&id, &b);
}

#[test]
fn a_limit_the_kernel_refuses_fails_create_naming_file_and_value() {
    let t = berth();
    let cases = [
        (
            "quota",
            json!({"cpu": {"quota": 500, "period": 100000}}),
            "cpu",
            "write 500 to ",
            "cpu.cfs_quota_us: Invalid argument",
        ),
        (
            "blkio",
            json!({"blockIO": {"throttleReadBpsDevice":
                [{"major": 9999, "minor": 9999, "rate": 1048576}]}}),
            "blkio",
            "write 9999:9999 1048576 to ",
            "blkio.throttle.read_bps_device: No such device",
        ),
    ];
    for (name, resources, ctrl, head, tail) in cases {
        let mut b = t.bundle(&["true"]);
        b.set("/linux/resources", resources);
        let cg = b.cgroups_path().to_string();
        let id = t.id(name);
        let file = cg_file(ctrl, &cg, "");
        let whole = format!("{head}{}{tail}", file.display());
        t.create(&id, &b, &[]).fails().stderr_has(&[&whole]);
        t.leak_check(&id, &b);
    }
}

#[test]
fn what_this_v1_host_cannot_do_is_refused_before_anything_is_made() {
    let t = berth();
    let cases = [
        (
            "unified",
            "/linux/resources/unified",
            json!({"memory.high": "1G"}),
            "linux.resources.unified: needs cgroup v2; this host uses v1",
        ),
        (
            "swappiness",
            "/linux/resources/memory",
            json!({"swappiness": 101}),
            "linux.resources.memory.swappiness = 101: must be between 0 and 100",
        ),
        (
            "hugetlb",
            "/linux/resources/hugepageLimits",
            json!([{"pageSize": "2MB", "limit": 4194304}]),
            "linux.resources.hugepageLimits needs the hugetlb cgroup controller",
        ),
    ];
    for (name, pointer, value, message) in cases {
        if name == "hugetlb" && Path::new("/sys/fs/cgroup/hugetlb").exists() {
            continue;
        }
        let mut b = t.bundle(&["true"]);
        b.set(pointer, value);
        let id = t.id(name);
        t.create(&id, &b, &[]).fails().stderr_has(&[message]);
        t.leak_check(&id, &b);
    }
    // An empty unified map asks for nothing.
    let mut b = t.bundle(&["true"]);
    b.set("/linux/resources/unified", json!({}));
    let id = t.id("empty-unified");
    t.run(&id, &b, &[]).ok();
    t.leak_check(&id, &b);
}

/// The device cgroup: deny-all, then the config's rules in order (a later
/// rule overrides an earlier one for the same device), then runc's default
/// devices, which a config cannot take away. Device nodes from
/// `linux.devices` get no rule of their own. An unassigned major (240)
/// tells the two refusals apart: EPERM from the cgroup, ENXIO from the
/// kernel once the cgroup let the open through.
#[test]
fn device_rules_apply_in_order_after_deny_all() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    for (name, minor) in [("a", 11), ("b", 12), ("r", 13), ("none", 14)] {
        b.push(
            "/linux/devices",
            json!({"path": format!("/dev/exp-{name}"), "type": "c", "major": 240,
                   "minor": minor, "fileMode": 0o666}),
        );
    }
    b.set(
        "/linux/resources/devices",
        json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 240, "minor": 11, "access": "rw"},
            {"allow": true, "type": "c", "major": 240, "minor": 12, "access": "rwm"},
            {"allow": false, "type": "c", "major": 240, "minor": 12, "access": "rw"},
            {"allow": true, "type": "c", "major": 240, "minor": 13, "access": "r"},
            {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        ]),
    );
    let script = r#"
        for t in 'a <' 'b <' 'r <' 'r >' 'none <'; do
            set -- $t
            echo "$1 $2 $( (eval "exec 3$2/dev/exp-$1") 2>&1 | sed 's/.*: //')"
        done
        head -c 1 /dev/zero | wc -c
        echo x > /dev/null && echo null-ok
    "#;
    let o = run_sh(&t, &mut b, script);
    assert_eq!(
        o.lines(),
        [
            "a < No such device or address",
            "b < Operation not permitted",
            "r < No such device or address",
            "r > Operation not permitted",
            "none < Operation not permitted",
            "1",
            "null-ok",
        ]
    );

    // What the kernel holds, as devices.list shows it.
    b.args(&["sleep", "1000"]);
    let cg = b.cgroups_path().to_string();
    let id = t.id("devlist");
    t.create(&id, &b, &[]).ok();
    let mut list: Vec<String> = read("devices", &cg, "devices.list")
        .lines()
        .map(str::to_string)
        .collect();
    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
    list.sort();
    let mut want = [
        "c *:* m",
        "b *:* m",
        "c 1:3 rwm",
        "c 1:5 rwm",
        "c 1:7 rwm",
        "c 1:8 rwm",
        "c 1:9 rwm",
        "c 5:0 rwm",
        "c 5:2 rwm",
        "c 10:200 rwm",
        "c 136:* rwm",
        "c 240:11 rw",
        "c 240:12 m",
        "c 240:13 r",
    ];
    want.sort();
    assert_eq!(list, want);
}

#[test]
fn device_rules_the_cgroup_cannot_honour_fail_create() {
    let t = berth();
    let cases = [
        (
            "hole",
            json!([
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 240, "access": "rwm"},
                {"allow": false, "type": "c", "major": 240, "minor": 12, "access": "w"},
            ]),
            "linux.resources.devices[2] = deny c 240:12 w: cannot take access away from \
             part of the earlier wildcard rule allow c 240:* rwm",
            "cgroup v1 keeps such rules whole",
        ),
        (
            "access",
            json!([{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwx"}]),
            "linux.resources.devices[0].access = ",
            "rwx\\\": must be one or more of the letters r, w and m",
        ),
        (
            "type",
            json!([{"allow": true, "type": "p", "access": "r"}]),
            "linux.resources.devices[0].type = ",
            ": a device cgroup rule is for a (all), c (character) or b (block) devices",
        ),
    ];
    for (name, devices, message, reason) in cases {
        let mut b = t.bundle(&["true"]);
        b.set("/linux/resources/devices", devices);
        let id = t.id(name);
        t.create(&id, &b, &[])
            .fails()
            .stderr_has(&[message, reason]);
        t.leak_check(&id, &b);
    }
}

/// Without `linux.resources` the device cgroup still starts from deny-all
/// with the default devices, as in runc.
#[test]
fn device_cgroup_applies_without_linux_resources() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.remove("/linux/resources").push(
        "/linux/devices",
        json!({"path": "/dev/exp", "type": "c", "major": 240, "minor": 14, "fileMode": 0o666}),
    );
    let o = run_sh(
        &t,
        &mut b,
        "(true < /dev/exp) 2>&1 | sed 's/.*: //'; head -c 1 /dev/zero | wc -c",
    );
    assert_eq!(o.lines(), ["Operation not permitted", "1"]);
}
