//! What a container can leave on the host after `delete`: its state
//! directory under the runtime root, cgroup directories in every v1
//! hierarchy and in cgroup2, mounts in the host mount namespace
//! (`/proc/self/mountinfo`) and processes (found by the mark in
//! `/proc/<pid>/environ`).

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::bundle::MARK_VAR;

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountInfo {
    /// Mount id.
    pub id: u32,
    /// Parent mount id.
    pub parent: u32,
    /// `major:minor`.
    pub dev: String,
    /// Root of the mount within its filesystem.
    pub root: String,
    /// Mount point, octal escapes decoded.
    pub mount_point: String,
    /// Per-mount options (`rw,nosuid,relatime`).
    pub options: Vec<String>,
    /// Optional fields (`shared:N`, `master:N`, `propagate_from:N`, `unbindable`).
    pub optional: Vec<String>,
    /// Filesystem type.
    pub fstype: String,
    /// Mount source.
    pub source: String,
    /// Superblock options (`rw,size=1024k,mode=1777`).
    pub super_options: Vec<String>,
}

impl MountInfo {
    /// Whether the per-mount or superblock options hold `opt`.
    pub fn has_option(&self, opt: &str) -> bool {
        self.options
            .iter()
            .chain(&self.super_options)
            .any(|o| o == opt)
    }
}

/// Parses mountinfo text (from the host or printed by a container).
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<MountInfo> {
    let mut f = line.split(' ');
    let id = f.next()?.parse().ok()?;
    let parent = f.next()?.parse().ok()?;
    let dev = f.next()?.to_string();
    let root = unescape_octal(f.next()?);
    let mount_point = unescape_octal(f.next()?);
    let options = f.next()?.split(',').map(String::from).collect();
    let mut optional = Vec::new();
    loop {
        match f.next()? {
            "-" => break,
            o => optional.push(o.to_string()),
        }
    }
    let fstype = f.next()?.to_string();
    let source = unescape_octal(f.next()?);
    let super_options = f
        .next()
        .unwrap_or("")
        .split(',')
        .map(String::from)
        .collect();
    Some(MountInfo {
        id,
        parent,
        dev,
        root,
        mount_point,
        options,
        optional,
        fstype,
        source,
        super_options,
    })
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The host's mounts (`/proc/self/mountinfo`).
pub fn host_mounts() -> Vec<MountInfo> {
    parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// Mount points at or under `dir` in the host mount namespace, in mount
/// order.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy();
    let dir = dir.trim_end_matches('/');
    host_mounts()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|mp| mp == dir || mp.starts_with(&format!("{dir}/")))
        .collect()
}

/// Mount points of every cgroup (v1) and cgroup2 hierarchy.
pub fn cgroup_mounts() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = host_mounts()
        .into_iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .map(|m| PathBuf::from(m.mount_point))
        .collect();
    v.dedup();
    v
}

/// The directories `cgroups_path` (absolute, like `/berth-test/x`)
/// occupies in the hierarchies that hold it now.
pub fn cgroup_dirs(cgroups_path: &str) -> Vec<PathBuf> {
    let rel = cgroups_path.trim_start_matches('/');
    if rel.is_empty() {
        return Vec::new();
    }
    cgroup_mounts()
        .into_iter()
        .map(|m| m.join(rel))
        .filter(|d| d.is_dir())
        .collect()
}

/// Pids (other than this process) whose environment holds
/// `MARK_VAR=<mark>` for one of `marks`, or `MARK_VAR=<prefix>` /
/// `MARK_VAR=<prefix>.<anything>` for `prefix`.
pub fn marked_pids(marks: &[String], prefix: Option<&str>) -> Vec<i32> {
    let me = std::process::id() as i32;
    let exact: Vec<Vec<u8>> = marks
        .iter()
        .map(|m| format!("{MARK_VAR}={m}").into_bytes())
        .collect();
    let pre = prefix.map(|p| format!("{MARK_VAR}={p}").into_bytes());
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let hit = env.split(|&b| b == 0).any(|var| {
            exact.iter().any(|m| var == m.as_slice())
                || pre.as_ref().is_some_and(|p| {
                    var.starts_with(p) && (var.len() == p.len() || var[p.len()] == b'.')
                })
        });
        if hit {
            pids.push(pid);
        }
    }
    pids
}

/// What a container left behind: its state dir `<root>/<id>`, its cgroup
/// dirs, mounts under `bundle`, and processes marked with one of `marks`.
/// Empty when clean.
pub fn leaks(
    root: &Path,
    id: &str,
    cgroups_path: &str,
    bundle: &Path,
    marks: &[String],
) -> Vec<String> {
    let mut found = Vec::new();
    if !id.is_empty() && !id.contains('/') && id != "." && id != ".." {
        let state = root.join(id);
        if state.exists() {
            found.push(format!("state dir {} still exists", state.display()));
        }
    }
    for d in cgroup_dirs(cgroups_path) {
        found.push(format!("cgroup dir {} still exists", d.display()));
    }
    for mp in mounts_under(bundle) {
        found.push(format!(
            "mount {mp} still exists in the host mount namespace"
        ));
    }
    for pid in marked_pids(marks, None) {
        found.push(format!("process {pid} ({}) still runs", cmdline(pid)));
    }
    found
}

/// Calls `find` until it reports nothing or `patience` has passed (killed
/// processes and emptied cgroups take a moment to go) and returns its last
/// answer.
pub fn settle(patience: Duration, mut find: impl FnMut() -> Vec<String>) -> Vec<String> {
    let until = Instant::now() + patience;
    loop {
        let found = find();
        if found.is_empty() || Instant::now() >= until {
            return found;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that a container left nothing behind: no state dir, no cgroup
/// dir in any hierarchy, no mount under `bundle`, no process marked with
/// one of `marks`.
pub fn leak_check(root: &Path, id: &str, cgroups_path: &str, bundle: &Path, marks: &[String]) {
    let found = settle(Duration::from_secs(3), || {
        leaks(root, id, cgroups_path, bundle, marks)
    });
    assert!(
        found.is_empty(),
        "container {id} left behind:\n  {}",
        found.join("\n  ")
    );
}

/// `/proc/<pid>/cmdline` with spaces for NULs (empty when gone).
pub fn cmdline(pid: i32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .trim_end_matches('\0')
        .replace('\0', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_optional_fields_and_escapes() {
        let m = parse_mountinfo(
            "36 35 98:0 /mnt1 /mnt\\040x rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n\
             37 35 0:5 / /t ro,nosuid - tmpfs tmpfs ro,size=1024k,mode=1770",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, "/mnt x");
        assert_eq!(m[0].optional, ["master:1", "shared:2"]);
        assert_eq!(m[0].fstype, "ext3");
        assert!(m[1].optional.is_empty());
        assert!(m[1].has_option("mode=1770"));
        assert!(m[1].has_option("nosuid"));
    }

    #[test]
    fn host_has_cgroup_mounts() {
        assert!(!cgroup_mounts().is_empty());
    }
}
