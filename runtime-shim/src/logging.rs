//! Log output in runc's format (logrus text or JSON lines), which container
//! managers parse: containerd reports the last `"level":"error"` line of
//! `--log` as the reason a command failed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

use crate::cli::LogFormat;

/// Where log lines go; errors are echoed to stderr only when it is not
/// already the log, as runc does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    Stderr,
    File,
}

/// Installs the process-wide logger: `path` (appended to, created 0644) or
/// stderr, at info level or debug level with `debug`.
pub fn init(path: Option<&Path>, format: LogFormat, debug: bool) -> anyhow::Result<Sink> {
    let (out, sink): (Box<dyn Write + Send>, Sink) = match path {
        Some(p) if p != Path::new("/dev/stderr") => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o644)
                .open(p)
                .with_context(|| format!("open log file {}", p.display()))?;
            (Box::new(file), Sink::File)
        }
        _ => (Box::new(io::stderr()), Sink::Stderr),
    };
    let level = if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    let subscriber = tracing_subscriber::registry().with(RuncLayer {
        format,
        out: Mutex::new(out),
        level,
    });
    tracing::subscriber::set_global_default(subscriber).context("install the logger")?;
    Ok(sink)
}

struct RuncLayer {
    format: LogFormat,
    out: Mutex<Box<dyn Write + Send>>,
    level: LevelFilter,
}

impl<S: Subscriber> Layer<S> for RuncLayer {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        *metadata.level() <= self.level
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = render(
            self.format,
            level_name(*event.metadata().level()),
            &fields.message,
            &fields.other,
            &rfc3339(SystemTime::now()),
        );
        if let Ok(mut out) = self.out.lock() {
            // A log that cannot be written has nowhere to report to.
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
    }
}

/// A structured field's value, kept typed so JSON output keeps numbers
/// and booleans as such.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

#[derive(Default)]
struct Fields {
    message: String,
    other: BTreeMap<String, Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = match value {
                Value::Str(s) => s,
                other => text_value(&other),
            };
        } else {
            self.other.insert(field.name().to_string(), value);
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::Str(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::U64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::Str(format!("{value:?}")));
    }
}

/// logrus's level names (it says "warning", not "warn").
fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Renders one line, newline included. Field names that collide with the
/// fixed keys get logrus's `fields.` prefix.
pub fn render(
    format: LogFormat,
    level: &str,
    msg: &str,
    fields: &BTreeMap<String, Value>,
    time: &str,
) -> String {
    let fields = fields.iter().map(|(k, v)| {
        let k = match k.as_str() {
            "time" | "level" | "msg" => format!("fields.{k}"),
            _ => k.clone(),
        };
        (k, v)
    });
    let mut line = String::new();
    match format {
        LogFormat::Text => {
            let fixed = [
                ("time".to_string(), Value::Str(time.to_string())),
                ("level".to_string(), Value::Str(level.to_string())),
                ("msg".to_string(), Value::Str(msg.to_string())),
            ];
            let mut rest: Vec<_> = fields.collect();
            rest.sort_by(|a, b| a.0.cmp(&b.0));
            let all = fixed.iter().map(|(k, v)| (k.clone(), v)).chain(rest);
            for (i, (k, v)) in all.enumerate() {
                if i > 0 {
                    line.push(' ');
                }
                let _ = write!(line, "{k}={}", logfmt_value(&text_value(v)));
            }
        }
        LogFormat::Json => {
            // Go's encoding/json writes map keys sorted.
            let fixed = [
                ("level".to_string(), Value::Str(level.to_string())),
                ("msg".to_string(), Value::Str(msg.to_string())),
                ("time".to_string(), Value::Str(time.to_string())),
            ];
            let mut all: BTreeMap<String, &Value> = fields.collect();
            all.extend(fixed.iter().map(|(k, v)| (k.clone(), v)));
            line.push('{');
            for (i, (k, v)) in all.into_iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                line.push_str(&serde_json::Value::from(k).to_string());
                line.push(':');
                line.push_str(&json_value(v).to_string());
            }
            line.push('}');
        }
    }
    line.push('\n');
    line
}

fn text_value(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        Value::I64(n) => n.to_string(),
        Value::U64(n) => n.to_string(),
        Value::F64(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
    }
}

fn json_value(v: &Value) -> serde_json::Value {
    match v {
        Value::Str(s) => s.as_str().into(),
        Value::I64(n) => (*n).into(),
        Value::U64(n) => (*n).into(),
        Value::F64(n) => (*n).into(),
        Value::Bool(b) => (*b).into(),
    }
}

/// A logrus text value: bare when it only has characters logrus leaves
/// unquoted, otherwise double-quoted with Go-style escapes.
fn logfmt_value(s: &str) -> String {
    let bare = |c: char| c.is_ascii_alphanumeric() || "-._/@^+".contains(c);
    if s.chars().all(bare) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// RFC 3339 in UTC at second precision, as logrus stamps its lines.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// civil_from_days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T: &str = "2024-05-01T10:00:00Z";

    fn no_fields() -> BTreeMap<String, Value> {
        BTreeMap::new()
    }

    #[test]
    fn json_line_is_logrus() {
        assert_eq!(
            render(LogFormat::Json, "error", "container does not exist", &no_fields(), T),
            "{\"level\":\"error\",\"msg\":\"container does not exist\",\"time\":\"2024-05-01T10:00:00Z\"}\n"
        );
    }

    #[test]
    fn json_fields_sorted_and_typed() {
        let mut f = BTreeMap::new();
        f.insert("pid".to_string(), Value::I64(42));
        f.insert("id".to_string(), Value::Str("c\"1".to_string()));
        f.insert("ok".to_string(), Value::Bool(true));
        f.insert("msg".to_string(), Value::Str("clash".to_string()));
        let line = render(LogFormat::Json, "debug", "a\nb", &f, T);
        assert_eq!(
            line,
            "{\"fields.msg\":\"clash\",\"id\":\"c\\\"1\",\"level\":\"debug\",\"msg\":\"a\\nb\",\"ok\":true,\"pid\":42,\"time\":\"2024-05-01T10:00:00Z\"}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["msg"], "a\nb");
    }

    #[test]
    fn text_line_is_logrus() {
        assert_eq!(
            render(
                LogFormat::Text,
                "error",
                "container does not exist",
                &no_fields(),
                T
            ),
            "time=\"2024-05-01T10:00:00Z\" level=error msg=\"container does not exist\"\n"
        );
        let mut f = BTreeMap::new();
        f.insert("pid".to_string(), Value::U64(7));
        f.insert("bundle".to_string(), Value::Str("/run/b-1".to_string()));
        assert_eq!(
            render(LogFormat::Text, "warning", "ok", &f, T),
            "time=\"2024-05-01T10:00:00Z\" level=warning msg=ok bundle=/run/b-1 pid=7\n"
        );
    }

    #[test]
    fn text_quoting() {
        assert_eq!(
            logfmt_value("plain-value_1.2/x@y^z+"),
            "plain-value_1.2/x@y^z+"
        );
        assert_eq!(logfmt_value("a b"), "\"a b\"");
        assert_eq!(logfmt_value("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
        assert_eq!(logfmt_value("l1\nl2\t\u{1}"), "\"l1\\nl2\\t\\x01\"");
        assert_eq!(logfmt_value("é"), "\"é\"");
        assert_eq!(logfmt_value(""), "");
    }

    #[test]
    fn timestamps() {
        let at = |s: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(1_714_557_600), T);
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(at(1_735_689_599), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn level_names() {
        assert_eq!(level_name(Level::WARN), "warning");
        assert_eq!(level_name(Level::ERROR), "error");
        assert_eq!(level_name(Level::DEBUG), "debug");
    }
}
