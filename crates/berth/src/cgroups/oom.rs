//! OOM notifications (what `events` reports as `{"type":"oom"}`): on v1 an
//! eventfd registered for `memory.oom_control` through
//! `cgroup.event_control` (cgroup-v1/memory.rst, "Memory thresholds" and
//! "OOM Control"); on v2 the `oom_kill` count of `memory.events`, which the
//! kernel flags for poll(2) each time it changes (cgroup-v2.rst).

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{fs, v1, Cgroup, CgroupError, Layout, Result};

/// How often a v2 watch rereads `memory.events` even without a poll
/// wake-up (a file outside cgroupfs never sends one).
const V2_RECHECK: Duration = Duration::from_millis(50);

/// Watches one cgroup for OOM events; see [`Cgroup::oom_watcher`].
#[derive(Debug)]
pub struct OomWatcher {
    kind: Kind,
    gone: bool,
}

#[derive(Debug)]
enum Kind {
    V1 {
        /// Counts OOM events; readable when the count is not zero.
        efd: File,
        /// The registration lasts as long as this stays open.
        _control: File,
        /// The memory cgroup directory.
        dir: PathBuf,
    },
    V2 {
        /// `memory.events`, kept open for poll.
        file: File,
        path: PathBuf,
        /// The `oom_kill` count already reported.
        seen: u64,
    },
}

impl Cgroup {
    /// Starts watching the cgroup for OOM events; only events from now on
    /// are counted.
    pub fn oom_watcher(&self) -> Result<OomWatcher> {
        let missing = CgroupError::MissingController {
            controller: "memory",
            field: "OOM notification",
        };
        let kind = match &self.layout {
            Layout::V1 { dirs } => {
                let dir = v1::dir_of(dirs, "memory").ok_or(missing)?;
                watch_v1(dir)?
            }
            Layout::V2(d) => {
                let path = d.path.join("memory.events");
                if !path.exists() {
                    return Err(missing);
                }
                let mut file = File::open(&path).map_err(|source| CgroupError::Read {
                    path: path.clone(),
                    source,
                })?;
                let text = super::freezer::read_from_start(&mut file, &path)?;
                let seen = flat_key(&text, "oom_kill").unwrap_or(0);
                Kind::V2 { file, path, seen }
            }
        };
        Ok(OomWatcher { kind, gone: false })
    }
}

fn watch_v1(dir: &Path) -> Result<Kind> {
    let control_path = dir.join("memory.oom_control");
    let control = File::open(&control_path).map_err(|source| CgroupError::Read {
        path: control_path.clone(),
        source,
    })?;
    let efd = eventfd().map_err(|source| CgroupError::Watch {
        path: control_path,
        source,
    })?;
    let efd = File::from(efd);
    let registration = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
    fs::write(dir, "cgroup.event_control", &registration)?;
    Ok(Kind::V1 {
        efd,
        _control: control,
        dir: dir.to_path_buf(),
    })
}

impl OomWatcher {
    /// Waits up to `timeout` and returns how many OOM events happened
    /// meanwhile (0 when none did). On v1 that is the number of times the
    /// cgroup ran out of memory, on v2 the number of processes the OOM
    /// killer ended. Once the cgroup has been removed this returns 0 at
    /// once and [`OomWatcher::gone`] is true.
    pub fn wait(&mut self, timeout: Duration) -> Result<u64> {
        if self.gone {
            return Ok(0);
        }
        match &mut self.kind {
            Kind::V1 { efd, dir, .. } => {
                let control = dir.join("memory.oom_control");
                if !wait_readable(efd, &control, timeout)? {
                    return Ok(0);
                }
                let mut count = [0u8; 8];
                efd.read_exact(&mut count)
                    .map_err(|source| CgroupError::Watch {
                        path: control.clone(),
                        source,
                    })?;
                // Removing the cgroup also signals every registered eventfd.
                if !dir.join("cgroup.event_control").exists() {
                    self.gone = true;
                    return Ok(0);
                }
                Ok(u64::from_ne_bytes(count))
            }
            Kind::V2 { file, path, seen } => {
                let deadline = Instant::now() + timeout;
                loop {
                    let text = match super::freezer::read_from_start(file, path) {
                        Ok(t) => t,
                        // The cgroup was removed under the open file.
                        Err(CgroupError::Read { source, .. })
                            if matches!(
                                source.raw_os_error(),
                                Some(libc::ENODEV | libc::ENOENT)
                            ) =>
                        {
                            self.gone = true;
                            return Ok(0);
                        }
                        Err(e) => return Err(e),
                    };
                    let count = flat_key(&text, "oom_kill").unwrap_or(*seen);
                    if count > *seen {
                        let new = count - *seen;
                        *seen = count;
                        return Ok(new);
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(0);
                    }
                    wait_changed(file, path, (deadline - now).min(V2_RECHECK))?;
                }
            }
        }
    }

    /// Whether the watched cgroup no longer exists.
    pub fn gone(&self) -> bool {
        self.gone
    }
}

/// eventfd(2) with a zero count, close-on-exec.
fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes two integers and returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn poll_timeout(timeout: Duration) -> PollTimeout {
    PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX)
}

/// Whether `file` became readable within `timeout`.
fn wait_readable(file: &File, path: &Path, timeout: Duration) -> Result<bool> {
    let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, poll_timeout(timeout)) {
        Ok(n) => Ok(n > 0),
        Err(nix::errno::Errno::EINTR) => Ok(false),
        Err(e) => Err(CgroupError::Watch {
            path: path.to_path_buf(),
            source: e.into(),
        }),
    }
}

/// Waits up to `timeout` for cgroupfs to flag `file` as changed since it
/// was last read (POLLPRI). Early returns are harmless: callers reread.
pub(super) fn wait_changed(file: &File, path: &Path, timeout: Duration) -> Result<()> {
    let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
    match poll(&mut fds, poll_timeout(timeout)) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(e) => Err(CgroupError::Watch {
            path: path.to_path_buf(),
            source: e.into(),
        }),
    }
}

/// The value of `key` in a flat keyed file (`key value` per line, as
/// `memory.events` and `cgroup.events`).
pub(super) fn flat_key(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::super::Hierarchy;
    use super::*;
    use std::io::Write;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    static NEXT: AtomicUsize = AtomicUsize::new(0);

    #[test]
    fn flat_keys() {
        let text = "low 0\nhigh 3\nmax 12\noom 2\noom_kill 1\n";
        assert_eq!(flat_key(text, "oom_kill"), Some(1));
        assert_eq!(flat_key(text, "oom"), Some(2));
        assert_eq!(flat_key(text, "max"), Some(12));
        assert_eq!(flat_key(text, "nope"), None);
        assert_eq!(flat_key("populated 1\nfrozen 0\n", "frozen"), Some(0));
    }

    #[test]
    fn v2_counts_new_oom_kills_from_memory_events() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = super::super::freezer::tests::fake_v2(tmp.path());
        let events = tmp.path().join("ctr").join("memory.events");
        let e = cg.oom_watcher().unwrap_err().to_string();
        assert_eq!(
            e,
            "OOM notification needs the memory cgroup controller, which is not available on this host"
        );
        // Kills before the watch started are not reported.
        std::fs::write(&events, "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n").unwrap();
        let mut w = cg.oom_watcher().unwrap();
        assert_eq!(w.wait(Duration::from_millis(60)).unwrap(), 0);
        let writer = {
            let events = events.clone();
            thread::spawn(move || {
                thread::sleep(Duration::from_millis(80));
                std::fs::write(events, "low 0\nhigh 0\nmax 9\noom 2\noom_kill 3\n").unwrap();
            })
        };
        let started = Instant::now();
        assert_eq!(w.wait(Duration::from_secs(5)).unwrap(), 2);
        assert!(started.elapsed() >= Duration::from_millis(70));
        writer.join().unwrap();
        assert_eq!(w.wait(Duration::from_millis(60)).unwrap(), 0);
        assert!(!w.gone());
    }

    /// A child process killed and reaped on drop.
    struct Reap(Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The cgroup removed on drop (after the processes in it are gone).
    struct Destroy(Option<Cgroup>);
    impl Drop for Destroy {
        fn drop(&mut self) {
            if let Some(cg) = self.0.take() {
                if let Err(e) = cg.destroy() {
                    eprintln!("{e}");
                }
            }
        }
    }

    #[test]
    fn v1_eventfd_reports_an_oom_on_the_real_kernel() {
        let mount = Path::new("/sys/fs/cgroup/memory");
        if !mount.join("cgroup.event_control").exists()
            || !mount.join("memory.memsw.limit_in_bytes").exists()
        {
            eprintln!("no v1 memory controller with swap accounting; skipped");
            return;
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("/berth-test-oom-{}-{n}", std::process::id());
        // 16 MiB of memory and no swap, so the kernel has to kill.
        let limit = serde_json::json!({"memory": {"limit": 16777216, "swap": 16777216}});
        let mut cg = Destroy(Some(
            Hierarchy::v1_from(vec![("memory".to_string(), mount.to_path_buf())])
                .create(
                    Some(Path::new(&name)),
                    "x",
                    Some(&serde_json::from_value(limit).unwrap()),
                )
                .unwrap(),
        ));
        let mut w = cg.0.as_ref().unwrap().oom_watcher().unwrap();
        assert_eq!(w.wait(Duration::from_millis(20)).unwrap(), 0);

        let mut child = Reap(
            Command::new("/bin/busybox")
                .args([
                    "sh",
                    "-c",
                    "read _; exec busybox dd if=/dev/zero of=/dev/null bs=64M count=1",
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        cg.0.as_ref().unwrap().add_pid(child.0.id() as i32).unwrap();
        child.0.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let mut seen = 0;
        let until = Instant::now() + Duration::from_secs(10);
        while seen == 0 && Instant::now() < until {
            seen += w.wait(Duration::from_millis(200)).unwrap();
        }
        assert!(seen >= 1, "no OOM event");
        let status = child.0.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");

        // Removing the cgroup wakes the watcher, which then says so.
        cg.0.take().unwrap().destroy().unwrap();
        assert_eq!(w.wait(Duration::from_secs(5)).unwrap(), 0);
        assert!(w.gone());
    }
}
