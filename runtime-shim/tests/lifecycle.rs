//! The container lifecycle through the `berth` binary: create, start,
//! state, kill, delete, list and run, with their failure cases.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn create_holds_the_program_until_start() {
    let t = berth();
    let marks = t.host_dir("marks");
    let mut b = t.bundle(&sh("echo ran > /marks/started; exec sleep 1000"));
    b.bind(&marks, "/marks", &[]);
    let id = t.id("hold");
    t.create(&id, &b, &[]).ok();

    let st = t.state_json(&id);
    assert_eq!(st["status"], "created");
    let pid = st["pid"].as_i64().expect("pid") as i32;
    assert!(pid > 1, "created container has pid {pid}");
    assert!(alive(pid), "init {pid} is not alive after create");
    thread::sleep(Duration::from_millis(300));
    assert!(
        !marks.join("started").exists(),
        "the program ran before start"
    );

    t.start(&id).ok();
    wait_file(&marks.join("started"));
    assert_eq!(t.status(&id), "running");
    assert_eq!(t.pid(&id), pid, "start changed the init pid");

    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
}

#[test]
fn state_reports_the_spec_fields() {
    let t = berth();
    let mut b = t.bundle(&["sleep", "1000"]);
    b.set("/annotations", json!({"org.berth.test/a": "1", "b": "two"}));
    let id = t.id("state");
    t.create(&id, &b, &[]).ok();

    let st = t.state_json(&id);
    let version = st["ociVersion"].as_str().expect("ociVersion is a string");
    assert!(version.starts_with("1."), "ociVersion {version:?}");
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["status"], "created");
    assert!(st["pid"].as_i64().unwrap() > 0);
    assert_eq!(st["bundle"], b.path().to_str().unwrap());
    assert_eq!(
        st["annotations"],
        json!({"org.berth.test/a": "1", "b": "two"})
    );
    let created = st["created"].as_str().expect("created is a string");
    assert!(
        created.len() >= 20 && created.as_bytes()[10] == b'T' && created.ends_with('Z'),
        "created {created:?} is not RFC 3339 UTC"
    );

    t.start(&id).ok();
    let st = t.state_json(&id);
    assert_eq!(st["status"], "running");
    t.kill(&id, "KILL").ok();
    assert!(t.wait_status(&id, "stopped", Duration::from_secs(10)));
    let st = t.state_json(&id);
    assert_eq!(st["pid"], 0, "a stopped container reports pid 0");
    t.delete(&id, false).ok();
    t.leak_check(&id, &b);
}

#[test]
fn start_twice_fails() {
    let t = berth();
    let b = t.bundle(&["sleep", "1000"]);
    let id = t.id("twice");
    t.create(&id, &b, &[]).ok();
    t.start(&id).ok();
    let pid = t.pid(&id);
    let again = t.start(&id);
    again.fails();
    assert_eq!(again.code, 1);
    assert_eq!(t.status(&id), "running");
    assert_eq!(t.pid(&id), pid);
    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
}

#[test]
fn duplicate_id_fails_and_keeps_the_first() {
    let t = berth();
    let b1 = t.bundle(&["sleep", "1000"]);
    let b2 = t.bundle(&["sleep", "1000"]);
    let id = t.id("dup");
    t.create(&id, &b1, &[]).ok();
    let pid = t.pid(&id);
    let o = t.create(&id, &b2, &[]);
    o.fails().stderr_has(&["exists"]);
    let st = t.state_json(&id);
    assert_eq!(st["pid"], pid);
    assert_eq!(st["bundle"], b1.path().to_str().unwrap());
    assert_eq!(st["status"], "created");
    // The failed create must not leave anything of its own behind.
    assert!(testbed::cgroup_dirs(b2.cgroups_path()).is_empty());
    t.delete(&id, true).ok();
    t.leak_check(&id, &b1);
}

#[test]
fn unknown_id_fails_clearly() {
    let t = berth();
    let id = t.id("ghost");
    for args in [
        vec!["state", id.as_str()],
        vec!["start", id.as_str()],
        vec!["kill", id.as_str(), "KILL"],
        vec!["delete", id.as_str()],
    ] {
        let o = t.cmd_for(&id, &args);
        assert_eq!(o.code, 1, "{o}");
        o.stderr_has(&["does not exist"]);
        if t.is_berth() {
            o.stderr_has(&[&id]);
        }
    }
    assert!(!t.root().join(&id).exists());
}

#[test]
fn delete_of_running_container_needs_force() {
    let t = berth();
    let b = t.bundle(&["sleep", "1000"]);
    let id = t.id("nodel");
    t.create(&id, &b, &[]).ok();
    t.start(&id).ok();
    let pid = t.pid(&id);
    t.delete(&id, false).fails();
    assert_eq!(t.status(&id), "running");
    assert!(alive(pid));
    assert!(!testbed::cgroup_dirs(b.cgroups_path()).is_empty());
    t.delete(&id, true).ok();
    assert!(!alive(pid));
    t.leak_check(&id, &b);
}

#[test]
fn delete_force_of_created_container() {
    let t = berth();
    let b = t.bundle(&["sleep", "1000"]);
    let id = t.id("delc");
    t.create(&id, &b, &[]).ok();
    let pid = t.pid(&id);
    t.delete(&id, true).ok();
    assert!(eventually(Duration::from_secs(5), || !alive(pid)));
    t.leak_check(&id, &b);
}

fn trapping_container(t: &Berth, marks: &Path) -> (String, Bundle) {
    let mut b = t.bundle(&sh(
        "trap 'echo TERM > /marks/sig; exit 3' TERM; echo > /marks/ready; \
         while :; do sleep 0.1; done",
    ));
    b.bind(marks, "/marks", &[]);
    let id = t.id("trap");
    t.create(&id, &b, &[]).ok();
    t.start(&id).ok();
    wait_file(&marks.join("ready"));
    (id, b)
}

#[test]
fn kill_by_name_and_number() {
    let t = berth();
    for sig in ["TERM", "SIGTERM", "15"] {
        let marks = t.host_dir("marks");
        let (id, b) = trapping_container(&t, &marks);
        t.kill(&id, sig).ok();
        wait_file(&marks.join("sig"));
        assert_eq!(fs::read_to_string(marks.join("sig")).unwrap(), "TERM\n");
        assert!(t.wait_status(&id, "stopped", Duration::from_secs(10)));
        t.delete(&id, false).ok();
        t.leak_check(&id, &b);
    }
    for sig in ["KILL", "9"] {
        let b = t.bundle(&["sleep", "1000"]);
        let id = t.id("kill");
        t.create(&id, &b, &[]).ok();
        t.start(&id).ok();
        t.kill(&id, sig).ok();
        assert!(
            t.wait_status(&id, "stopped", Duration::from_secs(10)),
            "{sig}"
        );
        t.delete(&id, false).ok();
        t.leak_check(&id, &b);
    }
}

#[test]
fn kill_default_signal_is_term() {
    let t = berth();
    let marks = t.host_dir("marks");
    let (id, b) = trapping_container(&t, &marks);
    t.cmd_for(&id, &["kill", &id]).ok();
    wait_file(&marks.join("sig"));
    assert!(t.wait_status(&id, "stopped", Duration::from_secs(10)));
    t.delete(&id, false).ok();
    t.leak_check(&id, &b);
}

#[test]
fn kill_all_reaches_every_process_of_the_container() {
    let t = berth();
    let marks = t.host_dir("marks");
    // Without a pid namespace, killing the init would not take the
    // others with it: only --all does.
    let mut b = t.bundle(&sh("sleep 1000 & sleep 1000 & echo > /marks/ready; wait"));
    b.remove_namespace("pid").bind(&marks, "/marks", &[]);
    let id = t.id("all");
    t.create(&id, &b, &[]).ok();
    t.start(&id).ok();
    wait_file(&marks.join("ready"));
    let procs = Path::new("/sys/fs/cgroup/pids")
        .join(b.cgroups_path().trim_start_matches('/'))
        .join("cgroup.procs");
    let pids: Vec<i32> = fs::read_to_string(&procs)
        .unwrap_or_else(|e| panic!("{}: {e}", procs.display()))
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 3, "expected sh and two sleeps, got {pids:?}");
    t.cmd_for(&id, &["kill", "--all", &id, "KILL"]).ok();
    assert!(
        eventually(Duration::from_secs(10), || pids.iter().all(|&p| !alive(p))),
        "some of {pids:?} survived kill --all"
    );
    assert!(t.wait_status(&id, "stopped", Duration::from_secs(10)));
    t.delete(&id, false).ok();
    t.leak_check(&id, &b);
}

#[test]
fn list_formats() {
    let t = berth();
    let b1 = t.bundle(&["sleep", "1000"]);
    let b2 = t.bundle(&["sleep", "1000"]);
    let a = t.id("lista");
    let z = t.id("listz");
    t.create(&z, &b2, &[]).ok();
    t.create(&a, &b1, &[]).ok();
    t.start(&a).ok();

    let quiet = t.cmd(&["list", "-q"]);
    quiet.ok();
    assert_eq!(quiet.lines(), [a.as_str(), z.as_str()]);

    let table = t.cmd(&["list"]);
    table.ok();
    let lines = table.lines();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    );
    assert_eq!(lines.len(), 3, "{table}");
    let row_a: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row_a[0], a);
    assert_eq!(row_a[1], t.pid(&a).to_string());
    assert_eq!(row_a[2], "running");
    assert_eq!(row_a[3], b1.path().to_str().unwrap());
    assert_eq!(row_a[5], "root");
    let row_z: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!((row_z[0], row_z[2]), (z.as_str(), "created"));

    let js = t.cmd(&["list", "--format", "json"]);
    let list = js.ok().json();
    let list = list.as_array().expect("a JSON array");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], a.as_str());
    assert_eq!(list[0]["status"], "running");
    assert_eq!(list[0]["pid"], t.pid(&a));
    assert_eq!(list[0]["bundle"], b1.path().to_str().unwrap());
    assert_eq!(list[1]["id"], z.as_str());
    assert_eq!(list[1]["status"], "created");

    t.delete(&a, true).ok();
    t.delete(&z, true).ok();
    assert_eq!(t.cmd(&["list", "-q"]).ok().out(), "");
    t.leak_check(&a, &b1);
    t.leak_check(&z, &b2);
}

#[test]
fn run_propagates_the_exit_code() {
    let t = berth();
    let mut b = t.bundle(&sh("exit 7"));
    let id = t.id("exit7");
    let o = t.run(&id, &b, &[]);
    assert_eq!(o.code, 7, "{o}");
    t.state(&id).fails();
    t.leak_check(&id, &b);

    b.args(&sh("echo hello; exit 0"));
    let id = t.id("exit0");
    let o = t.run(&id, &b, &[]);
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(o.stdout, "hello\n");
    t.leak_check(&id, &b);
}

#[test]
fn run_of_a_killed_container_exits_128_plus_signal() {
    let t = berth();
    let b = t.bundle(&["sleep", "1000"]);
    let id = t.id("run137");
    thread::scope(|s| {
        let runner = s.spawn(|| t.run(&id, &b, &[]));
        assert!(
            t.wait_status(&id, "running", Duration::from_secs(20)),
            "run did not start the container"
        );
        t.kill(&id, "KILL").ok();
        let o = runner.join().unwrap();
        assert_eq!(o.code, 137, "{o}");
    });
    t.leak_check(&id, &b);
}

#[test]
fn run_detach_returns_with_the_container_running() {
    let t = berth();
    let b = t.bundle(&["sleep", "1000"]);
    let id = t.id("detach");
    let started = Instant::now();
    t.run(&id, &b, &["--detach"]).ok();
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(t.status(&id), "running");
    let pid = t.pid(&id);
    assert!(alive(pid));
    t.kill(&id, "KILL").ok();
    assert!(t.wait_status(&id, "stopped", Duration::from_secs(10)));
    t.delete(&id, false).ok();
    t.leak_check(&id, &b);
}

#[test]
fn run_keep_leaves_a_stopped_container() {
    let t = berth();
    let b = t.bundle(&sh("exit 3"));
    let id = t.id("keep");
    let o = t.run(&id, &b, &["--keep"]);
    assert_eq!(o.code, 3, "{o}");
    let st = t.state_json(&id);
    assert_eq!(st["status"], "stopped");
    assert_eq!(st["pid"], 0);
    t.delete(&id, false).ok();
    t.leak_check(&id, &b);
}

#[test]
fn pid_file_holds_the_init_pid() {
    let t = berth();
    let b = t.bundle(&["sleep", "1000"]);
    let id = t.id("pidfile");
    let pf = t.dir().join("init.pid");
    t.create(&id, &b, &["--pid-file", pf.to_str().unwrap()])
        .ok();
    let text = fs::read_to_string(&pf).unwrap();
    let pid: i32 = text
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("pid file {text:?}"));
    assert_eq!(pid, t.pid(&id));
    assert!(alive(pid));

    let id2 = t.id("pidfile-rel");
    let b2 = t.bundle(&["sleep", "1000"]);
    // A relative --pid-file is relative to the caller's working directory.
    let mut c = t.command(
        Some(&id2),
        &[
            "create",
            "--bundle",
            b2.path().to_str().unwrap(),
            "--pid-file",
            "rel.pid",
            &id2,
        ],
    );
    c.current_dir(t.dir());
    t.output(&mut c).ok();
    let rel: i32 = fs::read_to_string(t.dir().join("rel.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(rel, t.pid(&id2));

    t.delete(&id, true).ok();
    t.delete(&id2, true).ok();
    t.leak_check(&id, &b);
    t.leak_check(&id2, &b2);
}

#[test]
fn status_follows_an_init_killed_from_outside() {
    let t = berth();
    let b = t.bundle(&["sleep", "1000"]);
    let id = t.id("outside");
    t.create(&id, &b, &[]).ok();
    t.start(&id).ok();
    let pid = t.pid(&id);
    testbed::nix::sys::signal::kill(
        testbed::nix::unistd::Pid::from_raw(pid),
        testbed::nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(
        t.wait_status(&id, "stopped", Duration::from_secs(10)),
        "state still says {}",
        t.status(&id)
    );
    assert_eq!(t.state_json(&id)["pid"], 0);
    t.delete(&id, false).ok();
    t.leak_check(&id, &b);
}

#[test]
fn concurrent_starts_serialise() {
    let t = berth();
    let marks = t.host_dir("marks");
    let mut b = t.bundle(&sh("echo started >> /marks/log; exec sleep 1000"));
    b.bind(&marks, "/marks", &[]);
    let id = t.id("race");
    t.create(&id, &b, &[]).ok();
    let gate = Barrier::new(8);
    let outs: Vec<Output> = thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    gate.wait();
                    t.start(&id)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = outs.iter().filter(|o| o.success()).count();
    assert_eq!(ok, 1, "exactly one start must succeed:\n{outs:#?}");
    wait_file(&marks.join("log"));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(fs::read_to_string(marks.join("log")).unwrap(), "started\n");
    assert_eq!(t.status(&id), "running");
    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
}

#[test]
fn concurrent_deletes_serialise() {
    let t = berth();
    let b = t.bundle(&["sleep", "1000"]);
    let id = t.id("delrace");
    t.create(&id, &b, &[]).ok();
    t.start(&id).ok();
    let gate = Barrier::new(8);
    let outs: Vec<Output> = thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    gate.wait();
                    t.delete(&id, true)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(outs.iter().any(|o| o.success()), "{outs:#?}");
    for o in &outs {
        assert!(
            o.success() || o.stderr.contains("does not exist"),
            "a losing delete must fail with 'does not exist':\n{o}"
        );
    }
    t.leak_check(&id, &b);
}
