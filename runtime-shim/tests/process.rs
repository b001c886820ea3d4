//! The container process (runtime spec `process`): args, env, cwd, user,
//! umask, rlimits, noNewPrivileges, capabilities, file descriptors and
//! stdio, each read back from inside the container.

mod common;

use std::fs::{self, File};
use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use common::*;
use testbed::{pass_fds, wait_within, MARK_VAR};

#[test]
fn args_env_and_cwd() {
    let t = berth();
    let mut b = t.bundle(&[
        "sh",
        "-c",
        "printf '[%s]' \"$0\" \"$@\"; echo; echo \"$FOO\"; pwd; cat /proc/1/environ | tr '\\0' '\\n'",
        "zero",
        "a b",
        "",
        "c",
    ]);
    b.env("FOO=bar  baz").set("/process/cwd", json!("/etc"));
    let id = t.id("args");
    let o = t.run(&id, &b, &[]);
    o.ok();
    let lines = o.lines();
    assert_eq!(lines[0], "[zero][a b][][c]");
    assert_eq!(lines[1], "bar  baz");
    assert_eq!(lines[2], "/etc");
    let env: Vec<&str> = lines[3..].to_vec();
    let mark = format!("{MARK_VAR}={}", b.mark());
    for want in [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "TERM=xterm",
        "FOO=bar  baz",
        mark.as_str(),
    ] {
        assert!(
            env.contains(&want),
            "{want} missing from the init environment {env:?}\n{o}"
        );
    }
    // Runtimes add HOME from /etc/passwd when the config lacks it; nothing
    // else may leak in from the runtime's own environment.
    for var in &env {
        assert!(
            var.starts_with("PATH=")
                || var.starts_with("TERM=")
                || var.starts_with("FOO=")
                || var.starts_with(&format!("{MARK_VAR}="))
                || *var == "HOME=/root",
            "unexpected variable {var:?} in the init's environment"
        );
    }
    t.leak_check(&id, &b);
}

#[test]
fn user_groups_and_umask() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.set(
        "/process/user",
        json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 65534], "umask": 0o027}),
    );
    let o = run_sh(&t, &mut b, "cat /proc/self/status; id -un; id -gn");
    let s = o.stdout.as_str();
    assert_eq!(status_field(s, "Uid"), "1000\t1000\t1000\t1000");
    assert_eq!(status_field(s, "Gid"), "1000\t1000\t1000\t1000");
    assert_eq!(status_field(s, "Groups"), "5 65534");
    assert_eq!(status_field(s, "Umask"), "0027");
    let tail: Vec<&str> = o.lines().into_iter().rev().take(2).collect();
    assert_eq!(tail, ["test", "test"]);

    // A file made with that umask gets 0640.
    let mut b = t.bundle(&["true"]);
    b.set("/process/user/umask", json!(0o027));
    let o = run_sh(&t, &mut b, "touch /tmp/f && stat -c %a /tmp/f");
    assert_eq!(o.out(), "640");
}

#[test]
fn root_has_no_supplementary_groups_unless_asked() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    let o = run_sh(&t, &mut b, "cat /proc/self/status");
    assert_eq!(status_field(&o.stdout, "Uid"), "0\t0\t0\t0");
    assert_eq!(status_field(&o.stdout, "Groups"), "");
}

fn limit(limits: &str, name: &str) -> (String, String) {
    let line = limits
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in\n{limits}"));
    let cols: Vec<&str> = line[name.len()..].split_whitespace().collect();
    (cols[0].to_string(), cols[1].to_string())
}

#[test]
fn rlimits() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.set(
        "/process/rlimits",
        json!([
            {"type": "RLIMIT_NOFILE", "soft": 1000, "hard": 2000},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 4096},
            {"type": "RLIMIT_NPROC", "soft": 500, "hard": 600},
            {"type": "RLIMIT_STACK", "soft": 4194304, "hard": 8388608},
        ]),
    );
    let o = run_sh(&t, &mut b, "cat /proc/self/limits");
    let l = o.stdout.as_str();
    assert_eq!(limit(l, "Max open files"), ("1000".into(), "2000".into()));
    assert_eq!(limit(l, "Max core file size"), ("0".into(), "4096".into()));
    assert_eq!(limit(l, "Max processes"), ("500".into(), "600".into()));
    assert_eq!(
        limit(l, "Max stack size"),
        ("4194304".into(), "8388608".into())
    );
}

#[test]
fn no_new_privileges() {
    let t = berth();
    for (nnp, want) in [(true, "1"), (false, "0")] {
        let mut b = t.bundle(&["true"]);
        b.set("/process/noNewPrivileges", json!(nnp));
        let o = run_sh(&t, &mut b, "cat /proc/self/status");
        assert_eq!(
            status_field(&o.stdout, "NoNewPrivs"),
            want,
            "noNewPrivileges {nnp}"
        );
    }
}

fn caps_of(status: &str) -> [String; 5] {
    ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"].map(|f| status_field(status, f).to_string())
}

fn hex(bits: &[u32]) -> String {
    format!("{:016x}", bits.iter().fold(0u64, |m, b| m | 1 << b))
}

const CHOWN: u32 = 0;
const KILL: u32 = 5;
const NET_BIND_SERVICE: u32 = 10;
const AUDIT_WRITE: u32 = 29;

#[test]
fn capability_sets_as_root() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    let o = run_sh(&t, &mut b, "cat /proc/self/status");
    let base = hex(&[AUDIT_WRITE, KILL, NET_BIND_SERVICE]);
    assert_eq!(
        caps_of(&o.stdout),
        [hex(&[]), base.clone(), base.clone(), base, hex(&[])],
        "CapInh CapPrm CapEff CapBnd CapAmb"
    );
}

#[test]
fn capability_sets_for_a_user_with_ambient_caps() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    b.set(
        "/process/capabilities",
        json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"],
            "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"],
            "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"],
            "ambient": ["CAP_NET_BIND_SERVICE"],
        }),
    );
    let o = run_sh(&t, &mut b, "cat /proc/self/status");
    // After execve a non-root process keeps only its ambient set in
    // permitted and effective (capabilities(7)).
    assert_eq!(
        caps_of(&o.stdout),
        [
            hex(&[KILL, NET_BIND_SERVICE]),
            hex(&[NET_BIND_SERVICE]),
            hex(&[NET_BIND_SERVICE]),
            hex(&[CHOWN, KILL, NET_BIND_SERVICE, AUDIT_WRITE]),
            hex(&[NET_BIND_SERVICE]),
        ],
        "CapInh CapPrm CapEff CapBnd CapAmb"
    );
}

#[test]
fn only_stdio_is_open_inside() {
    let t = berth();
    let b = {
        let mut b = t.bundle(&["true"]);
        b.args(&["ls", "/proc/self/fd"]);
        b
    };
    let id = t.id("fds");
    // Descriptors the runtime inherits without --preserve-fds stay out.
    let (_r1, w1) = pipe();
    let (_r2, w2) = pipe();
    let mut c = t.run_command(&id, &b, &[]);
    pass_fds(&mut c, vec![w1, w2]);
    let o = t.output(&mut c);
    drop(c);
    o.ok();
    // 3 is the directory ls itself is reading.
    assert_eq!(fd_list(&o.stdout), [0, 1, 2, 3]);
    t.leak_check(&id, &b);
}

#[test]
fn preserve_fds_passes_extra_descriptors() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.args(&sh("echo three >&3; echo four >&4; ls /proc/self/fd"));
    let id = t.id("pfds");
    let (mut r3, w3) = pipe();
    let (mut r4, w4) = pipe();
    let mut c = t.run_command(&id, &b, &["--preserve-fds", "2"]);
    pass_fds(&mut c, vec![w3, w4]);
    let o = t.output(&mut c);
    drop(c);
    o.ok();
    assert_eq!(fd_list(&o.stdout), [0, 1, 2, 3, 4, 5]);
    let mut s = String::new();
    r3.read_to_string(&mut s).unwrap();
    assert_eq!(s, "three\n");
    s.clear();
    r4.read_to_string(&mut s).unwrap();
    assert_eq!(s, "four\n");
    t.leak_check(&id, &b);
}

#[test]
fn listen_fds_are_passed_with_the_socket_activation_variables() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.args(&sh(
        "echo \"$LISTEN_FDS $LISTEN_PID\"; echo hi >&3; ls /proc/self/fd",
    ));
    b.write().unwrap();
    let id = t.id("listen");
    let (mut r, w) = pipe();
    // LISTEN_PID must name the runtime process itself: exec keeps the pid.
    let mut c = Command::new("/bin/sh");
    c.args(["-c", "LISTEN_PID=$$ exec \"$0\" \"$@\""])
        .arg(t.bin())
        .args(t.global_args())
        .arg("--root")
        .arg(t.root())
        .args(["run", "--bundle"])
        .arg(b.path())
        .arg(&id)
        .env("LISTEN_FDS", "1")
        .env(MARK_VAR, t.mark_for(&id))
        .stdin(Stdio::null());
    pass_fds(&mut c, vec![w]);
    let o = t.output(&mut c);
    drop(c);
    o.ok();
    let lines = o.lines();
    assert_eq!(lines[0], "1 1");
    assert_eq!(fd_list(&lines[1..].join(" ")), [0, 1, 2, 3, 4]);
    let mut s = String::new();
    r.read_to_string(&mut s).unwrap();
    assert_eq!(s, "hi\n");
    t.leak_check(&id, &b);
}

#[test]
fn stdio_is_passed_through() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.args(&sh("cat; echo to-stderr >&2; exit 4"));
    let id = t.id("stdio");
    let input = t.dir().join("input");
    fs::write(&input, "from stdin\n").unwrap();
    let mut c = t.run_command(&id, &b, &[]);
    c.stdin(File::open(&input).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let mut e = String::new();
    err.read_to_string(&mut e).unwrap();
    let status = wait_within(child, Duration::from_secs(60)).expect("run finished");
    assert_eq!(testbed::exit_code(status), 4);
    assert_eq!(reader.join().unwrap(), "from stdin\n");
    assert!(e.contains("to-stderr"), "stderr {e:?}");
    t.leak_check(&id, &b);
}

#[test]
fn runtime_binary_is_not_reachable_through_proc_exe() {
    let t = berth();
    let marks = t.host_dir("marks");
    let mut b = t.bundle(&sh(
        "sleep 1000 & for p in /proc/[0-9]*; do readlink $p/exe; done > /marks/exe; \
         echo > /marks/done; wait",
    ));
    b.bind(&marks, "/marks", &[]);
    let id = t.id("exe");
    let before = fs::read(t.bin()).unwrap();
    t.create(&id, &b, &[]).ok();
    t.start(&id).ok();
    wait_file(&marks.join("done"));
    let exes = fs::read_to_string(marks.join("exe")).unwrap();
    for exe in exes.lines() {
        assert_eq!(
            exe, "/bin/busybox",
            "a container process runs {exe}:\n{exes}"
        );
    }
    // From the host, no process of the container runs the runtime binary.
    let pid = t.pid(&id);
    let host_exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_ne!(host_exe, fs::canonicalize(t.bin()).unwrap());
    t.delete(&id, true).ok();
    assert_eq!(
        fs::read(t.bin()).unwrap(),
        before,
        "the runtime binary changed"
    );
    t.leak_check(&id, &b);
}
