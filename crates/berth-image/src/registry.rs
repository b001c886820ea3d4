//! Registries (OCI distribution spec v2, "Pulling manifests", "Pulling
//! blobs", "Pushing blobs", "Pushing manifests"): pulling an image into
//! the store and pushing one from it, through `oci-client`.
//!
//! The store's API is synchronous; each call runs a small current-thread
//! tokio runtime for the client and drives it from the caller's thread
//! (from a thread of its own when the caller is inside a tokio runtime).
//! Every manifest and blob is verified against the digest that names it
//! before it lands in the store (through [`Store::put_blob`], so a
//! mismatch stores nothing). Manifests are kept and pushed as the exact
//! bytes the registry served, so their digests survive a round trip.

use std::future::Future;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol, SizedStream};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;
use oci_client::{Client, Reference};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::{media, pick_platform, Image, Index, Manifest, PlatformSpec, Store};

/// How to reach a registry.
#[derive(Clone, Debug)]
pub struct Options {
    /// The platform to pick from a multi-platform index.
    pub platform: PlatformSpec,
    /// Registries (`host[:port]`, as written in references) that may be
    /// reached over plain HTTP. Empty by default: HTTPS only.
    pub insecure: Vec<String>,
    /// Explicit user and password; they override the credential files.
    pub auth: Option<(String, String)>,
    /// A credential file (`auth.json` / docker `config.json` format) to
    /// read instead of the default ones.
    pub auth_file: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            platform: PlatformSpec::host(),
            insecure: Vec::new(),
            auth: None,
            auth_file: None,
        }
    }
}

/// What a transfer reports as it goes, for progress bars.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The blob (or manifest).
    pub digest: Digest,
    /// `manifest`, `config` or `layer`.
    pub kind: &'static str,
    /// Bytes transferred so far.
    pub done: u64,
    /// The blob's size as its descriptor gives it.
    pub total: u64,
    /// Where the transfer is.
    pub event: Event,
}

/// The stages of one blob's transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The transfer begins.
    Start,
    /// More bytes arrived (or left).
    Bytes,
    /// The blob was there already (in the store, or in the registry);
    /// nothing was transferred.
    Exists,
    /// The blob is transferred and verified.
    Done,
}

/// Manifest types asked for on pull. Docker schema 1 is not among them.
const ACCEPT: [&str; 4] = [
    media::MANIFEST,
    media::INDEX,
    media::DOCKER_MANIFEST,
    media::DOCKER_LIST,
];

/// How far nested indexes are followed.
const MAX_INDEX_DEPTH: usize = 8;

/// Pushed blobs are read and sent in pieces of this size.
const PUSH_PIECE: usize = 4 << 20;

/// Pulls `reference` (`[registry/]repository[:tag|@digest]`, with
/// `docker.io/library` the default) into `store` and tags it there under
/// `reference`. An index is resolved to the manifest for `o.platform`;
/// blobs already in the store are not fetched again.
pub fn pull(
    store: &Store,
    reference: &str,
    o: &Options,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Image> {
    off_runtime(|| pull_here(store, reference, o, progress))
}

/// Runs `f` on this thread, or on a thread of its own when this one is
/// inside a tokio runtime: the client's runtime blocks on its futures,
/// which tokio forbids on a runtime's threads, so a library host that is
/// itself async can call pull and push directly.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| match scope.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

fn pull_here(
    store: &Store,
    reference: &str,
    o: &Options,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Image> {
    let s = Session::new(reference, o, RegistryOperation::Pull)?;
    let (mut bytes, mut digest) = s.manifest(&s.reference)?;
    for depth in 0.. {
        let doc: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::format(s.what(&format!("manifest {digest}")), e.to_string()))?;
        if doc["schemaVersion"].as_u64() != Some(2) {
            return Err(Error::Unsupported(s.what(&format!(
                "manifest {digest}: schemaVersion {} (only 2 is supported)",
                doc["schemaVersion"]
            ))));
        }
        let media_type = doc["mediaType"].as_str().unwrap_or_default();
        let is_index = media_type == media::INDEX
            || media_type == media::DOCKER_LIST
            || (media_type.is_empty() && doc.get("manifests").is_some());
        if !is_index {
            break;
        }
        if depth == MAX_INDEX_DEPTH {
            return Err(Error::format(
                s.what("index"),
                format!("indexes nested more than {MAX_INDEX_DEPTH} deep"),
            ));
        }
        let index: Index = serde_json::from_value(doc)
            .map_err(|e| Error::format(s.what(&format!("index {digest}")), e.to_string()))?;
        let desc = pick_platform(&s.label, &index.manifests, &o.platform)?;
        let child = Digest::parse(&desc.digest)?;
        let (b, d) = s.manifest(&s.reference.clone_with_digest(child.to_string()))?;
        (bytes, digest) = (b, d);
    }
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::format(s.what(&format!("manifest {digest}")), e.to_string()))?;

    s.fetch(store, &manifest.config, "config", progress)?;
    for l in &manifest.layers {
        s.fetch(store, l, "layer", progress)?;
    }
    // The manifest goes in last: a pull that fails part way leaves no
    // manifest naming blobs the store lacks.
    let what = s.what(&format!("manifest {digest}"));
    store.put_blob(&bytes[..], Some(&digest), &what)?;
    store.tag(reference, &digest)?;
    store.image_by_digest(&crate::store::normalize_ref(reference), &digest)
}

/// Pushes the image `reference_in_store` names to `target`: the config
/// and layers the repository lacks, then the manifest, byte for byte as
/// stored. Returns the manifest's digest.
pub fn push(
    store: &Store,
    reference_in_store: &str,
    target: &str,
    o: &Options,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Digest> {
    off_runtime(|| push_here(store, reference_in_store, target, o, progress))
}

fn push_here(
    store: &Store,
    reference_in_store: &str,
    target: &str,
    o: &Options,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Digest> {
    let img = store.image(reference_in_store)?;
    let bytes = store.read_blob(&img.digest)?;
    let s = Session::new(target, o, RegistryOperation::Push)?;
    s.send(store, &img.manifest.config, "config", progress)?;
    for l in &img.manifest.layers {
        s.send(store, l, "layer", progress)?;
    }
    let media_type = img
        .manifest
        .media_type
        .clone()
        .unwrap_or_else(|| media::MANIFEST.into());
    s.put_manifest(&bytes, &media_type)
}

/// Pushes a manifest or index as `bytes` to `target`; the repository must
/// hold what it names already. Returns its digest.
pub fn push_manifest(target: &str, bytes: &[u8], media_type: &str, o: &Options) -> Result<Digest> {
    off_runtime(|| {
        let s = Session::new(target, o, RegistryOperation::Push)?;
        s.put_manifest(bytes, media_type)
    })
}

/// One reference's registry connection.
struct Session {
    rt: tokio::runtime::Runtime,
    client: Client,
    reference: Reference,
    /// The reference as the caller wrote it, for messages.
    label: String,
    /// `host[:port]` as written (`docker.io` for the default).
    registry: String,
    insecure: bool,
    has_credentials: bool,
}

impl Session {
    /// Connects for `op`, authenticating up front (see [`Session::login`]).
    fn new(reference: &str, o: &Options, op: RegistryOperation) -> Result<Session> {
        let r: Reference = reference.parse().map_err(|e: oci_client::ParseError| {
            Error::format(format!("image reference {reference:?}"), e.to_string())
        })?;
        let registry = r.registry().to_string();
        let insecure = o
            .insecure
            .iter()
            .any(|h| h == &registry || h == r.resolve_registry());
        let mut plain = o.insecure.clone();
        if insecure {
            plain.push(r.resolve_registry().to_string());
        }
        // reqwest is built without a default crypto provider so that no
        // C TLS library is linked; ring is installed once per process.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(plain),
            use_monolithic_push: true,
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(300)),
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| Error::Registry {
            registry: registry.clone(),
            reference: reference.to_string(),
            msg: format!("cannot set up the client: {}", chain(&e)),
        })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("start the registry client's runtime", "", e))?;
        let creds = match &o.auth {
            Some(c) => Some(c.clone()),
            None => {
                let files = match &o.auth_file {
                    Some(f) => vec![f.clone()],
                    None => default_auth_files(),
                };
                credentials(&files, &registry, r.repository())?
            }
        };
        let auth = match &creds {
            Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
            None => RegistryAuth::Anonymous,
        };
        // Blob calls take the auth the client keeps per registry.
        rt.block_on(client.store_auth_if_needed(r.resolve_registry(), &auth));
        let s = Session {
            rt,
            client,
            reference: r,
            label: reference.to_string(),
            registry,
            insecure,
            has_credentials: creds.is_some(),
        };
        s.login(&auth, op)?;
        Ok(s)
    }

    /// Follows the registry's challenge once, before any other request:
    /// basic auth is noted, and a bearer token is asked of the token
    /// service with the credentials and kept for the session. Left to the
    /// client's first request, a token service's refusal would be dropped
    /// and the request sent without a token: all there would be to report
    /// is a bare 401, and every request would ask for a token again.
    fn login(&self, auth: &RegistryAuth, op: RegistryOperation) -> Result<()> {
        self.rt
            .block_on(self.client.auth(&self.reference, auth, op))
            .map(|_| ())
            .map_err(|e| self.error(e, "login"))
    }

    fn what(&self, thing: &str) -> String {
        format!("{}: {thing}", self.label)
    }

    /// A manifest's bytes and digest, checked against the digest the
    /// registry names (and the reference's, when it has one).
    fn manifest(&self, r: &Reference) -> Result<(Vec<u8>, Digest)> {
        // Ignored: the auth stored for the registry in `new` applies.
        let auth = RegistryAuth::Anonymous;
        let (bytes, digest) = self
            .rt
            .block_on(self.client.pull_manifest_raw(r, &auth, &ACCEPT))
            .map_err(|e| self.error(e, "manifest"))?;
        let digest = Digest::parse(&digest)?;
        if let Some(want) = r.digest() {
            let got = Digest::of(&bytes);
            if got.as_str() != want {
                return Err(Error::DigestMismatch {
                    what: self.what("manifest"),
                    expected: want.to_string(),
                    actual: got.to_string(),
                });
            }
        }
        Ok((bytes.to_vec(), digest))
    }

    /// Streams one blob into the store unless it is there already.
    fn fetch(
        &self,
        store: &Store,
        desc: &crate::store::Descriptor,
        kind: &'static str,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        let d = Digest::parse(&desc.digest)?;
        let mut report = |done, event| {
            progress(Progress {
                digest: d.clone(),
                kind,
                done,
                total: desc.size,
                event,
            })
        };
        if store.has_blob(&d) {
            report(desc.size, Event::Exists);
            return Ok(());
        }
        report(0, Event::Start);
        let what = self.what(&format!("{kind} {d}"));
        let stream = self
            .rt
            .block_on(self.client.pull_blob_stream(&self.reference, d.as_str()))
            .map_err(|e| self.error(e, &format!("{kind} {d}")))?;
        let mut r = StreamReader {
            rt: &self.rt,
            stream,
            pending: bytes::Bytes::new(),
            done: 0,
            report: &mut report,
        };
        let (_, n) = store.put_blob(&mut r, Some(&d), &what)?;
        report(n, Event::Done);
        Ok(())
    }

    /// Uploads one blob from the store unless the repository has it.
    fn send(
        &self,
        store: &Store,
        desc: &crate::store::Descriptor,
        kind: &'static str,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        let d = Digest::parse(&desc.digest)?;
        let path = store.blob_path(&d);
        let size = std::fs::metadata(&path)
            .map_err(|e| Error::io("stat blob", &path, e))?
            .len();
        let mut report = |done, event| {
            progress(Progress {
                digest: d.clone(),
                kind,
                done,
                total: size,
                event,
            })
        };
        let exists = self
            .rt
            .block_on(self.client.blob_exists(&self.reference, d.as_str()))
            .map_err(|e| self.error(e, &format!("{kind} {d}")))?;
        if exists {
            report(size, Event::Exists);
            return Ok(());
        }
        report(0, Event::Start);
        let file = store.open_blob(&d)?;
        let sent = Arc::new(AtomicU64::new(0));
        let body = file_stream(file, sent.clone());
        let upload = self
            .client
            .push_blob_stream(&self.reference, body, d.as_str(), Some(size));
        let mut last = 0;
        self.with_ticks(upload, || {
            let n = sent.load(Ordering::Relaxed);
            if n != last {
                last = n;
                report(n, Event::Bytes);
            }
        })
        .map_err(|e| self.error(e, &format!("{kind} {d}")))?;
        report(size, Event::Done);
        Ok(())
    }

    fn put_manifest(&self, bytes: &[u8], media_type: &str) -> Result<Digest> {
        let content_type = media_type.parse().map_err(|_| {
            Error::format(
                self.what("manifest mediaType"),
                format!("{media_type:?} is not a valid header value"),
            )
        })?;
        self.rt
            .block_on(
                self.client
                    .push_manifest_raw(&self.reference, bytes.to_vec(), content_type),
            )
            .map_err(|e| self.error(e, "manifest"))?;
        Ok(Digest::of(bytes))
    }

    /// Runs `fut` to completion, calling `tick` every 100ms meanwhile
    /// (uploads happen in tasks the future only waits on).
    fn with_ticks<T>(&self, fut: impl Future<Output = T>, mut tick: impl FnMut()) -> T {
        self.rt.block_on(async {
            let mut fut: Pin<Box<dyn Future<Output = T> + '_>> = Box::pin(fut);
            loop {
                let sleep = Box::pin(tokio::time::sleep(Duration::from_millis(100)));
                match futures_util::future::select(fut, sleep).await {
                    futures_util::future::Either::Left((out, _)) => return out,
                    futures_util::future::Either::Right((_, f)) => {
                        fut = f;
                        tick();
                    }
                }
            }
        })
    }

    /// Turns a client error into one that names the registry and reference,
    /// and says what to do where there is something to do.
    fn error(&self, e: OciDistributionError, thing: &str) -> Error {
        let auth = |msg: String| Error::RegistryAuth {
            registry: self.registry.clone(),
            reference: self.label.clone(),
            msg: if self.has_credentials {
                format!("{msg}; the credentials were refused")
            } else {
                format!(
                    "{msg}; no credentials were given or found for {}",
                    self.registry
                )
            },
        };
        let not_found = || {
            Error::NotFound(match thing {
                "manifest" => format!("{} in registry {}", self.label, self.registry),
                _ => format!("{}: {thing} in registry {}", self.label, self.registry),
            })
        };
        let other = |msg: String| Error::Registry {
            registry: self.registry.clone(),
            reference: self.label.clone(),
            msg: format!("{thing}: {msg}"),
        };
        match e {
            OciDistributionError::UnauthorizedError { .. } => auth("401 Unauthorized".into()),
            OciDistributionError::AuthenticationFailure(r) => {
                auth(format!("token request failed: {}", token_refusal(&r)))
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                let text = envelope
                    .errors
                    .iter()
                    .map(|e| format!("{:?}: {}", e.code, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    auth(text)
                } else if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    not_found()
                } else {
                    other(text)
                }
            }
            OciDistributionError::ServerError { code, message, .. } => match code {
                401 | 403 => auth(format!("HTTP {code}")),
                404 => not_found(),
                _ => other(format!("HTTP {code}: {}", message.trim())),
            },
            OciDistributionError::DigestError(
                oci_client::errors::DigestError::VerificationError { expected, actual },
            ) => Error::DigestMismatch {
                what: self.what(thing),
                expected,
                actual,
            },
            OciDistributionError::RequestError(r) => match r.status().map(|s| s.as_u16()) {
                Some(401 | 403) => auth(format!("HTTP {}", r.status().unwrap_or_default())),
                Some(404) => not_found(),
                _ if (r.is_connect() || r.is_request()) && !self.insecure => Error::Registry {
                    registry: self.registry.clone(),
                    reference: self.label.clone(),
                    msg: format!(
                        "cannot reach it over HTTPS ({}); plain HTTP is refused unless the \
                         registry is marked insecure (--insecure-registry {})",
                        chain(&r),
                        self.registry
                    ),
                },
                _ => other(chain(&r)),
            },
            e => other(chain(&e)),
        }
    }
}

/// What a token service said when it refused: the message of its JSON
/// body (`details`, as docker's token services write it, `message`, or the
/// distribution error envelope's), else the body as it came.
fn token_refusal(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let field = |v: &serde_json::Value| {
        ["details", "message", "error_description", "error"]
            .iter()
            .find_map(|k| v[*k].as_str().filter(|s| !s.is_empty()).map(str::to_string))
    };
    field(&v)
        .or_else(|| field(&v["errors"][0]))
        .unwrap_or_else(|| body.trim().to_string())
}

/// An error and its sources, `: `-joined (reqwest's own message is terse).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// A blob download as a `Read`, for [`Store::put_blob`]: each read drives
/// the runtime until the next piece arrives.
struct StreamReader<'a> {
    rt: &'a tokio::runtime::Runtime,
    stream: SizedStream,
    pending: bytes::Bytes,
    done: u64,
    report: &'a mut dyn FnMut(u64, Event),
}

impl Read for StreamReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            match self.rt.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.pending = b,
                // The client checks the digest too, and says so only after
                // the last byte. The store checks the same bytes and refuses
                // them with the expected and actual digests: let it.
                Some(Err(e)) if is_verification(&e) => return Ok(0),
                Some(Err(e)) => return Err(e),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        self.done += n as u64;
        (self.report)(self.done, Event::Bytes);
        Ok(n)
    }
}

fn is_verification(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<oci_client::errors::DigestError>())
        .is_some_and(|d| matches!(d, oci_client::errors::DigestError::VerificationError { .. }))
}

/// A store blob as an upload body, counting what has been read into `sent`.
fn file_stream(
    file: std::fs::File,
    sent: Arc<AtomicU64>,
) -> impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static {
    futures_util::stream::unfold(Some(file), move |f| {
        let sent = sent.clone();
        async move {
            let mut f = f?;
            let mut buf = Vec::with_capacity(PUSH_PIECE);
            match (&mut f).take(PUSH_PIECE as u64).read_to_end(&mut buf) {
                Ok(0) => None,
                Ok(n) => {
                    sent.fetch_add(n as u64, Ordering::Relaxed);
                    Some((Ok(bytes::Bytes::from(buf)), Some(f)))
                }
                Err(e) => Some((Err(OciDistributionError::IoError(e)), None)),
            }
        }
    })
}

/// The credential files looked at, in order: `$REGISTRY_AUTH_FILE`,
/// `$XDG_RUNTIME_DIR/containers/auth.json`, then docker's
/// `$DOCKER_CONFIG/config.json` (`~/.docker/config.json`).
pub fn default_auth_files() -> Vec<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let mut v = Vec::new();
    v.extend(env("REGISTRY_AUTH_FILE"));
    v.extend(env("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")));
    match env("DOCKER_CONFIG") {
        Some(d) => v.push(d.join("config.json")),
        None => v.extend(env("HOME").map(|h| h.join(".docker/config.json"))),
    }
    v
}

/// The user and password for `registry` (as written in the reference)
/// from the first of `files` that has an entry for it. Entries are
/// `auths.<key>.auth` (base64 `user:password`) or `username`/`password`;
/// a key is a registry (`host[:port]`, optionally with a scheme, as docker
/// writes `https://index.docker.io/v1/`) or a registry and repository
/// prefix (`host/namespace`), the most specific winning. Missing files are
/// skipped; a malformed one is an error naming it.
pub fn credentials(
    files: &[PathBuf],
    registry: &str,
    repository: &str,
) -> Result<Option<(String, String)>> {
    for f in files {
        let text = match std::fs::read(f) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("read", f, e)),
        };
        if let Some(c) = credentials_in(f, &text, registry, repository)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

fn credentials_in(
    file: &Path,
    text: &[u8],
    registry: &str,
    repository: &str,
) -> Result<Option<(String, String)>> {
    let bad = |msg: String| Error::format(file.display().to_string(), msg);
    let doc: serde_json::Value = serde_json::from_slice(text).map_err(|e| bad(e.to_string()))?;
    let Some(auths) = doc["auths"].as_object() else {
        return Ok(None);
    };
    let aliases: &[&str] = if registry == "docker.io" {
        &["docker.io", "index.docker.io", "registry-1.docker.io"]
    } else {
        &[registry]
    };
    let path = format!("{registry}/{repository}");
    let mut best: Option<(usize, &str, &serde_json::Value)> = None;
    for (key, entry) in auths {
        let k = key
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        // docker's legacy key names an API path, not a repository.
        let k = k.strip_suffix("/v1").unwrap_or(k);
        let (host, rest) = match k.split_once('/') {
            Some((h, r)) => (h, Some(r)),
            None => (k, None),
        };
        if !aliases.contains(&host) {
            continue;
        }
        let specificity = match rest {
            None => 0,
            Some(r)
                if path.starts_with(&format!("{registry}/{r}/"))
                    || path == format!("{registry}/{r}") =>
            {
                r.len() + 1
            }
            Some(_) => continue,
        };
        if !matches!(best, Some((s, _, _)) if s >= specificity) {
            best = Some((specificity, key, entry));
        }
    }
    let Some((_, key, entry)) = best else {
        return Ok(None);
    };
    if let Some(a) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .map_err(|e| bad(format!("auths.{key}.auth: {e}")))?;
        let s = String::from_utf8(raw).map_err(|e| bad(format!("auths.{key}.auth: {e}")))?;
        let (u, p) = s.split_once(':').ok_or_else(|| {
            bad(format!(
                "auths.{key}.auth: expected base64 of user:password"
            ))
        })?;
        return Ok(Some((u.to_string(), p.to_string())));
    }
    match (entry["username"].as_str(), entry["password"].as_str()) {
        (Some(u), Some(p)) => Ok(Some((u.to_string(), p.to_string()))),
        _ => {
            tracing::debug!(file = %file.display(), key, "credential entry without auth or username/password (identity tokens and helpers are not read)");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn reads_auth_entries() {
        let f = Path::new("auth.json");
        let text = serde_json::json!({"auths": {
            "reg.example:5000": {"auth": b64("u:p:w")},
            "reg.example:5000/team": {"auth": b64("team:t")},
            "https://index.docker.io/v1/": {"auth": b64("hub:h")},
            "other.example": {"username": "o", "password": "q"},
        }})
        .to_string();
        let c = |reg, repo| credentials_in(f, text.as_bytes(), reg, repo).unwrap();
        assert_eq!(
            c("reg.example:5000", "x/y"),
            Some(("u".into(), "p:w".into()))
        );
        assert_eq!(
            c("reg.example:5000", "team/y"),
            Some(("team".into(), "t".into()))
        );
        assert_eq!(
            c("reg.example:5000", "teamy/y"),
            Some(("u".into(), "p:w".into()))
        );
        assert_eq!(
            c("docker.io", "library/busybox"),
            Some(("hub".into(), "h".into()))
        );
        assert_eq!(c("other.example", "a"), Some(("o".into(), "q".into())));
        assert_eq!(c("reg.example", "a"), None);
    }

    #[test]
    fn refuses_malformed_auth() {
        let f = Path::new("auth.json");
        let text = br#"{"auths": {"r": {"auth": "!!"}}}"#;
        let e = credentials_in(f, text, "r", "a").unwrap_err().to_string();
        assert!(e.contains("auth.json") && e.contains("auths.r.auth"), "{e}");
        assert!(credentials_in(f, b"{", "r", "a").is_err());
    }

    #[test]
    fn token_refusals_read_as_text() {
        assert_eq!(
            token_refusal(r#"{"details":"incorrect username or password"}"#),
            "incorrect username or password"
        );
        assert_eq!(
            token_refusal(r#"{"errors":[{"code":"DENIED","message":"no access"}]}"#),
            "no access"
        );
        assert_eq!(token_refusal(" 401 go away\n"), "401 go away");
    }

    #[test]
    fn missing_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("none.json");
        let b = dir.path().join("auth.json");
        std::fs::write(
            &b,
            format!(r#"{{"auths": {{"r:1": {{"auth": "{}"}}}}}}"#, b64("a:b")),
        )
        .unwrap();
        assert_eq!(
            credentials(&[a, b], "r:1", "x").unwrap(),
            Some(("a".into(), "b".into()))
        );
    }
}
