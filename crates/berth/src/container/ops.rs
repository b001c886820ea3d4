//! Operations on a live container that runc has beyond the OCI lifecycle:
//! pause and resume (the cgroup freezer), the processes in the container,
//! resource statistics and OOM events (`events`), and changing
//! `linux.resources` in place (`update`).

use std::thread;
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};
use serde::Serialize;

use super::{state, Container, Status};
use crate::cgroups::{Cgroup, OomWatcher, Stats};
use crate::error::{Error, Result};

/// How often [`Container::events`] checks whether the container is still
/// running while it waits for the next statistics or an OOM event.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// What an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// Resource statistics, in `data`.
    Stats,
    /// The cgroup ran out of memory.
    Oom,
}

/// One event of [`Container::events`]; serialised it is a line of `berth
/// events`: `{"type":"stats","id":"c1","data":{...}}`, `{"type":"oom","id":"c1"}`.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// What the event is about.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The container id.
    pub id: String,
    /// The statistics of a `stats` event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Stats>,
}

impl Event {
    fn new(kind: EventKind, id: &str, data: Option<Stats>) -> Event {
        Event {
            kind,
            id: id.to_string(),
            data,
        }
    }
}

impl Container {
    fn invalid(&self, op: &'static str, status: Status) -> Error {
        Error::InvalidState {
            id: self.id().to_string(),
            op,
            status: status.to_string(),
        }
    }

    fn cgroup(&self) -> Result<&Cgroup> {
        self.saved
            .cgroup
            .as_ref()
            .ok_or_else(|| Error::Unsupported(format!("container {} has no cgroup", self.id())))
    }

    /// Freezes every process of the container. A running container can be
    /// paused, and so can a created one (as in runc); `resume` brings it
    /// back to what it was.
    pub fn pause(&self) -> Result<()> {
        let _lock = self.lock()?;
        let status = self.status();
        if !matches!(status, Status::Running | Status::Created) {
            return Err(self.invalid("pause", status));
        }
        Ok(self.cgroup()?.freeze()?)
    }

    /// Thaws a paused container.
    pub fn resume(&self) -> Result<()> {
        let _lock = self.lock()?;
        let status = self.status();
        if status != Status::Paused {
            return Err(self.invalid("resume", status));
        }
        Ok(self.cgroup()?.thaw()?)
    }

    /// Whether the container's cgroup is frozen by a pause.
    pub(super) fn frozen(&self) -> bool {
        self.saved
            .cgroup
            .as_ref()
            .is_some_and(|cg| cg.is_frozen().unwrap_or(false))
    }

    /// A SIGKILL reaches frozen processes only once they are thawed (on
    /// cgroup v1), so a kill of a paused container thaws it after sending.
    pub(super) fn thaw_after_kill(&self, signal: i32) {
        if signal != libc::SIGKILL || !self.frozen() {
            return;
        }
        if let Some(Err(e)) = self.saved.cgroup.as_ref().map(Cgroup::thaw) {
            tracing::warn!("thaw container {} after SIGKILL: {e}", self.id());
        }
    }

    /// The host pids of every process in the container (its cgroup), sorted.
    pub fn processes(&self) -> Result<Vec<i32>> {
        match &self.saved.cgroup {
            Some(cg) => Ok(cg.pids()?),
            None => Ok(self.pid().into_iter().collect()),
        }
    }

    /// The container's resource statistics.
    pub fn stats(&self) -> Result<Stats> {
        Ok(self.cgroup()?.stats()?)
    }

    /// Starts watching the container's cgroup for OOM events.
    pub fn oom_watcher(&self) -> Result<OomWatcher> {
        Ok(self.cgroup()?.oom_watcher()?)
    }

    /// Reports the container's events to `emit` until the container stops
    /// (or `emit` fails): statistics every `interval` (the first after one
    /// interval) and an OOM event whenever the cgroup ran out of memory
    /// (one per wake-up, however many processes the kernel killed). Without
    /// a memory controller there are no OOM events, only statistics. A
    /// stopped container is an error.
    pub fn events(
        &self,
        interval: Duration,
        mut emit: impl FnMut(Event) -> Result<()>,
    ) -> Result<()> {
        let status = self.status();
        if status == Status::Stopped {
            return Err(self.invalid("watch", status));
        }
        let interval = interval.max(Duration::from_millis(1));
        let mut oom = match self.oom_watcher() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    "{e}; OOM events of container {} are not reported",
                    self.id()
                );
                None
            }
        };
        let wait_oom = |oom: &mut Option<OomWatcher>, timeout: Duration| -> Result<u64> {
            match oom {
                Some(w) if !w.gone() => Ok(w.wait(timeout)?),
                _ => {
                    thread::sleep(timeout);
                    Ok(0)
                }
            }
        };
        let mut next = Instant::now() + interval;
        loop {
            let now = Instant::now();
            if now >= next {
                match self.stats() {
                    Ok(s) => emit(Event::new(EventKind::Stats, self.id(), Some(s)))?,
                    // A file may vanish while the container exits; the
                    // stream goes on, as runc's does.
                    Err(e) => tracing::error!("stats of container {}: {e}", self.id()),
                }
                next += interval;
                if next <= now {
                    next = now + interval;
                }
                continue;
            }
            if wait_oom(&mut oom, (next - now).min(STOP_CHECK))? > 0 {
                emit(Event::new(EventKind::Oom, self.id(), None))?;
            }
            if !self.alive() {
                // An OOM kill of the init is reported before the end.
                if wait_oom(&mut oom, Duration::ZERO)? > 0 {
                    emit(Event::new(EventKind::Oom, self.id(), None))?;
                }
                return Ok(());
            }
        }
    }

    /// Changes the container's resources in place, as `runc update` does:
    /// the fields set in `r` replace the current ones (numbers that are 0
    /// count as unset, `-1` means unlimited), and each resource group `r`
    /// touches is written again as a whole, so that dependent values (memory
    /// plus swap, quota and period) are computed from the current settings.
    /// Device rules are not changed. The new resources are kept in the
    /// container's state for the next update; when the kernel refuses a
    /// value, the previous values are written back and nothing is kept.
    pub fn update(&self, r: &LinuxResources) -> Result<()> {
        let _lock = self.lock()?;
        let status = self.status();
        if status == Status::Stopped {
            return Err(self.invalid("update", status));
        }
        // Fresh from disk: another update may have run since this was loaded.
        let mut saved = state::read(&self.dir, self.id())?;
        let cgroup = saved
            .cgroup
            .clone()
            .ok_or_else(|| Error::Unsupported(format!("container {} has no cgroup", self.id())))?;
        let old = saved_resources(&saved.config, self.id())?;
        let new = merge(&old, r);
        let mut wanted = touched(&new, r);
        if let Some(m) = wanted.memory_mut() {
            m.set_check_before_update(r.memory().as_ref().and_then(|m| m.check_before_update()));
        }
        if let Err(e) = cgroup.apply(&wanted) {
            let mut previous = touched(&old, r);
            if let Some(m) = previous.memory_mut() {
                m.set_check_before_update(None);
            }
            if let Err(undo) = cgroup.apply(&previous) {
                tracing::warn!(
                    "restoring the resources of container {} failed, the cgroup may hold \
                     part of the update: {undo}",
                    self.id()
                );
            }
            return Err(e.into());
        }
        let value = serde_json::to_value(&new).map_err(|e| Error::State {
            id: self.id().to_string(),
            msg: format!("linux.resources: {e}"),
        })?;
        match saved.config.as_object_mut() {
            Some(config) => {
                let linux = config
                    .entry("linux")
                    .or_insert_with(|| serde_json::json!({}));
                if let Some(linux) = linux.as_object_mut() {
                    linux.insert("resources".to_string(), value);
                }
            }
            None => {
                return Err(Error::State {
                    id: self.id().to_string(),
                    msg: "the saved config is not a JSON object".to_string(),
                })
            }
        }
        state::write(&self.dir, &saved)
    }
}

/// `linux.resources` of the saved config (as updated so far).
fn saved_resources(config: &serde_json::Value, id: &str) -> Result<LinuxResources> {
    match config.pointer("/linux/resources") {
        None | Some(serde_json::Value::Null) => Ok(LinuxResources::default()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| Error::State {
            id: id.to_string(),
            msg: format!("saved linux.resources: {e}"),
        }),
    }
}

/// `v` when it is set and not 0 (runc's "unset" for these numbers).
fn given<T: PartialEq + Default + Copy>(v: Option<T>) -> Option<T> {
    v.filter(|v| *v != T::default())
}

#[allow(deprecated)]
fn merge_memory(old: &LinuxMemory, r: &LinuxMemory) -> LinuxMemory {
    let mut m = *old;
    m.set_limit(given(r.limit()).or(old.limit()));
    m.set_reservation(given(r.reservation()).or(old.reservation()));
    m.set_swap(given(r.swap()).or(old.swap()));
    // "Unlimited memory" alone lifts swap too, as in runc; a swap limit
    // left from before would otherwise be below the new memory limit.
    if r.limit() == Some(-1) && given(r.swap()).is_none() {
        m.set_swap(Some(-1));
    }
    m.set_kernel(given(r.kernel()).or(old.kernel()));
    m.set_kernel_tcp(given(r.kernel_tcp()).or(old.kernel_tcp()));
    m.set_swappiness(r.swappiness().or(old.swappiness()));
    m.set_disable_oom_killer(r.disable_oom_killer().or(old.disable_oom_killer()));
    m.set_use_hierarchy(r.use_hierarchy().or(old.use_hierarchy()));
    m.set_check_before_update(r.check_before_update().or(old.check_before_update()));
    m
}

fn merge_cpu(old: &LinuxCpu, r: &LinuxCpu) -> LinuxCpu {
    let mut c = old.clone();
    c.set_shares(given(r.shares()).or(old.shares()));
    c.set_quota(given(r.quota()).or(old.quota()));
    c.set_period(given(r.period()).or(old.period()));
    c.set_burst(r.burst().or(old.burst()));
    c.set_idle(r.idle().or(old.idle()));
    c.set_realtime_runtime(given(r.realtime_runtime()).or(old.realtime_runtime()));
    c.set_realtime_period(given(r.realtime_period()).or(old.realtime_period()));
    let text = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    c.set_cpus(text(r.cpus()).or(old.cpus().clone()));
    c.set_mems(text(r.mems()).or(old.mems().clone()));
    c
}

fn merge_block_io(old: &LinuxBlockIo, r: &LinuxBlockIo) -> LinuxBlockIo {
    let mut b = old.clone();
    b.set_weight(given(r.weight()).or(old.weight()));
    b.set_leaf_weight(given(r.leaf_weight()).or(old.leaf_weight()));
    b.set_weight_device(r.weight_device().clone().or(old.weight_device().clone()));
    b.set_throttle_read_bps_device(
        r.throttle_read_bps_device()
            .clone()
            .or(old.throttle_read_bps_device().clone()),
    );
    b.set_throttle_write_bps_device(
        r.throttle_write_bps_device()
            .clone()
            .or(old.throttle_write_bps_device().clone()),
    );
    b.set_throttle_read_iops_device(
        r.throttle_read_iops_device()
            .clone()
            .or(old.throttle_read_iops_device().clone()),
    );
    b.set_throttle_write_iops_device(
        r.throttle_write_iops_device()
            .clone()
            .or(old.throttle_write_iops_device().clone()),
    );
    b
}

/// `old` with what `r` sets laid over it; the device rules stay `old`'s.
fn merge(old: &LinuxResources, r: &LinuxResources) -> LinuxResources {
    let mut new = old.clone();
    if let Some(m) = r.memory() {
        let base = old.memory().unwrap_or_default();
        new.set_memory(Some(merge_memory(&base, m)));
    }
    if let Some(c) = r.cpu() {
        let base = old.cpu().clone().unwrap_or_default();
        new.set_cpu(Some(merge_cpu(&base, c)));
    }
    if let Some(p) = r.pids().as_ref().filter(|p| p.limit() != 0) {
        new.set_pids(Some(*p));
    }
    if let Some(b) = r.block_io() {
        let base = old.block_io().clone().unwrap_or_default();
        new.set_block_io(Some(merge_block_io(&base, b)));
    }
    if let Some(h) = r.hugepage_limits() {
        new.set_hugepage_limits(Some(h.clone()));
    }
    if let Some(n) = r.network() {
        new.set_network(Some(n.clone()));
    }
    if let Some(rdma) = r.rdma() {
        let mut all = old.rdma().clone().unwrap_or_default();
        all.extend(rdma.clone());
        new.set_rdma(Some(all));
    }
    if let Some(u) = r.unified() {
        let mut all = old.unified().clone().unwrap_or_default();
        all.extend(u.clone());
        new.set_unified(Some(all));
    }
    new
}

/// The groups of `from` that `r` touches, with `from`'s device rules (which
/// every apply writes, and which must stay as they are).
fn touched(from: &LinuxResources, r: &LinuxResources) -> LinuxResources {
    let mut out = LinuxResources::default();
    out.set_devices(from.devices().clone());
    if r.memory().is_some() {
        out.set_memory(*from.memory());
    }
    if r.cpu().is_some() {
        out.set_cpu(from.cpu().clone());
    }
    if r.pids().as_ref().is_some_and(|p| p.limit() != 0) {
        out.set_pids(*from.pids());
    }
    if r.block_io().is_some() {
        out.set_block_io(from.block_io().clone());
    }
    if r.hugepage_limits().is_some() {
        out.set_hugepage_limits(from.hugepage_limits().clone());
    }
    if r.network().is_some() {
        out.set_network(from.network().clone());
    }
    if r.rdma().is_some() {
        out.set_rdma(from.rdma().clone());
    }
    if r.unified().is_some() {
        out.set_unified(from.unified().clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(v: serde_json::Value) -> LinuxResources {
        serde_json::from_value(v).unwrap()
    }

    fn json_of(r: &LinuxResources) -> serde_json::Value {
        serde_json::to_value(r).unwrap()
    }

    #[test]
    fn update_merges_over_the_saved_resources() {
        let old = res(json!({
            "devices": [{"allow": false, "access": "rwm"}],
            "memory": {"limit": 67108864, "swap": 134217728, "swappiness": 10},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1"},
            "pids": {"limit": 50},
        }));
        // Zeros and empty strings are "unset", as in runc.
        let r = res(json!({
            "memory": {"swap": 268435456, "limit": 0},
            "cpu": {"shares": 256, "cpus": "", "quota": 0},
            "pids": {"limit": 0},
        }));
        let new = merge(&old, &r);
        assert_eq!(
            json_of(&new),
            json!({
                "devices": [{"allow": false, "access": "rwm"}],
                "memory": {"limit": 67108864, "swap": 268435456, "swappiness": 10},
                "cpu": {"shares": 256, "quota": 50000, "period": 100000, "cpus": "0-1"},
                "pids": {"limit": 50},
            })
        );
        // Written: the whole memory and cpu groups, the old device rules,
        // not pids (its 0 is unset).
        assert_eq!(
            json_of(&touched(&new, &r)),
            json!({
                "devices": [{"allow": false, "access": "rwm"}],
                "memory": {"limit": 67108864, "swap": 268435456, "swappiness": 10},
                "cpu": {"shares": 256, "quota": 50000, "period": 100000, "cpus": "0-1"},
            })
        );
    }

    #[test]
    fn unlimited_memory_lifts_swap_unless_swap_is_given() {
        let old = res(json!({"memory": {"limit": 67108864, "swap": 134217728}}));
        let new = merge(&old, &res(json!({"memory": {"limit": -1}})));
        assert_eq!(json_of(&new)["memory"], json!({"limit": -1, "swap": -1}));
        let new = merge(
            &old,
            &res(json!({"memory": {"limit": -1, "swap": 268435456}})),
        );
        assert_eq!(
            json_of(&new)["memory"],
            json!({"limit": -1, "swap": 268435456})
        );
    }

    #[test]
    fn update_of_groups_the_config_lacked() {
        let old = res(json!({}));
        let r = res(json!({
            "pids": {"limit": 10},
            "blockIO": {"weight": 300},
            "unified": {"memory.high": "1000000"},
        }));
        let new = merge(&old, &r);
        assert_eq!(
            json_of(&new),
            json!({
                "pids": {"limit": 10},
                "blockIO": {"weight": 300},
                "unified": {"memory.high": "1000000"},
            })
        );
        let old_unified = res(json!({"unified": {"memory.low": "5", "memory.high": "9"}}));
        let new = merge(&old_unified, &res(json!({"unified": {"memory.high": "7"}})));
        assert_eq!(
            json_of(&new)["unified"],
            json!({"memory.low": "5", "memory.high": "7"})
        );
    }

    #[test]
    fn saved_resources_default_when_absent() {
        let r = saved_resources(&json!({"linux": {}}), "c").unwrap();
        assert_eq!(json_of(&r), json!({}));
        let e = saved_resources(&json!({"linux": {"resources": {"pids": 3}}}), "c").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("state of container c: saved linux.resources: "),
            "{e}"
        );
    }

    #[test]
    fn events_serialise_as_runc_prints_them() {
        let oom = Event::new(EventKind::Oom, "c1", None);
        assert_eq!(
            serde_json::to_string(&oom).unwrap(),
            r#"{"type":"oom","id":"c1"}"#
        );
        let stats = Event::new(EventKind::Stats, "c1", Some(Stats::default()));
        let v = serde_json::to_value(&stats).unwrap();
        assert_eq!(v["type"], "stats");
        assert_eq!(v["data"]["pids"], json!({}));
    }
}
