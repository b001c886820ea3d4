//! The host state a manager and its containers leave behind: processes,
//! mounts (in the host's mount namespace or a daemon's own), cgroup
//! directories, and files a daemon makes outside its own directories.

use std::fs;
use std::path::{Path, PathBuf};

use testbed::parse_mountinfo;

/// SIGKILLs process group `pgid` (nothing when it is gone).
pub fn kill_group(pgid: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) with integer arguments.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

/// Mount points under `dir` in the mount namespace of `pid` ("self" for
/// this process), innermost last.
pub fn mounts_under(pid: &str, dir: &Path) -> Vec<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let prefix = format!("{}/", dir.display());
    parse_mountinfo(&text)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|mp| mp.starts_with(&prefix) || Path::new(mp) == dir)
        .collect()
}

/// Lazily unmounts everything under `dir` in this mount namespace.
pub fn unmount_under(dir: &Path) {
    for _ in 0..8 {
        let mps = mounts_under("self", dir);
        if mps.is_empty() {
            return;
        }
        for mp in mps.iter().rev() {
            let _ = nix::mount::umount2(mp.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// The cgroup (v1 and v2) mount points in the mount namespace of `pid`,
/// as paths this process can reach (through `/proc/<pid>/root`).
pub fn cgroup_mounts_of(pid: &str) -> Vec<PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    let mut v: Vec<PathBuf> = parse_mountinfo(&text)
        .into_iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .map(|m| {
            if pid == "self" {
                PathBuf::from(m.mount_point)
            } else {
                PathBuf::from(format!("/proc/{pid}/root{}", m.mount_point))
            }
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Directories below `<hierarchy>/<parent>` in every cgroup hierarchy
/// seen from `pid`, deepest first.
pub fn cgroups_below(pid: &str, parent: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for m in cgroup_mounts_of(pid) {
        walk(&m.join(parent.trim_start_matches('/')), &mut found);
    }
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            let p = e.path();
            walk(&p, found);
            found.push(p);
        }
    }
}

/// Cgroup directories below `<parent>` (seen from `pid`) that `ours`
/// accepts as the runtime's, and processes in `<parent>`, as leak reports.
pub fn cgroup_leaks(pid: &str, parent: &str, ours: impl Fn(&Path) -> bool) -> Vec<String> {
    let mut found: Vec<String> = cgroups_below(pid, parent)
        .into_iter()
        .filter(|d| ours(d))
        .map(|d| format!("cgroup {} left", d.display()))
        .collect();
    for p in pids_in_cgroup(parent) {
        found.push(format!("process {p} ({}) left", testbed::leak::cmdline(p)));
    }
    found
}

/// Kills every process in `<parent>` (any hierarchy seen from `pid`),
/// then removes the cgroup directories, `<parent>` included. Returns what
/// could not be removed.
pub fn remove_cgroups(pid: &str, parent: &str) -> Vec<String> {
    let mut trouble = Vec::new();
    for _ in 0..50 {
        let pids = pids_in_cgroup(parent);
        if pids.is_empty() {
            break;
        }
        for p in pids {
            // SAFETY: kill(2) with integer arguments.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut dirs = cgroups_below(pid, parent);
    for m in cgroup_mounts_of(pid) {
        let top = m.join(parent.trim_start_matches('/'));
        if top.is_dir() {
            dirs.push(top);
        }
    }
    for d in dirs {
        // Frozen tasks cannot die: thaw first.
        let _ = fs::write(d.join("freezer.state"), "THAWED");
        let _ = fs::write(d.join("cgroup.freeze"), "0");
        if let Err(e) = fs::remove_dir(&d) {
            trouble.push(format!("rmdir {}: {e}", d.display()));
        }
    }
    trouble
}

/// Pids whose cgroup (in any hierarchy) lies under `parent`.
pub fn pids_in_cgroup(parent: &str) -> Vec<i32> {
    let needle = format!(":/{}/", parent.trim_matches('/'));
    let exact = format!(":/{}\n", parent.trim_matches('/'));
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            fs::read_to_string(format!("/proc/{p}/cgroup"))
                .is_ok_and(|c| c.contains(&needle) || c.contains(&exact))
        })
        .collect()
}

/// Pids whose command line contains every one of `words`.
pub fn pids_with_cmdline(words: &[&str]) -> Vec<i32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            let c = testbed::leak::cmdline(*p);
            !c.is_empty() && words.iter().all(|w| c.contains(w))
        })
        .collect()
}

/// Paths a daemon may create outside the directories it is given (for
/// instance dockerd's `/etc/docker/key.json`, containerd's shim sockets
/// under `/run/containerd/s`): those missing when first watched are removed
/// again when the last watcher in this process is dropped (tests run in
/// parallel and share them while they run).
pub struct Outside {
    paths: Vec<PathBuf>,
}

/// Per path: how many watchers, and whether it was missing at first.
type Watched = std::collections::HashMap<PathBuf, (usize, bool)>;

fn watched() -> std::sync::MutexGuard<'static, Watched> {
    static W: std::sync::OnceLock<std::sync::Mutex<Watched>> = std::sync::OnceLock::new();
    W.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

impl Outside {
    /// Starts watching `paths`.
    pub fn watch(paths: &[&str]) -> Outside {
        let mut w = watched();
        let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
        for p in &paths {
            let e = w.entry(p.clone()).or_insert((0, !p.exists()));
            e.0 += 1;
        }
        Outside { paths }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let mut w = watched();
        for p in &self.paths {
            let Some(e) = w.get_mut(p) else { continue };
            e.0 -= 1;
            if e.0 > 0 {
                continue;
            }
            let made = e.1;
            w.remove(p);
            if made {
                if p.is_dir() {
                    let _ = fs::remove_dir_all(p);
                } else {
                    let _ = fs::remove_file(p);
                }
            }
        }
    }
}
