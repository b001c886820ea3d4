//! `.dockerignore` matching as the Dockerfile reference's ".dockerignore file"
//! section describes it: every pattern is cleaned like Go's `filepath.Clean`
//! with a leading `/` dropped, lines starting with `#` are comments, `!`
//! re-includes, the last matching pattern wins, a pattern that matches a
//! directory excludes everything below it, and `**` spans any number of
//! directories. The glob syntax otherwise is Go's `filepath.Match`, which COPY
//! and ADD source globs share through [`glob_match`].

/// One element of a compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Lit(char),
    /// `*`: any run of characters; `cross` says whether it may span `/`.
    Star {
        cross: bool,
    },
    /// `?`: one character; `cross` says whether it may be `/`.
    One {
        cross: bool,
    },
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**/` (or `**` inside a pattern): nothing, or anything ending in `/`.
    AnyDirs,
}

/// Which glob dialect a pattern is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Go's `filepath.Match`: malformed patterns are rejected.
    Go,
    /// `.dockerignore`: `filepath.Match` plus `**`.
    Ignore,
    /// Shell patterns of `${V#pat}` and friends: `*` and `?` span `/`, `[!..]`
    /// negates, and a malformed class is taken literally.
    Shell,
}

/// Parses a character class starting just after `[`; returns the token and
/// the index after the closing `]`, or `None` when the class is malformed in
/// the way `filepath.Match` reports `ErrBadPattern`.
fn parse_class(p: &[char], mut i: usize, dialect: Dialect) -> Option<(Token, usize)> {
    let mut negated = false;
    if i < p.len() && (p[i] == '^' || (dialect == Dialect::Shell && p[i] == '!')) {
        negated = true;
        i += 1;
    }
    let mut ranges = Vec::new();
    let esc = |i: &mut usize| -> Option<char> {
        let c = *p.get(*i)?;
        if c == '-' || c == ']' {
            return None;
        }
        if c == '\\' {
            *i += 1;
            let c = *p.get(*i)?;
            *i += 1;
            return Some(c);
        }
        *i += 1;
        Some(c)
    };
    loop {
        if i < p.len() && p[i] == ']' && !ranges.is_empty() {
            return Some((Token::Class { negated, ranges }, i + 1));
        }
        let lo = esc(&mut i)?;
        let mut hi = lo;
        if i < p.len() && p[i] == '-' {
            i += 1;
            hi = esc(&mut i)?;
        }
        ranges.push((lo, hi));
    }
}

/// Compiles `pattern` in `dialect`; `None` when it is malformed (only the Go
/// and ignore dialects reject anything).
pub(crate) fn compile(pattern: &str, dialect: Dialect) -> Option<Vec<Token>> {
    let p: Vec<char> = pattern.chars().collect();
    let cross = dialect == Dialect::Shell;
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        let c = p[i];
        i += 1;
        match c {
            '*' if dialect == Dialect::Ignore && p.get(i) == Some(&'*') => {
                i += 1;
                if p.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == p.len() {
                    out.push(Token::Star { cross: true });
                } else {
                    out.push(Token::AnyDirs);
                }
            }
            '*' => {
                // Consecutive stars mean the same as one; collapsing them
                // keeps matching linear.
                if out.last() != Some(&Token::Star { cross }) {
                    out.push(Token::Star { cross });
                }
            }
            '?' => out.push(Token::One { cross }),
            '[' => match parse_class(&p, i, dialect) {
                Some((tok, next)) => {
                    out.push(tok);
                    i = next;
                }
                None if dialect == Dialect::Shell => out.push(Token::Lit('[')),
                None => return None,
            },
            '\\' => match p.get(i) {
                Some(&n) => {
                    out.push(Token::Lit(n));
                    i += 1;
                }
                // filepath.Match rejects a trailing backslash; the ignore
                // matcher's regular expression keeps it literally, but every
                // ignore pattern is validated with filepath.Match first.
                None if dialect == Dialect::Shell => out.push(Token::Lit('\\')),
                None => return None,
            },
            c => out.push(Token::Lit(c)),
        }
    }
    Some(out)
}

fn class_has(ranges: &[(char, char)], c: char) -> bool {
    ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi)
}

/// Whether the compiled `toks` match all of `s`. Dynamic programming over
/// (token, position), so hostile patterns cannot make it exponential.
pub(crate) fn matches(toks: &[Token], s: &[char]) -> bool {
    let m = s.len();
    // next[j]: toks[i+1..] matches s[j..]; cur[j]: toks[i..] matches s[j..].
    let mut next = vec![false; m + 1];
    next[m] = true;
    let mut cur = vec![false; m + 1];
    for tok in toks.iter().rev() {
        match tok {
            Token::Lit(c) => {
                for j in 0..=m {
                    cur[j] = j < m && s[j] == *c && next[j + 1];
                }
            }
            Token::One { cross } => {
                for j in 0..=m {
                    cur[j] = j < m && (*cross || s[j] != '/') && next[j + 1];
                }
            }
            Token::Class { negated, ranges } => {
                for j in 0..=m {
                    cur[j] = j < m && (class_has(ranges, s[j]) != *negated) && next[j + 1];
                }
            }
            Token::Star { cross } => {
                cur[m] = next[m];
                for j in (0..m).rev() {
                    cur[j] = next[j] || ((*cross || s[j] != '/') && cur[j + 1]);
                }
            }
            Token::AnyDirs => {
                // Either nothing, or a run ending in '/' followed by a match.
                let mut any = false;
                cur[m] = next[m];
                for j in (0..m).rev() {
                    any = any || (s[j] == '/' && next[j + 1]);
                    cur[j] = next[j] || any;
                }
            }
        }
        std::mem::swap(&mut cur, &mut next);
    }
    next[0]
}

/// Go's `filepath.Match`: whether `path` as a whole matches `pattern`.
/// `*` matches any run of non-`/` characters, `?` one non-`/` character,
/// `[a-z]` / `[^a]` a class, `\x` the character `x`. A malformed pattern
/// matches nothing.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    match compile(pattern, Dialect::Go) {
        Some(toks) => matches(&toks, &path.chars().collect::<Vec<_>>()),
        None => false,
    }
}

/// Whether `pattern` is well formed for [`glob_match`].
pub fn glob_is_valid(pattern: &str) -> bool {
    compile(pattern, Dialect::Go).is_some()
}

/// Go's `filepath.Clean` on a `/`-separated path.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".to_string();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            x => out.push(x),
        }
    }
    let joined = out.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

#[derive(Debug, Clone)]
struct Pattern {
    exclusion: bool,
    toks: Vec<Token>,
    /// The cleaned pattern split at `/`, compiled per component, for
    /// deciding whether a re-include can reach inside a directory.
    parts: Vec<Option<Vec<Token>>>,
}

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
    invalid: Vec<String>,
}

fn relative(rel: &str) -> String {
    let c = clean_path(rel);
    match c.strip_prefix('/') {
        Some("") => ".".to_string(),
        Some(rest) => rest.to_string(),
        None => c,
    }
}

impl DockerIgnore {
    /// Reads `.dockerignore` text. Malformed patterns (which make Docker
    /// refuse the build) are left out and listed by [`Self::invalid_patterns`].
    pub fn parse(text: &str) -> Self {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut me = DockerIgnore::default();
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            // Only a '#' in the first column starts a comment.
            if line.starts_with('#') {
                continue;
            }
            let mut pat = line.trim();
            if pat.is_empty() {
                continue;
            }
            let exclusion = pat.starts_with('!');
            if exclusion {
                pat = pat[1..].trim();
            }
            if pat.is_empty() {
                me.invalid.push(line.trim().to_string());
                continue;
            }
            let mut cleaned = clean_path(pat);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            if !glob_is_valid(&cleaned) {
                me.invalid.push(line.trim().to_string());
                continue;
            }
            let Some(toks) = compile(&cleaned, Dialect::Ignore) else {
                me.invalid.push(line.trim().to_string());
                continue;
            };
            let parts = cleaned
                .split('/')
                .map(|part| {
                    if part.contains("**") {
                        None
                    } else {
                        compile(part, Dialect::Ignore)
                    }
                })
                .collect();
            me.patterns.push(Pattern {
                exclusion,
                toks,
                parts,
            });
        }
        me
    }

    /// The lines that were not valid patterns.
    pub fn invalid_patterns(&self) -> &[String] {
        &self.invalid
    }

    /// Whether the context path `rel` (relative to the context root, `/`
    /// separated) is excluded: the last pattern that matches it or one of its
    /// parent directories decides.
    pub fn is_excluded(&self, rel: &str) -> bool {
        let file = relative(rel);
        if file == "." {
            return false;
        }
        let chars: Vec<char> = file.chars().collect();
        // Every proper parent directory, shortest first.
        let parents: Vec<usize> = chars
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == '/')
            .map(|(i, _)| i)
            .collect();
        let mut excluded = false;
        for p in &self.patterns {
            // An include cannot change an excluded path, nor a re-include a
            // path that is not excluded.
            if p.exclusion != excluded {
                continue;
            }
            let hit = matches(&p.toks, &chars)
                || parents.iter().any(|&end| matches(&p.toks, &chars[..end]));
            if hit {
                excluded = !p.exclusion;
            }
        }
        excluded
    }

    /// Whether anything below the directory `dir_rel` may be part of the
    /// context. False only when the directory is excluded and no `!` pattern
    /// can reach into it, so a walker may skip it entirely.
    pub fn may_include_below(&self, dir_rel: &str) -> bool {
        if !self.is_excluded(dir_rel) {
            return true;
        }
        let dir = relative(dir_rel);
        let comps: Vec<Vec<char>> = dir.split('/').map(|c| c.chars().collect()).collect();
        self.patterns.iter().filter(|p| p.exclusion).any(|p| {
            for (part, comp) in p.parts.iter().zip(&comps) {
                match part {
                    // `**` can stand for the rest of the directory.
                    None => return true,
                    Some(toks) if !matches(toks, comp) => return false,
                    Some(_) => {}
                }
            }
            true
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_match_semantics() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", "dir/a.txt"));
        assert!(glob_match("*/*.txt", "dir/a.txt"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "a/c"));
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[a-c]x", "dx"));
        assert!(glob_match("[^a-c]x", "dx"));
        assert!(!glob_match("[^a-c]x", "ax"));
        assert!(glob_match(r"\*", "*"));
        assert!(!glob_match(r"\*", "a"));
        assert!(glob_match(r"[\]]", "]"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(glob_match("[日本]", "本"));
        // Malformed patterns, as filepath.Match reports ErrBadPattern.
        for bad in [
            "[", "[]", "[a-", "[a-]", "[^]", "a\\", "[]a]", "[-]", "[ab-]",
        ] {
            assert!(!glob_is_valid(bad), "{bad}");
            assert!(!glob_match(bad, "a"), "{bad}");
        }
    }

    #[test]
    fn hostile_pattern_is_fast() {
        let pat = "a*".repeat(200) + "b";
        let s = "a".repeat(2000);
        assert!(!glob_match(&pat, &s));
    }

    #[test]
    fn clean_like_go() {
        for (i, o) in [
            ("", "."),
            ("a/b/../c", "a/c"),
            ("/../a", "/a"),
            ("../a/..", ".."),
            ("./a//b/", "a/b"),
            ("/", "/"),
            ("a/../..", ".."),
        ] {
            assert_eq!(clean_path(i), o, "{i}");
        }
    }

    #[test]
    fn basic_patterns_and_parents() {
        let ig = DockerIgnore::parse("# comment\n\nnode_modules\n*.log\n/build/\ntemp?\n");
        assert!(ig.is_excluded("node_modules"));
        assert!(ig.is_excluded("node_modules/x/y.js"));
        assert!(ig.is_excluded("a.log"));
        assert!(!ig.is_excluded("dir/a.log"), "* does not cross directories");
        assert!(ig.is_excluded("build/out.o"));
        assert!(ig.is_excluded("./build"));
        assert!(ig.is_excluded("temp1"));
        assert!(!ig.is_excluded("temp12"));
        assert!(!ig.is_excluded("src/main.rs"));
        assert!(!ig.is_excluded("# comment"));
        assert!(!ig.is_excluded("."));
    }

    #[test]
    fn comment_only_in_first_column() {
        let ig = DockerIgnore::parse("  #notacomment\n#x\n");
        assert!(ig.is_excluded("#notacomment"));
        assert!(!ig.is_excluded("#x"));
    }

    #[test]
    fn double_star() {
        let ig = DockerIgnore::parse("**/*.go\n");
        assert!(ig.is_excluded("a.go"));
        assert!(ig.is_excluded("x/y/z/a.go"));
        assert!(!ig.is_excluded("x/a.rs"));
        let ig = DockerIgnore::parse("docs/**\n");
        assert!(ig.is_excluded("docs/a/b"));
        assert!(!ig.is_excluded("docsx"));
        let ig = DockerIgnore::parse("a/**/b\n");
        assert!(ig.is_excluded("a/b"));
        assert!(ig.is_excluded("a/x/y/b"));
        assert!(ig.is_excluded("a/x/b/c"), "parent match");
        assert!(!ig.is_excluded("a/xb"));
        let ig = DockerIgnore::parse("**\n!keep\n");
        assert!(ig.is_excluded("anything/at/all"));
        assert!(!ig.is_excluded("keep"));
    }

    #[test]
    fn exceptions_last_match_wins() {
        let ig = DockerIgnore::parse("*.md\n!README.md\nREADME-secret.md\n");
        assert!(ig.is_excluded("CHANGES.md"));
        assert!(!ig.is_excluded("README.md"));
        assert!(ig.is_excluded("README-secret.md"));

        let ig = DockerIgnore::parse("!README.md\n*.md\n");
        assert!(ig.is_excluded("README.md"), "a later exclusion wins");

        let ig = DockerIgnore::parse("vendor\n!vendor/keep\n");
        assert!(ig.is_excluded("vendor/other"));
        assert!(!ig.is_excluded("vendor/keep"));
        assert!(!ig.is_excluded("vendor/keep/inner"), "parent re-included");
    }

    #[test]
    fn patterns_are_cleaned() {
        let ig = DockerIgnore::parse("/a/../b/./c/\n  spaced  \n!/b/c/keep\n");
        assert!(ig.is_excluded("b/c/x"));
        assert!(!ig.is_excluded("b/c/keep"));
        assert!(ig.is_excluded("spaced"));
        assert!(!ig.is_excluded("a"));
    }

    #[test]
    fn invalid_patterns_are_reported() {
        let ig = DockerIgnore::parse("[\n!\nok\n");
        assert_eq!(ig.invalid_patterns(), ["[", "!"]);
        assert!(ig.is_excluded("ok"));
        assert!(!ig.is_excluded("["));
    }

    #[test]
    fn pruning() {
        let ig = DockerIgnore::parse("node_modules\ntarget\n!target/release/app\n**/.git\n");
        assert!(!ig.may_include_below("node_modules"));
        assert!(!ig.may_include_below("sub/.git"));
        assert!(ig.may_include_below("target"));
        assert!(ig.may_include_below("target/release"));
        assert!(!ig.may_include_below("target/debug"));
        assert!(ig.may_include_below("src"));
        let ig = DockerIgnore::parse("*\n!**/*.rs\n");
        assert!(ig.may_include_below("any/dir"));
        assert!(!ig.is_excluded("any/dir/x.rs"));
        assert!(ig.is_excluded("any/dir/x.txt"));
    }

    #[test]
    fn shell_dialect() {
        let t = compile("*.tar.[!g]z", Dialect::Shell).unwrap();
        assert!(matches(&t, &"a/b.tar.xz".chars().collect::<Vec<_>>()));
        assert!(!matches(&t, &"a/b.tar.gz".chars().collect::<Vec<_>>()));
        let t = compile("[", Dialect::Shell).unwrap();
        assert!(matches(&t, &['[']));
    }
}
