//! Router advertisements (RFC 4861 sections 4.2, 6.2; DNS options: RFC 8106),
//! as dnsmasq's `--enable-ra` sends them: with at least one IPv6
//! `--dhcp-range`, the host answers Router Solicitations and sends
//! unsolicited advertisements to all-nodes (`ff02::1`,
//! `33:33:00:00:00:01`) from its link-local address.
//!
//! Every advertisement carries: the M flag when a range hands out DHCPv6
//! addresses (the default stateful mode and `slaac`), the O flag with M or
//! for `ra-stateless`; one Prefix Information option per range (L=1; A=1 but
//! for the stateful mode; valid and preferred lifetimes from the range's
//! lease time); RDNSS with the host's link-local address and DNSSL with
//! `--domain` (RFC 8106 sections 5.1, 5.2; lifetime 1200 s, twice the
//! longest interval); the MTU (1500, or `--dhcp-option mtu`); and the host's
//! MAC as source link-layer address. The router lifetime follows IPv4's
//! router option: 1800 s when the hub hands itself out as the router (the
//! default), 0 when `--dhcp-option 3` leaves the option out or names
//! another router, so a segment with no way out never takes hosts' default
//! route ([`router_lifetime`]).
//!
//! Schedule ([`RaTimer`], RFC 4861 section 6.2.4): the first unsolicited
//! advertisement when the host starts, two more 16 s apart, then every 200
//! to 600 s (uniformly, from a seeded generator, so runs are reproducible).
//! A solicitation with a unicast source and a source link-layer option is
//! answered at once, unicast; any other is answered to all-nodes, at once
//! unless a multicast advertisement went out in the last 3 s, in which case
//! the next unsolicited one is brought forward to 3 s after it (section
//! 6.2.6's rate limit; its random delay of up to 0.5 s is not applied).

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use vmlan_hub::MacAddr;

use crate::config::HostConfig;
use crate::dhcp::config::INFINITE;
use crate::icmpv6::{frame, Icmpv6In};
use crate::ipv6::{multicast_mac, DhcpRange6, ALL_NODES, ALL_ROUTERS};
use crate::ndp::{
    ll_option, option_mac, options, NDP_HOP_LIMIT, OPT_SOURCE_LL, ROUTER_ADVERTISEMENT, ROUTER_SOLICITATION,
};

/// The router lifetime, in seconds, of a hub that is its segment's router
/// (3 x MaxRtrAdvInterval, RFC 4861 section 6.2.1).
pub const ROUTER_LIFETIME: u16 = 1800;
/// Shortest interval between unsolicited advertisements (MinRtrAdvInterval).
pub const MIN_INTERVAL: Duration = Duration::from_secs(200);
/// Longest interval between unsolicited advertisements (MaxRtrAdvInterval).
pub const MAX_INTERVAL: Duration = Duration::from_secs(600);
/// How many of the first advertisements are sent at most 16 s apart (RFC 4861 section 10).
pub const MAX_INITIAL_ADVERTS: u32 = 3;
/// The longest interval between the first advertisements (RFC 4861 section 10).
pub const MAX_INITIAL_INTERVAL: Duration = Duration::from_secs(16);
/// Shortest interval between multicast advertisements (MIN_DELAY_BETWEEN_RAS).
pub const MIN_DELAY_BETWEEN_RAS: Duration = Duration::from_secs(3);
/// Lifetime of the RDNSS and DNSSL options, seconds: 2 x MaxRtrAdvInterval (RFC 8106 section 5.1).
pub const DNS_LIFETIME: u32 = 1200;
/// The MTU option's default: Ethernet's.
pub const DEFAULT_MTU: u32 = 1500;
/// The Cur Hop Limit advertised (Linux's default).
pub const CUR_HOP_LIMIT: u8 = 64;

/// The router lifetime for `cfg` (seconds): [`ROUTER_LIFETIME`] when the
/// IPv4 router option is the hub's own address (as it is unless a
/// `--dhcp-option 3` says otherwise), 0 when it is left out or names another
/// router: the hub is no way out of the segment then.
pub fn router_lifetime(cfg: &HostConfig) -> u16 {
    match cfg.options.iter().rev().find(|o| o.code == 3) {
        None => ROUTER_LIFETIME,
        Some(o) if o.data.get(..4) == Some(&cfg.addr().octets()[..]) => ROUTER_LIFETIME,
        Some(_) => 0,
    }
}

/// What the advertisements say, from the host's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaConfig {
    /// The prefixes, one per IPv6 range.
    pub ranges: Vec<DhcpRange6>,
    /// Router lifetime, seconds ([`router_lifetime`]).
    pub router_lifetime: u16,
    /// The MTU option's value, bytes.
    pub mtu: u32,
    /// The host's MAC (source link-layer option, frames' source).
    pub mac: MacAddr,
    /// The host's link-local address: the advertisements' source and the RDNSS option's server.
    pub link_local: Ipv6Addr,
    /// The DNSSL option's domain (`--domain`); none: no DNSSL.
    pub domain: Option<String>,
}

impl RaConfig {
    /// The settings for `cfg` with the host's `link_local` address; `None`
    /// without `--enable-ra` or without an IPv6 range (nothing to advertise).
    pub fn new(cfg: &HostConfig, link_local: Ipv6Addr) -> Option<Self> {
        if !cfg.enable_ra || cfg.ranges6.is_empty() {
            return None;
        }
        let mtu = cfg
            .options
            .iter()
            .rev()
            .find(|o| o.code == 26)
            .and_then(|o| Some(u32::from(u16::from_be_bytes(o.data.get(..2)?.try_into().ok()?))))
            .unwrap_or(DEFAULT_MTU);
        Some(RaConfig {
            ranges: cfg.ranges6.clone(),
            router_lifetime: router_lifetime(cfg),
            mtu,
            mac: cfg.mac,
            link_local,
            domain: cfg.domain.clone(),
        })
    }

    /// The RA's M flag: a range hands out addresses over DHCPv6.
    pub fn managed(&self) -> bool {
        self.ranges.iter().any(|r| r.mode.managed())
    }

    /// The RA's O flag: other settings over DHCPv6.
    pub fn other(&self) -> bool {
        self.ranges.iter().any(|r| r.mode.other())
    }

    /// The advertisement frame to `dst` (`dst_mac`): see the module documentation.
    pub fn advertisement(&self, dst_mac: MacAddr, dst: Ipv6Addr) -> Option<Vec<u8>> {
        let flags = if self.managed() { 0x80 } else { 0 } | if self.other() { 0x40 } else { 0 };
        let lt = self.router_lifetime.to_be_bytes();
        let mut body = vec![0u8; 8]; // reachable time, retrans timer: unspecified
        body.extend_from_slice(&ll_option(OPT_SOURCE_LL, self.mac));
        body.extend_from_slice(&[5, 1, 0, 0]);
        body.extend_from_slice(&self.mtu.to_be_bytes());
        for r in &self.ranges {
            // Prefix Information (RFC 4861 section 4.6.2).
            let life = if r.lease == INFINITE { u32::MAX } else { r.lease };
            let pflags = 0x80 | if r.mode.autonomous() { 0x40 } else { 0 };
            body.extend_from_slice(&[3, 4, r.prefix_len, pflags]);
            body.extend_from_slice(&life.to_be_bytes());
            body.extend_from_slice(&life.to_be_bytes());
            body.extend_from_slice(&[0; 4]);
            body.extend_from_slice(&r.prefix().octets());
        }
        // RDNSS (RFC 8106 section 5.1).
        body.extend_from_slice(&[25, 3, 0, 0]);
        body.extend_from_slice(&DNS_LIFETIME.to_be_bytes());
        body.extend_from_slice(&self.link_local.octets());
        if let Some(d) = &self.domain {
            // DNSSL (RFC 8106 section 5.2): the name uncompressed, padded with zeros to 8 bytes.
            let mut names = Vec::new();
            for label in d.split('.') {
                names.push(label.len() as u8);
                names.extend_from_slice(label.as_bytes());
            }
            names.push(0);
            names.resize((8 + names.len()).div_ceil(8) * 8 - 8, 0);
            body.push(31);
            body.push(((8 + names.len()) / 8) as u8);
            body.extend_from_slice(&[0, 0]);
            body.extend_from_slice(&DNS_LIFETIME.to_be_bytes());
            body.extend_from_slice(&names);
        }
        frame(
            (self.mac, dst_mac),
            (self.link_local, dst, NDP_HOP_LIMIT),
            (ROUTER_ADVERTISEMENT, 0, [CUR_HOP_LIMIT, flags, lt[0], lt[1]]),
            &body,
        )
    }
}

/// Where the answer to a Router Solicitation goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Unicast to this MAC and address (the solicitor gave its link-layer address).
    Unicast(MacAddr, Ipv6Addr),
    /// To all-nodes.
    Multicast,
}

/// Where to answer `m` if it is a Router Solicitation to all-routers or one
/// of `ours`; `Ok(None)` if it is neither.
///
/// # Errors
/// Why an invalid solicitation is dropped (RFC 4861 section 6.1.1): hop
/// limit not 255, code not 0, an option of length 0 or overrunning, a
/// source link-layer option from `::` or one not 6 bytes, a multicast source.
pub fn solicitation(m: &Icmpv6In<'_>, ours: &[Ipv6Addr]) -> Result<Option<Answer>, &'static str> {
    if m.icmp.type_u8() != ROUTER_SOLICITATION || (m.dst != ALL_ROUTERS && !ours.contains(&m.dst)) {
        return Ok(None);
    }
    if m.icmp.code_u8() != 0 || m.hop_limit != NDP_HOP_LIMIT {
        return Err("router solicitation with a code or hop limit other than 0 and 255");
    }
    let opts = options(m.icmp.payload()).ok_or("router solicitation with a bad option length")?;
    let sll = opts.iter().find(|(t, _)| *t == OPT_SOURCE_LL).map(|(_, o)| *o);
    if m.src.is_multicast() {
        return Err("router solicitation from a multicast address");
    }
    match (m.src.is_unspecified(), sll) {
        (true, Some(_)) => Err("router solicitation from :: with a source link-layer option"),
        (false, Some(o)) => {
            let mac = option_mac(o).ok_or("a source link-layer option that is not 6 bytes")?;
            Ok(Some(Answer::Unicast(mac, m.src)))
        }
        _ => Ok(Some(Answer::Multicast)),
    }
}

/// The schedule of unsolicited advertisements (see the module documentation).
#[derive(Debug, Clone)]
pub struct RaTimer {
    next: Instant,
    sent: u32,
    rng: u64,
    last_multicast: Option<Instant>,
}

impl RaTimer {
    /// A schedule whose first advertisement is due at `now`; `seed` picks the
    /// later intervals (the same seed, the same schedule).
    pub fn new(now: Instant, seed: u64) -> Self {
        RaTimer {
            next: now,
            sent: 0,
            rng: seed,
            last_multicast: None,
        }
    }

    /// When the next unsolicited advertisement is due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// Whether an advertisement is due at `now`; if so, it counts as sent and
    /// the next one is scheduled.
    pub fn due(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.sent += 1;
        self.last_multicast = Some(now);
        let span = (MAX_INTERVAL - MIN_INTERVAL).as_millis() as u64;
        let mut interval = MIN_INTERVAL + Duration::from_millis(self.random() % (span + 1));
        if self.sent < MAX_INITIAL_ADVERTS {
            interval = interval.min(MAX_INITIAL_INTERVAL);
        }
        self.next = now + interval;
        true
    }

    /// Whether a multicast answer to a solicitation may go out at `now`
    /// (none in the last 3 s); if so it counts as sent, else the next
    /// unsolicited advertisement is brought forward to 3 s after the last.
    pub fn multicast_answer(&mut self, now: Instant) -> bool {
        match self.last_multicast {
            Some(t) if now < t + MIN_DELAY_BETWEEN_RAS => {
                self.next = self.next.min(t + MIN_DELAY_BETWEEN_RAS);
                false
            }
            _ => {
                self.last_multicast = Some(now);
                true
            }
        }
    }

    /// splitmix64.
    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The all-nodes destination of a multicast advertisement: MAC and address.
pub fn all_nodes() -> (MacAddr, Ipv6Addr) {
    (multicast_mac(ALL_NODES), ALL_NODES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{default_mac, parse_addr, parse_dhcp_option, parse_dhcp_range6};
    use crate::icmpv6::tests::{parse, OUR_MAC, PEER_MAC};
    use crate::ipv6::link_local;

    fn cfg(ranges: &[&str], options: &[&str]) -> HostConfig {
        HostConfig {
            mac: default_mac("10.0.3.1".parse().unwrap()),
            net: parse_addr("10.0.3.1/24").unwrap(),
            ranges: vec![],
            ranges6: ranges.iter().map(|r| parse_dhcp_range6(r).unwrap()).collect(),
            enable_ra: true,
            reservations: vec![],
            options: options.iter().map(|o| parse_dhcp_option(o).unwrap()).collect(),
            host_records: vec![],
            domain: Some("cluster".into()),
            leasefile: None,
            boot: None,
            authoritative: false,
            rapid_commit: false,
            dns: Default::default(),
        }
    }

    fn ra(c: &HostConfig) -> RaConfig {
        RaConfig::new(c, link_local(c.mac)).unwrap()
    }

    /// The parsed advertisement: (flags byte, router lifetime, options by type).
    fn read(f: &[u8]) -> (u8, u16, Vec<(u8, Vec<u8>)>) {
        let m = parse(f).expect("checksum");
        assert_eq!((m.icmp.type_u8(), m.icmp.code_u8(), m.hop_limit), (134, 0, 255));
        assert_eq!(m.src, link_local(OUR_MAC));
        let b = m.icmp.bytes5to8();
        let opts = options(&m.icmp.payload()[8..]).unwrap();
        (
            b[1],
            u16::from_be_bytes([b[2], b[3]]),
            opts.into_iter().map(|(t, o)| (t, o.to_vec())).collect(),
        )
    }

    fn rs(src: &str, sll: bool, hop: u8) -> Vec<u8> {
        let body = if sll {
            ll_option(OPT_SOURCE_LL, PEER_MAC).to_vec()
        } else {
            vec![]
        };
        frame(
            (PEER_MAC, multicast_mac(ALL_ROUTERS)),
            (src.parse().unwrap(), ALL_ROUTERS, hop),
            (ROUTER_SOLICITATION, 0, [0; 4]),
            &body,
        )
        .unwrap()
    }

    #[test]
    fn every_mode_has_its_flags_and_prefix() {
        // (range, M|O flags, prefix flags)
        for (range, flags, pflags) in [
            ("1234::2,1234::500", 0xc0, 0x80),
            ("1234::2,1234::500,slaac,64,12h", 0xc0, 0xc0),
            ("1234::,ra-only", 0x00, 0xc0),
            ("1234::,ra-stateless", 0x40, 0xc0),
            ("1234::,ra-names", 0x00, 0xc0),
        ] {
            let c = cfg(&[range], &[]);
            let (mac, dst) = all_nodes();
            let f = ra(&c).advertisement(mac, dst).unwrap();
            assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
            let (got, lifetime, opts) = read(&f);
            assert_eq!((got, lifetime), (flags, 1800), "{range}");
            let types: Vec<u8> = opts.iter().map(|(t, _)| *t).collect();
            assert_eq!(types, [1, 5, 3, 25, 31], "{range}");
            assert_eq!(opts[0].1[2..], OUR_MAC.0);
            assert_eq!(opts[1].1[4..], 1500u32.to_be_bytes());
            let p = &opts[2].1;
            assert_eq!((p[2], p[3]), (64, pflags), "{range}");
            let lease: u32 = if range.ends_with("12h") { 43200 } else { 3600 };
            assert_eq!(p[4..8], lease.to_be_bytes());
            assert_eq!(p[8..12], lease.to_be_bytes());
            assert_eq!(p[16..32], "1234::".parse::<Ipv6Addr>().unwrap().octets());
            assert_eq!(opts[3].1[8..], link_local(OUR_MAC).octets());
            assert_eq!(opts[3].1[4..8], 1200u32.to_be_bytes());
            assert_eq!(opts[4].1, b"\x1f\x03\0\0\0\0\x04\xb0\x07cluster\0\0\0\0\0\0\0\0");
        }
        // Two ranges: two prefixes; the flags add up.
        let c = cfg(
            &["1234::,ra-stateless", "fd00::2,fd00::ff,slaac,infinite"],
            &["option:mtu,1400"],
        );
        let (flags, _, opts) = read(&ra(&c).advertisement(PEER_MAC, "fe80::1".parse().unwrap()).unwrap());
        assert_eq!(flags, 0xc0);
        let prefixes: Vec<&Vec<u8>> = opts.iter().filter(|(t, _)| *t == 3).map(|(_, o)| o).collect();
        assert_eq!(prefixes.len(), 2);
        assert_eq!(prefixes[1][4..8], [0xff; 4]);
        assert_eq!(opts[1].1[4..], 1400u32.to_be_bytes());
        // No domain: no DNSSL.
        let mut c = cfg(&["1234::,ra-only"], &[]);
        c.domain = None;
        let (_, _, opts) = read(&ra(&c).advertisement(PEER_MAC, "fe80::1".parse().unwrap()).unwrap());
        assert!(opts.iter().all(|(t, _)| *t != 31));
        // Nothing without --enable-ra or an IPv6 range.
        c.enable_ra = false;
        assert!(RaConfig::new(&c, link_local(c.mac)).is_none());
        assert!(RaConfig::new(&cfg(&[], &[]), link_local(c.mac)).is_none());
    }

    #[test]
    fn router_lifetime_follows_the_ipv4_router_option() {
        assert_eq!(router_lifetime(&cfg(&["1234::,ra-only"], &[])), 1800);
        assert_eq!(
            router_lifetime(&cfg(&["1234::,ra-only"], &["option:router,10.0.3.1"])),
            1800
        );
        assert_eq!(router_lifetime(&cfg(&["1234::,ra-only"], &["3"])), 0);
        assert_eq!(
            router_lifetime(&cfg(&["1234::,ra-only"], &["option:router,10.0.3.254"])),
            0
        );
        let c = cfg(&["1234::,ra-only"], &["3"]);
        let (_, lifetime, _) = read(&ra(&c).advertisement(PEER_MAC, "fe80::1".parse().unwrap()).unwrap());
        assert_eq!(lifetime, 0);
    }

    #[test]
    fn solicitations_are_answered_where_rfc_4861_says() {
        let ours = [link_local(OUR_MAC)];
        let ask = |f: &[u8]| solicitation(&parse(f).unwrap(), &ours);
        assert_eq!(
            ask(&rs("fe80::5054:ff:fe12:3456", true, 255)),
            Ok(Some(Answer::Unicast(
                PEER_MAC,
                "fe80::5054:ff:fe12:3456".parse().unwrap()
            )))
        );
        assert_eq!(
            ask(&rs("fe80::5054:ff:fe12:3456", false, 255)),
            Ok(Some(Answer::Multicast))
        );
        assert_eq!(ask(&rs("::", false, 255)), Ok(Some(Answer::Multicast)));
        assert!(ask(&rs("::", true, 255)).is_err());
        assert!(ask(&rs("fe80::5054:ff:fe12:3456", true, 64)).is_err());
    }

    #[test]
    fn the_schedule_starts_fast_then_slows_down() {
        let t0 = Instant::now();
        let mut t = RaTimer::new(t0, 42);
        assert_eq!(t.next(), t0);
        assert!(!t.due(t0 - Duration::from_secs(1)));
        let mut at = vec![];
        for _ in 0..8 {
            let now = t.next();
            assert!(t.due(now));
            assert!(!t.due(now));
            at.push(now.duration_since(t0));
        }
        assert_eq!(
            at[..3],
            [Duration::ZERO, Duration::from_secs(16), Duration::from_secs(32)]
        );
        for w in at[2..].windows(2) {
            let gap = w[1] - w[0];
            assert!((MIN_INTERVAL..=MAX_INTERVAL).contains(&gap), "{gap:?}");
        }
        // Reproducible from the seed, different for another.
        let mut again = RaTimer::new(t0, 42);
        let mut other = RaTimer::new(t0, 43);
        let (mut a, mut b) = (vec![], vec![]);
        for _ in 0..8 {
            let (x, y) = (again.next(), other.next());
            again.due(x);
            other.due(y);
            a.push(x.duration_since(t0));
            b.push(y.duration_since(t0));
        }
        assert_eq!(a, at);
        assert_ne!(a, b);
        // A multicast answer within 3 s of an advertisement waits for the timer, brought forward.
        let mut t = RaTimer::new(t0, 1);
        assert!(t.due(t0));
        assert!(!t.multicast_answer(t0 + Duration::from_secs(1)));
        assert_eq!(t.next(), t0 + Duration::from_secs(3));
        assert!(t.multicast_answer(t0 + Duration::from_secs(4)));
    }
}
