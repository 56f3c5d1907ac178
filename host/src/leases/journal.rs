//! The lease journal's format, as text. The journal beside the leases file
//! (`FILE.journal`, and `FILE.journal.old` while an export is written) holds
//! the table's changes since the file was written, one line each, appended
//! in order:
//!
//! ```text
//! add <a leases-file line>          (LeaseChange::Put)
//! del mac <mac> <ipv4>              (LeaseChange::Removed, a MAC-keyed lease)
//! del id <client-id> <ipv4>         (LeaseChange::Removed, a client-id-keyed lease)
//! add6 <a DHCPv6 leases-file line>  (LeaseChange::Put6)
//! del6 <client-duid> <iaid>         (LeaseChange::Removed6; the IAID in decimal)
//! duid <server-duid>                (LeaseChange::ServerDuid6)
//! ```
//!
//! A line that does not parse (a torn last line after a power loss mid-append)
//! is ignored.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::file::{parse_duid_line, write_duid_line, Lease6};
use super::file::{parse_hex, write_hex};
use super::table::{Lease, LeaseChange, LeaseKey};

/// Appends `change` as one journal line (with its newline) to `out`.
pub fn write_journal_line(change: &LeaseChange, out: &mut String) {
    use std::fmt::Write;
    match change {
        LeaseChange::Put(l) => {
            out.push_str("add ");
            l.write_line(out);
        }
        LeaseChange::Removed(LeaseKey::Mac(m), ip) => {
            let _ = write!(out, "del mac {m} {ip}");
        }
        LeaseChange::Removed(LeaseKey::ClientId(id), ip) => {
            out.push_str("del id ");
            write_hex(id, out);
            let _ = write!(out, " {ip}");
        }
        LeaseChange::Put6(l) => {
            out.push_str("add6 ");
            l.write_line(out);
        }
        LeaseChange::Removed6(duid, iaid) => {
            out.push_str("del6 ");
            write_hex(duid, out);
            let _ = write!(out, " {iaid}");
        }
        LeaseChange::ServerDuid6(d) => write_duid_line(d, out),
    }
    out.push('\n');
}

/// Parses one journal line (without its newline); `None` if it does not parse.
pub fn parse_journal_line(line: &str) -> Option<LeaseChange> {
    let (kind, rest) = line.split_once(' ')?;
    match kind {
        "add" => Lease::from_line(rest).map(LeaseChange::Put),
        "add6" => Lease6::from_line(rest).map(LeaseChange::Put6),
        "del6" => {
            let (duid, iaid) = rest.split_once(' ')?;
            Some(LeaseChange::Removed6(parse_hex(duid)?, iaid.parse().ok()?))
        }
        "duid" => parse_duid_line(line).map(LeaseChange::ServerDuid6),
        "del" => {
            let mut f = rest.split(' ');
            let (k, v, ip) = (f.next()?, f.next()?, f.next()?);
            let key = match k {
                "mac" => LeaseKey::Mac(v.parse().ok()?),
                "id" => LeaseKey::ClientId(parse_hex(v)?),
                _ => return None,
            };
            Some(LeaseChange::Removed(key, ip.parse::<Ipv4Addr>().ok()?))
        }
        _ => None,
    }
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = OsString::from(path.as_os_str());
    p.push(suffix);
    PathBuf::from(p)
}

/// The journal of the leases file at `path`: `path.journal`.
pub fn journal_path(path: &Path) -> PathBuf {
    with_suffix(path, ".journal")
}

/// Where the journal goes while its export is written: `path.journal.old`.
pub fn old_journal_path(path: &Path) -> PathBuf {
    with_suffix(path, ".journal.old")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leases::table::lease;
    use crate::leases::LeaseDb;

    #[test]
    fn journal_lines_round_trip_and_a_torn_line_is_ignored() {
        let mut with_id = lease("00:00:00:22:22:22", "10.0.3.102", None, 0);
        with_id.client_id = Some(vec![0xff, 1, 2]);
        let changes = [
            LeaseChange::Put(lease("00:00:00:11:11:11", "10.0.3.101", Some("a"), 5)),
            LeaseChange::Removed(
                LeaseKey::Mac("00:00:00:11:11:11".parse().unwrap()),
                "10.0.3.101".parse().unwrap(),
            ),
            LeaseChange::Put(with_id.clone()),
            LeaseChange::Removed(with_id.key(), with_id.ip),
        ];
        let mut text = String::new();
        for c in &changes {
            write_journal_line(c, &mut text);
        }
        assert_eq!(
            text,
            "add 5 00:00:00:11:11:11 10.0.3.101 a *\ndel mac 00:00:00:11:11:11 10.0.3.101\n\
             add 0 00:00:00:22:22:22 10.0.3.102 * ff:01:02\ndel id ff:01:02 10.0.3.102\n"
        );
        let back: Vec<_> = text.lines().filter_map(parse_journal_line).collect();
        assert_eq!(back, changes);
        // A power loss mid-append leaves half a line: ignored.
        let (db, bad) = LeaseDb::from_texts(
            "7 00:00:00:33:33:33 10.0.3.103 * *\nnonsense\n",
            &["add 9 00:00:00:44:44:44 10.0.3.104 * *\nadd 1000 00:00:00:55:55"],
        );
        assert_eq!((db.len(), bad), (2, vec![2]));
        assert_eq!(journal_path(Path::new("/x/leases")), Path::new("/x/leases.journal"));
        assert_eq!(old_journal_path(Path::new("leases")), Path::new("leases.journal.old"));
    }
}
