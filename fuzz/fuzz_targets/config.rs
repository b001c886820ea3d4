//! Fuzzes config.json parsing and validation: any input must give a spec
//! or an error naming a field, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = berth::spec::parse(data) {
        let _ = e.to_string();
    }
});
