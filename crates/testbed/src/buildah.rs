//! Debian's `buildah` (1.28) as the reference Dockerfile builder for
//! `berth build`: a private store per [`Buildah`], images exported as OCI
//! layouts, and file-by-file manifests of root file systems so that two
//! builders' results can be compared ([`rootfs_manifest`],
//! [`rootfs_manifest_of_dir`], [`diff_manifests`]).
//!
//! # Isolation from the host
//! Every call runs with its own `--root`/`--runroot` (overlay driver) and
//! its own `storage.conf`, `containers.conf`, `registries.conf`, signature
//! policy and `TMPDIR`, so the host's `/var/lib/containers` and
//! `/etc/containers` neither feed nor receive anything. `RUN` steps use
//! `--isolation oci` with runc and `--network none`:
//! - crun, buildah's default runtime on Debian, refuses cgroup v1 hybrid
//!   hosts ("cgroups in hybrid mode not supported");
//! - `--isolation chroot` would work but allows only `--network host`, and
//!   leaves `/etc/hosts` and `/etc/resolv.conf` in the image;
//! - the netavark backend creates `/run/containers/networks` on the host
//!   whatever the configuration says, so the network backend is CNI with
//!   its config dir in the temp dir (nothing of it is used with `none`).
//!
//! `--layers` caches one image per instruction; `ENV`, `LABEL`,
//! `WORKDIR` (and the like) make `empty_layer` history entries rather than
//! layers. Buildah 1.28 has `--timestamp SECONDS` (no `SOURCE_DATE_EPOCH`):
//! it sets `created` and clamps the mtimes of files in the new layers.
//!
//! # What differs between builders inherently
//! [`BUILDER_ARTIFACTS`] lists paths to leave out of rootfs comparisons:
//! - `/etc/hostname` (and `/etc/hosts`, `/etc/resolv.conf` under chroot
//!   isolation): buildah bind-mounts them into `RUN` containers and leaves
//!   the empty mount points (mode 0755) in the committed layer when the
//!   base lacks them. Other builders create them or not.
//! - `/run/.containerenv` and `/run`: buildah mounts the marker file and
//!   creates `/run` for it; another builder need not.
//! - `/proc`, `/sys`, `/dev`: the runtime creates these mount points when a
//!   `RUN` needs them; they appear only if the base image lacks them.
//!
//! Fields that [`Entry`] does not record because they differ inherently:
//! mtimes (of directories always, since every builder touches them in its
//! own order; of files created by `RUN` unless both builders pin the time),
//! atimes/ctimes, inode numbers and hard-link counts, and xattrs such as
//! `security.capability` left by the host file system.
//!
//! In the image config, only `config` (Env, Cmd, Entrypoint, WorkingDir,
//! User, Labels, ExposedPorts, Volumes, StopSignal), `os` and
//! `architecture` compare; buildah adds the label `io.buildah.version`,
//! and `created`, `history[].created_by` / `comment` (buildah writes
//! `/bin/sh -c #(nop) ENV ...` and `FROM <id>`) and `rootfs.diff_ids`
//! (tar bytes: order, headers, mtimes) are builder-specific.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::runner::Output;

/// The buildah binary the helpers run.
pub const BUILDAH: &str = "/usr/bin/buildah";

/// The runtime for `RUN` steps (see the module doc for why not crun).
pub const RUNC: &str = "/usr/sbin/runc";

/// Paths (in the image, `/`-rooted) that buildah may add by itself; pass
/// them as `ignore` to [`diff_manifests`]. See the module doc.
pub const BUILDER_ARTIFACTS: &[&str] = &[
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/run/.containerenv",
    "/run",
    "/proc",
    "/sys",
    "/dev",
];

/// A buildah with a private store under a temp directory. Dropping it
/// removes its containers, unmounts whatever it left mounted there and
/// deletes the directory.
pub struct Buildah {
    dir: PathBuf,
}

impl Buildah {
    /// A fresh store in a new unique directory under `parent`.
    pub fn new(parent: &Path) -> Buildah {
        let dir = tempfile::Builder::new()
            .prefix("buildah-")
            .tempdir_in(parent)
            .expect("buildah temp dir")
            .keep();
        for d in ["root", "run", "tmp", "net"] {
            fs::create_dir_all(dir.join(d)).expect("buildah store dirs");
        }
        fs::write(
            dir.join("storage.conf"),
            "[storage]\ndriver = \"overlay\"\n",
        )
        .expect("storage.conf");
        fs::write(
            dir.join("containers.conf"),
            format!(
                "[network]\nnetwork_backend = \"cni\"\nnetwork_config_dir = \"{}\"\n",
                dir.join("net").display()
            ),
        )
        .expect("containers.conf");
        fs::write(dir.join("registries.conf"), "").expect("registries.conf");
        fs::write(
            dir.join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .expect("policy.json");
        Buildah { dir }
    }

    /// The store's directory (holding `root`, `run` and the config files).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `buildah` with the store's global flags and environment; add the
    /// subcommand and its arguments.
    pub fn command(&self) -> Command {
        let mut c = Command::new(BUILDAH);
        c.arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .args(["--storage-driver", "overlay"])
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                self.dir.join("registries.conf"),
            )
            .env("TMPDIR", self.dir.join("tmp"))
            .env_remove("BUILDAH_ISOLATION")
            .env_remove("BUILDAH_LAYERS")
            .env_remove("BUILDAH_FORMAT")
            .stdin(Stdio::null());
        c
    }

    /// Runs `buildah ARGS...` and captures its output.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = self.command();
        c.args(args);
        capture(&mut c)
    }

    /// Imports a `docker save` archive (e.g. [`crate::image::busybox_archive`])
    /// and tags its image `name`.
    pub fn import_archive(&self, archive: &Path, name: &str) {
        let policy = self.policy();
        let src = format!("docker-archive:{}", archive.display());
        let id = self.run(&["pull", "-q", "--signature-policy", &policy, &src]);
        id.ok();
        self.run(&["tag", id.out().trim(), name]).ok();
    }

    /// `buildah bud --layers` of `context` with `dockerfile`, tagged `tag`,
    /// with `--build-arg K=V` for each of `build_args` and `extra` flags
    /// appended (`--no-cache`, `--timestamp 0`, `--target S`...). Returns
    /// the output whatever the outcome; the image id is its last line.
    pub fn bud(
        &self,
        context: &Path,
        dockerfile: &Path,
        tag: &str,
        build_args: &[(&str, &str)],
        extra: &[&str],
    ) -> Output {
        let mut c = self.bud_command(context, dockerfile, tag, build_args, extra);
        capture(&mut c)
    }

    /// The command [`Buildah::bud`] runs, for callers that time it.
    pub fn bud_command(
        &self,
        context: &Path,
        dockerfile: &Path,
        tag: &str,
        build_args: &[(&str, &str)],
        extra: &[&str],
    ) -> Command {
        let mut c = self.command();
        c.arg("bud")
            .args(["--signature-policy", &self.policy()])
            .args(["--layers", "--isolation", "oci", "--runtime", RUNC])
            .args(["--network", "none", "-t", tag, "-f"])
            .arg(dockerfile);
        for (k, v) in build_args {
            c.arg("--build-arg").arg(format!("{k}={v}"));
        }
        c.args(extra).arg(context);
        c
    }

    /// Writes image `tag` as an OCI layout at `dir`, referenced as `name`.
    pub fn export_oci(&self, tag: &str, dir: &Path, name: &str) {
        let policy = self.policy();
        let dest = format!("oci:{}:{name}", dir.display());
        self.run(&["push", "-q", "--signature-policy", &policy, tag, &dest])
            .ok();
    }

    /// Removes every image and container, dropping the layer cache.
    pub fn clear(&self) {
        self.run(&["rm", "--all"]).ok();
        self.run(&["rmi", "--all", "--force"]).ok();
    }

    fn policy(&self) -> String {
        self.dir.join("policy.json").display().to_string()
    }
}

impl Drop for Buildah {
    fn drop(&mut self) {
        let _ = self.command().args(["rm", "--all"]).output();
        // A failed build leaves its overlay `merged` mounts, and the
        // driver bind-mounts its own directory onto itself; innermost
        // first so that each unmount succeeds.
        for mp in crate::leak::mounts_under(&self.dir).iter().rev() {
            let _ = nix::mount::umount2(mp.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn capture(c: &mut Command) -> Output {
    let command = format!("{c:?}");
    let o = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command}: {e}"));
    Output {
        command,
        code: o.status.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&o.status).unwrap_or(0)
        }),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// What a file system entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

/// One entry of a root file system, with the fields that must agree
/// between builders (no times, inodes or link counts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits, including setuid/setgid/sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Size in bytes of regular files; 0 for the rest.
    pub size: u64,
    /// Hex sha256 of a regular file's content.
    pub sha256: Option<String>,
    /// A symlink's target.
    pub link: Option<String>,
    /// Device number of device nodes.
    pub rdev: u64,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} {:o} {}:{}",
            self.kind, self.mode, self.uid, self.gid
        )?;
        if self.kind == Kind::File {
            let sum = self.sha256.as_deref().unwrap_or("");
            write!(f, " {}B sha256:{}", self.size, &sum[..sum.len().min(12)])?;
        }
        if let Some(l) = &self.link {
            write!(f, " -> {l}")?;
        }
        if matches!(self.kind, Kind::CharDevice | Kind::BlockDevice) {
            write!(f, " rdev {}", self.rdev)?;
        }
        Ok(())
    }
}

/// Entries keyed by `/`-rooted path (`/`, `/bin`, `/bin/sh`...).
pub type Manifest = BTreeMap<String, Entry>;

/// The manifest of the root file system of image `name` in the OCI layout
/// `oci_dir` (unpacked by `umoci`, which applies whiteouts), and the
/// image's config JSON.
pub fn rootfs_manifest(oci_dir: &Path, name: &str) -> (Manifest, Value) {
    let tmp = tempfile::tempdir_in(oci_dir.parent().unwrap_or(Path::new("/tmp")))
        .expect("unpack temp dir");
    let bundle = tmp.path().join("bundle");
    let out = capture(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:{name}", oci_dir.display()))
            .arg(&bundle)
            .stdin(Stdio::null()),
    );
    out.ok();
    let manifest = rootfs_manifest_of_dir(&bundle.join("rootfs"))
        .unwrap_or_else(|e| panic!("read {}: {e}", bundle.display()));
    (manifest, image_config(oci_dir, name))
}

/// The config JSON of image `name` in the OCI layout `oci_dir`.
pub fn image_config(oci_dir: &Path, name: &str) -> Value {
    let read = |p: PathBuf| -> Value {
        let b = fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        serde_json::from_slice(&b).unwrap_or_else(|e| panic!("parse {}: {e}", p.display()))
    };
    let blob = |d: &str| {
        oci_dir
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index = read(oci_dir.join("index.json"));
    let m = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("{}: no image named {name:?}", oci_dir.display()));
    let manifest = read(blob(m["digest"].as_str().expect("manifest digest")));
    read(blob(
        manifest["config"]["digest"]
            .as_str()
            .expect("config digest"),
    ))
}

/// The manifest of the tree at `root` (e.g. `berth image unpack`'s
/// output), without following symlinks.
pub fn rootfs_manifest_of_dir(root: &Path) -> io::Result<Manifest> {
    let mut m = Manifest::new();
    walk(root, "/", &mut m)?;
    Ok(m)
}

fn walk(path: &Path, key: &str, m: &mut Manifest) -> io::Result<()> {
    let md = fs::symlink_metadata(path)?;
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_char_device() {
        Kind::CharDevice
    } else if ft.is_block_device() {
        Kind::BlockDevice
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_socket() {
        Kind::Socket
    } else {
        Kind::File
    };
    let (size, sha256) = if kind == Kind::File {
        (md.len(), Some(sha256_file(path)?))
    } else {
        (0, None)
    };
    let link = if kind == Kind::Symlink {
        Some(fs::read_link(path)?.to_string_lossy().into_owned())
    } else {
        None
    };
    let rdev = if matches!(kind, Kind::CharDevice | Kind::BlockDevice) {
        md.rdev()
    } else {
        0
    };
    m.insert(
        key.to_string(),
        Entry {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size,
            sha256,
            link,
            rdev,
        },
    );
    if kind == Kind::Dir {
        for e in fs::read_dir(path)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let child = if key == "/" {
                format!("/{name}")
            } else {
                format!("{key}/{name}")
            };
            walk(&e.path(), &child, m)?;
        }
    }
    Ok(())
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The differences between manifests `a` and `b`, one readable line per
/// path (`only in a: ...`, `only in b: ...`, `/p: a ... / b ...`). A path
/// is skipped when it equals an entry of `ignore`, or lies under one that
/// ends in `/` (`"/var/cache/"` skips everything below `/var/cache`).
pub fn diff_manifests(a: &Manifest, b: &Manifest, ignore: &[&str]) -> Vec<String> {
    let skip = |p: &str| {
        ignore.iter().any(|i| match i.strip_suffix('/') {
            Some(dir) => p.starts_with(*i) || p == dir,
            None => p == *i,
        })
    };
    let mut out = Vec::new();
    for (p, ea) in a {
        if skip(p) {
            continue;
        }
        match b.get(p) {
            None => out.push(format!("only in a: {p} ({ea})")),
            Some(eb) if eb != ea => out.push(format!("{p}: a {ea} / b {eb}")),
            Some(_) => {}
        }
    }
    for (p, eb) in b {
        if !skip(p) && !a.contains_key(p) {
            out.push(format!("only in b: {p} ({eb})"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds RUN + COPY + ENV on the busybox image and checks the files
    /// and the config buildah produced, and that the manifest of the same
    /// tree written by hand differs only where the build changed it.
    #[test]
    fn buildah_builds_busybox_dockerfile() {
        crate::require_root();
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        let archive = crate::image::busybox_archive(d, "localhost/busybox:berth");
        let ctx = d.join("ctx");
        fs::create_dir(&ctx).unwrap();
        fs::write(ctx.join("data.txt"), "copied\n").unwrap();
        fs::write(
            ctx.join("Dockerfile"),
            "FROM localhost/busybox:berth\n\
             RUN mkdir -p /opt/x && echo ran > /opt/x/run.txt && chmod 0640 /opt/x/run.txt && ln -s run.txt /opt/x/link\n\
             COPY data.txt /opt/data.txt\n\
             ENV GREETING=hello\n",
        )
        .unwrap();

        let b = Buildah::new(d);
        b.import_archive(&archive, "localhost/busybox:berth");
        let out = b.bud(
            &ctx,
            &ctx.join("Dockerfile"),
            "localhost/t:1",
            &[],
            &["--timestamp", "0"],
        );
        out.ok();
        assert!(out.stdout.contains("STEP 4/4: ENV"), "{out}");
        let oci = d.join("oci");
        b.export_oci("localhost/t:1", &oci, "t");
        let (files, config) = rootfs_manifest(&oci, "t");

        let run = &files["/opt/x/run.txt"];
        assert_eq!(
            (run.kind, run.mode, run.uid, run.size),
            (Kind::File, 0o640, 0, 4)
        );
        assert_eq!(
            run.sha256.as_deref(),
            Some(hex_sha256(b"ran\n").as_str()),
            "{run}"
        );
        assert_eq!(files["/opt/x/link"].link.as_deref(), Some("run.txt"));
        let data = &files["/opt/data.txt"];
        assert_eq!((data.kind, data.mode, data.size), (Kind::File, 0o644, 7));
        assert_eq!(files["/bin/sh"].link.as_deref(), Some("busybox"));

        let env = config["config"]["Env"].as_array().expect("Env");
        assert!(env.iter().any(|e| e == "GREETING=hello"), "{config}");
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
        assert_eq!(config["created"], "1970-01-01T00:00:00Z");
        // FROM's layer, RUN's and COPY's; ENV adds history only.
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
        let history = config["history"].as_array().unwrap();
        assert_eq!(history.len(), 4, "{config}");
        assert_eq!(history[3]["empty_layer"], true);

        // The same tree made by hand: busybox rootfs plus the build's
        // files. Only buildah's artifacts may differ.
        let hand = d.join("hand");
        crate::build_rootfs(&hand).unwrap();
        fs::create_dir_all(hand.join("opt/x")).unwrap();
        fs::write(hand.join("opt/x/run.txt"), "ran\n").unwrap();
        fs::set_permissions(
            hand.join("opt/x/run.txt"),
            std::os::unix::fs::PermissionsExt::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::symlink("run.txt", hand.join("opt/x/link")).unwrap();
        fs::write(hand.join("opt/data.txt"), "copied\n").unwrap();
        // The archive's layer is tarred in deterministic mode, which
        // normalises directory modes to 0755, /tmp's sticky 1777 included.
        fs::set_permissions(
            hand.join("tmp"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        for p in ["/opt", "/opt/x"] {
            let mode = files[p].mode;
            fs::set_permissions(
                hand.join(&p[1..]),
                std::os::unix::fs::PermissionsExt::from_mode(mode),
            )
            .unwrap();
        }
        fs::set_permissions(
            &hand,
            std::os::unix::fs::PermissionsExt::from_mode(files["/"].mode),
        )
        .unwrap();
        let by_hand = rootfs_manifest_of_dir(&hand).unwrap();
        let diff = diff_manifests(&files, &by_hand, BUILDER_ARTIFACTS);
        assert!(diff.is_empty(), "{}", diff.join("\n"));
        // And the comparison does see a change.
        fs::write(hand.join("opt/data.txt"), "changed\n").unwrap();
        let diff = diff_manifests(&files, &rootfs_manifest_of_dir(&hand).unwrap(), &[]);
        assert!(
            diff.iter().any(|l| l.starts_with("/opt/data.txt:")),
            "{diff:?}"
        );

        // A cached rebuild reuses every step.
        let again = b.bud(
            &ctx,
            &ctx.join("Dockerfile"),
            "localhost/t:2",
            &[],
            &["--timestamp", "0"],
        );
        again.ok();
        assert_eq!(again.stdout.matches("Using cache").count(), 3, "{again}");
        drop(b);
        assert!(crate::leak::mounts_under(d).is_empty());
    }

    fn hex_sha256(b: &[u8]) -> String {
        Sha256::digest(b)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn diff_reports_kind_mode_and_missing_paths() {
        let e = |kind, mode| Entry {
            kind,
            mode,
            uid: 0,
            gid: 0,
            size: 0,
            sha256: None,
            link: None,
            rdev: 0,
        };
        let a: Manifest = [
            ("/a".to_string(), e(Kind::Dir, 0o755)),
            ("/a/b".to_string(), e(Kind::File, 0o644)),
            ("/c".to_string(), e(Kind::File, 0o600)),
            ("/skip/x".to_string(), e(Kind::File, 0o600)),
        ]
        .into();
        let b: Manifest = [
            ("/a".to_string(), e(Kind::Dir, 0o700)),
            ("/c".to_string(), e(Kind::Fifo, 0o600)),
            ("/d".to_string(), e(Kind::File, 0o600)),
        ]
        .into();
        let diff = diff_manifests(&a, &b, &["/skip/"]);
        assert_eq!(diff.len(), 4, "{diff:?}");
        assert!(diff[0].starts_with("/a: a Dir 755"), "{diff:?}");
        assert!(diff[1].starts_with("only in a: /a/b"), "{diff:?}");
        assert!(diff[2].starts_with("/c: a File"), "{diff:?}");
        assert!(diff[3].starts_with("only in b: /d"), "{diff:?}");
        assert!(diff_manifests(&a, &a, &[]).is_empty());
    }
}
