//! `berth build`: a Dockerfile into an image in the store, with progress
//! in the style of `docker build --progress=plain` on stderr and the
//! image's digest on stdout.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use berth_build::{BuildOptions, Event, Network};
use berth_image::store::{Store, DEFAULT_ROOT};
use berth_image::{archive, layout};
use clap::Args;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The image store [default: /var/lib/berth]
    #[arg(long, value_name = "DIR")]
    pub image_root: Option<PathBuf>,
    /// Name the image NAME[:TAG] (repeatable)
    #[arg(short, long = "tag", value_name = "NAME[:TAG]")]
    pub tag: Vec<String>,
    /// The Dockerfile [default: CONTEXT/Dockerfile]
    #[arg(short, long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// A build-time variable K=V (repeatable); a bare K takes the value of
    /// the environment variable K
    #[arg(long, value_name = "K=V")]
    pub build_arg: Vec<String>,
    /// Build this stage (by name) instead of the last
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Run every step instead of reusing cached ones
    #[arg(long)]
    pub no_cache: bool,
    /// The network of RUN steps: host or none
    #[arg(long, value_name = "MODE", default_value = "host")]
    pub network: String,
    /// Also write the image out: type=oci,dest=DIR or
    /// type=docker-archive,dest=FILE
    #[arg(short, long, value_name = "SPEC")]
    pub output: Option<String>,
    /// Suppress the progress output; print only the image digest
    #[arg(short, long)]
    pub quiet: bool,
    /// The build context directory
    pub context: PathBuf,
}

enum Output {
    Oci(PathBuf),
    DockerArchive(PathBuf),
}

fn parse_output(spec: &str) -> Result<Output> {
    let mut ty = None;
    let mut dest = None;
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("type", v)) => ty = Some(v.to_string()),
            Some(("dest", v)) => dest = Some(PathBuf::from(v)),
            _ => bail!("--output {spec}: {part:?} is not type=... or dest=..."),
        }
    }
    let Some(dest) = dest else {
        bail!("--output {spec}: dest=PATH is missing");
    };
    match ty.as_deref() {
        Some("oci") => Ok(Output::Oci(dest)),
        Some("docker-archive") | Some("docker") | Some("tar") => Ok(Output::DockerArchive(dest)),
        other => bail!(
            "--output {spec}: type {:?} is not supported (use oci or docker-archive)",
            other.unwrap_or("")
        ),
    }
}

fn build_args(list: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in list {
        match a.split_once('=') {
            Some(("", _)) => bail!("--build-arg {a:?}: the name is empty"),
            Some((k, v)) => {
                out.insert(k.to_string(), v.to_string());
            }
            // docker: a bare name takes the value from the environment,
            // and is skipped when unset.
            None => {
                if let Ok(v) = std::env::var(a) {
                    out.insert(a.clone(), v);
                }
            }
        }
    }
    Ok(out)
}

/// Progress lines: `#N NAME`, output as `#N 0.123 line`, `#N CACHED`,
/// `#N DONE 0.4s`, `#N ERROR`.
fn report(e: Event<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = match e {
        Event::Step { id, name } => writeln!(err, "#{id} {name}"),
        Event::Output { id, elapsed, line } => {
            let text = String::from_utf8_lossy(line);
            writeln!(
                err,
                "#{id} {elapsed:.3} {}",
                text.trim_end_matches(['\n', '\r'])
            )
        }
        Event::Cached { id } => writeln!(err, "#{id} CACHED"),
        Event::Done { id, elapsed } => writeln!(err, "#{id} DONE {elapsed:.1}s"),
        Event::Failed { id, elapsed } => writeln!(err, "#{id} ERROR after {elapsed:.1}s"),
        Event::Warning(w) => writeln!(err, "WARNING: {w}"),
    };
}

pub fn build(rt: &berth::Runtime, a: &BuildArgs) -> Result<i32> {
    let root = a.image_root.as_deref().unwrap_or(Path::new(DEFAULT_ROOT));
    let store = Store::open(root)?;
    let network = match a.network.as_str() {
        "host" | "default" => Network::Host,
        "none" => Network::None,
        other => bail!("--network {other}: use host or none"),
    };
    let output = a.output.as_deref().map(parse_output).transpose()?;
    if !a.context.is_dir() {
        bail!("build context {}: not a directory", a.context.display());
    }
    // `--build-arg SOURCE_DATE_EPOCH=N` sets it as the environment
    // variable does, and wins over it, as in BuildKit.
    let args = build_args(&a.build_arg)?;
    let epoch = args
        .get("SOURCE_DATE_EPOCH")
        .cloned()
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok());
    let source_date_epoch = match epoch {
        Some(s) if !s.is_empty() => Some(
            s.parse::<i64>()
                .with_context(|| format!("SOURCE_DATE_EPOCH={s}: not a number of seconds"))?,
        ),
        _ => None,
    };
    let o = BuildOptions {
        context: a.context.clone(),
        dockerfile: a.file.clone(),
        tags: a.tag.clone(),
        build_args: args,
        target: a.target.clone(),
        no_cache: a.no_cache,
        network,
        source_date_epoch,
        ..BuildOptions::default()
    };
    // SIGINT, SIGTERM and SIGHUP stop the build cleanly: the running
    // step's container is killed, so the step fails and its mounts and
    // state are removed, and no further step starts.
    let cancel = Arc::new(AtomicBool::new(false));
    let blocked = crate::signals::block().context("block signals")?;
    {
        let cancel = cancel.clone();
        let root = rt.root().to_path_buf();
        crate::signals::relay(blocked, move |sig| {
            if ![libc::SIGINT, libc::SIGTERM, libc::SIGHUP].contains(&sig) {
                return;
            }
            cancel.store(true, Ordering::SeqCst);
            let rt = berth::Runtime::new(&root);
            let prefix = berth_build::container_prefix();
            for c in rt.list().unwrap_or_default() {
                if c.id().starts_with(&prefix) {
                    let _ = c.kill(libc::SIGKILL, true);
                }
            }
        })
        .context("start the signal thread")?;
    }
    let o = BuildOptions {
        cancel: Some(cancel),
        ..o
    };
    let quiet = a.quiet;
    let built = berth_build::build(&store, rt, &o, &mut |e| {
        if !quiet {
            report(e)
        }
    })?;
    let name = built.image.reference.clone();
    match output {
        Some(Output::Oci(dir)) => layout::export(&store, &[(name, built.image.clone())], &dir)
            .with_context(|| format!("--output: write {}", dir.display()))?,
        Some(Output::DockerArchive(file)) => {
            archive::export(&store, &[(name, built.image.clone())], &file)
                .with_context(|| format!("--output: write {}", file.display()))?
        }
        None => {}
    }
    if !quiet {
        for t in &a.tag {
            eprintln!("naming to {t}");
        }
        eprintln!("{} steps run, {} cached", built.executed, built.cached);
    }
    println!("{}", built.image.digest);
    Ok(0)
}
