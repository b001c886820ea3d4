//! Each command mapped onto the library (OCI runtime spec runtime.md
//! operations plus runc's `spec`, `list` and `run`), with runc's output
//! formats.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use berth::{Container, CreateOptions, Runtime, State};
use serde::Serialize;

use crate::cli::{
    Cli, Command, CreateArgs, DeleteArgs, EventsArgs, KillArgs, ListArgs, ListFormat, PsArgs,
    RunArgs, SpecArgs, UpdateArgs,
};
use crate::exec::exec;
use crate::{console, signals};

/// How long a foreground `run` waits for the pty after `create` returned;
/// the runtime sends it during create, so this only bounds a broken sender.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the parsed command; the result is berth's exit status.
pub fn dispatch(cli: Cli) -> Result<i32> {
    let root = cli.root.clone().unwrap_or_else(default_root);
    let rt = Runtime::new(root);
    let cgroups = || {
        if cli.systemd_cgroup {
            bail!("systemd cgroup driver is not supported; use cgroupfs");
        }
        Ok(())
    };
    match &cli.command {
        Command::Spec(a) => spec(a)?,
        Command::Create(a) => {
            cgroups()?;
            create(&rt, a)?;
        }
        Command::Start { id } => rt.load(id)?.start()?,
        Command::State { id } => {
            let state = serde_json::to_string_pretty(&rt.load(id)?.state())?;
            // runc prints the document without a trailing newline.
            print_out(&state)?;
        }
        Command::Kill(a) => kill(&rt, a)?,
        Command::Delete(a) => delete(&rt, a)?,
        Command::List(a) => list(&rt, a)?,
        Command::Run(a) => {
            cgroups()?;
            return run(&rt, a);
        }
        Command::Features => features()?,
        Command::Pause { id } => rt.load(id)?.pause()?,
        Command::Resume { id } => rt.load(id)?.resume()?,
        Command::Ps(a) => ps(&rt, a)?,
        Command::Events(a) => events(&rt, a)?,
        Command::Update(a) => update(&rt, a)?,
        Command::Exec(a) => return exec(&rt, a),
        Command::Image(a) => return crate::image::image(a),
        Command::RunImage(a) => {
            cgroups()?;
            return crate::image::run_image(&rt, a);
        }
        Command::Build(a) => {
            cgroups()?;
            return crate::build::build(&rt, a);
        }
    }
    Ok(0)
}

/// runc's default: the system state root for root, the user's runtime
/// directory otherwise.
fn default_root() -> PathBuf {
    if !nix::unistd::geteuid().is_root() {
        if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir).join("berth");
        }
    }
    PathBuf::from("/run/berth")
}

fn print_out(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("write to stdout")
}

fn spec(args: &SpecArgs) -> Result<()> {
    let dir = args.bundle.as_deref().unwrap_or(Path::new("."));
    if !dir.is_dir() {
        bail!("bundle directory {} does not exist", dir.display());
    }
    let path = dir.join("config.json");
    let mut spec = serde_json::to_value(berth::spec::example(args.rootless))?;
    if args.seccomp {
        add_default_seccomp(&mut spec)?;
    }
    let text = spec_json(&spec)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o666)
        .open(&path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => {
                anyhow::anyhow!("file {} exists; remove it first", path.display())
            }
            _ => anyhow::Error::new(e).context(format!("create {}", path.display())),
        })?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}

/// Sets `linux.seccomp` to Docker's default profile for the spec's
/// bounding set.
fn add_default_seccomp(spec: &mut serde_json::Value) -> Result<()> {
    let caps: Vec<String> = spec
        .pointer("/process/capabilities/bounding")
        .and_then(|b| b.as_array())
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect();
    let profile = serde_json::to_value(berth::seccomp::default_profile(&caps))?;
    match spec.get_mut("linux") {
        Some(serde_json::Value::Object(linux)) => {
            linux.insert("seccomp".to_string(), profile);
            Ok(())
        }
        _ => bail!("the spec has no linux section to add seccomp to"),
    }
}

/// `berth features`: the document as runc prints it, in the spec's field
/// order, four-space indented, with a final newline.
fn features() -> Result<()> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    berth::features::features()
        .serialize(&mut serde_json::Serializer::with_formatter(&mut out, fmt))?;
    out.push(b'\n');
    print_out(&String::from_utf8(out)?)
}

/// The spec as runc writes it: tab-indented, no trailing newline, top-level
/// keys in runc's order (nested objects come out sorted by key).
fn spec_json(spec: &impl Serialize) -> Result<String> {
    const ORDER: [&str; 6] = [
        "ociVersion",
        "process",
        "root",
        "hostname",
        "mounts",
        "linux",
    ];
    let serde_json::Value::Object(top) = stable_value(spec)? else {
        bail!("the spec did not serialize to a JSON object");
    };
    let rank = |k: &str| ORDER.iter().position(|o| *o == k).unwrap_or(ORDER.len());
    let mut keys: Vec<&String> = top.keys().collect();
    keys.sort_by_key(|k| rank(k));
    let mut out = String::from("{");
    for (i, key) in keys.into_iter().enumerate() {
        let value = pretty(&top[key.as_str()])?.replace('\n', "\n\t");
        let sep = if i == 0 { "" } else { "," };
        out.push_str(&format!(
            "{sep}\n\t{}: {value}",
            serde_json::Value::from(key.as_str())
        ));
    }
    out.push_str("\n}");
    Ok(out)
}

fn pretty(value: &serde_json::Value) -> Result<String> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    value.serialize(&mut ser)?;
    Ok(String::from_utf8(out)?)
}

/// Capability sets are hash sets in memory; they are written sorted so the
/// file is the same on every run.
fn stable_value(spec: &impl Serialize) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(spec)?;
    if let Some(serde_json::Value::Object(caps)) = v.pointer_mut("/process/capabilities") {
        for set in caps.values_mut() {
            if let serde_json::Value::Array(items) = set {
                items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
        }
    }
    Ok(v)
}

/// The terminal and console-socket combinations runc refuses: a detached
/// container with a terminal needs somewhere to send it, and a socket is
/// only used for a detached container with a terminal.
pub(crate) fn check_terminal(terminal: bool, detach: bool, console_socket: bool) -> Result<()> {
    if detach && terminal && !console_socket {
        bail!("cannot allocate tty if berth will detach without setting console socket");
    }
    if (!detach || !terminal) && console_socket {
        bail!("cannot use console socket if berth will not detach or allocate tty");
    }
    Ok(())
}

/// `process.terminal` of the bundle's config.json. An unreadable config is
/// reported by the library's create, with the field at fault.
fn wants_terminal(bundle: &Path) -> bool {
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.pointer("/process/terminal").and_then(|t| t.as_bool()))
        .unwrap_or(false)
}

fn create_options(args: &CreateArgs) -> CreateOptions {
    let mut opts = CreateOptions::new(&args.bundle);
    opts.console_socket = args.console_socket.clone();
    opts.pid_file = args.pid_file.clone();
    opts.no_pivot = args.no_pivot;
    opts.no_new_keyring = args.no_new_keyring;
    opts.preserve_fds = args.preserve_fds;
    opts
}

fn create(rt: &Runtime, args: &CreateArgs) -> Result<Container> {
    check_terminal(
        wants_terminal(&args.bundle),
        true,
        args.console_socket.is_some(),
    )?;
    Ok(rt.create(&args.id, &create_options(args))?)
}

fn kill(rt: &Runtime, args: &KillArgs) -> Result<()> {
    let container = rt.load(&args.id)?;
    let signal = berth::parse_signal(&args.signal)?;
    Ok(container.kill(signal, args.all)?)
}

fn delete(rt: &Runtime, args: &DeleteArgs) -> Result<()> {
    match rt.load(&args.id) {
        Ok(c) => Ok(c.delete(args.force)?),
        // `delete --force` is how managers make sure a container is gone.
        Err(berth::Error::NotFound(_)) if args.force => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn list(rt: &Runtime, args: &ListArgs) -> Result<()> {
    let states: Vec<State> = rt.list()?.iter().map(Container::state).collect();
    let text = if args.quiet {
        states.iter().map(|s| format!("{}\n", s.id)).collect()
    } else {
        match args.format {
            ListFormat::Table => table(&states),
            ListFormat::Json if states.is_empty() => "null\n".to_string(),
            ListFormat::Json => format!("{}\n", serde_json::to_string(&states)?),
        }
    };
    print_out(&text)
}

/// runc's table: Go's tabwriter with minimum width 12 and padding 3; the
/// last column is not padded.
fn table(states: &[State]) -> String {
    let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from)];
    rows.extend(states.iter().map(|s| {
        [
            s.id.clone(),
            s.pid.to_string(),
            s.status.to_string(),
            s.bundle.display().to_string(),
            s.created.clone(),
            s.owner.clone(),
        ]
    }));
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max((cell.chars().count() + 3).max(12));
        }
    }
    let mut out = String::new();
    for row in &rows {
        for (cell, w) in row.iter().zip(widths) {
            out.push_str(&format!("{cell:<w$}"));
        }
        out.push_str(&row[5]);
        out.push('\n');
    }
    out
}

pub(crate) fn run(rt: &Runtime, args: &RunArgs) -> Result<i32> {
    let terminal = wants_terminal(&args.create.bundle);
    check_terminal(terminal, args.detach, args.create.console_socket.is_some())?;
    if args.detach {
        let container = rt.create(&args.create.id, &create_options(&args.create))?;
        if let Err(e) = container.start() {
            discard(container);
            return Err(e.into());
        }
        return Ok(0);
    }

    // The init may be reparented to berth (not born its child), and
    // `wait` needs it as a child either way.
    berth::process::set_child_subreaper()?;
    // From here on a signal for berth waits for the relay instead of
    // killing berth with the container half made (the setup processes
    // reset their mask).
    let blocked = signals::block().context("block signals for forwarding")?;
    let socket = terminal.then(console::ConsoleSocket::new).transpose()?;
    let mut opts = create_options(&args.create);
    opts.console_socket = socket.as_ref().map(|s| s.path().to_path_buf());
    let container = rt.create(&args.create.id, &opts)?;
    let status = supervise(rt, &container, blocked, socket);
    if status.is_err() || !args.keep {
        discard(container);
    }
    status
}

/// Starts the created container and waits for it, with its terminal
/// relayed and berth's signals passed on.
fn supervise(
    rt: &Runtime,
    container: &Container,
    blocked: signals::Blocked,
    socket: Option<console::ConsoleSocket>,
) -> Result<i32> {
    let (root, id) = (rt.root().to_path_buf(), container.id().to_string());
    let forward = move |sig| {
        let sent = Runtime::new(&root)
            .load(&id)
            .and_then(|c| c.kill(sig, false));
        if let Err(e) = sent {
            tracing::debug!(signal = sig, "forward signal: {e}");
        }
    };
    relay_and_wait(blocked, socket, forward, || {
        container.start()?;
        Ok(container.wait()?)
    })
}

/// Receives the pty from `socket` (when there is one), relays it and
/// berth's signals (`forward` gets each signal number; SIGWINCH resizes
/// the pty), then runs `body`, which waits for the process.
pub(crate) fn relay_and_wait(
    blocked: signals::Blocked,
    socket: Option<console::ConsoleSocket>,
    forward: impl Fn(i32) + Send + 'static,
    body: impl FnOnce() -> Result<i32>,
) -> Result<i32> {
    let pty = match socket {
        Some(socket) => Some(socket.receive(CONSOLE_TIMEOUT)?),
        None => None,
    };
    let relay = pty.map(console::Relay::start).transpose()?;
    let master = relay.as_ref().map(console::Relay::master);
    signals::relay(blocked, move |sig| {
        if sig == libc::SIGWINCH {
            if let Some(master) = &master {
                console::resize(master.as_fd());
            }
            return;
        }
        forward(sig);
    })
    .context("start signal forwarding")?;
    let status = body()?;
    if let Some(relay) = relay {
        relay.finish();
    }
    Ok(status)
}

/// Removes a container `run` is done with; a failure is logged, not
/// returned, so the container's own status still reaches the caller.
fn discard(container: Container) {
    let id = container.id().to_string();
    if let Err(e) = container.delete(true) {
        tracing::error!("delete container {id}: {e}");
    }
}

/// `berth ps`: the container's pids as JSON, or the lines of ps(1) (run
/// on the host with the given options) whose PID column is one of them.
fn ps(rt: &Runtime, args: &PsArgs) -> Result<()> {
    let pids = rt.load(&args.id)?.processes()?;
    if args.format == ListFormat::Json {
        // runc prints Go's encoding of an empty list: null.
        let list = if pids.is_empty() {
            "null".to_string()
        } else {
            serde_json::to_string(&pids)?
        };
        return print_out(&format!("{list}\n"));
    }
    let ps_args: Vec<&str> = if args.ps_args.is_empty() {
        vec!["-ef"]
    } else {
        args.ps_args.iter().map(String::as_str).collect()
    };
    let out = std::process::Command::new("ps")
        .args(&ps_args)
        .output()
        .context("run ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}: {}",
            ps_args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    print_out(&ps_table(&String::from_utf8_lossy(&out.stdout), &pids)?)
}

/// The header of ps(1) output and the lines whose PID column is in `pids`.
fn ps_table(output: &str, pids: &[i32]) -> Result<String> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|f| f == "PID")
        .context("couldn't find PID field in ps output")?;
    let mut table = format!("{header}\n");
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse::<i32>().ok())
            .with_context(|| format!("unable to parse pid in ps output line {line:?}"))?;
        if pids.contains(&pid) {
            table.push_str(line);
            table.push('\n');
        }
    }
    Ok(table)
}

/// `berth events`: JSON lines, one per event, flushed as they come.
fn events(rt: &Runtime, args: &EventsArgs) -> Result<()> {
    if args.interval.is_zero() {
        bail!("duration interval must be greater than 0");
    }
    let container = rt.load(&args.id)?;
    let line = |e: &berth::Event| -> berth::Result<()> {
        let mut text = serde_json::to_string(e).map_err(|e| berth::Error::State {
            id: args.id.clone(),
            msg: format!("event: {e}"),
        })?;
        text.push('\n');
        let mut out = io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| berth::Error::Io {
                op: "write",
                path: PathBuf::from("stdout"),
                source: e,
            })
    };
    if args.stats {
        let status = container.status();
        if status == berth::Status::Stopped {
            return Err(berth::Error::InvalidState {
                id: args.id.clone(),
                op: "watch",
                status: status.to_string(),
            }
            .into());
        }
        let event = berth::Event {
            kind: berth::EventKind::Stats,
            id: args.id.clone(),
            data: Some(container.stats()?),
        };
        return Ok(line(&event)?);
    }
    Ok(container.events(args.interval, |e| line(&e))?)
}

/// `berth update`: the resources from `-r` (a file or `-` for stdin) with
/// the flags laid over them.
fn update(rt: &Runtime, args: &UpdateArgs) -> Result<()> {
    if args.l3_cache_schema.is_some() || args.mem_bw_schema.is_some() {
        bail!("Intel RDT is not supported: --l3-cache-schema and --mem-bw-schema cannot be used");
    }
    let container = rt.load(&args.id)?;
    let mut resources = match args.resources.as_deref() {
        None => serde_json::json!({}),
        Some(p) if p == Path::new("-") => {
            serde_json::from_reader(io::stdin().lock()).context("resources from standard input")?
        }
        Some(p) => {
            let text = std::fs::read(p).with_context(|| format!("read {}", p.display()))?;
            serde_json::from_slice(&text)
                .with_context(|| format!("resources file {}", p.display()))?
        }
    };
    update_flags(&mut resources, args)?;
    let resources: berth::LinuxResources =
        serde_json::from_value(resources).context(match &args.resources {
            Some(p) if p != Path::new("-") => format!("resources file {}", p.display()),
            Some(_) => "resources from standard input".to_string(),
            None => "resources".to_string(),
        })?;
    Ok(container.update(&resources)?)
}

/// Lays the flags that were given over the `linux.resources` JSON.
fn update_flags(resources: &mut serde_json::Value, args: &UpdateArgs) -> Result<()> {
    use serde_json::Value;
    let serde_json::Value::Object(top) = resources else {
        bail!("resources: expected a JSON object");
    };
    let mut set = |group: &str, field: &str, value: Option<Value>| -> Result<()> {
        let Some(value) = value else { return Ok(()) };
        let entry = top
            .entry(group.to_string())
            .or_insert_with(|| serde_json::json!({}));
        match entry {
            Value::Object(g) => {
                g.insert(field.to_string(), value);
                Ok(())
            }
            _ => bail!("resources: {group}: expected a JSON object"),
        }
    };
    let v = |x: Option<i64>| x.map(Value::from);
    let u = |x: Option<u64>| x.map(Value::from);
    let s = |x: &Option<String>| x.clone().map(Value::from);
    set("memory", "limit", v(args.memory))?;
    set("memory", "reservation", v(args.memory_reservation))?;
    set("memory", "swap", v(args.memory_swap))?;
    set("memory", "kernel", v(args.kernel_memory))?;
    set("memory", "kernelTCP", v(args.kernel_memory_tcp))?;
    set("cpu", "shares", u(args.cpu_share))?;
    set("cpu", "quota", v(args.cpu_quota))?;
    set("cpu", "period", u(args.cpu_period))?;
    set("cpu", "burst", u(args.cpu_burst))?;
    set("cpu", "idle", v(args.cpu_idle))?;
    set("cpu", "realtimePeriod", u(args.cpu_rt_period))?;
    set("cpu", "realtimeRuntime", v(args.cpu_rt_runtime))?;
    set("cpu", "cpus", s(&args.cpuset_cpus))?;
    set("cpu", "mems", s(&args.cpuset_mems))?;
    set("pids", "limit", v(args.pids_limit))?;
    set("blockIO", "weight", args.blkio_weight.map(Value::from))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth::Status;

    #[test]
    fn terminal_rules_match_runc() {
        // create and run -d
        assert!(check_terminal(false, true, false).is_ok());
        assert!(check_terminal(true, true, true).is_ok());
        let e = check_terminal(true, true, false).unwrap_err().to_string();
        assert_eq!(
            e,
            "cannot allocate tty if berth will detach without setting console socket"
        );
        let e = check_terminal(false, true, true).unwrap_err().to_string();
        assert_eq!(
            e,
            "cannot use console socket if berth will not detach or allocate tty"
        );
        // foreground run
        assert!(check_terminal(true, false, false).is_ok());
        assert!(check_terminal(false, false, false).is_ok());
        assert!(check_terminal(true, false, true).is_err());
    }

    #[test]
    fn reads_process_terminal() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!wants_terminal(dir.path()));
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"process":{"terminal":true}}"#,
        )
        .unwrap();
        assert!(wants_terminal(dir.path()));
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"process":{"args":["sh"]}}"#,
        )
        .unwrap();
        assert!(!wants_terminal(dir.path()));
        std::fs::write(dir.path().join("config.json"), "not json").unwrap();
        assert!(!wants_terminal(dir.path()));
    }

    fn state(id: &str, pid: i32, status: Status, bundle: &str) -> State {
        State {
            oci_version: "1.0.2-dev".into(),
            id: id.into(),
            pid,
            status,
            bundle: bundle.into(),
            rootfs: format!("{bundle}/rootfs").into(),
            created: "2026-11-22T22:24:19.808421595Z".into(),
            owner: "root".into(),
            annotations: Default::default(),
        }
    }

    #[test]
    fn table_matches_runc() {
        assert_eq!(
            table(&[]),
            "ID          PID         STATUS      BUNDLE      CREATED     OWNER\n"
        );
        let rows = table(&[
            state("t1", 3820, Status::Created, "/tmp/rb"),
            state("a-much-longer-id", 0, Status::Stopped, "/var/lib/bundles/x"),
        ]);
        assert_eq!(
            rows,
            "ID                 PID         STATUS      BUNDLE               CREATED                          OWNER\n\
             t1                 3820        created     /tmp/rb              2026-11-22T22:24:19.808421595Z   root\n\
             a-much-longer-id   0           stopped     /var/lib/bundles/x   2026-11-22T22:24:19.808421595Z   root\n"
        );
    }

    #[test]
    fn spec_is_tab_indented_with_sorted_capabilities() {
        let text = spec_json(&berth::spec::example(false)).unwrap();
        assert!(text.starts_with("{\n\t\"ociVersion\": \""), "{text}");
        assert!(!text.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["process"]["capabilities"]["bounding"],
            serde_json::json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"])
        );
        assert_eq!(v, stable_value(&berth::spec::example(false)).unwrap());
    }

    #[test]
    fn spec_seccomp_adds_only_the_profile() {
        let read = |seccomp: bool| {
            let dir = tempfile::tempdir().unwrap();
            let args = SpecArgs {
                bundle: Some(dir.path().to_path_buf()),
                rootless: false,
                seccomp,
            };
            spec(&args).unwrap();
            let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
            serde_json::from_str::<serde_json::Value>(&text).unwrap()
        };
        let plain = read(false);
        assert!(plain["linux"].get("seccomp").is_none());
        let mut with = read(true);
        let profile = with["linux"]["seccomp"].take();
        let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"].map(String::from);
        assert_eq!(
            profile,
            serde_json::to_value(berth::seccomp::default_profile(&caps)).unwrap()
        );
        with["linux"].as_object_mut().unwrap().remove("seccomp");
        assert_eq!(with, plain);
    }

    #[test]
    fn spec_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let args = SpecArgs {
            bundle: Some(dir.path().to_path_buf()),
            rootless: false,
            seccomp: false,
        };
        spec(&args).unwrap();
        let first = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        let e = spec(&args).unwrap_err().to_string();
        assert!(e.contains("exists; remove it first"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("config.json")).unwrap(),
            first
        );
        let missing = SpecArgs {
            bundle: Some(dir.path().join("nope")),
            rootless: true,
            seccomp: false,
        };
        assert!(spec(&missing)
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
    }
}

#[cfg(test)]
mod ops_tests {
    use super::*;

    const PS_EF: &str = "\
UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 Nov22 ?        00:00:03 /sbin/init
root        4601       1  0 02:42 ?        00:00:00 sh -c sleep 1000 & wait
root        4602    4601  0 02:42 ?        00:00:00 sleep 1000
root        4700     900  0 02:43 pts/0    00:00:00 ps -ef
";

    #[test]
    fn ps_table_keeps_the_header_and_the_containers_lines() {
        let t = ps_table(PS_EF, &[4601, 4602]).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("UID          PID"));
        assert!(lines[1].contains("sh -c sleep 1000 & wait"));
        assert!(lines[2].ends_with("sleep 1000"));
        // The PID column, not a PPID or an argument that looks like one.
        let t = ps_table(PS_EF, &[1]).unwrap();
        assert_eq!(t.lines().count(), 2, "{t}");
        assert!(t.ends_with("/sbin/init\n"));
        assert_eq!(
            ps_table("  PID COMMAND\n   7 sh\n", &[]).unwrap(),
            "  PID COMMAND\n"
        );

        let e = ps_table("COMMAND\nsh\n", &[1]).unwrap_err();
        assert_eq!(e.to_string(), "couldn't find PID field in ps output");
        let e = ps_table("PID CMD\nx sh\n", &[1]).unwrap_err();
        assert!(e.to_string().contains("unable to parse pid"), "{e}");
    }

    fn update_args(args: &[&str]) -> UpdateArgs {
        let cli = Cli::parse_args(
            ["berth", "update"]
                .into_iter()
                .chain(args.iter().copied())
                .chain(["c"]),
        )
        .unwrap();
        match cli.command {
            Command::Update(a) => *a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn update_flags_become_linux_resources() {
        let mut r = serde_json::json!({
            "memory": {"limit": 1, "reservation": 5},
            "pids": {"limit": 3},
            "devices": [],
        });
        let a = update_args(&[
            "--memory",
            "2k",
            "--memory-swap",
            "-1",
            "--cpu-share",
            "256",
            "--cpu-quota",
            "5000",
            "--cpu-rt-runtime",
            "100",
            "--cpuset-cpus",
            "1",
            "--pids-limit",
            "9",
            "--blkio-weight",
            "300",
        ]);
        update_flags(&mut r, &a).unwrap();
        assert_eq!(
            r,
            serde_json::json!({
                "memory": {"limit": 2048, "reservation": 5, "swap": -1},
                "cpu": {"shares": 256, "quota": 5000, "realtimeRuntime": 100, "cpus": "1"},
                "pids": {"limit": 9},
                "blockIO": {"weight": 300},
                "devices": [],
            })
        );
        // The result is what the library takes.
        let typed: berth::LinuxResources = serde_json::from_value(r).unwrap();
        assert_eq!(typed.memory().unwrap().limit(), Some(2048));

        let mut r = serde_json::json!({"memory": 5});
        let e = update_flags(&mut r, &update_args(&["--memory", "1m"])).unwrap_err();
        assert_eq!(e.to_string(), "resources: memory: expected a JSON object");
        let mut r = serde_json::json!({"memory": 5});
        update_flags(&mut r, &update_args(&[])).unwrap();
        assert_eq!(r, serde_json::json!({"memory": 5}));
    }
}
