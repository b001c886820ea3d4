//! Configs and requests the runtime must refuse: each fails with a
//! message naming the field, path or value, exits non-zero, and leaves
//! nothing behind (no state dir, cgroup, mount or process).

mod common;

use std::fs;

use common::*;

/// Creates a container from `b`, expects failure, checks that stderr
/// names everything in `always` (any runtime) and `berth` (Berth's
/// field-naming messages), that the id is unknown afterwards, and that
/// nothing leaked.
#[track_caller]
fn create_fails(t: &Berth, b: &Bundle, always: &[&str], berth: &[&str]) -> Output {
    let id = t.id("err");
    let o = t.create(&id, b, &[]);
    o.fails().stderr_has(always);
    if t.is_berth() {
        o.stderr_has(berth);
        assert_eq!(o.code, 1, "{o}");
    }
    let st = t.state(&id);
    assert!(!st.success(), "a failed create left a container:\n{st}");
    t.leak_check(&id, b);
    o
}

#[test]
fn broken_json() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.set_raw_config("{\"ociVersion\": \"1.0.2\", \"process\": ");
    create_fails(&t, &b, &[], &["config.json"]);
    b.set_raw_config(
        "{\"ociVersion\": \"1.0.2\", \"process\": {\"args\": 7}, \"root\": {\"path\": \"rootfs\"}}",
    );
    create_fails(&t, &b, &[], &["config.json", "process.args"]);
}

#[test]
fn missing_config_json() {
    let t = berth();
    let b = t.bundle(&["true"]);
    let id = t.id("noconfig");
    fs::remove_file(b.config_path()).unwrap();
    let o = t.cmd_for(
        &id,
        &["create", "--bundle", b.path().to_str().unwrap(), &id],
    );
    o.fails().stderr_has(&["config.json"]);
    t.leak_check(&id, &b);
}

#[test]
fn missing_rootfs() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.set("/root/path", json!("nope"));
    create_fails(&t, &b, &["nope"], &["root.path"]);
}

#[test]
fn unknown_namespace_type() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.push("/linux/namespaces", json!({"type": "foo"}));
    create_fails(&t, &b, &["foo"], &["linux.namespaces[5].type"]);
}

#[test]
fn relative_mount_destination() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.mount("tmpfs", "tmpfs", "relative", &[]);
    // (runc 1.1 only warns and mounts at /relative.)
    create_fails(&t, &b, &["relative"], &["mounts[6].destination"]);
}

#[test]
fn relative_namespace_path() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.namespace("network", Some("relative"));
    create_fails(&t, &b, &["relative"], &["linux.namespaces[4].path"]);
}

#[test]
fn nonexistent_namespace_path() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    let missing = t.dir().join("no-such-netns");
    b.namespace("network", Some(missing.to_str().unwrap()));
    create_fails(
        &t,
        &b,
        &[missing.to_str().unwrap()],
        &["linux.namespaces[4].path"],
    );
}

#[test]
fn unknown_filesystem_type() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.mount("nosuchfs", "none", "/x", &[]);
    // runc names the destination, Berth the field and the type.
    create_fails(&t, &b, &[], &["mounts[6]", "nosuchfs"]);
}

#[test]
fn uid_mapping_the_kernel_refuses() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.namespace("user", None)
        .set(
            "/linux/uidMappings",
            json!([
                {"containerID": 0, "hostID": 100000, "size": 1000},
                {"containerID": 500, "hostID": 200000, "size": 1000},
            ]),
        )
        .set(
            "/linux/gidMappings",
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
        );
    create_fails(&t, &b, &[], &["uidMappings"]);
}

#[test]
fn nonexistent_executable() {
    let t = berth();
    let mut b = t.bundle(&["/bin/nope"]);
    let o = create_fails(&t, &b, &["/bin/nope"], &[]);
    assert!(
        o.stderr.contains("not found") || o.stderr.contains("no such file"),
        "{o}"
    );
    b.args(&["nope-in-path"]);
    let o = create_fails(&t, &b, &["nope-in-path"], &[]);
    assert!(o.stderr.contains("not found"), "{o}");
}

#[test]
fn invalid_ids() {
    let t = berth();
    let b = t.bundle(&["true"]);
    b.write().unwrap();
    for bad in ["../x", "a/b", "..", "with space", ""] {
        let o = t.cmd(&["create", "--bundle", b.path().to_str().unwrap(), bad]);
        o.fails();
        if !bad.is_empty() && t.is_berth() {
            o.stderr_has(&[bad]);
        }
    }
    assert!(!t.dir().join("x").exists(), "../x escaped the root");
    assert!(!t.root().join("a").exists());
    assert_eq!(t.cmd(&["list", "-q"]).ok().out(), "");
    t.leak_check("", &b);
}

#[test]
fn relative_cwd_and_empty_args() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.set("/process/cwd", json!("tmp"));
    create_fails(&t, &b, &[], &["process.cwd"]);
    let mut b = t.bundle(&["true"]);
    b.set("/process/args", json!([]));
    create_fails(&t, &b, &[], &["process.args"]);
}

#[test]
fn unknown_rlimit() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.push(
        "/process/rlimits",
        json!({"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}),
    );
    create_fails(&t, &b, &["RLIMIT_NOPE"], &["process.rlimits[1].type"]);
}

#[test]
fn unknown_sysctl() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.set("/linux/sysctl", json!({"kernel.no_such_sysctl_here": "1"}));
    create_fails(&t, &b, &["kernel.no_such_sysctl_here"], &["linux.sysctl"]);
}

#[test]
fn bundle_that_does_not_exist() {
    let t = berth();
    let id = t.id("nobundle");
    let missing = t.dir().join("no-bundle");
    let o = t.cmd_for(&id, &["create", "--bundle", missing.to_str().unwrap(), &id]);
    o.fails().stderr_has(&["no-bundle"]);
    assert!(!t.root().join(&id).exists());
}
