//! podman (through conmon) driving berth as its OCI runtime: `podman
//! --runtime <berth>` with its own storage root, run root and tmp dir, the
//! cgroupfs manager, file events and no network.
//!
//! This host caps the open-files limit at 20000 and root lacks
//! CAP_SYS_RESOURCE, so podman's default rlimits (1048576 open files)
//! cannot be set by any runtime: every container gets
//! `--ulimit nofile=20000:20000 --ulimit nproc=32768:32768`.
//!
//! podman passes no `--root` to runtimes it does not know by name (and,
//! in 4.3, drops `--runtime-flag root=...` from `delete`), so berth keeps
//! its state in its default root, /run/berth; each test's containers have
//! unique ids and a cgroup parent of their own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_clients::{
    ensure_packages, eventually, host, image, in_terminal, oom_kills, run, runtime, Out,
};

const LIMIT: Duration = berth_clients::COMMAND_LIMIT;
const IMAGE: &str = "localhost/berth-clients/busybox:latest";

struct Podman {
    dir: tempfile::TempDir,
    /// The runtime as podman sees it.
    runtime: PathBuf,
    /// Cgroup parent of this test's containers (and of their conmons).
    parent: String,
    /// Global flags before the command (`--runtime-flag ...`).
    global: Vec<String>,
    /// Ids of the containers made, for the leak checks.
    ids: std::cell::RefCell<Vec<String>>,
    /// podman makes these whatever its flags say.
    _outside: host::Outside,
}

impl Podman {
    fn new() -> Podman {
        Podman::with_runtime(runtime(), &[])
    }

    fn with_runtime(rt: PathBuf, global: &[&str]) -> Podman {
        testbed::require_root();
        ensure_packages(&[("podman", "podman"), ("conmon", "conmon")]);
        let dir = tempfile::Builder::new()
            .prefix("berth-clients-pm-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let p = Podman {
            runtime: rt,
            global: global.iter().map(|s| s.to_string()).collect(),
            parent: berth_clients::unique("berth-clients-pm"),
            ids: Default::default(),
            _outside: host::Outside::watch(&[
                "/run/berth",
                "/run/containers",
                "/etc/containers/networks",
                "/var/lib/containers",
            ]),
            dir,
        };
        let archive = image::busybox_archive(p.dir.path(), IMAGE);
        let o = p.out(&["load", "-i", &archive.display().to_string()]);
        o.ok();
        p
    }

    fn podman(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new("podman");
        // conmon writes its `oom` marker into its working directory.
        cmd.current_dir(d)
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args([
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "--storage-driver",
                "overlay",
                "--runtime",
            ])
            .arg(&self.runtime)
            .args(&self.global)
            .args(args);
        cmd
    }

    fn out(&self, args: &[&str]) -> Out {
        run(&mut self.podman(args), LIMIT)
    }

    /// `podman run` with the options every container here needs, then
    /// `args` (options, the image, the command).
    fn run_cmd(&self, args: &[&str]) -> Command {
        let mut v = vec![
            "run",
            "--network",
            "none",
            "--cgroup-parent",
            &self.parent,
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=32768:32768",
        ];
        v.extend_from_slice(args);
        self.podman(&v)
    }

    fn run(&self, args: &[&str]) -> Out {
        run(&mut self.run_cmd(args), LIMIT)
    }

    /// `podman run --rm ... IMAGE cmd...`.
    fn run_rm(&self, opts: &[&str], cmd: &[&str]) -> Out {
        let mut v = vec!["--rm"];
        v.extend_from_slice(opts);
        v.push(IMAGE);
        v.extend_from_slice(cmd);
        self.run(&v)
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        let o = self.out(&["inspect", "--format", format, name]);
        o.ok();
        o.out().to_string()
    }

    /// The full id of container `name`, remembered for the leak checks.
    fn id_of(&self, name: &str) -> String {
        let id = self.inspect(name, "{{.Id}}");
        self.ids.borrow_mut().push(id.clone());
        id
    }

    /// What the test's containers left behind: berth state, cgroups of
    /// the containers, processes, and mounts of their root file systems.
    fn leaks(&self) -> Vec<String> {
        let mut found = Vec::new();
        let real = self.runtime.canonicalize().unwrap_or(self.runtime.clone());
        let state_root = PathBuf::from("/run").join(real.file_name().unwrap());
        for id in self.ids.borrow().iter() {
            let s = state_root.join(id);
            if s.exists() {
                found.push(format!("runtime state {} left", s.display()));
            }
        }
        // conmon's own cgroups (`<parent>/conmon...`) are podman's.
        found.extend(host::cgroup_leaks("self", &self.parent, |d| {
            !d.components().any(|c| c.as_os_str() == "conmon")
        }));
        for mp in host::mounts_under("self", &self.dir.path().join("root")) {
            if mp.contains("/merged") {
                found.push(format!("mount {mp} left"));
            }
        }
        found
    }

    #[track_caller]
    fn assert_clean(&self) {
        berth_clients::assert_clean(|| self.leaks());
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = run(
            &mut self.podman(&["rm", "--all", "--force", "--time", "0"]),
            LIMIT,
        );
        let _ = host::remove_cgroups("self", &self.parent);
        host::unmount_under(self.dir.path());
    }
}

#[test]
fn run_rm_prints_and_propagates_the_exit_code() {
    let p = Podman::new();
    let o = p.run_rm(&[], &["echo", "hello from berth"]);
    o.ok();
    assert_eq!(o.out(), "hello from berth");
    p.run_rm(&[], &["sh", "-c", "exit 3"]).exits(3);
    p.assert_clean();
}

#[test]
fn detached_exec_top_pause_stats_stop_rm() {
    let p = Podman::new();
    let name = berth_clients::unique("pm-d");
    p.run(&[
        "-d",
        "--name",
        &name,
        IMAGE,
        "sh",
        "-c",
        "trap 'echo got-term; kill $!; exit 0' TERM; echo ready; sleep 1000 & wait",
    ])
    .ok();
    let id = p.id_of(&name);
    assert!(
        eventually(Duration::from_secs(20), || p
            .out(&["logs", &name])
            .stdout
            .contains("ready")),
        "the container never said ready"
    );
    // berth made it: its state is in berth's root, under podman's id.
    if p.runtime.canonicalize().unwrap().file_name() == Some("berth".as_ref()) {
        assert!(Path::new("/run/berth").join(&id).exists());
    }

    let o = p.out(&["exec", &name, "sh", "-c", "echo in-exec; exit 4"]);
    o.exits(4);
    assert_eq!(o.out(), "in-exec");

    let o = p.out(&["top", &name]);
    o.ok().has("sleep 1000");

    p.out(&["pause", &name]).ok();
    assert_eq!(p.inspect(&name, "{{.State.Status}}"), "paused");
    p.out(&["unpause", &name]).ok();
    assert_eq!(p.inspect(&name, "{{.State.Status}}"), "running");

    let o = p.out(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}}",
        &name,
    ]);
    o.ok();
    assert_eq!(o.out(), format!("{name} 2"), "{o}");

    // stop: SIGTERM reaches the trap well before the 30 s grace period.
    let t = std::time::Instant::now();
    p.out(&["stop", "--time", "30", &name]).ok();
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "stop took {:?}",
        t.elapsed()
    );
    assert_eq!(p.inspect(&name, "{{.State.ExitCode}}"), "0");
    p.out(&["logs", &name]).ok().has("got-term");

    p.out(&["rm", &name]).ok();
    p.assert_clean();
}

#[test]
fn memory_limit_kills_with_a_real_oom() {
    let p = Podman::new();
    let before = oom_kills();
    let o = p.run_rm(
        &["--memory", "24m", "--memory-swap", "24m"],
        &["sh", "-c", "x=aaaaaaaa; while :; do x=\"$x$x\"; done"],
    );
    o.exits(137);
    assert!(oom_kills() > before, "exit 137 without an OOM kill:\n{o}");
    p.assert_clean();
}

#[test]
fn limits_and_confinement() {
    let p = Podman::new();
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    // --cpus: a CFS quota of half the period.
    let o = if v2 {
        p.run_rm(&["--cpus", "0.5"], &["cat", "/sys/fs/cgroup/cpu.max"])
    } else {
        p.run_rm(
            &["--cpus", "0.5"],
            &[
                "cat",
                "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                "/sys/fs/cgroup/cpu/cpu.cfs_period_us",
            ],
        )
    };
    o.ok();
    let nums: Vec<&str> = o.stdout.split_whitespace().collect();
    assert_eq!(nums, ["50000", "100000"], "{o}");
    // --pids-limit
    let file = if v2 {
        "/sys/fs/cgroup/pids.max"
    } else {
        "/sys/fs/cgroup/pids/pids.max"
    };
    let o = p.run_rm(&["--pids-limit", "7"], &["cat", file]);
    assert_eq!(o.ok().out(), "7");
    // --read-only
    let o = p.run_rm(
        &["--read-only"],
        &[
            "sh",
            "-c",
            "touch /x 2>&1; echo rc=$?; touch /tmp/y && echo tmp-ok",
        ],
    );
    o.ok()
        .has("Read-only file system")
        .has("rc=1")
        .has("tmp-ok");
    // --cap-drop ALL
    let o = p.run_rm(
        &["--cap-drop", "ALL"],
        &["grep", "^Cap", "/proc/self/status"],
    );
    o.ok();
    for l in o.stdout.lines() {
        assert!(l.ends_with("0000000000000000"), "{l}\n{o}");
    }
    // The default seccomp profile: filter mode, and swapoff refused with
    // EPERM even with CAP_SYS_ADMIN (unconfined, the kernel gets to say
    // the file does not exist).
    let probe = [
        "sh",
        "-c",
        "grep Seccomp: /proc/self/status; swapoff /no-such-swap 2>&1",
    ];
    let o = p.run_rm(&["--cap-add", "SYS_ADMIN"], &probe);
    o.has("Seccomp:\t2").has("Operation not permitted");
    let o = p.run_rm(
        &[
            "--cap-add",
            "SYS_ADMIN",
            "--security-opt",
            "seccomp=unconfined",
        ],
        &probe,
    );
    o.has("Seccomp:\t0").has("No such file");
    // --uidmap: root inside is 100000 outside.
    let o = p.run_rm(
        &["--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536"],
        &["sh", "-c", "cat /proc/self/uid_map; id -u"],
    );
    o.ok();
    let map: Vec<&str> = o.stdout.split_whitespace().collect();
    assert_eq!(map, ["0", "100000", "65536", "0"], "{o}");
    p.assert_clean();
}

#[test]
fn run_with_a_terminal() {
    let p = Podman::new();
    let mut v = vec!["--rm", "-t", IMAGE];
    v.extend(["sh", "-c", "tty; test -t 0 && echo stdin-is-a-tty; exit 5"]);
    let o = run(&mut in_terminal(&p.run_cmd(&v)), LIMIT);
    o.exits(5).has("/dev/pts/").has("stdin-is-a-tty");
    p.assert_clean();
}

#[test]
fn a_binary_named_runc_gets_the_json_log_flags() {
    // podman passes `--log-format=json --log FILE` to binaries named runc
    // or crun (and `--runtime-flag`s after them): berth takes both.
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("runc");
    std::os::unix::fs::symlink(runtime(), &link).unwrap();
    let p = Podman::with_runtime(link, &["--runtime-flag", "log-format=json"]);
    let o = p.run_rm(&[], &["echo", "named runc"]);
    assert_eq!(o.ok().out(), "named runc");
    p.run_rm(&[], &["sh", "-c", "exit 6"]).exits(6);
    p.assert_clean();
}
