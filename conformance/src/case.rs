//! What a case is: a config variation checked from inside the container
//! (probes the checker answers, compared with expectations), or a sequence
//! of runtime commands checked from outside.
//!
//! ```
//! use berth_conformance::case::{inside, Expect};
//! use serde_json::json;
//! let c = inside("process.user.uid", "config.md#user")
//!     .set("/process/user/uid", json!(1000))
//!     .expect("uid", Expect::Eq("1000".into()));
//! assert_eq!(c.probes(), ["uid"]);
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::host::Host;
use crate::runtime::{Output, Runtime};

/// Where a case runs: paths and names the driver made for it.
pub struct Env<'a> {
    /// A host directory for this case and runtime (bind sources, hook
    /// output), removed afterwards.
    pub scratch: PathBuf,
    /// The bundle directory (config.json and rootfs/).
    pub bundle: PathBuf,
    /// The container id.
    pub id: String,
    /// The container's `linux.cgroupsPath`.
    pub cgroups_path: String,
    /// What the driver knows of the host.
    pub host: &'a Host,
    /// The runtime's column name (`berth`, `runc`, `crun`).
    pub runtime: &'a str,
}

/// What the checker printed, and how the container ended.
#[derive(Debug, Default)]
pub struct Report {
    /// The run's exit status (the container process's, for `run`).
    pub code: i32,
    /// Each probe's answer.
    pub probes: BTreeMap<String, String>,
    /// The runtime's stdout (the checker's lines included).
    pub stdout: String,
    /// The runtime's stderr.
    pub stderr: String,
}

impl Report {
    /// Parses the checker's `probe<TAB>value` lines out of `out`.
    pub fn from_output(out: &Output) -> Report {
        let probes = out
            .stdout
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Report {
            code: out.code,
            probes,
            stdout: out.stdout.clone(),
            stderr: out.stderr.clone(),
        }
    }
}

/// A check on one probe's answer.
pub enum Expect {
    /// Exactly this.
    Eq(String),
    /// Anything but this.
    Ne(String),
    /// Contains this.
    Contains(String),
    /// Does not contain this.
    Lacks(String),
    /// The call failed with this errno name (`EROFS`).
    Errno(&'static str),
    /// The call succeeded (`ok`, or any answer that is not an error).
    Succeeds,
    /// Anything else, given the answer and the environment.
    Custom(CheckFn),
}

/// A custom check on a probe's answer.
pub type CheckFn = Box<dyn Fn(&str, &Env) -> Result<(), String> + Send + Sync>;
/// A change to config.json.
pub type EditFn = Box<dyn Fn(&mut Value, &Env) + Send + Sync>;
/// A check after the container ran (hook output, files).
pub type AfterFn = Box<dyn Fn(&Report, &Env) -> Result<(), String> + Send + Sync>;
/// An outside case: drives the runtime itself.
pub type StepsFn = Box<dyn Fn(&mut Ctx) -> Result<(), String> + Send + Sync>;
/// Writes a bundle: directory, process args, environment, config edit.
pub type MakeBundleFn = dyn Fn(&Path, &[&str], &Env, &dyn Fn(&mut Value)) -> Result<(), String>;
/// Says why a case cannot run on this host, if it cannot.
pub type SkipFn = Box<dyn Fn(&Env) -> Option<String> + Send + Sync>;

impl Expect {
    /// Checks `got` (None: the probe printed nothing).
    pub fn check(&self, got: Option<&str>, env: &Env) -> Result<(), String> {
        let Some(got) = got else {
            return Err("no answer".into());
        };
        let ok = match self {
            Expect::Eq(v) => got == v,
            Expect::Ne(v) => got != v,
            Expect::Contains(v) => got.contains(v.as_str()),
            Expect::Lacks(v) => !got.contains(v.as_str()),
            Expect::Errno(e) => got == format!("!{e}"),
            Expect::Succeeds => !got.starts_with('!'),
            Expect::Custom(f) => return f(got, env),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("got {got:?}, want {}", self.describe()))
        }
    }

    fn describe(&self) -> String {
        match self {
            Expect::Eq(v) => format!("{v:?}"),
            Expect::Ne(v) => format!("anything but {v:?}"),
            Expect::Contains(v) => format!("something containing {v:?}"),
            Expect::Lacks(v) => format!("nothing containing {v:?}"),
            Expect::Errno(e) => format!("the error {e}"),
            Expect::Succeeds => "success".into(),
            Expect::Custom(_) => "(custom)".into(),
        }
    }
}

/// `Expect::Eq`.
pub fn eq(v: impl Into<String>) -> Expect {
    Expect::Eq(v.into())
}

/// A case.
pub struct Case {
    /// Its name, e.g. `process.user.uid`.
    pub name: String,
    /// The runtime-spec section it checks, e.g. `config.md#user`.
    pub section: &'static str,
    /// How it runs.
    pub kind: Kind,
    /// When it cannot run on this host.
    pub skip: Option<SkipFn>,
}

/// How a case runs.
pub enum Kind {
    /// `run` a container whose process is the checker.
    Inside(Inside),
    /// A sequence of commands.
    Outside(StepsFn),
}

/// An inside case's parts.
#[derive(Default)]
pub struct Inside {
    /// Config changes, in order.
    pub edits: Vec<EditFn>,
    /// (probe, expectation).
    pub expects: Vec<(String, Expect)>,
    /// Probes run for their effect (or whose answer `after` reads).
    pub extra_probes: Vec<String>,
    /// Checks after the run.
    pub after: Vec<AfterFn>,
    /// The exit status `run` must return (0 unless set).
    pub exit: Option<i32>,
}

/// A case run inside a container.
pub fn inside(name: impl Into<String>, section: &'static str) -> Case {
    Case {
        name: name.into(),
        section,
        kind: Kind::Inside(Inside::default()),
        skip: None,
    }
}

/// A case driven from outside.
pub fn outside(
    name: impl Into<String>,
    section: &'static str,
    steps: impl Fn(&mut Ctx) -> Result<(), String> + Send + Sync + 'static,
) -> Case {
    Case {
        name: name.into(),
        section,
        kind: Kind::Outside(Box::new(steps)),
        skip: None,
    }
}

impl Case {
    fn inner(&mut self) -> &mut Inside {
        match &mut self.kind {
            Kind::Inside(i) => i,
            Kind::Outside(_) => panic!("{}: not an inside case", self.name),
        }
    }

    /// Changes config.json.
    pub fn edit(mut self, f: impl Fn(&mut Value, &Env) + Send + Sync + 'static) -> Self {
        self.inner().edits.push(Box::new(f));
        self
    }

    /// Sets the value at a JSON pointer, making missing objects.
    pub fn set(self, pointer: &'static str, v: Value) -> Self {
        self.edit(move |c, _| set(c, pointer, v.clone()))
    }

    /// Appends to the array at a JSON pointer, making it if missing.
    pub fn push(self, pointer: &'static str, v: Value) -> Self {
        self.edit(move |c, _| push(c, pointer, v.clone()))
    }

    /// Expects the probe's answer.
    pub fn expect(mut self, probe: impl Into<String>, e: Expect) -> Self {
        self.inner().expects.push((probe.into(), e));
        self
    }

    /// Runs a probe without checking its answer.
    pub fn probe(mut self, probe: impl Into<String>) -> Self {
        self.inner().extra_probes.push(probe.into());
        self
    }

    /// Checks something after the run.
    pub fn after(
        mut self,
        f: impl Fn(&Report, &Env) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.inner().after.push(Box::new(f));
        self
    }

    /// The exit status `run` must return.
    pub fn exit(mut self, code: i32) -> Self {
        self.inner().exit = Some(code);
        self
    }

    /// Skips the case when `f` gives a reason.
    pub fn skip_if(mut self, f: impl Fn(&Env) -> Option<String> + Send + Sync + 'static) -> Self {
        self.skip = Some(Box::new(f));
        self
    }

    /// The checker's arguments, in order.
    pub fn probes(&self) -> Vec<String> {
        match &self.kind {
            Kind::Inside(i) => i
                .extra_probes
                .iter()
                .cloned()
                .chain(i.expects.iter().map(|(p, _)| p.clone()))
                .collect(),
            Kind::Outside(_) => Vec::new(),
        }
    }
}

/// Sets `pointer` in `v`, making objects on the way (array indexes must
/// exist or be the next one).
pub fn set(v: &mut Value, pointer: &str, new: Value) {
    let mut cur = v;
    let parts: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    for (i, p) in parts.iter().enumerate() {
        let last = i == parts.len() - 1;
        if cur.is_null() {
            *cur = Value::Object(Default::default());
        }
        let next = match cur {
            Value::Array(a) => {
                let idx: usize = p.parse().unwrap_or(a.len());
                if idx >= a.len() {
                    a.push(Value::Null);
                }
                let n = idx.min(a.len() - 1);
                &mut a[n]
            }
            Value::Object(o) => o.entry(p.clone()).or_insert(Value::Null),
            _ => return,
        };
        if last {
            *next = new;
            return;
        }
        cur = next;
    }
}

/// Appends `item` to the array at `pointer`, making it when missing.
pub fn push(v: &mut Value, pointer: &str, item: Value) {
    if v.pointer(pointer).is_none_or(|a| !a.is_array()) {
        set(v, pointer, Value::Array(Vec::new()));
    }
    if let Some(Value::Array(a)) = v.pointer_mut(pointer) {
        a.push(item);
    }
}

/// Removes the value at `pointer` (object key or array index).
pub fn remove(v: &mut Value, pointer: &str) {
    let Some((parent, key)) = pointer.rsplit_once('/') else {
        return;
    };
    match v.pointer_mut(parent) {
        Some(Value::Object(o)) => {
            o.remove(key);
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = key.parse::<usize>() {
                if i < a.len() {
                    a.remove(i);
                }
            }
        }
        _ => {}
    }
}

/// The context of an outside case: the runtime and fresh bundles and ids.
pub struct Ctx<'a> {
    /// The runtime under test.
    pub rt: &'a Runtime,
    /// The case's environment (its first bundle and id).
    pub env: Env<'a>,
    /// Ids handed out, force-deleted afterwards.
    pub ids: Vec<String>,
    /// Makes a bundle at a path with the base config changed by an edit.
    pub(crate) make_bundle: &'a MakeBundleFn,
    pub(crate) counter: usize,
}

impl Ctx<'_> {
    /// Runs `<runtime> --root R args...`.
    pub fn cmd(&self, args: &[&str]) -> Output {
        self.rt.cmd(args)
    }

    /// The case's main id (force-deleted afterwards).
    pub fn id(&mut self) -> String {
        let id = self.env.id.clone();
        if !self.ids.contains(&id) {
            self.ids.push(id.clone());
        }
        id
    }

    /// Another id for a second container.
    pub fn another_id(&mut self) -> String {
        self.counter += 1;
        let id = format!("{}-{}", self.env.id, self.counter);
        self.ids.push(id.clone());
        id
    }

    /// Writes the case's bundle: the base config running `args` (a shell
    /// command line from busybox, e.g. `["sleep", "100"]`), changed by
    /// `edit`. Returns the bundle path.
    pub fn bundle(&self, args: &[&str], edit: impl Fn(&mut Value)) -> Result<PathBuf, String> {
        (self.make_bundle)(&self.env.bundle, args, &self.env, &edit)?;
        Ok(self.env.bundle.clone())
    }

    /// A second bundle next to the first.
    pub fn bundle_at(
        &self,
        name: &str,
        args: &[&str],
        edit: impl Fn(&mut Value),
    ) -> Result<PathBuf, String> {
        let p = self.env.scratch.join(name);
        (self.make_bundle)(&p, args, &self.env, &edit)?;
        Ok(p)
    }

    /// `state <id>` parsed.
    pub fn state(&self, id: &str) -> Result<Value, String> {
        let o = self.cmd(&["state", id]);
        o.ok()?;
        serde_json::from_str(&o.stdout).map_err(|e| format!("state {id}: {e}: {}", o.stdout))
    }

    /// The status field of `state <id>`.
    pub fn status(&self, id: &str) -> Result<String, String> {
        Ok(self.state(id)?["status"].as_str().unwrap_or("").to_string())
    }

    /// Polls the status until it is `want` (10 s at most).
    pub fn wait_status(&self, id: &str, want: &str) -> Result<(), String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let s = self.status(id)?;
            if s == want {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("{id} stayed {s}, never {want}"));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Waits up to 10 s for a file to exist.
    pub fn wait_file(&self, p: &Path) -> Result<(), String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !p.exists() {
            if std::time::Instant::now() > deadline {
                return Err(format!("{} never appeared", p.display()));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(())
    }
}

/// `Err(msg)` unless `cond`.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(host: &Host) -> Env<'_> {
        Env {
            scratch: "/s".into(),
            bundle: "/b".into(),
            id: "i".into(),
            cgroups_path: "/c".into(),
            host,
            runtime: "x",
        }
    }

    #[test]
    fn every_expectation_can_fail() {
        let host = Host::default();
        let e = env(&host);
        let cases: Vec<(Expect, &str, &str)> = vec![
            (eq("a"), "a", "b"),
            (Expect::Ne("a".into()), "b", "a"),
            (Expect::Contains("x".into()), "axb", "ab"),
            (Expect::Lacks("x".into()), "ab", "axb"),
            (Expect::Errno("EROFS"), "!EROFS", "ok"),
            (Expect::Succeeds, "ok", "!EPERM"),
            (
                Expect::Custom(Box::new(|g, _| ensure(g == "1", || "no".into()))),
                "1",
                "2",
            ),
        ];
        for (x, good, bad) in cases {
            assert!(x.check(Some(good), &e).is_ok(), "{good}");
            assert!(x.check(Some(bad), &e).is_err(), "{bad}");
            assert!(x.check(None, &e).is_err());
        }
    }

    #[test]
    fn pointer_edits() {
        let mut v = serde_json::json!({"a": {"b": [1]}});
        set(&mut v, "/a/c/d", serde_json::json!(2));
        push(&mut v, "/a/b", serde_json::json!(3));
        push(&mut v, "/x", serde_json::json!("y"));
        set(
            &mut v,
            "/linux/sysctl/net.ipv4.ip_forward",
            serde_json::json!("1"),
        );
        remove(&mut v, "/a/b/0");
        assert_eq!(
            v,
            serde_json::json!({"a": {"b": [3], "c": {"d": 2}}, "x": ["y"],
                               "linux": {"sysctl": {"net.ipv4.ip_forward": "1"}}})
        );
    }

    #[test]
    fn report_parses_probe_lines() {
        let out = Output {
            command: "run".into(),
            code: 0,
            stdout: "uid\t0\nnoise\nread:/x\t!ENOENT\n".into(),
            stderr: String::new(),
        };
        let r = Report::from_output(&out);
        assert_eq!(r.probes["uid"], "0");
        assert_eq!(r.probes["read:/x"], "!ENOENT");
        assert_eq!(r.probes.len(), 2);
    }
}
