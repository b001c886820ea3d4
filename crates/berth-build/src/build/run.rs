//! RUN: the command runs in a container through the core library, the
//! same path as `berth run`, on an overlay of the parent's layers; its
//! output is streamed to the caller line by line.
//!
//! The runtime makes mount points (`/proc`, `/dev`, `/sys`, the files it
//! binds) in the root file system when the image lacks them; those that
//! the command left empty are removed from the upper dir afterwards, so
//! they do not become part of the layer.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use berth_image::bundle::{self, Overrides};
use oci_spec::runtime::MountBuilder;
use serde_json::Value;

use super::overlay::{lexists_plain, Overlay};
use crate::error::{BuildError, Result};

/// What the step runs.
pub(crate) struct Command<'a> {
    pub argv: Vec<String>,
    /// Build args in scope: in the environment, under the image's Env.
    pub args: &'a BTreeMap<String, String>,
    pub network_host: bool,
    /// A script run as a file (a `RUN <<EOF` heredoc starting with `#!`).
    pub script: Option<&'a str>,
}

/// Where a script file is bound in the container: under `/dev`, a tmpfs,
/// so its mount point never reaches the upper dir.
const SCRIPT_DIR: &str = "/dev/.berth-build";

/// Runs `cmd` on `overlay` (mounted writable) with `image`'s config.
/// Output lines go to `out` with the time since the start.
pub(crate) fn run(
    rt: &berth::Runtime,
    overlay: &Overlay,
    image: &Value,
    cmd: &Command<'_>,
    out: &mut dyn FnMut(f64, &[u8]),
) -> Result<()> {
    let merged = overlay.merged();
    let config: oci_spec::image::ImageConfiguration = serde_json::from_value(image.clone())
        .map_err(|e| BuildError::Invalid(format!("the image config does not parse: {e}")))?;

    let mut env: Vec<String> = cmd.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.extend(
        super::config::env(image)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}")),
    );
    let mut mounts = Vec::new();
    let mut argv = cmd.argv.clone();
    if let Some(body) = cmd.script {
        let dir = overlay.scratch("script")?;
        let file = dir.join("script");
        super::write_file(&file, body, 0o755)?;
        mounts.push(bind(&dir, SCRIPT_DIR, true)?);
        argv = vec![format!("{SCRIPT_DIR}/script")];
    }
    if cmd.network_host {
        // Only onto a plain file or a missing name in a real /etc: the
        // runtime would make a symlink's target, outside what the
        // cleanup below can tell from the command's own files.
        let etc_ok = lexists_plain(&merged, Path::new("/etc")).is_some_and(|m| m.is_dir());
        for f in ["/etc/resolv.conf", "/etc/hosts"] {
            let in_root = merged.join(f.trim_start_matches('/'));
            let target_ok = match fs::symlink_metadata(&in_root) {
                Ok(m) => m.is_file(),
                Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            };
            if etc_ok && target_ok && Path::new(f).is_file() {
                mounts.push(bind(Path::new(f), f, true)?);
            }
        }
    }
    let o = Overrides {
        args: Some(argv),
        entrypoint: Some(Vec::new()),
        env,
        mounts,
        network_host: cmd.network_host,
        hostname: Some("berth-build".into()),
        ..Overrides::default()
    };
    let spec = bundle::runtime_spec(&config, &merged, &o)?;
    // Mount points the image lacks, to remove after the run.
    // Each missing ancestor too, a parent before its children.
    let mut made: Vec<PathBuf> = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let mut p = PathBuf::from("/");
        for c in m.destination().components().skip(1) {
            p.push(c);
            if lexists_plain(&merged, &p).is_none() && !made.contains(&p) {
                made.push(p.clone());
            }
        }
    }
    // The directories those go in, as they were: making a mount point
    // copies its parent up, which alone must not make a layer.
    let parents: Vec<(PathBuf, fs::Metadata)> = made
        .iter()
        .filter_map(|d| d.parent())
        .filter(|p| *p != Path::new("/"))
        .filter_map(|p| Some((p.to_path_buf(), lexists_plain(&merged, p)?)))
        .collect();
    let bundle_dir = overlay.scratch("bundle")?;
    bundle::write_bundle(&bundle_dir, &merged, &spec)?;

    let id = format!(
        "{}{:x}",
        super::container_prefix(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    );
    let null = fs::File::open("/dev/null").map_err(|e| BuildError::io("open", "/dev/null", e))?;
    let (reader, writer) =
        std::io::pipe().map_err(|e| BuildError::io("create a pipe for", "the output", e))?;
    let mut opts = berth::CreateOptions::new(&bundle_dir);
    opts.stdio = Some([null.as_raw_fd(), writer.as_raw_fd(), writer.as_raw_fd()]);
    let c = rt.create(&id, &opts)?;
    drop((null, writer));
    let start = Instant::now();
    let status = (|| -> Result<i32> {
        c.start()?;
        // The pipe reaches end of file when the last process in the
        // container's pid namespace is gone, which its init's exit ensures.
        let mut r = BufReader::new(reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => out(start.elapsed().as_secs_f64(), &line),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(BuildError::io("read the output of", "RUN", e)),
            }
        }
        Ok(c.wait()?)
    })();
    let deleted = c.delete(true);
    let status = status?;
    deleted?;
    if status != 0 {
        return Err(BuildError::Exit { code: status });
    }
    let upper = overlay.upper();
    for d in made.iter().rev() {
        remove_if_empty(&upper, d);
    }
    for (p, before) in parents.iter().rev() {
        drop_if_unchanged(&upper, p, before);
    }
    Ok(())
}

/// Removes the copied-up directory `rel` from `upper` when the command
/// left it as it was in the image: empty in the upper dir, not opaque,
/// with the same owner and mode. The image's own directory then shows
/// through again, times included.
fn drop_if_unchanged(upper: &Path, rel: &Path, before: &fs::Metadata) {
    use std::os::unix::fs::MetadataExt;
    let Some(now) = lexists_plain(upper, rel) else {
        return;
    };
    let p = upper.join(rel.strip_prefix("/").unwrap_or(rel));
    let empty = fs::read_dir(&p)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    let same = now.is_dir()
        && before.is_dir()
        && now.mode() == before.mode()
        && now.uid() == before.uid()
        && now.gid() == before.gid();
    if empty && same && !is_opaque(&p) {
        let _ = fs::remove_dir(&p);
    }
}

fn is_opaque(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return true;
    };
    let mut buf = [0u8; 4];
    // SAFETY: `c` is NUL-terminated, `buf` is writable for its length.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n > 0
}

fn bind(source: &Path, dest: &str, ro: bool) -> Result<oci_spec::runtime::Mount> {
    let mut options = vec!["rbind".to_string()];
    if ro {
        options.push("ro".into());
    }
    MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(options)
        .build()
        .map_err(|e| BuildError::Invalid(format!("bind mount {dest}: {e}")))
}

/// Removes `rel` from `upper` when it is an empty directory or empty
/// file there, then its parents while they are empty and were not in the
/// image either (the caller lists those too, deepest last).
fn remove_if_empty(upper: &Path, rel: &Path) {
    let Some(m) = lexists_plain(upper, rel) else {
        return;
    };
    let p = upper.join(rel.strip_prefix("/").unwrap_or(rel));
    if m.is_dir() {
        let _ = fs::remove_dir(&p);
    } else if m.is_file() && m.len() == 0 {
        let _ = fs::remove_file(&p);
    }
}
