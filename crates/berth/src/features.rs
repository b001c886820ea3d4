//! The OCI runtime features document (`berth features`): what this build of
//! Berth supports, for managers to query before they write a config
//! (runtime-spec features.md and features-linux.md).
//!
//! Each list is taken from the code that implements it where the code
//! exposes one (hooks, seccomp, capabilities); the others are checked
//! against their implementation by the tests below.

use std::collections::HashMap;

use oci_spec::runtime::{
    Apparmor, Arch, Cgroup, Features, Hooks, IDMap, IntelRdt, LinuxFeature, LinuxNamespaceType,
    MemoryPolicy, MountExtensions, NetDevices, Seccomp, Selinux, Spec,
};

use crate::seccomp;

/// The oldest runtime-spec version whose configs Berth reads.
pub const OCI_VERSION_MIN: &str = "1.0.0";

/// The mount options `mounts[].options` may use (besides file system data
/// such as `size=` or `mode=`, passed to the file system as they are):
/// every option `rootfs::options` turns into a mount flag or propagation
/// change. runc's `tmpcopyup` is accepted but not carried out, so it is not
/// listed; recursive (`rro`, `rnosuid`, ...) and id-mapped (`idmap`) mounts
/// are not implemented.
pub const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "rbind",
    "relatime",
    "remount",
    "ro",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "unbindable",
];

/// The namespaces Berth creates and joins (`linux.namespaces[].type`).
pub const NAMESPACES: &[LinuxNamespaceType] = &[
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Mount,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Time,
    LinuxNamespaceType::User,
    LinuxNamespaceType::Uts,
];

/// The annotation giving Berth's version.
pub const VERSION_ANNOTATION: &str = "run.berth.version";
/// The annotation giving the commit Berth was built from, present when the
/// build set `BERTH_COMMIT`.
pub const COMMIT_ANNOTATION: &str = "run.berth.commit";

/// `SECCOMP_SET_MODE_FILTER`.
const SET_MODE_FILTER: libc::c_ulong = 1;

/// What this build of Berth supports.
pub fn features() -> Features {
    let mut linux = LinuxFeature::default();
    linux
        .set_namespaces(Some(NAMESPACES.to_vec()))
        .set_capabilities(Some(capabilities()))
        .set_cgroup(Some(cgroup()))
        .set_seccomp(Some(seccomp_feature()))
        .set_apparmor(Some({
            let mut a = Apparmor::default();
            a.set_enabled(Some(false));
            a
        }))
        .set_selinux(Some({
            let mut s = Selinux::default();
            s.set_enabled(Some(false));
            s
        }))
        .set_intel_rdt(Some({
            let mut r = IntelRdt::default();
            r.set_enabled(Some(false));
            r
        }))
        // linux.memoryPolicy and linux.netDevices are not acted on.
        .set_memory_policy(Some({
            let mut m = MemoryPolicy::default();
            m.set_modes(Some(Vec::new())).set_flags(Some(Vec::new()));
            m
        }))
        .set_net_devices(Some({
            let mut n = NetDevices::default();
            n.set_enabled(Some(false));
            n
        }))
        .set_mount_extensions(Some({
            let mut idmap = IDMap::default();
            idmap.set_enabled(Some(false));
            let mut m = MountExtensions::default();
            m.set_idmap(Some(idmap));
            m
        }));

    let mut annotations = HashMap::new();
    annotations.insert(
        VERSION_ANNOTATION.to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    if let Some(commit) = option_env!("BERTH_COMMIT").filter(|c| !c.is_empty()) {
        annotations.insert(COMMIT_ANNOTATION.to_string(), commit.to_string());
    }

    let mut f = Features::default();
    f.set_oci_version_min(OCI_VERSION_MIN.to_string())
        .set_oci_version_max(crate::container::OCI_VERSION.to_string())
        .set_hooks(Some(hooks()))
        .set_mount_options(Some(MOUNT_OPTIONS.iter().map(|o| o.to_string()).collect()))
        .set_linux(Some(linux))
        .set_annotations(Some(annotations))
        // No annotation changes what Berth does.
        .set_potentially_unsafe_config_annotations(Some(Vec::new()));
    f
}

/// The hook kinds Berth runs, in lifecycle order.
fn hooks() -> Vec<String> {
    let mut spec = Spec::default();
    spec.set_hooks(Some(Hooks::default()));
    crate::hooks::all_hooks(&spec)
        .into_iter()
        .map(|(kind, _)| kind.to_string())
        .collect()
}

/// Every capability Berth can name, in the kernel's order. Ones the
/// running kernel does not know are skipped at create time, as runc does.
fn capabilities() -> Vec<String> {
    let mut all: Vec<caps::Capability> = caps::all().into_iter().collect();
    all.sort_by_key(|c| c.index());
    all.iter().map(|c| c.to_string()).collect()
}

fn cgroup() -> Cgroup {
    let mut c = Cgroup::default();
    c.set_v1(Some(true))
        .set_v2(Some(true))
        .set_systemd(Some(false))
        .set_systemd_user(Some(false))
        .set_rdma(Some(true));
    c
}

fn seccomp_feature() -> Seccomp {
    let mut s = Seccomp::default();
    s.set_enabled(Some(true))
        .set_actions(Some(
            seccomp::ACTIONS.iter().filter_map(|a| parse(a)).collect(),
        ))
        .set_operators(Some(
            seccomp::OPERATORS.iter().map(|o| o.to_string()).collect(),
        ))
        .set_archs(Some(
            seccomp::ARCHES
                .iter()
                .filter_map(|a| parse::<Arch>(a))
                .collect(),
        ))
        .set_known_flags(Some(seccomp::FLAGS.iter().map(|f| f.to_string()).collect()))
        .set_supported_flags(Some(
            seccomp::FLAGS
                .iter()
                .filter(|f| flag_supported(f))
                .map(|f| f.to_string())
                .collect(),
        ));
    s
}

/// A spec enum from its config.json spelling.
fn parse<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::from(name)).ok()
}

/// Whether the running kernel knows a filter flag. For the ones it needs
/// with it, the flag is tried together with `SECCOMP_FILTER_FLAG_NEW_LISTENER`.
fn flag_supported(name: &str) -> bool {
    let bits = match name {
        "SECCOMP_FILTER_FLAG_TSYNC" => 1,
        "SECCOMP_FILTER_FLAG_LOG" => 2,
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => 4,
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" => 16 | seccomp::FLAG_NEW_LISTENER,
        _ => return false,
    };
    kernel_knows_filter_flags(bits)
}

/// Asks seccomp(2) to install a filter with `flags` and no program: the
/// kernel rejects unknown flags with EINVAL before it reads the program,
/// and fails on the missing program with EFAULT, so nothing is installed.
fn kernel_knows_filter_flags(flags: u32) -> bool {
    // SAFETY: a null program pointer is never dereferenced by us; the
    // kernel faults on it and returns EFAULT without changing the process.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SET_MODE_FILTER,
            libc::c_ulong::from(flags),
            std::ptr::null::<libc::c_void>(),
        )
    };
    r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxSeccompAction;

    #[test]
    fn versions_and_hooks() {
        let f = features();
        assert_eq!(f.oci_version_min(), "1.0.0");
        assert_eq!(f.oci_version_max(), crate::container::OCI_VERSION);
        assert_eq!(
            f.hooks().as_deref().unwrap(),
            [
                "prestart",
                "createRuntime",
                "createContainer",
                "startContainer",
                "poststart",
                "poststop"
            ]
        );
    }

    #[test]
    fn every_listed_mount_option_is_a_flag_the_parser_knows() {
        assert!(MOUNT_OPTIONS.windows(2).all(|w| w[0] < w[1]), "sorted");
        for opt in MOUNT_OPTIONS {
            let o = crate::rootfs::options::parse(&[opt.to_string()], "mounts[0].options")
                .unwrap_or_else(|e| panic!("{opt}: {e}"));
            assert_eq!(o.data, "", "{opt} would be passed on as file system data");
        }
        // Options runc lists that Berth does not carry out.
        for opt in [
            "idmap",
            "ridmap",
            "rro",
            "rnosuid",
            "nosymfollow",
            "tmpcopyup",
        ] {
            assert!(!MOUNT_OPTIONS.contains(&opt), "{opt}");
        }
        let idmap = crate::rootfs::options::parse(&["idmap".to_string()], "mounts[0].options");
        assert!(idmap.is_err(), "idmap is refused");
        let f = features();
        let ext = f.linux().as_ref().unwrap().mount_extensions().as_ref();
        let enabled = ext
            .and_then(|m| m.idmap().as_ref())
            .and_then(|i| *i.enabled());
        assert_eq!(enabled, Some(false));
    }

    #[test]
    fn every_listed_namespace_is_created() {
        for t in NAMESPACES {
            let linux: oci_spec::runtime::Linux = serde_json::from_value(serde_json::json!({
                "namespaces": [{"type": t}]
            }))
            .unwrap();
            let mut next = 0;
            let plan = crate::namespaces::plan(&linux, &mut |_| {
                next += 1;
                next
            })
            .unwrap_or_else(|e| panic!("{t}: {e}"));
            assert!(plan.creates(*t), "{t} is not created");
        }
    }

    #[test]
    fn capabilities_are_the_ones_config_json_can_name() {
        let f = features();
        let caps = f.linux().as_ref().unwrap().capabilities().clone().unwrap();
        assert_eq!(caps.len(), 41, "{caps:?}");
        assert_eq!(caps[0], "CAP_CHOWN");
        assert_eq!(caps[21], "CAP_SYS_ADMIN");
        assert_eq!(caps.last().unwrap(), "CAP_CHECKPOINT_RESTORE");
        for c in &caps {
            let parsed: Result<oci_spec::runtime::Capability, _> =
                serde_json::from_value(serde_json::Value::from(c.as_str()));
            assert!(parsed.is_ok(), "{c} is not a config.json capability");
        }
    }

    #[test]
    fn seccomp_lists_are_the_compilers() {
        let f = features();
        let s = f.linux().as_ref().unwrap().seccomp().clone().unwrap();
        assert_eq!(*s.enabled(), Some(true));
        let actions: Vec<String> = s
            .actions()
            .iter()
            .flatten()
            .map(|a: &LinuxSeccompAction| {
                serde_json::to_value(a)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(actions, seccomp::ACTIONS);
        assert_eq!(s.operators().as_deref().unwrap(), seccomp::OPERATORS);
        let archs: Vec<String> = s
            .archs()
            .iter()
            .flatten()
            .map(|a| {
                serde_json::to_value(a)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(archs, seccomp::ARCHES);
        assert_eq!(s.known_flags().as_deref().unwrap(), seccomp::FLAGS);
        let supported = s.supported_flags().clone().unwrap();
        assert!(supported
            .iter()
            .all(|f| seccomp::FLAGS.contains(&f.as_str())));
        // This machine's kernel (6.x) has every flag Berth knows.
        assert_eq!(supported, seccomp::FLAGS);
        assert!(!flag_supported("SECCOMP_FILTER_FLAG_NO_SUCH"));
        assert!(!kernel_knows_filter_flags(1 << 20), "an unknown flag bit");
    }

    /// Whether a JSON document holds a null anywhere.
    fn has_null(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Null => true,
            serde_json::Value::Array(a) => a.iter().any(has_null),
            serde_json::Value::Object(m) => m.values().any(has_null),
            _ => false,
        }
    }

    #[test]
    fn serialises_as_the_spec_document() {
        let v = serde_json::to_value(features()).unwrap();
        // Every field is answered: null would mean "unknown".
        assert!(!has_null(&v), "{v:#}");
        assert_eq!(v["ociVersionMin"], "1.0.0");
        assert_eq!(
            v["linux"]["cgroup"],
            serde_json::json!({"v1": true, "v2": true, "systemd": false,
                               "systemdUser": false, "rdma": true})
        );
        assert_eq!(v["linux"]["namespaces"][0], "cgroup");
        assert_eq!(v["linux"]["mountExtensions"]["idmap"]["enabled"], false);
        assert_eq!(v["linux"]["apparmor"]["enabled"], false);
        assert_eq!(
            v["annotations"][VERSION_ANNOTATION],
            env!("CARGO_PKG_VERSION")
        );
        let back: Features = serde_json::from_value(v).unwrap();
        assert_eq!(back, features());
    }
}
