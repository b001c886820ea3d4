//! A live OCI registry for image tests: Debian's `docker-registry` (the
//! CNCF distribution registry, v2 API) on a free loopback port with its
//! own storage, either open, behind htpasswd basic auth, or behind bearer
//! tokens from a token service this module runs itself (distribution's
//! "Token Authentication Specification": the registry sends clients to
//! the realm, which checks their basic credentials and answers with an
//! RS256 JWT granting the scope asked for, signed by a key whose
//! certificate is the registry's `rootcertbundle` and travels in the
//! token's `x5c` header).
//!
//! Everything is stopped and removed when the [`Registry`] drops, also
//! when a test fails: the registry process is killed and reaped (and dies
//! with the test process should that be killed), the token service's
//! thread is stopped and joined, the directory with the storage, keys and
//! logs is deleted.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::json;

use crate::packages::ensure_packages;

/// The token service's `service` (the JWT audience) and `issuer`.
pub const TOKEN_SERVICE: &str = "berth-test-registry";
/// See [`TOKEN_SERVICE`].
pub const TOKEN_ISSUER: &str = "berth-test-token-issuer";

/// How clients must authenticate.
#[derive(Clone, Copy, Debug)]
pub enum Auth<'a> {
    /// Not at all.
    Anonymous,
    /// HTTP basic auth with this user and password (htpasswd, bcrypt).
    Basic(&'a str, &'a str),
    /// Bearer tokens from a token service that knows this user and
    /// password.
    Token(&'a str, &'a str),
}

/// A free loopback port (free when this returns; the registry binds it
/// soon after).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A running registry; everything of it goes on drop.
pub struct Registry {
    child: Child,
    port: u16,
    // Dropped after the process is gone (fields drop in order, after
    // `Drop::drop`).
    tokens: Option<TokenServer>,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts one, installing `docker-registry` (and `htpasswd` or
    /// `openssl` as `auth` needs) if missing, and waits until it listens.
    pub fn start(auth: Auth<'_>) -> Registry {
        ensure_packages(&[("docker-registry", "docker-registry")]);
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let storage = dir.path().join("storage");
        fs::create_dir(&storage).expect("mkdir storage");
        let mut tokens = None;
        let auth = match auth {
            Auth::Anonymous => String::new(),
            Auth::Basic(u, p) => {
                ensure_packages(&[("htpasswd", "apache2-utils")]);
                let out = Command::new("htpasswd")
                    .args(["-Bbn", u, p])
                    .output()
                    .expect("htpasswd");
                assert!(out.status.success(), "htpasswd failed");
                let file = dir.path().join("htpasswd");
                fs::write(&file, &out.stdout).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                    file.display()
                )
            }
            Auth::Token(u, p) => {
                let t = TokenServer::start(dir.path(), u, p);
                let conf = format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {TOKEN_SERVICE}\n    \
                     issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                    t.port,
                    t.cert.display()
                );
                tokens = Some(t);
                conf
            }
        };
        let config = dir.path().join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n{auth}",
                storage.display()
            ),
        )
        .expect("write config");
        let log = fs::File::create(dir.path().join("log")).expect("log");
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        // SAFETY: the closure runs between fork and exec and only calls
        // prctl(2), which is async-signal-safe; it allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                // Killed with the test process, should a harness kill it
                // before the guard can run.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start docker-registry");
        let mut r = Registry {
            child,
            port,
            tokens,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = r.child.try_wait() {
                panic!("docker-registry exited ({st}):\n{}", r.log());
            }
            assert!(
                Instant::now() < deadline,
                "registry did not listen:\n{}",
                r.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    /// `127.0.0.1:PORT`, as written in references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The directory holding its config, storage and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the registry logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Where the registry keeps the bytes of blob `sha256:<hex>`.
    pub fn blob_data(&self, hex: &str) -> PathBuf {
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Where the registry keeps repository `name`'s links and tags.
    pub fn repository_dir(&self, name: &str) -> PathBuf {
        self.dir
            .path()
            .join("storage/docker/registry/v2/repositories")
            .join(name)
    }

    /// The requests the token service answered so far (empty without
    /// one).
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.tokens
            .as_ref()
            .map(|t| t.requests.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request to the token service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// The basic-auth user, if the request carried credentials.
    pub user: Option<String>,
    /// The `scope` parameters (`repository:NAME:ACTIONS`).
    pub scopes: Vec<String>,
    /// The HTTP status answered: 200 with a token, 401 for wrong
    /// credentials, 400 for a request the service cannot read.
    pub status: u16,
    /// What the token granted: `repository:NAME:ACTIONS` per scope,
    /// nothing for an anonymous request.
    pub granted: Vec<String>,
}

/// The token service: one thread answering one request per connection.
struct TokenServer {
    port: u16,
    cert: PathBuf,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
    thread: Option<JoinHandle<()>>,
}

/// What the service's thread needs to issue tokens.
struct Issuer {
    key: PathBuf,
    /// The certificate, DER in standard base64, for `x5c`.
    x5c: String,
    user: String,
    password: String,
    serial: AtomicU64,
}

impl TokenServer {
    /// Makes a key and self-signed certificate in `dir` and starts
    /// answering on a free loopback port.
    fn start(dir: &Path, user: &str, password: &str) -> TokenServer {
        ensure_packages(&[("openssl", "openssl")]);
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        let der = dir.join("token.der");
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let (k, c, d) = (
            key.to_str().expect("utf-8 path"),
            cert.to_str().expect("utf-8 path"),
            der.to_str().expect("utf-8 path"),
        );
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-days",
            "2",
            "-subj",
            "/CN=berth test token issuer",
            "-keyout",
            k,
            "-out",
            c,
        ]);
        run(&["x509", "-in", c, "-outform", "DER", "-out", d]);
        let x5c = base64::engine::general_purpose::STANDARD
            .encode(fs::read(&der).expect("read certificate"));
        let issuer = Issuer {
            key,
            x5c,
            user: user.into(),
            password: password.into(),
            serial: AtomicU64::new(0),
        };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token service");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, requests) = (stop.clone(), requests.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    if let Some(r) = issuer.answer(conn) {
                        requests.lock().unwrap_or_else(|e| e.into_inner()).push(r);
                    }
                }
            })
        };
        TokenServer {
            port,
            cert,
            stop,
            requests,
            thread: Some(thread),
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept so the thread sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Issuer {
    /// Reads one GET request from `conn` and answers it; None when the
    /// connection carried no request.
    fn answer(&self, conn: TcpStream) -> Option<TokenRequest> {
        conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut r = BufReader::new(conn.try_clone().ok()?);
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let target = line.split_whitespace().nth(1)?.to_string();
        let mut authorization = None;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).ok()? == 0 || h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.trim().eq_ignore_ascii_case("authorization") {
                    authorization = Some(v.trim().to_string());
                }
            }
        }
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let scopes: Vec<String> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| *k == "scope")
            .map(|(_, v)| percent_decode(v))
            .collect();
        let user = authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            });
        let mut req = TokenRequest {
            user: user.as_ref().map(|(u, _)| u.clone()),
            scopes,
            status: 200,
            granted: Vec::new(),
        };
        let body = match (&authorization, &user) {
            (Some(_), None) => {
                req.status = 400;
                json!({"details": "unreadable Authorization header"})
            }
            (Some(_), Some((u, p))) if *u != self.user || *p != self.password => {
                req.status = 401;
                json!({"details": "invalid username or password"})
            }
            _ => {
                // Anonymous requests get a token that grants nothing, as
                // public token services do for private repositories.
                if user.is_some() {
                    req.granted = req.scopes.clone();
                }
                let token = self.token(req.user.as_deref().unwrap_or(""), &req.granted);
                json!({"token": token, "access_token": token, "expires_in": 300})
            }
        };
        let reason = match req.status {
            200 => "OK",
            401 => "Unauthorized",
            _ => "Bad Request",
        };
        let body = body.to_string();
        let mut w = conn;
        let _ = write!(
            w,
            "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            req.status,
            body.len()
        );
        let _ = w.flush();
        Some(req)
    }

    /// A JWT for `subject` granting `scopes` (`type:name:actions`).
    fn token(&self, subject: &str, scopes: &[String]) -> String {
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|s| {
                let (kind, rest) = s.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(json!({
                    "type": kind,
                    "name": name,
                    "actions": actions.split(',').collect::<Vec<_>>(),
                }))
            })
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let claims = json!({
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": TOKEN_SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("berth-test-{}", self.serial.fetch_add(1, Ordering::SeqCst)),
            "access": access,
        });
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let signed = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run openssl dgst");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(signed.as_bytes())
            .expect("write to openssl");
        let mut sig = Vec::new();
        child
            .stdout
            .take()
            .expect("stdout")
            .read_to_end(&mut sig)
            .expect("read signature");
        assert!(
            child.wait().is_ok_and(|s| s.success()) && !sig.is_empty(),
            "openssl dgst -sign failed"
        );
        format!("{signed}.{}", b64(&sig))
    }
}

/// `%XX` escapes and `+` (a space) decoded.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_values() {
        assert_eq!(
            percent_decode("repository%3Aberth%2Fx%3Apull%2Cpush"),
            "repository:berth/x:pull,push"
        );
        assert_eq!(percent_decode("a+b%2"), "a b%2");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
