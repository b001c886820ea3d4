//! `berth build` end to end: the README's demo image (examples/demo,
//! FROM scratch with busybox in the context) built, rebuilt from the
//! cache, written out as an OCI layout and a docker archive, and run with
//! `berth run-image`; bad input fails with the line or flag named.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

struct Builds {
    t: Berth,
    store: PathBuf,
    ctx: PathBuf,
}

impl Builds {
    /// A context holding the demo Dockerfile and a static busybox.
    fn demo() -> Builds {
        let t = berth();
        let store = t.dir().join("store");
        let ctx = t.dir().join("ctx");
        fs::create_dir_all(&ctx).unwrap();
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo/Dockerfile");
        fs::copy(&demo, ctx.join("Dockerfile")).unwrap();
        fs::copy(testbed::ensure_busybox(), ctx.join("busybox")).unwrap();
        Builds { t, store, ctx }
    }

    fn build(&self, args: &[&str]) -> Output {
        let s = self.store.display().to_string();
        let c = self.ctx.display().to_string();
        let mut v = vec!["build", "--image-root", &s];
        v.extend_from_slice(args);
        v.push(&c);
        self.t.cmd(&v)
    }

    fn image(&self, store: &Path, args: &[&str]) -> Output {
        let s = store.display().to_string();
        let mut v = vec!["image", "--root", &s];
        v.extend_from_slice(args);
        self.t.cmd(&v)
    }

    fn run_image(&self, args: &[&str]) -> Output {
        let s = self.store.display().to_string();
        let mut v = vec!["run-image", "--image-root", &s, "--rm"];
        v.extend_from_slice(args);
        self.t.cmd(&v)
    }

    fn assert_clean(&self) {
        let mounts = testbed::mounts_under(self.t.dir());
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
        let states: Vec<_> = fs::read_dir(self.t.root())
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(states.is_empty(), "runtime state left: {states:?}");
    }
}

#[test]
fn the_readme_demo_builds_runs_and_rebuilds_from_the_cache() {
    let b = Builds::demo();
    let o = b.build(&["-t", "berth-demo:latest"]);
    o.ok();
    let digest = o.out().to_string();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{o}");
    // docker's plain progress: numbered steps, stage names, timings.
    o.stderr_has(&[
        "#1 [internal] load build definition from",
        "[base 1/4] FROM scratch",
        "[base 2/4] COPY busybox /bin/busybox",
        "[stage-1 5/6] COPY --chmod=755 <<'EOF' /srv/hello.sh",
        " DONE ",
        "naming to berth-demo:latest",
        "5 steps run, 0 cached",
    ]);
    let run = b.run_image(&["berth-demo:latest"]);
    run.ok();
    assert_eq!(
        run.lines(),
        [
            "hello from an image built by berth",
            "running as root in /srv on berth"
        ],
        "{run}"
    );

    // Unchanged: nothing runs, the same image comes out.
    let again = b.build(&["-t", "berth-demo:latest"]);
    again.ok().stderr_has(&["CACHED", "0 steps run, 5 cached"]);
    assert_eq!(again.out(), digest);
    assert_eq!(again.stderr.matches("CACHED").count(), 5, "{again}");

    // A build arg only the second stage uses: the base stays cached.
    let bye = b.build(&["-t", "berth-demo:bye", "--build-arg", "GREETING=goodbye"]);
    bye.ok().stderr_has(&["2 steps run, 3 cached"]);
    let run = b.run_image(&["berth-demo:bye"]);
    assert_eq!(run.ok().lines()[0], "goodbye", "{run}");

    // -q prints the digest alone; --no-cache runs every step again.
    let q = b.build(&["-q", "--no-cache"]);
    q.ok();
    assert!(q.stderr.is_empty(), "{q}");
    assert!(q.out().starts_with("sha256:"), "{q}");

    // SOURCE_DATE_EPOCH as a build arg: two builds from scratch agree.
    let repro = [
        "-q",
        "--no-cache",
        "--build-arg",
        "SOURCE_DATE_EPOCH=1700000000",
    ];
    let one = b.build(&repro);
    let two = b.build(&repro);
    assert_eq!(one.ok().out(), two.ok().out());
    assert_ne!(one.out(), q.out());
    b.assert_clean();
}

#[test]
fn output_writes_layouts_and_archives_that_import_to_the_same_image() {
    let b = Builds::demo();
    let layout = b.t.dir().join("out-oci");
    let tar = b.t.dir().join("out.tar");
    let o = b.build(&[
        "-t",
        "demo/out:1",
        "--output",
        &format!("type=oci,dest={}", layout.display()),
    ]);
    o.ok();
    let digest = o.out().to_string();
    assert!(layout.join("index.json").is_file());
    b.build(&[
        "-t",
        "demo/out:1",
        "--output",
        &format!("type=docker-archive,dest={}", tar.display()),
    ])
    .ok();
    for (i, source) in [
        format!("oci:{}:1", layout.display()),
        format!("docker-archive:{}", tar.display()),
    ]
    .iter()
    .enumerate()
    {
        let other = b.t.dir().join(format!("store-{i}"));
        let imp = b.image(&other, &["import", source]);
        imp.ok();
        let config = |store: &Path, r: &str| {
            b.image(store, &["inspect", r]).ok().json()["manifest"]["config"]["digest"].clone()
        };
        if i == 0 {
            // A layout keeps the manifest: the very same image.
            assert!(imp.out().ends_with(&digest), "{imp}");
        } else {
            // A docker archive keeps the config and layers; the manifest
            // is made again on import.
            assert_eq!(config(&other, "demo/out:1"), config(&b.store, "demo/out:1"));
        }
    }
    b.assert_clean();
}

#[test]
fn bad_input_fails_naming_the_line_or_the_flag() {
    let b = Builds::demo();
    fs::write(
        b.ctx.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"false\"]\n",
    )
    .unwrap();
    b.build(&[])
        .fails()
        .stderr_has(&["line 3", "status 1", "#4 ERROR"]);
    fs::write(b.ctx.join("Dockerfile"), "FROM scratch\nCOPY --nope x /\n").unwrap();
    b.build(&[]).fails().stderr_has(&["line 2", "--nope"]);
    b.build(&["--output", "type=zip,dest=/tmp/x"])
        .fails()
        .stderr_has(&["--output", "zip"]);
    b.build(&["--network", "bridge"])
        .fails()
        .stderr_has(&["--network", "bridge"]);
    let s = b.store.display().to_string();
    b.t.cmd(&["build", "--image-root", &s, "/no/such/context"])
        .fails()
        .stderr_has(&["/no/such/context"]);
    b.assert_clean();
}
