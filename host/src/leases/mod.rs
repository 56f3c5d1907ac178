//! Leases: the table ([`table`]) and its files' text formats: dnsmasq's
//! leases file ([`file`](mod@file)) and the journal of changes beside it ([`journal`]).
//! Persisting them (journal appends, exports, syncs) is the driver's work,
//! in the vmlan-store crate; nothing here touches a file.

pub mod file;
pub mod journal;
pub mod table;

pub use file::{export_text, export_text6, parse_duid_line, parse_v6_text, write_duid_line, Lease6};
pub use journal::{journal_path, old_journal_path, parse_journal_line, write_journal_line};
pub use table::{Lease, LeaseChange, LeaseDb, LeaseKey};
