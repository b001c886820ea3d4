//! config.md "POSIX-platform Hooks" and runtime.md "Lifecycle": each hook
//! runs at its step, in order, in the namespace the spec names, with its
//! args, env and the container's state on stdin; failures and timeouts
//! stop create, a failing poststop does not stop delete.

use std::path::Path;

use serde_json::{json, Value};

use crate::case::{ensure, inside, outside, Case, Ctx, Env};

const HOOKS: &str = "config.md#posix-platform-hooks";
const KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// A hook running a shell line; `$D` is the case's scratch directory
/// (bind-mounted at the same path in the container, for startContainer).
fn sh(dir: &Path, line: &str) -> Value {
    json!({"path": "/bin/sh",
           "args": ["sh", "-c", line],
           "env": [format!("D={}", dir.display())]})
}

/// Every hook kind records its state and its turn.
fn recording(c: &mut Value, env: &Env) {
    let d = &env.scratch;
    for k in KINDS {
        crate::case::push(
            c,
            &format!("/hooks/{k}"),
            sh(d, &format!("cat > $D/{k}.json; echo {k} >> $D/order")),
        );
    }
    share_scratch(c, env);
}

/// The scratch directory at the same path inside the container.
fn share_scratch(c: &mut Value, env: &Env) {
    let d = env.scratch.display().to_string();
    crate::case::push(
        c,
        "/mounts",
        json!({"destination": d, "type": "bind", "source": d, "options": ["rbind"]}),
    );
}

fn read(env: &Env, name: &str) -> Result<String, String> {
    let p = env.scratch.join(name);
    std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))
}

fn state_of(env: &Env, kind: &str) -> Result<Value, String> {
    let text = read(env, &format!("{kind}.json"))?;
    serde_json::from_str(&text).map_err(|e| format!("{kind} state {text:?}: {e}"))
}

fn bundle_with(ctx: &Ctx, edit: impl Fn(&mut Value, &Env)) -> Result<String, String> {
    let env = &ctx.env;
    let b = ctx.bundle(&["sleep", "100"], |c| edit(c, env))?;
    Ok(b.display().to_string())
}

pub fn cases(v: &mut Vec<Case>) {
    v.push(
        inside("hooks.order", HOOKS)
            .edit(recording)
            .after(|_, env| {
                let order = read(env, "order")?;
                let got: Vec<&str> = order.lines().collect();
                let pos = |k: &str| got.iter().position(|g| *g == k);
                for k in KINDS {
                    ensure(got.iter().filter(|g| **g == k).count() == 1, || {
                        format!(
                            "{k} ran {} times: {got:?}",
                            got.iter().filter(|g| **g == k).count()
                        )
                    })?;
                }
                let before = |a: &str, b: &str| {
                    ensure(pos(a) < pos(b), || format!("{a} after {b}: {got:?}"))
                };
                before("prestart", "createContainer")?;
                before("createRuntime", "createContainer")?;
                before("createContainer", "startContainer")?;
                before("createContainer", "poststart")?;
                ensure(got.last() == Some(&"poststop"), || {
                    format!("poststop is not last: {got:?}")
                })
            }),
    );
    for kind in KINDS {
        v.push(
            inside(format!("hooks.{kind}.state"), "runtime.md#lifecycle")
                .edit(recording)
                .set("/annotations", json!({"org.conformance.hook": "yes"}))
                .after(move |_, env| {
                    let s = state_of(env, kind)?;
                    ensure(s["id"] == env.id.as_str(), || format!("id {}", s["id"]))?;
                    let bundle = env.bundle.display().to_string();
                    ensure(s["bundle"] == bundle.as_str(), || {
                        format!("bundle {} (want {bundle})", s["bundle"])
                    })?;
                    ensure(s["ociVersion"].is_string(), || "no ociVersion".into())?;
                    ensure(s["annotations"]["org.conformance.hook"] == "yes", || {
                        format!("annotations {}", s["annotations"])
                    })?;
                    if kind != "poststop" {
                        ensure(s["pid"].as_i64().unwrap_or(0) > 0, || {
                            format!("pid {}", s["pid"])
                        })?;
                    }
                    let status = s["status"].as_str().unwrap_or("");
                    ensure(
                        ["creating", "created", "running", "stopped"].contains(&status),
                        || format!("status {status:?}"),
                    )
                }),
        );
    }
    v.push(
        inside("hooks.args-and-env", HOOKS)
            .edit(|c, env| {
                // The shell's own environment as the runtime gave it (a
                // shell may set PATH itself).
                let mut h = sh(
                    &env.scratch,
                    "{ echo \"$0 $1\"; tr '\\0' '\\n' < /proc/$$/environ | sort; } > $D/argenv",
                );
                h["args"] = json!(["sh", "-c", h["args"][2], "zero", "one"]);
                h["env"]
                    .as_array_mut()
                    .expect("env")
                    .push(json!("CONF=hello"));
                crate::case::push(c, "/hooks/createRuntime", h);
            })
            .after(|_, env| {
                let got = read(env, "argenv")?;
                let d = env.scratch.display();
                let want = format!("zero one\nCONF=hello\nD={d}\n");
                ensure(got == want, || format!("{got:?}, want {want:?}"))
            }),
    );
    v.push(
        inside("hooks.several-run-in-order", HOOKS)
            .edit(|c, env| {
                for i in 1..=3 {
                    crate::case::push(
                        c,
                        "/hooks/createRuntime",
                        sh(&env.scratch, &format!("echo {i} >> $D/order")),
                    );
                }
            })
            .after(|_, env| {
                let got = read(env, "order")?;
                ensure(got == "1\n2\n3\n", || format!("{got:?}"))
            }),
    );
    for (kind, ns, same) in [
        ("prestart", "net", true),
        ("createRuntime", "mnt", true),
        ("createContainer", "mnt", false),
        ("createContainer", "net", false),
        ("poststop", "mnt", true),
    ] {
        let word = if same { "runtime" } else { "container" };
        v.push(
            inside(format!("hooks.{kind}.{word}-namespace.{ns}"), HOOKS)
                .edit(move |c, env| {
                    crate::case::push(
                        c,
                        &format!("/hooks/{kind}"),
                        sh(
                            &env.scratch,
                            &format!("readlink /proc/self/ns/{ns} > $D/ns"),
                        ),
                    );
                })
                .after(move |_, env| {
                    let got = read(env, "ns")?;
                    let host = env.host.ns(ns);
                    ensure((got.trim() == host) == same, || {
                        format!(
                            "{kind} ran in {} ({word}'s expected; host's is {host})",
                            got.trim()
                        )
                    })
                }),
        );
    }
    v.push(
        inside("hooks.startContainer.in-container", HOOKS)
            .edit(|c, env| {
                share_scratch(c, env);
                crate::case::push(
                    c,
                    "/hooks/startContainer",
                    sh(
                        &env.scratch,
                        "hostname > $D/host; test -x /conformance-checker && echo yes >> $D/host",
                    ),
                );
            })
            .after(|_, env| {
                let got = read(env, "host")?;
                ensure(got == "conformance\nyes\n", || format!("{got:?}"))
            }),
    );
    v.push(outside("hooks.poststart.after-start", HOOKS, |ctx| {
        let id = ctx.id();
        let b = bundle_with(ctx, |c, env| {
            crate::case::push(
                c,
                "/hooks/poststart",
                sh(&env.scratch, "touch $D/poststart"),
            );
        })?;
        let mark = ctx.env.scratch.join("poststart");
        ctx.cmd(&["create", "--bundle", &b, &id]).ok()?;
        ensure(!mark.exists(), || "poststart ran at create".into())?;
        ctx.cmd(&["start", &id]).ok()?;
        ctx.wait_file(&mark)
    }));
    v.push(outside("hooks.poststop.at-delete", HOOKS, |ctx| {
        let id = ctx.id();
        let b = bundle_with(ctx, |c, env| {
            crate::case::push(
                c,
                "/hooks/poststop",
                sh(&env.scratch, "cat > $D/poststop.json"),
            );
        })?;
        let mark = ctx.env.scratch.join("poststop.json");
        ctx.cmd(&["create", "--bundle", &b, &id]).ok()?;
        ctx.cmd(&["start", &id]).ok()?;
        ctx.cmd(&["kill", &id, "KILL"]).ok()?;
        ctx.wait_status(&id, "stopped")?;
        ensure(!mark.exists(), || "poststop ran before delete".into())?;
        ctx.cmd(&["delete", &id]).ok()?;
        ensure(mark.exists(), || "poststop did not run at delete".into())
    }));
    for kind in ["prestart", "createRuntime", "createContainer"] {
        v.push(outside(
            format!("hooks.{kind}.failure-stops-create"),
            HOOKS,
            move |ctx| {
                let id = ctx.id();
                let b = bundle_with(ctx, |c, env| {
                    crate::case::push(c, &format!("/hooks/{kind}"), sh(&env.scratch, "exit 3"));
                })?;
                ctx.cmd(&["create", "--bundle", &b, &id]).fails()?;
                ensure(ctx.cmd(&["state", &id]).code != 0, || {
                    format!("{id} exists after the failed create")
                })
            },
        ));
    }
    v.push(outside("hooks.timeout", HOOKS, |ctx| {
        let id = ctx.id();
        let b = bundle_with(ctx, |c, env| {
            let mut h = sh(&env.scratch, "sleep 30");
            h["timeout"] = json!(1);
            crate::case::push(c, "/hooks/createRuntime", h);
        })?;
        let t = std::time::Instant::now();
        ctx.cmd(&["create", "--bundle", &b, &id]).fails()?;
        ensure(t.elapsed() < std::time::Duration::from_secs(20), || {
            format!("create took {:?} with a 1 s hook timeout", t.elapsed())
        })
    }));
    v.push(outside("hooks.poststop.failure-ignored", HOOKS, |ctx| {
        let id = ctx.id();
        let b = bundle_with(ctx, |c, env| {
            crate::case::push(c, "/hooks/poststop", sh(&env.scratch, "exit 3"));
        })?;
        ctx.cmd(&["create", "--bundle", &b, &id]).ok()?;
        ctx.cmd(&["delete", "--force", &id]).ok()?;
        ensure(ctx.cmd(&["state", &id]).code != 0, || {
            format!("{id} still exists after delete")
        })
    }));
    v.push(outside("hooks.poststart.failure-warns", HOOKS, |ctx| {
        // "If any poststart hook fails, the runtime MUST log a warning,
        // but the remaining hooks and lifecycle continue as if the hook
        // had succeeded."
        let id = ctx.id();
        let b = bundle_with(ctx, |c, env| {
            crate::case::push(c, "/hooks/poststart", sh(&env.scratch, "exit 3"));
            crate::case::push(c, "/hooks/poststart", sh(&env.scratch, "touch $D/second"));
        })?;
        ctx.cmd(&["create", "--bundle", &b, &id]).ok()?;
        ctx.cmd(&["start", &id]).ok()?;
        ctx.wait_file(&ctx.env.scratch.join("second"))?;
        ctx.wait_status(&id, "running")
    }));
}
