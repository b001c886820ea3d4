//! The build context: the directory COPY and ADD read from, with the
//! `.dockerignore` that hides part of it. BuildKit's rule is followed for
//! which ignore file applies: `<Dockerfile>.dockerignore` next to the
//! Dockerfile when it exists, else `<context>/.dockerignore`.

use std::path::{Path, PathBuf};

use crate::copy::CopyError;
use crate::ignore::DockerIgnore;

/// The build context: a directory and its .dockerignore.
#[derive(Debug, Clone)]
pub struct Context {
    root: PathBuf,
    ignore: DockerIgnore,
    ignore_file: Option<PathBuf>,
}

impl Context {
    /// Opens `dir`; reads `<dir>/.dockerignore` (or, when `dockerfile` is
    /// given and `<dockerfile>.dockerignore` exists next to it, that one
    /// instead). A malformed pattern is an error, as Docker refuses the
    /// build.
    pub fn open(dir: &Path, dockerfile: Option<&Path>) -> Result<Context, CopyError> {
        let meta = std::fs::metadata(dir).map_err(|e| CopyError::io("open context", dir, e))?;
        if !meta.is_dir() {
            return Err(CopyError::io(
                "open context",
                dir,
                std::io::Error::from_raw_os_error(libc::ENOTDIR),
            ));
        }
        let mut candidates = Vec::new();
        if let Some(df) = dockerfile {
            let mut name = df.as_os_str().to_owned();
            name.push(".dockerignore");
            candidates.push(PathBuf::from(name));
        }
        candidates.push(dir.join(".dockerignore"));
        let mut ignore = DockerIgnore::default();
        let mut ignore_file = None;
        for path in candidates {
            match std::fs::read(&path) {
                Ok(bytes) => {
                    ignore = DockerIgnore::parse(&String::from_utf8_lossy(&bytes));
                    if let Some(bad) = ignore.invalid_patterns().first() {
                        return Err(CopyError::InvalidIgnore {
                            path,
                            pattern: bad.clone(),
                        });
                    }
                    ignore_file = Some(path);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CopyError::io("read", &path, e)),
            }
        }
        Ok(Context {
            root: dir.to_path_buf(),
            ignore,
            ignore_file,
        })
    }

    /// The context directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The patterns that hide context paths from COPY and ADD.
    pub fn ignore(&self) -> &DockerIgnore {
        &self.ignore
    }

    /// The ignore file that was read, if any.
    pub fn ignore_file(&self) -> Option<&Path> {
        self.ignore_file.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_context_ignore_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "*.log\n").unwrap();
        let c = Context::open(dir.path(), None).unwrap();
        assert_eq!(c.root(), dir.path());
        assert!(c.ignore().is_excluded("a.log"));
        assert_eq!(
            c.ignore_file(),
            Some(dir.path().join(".dockerignore").as_path())
        );
    }

    #[test]
    fn dockerfile_specific_ignore_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "*.log\n").unwrap();
        let df = dir.path().join("sub/app.Dockerfile");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(&df, "FROM scratch\n").unwrap();
        // Without its own ignore file the context's applies.
        let c = Context::open(dir.path(), Some(&df)).unwrap();
        assert!(c.ignore().is_excluded("a.log"));
        std::fs::write(
            dir.path().join("sub/app.Dockerfile.dockerignore"),
            "*.tmp\n",
        )
        .unwrap();
        let c = Context::open(dir.path(), Some(&df)).unwrap();
        assert!(c.ignore().is_excluded("a.tmp"));
        assert!(!c.ignore().is_excluded("a.log"));
    }

    #[test]
    fn no_ignore_file_and_bad_patterns() {
        let dir = tempfile::tempdir().unwrap();
        let c = Context::open(dir.path(), None).unwrap();
        assert!(!c.ignore().is_excluded("anything"));
        assert!(c.ignore_file().is_none());
        std::fs::write(dir.path().join(".dockerignore"), "ok\n[\n").unwrap();
        let e = Context::open(dir.path(), None).unwrap_err();
        assert!(e.to_string().contains("\"[\""), "{e}");
        let e = Context::open(&dir.path().join("missing"), None).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }
}
