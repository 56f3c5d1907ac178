//! The files dnsmasq re-reads on SIGHUP (dnsmasq(8): `--addn-hosts`,
//! `--hostsdir`, `--dhcp-hostsfile`, `--dhcp-hostsdir`), parsed from their
//! text: no file access here, the driver reads the files. A hosts file is
//! the /etc/hosts format (`IP NAME [ALIAS...]`, `#` starts a comment; the
//! format of hosts(5), RFC 952 names); a DHCP hosts file has one
//! `--dhcp-host` value per line, without the `dhcp-host=` prefix. A bad line
//! is reported with its line number and skipped, as dnsmasq does; the rest
//! of the file still counts.

use std::net::IpAddr;

use crate::config::{check_hostname, parse_dhcp_host, HostRecord, Reservation};

/// A line of a file that was skipped: its 1-based number and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// The line number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// The lines of `text` that carry something: without `#` comments and
/// surrounding blanks, with their 1-based numbers.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter_map(|(i, l)| {
        let l = l.split('#').next().unwrap_or("").trim();
        (!l.is_empty()).then_some((i + 1, l))
    })
}

/// Parses a hosts file (`IP NAME [ALIAS...]` per line, hosts(5)): one
/// [`HostRecord`] per good line, with every name of the line (lower-cased),
/// the address as its A or AAAA record, and TTL 0 (dnsmasq's `local-ttl`
/// default). The first name is the one the address's PTR names, as dnsmasq.
/// Lines without a name, with a bad address or a bad name are returned as
/// [`BadLine`]s.
pub fn parse_hosts(text: &str) -> (Vec<HostRecord>, Vec<BadLine>) {
    let (mut records, mut bad) = (Vec::new(), Vec::new());
    for (line, l) in lines(text) {
        let mut words = l.split_whitespace();
        let ip = words.next().unwrap_or("");
        let Ok(ip) = ip.parse::<IpAddr>() else {
            bad.push(BadLine {
                line,
                reason: format!("{ip:?} is not an IP address"),
            });
            continue;
        };
        let names: Result<Vec<String>, String> = words.map(check_hostname).collect();
        match names {
            Ok(names) if names.is_empty() => bad.push(BadLine {
                line,
                reason: "no name after the address".into(),
            }),
            Ok(names) => records.push(HostRecord {
                names,
                ipv4: match ip {
                    IpAddr::V4(a) => Some(a),
                    IpAddr::V6(_) => None,
                },
                ipv6: match ip {
                    IpAddr::V6(a) => Some(a),
                    IpAddr::V4(_) => None,
                },
                ttl: 0,
            }),
            Err(reason) => bad.push(BadLine { line, reason }),
        }
    }
    (records, bad)
}

/// Parses a DHCP hosts file: one `--dhcp-host` value per line
/// ([`parse_dhcp_host`]), `#` comments and blank lines ignored. Lines the
/// parser refuses are returned as [`BadLine`]s.
pub fn parse_dhcp_hosts(text: &str) -> (Vec<Reservation>, Vec<BadLine>) {
    let (mut out, mut bad) = (Vec::new(), Vec::new());
    for (line, l) in lines(text) {
        match parse_dhcp_host(l) {
            Ok(r) => out.push(r),
            Err(e) => bad.push(BadLine {
                line,
                reason: e.to_string(),
            }),
        }
    }
    (out, bad)
}

/// Whether a file in a `--hostsdir`/`--dhcp-hostsdir` directory is read:
/// dnsmasq skips names starting with `.` and editor files (ending in `~`,
/// or starting and ending with `#`).
pub fn dir_entry_wanted(name: &str) -> bool {
    !(name.is_empty() || name.starts_with('.') || name.ends_with('~') || (name.starts_with('#') && name.ends_with('#')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lines() {
        let text = "# comment\n10.0.3.7 web www # trailing\n\n fd00::7  Web6\nnot-an-ip foo\n10.0.3.8\n10.0.3.9 -bad\n";
        let (r, bad) = parse_hosts(text);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].names, vec!["web", "www"]);
        assert_eq!(r[0].ipv4, Some("10.0.3.7".parse().unwrap()));
        assert_eq!(r[0].ipv6, None);
        assert_eq!(r[1].names, vec!["web6"]);
        assert_eq!(r[1].ipv6, Some("fd00::7".parse().unwrap()));
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![5, 6, 7]);
    }

    #[test]
    fn dhcp_hosts_lines() {
        let text = "00:00:00:11:11:11,10.0.3.101,master\n# x\nnonsense,,zz:zz\n00:00:00:22:22:22,10.0.3.102\n";
        let (r, bad) = parse_dhcp_hosts(text);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].hostname.as_deref(), Some("master"));
        assert_eq!(r[1].ip, Some("10.0.3.102".parse().unwrap()));
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 3);
        assert!(bad[0].reason.contains("--dhcp-host"), "{}", bad[0].reason);
    }

    #[test]
    fn dir_entries() {
        assert!(dir_entry_wanted("hosts"));
        assert!(!dir_entry_wanted(".hidden"));
        assert!(!dir_entry_wanted("hosts~"));
        assert!(!dir_entry_wanted("#hosts#"));
    }
}
