//! Variable substitution applied to parsed instructions, following the
//! reference's "Environment replacement" list: ADD, COPY, ENV, EXPOSE, LABEL,
//! STOPSIGNAL, USER, VOLUME, WORKDIR, and FROM (image and platform, with the
//! global ARGs). ARG names and defaults are substituted too, but only when
//! the ARG is reached, which is the executor's step ([`ArgDecl::expand`]).
//! Also Go's duration syntax, which HEALTHCHECK options use.

use std::time::Duration;

use super::words::{expand_heredoc_body, expand_word, expand_words, Lookup};
use super::{ArgDecl, Copy, Instruction, Kind, ParseError, Source, Stage};

impl Instruction {
    /// Docker's variable substitution for the instructions that allow it
    /// (ADD COPY ENV EXPOSE LABEL STOPSIGNAL USER VOLUME WORKDIR); the others
    /// (RUN CMD ENTRYPOINT SHELL HEALTHCHECK ONBUILD ARG MAINTAINER) come back
    /// unchanged. Quote removal happens here for the shell-word forms
    /// (`ENV a="x y"` gives `x y`; single quotes are literal; the escape
    /// character is honoured). EXPOSE values split into several ports when a
    /// variable holds several. COPY/ADD heredoc bodies with an unquoted
    /// delimiter get variables and `\` escapes but keep their quotes.
    /// Errors carry `self.line`.
    pub fn expand(&self, escape: char, lookup: Lookup<'_>) -> Result<Instruction, ParseError> {
        let err = |message: String| ParseError {
            line: self.line,
            message,
        };
        let w = |s: &str| expand_word(s, escape, lookup).map_err(err);
        let pairs = |kv: &[(String, String)]| -> Result<Vec<(String, String)>, ParseError> {
            kv.iter().map(|(k, v)| Ok((w(k)?, w(v)?))).collect()
        };
        let copy = |c: &Copy| -> Result<Copy, ParseError> {
            let mut sources = Vec::with_capacity(c.sources.len());
            for s in &c.sources {
                sources.push(match s {
                    Source::Path(p) => Source::Path(w(p)?),
                    Source::Heredoc(h) if h.expand => {
                        let mut h = h.clone();
                        h.content = expand_heredoc_body(&h.content, lookup).map_err(err)?;
                        Source::Heredoc(h)
                    }
                    Source::Heredoc(h) => Source::Heredoc(h.clone()),
                });
            }
            let opt = |o: &Option<String>| o.as_deref().map(w).transpose();
            Ok(Copy {
                sources,
                dest: w(&c.dest)?,
                from: opt(&c.from)?,
                chown: opt(&c.chown)?,
                chmod: opt(&c.chmod)?,
                link: c.link,
            })
        };
        let kind = match &self.kind {
            Kind::Env(kv) => Kind::Env(pairs(kv)?),
            Kind::Label(kv) => Kind::Label(pairs(kv)?),
            Kind::Copy(c) => Kind::Copy(copy(c)?),
            Kind::Add(c) => Kind::Add(copy(c)?),
            Kind::Expose(ports) => {
                let mut out = Vec::new();
                for p in ports {
                    out.extend(expand_words(p, escape, lookup).map_err(err)?);
                }
                Kind::Expose(out)
            }
            Kind::Volume(vols) => {
                let mut out = Vec::new();
                for v in vols {
                    let v = w(v)?;
                    if v.is_empty() {
                        return Err(err("VOLUME specified can not be an empty string".into()));
                    }
                    out.push(v);
                }
                Kind::Volume(out)
            }
            Kind::User(u) => Kind::User(w(u)?),
            Kind::Workdir(d) => Kind::Workdir(w(d)?),
            Kind::StopSignal(s) => Kind::StopSignal(w(s)?),
            other => other.clone(),
        };
        Ok(Instruction {
            line: self.line,
            text: self.text.clone(),
            kind,
        })
    }
}

impl Stage {
    /// FROM's substitution: the image and `--platform`, looked up in the
    /// global ARGs (those before the first FROM). Returns them expanded; an
    /// image that expands to nothing is an error, as in Docker.
    pub fn expand_from(
        &self,
        escape: char,
        lookup: Lookup<'_>,
    ) -> Result<(String, Option<String>), ParseError> {
        let err = |message: String| ParseError {
            line: self.line,
            message,
        };
        let image = expand_word(&self.image, escape, lookup).map_err(err)?;
        if image.is_empty() {
            return Err(err(format!(
                "base name ({}) should not be blank",
                self.image
            )));
        }
        let platform = self
            .platform
            .as_deref()
            .map(|p| expand_word(p, escape, lookup))
            .transpose()
            .map_err(err)?;
        Ok((image, platform))
    }
}

impl ArgDecl {
    /// Substitution of an ARG's name and default, done when the ARG is
    /// reached (with the variables in scope at that point).
    pub fn expand(&self, escape: char, lookup: Lookup<'_>) -> Result<ArgDecl, String> {
        Ok(ArgDecl {
            name: expand_word(&self.name, escape, lookup)?,
            default: self
                .default
                .as_deref()
                .map(|d| expand_word(d, escape, lookup))
                .transpose()?,
        })
    }
}

/// Go's `time.ParseDuration`, in signed nanoseconds.
pub(crate) fn parse_go_duration(s: &str) -> Result<i128, String> {
    let bad = || format!("time: invalid duration \"{s}\"");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    const LIMIT: i128 = i64::MAX as i128;
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        rest = after;
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let n = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &after_dot[..n];
            rest = &after_dot[n..];
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(bad());
            }
        } else if int_part.is_empty() {
            return Err(bad());
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration \"{s}\""));
        }
        let (unit, after) = rest.split_at(unit_len);
        rest = after;
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("time: unknown unit \"{unit}\" in duration \"{s}\"")),
        };
        let whole: i128 = if int_part.is_empty() {
            0
        } else {
            // Anything longer than 19 digits overflows an int64 anyway.
            if int_part.len() > 19 {
                return Err(bad());
            }
            int_part.parse().map_err(|_| bad())?
        };
        let mut v = whole.checked_mul(scale).ok_or_else(bad)?;
        if !frac_part.is_empty() {
            // Go keeps fraction digits while they fit; nanosecond precision
            // needs no more than the first 18 here.
            let digits = &frac_part[..frac_part.len().min(18)];
            let f: i128 = digits.parse().map_err(|_| bad())?;
            let div = 10i128.pow(digits.len() as u32);
            v += f * scale / div;
        }
        total = total.checked_add(v).ok_or_else(bad)?;
        if total > LIMIT {
            return Err(bad());
        }
    }
    Ok(if neg { -total } else { total })
}

/// A HEALTHCHECK option value (Go duration syntax: `30s`, `1m30s`,
/// `1.5h`, `500ms`) as a [`Duration`]. Negative values are refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let n = parse_go_duration(s)?;
    u64::try_from(n)
        .map(Duration::from_nanos)
        .map_err(|_| format!("negative duration \"{s}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        for (s, ns) in [
            ("0", 0i128),
            ("30s", 30_000_000_000),
            ("1m30s", 90_000_000_000),
            ("1.5h", 5_400_000_000_000),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("500ms", 500_000_000),
            ("10us", 10_000),
            ("10µs", 10_000),
            ("-2s", -2_000_000_000),
            ("+3ns", 3),
        ] {
            assert_eq!(parse_go_duration(s), Ok(ns), "{s}");
        }
        for s in [
            "",
            "s",
            "1",
            "1x",
            ".s",
            "1..2s",
            "-",
            "99999999999999999999h",
            "3000000h",
        ] {
            assert!(parse_go_duration(s).is_err(), "{s}");
        }
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("-1s").is_err());
    }
}
