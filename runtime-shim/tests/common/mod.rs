//! Shared helpers for the binary's integration tests: a runner bound to
//! the `berth` binary this package builds, and small readers for what
//! containers print about themselves.
#![allow(dead_code, unused_imports)]

use std::path::Path;
use std::time::Duration;

pub use testbed::serde_json::{self, json, Value};
pub use testbed::{eventually, Berth, Bundle, Output};

/// A runner for the binary under test (or `$BERTH_TEST_RUNTIME`).
pub fn berth() -> Berth {
    Berth::new(env!("CARGO_BIN_EXE_berth"))
}

/// `["sh", "-c", script]`.
pub fn sh(script: &str) -> [&str; 3] {
    ["sh", "-c", script]
}

/// Runs `script` with `sh -c` in a fresh container from `bundle` in the
/// foreground, asserts it exited 0 and left nothing behind, and returns
/// its output.
#[track_caller]
pub fn run_sh(t: &Berth, bundle: &mut Bundle, script: &str) -> Output {
    bundle.args(&sh(script));
    let id = t.id("sh");
    let out = t.run(&id, bundle, &[]);
    out.ok();
    t.leak_check(&id, bundle);
    out
}

/// The value of a `Name:\tvalue` line of a /proc/<pid>/status text.
#[track_caller]
pub fn status_field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name}: line in\n{status}"))
}

/// Whether `/proc/<pid>` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Waits up to 10 s for `path` to exist.
#[track_caller]
pub fn wait_file(path: &Path) {
    assert!(
        eventually(Duration::from_secs(10), || path.exists()),
        "{} did not appear",
        path.display()
    );
}

/// The namespace link target (`net:[4026531840]`) of /proc/<who>/ns/<ty>.
pub fn ns_link(who: &str, ty: &str) -> String {
    std::fs::read_link(format!("/proc/{who}/ns/{ty}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|e| panic!("readlink /proc/{who}/ns/{ty}: {e}"))
}

/// A v1 controller's file for a container's `cgroupsPath` on this host.
pub fn cg_file(ctrl: &str, cgroups_path: &str, file: &str) -> std::path::PathBuf {
    std::path::PathBuf::from("/sys/fs/cgroup")
        .join(ctrl)
        .join(cgroups_path.trim_start_matches('/'))
        .join(file)
}

/// The trimmed content of [`cg_file`].
#[track_caller]
pub fn read(ctrl: &str, cgroups_path: &str, file: &str) -> String {
    let p = cg_file(ctrl, cgroups_path, file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// The numbers in `ls /proc/self/fd` output, sorted.
pub fn fd_list(out: &str) -> Vec<u32> {
    let mut v: Vec<u32> = out.split_whitespace().map(|s| s.parse().unwrap()).collect();
    v.sort_unstable();
    v
}

/// A pipe: the read end as a File, the write end to pass on.
pub fn pipe() -> (std::fs::File, std::os::fd::OwnedFd) {
    let (r, w) = testbed::nix::unistd::pipe().unwrap();
    (std::fs::File::from(r), w)
}
