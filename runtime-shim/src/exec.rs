//! `berth exec`: runc's flags mapped onto a process spec, then the
//! library's [`berth::Container::exec`], waiting for the process (with its
//! terminal and berth's signals relayed) unless `--detach`.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use berth::{Container, ExecOptions, Runtime};
use oci_spec::runtime::Process;
use serde_json::{json, Value};

use crate::cli::ExecArgs;
use crate::commands::{check_terminal, relay_and_wait};
use crate::{console, signals};

pub fn exec(rt: &Runtime, args: &ExecArgs) -> Result<i32> {
    if args.apparmor.is_some() {
        bail!("--apparmor: unsupported: berth has no AppArmor support");
    }
    if args.process_label.is_some() {
        bail!("--process-label: unsupported: berth has no SELinux support");
    }
    let container = rt.load(&args.id)?;
    let process = match &args.process {
        Some(path) => read_process(path)?,
        None => process_from_flags(&container, args)?,
    };
    let terminal = process.terminal().unwrap_or(false);
    check_terminal(terminal, args.detach, args.console_socket.is_some())?;
    let mut opts = ExecOptions {
        console_socket: args.console_socket.clone(),
        pid_file: args.pid_file.clone(),
        preserve_fds: args.preserve_fds,
    };
    if args.detach {
        container.exec(&process, &opts)?;
        return Ok(0);
    }
    // Blocked before the process starts: a signal sent to berth once the
    // process runs must reach it, not kill berth (the process's setup
    // resets its mask).
    let blocked = signals::block().context("block signals for forwarding")?;
    let socket = terminal.then(console::ConsoleSocket::new).transpose()?;
    opts.console_socket = socket.as_ref().map(|s| s.path().to_path_buf());
    let child = container.exec(&process, &opts)?;
    let pid = child.pid();
    let forward = move |sig| {
        // SAFETY: kill(2) with integer arguments; the pid is our child
        // until we reap it below.
        if unsafe { libc::kill(pid, sig) } != 0 {
            tracing::debug!(
                signal = sig,
                "forward signal to {pid}: {}",
                std::io::Error::last_os_error()
            );
        }
    };
    relay_and_wait(blocked, socket, forward, || Ok(child.wait()?))
}

/// A process.json, as `--process` names it.
fn read_process(path: &Path) -> Result<Process> {
    let text = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let de = &mut serde_json::Deserializer::from_slice(&text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        anyhow::anyhow!("{}: {}: {}", path.display(), at, e.into_inner())
    })
}

/// The container's own process with runc's flag overrides: the command,
/// --cwd, --env (appended, so it overrides), --tty, --no-new-privs, --user,
/// --additional-gids and --cap.
fn process_from_flags(container: &Container, args: &ExecArgs) -> Result<Process> {
    if args.command.is_empty() {
        bail!("exec: no command: give one after the container id, or use --process FILE");
    }
    let spec = container.spec().with_context(|| {
        format!(
            "container {}: the saved config is unreadable",
            container.id()
        )
    })?;
    let mut p = serde_json::to_value(spec.process().clone().unwrap_or_default())?;
    p["args"] = json!(args.command);
    if let Some(cwd) = &args.cwd {
        p["cwd"] = json!(cwd);
    }
    let env = p["env"].as_array().cloned().unwrap_or_default();
    p["env"] = Value::Array(
        env.into_iter()
            .chain(args.env.iter().map(|e| json!(e)))
            .collect(),
    );
    p["terminal"] = json!(args.tty);
    if args.no_new_privs {
        p["noNewPrivileges"] = json!(true);
    }
    if let Some(user) = &args.user {
        let (uid, gid) = parse_user(user)?;
        p["user"]["uid"] = json!(uid);
        if let Some(gid) = gid {
            p["user"]["gid"] = json!(gid);
        }
    }
    for &gid in &args.additional_gids {
        let gid = u32::try_from(gid)
            .map_err(|_| anyhow::anyhow!("--additional-gids: {gid} is not a valid gid"))?;
        push(&mut p["user"]["additionalGids"], json!(gid));
    }
    // Never the inheritable set (CVE-2022-29162: a program exec'd later
    // could gain the capability through file capabilities); ambient only
    // where the config already has inheritable ones, as in runc.
    let has_inheritable = p["capabilities"]["inheritable"].is_array();
    for cap in &args.cap {
        let name = cap_name(cap);
        for set in ["bounding", "effective", "permitted"] {
            push(&mut p["capabilities"][set], json!(name));
        }
        if has_inheritable {
            push(&mut p["capabilities"]["ambient"], json!(name));
        }
    }
    serde_json::from_value(p).context("exec: the process built from the flags")
}

fn push(list: &mut Value, item: Value) {
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(a) = list.as_array_mut() {
        if !a.contains(&item) {
            a.push(item);
        }
    }
}

/// `CAP_SYS_ADMIN`, also from `sys_admin` or `SYS_ADMIN`.
fn cap_name(cap: &str) -> String {
    let upper = cap.to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// `--user uid[:gid]`, numeric as in runc.
fn parse_user(user: &str) -> Result<(u32, Option<u32>)> {
    let (uid, gid) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let num = |s: &str, what: &str| {
        s.parse::<u32>().map_err(|_| {
            anyhow::anyhow!("--user {user:?}: {what} {s:?} is not a number (format: <uid>[:<gid>])")
        })
    };
    Ok((num(uid, "uid")?, gid.map(|g| num(g, "gid")).transpose()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_flag() {
        assert_eq!(parse_user("1000").unwrap(), (1000, None));
        assert_eq!(parse_user("1000:100").unwrap(), (1000, Some(100)));
        assert!(parse_user("bob")
            .unwrap_err()
            .to_string()
            .contains("uid \"bob\""));
        assert!(parse_user("1:x").is_err());
    }

    #[test]
    fn capability_names() {
        assert_eq!(cap_name("CAP_KILL"), "CAP_KILL");
        assert_eq!(cap_name("sys_admin"), "CAP_SYS_ADMIN");
    }

    #[test]
    fn process_json_errors_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        std::fs::write(
            &f,
            r#"{"cwd": "/", "user": {"uid": "x", "gid": 0}, "args": ["true"]}"#,
        )
        .unwrap();
        let e = read_process(&f).unwrap_err().to_string();
        assert!(e.contains("user.uid"), "{e}");
    }
}
