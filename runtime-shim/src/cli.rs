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
}

#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Path to the bundle directory to write config.json into
    #[arg(short, long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Generate a configuration for a rootless container
    #[arg(long)]
    pub rootless: bool,
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
        Cli::try_parse_from(std::iter::once("berth").chain(args.iter().copied()))
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
        assert!(a.rootless);
        assert_eq!(a.bundle, Some(PathBuf::from("/b")));
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
