//! Mount options of config.json `mounts[].options` as mount(2) flags,
//! propagation changes and file system data (runtime-spec "Mounts").

use crate::error::{Error, Result};

/// A mount's options split the way mount(2) wants them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// MS_* flags for the mount call (MS_BIND, MS_REC, MS_RDONLY, ...).
    pub flags: libc::c_ulong,
    /// Flags explicitly cleared (e.g. `rw`, `suid`): kept out of locked-flag
    /// fix-ups.
    pub cleared: libc::c_ulong,
    /// Propagation changes, applied after the mount in order.
    pub propagation: Vec<libc::c_ulong>,
    /// Everything else, passed as the file system's data string.
    pub data: String,
}

impl MountOptions {
    /// Whether this is a bind mount.
    pub fn is_bind(&self) -> bool {
        self.flags & libc::MS_BIND != 0
    }
}

/// Parses options; `field` names `mounts[i].options` for errors.
pub fn parse(options: &[String], field: &str) -> Result<MountOptions> {
    let mut o = MountOptions::default();
    let mut data = Vec::new();
    for opt in options {
        let (set, clear): (libc::c_ulong, libc::c_ulong) = match opt.as_str() {
            "defaults" => (0, 0),
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "suid" => (0, libc::MS_NOSUID),
            "nosuid" => (libc::MS_NOSUID, 0),
            "dev" => (0, libc::MS_NODEV),
            "nodev" => (libc::MS_NODEV, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "noexec" => (libc::MS_NOEXEC, 0),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "remount" => (libc::MS_REMOUNT, 0),
            "mand" => (libc::MS_MANDLOCK, 0),
            "nomand" => (0, libc::MS_MANDLOCK),
            "atime" => (0, libc::MS_NOATIME),
            "noatime" => (libc::MS_NOATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "bind" => (libc::MS_BIND, 0),
            "rbind" => (libc::MS_BIND | libc::MS_REC, 0),
            "silent" => (libc::MS_SILENT, 0),
            "loud" => (0, libc::MS_SILENT),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let base = match opt.trim_start_matches('r') {
                    "private" => libc::MS_PRIVATE,
                    "shared" => libc::MS_SHARED,
                    "slave" => libc::MS_SLAVE,
                    _ => libc::MS_UNBINDABLE,
                };
                let rec = if opt.starts_with('r') {
                    libc::MS_REC
                } else {
                    0
                };
                o.propagation.push(base | rec);
                continue;
            }
            // runc extension: accepted, the copy-up is not done.
            "tmpcopyup" => continue,
            "idmap" | "ridmap" => {
                return Err(Error::Unsupported(format!(
                    "{field}: {opt:?} (id-mapped mounts)"
                )))
            }
            other => {
                if other.contains('\0') {
                    return Err(Error::spec(field.to_string(), "option contains a NUL byte"));
                }
                data.push(other);
                continue;
            }
        };
        o.flags = (o.flags | set) & !clear;
        o.cleared = (o.cleared | clear) & !set;
    }
    o.data = data.join(",");
    Ok(o)
}

/// Propagation flags for `rootfsPropagation`.
pub fn propagation(value: &str) -> Result<libc::c_ulong> {
    let p = parse(&[value.to_string()], "linux.rootfsPropagation")?;
    match p.propagation.as_slice() {
        [f] => Ok(*f),
        _ => Err(Error::spec(
            "linux.rootfsPropagation",
            format!(
                "{value:?} is not one of private, shared, slave, unbindable and their r- forms"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(opts: &[&str]) -> MountOptions {
        let v: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        parse(&v, "mounts[0].options").unwrap()
    }

    #[test]
    fn flags_and_data() {
        let o = p(&["nosuid", "noexec", "nodev", "mode=755", "size=65536k", "ro"]);
        assert_eq!(
            o.flags,
            libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_NODEV | libc::MS_RDONLY
        );
        assert_eq!(o.data, "mode=755,size=65536k");
        let o = p(&["ro", "rw"]);
        assert_eq!(o.flags, 0);
        assert_eq!(o.cleared, libc::MS_RDONLY);
    }

    #[test]
    fn bind_and_propagation() {
        let o = p(&["rbind", "rprivate", "shared"]);
        assert!(o.is_bind());
        assert_eq!(o.flags, libc::MS_BIND | libc::MS_REC);
        assert_eq!(
            o.propagation,
            vec![libc::MS_PRIVATE | libc::MS_REC, libc::MS_SHARED]
        );
        assert_eq!(
            p(&["rslave"]).propagation,
            vec![libc::MS_SLAVE | libc::MS_REC]
        );
        assert_eq!(
            p(&["runbindable"]).propagation,
            vec![libc::MS_UNBINDABLE | libc::MS_REC]
        );
        assert_eq!(
            p(&["rshared"]).propagation,
            vec![libc::MS_SHARED | libc::MS_REC]
        );
    }

    #[test]
    fn rootfs_propagation_values() {
        assert_eq!(
            propagation("rslave").unwrap(),
            libc::MS_SLAVE | libc::MS_REC
        );
        assert!(propagation("sideways")
            .unwrap_err()
            .to_string()
            .contains("rootfsPropagation"));
    }
}
