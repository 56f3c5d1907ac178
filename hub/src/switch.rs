//! The learning switch, sans-IO: given the port a frame came in on and the
//! frame, decide where it goes (IEEE 802.1D section 7.7-7.9: learning, filtering,
//! flooding, aging). It never touches a socket; ports call it and carry out
//! the [`Decision`].
//!
//! Rules: the source MAC is learned on the ingress port (group source MACs are
//! invalid and dropped); group destinations (broadcast, `01:00:5e:*`,
//! `33:33:*`) and unknown unicast are flooded to every port but the ingress
//! one; a known unicast destination goes to its port, or is filtered when that
//! is the ingress port (a segment such as QEMU's multicast group already
//! delivered it). Entries age out after [`Switch::aging`] without traffic.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use crate::frame::{Frame, MacAddr};

/// Index of a port in the hub, assigned by the hub at start (0 is the hub's own host).
pub type PortId = usize;

/// Default MAC table aging time: 300 seconds, as IEEE 802.1D recommends.
pub const DEFAULT_AGING: Duration = Duration::from_secs(300);

/// Default bound on MAC table entries; past it new source MACs are not learned
/// (their frames are still forwarded, by flooding), so a MAC flood cannot grow memory.
pub const DEFAULT_MAX_ENTRIES: usize = 65536;

/// Where one frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// To this one port.
    Unicast(PortId),
    /// To every port except the ingress port.
    Flood,
    /// Nowhere: the destination sits behind the ingress port.
    Filter,
    /// Nowhere, not even the hub's own host: the source MAC is a group address or
    /// all zeros, which no station may send from (IEEE 802.1Q 8.7: not learned).
    DropInvalidSource,
}

/// The MAC table's hasher: one multiply-rotate step over the address as a
/// `u64` (FxHash's constant). The table is bounded, so a hostile sender can at
/// worst slow its own lookups.
#[derive(Default)]
pub struct MacHasher(u64);

impl Hasher for MacHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// How one frame's source changed the MAC table ([`Switch::take_learned`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// A MAC not in the table was learned on this port.
    New(MacAddr, PortId),
    /// A MAC known on port `from` was seen on port `to`.
    Moved {
        /// The station's MAC.
        mac: MacAddr,
        /// The port it is on now.
        to: PortId,
        /// The port it was on.
        from: PortId,
    },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    port: PortId,
    seen: Instant,
}

/// The MAC table and forwarding decision of one switched segment.
#[derive(Debug)]
pub struct Switch {
    table: HashMap<MacAddr, Entry, BuildHasherDefault<MacHasher>>,
    aging: Duration,
    max_entries: usize,
    /// The table change of the last [`Switch::learn`], until taken.
    learned: Option<Learned>,
}

impl Default for Switch {
    fn default() -> Self {
        Self::new(DEFAULT_AGING, DEFAULT_MAX_ENTRIES)
    }
}

impl Switch {
    /// A switch with an empty MAC table, entries aging out after `aging`, at most
    /// `max_entries` entries.
    pub fn new(aging: Duration, max_entries: usize) -> Self {
        Switch {
            table: HashMap::default(),
            aging,
            max_entries,
            learned: None,
        }
    }

    /// The aging time of MAC table entries.
    pub fn aging(&self) -> Duration {
        self.aging
    }

    /// Learns `frame`'s source on `in_port` and decides where the frame goes.
    /// `now` is the receive time (monotonic), used for learning and aging.
    pub fn decide(&mut self, in_port: PortId, frame: &Frame<'_>, now: Instant) -> Decision {
        let src = frame.src();
        if src.is_group() || src.0 == [0; 6] {
            return Decision::DropInvalidSource;
        }
        self.learn(src, in_port, now);
        let dst = frame.dst();
        if dst.is_group() {
            return Decision::Flood;
        }
        match self.table.get(&dst) {
            Some(e) if now.saturating_duration_since(e.seen) < self.aging => {
                if e.port == in_port {
                    Decision::Filter
                } else {
                    Decision::Unicast(e.port)
                }
            }
            _ => Decision::Flood,
        }
    }

    /// Records that `mac` was seen on `port` at `now` (a station that moved is
    /// re-learned). A new entry or a move is kept for [`Switch::take_learned`].
    pub fn learn(&mut self, mac: MacAddr, port: PortId, now: Instant) {
        if let Some(e) = self.table.get_mut(&mac) {
            if e.port != port {
                self.learned = Some(Learned::Moved {
                    mac,
                    to: port,
                    from: e.port,
                });
            }
            e.port = port;
            e.seen = now;
        } else if self.table.len() < self.max_entries {
            self.table.insert(mac, Entry { port, seen: now });
            self.learned = Some(Learned::New(mac, port));
        }
    }

    /// The table change the last learned source made (a new MAC or a move),
    /// once; `None` when it only refreshed an entry. Checked after each
    /// [`Switch::decide`]; allocates nothing.
    pub fn take_learned(&mut self) -> Option<Learned> {
        self.learned.take()
    }

    /// Removes entries idle for the aging time or longer; returns how many.
    pub fn age(&mut self, now: Instant) -> usize {
        self.age_each(now, |_, _| {})
    }

    /// [`Switch::age`], calling `gone(mac, port)` for each entry removed.
    pub fn age_each(&mut self, now: Instant, mut gone: impl FnMut(MacAddr, PortId)) -> usize {
        let before = self.table.len();
        let aging = self.aging;
        self.table.retain(|m, e| {
            let keep = now.saturating_duration_since(e.seen) < aging;
            if !keep {
                gone(*m, e.port);
            }
            keep
        });
        before - self.table.len()
    }

    /// Removes every entry on `port` (the port went away); returns how many.
    pub fn forget_port(&mut self, port: PortId) -> usize {
        self.forget_port_each(port, |_| {})
    }

    /// [`Switch::forget_port`], calling `gone(mac)` for each entry removed.
    pub fn forget_port_each(&mut self, port: PortId, mut gone: impl FnMut(MacAddr)) -> usize {
        let before = self.table.len();
        self.table.retain(|m, e| {
            let keep = e.port != port;
            if !keep {
                gone(*m);
            }
            keep
        });
        before - self.table.len()
    }

    /// The port `mac` was last seen on, if it is in the table.
    pub fn lookup(&self, mac: &MacAddr) -> Option<PortId> {
        self.table.get(mac).map(|e| e.port)
    }

    /// The MAC table, sorted by MAC: (MAC, port, time since last seen at `now`).
    pub fn entries(&self, now: Instant) -> Vec<(MacAddr, PortId, Duration)> {
        let mut v: Vec<_> = self
            .table
            .iter()
            .map(|(m, e)| (*m, e.port, now.saturating_duration_since(e.seen)))
            .collect();
        v.sort_by_key(|e| e.0);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: &str, src: &str) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&dst.parse::<MacAddr>().unwrap().0);
        f[6..12].copy_from_slice(&src.parse::<MacAddr>().unwrap().0);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f
    }
    const A: &str = "00:00:00:11:11:11";
    const B: &str = "00:00:00:22:22:22";
    const C: &str = "00:00:00:33:33:33";

    fn decide(sw: &mut Switch, port: PortId, f: &[u8], now: Instant) -> Decision {
        sw.decide(port, &Frame::new(f).unwrap(), now)
    }

    #[test]
    fn learns_and_forwards_unicast() {
        let mut sw = Switch::default();
        let t = Instant::now();
        // B unknown: flood; A learned on 1.
        assert_eq!(decide(&mut sw, 1, &frame(B, A), t), Decision::Flood);
        assert_eq!(decide(&mut sw, 2, &frame(A, B), t), Decision::Unicast(1));
        assert_eq!(decide(&mut sw, 1, &frame(B, A), t), Decision::Unicast(2));
        assert_eq!(sw.lookup(&A.parse().unwrap()), Some(1));
    }

    #[test]
    fn floods_group_destinations() {
        let mut sw = Switch::default();
        let t = Instant::now();
        decide(&mut sw, 2, &frame(A, B), t);
        // IPv6: all-nodes, all-routers, a solicited-node group (RFC 4291 2.7.1, RFC 2464 7).
        for dst in [
            "ff:ff:ff:ff:ff:ff",
            "33:33:00:00:00:01",
            "33:33:00:00:00:02",
            "33:33:ff:00:03:01",
            "01:00:5e:00:00:fb",
        ] {
            assert_eq!(decide(&mut sw, 1, &frame(dst, A), t), Decision::Flood);
        }
    }

    #[test]
    fn filters_same_port_and_moves_stations() {
        let mut sw = Switch::default();
        let t = Instant::now();
        decide(&mut sw, 1, &frame(B, A), t);
        decide(&mut sw, 1, &frame(A, C), t);
        // A and C both behind port 1 (the multicast group): never sent back.
        assert_eq!(decide(&mut sw, 1, &frame(A, C), t), Decision::Filter);
        // A moves to port 3.
        decide(&mut sw, 3, &frame(C, A), t);
        assert_eq!(decide(&mut sw, 1, &frame(A, C), t), Decision::Unicast(3));
    }

    #[test]
    fn reports_new_and_moved_macs_once() {
        let mut sw = Switch::default();
        let t = Instant::now();
        let (a, b): (MacAddr, MacAddr) = (A.parse().unwrap(), B.parse().unwrap());
        decide(&mut sw, 1, &frame(B, A), t);
        assert_eq!(sw.take_learned(), Some(Learned::New(a, 1)));
        decide(&mut sw, 1, &frame(B, A), t);
        assert_eq!(sw.take_learned(), None, "a refresh is no change");
        decide(&mut sw, 2, &frame(B, A), t);
        assert_eq!(sw.take_learned(), Some(Learned::Moved { mac: a, to: 2, from: 1 }));
        decide(&mut sw, 3, &frame(A, B), t);
        let mut gone = Vec::new();
        sw.forget_port_each(3, |m| gone.push(m));
        assert_eq!(gone, [b]);
        let mut aged = Vec::new();
        sw.age_each(t + DEFAULT_AGING, |m, p| aged.push((m, p)));
        assert_eq!(aged, [(a, 2)]);
    }

    #[test]
    fn ages_entries_out() {
        let mut sw = Switch::new(Duration::from_secs(10), 16);
        let t = Instant::now();
        decide(&mut sw, 1, &frame(B, A), t);
        let later = t + Duration::from_secs(11);
        // An expired entry is treated as unknown even before age() runs.
        assert_eq!(decide(&mut sw, 2, &frame(A, B), later), Decision::Flood);
        assert_eq!(sw.age(later), 1);
        assert_eq!(sw.lookup(&A.parse().unwrap()), None);
        assert_eq!(sw.lookup(&B.parse().unwrap()), Some(2));
    }

    #[test]
    fn drops_group_source_and_bounds_table() {
        let mut sw = Switch::new(DEFAULT_AGING, 1);
        let t = Instant::now();
        assert_eq!(
            decide(&mut sw, 1, &frame(A, "ff:ff:ff:ff:ff:ff"), t),
            Decision::DropInvalidSource
        );
        assert_eq!(
            decide(&mut sw, 1, &frame(A, "00:00:00:00:00:00"), t),
            Decision::DropInvalidSource
        );
        assert_eq!(sw.lookup(&"00:00:00:00:00:00".parse().unwrap()), None);
        decide(&mut sw, 1, &frame(C, A), t);
        decide(&mut sw, 2, &frame(C, B), t);
        assert_eq!(sw.entries(t).len(), 1);
        assert_eq!(sw.forget_port(1), 1);
    }
}
