//! What the metadata instructions do to the image config (docker's
//! `config` object: Env, Cmd, Entrypoint, Labels, ExposedPorts, Volumes,
//! User, WorkingDir, StopSignal, Healthcheck, Shell, OnBuild) and the
//! history entries every step adds.

use serde_json::{json, Map, Value};

use crate::dockerfile::{parse_duration, Command, Healthcheck, Kind};
use crate::error::{BuildError, Result};

/// The shell shell-form commands run through unless SHELL says otherwise.
pub(crate) const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// The config of an image built FROM scratch.
pub(crate) fn scratch() -> Value {
    json!({
        "architecture": arch(),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    })
}

/// A base image's config made the start of a new one, as BuildKit makes
/// it: what described the base's own build goes (`container`,
/// `container_config`, `docker_version`, `config.Image`,
/// `config.Hostname`), and `PATH` is set when the base has none.
pub(crate) fn rebase(image: &mut Value) {
    if let Some(o) = image.as_object_mut() {
        for k in ["container", "container_config", "docker_version"] {
            o.remove(k);
        }
    }
    let c = cfg(image);
    c.remove("Image");
    c.remove("Hostname");
    if !env(image).iter().any(|(k, _)| k == "PATH") {
        let (k, v) = berth_image::bundle::DEFAULT_PATH
            .split_once('=')
            .expect("KEY=VALUE");
        set_env(image, k, v);
    }
}

pub(crate) fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn cfg(image: &mut Value) -> &mut Map<String, Value> {
    if !image["config"].is_object() {
        image["config"] = json!({});
    }
    image["config"]
        .as_object_mut()
        .expect("config is an object")
}

/// The image's `Env` as (key, value) pairs.
pub(crate) fn env(image: &Value) -> Vec<(String, String)> {
    image["config"]["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str()?.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn set_env(image: &mut Value, key: &str, value: &str) {
    let entry = Value::from(format!("{key}={value}"));
    let c = cfg(image);
    let list = c.entry("Env").or_insert_with(|| json!([])).as_array_mut();
    let Some(list) = list else {
        c.insert("Env".into(), json!([entry]));
        return;
    };
    let prefix = format!("{key}=");
    match list
        .iter_mut()
        .find(|e| e.as_str().is_some_and(|s| s.starts_with(&prefix)))
    {
        Some(slot) => *slot = entry,
        None => list.push(entry),
    }
}

pub(crate) fn shell(image: &Value) -> Vec<String> {
    match image["config"]["Shell"].as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|s| s.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
    }
}

pub(crate) fn working_dir(image: &Value) -> String {
    match image["config"]["WorkingDir"].as_str() {
        Some(w) if !w.is_empty() => w.to_string(),
        _ => "/".to_string(),
    }
}

/// A shell-form command as the argv it runs: the SHELL words then the
/// command line.
pub(crate) fn argv(image: &Value, c: &Command) -> Vec<String> {
    match c {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => {
            let mut v = shell(image);
            v.push(s.clone());
            v
        }
    }
}

/// `dir` made absolute against the current working directory, cleaned.
pub(crate) fn resolve_dir(current: &str, dir: &str) -> String {
    let joined = if dir.starts_with('/') {
        dir.to_string()
    } else {
        format!("{}/{dir}", current.trim_end_matches('/'))
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Applies a metadata instruction (already substituted) to `image`.
/// `cmd_set` tracks whether this stage set CMD, for ENTRYPOINT's rule
/// that an inherited CMD is dropped.
pub(crate) fn apply(image: &mut Value, kind: &Kind, cmd_set: &mut bool) -> Result<()> {
    match kind {
        Kind::Cmd(c) => {
            let v = argv(image, c);
            cfg(image).insert("Cmd".into(), json!(v));
            *cmd_set = true;
        }
        Kind::Entrypoint(c) => {
            let v = argv(image, c);
            let c = cfg(image);
            c.insert("Entrypoint".into(), json!(v));
            if !*cmd_set {
                c.insert("Cmd".into(), Value::Null);
            }
        }
        Kind::Shell(words) => {
            cfg(image).insert("Shell".into(), json!(words));
        }
        Kind::Env(kv) => {
            for (k, v) in kv {
                set_env(image, k, v);
            }
        }
        Kind::Label(kv) => {
            let c = cfg(image);
            if !c.get("Labels").is_some_and(Value::is_object) {
                c.insert("Labels".into(), json!({}));
            }
            let labels = c["Labels"].as_object_mut().expect("an object");
            for (k, v) in kv {
                labels.insert(k.clone(), json!(v));
            }
        }
        Kind::Maintainer(m) => {
            image["author"] = json!(m);
        }
        Kind::Expose(ports) => {
            let mut parsed = Vec::new();
            for p in ports {
                parsed.push(port(p)?);
            }
            let c = cfg(image);
            if !c.get("ExposedPorts").is_some_and(Value::is_object) {
                c.insert("ExposedPorts".into(), json!({}));
            }
            let set = c["ExposedPorts"].as_object_mut().expect("an object");
            for p in parsed {
                set.insert(p, json!({}));
            }
        }
        Kind::Volume(vols) => {
            let c = cfg(image);
            if !c.get("Volumes").is_some_and(Value::is_object) {
                c.insert("Volumes".into(), json!({}));
            }
            let set = c["Volumes"].as_object_mut().expect("an object");
            for v in vols {
                set.insert(v.clone(), json!({}));
            }
        }
        Kind::User(u) => {
            cfg(image).insert("User".into(), json!(u));
        }
        Kind::Workdir(d) => {
            let w = resolve_dir(&working_dir(image), d);
            cfg(image).insert("WorkingDir".into(), json!(w));
        }
        Kind::StopSignal(s) => {
            cfg(image).insert("StopSignal".into(), json!(s));
        }
        Kind::Healthcheck(h) => {
            let v = healthcheck(h)?;
            cfg(image).insert("Healthcheck".into(), v);
        }
        Kind::OnBuild(inner) => {
            let c = cfg(image);
            if !c.get("OnBuild").is_some_and(Value::is_array) {
                c.insert("OnBuild".into(), json!([]));
            }
            c["OnBuild"]
                .as_array_mut()
                .expect("an array")
                .push(json!(inner.text));
        }
        other => {
            return Err(BuildError::Invalid(format!(
                "{other:?} is not a metadata instruction"
            )))
        }
    }
    Ok(())
}

/// `80`, `80/udp`, `8000-8002/tcp` as `ExposedPorts` keys: the protocol
/// made explicit (tcp by default), a range kept as one key.
fn port(p: &str) -> Result<String> {
    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let proto = proto.to_ascii_lowercase();
    let valid_num = |n: &str| n.parse::<u16>().is_ok_and(|n| n > 0);
    let ok = match num.split_once('-') {
        Some((a, b)) => valid_num(a) && valid_num(b),
        None => valid_num(num),
    };
    if !ok || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(BuildError::Invalid(format!(
            "EXPOSE {p:?}: a port is NUMBER[/tcp|udp|sctp] with NUMBER 1-65535"
        )));
    }
    Ok(format!("{num}/{proto}"))
}

fn healthcheck(h: &Healthcheck) -> Result<Value> {
    let Healthcheck::Check {
        test,
        interval,
        timeout,
        start_period,
        start_interval,
        retries,
    } = h
    else {
        return Ok(json!({"Test": ["NONE"]}));
    };
    let test = match test {
        Command::Shell(s) => json!(["CMD-SHELL", s]),
        Command::Exec(v) => {
            let mut t = vec!["CMD".to_string()];
            t.extend(v.iter().cloned());
            json!(t)
        }
    };
    let mut m = Map::new();
    m.insert("Test".into(), test);
    let ns = |name: &str, v: &Option<String>| -> Result<Option<Value>> {
        v.as_deref()
            .map(|s| {
                parse_duration(s)
                    .map(|d| json!(d.as_nanos() as u64))
                    .map_err(|e| BuildError::Invalid(format!("HEALTHCHECK --{name}={s}: {e}")))
            })
            .transpose()
    };
    for (key, name, v) in [
        ("Interval", "interval", interval),
        ("Timeout", "timeout", timeout),
        ("StartPeriod", "start-period", start_period),
        ("StartInterval", "start-interval", start_interval),
    ] {
        if let Some(n) = ns(name, v)? {
            m.insert(key.into(), n);
        }
    }
    if let Some(r) = retries {
        let n: u64 = r
            .parse()
            .map_err(|_| BuildError::Invalid(format!("HEALTHCHECK --retries={r}: not a number")))?;
        m.insert("Retries".into(), json!(n));
    }
    Ok(Value::Object(m))
}

/// Appends a history entry.
pub(crate) fn history(image: &mut Value, created: &str, created_by: &str, empty: bool) {
    if !image["history"].is_array() {
        image["history"] = json!([]);
    }
    let mut h = json!({
        "created": created,
        "created_by": created_by,
        "comment": "berth build",
    });
    if empty {
        h["empty_layer"] = json!(true);
    }
    image["history"].as_array_mut().expect("an array").push(h);
}

/// Records a new layer's diff-id.
pub(crate) fn push_diff_id(image: &mut Value, diff_id: &str) {
    if !image["rootfs"].is_object() {
        image["rootfs"] = json!({"type": "layers", "diff_ids": []});
    }
    if !image["rootfs"]["diff_ids"].is_array() {
        image["rootfs"]["diff_ids"] = json!([]);
    }
    image["rootfs"]["diff_ids"]
        .as_array_mut()
        .expect("an array")
        .push(json!(diff_id));
}

/// RFC 3339 in UTC for seconds since the epoch.
pub(crate) fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_dirs() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(resolve_dir("/", "app"), "/app");
        assert_eq!(resolve_dir("/app", "sub/../x/"), "/app/x");
        assert_eq!(resolve_dir("/app", "/abs"), "/abs");
    }

    #[test]
    fn entrypoint_drops_an_inherited_cmd_only() {
        let mut img = scratch();
        let mut cmd_set = false;
        cfg(&mut img).insert("Cmd".into(), json!(["sh"]));
        apply(
            &mut img,
            &Kind::Entrypoint(Command::Shell("run".into())),
            &mut cmd_set,
        )
        .unwrap();
        assert_eq!(img["config"]["Cmd"], Value::Null);
        assert_eq!(img["config"]["Entrypoint"], json!(["/bin/sh", "-c", "run"]));
        apply(
            &mut img,
            &Kind::Cmd(Command::Exec(vec!["a".into()])),
            &mut cmd_set,
        )
        .unwrap();
        apply(
            &mut img,
            &Kind::Entrypoint(Command::Exec(vec!["e".into()])),
            &mut cmd_set,
        )
        .unwrap();
        assert_eq!(img["config"]["Cmd"], json!(["a"]));
    }

    #[test]
    fn env_replaces_in_place_and_ports_are_checked() {
        let mut img = scratch();
        let mut c = false;
        apply(
            &mut img,
            &Kind::Env(vec![("A".into(), "1".into()), ("B".into(), "2".into())]),
            &mut c,
        )
        .unwrap();
        apply(&mut img, &Kind::Env(vec![("A".into(), "3".into())]), &mut c).unwrap();
        assert_eq!(img["config"]["Env"], json!(["A=3", "B=2"]));
        apply(
            &mut img,
            &Kind::Expose(vec!["80".into(), "53/UDP".into()]),
            &mut c,
        )
        .unwrap();
        assert_eq!(
            img["config"]["ExposedPorts"],
            json!({"80/tcp": {}, "53/udp": {}})
        );
        let e = apply(&mut img, &Kind::Expose(vec!["http".into()]), &mut c).unwrap_err();
        assert!(e.to_string().contains("\"http\""), "{e}");
    }
}
