//! What the runtime API added (reservations, DNS records and port
//! forwards), and its `--api-state FILE`: the same set written in dnsmasq's
//! configuration-file syntax (dnsmasq(8), "CONFIG FILE": one `option=value`
//! per line, `#` comments), so a human can read and edit it:
//! `dhcp-host=MAC[,IPv4][,[IPv6]][,NAME][,LEASE]`, `host-record=NAME,IP[,TTL]`,
//! `cname=ALIAS,TARGET[,TTL]`, `srv-host=NAME,TARGET,PORT,PRIORITY,WEIGHT`,
//! `ptr-record=REVERSE-NAME,TARGET`, for gvproxy's zones `local=/ZONE/` or,
//! with a DefaultIP, `address=/ZONE/IP` (`/#/` for the zone ""), and vmlan's
//! own `expose=PROTO:LOCAL=REMOTE` (its `--expose` syntax, which
//! `--conf-file` reads too). The lines are read with the flags' own parsers
//! (vmlan_host::config, forward_io), so a value means here what it means on
//! the command line; a bad line is an error naming FILE:LINE.
//!
//! The file is rewritten whole after each change, atomically: a temporary
//! file in the same directory, fsync, rename over FILE, fsync of the
//! directory (so a crash leaves the old or the new file, never a mix).

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use vmlan_host::config::{parse_dhcp_host, parse_host_record, Reservation, INFINITE};
use vmlan_host::dns::config::{
    parse_address, parse_cname, parse_ptr_record, parse_server, parse_srv_host, AddressAnswer, ServerTarget, SrvHost,
};
use vmlan_host::dns::{ptr_name, DnsServer};

use crate::forward_io::{parse_spec, Spec};

/// Files larger than this (bytes) are refused at start: the API's caps
/// (4096 records, 4096 reservations) write far less.
const FILE_MAX: u64 = 16 << 20;

/// One DNS record added through the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiRecord {
    /// An A or AAAA record (and its PTR): `host-record=NAME,IP[,TTL]`.
    Host {
        /// The name, lower-case, without the trailing dot.
        name: String,
        /// The address.
        ip: IpAddr,
        /// TTL in seconds.
        ttl: u32,
    },
    /// `cname=ALIAS,TARGET[,TTL]`.
    Cname {
        /// The alias (the record's owner).
        alias: String,
        /// The canonical name.
        target: String,
        /// TTL in seconds.
        ttl: u32,
    },
    /// `srv-host=NAME,TARGET,PORT,PRIORITY,WEIGHT` (RFC 2782; TTL 0 as the flag's).
    Srv(SrvHost),
    /// `ptr-record=REVERSE-NAME,TARGET` (TTL 0 as dnsmasq's).
    Ptr {
        /// The address whose reverse name owns the record.
        ip: IpAddr,
        /// The name it points to.
        target: String,
    },
    /// A gvproxy zone (`POST /services/dns/add`): names under it are answered
    /// from local data only, and `default_ip` answers those without records
    /// ([`DnsServer::add_zone`]). `local=/ZONE/`, or `address=/ZONE/IP` with
    /// a DefaultIP (`address=/#/IP` for the zone "", which has one always).
    Zone {
        /// The zone, lower-case, without the trailing dot; "" for every name.
        name: String,
        /// gvproxy's `DefaultIP`.
        default_ip: Option<IpAddr>,
    },
}

impl ApiRecord {
    /// The record's owner as `GET /records` shows it (no trailing dot).
    pub fn name(&self) -> String {
        match self {
            ApiRecord::Host { name, .. } => name.clone(),
            ApiRecord::Cname { alias, .. } => alias.clone(),
            ApiRecord::Srv(h) => h.name.clone(),
            ApiRecord::Ptr { ip, .. } => ptr_name(*ip).to_string().trim_end_matches('.').to_string(),
            ApiRecord::Zone { name, .. } => name.clone(),
        }
    }

    /// Its type: `A`, `AAAA`, `CNAME`, `SRV` or `PTR`.
    pub fn rtype(&self) -> &'static str {
        match self {
            ApiRecord::Host { ip: IpAddr::V4(_), .. } => "A",
            ApiRecord::Host { ip: IpAddr::V6(_), .. } => "AAAA",
            ApiRecord::Cname { .. } => "CNAME",
            ApiRecord::Srv(_) => "SRV",
            ApiRecord::Ptr { .. } => "PTR",
            ApiRecord::Zone { .. } => "ZONE",
        }
    }

    /// Its value as `GET /records` shows it: the address, the target, or
    /// `PRIORITY WEIGHT PORT TARGET` (`.` for no target); a zone's DefaultIP
    /// or "" (zones are listed by `GET /services/dns/all`, not `GET /records`).
    pub fn value(&self) -> String {
        match self {
            ApiRecord::Host { ip, .. } => ip.to_string(),
            ApiRecord::Zone { default_ip, .. } => default_ip.map(|a| a.to_string()).unwrap_or_default(),
            ApiRecord::Cname { target, .. } | ApiRecord::Ptr { target, .. } => target.clone(),
            ApiRecord::Srv(h) => format!(
                "{} {} {} {}",
                h.priority,
                h.weight,
                h.port,
                h.target.as_deref().unwrap_or(".")
            ),
        }
    }

    /// Its TTL in seconds.
    pub fn ttl(&self) -> u32 {
        match self {
            ApiRecord::Host { ttl, .. } | ApiRecord::Cname { ttl, .. } => *ttl,
            ApiRecord::Srv(_) | ApiRecord::Ptr { .. } | ApiRecord::Zone { .. } => 0,
        }
    }

    /// Publishes it in `dns`.
    pub fn publish(&self, dns: &mut DnsServer) {
        match self {
            ApiRecord::Host { name, ip, ttl } => dns.add_host(name, *ip, *ttl),
            ApiRecord::Cname { alias, target, ttl } => dns.add_cname(alias, target, *ttl),
            ApiRecord::Srv(h) => dns.add_srv(h, 0),
            ApiRecord::Ptr { ip, target } => dns.add_ptr(*ip, target, 0),
            ApiRecord::Zone { name, default_ip } => dns.add_zone(name, *default_ip),
        }
    }

    /// Withdraws one [`ApiRecord::publish`] of it from `dns`.
    pub fn withdraw(&self, dns: &mut DnsServer) {
        match self {
            ApiRecord::Host { name, ip, .. } => dns.remove_host(name, *ip),
            ApiRecord::Cname { alias, .. } => dns.remove_cname(alias),
            ApiRecord::Srv(h) => dns.remove_srv(h),
            ApiRecord::Ptr { ip, target } => dns.remove_ptr(*ip, target),
            ApiRecord::Zone { name, default_ip } => dns.remove_zone(name, *default_ip),
        }
    }

    /// Its line in the state file.
    fn line(&self) -> String {
        match self {
            ApiRecord::Host { name, ip, ttl } => format!("host-record={name},{ip},{ttl}"),
            ApiRecord::Cname { alias, target, ttl } => format!("cname={alias},{target},{ttl}"),
            ApiRecord::Srv(h) => format!(
                "srv-host={},{},{},{},{}",
                h.name,
                h.target.as_deref().unwrap_or("."),
                h.port,
                h.priority,
                h.weight
            ),
            ApiRecord::Ptr { target, .. } => format!("ptr-record={},{target}", self.name()),
            ApiRecord::Zone { name, default_ip: None } => format!("local=/{name}/"),
            ApiRecord::Zone {
                name,
                default_ip: Some(ip),
            } => {
                format!("address=/{}/{ip}", if name.is_empty() { "#" } else { name })
            }
        }
    }
}

/// A reservation's `dhcp-host=` value: `MAC[,IPv4][,[IPv6]][,NAME][,LEASE]`.
pub fn dhcp_host_value(r: &Reservation) -> String {
    let mut parts: Vec<String> = Vec::new();
    parts.extend(r.mac.map(|m| m.to_string()));
    if let Some(d) = &r.duid {
        let hex: Vec<String> = d.iter().map(|b| format!("{b:02x}")).collect();
        parts.push(format!("id:{}", hex.join(":")));
    }
    parts.extend(r.ip.map(|a| a.to_string()));
    parts.extend(r.ip6.map(|a| format!("[{a}]")));
    parts.extend(r.hostname.clone());
    parts.extend(r.lease.map(|l| match l {
        INFINITE => "infinite".to_string(),
        s => s.to_string(),
    }));
    parts.join(",")
}

/// Whether `r` reads back the same from its `dhcp-host=` line: a hostname
/// such as `5m` or `infinite` would be read as a lease time (dnsmasq's
/// syntax has the same ambiguity), so the API refuses it.
pub fn reservation_round_trips(r: &Reservation) -> bool {
    parse_dhcp_host(&dhcp_host_value(r)).is_ok_and(|back| back == *r)
}

impl ApiRecord {
    /// Whether it reads back the same from its state file line.
    pub fn round_trips(&self) -> bool {
        ApiState::parse(&self.line())
            .is_ok_and(|st| st.reservations.is_empty() && st.forwards.is_empty() && st.records == [self.clone()])
    }
}

/// Everything added through the API, in the order it was added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiState {
    /// The reservations (`POST /reservations`).
    pub reservations: Vec<Reservation>,
    /// The DNS records (`POST /records`, `POST /services/dns/add`).
    pub records: Vec<ApiRecord>,
    /// The port forwards (`POST /services/forwarder/expose`), at most one
    /// per local address and protocol; those `--expose` gave are not here.
    /// One the hub could not install at start (its address taken, or an
    /// `--expose` flag's) stays, so it is written back and tried again at
    /// the next start.
    pub forwards: Vec<Spec>,
}

/// A forward's `expose=` value: `PROTO:LOCAL=REMOTE` (`--expose`'s syntax).
pub fn expose_value(s: &Spec) -> String {
    format!("{}:{}={}", s.protocol.name(), s.local, s.remote)
}

/// The state file's first lines.
const HEADER: &str = "# vmlan hub --api-state: reservations, DNS records and port forwards\n\
# added through the runtime API, in dnsmasq's configuration-file syntax\n\
# (expose= is vmlan's --expose). Rewritten whole by the hub after each\n\
# change through the API; read at start.\n";

impl ApiState {
    /// The state file's text: [`HEADER`], then one line per reservation and record.
    pub fn render(&self) -> String {
        let mut s = String::from(HEADER);
        for r in &self.reservations {
            s.push_str(&format!("dhcp-host={}\n", dhcp_host_value(r)));
        }
        for r in &self.records {
            s.push_str(&r.line());
            s.push('\n');
        }
        for f in &self.forwards {
            s.push_str(&format!("expose={}\n", expose_value(f)));
        }
        s
    }

    /// Parses a state file's text: blank lines and `#` comments are skipped.
    ///
    /// # Errors
    /// The first bad line: its 1-based number and why (an unknown option, or
    /// the flag parser's error).
    pub fn parse(text: &str) -> std::result::Result<ApiState, (usize, String)> {
        ApiState::parse_checked(text, &|_| Ok(()))
    }

    /// [`ApiState::parse`], each `expose=` forward also checked by `check`
    /// (the hub's `--expose` checks: a guest inside `--addr`, a host on the
    /// segment); its error is the line's.
    ///
    /// # Errors
    /// As [`ApiState::parse`]; also a forward `check` refuses, or a second
    /// forward on the same local address and protocol.
    pub fn parse_checked(
        text: &str,
        check: &dyn Fn(&Spec) -> std::result::Result<(), String>,
    ) -> std::result::Result<ApiState, (usize, String)> {
        let mut st = ApiState::default();
        for (i, l) in text.lines().enumerate() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let bad = |e: String| (i + 1, e);
            let Some((key, value)) = l.split_once('=') else {
                return Err(bad(format!("{l:?}: expected option=value")));
            };
            match key.trim() {
                "dhcp-host" => {
                    let r = parse_dhcp_host(value).map_err(|e| bad(e.to_string()))?;
                    if r.mac.is_none() {
                        return Err(bad("an API reservation needs a MAC address".into()));
                    }
                    st.reservations.push(r);
                }
                "host-record" => {
                    let h = parse_host_record(value).map_err(|e| bad(e.to_string()))?;
                    for name in &h.names {
                        for ip in h.ipv4.map(IpAddr::V4).into_iter().chain(h.ipv6.map(IpAddr::V6)) {
                            st.records.push(ApiRecord::Host {
                                name: name.clone(),
                                ip,
                                ttl: h.ttl,
                            });
                        }
                    }
                }
                "cname" => {
                    let c = parse_cname(value).map_err(|e| bad(e.to_string()))?;
                    for alias in c.aliases {
                        st.records.push(ApiRecord::Cname {
                            alias,
                            target: c.target.clone(),
                            ttl: c.ttl,
                        });
                    }
                }
                "srv-host" => st
                    .records
                    .push(ApiRecord::Srv(parse_srv_host(value).map_err(|e| bad(e.to_string()))?)),
                "ptr-record" => {
                    let p = parse_ptr_record(value).map_err(|e| bad(e.to_string()))?;
                    st.records.push(ApiRecord::Ptr {
                        ip: p.ip,
                        target: p.target,
                    });
                }
                "local" => {
                    let r = parse_server("--local", value).map_err(|e| bad(e.to_string()))?;
                    match (r.domains.as_slice(), r.target) {
                        ([d], ServerTarget::Local) if !d.is_empty() => st.records.push(ApiRecord::Zone {
                            name: d.clone(),
                            default_ip: None,
                        }),
                        _ => return Err(bad(format!("local={value}: expected one zone, local=/ZONE/"))),
                    }
                }
                "address" => {
                    let r = parse_address(value).map_err(|e| bad(e.to_string()))?;
                    match (r.domains.as_slice(), r.answer) {
                        ([d], AddressAnswer::Ip(ip)) => st.records.push(ApiRecord::Zone {
                            name: d.clone(),
                            default_ip: Some(ip),
                        }),
                        _ => return Err(bad(format!("address={value}: expected one zone and an address, address=/ZONE/IP"))),
                    }
                }
                "expose" => {
                    let s = parse_spec(value).map_err(|e| bad(format!("--expose {e}")))?;
                    check(&s).map_err(|e| bad(format!("--expose {}: {e}", value.trim())))?;
                    if st
                        .forwards
                        .iter()
                        .any(|o| o.local == s.local && o.protocol == s.protocol)
                    {
                        return Err(bad(format!(
                            "--expose {}: {} {} is exposed twice",
                            value.trim(),
                            s.protocol.name(),
                            s.local
                        )));
                    }
                    st.forwards.push(s);
                }
                k => {
                    return Err(bad(format!(
                        "{k:?}: not an option of this file (dhcp-host, host-record, cname, srv-host, ptr-record, local, address, expose)"
                    )))
                }
            }
        }
        Ok(st)
    }

    /// Reads `--api-state FILE`; a missing file is an empty state (it is
    /// created at the first change). Each forward is checked by `check`
    /// ([`ApiState::parse_checked`]).
    ///
    /// # Errors
    /// The file cannot be read, is too large, or has a bad line (`FILE:LINE: why`).
    pub fn load(path: &Path, check: &dyn Fn(&Spec) -> std::result::Result<(), String>) -> Result<ApiState> {
        let flag = || format!("--api-state {}", path.display());
        let text = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ApiState::default()),
            Err(e) => return Err(e).with_context(flag),
            Ok(m) if m.len() > FILE_MAX => bail!("{}: larger than {FILE_MAX} bytes", flag()),
            Ok(_) => std::fs::read_to_string(path).with_context(flag)?,
        };
        ApiState::parse_checked(&text, check).map_err(|(line, why)| anyhow::anyhow!("{}:{line}: {why}", path.display()))
    }

    /// Writes the state to `path` atomically: `path.tmp` in the same
    /// directory, fsync, rename over `path`, fsync of the directory.
    ///
    /// # Errors
    /// Any I/O error; `path` then still holds the previous state.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let written = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(self.render().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(&dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ApiState {
        ApiState {
            reservations: vec![
                parse_dhcp_host("52:54:00:00:00:05,10.0.3.5,[1234::5],n1,7200").unwrap(),
                parse_dhcp_host("52:54:00:00:00:06,n2").unwrap(),
            ],
            records: vec![
                ApiRecord::Host {
                    name: "db".into(),
                    ip: "10.0.3.51".parse().unwrap(),
                    ttl: 30,
                },
                ApiRecord::Host {
                    name: "db6".into(),
                    ip: "1234::51".parse().unwrap(),
                    ttl: 0,
                },
                ApiRecord::Cname {
                    alias: "www".into(),
                    target: "db".into(),
                    ttl: 60,
                },
                ApiRecord::Srv(parse_srv_host("_http._tcp,db,8080,1,2").unwrap()),
                ApiRecord::Srv(parse_srv_host("_none._tcp").unwrap()),
                ApiRecord::Ptr {
                    ip: "10.0.3.52".parse().unwrap(),
                    target: "other.example".into(),
                },
                ApiRecord::Ptr {
                    ip: "1234::52".parse().unwrap(),
                    target: "other6".into(),
                },
                ApiRecord::Zone {
                    name: "dns.podman".into(),
                    default_ip: None,
                },
                ApiRecord::Zone {
                    name: "apps-crc.testing".into(),
                    default_ip: Some("10.0.3.9".parse().unwrap()),
                },
                ApiRecord::Zone {
                    name: String::new(),
                    default_ip: Some("0.0.0.0".parse().unwrap()),
                },
            ],
            forwards: vec![
                parse_spec("tcp:127.0.0.1:2222=10.0.3.5:22").unwrap(),
                parse_spec("udp:[::1]:5353=10.0.3.5:53").unwrap(),
                parse_spec("2223=10.0.3.6:22").unwrap(),
            ],
        }
    }

    /// No check: every forward is fine.
    fn any(_: &Spec) -> std::result::Result<(), String> {
        Ok(())
    }

    /// What is written is read back the same, through the flags' parsers.
    #[test]
    fn round_trip() {
        let st = sample();
        let text = st.render();
        assert!(text.starts_with("# vmlan hub --api-state"), "{text}");
        assert!(
            text.contains("dhcp-host=52:54:00:00:00:05,10.0.3.5,[1234::5],n1,7200\n"),
            "{text}"
        );
        assert!(text.contains("host-record=db,10.0.3.51,30\n"), "{text}");
        assert!(text.contains("cname=www,db,60\n"), "{text}");
        assert!(text.contains("srv-host=_http._tcp,db,8080,1,2\n"), "{text}");
        assert!(
            text.contains("ptr-record=52.3.0.10.in-addr.arpa,other.example\n"),
            "{text}"
        );
        assert!(text.contains("local=/dns.podman/\n"), "{text}");
        assert!(text.contains("address=/apps-crc.testing/10.0.3.9\n"), "{text}");
        assert!(text.contains("address=/#/0.0.0.0\n"), "{text}");
        for l in [
            "expose=tcp:127.0.0.1:2222=10.0.3.5:22\n",
            "expose=udp:[::1]:5353=10.0.3.5:53\n",
            "expose=tcp:127.0.0.1:2223=10.0.3.6:22\n",
        ] {
            assert!(text.contains(l), "{l} not in {text}");
        }
        assert_eq!(ApiState::parse(&text).unwrap(), st);
        // Each expose= value is an --expose value.
        for f in &st.forwards {
            assert_eq!(parse_spec(&expose_value(f)).unwrap(), *f);
        }
        assert!(st.records.iter().all(ApiRecord::round_trips));
        // A zone line is one zone with at most an address.
        assert!(ApiState::parse("local=/a/b/\n").is_err());
        assert!(ApiState::parse("address=/a/\n").is_err());
        assert!(st.reservations.iter().all(reservation_round_trips));
        // A hostname that reads as a lease time does not come back.
        let mut r = st.reservations[1].clone();
        r.hostname = Some("5m".into());
        assert!(!reservation_round_trips(&r));
    }

    /// The file is a `--conf-file` too: its lines are `vmlan hub` options,
    /// `expose=` lines `--expose` values.
    #[test]
    fn state_file_is_a_conf_file() {
        use clap::Args;
        let st = sample();
        let dir = std::env::temp_dir().join(format!("vmlan-api-state-conf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state.conf");
        st.save(&p).unwrap();
        let cmd = crate::hub_cmd::HubArgs::augment_args(clap::Command::new("hub"));
        let conf = crate::conf_file::read(std::slice::from_ref(&p), &cmd).unwrap();
        for f in &st.forwards {
            let arg = format!("--expose={}", expose_value(f));
            assert!(conf.args.contains(&arg), "{arg} not in {:?}", conf.args);
        }
        assert!(conf.warnings.is_empty(), "{:?}", conf.warnings);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The file on disk: written atomically, read back, absent = empty, and
    /// a bad line names FILE:LINE.
    #[test]
    fn save_and_load() {
        let dir = std::env::temp_dir().join(format!("vmlan-api-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state.conf");
        assert_eq!(ApiState::load(&p, &any).unwrap(), ApiState::default());
        sample().save(&p).unwrap();
        assert!(!dir.join("state.conf.tmp").exists());
        assert_eq!(ApiState::load(&p, &any).unwrap(), sample());
        std::fs::write(&p, "# c\n\ncname=a,b\nhost-record=x,nonsense\n").unwrap();
        let e = ApiState::load(&p, &any).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:4: ", p.display())), "{e}");
        assert!(e.contains("--host-record"), "{e}");
        // The hub's check refuses a forward: FILE:LINE and its reason.
        std::fs::write(&p, "cname=a,b\nexpose=tcp:127.0.0.1:2222=10.0.4.5:22\n").unwrap();
        let outside = |s: &Spec| match s.remote.ip().octets()[2] {
            3 => Ok(()),
            _ => Err(format!("{} is not a guest on the segment", s.remote)),
        };
        let e = ApiState::load(&p, &outside).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:2: --expose tcp:127.0.0.1:2222=10.0.4.5:22: 10.0.4.5:22 is not a guest on the segment",
                p.display()
            )
        );
        assert_eq!(ApiState::load(&p, &any).unwrap().forwards.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Bad lines: an unknown option, no `=`, a bad value of each kind.
    #[test]
    fn bad_lines() {
        for (text, line, says) in [
            ("server=1.1.1.1\n", 1, "not an option"),
            ("\n\ndhcp-host\n", 3, "option=value"),
            ("dhcp-host=zz:zz\n", 1, "--dhcp-host"),
            ("dhcp-host=id:00:01:02,[1234::7]\n", 1, "needs a MAC"),
            ("cname=onlyone\n", 1, "--cname"),
            ("srv-host=_x._tcp,t,99999\n", 1, "--srv-host"),
            ("ptr-record=web.example,x\n", 1, "--ptr-record"),
            ("expose=tcp:127.0.0.1:2222\n", 1, "--expose"),
            ("expose=sctp:127.0.0.1:22=10.0.3.5:22\n", 1, "--expose"),
            ("expose=127.0.0.1:0=10.0.3.5:22\n", 1, "port 0"),
            (
                "expose=2222=10.0.3.5:22\nexpose=udp:127.0.0.1:2222=10.0.3.5:22\nexpose=tcp:127.0.0.1:2222=10.0.3.6:22\n",
                3,
                "exposed twice",
            ),
        ] {
            let (n, why) = ApiState::parse(text).unwrap_err();
            assert_eq!(n, line, "{text:?}: {why}");
            assert!(why.contains(says), "{text:?}: {why}");
        }
    }
}
