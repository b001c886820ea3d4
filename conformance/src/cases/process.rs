//! config.md "Process": args, env, cwd, user, umask, rlimits,
//! noNewPrivileges, oomScoreAdj, capabilities; "Hostname" and
//! "Domainname"; "Root" readonly.

use serde_json::json;

use crate::case::{eq, inside, Case, Expect};

pub fn cases(v: &mut Vec<Case>) {
    v.push(
        inside("process.args", "config.md#process")
            .expect("pid", eq("1"))
            .expect("ppid", eq("0")),
    );
    v.push(
        inside("process.env", "config.md#process")
            .push("/process/env", json!("CONFORMANCE=yes"))
            .push("/process/env", json!("EMPTY="))
            .expect("env:CONFORMANCE", eq("yes"))
            .expect("env:EMPTY", eq(""))
            .expect("env:TERM", eq("xterm")),
    );
    v.push(
        inside("process.cwd", "config.md#process")
            .set("/process/cwd", json!("/tmp"))
            .expect("cwd", eq("/tmp")),
    );
    v.push(
        inside("process.cwd.created", "config.md#process")
            .set("/process/cwd", json!("/does/not/exist/yet"))
            .expect("cwd", eq("/does/not/exist/yet")),
    );
    v.push(
        inside("process.cwd.created-readonly-root", "config.md#process")
            .set("/process/cwd", json!("/made/before/readonly"))
            .set("/root/readonly", json!(true))
            .expect("cwd", eq("/made/before/readonly")),
    );
    v.push(
        inside("process.user.uid", "config.md#user")
            .set("/process/user/uid", json!(1000))
            .expect("uid", eq("1000"))
            .expect("gid", eq("0")),
    );
    v.push(
        inside("process.user.gid", "config.md#user")
            .set("/process/user/gid", json!(1000))
            .expect("gid", eq("1000")),
    );
    v.push(
        inside("process.user.additionalGids", "config.md#user")
            .set("/process/user/additionalGids", json!([5, 100, 1000]))
            .expect("groups", eq("5,100,1000")),
    );
    v.push(
        inside("process.user.no-additionalGids", "config.md#user")
            .set("/process/user/uid", json!(1000))
            .set("/process/user/gid", json!(1000))
            .expect("groups", eq("")),
    );
    v.push(
        inside("process.user.umask", "config.md#user")
            .set("/process/user/umask", json!(0o077))
            .expect("umask", eq("0077")),
    );
    v.push(inside("process.user.umask.default", "config.md#user").expect("umask", eq("0022")));
    for (name, soft, hard) in [
        ("RLIMIT_NOFILE", 123u64, 456u64),
        ("RLIMIT_NPROC", 1000, 2000),
        ("RLIMIT_CORE", 0, 4096),
        ("RLIMIT_MEMLOCK", 65536, 65536),
        ("RLIMIT_STACK", 8 << 20, 16 << 20),
        ("RLIMIT_CPU", 100, 200),
        ("RLIMIT_FSIZE", 1 << 30, 1 << 30),
        ("RLIMIT_MSGQUEUE", 8192, 16384),
        ("RLIMIT_SIGPENDING", 100, 100),
        ("RLIMIT_NICE", 0, 0),
        ("RLIMIT_RTPRIO", 0, 0),
        ("RLIMIT_AS", 1 << 40, 1 << 40),
    ] {
        v.push(
            inside(format!("process.rlimits.{name}"), "config.md#posix-process")
                .edit(move |c, _| {
                    c["process"]["rlimits"] = json!([{"type": name, "soft": soft, "hard": hard}]);
                })
                .expect(format!("rlimit:{name}"), eq(format!("{soft} {hard}"))),
        );
    }
    v.push(
        inside("process.noNewPrivileges.true", "config.md#linux-process")
            .expect("status:NoNewPrivs", eq("1")),
    );
    v.push(
        inside("process.noNewPrivileges.false", "config.md#linux-process")
            .set("/process/noNewPrivileges", json!(false))
            .expect("status:NoNewPrivs", eq("0")),
    );
    v.push(
        inside("process.oomScoreAdj", "config.md#linux-process")
            .set("/process/oomScoreAdj", json!(500))
            .expect("oom", eq("500")),
    );
    // CAP_AUDIT_WRITE (29), CAP_KILL (5), CAP_NET_BIND_SERVICE (10).
    let default = "0000000020000420";
    for (set, field) in [
        ("bounding", "CapBnd"),
        ("effective", "CapEff"),
        ("permitted", "CapPrm"),
    ] {
        v.push(
            inside(
                format!("process.capabilities.{set}"),
                "config.md#linux-process",
            )
            .expect(format!("status:{field}"), eq(default)),
        );
    }
    v.push(
        inside(
            "process.capabilities.inheritable",
            "config.md#linux-process",
        )
        .set("/process/capabilities/inheritable", json!(["CAP_KILL"]))
        .expect("status:CapInh", eq("0000000000000020")),
    );
    v.push(
        inside("process.capabilities.ambient", "config.md#linux-process")
            .set("/process/capabilities/inheritable", json!(["CAP_KILL"]))
            .set("/process/capabilities/ambient", json!(["CAP_KILL"]))
            .set("/process/user/uid", json!(1000))
            .expect("status:CapAmb", eq("0000000000000020"))
            .expect("status:CapEff", eq("0000000000000020")),
    );
    v.push(
        inside("process.capabilities.none", "config.md#linux-process")
            .edit(|c, _| {
                c["process"]["capabilities"] =
                    json!({"bounding": [], "effective": [], "permitted": []})
            })
            .expect("status:CapBnd", eq("0000000000000000"))
            .expect("status:CapEff", eq("0000000000000000")),
    );
    v.push(
        inside("process.capabilities.sys_admin", "config.md#linux-process")
            .edit(|c, _| {
                let caps = json!(["CAP_SYS_ADMIN"]);
                c["process"]["capabilities"] =
                    json!({"bounding": caps, "effective": caps, "permitted": caps})
            })
            .expect("status:CapEff", eq("0000000000200000"))
            .expect("sethostname:conf-sysadmin", eq("ok")),
    );
    v.push(
        inside("process.capabilities.dropped", "config.md#linux-process")
            .expect("sethostname:conf-nope", Expect::Errno("EPERM")),
    );
    v.push(
        inside("hostname", "config.md#hostname")
            .set("/hostname", json!("conf-host"))
            .expect("hostname", eq("conf-host")),
    );
    v.push(
        inside("domainname", "config.md#domainname")
            .set("/domainname", json!("conf.example"))
            .expect("domainname", eq("conf.example")),
    );
    v.push(
        inside("root.readonly", "config.md#root")
            .set("/root/readonly", json!(true))
            .expect("create:/conformance-file", Expect::Errno("EROFS"))
            .expect("mount:/", Expect::Custom(Box::new(|got, _| ro(got)))),
    );
    v.push(inside("root.writable", "config.md#root").expect("create:/conformance-file", eq("ok")));
    v.push(
        inside("root.readonly.tmpfs-still-writable", "config.md#root")
            .set("/root/readonly", json!(true))
            .expect("create:/dev/shm/x", eq("ok")),
    );
}

/// The mount options (second field of a `mount:` answer) include `ro`.
fn ro(got: &str) -> Result<(), String> {
    let opts = got.split(' ').nth(1).unwrap_or("");
    if opts.split(',').any(|o| o == "ro") {
        Ok(())
    } else {
        Err(format!("mount options {opts:?} lack ro"))
    }
}
