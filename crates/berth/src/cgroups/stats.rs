//! Resource usage read from a cgroup: what `events` prints as the `data` of
//! a `stats` event, in the document shape runc uses (runc's `types.Stats`),
//! from the v1 controllers' files (cpuacct, cpu, cpuset, memory, pids,
//! blkio, hugetlb) or the v2 files (cpu.stat, memory.*, pids.*, io.stat,
//! hugetlb.*).
//!
//! v2 numbers are mapped onto the v1 meanings, as runc maps them: time in
//! nanoseconds, `swap` as memory plus swap, io.stat as the v1 "service
//! bytes" and "serviced" tables. A file this host lacks leaves its numbers
//! at zero (JSON fields that runc omits when zero are omitted).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{fs, v1, Cgroup, CgroupError, Layout, Result};

/// `cpuacct.stat` counts in USER_HZ, which Linux fixes at 100 for every
/// interface it exports to user space.
const USER_HZ: u64 = 100;
const NANOS_PER_SEC: u64 = 1_000_000_000;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One cgroup's statistics.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Stats {
    /// CPU time and CFS throttling.
    pub cpu: CpuStats,
    /// The cpuset in force.
    pub cpuset: CpuSetStats,
    /// Memory use and limits.
    pub memory: MemoryStats,
    /// Task count and limit.
    pub pids: PidsStats,
    /// Block I/O counters.
    pub blkio: BlkioStats,
    /// Huge page use, by page size (`2MB`, `1GB`).
    pub hugetlb: BTreeMap<String, HugetlbStats>,
    /// Intel RDT counters: always empty, Berth has no RDT support.
    pub intel_rdt: IntelRdt,
    /// Network interface counters: always absent (`null`), as for a
    /// container in its own network namespace runc also reports none.
    pub network_interfaces: Option<Vec<serde_json::Value>>,
}

/// CPU time and throttling.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CpuStats {
    /// CPU time used.
    pub usage: CpuUsage,
    /// CFS bandwidth throttling.
    pub throttling: Throttling,
}

/// CPU time used, in nanoseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CpuUsage {
    /// All CPU time.
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    /// Per CPU (v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    /// Per CPU, in kernel mode (v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    /// Per CPU, in user mode (v1 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    /// In kernel mode.
    pub kernel: u64,
    /// In user mode.
    pub user: u64,
}

/// CFS bandwidth throttling.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Throttling {
    /// Enforcement periods that have elapsed.
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    /// Periods in which the group was throttled.
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Time throttled, in nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// The cpuset in force and its flags (v1 files; on v2 only the effective
/// CPUs and memory nodes).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
#[allow(missing_docs)]
pub struct CpuSetStats {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    pub cpu_exclusive: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    pub mem_hardwall: u64,
    pub mem_exclusive: u64,
    pub memory_migrate: u64,
    pub memory_spread_page: u64,
    pub memory_spread_slab: u64,
    pub memory_pressure: u64,
    pub sched_load_balance: u64,
    pub sched_relax_domain_level: i64,
}

/// Memory use.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MemoryStats {
    /// Page cache (v1 `cache`, v2 `file` of memory.stat).
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    /// Memory.
    pub usage: MemoryEntry,
    /// Memory plus swap.
    pub swap: MemoryEntry,
    /// Kernel memory (v1 only).
    pub kernel: MemoryEntry,
    /// Kernel TCP buffers (v1 only).
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat as it is.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// One memory counter, in bytes; an unlimited limit is the kernel's
/// largest value.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MemoryEntry {
    /// The limit.
    pub limit: u64,
    /// Current use.
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Highest use seen.
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    /// How often the limit was hit.
    pub failcnt: u64,
}

/// Tasks.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PidsStats {
    /// Tasks in the cgroup.
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    /// The limit; 0 for none.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// Block I/O counters, per device and operation, named after the v1 files.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct BlkioStats {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioQueueRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_queued_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
}

/// One block I/O counter.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct BlkioEntry {
    /// Device major number.
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    /// Device minor number.
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    /// `Read`, `Write`, `Sync`, `Async`, `Discard`, `Total`, or empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    /// The count.
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

/// Huge pages of one size.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HugetlbStats {
    /// Bytes in use.
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Highest use seen (v1 only).
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    /// Allocations refused by the limit.
    pub failcnt: u64,
}

/// Intel RDT statistics; Berth collects none.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct IntelRdt {}

impl Cgroup {
    /// Reads the cgroup's statistics. Files this host or kernel lacks are
    /// skipped; a file that exists but cannot be read or parsed is an
    /// error naming it.
    pub fn stats(&self) -> Result<Stats> {
        let mut s = Stats::default();
        match &self.layout {
            Layout::V1 { dirs } => {
                if let Some(d) = v1::dir_of(dirs, "cpuacct") {
                    cpuacct_v1(d, &mut s.cpu.usage)?;
                }
                if let Some(d) = v1::dir_of(dirs, "cpu") {
                    if let Some(text) = read_opt(d, "cpu.stat")? {
                        let kv = flat(&text);
                        s.cpu.throttling = Throttling {
                            periods: get(&kv, "nr_periods"),
                            throttled_periods: get(&kv, "nr_throttled"),
                            throttled_time: get(&kv, "throttled_time"),
                        };
                    }
                }
                if let Some(d) = v1::dir_of(dirs, "cpuset") {
                    s.cpuset = cpuset_v1(d)?;
                }
                if let Some(d) = v1::dir_of(dirs, "memory") {
                    s.memory = memory_v1(d)?;
                }
                if let Some(d) = v1::dir_of(dirs, "pids") {
                    s.pids = pids(d)?;
                }
                if s.pids.current == 0 {
                    s.pids.current = self.pids()?.len() as u64;
                }
                if let Some(d) = v1::dir_of(dirs, "blkio") {
                    s.blkio = blkio_v1(d)?;
                }
                if let Some(d) = v1::dir_of(dirs, "hugetlb") {
                    s.hugetlb = hugetlb(d, false)?;
                }
            }
            Layout::V2(d) => {
                let dir = d.path.as_path();
                cpu_v2(dir, &mut s.cpu)?;
                s.cpuset.cpus = match read_opt(dir, "cpuset.cpus.effective")? {
                    Some(list) => id_list(dir, "cpuset.cpus.effective", &list)?,
                    None => Vec::new(),
                };
                s.cpuset.mems = match read_opt(dir, "cpuset.mems.effective")? {
                    Some(list) => id_list(dir, "cpuset.mems.effective", &list)?,
                    None => Vec::new(),
                };
                s.memory = memory_v2(dir)?;
                s.pids = pids(dir)?;
                if s.pids.current == 0 {
                    // Without the pids controller, count the processes.
                    s.pids.current = self.pids()?.len() as u64;
                }
                s.blkio = io_v2(dir)?;
                s.hugetlb = hugetlb(dir, true)?;
            }
        }
        Ok(s)
    }
}

/// `dir/file`, or None when the file does not exist.
fn read_opt(dir: &Path, file: &str) -> Result<Option<String>> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read { path, source }),
    }
}

/// A file holding one number; `max` (v2's "no limit") is the largest
/// number, as the v1 files spell no limit.
fn u64_opt(dir: &Path, file: &str) -> Result<Option<u64>> {
    let Some(text) = read_opt(dir, file)? else {
        return Ok(None);
    };
    let text = text.trim();
    if text == "max" {
        return Ok(Some(u64::MAX));
    }
    text.parse().map(Some).map_err(|_| CgroupError::Parse {
        path: dir.join(file),
        content: text.to_string(),
    })
}

fn u64_or_zero(dir: &Path, file: &str) -> Result<u64> {
    Ok(u64_opt(dir, file)?.unwrap_or(0))
}

/// A flat keyed file (`key value` per line). Lines whose value is not a
/// number are skipped: a newer kernel may add such keys.
fn flat(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (k, v) = (f.next()?, f.next()?);
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn get(kv: &BTreeMap<String, u64>, key: &str) -> u64 {
    kv.get(key).copied().unwrap_or(0)
}

/// Whitespace-separated numbers.
fn numbers(dir: &Path, file: &str, text: &str) -> Result<Vec<u64>> {
    text.split_whitespace()
        .map(|n| {
            n.parse().map_err(|_| CgroupError::Parse {
                path: dir.join(file),
                content: text.trim().to_string(),
            })
        })
        .collect()
}

fn cpuacct_v1(dir: &Path, usage: &mut CpuUsage) -> Result<()> {
    usage.total = u64_or_zero(dir, "cpuacct.usage")?;
    if let Some(text) = read_opt(dir, "cpuacct.usage_percpu")? {
        usage.percpu = numbers(dir, "cpuacct.usage_percpu", &text)?;
    }
    // `cpu user system` then one line per CPU, in nanoseconds.
    if let Some(text) = read_opt(dir, "cpuacct.usage_all")? {
        for line in text.lines().skip(1) {
            let n = numbers(dir, "cpuacct.usage_all", line)?;
            if let [_, user, system] = n[..] {
                usage.percpu_user.push(user);
                usage.percpu_kernel.push(system);
            }
        }
    }
    if let Some(text) = read_opt(dir, "cpuacct.stat")? {
        let kv = flat(&text);
        let ns = |ticks: u64| ticks.saturating_mul(NANOS_PER_SEC) / USER_HZ;
        usage.user = ns(get(&kv, "user"));
        usage.kernel = ns(get(&kv, "system"));
    }
    Ok(())
}

fn cpu_v2(dir: &Path, cpu: &mut CpuStats) -> Result<()> {
    let Some(text) = read_opt(dir, "cpu.stat")? else {
        return Ok(());
    };
    let kv = flat(&text);
    let us = |key| get(&kv, key).saturating_mul(1000);
    cpu.usage.total = us("usage_usec");
    cpu.usage.user = us("user_usec");
    cpu.usage.kernel = us("system_usec");
    cpu.throttling = Throttling {
        periods: get(&kv, "nr_periods"),
        throttled_periods: get(&kv, "nr_throttled"),
        throttled_time: us("throttled_usec"),
    };
    Ok(())
}

/// A cpuset list (`0-3,8,10-11`) as the ids it names.
fn id_list(dir: &Path, file: &str, text: &str) -> Result<Vec<u16>> {
    let bad = || CgroupError::Parse {
        path: dir.join(file),
        content: text.trim().to_string(),
    };
    let mut ids = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let lo: u16 = lo.parse().map_err(|_| bad())?;
        let hi: u16 = hi.parse().map_err(|_| bad())?;
        if lo > hi {
            return Err(bad());
        }
        ids.extend(lo..=hi);
    }
    Ok(ids)
}

fn cpuset_v1(dir: &Path) -> Result<CpuSetStats> {
    let list = |file| -> Result<Vec<u16>> {
        match read_opt(dir, file)? {
            Some(text) => id_list(dir, file, &text),
            None => Ok(Vec::new()),
        }
    };
    let n = |file| u64_or_zero(dir, file);
    let relax = match read_opt(dir, "cpuset.sched_relax_domain_level")? {
        Some(text) => text.trim().parse().map_err(|_| CgroupError::Parse {
            path: dir.join("cpuset.sched_relax_domain_level"),
            content: text.trim().to_string(),
        })?,
        None => 0,
    };
    Ok(CpuSetStats {
        cpus: list("cpuset.cpus")?,
        cpu_exclusive: n("cpuset.cpu_exclusive")?,
        mems: list("cpuset.mems")?,
        mem_hardwall: n("cpuset.mem_hardwall")?,
        mem_exclusive: n("cpuset.mem_exclusive")?,
        memory_migrate: n("cpuset.memory_migrate")?,
        memory_spread_page: n("cpuset.memory_spread_page")?,
        memory_spread_slab: n("cpuset.memory_spread_slab")?,
        memory_pressure: n("cpuset.memory_pressure")?,
        sched_load_balance: n("cpuset.sched_load_balance")?,
        sched_relax_domain_level: relax,
    })
}

/// One v1 memory counter group (`memory`, `memory.memsw`, `memory.kmem`,
/// `memory.kmem.tcp`); all zero when the kernel lacks it.
fn memory_entry_v1(dir: &Path, prefix: &str) -> Result<MemoryEntry> {
    let file = |name: &str| format!("{prefix}.{name}");
    let Some(usage) = u64_opt(dir, &file("usage_in_bytes"))? else {
        return Ok(MemoryEntry::default());
    };
    Ok(MemoryEntry {
        limit: u64_or_zero(dir, &file("limit_in_bytes"))?,
        usage,
        max: u64_or_zero(dir, &file("max_usage_in_bytes"))?,
        failcnt: u64_or_zero(dir, &file("failcnt"))?,
    })
}

fn memory_v1(dir: &Path) -> Result<MemoryStats> {
    let raw = read_opt(dir, "memory.stat")?
        .map(|t| flat(&t))
        .unwrap_or_default();
    Ok(MemoryStats {
        cache: get(&raw, "cache"),
        usage: memory_entry_v1(dir, "memory")?,
        swap: memory_entry_v1(dir, "memory.memsw")?,
        kernel: memory_entry_v1(dir, "memory.kmem")?,
        kernel_tcp: memory_entry_v1(dir, "memory.kmem.tcp")?,
        raw,
    })
}

fn memory_v2(dir: &Path) -> Result<MemoryStats> {
    // No memory.current: the memory controller is not enabled here.
    let Some(current) = u64_opt(dir, "memory.current")? else {
        return Ok(MemoryStats::default());
    };
    let raw = read_opt(dir, "memory.stat")?
        .map(|t| flat(&t))
        .unwrap_or_default();
    let events = read_opt(dir, "memory.events")?
        .map(|t| flat(&t))
        .unwrap_or_default();
    let usage = MemoryEntry {
        limit: u64_or_zero(dir, "memory.max")?,
        usage: current,
        max: u64_or_zero(dir, "memory.peak")?,
        failcnt: get(&events, "max"),
    };
    // v1's swap counters include memory; v2's do not.
    let swap_usage = u64_or_zero(dir, "memory.swap.current")?;
    let swap_limit = u64_or_zero(dir, "memory.swap.max")?;
    let swap = MemoryEntry {
        limit: if swap_limit == u64::MAX || usage.limit == u64::MAX {
            u64::MAX
        } else {
            swap_limit.saturating_add(usage.limit)
        },
        usage: swap_usage.saturating_add(current),
        max: 0,
        failcnt: 0,
    };
    Ok(MemoryStats {
        cache: get(&raw, "file"),
        usage,
        swap,
        kernel: MemoryEntry::default(),
        kernel_tcp: MemoryEntry::default(),
        raw,
    })
}

fn pids(dir: &Path) -> Result<PidsStats> {
    Ok(PidsStats {
        current: u64_or_zero(dir, "pids.current")?,
        // No limit is 0 here, not the largest number.
        limit: u64_opt(dir, "pids.max")?
            .filter(|&l| l != u64::MAX)
            .unwrap_or(0),
    })
}

/// A v1 blkio table: `MAJ:MIN Op value` (or `MAJ:MIN value`) lines and a
/// final `Total value` line, which is left out.
fn blkio_table(dir: &Path, file: &str) -> Result<Vec<BlkioEntry>> {
    let Some(text) = read_opt(dir, file)? else {
        return Ok(Vec::new());
    };
    let bad = |line: &str| CgroupError::Parse {
        path: dir.join(file),
        content: line.to_string(),
    };
    let mut entries = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (dev, op, value) = match fields[..] {
            [dev, op, value] => (dev, op, value),
            [dev, value] if dev != "Total" => (dev, "", value),
            _ => continue,
        };
        let (major, minor) = dev.split_once(':').ok_or_else(|| bad(line))?;
        entries.push(BlkioEntry {
            major: major.parse().map_err(|_| bad(line))?,
            minor: minor.parse().map_err(|_| bad(line))?,
            op: op.to_string(),
            value: value.parse().map_err(|_| bad(line))?,
        });
    }
    Ok(entries)
}

/// CFQ's full set of tables when it has counted anything, else BFQ's, else
/// the throttling layer's, which counts every I/O.
fn blkio_v1(dir: &Path) -> Result<BlkioStats> {
    let t = |file| blkio_table(dir, file);
    if !t("blkio.io_serviced_recursive")?.is_empty() {
        return Ok(BlkioStats {
            io_service_bytes_recursive: t("blkio.io_service_bytes_recursive")?,
            io_serviced_recursive: t("blkio.io_serviced_recursive")?,
            io_queued_recursive: t("blkio.io_queued_recursive")?,
            io_service_time_recursive: t("blkio.io_service_time_recursive")?,
            io_wait_time_recursive: t("blkio.io_wait_time_recursive")?,
            io_merged_recursive: t("blkio.io_merged_recursive")?,
            io_time_recursive: t("blkio.time_recursive")?,
            sectors_recursive: t("blkio.sectors_recursive")?,
        });
    }
    if !t("blkio.bfq.io_serviced_recursive")?.is_empty() {
        return Ok(BlkioStats {
            io_service_bytes_recursive: t("blkio.bfq.io_service_bytes_recursive")?,
            io_serviced_recursive: t("blkio.bfq.io_serviced_recursive")?,
            ..Default::default()
        });
    }
    // Older kernels have only the non-recursive throttle files.
    let either = |recursive, plain| -> Result<Vec<BlkioEntry>> {
        if fs::exists(dir, recursive) {
            t(recursive)
        } else {
            t(plain)
        }
    };
    Ok(BlkioStats {
        io_service_bytes_recursive: either(
            "blkio.throttle.io_service_bytes_recursive",
            "blkio.throttle.io_service_bytes",
        )?,
        io_serviced_recursive: either(
            "blkio.throttle.io_serviced_recursive",
            "blkio.throttle.io_serviced",
        )?,
        ..Default::default()
    })
}

/// io.stat (`MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N`) as
/// the v1 "service bytes" and "serviced" tables.
fn io_v2(dir: &Path) -> Result<BlkioStats> {
    let mut s = BlkioStats::default();
    let Some(text) = read_opt(dir, "io.stat")? else {
        return Ok(s);
    };
    let bad = |line: &str| CgroupError::Parse {
        path: dir.join("io.stat"),
        content: line.to_string(),
    };
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(dev) = fields.next() else { continue };
        let (major, minor) = dev.split_once(':').ok_or_else(|| bad(line))?;
        let (major, minor) = (
            major.parse().map_err(|_| bad(line))?,
            minor.parse().map_err(|_| bad(line))?,
        );
        for item in fields {
            let Some((key, value)) = item.split_once('=') else {
                continue;
            };
            let (table, op) = match key {
                "rbytes" => (&mut s.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut s.io_service_bytes_recursive, "Write"),
                "rios" => (&mut s.io_serviced_recursive, "Read"),
                "wios" => (&mut s.io_serviced_recursive, "Write"),
                // Discards and the io.cost keys have no v1 table.
                _ => continue,
            };
            table.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value: value.parse().map_err(|_| bad(line))?,
            });
        }
    }
    Ok(s)
}

/// Every huge page size the directory has counters for: v1
/// `hugetlb.<size>.usage_in_bytes`, v2 `hugetlb.<size>.current` (the
/// `.rsvd.` reservation counters are not usage).
fn hugetlb(dir: &Path, v2: bool) -> Result<BTreeMap<String, HugetlbStats>> {
    let suffix = if v2 { ".current" } else { ".usage_in_bytes" };
    let entries = std::fs::read_dir(dir).map_err(|source| CgroupError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut sizes: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let size = name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
            (!size.is_empty() && !size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    let mut out = BTreeMap::new();
    for size in sizes {
        let file = |name: &str| format!("hugetlb.{size}.{name}");
        let stats = if v2 {
            let events = read_opt(dir, &file("events"))?
                .map(|t| flat(&t))
                .unwrap_or_default();
            HugetlbStats {
                usage: u64_or_zero(dir, &file("current"))?,
                max: 0,
                failcnt: get(&events, "max"),
            }
        } else {
            HugetlbStats {
                usage: u64_or_zero(dir, &file("usage_in_bytes"))?,
                max: u64_or_zero(dir, &file("max_usage_in_bytes"))?,
                failcnt: u64_or_zero(dir, &file("failcnt"))?,
            }
        };
        out.insert(size, stats);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::Hierarchy;
    use super::*;
    use serde_json::json;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, content) in files {
            std::fs::write(dir.join(name), content).unwrap();
        }
    }

    /// Sample contents as a 6.x kernel writes them for a small container.
    const V2_FILES: &[(&str, &str)] = &[
        ("cgroup.procs", "41\n42\n"),
        (
            "cpu.stat",
            "usage_usec 52133\nuser_usec 31000\nsystem_usec 21133\ncore_sched.force_idle_usec 0\n\
             nr_periods 12\nnr_throttled 3\nthrottled_usec 4500\nnr_bursts 0\nburst_usec 0\n",
        ),
        ("cpuset.cpus.effective", "0-2,5\n"),
        ("cpuset.mems.effective", "0\n"),
        ("memory.current", "1236992\n"),
        ("memory.max", "67108864\n"),
        ("memory.peak", "2101248\n"),
        ("memory.swap.current", "4096\n"),
        ("memory.swap.max", "max\n"),
        (
            "memory.events",
            "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n",
        ),
        (
            "memory.stat",
            "anon 389120\nfile 667648\nkernel 172032\nkernel_stack 32768\npgfault 1290\n\
             workingset_refault_anon 0\n",
        ),
        ("pids.current", "2\n"),
        ("pids.max", "max\n"),
        (
            "io.stat",
            "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n\
             254:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
        ),
        ("hugetlb.2MB.current", "4194304\n"),
        ("hugetlb.2MB.max", "max\n"),
        ("hugetlb.2MB.events", "max 2\n"),
        ("hugetlb.2MB.rsvd.current", "0\n"),
        ("hugetlb.1GB.current", "0\n"),
        ("hugetlb.1GB.events", "max 0\n"),
    ];

    fn fake_v2(tmp: &Path) -> (Cgroup, std::path::PathBuf) {
        let cg = super::super::freezer::tests::fake_v2(tmp);
        (cg, tmp.join("ctr"))
    }

    #[test]
    fn v2_files_map_onto_runc_stats() {
        let tmp = tempfile::tempdir().unwrap();
        let (cg, dir) = fake_v2(tmp.path());
        write(&dir, V2_FILES);
        let s = cg.stats().unwrap();
        assert_eq!(
            s.cpu,
            CpuStats {
                usage: CpuUsage {
                    total: 52_133_000,
                    user: 31_000_000,
                    kernel: 21_133_000,
                    ..Default::default()
                },
                throttling: Throttling {
                    periods: 12,
                    throttled_periods: 3,
                    throttled_time: 4_500_000,
                },
            }
        );
        assert_eq!(s.cpuset.cpus, [0, 1, 2, 5]);
        assert_eq!(s.cpuset.mems, [0]);
        assert_eq!(
            s.memory.usage,
            MemoryEntry {
                limit: 67108864,
                usage: 1236992,
                max: 2101248,
                failcnt: 7
            }
        );
        // Memory plus swap, unlimited.
        assert_eq!(
            s.memory.swap,
            MemoryEntry {
                limit: u64::MAX,
                usage: 1236992 + 4096,
                max: 0,
                failcnt: 0
            }
        );
        assert_eq!(s.memory.cache, 667648);
        assert_eq!(s.memory.raw["pgfault"], 1290);
        assert_eq!(s.memory.raw.len(), 6);
        assert_eq!(
            s.pids,
            PidsStats {
                current: 2,
                limit: 0
            }
        );
        let e = |major, minor, op: &str, value| BlkioEntry {
            major,
            minor,
            op: op.to_string(),
            value,
        };
        assert_eq!(
            s.blkio.io_service_bytes_recursive,
            [
                e(8, 16, "Read", 1459200),
                e(8, 16, "Write", 314773504),
                e(254, 0, "Read", 4096),
                e(254, 0, "Write", 0)
            ]
        );
        assert_eq!(
            s.blkio.io_serviced_recursive,
            [
                e(8, 16, "Read", 192),
                e(8, 16, "Write", 353),
                e(254, 0, "Read", 1),
                e(254, 0, "Write", 0)
            ]
        );
        assert_eq!(s.hugetlb.keys().collect::<Vec<_>>(), ["1GB", "2MB"]);
        assert_eq!(
            s.hugetlb["2MB"],
            HugetlbStats {
                usage: 4194304,
                max: 0,
                failcnt: 2
            }
        );

        // The JSON as `events` prints it: zeros runc omits are omitted.
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(
            v["cpu"],
            json!({"usage": {"total": 52133000, "kernel": 21133000, "user": 31000000},
                   "throttling": {"periods": 12, "throttledPeriods": 3, "throttledTime": 4500000}})
        );
        assert_eq!(v["memory"]["kernelTCP"], json!({"limit": 0, "failcnt": 0}));
        assert_eq!(v["pids"], json!({"current": 2}));
        assert_eq!(v["hugetlb"]["1GB"], json!({"failcnt": 0}));
        assert_eq!(
            v["blkio"]["ioServicedRecursive"][3],
            json!({"major": 254, "op": "Write"})
        );
        assert_eq!(v["intel_rdt"], json!({}));
        assert_eq!(v["network_interfaces"], json!(null));
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys.len(),
            8,
            "cpu cpuset memory pids blkio hugetlb intel_rdt network_interfaces: {keys:?}"
        );
        assert_eq!(serde_json::from_value::<Stats>(v).unwrap(), s);
    }

    #[test]
    fn v2_missing_files_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let (cg, dir) = fake_v2(tmp.path());
        // No memory, pids or io controller: only the core files.
        write(
            &dir,
            &[
                ("cgroup.procs", "7\n8\n9\n"),
                ("cpu.stat", "usage_usec 10\nuser_usec 4\nsystem_usec 6\n"),
            ],
        );
        let s = cg.stats().unwrap();
        assert_eq!(s.cpu.usage.total, 10_000);
        assert_eq!(s.memory, MemoryStats::default());
        // Counted from cgroup.procs without pids.current.
        assert_eq!(
            s.pids,
            PidsStats {
                current: 3,
                limit: 0
            }
        );
        assert_eq!(s.blkio, BlkioStats::default());
        assert!(s.hugetlb.is_empty());
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["memory"]["usage"], json!({"limit": 0, "failcnt": 0}));
        assert_eq!(v["blkio"], json!({}));
        assert_eq!(v["hugetlb"], json!({}));

        // Without swap accounting, memory+swap is memory alone.
        write(
            &dir,
            &[
                ("memory.current", "100\n"),
                ("memory.max", "max\n"),
                ("pids.current", "1\n"),
                ("pids.max", "10\n"),
            ],
        );
        let s = cg.stats().unwrap();
        assert_eq!(s.memory.usage.limit, u64::MAX);
        assert_eq!(s.memory.swap.usage, 100);
        assert_eq!(s.memory.swap.limit, u64::MAX);
        assert_eq!(
            s.pids,
            PidsStats {
                current: 1,
                limit: 10
            }
        );
    }

    #[test]
    fn malformed_files_are_errors_that_name_them() {
        let tmp = tempfile::tempdir().unwrap();
        let (cg, dir) = fake_v2(tmp.path());
        write(&dir, &[("cgroup.procs", ""), ("memory.current", "lots\n")]);
        let e = cg.stats().unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "parse {}: unexpected content \"lots\"",
                dir.join("memory.current").display()
            )
        );
        write(
            &dir,
            &[("memory.current", "1\n"), ("io.stat", "8-0 rbytes=1\n")],
        );
        let e = cg.stats().unwrap_err().to_string();
        assert!(
            e.contains("io.stat: unexpected content \"8-0 rbytes=1\""),
            "{e}"
        );
        write(&dir, &[("io.stat", ""), ("cpuset.cpus.effective", "3-1\n")]);
        let e = cg.stats().unwrap_err().to_string();
        assert!(e.contains("cpuset.cpus.effective"), "{e}");
    }

    #[test]
    fn v1_files_map_onto_runc_stats() {
        let tmp = tempfile::tempdir().unwrap();
        let ctrls = [
            "cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "hugetlb",
        ];
        for c in ctrls {
            std::fs::create_dir(tmp.path().join(c)).unwrap();
            // A parent's cpuset, which create copies down.
            if c == "cpuset" {
                let ctr = tmp.path().join(c).join("ctr");
                std::fs::create_dir(&ctr).unwrap();
                write(&ctr, &[("cpuset.cpus", ""), ("cpuset.mems", "")]);
                write(
                    &tmp.path().join(c),
                    &[("cpuset.cpus", "0-1\n"), ("cpuset.mems", "0\n")],
                );
            }
        }
        let cg = Hierarchy::v1_from(
            ctrls
                .iter()
                .map(|c| (c.to_string(), tmp.path().join(c)))
                .collect(),
        )
        .create(Some(Path::new("/ctr")), "x", None)
        .unwrap();
        let d = |c: &str| tmp.path().join(c).join("ctr");
        write(
            &d("cpuacct"),
            &[
                ("cpuacct.usage", "12221911\n"),
                ("cpuacct.usage_percpu", "1779122 10442789 \n"),
                (
                    "cpuacct.usage_all",
                    "cpu user system\n0 0 4000000\n1 8000000 4000000\n",
                ),
                ("cpuacct.stat", "user 3\nsystem 1\n"),
            ],
        );
        write(
            &d("cpu"),
            &[(
                "cpu.stat",
                "nr_periods 5\nnr_throttled 1\nthrottled_time 777\nnr_bursts 0\n",
            )],
        );
        write(
            &d("cpuset"),
            &[
                ("cpuset.cpu_exclusive", "0\n"),
                ("cpuset.sched_load_balance", "1\n"),
                ("cpuset.sched_relax_domain_level", "-1\n"),
            ],
        );
        write(
            &d("memory"),
            &[
                ("memory.usage_in_bytes", "765952\n"),
                ("memory.max_usage_in_bytes", "2514944\n"),
                ("memory.limit_in_bytes", "67108864\n"),
                ("memory.failcnt", "0\n"),
                ("memory.memsw.usage_in_bytes", "765952\n"),
                ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
                ("memory.memsw.max_usage_in_bytes", "2514944\n"),
                ("memory.memsw.failcnt", "0\n"),
                (
                    "memory.stat",
                    "cache 8192\nrss 49152\nhierarchical_memory_limit 67108864\n",
                ),
            ],
        );
        write(
            &d("pids"),
            &[("pids.current", "1\n"), ("pids.max", "max\n")],
        );
        write(
            &d("blkio"),
            &[
                ("blkio.io_serviced_recursive", "Total 0\n"),
                (
                    "blkio.throttle.io_service_bytes_recursive",
                    "8:0 Read 4096\n8:0 Write 0\n8:0 Total 4096\nTotal 4096\n",
                ),
                (
                    "blkio.throttle.io_serviced_recursive",
                    "8:0 Read 1\nTotal 1\n",
                ),
            ],
        );
        write(
            &d("hugetlb"),
            &[
                ("hugetlb.2MB.usage_in_bytes", "2097152\n"),
                ("hugetlb.2MB.max_usage_in_bytes", "4194304\n"),
                ("hugetlb.2MB.failcnt", "1\n"),
            ],
        );
        let s = cg.stats().unwrap();
        assert_eq!(
            s.cpu.usage,
            CpuUsage {
                total: 12221911,
                percpu: vec![1779122, 10442789],
                percpu_kernel: vec![4000000, 4000000],
                percpu_user: vec![0, 8000000],
                kernel: 10_000_000,
                user: 30_000_000,
            }
        );
        assert_eq!(s.cpu.throttling.throttled_time, 777);
        assert_eq!(s.cpuset.cpus, [0, 1]);
        assert_eq!(s.cpuset.mems, [0]);
        assert_eq!(s.cpuset.sched_load_balance, 1);
        assert_eq!(s.cpuset.sched_relax_domain_level, -1);
        assert_eq!(s.memory.usage.limit, 67108864);
        assert_eq!(s.memory.usage.max, 2514944);
        assert_eq!(s.memory.swap.limit, 9223372036854771712);
        // No kmem files: zero.
        assert_eq!(s.memory.kernel, MemoryEntry::default());
        assert_eq!(s.memory.cache, 8192);
        assert_eq!(s.memory.raw.len(), 3);
        assert_eq!(
            s.pids,
            PidsStats {
                current: 1,
                limit: 0
            }
        );
        // CFQ counted nothing, no BFQ: the throttle tables.
        assert_eq!(s.blkio.io_service_bytes_recursive.len(), 3);
        assert_eq!(s.blkio.io_service_bytes_recursive[2].op, "Total");
        assert_eq!(s.blkio.io_serviced_recursive.len(), 1);
        assert_eq!(
            s.hugetlb["2MB"],
            HugetlbStats {
                usage: 2097152,
                max: 4194304,
                failcnt: 1
            }
        );
        assert_eq!(
            serde_json::to_value(&s.cpu).unwrap(),
            json!({"usage": {"total": 12221911, "percpu": [1779122, 10442789],
                             "percpu_kernel": [4000000, 4000000], "percpu_user": [0, 8000000],
                             "kernel": 10000000, "user": 30000000},
                   "throttling": {"periods": 5, "throttledPeriods": 1, "throttledTime": 777}})
        );
    }

    #[test]
    fn cpu_lists() {
        let d = Path::new("/x");
        assert_eq!(
            id_list(d, "f", "0-3,8,10-11\n").unwrap(),
            [0, 1, 2, 3, 8, 10, 11]
        );
        assert_eq!(id_list(d, "f", "\n").unwrap(), Vec::<u16>::new());
        assert!(id_list(d, "f", "a").is_err());
        assert!(id_list(d, "f", "3-").is_err());
    }

    /// The real cgroup2 mount, where cpu.stat and cgroup.procs are real
    /// (this host enables no memory or pids controller there).
    #[test]
    fn v2_stats_on_the_real_kernel() {
        use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
        use std::process::{Child, Command};
        let root = Path::new("/sys/fs/cgroup/unified");
        if !statfs(root).is_ok_and(|f| f.filesystem_type() == CGROUP2_SUPER_MAGIC) {
            eprintln!("no cgroup2 mount at {}; skipped", root.display());
            return;
        }
        struct Destroy(Cgroup);
        impl Drop for Destroy {
            fn drop(&mut self) {
                if let Err(e) = self.0.destroy() {
                    eprintln!("{e}");
                }
            }
        }
        struct Reap(Child);
        impl Drop for Reap {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let name = format!("/berth-test-stats-{}", std::process::id());
        let cg = Destroy(
            Hierarchy::v2_at(root)
                .create(Some(Path::new(&name)), "x", None)
                .unwrap(),
        );
        let before = cg.0.stats().unwrap();
        assert_eq!(before.pids.current, 0);
        assert_eq!(before.cpu.usage.total, 0);
        let child = Reap(
            Command::new("/bin/busybox")
                .args(["sh", "-c", "while :; do :; done"])
                .spawn()
                .unwrap(),
        );
        cg.0.add_pid(child.0.id() as i32).unwrap();
        let busy = testbed::eventually(std::time::Duration::from_secs(5), || {
            cg.0.stats().unwrap().cpu.usage.total > 0
        });
        assert!(busy, "no CPU time counted in {name}");
        let s = cg.0.stats().unwrap();
        assert_eq!(s.pids.current, 1);
        let enabled = std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap();
        if enabled.split_whitespace().any(|c| c == "hugetlb") {
            assert!(
                !s.hugetlb.is_empty(),
                "hugetlb is enabled but has no counters"
            );
        }
    }
}
