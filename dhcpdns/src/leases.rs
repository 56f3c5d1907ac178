//! The lease table and its files.
//!
//! The table is exported in dnsmasq's leases-file format (dnsmasq src/lease.c
//! `lease_update_file`), one lease per line,
//!
//! ```text
//! <expiry-epoch-seconds> <mac> <ipv4> <hostname|*> <client-id|*>
//! ```
//!
//! with expiry 0 meaning an infinite lease and the client id as colon-separated
//! hex, so tools that read dnsmasq's file read ours.
//!
//! Persistence keeps the cost of a lease change flat however many leases there
//! are (dnsmasq rewrites its whole file on every change): each change is one
//! line appended to a journal beside the file (`FILE.journal`); the file
//! itself is rewritten atomically (temporary file, fsync, rename, fsync of the
//! directory) only when the table is compacted: when the journal has grown past
//! the table's size, and at the latest [`EXPORT_DELAY`] after a change, so the
//! exported file is never more than that behind. Compacting while the hub runs
//! takes a snapshot of the table, renames the journal to `FILE.journal.old`,
//! starts a new one, and leaves the writing to a thread of its own
//! ([`crate::lease_writer`]), which removes `FILE.journal.old` once the new
//! file is in place: clients are not kept waiting for the disk. At start the
//! file is read and `FILE.journal.old` (if an export was cut short) and the
//! journal replayed on top of it. Appends reach the kernel at once (a crash
//! of the hub loses nothing); [`LeaseDb::sync`] makes them durable on disk, at
//! most once a second from the host's tick, on the writer thread. A torn last
//! journal line (power loss mid-append) is ignored.
//!
//! Leases are keyed by the client identifier (DHCP option 61) when the client
//! sends one, else by its MAC address (RFC 2131 section 4.2).
//!
//! Ended leases are remembered: a lease its client released (RELEASE) or that
//! expired stays in the table, marked ended, as the address that client last
//! had, so the DHCP server can give it the same address when it comes back
//! (dhcp.rs). In the file it is an ordinary line whose expiry lies in the past
//! (the time of the release, or the lease's own expiry): dnsmasq drops such
//! lines when it reads a lease file, `vmlan leases` and `vmlan status` skip
//! them, and any reader must compare the expiry with the clock, as with
//! dnsmasq's own file, which holds an expired lease until its next prune. This
//! was chosen over a record of its own because it keeps one file in dnsmasq's
//! format and the journal as it was (a release is an `add` line carrying that
//! expiry; an expiry writes nothing), where a second file would have to stay
//! consistent with the first through every compaction and crash. At start,
//! every line that has expired by then is an ended record.
//!
//! An ended record goes when its client is granted a lease again, when another
//! client is granted its address, or when it is removed: there is at most one
//! record per client and one per address, so the table never holds more
//! records than there are addresses it has handed out. [`LeaseDb::get`],
//! [`LeaseDb::by_ip`], [`LeaseDb::iter`] and [`LeaseDb::len`] see the live
//! leases only; [`LeaseDb::remembered`] and [`LeaseDb::remembered_at`] the ended ones.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use vmlan_hub::MacAddr;

use crate::lease_writer::Writer;

/// One lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The client's hardware address.
    pub mac: MacAddr,
    /// The leased address.
    pub ip: Ipv4Addr,
    /// The client's hostname (configured or from option 12), if any.
    pub hostname: Option<String>,
    /// The client identifier (option 61), if the client sent one.
    pub client_id: Option<Vec<u8>>,
    /// Expiry as Unix seconds; 0 for an infinite lease (dnsmasq's convention).
    pub expires: u64,
}

impl Lease {
    /// True if the lease has expired at `now` (Unix seconds).
    pub fn expired(&self, now: u64) -> bool {
        self.expires != 0 && self.expires <= now
    }

    /// The lease as one line of dnsmasq's leases file (without newline).
    pub fn to_line(&self) -> String {
        let mut line = String::with_capacity(64);
        self.write_line(&mut line);
        line
    }

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
            Some(id) if !id.is_empty() => {
                for (i, b) in id.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ":" };
                    let _ = write!(out, "{sep}{b:02x}");
                }
            }
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
            Some(s) => Some(
                s.split(':')
                    .map(|h| u8::from_str_radix(h, 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .ok()?,
            ),
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

/// How a lease is found: by client identifier when the client sent one, else by MAC.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LeaseKey {
    /// DHCP option 61, type byte included.
    ClientId(Vec<u8>),
    /// The client's hardware address.
    Mac(MacAddr),
}

impl LeaseKey {
    /// The key of a client with hardware address `mac` and optional identifier `client_id`.
    pub fn of(mac: MacAddr, client_id: Option<&[u8]>) -> LeaseKey {
        match client_id {
            Some(id) if !id.is_empty() => LeaseKey::ClientId(id.to_vec()),
            _ => LeaseKey::Mac(mac),
        }
    }
}

impl Lease {
    /// The key this lease is found by.
    pub fn key(&self) -> LeaseKey {
        LeaseKey::of(self.mac, self.client_id.as_deref())
    }
}

/// At the latest this long (seconds) after a change, the dnsmasq-format file is rewritten.
pub const EXPORT_DELAY: u64 = 5;

/// The journal is compacted once it holds more lines than this or the table's size.
const MIN_JOURNAL: usize = 4096;

/// The files behind a persisted table.
#[derive(Debug)]
struct Files {
    path: PathBuf,
    journal_path: PathBuf,
    /// Where the journal goes while its export is written (see the module's comment).
    old_journal_path: PathBuf,
    journal: fs::File,
    writer: Writer,
    lines: usize,
    unsynced: bool,
    dirty_since: Option<u64>,
}

/// A record of the table: a lease, live or ended (released or expired).
#[derive(Debug, Clone)]
struct Entry {
    lease: Lease,
    /// Released or expired: kept as the address its client last had.
    ended: bool,
}

/// The leases, indexed by key and by address, optionally persisted.
#[derive(Debug, Default)]
pub struct LeaseDb {
    /// Every record, live and ended.
    by_key: HashMap<LeaseKey, Entry>,
    /// The address of every record, live and ended.
    by_ip: HashMap<Ipv4Addr, LeaseKey>,
    /// How many records are live.
    live: usize,
    /// No live lease expires before this (Unix seconds; `None`: none expires), so
    /// [`LeaseDb::expire`] scans the table only when one may have.
    earliest: Option<u64>,
    files: Option<Files>,
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

fn journal_path(path: &Path) -> PathBuf {
    with_suffix(path, ".journal")
}

fn old_journal_path(path: &Path) -> PathBuf {
    with_suffix(path, ".journal.old")
}

/// `leases` as the text of a dnsmasq leases file, in the order given.
pub(crate) fn export_text<'a>(leases: impl ExactSizeIterator<Item = &'a Lease>) -> String {
    let mut text = String::with_capacity(leases.len() * 64);
    for l in leases {
        l.write_line(&mut text);
        text.push('\n');
    }
    text
}

/// Reads `p`; a missing file is empty.
fn read_or_empty(p: &Path) -> io::Result<String> {
    match fs::read_to_string(p) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

/// The identity of `FILE.journal.old` (`None`: absent), to see whether a
/// running hub rotated or exported while we read.
fn file_id(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

fn key_text(key: &LeaseKey) -> String {
    match key {
        LeaseKey::ClientId(id) => format!("id {}", hex(id)),
        LeaseKey::Mac(m) => format!("mac {m}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn parse_key(kind: &str, v: &str) -> Option<LeaseKey> {
    match kind {
        "mac" => v.parse().ok().map(LeaseKey::Mac),
        "id" => v
            .split(':')
            .map(|h| u8::from_str_radix(h, 16))
            .collect::<Result<Vec<u8>, _>>()
            .ok()
            .map(LeaseKey::ClientId),
        _ => None,
    }
}

impl LeaseDb {
    /// An empty table that is never written to disk.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Opens the table persisted at `path` (and `path.journal`): reads the file,
    /// replays the journal, marks the leases expired at `now` (Unix seconds) as
    /// ended (remembered), and compacts. A missing file is an empty table; lines
    /// that do not parse are skipped with a warning.
    ///
    /// # Errors
    /// A file exists but cannot be read, or the compacted file cannot be written.
    pub fn open(path: &Path, now: u64) -> io::Result<Self> {
        let mut db = Self::read(path)?;
        for e in db.by_key.values_mut() {
            e.ended = e.lease.expired(now);
        }
        db.live = db.by_key.values().filter(|e| !e.ended).count();
        db.earliest = db.live_expiries().min();
        let jp = journal_path(path);
        let journal = fs::OpenOptions::new().create(true).append(true).open(&jp)?;
        db.files = Some(Files {
            path: path.to_path_buf(),
            journal_path: jp,
            old_journal_path: old_journal_path(path),
            journal,
            writer: Writer::start()?,
            lines: 0,
            unsynced: false,
            dirty_since: None,
        });
        db.compact()?;
        Ok(db)
    }

    /// Reads the table persisted at `path` (file and journal) without taking it
    /// over: for `vmlan leases`, while a hub may be running. Without a clock,
    /// every record counts as live here, ended ones included: readers compare
    /// each lease's expiry with the clock ([`Lease::expired`]).
    ///
    /// # Errors
    /// A file exists but cannot be read.
    pub fn read(path: &Path) -> io::Result<Self> {
        // A running hub may rotate the journal or finish an export while we
        // read: read again until FILE.journal.old stayed the same throughout.
        let old = old_journal_path(path);
        let mut attempts = 0;
        loop {
            let before = file_id(&old);
            let file = read_or_empty(path)?;
            let old_text = read_or_empty(&old)?;
            let journal = read_or_empty(&journal_path(path))?;
            attempts += 1;
            if file_id(&old) == before || attempts == 5 {
                return Ok(Self::from_texts(path, &file, &[&old_text, &journal]));
            }
        }
    }

    /// The table of a leases file's text `file` with the `journals` replayed on top.
    fn from_texts(path: &Path, file: &str, journals: &[&str]) -> Self {
        let mut db = LeaseDb::default();
        for (n, line) in file.lines().enumerate() {
            match Lease::from_line(line) {
                Some(l) => db.insert_mem(l, false),
                None if line.starts_with("duid ") || line.trim().is_empty() => {}
                None => {
                    tracing::warn!(file = %path.display(), line = n + 1, "skipping a lease line that does not parse")
                }
            }
        }
        for line in journals.iter().flat_map(|j| j.lines()) {
            let mut w = line.splitn(2, ' ');
            match (w.next(), w.next()) {
                (Some("add"), Some(rest)) => {
                    if let Some(l) = Lease::from_line(rest) {
                        db.insert_mem(l, false);
                    }
                }
                (Some("del"), Some(rest)) => {
                    let mut f = rest.split(' ');
                    if let Some(k) = f.next().zip(f.next()).and_then(|(kind, v)| parse_key(kind, v)) {
                        db.remove_mem(&k);
                    }
                }
                _ => {} // a torn last line
            }
        }
        db
    }

    /// Puts `lease` in the table as the only record of its key and of its
    /// address (any other record of either goes), live or `ended`.
    fn insert_mem(&mut self, lease: Lease, ended: bool) {
        let key = lease.key();
        if let Some(old) = self.by_key.remove(&key) {
            self.by_ip.remove(&old.lease.ip);
            self.live -= usize::from(!old.ended);
        }
        if let Some(other) = self.by_ip.insert(lease.ip, key.clone()) {
            if other != key {
                if let Some(o) = self.by_key.remove(&other) {
                    self.live -= usize::from(!o.ended);
                }
            }
        }
        if !ended {
            self.live += 1;
            if lease.expires != 0 {
                self.earliest = Some(self.earliest.map_or(lease.expires, |e| e.min(lease.expires)));
            }
        }
        self.by_key.insert(key, Entry { lease, ended });
    }

    fn remove_mem(&mut self, key: &LeaseKey) -> Option<Lease> {
        let old = self.by_key.remove(key)?;
        self.by_ip.remove(&old.lease.ip);
        self.live -= usize::from(!old.ended);
        Some(old.lease)
    }

    /// The expiries of the live leases that expire.
    fn live_expiries(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_key
            .values()
            .filter(|e| !e.ended && e.lease.expires != 0)
            .map(|e| e.lease.expires)
    }

    /// The live lease found by `key` (it may have expired since the last [`LeaseDb::expire`]).
    pub fn get(&self, key: &LeaseKey) -> Option<&Lease> {
        self.by_key.get(key).filter(|e| !e.ended).map(|e| &e.lease)
    }

    /// The live lease holding `ip` (it may have expired since the last [`LeaseDb::expire`]).
    pub fn by_ip(&self, ip: &Ipv4Addr) -> Option<&Lease> {
        self.by_ip
            .get(ip)
            .and_then(|k| self.by_key.get(k))
            .filter(|e| !e.ended)
            .map(|e| &e.lease)
    }

    /// The ended (released or expired) lease of `key`: the address that client
    /// last had, with the time it ended as its expiry.
    pub fn remembered(&self, key: &LeaseKey) -> Option<&Lease> {
        self.by_key.get(key).filter(|e| e.ended).map(|e| &e.lease)
    }

    /// The ended lease whose address is `ip`, if no live lease holds it.
    pub fn remembered_at(&self, ip: &Ipv4Addr) -> Option<&Lease> {
        self.by_ip
            .get(ip)
            .and_then(|k| self.by_key.get(k))
            .filter(|e| e.ended)
            .map(|e| &e.lease)
    }

    /// Every live lease, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.by_key.values().filter(|e| !e.ended).map(|e| &e.lease)
    }

    /// Every record, live and ended (`true`), in no particular order.
    pub fn records(&self) -> impl Iterator<Item = (&Lease, bool)> {
        self.by_key.values().map(|e| (&e.lease, e.ended))
    }

    /// Every live lease, sorted by address.
    pub fn sorted(&self) -> Vec<&Lease> {
        let mut v: Vec<&Lease> = self.iter().collect();
        v.sort_by_key(|l| u32::from(l.ip));
        v
    }

    /// Makes room for `total` leases in all, so that growing to that many
    /// never rehashes the table (a rehash of 50,000 leases stalls for
    /// milliseconds).
    pub fn reserve(&mut self, total: usize) {
        self.by_key.reserve(total.saturating_sub(self.by_key.len()));
        self.by_ip.reserve(total.saturating_sub(self.by_ip.len()));
    }

    /// Number of live leases.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True if no lease is live.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Number of ended leases remembered.
    pub fn remembered_len(&self) -> usize {
        self.by_key.len() - self.live
    }

    /// Appends one journal line; compacts when the journal outgrew the table.
    fn log(&mut self, line: String, now: Option<u64>) -> io::Result<()> {
        let len = self.by_key.len();
        let Some(f) = &mut self.files else { return Ok(()) };
        f.journal.write_all(line.as_bytes())?;
        f.lines += 1;
        f.unsynced = true;
        if f.dirty_since.is_none() {
            f.dirty_since = now.or(Some(0));
        }
        if f.lines > MIN_JOURNAL.max(len) {
            self.compact_in_background()?;
        }
        Ok(())
    }

    /// Adds or replaces the lease of `lease.key()` (dropping any other holder of
    /// the address) and journals it, at `now` (Unix seconds).
    ///
    /// # Errors
    /// Writing the journal failed; the table is updated all the same.
    pub fn insert(&mut self, lease: Lease) -> io::Result<()> {
        let line = format!("add {}\n", lease.to_line());
        self.insert_mem(lease, false);
        self.log(line, None)
    }

    /// Ends the live lease of `key` at `now` (Unix seconds), as a RELEASE does:
    /// it stays as an ended record with expiry `now`, journaled as such.
    /// Returns the lease as it was; `None` if `key` has no live lease.
    ///
    /// # Errors
    /// Writing the journal failed; the lease is ended all the same.
    pub fn release(&mut self, key: &LeaseKey, now: u64) -> io::Result<Option<Lease>> {
        let Some(e) = self.by_key.get_mut(key).filter(|e| !e.ended) else {
            return Ok(None);
        };
        let was = e.lease.clone();
        e.ended = true;
        e.lease.expires = now;
        self.live -= 1;
        let line = format!("add {}\n", e.lease.to_line());
        self.log(line, None)?;
        Ok(Some(was))
    }

    /// Removes the record found by `key`, live or ended, and journals it; returns it.
    ///
    /// # Errors
    /// Writing the journal failed; the lease is removed all the same.
    pub fn remove(&mut self, key: &LeaseKey) -> io::Result<Option<Lease>> {
        let Some(old) = self.remove_mem(key) else {
            return Ok(None);
        };
        self.log(format!("del {} {}\n", key_text(key), old.ip), None)?;
        Ok(Some(old))
    }

    /// Ends every live lease expired at `now`; returns them. They stay as
    /// ended records (the file already says when they expired, so nothing is
    /// journaled).
    pub fn expire(&mut self, now: u64) -> Vec<Lease> {
        if self.earliest.is_none_or(|e| e > now) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for e in self.by_key.values_mut() {
            if !e.ended && e.lease.expired(now) {
                e.ended = true;
                out.push(e.lease.clone());
            }
        }
        self.live -= out.len();
        self.earliest = self.live_expiries().min();
        out
    }

    /// Housekeeping at `now` (Unix seconds), about once a second: makes appended
    /// journal lines durable (fdatasync) and exports the dnsmasq-format file
    /// [`EXPORT_DELAY`] after the first unexported change.
    ///
    /// # Errors
    /// Any I/O error.
    pub fn sync(&mut self, now: u64) -> io::Result<()> {
        let Some(f) = &mut self.files else { return Ok(()) };
        if f.unsynced {
            f.writer.sync(f.journal.try_clone()?);
            f.unsynced = false;
        }
        match f.dirty_since {
            Some(0) => f.dirty_since = Some(now),
            Some(t) if now >= t + EXPORT_DELAY => self.compact_in_background()?,
            _ => {}
        }
        Ok(())
    }

    /// Compacts without writing the file here: snapshots the table, rotates
    /// the journal to `FILE.journal.old`, opens a new journal and queues the
    /// export on the writer thread. Does nothing while the previous export is
    /// still running (the journal just grows a little longer); compacts
    /// synchronously ([`LeaseDb::compact`]) if a previous export failed.
    ///
    /// # Errors
    /// The journal cannot be renamed or a new one created (the old one is then
    /// kept), or the synchronous fallback failed.
    fn compact_in_background(&mut self) -> io::Result<()> {
        let Some(f) = &mut self.files else { return Ok(()) };
        if f.writer.exporting() {
            return Ok(());
        }
        if f.old_journal_path.exists() {
            return self.compact();
        }
        let snapshot: Vec<Lease> = self.by_key.values().map(|e| e.lease.clone()).collect();
        fs::rename(&f.journal_path, &f.old_journal_path)?;
        let journal = match fs::OpenOptions::new().create(true).append(true).open(&f.journal_path) {
            Ok(j) => j,
            Err(e) => {
                // Keep appending to the old journal, under its own name again.
                fs::rename(&f.old_journal_path, &f.journal_path)?;
                return Err(e);
            }
        };
        let old = std::mem::replace(&mut f.journal, journal);
        f.writer
            .export(snapshot, f.path.clone(), old, f.old_journal_path.clone());
        f.lines = 0;
        f.unsynced = false;
        f.dirty_since = None;
        Ok(())
    }

    /// Waits until the writer thread has done what was queued so far (journal
    /// syncs and exports); for tests and tools that read the files next.
    pub fn wait_for_writer(&self) {
        if let Some(f) = &self.files {
            f.writer.wait();
        }
    }

    /// Writes the whole table to the dnsmasq-format file (sorted by address),
    /// atomically, here and now (after the writer thread's queued work), then
    /// removes `FILE.journal.old` and empties the journal: at start and at a
    /// clean stop.
    ///
    /// # Errors
    /// Any I/O error; the old file and the journals are then left as they were.
    pub fn compact(&mut self) -> io::Result<()> {
        let Some(f) = &mut self.files else { return Ok(()) };
        f.writer.wait();
        let mut leases: Vec<&Lease> = self.by_key.values().map(|e| &e.lease).collect();
        leases.sort_unstable_by_key(|l| u32::from(l.ip));
        write_atomically(&f.path, export_text(leases.into_iter()).as_bytes())?;
        match fs::remove_file(&f.old_journal_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        f.journal = fs::File::create(&f.journal_path)?;
        f.journal.sync_all()?;
        f.journal = fs::OpenOptions::new().append(true).open(&f.journal_path)?;
        f.lines = 0;
        f.unsynced = false;
        f.dirty_since = None;
        Ok(())
    }
}

/// Replaces `path` with `data`: temporary file in the same directory, fsync, rename, fsync the directory.
///
/// # Errors
/// Any I/O error; the temporary file is removed and `path` is untouched.
pub fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(mac: &str, ip: &str, name: Option<&str>, expires: u64) -> Lease {
        Lease {
            mac: mac.parse().unwrap(),
            ip: ip.parse().unwrap(),
            hostname: name.map(str::to_string),
            client_id: None,
            expires,
        }
    }

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

    fn dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vmlan-leases-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn persists_atomically_and_reloads() {
        let dir = dir("reload");
        let path = dir.join("leases");
        let mut db = LeaseDb::open(&path, 100).unwrap();
        db.insert(lease("00:00:00:22:22:22", "10.0.3.102", Some("worker1"), 1000))
            .unwrap();
        db.insert(lease("00:00:00:11:11:11", "10.0.3.101", Some("master"), 0))
            .unwrap();
        db.insert(lease("00:00:00:33:33:33", "10.0.3.150", None, 150)).unwrap();
        // The changes are in the journal; the exported file follows at compaction.
        assert_eq!(
            fs::read_to_string(dir.join("leases.journal")).unwrap().lines().count(),
            3
        );
        db.compact().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("0 00:00:00:11:11:11 10.0.3.101 master *\n1000 "),
            "{text}"
        );
        assert_eq!(fs::read_to_string(dir.join("leases.journal")).unwrap(), "");
        // No temporary file left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);
        // More changes after the compaction live only in the journal; a reload
        // (at a time when the third lease has expired) replays them.
        db.remove(&LeaseKey::Mac("00:00:00:11:11:11".parse().unwrap())).unwrap();
        db.insert(lease("00:00:00:44:44:44", "10.0.3.160", Some("late"), 5000))
            .unwrap();
        drop(db);
        let db2 = LeaseDb::open(&path, 200).unwrap();
        assert_eq!(db2.len(), 2);
        assert_eq!(
            db2.by_ip(&"10.0.3.102".parse().unwrap()).unwrap().hostname.as_deref(),
            Some("worker1")
        );
        assert_eq!(
            db2.by_ip(&"10.0.3.160".parse().unwrap()).unwrap().hostname.as_deref(),
            Some("late")
        );
        assert!(db2.by_ip(&"10.0.3.101".parse().unwrap()).is_none());
        // Opening compacted: the exported file holds exactly the table, the
        // lease expired at 150 included as an ended (remembered) record.
        assert_eq!(db2.remembered_len(), 1);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains("150 00:00:00:33:33:33 10.0.3.150 * *"), "{text}");
        // A MAC that moves to a new address frees the old one.
        let mut db3 = db2;
        db3.insert(lease("00:00:00:22:22:22", "10.0.3.110", None, 1000))
            .unwrap();
        assert!(db3.by_ip(&"10.0.3.102".parse().unwrap()).is_none());
        assert_eq!(db3.expire(2000).len(), 1);
        assert_eq!(db3.len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn torn_journal_line_is_ignored_and_export_follows_the_delay() {
        let dir = dir("torn");
        let path = dir.join("leases");
        let mut db = LeaseDb::open(&path, 100).unwrap();
        db.insert(lease("00:00:00:22:22:22", "10.0.3.102", Some("worker1"), 1000))
            .unwrap();
        db.sync(100).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "", "not exported yet");
        db.sync(100 + EXPORT_DELAY).unwrap();
        db.wait_for_writer();
        assert!(fs::read_to_string(&path).unwrap().contains("worker1"));
        db.insert(lease("00:00:00:33:33:33", "10.0.3.103", None, 1000)).unwrap();
        drop(db);
        // A power loss mid-append leaves half a line.
        let mut j = fs::OpenOptions::new()
            .append(true)
            .open(dir.join("leases.journal"))
            .unwrap();
        j.write_all(b"add 1000 00:00:00:44:44").unwrap();
        drop(j);
        let db = LeaseDb::open(&path, 100).unwrap();
        assert_eq!(db.len(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn background_export_and_a_crash_before_the_old_journal_is_removed() {
        let dir = dir("rotate");
        let path = dir.join("leases");
        let mut db = LeaseDb::open(&path, 0).unwrap();
        let a = |ip: &str| lease("00:00:00:00:00:0a", ip, Some("a"), 0);
        let b = |ip: &str| lease("00:00:00:00:00:0b", ip, Some("b"), 0);
        db.insert(a("10.0.3.10")).unwrap();
        db.insert(b("10.0.3.11")).unwrap();
        db.insert(a("10.0.3.12")).unwrap(); // a moves
        db.insert(b("10.0.3.10")).unwrap(); // b takes a's old address
        db.insert(lease("00:00:00:00:00:0c", "10.0.3.13", None, 0)).unwrap();
        db.remove(&LeaseKey::Mac("00:00:00:00:00:0c".parse().unwrap())).unwrap();
        let journal = fs::read_to_string(dir.join("leases.journal")).unwrap();
        db.compact_in_background().unwrap();
        // Changes after the rotation go to the new journal.
        db.insert(lease("00:00:00:00:00:0d", "10.0.3.14", Some("d"), 0))
            .unwrap();
        // Read while the export may still be running: the same table.
        assert_eq!(LeaseDb::read(&path).unwrap().len(), 3);
        db.wait_for_writer();
        assert!(!dir.join("leases.journal.old").exists());
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("10.0.3.10 b") && text.contains("10.0.3.12 a"), "{text}");
        drop(db);
        // A crash after the new file was renamed in but before the old journal
        // was removed: replaying it again changes nothing.
        fs::write(dir.join("leases.journal.old"), journal).unwrap();
        let db = LeaseDb::open(&path, 0).unwrap();
        let mut got: Vec<String> = db.sorted().iter().map(|l| l.to_line()).collect();
        got.sort();
        assert_eq!(
            got,
            [
                "0 00:00:00:00:00:0a 10.0.3.12 a *",
                "0 00:00:00:00:00:0b 10.0.3.10 b *",
                "0 00:00:00:00:00:0d 10.0.3.14 d *"
            ]
        );
        assert!(!dir.join("leases.journal.old").exists(), "open compacts");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn expiry_scans_only_when_a_lease_may_have_run_out() {
        let mut db = LeaseDb::in_memory();
        db.insert(lease("00:00:00:00:00:01", "10.0.3.1", None, 0)).unwrap();
        assert_eq!(db.earliest, None, "an infinite lease never expires");
        db.insert(lease("00:00:00:00:00:02", "10.0.3.2", None, 300)).unwrap();
        db.insert(lease("00:00:00:00:00:03", "10.0.3.3", None, 200)).unwrap();
        assert_eq!(db.earliest, Some(200));
        assert!(db.expire(199).is_empty());
        assert_eq!(db.expire(250).len(), 1);
        assert_eq!(db.earliest, Some(300));
        // A renewal that moves the only early lease later still expires on time.
        db.insert(lease("00:00:00:00:00:02", "10.0.3.2", None, 400)).unwrap();
        assert!(db.expire(350).is_empty());
        assert_eq!(db.earliest, Some(400));
        assert_eq!(db.expire(400).len(), 1);
        assert_eq!(db.earliest, None);
        assert_eq!(db.len(), 1);
    }

    #[test]
    fn ended_leases_are_remembered_across_a_restart() {
        let dir = dir("remember");
        let path = dir.join("leases");
        let mut db = LeaseDb::open(&path, 100).unwrap();
        let a = lease("00:00:00:00:00:0a", "10.0.3.101", Some("a"), 1000);
        let b = lease("00:00:00:00:00:0b", "10.0.3.102", None, 150);
        db.insert(a.clone()).unwrap();
        db.insert(b.clone()).unwrap();
        // RELEASE: no longer a lease, but the address A last had, ended at 120.
        assert_eq!(db.release(&a.key(), 120).unwrap(), Some(a.clone()));
        assert!(db.get(&a.key()).is_none() && db.by_ip(&a.ip).is_none());
        let r = db.remembered(&a.key()).unwrap();
        assert_eq!((r.ip, r.expires), (a.ip, 120));
        assert_eq!(db.remembered_at(&a.ip).map(|l| l.mac), Some(a.mac));
        assert_eq!((db.len(), db.remembered_len()), (1, 1));
        assert_eq!(db.release(&a.key(), 130).unwrap(), None, "released once");
        // Expiry ends B the same way, and journals nothing.
        assert_eq!(db.expire(200), vec![b.clone()]);
        assert_eq!(db.remembered(&b.key()).map(|l| l.ip), Some(b.ip));
        assert_eq!((db.len(), db.remembered_len()), (0, 2));
        assert!(db.iter().next().is_none());
        assert_eq!(
            fs::read_to_string(dir.join("leases.journal")).unwrap().lines().count(),
            3
        );
        // Another client granted B's address: B's record goes.
        let c = lease("00:00:00:00:00:0c", "10.0.3.102", None, 5000);
        db.insert(c.clone()).unwrap();
        assert!(db.remembered(&b.key()).is_none() && db.remembered_at(&b.ip).is_none());
        assert_eq!(db.by_ip(&c.ip).map(|l| l.mac), Some(c.mac));
        drop(db);
        // A restart: A's record is read back from the journal, still ended.
        let db = LeaseDb::open(&path, 300).unwrap();
        assert_eq!(db.remembered(&a.key()).map(|l| (l.ip, l.expires)), Some((a.ip, 120)));
        assert_eq!((db.len(), db.remembered_len()), (1, 1));
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "120 00:00:00:00:00:0a 10.0.3.101 a *\n5000 00:00:00:00:00:0c 10.0.3.102 * *\n"
        );
        // Readers see every line and judge the expiry themselves.
        let read = LeaseDb::read(&path).unwrap();
        let current: Vec<_> = read.iter().filter(|l| !l.expired(300)).map(|l| l.ip).collect();
        assert_eq!(current, [c.ip]);
        // A client granted a lease again has no ended record any more.
        let mut db = db;
        db.insert(lease("00:00:00:00:00:0a", "10.0.3.101", Some("a"), 9000))
            .unwrap();
        assert!(db.remembered(&a.key()).is_none());
        assert_eq!((db.len(), db.remembered_len()), (2, 0));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn client_id_keys_leases() {
        let mut db = LeaseDb::in_memory();
        let mut a = lease("00:00:00:22:22:22", "10.0.3.102", None, 0);
        a.client_id = Some(vec![0xff, 1, 2, 3]);
        let mut b = a.clone();
        b.client_id = Some(vec![0xff, 9, 9, 9]);
        b.ip = "10.0.3.103".parse().unwrap();
        db.insert(a.clone()).unwrap();
        db.insert(b).unwrap();
        // Same MAC, two client identifiers: two leases.
        assert_eq!(db.len(), 2);
        assert_eq!(db.get(&a.key()).unwrap().ip, a.ip);
        assert!(db.get(&LeaseKey::Mac(a.mac)).is_none());
    }

    #[test]
    fn change_cost_stays_flat() {
        // 20,000 renewals of 1,000 leases journal 20,000 short lines and compact a
        // few times: the file is rewritten once per MIN_JOURNAL changes, not per change.
        let dir = dir("flat");
        let path = dir.join("leases");
        let mut db = LeaseDb::open(&path, 0).unwrap();
        let mut compactions = 0;
        for n in 0..20_000u32 {
            let i = n % 1000;
            let ip = Ipv4Addr::from(0x0a00_0000 + i);
            let mac = MacAddr([2, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8, 1]);
            db.insert(Lease {
                mac,
                ip,
                hostname: None,
                client_id: None,
                expires: 0,
            })
            .unwrap();
            if db.files.as_ref().unwrap().lines == 0 {
                compactions += 1;
            }
        }
        assert!((1..=5).contains(&compactions), "{compactions} compactions");
        assert_eq!(LeaseDb::read(&path).unwrap().len(), 1000);
        fs::remove_dir_all(&dir).unwrap();
    }
}
