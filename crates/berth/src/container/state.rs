//! The container's state directory (`<root>/<id>/`): `state.json` written
//! atomically (write + rename), a per-container lock (flock on the
//! directory), and the `start.sock` the init waits on.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroups::Cgroup;
use crate::error::{Error, Result};

/// What Berth keeps about a container between commands.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Saved {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Root file system directory.
    pub rootfs: PathBuf,
    /// Init pid (host namespace).
    pub pid: i32,
    /// The init's start time in clock ticks: with `pid`, names the process.
    pub start_time: u64,
    /// Creation time, RFC 3339.
    pub created: String,
    /// The owner's user name.
    pub owner: String,
    /// config.json annotations.
    pub annotations: BTreeMap<String, String>,
    /// The container's cgroup.
    pub cgroup: Option<Cgroup>,
    /// The config the container was created from (hooks run at start and
    /// delete come from here).
    pub config: serde_json::Value,
    /// Step descriptions, for errors the init reports at `start`.
    pub labels: Vec<String>,
    /// Created with `--no-new-keyring`: exec'd processes keep the
    /// caller's session keyring too.
    #[serde(default)]
    pub no_new_keyring: bool,
}

/// The state file's name.
pub const STATE_FILE: &str = "state.json";
/// The socket `start` connects to.
pub const START_SOCKET: &str = "start.sock";

/// Writes `saved` to `dir/state.json` atomically.
pub fn write(dir: &Path, saved: &Saved) -> Result<()> {
    let tmp = dir.join(".state.json.tmp");
    let data = serde_json::to_vec(saved).map_err(|e| Error::State {
        id: saved.id.clone(),
        msg: e.to_string(),
    })?;
    std::fs::write(&tmp, data).map_err(|e| Error::io("write", &tmp, e))?;
    let dest = dir.join(STATE_FILE);
    std::fs::rename(&tmp, &dest).map_err(|e| Error::io("rename", &dest, e))
}

/// Reads `dir/state.json`.
pub fn read(dir: &Path, id: &str) -> Result<Saved> {
    let path = dir.join(STATE_FILE);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound(id.to_string()))
        }
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    serde_json::from_slice(&data).map_err(|e| Error::State {
        id: id.to_string(),
        msg: format!("{}: {e}", path.display()),
    })
}

/// An exclusive lock on a container's state directory, released on drop.
///
/// flock(2) belongs to the open file: a process forked while it is held
/// keeps it until that process closes its copy ([`Lock::raw_fd`]).
#[derive(Debug)]
pub struct Lock(File);

impl Lock {
    /// The descriptor holding the lock.
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

impl Lock {
    /// Blocks until the lock on `dir` is ours.
    pub fn acquire(dir: &Path, id: &str) -> Result<Lock> {
        let f = match File::open(dir) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            Err(e) => return Err(Error::io("open", dir, e)),
        };
        loop {
            // SAFETY: flock on a descriptor we own.
            let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
            if r == 0 {
                return Ok(Lock(f));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::io("lock", dir, e));
            }
        }
    }
}

/// A `/proc/self/fd/N/name` path for a file in `dir`, so unix socket paths
/// stay under the 108-byte limit whatever the root's length. The returned
/// File must outlive the path's use.
pub fn short_path(dir: &Path, name: &str) -> Result<(File, PathBuf)> {
    let f = File::open(dir).map_err(|e| Error::io("open", dir, e))?;
    let p = PathBuf::from(format!("/proc/self/fd/{}/{name}", f.as_raw_fd()));
    Ok((f, p))
}

/// Formats a time as RFC 3339 with nanoseconds, UTC.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// The user name of `uid` from /etc/passwd, or the number.
pub fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let _ = f.next();
                (f.next()?.parse::<u32>().ok()? == uid).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_rfc3339() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.000000123Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn root_is_root() {
        assert_eq!(user_name(0), "root");
    }
}
