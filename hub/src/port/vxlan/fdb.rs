//! The VXLAN forwarding database, sans-IO (RFC 7348 section 4.1, "Unicast
//! VM-to-VM Communication": a VTEP learns the inner source MAC -> outer
//! source IP mapping from the packets it receives): inner MAC address ->
//! remote VTEP's IPv4 address. Frames to a learned MAC go to that VTEP (at
//! the configured destination port, never the packet's source port); the
//! others are replicated to every peer by the port.
//!
//! Entries age out after the switch's aging time (switch.rs's
//! [`DEFAULT_AGING`](crate::switch::DEFAULT_AGING), IEEE 802.1D's 300 s) without
//! a packet. The table holds at most `max` entries, allocated once: past it a
//! new MAC is not learned (its frames still arrive; frames to it are
//! replicated) and counted, so a hostile remote cannot grow the hub's memory.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::frame::MacAddr;
use crate::switch::MacHasher;

/// Default bound on FDB entries.
pub const DEFAULT_MAX_ENTRIES: usize = 4096;

/// The inner MAC -> remote VTEP table of one VXLAN port.
#[derive(Debug)]
pub struct Fdb {
    map: HashMap<MacAddr, (Ipv4Addr, Instant), BuildHasherDefault<MacHasher>>,
    aging: Duration,
    max: usize,
    refused: u64,
}

impl Fdb {
    /// An empty table: entries live `aging` without traffic, at most `max`
    /// (the room is allocated now, so learning never allocates).
    pub fn new(aging: Duration, max: usize) -> Self {
        Fdb {
            map: HashMap::with_capacity_and_hasher(max, BuildHasherDefault::default()),
            aging,
            max,
            refused: 0,
        }
    }

    /// Records that `mac` sits behind `vtep` as of `now`. Group and all-zero
    /// MACs are never learned. Returns false when the MAC was not learned
    /// because the table is full (counted in [`Fdb::refused`]).
    pub fn learn(&mut self, mac: MacAddr, vtep: Ipv4Addr, now: Instant) -> bool {
        if mac.is_group() || mac.0 == [0; 6] {
            return true;
        }
        if let Some(e) = self.map.get_mut(&mac) {
            *e = (vtep, now);
            return true;
        }
        if self.map.len() >= self.max {
            // Make room from expired entries before refusing.
            self.age(now);
            if self.map.len() >= self.max {
                self.refused += 1;
                return false;
            }
        }
        self.map.insert(mac, (vtep, now));
        true
    }

    /// The VTEP `mac` was last seen behind, unless the entry is older than the aging time.
    pub fn lookup(&self, mac: &MacAddr, now: Instant) -> Option<Ipv4Addr> {
        self.map
            .get(mac)
            .filter(|(_, seen)| now.saturating_duration_since(*seen) < self.aging)
            .map(|(ip, _)| *ip)
    }

    /// Removes entries idle for the aging time or longer; returns how many.
    pub fn age(&mut self, now: Instant) -> usize {
        let (before, aging) = (self.map.len(), self.aging);
        self.map
            .retain(|_, (_, seen)| now.saturating_duration_since(*seen) < aging);
        before - self.map.len()
    }

    /// Entries now.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// MACs not learned since start because the table was full.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// The entries, sorted by MAC: (MAC, VTEP, idle time at `now`).
    pub fn entries(&self, now: Instant) -> Vec<(MacAddr, Ipv4Addr, Duration)> {
        let mut v: Vec<_> = self
            .map
            .iter()
            .map(|(m, (ip, seen))| (*m, *ip, now.saturating_duration_since(*seen)))
            .collect();
        v.sort_by_key(|e| e.0);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MacAddr = MacAddr([0, 0, 0, 0x11, 0x11, 0x11]);
    const B: MacAddr = MacAddr([0, 0, 0, 0x22, 0x22, 0x22]);
    const V1: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
    const V2: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

    #[test]
    fn learns_moves_and_ages() {
        let mut f = Fdb::new(Duration::from_secs(10), 16);
        let t = Instant::now();
        assert!(f.learn(A, V1, t));
        assert_eq!(f.lookup(&A, t), Some(V1));
        // A moves to another VTEP.
        f.learn(A, V2, t + Duration::from_secs(1));
        assert_eq!(f.lookup(&A, t + Duration::from_secs(1)), Some(V2));
        // Expired entries are not used, even before age() runs.
        let late = t + Duration::from_secs(12);
        assert_eq!(f.lookup(&A, late), None);
        assert_eq!(f.age(late), 1);
        assert!(f.is_empty());
    }

    #[test]
    fn group_and_zero_macs_are_never_learned() {
        let mut f = Fdb::new(Duration::from_secs(10), 16);
        let t = Instant::now();
        f.learn(MacAddr::BROADCAST, V1, t);
        f.learn(MacAddr([0x33, 0x33, 0, 0, 0, 1]), V1, t);
        f.learn(MacAddr([0; 6]), V1, t);
        assert!(f.is_empty());
    }

    #[test]
    fn the_table_is_bounded_and_refusals_counted() {
        let mut f = Fdb::new(Duration::from_secs(10), 2);
        let cap = f.map.capacity();
        let t = Instant::now();
        for i in 1..=1000u32 {
            let b = i.to_be_bytes();
            f.learn(MacAddr([0, 0, b[0], b[1], b[2], b[3]]), V1, t);
        }
        assert_eq!(f.len(), 2);
        assert_eq!(f.refused(), 998);
        assert_eq!(f.map.capacity(), cap, "learning grew the table");
        // Known MACs still refresh; an expired entry makes room.
        assert!(f.learn(MacAddr([0, 0, 0, 0, 0, 0x01]), V2, t));
        assert!(f.learn(B, V2, t + Duration::from_secs(11)));
        assert_eq!(f.entries(t + Duration::from_secs(11)).len(), 1);
    }
}
