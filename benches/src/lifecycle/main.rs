//! The lifecycle benchmark: wall time and peak RSS of `run` + `delete`
//! of `/bin/true` from a busybox bundle, for berth, runc and crun, run
//! interleaved so that machine noise falls on all three alike.

mod bundle;
mod host;
mod measure;
mod stats;

use std::env;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};
use clap::Parser;

use bundle::Bundle;

/// Times `<runtime> run` + `delete -f` of /bin/true for berth, runc and crun.
#[derive(Parser, Debug)]
#[command(name = "lifecycle")]
struct Args {
    /// Runs per runtime.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    iterations: u32,
    /// The berth binary [default: $BERTH, else `berth` beside this
    /// program, else the workspace's target/release/berth].
    #[arg(long)]
    berth: Option<PathBuf>,
    /// The runc binary [default: `runc` on PATH, else /usr/sbin/runc].
    #[arg(long)]
    runc: Option<PathBuf>,
    /// The crun binary [default: `crun` on PATH, else /usr/bin/crun].
    #[arg(long)]
    crun: Option<PathBuf>,
}

/// One runtime under test and what was measured of it.
struct Runtime {
    name: &'static str,
    path: PathBuf,
    /// `--root`: a fresh state directory inside the benchmark's tempdir.
    root: PathBuf,
    /// run + delete, in milliseconds.
    millis: Vec<f64>,
    /// `ru_maxrss` of the `run` process, in KiB.
    rss_kib: Vec<f64>,
    /// The first failure; the runtime is not run again after one.
    failure: Option<String>,
}

/// Deletes whatever containers are left in the runtimes' roots and the
/// benchmark cgroups when dropped, so an error or a signal cleans up the
/// same way a finished run does. The tempdir (bundle and roots) goes last.
struct Cleanup {
    runtimes: Vec<(PathBuf, PathBuf)>,
    tmp: Option<tempfile::TempDir>,
}

impl Cleanup {
    fn finish(&mut self) {
        for (path, root) in &self.runtimes {
            let Ok(entries) = fs::read_dir(root) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let id = entry.file_name();
                let _ = Command::new(path)
                    .arg("--root")
                    .arg(root)
                    .args(["delete", "-f"])
                    .arg(&id)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        self.runtimes.clear();
        for (dir, err) in host::remove_cgroups() {
            eprintln!("lifecycle: cannot remove cgroup {}: {err}", dir.display());
        }
        if let Some(tmp) = self.tmp.take() {
            let path = tmp.path().to_path_buf();
            if let Err(err) = tmp.close() {
                eprintln!("lifecycle: cannot remove {}: {err}", path.display());
            }
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.finish();
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match bench(&args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("lifecycle: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &Args) -> Result<ExitCode> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the benchmark creates containers and cgroups: run it as root");
    }
    host::catch_signals()?;
    let tmp = tempfile::Builder::new()
        .prefix("berth-bench.")
        .tempdir()
        .context("creating the benchmark's tempdir")?;
    let hidden = host::hide_unified_cgroup2(&tmp.path().join("cgroup-staging"))?;
    let candidates = [
        ("berth", args.berth.clone().unwrap_or_else(default_berth)),
        (
            "runc",
            args.runc
                .clone()
                .unwrap_or_else(|| on_path("runc", "/usr/sbin/runc")),
        ),
        (
            "crun",
            args.crun
                .clone()
                .unwrap_or_else(|| on_path("crun", "/usr/bin/crun")),
        ),
    ];
    let mut runtimes = Vec::new();
    let mut missing = Vec::new();
    for (name, path) in candidates {
        if !is_executable(&path) {
            missing.push((name, path));
            continue;
        }
        let root = tmp.path().join(format!("root-{name}"));
        fs::create_dir(&root).with_context(|| format!("creating {}", root.display()))?;
        runtimes.push(Runtime {
            name,
            path,
            root,
            millis: Vec::new(),
            rss_kib: Vec::new(),
            failure: None,
        });
    }
    let mut cleanup = Cleanup {
        runtimes: runtimes
            .iter()
            .map(|r| (r.path.clone(), r.root.clone()))
            .collect(),
        tmp: None,
    };
    // Leftovers of an earlier run cut short would otherwise sit beside ours.
    host::remove_cgroups();
    let mut bundle = Bundle::create(&tmp.path().join("bundle"))?;
    let stderr_file = tmp.path().join("stderr");
    cleanup.tmp = Some(tmp);

    println!(
        "lifecycle: {} iterations of run + delete -f of /bin/true, interleaved",
        args.iterations
    );
    for rt in &runtimes {
        println!(
            "  {:6} {} ({})",
            rt.name,
            rt.path.display(),
            version(&rt.path)
        );
    }
    for (name, path) in &missing {
        println!("  {name:6} not installed ({})", path.display());
    }
    if hidden {
        println!("  (all run in a private mount namespace whose /sys/fs/cgroup holds the v1 hierarchies only)");
    }
    if runtimes.is_empty() {
        bail!("no runtime to measure");
    }

    let mut done = 0;
    'iterations: for i in 0..args.iterations {
        for rt in runtimes.iter_mut().filter(|r| r.failure.is_none()) {
            if host::interrupted() {
                break 'iterations;
            }
            if let Err(err) = measure_once(rt, i, &mut bundle, &stderr_file) {
                eprintln!("lifecycle: {}: {err:#}", rt.name);
                rt.failure = Some(format!("{err:#}"));
            }
        }
        done = i + 1;
    }
    cleanup.finish();

    if host::interrupted() {
        eprintln!("lifecycle: interrupted after {done} iterations; cleaned up");
        return Ok(ExitCode::from(130));
    }
    print_table(&runtimes, &missing);
    Ok(if runtimes.iter().any(|r| r.failure.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// One `run` + `delete -f`, the delete only when `run` left state behind
/// (runc and crun remove a container `run` started once it exits).
fn measure_once(rt: &mut Runtime, i: u32, bundle: &mut Bundle, stderr_file: &Path) -> Result<()> {
    let id = format!("{}-{i}", rt.name);
    bundle.set_cgroups_path(&format!("/{}/{id}", host::CGROUP_PARENT))?;
    let root = path_str(&rt.root)?;
    let bundle_dir = path_str(bundle.path())?;
    let run = measure::run(
        &rt.path,
        &["--root", root, "run", "--bundle", bundle_dir, &id],
        stderr_file,
    )?;
    if !run.status.success() {
        bail!("run {id}: {}: {}", run.status, read_stderr(stderr_file));
    }
    let mut elapsed = run.elapsed;
    if rt.root.join(&id).exists() {
        let delete = measure::run(
            &rt.path,
            &["--root", root, "delete", "-f", &id],
            stderr_file,
        )?;
        if !delete.status.success() {
            bail!(
                "delete -f {id}: {}: {}",
                delete.status,
                read_stderr(stderr_file)
            );
        }
        elapsed += delete.elapsed;
    }
    rt.millis.push(elapsed.as_secs_f64() * 1000.0);
    rt.rss_kib.push(run.max_rss_kib as f64);
    Ok(())
}

fn print_table(runtimes: &[Runtime], missing: &[(&str, PathBuf)]) {
    // The references for the ratio columns: medians of runtimes that finished.
    let reference = |name: &str| {
        runtimes
            .iter()
            .find(|r| r.name == name && r.failure.is_none())
            .map(|r| (stats::median(&r.millis), stats::median(&r.rss_kib)))
            .unwrap_or((None, None))
    };
    let (runc_time, runc_rss) = reference("runc");
    let (crun_time, crun_rss) = reference("crun");
    let fmt_ratio = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));

    println!();
    println!(
        "{:8} {:>10} {:>8} {:>13} {:>10} {:>10} {:>9} {:>9}",
        "runtime",
        "median ms",
        "p90 ms",
        "peak RSS KiB",
        "time/runc",
        "time/crun",
        "RSS/runc",
        "RSS/crun"
    );
    for rt in runtimes {
        if let Some(failure) = &rt.failure {
            println!("{:8} failed: {failure}", rt.name);
            continue;
        }
        let t = stats::median(&rt.millis);
        let m = stats::median(&rt.rss_kib);
        println!(
            "{:8} {:>10} {:>8} {:>13} {:>10} {:>10} {:>9} {:>9}",
            rt.name,
            t.map_or("-".to_string(), |v| format!("{v:.1}")),
            stats::percentile(&rt.millis, 90.0).map_or("-".to_string(), |v| format!("{v:.1}")),
            m.map_or("-".to_string(), |v| format!("{v:.0}")),
            fmt_ratio(stats::ratio(t, runc_time)),
            fmt_ratio(stats::ratio(t, crun_time)),
            fmt_ratio(stats::ratio(m, runc_rss)),
            fmt_ratio(stats::ratio(m, crun_rss)),
        );
    }
    for (name, _) in missing {
        println!("{name:8} not installed");
    }
    println!();
    println!("time: wall clock of run + delete -f (delete only when run left state)");
    println!("peak RSS: wait4 ru_maxrss of the run process: the largest single process among it and the descendants it reaped");
}

/// $BERTH, else the `berth` built into the same target directory as this
/// program, else the workspace's default target directory.
fn default_berth() -> PathBuf {
    if let Some(p) = env::var_os("BERTH") {
        return PathBuf::from(p);
    }
    if let Some(sibling) = env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("berth")))
    {
        if is_executable(&sibling) {
            return sibling;
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/berth")
}

fn on_path(name: &str, fallback: &str) -> PathBuf {
    env::var_os("PATH")
        .and_then(|paths| {
            env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| is_executable(p))
        })
        .unwrap_or_else(|| PathBuf::from(fallback))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first line of `<runtime> --version`, for the report's header.
fn version(path: &Path) -> String {
    Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "version unknown".to_string())
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("path {} is not UTF-8", path.display()))
}

/// The runtime's stderr, trimmed, for an error message.
fn read_stderr(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let text = text.trim();
    if text.is_empty() {
        return "(no stderr)".to_string();
    }
    let mut start = text.len().saturating_sub(2000);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}
