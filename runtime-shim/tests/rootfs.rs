//! The container's filesystem view (runtime spec `root`, `mounts`,
//! `linux.maskedPaths`, `linux.readonlyPaths`, `linux.devices`,
//! `linux.sysctl`, `linux.rootfsPropagation`), read back from
//! /proc/self/mountinfo and the files themselves inside the container.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use common::*;
use testbed::{parse_mountinfo, MountInfo};

/// The last (topmost) mount at `mount_point` in a container's mountinfo.
#[track_caller]
fn mount_at(mounts: &[MountInfo], mount_point: &str) -> MountInfo {
    mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == mount_point)
        .cloned()
        .unwrap_or_else(|| panic!("no mount at {mount_point} in {mounts:#?}"))
}

#[test]
fn readonly_root() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.set("/root/readonly", json!(true));
    let o = run_sh(
        &t,
        &mut b,
        "touch /x 2>&1; echo rc=$?; touch /dev/ok && echo dev-writable; cat /proc/self/mountinfo",
    );
    let lines = o.lines();
    assert!(lines[0].contains("Read-only file system"), "{o}");
    assert_eq!(lines[1], "rc=1");
    assert_eq!(lines[2], "dev-writable");
    let root = mount_at(&parse_mountinfo(&o.stdout), "/");
    assert!(root.options.iter().any(|x| x == "ro"), "{root:?}");
    assert!(!b.rootfs().join("x").exists());
}

#[test]
fn mount_flags_show_in_mountinfo() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.mount("tmpfs", "tmpfs", "/m/ro", &["ro"])
        .mount(
            "tmpfs",
            "tmpfs",
            "/m/flags",
            &["nosuid", "nodev", "noexec", "noatime"],
        )
        .mount("tmpfs", "tmpfs", "/m/relatime", &["relatime"])
        .mount("tmpfs", "tmpfs", "/m/strict", &["strictatime", "rw"]);
    let o = run_sh(&t, &mut b, "cat /proc/self/mountinfo");
    let mounts = parse_mountinfo(&o.stdout);
    let ro = mount_at(&mounts, "/m/ro");
    assert_eq!(ro.options[0], "ro", "{ro:?}");
    let f = mount_at(&mounts, "/m/flags");
    assert_eq!(f.options[0], "rw");
    for opt in ["nosuid", "nodev", "noexec", "noatime"] {
        assert!(f.options.iter().any(|x| x == opt), "{opt} missing: {f:?}");
    }
    let r = mount_at(&mounts, "/m/relatime");
    assert!(r.options.iter().any(|x| x == "relatime"), "{r:?}");
    assert!(!r.options.iter().any(|x| x == "nosuid"), "{r:?}");
    let s = mount_at(&mounts, "/m/strict");
    assert!(
        !s.options.iter().any(|x| x == "relatime" || x == "noatime"),
        "strictatime mount shows {s:?}"
    );
    assert_eq!(s.fstype, "tmpfs");
}

#[test]
fn tmpfs_size_and_mode() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.mount("tmpfs", "tmpfs", "/t", &["nosuid", "size=1m", "mode=1770"]);
    let o = run_sh(&t, &mut b, "stat -c %a /t; cat /proc/self/mountinfo");
    assert_eq!(o.lines()[0], "1770");
    let m = mount_at(&parse_mountinfo(&o.stdout), "/t");
    assert!(m.super_options.iter().any(|x| x == "size=1024k"), "{m:?}");
    assert!(m.super_options.iter().any(|x| x == "mode=1770"), "{m:?}");
    assert!(m.options.iter().any(|x| x == "nosuid"), "{m:?}");
}

#[test]
fn bind_and_rbind_of_a_host_dir() {
    let t = berth();
    let host = t.host_dir("host");
    fs::write(host.join("f"), "hello").unwrap();
    t.mount_tmpfs(&host.join("sub"), "size=1m").unwrap();
    fs::write(host.join("sub/g"), "below").unwrap();
    let mut b = t.bundle(&["true"]);
    let src = host.to_str().unwrap();
    b.mount("bind", src, "/b", &["bind"])
        .mount("bind", src, "/rb", &["rbind"])
        .mount("bind", src, "/ro", &["rbind", "ro"]);
    let o = run_sh(
        &t,
        &mut b,
        "cat /b/f; echo; ls -A /b/sub | wc -l; cat /rb/sub/g; echo; \
         echo x > /ro/f 2>&1 || echo ro-refused; echo changed > /b/f2",
    );
    assert_eq!(o.lines(), ["hello", "0", "below", "ro-refused"]);
    assert_eq!(fs::read_to_string(host.join("f")).unwrap(), "hello");
    assert_eq!(fs::read_to_string(host.join("f2")).unwrap(), "changed\n");
}

#[test]
fn propagation_shared_slave_private() {
    let t = berth();
    let shared = t.dir().join("shared");
    t.mount_tmpfs(&shared, "size=1m").unwrap();
    t.make_shared(&shared).unwrap();
    let marks = t.host_dir("marks");
    let mut b = t.bundle(&sh(
        "cat /proc/self/mountinfo > /marks/before; echo > /marks/ready; \
         while [ ! -e /marks/go ]; do sleep 0.05; done; \
         cat /proc/self/mountinfo > /marks/after; echo > /marks/done; exec sleep 1000",
    ));
    let src = shared.to_str().unwrap();
    b.mount("bind", src, "/p/shared", &["rbind", "rshared"])
        .mount("bind", src, "/p/slave", &["rbind", "rslave"])
        .mount("bind", src, "/p/private", &["rbind", "rprivate"])
        .bind(&marks, "/marks", &[]);
    let id = t.id("prop");
    t.create(&id, &b, &[]).ok();
    t.start(&id).ok();
    wait_file(&marks.join("ready"));
    let before = parse_mountinfo(&fs::read_to_string(marks.join("before")).unwrap());
    let opt = |m: &MountInfo, p: &str| m.optional.iter().any(|o| o.starts_with(p));
    let s = mount_at(&before, "/p/shared");
    assert!(opt(&s, "shared:"), "{s:?}");
    let sl = mount_at(&before, "/p/slave");
    assert!(opt(&sl, "master:") && !opt(&sl, "shared:"), "{sl:?}");
    let p = mount_at(&before, "/p/private");
    assert!(p.optional.is_empty(), "{p:?}");

    // A mount made on the host afterwards reaches the shared and slave
    // mounts, not the private one.
    t.mount_tmpfs(&shared.join("late"), "size=1m").unwrap();
    fs::write(marks.join("go"), "").unwrap();
    wait_file(&marks.join("done"));
    let after = parse_mountinfo(&fs::read_to_string(marks.join("after")).unwrap());
    let has = |mp: &str| after.iter().any(|m| m.mount_point == mp);
    assert!(has("/p/shared/late"));
    assert!(has("/p/slave/late"));
    assert!(!has("/p/private/late"));
    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
}

#[test]
fn masked_paths() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    fs::write(b.rootfs().join("etc/secret"), "s3cret").unwrap();
    fs::create_dir(b.rootfs().join("secretdir")).unwrap();
    fs::write(b.rootfs().join("secretdir/x"), "x").unwrap();
    b.push("/linux/maskedPaths", json!("/etc/secret"))
        .push("/linux/maskedPaths", json!("/secretdir"))
        .push("/linux/maskedPaths", json!("/does/not/exist"));
    let o = run_sh(
        &t,
        &mut b,
        "cat /etc/secret | wc -c; ls -A /secretdir | wc -l; cat /proc/kcore | wc -c; \
         ls -A /sys/firmware | wc -l; touch /secretdir/y 2>/dev/null || echo refused",
    );
    assert_eq!(o.lines(), ["0", "0", "0", "0", "refused"]);
    assert_eq!(
        fs::read_to_string(b.rootfs().join("etc/secret")).unwrap(),
        "s3cret"
    );
}

#[test]
fn readonly_paths() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    fs::create_dir(b.rootfs().join("data")).unwrap();
    b.push("/linux/readonlyPaths", json!("/data"));
    let o = run_sh(
        &t,
        &mut b,
        "touch /data/x 2>&1; (echo other > /proc/sys/kernel/hostname) 2>&1; hostname; \
         cat /proc/self/mountinfo",
    );
    let lines = o.lines();
    assert!(lines[0].contains("Read-only file system"), "{o}");
    assert!(lines[1].contains("Read-only file system"), "{o}");
    assert_eq!(lines[2], "berth");
    let mounts = parse_mountinfo(&o.stdout);
    for mp in ["/data", "/proc/sys", "/proc/bus"] {
        let m = mount_at(&mounts, mp);
        assert_eq!(m.options[0], "ro", "{m:?}");
    }
}

#[test]
fn sysctls() {
    let t = berth();
    let host_fwd = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let host_shm = fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap();
    let mut b = t.bundle(&["true"]);
    b.set(
        "/linux/sysctl",
        json!({"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1"}),
    );
    let o = run_sh(
        &t,
        &mut b,
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shm_rmid_forced",
    );
    assert_eq!(o.lines(), ["1", "1"]);
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_fwd
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap(),
        host_shm
    );
}

#[test]
fn default_devices_and_dev_symlinks() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    let o = run_sh(
        &t,
        &mut b,
        "for d in null zero full random urandom tty; do stat -c '%n %t:%T %a %u:%g' /dev/$d; \
         [ -c /dev/$d ] || echo not-char; done; \
         for l in fd stdin stdout stderr ptmx; do echo \"$l -> $(readlink /dev/$l)\"; done; \
         head -c 4 /dev/zero | od -An -tx1 | tr -d ' '; echo x > /dev/null && echo null-ok; \
         echo x > /dev/full 2>/dev/null || echo full-refused; head -c 8 /dev/urandom | wc -c",
    );
    assert_eq!(
        o.lines(),
        [
            "/dev/null 1:3 666 0:0",
            "/dev/zero 1:5 666 0:0",
            "/dev/full 1:7 666 0:0",
            "/dev/random 1:8 666 0:0",
            "/dev/urandom 1:9 666 0:0",
            "/dev/tty 5:0 666 0:0",
            "fd -> /proc/self/fd",
            "stdin -> /proc/self/fd/0",
            "stdout -> /proc/self/fd/1",
            "stderr -> /proc/self/fd/2",
            "ptmx -> pts/ptmx",
            "00000000",
            "null-ok",
            "full-refused",
            "8",
        ]
    );
}

#[test]
fn configured_devices_and_the_device_cgroup() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.push(
        "/linux/devices",
        json!({"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3,
               "fileMode": 0o604, "uid": 1000, "gid": 1000}),
    )
    .push(
        "/linux/devices",
        // An unassigned number: only the device cgroup can refuse the
        // open with EPERM; past it the kernel finds no driver (ENXIO).
        json!({"path": "/dev/sub/exp", "type": "c", "major": 240, "minor": 11, "fileMode": 0o600}),
    );
    let script = "stat -c '%n %t:%T %a %u:%g' /dev/mynull /dev/sub/exp; \
                  true < /dev/mynull && echo mynull-ok; \
                  (true < /dev/sub/exp) 2>&1; true";
    let o = run_sh(&t, &mut b, script);
    let lines = o.lines();
    assert_eq!(
        lines[..3],
        [
            "/dev/mynull 1:3 604 1000:1000",
            "/dev/sub/exp f0:b 600 0:0",
            "mynull-ok",
        ]
    );
    assert!(lines[3].contains("Operation not permitted"), "{o}");
    // An allow rule for the device lets the open reach the kernel.
    b.push(
        "/linux/resources/devices",
        json!({"allow": true, "type": "c", "major": 240, "minor": 11, "access": "r"}),
    );
    let o = run_sh(&t, &mut b, script);
    assert!(o.lines()[3].contains("No such device or address"), "{o}");
}

#[test]
fn oom_score_adj() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.set("/process/oomScoreAdj", json!(500));
    let o = run_sh(&t, &mut b, "cat /proc/self/oom_score_adj");
    assert_eq!(o.out(), "500");
}

#[test]
fn root_path_relative_and_absolute() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    fs::write(b.rootfs().join("which"), "rootfs").unwrap();
    testbed::build_rootfs(&b.path().join("alt")).unwrap();
    fs::write(b.path().join("alt/which"), "alt").unwrap();
    let elsewhere = t.dir().join("elsewhere/root");
    testbed::build_rootfs(&elsewhere).unwrap();
    fs::write(elsewhere.join("which"), "elsewhere").unwrap();

    for (path, want) in [
        ("rootfs", "rootfs"),
        ("alt", "alt"),
        ("./alt/", "alt"),
        (elsewhere.to_str().unwrap(), "elsewhere"),
    ] {
        b.set("/root/path", json!(path)).args(&["cat", "/which"]);
        let id = t.id("rootpath");
        // The relative path is the bundle's, not the caller's cwd.
        let mut c = t.run_command(&id, &b, &[]);
        c.current_dir("/");
        let o = t.output(&mut c);
        o.ok();
        assert_eq!(o.stdout, want, "root.path {path}");
        t.leak_check(&id, &b);
    }
}

#[test]
fn no_pivot() {
    let t = berth();
    let mut b = t.bundle(&sh("cat /which; ls /; cat /proc/1/cmdline | tr '\\0' ' '"));
    fs::write(b.rootfs().join("which"), "inside\n").unwrap();
    b.set("/root/readonly", json!(true));
    let id = t.id("nopivot");
    let o = t.run(&id, &b, &["--no-pivot"]);
    o.ok();
    let lines = o.lines();
    assert_eq!(lines[0], "inside");
    // Only the rootfs's own entries are visible at /.
    let mut root: Vec<&str> = lines[1..lines.len() - 1].to_vec();
    root.sort_unstable();
    assert_eq!(
        root,
        ["bin", "dev", "etc", "home", "proc", "root", "sys", "tmp", "which"]
    );
    t.leak_check(&id, &b);
}

#[test]
fn symlinked_mount_destinations_stay_inside_the_rootfs() {
    let t = berth();
    let outside = t.host_dir("outside");
    fs::write(outside.join("sentinel"), "keep").unwrap();
    let mut b = t.bundle(&["true"]);
    let rootfs = b.rootfs();
    symlink(&outside, rootfs.join("evil")).unwrap();
    let up = "../".repeat(outside.components().count() + 4);
    let rel = format!("{up}{}", outside.to_str().unwrap().trim_start_matches('/'));
    symlink(&rel, rootfs.join("evil2")).unwrap();
    let host_src = t.host_dir("src");
    fs::write(host_src.join("payload"), "payload").unwrap();
    b.mount("tmpfs", "tmpfs", "/evil", &["size=1m"]).mount(
        "bind",
        host_src.to_str().unwrap(),
        "/evil2/sub",
        &["rbind"],
    );
    let inner = outside.to_str().unwrap();
    let o = run_sh(
        &t,
        &mut b,
        &format!("touch /evil/inside; ls -A /evil; cat /evil2/sub/payload; echo; grep -c ' {inner}' /proc/self/mountinfo"),
    );
    // Both links resolve to the same directory inside the rootfs, so the
    // tmpfs holds the mount point made for the bind as well.
    assert_eq!(o.lines(), ["inside", "sub", "payload", "2"], "{o}");
    // The host directory the links point at is untouched.
    let entries: Vec<String> = fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["sentinel"]);
    assert_eq!(
        fs::read_to_string(outside.join("sentinel")).unwrap(),
        "keep"
    );
    assert!(testbed::mounts_under(&outside).is_empty());
    assert!(rootfs.join(inner.trim_start_matches('/')).is_dir());
    let _ = (Path::new("/"), Duration::ZERO);
}
