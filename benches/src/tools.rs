//! What the image benchmarks share: running a command that must succeed,
//! and finding the berth binary to measure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Runs `cmd` with no input; its failure carries its stderr.
pub fn sh(cmd: &mut Command) -> Result<()> {
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {cmd:?}"))?;
    if !o.status.success() {
        bail!(
            "{cmd:?}: {}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

/// `explicit`, else `berth` beside this program, else the workspace's
/// target/release/berth.
pub fn berth_path(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(b) = explicit {
        return Ok(b.to_path_buf());
    }
    let exe = std::env::current_exe()?;
    let beside = exe.with_file_name("berth");
    if beside.is_file() {
        return Ok(beside);
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/berth");
    if ws.is_file() {
        return Ok(ws);
    }
    bail!("no berth binary: build it (cargo build --release -p berth-shim) or pass --berth")
}
