//! config-linux.md "Namespaces", "User namespace mappings", "Offset for
//! Time Namespace": a new namespace differs from the host's, one not
//! asked for is the host's, a joined one is the path's.

use serde_json::json;

use crate::case::{inside, Case, Expect};

const TYPES: [(&str, &str); 8] = [
    ("pid", "pid"),
    ("network", "net"),
    ("ipc", "ipc"),
    ("uts", "uts"),
    ("mount", "mnt"),
    ("cgroup", "cgroup"),
    ("user", "user"),
    ("time", "time"),
];

fn differs(link: &'static str) -> Expect {
    Expect::Custom(Box::new(move |got, env| {
        let host = env.host.ns(link);
        if got == host {
            Err(format!("{got} is the host's"))
        } else if got.starts_with('!') || !got.starts_with(link) {
            Err(format!("got {got}"))
        } else {
            Ok(())
        }
    }))
}

fn same(link: &'static str) -> Expect {
    Expect::Custom(Box::new(move |got, env| {
        let host = env.host.ns(link);
        if got == host {
            Ok(())
        } else {
            Err(format!("{got}, the host's is {host}"))
        }
    }))
}

fn with_user(c: &mut serde_json::Value) {
    c["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({"type": "user"}));
    c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
}

pub fn cases(v: &mut Vec<Case>) {
    for (ty, link) in TYPES {
        v.push(
            inside(format!("namespaces.{ty}.new"), "config-linux.md#namespaces")
                .edit(move |c, _| {
                    if ty == "user" {
                        with_user(c);
                    } else if !c["linux"]["namespaces"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|n| n["type"] == ty))
                    {
                        crate::case::push(c, "/linux/namespaces", json!({"type": ty}));
                    }
                })
                .expect(format!("ns:{link}"), differs(link)),
        );
    }
    for (ty, link) in TYPES {
        if ty == "mount" {
            continue;
        }
        v.push(
            inside(
                format!("namespaces.{ty}.host"),
                "config-linux.md#namespaces",
            )
            .edit(move |c, _| {
                if let Some(a) = c["linux"]["namespaces"].as_array_mut() {
                    a.retain(|n| n["type"] != ty);
                }
                if ty == "uts" {
                    // A hostname needs its own UTS namespace.
                    if let Some(o) = c.as_object_mut() {
                        o.remove("hostname");
                    }
                }
            })
            .expect(format!("ns:{link}"), same(link)),
        );
    }
    v.push(
        inside("namespaces.network.path", "config-linux.md#namespaces")
            .edit(|c, _| {
                for n in c["linux"]["namespaces"].as_array_mut().expect("namespaces") {
                    if n["type"] == "network" {
                        // The driver's own: the host's network namespace.
                        n["path"] = json!(format!("/proc/{}/ns/net", std::process::id()));
                    }
                }
            })
            .expect("ns:net", same("net")),
    );
    v.push(
        inside("namespaces.pid.init-is-1", "config-linux.md#namespaces")
            .expect("pid", crate::case::eq("1")),
    );
    v.push(
        inside(
            "namespaces.user.mappings",
            "config-linux.md#user-namespace-mappings",
        )
        .edit(|c, _| with_user(c))
        .expect(
            "read:/proc/self/uid_map",
            Expect::Custom(Box::new(|got, _| map(got))),
        )
        .expect(
            "read:/proc/self/gid_map",
            Expect::Custom(Box::new(|got, _| map(got))),
        )
        .expect("uid", crate::case::eq("0")),
    );
    v.push(
        inside(
            "namespaces.time.offsets",
            "config-linux.md#offset-for-time-namespace",
        )
        .edit(|c, _| {
            crate::case::push(c, "/linux/namespaces", json!({"type": "time"}));
            c["linux"]["timeOffsets"] = json!({"boottime": {"secs": 864000, "nanosecs": 0}});
        })
        .expect(
            "read:/proc/uptime",
            Expect::Custom(Box::new(|got, _| {
                let up: f64 = got
                    .split(' ')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("uptime {got:?}"))?;
                if up >= 864000.0 {
                    Ok(())
                } else {
                    Err(format!("uptime {up} lacks the 864000 s offset"))
                }
            })),
        ),
    );
}

fn map(got: &str) -> Result<(), String> {
    let f: Vec<&str> = got.split_whitespace().collect();
    if f == ["0", "100000", "65536"] {
        Ok(())
    } else {
        Err(format!("map {got:?}"))
    }
}
