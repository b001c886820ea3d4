//! `berth features` (runtime-spec features.md) checked against the
//! library's lists and against what `create` really accepts, and the
//! `berth spec --seccomp` document run as a real container.

mod common;

use std::fs;

use common::*;

/// `berth features`, parsed.
fn features(t: &Berth) -> Value {
    let out = t.cmd(&["features"]);
    out.ok();
    assert!(
        out.stdout.starts_with("{\n    \"ociVersionMin\": "),
        "{out}"
    );
    assert!(out.stdout.ends_with("}\n"), "{out}");
    out.json()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("{v} is not an array"))
        .iter()
        .map(|s| s.as_str().expect("a string"))
        .collect()
}

#[test]
fn features_agree_with_the_library() {
    let t = berth();
    let f = features(&t);
    assert_eq!(f["ociVersionMin"], "1.0.0");
    assert_eq!(f["ociVersionMax"], berth::container::OCI_VERSION);
    assert_eq!(
        strings(&f["hooks"]),
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ]
    );
    assert_eq!(strings(&f["mountOptions"]), berth::features::MOUNT_OPTIONS);

    let linux = &f["linux"];
    let seccomp = &linux["seccomp"];
    assert_eq!(seccomp["enabled"], true);
    assert_eq!(strings(&seccomp["actions"]), berth::seccomp::ACTIONS);
    assert_eq!(strings(&seccomp["operators"]), berth::seccomp::OPERATORS);
    assert_eq!(strings(&seccomp["archs"]), berth::seccomp::ARCHES);
    assert_eq!(strings(&seccomp["knownFlags"]), berth::seccomp::FLAGS);
    let supported = strings(&seccomp["supportedFlags"]);
    assert!(
        supported.iter().all(|f| berth::seccomp::FLAGS.contains(f)),
        "{supported:?}"
    );

    assert_eq!(
        linux["cgroup"],
        json!({"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": true})
    );
    assert_eq!(
        linux["namespaces"],
        serde_json::to_value(berth::features::NAMESPACES).unwrap()
    );
    assert_eq!(
        strings(&linux["namespaces"]),
        ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"]
    );
    let caps = strings(&linux["capabilities"]);
    for cap in [
        "CAP_CHOWN",
        "CAP_SYS_ADMIN",
        "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
    ] {
        assert!(caps.contains(&cap), "{cap} missing from {caps:?}");
    }
    for off in ["apparmor", "selinux", "intelRdt", "netDevices"] {
        assert_eq!(linux[off]["enabled"], false, "{off}");
    }
    assert_eq!(linux["mountExtensions"]["idmap"]["enabled"], false);
    assert_eq!(
        f["annotations"]["run.berth.version"],
        env!("CARGO_PKG_VERSION")
    );

    // The whole document is the library's.
    assert_eq!(
        f,
        serde_json::to_value(berth::features::features()).unwrap()
    );
}

#[test]
fn every_listed_mount_option_is_accepted_by_create() {
    let t = berth();
    let f = features(&t);
    let options = strings(&f["mountOptions"]);
    assert!(options.len() > 20, "{options:?}");
    for opt in ["ro", "nosuid", "rbind", "rprivate"] {
        assert!(options.contains(&opt), "{opt} missing from {options:?}");
    }
    assert!(!options.contains(&"idmap"));

    let host = t.host_dir("src");
    fs::write(host.join("f"), "x").unwrap();
    let src = host.to_str().unwrap();
    let marks = t.host_dir("marks");
    let mut b = t.bundle(&sh("ls /m > /marks/seen"));
    b.bind(&marks, "/marks", &[]);
    for opt in &options {
        let dest = format!("/m/{opt}");
        match *opt {
            // Options of bind mounts: a host directory, bound.
            "bind" | "rbind" => b.mount("bind", src, &dest, &[opt]),
            "remount" => b.mount("bind", src, &dest, &["bind", "remount", "ro"]),
            _ => b.mount("tmpfs", "tmpfs", &dest, &[opt, "size=64k"]),
        };
    }
    let id = t.id("opts");
    t.run(&id, &b, &[]).ok();
    t.leak_check(&id, &b);
    let seen = fs::read_to_string(marks.join("seen")).unwrap();
    let mut want: Vec<&str> = options.clone();
    want.sort_unstable();
    let mut got: Vec<&str> = seen.lines().collect();
    got.sort_unstable();
    assert_eq!(got, want, "mount points in the container");

    // What the document leaves out is refused, not silently ignored.
    let mut b = t.bundle(&["true"]);
    b.mount("bind", src, "/m", &["bind", "idmap"]);
    let id = t.id("idmap");
    t.create(&id, &b, &[]).fails().stderr_has(&["idmap"]);
    t.leak_check(&id, &b);
}

#[test]
fn spec_with_seccomp_runs_busybox() {
    let t = berth();
    let dir = t.host_dir("spec");
    t.cmd(&["spec", "--seccomp", "--bundle", dir.to_str().unwrap()])
        .ok();
    let config: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let seccomp = &config["linux"]["seccomp"];
    assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(seccomp["defaultErrnoRet"], 1);
    assert_eq!(
        seccomp["architectures"],
        json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    );
    let rules = seccomp["syscalls"].as_array().expect("syscalls");
    let with_name = |name: &str| -> Vec<&Value> {
        rules
            .iter()
            .filter(|r| strings(&r["names"]).contains(&name))
            .collect()
    };
    assert_eq!(with_name("read")[0]["action"], "SCMP_ACT_ALLOW");
    assert!(with_name("mount").is_empty(), "mount is allowed");
    assert_eq!(with_name("clone")[0]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
    assert_eq!(with_name("clone3")[0]["errnoRet"], 38);
    // The rest is the plain `berth spec` document.
    let plain = t.host_dir("plain");
    t.cmd(&["spec", "--bundle", plain.to_str().unwrap()]).ok();
    let mut without: Value = config.clone();
    without["linux"].as_object_mut().unwrap().remove("seccomp");
    let plain: Value =
        serde_json::from_str(&fs::read_to_string(plain.join("config.json")).unwrap()).unwrap();
    assert_eq!(without, plain);

    // The document as written, with only what a test run needs changed:
    // no terminal, the program, the test's mark and cgroup.
    let mut b = t.bundle(&["true"]);
    let mark = format!("{}={}", testbed::MARK_VAR, b.mark());
    let cgroups_path = b.cgroups_path().to_string();
    *b.config_mut() = config;
    b.set("/process/terminal", json!(false))
        .set("/process/args", json!(sh("echo hello from $(uname -n)")))
        .push("/process/env", json!(mark))
        .set("/linux/cgroupsPath", json!(cgroups_path));
    let id = t.id("seccomp");
    let out = t.run(&id, &b, &[]);
    out.ok();
    assert_eq!(out.stdout, "hello from berth\n", "{out}");
    t.leak_check(&id, &b);
}
