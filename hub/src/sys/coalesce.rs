//! Wake-up coalescing for busy readers, as NICs moderate interrupts: one
//! policy for the stream ports (port/stream.rs) and the `--dns-listen` UDP
//! listeners (src/dns_io.rs).
//!
//! When a socket is read again less than [`BUSY_GAP`] after its previous read
//! and that read held few items (frames or queries, under [`FEW_ITEMS`]), the
//! reader waits [`COALESCE`] before reading again, so that the sender's next
//! writes land in one batch instead of waking the reader each time. The bound
//! on items matters: a unix stream sender may only have its send buffer's
//! worth of unread writes in flight (about 270 small frames by default), so
//! the reader must not let that fill and block it. Light traffic (interactive
//! sessions, pings, a few queries) never waits.

use std::time::{Duration, Instant};

/// Reads closer together than this mean the socket is busy.
pub const BUSY_GAP: Duration = Duration::from_micros(200);
/// A read of fewer items than this, on a busy socket, is followed by [`COALESCE`].
pub const FEW_ITEMS: usize = 32;
/// How long a busy reader waits for more data to batch (at most once per read).
pub const COALESCE: Duration = Duration::from_micros(50);

/// The coalescing state of one reader (one socket, one thread).
#[derive(Debug, Default, Clone, Copy)]
pub struct Coalescer {
    last_read: Option<Instant>,
    busy: bool,
}

impl Coalescer {
    /// A reader that has not read yet (its first read is never busy).
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes a read at `now`: busy if the previous one was under [`BUSY_GAP`] ago.
    pub fn read_at(&mut self, now: Instant) {
        self.busy = self
            .last_read
            .is_some_and(|t| now.saturating_duration_since(t) < BUSY_GAP);
        self.last_read = Some(now);
    }

    /// Call after handling the `items` of the read noted last: on a busy
    /// reader with fewer than [`FEW_ITEMS`], sleeps [`COALESCE`] (blocking the
    /// thread) and returns true, so the caller reads again without polling;
    /// otherwise returns false at once.
    pub fn pause(&self, items: usize) -> bool {
        if self.busy && items < FEW_ITEMS {
            std::thread::sleep(COALESCE);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_close_reads_of_few_items_wait() {
        let t = Instant::now();
        let mut c = Coalescer::new();
        c.read_at(t);
        assert!(!c.pause(1), "the first read is not busy");
        c.read_at(t + BUSY_GAP / 2);
        assert!(!c.pause(FEW_ITEMS), "a full enough read does not wait");
        assert!(c.pause(1));
        c.read_at(t + BUSY_GAP * 3);
        assert!(!c.pause(1), "a read after a gap is not busy");
    }
}
