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
//! IPv6 lease lines are skipped when read.
//!
//! [`LeaseDb::from_texts`] reads a file's text with its journals' (see
//! [`super::journal`]) replayed on top.

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
    use std::fmt::Write;
    for (i, b) in bytes.iter().enumerate() {
        let sep = if i == 0 { "" } else { ":" };
        let _ = write!(out, "{sep}{b:02x}");
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
    /// parse (dnsmasq's `duid` line, IPv6 leases and blank lines are skipped
    /// silently); a journal line that does not parse is ignored.
    pub fn from_texts(file: &str, journals: &[&str]) -> (LeaseDb, Vec<usize>) {
        let mut db = LeaseDb::default();
        let mut bad = Vec::new();
        for (n, line) in file.lines().enumerate() {
            match Lease::from_line(line) {
                Some(l) => db.apply(&LeaseChange::Put(l)),
                None if line.starts_with("duid ") || line.trim().is_empty() => {}
                None => bad.push(n + 1),
            }
        }
        for change in journals.iter().flat_map(|j| j.lines()).filter_map(parse_journal_line) {
            db.apply(&change);
        }
        (db, bad)
    }
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
}
