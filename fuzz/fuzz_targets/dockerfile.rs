//! Fuzzes the Dockerfile parser and variable substitution: any bytes give a
//! parsed Dockerfile or an error on a line of the input, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("dockerfile_check.rs");

fuzz_target!(|data: &[u8]| {
    check_dockerfile(data);
});
