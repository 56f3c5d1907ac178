//! Error pacing for the hub's accept and receive loops, after tokio's
//! mini-redis (`src/server.rs`, `Listener::accept`): a loop that meets an error
//! logs it (at most once per [`LOG_EVERY`], with a count of the ones not
//! logged), waits a backoff that starts at [`BACKOFF_MIN`] and doubles up to
//! [`BACKOFF_MAX`], and tries again; a success resets the backoff. Nothing here
//! ends a loop: running out of descriptors (`EMFILE`, `ENFILE`), buffers
//! (`ENOBUFS`) or memory (`ENOMEM`) passes once other connections close, so the
//! loop keeps going after the wait. Transient errors ([`is_transient`]) are
//! skipped at once, without a wait or a log line. [`Pacer::settle`] does all
//! of that for one attempt of an async loop.

use std::io;
use std::time::{Duration, Instant};

/// The first wait after an error.
pub const BACKOFF_MIN: Duration = Duration::from_millis(1);
/// The longest wait between two attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one log line per loop in this period.
pub const LOG_EVERY: Duration = Duration::from_secs(1);

/// Whether a receive error is transient, to be skipped at once: `EINTR`,
/// `EAGAIN`/`EWOULDBLOCK`, and `ECONNREFUSED` (on UDP: an ICMP port
/// unreachable for an earlier datagram, `udp(7)`).
pub fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused
    )
}

/// The backoff and log limit of one loop.
#[derive(Debug)]
pub struct Pacer {
    what: &'static str,
    next: Duration,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl Pacer {
    /// A pacer for the loop named `what` (used in its log lines, e.g. "accept").
    pub fn new(what: &'static str) -> Self {
        Pacer {
            what,
            next: BACKOFF_MIN,
            last_log: None,
            suppressed: 0,
        }
    }

    /// The loop succeeded: the next error waits [`BACKOFF_MIN`] again.
    pub fn ok(&mut self) {
        self.next = BACKOFF_MIN;
    }

    /// The loop failed with `e` on `at` (a listener or socket, for the log):
    /// logs it unless a line was logged less than [`LOG_EVERY`] ago, and
    /// returns how long to wait before trying again (doubling from
    /// [`BACKOFF_MIN`] to [`BACKOFF_MAX`]).
    pub fn failed(&mut self, at: &dyn std::fmt::Display, e: &io::Error) -> Duration {
        let now = Instant::now();
        let wait = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        if self.last_log.is_none_or(|t| now.duration_since(t) >= LOG_EVERY) {
            tracing::warn!(
                %at, error = %e, wait_ms = wait.as_millis() as u64, suppressed = self.suppressed,
                "{} failed; retrying after a backoff", self.what
            );
            self.last_log = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        wait
    }

    /// One attempt of an async loop on `at`: `Some(value)` on success (the
    /// backoff resets, [`Pacer::ok`]); `None` at once after a transient error
    /// ([`is_transient`]); `None` after logging any other error and sleeping
    /// its backoff ([`Pacer::failed`]). The caller tries again on `None`.
    pub async fn settle<T>(&mut self, at: &(dyn std::fmt::Display + Sync), attempt: io::Result<T>) -> Option<T> {
        match attempt {
            Ok(v) => {
                self.ok();
                Some(v)
            }
            Err(e) if is_transient(&e) => None,
            Err(e) => {
                tokio::time::sleep(self.failed(at, &e)).await;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut p = Pacer::new("test");
        let e = io::Error::from_raw_os_error(libc::EMFILE);
        let waits: Vec<Duration> = (0..12).map(|_| p.failed(&"x", &e)).collect();
        assert_eq!(waits[0], BACKOFF_MIN);
        assert_eq!(waits[1], BACKOFF_MIN * 2);
        assert_eq!(*waits.last().unwrap(), BACKOFF_MAX);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(p.suppressed, 11, "one line logged, the rest within LOG_EVERY");
        p.ok();
        assert_eq!(p.failed(&"x", &e), BACKOFF_MIN);
    }

    #[test]
    fn transient_errors() {
        for errno in [libc::EINTR, libc::EAGAIN, libc::ECONNREFUSED] {
            assert!(is_transient(&io::Error::from_raw_os_error(errno)), "{errno}");
        }
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM, libc::EBADF] {
            assert!(!is_transient(&io::Error::from_raw_os_error(errno)), "{errno}");
        }
    }
}
