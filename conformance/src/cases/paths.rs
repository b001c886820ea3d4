//! config-linux.md "Masked Paths", "Readonly Paths", "Sysctl" and
//! "Personality": what the container sees at each path, each sysctl's
//! value inside, and the persona its process runs with.

use serde_json::json;

use crate::case::{ensure, eq, inside, outside, Case, Expect};

const MASKED: &str = "config-linux.md#masked-paths";
const READONLY: &str = "config-linux.md#readonly-paths";
const SYSCTL: &str = "config-linux.md#sysctl";

/// Puts a file and a directory with a secret in the case's root file system.
fn secrets(_: &mut serde_json::Value, env: &crate::case::Env) {
    let etc = env.bundle.join("rootfs/etc");
    let _ = std::fs::write(etc.join("conf-secret"), "secret\n");
    let _ = std::fs::create_dir_all(etc.join("conf-secret-dir"));
    let _ = std::fs::write(etc.join("conf-secret-dir/file"), "secret\n");
}

/// Why a case about `path` cannot run: the host kernel has no such file.
fn host_lacks(path: &str) -> Option<String> {
    (!std::path::Path::new(path).exists()).then(|| format!("the host kernel has no {path}"))
}

/// What a new network namespace holds at `/proc/sys/<key>` on this host:
/// IPv4 settings start as copies of the host's (net.core.
/// devconf_inherit_init_net), so no constant will do.
fn fresh_netns_value(key: &str) -> Result<String, String> {
    let out = std::process::Command::new("unshare")
        .args(["--net", "cat", &format!("/proc/sys/{key}")])
        .output()
        .map_err(|e| format!("run unshare --net: {e}"))?;
    ensure(out.status.success(), || {
        format!(
            "unshare --net cat /proc/sys/{key}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn cases(v: &mut Vec<Case>) {
    v.push(
        inside("maskedPaths.default-file", MASKED)
            .skip_if(|_| host_lacks("/proc/timer_list"))
            .expect("read:/proc/timer_list", eq(""))
            .expect("stat:/proc/timer_list", Expect::Contains(" 1:3".into())),
    );
    v.push(
        inside("maskedPaths.default-dir", MASKED)
            .expect("ls:/sys/firmware", eq(""))
            .expect(
                "mount:/sys/firmware",
                crate::cases::mounts::options(&["tmpfs", "ro"], &[]),
            ),
    );
    v.push(
        inside("maskedPaths.file", MASKED)
            .edit(secrets)
            .push("/linux/maskedPaths", json!("/etc/conf-secret"))
            .expect("read:/etc/conf-secret", eq("")),
    );
    v.push(
        inside("maskedPaths.dir", MASKED)
            .edit(secrets)
            .push("/linux/maskedPaths", json!("/etc/conf-secret-dir"))
            .expect("ls:/etc/conf-secret-dir", eq(""))
            .expect("create:/etc/conf-secret-dir/x", Expect::Errno("EROFS")),
    );
    v.push(
        inside("maskedPaths.missing-ignored", MASKED)
            .push("/linux/maskedPaths", json!("/conf/does/not/exist"))
            .expect("stat:/conf/does/not/exist", Expect::Errno("ENOENT")),
    );
    v.push(
        inside("maskedPaths.unmasked-without-entry", MASKED)
            .edit(secrets)
            .expect("read:/etc/conf-secret", eq("secret")),
    );
    v.push(
        inside("readonlyPaths.default-proc-sys", READONLY)
            .expect("openw:/proc/sys/kernel/hostname", Expect::Errno("EROFS"))
            .expect("read:/proc/sys/kernel/hostname", eq("conformance")),
    );
    v.push(
        inside("readonlyPaths.default-proc-irq", READONLY)
            .skip_if(|_| host_lacks("/proc/irq/default_smp_affinity"))
            .expect(
                "openw:/proc/irq/default_smp_affinity",
                Expect::Errno("EROFS"),
            ),
    );
    v.push(
        inside("readonlyPaths.dir", READONLY)
            .edit(secrets)
            .push("/linux/readonlyPaths", json!("/etc/conf-secret-dir"))
            .expect("read:/etc/conf-secret-dir/file", eq("secret"))
            .expect("create:/etc/conf-secret-dir/x", Expect::Errno("EROFS"))
            .expect("create:/etc/conf-other", eq("ok")),
    );
    v.push(
        inside("readonlyPaths.file", READONLY)
            .edit(secrets)
            .push("/linux/readonlyPaths", json!("/etc/conf-secret"))
            .expect("openw:/etc/conf-secret", Expect::Errno("EROFS"))
            .expect("read:/etc/conf-secret", eq("secret")),
    );
    v.push(
        inside("readonlyPaths.missing-ignored", READONLY)
            .push("/linux/readonlyPaths", json!("/conf/does/not/exist"))
            .expect("stat:/conf/does/not/exist", Expect::Errno("ENOENT")),
    );
    v.push(
        inside("readonlyPaths.writable-without-entry", READONLY)
            .edit(|c, _| {
                c["linux"]["readonlyPaths"] = json!([]);
            })
            .set("/process/capabilities/bounding", json!(["CAP_SYS_ADMIN"]))
            .set("/process/capabilities/effective", json!(["CAP_SYS_ADMIN"]))
            .set("/process/capabilities/permitted", json!(["CAP_SYS_ADMIN"]))
            .expect("openw:/proc/sys/kernel/hostname", eq("ok")),
    );
    for (key, value, want) in [
        ("net.ipv4.ip_forward", "1", "1"),
        ("net.core.somaxconn", "1234", "1234"),
        ("net.ipv4.ping_group_range", "0 2147483647", "0\t2147483647"),
        ("net.ipv4.tcp_syncookies", "0", "0"),
        ("kernel.shmmax", "4096000", "4096000"),
        ("kernel.msgmax", "16384", "16384"),
        ("kernel.sem", "250 32000 32 128", "250\t32000\t32\t128"),
        ("fs.mqueue.queues_max", "128", "128"),
    ] {
        v.push(
            inside(format!("sysctl.{key}"), SYSCTL)
                .edit(move |c, _| {
                    c["linux"]["sysctl"] = json!({ key: value });
                })
                .expect(format!("sysctl:{key}"), eq(want)),
        );
    }
    v.push(
        inside("sysctl.kernel.domainname", SYSCTL)
            .set("/linux/sysctl", json!({"kernel.domainname": "conf-sysctl"}))
            .expect("domainname", eq("conf-sysctl")),
    );
    v.push(inside("sysctl.not-set-stays-default", SYSCTL).expect(
        "sysctl:net.ipv4.ip_forward",
        Expect::Custom(Box::new(|got, _| {
            let want = fresh_netns_value("net/ipv4/ip_forward")?;
            ensure(got == want, || {
                format!("got {got:?}, want {want:?} (a new network namespace's value)")
            })
        })),
    ));
    v.push(outside("sysctl.host-wide-refused", SYSCTL, |ctx| {
        let id = ctx.id();
        let b = ctx.bundle(&["true"], |c| {
            c["linux"]["sysctl"] = json!({"kernel.pid_max": "40000"});
        })?;
        let before = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap_or_default();
        ctx.cmd(&["create", "--bundle", &b.display().to_string(), &id])
            .fails()?;
        let after = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap_or_default();
        ensure(before == after, || {
            format!("the host's kernel.pid_max changed: {before} -> {after}")
        })
    }));
    v.push(outside("sysctl.net-without-netns-refused", SYSCTL, |ctx| {
        let id = ctx.id();
        let b = ctx.bundle(&["true"], |c| {
            c["linux"]["sysctl"] = json!({"net.core.somaxconn": "1234"});
            if let Some(ns) = c["linux"]["namespaces"].as_array_mut() {
                ns.retain(|n| n["type"] != "network");
            }
        })?;
        let before = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap_or_default();
        ctx.cmd(&["create", "--bundle", &b.display().to_string(), &id])
            .fails()?;
        let after = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap_or_default();
        ensure(before == after, || {
            format!("the host's net.core.somaxconn changed: {before} -> {after}")
        })
    }));
    v.push(
        inside("personality.LINUX32", "config-linux.md#personality")
            .set("/linux/personality", json!({"domain": "LINUX32"}))
            .expect("personality", eq("0x8"))
            .expect("machine", eq("i686")),
    );
    v.push(
        inside("personality.LINUX", "config-linux.md#personality")
            .set("/linux/personality", json!({"domain": "LINUX"}))
            .expect("personality", eq("0x0"))
            .expect("machine", eq("x86_64")),
    );
}
