// The property the `seccomp` target checks; also included by the corpus
// test in crates/berth/tests/fuzz_corpus.rs so the corpus runs in CI.

/// Any profile either compiles into a program the kernel would load, which
/// decides every syscall (an unlisted architecture is killed), or fails with
/// an error naming a `linux.seccomp` field. Never a panic.
pub fn check_seccomp(data: &[u8]) -> bool {
    use berth::seccomp::{compile, Arch};
    let Ok(profile) = serde_json::from_slice::<oci_spec::runtime::LinuxSeccomp>(data) else {
        return false;
    };
    match compile(&profile) {
        Ok(f) => {
            assert!(!f.program().is_empty() && f.program().len() <= 4096);
            let listed = |a: &str| {
                let v = serde_json::to_value(&profile).unwrap();
                let arches = v["architectures"].as_array().cloned().unwrap_or_default();
                arches.is_empty() && a == "SCMP_ARCH_X86_64"
                    || arches
                        .iter()
                        .any(|x| x == a || (a == "SCMP_ARCH_X86_64" && x == "SCMP_ARCH_NATIVE"))
            };
            let args = [0, 1, u64::MAX, 0x1_0000_0000, 7, 0xffff_ffff];
            for (arch, name) in [
                (Arch::X86_64, "SCMP_ARCH_X86_64"),
                (Arch::X86, "SCMP_ARCH_X86"),
                (Arch::X32, "SCMP_ARCH_X32"),
            ] {
                let base = if arch == Arch::X32 { 0x4000_0000 } else { 0 };
                for nr in [0, 1, 2, 39, 59, 83, 102, 435, 512, 1000] {
                    let action = f.evaluate(arch, base | nr, &args);
                    if !listed(name) {
                        assert_eq!(action, 0x8000_0000, "{name} is not listed");
                    }
                }
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("linux.seccomp"), "{msg}");
        }
    }
    true
}
