//! dockerd running containers through berth: `dockerd --add-runtime
//! berth=<path>` started by the test with its own data root, exec root,
//! socket and cgroup parent, no iptables, no bridge and no IP forwarding
//! (so that the host's network settings stay as they are), then `docker
//! run --runtime berth`.
//!
//! dockerd 20.10 writes `/etc/docker/key.json` whatever its flags say, and
//! makes `/run/docker`; its containerd puts shim sockets under
//! `/run/containerd/s`. The test removes what it made.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use berth_clients::{ensure_packages, eventually, host, image, run, runtime, Daemon, Out};

const LIMIT: Duration = berth_clients::COMMAND_LIMIT;
const IMAGE: &str = "localhost/berth-clients/busybox:latest";

struct Docker {
    daemon: Daemon,
    socket: PathBuf,
    parent: String,
    dir: tempfile::TempDir,
    _outside: host::Outside,
    ip_forward: String,
}

fn ip_forward() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default()
}

impl Docker {
    fn start() -> Docker {
        testbed::require_root();
        ensure_packages(&[("dockerd", "docker.io"), ("docker", "docker.io")]);
        let outside = host::Outside::watch(&["/etc/docker", "/run/docker", "/run/containerd"]);
        let dir = tempfile::Builder::new()
            .prefix("berth-clients-dk-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let d = dir.path();
        let socket = d.join("docker.sock");
        let parent = berth_clients::unique("berth-clients-dk");
        std::fs::write(d.join("daemon.json"), "{}").unwrap();
        let forward = ip_forward();
        let mut cmd = Command::new("dockerd");
        cmd.arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge=none",
                "--userland-proxy=false",
                "--storage-driver",
                "overlay2",
                "--exec-opt",
                "native.cgroupdriver=cgroupfs",
                "--cgroup-parent",
                &format!("/{parent}"),
                "--add-runtime",
            ])
            .arg(format!("berth={}", runtime().display()));
        let mut daemon = Daemon::spawn("dockerd", &mut cmd, &d.join("dockerd.log"));
        let docker = Docker {
            daemon: {
                let sock = socket.clone();
                let cli = d.join("cli");
                daemon.wait_ready(Duration::from_secs(60), || {
                    sock.exists()
                        && run(
                            Command::new("docker")
                                .env("DOCKER_CONFIG", &cli)
                                .arg("--host")
                                .arg(format!("unix://{}", sock.display()))
                                .arg("version"),
                            LIMIT,
                        )
                        .code
                            == Some(0)
                });
                daemon
            },
            socket,
            parent,
            dir,
            _outside: outside,
            ip_forward: forward,
        };
        let archive = image::busybox_archive(docker.dir.path(), IMAGE);
        docker
            .out(&["load", "--input", &archive.display().to_string()])
            .ok();
        docker
    }

    fn docker(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_CONFIG", self.dir.path().join("cli"))
            .arg("--host")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args);
        cmd
    }

    fn out(&self, args: &[&str]) -> Out {
        run(&mut self.docker(args), LIMIT)
    }

    /// `docker run --runtime berth --network none` with `args`.
    fn run(&self, args: &[&str]) -> Out {
        let mut v = vec!["run", "--runtime", "berth", "--network", "none"];
        v.extend_from_slice(args);
        self.out(&v)
    }

    /// The runtime root dockerd gives the runtime (containerd's runc shim
    /// passes it as `--root`), where berth keeps the containers' state.
    fn state_root(&self) -> PathBuf {
        let exec = self.dir.path().join("exec");
        let mut found = None;
        for e in std::fs::read_dir(&exec).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("runtime-") {
                found = Some(e.path().join("moby"));
            }
        }
        found.unwrap_or_else(|| exec.join("runtime-berth/moby"))
    }

    /// The value of `file` in the container's cgroup (the first
    /// hierarchy that has it).
    fn cgroup_value(&self, id: &str, file: &str) -> String {
        host::cgroups_below("self", &self.parent)
            .into_iter()
            .filter(|d| d.file_name().is_some_and(|n| n.to_string_lossy() == id))
            .find_map(|d| std::fs::read_to_string(d.join(file)).ok())
            .unwrap_or_else(|| panic!("no {file} for container {id}"))
            .trim()
            .to_string()
    }

    fn leaks(&self) -> Vec<String> {
        let mut found = Vec::new();
        for e in std::fs::read_dir(self.state_root())
            .into_iter()
            .flatten()
            .flatten()
        {
            found.push(format!("runtime state {} left", e.path().display()));
        }
        found.extend(host::cgroup_leaks("self", &self.parent, |_| true));
        for mp in host::mounts_under("self", &self.dir.path().join("data")) {
            if mp.ends_with("/merged") {
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

impl Drop for Docker {
    fn drop(&mut self) {
        let ids = self.out(&["ps", "--all", "--quiet"]);
        for id in ids.stdout.split_whitespace() {
            let _ = self.out(&["rm", "--force", id]);
        }
        let _ = host::remove_cgroups("self", &self.parent);
        self.daemon.stop();
        let pid_file = self.dir.path().join("exec/containerd/containerd.pid");
        if let Some(pid) = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            // dockerd stops its containerd; make sure of it.
            if testbed::leak::cmdline(pid).contains("containerd") {
                // SAFETY: kill(2) with integer arguments.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        host::unmount_under(self.dir.path());
        if ip_forward() != self.ip_forward {
            let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &self.ip_forward);
        }
    }
}

#[test]
fn run_detach_exec_stop_rm_through_berth() {
    let d = Docker::start();

    // run --rm: output and exit code.
    let o = d.run(&["--rm", IMAGE, "echo", "hello from berth"]);
    assert_eq!(o.ok().out(), "hello from berth");
    d.run(&["--rm", IMAGE, "sh", "-c", "exit 9"]).exits(9);

    // -d, then exec into it.
    let o = d.run(&[
        "-d",
        IMAGE,
        "sh",
        "-c",
        "trap 'echo got-term; kill $!; exit 0' TERM; echo ready; sleep 1000 & wait",
    ]);
    let id = o.ok().out().to_string();
    assert_eq!(
        d.out(&["inspect", "--format", "{{.HostConfig.Runtime}}", &id])
            .ok()
            .out(),
        "berth"
    );
    assert!(eventually(Duration::from_secs(20), || d
        .out(&["logs", &id])
        .stdout
        .contains("ready")));
    // The runtime's state for it is where dockerd's shim keeps it.
    let state = d.state_root().join(&id);
    assert!(state.exists(), "{} missing", state.display());
    let o = d.out(&["exec", &id, "sh", "-c", "echo in-exec; exit 6"]);
    o.exits(6);
    assert_eq!(o.out(), "in-exec");

    // update: dockerd hands new limits to the runtime (`update -r -`).
    d.out(&[
        "update",
        "--memory",
        "64m",
        "--memory-swap",
        "64m",
        "--pids-limit",
        "40",
        &id,
    ])
    .ok();
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let (mem, pids) = if v2 {
        ("memory.max", "pids.max")
    } else {
        ("memory.limit_in_bytes", "pids.max")
    };
    assert_eq!(d.cgroup_value(&id, mem), "67108864");
    assert_eq!(d.cgroup_value(&id, pids), "40");

    // stop: SIGTERM reaches the trap well before the grace period ends.
    let t = std::time::Instant::now();
    d.out(&["stop", "--time", "30", &id]).ok();
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "stop took {:?}",
        t.elapsed()
    );
    assert_eq!(
        d.out(&["inspect", "--format", "{{.State.ExitCode}}", &id])
            .ok()
            .out(),
        "0"
    );
    d.out(&["logs", &id]).ok().has("got-term");
    d.out(&["rm", &id]).ok();
    d.assert_clean();
    assert_eq!(ip_forward(), d.ip_forward, "dockerd changed ip_forward");
}
