//! The unpack benchmark: one multi-layer image (at least 200 MB of files,
//! gzip layers made by umoci, whiteouts in the upper layers) unpacked to
//! a flat root by `berth image unpack`, by `umoci unpack`, and by plain
//! `tar -xzf` of each layer in turn (no whiteout handling: the floor),
//! interleaved so that machine noise falls on all three alike.

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
use tools::{berth_path, sh};

/// Times unpacking one image with berth, umoci and tar.
#[derive(Parser, Debug)]
#[command(name = "unpack")]
struct Args {
    /// Runs per tool.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    iterations: u32,
    /// Megabytes of file data in the image.
    #[arg(long, default_value_t = 240)]
    megabytes: u64,
    /// The berth binary [default: `berth` beside this program, else the
    /// workspace's target/release/berth].
    #[arg(long)]
    berth: Option<PathBuf>,
    /// Where to work (needs about 4x the image size free).
    #[arg(long, default_value = "/var/tmp")]
    workdir: PathBuf,
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unpack: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Deterministic, moderately compressible bytes (text-like), so gzip
/// neither vanishes nor dominates.
fn fill(buf: &mut Vec<u8>, len: usize, seed: u64) {
    buf.clear();
    let mut x = seed | 1;
    const WORDS: [&[u8]; 8] = [
        b"container ",
        b"layer ",
        b"overlay ",
        b"whiteout ",
        b"digest ",
        b"manifest ",
        b"rootfs ",
        b"\n",
    ];
    while buf.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x.is_multiple_of(5) {
            buf.extend_from_slice(&x.to_le_bytes());
        } else {
            buf.extend_from_slice(WORDS[(x % 8) as usize]);
        }
    }
    buf.truncate(len);
}

/// Writes `total` bytes as files of mixed sizes under `dir`.
fn files(dir: &Path, total: u64, seed: u64) -> Result<u64> {
    let mut written = 0u64;
    let mut buf = Vec::new();
    let mut i = 0u64;
    while written < total {
        // Mostly small files, some large: 1 KiB .. 4 MiB.
        let size = match i % 10 {
            0 => 4 << 20,
            1 | 2 => 256 << 10,
            _ => 1024 + (i * 7919 % 60_000) as usize,
        };
        let d = dir.join(format!("d{:03}", i % 200));
        fs::create_dir_all(&d)?;
        fill(&mut buf, size, seed + i);
        fs::File::create(d.join(format!("f{i}")))?.write_all(&buf)?;
        written += size as u64;
        i += 1;
    }
    Ok(written)
}

struct Tool {
    name: &'static str,
    millis: Vec<f64>,
}

fn real_main() -> Result<()> {
    let a = Args::parse();
    let berth = berth_path(a.berth.as_deref())?;
    for t in ["umoci", "tar", "gzip"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            bail!("{t} is missing (apt-get install umoci)");
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix("berth-unpack-bench-")
        .tempdir_in(&a.workdir)?;
    let d = tmp.path();
    let lay = d.join("layout");
    let img = format!("{}:bench", lay.display());
    eprintln!(
        "making a {} MB three-layer image with umoci...",
        a.megabytes
    );
    sh(Command::new("umoci").args(["init", "--layout"]).arg(&lay))?;
    sh(Command::new("umoci").args(["new", "--image", &img]))?;
    let b = d.join("b");
    sh(Command::new("umoci")
        .args(["unpack", "--image", &img])
        .arg(&b))?;
    let r = b.join("rootfs");
    testbed::build_rootfs(&r)?;
    let mut total = files(&r.join("data1"), (a.megabytes * 70 / 100) << 20, 1)?;
    sh(Command::new("umoci")
        .args(["repack", "--refresh-bundle", "--image", &img])
        .arg(&b))?;
    // Layer 2: more data, and deletions (whiteouts) of part of layer 1.
    total += files(&r.join("data2"), (a.megabytes * 25 / 100) << 20, 2)?;
    for i in 0..20 {
        let _ = fs::remove_dir_all(r.join(format!("data1/d{i:03}")));
    }
    sh(Command::new("umoci")
        .args(["repack", "--refresh-bundle", "--image", &img])
        .arg(&b))?;
    // Layer 3: a replaced directory and small changes.
    fs::remove_dir_all(r.join("data2/d000")).ok();
    total += files(&r.join("data3"), (a.megabytes * 5 / 100) << 20, 3)?;
    sh(Command::new("umoci")
        .args(["repack", "--refresh-bundle", "--image", &img])
        .arg(&b))?;
    fs::remove_dir_all(&b)?;
    let blobs = layer_blobs(&lay)?;
    eprintln!(
        "image: {} layers, {} MB of files written",
        blobs.len(),
        total >> 20
    );

    let store = d.join("store");
    sh(Command::new(&berth)
        .args(["image", "--root"])
        .arg(&store)
        .args(["import", "--name", "bench:1"])
        .arg(format!("oci:{}:bench", lay.display())))?;

    let mut tools = vec![
        Tool {
            name: "berth",
            millis: Vec::new(),
        },
        Tool {
            name: "umoci",
            millis: Vec::new(),
        },
        Tool {
            name: "tar",
            millis: Vec::new(),
        },
    ];
    for it in 0..a.iterations {
        for t in &mut tools {
            let out = d.join(format!("out-{}-{it}", t.name));
            sh(&mut Command::new("sync"))?;
            let start = Instant::now();
            match t.name {
                "berth" => sh(Command::new(&berth)
                    .args(["image", "--root"])
                    .arg(&store)
                    .args(["unpack", "bench:1"])
                    .arg(&out))?,
                "umoci" => sh(Command::new("umoci")
                    .args(["unpack", "--image", &img])
                    .arg(&out))?,
                _ => {
                    fs::create_dir(&out)?;
                    for blob in &blobs {
                        sh(Command::new("tar")
                            .arg("-xzf")
                            .arg(blob)
                            .arg("-C")
                            .arg(&out))?;
                    }
                }
            }
            t.millis.push(start.elapsed().as_secs_f64() * 1000.0);
            fs::remove_dir_all(&out)?;
        }
        eprintln!("iteration {} of {} done", it + 1, a.iterations);
    }
    let med: Vec<Option<f64>> = tools.iter().map(|t| stats::median(&t.millis)).collect();
    println!("| tool | median ms | p90 ms | time vs berth | time vs umoci | time vs tar |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (t, m) in tools.iter().zip(&med) {
        let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            t.name,
            m.map_or("-".into(), |v| format!("{v:.0}")),
            stats::percentile(&t.millis, 90.0).map_or("-".into(), |v| format!("{v:.0}")),
            f(stats::ratio(*m, med[0])),
            f(stats::ratio(*m, med[1])),
            f(stats::ratio(*m, med[2])),
        );
    }
    Ok(())
}

/// The layer blobs of the layout's only manifest, base first.
fn layer_blobs(lay: &Path) -> Result<Vec<PathBuf>> {
    let index: serde_json::Value = serde_json::from_slice(&fs::read(lay.join("index.json"))?)?;
    let m = index["manifests"][0]["digest"]
        .as_str()
        .context("index.json: manifests[0].digest")?;
    let blob = |d: &str| {
        lay.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value = serde_json::from_slice(&fs::read(blob(m))?)?;
    Ok(manifest["layers"]
        .as_array()
        .context("manifest layers")?
        .iter()
        .filter_map(|l| l["digest"].as_str().map(blob))
        .collect())
}
