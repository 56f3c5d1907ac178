//! The DNS settings beyond host records, and their flag parsers in dnsmasq's
//! value syntax (dnsmasq(8)): `--cname`, `--srv-host` (RFC 2782 records),
//! `--address`, `--server`, `--local`, `--no-resolv`, `--resolv-file` and
//! `--dns-forward-max`, plus the `nameserver` lines of resolv.conf(5). Every
//! error names the flag and the value it refused, as in [`crate::config`].

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use crate::config::{check_hostname, err, ConfigError, HostConfig};

/// dnsmasq's default `--dns-forward-max`: queries forwarded at once.
pub const DEFAULT_FORWARD_MAX: usize = 150;

/// The largest `--dns-forward-max` accepted: a sixteenth of the 16-bit DNS ID
/// space, so a fresh random ID for a forwarded query is found in a few tries
/// (and IDs stay hard to guess, RFC 5452 section 9.2).
pub const MAX_FORWARD_MAX: usize = 4096;

/// The DNS port (RFC 1035 section 4.2).
const PORT: u16 = 53;

/// `--cname=ALIAS[,ALIAS...],TARGET[,TTL]`: each alias is a CNAME to the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cname {
    /// The alias names (lower-cased, without trailing dot).
    pub aliases: Vec<String>,
    /// The canonical name; must be a local name (checked by [`DnsConfig::validate`]).
    pub target: String,
    /// TTL in seconds (default 0, dnsmasq's `local-ttl`).
    pub ttl: u32,
}

/// `--srv-host=_service._prot.[domain],[target[,port[,priority[,weight]]]]` (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvHost {
    /// The owner name; when every label starts with `_` (`_ldap._tcp`), `--domain` is appended.
    pub name: String,
    /// The target host; `None` publishes `.` ("the service is not available here").
    pub target: Option<String>,
    /// The port (default 1, as dnsmasq).
    pub port: u16,
    /// The priority (default 0).
    pub priority: u16,
    /// The weight (default 0).
    pub weight: u16,
}

/// What an `--address` rule answers for its domains and every name under them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressAnswer {
    /// This address for A (IPv4) or AAAA (IPv6) queries.
    Ip(IpAddr),
    /// `/DOMAIN/#`: 0.0.0.0 for A and :: for AAAA.
    Null,
    /// `/DOMAIN/`: NXDOMAIN for the domain and everything under it.
    NxDomain,
}

/// `--address=/DOMAIN[/DOMAIN...]/[IP]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRule {
    /// The domains (lower-case, no trailing dot); `""` for `#`, every domain.
    pub domains: Vec<String>,
    /// The answer.
    pub answer: AddressAnswer,
}

/// Where `--server`/`--local` sends the queries of its domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTarget {
    /// An upstream server, `IP[#PORT]` (port 53 by default).
    Upstream(SocketAddr),
    /// No address (`--local=/DOMAIN/`): answered from local data only, never forwarded.
    Local,
    /// `#`: the default upstream servers, overriding a rule for a parent domain.
    Default,
}

/// `--server=[/DOMAIN[/DOMAIN...]/][IP[#PORT]]` or `--local=/DOMAIN[/DOMAIN...]/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRule {
    /// The domains it applies to (lower-case, `""` for `#`); empty: a default upstream server.
    pub domains: Vec<String>,
    /// Where their queries go.
    pub target: ServerTarget,
}

/// The DNS settings of the hub's host beyond `--host-record` and `--domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// `--cname` records.
    pub cnames: Vec<Cname>,
    /// `--srv-host` records.
    pub srv_hosts: Vec<SrvHost>,
    /// `--address` rules.
    pub addresses: Vec<AddressRule>,
    /// `--ptr-record` records.
    pub ptr_records: Vec<PtrRecord>,
    /// `--server` and `--local` rules, plus the resolv.conf servers the binary adds
    /// (as rules without domains) unless `--no-resolv`.
    pub servers: Vec<ServerRule>,
    /// `--dns-forward-max`: most queries waiting for an upstream answer at
    /// once, from 1 to [`MAX_FORWARD_MAX`].
    pub forward_max: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            cnames: Vec::new(),
            srv_hosts: Vec::new(),
            addresses: Vec::new(),
            ptr_records: Vec::new(),
            servers: Vec::new(),
            forward_max: DEFAULT_FORWARD_MAX,
        }
    }
}

impl DnsConfig {
    /// The default upstream servers: `--server` rules without a domain, in order.
    pub fn default_servers(&self) -> Vec<SocketAddr> {
        self.servers
            .iter()
            .filter(|r| r.domains.is_empty())
            .filter_map(|r| match r.target {
                ServerTarget::Upstream(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    /// Checks the DNS settings against the rest of `cfg`: a CNAME target must be
    /// a local name (a `--host-record`, `--dhcp-host` or `--cname` name, or a
    /// single-label or `--domain` name a DHCP client may bring), an alias must not
    /// also be a host name or another alias, CNAMEs must not loop, and
    /// `--dns-forward-max` is from 1 to [`MAX_FORWARD_MAX`].
    ///
    /// # Errors
    /// A [`ConfigError`] naming the flag of the first offending entry.
    pub fn validate(&self, cfg: &HostConfig) -> Result<(), ConfigError> {
        let names = cfg.host_records.iter().flat_map(|r| r.names.iter());
        let names = names.chain(cfg.reservations.iter().filter_map(|r| r.hostname.as_ref()));
        self.validate_names(cfg.domain.as_deref(), names.map(String::as_str))
    }

    /// [`DnsConfig::validate`] with the host names (`--host-record`, `--dhcp-host`) given.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the flag of the first offending entry.
    pub fn validate_names<'a>(
        &self,
        domain: Option<&str>,
        host_names: impl Iterator<Item = &'a str>,
    ) -> Result<(), ConfigError> {
        let qualify = |n: &str| -> Vec<String> {
            let mut v = vec![n.to_string()];
            if let (false, Some(d)) = (n.contains('.'), domain) {
                v.push(format!("{n}.{d}"));
            }
            v
        };
        let hosts: HashSet<String> = host_names.flat_map(qualify).collect();
        let mut alias_of: HashMap<String, &Cname> = HashMap::new();
        for c in &self.cnames {
            let v = format!("{},{}", c.aliases.join(","), c.target);
            for a in &c.aliases {
                for q in qualify(a) {
                    if hosts.contains(&q) {
                        return Err(err(
                            "--cname",
                            &v,
                            format!("{q} is also a host name (--host-record or --dhcp-host); a CNAME must be alone"),
                        ));
                    }
                    if alias_of.insert(q.clone(), c).is_some() {
                        return Err(err("--cname", &v, format!("{q} is an alias twice")));
                    }
                }
            }
        }
        let in_domain = |t: &str| !t.contains('.') || domain.is_some_and(|d| t.ends_with(&format!(".{d}")));
        for c in &self.cnames {
            let v = format!("{},{}", c.aliases.join(","), c.target);
            let t = &c.target;
            if !(hosts.contains(t) || alias_of.contains_key(t) || in_domain(t)) {
                return Err(err(
                    "--cname",
                    &v,
                    format!(
                        "the target {t} is not a local name (a --host-record, --dhcp-host or --cname name, \
                         or a DHCP client's name in --domain)"
                    ),
                ));
            }
            // Follow the chain from the target: it must reach a name that is no alias.
            let (mut next, mut hops) = (t.as_str(), 0);
            while let Some(c2) = alias_of.get(next) {
                hops += 1;
                if hops > alias_of.len() {
                    return Err(err("--cname", &v, format!("the CNAME chain loops at {next}")));
                }
                next = &c2.target;
            }
        }
        if self.forward_max == 0 {
            return Err(err("--dns-forward-max", "0", "must be at least 1"));
        }
        if self.forward_max > MAX_FORWARD_MAX {
            return Err(err(
                "--dns-forward-max",
                &self.forward_max.to_string(),
                format!("must be at most {MAX_FORWARD_MAX} (also as the config file's dns-forward-max)"),
            ));
        }
        Ok(())
    }
}

/// Parses `--cname=ALIAS[,ALIAS...],TARGET[,TTL]` (dnsmasq's form).
///
/// # Errors
/// Fewer than two names, a name that is not a valid hostname, or a bad TTL.
pub fn parse_cname(v: &str) -> Result<Cname, ConfigError> {
    const F: &str = "--cname";
    let mut parts: Vec<&str> = v.split(',').map(str::trim).collect();
    let mut ttl = 0;
    if parts.len() > 2
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        let t = parts.pop().unwrap_or_default();
        ttl = t.parse().map_err(|_| err(F, v, "the TTL is not a number of seconds"))?;
    }
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(err(F, v, "expected ALIAS[,ALIAS...],TARGET[,TTL]"));
    }
    let mut names = parts
        .iter()
        .map(|p| check_hostname(p).map_err(|r| err(F, v, r)))
        .collect::<Result<Vec<_>, _>>()?;
    let target = names.pop().unwrap_or_default();
    if names.contains(&target) {
        return Err(err(F, v, "an alias cannot be its own target"));
    }
    Ok(Cname {
        aliases: names,
        target,
        ttl,
    })
}

/// Parses `--srv-host=_service._prot.[domain],[target[,port[,priority[,weight]]]]`
/// (dnsmasq's form: port 1, priority 0 and weight 0 by default).
///
/// # Errors
/// No name, a name that is not valid, or a number that does not fit 16 bits.
pub fn parse_srv_host(v: &str) -> Result<SrvHost, ConfigError> {
    const F: &str = "--srv-host";
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    if parts.len() > 5 {
        return Err(err(
            F,
            v,
            "expected _service._prot.[domain],[target[,port[,priority[,weight]]]]",
        ));
    }
    let name = check_hostname(parts[0]).map_err(|r| err(F, v, r))?;
    let target = match parts.get(1) {
        Some(t) if !t.is_empty() && *t != "." => Some(check_hostname(t).map_err(|r| err(F, v, r))?),
        _ => None,
    };
    let num = |i: usize, what: &str, default: u16| -> Result<u16, ConfigError> {
        match parts.get(i) {
            Some(s) if !s.is_empty() => s
                .parse()
                .map_err(|_| err(F, v, format!("the {what} {s:?} is not a number from 0 to 65535"))),
            _ => Ok(default),
        }
    };
    Ok(SrvHost {
        name,
        target,
        port: num(2, "port", 1)?,
        priority: num(3, "priority", 0)?,
        weight: num(4, "weight", 0)?,
    })
}

/// `--ptr-record=NAME,TARGET` (dnsmasq's form, for the reverse names of
/// addresses only): the PTR record of one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtrRecord {
    /// The address whose reverse name owns the record.
    pub ip: IpAddr,
    /// The name the record points to (lower-cased, without trailing dot).
    pub target: String,
}

/// The address a reverse name stands for: `d.c.b.a.in-addr.arpa` (RFC 1035
/// section 3.5) or 32 nibbles under `ip6.arpa` (RFC 3596 section 2.5), with
/// or without the trailing dot, in any case; `None` for any other name.
pub fn reverse_addr(name: &str) -> Option<IpAddr> {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    if let Some(v4) = n.strip_suffix(".in-addr.arpa") {
        let o: Vec<u8> = v4.split('.').map(|p| p.parse::<u8>().ok()).collect::<Option<_>>()?;
        let [d, c, b, a] = o.as_slice() else { return None };
        if v4.split('.').any(|p| p.len() > 1 && p.starts_with('0')) {
            return None;
        }
        return Some(IpAddr::from([*a, *b, *c, *d]));
    }
    let v6 = n.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = v6
        .split('.')
        .map(|p| match p.len() {
            1 => u8::from_str_radix(p, 16).ok(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut o = [0u8; 16];
    for (i, pair) in nibbles.rchunks(2).enumerate() {
        o[i] = (pair[1] << 4) | pair[0];
    }
    Some(IpAddr::from(o))
}

/// Parses `--ptr-record=NAME,TARGET`: NAME is the reverse name of one
/// address ([`reverse_addr`]), TARGET a hostname.
///
/// # Errors
/// Not two parts, a NAME that is no address's reverse name, or a bad target.
pub fn parse_ptr_record(v: &str) -> Result<PtrRecord, ConfigError> {
    const F: &str = "--ptr-record";
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    let [name, target] = parts.as_slice() else {
        return Err(err(
            F,
            v,
            "expected NAME,TARGET (NAME: an in-addr.arpa or ip6.arpa name)",
        ));
    };
    let ip = reverse_addr(name).ok_or_else(|| {
        err(
            F,
            v,
            format!("{name:?} is not the reverse name of an address (d.c.b.a.in-addr.arpa, or 32 nibbles .ip6.arpa)"),
        )
    })?;
    let target = check_hostname(target).map_err(|r| err(F, v, r))?;
    Ok(PtrRecord { ip, target })
}

/// Splits dnsmasq's `/DOMAIN[/DOMAIN...]/REST` into the domains (`#` -> `""`)
/// and REST; `None` when `v` does not start with `/` or has no closing `/`.
fn split_domains(flag: &'static str, v: &str) -> Result<Option<(Vec<String>, String)>, ConfigError> {
    let Some(body) = v.trim().strip_prefix('/') else {
        return Ok(None);
    };
    let Some(end) = body.rfind('/') else {
        return Err(err(flag, v, "expected /DOMAIN[/DOMAIN...]/..."));
    };
    let mut domains = Vec::new();
    for d in body[..end].split('/') {
        if d == "#" {
            domains.push(String::new());
        } else {
            domains.push(check_hostname(d).map_err(|r| err(flag, v, r))?);
        }
    }
    Ok(Some((domains, body[end + 1..].trim().to_string())))
}

/// Parses `IP[#PORT]` (port 53 by default), the address form of `--server`.
fn parse_upstream(flag: &'static str, v: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    if s.contains('@') {
        return Err(err(flag, v, "a source address or interface (@...) is not supported"));
    }
    let (ip, port) = match s.split_once('#') {
        Some((ip, port)) => (
            ip,
            port.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| err(flag, v, format!("{port:?} is not a port from 1 to 65535")))?,
        ),
        None => (s, PORT),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| err(flag, v, format!("{ip:?} is not an IP address (expected IP[#PORT])")))?;
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(err(flag, v, format!("{ip} cannot be a DNS server")));
    }
    Ok(SocketAddr::new(ip, port))
}

/// Parses `--address=/DOMAIN[/DOMAIN...]/[IP]` (dnsmasq's form): `IP` (IPv4 or
/// IPv6) for the domains and every name under them, `#` for the null addresses,
/// nothing for NXDOMAIN; the domain `#` matches every name.
///
/// # Errors
/// No leading `/`, a domain that is not valid, or an address that does not parse.
pub fn parse_address(v: &str) -> Result<AddressRule, ConfigError> {
    const F: &str = "--address";
    let Some((domains, rest)) = split_domains(F, v)? else {
        return Err(err(
            F,
            v,
            "expected /DOMAIN[/DOMAIN...]/[IP], e.g. /example.test/192.0.2.1",
        ));
    };
    let answer = match rest.as_str() {
        "" => AddressAnswer::NxDomain,
        "#" => AddressAnswer::Null,
        ip => AddressAnswer::Ip(
            ip.parse()
                .map_err(|_| err(F, v, format!("{ip:?} is not an IPv4 or IPv6 address")))?,
        ),
    };
    Ok(AddressRule { domains, answer })
}

/// Parses `--server=[/DOMAIN[/DOMAIN...]/][IP[#PORT]]` (dnsmasq's form; `#` as
/// the address means the default servers). `--local` takes the same syntax
/// (dnsmasq: "--local is a synonym for --server"), written `--local=/DOMAIN/`.
///
/// # Errors
/// An address that does not parse, a bad port, a domain that is not valid, or
/// an empty value.
pub fn parse_server(flag: &'static str, v: &str) -> Result<ServerRule, ConfigError> {
    let (domains, rest) = match split_domains(flag, v)? {
        Some(x) => x,
        None => (Vec::new(), v.trim().to_string()),
    };
    let target = match rest.as_str() {
        "" if domains.is_empty() => return Err(err(flag, v, "expected IP[#PORT] or /DOMAIN/[IP[#PORT]]")),
        "" => ServerTarget::Local,
        "#" if !domains.is_empty() => ServerTarget::Default,
        s => ServerTarget::Upstream(parse_upstream(flag, v, s)?),
    };
    Ok(ServerRule { domains, target })
}

/// Parses `--dns-forward-max=N`.
///
/// # Errors
/// Not a number from 1 to [`MAX_FORWARD_MAX`].
pub fn parse_forward_max(v: &str) -> Result<usize, ConfigError> {
    v.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_FORWARD_MAX).contains(n))
        .ok_or_else(|| {
            err(
                "--dns-forward-max",
                v,
                format!("expected a number of queries from 1 to {MAX_FORWARD_MAX}"),
            )
        })
}

/// The `nameserver` addresses of a resolv.conf(5) text, each on port 53, in
/// order; other lines, addresses with a zone (`fe80::1%eth0`) and unspecified
/// addresses are skipped.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next()) {
                (Some("nameserver"), Some(ip)) => ip.parse::<IpAddr>().ok(),
                _ => None,
            }
        })
        .filter(|ip| !ip.is_unspecified())
        .map(|ip| SocketAddr::new(ip, PORT))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cnames() {
        let c = parse_cname("www,ftp,master,60").unwrap();
        assert_eq!(
            (c.aliases, c.target, c.ttl),
            (vec!["www".into(), "ftp".into()], "master".into(), 60)
        );
        assert_eq!(parse_cname("www,Master.cluster").unwrap().target, "master.cluster");
        assert!(parse_cname("www").is_err());
        assert!(parse_cname("www,www").is_err());
        assert_eq!(parse_cname("www,bad name").unwrap_err().flag, "--cname");
    }

    #[test]
    fn srv_hosts() {
        let s = parse_srv_host("_ldap._tcp.example.test,ldap.example.test,389,1,2").unwrap();
        assert_eq!(
            (s.name.as_str(), s.target.as_deref()),
            ("_ldap._tcp.example.test", Some("ldap.example.test"))
        );
        assert_eq!((s.port, s.priority, s.weight), (389, 1, 2));
        let s = parse_srv_host("_x._udp").unwrap();
        assert_eq!((s.target, s.port, s.priority, s.weight), (None, 1, 0, 0));
        assert!(parse_srv_host("_x._tcp,host,99999").is_err());
        assert!(parse_srv_host(",host").is_err());
    }

    #[test]
    fn addresses_servers_locals() {
        let a = parse_address("/ads.test/sub.test/192.0.2.1").unwrap();
        assert_eq!(a.domains, vec!["ads.test", "sub.test"]);
        assert_eq!(a.answer, AddressAnswer::Ip("192.0.2.1".parse().unwrap()));
        assert_eq!(
            parse_address("/v6.test/fd00::7").unwrap().answer,
            AddressAnswer::Ip("fd00::7".parse().unwrap())
        );
        assert_eq!(parse_address("/gone.test/").unwrap().answer, AddressAnswer::NxDomain);
        assert_eq!(
            parse_address("/#/#").unwrap(),
            AddressRule {
                domains: vec![String::new()],
                answer: AddressAnswer::Null
            }
        );
        assert!(parse_address("192.0.2.1").is_err());
        assert!(parse_address("/x.test/192.0.2").is_err());
        let s = parse_server("--server", "127.0.0.2#5300").unwrap();
        assert_eq!(
            (s.domains.len(), s.target),
            (0, ServerTarget::Upstream("127.0.0.2:5300".parse().unwrap()))
        );
        assert_eq!(
            parse_server("--server", "fd00::53").unwrap().target,
            ServerTarget::Upstream("[fd00::53]:53".parse().unwrap())
        );
        let s = parse_server("--server", "/corp.test/10.1.1.1").unwrap();
        assert_eq!(s.domains, vec!["corp.test"]);
        let l = parse_server("--local", "/internal/").unwrap();
        assert_eq!(
            (l.domains, l.target),
            (vec!["internal".to_string()], ServerTarget::Local)
        );
        assert_eq!(
            parse_server("--server", "/x.test/#").unwrap().target,
            ServerTarget::Default
        );
        for bad in ["", "10.0.0.1#0", "10.0.0.1#x", "0.0.0.0", "10.0.0.1@eth0", "nonsense"] {
            let e = parse_server("--server", bad).unwrap_err();
            assert_eq!(e.flag, "--server", "{bad}");
        }
        assert_eq!(parse_forward_max("20").unwrap(), 20);
        assert!(parse_forward_max("0").is_err());
        assert_eq!(parse_forward_max("4096").unwrap(), MAX_FORWARD_MAX);
        assert!(parse_forward_max("4097")
            .unwrap_err()
            .to_string()
            .contains("--dns-forward-max"));
    }

    #[test]
    fn resolv_conf() {
        let text = "# comment\nsearch example\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\n\
                    nameserver   2001:db8::53\nnameserver 0.0.0.0\noptions edns0\n";
        let v: Vec<String> = parse_resolv_conf(text).iter().map(|s| s.to_string()).collect();
        assert_eq!(v, vec!["192.0.2.53:53", "[2001:db8::53]:53"]);
    }

    #[test]
    fn validation() {
        let ok = |cnames: &[&str]| {
            let c = DnsConfig {
                cnames: cnames.iter().map(|s| parse_cname(s).unwrap()).collect(),
                ..Default::default()
            };
            c.validate_names(Some("cluster"), ["master", "db.example.test"].into_iter())
                .map_err(|e| e.to_string())
        };
        assert!(ok(&["www,master"]).is_ok());
        assert!(ok(&["www,master.cluster"]).is_ok());
        assert!(ok(&["sql,db.example.test"]).is_ok());
        assert!(ok(&["www,api", "api,master"]).is_ok(), "a chain to a local name");
        assert!(ok(&["www,scratch"]).is_ok(), "a DHCP client may bring the name");
        let e = ok(&["www,google.com"]).unwrap_err();
        assert!(e.contains("--cname") && e.contains("not a local name"), "{e}");
        assert!(ok(&["master,db.example.test"])
            .unwrap_err()
            .contains("also a host name"));
        assert!(ok(&["a,b", "b,a"]).unwrap_err().contains("loops"));
        assert!(ok(&["www,master", "www,db.example.test"])
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn ptr_records() {
        let r = parse_ptr_record("9.3.0.10.in-addr.arpa,web.cluster").unwrap();
        assert_eq!(r.ip, "10.0.3.9".parse::<IpAddr>().unwrap());
        assert_eq!(r.target, "web.cluster");
        let v6 = "1.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.3.2.1.ip6.arpa.";
        assert_eq!(reverse_addr(v6), Some("1234::51".parse().unwrap()));
        let back = crate::dns::server::ptr_name("1234::51".parse().unwrap()).to_string();
        assert_eq!(reverse_addr(&back), Some("1234::51".parse().unwrap()));
        assert!(parse_ptr_record("web.cluster,x").is_err());
        assert!(parse_ptr_record("9.3.0.10.in-addr.arpa").is_err());
        assert!(parse_ptr_record("300.3.0.10.in-addr.arpa,x").is_err());
        assert!(reverse_addr("3.0.10.in-addr.arpa").is_none());
    }
}
