//! Runs the fuzz corpus of `fuzz/corpus/unpack_layer` through the unpacker
//! (as root): every layer, hostile ones included, stays inside its root.

use std::path::Path;

include!("../../../fuzz/fuzz_targets/unpack_check.rs");

#[test]
fn unpack_corpus_stays_inside_the_root() {
    assert!(nix::unistd::geteuid().is_root(), "unpack tests run as root");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/unpack_layer");
    let (mut n, mut applied) = (0, 0);
    for entry in std::fs::read_dir(&dir).expect("fuzz corpus directory") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if check_unpack(&data) {
            applied += 1;
        }
        n += 1;
    }
    assert!(
        n >= 8 && applied >= 4,
        "corpus too small: {n} files, {applied} applied"
    );
}
