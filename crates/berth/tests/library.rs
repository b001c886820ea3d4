//! The library API from Rust: create, start, state, kill, wait, delete,
//! list and load on real containers, and the same from eight threads of
//! one process at once.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Once};
use std::thread;
use std::time::{Duration, Instant};

use berth::{parse_signal, CreateOptions, Error, Runtime, Status};
use serde_json::json;
use testbed::{eventually, Bundle, Sandbox, Watchdog};

/// Makes this test process the reaper of the containers' inits, so
/// `Container::wait` works whoever forked them.
fn subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| berth::process::set_child_subreaper().expect("PR_SET_CHILD_SUBREAPER"));
}

/// A sandbox, a runtime on its root, and a watchdog that fails the test
/// instead of letting a deadlock hang the run. Bind all three (the
/// watchdog drops first).
fn setup() -> (Sandbox, Runtime, Watchdog) {
    testbed::require_root();
    subreaper();
    let sb = Sandbox::new();
    let rt = Runtime::new(sb.root());
    let w = sb.watchdog(Duration::from_secs(200));
    (sb, rt, w)
}

fn wait_file(p: &Path) {
    assert!(
        eventually(Duration::from_secs(10), || p.exists()),
        "{} did not appear",
        p.display()
    );
}

#[test]
fn create_start_state_kill_wait_delete() {
    let (sb, rt, _w) = setup();
    let marks = sb.host_dir("marks");
    let mut b = sb.bundle(&["sh", "-c", "echo > /marks/started; exec sleep 1000"]);
    b.bind(&marks, "/marks", &[])
        .set("/annotations", json!({"org.berth.test": "yes"}));
    b.write().unwrap();
    let id = sb.id("lib");

    let c = rt.create(&id, &CreateOptions::new(b.path())).unwrap();
    assert_eq!(c.id(), id);
    assert_eq!(c.bundle(), b.path());
    assert_eq!(c.status(), Status::Created);
    let pid = c.pid().expect("a created container has a pid");
    assert!(pid > 1);
    thread::sleep(Duration::from_millis(200));
    assert!(
        !marks.join("started").exists(),
        "the program ran before start"
    );

    let st = c.state();
    assert!(st.oci_version.starts_with("1."), "{}", st.oci_version);
    assert_eq!(st.id, id);
    assert_eq!(st.pid, pid);
    assert_eq!(st.status, Status::Created);
    assert_eq!(st.bundle, b.path());
    assert_eq!(st.rootfs, b.rootfs());
    assert_eq!(st.owner, "root");
    assert_eq!(
        st.annotations.get("org.berth.test").map(String::as_str),
        Some("yes")
    );
    let js = serde_json::to_value(&st).unwrap();
    assert_eq!(js["status"], "created");
    assert_eq!(js["ociVersion"], st.oci_version.as_str());
    assert_eq!(js["annotations"], json!({"org.berth.test": "yes"}));

    c.start().unwrap();
    wait_file(&marks.join("started"));
    assert_eq!(c.status(), Status::Running);
    assert_eq!(c.status().to_string(), "running");
    // A second handle sees the same container.
    let again = rt.load(&id).unwrap();
    assert_eq!(again.pid(), Some(pid));
    assert_eq!(again.status(), Status::Running);

    c.kill(libc::SIGKILL, false).unwrap();
    assert_eq!(c.wait().unwrap(), 128 + libc::SIGKILL);
    assert_eq!(c.status(), Status::Stopped);
    assert_eq!(c.state().pid, 0);
    assert_eq!(c.pid(), None);
    c.delete(false).unwrap();
    match rt.load(&id) {
        Err(Error::NotFound(gone)) => assert_eq!(gone, id),
        Err(e) => panic!("load after delete: {e}"),
        Ok(_) => panic!("load after delete found the container"),
    }
    sb.leak_check(&id, &b);
}

#[test]
fn wait_returns_the_exit_code() {
    let (sb, rt, _w) = setup();
    let b = sb.bundle(&["sh", "-c", "exit 7"]);
    let id = sb.id("exit7");
    let c = rt.create(&id, &CreateOptions::new(b.path())).unwrap();
    c.start().unwrap();
    assert_eq!(c.wait().unwrap(), 7);
    assert_eq!(c.status(), Status::Stopped);
    c.delete(false).unwrap();
    sb.leak_check(&id, &b);
}

#[test]
fn lifecycle_errors() {
    let (sb, rt, _w) = setup();
    let b = sb.bundle(&["sleep", "1000"]);
    let id = sb.id("errs");
    let c = rt.create(&id, &CreateOptions::new(b.path())).unwrap();

    match rt.create(&id, &CreateOptions::new(b.path())) {
        Err(Error::AlreadyExists(dup)) => assert_eq!(dup, id),
        Err(e) => panic!("duplicate create: {e}"),
        Ok(_) => panic!("duplicate create succeeded"),
    }
    for bad in ["../x", "a/b", ""] {
        match rt.create(bad, &CreateOptions::new(b.path())) {
            Err(Error::InvalidId(got)) => assert_eq!(got, bad),
            Err(e) => panic!("id {bad:?}: {e}"),
            Ok(_) => panic!("id {bad:?} was accepted"),
        }
    }
    assert!(matches!(
        rt.load("no-such-container"),
        Err(Error::NotFound(_))
    ));
    if let Err(e) = rt.load("no-such-container") {
        assert!(e.to_string().contains("no-such-container"), "{e}");
    }

    c.start().unwrap();
    let held = rt.load(&id).unwrap();
    let err = held
        .delete(false)
        .expect_err("delete of a running container without force");
    assert!(err.to_string().contains(&id), "{err}");
    let err = c.start().expect_err("second start");
    assert!(err.to_string().contains(&id), "{err}");
    assert_eq!(c.status(), Status::Running);
    c.delete(true).unwrap();
    sb.leak_check(&id, &b);
}

#[test]
fn config_errors_name_the_field() {
    let (sb, rt, _w) = setup();
    let mut b = sb.bundle(&["true"]);
    b.push("/linux/namespaces", json!({"type": "foo"}));
    b.write().unwrap();
    let id = sb.id("badns");
    match rt.create(&id, &CreateOptions::new(b.path())) {
        Err(Error::Spec { field, msg }) => {
            assert_eq!(field, "linux.namespaces[5].type", "{msg}");
            assert!(msg.contains("foo"), "{msg}");
        }
        Err(e) => panic!("unknown namespace type: {e}"),
        Ok(_) => panic!("unknown namespace type was accepted"),
    }
    sb.leak_check(&id, &b);

    let b = sb.bundle(&["/bin/nope"]);
    b.write().unwrap();
    let id = sb.id("noexec");
    match rt.create(&id, &CreateOptions::new(b.path())) {
        Err(e) => assert!(e.to_string().contains("/bin/nope"), "{e}"),
        Ok(_) => panic!("create of a missing executable succeeded"),
    }
    sb.leak_check(&id, &b);
}

#[test]
fn relative_bundle_and_pid_file() {
    let (sb, rt, _w) = setup();
    let b = sb.bundle(&["sleep", "1000"]);
    let id = sb.id("pidfile");
    let pid_file = sb.dir().join("c.pid");
    // The same bundle, reached from the working directory by `..`s.
    let cwd = std::env::current_dir().unwrap();
    let up = "../".repeat(cwd.components().count() - 1);
    let rel = PathBuf::from(format!(
        "{up}{}",
        b.path().to_str().unwrap().trim_start_matches('/')
    ));
    assert!(rel.is_relative() && rel.join("config.json").exists());
    let mut opts = CreateOptions::new(&rel);
    opts.pid_file = Some(pid_file.clone());
    let c = rt.create(&id, &opts).unwrap();
    assert_eq!(c.bundle(), b.path());
    assert_eq!(c.state().bundle, b.path());
    let text = fs::read_to_string(&pid_file).unwrap();
    assert_eq!(text.trim().parse::<i32>().unwrap(), c.pid().unwrap());
    c.delete(true).unwrap();
    sb.leak_check(&id, &b);
}

#[test]
fn list_is_sorted_by_id() {
    let (sb, rt, _w) = setup();
    assert!(rt.list().unwrap().is_empty());
    // One bundle (and so one cgroup) each: deleting one container kills
    // whatever is in its cgroup.
    let ids = [sb.id("zz"), sb.id("aa"), sb.id("mm")];
    let bundles: Vec<Bundle> = ids.iter().map(|_| sb.bundle(&["sleep", "1000"])).collect();
    for (id, b) in ids.iter().zip(&bundles) {
        rt.create(id, &CreateOptions::new(b.path())).unwrap();
    }
    let listed: Vec<String> = rt
        .list()
        .unwrap()
        .iter()
        .map(|c| c.id().to_string())
        .collect();
    let mut want = ids.to_vec();
    want.sort();
    assert_eq!(listed, want);
    for c in rt.list().unwrap() {
        assert_eq!(c.status(), Status::Created);
        c.delete(true).unwrap();
    }
    assert!(rt.list().unwrap().is_empty());
    for (id, b) in ids.iter().zip(&bundles) {
        sb.leak_check(id, b);
    }
}

#[test]
fn kill_all_without_a_pid_namespace() {
    let (sb, rt, _w) = setup();
    let marks = sb.host_dir("marks");
    let mut b = sb.bundle(&[
        "sh",
        "-c",
        "sleep 1000 & sleep 1000 & echo > /marks/ready; wait",
    ]);
    b.remove_namespace("pid").bind(&marks, "/marks", &[]);
    b.write().unwrap();
    let id = sb.id("killall");
    let c = rt.create(&id, &CreateOptions::new(b.path())).unwrap();
    c.start().unwrap();
    wait_file(&marks.join("ready"));
    c.kill(libc::SIGKILL, true).unwrap();
    assert_eq!(c.wait().unwrap(), 128 + libc::SIGKILL);
    let procs = PathBuf::from("/sys/fs/cgroup/pids")
        .join(b.cgroups_path().trim_start_matches('/'))
        .join("cgroup.procs");
    assert!(
        eventually(Duration::from_secs(10), || fs::read_to_string(&procs)
            .map(|s| s.trim().is_empty())
            .unwrap_or(true)),
        "processes left in {}",
        procs.display()
    );
    c.delete(false).unwrap();
    sb.leak_check(&id, &b);
}

#[test]
fn signals_parse_by_name_and_number() {
    for s in ["KILL", "SIGKILL", "kill", "9"] {
        assert_eq!(parse_signal(s).unwrap(), libc::SIGKILL, "{s}");
    }
    assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
    assert_eq!(parse_signal("SIGUSR1").unwrap(), libc::SIGUSR1);
    for bad in ["NOPE", "SIGNOPE", "", "-1", "1000"] {
        assert!(parse_signal(bad).is_err(), "{bad:?} parsed");
    }
}

/// One thread's share of the concurrency test: a full lifecycle per id,
/// until `stop` is set.
fn cycle(rt: &Runtime, bundle: &Path, ids: &[String], stop: &AtomicBool) -> Result<(), String> {
    for id in ids {
        if stop.load(Ordering::SeqCst) {
            return Err("stopped".into());
        }
        let c = rt
            .create(id, &CreateOptions::new(bundle))
            .map_err(|e| format!("create {id}: {e}"))?;
        if c.status() != Status::Created {
            return Err(format!("{id}: {} after create", c.status()));
        }
        c.start().map_err(|e| format!("start {id}: {e}"))?;
        if c.status() != Status::Running {
            return Err(format!("{id}: {} after start", c.status()));
        }
        c.kill(libc::SIGKILL, false)
            .map_err(|e| format!("kill {id}: {e}"))?;
        let code = c.wait().map_err(|e| format!("wait {id}: {e}"))?;
        if code != 137 {
            return Err(format!("{id}: exit code {code}, want 137"));
        }
        c.delete(false).map_err(|e| format!("delete {id}: {e}"))?;
        if !matches!(rt.load(id), Err(Error::NotFound(_))) {
            return Err(format!("{id}: still loadable after delete"));
        }
    }
    Ok(())
}

#[test]
fn eight_threads_at_once() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 3;
    const LIMIT: Duration = Duration::from_secs(60);
    let (sb, rt, _w) = setup();
    let rt = Arc::new(rt);
    let stop = Arc::new(AtomicBool::new(false));
    let bundles: Vec<Bundle> = (0..THREADS)
        .map(|_| sb.bundle(&["sleep", "1000"]))
        .collect();
    let (tx, rx) = mpsc::channel();
    for (n, b) in bundles.iter().enumerate() {
        let ids: Vec<String> = (0..ROUNDS).map(|_| sb.id(&format!("t{n}"))).collect();
        let (rt, tx, stop) = (Arc::clone(&rt), tx.clone(), Arc::clone(&stop));
        let path = b.path().to_path_buf();
        // Detached threads: a deadlock must fail the test, not hang it.
        thread::spawn(move || {
            let _ = tx.send((n, cycle(&rt, &path, &ids, &stop)));
        });
    }
    drop(tx);
    let deadline = Instant::now() + LIMIT;
    let mut failures = Vec::new();
    let mut done = 0;
    while done < THREADS {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((_, Ok(()))) => done += 1,
            Ok((n, Err(e))) => {
                done += 1;
                failures.push(format!("thread {n}: {e}"));
            }
            Err(_) => break,
        }
    }
    if done < THREADS {
        // Unblock the stuck threads and let them stop before the sandbox
        // is cleaned up, so none creates a container after that.
        stop.store(true, Ordering::SeqCst);
        sb.kill_processes();
        let grace = Instant::now() + Duration::from_secs(30);
        while done < THREADS {
            let left = grace.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(_) => done += 1,
                Err(_) => break,
            }
        }
        panic!(
            "{} of {THREADS} threads did not finish within {LIMIT:?} (deadlock?); others: {failures:?}",
            THREADS - done
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for b in &bundles {
        assert!(testbed::cgroup_dirs(b.cgroups_path()).is_empty());
    }
}

#[test]
fn exec_from_many_threads_at_once() {
    let (sb, rt, _w) = setup();
    let b = sb.bundle(&["sleep", "1000"]);
    b.write().unwrap();
    let id = sb.id("libexec");
    let c = rt.create(&id, &CreateOptions::new(b.path())).unwrap();
    c.start().unwrap();
    let spec = c.spec().unwrap();
    let base = spec.process().clone().unwrap();
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let (c, mut p) = (c.clone(), base.clone());
            p.set_args(Some(vec![
                "sh".into(),
                "-c".into(),
                format!("[ \"$(readlink /proc/self/ns/pid)\" = \"$(readlink /proc/1/ns/pid)\" ] && exit {}", 10 + i),
            ]));
            thread::spawn(move || {
                let child = c.exec(&p, &berth::ExecOptions::default()).map_err(|e| e.to_string())?;
                child.wait().map_err(|e| e.to_string())
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), Ok(10 + i as i32));
    }
    // A process spec the spec forbids is refused before anything starts.
    let mut bad = base.clone();
    bad.set_cwd("relative".into());
    let e = c.exec(&bad, &berth::ExecOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Exec { .. }), "{e}");
    assert!(e.to_string().contains("process.cwd"), "{e}");
    c.kill(libc::SIGKILL, false).unwrap();
    rt.load(&id).unwrap().delete(true).unwrap();
    sb.leak_check(&id, &b);
}

#[test]
fn stdio_descriptors_replace_the_callers() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let (sb, rt, _w) = setup();
    let b = sb.bundle(&[
        "sh",
        "-c",
        "read l; echo \"out:$l\"; echo err >&2; echo $(ls /proc/self/fd) >&2",
    ]);
    b.write().unwrap();
    let id = sb.id("stdio");
    let (in_r, mut in_w) = std::io::pipe().unwrap();
    let (mut out_r, out_w) = std::io::pipe().unwrap();
    let (mut err_r, err_w) = std::io::pipe().unwrap();
    let mut opts = CreateOptions::new(b.path());
    opts.stdio = Some([in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()]);
    let c = rt.create(&id, &opts).unwrap();
    // The container holds its own copies: closing ours must not matter.
    drop((in_r, out_w, err_w));
    in_w.write_all(b"hello\n").unwrap();
    drop(in_w);
    c.start().unwrap();
    assert_eq!(c.wait().unwrap(), 0);
    c.delete(false).unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    out_r.read_to_string(&mut out).unwrap();
    err_r.read_to_string(&mut err).unwrap();
    assert_eq!(out, "out:hello\n");
    // 0, 1, 2 and the directory ls reads: nothing else leaked in.
    assert_eq!(err, "err\n0 1 2 3\n", "stderr: {err:?}");
    sb.leak_check(&id, &b);
}
