//! Layers made from overlay upper dirs: a real overlay on an unpacked
//! busybox layer is changed through its merged dir (deletions, a
//! directory replaced, hardlinks, setuid, symlinks, a fifo, a device, a
//! socket, xattrs, long names), unmounted, and its upper dir written as a
//! layer. Applying the busybox layer and the new one with berth's flat
//! unpack must give the tree the merged dir showed; the upper dir adopted
//! as a lower dir must mount to it too.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_image::layer::{LayerOptions, NewLayer};
use berth_image::store::{Descriptor, Image, Store};
use berth_image::unpack::{self, Compression, Mode};
use berth_image::{archive, rootfs, Digest};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use sha2::Digest as _;

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mounted(PathBuf);

impl Mounted {
    fn overlay(target: &Path, data: &str, flags: MsFlags) -> Mounted {
        mount(Some("overlay"), target, Some("overlay"), flags, Some(data))
            .unwrap_or_else(|e| panic!("mount overlay {data}: {e}"));
        Mounted(target.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

fn temp() -> tempfile::TempDir {
    testbed::require_root();
    tempfile::Builder::new()
        .prefix("berth-layer-")
        .tempdir_in("/tmp")
        .unwrap()
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let (c, n) = (cstr(p), CString::new(name).unwrap());
    // SAFETY: both strings are NUL-terminated and `value` is valid for its
    // length.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setxattr {name} on {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

fn get_xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let (c, n) = (cstr(p), CString::new(name).unwrap());
    let mut v = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated; `v` is writable for its
    // length.
    let m = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
    (m >= 0).then(|| {
        v.truncate(m as usize);
        v
    })
}

/// The xattrs of `p` (not followed), `trusted.*` left out (overlayfs
/// hides its own from the merged view).
fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let c = cstr(p);
    let mut names = vec![0u8; 4096];
    // SAFETY: `c` is NUL-terminated; `names` is writable for its length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(
        n >= 0,
        "listxattr {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"trusted.") {
            continue;
        }
        let cn = CString::new(name).unwrap();
        let mut v = vec![0u8; 4096];
        // SAFETY: as above.
        let m = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert!(m >= 0);
        v.truncate(m as usize);
        out.push((String::from_utf8_lossy(name).into_owned(), v));
    }
    out.sort();
    out
}

/// Every entry under `root` but the root itself: type, content hash or
/// link target or device, mode, owner, mtime (seconds), xattrs, and for
/// multiply-linked files the first path of their inode.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes = BTreeMap::new();
    walk(root, root, &mut out, &mut inodes);
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, String>,
    inodes: &mut BTreeMap<u64, String>,
) {
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
        } else if ft.is_char_device() {
            format!("chr {}", m.rdev())
        } else if ft.is_block_device() {
            format!("blk {}", m.rdev())
        } else if ft.is_socket() {
            "socket".into()
        } else {
            "other".into()
        };
        let mode = if ft.is_symlink() {
            0
        } else {
            m.mode() & 0o7777
        };
        let mut line = format!(
            "{what} mode={mode:o} {}:{} mtime={} xattrs={:?}",
            m.uid(),
            m.gid(),
            m.mtime(),
            xattrs(&p)
        );
        if !ft.is_dir() && m.nlink() > 1 {
            let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone());
            line.push_str(&format!(" inode-of={first}"));
        }
        out.insert(rel.clone(), line);
        if ft.is_dir() {
            walk(root, &p, out, inodes);
        }
    }
}

fn assert_same(got: &BTreeMap<String, String>, want: &BTreeMap<String, String>) {
    let mut diffs = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            None => diffs.push(format!("missing {k} ({v})")),
            Some(w) if w != v => diffs.push(format!("{k}:\n      got  {w}\n      want {v}")),
            _ => {}
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(*k)) {
        diffs.push(format!("extra {k} ({})", got[k]));
    }
    assert!(diffs.is_empty(), "trees differ:\n  {}", diffs.join("\n  "));
}

/// A 120-byte directory name under `opt/a-long/` and a 60-byte file in
/// it: over ustar's 100 bytes. `a-long` sorts before `app`, so the long
/// path is the first name of its inode and the hardlink to it names it.
fn long_dir() -> String {
    format!("opt/a-long/{}", "d".repeat(120))
}

fn long_file() -> String {
    format!("{}/{}", long_dir(), "f".repeat(60))
}

/// A store holding busybox, an overlay of its layer with a fresh upper
/// dir, changed through the merged dir and unmounted again.
struct Changed {
    dir: tempfile::TempDir,
    store: Store,
    base: Image,
    lower: PathBuf,
    upper: PathBuf,
    /// The merged tree before unmounting, sockets left out (a layer
    /// cannot hold them).
    merged: BTreeMap<String, String>,
}

impl Changed {
    fn make() -> Changed {
        let dir = temp();
        let store = Store::open(dir.path().join("store")).unwrap();
        let tar = testbed::image::busybox_archive(dir.path(), "localhost/busybox:layer");
        let base = archive::import(&store, &tar, None).unwrap().remove(0);
        let lower = rootfs::layer_dirs(&store, &base).unwrap().remove(0);
        let (upper, work, merged) = (
            dir.path().join("upper"),
            dir.path().join("work"),
            dir.path().join("merged"),
        );
        for d in [&upper, &work, &merged] {
            fs::create_dir(d).unwrap();
        }
        let data = format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off",
            lower.display(),
            upper.display(),
            work.display()
        );
        let m = Mounted::overlay(&merged, &data, MsFlags::empty());
        change(&merged);
        let mut tree_before = tree(&merged);
        let sockets: Vec<String> = tree_before
            .iter()
            .filter(|(_, v)| v.starts_with("socket"))
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(sockets, ["opt/app/sock"]);
        tree_before.remove("opt/app/sock");
        drop(m);
        assert!(testbed::mounts_under(dir.path()).is_empty());
        Changed {
            dir,
            store,
            base,
            lower,
            upper,
            merged: tree_before,
        }
    }

    fn write(&self) -> NewLayer {
        self.store
            .write_layer(&self.upper, &LayerOptions::default())
            .unwrap()
    }
}

/// The changes a build step might make.
fn change(m: &Path) {
    // Whiteouts: a file and a symlink of the lower layer.
    fs::remove_file(m.join("etc/group")).unwrap();
    fs::remove_file(m.join("bin/ls")).unwrap();
    // A directory deleted and made again: opaque.
    fs::remove_dir_all(m.join("home")).unwrap();
    fs::create_dir(m.join("home")).unwrap();
    fs::write(m.join("home/fresh"), "new home\n").unwrap();
    // A lower file changed: copied up whole.
    let mut passwd = fs::read(m.join("etc/passwd")).unwrap();
    passwd.extend_from_slice(b"app:x:1000:1000::/home/fresh:/bin/sh\n");
    fs::write(m.join("etc/passwd"), passwd).unwrap();
    // New files of every kind.
    let app = m.join("opt/app");
    fs::create_dir_all(&app).unwrap();
    fs::write(app.join("one"), "one and two\n").unwrap();
    set_xattr(&app.join("one"), "user.test", b"hello");
    fs::hard_link(app.join("one"), app.join("two")).unwrap();
    fs::write(app.join("suid"), "#!/bin/sh\necho root\n").unwrap();
    std::os::unix::fs::chown(app.join("suid"), Some(1000), Some(1000)).unwrap();
    fs::set_permissions(app.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::create_dir(app.join("shared")).unwrap();
    fs::set_permissions(app.join("shared"), fs::Permissions::from_mode(0o3775)).unwrap();
    std::os::unix::fs::chown(app.join("shared"), Some(42), Some(4242)).unwrap();
    fs::write(app.join("owned"), "x").unwrap();
    std::os::unix::fs::lchown(app.join("owned"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::symlink("../../bin/busybox", app.join("link")).unwrap();
    nix::unistd::mkfifo(
        &app.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    nix::sys::stat::mknod(
        &app.join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(app.join("sock")).unwrap();
    // Long names: a path, a symlink target and a hardlink target over
    // 100 bytes.
    fs::create_dir_all(m.join(long_dir())).unwrap();
    fs::write(m.join(long_file()), "far away\n").unwrap();
    fs::hard_link(m.join(long_file()), app.join("long-hardlink")).unwrap();
    std::os::unix::fs::symlink(format!("/{}", long_file()), app.join("long-symlink")).unwrap();
    // A file with old content times, untouched by the rest.
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &app.join("one"),
        &nix::sys::time::TimeSpec::new(1_500_000_000, 0),
        &nix::sys::time::TimeSpec::new(1_500_000_000, 0),
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

/// A tar entry as read back.
#[derive(Debug)]
struct Entry {
    name: String,
    kind: tar::EntryType,
    link: Option<String>,
    mode: u32,
    pax: Vec<(String, Vec<u8>)>,
}

fn entries(store: &Store, l: &NewLayer) -> Vec<Entry> {
    let d = Digest::parse(&l.descriptor.digest).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(store.open_blob(&d).unwrap()));
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let pax = match e.pax_extensions().unwrap() {
            Some(x) => x
                .map(|x| {
                    let x = x.unwrap();
                    (x.key().unwrap().to_string(), x.value_bytes().to_vec())
                })
                .collect(),
            None => Vec::new(),
        };
        out.push(Entry {
            name: String::from_utf8(e.path_bytes().into_owned()).unwrap(),
            kind: e.header().entry_type(),
            link: e
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap()),
            mode: e.header().mode().unwrap(),
            pax,
        });
    }
    out
}

/// Applies the busybox layer and `layer` with the flat unpacker into a
/// fresh directory.
fn apply_flat(c: &Changed, layer: &Descriptor, out: &Path) {
    fs::create_dir(out).unwrap();
    let base = &c.base.manifest.layers[0];
    let bd = Digest::parse(&base.digest).unwrap();
    let f = c.store.open_blob(&bd).unwrap();
    unpack::apply_layer(f, Compression::None, out, Mode::Flat, "base").unwrap();
    let ld = Digest::parse(&layer.digest).unwrap();
    let f = c.store.open_blob(&ld).unwrap();
    unpack::apply_layer(f, Compression::Gzip, out, Mode::Flat, "new").unwrap();
}

#[test]
fn an_upper_dir_becomes_a_layer_that_unpacks_to_the_merged_tree() {
    let c = Changed::make();
    // overlayfs made what the layer must translate.
    assert_eq!(
        get_xattr(&c.upper.join("home"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    let wh = fs::symlink_metadata(c.upper.join("etc/group")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);

    let l = c.write();
    assert_eq!(
        l.descriptor.media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let blob = c
        .store
        .blob_path(&Digest::parse(&l.descriptor.digest).unwrap());
    assert_eq!(fs::metadata(&blob).unwrap().len(), l.descriptor.size);
    // The diff-id is the digest of the uncompressed stream.
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(fs::File::open(&blob).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    assert_eq!(Digest::of(&raw), l.diff_id);
    // Nothing left in the store's tmp/.
    assert_eq!(fs::read_dir(c.store.root().join("tmp")).unwrap().count(), 0);

    let es = entries(&c.store, &l);
    assert_eq!(es.len() as u64, l.entries);
    let by_name: BTreeMap<&str, &Entry> = es.iter().map(|e| (e.name.as_str(), e)).collect();
    assert_eq!(by_name.len(), es.len(), "duplicate names: {es:#?}");
    for (i, e) in es.iter().enumerate() {
        // Parents come before what they hold.
        let trimmed = e.name.trim_end_matches('/');
        if let Some((parent, _)) = trimmed.rsplit_once('/') {
            let at = es.iter().position(|p| p.name == format!("{parent}/"));
            assert!(at.is_some_and(|at| at < i), "{} before its parent", e.name);
        }
        assert!(
            e.pax.iter().all(|(k, _)| !k.contains("overlay.")),
            "overlay xattr in {}: {:?}",
            e.name,
            e.pax
        );
        assert!(
            !e.name.starts_with('/') && !e.name.starts_with("./"),
            "{}",
            e.name
        );
    }
    for wh in ["etc/.wh.group", "bin/.wh.ls", "home/.wh..wh..opq"] {
        let e = by_name
            .get(wh)
            .unwrap_or_else(|| panic!("no {wh} in {es:#?}"));
        assert!(e.kind.is_file(), "{wh}: {:?}", e.kind);
    }
    for gone in ["etc/group", "bin/ls", "opt/app/sock", "home/test/"] {
        assert!(!by_name.contains_key(gone), "{gone} is in the layer");
    }
    // The opaque marker right after its directory.
    let home_at = es.iter().position(|e| e.name == "home/").unwrap();
    assert_eq!(es[home_at + 1].name, "home/.wh..wh..opq");
    assert!(by_name["opt/app/one"]
        .pax
        .contains(&("SCHILY.xattr.user.test".into(), b"hello".to_vec())));
    assert!(by_name["opt/app/two"].kind.is_hard_link());
    assert_eq!(by_name["opt/app/two"].link.as_deref(), Some("opt/app/one"));
    assert!(by_name["opt/app/long-hardlink"].kind.is_hard_link());
    assert_eq!(
        by_name["opt/app/long-hardlink"].link.as_deref(),
        Some(long_file().as_str())
    );
    assert!(by_name[long_file().as_str()].kind.is_file());
    assert!(by_name[long_file().as_str()]
        .pax
        .iter()
        .any(|(k, _)| k == "path"));
    assert_eq!(
        by_name["opt/app/long-symlink"].link.as_deref(),
        Some(format!("/{}", long_file()).as_str())
    );
    assert_eq!(by_name["opt/app/suid"].mode, 0o4755);
    assert_eq!(by_name["opt/app/shared/"].mode, 0o3775);
    assert!(by_name["opt/app/fifo"].kind.is_fifo());
    assert!(by_name["opt/app/null"].kind.is_character_special());

    let flat = c.dir.path().join("flat");
    apply_flat(&c, &l.descriptor, &flat);
    assert_same(&tree(&flat), &c.merged);
}

#[test]
fn an_adopted_upper_dir_mounts_as_the_merged_tree() {
    let c = Changed::make();
    let l = c.write();
    let spare = c.dir.path().join("spare");
    fs::create_dir(&spare).unwrap();
    let adopted = c.store.adopt_layer(&l.diff_id, &c.upper).unwrap();
    assert_eq!(
        adopted,
        c.store.root().join("layers/sha256").join(l.diff_id.hex())
    );
    assert!(!c.upper.exists(), "the upper dir was not moved");
    // The store now knows the layer as unpacked: no second unpack.
    assert_eq!(
        c.store.layer_dir(&l.diff_id, &l.descriptor).unwrap(),
        adopted
    );
    // A second copy of the same layer is surplus and goes.
    assert_eq!(c.store.adopt_layer(&l.diff_id, &spare).unwrap(), adopted);
    assert!(!spare.exists());
    assert!(c
        .store
        .adopt_layer(&l.diff_id, &c.dir.path().join("nothing"))
        .is_err());

    let merged = c.dir.path().join("again");
    fs::create_dir(&merged).unwrap();
    let data = format!("lowerdir={}:{}", adopted.display(), c.lower.display());
    let _m = Mounted::overlay(&merged, &data, MsFlags::MS_RDONLY);
    assert_same(&tree(&merged), &c.merged);
}

/// A tree of plain files, as a COPY step would write.
fn plain_tree(dir: &Path) {
    fs::create_dir_all(dir.join("a/b")).unwrap();
    fs::write(dir.join("a/b/c"), "c\n").unwrap();
    fs::write(dir.join("a/old"), "old\n").unwrap();
    fs::write(dir.join("top"), vec![7u8; 300_000]).unwrap();
    std::os::unix::fs::symlink("a/b/c", dir.join("link")).unwrap();
    set_utime(&dir.join("a/old"), 1_500_000_000);
}

fn set_utime(p: &Path, t: i64) {
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        p,
        &nix::sys::time::TimeSpec::new(t, 0),
        &nix::sys::time::TimeSpec::new(t, 0),
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

fn touch_all(dir: &Path, t: i64) {
    for p in ["a", "a/b", "a/b/c", "top", "link"] {
        set_utime(&dir.join(p), t);
    }
}

#[test]
fn the_same_tree_gives_the_same_layer_and_clamping_hides_touches() {
    let t = temp();
    let store = Store::open(t.path().join("store")).unwrap();
    let src = t.path().join("src");
    plain_tree(&src);
    let a = store.write_layer(&src, &LayerOptions::default()).unwrap();
    let b = store.write_layer(&src, &LayerOptions::default()).unwrap();
    assert_eq!((&a.descriptor, &a.diff_id), (&b.descriptor, &b.diff_id));
    // gzip header: no mtime, no file name.
    let bytes = fs::read(store.blob_path(&Digest::parse(&a.descriptor.digest).unwrap())).unwrap();
    assert_eq!(&bytes[..3], [0x1f, 0x8b, 8]);
    assert_eq!(bytes[3], 0, "gzip flags: a name or comment");
    assert_eq!(&bytes[4..8], [0, 0, 0, 0], "gzip mtime");

    // Unclamped, a touch changes the layer.
    let now = 1_700_000_000;
    touch_all(&src, now);
    let c = store.write_layer(&src, &LayerOptions::default()).unwrap();
    assert_ne!(c.diff_id, a.diff_id);

    let clamp = LayerOptions {
        mtime_clamp: Some(1_600_000_000),
    };
    let d = store.write_layer(&src, &clamp).unwrap();
    touch_all(&src, now + 1000);
    let e = store.write_layer(&src, &clamp).unwrap();
    assert_eq!(d.diff_id, e.diff_id);
    assert_eq!(d.descriptor, e.descriptor);
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(
        store
            .open_blob(&Digest::parse(&e.descriptor.digest).unwrap())
            .unwrap(),
    ));
    let times: BTreeMap<String, u64> = ar
        .entries()
        .unwrap()
        .map(|x| {
            let x = x.unwrap();
            (
                String::from_utf8(x.path_bytes().into_owned()).unwrap(),
                x.header().mtime().unwrap(),
            )
        })
        .collect();
    assert_eq!(times["a/old"], 1_500_000_000, "older than the clamp: kept");
    for n in ["a/", "a/b/", "a/b/c", "top", "link"] {
        assert_eq!(times[n], 1_600_000_000, "{n}");
    }
    // Sorted, parents first.
    let names: Vec<&String> = times.keys().collect();
    assert_eq!(names, ["a/", "a/b/", "a/b/c", "a/old", "link", "top"]);
}

#[test]
fn symlinks_are_never_followed_and_errors_name_the_path() {
    let t = temp();
    let store = Store::open(t.path().join("store")).unwrap();
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    std::os::unix::fs::symlink("/etc", src.join("etc")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("passwd")).unwrap();
    let l = store.write_layer(&src, &LayerOptions::default()).unwrap();
    let es = entries(&store, &l);
    let got: Vec<(&str, Option<&str>, bool)> = es
        .iter()
        .map(|e| (e.name.as_str(), e.link.as_deref(), e.kind.is_symlink()))
        .collect();
    assert_eq!(
        got,
        [
            ("etc", Some("/etc"), true),
            ("passwd", Some("/etc/passwd"), true)
        ]
    );

    // overlayfs's redirects cannot be expressed in a layer.
    let renamed = src.join("moved");
    fs::create_dir(&renamed).unwrap();
    set_xattr(&renamed, "trusted.overlay.redirect", b"/orig");
    let err = store
        .write_layer(&src, &LayerOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains(&renamed.display().to_string()), "{err}");
    assert!(err.contains("redirect"), "{err}");

    let missing = t.path().join("no-such-dir");
    let err = store
        .write_layer(&missing, &LayerOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains(&missing.display().to_string()), "{err}");
    // Failed writes leave nothing in tmp/.
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}
