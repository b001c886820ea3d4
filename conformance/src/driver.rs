//! Runs the cases against each runtime: a fresh bundle per case and
//! runtime (a busybox root file system with the checker), the runtime's
//! own commands, and cleanup of everything a case made, whatever happened.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::{json, Value};

use crate::case::{Case, Ctx, Env, Kind, Report};
use crate::host::{Host, CGROUP_PARENT};
use crate::report::{Outcome, Row};
use crate::runtime::Runtime;

/// Where the checker sits in each root file system.
pub const CHECKER_PATH: &str = "/conformance-checker";

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Runtime binaries; the first is the one under test.
    pub runtimes: Vec<PathBuf>,
    /// Only cases whose name contains one of these.
    pub filter: Vec<String>,
    /// A prebuilt runtime-tools validation suite to run too.
    pub suite_dir: Option<PathBuf>,
    /// Keep the bundles and state roots (under the printed directory).
    pub keep: bool,
    /// Whether the cgroup2 mount was hidden from the runtimes.
    pub unified_hidden: bool,
    /// Print each case as it finishes, on stderr.
    pub progress: bool,
}

/// The base config: `runc spec`'s (as the tests' bundles have it, with
/// no mark variable), plus runc's read-only cgroup mount.
pub fn base_config(args: &[&str], cgroups_path: &str) -> Value {
    let mut c = testbed::base_config(args, "", cgroups_path);
    if let Some(env) = c["process"]["env"].as_array_mut() {
        env.retain(|e| !e.as_str().is_some_and(|e| e.starts_with(testbed::MARK_VAR)));
    }
    c["hostname"] = json!("conformance");
    crate::case::push(
        &mut c,
        "/mounts",
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    );
    c
}

/// Writes a bundle at `dir`: a busybox root file system with the checker,
/// and the base config running `args`, changed by `edit`.
pub fn make_bundle(
    dir: &Path,
    args: &[&str],
    env: &Env,
    edit: &dyn Fn(&mut Value),
) -> Result<(), String> {
    let rootfs = dir.join("rootfs");
    let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", dir.display());
    if !rootfs.join("bin/busybox").exists() {
        testbed::build_rootfs(&rootfs).map_err(|e| fail("build rootfs in", e))?;
        let checker = rootfs.join(CHECKER_PATH.trim_start_matches('/'));
        std::fs::write(&checker, crate::CHECKER).map_err(|e| fail("write checker in", e))?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&checker, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| fail("chmod checker in", e))?;
    }
    let mut config = base_config(args, &env.cgroups_path);
    edit(&mut config);
    let text = serde_json::to_vec_pretty(&config).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("config.json"), text).map_err(|e| fail("write config.json in", e))
}

/// Runs every selected case against every runtime.
pub fn run(opts: &Options, cases: &[Case]) -> Result<(Vec<String>, Vec<Row>)> {
    let tmp = tempfile::Builder::new()
        .prefix("berth-conformance-")
        .tempdir()
        .context("make a temporary directory")?;
    let work = tmp.path().to_path_buf();
    if opts.keep {
        eprintln!("keeping bundles and state under {}", work.display());
    }
    let runtimes: Vec<Runtime> = opts
        .runtimes
        .iter()
        .enumerate()
        .map(|(i, p)| Runtime::new(p, work.join(format!("root-{i}"))))
        .collect();
    let names: Vec<String> = runtimes.iter().map(|r| r.name.clone()).collect();
    let host = Host::detect(opts.unified_hidden);
    let mut rows = Vec::new();
    let selected: Vec<(usize, &Case)> = cases
        .iter()
        .enumerate()
        .filter(|(_, c)| opts.filter.is_empty() || opts.filter.iter().any(|f| c.name.contains(f)))
        .collect();
    for (ci, case) in selected {
        let mut outcomes = Vec::new();
        for (ri, rt) in runtimes.iter().enumerate() {
            let dir = work.join(format!("{ri}-{ci}"));
            let id = format!("conf-{}-{ci}-{ri}", std::process::id());
            let env = Env {
                scratch: dir.join("scratch"),
                bundle: dir.join("bundle"),
                cgroups_path: format!("/{CGROUP_PARENT}/{id}"),
                id,
                host: &host,
                runtime: &rt.name,
            };
            let outcome = run_case(case, rt, env);
            if !opts.keep {
                let _ = std::fs::remove_dir_all(&dir);
            }
            outcomes.push(outcome);
        }
        if opts.progress {
            let words: Vec<&str> = outcomes.iter().map(|o| o.word()).collect();
            eprintln!("{:<50} {}", case.name, words.join(" "));
            let _ = std::io::stderr().flush();
        }
        rows.push(Row {
            name: case.name.clone(),
            section: case.section.to_string(),
            outcomes,
        });
    }
    if let Some(dir) = &opts.suite_dir {
        rows.extend(crate::suite::run_suite(dir, &runtimes)?);
    }
    for rt in &runtimes {
        leftovers(rt);
    }
    for (dir, e) in testbed::cgroupfs::remove_cgroup_trees(CGROUP_PARENT) {
        eprintln!("cannot remove {}: {e}", dir.display());
    }
    if opts.keep {
        std::mem::forget(tmp);
    }
    Ok((names, rows))
}

/// One case against one runtime, cleaning up after it.
fn run_case(case: &Case, rt: &Runtime, env: Env) -> Outcome {
    if let Some(why) = case.skip.as_ref().and_then(|f| f(&env)) {
        return Outcome::Skip(why);
    }
    if let Err(e) = std::fs::create_dir_all(&env.scratch) {
        return Outcome::Fail(format!("mkdir {}: {e}", env.scratch.display()));
    }
    match &case.kind {
        Kind::Inside(inside) => {
            let probes = case.probes();
            let mut args = vec![CHECKER_PATH];
            args.extend(probes.iter().map(String::as_str));
            let made = make_bundle(&env.bundle, &args, &env, &|c| {
                for e in &inside.edits {
                    e(c, &env);
                }
            });
            if let Err(e) = made {
                return Outcome::Fail(e);
            }
            let bundle = env.bundle.display().to_string();
            let out = rt.cmd(&["run", "--bundle", &bundle, &env.id]);
            cleanup(rt, std::slice::from_ref(&env.id));
            let report = Report::from_output(&out);
            Outcome::of(check_inside(inside, &report, &env))
        }
        Kind::Outside(steps) => {
            let mut ctx = Ctx {
                rt,
                env,
                ids: Vec::new(),
                make_bundle: &make_bundle,
                counter: 0,
            };
            let r = steps(&mut ctx);
            cleanup(rt, &ctx.ids);
            Outcome::of(r)
        }
    }
}

fn check_inside(inside: &crate::case::Inside, report: &Report, env: &Env) -> Result<(), String> {
    let want = inside.exit.unwrap_or(0);
    if report.code != want {
        return Err(format!(
            "run exited {} (want {want}): {}",
            report.code,
            report.stderr.trim()
        ));
    }
    for (probe, e) in &inside.expects {
        e.check(report.probes.get(probe).map(String::as_str), env)
            .map_err(|m| format!("{probe}: {m}"))?;
    }
    for f in &inside.after {
        f(report, env)?;
    }
    Ok(())
}

/// Force-deletes the containers and removes their cgroup directories.
fn cleanup(rt: &Runtime, ids: &[String]) {
    for id in ids {
        let _ = rt.cmd(&["delete", "--force", id]);
        remove_cgroup_dirs(id);
    }
}

/// `/sys/fs/cgroup/*/berth-conformance/<id>`, which a runtime that failed
/// half-way may leave.
fn remove_cgroup_dirs(id: &str) {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for e in entries.flatten() {
        let d = e.path().join(CGROUP_PARENT).join(id);
        if d.is_dir() {
            let _ = std::fs::remove_dir(&d);
        }
    }
}

/// Containers a runtime still lists at the end (a case that lost track of
/// one): force-deleted.
fn leftovers(rt: &Runtime) {
    let out = rt.cmd(&["list", "-q"]);
    for id in out.stdout.lines().filter(|l| !l.is_empty()) {
        let _ = rt.cmd(&["delete", "--force", id]);
        remove_cgroup_dirs(id);
    }
}
