//! config.md "Mounts" and config-linux.md "Rootfs Mount Propagation":
//! each mount lands at its destination with its type and options, bind
//! mounts show the host's files, destinations are made and resolved inside
//! the root file system, and later mounts stack on earlier ones.

use serde_json::{json, Value};

use crate::case::{eq, inside, Case, Env, Expect};

const MOUNTS: &str = "config.md#mounts";

/// The mount's type, options or superblock options (a `mount:` answer)
/// include each of `want`, and its options none of `not`.
pub fn options(want: &'static [&'static str], not: &'static [&'static str]) -> Expect {
    Expect::Custom(Box::new(move |got, _| {
        if got.starts_with('!') {
            return Err(format!("got {got}"));
        }
        let mut f = got.split(' ');
        let fstype = f.next().unwrap_or("");
        let opts: Vec<&str> = f.next().unwrap_or("").split(',').collect();
        let sup: Vec<&str> = f.next().unwrap_or("").split(',').collect();
        let has = |o: &str| opts.contains(&o) || sup.contains(&o) || o == fstype;
        if let Some(o) = want.iter().find(|o| !has(o)) {
            return Err(format!("{got:?} lacks {o}"));
        }
        // Only the mount's own options can be excluded: a read-only mount
        // of a tmpfs keeps `rw` among the superblock's.
        if let Some(o) = not.iter().find(|o| opts.contains(o)) {
            return Err(format!("{got:?} has {o}"));
        }
        Ok(())
    }))
}

/// A `mounts` entry.
fn entry(dest: &str, ty: &str, source: &str, opts: &[&str]) -> Value {
    json!({"destination": dest, "type": ty, "source": source, "options": opts})
}

/// A host directory under the case's scratch space holding one file.
fn host_dir(env: &Env, name: &str) -> String {
    let d = env.scratch.join(name);
    let _ = std::fs::create_dir_all(&d);
    let _ = std::fs::write(d.join("from-host"), "host data\n");
    d.display().to_string()
}

fn bind(name: &str, opts: &'static [&'static str]) -> Case {
    inside(format!("mounts.bind.{name}"), MOUNTS).edit(move |c, env| {
        let src = host_dir(env, "bind");
        let mut o = vec!["rbind"];
        o.extend_from_slice(opts);
        crate::case::push(c, "/mounts", entry("/conf-bind", "bind", &src, &o));
    })
}

pub fn cases(v: &mut Vec<Case>) {
    v.push(
        inside("mounts.tmpfs", MOUNTS)
            .push(
                "/mounts",
                entry(
                    "/conf-tmp",
                    "tmpfs",
                    "tmpfs",
                    &["nosuid", "nodev", "size=1m"],
                ),
            )
            .expect(
                "mount:/conf-tmp",
                options(&["tmpfs", "nosuid", "nodev", "size=1024k"], &[]),
            )
            .expect("create:/conf-tmp/x", eq("ok")),
    );
    v.push(
        inside("mounts.tmpfs.mode-uid-gid", MOUNTS)
            .push(
                "/mounts",
                entry(
                    "/conf-tmp",
                    "tmpfs",
                    "tmpfs",
                    &["mode=0710", "uid=1000", "gid=1001"],
                ),
            )
            .expect("stat:/conf-tmp", eq("d 0710 1000 1001")),
    );
    v.push(
        inside("mounts.tmpfs.ro", MOUNTS)
            .push("/mounts", entry("/conf-tmp", "tmpfs", "tmpfs", &["ro"]))
            .expect("mount:/conf-tmp", options(&["ro"], &["rw"]))
            .expect("create:/conf-tmp/x", Expect::Errno("EROFS")),
    );
    v.push(
        inside("mounts.tmpfs.noexec", MOUNTS)
            .push("/mounts", entry("/conf-tmp", "tmpfs", "tmpfs", &["noexec"]))
            .expect("mount:/conf-tmp", options(&["noexec"], &[])),
    );
    for (opt, shown) in [
        ("noatime", "noatime"),
        ("strictatime", ""),
        ("relatime", "relatime"),
        ("nodiratime", "nodiratime"),
    ] {
        v.push(
            inside(format!("mounts.tmpfs.{opt}"), MOUNTS)
                .push("/mounts", entry("/conf-tmp", "tmpfs", "tmpfs", &[opt]))
                .expect(
                    "mount:/conf-tmp",
                    Expect::Custom(Box::new(move |got, _| {
                        let opts = got.split(' ').nth(1).unwrap_or("");
                        let atime: Vec<&str> =
                            opts.split(',').filter(|o| o.ends_with("atime")).collect();
                        let ok = if shown.is_empty() {
                            atime.is_empty()
                        } else {
                            atime.contains(&shown)
                        };
                        if ok {
                            Ok(())
                        } else {
                            Err(format!("options {opts:?} for {opt}"))
                        }
                    })),
                ),
        );
    }
    v.push(
        bind("sees-host-files", &[])
            .probe("write:/conf-bind/from-container")
            .expect("read:/conf-bind/from-host", eq("host data"))
            .after(|_, env| {
                let f = env.scratch.join("bind/from-container");
                match std::fs::read_to_string(&f) {
                    Ok(t) if t == "container data\n" => Ok(()),
                    r => Err(format!("{}: {r:?}", f.display())),
                }
            }),
    );
    v.push(
        bind("ro", &["ro"])
            .expect("mount:/conf-bind", options(&["ro"], &[]))
            .expect("create:/conf-bind/x", Expect::Errno("EROFS"))
            .expect("read:/conf-bind/from-host", eq("host data")),
    );
    v.push(
        bind("nosuid-nodev-noexec", &["nosuid", "nodev", "noexec"]).expect(
            "mount:/conf-bind",
            options(&["nosuid", "nodev", "noexec"], &[]),
        ),
    );
    v.push(
        bind("rw-by-default", &[])
            .expect("mount:/conf-bind", options(&["rw"], &["ro"]))
            .expect("create:/conf-bind/x", eq("ok")),
    );
    v.push(
        inside("mounts.bind.file", MOUNTS)
            .edit(|c, env| {
                let src = host_dir(env, "bind");
                let file = format!("{src}/from-host");
                crate::case::push(
                    c,
                    "/mounts",
                    entry("/etc/conf-file", "bind", &file, &["bind", "ro"]),
                );
            })
            .expect("stat:/etc/conf-file", Expect::Contains("f 0644".into()))
            .expect("read:/etc/conf-file", eq("host data")),
    );
    v.push(
        inside("mounts.bind.no-type", MOUNTS)
            .edit(|c, env| {
                let src = host_dir(env, "bind");
                crate::case::push(
                    c,
                    "/mounts",
                    json!({"destination": "/conf-bind", "source": src,
                           "options": ["rbind", "rprivate"]}),
                );
            })
            .expect("read:/conf-bind/from-host", eq("host data")),
    );
    v.push(
        inside("mounts.bind.recursive", MOUNTS)
            // The host's /dev has devpts on /dev/pts: an rbind carries it
            // along, a plain bind does not.
            .push(
                "/mounts",
                entry("/conf-rbind", "bind", "/dev", &["rbind", "ro"]),
            )
            .push(
                "/mounts",
                entry("/conf-bind", "bind", "/dev", &["bind", "ro"]),
            )
            .expect("mount:/conf-rbind/pts", options(&["devpts"], &[]))
            .expect("mount:/conf-bind/pts", Expect::Errno("ENOENT")),
    );
    v.push(
        inside("mounts.destination-created", MOUNTS)
            .push("/mounts", entry("/conf/a/b/c", "tmpfs", "tmpfs", &[]))
            .expect("mount:/conf/a/b/c", options(&["tmpfs"], &[]))
            .expect("stat:/conf/a", Expect::Contains("d ".into())),
    );
    v.push(
        inside("mounts.order.later-on-top", MOUNTS)
            .push(
                "/mounts",
                entry("/conf-tmp", "tmpfs", "tmpfs", &["size=1m"]),
            )
            .push(
                "/mounts",
                entry("/conf-tmp/inner", "tmpfs", "tmpfs", &["size=2m"]),
            )
            .expect("mount:/conf-tmp/inner", options(&["size=2048k"], &[]))
            .expect("mount:/conf-tmp", options(&["size=1024k"], &[])),
    );
    v.push(
        inside("mounts.destination-symlink-stays-inside", MOUNTS)
            .edit(|c, env| {
                // /conf-link -> /etc/conf-target in the rootfs: the mount
                // must land under the rootfs, never on the host's /etc.
                let link = env.bundle.join("rootfs/conf-link");
                let _ = std::fs::create_dir_all(env.bundle.join("rootfs/etc/conf-target"));
                let _ = std::os::unix::fs::symlink("/etc/conf-target", link);
                crate::case::push(c, "/mounts", entry("/conf-link", "tmpfs", "tmpfs", &[]));
            })
            .expect("mount:/etc/conf-target", options(&["tmpfs"], &[]))
            .after(|_, _| {
                if std::path::Path::new("/etc/conf-target").exists() {
                    Err("the mount escaped to the host's /etc/conf-target".into())
                } else {
                    Ok(())
                }
            }),
    );
    v.push(
        inside("mounts.proc", MOUNTS)
            .expect("mount:/proc", options(&["proc", "rw"], &[]))
            .expect("read:/proc/self/comm", eq("conformance-che")),
    );
    v.push(inside("mounts.sysfs", MOUNTS).expect(
        "mount:/sys",
        options(&["sysfs", "ro", "nosuid", "nodev", "noexec"], &[]),
    ));
    v.push(
        inside("mounts.devpts", MOUNTS)
            .expect(
                "mount:/dev/pts",
                options(
                    &[
                        "devpts",
                        "nosuid",
                        "noexec",
                        "gid=5",
                        "mode=620",
                        "ptmxmode=666",
                    ],
                    &[],
                ),
            )
            .expect("stat:/dev/pts/ptmx", Expect::Contains("c 0666".into())),
    );
    v.push(inside("mounts.dev-shm", MOUNTS).expect(
        "mount:/dev/shm",
        options(&["tmpfs", "nosuid", "nodev", "noexec", "size=65536k"], &[]),
    ));
    v.push(inside("mounts.mqueue", MOUNTS).expect(
        "mount:/dev/mqueue",
        options(&["mqueue", "nosuid", "nodev", "noexec"], &[]),
    ));
    v.push(
        inside("mounts.cgroup", MOUNTS)
            // The container's own cgroup, read-only (the base config's
            // cgroup mount has `ro`).
            .expect("cgroup:pids/cgroup.procs|cgroup.procs", eq("1"))
            .expect(
                "cgroup-mkdir:pids/conf-sub|conf-sub",
                Expect::Errno("EROFS"),
            ),
    );
    v.push(
        inside("mounts.no-mounts-no-proc", MOUNTS)
            .edit(|c, _| {
                if let Some(m) = c["mounts"].as_array_mut() {
                    m.retain(|m| {
                        m["destination"] != "/proc" && m["destination"] != "/sys/fs/cgroup"
                    });
                }
            })
            .expect("ls:/proc", eq("")),
    );
    for (p, want) in [
        ("private", "private"),
        ("slave", "master"),
        ("shared", "shared"),
    ] {
        v.push(
            inside(
                format!("rootfsPropagation.{p}"),
                "config-linux.md#rootfs-mount-propagation",
            )
            .set("/linux/rootfsPropagation", json!(p))
            .expect(
                "mount:/",
                Expect::Custom(Box::new(move |got, _| {
                    let prop = got.split(' ').nth(3).unwrap_or("");
                    let ok = match want {
                        "private" => prop == "private",
                        // A slave of a private mount has no master, so
                        // it shows as private: what matters is that the
                        // container's mounts do not reach the host.
                        "master" => !prop.contains("shared"),
                        _ => prop.split(',').any(|x| x == want),
                    };
                    if ok {
                        Ok(())
                    } else {
                        Err(format!("propagation {prop:?}, want {want}"))
                    }
                })),
            ),
        );
    }
}
