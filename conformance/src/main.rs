//! `berth-conformance`: runs the OCI runtime-spec cases against one or more
//! runc-compatible runtimes and prints one row per case, a column per
//! runtime, and `N passed, M failed` for the first runtime.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use berth_conformance::{cases, driver, report};
use clap::Parser;

/// Check a runtime against the OCI runtime spec from inside real containers.
#[derive(Debug, Parser)]
#[command(name = "berth-conformance")]
struct Args {
    /// A runtime binary (repeatable); the first is the one under test and
    /// decides the exit status. Default: `berth` next to this program or
    /// on PATH
    #[arg(long, value_name = "PATH")]
    runtime: Vec<PathBuf>,
    /// Also run a prebuilt OCI runtime-tools validation suite from DIR
    /// (its runtimetest and *.t programs)
    #[arg(long, value_name = "DIR")]
    suite_dir: Option<PathBuf>,
    /// Run only the --suite-dir suite, none of the built-in cases
    #[arg(long, requires = "suite_dir")]
    only_suite: bool,
    /// Only cases whose name contains this (repeatable)
    #[arg(long, value_name = "SUBSTR")]
    filter: Vec<String>,
    /// Print the rows as JSON instead of a table
    #[arg(long)]
    json: bool,
    /// Print the rows as a Markdown table
    #[arg(long, conflicts_with = "json")]
    markdown: bool,
    /// Keep bundles and state directories for inspection
    #[arg(long)]
    keep: bool,
    /// List the cases and their spec sections, run nothing
    #[arg(long)]
    list: bool,
    /// Print each case as it finishes, on stderr
    #[arg(short, long)]
    verbose: bool,
}

fn main() {
    match real_main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("berth-conformance: {e:#}");
            std::process::exit(2);
        }
    }
}

fn real_main() -> Result<i32> {
    let args = Args::parse();
    let all = cases::all();
    if args.list {
        for c in &all {
            println!("{}\t{}", c.name, c.section);
        }
        return Ok(0);
    }
    let runtimes = if args.runtime.is_empty() {
        vec![default_runtime()?]
    } else {
        args.runtime
            .iter()
            .map(|p| resolve(p))
            .collect::<Result<Vec<_>>>()?
    };
    if !nix::unistd::geteuid().is_root() {
        bail!("the cases run real containers: run as root");
    }
    // crun refuses hybrid cgroup hosts: every runtime gets the same pure
    // v1 view, in a mount namespace of this process (made while it is still
    // single-threaded).
    let staging = std::env::temp_dir().join(format!("berth-conformance-cg-{}", std::process::id()));
    let hidden = testbed::cgroupfs::hide_unified_cgroup2(&staging)
        .context("hide the cgroup2 mount from the runtimes")?;
    let opts = driver::Options {
        runtimes,
        filter: args.filter,
        suite_dir: args.suite_dir,
        keep: args.keep,
        unified_hidden: hidden,
        progress: args.verbose,
    };
    let cases = if args.only_suite { &[][..] } else { &all[..] };
    let (names, rows) = driver::run(&opts, cases)?;
    if args.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut o = serde_json::json!({"case": r.name, "section": r.section});
                for (n, out) in names.iter().zip(&r.outcomes) {
                    o[n] = match out {
                        report::Outcome::Pass => "pass".into(),
                        report::Outcome::Fail(w) => format!("fail: {w}").into(),
                        report::Outcome::Skip(w) => format!("skip: {w}").into(),
                    };
                }
                o
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        println!("{}", report::summary(&rows));
    } else if args.markdown {
        print!("{}", report::markdown(&names, &rows));
    } else {
        print!("{}", report::table(&names, &rows));
    }
    Ok(if report::counts(&rows, 0).failed > 0 {
        1
    } else {
        0
    })
}

fn default_runtime() -> Result<PathBuf> {
    if let Ok(me) = std::env::current_exe() {
        let next = me.with_file_name("berth");
        if next.is_file() {
            return Ok(next);
        }
    }
    resolve(Path::new("berth")).context("no berth next to this program or on PATH; use --runtime")
}

/// A path as given, or a bare name looked up on PATH.
fn resolve(p: &Path) -> Result<PathBuf> {
    if p.components().count() > 1 {
        if !p.is_file() {
            bail!("runtime {}: no such file", p.display());
        }
        return Ok(std::fs::canonicalize(p)?);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(p))
        .find(|c| c.is_file())
        .with_context(|| format!("runtime {}: not found on PATH", p.display()))
}
