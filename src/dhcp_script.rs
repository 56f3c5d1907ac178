//! `--dhcp-script PATH`, as dnsmasq(8) runs it: on every lease change the
//! script is run as `PATH add|old|del MAC IP [HOSTNAME]` (DHCPv6: the client
//! DUID in hex in place of the MAC, the IPv6 address as IP) with dnsmasq's
//! `DNSMASQ_*` environment. [`Tracker`] classifies the host's lease changes
//! (the ones the lease store gets): `add` for a new lease, `old` for a
//! renewal (or a lease restored at start), `del` for a release, an expiry or
//! a removal; [`Tracker::job`] makes a run of each, and the API's lease
//! events (src/api/events.rs) are made from the same classification. [`Runner`] runs them one at a time, in order, on a
//! thread of its own fed by a bounded queue: the segment never waits for a
//! script; what does not fit in the queue is dropped, counted and logged.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use vmlan_host::leases::{Lease, Lease6, LeaseChange, LeaseKey};

/// Runs waiting at most in the queue; more are dropped and counted.
pub const QUEUE_MAX: usize = 1024;

/// One run of the script: its arguments after PATH and its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// `add`, `old` or `del`, MAC (or DUID), IP, then HOSTNAME if any.
    pub args: Vec<String>,
    /// The `DNSMASQ_*` variables.
    pub env: Vec<(String, String)>,
}

/// Bytes as lower-case hex separated by colons (dnsmasq's form of a client id or DUID).
fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

/// How a lease changed, as [`Tracker`] tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new lease (dnsmasq's `add`).
    Add,
    /// A lease renewed, or live at start (dnsmasq's `old`).
    Old,
    /// A lease ended (dnsmasq's `del`), and why.
    Del(End),
}

/// Why a lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Released or declined by its client, or its address taken over (the
    /// record was ended or removed before its expiry).
    Released,
    /// Its time ran out with no renewal.
    Expired,
}

/// One lease change told by [`Tracker`]: the action and the lease (for a
/// `Del`, the lease as it was last live).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tracked {
    /// A DHCPv4 lease.
    V4(Action, Lease),
    /// A DHCPv6 lease.
    V6(Action, Lease6),
}

/// The live leases as the last changes told them, to tell `add` from `old`
/// and to tell when a lease ends (by release, removal or expiry): the
/// classification the script's runs and the API's lease events share. As
/// many entries as the host has live leases.
#[derive(Debug, Default)]
pub struct Tracker {
    domain: Option<String>,
    live: HashMap<LeaseKey, Lease>,
    live6: HashMap<(Vec<u8>, u32), Lease6>,
    server_duid: Option<Vec<u8>>,
    /// The earliest expiry among the live leases (Unix seconds), if any.
    earliest: Option<u64>,
}

/// The end of a lease removed from the table at `now`: expired when its time had run out.
fn end_of(expires: u64, now: u64) -> End {
    if expires != 0 && expires <= now {
        End::Expired
    } else {
        End::Released
    }
}

impl Tracker {
    /// A tracker for a segment whose domain (`--domain`) is `domain`.
    pub fn new(domain: Option<String>) -> Self {
        Tracker {
            domain,
            ..Tracker::default()
        }
    }

    fn env_common(&self, expires: u64, now: u64) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(d) = &self.domain {
            env.push(("DNSMASQ_DOMAIN".into(), d.clone()));
        }
        if expires != 0 {
            env.push(("DNSMASQ_LEASE_EXPIRES".into(), expires.to_string()));
            env.push(("DNSMASQ_TIME_REMAINING".into(), expires.saturating_sub(now).to_string()));
        }
        env
    }

    /// The script's run for `t` at `now` (Unix seconds): `add`, `old` or
    /// `del`, MAC (DHCPv6: the DUID in hex), IP, hostname, and the `DNSMASQ_*`
    /// environment.
    pub fn job(&self, t: &Tracked, now: u64) -> Job {
        let word = |a: &Action| match a {
            Action::Add => "add",
            Action::Old => "old",
            Action::Del(_) => "del",
        };
        match t {
            Tracked::V4(a, l) => {
                let mut args = vec![word(a).to_string(), l.mac.to_string(), l.ip.to_string()];
                args.extend(l.hostname.clone());
                let mut env = self.env_common(l.expires, now);
                if let Some(id) = &l.client_id {
                    env.push(("DNSMASQ_CLIENT_ID".into(), hex(id)));
                }
                Job { args, env }
            }
            Tracked::V6(a, l) => {
                let mut args = vec![word(a).to_string(), hex(&l.duid), l.addr.to_string()];
                args.extend(l.hostname.clone());
                let mut env = self.env_common(l.expires, now);
                env.push(("DNSMASQ_IAID".into(), l.iaid.to_string()));
                if let Some(d) = &self.server_duid {
                    env.push(("DNSMASQ_SERVER_DUID".into(), hex(d)));
                }
                Job { args, env }
            }
        }
    }

    /// [`Tracker::job`] for a lease restored at start ([`Tracker::restored`]):
    /// with `DNSMASQ_DATA_MISSING=1`, as dnsmasq sets then.
    pub fn restored_job(&self, t: &Tracked, now: u64) -> Job {
        let mut j = self.job(t, now);
        j.env.push(("DNSMASQ_DATA_MISSING".into(), "1".into()));
        j
    }

    fn note_expiry(&mut self, e: u64) {
        if e != 0 && self.earliest.is_none_or(|x| e < x) {
            self.earliest = Some(e);
        }
    }

    /// `old` for each lease live at start (dnsmasq runs the script so for
    /// every lease it read from its lease file; see [`Tracker::restored_job`]);
    /// they are tracked from now on.
    pub fn restored<'a>(
        &mut self,
        leases: impl Iterator<Item = &'a Lease>,
        leases6: impl Iterator<Item = &'a Lease6>,
        server_duid: Option<&[u8]>,
        now: u64,
        out: &mut Vec<Tracked>,
    ) {
        self.server_duid = server_duid.map(<[u8]>::to_vec);
        for l in leases.filter(|l| !l.expired(now)) {
            out.push(Tracked::V4(Action::Old, l.clone()));
            self.note_expiry(l.expires);
            self.live.insert(l.key(), l.clone());
        }
        for l in leases6.filter(|l| !l.expired(now)) {
            out.push(Tracked::V6(Action::Old, l.clone()));
            self.note_expiry(l.expires);
            self.live6.insert((l.duid.clone(), l.iaid), l.clone());
        }
    }

    /// What one lease change of the host tells, at `now` (Unix seconds).
    pub fn change(&mut self, c: &LeaseChange, now: u64, out: &mut Vec<Tracked>) {
        match c {
            LeaseChange::Put(l) if l.expired(now) => {
                // A RELEASE: the record stays, ended.
                if let Some(prev) = self.live.remove(&l.key()) {
                    out.push(Tracked::V4(Action::Del(End::Released), prev));
                }
            }
            LeaseChange::Put(l) => {
                let action = match self.live.insert(l.key(), l.clone()) {
                    Some(prev) if prev.ip == l.ip => Action::Old,
                    Some(prev) => {
                        out.push(Tracked::V4(Action::Del(End::Released), prev));
                        Action::Add
                    }
                    None => Action::Add,
                };
                // The address's previous holder under another key loses it.
                let stale: Vec<LeaseKey> = self
                    .live
                    .iter()
                    .filter(|(k, o)| o.ip == l.ip && **k != l.key())
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in stale {
                    if let Some(prev) = self.live.remove(&k) {
                        out.push(Tracked::V4(Action::Del(End::Released), prev));
                    }
                }
                self.note_expiry(l.expires);
                out.push(Tracked::V4(action, l.clone()));
            }
            LeaseChange::Removed(k, _) => {
                if let Some(prev) = self.live.remove(k) {
                    let end = end_of(prev.expires, now);
                    out.push(Tracked::V4(Action::Del(end), prev));
                }
            }
            LeaseChange::Put6(l) => {
                let action = match self.live6.insert((l.duid.clone(), l.iaid), l.clone()) {
                    Some(prev) if prev.addr == l.addr => Action::Old,
                    Some(prev) => {
                        out.push(Tracked::V6(Action::Del(End::Released), prev));
                        Action::Add
                    }
                    None => Action::Add,
                };
                self.note_expiry(l.expires);
                out.push(Tracked::V6(action, l.clone()));
            }
            LeaseChange::Removed6(duid, iaid) => {
                if let Some(prev) = self.live6.remove(&(duid.clone(), *iaid)) {
                    let end = end_of(prev.expires, now);
                    out.push(Tracked::V6(Action::Del(end), prev));
                }
            }
            LeaseChange::ServerDuid6(d) => self.server_duid = Some(d.clone()),
        }
    }

    /// `Del(Expired)` for every tracked lease expired at `now` (an expiry is
    /// no lease change of the host's; the table keeps the record, ended).
    pub fn expire(&mut self, now: u64, out: &mut Vec<Tracked>) {
        if self.earliest.is_none_or(|e| e > now) {
            return;
        }
        let gone: Vec<LeaseKey> = self
            .live
            .iter()
            .filter(|(_, l)| l.expired(now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            if let Some(l) = self.live.remove(&k) {
                out.push(Tracked::V4(Action::Del(End::Expired), l));
            }
        }
        let gone6: Vec<(Vec<u8>, u32)> = self
            .live6
            .iter()
            .filter(|(_, l)| l.expired(now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone6 {
            if let Some(l) = self.live6.remove(&k) {
                out.push(Tracked::V6(Action::Del(End::Expired), l));
            }
        }
        self.earliest = self
            .live
            .values()
            .map(|l| l.expires)
            .chain(self.live6.values().map(|l| l.expires))
            .filter(|e| *e != 0)
            .min();
    }
}

/// The script's thread and its bounded queue.
pub struct Runner {
    tx: SyncSender<Job>,
    dropped: Arc<AtomicU64>,
}

impl Runner {
    /// Starts the thread that runs `path` for each queued [`Job`], one at a
    /// time, in order; a script that fails or cannot start is logged.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn spawn(path: PathBuf) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<Job>(QUEUE_MAX);
        std::thread::Builder::new().name("dhcp-script".into()).spawn(move || {
            for job in rx {
                let status = std::process::Command::new(&path)
                    .args(&job.args)
                    .envs(job.env.iter().map(|(k, v)| (k, v)))
                    .stdin(std::process::Stdio::null())
                    .status();
                match status {
                    Ok(s) if s.success() => {}
                    Ok(s) => {
                        tracing::warn!(script = %path.display(), args = ?job.args, status = %s, "--dhcp-script failed")
                    }
                    Err(e) => tracing::warn!(script = %path.display(), error = %e, "--dhcp-script cannot run"),
                }
            }
        })?;
        Ok(Runner {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queues `job` without waiting; when the queue is full it is dropped,
    /// counted ([`Runner::dropped`]) and logged (the first, then every 1000th).
    pub fn submit(&self, job: Job) {
        if let Err(TrySendError::Full(j) | TrySendError::Disconnected(j)) = self.tx.try_send(job) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_multiple_of(1000) {
                tracing::warn!(dropped = n, args = ?j.args, "--dhcp-script queue full: run dropped");
            }
        }
    }

    /// Runs dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmlan_hub::MacAddr;

    fn lease(ip: &str, expires: u64) -> Lease {
        Lease {
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            ip: ip.parse().unwrap(),
            hostname: Some("n1".into()),
            client_id: Some(vec![1, 2, 0, 0, 0, 0, 1]),
            expires,
        }
    }

    fn actions(t: &Tracker, out: &[Tracked]) -> Vec<String> {
        out.iter()
            .map(|x| t.job(x, 1000))
            .map(|j| format!("{} {}", j.args[0], j.args[2]))
            .collect()
    }

    #[test]
    fn add_old_del_and_expiry() {
        let mut t = Tracker::new(Some("cluster".into()));
        let mut out = Vec::new();
        t.change(&LeaseChange::Put(lease("10.0.3.100", 1600)), 1000, &mut out);
        t.change(&LeaseChange::Put(lease("10.0.3.100", 1700)), 1100, &mut out);
        t.change(&LeaseChange::Put(lease("10.0.3.100", 1200)), 1200, &mut out);
        assert_eq!(
            actions(&t, &out),
            ["add 10.0.3.100", "old 10.0.3.100", "del 10.0.3.100"]
        );
        assert!(matches!(out[2], Tracked::V4(Action::Del(End::Released), _)));
        let job = t.job(&out[0], 1000);
        let env: HashMap<_, _> = job.env.iter().cloned().collect();
        assert_eq!(env["DNSMASQ_DOMAIN"], "cluster");
        assert_eq!(env["DNSMASQ_LEASE_EXPIRES"], "1600");
        assert_eq!(env["DNSMASQ_TIME_REMAINING"], "600");
        assert_eq!(env["DNSMASQ_CLIENT_ID"], "01:02:00:00:00:00:01");
        assert_eq!(job.args[1], "02:00:00:00:00:01");
        assert_eq!(job.args[3], "n1");

        out.clear();
        t.change(&LeaseChange::Put(lease("10.0.3.101", 1600)), 1300, &mut out);
        t.expire(1599, &mut out);
        t.expire(1600, &mut out);
        t.change(
            &LeaseChange::Removed(lease("10.0.3.101", 0).key(), "10.0.3.101".parse().unwrap()),
            1601,
            &mut out,
        );
        assert_eq!(
            actions(&t, &out),
            ["add 10.0.3.101", "del 10.0.3.101"],
            "one del at expiry, none after"
        );
        assert!(matches!(out[1], Tracked::V4(Action::Del(End::Expired), _)));
    }

    #[test]
    fn restored_leases_are_old_and_dhcpv6_uses_the_duid() {
        let mut t = Tracker::new(None);
        let mut out = Vec::new();
        let l6 = Lease6 {
            expires: 0,
            iaid: 7,
            temporary: false,
            addr: "fd00::5".parse().unwrap(),
            hostname: None,
            duid: vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 1],
        };
        t.restored(
            [lease("10.0.3.100", 5000)].iter(),
            [l6.clone()].iter(),
            Some(&[0, 3, 0, 1, 9, 9, 9, 9, 9, 9]),
            1000,
            &mut out,
        );
        assert_eq!(actions(&t, &out), ["old 10.0.3.100", "old fd00::5"]);
        assert!(t
            .restored_job(&out[0], 1000)
            .env
            .contains(&("DNSMASQ_DATA_MISSING".into(), "1".into())));
        let job = t.job(&out[1], 1000);
        assert_eq!(job.args[1], "00:03:00:01:02:00:00:00:00:01");
        let env: HashMap<_, _> = job.env.iter().cloned().collect();
        assert_eq!(env["DNSMASQ_IAID"], "7");
        assert_eq!(env["DNSMASQ_SERVER_DUID"], "00:03:00:01:09:09:09:09:09:09");
        out.clear();
        t.change(&LeaseChange::Put6(l6.clone()), 1001, &mut out);
        t.change(&LeaseChange::Removed6(l6.duid.clone(), 7), 1002, &mut out);
        assert_eq!(actions(&t, &out), ["old fd00::5", "del fd00::5"]);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, _rx) = sync_channel(1);
        let r = Runner {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        let j = Job {
            args: vec!["add".into()],
            env: vec![],
        };
        r.submit(j.clone());
        r.submit(j.clone());
        r.submit(j);
        assert_eq!(r.dropped(), 2);
    }
}
