//! Builds the in-container checker as a static executable (it runs inside
//! a busybox root file system that has no C library) for the driver to
//! embed. The checker uses std only, so plain rustc can build it.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "src/bin/berth-checker.rs";
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let exe = out.join("berth-checker");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").expect("TARGET");
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "-O",
            "--crate-type",
            "bin",
            "--crate-name",
        ])
        .arg("berth_checker")
        .args(["--target", &target])
        .args(["-C", "target-feature=+crt-static", "-C", "strip=symbols"])
        .arg("-o")
        .arg(&exe)
        .arg(src)
        .status()
        .expect("run rustc for the checker");
    assert!(status.success(), "building the static checker failed");
    let elf = std::fs::read(&exe).expect("read the checker");
    assert!(
        !has_interp(&elf),
        "the checker came out dynamically linked; it must be static"
    );
}

/// Whether an ELF64 file has a PT_INTERP program header (needs a loader).
fn has_interp(elf: &[u8]) -> bool {
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&elf[o..o + 8]);
        u64::from_le_bytes(b) as usize
    };
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return true;
    }
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        o + 4 <= elf.len() && u32::from_le_bytes([elf[o], elf[o + 1], elf[o + 2], elf[o + 3]]) == 3
    })
}
