//! Loading and validating an OCI bundle's `config.json` (runtime-spec
//! "Configuration"). Errors name the JSON path of the offending field.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::error::{Error, Result};

mod example;
pub use example::example;

/// Reads `<bundle>/config.json`. Parse errors carry the JSON path of the
/// offending value (`linux.namespaces[2].type: unknown variant ...`).
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    parse(&text)
}

/// Parses and validates a config.json document.
pub fn parse(text: &[u8]) -> Result<Spec> {
    let de = &mut serde_json::Deserializer::from_slice(text);
    let spec: Spec = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." || field == "?" {
            "(document)".to_string()
        } else {
            field
        };
        Error::spec(field, e.into_inner().to_string())
    })?;
    validate(&spec)?;
    Ok(spec)
}

/// Checks what serde cannot: absolute paths, required fields, consistency
/// between namespaces, mappings and sysctls.
pub fn validate(spec: &Spec) -> Result<()> {
    if spec.root().is_none() {
        return Err(Error::spec(
            "root",
            "missing: a bundle needs a root file system",
        ));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::spec("process", "missing"))?;
    check_process(process).map_err(|(field, msg)| Error::spec(field, msg))?;
    for (i, m) in spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if !m.destination().is_absolute() {
            return Err(Error::spec(
                format!("mounts[{i}].destination"),
                format!("{:?} is not an absolute path", m.destination()),
            ));
        }
    }
    for (kind, hooks) in crate::hooks::all_hooks(spec) {
        for (i, h) in hooks.iter().enumerate() {
            if !h.path().is_absolute() {
                return Err(Error::spec(
                    format!("hooks.{kind}[{i}].path"),
                    format!("{:?} is not an absolute path", h.path()),
                ));
            }
            if let Some(t) = h.timeout() {
                if t <= 0 {
                    return Err(Error::spec(
                        format!("hooks.{kind}[{i}].timeout"),
                        format!("{t} must be a positive number of seconds"),
                    ));
                }
            }
        }
    }
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let namespaces = linux.namespaces().as_deref().unwrap_or_default();
    let mut seen = Vec::new();
    for (i, ns) in namespaces.iter().enumerate() {
        if seen.contains(&ns.typ()) {
            return Err(Error::spec(
                format!("linux.namespaces[{i}].type"),
                format!("namespace {:?} is listed twice", ns.typ()),
            ));
        }
        seen.push(ns.typ());
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(Error::spec(
                    format!("linux.namespaces[{i}].path"),
                    format!("{p:?} is not an absolute path"),
                ));
            }
        }
    }
    let has = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    let new_user = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    let maps = linux.uid_mappings().as_deref().unwrap_or_default().len()
        + linux.gid_mappings().as_deref().unwrap_or_default().len();
    if new_user
        && linux
            .uid_mappings()
            .as_deref()
            .unwrap_or_default()
            .is_empty()
    {
        return Err(Error::spec(
            "linux.uidMappings",
            "a new user namespace needs uid and gid mappings",
        ));
    }
    if new_user
        && linux
            .gid_mappings()
            .as_deref()
            .unwrap_or_default()
            .is_empty()
    {
        return Err(Error::spec(
            "linux.gidMappings",
            "a new user namespace needs uid and gid mappings",
        ));
    }
    if !has(LinuxNamespaceType::User) && maps > 0 {
        return Err(Error::spec(
            "linux.uidMappings",
            "mappings are given but there is no user namespace",
        ));
    }
    if (spec.hostname().is_some() && !spec.hostname().as_deref().unwrap_or("").is_empty()
        || spec.domainname().as_deref().is_some_and(|d| !d.is_empty()))
        && !namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Uts && n.path().is_none())
    {
        return Err(Error::spec(
            "hostname",
            "setting a hostname or domainname needs a new uts namespace",
        ));
    }
    if linux.time_offsets().is_some() && !has(LinuxNamespaceType::Time) {
        return Err(Error::spec(
            "linux.timeOffsets",
            "time offsets need a time namespace",
        ));
    }
    if let Some(sysctl) = linux.sysctl() {
        let mut keys: Vec<_> = sysctl.keys().collect();
        keys.sort();
        for key in keys {
            check_sysctl(key, &has)?;
        }
    }
    Ok(())
}

/// The checks on a process that hold for the init and for `exec`: the
/// field (`process.cwd`) and what is wrong with it.
pub fn check_process(process: &Process) -> std::result::Result<(), (String, String)> {
    let bad = |f: &str, m: String| Err((f.to_string(), m));
    let args = process.args().as_deref().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        return bad("process.args", "must name a program to run".into());
    }
    if !process.cwd().is_absolute() {
        return bad(
            "process.cwd",
            format!("{:?} is not an absolute path", process.cwd()),
        );
    }
    for (i, e) in process
        .env()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if !e.contains('=') || e.starts_with('=') || e.contains('\0') {
            return bad(
                &format!("process.env[{i}]"),
                format!("{e:?} is not KEY=VALUE"),
            );
        }
    }
    // Applying a profile or label nobody enforces would only pretend to
    // confine the process.
    if process
        .apparmor_profile()
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        return bad(
            "process.apparmorProfile",
            "unsupported: berth has no AppArmor support".into(),
        );
    }
    if process
        .selinux_label()
        .as_deref()
        .is_some_and(|l| !l.is_empty())
    {
        return bad(
            "process.selinuxLabel",
            "unsupported: berth has no SELinux support".into(),
        );
    }
    Ok(())
}

/// A sysctl may only be set when the namespace it belongs to is the
/// container's own, or it would change the host (as runc checks).
fn check_sysctl(key: &str, has: &dyn Fn(LinuxNamespaceType) -> bool) -> Result<()> {
    let field = format!("linux.sysctl.{key}");
    if key.contains("..") || key.contains('/') && key.contains('.') || key.is_empty() {
        return Err(Error::spec(field, "not a sysctl name"));
    }
    let ipc = key.starts_with("fs.mqueue.")
        || [
            "kernel.msgmax",
            "kernel.msgmnb",
            "kernel.msgmni",
            "kernel.sem",
            "kernel.shmall",
            "kernel.shmmax",
            "kernel.shmmni",
            "kernel.shm_rmid_forced",
        ]
        .contains(&key);
    let (ok, ns) = if ipc {
        (has(LinuxNamespaceType::Ipc), "ipc")
    } else if key.starts_with("net.") {
        (has(LinuxNamespaceType::Network), "network")
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        (has(LinuxNamespaceType::Uts), "uts")
    } else {
        return Err(Error::spec(
            field,
            "not namespaced: setting it would change the host",
        ));
    };
    if !ok {
        return Err(Error::spec(
            field,
            format!("needs a {ns} namespace of the container's own"),
        ));
    }
    Ok(())
}

/// The bundle's root file system as an absolute path.
pub fn rootfs_path(bundle: &Path, spec: &Spec) -> PathBuf {
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_default();
    if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> serde_json::Value {
        serde_json::to_value(example(false)).unwrap()
    }

    fn err_of(v: &serde_json::Value) -> String {
        parse(v.to_string().as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn example_is_valid() {
        parse(base().to_string().as_bytes()).unwrap();
    }

    #[test]
    fn broken_json_names_position() {
        let e = parse(b"{\"ociVersion\": ").unwrap_err().to_string();
        assert!(e.starts_with("config.json:"), "{e}");
    }

    #[test]
    fn unknown_namespace_names_field() {
        let mut v = base();
        v["linux"]["namespaces"][1]["type"] = "bogus".into();
        let e = err_of(&v);
        assert!(e.contains("linux.namespaces[1].type"), "{e}");
    }

    #[test]
    fn relative_paths_are_refused() {
        let mut v = base();
        v["mounts"][0]["destination"] = "proc".into();
        assert!(err_of(&v).contains("mounts[0].destination"));
        let mut v = base();
        v["linux"]["namespaces"][0]["path"] = "ns/net".into();
        assert!(err_of(&v).contains("linux.namespaces[0].path"));
        let mut v = base();
        v["process"]["cwd"] = "tmp".into();
        assert!(err_of(&v).contains("process.cwd"));
    }

    #[test]
    fn host_sysctls_are_refused() {
        let mut v = base();
        v["linux"]["sysctl"] = serde_json::json!({"vm.swappiness": "10"});
        assert!(err_of(&v).contains("linux.sysctl.vm.swappiness"));
        let mut v = base();
        v["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"});
        parse(v.to_string().as_bytes()).unwrap();
    }

    #[test]
    fn user_namespace_needs_mappings() {
        let mut v = base();
        v["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "user"}));
        assert!(err_of(&v).contains("linux.uidMappings"));
    }
}
