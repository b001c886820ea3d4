//! Dockerfile builds for Berth. `dockerfile` turns a Dockerfile into stages
//! of typed instructions and performs Docker's variable substitution;
//! `ignore` decides which build-context paths a `.dockerignore` excludes;
//! `context` and `copy` are COPY and ADD's file handling; `build` runs the
//! stages into an image in berth-image's store, RUN steps as containers
//! through the core library.

pub mod build;
pub mod context;
pub mod copy;
pub mod dockerfile;
mod error;
pub mod ignore;

pub use build::{build, container_prefix, BuildOptions, Built, Event, Network};
pub use error::{BuildError, Result};
