//! The OCI runtime-spec conformance suite: cases that each vary a config
//! and check, from inside a real container (the checker) or from outside
//! through the runtime's command line (the state machine, hooks), that the
//! runtime did what the spec says. Any runc-compatible binary can be
//! driven; the results come out as one row per case and a column per
//! runtime.

pub mod case;
pub mod cases;
pub mod driver;
pub mod host;
pub mod report;
pub mod runtime;
pub mod suite;

/// The checker, built statically by build.rs.
pub const CHECKER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/berth-checker"));
