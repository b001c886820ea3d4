//! Runs the fuzz corpus of `fuzz/corpus/dockerfile` through the same check
//! as the `dockerfile` fuzz target: every file, malformed ones included,
//! parses or fails on a line of its own, and substitution never panics.

use std::path::Path;

include!("../../../fuzz/fuzz_targets/dockerfile_check.rs");

#[test]
fn dockerfile_corpus_holds_the_properties() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/dockerfile");
    let (mut n, mut parsed) = (0, 0);
    for entry in std::fs::read_dir(&dir).expect("fuzz corpus directory") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if check_dockerfile(&data) {
            parsed += 1;
        }
        n += 1;
    }
    // Enough real files to seed the fuzzer, and both outcomes represented.
    assert!(
        n >= 15 && parsed >= 12 && n - parsed >= 5,
        "corpus too small or one-sided: {n} files, {parsed} parse"
    );
}

#[test]
fn corpus_files_parse_as_expected() {
    use berth_build::dockerfile::parse;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/dockerfile");
    for entry in std::fs::read_dir(&dir).expect("fuzz corpus directory") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let res = parse(&text);
        // The seeds named bad-* (and the empty file) are meant to fail.
        let should_fail = name.starts_with("bad-") || name == "empty";
        assert_eq!(res.is_err(), should_fail, "{name}: {res:?}");
    }
}
