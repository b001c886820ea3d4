//! Control groups: placing a container in its cgroup and applying `linux.resources`
//! (OCI runtime spec, config-linux.md "Control groups"), over cgroup v1 and v2.
//!
//! A [`Hierarchy`] says where the controllers are mounted on this host; it
//! resolves `linux.cgroupsPath`, creates the directories and returns a
//! [`Cgroup`], the handle kept in the container's state. Both versions share
//! the path rules and the file writer; only the file names and value formats
//! differ, in `v1.rs` and `v2.rs`.
//!
//! Path rules follow runc's cgroupfs driver: an absolute `cgroupsPath` is
//! taken below each controller's mount point; a relative one (and the
//! default, the container id, when `cgroupsPath` is unset) is taken below the
//! runtime's own cgroup (on v2, below its parent, since a cgroup holding
//! processes cannot hand controllers to children).

mod bpf;
mod devices;
mod freezer;
mod fs;
mod oom;
mod stats;
mod v1;
mod v2;

pub use oom::OomWatcher;
pub use stats::{
    BlkioEntry, BlkioStats, CpuSetStats, CpuStats, CpuUsage, HugetlbStats, IntelRdt, MemoryEntry,
    MemoryStats, PidsStats, Stats, Throttling,
};

use std::collections::BTreeSet;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxInterfacePriority, LinuxMemory, LinuxNetwork,
    LinuxResources, LinuxThrottleDevice,
};
use serde::{Deserialize, Serialize};

/// Where the whole cgroup v2 tree is mounted on a unified host.
const V2_MOUNT: &str = "/sys/fs/cgroup";
/// How long [`Cgroup::destroy`] keeps retrying `rmdir` while processes leave.
const DESTROY_TIMEOUT: Duration = Duration::from_secs(1);

/// Errors from cgroup operations; each names the file or directory and the
/// value involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Reading a cgroup file (or /proc/self/mountinfo, /proc/self/cgroup) failed.
    #[error("read {path}: {source}")]
    Read {
        /// The file read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A cgroup file held something that is not what the kernel writes there.
    #[error("parse {path}: unexpected content {content:?}")]
    Parse {
        /// The file read.
        path: PathBuf,
        /// What it contained.
        content: String,
    },
    /// The kernel refused a value written to a cgroup file.
    #[error("write {value} to {path}: {source}")]
    Write {
        /// The file written.
        path: PathBuf,
        /// The value written.
        value: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// The kernel accepted a write but silently stored a different value
    /// (it clamps `cpu.shares` to 2..=262144, for example).
    #[error("write {value} to {path}: the kernel stored {actual} instead")]
    NotApplied {
        /// The file written.
        path: PathBuf,
        /// The value written.
        value: String,
        /// The value read back.
        actual: String,
    },
    /// Creating a cgroup directory failed.
    #[error("create cgroup {path}: {source}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Removing a cgroup directory failed (after retrying while it was busy).
    #[error("remove cgroup {path}: {source}")]
    Remove {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A `linux.resources` value cannot be expressed for this cgroup version.
    #[error("{field} = {value}: {reason}")]
    InvalidResource {
        /// The config field, e.g. `linux.resources.memory.swap`.
        field: &'static str,
        /// The value given.
        value: String,
        /// Why it cannot be applied.
        reason: &'static str,
    },
    /// A `linux.resources` field this cgroup version or this kernel cannot
    /// honour at all, whatever its value.
    #[error("{field}: {reason}")]
    Unsupported {
        /// The config field, e.g. `linux.resources.network` or
        /// `linux.resources.unified["memory.high"]`.
        field: String,
        /// Why, naming the file or controller involved.
        reason: String,
    },
    /// `linux.resources.memory.checkBeforeUpdate` is set and a new limit is
    /// not above what the cgroup already uses.
    #[error(
        "{field} = {value}: not above the current usage of {usage} bytes (per {path}); \
         refused because linux.resources.memory.checkBeforeUpdate is set"
    )]
    BelowUsage {
        /// `linux.resources.memory.limit` or `linux.resources.memory.swap`.
        field: &'static str,
        /// The new limit.
        value: i64,
        /// The usage read from the kernel.
        usage: u64,
        /// The usage file(s) read.
        path: PathBuf,
    },
    /// A resource is set but its controller is not available on this host.
    #[error(
        "{field} needs the {controller} cgroup controller, which is not available on this host"
    )]
    MissingController {
        /// The controller, e.g. `memory`.
        controller: &'static str,
        /// The config field that needs it.
        field: &'static str,
    },
    /// No cgroup hierarchy is mounted.
    #[error("no cgroup hierarchy is mounted (per {path})")]
    NoHierarchy {
        /// The mount table consulted.
        path: PathBuf,
    },
    /// A `linux.resources.devices` rule is malformed, or asks for what the
    /// device cgroup cannot do.
    #[error("{field} = {value}: {reason}")]
    InvalidDeviceRule {
        /// e.g. `linux.resources.devices[2].access`.
        field: String,
        /// The value given, or the whole rule (`deny c 1:5 rwm`).
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// The kernel did not finish a state change (freezing) in time; the
    /// change was undone.
    #[error("{path}: {what} did not complete within {waited:?} (the file reads {state:?})")]
    Timeout {
        /// The file watched, e.g. `freezer.state` or `cgroup.events`.
        path: PathBuf,
        /// The change, e.g. `freezing`.
        what: &'static str,
        /// What the file last read.
        state: String,
        /// How long it was given.
        waited: Duration,
    },
    /// Setting up or reading an event notification (eventfd, poll) on a
    /// cgroup file failed.
    #[error("watch {path}: {source}")]
    Watch {
        /// The file watched, e.g. `memory.oom_control`.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A bpf(2) command for the cgroup v2 device program failed.
    #[error("{op} for the device filter of cgroup {path}: {source}{}", bpf::log_suffix(.log))]
    Bpf {
        /// The command, e.g. `BPF_PROG_ATTACH`.
        op: &'static str,
        /// The cgroup directory.
        path: PathBuf,
        /// The kernel's answer.
        #[source]
        source: io::Error,
        /// The verifier's log when loading was refused; empty otherwise.
        log: String,
    },
}

type Result<T, E = CgroupError> = std::result::Result<T, E>;

/// Where the controllers are mounted on this host.
#[derive(Clone, Debug)]
pub struct Hierarchy {
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    V1(Vec<v1::Mount>),
    V2(v2::Mount),
}

impl Hierarchy {
    /// Reads /proc/self/mountinfo and /proc/self/cgroup: pure v2 when cgroup2
    /// is mounted at /sys/fs/cgroup, otherwise the v1 controllers (on hybrid
    /// hosts the v1 controllers are used and the v2 mount is ignored, as runc
    /// does).
    pub fn detect() -> Result<Hierarchy> {
        let mountinfo = fs::read_path(Path::new("/proc/self/mountinfo"))?;
        let own = fs::read_path(Path::new("/proc/self/cgroup"))?;
        Self::from_tables(&mountinfo, &own)
    }

    /// A v2 hierarchy rooted at `root`; relative cgroup paths resolve below
    /// `root` itself.
    pub fn v2_at(root: impl Into<PathBuf>) -> Hierarchy {
        Hierarchy {
            kind: Kind::V2(v2::Mount {
                root: root.into(),
                own: PathBuf::new(),
            }),
        }
    }

    /// A v1 hierarchy from (controller list, mount dir) pairs, e.g.
    /// `("cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct")` or
    /// `("name=systemd", "/sys/fs/cgroup/systemd")`; relative cgroup paths
    /// resolve below each mount dir.
    pub fn v1_from(mounts: Vec<(String, PathBuf)>) -> Hierarchy {
        let mounts = mounts
            .into_iter()
            .map(|(controllers, dir)| v1::Mount {
                controllers: split_list(&controllers),
                dir,
                own: PathBuf::new(),
            })
            .collect();
        Hierarchy {
            kind: Kind::V1(mounts),
        }
    }

    /// Whether this host uses the unified (v2) hierarchy.
    pub fn is_v2(&self) -> bool {
        matches!(self.kind, Kind::V2(_))
    }

    /// The directory each controller (or `""` for v2, `name=systemd` for the
    /// named hierarchy) is mounted at, in mount-table order.
    pub fn mounts(&self) -> Vec<(String, PathBuf)> {
        match &self.kind {
            Kind::V1(mounts) => mounts
                .iter()
                .map(|m| (m.controllers.join(","), m.dir.clone()))
                .collect(),
            Kind::V2(m) => vec![(String::new(), m.root.clone())],
        }
    }

    /// Resolves `linux.cgroupsPath` (unset or empty means the container id,
    /// relative), creates the cgroup directories and applies `resources`.
    /// On failure, every directory created here is removed again.
    pub fn create(
        &self,
        cgroups_path: Option<&Path>,
        id: &str,
        resources: Option<&LinuxResources>,
    ) -> Result<Cgroup> {
        let inner = match cgroups_path {
            Some(p) if !p.as_os_str().is_empty() => CgroupPath::new(p),
            _ => CgroupPath::new(Path::new(id)),
        };
        if let Some(r) = resources {
            self.check_controllers(r)?;
        }
        let mut cgroup = match &self.kind {
            Kind::V1(_) => Cgroup {
                layout: Layout::V1 { dirs: Vec::new() },
            },
            Kind::V2(_) => Cgroup {
                layout: Layout::V2(v2::Dir::default()),
            },
        };
        let made = match (&self.kind, &mut cgroup.layout) {
            (Kind::V1(mounts), Layout::V1 { dirs }) => v1::make_dirs(mounts, &inner, dirs),
            (Kind::V2(mount), Layout::V2(dir)) => v2::make_dir(mount, &inner, dir),
            _ => unreachable!("layout is built from the hierarchy kind above"),
        };
        // Without `linux.resources` the device rules still apply: deny-all
        // and the default devices, as in runc.
        let result = made.and_then(|()| match resources {
            Some(r) => cgroup.apply(r),
            None => cgroup.apply(&LinuxResources::default()),
        });
        match result {
            Ok(()) => Ok(cgroup),
            Err(e) => {
                if let Err(cleanup) = cgroup.destroy() {
                    tracing::warn!(error = %cleanup, "removing a half-made cgroup failed");
                }
                Err(e)
            }
        }
    }

    /// Fails early, before any directory is made, when a resource is set
    /// that this cgroup version cannot express or whose controller this host
    /// lacks.
    fn check_controllers(&self, r: &LinuxResources) -> Result<()> {
        match &self.kind {
            Kind::V1(_) => v1::check(r)?,
            Kind::V2(_) => v2::check(r)?,
        }
        let wanted = wanted_controllers(r, self.is_v2());
        if wanted.is_empty() {
            return Ok(());
        }
        let have: BTreeSet<String> = match &self.kind {
            Kind::V1(mounts) => mounts
                .iter()
                .flat_map(|m| m.controllers.iter().cloned())
                .collect(),
            Kind::V2(m) => m.available()?,
        };
        match wanted.iter().find(|(c, _)| !have.contains(*c)) {
            Some(&(controller, field)) => Err(CgroupError::MissingController { controller, field }),
            None => Ok(()),
        }
    }

    /// Builds the hierarchy from the text of /proc/self/mountinfo and
    /// /proc/self/cgroup.
    fn from_tables(mountinfo: &str, self_cgroup: &str) -> Result<Hierarchy> {
        let mounts: Vec<MountEntry> = mountinfo.lines().filter_map(MountEntry::parse).collect();
        let own = OwnCgroups::parse(self_cgroup);

        let v2_mount = |e: &MountEntry| v2::Mount {
            root: e.mount_point.clone(),
            own: own
                .v2
                .as_deref()
                .map(|p| relative_to_mount(parent_of(p), &e.root))
                .unwrap_or_default(),
        };
        if let Some(e) = mounts
            .iter()
            .rev()
            .find(|e| e.fstype == "cgroup2" && e.mount_point == Path::new(V2_MOUNT))
        {
            return Ok(Hierarchy {
                kind: Kind::V2(v2_mount(e)),
            });
        }

        let mut v1_mounts: Vec<v1::Mount> = Vec::new();
        for e in mounts.iter().filter(|e| e.fstype == "cgroup") {
            let controllers = v1::controllers_of(&e.super_options);
            if controllers.is_empty() {
                continue;
            }
            let own_path = own
                .v1
                .iter()
                .find(|(set, _)| *set == controllers.iter().cloned().collect::<BTreeSet<_>>())
                .map(|(_, p)| relative_to_mount(p, &e.root))
                .unwrap_or_default();
            let mount = v1::Mount {
                controllers,
                dir: e.mount_point.clone(),
                own: own_path,
            };
            // The same hierarchy can be mounted more than once; keep the
            // conventional /sys/fs/cgroup mount, and the last (visible) one
            // of several at the same place.
            match v1_mounts
                .iter_mut()
                .find(|m| m.controllers == mount.controllers)
            {
                Some(old) => {
                    let conventional = |p: &Path| p.starts_with(V2_MOUNT);
                    if old.dir == mount.dir || (!conventional(&old.dir) && conventional(&mount.dir))
                    {
                        *old = mount;
                    }
                }
                None => v1_mounts.push(mount),
            }
        }
        if v1_mounts
            .iter()
            .any(|m| m.controllers.iter().any(|c| !c.starts_with("name=")))
        {
            return Ok(Hierarchy {
                kind: Kind::V1(v1_mounts),
            });
        }
        if let Some(e) = mounts.iter().rev().find(|e| e.fstype == "cgroup2") {
            return Ok(Hierarchy {
                kind: Kind::V2(v2_mount(e)),
            });
        }
        Err(CgroupError::NoHierarchy {
            path: PathBuf::from("/proc/self/mountinfo"),
        })
    }
}

/// One container's cgroup; serialisable so it can be kept in the container's
/// state.json.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Cgroup {
    layout: Layout,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "version", rename_all = "lowercase")]
enum Layout {
    V1 { dirs: Vec<v1::Dir> },
    V2(v2::Dir),
}

impl Cgroup {
    /// Whether this cgroup lives in the unified (v2) hierarchy.
    pub fn is_v2(&self) -> bool {
        matches!(self.layout, Layout::V2(_))
    }

    /// Moves `pid` into the cgroup (every v1 hierarchy / the v2 dir).
    pub fn add_pid(&self, pid: i32) -> Result<()> {
        let pid = pid.to_string();
        match &self.layout {
            Layout::V1 { dirs } => dirs
                .iter()
                .try_for_each(|d| fs::write(&d.path, "cgroup.procs", &pid)),
            Layout::V2(d) => fs::write(&d.path, "cgroup.procs", &pid),
        }
    }

    /// All processes in the cgroup, sorted.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let dir = match &self.layout {
            Layout::V1 { dirs } => match v1::procs_dir(dirs) {
                Some(d) => d,
                None => return Ok(Vec::new()),
            },
            Layout::V2(d) => &d.path,
        };
        let text = fs::read(dir, "cgroup.procs")?;
        let mut pids = text
            .lines()
            .map(|l| {
                l.trim().parse::<i32>().map_err(|_| CgroupError::Parse {
                    path: dir.join("cgroup.procs"),
                    content: l.to_string(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Applies (or re-applies, for `update`) `resources`; unset fields leave
    /// the current values alone.
    pub fn apply(&self, resources: &LinuxResources) -> Result<()> {
        match &self.layout {
            Layout::V1 { dirs } => v1::apply(dirs, resources),
            Layout::V2(d) => v2::apply(&d.path, resources),
        }
    }

    /// Removes the directories this cgroup created, deepest first, retrying
    /// while exiting processes still hold them (EBUSY) for up to a second.
    /// Directories that existed before are left alone; missing ones are fine.
    pub fn destroy(&self) -> Result<()> {
        let deadline = Instant::now() + DESTROY_TIMEOUT;
        let mut first_err = None;
        let mut remove = |created: &[PathBuf]| {
            if let Err(e) = fs::remove_dirs(created, deadline) {
                tracing::debug!(error = %e, "cgroup removal failed");
                first_err.get_or_insert(e);
            }
        };
        match &self.layout {
            Layout::V1 { dirs } => dirs.iter().for_each(|d| remove(&d.created)),
            Layout::V2(d) => remove(&d.created),
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Host directories to bind for a `cgroup` mount inside the container:
    /// (name under /sys/fs/cgroup, host dir). On v1 the name is the host's
    /// mount point name (`memory`, `cpu,cpuacct`, `systemd`; see
    /// [`Cgroup::mount_symlinks`] for co-mounted controllers); on v2 a single
    /// entry with an empty name.
    pub fn mount_sources(&self) -> Vec<(String, PathBuf)> {
        match &self.layout {
            Layout::V1 { dirs } => dirs
                .iter()
                .map(|d| (d.mount_name(), d.path.clone()))
                .collect(),
            Layout::V2(d) => vec![(String::new(), d.path.clone())],
        }
    }

    /// For co-mounted v1 controllers, the symlinks to make beside the mounts
    /// of [`Cgroup::mount_sources`]: (link name, target), e.g. `("cpu",
    /// "cpu,cpuacct")`. Empty on v2.
    pub fn mount_symlinks(&self) -> Vec<(String, String)> {
        let mut links = Vec::new();
        if let Layout::V1 { dirs } = &self.layout {
            for d in dirs {
                let target = d.mount_name();
                for c in &d.controllers {
                    if !c.starts_with("name=") && *c != target {
                        links.push((c.clone(), target.clone()));
                    }
                }
            }
        }
        links
    }

    /// The directory holding `controller`'s files (e.g. `memory`,
    /// `name=systemd`); on v2 the one directory, whatever the controller.
    pub fn dir_of(&self, controller: &str) -> Option<&Path> {
        match &self.layout {
            Layout::V1 { dirs } => v1::dir_of(dirs, controller),
            Layout::V2(d) => Some(&d.path),
        }
    }
}

/// A cleaned `cgroupsPath`: whether it was absolute, and its components.
#[derive(Debug, Clone, PartialEq)]
struct CgroupPath {
    absolute: bool,
    rel: PathBuf,
}

impl CgroupPath {
    /// Cleans the path lexically, like runc: `..` never climbs above the
    /// start, so even a relative path cannot leave the cgroup it is relative
    /// to.
    fn new(path: &Path) -> CgroupPath {
        let mut parts = Vec::new();
        for c in path.components() {
            match c {
                Component::Normal(s) => parts.push(s),
                Component::ParentDir => {
                    parts.pop();
                }
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
        CgroupPath {
            absolute: path.has_root(),
            rel: parts.iter().collect(),
        }
    }

    /// The path below a mount point, given the runtime's own cgroup there.
    fn below(&self, own: &Path) -> PathBuf {
        if self.absolute {
            self.rel.clone()
        } else {
            own.join(&self.rel)
        }
    }
}

/// The controllers `r` needs on cgroup v1 (`v2 == false`) or v2, with the
/// field that needs each; a resource group added later gets a line here.
/// Fields a version ignores (v1-only memory knobs on v2) need nothing there.
fn wanted_controllers(r: &LinuxResources, v2: bool) -> Vec<(&'static str, &'static str)> {
    let mut wanted = Vec::new();
    if let Some(m) = r.memory() {
        if memory_limits_set(m) || (!v2 && memory_v1_knobs_set(m)) {
            wanted.push(("memory", "linux.resources.memory"));
        }
    }
    if let Some(c) = r.cpu() {
        if cpu_set(c) {
            wanted.push(("cpu", "linux.resources.cpu"));
        }
        if non_empty(c.cpus()).is_some() || non_empty(c.mems()).is_some() {
            wanted.push(("cpuset", "linux.resources.cpu.cpus/mems"));
        }
    }
    if r.pids().is_some() {
        wanted.push(("pids", "linux.resources.pids.limit"));
    }
    if let Some(io) = r.block_io() {
        if block_io_set(io, v2) {
            let controller = if v2 { "io" } else { "blkio" };
            wanted.push((controller, "linux.resources.blockIO"));
        }
    }
    if r.hugepage_limits().as_ref().is_some_and(|l| !l.is_empty()) {
        wanted.push(("hugetlb", "linux.resources.hugepageLimits"));
    }
    if let Some(net) = r.network() {
        // v2 has no network controller at all; v2::check says so first.
        if class_id(net).is_some() {
            wanted.push(("net_cls", "linux.resources.network.classID"));
        }
        if !priorities(net).is_empty() {
            wanted.push(("net_prio", "linux.resources.network.priorities"));
        }
    }
    if r.rdma().as_ref().is_some_and(|m| !m.is_empty()) {
        wanted.push(("rdma", "linux.resources.rdma"));
    }
    wanted
}

/// runc treats 0 as "unset" for the memory and CPU numbers; so does Berth.
fn set(v: Option<i64>) -> Option<i64> {
    v.filter(|&v| v != 0)
}

/// `pids.max` for a spec limit: 0 or negative means no limit.
fn pids_max(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".to_string()
    }
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

fn memory_limits_set(m: &LinuxMemory) -> bool {
    [m.limit(), m.reservation(), m.swap()]
        .iter()
        .any(|v| set(*v).is_some())
}

/// The memory fields only cgroup v1 has files for.
fn memory_v1_knobs_set(m: &LinuxMemory) -> bool {
    set(m.kernel()).is_some()
        || set(m.kernel_tcp()).is_some()
        || m.swappiness().is_some()
        || m.disable_oom_killer() == Some(true)
        || m.use_hierarchy().is_some()
}

/// `burst` and `idle` are set when present, 0 included: 0 is a real value
/// for both (runc keeps them as pointers for that reason).
fn cpu_set(c: &LinuxCpu) -> bool {
    c.shares().is_some_and(|s| s != 0)
        || set(c.quota()).is_some()
        || c.period().is_some_and(|p| p != 0)
        || c.burst().is_some()
        || c.idle().is_some()
        || set(c.realtime_runtime()).is_some()
        || c.realtime_period().is_some_and(|p| p != 0)
}

fn block_io_set(io: &LinuxBlockIo, v2: bool) -> bool {
    let weights = io.weight().is_some_and(|w| w != 0)
        || (!v2 && io.leaf_weight().is_some_and(|w| w != 0))
        || io.weight_device().as_ref().is_some_and(|d| !d.is_empty());
    weights || throttles(io).iter().any(|(_, _, list)| !list.is_empty())
}

/// The four throttle lists: (v1 file, v2 io.max key, entries).
fn throttles(io: &LinuxBlockIo) -> [(&'static str, &'static str, &[LinuxThrottleDevice]); 4] {
    fn list(l: &Option<Vec<LinuxThrottleDevice>>) -> &[LinuxThrottleDevice] {
        l.as_deref().unwrap_or_default()
    }
    [
        (
            "blkio.throttle.read_bps_device",
            "rbps",
            list(io.throttle_read_bps_device()),
        ),
        (
            "blkio.throttle.write_bps_device",
            "wbps",
            list(io.throttle_write_bps_device()),
        ),
        (
            "blkio.throttle.read_iops_device",
            "riops",
            list(io.throttle_read_iops_device()),
        ),
        (
            "blkio.throttle.write_iops_device",
            "wiops",
            list(io.throttle_write_iops_device()),
        ),
    ]
}

/// A huge page size as the hugetlb file names spell it (`2MB`, `1GB`,
/// `64KB`); anything else could name some other file.
fn page_size(limit: &LinuxHugepageLimit) -> Result<&str> {
    let size = limit.page_size().as_str();
    let digits = size.trim_end_matches(|c: char| c.is_ascii_uppercase());
    let unit = &size[digits.len()..];
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && ["KB", "MB", "GB"].contains(&unit)
    {
        Ok(size)
    } else {
        Err(CgroupError::InvalidResource {
            field: "linux.resources.hugepageLimits[].pageSize",
            value: size.to_string(),
            reason: "must be a huge page size such as 2MB or 1GB",
        })
    }
}

/// `net_cls.classid`: 0 is the kernel's "unset", as in runc.
fn class_id(net: &LinuxNetwork) -> Option<u32> {
    net.class_id().filter(|&c| c != 0)
}

fn priorities(net: &LinuxNetwork) -> &[LinuxInterfacePriority] {
    net.priorities().as_deref().unwrap_or_default()
}

/// `rdma.max` lines, one per device in name order, with only the limits
/// that are set (`mlx4_0 hca_handle=2 hca_object=2000`); a device with no
/// limit set has nothing to write.
fn rdma_lines(r: &LinuxResources) -> Vec<String> {
    let Some(map) = r.rdma() else {
        return Vec::new();
    };
    let mut devices: Vec<_> = map.iter().collect();
    devices.sort_by(|a, b| a.0.cmp(b.0));
    devices
        .into_iter()
        .filter(|(_, l)| l.hca_handles().is_some() || l.hca_objects().is_some())
        .map(|(device, l)| {
            let mut line = device.clone();
            if let Some(h) = l.hca_handles() {
                line.push_str(&format!(" hca_handle={h}"));
            }
            if let Some(o) = l.hca_objects() {
                line.push_str(&format!(" hca_object={o}"));
            }
            line
        })
        .collect()
}

/// `MAJ:MIN` of a block device rule.
fn device(major: i64, minor: i64) -> String {
    format!("{major}:{minor}")
}

/// `memory.checkBeforeUpdate` (runc 1.2): a limit at or below what the
/// cgroup already uses would have the kernel reclaim or OOM-kill at once;
/// refuse it instead. `usage` is read lazily and only when a positive limit
/// is set; an unreadable usage skips the check, as in runc.
fn check_usage(
    field: &'static str,
    limit: Option<i64>,
    usage: impl FnOnce() -> Result<(u64, PathBuf)>,
) -> Result<()> {
    let Some(value) = limit.filter(|&l| l > 0) else {
        return Ok(());
    };
    match usage() {
        Ok((usage, path)) if value as u64 <= usage => Err(CgroupError::BelowUsage {
            field,
            value,
            usage,
            path,
        }),
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::debug!(error = %e, field, "usage unreadable; checkBeforeUpdate skipped");
            Ok(())
        }
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// A cgroup path from /proc/self/cgroup, made relative to the mount of its
/// hierarchy (whose root is not `/` inside a cgroup namespace or for a bind
/// mount of a sub-tree).
fn relative_to_mount(cgroup: &str, mount_root: &str) -> PathBuf {
    let path = Path::new(cgroup);
    let rel = path.strip_prefix(mount_root).unwrap_or_else(|_| {
        tracing::debug!(cgroup, mount_root, "own cgroup lies outside its mount");
        Path::new("")
    });
    CgroupPath::new(rel).rel
}

fn parent_of(p: &str) -> &str {
    match p.trim_end_matches('/').rfind('/') {
        Some(0) | None => "/",
        Some(i) => &p[..i],
    }
}

/// The parts of one /proc/self/mountinfo line the detection needs.
#[derive(Debug)]
struct MountEntry {
    root: String,
    mount_point: PathBuf,
    fstype: String,
    super_options: String,
}

impl MountEntry {
    /// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
    fn parse(line: &str) -> Option<MountEntry> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let sep = fields.iter().position(|f| *f == "-")?;
        if sep < 6 || fields.len() < sep + 4 {
            return None;
        }
        Some(MountEntry {
            root: unescape(fields[3]),
            mount_point: PathBuf::from(unescape(fields[4])),
            fstype: fields[sep + 1].to_string(),
            super_options: fields[sep + 3].to_string(),
        })
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            d.iter()
                .all(|b| (b'0'..=b'7').contains(b))
                .then(|| d.iter().fold(0u32, |n, b| n * 8 + u32::from(b - b'0')))
        });
        match (bytes[i], octal) {
            (b'\\', Some(n)) if n <= 0xff => {
                out.push(n as u8);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The runtime's own cgroups, from /proc/self/cgroup.
#[derive(Debug, Default)]
struct OwnCgroups {
    /// v1: (controller set, path).
    v1: Vec<(BTreeSet<String>, String)>,
    /// v2: the `0::` line's path.
    v2: Option<String>,
}

impl OwnCgroups {
    fn parse(text: &str) -> OwnCgroups {
        let mut own = OwnCgroups::default();
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_id), Some(list), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if list.is_empty() {
                own.v2 = Some(path.to_string());
            } else {
                own.v1
                    .push((split_list(list).into_iter().collect(), path.to_string()));
            }
        }
        own
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpu\\040acct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/cpuset rw,relatime shared:5 - cgroup cgroup rw,cpuset,clone_children
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
42 31 0:39 / /sys/fs/cgroup/other rw,relatime - cgroup cgroup rw,name=other
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:32 / /mnt/memory-again rw,relatime - cgroup cgroup rw,memory
";
    const HYBRID_SELF: &str = "\
9:name=systemd:/
4:memory:/process_api/abc
3:cpuset:/
2:cpuacct:/
1:cpu:/user/x
0::/
";

    #[test]
    fn detects_hybrid_as_v1() {
        let h = Hierarchy::from_tables(HYBRID, HYBRID_SELF).unwrap();
        assert!(!h.is_v2());
        let mounts = h.mounts();
        let names: Vec<&str> = mounts.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(
            names,
            ["cpu", "cpuacct", "memory", "cpuset", "name=systemd"]
        );
        assert_eq!(mounts[1].1, Path::new("/sys/fs/cgroup/cpu acct"));
        assert_eq!(mounts[2].1, Path::new("/sys/fs/cgroup/memory"));
        let Kind::V1(m) = &h.kind else { unreachable!() };
        assert_eq!(m[0].own, Path::new("user/x"));
        assert_eq!(m[2].own, Path::new("process_api/abc"));
        assert_eq!(m[3].own, Path::new(""));
    }

    #[test]
    fn detects_pure_v2_and_uses_parent_of_own_cgroup() {
        let mi = "25 1 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = Hierarchy::from_tables(mi, "0::/user.slice/session-1.scope\n").unwrap();
        assert!(h.is_v2());
        let Kind::V2(m) = &h.kind else { unreachable!() };
        assert_eq!(m.root, Path::new("/sys/fs/cgroup"));
        assert_eq!(m.own, Path::new("user.slice"));

        // In a cgroup namespace the mount root and the own path agree.
        let h = Hierarchy::from_tables(mi, "0::/\n").unwrap();
        let Kind::V2(m) = &h.kind else { unreachable!() };
        assert_eq!(m.own, Path::new(""));
    }

    #[test]
    fn sub_tree_mount_root_is_stripped() {
        let mi = "25 1 0:23 /ctr /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let h = Hierarchy::from_tables(mi, "0::/ctr/a/b\n").unwrap();
        let Kind::V2(m) = &h.kind else { unreachable!() };
        assert_eq!(m.own, Path::new("a"));
    }

    #[test]
    fn no_cgroup_mounts_is_an_error() {
        let mi = "31 23 0:28 / /sys rw - sysfs sysfs rw\n";
        let err = Hierarchy::from_tables(mi, "").unwrap_err();
        assert!(matches!(err, CgroupError::NoHierarchy { .. }), "{err}");
    }

    #[test]
    fn cgroup_paths_are_cleaned_like_runc() {
        let p = CgroupPath::new(Path::new("/a/../../b/./c/"));
        assert_eq!((p.absolute, p.rel.as_path()), (true, Path::new("b/c")));
        let p = CgroupPath::new(Path::new("../../x"));
        assert_eq!((p.absolute, p.rel.as_path()), (false, Path::new("x")));
        assert_eq!(p.below(Path::new("own/cg")), Path::new("own/cg/x"));
        let p = CgroupPath::new(Path::new("/"));
        assert_eq!(p.below(Path::new("own")), Path::new(""));
    }

    #[test]
    fn unescape_handles_octal_and_plain_backslashes() {
        assert_eq!(unescape("a\\040b\\134c"), "a b\\c");
        assert_eq!(unescape("a\\x"), "a\\x");
        assert_eq!(unescape("end\\04"), "end\\04");
    }

    #[test]
    fn parent_of_paths() {
        assert_eq!(parent_of("/"), "/");
        assert_eq!(parent_of("/a"), "/");
        assert_eq!(parent_of("/a/b"), "/a");
    }
}
