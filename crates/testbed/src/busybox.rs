//! The static busybox every test root filesystem is made of: finding it,
//! installing Debian's `busybox-static` when it is missing, and checking
//! that it needs no dynamic loader (no `PT_INTERP` program header), since
//! the root filesystems hold nothing else.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// The path of a statically linked busybox, installing `busybox-static`
/// with apt-get when none is found. Panics when it cannot get one.
pub fn ensure_busybox() -> &'static Path {
    static BUSYBOX: OnceLock<PathBuf> = OnceLock::new();
    BUSYBOX.get_or_init(|| {
        if let Some(p) = find_static() {
            return p;
        }
        if !apt_install("busybox-static") {
            apt_update();
            apt_install("busybox-static");
        }
        find_static().unwrap_or_else(|| {
            panic!("no static busybox at {CANDIDATES:?} (apt-get install -y busybox-static failed)")
        })
    })
}

/// The applet names busybox was built with (`busybox --list`), computed
/// once per process.
pub fn applets() -> &'static [String] {
    static APPLETS: OnceLock<Vec<String>> = OnceLock::new();
    APPLETS.get_or_init(|| {
        let bb = ensure_busybox();
        let out = Command::new(bb)
            .arg("--list")
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("{} --list: {e}", bb.display()));
        assert!(
            out.status.success(),
            "{} --list: {}",
            bb.display(),
            out.status
        );
        let list = String::from_utf8_lossy(&out.stdout);
        let names: Vec<String> = list
            .lines()
            .map(str::trim)
            .filter(|n| !n.is_empty() && *n != "busybox" && !n.contains('/'))
            .map(String::from)
            .collect();
        assert!(names.iter().any(|n| n == "sh"), "busybox has no sh applet");
        names
    })
}

fn find_static() -> Option<PathBuf> {
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| is_static_elf(p).unwrap_or(false))
}

fn apt_install(pkg: &str) -> bool {
    apt(&["install", "-y", "--no-install-recommends", pkg])
}

fn apt_update() -> bool {
    apt(&["update"])
}

fn apt(args: &[&str]) -> bool {
    Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Whether `path` is an ELF executable without a `PT_INTERP` header, i.e.
/// one the kernel can run without a dynamic loader in the root filesystem.
pub fn is_static_elf(path: &Path) -> io::Result<bool> {
    const PT_INTERP: u32 = 3;
    let data = fs::read(path)?;
    if data.len() < 64 || &data[..4] != b"\x7fELF" {
        return Ok(false);
    }
    let is64 = data[4] == 2;
    let little = data[5] == 1;
    let u16_at = |o: usize| -> Option<u64> {
        let b: [u8; 2] = data.get(o..o + 2)?.try_into().ok()?;
        Some(u64::from(if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }))
    };
    let u32_at = |o: usize| -> Option<u64> {
        let b: [u8; 4] = data.get(o..o + 4)?.try_into().ok()?;
        Some(u64::from(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }))
    };
    let u64_at = |o: usize| -> Option<u64> {
        let b: [u8; 8] = data.get(o..o + 8)?.try_into().ok()?;
        Some(if little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    };
    let headers = if is64 {
        u64_at(0x20).zip(u16_at(0x36)).zip(u16_at(0x38))
    } else {
        u32_at(0x1c).zip(u16_at(0x2a)).zip(u16_at(0x2c))
    };
    let Some(((phoff, phentsize), phnum)) = headers else {
        return Ok(false);
    };
    for i in 0..phnum {
        let Some(ty) = u32_at((phoff + i * phentsize) as usize) else {
            return Ok(false);
        };
        if ty == u64::from(PT_INTERP) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_is_static_and_a_dynamic_binary_is_not() {
        assert!(is_static_elf(ensure_busybox()).unwrap());
        let dynamic = Path::new("/bin/ls");
        if dynamic.exists() {
            assert!(!is_static_elf(dynamic).unwrap());
        }
        assert!(applets().iter().any(|a| a == "ls"));
    }
}
