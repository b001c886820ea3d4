//! cgroupfs access shared by v1 and v2: writing and reading interface files,
//! making and removing cgroup directories.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::{CgroupError, Result};

/// Writes `value` to `dir/file` in one write, as the kernel parses each
/// write separately. The file is never created: a missing interface file
/// means the controller is not there, and that must be an error.
pub(super) fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    tracing::debug!(path = %path.display(), value, "cgroup write");
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| CgroupError::Write {
            path,
            value: value.to_string(),
            source,
        })
}

/// Reads `dir/file`, trimmed.
pub(super) fn read(dir: &Path, file: &str) -> Result<String> {
    read_path(&dir.join(file)).map(|s| s.trim().to_string())
}

pub(super) fn read_path(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a file holding one unsigned number.
pub(super) fn read_u64(dir: &Path, file: &str) -> Result<u64> {
    let content = read(dir, file)?;
    content.parse().map_err(|_| CgroupError::Parse {
        path: dir.join(file),
        content,
    })
}

pub(super) fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

/// `mkdir -p base/rel`, recording each directory it made in `created`
/// (shallowest first) even when it fails part way, so the caller can undo.
/// `base` must exist. Returns the full path.
pub(super) fn make_dirs(base: &Path, rel: &Path, created: &mut Vec<PathBuf>) -> Result<PathBuf> {
    let mut path = base.to_path_buf();
    for part in rel.iter() {
        path.push(part);
        match fs::create_dir(&path) {
            Ok(()) => created.push(path.clone()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(source) => return Err(CgroupError::Create { path, source }),
        }
    }
    Ok(path)
}

/// Removes `created` deepest first. A cgroup still holding a process (one
/// that is exiting but not yet reaped by the kernel) answers EBUSY; that is
/// retried until `deadline`. Already-removed directories are fine.
pub(super) fn remove_dirs(created: &[PathBuf], deadline: Instant) -> Result<()> {
    for (i, path) in created.iter().enumerate().rev() {
        // Only the container's own (deepest) directory must go; a parent
        // we created may meanwhile hold other containers' cgroups, and
        // then it stays, along with everything above it.
        let leaf = i + 1 == created.len();
        let mut pause = Duration::from_millis(5);
        loop {
            match fs::remove_dir(path) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                Err(e)
                    if !leaf && matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) =>
                {
                    return Ok(())
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(source) => {
                    return Err(CgroupError::Remove {
                        path: path.clone(),
                        source,
                    })
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod remove_tests {
    use super::*;

    #[test]
    fn a_created_parent_others_now_use_stays() {
        let top = tempfile::tempdir().unwrap();
        let parent = top.path().join("shared");
        let leaf = parent.join("ctr");
        std::fs::create_dir_all(&leaf).unwrap();
        // Another container's cgroup appeared under the parent we made.
        std::fs::create_dir(parent.join("other")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        remove_dirs(&[parent.clone(), leaf.clone()], deadline).unwrap();
        assert!(!leaf.exists());
        assert!(parent.join("other").is_dir());
        // The container's own directory still in use is an error.
        std::fs::create_dir_all(leaf.join("busy")).unwrap();
        let e = remove_dirs(&[parent.clone(), leaf.clone()], deadline).unwrap_err();
        assert!(e.to_string().contains("ctr"), "{e}");
    }
}
