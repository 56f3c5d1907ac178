//! dnsmasq's re-readable files (dnsmasq(8): `--addn-hosts`, `--hostsdir`,
//! `--dhcp-hostsfile`, `--dhcp-hostsdir`): reads them at start and on
//! SIGHUP, parses them (vmlan_host::hostsfile) and checks their reservations
//! against the flags', all without the segment's lock; the caller swaps the
//! result into the host ([`vmlan_host::Host::replace_file_entries`]). A bad
//! line is logged with FILE:LINE and skipped; a missing file or directory
//! stops the hub at start (the error names the flag) and is logged and
//! skipped on a later re-read.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use vmlan_host::config::{HostConfig, HostRecord, Reservation};
use vmlan_host::hostsfile::{dir_entry_wanted, parse_dhcp_hosts, parse_hosts, BadLine};

/// Files larger than this (bytes) are refused: a hosts file of a segment is
/// far smaller, and reading stays bounded.
const FILE_MAX: u64 = 64 << 20;

/// Where the file-given records and reservations come from.
#[derive(Debug, Clone, Default)]
pub struct FileSources {
    /// `--addn-hosts` files.
    pub addn_hosts: Vec<PathBuf>,
    /// `--hostsdir` directories (every file in them, as `--addn-hosts`).
    pub hostsdir: Vec<PathBuf>,
    /// `--dhcp-hostsfile` files.
    pub dhcp_hostsfile: Vec<PathBuf>,
    /// `--dhcp-hostsdir` directories.
    pub dhcp_hostsdir: Vec<PathBuf>,
}

/// The files of `dirs` that are read (sorted by name), each with its flag.
fn dir_files(flag: &'static str, dirs: &[PathBuf], start: bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for d in dirs {
        let entries = match std::fs::read_dir(d) {
            Ok(e) => e,
            Err(e) if start => bail!("{flag} {}: cannot read the directory: {e}", d.display()),
            Err(e) => {
                tracing::warn!(flag, dir = %d.display(), error = %e, "cannot read the directory; skipped");
                continue;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
            .filter(|e| e.file_name().to_str().is_some_and(dir_entry_wanted))
            .map(|e| e.path())
            .collect();
        files.sort();
        out.extend(files);
    }
    Ok(out)
}

/// Reads `path`; at start an error names `flag`, later it is logged and `None`.
fn read(flag: &'static str, path: &Path, start: bool) -> Result<Option<String>> {
    let text = std::fs::metadata(path).and_then(|m| {
        if m.len() > FILE_MAX {
            Err(std::io::Error::other(format!("larger than {FILE_MAX} bytes")))
        } else {
            std::fs::read_to_string(path)
        }
    });
    match text {
        Ok(t) => Ok(Some(t)),
        Err(e) if start => bail!("{flag} {}: cannot read: {e}", path.display()),
        Err(e) => {
            tracing::warn!(flag, file = %path.display(), error = %e, "cannot read; skipped");
            Ok(None)
        }
    }
}

fn log_bad(flag: &'static str, path: &Path, bad: &[BadLine]) {
    for b in bad {
        tracing::warn!(flag, "{}:{}: {}; line skipped", path.display(), b.line, b.reason);
    }
}

impl FileSources {
    /// Reads and parses every file: the host records, and the reservations
    /// that fit with `cfg`'s (the flags'; refused ones are logged). `start`:
    /// a missing file or directory is an error naming its flag.
    ///
    /// # Errors
    /// At start only: a file or directory that cannot be read.
    pub fn load(&self, cfg: &HostConfig, start: bool) -> Result<(Vec<HostRecord>, Vec<Reservation>)> {
        let mut records = Vec::new();
        let hosts = self.addn_hosts.iter().map(|p| ("--addn-hosts", p.clone())).chain(
            dir_files("--hostsdir", &self.hostsdir, start)?
                .into_iter()
                .map(|p| ("--hostsdir", p)),
        );
        for (flag, p) in hosts.collect::<Vec<_>>() {
            if let Some(text) = read(flag, &p, start)? {
                let (r, bad) = parse_hosts(&text);
                log_bad(flag, &p, &bad);
                records.extend(r);
            }
        }
        let mut candidates = Vec::new();
        let dhcp = self
            .dhcp_hostsfile
            .iter()
            .map(|p| ("--dhcp-hostsfile", p.clone()))
            .chain(
                dir_files("--dhcp-hostsdir", &self.dhcp_hostsdir, start)?
                    .into_iter()
                    .map(|p| ("--dhcp-hostsdir", p)),
            );
        for (flag, p) in dhcp.collect::<Vec<_>>() {
            if let Some(text) = read(flag, &p, start)? {
                let (r, bad) = parse_dhcp_hosts(&text);
                log_bad(flag, &p, &bad);
                candidates.extend(r);
            }
        }
        let (ok, refused) = cfg.accept_file_reservations(candidates);
        for (_, e) in refused {
            tracing::warn!("--dhcp-hostsfile/--dhcp-hostsdir: {e}; reservation skipped");
        }
        Ok((records, ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HostConfig {
        HostConfig::new(vmlan_host::config::parse_addr("10.0.3.1/24").unwrap())
    }

    #[test]
    fn reads_files_and_dirs() {
        let d = std::env::temp_dir().join(format!("vmlan-dnsops-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let hosts = d.join("hosts");
        std::fs::write(&hosts, "10.0.3.7 web www\nbad line\n").unwrap();
        let hd = d.join("hd");
        std::fs::create_dir(&hd).unwrap();
        std::fs::write(hd.join("a"), "10.0.3.8 web2\n").unwrap();
        std::fs::write(hd.join("a~"), "10.0.3.9 skipped\n").unwrap();
        let dh = d.join("dhcp-hosts");
        std::fs::write(
            &dh,
            "52:54:00:00:00:01,10.0.3.150,n1\n52:54:00:00:00:02,10.0.3.150,dup\n",
        )
        .unwrap();
        let src = FileSources {
            addn_hosts: vec![hosts],
            hostsdir: vec![hd],
            dhcp_hostsfile: vec![dh],
            dhcp_hostsdir: vec![],
        };
        let (r, res) = src.load(&cfg(), true).unwrap();
        let names: Vec<_> = r.iter().flat_map(|r| r.names.clone()).collect();
        assert_eq!(names, vec!["web", "www", "web2"]);
        assert_eq!(res.len(), 1, "the second reserves 10.0.3.150 again");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_file_is_an_error_at_start_only() {
        let src = FileSources {
            dhcp_hostsfile: vec!["/nonexistent/vmlan-dhcp-hosts".into()],
            ..FileSources::default()
        };
        let e = src.load(&cfg(), true).unwrap_err().to_string();
        assert!(e.contains("--dhcp-hostsfile"), "{e}");
        assert!(src.load(&cfg(), false).is_ok());
        let dir = FileSources {
            hostsdir: vec!["/nonexistent/vmlan-hostsdir".into()],
            ..FileSources::default()
        };
        assert!(dir.load(&cfg(), true).unwrap_err().to_string().contains("--hostsdir"));
    }
}
