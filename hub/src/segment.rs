//! One switched segment: the [`Switch`], the hub's own host, and the ports.
//!
//! Port tasks hand received frames to a [`Batch`] (one lock for a whole read's
//! worth of frames); the segment decides where each frame goes (switch.rs) and
//! queues it on the egress ports:
//! - stream ports (QEMU `stream`/`socket` connections) append the framed frame
//!   to the port's output buffer; when the batch ends every such buffer is
//!   written with one non-blocking `write` (many frames per syscall). What the
//!   socket does not take stays buffered, and the port's task finishes the write
//!   when the socket is writable again. A full buffer drops whole frames, never
//!   part of one, and counts them, like a switch's full egress queue;
//! - datagram ports (multicast group, dgram peers, tap) queue the batch's frames
//!   and send them when it ends, one datagram per frame but many per syscall
//!   (`sendmmsg`); a full socket buffer drops the frames it did not take, counted.
//! - vhost-user ports ([`Egress::Direct`]) queue the batch's frames the same
//!   way; when it ends they are written straight into the guest's RX
//!   virtqueue in shared memory, with one notification and no syscall per
//!   frame; frames that find no posted buffer are dropped, counted.
//!
//! The forwarding path allocates nothing per frame: receive buffers, output
//! buffers, the slice vectors of a datagram send (kept empty in the port
//! between sends) and the MAC table are reused (hub/tests/alloc_forwarding.rs
//! counts the allocations). The hub's own host (ARP, ICMP, DHCP,
//! DNS in the vmlan-host crate) is port 0, [`HOST_PORT`]: it sees every flooded
//! frame and every frame to its MAC, and its replies are switched like any
//! station's.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::frame::{Frame, MacAddr};
use crate::framing;
use crate::switch::{Decision, PortId, Switch};
use crate::sys::mmsg::recycle;

/// The port id of the hub's own host.
pub const HOST_PORT: PortId = 0;

/// Default cap of a stream port's output buffer, in bytes (frames beyond it are dropped).
pub const STREAM_OUT_CAP: usize = 4 * 1024 * 1024;

/// How often the MAC table is aged at the latest ([`Segment::poll_timeout`]).
pub const AGE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The hub's own host on the segment, as the segment drives it (sans-IO,
/// the quinn-proto shape: time comes in with every call).
pub trait LocalHost: Send + 'static {
    /// The host's MAC address; frames to it are delivered to the host only.
    fn mac(&self) -> MacAddr;
    /// Handles one frame (already at least 14 bytes) received at `now`,
    /// pushing any frames to send into `out`. Malformed packets are dropped
    /// and counted by the host.
    fn handle_frame(&mut self, now: Instant, frame: &[u8], out: &mut Vec<Vec<u8>>);
    /// When [`LocalHost::handle_timeout`] is next due (`None`: no timer
    /// pending). Asked once per timer wake, not per frame.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    /// Runs the host's timers due at `now` (lease expiry, DNS timeouts, TCP
    /// timers). Frames to send go into `out`, switched as the host's replies are.
    fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        let _ = (now, out);
    }
    /// Called once at the end of every batch (and timer run) in which the
    /// host handled a frame or a timeout, before any frame of that batch is
    /// sent: the place for a driver to make durable what the replies promise
    /// (the lease journal), with one write per batch.
    fn end_batch(&mut self) {}
    /// One line of the host's own counters for [`Segment::report`] (empty: none).
    fn report(&self) -> String {
        String::new()
    }
    /// A change of the segment: a port came or went, a MAC was learned,
    /// moved or left the table. Called under the segment's lock only when
    /// something changed, never for a frame that changed nothing; it must
    /// not block (the driver queues it). Default: ignored.
    fn segment_event(&mut self, event: SegmentEvent<'_>) {
        let _ = event;
    }
}

/// A change of the segment, as [`LocalHost::segment_event`] hears of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentEvent<'a> {
    /// Port `id` named `name` (kind and peer, e.g. `stream:unix:/run/vm1.sock`) was added.
    PortUp {
        /// Its id.
        id: PortId,
        /// Its name.
        name: &'a str,
    },
    /// Port `id` named `name` was removed (its MACs were reported gone first).
    PortDown {
        /// Its id.
        id: PortId,
        /// Its name.
        name: &'a str,
    },
    /// `mac` was learned on `port` (it was not in the table).
    MacLearned {
        /// The station's MAC.
        mac: MacAddr,
        /// Its port.
        port: PortId,
    },
    /// `mac`, known on port `from`, was seen on `port`.
    MacMoved {
        /// The station's MAC.
        mac: MacAddr,
        /// The port it is on now.
        port: PortId,
        /// The port it was on.
        from: PortId,
    },
    /// `mac` left the table: idle for the aging time, or its port was removed.
    MacAged {
        /// The station's MAC.
        mac: MacAddr,
        /// The port it was on.
        port: PortId,
    },
}

impl From<crate::switch::Learned> for SegmentEvent<'static> {
    fn from(l: crate::switch::Learned) -> Self {
        match l {
            crate::switch::Learned::New(mac, port) => SegmentEvent::MacLearned { mac, port },
            crate::switch::Learned::Moved { mac, to, from } => SegmentEvent::MacMoved { mac, port: to, from },
        }
    }
}

/// Sends whole frames, one datagram (or one tap write) each, without blocking.
pub trait DatagramTx: Send + 'static {
    /// Sends `frames` in order (each 14..=69632 bytes, never empty) and returns
    /// how many went; those after a full socket buffer are dropped by the caller.
    ///
    /// # Errors
    /// The socket's error when not even the first frame went (`WouldBlock` when
    /// its buffer is full).
    fn send_batch(&mut self, frames: &[&[u8]]) -> io::Result<usize>;

    /// Frames and bytes of the last [`DatagramTx::send_batch`] it took but
    /// dropped on purpose (a VXLAN port's frames too big for the underlay):
    /// counted as the port's drops, not as sent. Default: none.
    fn take_dropped(&mut self) -> (u64, u64) {
        (0, 0)
    }

    /// The port's own counters, appended to its line of [`Segment::report`]
    /// (empty: none; a VXLAN port's drops by cause).
    fn report(&self) -> String {
        String::new()
    }
}

/// Most datagram frames queued on one port before they are sent mid-batch.
const DATAGRAM_QUEUE: usize = 256;

/// Writes bytes of a connected byte stream, without blocking.
pub trait StreamTx: Send + Sync + 'static {
    /// Writes a prefix of `buf`, returning how many bytes were taken.
    ///
    /// # Errors
    /// `WouldBlock` when the socket buffer is full; any other error closes the port.
    fn write(&self, buf: &[u8]) -> io::Result<usize>;
}

/// Writes frames straight into the peer's memory (a vhost-user port's RX
/// virtqueue), without a syscall per frame; called under the segment's lock
/// once per batch.
pub trait DirectTx: Send + 'static {
    /// Delivers `frames` (each 14..=69632 bytes) in order and notifies the
    /// peer once, if it asked to be (virtio's used-buffer notification).
    /// Returns the frames and bytes delivered; the others were dropped (the
    /// peer posted no buffer or too few, its ring is disabled, or the port is
    /// closing).
    fn send_batch(&mut self, frames: &[&[u8]]) -> (usize, u64);
}

/// How a port sends.
pub enum Egress {
    /// The hub's own host.
    Host,
    /// A byte stream with QEMU's length framing, buffered and written per batch.
    Stream(Arc<dyn StreamTx>),
    /// One datagram per frame.
    Datagram(Box<dyn DatagramTx>),
    /// Straight into the peer's memory, queued as datagrams are and written
    /// at the end of the batch with one notification.
    Direct(Box<dyn DirectTx>),
}

/// State a stream port's thread shares with the segment.
pub struct PortSignal {
    /// Set when the port's output buffer holds bytes the socket did not take.
    pub pending: AtomicBool,
    /// Set when writing failed for good: the thread must close the port.
    pub broken: AtomicBool,
    /// Readable after `pending` or `broken` was set, so the thread's `poll` wakes
    /// (only stream ports have one).
    pub wake_fd: Option<EventFd>,
}

impl PortSignal {
    fn new(stream: bool) -> Self {
        PortSignal {
            pending: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            wake_fd: stream
                .then(|| EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).ok())
                .flatten(),
        }
    }

    /// Wakes the port's thread.
    pub fn wake(&self) {
        if let Some(fd) = &self.wake_fd {
            let _ = fd.write(1);
        }
    }

    /// Consumes pending wake-ups (the thread calls it when `wake_fd` polled readable).
    pub fn clear_wake(&self) {
        if let Some(fd) = &self.wake_fd {
            let _ = fd.read();
        }
    }
}

/// Per-port counters since start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received from the port.
    pub rx_frames: u64,
    /// Bytes received from the port (Ethernet headers included, framing not).
    pub rx_bytes: u64,
    /// Frames sent (or queued) to the port.
    pub tx_frames: u64,
    /// Bytes sent (or queued) to the port.
    pub tx_bytes: u64,
    /// Frames not delivered: the port's buffer was full, or received frames dropped
    /// on purpose (our own multicast echo, a group source MAC).
    pub drops: u64,
    /// Malformed input (a frame under 14 bytes or over 69632, a bad length prefix)
    /// and send errors.
    pub errors: u64,
}

struct OutBuf {
    buf: Vec<u8>,
    start: usize,
}

struct Port {
    name: String,
    egress: Egress,
    out: OutBuf,
    /// Lengths of the datagram frames queued in `out` (datagram ports only).
    lens: Vec<u32>,
    /// The frame slices of one datagram send, kept empty between sends (see
    /// `sys::mmsg::recycle`), so a send allocates nothing.
    frames: Vec<&'static [u8]>,
    stats: PortStats,
    signal: Arc<PortSignal>,
    dirty: bool,
}

impl Port {
    /// A port with empty buffers and counters.
    fn new(name: String, egress: Egress, signal: Arc<PortSignal>) -> Self {
        Port {
            name,
            egress,
            out: OutBuf {
                buf: Vec::new(),
                start: 0,
            },
            lens: Vec::new(),
            frames: Vec::new(),
            stats: PortStats::default(),
            signal,
            dirty: false,
        }
    }
}

struct Inner<H> {
    switch: Switch,
    host: H,
    host_mac: MacAddr,
    host_out: Vec<Vec<u8>>,
    /// The host handled a frame or a timeout in this batch: its
    /// [`LocalHost::end_batch`] runs before the ports are written.
    host_dirty: bool,
    ports: Vec<Option<Port>>,
    dirty: Vec<PortId>,
    out_cap: usize,
}

impl<H: LocalHost> Inner<H> {
    fn add_port(&mut self, name: String, egress: Egress) -> (PortId, Arc<PortSignal>) {
        let signal = Arc::new(PortSignal::new(matches!(egress, Egress::Stream(_))));
        let port = Port::new(name, egress, signal.clone());
        let id = match self.ports.iter().skip(1).position(Option::is_none) {
            Some(free) => free + 1,
            None => {
                self.ports.push(None);
                self.ports.len() - 1
            }
        };
        self.ports[id] = Some(port);
        if let Some(p) = &self.ports[id] {
            self.host.segment_event(SegmentEvent::PortUp { id, name: &p.name });
        }
        (id, signal)
    }

    fn remove_port(&mut self, id: PortId) -> Option<PortStats> {
        if id == HOST_PORT {
            return None;
        }
        let Inner { switch, host, .. } = self;
        switch.forget_port_each(id, |mac| host.segment_event(SegmentEvent::MacAged { mac, port: id }));
        self.dirty.retain(|p| *p != id);
        let p = self.ports.get_mut(id).and_then(Option::take)?;
        self.host.segment_event(SegmentEvent::PortDown { id, name: &p.name });
        Some(p.stats)
    }

    /// Tells the host of the table change the last decision made, if any.
    fn report_learned(&mut self) {
        if let Some(l) = self.switch.take_learned() {
            self.host.segment_event(l.into());
        }
    }
}

/// A switched segment with its host `H`; shared by the port tasks behind an `Arc`.
pub struct Segment<H> {
    inner: Mutex<Inner<H>>,
}

impl<H: LocalHost> Segment<H> {
    /// A segment with `host` as port 0 and no other port yet.
    pub fn new(host: H, switch: Switch) -> Self {
        let host_port = Port::new("host".into(), Egress::Host, Arc::new(PortSignal::new(false)));
        Segment {
            inner: Mutex::new(Inner {
                switch,
                host_mac: host.mac(),
                host,
                host_out: Vec::new(),
                host_dirty: false,
                ports: vec![Some(host_port)],
                dirty: Vec::new(),
                out_cap: STREAM_OUT_CAP,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<H>> {
        // A panic while holding the lock would be a bug; keep serving rather than cascade.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a port named `name` (for logs and stats) that sends through `egress`;
    /// returns its id and the signal its task must watch.
    pub fn add_port(&self, name: String, egress: Egress) -> (PortId, Arc<PortSignal>) {
        self.lock().add_port(name, egress)
    }

    /// Removes port `id` and forgets the MACs learned on it; returns its counters.
    pub fn remove_port(&self, id: PortId) -> Option<PortStats> {
        self.lock().remove_port(id)
    }

    /// The counters of port `id`.
    pub fn stats(&self, id: PortId) -> Option<PortStats> {
        self.lock().ports.get(id).and_then(Option::as_ref).map(|p| p.stats)
    }

    /// Counts one malformed input on `id` (for example a bad length prefix).
    pub fn count_error(&self, id: PortId) {
        if let Some(p) = self.lock().ports.get_mut(id).and_then(Option::as_mut) {
            p.stats.errors += 1;
        }
    }

    /// Starts a batch: frames given to it are switched under one lock, and stream
    /// ports are written when it ends.
    pub fn batch(&self) -> Batch<'_, H> {
        Batch {
            inner: self.lock(),
            now: Instant::now(),
        }
    }

    /// Switches one frame received on `in_port` (a batch of one).
    pub fn ingress(&self, in_port: PortId, bytes: &[u8]) {
        self.batch().ingress(in_port, bytes);
    }

    /// Writes what port `id` has buffered. Called by the port's task when its
    /// socket became writable.
    ///
    /// # Errors
    /// `WouldBlock` if bytes remain (the task waits for writability again); any
    /// other error means the connection is broken.
    pub fn flush_port(&self, id: PortId) -> io::Result<()> {
        let mut inner = self.lock();
        match inner.ports.get_mut(id).and_then(Option::as_mut) {
            Some(p) => flush(p),
            None => Ok(()),
        }
    }

    /// Runs `f` on the host (for example to answer a DNS query that came from the host side).
    pub fn with_host<R>(&self, f: impl FnOnce(&mut H) -> R) -> R {
        f(&mut self.lock().host)
    }

    /// When [`Segment::handle_timeout`] is next due: the host's next timer,
    /// and at most [`AGE_EVERY`] away (the MAC table's aging).
    pub fn poll_timeout(&self) -> Instant {
        let age = Instant::now() + AGE_EVERY;
        self.lock().host.poll_timeout().map_or(age, |t| t.min(age))
    }

    /// Runs the timers due at `now`: ages the MAC table, and lets the host
    /// expire leases and run its timers when due; the frames the host sends
    /// then are switched like its replies (a batch: the host's
    /// [`LocalHost::end_batch`] runs, then the ports are written).
    pub fn handle_timeout(&self) {
        let mut b = self.batch();
        let now = b.now;
        let inner = &mut *b.inner;
        let Inner { switch, host, .. } = inner;
        switch.age_each(now, |mac, port| host.segment_event(SegmentEvent::MacAged { mac, port }));
        if inner.host.poll_timeout().is_some_and(|t| t <= now) {
            let mut out = std::mem::take(&mut inner.host_out);
            inner.host.handle_timeout(now, &mut out);
            switch_host_frames(inner, &mut out, now);
            inner.host_out = out;
            inner.host_dirty = true;
        }
    }

    /// A consistent view of the segment taken under one lock: every port's
    /// counters (and its own report, e.g. a VXLAN port's), the host's report
    /// line, and the MAC table with each entry's idle time. For the runtime
    /// API and [`Segment::report`]; allocates, so not for the forwarding path.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        let ports = inner
            .ports
            .iter()
            .enumerate()
            .filter_map(|(id, p)| {
                let p = p.as_ref()?;
                let extra = match &p.egress {
                    Egress::Datagram(tx) => tx.report(),
                    _ => String::new(),
                };
                Some(PortSnapshot {
                    id,
                    name: p.name.clone(),
                    stats: p.stats,
                    extra,
                })
            })
            .collect();
        Snapshot {
            ports,
            host: inner.host.report(),
            macs: inner.switch.entries(Instant::now()),
        }
    }

    /// A printable report of a [`Segment::snapshot`]: one line per port with
    /// its counters (`port I NAME: rx A frames B bytes, tx C frames D bytes,
    /// drops E, errors F[, EXTRA]`), the host's counters (`host ...`), then
    /// the MAC table (`mac M port P idle Ns`).
    pub fn report(&self) -> String {
        use std::fmt::Write;
        let snap = self.snapshot();
        let mut s = String::new();
        for p in &snap.ports {
            let t = p.stats;
            let _ = write!(
                s,
                "port {} {}: rx {} frames {} bytes, tx {} frames {} bytes, drops {}, errors {}",
                p.id, p.name, t.rx_frames, t.rx_bytes, t.tx_frames, t.tx_bytes, t.drops, t.errors
            );
            if !p.extra.is_empty() {
                let _ = write!(s, ", {}", p.extra);
            }
            s.push('\n');
        }
        if !snap.host.is_empty() {
            let _ = writeln!(s, "host {}", snap.host);
        }
        for (mac, port, idle) in snap.macs {
            let _ = writeln!(s, "mac {mac} port {port} idle {}s", idle.as_secs());
        }
        s
    }
}

/// What [`Segment::snapshot`] returns.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The live ports, by id.
    pub ports: Vec<PortSnapshot>,
    /// The host's report line ([`LocalHost::report`]), empty without one.
    pub host: String,
    /// The MAC table: (MAC, port, time since the MAC was last seen).
    pub macs: Vec<(MacAddr, PortId, Duration)>,
}

/// One port in a [`Snapshot`].
#[derive(Debug, Clone)]
pub struct PortSnapshot {
    /// The port's id (its number in the MAC table).
    pub id: PortId,
    /// Its name: kind and peer, e.g. `stream:unix:/run/vm1.sock`, `vxlan:42`.
    pub name: String,
    /// Its counters.
    pub stats: PortStats,
    /// Its own counters as text (a VXLAN port's `vxlan rx ...`), or empty.
    pub extra: String,
}

/// Sends a datagram (or direct) port's queued frames, counting what went and
/// what was dropped.
fn flush_datagrams(p: &mut Port) {
    let Port {
        egress,
        out,
        lens,
        frames: spare,
        stats,
        ..
    } = p;
    if lens.is_empty() || matches!(egress, Egress::Host | Egress::Stream(_)) {
        return;
    }
    let mut frames: Vec<&[u8]> = recycle(std::mem::take(spare));
    let mut at = 0;
    for len in lens.iter() {
        frames.push(&out.buf[at..at + *len as usize]);
        at += *len as usize;
    }
    match egress {
        Egress::Datagram(tx) => match tx.send_batch(&frames) {
            Ok(n) => {
                let (held, held_bytes) = tx.take_dropped();
                let bytes = frames[..n].iter().map(|f| f.len() as u64).sum::<u64>();
                stats.tx_frames += (n as u64).saturating_sub(held);
                stats.tx_bytes += bytes.saturating_sub(held_bytes);
                stats.drops += (frames.len() - n) as u64 + held;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stats.drops += frames.len() as u64,
            Err(_) => stats.errors += frames.len() as u64,
        },
        Egress::Direct(tx) => {
            let (n, bytes) = tx.send_batch(&frames);
            stats.tx_frames += n as u64;
            stats.tx_bytes += bytes;
            stats.drops += (frames.len() - n) as u64;
        }
        Egress::Host | Egress::Stream(_) => {}
    }
    *spare = recycle(frames);
    out.buf.clear();
    lens.clear();
}

/// Writes a stream port's buffered bytes; `Ok` when all went out.
fn flush(p: &mut Port) -> io::Result<()> {
    let Egress::Stream(tx) = &p.egress else { return Ok(()) };
    let out = &mut p.out;
    while out.start < out.buf.len() {
        match tx.write(&out.buf[out.start..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => out.start += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                if out.start > out.buf.len() / 2 {
                    out.buf.drain(..out.start);
                    out.start = 0;
                }
                return Err(e);
            }
        }
    }
    out.buf.clear();
    out.start = 0;
    p.signal.pending.store(false, Ordering::Release);
    Ok(())
}

/// Frames switched under one lock; stream ports are written when it is dropped.
pub struct Batch<'a, H: LocalHost> {
    inner: MutexGuard<'a, Inner<H>>,
    now: Instant,
}

impl<H: LocalHost> Batch<'_, H> {
    /// [`Segment::add_port`] within the batch (a datagram socket meeting a new peer).
    pub fn add_port(&mut self, name: String, egress: Egress) -> (PortId, Arc<PortSignal>) {
        self.inner.add_port(name, egress)
    }

    /// [`Segment::remove_port`] within the batch.
    pub fn remove_port(&mut self, id: PortId) -> Option<PortStats> {
        self.inner.remove_port(id)
    }

    /// Counts `n` frames received on `id` and dropped on purpose before switching.
    pub fn count_drop(&mut self, id: PortId, n: u64) {
        if let Some(p) = self.inner.ports.get_mut(id).and_then(Option::as_mut) {
            p.stats.drops += n;
        }
    }

    /// Counts `n` malformed inputs on `id` (for example frames too long to switch).
    pub fn count_error(&mut self, id: PortId, n: u64) {
        if let Some(p) = self.inner.ports.get_mut(id).and_then(Option::as_mut) {
            p.stats.errors += n;
        }
    }

    /// Switches one frame received on `in_port`; malformed frames are counted and dropped.
    pub fn ingress(&mut self, in_port: PortId, bytes: &[u8]) {
        let inner = &mut *self.inner;
        let Some(p) = inner.ports.get_mut(in_port).and_then(Option::as_mut) else {
            return;
        };
        p.stats.rx_frames += 1;
        p.stats.rx_bytes += bytes.len() as u64;
        let Ok(frame) = Frame::new(bytes) else {
            p.stats.errors += 1;
            return;
        };
        let decision = inner.switch.decide(in_port, &frame, self.now);
        inner.report_learned();
        let to_host = match route(inner, in_port, &frame, decision) {
            Some(h) => h,
            None => {
                if let Some(p) = inner.ports[in_port].as_mut() {
                    p.stats.drops += 1;
                }
                return;
            }
        };
        if to_host && in_port != HOST_PORT {
            let mut out = std::mem::take(&mut inner.host_out);
            inner.host.handle_frame(self.now, bytes, &mut out);
            switch_host_frames(inner, &mut out, self.now);
            inner.host_out = out;
            inner.host_dirty = true;
        }
    }
}

impl<H: LocalHost> Drop for Batch<'_, H> {
    fn drop(&mut self) {
        let inner = &mut *self.inner;
        if std::mem::take(&mut inner.host_dirty) {
            inner.host.end_batch();
        }
        for id in inner.dirty.drain(..) {
            let Some(p) = inner.ports.get_mut(id).and_then(Option::as_mut) else {
                continue;
            };
            p.dirty = false;
            if matches!(p.egress, Egress::Datagram(_) | Egress::Direct(_)) {
                flush_datagrams(p);
                continue;
            }
            match flush(p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !p.signal.pending.swap(true, Ordering::AcqRel) {
                        p.signal.wake();
                    }
                }
                Err(_) => {
                    p.stats.errors += 1;
                    p.signal.broken.store(true, Ordering::Release);
                    p.signal.wake();
                }
            }
        }
    }
}

/// Switches the frames the host sent (drained from `out`) as received on [`HOST_PORT`].
fn switch_host_frames<H: LocalHost>(inner: &mut Inner<H>, out: &mut Vec<Vec<u8>>, now: Instant) {
    for reply in out.drain(..) {
        if let Ok(f) = Frame::new(&reply) {
            let d = inner.switch.decide(HOST_PORT, &f, now);
            inner.report_learned();
            route(inner, HOST_PORT, &f, d);
        }
    }
}

/// Carries out `decision` for the non-host ports; returns whether the host must
/// see the frame too, or `None` when the frame is dropped.
fn route<H>(inner: &mut Inner<H>, in_port: PortId, frame: &Frame<'_>, decision: Decision) -> Option<bool> {
    // An invalid source goes nowhere, the host included (it would answer to a group MAC).
    if decision == Decision::DropInvalidSource {
        return None;
    }
    if frame.dst() == inner.host_mac {
        return Some(true);
    }
    match decision {
        Decision::Unicast(HOST_PORT) => Some(true),
        Decision::Unicast(p) => {
            transmit(inner, p, frame.as_bytes());
            Some(false)
        }
        Decision::Flood => {
            for p in 1..inner.ports.len() {
                if p != in_port {
                    transmit(inner, p, frame.as_bytes());
                }
            }
            Some(true)
        }
        Decision::Filter => Some(false),
        Decision::DropInvalidSource => None,
    }
}

fn transmit<H>(inner: &mut Inner<H>, id: PortId, bytes: &[u8]) {
    let cap = inner.out_cap;
    let Some(p) = inner.ports.get_mut(id).and_then(Option::as_mut) else {
        return;
    };
    match &p.egress {
        Egress::Host => {}
        Egress::Stream(_) => {
            if p.out.buf.len() - p.out.start + framing::PREFIX_LEN + bytes.len() > cap {
                p.stats.drops += 1;
                return;
            }
            framing::encode_into(&mut p.out.buf, bytes);
            p.stats.tx_frames += 1;
            p.stats.tx_bytes += bytes.len() as u64;
            if !p.dirty && !p.signal.pending.load(Ordering::Acquire) {
                p.dirty = true;
                inner.dirty.push(id);
            }
        }
        Egress::Datagram(_) | Egress::Direct(_) => {
            if p.lens.len() >= DATAGRAM_QUEUE {
                flush_datagrams(p);
            }
            p.out.buf.extend_from_slice(bytes);
            p.lens.push(bytes.len() as u32);
            if !p.dirty {
                p.dirty = true;
                inner.dirty.push(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);
    impl DatagramTx for Recorder {
        fn send_batch(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
            self.0.lock().unwrap().extend(frames.iter().map(|f| f.to_vec()));
            Ok(frames.len())
        }
    }

    /// A stream that takes at most `room` more bytes, then says WouldBlock.
    #[derive(Default)]
    struct Pipe {
        data: Mutex<Vec<u8>>,
        room: Mutex<usize>,
    }
    impl StreamTx for Pipe {
        fn write(&self, buf: &[u8]) -> io::Result<usize> {
            let mut room = self.room.lock().unwrap();
            if *room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(*room);
            *room -= n;
            self.data.lock().unwrap().extend_from_slice(&buf[..n]);
            Ok(n)
        }
    }

    /// A host that answers every frame to its MAC with one frame back to the sender.
    struct EchoHost(Arc<AtomicUsize>);
    const HOST_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    impl LocalHost for EchoHost {
        fn mac(&self) -> MacAddr {
            HOST_MAC
        }
        fn handle_frame(&mut self, _: Instant, frame: &[u8], out: &mut Vec<Vec<u8>>) {
            self.0.fetch_add(1, Ordering::Relaxed);
            if frame[0..6] == HOST_MAC.0 {
                let mut r = frame.to_vec();
                r[0..6].copy_from_slice(&frame[6..12]);
                r[6..12].copy_from_slice(&HOST_MAC.0);
                out.push(r);
            }
        }
    }

    fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f
    }
    const A: [u8; 6] = [0, 0, 0, 0x11, 0x11, 0x11];
    const B: [u8; 6] = [0, 0, 0, 0x22, 0x22, 0x22];

    #[test]
    fn host_replies_are_switched_and_floods_skip_ingress() {
        let seen = Arc::new(AtomicUsize::new(0));
        let seg = Segment::new(EchoHost(seen.clone()), Switch::default());
        let (r1, r2) = (Recorder::default(), Recorder::default());
        let (p1, _) = seg.add_port("p1".into(), Egress::Datagram(Box::new(r1.clone())));
        let (p2, _) = seg.add_port("p2".into(), Egress::Datagram(Box::new(r2.clone())));
        // Broadcast from port 1: flooded to port 2 only, and seen by the host.
        seg.ingress(p1, &frame([0xff; 6], A));
        assert_eq!(r1.0.lock().unwrap().len(), 0);
        assert_eq!(r2.0.lock().unwrap().len(), 1);
        assert_eq!(seen.load(Ordering::Relaxed), 1);
        // To the host: the host's reply goes back to port 1 only (A was learned there).
        seg.ingress(p1, &frame(HOST_MAC.0, A));
        assert_eq!(r1.0.lock().unwrap().len(), 1);
        assert_eq!(r2.0.lock().unwrap().len(), 1);
        // A runt counts as an error on the ingress port, reaching nobody.
        seg.ingress(p2, &[1, 2, 3]);
        assert_eq!(seg.stats(p2).unwrap().errors, 1);
        assert!(seg.report().contains("mac 00:00:00:11:11:11 port 1"));
        // From a group or all-zero source, even to the host's MAC: dropped and counted.
        let before = seen.load(Ordering::Relaxed);
        seg.ingress(p2, &frame(HOST_MAC.0, [0x01, 0, 0x5e, 0, 0, 1]));
        seg.ingress(p2, &frame(HOST_MAC.0, [0; 6]));
        seg.ingress(p2, &frame([0xff; 6], [0; 6]));
        assert_eq!(seen.load(Ordering::Relaxed), before, "the host saw an invalid source");
        assert_eq!(seg.stats(p2).unwrap().drops, 3);
        assert_eq!(r1.0.lock().unwrap().len(), 1, "an invalid source was forwarded");
    }

    #[test]
    fn stream_egress_is_framed_batched_and_resumed() {
        let seg = Segment::new(EchoHost(Arc::default()), Switch::default());
        let pipe = Arc::new(Pipe::default());
        *pipe.room.lock().unwrap() = 100;
        let (ps, sig) = seg.add_port("s".into(), Egress::Stream(pipe.clone()));
        let (pd, _) = seg.add_port("d".into(), Egress::Datagram(Box::new(Recorder::default())));
        seg.ingress(ps, &frame([0xff; 6], B)); // learn B on the stream port
        {
            let mut b = seg.batch();
            for _ in 0..3 {
                b.ingress(pd, &frame(B, A));
            }
        }
        // 3 x (4 + 60) bytes queued; the socket took 100, the rest waits.
        assert_eq!(pipe.data.lock().unwrap().len(), 100);
        assert_eq!(&pipe.data.lock().unwrap()[..4], &[0, 0, 0, 60]);
        assert!(sig.pending.load(Ordering::Acquire));
        *pipe.room.lock().unwrap() = 1000;
        seg.flush_port(ps).unwrap();
        assert_eq!(pipe.data.lock().unwrap().len(), 192);
        assert!(!sig.pending.load(Ordering::Acquire));
        assert_eq!(seg.stats(ps).unwrap().tx_frames, 3);
    }

    #[test]
    fn full_stream_buffer_drops_whole_frames_and_removed_ports_are_forgotten() {
        let seg = Segment::new(EchoHost(Arc::default()), Switch::default());
        seg.lock().out_cap = 150;
        let pipe = Arc::new(Pipe::default());
        let (ps, _) = seg.add_port("s".into(), Egress::Stream(pipe.clone()));
        let (pd, _) = seg.add_port("d".into(), Egress::Datagram(Box::new(Recorder::default())));
        seg.ingress(ps, &frame([0xff; 6], B));
        for _ in 0..3 {
            seg.ingress(pd, &frame(B, A));
        }
        let st = seg.stats(ps).unwrap();
        assert_eq!((st.tx_frames, st.drops), (2, 1));
        seg.remove_port(ps);
        assert!(!seg.report().contains("00:00:00:22:22:22"));
        // The freed id is reused by the next port.
        let (again, _) = seg.add_port("s2".into(), Egress::Host);
        assert_eq!(again, ps);
    }

    /// A host that records the segment's events as text.
    #[derive(Default)]
    struct EventHost(Arc<Mutex<Vec<String>>>);
    impl LocalHost for EventHost {
        fn mac(&self) -> MacAddr {
            HOST_MAC
        }
        fn handle_frame(&mut self, _: Instant, _: &[u8], _: &mut Vec<Vec<u8>>) {}
        fn segment_event(&mut self, e: SegmentEvent<'_>) {
            self.0.lock().unwrap().push(format!("{e:?}"));
        }
    }

    #[test]
    fn events_on_changes_only() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seg = Segment::new(EventHost(seen.clone()), Switch::default());
        let (p1, _) = seg.add_port("d:1".into(), Egress::Datagram(Box::new(Recorder::default())));
        let (p2, _) = seg.add_port("d:2".into(), Egress::Datagram(Box::new(Recorder::default())));
        for _ in 0..3 {
            seg.ingress(p1, &frame([0xff; 6], A));
        }
        seg.ingress(p2, &frame([0xff; 6], A));
        seg.remove_port(p2);
        let a = MacAddr(A);
        let want = [
            format!("{:?}", SegmentEvent::PortUp { id: p1, name: "d:1" }),
            format!("{:?}", SegmentEvent::PortUp { id: p2, name: "d:2" }),
            format!("{:?}", SegmentEvent::MacLearned { mac: a, port: p1 }),
            format!(
                "{:?}",
                SegmentEvent::MacMoved {
                    mac: a,
                    port: p2,
                    from: p1
                }
            ),
            format!("{:?}", SegmentEvent::MacAged { mac: a, port: p2 }),
            format!("{:?}", SegmentEvent::PortDown { id: p2, name: "d:2" }),
        ];
        assert_eq!(*seen.lock().unwrap(), want);
    }
}
