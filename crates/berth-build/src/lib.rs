//! Dockerfile builds for Berth. `dockerfile` turns a Dockerfile into stages
//! of typed instructions and performs Docker's variable substitution;
//! `ignore` decides which build-context paths a `.dockerignore` excludes.
//! `context` and `copy` carry out COPY and ADD: Docker's file semantics,
//! confined to the root a step writes into.

pub mod context;
pub mod copy;
pub mod dockerfile;
pub mod ignore;
