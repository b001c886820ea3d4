//! `berth exec` on real containers: the new process joins every namespace
//! and the cgroup of the container, gets the process spec's user, env,
//! cwd, capabilities and rlimits and the container's seccomp filter, its
//! exit status is exec's, and exec into a stopped or paused container
//! fails clearly.

mod common;

use std::fs::File;
use std::io::Read;
use std::time::Duration;

use common::*;
use testbed::{pass_fds, read_pty, ConsoleSocket};

/// Starts a container sleeping and returns its id.
#[track_caller]
fn sleeping(t: &Berth, b: &Bundle, name: &str) -> String {
    let id = t.id(name);
    t.create(&id, b, &[]).ok();
    t.start(&id).ok();
    id
}

/// `berth exec [flags] <id> sh -c script`.
fn exec_sh(t: &Berth, id: &str, flags: &[&str], script: &str) -> Output {
    let mut args = vec!["exec"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[id, "sh", "-c", script]);
    t.cmd_for(id, &args)
}

const KINDS: [&str; 8] = ["user", "ipc", "uts", "net", "pid", "cgroup", "mnt", "time"];

#[test]
fn exec_joins_every_namespace_and_the_cgroup() {
    let t = berth();
    let mut b = t.bundle(&["sleep", "1000"]);
    // runc 1.1 has no time namespace.
    let kinds = if t.is_berth() {
        &KINDS[..]
    } else {
        &KINDS[..7]
    };
    if t.is_berth() {
        b.namespace("time", None).set(
            "/linux/timeOffsets",
            json!({"boottime": {"secs": 86400, "nanosecs": 0}}),
        );
    }
    b.namespace("user", None)
        .namespace("cgroup", None)
        .set(
            "/linux/uidMappings",
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
        )
        .set(
            "/linux/gidMappings",
            json!([{"containerID": 0, "hostID": 200000, "size": 65536}]),
        );
    let id = sleeping(&t, &b, "nsall");
    let script: String = kinds
        .iter()
        .map(|k| format!("echo {k} $(readlink /proc/self/ns/{k}) $(readlink /proc/1/ns/{k});"))
        .collect::<String>()
        + "cmp /proc/self/cgroup /proc/1/cgroup && echo same-cgroup; \
           cat /proc/self/uid_map; id -u; cut -d' ' -f1 /proc/uptime";
    let o = exec_sh(&t, &id, &[], &script);
    o.ok();
    let lines = o.lines();
    for (k, line) in kinds.iter().zip(&lines) {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 3, "{line}");
        assert_eq!(
            f[1], f[2],
            "{k}: exec'd process is not in the init's namespace"
        );
        assert_ne!(
            f[1],
            ns_link("self", k),
            "{k}: the container's is the host's"
        );
    }
    let rest = &lines[kinds.len()..];
    assert_eq!(rest[0], "same-cgroup", "{}", o.stdout);
    assert_eq!(
        rest[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    assert_eq!(rest[2], "0");
    if t.is_berth() {
        // The time namespace's boottime offset shows in the uptime.
        let uptime: f64 = rest[3].parse().unwrap();
        assert!(uptime > 86400.0, "uptime {uptime}");
    }
    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
}

#[test]
fn exit_status_is_the_processes() {
    let t = berth();
    let b = t.bundle(&["sleep", "1000"]);
    let id = sleeping(&t, &b, "status");
    assert_eq!(exec_sh(&t, &id, &[], "echo out; exit 7").code, 7);
    assert_eq!(exec_sh(&t, &id, &[], "kill -9 $$").code, 137);
    let o = t.cmd_for(&id, &["exec", &id, "true"]);
    o.ok();
    let o = t.cmd_for(&id, &["exec", &id, "/no/such/program"]);
    assert_eq!(o.code, 255, "{o}");
    if t.is_berth() {
        o.stderr_has(&["exec failed", "/no/such/program", "process.args[0]"]);
    }
    // The container goes on.
    assert_eq!(t.status(&id), "running");
    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
}

#[test]
fn flags_override_the_containers_process() {
    let t = berth();
    let mut b = t.bundle(&["sleep", "1000"]);
    b.set("/process/env", json!(["PATH=/bin", "KEEP=1", "OVER=old"]))
        .set("/process/noNewPrivileges", json!(false));
    let id = sleeping(&t, &b, "flags");
    let o = exec_sh(
        &t,
        &id,
        &[
            "--env",
            "OVER=new",
            "--env",
            "ADDED=yes",
            "--cwd",
            "/tmp",
            "--user",
            "1000:1000",
            "--additional-gids",
            "5",
            "--additional-gids",
            "6",
            "--cap",
            "CAP_SYS_ADMIN",
            "--no-new-privs",
        ],
        "echo $KEEP $OVER $ADDED $HOME; pwd; id -u; id -g; id -G; \
         grep -E '^(CapInh|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status",
    );
    o.ok();
    let l = o.lines();
    assert_eq!(l[0], "1 new yes /home/test", "{o}");
    assert_eq!(l[1], "/tmp");
    assert_eq!(l[2], "1000");
    assert_eq!(l[3], "1000");
    assert_eq!(
        l[4].split_whitespace().collect::<Vec<_>>(),
        ["1000", "5", "6"]
    );
    let status = o.stdout.as_str();
    let bnd = u64::from_str_radix(status_field(status, "CapBnd"), 16).unwrap();
    assert_ne!(bnd & (1 << 21), 0, "CAP_SYS_ADMIN not in the bounding set");
    // --cap never reaches the inheritable set (CVE-2022-29162), and so
    // not the ambient one.
    assert_eq!(status_field(status, "CapInh"), "0000000000000000");
    assert_eq!(status_field(status, "CapAmb"), "0000000000000000");
    assert_eq!(status_field(status, "NoNewPrivs"), "1");
    // Without flags: the container's own process settings.
    let o = exec_sh(
        &t,
        &id,
        &[],
        "echo $OVER $HOME; pwd; id -u; grep NoNewPrivs /proc/self/status",
    );
    o.ok();
    assert_eq!(o.lines()[0], "old /root");
    assert_eq!(o.lines()[1], "/");
    assert_eq!(o.lines()[2], "0");
    assert_eq!(status_field(&o.stdout, "NoNewPrivs"), "0");
    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
}

#[test]
fn process_json_sets_everything() {
    let t = berth();
    let b = t.bundle(&["sleep", "1000"]);
    let id = sleeping(&t, &b, "pjson");
    let proc_json = t.host_dir("pjson").join("process.json");
    std::fs::write(
        &proc_json,
        json!({
            "args": ["sh", "-c", "echo $A; id -u; id -g; umask; ulimit -n; ulimit -Hn; \
                     grep CapBnd /proc/self/status"],
            "env": ["A=from-json", "PATH=/bin"],
            "cwd": "/",
            "user": {"uid": 7, "gid": 8, "umask": 63},
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                             "permitted": ["CAP_KILL"]},
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 77, "hard": 88}],
            "noNewPrivileges": true
        })
        .to_string(),
    )
    .unwrap();
    let o = t.cmd_for(
        &id,
        &["exec", "--process", proc_json.to_str().unwrap(), &id],
    );
    o.ok();
    let l = o.lines();
    assert_eq!(&l[..3], ["from-json", "7", "8"], "{o}");
    assert_eq!(l[5], "88", "{o}");
    // runc 1.1's exec raises the soft RLIMIT_NOFILE to the hard one (its Go
    // runtime's doing); the spec asks for the soft limit given.
    if t.is_berth() {
        assert_eq!(l[4], "77");
    }
    // runc 1.1 applies user.umask to the init only; the spec gives it to
    // the process.
    if t.is_berth() {
        assert_eq!(l[3], "0077");
    }
    assert_eq!(status_field(&o.stdout, "CapBnd"), "0000000000000020");
    // The container's own rlimits when the exec'd process takes the
    // container's process (base config: RLIMIT_NOFILE 1024).
    let o = exec_sh(&t, &id, &[], "ulimit -n");
    assert_eq!(o.ok().out(), "1024");
    // A broken process.json names the field.
    std::fs::write(
        &proc_json,
        r#"{"args": ["true"], "cwd": "/", "user": {"uid": -1}}"#,
    )
    .unwrap();
    let o = t.cmd_for(&id, &["exec", "-p", proc_json.to_str().unwrap(), &id]);
    assert_eq!(o.code, 255, "{o}");
    if t.is_berth() {
        o.stderr_has(&["user.uid"]);
    }
    std::fs::write(
        &proc_json,
        r#"{"args": ["true"], "cwd": "rel", "user": {"uid": 0, "gid": 0}}"#,
    )
    .unwrap();
    let o = t.cmd_for(&id, &["exec", "-p", proc_json.to_str().unwrap(), &id]);
    o.fails();
    if t.is_berth() {
        o.stderr_has(&["process.cwd"]);
    }
    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
}

#[test]
fn detached_exec_writes_its_pid_and_is_part_of_the_container() {
    let t = berth();
    let b = t.bundle(&["sleep", "1000"]);
    let id = sleeping(&t, &b, "detach");
    let pid_file = t.host_dir("detach").join("exec.pid");
    let o = t.cmd_for(
        &id,
        &[
            "exec",
            "-d",
            "--pid-file",
            pid_file.to_str().unwrap(),
            &id,
            "sleep",
            "999",
        ],
    );
    o.ok();
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    assert!(testbed::leak::cmdline(pid).contains("sleep 999"));
    let ps = t.cmd_for(&id, &["ps", "--format", "json", &id]).ok().json();
    assert!(
        ps.as_array().unwrap().contains(&json!(pid)),
        "{pid} not in {ps}"
    );
    // kill --all reaches it.
    t.cmd_for(&id, &["kill", "--all", &id, "KILL"]).ok();
    assert!(eventually(Duration::from_secs(10), || !alive(pid)));
    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
}

#[test]
fn exec_into_a_created_container() {
    let t = berth();
    let b = t.bundle(&["sleep", "1000"]);
    let id = t.id("created");
    t.create(&id, &b, &[]).ok();
    let o = exec_sh(&t, &id, &[], "echo in-created; hostname");
    assert_eq!(o.ok().lines(), ["in-created", "berth"]);
    assert_eq!(t.status(&id), "created");
    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
}

#[test]
fn refused_when_stopped_paused_unknown_or_asking_for_an_lsm() {
    let t = berth();
    let b = t.bundle(&["sleep", "1000"]);
    let id = sleeping(&t, &b, "refuse");
    t.cmd_for(&id, &["pause", &id]).ok();
    let o = t.cmd_for(&id, &["exec", &id, "true"]);
    o.fails();
    if t.is_berth() {
        o.stderr_has(&["paused"]);
    }
    t.cmd_for(&id, &["resume", &id]).ok();
    for flag in ["--apparmor", "--process-label"] {
        let o = t.cmd_for(&id, &["exec", flag, "x", &id, "true"]);
        o.fails();
        if t.is_berth() {
            o.stderr_has(&[flag, "unsupported"]);
        }
    }
    t.kill(&id, "KILL").ok();
    assert!(t.wait_status(&id, "stopped", Duration::from_secs(10)));
    let o = t.cmd_for(&id, &["exec", &id, "true"]);
    o.fails();
    if t.is_berth() {
        o.stderr_has(&["stopped"]);
    }
    let o = t.cmd(&["exec", "no-such-container", "true"]);
    o.fails();
    if t.is_berth() {
        o.stderr_has(&["no-such-container", "does not exist"]);
    }
    t.delete(&id, false).ok();
    t.leak_check(&id, &b);
}

#[test]
fn only_stdio_and_preserved_descriptors_reach_the_process() {
    let t = berth();
    let b = t.bundle(&["sleep", "1000"]);
    let id = sleeping(&t, &b, "execfds");
    // Descriptors berth inherits stay out without --preserve-fds.
    let (_r1, w1) = pipe();
    let mut c = t.command(Some(&id), &["exec", &id, "ls", "/proc/self/fd"]);
    pass_fds(&mut c, vec![w1]);
    let o = t.output(&mut c);
    drop(c);
    // 3 is the directory ls itself is reading.
    assert_eq!(fd_list(&o.ok().stdout), [0, 1, 2, 3]);
    let (mut r3, w3) = pipe();
    let mut c = t.command(
        Some(&id),
        &[
            "exec",
            "--preserve-fds",
            "1",
            &id,
            "sh",
            "-c",
            "echo three >&3; ls /proc/self/fd",
        ],
    );
    pass_fds(&mut c, vec![w3]);
    let o = t.output(&mut c);
    drop(c);
    assert_eq!(fd_list(&o.ok().stdout), [0, 1, 2, 3, 4]);
    let mut s = String::new();
    r3.read_to_string(&mut s).unwrap();
    assert_eq!(s, "three\n");
    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
}

#[test]
fn the_containers_seccomp_filter_applies() {
    let t = berth();
    let mut b = t.bundle(&["sleep", "1000"]);
    b.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                             "errnoRet": 1}]}),
    );
    let id = sleeping(&t, &b, "execsc");
    let o = exec_sh(
        &t,
        &id,
        &[],
        "grep '^Seccomp:' /proc/self/status; mkdir /tmp/x 2>&1; echo rc=$?",
    );
    let l = o.ok().lines();
    assert_eq!(
        l[0].split_whitespace().collect::<Vec<_>>(),
        ["Seccomp:", "2"]
    );
    assert!(l[1].contains("Operation not permitted"), "{o}");
    assert_eq!(l[2], "rc=1");
    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
}

#[test]
fn tty_through_a_console_socket() {
    let t = berth();
    let b = t.bundle(&["sleep", "1000"]);
    let id = sleeping(&t, &b, "exectty");
    let sock = ConsoleSocket::bind(t.dir().join("exec-console.sock")).unwrap();
    t.cmd_for(
        &id,
        &[
            "exec",
            "-t",
            "-d",
            "--console-socket",
            sock.path().to_str().unwrap(),
            &id,
            "sh",
            "-c",
            "tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-ttys",
        ],
    )
    .ok();
    let master = sock.recv_master(Duration::from_secs(10)).unwrap();
    let out = read_pty(&master, Duration::from_secs(10));
    let lines: Vec<&str> = out.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(lines[0].starts_with("/dev/pts/"), "{out:?}");
    assert_eq!(lines[1], "all-ttys");
    // -t without --detach needs no socket; with --detach it does.
    let o = t.cmd_for(&id, &["exec", "-t", "-d", &id, "true"]);
    o.fails();
    if t.is_berth() {
        o.stderr_has(&["console socket"]);
    }
    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
}

#[test]
fn signals_to_a_foreground_exec_reach_the_process() {
    let t = berth();
    let marks = t.host_dir("marks");
    let mut b = t.bundle(&["sleep", "1000"]);
    b.bind(&marks, "/marks", &[]);
    let id = sleeping(&t, &b, "execsig");
    let out = t.dir().join("exec-sig.out");
    let mut c = t.command(
        Some(&id),
        &[
            "exec",
            &id,
            "sh",
            "-c",
            "trap 'echo got-term; exit 3' TERM; echo > /marks/ready; \
             while :; do sleep 0.1; done",
        ],
    );
    c.stdout(File::create(&out).unwrap());
    let mut child = c.spawn().unwrap();
    wait_file(&marks.join("ready"));
    testbed::nix::sys::signal::kill(
        testbed::nix::unistd::Pid::from_raw(child.id() as i32),
        testbed::nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut status = None;
    assert!(eventually(Duration::from_secs(10), || {
        status = child.try_wait().unwrap();
        status.is_some()
    }));
    assert_eq!(status.unwrap().code(), Some(3));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "got-term\n");
    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
}
