//! The second parsing pass: each raw node checked against its instruction's
//! rules in the Dockerfile reference (argument counts, flags, forms) and
//! turned into a typed [`Instruction`], then grouped into stages.

use std::collections::HashMap;

use super::expand::parse_go_duration;
use super::lines::{Node, Scanned};
use super::words::heredoc_marker;
use super::{
    strip_leading_tabs, ArgDecl, Command, Copy, Dockerfile, Healthcheck, Heredoc, Instruction,
    Kind, ParseError, Run, Source, Stage,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum FlagType {
    Bool,
    Str,
}

/// A flag an instruction takes; `supported` false for flags Docker knows
/// but this builder does not implement, so the error can say so.
struct FlagSpec {
    name: &'static str,
    ty: FlagType,
    supported: bool,
}

const fn flag(name: &'static str, ty: FlagType) -> FlagSpec {
    FlagSpec {
        name,
        ty,
        supported: true,
    }
}

const fn unsupported(name: &'static str, ty: FlagType) -> FlagSpec {
    FlagSpec {
        name,
        ty,
        supported: false,
    }
}

const FROM_FLAGS: &[FlagSpec] = &[flag("platform", FlagType::Str)];
const RUN_FLAGS: &[FlagSpec] = &[
    flag("network", FlagType::Str),
    unsupported("mount", FlagType::Str),
    unsupported("security", FlagType::Str),
    unsupported("device", FlagType::Str),
];
const COPY_FLAGS: &[FlagSpec] = &[
    flag("from", FlagType::Str),
    flag("chown", FlagType::Str),
    flag("chmod", FlagType::Str),
    flag("link", FlagType::Bool),
    unsupported("parents", FlagType::Bool),
    unsupported("exclude", FlagType::Str),
];
const ADD_FLAGS: &[FlagSpec] = &[
    flag("chown", FlagType::Str),
    flag("chmod", FlagType::Str),
    flag("link", FlagType::Bool),
    unsupported("checksum", FlagType::Str),
    unsupported("keep-git-dir", FlagType::Bool),
    unsupported("exclude", FlagType::Str),
    unsupported("unpack", FlagType::Bool),
];
const HEALTHCHECK_FLAGS: &[FlagSpec] = &[
    flag("interval", FlagType::Str),
    flag("timeout", FlagType::Str),
    flag("start-period", FlagType::Str),
    flag("start-interval", FlagType::Str),
    flag("retries", FlagType::Str),
];

/// Checks `--name[=value]` flags against `specs`; booleans come back as
/// "true"/"false".
fn parse_flags(
    what: &str,
    flags: &[String],
    specs: &[FlagSpec],
) -> Result<HashMap<&'static str, String>, String> {
    let mut used = HashMap::new();
    for f in flags {
        let Some(body) = f.strip_prefix("--") else {
            return Err(format!("arg should start with -- : {f}"));
        };
        if body.is_empty() {
            break;
        }
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(spec) = specs.iter().find(|s| s.name == name) else {
            return Err(format!("unknown flag: --{name}"));
        };
        if !spec.supported {
            return Err(format!("{what} --{name} is not supported"));
        }
        if used.contains_key(spec.name) {
            return Err(format!("duplicate flag specified: --{name}"));
        }
        let v = match (spec.ty, value) {
            (FlagType::Bool, None) => "true".to_string(),
            (FlagType::Bool, Some("")) | (FlagType::Str, None) => {
                return Err(format!("missing a value on flag: --{name}"))
            }
            (FlagType::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                b @ ("true" | "false") => b.to_string(),
                _ => {
                    return Err(format!(
                        "expecting boolean value for flag --{name}, not: {v}"
                    ))
                }
            },
            (FlagType::Str, Some(v)) => v.to_string(),
        };
        used.insert(spec.name, v);
    }
    Ok(used)
}

fn at_least_one(what: &str) -> String {
    format!("{what} requires at least one argument")
}

fn exactly_one(what: &str) -> String {
    format!("{what} requires exactly one argument")
}

/// Shell form joins its (single) argument; exec form keeps the array.
fn command(node: &Node) -> Command {
    if node.json {
        Command::Exec(node.args.clone())
    } else {
        Command::Shell(node.args.join(" "))
    }
}

fn key_values(node: &Node, what: &str) -> Result<Vec<(String, String)>, String> {
    parse_flags(what, &node.flags, &[])?;
    if node.args.is_empty() {
        return Err(at_least_one(what));
    }
    node.args
        .chunks(2)
        .map(|kv| match kv {
            [k, _] if k.is_empty() => Err(format!("{what} names can not be blank")),
            [k, v] => Ok((k.clone(), v.clone())),
            _ => Err(format!("{what}: a name without a value")),
        })
        .collect()
}

fn one_string(node: &Node, what: &str) -> Result<String, String> {
    parse_flags(what, &node.flags, &[])?;
    match node.args.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(exactly_one(what)),
    }
}

fn copy(node: &Node, what: &str, specs: &[FlagSpec]) -> Result<Copy, String> {
    if node.args.len() < 2 {
        return Err(format!(
            "{what} requires at least two arguments, but only one was provided. \
             Destination could not be determined."
        ));
    }
    let mut flags = parse_flags(what, &node.flags, specs)?;
    let (dest, srcs) = node.args.split_last().expect("two arguments");
    if matches!(heredoc_marker(dest), Ok(Some(_))) {
        return Err(format!("{what} cannot accept a heredoc as a destination"));
    }
    let mut sources = Vec::new();
    for src in srcs {
        let marker = if node.json {
            None
        } else {
            heredoc_marker(src).ok().flatten()
        };
        match marker {
            Some(m) => {
                let body = node
                    .heredocs
                    .iter()
                    .rev()
                    .find(|h| h.name == m.name)
                    .map(|h| h.content.clone())
                    .unwrap_or_default();
                let content = if m.strip_tabs {
                    strip_leading_tabs(&body)
                } else {
                    body
                };
                sources.push(Source::Heredoc(Heredoc {
                    name: m.name,
                    content,
                    expand: m.expand,
                    strip_tabs: m.strip_tabs,
                }));
            }
            None => sources.push(Source::Path(src.clone())),
        }
    }
    Ok(Copy {
        sources,
        dest: dest.clone(),
        from: flags.remove("from"),
        chown: flags.remove("chown"),
        chmod: flags.remove("chmod"),
        link: flags.remove("link").as_deref() == Some("true"),
    })
}

fn healthcheck(node: &Node) -> Result<Healthcheck, String> {
    let Some(typ) = node.args.first() else {
        return Err(at_least_one("HEALTHCHECK"));
    };
    let typ = typ.to_uppercase();
    let args = &node.args[1..];
    if typ == "NONE" {
        if !args.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".into());
        }
        return Ok(Healthcheck::None);
    }
    let mut flags = parse_flags("HEALTHCHECK", &node.flags, HEALTHCHECK_FLAGS)?;
    if typ != "CMD" {
        return Err(format!("Unknown type \"{typ}\" in HEALTHCHECK (try CMD)"));
    }
    let test = if node.json {
        Command::Exec(args.to_vec())
    } else {
        Command::Shell(args.join(" "))
    };
    if matches!(&test, Command::Exec(v) if v.is_empty())
        || matches!(&test, Command::Shell(s) if s.is_empty())
    {
        return Err("Missing command after HEALTHCHECK CMD".into());
    }
    for name in ["interval", "timeout", "start-period", "start-interval"] {
        if let Some(v) = flags.get(name).filter(|v| !v.is_empty()) {
            let nanos = parse_go_duration(v)?;
            if nanos != 0 && nanos < 1_000_000 {
                return Err(format!("Interval \"{name}\" cannot be less than 1ms"));
            }
        }
    }
    if let Some(r) = flags.get("retries").filter(|v| !v.is_empty()) {
        let n = parse_go_int32(r)
            .ok_or_else(|| format!("strconv.ParseInt: parsing \"{r}\": invalid syntax"))?;
        if n < 1 {
            return Err(format!("--retries must be at least 1 (not {n})"));
        }
    }
    let mut opt = |n: &str| flags.remove(n).filter(|v| !v.is_empty());
    Ok(Healthcheck::Check {
        test,
        interval: opt("interval"),
        timeout: opt("timeout"),
        start_period: opt("start-period"),
        start_interval: opt("start-interval"),
        retries: opt("retries"),
    })
}

/// Go's `strconv.ParseInt(s, 10, 32)`.
fn parse_go_int32(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i32>().ok().map(i64::from)
}

fn instruction(node: &Node, text: &str) -> Result<Instruction, String> {
    let kind = match node.lower().as_str() {
        "run" => {
            let mut flags = parse_flags("RUN", &node.flags, RUN_FLAGS)?;
            if node.args.is_empty() {
                return Err(at_least_one("RUN"));
            }
            let network = flags.remove("network");
            if let Some(n) = &network {
                if !matches!(n.as_str(), "default" | "none" | "host") {
                    return Err(format!(
                        "unsupported network mode for RUN --network: \"{n}\" (default, none or host)"
                    ));
                }
            }
            Kind::Run(Run {
                command: command(node),
                heredocs: node.heredocs.clone(),
                network,
            })
        }
        "cmd" => {
            parse_flags("CMD", &node.flags, &[])?;
            Kind::Cmd(command(node))
        }
        "entrypoint" => {
            parse_flags("ENTRYPOINT", &node.flags, &[])?;
            Kind::Entrypoint(command(node))
        }
        "shell" => {
            parse_flags("SHELL", &node.flags, &[])?;
            if !node.json {
                return Err("SHELL requires the arguments to be in JSON form".into());
            }
            if node.args.is_empty() {
                return Err(at_least_one("SHELL"));
            }
            Kind::Shell(node.args.clone())
        }
        "env" => Kind::Env(key_values(node, "ENV")?),
        "label" => Kind::Label(key_values(node, "LABEL")?),
        "arg" => {
            parse_flags("ARG", &node.flags, &[])?;
            if node.args.is_empty() {
                return Err(at_least_one("ARG"));
            }
            let decls = node
                .args
                .iter()
                .map(|a| match a.split_once('=') {
                    Some(("", _)) => Err("ARG names can not be blank".to_string()),
                    Some((k, v)) => Ok(ArgDecl {
                        name: k.to_string(),
                        default: Some(v.to_string()),
                    }),
                    None => Ok(ArgDecl {
                        name: a.clone(),
                        default: None,
                    }),
                })
                .collect::<Result<_, _>>()?;
            Kind::Arg(decls)
        }
        "maintainer" => Kind::Maintainer(one_string(node, "MAINTAINER")?),
        "expose" => {
            parse_flags("EXPOSE", &node.flags, &[])?;
            if node.args.is_empty() {
                return Err(at_least_one("EXPOSE"));
            }
            Kind::Expose(node.args.clone())
        }
        "volume" => {
            parse_flags("VOLUME", &node.flags, &[])?;
            if node.args.is_empty() {
                return Err(at_least_one("VOLUME"));
            }
            let mut vols = Vec::new();
            for v in &node.args {
                let v = v.trim();
                if v.is_empty() {
                    return Err("VOLUME specified can not be an empty string".into());
                }
                vols.push(v.to_string());
            }
            Kind::Volume(vols)
        }
        "user" => Kind::User(one_string(node, "USER")?),
        "workdir" => Kind::Workdir(one_string(node, "WORKDIR")?),
        "stopsignal" => Kind::StopSignal(one_string(node, "STOPSIGNAL")?),
        "healthcheck" => Kind::Healthcheck(healthcheck(node)?),
        "copy" => Kind::Copy(copy(node, "COPY", COPY_FLAGS)?),
        "add" => Kind::Add(copy(node, "ADD", ADD_FLAGS)?),
        "onbuild" => {
            parse_flags("ONBUILD", &node.flags, &[])?;
            let Some(child) = &node.child else {
                return Err(at_least_one("ONBUILD"));
            };
            let trigger = child.cmd.to_uppercase();
            match trigger.as_str() {
                "ONBUILD" => {
                    return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into())
                }
                "MAINTAINER" | "FROM" => {
                    return Err(format!("{trigger} isn't allowed as an ONBUILD trigger"))
                }
                _ => {}
            }
            let mut child = (**child).clone();
            child.line = node.line;
            child.heredocs = node.heredocs.clone();
            // The trigger's text is the ONBUILD text without its keyword.
            let inner_text = text
                .split_once(char::is_whitespace)
                .map_or("", |(_, r)| r)
                .trim_start();
            Kind::OnBuild(Box::new(instruction(&child, inner_text)?))
        }
        _ => return Err(format!("unknown instruction: {}", node.cmd.to_uppercase())),
    };
    Ok(Instruction {
        line: node.line,
        text: text.to_string(),
        kind,
    })
}

fn stage(node: &Node) -> Result<Stage, String> {
    let name = match node.args.as_slice() {
        [_] => None,
        [_, as_, name] if as_.eq_ignore_ascii_case("as") => {
            let lower = name.to_lowercase();
            let mut chars = lower.chars();
            let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
                });
            if !ok {
                return Err(format!(
                    "invalid name for build stage: \"{name}\", name can't start with a number or contain symbols"
                ));
            }
            Some(lower)
        }
        _ => return Err("FROM requires either one or three arguments".into()),
    };
    let mut flags = parse_flags("FROM", &node.flags, FROM_FLAGS)?;
    Ok(Stage {
        line: node.line,
        image: node.args[0].clone(),
        platform: flags.remove("platform"),
        name,
        instructions: Vec::new(),
    })
}

pub(crate) fn build(scanned: Scanned) -> Result<Dockerfile, ParseError> {
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for node in &scanned.nodes {
        let err = |message: String| ParseError {
            line: node.line,
            message,
        };
        if node.lower() == "from" {
            let st = stage(node).map_err(err)?;
            if let Some(name) = &st.name {
                if stages.iter().any(|s| s.name.as_ref() == Some(name)) {
                    return Err(err(format!("duplicate stage name \"{name}\"")));
                }
            }
            stages.push(st);
            continue;
        }
        let ins = instruction(node, &node.text).map_err(err)?;
        match (stages.last_mut(), ins.kind) {
            (Some(st), kind) => st.instructions.push(Instruction { kind, ..ins }),
            (None, Kind::Arg(decls)) => global_args.extend(decls),
            (None, _) => {
                return Err(err(format!(
                    "no build stage in current context: {} comes before the first FROM \
                     (only ARG may)",
                    node.cmd.to_uppercase()
                )))
            }
        }
    }
    if stages.is_empty() {
        return Err(ParseError {
            line: scanned.line_count.max(1),
            message: "dockerfile contains no stages to build".into(),
        });
    }
    Ok(Dockerfile {
        escape: scanned.escape,
        syntax: scanned.syntax,
        global_args,
        stages,
    })
}
