//! The build benchmark: one ten-step Dockerfile on the busybox image (RUNs
//! writing files, COPYs of a few megabytes of context, ENV, WORKDIR,
//! LABEL) built by `berth build` and by `buildah bud --layers`, each
//! timed cold (a fresh store holding only the base image, so no step is
//! cached) and as a fully cached rebuild, interleaved so that machine
//! noise falls on both alike.

#[path = "../lifecycle/stats.rs"]
mod stats;

#[path = "../tools.rs"]
mod tools;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use testbed::buildah::Buildah;
use tools::{berth_path, sh};

/// Times building one Dockerfile with berth and buildah.
#[derive(Parser, Debug)]
#[command(name = "imagebuild")]
struct Args {
    /// Runs per tool and case.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    iterations: u32,
    /// Megabytes of files in the build context (copied by two COPY steps).
    #[arg(long, default_value_t = 8)]
    megabytes: u64,
    /// The berth binary [default: `berth` beside this program, else the
    /// workspace's target/release/berth].
    #[arg(long)]
    berth: Option<PathBuf>,
    /// Where to work.
    #[arg(long, default_value = "/var/tmp")]
    workdir: PathBuf,
}

const BASE: &str = "localhost/busybox:bench";
const TAG: &str = "localhost/bench:build";

/// Ten steps, FROM included; every RUN needs only busybox.
const DOCKERFILE: &str = "\
FROM localhost/busybox:bench
ENV APP=/app MODE=bench
WORKDIR /app
RUN mkdir gen && i=0 && while [ $i -lt 300 ]; do echo \"line $i of $MODE\" > gen/f$i; i=$((i+1)); done
COPY data/ /app/data/
LABEL org.opencontainers.image.title=bench
RUN dd if=/dev/zero of=/app/zero bs=64k count=32 2>/dev/null && chmod 0600 /app/zero
COPY big.bin /app/big.bin
RUN cat /app/data/* /app/big.bin | sha256sum > /app/sum
RUN rm -f gen/f1* && touch /app/done
";

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imagebuild: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The berth binary if it has a `build` command.
fn berth_build(a: &Args) -> Result<PathBuf> {
    let b = berth_path(a.berth.as_deref())?;
    let o = Command::new(&b)
        .args(["build", "--help"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {}", b.display()))?;
    if !o.status.success() {
        bail!(
            "{} has no working `build` command ({}): {}",
            b.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(b)
}

/// Deterministic text-like bytes.
fn fill(len: usize, seed: u64) -> Vec<u8> {
    let mut buf = Vec::with_capacity(len);
    let mut x = seed | 1;
    while buf.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.extend_from_slice(format!("{x:016x} build context\n").as_bytes());
    }
    buf.truncate(len);
    buf
}

/// The context: the Dockerfile, `data/` with 64 files sharing half of
/// `megabytes`, and `big.bin` with the other half.
fn context(dir: &Path, megabytes: u64) -> Result<()> {
    let half = (megabytes << 20) / 2;
    fs::create_dir_all(dir.join("data"))?;
    for i in 0..64u64 {
        fs::File::create(dir.join(format!("data/part{i:02}")))?
            .write_all(&fill((half / 64) as usize, i + 1))?;
    }
    fs::write(dir.join("big.bin"), fill(half as usize, 99))?;
    fs::write(dir.join("Dockerfile"), DOCKERFILE)?;
    Ok(())
}

struct Case {
    name: String,
    millis: Vec<f64>,
}

fn timed(cmd: &mut Command) -> Result<f64> {
    let start = Instant::now();
    sh(cmd)?;
    Ok(start.elapsed().as_secs_f64() * 1000.0)
}

fn berth_cmd(berth: &Path, store: &Path, ctx: &Path) -> Command {
    let mut c = Command::new(berth);
    c.arg("build")
        .arg("--image-root")
        .arg(store)
        .args(["-t", TAG, "--network", "none", "-f"])
        .arg(ctx.join("Dockerfile"))
        .arg(ctx);
    c
}

fn berth_store(berth: &Path, store: &Path, archive: &Path) -> Result<()> {
    sh(Command::new(berth)
        .args(["image", "--root"])
        .arg(store)
        .arg("import")
        .arg(format!("docker-archive:{}", archive.display())))
}

fn real_main() -> Result<()> {
    let a = Args::parse();
    testbed::require_root();
    for t in ["/usr/bin/buildah", "/usr/sbin/runc"] {
        if !Path::new(t).is_file() {
            bail!("{t} is missing (apt-get install buildah runc)");
        }
    }
    let berth = berth_build(&a);
    if let Err(e) = &berth {
        eprintln!("berth: skipped, so the run fails at the end: {e:#}");
    }
    let tmp = tempfile::Builder::new()
        .prefix("berth-build-bench-")
        .tempdir_in(&a.workdir)?;
    let d = tmp.path();
    let archive = testbed::image::busybox_archive(d, BASE);
    let ctx = d.join("ctx");
    context(&ctx, a.megabytes)?;
    let dockerfile = ctx.join("Dockerfile");

    // The cached cases' stores, primed with one untimed build.
    let warm_buildah = Buildah::new(d);
    warm_buildah.import_archive(&archive, BASE);
    warm_buildah.bud(&ctx, &dockerfile, TAG, &[], &["-q"]).ok();
    let warm_berth = d.join("berth-warm");
    if let Ok(b) = &berth {
        berth_store(b, &warm_berth, &archive)?;
        sh(&mut berth_cmd(b, &warm_berth, &ctx))?;
    }

    let mut cases: Vec<Case> = [
        "berth cold",
        "buildah cold",
        "berth cached",
        "buildah cached",
    ]
    .iter()
    .map(|n| Case {
        name: n.to_string(),
        millis: Vec::new(),
    })
    .collect();
    for it in 0..a.iterations {
        if let Ok(b) = &berth {
            let store = d.join(format!("berth-cold-{it}"));
            berth_store(b, &store, &archive)?;
            sh(&mut Command::new("sync"))?;
            cases[0]
                .millis
                .push(timed(&mut berth_cmd(b, &store, &ctx))?);
            fs::remove_dir_all(&store)?;
        }
        {
            let cold = Buildah::new(d);
            cold.import_archive(&archive, BASE);
            sh(&mut Command::new("sync"))?;
            cases[1].millis.push(timed(&mut cold.bud_command(
                &ctx,
                &dockerfile,
                TAG,
                &[],
                &["-q"],
            ))?);
        }
        if let Ok(b) = &berth {
            cases[2]
                .millis
                .push(timed(&mut berth_cmd(b, &warm_berth, &ctx))?);
        }
        cases[3].millis.push(timed(&mut warm_buildah.bud_command(
            &ctx,
            &dockerfile,
            TAG,
            &[],
            &["-q"],
        ))?);
        eprintln!("iteration {} of {} done", it + 1, a.iterations);
    }

    println!("{} MB context, {} iterations", a.megabytes, a.iterations);
    println!("| case | median ms | p90 ms | berth / buildah |");
    println!("| --- | --- | --- | --- |");
    let med: Vec<Option<f64>> = cases.iter().map(|c| stats::median(&c.millis)).collect();
    for (i, c) in cases.iter().enumerate() {
        let f0 = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
        // Pairs: (berth cold, buildah cold), (berth cached, buildah cached).
        let pair = i & !1;
        let ratio =
            stats::ratio(med[pair], med[pair + 1]).map_or("-".into(), |v| format!("{v:.2}"));
        println!(
            "| {} | {} | {} | {} |",
            c.name,
            f0(med[i]),
            f0(stats::percentile(&c.millis, 90.0)),
            if i % 2 == 0 { ratio } else { String::new() },
        );
    }
    drop(warm_buildah);
    berth.map(|_| ())
}
