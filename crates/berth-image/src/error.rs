//! The crate's error type: each variant names the image, digest, path or
//! tar entry involved.

use std::path::PathBuf;

/// Errors returned by berth-image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named path.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A document (manifest, index, config, manifest.json) is malformed;
    /// `what` names it and the field.
    #[error("{what}: {msg}")]
    Format {
        /// The document and field, e.g. `index.json: manifests[0].digest`.
        what: String,
        /// What is wrong.
        msg: String,
    },
    /// Content does not match the digest that names it.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was being verified (blob, layer, config).
        what: String,
        /// The digest it was named by.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A tar entry that would land outside the root, or that the unpacker
    /// refuses; `entry` is its name in the archive.
    #[error("layer {layer}: entry {entry:?}: {msg}")]
    Entry {
        /// The layer (digest or file) being unpacked.
        layer: String,
        /// The entry's path as written in the archive.
        entry: String,
        /// Why it is refused.
        msg: String,
    },
    /// No image by this reference (or digest) is in the store or source.
    #[error("image {0} not found")]
    NotFound(String),
    /// The image has no manifest for the requested platform.
    #[error("image {image}: no manifest for platform {platform} (available: {available})")]
    NoPlatform {
        /// The image reference.
        image: String,
        /// The platform asked for, e.g. `linux/amd64`.
        platform: String,
        /// The platforms the index offers.
        available: String,
    },
    /// A registry refused the credentials, or asked for some and none
    /// were given.
    #[error("registry {registry}: {reference}: authentication refused: {msg}")]
    RegistryAuth {
        /// The registry, `host[:port]`.
        registry: String,
        /// The image reference.
        reference: String,
        /// What the registry said.
        msg: String,
    },
    /// Any other registry failure: unreachable, HTTPS failing where plain
    /// HTTP is not allowed, a protocol error.
    #[error("registry {registry}: {reference}: {msg}")]
    Registry {
        /// The registry, `host[:port]`.
        registry: String,
        /// The image reference.
        reference: String,
        /// What went wrong.
        msg: String,
    },
    /// A feature the image format allows but berth-image does not handle.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An error from the runtime library (building or running a bundle).
    #[error(transparent)]
    Runtime(#[from] berth::Error),
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Format`] for document/field `what`.
    pub fn format(what: impl Into<String>, msg: impl Into<String>) -> Error {
        Error::Format {
            what: what.into(),
            msg: msg.into(),
        }
    }
}
