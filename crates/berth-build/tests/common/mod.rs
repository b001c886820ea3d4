//! What the build tests share: a fresh store holding the test bed's
//! busybox image, a runtime root and a context directory, all in one
//! temporary directory; builds through the library with their progress
//! collected as text; and nothing left mounted however a test ends.

#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;

use berth_build::{BuildError, BuildOptions, Built, Event};
use berth_image::archive;
use berth_image::store::Store;

pub struct Builds {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub rt: berth::Runtime,
    /// The busybox image as a `docker save` archive (imported as `base`).
    pub archive: PathBuf,
}

impl Builds {
    pub fn new(prefix: &str, base: &str) -> Builds {
        testbed::require_root();
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in("/tmp")
            .unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let archive = testbed::image::busybox_archive(dir.path(), base);
        archive::import(&store, &archive, None).unwrap();
        let rt = berth::Runtime::new(dir.path().join("run"));
        fs::create_dir_all(dir.path().join("ctx")).unwrap();
        Builds {
            dir,
            store,
            rt,
            archive,
        }
    }

    pub fn ctx(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }

    /// Builds, collecting the progress as docker's plain lines.
    pub fn build(&self, o: &BuildOptions) -> (Result<Built, BuildError>, String) {
        let mut log = String::new();
        let r = berth_build::build(&self.store, &self.rt, o, &mut |e| match e {
            Event::Step { id, name } => log.push_str(&format!("#{id} {name}\n")),
            Event::Output { id, line, .. } => {
                log.push_str(&format!("#{id} {}", String::from_utf8_lossy(line)))
            }
            Event::Cached { id } => log.push_str(&format!("#{id} CACHED\n")),
            Event::Done { id, .. } => log.push_str(&format!("#{id} DONE\n")),
            Event::Failed { id, .. } => log.push_str(&format!("#{id} ERROR\n")),
            Event::Warning(w) => log.push_str(&format!("WARNING {w}\n")),
        });
        (r, log)
    }

    pub fn ok(&self, o: &BuildOptions) -> (Built, String) {
        let (r, log) = self.build(o);
        match r {
            Ok(b) => (b, log),
            Err(e) => panic!("build failed: {e}\n{log}"),
        }
    }
}

impl Drop for Builds {
    fn drop(&mut self) {
        // Whatever a failed assertion left mounted goes before the removal.
        let base = self.dir.path().display().to_string();
        for m in testbed::host_mounts().iter().rev() {
            if m.mount_point.starts_with(&base) {
                let _ =
                    nix::mount::umount2(m.mount_point.as_str(), nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}
