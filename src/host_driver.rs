//! The driver of the hub's host: the sans-IO host (vmlan-host) as the
//! segment runs it, with the lease store (vmlan-store) behind it.
//!
//! The segment calls [`LocalHost::end_batch`] once per batch in which the host
//! handled a frame or a timer, before the batch's frames are sent: the lease
//! changes the host recorded in that batch are appended to the journal then,
//! with one `write(2)`, so every ACK a guest sees is in the journal first
//! (the durability guarantee in the README). Without `--leasefile`, the host
//! records nothing and this costs nothing. With `--dhcp-script` the same
//! changes feed the script's tracker (dhcp_script.rs), whose runs are queued
//! for the script's thread without waiting.

use std::time::Instant;

use vmlan_host::leases::LeaseChange;
use vmlan_host::Host;

use crate::dhcp_script::{Job, Runner, Tracker};
use vmlan_hub::{LocalHost, MacAddr};
use vmlan_store::LeaseStore;

/// The host and where its leases go.
pub struct Driven {
    /// The sans-IO host.
    pub host: Host,
    /// The lease store, with `--leasefile`.
    pub store: Option<LeaseStore>,
    /// The batch's lease changes, reused.
    changes: Vec<LeaseChange>,
    /// `--no-host`: the host sees no frame and runs no timer.
    off: bool,
    /// `--dhcp-script`: which runs the changes call for, and the script's thread.
    script: Option<(Tracker, Runner, Vec<Job>)>,
}

impl Driven {
    /// `host`, persisting its leases to `store` if given.
    pub fn new(host: Host, store: Option<LeaseStore>) -> Self {
        Driven {
            host,
            store,
            changes: Vec::new(),
            off: false,
            script: None,
        }
    }

    /// `--dhcp-script`: from now on lease changes run the script through
    /// `runner`; first `old` for every live lease (those restored at start),
    /// at `unix_now` (Unix seconds). The host's table must record changes.
    pub fn set_script(&mut self, mut tracker: Tracker, runner: Runner, unix_now: u64) {
        let mut jobs = Vec::new();
        let d6 = self.host.dhcp6();
        tracker.restored(
            self.host.dhcp().leases().iter(),
            d6.into_iter().flat_map(|d| d.leases()),
            d6.map(|d| d.server_duid()),
            unix_now,
            &mut jobs,
        );
        for j in jobs.drain(..) {
            runner.submit(j);
        }
        self.script = Some((tracker, runner, jobs));
    }

    /// `--no-host`: from now on the host answers nothing on the segment (no
    /// frame reaches it, no timer runs) and its MAC is all zeros, which no
    /// station sends to, so the segment is a pure switch. DNS to the machine's
    /// side (--dns-listen) is still served.
    pub fn switch_off(&mut self) {
        self.off = true;
    }

    /// False after [`Driven::switch_off`] (`--no-host`): the host answers nothing.
    pub fn is_on(&self) -> bool {
        !self.off
    }

    /// At a clean stop: appends what is left, writes the lease file whole and
    /// ends the store's thread.
    ///
    /// # Errors
    /// The lease file cannot be written.
    pub fn close(&mut self) -> std::io::Result<()> {
        self.end_batch();
        match self.store.take() {
            Some(s) => s.close(),
            None => Ok(()),
        }
    }
}

impl LocalHost for Driven {
    fn mac(&self) -> MacAddr {
        if self.off {
            return MacAddr([0; 6]);
        }
        self.host.mac()
    }

    fn handle_frame(&mut self, now: Instant, frame: &[u8], out: &mut Vec<Vec<u8>>) {
        if !self.off {
            self.host.handle_frame(now, frame, out);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.off {
            return None;
        }
        self.host.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        if !self.off {
            self.host.handle_timeout(now, out);
        }
    }

    fn end_batch(&mut self) {
        self.host.take_lease_changes(&mut self.changes);
        if let Some(s) = &mut self.store {
            s.append(&self.changes);
        }
        if let Some((tracker, runner, jobs)) = &mut self.script {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            for c in &self.changes {
                tracker.change(c, now, jobs);
            }
            tracker.expire(now, jobs);
            for j in jobs.drain(..) {
                runner.submit(j);
            }
        }
        self.changes.clear();
    }

    fn report(&self) -> String {
        if self.off {
            return "off (--no-host)".into();
        }
        match &self.script {
            Some((_, r, _)) => format!(
                "{}\ndhcp-script runs dropped (queue full): {}",
                self.host.report(),
                r.dropped()
            ),
            None => self.host.report(),
        }
    }
}
