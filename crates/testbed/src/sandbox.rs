//! One test's private corner of the host: a directory under `/tmp` for the
//! runtime root, bundles and host-side files, a cgroup parent under
//! `/berth-test`, and an environment mark on every process. Dropping it
//! reports leaks and then removes everything, even after a failure.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use crate::bundle::Bundle;
use crate::leak;

/// The cgroup parent every test container lives under.
pub const CGROUP_PARENT: &str = "/berth-test";

type Cleanup = Box<dyn FnOnce() + Send>;

/// A test's directory, ids, cgroups and marks; see the module docs.
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    tag: String,
    dir: PathBuf,
    root: PathBuf,
    /// The creating thread's name as the kernel keeps it (`comm`, 15
    /// bytes): processes cloned by the library without exec carry it. Tests
    /// whose names share their first 15 bytes and run at the same time
    /// cannot be told apart this way.
    comm: String,
    next: AtomicUsize,
    ids: Mutex<Vec<String>>,
    cgroups: Mutex<Vec<String>>,
    own_mounts: Mutex<Vec<PathBuf>>,
    cleanups: Mutex<Vec<Cleanup>>,
}

/// A process-unique token: pid, a counter and the clock's low bits, so
/// runs that reuse a pid do not collide with leftovers either.
pub fn unique() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_micros())
        .unwrap_or(0);
    format!("{}-{n}-{t:x}", std::process::id())
}

/// This process's command line: processes the library clones from a test
/// and never execs keep it, which is how leak checks find them.
fn own_cmdline() -> &'static [u8] {
    static CMDLINE: OnceLock<Vec<u8>> = OnceLock::new();
    CMDLINE.get_or_init(|| fs::read("/proc/self/cmdline").unwrap_or_default())
}

fn comm_of(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end_matches('\n').to_string())
        .unwrap_or_default()
}

fn thread_comm() -> String {
    let name = thread::current().name().unwrap_or("").to_string();
    let mut end = name.len().min(15);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

impl Sandbox {
    /// Creates `/tmp/berth-test-<unique>` with an empty `root/` in it.
    pub fn new() -> Sandbox {
        let tag = unique();
        let dir = PathBuf::from(format!("/tmp/berth-test-{tag}"));
        let root = dir.join("root");
        fs::create_dir_all(&root).unwrap_or_else(|e| panic!("mkdir {}: {e}", root.display()));
        Sandbox {
            inner: Arc::new(Inner {
                tag,
                dir,
                root,
                comm: thread_comm(),
                next: AtomicUsize::new(0),
                ids: Mutex::new(Vec::new()),
                cgroups: Mutex::new(Vec::new()),
                own_mounts: Mutex::new(Vec::new()),
                cleanups: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The sandbox's unique tag.
    pub fn tag(&self) -> &str {
        &self.inner.tag
    }

    /// The sandbox directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The runtime state root (`--root`).
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    fn next(&self) -> usize {
        self.inner.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The mark carried by processes the sandbox starts on behalf of
    /// `what` (a container id or bundle name); see [`crate::MARK_VAR`].
    pub fn mark_for(&self, what: &str) -> String {
        format!("bt-{}.{what}", self.inner.tag)
    }

    /// The mark prefix all of this sandbox's processes share.
    pub fn mark_prefix(&self) -> String {
        format!("bt-{}", self.inner.tag)
    }

    /// A fresh container id (`<name>-<tag>-<n>`), remembered for cleanup.
    pub fn id(&self, name: &str) -> String {
        let id = format!("{name}-{}-{}", self.inner.tag, self.next());
        self.inner.ids.lock().unwrap().push(id.clone());
        id
    }

    /// Every id handed out so far.
    pub fn ids(&self) -> Vec<String> {
        self.inner.ids.lock().unwrap().clone()
    }

    /// A new busybox bundle in the sandbox running `args`, with its own
    /// mark and `linux.cgroupsPath` = `/berth-test/<tag>-<n>`.
    pub fn bundle(&self, args: &[&str]) -> Bundle {
        let n = self.next();
        let name = format!("b{n}");
        let cg = format!("{CGROUP_PARENT}/{}-{n}", self.inner.tag);
        self.inner.cgroups.lock().unwrap().push(cg.clone());
        let dir = self.inner.dir.join(&name);
        Bundle::create(&dir, args, &self.mark_for(&name), &cg)
            .unwrap_or_else(|e| panic!("bundle {}: {e}", dir.display()))
    }

    /// A new empty host directory in the sandbox (for bind mounts,
    /// markers, logs), world-writable so containers running as other
    /// users can write markers too.
    pub fn host_dir(&self, name: &str) -> PathBuf {
        let d = self.inner.dir.join(format!("{name}-{}", self.next()));
        fs::create_dir_all(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).expect("chmod host dir");
        d
    }

    /// Mounts a tmpfs at `path` (inside the sandbox) in the host mount
    /// namespace; the sandbox unmounts it and does not count it as a leak.
    pub fn mount_tmpfs(&self, path: &Path, data: &str) -> io::Result<()> {
        assert!(
            path.starts_with(&self.inner.dir),
            "{} is outside the sandbox",
            path.display()
        );
        fs::create_dir_all(path)?;
        nix::mount::mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(data),
        )?;
        self.inner
            .own_mounts
            .lock()
            .unwrap()
            .push(path.to_path_buf());
        Ok(())
    }

    /// Makes a mount the sandbox owns shared (`mount --make-shared`), so
    /// propagation into containers can be observed.
    pub fn make_shared(&self, path: &Path) -> io::Result<()> {
        nix::mount::mount(
            None::<&str>,
            path,
            None::<&str>,
            nix::mount::MsFlags::MS_SHARED,
            None::<&str>,
        )?;
        Ok(())
    }

    /// A new network namespace pinned by a bind mount on a file in the
    /// sandbox (what `ip netns add` does under /run/netns), for configs
    /// that join a namespace by path. Unmounted with the sandbox.
    pub fn netns(&self) -> PathBuf {
        let dir = self.inner.dir.join(format!("netns-{}", self.next()));
        self.mount_tmpfs(&dir, "size=64k,mode=755")
            .unwrap_or_else(|e| panic!("tmpfs on {}: {e}", dir.display()));
        // An nsfs file cannot be bind-mounted into a shared mount.
        nix::mount::mount(
            None::<&str>,
            &dir,
            None::<&str>,
            nix::mount::MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .unwrap_or_else(|e| panic!("make {} private: {e}", dir.display()));
        let file = dir.join("net");
        fs::File::create(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let ok = std::process::Command::new("unshare")
            .arg(format!("--net={}", file.display()))
            .arg("true")
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "unshare --net={} true failed", file.display());
        self.inner.own_mounts.lock().unwrap().push(file.clone());
        file
    }

    /// Runs `f` when the sandbox is dropped (before the directory goes),
    /// e.g. to delete a network namespace the test made.
    pub fn on_drop(&self, f: impl FnOnce() + Send + 'static) {
        self.inner.cleanups.lock().unwrap().push(Box::new(f));
    }

    /// Asserts that container `id`, made from `bundle`, left nothing
    /// behind: state dir, cgroup dirs, mounts, marked processes.
    #[track_caller]
    pub fn leak_check(&self, id: &str, bundle: &Bundle) {
        let marks = [self.mark_for(id), bundle.mark().to_string()];
        let found = leak::settle(Duration::from_secs(3), || {
            let mut found = leak::leaks(
                &self.inner.root,
                id,
                bundle.cgroups_path(),
                bundle.path(),
                &marks,
            );
            for pid in self.inner.cloned_pids() {
                found.push(format!("process {pid} ({}) still runs", leak::cmdline(pid)));
            }
            found
        });
        assert!(
            found.is_empty(),
            "container {id} left behind:\n  {}",
            found.join("\n  ")
        );
    }

    /// Everything the sandbox's containers left behind; waits up to
    /// `patience` for dying processes.
    pub fn leaks(&self, patience: Duration) -> Vec<String> {
        leak::settle(patience, || self.inner.leaks_now())
    }

    /// SIGKILLs every process of the sandbox now (marked, cloned from this
    /// test's thread, or in one of its cgroups); returns what would not
    /// die. For tests that must unblock their own threads before failing.
    pub fn kill_processes(&self) -> Vec<String> {
        self.inner.kill_processes()
    }

    /// Guards against a hung test: if not dropped within `limit`, kills
    /// every process of the sandbox (which usually unblocks the test so it
    /// fails normally) and, if the test is still stuck 30 s later, aborts
    /// the whole test process rather than hang the run.
    pub fn watchdog(&self, limit: Duration) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let inner = Arc::clone(&self.inner);
        thread::spawn(move || {
            if rx.recv_timeout(limit) != Err(mpsc::RecvTimeoutError::Timeout) {
                return;
            }
            eprintln!(
                "sandbox {}: test still running after {limit:?}; killing its processes",
                inner.tag
            );
            inner.kill_processes();
            if rx.recv_timeout(Duration::from_secs(30)) == Err(mpsc::RecvTimeoutError::Timeout) {
                eprintln!("sandbox {}: test is stuck; aborting", inner.tag);
                std::process::abort();
            }
        });
        Watchdog { _tx: tx }
    }
}

/// See [`Sandbox::watchdog`]; dropping it disarms the watchdog.
pub struct Watchdog {
    _tx: mpsc::Sender<()>,
}

impl Inner {
    /// Processes cloned from this test process without exec (same
    /// command line) by this sandbox's thread (same `comm`).
    fn cloned_pids(&self) -> Vec<i32> {
        if self.comm.is_empty() {
            return Vec::new();
        }
        let me = std::process::id() as i32;
        let Ok(rd) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&p| p != me && comm_of(p) == self.comm)
            .filter(|&p| fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == own_cmdline()))
            .collect()
    }

    fn stray_pids(&self) -> Vec<i32> {
        let mut pids = leak::marked_pids(&[], Some(&format!("bt-{}", self.tag)));
        pids.extend(self.cloned_pids());
        pids
    }

    fn leaks_now(&self) -> Vec<String> {
        let mut found = Vec::new();
        for id in self.ids.lock().unwrap().iter() {
            let d = self.root.join(id);
            if d.exists() {
                found.push(format!("state dir {} still exists", d.display()));
            }
        }
        for cg in self.cgroups.lock().unwrap().iter() {
            for d in leak::cgroup_dirs(cg) {
                found.push(format!("cgroup dir {} still exists", d.display()));
            }
        }
        let own = self.own_mounts.lock().unwrap().clone();
        for mp in leak::mounts_under(&self.dir) {
            if !own.iter().any(|o| Path::new(&mp) == o) {
                found.push(format!(
                    "mount {mp} still exists in the host mount namespace"
                ));
            }
        }
        for pid in self.stray_pids() {
            found.push(format!("process {pid} ({}) still runs", leak::cmdline(pid)));
        }
        found
    }

    /// SIGKILLs every process of the sandbox (marked, cloned, or in one of
    /// its cgroups) until none is left; returns what would not die.
    fn kill_processes(&self) -> Vec<String> {
        let cgroups = self.cgroups.lock().unwrap().clone();
        // Frozen tasks cannot die, so thaw before killing.
        for cg in &cgroups {
            for d in leak::cgroup_dirs(cg) {
                let state = d.join("freezer.state");
                if state.exists() {
                    let _ = fs::write(&state, "THAWED");
                }
                let freeze = d.join("cgroup.freeze");
                if freeze.exists() {
                    let _ = fs::write(&freeze, "0");
                }
            }
        }
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let mut pids = self.stray_pids();
            for cg in &cgroups {
                for d in leak::cgroup_dirs(cg) {
                    pids.extend(cgroup_pids(&d));
                }
            }
            pids.sort_unstable();
            pids.dedup();
            pids.retain(|&p| p != std::process::id() as i32);
            if pids.is_empty() {
                return Vec::new();
            }
            for &p in &pids {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                reap_if_child(p);
            }
            if Instant::now() >= until {
                return vec![format!("processes {pids:?} survived SIGKILL")];
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills, unmounts and removes everything; returns what could not be
    /// cleaned.
    fn scrub(&self) -> Vec<String> {
        let mut trouble = self.kill_processes();
        let cleanups: Vec<Cleanup> = self.cleanups.lock().unwrap().drain(..).collect();
        for f in cleanups.into_iter().rev() {
            f();
        }
        for cg in self.cgroups.lock().unwrap().iter() {
            for d in leak::cgroup_dirs(cg) {
                if let Err(e) = rmdir_tree(&d) {
                    trouble.push(format!("rmdir {}: {e}", d.display()));
                }
            }
        }
        // Innermost first; lazily, since a leaked mount may be busy.
        for _ in 0..8 {
            let mps = leak::mounts_under(&self.dir);
            if mps.is_empty() {
                break;
            }
            for mp in mps.iter().rev() {
                let _ = umount2(mp.as_str(), MntFlags::MNT_DETACH);
            }
        }
        let left = leak::mounts_under(&self.dir);
        if left.is_empty() {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                if e.kind() != io::ErrorKind::NotFound {
                    trouble.push(format!("rm -r {}: {e}", self.dir.display()));
                }
            }
        } else {
            // Removing through a mount could delete host files.
            trouble.push(format!(
                "not removing {}: cannot unmount {left:?}",
                self.dir.display()
            ));
        }
        trouble
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let panicking = thread::panicking();
        let leaks = if panicking {
            Vec::new()
        } else {
            self.leaks(Duration::from_secs(3))
        };
        let trouble = self.inner.scrub();
        if !trouble.is_empty() {
            eprintln!(
                "sandbox {}: cleanup trouble:\n  {}",
                self.inner.tag,
                trouble.join("\n  ")
            );
        }
        if !leaks.is_empty() && !panicking {
            panic!("containers left behind:\n  {}", leaks.join("\n  "));
        }
    }
}

fn cgroup_pids(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(s) = fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(rd) = fs::read_dir(&d) {
            stack.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
        }
    }
    pids
}

fn rmdir_tree(dir: &Path) -> io::Result<()> {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path())?;
            }
        }
    }
    // An emptied cgroup can stay busy for a moment after its last task.
    let mut tries = 0;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if tries < 50 => {
                let _ = e;
                tries += 1;
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

fn reap_if_child(pid: i32) {
    let ppid = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(") ")?.1.to_string();
            after.split(' ').nth(1)?.parse::<u32>().ok()
        });
    if ppid != Some(std::process::id()) {
        return;
    }
    for _ in 0..100 {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(nix::sys::wait::WaitStatus::StillAlive) => thread::sleep(Duration::from_millis(10)),
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::process::Command;

    fn drop_panics(sb: Sandbox) -> String {
        let r = catch_unwind(AssertUnwindSafe(move || drop(sb)));
        match r {
            Ok(()) => String::new(),
            Err(e) => e
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "non-string panic".into()),
        }
    }

    #[test]
    fn clean_sandbox_drops_quietly_and_goes_away() {
        let sb = Sandbox::new();
        let b = sb.bundle(&["true"]);
        let dir = sb.dir().to_path_buf();
        assert!(b.config_path().exists());
        assert_eq!(drop_panics(sb), "");
        assert!(!dir.exists());
    }

    #[test]
    fn stray_process_cgroup_and_mount_are_reported_and_removed() {
        let sb = Sandbox::new();
        let b = sb.bundle(&["true"]);
        let mut child = Command::new("sleep")
            .arg("1000")
            .env(crate::MARK_VAR, b.mark())
            .spawn()
            .unwrap();
        let cg = Path::new("/sys/fs/cgroup/pids").join(b.cgroups_path().trim_start_matches('/'));
        fs::create_dir_all(&cg).unwrap();
        let mp = b.rootfs().join("tmp");
        nix::mount::mount(
            Some("tmpfs"),
            &mp,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        let dir = sb.dir().to_path_buf();
        let msg = drop_panics(sb);
        let _ = child.wait();
        assert!(msg.contains("still runs"), "{msg}");
        assert!(msg.contains("cgroup dir"), "{msg}");
        assert!(msg.contains(&format!("mount {}", mp.display())), "{msg}");
        assert!(!cg.exists());
        assert!(!dir.exists());
    }

    #[test]
    fn unexeced_clones_of_the_test_thread_are_found() {
        // Clones are told apart by thread name, and every test here shares
        // the 15-byte prefix "sandbox::tests:", so use a thread of its own.
        thread::Builder::new()
            .name("clone-probe".into())
            .spawn(|| {
                let sb = Sandbox::new();
                // SAFETY: the child only calls pause(2), which is
                // async-signal-safe, so forking a multi-threaded process
                // is sound.
                let pid = unsafe {
                    match libc::fork() {
                        0 => loop {
                            libc::pause();
                        },
                        p => p,
                    }
                };
                assert!(pid > 0);
                let msg = drop_panics(sb);
                assert!(msg.contains(&format!("process {pid} ")), "{msg}");
                assert!(!Path::new(&format!("/proc/{pid}")).exists());
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn own_mounts_are_not_leaks() {
        let sb = Sandbox::new();
        let d = sb.dir().join("shared");
        sb.mount_tmpfs(&d, "size=1m").unwrap();
        sb.make_shared(&d).unwrap();
        assert_eq!(drop_panics(sb), "");
        assert!(leak::mounts_under(&d).is_empty());
    }
}
