//! Signal names and numbers as `kill` accepts them (runc's syntax).

use crate::error::{Error, Result};

/// Parses `KILL`, `SIGKILL`, `kill`, `9`, and `RTMIN+3`-style names.
pub fn parse_signal(s: &str) -> Result<i32> {
    let bad = || Error::spec("signal", format!("unknown signal {s:?}"));
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=libc::SIGRTMAX()).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    for (prefix, base) in [("RTMIN", libc::SIGRTMIN()), ("RTMAX", libc::SIGRTMAX())] {
        if let Some(rest) = name.strip_prefix(prefix) {
            let off: i32 = if rest.is_empty() {
                0
            } else {
                rest.parse().map_err(|_| bad())?
            };
            let n = base + off;
            return if (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&n) {
                Ok(n)
            } else {
                Err(bad())
            };
        }
    }
    format!("SIG{name}")
        .parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("hup").unwrap(), 1);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("RTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert_eq!(parse_signal("SIGRTMAX-2").unwrap(), libc::SIGRTMAX() - 2);
        assert!(parse_signal("RTMAX+1").is_err());
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("99").is_err());
    }
}
