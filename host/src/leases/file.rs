//! The lease files' formats, as text (no I/O here: the vmlan-store crate
//! reads and writes the files).
//!
//! The leases file is dnsmasq's (dnsmasq src/lease.c `lease_update_file`),
//! one lease per line,
//!
//! ```text
//! <expiry-epoch-seconds> <mac> <ipv4> <hostname|*> <client-id|*>
//! ```
//!
//! with expiry 0 meaning an infinite lease and the client id as colon-separated
//! hex, so tools that read dnsmasq's file read ours. dnsmasq's `duid` line and
//! IPv6 lease lines are skipped when the IPv4 leases are read.
//!
//! After the IPv4 lines, when DHCPv6 is in use, dnsmasq writes one line with
//! its own (the server's) DUID, then one line per DHCPv6 lease (dnsmasq
//! src/lease.c `lease_update_file`):
//!
//! ```text
//! duid <server-duid>
//! <expiry-epoch-seconds> [T]<iaid> <ipv6> <hostname|*> <client-duid|*>
//! ```
//!
//! with the DUIDs as colon-separated hex, the IAID in decimal (prefixed `T`
//! for a temporary address, IA_TA), expiry 0 meaning an infinite lease.
//! [`Lease6`] is such a line ([`Lease6::from_line`], [`Lease6::write_line`]);
//! [`write_duid_line`] and [`parse_duid_line`] the `duid` line;
//! [`parse_v6_text`] reads both out of a whole file's text.
//!
//! [`LeaseDb::from_texts`] reads a file's text with its journals' (see
//! [`super::journal`]) replayed on top.

use std::net::Ipv6Addr;

use super::journal::parse_journal_line;
use super::table::{Lease, LeaseChange, LeaseDb};

impl Lease {
    /// Appends [`Lease::to_line`]'s text to `out`, without allocating.
    pub fn write_line(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(
            out,
            "{} {} {} {} ",
            self.expires,
            self.mac,
            self.ip,
            self.hostname.as_deref().unwrap_or("*")
        );
        match &self.client_id {
            Some(id) if !id.is_empty() => write_hex(id, out),
            _ => out.push('*'),
        }
    }

    /// Parses one line of a dnsmasq leases file; `None` for a line that is not an
    /// IPv4 lease (dnsmasq's `duid` line and IPv6 leases are skipped).
    pub fn from_line(line: &str) -> Option<Lease> {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            return None;
        }
        let expires = f[0].parse().ok()?;
        let mac = f[1].parse().ok()?;
        let ip = f[2].parse().ok()?;
        let hostname = (f[3] != "*").then(|| f[3].to_string());
        let client_id = match f.get(4) {
            Some(&"*") | None => None,
            Some(s) => Some(parse_hex(s)?),
        };
        Some(Lease {
            mac,
            ip,
            hostname,
            client_id,
            expires,
        })
    }
}

/// `leases` as the text of a dnsmasq leases file, in the order given.
pub fn export_text<'a>(leases: impl ExactSizeIterator<Item = &'a Lease>) -> String {
    let mut text = String::with_capacity(leases.len() * 64);
    for l in leases {
        l.write_line(&mut text);
        text.push('\n');
    }
    text
}

pub(super) fn write_hex(bytes: &[u8], out: &mut String) {
    // By table, not `write!` per byte: a journal line per lease change goes
    // through here on the hub's thread, and a whole file's DUIDs at an export.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
}

pub(super) fn parse_hex(v: &str) -> Option<Vec<u8>> {
    v.split(':').map(|h| u8::from_str_radix(h, 16).ok()).collect()
}

impl LeaseDb {
    /// The table of a leases file's text `file` with the `journals`' texts
    /// replayed on top, in order. Every record is live: call
    /// [`LeaseDb::end_expired`] to mark those ended by a given time. Returns
    /// the table and the 1-based numbers of the file's lines that did not
    /// parse (blank lines are skipped silently; the `duid` line and the
    /// DHCPv6 leases go to [`LeaseDb::server_duid6`] and
    /// [`LeaseDb::leases6`]); a journal line that does not parse is ignored.
    pub fn from_texts(file: &str, journals: &[&str]) -> (LeaseDb, Vec<usize>) {
        let mut db = LeaseDb::default();
        let mut bad = Vec::new();
        for (n, line) in file.lines().enumerate() {
            match Lease::from_line(line) {
                Some(l) => db.apply(&LeaseChange::Put(l)),
                None => match (parse_duid_line(line), Lease6::from_line(line)) {
                    (Some(d), _) => db.apply(&LeaseChange::ServerDuid6(d)),
                    (_, Some(l)) => db.apply(&LeaseChange::Put6(l)),
                    _ if line.starts_with("duid ") || line.trim().is_empty() => {}
                    _ => bad.push(n + 1),
                },
            }
        }
        for change in journals.iter().flat_map(|j| j.lines()).filter_map(parse_journal_line) {
            db.apply(&change);
        }
        (db, bad)
    }
}

/// One DHCPv6 lease: a line of dnsmasq's leases file after its `duid` line
/// (see the [module](self) documentation). Leases are keyed by the client's
/// DUID and the IAID of its identity association (RFC 8415 section 4.2,
/// "binding").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease6 {
    /// Expiry as Unix seconds; 0 for an infinite lease (dnsmasq's convention).
    pub expires: u64,
    /// The identity association's IAID (RFC 8415 section 21.4).
    pub iaid: u32,
    /// A temporary address (IA_TA, RFC 8415 section 21.5; dnsmasq's `T`
    /// prefix on the IAID); `false` for IA_NA, the only kind vmlan leases.
    pub temporary: bool,
    /// The leased address.
    pub addr: Ipv6Addr,
    /// The client's hostname, if any (`*` in the file when none).
    pub hostname: Option<String>,
    /// The client's DUID (its Client Identifier option, RFC 8415 section
    /// 11); empty is written as `*`.
    pub duid: Vec<u8>,
}

impl Lease6 {
    /// True if the lease has expired at `now` (Unix seconds).
    pub fn expired(&self, now: u64) -> bool {
        self.expires != 0 && self.expires <= now
    }

    /// Appends the lease's line (without newline) to `out`:
    /// `<expiry> [T]<iaid> <ipv6> <hostname|*> <client-duid|*>`.
    pub fn write_line(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = write!(
            out,
            "{} {}{} {} {} ",
            self.expires,
            if self.temporary { "T" } else { "" },
            self.iaid,
            self.addr,
            self.hostname.as_deref().unwrap_or("*")
        );
        if self.duid.is_empty() {
            out.push('*');
        } else {
            write_hex(&self.duid, out);
        }
    }

    /// The lease's line, without newline (see [`Lease6::write_line`]).
    pub fn to_line(&self) -> String {
        let mut line = String::with_capacity(96);
        self.write_line(&mut line);
        line
    }

    /// Parses one DHCPv6 lease line of a dnsmasq leases file; `None` for any
    /// other line (an IPv4 lease, the `duid` line, a malformed line).
    pub fn from_line(line: &str) -> Option<Lease6> {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 5 {
            return None;
        }
        let expires = f[0].parse().ok()?;
        let (temporary, iaid) = match f[1].strip_prefix('T') {
            Some(rest) => (true, rest),
            None => (false, f[1]),
        };
        let iaid = iaid.parse().ok()?;
        let addr = f[2].parse().ok()?;
        let hostname = (f[3] != "*").then(|| f[3].to_string());
        let duid = match f[4] {
            "*" => Vec::new(),
            s => parse_hex(s)?,
        };
        Some(Lease6 {
            expires,
            iaid,
            temporary,
            addr,
            hostname,
            duid,
        })
    }
}

/// Appends dnsmasq's `duid <server-duid>` line (without newline) to `out`,
/// the DUID as colon-separated hex.
pub fn write_duid_line(server_duid: &[u8], out: &mut String) {
    out.push_str("duid ");
    write_hex(server_duid, out);
}

/// The server DUID of a `duid <hex>` line; `None` for any other line.
pub fn parse_duid_line(line: &str) -> Option<Vec<u8>> {
    let hex = line.trim().strip_prefix("duid ")?.trim();
    parse_hex(hex).filter(|d| !d.is_empty())
}

/// The DHCPv6 part of a leases file's text: its server DUID (the `duid`
/// line, if any) and its DHCPv6 lease lines, in file order. Every other line
/// is skipped (the IPv4 lines are [`LeaseDb::from_texts`]' part).
pub fn parse_v6_text(file: &str) -> (Option<Vec<u8>>, Vec<Lease6>) {
    let mut duid = None;
    let mut leases = Vec::new();
    for line in file.lines() {
        if let Some(d) = parse_duid_line(line) {
            duid = Some(d);
        } else if let Some(l) = Lease6::from_line(line) {
            leases.push(l);
        }
    }
    (duid, leases)
}

/// The DHCPv6 part of a leases file, to append after the IPv4 lines
/// ([`export_text`]): the `duid` line, then one line per lease in the order
/// given, each with its newline. The `duid` line is written whenever
/// `server_duid` is known (not empty), with or without leases, as dnsmasq
/// writes it from its start whenever DHCPv6 is configured (checked against
/// dnsmasq 2.90 in tests/e2e_dnsmasq_leases6.rs); so a file exported before
/// the first DHCPv6 lease keeps the DUID the journal's later `add6` lines
/// belong to. An empty `server_duid` writes no `duid` line (never a `duid`
/// line without a DUID): the lease lines alone, which readers know by their
/// IPv6 address.
pub fn export_text6<'a>(server_duid: &[u8], leases: impl ExactSizeIterator<Item = &'a Lease6>) -> String {
    if server_duid.is_empty() && leases.len() == 0 {
        return String::new();
    }
    let mut text = String::with_capacity(64 + leases.len() * 96);
    if !server_duid.is_empty() {
        write_duid_line(server_duid, &mut text);
        text.push('\n');
    }
    for l in leases {
        l.write_line(&mut text);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leases::table::lease;

    #[test]
    fn dnsmasq_lines_round_trip() {
        let mut l = lease("00:00:00:11:11:11", "10.0.3.101", Some("master"), 1700000000);
        l.client_id = Some(vec![1, 0, 0, 0, 0x11, 0x11, 0x11]);
        let line = l.to_line();
        assert_eq!(
            line,
            "1700000000 00:00:00:11:11:11 10.0.3.101 master 01:00:00:00:11:11:11"
        );
        assert_eq!(Lease::from_line(&line), Some(l));
        let anon = Lease::from_line("0 00:00:00:22:22:22 10.0.3.150 * *").unwrap();
        assert!(!anon.expired(u64::MAX));
        assert_eq!((anon.hostname, anon.client_id), (None, None));
        assert!(Lease::from_line("duid 00:01:00:01").is_none());
        assert!(Lease::from_line("12 zz 10.0.3.1 * *").is_none());
    }

    /// A dual-stack leases file in the layout dnsmasq's lease.c
    /// `lease_update_file` writes (built from that code, not captured from a
    /// running dnsmasq): IPv4 lines, the `duid` line (the server's DUID-LLT),
    /// then IPv6 lines: an IA_NA with a name (client DUID-UUID), one without
    /// (DUID-LL), a temporary address (IA_TA), an infinite lease (DUID-EN).
    const DNSMASQ_DUAL_STACK: &str = "\
1700003600 52:54:00:12:34:56 192.168.122.10 vm1 01:52:54:00:12:34:56
1700003700 52:54:00:ab:cd:ef 192.168.122.11 * *
duid 00:01:00:01:2c:5e:1f:3a:52:54:00:00:00:01
1700003600 1193046 fd00:122::10 vm1 00:04:5a:17:21:9c:58:4b:4d:4e:a1:c3:10:2e:55:9d:42:0b
1700003650 3 fd00:122::2f * 00:03:00:01:52:54:00:ab:cd:ef
1700003650 T4 fd00:122::1:4 * 00:03:00:01:52:54:00:ab:cd:ef
0 0 fd00:122::99 infinite 00:02:00:00:ab:11:01:02:03:04
";

    #[test]
    fn dnsmasq_v6_lines_round_trip() {
        let l = Lease6 {
            expires: 1700000000,
            iaid: 0x1234_5678,
            temporary: false,
            addr: "fd00::1:10".parse().unwrap(),
            hostname: Some("vm1".into()),
            duid: vec![0, 3, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56],
        };
        let line = l.to_line();
        assert_eq!(
            line,
            "1700000000 305419896 fd00::1:10 vm1 00:03:00:01:52:54:00:12:34:56"
        );
        assert_eq!(Lease6::from_line(&line), Some(l.clone()));
        let anon = Lease6 {
            expires: 0,
            iaid: 7,
            temporary: true,
            hostname: None,
            duid: vec![],
            ..l
        };
        assert_eq!(anon.to_line(), "0 T7 fd00::1:10 * *");
        assert_eq!(Lease6::from_line(&anon.to_line()), Some(anon.clone()));
        assert!(!anon.expired(u64::MAX));
        let mut duid = String::new();
        write_duid_line(&[0, 3, 0, 1, 2, 0, 0, 0, 0, 1], &mut duid);
        assert_eq!(duid, "duid 00:03:00:01:02:00:00:00:00:01");
        assert_eq!(parse_duid_line(&duid), Some(vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 1]));
        // Neither kind of line is taken for the other, nor for an IPv4 lease.
        assert!(Lease6::from_line(&duid).is_none() && Lease::from_line(&duid).is_none());
        assert!(Lease::from_line(&line).is_none());
        assert!(Lease6::from_line("1700000000 00:00:00:11:11:11 10.0.3.101 master *").is_none());
        assert!(Lease6::from_line("17 x1 fd00::1 * *").is_none());
        assert!(Lease6::from_line("17 1 fd00::1 * 0g").is_none());
        assert!(parse_duid_line("duid ").is_none() && parse_duid_line("duid zz").is_none());
    }

    #[test]
    fn a_dnsmasq_dual_stack_file_reads_both_parts_and_writes_back_the_same() {
        let (db, bad) = LeaseDb::from_texts(DNSMASQ_DUAL_STACK, &[]);
        assert_eq!((db.len(), bad), (2, vec![]), "the IPv6 part is skipped silently");
        let (duid, v6) = parse_v6_text(DNSMASQ_DUAL_STACK);
        assert_eq!(
            duid,
            Some(vec![0, 1, 0, 1, 0x2c, 0x5e, 0x1f, 0x3a, 0x52, 0x54, 0, 0, 0, 1])
        );
        assert_eq!(v6.len(), 4);
        assert_eq!((v6[0].iaid, v6[0].hostname.as_deref()), (1193046, Some("vm1")));
        assert_eq!(v6[0].duid.len(), 18, "a DUID-UUID");
        assert_eq!((v6[2].temporary, v6[2].iaid), (true, 4));
        assert_eq!((v6[3].expires, v6[3].addr), (0, "fd00:122::99".parse().unwrap()));
        // Written back in the same order: the same text.
        let mut v4 = db.sorted();
        v4.sort_by_key(|l| l.expires);
        let text = export_text(v4.into_iter()) + &export_text6(duid.as_deref().unwrap(), v6.iter());
        assert_eq!(text, DNSMASQ_DUAL_STACK);
        // The duid line is written without leases too (dnsmasq does), but never empty.
        assert_eq!(export_text6(&[0, 3], std::iter::empty()), "duid 00:03\n");
        assert_eq!(export_text6(&[], std::iter::empty()), "");
        assert_eq!(export_text6(&[], v6[..1].iter()), format!("{}\n", v6[0].to_line()));
    }
}
