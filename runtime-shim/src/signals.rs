//! Signal relaying for a foreground `run` (signal(7)): every catchable
//! signal sent to berth is taken synchronously with sigwait(3) on one
//! thread and handed on to the container, as runc does.

use std::thread::JoinHandle;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};

/// Signals that stay with berth: the ones the kernel raises for berth's own
/// faults, SIGCHLD (reaping is the library's `wait`) and the two that
/// cannot be caught.
const KEPT: [Signal; 9] = [
    Signal::SIGCHLD,
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGFPE,
    Signal::SIGILL,
    Signal::SIGTRAP,
    Signal::SIGSYS,
    Signal::SIGKILL,
    Signal::SIGSTOP,
];

/// The set of relayed signals, real-time ones included.
pub fn relayed() -> SigSet {
    let mut set = SigSet::all();
    for sig in KEPT {
        set.remove(sig);
    }
    set
}

/// The relayed signals, blocked in the thread that made this value.
pub struct Blocked(SigSet);

/// Blocks the relayed signals in the calling thread, and so in every thread
/// it spawns afterwards: they stay pending until the relay takes them.
///
/// Call it before spawning any other thread (a thread without the mask
/// would take the signal itself). The library's setup processes reset
/// their mask, so the container never inherits it.
pub fn block() -> nix::Result<Blocked> {
    let set = relayed();
    set.thread_block()?;
    Ok(Blocked(set))
}

/// Starts the thread that takes the blocked signals, calling `handle` with
/// each signal number.
pub fn relay(
    blocked: Blocked,
    mut handle: impl FnMut(i32) + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    let set = blocked.0;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            match sigwait(&set) {
                Ok(sig) => handle(sig),
                Err(Errno::EINTR) => continue,
                Err(_) => return,
            }
        })
}

/// sigwait(3) returning the raw number: nix's wrapper only knows the
/// standard signals and the relay must pass real-time ones too.
fn sigwait(set: &SigSet) -> nix::Result<i32> {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is a valid, initialized sigset_t and `sig` a valid
    // out-pointer for the duration of the call.
    let rc = unsafe { libc::sigwait(set.as_ref(), &mut sig) };
    if rc == 0 {
        Ok(sig)
    } else {
        Err(Errno::from_raw(rc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_set() {
        let set = relayed();
        for sig in [
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
            Signal::SIGQUIT,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
            Signal::SIGWINCH,
            Signal::SIGTSTP,
            Signal::SIGCONT,
        ] {
            assert!(set.contains(sig), "{sig} must be relayed");
        }
        for sig in KEPT {
            assert!(!set.contains(sig), "{sig} must stay with berth");
        }
        // SAFETY: `set` is a valid sigset_t; sigismember only reads it.
        let rt = unsafe { libc::sigismember(set.as_ref(), libc::SIGRTMIN() + 1) };
        assert_eq!(rt, 1, "real-time signals are relayed");
    }

    #[test]
    fn relays_a_blocked_signal() {
        // Runs on its own thread so the mask change stays off the test
        // harness's threads.
        std::thread::spawn(|| {
            use std::os::unix::thread::JoinHandleExt;
            let (tx, rx) = std::sync::mpsc::channel();
            let relay = relay(block().unwrap(), move |sig| {
                let _ = tx.send(sig);
            })
            .unwrap();
            // Directed at the relay thread: a process-wide kill could land
            // on a test harness thread that does not block the signal.
            // SAFETY: the relay thread loops forever, so its pthread_t stays
            // valid; SIGUSR2 is blocked there and taken by its sigwait.
            let rc = unsafe { libc::pthread_kill(relay.as_pthread_t(), libc::SIGUSR2) };
            assert_eq!(rc, 0);
            let got = rx.recv_timeout(std::time::Duration::from_secs(5));
            assert_eq!(got, Ok(libc::SIGUSR2));
        })
        .join()
        .unwrap();
    }
}
