//! cgroup device access control (runtime spec config-linux.md "Device
//! allowlist", `linux.resources.devices`): the one effective policy the rules
//! leave, written to cgroup v1's `devices.allow`/`devices.deny`
//! (Documentation/admin-guide/cgroup-v1/devices.rst) or compiled for cgroup
//! v2, which has no device controller, into a BPF_PROG_TYPE_CGROUP_DEVICE
//! program (`bpf.rs`).
//!
//! The semantics are runc's, which are the v1 kernel's: everything is denied
//! to start with; the config's rules apply in order, then runc's default
//! allowed devices. A type `a` rule resets the policy to allow-all or
//! deny-all; any other rule adds an exception to the current default or
//! takes access away from the exception for exactly the same device, so a
//! later rule overrides an earlier one. Taking access away from a narrower
//! device than an existing wildcard exception (a "hole" in `c 1:* rwm`) is
//! refused: v1 would silently keep the access, and v2 behaves the same so a
//! config means one thing on both. `linux.devices` entries add no rules; as
//! in runc, a device node is usable only when a rule allows it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::{bpf, fs, CgroupError, Result};

/// Character or block devices; a rule for all devices is a reset, not a
/// [`Node`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Kind {
    Char,
    Block,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::Char => 'c',
            Kind::Block => 'b',
        }
    }

    /// `BPF_DEVCG_DEV_*`, the low half of `bpf_cgroup_dev_ctx.access_type`.
    pub(super) fn bpf_type(self) -> u32 {
        match self {
            Kind::Block => 1,
            Kind::Char => 2,
        }
    }
}

/// A set of accesses (`rwm`); the bits are the kernel's `BPF_DEVCG_ACC_*`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Access(u8);

impl Access {
    pub(super) const MKNOD: Access = Access(1);
    pub(super) const READ: Access = Access(2);
    pub(super) const WRITE: Access = Access(4);
    pub(super) const ALL: Access = Access(7);

    /// Letters from `r`, `w` and `m`, in any order; empty is not an access.
    fn parse(s: &str) -> Option<Access> {
        if s.is_empty() {
            return None;
        }
        s.chars().try_fold(Access(0), |acc, c| {
            let bit = match c {
                'r' => Access::READ,
                'w' => Access::WRITE,
                'm' => Access::MKNOD,
                _ => return None,
            };
            Some(acc.union(bit))
        })
    }

    #[cfg(test)]
    pub(super) const fn from_bits(bits: u8) -> Access {
        Access(bits & 7)
    }

    pub(super) fn bits(self) -> u32 {
        u32::from(self.0)
    }

    fn union(self, other: Access) -> Access {
        Access(self.0 | other.0)
    }

    fn minus(self, other: Access) -> Access {
        Access(self.0 & !other.0)
    }

    fn intersects(self, other: Access) -> bool {
        self.0 & other.0 != 0
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, letter) in [
            (Access::READ, 'r'),
            (Access::WRITE, 'w'),
            (Access::MKNOD, 'm'),
        ] {
            if self.intersects(bit) {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

/// The devices a rule names: a type and a major and minor number, `None`
/// for any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct Node {
    pub kind: Kind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        write!(
            f,
            "{} {}:{}",
            self.kind.letter(),
            num(self.major),
            num(self.minor)
        )
    }
}

/// One rule: allow or deny `access` to `node`, or, when `node` is `None`,
/// to every device whatever the access (a reset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rule {
    allow: bool,
    node: Option<Node>,
    access: Access,
}

impl Rule {
    const fn allow(kind: Kind, major: Option<u32>, minor: Option<u32>, access: Access) -> Rule {
        Rule {
            allow: true,
            node: Some(Node { kind, major, minor }),
            access,
        }
    }

    /// `linux.resources.devices[i]`, checked. A missing type means all
    /// devices and a missing access `rwm`, as the v1 kernel and the spec's
    /// examples read them; runc's `-1` for a wildcard number is accepted.
    fn from_spec(i: usize, r: &LinuxDeviceCgroup) -> Result<Rule> {
        let invalid = |name: &str, value: String, reason: &str| CgroupError::InvalidDeviceRule {
            field: format!("linux.resources.devices[{i}].{name}"),
            value,
            reason: reason.to_string(),
        };
        let access = match r.access().as_deref() {
            None => Access::ALL,
            Some(s) => Access::parse(s).ok_or_else(|| {
                invalid(
                    "access",
                    format!("{s:?}"),
                    "must be one or more of the letters r, w and m",
                )
            })?,
        };
        let kind = match r.typ() {
            None | Some(LinuxDeviceType::A) => {
                return Ok(Rule {
                    allow: r.allow(),
                    node: None,
                    access,
                })
            }
            Some(LinuxDeviceType::C) => Kind::Char,
            Some(LinuxDeviceType::B) => Kind::Block,
            Some(t) => {
                return Err(invalid(
                    "type",
                    format!("{:?}", t.as_str()),
                    "a device cgroup rule is for a (all), c (character) or b (block) devices",
                ))
            }
        };
        let number = |name: &str, n: Option<i64>| match n {
            None | Some(-1) => Ok(None),
            Some(n) => u32::try_from(n).map(Some).map_err(|_| {
                invalid(
                    name,
                    n.to_string(),
                    "must be a device number from 0 to 4294967295, or -1 or unset for any",
                )
            }),
        };
        Ok(Rule {
            allow: r.allow(),
            node: Some(Node {
                kind,
                major: number("major", r.major())?,
                minor: number("minor", r.minor())?,
            }),
            access,
        })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.allow { "allow" } else { "deny" };
        match self.node {
            Some(node) => write!(f, "{verb} {node} {}", self.access),
            None => write!(f, "{verb} a"),
        }
    }
}

/// runc's default allowed devices, applied after the config's rules: mknod
/// of any device (the rootfs setup makes the nodes), /dev/null, random,
/// full, tty, zero, urandom, the pty slaves, /dev/ptmx and tun.
const DEFAULT_RULES: [Rule; 11] = {
    use Kind::{Block, Char};
    [
        Rule::allow(Char, None, None, Access::MKNOD),
        Rule::allow(Block, None, None, Access::MKNOD),
        Rule::allow(Char, Some(1), Some(3), Access::ALL),
        Rule::allow(Char, Some(1), Some(8), Access::ALL),
        Rule::allow(Char, Some(1), Some(7), Access::ALL),
        Rule::allow(Char, Some(5), Some(0), Access::ALL),
        Rule::allow(Char, Some(1), Some(5), Access::ALL),
        Rule::allow(Char, Some(1), Some(9), Access::ALL),
        Rule::allow(Char, Some(136), None, Access::ALL),
        Rule::allow(Char, Some(5), Some(2), Access::ALL),
        Rule::allow(Char, Some(10), Some(200), Access::ALL),
    ]
};

/// The effective device policy: a default verdict and the exceptions to it,
/// each device with the accesses that get the opposite verdict. This is the
/// state the v1 kernel keeps per cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Policy {
    /// Allow-all with deny exceptions (v1's "blacklist") rather than
    /// deny-all with allow exceptions.
    pub default_allow: bool,
    pub exceptions: BTreeMap<Node, Access>,
}

impl Policy {
    fn deny_all() -> Policy {
        Policy {
            default_allow: false,
            exceptions: BTreeMap::new(),
        }
    }

    /// The policy `linux.resources.devices` leaves after runc's defaults.
    pub(super) fn from_spec(rules: &[LinuxDeviceCgroup]) -> Result<Policy> {
        let mut policy = Policy::without_defaults(rules)?;
        for rule in &DEFAULT_RULES {
            policy
                .apply(rule)
                .map_err(|reason| CgroupError::InvalidDeviceRule {
                    field: "linux.resources.devices".to_string(),
                    value: format!("(then the default rule) {rule}"),
                    reason,
                })?;
        }
        Ok(policy)
    }

    /// The policy the config's rules leave on their own.
    pub(super) fn without_defaults(rules: &[LinuxDeviceCgroup]) -> Result<Policy> {
        let mut policy = Policy::deny_all();
        for (i, r) in rules.iter().enumerate() {
            let rule = Rule::from_spec(i, r)?;
            policy
                .apply(&rule)
                .map_err(|reason| CgroupError::InvalidDeviceRule {
                    field: format!("linux.resources.devices[{i}]"),
                    value: rule.to_string(),
                    reason,
                })?;
        }
        Ok(policy)
    }

    fn apply(&mut self, rule: &Rule) -> Result<(), String> {
        let Some(node) = rule.node else {
            *self = Policy {
                default_allow: rule.allow,
                exceptions: BTreeMap::new(),
            };
            return Ok(());
        };
        if rule.allow != self.default_allow {
            let held = self.exceptions.entry(node).or_default();
            *held = held.union(rule.access);
            return Ok(());
        }
        self.take_away(node, rule.access)
    }

    /// Removes `access` from the exception for exactly `node`. The v1
    /// kernel only ever edits the exception with the same type and numbers,
    /// so a wider exception overlapping `access` would stay in force.
    fn take_away(&mut self, node: Node, access: Access) -> Result<(), String> {
        let wider = [
            Node {
                major: None,
                ..node
            },
            Node {
                minor: None,
                ..node
            },
            Node {
                major: None,
                minor: None,
                ..node
            },
        ];
        for w in wider.into_iter().filter(|w| *w != node) {
            if let Some(&held) = self.exceptions.get(&w) {
                if held.intersects(access) {
                    let verb = if self.default_allow { "deny" } else { "allow" };
                    return Err(format!(
                        "cannot take access away from part of the earlier wildcard rule \
                         {verb} {w} {held}: cgroup v1 keeps such rules whole, so the \
                         earlier rule must name the devices one by one instead"
                    ));
                }
            }
        }
        if let Some(held) = self.exceptions.get_mut(&node) {
            *held = held.minus(access);
            if held.is_empty() {
                self.exceptions.remove(&node);
            }
        }
        Ok(())
    }

    /// Whether the v1 kernel lets `access` to `node` (specific numbers)
    /// through under this policy: with deny-all, one exception must cover
    /// every requested access; with allow-all, no exception may overlap it.
    #[cfg(test)]
    pub(super) fn allows(&self, kind: Kind, major: u32, minor: u32, access: Access) -> bool {
        let matching = self.exceptions.iter().filter(|(n, _)| {
            n.kind == kind && n.major.unwrap_or(major) == major && n.minor.unwrap_or(minor) == minor
        });
        if self.default_allow {
            !matching.clone().any(|(_, held)| held.intersects(access))
        } else {
            matching
                .clone()
                .any(|(_, held)| held.union(access) == *held)
        }
    }
}

/// Brings a v1 devices cgroup to `target` with the fewest writes, as runc
/// does: the disruptive `a` reset only when the default must change (or is
/// allow-all, whose deny exceptions devices.list does not show), so that an
/// update neither opens a moment of deny-all for running processes nor fails
/// on a cgroup with children. The result is read back and compared.
pub(super) fn apply_v1(dir: &Path, target: &Policy) -> Result<()> {
    let current = read_list(dir)?;
    for (file, value) in transition(&current, target) {
        fs::write(dir, file, &value)?;
    }
    let after = read_list(dir)?;
    let matches = if target.default_allow {
        after.default_allow
    } else {
        after == *target
    };
    if matches {
        return Ok(());
    }
    Err(CgroupError::NotApplied {
        path: dir.join("devices.list"),
        value: list_text(target),
        actual: list_text(&after),
    })
}

/// Compiles `policy` into a device program and attaches it to the cgroup v2
/// directory `dir` in place of any earlier one. A directory outside a cgroup2
/// file system (a tree faked for tests) can hold no program and is left as
/// it is.
pub(super) fn apply_v2(dir: &Path, policy: &Policy) -> Result<()> {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
    if let Ok(fs) = statfs(dir) {
        if fs.filesystem_type() != CGROUP2_SUPER_MAGIC {
            tracing::debug!(dir = %dir.display(), "not on cgroup2; no device program");
            return Ok(());
        }
    }
    bpf::replace_device_filter(dir, &bpf::device_filter(policy))
}

/// The writes (file, value) that take a v1 cgroup from `current` to `target`:
/// the reset if needed, then the accesses `target` no longer excepts, then
/// the ones it adds, in a stable order.
fn transition(current: &Policy, target: &Policy) -> Vec<(&'static str, String)> {
    // An exception is added through the file of its verdict and removed
    // through the other one.
    let (add, remove) = if target.default_allow {
        ("devices.deny", "devices.allow")
    } else {
        ("devices.allow", "devices.deny")
    };
    let mut writes = Vec::new();
    let empty = BTreeMap::new();
    let old = if current.default_allow || current.default_allow != target.default_allow {
        writes.push((remove, "a".to_string()));
        &empty
    } else {
        &current.exceptions
    };
    for (node, held) in old {
        let dropped = held.minus(target.exceptions.get(node).copied().unwrap_or_default());
        if !dropped.is_empty() {
            writes.push((remove, format!("{node} {dropped}")));
        }
    }
    for (node, wanted) in &target.exceptions {
        let gained = wanted.minus(old.get(node).copied().unwrap_or_default());
        if !gained.is_empty() {
            writes.push((add, format!("{node} {gained}")));
        }
    }
    writes
}

/// Reads `devices.list`: `a *:* rwm` alone for allow-all (whose deny
/// exceptions the kernel does not list), otherwise the allow exceptions.
fn read_list(dir: &Path) -> Result<Policy> {
    let text = fs::read(dir, "devices.list")?;
    parse_list(&text).ok_or_else(|| CgroupError::Parse {
        path: dir.join("devices.list"),
        content: text,
    })
}

fn parse_list(text: &str) -> Option<Policy> {
    let mut policy = Policy::deny_all();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let (Some(kind), Some(numbers), Some(access), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return None;
        };
        let access = Access::parse(access)?;
        let kind = match kind {
            "a" => {
                policy.default_allow = true;
                continue;
            }
            "c" => Kind::Char,
            "b" => Kind::Block,
            _ => return None,
        };
        let (major, minor) = numbers.split_once(':')?;
        let num = |s: &str| match s {
            "*" => Some(None),
            s => s.parse().ok().map(Some),
        };
        let node = Node {
            kind,
            major: num(major)?,
            minor: num(minor)?,
        };
        let held = policy.exceptions.entry(node).or_default();
        *held = held.union(access);
    }
    if policy.default_allow {
        policy.exceptions.clear();
    }
    Some(policy)
}

/// A policy as devices.list would show it, on one line, for messages.
fn list_text(policy: &Policy) -> String {
    if policy.default_allow {
        return "a *:* rwm".to_string();
    }
    let lines: Vec<String> = policy
        .exceptions
        .iter()
        .map(|(node, access)| format!("{node} {access}"))
        .collect();
    format!("[{}]", lines.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;
    use serde_json::json;

    fn rules(v: serde_json::Value) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_value(v).unwrap()
    }

    fn policy(v: serde_json::Value) -> Policy {
        Policy::from_spec(&rules(v)).unwrap()
    }

    fn lines(p: &Policy) -> Vec<String> {
        p.exceptions
            .iter()
            .map(|(n, a)| format!("{n} {a}"))
            .collect()
    }

    const DEFAULTS: [&str; 11] = [
        "c *:* m",
        "c 1:3 rwm",
        "c 1:5 rwm",
        "c 1:7 rwm",
        "c 1:8 rwm",
        "c 1:9 rwm",
        "c 5:0 rwm",
        "c 5:2 rwm",
        "c 10:200 rwm",
        "c 136:* rwm",
        "b *:* m",
    ];

    #[test]
    fn no_rules_is_deny_all_plus_the_defaults() {
        let p = policy(json!([]));
        assert!(!p.default_allow);
        assert_eq!(lines(&p), DEFAULTS);
        assert!(p.allows(Kind::Char, 1, 3, Access::READ.union(Access::WRITE)));
        assert!(p.allows(Kind::Char, 136, 7, Access::WRITE));
        assert!(p.allows(Kind::Block, 8, 0, Access::MKNOD));
        assert!(!p.allows(Kind::Block, 8, 0, Access::READ));
        assert!(!p.allows(Kind::Char, 1, 11, Access::READ));
        // The usual leading deny-all changes nothing.
        assert_eq!(policy(json!([{"allow": false, "access": "rwm"}])), p);
    }

    #[test]
    fn later_rules_override_earlier_ones_for_the_same_device() {
        let p = policy(json!([
            {"allow": true, "type": "c", "major": 240, "minor": 1, "access": "rwm"},
            {"allow": false, "type": "c", "major": 240, "minor": 1, "access": "w"},
            {"allow": true, "type": "c", "major": 240, "minor": 2, "access": "r"},
            {"allow": true, "type": "c", "major": 240, "minor": 2, "access": "w"},
            {"allow": true, "type": "b", "major": 240, "minor": 3, "access": "rw"},
            {"allow": false, "type": "b", "major": 240, "minor": 3, "access": "rwm"},
        ]));
        let ours: Vec<String> = lines(&p)
            .into_iter()
            .filter(|l| l.contains("240"))
            .collect();
        assert_eq!(ours, ["c 240:1 rm", "c 240:2 rw"]);
        assert!(p.allows(Kind::Char, 240, 1, Access::READ));
        assert!(!p.allows(Kind::Char, 240, 1, Access::WRITE));
        // One exception must cover the whole request, as in v1.
        assert!(p.allows(Kind::Char, 240, 2, Access::READ.union(Access::WRITE)));
        assert!(!p.allows(Kind::Block, 240, 3, Access::READ));
    }

    #[test]
    fn the_defaults_come_last_and_win() {
        // runc appends its defaults after the config's rules, so a config
        // cannot take /dev/zero away.
        let p = policy(json!([
            {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        ]));
        assert!(p.allows(Kind::Char, 1, 5, Access::READ));
    }

    #[test]
    fn a_type_a_rule_resets_the_policy() {
        let p = policy(json!([
            {"allow": true, "type": "c", "major": 240, "minor": 1, "access": "rwm"},
            {"allow": false, "type": "a", "major": 3, "access": "r"},
        ]));
        assert_eq!(lines(&p), DEFAULTS);

        // Allow-all with deny exceptions; the defaults' allows are no-ops.
        let p = policy(json!([
            {"allow": true, "access": "rwm"},
            {"allow": false, "type": "c", "major": 240, "access": "rwm"},
            {"allow": true, "type": "c", "major": 240, "access": "w"},
            {"allow": false, "type": "b", "major": 8, "minor": 0, "access": "w"},
        ]));
        assert!(p.default_allow);
        assert_eq!(lines(&p), ["c 240:* rm", "b 8:0 w"]);
        assert!(p.allows(Kind::Char, 241, 0, Access::ALL));
        assert!(!p.allows(Kind::Char, 240, 9, Access::READ.union(Access::WRITE)));
        assert!(p.allows(Kind::Char, 240, 9, Access::WRITE));
        assert!(p.allows(Kind::Block, 8, 0, Access::READ));
        assert!(!p.allows(Kind::Block, 8, 0, Access::WRITE));
    }

    #[test]
    fn wildcards_and_runcs_minus_one() {
        let p = policy(json!([
            {"allow": true, "type": "c", "major": 240, "minor": -1, "access": "r"},
            {"allow": true, "type": "b", "access": "r"},
        ]));
        assert!(lines(&p).contains(&"c 240:* r".to_string()));
        assert!(lines(&p).contains(&"b *:* rm".to_string()));
        assert!(p.allows(Kind::Char, 240, 77, Access::READ));
        assert!(p.allows(Kind::Block, 3, 4, Access::READ));
        assert!(!p.allows(Kind::Block, 3, 4, Access::WRITE));
    }

    #[test]
    fn punching_a_hole_in_a_wildcard_is_refused_naming_the_rule() {
        let err = Policy::from_spec(&rules(json!([
            {"allow": true, "type": "c", "major": 240, "access": "rwm"},
            {"allow": false, "type": "c", "major": 240, "minor": 3, "access": "w"},
        ])))
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("linux.resources.devices[1] = deny c 240:3 w: "),
            "{msg}"
        );
        assert!(msg.contains("allow c 240:* rwm"), "{msg}");

        // Disjoint accesses are fine: nothing of the wildcard is touched.
        policy(json!([
            {"allow": true, "type": "c", "major": 240, "access": "r"},
            {"allow": false, "type": "c", "major": 240, "minor": 3, "access": "w"},
        ]));

        // A default rule can hit a config's wildcard deny too.
        let err = Policy::from_spec(&rules(json!([
            {"allow": true, "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "access": "w"},
        ])))
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("linux.resources.devices = (then the default rule) allow c 1:3 rwm: "),
            "{msg}"
        );
    }

    #[test]
    fn bad_fields_are_errors_naming_them() {
        let err = |v: serde_json::Value| Policy::from_spec(&rules(v)).unwrap_err().to_string();
        assert_eq!(
            err(json!([{"allow": true}, {"allow": true, "type": "c", "access": "rwx"}])),
            "linux.resources.devices[1].access = \"rwx\": \
             must be one or more of the letters r, w and m"
        );
        assert!(err(json!([{"allow": true, "access": ""}]))
            .starts_with("linux.resources.devices[0].access = \"\": "));
        assert!(err(json!([{"allow": true, "type": "u", "access": "r"}]))
            .starts_with("linux.resources.devices[0].type = \"u\": "));
        assert!(err(json!([{"allow": true, "type": "p", "access": "r"}]))
            .starts_with("linux.resources.devices[0].type = \"p\": "));
        assert!(
            err(json!([{"allow": true, "type": "c", "major": -2, "access": "r"}]))
                .starts_with("linux.resources.devices[0].major = -2: ")
        );
        assert!(
            err(json!([{"allow": true, "type": "b", "minor": 4294967296i64, "access": "r"}]))
                .starts_with("linux.resources.devices[0].minor = 4294967296: ")
        );
        // An unknown type letter never gets this far: oci-spec refuses it
        // while parsing config.json; access is a plain string there.
        assert!(serde_json::from_value::<LinuxDeviceCgroup>(json!({"type": "x"})).is_err());
        let r = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .build()
            .unwrap();
        // A missing access means all of them.
        assert!(Policy::from_spec(&[r])
            .unwrap()
            .allows(Kind::Char, 1, 3, Access::ALL));
    }

    #[test]
    fn v1_writes_reset_only_when_the_default_changes() {
        let target = policy(json!([
            {"allow": true, "type": "c", "major": 240, "minor": 1, "access": "rw"},
        ]));
        // A new cgroup below an allow-all parent starts as allow-all.
        let fresh = parse_list("a *:* rwm\n").unwrap();
        let writes = transition(&fresh, &target);
        assert_eq!(writes[0], ("devices.deny", "a".to_string()));
        assert_eq!(writes.len(), 1 + 12);
        assert!(writes[1..].iter().all(|(f, _)| *f == "devices.allow"));
        assert!(writes.contains(&("devices.allow", "c 240:1 rw".to_string())));

        // Updating to a different list: only the differences.
        let now = parse_list(&list_lines(&target)).unwrap();
        assert_eq!(now, target);
        let next = policy(json!([
            {"allow": true, "type": "c", "major": 240, "minor": 1, "access": "r"},
            {"allow": true, "type": "c", "major": 240, "minor": 2, "access": "m"},
        ]));
        assert_eq!(
            transition(&now, &next),
            [
                ("devices.deny", "c 240:1 w".to_string()),
                ("devices.allow", "c 240:2 m".to_string()),
            ]
        );
        assert!(transition(&next, &next).is_empty());

        // To allow-all and its deny exceptions.
        let open = policy(json!([
            {"allow": true, "access": "rwm"},
            {"allow": false, "type": "b", "major": 8, "minor": 0, "access": "w"},
        ]));
        assert_eq!(
            transition(&now, &open),
            [
                ("devices.allow", "a".to_string()),
                ("devices.deny", "b 8:0 w".to_string()),
            ]
        );
    }

    fn list_lines(p: &Policy) -> String {
        lines(p).iter().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn devices_list_parsing() {
        let p = parse_list("c 1:3 rwm\nb *:* m\nc 136:* rw\n").unwrap();
        assert!(!p.default_allow);
        assert_eq!(lines(&p), ["c 1:3 rwm", "c 136:* rw", "b *:* m"]);
        assert!(parse_list("a *:* rwm\n").unwrap().default_allow);
        assert_eq!(parse_list("").unwrap(), Policy::deny_all());
        for bad in [
            "x 1:3 rwm",
            "c 1:3",
            "c 1-3 rwm",
            "c 1:3 rwx",
            "c 1:3 r extra",
        ] {
            assert!(parse_list(bad).is_none(), "{bad}");
        }
    }

    /// Real v1 devices cgroups: the writes go through, an update changes
    /// only what differs, and the cgroup can have children meanwhile.
    #[test]
    fn v1_apply_and_update_on_the_real_devices_controller() {
        let root = Path::new("/sys/fs/cgroup/devices");
        if !root.join("devices.list").exists() {
            eprintln!("no v1 devices controller; skipped");
            return;
        }
        let cg = testing::Dir::new(root, "v1");
        let p1 = policy(json!([
            {"allow": true, "type": "c", "major": 240, "minor": 1, "access": "rw"},
        ]));
        apply_v1(cg.path(), &p1).unwrap();
        assert_eq!(read_list(cg.path()).unwrap(), p1);

        // With a child, a reset (`a`) would fail with EINVAL; an update
        // that keeps deny-all needs none.
        let child = cg.path().join("child");
        std::fs::create_dir(&child).unwrap();
        let p2 = policy(json!([
            {"allow": true, "type": "c", "major": 240, "minor": 1, "access": "r"},
            {"allow": true, "type": "b", "major": 7, "access": "r"},
        ]));
        let applied = apply_v1(cg.path(), &p2);
        let open = policy(json!([{"allow": true, "access": "rwm"}]));
        let refused = apply_v1(cg.path(), &open).unwrap_err();
        std::fs::remove_dir(&child).unwrap();
        applied.unwrap();
        assert_eq!(read_list(cg.path()).unwrap(), p2);
        assert!(
            refused.to_string().contains("devices.allow")
                && refused.to_string().contains(": Invalid argument"),
            "{refused}"
        );
        // The child goes offline a moment after its rmdir.
        let mut tries = 0;
        while let Err(e) = apply_v1(cg.path(), &open) {
            tries += 1;
            assert!(tries < 200, "{e}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(read_list(cg.path()).unwrap().default_allow);
    }
}

/// Helpers shared by the real-kernel tests of this module and `bpf.rs`.
#[cfg(test)]
pub(super) mod testing {
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};

    static NEXT: AtomicUsize = AtomicUsize::new(0);

    /// A cgroup directory made for one test and removed on drop, after
    /// moving anything left in it to the parent.
    pub struct Dir {
        path: PathBuf,
    }

    impl Dir {
        pub fn new(parent: &Path, what: &str) -> Dir {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!("berth-test-dev-{what}-{}-{n}", std::process::id()));
            std::fs::create_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Dir { path }
        }

        pub fn path(&self) -> &Path {
            &self.path
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let parent = self.path.parent().unwrap().join("cgroup.procs");
            if let Ok(procs) = std::fs::read_to_string(self.path.join("cgroup.procs")) {
                for pid in procs.lines() {
                    let _ = std::fs::write(&parent, pid);
                }
            }
            for _ in 0..100 {
                match std::fs::remove_dir(&self.path) {
                    Ok(()) => return,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
            eprintln!("could not remove {}", self.path.display());
        }
    }

    /// What an open (or mknod) in the cgroup came to.
    #[derive(Debug, PartialEq, Eq, Clone, Copy)]
    pub enum Verdict {
        Ok,
        Eperm,
    }

    /// Runs `probes` (label, shell command) in a busybox shell placed in
    /// `cgroup` before it starts them, and returns each probe's verdict.
    pub fn probe(cgroup: &Path, probes: &[(&str, String)]) -> Vec<(String, Verdict)> {
        let script: String = probes
            .iter()
            .map(|(label, cmd)| format!("echo \"{label} $( ({cmd}) 2>&1 && echo ok)\"\n"))
            .collect();
        let mut child = Command::new("/bin/busybox")
            .args(["sh", "-c", &format!("read _\n{script}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let placed = std::fs::write(cgroup.join("cgroup.procs"), child.id().to_string());
        if let Err(e) = placed {
            let _ = child.kill();
            let _ = child.wait();
            panic!("placing {} in {}: {e}", child.id(), cgroup.display());
        }
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .lines()
            .map(|line| {
                let (label, rest) = line.split_once(' ').unwrap_or((line, ""));
                let verdict = if rest == "ok" {
                    Verdict::Ok
                } else if rest.contains("Operation not permitted") {
                    Verdict::Eperm
                } else {
                    panic!("unexpected probe output {line:?} in\n{stdout}")
                };
                (label.to_string(), verdict)
            })
            .collect()
    }
}
