//! The hub's host configuration ([`HostConfig`]: its addresses, DHCP and DNS
//! settings, checked together by [`HostConfig::validate`]) and the parsers of
//! the flags shared by DHCP and DNS, in dnsmasq's value syntax (dnsmasq(8):
//! `--addr`, `--host-record`, `--domain`). Every error names the flag and the
//! value it refused. The DHCP flags' parsers are in [`crate::dhcp::config`]
//! and the DNS ones in [`crate::dns::config`]; both are re-exported here, so
//! `config::*` gives every flag parser.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::Ipv4Net;
use vmlan_hub::MacAddr;

pub use crate::dhcp::config::*;
pub use crate::ipv6::{parse_dhcp_range6, parse_dhcp_range_any, AnyRange, DhcpRange6, RaMode};

/// A refused flag value: which flag, the value, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag} {value:?}: {reason}")]
pub struct ConfigError {
    /// The flag as the user writes it, e.g. `--dhcp-host`.
    pub flag: &'static str,
    /// The value given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A [`ConfigError`] for `flag` with `value`.
pub(crate) fn err(flag: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// A DNS host record: `--host-record=NAME[,NAME...],[IPv4][,IPv6][,TTL]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRecord {
    /// The names (lower-cased, without trailing dot).
    pub names: Vec<String>,
    /// The A record's address.
    pub ipv4: Option<Ipv4Addr>,
    /// The AAAA record's address.
    pub ipv6: Option<Ipv6Addr>,
    /// TTL in seconds (dnsmasq's `local-ttl` default is 0).
    pub ttl: u32,
}

/// Everything the hub's host needs: its addresses, DHCP and DNS settings.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The host's MAC address on the segment.
    pub mac: MacAddr,
    /// The host's IPv4 address and the segment's prefix (`--addr 10.0.3.1/24`).
    pub net: Ipv4Net,
    /// Dynamic pools.
    pub ranges: Vec<DhcpRange>,
    /// IPv6 `--dhcp-range`s: each gives the host an address in its prefix
    /// ([`crate::ipv6::address_in`]) and, with `enable_ra`, a prefix in the
    /// router advertisements ([`crate::ra`]).
    pub ranges6: Vec<DhcpRange6>,
    /// `--enable-ra`: send router advertisements (RFC 4861 section 6.2) for
    /// the IPv6 ranges; nothing is sent without one.
    pub enable_ra: bool,
    /// MAC reservations.
    pub reservations: Vec<Reservation>,
    /// Extra or overriding DHCP options.
    pub options: Vec<DhcpOptionSetting>,
    /// DNS host records.
    pub host_records: Vec<HostRecord>,
    /// The local domain (`--domain`), lower-case, without trailing dot.
    pub domain: Option<String>,
    /// The dnsmasq-format lease file, if leases persist.
    pub leasefile: Option<PathBuf>,
    /// `--dhcp-boot`: PXE boot file and server.
    pub boot: Option<DhcpBoot>,
    /// `--dhcp-authoritative`: answer (ACK or NAK) REQUESTs from clients without a lease
    /// here, instead of staying silent for another server.
    pub authoritative: bool,
    /// `--dhcp-rapid-commit`: answer a DHCPv6 SOLICIT carrying Rapid Commit
    /// with a REPLY and a bound lease at once
    /// ([`crate::dhcp6::config::Dhcp6Config::rapid_commit`]).
    pub rapid_commit: bool,
    /// DNS settings beyond host records: CNAME, SRV, `--address`, `--server`, `--local`.
    pub dns: crate::dns::config::DnsConfig,
}

impl HostConfig {
    /// A host at `net` (its address and the segment's prefix, `--addr`) with
    /// everything else off: the MAC [`default_mac`] of the address, no pools
    /// (IPv4 or IPv6), no router advertisements, reservations, options, host
    /// records, domain, lease file, boot file or DNS settings, not
    /// authoritative, no rapid commit. Set fields with struct update syntax
    /// (`HostConfig { ranges, ..HostConfig::new(net) }`), then
    /// [`HostConfig::validate`].
    pub fn new(net: Ipv4Net) -> Self {
        HostConfig {
            mac: default_mac(net.addr()),
            net,
            ranges: Vec::new(),
            ranges6: Vec::new(),
            enable_ra: false,
            reservations: Vec::new(),
            options: Vec::new(),
            host_records: Vec::new(),
            domain: None,
            leasefile: None,
            boot: None,
            authoritative: false,
            rapid_commit: false,
            dns: crate::dns::config::DnsConfig::default(),
        }
    }

    /// The host's own IPv4 address.
    pub fn addr(&self) -> Ipv4Addr {
        self.net.addr()
    }

    /// The subnet a range serves: from its netmask if given, else `--addr`'s.
    pub fn range_subnet(&self, r: &DhcpRange) -> Ipv4Net {
        match r.netmask.and_then(|m| Ipv4Net::with_netmask(r.start, m).ok()) {
            Some(n) => n.trunc(),
            None => self.net.trunc(),
        }
    }

    /// Splits reservations read from files (`--dhcp-hostsfile`,
    /// `--dhcp-hostsdir`) into those that can join this configuration's
    /// (each checked as [`HostConfig::validate`] checks a `--dhcp-host`,
    /// against the flags' and the ones accepted before it) and the refused
    /// ones with why. A reservation may carry an IPv6 part (`[IPv6]`,
    /// `id:DUID`), as a `--dhcp-host` may: dnsmasq's DHCP hosts files take
    /// the same lines.
    pub fn accept_file_reservations(
        &self,
        candidates: Vec<Reservation>,
    ) -> (Vec<Reservation>, Vec<(Reservation, ConfigError)>) {
        let mut all = self.clone();
        let base = all.reservations.len();
        let (mut refused, mut ok) = (Vec::new(), Vec::new());
        all.reservations.extend(candidates.iter().cloned());
        if all.validate().is_ok() {
            return (candidates, refused);
        }
        // Some are bad: add them one at a time, keeping those that fit.
        all.reservations.truncate(base);
        for r in candidates {
            all.reservations.push(r.clone());
            match all.validate() {
                Ok(()) => ok.push(r),
                Err(e) => {
                    all.reservations.pop();
                    refused.push((r, e));
                }
            }
        }
        (ok, refused)
    }

    /// Checks the settings against each other: every reservation and range lies
    /// in the subnet, ranges are not reversed, no MAC or IP is reserved twice,
    /// no IPv6 range that hands out addresses holds the hub's own address there.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the flag of the first offending entry.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let net = self.net.trunc();
        let usable = |ip: &Ipv4Addr| net.contains(ip) && *ip != net.network() && *ip != net.broadcast();
        if self.net.prefix_len() > 30 {
            return Err(err(
                "--addr",
                &self.net.to_string(),
                "the prefix must be /30 or shorter to leave room for clients",
            ));
        }
        for r in &self.ranges {
            let v = format!("{},{}", r.start, r.end);
            if u32::from(r.start) > u32::from(r.end) {
                return Err(err(
                    "--dhcp-range",
                    &v,
                    "the range is reversed: the start is after the end",
                ));
            }
            let sub = self.range_subnet(r);
            let in_sub = |ip: &Ipv4Addr| sub.contains(ip) && *ip != sub.network() && *ip != sub.broadcast();
            if !in_sub(&r.start) || !in_sub(&r.end) {
                let whose = if r.netmask.is_some() {
                    "its netmask's subnet".to_string()
                } else {
                    format!("the subnet {net} of --addr (give a netmask for a relayed subnet)")
                };
                return Err(err("--dhcp-range", &v, format!("the range is not inside {whose}")));
            }
        }
        let owns: Vec<Ipv6Addr> = self
            .ranges6
            .iter()
            .map(|r| crate::ipv6::address_in(r, self.mac))
            .collect();
        for r in &self.ranges6 {
            // The hub's own addresses must not be handed out over DHCPv6.
            let Some(&own) = owns.iter().find(|a| (r.start..=r.end).contains(*a)) else {
                continue;
            };
            if r.mode.managed() {
                return Err(err(
                    "--dhcp-range",
                    &format!("{},{}", r.start, r.end),
                    format!("the range holds the hub's own address {own} (its MAC's interface identifier in the prefix); end the range before it or start it after"),
                ));
            }
        }
        let mut macs = std::collections::HashSet::new();
        let mut ips = std::collections::HashSet::new();
        let mut duids = std::collections::HashSet::new();
        let mut ip6s = std::collections::HashSet::new();
        for r in &self.reservations {
            let v = format!(
                "{},{}{}",
                r.mac.map(|m| m.to_string()).unwrap_or_default(),
                r.ip.map(|i| i.to_string()).unwrap_or_default(),
                r.ip6.map(|i| format!(",[{i}]")).unwrap_or_default()
            );
            if let Some(mac) = r.mac {
                if !macs.insert(mac) {
                    return Err(err("--dhcp-host", &v, format!("MAC {mac} is reserved twice")));
                }
            }
            if let Some(d) = &r.duid {
                if !duids.insert(d.clone()) {
                    return Err(err("--dhcp-host", &v, "the id: (DUID) is reserved twice"));
                }
            }
            if let Some(a) = r.ip6 {
                if owns.contains(&a) {
                    return Err(err("--dhcp-host", &v, format!("[{a}] is the hub's own IPv6 address")));
                }
                if !ip6s.insert(a) {
                    return Err(err("--dhcp-host", &v, format!("[{a}] is reserved twice")));
                }
            }
            if let Some(ip) = r.ip {
                let in_relayed = self.ranges.iter().any(|g| {
                    let sub = self.range_subnet(g);
                    g.netmask.is_some() && sub.contains(&ip) && ip != sub.network() && ip != sub.broadcast()
                });
                if !usable(&ip) && !in_relayed {
                    return Err(err(
                        "--dhcp-host",
                        &v,
                        format!("{ip} is not a client address in the subnet {net} of --addr (or of a --dhcp-range)"),
                    ));
                }
                if ip == self.addr() {
                    return Err(err(
                        "--dhcp-host",
                        &v,
                        format!("{ip} is the hub's own address (--addr)"),
                    ));
                }
                if !ips.insert(ip) {
                    return Err(err("--dhcp-host", &v, format!("{ip} is reserved twice")));
                }
            }
        }
        self.dns.validate(self)
    }
}

/// Parses `--addr`: the host's IPv4 address with the segment's prefix length, `10.0.3.1/24`.
///
/// # Errors
/// When it is not `IPv4/PREFIX`.
pub fn parse_addr(v: &str) -> Result<Ipv4Net, ConfigError> {
    v.trim()
        .parse::<Ipv4Net>()
        .map_err(|_| err("--addr", v, "expected IPv4/PREFIX, e.g. 10.0.3.1/24"))
}

/// Parses a MAC address for `flag`.
///
/// # Errors
/// When it is not six hex pairs.
pub fn parse_mac(flag: &'static str, v: &str) -> Result<MacAddr, ConfigError> {
    v.trim().parse::<MacAddr>().map_err(|e| err(flag, v, e.to_string()))
}

/// Checks a hostname (one or more DNS labels of letters, digits and `-`, RFC 1123
/// section 2.1) and returns it lower-cased without a trailing dot.
///
/// # Errors
/// A description of what is wrong.
pub fn check_hostname(name: &str) -> Result<String, String> {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    if n.is_empty() || n.len() > 253 {
        return Err(format!("{name:?} is not a valid hostname (1 to 253 characters)"));
    }
    if n.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        // RFC 1123 section 2.1: a name must not look like a dotted-decimal address.
        return Err(format!("{name:?} is neither a valid IPv4 address nor a hostname"));
    }
    for label in n.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "{name:?} is not a valid hostname (letters, digits and '-', labels of 1 to 63)"
            ));
        }
    }
    Ok(n)
}

/// Parses `--host-record=NAME[,NAME...],[IPv4][,IPv6][,TTL]`.
///
/// # Errors
/// No name, no address, or a name that is not a valid hostname.
pub fn parse_host_record(v: &str) -> Result<HostRecord, ConfigError> {
    const F: &str = "--host-record";
    let mut rec = HostRecord {
        names: vec![],
        ipv4: None,
        ipv6: None,
        ttl: 0,
    };
    for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match p.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => rec.ipv4 = Some(a),
            Ok(IpAddr::V6(a)) => rec.ipv6 = Some(a),
            Err(_) if p.bytes().all(|b| b.is_ascii_digit()) && !rec.names.is_empty() => {
                rec.ttl = p.parse().map_err(|_| err(F, v, "the TTL is not a number of seconds"))?;
            }
            Err(_) => rec.names.push(check_hostname(p).map_err(|r| err(F, v, r))?),
        }
    }
    if rec.names.is_empty() {
        return Err(err(F, v, "no name (expected NAME[,NAME...],IPv4[,IPv6][,TTL])"));
    }
    if rec.ipv4.is_none() && rec.ipv6.is_none() {
        return Err(err(F, v, "no address"));
    }
    Ok(rec)
}

/// Parses `--domain=DOMAIN` (dnsmasq's form with an address range is not supported).
///
/// # Errors
/// When it is not a valid domain name.
pub fn parse_domain(v: &str) -> Result<String, ConfigError> {
    check_hostname(v).map_err(|r| err("--domain", v, r))
}

/// The hub's default MAC: locally administered (`02:`), `76:6d` ("vm"), then the
/// last three bytes of its IPv4 address, so it is stable across restarts and
/// differs between hubs on different addresses.
pub fn default_mac(addr: Ipv4Addr) -> MacAddr {
    let o = addr.octets();
    MacAddr([0x02, 0x76, 0x6d, o[1], o[2], o[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_records() {
        let r = parse_host_record("master,Master.cluster,10.0.3.101,fd00::1,60").unwrap();
        assert_eq!(r.names, vec!["master", "master.cluster"]);
        assert_eq!((r.ipv4.is_some(), r.ipv6.is_some(), r.ttl), (true, true, 60));
        assert!(parse_host_record("master").is_err());
        assert!(parse_host_record("10.0.3.1").is_err());
    }

    fn cfg() -> HostConfig {
        HostConfig {
            mac: default_mac("10.0.3.1".parse().unwrap()),
            net: parse_addr("10.0.3.1/24").unwrap(),
            ranges: vec![parse_dhcp_range("10.0.3.100,10.0.3.200").unwrap()],
            ranges6: vec![],
            enable_ra: false,
            reservations: vec![parse_dhcp_host("00:00:00:11:11:11,10.0.3.101,master").unwrap()],
            options: vec![],
            host_records: vec![],
            domain: Some("cluster".into()),
            leasefile: None,
            boot: None,
            authoritative: false,
            rapid_commit: false,
            dns: Default::default(),
        }
    }

    #[test]
    fn validation_names_the_flag() {
        assert!(cfg().validate().is_ok());
        let mut c = cfg();
        c.reservations[0].ip = Some("10.0.4.5".parse().unwrap());
        let e = c.validate().unwrap_err();
        assert_eq!(e.flag, "--dhcp-host");
        assert!(e.reason.contains("subnet"), "{e}");
        let mut c = cfg();
        c.ranges[0] = parse_dhcp_range("10.0.3.200,10.0.3.100").unwrap();
        assert!(c.validate().unwrap_err().reason.contains("reversed"));
        let mut c = cfg();
        c.reservations
            .push(parse_dhcp_host("00:00:00:22:22:22,10.0.3.101").unwrap());
        assert!(c.validate().unwrap_err().reason.contains("twice"));
        assert_eq!(
            default_mac("10.0.3.1".parse().unwrap()).to_string(),
            "02:76:6d:00:03:01"
        );
        assert!(parse_addr("10.0.3.1").is_err());
        let mut c = cfg();
        c.ranges6 = vec![parse_dhcp_range6("1234::,1234::ffff:ffff:ffff:ffff,slaac").unwrap()];
        let e = c.validate().unwrap_err();
        assert!(
            e.flag == "--dhcp-range" && e.reason.contains("1234::76:6dff:fe00:301"),
            "{e}"
        );
        // ra-only hands out nothing: the same span is fine.
        c.ranges6 = vec![parse_dhcp_range6("1234::,1234::ffff:ffff:ffff:ffff,ra-only").unwrap()];
        assert!(c.validate().is_ok());
    }
}
