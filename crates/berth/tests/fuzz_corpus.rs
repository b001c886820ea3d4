//! Runs the fuzz corpus of `fuzz/corpus/config` through the config parser:
//! every input must parse or fail with an error naming a field.

use std::path::Path;

#[test]
fn config_corpus_parses_or_names_the_field() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz corpus directory") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        match berth::spec::parse(&data) {
            Ok(_) => {}
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.starts_with("config.json: "),
                    "{}: {msg}",
                    path.display()
                );
            }
        }
        n += 1;
    }
    assert!(n >= 5, "corpus too small: {n}");
}

#[test]
fn runc_default_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/config");
    for name in ["runc-default.json", "runc-rootless.json"] {
        let data = std::fs::read(dir.join(name)).unwrap();
        berth::spec::parse(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

include!("../../../fuzz/fuzz_targets/seccomp_check.rs");

#[test]
fn seccomp_corpus_compiles_or_names_the_field() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/seccomp");
    let (mut n, mut profiles) = (0, 0);
    for entry in std::fs::read_dir(&dir).expect("fuzz corpus directory") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if check_seccomp(&data) {
            profiles += 1;
        }
        n += 1;
    }
    assert!(
        n >= 8 && profiles >= 6,
        "corpus too small: {n} files, {profiles} profiles"
    );
}
