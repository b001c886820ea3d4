//! runtime.md "State", "Lifecycle" and "Operations", checked from outside
//! through the runtime's commands: each status, each invalid transition
//! refused, kill delivering signals, delete cleaning up.

use serde_json::json;

use crate::case::{ensure, outside, Case, Ctx};

/// A container created from a bundle running `args`.
fn created(ctx: &mut Ctx, args: &[&str]) -> Result<String, String> {
    let id = ctx.id();
    let b = ctx.bundle(args, |_| {})?;
    ctx.cmd(&["create", "--bundle", &b.display().to_string(), &id])
        .ok()?;
    Ok(id)
}

fn running(ctx: &mut Ctx, args: &[&str]) -> Result<String, String> {
    let id = created(ctx, args)?;
    ctx.cmd(&["start", &id]).ok()?;
    Ok(id)
}

pub fn cases(v: &mut Vec<Case>) {
    v.push(outside("state.created", "runtime.md#state", |ctx| {
        let id = created(ctx, &["sleep", "100"])?;
        let s = ctx.state(&id)?;
        ensure(s["status"] == "created", || {
            format!("status {}", s["status"])
        })?;
        ensure(s["id"] == id.as_str(), || format!("id {}", s["id"]))?;
        ensure(s["pid"].as_i64().unwrap_or(0) > 0, || {
            format!("pid {}", s["pid"])
        })?;
        ensure(s["ociVersion"].is_string(), || "no ociVersion".into())?;
        let bundle = ctx.env.bundle.display().to_string();
        ensure(s["bundle"] == bundle.as_str(), || {
            format!("bundle {} (want {bundle})", s["bundle"])
        })
    }));
    v.push(outside(
        "state.pid-is-the-container-process",
        "runtime.md#state",
        |ctx| {
            let id = created(ctx, &["sleep", "100"])?;
            let pid = ctx.state(&id)?["pid"].as_i64().unwrap_or(0);
            let link = std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                .map_err(|e| format!("/proc/{pid}: {e}"))?;
            ensure(link.display().to_string() != ctx.env.host.ns("pid"), || {
                format!("pid {pid} is in the host's pid namespace")
            })
        },
    ));
    v.push(outside("state.annotations", "runtime.md#state", |ctx| {
        let id = ctx.id();
        let b = ctx.bundle(&["sleep", "100"], |c| {
            c["annotations"] = json!({"org.conformance.key": "value"});
        })?;
        ctx.cmd(&["create", "--bundle", &b.display().to_string(), &id])
            .ok()?;
        let s = ctx.state(&id)?;
        ensure(s["annotations"]["org.conformance.key"] == "value", || {
            format!("annotations {}", s["annotations"])
        })
    }));
    v.push(outside(
        "lifecycle.program-waits-for-start",
        "runtime.md#lifecycle",
        |ctx| {
            let id = ctx.id();
            let b = ctx.bundle(&["sh", "-c", "touch /started; sleep 100"], |_| {})?;
            ctx.cmd(&["create", "--bundle", &b.display().to_string(), &id])
                .ok()?;
            std::thread::sleep(std::time::Duration::from_millis(200));
            let mark = b.join("rootfs/started");
            ensure(!mark.exists(), || "the program ran before start".into())?;
            ctx.cmd(&["start", &id]).ok()?;
            ctx.wait_file(&mark)?;
            ctx.wait_status(&id, "running")
        },
    ));
    v.push(outside("state.running", "runtime.md#state", |ctx| {
        let id = running(ctx, &["sleep", "100"])?;
        ctx.wait_status(&id, "running")
    }));
    v.push(outside("state.stopped", "runtime.md#state", |ctx| {
        let id = running(ctx, &["true"])?;
        ctx.wait_status(&id, "stopped")
    }));
    v.push(outside("start.twice-fails", "runtime.md#start", |ctx| {
        let id = running(ctx, &["sleep", "100"])?;
        ctx.cmd(&["start", &id]).fails()?;
        ctx.wait_status(&id, "running")
    }));
    v.push(outside("start.stopped-fails", "runtime.md#start", |ctx| {
        let id = running(ctx, &["true"])?;
        ctx.wait_status(&id, "stopped")?;
        ctx.cmd(&["start", &id]).fails().map(|_| ())
    }));
    v.push(outside("start.unknown-fails", "runtime.md#start", |ctx| {
        ctx.cmd(&["start", "conformance-no-such-id"])
            .fails()
            .map(|_| ())
    }));
    v.push(outside(
        "state.unknown-fails",
        "runtime.md#query-state",
        |ctx| {
            ctx.cmd(&["state", "conformance-no-such-id"])
                .fails()
                .map(|_| ())
        },
    ));
    v.push(outside(
        "create.existing-id-fails",
        "runtime.md#create",
        |ctx| {
            let id = created(ctx, &["sleep", "100"])?;
            let b = ctx.bundle_at("second", &["sleep", "100"], |_| {})?;
            ctx.cmd(&["create", "--bundle", &b.display().to_string(), &id])
                .fails()?;
            ensure(ctx.status(&id)? == "created", || {
                "the first container changed".into()
            })
        },
    ));
    v.push(outside(
        "create.bad-config-fails-cleanly",
        "runtime.md#create",
        |ctx| {
            let id = ctx.id();
            let b = ctx.bundle(&["true"], |c| {
                c["process"]["cwd"] = json!("relative/path");
            })?;
            ctx.cmd(&["create", "--bundle", &b.display().to_string(), &id])
                .fails()?;
            ctx.cmd(&["state", &id]).fails().map(|_| ())
        },
    ));
    v.push(outside(
        "create.missing-program-fails",
        "runtime.md#create",
        |ctx| {
            let id = ctx.id();
            let b = ctx.bundle(&["/no/such/program"], |_| {})?;
            let created = ctx.cmd(&["create", "--bundle", &b.display().to_string(), &id]);
            // The error may come at create or at start; either way it must come.
            if created.success() {
                ctx.cmd(&["start", &id]).fails()?;
            }
            Ok(())
        },
    ));
    v.push(outside("kill.delivers-signal", "runtime.md#kill", |ctx| {
        let id = running(
            ctx,
            &[
                "sh",
                "-c",
                "trap 'touch /got-usr1; exit 0' USR1; touch /ready; while :; do sleep 0.1; done",
            ],
        )?;
        let root = ctx.env.bundle.join("rootfs");
        ctx.wait_file(&root.join("ready"))?;
        ctx.cmd(&["kill", &id, "USR1"]).ok()?;
        ctx.wait_file(&root.join("got-usr1"))?;
        ctx.wait_status(&id, "stopped")
    }));
    v.push(outside("kill.default-is-term", "runtime.md#kill", |ctx| {
        let id = running(
            ctx,
            &[
                "sh",
                "-c",
                "trap 'touch /got-term; exit 0' TERM; touch /ready; while :; do sleep 0.1; done",
            ],
        )?;
        let root = ctx.env.bundle.join("rootfs");
        ctx.wait_file(&root.join("ready"))?;
        ctx.cmd(&["kill", &id]).ok()?;
        ctx.wait_file(&root.join("got-term"))
    }));
    v.push(outside("kill.numeric-signal", "runtime.md#kill", |ctx| {
        let id = running(ctx, &["sleep", "100"])?;
        ctx.cmd(&["kill", &id, "9"]).ok()?;
        ctx.wait_status(&id, "stopped")
    }));
    v.push(outside("kill.created", "runtime.md#kill", |ctx| {
        let id = created(ctx, &["sleep", "100"])?;
        ctx.cmd(&["kill", &id, "KILL"]).ok()?;
        ctx.wait_status(&id, "stopped")
    }));
    v.push(outside("kill.stopped-fails", "runtime.md#kill", |ctx| {
        let id = running(ctx, &["true"])?;
        ctx.wait_status(&id, "stopped")?;
        ctx.cmd(&["kill", &id, "KILL"]).fails().map(|_| ())
    }));
    v.push(outside("kill.unknown-fails", "runtime.md#kill", |ctx| {
        ctx.cmd(&["kill", "conformance-no-such-id", "KILL"])
            .fails()
            .map(|_| ())
    }));
    v.push(outside(
        "delete.running-fails",
        "runtime.md#delete",
        |ctx| {
            let id = running(ctx, &["sleep", "100"])?;
            ctx.cmd(&["delete", &id]).fails()?;
            ctx.wait_status(&id, "running")
        },
    ));
    v.push(outside("delete.stopped", "runtime.md#delete", |ctx| {
        let id = running(ctx, &["true"])?;
        ctx.wait_status(&id, "stopped")?;
        ctx.cmd(&["delete", &id]).ok()?;
        ctx.cmd(&["state", &id]).fails().map(|_| ())
    }));
    v.push(outside(
        "delete.force-running",
        "runtime.md#delete",
        |ctx| {
            let id = running(ctx, &["sleep", "100"])?;
            let pid = ctx.state(&id)?["pid"].as_i64().unwrap_or(0);
            ctx.cmd(&["delete", "--force", &id]).ok()?;
            ctx.cmd(&["state", &id]).fails()?;
            ensure(
                !std::path::Path::new(&format!("/proc/{pid}/stat")).exists() || zombie_or_gone(pid),
                || format!("pid {pid} still runs"),
            )
        },
    ));
    v.push(outside(
        "delete.removes-cgroup",
        "runtime.md#delete",
        |ctx| {
            let id = running(ctx, &["sleep", "100"])?;
            let dir = format!("/sys/fs/cgroup/pids{}", ctx.env.cgroups_path);
            ensure(std::path::Path::new(&dir).is_dir(), || {
                format!("{dir} missing while running")
            })?;
            ctx.cmd(&["kill", &id, "KILL"]).ok()?;
            ctx.wait_status(&id, "stopped")?;
            ctx.cmd(&["delete", &id]).ok()?;
            ensure(!std::path::Path::new(&dir).exists(), || {
                format!("{dir} left behind")
            })
        },
    ));
    v.push(outside(
        "delete.unknown-fails",
        "runtime.md#delete",
        |ctx| {
            ctx.cmd(&["delete", "conformance-no-such-id"])
                .fails()
                .map(|_| ())
        },
    ));
    v.push(outside("list.shows-container", "runtime.md#state", |ctx| {
        let id = created(ctx, &["sleep", "100"])?;
        let o = ctx.cmd(&["list", "-q"]);
        o.ok()?;
        ensure(o.stdout.lines().any(|l| l == id), || {
            format!("{id} not listed")
        })
    }));
}

fn zombie_or_gone(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
        .unwrap_or(true)
}
