//! Test bed for Berth's real-container tests: a static busybox root
//! filesystem, OCI bundles built on it, a runner for the `berth` binary
//! (or any runc-compatible runtime, see [`RUNTIME_VAR`]) and leak checks
//! for everything a container can leave behind (state dirs, cgroups,
//! mounts, processes). For image tests: a busybox image archive
//! ([`image`]) and a live registry with basic or bearer-token auth
//! ([`registry`]). Debian's buildah as a reference builder with rootfs
//! manifests to compare builds ([`buildah`]).
//!
//! Each test owns a [`Sandbox`] (or a [`Berth`] runner, which holds one):
//! a unique directory under `/tmp` with the runtime root and the bundles,
//! unique container ids, a cgroup under `/berth-test/`, and an
//! environment mark on every process. Dropping it force-deletes the
//! test's containers, fails the test if anything was left behind, and
//! removes it all, even when the test already failed.
//!
//! To check the tests themselves against a reference runtime, point them at
//! it: `BERTH_TEST_RUNTIME=/usr/sbin/runc cargo test -p berth-shim`. With
//! runc 1.1 every test passes except where runc departs from the runtime
//! spec or lacks a feature: poststart hooks run during `create`, a failing
//! poststart hook fails the container, relative mount destinations are
//! accepted, and `domainname` and time namespaces are not supported.
//! Checks of Berth's own message wording are skipped for other runtimes
//! ([`Berth::is_berth`]).
//!
//! ```no_run
//! let t = testbed::Berth::new("/usr/local/bin/berth");
//! let b = t.bundle(&["sh", "-c", "echo hi"]);
//! let id = t.id("hello");
//! assert_eq!(t.run(&id, &b, &[]).ok().out(), "hi");
//! ```

pub mod buildah;
pub mod bundle;
pub mod busybox;
pub mod cgroupfs;
pub mod console;
pub mod image;
pub mod leak;
pub mod packages;
pub mod registry;
pub mod runner;
pub mod sandbox;

pub use bundle::{base_config, build_rootfs, Bundle, MARK_VAR};
pub use busybox::{applets, ensure_busybox, is_static_elf};
pub use console::{read_pty, ConsoleSocket};
pub use leak::{
    cgroup_dirs, cgroup_mounts, host_mounts, leak_check, leaks, marked_pids, mounts_under,
    parse_mountinfo, settle, MountInfo,
};
pub use runner::{exit_code, pass_fds, wait_within, Berth, Output, COMMAND_TIMEOUT, RUNTIME_VAR};
pub use sandbox::{unique, Sandbox, Watchdog, CGROUP_PARENT};

pub use libc;
pub use nix;
pub use oci_spec;
pub use serde_json;
pub use tempfile;

/// Panics unless running as root: real containers need it.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests run real containers and must run as root"
    );
}

/// Polls `f` every 20ms until it returns true or `limit` passes.
pub fn eventually(limit: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() >= until {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
