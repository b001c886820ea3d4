//! seccomp (runtime spec config-linux.md "Seccomp"): every action and
//! argument operator observed from inside real containers, the i386
//! architecture branch exercised by a 32-bit program, notifications
//! delivered to a listener the test runs, and bad profiles refused.

mod common;

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::thread;
use std::time::Duration;

use common::*;

const EACCES: i32 = 13;
const EDQUOT: i32 = 122;

/// Runs `script` in a container with `seccomp` as linux.seccomp; returns
/// the output (whatever the exit status).
fn run_with(t: &Berth, seccomp: Value, script: &str, nnp: bool) -> Output {
    let mut b = t.bundle(&sh(script));
    b.set("/linux/seccomp", seccomp);
    b.set("/process/noNewPrivileges", json!(nnp));
    let id = t.id("sc");
    let out = t.run(&id, &b, &[]);
    t.leak_check(&id, &b);
    out
}

#[test]
fn errno_action_returns_the_given_errno() {
    let t = berth();
    for nnp in [false, true] {
        let out = run_with(
            &t,
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["mkdir", "mkdirat", "no_such_syscall"],
                                 "action": "SCMP_ACT_ERRNO", "errnoRet": EACCES}]}),
            "mkdir /tmp/x; echo rc=$?; touch /tmp/y && echo touched",
            nnp,
        );
        out.ok();
        assert!(out.stdout.contains("rc=1"), "{out}");
        assert!(out.stdout.contains("touched"), "{out}");
        assert!(out.stderr.contains("Permission denied"), "{out}");
    }
}

#[test]
fn kill_and_trap_actions_end_the_process_with_sigsys() {
    let t = berth();
    for action in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_TRAP",
    ] {
        let out = run_with(
            &t,
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["sync"], "action": action}]}),
            // The shell forks the applet: the child is what dies.
            "sync; echo rc=$?",
            true,
        );
        out.ok();
        // 128 + SIGSYS(31)
        assert!(out.stdout.contains("rc=159"), "{action}: {out}");
        assert!(out.stderr.contains("Bad system call"), "{action}: {out}");
    }
}

#[test]
fn log_action_allows_and_logs() {
    let t = berth();
    let out = run_with(
        &t,
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_LOG"}]}),
        "uname -s; echo pid=$$",
        true,
    );
    out.ok();
    assert!(out.stdout.contains("Linux"), "{out}");
    let logged = std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_logged").unwrap();
    if logged.split_whitespace().any(|a| a == "log") {
        let found = eventually(Duration::from_secs(5), || {
            let dmesg = std::process::Command::new("dmesg").output().unwrap();
            String::from_utf8_lossy(&dmesg.stdout)
                .lines()
                .any(|l| l.contains("syscall=63") && l.contains("code=0x7ffc0000"))
        });
        assert!(found, "no audit record for the logged uname in dmesg");
    }
}

#[test]
fn trace_without_a_tracer_fails_the_call_with_enosys() {
    let t = berth();
    let out = run_with(
        &t,
        json!({"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_TRACE",
                             "errnoRet": 5}]}),
        "mkdir /tmp/x; echo rc=$?",
        true,
    );
    out.ok();
    assert!(out.stdout.contains("rc=1"), "{out}");
    assert!(out.stderr.contains("Function not implemented"), "{out}");
}

/// kill(2)'s signal argument against each operator: which of the signals
/// 1, 10, 12 and 15 the rule refuses.
#[test]
fn argument_operators_match_as_the_spec_says() {
    let t = berth();
    let cases: &[(Value, &[u32])] = &[
        (
            json!([{"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}]),
            &[10],
        ),
        (
            json!([{"index": 1, "value": 10, "op": "SCMP_CMP_NE"}]),
            &[1, 12, 15],
        ),
        (
            json!([{"index": 1, "value": 12, "op": "SCMP_CMP_LT"}]),
            &[1, 10],
        ),
        (
            json!([{"index": 1, "value": 12, "op": "SCMP_CMP_LE"}]),
            &[1, 10, 12],
        ),
        (
            json!([{"index": 1, "value": 12, "op": "SCMP_CMP_GT"}]),
            &[15],
        ),
        (
            json!([{"index": 1, "value": 12, "op": "SCMP_CMP_GE"}]),
            &[12, 15],
        ),
        (
            json!([{"index": 1, "value": 8, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]),
            &[10, 12, 15],
        ),
        // Conditions on different arguments must all hold.
        (
            json!([{"index": 0, "value": 0, "op": "SCMP_CMP_GT"},
                   {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]),
            &[15],
        ),
        (
            json!([{"index": 0, "value": 0, "op": "SCMP_CMP_LT"},
                   {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]),
            &[],
        ),
        // Conditions on the same argument are alternatives, as in runc.
        (
            json!([{"index": 1, "value": 1, "op": "SCMP_CMP_EQ"},
                   {"index": 1, "value": 15, "op": "SCMP_CMP_EQ"}]),
            &[1, 15],
        ),
    ];
    let script = "trap '' 1 10 12 15; for s in 1 10 12 15; do \
                  if kill -$s $$ 2>/dev/null; then echo \"$s ok\"; else echo \"$s denied\"; fi; done";
    for (args, denied) in cases {
        let out = run_with(
            &t,
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": args}]}),
            script,
            true,
        );
        out.ok();
        for s in [1, 10, 12, 15] {
            let want = if denied.contains(&s) { "denied" } else { "ok" };
            assert!(
                out.stdout.lines().any(|l| l == format!("{s} {want}")),
                "{args}: signal {s} should be {want}:\n{out}"
            );
        }
    }
}

/// A static i386 program: mkdir("/tmp/d32", 0755), then exit with the
/// syscall's return value (0, or 256 - errno).
fn write_i386_mkdir(path: &Path) {
    const BASE: u32 = 0x0804_8000;
    const CODE: u32 = 84;
    let code = |path_addr: u32| {
        let mut c = vec![0xb8];
        c.extend(39u32.to_le_bytes()); // mov eax, __NR_mkdir
        c.push(0xbb);
        c.extend(path_addr.to_le_bytes()); // mov ebx, path
        c.push(0xb9);
        c.extend(0o755u32.to_le_bytes()); // mov ecx, 0755
        c.extend([0xcd, 0x80]); // int 0x80
        c.extend([0x89, 0xc3]); // mov ebx, eax
        c.push(0xb8);
        c.extend(1u32.to_le_bytes()); // mov eax, __NR_exit
        c.extend([0xcd, 0x80]); // int 0x80
        c
    };
    let len = code(0).len() as u32;
    let mut text = code(BASE + CODE + len);
    text.extend(b"/tmp/d32\0");
    let total = CODE + text.len() as u32;
    let mut elf = b"\x7fELF\x01\x01\x01\0\0\0\0\0\0\0\0\0".to_vec();
    for v in [2u16, 3] {
        elf.extend(v.to_le_bytes()); // ET_EXEC, EM_386
    }
    for v in [1u32, BASE + CODE, 52, 0, 0] {
        elf.extend(v.to_le_bytes()); // version, entry, phoff, shoff, flags
    }
    for v in [52u16, 32, 1, 0, 0, 0] {
        elf.extend(v.to_le_bytes()); // ehsize, phentsize, phnum, sh*
    }
    for v in [1u32, 0, BASE, BASE, total, total, 5, 0x1000] {
        elf.extend(v.to_le_bytes()); // PT_LOAD r-x
    }
    elf.extend(text);
    std::fs::write(path, elf).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn i386_code_is_filtered_by_its_own_numbers() {
    let t = berth();
    let run32 = |arches: Value, names: Value| {
        let mut b = t.bundle(&sh("/mk32; echo rc32=$?; mkdir /tmp/d64; echo rc64=$?"));
        write_i386_mkdir(&b.rootfs().join("mk32"));
        b.set(
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": arches,
                   "syscalls": [{"names": names, "action": "SCMP_ACT_ERRNO",
                                 "errnoRet": EACCES}]}),
        );
        let id = t.id("i386");
        let out = t.run(&id, &b, &[]);
        t.leak_check(&id, &b);
        out.ok();
        out
    };
    // mkdir is 39 on i386 and 83 on x86_64: each branch uses its own table.
    let out = run32(
        json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
        json!(["mkdir"]),
    );
    assert!(
        out.stdout.contains(&format!("rc32={}", 256 - EACCES)),
        "{out}"
    );
    // The 64-bit mkdir applet may use mkdirat: it must not be refused.
    let out = run32(
        json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]),
        json!(["rmdir"]),
    );
    assert!(out.stdout.contains("rc32=0"), "{out}");
    assert!(out.stdout.contains("rc64=0"), "{out}");
    // An architecture the profile does not list is killed.
    let out = run32(json!(["SCMP_ARCH_X86_64"]), json!(["rmdir"]));
    assert!(out.stdout.contains("rc32=159"), "{out}");
    assert!(out.stdout.contains("rc64=0"), "{out}");
}

// struct seccomp_notif / seccomp_notif_resp and their ioctls.
#[repr(C)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}
#[repr(C)]
struct NotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}
const NOTIF_RECV: libc::c_ulong = 0xc050_2100;
const NOTIF_SEND: libc::c_ulong = 0xc018_2101;

/// Accepts one connection on `sock`, returns the state message and the
/// descriptor, then answers every notification with `-errno`.
fn listener(sock: UnixListener, errno: i32) -> thread::JoinHandle<(Value, i32)> {
    thread::spawn(move || {
        let (conn, _) = sock.accept().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let (n, fd) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let r = nix::sys::socket::recvmsg::<()>(
                conn.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                nix::sys::socket::MsgFlags::empty(),
            )
            .unwrap();
            let mut fd = None;
            for c in r.cmsgs().unwrap() {
                if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                    // SAFETY: the descriptor was just received and is ours.
                    fd = Some(unsafe { OwnedFd::from_raw_fd(fds[0]) });
                }
            }
            (r.bytes, fd.expect("no descriptor with the state"))
        };
        let state: Value = serde_json::from_slice(&buf[..n]).unwrap();
        let mut handled = 0;
        loop {
            // SAFETY: all-zero is a valid seccomp_notif (plain integers).
            let mut req: Notif = unsafe { std::mem::zeroed() };
            // SAFETY: NOTIF_RECV fills a struct seccomp_notif.
            let r = unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_RECV, &mut req) };
            if r != 0 {
                // The filter's last user is gone.
                break;
            }
            let resp = NotifResp {
                id: req.id,
                val: 0,
                error: -errno,
                flags: 0,
            };
            // SAFETY: NOTIF_SEND reads a struct seccomp_notif_resp.
            unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_SEND, &resp) };
            handled += 1;
        }
        (state, handled)
    })
}

#[test]
fn notify_hands_the_descriptor_and_state_to_the_listener() {
    let t = berth();
    for nnp in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("listener.sock");
        let handle = listener(UnixListener::bind(&path).unwrap(), EDQUOT);
        let mut b = t.bundle(&sh(
            "mkdir /tmp/x; echo rc=$?; touch /tmp/y && echo touched",
        ));
        b.set(
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "listenerPath": path, "listenerMetadata": "meta-data",
                   "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}),
        );
        b.set("/process/noNewPrivileges", json!(nnp));
        let id = t.id("notify");
        let out = t.run(&id, &b, &[]);
        t.leak_check(&id, &b);
        out.ok();
        assert!(out.stdout.contains("rc=1"), "{out}");
        assert!(out.stdout.contains("touched"), "{out}");
        assert!(out.stderr.contains("Disk quota exceeded"), "{out}");
        let (state, handled) = handle.join().unwrap();
        assert!(handled >= 1, "{state}");
        assert_eq!(state["fds"], json!(["seccompFd"]), "{state}");
        assert_eq!(state["metadata"], "meta-data", "{state}");
        assert_eq!(state["state"]["id"], id.as_str(), "{state}");
        assert!(state["pid"].as_i64().unwrap() > 0, "{state}");
        assert_eq!(state["pid"], state["state"]["pid"], "{state}");
        assert!(state["ociVersion"].is_string(), "{state}");
    }
}

#[test]
fn unreachable_listener_fails_the_container_and_leaves_nothing() {
    let t = berth();
    for nnp in [false, true] {
        let mut b = t.bundle(&["true"]);
        b.set(
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/nonexistent/l.sock",
                   "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
        );
        b.set("/process/noNewPrivileges", json!(nnp));
        let id = t.id("nolistener");
        let want = ["seccomp listener", "/nonexistent/l.sock"];
        if nnp {
            // Loaded right before execve: the descriptor goes out at start.
            t.create(&id, &b, &[]).ok();
            t.start(&id).fails().stderr_has(&want);
            t.delete(&id, true).ok();
        } else {
            t.create(&id, &b, &[]).fails().stderr_has(&want);
        }
        t.leak_check(&id, &b);
    }
}

#[test]
fn bad_profiles_are_refused_naming_the_field() {
    let t = berth();
    let cases = [
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                 "args": [{"index": 7, "value": 0, "op": "SCMP_CMP_EQ"}]}]}),
            "linux.seccomp.syscalls[0].args[0].index",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}),
            "linux.seccomp.listenerPath",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_BOGUS"}),
            "linux.seccomp.defaultAction",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_FOO"}]}]}),
            "linux.seccomp.syscalls[0].args[0].op",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 99999}),
            "linux.seccomp.defaultErrnoRet",
        ),
    ];
    for (profile, field) in cases {
        let mut b = t.bundle(&["true"]);
        b.set("/linux/seccomp", profile);
        let id = t.id("badsc");
        t.create(&id, &b, &[]).fails().stderr_has(&[field]);
        t.leak_check(&id, &b);
    }
}

/// Docker's default profile, as `berth spec --seccomp` writes it, is
/// enforced: with CAP_SYS_ADMIN in the process but a profile made for
/// runc's default capabilities, unshare(2) is refused by the filter alone.
#[test]
fn docker_default_profile_is_enforced() {
    let t = berth();
    let caps: Vec<String> = berth::spec::example(false)
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref()?.bounding().clone())
        .unwrap()
        .iter()
        .map(|c| format!("CAP_{c}"))
        .collect();
    assert!(!caps.iter().any(|c| c == "CAP_SYS_ADMIN"), "{caps:?}");
    let profile = berth::seccomp::default_profile(&caps);
    let script = "unshare -m true; echo rc=$?; grep '^Seccomp:' /proc/self/status; echo hi";
    for with_profile in [false, true] {
        let mut b = t.bundle(&sh(script));
        for set in ["bounding", "effective", "permitted"] {
            b.push(
                &format!("/process/capabilities/{set}"),
                json!("CAP_SYS_ADMIN"),
            );
        }
        if with_profile {
            b.set("/linux/seccomp", serde_json::to_value(&profile).unwrap());
        }
        let id = t.id("docker");
        let out = t.run(&id, &b, &[]);
        t.leak_check(&id, &b);
        out.ok();
        assert!(out.stdout.contains("hi"), "{out}");
        if with_profile {
            assert!(out.stdout.contains("Seccomp:\t2"), "{out}");
            assert!(!out.stdout.contains("rc=0"), "{out}");
            assert!(out.stderr.contains("Operation not permitted"), "{out}");
        } else {
            assert!(out.stdout.contains("Seccomp:\t0"), "{out}");
            assert!(out.stdout.contains("rc=0"), "{out}");
        }
    }
}
