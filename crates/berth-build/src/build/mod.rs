//! The executor: a parsed Dockerfile run stage by stage into an image in
//! the store.
//!
//! Each stage starts from an image in the store (pulled when missing),
//! `scratch` or an earlier stage. File-system steps (RUN, COPY, ADD and a
//! WORKDIR that creates its directory) work on an overlay of the parent's
//! layers with a fresh upper dir, which becomes the step's layer and is
//! moved into the store's layer cache, so the next step mounts it without
//! unpacking. Metadata steps change the config and add an `empty_layer`
//! history entry. Stages are built when the target needs them: its base
//! and the stages its `COPY --from` names.

mod cache;
mod config;
mod overlay;
mod run;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use berth_image::layer::LayerOptions;
use berth_image::registry;
use berth_image::store::{Image, Store};
use berth_image::Digest;
use serde_json::Value;

use self::cache::{Cache, Entry, Key};
use self::overlay::{Layers, Overlay};
use crate::context::Context;
use crate::copy::{self, CopyOptions};
use crate::dockerfile::{self, Copy, Dockerfile, Instruction, Kind, Source};
use crate::error::{BuildError, Result};

/// The network a RUN step gets unless it says `--network`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// The host's network namespace (the build can download).
    #[default]
    Host,
    /// A network namespace of its own with only loopback.
    None,
}

/// What to build.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile; `<context>/Dockerfile` by default.
    pub dockerfile: Option<PathBuf>,
    /// Tags for the image (`name:tag`); untagged images are named by
    /// digest (and collected by the store's gc unless tagged later).
    pub tags: Vec<String>,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// The stage to build (by name); the last one by default.
    pub target: Option<String>,
    /// Run every step, ignoring (and refreshing) the cache.
    pub no_cache: bool,
    pub network: Network,
    /// `SOURCE_DATE_EPOCH`: the time recorded in the config and history,
    /// and the latest mtime written into layers, so that the same inputs
    /// give the same digests.
    pub source_date_epoch: Option<i64>,
    /// How base images missing from the store are pulled.
    pub registry: registry::Options,
    /// Set to stop the build before its next step (a RUN in progress is
    /// stopped by killing its container: see [`container_prefix`]).
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// The id prefix of the containers this process's RUN steps run in.
pub fn container_prefix() -> String {
    format!("build-{}-", std::process::id())
}

/// What a build reports as it goes.
#[derive(Clone, Debug)]
pub enum Event<'a> {
    /// Step `id` starts; `name` is `[stage k/n] INSTRUCTION` or an
    /// internal step.
    Step { id: usize, name: &'a str },
    /// A line of a RUN step's output, `elapsed` seconds into it.
    Output {
        id: usize,
        elapsed: f64,
        line: &'a [u8],
    },
    /// Step `id` was served by the cache.
    Cached { id: usize },
    /// Step `id` is done after `elapsed` seconds.
    Done { id: usize, elapsed: f64 },
    /// Step `id` failed; the error follows as the build's result.
    Failed { id: usize, elapsed: f64 },
    /// Something the user should know that does not stop the build.
    Warning(&'a str),
}

/// A finished build.
#[derive(Clone, Debug)]
pub struct Built {
    pub image: Image,
    /// File-system steps executed, and those served by the cache.
    pub executed: usize,
    pub cached: usize,
}

/// Builds the image `o` describes into `store`, running RUN steps as
/// containers of `rt`. The calling process becomes a child subreaper
/// (PR_SET_CHILD_SUBREAPER), as it must to wait for the containers'
/// processes.
pub fn build(
    store: &Store,
    rt: &berth::Runtime,
    o: &BuildOptions,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<Built> {
    berth::process::set_child_subreaper()?;
    let mut b = Builder::new(store, rt, o, progress)?;
    let target = b.target_stage()?;
    let state = b.stage(target)?;
    b.finish(state)
}

/// The build state after a step.
#[derive(Clone, Debug)]
struct State {
    image: Value,
    layers: Layers,
    key: Key,
    /// The ARGs declared in the stage so far, with their values.
    args: BTreeMap<String, String>,
    cmd_set: bool,
    /// The time of the latest layer: what metadata steps record, so a
    /// rebuild served by the cache gives the same image.
    created: String,
}

struct Builder<'a> {
    store: &'a Store,
    rt: &'a berth::Runtime,
    o: &'a BuildOptions,
    progress: &'a mut dyn FnMut(Event<'_>),
    df: Dockerfile,
    ctx: std::rc::Rc<Context>,
    cache: Cache,
    globals: BTreeMap<String, Option<String>>,
    stages: Vec<Option<State>>,
    building: BTreeSet<usize>,
    used_args: BTreeSet<String>,
    next_id: usize,
    now: i64,
    executed: usize,
    cached: usize,
}

/// The ARGs BuildKit defines without a declaration in the global scope
/// (and in a stage once declared there).
fn platform_args() -> BTreeMap<String, String> {
    let arch = config::arch();
    let p = format!("linux/{arch}");
    [
        ("TARGETPLATFORM", p.as_str()),
        ("TARGETOS", "linux"),
        ("TARGETARCH", arch),
        ("TARGETVARIANT", ""),
        ("BUILDPLATFORM", p.as_str()),
        ("BUILDOS", "linux"),
        ("BUILDARCH", arch),
        ("BUILDVARIANT", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl<'a> Builder<'a> {
    fn new(
        store: &'a Store,
        rt: &'a berth::Runtime,
        o: &'a BuildOptions,
        progress: &'a mut dyn FnMut(Event<'_>),
    ) -> Result<Builder<'a>> {
        let dockerfile = o
            .dockerfile
            .clone()
            .unwrap_or_else(|| o.context.join("Dockerfile"));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut b = Builder {
            store,
            rt,
            o,
            progress,
            df: Dockerfile {
                escape: '\\',
                syntax: None,
                global_args: Vec::new(),
                stages: Vec::new(),
            },
            ctx: std::rc::Rc::new(Context::open(&o.context, Some(&dockerfile))?),
            cache: Cache::open(store)?,
            globals: BTreeMap::new(),
            stages: Vec::new(),
            building: BTreeSet::new(),
            used_args: BTreeSet::new(),
            next_id: 0,
            now,
            executed: 0,
            cached: 0,
        };
        let id = b.step(&format!(
            "[internal] load build definition from {}",
            dockerfile.display()
        ));
        let t = Instant::now();
        let text = fs::read_to_string(&dockerfile)
            .map_err(|e| BuildError::io("read the Dockerfile", &dockerfile, e));
        let parsed = text.and_then(|t| Ok(dockerfile::parse(&t)?));
        match parsed {
            Ok(df) => b.df = df,
            Err(e) => {
                b.emit(Event::Failed {
                    id,
                    elapsed: t.elapsed().as_secs_f64(),
                });
                return Err(e);
            }
        }
        if b.df.stages.is_empty() {
            return Err(BuildError::Invalid(
                "the Dockerfile has no FROM: nothing to build".into(),
            ));
        }
        b.emit(Event::Done {
            id,
            elapsed: t.elapsed().as_secs_f64(),
        });
        b.stages = vec![None; b.df.stages.len()];
        // Global ARGs, each expanded with those before it.
        let builtin = platform_args();
        for decl in b.df.global_args.clone() {
            let scope = b.global_scope(&builtin);
            let lookup = |k: &str| scope.get(k).cloned();
            let d = decl
                .expand(b.df.escape, &lookup)
                .map_err(|message| BuildError::Invalid(format!("global ARG: {message}")))?;
            let v = match o.build_args.get(&d.name) {
                Some(v) => {
                    b.used_args.insert(d.name.clone());
                    Some(v.clone())
                }
                None => d.default.or_else(|| builtin.get(&d.name).cloned()),
            };
            b.globals.insert(d.name, v);
        }
        Ok(b)
    }

    fn global_scope(&self, builtin: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut s = builtin.clone();
        for (k, v) in &self.globals {
            match v {
                Some(v) => s.insert(k.clone(), v.clone()),
                None => s.remove(k),
            };
        }
        s
    }

    fn cancelled(&self) -> bool {
        self.o
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst))
    }

    fn emit(&mut self, e: Event<'_>) {
        (self.progress)(e);
    }

    fn step(&mut self, name: &str) -> usize {
        self.next_id += 1;
        let id = self.next_id;
        self.emit(Event::Step { id, name });
        id
    }

    fn created(&self) -> String {
        config::rfc3339(self.o.source_date_epoch.unwrap_or(self.now))
    }

    fn stage_index(&self, name: &str, before: usize) -> Option<usize> {
        let by_name = self.df.stages[..before].iter().position(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        });
        by_name.or_else(|| name.parse::<usize>().ok().filter(|i| *i < before))
    }

    fn target_stage(&self) -> Result<usize> {
        let n = self.df.stages.len();
        match &self.o.target {
            None => Ok(n - 1),
            Some(t) => self.stage_index(t, n).ok_or_else(|| {
                let names: Vec<String> = self
                    .df
                    .stages
                    .iter()
                    .filter_map(|s| s.name.clone())
                    .collect();
                BuildError::Invalid(format!(
                    "--target {t}: no stage of that name (stages: {})",
                    if names.is_empty() {
                        "none named".to_string()
                    } else {
                        names.join(", ")
                    }
                ))
            }),
        }
    }

    /// The final state of stage `i`, building it first when needed.
    fn stage(&mut self, i: usize) -> Result<State> {
        if let Some(s) = &self.stages[i] {
            return Ok(s.clone());
        }
        if !self.building.insert(i) {
            return Err(BuildError::Invalid(format!("stage {i} depends on itself")));
        }
        let s = self.build_stage(i)?;
        self.building.remove(&i);
        self.stages[i] = Some(s.clone());
        Ok(s)
    }

    fn stage_label(&self, i: usize, k: usize) -> String {
        let stage = &self.df.stages[i];
        let n = stage.instructions.len() + 1;
        if self.df.stages.len() == 1 {
            format!("[{k}/{n}]")
        } else {
            let name = stage.name.clone().unwrap_or_else(|| format!("stage-{i}"));
            format!("[{name} {k}/{n}]")
        }
    }

    fn build_stage(&mut self, i: usize) -> Result<State> {
        let stage = self.df.stages[i].clone();
        let scope = self.global_scope(&platform_args());
        let lookup = |k: &str| scope.get(k).cloned();
        let (image, platform) = stage.expand_from(self.df.escape, &lookup)?;
        let label = format!("{} FROM {image}", self.stage_label(i, 1));
        let id = self.step(&label);
        let t = Instant::now();
        let base = self
            .base(i, &image, platform.as_deref())
            .map_err(|e| BuildError::Step {
                line: stage.line,
                instruction: format!("FROM {image}"),
                source: Box::new(e),
            });
        let mut state = match base {
            Ok(s) => s,
            Err(e) => {
                self.emit(Event::Failed {
                    id,
                    elapsed: t.elapsed().as_secs_f64(),
                });
                return Err(e);
            }
        };
        self.emit(Event::Done {
            id,
            elapsed: t.elapsed().as_secs_f64(),
        });
        // The base's ONBUILD triggers run first, and are not inherited.
        let triggers: Vec<String> = state.image["config"]["OnBuild"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(c) = state.image["config"].as_object_mut() {
            c.remove("OnBuild");
        }
        for t in triggers {
            let parsed = dockerfile::parse(&format!("FROM scratch\n{t}\n")).map_err(|e| {
                BuildError::Invalid(format!("{image}: ONBUILD trigger {t:?}: {}", e.message))
            })?;
            let Some(inst) = parsed
                .stages
                .into_iter()
                .next()
                .and_then(|s| s.instructions.into_iter().next())
            else {
                continue;
            };
            let inst = Instruction {
                line: stage.line,
                ..inst
            };
            let name = format!("{} ONBUILD {}", self.stage_label(i, 1), inst.text);
            self.instruction(i, &mut state, &inst, &name)?;
        }
        for (k, inst) in stage.instructions.iter().enumerate() {
            let name = format!("{} {}", self.stage_label(i, k + 2), inst.text);
            self.instruction(i, &mut state, inst, &name)?;
        }
        Ok(state)
    }

    /// The state FROM starts a stage with.
    fn base(&mut self, i: usize, image: &str, platform: Option<&str>) -> Result<State> {
        if let Some(p) = platform {
            let want = berth_image::store::PlatformSpec::parse(p)?;
            let host = berth_image::store::PlatformSpec::host();
            if want.os != host.os || want.arch != host.arch {
                return Err(BuildError::Unsupported(format!(
                    "--platform={p}: builds run RUN steps natively, so only linux/{} can be built here",
                    config::arch()
                )));
            }
        }
        let now = self.created();
        let fresh = |image: Value, layers: Layers, key: Key| State {
            created: image["created"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| now.clone()),
            image,
            layers,
            key,
            args: BTreeMap::new(),
            cmd_set: false,
        };
        if image.eq_ignore_ascii_case("scratch") {
            let mut scratch = config::scratch();
            config::rebase(&mut scratch);
            return Ok(fresh(scratch, Layers::default(), Key::root("scratch")));
        }
        if let Some(j) = self.df.stages.iter().take(i).position(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(image))
        }) {
            let s = self.stage(j)?;
            let key = s.key.child(&["stage"]);
            let created = s.created.clone();
            return Ok(State {
                created,
                ..fresh(s.image, s.layers, key)
            });
        }
        let img = self.image(image)?;
        let mut config: Value = serde_json::from_slice(&img.config_json).map_err(|e| {
            BuildError::Invalid(format!("image {image}: the config does not parse: {e}"))
        })?;
        config::rebase(&mut config);
        let layers = Layers {
            descriptors: img.manifest.layers.clone(),
            diff_ids: img.diff_ids()?,
        };
        Ok(fresh(config, layers, Key::root(&img.digest.to_string())))
    }

    /// An image from the store, pulled when it is not there.
    fn image(&mut self, reference: &str) -> Result<Image> {
        match self.store.image(reference) {
            Ok(i) => Ok(i),
            Err(berth_image::Error::NotFound(_)) => {
                let msg = format!("{reference} is not in the store: pulling it");
                self.emit(Event::Warning(&msg));
                registry::pull(self.store, reference, &self.o.registry, &mut |_| {}).map_err(|e| {
                    BuildError::Invalid(format!(
                        "image {reference}: not in the store, and pulling it failed ({e}); \
                         `berth image pull` or `berth image import` it first"
                    ))
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Runs one instruction of stage `i`, reporting it as step `name`.
    fn instruction(
        &mut self,
        i: usize,
        state: &mut State,
        inst: &Instruction,
        name: &str,
    ) -> Result<()> {
        if self.cancelled() {
            return Err(BuildError::Cancelled);
        }
        let id = self.step(name);
        let t = Instant::now();
        match self.execute(i, state, inst, id) {
            Ok(cached) => {
                if cached {
                    self.emit(Event::Cached { id });
                } else {
                    self.emit(Event::Done {
                        id,
                        elapsed: t.elapsed().as_secs_f64(),
                    });
                }
                Ok(())
            }
            Err(e) => {
                self.emit(Event::Failed {
                    id,
                    elapsed: t.elapsed().as_secs_f64(),
                });
                // A step killed by a cancellation failed because of it.
                let e = if self.cancelled() {
                    BuildError::Cancelled
                } else {
                    e
                };
                Err(BuildError::Step {
                    line: inst.line,
                    instruction: inst.text.clone(),
                    source: Box::new(e),
                })
            }
        }
    }

    /// The variables an instruction sees: the image's Env over the
    /// stage's ARGs.
    fn scope(state: &State) -> BTreeMap<String, String> {
        let mut s = state.args.clone();
        s.extend(config::env(&state.image));
        s
    }

    /// Returns whether the cache served the step.
    fn execute(
        &mut self,
        i: usize,
        state: &mut State,
        inst: &Instruction,
        id: usize,
    ) -> Result<bool> {
        let scope = Self::scope(state);
        let lookup = |k: &str| scope.get(k).cloned();
        let escape = self.df.escape;
        let inst = inst.expand(escape, &lookup)?;
        match &inst.kind {
            Kind::Arg(decls) => {
                for decl in decls {
                    let d = decl.expand(escape, &lookup).map_err(BuildError::Invalid)?;
                    let v = match self.o.build_args.get(&d.name) {
                        Some(v) => {
                            self.used_args.insert(d.name.clone());
                            Some(v.clone())
                        }
                        None => d.default.clone().or_else(|| {
                            self.globals
                                .get(&d.name)
                                .cloned()
                                .flatten()
                                .or_else(|| platform_args().get(&d.name).cloned())
                                .or_else(|| {
                                    (d.name == "SOURCE_DATE_EPOCH")
                                        .then_some(self.o.source_date_epoch)
                                        .flatten()
                                        .map(|e| e.to_string())
                                })
                        }),
                    };
                    // Not part of the chained key: a value reaches the
                    // cache only where it is used (RUN keys carry the
                    // args in scope, other steps their expanded text).
                    if let Some(v) = v {
                        state.args.insert(d.name, v);
                    }
                }
                self.metadata_history(state, &inst);
                Ok(false)
            }
            Kind::Run(r) => self.run(state, &inst, r, id),
            Kind::Copy(c) => self.copy(i, state, &inst, c, false),
            Kind::Add(c) => self.copy(i, state, &inst, c, true),
            Kind::Workdir(_) => {
                config::apply(&mut state.image, &inst.kind, &mut state.cmd_set)?;
                let dir = config::working_dir(&state.image);
                self.workdir(state, &inst, &dir)
            }
            kind => {
                config::apply(&mut state.image, kind, &mut state.cmd_set)?;
                state.key = state.key.child(&["META", &format!("{kind:?}")]);
                self.metadata_history(state, &inst);
                Ok(false)
            }
        }
    }

    fn metadata_history(&self, state: &mut State, inst: &Instruction) {
        let created = match self.o.source_date_epoch {
            Some(s) => config::rfc3339(s),
            None => state.created.clone(),
        };
        config::history(&mut state.image, &created, &inst.text, true);
    }

    /// Serves a file-system step from the cache, or runs `make` (which
    /// leaves its changes in the overlay's upper dir) and stores the
    /// layer. Returns whether the cache served it.
    fn fs_step(
        &mut self,
        state: &mut State,
        key: Key,
        created_by: &str,
        make: &mut dyn FnMut(&mut Self, &Overlay) -> Result<()>,
    ) -> Result<bool> {
        // A layer's mtimes depend on the epoch it was written with, so
        // the epoch is part of what the cache entry answers for.
        let epoch = self
            .o
            .source_date_epoch
            .map_or_else(|| "none".to_string(), |e| e.to_string());
        let entry_key = key.child(&["SOURCE_DATE_EPOCH", &epoch]);
        let hit = if self.o.no_cache {
            None
        } else {
            self.cache.get(self.store, &entry_key)
        };
        let (entry, cached) = match hit {
            Some(e) => (e, true),
            None => {
                let mut ov = Overlay::mount(self.store, &state.layers, true)?;
                make(self, &ov)?;
                ov.unmount()?;
                let layer = self.commit(&ov)?;
                let e = Entry {
                    layer,
                    created: config::rfc3339(self.now),
                };
                self.cache.put(&entry_key, &e)?;
                (e, false)
            }
        };
        if cached {
            self.cached += 1;
        } else {
            self.executed += 1;
        }
        let created = match self.o.source_date_epoch {
            Some(s) => config::rfc3339(s),
            None => entry.created.clone(),
        };
        match &entry.layer {
            Some((desc, diff_id)) => {
                state.layers.descriptors.push(desc.clone());
                state.layers.diff_ids.push(Digest::parse(diff_id)?);
                config::push_diff_id(&mut state.image, diff_id);
                config::history(&mut state.image, &created, created_by, false);
            }
            None => config::history(&mut state.image, &created, created_by, true),
        }
        state.created = created;
        state.key = key;
        Ok(cached)
    }

    /// The upper dir of an unmounted step overlay as a layer in the store
    /// (and in its layer cache); none when the step changed nothing.
    fn commit(&self, ov: &Overlay) -> Result<Option<(berth_image::store::Descriptor, String)>> {
        let upper = ov.upper();
        let empty = fs::read_dir(&upper)
            .map_err(|e| BuildError::io("read", &upper, e))?
            .next()
            .is_none();
        if empty {
            return Ok(None);
        }
        let opts = LayerOptions {
            mtime_clamp: self.o.source_date_epoch,
        };
        let layer = self.store.write_layer(&upper, &opts)?;
        self.store.adopt_layer(&layer.diff_id, &upper)?;
        Ok(Some((layer.descriptor, layer.diff_id.to_string())))
    }

    fn run(
        &mut self,
        state: &mut State,
        inst: &Instruction,
        r: &dockerfile::Run,
        id: usize,
    ) -> Result<bool> {
        let network_host = match r.network.as_deref() {
            None | Some("default") => self.o.network == Network::Host,
            Some("host") if self.o.network == Network::Host => true,
            Some("host") => {
                return Err(BuildError::Invalid(
                    "RUN --network=host: this build was started with --network none, which the Dockerfile cannot override".into(),
                ))
            }
            Some("none") => false,
            Some(other) => {
                return Err(BuildError::Invalid(format!(
                    "RUN --network={other}: use default, none or host"
                )))
            }
        };
        let shebang = r.shebang().map(|h| h.body());
        let argv = match (&shebang, r.shell_script()) {
            (Some(_), _) => Vec::new(),
            (None, Some(script)) => {
                let mut v = config::shell(&state.image);
                v.push(script);
                v
            }
            (None, None) => match &r.command {
                dockerfile::Command::Exec(v) => v.clone(),
                dockerfile::Command::Shell(s) => vec![s.clone()],
            },
        };
        let args_scope: Vec<String> = state.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let key = state.key.child(&[
            "RUN",
            &format!("{:?}", r),
            &argv.join("\0"),
            &args_scope.join("\0"),
            if network_host { "host" } else { "none" },
        ]);
        let created_by = match &shebang {
            Some(_) => inst.text.clone(),
            None => format!("RUN {}", argv.join(" ")),
        };
        let image = state.image.clone();
        let args = state.args.clone();
        self.fs_step(state, key, &created_by, &mut |b, ov| {
            let cmd = run::Command {
                argv: argv.clone(),
                args: &args,
                network_host,
                script: shebang.as_deref(),
            };
            let progress = &mut *b.progress;
            run::run(b.rt, ov, &image, &cmd, &mut |elapsed, line| {
                progress(Event::Output { id, elapsed, line })
            })
        })
    }

    fn copy(
        &mut self,
        i: usize,
        state: &mut State,
        inst: &Instruction,
        c: &Copy,
        add: bool,
    ) -> Result<bool> {
        let what = if add { "ADD" } else { "COPY" };
        if add && c.from.is_some() {
            return Err(BuildError::Invalid(
                "ADD does not take --from; use COPY".into(),
            ));
        }
        let paths: Vec<String> = c
            .sources
            .iter()
            .filter_map(|s| match s {
                Source::Path(p) => Some(p.clone()),
                Source::Heredoc(_) => None,
            })
            .collect();
        for s in &c.sources {
            if let Source::Heredoc(h) = s {
                let n = h.name.as_str();
                if n.is_empty() || n == "." || n == ".." || n.contains(['/', '\0']) {
                    return Err(BuildError::Invalid(format!(
                        "{what} <<{n}: a here-document's name is the file it makes, so it cannot be empty, . or .., or hold a /"
                    )));
                }
            }
        }
        let heredocs: Vec<(String, String)> = c
            .sources
            .iter()
            .filter_map(|s| match s {
                Source::Heredoc(h) => Some((h.name.clone(), h.content.clone())),
                Source::Path(_) => None,
            })
            .collect();
        let dir_dest = c.dest.ends_with('/') || c.dest == "." || c.dest.ends_with("/.");
        if c.sources.len() > 1 && !dir_dest {
            return Err(BuildError::Invalid(format!(
                "When using {what} with more than one source file, the destination must be a directory and end with a /"
            )));
        }
        let chmod = c
            .chmod
            .as_deref()
            .map(|m| {
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| BuildError::Invalid(format!("--chmod={m}: not an octal mode")))
            })
            .transpose()?;
        let mut dest = config::resolve_dir(&config::working_dir(&state.image), &c.dest);
        if dir_dest && dest != "/" {
            dest.push('/');
        }
        // Where the sources come from: the context, a stage or an image.
        let from_state = match &c.from {
            None => None,
            Some(f) if self.stage_index(f, i).is_none() && self.stage_index(f, self.df.stages.len()).is_some() => {
                return Err(BuildError::Invalid(format!(
                    "--from={f}: that stage is this one or comes after it; a stage can copy only from earlier ones"
                )))
            }
            Some(f) => Some(match self.stage_index(f, i) {
                Some(j) => self.stage(j)?,
                None => {
                    let img = self.image(f)?;
                    State {
                        image: Value::Null,
                        layers: Layers {
                            descriptors: img.manifest.layers.clone(),
                            diff_ids: img.diff_ids()?,
                        },
                        key: Key::root(&img.digest.to_string()),
                        args: BTreeMap::new(),
                        cmd_set: false,
                        created: String::new(),
                    }
                }
            }),
        };
        let from_view = match &from_state {
            Some(s) => Some(Overlay::mount(self.store, &s.layers, false)?),
            None => None,
        };
        let from_root = from_view.as_ref().map(|v| v.merged());
        let ctx = self.ctx.clone();
        let from = match &from_root {
            Some(r) => copy::From::Root(r),
            None => copy::From::Context(&ctx),
        };
        copy::check_remote(&paths, add)?;
        let sum = if paths.is_empty() {
            String::new()
        } else {
            copy::checksum(&from, &paths)?
        };
        let key = state.key.child(&[
            what,
            &format!("{c:?}"),
            &dest,
            &sum,
            &from_state
                .as_ref()
                .map(|s| s.key.0.clone())
                .unwrap_or_default(),
        ]);
        let chown = c.chown.clone();
        let created_by = inst.text.clone();
        self.fs_step(state, key, &created_by, &mut |_, ov| {
            let merged = ov.merged();
            let owner = chown.as_deref().map(|u| owner(&merged, u)).transpose()?;
            let opts = CopyOptions {
                chown: owner,
                chmod,
                add,
            };
            if !paths.is_empty() {
                copy::copy(&from, &paths, &dest, &merged, &opts)?;
            }
            if !heredocs.is_empty() {
                let dir = ov.scratch("heredocs")?;
                let mut names = Vec::new();
                for (name, content) in &heredocs {
                    write_file(&dir.join(name), content, 0o644)?;
                    names.push(name.clone());
                }
                let opts = CopyOptions { add: false, ..opts };
                copy::copy(&copy::From::Root(&dir), &names, &dest, &merged, &opts)?;
            }
            Ok(())
        })
    }

    /// WORKDIR's directory, made when missing (a layer of its own).
    /// The directories it creates belong to the stage's USER, as BuildKit
    /// makes them; existing ones are left as they are.
    fn workdir(&mut self, state: &mut State, inst: &Instruction, dir: &str) -> Result<bool> {
        let user = state.image["config"]["User"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let key = state.key.child(&["WORKDIR", dir, &user]);
        let created_by = inst.text.clone();
        let dir = format!("{}/", dir.trim_end_matches('/'));
        self.fs_step(state, key, &created_by, &mut |_, ov| {
            let empty = ov.scratch("workdir")?;
            let chown = if user.is_empty() {
                None
            } else {
                let u = berth_image::bundle::resolve_user(&ov.merged(), &user)
                    .map_err(|e| BuildError::Invalid(format!("USER {user}: {e}")))?;
                Some((u.uid(), u.gid()))
            };
            let opts = CopyOptions {
                chown,
                chmod: None,
                add: false,
            };
            copy::copy(
                &copy::From::Root(&empty),
                &["/".to_string()],
                &dir,
                &ov.merged(),
                &opts,
            )?;
            Ok(())
        })
    }

    fn finish(&mut self, mut state: State) -> Result<Built> {
        let id = self.step("exporting to image");
        let t = Instant::now();
        let unused: Vec<&String> = self
            .o
            .build_args
            .keys()
            .filter(|k| !self.used_args.contains(*k) && *k != "SOURCE_DATE_EPOCH")
            .collect();
        if !unused.is_empty() {
            let msg = format!(
                "build-args not consumed by any ARG: {}",
                unused
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            self.emit(Event::Warning(&msg));
        }
        state.image["created"] = Value::from(match self.o.source_date_epoch {
            Some(s) => config::rfc3339(s),
            None => state.created.clone(),
        });
        let first = self.o.tags.first().map(String::as_str);
        let image =
            self.store
                .put_image_json(&state.image, &state.layers.descriptors, None, first)?;
        for t in self.o.tags.iter().skip(1) {
            self.store.tag(t, &image.digest)?;
        }
        self.emit(Event::Done {
            id,
            elapsed: t.elapsed().as_secs_f64(),
        });
        Ok(Built {
            image,
            executed: self.executed,
            cached: self.cached,
        })
    }
}

/// `--chown=user[:group]` resolved through the root file system's
/// passwd and group files; a lone number is both uid and gid, as docker
/// has it.
fn owner(rootfs: &Path, spec: &str) -> Result<(u32, u32)> {
    if let Ok(n) = spec.parse::<u32>() {
        return Ok((n, n));
    }
    let u = berth_image::bundle::resolve_user(rootfs, spec)
        .map_err(|e| BuildError::Invalid(format!("--chown={spec}: {e}")))?;
    Ok((u.uid(), u.gid()))
}

/// Writes a file a step makes for itself (a here-document, a RUN script)
/// with `mode`.
fn write_file(p: &Path, content: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::write(p, content).map_err(|e| BuildError::io("write", p, e))?;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .map_err(|e| BuildError::io("chmod", p, e))
}
