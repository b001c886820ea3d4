//! Builds of real Dockerfiles: FROM a busybox image imported into a
//! fresh store (or scratch), RUN steps as real containers through the
//! core library, the resulting images unpacked and read back.

use std::fs;
use std::io::BufRead as _;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use berth_build::{BuildOptions, Network};
use berth_image::rootfs;
use berth_image::store::Image;
use serde_json::{json, Value};

mod common;
use common::Builds;

const BASE: &str = "localhost/busybox:build";

/// The shared set-up, and what these tests read back from images.
struct Fixture(Builds);

impl std::ops::Deref for Fixture {
    type Target = Builds;
    fn deref(&self) -> &Builds {
        &self.0
    }
}

impl Fixture {
    fn new() -> Fixture {
        Fixture(Builds::new("berth-build-", BASE))
    }

    fn file(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.ctx().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        p
    }

    fn opts(&self, dockerfile: &str) -> BuildOptions {
        self.file("Dockerfile", dockerfile);
        BuildOptions {
            context: self.ctx(),
            network: Network::Host,
            ..BuildOptions::default()
        }
    }

    fn config(&self, img: &Image) -> Value {
        serde_json::from_slice(&img.config_json).unwrap()
    }

    /// The image's root file system, unpacked flat.
    fn unpack(&self, img: &Image) -> tempfile::TempDir {
        let d = tempfile::Builder::new()
            .prefix("rootfs-")
            .tempdir_in(self.dir.path())
            .unwrap();
        rootfs::unpack_flat(&self.store, img, d.path()).unwrap();
        d
    }

    /// Every entry name of the image's layer `i`.
    fn layer_entries(&self, img: &Image, i: usize) -> Vec<String> {
        let r = self.store.open_layer(&img.manifest.layers[i]).unwrap();
        let mut a = tar::Archive::new(r);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    /// Nothing of a build is left: no mount under the fixture, no
    /// container state, no step directory in the store.
    fn assert_clean(&self) {
        let base = self.dir.path().display().to_string();
        let mounts: Vec<String> = testbed::host_mounts()
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| p.starts_with(&base))
            .collect();
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
        let run = self.dir.path().join("run");
        let states: Vec<_> = fs::read_dir(&run)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(states.is_empty(), "container state left: {states:?}");
        let tmp: Vec<_> = fs::read_dir(self.store.root().join("tmp"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(tmp.is_empty(), "step dirs left: {tmp:?}");
    }
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn each_metadata_instruction_shapes_the_config() {
    let f = Fixture::new();
    let mut o = f.opts(&format!(
        r#"ARG BASE={BASE}
FROM $BASE
MAINTAINER someone@example.com
ARG VERSION=1.0
ENV APP_HOME=/srv/app VERSION=$VERSION
ENV PATH="/srv/bin:$PATH"
LABEL org.opencontainers.image.version="$VERSION" "multi word"="a b"
EXPOSE 8080 53/udp
VOLUME ["/data", "$APP_HOME/cache"]
WORKDIR $APP_HOME
WORKDIR sub
USER 1000:1000
SHELL ["/bin/sh", "-ec"]
ENTRYPOINT exec server
CMD ["--port", "8080"]
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD wget -q localhost:8080
ONBUILD RUN echo child
"#
    ));
    o.build_args.insert("VERSION".into(), "2.5".into());
    o.tags = vec!["example/meta:1".into()];
    let (b, _) = f.ok(&o);
    let c = f.config(&b.image);
    let cfg = &c["config"];
    assert_eq!(c["author"], "someone@example.com");
    let env: Vec<&str> = cfg["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"APP_HOME=/srv/app"), "{env:?}");
    assert!(env.contains(&"VERSION=2.5"), "{env:?}");
    let path = env.iter().find(|e| e.starts_with("PATH=")).unwrap();
    assert!(path.starts_with("PATH=/srv/bin:/usr/local/sbin"), "{path}");
    assert_eq!(
        cfg["Labels"],
        json!({"org.opencontainers.image.version": "2.5", "multi word": "a b"})
    );
    assert_eq!(cfg["ExposedPorts"], json!({"8080/tcp": {}, "53/udp": {}}));
    assert_eq!(cfg["Volumes"], json!({"/data": {}, "/srv/app/cache": {}}));
    assert_eq!(cfg["WorkingDir"], "/srv/app/sub");
    assert_eq!(cfg["User"], "1000:1000");
    assert_eq!(cfg["Shell"], json!(["/bin/sh", "-ec"]));
    assert_eq!(cfg["Entrypoint"], json!(["/bin/sh", "-ec", "exec server"]));
    assert_eq!(cfg["Cmd"], json!(["--port", "8080"]));
    assert_eq!(cfg["StopSignal"], "SIGQUIT");
    assert_eq!(
        cfg["Healthcheck"],
        json!({"Test": ["CMD-SHELL", "wget -q localhost:8080"], "Interval": 30_000_000_000u64,
               "Timeout": 5_000_000_000u64, "Retries": 3})
    );
    assert_eq!(cfg["OnBuild"], json!(["RUN echo child"]));
    // Each WORKDIR made its directory: a layer each over the base.
    assert_eq!(b.image.manifest.layers.len(), 3);
    let root = f.unpack(&b.image);
    assert!(root.path().join("srv/app/sub").is_dir());
    // History: one entry per instruction after FROM, on top of the base's.
    let h = c["history"].as_array().unwrap();
    let ours: Vec<&Value> = h.iter().filter(|e| e["comment"] == "berth build").collect();
    assert_eq!(ours.len(), 16, "{h:#?}");
    let with_layers = ours.iter().filter(|e| e["empty_layer"] != true).count();
    assert_eq!(with_layers, 2, "only the WORKDIRs made layers: {ours:#?}");
    assert_eq!(
        f.store.image("example/meta:1").unwrap().digest,
        b.image.digest
    );

    // ONBUILD runs in a child image, once, and is not inherited.
    let (child, log) = f.ok(&f.opts("FROM example/meta:1\nENTRYPOINT []\nRUN echo own\n"));
    assert!(log.contains("ONBUILD RUN echo child"), "{log}");
    assert!(log.contains("child\n") && log.contains("own\n"), "{log}");
    assert_eq!(f.config(&child.image)["config"].get("OnBuild"), None);
    f.assert_clean();
}

#[test]
fn run_copy_add_and_workdir_change_the_root_file_system() {
    let f = Fixture::new();
    f.file("app/main.sh", "#!/bin/sh\necho main\n");
    f.file("app/lib/util.txt", "util\n");
    f.file("notes.md", "notes\n");
    f.file("secret.key", "do not ship\n");
    f.file(".dockerignore", "*.key\n");
    fs::set_permissions(
        f.ctx().join("app/main.sh"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    // A tarball for ADD to extract.
    let tgz = f.ctx().join("bundle.tar.gz");
    {
        let gz = flate2::write::GzEncoder::new(
            fs::File::create(&tgz).unwrap(),
            flate2::Compression::default(),
        );
        let mut t = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o600);
        h.set_uid(7);
        h.set_gid(8);
        h.set_cksum();
        t.append_data(&mut h, "extracted/data.bin", &b"data"[..])
            .unwrap();
        t.into_inner().unwrap().finish().unwrap();
    }
    let o = f.opts(&format!(
        r#"FROM {BASE}
RUN echo app:x:1234:1234::/home/app:/bin/sh >> /etc/passwd && echo app:x:1234: >> /etc/group \
 && mkdir /out && echo ran > /out/run.txt
WORKDIR /srv
COPY app/ app/
COPY --chown=app:app --chmod=640 notes.md /srv/docs/
COPY *.md /copied/
ADD bundle.tar.gz /unpacked
ADD notes.md /added.md
COPY <<EOF /etc/motd
hello from a heredoc
EOF
RUN test -x /srv/app/main.sh && /srv/app/main.sh > /out/main.txt && ls /srv/app > /out/ls.txt
WORKDIR /multi
COPY notes.md app/main.sh .
USER app
WORKDIR /home/app/work
RUN touch made-by-app
"#
    ));
    let (b, _) = f.ok(&o);
    let root = f.unpack(&b.image);
    let r = root.path();
    let read = |p: &str| fs::read_to_string(r.join(p)).unwrap();
    assert_eq!(read("out/run.txt"), "ran\n");
    assert_eq!(read("out/main.txt"), "main\n");
    assert_eq!(read("out/ls.txt"), "lib\nmain.sh\n");
    assert_eq!(read("srv/app/lib/util.txt"), "util\n");
    assert_eq!(mode(&r.join("srv/app/main.sh")), 0o755);
    let notes = fs::metadata(r.join("srv/docs/notes.md")).unwrap();
    assert_eq!(
        (notes.uid(), notes.gid(), notes.mode() & 0o7777),
        (1234, 1234, 0o640)
    );
    assert_eq!(read("copied/notes.md"), "notes\n");
    assert!(!r.join("copied/secret.key").exists());
    let data = fs::metadata(r.join("unpacked/extracted/data.bin")).unwrap();
    assert_eq!((data.uid(), data.gid(), data.mode() & 0o777), (7, 8, 0o600));
    assert_eq!(read("added.md"), "notes\n");
    assert_eq!(read("etc/motd"), "hello from a heredoc\n");
    // `.` is a directory destination, for several sources too.
    assert_eq!(read("multi/notes.md"), "notes\n");
    assert_eq!(mode(&r.join("multi/main.sh")), 0o755);
    // WORKDIR made its directories for the USER, who could then write there.
    let work = fs::metadata(r.join("home/app/work")).unwrap();
    assert_eq!((work.uid(), work.gid()), (1234, 1234));
    let made = fs::metadata(r.join("home/app/work/made-by-app")).unwrap();
    assert_eq!(made.uid(), 1234);
    // The mount points the runtime made are not in any layer.
    for i in 1..b.image.manifest.layers.len() {
        let names = f.layer_entries(&b.image, i);
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with("proc") || n.starts_with("sys/")),
            "layer {i}: {names:?}"
        );
    }
    // A file the build did not exclude made it; an ignored one cannot be
    // copied by name either.
    let (r, _) = f.build(&f.opts(&format!("FROM {BASE}\nCOPY secret.key /\n")));
    let e = r.unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("secret.key"), "{e}");
    f.assert_clean();
}

#[test]
fn a_deletion_in_a_later_run_is_a_whiteout_and_a_replaced_dir_is_opaque() {
    let f = Fixture::new();
    let o = f.opts(&format!(
        "FROM {BASE}\nRUN mkdir -p /d/keep && touch /d/keep/a /d/b /gone\n\
         RUN rm /gone /bin/vi && rm -rf /d && mkdir /d && touch /d/new\n"
    ));
    let (b, _) = f.ok(&o);
    let n = b.image.manifest.layers.len();
    assert_eq!(n, 3);
    let names = f.layer_entries(&b.image, 2);
    for want in [".wh.gone", "bin/.wh.vi", "d/.wh..wh..opq", "d/new"] {
        assert!(
            names.iter().any(|x| x.trim_start_matches("./") == want),
            "{want} missing from {names:?}"
        );
    }
    let root = f.unpack(&b.image);
    assert!(!root.path().join("gone").exists());
    assert!(!root.path().join("bin/vi").exists());
    assert!(!root.path().join("d/keep").exists());
    assert!(root.path().join("d/new").exists());
    f.assert_clean();
}

#[test]
fn multi_stage_copy_from_and_target() {
    let f = Fixture::new();
    let df = format!(
        r#"FROM {BASE} AS builder
RUN mkdir /build && echo artifact > /build/out.txt && echo junk > /build/tmp.o
FROM {BASE} AS unused
RUN exit 1
FROM scratch
COPY --from=builder /build/out.txt /out.txt
COPY --from=0 /bin/busybox /bin/sh
CMD ["/bin/sh"]
"#
    );
    let (b, log) = f.ok(&f.opts(&df));
    // The unused stage (whose RUN fails) was never built.
    assert!(!log.contains("exit 1"), "{log}");
    assert_eq!(b.image.manifest.layers.len(), 2, "scratch plus two COPYs");
    let root = f.unpack(&b.image);
    assert_eq!(
        fs::read_to_string(root.path().join("out.txt")).unwrap(),
        "artifact\n"
    );
    assert!(root.path().join("bin/sh").is_file());
    assert!(!root.path().join("build").exists());
    // FROM scratch still gets a PATH, as BuildKit gives it.
    let env = &f.config(&b.image)["config"]["Env"];
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().starts_with("PATH=/usr/local/sbin:")),
        "{env}"
    );

    let mut o = f.opts(&df);
    o.target = Some("builder".into());
    let (t, _) = f.ok(&o);
    assert_eq!(t.image.manifest.layers.len(), 2);
    let root = f.unpack(&t.image);
    assert!(root.path().join("build/tmp.o").is_file());
    o.target = Some("nope".into());
    let e = f.build(&o).0.unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("builder"), "{e}");
    f.assert_clean();
}

/// Counts connections: a RUN step that reaches it proves it ran.
struct Counter {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Counter {
    fn start() -> Counter {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { return };
                // One line, then the connection closes, so `nc` ends.
                let mut line = String::new();
                let _ = std::io::BufReader::new(c).read_line(&mut line);
                h.fetch_add(1, Ordering::SeqCst);
            }
        });
        Counter { port, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

#[test]
fn the_cache_reruns_nothing_unchanged_and_everything_after_a_changed_file() {
    let f = Fixture::new();
    let c = Counter::start();
    f.file("a.txt", "one\n");
    f.file("b.txt", "bee\n");
    let df = format!(
        "FROM {BASE}\nRUN echo first | nc 127.0.0.1 {p}\nCOPY a.txt /a.txt\n\
         RUN cat /a.txt | nc 127.0.0.1 {p}\nCOPY b.txt /b.txt\n",
        p = c.port
    );
    let o = f.opts(&df);
    let (first, _) = f.ok(&o);
    assert_eq!(c.hits(), 2);
    assert_eq!((first.executed, first.cached), (4, 0));

    let (again, log) = f.ok(&o);
    assert_eq!(c.hits(), 2, "an unchanged rebuild ran a step:\n{log}");
    assert_eq!((again.executed, again.cached), (0, 4));
    assert_eq!(again.image.digest, first.image.digest);
    assert_eq!(log.matches("CACHED").count(), 4, "{log}");

    // Only the mtime changes: still cached.
    let now = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    fs::File::options()
        .write(true)
        .open(f.ctx().join("a.txt"))
        .unwrap()
        .set_modified(now)
        .unwrap();
    assert_eq!(f.ok(&o).0.cached, 4);

    // a.txt changes: the first RUN stays cached, the rest rebuild.
    f.file("a.txt", "two\n");
    let (changed, _) = f.ok(&o);
    assert_eq!(c.hits(), 3);
    assert_eq!((changed.executed, changed.cached), (3, 1));
    let root = f.unpack(&changed.image);
    assert_eq!(
        fs::read_to_string(root.path().join("a.txt")).unwrap(),
        "two\n"
    );

    // A build arg the RUN sees is part of its key.
    let df2 = format!(
        "FROM {BASE}\nARG N=1\nRUN echo $N | nc 127.0.0.1 {}\n",
        c.port
    );
    let mut o2 = f.opts(&df2);
    f.ok(&o2);
    f.ok(&o2);
    assert_eq!(c.hits(), 4);
    o2.build_args.insert("N".into(), "2".into());
    f.ok(&o2);
    assert_eq!(c.hits(), 5);

    // --no-cache runs everything.
    let mut o = f.opts(&df);
    o.no_cache = true;
    let (fresh, _) = f.ok(&o);
    assert_eq!(c.hits(), 7);
    assert_eq!(fresh.cached, 0);
    f.assert_clean();
}

#[test]
fn source_date_epoch_makes_builds_reproducible() {
    let f = Fixture::new();
    f.file("f.txt", "content\n");
    let mut o = f.opts(&format!(
        "FROM {BASE}\nRUN mkdir /x && echo $RANDOM-ish > /x/fixed && echo fixed > /x/fixed\n\
         COPY f.txt /x/\nENV A=b\n"
    ));
    o.no_cache = true;
    o.source_date_epoch = Some(1_700_000_000);
    let (a, _) = f.ok(&o);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (b, _) = f.ok(&o);
    assert_eq!(a.image.digest, b.image.digest);
    // Layers cached by a build without the epoch are not reused for one
    // with it: their mtimes were not clamped.
    let mut plain = o.clone();
    plain.source_date_epoch = None;
    plain.no_cache = false;
    f.ok(&plain);
    let mut cached = o.clone();
    cached.no_cache = false;
    assert_eq!(f.ok(&cached).0.image.digest, a.image.digest);
    let c = f.config(&a.image);
    assert_eq!(c["created"], "2023-11-14T22:13:20Z");
    o.source_date_epoch = None;
    let (c2, _) = f.ok(&o);
    assert_ne!(c2.image.digest, a.image.digest);
    f.assert_clean();
}

#[test]
fn failures_name_the_line_and_leave_nothing_behind() {
    let f = Fixture::new();
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            format!("FROM {BASE}\nRUN true\nFROBNICATE x\n"),
            vec!["line 3", "FROBNICATE"],
        ),
        (
            format!("FROM {BASE}\nRUN echo before\nRUN echo out; exit 3\n"),
            vec!["line 3", "status 3"],
        ),
        (
            format!("FROM {BASE}\n\nCOPY missing.txt /\n"),
            vec!["line 3", "missing.txt"],
        ),
        (
            format!("FROM {BASE}\nCOPY a b /dir\n"),
            vec!["line 2", "end with a /"],
        ),
        (
            format!("FROM {BASE}\nADD https://example.com/x.tgz /\n"),
            vec!["line 2", "https://example.com/x.tgz", "network"],
        ),
        (
            "FROM 127.0.0.1:1/no/such:image\n".to_string(),
            vec!["line 1", "127.0.0.1:1/no/such:image", "berth image pull"],
        ),
        (
            format!("FROM {BASE}\nEXPOSE http\n"),
            vec!["line 2", "http"],
        ),
        (
            format!("FROM {BASE}\nCOPY --chown=nobody:nogroup-x Dockerfile /\n"),
            vec!["line 2", "nogroup-x"],
        ),
        (
            format!("FROM --platform=linux/s390x {BASE}\n"),
            vec!["line 1", "linux/s390x"],
        ),
        (
            format!("FROM {BASE} AS a\nCOPY --from=b /bin/sh /x\nFROM a AS b\n"),
            vec!["line 2", "--from=b", "earlier"],
        ),
        (
            format!("FROM {BASE}\nCOPY <</tmp/berth-build-escape-probe /x\nhi\n/tmp/berth-build-escape-probe\n"),
            vec!["line 2", "here-document"],
        ),
        (
            "# only a comment\n".to_string(),
            vec!["line 1", "no instructions"],
        ),
    ];
    for (df, want) in cases {
        let (r, log) = f.build(&f.opts(&df));
        let e = match r {
            Ok(_) => panic!("{df:?} built\n{log}"),
            Err(e) => e.to_string(),
        };
        for w in want {
            assert!(e.contains(w), "{df:?}: {w:?} not in {e:?}\n{log}");
        }
        f.assert_clean();
    }
    assert!(!Path::new("/tmp/berth-build-escape-probe").exists());
    // A Dockerfile cannot take the host network the build was denied.
    let mut o = f.opts(&format!("FROM {BASE}\nRUN --network=host true\n"));
    o.network = Network::None;
    let e = f.build(&o).0.unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("--network none"), "{e}");
    // The failing RUN's output was streamed before the error.
    let (_, log) = f.build(&f.opts(&format!("FROM {BASE}\nRUN echo out; exit 3\n")));
    assert!(log.contains("out\n") && log.contains("ERROR"), "{log}");
    f.assert_clean();
}

#[test]
fn a_cancelled_build_stops_its_run_step_and_cleans_up() {
    let f = Fixture::new();
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut o = f.opts(&format!(
        "FROM {BASE}\nRUN echo started; sleep 60\nRUN echo never\n"
    ));
    o.cancel = Some(cancel.clone());
    let root = f.dir.path().join("run");
    let stopper = std::thread::spawn(move || {
        let rt = berth::Runtime::new(&root);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let running: Vec<_> = rt
                .list()
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c.id().starts_with(&berth_build::container_prefix()))
                .collect();
            if let Some(c) = running.first() {
                if c.status() == berth::Status::Running {
                    cancel.store(true, Ordering::SeqCst);
                    c.kill(libc::SIGKILL, true).unwrap();
                    return true;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    });
    let t = std::time::Instant::now();
    let (r, log) = f.build(&o);
    assert!(
        stopper.join().unwrap(),
        "the RUN container never ran:\n{log}"
    );
    let e = r.unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("cancelled"), "{e}");
    assert!(t.elapsed() < std::time::Duration::from_secs(30), "{log}");
    assert!(!log.contains("never"), "{log}");
    f.assert_clean();
}
