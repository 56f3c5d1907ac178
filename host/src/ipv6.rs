//! The host's IPv6 addresses (RFC 4291: link-local and modified EUI-64
//! interface identifiers, appendix A; solicited-node multicast, section
//! 2.7.1) and the IPv6 form of `--dhcp-range`, in dnsmasq's syntax
//! (dnsmasq(8): `START[,END][,MODE...][,PREFIXLEN][,LEASETIME]`, modes
//! `ra-only`, `slaac`, `ra-stateless`, `ra-names`; none: stateful DHCPv6).
//!
//! The host's addresses: `fe80::/64` plus the modified EUI-64 identifier of
//! its MAC (`02:76:6d:00:03:01` gives `fe80::76:6dff:fe00:301`), and, in the
//! prefix of every IPv6 `--dhcp-range`, the same interface identifier (the
//! prefix's bits, then the identifier's low `128 - PREFIXLEN` bits).

use std::net::{IpAddr, Ipv6Addr};

use vmlan_hub::MacAddr;

use crate::config::{err, ConfigError};
use crate::dhcp::config::{parse_dhcp_range, parse_lease, DhcpRange, LeaseSecs, DEFAULT_LEASE};

/// What a range's router advertisements tell hosts (dnsmasq's range modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaMode {
    /// No keyword: addresses from DHCPv6 only. Prefix A=0; RA flags M=1, O=1.
    Stateful,
    /// `slaac`: SLAAC addresses and DHCPv6 ones from the range. Prefix A=1; M=1, O=1.
    Slaac,
    /// `ra-only`: SLAAC only, no DHCPv6. Prefix A=1; M=0, O=0.
    RaOnly,
    /// `ra-stateless`: SLAAC, and stateless DHCPv6 for other settings. Prefix A=1; M=0, O=1.
    RaStateless,
    /// `ra-names`: SLAAC as `ra-only`. dnsmasq then guesses the SLAAC
    /// addresses of DHCPv4 clients for DNS; vmlan names the addresses it
    /// sees stations use in every IPv6 range, whatever its mode
    /// (slaac_names.rs), so this adds nothing to `ra-only`. Prefix A=1; M=0, O=0.
    RaNames,
}

impl RaMode {
    /// Whether hosts configure addresses from the prefix themselves (the prefix's A flag).
    pub fn autonomous(self) -> bool {
        self != RaMode::Stateful
    }

    /// Whether the range hands out addresses over DHCPv6 (the RA's M flag).
    pub fn managed(self) -> bool {
        matches!(self, RaMode::Stateful | RaMode::Slaac)
    }

    /// Whether other settings come from DHCPv6 (the RA's O flag).
    pub fn other(self) -> bool {
        self.managed() || self == RaMode::RaStateless
    }
}

/// An IPv6 `--dhcp-range`: `START[,END][,MODE][,PREFIXLEN][,LEASETIME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpRange6 {
    /// First address (for the `ra-*` modes, any address of the prefix, e.g. `1234::`).
    pub start: Ipv6Addr,
    /// Last address (inclusive); `start` when not given.
    pub end: Ipv6Addr,
    /// The prefix length, 1 to 128 (default 64; SLAAC needs 64).
    pub prefix_len: u8,
    /// Lease time in seconds: the valid and preferred lifetimes of the RA's
    /// prefix ([`crate::dhcp::config::INFINITE`]: infinite); default one hour.
    pub lease: LeaseSecs,
    /// The mode.
    pub mode: RaMode,
}

impl DhcpRange6 {
    /// The range's prefix: `start` with the bits past `prefix_len` cleared.
    pub fn prefix(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.start) & mask(self.prefix_len))
    }
}

/// The network mask of a prefix length (0 to 128) as a number.
fn mask(len: u8) -> u128 {
    match len {
        0 => 0,
        l => u128::MAX << (128 - u32::from(l.min(128))),
    }
}

/// The modified EUI-64 interface identifier of `mac` (RFC 4291 appendix A):
/// the MAC with `ff:fe` in the middle and the universal/local bit inverted.
pub fn interface_id(mac: MacAddr) -> u64 {
    let m = mac.0;
    u64::from_be_bytes([m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]])
}

/// The link-local address of `mac`: `fe80::/64` plus [`interface_id`].
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    Ipv6Addr::from((0xfe80u128 << 112) | u128::from(interface_id(mac)))
}

/// The address with `mac`'s [`interface_id`] in `range`'s prefix: the prefix's
/// bits, then the identifier's bits past the prefix length.
pub fn address_in(range: &DhcpRange6, mac: MacAddr) -> Ipv6Addr {
    let m = mask(range.prefix_len);
    Ipv6Addr::from((u128::from(range.start) & m) | (u128::from(interface_id(mac)) & !m))
}

/// The solicited-node multicast address of `ip` (RFC 4291 section 2.7.1):
/// `ff02::1:ff00:0/104` plus the low 24 bits of `ip`.
pub fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    Ipv6Addr::from((0xff02u128 << 112) | (0x1_ff00_0000u128) | (u128::from(ip) & 0xff_ffff))
}

/// The Ethernet multicast MAC of an IPv6 multicast address (RFC 2464
/// section 7): `33:33` and the address's last four bytes.
pub fn multicast_mac(ip: Ipv6Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// All-nodes multicast, `ff02::1` (RFC 4291 section 2.7.1).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// All-routers multicast, `ff02::2` (RFC 4291 section 2.7.1).
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);

/// One `--dhcp-range` value, IPv4 or IPv6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyRange {
    /// `START,END[,NETMASK][,LEASETIME]` ([`parse_dhcp_range`]).
    V4(DhcpRange),
    /// `START[,END][,MODE][,PREFIXLEN][,LEASETIME]` ([`parse_dhcp_range6`]).
    V6(DhcpRange6),
}

/// Parses a `--dhcp-range` value of either family: IPv6 when its first field
/// is an IPv6 address, else IPv4.
///
/// # Errors
/// Those of [`parse_dhcp_range`] or [`parse_dhcp_range6`].
pub fn parse_dhcp_range_any(v: &str) -> Result<AnyRange, ConfigError> {
    let first = v.split(',').next().unwrap_or_default().trim();
    if first.parse::<Ipv6Addr>().is_ok() {
        parse_dhcp_range6(v).map(AnyRange::V6)
    } else {
        parse_dhcp_range(v).map(AnyRange::V4)
    }
}

/// Parses an IPv6 `--dhcp-range` as dnsmasq: `START[,END][,MODE][,PREFIXLEN][,LEASETIME]`,
/// e.g. `1234::2,1234::500,slaac,64,12h`, `1234::,ra-only`, `1234::2,1234::500`
/// (stateful). `ra-names` with another mode keeps the other mode's flags.
/// (`constructor:`, `tag:`/`set:` and `static` are not supported.)
///
/// # Errors
/// An address that does not parse, an end before the start or in another
/// prefix, an unknown keyword, two modes, a prefix length outside 1 to 128,
/// SLAAC on a prefix other than a /64, a link-local or multicast prefix, or
/// a bad lease time. Each names `--dhcp-range` and the bad part.
pub fn parse_dhcp_range6(v: &str) -> Result<DhcpRange6, ConfigError> {
    const F: &str = "--dhcp-range";
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    let start: Ipv6Addr = parts[0]
        .parse()
        .map_err(|_| err(F, v, format!("{:?} is not an IPv6 address", parts[0])))?;
    let mut rest = &parts[1..];
    let mut end = start;
    if let Some(p) = rest.first() {
        if let Ok(IpAddr::V6(e)) = p.parse::<IpAddr>() {
            end = e;
            rest = &rest[1..];
        }
    }
    let (mut mode, mut names, mut prefix_len, mut lease) = (None, false, None, None);
    for p in rest {
        let set_mode = |m: RaMode, mode: &mut Option<RaMode>| match mode.replace(m) {
            Some(old) if old != m => Err(err(F, v, format!("{p:?}: more than one mode"))),
            _ => Ok(()),
        };
        match p.to_ascii_lowercase().as_str() {
            "ra-only" => set_mode(RaMode::RaOnly, &mut mode)?,
            "slaac" => set_mode(RaMode::Slaac, &mut mode)?,
            "ra-stateless" => set_mode(RaMode::RaStateless, &mut mode)?,
            "ra-names" => names = true,
            s if s.contains(':') || s.contains('.') => {
                return Err(err(F, v, format!("{p:?} is not an IPv6 end address of the range")));
            }
            s if prefix_len.is_none() && lease.is_none() && !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                let n: u8 = s
                    .parse()
                    .ok()
                    .filter(|n| (1..=128).contains(n))
                    .ok_or_else(|| err(F, v, format!("{p:?} is not a prefix length from 1 to 128")))?;
                prefix_len = Some(n);
            }
            _ if lease.is_none() => {
                lease = Some(parse_lease(p).ok_or_else(|| {
                    err(
                        F,
                        v,
                        format!("{p:?} is neither a mode (ra-only, slaac, ra-stateless, ra-names), a prefix length nor a lease time"),
                    )
                })?);
            }
            _ => return Err(err(F, v, format!("{p:?}: unexpected after the lease time"))),
        }
    }
    let mode = mode.unwrap_or(if names { RaMode::RaNames } else { RaMode::Stateful });
    let r = DhcpRange6 {
        start,
        end,
        prefix_len: prefix_len.unwrap_or(64),
        lease: lease.unwrap_or(DEFAULT_LEASE),
        mode,
    };
    if u128::from(r.end) < u128::from(r.start) {
        return Err(err(F, v, "the range is reversed: the start is after the end"));
    }
    if u128::from(r.end) & mask(r.prefix_len) != u128::from(r.prefix()) {
        return Err(err(
            F,
            v,
            format!(
                "{} is not in the prefix {}/{} of the start",
                r.end,
                r.prefix(),
                r.prefix_len
            ),
        ));
    }
    if r.mode.autonomous() && r.prefix_len != 64 {
        return Err(err(
            F,
            v,
            format!(
                "SLAAC needs a /64 prefix (RFC 4862 section 5.5.3), not /{}",
                r.prefix_len
            ),
        ));
    }
    if start.is_multicast() || start.is_unspecified() || start.is_loopback() || (start.segments()[0] & 0xffc0) == 0xfe80
    {
        return Err(err(
            F,
            v,
            format!("{start} is not in a unicast prefix for the segment (link-local, multicast, :: and ::1 are not)"),
        ));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::config::INFINITE;

    #[test]
    fn addresses_from_the_mac() {
        let mac: MacAddr = "02:76:6d:00:03:01".parse().unwrap();
        assert_eq!(interface_id(mac), 0x0076_6dff_fe00_0301);
        assert_eq!(link_local(mac), "fe80::76:6dff:fe00:301".parse::<Ipv6Addr>().unwrap());
        let mac: MacAddr = "52:54:00:12:34:56".parse().unwrap();
        assert_eq!(link_local(mac), "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap());
        let r = parse_dhcp_range6("1234::,ra-only").unwrap();
        assert_eq!(
            address_in(&r, mac),
            "1234::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            solicited_node("fe80::5054:ff:fe12:3456".parse().unwrap()),
            "ff02::1:ff12:3456".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(multicast_mac(ALL_NODES).to_string(), "33:33:00:00:00:01");
    }

    #[test]
    fn ranges_as_dnsmasq() {
        let r = parse_dhcp_range6("1234::2,1234::500,slaac,64,12h").unwrap();
        assert_eq!(
            (r.start, r.end, r.prefix_len, r.lease, r.mode),
            (
                "1234::2".parse().unwrap(),
                "1234::500".parse().unwrap(),
                64,
                43200,
                RaMode::Slaac
            )
        );
        let r = parse_dhcp_range6("1234::,ra-only").unwrap();
        assert_eq!(
            (r.end, r.prefix_len, r.lease, r.mode),
            (r.start, 64, 3600, RaMode::RaOnly)
        );
        assert_eq!(
            parse_dhcp_range6("1234::,ra-stateless").unwrap().mode,
            RaMode::RaStateless
        );
        assert_eq!(parse_dhcp_range6("1234::,ra-names").unwrap().mode, RaMode::RaNames);
        assert_eq!(
            parse_dhcp_range6("1234::,ra-stateless,ra-names").unwrap().mode,
            RaMode::RaStateless
        );
        let r = parse_dhcp_range6("fd00::100,fd00::1ff,112,infinite").unwrap();
        assert_eq!((r.prefix_len, r.lease, r.mode), (112, INFINITE, RaMode::Stateful));
        assert_eq!(r.prefix(), "fd00::".parse::<Ipv6Addr>().unwrap());
        let r = parse_dhcp_range6("fd00::100,fd00::1ff").unwrap();
        assert_eq!((r.prefix_len, r.mode), (64, RaMode::Stateful));
        assert!(matches!(
            parse_dhcp_range_any("10.0.3.100,10.0.3.200"),
            Ok(AnyRange::V4(_))
        ));
        assert!(matches!(parse_dhcp_range_any("1234::,slaac"), Ok(AnyRange::V6(_))));
        assert!((RaMode::Stateful.managed(), RaMode::Stateful.autonomous()) == (true, false));
        assert!(RaMode::RaStateless.other() && !RaMode::RaStateless.managed());
        assert!(!RaMode::RaOnly.other() && !RaMode::RaNames.managed());
    }

    #[test]
    fn range_errors_name_the_flag_and_the_part() {
        for (v, part) in [
            ("1234::5,1234::2", "reversed"),
            ("1234::2,1235::5", "1235::5"),
            ("1234::,ra-everything", "\"ra-everything\""),
            ("1234::,ra-only,slaac", "more than one mode"),
            ("1234::,ra-only,56", "/64"),
            ("1234::,0", "\"0\""),
            ("1234::,129", "\"129\""),
            ("1234::,ra-only,64,12q", "\"12q\""),
            ("1234::,10.0.3.1", "\"10.0.3.1\""),
            ("fe80::,ra-only", "link-local"),
            ("ff02::1,ra-only", "multicast"),
            ("1234::,64,1h,2h", "\"2h\""),
        ] {
            let e = parse_dhcp_range6(v).unwrap_err();
            assert_eq!(e.flag, "--dhcp-range");
            assert!(e.to_string().contains(part), "{v}: {e}");
        }
        assert!(parse_dhcp_range_any("1234::x,ra-only")
            .unwrap_err()
            .to_string()
            .contains("--dhcp-range"));
    }
}
