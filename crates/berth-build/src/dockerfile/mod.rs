//! The Dockerfile, as the Dockerfile reference defines it and buildkit's
//! `dockerfile` frontend parses it: parser directives, comments, line
//! continuations, heredocs, then one typed [`Instruction`] per logical line,
//! grouped into [`Stage`]s by `FROM`. Variable substitution is a separate
//! step ([`Instruction::expand`]) because its values are only known while a
//! build runs.
//!
//! Parsing happens in two passes, as in buildkit: `lines` turns text into
//! raw nodes (syntax errors anywhere in the file come first), then
//! `instructions` checks each node's arguments and flags in order.

mod expand;
mod instructions;
mod lines;
mod words;

pub use expand::parse_duration;
pub use words::{expand_word, expand_words, Lookup};

/// A Dockerfile that failed to parse, or an instruction whose substitution
/// failed. `line` is 1-based and, for an instruction spread over several
/// lines, the line it starts on (as Docker reports it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape and line-continuation character: `\` or, by the `escape`
    /// directive, `` ` ``.
    pub escape: char,
    /// The `syntax` directive as written, if any (recorded, not acted on).
    pub syntax: Option<String>,
    /// ARGs declared before the first FROM; usable in FROM lines.
    pub global_args: Vec<ArgDecl>,
    pub stages: Vec<Stage>,
}

/// One build stage: a FROM line and the instructions up to the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub line: usize,
    /// The base image as written, before substitution (see
    /// [`Stage::expand_from`]).
    pub image: String,
    /// `--platform`, as written.
    pub platform: Option<String>,
    /// The `AS` name, lowercased.
    pub name: Option<String>,
    pub instructions: Vec<Instruction>,
}

/// One instruction of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The line the instruction starts on.
    pub line: usize,
    /// The instruction as written: continuation lines joined by a space,
    /// comments between them removed, heredoc bodies left out. For history
    /// and progress output.
    pub text: String,
    pub kind: Kind,
}

/// An ARG declaration. The name and default are raw; Docker substitutes
/// variables in both when the ARG is reached (see [`ArgDecl::expand`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// RUN, CMD and ENTRYPOINT arguments: shell form (run through the stage's
/// SHELL) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

/// A here-document attached to RUN, COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter after quote removal.
    pub name: String,
    /// The body, each line with its line ending. For RUN it is as written
    /// (the shell applies `<<-` itself); for a COPY/ADD source leading tabs
    /// are already stripped when `strip_tabs` is set, so it is the file's
    /// content (before substitution when `expand`).
    pub content: String,
    /// The delimiter was unquoted, so the body undergoes substitution.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body and the delimiter line.
    pub strip_tabs: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: Command,
    pub heredocs: Vec<Heredoc>,
    /// `--network=default|none|host`.
    pub network: Option<String>,
}

/// A COPY or ADD source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path (or glob, or for ADD a URL) as written.
    Path(String),
    /// An inline file: its name is the heredoc's delimiter.
    Heredoc(Heredoc),
}

/// COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub sources: Vec<Source>,
    pub dest: String,
    /// `--from=stage|index|image` (COPY only).
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [options] CMD ...`. The option values are as written and
    /// already validated (Go durations of at least 1ms or zero, retries an
    /// integer of at least 1); [`parse_duration`] converts them.
    Check {
        test: Command,
        interval: Option<String>,
        timeout: Option<String>,
        start_period: Option<String>,
        start_interval: Option<String>,
        retries: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Run(Run),
    Cmd(Command),
    Entrypoint(Command),
    Shell(Vec<String>),
    Env(Vec<(String, String)>),
    Arg(Vec<ArgDecl>),
    Label(Vec<(String, String)>),
    Maintainer(String),
    Expose(Vec<String>),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    StopSignal(String),
    Healthcheck(Healthcheck),
    OnBuild(Box<Instruction>),
    Copy(Copy),
    Add(Copy),
}

/// Parses Dockerfile text. Errors carry the 1-based line where the offending
/// instruction starts.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let scanned = lines::scan(text)?;
    instructions::build(scanned)
}

impl Run {
    /// The script `sh -c` runs, by Docker's heredoc rules: `RUN <<EOF` alone
    /// runs the heredoc body as the script; otherwise the command line
    /// followed by each heredoc body and delimiter, which the shell reads as
    /// here-documents. `None` for exec form.
    ///
    /// Docker runs a lone heredoc whose body starts with `#!` as a file
    /// instead (so the interpreter named there runs it); [`Run::shebang`]
    /// tells a caller when to do that.
    pub fn shell_script(&self) -> Option<String> {
        let Command::Shell(cmd) = &self.command else {
            return None;
        };
        if self.heredocs.is_empty() {
            return Some(cmd.clone());
        }
        if self.is_lone_heredoc() {
            return Some(self.heredocs[0].body());
        }
        let mut full = cmd.clone();
        for h in &self.heredocs {
            full.push('\n');
            full.push_str(&h.content);
            full.push_str(&h.name);
        }
        Some(full)
    }

    /// For `RUN <<EOF` alone whose body begins with `#!`: the heredoc, which
    /// Docker writes to a file and executes directly.
    pub fn shebang(&self) -> Option<&Heredoc> {
        if !matches!(self.command, Command::Shell(_)) || !self.is_lone_heredoc() {
            return None;
        }
        self.heredocs
            .first()
            .filter(|h| h.content.starts_with("#!"))
    }

    fn is_lone_heredoc(&self) -> bool {
        match &self.command {
            Command::Shell(cmd) => {
                !self.heredocs.is_empty() && matches!(words::heredoc_marker(cmd), Ok(Some(_)))
            }
            Command::Exec(_) => false,
        }
    }
}

impl Heredoc {
    /// The body with leading tabs removed from every line when `strip_tabs`.
    pub fn body(&self) -> String {
        if self.strip_tabs {
            strip_leading_tabs(&self.content)
        } else {
            self.content.clone()
        }
    }
}

pub(crate) fn strip_leading_tabs(s: &str) -> String {
    s.split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

#[cfg(test)]
mod tests;
