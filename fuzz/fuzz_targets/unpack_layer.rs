//! Fuzzes layer unpacking: any bytes, read as a tar stream and applied flat
//! into a fresh root, stay inside that root (no entry, symlink, hardlink or
//! whiteout reaches the parent directory); never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("unpack_check.rs");

fuzz_target!(|data: &[u8]| {
    check_unpack(data);
});
