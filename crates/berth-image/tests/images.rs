//! Images made with Debian's umoci and skopeo from a busybox rootfs,
//! imported into the store and unpacked by berth-image, compared entry by
//! entry with `umoci unpack` of the same image.
//!
//! The image has three layers: the base (busybox, a hardlink, a setuid
//! file, a symlink, a fifo, files to delete later), a layer umoci makes by
//! diffing (`.wh.` whiteouts for a deleted file and a replaced directory's
//! old entry) and a layer added verbatim with an opaque directory
//! (`.wh..wh..opq`).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use berth_image::layer::{LayerOptions, NewLayer};
use berth_image::store::{Descriptor, PlatformSpec, Store};
use berth_image::{archive, layout, rootfs, Digest};
use sha2::Digest as _;

fn sh(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ensure_tools() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let missing: Vec<&str> = [("umoci", "umoci"), ("skopeo", "skopeo")]
            .into_iter()
            .filter(|(c, _)| {
                !Command::new("sh")
                    .args(["-c", &format!("command -v {c}")])
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .map(|(_, p)| p)
            .collect();
        if !missing.is_empty() {
            let install = || {
                Command::new("apt-get")
                    .args(["install", "-y", "-qq"])
                    .args(&missing)
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .status()
                    .is_ok_and(|s| s.success())
            };
            if !install() {
                let _ = Command::new("apt-get").args(["update", "-qq"]).status();
                assert!(install(), "apt-get install {missing:?} failed");
            }
        }
    });
}

/// The test image: an OCI layout at `<dir>/layout` with tag `test`.
struct TestImage {
    dir: tempfile::TempDir,
}

impl TestImage {
    fn layout(&self) -> PathBuf {
        self.dir.path().join("layout")
    }

    fn make() -> TestImage {
        testbed::require_root();
        ensure_tools();
        let dir = tempfile::Builder::new()
            .prefix("berth-image-")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        let lay = d.join("layout");
        let img = format!("{}:test", lay.display());
        sh(Command::new("umoci").args(["init", "--layout"]).arg(&lay));
        sh(Command::new("umoci").args(["new", "--image", &img]));
        // Base layer.
        let b1 = d.join("b1");
        sh(Command::new("umoci")
            .args(["unpack", "--image", &img])
            .arg(&b1));
        let r = b1.join("rootfs");
        testbed::build_rootfs(&r).unwrap();
        fs::write(r.join("etc/msg"), "hello from the image\n").unwrap();
        fs::write(r.join("etc/gone"), "deleted in layer 2\n").unwrap();
        fs::create_dir_all(r.join("etc/conf.d")).unwrap();
        fs::write(r.join("etc/conf.d/a"), "a\n").unwrap();
        fs::create_dir_all(r.join("opq/sub")).unwrap();
        fs::write(r.join("opq/old"), "old\n").unwrap();
        fs::write(r.join("opq/sub/older"), "older\n").unwrap();
        fs::hard_link(r.join("etc/msg"), r.join("etc/msg-hardlink")).unwrap();
        fs::write(r.join("bin/suid"), "#!/bin/sh\n").unwrap();
        sh(Command::new("chmod").args(["4755"]).arg(r.join("bin/suid")));
        sh(Command::new("chown")
            .args(["1000:1000"])
            .arg(r.join("etc/conf.d/a")));
        std::os::unix::fs::symlink("../etc/msg", r.join("bin/msg-link")).unwrap();
        sh(Command::new("mkfifo").arg(r.join("etc/fifo")));
        sh(Command::new("umoci")
            .args(["repack", "--image", &img])
            .arg(&b1));
        // Layer 2, by umoci's diff: a deletion and a replaced directory.
        let b2 = d.join("b2");
        sh(Command::new("umoci")
            .args(["unpack", "--image", &img])
            .arg(&b2));
        let r = b2.join("rootfs");
        fs::remove_file(r.join("etc/gone")).unwrap();
        fs::remove_dir_all(r.join("etc/conf.d")).unwrap();
        fs::create_dir(r.join("etc/conf.d")).unwrap();
        fs::write(r.join("etc/conf.d/b"), "b\n").unwrap();
        sh(Command::new("umoci")
            .args(["repack", "--image", &img])
            .arg(&b2));
        // Layer 3, verbatim: an opaque directory.
        let mut t = tar::Builder::new(Vec::new());
        for (name, body, mode) in [
            ("opq/.wh..wh..opq", &b""[..], 0o644),
            ("opq/new", &b"new\n"[..], 0o644),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(mode);
            h.set_mtime(1_700_000_000);
            t.append_data(&mut h, name, body).unwrap();
        }
        let layer3 = d.join("layer3.tar");
        fs::write(&layer3, t.into_inner().unwrap()).unwrap();
        sh(Command::new("umoci")
            .args(["raw", "add-layer", "--image", &img])
            .arg(&layer3));
        sh(Command::new("umoci").args([
            "config",
            "--image",
            &img,
            "--config.cmd",
            "sh",
            "--config.cmd",
            "-c",
            "--config.cmd",
            "cat /etc/msg",
            "--config.env",
            "GREETING=hi",
            "--config.workingdir",
            "/etc",
        ]));
        TestImage { dir }
    }

    /// `umoci unpack` of the image's rootfs.
    fn umoci_rootfs(&self) -> PathBuf {
        let b = self.dir.path().join("umoci-bundle");
        if !b.exists() {
            sh(Command::new("umoci")
                .args([
                    "unpack",
                    "--image",
                    &format!("{}:test", self.layout().display()),
                ])
                .arg(&b));
        }
        b.join("rootfs")
    }
}

/// Every entry under `root`: type, mode, owner, and content hash or link
/// target. mtimes are left out (umoci sets directory mtimes from the
/// layers in an order of its own).
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let m = fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let what = if ft.is_symlink() {
            format!("link {}", fs::read_link(&p).unwrap().display())
        } else if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_file() {
            let h = sha2::Sha256::digest(fs::read(&p).unwrap());
            format!("file {}", berth_image::digest::hex(&h))
        } else if ft.is_fifo() {
            "fifo".into()
        } else if ft.is_char_device() || ft.is_block_device() {
            format!("dev {}", m.rdev())
        } else {
            "other".into()
        };
        let mode = if ft.is_symlink() {
            0
        } else {
            m.mode() & 0o7777
        };
        out.insert(
            rel.clone(),
            format!("{what} mode={mode:o} {}:{}", m.uid(), m.gid()),
        );
        if ft.is_dir() {
            walk(root, &p, out);
        }
    }
}

fn assert_same_tree(ours: &Path, theirs: &Path) {
    let a = tree(ours);
    let b = tree(theirs);
    let mut diffs = Vec::new();
    for (k, v) in &b {
        match a.get(k) {
            None => diffs.push(format!("missing {k} ({v})")),
            Some(w) if w != v => diffs.push(format!("{k}: berth {w}, umoci {v}")),
            _ => {}
        }
    }
    for k in a.keys().filter(|k| !b.contains_key(*k)) {
        diffs.push(format!("extra {k} ({})", a[k]));
    }
    assert!(diffs.is_empty(), "trees differ:\n  {}", diffs.join("\n  "));
}

/// The test image imported as `name`.
fn import(store: &Store, t: &TestImage, name: &str) -> berth_image::store::Image {
    layout::import(
        store,
        &t.layout(),
        Some("test"),
        name,
        &PlatformSpec::host(),
    )
    .unwrap()
}

fn store_in(dir: &Path) -> Store {
    Store::open(dir.join("store")).unwrap()
}

#[test]
fn an_oci_layout_unpacks_as_umoci_unpacks_it() {
    let t = TestImage::make();
    let store = store_in(t.dir.path());
    let img = import(&store, &t, "local/test:1");
    assert_eq!(img.manifest.layers.len(), 3);
    let out = t.dir.path().join("flat");
    rootfs::unpack_flat(&store, &img, &out).unwrap();
    // The whiteouts did their work.
    assert!(!out.join("etc/gone").exists());
    assert!(!out.join("etc/conf.d/a").exists());
    assert_eq!(fs::read_to_string(out.join("etc/conf.d/b")).unwrap(), "b\n");
    assert!(!out.join("opq/old").exists() && !out.join("opq/sub").exists());
    assert_eq!(fs::read_to_string(out.join("opq/new")).unwrap(), "new\n");
    assert!(!out.join("opq/.wh..wh..opq").exists());
    let a = fs::metadata(out.join("etc/msg")).unwrap();
    let b = fs::metadata(out.join("etc/msg-hardlink")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hardlink unpacked as a copy");
    assert_eq!(
        fs::metadata(out.join("bin/suid")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert_same_tree(&out, &t.umoci_rootfs());
    // The config came through.
    let cfg = img.config().unwrap();
    let c = cfg.config().as_ref().unwrap();
    assert_eq!(c.working_dir().as_deref(), Some("/etc"));
    assert!(c.env().as_ref().unwrap().iter().any(|e| e == "GREETING=hi"));
}

#[test]
fn a_docker_archive_made_by_skopeo_unpacks_the_same() {
    let t = TestImage::make();
    let archive_file = t.dir.path().join("image.tar");
    sh(Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci:{}:test", t.layout().display()))
        .arg(format!(
            "docker-archive:{}:example.com/test:v1",
            archive_file.display()
        )));
    let store = store_in(t.dir.path());
    let imgs = archive::import(&store, &archive_file, None).unwrap();
    assert_eq!(imgs.len(), 1);
    assert_eq!(imgs[0].reference, "example.com/test:v1");
    let img = store.image("example.com/test:v1").unwrap();
    let out = t.dir.path().join("flat");
    rootfs::unpack_flat(&store, &img, &out).unwrap();
    assert_same_tree(&out, &t.umoci_rootfs());
}

#[test]
fn overlay_layers_mount_to_the_same_tree() {
    let t = TestImage::make();
    let store = store_in(t.dir.path());
    let img = import(&store, &t, "local/test:1");
    let lowers = rootfs::layer_dirs(&store, &img).unwrap();
    assert_eq!(lowers.len(), 3);
    // A second call reuses the unpacked layers.
    assert_eq!(rootfs::layer_dirs(&store, &img).unwrap(), lowers);
    let merged = t.dir.path().join("merged");
    fs::create_dir(&merged).unwrap();
    let data = format!(
        "lowerdir={}",
        lowers
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    );
    nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(data.as_str()),
    )
    .unwrap();
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _u = Unmount(&merged);
    assert_same_tree(&merged, &t.umoci_rootfs());
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused_and_not_stored() {
    let t = TestImage::make();
    let store = store_in(t.dir.path());
    // Corrupt the largest blob (the base layer) in place.
    let blobs = t.layout().join("blobs/sha256");
    let victim = fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .path();
    let mut bytes = fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    fs::write(&victim, &bytes).unwrap();
    let err = layout::import(
        &store,
        &t.layout(),
        Some("test"),
        "bad:1",
        &PlatformSpec::host(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("digest mismatch"), "{msg}");
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();
    assert!(msg.contains(&name), "{msg}");
    let d = Digest::parse(&format!("sha256:{name}")).unwrap();
    assert!(!store.has_blob(&d), "the corrupt blob was stored");
    assert!(store.refs().unwrap().is_empty());
    assert_eq!(
        fs::read_dir(store.root().join("tmp")).unwrap().count(),
        0,
        "temp files left"
    );
}

#[test]
fn removing_the_last_reference_lets_gc_free_everything() {
    let t = TestImage::make();
    let store = store_in(t.dir.path());
    let img = import(&store, &t, "a:1");
    store.tag("b:1", &img.digest).unwrap();
    rootfs::layer_dirs(&store, &img).unwrap();
    store.untag("a:1").unwrap();
    let g = store.gc().unwrap();
    assert_eq!((g.blobs, g.layers), (0, 0), "b:1 still uses everything");
    store.untag("b:1").unwrap();
    let g = store.gc().unwrap();
    assert_eq!(g.blobs, 5, "manifest, config and three layers");
    assert_eq!(g.layers, 3);
    assert!(store.image("b:1").is_err());
}

#[test]
fn concurrent_imports_of_one_image_both_succeed() {
    let t = TestImage::make();
    let root = t.dir.path().join("store");
    let layout_dir = t.layout();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let root = root.clone();
            let layout_dir = layout_dir.clone();
            std::thread::spawn(move || {
                let store = Store::open(&root).unwrap();
                let img = layout::import(
                    &store,
                    &layout_dir,
                    Some("test"),
                    &format!("c:{i}"),
                    &PlatformSpec::host(),
                )
                .unwrap();
                rootfs::layer_dirs(&store, &img).unwrap()
            })
        })
        .collect();
    let dirs: Vec<Vec<PathBuf>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(dirs.windows(2).all(|w| w[0] == w[1]));
    let store = Store::open(&root).unwrap();
    assert_eq!(store.refs().unwrap().len(), 4);
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
}

/// busybox (the testbed's archive) with one layer written from a
/// directory on top, stored by `put_image` as `name`. `labels` go into
/// the config in whatever order a hash map gives them.
fn built(store: &Store, dir: &Path, name: &str, note: &str) -> berth_image::store::Image {
    let archive_file = dir.join("busybox.tar");
    if !archive_file.exists() {
        testbed::image::busybox_archive(dir, "localhost/busybox:base");
    }
    let base = archive::import(store, &archive_file, None)
        .unwrap()
        .remove(0);
    let src = dir.join(format!("added-{note}"));
    fs::create_dir_all(src.join("app")).unwrap();
    fs::write(src.join("app/hello"), format!("hello from {note}\n")).unwrap();
    let l = store
        .write_layer(
            &src,
            &LayerOptions {
                mtime_clamp: Some(1_700_000_000),
            },
        )
        .unwrap();
    let (cfg, layers) = on_top(&base, &l, note);
    store
        .put_image(
            &cfg,
            &layers,
            Some([("org.example.note".to_string(), note.to_string())].into()),
            Some(name),
        )
        .unwrap()
}

/// The config and layers of `base` with `l` on top.
fn on_top(
    base: &berth_image::store::Image,
    l: &NewLayer,
    note: &str,
) -> (oci_spec::image::ImageConfiguration, Vec<Descriptor>) {
    let mut cfg = base.config().unwrap();
    cfg.rootfs_mut().diff_ids_mut().push(l.diff_id.to_string());
    let mut h = cfg.history().clone().unwrap_or_default();
    h.push(
        oci_spec::image::HistoryBuilder::default()
            .created_by(format!("COPY {note} /app"))
            .build()
            .unwrap(),
    );
    cfg.set_history(Some(h));
    let mut c = cfg.config().clone().unwrap_or_default();
    let labels: std::collections::HashMap<String, String> = (0..16)
        .map(|i| (format!("label{i}"), format!("value{i}")))
        .collect();
    c.set_labels(Some(labels));
    cfg.set_config(Some(c));
    let mut layers = base.manifest.layers.clone();
    layers.push(l.descriptor.clone());
    (cfg, layers)
}

fn temp() -> tempfile::TempDir {
    testbed::require_root();
    ensure_tools();
    tempfile::Builder::new()
        .prefix("berth-image-")
        .tempdir_in("/tmp")
        .unwrap()
}

#[test]
fn put_image_stores_the_same_image_for_the_same_inputs() {
    let t = temp();
    let store = store_in(t.path());
    let img = built(&store, t.path(), "localhost/built", "a");
    assert_eq!(img.reference, "localhost/built:latest");
    assert_eq!(store.image("localhost/built").unwrap().digest, img.digest);
    assert_eq!(img.manifest.layers.len(), 2);
    assert_eq!(
        img.manifest
            .annotations
            .get("org.example.note")
            .map(String::as_str),
        Some("a")
    );
    // Again, with the labels' hash map in another order: the same bytes.
    let again = built(&store, t.path(), "localhost/built:again", "a");
    assert_eq!(again.digest, img.digest);
    assert_eq!(again.config_json, img.config_json);
    let v: serde_json::Value = serde_json::from_slice(&img.config_json).unwrap();
    assert_eq!(v["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    assert_eq!(v["config"]["Labels"]["label7"], "value7");

    let out = t.path().join("flat");
    rootfs::unpack_flat(&store, &img, &out).unwrap();
    assert_eq!(
        fs::read_to_string(out.join("app/hello")).unwrap(),
        "hello from a\n"
    );
    assert!(out.join("bin/busybox").is_file());

    // diff_ids and layers must agree; layers must be stored.
    let cfg = img.config().unwrap();
    let err = store
        .put_image(&cfg, &img.manifest.layers[..1], None, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rootfs.diff_ids") && err.contains("2 diff_ids for 1 layers"),
        "{err}"
    );
    let mut missing = img.manifest.layers.clone();
    missing[1].digest = Digest::of(b"not stored").to_string();
    let err = store
        .put_image(&cfg, &missing, None, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&missing[1].digest) && err.contains("not found"),
        "{err}"
    );
    // Untagged: named by digest.
    let untagged = store
        .put_image(&cfg, &img.manifest.layers, None, None)
        .unwrap();
    assert_eq!(untagged.reference, untagged.digest.to_string());
}

fn sh_json(cmd: &mut Command) -> serde_json::Value {
    serde_json::from_str(&sh(cmd)).unwrap()
}

#[test]
fn an_exported_oci_layout_reimports_and_umoci_and_skopeo_read_it() {
    let t = temp();
    let store = store_in(t.path());
    let a = built(&store, t.path(), "localhost/built:1", "a");
    let b = built(&store, t.path(), "example.com:5000/team/other:2", "b");
    let dir = t.path().join("layout");
    layout::export(
        &store,
        &[
            ("localhost/built:1".into(), a.clone()),
            ("example.com:5000/team/other:2".into(), b.clone()),
        ],
        &dir,
    )
    .unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        entries[0]["annotations"]["org.opencontainers.image.ref.name"],
        "1"
    );
    assert_eq!(
        entries[0]["annotations"]["io.containerd.image.name"],
        "localhost/built:1"
    );
    assert_eq!(
        entries[1]["annotations"]["org.opencontainers.image.ref.name"],
        "2"
    );
    assert_eq!(
        entries[1]["annotations"]["io.containerd.image.name"],
        "example.com:5000/team/other:2"
    );
    assert_eq!(entries[0]["digest"], a.digest.as_str());

    // berth reads it back to the same manifests.
    let other = Store::open(t.path().join("store2")).unwrap();
    for (tag, img) in [("1", &a), ("2", &b)] {
        let back = layout::import(
            &other,
            &dir,
            Some(tag),
            &format!("back:{tag}"),
            &PlatformSpec::host(),
        )
        .unwrap();
        assert_eq!(back.digest, img.digest);
    }
    // skopeo and umoci read it.
    let v = sh_json(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:1", dir.display())),
    );
    assert_eq!(v["Digest"], a.digest.as_str());
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
    let bundle = t.path().join("umoci-bundle");
    sh(Command::new("umoci")
        .args(["unpack", "--image", &format!("{}:2", dir.display())])
        .arg(&bundle));
    assert_eq!(
        fs::read_to_string(bundle.join("rootfs/app/hello")).unwrap(),
        "hello from b\n"
    );

    // Exported again into the same layout: the entry for tag 1 is
    // replaced, the other kept.
    layout::export(&store, &[("localhost/built:1".into(), b.clone())], &dir).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let one: Vec<_> = entries
        .iter()
        .filter(|e| e["annotations"]["org.opencontainers.image.ref.name"] == "1")
        .collect();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["digest"], b.digest.as_str());
    let v = sh_json(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:1", dir.display())),
    );
    assert_eq!(v["Digest"], b.digest.as_str());

    // Two names with one tag cannot share a layout.
    let err = layout::export(
        &store,
        &[
            ("x/a:same".into(), a.clone()),
            ("x/b:same".into(), b.clone()),
        ],
        &t.path().join("clash"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("x/a:same") && err.contains("x/b:same"),
        "{err}"
    );
}

#[test]
fn an_exported_docker_archive_loads_in_skopeo_and_berth() {
    let t = TestImage::make();
    let d = t.dir.path();
    let store = store_in(d);
    // umoci's image has gzip layers: they go into the archive
    // uncompressed.
    let gz = import(&store, &t, "example.com/test:v1");
    assert!(gz
        .manifest
        .layers
        .iter()
        .all(|l| l.media_type.ends_with("gzip")));
    let a = built(&store, d, "localhost/built:1", "a");
    let file = d.join("saved.tar");
    archive::export(
        &store,
        &[
            ("localhost/built:1".into(), a.clone()),
            ("localhost/built:latest".into(), a.clone()),
            ("example.com/test:v1".into(), gz.clone()),
        ],
        &file,
    )
    .unwrap();

    // What is in it.
    let mut ar = tar::Archive::new(fs::File::open(&file).unwrap());
    let mut members = BTreeMap::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut body).unwrap();
        members.insert(name, body);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    assert_eq!(manifest.as_array().unwrap().len(), 2, "{manifest}");
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["localhost/built:1", "localhost/built:latest"])
    );
    for img in [&a, &gz] {
        for id in img.diff_ids().unwrap() {
            let layer = &members[&format!("{}/layer.tar", id.hex())];
            assert_eq!(Digest::of(layer), id, "layer.tar is the uncompressed layer");
        }
        let cd = Digest::parse(&img.manifest.config.digest).unwrap();
        assert_eq!(members[&format!("{}.json", cd.hex())], img.config_json);
    }
    let repos: serde_json::Value = serde_json::from_slice(&members["repositories"]).unwrap();
    assert_eq!(
        repos["example.com/test"]["v1"],
        gz.diff_ids().unwrap().last().unwrap().hex()
    );
    assert!(!members.keys().any(|k| k.ends_with("VERSION")));

    // skopeo reads it and copies out of it.
    let v = sh_json(Command::new("skopeo").arg("inspect").arg(format!(
        "docker-archive:{}:localhost/built:1",
        file.display()
    )));
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
    let oci2 = d.join("oci2");
    sh(Command::new("skopeo")
        .arg("copy")
        .arg(format!(
            "docker-archive:{}:example.com/test:v1",
            file.display()
        ))
        .arg(format!("oci:{}:x", oci2.display())));
    let other = Store::open(d.join("store2")).unwrap();
    let copied =
        layout::import(&other, &oci2, Some("x"), "copied:x", &PlatformSpec::host()).unwrap();
    assert_eq!(copied.diff_ids().unwrap(), gz.diff_ids().unwrap());

    // berth reads it back: same configs, same diff-ids, every name.
    let third = Store::open(d.join("store3")).unwrap();
    let back = archive::import(&third, &file, None).unwrap();
    assert_eq!(back.len(), 2, "one per image, however many names");
    for (name, img) in [
        ("localhost/built:1", &a),
        ("localhost/built:latest", &a),
        ("example.com/test:v1", &gz),
    ] {
        let b = third.image(name).unwrap();
        assert_eq!(b.config_json, img.config_json, "{name}");
        assert_eq!(b.diff_ids().unwrap(), img.diff_ids().unwrap(), "{name}");
    }
    let out = d.join("flat-back");
    rootfs::unpack_flat(&third, &third.image("example.com/test:v1").unwrap(), &out).unwrap();
    assert_same_tree(&out, &t.umoci_rootfs());
    // Nothing but the archive was left beside it.
    let stray: Vec<_> = fs::read_dir(d)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".berth-"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}
