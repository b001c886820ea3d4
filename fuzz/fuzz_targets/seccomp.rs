//! Fuzzes seccomp profile compilation: any profile compiles into a program
//! that decides every syscall, or fails naming the field; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

include!("seccomp_check.rs");

fuzz_target!(|data: &[u8]| {
    check_seccomp(data);
});
