//! Results: one row per case, one outcome per runtime, and the table
//! printed at the end.

use std::fmt::Write as _;

/// What one runtime did with one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The check held.
    Pass,
    /// It did not; why, on one line.
    Fail(String),
    /// Not run: the host or the runtime lacks something the case needs.
    Skip(String),
}

impl Outcome {
    /// The short word shown in the table.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "FAIL",
            Outcome::Skip(_) => "skip",
        }
    }

    /// From a check's result.
    pub fn of(r: Result<(), String>) -> Outcome {
        match r {
            Ok(()) => Outcome::Pass,
            Err(e) => Outcome::Fail(one_line(&e)),
        }
    }
}

/// One case (or one TAP test point of an external suite) across runtimes.
#[derive(Clone, Debug)]
pub struct Row {
    /// The case's name, e.g. `process.user.uid`.
    pub name: String,
    /// The runtime-spec section it checks, e.g. `config.md#user`.
    pub section: String,
    /// One outcome per runtime, in the order the runtimes were given.
    pub outcomes: Vec<Outcome>,
}

/// Counts for one runtime (the column `col`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Cases passed.
    pub passed: usize,
    /// Cases failed.
    pub failed: usize,
    /// Cases skipped.
    pub skipped: usize,
}

/// Counts the outcomes of runtime column `col`.
pub fn counts(rows: &[Row], col: usize) -> Counts {
    let mut c = Counts::default();
    for r in rows {
        match r.outcomes.get(col) {
            Some(Outcome::Pass) => c.passed += 1,
            Some(Outcome::Fail(_)) => c.failed += 1,
            Some(Outcome::Skip(_)) | None => c.skipped += 1,
        }
    }
    c
}

/// The summary line for the first runtime: `N passed, M failed`.
pub fn summary(rows: &[Row]) -> String {
    let c = counts(rows, 0);
    format!("{} passed, {} failed", c.passed, c.failed)
}

/// The aligned table: case, section, one column per runtime; then the
/// reasons for every failure and skip, then the summary line.
pub fn table(runtimes: &[String], rows: &[Row]) -> String {
    let name_w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let sec_w = rows
        .iter()
        .map(|r| r.section.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let col_w: Vec<usize> = runtimes.iter().map(|r| r.len().max(4)).collect();
    let mut out = String::new();
    let _ = write!(out, "{:<name_w$}  {:<sec_w$}", "case", "section");
    for (r, w) in runtimes.iter().zip(&col_w) {
        let _ = write!(out, "  {r:<w$}");
    }
    out.push('\n');
    for row in rows {
        let _ = write!(out, "{:<name_w$}  {:<sec_w$}", row.name, row.section);
        for (o, w) in row.outcomes.iter().zip(&col_w) {
            let _ = write!(out, "  {:<w$}", o.word());
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    }
    let mut notes = String::new();
    for row in rows {
        for (o, r) in row.outcomes.iter().zip(runtimes) {
            match o {
                Outcome::Fail(why) => {
                    let _ = writeln!(notes, "  {r} FAIL {}: {why}", row.name);
                }
                Outcome::Skip(why) => {
                    let _ = writeln!(notes, "  {r} skip {}: {why}", row.name);
                }
                Outcome::Pass => {}
            }
        }
    }
    if !notes.is_empty() {
        out.push_str("\nnot passed:\n");
        out.push_str(&notes);
    }
    for (i, r) in runtimes.iter().enumerate() {
        let c = counts(rows, i);
        let _ = writeln!(
            out,
            "{r}: {} passed, {} failed, {} skipped",
            c.passed, c.failed, c.skipped
        );
    }
    out.push_str(&summary(rows));
    out.push('\n');
    out
}

/// The rows as a Markdown table (case, section, a column per runtime),
/// each runtime's counts under it, then the summary line.
pub fn markdown(runtimes: &[String], rows: &[Row]) -> String {
    let mut out = String::from("| case | section |");
    for r in runtimes {
        let _ = write!(out, " {r} |");
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---|".repeat(runtimes.len()));
    out.push('\n');
    for row in rows {
        let _ = write!(out, "| `{}` | {} |", row.name, row.section);
        for o in &row.outcomes {
            let _ = write!(out, " {} |", o.word());
        }
        out.push('\n');
    }
    out.push('\n');
    for (i, r) in runtimes.iter().enumerate() {
        let c = counts(rows, i);
        let _ = writeln!(
            out,
            "{r}: {} passed, {} failed, {} skipped  ",
            c.passed, c.failed, c.skipped
        );
    }
    out.push_str(&summary(rows));
    out.push('\n');
    out
}

/// `e` on one line, at most 300 characters.
pub fn one_line(e: &str) -> String {
    let s: String = e.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 300 {
        let mut t: String = s.chars().take(297).collect();
        t.push_str("...");
        t
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_column_per_runtime_and_the_summary_last() {
        let rows = vec![
            Row {
                name: "a".into(),
                section: "config.md#a".into(),
                outcomes: vec![Outcome::Pass, Outcome::Fail("x\ny".into())],
            },
            Row {
                name: "bb".into(),
                section: "runtime.md#b".into(),
                outcomes: vec![Outcome::Fail("no".into()), Outcome::Skip("host".into())],
            },
        ];
        let t = table(&["berth".into(), "runc".into()], &rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "case  section       berth  runc");
        assert_eq!(lines[1], "a     config.md#a   pass   FAIL");
        assert_eq!(lines[2], "bb    runtime.md#b  FAIL   skip");
        assert!(t.contains("  berth FAIL bb: no\n"));
        assert!(t.contains("berth: 1 passed, 1 failed, 0 skipped\n"));
        assert!(t.contains("runc: 0 passed, 1 failed, 1 skipped\n"));
        assert_eq!(*lines.last().unwrap(), "1 passed, 1 failed");
        assert_eq!(one_line("x\n  y"), "x y");
        let m = markdown(&["berth".into(), "runc".into()], &rows);
        let lines: Vec<&str> = m.lines().collect();
        assert_eq!(lines[0], "| case | section | berth | runc |");
        assert_eq!(lines[2], "| `a` | config.md#a | pass | FAIL |");
        assert!(m.contains("runc: 0 passed, 1 failed, 1 skipped"));
        assert_eq!(*lines.last().unwrap(), "1 passed, 1 failed");
    }
}
