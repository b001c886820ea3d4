//! cgroup v2: one directory in the unified hierarchy, controllers handed
//! down through `cgroup.subtree_control`, v2 file names and value formats
//! (Documentation/admin-guide/cgroup-v2.rst).
//!
//! The spec's fields are v1-shaped; the conversions follow runc and crun:
//! shares to `cpu.weight`, memory+swap to `memory.swap.max`, blkio weights
//! to `io.bfq.weight` as they are or to `io.weight` mapped onto 1..=10000.
//! What v2 has no file for is refused when it would change behaviour
//! (network classes and priorities, real-time groups) and ignored with a
//! warning, as runc ignores it, when it only tunes (the kmem limits,
//! swappiness, disableOOMKiller, leaf weights). `unified` is written last.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};
use serde::{Deserialize, Serialize};

use super::{
    check_usage, class_id, device, fs, memory_limits_set, non_empty, page_size, priorities,
    rdma_lines, set, throttles, CgroupError, CgroupPath, Result,
};

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

/// What v2 cannot express, found before anything is made.
pub(super) fn check(r: &LinuxResources) -> Result<()> {
    if let Some(net) = r.network() {
        if class_id(net).is_some() || !priorities(net).is_empty() {
            return Err(CgroupError::Unsupported {
                field: "linux.resources.network".to_string(),
                reason: "net_cls and net_prio are cgroup v1 controllers; \
                         cgroup v2 has no equivalent"
                    .to_string(),
            });
        }
    }
    if let Some(cpu) = r.cpu() {
        let rt = [
            (
                "linux.resources.cpu.realtimeRuntime",
                set(cpu.realtime_runtime()).is_some(),
            ),
            (
                "linux.resources.cpu.realtimePeriod",
                cpu.realtime_period().is_some_and(|p| p != 0),
            ),
        ];
        if let Some((field, _)) = rt.iter().find(|(_, is_set)| *is_set) {
            return Err(CgroupError::Unsupported {
                field: field.to_string(),
                reason: "real-time group scheduling is not supported on cgroup v2".to_string(),
            });
        }
    }
    if let Some(mem) = r.memory() {
        swap_max(set(mem.limit()), set(mem.swap()))?;
    }
    if let Some(limits) = r.hugepage_limits() {
        limits.iter().try_for_each(|l| page_size(l).map(drop))?;
    }
    if let Some(unified) = r.unified() {
        for key in unified.keys() {
            unified_controller(key)?;
        }
    }
    Ok(())
}

pub(super) fn apply(dir: &Path, r: &LinuxResources) -> Result<()> {
    check(r)?;
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
    if let Some(io) = r.block_io() {
        set_io(dir, io)?;
    }
    if let Some(limits) = r.hugepage_limits() {
        set_hugetlb(dir, limits)?;
    }
    for line in rdma_lines(r) {
        fs::write(dir, "rdma.max", &line)?;
    }
    super::devices::apply_v2(
        dir,
        &super::devices::Policy::from_spec(r.devices().as_deref().unwrap_or_default())?,
    )?;
    // Last, so that an explicit file wins over the fields above, as in runc.
    if let Some(unified) = r.unified() {
        set_unified(dir, unified)?;
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
    ignore_v1_only(mem);
    if !memory_limits_set(mem) {
        return Ok(());
    }
    let limit = set(mem.limit());
    if mem.check_before_update() == Some(true) {
        check_usage("linux.resources.memory.limit", limit, || {
            usage(dir, &["memory.current"])
        })?;
        // The spec's swap counts memory plus swap.
        check_usage("linux.resources.memory.swap", set(mem.swap()), || {
            usage(dir, &["memory.current", "memory.swap.current"])
        })?;
    }
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

/// The v1-only memory knobs have no v2 file. runc ignores them there;
/// Berth does too, but says so.
fn ignore_v1_only(mem: &LinuxMemory) {
    let ignored = [
        ("linux.resources.memory.kernel", set(mem.kernel()).is_some()),
        (
            "linux.resources.memory.kernelTCP",
            set(mem.kernel_tcp()).is_some(),
        ),
        (
            "linux.resources.memory.swappiness",
            mem.swappiness().is_some(),
        ),
        (
            "linux.resources.memory.disableOOMKiller",
            mem.disable_oom_killer() == Some(true),
        ),
        // v2 is always hierarchical: only `false` asks for something else.
        (
            "linux.resources.memory.useHierarchy",
            mem.use_hierarchy() == Some(false),
        ),
    ];
    for (field, _) in ignored.iter().filter(|(_, is_set)| *is_set) {
        tracing::warn!(field, "cgroup v2 has no equivalent; {field} is ignored");
    }
}

/// Sums the usage files; a missing one (no swap accounting) counts as 0,
/// but the first must be there.
fn usage(dir: &Path, files: &[&str]) -> Result<(u64, PathBuf)> {
    let mut total = fs::read_u64(dir, files[0])?;
    for f in &files[1..] {
        if fs::exists(dir, f) {
            total = total.saturating_add(fs::read_u64(dir, f)?);
        }
    }
    Ok((total, dir.join(files[0])))
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
    let quota = set(cpu.quota());
    if let Some(idle) = cpu.idle() {
        fs::write(dir, "cpu.idle", &idle.to_string())?;
    }
    if let Some(shares) = cpu.shares().filter(|&s| s != 0) {
        fs::write(dir, "cpu.weight", &shares_to_weight(shares)?.to_string())?;
    }
    // A larger burst can be refused against the old quota; the new quota
    // may fix that, so retry after it.
    let mut burst_pending = None;
    if let Some(b) = cpu.burst() {
        let value = b.to_string();
        match fs::write(dir, "cpu.max.burst", &value) {
            Ok(()) => {}
            Err(CgroupError::Write { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) && quota.is_some() =>
            {
                burst_pending = Some(value);
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(max) = cpu_max(quota, cpu.period().filter(|&p| p != 0)) {
        fs::write(dir, "cpu.max", &max)?;
    }
    if let Some(value) = burst_pending {
        fs::write(dir, "cpu.max.burst", &value)?;
    }
    Ok(())
}

/// io: weights through BFQ's `io.bfq.weight` when the scheduler is loaded
/// (same 1..=1000 scale as v1), otherwise `io.weight` (1..=10000, the
/// io.cost controller) with the v1 weight mapped onto it; throttling
/// through `io.max`.
fn set_io(dir: &Path, io: &LinuxBlockIo) -> Result<()> {
    if io.leaf_weight().is_some_and(|w| w != 0) {
        tracing::warn!(
            field = "linux.resources.blockIO.leafWeight",
            "cgroup v2 has no leaf weights; linux.resources.blockIO.leafWeight is ignored"
        );
    }
    let bfq = fs::exists(dir, "io.bfq.weight");
    let weight = |w: u16, field: &'static str| -> Result<(&'static str, u64)> {
        if bfq {
            Ok(("io.bfq.weight", u64::from(w)))
        } else {
            Ok(("io.weight", blkio_to_io_weight(w, field)?))
        }
    };
    if let Some(w) = io.weight().filter(|&w| w != 0) {
        let (file, value) = weight(w, "linux.resources.blockIO.weight")?;
        fs::write(dir, file, &value.to_string())?;
    }
    for d in io.weight_device().as_deref().unwrap_or_default() {
        if let Some(w) = d.weight().filter(|&w| w != 0) {
            let (file, value) = weight(w, "linux.resources.blockIO.weightDevice[].weight")?;
            fs::write(
                dir,
                file,
                &format!("{} {value}", device(d.major(), d.minor())),
            )?;
        }
    }
    for (_, key, list) in throttles(io) {
        for t in list {
            let value = format!("{} {key}={}", device(t.major(), t.minor()), t.rate());
            fs::write(dir, "io.max", &value)?;
        }
    }
    Ok(())
}

/// Maps a v1 blkio weight (10..=1000) linearly onto io.weight
/// (1..=10000), as runc and crun do.
fn blkio_to_io_weight(w: u16, field: &'static str) -> Result<u64> {
    if !(10..=1000).contains(&w) {
        return Err(CgroupError::InvalidResource {
            field,
            value: w.to_string(),
            reason: "must be between 10 and 1000 to map onto io.weight",
        });
    }
    Ok(1 + (u64::from(w) - 10) * 9999 / 990)
}

/// `hugetlb.<size>.max`, and `.rsvd.max` beside it where the kernel has it
/// (5.7+), as runc does.
fn set_hugetlb(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    let mut rsvd = true;
    for l in limits {
        let size = page_size(l)?;
        let value = max_or(l.limit());
        fs::write(dir, &format!("hugetlb.{size}.max"), &value)?;
        let rsvd_file = format!("hugetlb.{size}.rsvd.max");
        if rsvd && fs::exists(dir, &rsvd_file) {
            fs::write(dir, &rsvd_file, &value)?;
        } else {
            rsvd = false;
        }
    }
    Ok(())
}

/// The controller a `linux.resources.unified` key belongs to (`cgroup` for
/// the core files). The key must name a file in the cgroup directory
/// itself: no path separators, no `..`, and the `<controller>.<name>` form
/// of every cgroup v2 interface file.
fn unified_controller(key: &str) -> Result<&str> {
    let bad = |reason: &str| CgroupError::Unsupported {
        field: format!("linux.resources.unified[{key:?}]"),
        reason: reason.to_string(),
    };
    if key.is_empty() || key.contains('/') || key.contains("..") || key.contains('\0') {
        return Err(bad(
            "a key must be a file name in the cgroup directory (no '/', no '..')",
        ));
    }
    match key.split_once('.') {
        Some((controller, rest)) if !controller.is_empty() && !rest.is_empty() => Ok(controller),
        _ => Err(bad(
            "a key must have the form <controller>.<file>, e.g. memory.high",
        )),
    }
}

/// Writes each `linux.resources.unified` entry to the file it names, in
/// key order, one line per write (the kernel parses each write on its
/// own, so a multi-line io.max value is several writes).
fn set_unified(dir: &Path, unified: &HashMap<String, String>) -> Result<()> {
    if unified.is_empty() {
        return Ok(());
    }
    let enabled = words(&fs::read(dir, "cgroup.controllers")?);
    let mut entries: Vec<_> = unified.iter().collect();
    entries.sort();
    for (key, value) in entries {
        let controller = unified_controller(key)?;
        if controller != "cgroup" && !enabled.contains(controller) {
            return Err(CgroupError::Unsupported {
                field: format!("linux.resources.unified[{key:?}]"),
                reason: format!(
                    "the {controller} controller is not enabled for {} (per its cgroup.controllers)",
                    dir.display()
                ),
            });
        }
        let mut lines = value.lines().filter(|l| !l.trim().is_empty()).peekable();
        if lines.peek().is_none() {
            fs::write(dir, key, value)?;
        }
        for line in lines {
            fs::write(dir, key, line)?;
        }
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
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxHugepageLimitBuilder,
        LinuxInterfacePriorityBuilder, LinuxMemoryBuilder, LinuxNetworkBuilder, LinuxPidsBuilder,
        LinuxRdmaBuilder, LinuxResourcesBuilder, LinuxThrottleDevice, LinuxThrottleDeviceBuilder,
        LinuxWeightDeviceBuilder,
    };
    use std::fs as stdfs;
    use std::sync::atomic::{AtomicUsize, Ordering};

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

    const M: i64 = 1024 * 1024;

    fn res(f: impl FnOnce(LinuxResourcesBuilder) -> LinuxResourcesBuilder) -> LinuxResources {
        f(LinuxResourcesBuilder::default()).build().unwrap()
    }

    /// Interface files beyond [`INTERFACE`], empty.
    fn files(dir: &Path, names: &[&str]) {
        for f in names {
            stdfs::write(dir.join(f), "").unwrap();
        }
    }

    /// A fake root with a leaf `ctr` holding `extra` files besides the
    /// usual ones; the leaf pre-exists, so create keeps it.
    fn fake_leaf(extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
        let root = fake_root();
        let leaf = root.path().join("ctr");
        kernel_files(&leaf, ALL);
        files(&leaf, extra);
        (root, leaf)
    }

    fn throttle(maj: i64, min: i64, rate: u64) -> Vec<LinuxThrottleDevice> {
        vec![LinuxThrottleDeviceBuilder::default()
            .major(maj)
            .minor(min)
            .rate(rate)
            .build()
            .unwrap()]
    }

    #[test]
    fn apply_writes_every_v2_field() {
        let (root, leaf) = fake_leaf(&[
            "memory.current",
            "cpu.max.burst",
            "cpu.idle",
            "io.weight",
            "io.max",
            "hugetlb.2MB.max",
            "hugetlb.2MB.rsvd.max",
            "hugetlb.1GB.max",
            "rdma.max",
            "memory.high",
        ]);
        let r = res(|b| {
            b.memory(
                LinuxMemoryBuilder::default()
                    .limit(512 * M)
                    .reservation(128 * M)
                    .swap(768 * M)
                    // v1-only: no file is touched for these (the fake has
                    // none, so a write would fail).
                    .kernel(64 * M)
                    .kernel_tcp(16 * M)
                    .swappiness(10u64)
                    .disable_oom_killer(true)
                    .use_hierarchy(false)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(2048u64)
                    .quota(30_000i64)
                    .period(50_000u64)
                    .burst(10_000u64)
                    .idle(0i64)
                    .build()
                    .unwrap(),
            )
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .leaf_weight(200u16)
                    .weight_device(vec![LinuxWeightDeviceBuilder::default()
                        .major(8)
                        .minor(16)
                        .weight(100u16)
                        .build()
                        .unwrap()])
                    .throttle_write_iops_device(throttle(8, 0, 300))
                    .build()
                    .unwrap(),
            )
            .hugepage_limits(vec![
                LinuxHugepageLimitBuilder::default()
                    .page_size("2MB")
                    .limit(8 * M)
                    .build()
                    .unwrap(),
                LinuxHugepageLimitBuilder::default()
                    .page_size("1GB")
                    .limit(-1)
                    .build()
                    .unwrap(),
            ])
            .rdma(HashMap::from([(
                "mlx5_0".to_string(),
                LinuxRdmaBuilder::default()
                    .hca_handles(3u32)
                    .hca_objects(1000u32)
                    .build()
                    .unwrap(),
            )]))
            .unified(HashMap::from([(
                "memory.high".to_string(),
                "1073741824".to_string(),
            )]))
        });
        stdfs::write(
            root.path().join("cgroup.controllers"),
            format!("{ALL} rdma"),
        )
        .unwrap();
        let h = Hierarchy::v2_at(root.path());
        h.create(Some(Path::new("/ctr")), "x", Some(&r)).unwrap();
        let f = |file: &str| read(&leaf, file);
        assert_eq!(f("memory.max"), (512 * M).to_string());
        assert_eq!(f("memory.low"), (128 * M).to_string());
        assert_eq!(f("memory.swap.max"), (256 * M).to_string());
        // shares 2048 -> 1 + (2048 - 2) * 9999 / 262142
        assert_eq!(f("cpu.weight"), "79");
        assert_eq!(f("cpu.max"), "30000 50000");
        assert_eq!(f("cpu.max.burst"), "10000");
        assert_eq!(f("cpu.idle"), "0");
        // Without BFQ: io.weight, converted; the device weight came last.
        // 500 -> 1 + 490 * 9999 / 990 = 4950; 100 -> 910.
        assert_eq!(f("io.weight"), "8:16 910");
        assert_eq!(f("io.max"), "8:0 wiops=300");
        assert_eq!(f("hugetlb.2MB.max"), (8 * M).to_string());
        assert_eq!(f("hugetlb.2MB.rsvd.max"), (8 * M).to_string());
        assert_eq!(f("hugetlb.1GB.max"), "max");
        assert_eq!(f("rdma.max"), "mlx5_0 hca_handle=3 hca_object=1000");
        assert_eq!(f("memory.high"), "1073741824");

        let weight_only = res(|b| {
            b.block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .build()
                    .unwrap(),
            )
        });
        apply(&leaf, &weight_only).unwrap();
        assert_eq!(f("io.weight"), "4950");
    }

    #[test]
    fn io_prefers_bfq_weights_unconverted_and_writes_one_io_max_line_each() {
        let (_root, leaf) = fake_leaf(&["io.weight", "io.bfq.weight", "io.max"]);
        let io = |b: LinuxBlockIoBuilder| res(|r| r.block_io(b.build().unwrap()));
        apply(&leaf, &io(LinuxBlockIoBuilder::default().weight(500u16))).unwrap();
        assert_eq!(read(&leaf, "io.bfq.weight"), "500");
        let dev = LinuxWeightDeviceBuilder::default()
            .major(8)
            .minor(0)
            .weight(700u16)
            .build()
            .unwrap();
        apply(
            &leaf,
            &io(LinuxBlockIoBuilder::default().weight_device(vec![dev])),
        )
        .unwrap();
        assert_eq!(read(&leaf, "io.bfq.weight"), "8:0 700");
        assert_eq!(read(&leaf, "io.weight"), "");
        // BFQ takes 1..=1000 itself; only the io.weight mapping needs 10..
        apply(&leaf, &io(LinuxBlockIoBuilder::default().weight(5u16))).unwrap();
        assert_eq!(read(&leaf, "io.bfq.weight"), "5");

        for (b, want) in [
            (
                LinuxBlockIoBuilder::default().throttle_read_bps_device(throttle(8, 0, 1024)),
                "8:0 rbps=1024",
            ),
            (
                LinuxBlockIoBuilder::default().throttle_write_bps_device(throttle(8, 16, 2048)),
                "8:16 wbps=2048",
            ),
            (
                LinuxBlockIoBuilder::default().throttle_read_iops_device(throttle(259, 1, 10)),
                "259:1 riops=10",
            ),
            (
                LinuxBlockIoBuilder::default().throttle_write_iops_device(throttle(8, 0, 20)),
                "8:0 wiops=20",
            ),
        ] {
            apply(&leaf, &io(b)).unwrap();
            assert_eq!(read(&leaf, "io.max"), want);
        }

        // Without BFQ a weight outside io.weight's mapping is refused.
        stdfs::remove_file(leaf.join("io.bfq.weight")).unwrap();
        let err = apply(&leaf, &io(LinuxBlockIoBuilder::default().weight(5u16))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "linux.resources.blockIO.weight = 5: must be between 10 and 1000 to map onto io.weight"
        );
    }

    #[test]
    fn what_v2_cannot_express_fails_before_anything_is_made() {
        let root = fake_root();
        let h = Hierarchy::v2_at(root.path());
        let cases = [
            (
                res(|b| {
                    b.network(LinuxNetworkBuilder::default().class_id(7u32).build().unwrap())
                }),
                "linux.resources.network: net_cls and net_prio are cgroup v1 controllers",
            ),
            (
                res(|b| {
                    b.network(
                        LinuxNetworkBuilder::default()
                            .priorities(vec![LinuxInterfacePriorityBuilder::default()
                                .name("eth0")
                                .priority(1u32)
                                .build()
                                .unwrap()])
                            .build()
                            .unwrap(),
                    )
                }),
                "linux.resources.network: ",
            ),
            (
                res(|b| {
                    b.cpu(
                        LinuxCpuBuilder::default()
                            .realtime_runtime(950_000i64)
                            .build()
                            .unwrap(),
                    )
                }),
                "linux.resources.cpu.realtimeRuntime: real-time group scheduling is not supported on cgroup v2",
            ),
            (
                res(|b| {
                    b.cpu(
                        LinuxCpuBuilder::default()
                            .realtime_period(1_000_000u64)
                            .build()
                            .unwrap(),
                    )
                }),
                "linux.resources.cpu.realtimePeriod: ",
            ),
            (
                res(|b| {
                    b.memory(LinuxMemoryBuilder::default().swap(100 * M).build().unwrap())
                }),
                "linux.resources.memory.swap = 104857600: a swap limit needs a memory limit",
            ),
            (
                res(|b| {
                    b.hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                        .page_size("2MB/../x")
                        .limit(1)
                        .build()
                        .unwrap()])
                }),
                "linux.resources.hugepageLimits[].pageSize = 2MB/../x: ",
            ),
        ];
        for (r, want) in &cases {
            let err = h.create(Some(Path::new("/ctr")), "x", Some(r)).unwrap_err();
            assert!(err.to_string().starts_with(want), "{err}\nwanted {want}");
            assert!(!root.path().join("ctr").exists());
        }
        for key in [
            "../memory.max",
            "memory.max/x",
            "",
            "..",
            "nodot",
            ".max",
            "memory.",
        ] {
            let r = res(|b| b.unified(HashMap::from([(key.to_string(), "1".to_string())])));
            let err = h
                .create(Some(Path::new("/ctr")), "x", Some(&r))
                .unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("linux.resources.unified[{key:?}]: a key must ")),
                "{err}"
            );
            assert!(!root.path().join("ctr").exists());
        }
        // An empty network asks for nothing.
        let r = res(|b| b.network(LinuxNetworkBuilder::default().build().unwrap()));
        h.create(Some(Path::new("/ctr")), "x", Some(&r)).unwrap();
    }

    #[test]
    fn unified_keys_need_an_enabled_controller_and_go_in_line_by_line() {
        let (root, leaf) = fake_leaf(&["memory.high", "io.max", "cgroup.max.depth"]);
        stdfs::write(leaf.join("cgroup.controllers"), "memory io pids").unwrap();
        let h = Hierarchy::v2_at(root.path());
        let unified = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            res(|b| b.unified(map))
        };
        let cg = h
            .create(
                Some(Path::new("/ctr")),
                "x",
                Some(&unified(&[
                    ("memory.high", "5G"),
                    ("io.max", "8:0 rbps=1024\n8:16 wbps=2048\n"),
                    ("cgroup.max.depth", "3"),
                ])),
            )
            .unwrap();
        assert_eq!(read(&leaf, "memory.high"), "5G");
        // Two writes, the fake keeps the second: one line each.
        assert_eq!(read(&leaf, "io.max"), "8:16 wbps=2048");
        assert_eq!(read(&leaf, "cgroup.max.depth"), "3");

        // The unified map wins over the fields, being written last.
        let both = res(|b| {
            b.memory(
                LinuxMemoryBuilder::default()
                    .limit(100 * M)
                    .build()
                    .unwrap(),
            )
            .unified(HashMap::from([(
                "memory.max".to_string(),
                "200M".to_string(),
            )]))
        });
        cg.apply(&both).unwrap();
        assert_eq!(read(&leaf, "memory.max"), "200M");

        let err = cg.apply(&unified(&[("cpu.weight", "100")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "linux.resources.unified[\"cpu.weight\"]: the cpu controller is not enabled for {} \
                 (per its cgroup.controllers)",
                leaf.display()
            )
        );
        // A file the (fake) kernel lacks: its refusal names file and value.
        let err = cg.apply(&unified(&[("memory.nosuch", "1")])).unwrap_err();
        assert!(
            matches!(&err, CgroupError::Write { path, value, .. }
                if *path == leaf.join("memory.nosuch") && value == "1"),
            "{err}"
        );
    }

    #[test]
    fn check_before_update_compares_with_memory_current() {
        let (_root, leaf) = fake_leaf(&["memory.current", "memory.swap.current"]);
        stdfs::write(leaf.join("memory.current"), "104857600\n").unwrap();
        stdfs::write(leaf.join("memory.swap.current"), "10485760\n").unwrap();
        let mem = |limit: i64, swap: Option<i64>, check: bool| {
            let mut m = LinuxMemoryBuilder::default()
                .limit(limit)
                .check_before_update(check);
            if let Some(s) = swap {
                m = m.swap(s);
            }
            res(|b| b.memory(m.build().unwrap()))
        };
        let err = apply(&leaf, &mem(50 * M, None, true)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "linux.resources.memory.limit = 52428800: not above the current usage of \
                 104857600 bytes (per {}); refused because \
                 linux.resources.memory.checkBeforeUpdate is set",
                leaf.join("memory.current").display()
            )
        );
        assert_eq!(read(&leaf, "memory.max"), "");
        // Swap counts memory plus swap: 110 MiB is not above 100 + 10.
        let err = apply(&leaf, &mem(105 * M, Some(110 * M), true)).unwrap_err();
        assert!(
            matches!(
                err,
                CgroupError::BelowUsage {
                    field: "linux.resources.memory.swap",
                    usage: 115_343_360,
                    ..
                }
            ),
            "{err}"
        );
        apply(&leaf, &mem(200 * M, Some(300 * M), true)).unwrap();
        assert_eq!(read(&leaf, "memory.max"), (200 * M).to_string());
        assert_eq!(read(&leaf, "memory.swap.max"), (100 * M).to_string());
        // Without the flag the limit goes to the kernel as it is.
        apply(&leaf, &mem(50 * M, None, false)).unwrap();
        assert_eq!(read(&leaf, "memory.max"), (50 * M).to_string());
    }

    #[test]
    fn more_conversions() {
        assert_eq!(blkio_to_io_weight(10, "f").unwrap(), 1);
        assert_eq!(blkio_to_io_weight(100, "f").unwrap(), 910);
        assert_eq!(blkio_to_io_weight(500, "f").unwrap(), 4950);
        assert_eq!(blkio_to_io_weight(1000, "f").unwrap(), 10_000);
        assert!(blkio_to_io_weight(9, "f").is_err());
        assert!(blkio_to_io_weight(1001, "f").is_err());
        assert_eq!(unified_controller("memory.high").unwrap(), "memory");
        assert_eq!(unified_controller("hugetlb.2MB.max").unwrap(), "hugetlb");
        assert_eq!(unified_controller("cgroup.freeze").unwrap(), "cgroup");
    }

    /// The real cgroup2 mount beside the v1 controllers on this kind of
    /// host; its only controller is hugetlb.
    const UNIFIED: &str = "/sys/fs/cgroup/unified";

    /// A unique top-level cgroup on the real unified mount; removes what
    /// is left of it, and turns hugetlb back off in the root's
    /// subtree_control when it was off before.
    struct RealGuard {
        top: String,
        subtree_before: String,
        cgroup: Option<Cgroup>,
    }

    impl RealGuard {
        fn new() -> RealGuard {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            RealGuard {
                top: format!("berth-test-{}-{n}", std::process::id()),
                subtree_before: stdfs::read_to_string(
                    Path::new(UNIFIED).join("cgroup.subtree_control"),
                )
                .unwrap_or_default(),
                cgroup: None,
            }
        }

        fn remove_tree(dir: &Path) {
            if let Ok(entries) = stdfs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        Self::remove_tree(&e.path());
                    }
                }
            }
            let _ = stdfs::remove_dir(dir);
        }
    }

    impl Drop for RealGuard {
        fn drop(&mut self) {
            if let Some(cg) = self.cgroup.take() {
                let _ = cg.destroy();
            }
            Self::remove_tree(&Path::new(UNIFIED).join(&self.top));
            if !words(&self.subtree_before).contains("hugetlb") {
                // Refused (EBUSY) while other cgroups below use it; fine.
                let _ = stdfs::write(
                    Path::new(UNIFIED).join("cgroup.subtree_control"),
                    "-hugetlb",
                );
            }
        }
    }

    #[test]
    fn v2_hugetlb_limit_on_the_real_unified_mount() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let available = stdfs::read_to_string(Path::new(UNIFIED).join("cgroup.controllers"));
        if !available.is_ok_and(|c| words(&c).contains("hugetlb")) {
            eprintln!("skipped: no hugetlb controller on {UNIFIED}");
            return;
        }
        let mut g = RealGuard::new();
        let h = Hierarchy::v2_at(UNIFIED);
        let limit = |v: i64| {
            res(|b| {
                b.hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                    .page_size("2MB")
                    .limit(v)
                    .build()
                    .unwrap()])
            })
        };
        let path = PathBuf::from(format!("/{}/ctr", g.top));
        let cg = h.create(Some(&path), "x", Some(&limit(8 * M))).unwrap();
        g.cgroup = Some(cg.clone());
        let leaf = Path::new(UNIFIED).join(&g.top).join("ctr");
        assert_eq!(cg.dir_of("hugetlb"), Some(leaf.as_path()));
        assert_eq!(read(&leaf, "hugetlb.2MB.max").trim(), (8 * M).to_string());
        if leaf.join("hugetlb.2MB.rsvd.max").exists() {
            assert_eq!(
                read(&leaf, "hugetlb.2MB.rsvd.max").trim(),
                (8 * M).to_string()
            );
        }
        cg.apply(&limit(-1)).unwrap();
        assert_eq!(read(&leaf, "hugetlb.2MB.max").trim(), "max");
        // The kernel's own refusal, naming file and value.
        let err = cg.apply(&limit(-5)).unwrap_err();
        assert!(
            matches!(&err, CgroupError::Write { path, value, .. }
                if *path == leaf.join("hugetlb.2MB.max") && value == "-5"),
            "{err}"
        );
        // A relative path lands right below the mount (v2_at has no own
        // cgroup to start from), and a refused create leaves nothing.
        let rel = PathBuf::from(format!("{}/rel", g.top));
        let err = h.create(Some(&rel), "x", Some(&limit(-5))).unwrap_err();
        assert!(matches!(err, CgroupError::Write { .. }), "{err}");
        assert!(!Path::new(UNIFIED).join(&rel).exists());
        let cg2 = h.create(Some(&rel), "x", Some(&limit(2 * M))).unwrap();
        assert_eq!(cg2.mount_sources()[0].1, Path::new(UNIFIED).join(&rel));
        assert_eq!(
            read(&Path::new(UNIFIED).join(&rel), "hugetlb.2MB.max").trim(),
            (2 * M).to_string()
        );
        cg2.destroy().unwrap();
        cg.destroy().unwrap();
        assert!(!leaf.exists());
    }
}
