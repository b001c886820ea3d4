//! Image config to runtime config (image-spec conversion.md): the process
//! (args, env, cwd, and `Config.User` resolved through the image's own
//! `/etc/passwd` and `/etc/group`, opened with openat2 `RESOLVE_IN_ROOT` so
//! a hostile root filesystem cannot point them at host files), the implicit
//! annotations, and `docker run`-style overrides on top of the document
//! `berth spec` writes.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use oci_spec::image::{Config, ImageConfiguration};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespaceType, LinuxPidsBuilder, Mount, MountBuilder,
    Root, Spec, User, UserBuilder,
};

use crate::error::{Error, Result};

/// Docker's `PATH` for containers whose image sets none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The annotation listing the image's `Config.Volumes` (sorted,
/// comma-separated). The spec defines no annotation for them; Berth mounts
/// nothing there, so their data lands in the container's root filesystem.
pub const VOLUMES_ANNOTATION: &str = "run.berth.image.volumes";

/// Docker's lower bound for a memory limit: below it the init is killed
/// before it can do anything useful.
const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// The CFS period docker uses for `--cpus`, in microseconds.
const CPU_PERIOD: u64 = 100_000;

/// The largest uid or gid accepted (runc's bound).
const MAX_ID: u64 = i32::MAX as u64;

/// Passwd and group files larger than this are refused rather than read.
const MAX_ETC_FILE: u64 = 4 << 20;

/// What the caller overrides (from `berth run-image` flags or a library user).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Replaces `Cmd` (the entrypoint stays), like `docker run IMAGE CMD...`.
    pub args: Option<Vec<String>>,
    /// Replaces `Entrypoint`; the image's `Cmd` is then dropped, as docker
    /// does. `Some(vec![])` clears the entrypoint (`--entrypoint ""`).
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE` entries added to the image's `Env`, replacing the same
    /// key; a bare `KEY` removes it.
    pub env: Vec<String>,
    /// Like docker's `--user`: `name|uid[:group|gid]`.
    pub user: Option<String>,
    /// Replaces `WorkingDir`; must be absolute.
    pub workdir: Option<String>,
    /// Extra mounts (see [`bind_mount`]); one on the destination of a
    /// default mount replaces it.
    pub mounts: Vec<Mount>,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// CPUs as a fraction of the host's (CFS quota over a 100ms period).
    pub cpus: Option<f64>,
    /// Maximum number of tasks; zero or less means no limit.
    pub pids: Option<i64>,
    /// Give the process a terminal (and `TERM=xterm` unless set).
    pub terminal: bool,
    /// The container's hostname (default `berth`).
    pub hostname: Option<String>,
    /// Mount the root filesystem read-only.
    pub readonly_rootfs: bool,
    /// Share the host network namespace instead of a new one.
    pub network_host: bool,
}

/// The facts about the host the conversion depends on.
struct Host {
    /// Whether the memory controller accounts swap, so a memory+swap limit
    /// can be set.
    swap_accounting: bool,
}

/// Docker's default capabilities (moby `oci/caps/defaults.go`).
pub const DOCKER_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Builds the runtime config for an image config whose root filesystem is
/// already at `rootfs` (needed to resolve users and groups).
///
/// The base is what `berth spec` writes (runc's namespaces, mounts, masked
/// and read-only paths and rlimits) with a writable root and docker's
/// defaults for capabilities, no_new_privileges and seccomp;
/// the image's config and then `o` are applied on top, and the result is
/// checked as `berth create` would check it.
pub fn runtime_spec(image: &ImageConfiguration, rootfs: &Path, o: &Overrides) -> Result<Spec> {
    let host = Host {
        swap_accounting: swap_accounting(),
    };
    convert(image, rootfs, o, &host)
}

fn convert(image: &ImageConfiguration, rootfs: &Path, o: &Overrides, host: &Host) -> Result<Spec> {
    let cfg = image.config().clone().unwrap_or_default();
    let mut spec = berth::spec::example(false);

    let args = command(&cfg, o)?;
    let env = environment(&cfg, o)?;
    let cwd = working_dir(&cfg, o)?;
    let user = match &o.user {
        Some(u) => resolve(rootfs, u, "user override")?,
        None => resolve(
            rootfs,
            cfg.user().as_deref().unwrap_or_default(),
            "image config.User",
        )?,
    };
    let process = spec.process_mut().get_or_insert_with(Default::default);
    // What `docker run` gives a container: its default capability set
    // (bounding, effective, permitted; never inheritable or ambient),
    // setuid programs allowed, and its default seccomp profile below.
    let caps: std::collections::HashSet<oci_spec::runtime::Capability> = DOCKER_CAPS
        .iter()
        .map(|c| {
            serde_json::from_value(serde_json::Value::from(*c))
                .expect("docker's capability names parse")
        })
        .collect();
    let mut set = process.capabilities().clone().unwrap_or_default();
    set.set_bounding(Some(caps.clone()));
    set.set_effective(Some(caps.clone()));
    set.set_permitted(Some(caps));
    set.set_inheritable(None);
    set.set_ambient(None);
    process.set_capabilities(Some(set));
    process.set_no_new_privileges(Some(false));
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_cwd(cwd);
    process.set_user(user);
    process.set_terminal(Some(o.terminal));

    let mut root = Root::default();
    root.set_path(PathBuf::from("rootfs"));
    root.set_readonly(Some(o.readonly_rootfs));
    spec.set_root(Some(root));
    if let Some(h) = &o.hostname {
        spec.set_hostname(Some(h.clone()));
    }

    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for (i, m) in o.mounts.iter().enumerate() {
        if !m.destination().is_absolute() {
            return Err(Error::format(
                format!("mount override [{i}]"),
                format!(
                    "destination {} is not an absolute path",
                    m.destination().display()
                ),
            ));
        }
        // The caller's mount wins over a default one at the same place.
        mounts.retain(|d| d.destination() != m.destination());
    }
    mounts.extend(o.mounts.iter().cloned());
    spec.set_mounts(Some(mounts));

    let linux = spec.linux_mut().get_or_insert_with(Default::default);
    let cap_names: Vec<String> = DOCKER_CAPS.iter().map(|c| c.to_string()).collect();
    linux.set_seccomp(Some(berth::seccomp::default_profile(&cap_names)));
    if o.network_host {
        if let Some(ns) = linux.namespaces_mut() {
            ns.retain(|n| n.typ() != LinuxNamespaceType::Network);
        }
    }
    let mut resources = linux.resources().clone().unwrap_or_default();
    if let Some(m) = o.memory {
        resources.set_memory(Some(memory(m, host)?));
    }
    if let Some(c) = o.cpus {
        resources.set_cpu(Some(cpu(c)?));
    }
    if let Some(p) = o.pids.filter(|p| *p > 0) {
        let pids = LinuxPidsBuilder::default()
            .limit(p)
            .build()
            .map_err(|e| Error::format("pids override", e.to_string()))?;
        resources.set_pids(Some(pids));
    }
    linux.set_resources(Some(resources));

    spec.set_annotations(Some(annotations(image, &cfg)));
    berth::spec::validate(&spec)?;
    Ok(spec)
}

/// `Entrypoint` + `Cmd`, with docker's override rules.
fn command(cfg: &Config, o: &Overrides) -> Result<Vec<String>> {
    let (entrypoint, cmd) = match &o.entrypoint {
        Some(ep) => (ep.clone(), o.args.clone().unwrap_or_default()),
        None => (
            cfg.entrypoint().clone().unwrap_or_default(),
            o.args
                .clone()
                .or_else(|| cfg.cmd().clone())
                .unwrap_or_default(),
        ),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    match args.first() {
        None => Err(Error::format(
            "image config",
            "no command: the image has no Entrypoint or Cmd, and none was given",
        )),
        Some(a) if a.is_empty() => Err(Error::format(
            "image config",
            format!("the command {args:?} starts with an empty program name"),
        )),
        Some(_) => Ok(args),
    }
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// Replaces the entry with the same key in place, or appends.
fn set_env(env: &mut Vec<String>, entry: String) {
    let key = env_key(&entry).to_string();
    match env.iter_mut().find(|e| env_key(e) == key) {
        Some(slot) => *slot = entry,
        None => env.push(entry),
    }
}

/// The image's `Env`, then the overrides; `PATH` (and `TERM` with a
/// terminal) added only when missing, as docker does.
fn environment(cfg: &Config, o: &Overrides) -> Result<Vec<String>> {
    let mut env = Vec::new();
    for (i, e) in cfg.env().as_deref().unwrap_or_default().iter().enumerate() {
        if !e.contains('=') || e.starts_with('=') || e.contains('\0') {
            return Err(Error::format(
                format!("image config.Env[{i}]"),
                format!("{e:?} is not KEY=VALUE"),
            ));
        }
        set_env(&mut env, e.clone());
    }
    for e in &o.env {
        if e.is_empty() || e.starts_with('=') || e.contains('\0') {
            return Err(Error::format(
                "env override",
                format!("{e:?} is not KEY=VALUE or KEY"),
            ));
        }
        if e.contains('=') {
            set_env(&mut env, e.clone());
        } else {
            env.retain(|x| env_key(x) != e);
        }
    }
    if !env.iter().any(|e| env_key(e) == "PATH") {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    if o.terminal && !env.iter().any(|e| env_key(e) == "TERM") {
        env.push("TERM=xterm".to_string());
    }
    // HOME is left to the runtime, which takes it from the root's
    // /etc/passwd when the env has none.
    Ok(env)
}

fn working_dir(cfg: &Config, o: &Overrides) -> Result<PathBuf> {
    let (dir, what) = match &o.workdir {
        Some(w) => (w.as_str(), "workdir override"),
        None => (
            cfg.working_dir().as_deref().unwrap_or_default(),
            "image config.WorkingDir",
        ),
    };
    if dir.is_empty() {
        return Ok(PathBuf::from("/"));
    }
    if !dir.starts_with('/') {
        return Err(Error::format(
            what,
            format!("{dir:?} is not an absolute path"),
        ));
    }
    Ok(PathBuf::from(dir))
}

/// `linux.resources.memory` for docker's `--memory` alone: swap as much as
/// memory, so memory+swap is twice the limit, when the host accounts swap.
fn memory(limit: i64, host: &Host) -> Result<oci_spec::runtime::LinuxMemory> {
    let bad = |msg: String| Error::format("memory override", msg);
    if limit < MIN_MEMORY {
        return Err(bad(format!(
            "{limit} bytes is below the minimum of {MIN_MEMORY} (6 MiB)"
        )));
    }
    let mut b = LinuxMemoryBuilder::default().limit(limit);
    if host.swap_accounting {
        let swap = limit
            .checked_mul(2)
            .ok_or_else(|| bad(format!("{limit} bytes is too large")))?;
        b = b.swap(swap);
    }
    b.build().map_err(|e| bad(e.to_string()))
}

/// `linux.resources.cpu` for docker's `--cpus`.
fn cpu(cpus: f64) -> Result<oci_spec::runtime::LinuxCpu> {
    let bad = |msg: String| Error::format("cpus override", msg);
    // 0.01 CPU is a 1ms quota, the kernel's minimum.
    if !(0.01..=1e6).contains(&cpus) {
        return Err(bad(format!("{cpus} is not a number of CPUs from 0.01 up")));
    }
    let quota = (cpus * CPU_PERIOD as f64).round() as i64;
    LinuxCpuBuilder::default()
        .quota(quota)
        .period(CPU_PERIOD)
        .build()
        .map_err(|e| bad(e.to_string()))
}

/// The implicit annotations of conversion.md, then `Config.Labels`, which
/// take precedence; plus the exposed ports and Berth's volumes record.
fn annotations(image: &ImageConfiguration, cfg: &Config) -> HashMap<String, String> {
    const P: &str = "org.opencontainers.image.";
    let mut a = HashMap::new();
    let mut put = |k: &str, v: String| {
        a.insert(format!("{P}{k}"), v);
    };
    put("os", image.os().to_string());
    put("architecture", image.architecture().to_string());
    if let Some(v) = image.variant() {
        put("variant", v.clone());
    }
    if let Some(v) = image.os_version() {
        put("os.version", v.clone());
    }
    if let Some(v) = image.os_features().as_ref().filter(|f| !f.is_empty()) {
        put("os.features", v.join(","));
    }
    if let Some(v) = image.author() {
        put("author", v.clone());
    }
    if let Some(v) = image.created() {
        put("created", v.clone());
    }
    if let Some(v) = cfg.stop_signal().as_ref().filter(|s| !s.is_empty()) {
        put("stopSignal", v.clone());
    }
    if let Some(ports) = cfg.exposed_ports().as_ref().filter(|p| !p.is_empty()) {
        put("exposedPorts", sorted_list(ports));
    }
    if let Some(vols) = cfg.volumes().as_ref().filter(|v| !v.is_empty()) {
        a.insert(VOLUMES_ANNOTATION.to_string(), sorted_list(vols));
    }
    if let Some(labels) = cfg.labels() {
        a.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    a
}

fn sorted_list(items: &[String]) -> String {
    let mut items = items.to_vec();
    items.sort();
    items.join(",")
}

/// Parses a bind mount given as `HOST:CONTAINER[:ro|rw]` (both paths
/// absolute) into a recursive, private bind, as docker's `-v` makes.
pub fn bind_mount(spec: &str) -> Result<Mount> {
    let bad = |msg: String| Error::format(format!("bind mount {spec:?}"), msg);
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, ctr, mode) = match parts[..] {
        [h, c] => (h, c, "rw"),
        [h, c, m] => (h, c, m),
        _ => return Err(bad("expected HOST:CONTAINER[:ro|rw]".into())),
    };
    if !host.starts_with('/') {
        return Err(bad(format!(
            "host path {host:?} is not absolute (named volumes are not supported)"
        )));
    }
    if !ctr.starts_with('/') {
        return Err(bad(format!("container path {ctr:?} is not absolute")));
    }
    if spec.contains('\0') {
        return Err(bad("contains a NUL byte".into()));
    }
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    match mode {
        "rw" => {}
        "ro" => options.push("ro".into()),
        other => return Err(bad(format!("mode {other:?} is neither ro nor rw"))),
    }
    MountBuilder::default()
        .destination(ctr)
        .typ("bind")
        .source(host)
        .options(options)
        .build()
        .map_err(|e| bad(e.to_string()))
}

/// Writes `<bundle>/config.json` (creating `bundle`), with `root.path` set
/// to `rootfs`: relative when it lies inside the bundle, absolute otherwise.
/// The file is replaced atomically.
pub fn write_bundle(bundle: &Path, rootfs: &Path, spec: &Spec) -> Result<()> {
    std::fs::create_dir_all(bundle).map_err(|e| Error::io("create", bundle, e))?;
    let bundle_abs = std::path::absolute(bundle).map_err(|e| Error::io("resolve", bundle, e))?;
    let rootfs_abs = std::path::absolute(rootfs).map_err(|e| Error::io("resolve", rootfs, e))?;
    let path = match rootfs_abs.strip_prefix(&bundle_abs) {
        Ok(rel)
            if !rel.as_os_str().is_empty()
                && rel.components().all(|c| matches!(c, Component::Normal(_))) =>
        {
            rel.to_path_buf()
        }
        _ => rootfs_abs,
    };
    let mut spec = spec.clone();
    let readonly = spec.root().as_ref().and_then(|r| r.readonly());
    let mut root = Root::default();
    root.set_path(path);
    root.set_readonly(readonly);
    spec.set_root(Some(root));

    let text = serde_json::to_vec_pretty(&spec)
        .map_err(|e| Error::format("config.json", e.to_string()))?;
    let target = bundle.join("config.json");
    let tmp = bundle.join(format!(".config.json.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        std::io::Write::write_all(&mut f, &text)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io("write", &tmp, e));
    }
    std::fs::rename(&tmp, &target).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("rename", &target, e)
    })
}

/// Whether a memory+swap limit can be set: v1's `memory.memsw.*` files or
/// v2's `memory.swap.max` in this process's cgroup. Docker too drops the
/// swap limit when the host cannot enforce it.
fn swap_accounting() -> bool {
    if Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() {
        return true;
    }
    let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") else {
        return false;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .is_some_and(|p| {
            Path::new("/sys/fs/cgroup")
                .join(p.trim_start_matches('/'))
                .join("memory.swap.max")
                .exists()
        })
}

/// One `/etc/passwd` line.
#[derive(Debug)]
struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
}

/// One `/etc/group` line.
#[derive(Debug)]
struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// The fields of the non-comment lines of a colon-separated file; lines
/// with fewer than `min` fields are skipped.
fn records(text: &str, min: usize) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(move |f| f.len() >= min)
}

/// passwd(5) entries; lines whose ids are not numbers are skipped rather
/// than read as root.
fn parse_passwd(text: &str) -> Vec<Passwd> {
    records(text, 4)
        .filter_map(|f| {
            Some(Passwd {
                name: f[0].to_string(),
                uid: f[2].trim().parse().ok()?,
                gid: f[3].trim().parse().ok()?,
            })
        })
        .collect()
}

/// group(5) entries.
fn parse_group(text: &str) -> Vec<Group> {
    records(text, 3)
        .filter_map(|f| {
            Some(Group {
                name: f[0].to_string(),
                gid: f[2].trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// A uid or gid given as a number, or `None` for a name.
fn numeric_id(s: &str) -> std::result::Result<Option<u32>, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match s.parse::<u64>() {
        Ok(n) if n <= MAX_ID => Ok(Some(n as u32)),
        _ => Err(format!("id {s} is out of range (0 to {MAX_ID})")),
    }
}

/// Reads `/etc/<name>` of the root filesystem at `rootfs`, resolving the
/// path as if `rootfs` were `/`: symlinks and `..` cannot leave it, so an
/// image cannot make Berth read a host file. `None` when there is none.
fn read_etc(rootfs: &Path, name: &str) -> Result<Option<String>> {
    let shown = rootfs.join("etc").join(name);
    let dir = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(rootfs)
        .map_err(|e| Error::io("open root filesystem", rootfs, e))?;
    // O_NONBLOCK: opening a FIFO planted there must not hang.
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match openat2(&dir, format!("/etc/{name}").as_str(), how) {
        Ok(fd) => fd,
        Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(None),
        Err(e) => return Err(Error::io("open", shown, e.into())),
    };
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| Error::io("stat", &shown, e))?;
    if !meta.is_file() {
        return Err(Error::format(
            shown.display().to_string(),
            "not a regular file",
        ));
    }
    if meta.len() > MAX_ETC_FILE {
        return Err(Error::format(
            shown.display().to_string(),
            format!("{} bytes is more than the {MAX_ETC_FILE} read", meta.len()),
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_ETC_FILE)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", &shown, e))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Resolves `user` (`name|uid[:group|gid]`, empty for root) against the
/// image's `/etc/passwd` and `/etc/group` at `rootfs`, as runc's
/// `GetExecUser` and docker do: a user found in passwd gets its primary
/// group and, unless a group is given, the groups listing it as a member;
/// a number absent from passwd is taken as is (gid 0). `additionalGids`
/// starts with the primary gid, as docker writes it.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<User> {
    resolve(rootfs, user, "user")
}

fn resolve(rootfs: &Path, spec: &str, what: &str) -> Result<User> {
    let bad = |msg: String| Error::format(format!("{what} {spec:?}"), msg);
    let (user, group) = spec.split_once(':').unwrap_or((spec, ""));
    let uid_arg = numeric_id(user).map_err(bad)?;
    let gid_arg = numeric_id(group).map_err(bad)?;

    let passwd = read_etc(rootfs, "passwd")?;
    let entry = parse_passwd(passwd.as_deref().unwrap_or_default())
        .into_iter()
        .find(|p| match uid_arg {
            _ if user.is_empty() => p.uid == 0,
            Some(uid) => p.uid == uid,
            None => p.name == user,
        });
    let (uid, mut gid, name) = match entry {
        Some(p) => (p.uid, p.gid, Some(p.name)),
        None => match uid_arg {
            Some(uid) => (uid, 0, None),
            None if user.is_empty() => (0, 0, None),
            None => {
                let file = rootfs.join("etc/passwd");
                return Err(bad(match passwd {
                    Some(_) => format!("no user {user:?} in {}", file.display()),
                    None => format!("no user {user:?}: the image has no {}", file.display()),
                }));
            }
        },
    };

    let mut additional = Vec::new();
    if let Some(g) = gid_arg {
        gid = g;
    } else if !group.is_empty() {
        let text = read_etc(rootfs, "group")?;
        gid = parse_group(text.as_deref().unwrap_or_default())
            .into_iter()
            .find(|g| g.name == group)
            .map(|g| g.gid)
            .ok_or_else(|| {
                bad(format!(
                    "no group {group:?} in {}",
                    rootfs.join("etc/group").display()
                ))
            })?;
    } else if let Some(name) = &name {
        let text = read_etc(rootfs, "group")?;
        additional = parse_group(text.as_deref().unwrap_or_default())
            .into_iter()
            .filter(|g| g.members.iter().any(|m| m == name))
            .map(|g| g.gid)
            .collect();
    }
    let mut gids = vec![gid];
    for g in additional {
        if !gids.contains(&g) {
            gids.push(g);
        }
    }
    UserBuilder::default()
        .uid(uid)
        .gid(gid)
        .additional_gids(gids)
        .build()
        .map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::fs;
    use std::os::unix::fs::symlink;

    const HOST: Host = Host {
        swap_accounting: true,
    };

    fn image(config: serde_json::Value) -> ImageConfiguration {
        serde_json::from_value(json!({
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .unwrap()
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # a comment\n\
        daemon:x:1:1::/:/bin/false\n\
        broken:x:notanumber:0::/:/bin/sh\n\
        alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
        bob:x:1001:100::/home/bob:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:root,alice\nusers:x:100:\n\
        alice:x:1000:\naudio:x:29:alice, bob\n";

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        fs::write(dir.path().join("etc/group"), GROUP).unwrap();
        dir
    }

    fn spec_of(config: serde_json::Value, o: &Overrides) -> Result<Spec> {
        let root = rootfs();
        convert(&image(config), root.path(), o, &HOST)
    }

    fn process(spec: &Spec) -> &oci_spec::runtime::Process {
        spec.process().as_ref().unwrap()
    }

    fn ids(u: &User) -> (u32, u32, Vec<u32>) {
        (u.uid(), u.gid(), u.additional_gids().clone().unwrap())
    }

    fn user(spec: &str) -> Result<(u32, u32, Vec<u32>)> {
        let root = rootfs();
        resolve_user(root.path(), spec).map(|u| ids(&u))
    }

    fn msg(r: Result<impl std::fmt::Debug>) -> String {
        r.expect_err("an error").to_string()
    }

    #[test]
    fn args_are_entrypoint_then_cmd() {
        let cfg = json!({"Entrypoint": ["/bin/app", "-v"], "Cmd": ["serve", "--port=1"]});
        let s = spec_of(cfg.clone(), &Overrides::default()).unwrap();
        assert_eq!(
            process(&s).args().as_deref().unwrap(),
            ["/bin/app", "-v", "serve", "--port=1"]
        );

        let o = Overrides {
            args: Some(vec!["check".into()]),
            ..Default::default()
        };
        let s = spec_of(cfg.clone(), &o).unwrap();
        assert_eq!(
            process(&s).args().as_deref().unwrap(),
            ["/bin/app", "-v", "check"]
        );

        // A new entrypoint drops the image's Cmd.
        let o = Overrides {
            entrypoint: Some(vec!["/bin/sh".into()]),
            ..Default::default()
        };
        let s = spec_of(cfg.clone(), &o).unwrap();
        assert_eq!(process(&s).args().as_deref().unwrap(), ["/bin/sh"]);

        let o = Overrides {
            entrypoint: Some(vec![]),
            args: Some(vec!["ls".into(), "/".into()]),
            ..Default::default()
        };
        let s = spec_of(cfg, &o).unwrap();
        assert_eq!(process(&s).args().as_deref().unwrap(), ["ls", "/"]);

        let s = spec_of(json!({"Cmd": ["sh"]}), &Overrides::default()).unwrap();
        assert_eq!(process(&s).args().as_deref().unwrap(), ["sh"]);
    }

    #[test]
    fn no_command_is_an_error() {
        let e = msg(spec_of(json!({}), &Overrides::default()));
        assert!(
            e.contains("no command: the image has no Entrypoint or Cmd"),
            "{e}"
        );
        let e = msg(spec_of(json!({"Cmd": []}), &Overrides::default()));
        assert!(e.contains("no command"), "{e}");
        let o = Overrides {
            entrypoint: Some(vec![]),
            ..Default::default()
        };
        let e = msg(spec_of(json!({"Cmd": ["sh"]}), &o));
        assert!(e.contains("no command"), "{e}");
        // An image without any config section at all.
        let img: ImageConfiguration = serde_json::from_value(json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .unwrap();
        let root = rootfs();
        let e = msg(convert(&img, root.path(), &Overrides::default(), &HOST));
        assert!(e.contains("no command"), "{e}");
        let e = msg(spec_of(json!({"Cmd": ["", "x"]}), &Overrides::default()));
        assert!(e.contains("empty program name"), "{e}");
    }

    #[test]
    fn env_merges_and_defaults() {
        let cfg = json!({"Cmd": ["sh"], "Env": ["A=1", "PATH=/opt/bin", "B=2", "A=3"]});
        let s = spec_of(cfg.clone(), &Overrides::default()).unwrap();
        // The image's PATH is kept; a repeated key keeps its first place.
        assert_eq!(
            process(&s).env().as_deref().unwrap(),
            ["A=3", "PATH=/opt/bin", "B=2"]
        );

        let o = Overrides {
            env: vec!["B=x=y".into(), "C=".into(), "A".into()],
            terminal: true,
            ..Default::default()
        };
        let s = spec_of(cfg, &o).unwrap();
        assert_eq!(
            process(&s).env().as_deref().unwrap(),
            ["PATH=/opt/bin", "B=x=y", "C=", "TERM=xterm"]
        );
        assert_eq!(process(&s).terminal(), Some(true));

        let s = spec_of(json!({"Cmd": ["sh"]}), &Overrides::default()).unwrap();
        assert_eq!(process(&s).env().as_deref().unwrap(), [DEFAULT_PATH]);
        assert_eq!(process(&s).terminal(), Some(false));

        let o = Overrides {
            env: vec!["TERM=dumb".into()],
            terminal: true,
            ..Default::default()
        };
        let s = spec_of(json!({"Cmd": ["sh"]}), &o).unwrap();
        assert_eq!(
            process(&s).env().as_deref().unwrap(),
            [DEFAULT_PATH, "TERM=dumb"]
        );
    }

    #[test]
    fn bad_env_is_refused() {
        let e = msg(spec_of(
            json!({"Cmd": ["sh"], "Env": ["OK=1", "NOVALUE"]}),
            &Overrides::default(),
        ));
        assert!(e.contains("config.Env[1]") && e.contains("NOVALUE"), "{e}");
        for bad in ["=x", ""] {
            let o = Overrides {
                env: vec![bad.into()],
                ..Default::default()
            };
            let e = msg(spec_of(json!({"Cmd": ["sh"]}), &o));
            assert!(e.contains("env override"), "{e}");
        }
    }

    #[test]
    fn working_dir() {
        let s = spec_of(json!({"Cmd": ["sh"]}), &Overrides::default()).unwrap();
        assert_eq!(process(&s).cwd(), Path::new("/"));
        let s = spec_of(
            json!({"Cmd": ["sh"], "WorkingDir": "/srv/app"}),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(process(&s).cwd(), Path::new("/srv/app"));
        let o = Overrides {
            workdir: Some("/tmp".into()),
            ..Default::default()
        };
        let s = spec_of(json!({"Cmd": ["sh"], "WorkingDir": "/srv"}), &o).unwrap();
        assert_eq!(process(&s).cwd(), Path::new("/tmp"));
        let o = Overrides {
            workdir: Some("tmp".into()),
            ..Default::default()
        };
        let e = msg(spec_of(json!({"Cmd": ["sh"]}), &o));
        assert!(
            e.contains("workdir override") && e.contains("absolute"),
            "{e}"
        );
        let e = msg(spec_of(
            json!({"Cmd": ["sh"], "WorkingDir": "rel"}),
            &Overrides::default(),
        ));
        assert!(e.contains("config.WorkingDir"), "{e}");
    }

    #[test]
    fn users_resolve_through_passwd_and_group() {
        // Root by default, with the groups listing root.
        assert_eq!(user("").unwrap(), (0, 0, vec![0, 10]));
        assert_eq!(user("root").unwrap(), (0, 0, vec![0, 10]));
        assert_eq!(user("alice").unwrap(), (1000, 1000, vec![1000, 10, 29]));
        // A uid found in passwd is that user, groups included (docker).
        assert_eq!(user("1000").unwrap(), (1000, 1000, vec![1000, 10, 29]));
        assert_eq!(user("bob").unwrap(), (1001, 100, vec![100, 29]));
        // A uid passwd does not know is used as is, with gid 0.
        assert_eq!(user("4242").unwrap(), (4242, 0, vec![0]));
        // An explicit group replaces the primary one and the memberships.
        assert_eq!(user("alice:users").unwrap(), (1000, 100, vec![100]));
        assert_eq!(user("alice:77").unwrap(), (1000, 77, vec![77]));
        assert_eq!(user("4242:wheel").unwrap(), (4242, 10, vec![10]));
        assert_eq!(user("4242:4343").unwrap(), (4242, 4343, vec![4343]));
        assert_eq!(user(":wheel").unwrap(), (0, 10, vec![10]));
        assert_eq!(user("alice:").unwrap(), (1000, 1000, vec![1000, 10, 29]));
    }

    #[test]
    fn unknown_users_and_groups_are_errors() {
        let e = msg(user("carol"));
        assert!(e.contains("\"carol\"") && e.contains("etc/passwd"), "{e}");
        // A line whose uid is not a number is not a user.
        assert!(user("broken").is_err());
        let e = msg(user("alice:staff"));
        assert!(e.contains("\"staff\"") && e.contains("etc/group"), "{e}");
        let e = msg(user("99999999999"));
        assert!(e.contains("out of range"), "{e}");
        let e = msg(user("1:4294967296"));
        assert!(e.contains("out of range"), "{e}");

        // Through the conversion, the error names where the user came from.
        let e = msg(spec_of(
            json!({"Cmd": ["sh"], "User": "carol"}),
            &Overrides::default(),
        ));
        assert!(e.contains("config.User") && e.contains("carol"), "{e}");
        let o = Overrides {
            user: Some("dave".into()),
            ..Default::default()
        };
        let e = msg(spec_of(json!({"Cmd": ["sh"], "User": "alice"}), &o));
        assert!(e.contains("user override") && e.contains("dave"), "{e}");
    }

    #[test]
    fn conversion_sets_the_user() {
        let s = spec_of(
            json!({"Cmd": ["sh"], "User": "alice"}),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(ids(process(&s).user()), (1000, 1000, vec![1000, 10, 29]));
        let o = Overrides {
            user: Some("bob".into()),
            ..Default::default()
        };
        let s = spec_of(json!({"Cmd": ["sh"], "User": "alice"}), &o).unwrap();
        assert_eq!(process(&s).user().uid(), 1001);
    }

    #[test]
    fn without_etc_files_only_numbers_work() {
        let root = tempfile::tempdir().unwrap();
        let r = |spec: &str| resolve_user(root.path(), spec).map(|u| ids(&u));
        assert_eq!(r("").unwrap(), (0, 0, vec![0]));
        assert_eq!(r("1000:1000").unwrap(), (1000, 1000, vec![1000]));
        let e = msg(r("alice"));
        assert!(e.contains("has no") && e.contains("etc/passwd"), "{e}");
        let e = msg(r("1000:staff"));
        assert!(e.contains("\"staff\""), "{e}");
    }

    /// The host-side file a hostile image points its /etc/passwd at.
    fn outside_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("passwd");
        fs::write(
            &f,
            "mallory:x:4242:4343::/:/bin/sh\nroot:x:0:777::/:/bin/sh\n",
        )
        .unwrap();
        (dir, f)
    }

    #[test]
    fn passwd_symlinks_cannot_leave_the_root() {
        let (_outside, file) = outside_file();
        let depth = "../".repeat(file.components().count() + 2);
        let relative = format!(
            "{depth}{}",
            file.display().to_string().trim_start_matches('/')
        );
        for target in [file.display().to_string(), relative] {
            let root = tempfile::tempdir().unwrap();
            fs::create_dir(root.path().join("etc")).unwrap();
            symlink(&target, root.path().join("etc/passwd")).unwrap();
            symlink(&target, root.path().join("etc/group")).unwrap();
            let e = msg(resolve_user(root.path(), "mallory"));
            assert!(e.contains("no user \"mallory\""), "{target}: {e}");
            // The outside file would have given root gid 777 and uid 4242
            // gid 4343.
            let u = resolve_user(root.path(), "").unwrap();
            assert_eq!(ids(&u), (0, 0, vec![0]), "{target}");
            let u = resolve_user(root.path(), "4242").unwrap();
            assert_eq!(ids(&u), (4242, 0, vec![0]), "{target}");
        }
    }

    #[test]
    fn an_etc_symlink_cannot_leave_the_root() {
        let (outside, _file) = outside_file();
        let root = tempfile::tempdir().unwrap();
        symlink(outside.path(), root.path().join("etc")).unwrap();
        assert!(resolve_user(root.path(), "mallory").is_err());
        assert_eq!(
            ids(&resolve_user(root.path(), "").unwrap()),
            (0, 0, vec![0])
        );
    }

    #[test]
    fn in_root_symlinks_are_followed_inside_it() {
        // Absolute links resolve against the image's root, not the host's.
        let root = rootfs();
        fs::rename(
            root.path().join("etc/passwd"),
            root.path().join("etc/passwd.real"),
        )
        .unwrap();
        symlink("/etc/passwd.real", root.path().join("etc/passwd")).unwrap();
        assert_eq!(
            ids(&resolve_user(root.path(), "bob").unwrap()),
            (1001, 100, vec![100, 29])
        );
    }

    #[test]
    fn special_files_are_refused_without_blocking() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("etc")).unwrap();
        nix::unistd::mkfifo(
            &root.path().join("etc/passwd"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let e = msg(resolve_user(root.path(), "alice"));
        assert!(e.contains("not a regular file"), "{e}");
        fs::remove_file(root.path().join("etc/passwd")).unwrap();
        fs::create_dir(root.path().join("etc/passwd")).unwrap();
        let e = msg(resolve_user(root.path(), "alice"));
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn annotations_follow_the_conversion_rules() {
        let img: ImageConfiguration = serde_json::from_value(json!({
            "architecture": "arm64",
            "variant": "v8",
            "os": "linux",
            "os.version": "6.1",
            "os.features": ["a", "b"],
            "author": "someone",
            "created": "2024-01-02T03:04:05Z",
            "config": {
                "Cmd": ["sh"],
                "StopSignal": "SIGQUIT",
                "ExposedPorts": {"8080/tcp": {}, "53/udp": {}, "443/tcp": {}},
                "Volumes": {"/var/lib/b": {}, "/data": {}},
                "Labels": {"org.opencontainers.image.author": "label wins", "x": "y"},
            },
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .unwrap();
        let root = rootfs();
        let s = convert(&img, root.path(), &Overrides::default(), &HOST).unwrap();
        let a = s.annotations().clone().unwrap();
        let get = |k: &str| a.get(k).map(String::as_str);
        let p = "org.opencontainers.image.";
        assert_eq!(get(&format!("{p}os")), Some("linux"));
        assert_eq!(get(&format!("{p}architecture")), Some("arm64"));
        assert_eq!(get(&format!("{p}variant")), Some("v8"));
        assert_eq!(get(&format!("{p}os.version")), Some("6.1"));
        assert_eq!(get(&format!("{p}os.features")), Some("a,b"));
        assert_eq!(get(&format!("{p}author")), Some("label wins"));
        assert_eq!(get(&format!("{p}created")), Some("2024-01-02T03:04:05Z"));
        assert_eq!(get(&format!("{p}stopSignal")), Some("SIGQUIT"));
        assert_eq!(
            get(&format!("{p}exposedPorts")),
            Some("443/tcp,53/udp,8080/tcp")
        );
        assert_eq!(get(VOLUMES_ANNOTATION), Some("/data,/var/lib/b"));
        assert_eq!(get("x"), Some("y"));
        // Volumes are recorded, not mounted.
        let mounts = s.mounts().clone().unwrap();
        assert!(!mounts.iter().any(|m| m.destination() == Path::new("/data")));
    }

    #[test]
    fn defaults_are_berth_specs() {
        let s = spec_of(json!({"Cmd": ["sh"]}), &Overrides::default()).unwrap();
        let example = berth::spec::example(false);
        assert_eq!(s.mounts(), example.mounts());
        let linux = s.linux().as_ref().unwrap();
        let ex = example.linux().as_ref().unwrap();
        assert_eq!(linux.namespaces(), ex.namespaces());
        assert_eq!(linux.masked_paths(), ex.masked_paths());
        assert_eq!(linux.readonly_paths(), ex.readonly_paths());
        assert_eq!(linux.resources(), ex.resources());
        let caps = process(&s).capabilities().clone().unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 14);
        assert_eq!(caps.effective(), caps.bounding());
        assert_eq!(caps.permitted(), caps.bounding());
        assert!(caps.inheritable().is_none() && caps.ambient().is_none());
        assert_eq!(process(&s).no_new_privileges(), Some(false));
        assert!(linux.seccomp().is_some());
        assert_eq!(s.hostname().as_deref(), Some("berth"));
        let root = s.root().as_ref().unwrap();
        assert_eq!(root.path(), Path::new("rootfs"));
        assert_eq!(root.readonly(), Some(false));
    }

    #[test]
    fn overrides_shape_the_container() {
        let shm = bind_mount("/host/shm:/dev/shm:ro").unwrap();
        let o = Overrides {
            hostname: Some("web".into()),
            readonly_rootfs: true,
            network_host: true,
            mounts: vec![bind_mount("/srv/data:/data").unwrap(), shm.clone()],
            memory: Some(64 << 20),
            cpus: Some(1.5),
            pids: Some(100),
            ..Default::default()
        };
        let s = spec_of(json!({"Cmd": ["sh"]}), &o).unwrap();
        assert_eq!(s.hostname().as_deref(), Some("web"));
        assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
        let linux = s.linux().as_ref().unwrap();
        let ns = linux.namespaces().as_deref().unwrap();
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
        assert!(ns.iter().any(|n| n.typ() == LinuxNamespaceType::Pid));
        let mounts = s.mounts().as_deref().unwrap();
        let shms: Vec<_> = mounts
            .iter()
            .filter(|m| m.destination() == Path::new("/dev/shm"))
            .collect();
        assert_eq!(shms, [&shm], "the bind replaces the default /dev/shm");
        assert!(mounts.iter().any(|m| m.destination() == Path::new("/data")));
        let r = linux.resources().as_ref().unwrap();
        let mem = r.memory().unwrap();
        assert_eq!(mem.limit(), Some(64 << 20));
        assert_eq!(mem.swap(), Some(128 << 20));
        let cpu = r.cpu().as_ref().unwrap();
        assert_eq!(cpu.quota(), Some(150_000));
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(r.pids().unwrap().limit(), 100);
        // The default device rules stay.
        assert!(r.devices().as_ref().is_some_and(|d| !d.is_empty()));
    }

    #[test]
    fn limits_edge_cases() {
        let no_swap = Host {
            swap_accounting: false,
        };
        let m = memory(64 << 20, &no_swap).unwrap();
        assert_eq!((m.limit(), m.swap()), (Some(64 << 20), None));
        let root = rootfs();
        let o = Overrides {
            pids: Some(0),
            ..Default::default()
        };
        let s = convert(&image(json!({"Cmd": ["sh"]})), root.path(), &o, &HOST).unwrap();
        let r = s.linux().as_ref().unwrap().resources().clone().unwrap();
        assert!(r.pids().is_none(), "pids <= 0 is no limit");
        assert_eq!(cpu(0.01).unwrap().quota(), Some(1000));

        for (o, field) in [
            (
                Overrides {
                    memory: Some(1024),
                    ..Default::default()
                },
                "memory override",
            ),
            (
                Overrides {
                    memory: Some(i64::MAX),
                    ..Default::default()
                },
                "memory override",
            ),
            (
                Overrides {
                    cpus: Some(0.0),
                    ..Default::default()
                },
                "cpus override",
            ),
            (
                Overrides {
                    cpus: Some(f64::NAN),
                    ..Default::default()
                },
                "cpus override",
            ),
        ] {
            let e = msg(spec_of(json!({"Cmd": ["sh"]}), &o));
            assert!(e.contains(field), "{e}");
        }
        let o = Overrides {
            mounts: vec![MountBuilder::default()
                .destination("rel")
                .typ("bind")
                .source("/x")
                .build()
                .unwrap()],
            ..Default::default()
        };
        let e = msg(spec_of(json!({"Cmd": ["sh"]}), &o));
        assert!(e.contains("not an absolute path"), "{e}");
    }

    #[test]
    fn bind_mount_parses_host_ctr_mode() {
        let m = bind_mount("/h:/c").unwrap();
        assert_eq!(m.source().as_deref(), Some(Path::new("/h")));
        assert_eq!(m.destination(), Path::new("/c"));
        assert_eq!(m.typ().as_deref(), Some("bind"));
        assert_eq!(m.options().as_deref().unwrap(), ["rbind", "rprivate"]);
        let m = bind_mount("/h:/c:rw").unwrap();
        assert_eq!(m.options().as_deref().unwrap(), ["rbind", "rprivate"]);
        let m = bind_mount("/h:/c:ro").unwrap();
        assert_eq!(m.options().as_deref().unwrap(), ["rbind", "rprivate", "ro"]);
        for (bad, why) in [
            ("/h", "HOST:CONTAINER"),
            ("/h:/c:ro:x", "HOST:CONTAINER"),
            ("vol:/c", "named volumes"),
            (":/c", "not absolute"),
            ("/h:c", "container path"),
            ("/h:/c:rx", "neither ro nor rw"),
        ] {
            let e = msg(bind_mount(bad));
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn write_bundle_places_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("b");
        let s = spec_of(json!({"Cmd": ["sh"]}), &Overrides::default()).unwrap();
        write_bundle(&bundle, &bundle.join("rootfs"), &s).unwrap();
        let back = berth::spec::load(&bundle).unwrap();
        assert_eq!(back.root().as_ref().unwrap().path(), Path::new("rootfs"));
        assert_eq!(back.root().as_ref().unwrap().readonly(), Some(false));
        assert_eq!(back.process(), s.process());

        let elsewhere = dir.path().join("layers/merged");
        write_bundle(&bundle, &elsewhere, &s).unwrap();
        let back = berth::spec::load(&bundle).unwrap();
        assert_eq!(back.root().as_ref().unwrap().path(), &elsewhere);
        let names: Vec<_> = fs::read_dir(&bundle)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["config.json"], "no temporary file is left");
    }
}
