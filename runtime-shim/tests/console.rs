//! Terminals (runtime spec `process.terminal`, `process.consoleSize`, and
//! runc's `--console-socket` convention): the pty master arrives over
//! SCM_RIGHTS and carries the container's output.

mod common;

use std::time::Duration;

use common::*;
use testbed::{read_pty, ConsoleSocket};

#[test]
fn console_socket_receives_the_pty_master() {
    let t = berth();
    let sock = ConsoleSocket::bind(t.dir().join("console.sock")).unwrap();
    let mut b = t.bundle(&sh(
        "tty; stty size; stat -c %t /dev/console; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-ttys",
    ));
    b.set("/process/terminal", json!(true))
        .set("/process/consoleSize", json!({"height": 33, "width": 101}));
    let id = t.id("console");
    t.create(
        &id,
        &b,
        &["--console-socket", sock.path().to_str().unwrap()],
    )
    .ok();
    let master = sock.recv_master(Duration::from_secs(10)).unwrap();
    t.start(&id).ok();
    let out = read_pty(&master, Duration::from_secs(10));
    let lines: Vec<&str> = out.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(
        lines[0] == "/dev/pts/0" || lines[0] == "/dev/console",
        "tty printed {:?}",
        lines[0]
    );
    assert_eq!(lines[1], "33 101");
    // /dev/console is the pty slave (Unix98 pty major 136).
    assert_eq!(lines[2], "88");
    assert_eq!(lines[3], "all-ttys");
    assert!(t.wait_status(&id, "stopped", Duration::from_secs(10)));
    t.delete(&id, false).ok();
    t.leak_check(&id, &b);
}

#[test]
fn input_written_to_the_master_reaches_the_container() {
    let t = berth();
    let sock = ConsoleSocket::bind(t.dir().join("console.sock")).unwrap();
    let mut b = t.bundle(&sh("stty -echo; read line; echo \"got:$line\""));
    b.set("/process/terminal", json!(true));
    let id = t.id("console-in");
    t.create(
        &id,
        &b,
        &["--console-socket", sock.path().to_str().unwrap()],
    )
    .ok();
    let master = sock.recv_master(Duration::from_secs(10)).unwrap();
    t.start(&id).ok();
    // Wait for the prompt-less read, then type a line.
    std::thread::sleep(Duration::from_millis(300));
    testbed::nix::unistd::write(&master, b"hello\n").unwrap();
    let out = read_pty(&master, Duration::from_secs(10));
    assert!(out.contains("got:hello"), "pty output {out:?}");
    assert!(t.wait_status(&id, "stopped", Duration::from_secs(10)));
    t.delete(&id, false).ok();
    t.leak_check(&id, &b);
}

#[test]
fn terminal_without_console_socket_fails_create() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.set("/process/terminal", json!(true));
    let id = t.id("noconsole");
    t.create(&id, &b, &[]).fails();
    t.leak_check(&id, &b);
}

#[test]
fn unreachable_console_socket_fails_create() {
    let t = berth();
    let mut b = t.bundle(&["true"]);
    b.set("/process/terminal", json!(true));
    let id = t.id("badconsole");
    let missing = t.dir().join("missing.sock");
    let o = t.create(&id, &b, &["--console-socket", missing.to_str().unwrap()]);
    o.fails().stderr_has(&["missing.sock"]);
    t.leak_check(&id, &b);
}
