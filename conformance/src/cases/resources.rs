//! config-linux.md "Control groups" and its controllers (memory, CPU,
//! block IO, pids): each limit, read back from inside the container
//! through its /sys/fs/cgroup, and the container's cgroup from outside.
//! A probe names the v1 and the v2 file; the checker reads whichever
//! hierarchy the container sees.

use serde_json::{json, Value};

use crate::case::{ensure, eq, inside, outside, Case, Env, Expect};

const CGROUPS: &str = "config-linux.md#control-groups";

fn with(name: &str, section: &'static str, pointer: &'static str, v: Value) -> Case {
    inside(format!("resources.{name}"), section).set(pointer, v)
}

/// Expects `v1` on a v1 host, `v2` otherwise.
fn by_version(v1: &'static str, v2: &'static str) -> Expect {
    Expect::Custom(Box::new(move |got, env| {
        let want = if env.host.cgroup_v1 { v1 } else { v2 };
        ensure(got == want, || format!("got {got:?}, want {want:?}"))
    }))
}

fn v2_only(env: &Env) -> Option<String> {
    env.host
        .cgroup_v1
        .then(|| "a cgroup v2 file; this host's controllers are v1".into())
}

fn v1_only(env: &Env) -> Option<String> {
    (!env.host.cgroup_v1).then(|| "a cgroup v1 setting; this host runs v2".into())
}

/// `major:minor` of a block device the host has (a disk if any).
fn block_device() -> String {
    let mut all: Vec<(bool, String)> = std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let dev = std::fs::read_to_string(e.path().join("dev")).ok()?;
            let loop_ = e.file_name().to_string_lossy().starts_with("loop");
            Some((loop_, dev.trim().to_string()))
        })
        .collect();
    all.sort();
    all.into_iter().next().map(|(_, d)| d).unwrap_or_default()
}

fn throttle(field: &'static str, v1_file: &'static str, v2_key: &'static str) -> Case {
    inside(
        format!("resources.blockIO.{field}"),
        "config-linux.md#block-io",
    )
    .skip_if(|_| block_device().is_empty().then(|| "no block device".into()))
    .edit(move |c, _| {
        let (major, minor) = block_device()
            .split_once(':')
            .map(|(a, b)| (a.parse::<i64>().unwrap_or(0), b.parse::<i64>().unwrap_or(0)))
            .unwrap_or((0, 0));
        c["linux"]["resources"]["blockIO"][field] =
            json!([{"major": major, "minor": minor, "rate": 1048576}]);
    })
    .expect(
        format!("cgroup:blkio/{v1_file}|io.max"),
        Expect::Custom(Box::new(move |got, env| {
            let dev = block_device();
            if env.host.cgroup_v1 {
                let want = format!("{dev} 1048576");
                ensure(got == want, || format!("got {got:?}, want {want:?}"))
            } else {
                let want = format!("{v2_key}=1048576");
                ensure(got.starts_with(&dev) && got.contains(&want), || {
                    format!("got {got:?}, want {dev} with {want}")
                })
            }
        })),
    )
}

pub fn cases(v: &mut Vec<Case>) {
    v.push(
        inside("resources.cgroup.holds-the-process", CGROUPS)
            .expect("cgroup:pids/cgroup.procs|cgroup.procs", eq("1")),
    );
    v.push(
        with(
            "memory.limit",
            "config-linux.md#memory",
            "/linux/resources/memory/limit",
            json!(104857600),
        )
        .expect(
            "cgroup:memory/memory.limit_in_bytes|memory.max",
            eq("104857600"),
        ),
    );
    v.push(
        with(
            "memory.reservation",
            "config-linux.md#memory",
            "/linux/resources/memory/reservation",
            json!(52428800),
        )
        .expect(
            "cgroup:memory/memory.soft_limit_in_bytes|memory.low",
            eq("52428800"),
        ),
    );
    v.push(
        with(
            "memory.swap",
            "config-linux.md#memory",
            "/linux/resources/memory/limit",
            json!(104857600),
        )
        .set("/linux/resources/memory/swap", json!(209715200))
        .skip_if(|env| {
            (env.host.cgroup_v1
                && !std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
                    .exists())
            .then(|| "the kernel does not account swap".into())
        })
        .expect(
            "cgroup:memory/memory.memsw.limit_in_bytes|memory.swap.max",
            by_version("209715200", "104857600"),
        ),
    );
    v.push(
        with(
            "memory.swappiness",
            "config-linux.md#memory",
            "/linux/resources/memory/swappiness",
            json!(10),
        )
        .skip_if(v1_only)
        .expect("cgroup:memory/memory.swappiness", eq("10")),
    );
    v.push(
        with(
            "memory.disableOOMKiller",
            "config-linux.md#memory",
            "/linux/resources/memory/disableOOMKiller",
            json!(true),
        )
        .skip_if(v1_only)
        .expect(
            "cgroup:memory/memory.oom_control",
            Expect::Contains("oom_kill_disable 1".into()),
        ),
    );
    v.push(
        inside("resources.memory.unlimited", "config-linux.md#memory").expect(
            "cgroup:memory/memory.limit_in_bytes|memory.max",
            by_version("9223372036854771712", "max"),
        ),
    );
    v.push(
        with(
            "cpu.shares",
            "config-linux.md#cpu",
            "/linux/resources/cpu/shares",
            json!(512),
        )
        .expect("cgroup:cpu/cpu.shares|cpu.weight", by_version("512", "20")),
    );
    v.push(
        with(
            "cpu.quota",
            "config-linux.md#cpu",
            "/linux/resources/cpu/quota",
            json!(50000),
        )
        .set("/linux/resources/cpu/period", json!(100000))
        .expect(
            "cgroup:cpu/cpu.cfs_quota_us|cpu.max",
            by_version("50000", "50000 100000"),
        ),
    );
    v.push(
        with(
            "cpu.period",
            "config-linux.md#cpu",
            "/linux/resources/cpu/period",
            json!(50000),
        )
        .set("/linux/resources/cpu/quota", json!(25000))
        .expect(
            "cgroup:cpu/cpu.cfs_period_us|cpu.max",
            by_version("50000", "25000 50000"),
        ),
    );
    v.push(
        inside("resources.cpu.no-quota", "config-linux.md#cpu").expect(
            "cgroup:cpu/cpu.cfs_quota_us|cpu.max",
            by_version("-1", "max 100000"),
        ),
    );
    v.push(
        with(
            "cpu.cpus",
            "config-linux.md#cpu",
            "/linux/resources/cpu/cpus",
            json!("0"),
        )
        .expect("cgroup:cpuset/cpuset.cpus|cpuset.cpus", eq("0"))
        .expect("status:Cpus_allowed_list", eq("0")),
    );
    v.push(
        with(
            "cpu.mems",
            "config-linux.md#cpu",
            "/linux/resources/cpu/mems",
            json!("0"),
        )
        .expect("cgroup:cpuset/cpuset.mems|cpuset.mems", eq("0")),
    );
    v.push(
        with(
            "pids.limit",
            "config-linux.md#pids",
            "/linux/resources/pids/limit",
            json!(64),
        )
        .expect("cgroup:pids/pids.max|pids.max", eq("64")),
    );
    v.push(
        with(
            "pids.unlimited",
            "config-linux.md#pids",
            "/linux/resources/pids/limit",
            json!(-1),
        )
        .expect("cgroup:pids/pids.max|pids.max", eq("max")),
    );
    v.push(throttle(
        "throttleReadBpsDevice",
        "blkio.throttle.read_bps_device",
        "rbps",
    ));
    v.push(throttle(
        "throttleWriteBpsDevice",
        "blkio.throttle.write_bps_device",
        "wbps",
    ));
    v.push(throttle(
        "throttleReadIOPSDevice",
        "blkio.throttle.read_iops_device",
        "riops",
    ));
    v.push(throttle(
        "throttleWriteIOPSDevice",
        "blkio.throttle.write_iops_device",
        "wiops",
    ));
    v.push(
        with(
            "unified",
            "config-linux.md#unified",
            "/linux/resources/unified",
            json!({"pids.max": "42"}),
        )
        .skip_if(v2_only)
        .expect("cgroup:pids.max", eq("42")),
    );
    v.push(outside(
        "resources.cgroupsPath",
        "config-linux.md#cgroups-path",
        |ctx| {
            let id = ctx.id();
            let b = ctx.bundle(&["sleep", "100"], |_| {})?;
            ctx.cmd(&["create", "--bundle", &b.display().to_string(), &id])
                .ok()?;
            let pid = ctx.state(&id)?["pid"].as_i64().unwrap_or(0);
            let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .map_err(|e| format!("/proc/{pid}/cgroup: {e}"))?;
            let want = ctx.env.cgroups_path.clone();
            ensure(cg.lines().any(|l| l.ends_with(&format!(":{want}"))), || {
                format!("{pid} is not in {want}: {cg}")
            })?;
            ctx.cmd(&["delete", "--force", &id]).ok()?;
            let left: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join(want.trim_start_matches('/')))
                .filter(|p| p.exists())
                .map(|p| p.display().to_string())
                .collect();
            ensure(left.is_empty(), || format!("delete left {left:?}"))
        },
    ));
    v.push(outside(
        "resources.update-while-running",
        "config-linux.md#control-groups",
        |ctx| {
            // `update` is runc's, outside the spec's operations; the
            // resources it changes are the spec's.
            let id = ctx.id();
            let b = ctx.bundle(&["sleep", "100"], |c| {
                c["linux"]["resources"]["pids"] = json!({"limit": 64});
            })?;
            ctx.cmd(&["create", "--bundle", &b.display().to_string(), &id])
                .ok()?;
            ctx.cmd(&["update", "--pids-limit", "99", &id]).ok()?;
            let pid = ctx.state(&id)?["pid"].as_i64().unwrap_or(0);
            let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            let rel = cg
                .lines()
                .find_map(|l| {
                    let mut f = l.splitn(3, ':');
                    let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
                    (ctl.split(',').any(|c| c == "pids") || ctl.is_empty()).then_some(path)
                })
                .unwrap_or("")
                .to_string();
            let file = if ctx.env.host.cgroup_v1 {
                format!("/sys/fs/cgroup/pids{rel}/pids.max")
            } else {
                format!("/sys/fs/cgroup{rel}/pids.max")
            };
            let got = std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?;
            ensure(got.trim() == "99", || format!("{file}: {got:?}"))
        },
    ));
}
