//! The command line: runc's commands and flags, which container managers
//! (containerd's go-runc, podman's conmon) pass verbatim.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Open Container Initiative runtime.
///
/// berth spawns and runs containers packaged as OCI bundles: a directory
/// with a config.json and a root filesystem.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version = concat!("version ", env!("CARGO_PKG_VERSION")),
    disable_version_flag = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Root directory for storage of container state (this should be located in tmpfs)
    /// [default: /run/berth, or $XDG_RUNTIME_DIR/berth when not root]
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Set the log file to write berth logs to (default is stderr)
    #[arg(long, value_name = "PATH")]
    pub log: Option<PathBuf>,

    /// Set the log format
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Enable debug logging
    #[arg(long)]
    pub debug: bool,

    /// Use systemd to manage cgroups (not supported; accepted so that
    /// managers can pass it, and refused by commands that create cgroups)
    #[arg(long)]
    pub systemd_cgroup: bool,

    /// Ignore cgroup permission errors
    #[arg(long, value_enum, value_name = "true|false|auto", default_value_t = Rootless::Auto)]
    pub rootless: Rootless,

    /// Print the version
    #[arg(short = 'v', long, action = clap::ArgAction::Version)]
    version: Option<bool>,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the command line as runc does: a flag given twice keeps its
    /// last value (podman passes `--log-format=json` itself and again when
    /// the user's runtime flags hold it), while list flags such as `--env`
    /// still collect every occurrence.
    pub fn parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        use clap::{CommandFactory, FromArgMatches};
        let cmd = Cli::command()
            .args_override_self(true)
            .mut_subcommands(|s| s.args_override_self(true));
        Cli::from_arg_matches(&cmd.try_get_matches_from(args)?)
    }
}

/// How log lines are rendered; both match logrus as runc uses it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `time="…" level=error msg="…"`
    #[default]
    Text,
    /// `{"level":"error","msg":"…","time":"…"}`
    Json,
}

/// The value of `--rootless`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Rootless {
    #[value(name = "true")]
    True,
    #[value(name = "false")]
    False,
    Auto,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new specification file (config.json) in the bundle
    Spec(SpecArgs),
    /// Create a container; its process waits for `start`
    Create(CreateArgs),
    /// Execute the user-defined process of a created container
    Start {
        /// The container id
        id: String,
    },
    /// Output the state of a container
    State {
        /// The container id
        id: String,
    },
    /// Send a signal (default: SIGTERM) to the container's init process
    Kill(KillArgs),
    /// Delete a container and the resources it holds
    Delete(DeleteArgs),
    /// List the containers under the state root
    List(ListArgs),
    /// Create and start a container, by default waiting for it to exit
    Run(RunArgs),
    /// Show the enabled features (OCI runtime-spec features.md)
    Features,
    /// Suspend all processes inside the container
    Pause {
        /// The container id
        id: String,
    },
    /// Resume all processes that have been previously paused
    Resume {
        /// The container id
        id: String,
    },
    /// Display the processes running inside a container
    Ps(PsArgs),
    /// Display container events: OOM notifications and CPU, memory, pids
    /// and I/O statistics
    Events(EventsArgs),
    /// Update container resource constraints
    Update(Box<UpdateArgs>),
    /// Execute a new process inside the container
    Exec(Box<ExecArgs>),
    /// Manage images: import, ls, rm, gc, inspect, history, unpack, bundle
    Image(crate::image::ImageArgs),
    /// Run a command in a new container from an image (overlay root)
    RunImage(Box<crate::image::RunImageArgs>),
    /// Build an image from a Dockerfile
    Build(Box<crate::build::BuildArgs>),
}

#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Path to the bundle directory to write config.json into
    #[arg(short, long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Generate a configuration for a rootless container
    #[arg(long)]
    pub rootless: bool,
    /// Add Docker's default seccomp profile for the spec's capabilities
    #[arg(long)]
    pub seccomp: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The container id
    pub id: String,
    /// Path to the root of the bundle directory
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    pub bundle: PathBuf,
    /// Path to an AF_UNIX socket which will receive the file descriptor of
    /// the master end of the console's pseudoterminal
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// File to write the process id to
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot_root to jail the process inside the rootfs
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring for the container
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass N additional file descriptors (3 to 3+N-1) to the container
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Detach from the container's process
    #[arg(short, long)]
    pub detach: bool,
    /// Do not delete the container after it exits
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Path to the process.json describing the process (the command and the
    /// process flags below are then not used)
    #[arg(short, long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// Path to an AF_UNIX socket which will receive a file descriptor
    /// referencing the master end of the console's pseudoterminal
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Detach from the container's process
    #[arg(short, long)]
    pub detach: bool,
    /// Specify the file to write the process id to
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Set environment variables (KEY=VALUE)
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Current working directory in the container
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// UID (format: <uid>[:<gid>])
    #[arg(short, long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Additional gids
    #[arg(
        short = 'g',
        long,
        value_name = "GID",
        value_delimiter = ',',
        allow_negative_numbers = true
    )]
    pub additional_gids: Vec<i64>,
    /// Add a capability to the bounding, effective and permitted sets of
    /// the process
    #[arg(short, long = "cap", value_name = "CAP")]
    pub cap: Vec<String>,
    /// Set the no new privileges value for the process
    #[arg(long)]
    pub no_new_privs: bool,
    /// Pass N additional file descriptors to the process (stdio + N in total)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Set the SELinux process label (not supported: berth has no SELinux support)
    #[arg(long, value_name = "LABEL")]
    pub process_label: Option<String>,
    /// Set the AppArmor profile (not supported: berth has no AppArmor support)
    #[arg(long, value_name = "PROFILE")]
    pub apparmor: Option<String>,
    /// The container id
    pub id: String,
    /// The command and its arguments
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// The container id
    pub id: String,
    /// Signal name (KILL, SIGKILL) or number
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
    /// Send the signal to all processes in the container
    #[arg(short, long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The container id
    pub id: String,
    /// Forcibly delete the container if it is still running (uses SIGKILL)
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Display only container ids
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Output format: table (ps(1) lines of the container's processes) or
    /// json (their pids)
    #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// The container id
    pub id: String,
    /// Options for ps(1) [default: -ef]
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PS OPTIONS"
    )]
    pub ps_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The container id
    pub id: String,
    /// Set the stats collection interval (Go duration syntax: 5s, 200ms, 1m30s)
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = go_duration)]
    pub interval: std::time::Duration,
    /// Display the container's stats then exit
    #[arg(long)]
    pub stats: bool,
}

/// `update`'s flags, runc's names; sizes take k/m/g/t/p suffixes (binary
/// units, as `200M` or `1g`) and `-1` for unlimited.
#[derive(Debug, Default, Args)]
pub struct UpdateArgs {
    /// The container id
    pub id: String,
    /// Path to a JSON file holding the resources to update (linux.resources
    /// of config.json; omitted fields are left alone), or '-' for standard
    /// input. Flags given as well override its values
    #[arg(short, long, value_name = "FILE")]
    pub resources: Option<PathBuf>,
    /// Specifies per cgroup weight, range is from 10 to 1000
    #[arg(long, value_name = "WEIGHT")]
    pub blkio_weight: Option<u16>,
    /// CPU CFS period to be used for hardcapping (in usecs). 0 to use system default
    #[arg(long, value_name = "USECS")]
    pub cpu_period: Option<u64>,
    /// CPU CFS hardcap limit (in usecs). Allowed cpu time in a given period
    #[arg(long, value_name = "USECS", allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS hardcap burst limit (in usecs)
    #[arg(long, value_name = "USECS")]
    pub cpu_burst: Option<u64>,
    /// CPU shares (relative weight vs. other containers)
    #[arg(
        long = "cpu-share",
        visible_alias = "cpu-shares",
        value_name = "SHARES"
    )]
    pub cpu_share: Option<u64>,
    /// CPU realtime period to be used for hardcapping (in usecs). 0 to use system default
    #[arg(long, value_name = "USECS")]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime hardcap limit (in usecs). Allowed cpu time in a given period
    #[arg(long, value_name = "USECS", allow_negative_numbers = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// Set cgroup SCHED_IDLE or not, 0: default behavior, 1: SCHED_IDLE
    #[arg(long, value_name = "0|1")]
    pub cpu_idle: Option<i64>,
    /// CPU(s) to use
    #[arg(long, value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// Memory node(s) to use
    #[arg(long, value_name = "LIST")]
    pub cpuset_mems: Option<String>,
    /// Memory limit (in bytes)
    #[arg(long, value_name = "BYTES", value_parser = ram_in_bytes, allow_hyphen_values = true)]
    pub memory: Option<i64>,
    /// Memory reservation or soft_limit (in bytes)
    #[arg(long, value_name = "BYTES", value_parser = ram_in_bytes, allow_hyphen_values = true)]
    pub memory_reservation: Option<i64>,
    /// Total memory usage (memory + swap); set '-1' to enable unlimited swap
    #[arg(long, value_name = "BYTES", value_parser = ram_in_bytes, allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    /// Kernel memory limit (in bytes; cgroup v1 kernels that still have it)
    #[arg(long, value_name = "BYTES", value_parser = ram_in_bytes, allow_hyphen_values = true)]
    pub kernel_memory: Option<i64>,
    /// Kernel memory limit for TCP buffers (in bytes; cgroup v1)
    #[arg(long, value_name = "BYTES", value_parser = ram_in_bytes, allow_hyphen_values = true)]
    pub kernel_memory_tcp: Option<i64>,
    /// Maximum number of pids allowed in the container (-1 for no limit)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// The string of Intel RDT/CAT L3 cache schema (not supported)
    #[arg(long, value_name = "SCHEMA")]
    pub l3_cache_schema: Option<String>,
    /// The string of Intel RDT/MBA memory bandwidth schema (not supported)
    #[arg(long, value_name = "SCHEMA")]
    pub mem_bw_schema: Option<String>,
}

/// A size as runc's `units.RAMInBytes` reads it: a decimal number, an
/// optional space, then an optional unit of k, m, g, t or p (binary
/// multiples, either case) with an optional `i` and `b`: `512`, `200M`,
/// `1.5g`, `64MiB`, `100 kb`. `-1` is unlimited.
pub fn ram_in_bytes(s: &str) -> Result<i64, String> {
    if s == "-1" {
        return Ok(-1);
    }
    let invalid = || format!("invalid size: '{s}'");
    let digits = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, rest) = s.split_at(digits);
    let rest = rest.strip_prefix(' ').unwrap_or(rest).to_ascii_lowercase();
    let mut unit = rest.as_str();
    let mut multiplier: f64 = 1.0;
    if let Some(c) = unit.chars().next() {
        if let Some(power) = "kmgtp".find(c) {
            multiplier = 1024f64.powi(power as i32 + 1);
            unit = &unit[1..];
        }
    }
    let unit = unit.strip_prefix('i').unwrap_or(unit);
    let unit = unit.strip_prefix('b').unwrap_or(unit);
    if !unit.is_empty() || !number.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(invalid());
    }
    let value: f64 = number.parse().map_err(|_| invalid())?;
    let bytes = value * multiplier;
    if bytes >= i64::MAX as f64 {
        return Err(invalid());
    }
    Ok(bytes as i64)
}

/// A duration in Go's syntax, which runc's `--interval` takes: one or more
/// decimal numbers each with a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`),
/// e.g. `5s`, `200ms`, `1m30s`, `1.5h`; a bare `0` is zero.
pub fn go_duration(s: &str) -> Result<std::time::Duration, String> {
    let invalid = || format!("invalid duration {s:?}");
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    if s.starts_with('-') {
        return Err("duration interval must be greater than 0".to_string());
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
        let value: f64 = rest[..n].parse().map_err(|_| invalid())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            other => return Err(format!("unknown unit {other:?} in duration {s:?}")),
        };
        nanos += value * scale;
        rest = &rest[u..];
    }
    Ok(std::time::Duration::from_nanos(nanos.round() as u64))
}

/// Where the log goes, recovered from the raw arguments when clap rejects
/// them, so that a usage error still reaches the log file a manager reads.
pub fn log_flags(args: &[OsString]) -> (Option<PathBuf>, LogFormat) {
    let mut log = None;
    let mut format = LogFormat::Text;
    let mut it = args.iter().skip(1);
    while let Some(arg) = it.next() {
        let Some(arg) = arg.to_str() else { break };
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (arg, None),
        };
        let takes_value = matches!(name, "--log" | "--log-format" | "--root" | "--rootless");
        let value = match (takes_value, inline) {
            (false, _) => None,
            (true, Some(v)) => Some(v.to_string()),
            (true, None) => it.next().and_then(|v| v.to_str()).map(str::to_string),
        };
        match name {
            "--log" => log = value.map(PathBuf::from),
            "--log-format" if value.as_deref() == Some("json") => format = LogFormat::Json,
            // Global options end at the command name.
            _ if !arg.starts_with('-') => break,
            _ => {}
        }
    }
    (log, format)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::parse_args(std::iter::once("berth").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_as_containerd_passes_them() {
        let cli = parse(&[
            "--root",
            "/run/containerd/runc/k8s.io",
            "--log",
            "/run/x/log.json",
            "--log-format",
            "json",
            "--systemd-cgroup",
            "--rootless=false",
            "--debug",
            "state",
            "abc",
        ])
        .unwrap();
        assert_eq!(
            cli.root.as_deref(),
            Some(std::path::Path::new("/run/containerd/runc/k8s.io"))
        );
        assert_eq!(
            cli.log.as_deref(),
            Some(std::path::Path::new("/run/x/log.json"))
        );
        assert_eq!(cli.log_format, LogFormat::Json);
        assert!(cli.systemd_cgroup && cli.debug);
        assert_eq!(cli.rootless, Rootless::False);
        assert!(matches!(cli.command, Command::State { id } if id == "abc"));
    }

    #[test]
    fn a_repeated_flag_keeps_its_last_value_and_lists_keep_all() {
        // podman with a binary named runc passes --log-format=json itself,
        // then again from the user's --runtime-flag.
        let cli = parse(&[
            "--log-format=json",
            "--log-format=json",
            "--root",
            "/a",
            "--root",
            "/b",
            "create",
            "--bundle",
            "/x",
            "--bundle",
            "/y",
            "c",
        ])
        .unwrap();
        assert_eq!(cli.log_format, LogFormat::Json);
        assert_eq!(cli.root.as_deref(), Some(std::path::Path::new("/b")));
        let Command::Create(c) = cli.command else {
            panic!("not create")
        };
        assert_eq!(c.bundle, std::path::Path::new("/y"));
        let cli = parse(&[
            "exec",
            "--env",
            "A=1",
            "--env",
            "B=2",
            "--cap",
            "CAP_KILL",
            "--cap",
            "CAP_CHOWN",
            "c",
            "true",
        ])
        .unwrap();
        let Command::Exec(e) = cli.command else {
            panic!("not exec")
        };
        assert_eq!(e.env, ["A=1", "B=2"]);
        assert_eq!(e.cap, ["CAP_KILL", "CAP_CHOWN"]);
    }

    #[test]
    fn global_defaults() {
        let cli = parse(&["list"]).unwrap();
        assert_eq!(cli.root, None);
        assert_eq!(cli.log, None);
        assert_eq!(cli.log_format, LogFormat::Text);
        assert_eq!(cli.rootless, Rootless::Auto);
        assert!(!cli.debug && !cli.systemd_cgroup);
        assert!(matches!(
            cli.command,
            Command::List(ListArgs {
                format: ListFormat::Table,
                quiet: false
            })
        ));
    }

    #[test]
    fn rootless_values() {
        for (v, want) in [
            ("true", Rootless::True),
            ("false", Rootless::False),
            ("auto", Rootless::Auto),
        ] {
            assert_eq!(parse(&["--rootless", v, "list"]).unwrap().rootless, want);
            let inline = format!("--rootless={v}");
            assert_eq!(parse(&[&inline, "list"]).unwrap().rootless, want);
        }
        assert!(parse(&["--rootless=maybe", "list"]).is_err());
    }

    #[test]
    fn create_flags() {
        let cli = parse(&[
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/b/pid",
            "--console-socket",
            "/tmp/s.sock",
            "--no-pivot",
            "--no-new-keyring",
            "--preserve-fds",
            "2",
            "c1",
        ])
        .unwrap();
        let Command::Create(a) = cli.command else {
            panic!("not create")
        };
        assert_eq!(a.id, "c1");
        assert_eq!(a.bundle, PathBuf::from("/b"));
        assert_eq!(a.pid_file, Some(PathBuf::from("/b/pid")));
        assert_eq!(a.console_socket, Some(PathBuf::from("/tmp/s.sock")));
        assert!(a.no_pivot && a.no_new_keyring);
        assert_eq!(a.preserve_fds, 2);

        let Command::Create(a) = parse(&["create", "-b", "x", "c2"]).unwrap().command else {
            panic!("not create")
        };
        assert_eq!(a.bundle, PathBuf::from("x"));
        assert_eq!(
            (a.pid_file, a.console_socket, a.no_pivot, a.preserve_fds),
            (None, None, false, 0)
        );
        let Command::Create(a) = parse(&["create", "c3"]).unwrap().command else {
            panic!("not create")
        };
        assert_eq!(a.bundle, PathBuf::from("."));
    }

    #[test]
    fn run_flags() {
        let Command::Run(a) = parse(&["run", "-d", "--keep", "-b", "/b", "--pid-file=/p", "c"])
            .unwrap()
            .command
        else {
            panic!("not run")
        };
        assert!(a.detach && a.keep);
        assert_eq!(a.create.id, "c");
        assert_eq!(a.create.bundle, PathBuf::from("/b"));
        assert_eq!(a.create.pid_file, Some(PathBuf::from("/p")));
        let Command::Run(a) = parse(&["run", "c"]).unwrap().command else {
            panic!("not run")
        };
        assert!(!a.detach && !a.keep);
    }

    #[test]
    fn exec_flags_stop_at_the_command() {
        let Command::Exec(a) = parse(&[
            "exec",
            "-t",
            "-e",
            "A=1",
            "--env",
            "B=2",
            "-u",
            "1000:100",
            "-g",
            "10,11",
            "--additional-gids",
            "12",
            "--cap",
            "CAP_KILL",
            "--cwd",
            "/tmp",
            "--preserve-fds",
            "2",
            "c",
            "ls",
            "-l",
            "--tty",
        ])
        .unwrap()
        .command
        else {
            panic!("not exec")
        };
        assert!(a.tty && !a.detach);
        assert_eq!(a.env, ["A=1", "B=2"]);
        assert_eq!(a.user.as_deref(), Some("1000:100"));
        assert_eq!(a.additional_gids, [10, 11, 12]);
        assert_eq!(a.cap, ["CAP_KILL"]);
        assert_eq!(a.preserve_fds, 2);
        assert_eq!(a.id, "c");
        assert_eq!(a.command, ["ls", "-l", "--tty"]);
        let Command::Exec(a) = parse(&["exec", "-d", "--pid-file", "/p", "-p", "/proc.json", "c"])
            .unwrap()
            .command
        else {
            panic!("not exec")
        };
        assert!(a.detach && a.command.is_empty());
        assert_eq!(a.process, Some(PathBuf::from("/proc.json")));
    }

    #[test]
    fn kill_signal_and_all() {
        let Command::Kill(a) = parse(&["kill", "c"]).unwrap().command else {
            panic!("not kill")
        };
        assert_eq!(
            (a.id.as_str(), a.signal.as_str(), a.all),
            ("c", "SIGTERM", false)
        );
        // go-runc puts --all before the id and passes the signal as a number.
        let Command::Kill(a) = parse(&["kill", "--all", "c", "9"]).unwrap().command else {
            panic!("not kill")
        };
        assert_eq!((a.signal.as_str(), a.all), ("9", true));
        let Command::Kill(a) = parse(&["kill", "c", "KILL", "-a"]).unwrap().command else {
            panic!("not kill")
        };
        assert_eq!((a.signal.as_str(), a.all), ("KILL", true));
        assert!(parse(&["kill"]).is_err());
        assert!(parse(&["kill", "c", "KILL", "extra"]).is_err());
    }

    #[test]
    fn delete_list_spec() {
        let Command::Delete(a) = parse(&["delete", "-f", "c"]).unwrap().command else {
            panic!("not delete")
        };
        assert!(a.force);
        let Command::Delete(a) = parse(&["delete", "c"]).unwrap().command else {
            panic!("not delete")
        };
        assert!(!a.force);
        let Command::List(a) = parse(&["list", "--format=json", "-q"]).unwrap().command else {
            panic!("not list")
        };
        assert_eq!((a.format, a.quiet), (ListFormat::Json, true));
        let Command::List(a) = parse(&["list", "-f", "table"]).unwrap().command else {
            panic!("not list")
        };
        assert_eq!(a.format, ListFormat::Table);
        assert!(parse(&["list", "--format", "yaml"]).is_err());
        let Command::Spec(a) = parse(&["spec", "--rootless", "-b", "/b"]).unwrap().command else {
            panic!("not spec")
        };
        assert!(a.rootless && !a.seccomp);
        assert_eq!(a.bundle, Some(PathBuf::from("/b")));
        let Command::Spec(a) = parse(&["spec", "--seccomp"]).unwrap().command else {
            panic!("not spec")
        };
        assert!(a.seccomp && !a.rootless);
        assert!(matches!(
            parse(&["features"]).unwrap().command,
            Command::Features
        ));
    }

    #[test]
    fn usage_errors() {
        assert_eq!(
            parse(&["bogus"]).unwrap_err().kind(),
            ErrorKind::InvalidSubcommand
        );
        assert_eq!(
            parse(&["--foo", "list"]).unwrap_err().kind(),
            ErrorKind::UnknownArgument
        );
        assert_eq!(
            parse(&["state"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["-v"]).unwrap_err().kind(),
            ErrorKind::DisplayVersion
        );
        assert_eq!(
            parse(&[]).unwrap_err().kind(),
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
    }

    fn os(args: &[&str]) -> Vec<OsString> {
        std::iter::once("berth")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn log_flags_from_raw_args() {
        assert_eq!(
            log_flags(&os(&[
                "--root",
                "/r",
                "--log",
                "/l",
                "--log-format",
                "json",
                "bogus"
            ])),
            (Some(PathBuf::from("/l")), LogFormat::Json)
        );
        assert_eq!(
            log_flags(&os(&["--log=/l", "--log-format=json", "create", "--bad"])),
            (Some(PathBuf::from("/l")), LogFormat::Json)
        );
        assert_eq!(
            log_flags(&os(&["--debug", "list"])),
            (None, LogFormat::Text)
        );
        // Flags after the command belong to it, not to the global set.
        assert_eq!(
            log_flags(&os(&["state", "--log", "/l"])),
            (None, LogFormat::Text)
        );
    }
}

#[cfg(test)]
mod ops_tests {
    use super::*;
    use std::time::Duration;

    fn parse(args: &[&str]) -> Command {
        Cli::parse_args(std::iter::once("berth").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
            .command
    }

    #[test]
    fn sizes_as_runc_reads_them() {
        let m = 1024 * 1024;
        for (text, want) in [
            ("512", 512),
            ("-1", -1),
            ("200M", 200 * m),
            ("200m", 200 * m),
            ("1g", 1024 * m),
            ("1.5g", 1536 * m),
            ("64MiB", 64 * m),
            ("64mb", 64 * m),
            ("100 kb", 102_400),
            ("7b", 7),
            ("1 ", 1),
            ("1ib", 1),
            ("1t", 1024 * 1024 * m),
        ] {
            assert_eq!(ram_in_bytes(text), Ok(want), "{text}");
        }
        for bad in [
            "1x", "", "m", "-2", "1.2.3", "1mm", "1bi", " 1", "1  ", "9999999p",
        ] {
            assert_eq!(
                ram_in_bytes(bad),
                Err(format!("invalid size: '{bad}'")),
                "{bad}"
            );
        }
    }

    #[test]
    fn durations_in_go_syntax() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("5s", ms(5000)),
            ("200ms", ms(200)),
            ("1m30s", ms(90_000)),
            ("1.5h", ms(5_400_000)),
            ("250us", Duration::from_micros(250)),
            ("250\u{b5}s", Duration::from_micros(250)),
            ("10ns", Duration::from_nanos(10)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
        ] {
            assert_eq!(go_duration(text), Ok(want), "{text}");
        }
        assert_eq!(
            go_duration("-1s"),
            Err("duration interval must be greater than 0".to_string())
        );
        for bad in ["", "5", "5x", "s", "1.2.3s"] {
            assert!(go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pause_resume_ps_events() {
        assert!(matches!(parse(&["pause", "c"]), Command::Pause { id } if id == "c"));
        assert!(matches!(parse(&["resume", "c"]), Command::Resume { id } if id == "c"));

        let Command::Ps(a) = parse(&["ps", "c"]) else {
            panic!("not ps")
        };
        assert_eq!((a.format, a.id.as_str()), (ListFormat::Table, "c"));
        assert!(a.ps_args.is_empty());
        // Everything after the id is for ps(1), dashes included.
        let Command::Ps(a) = parse(&["ps", "-f", "json", "c", "-o", "pid,comm", "-f"]) else {
            panic!("not ps")
        };
        assert_eq!(a.format, ListFormat::Json);
        assert_eq!(a.ps_args, ["-o", "pid,comm", "-f"]);
        let Command::Ps(a) = parse(&["ps", "c", "--", "-ef"]) else {
            panic!("not ps")
        };
        assert_eq!(a.ps_args, ["-ef"]);

        let Command::Events(a) = parse(&["events", "c"]) else {
            panic!("not events")
        };
        assert_eq!((a.interval, a.stats), (Duration::from_secs(5), false));
        let Command::Events(a) = parse(&["events", "--stats", "--interval", "200ms", "c"]) else {
            panic!("not events")
        };
        assert_eq!((a.interval, a.stats), (Duration::from_millis(200), true));
        assert!(Cli::parse_args(["berth", "events", "--interval", "5", "c"]).is_err());
    }

    #[test]
    fn update_flags_like_runc() {
        let Command::Update(a) = parse(&[
            "update",
            "--memory",
            "64M",
            "--memory-swap",
            "-1",
            "--memory-reservation=1g",
            "--kernel-memory",
            "10m",
            "--kernel-memory-tcp",
            "1m",
            "--cpu-share",
            "256",
            "--cpu-quota",
            "-1",
            "--cpu-period",
            "100000",
            "--cpu-rt-period",
            "1000000",
            "--cpu-rt-runtime",
            "950000",
            "--cpuset-cpus",
            "0-1",
            "--cpuset-mems",
            "0",
            "--pids-limit",
            "-1",
            "--blkio-weight",
            "300",
            "c",
        ]) else {
            panic!("not update")
        };
        assert_eq!(a.id, "c");
        assert_eq!(
            (a.memory, a.memory_swap, a.memory_reservation),
            (Some(64 << 20), Some(-1), Some(1 << 30))
        );
        assert_eq!(
            (a.kernel_memory, a.kernel_memory_tcp),
            (Some(10 << 20), Some(1 << 20))
        );
        assert_eq!(
            (a.cpu_share, a.cpu_quota, a.cpu_period),
            (Some(256), Some(-1), Some(100000))
        );
        assert_eq!(
            (a.cpu_rt_period, a.cpu_rt_runtime),
            (Some(1000000), Some(950000))
        );
        assert_eq!(
            (a.cpuset_cpus.as_deref(), a.cpuset_mems.as_deref()),
            (Some("0-1"), Some("0"))
        );
        assert_eq!((a.pids_limit, a.blkio_weight), (Some(-1), Some(300)));
        assert_eq!(a.resources, None);

        // Docker's spelling of the shares flag is accepted too.
        let Command::Update(a) = parse(&["update", "--cpu-shares", "512", "-r", "-", "c"]) else {
            panic!("not update")
        };
        assert_eq!(a.cpu_share, Some(512));
        assert_eq!(a.resources, Some(PathBuf::from("-")));

        let e = Cli::parse_args(["berth", "update", "--memory", "1x", "c"]).unwrap_err();
        assert!(e.to_string().contains("invalid size: '1x'"), "{e}");
        assert!(Cli::parse_args(["berth", "update", "--cpu-share", "-5", "c"]).is_err());
        assert!(Cli::parse_args(["berth", "update", "--blkio-weight", "70000", "c"]).is_err());
        assert!(Cli::parse_args(["berth", "update"]).is_err());
    }
}
