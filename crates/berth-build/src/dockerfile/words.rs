//! Shell words as the Dockerfile reference's "Environment replacement"
//! section defines them (buildkit's shell lexer is the behaviour matched):
//! quote removal, the escape character, and `$V`, `${V}`, `${V:-w}`,
//! `${V-w}`, `${V:+w}`, `${V+w}`, `${V:?m}`, `${V?m}`, `${V#p}`, `${V##p}`,
//! `${V%p}`, `${V%%p}`, `${V/p/r}`, `${V//p/r}`. Also the parser's
//! quote-preserving splitter for ENV, LABEL and ARG, and heredoc markers.

use crate::ignore::{compile, matches, Dialect};

/// How variables are looked up: `None` is unset, `Some("")` set but empty.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Nested `${...}` deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 64;

/// Lexer switches, each one of buildkit's.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Mode {
    /// Keep quote characters in the result (quotes still group words).
    pub raw_quotes: bool,
    /// Keep escape characters in the result.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset: bool,
    /// Treat quotes as ordinary characters (heredoc bodies).
    pub skip_quotes: bool,
}

#[derive(Default)]
struct Words {
    done: Vec<String>,
    word: String,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.done.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }
    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        for c in s.chars() {
            self.add_char(c);
        }
    }
    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.done.push(self.word);
        }
        self.done
    }
}

struct Lexer<'a> {
    src: Vec<char>,
    pos: usize,
    escape: char,
    lookup: Lookup<'a>,
    mode: Mode,
    depth: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.src.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Reads up to `stop` (consumed) or the end; returns the joined text and
    /// the words it splits into.
    fn process(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match c {
                '\'' if !self.mode.skip_quotes => {
                    let s = self.single_quote()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '"' if !self.mode.skip_quotes => {
                    let s = self.double_quote()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '$' => {
                    let s = self.dollar()?;
                    result.push_str(&s);
                    // Unquoted expansions are split into words.
                    words.add_string(&s);
                }
                _ => {
                    self.next();
                    if c == self.escape {
                        if raw_escapes {
                            words.add_raw_char(c);
                            result.push(c);
                        }
                        // An escape at the very end is dropped.
                        let Some(n) = self.next() else { break };
                        words.add_raw_char(n);
                        result.push(n);
                    } else {
                        words.add_char(c);
                        result.push(c);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn single_quote(&mut self) -> Result<String, String> {
        self.next();
        let mut out = String::new();
        if self.mode.raw_quotes {
            out.push('\'');
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    )
                }
                Some('\'') => {
                    if self.mode.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, String> {
        self.next();
        let mut out = String::new();
        if self.mode.raw_quotes {
            out.push('"');
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    )
                }
                Some('"') => {
                    self.next();
                    if self.mode.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(_) => {
                    let mut c = self.next().unwrap_or_default();
                    if c == self.escape {
                        match self.peek() {
                            // Left for the unterminated-quote error.
                            None => continue,
                            // Inside double quotes the escape only works
                            // before these; elsewhere it stays.
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                if self.mode.raw_escapes {
                                    out.push(c);
                                }
                                c = n;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return c.to_string();
            }
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            name.push(c);
            self.next();
        }
        name
    }

    fn dollar(&mut self) -> Result<String, String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match (self.lookup)(&name) {
                Some(v) => v,
                None if self.mode.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.name();
        let Some(ch) = self.next() else {
            return Err("syntax error: missing '}'".into());
        };
        if self.depth >= MAX_DEPTH {
            return Err("syntax error: substitutions nested too deeply".into());
        }
        self.depth += 1;
        let r = self.modifier(&name, ch);
        self.depth -= 1;
        r
    }

    fn modifier(&mut self, name: &str, ch: char) -> Result<String, String> {
        let value = (self.lookup)(name);
        match ch {
            '}' => Ok(match value {
                Some(v) => v,
                None if self.mode.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let colon = ch == ':';
                let op = if colon {
                    match self.next() {
                        Some(c) => c,
                        None => return Err("syntax error: missing '}'".into()),
                    }
                } else {
                    ch
                };
                let spelled = if colon {
                    format!(":{op}")
                } else {
                    op.to_string()
                };
                let pattern_op = op == '#' || op == '%';
                if colon && pattern_op {
                    return Err(format!("unsupported modifier ({spelled}) in substitution"));
                }
                let (word, _) = self.process(Some('}'), pattern_op).map_err(|e| {
                    if self.peek().is_none() {
                        "syntax error: missing '}'".to_string()
                    } else {
                        e
                    }
                })?;
                if value.is_none() && self.mode.skip_unset {
                    return Ok(format!("${{{name}{spelled}{word}}}"));
                }
                let empty = value.as_deref().is_none_or(str::is_empty);
                let unset = value.is_none() || (colon && empty);
                match op {
                    '-' => Ok(if unset {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if unset { String::new() } else { word }),
                    '?' => {
                        if value.is_none() || unset {
                            let why = if value.is_none() {
                                "is not allowed to be unset"
                            } else {
                                "is not allowed to be empty"
                            };
                            let msg = if word.is_empty() { why } else { &word };
                            Err(format!("{name}: {msg}"))
                        } else {
                            Ok(value.unwrap_or_default())
                        }
                    }
                    '#' | '%' => {
                        let v = value.unwrap_or_default();
                        let (greedy, pat) = match word.strip_prefix(op) {
                            Some(rest) => (true, rest),
                            None => (false, word.as_str()),
                        };
                        Ok(trim_pattern(&v, pat, op == '#', greedy))
                    }
                    _ => Err(format!("unsupported modifier ({spelled}) in substitution")),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let (pattern, _) = self.process(Some('/'), true).map_err(|e| {
                    if self.peek().is_none() {
                        "syntax error: missing '/' in ${}".to_string()
                    } else {
                        e
                    }
                })?;
                let (repl, _) = self.process(Some('}'), true).map_err(|e| {
                    if self.peek().is_none() {
                        "syntax error: missing '}'".to_string()
                    } else {
                        e
                    }
                })?;
                match value {
                    None if self.mode.skip_unset => Ok(format!(
                        "${{{name}/{}{pattern}/{repl}}}",
                        if all { "/" } else { "" }
                    )),
                    v => Ok(replace_pattern(
                        &v.unwrap_or_default(),
                        &pattern,
                        &unescape(&repl, self.escape),
                        all,
                    )),
                }
            }
            c => Err(format!("unsupported modifier ({c}) in substitution")),
        }
    }
}

fn unescape(s: &str, escape: char) -> String {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == escape {
            if let Some(n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn shell_pattern(pat: &str) -> Vec<crate::ignore::Token> {
    compile(pat, Dialect::Shell).unwrap_or_default()
}

/// `${V#p}` / `${V##p}` (prefix) and `${V%p}` / `${V%%p}` (suffix).
fn trim_pattern(value: &str, pat: &str, prefix: bool, greedy: bool) -> String {
    let toks = shell_pattern(pat);
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let cuts: Box<dyn Iterator<Item = usize>> = match (prefix, greedy) {
        (true, false) | (false, true) => Box::new(0..=n),
        (true, true) | (false, false) => Box::new((0..=n).rev()),
    };
    for i in cuts {
        if prefix && matches(&toks, &chars[..i]) {
            return chars[i..].iter().collect();
        }
        if !prefix && matches(&toks, &chars[i..]) {
            return chars[..i].iter().collect();
        }
    }
    value.to_string()
}

/// `${V/p/r}` (first match) and `${V//p/r}` (every match): leftmost,
/// then longest, as a greedy regular expression finds it.
fn replace_pattern(value: &str, pat: &str, repl: &str, all: bool) -> String {
    let toks = shell_pattern(pat);
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let mut out = String::new();
    let mut i = 0;
    let mut replaced = false;
    while i <= n {
        let found = if replaced && !all {
            None
        } else {
            (i..=n).rev().find(|&j| matches(&toks, &chars[i..j]))
        };
        match found {
            Some(j) => {
                out.push_str(repl);
                replaced = true;
                if j == i {
                    // An empty match: keep the character and move on.
                    if i < n {
                        out.push(chars[i]);
                    }
                    i += 1;
                } else {
                    i = j;
                }
            }
            None => {
                if i < n {
                    out.push(chars[i]);
                }
                i += 1;
            }
        }
    }
    out
}

fn run(
    raw: &str,
    escape: char,
    lookup: Lookup<'_>,
    mode: Mode,
) -> Result<(String, Vec<String>), String> {
    let mut lx = Lexer {
        src: raw.chars().collect(),
        pos: 0,
        escape,
        lookup,
        mode,
        depth: 0,
    };
    lx.process(None, mode.raw_escapes)
        .map_err(|e| format!("failed to process {raw:?}: {e}"))
}

/// Docker's single-word processing (buildkit `ProcessWord`): variables
/// substituted, quotes removed, the escape character honoured; whitespace
/// kept.
pub fn expand_word(raw: &str, escape: char, lookup: Lookup<'_>) -> Result<String, String> {
    run(raw, escape, lookup, Mode::default()).map(|(w, _)| w)
}

/// Docker's word-list processing (buildkit `ProcessWords`): like
/// [`expand_word`], then split at unquoted whitespace, including whitespace
/// that a variable's value brought in. Empty words are dropped.
pub fn expand_words(raw: &str, escape: char, lookup: Lookup<'_>) -> Result<Vec<String>, String> {
    run(raw, escape, lookup, Mode::default()).map(|(_, w)| w)
}

/// Expansion of an unquoted heredoc body for COPY/ADD: variables and `\`
/// escapes are processed, quotes are kept as written.
pub(crate) fn expand_heredoc_body(raw: &str, lookup: Lookup<'_>) -> Result<String, String> {
    let mode = Mode {
        skip_quotes: true,
        ..Mode::default()
    };
    run(raw, '\\', lookup, mode).map(|(w, _)| w)
}

fn no_vars(_: &str) -> Option<String> {
    None
}

/// Splits `text` into words the way the parser finds heredoc markers: quotes,
/// escapes and variable references all kept as written.
pub(crate) fn raw_words(text: &str) -> Vec<String> {
    let mode = Mode {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: true,
        skip_quotes: false,
    };
    run(text, '\\', &no_vars, mode)
        .map(|(_, w)| w)
        .unwrap_or_default()
}

/// A heredoc marker such as `<<EOF`, `<<-EOF`, `<<"EOF"` or `3<<'EOF'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    pub name: String,
    pub expand: bool,
    pub strip_tabs: bool,
}

/// Recognises a whole word as a heredoc marker: optional digits, `<<`,
/// optional `-`, then one word without `<` whose quoted parts make the body
/// literal.
pub(crate) fn heredoc_marker(word: &str) -> Result<Option<Marker>, String> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(rest) = rest.strip_prefix("<<") else {
        return Ok(None);
    };
    let (strip_tabs, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let plain = Mode {
        skip_unset: true,
        ..Mode::default()
    };
    let (_, words) = run(rest, '\\', &no_vars, plain)?;
    if words.len() != 1 {
        return Ok(None);
    }
    let (_, raw) = run(
        rest,
        '\\',
        &no_vars,
        Mode {
            raw_quotes: true,
            ..plain
        },
    )?;
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    let expand = raw.len() == 1 && quotes(&words[0]) == quotes(&raw[0]);
    let name = words.into_iter().next().unwrap_or_default();
    Ok(Some(Marker {
        name,
        expand,
        strip_tabs,
    }))
}

/// The parser's word splitter for ENV, LABEL and ARG: splits at unquoted
/// whitespace and keeps quotes and escapes for the later substitution.
pub(crate) fn split_keeping_quotes(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut quote: Option<char> = None;
    let mut in_word = false;
    let mut it = rest.chars().peekable();
    while let Some(c) = it.next() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            // The escape works inside double quotes, never inside single.
            if c == escape && q != '\'' {
                match it.next() {
                    None => {
                        quote = None;
                        continue;
                    }
                    Some(n) => {
                        word.push(c);
                        word.push(n);
                        continue;
                    }
                }
            }
            word.push(c);
            continue;
        }
        if !in_word {
            if c.is_whitespace() {
                continue;
            }
            in_word = true;
        }
        if c.is_whitespace() {
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            blank_ok = false;
            in_word = false;
            continue;
        }
        if c == '\'' || c == '"' {
            quote = Some(c);
            blank_ok = true;
        }
        if c == escape {
            match it.next() {
                // An escape at the end of the line is dropped.
                None => continue,
                Some(n) => {
                    word.push(c);
                    word.push(n);
                    continue;
                }
            }
        }
        word.push(c);
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("a".into()),
            "SP" => Some("x  y".into()),
            "EMPTY" => Some(String::new()),
            "PATH" => Some("/usr/local/bin:/usr/bin".into()),
            "FILE" => Some("archive.tar.gz".into()),
            _ => None,
        }
    }
    fn w(s: &str) -> Result<String, String> {
        expand_word(s, '\\', &env)
    }
    fn ws(s: &str) -> Vec<String> {
        expand_words(s, '\\', &env).unwrap()
    }

    #[test]
    fn plain_and_braced() {
        assert_eq!(w("$A").unwrap(), "a");
        assert_eq!(w("${A}b").unwrap(), "ab");
        assert_eq!(w("$Ab").unwrap(), "", "name runs to the end");
        assert_eq!(w("$UNSET-x").unwrap(), "-x");
        assert_eq!(w("a$").unwrap(), "a$");
        assert_eq!(w("$ A").unwrap(), "$ A");
        assert_eq!(w("$1x").unwrap(), "x");
        assert_eq!(w("${PATH}:/opt").unwrap(), "/usr/local/bin:/usr/bin:/opt");
    }

    #[test]
    fn modifiers() {
        assert_eq!(w("${A:-d}").unwrap(), "a");
        assert_eq!(w("${UNSET:-d}").unwrap(), "d");
        assert_eq!(w("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(w("${EMPTY-d}").unwrap(), "");
        assert_eq!(w("${UNSET-d}").unwrap(), "d");
        assert_eq!(w("${A:+set}").unwrap(), "set");
        assert_eq!(w("${EMPTY:+set}").unwrap(), "");
        assert_eq!(w("${EMPTY+set}").unwrap(), "set");
        assert_eq!(w("${UNSET+set}").unwrap(), "");
        assert_eq!(w("${UNSET:-${A:-z}/x}").unwrap(), "a/x");
        assert_eq!(w("${UNSET:-'q}'}").unwrap(), "q}");
        assert_eq!(w(r"${UNSET:-a\}b}").unwrap(), "a}b");
        assert_eq!(w("${A:?boom}").unwrap(), "a");
        assert_eq!(
            w("${UNSET:?must be set}").unwrap_err(),
            "failed to process \"${UNSET:?must be set}\": UNSET: must be set"
        );
        assert!(w("${EMPTY:?}")
            .unwrap_err()
            .ends_with("EMPTY: is not allowed to be empty"));
        assert_eq!(w("${EMPTY?}").unwrap(), "");
        assert!(w("${UNSET?}")
            .unwrap_err()
            .ends_with("UNSET: is not allowed to be unset"));
    }

    #[test]
    fn patterns() {
        assert_eq!(w("${FILE#*.}").unwrap(), "tar.gz");
        assert_eq!(w("${FILE##*.}").unwrap(), "gz");
        assert_eq!(w("${FILE%.*}").unwrap(), "archive.tar");
        assert_eq!(w("${FILE%%.*}").unwrap(), "archive");
        assert_eq!(w("${FILE#nomatch}").unwrap(), "archive.tar.gz");
        assert_eq!(w("${PATH/usr/opt}").unwrap(), "/opt/local/bin:/usr/bin");
        assert_eq!(w("${PATH//usr/opt}").unwrap(), "/opt/local/bin:/opt/bin");
        assert_eq!(w("${FILE/.*/}").unwrap(), "archive");
        assert!(w("${FILE:#x}")
            .unwrap_err()
            .contains("unsupported modifier (:#)"));
    }

    #[test]
    fn syntax_errors() {
        for (src, msg) in [
            ("${", "missing '}'"),
            ("${A", "missing '}'"),
            ("${A:-x", "missing '}'"),
            ("${}", "bad substitution"),
            ("${:-x}", "bad substitution"),
            ("${A!}", "unsupported modifier (!)"),
            ("'abc", "matching single-quote"),
            ("\"abc", "matching double-quote"),
        ] {
            let e = w(src).unwrap_err();
            assert!(e.contains(msg), "{src}: {e}");
        }
        let deep = "${A:-".repeat(200) + &"}".repeat(200);
        assert!(w(&deep).unwrap_err().contains("nested too deeply"));
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(w(r#""x y""#).unwrap(), "x y");
        assert_eq!(w("'$A'").unwrap(), "$A");
        assert_eq!(w(r#""$A""#).unwrap(), "a");
        assert_eq!(w(r"\$A").unwrap(), "$A");
        assert_eq!(w(r#""\$A""#).unwrap(), "$A");
        assert_eq!(w(r#""a\b""#).unwrap(), r"a\b", "escape kept before others");
        assert_eq!(w(r#""a\"b""#).unwrap(), "a\"b");
        assert_eq!(w(r"a\ b").unwrap(), "a b");
        assert_eq!(w(r"a\\b").unwrap(), r"a\b");
        assert_eq!(w(r"a\").unwrap(), "a");
        assert_eq!(w("'it''s'").unwrap(), "its");
        assert_eq!(w(r#"'a\'"#).unwrap(), r"a\");
        // The backtick escape of `# escape=\``: backslash is ordinary.
        let bt = |s: &str| expand_word(s, '`', &env).unwrap();
        assert_eq!(bt(r"C:\dir\$A"), r"C:\dir\a");
        assert_eq!(bt("`$A"), "$A");
        assert_eq!(bt(r#""`"x""#), "\"x");
    }

    #[test]
    fn word_splitting() {
        assert_eq!(ws("a b  c"), ["a", "b", "c"]);
        assert_eq!(ws("$SP"), ["x", "y"]);
        assert_eq!(ws("\"$SP\""), ["x  y"]);
        assert_eq!(ws("'a b'c d"), ["a bc", "d"]);
        assert_eq!(ws(r"a\ b c"), ["a b", "c"]);
        assert_eq!(ws("\"\" x"), ["x"], "empty words are dropped");
        assert_eq!(ws("$UNSET"), Vec::<String>::new());
        assert_eq!(ws("80/tcp ${A}"), ["80/tcp", "a"]);
    }

    #[test]
    fn heredoc_body_keeps_quotes() {
        assert_eq!(
            expand_heredoc_body("echo \"$A\" '$A' \\$A \\n\n", &env).unwrap(),
            "echo \"a\" 'a' $A n\n"
        );
    }

    #[test]
    fn markers() {
        let m = |s: &str| heredoc_marker(s).unwrap();
        let mk = |name: &str, expand, strip_tabs| {
            Some(Marker {
                name: name.into(),
                expand,
                strip_tabs,
            })
        };
        assert_eq!(m("<<EOF"), mk("EOF", true, false));
        assert_eq!(m("<<-EOF"), mk("EOF", true, true));
        assert_eq!(m("<<\"EOF\""), mk("EOF", false, false));
        assert_eq!(m("<<'E O'"), mk("E O", false, false));
        assert_eq!(m("3<<E\"O\"F"), mk("EOF", false, false));
        assert_eq!(m("<<$X"), mk("$X", true, false));
        assert_eq!(m("<<"), None);
        assert_eq!(m("<<<x"), None);
        assert_eq!(m("a<<EOF"), None);
        assert_eq!(m("\"<<EOF\""), None);
        assert!(heredoc_marker("<<'EOF").is_err());
    }

    #[test]
    fn raw_splitting() {
        assert_eq!(
            raw_words(r#"RUN cat <<"A B" x\ y '$Z' $V"#),
            ["RUN", "cat", "<<\"A B\"", r"x\ y", "'$Z'", "$V"]
        );
    }

    #[test]
    fn quote_preserving_split() {
        let s = |t: &str| split_keeping_quotes(t, '\\');
        assert_eq!(
            s(r#"a=1 b="2 3" c='4 5'"#),
            ["a=1", r#"b="2 3""#, "c='4 5'"]
        );
        assert_eq!(s(r"a=x\ y  b"), [r"a=x\ y", "b"]);
        assert_eq!(s(r#"a="" b"#), [r#"a="""#, "b"]);
        assert_eq!(s(r#"a="x\"y""#), [r#"a="x\"y""#]);
        assert_eq!(s(r"a=x\"), ["a=x"]);
        assert_eq!(s("  "), Vec::<String>::new());
        assert_eq!(split_keeping_quotes("a=`\"b c", '`'), ["a=`\"b", "c"]);
    }
}
