//! The lease files' background writer: the slow parts of persisting leases,
//! off the thread that answers DHCP.
//!
//! Appending a journal line stays with the caller ([`crate::leases`]): it is
//! one `write(2)` and keeps the journal in the order of the changes. What can
//! take tens of milliseconds on a disk, and would stall every client queued
//! behind it, runs here on one thread of its own, one job at a time:
//!
//! - [`Writer::sync`]: `fdatasync(2)` of the journal (about once a second);
//! - [`Writer::export`]: the dnsmasq-format file from a snapshot of the table:
//!   `fdatasync` of the rotated-out journal (`FILE.journal.old`), the file
//!   written atomically (temporary file, fsync, rename, fsync of the
//!   directory), then the rotated-out journal removed.
//!
//! The thread runs at nice 10, so that formatting a large table never takes
//! a core from the threads that answer clients.
//!
//! Until an export has renamed its file into place, the previous file plus
//! `FILE.journal.old` plus `FILE.journal` hold the table; after it, the new
//! file does, and replaying `FILE.journal.old` on top of it (a crash before
//! its removal) changes nothing, since the snapshot already holds its changes.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use crate::leases::{export_text, write_atomically, Lease};

enum Job {
    Sync(fs::File),
    Export {
        leases: Vec<Lease>,
        path: PathBuf,
        old_journal: fs::File,
        old_journal_path: PathBuf,
    },
    Barrier(mpsc::Sender<()>),
}

/// The writer thread and its queue of jobs.
#[derive(Debug)]
pub struct Writer {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<thread::JoinHandle<()>>,
    /// An export is queued or running.
    exporting: Arc<AtomicBool>,
}

impl Writer {
    /// Starts the writer thread (named `vmlan-leases`).
    ///
    /// # Errors
    /// The thread cannot be created.
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let exporting = Arc::new(AtomicBool::new(false));
        let flag = exporting.clone();
        let thread = thread::Builder::new().name("vmlan-leases".into()).spawn(move || {
            // Below the hub's threads (nice 10; on Linux it applies to this
            // thread only): an export competes for a core with the threads
            // that answer clients, and should lose.
            // SAFETY: setpriority has no memory effects.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
            for job in rx {
                run(job, &flag);
            }
        })?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
            exporting,
        })
    }

    fn send(&self, job: Job) {
        if let Some(tx) = &self.tx {
            // The thread only ends when `tx` is dropped, so this cannot fail.
            let _ = tx.send(job);
        }
    }

    /// Queues an `fdatasync(2)` of `journal` (a duplicate of the journal's
    /// handle: syncing it syncs the file).
    pub fn sync(&self, journal: fs::File) {
        self.send(Job::Sync(journal));
    }

    /// True while an export is queued or running: the caller must not rotate
    /// the journal again until it is done.
    pub fn exporting(&self) -> bool {
        self.exporting.load(Ordering::Acquire)
    }

    /// Queues the export of `leases` (any order: sorted by address here) to
    /// `path`, after syncing `old_journal`, and the removal of
    /// `old_journal_path` once the file is in place. A failure is logged and
    /// leaves `old_journal_path` behind, which makes the caller compact
    /// synchronously next time.
    pub fn export(&self, leases: Vec<Lease>, path: PathBuf, old_journal: fs::File, old_journal_path: PathBuf) {
        self.exporting.store(true, Ordering::Release);
        self.send(Job::Export {
            leases,
            path,
            old_journal,
            old_journal_path,
        });
    }

    /// Waits until every job queued so far is done.
    pub fn wait(&self) {
        let (done_tx, done_rx) = mpsc::channel();
        self.send(Job::Barrier(done_tx));
        let _ = done_rx.recv();
    }
}

impl Drop for Writer {
    /// Finishes the queued jobs, then ends the thread.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(job: Job, exporting: &AtomicBool) {
    match job {
        Job::Sync(f) => {
            if let Err(e) = f.sync_data() {
                tracing::warn!(error = %e, "cannot sync the lease journal");
            }
        }
        Job::Export {
            mut leases,
            path,
            old_journal,
            old_journal_path,
        } => {
            leases.sort_unstable_by_key(|l| u32::from(l.ip));
            let result = old_journal
                .sync_data()
                .and_then(|()| write_atomically(&path, export_text(leases.iter()).as_bytes()))
                .and_then(|()| fs::remove_file(&old_journal_path));
            if let Err(e) = result {
                tracing::warn!(file = %path.display(), error = %e, "cannot export the lease file; retrying at the next compaction");
            }
            exporting.store(false, Ordering::Release);
        }
        Job::Barrier(done) => {
            let _ = done.send(());
        }
    }
}
