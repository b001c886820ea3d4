//! cgroup v1: one directory per mounted hierarchy, v1 file names and value
//! formats (Documentation/admin-guide/cgroup-v1).

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};
use serde::{Deserialize, Serialize};

use super::{fs, non_empty, set, CgroupError, CgroupPath, Result};

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

pub(super) fn apply(dirs: &[Dir], r: &LinuxResources) -> Result<()> {
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
    set_devices(dirs, r.devices().as_deref().unwrap_or_default())?;
    Ok(())
}

/// Devices every container may use, after the config's own rules (runc's
/// list): mknod of anything, and the default device nodes, ptys and tun.
const ALLOWED_DEVICES: [&str; 11] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:8 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 1:5 rwm",
    "c 1:9 rwm",
    "c 136:* rwm",
    "c 5:2 rwm",
    "c 10:200 rwm",
];

/// The device allow/deny list (v1 devices controller): everything denied,
/// then `linux.resources.devices` in order, then [`ALLOWED_DEVICES`].
fn set_devices(dirs: &[Dir], rules: &[oci_spec::runtime::LinuxDeviceCgroup]) -> Result<()> {
    let Some(dir) = dir_of(dirs, "devices") else {
        return Ok(());
    };
    fs::write(dir, "devices.deny", "a")?;
    for rule in rules {
        use oci_spec::runtime::LinuxDeviceType as T;
        let typ = match rule.typ() {
            None | Some(T::A) => "a",
            Some(T::B) => "b",
            Some(_) => "c",
        };
        let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
        let value = if typ == "a" {
            "a".to_string()
        } else {
            format!(
                "{typ} {}:{} {}",
                num(rule.major()),
                num(rule.minor()),
                rule.access().as_deref().unwrap_or("rwm")
            )
        };
        let file = if rule.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        fs::write(dir, file, &value)?;
    }
    for value in ALLOWED_DEVICES {
        fs::write(dir, "devices.allow", value)?;
    }
    Ok(())
}

const MEM_LIMIT: &str = "memory.limit_in_bytes";
const MEMSW_LIMIT: &str = "memory.memsw.limit_in_bytes";

fn set_memory(dirs: &[Dir], mem: &LinuxMemory) -> Result<()> {
    let (limit, reservation) = (set(mem.limit()), set(mem.reservation()));
    let mut swap = set(mem.swap());
    if limit.is_none() && reservation.is_none() && swap.is_none() {
        return Ok(());
    }
    let dir = need(dirs, "memory", "linux.resources.memory")?;
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

fn set_cpu(dirs: &[Dir], cpu: &LinuxCpu) -> Result<()> {
    let shares = cpu.shares().filter(|&s| s != 0);
    let quota = set(cpu.quota());
    let period = cpu.period().filter(|&p| p != 0);
    if shares.is_none() && quota.is_none() && period.is_none() {
        return Ok(());
    }
    let dir = need(dirs, "cpu", "linux.resources.cpu")?;
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
    let mut period_pending = None;
    if let Some(p) = period {
        let value = p.to_string();
        match fs::write(dir, "cpu.cfs_period_us", &value) {
            Ok(()) => {}
            // A shorter period can push the old quota/period ratio over the
            // parent's; the new quota may fix that, so retry after it.
            Err(CgroupError::Write { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) && quota.is_some() =>
            {
                period_pending = Some(value);
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(q) = quota {
        fs::write(dir, "cpu.cfs_quota_us", &q.to_string())?;
    }
    if let Some(value) = period_pending {
        fs::write(dir, "cpu.cfs_period_us", &value)?;
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

/// These run against the host's real v1 hierarchy and skip themselves
/// elsewhere (not root, or a v2 host).
#[cfg(test)]
mod tests {
    use super::super::{Cgroup, CgroupError, Hierarchy};
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources,
        LinuxResourcesBuilder,
    };
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command};
    use std::sync::atomic::{AtomicUsize, Ordering};

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
}
