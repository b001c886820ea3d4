//! `berth image ...` and `berth run-image` end to end: a busybox image in
//! a `docker save` archive, imported into a store in the test's sandbox,
//! run on an overlay root, and removed again.

mod common;

use std::path::{Path, PathBuf};

use common::*;

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
        let mut v = vec!["image", "--root"];
        let s = self.store.display().to_string();
        v.push(&s);
        v.extend_from_slice(args);
        self.t.cmd(&v)
    }

    fn run_image(&self, args: &[&str]) -> Output {
        let s = self.store.display().to_string();
        let mut v = vec!["run-image", "--image-root", &s];
        v.extend_from_slice(args);
        self.t.cmd(&v)
    }

    /// Nothing mounted under the store, no runtime state left.
    fn assert_clean(&self) {
        let mounts = testbed::mounts_under(&self.store);
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
    let dir = i.t.dir().join("bundle-out");
    i.image(&["bundle", REF, &dir.display().to_string()]).ok();
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
