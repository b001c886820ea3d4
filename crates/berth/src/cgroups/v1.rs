//! cgroup v1: one directory per mounted hierarchy, v1 file names and value
//! formats (Documentation/admin-guide/cgroup-v1).
//!
//! Every `linux.resources` group has its files here: memory (with the
//! kmem, swappiness, OOM-killer and hierarchy knobs), cpu (CFS bandwidth
//! and burst, idle, real-time groups), cpuset, pids, blkio (CFQ or BFQ
//! weights, throttling), hugetlb, net_cls/net_prio and rdma. Only
//! `unified` has no v1 form and is refused.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxNetwork, LinuxPids,
    LinuxResources,
};
use serde::{Deserialize, Serialize};

use super::{
    block_io_set, check_usage, class_id, cpu_set, device, fs, memory_limits_set,
    memory_v1_knobs_set, non_empty, page_size, priorities, rdma_lines, set, throttles, CgroupError,
    CgroupPath, Result,
};

/// The v1 controllers a container joins. Named hierarchies other than
/// systemd's are somebody else's bookkeeping and are left alone, as runc does.
const CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "name=systemd",
];

/// Where `cgroup.procs` is read for [`super::Cgroup::pids`]: a hierarchy every
/// process of the container is certain to be in, preferring the ones runc and
/// crun read.
const PROCS_PREFERENCE: &[&str] = &["pids", "devices", "memory", "freezer", "cpu"];

/// One mounted v1 hierarchy.
#[derive(Clone, Debug)]
pub(super) struct Mount {
    /// e.g. `["cpu", "cpuacct"]` or `["name=systemd"]`.
    pub controllers: Vec<String>,
    /// Its mount point.
    pub dir: PathBuf,
    /// The runtime's own cgroup in it, relative to `dir`.
    pub own: PathBuf,
}

/// The container's directory in one v1 hierarchy.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(super) struct Dir {
    pub controllers: Vec<String>,
    /// The hierarchy's mount point.
    pub mount: PathBuf,
    /// The container's cgroup directory.
    pub path: PathBuf,
    /// The directories made for it, shallowest first.
    pub created: Vec<PathBuf>,
}

impl Dir {
    pub fn mount_name(&self) -> String {
        self.mount
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.controllers.join(","))
    }

    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// The controllers named in a v1 mount's super options
/// (`rw,cpu,cpuacct`, `rw,xattr,name=systemd`), without plain mount options.
pub(super) fn controllers_of(super_options: &str) -> Vec<String> {
    super_options
        .split(',')
        .filter(|o| CONTROLLERS.contains(o))
        .map(str::to_string)
        .collect()
}

/// Makes the container's directory in every hierarchy, pushing each to
/// `dirs` (also a half-made one) so a failure can be undone.
pub(super) fn make_dirs(mounts: &[Mount], inner: &CgroupPath, dirs: &mut Vec<Dir>) -> Result<()> {
    for m in mounts {
        let rel = inner.below(&m.own);
        dirs.push(Dir {
            controllers: m.controllers.clone(),
            mount: m.dir.clone(),
            path: m.dir.join(&rel),
            created: Vec::new(),
        });
        let dir = dirs.last_mut().expect("just pushed");
        fs::make_dirs(&m.dir, &rel, &mut dir.created)?;
        if dir.has("cpuset") {
            init_cpuset(&m.dir, &rel)?;
        }
    }
    Ok(())
}

/// A new cpuset cgroup starts with empty `cpuset.cpus` and `cpuset.mems`,
/// and no process can join it until both are set; copy them down from the
/// parent at each level, as runc does.
fn init_cpuset(mount: &Path, rel: &Path) -> Result<()> {
    let mut parent = mount.to_path_buf();
    for part in rel.iter() {
        let dir = parent.join(part);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if fs::read(&dir, file)?.is_empty() {
                let value = fs::read(&parent, file)?;
                fs::write(&dir, file, &value)?;
            }
        }
        parent = dir;
    }
    Ok(())
}

pub(super) fn dir_of<'a>(dirs: &'a [Dir], controller: &str) -> Option<&'a Path> {
    dirs.iter()
        .find(|d| d.has(controller))
        .map(|d| d.path.as_path())
}

pub(super) fn procs_dir(dirs: &[Dir]) -> Option<&Path> {
    PROCS_PREFERENCE
        .iter()
        .find_map(|c| dir_of(dirs, c))
        .or_else(|| dirs.first().map(|d| d.path.as_path()))
}

fn need<'a>(dirs: &'a [Dir], controller: &'static str, field: &'static str) -> Result<&'a Path> {
    dir_of(dirs, controller).ok_or(CgroupError::MissingController { controller, field })
}

/// What v1 cannot express, found before anything is made.
pub(super) fn check(r: &LinuxResources) -> Result<()> {
    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        return Err(CgroupError::Unsupported {
            field: "linux.resources.unified".to_string(),
            reason: "needs cgroup v2; this host uses v1".to_string(),
        });
    }
    if let Some(s) = r.memory().as_ref().and_then(|m| m.swappiness()) {
        if s > 100 {
            return Err(CgroupError::InvalidResource {
                field: "linux.resources.memory.swappiness",
                value: s.to_string(),
                reason: "must be between 0 and 100",
            });
        }
    }
    if let Some(limits) = r.hugepage_limits() {
        limits.iter().try_for_each(|l| page_size(l).map(drop))?;
    }
    Ok(())
}

pub(super) fn apply(dirs: &[Dir], r: &LinuxResources) -> Result<()> {
    check(r)?;
    if let Some(mem) = r.memory() {
        set_memory(dirs, mem)?;
    }
    if let Some(cpu) = r.cpu() {
        set_cpu(dirs, cpu)?;
        set_cpuset(dirs, cpu)?;
    }
    if let Some(pids) = r.pids() {
        set_pids(dirs, pids)?;
    }
    if let Some(io) = r.block_io() {
        set_blkio(dirs, io)?;
    }
    if let Some(limits) = r.hugepage_limits() {
        set_hugetlb(dirs, limits)?;
    }
    if let Some(net) = r.network() {
        set_network(dirs, net)?;
    }
    set_rdma(dirs, r)?;
    set_devices(dirs, r.devices().as_deref().unwrap_or_default())?;
    Ok(())
}

/// The device allow/deny list (v1 devices controller): the policy
/// `linux.resources.devices` and runc's default devices leave
/// ([`super::devices::Policy`]), checked even where the host lacks the
/// controller.
fn set_devices(dirs: &[Dir], rules: &[oci_spec::runtime::LinuxDeviceCgroup]) -> Result<()> {
    let policy = super::devices::Policy::from_spec(rules)?;
    match dir_of(dirs, "devices") {
        Some(dir) => super::devices::apply_v1(dir, &policy),
        None => Ok(()),
    }
}

const MEM_LIMIT: &str = "memory.limit_in_bytes";
const MEMSW_LIMIT: &str = "memory.memsw.limit_in_bytes";

fn set_memory(dirs: &[Dir], mem: &LinuxMemory) -> Result<()> {
    if !memory_limits_set(mem) && !memory_v1_knobs_set(mem) {
        return Ok(());
    }
    let dir = need(dirs, "memory", "linux.resources.memory")?;
    if mem.check_before_update() == Some(true) {
        check_usage("linux.resources.memory.limit", mem.limit(), || {
            usage(dir, "memory.usage_in_bytes")
        })?;
        // memsw counts memory plus swap, like the spec's swap.
        let swap_usage = if fs::exists(dir, "memory.memsw.usage_in_bytes") {
            "memory.memsw.usage_in_bytes"
        } else {
            "memory.usage_in_bytes"
        };
        check_usage("linux.resources.memory.swap", mem.swap(), || {
            usage(dir, swap_usage)
        })?;
    }
    set_memory_limits(dir, mem)?;
    if let Some(k) = set(mem.kernel()) {
        set_kmem(
            dir,
            "memory.kmem.limit_in_bytes",
            "linux.resources.memory.kernel",
            k,
        )?;
    }
    if let Some(k) = set(mem.kernel_tcp()) {
        set_kmem(
            dir,
            "memory.kmem.tcp.limit_in_bytes",
            "linux.resources.memory.kernelTCP",
            k,
        )?;
    }
    if let Some(s) = mem.swappiness() {
        fs::write(dir, "memory.swappiness", &s.to_string())?;
    }
    // false leaves the killer alone, as in runc: an update that omits the
    // field must not re-enable it behind the user's back.
    if mem.disable_oom_killer() == Some(true) {
        fs::write(dir, "memory.oom_control", "1")?;
    }
    if let Some(h) = mem.use_hierarchy() {
        fs::write(dir, "memory.use_hierarchy", if h { "1" } else { "0" })?;
    }
    Ok(())
}

fn usage(dir: &Path, file: &str) -> Result<(u64, PathBuf)> {
    Ok((fs::read_u64(dir, file)?, dir.join(file)))
}

fn set_memory_limits(dir: &Path, mem: &LinuxMemory) -> Result<()> {
    let (limit, reservation) = (set(mem.limit()), set(mem.reservation()));
    let mut swap = set(mem.swap());
    let has_memsw = fs::exists(dir, MEMSW_LIMIT);
    // "Unlimited memory" with swap unset would leave memsw capping it; runc
    // lifts both.
    if limit == Some(-1) && swap.is_none() && has_memsw {
        swap = Some(-1);
    }
    // Without swap accounting there is nothing to lift.
    if swap == Some(-1) && !has_memsw {
        swap = None;
    }
    let write = |file, v: i64| fs::write(dir, file, &v.to_string());
    match (limit, swap) {
        (Some(l), Some(s)) => {
            // The kernel keeps memory <= memory+swap at every step: raise
            // memsw first when the new one is at least the current memory
            // limit, otherwise lower memory first.
            let current = fs::read_u64(dir, MEM_LIMIT)?;
            if s == -1 || u64::try_from(s).is_ok_and(|s| s >= current) {
                write(MEMSW_LIMIT, s)?;
                write(MEM_LIMIT, l)?;
            } else {
                write(MEM_LIMIT, l)?;
                write(MEMSW_LIMIT, s)?;
            }
        }
        (Some(l), None) => write(MEM_LIMIT, l)?,
        (None, Some(s)) => write(MEMSW_LIMIT, s)?,
        (None, None) => {}
    }
    if let Some(r) = reservation {
        write("memory.soft_limit_in_bytes", r)?;
    }
    Ok(())
}

/// Kernel memory limits are deprecated: newer kernels drop the files
/// (runc now ignores the fields) and some keep `memory.kmem.limit_in_bytes`
/// but ignore what is written to it. Both are warned about, not errors, so
/// old configs keep working.
fn set_kmem(dir: &Path, file: &str, field: &'static str, value: i64) -> Result<()> {
    if !fs::exists(dir, file) {
        tracing::warn!(
            field,
            value,
            "this kernel has no {file}; {field} is not applied"
        );
        return Ok(());
    }
    fs::write(dir, file, &value.to_string())?;
    // The kernel rounds a limit down to whole pages; one it ignores stays
    // at "unlimited".
    if let Ok(stored) = u64::try_from(value) {
        if fs::read_u64(dir, file)? > stored {
            tracing::warn!(
                field,
                value,
                "this kernel accepts {file} but does not enforce it"
            );
        }
    }
    Ok(())
}

fn set_cpu(dirs: &[Dir], cpu: &LinuxCpu) -> Result<()> {
    if !cpu_set(cpu) {
        return Ok(());
    }
    let shares = cpu.shares().filter(|&s| s != 0);
    let quota = set(cpu.quota());
    let period = cpu.period().filter(|&p| p != 0);
    let d = dirs
        .iter()
        .find(|d| d.has("cpu"))
        .ok_or(CgroupError::MissingController {
            controller: "cpu",
            field: "linux.resources.cpu",
        })?;
    let dir = d.path.as_path();
    // Before shares and quotas, as runc does when joining: a real-time task
    // cannot be moved into a group without a real-time budget.
    set_rt(
        d,
        set(cpu.realtime_runtime()),
        cpu.realtime_period().filter(|&p| p != 0),
    )?;
    if let Some(shares) = shares {
        let value = shares.to_string();
        fs::write(dir, "cpu.shares", &value)?;
        // Out-of-range shares are clamped, not refused.
        let actual = fs::read(dir, "cpu.shares")?;
        if actual != value {
            return Err(CgroupError::NotApplied {
                path: dir.join("cpu.shares"),
                value,
                actual,
            });
        }
    }
    // A shorter period, or a larger burst, can push the old quota/period
    // ratio over the parent's; the new quota may fix that, so such a
    // refusal is retried after the quota is written.
    let retry_after_quota = |file: &str, value: String| -> Result<Option<(String, String)>> {
        match fs::write(dir, file, &value) {
            Ok(()) => Ok(None),
            Err(CgroupError::Write { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) && quota.is_some() =>
            {
                Ok(Some((file.to_string(), value)))
            }
            Err(e) => Err(e),
        }
    };
    let mut pending = Vec::new();
    if let Some(p) = period {
        pending.extend(retry_after_quota("cpu.cfs_period_us", p.to_string())?);
    }
    if let Some(b) = cpu.burst() {
        pending.extend(retry_after_quota("cpu.cfs_burst_us", b.to_string())?);
    }
    if let Some(q) = quota {
        fs::write(dir, "cpu.cfs_quota_us", &q.to_string())?;
    }
    for (file, value) in pending {
        fs::write(dir, &file, &value)?;
    }
    if let Some(idle) = cpu.idle() {
        fs::write(dir, "cpu.idle", &idle.to_string())?;
    }
    Ok(())
}

/// Real-time group scheduling (`cpu.rt_period_us`, `cpu.rt_runtime_us`).
/// A new cgroup has no real-time budget and a child's budget comes out of
/// its parent's, so the levels made for this container get what the leaf
/// asks for first; levels that existed before are not touched.
fn set_rt(d: &Dir, runtime: Option<i64>, period: Option<u64>) -> Result<()> {
    if runtime.is_none() && period.is_none() {
        return Ok(());
    }
    let dir = d.path.as_path();
    for file in ["cpu.rt_runtime_us", "cpu.rt_period_us"] {
        if !fs::exists(dir, file) {
            return Err(CgroupError::Unsupported {
                field: if runtime.is_some() {
                    "linux.resources.cpu.realtimeRuntime"
                } else {
                    "linux.resources.cpu.realtimePeriod"
                }
                .to_string(),
                reason: format!(
                    "{} does not exist: this kernel has no real-time group scheduling \
                     (CONFIG_RT_GROUP_SCHED)",
                    dir.join(file).display()
                ),
            });
        }
    }
    if let Some(r) = runtime.filter(|&r| r > 0) {
        let leaf_period = match period {
            Some(p) => p,
            None => fs::read_u64(dir, "cpu.rt_period_us")?,
        };
        for ancestor in d.created.iter().filter(|p| p.as_path() != dir) {
            let p = fs::read_u64(ancestor, "cpu.rt_period_us")?;
            let needed = (r as u128 * p as u128).div_ceil(leaf_period.max(1) as u128);
            let have = fs::read(ancestor, "cpu.rt_runtime_us")?;
            if have
                .parse::<i128>()
                .is_ok_and(|h| h >= 0 && (h as u128) < needed)
            {
                fs::write(ancestor, "cpu.rt_runtime_us", &needed.to_string())?;
            }
        }
    }
    // The kernel checks runtime <= period at every step: a period below the
    // current runtime is retried once the new runtime is in.
    let mut period_pending = None;
    if let Some(p) = period {
        let value = p.to_string();
        match fs::write(dir, "cpu.rt_period_us", &value) {
            Ok(()) => {}
            Err(CgroupError::Write { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) && runtime.is_some() =>
            {
                period_pending = Some(value);
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(r) = runtime {
        fs::write(dir, "cpu.rt_runtime_us", &r.to_string())?;
    }
    if let Some(value) = period_pending {
        fs::write(dir, "cpu.rt_period_us", &value)?;
    }
    Ok(())
}

fn set_cpuset(dirs: &[Dir], cpu: &LinuxCpu) -> Result<()> {
    let (cpus, mems) = (non_empty(cpu.cpus()), non_empty(cpu.mems()));
    if cpus.is_none() && mems.is_none() {
        return Ok(());
    }
    let dir = need(dirs, "cpuset", "linux.resources.cpu.cpus/mems")?;
    if let Some(cpus) = cpus {
        fs::write(dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = mems {
        fs::write(dir, "cpuset.mems", mems)?;
    }
    Ok(())
}

fn set_pids(dirs: &[Dir], pids: &LinuxPids) -> Result<()> {
    let dir = need(dirs, "pids", "linux.resources.pids.limit")?;
    fs::write(dir, "pids.max", &super::pids_max(pids.limit()))
}

/// blkio: proportional weights and throttling. Since Linux 5.0 (CFQ gone)
/// the weights live only in BFQ's `blkio.bfq.*` files, and leaf weights
/// are gone altogether.
fn set_blkio(dirs: &[Dir], io: &LinuxBlockIo) -> Result<()> {
    if !block_io_set(io, false) {
        return Ok(());
    }
    let dir = need(dirs, "blkio", "linux.resources.blockIO")?;
    let (weight_file, device_file) = if fs::exists(dir, "blkio.weight") {
        ("blkio.weight", "blkio.weight_device")
    } else {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    };
    let devices = io.weight_device().as_deref().unwrap_or_default();
    let wants_weight =
        io.weight().is_some_and(|w| w != 0) || devices.iter().any(|d| nonzero(d.weight()));
    if wants_weight && !fs::exists(dir, weight_file) {
        return Err(CgroupError::Unsupported {
            field: "linux.resources.blockIO.weight".to_string(),
            reason: format!(
                "neither blkio.weight nor blkio.bfq.weight exists in {}: \
                 no proportional-weight I/O scheduler (CFQ or BFQ) in this kernel",
                dir.display()
            ),
        });
    }
    if let Some(w) = io.weight().filter(|&w| w != 0) {
        fs::write(dir, weight_file, &w.to_string())?;
    }
    if let Some(w) = io.leaf_weight().filter(|&w| w != 0) {
        leaf_file(
            dir,
            "blkio.leaf_weight",
            "linux.resources.blockIO.leafWeight",
        )?;
        fs::write(dir, "blkio.leaf_weight", &w.to_string())?;
    }
    for d in devices {
        let dev = device(d.major(), d.minor());
        if let Some(w) = d.weight().filter(|&w| w != 0) {
            fs::write(dir, device_file, &format!("{dev} {w}"))?;
        }
        if let Some(w) = d.leaf_weight().filter(|&w| w != 0) {
            leaf_file(
                dir,
                "blkio.leaf_weight_device",
                "linux.resources.blockIO.weightDevice[].leafWeight",
            )?;
            fs::write(dir, "blkio.leaf_weight_device", &format!("{dev} {w}"))?;
        }
    }
    for (file, _, list) in throttles(io) {
        for t in list {
            let value = format!("{} {}", device(t.major(), t.minor()), t.rate());
            fs::write(dir, file, &value)?;
        }
    }
    Ok(())
}

fn nonzero(w: Option<u16>) -> bool {
    w.is_some_and(|w| w != 0)
}

fn leaf_file(dir: &Path, file: &str, field: &str) -> Result<()> {
    if fs::exists(dir, file) {
        return Ok(());
    }
    Err(CgroupError::Unsupported {
        field: field.to_string(),
        reason: format!(
            "{} does not exist: leaf weights went with the CFQ I/O scheduler (Linux 5.0)",
            dir.join(file).display()
        ),
    })
}

/// `hugetlb.<size>.limit_in_bytes`, and the reservation limit beside it
/// where the kernel has one (5.7+), as runc does, so that reserved but not
/// yet faulted pages count too.
fn set_hugetlb(dirs: &[Dir], limits: &[LinuxHugepageLimit]) -> Result<()> {
    if limits.is_empty() {
        return Ok(());
    }
    let dir = need(dirs, "hugetlb", "linux.resources.hugepageLimits")?;
    let mut rsvd = true;
    for l in limits {
        let size = page_size(l)?;
        let file = format!("hugetlb.{size}.limit_in_bytes");
        if !fs::exists(dir, &file) {
            return Err(CgroupError::Unsupported {
                field: "linux.resources.hugepageLimits".to_string(),
                reason: format!(
                    "no {size} huge pages on this host ({} does not exist)",
                    dir.join(&file).display()
                ),
            });
        }
        let value = l.limit().to_string();
        fs::write(dir, &file, &value)?;
        let rsvd_file = format!("hugetlb.{size}.rsvd.limit_in_bytes");
        if rsvd && fs::exists(dir, &rsvd_file) {
            fs::write(dir, &rsvd_file, &value)?;
        } else {
            rsvd = false;
        }
    }
    Ok(())
}

/// net_cls tags the container's packets with a class id (for tc and
/// iptables); net_prio sets their priority per interface.
fn set_network(dirs: &[Dir], net: &LinuxNetwork) -> Result<()> {
    if let Some(id) = class_id(net) {
        let dir = need(dirs, "net_cls", "linux.resources.network.classID")?;
        fs::write(dir, "net_cls.classid", &id.to_string())?;
    }
    let prios = priorities(net);
    if !prios.is_empty() {
        let dir = need(dirs, "net_prio", "linux.resources.network.priorities")?;
        for p in prios {
            fs::write(
                dir,
                "net_prio.ifpriomap",
                &format!("{} {}", p.name(), p.priority()),
            )?;
        }
    }
    Ok(())
}

fn set_rdma(dirs: &[Dir], r: &LinuxResources) -> Result<()> {
    let lines = rdma_lines(r);
    if lines.is_empty() {
        return Ok(());
    }
    let dir = need(dirs, "rdma", "linux.resources.rdma")?;
    lines.iter().try_for_each(|l| fs::write(dir, "rdma.max", l))
}

/// These run against the host's real v1 hierarchy and skip themselves
/// elsewhere (not root, or a v2 host).
#[cfg(test)]
mod tests {
    use super::super::{Cgroup, CgroupError, Hierarchy};
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxHugepageLimitBuilder,
        LinuxInterfacePriorityBuilder, LinuxMemoryBuilder, LinuxNetworkBuilder, LinuxPidsBuilder,
        LinuxRdmaBuilder, LinuxResources, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder,
        LinuxWeightDeviceBuilder,
    };
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    const M: i64 = 1024 * 1024;

    fn host() -> Option<Hierarchy> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return None;
        }
        let h = Hierarchy::detect().expect("detect");
        if h.is_v2() {
            eprintln!("skipped: host is cgroup v2");
            return None;
        }
        Some(h)
    }

    /// A unique absolute cgroup path; the guard removes what is left of it
    /// in every hierarchy, and kills its processes, whatever happens.
    struct Guard {
        hierarchy: Hierarchy,
        top: String,
        cgroup: Option<Cgroup>,
        children: Vec<Child>,
    }

    impl Guard {
        fn new(h: &Hierarchy) -> Guard {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            Guard {
                hierarchy: h.clone(),
                top: format!("berth-test-{}-{n}", std::process::id()),
                cgroup: None,
                children: Vec::new(),
            }
        }

        fn path(&self, rest: &str) -> PathBuf {
            PathBuf::from(format!("/{}/{rest}", self.top))
        }

        fn dirs_left(&self) -> Vec<PathBuf> {
            self.hierarchy
                .mounts()
                .into_iter()
                .map(|(_, m)| m.join(&self.top))
                .filter(|p| p.exists())
                .collect()
        }

        fn remove_tree(dir: &Path) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        Self::remove_tree(&e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            for c in &mut self.children {
                let _ = c.kill();
                let _ = c.wait();
            }
            if let Some(cg) = self.cgroup.take() {
                let _ = cg.destroy();
            }
            for dir in self.dirs_left() {
                Self::remove_tree(&dir);
            }
        }
    }

    fn resources(limit: i64, swap: i64) -> LinuxResources {
        LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(limit)
                    .swap(swap)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    fn read(dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file))
            .unwrap()
            .trim()
            .to_string()
    }

    #[test]
    fn v1_create_apply_join_destroy() {
        let Some(h) = host() else { return };
        let mut g = Guard::new(&h);
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64 * M)
                    .reservation(32 * M)
                    .swap(128 * M)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(50_000i64)
                    .period(100_000u64)
                    .cpus("0")
                    .mems("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(64).build().unwrap())
            .build()
            .unwrap();
        let cg = h.create(Some(&g.path("ctr")), "ignored", Some(&r)).unwrap();
        g.cgroup = Some(cg.clone());
        assert!(!cg.is_v2());

        let mem = cg.dir_of("memory").unwrap();
        assert_eq!(
            mem,
            Path::new(&format!("/sys/fs/cgroup/memory/{}/ctr", g.top))
        );
        assert_eq!(read(mem, "memory.limit_in_bytes"), (64 * M).to_string());
        assert_eq!(
            read(mem, "memory.soft_limit_in_bytes"),
            (32 * M).to_string()
        );
        if mem.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(
                read(mem, "memory.memsw.limit_in_bytes"),
                (128 * M).to_string()
            );
        }
        let cpu = cg.dir_of("cpu").unwrap();
        assert_eq!(read(cpu, "cpu.shares"), "512");
        assert_eq!(read(cpu, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(cpu, "cpu.cfs_period_us"), "100000");
        let cpuset = cg.dir_of("cpuset").unwrap();
        assert_eq!(read(cpuset, "cpuset.cpus"), "0");
        assert_eq!(read(cpuset, "cpuset.mems"), "0");
        // The intermediate level got the parent's cpuset so the leaf could.
        assert!(!read(cpuset.parent().unwrap(), "cpuset.mems").is_empty());
        assert_eq!(read(cg.dir_of("pids").unwrap(), "pids.max"), "64");

        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        g.children.push(child);
        cg.add_pid(pid).unwrap();
        assert_eq!(cg.pids().unwrap(), vec![pid]);
        for (_, dir) in cg.mount_sources() {
            assert_eq!(
                read(&dir, "cgroup.procs"),
                pid.to_string(),
                "{}",
                dir.display()
            );
        }

        // Unlimited pids on update.
        let r = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(0).build().unwrap())
            .build()
            .unwrap();
        cg.apply(&r).unwrap();
        assert_eq!(read(cg.dir_of("pids").unwrap(), "pids.max"), "max");

        let mut child = g.children.pop().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        cg.destroy().unwrap();
        assert_eq!(g.dirs_left(), Vec::<PathBuf>::new());
        // Idempotent.
        cg.destroy().unwrap();
    }

    #[test]
    fn v1_memory_updates_order_limit_and_swap() {
        let Some(h) = host() else { return };
        let mut g = Guard::new(&h);
        let cg = h
            .create(
                Some(&g.path("ctr")),
                "x",
                Some(&resources(256 * M, 512 * M)),
            )
            .unwrap();
        g.cgroup = Some(cg.clone());
        let mem = cg.dir_of("memory").unwrap().to_path_buf();
        if !mem.join("memory.memsw.limit_in_bytes").exists() {
            eprintln!("skipped: no swap accounting");
            return;
        }
        // Down: the new swap is below the old memory limit.
        cg.apply(&resources(64 * M, 128 * M)).unwrap();
        assert_eq!(read(&mem, "memory.limit_in_bytes"), (64 * M).to_string());
        assert_eq!(
            read(&mem, "memory.memsw.limit_in_bytes"),
            (128 * M).to_string()
        );
        // Up: the new memory limit is above the old swap limit.
        cg.apply(&resources(1024 * M, 2048 * M)).unwrap();
        assert_eq!(read(&mem, "memory.limit_in_bytes"), (1024 * M).to_string());
        assert_eq!(
            read(&mem, "memory.memsw.limit_in_bytes"),
            (2048 * M).to_string()
        );
        // Unlimited memory lifts swap too.
        let r = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(-1).build().unwrap())
            .build()
            .unwrap();
        cg.apply(&r).unwrap();
        for file in ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"] {
            let v: u64 = read(&mem, file).parse().unwrap();
            assert!(v > 1 << 62, "{file} = {v}");
        }
    }

    #[test]
    fn v1_refused_memory_limit_names_file_and_rolls_back() {
        let Some(h) = host() else { return };
        let g = Guard::new(&h);
        let r = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(-5).build().unwrap())
            .build()
            .unwrap();
        let err = h.create(Some(&g.path("ctr")), "x", Some(&r)).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(&err, CgroupError::Write { path, value, .. }
                if path.ends_with("ctr/memory.limit_in_bytes") && value == "-5"),
            "{msg}"
        );
        assert!(
            msg.starts_with("write -5 to /sys/fs/cgroup/memory/berth-test-"),
            "{msg}"
        );
        assert_eq!(g.dirs_left(), Vec::<PathBuf>::new(), "not rolled back");
    }

    #[test]
    fn v1_clamped_shares_and_refused_quota_are_errors() {
        let Some(h) = host() else { return };
        let mut g = Guard::new(&h);
        let cg = h.create(Some(&g.path("ctr")), "x", None).unwrap();
        g.cgroup = Some(cg.clone());
        let cpu = |b: LinuxCpuBuilder| {
            LinuxResourcesBuilder::default()
                .cpu(b.build().unwrap())
                .build()
                .unwrap()
        };
        let err = cg
            .apply(&cpu(LinuxCpuBuilder::default().shares(1u64)))
            .unwrap_err();
        assert!(
            matches!(&err, CgroupError::NotApplied { path, value, actual }
                if path.ends_with("cpu.shares") && value == "1" && actual == "2"),
            "{err}"
        );
        let err = cg
            .apply(&cpu(LinuxCpuBuilder::default().quota(500i64)))
            .unwrap_err();
        assert!(
            err.to_string().contains("write 500 to /sys/fs/cgroup/cpu/"),
            "{err}"
        );
        assert!(
            err.to_string()
                .ends_with("cpu.cfs_quota_us: Invalid argument (os error 22)"),
            "{err}"
        );
    }

    #[test]
    fn v1_destroy_keeps_dirs_it_did_not_create() {
        let Some(h) = host() else { return };
        let mut g = Guard::new(&h);
        let outer = h.create(Some(&g.path("")), "x", None).unwrap();
        let inner = h.create(Some(&g.path("ctr")), "x", None).unwrap();
        g.cgroup = Some(outer.clone());
        let Some(memory) = inner.dir_of("memory").map(Path::to_path_buf) else {
            return;
        };
        inner.destroy().unwrap();
        assert!(!memory.exists());
        assert!(memory.parent().unwrap().exists());
        outer.destroy().unwrap();
        assert_eq!(g.dirs_left(), Vec::<PathBuf>::new());
    }

    #[test]
    fn v1_mount_sources_and_state_round_trip() {
        let Some(h) = host() else { return };
        let mut g = Guard::new(&h);
        let cg = h.create(Some(&g.path("ctr")), "x", None).unwrap();
        g.cgroup = Some(cg.clone());
        let sources = cg.mount_sources();
        for (name, dir) in &sources {
            assert_eq!(
                dir,
                &Path::new("/sys/fs/cgroup")
                    .join(name)
                    .join(&g.top)
                    .join("ctr")
            );
        }
        let names: Vec<&str> = sources.iter().map(|(n, _)| n.as_str()).collect();
        for want in ["memory", "cpuset", "pids"] {
            assert!(names.contains(&want), "{names:?}");
        }
        let json = serde_json::to_string(&cg).unwrap();
        let back: Cgroup = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cg);
    }

    fn res(f: impl FnOnce(LinuxResourcesBuilder) -> LinuxResourcesBuilder) -> LinuxResources {
        f(LinuxResourcesBuilder::default()).build().unwrap()
    }

    /// A real disk (one with a `device` link: not a loop, zram or ram
    /// device), e.g. the root disk: its /sys/block dir and `MAJ:MIN`.
    fn real_disk() -> Option<(PathBuf, (i64, i64))> {
        let mut disks: Vec<PathBuf> = std::fs::read_dir("/sys/block")
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("device").exists())
            .collect();
        disks.sort();
        let disk = disks.into_iter().next()?;
        let dev = std::fs::read_to_string(disk.join("dev")).ok()?;
        let (maj, min) = dev.trim().split_once(':')?;
        Some((disk, (maj.parse().ok()?, min.parse().ok()?)))
    }

    /// Switches block device `name` to the BFQ scheduler (per-device blkio
    /// weights need it) and restores its scheduler on drop.
    struct Bfq {
        file: PathBuf,
        old: String,
        dev: (i64, i64),
    }

    impl Bfq {
        fn on(name: &str) -> Option<Bfq> {
            let dir = Path::new("/sys/block").join(name);
            let file = dir.join("queue/scheduler");
            let current = std::fs::read_to_string(&file).ok()?;
            if !current
                .split_whitespace()
                .any(|s| s.trim_matches(['[', ']']) == "bfq")
            {
                return None;
            }
            let old = current
                .split_whitespace()
                .find(|s| s.starts_with('['))?
                .trim_matches(['[', ']'])
                .to_string();
            std::fs::write(&file, "bfq").ok()?;
            let dev = std::fs::read_to_string(dir.join("dev")).ok()?;
            let (maj, min) = dev.trim().split_once(':')?;
            let dev = (maj.parse().ok()?, min.parse().ok()?);
            Some(Bfq { file, old, dev })
        }
    }

    impl Drop for Bfq {
        fn drop(&mut self) {
            let _ = std::fs::write(&self.file, &self.old);
        }
    }

    /// Runs `f` on a thread of its own in a private mount namespace where
    /// `controllers` (compiled in but not mounted on every host, e.g.
    /// `net_cls,net_prio`) are mounted on a temporary directory. None when
    /// they cannot be mounted. The mount goes with the thread's namespace.
    fn with_v1_mount<T: Send>(controllers: &str, f: impl FnOnce(&Path) -> T + Send) -> Option<T> {
        use nix::mount::{mount, umount2, MntFlags, MsFlags};
        use nix::sched::{unshare, CloneFlags};
        std::thread::scope(|s| {
            s.spawn(|| {
                unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_FS).ok()?;
                mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    None::<&str>,
                )
                .ok()?;
                let dir = tempfile::tempdir().unwrap();
                let at = dir.path().join(controllers);
                std::fs::create_dir(&at).unwrap();
                if let Err(e) = mount(
                    Some("cgroup"),
                    &at,
                    Some("cgroup"),
                    MsFlags::empty(),
                    Some(controllers),
                ) {
                    eprintln!("skipped: mount {controllers}: {e}");
                    return None;
                }
                let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&at)));
                let _ = umount2(&at, MntFlags::MNT_DETACH);
                match out {
                    Ok(v) => Some(v),
                    Err(p) => std::panic::resume_unwind(p),
                }
            })
            .join()
            .unwrap()
        })
    }

    #[test]
    fn v1_memory_knobs_kernel_memory_and_swappiness_range() {
        let Some(h) = host() else { return };
        let mut g = Guard::new(&h);
        let r = res(|b| {
            b.memory(
                LinuxMemoryBuilder::default()
                    .limit(256 * M)
                    .kernel(64 * M)
                    .kernel_tcp(32 * M)
                    .swappiness(30u64)
                    .disable_oom_killer(true)
                    .use_hierarchy(true)
                    .build()
                    .unwrap(),
            )
        });
        let cg = h.create(Some(&g.path("ctr")), "x", Some(&r)).unwrap();
        g.cgroup = Some(cg.clone());
        let mem = cg.dir_of("memory").unwrap().to_path_buf();
        assert_eq!(read(&mem, "memory.limit_in_bytes"), (256 * M).to_string());
        assert_eq!(read(&mem, "memory.swappiness"), "30");
        assert!(
            read(&mem, "memory.oom_control").contains("oom_kill_disable 1"),
            "{}",
            read(&mem, "memory.oom_control")
        );
        assert_eq!(read(&mem, "memory.use_hierarchy"), "1");
        if mem.join("memory.kmem.tcp.limit_in_bytes").exists() {
            assert_eq!(
                read(&mem, "memory.kmem.tcp.limit_in_bytes"),
                (32 * M).to_string()
            );
        }
        if mem.join("memory.kmem.limit_in_bytes").exists() {
            // Newer kernels keep the file but ignore writes (a warning).
            let v: u64 = read(&mem, "memory.kmem.limit_in_bytes").parse().unwrap();
            assert!(v == (64 * M) as u64 || v > 1 << 62, "kmem limit {v}");
        }

        // Swappiness above 100 is refused before the kernel sees it (newer
        // kernels would take up to 200 and mean something else by it).
        let err = cg
            .apply(&res(|b| {
                b.memory(
                    LinuxMemoryBuilder::default()
                        .swappiness(101u64)
                        .build()
                        .unwrap(),
                )
            }))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "linux.resources.memory.swappiness = 101: must be between 0 and 100"
        );
        assert_eq!(read(&mem, "memory.swappiness"), "30");
        let g2 = Guard::new(&h);
        let err = h
            .create(
                Some(&g2.path("ctr")),
                "x",
                Some(&res(|b| {
                    b.memory(
                        LinuxMemoryBuilder::default()
                            .swappiness(200u64)
                            .build()
                            .unwrap(),
                    )
                })),
            )
            .unwrap_err();
        assert!(matches!(err, CgroupError::InvalidResource { .. }), "{err}");
        assert_eq!(g2.dirs_left(), Vec::<PathBuf>::new());

        // A hierarchy switch the kernel no longer offers is its refusal,
        // naming file and value; a kernel that still offers it stores it.
        let off = res(|b| {
            b.memory(
                LinuxMemoryBuilder::default()
                    .use_hierarchy(false)
                    .build()
                    .unwrap(),
            )
        });
        match cg.apply(&off) {
            Ok(()) => assert_eq!(read(&mem, "memory.use_hierarchy"), "0"),
            Err(e) => assert!(
                matches!(&e, CgroupError::Write { path, value, .. }
                    if path.ends_with("ctr/memory.use_hierarchy") && value == "0"),
                "{e}"
            ),
        }
    }

    /// A child that keeps about 8 MiB of anonymous memory once it has been
    /// moved into the cgroup (it waits for its pid to show up there).
    fn hog(g: &mut Guard, cg: &Cgroup) -> i32 {
        let procs = cg.dir_of("memory").unwrap().join("cgroup.procs");
        let script = format!(
            "while ! grep -qx $$ {}; do sleep 0.01; done; \
             x=$(head -c 8000000 /dev/zero | tr '\\0' a); exec sleep 60",
            procs.display()
        );
        let child = Command::new("sh").arg("-c").arg(script).spawn().unwrap();
        let pid = child.id() as i32;
        g.children.push(child);
        cg.add_pid(pid).unwrap();
        pid
    }

    #[test]
    fn v1_check_before_update_refuses_limits_below_usage() {
        let Some(h) = host() else { return };
        let mut g = Guard::new(&h);
        let cg = h
            .create(
                Some(&g.path("ctr")),
                "x",
                Some(&resources(512 * M, 1024 * M)),
            )
            .unwrap();
        g.cgroup = Some(cg.clone());
        let mem = cg.dir_of("memory").unwrap().to_path_buf();
        hog(&mut g, &cg);
        let deadline = Instant::now() + Duration::from_secs(10);
        while read(&mem, "memory.usage_in_bytes").parse::<i64>().unwrap() < 4 * M {
            assert!(Instant::now() < deadline, "the child never used 4 MiB");
            std::thread::sleep(Duration::from_millis(20));
        }
        let checked = |limit: i64, swap: Option<i64>| {
            let mut m = LinuxMemoryBuilder::default()
                .limit(limit)
                .check_before_update(true);
            if let Some(s) = swap {
                m = m.swap(s);
            }
            res(|b| b.memory(m.build().unwrap()))
        };
        let err = cg.apply(&checked(2 * M, None)).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(&err, CgroupError::BelowUsage { field: "linux.resources.memory.limit",
                value, path, .. } if *value == 2 * M && path.ends_with("ctr/memory.usage_in_bytes")),
            "{msg}"
        );
        assert!(msg.contains("checkBeforeUpdate"), "{msg}");
        assert_eq!(read(&mem, "memory.limit_in_bytes"), (512 * M).to_string());
        if mem.join("memory.memsw.usage_in_bytes").exists() {
            let err = cg.apply(&checked(256 * M, Some(2 * M))).unwrap_err();
            assert!(
                matches!(
                    &err,
                    CgroupError::BelowUsage {
                        field: "linux.resources.memory.swap",
                        ..
                    }
                ),
                "{err}"
            );
            assert_eq!(read(&mem, "memory.limit_in_bytes"), (512 * M).to_string());
        }
        // Above the usage it goes through.
        cg.apply(&checked(256 * M, None)).unwrap();
        assert_eq!(read(&mem, "memory.limit_in_bytes"), (256 * M).to_string());
    }

    #[test]
    fn v1_cpu_burst_idle_and_realtime_with_a_budget_for_new_parents() {
        let Some(h) = host() else { return };
        let mut g = Guard::new(&h);
        let r = res(|b| {
            b.cpu(
                LinuxCpuBuilder::default()
                    .quota(50_000i64)
                    .period(100_000u64)
                    .burst(20_000u64)
                    .idle(1i64)
                    .realtime_period(500_000u64)
                    .realtime_runtime(10_000i64)
                    .build()
                    .unwrap(),
            )
        });
        let created = h.create(Some(&g.path("ctr")), "x", Some(&r));
        let cpu_mount = PathBuf::from("/sys/fs/cgroup/cpu");
        if !cpu_mount.join("cpu.rt_runtime_us").exists() {
            // No CONFIG_RT_GROUP_SCHED: the clear error, and nothing left.
            let err = created.unwrap_err();
            assert!(err.to_string().contains("CONFIG_RT_GROUP_SCHED"), "{err}");
            assert_eq!(g.dirs_left(), Vec::<PathBuf>::new());
            return;
        }
        let cg = created.unwrap();
        g.cgroup = Some(cg.clone());
        let cpu = cg.dir_of("cpu").unwrap().to_path_buf();
        assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(&cpu, "cpu.cfs_burst_us"), "20000");
        assert_eq!(read(&cpu, "cpu.idle"), "1");
        assert_eq!(read(&cpu, "cpu.rt_period_us"), "500000");
        assert_eq!(read(&cpu, "cpu.rt_runtime_us"), "10000");
        // The parent made for it got the same share of its own 1 s period.
        let parent = cpu.parent().unwrap();
        assert_eq!(read(parent, "cpu.rt_period_us"), "1000000");
        assert_eq!(read(parent, "cpu.rt_runtime_us"), "20000");

        // More than the host's budget: the kernel refuses, at the parent.
        let host_rt: i64 = read(&cpu_mount, "cpu.rt_runtime_us").parse().unwrap();
        let too_much = res(|b| {
            b.cpu(
                LinuxCpuBuilder::default()
                    .realtime_period(1_000_000u64)
                    .realtime_runtime(host_rt + 1)
                    .build()
                    .unwrap(),
            )
        });
        let err = cg.apply(&too_much).unwrap_err();
        assert!(
            matches!(&err, CgroupError::Write { path, value, .. }
                if path == &parent.join("cpu.rt_runtime_us") && *value == (host_rt + 1).to_string()),
            "{err}"
        );
        // Burst above the quota is the kernel's refusal too.
        let err = cg
            .apply(&res(|b| {
                b.cpu(LinuxCpuBuilder::default().burst(60_000u64).build().unwrap())
            }))
            .unwrap_err();
        assert!(
            err.to_string().starts_with("write 60000 to ")
                && err
                    .to_string()
                    .contains("cpu.cfs_burst_us: Invalid argument"),
            "{err}"
        );
        // A larger quota with a larger burst: the burst waits for the quota.
        cg.apply(&res(|b| {
            b.cpu(
                LinuxCpuBuilder::default()
                    .quota(80_000i64)
                    .burst(70_000u64)
                    .build()
                    .unwrap(),
            )
        }))
        .unwrap();
        assert_eq!(read(&cpu, "cpu.cfs_burst_us"), "70000");
        assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "80000");
    }

    #[test]
    fn v1_blkio_weights_and_throttles_on_real_devices() {
        let Some(h) = host() else { return };
        let Some((disk, (maj, min))) = real_disk() else {
            eprintln!("skipped: no real disk in /sys/block");
            return;
        };
        let mut g = Guard::new(&h);
        let throttle = |rate: u64| {
            vec![LinuxThrottleDeviceBuilder::default()
                .major(maj)
                .minor(min)
                .rate(rate)
                .build()
                .unwrap()]
        };
        let r = res(|b| {
            b.block_io(
                LinuxBlockIoBuilder::default()
                    .weight(300u16)
                    .throttle_read_bps_device(throttle(1_048_576))
                    .throttle_write_bps_device(throttle(2_097_152))
                    .throttle_read_iops_device(throttle(100))
                    .throttle_write_iops_device(throttle(200))
                    .build()
                    .unwrap(),
            )
        });
        let cg = h.create(Some(&g.path("ctr")), "x", Some(&r)).unwrap();
        g.cgroup = Some(cg.clone());
        let blkio = cg.dir_of("blkio").unwrap().to_path_buf();
        let weight_file = if blkio.join("blkio.weight").exists() {
            "blkio.weight"
        } else {
            "blkio.bfq.weight"
        };
        assert_eq!(read(&blkio, weight_file), "300");
        let dev = format!("{maj}:{min}");
        for (file, v) in [
            ("read_bps_device", 1_048_576),
            ("write_bps_device", 2_097_152),
            ("read_iops_device", 100),
            ("write_iops_device", 200),
        ] {
            assert_eq!(
                read(&blkio, &format!("blkio.throttle.{file}")),
                format!("{dev} {v}")
            );
        }

        let per_device = |maj: i64, min: i64| {
            res(|b| {
                b.block_io(
                    LinuxBlockIoBuilder::default()
                        .weight_device(vec![LinuxWeightDeviceBuilder::default()
                            .major(maj)
                            .minor(min)
                            .weight(700u16)
                            .build()
                            .unwrap()])
                        .build()
                        .unwrap(),
                )
            })
        };
        let device_file = weight_file.replace("weight", "weight_device");
        // Per-device weights need the disk to use BFQ (or CFQ); a loop
        // device is switched to BFQ for the test.
        if let Some(bfq) = Bfq::on("loop6") {
            cg.apply(&per_device(bfq.dev.0, bfq.dev.1)).unwrap();
            assert!(
                read(&blkio, &device_file)
                    .lines()
                    .any(|l| l == format!("{}:{} 700", bfq.dev.0, bfq.dev.1)),
                "{}",
                read(&blkio, &device_file)
            );
        }
        // BFQ's file refuses a disk that uses another scheduler.
        let disk_sched = std::fs::read_to_string(disk.join("queue/scheduler")).unwrap_or_default();
        if weight_file == "blkio.bfq.weight" && !disk_sched.contains("[bfq]") {
            let err = cg.apply(&per_device(maj, min)).unwrap_err();
            assert!(
                matches!(&err, CgroupError::Write { path, value, .. }
                    if path.ends_with(&device_file) && *value == format!("{dev} 700")),
                "{err}"
            );
        }

        // Leaf weights went with CFQ.
        let leaf = res(|b| {
            b.block_io(
                LinuxBlockIoBuilder::default()
                    .leaf_weight(200u16)
                    .build()
                    .unwrap(),
            )
        });
        match cg.apply(&leaf) {
            Ok(()) => assert_eq!(read(&blkio, "blkio.leaf_weight"), "200"),
            Err(e) => {
                assert!(!blkio.join("blkio.leaf_weight").exists());
                assert!(
                    e.to_string()
                        .starts_with("linux.resources.blockIO.leafWeight: ")
                        && e.to_string().contains("blkio.leaf_weight does not exist"),
                    "{e}"
                );
            }
        }

        // A device the kernel does not have: its refusal, and no leftovers.
        let g2 = Guard::new(&h);
        let bogus = res(|b| {
            b.block_io(
                LinuxBlockIoBuilder::default()
                    .throttle_read_bps_device(vec![LinuxThrottleDeviceBuilder::default()
                        .major(9999)
                        .minor(9999)
                        .rate(1_048_576u64)
                        .build()
                        .unwrap()])
                    .build()
                    .unwrap(),
            )
        });
        let err = h
            .create(Some(&g2.path("ctr")), "x", Some(&bogus))
            .unwrap_err();
        assert!(
            matches!(&err, CgroupError::Write { path, value, .. }
                if path.ends_with("ctr/blkio.throttle.read_bps_device") && value == "9999:9999 1048576"),
            "{err}"
        );
        assert_eq!(g2.dirs_left(), Vec::<PathBuf>::new(), "not rolled back");
    }

    #[test]
    fn v1_network_class_id_and_priorities() {
        let Some(h) = host() else { return };
        let net = res(|b| {
            b.network(
                LinuxNetworkBuilder::default()
                    .class_id(0x10_0001u32)
                    .priorities(vec![LinuxInterfacePriorityBuilder::default()
                        .name("lo")
                        .priority(5u32)
                        .build()
                        .unwrap()])
                    .build()
                    .unwrap(),
            )
        });
        let has = |c: &str| {
            h.mounts()
                .iter()
                .any(|(cs, _)| cs.split(',').any(|x| x == c))
        };
        if !has("net_cls") {
            // The host's own hierarchy lacks the controller: early, clear.
            let g = Guard::new(&h);
            let err = h.create(Some(&g.path("ctr")), "x", Some(&net)).unwrap_err();
            assert!(
                matches!(
                    err,
                    CgroupError::MissingController {
                        controller: "net_cls",
                        field: "linux.resources.network.classID"
                    }
                ),
                "{err}"
            );
            assert_eq!(g.dirs_left(), Vec::<PathBuf>::new());
        }
        let ran = with_v1_mount("net_cls,net_prio", |at| {
            let h = Hierarchy::v1_from(vec![("net_cls,net_prio".into(), at.to_path_buf())]);
            let mut g = Guard::new(&h);
            let cg = h.create(Some(&g.path("ctr")), "x", Some(&net)).unwrap();
            g.cgroup = Some(cg.clone());
            let dir = cg.dir_of("net_prio").unwrap();
            assert_eq!(cg.dir_of("net_cls"), Some(dir));
            assert_eq!(read(dir, "net_cls.classid"), "1048577");
            let map = read(dir, "net_prio.ifpriomap");
            assert!(map.lines().any(|l| l == "lo 5"), "{map}");
            // An interface the kernel does not know is its refusal.
            let err = cg
                .apply(&res(|b| {
                    b.network(
                        LinuxNetworkBuilder::default()
                            .priorities(vec![LinuxInterfacePriorityBuilder::default()
                                .name("no-such-if0")
                                .priority(1u32)
                                .build()
                                .unwrap()])
                            .build()
                            .unwrap(),
                    )
                }))
                .unwrap_err();
            assert!(
                err.to_string().starts_with("write no-such-if0 1 to ")
                    && err.to_string().contains("net_prio.ifpriomap"),
                "{err}"
            );
            cg.destroy().unwrap();
            assert_eq!(g.dirs_left(), Vec::<PathBuf>::new());
        });
        if ran.is_none() {
            eprintln!("skipped the net_cls part: cannot mount net_cls,net_prio");
        }
    }

    #[test]
    fn v1_refuses_unified_and_lacking_controllers_early() {
        let Some(h) = host() else { return };
        let g = Guard::new(&h);
        let unified = res(|b| {
            b.unified(HashMap::from([(
                "memory.high".to_string(),
                "1G".to_string(),
            )]))
        });
        let err = h
            .create(Some(&g.path("ctr")), "x", Some(&unified))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "linux.resources.unified: needs cgroup v2; this host uses v1"
        );
        assert_eq!(g.dirs_left(), Vec::<PathBuf>::new());
        // An empty map asks for nothing.
        let mut g = Guard::new(&h);
        let empty = res(|b| b.unified(HashMap::new()));
        g.cgroup = Some(h.create(Some(&g.path("ctr")), "x", Some(&empty)).unwrap());

        let has = |c: &str| {
            h.mounts()
                .iter()
                .any(|(cs, _)| cs.split(',').any(|x| x == c))
        };
        for (controller, r) in [
            (
                "hugetlb",
                res(|b| {
                    b.hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                        .page_size("2MB")
                        .limit(2 * M)
                        .build()
                        .unwrap()])
                }),
            ),
            (
                "rdma",
                res(|b| {
                    b.rdma(HashMap::from([(
                        "mlx5_0".to_string(),
                        LinuxRdmaBuilder::default()
                            .hca_handles(2u32)
                            .build()
                            .unwrap(),
                    )]))
                }),
            ),
        ] {
            if has(controller) {
                continue;
            }
            let g = Guard::new(&h);
            let err = h.create(Some(&g.path("ctr")), "x", Some(&r)).unwrap_err();
            assert!(
                matches!(&err, CgroupError::MissingController { controller: c, .. } if *c == controller),
                "{err}"
            );
            assert_eq!(g.dirs_left(), Vec::<PathBuf>::new());
        }
    }

    /// The files of controllers and kernels this host lacks, faked in a
    /// temporary directory: rdma, v1 hugetlb, CFQ's blkio weights, and a
    /// cpu controller without real-time group scheduling.
    #[test]
    fn v1_fake_dirs_for_what_the_host_lacks() {
        let top = tempfile::tempdir().unwrap();
        let dir = |name: &str, files: &[&str]| {
            let d = top.path().join(name);
            std::fs::create_dir(&d).unwrap();
            for f in files {
                std::fs::write(d.join(f), "").unwrap();
            }
            super::Dir {
                controllers: vec![name.to_string()],
                mount: top.path().to_path_buf(),
                path: d,
                created: Vec::new(),
            }
        };
        let dirs = vec![
            dir("rdma", &["rdma.max"]),
            dir(
                "hugetlb",
                &[
                    "hugetlb.2MB.limit_in_bytes",
                    "hugetlb.2MB.rsvd.limit_in_bytes",
                    "hugetlb.1GB.limit_in_bytes",
                    "hugetlb.1GB.rsvd.limit_in_bytes",
                ],
            ),
            dir(
                "blkio",
                &[
                    "blkio.weight",
                    "blkio.weight_device",
                    "blkio.leaf_weight",
                    "blkio.leaf_weight_device",
                ],
            ),
            dir("cpu", &["cpu.shares"]),
        ];
        let f = |c: &str, file: &str| read(&top.path().join(c), file);
        let r = res(|b| {
            b.rdma(HashMap::from([
                (
                    "mlx5_1".to_string(),
                    LinuxRdmaBuilder::default()
                        .hca_objects(300u32)
                        .build()
                        .unwrap(),
                ),
                (
                    "mlx5_0".to_string(),
                    LinuxRdmaBuilder::default()
                        .hca_handles(2u32)
                        .hca_objects(100u32)
                        .build()
                        .unwrap(),
                ),
                (
                    "unset".to_string(),
                    LinuxRdmaBuilder::default().build().unwrap(),
                ),
            ]))
            .hugepage_limits(vec![
                LinuxHugepageLimitBuilder::default()
                    .page_size("2MB")
                    .limit(4 * M)
                    .build()
                    .unwrap(),
                LinuxHugepageLimitBuilder::default()
                    .page_size("1GB")
                    .limit(-1)
                    .build()
                    .unwrap(),
            ])
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .leaf_weight(400u16)
                    .weight_device(vec![LinuxWeightDeviceBuilder::default()
                        .major(8)
                        .minor(0)
                        .weight(600u16)
                        .leaf_weight(300u16)
                        .build()
                        .unwrap()])
                    .build()
                    .unwrap(),
            )
        });
        super::apply(&dirs, &r).unwrap();
        // The fake keeps the last write: mlx5_1 comes after mlx5_0.
        assert_eq!(f("rdma", "rdma.max"), "mlx5_1 hca_object=300");
        assert_eq!(
            f("hugetlb", "hugetlb.2MB.limit_in_bytes"),
            (4 * M).to_string()
        );
        assert_eq!(
            f("hugetlb", "hugetlb.2MB.rsvd.limit_in_bytes"),
            (4 * M).to_string()
        );
        assert_eq!(f("hugetlb", "hugetlb.1GB.limit_in_bytes"), "-1");
        assert_eq!(f("blkio", "blkio.weight"), "500");
        assert_eq!(f("blkio", "blkio.leaf_weight"), "400");
        assert_eq!(f("blkio", "blkio.weight_device"), "8:0 600");
        assert_eq!(f("blkio", "blkio.leaf_weight_device"), "8:0 300");
        assert_eq!(
            super::super::rdma_lines(&r),
            [
                "mlx5_0 hca_handle=2 hca_object=100",
                "mlx5_1 hca_object=300"
            ]
        );

        let err = super::apply(
            &dirs,
            &res(|b| {
                b.hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                    .page_size("../2MB")
                    .limit(1)
                    .build()
                    .unwrap()])
            }),
        )
        .unwrap_err();
        assert!(matches!(err, CgroupError::InvalidResource { .. }), "{err}");
        let err = super::apply(
            &dirs,
            &res(|b| {
                b.hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                    .page_size("16GB")
                    .limit(1)
                    .build()
                    .unwrap()])
            }),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("no 16GB huge pages on this host"),
            "{err}"
        );
        let err = super::apply(
            &dirs,
            &res(|b| {
                b.cpu(
                    LinuxCpuBuilder::default()
                        .realtime_runtime(1000i64)
                        .build()
                        .unwrap(),
                )
            }),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("linux.resources.cpu.realtimeRuntime: ")
                && err.to_string().contains("cpu.rt_runtime_us does not exist")
                && err.to_string().contains("CONFIG_RT_GROUP_SCHED"),
            "{err}"
        );
        // Neither CFQ's nor BFQ's weight file.
        std::fs::remove_file(top.path().join("blkio/blkio.weight")).unwrap();
        let err = super::apply(
            &dirs,
            &res(|b| {
                b.block_io(
                    LinuxBlockIoBuilder::default()
                        .weight(500u16)
                        .build()
                        .unwrap(),
                )
            }),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "linux.resources.blockIO.weight: neither blkio.weight nor blkio.bfq.weight"
            ),
            "{err}"
        );
    }
}
