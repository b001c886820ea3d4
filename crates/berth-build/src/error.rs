//! The errors of a build. Each names what failed: the Dockerfile line and
//! instruction, the file, the image or the container.

use std::path::PathBuf;

use crate::copy::CopyError;
use crate::dockerfile::ParseError;

/// A failed build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile does not parse, or an instruction is invalid once
    /// its variables are substituted.
    #[error("Dockerfile line {}: {}", .0.line, .0.message)]
    Parse(#[from] ParseError),
    /// A step failed; `source` says why.
    #[error("Dockerfile line {line}: {instruction}: {source}")]
    Step {
        line: usize,
        instruction: String,
        #[source]
        source: Box<BuildError>,
    },
    /// A RUN command ended with a non-zero status.
    #[error("the command exited with status {code}")]
    Exit { code: i32 },
    /// The options or the Dockerfile ask for what builds cannot do.
    #[error("{0}")]
    Invalid(String),
    /// The build was cancelled (`BuildOptions::cancel`).
    #[error("the build was cancelled")]
    Cancelled,
    /// What builds here do not support, named.
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error(transparent)]
    Image(#[from] berth_image::Error),
    #[error("container: {0}")]
    Runtime(#[from] berth::Error),
}

impl BuildError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BuildError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = BuildError> = std::result::Result<T, E>;
