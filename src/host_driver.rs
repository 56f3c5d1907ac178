//! The driver of the hub's host: the sans-IO host (vmlan-host) as the
//! segment runs it, with the lease store (vmlan-store) behind it.
//!
//! The segment calls [`LocalHost::end_batch`] once per batch in which the host
//! handled a frame or a timer, before the batch's frames are sent: the lease
//! changes the host recorded in that batch are appended to the journal then,
//! with one `write(2)`, so every ACK a guest sees is in the journal first
//! (the durability guarantee in the README). Without `--leasefile`, the host
//! records nothing and this costs nothing. With `--dhcp-script` or events
//! (`--api`, `--notification`) the same changes are classified by the
//! tracker (dhcp_script.rs: bound, renewed, released, expired, the expiry of
//! a lease nobody renewed included); the script's runs are queued for its
//! thread, and the events are sent on the events channel
//! (src/api/events.rs), both without waiting. The segment's own changes
//! (port up/down, MAC learned/moved/aged) come through
//! [`LocalHost::segment_event`] and go on the same channel.

use std::sync::Arc;
use std::time::Instant;

use vmlan_host::leases::LeaseChange;
use vmlan_host::Host;

use crate::api::events::{self, Event};
use crate::dhcp_script::{Runner, Tracked, Tracker};
use vmlan_hub::{LocalHost, MacAddr, SegmentEvent};
use vmlan_store::LeaseStore;

/// Unix seconds now.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

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
    /// With `--dhcp-script` or events: the live leases, to classify changes.
    tracker: Option<Tracker>,
    /// The batch's classified lease changes, reused.
    tracked: Vec<Tracked>,
    /// `--dhcp-script`: the script's thread.
    script: Option<Runner>,
    /// Events on (`--api`, `--notification`): the channel's sending side.
    events: Option<events::Sender>,
}

impl Driven {
    /// `host`, persisting its leases to `store` if given.
    pub fn new(host: Host, store: Option<LeaseStore>) -> Self {
        Driven {
            host,
            store,
            changes: Vec::new(),
            off: false,
            tracker: None,
            tracked: Vec::new(),
            script: None,
            events: None,
        }
    }

    /// The tracker, made from `make` and the live leases (those restored at
    /// start) at `unix_now` if there is none yet; returns the restored leases
    /// (`Old`) when it was made now.
    fn tracker(&mut self, make: impl FnOnce() -> Tracker, unix_now: u64) -> Vec<Tracked> {
        let mut restored = Vec::new();
        if self.tracker.is_none() {
            let mut t = make();
            let d6 = self.host.dhcp6();
            t.restored(
                self.host.dhcp().leases().iter(),
                d6.into_iter().flat_map(|d| d.leases()),
                d6.map(|d| d.server_duid()),
                unix_now,
                &mut restored,
            );
            self.tracker = Some(t);
        }
        restored
    }

    /// `--dhcp-script`: from now on lease changes run the script through
    /// `runner`; first `old` for every live lease (those restored at start),
    /// at `unix_now` (Unix seconds). Call before [`Driven::enable_events`].
    /// The host's table must record changes.
    pub fn set_script(&mut self, tracker: Tracker, runner: Runner, unix_now: u64) {
        let restored = self.tracker(|| tracker, unix_now);
        if let Some(t) = &self.tracker {
            for r in &restored {
                runner.submit(t.restored_job(r, unix_now));
            }
        }
        self.script = Some(runner);
    }

    /// Events on (`--api`, `--notification`): from now on the segment's and
    /// the leases' changes are sent on a channel of [`events::CAPACITY`]
    /// ([`Driven::subscribe`]). The host's table must record changes.
    pub fn enable_events(&mut self, unix_now: u64) {
        self.tracker(|| Tracker::new(None), unix_now);
        self.events = Some(events::channel());
    }

    /// A receiver of the events from now on; `None` when events are off.
    pub fn subscribe(&self) -> Option<tokio::sync::broadcast::Receiver<Arc<Event>>> {
        self.events.as_ref().map(events::Sender::subscribe)
    }

    /// A `current` lease event per live lease at `unix_now`, DHCPv4 (by
    /// address) then DHCPv6 (by address).
    pub fn current_leases(&self, unix_now: u64) -> Vec<Event> {
        let mut v: Vec<Event> = self
            .host
            .dhcp()
            .leases()
            .sorted()
            .into_iter()
            .filter(|l| !l.expired(unix_now))
            .map(|l| {
                current(Event::lease(
                    &Tracked::V4(crate::dhcp_script::Action::Old, l.clone()),
                    unix_now,
                ))
            })
            .collect();
        if let Some(d) = self.host.dhcp6() {
            let mut l6: Vec<_> = d.leases().filter(|l| !l.expired(unix_now)).collect();
            l6.sort_by_key(|l| l.addr);
            v.extend(l6.into_iter().map(|l| {
                current(Event::lease(
                    &Tracked::V6(crate::dhcp_script::Action::Old, l.clone()),
                    unix_now,
                ))
            }));
        }
        v
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
        if let Some(tracker) = &mut self.tracker {
            let now = unix_now();
            for c in &self.changes {
                tracker.change(c, now, &mut self.tracked);
            }
            tracker.expire(now, &mut self.tracked);
            if let Some(runner) = &self.script {
                for t in &self.tracked {
                    runner.submit(tracker.job(t, now));
                }
            }
            if let Some(tx) = self.events.as_ref().filter(|tx| tx.receiver_count() > 0) {
                for t in &self.tracked {
                    let _ = tx.send(Arc::new(Event::lease(t, now)));
                }
            }
            self.tracked.clear();
        }
        self.changes.clear();
    }

    fn segment_event(&mut self, event: SegmentEvent<'_>) {
        if let Some(tx) = &self.events {
            if tx.receiver_count() > 0 {
                let _ = tx.send(Arc::new(Event::segment(event, unix_now())));
            }
        }
    }

    fn report(&self) -> String {
        if self.off {
            return "off (--no-host)".into();
        }
        match &self.script {
            Some(r) => format!(
                "{}\ndhcp-script runs dropped (queue full): {}",
                self.host.report(),
                r.dropped()
            ),
            None => self.host.report(),
        }
    }
}

/// `e` as a `current` lease event.
fn current(mut e: Event) -> Event {
    if let events::Kind::Lease { event, .. } = &mut e.kind {
        *event = "current";
    }
    e
}
