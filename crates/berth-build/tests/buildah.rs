//! The same Dockerfiles built by berth (through the library) and by
//! `buildah bud --layers`, then compared: the root file systems entry by
//! entry (kind, mode, owner, content, link target; file mtimes with both
//! builders pinning the time to 0; hard links), and the image configs'
//! fields that a builder does not choose for itself (see
//! `testbed::buildah` for what differs inherently).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_build::{BuildOptions, Network};
use berth_image::rootfs;
use serde_json::{json, Value};
use testbed::buildah::{self, Buildah, Manifest};

mod common;
use common::Builds;

const BASE: &str = "localhost/busybox:cmp";

/// Both builders' `created` and file times (berth's
/// `SOURCE_DATE_EPOCH`, buildah's `--timestamp`).
const EPOCH: i64 = 0;

struct Fixture {
    b: Builds,
    buildah: Buildah,
}

impl Fixture {
    fn new() -> Fixture {
        let b = Builds::new("berth-cmp-", BASE);
        let buildah = Buildah::new(b.dir.path());
        buildah.import_archive(&b.archive, BASE);
        Fixture { b, buildah }
    }

    fn ctx(&self) -> PathBuf {
        self.b.ctx()
    }

    fn file(&self, rel: &str, content: &[u8], mode: u32) -> PathBuf {
        let p = self.ctx().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    /// Builds `dockerfile` with both builders and returns their results.
    fn both(&self, dockerfile: &str, build_args: &[(&str, &str)]) -> (Built, Built) {
        let df = self.file("Dockerfile", dockerfile.as_bytes(), 0o644);
        let berth = self.berth(build_args);
        let tag = "localhost/cmp:latest";
        let out = self.buildah.bud(
            &self.ctx(),
            &df,
            tag,
            build_args,
            // Docker's format: in buildah's default OCI format SHELL is
            // ignored with a warning, where Docker's reference has it set
            // the shell of RUN, CMD and ENTRYPOINT's shell forms.
            &["--format", "docker", "--timestamp", &EPOCH.to_string()],
        );
        out.ok();
        let oci = self.b.dir.path().join("oci");
        let _ = fs::remove_dir_all(&oci);
        self.buildah.export_oci(tag, &oci, "cmp");
        let (files, config) = buildah::rootfs_manifest(&oci, "cmp");
        let tree = self.b.dir.path().join("buildah-rootfs");
        let _ = fs::remove_dir_all(&tree);
        let o = Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:cmp", oci.display()))
            .arg(&tree)
            .output()
            .unwrap();
        assert!(o.status.success(), "umoci unpack: {o:?}");
        let theirs = Built {
            files,
            config,
            tree: tree.join("rootfs"),
            log: out.stdout,
        };
        (berth, theirs)
    }

    fn berth(&self, build_args: &[(&str, &str)]) -> Built {
        let o = BuildOptions {
            context: self.ctx(),
            network: Network::None,
            source_date_epoch: Some(EPOCH),
            build_args: build_args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..BuildOptions::default()
        };
        let (b, log) = self.b.ok(&o);
        let tree = self.b.dir.path().join("berth-rootfs");
        let _ = fs::remove_dir_all(&tree);
        rootfs::unpack_flat(&self.b.store, &b.image, &tree).unwrap();
        Built {
            files: buildah::rootfs_manifest_of_dir(&tree).unwrap(),
            config: serde_json::from_slice(&b.image.config_json).unwrap(),
            tree,
            log,
        }
    }
}

struct Built {
    files: Manifest,
    config: Value,
    /// The root file system, unpacked flat.
    tree: PathBuf,
    log: String,
}

/// The config fields both builders must agree on. Labels leave out
/// buildah's own `io.buildah.version`. Env is compared as a set: buildah
/// moves a redefined variable to the end, berth (like Docker's builders)
/// replaces it in place, and the order of distinct names means nothing to
/// the process.
fn comparable(c: &Value) -> Value {
    let cfg = &c["config"];
    let mut labels = cfg["Labels"].clone();
    if let Some(l) = labels.as_object_mut() {
        l.remove("io.buildah.version");
        if l.is_empty() {
            labels = Value::Null;
        }
    }
    let empty_is_null = |v: &Value| match v {
        Value::Object(o) if o.is_empty() => Value::Null,
        Value::Array(a) if a.is_empty() => Value::Null,
        Value::String(s) if s.is_empty() => Value::Null,
        v => v.clone(),
    };
    let mut env: Vec<Value> = cfg["Env"].as_array().cloned().unwrap_or_default();
    env.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    json!({
        "Env": env,
        "Cmd": empty_is_null(&cfg["Cmd"]),
        "Entrypoint": empty_is_null(&cfg["Entrypoint"]),
        "WorkingDir": empty_is_null(&cfg["WorkingDir"]),
        "User": empty_is_null(&cfg["User"]),
        "Labels": labels,
        "ExposedPorts": empty_is_null(&cfg["ExposedPorts"]),
        "Volumes": empty_is_null(&cfg["Volumes"]),
        "StopSignal": empty_is_null(&cfg["StopSignal"]),
        "os": c["os"],
        "architecture": c["architecture"],
    })
}

fn layers(c: &Value) -> (usize, usize) {
    let diff_ids = c["rootfs"]["diff_ids"].as_array().unwrap().len();
    let non_empty = c["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["empty_layer"] != true)
        .count();
    (diff_ids, non_empty)
}

/// The mtimes of the non-directory entries of the tree at `root` (a
/// directory's mtime depends on the order a builder touches it in).
fn mtimes(root: &Path) -> BTreeMap<String, i64> {
    let m = buildah::rootfs_manifest_of_dir(root).unwrap();
    m.iter()
        .filter(|(_, e)| e.kind != buildah::Kind::Dir)
        .map(|(p, _)| {
            let md = fs::symlink_metadata(root.join(p.trim_start_matches('/'))).unwrap();
            (p.clone(), md.mtime())
        })
        .collect()
}

fn inode(root: &Path, p: &str) -> (u64, u64) {
    let md = fs::symlink_metadata(root.join(p.trim_start_matches('/'))).unwrap();
    (md.dev(), md.ino())
}

/// Compares the two builds, `skip` naming paths (beyond the builder
/// artifacts) that must be left out, each for a reason the caller gives.
/// `layers` is the number of layers (and non-empty history entries) of
/// each, berth's first: buildah commits a WORKDIR's new directory with
/// the next step, not as a layer of its own as Docker's builders do.
/// `skip_config` names config fields left out, each for a reason the
/// caller gives.
fn compare(
    berth: &Built,
    theirs: &Built,
    skip: &[&str],
    skip_config: &[&str],
    layers_of: (usize, usize),
) {
    let mut ignore: Vec<&str> = buildah::BUILDER_ARTIFACTS.to_vec();
    ignore.extend_from_slice(skip);
    let diff = buildah::diff_manifests(&berth.files, &theirs.files, &ignore);
    assert!(
        diff.is_empty(),
        "root file systems differ (a = berth, b = buildah):\n{}\n--- berth\n{}\n--- buildah\n{}",
        diff.join("\n"),
        berth.log,
        theirs.log
    );
    let skip_path = |p: &str| {
        ignore.iter().any(|i| match i.strip_suffix('/') {
            Some(d) => p.starts_with(*i) || p == d,
            None => p == *i,
        })
    };
    let (ma, mb) = (mtimes(&berth.tree), mtimes(&theirs.tree));
    let mdiff: Vec<String> = ma
        .iter()
        .filter(|(p, _)| !skip_path(p))
        .filter(|(p, t)| mb.get(*p) != Some(t))
        .map(|(p, t)| format!("{p}: berth {t} / buildah {:?}", mb.get(p)))
        .collect();
    assert!(mdiff.is_empty(), "mtimes differ:\n{}", mdiff.join("\n"));
    let fields = |c: &Value| {
        let mut v = comparable(c);
        for f in skip_config {
            v.as_object_mut().unwrap().remove(*f);
        }
        v
    };
    assert_eq!(
        fields(&berth.config),
        fields(&theirs.config),
        "configs differ (left berth, right buildah)"
    );
    let history = |c: &Value| {
        c["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| format!("{} {}", h["empty_layer"] == true, h["created_by"]))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let histories = format!(
        "--- berth\n{}\n--- buildah\n{}",
        history(&berth.config),
        history(&theirs.config)
    );
    assert_eq!(
        layers(&berth.config),
        (layers_of.0, layers_of.0),
        "{histories}"
    );
    assert_eq!(
        layers(&theirs.config),
        (layers_of.1, layers_of.1),
        "{histories}"
    );
}

/// RUN's changes to the base (new files, directories, symlinks, hard
/// links, a setuid file, deletions and a replaced directory) and every
/// metadata instruction, with ARG/ENV taking a `--build-arg`.
#[test]
fn run_steps_and_metadata_match_buildah() {
    let f = Fixture::new();
    let (a, b) = f.both(
        &format!(
            r#"FROM {BASE}
ARG GREETING=hello
ARG SUFFIX=default
ENV APP=/srv/app GREETING=$GREETING PATH=/srv/bin:$PATH
LABEL org.example.greeting="$GREETING-$SUFFIX" "multi word"="a b"
EXPOSE 8080 53/udp
VOLUME ["/data", "$APP/cache"]
WORKDIR $APP/sub
RUN mkdir -p d/e && echo "$GREETING $SUFFIX" > d/e/f && chmod 0700 d \
 && ln -s d/e/f sym && ln -s /nowhere dangling && ln d/e/f hard && ln d/e/f hard2 \
 && echo priv > suid && chmod 4755 suid && echo grp > sgid && chmod 2710 sgid \
 && mkdir sticky && chmod 1777 sticky && chown 1000:1000 sticky \
 && rm /etc/group /bin/vi && rm -rf /home/test \
 && rm -rf /root && mkdir /root && echo new > /root/new && chmod 0750 /root
RUN rm d/e/f && echo replaced > d/e/f2 && rm /bin/sed && mkdir /bin/sed
SHELL ["/bin/sh", "-ec"]
RUN case $- in *e*) echo errexit > shell.txt ;; *) echo none > shell.txt ;; esac
USER 1000:1000
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/bin/echo", "entry"]
CMD echo shell form
"#
        ),
        &[("SUFFIX", "given")],
    );
    // The run created what it was asked to, so the comparison is not
    // between two empty results.
    let sub = "/srv/app/sub";
    assert_eq!(a.files[&format!("{sub}/suid")].mode, 0o4755);
    assert_eq!(a.files[&format!("{sub}/sticky")].mode, 0o1777);
    assert_eq!(
        a.files[&format!("{sub}/sym")].link.as_deref(),
        Some("d/e/f")
    );
    assert!(!a.files.contains_key("/etc/group"));
    assert!(!a.files.contains_key("/home/test"));
    assert_eq!(a.files["/bin/sed"].kind, buildah::Kind::Dir);
    assert_eq!(a.files["/root/new"].size, 4);
    assert_eq!(
        fs::read_to_string(a.tree.join("srv/app/sub/shell.txt")).unwrap(),
        "errexit\n"
    );
    assert_eq!(
        fs::read_to_string(a.tree.join("srv/app/sub/d/e/f2")).unwrap(),
        "replaced\n"
    );
    // Hard links stay links in both.
    for t in [&a.tree, &b.tree] {
        assert_eq!(
            inode(t, &format!("{sub}/hard")),
            inode(t, &format!("{sub}/hard2")),
            "{}",
            t.display()
        );
    }
    assert_eq!(a.files[&format!("{sub}/hard")].size, 12);
    assert_eq!(
        comparable(&a.config)["Cmd"],
        json!(["/bin/sh", "-ec", "echo shell form"])
    );
    assert_eq!(
        comparable(&a.config)["Labels"]["org.example.greeting"],
        "hello-given"
    );
    // buildah's RUN mounts the volumes and leaves their mount points in
    // the layer; Docker's reference has VOLUME only mark a path for
    // volumes when the container runs (with BuildKit a step's changes
    // under it are kept, and nothing is created there by the mark itself).
    let volumes = ["/data", "/srv/app/cache"];
    // FROM's layer, WORKDIR's (it made the directory) and three RUNs.
    // buildah 1.28 writes a shell-form CMD with `/bin/sh -c` whatever
    // SHELL says; Docker's reference has SHELL set the shell of the shell
    // forms of RUN, CMD and ENTRYPOINT (berth's Cmd is checked above).
    compare(&a, &b, &volumes, &["Cmd"], (5, 4));
}

/// COPY of a directory, of a file into a directory, of globs, with
/// --chown and --chmod, with a .dockerignore; ADD of a local tar.gz and
/// of a plain file; WORKDIR and a shell-form ENTRYPOINT.
#[test]
fn copy_and_add_match_buildah() {
    let f = Fixture::new();
    f.file("dir/a.txt", b"a\n", 0o644);
    f.file("dir/exec.sh", b"#!/bin/sh\necho hi\n", 0o755);
    f.file("dir/sub/deep.txt", b"deep\n", 0o600);
    f.file("dir/secret.key", b"hidden\n", 0o600);
    f.file("dir/sub/trace.log", b"log\n", 0o644);
    f.file("one.txt", b"one\n", 0o644);
    f.file("two.txt", b"two two\n", 0o640);
    f.file("three.md", b"three\n", 0o644);
    f.file("keep.log", b"kept\n", 0o644);
    f.file("drop.log", b"dropped\n", 0o644);
    std::os::unix::fs::symlink("a.txt", f.ctx().join("dir/link")).unwrap();
    f.file(
        ".dockerignore",
        b"dir/secret.*\n**/*.log\n!keep.log\n",
        0o644,
    );
    // A gzip tar with a directory, a file, an executable, a symlink and
    // an owner other than root.
    let src = f.b.dir.path().join("tarsrc");
    fs::create_dir_all(src.join("pkg/bin")).unwrap();
    fs::write(src.join("pkg/README"), "readme\n").unwrap();
    fs::write(src.join("pkg/bin/tool"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(src.join("pkg/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("bin/tool", src.join("pkg/tool")).unwrap();
    nix::unistd::chown(
        &src.join("pkg/README"),
        Some(nix::unistd::Uid::from_raw(1000)),
        Some(nix::unistd::Gid::from_raw(1000)),
    )
    .unwrap();
    let o = Command::new("tar")
        .arg("-czf")
        .arg(f.ctx().join("pkg.tar.gz"))
        .arg("-C")
        .arg(&src)
        .arg("pkg")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");

    let (a, b) = f.both(
        &format!(
            r#"FROM {BASE}
COPY dir /opt/dir
COPY one.txt /opt/files/
COPY *.txt /opt/glob/
COPY --chown=1000:1000 --chmod=0640 one.txt /opt/owned/one
COPY --chown=test dir/sub /opt/owned/sub/
COPY *.log /opt/logs/
ADD pkg.tar.gz /opt/unpacked/
ADD two.txt /opt/added.txt
WORKDIR /new/work
COPY three.md ./
ENTRYPOINT exec /bin/cat three.md
"#
        ),
        &[],
    );
    assert!(!a.files.contains_key("/opt/dir/secret.key"));
    assert!(!a.files.contains_key("/opt/dir/sub/trace.log"));
    assert!(a.files.contains_key("/opt/logs/keep.log"));
    assert!(!a.files.contains_key("/opt/logs/drop.log"));
    assert_eq!(a.files["/opt/dir/exec.sh"].mode, 0o755);
    assert_eq!(a.files["/opt/dir/link"].link.as_deref(), Some("a.txt"));
    let owned = &a.files["/opt/owned/one"];
    assert_eq!((owned.mode, owned.uid, owned.gid), (0o640, 1000, 1000));
    assert_eq!(a.files["/opt/owned/sub/deep.txt"].uid, 1000);
    assert_eq!(a.files["/opt/unpacked/pkg/README"].uid, 1000);
    assert_eq!(
        a.files["/opt/unpacked/pkg/tool"].link.as_deref(),
        Some("bin/tool")
    );
    assert!(a.files.contains_key("/opt/glob/two.txt"));
    assert!(a.files.contains_key("/new/work/three.md"));
    // FROM's, eight COPY/ADD layers and WORKDIR's and the last COPY's.
    compare(&a, &b, &[], &[], (11, 10));
}

/// A multi-stage build: a stage's files copied by name and by index.
#[test]
fn multi_stage_copy_from_matches_buildah() {
    let f = Fixture::new();
    let (a, b) = f.both(
        &format!(
            r#"FROM {BASE} AS build
RUN mkdir -p /out/bin && echo built > /out/bin/tool && chmod 0755 /out/bin/tool \
 && ln -s tool /out/bin/alias && chown -R 1000:1000 /out
FROM {BASE}
COPY --from=build /out /usr/local/
COPY --from=0 /out/bin/tool /opt/tool
CMD ["tool"]
"#
        ),
        &[],
    );
    assert_eq!(a.files["/usr/local/bin/tool"].uid, 1000);
    assert_eq!(
        a.files["/usr/local/bin/alias"].link.as_deref(),
        Some("tool")
    );
    assert_eq!(a.files["/opt/tool"].size, 6);
    compare(&a, &b, &[], &[], (3, 3));
}
