//! The DHCPv6 server's settings, and DUIDs (RFC 8415 section 11).
//!
//! [`Dhcp6Config`] is the server's own configuration, in the protocol's terms;
//! the command-line flags (`--dhcp-range` with IPv6 addresses, `--dhcp-host`
//! with `[IPv6]` and `id:DUID`, dnsmasq's syntax) are parsed elsewhere and
//! mapped into it.

use std::net::Ipv6Addr;

use vmlan_hub::MacAddr;

use crate::config::{HostConfig, Reservation};

/// The Preference option value (RFC 8415 section 21.8) sent in ADVERTISE by
/// default: 255, the highest, so a client sends its REQUEST at once instead
/// of waiting for other servers' ADVERTISEs (section 18.2.1); the hub is the
/// segment's only DHCPv6 server.
pub const DEFAULT_PREFERENCE: u8 = 255;

/// Default [`Dhcp6Config::max_records`]: 131072 lease records (as the v4
/// server sizes its table for a /15).
pub const MAX_RECORDS: usize = 1 << 17;

/// Default [`Dhcp6Config::max_offers`]: 65536 addresses held by ADVERTISEs.
pub const MAX_OFFERS: usize = 1 << 16;

/// A dynamic address pool (`--dhcp-range=START,END[,PREFIXLEN][,LEASETIME]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool6 {
    /// First address of the pool.
    pub start: Ipv6Addr,
    /// Last address of the pool (inclusive); a pool with `end < start` is empty.
    pub end: Ipv6Addr,
    /// Length of the on-link prefix the pool's addresses are in (bits, at most
    /// 128; dnsmasq's default is 64): CONFIRM (RFC 8415 section 18.3.3) says
    /// whether an address is on the link by it.
    pub prefix_len: u8,
    /// Lease time in seconds: the preferred and valid lifetimes of the
    /// addresses leased from this pool (T1 and T2 are 0.5 and 0.8 of it);
    /// `u32::MAX` ([`crate::config::INFINITE`]) for an infinite lease.
    pub lease_secs: u32,
}

/// A fixed address and/or name for one client (`--dhcp-host`), found by the
/// client's DUID, or by its MAC address: the Ethernet source of its messages,
/// or the link-layer address in a DUID-LLT or DUID-LL (as dnsmasq matches a
/// DHCPv6 client to a `--dhcp-host` MAC). A DUID match wins over a MAC match;
/// among several of one kind the first in the list wins.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reservation6 {
    /// The client's DUID (dnsmasq's `id:` form, as bytes), if matched by DUID.
    pub duid: Option<Vec<u8>>,
    /// The client's MAC address, if matched by MAC.
    pub mac: Option<MacAddr>,
    /// The address leased to the client's first identity association (IA_NA);
    /// `None`: pool addresses. It need not be inside a pool; its lease time is
    /// that of the pool holding it, else of the first pool, else one hour.
    pub addr: Option<Ipv6Addr>,
    /// The client's name, carried in its leases (for DNS and the lease file).
    pub name: Option<String>,
}

impl Reservation6 {
    /// The DHCPv6 part of a `--dhcp-host` reservation: one with a DUID
    /// (`id:`), an IPv6 address (`[1234::5]`) or a name, matched by DUID,
    /// else MAC; `None` for one with none of these.
    pub fn of(r: &Reservation) -> Option<Reservation6> {
        (r.duid.is_some() || r.ip6.is_some() || r.hostname.is_some()).then(|| Reservation6 {
            duid: r.duid.clone(),
            mac: r.mac,
            addr: r.ip6,
            name: r.hostname.clone(),
        })
    }
}

/// The DHCPv6 server's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dhcp6Config {
    /// The address pools, tried in order.
    pub pools: Vec<Pool6>,
    /// The reservations.
    pub reservations: Vec<Reservation6>,
    /// DNS recursive name servers (option 23, RFC 3646), sent when the client
    /// asks for them in its Option Request option; none: not sent.
    pub dns_servers: Vec<Ipv6Addr>,
    /// Domain search list (option 24, RFC 3646), domain names, sent when
    /// asked for; names that are not valid DNS names are left out.
    pub domain_search: Vec<String>,
    /// Answer a SOLICIT carrying Rapid Commit (RFC 8415 section 21.14) with a
    /// REPLY and a bound lease, skipping ADVERTISE and REQUEST.
    pub rapid_commit: bool,
    /// The Preference option value sent in ADVERTISE (RFC 8415 section 21.8).
    pub preference: u8,
    /// Most lease records held, live and ended (default [`MAX_RECORDS`]): a
    /// pool may be a /64, so a flood of made-up DUIDs must not grow the
    /// table without end. At the limit the oldest ended record makes room;
    /// with none, a new IA gets NoAddrsAvail.
    pub max_records: usize,
    /// Most addresses held by ADVERTISEs at once (default [`MAX_OFFERS`]); at
    /// the limit a new IA's SOLICIT gets NoAddrsAvail until holds run out.
    pub max_offers: usize,
}

impl Default for Dhcp6Config {
    /// No pools, no reservations, no options, no Rapid Commit, preference
    /// [`DEFAULT_PREFERENCE`], the default limits.
    fn default() -> Self {
        Dhcp6Config {
            pools: Vec::new(),
            reservations: Vec::new(),
            dns_servers: Vec::new(),
            domain_search: Vec::new(),
            rapid_commit: false,
            preference: DEFAULT_PREFERENCE,
            max_records: MAX_RECORDS,
            max_offers: MAX_OFFERS,
        }
    }
}

impl Dhcp6Config {
    /// The DHCPv6 server's configuration for the host's `cfg`, or `None`
    /// when no IPv6 `--dhcp-range` has DHCPv6 (modes `ra-only` and
    /// `ra-names` alone tell clients not to ask: the RA's M and O flags are 0).
    ///
    /// - a pool per range whose mode hands out addresses
    ///   ([`crate::ipv6::RaMode::managed`]: stateful and `slaac`), its
    ///   START..=END, prefix length and lease time; an `ra-stateless` range
    ///   has no pool, its clients' INFORMATION-REQUESTs are answered;
    /// - a reservation per `--dhcp-host` with a DUID (`id:`), an IPv6
    ///   address (`[1234::5]`) or a name: matched by DUID, else MAC;
    /// - DNS servers: the host's own address in each such range's prefix
    ///   ([`crate::ipv6::address_in`]; the host answers DNS over UDP there);
    ///   the domain search list: `--domain`;
    /// - Rapid Commit: `--dhcp-rapid-commit` ([`HostConfig::rapid_commit`]).
    ///
    /// The host's own addresses are never in a pool: [`HostConfig::validate`]
    /// refuses a range or reservation holding one.
    pub fn from_host(cfg: &HostConfig) -> Option<Dhcp6Config> {
        let served: Vec<_> = cfg.ranges6.iter().filter(|r| r.mode.other()).collect();
        if served.is_empty() {
            return None;
        }
        let pools = served
            .iter()
            .filter(|r| r.mode.managed())
            .map(|r| Pool6 {
                start: r.start,
                end: r.end,
                prefix_len: r.prefix_len,
                lease_secs: r.lease,
            })
            .collect();
        let mut dns_servers = Vec::new();
        for r in &served {
            let a = crate::ipv6::address_in(r, cfg.mac);
            if !dns_servers.contains(&a) {
                dns_servers.push(a);
            }
        }
        let reservations = cfg.reservations.iter().filter_map(Reservation6::of).collect();
        Some(Dhcp6Config {
            pools,
            reservations,
            dns_servers,
            domain_search: cfg.domain.iter().cloned().collect(),
            rapid_commit: cfg.rapid_commit,
            ..Dhcp6Config::default()
        })
    }
}

/// The DUID-LL (RFC 8415 section 11.4) of an Ethernet interface: type 3,
/// hardware type 1 (Ethernet), then the 6-byte MAC address; 10 bytes. The
/// hub's server DUID is the DUID-LL of its MAC.
pub fn duid_ll(mac: MacAddr) -> Vec<u8> {
    let mut d = vec![0, 3, 0, 1];
    d.extend_from_slice(&mac.0);
    d
}

/// The Ethernet address inside a DUID-LLT (type 1, section 11.2) or DUID-LL
/// (type 3, section 11.4) with hardware type 1 and a 6-byte link-layer
/// address; `None` for any other DUID.
pub fn duid_mac(duid: &[u8]) -> Option<MacAddr> {
    let ll = match duid {
        [0, 1, 0, 1, _, _, _, _, ll @ ..] => ll,
        [0, 3, 0, 1, ll @ ..] => ll,
        _ => return None,
    };
    Some(MacAddr(ll.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duids_of_macs() {
        let mac = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        let ll = duid_ll(mac);
        assert_eq!(ll, [0, 3, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert_eq!(duid_mac(&ll), Some(mac));
        let llt = [0, 1, 0, 1, 0x2c, 0x5e, 0x1f, 0x3a, 0x52, 0x54, 0, 0x12, 0x34, 0x56];
        assert_eq!(duid_mac(&llt), Some(mac));
        assert_eq!(duid_mac(&[0, 3, 0, 6, 1, 2, 3, 4, 5, 6]), None, "not Ethernet");
        assert_eq!(duid_mac(&[0, 3, 0, 1, 1, 2, 3]), None, "short");
        assert_eq!(duid_mac(&[0, 4, 0, 1, 1, 2, 3, 4, 5, 6]), None, "DUID-UUID");
    }
}
