//! The lease table and its file. The file is dnsmasq's leases-file format
//! (dnsmasq src/lease.c `lease_update_file`), one lease per line:
//!
//! ```text
//! <expiry-epoch-seconds> <mac> <ipv4> <hostname|*> <client-id|*>
//! ```
//!
//! expiry 0 meaning an infinite lease and the client id as colon-separated hex,
//! so tools that read dnsmasq's file read ours. Every change rewrites the file
//! atomically: write a temporary file beside it, fsync, rename over the old one,
//! fsync the directory. A crash leaves either the old or the new file, never half of one.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use vmlan_hub::MacAddr;

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
        let id = match &self.client_id {
            Some(id) if !id.is_empty() => id.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"),
            _ => "*".to_string(),
        };
        format!(
            "{} {} {} {} {}",
            self.expires,
            self.mac,
            self.ip,
            self.hostname.as_deref().unwrap_or("*"),
            id
        )
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

/// The leases, indexed by MAC and by address, optionally persisted to a file.
#[derive(Debug, Default)]
pub struct LeaseDb {
    by_mac: HashMap<MacAddr, Lease>,
    by_ip: HashMap<Ipv4Addr, MacAddr>,
    path: Option<PathBuf>,
}

impl LeaseDb {
    /// An empty table that is never written to disk.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Opens the table persisted at `path`, loading the leases there that have not
    /// expired at `now` (Unix seconds). A missing file is an empty table; lines
    /// that do not parse are skipped with a warning.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn open(path: &Path, now: u64) -> io::Result<Self> {
        let mut db = LeaseDb {
            path: Some(path.to_path_buf()),
            ..Default::default()
        };
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(db),
            Err(e) => return Err(e),
        };
        for (n, line) in text.lines().enumerate() {
            match Lease::from_line(line) {
                Some(l) if !l.expired(now) => db.insert_mem(l),
                Some(_) => {}
                None if line.starts_with("duid ") || line.trim().is_empty() => {}
                None => {
                    tracing::warn!(file = %path.display(), line = n + 1, "skipping a lease line that does not parse")
                }
            }
        }
        Ok(db)
    }

    fn insert_mem(&mut self, lease: Lease) {
        if let Some(old) = self.by_mac.remove(&lease.mac) {
            self.by_ip.remove(&old.ip);
        }
        if let Some(other) = self.by_ip.insert(lease.ip, lease.mac) {
            if other != lease.mac {
                self.by_mac.remove(&other);
            }
        }
        self.by_mac.insert(lease.mac, lease);
    }

    /// The lease of `mac`, expired or not.
    pub fn get(&self, mac: &MacAddr) -> Option<&Lease> {
        self.by_mac.get(mac)
    }

    /// The lease holding `ip`, expired or not.
    pub fn by_ip(&self, ip: &Ipv4Addr) -> Option<&Lease> {
        self.by_ip.get(ip).and_then(|m| self.by_mac.get(m))
    }

    /// Every lease, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.by_mac.values()
    }

    /// Number of leases held.
    pub fn len(&self) -> usize {
        self.by_mac.len()
    }

    /// True if no lease is held.
    pub fn is_empty(&self) -> bool {
        self.by_mac.is_empty()
    }

    /// Adds or replaces the lease of `lease.mac` (dropping any other holder of
    /// the address) and saves the file. Returns the leases it replaced.
    ///
    /// # Errors
    /// Writing the file failed; the table is updated all the same.
    pub fn insert(&mut self, lease: Lease) -> io::Result<()> {
        self.insert_mem(lease);
        self.save()
    }

    /// Removes the lease of `mac` and saves the file; returns it.
    ///
    /// # Errors
    /// Writing the file failed; the lease is removed all the same.
    pub fn remove(&mut self, mac: &MacAddr) -> io::Result<Option<Lease>> {
        let Some(old) = self.by_mac.remove(mac) else {
            return Ok(None);
        };
        self.by_ip.remove(&old.ip);
        self.save()?;
        Ok(Some(old))
    }

    /// Removes every lease expired at `now` and saves the file if any went; returns them.
    ///
    /// # Errors
    /// Writing the file failed.
    pub fn expire(&mut self, now: u64) -> io::Result<Vec<Lease>> {
        let gone: Vec<MacAddr> = self.by_mac.values().filter(|l| l.expired(now)).map(|l| l.mac).collect();
        let mut out = Vec::with_capacity(gone.len());
        for mac in gone {
            if let Some(l) = self.by_mac.remove(&mac) {
                self.by_ip.remove(&l.ip);
                out.push(l);
            }
        }
        if !out.is_empty() {
            self.save()?;
        }
        Ok(out)
    }

    /// Writes the whole table to the file (sorted by address), atomically.
    ///
    /// # Errors
    /// Any I/O error; the old file is then left as it was.
    pub fn save(&self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut leases: Vec<&Lease> = self.by_mac.values().collect();
        leases.sort_by_key(|l| u32::from(l.ip));
        let mut text = String::with_capacity(leases.len() * 64);
        for l in leases {
            text.push_str(&l.to_line());
            text.push('\n');
        }
        write_atomically(path, text.as_bytes())
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

    #[test]
    fn persists_atomically_and_reloads() {
        let dir = std::env::temp_dir().join(format!("vmlan-leases-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("leases");
        let _ = fs::remove_file(&path);
        let mut db = LeaseDb::open(&path, 100).unwrap();
        db.insert(lease("00:00:00:22:22:22", "10.0.3.102", Some("worker1"), 1000))
            .unwrap();
        db.insert(lease("00:00:00:11:11:11", "10.0.3.101", Some("master"), 0))
            .unwrap();
        db.insert(lease("00:00:00:33:33:33", "10.0.3.150", None, 150)).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("0 00:00:00:11:11:11 10.0.3.101 master *\n1000 "),
            "{text}"
        );
        // No temporary file left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        // Reload at a time when the third lease has expired.
        let db2 = LeaseDb::open(&path, 200).unwrap();
        assert_eq!(db2.len(), 2);
        assert_eq!(
            db2.by_ip(&"10.0.3.102".parse().unwrap()).unwrap().hostname.as_deref(),
            Some("worker1")
        );
        // A MAC that moves to a new address frees the old one; a taken address changes hands.
        let mut db3 = db2;
        db3.insert(lease("00:00:00:22:22:22", "10.0.3.110", None, 1000))
            .unwrap();
        assert!(db3.by_ip(&"10.0.3.102".parse().unwrap()).is_none());
        assert_eq!(db3.expire(2000).unwrap().len(), 1);
        assert_eq!(
            db3.remove(&"00:00:00:11:11:11".parse().unwrap())
                .unwrap()
                .unwrap()
                .ip
                .octets()[3],
            101
        );
        assert!(db3.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
