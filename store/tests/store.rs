//! The lease store on real files: appends, exports, the writer thread, a
//! restart from the journal after a crash (the store dropped without
//! `close`), a crash between an export's rename and the removal of the
//! rotated-out journal, and a write that fails and then works again.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use vmlan_host::leases::{Lease, LeaseDb, LeaseKey};
use vmlan_hub::MacAddr;
use vmlan_store::{read, LeaseStore, MIN_JOURNAL};

/// A lease from its leases-file fields (the parser under test elsewhere).
fn lease(mac: &str, ip: &str, name: Option<&str>, expires: u64) -> Lease {
    Lease::from_line(&format!("{expires} {mac} {ip} {} *", name.unwrap_or("*"))).unwrap()
}

/// One batch in which A and B swap places: a moves to .12, b takes a's old .10.
fn a_and_b_swap(store: &mut LeaseStore, db: &mut LeaseDb) {
    let a = |ip: &str| lease("00:00:00:00:00:0a", ip, Some("a"), 0);
    let b = |ip: &str| lease("00:00:00:00:00:0b", ip, Some("b"), 0);
    batch(store, db, |db| {
        db.insert(a("10.0.3.10"));
        db.insert(b("10.0.3.11"));
        db.insert(a("10.0.3.12"));
        db.insert(b("10.0.3.10"));
    });
}

fn dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmlan-store-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Applies `f` to the table and appends what it recorded, as the hub does per batch.
fn batch(store: &mut LeaseStore, db: &mut LeaseDb, f: impl FnOnce(&mut LeaseDb)) {
    f(db);
    let mut changes = vec![];
    db.take_changes(&mut changes);
    store.append(&changes);
}

fn file_lines(path: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_to_string(path).unwrap().lines().map(String::from).collect();
    v.sort();
    v
}

#[test]
fn appends_reach_the_journal_at_once_and_a_crash_loses_nothing() {
    let dir = dir("crash");
    let path = dir.join("leases");
    let (mut store, mut db) = LeaseStore::open(&path, 100).unwrap();
    batch(&mut store, &mut db, |db| {
        db.insert(lease("00:00:00:22:22:22", "10.0.3.102", Some("worker1"), 1000));
        db.insert(lease("00:00:00:11:11:11", "10.0.3.101", Some("master"), 0));
    });
    batch(&mut store, &mut db, |db| {
        db.insert(lease("00:00:00:33:33:33", "10.0.3.150", None, 150));
    });
    // Both batches are in the journal now, before any export.
    assert_eq!(
        fs::read_to_string(dir.join("leases.journal")).unwrap().lines().count(),
        3
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), "", "not exported yet");
    batch(&mut store, &mut db, |db| {
        db.remove(&LeaseKey::Mac("00:00:00:11:11:11".parse().unwrap()));
        db.release(&LeaseKey::Mac("00:00:00:22:22:22".parse().unwrap()), 120);
    });
    // A crash: no close, no export. Reopening (at 200) replays the journal.
    drop(store);
    let (store, db) = LeaseStore::open(&path, 200).unwrap();
    assert_eq!((db.len(), db.remembered_len()), (0, 2));
    assert_eq!(
        db.remembered(&LeaseKey::Mac("00:00:00:22:22:22".parse().unwrap()))
            .map(|l| l.expires),
        Some(120)
    );
    // Opening wrote the file whole and emptied the journal.
    assert_eq!(
        file_lines(&path),
        [
            "120 00:00:00:22:22:22 10.0.3.102 worker1 *",
            "150 00:00:00:33:33:33 10.0.3.150 * *"
        ]
    );
    assert_eq!(fs::read_to_string(dir.join("leases.journal")).unwrap(), "");
    store.close().unwrap();
    // No temporary file left behind.
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 2);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_writer_exports_in_the_background_and_close_writes_the_file() {
    let dir = dir("export");
    let path = dir.join("leases");
    let (mut store, mut db) = LeaseStore::open(&path, 0).unwrap();
    a_and_b_swap(&mut store, &mut db);
    // Readers see the table while nothing is exported yet.
    assert_eq!(read(&path).unwrap().len(), 2);
    // A journal longer than MIN_JOURNAL (and the table) makes the writer export.
    for n in 0..=MIN_JOURNAL as u32 {
        let i = n % 100;
        batch(&mut store, &mut db, |db| {
            db.insert(Lease {
                mac: MacAddr([2, 0, 0, 0, 1, i as u8]),
                ip: Ipv4Addr::from(0x0a00_0400 + i),
                hostname: None,
                client_id: None,
                expires: 0,
            })
        });
    }
    store.wait();
    assert!(!dir.join("leases.journal.old").exists());
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.lines().count() >= 100, "{} lines", text.lines().count());
    assert!(text.contains("10.0.3.10 b") && text.contains("10.0.3.12 a"), "{text}");
    let journal = fs::read_to_string(dir.join("leases.journal")).unwrap();
    assert!(journal.lines().count() < MIN_JOURNAL, "the journal was rotated");
    batch(&mut store, &mut db, |db| {
        db.insert(lease("00:00:00:00:00:0d", "10.0.3.14", Some("d"), 0));
    });
    store.close().unwrap();
    assert_eq!(fs::read_to_string(dir.join("leases.journal")).unwrap(), "");
    assert_eq!(read(&path).unwrap().len(), 103);
    assert!(fs::read_to_string(&path).unwrap().contains("10.0.3.14 d"));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_crash_before_the_old_journal_is_removed_changes_nothing() {
    let dir = dir("old");
    let path = dir.join("leases");
    let (mut store, mut db) = LeaseStore::open(&path, 0).unwrap();
    a_and_b_swap(&mut store, &mut db);
    batch(&mut store, &mut db, |db| {
        db.insert(lease("00:00:00:00:00:0c", "10.0.3.13", None, 0));
        db.remove(&LeaseKey::Mac("00:00:00:00:00:0c".parse().unwrap()));
    });
    let journal = fs::read_to_string(dir.join("leases.journal")).unwrap();
    store.close().unwrap();
    // The new file was renamed in, then the hub died before removing the old
    // journal: replaying it again on top changes nothing.
    fs::write(dir.join("leases.journal.old"), journal).unwrap();
    let (store, db) = LeaseStore::open(&path, 0).unwrap();
    let mut got: Vec<String> = db.sorted().iter().map(|l| l.to_line()).collect();
    got.sort();
    assert_eq!(
        got,
        ["0 00:00:00:00:00:0a 10.0.3.12 a *", "0 00:00:00:00:00:0b 10.0.3.10 b *"]
    );
    assert!(!dir.join("leases.journal.old").exists(), "open compacts");
    store.close().unwrap();
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_write_keeps_the_leases_and_the_file_catches_up() {
    let dir = dir("fail");
    let path = dir.join("leases");
    let (mut store, mut db) = LeaseStore::open(&path, 0).unwrap();
    batch(&mut store, &mut db, |db| {
        db.insert(lease("00:00:00:00:00:01", "10.0.3.1", Some("one"), 0));
    });
    // The file cannot be written: a directory stands where its temporary file
    // goes (root ignores permissions; e2e_faults fills a real tmpfs instead).
    let tmp = dir.join(format!(".leases.tmp.{}", std::process::id()));
    fs::create_dir(&tmp).unwrap();
    for i in 2..6u8 {
        batch(&mut store, &mut db, |db| {
            db.insert(lease(&format!("00:00:00:00:00:0{i}"), &format!("10.0.3.{i}"), None, 0));
        });
    }
    store.wait();
    std::thread::sleep(vmlan_store::EXPORT_DELAY + std::time::Duration::from_millis(500));
    store.wait();
    assert_eq!(read(&path).unwrap().len(), 5, "the journal still holds every lease");
    assert_eq!(fs::read_to_string(&path).unwrap(), "", "the export failed");
    // The obstacle goes; the retry exports everything.
    fs::remove_dir(&tmp).unwrap();
    std::thread::sleep(vmlan_store::RETRY + std::time::Duration::from_millis(500));
    store.wait();
    assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 5);
    store.close().unwrap();
    assert_eq!(read(&path).unwrap().len(), 5);
    fs::remove_dir_all(&dir).unwrap();
}
