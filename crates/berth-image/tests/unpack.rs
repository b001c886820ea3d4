//! Layer unpacking on a real file system (run as root): every entry type
//! with its metadata, compression, flat whiteouts across layers, overlay
//! whiteouts checked through a real overlay mount, and hostile layers that
//! try to write, link or delete outside the root.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_image::digest::Hashing;
use berth_image::unpack::{apply_layer, Compression, Mode, Stats};
use berth_image::Error;

const MTIME: u64 = 1_600_000_000;

/// A layer under construction. Names and link targets are written into the
/// header as given (the tar crate's setters refuse `..`), so hostile names
/// really are in the archive.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Layer {
        Layer(tar::Builder::new(Vec::new()))
    }

    fn header(kind: tar::EntryType, name: &str, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        assert!(name.len() < 100, "{name}");
        h.as_old_mut().name = [0; 100];
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h
    }

    fn link_name(h: &mut tar::Header, target: &str) {
        assert!(target.len() < 100);
        h.as_old_mut().linkname = [0; 100];
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
    }

    fn push(&mut self, mut h: tar::Header, data: &[u8]) -> &mut Self {
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        self.push(Self::header(tar::EntryType::Directory, name, 0o755, 0), b"")
    }

    fn file(&mut self, name: &str, data: &str) -> &mut Self {
        let h = Self::header(tar::EntryType::Regular, name, 0o644, data.len() as u64);
        self.push(h, data.as_bytes())
    }

    fn owned(
        &mut self,
        kind: tar::EntryType,
        name: &str,
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        let mut h = Self::header(kind, name, mode, 0);
        h.set_uid(uid);
        h.set_gid(gid);
        self.push(h, b"")
    }

    fn owned_symlink(&mut self, name: &str, target: &str, uid: u64, gid: u64) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Symlink, name, 0o777, 0);
        Self::link_name(&mut h, target);
        h.set_uid(uid);
        h.set_gid(gid);
        self.push(h, b"")
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Symlink, name, 0o777, 0);
        Self::link_name(&mut h, target);
        self.push(h, b"")
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Link, name, 0o644, 0);
        Self::link_name(&mut h, target);
        self.push(h, b"")
    }

    fn device(&mut self, kind: tar::EntryType, name: &str, major: u32, minor: u32) -> &mut Self {
        let mut h = Self::header(kind, name, 0o620, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.push(h, b"")
    }

    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.0
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }

    fn tar(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// A parent directory under /tmp holding the root and a sentinel directory
/// beside it, to prove nothing outside the root changes.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("berth-unpack-")
            .tempdir_in("/tmp")
            .unwrap();
        fs::create_dir(dir.path().join("root")).unwrap();
        let out = dir.path().join("outside");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("sentinel"), "untouched").unwrap();
        fs::set_permissions(&out, fs::Permissions::from_mode(0o750)).unwrap();
        Scratch { dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }

    fn apply(&self, tar: &[u8], mode: Mode) -> Result<Stats, Error> {
        apply_layer(tar, Compression::None, &self.root(), mode, "test-layer")
    }

    /// Everything in the parent but the root: names, types, modes, owners,
    /// link counts and contents.
    fn outside_view(&self) -> BTreeMap<PathBuf, String> {
        let mut m = BTreeMap::new();
        walk(self.dir.path(), &self.root(), &mut m);
        m
    }
}

fn walk(dir: &Path, skip: &Path, m: &mut BTreeMap<PathBuf, String>) {
    let md = fs::symlink_metadata(dir).unwrap();
    m.insert(dir.to_path_buf(), describe(dir, &md));
    if !md.is_dir() {
        return;
    }
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p != skip {
            walk(&p, skip, m);
        }
    }
}

fn describe(p: &Path, md: &fs::Metadata) -> String {
    let content = if md.is_file() {
        fs::read_to_string(p).unwrap_or_default()
    } else {
        String::new()
    };
    format!(
        "{:o} {}:{} n{} {:?} {content}",
        md.mode(),
        md.uid(),
        md.gid(),
        md.nlink(),
        md.file_type()
    )
}

fn lstat(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let path = CString::new(p.as_os_str().as_bytes()).unwrap();
    let name = CString::new(name).unwrap();
    let mut buf = vec![0u8; 1024];
    // SAFETY: both strings are NUL-terminated and `buf` is writable for
    // its length.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn require_root() {
    assert!(nix::unistd::geteuid().is_root(), "unpack tests run as root");
}

#[test]
fn every_entry_type_with_its_metadata() {
    require_root();
    let s = Scratch::new();
    let mut l = Layer::new();
    l.dir("./")
        .dir("bin")
        .file("bin/tool", "#!/bin/sh\n")
        .owned(tar::EntryType::Regular, "bin/su", 0o4755, 0, 0)
        .owned(tar::EntryType::Regular, "bin/wall", 0o2755, 1000, 5)
        .owned(tar::EntryType::Directory, "tmp", 0o1777, 0, 0)
        .owned(tar::EntryType::Directory, "home/user", 0o700, 1000, 1000)
        .file("home/user/notes", "hello")
        .symlink("bin/sh", "tool")
        .owned_symlink("home/user/link", "notes", 1000, 1000)
        .hardlink("bin/tool2", "bin/tool")
        .device(tar::EntryType::Char, "dev/null", 1, 3)
        .device(tar::EntryType::Block, "dev/loop9", 7, 9)
        .owned(tar::EntryType::Fifo, "run/fifo", 0o600, 7, 7);
    l.pax(&[
        ("SCHILY.xattr.user.greeting", b"hi"),
        ("SCHILY.xattr.trusted.berth", b"t"),
        ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
        ("mtime", b"1600000000.25"),
    ])
    .file("bin/attrs", "x");
    l.pax(&[("SCHILY.xattr.user.dir", b"d")]).dir("etc");
    // A file in a directory after the directory: its mtime must survive.
    l.file("etc/conf", "c");
    let tar = l.tar();
    let before = s.outside_view();
    let stats = s.apply(&tar, Mode::Flat).unwrap();
    assert_eq!(s.outside_view(), before);
    let r = s.root();
    assert_eq!(stats.entries, 17);
    assert_eq!(stats.bytes, 10 + 5 + 1 + 1);
    assert_eq!(stats.skipped, 0);

    assert_eq!(
        fs::read_to_string(r.join("bin/tool")).unwrap(),
        "#!/bin/sh\n"
    );
    let su = lstat(&r.join("bin/su"));
    assert_eq!(su.mode() & 0o7777, 0o4755);
    let wall = lstat(&r.join("bin/wall"));
    assert_eq!(
        (wall.mode() & 0o7777, wall.uid(), wall.gid()),
        (0o2755, 1000, 5)
    );
    assert_eq!(lstat(&r.join("tmp")).mode() & 0o7777, 0o1777);
    let home = lstat(&r.join("home/user"));
    assert_eq!(
        (home.mode() & 0o7777, home.uid(), home.gid()),
        (0o700, 1000, 1000)
    );
    // The implicit parent is 0755 whatever the umask.
    assert_eq!(lstat(&r.join("home")).mode() & 0o7777, 0o755);

    let sh = lstat(&r.join("bin/sh"));
    assert!(sh.file_type().is_symlink());
    assert_eq!(fs::read_link(r.join("bin/sh")).unwrap(), Path::new("tool"));
    assert_eq!(sh.mtime(), MTIME as i64);
    let link = lstat(&r.join("home/user/link"));
    assert_eq!((link.uid(), link.gid()), (1000, 1000));

    assert_eq!(
        lstat(&r.join("bin/tool2")).ino(),
        lstat(&r.join("bin/tool")).ino()
    );
    assert_eq!(lstat(&r.join("bin/tool")).nlink(), 2);

    let null = lstat(&r.join("dev/null"));
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o620);
    let blk = lstat(&r.join("dev/loop9"));
    assert!(blk.file_type().is_block_device());
    assert_eq!(blk.rdev(), nix::sys::stat::makedev(7, 9));
    let fifo = lstat(&r.join("run/fifo"));
    assert!(fifo.file_type().is_fifo());
    assert_eq!(
        (fifo.uid(), fifo.gid(), fifo.mode() & 0o7777),
        (7, 7, 0o600)
    );

    let attrs = r.join("bin/attrs");
    assert_eq!(xattr(&attrs, "user.greeting").unwrap(), b"hi");
    assert_eq!(xattr(&attrs, "trusted.berth").unwrap(), b"t");
    assert_eq!(
        xattr(&attrs, "trusted.overlay.opaque"),
        None,
        "forged overlay xattr skipped"
    );
    let am = lstat(&attrs);
    assert_eq!((am.mtime(), am.mtime_nsec()), (MTIME as i64, 250_000_000));
    assert_eq!(xattr(&r.join("etc"), "user.dir").unwrap(), b"d");

    for p in [
        "bin",
        "etc",
        "tmp",
        "home/user",
        "bin/tool",
        "etc/conf",
        "dev/null",
        "run/fifo",
    ] {
        assert_eq!(lstat(&r.join(p)).mtime(), MTIME as i64, "{p}");
    }
    // The root's own metadata is the caller's.
    assert_eq!(lstat(&r).mode() & 0o7777, 0o755);
}

#[test]
fn gzip_and_zstd_streams_are_read_to_the_end() {
    require_root();
    let mut l = Layer::new();
    let big = "0123456789abcdef".repeat(300_000);
    l.dir("data").file("data/big", &big).file("data/small", "s");
    let tar = l.tar();
    for (c, blob) in [
        (Compression::None, tar.clone()),
        (Compression::Gzip, gzip(&tar)),
        (Compression::Zstd, zstd(&tar)),
    ] {
        let s = Scratch::new();
        let mut h = Hashing::new(&blob[..]);
        let stats = apply_layer(&mut h, c, &s.root(), Mode::Flat, "l").unwrap();
        assert_eq!(stats.bytes, big.len() as u64 + 1);
        assert_eq!(h.finish().1, blob.len() as u64, "{c:?}: whole stream read");
        assert_eq!(fs::read_to_string(s.root().join("data/big")).unwrap(), big);
        assert_eq!(Compression::sniff(&blob), c);
    }
    // Corrupt compression is a format error naming the layer.
    let mut bad = gzip(&tar);
    let n = bad.len();
    bad[n / 2] ^= 0xff;
    bad[n - 6] ^= 0xff;
    let s = Scratch::new();
    let e = apply_layer(
        &bad[..],
        Compression::Gzip,
        &s.root(),
        Mode::Flat,
        "sha256:abc",
    )
    .unwrap_err();
    assert!(matches!(e, Error::Format { .. }), "{e}");
    assert!(e.to_string().contains("sha256:abc"), "{e}");
}

#[test]
fn existing_entries_are_merged_or_replaced() {
    require_root();
    let s = Scratch::new();
    let r = s.root();
    let mut l1 = Layer::new();
    l1.dir("d")
        .file("d/a", "a")
        .dir("x")
        .file("x/inner", "i")
        .file("y", "file")
        .dir("real")
        .symlink("s", "real")
        .file("h1", "old")
        .hardlink("h2", "h1");
    s.apply(&l1.tar(), Mode::Flat).unwrap();
    let mut l2 = Layer::new();
    l2.owned(tar::EntryType::Directory, "d", 0o700, 5, 6)
        .file("x", "now a file")
        .dir("y")
        .dir("s")
        .file("s/f", "f")
        .file("h1", "new");
    s.apply(&l2.tar(), Mode::Flat).unwrap();
    let d = lstat(&r.join("d"));
    assert_eq!((d.mode() & 0o7777, d.uid(), d.gid()), (0o700, 5, 6));
    assert_eq!(fs::read_to_string(r.join("d/a")).unwrap(), "a");
    assert_eq!(fs::read_to_string(r.join("x")).unwrap(), "now a file");
    assert!(lstat(&r.join("y")).is_dir());
    assert!(
        lstat(&r.join("s")).is_dir(),
        "the symlink is replaced, not followed"
    );
    assert_eq!(names(&r.join("real")), Vec::<String>::new());
    // Replacing a file makes a new inode: its old hardlink keeps the old data.
    assert_eq!(fs::read_to_string(r.join("h1")).unwrap(), "new");
    assert_eq!(fs::read_to_string(r.join("h2")).unwrap(), "old");
}

/// Three layers for the whiteout tests: a base, one that deletes and
/// replaces, and one that brings a deleted file back.
fn whiteout_layers() -> [Vec<u8>; 3] {
    let mut base = Layer::new();
    base.dir("etc")
        .file("etc/passwd", "root")
        .file("etc/shadow", "secret")
        .dir("opt")
        .dir("opt/old")
        .file("opt/old/f1", "1")
        .dir("opt/old/sub")
        .file("opt/old/sub/f2", "2")
        .dir("keep")
        .file("keep/x", "x");
    let mut upper = Layer::new();
    upper
        .file("etc/.wh.shadow", "")
        .file("etc/added", "ours")
        .file("etc/.wh.added", "")
        .file(".wh.keep", "")
        .dir("opt/old")
        .file("opt/old/new1", "n1")
        .file("opt/old/.wh..wh..opq", "")
        .file("opt/old/new2", "n2")
        .file("opt/old/sub/f3", "3")
        .file("opt/.wh..wh.plnk", "");
    let mut top = Layer::new();
    top.file("etc/shadow", "again");
    [base.tar(), upper.tar(), top.tar()]
}

#[test]
fn flat_whiteouts_delete_lower_layers_only() {
    require_root();
    let s = Scratch::new();
    let r = s.root();
    let [base, upper, top] = whiteout_layers();
    s.apply(&base, Mode::Flat).unwrap();
    let stats = s.apply(&upper, Mode::Flat).unwrap();
    assert_eq!(stats.whiteouts, 4);
    assert_eq!(names(&r), ["etc", "opt"]);
    assert_eq!(names(&r.join("etc")), ["added", "passwd"]);
    assert_eq!(names(&r.join("opt")), ["old"]);
    assert_eq!(names(&r.join("opt/old")), ["new1", "new2", "sub"]);
    assert_eq!(names(&r.join("opt/old/sub")), ["f3"]);
    s.apply(&top, Mode::Flat).unwrap();
    assert_eq!(fs::read_to_string(r.join("etc/shadow")).unwrap(), "again");
}

/// Unmounts (lazily) when dropped, even if the test failed.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn overlay_whiteouts_give_the_merged_view() {
    require_root();
    let s = Scratch::new();
    let [base, upper, top] = whiteout_layers();
    let mut dirs = Vec::new();
    for (i, l) in [base, upper, top].iter().enumerate() {
        let d = s.dir.path().join(format!("layer{i}"));
        fs::create_dir(&d).unwrap();
        apply_layer(&l[..], Compression::None, &d, Mode::Overlay, "l").unwrap();
        dirs.push(d);
    }
    let up = &dirs[1];
    let shadow = lstat(&up.join("etc/shadow"));
    assert!(shadow.file_type().is_char_device());
    assert_eq!(shadow.rdev(), 0);
    assert!(lstat(&up.join("keep")).file_type().is_char_device());
    assert_eq!(
        xattr(&up.join("opt/old"), "trusted.overlay.opaque").unwrap(),
        b"y"
    );
    // The same layer's file stays; no whiteout markers remain as files.
    assert!(lstat(&up.join("etc/added")).is_file());
    assert!(!up.join("etc/.wh.shadow").exists());
    assert!(!up.join("opt/.wh..wh.plnk").exists());

    let merged = s.dir.path().join("merged");
    fs::create_dir(&merged).unwrap();
    let mount = |lower: &str| {
        let opts = format!("lowerdir={lower}");
        nix::mount::mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(opts.as_str()),
        )
        .unwrap_or_else(|e| panic!("mount overlay {opts}: {e}"));
        MountGuard(merged.clone())
    };
    let p = |i: usize| dirs[i].display().to_string();
    {
        let _m = mount(&format!("{}:{}", p(1), p(0)));
        assert_eq!(names(&merged), ["etc", "opt"]);
        assert_eq!(names(&merged.join("etc")), ["added", "passwd"]);
        assert_eq!(names(&merged.join("opt/old")), ["new1", "new2", "sub"]);
        assert_eq!(names(&merged.join("opt/old/sub")), ["f3"]);
        assert_eq!(
            fs::read_to_string(merged.join("etc/passwd")).unwrap(),
            "root"
        );
    }
    {
        let _m = mount(&format!("{}:{}:{}", p(2), p(1), p(0)));
        assert_eq!(names(&merged.join("etc")), ["added", "passwd", "shadow"]);
        assert_eq!(
            fs::read_to_string(merged.join("etc/shadow")).unwrap(),
            "again"
        );
    }
}

#[test]
fn overlay_directory_over_its_own_whiteout_is_opaque() {
    require_root();
    let s = Scratch::new();
    let mut l = Layer::new();
    l.file(".wh.cfg", "")
        .dir("cfg")
        .file("cfg/new", "n")
        .file(".wh.implicit", "")
        .file("implicit/x", "x");
    s.apply(&l.tar(), Mode::Overlay).unwrap();
    for d in ["cfg", "implicit"] {
        assert!(lstat(&s.root().join(d)).is_dir(), "{d}");
        assert_eq!(
            xattr(&s.root().join(d), "trusted.overlay.opaque").unwrap(),
            b"y"
        );
    }
    assert!(s.root().join("implicit/x").is_file());
    let mut l = Layer::new();
    l.dir("d").file("d/x", "x").file(".wh.d", "");
    let s = Scratch::new();
    s.apply(&l.tar(), Mode::Overlay).unwrap();
    assert_eq!(
        xattr(&s.root().join("d"), "trusted.overlay.opaque").unwrap(),
        b"y"
    );
    assert!(s.root().join("d/x").is_file());
}

/// Builds layers with `build` (which may aim at the scratch's outside
/// directory), applies them flat in order (stopping at the first error,
/// which it returns) and checks that nothing outside the root changed and
/// that none of the host paths in `host` exists.
fn hostile(
    build: impl FnOnce(&Scratch) -> Vec<Vec<u8>>,
    host: &[&str],
) -> (Scratch, Result<(), Error>) {
    require_root();
    let s = Scratch::new();
    let layers = build(&s);
    let before = s.outside_view();
    let mut res = Ok(());
    for l in &layers {
        if let Err(e) = s.apply(l, Mode::Flat) {
            res = Err(e);
            break;
        }
    }
    assert_eq!(
        s.outside_view(),
        before,
        "something outside the root changed"
    );
    for h in host {
        assert!(!Path::new(h).exists(), "{h} was created on the host");
    }
    (s, res)
}

fn unique(name: &str) -> String {
    format!("berth-unpack-{name}-{}", std::process::id())
}

/// `p` without its leading `/`, as it lands when re-rooted.
fn rerooted(p: &Path) -> PathBuf {
    p.strip_prefix("/").unwrap().to_path_buf()
}

#[test]
fn hostile_names_are_clamped_at_the_root() {
    let abs = format!("/{}", unique("abs"));
    let (s, r) = hostile(
        |_| {
            let mut l = Layer::new();
            l.file("../escape", "e")
                .file(&abs, "a")
                .file("a/../../escape2", "e")
                .file("../../../../../../tmp/../escape3", "e")
                .file("./../outside/sentinel", "inside");
            l.pax(&[("path", b"../../pax-escape")])
                .file("ignored-name", "p");
            vec![l.tar()]
        },
        &[&abs],
    );
    r.unwrap();
    let root = s.root();
    assert_eq!(
        names(&root),
        [
            &abs[1..],
            "escape",
            "escape2",
            "escape3",
            "outside",
            "pax-escape"
        ]
    );
    assert_eq!(
        fs::read_to_string(root.join("outside/sentinel")).unwrap(),
        "inside"
    );
    assert_eq!(names(s.dir.path()), ["outside", "root"]);
}

#[test]
fn writing_through_a_symlink_stays_inside() {
    let top = unique("top");
    let (s, r) = hostile(
        |s| {
            let out = s.outside();
            let out = out.to_str().unwrap();
            let mut l = Layer::new();
            l.symlink("l", out)
                .file("l/pwned", "p")
                .symlink("up", "../../../../../../..")
                .file(&format!("up/{top}"), "p")
                .symlink("upfile", &format!("../../../../../../..{out}/sentinel"))
                .file("upfile", "replaced, not followed")
                .symlink("d", out)
                .owned(tar::EntryType::Directory, "d", 0o777, 0, 0)
                .file("d/new", "n")
                .symlink("rel", "../outside")
                .file("rel/sentinel", "inside");
            vec![l.tar()]
        },
        &[&format!("/{top}")],
    );
    r.unwrap();
    let root = s.root();
    let inside = root.join(rerooted(&s.outside()));
    assert!(
        inside.join("pwned").is_file(),
        "the absolute link is re-rooted"
    );
    assert!(root.join(&top).is_file(), "`..` stops at the root");
    assert_eq!(
        fs::read_to_string(root.join("upfile")).unwrap(),
        "replaced, not followed"
    );
    assert!(lstat(&root.join("d")).is_dir());
    assert!(root.join("d/new").is_file());
    assert_eq!(
        fs::read_to_string(root.join("outside/sentinel")).unwrap(),
        "inside"
    );
}

#[test]
fn symlinks_from_a_lower_layer_stay_inside() {
    let (s, r) = hostile(
        |s| {
            let out = s.outside();
            let out = out.to_str().unwrap();
            let mut lower = Layer::new();
            lower
                .symlink("evil", out)
                .symlink("climb", &format!("../../../../..{out}"))
                .symlink("cfg", "/etc");
            let mut upper = Layer::new();
            upper
                .file("evil/pwned", "p")
                .file("climb/pwned2", "p")
                .file("evil/.wh.sentinel", "")
                .file("climb/.wh..wh..opq", "")
                .file("cfg/passwd", "inside");
            vec![lower.tar(), upper.tar()]
        },
        &[],
    );
    r.unwrap();
    let root = s.root();
    let inside = root.join(rerooted(&s.outside()));
    assert_eq!(names(&inside), ["pwned", "pwned2"]);
    assert_eq!(
        fs::read_to_string(root.join("etc/passwd")).unwrap(),
        "inside"
    );
    assert!(lstat(&root.join("cfg")).file_type().is_symlink());
}

#[test]
fn hardlinks_cannot_reach_host_files() {
    let passwd = lstat(Path::new("/etc/passwd"));
    for target in [
        "/etc/passwd",
        "../../../../etc/passwd",
        "../outside/sentinel",
    ] {
        let (_s, r) = hostile(
            |_| {
                let mut l = Layer::new();
                l.hardlink("h", target);
                vec![l.tar()]
            },
            &[],
        );
        match r {
            Err(Error::Entry { layer, entry, msg }) => {
                assert_eq!((layer.as_str(), entry.as_str()), ("test-layer", "h"));
                assert!(msg.contains("does not exist"), "{msg}");
            }
            other => panic!("{target}: {other:?}"),
        }
    }
    // Through a symlink planted earlier, in this layer or a lower one.
    let (s, r) = hostile(
        |s| {
            let out = s.outside();
            let mut lower = Layer::new();
            lower
                .symlink("evil", out.to_str().unwrap())
                .symlink("hostetc", "../../../../etc");
            let mut upper = Layer::new();
            upper.hardlink("h", "evil/sentinel");
            let mut etc = Layer::new();
            etc.file("hostetc/passwd", "inside")
                .hardlink("p", "hostetc/passwd");
            vec![lower.tar(), etc.tar(), upper.tar()]
        },
        &[],
    );
    assert!(matches!(r, Err(Error::Entry { .. })), "{r:?}");
    let p = lstat(&s.root().join("p"));
    assert_ne!(p.ino(), passwd.ino());
    assert_eq!(fs::read_to_string(s.root().join("p")).unwrap(), "inside");
    assert_eq!(lstat(Path::new("/etc/passwd")).nlink(), passwd.nlink());
}

#[test]
fn whiteouts_cannot_delete_outside() {
    let (s, r) = hostile(
        |s| {
            let out = s.outside();
            let mut l = Layer::new();
            l.file("../.wh.outside", "")
                .file("../outside/.wh.sentinel", "")
                .file("/../.wh..wh..opq", "")
                .symlink("evil", out.to_str().unwrap())
                .file("evil/.wh.sentinel", "")
                .file("evil/.wh..wh..opq", "")
                .file(".wh...", "")
                .file("x/.wh..", "");
            vec![l.tar()]
        },
        &[],
    );
    r.unwrap();
    // Only the symlink remains: whiteouts never appear, and those that
    // hide nothing (`.wh..`) make nothing.
    assert_eq!(names(&s.root()), ["evil"]);
}

#[test]
fn refusals_name_the_entry() {
    let s = Scratch::new();
    let mut l = Layer::new();
    l.dir("d").hardlink("link-to-dir", "d");
    match s.apply(&l.tar(), Mode::Flat) {
        Err(Error::Entry { entry, msg, .. }) => {
            assert_eq!(entry, "link-to-dir");
            assert!(msg.contains("directory"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    let mut l = Layer::new();
    l.file("f", "x").file("f/child", "y");
    match s.apply(&l.tar(), Mode::Flat) {
        Err(Error::Entry { entry, msg, .. }) => {
            assert_eq!(entry, "f/child");
            assert!(msg.contains("not a directory"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    // A truncated stream.
    let mut l = Layer::new();
    l.file("big", &"x".repeat(4096));
    let tar = l.tar();
    let e = s.apply(&tar[..512 + 1024], Mode::Flat).unwrap_err();
    assert!(
        e.to_string().contains("big") || matches!(e, Error::Format { .. }),
        "{e}"
    );
}
