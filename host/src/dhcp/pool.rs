//! Address allocation for the DHCP server (RFC 2131 section 4.3.1): which
//! address a client gets, whether a requested one may be granted, and the
//! pool search (a cursor per subnet, and the full-pool mark that keeps a
//! DISCOVER O(1) when no address is free). The rules are in the module doc
//! of [`super::server`].

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use vmlan_hub::MacAddr;

use crate::config::LeaseSecs;
use crate::leases::LeaseKey;

use super::server::DhcpServer;

/// Most addresses remembered as freed while a pool is full (see [`Subnet::full`]);
/// past it, the pool search goes back to the cursor.
const FREED_MAX: usize = 1024;
/// At most one "pool is full" warning per this many seconds; the others are
/// counted and the count logged with the next warning.
const FULL_WARN_EVERY: u64 = 10;

/// One subnet the server hands addresses out on.
#[derive(Debug)]
pub(super) struct Subnet {
    pub(super) net: Ipv4Net,
    /// Pools: (first, last, lease seconds); empty for a `static` subnet.
    pub(super) pools: Vec<(u32, u32, LeaseSecs)>,
    /// Lease time for reservations in this subnet.
    pub(super) lease: LeaseSecs,
    /// Where the next pool search starts.
    pub(super) cursor: u32,
    /// The cursor went all the way round its pools without finding a free
    /// address, and nothing has been freed since except the addresses in
    /// `freed`: a search then looks at those only, so a full pool costs O(1)
    /// per DISCOVER however large it is.
    pub(super) full: bool,
    /// Pool addresses freed (RELEASE, expiry, a dropped offer, a quarantine's
    /// end, a client's move) since `full` was set, at most [`FREED_MAX`];
    /// more clear `full` instead.
    pub(super) freed: Vec<u32>,
    /// Served through a relay (its own netmask, not `--addr`'s subnet).
    pub(super) relayed: bool,
}

impl DhcpServer {
    /// `ip` may have become free: if its pool is marked full, it is remembered
    /// for the next search (or, past [`FREED_MAX`], the mark is cleared).
    pub(super) fn freed(&mut self, ip: Ipv4Addr) {
        let v = u32::from(ip);
        for s in &mut self.subnets {
            if s.full && s.pools.iter().any(|(a, b, _)| (*a..=*b).contains(&v)) {
                if s.freed.len() < FREED_MAX {
                    s.freed.push(v);
                } else {
                    s.full = false;
                    s.freed = Vec::new();
                }
            }
        }
    }

    /// Logs that the pool has no address for `mac`, at most once per
    /// [`FULL_WARN_EVERY`] seconds, with the count of those not logged.
    pub(super) fn warn_full(&mut self, mac: MacAddr, now: u64) {
        if self.full_warned.is_some_and(|t| now < t + FULL_WARN_EVERY) {
            self.full_suppressed += 1;
            return;
        }
        tracing::warn!(
            mac = %mac,
            suppressed = self.full_suppressed,
            "DHCPDISCOVER: no address available, the pool is full (at most one such warning per {FULL_WARN_EVERY} s; suppressed counts the others)"
        );
        self.full_warned = Some(now);
        self.full_suppressed = 0;
    }

    /// Whether an ended lease of `mac` on `ip` is kept as the client's last
    /// address: `ip` is a pool address not reserved for anyone.
    pub(super) fn rememberable(&self, mac: MacAddr, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        let pooled = self
            .subnets
            .iter()
            .flat_map(|s| &s.pools)
            .any(|(a, b, _)| (*a..=*b).contains(&v));
        pooled && !self.reserved_ips.contains_key(&ip) && self.reservations.get(&mac).is_none_or(|r| r.ip.is_none())
    }

    pub(super) fn is_client_addr(&self, subnet: usize, ip: Ipv4Addr) -> bool {
        let net = self.subnets[subnet].net;
        net.contains(&ip) && ip != net.network() && ip != net.broadcast() && ip != self.server_ip
    }

    /// True if `ip` may be leased to (`key`, `mac`) now: a client address of the
    /// subnet, not reserved for another MAC, not leased or offered to another
    /// client, not declined.
    pub(super) fn free_for(&self, key: &LeaseKey, mac: MacAddr, subnet: usize, ip: Ipv4Addr, now: u64) -> bool {
        self.is_client_addr(subnet, ip)
            && self.reserved_ips.get(&ip).is_none_or(|m| *m == mac)
            && self.leases.by_ip(&ip).is_none_or(|l| l.key() == *key || l.expired(now))
            && self
                .offered_ips
                .get(&ip)
                .is_none_or(|(k, until)| k == key || *until <= now)
            && self.declined.get(&ip).is_none_or(|until| *until <= now)
    }

    pub(super) fn in_pool(&self, subnet: usize, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        self.subnets[subnet]
            .pools
            .iter()
            .any(|(s, e, _)| (*s..=*e).contains(&v))
    }

    /// Whether a REQUEST for `ip` may be ACKed (section 4.3.2): the client's
    /// reservation if it has one, else its own lease or a free pool address.
    pub(super) fn acceptable(&self, key: &LeaseKey, mac: MacAddr, subnet: usize, ip: Ipv4Addr, now: u64) -> bool {
        if let Some(r) = self.reservations.get(&mac).and_then(|r| r.ip) {
            return r == ip;
        }
        let own = self.leases.get(key).is_some_and(|l| l.ip == ip);
        (own || self.in_pool(subnet, ip)) && self.free_for(key, mac, subnet, ip, now)
    }

    pub(super) fn choose(
        &mut self,
        key: &LeaseKey,
        mac: MacAddr,
        subnet: usize,
        requested: Option<Ipv4Addr>,
        now: u64,
    ) -> Option<Ipv4Addr> {
        if let Some(ip) = self.reservations.get(&mac).and_then(|r| r.ip) {
            return self.subnets[subnet].net.contains(&ip).then_some(ip);
        }
        if let Some((ip, _)) = self.offers.get(key) {
            if self.in_pool(subnet, *ip) && self.free_for(key, mac, subnet, *ip, now) {
                return Some(*ip);
            }
        }
        if let Some(l) = self.leases.get(key) {
            if self.in_pool(subnet, l.ip) && self.free_for(key, mac, subnet, l.ip, now) {
                return Some(l.ip);
            }
        }
        // The address it last had (released or expired), while no one took it.
        if let Some(l) = self.leases.remembered(key) {
            if self.in_pool(subnet, l.ip) && self.free_for(key, mac, subnet, l.ip, now) {
                return Some(l.ip);
            }
        }
        let someone_elses = |ip: &Ipv4Addr| self.leases.remembered_at(ip).is_some_and(|l| l.key() != *key);
        if let Some(ip) = requested
            .filter(|ip| self.in_pool(subnet, *ip) && self.free_for(key, mac, subnet, *ip, now) && !someone_elses(ip))
        {
            return Some(ip);
        }
        // A pool found full: only the addresses freed since can be free (or
        // ones whose hold ran out since the last expiry run, which that
        // run reports): O(1) per DISCOVER.
        if self.subnets[subnet].full {
            while let Some(v) = self.subnets[subnet].freed.pop() {
                self.scan_steps += 1;
                let ip = Ipv4Addr::from(v);
                if self.free_for(key, mac, subnet, ip, now) {
                    return Some(ip);
                }
            }
            return None;
        }
        // The next free address after the cursor, wrapping around the pools once.
        let total: u64 = self.subnets[subnet]
            .pools
            .iter()
            .map(|(s, e, _)| u64::from(e - s) + 1)
            .sum();
        let mut at = self.subnets[subnet].cursor;
        for _ in 0..total {
            let pools = &self.subnets[subnet].pools;
            let Some(pos) = pools.iter().position(|(s, e, _)| (*s..=*e).contains(&at)) else {
                at = pools.first()?.0;
                continue;
            };
            let next = if at == pools[pos].1 {
                pools[(pos + 1) % pools.len()].0
            } else {
                at + 1
            };
            self.scan_steps += 1;
            let ip = Ipv4Addr::from(at);
            if self.free_for(key, mac, subnet, ip, now) {
                self.subnets[subnet].cursor = next;
                return Some(ip);
            }
            at = next;
        }
        // All the way round: full until something is freed.
        let s = &mut self.subnets[subnet];
        s.full = !s.pools.is_empty();
        s.freed.clear();
        None
    }

    pub(super) fn lease_secs(&self, mac: MacAddr, subnet: usize, ip: Ipv4Addr) -> LeaseSecs {
        if let Some(l) = self.reservations.get(&mac).and_then(|r| r.lease) {
            return l;
        }
        let v = u32::from(ip);
        let s = &self.subnets[subnet];
        s.pools
            .iter()
            .find(|(a, b, _)| (*a..=*b).contains(&v))
            .map_or(s.lease, |p| p.2)
    }
}

/// Where a subnet's pool search starts with the table as it is at start: just
/// after the pool address furthest along the cursor's way (the pools in order,
/// each upwards) that has a record, live or ended, wrapping to the next pool;
/// the first pool address when none has. So the cursor goes on through the
/// addresses never handed out before it comes round to remembered ones.
pub(super) fn resume_cursor(pools: &[(u32, u32, LeaseSecs)], ips: impl Iterator<Item = Ipv4Addr>) -> u32 {
    let Some(first) = pools.first() else { return 0 };
    let furthest = ips
        .filter_map(|ip| {
            let v = u32::from(ip);
            pools
                .iter()
                .position(|(a, b, _)| (*a..=*b).contains(&v))
                .map(|p| (p, v))
        })
        .max();
    match furthest {
        None => first.0,
        Some((p, v)) if v == pools[p].1 => pools[(p + 1) % pools.len()].0,
        Some((_, v)) => v + 1,
    }
}
