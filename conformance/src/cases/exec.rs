//! A second process in a running container (runc's `exec`, how managers
//! run `docker exec`): it joins the container's namespaces and cgroup and
//! gets the container's confinement, with config.md "Process" fields for
//! its own args, env, cwd and user.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::case::{ensure, outside, Case, Ctx, Report};
use crate::driver::CHECKER_PATH;

const PROCESS: &str = "config.md#process";

/// A running container (its process sleeps) built with `edit`.
fn running(ctx: &mut Ctx, edit: impl Fn(&mut Value)) -> Result<(String, i64), String> {
    let id = ctx.id();
    let b = ctx.bundle(&["sleep", "100"], edit)?;
    ctx.cmd(&["create", "--bundle", &b.display().to_string(), &id])
        .ok()?;
    ctx.cmd(&["start", &id]).ok()?;
    let pid = ctx.state(&id)?["pid"].as_i64().unwrap_or(0);
    Ok((id, pid))
}

/// `exec [flags] id checker probes...`: the probes' answers.
fn probe(
    ctx: &Ctx,
    id: &str,
    flags: &[&str],
    probes: &[&str],
) -> Result<BTreeMap<String, String>, String> {
    let mut args = vec!["exec"];
    args.extend_from_slice(flags);
    args.push(id);
    args.push(CHECKER_PATH);
    args.extend_from_slice(probes);
    let out = ctx.cmd(&args);
    out.ok()?;
    Ok(Report::from_output(&out).probes)
}

fn want(got: &BTreeMap<String, String>, probe: &str, value: &str) -> Result<(), String> {
    let g = got.get(probe).map(String::as_str).unwrap_or("(no answer)");
    ensure(g == value, || format!("{probe}: got {g:?}, want {value:?}"))
}

pub fn cases(v: &mut Vec<Case>) {
    v.push(outside("exec.joins-namespaces", PROCESS, |ctx| {
        let (id, pid) = running(ctx, |_| {})?;
        let types = ["pid", "net", "ipc", "uts", "mnt"];
        let probes: Vec<String> = types.iter().map(|t| format!("ns:{t}")).collect();
        let probes: Vec<&str> = probes.iter().map(String::as_str).collect();
        let got = probe(ctx, &id, &[], &probes)?;
        for t in types {
            let init = std::fs::read_link(format!("/proc/{pid}/ns/{t}"))
                .map_err(|e| format!("/proc/{pid}/ns/{t}: {e}"))?;
            want(&got, &format!("ns:{t}"), &init.display().to_string())?;
        }
        Ok(())
    }));
    v.push(outside("exec.joins-cgroup", PROCESS, |ctx| {
        let (id, pid) = running(ctx, |_| {})?;
        let got = probe(ctx, &id, &[], &["read:/proc/self/cgroup"])?;
        let init = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map_err(|e| format!("/proc/{pid}/cgroup: {e}"))?;
        want(
            &got,
            "read:/proc/self/cgroup",
            &init.trim_end().replace('\n', "\\n"),
        )
    }));
    v.push(outside("exec.pid-inside", PROCESS, |ctx| {
        let (id, _) = running(ctx, |_| {})?;
        let got = probe(ctx, &id, &[], &["pid", "ppid"])?;
        want(&got, "ppid", "0")?;
        ensure(got.get("pid").is_some_and(|p| p != "1"), || {
            format!("pid {:?}", got.get("pid"))
        })
    }));
    v.push(outside("exec.exit-status", PROCESS, |ctx| {
        let (id, _) = running(ctx, |_| {})?;
        let out = ctx.cmd(&["exec", &id, "sh", "-c", "exit 7"]);
        ensure(out.code == 7, || {
            format!("exec exited {}, want 7", out.code)
        })
    }));
    v.push(outside("exec.env-cwd-user", PROCESS, |ctx| {
        let (id, _) = running(ctx, |_| {})?;
        let got = probe(
            ctx,
            &id,
            &["--env", "CONF=exec", "--cwd", "/tmp", "--user", "1000:1001"],
            &["env:CONF", "cwd", "uid", "gid"],
        )?;
        want(&got, "env:CONF", "exec")?;
        want(&got, "cwd", "/tmp")?;
        want(&got, "uid", "1000")?;
        want(&got, "gid", "1001")
    }));
    v.push(outside("exec.process-json", PROCESS, |ctx| {
        let (id, _) = running(ctx, |_| {})?;
        let p = ctx.env.scratch.join("process.json");
        let process = json!({
            "args": [CHECKER_PATH, "uid", "groups", "env:CONF", "cwd"],
            "env": ["PATH=/bin", "CONF=json"],
            "cwd": "/etc",
            "user": {"uid": 1234, "gid": 1234, "additionalGids": [5, 6]},
        });
        std::fs::write(&p, process.to_string()).map_err(|e| e.to_string())?;
        let out = ctx.cmd(&["exec", "--process", &p.display().to_string(), &id]);
        out.ok()?;
        let got = Report::from_output(&out).probes;
        want(&got, "uid", "1234")?;
        want(&got, "groups", "5,6")?;
        want(&got, "env:CONF", "json")?;
        want(&got, "cwd", "/etc")
    }));
    v.push(outside("exec.inherits-capabilities", PROCESS, |ctx| {
        let (id, pid) = running(ctx, |_| {})?;
        let got = probe(ctx, &id, &[], &["status:CapBnd", "status:CapEff"])?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        for f in ["CapBnd", "CapEff"] {
            let init = status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{f}:")))
                .unwrap_or("")
                .trim();
            want(&got, &format!("status:{f}"), init)?;
        }
        Ok(())
    }));
    v.push(outside("exec.inherits-seccomp", PROCESS, |ctx| {
        let (id, _) = running(ctx, |c| {
            c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO"}]});
        })?;
        let got = probe(ctx, &id, &[], &["status:Seccomp", "syscall:110"])?;
        want(&got, "status:Seccomp", "2")?;
        want(&got, "syscall:110", "!EPERM")
    }));
    v.push(outside("exec.inherits-rlimits", PROCESS, |ctx| {
        let (id, _) = running(ctx, |c| {
            c["process"]["rlimits"] = json!([{"type": "RLIMIT_NPROC", "soft": 1000, "hard": 2000}]);
        })?;
        let got = probe(ctx, &id, &[], &["rlimit:NPROC"])?;
        want(&got, "rlimit:NPROC", "1000 2000")
    }));
    v.push(outside("exec.inherits-noNewPrivileges", PROCESS, |ctx| {
        let (id, _) = running(ctx, |_| {})?;
        let got = probe(ctx, &id, &[], &["status:NoNewPrivs"])?;
        want(&got, "status:NoNewPrivs", "1")
    }));
    v.push(outside("exec.into-created", PROCESS, |ctx| {
        let id = ctx.id();
        let b = ctx.bundle(&["sleep", "100"], |_| {})?;
        ctx.cmd(&["create", "--bundle", &b.display().to_string(), &id])
            .ok()?;
        let got = probe(ctx, &id, &[], &["hostname"])?;
        want(&got, "hostname", "conformance")?;
        ensure(ctx.status(&id)? == "created", || {
            "exec started the container".into()
        })
    }));
    v.push(outside("exec.into-stopped-refused", PROCESS, |ctx| {
        let id = ctx.id();
        let b = ctx.bundle(&["true"], |_| {})?;
        ctx.cmd(&["create", "--bundle", &b.display().to_string(), &id])
            .ok()?;
        ctx.cmd(&["start", &id]).ok()?;
        ctx.wait_status(&id, "stopped")?;
        ctx.cmd(&["exec", &id, "true"]).fails().map(|_| ())
    }));
    v.push(outside("exec.unknown-container-refused", PROCESS, |ctx| {
        ctx.cmd(&["exec", "conformance-no-such-container", "true"])
            .fails()
            .map(|_| ())
    }));
}
