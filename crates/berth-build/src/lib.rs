//! Dockerfile builds for Berth. `dockerfile` turns a Dockerfile into stages
//! of typed instructions and performs Docker's variable substitution;
//! `ignore` decides which build-context paths a `.dockerignore` excludes.
//! Both are pure logic: nothing here touches containers or the image store.

pub mod dockerfile;
pub mod ignore;
