//! Freezing and thawing a cgroup for pause and resume: the v1 freezer
//! controller's `freezer.state` (Documentation/admin-guide/cgroup-v1/
//! freezer-subsystem.rst) and the v2 core files `cgroup.freeze` and
//! `cgroup.events` (cgroup-v2.rst, "Core Interface Files").
//!
//! A v1 freeze can stall in FREEZING while tasks keep forking into the
//! cgroup, so it is retried, with an occasional thaw to let the newcomers
//! settle, until it sticks or the time is up. A v2 freeze completes once
//! every task reaches a point where it can stop; `cgroup.events` says when.
//! A freeze that does not complete in time is undone, so a failed pause
//! never leaves a half-frozen container.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::{fs, v1, Cgroup, CgroupError, Layout, Result};

/// How long a freeze may take before it is given up and undone.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);
/// Every this many v1 attempts the cgroup is thawed for a moment, so that
/// tasks caught half way through fork can finish and be frozen next time.
const THAW_EVERY: u32 = 50;

const V1_STATE: &str = "freezer.state";
const V1_SELF: &str = "freezer.self_freezing";
const V2_FREEZE: &str = "cgroup.freeze";
const V2_EVENTS: &str = "cgroup.events";

impl Cgroup {
    /// Freezes every process in the cgroup and returns once they all are.
    /// On failure the cgroup is thawed again.
    pub fn freeze(&self) -> Result<()> {
        match &self.layout {
            Layout::V1 { dirs } => {
                let dir = v1::dir_of(dirs, "freezer").ok_or(CgroupError::MissingController {
                    controller: "freezer",
                    field: "pause",
                })?;
                undo_on_error(freeze_v1(dir, FREEZE_TIMEOUT), || {
                    fs::write(dir, V1_STATE, "THAWED")
                })
            }
            Layout::V2(d) => {
                let dir = d.path.as_path();
                if !fs::exists(dir, V2_FREEZE) {
                    return Err(CgroupError::Unsupported {
                        field: "pause".to_string(),
                        reason: format!(
                            "{} does not exist: this kernel has no cgroup v2 freezer (Linux 5.2+)",
                            dir.join(V2_FREEZE).display()
                        ),
                    });
                }
                fs::write(dir, V2_FREEZE, "1")?;
                undo_on_error(wait_frozen_v2(dir, FREEZE_TIMEOUT), || {
                    fs::write(dir, V2_FREEZE, "0")
                })
            }
        }
    }

    /// Lets the cgroup's processes run again. A cgroup without a freezer
    /// cannot have been frozen, so there is nothing to do then.
    pub fn thaw(&self) -> Result<()> {
        match &self.layout {
            Layout::V1 { dirs } => match v1::dir_of(dirs, "freezer") {
                Some(dir) => fs::write(dir, V1_STATE, "THAWED"),
                None => Ok(()),
            },
            Layout::V2(d) if fs::exists(&d.path, V2_FREEZE) => fs::write(&d.path, V2_FREEZE, "0"),
            Layout::V2(_) => Ok(()),
        }
    }

    /// Whether a freeze of this cgroup itself is in force (or under way).
    /// A cgroup frozen only because an ancestor is, is not: resuming it
    /// would change nothing. No freezer means not frozen.
    pub fn is_frozen(&self) -> Result<bool> {
        match &self.layout {
            Layout::V1 { dirs } => match v1::dir_of(dirs, "freezer") {
                Some(dir) => is_frozen_v1(dir),
                None => Ok(false),
            },
            Layout::V2(d) => {
                if !fs::exists(&d.path, V2_FREEZE) {
                    return Ok(false);
                }
                Ok(fs::read(&d.path, V2_FREEZE)? == "1")
            }
        }
    }
}

/// Runs `undo` when `result` is an error; the first error is the one kept.
fn undo_on_error(result: Result<()>, undo: impl FnOnce() -> Result<()>) -> Result<()> {
    if result.is_err() {
        if let Err(e) = undo() {
            tracing::warn!(error = %e, "thawing after a failed freeze failed");
        }
    }
    result
}

fn freeze_v1(dir: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut attempt: u32 = 0;
    loop {
        if attempt > 0 && attempt.is_multiple_of(THAW_EVERY) {
            fs::write(dir, V1_STATE, "THAWED")?;
            thread::sleep(Duration::from_millis(10));
        }
        fs::write(dir, V1_STATE, "FROZEN")?;
        let state = fs::read(dir, V1_STATE)?;
        match state.as_str() {
            "FROZEN" => {
                if attempt > 0 {
                    tracing::debug!(attempt, dir = %dir.display(), "frozen after retries");
                }
                return Ok(());
            }
            "FREEZING" => {}
            _ => {
                return Err(CgroupError::Parse {
                    path: dir.join(V1_STATE),
                    content: state,
                })
            }
        }
        if Instant::now() >= deadline {
            return Err(CgroupError::Timeout {
                path: dir.join(V1_STATE),
                what: "freezing",
                state,
                waited: timeout,
            });
        }
        attempt += 1;
        // Retrying at once is what helps against a fork storm; the short,
        // growing pause is for a machine too slow to finish in between.
        thread::sleep(Duration::from_micros(u64::from(attempt.min(200)) * 50));
    }
}

fn is_frozen_v1(dir: &Path) -> Result<bool> {
    if !fs::exists(dir, V1_STATE) {
        return Ok(false);
    }
    match fs::read(dir, V1_STATE)?.as_str() {
        "THAWED" => Ok(false),
        // FROZEN or FREEZING: frozen here, or only through an ancestor?
        _ if fs::exists(dir, V1_SELF) => Ok(fs::read(dir, V1_SELF)? == "1"),
        _ => Ok(true),
    }
}

/// Waits until `cgroup.events` says `frozen 1`. The kernel flags the file
/// for poll(2) (POLLPRI) whenever it changes; the wait also wakes every few
/// milliseconds, which is all a file outside cgroupfs gets.
fn wait_frozen_v2(dir: &Path, timeout: Duration) -> Result<()> {
    let path = dir.join(V2_EVENTS);
    let mut file = File::open(&path).map_err(|source| CgroupError::Read {
        path: path.clone(),
        source,
    })?;
    let deadline = Instant::now() + timeout;
    loop {
        let text = read_from_start(&mut file, &path)?;
        let frozen = super::oom::flat_key(&text, "frozen");
        if frozen == Some(1) {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(CgroupError::Timeout {
                path,
                what: "freezing",
                state: text.trim().replace('\n', ", "),
                waited: timeout,
            });
        }
        super::oom::wait_changed(
            &file,
            &path,
            (deadline - now).min(Duration::from_millis(10)),
        )?;
    }
}

/// Reads the whole file again from its start; cgroupfs produces the
/// content afresh on each read from offset 0.
pub(super) fn read_from_start(file: &mut File, path: &Path) -> Result<String> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_string(&mut text))
        .map_err(|source| CgroupError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(text)
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::{Cgroup, Hierarchy};
    use super::*;
    use std::process::{Child, Command};
    use std::sync::atomic::{AtomicUsize, Ordering};

    static NEXT: AtomicUsize = AtomicUsize::new(0);

    /// A fake unified root offering no controllers, as a tree in a
    /// temporary directory can be.
    pub(in crate::cgroups) fn fake_v2(root: &Path) -> Cgroup {
        std::fs::write(root.join("cgroup.controllers"), "").unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        Hierarchy::v2_at(root)
            .create(Some(Path::new("/ctr")), "x", None)
            .unwrap()
    }

    fn fake_v1(dir: &Path) -> Cgroup {
        Hierarchy::v1_from(vec![("freezer".to_string(), dir.to_path_buf())])
            .create(Some(Path::new("/ctr")), "x", None)
            .unwrap()
    }

    #[test]
    fn v1_freeze_writes_frozen_and_thaw_writes_thawed() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = fake_v1(tmp.path());
        let dir = tmp.path().join("ctr");
        std::fs::write(dir.join(V1_STATE), "THAWED\n").unwrap();
        assert!(!cg.is_frozen().unwrap());
        // A plain file keeps what was written, as a freezer that froze at once.
        cg.freeze().unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join(V1_STATE)).unwrap(),
            "FROZEN"
        );
        assert!(cg.is_frozen().unwrap());
        // Frozen only through an ancestor is not this cgroup's freeze.
        std::fs::write(dir.join(V1_SELF), "0\n").unwrap();
        assert!(!cg.is_frozen().unwrap());
        std::fs::write(dir.join(V1_SELF), "1\n").unwrap();
        assert!(cg.is_frozen().unwrap());
        cg.thaw().unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join(V1_STATE)).unwrap(),
            "THAWED"
        );
        assert!(!cg.is_frozen().unwrap());
    }

    #[test]
    fn v1_without_a_freezer_cannot_pause_but_is_never_frozen() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = Hierarchy::v1_from(vec![("pids".to_string(), tmp.path().to_path_buf())])
            .create(Some(Path::new("/ctr")), "x", None)
            .unwrap();
        let e = cg.freeze().unwrap_err().to_string();
        assert_eq!(
            e,
            "pause needs the freezer cgroup controller, which is not available on this host"
        );
        assert!(!cg.is_frozen().unwrap());
        cg.thaw().unwrap();
    }

    #[test]
    fn v1_refused_write_names_the_file_and_thaws() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = fake_v1(tmp.path());
        let state = tmp.path().join("ctr").join(V1_STATE);
        // A freezer.state that is a directory cannot be written.
        std::fs::create_dir(&state).unwrap();
        let e = cg.freeze().unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("write FROZEN to {}: ", state.display())),
            "{e}"
        );
    }

    #[test]
    fn v2_fake_tree_freeze_waits_for_cgroup_events() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = fake_v2(tmp.path());
        let dir = tmp.path().join("ctr");
        std::fs::write(dir.join(V2_FREEZE), "0\n").unwrap();
        std::fs::write(dir.join(V2_EVENTS), "populated 1\nfrozen 0\n").unwrap();
        let events = dir.join(V2_EVENTS);
        let kernel = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            std::fs::write(events, "populated 1\nfrozen 1\n").unwrap();
        });
        let started = Instant::now();
        cg.freeze().unwrap();
        kernel.join().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(40));
        assert!(cg.is_frozen().unwrap());
        cg.thaw().unwrap();
        assert_eq!(std::fs::read_to_string(dir.join(V2_FREEZE)).unwrap(), "0");
        assert!(!cg.is_frozen().unwrap());

        // Never frozen: the wait gives up, names the file and thaws.
        std::fs::write(dir.join(V2_EVENTS), "populated 1\nfrozen 0\n").unwrap();
        let e = wait_frozen_v2(&dir, Duration::from_millis(50)).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "{}: freezing did not complete within 50ms (the file reads \"populated 1, frozen 0\")",
                dir.join(V2_EVENTS).display()
            )),
            "{e}"
        );
    }

    #[test]
    fn v2_without_cgroup_freeze_is_unsupported() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = fake_v2(tmp.path());
        let e = cg.freeze().unwrap_err().to_string();
        assert!(e.starts_with("pause: "), "{e}");
        assert!(e.contains("cgroup.freeze does not exist"), "{e}");
        assert!(!cg.is_frozen().unwrap());
        cg.thaw().unwrap();
    }

    /// The real cgroup2 mount of this host, if there is one.
    fn unified() -> Option<&'static Path> {
        use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
        [
            Path::new("/sys/fs/cgroup/unified"),
            Path::new("/sys/fs/cgroup"),
        ]
        .into_iter()
        .find(|p| statfs(*p).is_ok_and(|fs| fs.filesystem_type() == CGROUP2_SUPER_MAGIC))
    }

    /// The cgroup, thawed and removed on drop.
    struct Destroy(Cgroup);
    impl Drop for Destroy {
        fn drop(&mut self) {
            let _ = self.0.thaw();
            if let Err(e) = self.0.destroy() {
                eprintln!("{e}");
            }
        }
    }

    /// A child process killed and reaped on drop.
    struct Reap(Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// utime + stime of `pid`, in clock ticks.
    fn cpu_ticks(pid: u32) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = stat.rsplit_once(") ").unwrap().1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Fields 14 and 15 of stat(5), counted after the comm field.
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    fn events_say(dir: &Path, line: &str) -> bool {
        std::fs::read_to_string(dir.join(V2_EVENTS))
            .unwrap()
            .lines()
            .any(|l| l == line)
    }

    #[test]
    fn v2_freeze_stops_a_busy_process_on_the_real_kernel() {
        let Some(root) = unified() else {
            eprintln!("no cgroup2 mount; skipped");
            return;
        };
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("/berth-test-freeze-{}-{n}", std::process::id());
        let cg = Destroy(
            Hierarchy::v2_at(root)
                .create(Some(Path::new(&name)), "unused", None)
                .unwrap(),
        );
        let dir = cg.0.dir_of("").unwrap().to_path_buf();
        let child = Reap(
            Command::new("/bin/busybox")
                .args(["sh", "-c", "while :; do :; done"])
                .spawn()
                .unwrap(),
        );
        let pid = child.0.id();
        cg.0.add_pid(pid as i32).unwrap();
        assert_eq!(cg.0.pids().unwrap(), [pid as i32]);
        assert!(!cg.0.is_frozen().unwrap());

        // Running: it burns CPU time.
        let spins = |ms| {
            let before = cpu_ticks(pid);
            thread::sleep(Duration::from_millis(ms));
            cpu_ticks(pid) - before
        };
        assert!(spins(300) > 0, "the busy child did not run");

        cg.0.freeze().unwrap();
        assert!(events_say(&dir, "frozen 1"));
        assert!(cg.0.is_frozen().unwrap());
        assert_eq!(spins(300), 0, "a frozen process ran");

        cg.0.thaw().unwrap();
        assert!(!cg.0.is_frozen().unwrap());
        assert!(
            testbed::eventually(Duration::from_secs(2), || events_say(&dir, "frozen 0")),
            "cgroup.events still says frozen"
        );
        assert!(spins(300) > 0, "the thawed child did not run again");
    }
}
