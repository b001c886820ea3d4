//! cgroup v2: one directory in the unified hierarchy, controllers handed
//! down through `cgroup.subtree_control`, v2 file names and value formats
//! (Documentation/admin-guide/cgroup-v2.rst).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxResources};
use serde::{Deserialize, Serialize};

use super::{fs, non_empty, set, CgroupError, CgroupPath, Result};

/// The unified mount.
#[derive(Clone, Debug)]
pub(super) struct Mount {
    pub root: PathBuf,
    /// Where relative cgroup paths start, relative to `root`: the parent of
    /// the runtime's own cgroup.
    pub own: PathBuf,
}

impl Mount {
    /// The controllers the hierarchy offers at its root.
    pub fn available(&self) -> Result<BTreeSet<String>> {
        Ok(words(&fs::read(&self.root, "cgroup.controllers")?))
    }
}

/// The container's directory.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub(super) struct Dir {
    pub path: PathBuf,
    /// The directories made for it, shallowest first.
    pub created: Vec<PathBuf>,
}

fn words(s: &str) -> BTreeSet<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// Makes the container's directory and enables controllers on the way down,
/// recording in `dir` what it made so a failure can be undone.
pub(super) fn make_dir(mount: &Mount, inner: &CgroupPath, dir: &mut Dir) -> Result<()> {
    let rel = inner.below(&mount.own);
    dir.path = mount.root.join(&rel);
    fs::make_dirs(&mount.root, &rel, &mut dir.created)?;
    let mut ancestor = mount.root.clone();
    for part in rel.iter() {
        enable_controllers(&ancestor)?;
        ancestor.push(part);
    }
    Ok(())
}

/// Enables every controller `dir` offers for its children. All of them, as
/// runc does, rather than only those the config sets: a later `update` may
/// set a resource the config left out, and by then the container's
/// processes would make enabling it impossible (no internal processes).
fn enable_controllers(dir: &Path) -> Result<()> {
    let available = fs::read(dir, "cgroup.controllers")?;
    let enabled = words(&fs::read(dir, "cgroup.subtree_control")?);
    let missing: Vec<String> = available
        .split_whitespace()
        .filter(|c| !enabled.contains(*c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if fs::write(dir, "cgroup.subtree_control", &missing.join(" ")).is_ok() {
        return Ok(());
    }
    // One refusal fails the whole write; take what can be had. A controller
    // that stays off shows up as a missing file when a resource needs it.
    for c in &missing {
        if let Err(e) = fs::write(dir, "cgroup.subtree_control", c) {
            tracing::debug!(error = %e, "controller not enabled");
        }
    }
    Ok(())
}

pub(super) fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
    if let Some(mem) = r.memory() {
        set_memory(dir, mem)?;
    }
    if let Some(cpu) = r.cpu() {
        set_cpu(dir, cpu)?;
        if let Some(cpus) = non_empty(cpu.cpus()) {
            fs::write(dir, "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = non_empty(cpu.mems()) {
            fs::write(dir, "cpuset.mems", mems)?;
        }
    }
    if let Some(pids) = r.pids() {
        fs::write(dir, "pids.max", &super::pids_max(pids.limit()))?;
    }
    Ok(())
}

/// -1 is "no limit" in the spec and `max` in v2 files. Other negative numbers
/// go through as they are, for the kernel to refuse.
fn max_or(v: i64) -> String {
    if v == -1 {
        "max".to_string()
    } else {
        v.to_string()
    }
}

fn set_memory(dir: &Path, mem: &LinuxMemory) -> Result<()> {
    let limit = set(mem.limit());
    if let Some(swap) = swap_max(limit, set(mem.swap()))? {
        // Without swap accounting there is nothing to lift.
        if swap != -1 || fs::exists(dir, "memory.swap.max") {
            fs::write(dir, "memory.swap.max", &max_or(swap))?;
        }
    }
    if let Some(l) = limit {
        fs::write(dir, "memory.max", &max_or(l))?;
    }
    if let Some(r) = set(mem.reservation()) {
        fs::write(dir, "memory.low", &max_or(r))?;
    }
    Ok(())
}

/// The spec's `swap` is memory+swap (the v1 memsw meaning); v2's
/// memory.swap.max is swap alone.
fn swap_max(limit: Option<i64>, swap: Option<i64>) -> Result<Option<i64>> {
    let invalid = |reason| CgroupError::InvalidResource {
        field: "linux.resources.memory.swap",
        value: swap.unwrap_or_default().to_string(),
        reason,
    };
    match (limit, swap) {
        // Unlimited memory with swap unset means unlimited swap too, as on v1.
        (Some(-1), None) => Ok(Some(-1)),
        (_, None) => Ok(None),
        (_, Some(-1)) => Ok(Some(-1)),
        (None | Some(-1), Some(_)) => Err(invalid(
            "a swap limit needs a memory limit (swap counts memory plus swap)",
        )),
        (Some(l), Some(s)) if s < l => Err(invalid(
            "must be at least linux.resources.memory.limit (swap counts memory plus swap)",
        )),
        (Some(l), Some(s)) => Ok(Some(s - l)),
    }
}

fn set_cpu(dir: &Path, cpu: &LinuxCpu) -> Result<()> {
    if let Some(shares) = cpu.shares().filter(|&s| s != 0) {
        fs::write(dir, "cpu.weight", &shares_to_weight(shares)?.to_string())?;
    }
    if let Some(max) = cpu_max(set(cpu.quota()), cpu.period().filter(|&p| p != 0)) {
        fs::write(dir, "cpu.max", &max)?;
    }
    Ok(())
}

/// Maps v1 shares (2..=262144) linearly onto v2 weight (1..=10000), the
/// mapping runc and crun have long used, so a config means the same on both.
fn shares_to_weight(shares: u64) -> Result<u64> {
    if !(2..=262_144).contains(&shares) {
        return Err(CgroupError::InvalidResource {
            field: "linux.resources.cpu.shares",
            value: shares.to_string(),
            reason: "must be between 2 and 262144 to map onto cpu.weight",
        });
    }
    Ok(1 + ((shares - 2) * 9999) / 262_142)
}

/// `cpu.max` is "$QUOTA $PERIOD" with "max" for no quota; the period may be
/// left out to keep the current one.
fn cpu_max(quota: Option<i64>, period: Option<u64>) -> Option<String> {
    if quota.is_none() && period.is_none() {
        return None;
    }
    let mut value = match quota {
        Some(q) if q > 0 => q.to_string(),
        _ => "max".to_string(),
    };
    if let Some(p) = period {
        value.push_str(&format!(" {p}"));
    }
    Some(value)
}

/// These run against a fake unified tree in a temporary directory, holding
/// the files the kernel would have.
#[cfg(test)]
mod tests {
    use super::super::{Cgroup, CgroupError, Hierarchy, Kind};
    use super::*;
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };
    use std::fs as stdfs;

    const ALL: &str = "cpuset cpu io memory hugetlb pids";
    const INTERFACE: &[&str] = &[
        "cgroup.procs",
        "cgroup.subtree_control",
        "memory.max",
        "memory.low",
        "memory.swap.max",
        "cpu.weight",
        "cpu.max",
        "cpuset.cpus",
        "cpuset.mems",
        "pids.max",
    ];

    /// What the kernel puts in a new cgroup directory.
    fn kernel_files(dir: &Path, controllers: &str) {
        stdfs::create_dir_all(dir).unwrap();
        stdfs::write(dir.join("cgroup.controllers"), controllers).unwrap();
        for f in INTERFACE {
            stdfs::write(dir.join(f), "").unwrap();
        }
    }

    /// What the kernel takes away on rmdir.
    fn remove_kernel_files(dir: &Path) {
        for entry in stdfs::read_dir(dir).unwrap().flatten() {
            if entry.file_type().unwrap().is_file() {
                stdfs::remove_file(entry.path()).unwrap();
            }
        }
    }

    fn fake_root() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        kernel_files(root.path(), ALL);
        root
    }

    fn read(dir: &Path, file: &str) -> String {
        stdfs::read_to_string(dir.join(file)).unwrap()
    }

    fn full_resources() -> LinuxResources {
        LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(512 * 1024 * 1024)
                    .reservation(256 * 1024 * 1024)
                    .swap(768 * 1024 * 1024)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(1024u64)
                    .quota(50_000i64)
                    .period(100_000u64)
                    .cpus("0-1")
                    .mems("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(100).build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn create_enables_controllers_then_apply_writes_v2_files() {
        let root = fake_root();
        let berth = root.path().join("berth");
        kernel_files(&berth, "cpu memory pids");
        stdfs::write(berth.join("cgroup.subtree_control"), "memory").unwrap();

        let h = Hierarchy::v2_at(root.path());
        assert!(h.is_v2());
        let cg = h.create(Some(Path::new("/berth/c1")), "c1", None).unwrap();
        assert!(cg.is_v2());
        let leaf = berth.join("c1");
        assert!(leaf.is_dir());
        assert_eq!(
            read(root.path(), "cgroup.subtree_control"),
            "+cpuset +cpu +io +memory +hugetlb +pids"
        );
        assert_eq!(read(&berth, "cgroup.subtree_control"), "+cpu +pids");
        assert_eq!(cg.mount_sources(), vec![(String::new(), leaf.clone())]);
        assert_eq!(cg.dir_of("memory"), Some(leaf.as_path()));

        kernel_files(&leaf, "cpu memory pids");
        cg.apply(&full_resources()).unwrap();
        assert_eq!(read(&leaf, "memory.max"), "536870912");
        assert_eq!(read(&leaf, "memory.low"), "268435456");
        assert_eq!(read(&leaf, "memory.swap.max"), "268435456");
        assert_eq!(read(&leaf, "cpu.weight"), "39");
        assert_eq!(read(&leaf, "cpu.max"), "50000 100000");
        assert_eq!(read(&leaf, "cpuset.cpus"), "0-1");
        assert_eq!(read(&leaf, "cpuset.mems"), "0");
        assert_eq!(read(&leaf, "pids.max"), "100");

        cg.add_pid(4242).unwrap();
        assert_eq!(read(&leaf, "cgroup.procs"), "4242");
        stdfs::write(leaf.join("cgroup.procs"), "30\n4242\n7\n").unwrap();
        assert_eq!(cg.pids().unwrap(), vec![7, 30, 4242]);

        // An update only touches what it sets; -1 and 0 mean "max" here.
        let update = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(-1).build().unwrap())
            .pids(LinuxPidsBuilder::default().limit(0).build().unwrap())
            .build()
            .unwrap();
        cg.apply(&update).unwrap();
        assert_eq!(read(&leaf, "memory.max"), "max");
        assert_eq!(read(&leaf, "memory.swap.max"), "max");
        assert_eq!(read(&leaf, "memory.low"), "268435456");
        assert_eq!(read(&leaf, "pids.max"), "max");
        assert_eq!(read(&leaf, "cpu.max"), "50000 100000");

        let json = serde_json::to_string(&cg).unwrap();
        assert_eq!(serde_json::from_str::<Cgroup>(&json).unwrap(), cg);

        remove_kernel_files(&leaf);
        cg.destroy().unwrap();
        assert!(!leaf.exists());
        assert!(berth.exists(), "removed a directory it did not create");
        cg.destroy().unwrap();
    }

    #[test]
    fn failed_apply_names_the_file_and_removes_new_dirs() {
        let root = fake_root();
        let h = Hierarchy::v2_at(root.path());
        // The leaf is made but the fake kernel gives it no files.
        let err = h
            .create(Some(Path::new("/ctr")), "ctr", Some(&full_resources()))
            .unwrap_err();
        let leaf = root.path().join("ctr");
        match &err {
            CgroupError::Write {
                path,
                value,
                source,
            } => {
                assert_eq!(path, &leaf.join("memory.swap.max"));
                assert_eq!(value, "268435456");
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("unexpected {other}"),
        }
        assert!(err.to_string().starts_with(&format!(
            "write 268435456 to {}",
            leaf.join("memory.swap.max").display()
        )));
        assert!(!leaf.exists());
    }

    #[test]
    fn failed_enable_removes_every_level_it_made() {
        let root = fake_root();
        let h = Hierarchy::v2_at(root.path());
        // Made levels have no cgroup.controllers in the fake.
        let err = h.create(Some(Path::new("a/b/c")), "x", None).unwrap_err();
        assert!(
            matches!(&err, CgroupError::Read { path, .. }
                if *path == root.path().join("a/cgroup.controllers")),
            "{err}"
        );
        assert!(!root.path().join("a").exists());
    }

    #[test]
    fn existing_cgroup_is_joined_and_kept() {
        let root = fake_root();
        let leaf = root.path().join("pre/made");
        kernel_files(&root.path().join("pre"), ALL);
        kernel_files(&leaf, ALL);
        let h = Hierarchy::v2_at(root.path());
        let cg = h
            .create(Some(Path::new("/pre/made")), "x", Some(&full_resources()))
            .unwrap();
        assert_eq!(read(&leaf, "pids.max"), "100");
        cg.destroy().unwrap();
        assert!(leaf.exists());
    }

    #[test]
    fn relative_and_default_paths_start_at_own_cgroup_parent() {
        let root = fake_root();
        kernel_files(&root.path().join("user.slice"), ALL);
        let h = Hierarchy {
            kind: Kind::V2(Mount {
                root: root.path().to_path_buf(),
                own: PathBuf::from("user.slice"),
            }),
        };
        let cg = h.create(None, "ctr-1", None).unwrap();
        assert_eq!(
            cg.mount_sources()[0].1,
            root.path().join("user.slice/ctr-1")
        );
        let cg2 = h
            .create(Some(Path::new("../../escape")), "x", None)
            .unwrap();
        assert_eq!(
            cg2.mount_sources()[0].1,
            root.path().join("user.slice/escape")
        );
        let cg3 = h.create(Some(Path::new("/abs")), "x", None).unwrap();
        assert_eq!(cg3.mount_sources()[0].1, root.path().join("abs"));
        for cg in [cg, cg2, cg3] {
            cg.destroy().unwrap();
        }
    }

    #[test]
    fn missing_controller_fails_before_making_anything() {
        let root = tempfile::tempdir().unwrap();
        kernel_files(root.path(), "cpu memory");
        let h = Hierarchy::v2_at(root.path());
        let r = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(5).build().unwrap())
            .build()
            .unwrap();
        let err = h
            .create(Some(Path::new("/ctr")), "x", Some(&r))
            .unwrap_err();
        assert!(
            matches!(
                err,
                CgroupError::MissingController {
                    controller: "pids",
                    ..
                }
            ),
            "{err}"
        );
        assert!(!root.path().join("ctr").exists());
    }

    #[test]
    fn out_of_range_shares_are_refused() {
        let root = fake_root();
        let leaf = root.path().join("ctr");
        kernel_files(&leaf, ALL);
        let h = Hierarchy::v2_at(root.path());
        let r = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().shares(1u64).build().unwrap())
            .build()
            .unwrap();
        let err = h
            .create(Some(Path::new("/ctr")), "x", Some(&r))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "linux.resources.cpu.shares = 1: must be between 2 and 262144 to map onto cpu.weight"
        );
        assert!(leaf.exists());
    }

    #[test]
    fn conversions() {
        assert_eq!(shares_to_weight(2).unwrap(), 1);
        assert_eq!(shares_to_weight(1024).unwrap(), 39);
        assert_eq!(shares_to_weight(262_144).unwrap(), 10_000);
        assert!(shares_to_weight(262_145).is_err());

        assert_eq!(swap_max(Some(100), Some(300)).unwrap(), Some(200));
        assert_eq!(swap_max(Some(100), Some(100)).unwrap(), Some(0));
        assert_eq!(swap_max(Some(-1), None).unwrap(), Some(-1));
        assert_eq!(swap_max(Some(100), None).unwrap(), None);
        assert_eq!(swap_max(Some(100), Some(-1)).unwrap(), Some(-1));
        assert_eq!(swap_max(None, None).unwrap(), None);
        assert!(swap_max(None, Some(300)).is_err());
        assert!(swap_max(Some(-1), Some(300)).is_err());
        let err = swap_max(Some(300), Some(100)).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("linux.resources.memory.swap = 100: "));

        assert_eq!(
            cpu_max(Some(50_000), Some(100_000)).as_deref(),
            Some("50000 100000")
        );
        assert_eq!(cpu_max(None, Some(100_000)).as_deref(), Some("max 100000"));
        assert_eq!(
            cpu_max(Some(-1), Some(100_000)).as_deref(),
            Some("max 100000")
        );
        assert_eq!(cpu_max(Some(20_000), None).as_deref(), Some("20000"));
        assert_eq!(cpu_max(None, None), None);

        assert_eq!(max_or(-1), "max");
        assert_eq!(max_or(-5), "-5");
        assert_eq!(super::super::pids_max(0), "max");
        assert_eq!(super::super::pids_max(-3), "max");
        assert_eq!(super::super::pids_max(10), "10");
    }
}
