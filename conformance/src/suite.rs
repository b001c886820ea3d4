//! `--suite-dir`: a prebuilt OCI runtime-tools validation suite (its
//! `*.t` test programs and the `runtimetest` they copy into bundles), run
//! against each runtime with its TAP output turned into rows.
//!
//! Each program runs with `RUNTIME` set to the runtime's path and the
//! suite directory as its working directory, as runtime-tools' own
//! harness runs them. A test point becomes a row named after the program
//! and the point's description; the spec section comes from the point's
//! YAML `reference:` when it has one. A program that crashes, times out
//! or prints fewer points than its plan gets a failed row saying so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::report::{Outcome, Row};
use crate::runtime::{run_command, Runtime};

/// How long one test program may run.
pub const PROGRAM_TIMEOUT: Duration = Duration::from_secs(300);

/// One test point of a TAP stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    /// Its description (or `#N` when it has none).
    pub name: String,
    /// The spec section from its `reference:` (`config.md#root`), if any.
    pub section: Option<String>,
    /// What happened.
    pub outcome: Outcome,
}

/// Parses a TAP stream (version 12 or 13) as runtime-tools prints it.
/// `code` is the program's exit status; a crash or a short stream adds a
/// failed point.
pub fn parse_tap(text: &str, code: i32) -> Vec<Point> {
    let mut points: Vec<Point> = Vec::new();
    let mut planned: Option<usize> = None;
    let mut skip_all: Option<String> = None;
    let mut bail: Option<String> = None;
    let mut in_yaml = false;
    for line in text.lines() {
        let t = line.trim();
        if in_yaml {
            if t == "..." {
                in_yaml = false;
            } else if let Some(r) = t.strip_prefix("reference:") {
                if let Some(p) = points.last_mut() {
                    p.section = Some(section_of(r.trim().trim_matches(['"', '\''])));
                }
            }
            continue;
        }
        if t == "---" && !points.is_empty() && line.starts_with(' ') {
            in_yaml = true;
        } else if let Some(plan) = t.strip_prefix("1..") {
            let (n, rest) = plan.split_once('#').unwrap_or((plan, ""));
            planned = n.trim().parse().ok();
            if planned == Some(0) {
                let why = rest.trim();
                let why = why
                    .strip_prefix("SKIP")
                    .or_else(|| why.strip_prefix("skip"))
                    .unwrap_or(why);
                skip_all = Some(why.trim().to_string());
            }
        } else if let Some(r) = t.strip_prefix("Bail out!") {
            bail = Some(r.trim().to_string());
        } else if let Some(p) = test_line(t, points.len() + 1) {
            points.push(p);
        }
    }
    if let Some(why) = skip_all {
        if points.is_empty() {
            let why = if why.is_empty() {
                "skipped".into()
            } else {
                why
            };
            points.push(Point {
                name: "(all)".into(),
                section: None,
                outcome: Outcome::Skip(why),
            });
            return points;
        }
    }
    if let Some(why) = bail {
        points.push(failed("(bail out)", format!("bailed out: {why}")));
    } else if let Some(n) = planned.filter(|n| points.len() < *n) {
        points.push(failed(
            "(missing points)",
            format!("planned {n} points, printed {}", points.len()),
        ));
    } else if planned.is_none() && code == 0 && points.is_empty() {
        points.push(failed("(no output)", "printed no TAP".into()));
    }
    if code != 0 && !points.iter().any(|p| matches!(p.outcome, Outcome::Fail(_))) {
        points.push(failed("(exit status)", format!("exited {code}")));
    }
    points
}

fn failed(name: &str, why: String) -> Point {
    Point {
        name: name.into(),
        section: None,
        outcome: Outcome::Fail(why),
    }
}

/// `ok N - desc # SKIP why` and friends; None for any other line.
fn test_line(t: &str, next: usize) -> Option<Point> {
    let (ok, rest) = if let Some(r) = t.strip_prefix("not ok") {
        (false, r)
    } else if let Some(r) = t.strip_prefix("ok") {
        (true, r)
    } else {
        return None;
    };
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    let rest = rest.trim_start();
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    let number = rest[..digits].parse().unwrap_or(next);
    let rest = rest[digits..].trim_start();
    let rest = rest.strip_prefix('-').unwrap_or(rest).trim();
    let (desc, directive) = match rest.split_once(" # ").or_else(|| rest.split_once('#')) {
        Some((d, x)) => (d.trim(), x.trim()),
        None => (rest, ""),
    };
    let upper = directive.to_ascii_uppercase();
    let outcome = if upper.starts_with("SKIP") {
        Outcome::Skip(directive[4..].trim().to_string())
    } else if upper.starts_with("TODO") && !ok {
        Outcome::Skip(format!("todo: {}", directive[4..].trim()))
    } else if ok {
        Outcome::Pass
    } else {
        Outcome::Fail(if desc.is_empty() {
            format!("test point {number} failed")
        } else {
            desc.to_string()
        })
    };
    let name = if desc.is_empty() {
        format!("#{number}")
    } else {
        desc.to_string()
    };
    Some(Point {
        name,
        section: None,
        outcome,
    })
}

/// `https://github.com/opencontainers/runtime-spec/blob/v1.0.0/config.md#root`
/// → `config.md#root`; anything else is kept as it is.
pub fn section_of(reference: &str) -> String {
    match reference.split_once("/blob/") {
        Some((_, rest)) => rest
            .split_once('/')
            .map(|(_, path)| path.to_string())
            .unwrap_or_else(|| rest.to_string()),
        None => reference.to_string(),
    }
}

/// The suite's test programs: executable `*.t` files under `dir`, sorted.
pub fn programs(dir: &Path) -> Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("read {}", d.display()))? {
            let p = e?.path();
            let meta = std::fs::metadata(&p)?;
            if meta.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "t")
                && meta.permissions().mode() & 0o111 != 0
            {
                out.push(p);
            }
        }
    }
    out.sort();
    anyhow::ensure!(
        !out.is_empty(),
        "{}: no executable *.t test programs (a built runtime-tools validation suite has them)",
        dir.display()
    );
    Ok(out)
}

/// Runs the suite in `dir` against every runtime.
pub fn run_suite(dir: &Path, runtimes: &[Runtime]) -> Result<Vec<Row>> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("suite directory {}", dir.display()))?;
    let programs = programs(&dir)?;
    let mut rows: Vec<Row> = Vec::new();
    for prog in &programs {
        let label = prog
            .strip_prefix(&dir)
            .unwrap_or(prog)
            .display()
            .to_string();
        let label = label.strip_suffix(".t").unwrap_or(&label).to_string();
        let mut per_runtime = Vec::new();
        for rt in runtimes {
            let runtime = rt.path.canonicalize().unwrap_or_else(|_| rt.path.clone());
            let mut c = Command::new(prog);
            c.current_dir(&dir).env("RUNTIME", &runtime);
            std::os::unix::process::CommandExt::process_group(&mut c, 0);
            let out = run_command(c, PROGRAM_TIMEOUT);
            let mut points = parse_tap(&out.stdout, out.code);
            if out.code == -1 {
                points.push(failed("(timeout)", format!("ran over {PROGRAM_TIMEOUT:?}")));
            }
            per_runtime.push(points);
        }
        rows.extend(merge(&label, &per_runtime));
    }
    Ok(rows)
}

/// One row per test point name (in first-seen order; a repeated name gets
/// `#2`, `#3`), a column per runtime; a point a runtime did not print is
/// a failure in its column.
pub fn merge(label: &str, per_runtime: &[Vec<Point>]) -> Vec<Row> {
    let named: Vec<Vec<(String, &Point)>> = per_runtime
        .iter()
        .map(|points| {
            let mut seen: Vec<String> = Vec::new();
            points
                .iter()
                .map(|p| {
                    let n = seen.iter().filter(|s| **s == p.name).count();
                    seen.push(p.name.clone());
                    let name = if n == 0 {
                        p.name.clone()
                    } else {
                        format!("{} #{}", p.name, n + 1)
                    };
                    (name, p)
                })
                .collect()
        })
        .collect();
    let mut order: Vec<(String, Option<String>)> = Vec::new();
    for points in &named {
        for (name, p) in points {
            match order.iter_mut().find(|(n, _)| n == name) {
                Some((_, s)) if s.is_none() => *s = p.section.clone(),
                Some(_) => {}
                None => order.push((name.clone(), p.section.clone())),
            }
        }
    }
    order
        .into_iter()
        .map(|(name, section)| Row {
            name: format!("{label}: {name}"),
            section: section.unwrap_or_else(|| format!("runtime-tools {label}")),
            outcomes: named
                .iter()
                .map(|points| {
                    points
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, p)| p.outcome.clone())
                        .unwrap_or_else(|| Outcome::Fail("not printed by this run".into()))
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAP: &str = "TAP version 13
ok 1 - root filesystem
not ok 2 - hostname
  ---
  {
  }
  ...
ok 3 - mounts
  ---
  reference: https://github.com/opencontainers/runtime-spec/blob/v1.0.0/config.md#mounts
  ...
ok 4 # SKIP no cgroup v2
not ok 5 - todo thing # TODO later
1..5
";

    #[test]
    fn points_outcomes_and_sections() {
        let p = parse_tap(TAP, 1);
        let got: Vec<(&str, &str, Option<&str>)> = p
            .iter()
            .map(|p| (p.name.as_str(), p.outcome.word(), p.section.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("root filesystem", "pass", None),
                ("hostname", "FAIL", None),
                ("mounts", "pass", Some("config.md#mounts")),
                ("#4", "skip", None),
                ("todo thing", "skip", None),
            ]
        );
    }

    #[test]
    fn crashes_and_short_streams_fail() {
        let p = parse_tap("ok 1 - a\n", 2);
        assert_eq!(p.last().unwrap().name, "(exit status)");
        let p = parse_tap("1..3\nok 1 - a\n", 0);
        assert!(
            matches!(p.last().unwrap().outcome, Outcome::Fail(ref m) if m.contains("planned 3"))
        );
        let p = parse_tap("", 0);
        assert!(matches!(p[0].outcome, Outcome::Fail(_)));
        let p = parse_tap("ok 1 - a\nBail out! no runtime\n", 1);
        assert!(
            matches!(p.last().unwrap().outcome, Outcome::Fail(ref m) if m.contains("no runtime"))
        );
        let p = parse_tap("1..0 # SKIP needs root\n", 0);
        assert_eq!(p[0].outcome, Outcome::Skip("needs root".into()));
    }

    #[test]
    fn rows_line_up_by_name() {
        let a = parse_tap("ok 1 - x\nok 2 - y\nok 3 - y\n", 0);
        let b = parse_tap("ok 1 - x\nnot ok 2 - y\n", 1);
        let rows = merge("hooks", &[a, b]);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["hooks: x", "hooks: y", "hooks: y #2"]);
        assert_eq!(rows[1].outcomes[1].word(), "FAIL");
        assert!(matches!(rows[2].outcomes[1], Outcome::Fail(ref m) if m.contains("not printed")));
        assert_eq!(rows[0].section, "runtime-tools hooks");
    }
}
