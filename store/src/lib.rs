//! The lease store: the driver that keeps the host's lease table on disk.
//! The host (vmlan-host) knows no files; it records every change of its
//! table as a [`LeaseChange`], and this crate persists them.
//!
//! Files, beside each other (formats in `vmlan_host::leases::file`):
//! - `FILE`: dnsmasq's leases file (the IPv4 leases, then the `duid` line
//!   and the live DHCPv6 leases), rewritten whole and atomically
//!   (temporary file, fsync, rename, fsync of the directory) by an *export*;
//! - `FILE.journal`: the changes since, one line each, appended;
//! - `FILE.journal.old`: the journal being exported (present only while an
//!   export runs, or after one failed).
//!
//! The table is always `FILE`, then `FILE.journal.old`, then `FILE.journal`
//! replayed in order (replaying changes already in `FILE` again ends in the
//! same table, so a crash between an export's rename and the removal of
//! `FILE.journal.old` loses nothing).
//!
//! Durability ([`LeaseStore::append`]): the hub's segment calls its host's
//! `end_batch` once per batch of frames, after the host handled them and
//! before any reply of the batch is sent; the driver then appends that
//! batch's changes with one `write(2)`. So an ACK on the wire is in the
//! kernel's page cache first: a `kill -9` of the hub loses no ACKed lease.
//! `fdatasync(2)` (against a power loss) runs on the writer thread about once
//! a second, off the forwarding path.
//!
//! The writer thread (`vmlan-leases`, nice 10) does everything slow: it keeps
//! its own copy of the table, updated from the changes the appender sends it
//! (so an export needs no snapshot taken under the segment's lock), syncs the
//! journal, and exports the file when the journal has grown past the table's
//! size (at least [`MIN_JOURNAL`] lines) or [`EXPORT_DELAY`] after a change.
//!
//! Faults: when a write fails (a full disk, say), the store warns once for
//! the outage, keeps serving from memory (the host's table and the writer's
//! copy hold everything), stops appending to a journal that may now end in a
//! torn line, and retries the export every [`RETRY`]. The first export that
//! succeeds writes every lease, starts a fresh journal with the changes made
//! since, and logs that the file is written again.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use vmlan_host::leases::{
    export_text, export_text6, journal_path, old_journal_path, write_journal_line, LeaseChange, LeaseDb,
};

/// At the latest this long after a change, the dnsmasq-format file is rewritten.
pub const EXPORT_DELAY: Duration = Duration::from_secs(5);

/// The journal is exported once it holds more lines than this or the table's size.
pub const MIN_JOURNAL: usize = 4096;

/// How often the journal is made durable (`fdatasync`) while it is appended to.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

/// How often a failed export is tried again.
pub const RETRY: Duration = Duration::from_secs(2);

/// After taking changes, the writer thread sleeps this long and then takes
/// all that came meanwhile, so that under load the appender wakes it (a
/// futex wake and two context switches) about 100 times a second, not once
/// per batch; the journal's `write(2)` is the appender's and is not delayed.
pub const COALESCE: Duration = Duration::from_millis(10);

/// The journal as the appender and the writer thread share it.
struct Journal {
    /// Appended to; `None` after a failed write until an export succeeds.
    file: Option<fs::File>,
    /// To the writer thread, sent while this lock is held, so that when the
    /// writer rotates the journal (under the lock) its copy of the table
    /// holds exactly the changes written so far.
    tx: mpsc::Sender<Msg>,
}

enum Msg {
    Changes(Vec<LeaseChange>),
    /// Answered once everything sent before it is applied and any export due is done.
    Barrier(mpsc::Sender<()>),
    /// Export now and end the thread.
    Close(mpsc::Sender<io::Result<()>>),
}

/// State shared between the appender and the writer thread.
struct Shared {
    journal: Mutex<Journal>,
    /// A write failed and the outage has been logged; cleared when an export succeeds.
    outage: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs the first failure of an outage (later ones at debug level only).
    fn failed(&self, what: &str, path: &Path, e: &io::Error) {
        if !self.outage.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                file = %path.display(),
                error = %e,
                "cannot {what}; leases are kept in memory and written when the file can be written again (warned once per outage)"
            );
        } else {
            tracing::debug!(file = %path.display(), error = %e, "cannot {what}, still");
        }
    }
}

/// The lease store of one leases file (see the crate documentation).
pub struct LeaseStore {
    path: PathBuf,
    shared: Arc<Shared>,
    thread: Option<thread::JoinHandle<()>>,
    /// The batch's journal lines, reused.
    lines: String,
}

/// Reads the texts of `FILE`, `FILE.journal.old` and `FILE.journal` (missing: empty).
fn read_texts(path: &Path) -> io::Result<[String; 3]> {
    let read = |p: &Path| match fs::read_to_string(p) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    };
    Ok([read(path)?, read(&old_journal_path(path))?, read(&journal_path(path))?])
}

/// The table of the texts read by [`read_texts`], warning about file lines that do not parse.
fn table_of(path: &Path, texts: &[String; 3]) -> LeaseDb {
    let (db, bad) = LeaseDb::from_texts(&texts[0], &[&texts[1], &texts[2]]);
    for line in bad {
        tracing::warn!(file = %path.display(), line, "skipping a lease line that does not parse");
    }
    db
}

/// The identity of `p` (`None`: absent), to see whether a running hub rotated
/// or exported while we read.
fn file_id(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

/// Reads the table persisted at `path` (file and journals) without taking it
/// over: for `vmlan leases` and `vmlan status`, while a hub may be running.
/// Every record counts as live here, ended ones included: readers compare
/// each lease's expiry with the clock (`Lease::expired`).
///
/// # Errors
/// A file exists but cannot be read.
pub fn read(path: &Path) -> io::Result<LeaseDb> {
    // A running hub may rotate the journal or finish an export while we read:
    // read again until FILE.journal.old stayed the same throughout.
    let old = old_journal_path(path);
    let mut attempts = 0;
    loop {
        let before = file_id(&old);
        let texts = read_texts(path)?;
        attempts += 1;
        if file_id(&old) == before || attempts == 5 {
            return Ok(table_of(path, &texts));
        }
    }
}

/// Replaces `path` with `data`: temporary file in the same directory, fsync,
/// rename, fsync of the directory.
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

/// Writes `db`'s records, sorted by address, to `path` atomically.
fn export(path: &Path, db: &LeaseDb) -> io::Result<()> {
    let mut leases: Vec<_> = db.records().map(|(l, _)| l).collect();
    leases.sort_unstable_by_key(|l| u32::from(l.ip));
    let mut text = export_text(leases.into_iter());
    // The DHCPv6 part after the IPv4 lines, as dnsmasq writes it.
    text.push_str(&export_text6(db.server_duid6().unwrap_or_default(), db.leases6()));
    write_atomically(path, text.as_bytes())
}

fn open_journal(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new().create(true).append(true).open(path)
}

impl LeaseStore {
    /// Opens the table persisted at `path`: reads the file and replays the
    /// journals, marks the leases expired at `now` (Unix seconds) as ended,
    /// writes the file whole (so it starts from one file and an empty
    /// journal) and starts the writer thread. Returns the store and the table,
    /// which records its changes for [`LeaseStore::append`]. A missing file is
    /// an empty table; file lines that do not parse are skipped with a warning.
    ///
    /// # Errors
    /// A file exists but cannot be read, the file cannot be written, or the
    /// thread cannot be started.
    pub fn open(path: &Path, now: u64) -> io::Result<(LeaseStore, LeaseDb)> {
        let mut db = table_of(path, &read_texts(path)?);
        db.end_expired(now);
        export(path, &db)?;
        let (jp, old) = (journal_path(path), old_journal_path(path));
        match fs::remove_file(&old) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let file = fs::File::create(&jp)?;
        file.sync_all()?;
        drop(file);
        let file = open_journal(&jp)?;
        let mut mirror = table_of(path, &read_texts(path)?);
        mirror.end_expired(now);
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            journal: Mutex::new(Journal { file: Some(file), tx }),
            outage: AtomicBool::new(false),
        });
        let writer = Writer {
            path: path.to_path_buf(),
            shared: shared.clone(),
            rx,
            deferred: Vec::new(),
            mirror,
            lines: 0,
            dirty_since: None,
            unsynced: false,
            last_sync: Instant::now(),
            old_left: false,
            retry_at: None,
        };
        let thread = thread::Builder::new()
            .name("vmlan-leases".into())
            .spawn(move || writer.run())?;
        db.record_changes();
        Ok((
            LeaseStore {
                path: path.to_path_buf(),
                shared,
                thread: Some(thread),
                lines: String::new(),
            },
            db,
        ))
    }

    /// Appends `changes` (one batch's, in order) to the journal with one
    /// `write(2)`, and hands them to the writer thread. During an outage
    /// (see the crate documentation) nothing is written: the writer's copy of
    /// the table keeps the changes until the file can be written again.
    pub fn append(&mut self, changes: &[LeaseChange]) {
        if changes.is_empty() {
            return;
        }
        self.lines.clear();
        for c in changes {
            write_journal_line(c, &mut self.lines);
        }
        let mut j = self.shared.lock();
        if let Some(f) = &mut j.file {
            if let Err(e) = f.write_all(self.lines.as_bytes()) {
                // What was written may end in a torn line: stop appending
                // until an export has replaced the journal.
                j.file = None;
                self.shared.failed("append to the lease journal", &self.path, &e);
            }
        }
        let _ = j.tx.send(Msg::Changes(changes.to_vec()));
    }

    /// Waits until the writer thread has applied everything appended so far
    /// and done any sync or export then due (for tests and tools that read
    /// the files next).
    pub fn wait(&self) {
        let (done, wait) = mpsc::channel();
        let _ = self.shared.lock().tx.send(Msg::Barrier(done));
        let _ = wait.recv();
    }

    /// At a clean stop: exports the file now (it otherwise trails the journal
    /// by up to [`EXPORT_DELAY`]), empties the journal and ends the thread.
    ///
    /// # Errors
    /// The export failed (the journals are then left as they were).
    pub fn close(mut self) -> io::Result<()> {
        let (done, wait) = mpsc::channel();
        let _ = self.shared.lock().tx.send(Msg::Close(done));
        let result = wait.recv().unwrap_or(Ok(()));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        result
    }
}

/// The writer thread's state.
struct Writer {
    path: PathBuf,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Msg>,
    /// Barriers and a close met while draining the changes mid-export, handled after it.
    deferred: Vec<Msg>,
    /// The table as the journal (and any old journal) on top of the file make it.
    mirror: LeaseDb,
    /// Journal lines since the last rotation.
    lines: usize,
    dirty_since: Option<Instant>,
    unsynced: bool,
    last_sync: Instant,
    /// `FILE.journal.old` is still there: an export failed after rotating.
    old_left: bool,
    /// During an outage: when to try the export again.
    retry_at: Option<Instant>,
}

impl Writer {
    fn run(mut self) {
        // Below the hub's threads (nice 10; on Linux it applies to this thread
        // only): an export competes for a core with the threads that answer
        // clients, and should lose.
        // SAFETY: setpriority has no memory effects.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
        loop {
            let msg = match self.deferred.pop() {
                Some(m) => Ok(m),
                None => match self.next_due() {
                    Some(t) => self.rx.recv_timeout(t.saturating_duration_since(Instant::now())),
                    None => self.rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                },
            };
            match msg {
                Ok(Msg::Changes(c)) => {
                    self.applied(&c);
                    thread::sleep(COALESCE);
                    self.drain(None);
                }
                Ok(Msg::Barrier(done)) => {
                    self.due_work();
                    let _ = done.send(());
                }
                Ok(Msg::Close(done)) => {
                    let r = self.export_now();
                    let _ = done.send(r);
                    return;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => self.due_work(),
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn applied(&mut self, changes: &[LeaseChange]) {
        for c in changes {
            self.mirror.apply(c);
        }
        self.lines += changes.len();
        self.unsynced = true;
        self.dirty_since.get_or_insert_with(Instant::now);
    }

    /// Applies every change already sent; pushes them to `keep` if given.
    /// At a rotation, call it with the journal's lock held, so that none is
    /// in flight.
    fn drain(&mut self, mut keep: Option<&mut Vec<LeaseChange>>) {
        while let Ok(m) = self.rx.try_recv() {
            match m {
                Msg::Changes(c) => {
                    self.applied(&c);
                    if let Some(k) = keep.as_deref_mut() {
                        k.extend(c);
                    }
                }
                other => self.deferred.insert(0, other),
            }
        }
    }

    /// When [`Writer::due_work`] next has something to do.
    fn next_due(&self) -> Option<Instant> {
        if let Some(t) = self.retry_at {
            return Some(t);
        }
        let sync = self.unsynced.then(|| self.last_sync + SYNC_EVERY);
        let export = self.dirty_since.map(|t| t + EXPORT_DELAY);
        sync.into_iter().chain(export).min()
    }

    fn due_work(&mut self) {
        let now = Instant::now();
        if let Some(t) = self.retry_at {
            if now >= t {
                let _ = self.export_now();
            }
            return;
        }
        if self.unsynced && now >= self.last_sync + SYNC_EVERY {
            self.sync();
        }
        let big = self.lines > MIN_JOURNAL.max(self.mirror.len() + self.mirror.remembered_len());
        if big || self.dirty_since.is_some_and(|t| now >= t + EXPORT_DELAY) {
            let _ = self.export_now();
        }
    }

    /// `fdatasync(2)` of the journal, through a duplicate of its handle.
    fn sync(&mut self) {
        self.last_sync = Instant::now();
        self.unsynced = false;
        let Some(dup) = self.shared.lock().file.as_ref().map(fs::File::try_clone) else {
            return;
        };
        if let Err(e) = dup.and_then(|f| f.sync_data()) {
            self.shared.failed("sync the lease journal", &self.path, &e);
        }
    }

    /// Exports the table. Normally: rotates the journal (with every change
    /// written so far in the copy), writes the file from the copy, removes the
    /// rotated-out journal. After a failed write: writes the file, then starts
    /// a fresh journal with the changes made since the copy was written.
    fn export_now(&mut self) -> io::Result<()> {
        let (jp, old) = (journal_path(&self.path), old_journal_path(&self.path));
        let shared = self.shared.clone();
        let appending = {
            let mut j = shared.lock();
            self.drain(None);
            if j.file.is_some() && !self.old_left {
                if let Err(e) = fs::rename(&jp, &old) {
                    drop(j);
                    return self.export_failed(e);
                }
                match open_journal(&jp) {
                    Ok(f) => j.file = Some(f),
                    Err(e) => {
                        // Keep appending to the old journal, under its own name again.
                        let _ = fs::rename(&old, &jp);
                        drop(j);
                        return self.export_failed(e);
                    }
                }
                self.old_left = true;
                self.lines = 0;
            }
            j.file.is_some()
        };
        self.dirty_since = None;
        if let Err(e) = export(&self.path, &self.mirror) {
            return self.export_failed(e);
        }
        if !appending {
            let mut j = shared.lock();
            let mut since = Vec::new();
            self.drain(Some(&mut since));
            let mut text = String::new();
            for c in &since {
                write_journal_line(c, &mut text);
            }
            let fresh = fs::File::create(&jp)
                .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
                .and_then(|()| open_journal(&jp));
            match fresh {
                Ok(f) => j.file = Some(f),
                Err(e) => {
                    drop(j);
                    return self.export_failed(e);
                }
            }
            self.lines = since.len();
        }
        match fs::remove_file(&old) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return self.export_failed(e),
            _ => {}
        }
        self.old_left = false;
        self.retry_at = None;
        if self.shared.outage.swap(false, Ordering::AcqRel) {
            tracing::info!(file = %self.path.display(), "the lease file is written again");
        }
        Ok(())
    }

    fn export_failed(&mut self, e: io::Error) -> io::Result<()> {
        self.shared.failed("write the lease file", &self.path, &e);
        self.retry_at = Some(Instant::now() + RETRY);
        self.dirty_since.get_or_insert_with(Instant::now);
        Err(e)
    }
}
