//! Times `Store::write_layer` on a directory: `write_layer DIR [RUNS]`.
//! The store is a temporary one beside DIR (same file system, as a build
//! step's would be). Prints, per run, the time, the throughput over the
//! bytes of file content read, and the blob's size.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use berth_image::layer::LayerOptions;
use berth_image::store::Store;

fn content_bytes(dir: &Path) -> (u64, u64) {
    let mut bytes = 0;
    let mut entries = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let m = e.path().symlink_metadata().expect("stat");
            entries += 1;
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && m.nlink() == 1 {
                bytes += m.len();
            }
        }
    }
    (bytes, entries)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: write_layer DIR [RUNS]");
        std::process::exit(2);
    };
    let runs: u32 = args.next().map_or(3, |r| r.parse().expect("RUNS"));
    let dir = Path::new(&dir);
    let parent = dir.parent().unwrap_or(Path::new("."));
    let root = tempfile::tempdir_in(parent).expect("temp store");
    let store = Store::open(root.path()).expect("open store");
    let (bytes, entries) = content_bytes(dir);
    println!(
        "{}: {entries} entries, {:.1} MB of file content, gzip level {}",
        dir.display(),
        bytes as f64 / 1e6,
        berth_image::layer::GZIP_LEVEL
    );
    for i in 0..runs {
        let t = Instant::now();
        let l = store
            .write_layer(dir, &LayerOptions::default())
            .expect("write_layer");
        let s = t.elapsed().as_secs_f64();
        println!(
            "run {i}: {s:.2}s, {:.0} MB/s, blob {:.1} MB ({:.0}%), {} tar entries",
            bytes as f64 / 1e6 / s,
            l.descriptor.size as f64 / 1e6,
            l.descriptor.size as f64 * 100.0 / bytes as f64,
            l.entries
        );
    }
}
