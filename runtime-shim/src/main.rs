//! The `berth` command: runc's command line over the berth library, for
//! container managers (containerd, podman) and people alike.

mod build;
mod cli;
mod commands;
mod console;
mod exec;
mod image;
mod logging;
mod signals;

use std::ffi::OsString;
use std::io::Write;

use clap::error::ErrorKind;

fn main() {
    restore_sigpipe();
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match cli::Cli::parse_args(&args) {
        Ok(cli) => cli,
        Err(e) => exit(usage_error(&e, &args)),
    };
    let sink = match logging::init(cli.log.as_deref(), cli.log_format, cli.debug) {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("{e:#}");
            exit(1)
        }
    };
    // runc's exec exits 255 when the process could not be started, so
    // that callers can tell it from the process's own status.
    let is_exec = matches!(cli.command, cli::Command::Exec(_));
    match commands::dispatch(cli) {
        Ok(status) => exit(status),
        Err(e) if is_exec => {
            report(&format!("exec failed: {}", message(&e)), sink);
            exit(255)
        }
        Err(e) => {
            report(&message(&e), sink);
            exit(1)
        }
    }
}

/// The error and its causes on one line, like `{:#}`, but without repeating
/// a cause the message before it already spells out (library errors name
/// their cause in their own text).
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The Rust runtime ignores SIGPIPE, and an ignored signal stays ignored
/// across exec: put back the default so neither the container's processes
/// nor hooks inherit the ignore, and a closed stdout ends berth as it ends
/// runc.
fn restore_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: installs the default disposition, no handler code runs; done
    // first in main, before any other thread exists.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// Errors go to the log as level "error" (where managers look for them)
/// and to stderr, once.
fn report(msg: &str, sink: logging::Sink) {
    tracing::error!("{msg}");
    if sink != logging::Sink::Stderr {
        eprintln!("{msg}");
    }
}

/// Prints clap's message; help and version succeed, anything else is a
/// usage error with runc's status 1, also logged when a log was asked for.
fn usage_error(e: &clap::Error, args: &[OsString]) -> i32 {
    let _ = e.print();
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
        _ => {
            if let (Some(log), format) = cli::log_flags(args) {
                if logging::init(Some(&log), format, false).is_ok() {
                    tracing::error!("{}", one_line(&e.to_string()));
                }
            }
            1
        }
    }
}

/// clap's message without its usage hint, on one line for the log.
fn one_line(rendered: &str) -> String {
    let text = rendered.trim_start_matches("error: ");
    let first_block = text.split("\n\n").next().unwrap_or(text);
    first_block.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Exits with stdout flushed; `process::exit` skips its buffer.
fn exit(status: i32) -> ! {
    let _ = std::io::stdout().flush();
    std::process::exit(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_error_on_one_line() {
        let e = cli::Cli::parse_args(["berth", "kill"]).unwrap_err();
        assert_eq!(
            one_line(&e.to_string()),
            "the following required arguments were not provided: <ID>"
        );
        let e = cli::Cli::parse_args(["berth", "--bogus", "list"]).unwrap_err();
        assert_eq!(
            one_line(&e.to_string()),
            "unexpected argument '--bogus' found"
        );
    }
}

#[cfg(test)]
mod message_tests {
    use super::message;

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let lib = berth::Error::Io {
            op: "read",
            path: "/x".into(),
            source: io,
        };
        let e = anyhow::Error::new(lib).context("start c1");
        let m = message(&e);
        assert_eq!(m.matches("No such file").count(), 1, "{m}");
        assert!(m.starts_with("start c1: read /x: "), "{m}");
    }
}
