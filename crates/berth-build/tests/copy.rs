//! COPY and ADD against real directories: Docker's placement rules,
//! metadata, links, archives, checksums, and confinement to hostile roots.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_build::context::Context;
use berth_build::copy::{checksum, copy, CopyError, CopyOptions, From};

struct Fx {
    ctx: tempfile::TempDir,
    root: tempfile::TempDir,
}

impl Fx {
    fn new() -> Fx {
        Fx {
            ctx: tempfile::tempdir().unwrap(),
            root: tempfile::tempdir().unwrap(),
        }
    }
    fn c(&self, rel: &str) -> PathBuf {
        self.ctx.path().join(rel)
    }
    fn r(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }
    fn file(&self, rel: &str, content: &str) {
        let p = self.c(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
    fn context(&self) -> Context {
        Context::open(self.ctx.path(), None).unwrap()
    }
    fn copy(&self, sources: &[&str], dest: &str, o: &CopyOptions) -> Result<(), CopyError> {
        let ctx = self.context();
        let s: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        copy(&From::Context(&ctx), &s, dest, self.root.path(), o).map(drop)
    }
    fn sum(&self, sources: &[&str]) -> String {
        let ctx = self.context();
        let s: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
        checksum(&From::Context(&ctx), &s).unwrap()
    }
}

fn read(p: impl AsRef<Path>) -> String {
    fs::read_to_string(p).unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn plain() -> CopyOptions {
    CopyOptions::default()
}

/// A host path outside every temp dir used, removed on drop.
struct HostPath(PathBuf);

impl HostPath {
    fn new(tag: &str) -> HostPath {
        let p = PathBuf::from(format!(
            "/tmp/berth-copy-escape-{tag}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&p);
        let _ = fs::remove_file(&p);
        HostPath(p)
    }
}

impl Drop for HostPath {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
        let _ = fs::remove_file(&self.0);
    }
}

#[test]
fn directory_source_copies_its_contents() {
    let fx = Fx::new();
    fx.file("dir/a", "A");
    fx.file("dir/sub/b", "B");
    fx.copy(&["dir"], "/dst", &plain()).unwrap();
    assert_eq!(names(&fx.r("dst")), ["a", "sub"]);
    assert_eq!(read(fx.r("dst/sub/b")), "B");
    // The context root itself.
    fx.copy(&["."], "/all/", &plain()).unwrap();
    assert_eq!(names(&fx.r("all")), ["dir"]);
    assert_eq!(read(fx.r("all/dir/a")), "A");
}

#[test]
fn missing_source_is_an_error_naming_it() {
    let fx = Fx::new();
    fx.file("a", "A");
    let e = fx.copy(&["a", "nope"], "/d/", &plain()).unwrap_err();
    assert!(
        matches!(&e, CopyError::NotFound { path } if path == "nope"),
        "{e}"
    );
    assert!(e.to_string().contains("nope"));
    let e = fx.copy(&["*.none"], "/d/", &plain()).unwrap_err();
    assert!(
        matches!(&e, CopyError::NotFound { path } if path == "*.none"),
        "{e}"
    );
    let ctx = fx.context();
    let e = checksum(&From::Context(&ctx), &["nope".to_string()]).unwrap_err();
    assert!(matches!(e, CopyError::NotFound { .. }));
}

#[test]
fn dockerignore_hides_sources_with_exceptions() {
    let fx = Fx::new();
    fs::write(
        fx.c(".dockerignore"),
        "*.log\nsecret\nvendor\n!vendor/keep\n",
    )
    .unwrap();
    fx.file("a.log", "log");
    fx.file("secret", "s");
    fx.file("main.rs", "m");
    fx.file("vendor/keep", "k");
    fx.file("vendor/other", "o");
    fx.file("sub/b.log", "nested logs are not matched by *.log");
    fx.copy(&["."], "/app/", &plain()).unwrap();
    assert_eq!(
        names(&fx.r("app")),
        [".dockerignore", "main.rs", "sub", "vendor"]
    );
    assert_eq!(names(&fx.r("app/vendor")), ["keep"]);
    assert!(fx.r("app/sub/b.log").exists());
    for hidden in ["secret", "*.log", "vendor/other"] {
        let e = fx.copy(&[hidden], "/x/", &plain()).unwrap_err();
        assert!(matches!(e, CopyError::NotFound { .. }), "{hidden}: {e}");
    }
    // An excluded directory shows only what is re-included.
    fx.copy(&["vendor"], "/v", &plain()).unwrap();
    assert_eq!(names(&fx.r("v")), ["keep"]);
    // Excluded files do not count in the checksum.
    let before = fx.sum(&["."]);
    fs::write(fx.c("secret"), "changed").unwrap();
    fs::write(fx.c("vendor/other"), "changed").unwrap();
    assert_eq!(fx.sum(&["."]), before);
    fs::write(fx.c("vendor/keep"), "changed").unwrap();
    assert_ne!(fx.sum(&["."]), before);
}

#[test]
fn dot_dot_cannot_leave_the_context() {
    let fx = Fx::new();
    let e = fx
        .copy(&["../../../../etc/passwd"], "/x", &plain())
        .unwrap_err();
    assert!(matches!(e, CopyError::NotFound { .. }), "{e}");
    fx.file("etc/passwd", "context's own");
    fx.copy(&["../../../../etc/passwd"], "/x", &plain())
        .unwrap();
    assert_eq!(read(fx.r("x")), "context's own");
    // An absolute symlink on the way resolves inside the context too.
    symlink("/etc", fx.c("hostetc")).unwrap();
    fx.copy(&["hostetc/passwd"], "/y", &plain()).unwrap();
    assert_eq!(read(fx.r("y")), "context's own");
}

#[test]
fn destination_rules() {
    let fx = Fx::new();
    fx.file("f", "F");
    fx.file("g", "G");
    fx.file("h1", "1");
    fx.file("h2", "2");
    // A single file to a new name: that file.
    fx.copy(&["f"], "/new/name", &plain()).unwrap();
    assert_eq!(read(fx.r("new/name")), "F");
    // A trailing slash: a directory.
    fx.copy(&["f"], "/d/", &plain()).unwrap();
    assert_eq!(read(fx.r("d/f")), "F");
    // An existing directory without the slash: into it.
    fs::create_dir(fx.r("existing")).unwrap();
    fx.copy(&["f"], "/existing", &plain()).unwrap();
    assert_eq!(read(fx.r("existing/f")), "F");
    // An existing file is replaced.
    fx.copy(&["g"], "/new/name", &plain()).unwrap();
    assert_eq!(read(fx.r("new/name")), "G");
    // Several sources need a directory ending in '/'.
    let e = fx.copy(&["f", "g"], "/multi", &plain()).unwrap_err();
    assert!(matches!(e, CopyError::NotADirectory { .. }), "{e}");
    assert!(e
        .to_string()
        .contains("must be a directory and end with a /"));
    assert!(!fx.r("multi").exists());
    fx.copy(&["f", "g"], "/multi/", &plain()).unwrap();
    assert_eq!(names(&fx.r("multi")), ["f", "g"]);
    // A glob matching several: the same.
    let e = fx.copy(&["h?"], "/globbed", &plain()).unwrap_err();
    assert!(matches!(e, CopyError::NotADirectory { .. }), "{e}");
    fx.copy(&["h[0-9]"], "/globbed/", &plain()).unwrap();
    assert_eq!(names(&fx.r("globbed")), ["h1", "h2"]);
    fx.copy(&["h*"], "/existing", &plain()).unwrap();
    assert_eq!(names(&fx.r("existing")), ["f", "h1", "h2"]);
    // A glob matching one file to a new name: that file.
    fx.copy(&["h[1]"], "/one", &plain()).unwrap();
    assert_eq!(read(fx.r("one")), "1");
}

#[test]
fn globs_match_per_component_and_dirs_give_contents() {
    let fx = Fx::new();
    fx.file("src/a.rs", "a");
    fx.file("src/b.txt", "b");
    fx.file("lib/c.rs", "c");
    fx.file("src/deep/d.rs", "d");
    fx.copy(&["*/*.rs"], "/out/", &plain()).unwrap();
    assert_eq!(names(&fx.r("out")), ["a.rs", "c.rs"]);
    fx.copy(&["sr?"], "/s/", &plain()).unwrap();
    assert_eq!(names(&fx.r("s")), ["a.rs", "b.txt", "deep"]);
    let e = fx.copy(&["[a-"], "/x/", &plain()).unwrap_err();
    assert!(matches!(e, CopyError::BadPattern { .. }), "{e}");
}

#[test]
fn parents_created_and_existing_kept() {
    let fx = Fx::new();
    fx.file("f", "F");
    fs::create_dir(fx.r("keep")).unwrap();
    fs::set_permissions(fx.r("keep"), fs::Permissions::from_mode(0o711)).unwrap();
    std::os::unix::fs::chown(fx.r("keep"), Some(7), Some(8)).unwrap();
    fx.copy(&["f"], "/keep/a/b/f", &plain()).unwrap();
    let m = fs::metadata(fx.r("keep")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o711, 7, 8));
    for d in ["keep/a", "keep/a/b"] {
        let m = fs::metadata(fx.r(d)).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o755, 0, 0), "{d}");
    }
    let o = CopyOptions {
        chown: Some((1000, 1001)),
        ..plain()
    };
    fx.copy(&["f"], "/owned/sub/", &o).unwrap();
    for p in ["owned", "owned/sub", "owned/sub/f"] {
        let m = fs::symlink_metadata(fx.r(p)).unwrap();
        assert_eq!((m.uid(), m.gid()), (1000, 1001), "{p}");
    }
}

#[test]
fn metadata_modes_times_owners() {
    let fx = Fx::new();
    fx.file("d/x", "xx");
    fx.file("d/s/y", "y");
    // chown clears setuid, so it comes first.
    std::os::unix::fs::chown(fx.c("d/x"), Some(1234), Some(5678)).unwrap();
    fs::set_permissions(fx.c("d/x"), fs::Permissions::from_mode(0o4751)).unwrap();
    fs::set_permissions(fx.c("d/s"), fs::Permissions::from_mode(0o701)).unwrap();
    let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_600_000_000, 123_456_789);
    fs::File::options()
        .write(true)
        .open(fx.c("d/x"))
        .unwrap()
        .set_modified(t)
        .unwrap();
    let dir_t = std::time::UNIX_EPOCH + std::time::Duration::new(1_500_000_000, 987_654_321);
    fs::File::open(fx.c("d/s"))
        .unwrap()
        .set_modified(dir_t)
        .unwrap();
    fx.copy(&["d"], "/p", &plain()).unwrap();
    let m = fs::metadata(fx.r("p/x")).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o4751, 0, 0));
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_600_000_000, 123_456_789));
    let m = fs::metadata(fx.r("p/s")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o701);
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_500_000_000, 987_654_321));

    let o = CopyOptions {
        chown: Some((42, 43)),
        chmod: Some(0o640),
        add: false,
    };
    fx.copy(&["d"], "/q", &o).unwrap();
    for p in ["q/x", "q/s", "q/s/y"] {
        let m = fs::metadata(fx.r(p)).unwrap();
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid()),
            (0o640, 42, 43),
            "{p}"
        );
    }
}

#[test]
fn symlinks_hardlinks_fifos_sockets() {
    let fx = Fx::new();
    fx.file("t/file", "content");
    symlink("file", fx.c("t/rel")).unwrap();
    // Pointing outside the context: copied as a link, never followed.
    symlink("/etc/passwd", fx.c("t/abs")).unwrap();
    symlink("../../../../../etc/shadow", fx.c("t/up")).unwrap();
    fs::hard_link(fx.c("t/file"), fx.c("t/hard")).unwrap();
    nix::unistd::mkfifo(
        &fx.c("t/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(fx.c("t/sock")).unwrap();
    fx.copy(&["t"], "/o", &plain()).unwrap();
    assert_eq!(
        names(&fx.r("o")),
        ["abs", "fifo", "file", "hard", "rel", "up"]
    );
    assert_eq!(
        fs::read_link(fx.r("o/abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::read_link(fx.r("o/up")).unwrap(),
        Path::new("../../../../../etc/shadow")
    );
    assert_eq!(fs::read_link(fx.r("o/rel")).unwrap(), Path::new("file"));
    let a = fs::metadata(fx.r("o/file")).unwrap();
    let b = fs::metadata(fx.r("o/hard")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
    let f = fs::symlink_metadata(fx.r("o/fifo")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&f.file_type()));
    assert_eq!(f.mode() & 0o7777, 0o640);
    // A top-level source that is a symlink is copied as the symlink.
    fx.copy(&["t/abs"], "/top", &plain()).unwrap();
    assert_eq!(
        fs::read_link(fx.r("top")).unwrap(),
        Path::new("/etc/passwd")
    );
}

#[test]
fn hostile_root_symlinks_stay_inside() {
    let fx = Fx::new();
    fx.file("f", "payload");
    let tag = std::process::id();
    // app -> /etc: the write lands in root/etc.
    fs::create_dir(fx.r("etc")).unwrap();
    symlink("/etc", fx.r("app")).unwrap();
    let name = format!("berth-copy-test-{tag}");
    fx.copy(&["f"], &format!("/app/{name}"), &plain()).unwrap();
    assert_eq!(read(fx.r(&format!("etc/{name}"))), "payload");
    assert!(!Path::new("/etc").join(&name).exists());

    // up -> ../../../../tmp/<x>, missing even inside the root: made there.
    let host = HostPath::new("up");
    let rel_target = format!("../../../../..{}", host.0.display());
    symlink(&rel_target, fx.r("up")).unwrap();
    fx.copy(&["f"], "/up/x", &plain()).unwrap();
    let inside = fx.r(host.0.strip_prefix("/").unwrap().to_str().unwrap());
    assert_eq!(read(inside.join("x")), "payload");
    assert!(!host.0.exists(), "wrote to the host's {}", host.0.display());

    // The final name a symlink to a host file: replaced, not written through.
    let victim = HostPath::new("victim");
    fs::write(&victim.0, "untouched").unwrap();
    symlink(&victim.0, fx.r("last")).unwrap();
    fx.copy(&["f"], "/last", &plain()).unwrap();
    assert_eq!(read(&victim.0), "untouched");
    assert!(fs::symlink_metadata(fx.r("last")).unwrap().is_file());

    // A directory tree merged over a symlinked subdirectory.
    let outside = HostPath::new("outside");
    fs::create_dir(&outside.0).unwrap();
    fs::create_dir(fx.r("srv")).unwrap();
    symlink(&outside.0, fx.r("srv/sub")).unwrap();
    fx.file("tree/sub/g", "g");
    fx.copy(&["tree"], "/srv", &plain()).unwrap();
    assert_eq!(read(fx.r("srv/sub/g")), "g");
    assert!(names(&outside.0).is_empty());
}

#[test]
fn from_root_resolves_inside_it() {
    let fx = Fx::new();
    let other = tempfile::tempdir().unwrap();
    fs::create_dir_all(other.path().join("etc")).unwrap();
    fs::write(other.path().join("etc/hostname"), "stage").unwrap();
    symlink("../../../../../../etc", other.path().join("lnk")).unwrap();
    symlink("/etc", other.path().join("abs")).unwrap();
    // Ignore files mean nothing in another stage's root.
    fs::write(other.path().join(".dockerignore"), "etc\n").unwrap();
    let from = From::Root(other.path());
    for src in [
        "lnk/hostname",
        "abs/hostname",
        "/etc/hostname",
        "../etc/hostname",
    ] {
        let out = format!("/got-{}", src.replace('/', "_"));
        copy(&from, &[src.to_string()], &out, fx.root.path(), &plain()).unwrap();
        assert_eq!(read(fx.r(out.trim_start_matches('/'))), "stage", "{src}");
    }
    // The host's /etc/passwd is not there.
    let e = copy(
        &from,
        &["lnk/passwd".to_string()],
        "/x",
        fx.root.path(),
        &plain(),
    )
    .unwrap_err();
    assert!(matches!(e, CopyError::NotFound { .. }), "{e}");
}

fn tar_bytes(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data, uid) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o640);
        h.set_uid(u64::from(*uid));
        h.set_gid(u64::from(*uid));
        h.set_mtime(1_234_567_890);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn add_extracts_archives_and_copies_other_files() {
    use std::io::Write;
    let fx = Fx::new();
    let raw = tar_bytes(&[("dir/a", b"A", 1234), ("b", b"BB", 1234)]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    fs::write(fx.c("x.tar.gz"), gz.finish().unwrap()).unwrap();
    fs::write(fx.c("x.tar"), &raw).unwrap();
    fs::write(fx.c("x.tzst"), zstd::encode_all(&raw[..], 3).unwrap()).unwrap();
    fx.file("plain.txt", "not an archive");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"just text").unwrap();
    fs::write(fx.c("text.gz"), gz.finish().unwrap()).unwrap();

    let add = CopyOptions {
        add: true,
        ..plain()
    };
    for (src, dest) in [("x.tar.gz", "gz"), ("x.tar", "tar"), ("x.tzst", "zst")] {
        fx.copy(&[src], &format!("/{dest}"), &add).unwrap();
        assert_eq!(read(fx.r(&format!("{dest}/dir/a"))), "A", "{src}");
        let m = fs::metadata(fx.r(&format!("{dest}/b"))).unwrap();
        assert_eq!(
            (m.uid(), m.mode() & 0o7777, m.mtime()),
            (1234, 0o640, 1_234_567_890)
        );
    }
    let chown = CopyOptions {
        add: true,
        chown: Some((5, 6)),
        ..plain()
    };
    fx.copy(&["x.tar.gz"], "/owned/", &chown).unwrap();
    assert_eq!(fs::metadata(fx.r("owned/b")).unwrap().uid(), 5);
    // Not archives: copied as they are.
    fx.copy(&["plain.txt", "text.gz"], "/files/", &add).unwrap();
    assert_eq!(read(fx.r("files/plain.txt")), "not an archive");
    assert!(fx.r("files/text.gz").is_file());
    // COPY never extracts.
    fx.copy(&["x.tar.gz"], "/copied/", &plain()).unwrap();
    assert!(fx.r("copied/x.tar.gz").is_file());
}

#[test]
fn add_refuses_urls_and_unsupported_compression() {
    let fx = Fx::new();
    let add = CopyOptions {
        add: true,
        ..plain()
    };
    let e = fx
        .copy(&["https://example.com/x.tgz"], "/x/", &add)
        .unwrap_err();
    assert!(matches!(e, CopyError::Unsupported(_)));
    assert!(
        e.to_string()
            .contains("ADD https://example.com/x.tgz: remote sources need network access"),
        "{e}"
    );
    let e = fx
        .copy(&["git@github.com:a/b.git"], "/x/", &add)
        .unwrap_err();
    assert!(matches!(e, CopyError::Unsupported(_)), "{e}");
    fs::write(fx.c("a.tar.bz2"), b"BZh91AY&SY....").unwrap();
    fs::write(fx.c("a.tar.xz"), b"\xfd7zXZ\0....").unwrap();
    for f in ["a.tar.bz2", "a.tar.xz"] {
        let e = fx.copy(&[f], "/x/", &add).unwrap_err();
        assert!(matches!(e, CopyError::Unsupported(_)), "{e}");
        assert!(e.to_string().contains(f), "{e}");
    }
}

#[test]
fn checksum_follows_content_and_mode_not_mtime() {
    let fx = Fx::new();
    fx.file("d/a", "one");
    fx.file("d/b", "two");
    let s0 = fx.sum(&["d"]);
    assert_eq!(s0.len(), 64);
    assert_eq!(fx.sum(&["d"]), s0);
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    fs::File::options()
        .write(true)
        .open(fx.c("d/a"))
        .unwrap()
        .set_modified(t)
        .unwrap();
    std::os::unix::fs::chown(fx.c("d/a"), Some(99), Some(99)).unwrap();
    assert_eq!(fx.sum(&["d"]), s0, "mtime and owner do not count");
    fs::write(fx.c("d/a"), "One").unwrap();
    let s1 = fx.sum(&["d"]);
    assert_ne!(s1, s0, "content counts");
    fs::set_permissions(fx.c("d/b"), fs::Permissions::from_mode(0o600)).unwrap();
    let s2 = fx.sum(&["d"]);
    assert_ne!(s2, s1, "mode counts");
    fs::rename(fx.c("d/b"), fx.c("d/c")).unwrap();
    assert_ne!(fx.sum(&["d"]), s2, "names count");
    symlink("a", fx.c("d/l")).unwrap();
    let s3 = fx.sum(&["d"]);
    fs::remove_file(fx.c("d/l")).unwrap();
    symlink("c", fx.c("d/l")).unwrap();
    assert_ne!(fx.sum(&["d"]), s3, "symlink targets count");
}
