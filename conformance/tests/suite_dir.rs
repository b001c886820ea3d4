//! `--suite-dir` against a small suite laid out as runtime-tools builds
//! one (`runtimetest` and `*.t` programs printing TAP), with two stand-in
//! runtimes that differ in one answer: the programs get RUNTIME and run in
//! the suite directory, and their points come out as rows per runtime.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

fn script(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

const DEFAULT_T: &str = r#"echo "TAP version 13"
if [ -x "$RUNTIME" ] && [ -f runtimetest ]; then
  echo "ok 1 - runtime and working directory"
else
  echo "not ok 1 - runtime and working directory"
fi
case "$("$RUNTIME" --version)" in
  *good*) echo "ok 2 - version" ;;
  *) echo "not ok 2 - version" ;;
esac
echo "  ---"
echo "  reference: https://github.com/opencontainers/runtime-spec/blob/v1.0.0/runtime.md#state"
echo "  ..."
echo "ok 3 # SKIP not on this host"
echo "1..3"
"#;

#[test]
fn a_prebuilt_suite_runs_against_each_runtime() {
    testbed::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let suite = tmp.path().join("suite");
    script(&suite.join("runtimetest"), "exit 0\n");
    script(&suite.join("default.t"), DEFAULT_T);
    script(
        &suite.join("crash.t"),
        "echo 1..2\necho 'ok 1 - first'\nexit 2\n",
    );
    script(
        &suite.join("nested/skipall.t"),
        "echo '1..0 # SKIP needs a feature'\n",
    );
    std::fs::write(suite.join("not-a-program.t"), "ignored").unwrap();
    let good = tmp.path().join("good");
    let bad = tmp.path().join("bad");
    script(
        &good,
        "[ \"$1\" = --version ] && echo 'runtime good 1.0'\nexit 0\n",
    );
    script(
        &bad,
        "[ \"$1\" = --version ] && echo 'runtime bad 1.0'\nexit 0\n",
    );

    let out = Command::new(env!("CARGO_BIN_EXE_berth-conformance"))
        .arg("--only-suite")
        .arg("--json")
        .arg("--suite-dir")
        .arg(&suite)
        .arg("--runtime")
        .arg(&good)
        .arg("--runtime")
        .arg(&bad)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (json, last) = stdout
        .trim_end()
        .rsplit_once('\n')
        .expect("json and summary");
    let rows: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| {
        panic!("{e}: {stdout}\n{stderr}");
    });
    let row = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["case"] == name)
            .unwrap_or_else(|| panic!("no row {name}: {rows:#}"))
            .clone()
    };
    let r = row("default: runtime and working directory");
    assert_eq!(
        (r["good"].as_str(), r["bad"].as_str()),
        (Some("pass"), Some("pass"))
    );
    let r = row("default: version");
    assert_eq!(r["good"], "pass");
    assert!(r["bad"].as_str().unwrap().starts_with("fail"), "{r}");
    assert_eq!(r["section"], "runtime.md#state");
    assert!(row("default: #3")["good"]
        .as_str()
        .unwrap()
        .starts_with("skip"));
    assert_eq!(row("crash: first")["good"], "pass");
    assert!(row("crash: (missing points)")["good"]
        .as_str()
        .unwrap()
        .contains("planned 2"));
    assert!(row("nested/skipall: (all)")["bad"]
        .as_str()
        .unwrap()
        .contains("needs a feature"));
    assert!(!stdout.contains("not-a-program"));
    assert_eq!(rows.as_array().unwrap().len(), 6, "{rows:#}");
    // The first runtime's count: the crash is its one failure.
    assert_eq!(last, "3 passed, 1 failed");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_directory_without_programs_is_an_error() {
    testbed::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berth-conformance"))
        .args(["--only-suite", "--suite-dir"])
        .arg(tmp.path())
        .args(["--runtime", "/bin/true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no executable *.t"), "{stderr}");
}
