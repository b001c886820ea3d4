// The property the `unpack_layer` target checks; also included by the corpus
// test in crates/berth-image/tests/fuzz_corpus.rs so the corpus runs in CI.

/// Unpacks `data` as an uncompressed layer (flat) into a fresh root inside a
/// fresh parent directory. Whatever the bytes: nothing appears in the parent
/// beside the root, the root is still a directory, no whiteout name appears
/// inside it, and an error names the layer or a path under the root. Never a
/// panic. Returns whether the layer was applied.
pub fn check_unpack(data: &[u8]) -> bool {
    use berth_image::unpack::{apply_layer, Compression, Mode};
    use std::path::Path;

    fn no_whiteouts(dir: &Path) {
        for e in std::fs::read_dir(dir).expect("read the root") {
            let e = e.expect("read the root");
            let name = e.file_name();
            assert!(
                !name.as_encoded_bytes().starts_with(b".wh."),
                "whiteout left in the root: {}",
                e.path().display()
            );
            if e.file_type().expect("file type").is_dir() {
                no_whiteouts(&e.path());
            }
        }
    }

    let parent = tempfile::Builder::new()
        .prefix("berth-fuzz-unpack-")
        .tempdir()
        .expect("temp dir");
    let root = parent.path().join("root");
    std::fs::create_dir(&root).expect("create the root");
    let res = apply_layer(data, Compression::None, &root, Mode::Flat, "fuzz-layer");
    let beside: Vec<_> = std::fs::read_dir(parent.path())
        .expect("read the parent")
        .map(|e| e.expect("read the parent").file_name())
        .collect();
    assert_eq!(beside, ["root"], "something was created outside the root");
    assert!(std::fs::symlink_metadata(&root).expect("the root").is_dir());
    no_whiteouts(&root);
    if let Err(e) = &res {
        let msg = e.to_string();
        assert!(
            msg.contains("fuzz-layer") || msg.contains(&*root.to_string_lossy()),
            "{msg}"
        );
    }
    res.is_ok()
}
