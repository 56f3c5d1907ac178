//! Address choice inside the DHCPv6 pools.
//!
//! A pool may be as large as a /64, so it is never walked from its start: a
//! client's search starts at a hash of its DUID and IAID inside the pool (as
//! dnsmasq's `address6_allocate` does), so a client that comes back after its
//! record is gone (a restart without the lease file) is likely to find the
//! same address again, and goes upwards from there, wrapping, looking at no
//! more than [`SCAN_MAX`] addresses per pool. A pool of at most that many
//! addresses is searched completely, so "no address left" is exact for it; a
//! larger pool reports none only when that many addresses in a row are taken,
//! which needs about that many clients.

use std::net::Ipv6Addr;

use super::config::Pool6;

/// Most addresses of one pool looked at for one identity association.
pub const SCAN_MAX: u128 = 4096;

/// The number of addresses in `pool` (0 if `end < start`).
pub fn size(pool: &Pool6) -> u128 {
    let (s, e) = (u128::from(pool.start), u128::from(pool.end));
    if e < s {
        0
    } else {
        // A pool of all 2^128 addresses has 2^128 - 1 + 1: saturate.
        (e - s).saturating_add(1)
    }
}

/// Whether `addr` is one of `pool`'s addresses.
pub fn contains(pool: &Pool6, addr: Ipv6Addr) -> bool {
    (u128::from(pool.start)..=u128::from(pool.end)).contains(&u128::from(addr))
}

/// Whether `addr` is in the on-link prefix of `pool` (its start's first
/// `prefix_len` bits).
pub fn on_link(pool: &Pool6, addr: Ipv6Addr) -> bool {
    let bits = u32::from(pool.prefix_len.min(128));
    let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
    u128::from(addr) & mask == u128::from(pool.start) & mask
}

/// FNV-1a (64 bits) of a client's DUID and IAID: where its search starts.
pub fn client_hash(duid: &[u8], iaid: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in duid.iter().chain(&iaid.to_be_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The addresses of `pool` in the order a client of hash `hash` tries them:
/// from the hash's place upwards, wrapping, at most [`SCAN_MAX`].
pub fn candidates(pool: &Pool6, hash: u64) -> impl Iterator<Item = Ipv6Addr> {
    let n = size(pool);
    let start = u128::from(pool.start);
    let first = if n == 0 { 0 } else { u128::from(hash) % n };
    (0..n.min(SCAN_MAX)).map(move |i| Ipv6Addr::from(start + (first + i) % n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(a: &str, b: &str, len: u8) -> Pool6 {
        Pool6 {
            start: a.parse().unwrap(),
            end: b.parse().unwrap(),
            prefix_len: len,
            lease_secs: 3600,
        }
    }

    #[test]
    fn candidates_wrap_and_are_bounded() {
        let p = pool("fd00::10", "fd00::13", 64);
        assert_eq!(size(&p), 4);
        let all: Vec<Ipv6Addr> = candidates(&p, 6).collect();
        let want: Vec<Ipv6Addr> = ["fd00::12", "fd00::13", "fd00::10", "fd00::11"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(all, want);
        let big = pool("fd00::", "fd00::ffff:ffff:ffff:ffff", 64);
        assert_eq!(candidates(&big, u64::MAX).count() as u128, SCAN_MAX);
        assert!(candidates(&big, u64::MAX).all(|a| contains(&big, a)));
        assert_eq!(candidates(&pool("fd00::2", "fd00::1", 64), 1).count(), 0);
        assert_eq!(
            size(&pool("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0)),
            u128::MAX
        );
    }

    #[test]
    fn on_link_uses_the_prefix() {
        let p = pool("fd00:0:0:1::10", "fd00:0:0:1::ff", 64);
        assert!(on_link(&p, "fd00:0:0:1:abcd::1".parse().unwrap()));
        assert!(!on_link(&p, "fd00:0:0:2::10".parse().unwrap()));
        assert!(on_link(&pool("fd00::1", "fd00::2", 0), "2001:db8::1".parse().unwrap()));
        assert!(!on_link(&pool("fd00::1", "fd00::2", 128), "fd00::2".parse().unwrap()));
    }
}
