//! config-linux.md "Devices" and "Default Devices", runtime-linux.md
//! "/dev symbolic links", and the device controller of "Control groups":
//! each device node exists with its type, numbers, mode and owner, and
//! the cgroup allows only what the config lists.

use serde_json::json;

use crate::case::{eq, inside, Case, Expect};

const DEVICES: &str = "config-linux.md#devices";

pub fn cases(v: &mut Vec<Case>) {
    for (name, nums) in [
        ("null", "1:3"),
        ("zero", "1:5"),
        ("full", "1:7"),
        ("random", "1:8"),
        ("urandom", "1:9"),
        ("tty", "5:0"),
    ] {
        v.push(
            inside(
                format!("devices.default./dev/{name}"),
                "config-linux.md#default-devices",
            )
            .expect(
                format!("stat:/dev/{name}"),
                eq(format!("c 0666 0 0 {nums}")),
            )
            .expect(
                format!("open:/dev/{name}"),
                // Without a controlling terminal, /dev/tty opens ENXIO:
                // the device is there and reached the driver.
                eq(if name == "tty" { "!ENXIO" } else { "ok" }),
            ),
        );
    }
    v.push(
        inside(
            "devices.default.writable",
            "config-linux.md#default-devices",
        )
        .expect("openw:/dev/null", eq("ok"))
        .expect("openw:/dev/zero", eq("ok")),
    );
    v.push(
        inside(
            "devices.default./dev/ptmx",
            "config-linux.md#default-devices",
        )
        .expect("readlink:/dev/ptmx", eq("pts/ptmx"))
        .expect("open:/dev/ptmx", eq("ok")),
    );
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        v.push(
            inside(
                format!("devices.symlink./dev/{link}"),
                "runtime-linux.md#dev-symbolic-links",
            )
            .expect(format!("readlink:/dev/{link}"), eq(target)),
        );
    }
    v.push(
        inside(
            "devices.no-console-without-terminal",
            "config-linux.md#default-devices",
        )
        .expect("stat:/dev/console", Expect::Errno("ENOENT")),
    );
    v.push(
        inside("devices.char", DEVICES)
            .push(
                "/linux/devices",
                json!({"path": "/dev/conf-null", "type": "c", "major": 1, "minor": 3,
                       "fileMode": 0o640, "uid": 1000, "gid": 1001}),
            )
            .expect("stat:/dev/conf-null", eq("c 0640 1000 1001 1:3")),
    );
    v.push(
        inside("devices.unbuffered-char", DEVICES)
            .push(
                "/linux/devices",
                json!({"path": "/dev/conf-zero", "type": "u", "major": 1, "minor": 5,
                       "fileMode": 0o600}),
            )
            .expect("stat:/dev/conf-zero", eq("c 0600 0 0 1:5")),
    );
    v.push(
        inside("devices.block", DEVICES)
            .push(
                "/linux/devices",
                json!({"path": "/dev/conf-loop", "type": "b", "major": 7, "minor": 200,
                       "fileMode": 0o660, "uid": 0, "gid": 6}),
            )
            .expect("stat:/dev/conf-loop", eq("b 0660 0 6 7:200")),
    );
    v.push(
        inside("devices.fifo", DEVICES)
            .push(
                "/linux/devices",
                json!({"path": "/dev/conf-fifo", "type": "p", "fileMode": 0o620}),
            )
            .expect("stat:/dev/conf-fifo", eq("p 0620 0 0")),
    );
    v.push(
        inside("devices.nested-path", DEVICES)
            .push(
                "/linux/devices",
                json!({"path": "/dev/conf/sub/null", "type": "c", "major": 1, "minor": 3,
                       "fileMode": 0o666}),
            )
            .expect("stat:/dev/conf/sub/null", eq("c 0666 0 0 1:3")),
    );
    // /dev/kmsg (1:11) is not a default device; opening it for writing
    // needs no capability, so only the device controller can refuse it.
    v.push(
        kmsg("devices.cgroup.denied-by-default")
            .expect("stat:/dev/conf-kmsg", eq("c 0666 0 0 1:11"))
            .expect("openw:/dev/conf-kmsg", Expect::Errno("EPERM")),
    );
    v.push(
        kmsg("devices.cgroup.allow")
            .push("/linux/resources/devices", allow_kmsg(true, "rwm"))
            .expect("openw:/dev/conf-kmsg", eq("ok")),
    );
    v.push(
        kmsg("devices.cgroup.access-w")
            .push("/linux/resources/devices", allow_kmsg(true, "w"))
            .expect("openw:/dev/conf-kmsg", eq("ok")),
    );
    v.push(
        kmsg("devices.cgroup.access-r-only")
            .push("/linux/resources/devices", allow_kmsg(true, "r"))
            .expect("openw:/dev/conf-kmsg", Expect::Errno("EPERM")),
    );
    v.push(
        kmsg("devices.cgroup.later-deny-wins")
            .push("/linux/resources/devices", allow_kmsg(true, "rwm"))
            .push("/linux/resources/devices", allow_kmsg(false, "w"))
            .expect("openw:/dev/conf-kmsg", Expect::Errno("EPERM")),
    );
}

/// A case whose container has /dev/conf-kmsg (1:11).
fn kmsg(name: &str) -> Case {
    inside(name, "config-linux.md#allowed-device-list").push(
        "/linux/devices",
        json!({"path": "/dev/conf-kmsg", "type": "c", "major": 1, "minor": 11,
               "fileMode": 0o666}),
    )
}

fn allow_kmsg(allow: bool, access: &str) -> serde_json::Value {
    json!({"allow": allow, "type": "c", "major": 1, "minor": 11, "access": access})
}
