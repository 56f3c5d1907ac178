//! The lease table, in memory: every lease, live or ended, by key and by
//! address. It knows no files: each change it makes is also recorded as a
//! [`LeaseChange`], which the host hands to its driver ([`crate::Host::take_lease_changes`])
//! to persist (the vmlan-store crate appends them to a journal and exports
//! dnsmasq's leases file; the line formats are in [`super::file`]).
//!
//! Leases are keyed by the client identifier (DHCP option 61) when the client
//! sends one, else by its MAC address (RFC 2131 section 4.2).
//!
//! Ended leases are remembered: a lease its client released (RELEASE) or that
//! expired stays in the table, marked ended, as the address that client last
//! had, so the DHCP server can give it the same address when it comes back
//! (dhcp/). In the file it is an ordinary line whose expiry lies in the past
//! (the time of the release, or the lease's own expiry): dnsmasq drops such
//! lines when it reads a lease file, `vmlan leases` and `vmlan status` skip
//! them, and any reader must compare the expiry with the clock, as with
//! dnsmasq's own file, which holds an expired lease until its next prune. This
//! was chosen over a record of its own because it keeps one file in dnsmasq's
//! format and the journal simple (a release is a [`LeaseChange::Put`] carrying
//! that expiry; an expiry records nothing), where a second file would have to
//! stay consistent with the first through every compaction and crash. When a
//! table is loaded ([`LeaseDb::end_expired`]), every lease that has expired by
//! then is an ended record.
//!
//! An ended record goes when its client is granted a lease again, when another
//! client is granted its address, or when it is removed: there is at most one
//! record per client and one per address, so the table never holds more
//! records than there are addresses it has handed out. [`LeaseDb::get`],
//! [`LeaseDb::by_ip`], [`LeaseDb::iter`] and [`LeaseDb::len`] see the live
//! leases only; [`LeaseDb::remembered`] and [`LeaseDb::remembered_at`] the ended ones.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use super::file::Lease6;

use vmlan_hub::MacAddr;

/// One lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The client's hardware address.
    pub mac: MacAddr,
    /// The leased address.
    pub ip: Ipv4Addr,
    /// The client's hostname (configured or from option 12), if any.
    pub hostname: Option<String>,
    /// The client identifier (option 61), if the client sent one.
    pub client_id: Option<Vec<u8>>,
    /// Expiry as Unix seconds; 0 for an infinite lease (dnsmasq's convention).
    pub expires: u64,
}

impl Lease {
    /// True if the lease has expired at `now` (Unix seconds).
    pub fn expired(&self, now: u64) -> bool {
        self.expires != 0 && self.expires <= now
    }

    /// The lease as one line of dnsmasq's leases file (without newline); see [`super::file`].
    pub fn to_line(&self) -> String {
        let mut line = String::with_capacity(64);
        self.write_line(&mut line);
        line
    }
}

/// How a lease is found: by client identifier when the client sent one, else by MAC.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LeaseKey {
    /// DHCP option 61, type byte included.
    ClientId(Vec<u8>),
    /// The client's hardware address.
    Mac(MacAddr),
}

impl LeaseKey {
    /// The key of a client with hardware address `mac` and optional identifier `client_id`.
    pub fn of(mac: MacAddr, client_id: Option<&[u8]>) -> LeaseKey {
        match client_id {
            Some(id) if !id.is_empty() => LeaseKey::ClientId(id.to_vec()),
            _ => LeaseKey::Mac(mac),
        }
    }
}

impl Lease {
    /// The key this lease is found by.
    pub fn key(&self) -> LeaseKey {
        LeaseKey::of(self.mac, self.client_id.as_deref())
    }
}

/// A change of the table, to persist: the record the table now holds, or the
/// one it dropped. Replaying a table's changes in order onto the table it
/// started from ([`LeaseDb::apply`]) gives the table it became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseChange {
    /// This lease is now the record of its key and of its address (any other
    /// record of either is gone): granted, renewed, or ended by a RELEASE (its
    /// expiry then the time of the release).
    Put(Lease),
    /// The record of this key, which held this address, was removed.
    Removed(LeaseKey, Ipv4Addr),
    /// This DHCPv6 lease is now the live lease of its client's DUID and IAID
    /// (granted, or renewed: its new expiry).
    Put6(Lease6),
    /// The DHCPv6 lease of this client DUID and IAID ended (released,
    /// declined, expired or replaced): it is forgotten.
    Removed6(Vec<u8>, u32),
    /// The DHCPv6 server's DUID (RFC 8415 section 11), written as the leases
    /// file's `duid` line before the DHCPv6 leases.
    ServerDuid6(Vec<u8>),
}

/// A record of the table: a lease, live or ended (released or expired).
#[derive(Debug, Clone)]
struct Entry {
    lease: Lease,
    /// Released or expired: kept as the address its client last had.
    ended: bool,
}

/// The leases, indexed by key and by address.
#[derive(Debug, Default)]
pub struct LeaseDb {
    /// Every record, live and ended.
    by_key: HashMap<LeaseKey, Entry>,
    /// The address of every record, live and ended.
    by_ip: HashMap<Ipv4Addr, LeaseKey>,
    /// How many records are live.
    live: usize,
    /// No live lease expires before this (Unix seconds; `None`: none expires), so
    /// [`LeaseDb::expire`] scans the table only when one may have.
    earliest: Option<u64>,
    /// The DHCPv6 leases, live only, by client DUID and IAID: kept for the
    /// file ([`LeaseChange::Put6`], [`LeaseChange::Removed6`]); the host's
    /// DHCPv6 server holds its own records.
    v6: BTreeMap<(Vec<u8>, u32), Lease6>,
    /// The DHCPv6 server's DUID ([`LeaseChange::ServerDuid6`], or the file's `duid` line).
    duid6: Option<Vec<u8>>,
    /// Changes not yet taken by [`LeaseDb::take_changes`]; `None` while not
    /// recording ([`LeaseDb::record_changes`]), so a table nobody persists
    /// never grows a backlog.
    changes: Option<Vec<LeaseChange>>,
}

impl LeaseDb {
    /// An empty table.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Marks every lease expired at `now` (Unix seconds) as ended: the state of
    /// a table read from files, whose lines do not say which leases ended.
    pub fn end_expired(&mut self, now: u64) {
        for e in self.by_key.values_mut() {
            e.ended = e.lease.expired(now);
        }
        self.live = self.by_key.values().filter(|e| !e.ended).count();
        self.earliest = self.live_expiries().min();
        // DHCPv6 leases are kept live only: expired ones are dropped.
        self.v6.retain(|_, l| !l.expired(now));
    }

    /// The DHCPv6 leases (see [`LeaseChange::Put6`]), by client DUID then IAID.
    pub fn leases6(&self) -> impl ExactSizeIterator<Item = &Lease6> {
        self.v6.values()
    }

    /// The DHCPv6 server DUID recorded ([`LeaseChange::ServerDuid6`] or the
    /// file's `duid` line), if any.
    pub fn server_duid6(&self) -> Option<&[u8]> {
        self.duid6.as_deref()
    }

    /// Whether changes are recorded ([`LeaseDb::record_changes`]).
    pub fn recording(&self) -> bool {
        self.changes.is_some()
    }

    /// Applies `change` without recording it (replaying a journal, or keeping
    /// a copy of a table in step with it). A [`LeaseChange::Put`] is a live
    /// record: call [`LeaseDb::end_expired`] after replaying to mark the ended ones.
    pub fn apply(&mut self, change: &LeaseChange) {
        match change {
            LeaseChange::Put(l) => self.insert_mem(l.clone(), false),
            LeaseChange::Removed(k, _) => {
                self.remove_mem(k);
            }
            LeaseChange::Put6(l) => {
                self.v6.insert((l.duid.clone(), l.iaid), l.clone());
            }
            LeaseChange::Removed6(duid, iaid) => {
                self.v6.remove(&(duid.clone(), *iaid));
            }
            LeaseChange::ServerDuid6(d) => self.duid6 = Some(d.clone()),
        }
    }

    /// From now on, records every change for [`LeaseDb::take_changes`] (the
    /// driver that persists the table turns this on).
    pub fn record_changes(&mut self) {
        self.changes.get_or_insert_with(Vec::new);
    }

    /// Moves the changes recorded since the last call into `into`, oldest first.
    pub fn take_changes(&mut self, into: &mut Vec<LeaseChange>) {
        if let Some(c) = &mut self.changes {
            into.append(c);
        }
    }

    fn record(&mut self, change: impl FnOnce() -> LeaseChange) {
        if let Some(c) = &mut self.changes {
            c.push(change());
        }
    }

    /// No live lease expires before this (Unix seconds); `None` if none expires.
    pub fn earliest_expiry(&self) -> Option<u64> {
        self.earliest
    }

    /// Puts `lease` in the table as the only record of its key and of its
    /// address (any other record of either goes), live or `ended`.
    fn insert_mem(&mut self, lease: Lease, ended: bool) {
        let key = lease.key();
        if let Some(old) = self.by_key.remove(&key) {
            self.by_ip.remove(&old.lease.ip);
            self.live -= usize::from(!old.ended);
        }
        if let Some(other) = self.by_ip.insert(lease.ip, key.clone()) {
            if other != key {
                if let Some(o) = self.by_key.remove(&other) {
                    self.live -= usize::from(!o.ended);
                }
            }
        }
        if !ended {
            self.live += 1;
            if lease.expires != 0 {
                self.earliest = Some(self.earliest.map_or(lease.expires, |e| e.min(lease.expires)));
            }
        }
        self.by_key.insert(key, Entry { lease, ended });
    }

    fn remove_mem(&mut self, key: &LeaseKey) -> Option<Lease> {
        let old = self.by_key.remove(key)?;
        self.by_ip.remove(&old.lease.ip);
        self.live -= usize::from(!old.ended);
        Some(old.lease)
    }

    /// The expiries of the live leases that expire.
    fn live_expiries(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_key
            .values()
            .filter(|e| !e.ended && e.lease.expires != 0)
            .map(|e| e.lease.expires)
    }

    /// The live lease found by `key` (it may have expired since the last [`LeaseDb::expire`]).
    pub fn get(&self, key: &LeaseKey) -> Option<&Lease> {
        self.by_key.get(key).filter(|e| !e.ended).map(|e| &e.lease)
    }

    /// The live lease holding `ip` (it may have expired since the last [`LeaseDb::expire`]).
    pub fn by_ip(&self, ip: &Ipv4Addr) -> Option<&Lease> {
        self.by_ip
            .get(ip)
            .and_then(|k| self.by_key.get(k))
            .filter(|e| !e.ended)
            .map(|e| &e.lease)
    }

    /// The ended (released or expired) lease of `key`: the address that client
    /// last had, with the time it ended as its expiry.
    pub fn remembered(&self, key: &LeaseKey) -> Option<&Lease> {
        self.by_key.get(key).filter(|e| e.ended).map(|e| &e.lease)
    }

    /// The ended lease whose address is `ip`, if no live lease holds it.
    pub fn remembered_at(&self, ip: &Ipv4Addr) -> Option<&Lease> {
        self.by_ip
            .get(ip)
            .and_then(|k| self.by_key.get(k))
            .filter(|e| e.ended)
            .map(|e| &e.lease)
    }

    /// Every live lease, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.by_key.values().filter(|e| !e.ended).map(|e| &e.lease)
    }

    /// Every record, live and ended (`true`), in no particular order.
    pub fn records(&self) -> impl Iterator<Item = (&Lease, bool)> {
        self.by_key.values().map(|e| (&e.lease, e.ended))
    }

    /// Every live lease, sorted by address.
    pub fn sorted(&self) -> Vec<&Lease> {
        let mut v: Vec<&Lease> = self.iter().collect();
        v.sort_by_key(|l| u32::from(l.ip));
        v
    }

    /// Makes room for `total` leases in all, so that growing to that many
    /// never rehashes the table (a rehash of 50,000 leases stalls for
    /// milliseconds).
    pub fn reserve(&mut self, total: usize) {
        self.by_key.reserve(total.saturating_sub(self.by_key.len()));
        self.by_ip.reserve(total.saturating_sub(self.by_ip.len()));
    }

    /// Number of live leases.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True if no lease is live.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Number of ended leases remembered.
    pub fn remembered_len(&self) -> usize {
        self.by_key.len() - self.live
    }

    /// Adds or replaces the lease of `lease.key()` (dropping any other holder of
    /// the address); recorded as a [`LeaseChange::Put`].
    pub fn insert(&mut self, lease: Lease) {
        self.record(|| LeaseChange::Put(lease.clone()));
        self.insert_mem(lease, false);
    }

    /// Ends the live lease of `key` at `now` (Unix seconds), as a RELEASE does:
    /// it stays as an ended record with expiry `now`, recorded as such.
    /// Returns the lease as it was; `None` if `key` has no live lease.
    pub fn release(&mut self, key: &LeaseKey, now: u64) -> Option<Lease> {
        let e = self.by_key.get_mut(key).filter(|e| !e.ended)?;
        let was = e.lease.clone();
        e.ended = true;
        e.lease.expires = now;
        self.live -= 1;
        let now_ended = e.lease.clone();
        self.record(|| LeaseChange::Put(now_ended));
        Some(was)
    }

    /// Removes the record found by `key`, live or ended, recorded as a
    /// [`LeaseChange::Removed`]; returns it.
    pub fn remove(&mut self, key: &LeaseKey) -> Option<Lease> {
        let old = self.remove_mem(key)?;
        self.record(|| LeaseChange::Removed(key.clone(), old.ip));
        Some(old)
    }

    /// Ends every live lease expired at `now`; returns them. They stay as
    /// ended records (their expiry already says when they ended, so nothing
    /// is recorded).
    pub fn expire(&mut self, now: u64) -> Vec<Lease> {
        if self.earliest.is_none_or(|e| e > now) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for e in self.by_key.values_mut() {
            if !e.ended && e.lease.expired(now) {
                e.ended = true;
                out.push(e.lease.clone());
            }
        }
        self.live -= out.len();
        self.earliest = self.live_expiries().min();
        out
    }
}

/// A lease for tests: `mac`, `ip`, `name`, `expires` (Unix seconds), no client id.
#[cfg(test)]
pub(crate) fn lease(mac: &str, ip: &str, name: Option<&str>, expires: u64) -> Lease {
    Lease {
        mac: mac.parse().unwrap(),
        ip: ip.parse().unwrap(),
        hostname: name.map(str::to_string),
        client_id: None,
        expires,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_scans_only_when_a_lease_may_have_run_out() {
        let mut db = LeaseDb::in_memory();
        db.insert(lease("00:00:00:00:00:01", "10.0.3.1", None, 0));
        assert_eq!(db.earliest_expiry(), None, "an infinite lease never expires");
        db.insert(lease("00:00:00:00:00:02", "10.0.3.2", None, 300));
        db.insert(lease("00:00:00:00:00:03", "10.0.3.3", None, 200));
        assert_eq!(db.earliest_expiry(), Some(200));
        assert!(db.expire(199).is_empty());
        assert_eq!(db.expire(250).len(), 1);
        assert_eq!(db.earliest_expiry(), Some(300));
        // A renewal that moves the only early lease later still expires on time.
        db.insert(lease("00:00:00:00:00:02", "10.0.3.2", None, 400));
        assert!(db.expire(350).is_empty());
        assert_eq!(db.earliest_expiry(), Some(400));
        assert_eq!(db.expire(400).len(), 1);
        assert_eq!(db.earliest_expiry(), None);
        assert_eq!(db.len(), 1);
    }

    #[test]
    fn ended_leases_are_remembered_and_changes_recorded_replay_to_the_same_table() {
        let mut db = LeaseDb::in_memory();
        let mut nothing = vec![];
        db.insert(lease("00:00:00:00:00:09", "10.0.3.109", None, 0));
        db.take_changes(&mut nothing);
        assert!(nothing.is_empty(), "nothing recorded before record_changes");
        db.record_changes();
        let a = lease("00:00:00:00:00:0a", "10.0.3.101", Some("a"), 1000);
        let b = lease("00:00:00:00:00:0b", "10.0.3.102", None, 150);
        db.insert(a.clone());
        db.insert(b.clone());
        // RELEASE: no longer a lease, but the address A last had, ended at 120.
        assert_eq!(db.release(&a.key(), 120), Some(a.clone()));
        assert!(db.get(&a.key()).is_none() && db.by_ip(&a.ip).is_none());
        let r = db.remembered(&a.key()).unwrap();
        assert_eq!((r.ip, r.expires), (a.ip, 120));
        assert_eq!(db.remembered_at(&a.ip).map(|l| l.mac), Some(a.mac));
        assert_eq!(db.release(&a.key(), 130), None, "released once");
        // Expiry ends B the same way, and records nothing.
        assert_eq!(db.expire(200), vec![b.clone()]);
        assert_eq!((db.len(), db.remembered_len()), (1, 2));
        // Another client granted B's address: B's record goes.
        let c = lease("00:00:00:00:00:0c", "10.0.3.102", None, 5000);
        db.insert(c.clone());
        assert!(db.remembered(&b.key()).is_none());
        db.remove(&LeaseKey::Mac("00:00:00:00:00:09".parse().unwrap()));
        let mut changes = vec![];
        db.take_changes(&mut changes);
        assert_eq!(changes.len(), 5, "{changes:?}");
        // Replayed onto the table it started from, the changes give the same table.
        let mut replay = LeaseDb::in_memory();
        replay.insert(lease("00:00:00:00:00:09", "10.0.3.109", None, 0));
        for ch in &changes {
            replay.apply(ch);
        }
        replay.end_expired(300);
        let lines = |d: &LeaseDb| {
            let mut v: Vec<_> = d.records().map(|(l, ended)| (l.to_line(), ended)).collect();
            v.sort();
            v
        };
        assert_eq!(lines(&replay), lines(&db));
    }

    #[test]
    fn client_id_keys_leases() {
        let mut db = LeaseDb::in_memory();
        let mut a = lease("00:00:00:22:22:22", "10.0.3.102", None, 0);
        a.client_id = Some(vec![0xff, 1, 2, 3]);
        let mut b = a.clone();
        b.client_id = Some(vec![0xff, 9, 9, 9]);
        b.ip = "10.0.3.103".parse().unwrap();
        db.insert(a.clone());
        db.insert(b);
        // Same MAC, two client identifiers: two leases.
        assert_eq!(db.len(), 2);
        assert_eq!(db.get(&a.key()).unwrap().ip, a.ip);
        assert!(db.get(&LeaseKey::Mac(a.mac)).is_none());
    }
}
