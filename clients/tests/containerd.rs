//! containerd's runc shim (io.containerd.runc.v2, the path Kubernetes
//! nodes use) driving berth through `ctr run --runc-binary`.
//!
//! Each test starts its own containerd (own config, root, state and unix
//! socket) in a private mount namespace, imports a busybox image made by
//! the test, and checks that nothing is left behind: no task state under
//! the runc root, no mount under containerd's directories, no cgroup and
//! no process of the test's containerd namespace.
//!
//! On a v1 host whose /proc/self/cgroup lists a hierarchy that is not
//! mounted (net_cls,net_prio here), containerd's cgroup library cannot
//! load any container's cgroup, and `ctr task metrics` answers "no metrics
//! received" whatever the runtime. The test's mount namespace mounts such
//! hierarchies under its own directory, where containerd (and the runtime)
//! find them.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use berth_clients::{ensure_packages, eventually, host, image, run, runtime, Daemon, Out};

const LIMIT: Duration = berth_clients::COMMAND_LIMIT;
const IMAGE: &str = "localhost/berth-clients/busybox:latest";

struct Containerd {
    daemon: Daemon,
    /// The test's containerd namespace; also the cgroup parent of its
    /// containers (`/<ns>/<id>`).
    ns: String,
    socket: PathBuf,
    runc_root: PathBuf,
    fifo_dir: PathBuf,
    dir: tempfile::TempDir,
    /// containerd 1.6 keeps shim sockets in /run/containerd/s whatever
    /// its config says.
    _outside: host::Outside,
}

impl Containerd {
    fn start() -> Containerd {
        testbed::require_root();
        ensure_packages(&[("containerd", "containerd"), ("ctr", "containerd")]);
        let outside = host::Outside::watch(&["/run/containerd"]);
        let dir = tempfile::Builder::new()
            .prefix("berth-clients-ctd-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let d = dir.path();
        let socket = d.join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = socket.display(),
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let mut script = String::from("set -e\n");
        for (i, opts) in unmounted_hierarchies().iter().enumerate() {
            let mp = d.join(format!("cgroup-{i}"));
            script.push_str(&format!(
                "mkdir -p {mp}\nmount -t cgroup -o {opts} cgroup {mp}\n",
                mp = mp.display()
            ));
        }
        script.push_str(&format!(
            "exec containerd --config {}\n",
            d.join("config.toml").display()
        ));
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
        let mut daemon = Daemon::spawn("containerd", &mut cmd, &d.join("containerd.log"));
        let sock = socket.clone();
        daemon.wait_ready(Duration::from_secs(30), || {
            sock.exists()
                && run(
                    Command::new("ctr")
                        .arg("--address")
                        .arg(&sock)
                        .arg("version"),
                    LIMIT,
                )
                .code
                    == Some(0)
        });
        let c = Containerd {
            daemon,
            ns: berth_clients::unique("berth-clients"),
            socket,
            runc_root: d.join("runc-root"),
            fifo_dir: d.join("fifo"),
            dir,
            _outside: outside,
        };
        let archive = image::busybox_archive(c.dir.path(), IMAGE);
        run(c.ctr(&["images", "import"]).arg(&archive), LIMIT).ok();
        c
    }

    /// `ctr` talking to this containerd, in the test's namespace.
    fn ctr(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.socket)
            .args(["--namespace", &self.ns])
            .args(args);
        cmd
    }

    /// `ctr run` with berth as the runc shim's binary; `extra` goes before
    /// the image, `args` after the container id.
    fn run_cmd(&self, extra: &[&str], id: &str, args: &[&str]) -> Command {
        let mut cmd = self.ctr(&["run", "--runtime", "io.containerd.runc.v2", "--runc-binary"]);
        cmd.arg(runtime())
            .arg("--runc-root")
            .arg(&self.runc_root)
            .arg("--fifo-dir")
            .arg(&self.fifo_dir)
            .args(extra)
            .args([IMAGE, id])
            .args(args);
        cmd
    }

    fn out(&self, args: &[&str]) -> Out {
        run(&mut self.ctr(args), LIMIT)
    }

    /// The task's status in `ctr task ls` (RUNNING, PAUSED, STOPPED...).
    fn status(&self, id: &str) -> String {
        let o = self.out(&["task", "ls"]);
        o.stdout
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&id)).then(|| f.get(2).unwrap_or(&"").to_string())
            })
            .unwrap_or_default()
    }

    /// berth's own view of the task: proof that berth, not runc, runs it.
    fn berth_state(&self, id: &str) -> serde_json::Value {
        let o = run(
            Command::new(runtime())
                .arg("--root")
                .arg(self.runc_root.join(&self.ns))
                .args(["state", id]),
            LIMIT,
        );
        o.ok();
        serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("state json: {e}\n{o}"))
    }

    /// What the test's containers left behind.
    fn leaks(&self) -> Vec<String> {
        let mut found = Vec::new();
        let tasks = self.runc_root.join(&self.ns);
        for e in std::fs::read_dir(&tasks).into_iter().flatten().flatten() {
            found.push(format!("runtime state {} left", e.path().display()));
        }
        let pid = self.daemon.pid().to_string();
        for place in [&pid, "self"] {
            for sub in ["root", "state"] {
                for mp in host::mounts_under(place, &self.dir.path().join(sub)) {
                    found.push(format!("mount {mp} left (mount namespace of {place})"));
                }
            }
        }
        found.extend(host::cgroup_leaks(&pid, &self.ns, |_| true));
        found
    }

    /// Runs the `kill` command, waits for the task to stop, removes task
    /// and container, and checks that nothing is left.
    #[track_caller]
    fn kill_and_remove(&self, id: &str, kill: &[&str]) {
        self.out(kill).ok();
        assert!(
            eventually(Duration::from_secs(20), || self.status(id) == "STOPPED"),
            "task did not stop: {}",
            self.status(id)
        );
        self.out(&["task", "rm", id]).ok();
        self.out(&["containers", "rm", id]).ok();
        self.assert_clean();
    }

    #[track_caller]
    fn assert_clean(&self) {
        berth_clients::assert_clean(|| self.leaks());
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Tasks first (a failed test may leave one running), then the
        // shims, the cgroups (some only visible in containerd's mount
        // namespace), containerd itself, and any mount on the host.
        let pid = self.daemon.pid().to_string();
        let _ = host::remove_cgroups(&pid, &self.ns);
        for p in host::pids_with_cmdline(&["containerd-shim", "-namespace", &self.ns]) {
            // SAFETY: kill(2) with integer arguments.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        let _ = host::remove_cgroups(&pid, &self.ns);
        self.daemon.stop();
        host::unmount_under(self.dir.path());
    }
}

/// `-o` options for each v1 hierarchy this process belongs to that no
/// mount shows (its controllers, or `name=...`).
fn unmounted_hierarchies() -> Vec<String> {
    let mounts = testbed::host_mounts();
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(':').nth(1))
        .filter(|c| !c.is_empty())
        .filter(|c| {
            !mounts
                .iter()
                .any(|m| m.fstype == "cgroup" && c.split(',').all(|ctl| m.has_option(ctl)))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn run_rm_prints_and_propagates_the_exit_code() {
    let c = Containerd::start();
    let o = run(
        &mut c.run_cmd(&["--rm"], "echo", &["echo", "hello from berth"]),
        LIMIT,
    );
    o.ok();
    assert_eq!(o.out(), "hello from berth");
    let o = run(
        &mut c.run_cmd(&["--rm"], "exit7", &["sh", "-c", "exit 7"]),
        LIMIT,
    );
    o.exits(7);
    c.assert_clean();
    assert!(c.out(&["containers", "ls", "-q"]).out().is_empty());
}

#[test]
fn run_with_a_terminal() {
    let c = Containerd::start();
    let cmd = c.run_cmd(
        &["--rm", "-t"],
        "tty",
        &["sh", "-c", "tty; test -t 0 && echo stdin-is-a-tty; exit 3"],
    );
    let o = run(&mut berth_clients::in_terminal(&cmd), LIMIT);
    o.exits(3).has("/dev/pts/").has("stdin-is-a-tty");
    c.assert_clean();
}

#[test]
fn detached_task_exec_ps_pause_resume_metrics_kill_rm() {
    let c = Containerd::start();
    let id = "task";
    run(
        &mut c.run_cmd(
            &["-d"],
            id,
            &["sh", "-c", "trap 'kill $!; exit 0' TERM; sleep 1000 & wait"],
        ),
        LIMIT,
    )
    .ok();
    assert_eq!(c.status(id), "RUNNING");
    let state = c.berth_state(id);
    assert_eq!(state["status"], "running", "{state}");
    let init = state["pid"].as_i64().unwrap();

    // exec: output and exit code.
    let o = c.out(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        id,
        "sh",
        "-c",
        "echo in-exec; exit 5",
    ]);
    o.exits(5);
    assert_eq!(o.out(), "in-exec");

    // ps lists the init, its child and a detached exec beside them.
    let o = c.out(&["task", "exec", "-d", "--exec-id", "e2", id, "sleep", "1000"]);
    o.ok();
    let mut pids = Vec::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            pids = c
                .out(&["task", "ps", id])
                .stdout
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().next()?.parse::<i64>().ok())
                .collect();
            pids.len() == 3
        }),
        "task ps: {pids:?}"
    );
    assert!(
        pids.contains(&init),
        "task ps {pids:?} lacks the init {init}"
    );

    // pause / resume, seen by containerd and by berth.
    c.out(&["task", "pause", id]).ok();
    assert_eq!(c.status(id), "PAUSED");
    assert_eq!(c.berth_state(id)["status"], "paused");
    c.out(&["task", "resume", id]).ok();
    assert_eq!(c.status(id), "RUNNING");

    // metrics read from the task's cgroup.
    let o = c.out(&["task", "metrics", id]);
    o.ok().has("pids.current");
    assert!(
        o.stdout.contains("memory."),
        "no memory metrics:
{o}"
    );

    // kill: SIGTERM reaches the trap, the task stops with status 0.
    c.kill_and_remove(id, &["task", "kill", id]);
}

#[test]
fn a_failing_create_reports_berths_error() {
    let c = Containerd::start();
    // A working directory that is a file: berth's create fails, and
    // containerd must say why and leave nothing.
    let o = run(
        &mut c.run_cmd(&["--rm", "--cwd", "/bin/busybox"], "badcwd", &["true"]),
        LIMIT,
    );
    assert_ne!(o.code, Some(0), "{o}");
    assert!(
        o.stderr.contains("cwd") || o.stderr.contains("busybox"),
        "{o}"
    );
    c.assert_clean();
}

#[test]
fn kill_all_reaches_every_process() {
    let c = Containerd::start();
    let id = "killall";
    run(&mut c.run_cmd(&["-d"], id, &["sleep", "1000"]), LIMIT).ok();
    for e in ["e1", "e2"] {
        c.out(&["task", "exec", "-d", "--exec-id", e, id, "sleep", "1000"])
            .ok();
    }
    let count = || {
        c.out(&["task", "ps", id])
            .stdout
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .count()
    };
    assert!(eventually(Duration::from_secs(10), || count() == 3));
    c.kill_and_remove(id, &["task", "kill", "--all", "--signal", "KILL", id]);
}
