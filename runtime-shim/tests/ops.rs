//! runc's operations beyond the OCI lifecycle, on real containers: `pause`
//! and `resume` (the freezer), `ps`, `events` (statistics and OOM
//! notifications) and `update` (resources changed in place, read back from
//! the cgroup v1 files).

mod common;

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const COUNTER: &str = "i=0; while :; do i=$((i+1)); echo $i > /tmp/n; done";

/// The container's counter, when the file holds a whole number (it is
/// rewritten all the time, so a read may catch it empty).
fn counter(b: &Bundle) -> Option<u64> {
    fs::read_to_string(b.rootfs().join("tmp/n"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether the counter goes up within a few seconds.
fn advances(b: &Bundle) -> bool {
    let mut first = None;
    eventually(Duration::from_secs(5), || {
        let now = counter(b);
        match (first, now) {
            (None, Some(_)) => {
                first = now;
                false
            }
            (Some(a), Some(n)) => n > a,
            _ => false,
        }
    })
}

/// Starts a container running `args` and returns its id.
#[track_caller]
fn running(t: &Berth, b: &Bundle, name: &str) -> String {
    let id = t.id(name);
    t.create(&id, b, &[]).ok();
    t.start(&id).ok();
    id
}

fn list_status(t: &Berth, id: &str) -> String {
    let list = t.cmd(&["list", "--format", "json"]).ok().json();
    list.as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {list}"))["status"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn pause_freezes_and_resume_thaws() {
    let t = berth();
    let b = t.bundle(&sh(COUNTER));
    let id = running(&t, &b, "pause");
    assert!(advances(&b), "the counter never ran");

    t.cmd_for(&id, &["pause", &id]).ok();
    assert_eq!(t.status(&id), "paused");
    assert_eq!(list_status(&t, &id), "paused");
    let before = fs::read_to_string(b.rootfs().join("tmp/n")).unwrap();
    thread::sleep(Duration::from_millis(300));
    let after = fs::read_to_string(b.rootfs().join("tmp/n")).unwrap();
    assert_eq!(before, after, "the counter moved while paused");
    let o = t.cmd_for(&id, &["pause", &id]);
    o.fails();
    if t.is_berth() {
        o.stderr_has(&[&format!("cannot pause container {id}: container is paused")]);
    }

    t.cmd_for(&id, &["resume", &id]).ok();
    assert_eq!(t.status(&id), "running");
    assert_eq!(list_status(&t, &id), "running");
    assert!(advances(&b), "the counter did not move after resume");
    let o = t.cmd_for(&id, &["resume", &id]);
    o.fails();
    if t.is_berth() {
        o.stderr_has(&[&format!(
            "cannot resume container {id}: container is running"
        )]);
    }

    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
}

#[test]
fn pause_of_a_stopped_container_fails() {
    let t = berth();
    let b = t.bundle(&["true"]);
    let id = running(&t, &b, "stopped");
    assert!(t.wait_status(&id, "stopped", Duration::from_secs(10)));
    for op in ["pause", "resume"] {
        let o = t.cmd_for(&id, &[op, &id]);
        o.fails();
        assert_eq!(o.code, 1, "{o}");
        if t.is_berth() {
            o.stderr_has(&[&format!("cannot {op} container {id}: container is stopped")]);
        }
    }
    assert_eq!(t.status(&id), "stopped");
    t.delete(&id, false).ok();
    t.leak_check(&id, &b);
}

#[test]
fn a_paused_container_can_be_killed_and_force_deleted() {
    let t = berth();
    let b = t.bundle(&["sleep", "1000"]);

    // SIGKILL reaches the frozen init once it is thawed.
    let id = running(&t, &b, "killpaused");
    t.cmd_for(&id, &["pause", &id]).ok();
    assert_eq!(t.status(&id), "paused");
    t.kill(&id, "KILL").ok();
    if t.is_berth() {
        assert!(
            t.wait_status(&id, "stopped", Duration::from_secs(10)),
            "the paused container survived SIGKILL"
        );
        t.delete(&id, false).ok();
    } else {
        t.delete(&id, true).ok();
    }
    t.leak_check(&id, &b);

    // delete --force thaws it to kill it.
    let id = running(&t, &b, "delpaused");
    t.cmd_for(&id, &["pause", &id]).ok();
    let pid = t.pid(&id);
    t.delete(&id, true).ok();
    assert!(!alive(pid), "the paused init survived delete --force");
    t.leak_check(&id, &b);

    // A created container can be paused as well; delete takes it down.
    let id = t.id("createdpaused");
    t.create(&id, &b, &[]).ok();
    t.cmd_for(&id, &["pause", &id]).ok();
    assert_eq!(t.status(&id), "paused");
    t.cmd_for(&id, &["resume", &id]).ok();
    assert_eq!(t.status(&id), "created");
    t.delete(&id, false).ok();
    t.leak_check(&id, &b);
}

#[test]
fn ps_lists_the_containers_processes() {
    let t = berth();
    let b = t.bundle(&sh("sleep 1000 & sleep 1001 & wait"));
    let id = running(&t, &b, "ps");
    let init = t.pid(&id);
    let pids = || -> Vec<i64> {
        t.cmd_for(&id, &["ps", "--format", "json", &id])
            .ok()
            .json()
            .as_array()
            .map(|a| a.iter().map(|p| p.as_i64().unwrap()).collect())
            .unwrap_or_default()
    };
    assert!(
        eventually(Duration::from_secs(10), || pids().len() == 3),
        "expected sh and two sleeps: {:?}",
        pids()
    );
    let json = pids();
    assert!(json.contains(&i64::from(init)), "{json:?} lacks {init}");
    let child = json
        .iter()
        .copied()
        .find(|&p| p != i64::from(init))
        .unwrap();
    let stat = fs::read_to_string(format!("/proc/{child}/stat")).unwrap();
    let ppid: i64 = stat
        .rsplit_once(") ")
        .unwrap()
        .1
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ppid, i64::from(init), "{child} is not the init's child");

    // The default table is `ps -ef` with only the container's lines.
    let o = t.cmd_for(&id, &["ps", &id]).ok().clone();
    let lines = o.lines();
    assert_eq!(lines.len(), 4, "{o}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    let col = header.iter().position(|h| *h == "PID").expect("PID header");
    let mut listed: Vec<i64> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().nth(col).unwrap().parse().unwrap())
        .collect();
    listed.sort();
    assert_eq!(listed, json);
    assert!(lines.iter().any(|l| l.ends_with("sleep 1001")), "{o}");

    // ps options after the id go to ps.
    let o = t.cmd_for(&id, &["ps", &id, "-o", "pid,comm"]).ok().clone();
    assert_eq!(
        o.lines()[0].split_whitespace().collect::<Vec<_>>(),
        ["PID", "COMMAND"]
    );
    let mut comms: Vec<&str> = o.lines()[1..]
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    comms.sort();
    assert_eq!(comms, ["sh", "sleep", "sleep"], "{o}");

    // Without a PID column there is nothing to match.
    t.cmd_for(&id, &["ps", &id, "-o", "comm"])
        .fails()
        .stderr_has(&["couldn't find PID field in ps output"]);

    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
}

#[test]
fn update_changes_the_live_cgroup() {
    let t = berth();
    let mut b = t.bundle(&["sleep", "1000"]);
    b.set(
        "/linux/resources/memory",
        json!({"limit": 134217728, "swap": 134217728}),
    );
    let cg = b.cgroups_path().to_string();
    let id = running(&t, &b, "update");
    assert_eq!(read("memory", &cg, "memory.limit_in_bytes"), "134217728");

    t.cmd_for(
        &id,
        &[
            "update",
            "--memory",
            "64M",
            "--pids-limit",
            "10",
            "--cpu-share",
            "256",
            &id,
        ],
    )
    .ok();
    assert_eq!(read("memory", &cg, "memory.limit_in_bytes"), "67108864");
    assert_eq!(read("pids", &cg, "pids.max"), "10");
    assert_eq!(read("cpu", &cg, "cpu.shares"), "256");

    // Swap (memory plus swap) and memory move separately; the kernel keeps
    // memory <= memory+swap at each step.
    t.cmd_for(&id, &["update", "--memory-swap", "256m", &id])
        .ok();
    assert_eq!(
        read("memory", &cg, "memory.memsw.limit_in_bytes"),
        "268435456"
    );
    assert_eq!(read("memory", &cg, "memory.limit_in_bytes"), "67108864");
    t.cmd_for(&id, &["update", "--memory", "200M", &id]).ok();
    assert_eq!(read("memory", &cg, "memory.limit_in_bytes"), "209715200");
    assert_eq!(
        read("memory", &cg, "memory.memsw.limit_in_bytes"),
        "268435456"
    );

    // -r FILE, and -r - from standard input.
    let file = t.dir().join("resources.json");
    fs::write(
        &file,
        json!({"memory": {"limit": 33554432}, "cpu": {"quota": 20000, "period": 100000}})
            .to_string(),
    )
    .unwrap();
    t.cmd_for(&id, &["update", "-r", file.to_str().unwrap(), &id])
        .ok();
    assert_eq!(read("memory", &cg, "memory.limit_in_bytes"), "33554432");
    assert_eq!(read("cpu", &cg, "cpu.cfs_quota_us"), "20000");
    assert_eq!(read("cpu", &cg, "cpu.cfs_period_us"), "100000");

    fs::write(&file, json!({"pids": {"limit": 20}}).to_string()).unwrap();
    let mut cmd = t.command(Some(&id), &["update", "-r", "-", &id]);
    cmd.stdin(fs::File::open(&file).unwrap());
    t.output(&mut cmd).ok();
    assert_eq!(read("pids", &cg, "pids.max"), "20");
    // Untouched by the pids update.
    assert_eq!(read("cpu", &cg, "cpu.shares"), "256");
    assert_eq!(read("memory", &cg, "memory.limit_in_bytes"), "33554432");

    if t.is_berth() {
        // Flags override the file (runc ignores them when -r is given).
        t.cmd_for(
            &id,
            &[
                "update",
                "-r",
                file.to_str().unwrap(),
                "--pids-limit",
                "30",
                &id,
            ],
        )
        .ok();
        assert_eq!(read("pids", &cg, "pids.max"), "30");
        t.cmd_for(&id, &["update", "--pids-limit", "-1", &id]).ok();
        assert_eq!(read("pids", &cg, "pids.max"), "max");
    }

    // A value the kernel refuses fails, naming file and value, and leaves
    // the old one in place.
    let cpus = read("cpuset", &cg, "cpuset.cpus");
    let o = t.cmd_for(&id, &["update", "--cpuset-cpus", "999", &id]);
    o.fails();
    o.stderr_has(&["cpuset.cpus", "999"]);
    assert_eq!(read("cpuset", &cg, "cpuset.cpus"), cpus);

    // Sizes as runc reads them.
    let o = t.cmd_for(&id, &["update", "--memory", "1x", &id]);
    o.fails();
    o.stderr_has(&["invalid size: '1x'"]);
    assert_eq!(read("memory", &cg, "memory.limit_in_bytes"), "33554432");
    let o = t.cmd_for(
        &id,
        &[
            "update",
            "-r",
            t.dir().join("nope.json").to_str().unwrap(),
            &id,
        ],
    );
    o.fails();
    o.stderr_has(&["nope.json"]);

    // A stopped container cannot be updated.
    t.kill(&id, "KILL").ok();
    assert!(t.wait_status(&id, "stopped", Duration::from_secs(10)));
    let o = t.cmd_for(&id, &["update", "--memory", "64M", &id]);
    o.fails();
    if t.is_berth() {
        o.stderr_has(&[&format!(
            "cannot update container {id}: container is stopped"
        )]);
    }
    t.delete(&id, false).ok();
    t.leak_check(&id, &b);
}

#[test]
fn update_is_kept_for_the_next_update() {
    let t = berth();
    let mut b = t.bundle(&["sleep", "1000"]);
    b.set("/linux/resources/memory", json!({"limit": 67108864}));
    let cg = b.cgroups_path().to_string();
    let id = running(&t, &b, "merge");
    // "Unlimited memory" lifts memory+swap too; the next limit then comes
    // with the saved unlimited swap, which the kernel accepts.
    t.cmd_for(&id, &["update", "--memory", "-1", &id]).ok();
    let unlimited = read("memory", &cg, "memory.limit_in_bytes");
    assert!(unlimited.parse::<u64>().unwrap() > 1 << 60, "{unlimited}");
    assert_eq!(
        read("memory", &cg, "memory.memsw.limit_in_bytes"),
        unlimited
    );
    t.cmd_for(&id, &["update", "--memory", "100m", &id]).ok();
    assert_eq!(read("memory", &cg, "memory.limit_in_bytes"), "104857600");
    assert_eq!(
        read("memory", &cg, "memory.memsw.limit_in_bytes"),
        unlimited
    );
    // A swap limit below the saved memory limit is refused by the kernel.
    let o = t.cmd_for(&id, &["update", "--memory-swap", "50m", &id]);
    o.fails();
    o.stderr_has(&["memory.memsw.limit_in_bytes", "52428800"]);
    assert_eq!(
        read("memory", &cg, "memory.memsw.limit_in_bytes"),
        unlimited
    );
    t.delete(&id, true).ok();
    t.leak_check(&id, &b);
}

#[test]
fn events_stats_prints_one_stats_object() {
    let t = berth();
    let b = t.bundle(&["sleep", "1000"]);
    let id = running(&t, &b, "stats");
    let o = t.cmd_for(&id, &["events", "--stats", &id]).ok().clone();
    assert_eq!(o.lines().len(), 1, "{o}");
    let v = o.json();
    assert_eq!(v["type"], "stats");
    assert_eq!(v["id"], id.as_str());
    let data = &v["data"];
    assert!(
        data["memory"]["usage"]["usage"].as_u64().unwrap() > 0,
        "{o}"
    );
    assert!(
        data["memory"]["usage"]["limit"].as_u64().unwrap() > 0,
        "{o}"
    );
    assert!(data["pids"]["current"].as_u64().unwrap() >= 1, "{o}");
    assert!(data["cpu"]["usage"]["total"].as_u64().unwrap() > 0, "{o}");
    for key in ["cpu", "memory", "pids", "blkio", "hugetlb"] {
        assert!(data[key].is_object(), "no {key} in {o}");
    }

    t.cmd_for(&id, &["events", "--interval", "0", &id])
        .fails()
        .stderr_has(&["duration interval must be greater than 0"]);
    t.delete(&id, true).ok();
    let o = t.cmd_for(&id, &["events", "--stats", &id]);
    o.fails();
    t.leak_check(&id, &b);
}

/// runc 1.1 ends `events` only when the cgroup is removed, not when the
/// container stops: against it the container is deleted to end the stream.
fn end_stream(t: &Berth, id: &str) {
    if !t.is_berth() {
        t.delete(id, false).ok();
    }
}

#[test]
fn events_stream_ends_when_the_container_exits() {
    let t = berth();
    let b = t.bundle(&sh("sleep 2"));
    let id = running(&t, &b, "stream");
    let started = Instant::now();
    let o = thread::scope(|s| {
        let events = s.spawn(|| {
            let mut cmd = t.command(Some(&id), &["events", "--interval", "200ms", &id]);
            t.output_within(&mut cmd, Duration::from_secs(20))
        });
        assert!(t.wait_status(&id, "stopped", Duration::from_secs(10)));
        end_stream(&t, &id);
        events.join().unwrap()
    });
    o.ok();
    assert!(started.elapsed() < Duration::from_secs(10), "{o}");
    let lines = o.lines();
    assert!(lines.len() >= 3, "expected several stats lines:\n{o}");
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["type"], "stats", "{line}");
        assert_eq!(v["id"], id.as_str(), "{line}");
    }
    if t.is_berth() {
        t.delete(&id, false).ok();
    }
    t.leak_check(&id, &b);
}

#[test]
fn events_report_an_oom_kill() {
    let t = berth();
    let mut b = t.bundle(&sh(
        "sleep 1; dd if=/dev/zero of=/dev/null bs=64M count=1; echo $? > /tmp/rc",
    ));
    // 32 MiB and no swap (memory+swap equals memory): dd's 64 MiB buffer
    // cannot fit.
    b.set(
        "/linux/resources/memory",
        json!({"limit": 33554432, "swap": 33554432}),
    );
    let cg = b.cgroups_path().to_string();
    let id = t.id("oom");
    t.create(&id, &b, &[]).ok();
    let (o, oom_control) = thread::scope(|s| {
        let events = s.spawn(|| {
            let mut cmd = t.command(Some(&id), &["events", "--interval", "10s", &id]);
            t.output_within(&mut cmd, Duration::from_secs(30))
        });
        // Let events register for OOM notifications; the container's
        // own `sleep 1` leaves more room still.
        thread::sleep(Duration::from_millis(300));
        t.start(&id).ok();
        assert!(t.wait_status(&id, "stopped", Duration::from_secs(20)));
        let oom_control = read("memory", &cg, "memory.oom_control");
        end_stream(&t, &id);
        (events.join().unwrap(), oom_control)
    });
    o.ok();
    let ooms: Vec<Value> = o
        .lines()
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "oom")
        .collect();
    assert!(!ooms.is_empty(), "no OOM event:\n{o}");
    assert_eq!(ooms[0], json!({"type": "oom", "id": id}));
    // dd was killed by SIGKILL: the shell saw 128 + 9.
    let rc = fs::read_to_string(b.rootfs().join("tmp/rc")).unwrap();
    assert_eq!(rc.trim(), "137");
    assert!(
        oom_control.lines().any(|l| l == "oom_kill 1"),
        "{oom_control}"
    );
    if t.is_berth() {
        t.delete(&id, false).ok();
    }
    t.leak_check(&id, &b);
}
