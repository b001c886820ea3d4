//! `berth image ...` and `berth run-image` end to end: a busybox image in
//! a `docker save` archive, imported into a store in the test's sandbox,
//! pushed to and pulled from a live registry, run on an overlay root, and
//! removed again; progress on stderr, as bars on a terminal and lines
//! otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use testbed::registry::{Auth, Registry};

/// A runner, its image store, and the busybox image imported as `REF`.
struct Images {
    t: Berth,
    store: PathBuf,
}

const REF: &str = "localhost/test/busybox:1";

impl Images {
    fn new() -> Images {
        let t = berth();
        let store = t.dir().join("store");
        let archive = testbed::image::busybox_archive(t.dir(), REF);
        let i = Images { t, store };
        let o = i.image(&["import", &format!("docker-archive:{}", archive.display())]);
        o.ok();
        assert!(o.out().starts_with(REF), "{o}");
        i
    }

    fn image(&self, args: &[&str]) -> Output {
        self.image_in(&self.store, args)
    }

    /// `berth image --root STORE ARGS`.
    fn image_in(&self, store: &Path, args: &[&str]) -> Output {
        let mut v = vec!["image", "--root"];
        let s = store.display().to_string();
        v.push(&s);
        v.extend_from_slice(args);
        self.t.cmd(&v)
    }

    fn run_image(&self, args: &[&str]) -> Output {
        self.run_image_in(&self.store, args)
    }

    fn run_image_in(&self, store: &Path, args: &[&str]) -> Output {
        let s = store.display().to_string();
        let mut v = vec!["run-image", "--image-root", &s];
        v.extend_from_slice(args);
        self.t.cmd(&v)
    }

    /// The manifest digest and the first layer's digest of `reference`.
    fn digests(&self, reference: &str) -> (String, String) {
        let v = self.image(&["inspect", reference]).ok().json();
        let d = v["digest"].as_str().unwrap().to_string();
        let l = v["manifest"]["layers"][0]["digest"].as_str().unwrap();
        (d, l.to_string())
    }

    /// Nothing mounted under the store, no runtime state left.
    fn assert_clean(&self) {
        self.assert_clean_in(&self.store)
    }

    fn assert_clean_in(&self, store: &Path) {
        let mounts = testbed::mounts_under(store);
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
        let states: Vec<_> = std::fs::read_dir(self.t.root())
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(states.is_empty(), "runtime state left: {states:?}");
    }
}

fn containers(store: &Path) -> Vec<String> {
    std::fs::read_dir(store.join("containers"))
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn import_ls_inspect_history_rm() {
    let i = Images::new();
    let o = i.image(&["ls"]);
    o.ok();
    assert!(o.out().contains(REF), "{o}");
    let v = i.image(&["inspect", REF]).ok().json();
    assert_eq!(v["reference"], REF);
    assert_eq!(v["config"]["config"]["Cmd"], json!(["sh"]));
    assert_eq!(v["manifest"]["layers"].as_array().unwrap().len(), 1);
    i.image(&["history", REF]).ok();
    let o = i.image(&["rm", REF]);
    o.ok();
    assert!(o.out().contains("removed 3 blobs"), "{o}");
    assert!(!i.image(&["ls"]).ok().out().contains(REF));
    i.image(&["inspect", REF])
        .fails()
        .stderr_has(&["not found"]);
}

#[test]
fn run_image_runs_on_an_overlay_and_cleans_up_with_rm() {
    let i = Images::new();
    let host = i.t.host_dir("vol");
    std::fs::write(host.join("from-host"), "host data\n").unwrap();
    let vol = format!("{}:/vol:ro", host.display());
    let o = i.run_image(&[
        "--rm",
        "-e",
        "GREETING=hello",
        "-v",
        &vol,
        REF,
        "sh",
        "-c",
        "echo $GREETING; cat /vol/from-host; touch /vol/x 2>/dev/null || echo vol-ro; \
         echo data > /written; grep -c overlay /proc/mounts",
    ]);
    o.ok();
    let lines = o.lines();
    assert_eq!(lines[..3], ["hello", "host data", "vol-ro"], "{o}");
    assert!(
        lines[3].parse::<u32>().unwrap() >= 1,
        "the root is not an overlay:\n{o}"
    );
    assert!(containers(&i.store).is_empty());
    i.assert_clean();
}

#[test]
fn run_image_exit_status_and_kept_upper_dir() {
    let i = Images::new();
    let o = i.run_image(&["--rm", REF, "sh", "-c", "exit 7"]);
    assert_eq!(o.code, 7, "{o}");
    let o = i.run_image(&["--name", "keep1", REF, "sh", "-c", "echo kept > /newfile"]);
    o.ok();
    let upper = i.store.join("containers/keep1/upper/newfile");
    assert_eq!(std::fs::read_to_string(&upper).unwrap(), "kept\n");
    // The image itself is untouched: a new container does not see it.
    let o = i.run_image(&[
        "--rm",
        REF,
        "sh",
        "-c",
        "test -e /newfile && echo leaked || echo clean",
    ]);
    assert_eq!(o.ok().out(), "clean");
    // The name is taken until its directory goes.
    i.run_image(&["--name", "keep1", REF, "true"])
        .fails()
        .stderr_has(&["keep1", "already exists"]);
    i.assert_clean();
}

#[test]
fn bundle_writes_a_runnable_bundle() {
    let i = Images::new();
    let (_, layer) = i.digests(REF);
    let dir = i.t.dir().join("bundle-out");
    let o = i.image(&["bundle", REF, &dir.display().to_string()]);
    o.ok().stderr_has(&[
        &format!("unpacking layer {layer} ("),
        &format!("done {layer}: "),
    ]);
    assert_eq!(o.lines().len(), 1, "{o}");
    assert!(dir.join("config.json").is_file() && dir.join("rootfs/bin/busybox").is_file());
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["process"]["args"], json!(["sh"]));
    // Not empty any more: refused.
    i.image(&["bundle", REF, &dir.display().to_string()])
        .fails()
        .stderr_has(&["not empty"]);
}

#[test]
fn bad_sources_and_registries_fail_clearly() {
    let i = Images::new();
    i.image(&["import", "docker-archive:/no/such/file.tar"])
        .fails()
        .stderr_has(&["/no/such/file.tar"]);
    let junk = i.t.dir().join("junk.tar");
    std::fs::write(&junk, b"this is not a tar file at all").unwrap();
    i.image(&["import", &junk.display().to_string()]).fails();
    // Nothing listens on port 1: HTTPS fails and the message says how to
    // allow plain HTTP; allowed, the connection still fails, named.
    i.image(&["pull", "127.0.0.1:1/no/such:image"])
        .fails()
        .stderr_has(&["127.0.0.1:1", "--insecure-registry"]);
    i.image(&[
        "pull",
        "--insecure-registry",
        "127.0.0.1:1",
        "127.0.0.1:1/no/such:image",
    ])
    .fails()
    .stderr_has(&["registry 127.0.0.1:1", "no/such:image"]);
    i.image(&["push", "no/such:image", "127.0.0.1:1/x:y"])
        .fails()
        .stderr_has(&["no/such:image", "not found"]);
    i.image(&["pull", "--creds", "nocolon", "127.0.0.1:1/x:y"])
        .fails()
        .stderr_has(&["--creds"]);
    i.run_image(&["--rm", "no/such:image", "true"])
        .fails()
        .stderr_has(&["no/such:image", "not found"]);
    assert!(containers(&i.store).is_empty());
    i.assert_clean();
}

#[test]
fn unpack_reports_progress_as_lines_or_bars() {
    let i = Images::new();
    let (_, layer) = i.digests(REF);
    let dir = i.t.dir().join("flat");
    let d = dir.display().to_string();
    let o = i.image(&["unpack", REF, &d]);
    o.ok();
    // stdout: the result only; stderr: a line as the layer starts (with
    // its size) and one as it ends (with the entries it made).
    let out = o.out();
    assert!(
        out.starts_with(&format!("{REF}: ")) && o.lines().len() == 1,
        "{o}"
    );
    let entries: u64 = out
        .split(": ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no entry count: {o}"));
    assert!(entries > 10, "{o}");
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{o}");
    assert!(
        lines[0].starts_with(&format!("unpacking layer {layer} (")) && lines[0].ends_with(" MiB)"),
        "{o}"
    );
    assert_eq!(lines[1], format!("done {layer}: {entries} entries"), "{o}");
    assert!(dir.join("bin/busybox").is_file());

    // On a terminal: a bar, redrawn in place, full at the end.
    let pty = testbed::nix::pty::openpty(None, None).expect("openpty");
    let dir2 = i.t.dir().join("flat-tty");
    let store = i.store.display().to_string();
    let d2 = dir2.display().to_string();
    let mut cmd =
        i.t.command(None, &["image", "--root", &store, "unpack", REF, &d2]);
    let out_path = i.t.dir().join("unpack-tty.out");
    cmd.stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::from(std::fs::File::from(pty.slave)));
    let child = cmd.spawn().expect("spawn berth");
    // The only slave left open is the child's: its exit ends the read.
    drop(cmd);
    let shown = testbed::read_pty(&pty.master, Duration::from_secs(30));
    let status = testbed::wait_within(child, Duration::from_secs(30)).expect("berth exits");
    assert!(status.success(), "{shown}");
    let short = &layer[..19];
    let full = format!(
        "\r\x1b[Kunpacking layer  {short} [{}] done, {entries} entries",
        "#".repeat(30)
    );
    assert!(shown.contains(&full), "no full bar {full:?} in {shown:?}");
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        stdout.starts_with(&format!("{REF}: {entries} entries")) && !stdout.contains('\x1b'),
        "{stdout:?}"
    );
}

#[test]
fn push_pull_and_run_through_a_registry() {
    let i = Images::new();
    let (digest, layer) = i.digests(REF);
    let reg = Registry::start(Auth::Basic("berth", "s3cret"));
    let host = reg.host();
    let remote = format!("{host}/berth/busybox:v1");
    let push = |extra: &[&str]| {
        let mut v = vec!["push"];
        v.extend_from_slice(extra);
        v.extend_from_slice(&[REF, &remote]);
        i.image(&v)
    };

    // Plain HTTP only with --insecure-registry.
    push(&["--creds", "berth:s3cret"])
        .fails()
        .stderr_has(&[&host, "HTTPS", "--insecure-registry"]);
    push(&["--insecure-registry", &host, "--creds", "berth:wrong"])
        .fails()
        .stderr_has(&["authentication refused", &host]);
    assert!(!reg.repository_dir("berth/busybox").exists());

    let o = push(&["--insecure-registry", &host, "--creds", "berth:s3cret"]);
    o.ok().stderr_has(&[
        &format!("pushing layer {layer} ("),
        "pushing config sha256:",
        &format!("done {layer}"),
    ]);
    assert_eq!(o.out(), format!("{remote} {digest}"), "{o}");

    // Into another store, with credentials from an auth.json.
    let pulled = i.t.dir().join("pulled");
    let authfile = i.t.dir().join("auth.json");
    // "YmVydGg6czNjcmV0" is base64 of "berth:s3cret".
    std::fs::write(
        &authfile,
        format!(r#"{{"auths": {{"{host}": {{"auth": "YmVydGg6czNjcmV0"}}}}}}"#),
    )
    .unwrap();
    let empty = i.t.dir().join("empty-auth.json");
    std::fs::write(&empty, r#"{"auths": {}}"#).unwrap();
    let pull = |auth: &Path| {
        let a = auth.display().to_string();
        i.image_in(
            &pulled,
            &[
                "pull",
                "--insecure-registry",
                &host,
                "--authfile",
                &a,
                &remote,
            ],
        )
    };
    pull(&empty)
        .fails()
        .stderr_has(&["authentication refused", "no credentials"]);
    let o = pull(&authfile);
    o.ok().stderr_has(&[
        &format!("pulling layer {layer} ("),
        "pulling config sha256:",
        &format!("done {layer}"),
    ]);
    assert_eq!(o.out(), format!("{remote} {digest}"), "{o}");
    let ls = i.image_in(&pulled, &["ls", "--format", "json"]).ok().json();
    assert_eq!(ls, json!([{"reference": remote, "digest": digest}]));

    // Runnable; its layer is unpacked on the first run only.
    let o = i.run_image_in(&pulled, &["--rm", &remote, "echo", "ok"]);
    assert_eq!(o.ok().out(), "ok", "{o}");
    o.stderr_has(&[
        &format!("unpacking layer {layer} ("),
        &format!("done {layer}: "),
    ]);
    let o = i.run_image_in(&pulled, &["--rm", &remote, "echo", "ok"]);
    assert_eq!(o.ok().out(), "ok", "{o}");
    assert!(!o.stderr.contains("unpacking"), "{o}");
    assert!(containers(&pulled).is_empty());
    i.assert_clean_in(&pulled);
}

#[test]
fn save_writes_archives_and_layouts_that_import_to_the_same_image() {
    let i = Images::new();
    let digest = i.image(&["inspect", REF]).ok().json()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let other = i.t.dir().join("store2");
    let other_s = other.display().to_string();
    let import_elsewhere = |source: &str| -> String {
        let o = i.t.cmd(&["image", "--root", &other_s, "import", source]);
        o.ok();
        o.out()
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .to_string()
    };

    // docker save's format by default: a file, named as docker names it.
    let tar = i.t.dir().join("saved.tar");
    let tar_s = tar.display().to_string();
    let o = i.image(&["save", "-o", &tar_s, REF]);
    o.ok();
    assert_eq!(o.out(), format!("{REF} {digest}"));
    assert_eq!(import_elsewhere(&format!("docker-archive:{tar_s}")), digest);
    let v =
        i.t.cmd(&["image", "--root", &other_s, "inspect", REF])
            .ok()
            .json();
    assert_eq!(v["digest"], digest.as_str());

    // An OCI layout: a directory, the tag as its ref.name.
    let oci = i.t.dir().join("saved-oci");
    let oci_s = oci.display().to_string();
    i.image(&["save", "--format", "oci", "-o", &oci_s, REF])
        .ok();
    assert!(oci.join("oci-layout").is_file() && oci.join("index.json").is_file());
    assert_eq!(import_elsewhere(&format!("oci:{oci_s}:1")), digest);
    i.image(&["save", "--format", "docker-archive", "-o", &tar_s, REF])
        .ok();

    // Errors: an unknown image (nothing written), an unknown format, no
    // output.
    let none = i.t.dir().join("none.tar");
    let none_s = none.display().to_string();
    i.image(&["save", "-o", &none_s, REF, "no/such:image"])
        .fails()
        .stderr_has(&["no/such:image", "not found"]);
    assert!(!none.exists());
    i.image(&["save", "--format", "zip", "-o", &none_s, REF])
        .fails()
        .stderr_has(&["zip", "oci", "docker-archive"]);
    i.image(&["save", REF]).fails().stderr_has(&["--output"]);
    assert!(!none.exists());
    i.assert_clean();
}
