//! Namespaces (runtime spec `linux.namespaces`, `uidMappings`,
//! `gidMappings`, `timeOffsets`, `hostname`, `domainname`): new ones
//! differ from the host's, joined ones are the same, mappings and offsets
//! are what the config says.

mod common;

use std::os::unix::fs::MetadataExt;

use common::*;

const ALL_BUT_USER_AND_TIME: [(&str, &str); 6] = [
    ("pid", "pid"),
    ("network", "net"),
    ("mount", "mnt"),
    ("ipc", "ipc"),
    ("uts", "uts"),
    ("cgroup", "cgroup"),
];

fn ns_script(kinds: &[&str]) -> String {
    kinds
        .iter()
        .map(|k| format!("readlink /proc/self/ns/{k};"))
        .collect()
}

#[test]
fn new_namespaces_differ_from_the_host() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    for (ty, _) in ALL_BUT_USER_AND_TIME {
        b.namespace(ty, None);
    }
    let kinds: Vec<&str> = ALL_BUT_USER_AND_TIME.iter().map(|(_, k)| *k).collect();
    let o = run_sh(&t, &mut b, &ns_script(&kinds));
    let lines = o.lines();
    assert_eq!(lines.len(), kinds.len(), "{o}");
    for (k, inside) in kinds.iter().zip(&lines) {
        let host = ns_link("self", k);
        assert!(inside.starts_with(&format!("{k}:[")), "{inside}");
        assert_ne!(*inside, host, "{k} namespace is the host's");
    }
}

#[test]
fn namespaces_not_asked_for_are_the_hosts() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.remove_namespace("network")
        .remove_namespace("ipc")
        .remove_namespace("uts")
        .remove("/hostname");
    let o = run_sh(&t, &mut b, &ns_script(&["net", "ipc", "uts", "mnt"]));
    let lines = o.lines();
    assert_eq!(lines[0], ns_link("self", "net"));
    assert_eq!(lines[1], ns_link("self", "ipc"));
    assert_eq!(lines[2], ns_link("self", "uts"));
    assert_ne!(lines[3], ns_link("self", "mnt"));
}

#[test]
fn pid_namespace_makes_the_program_pid_1() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    let o = run_sh(
        &t,
        &mut b,
        "echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc | grep -c '^[0-9]'",
    );
    let lines = o.lines();
    assert_eq!(lines[0], "1");
    assert!(lines[1].starts_with("sh -c "), "{o}");
    // sh, ls and grep: nothing of the host is visible.
    assert_eq!(lines[2], "3", "{o}");
}

#[test]
fn cgroup_namespace_roots_the_cgroup_paths() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.namespace("cgroup", None);
    let o = run_sh(&t, &mut b, "cat /proc/self/cgroup");
    let own = b.cgroups_path();
    for line in o.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap();
        assert!(
            path == "/" || !path.contains(own.trim_start_matches('/')),
            "cgroup path {path:?} is not rooted at the container's cgroup:\n{o}"
        );
    }
    let o2 = {
        let mut b = t.bundle(&["true"]);
        b.remove_namespace("cgroup");
        run_sh(&t, &mut b, "grep pids /proc/self/cgroup")
    };
    assert!(o2.out().ends_with(&format!(":pids:{}", {
        // Without a cgroup namespace the full path shows.
        let n = o2.out().rsplit(':').next().unwrap().to_string();
        assert!(n.starts_with("/berth-test/"), "{o2}");
        n
    })));
}

#[test]
fn hostname_and_domainname() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.set("/hostname", json!("box-1"))
        .set("/domainname", json!("example.test"));
    let o = run_sh(&t, &mut b, "hostname; cat /proc/sys/kernel/domainname");
    assert_eq!(o.lines(), ["box-1", "example.test"]);
}

#[test]
fn user_namespace_with_mappings() {
    let t = berth();
    let marks = t.host_dir("marks");
    let mut b = t.bundle(&sh(
        "cat /proc/self/uid_map /proc/self/gid_map > /marks/maps; id -u >> /marks/maps; \
         readlink /proc/self/ns/user >> /marks/maps; echo > /marks/ready; exec sleep 1000",
    ));
    b.namespace("user", None)
        .set(
            "/linux/uidMappings",
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
        )
        .set(
            "/linux/gidMappings",
            json!([{"containerID": 0, "hostID": 200000, "size": 65536}]),
        )
        .bind(&marks, "/marks", &[]);
    // The mapped root cannot create directories in a rootfs owned by the
    // host's root, so the mount point exists beforehand.
    std::fs::create_dir(b.rootfs().join("marks")).unwrap();
    let id = t.id("userns");
    t.create(&id, &b, &[]).ok();
    t.start(&id).ok();
    wait_file(&marks.join("ready"));
    let maps = std::fs::read_to_string(marks.join("maps")).unwrap();
    let lines: Vec<Vec<&str>> = maps
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0", "100000", "65536"], "{maps}");
    assert_eq!(lines[1], ["0", "200000", "65536"], "{maps}");
    assert_eq!(lines[2], ["0"], "{maps}");
    assert_ne!(lines[3][0], ns_link("self", "user"));
    // Seen from the host, the container's root is the mapped uid.
    let status = std::fs::read_to_string(format!("/proc/{}/status", t.pid(&id))).unwrap();
    assert_eq!(
        status_field(&status, "Uid"),
        "100000\t100000\t100000\t100000"
    );
    assert_eq!(
        status_field(&status, "Gid"),
        "200000\t200000\t200000\t200000"
    );
    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
}

#[test]
fn time_namespace_offsets() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.namespace("time", None).set(
        "/linux/timeOffsets",
        json!({
            "monotonic": {"secs": 86400, "nanosecs": 0},
            "boottime": {"secs": 172800, "nanosecs": 500},
        }),
    );
    let host_uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let o = run_sh(
        &t,
        &mut b,
        "cat /proc/self/timens_offsets; cut -d' ' -f1 /proc/uptime; readlink /proc/self/ns/time",
    );
    let lines = o.lines();
    let offsets: Vec<Vec<&str>> = lines[..2]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        offsets,
        [
            vec!["monotonic", "86400", "0"],
            vec!["boottime", "172800", "500"]
        ]
    );
    let uptime: f64 = lines[2].parse().unwrap();
    assert!(
        uptime >= host_uptime + 172800.0 && uptime < host_uptime + 172800.0 + 60.0,
        "uptime {uptime} inside vs {host_uptime} on the host"
    );
    assert_ne!(lines[3], ns_link("self", "time"));
}

#[test]
fn joining_another_containers_namespaces() {
    let t = berth();
    let a = t.bundle(&["sleep", "1000"]);
    let ida = t.id("nsa");
    t.create(&ida, &a, &[]).ok();
    t.start(&ida).ok();
    let pida = t.pid(&ida);

    let mut b = t.bundle(&["true"]);
    for ty in ["network", "ipc", "uts"] {
        let kind = match ty {
            "network" => "net",
            other => other,
        };
        b.namespace(ty, Some(&format!("/proc/{pida}/ns/{kind}")));
    }
    b.remove("/hostname");
    let o = run_sh(&t, &mut b, &ns_script(&["net", "ipc", "uts", "pid"]));
    let lines = o.lines();
    let pa = pida.to_string();
    assert_eq!(lines[0], ns_link(&pa, "net"));
    assert_eq!(lines[1], ns_link(&pa, "ipc"));
    assert_eq!(lines[2], ns_link(&pa, "uts"));
    assert_ne!(
        lines[3],
        ns_link(&pa, "pid"),
        "pid was not asked to be joined"
    );
    // The other container keeps running and its hostname is unchanged.
    assert_eq!(t.status(&ida), "running");
    t.delete(&ida, true).ok();
    t.leak_check(&ida, &a);
}

#[test]
fn joining_a_named_network_namespace() {
    let t = berth();
    let path = t.netns();
    let ino = std::fs::metadata(&path).unwrap().ino();
    let mut b = t.bundle(&["true"]);
    b.namespace("network", Some(path.to_str().unwrap()));
    let o = run_sh(
        &t,
        &mut b,
        "readlink /proc/self/ns/net; ip -o link show | wc -l",
    );
    let lines = o.lines();
    assert_eq!(lines[0], format!("net:[{ino}]"));
    // A fresh namespace has only the loopback device.
    assert_eq!(lines[1], "1");
}
