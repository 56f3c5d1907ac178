//! The DHCP flags and their parsers, in dnsmasq's value syntax (dnsmasq(8):
//! `--dhcp-range`, `--dhcp-host`, `--dhcp-option`, `--dhcp-boot`), so a dnsmasq
//! command line moves over unchanged. Every error names the flag and the
//! value it refused ([`ConfigError`]).
//!
//! `--dhcp-option` with no value (`3`, `3,`, `option:router`) means "send no such
//! option, not even the hub's default", as dnsmasq(8) says for the options it has
//! defaults for (netmask, broadcast, router, DNS server, domain name, hostname;
//! dnsmasq rfc2131.c `do_options`). For any other code dnsmasq sends the option
//! with no data, which only option 80 (Rapid Commit, which the hub does not do)
//! is defined to carry; vmlan sends nothing for those either.

use std::net::{Ipv4Addr, Ipv6Addr};

use vmlan_hub::MacAddr;

use crate::config::{check_hostname, err, ConfigError};

/// A lease time in seconds; [`INFINITE`] for a lease that never expires.
pub type LeaseSecs = u32;

/// The lease time dnsmasq writes as `infinite` (and stores as expiry 0 in its lease file).
pub const INFINITE: LeaseSecs = u32::MAX;

/// dnsmasq's default lease time: one hour.
pub const DEFAULT_LEASE: LeaseSecs = 3600;

/// A dynamic address pool: `--dhcp-range=START,END[,NETMASK][,LEASETIME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpRange {
    /// First address of the pool.
    pub start: Ipv4Addr,
    /// Last address of the pool (inclusive).
    pub end: Ipv4Addr,
    /// Lease time in seconds for addresses from this pool.
    pub lease: LeaseSecs,
    /// The subnet's netmask when given (a subnet behind a DHCP relay may differ
    /// from `--addr`'s); `None`: the subnet of `--addr`.
    pub netmask: Option<Ipv4Addr>,
    /// dnsmasq's `static` mode: the subnet serves reservations only, no pool.
    pub static_only: bool,
}

/// `--dhcp-boot=FILE[,SERVERNAME[,SERVERADDR]]`: the PXE boot file, the `file`,
/// `sname` and `siaddr` fields of replies (RFC 2131 section 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpBoot {
    /// Boot file name (at most 127 bytes).
    pub file: String,
    /// TFTP server name (at most 63 bytes).
    pub server_name: Option<String>,
    /// TFTP server address (`siaddr`); default: the hub's address.
    pub server_addr: Option<Ipv4Addr>,
}

/// A reservation: `--dhcp-host=[MAC][,id:DUID][,IP][,[IPv6]][,NAME][,LEASETIME]`.
/// The DHCPv4 server matches it by `mac`; the DHCPv6 server by `duid`, else
/// by `mac` (the frame's source, or the MAC inside a DUID-LL/LLT), as
/// dnsmasq does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The client's hardware address; `None` only with a `duid` (a DHCPv6-only reservation).
    pub mac: Option<MacAddr>,
    /// The client's DHCPv6 DUID (RFC 8415 section 11), from `id:` as hex
    /// bytes separated by colons (`id:00:01:00:01:...`); matches DHCPv6 only.
    pub duid: Option<Vec<u8>>,
    /// The address always given to that MAC, if any.
    pub ip: Option<Ipv4Addr>,
    /// The IPv6 address (written `[1234::5]`) always given over DHCPv6 to
    /// the client's first identity association (IA_NA), if any.
    pub ip6: Option<Ipv6Addr>,
    /// The hostname given to the client (option 12) and published in DNS.
    pub hostname: Option<String>,
    /// Lease time in seconds, overriding the range's.
    pub lease: Option<LeaseSecs>,
}

/// A DHCP option to send: `--dhcp-option=CODE|option:NAME,VALUE[,VALUE...]`,
/// already encoded as the option's payload (RFC 2132 formats), or, with no
/// value, an option not to send at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpOptionSetting {
    /// The option code (RFC 2132 section 3 onwards).
    pub code: u8,
    /// The option payload, network byte order. Empty: replies carry no option
    /// `code`, not even the hub's default for it (dnsmasq's `--dhcp-option=3`).
    pub data: Vec<u8>,
}

/// Options every OFFER and ACK must carry (RFC 2131 section 4.3.1, table 3):
/// lease time (51), message type (53), server identifier (54). They cannot be dropped.
const REQUIRED_OPTIONS: [u8; 3] = [51, 53, 54];

/// Parses a dnsmasq lease time: seconds, or a number with `s`, `m`, `h`, `d`, `w`,
/// or `infinite`. dnsmasq refuses leases under 2 minutes; so do we.
pub(crate) fn parse_lease(s: &str) -> Option<LeaseSecs> {
    if s.eq_ignore_ascii_case("infinite") {
        return Some(INFINITE);
    }
    let (num, mult) = match s.chars().last()? {
        's' | 'S' => (&s[..s.len() - 1], 1),
        'm' | 'M' => (&s[..s.len() - 1], 60),
        'h' | 'H' => (&s[..s.len() - 1], 3600),
        'd' | 'D' => (&s[..s.len() - 1], 86400),
        'w' | 'W' => (&s[..s.len() - 1], 604800),
        _ => (s, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = num.parse::<u64>().ok()?.checked_mul(mult)?;
    u32::try_from(secs.max(120)).ok().filter(|s| *s != INFINITE)
}

/// Parses `--dhcp-range=START,END[,NETMASK[,BROADCAST]][,LEASETIME]` or dnsmasq's
/// reservations-only form `--dhcp-range=ADDR,static[,NETMASK][,LEASETIME]`
/// (`tag:`/`set:` prefixes are not supported). A netmask makes the range a
/// subnet of its own, which may lie behind a DHCP relay.
///
/// # Errors
/// An address that does not parse, a missing end, a netmask that is not one,
/// or a bad lease time.
pub fn parse_dhcp_range(v: &str) -> Result<DhcpRange, ConfigError> {
    const F: &str = "--dhcp-range";
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    if parts.len() < 2 {
        return Err(err(F, v, "expected START,END[,NETMASK][,LEASETIME] or ADDR,static"));
    }
    let ip = |s: &str| {
        s.parse::<Ipv4Addr>()
            .map_err(|_| err(F, v, format!("{s:?} is not an IPv4 address")))
    };
    let start = ip(parts[0])?;
    let static_only = parts[1].eq_ignore_ascii_case("static");
    let end = if static_only { start } else { ip(parts[1])? };
    let mut lease = DEFAULT_LEASE;
    let mut netmask = None;
    for (i, p) in parts.iter().enumerate().skip(2) {
        if let Ok(a) = p.parse::<Ipv4Addr>() {
            if i == 2 {
                if ipnet::ipv4_mask_to_prefix(a).is_err() {
                    return Err(err(F, v, format!("{p:?} is not a netmask")));
                }
                netmask = Some(a);
            }
            continue; // the broadcast address follows from the netmask
        }
        lease = parse_lease(p).ok_or_else(|| {
            err(
                F,
                v,
                format!("{p:?} is not a lease time (e.g. 3600, 45m, 12h, infinite)"),
            )
        })?;
    }
    Ok(DhcpRange {
        start,
        end,
        lease,
        netmask,
        static_only,
    })
}

/// Parses `--dhcp-boot=FILE[,SERVERNAME[,SERVERADDR]]` (dnsmasq's form without tags).
///
/// # Errors
/// No file, a name too long for the BOOTP fields, or an address that does not parse.
pub fn parse_dhcp_boot(v: &str) -> Result<DhcpBoot, ConfigError> {
    const F: &str = "--dhcp-boot";
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    let file = parts[0].to_string();
    if file.is_empty() || file.len() > 127 {
        return Err(err(F, v, "the boot file name must be 1 to 127 bytes"));
    }
    let server_name = parts.get(1).filter(|s| !s.is_empty()).map(|s| s.to_string());
    if server_name.as_ref().is_some_and(|s| s.len() > 63) {
        return Err(err(F, v, "the server name must be at most 63 bytes"));
    }
    let server_addr = match parts.get(2) {
        Some(a) => Some(
            a.parse()
                .map_err(|_| err(F, v, format!("{a:?} is not an IPv4 address")))?,
        ),
        None => None,
    };
    Ok(DhcpBoot {
        file,
        server_name,
        server_addr,
    })
}

/// Parses `--dhcp-host=[MAC][,id:DUID][,IP][,[IPv6]][,NAME][,LEASETIME]`,
/// fields in any order as dnsmasq allows: a MAC, `id:` and a DUID in hex
/// (bytes separated by colons, e.g. `id:00:03:00:01:52:54:00:12:34:56`), an
/// IPv4 address, an IPv6 address in brackets (`[1234::5]`), a lease time,
/// otherwise a hostname. (dnsmasq's `id:` also matches a DHCPv4 client
/// identifier; vmlan's matches DHCPv6 DUIDs only.)
///
/// # Errors
/// Neither a MAC nor a DUID, an IPv4 address with a DUID but no MAC, two of
/// one kind, a bad DUID or IPv6 address, or a hostname that is not a valid
/// DNS label. Each names `--dhcp-host` and the bad part.
pub fn parse_dhcp_host(v: &str) -> Result<Reservation, ConfigError> {
    const F: &str = "--dhcp-host";
    let (mut mac, mut ip, mut hostname, mut lease) = (None, None, None, None);
    let (mut duid, mut ip6) = (None, None);
    for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some(hex) = p.strip_prefix("id:") {
            let bytes = parse_duid(hex).ok_or_else(|| {
                err(
                    F,
                    v,
                    format!("{p:?}: a DUID is 1 to 130 hex bytes separated by colons (id:00:01:...)"),
                )
            })?;
            if duid.replace(bytes).is_some() {
                return Err(err(F, v, "more than one id: (DUID)"));
            }
        } else if let Some(a) = p.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
            let a: Ipv6Addr = a
                .parse()
                .map_err(|_| err(F, v, format!("{p:?} is not an IPv6 address in brackets")))?;
            if a.is_multicast() || a.is_unspecified() || a.is_loopback() || (a.segments()[0] & 0xffc0) == 0xfe80 {
                return Err(err(
                    F,
                    v,
                    format!("{p:?} is not a global or unique-local unicast address"),
                ));
            }
            if ip6.replace(a).is_some() {
                return Err(err(F, v, "more than one IPv6 address"));
            }
        } else if let Ok(m) = p.parse::<MacAddr>() {
            if mac.replace(m).is_some() {
                return Err(err(F, v, "more than one MAC address"));
            }
        } else if let Ok(a) = p.parse::<Ipv4Addr>() {
            if ip.replace(a).is_some() {
                return Err(err(F, v, "more than one IPv4 address"));
            }
        } else if let Some(l) = parse_lease(p) {
            lease = Some(l);
        } else if p.contains(':') {
            return Err(err(F, v, format!("{p:?} is neither a MAC address nor an IPv4 address")));
        } else {
            let name = check_hostname(p).map_err(|r| err(F, v, r))?;
            if hostname.replace(name).is_some() {
                return Err(err(F, v, "more than one hostname"));
            }
        }
    }
    if mac.is_none() && duid.is_none() {
        return Err(err(
            F,
            v,
            "no MAC address or id: (expected MAC[,id:DUID][,IP][,[IPv6]][,NAME][,LEASETIME])",
        ));
    }
    if mac.is_none() && ip.is_some() {
        return Err(err(
            F,
            v,
            "an IPv4 address needs a MAC address (id: matches DHCPv6 clients only)",
        ));
    }
    Ok(Reservation {
        mac,
        duid,
        ip,
        ip6,
        hostname,
        lease,
    })
}

/// A DUID written as hex bytes separated by colons: 1 to 130 bytes (RFC
/// 8415 section 11.1: at most 128 after the 2-byte type).
fn parse_duid(hex: &str) -> Option<Vec<u8>> {
    let bytes: Vec<u8> = hex
        .split(':')
        .map(|b| {
            (1..=2)
                .contains(&b.len())
                .then(|| u8::from_str_radix(b, 16).ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    (1..=130).contains(&bytes.len()).then_some(bytes)
}

/// How a named option's values are encoded (RFC 2132).
#[derive(Clone, Copy)]
enum OptKind {
    Ips,
    Ip,
    Text,
    U16,
    U32,
    Domains,
    Routes,
}

/// dnsmasq's option names (`dnsmasq --help dhcp`) that vmlan knows, with their codes.
const OPTION_NAMES: &[(&str, u8, OptKind)] = &[
    ("netmask", 1, OptKind::Ip),
    ("time-offset", 2, OptKind::U32),
    ("router", 3, OptKind::Ips),
    ("dns-server", 6, OptKind::Ips),
    ("log-server", 7, OptKind::Ips),
    ("lpr-server", 9, OptKind::Ips),
    ("hostname", 12, OptKind::Text),
    ("domain-name", 15, OptKind::Text),
    ("swap-server", 16, OptKind::Ip),
    ("root-path", 17, OptKind::Text),
    ("extension-path", 18, OptKind::Text),
    ("mtu", 26, OptKind::U16),
    ("broadcast", 28, OptKind::Ip),
    ("nis-domain", 40, OptKind::Text),
    ("nis-server", 41, OptKind::Ips),
    ("ntp-server", 42, OptKind::Ips),
    ("netbios-ns", 44, OptKind::Ips),
    ("lease-time", 51, OptKind::U32),
    ("T1", 58, OptKind::U32),
    ("T2", 59, OptKind::U32),
    ("tftp-server", 66, OptKind::Text),
    ("bootfile-name", 67, OptKind::Text),
    ("smtp-server", 69, OptKind::Ips),
    ("domain-search", 119, OptKind::Domains),
    ("classless-static-route", 121, OptKind::Routes),
];

/// Parses `--dhcp-option=CODE,VALUE...` or `--dhcp-option=option:NAME,VALUE...`
/// with dnsmasq's names (`option:router`, `option:dns-server`, `option:domain-name`,
/// `option:mtu`, `option:ntp-server`, `option:domain-search`, ...). A numbered
/// option not in the table is sent as IPv4 addresses if every value is one, else as text.
///
/// No value (`3`, `3,`, `option:router`) gives an empty [`DhcpOptionSetting::data`]:
/// replies then carry no such option, not even the hub's default (see the module
/// documentation).
///
/// # Errors
/// An unknown name, a code over 254, a value that does not fit the option, or no
/// value for an option every reply must carry (51, 53, 54).
pub fn parse_dhcp_option(v: &str) -> Result<DhcpOptionSetting, ConfigError> {
    const F: &str = "--dhcp-option";
    let mut parts = v.split(',').map(str::trim);
    let key = parts.next().unwrap_or_default();
    let values: Vec<&str> = parts.collect();
    let (code, kind) = if let Some(name) = key.strip_prefix("option:") {
        let (_, code, kind) = OPTION_NAMES
            .iter()
            .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
            .ok_or_else(|| err(F, v, format!("unknown option name {name:?}; use its number instead")))?;
        (*code, *kind)
    } else {
        let code: u8 = key
            .parse()
            .ok()
            .filter(|c| (1..=254).contains(c))
            .ok_or_else(|| err(F, v, format!("{key:?} is neither option:NAME nor a code from 1 to 254")))?;
        let kind = OPTION_NAMES.iter().find(|(_, c, _)| *c == code).map(|(_, _, k)| *k);
        let kind = kind.unwrap_or(
            if !values.is_empty() && values.iter().all(|s| s.parse::<Ipv4Addr>().is_ok()) {
                OptKind::Ips
            } else {
                OptKind::Text
            },
        );
        (code, kind)
    };
    if values.iter().all(|s| s.is_empty()) {
        if REQUIRED_OPTIONS.contains(&code) {
            return Err(err(
                F,
                v,
                format!("option {code} must be in every reply (RFC 2131 section 4.3.1); it cannot be left out"),
            ));
        }
        return Ok(DhcpOptionSetting { code, data: vec![] });
    }
    let bad = |what: &str| err(F, v, format!("option {code} takes {what}"));
    let mut data = Vec::new();
    match kind {
        OptKind::Ips | OptKind::Ip => {
            if matches!(kind, OptKind::Ip) && values.len() != 1 {
                return Err(bad("one IPv4 address"));
            }
            for s in &values {
                let ip: Ipv4Addr = s.parse().map_err(|_| bad("IPv4 addresses"))?;
                data.extend_from_slice(&ip.octets());
            }
        }
        OptKind::Text => data.extend_from_slice(values.join(",").as_bytes()),
        OptKind::U16 => {
            let n: u16 = values[0].parse().map_err(|_| bad("a number from 0 to 65535"))?;
            data.extend_from_slice(&n.to_be_bytes());
        }
        OptKind::U32 => {
            let n: u32 = values[0].parse().map_err(|_| bad("a number of seconds"))?;
            data.extend_from_slice(&n.to_be_bytes());
        }
        OptKind::Domains => {
            // RFC 3397 section 2: a list of uncompressed DNS names.
            for s in &values {
                let name = check_hostname(s).map_err(|r| err(F, v, r))?;
                for label in name.split('.') {
                    data.push(label.len() as u8);
                    data.extend_from_slice(label.as_bytes());
                }
                data.push(0);
            }
        }
        OptKind::Routes => {
            // RFC 3442 section 3: pairs SUBNET/PREFIX,ROUTER, each encoded as the
            // prefix length, the significant octets of the subnet, then the router.
            if !values.len().is_multiple_of(2) {
                return Err(bad("pairs of SUBNET/PREFIX,ROUTER"));
            }
            for pair in values.chunks(2) {
                let net: ipnet::Ipv4Net = pair[0].parse().map_err(|_| bad("pairs of SUBNET/PREFIX,ROUTER"))?;
                let router: Ipv4Addr = pair[1].parse().map_err(|_| bad("pairs of SUBNET/PREFIX,ROUTER"))?;
                let width = net.prefix_len();
                data.push(width);
                data.extend_from_slice(&net.network().octets()[..usize::from(width).div_ceil(8)]);
                data.extend_from_slice(&router.octets());
            }
        }
    }
    // Longer values are split over several options by RFC 3396 when sent; the
    // whole message must still fit a DHCP packet.
    if data.len() > 1024 {
        return Err(err(F, v, "the value is longer than 1024 bytes"));
    }
    Ok(DhcpOptionSetting { code, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = parse_dhcp_range("10.0.3.100,10.0.3.200").unwrap();
        assert_eq!((r.start.octets()[3], r.end.octets()[3], r.lease), (100, 200, 3600));
        assert_eq!(
            parse_dhcp_range("10.0.3.100,10.0.3.200,255.255.255.0,12h")
                .unwrap()
                .lease,
            43200
        );
        assert_eq!(
            parse_dhcp_range("10.0.3.100,10.0.3.200,infinite").unwrap().lease,
            INFINITE
        );
        assert!(parse_dhcp_range("10.0.3.100").is_err());
        assert!(parse_dhcp_range("10.0.3.100,10.0.3.x")
            .unwrap_err()
            .to_string()
            .contains("--dhcp-range"));
        assert!(parse_dhcp_range("10.0.3.100,10.0.3.200,12q").is_err());
        let r = parse_dhcp_range("10.0.4.0,static,255.255.255.0,2h").unwrap();
        assert!(r.static_only);
        assert_eq!((r.netmask, r.lease), (Some(Ipv4Addr::new(255, 255, 255, 0)), 7200));
        assert!(parse_dhcp_range("10.0.3.100,10.0.3.200,255.0.255.0").is_err());
        let b = parse_dhcp_boot("pxelinux.0,boothost,10.0.3.5").unwrap();
        assert_eq!(
            (b.file.as_str(), b.server_name.as_deref(), b.server_addr),
            ("pxelinux.0", Some("boothost"), Some(Ipv4Addr::new(10, 0, 3, 5)))
        );
        assert!(parse_dhcp_boot("").is_err());
    }

    #[test]
    fn hosts() {
        let h = parse_dhcp_host("00:00:00:11:11:11,10.0.3.101,master").unwrap();
        assert_eq!(h.mac.unwrap().to_string(), "00:00:00:11:11:11");
        assert_eq!(h.ip, Some("10.0.3.101".parse().unwrap()));
        assert_eq!(h.hostname.as_deref(), Some("master"));
        let h = parse_dhcp_host("Worker1,00:00:00:22:22:22,2h").unwrap();
        assert_eq!(
            (h.hostname.as_deref(), h.ip, h.lease),
            (Some("worker1"), None, Some(7200))
        );
        let e = parse_dhcp_host("00:00:00:zz:11:11,10.0.3.101").unwrap_err();
        assert_eq!(e.flag, "--dhcp-host");
        assert!(parse_dhcp_host("10.0.3.101,master").is_err());
        assert!(parse_dhcp_host("00:00:00:11:11:11,bad_name!").is_err());
        let e = parse_dhcp_host("00:00:00:11:11:11,10.0.3.300").unwrap_err();
        assert!(e.reason.contains("IPv4"), "{e}");
    }

    #[test]
    fn hosts_for_dhcpv6() {
        let h = parse_dhcp_host("52:54:00:12:34:56,[1234::5],name6").unwrap();
        assert_eq!(h.ip6, Some("1234::5".parse().unwrap()));
        assert_eq!((h.mac.is_some(), h.hostname.as_deref()), (true, Some("name6")));
        let h = parse_dhcp_host("id:00:03:00:01:52:54:0:12:34:56,[fd00::7]").unwrap();
        assert_eq!(h.mac, None);
        assert_eq!(h.duid, Some(vec![0, 3, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert_eq!(h.ip6, Some("fd00::7".parse().unwrap()));
        let h = parse_dhcp_host("52:54:00:12:34:56,10.0.3.5,[1234::5],both").unwrap();
        assert!(h.ip.is_some() && h.ip6.is_some());
        for (bad, part) in [
            ("52:54:00:12:34:56,[1234::zz]", "[1234::zz]"),
            ("52:54:00:12:34:56,[fe80::1]", "[fe80::1]"),
            ("id:00:0g,[1234::5]", "id:00:0g"),
            ("id:,[1234::5]", "id:"),
            ("id:00:01,10.0.3.5", "IPv4"),
            ("[1234::5],name", "no MAC"),
            ("52:54:00:12:34:56,[1234::5],[1234::6]", "more than one IPv6"),
        ] {
            let e = parse_dhcp_host(bad).unwrap_err();
            assert_eq!(e.flag, "--dhcp-host");
            assert!(e.to_string().contains(part), "{bad}: {e}");
        }
    }

    #[test]
    fn options() {
        let o = parse_dhcp_option("option:router,10.0.3.101").unwrap();
        assert_eq!((o.code, o.data), (3, vec![10, 0, 3, 101]));
        let o = parse_dhcp_option("6,10.0.3.1,10.0.3.2").unwrap();
        assert_eq!((o.code, o.data.len()), (6, 8));
        assert_eq!(parse_dhcp_option("option:mtu,1400").unwrap().data, vec![0x05, 0x78]);
        assert_eq!(
            parse_dhcp_option("option:domain-search,a.b").unwrap().data,
            b"\x01a\x01b\x00".to_vec()
        );
        assert_eq!(
            parse_dhcp_option("252,http://x/wpad.dat").unwrap().data,
            b"http://x/wpad.dat".to_vec()
        );
        assert!(parse_dhcp_option("option:nonsense,1").is_err());
        assert!(parse_dhcp_option("option:router,10.0.3").is_err());
        assert!(parse_dhcp_option("300,1").is_err());
        // RFC 3442: 10.0.0.0/8 via 10.0.3.254, 192.168.1.0/24 via 10.0.3.1, default via 10.0.3.1.
        let o = parse_dhcp_option(
            "option:classless-static-route,10.0.0.0/8,10.0.3.254,192.168.1.0/24,10.0.3.1,0.0.0.0/0,10.0.3.1",
        )
        .unwrap();
        assert_eq!(o.code, 121);
        assert_eq!(
            o.data,
            vec![8, 10, 10, 0, 3, 254, 24, 192, 168, 1, 10, 0, 3, 1, 0, 10, 0, 3, 1]
        );
        assert!(parse_dhcp_option("option:classless-static-route,10.0.0.0/8").is_err());
    }

    #[test]
    fn an_option_without_a_value_is_left_out() {
        for v in [
            "3",
            "3,",
            "option:router",
            "option:router,",
            " 3 , ",
            "option:dns-server",
            "6",
            "42,,",
        ] {
            let o = parse_dhcp_option(v).unwrap_or_else(|e| panic!("{v:?}: {e}"));
            assert!(o.data.is_empty(), "{v:?}: {o:?}");
        }
        assert_eq!(parse_dhcp_option("option:router").unwrap().code, 3);
        assert_eq!(parse_dhcp_option("option:dns-server").unwrap().code, 6);
        for v in ["51", "53,", "option:lease-time", "54"] {
            let e = parse_dhcp_option(v).unwrap_err();
            assert!(e.reason.contains("every reply"), "{v:?}: {e}");
        }
    }
}
