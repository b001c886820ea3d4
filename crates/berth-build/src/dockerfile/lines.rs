//! The first parsing pass: physical lines into raw instruction nodes.
//! Parser directives (only before anything else), whole-line comments (also
//! between continuation lines), line continuations with the escape
//! character, heredoc bodies, and each instruction's arguments split the way
//! the reference gives for it (JSON array or shell form, words, key=value).

use std::collections::HashSet;

use super::words::{heredoc_marker, raw_words, split_keeping_quotes};
use super::{Heredoc, ParseError};

/// One logical instruction before its arguments are checked.
#[derive(Debug, Clone, Default)]
pub(crate) struct Node {
    pub line: usize,
    /// The instruction name as written.
    pub cmd: String,
    /// Leading `--flag[=value]` words.
    pub flags: Vec<String>,
    /// The arguments as the instruction's shape splits them.
    pub args: Vec<String>,
    /// The arguments were a JSON array.
    pub json: bool,
    pub text: String,
    pub heredocs: Vec<Heredoc>,
    /// ONBUILD's trigger.
    pub child: Option<Box<Node>>,
}

impl Node {
    pub fn lower(&self) -> String {
        self.cmd.to_ascii_lowercase()
    }

    fn can_contain_heredoc(&self) -> bool {
        let n = match (&self.child, self.lower().as_str()) {
            (Some(child), "onbuild") => child,
            _ => self,
        };
        matches!(n.lower().as_str(), "run" | "copy" | "add") && !n.json
    }
}

pub(crate) struct Scanned {
    pub escape: char,
    pub syntax: Option<String>,
    pub nodes: Vec<Node>,
    pub line_count: usize,
}

fn is_regex_space(c: char) -> bool {
    // Go's `\s`.
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// `# key=value` with a key of a letter then letters/digits.
fn directive(line: &str) -> Option<(String, String)> {
    let s = line.strip_prefix('#')?.trim_start_matches(is_regex_space);
    let key_len = s
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_alphabetic() || (*i > 0 && c.is_ascii_digit())))
        .map_or(s.len(), |(i, _)| i);
    if key_len == 0 {
        return None;
    }
    let (key, s) = s.split_at(key_len);
    let s = s.trim_start_matches(is_regex_space).strip_prefix('=')?;
    let value = s.trim_matches(is_regex_space);
    if value.is_empty() {
        return None;
    }
    Some((key.to_ascii_lowercase(), value.to_string()))
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

/// Strips a trailing continuation character (optionally followed by spaces
/// or tabs) unless it is itself escaped; says whether the line continues.
fn trim_continuation(s: &str, escape: char) -> (&str, bool) {
    let t = s.trim_end_matches([' ', '\t']);
    if let Some(before) = t.strip_suffix(escape) {
        if before.is_empty() || !before.ends_with(escape) {
            return (before, true);
        }
    }
    (s, false)
}

/// Go's `[\t\v\f\r ]`: what separates an instruction from its arguments
/// and plain words from each other.
fn is_word_sep(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

fn split_ws(s: &str) -> Vec<String> {
    if s.is_empty() {
        return Vec::new();
    }
    s.split(is_word_sep)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Leading `--name[=value]` words (quotes group, `\` escapes); a lone `--`
/// ends them. Returns the flags and the rest of the line.
fn extract_flags(line: &str) -> (Vec<String>, &str) {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut flags = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && chars[i].1.is_whitespace() {
            i += 1;
        }
        if i >= chars.len() {
            return (flags, "");
        }
        let start = chars[i].0;
        if !(chars[i].1 == '-' && chars.get(i + 1).is_some_and(|c| c.1 == '-')) {
            return (flags, &line[start..]);
        }
        let mut word = String::new();
        let mut blank_ok = false;
        let mut quote: Option<char> = None;
        while i < chars.len() {
            let c = chars[i].1;
            match quote {
                None if c.is_whitespace() => break,
                None if c == '\'' || c == '"' => {
                    quote = Some(c);
                    blank_ok = true;
                }
                Some(q) if c == q => quote = None,
                _ if c == '\\' => {
                    i += 1;
                    match chars.get(i) {
                        Some(&(_, n)) => word.push(n),
                        None => quote = None,
                    }
                }
                _ => word.push(c),
            }
            i += 1;
        }
        if word == "--" {
            let rest = chars.get(i).map_or("", |&(at, _)| &line[at..]);
            return (flags, rest);
        }
        if blank_ok || !word.is_empty() {
            flags.push(word);
        }
    }
}

/// Parses a JSON array of strings. `Ok(None)`: not JSON (shell form
/// applies); `Err`: a JSON array holding something other than strings.
pub(crate) fn parse_json(rest: &str) -> Result<Option<Vec<String>>, String> {
    let t = rest.trim_start();
    if !t.starts_with('[') {
        return Ok(None);
    }
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str::<serde_json::Value>(t) else {
        return Ok(None);
    };
    items
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => {
                Err("when using JSON array syntax, arrays must be comprised of strings only".into())
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// ENV and LABEL: `key value` (legacy, one pair) or `k=v k2="v 2" ...`.
fn name_vals(rest: &str, what: &str, escape: char) -> Result<Vec<String>, String> {
    let words = split_keeping_quotes(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let Some(at) = rest.find(is_word_sep) else {
            return Err(format!("{what} must have two arguments"));
        };
        let key = &rest[..at];
        let value = rest[at..].trim_start_matches(is_word_sep);
        return Ok(vec![key.to_string(), value.to_string()]);
    }
    let mut out = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in \"{w}\". Must be of the form: name=value"
            ));
        };
        out.push(k.to_string());
        out.push(v.to_string());
    }
    Ok(out)
}

/// Builds a node from one logical line. `depth` stops ONBUILD nesting
/// (refused later) from recursing.
fn node_from_line(line: &str, escape: char, depth: usize) -> Result<Node, String> {
    let trimmed = line.trim();
    let (cmd, after) = match trimmed.find(is_word_sep) {
        Some(at) => (
            &trimmed[..at],
            trimmed[at..].trim_start_matches(is_word_sep),
        ),
        None => (trimmed, ""),
    };
    let (flags, rest) = extract_flags(after);
    let rest = rest.trim();
    let mut node = Node {
        cmd: cmd.to_string(),
        flags,
        ..Node::default()
    };
    let maybe_json = |node: &mut Node, list: bool| -> Result<(), String> {
        match parse_json(rest)? {
            Some(items) => {
                node.args = items;
                node.json = true;
            }
            None if list => node.args = split_ws(rest),
            None if rest.is_empty() => {}
            None => node.args = vec![rest.to_string()],
        }
        Ok(())
    };
    match node.lower().as_str() {
        "add" | "copy" | "volume" => maybe_json(&mut node, true)?,
        "cmd" | "entrypoint" | "run" | "shell" => maybe_json(&mut node, false)?,
        "arg" => node.args = split_keeping_quotes(rest, escape),
        "env" => node.args = name_vals(rest, "ENV", escape)?,
        "label" => node.args = name_vals(rest, "LABEL", escape)?,
        "expose" | "from" => node.args = split_ws(rest),
        "maintainer" | "stopsignal" | "user" | "workdir" if !rest.is_empty() => {
            node.args = vec![rest.to_string()];
        }
        "healthcheck" => {
            // The type word, then CMD's arguments in JSON or shell form.
            if let Some(typ) = rest
                .split(char::is_whitespace)
                .next()
                .filter(|t| !t.is_empty())
            {
                let cmd_rest = rest[typ.len()..].trim_start();
                node.args.push(typ.to_string());
                match parse_json(cmd_rest)? {
                    Some(items) => {
                        node.args.extend(items);
                        node.json = true;
                    }
                    None if cmd_rest.is_empty() => {}
                    None => node.args.push(cmd_rest.to_string()),
                }
            }
        }
        "onbuild" => {
            if !rest.is_empty() && depth == 0 {
                let child = node_from_line(rest, escape, depth + 1)?;
                node.child = Some(Box::new(child));
            } else if !rest.is_empty() {
                node.args = vec![rest.to_string()];
            }
        }
        // Unknown instructions are reported by the second pass, in order.
        _ => {}
    }
    Ok(node)
}

/// The heredoc markers among the words of an instruction line.
fn heredocs_from_line(line: &str) -> Result<Vec<super::words::Marker>, String> {
    let mut out = Vec::new();
    for w in raw_words(line) {
        if let Some(m) = heredoc_marker(&w)? {
            out.push(m);
        }
    }
    Ok(out)
}

pub(crate) fn scan(text: &str) -> Result<Scanned, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut escape = '\\';
    let mut syntax = None;
    let mut directives_done = false;
    let mut seen = HashSet::new();
    let mut nodes = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let lineno = i + 1;
        let content = trim_newline(lines[i]);
        i += 1;
        let first = content.trim_start();
        if !directives_done {
            match directive(first) {
                Some((key, value)) if matches!(key.as_str(), "escape" | "syntax" | "check") => {
                    if !seen.insert(key.clone()) {
                        return Err(ParseError {
                            line: lineno,
                            message: format!("only one {key} parser directive can be used"),
                        });
                    }
                    match key.as_str() {
                        "escape" => {
                            escape = match value.as_str() {
                                "\\" => '\\',
                                "`" => '`',
                                _ => {
                                    return Err(ParseError {
                                        line: lineno,
                                        message: format!(
                                            "invalid escape token '{value}' does not match ` or \\"
                                        ),
                                    })
                                }
                            }
                        }
                        "syntax" => syntax = Some(value),
                        _ => {}
                    }
                    continue;
                }
                _ => directives_done = true,
            }
        }
        if first.starts_with('#') {
            continue;
        }
        let start = lineno;
        let (seg, mut more) = trim_continuation(first, escape);
        if !more && seg.is_empty() {
            continue;
        }
        let mut line = seg.to_string();
        let mut segs = vec![seg];
        while more && i < lines.len() {
            let c = trim_newline(lines[i]);
            i += 1;
            let left = c.trim_start();
            // Comments and blank lines inside a continued instruction are
            // skipped, not ends of it.
            if left.starts_with('#') || left.is_empty() {
                continue;
            }
            let (seg, m) = trim_continuation(c, escape);
            line.push_str(seg);
            segs.push(seg);
            more = m;
        }
        let err = |message: String| ParseError {
            line: start,
            message,
        };
        let mut node = node_from_line(&line, escape, 0).map_err(err)?;
        node.line = start;
        node.text = segs
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if node.can_contain_heredoc() {
            for m in heredocs_from_line(&line).map_err(err)? {
                let mut content = String::new();
                let mut terminated = false;
                while i < lines.len() {
                    let raw = lines[i];
                    i += 1;
                    let mut candidate = trim_newline(raw);
                    if m.strip_tabs {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == m.name {
                        terminated = true;
                        break;
                    }
                    content.push_str(raw);
                }
                if !terminated {
                    return Err(err(format!("unterminated heredoc {}", m.name)));
                }
                node.heredocs.push(Heredoc {
                    name: m.name,
                    content,
                    expand: m.expand,
                    strip_tabs: m.strip_tabs,
                });
            }
        }
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err(ParseError {
            line: lines.len().max(1),
            message: "file with no instructions".into(),
        });
    }
    Ok(Scanned {
        escape,
        syntax,
        nodes,
        line_count: lines.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives() {
        assert_eq!(directive("# escape=`"), Some(("escape".into(), "`".into())));
        assert_eq!(
            directive("#ESCAPE = \\ "),
            Some(("escape".into(), "\\".into()))
        );
        assert_eq!(
            directive("# syntax=docker/dockerfile:1.7"),
            Some(("syntax".into(), "docker/dockerfile:1.7".into()))
        );
        assert_eq!(directive("# k2x=v"), Some(("k2x".into(), "v".into())));
        assert_eq!(directive("# 2k=v"), None);
        assert_eq!(directive("# escape="), None);
        assert_eq!(directive("# just a comment"), None);
        assert_eq!(directive("FROM x"), None);
    }

    #[test]
    fn continuation() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ", true));
        assert_eq!(trim_continuation("a \\  \t", '\\'), ("a ", true));
        assert_eq!(trim_continuation("\\", '\\'), ("", true));
        assert_eq!(trim_continuation("a \\\\", '\\'), ("a \\\\", false));
        assert_eq!(trim_continuation("a `", '`'), ("a ", true));
        assert_eq!(trim_continuation("C:\\", '`'), ("C:\\", false));
        assert_eq!(trim_continuation("a", '\\'), ("a", false));
    }

    #[test]
    fn flags() {
        assert_eq!(
            extract_flags("--from=a --chown=\"1 2\" src dst"),
            (vec!["--from=a".into(), "--chown=1 2".into()], "src dst")
        );
        assert_eq!(
            extract_flags("--link -- --x y"),
            (vec!["--link".into()], " --x y")
        );
        assert_eq!(extract_flags("-x"), (vec![], "-x"));
        assert_eq!(extract_flags("--a=\\ b c"), (vec!["--a= b".into()], "c"));
        assert_eq!(extract_flags("--"), (vec![], ""));
        assert_eq!(extract_flags("--a=''"), (vec!["--a=".into()], ""));
    }

    #[test]
    fn json_arrays() {
        assert_eq!(
            parse_json(r#" ["a", "b c"]"#),
            Ok(Some(vec!["a".into(), "b c".into()]))
        );
        assert_eq!(parse_json("[]"), Ok(Some(vec![])));
        assert_eq!(
            parse_json(r#"["a"] x"#),
            Ok(None),
            "trailing text: shell form"
        );
        assert_eq!(parse_json("[a]"), Ok(None));
        assert_eq!(parse_json("echo [a]"), Ok(None));
        assert!(parse_json(r#"["a", 1]"#).is_err());
    }

    #[test]
    fn env_shapes() {
        assert_eq!(
            name_vals("k v w", "ENV", '\\'),
            Ok(vec!["k".into(), "v w".into()])
        );
        assert_eq!(
            name_vals(r#"a=1 b="2 3""#, "ENV", '\\'),
            Ok(vec!["a".into(), "1".into(), "b".into(), r#""2 3""#.into()])
        );
        assert_eq!(
            name_vals("k", "ENV", '\\'),
            Err("ENV must have two arguments".into())
        );
        assert!(name_vals("a=1 b", "LABEL", '\\')
            .unwrap_err()
            .starts_with("Syntax error - can't find = in \"b\""));
    }
}
