//! Capability sets (runtime-spec "process.capabilities"): the five sets as
//! bit masks, applied by the init with prctl(2) and capset(2).

use oci_spec::runtime::{Capabilities, LinuxCapabilities};

use crate::error::{Error, Result};

/// The five capability sets as bit masks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapMasks {
    /// Bounding set.
    pub bounding: u64,
    /// Effective set.
    pub effective: u64,
    /// Permitted set.
    pub permitted: u64,
    /// Inheritable set.
    pub inheritable: u64,
    /// Ambient set.
    pub ambient: u64,
}

/// The highest capability number the running kernel knows.
pub fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

fn mask(set: &Option<Capabilities>, field: &str, last: u8) -> Result<u64> {
    let mut m = 0u64;
    let mut names: Vec<String> = set.iter().flatten().map(|c| format!("CAP_{c}")).collect();
    names.sort();
    for name in names {
        let cap: caps::Capability = name
            .parse()
            .map_err(|_| Error::spec(field.to_string(), format!("unknown capability {name}")))?;
        let idx = cap.index();
        if idx > last {
            // Like runc: a capability the kernel does not know is skipped.
            tracing::warn!("{field}: {name} is not known to this kernel, ignored");
            continue;
        }
        m |= 1u64 << idx;
    }
    Ok(m)
}

/// Computes the masks for `caps` (all sets empty when absent).
pub fn masks(caps: Option<&LinuxCapabilities>) -> Result<CapMasks> {
    let Some(c) = caps else {
        return Ok(CapMasks::default());
    };
    let last = last_cap();
    let f = "process.capabilities";
    Ok(CapMasks {
        bounding: mask(c.bounding(), &format!("{f}.bounding"), last)?,
        effective: mask(c.effective(), &format!("{f}.effective"), last)?,
        permitted: mask(c.permitted(), &format!("{f}.permitted"), last)?,
        inheritable: mask(c.inheritable(), &format!("{f}.inheritable"), last)?,
        ambient: mask(c.ambient(), &format!("{f}.ambient"), last)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_from_names() {
        let c: LinuxCapabilities = serde_json::from_value(serde_json::json!({
            "bounding": ["CAP_KILL", "CAP_CHOWN"],
            "effective": ["CAP_KILL"],
            "ambient": []
        }))
        .unwrap();
        let m = masks(Some(&c)).unwrap();
        assert_eq!(m.bounding, (1 << 5) | 1);
        assert_eq!(m.effective, 1 << 5);
        assert_eq!(m.permitted, 0);
        assert_eq!(m.ambient, 0);
    }
}
