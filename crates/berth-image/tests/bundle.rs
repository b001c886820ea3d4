//! Image configs turned into bundles and run with the berth library: the
//! command, environment, working directory and user come out as the image
//! says, and the overrides reach the container.

use std::fs;
use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use berth::{CreateOptions, Runtime};
use berth_image::bundle::{bind_mount, runtime_spec, write_bundle, Overrides};
use oci_spec::image::ImageConfiguration;
use serde_json::json;
use testbed::{Bundle, Sandbox, Watchdog, MARK_VAR};

/// Makes this test process the reaper of the containers' inits, so
/// `Container::wait` works whoever forked them.
fn subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| berth::process::set_child_subreaper().expect("PR_SET_CHILD_SUBREAPER"));
}

fn setup() -> (Sandbox, Runtime, Watchdog) {
    testbed::require_root();
    subreaper();
    let sb = Sandbox::new();
    let rt = Runtime::new(sb.root());
    let w = sb.watchdog(Duration::from_secs(120));
    (sb, rt, w)
}

fn image(config: serde_json::Value) -> ImageConfiguration {
    serde_json::from_value(json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": []},
    }))
    .unwrap()
}

/// Converts `img` for the busybox bundle `b` (keeping the sandbox's mark
/// and cgroup, so leaks are found), runs it to its end and returns its
/// exit code.
fn run(sb: &Sandbox, rt: &Runtime, b: &Bundle, img: &ImageConfiguration, mut o: Overrides) -> i32 {
    o.env.push(format!("{MARK_VAR}={}", b.mark()));
    let mut spec = runtime_spec(img, &b.rootfs(), &o).unwrap();
    spec.linux_mut()
        .as_mut()
        .unwrap()
        .set_cgroups_path(Some(PathBuf::from(b.cgroups_path())));
    write_bundle(b.path(), &b.rootfs(), &spec).unwrap();
    let id = sb.id("img");
    let c = rt.create(&id, &CreateOptions::new(b.path())).unwrap();
    c.start().unwrap();
    let code = c.wait().unwrap();
    c.delete(false).unwrap();
    sb.leak_check(&id, b);
    code
}

#[test]
fn image_config_runs_as_the_image_says() {
    let (sb, rt, _w) = setup();
    let b = sb.bundle(&["true"]);
    let out = sb.host_dir("out");
    let img = image(json!({
        "Entrypoint": ["sh", "-c"],
        "Cmd": ["exec > /out/result; echo $GREETING; id -u; id -G; pwd; echo $HOME"],
        "Env": ["GREETING=hi"],
        "WorkingDir": "/tmp",
        "User": "test",
    }));
    let o = Overrides {
        mounts: vec![bind_mount(&format!("{}:/out", out.display())).unwrap()],
        ..Default::default()
    };
    assert_eq!(run(&sb, &rt, &b, &img, o), 0);
    let result = fs::read_to_string(out.join("result")).unwrap();
    assert_eq!(result, "hi\n1000\n1000\n/tmp\n/home/test\n");
}

#[test]
fn overrides_reach_the_container() {
    let (sb, rt, _w) = setup();
    let b = sb.bundle(&["true"]);
    let out = sb.host_dir("out");
    let img = image(json!({
        "Entrypoint": ["sh", "-c"],
        "Cmd": ["exit 3"],
        "Env": ["GREETING=hi"],
        "User": "test",
    }));
    let script = "exec > /out/result; echo $GREETING; id -u; pwd; \
                  readlink /proc/self/ns/net; hostname; \
                  touch /rootfs-write 2>/dev/null && echo writable || echo read-only";
    let o = Overrides {
        args: Some(vec![script.to_string()]),
        env: vec!["GREETING=bye".into()],
        user: Some("0:0".into()),
        workdir: Some("/root".into()),
        mounts: vec![bind_mount(&format!("{}:/out", out.display())).unwrap()],
        hostname: Some("imagehost".into()),
        readonly_rootfs: true,
        network_host: true,
        pids: Some(64),
        ..Default::default()
    };
    assert_eq!(run(&sb, &rt, &b, &img, o), 0);
    let host_net = fs::read_link("/proc/self/ns/net").unwrap();
    let result = fs::read_to_string(out.join("result")).unwrap();
    assert_eq!(
        result,
        format!(
            "bye\n0\n/root\n{}\nimagehost\nread-only\n",
            host_net.display()
        )
    );
}
