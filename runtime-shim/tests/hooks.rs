//! Lifecycle hooks (runtime spec `hooks` and "Lifecycle"): order, the
//! lifecycle point each runs at, the state on stdin, args and env,
//! timeouts, and what a failing hook does.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// A bundle whose every hook appends its name to `<log>/log` and saves
/// its stdin to `<log>/<kind>.json`. The log dir is bind-mounted at the
/// same path inside the container, so the startContainer hook (which runs
/// there, with the container's /bin/sh) writes to the same place.
fn logging_bundle(t: &Berth, log: &Path, args: &[&str]) -> Bundle {
    let mut b = t.bundle(args);
    let l = log.to_str().unwrap();
    b.bind(log, l, &[]);
    for kind in KINDS {
        let script = format!("echo {kind} >> {l}/log; cat > {l}/{kind}.json");
        b.hook(kind, "/bin/sh", &["sh", "-c", &script], &[], None);
    }
    b
}

fn log_of(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("log"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn state_of(dir: &Path, kind: &str) -> Value {
    let p: PathBuf = dir.join(format!("{kind}.json"));
    let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{kind} stdin is not JSON ({e}): {text}"))
}

#[test]
fn hooks_run_in_order_at_their_lifecycle_points() {
    let t = berth();
    let log = t.host_dir("hooklog");
    let b = logging_bundle(&t, &log, &["sleep", "1000"]);
    let id = t.id("hooks");

    t.create(&id, &b, &[]).ok();
    // (runc 1.1 runs poststart during create; the spec puts it after start.)
    assert_eq!(
        log_of(&log),
        ["prestart", "createRuntime", "createContainer"]
    );
    let pid = t.pid(&id);

    t.start(&id).ok();
    assert_eq!(
        log_of(&log),
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart"
        ]
    );

    t.kill(&id, "KILL").ok();
    assert!(t.wait_status(&id, "stopped", Duration::from_secs(10)));
    assert_eq!(log_of(&log).len(), 5, "poststop ran before delete");
    t.delete(&id, false).ok();
    assert_eq!(log_of(&log), KINDS);

    for kind in KINDS {
        let st = state_of(&log, kind);
        assert_eq!(st["id"], id.as_str(), "{kind}: {st}");
        assert_eq!(st["bundle"], b.path().to_str().unwrap(), "{kind}: {st}");
        assert!(st["ociVersion"].is_string(), "{kind}: {st}");
        // "pid ... as seen by the host", also for the hooks that run
        // inside the container (runc passes 1 to those).
        if kind != "poststop" {
            assert_eq!(st["pid"], pid, "{kind}: {st}");
        }
    }
    let status = |k: &str| {
        state_of(&log, k)["status"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(status("prestart"), "creating");
    assert_eq!(status("createRuntime"), "creating");
    assert_eq!(status("createContainer"), "creating");
    assert_eq!(status("startContainer"), "created");
    assert_eq!(status("poststart"), "running");
    assert_eq!(status("poststop"), "stopped");
    t.leak_check(&id, &b);
}

#[test]
fn run_runs_every_hook_once() {
    let t = berth();
    let log = t.host_dir("hooklog");
    let b = logging_bundle(&t, &log, &["true"]);
    let id = t.id("runhooks");
    t.run(&id, &b, &[]).ok();
    assert_eq!(log_of(&log), KINDS);
    t.leak_check(&id, &b);
}

#[test]
fn hook_args_and_env() {
    let t = berth();
    let log = t.host_dir("hooklog");
    let mut b = t.bundle(&["true"]);
    let out = log.join("args");
    let script = format!(
        "echo \"$0|$1|$HOOKVAR|$PATH\" > {}; env | grep -c ^BERTH_ONLY_IN_RUNTIME= >> {}; true",
        out.display(),
        out.display()
    );
    b.hook(
        "createRuntime",
        "/bin/sh",
        &["sh", "-c", &script, "zero", "one"],
        &["HOOKVAR=v 1", "PATH=/usr/bin:/bin"],
        None,
    );
    let id = t.id("hookargs");
    // The runtime's own environment must not leak into the hook.
    let mut c = t.run_command(&id, &b, &[]);
    c.env("BERTH_ONLY_IN_RUNTIME", "1");
    t.output(&mut c).ok();
    assert_eq!(
        fs::read_to_string(&out).unwrap(),
        "zero|one|v 1|/usr/bin:/bin\n0\n"
    );
    t.leak_check(&id, &b);
}

#[test]
fn hook_timeout_fails_create() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.hook(
        "createRuntime",
        "/bin/sleep",
        &["sleep", "30"],
        &[],
        Some(1),
    );
    let id = t.id("hooktimeout");
    let started = Instant::now();
    let o = t.create(&id, &b, &[]);
    o.fails();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        o.stderr.contains("time"),
        "the message should say the hook timed out:\n{o}"
    );
    if t.is_berth() {
        o.stderr_has(&["createRuntime", "/bin/sleep"]);
    }
    t.leak_check(&id, &b);
}

#[test]
fn failing_create_hooks_fail_create_and_leave_nothing() {
    let t = berth();
    for kind in ["prestart", "createRuntime", "createContainer"] {
        let mut b = t.bundle(&["true"]);
        b.hook(
            kind,
            "/bin/sh",
            &["sh", "-c", "echo hook-said-no >&2; exit 3"],
            &[],
            None,
        );
        let id = t.id("hookfail");
        let o = t.create(&id, &b, &[]);
        o.fails();
        if t.is_berth() {
            o.stderr_has(&[kind]);
        }
        t.state(&id).fails();
        t.leak_check(&id, &b);
    }
}

#[test]
fn failing_poststart_hook_only_warns() {
    let t = berth();
    let mut b = t.bundle(&["sleep", "1000"]);
    b.hook("poststart", "/bin/sh", &["sh", "-c", "exit 4"], &[], None);
    let id = t.id("poststartfail");
    t.create(&id, &b, &[]).ok();
    let o = t.start(&id);
    // Runtime spec: "If any poststart hook fails, the runtime MUST log a
    // warning, but the remaining hooks and lifecycle continue". (runc
    // instead kills the container and fails `start`.)
    o.ok();
    assert!(o.stderr.contains("poststart"), "no warning:\n{o}");
    assert_eq!(t.status(&id), "running");
    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
}

#[test]
fn failing_poststop_hook_only_warns() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.hook("poststop", "/bin/sh", &["sh", "-c", "exit 5"], &[], None);
    let id = t.id("poststopfail");
    t.create(&id, &b, &[]).ok();
    t.start(&id).ok();
    assert!(t.wait_status(&id, "stopped", Duration::from_secs(10)));
    t.delete(&id, false).ok();
    t.leak_check(&id, &b);
}
