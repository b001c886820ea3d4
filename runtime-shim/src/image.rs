//! `berth image ...` and `berth run-image`: flags mapped onto berth-image.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use berth_image::bundle::{self, Overrides};
use berth_image::store::{PlatformSpec, Store, DEFAULT_ROOT};
use berth_image::{archive, layout, registry, rootfs, unpack};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::{CreateArgs, RunArgs};

/// `berth image`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// The image store [default: /var/lib/berth]
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an image from an OCI image layout (oci:DIR[:NAME], or a
    /// directory with an oci-layout file) or a `docker save` archive
    /// (docker-archive:FILE, or a file)
    Import {
        /// Store it under this name:tag (instead of the archive's tags)
        #[arg(long, value_name = "NAME:TAG")]
        name: Option<String>,
        /// Platform to pick from a multi-platform index [default: the host's]
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
        /// The source
        source: String,
    },
    /// Pull an image from a registry (REGISTRY/REPOSITORY[:TAG|@DIGEST];
    /// docker.io/library by default)
    Pull {
        /// Platform to pick from a multi-platform index [default: the host's]
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
        #[command(flatten)]
        registry: RegistryFlags,
        /// The image reference
        reference: String,
    },
    /// Push an image from the store to a registry
    Push {
        #[command(flatten)]
        registry: RegistryFlags,
        /// The image in the store
        reference: String,
        /// Where to push it [default: REFERENCE]
        destination: Option<String>,
    },
    /// List the images in the store
    Ls {
        /// Output format
        #[arg(long, value_enum, default_value_t = crate::cli::ListFormat::Table)]
        format: crate::cli::ListFormat,
    },
    /// Remove images (their references), then unreferenced blobs and layers
    Rm {
        /// References or digests
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Remove blobs and unpacked layers no image refers to
    Gc,
    /// Print an image's reference, digest, manifest and config as JSON
    Inspect {
        /// Reference or digest
        reference: String,
    },
    /// Print an image's history
    History {
        /// Reference or digest
        reference: String,
    },
    /// Unpack an image's layers into a directory (flat)
    Unpack {
        /// Reference or digest
        reference: String,
        /// Target directory (created; must be empty if it exists)
        dir: PathBuf,
    },
    /// Write images to a `docker save` archive or an OCI image layout
    Save {
        /// What to write: a `docker save` archive (a file) or an OCI
        /// image layout (a directory, new or an existing layout)
        #[arg(long, value_enum, default_value_t = SaveFormat::DockerArchive)]
        format: SaveFormat,
        /// Where to write it
        #[arg(short, long, value_name = "PATH", required = true)]
        output: PathBuf,
        /// References or digests
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Write an OCI bundle (rootfs/ and config.json) for an image
    Bundle {
        /// Reference or digest
        reference: String,
        /// Bundle directory (created; must be empty if it exists)
        dir: PathBuf,
    },
}

/// What `berth image save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SaveFormat {
    /// An OCI image layout directory
    Oci,
    /// A `docker save` archive, as `docker load` reads
    DockerArchive,
}

/// How to reach a registry.
#[derive(Debug, Args)]
pub struct RegistryFlags {
    /// Allow plain HTTP to this registry (repeatable); HTTPS only otherwise
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Credentials, instead of the credential files
    #[arg(long, value_name = "USER:PASSWORD")]
    pub creds: Option<String>,
    /// Credential file (auth.json format) [default: $REGISTRY_AUTH_FILE,
    /// $XDG_RUNTIME_DIR/containers/auth.json, then $DOCKER_CONFIG/config.json
    /// or ~/.docker/config.json]
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
}

impl RegistryFlags {
    fn options(&self, platform: Option<&str>) -> Result<registry::Options> {
        let auth = match &self.creds {
            Some(c) => match c.split_once(':') {
                Some((u, p)) if !u.is_empty() => Some((u.to_string(), p.to_string())),
                _ => bail!("--creds: expected USER:PASSWORD"),
            },
            None => None,
        };
        Ok(registry::Options {
            platform: match platform {
                Some(p) => PlatformSpec::parse(p)?,
                None => PlatformSpec::host(),
            },
            insecure: self.insecure_registry.clone(),
            auth,
            auth_file: self.authfile.clone(),
        })
    }
}

/// Draws progress on stderr, transfers and unpacks alike: a bar per blob
/// or layer on a terminal, otherwise a line when each starts and one when
/// it ends (stdout stays for results).
struct Bars {
    verb: &'static str,
    tty: bool,
    last: Option<std::time::Instant>,
    /// A bar is drawn without its line ended yet.
    open: bool,
}

/// Where one blob's transfer or one layer's unpack is.
enum Stage {
    Start,
    Bytes,
    Exists,
    /// Done; for an unpack, the entries it made.
    Done(Option<u64>),
}

impl Bars {
    fn new(verb: &'static str) -> Bars {
        use std::io::IsTerminal as _;
        Bars {
            verb,
            tty: std::io::stderr().is_terminal(),
            last: None,
            open: false,
        }
    }

    fn transfer(&mut self, p: registry::Progress) {
        use registry::Event;
        let stage = match p.event {
            Event::Start => Stage::Start,
            Event::Bytes => Stage::Bytes,
            Event::Exists => Stage::Exists,
            Event::Done => Stage::Done(None),
        };
        self.show(p.kind, p.digest.as_str(), p.done, p.total, stage);
    }

    fn unpack(&mut self, p: unpack::Progress) {
        use unpack::Event;
        let stage = match p.event {
            Event::Start => Stage::Start,
            Event::Bytes => Stage::Bytes,
            Event::Done(s) => Stage::Done(Some(s.entries)),
        };
        self.show("layer", p.digest.as_str(), p.done, p.total, stage);
    }

    fn show(&mut self, kind: &str, digest: &str, done: u64, total: u64, stage: Stage) {
        if !self.tty {
            match stage {
                Stage::Start => eprintln!("{} {kind} {digest} ({})", self.verb, human(total)),
                Stage::Exists => eprintln!("{} {kind} {digest}: already there", self.verb),
                Stage::Done(None) => eprintln!("done {digest}"),
                Stage::Done(Some(n)) => eprintln!("done {digest}: {n} entries"),
                Stage::Bytes => {}
            }
            return;
        }
        let now = std::time::Instant::now();
        if matches!(stage, Stage::Bytes)
            && self
                .last
                .is_some_and(|t| now.duration_since(t) < std::time::Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(now);
        const WIDTH: u64 = 30;
        let filled = match stage {
            Stage::Done(_) | Stage::Exists => WIDTH,
            _ => (done.min(total) * WIDTH).checked_div(total).unwrap_or(0),
        };
        let bar: String = (0..WIDTH)
            .map(|i| if i < filled { '#' } else { '.' })
            .collect();
        let state = match stage {
            Stage::Exists => "already there".to_string(),
            Stage::Done(None) => "done".to_string(),
            Stage::Done(Some(n)) => format!("done, {n} entries"),
            _ => format!("{} / {}", human(done), human(total)),
        };
        let short = digest.get(..19).unwrap_or(digest);
        eprint!("\r\x1b[K{} {kind:<6} {short} [{bar}] {state}", self.verb);
        self.open = !matches!(stage, Stage::Done(_) | Stage::Exists);
        if !self.open {
            eprintln!();
        }
    }
}

impl Drop for Bars {
    /// Ends a bar cut short (by an error), so what follows starts on a
    /// line of its own.
    fn drop(&mut self) {
        if self.open {
            eprintln!();
        }
    }
}

/// `berth run-image`.
#[derive(Debug, Args)]
pub struct RunImageArgs {
    /// The image store [default: /var/lib/berth]
    #[arg(long, value_name = "DIR")]
    pub image_root: Option<PathBuf>,
    /// Remove the container's files (its upper dir) when it exits
    #[arg(long)]
    pub rm: bool,
    /// Container name [default: generated]
    #[arg(long)]
    pub name: Option<String>,
    /// Memory limit (e.g. 64m, 1g)
    #[arg(short, long, value_name = "SIZE", value_parser = crate::cli::ram_in_bytes)]
    pub memory: Option<i64>,
    /// CPUs (e.g. 0.5)
    #[arg(long, value_name = "N")]
    pub cpus: Option<f64>,
    /// Environment variable K=V (repeatable)
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Bind mount HOST:CONTAINER[:ro] (repeatable)
    #[arg(short, long = "volume", value_name = "HOST:CTR[:ro]")]
    pub volume: Vec<String>,
    /// User name|uid[:group|gid]
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Allocate a terminal
    #[arg(short, long)]
    pub tty: bool,
    /// The image
    pub image: String,
    /// The command (replaces the image's Cmd)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn open_store(root: Option<&Path>) -> Result<Store> {
    let root = root.unwrap_or(Path::new(DEFAULT_ROOT));
    Ok(Store::open(root)?)
}

pub fn image(a: &ImageArgs) -> Result<i32> {
    let store = open_store(a.root.as_deref())?;
    match &a.command {
        ImageCommand::Import {
            name,
            platform,
            source,
        } => {
            let platform = match platform {
                Some(p) => PlatformSpec::parse(p)?,
                None => PlatformSpec::host(),
            };
            for img in import(&store, source, name.as_deref(), &platform)? {
                println!("{} {}", img.reference, img.digest);
            }
        }
        ImageCommand::Pull {
            platform,
            registry: flags,
            reference,
        } => {
            let o = flags.options(platform.as_deref())?;
            let mut bars = Bars::new("pulling");
            let img = registry::pull(&store, reference, &o, &mut |p| bars.transfer(p))?;
            println!("{} {}", img.reference, img.digest);
        }
        ImageCommand::Push {
            registry: flags,
            reference,
            destination,
        } => {
            let o = flags.options(None)?;
            let target = destination.as_deref().unwrap_or(reference);
            let mut bars = Bars::new("pushing");
            let d = registry::push(&store, reference, target, &o, &mut |p| bars.transfer(p))?;
            println!("{target} {d}");
        }
        ImageCommand::Ls { format } => {
            let refs = store.refs()?;
            match format {
                crate::cli::ListFormat::Json => {
                    let v: Vec<_> = refs
                        .iter()
                        .map(|(r, d)| json!({"reference": r, "digest": d}))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
                crate::cli::ListFormat::Table => {
                    println!("{:<50} {:<19} {:>10}", "REFERENCE", "DIGEST", "SIZE");
                    for r in refs.keys() {
                        let img = store.image(r)?;
                        let size: u64 = img.manifest.layers.iter().map(|l| l.size).sum();
                        println!(
                            "{:<50} {:<19} {:>10}",
                            r,
                            &img.digest.as_str()[..19],
                            human(size)
                        );
                    }
                }
            }
        }
        ImageCommand::Rm { references } => {
            for r in references {
                let d = store.untag(r)?;
                println!("untagged {r} ({d})");
            }
            gc(&store)?;
        }
        ImageCommand::Gc => gc(&store)?,
        ImageCommand::Inspect { reference } => {
            let img = store.image(reference)?;
            let config: serde_json::Value = serde_json::from_slice(&img.config_json)?;
            let v = json!({
                "reference": img.reference,
                "digest": img.digest.as_str(),
                "manifest": img.manifest,
                "config": config,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ImageCommand::History { reference } => {
            let img = store.image(reference)?;
            let config: serde_json::Value = serde_json::from_slice(&img.config_json)?;
            println!("{:<22} {:<6} CREATED BY", "CREATED", "EMPTY");
            for h in config["history"].as_array().into_iter().flatten().rev() {
                println!(
                    "{:<22} {:<6} {}",
                    h["created"].as_str().unwrap_or("-"),
                    if h["empty_layer"].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "no"
                    },
                    h["created_by"].as_str().unwrap_or("")
                );
            }
        }
        ImageCommand::Unpack { reference, dir } => {
            let img = store.image(reference)?;
            ensure_empty(dir)?;
            let mut bars = Bars::new("unpacking");
            let s = rootfs::unpack_flat_with_progress(&store, &img, dir, &mut |p| bars.unpack(p))?;
            drop(bars);
            println!(
                "{}: {} entries, {} into {}",
                img.reference,
                s.entries,
                human(s.bytes),
                dir.display()
            );
        }
        ImageCommand::Save {
            format,
            output,
            images,
        } => {
            let mut found = Vec::new();
            for r in images {
                let img = store.image(r)?;
                found.push((img.reference.clone(), img));
            }
            match format {
                SaveFormat::Oci => layout::export(&store, &found, output)?,
                SaveFormat::DockerArchive => archive::export(&store, &found, output)?,
            }
            for (name, img) in &found {
                println!("{name} {}", img.digest);
            }
        }
        ImageCommand::Bundle { reference, dir } => {
            let img = store.image(reference)?;
            ensure_empty(dir)?;
            let root = dir.join("rootfs");
            let mut bars = Bars::new("unpacking");
            rootfs::unpack_flat_with_progress(&store, &img, &root, &mut |p| bars.unpack(p))?;
            drop(bars);
            let spec = bundle::runtime_spec(&img.config()?, &root, &Overrides::default())?;
            bundle::write_bundle(dir, Path::new("rootfs"), &spec)?;
            println!("{}: bundle in {}", img.reference, dir.display());
        }
    }
    Ok(0)
}

/// Imports from `source`: `oci:DIR[:NAME]`, `docker-archive:FILE`, or a
/// path (a directory with `oci-layout`, or an archive file).
fn import(
    store: &Store,
    source: &str,
    name: Option<&str>,
    platform: &PlatformSpec,
) -> Result<Vec<berth_image::store::Image>> {
    if let Some(rest) = source.strip_prefix("oci:") {
        let (dir, tag) = match rest.rsplit_once(':') {
            Some((d, t)) if Path::new(d).join("oci-layout").exists() => (d, Some(t)),
            _ => (rest, None),
        };
        return import_layout(store, Path::new(dir), tag, name, platform);
    }
    if let Some(file) = source.strip_prefix("docker-archive:") {
        return Ok(archive::import(store, Path::new(file), name)?);
    }
    let p = Path::new(source);
    if p.join("oci-layout").exists() {
        return import_layout(store, p, None, name, platform);
    }
    if p.is_file() {
        return Ok(archive::import(store, p, name)?);
    }
    bail!("{source}: not an OCI layout (oci:DIR[:NAME]) or docker archive (docker-archive:FILE)")
}

fn import_layout(
    store: &Store,
    dir: &Path,
    tag: Option<&str>,
    name: Option<&str>,
    platform: &PlatformSpec,
) -> Result<Vec<berth_image::store::Image>> {
    let name = match (name, tag) {
        (Some(n), _) => n.to_string(),
        (None, Some(t)) if t.contains(':') || t.contains('/') => t.to_string(),
        (None, Some(t)) => format!(
            "{}:{t}",
            dir.file_name().unwrap_or_default().to_string_lossy()
        ),
        (None, None) => format!(
            "{}:latest",
            dir.file_name().unwrap_or_default().to_string_lossy()
        ),
    };
    Ok(vec![layout::import(store, dir, tag, &name, platform)?])
}

fn gc(store: &Store) -> Result<()> {
    let g = store.gc()?;
    println!(
        "removed {} blobs ({}) and {} unpacked layers",
        g.blobs,
        human(g.bytes),
        g.layers
    );
    Ok(())
}

fn ensure_empty(dir: &Path) -> Result<()> {
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!("{}: not empty", dir.display());
    }
    Ok(())
}

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `berth run-image`: an overlay of the image's layers with a fresh upper
/// dir, a bundle from its config and the flags, then `berth run`.
pub fn run_image(rt: &berth::Runtime, a: &RunImageArgs) -> Result<i32> {
    let store = open_store(a.image_root.as_deref())?;
    let img = store.image(&a.image)?;
    let id = a.name.clone().unwrap_or_else(|| {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!("run-{:x}-{}", n & 0xffff_ffff, std::process::id())
    });
    let mut mounts = Vec::new();
    for v in &a.volume {
        mounts.push(bundle::bind_mount(v).with_context(|| format!("--volume {v}"))?);
    }
    let o = Overrides {
        args: (!a.command.is_empty()).then(|| a.command.clone()),
        env: a.env.clone(),
        user: a.user.clone(),
        workdir: a.workdir.clone(),
        mounts,
        memory: a.memory,
        cpus: a.cpus,
        terminal: a.tty,
        ..Overrides::default()
    };
    // Only layers not yet unpacked in the store report progress.
    let mut bars = Bars::new("unpacking");
    let prepared = rootfs::prepare_with_progress(&store, &img, &id, &o, &mut |p| bars.unpack(p))?;
    drop(bars);
    let args = RunArgs {
        create: CreateArgs {
            id: id.clone(),
            bundle: prepared.bundle.clone(),
            console_socket: None,
            pid_file: None,
            no_pivot: false,
            no_new_keyring: false,
            preserve_fds: 0,
        },
        detach: false,
        keep: false,
    };
    let status = crate::commands::run(rt, &args);
    let cleanup = if a.rm {
        prepared.remove()
    } else {
        prepared.unmount()
    };
    let status = status?;
    cleanup?;
    Ok(status)
}
