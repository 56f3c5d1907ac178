//! Port forwards from the machine into guests, the segment's half, sans-IO:
//! the hub's host opens TCP connections (RFC 9293) and sends UDP datagrams
//! (RFC 768) from its own address on the segment to a guest's address and
//! port, for the binary's `--expose` listeners (src/forward_io.rs), as
//! gvproxy's forwarder does from its gVisor stack.
//!
//! The stack is smoltcp 0.14 on an Ethernet interface with the host's MAC
//! and IPv4 address in the `--addr` prefix (it resolves guests with ARP, RFC
//! 826, and learns from ARP requests to the host; its own ARP replies are
//! dropped, the host answers those), fed through a small `phy::Device` of
//! queued frames; nothing here touches a socket or reads a clock. Each
//! forwarded TCP connection and each UDP flow (one per machine-side client)
//! has its own smoltcp socket on an ephemeral port of the host's
//! ([`PORTS`]), made when it opens and dropped when it ends.
//!
//! The driver calls [`Forwarder::tcp_connect`] / [`Forwarder::udp_open`],
//! moves bytes with [`Forwarder::tcp_send`], [`Forwarder::tcp_recv`],
//! [`Forwarder::udp_send`], [`Forwarder::udp_recv`], and reads what changed
//! from [`Forwarder::take_events`] ([`Event`]: connected, readable,
//! writable, closed, refused, reset), after the host fed guest frames in
//! ([`Forwarder::receive`]) or ran the timers ([`Forwarder::poll`]).
//!
//! Bounds: [`TCP_MAX`] connections and [`UDP_MAX`] flows at once (more are
//! refused, counted); [`BUF`] bytes of smoltcp buffer each way per
//! connection and per flow, so a slow reader on either side fills its own
//! window and the other side waits (TCP flow control), never memory; a
//! connection not established within [`CONNECT_TIMEOUT`] is aborted
//! (refused); an established one whose sent data stays unacknowledged for
//! [`ACK_TIMEOUT`] (keep-alives every [`KEEPALIVE`] included) is aborted
//! (reset); a UDP flow silent both ways for [`UDP_IDLE`] is closed. The
//! events waiting are at most one per connection and kind.

mod tcp;
mod udp;

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::Medium;

use crate::smol_queue::Queue;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use vmlan_hub::MacAddr;

pub use tcp::TcpState;
pub use udp::UDP_MAX_PAYLOAD;

/// Most forwarded TCP connections open at once; more are refused ([`ForwardError::Full`]).
pub const TCP_MAX: usize = 1024;
/// Most UDP flows (machine-side clients) at once; more are refused ([`ForwardError::Full`]).
pub const UDP_MAX: usize = 256;
/// smoltcp's buffer per direction of a connection or flow, in bytes
/// (64 KiB: also the largest TCP window without window scaling, RFC 7323).
pub const BUF: usize = 64 * 1024;
/// Datagrams queued per direction of a UDP flow.
pub const UDP_PACKETS: usize = 64;
/// The host's ephemeral ports for forwarded connections and flows (RFC 6335
/// section 6: the dynamic range).
pub const PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;
/// A TCP connection not established this long after its SYN is aborted (refused).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Keep-alive probes on an idle established connection this often (RFC 9293 section 3.8.4).
pub const KEEPALIVE: Duration = Duration::from_secs(30);
/// An established connection whose data or keep-alives stay unacknowledged
/// this long is aborted (reset).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(120);
/// A UDP flow with no datagram either way this long is closed.
pub const UDP_IDLE: Duration = Duration::from_secs(90);
/// While connections or flows are open, [`Forwarder::poll`] is due when
/// smoltcp's next timer (retransmission, 1 s minimum RTO, RFC 6298 section
/// 2.4; delayed ACK; keep-alive) or one of the timeouts above says, and at
/// least this often.
pub const TICK: Duration = Duration::from_secs(1);
/// [`Forwarder::poll`] is never due sooner than this after the last one (no
/// spinning on a timer smoltcp keeps in the past, such as a neighbour it waits for).
pub const MIN_TICK: Duration = Duration::from_millis(5);
/// Most frames from the segment waiting for smoltcp (it runs after every frame).
const RX_QUEUE: usize = 64;
/// The IP MTU of the segment, in bytes (a 1500-byte Ethernet payload).
const MTU: usize = 1500;

/// Why a connection or flow could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The remote address is not inside the host's `--addr` prefix (only
    /// guests on the segment are reached), or is the host's own, its
    /// network or broadcast address, or port 0.
    #[error("{0} is not a guest address and port in the hub's --addr prefix")]
    NotOnSegment(SocketAddrV4),
    /// [`TCP_MAX`] connections or [`UDP_MAX`] flows are open, or no ephemeral port is free.
    #[error("too many forwarded connections or flows open")]
    Full,
}

/// What changed on a connection or flow, for the driver to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// The guest accepted the TCP connection (SYN-ACK received).
    Connected,
    /// Bytes (TCP) or datagrams (UDP) from the guest wait to be read.
    Readable,
    /// Send buffer space freed (the guest acknowledged data).
    Writable,
    /// The guest closed its half (FIN, all data read), or the connection
    /// ended cleanly, or the UDP flow timed out ([`UDP_IDLE`]).
    Closed,
    /// The connection was never established: the guest answered the SYN
    /// with a RST (no listener), or [`CONNECT_TIMEOUT`] ran out.
    Refused,
    /// An established connection ended without a clean close: a RST from
    /// the guest, or [`ACK_TIMEOUT`].
    Reset,
}

/// One event: connection or flow `id` and what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// The id [`Forwarder::tcp_connect`] or [`Forwarder::udp_open`] returned.
    pub id: u64,
    /// What changed.
    pub kind: EventKind,
}

/// Counters of the forwarder (cumulative).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ForwardStats {
    /// TCP connections opened toward guests.
    pub tcp_opened: u64,
    /// Of those, connections the guest refused or that timed out before established.
    pub tcp_refused: u64,
    /// Established connections reset (by the guest, or [`ACK_TIMEOUT`]).
    pub tcp_reset: u64,
    /// UDP flows opened.
    pub udp_opened: u64,
    /// UDP datagrams sent to guests.
    pub udp_sent: u64,
    /// UDP datagrams received from guests.
    pub udp_received: u64,
    /// Datagrams dropped: a flow's send queue was full, a datagram over
    /// [`UDP_MAX_PAYLOAD`] bytes, or one from another port of the guest.
    pub udp_dropped: u64,
    /// Opens refused because [`TCP_MAX`] or [`UDP_MAX`] were reached (or no port was free).
    pub full: u64,
    /// Bytes sent to guests over TCP.
    pub tcp_bytes_out: u64,
    /// Bytes received from guests over TCP.
    pub tcp_bytes_in: u64,
}

/// Which socket holds a local port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Tcp(u64),
    Udp(u64),
}

/// The forwarder: connections and flows from the host's address to guests
/// (see the module documentation).
pub struct Forwarder {
    ip: Ipv4Addr,
    net: Ipv4Net,
    iface: Interface,
    dev: Queue,
    sockets: SocketSet<'static>,
    tcp: HashMap<u64, tcp::Conn>,
    udp: HashMap<u64, udp::Flow>,
    /// The local ports in use, and by which connection or flow.
    ports: HashMap<u16, Owner>,
    next_port: u16,
    next_id: u64,
    /// Events waiting, deduplicated: (id, kind).
    events: BTreeMap<(u64, EventKind), ()>,
    epoch: Instant,
    last_poll: Instant,
    /// When [`Forwarder::poll`] is next due (with something open).
    next_poll: Instant,
    stats: ForwardStats,
}

impl Forwarder {
    /// A forwarder for the host at `mac` with the address and prefix `net`
    /// (`--addr`), made at `now` (smoltcp's clock counts from it). Initial
    /// sequence numbers and the first ephemeral port come from a random seed
    /// (RFC 6528, RFC 6056).
    pub fn new(mac: MacAddr, net: Ipv4Net, now: Instant) -> Self {
        let mut dev = Queue::new(Medium::Ethernet, MTU + 14);
        let seed = RandomState::new().hash_one(now);
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac.0)));
        config.random_seed = seed;
        let mut iface = Interface::new(config, &mut dev, smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(net.addr()), net.prefix_len()));
        });
        let span = u64::from(PORTS.end() - PORTS.start()) + 1;
        Forwarder {
            ip: net.addr(),
            net,
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            tcp: HashMap::new(),
            udp: HashMap::new(),
            ports: HashMap::new(),
            next_port: PORTS.start() + u16::try_from(seed % span).unwrap_or(0),
            next_id: 1,
            events: BTreeMap::new(),
            epoch: now,
            last_poll: now,
            next_poll: now,
            stats: ForwardStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> ForwardStats {
        self.stats
    }

    /// How many TCP connections and UDP flows are open now.
    pub fn open(&self) -> (usize, usize) {
        (self.tcp.len(), self.udp.len())
    }

    /// Whether `remote` is a guest the forwarder may reach: inside the
    /// `--addr` prefix, not the host's own address, the network or the
    /// broadcast address, and not port 0.
    pub fn reachable(&self, remote: SocketAddrV4) -> bool {
        on_segment(self.net, remote)
    }

    /// Whether a TCP segment (`tcp` true) or UDP datagram to the host's
    /// address and local port `port` belongs to an open connection or flow;
    /// the host hands those to [`Forwarder::receive`].
    pub fn owns(&self, tcp: bool, port: u16) -> bool {
        matches!(
            (self.ports.get(&port), tcp),
            (Some(Owner::Tcp(_)), true) | (Some(Owner::Udp(_)), false)
        )
    }

    /// Whether anything is open (ARP frames are only worth feeding then).
    pub fn active(&self) -> bool {
        !self.ports.is_empty()
    }

    fn smol_now(&self, now: Instant) -> smoltcp::time::Instant {
        let us = now.saturating_duration_since(self.epoch).as_micros();
        smoltcp::time::Instant::from_micros(i64::try_from(us).unwrap_or(i64::MAX))
    }

    /// Takes `frame`, an Ethernet II frame from the segment for the forwarder
    /// (an ARP request or reply whose target is the host's address, or an
    /// IPv4 TCP segment or UDP datagram to a port [`Forwarder::owns`]), at
    /// `now`, runs smoltcp (which checks the checksums and drops what fails)
    /// and pushes the frames it sends into `out`. Then read [`Forwarder::take_events`].
    pub fn receive(&mut self, frame: &[u8], now: Instant, out: &mut Vec<Vec<u8>>) {
        if self.dev.rx.len() < RX_QUEUE {
            self.dev.rx.push_back(frame.to_vec());
        }
        self.run(now, out);
    }

    /// Runs smoltcp at `now`, notes the changes as events, and pushes the
    /// frames to send into `out` (smoltcp's own ARP replies are dropped: the
    /// host answers ARP).
    fn run(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        let t = self.smol_now(now);
        self.iface.poll(t, &mut self.dev, &mut self.sockets);
        self.observe(now);
        self.schedule(now);
        for f in self.dev.tx.drain(..) {
            let arp_reply = f.len() >= 22 && f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2];
            if !arp_reply {
                out.push(f);
            }
        }
    }

    /// Notes the state of every connection and flow, queues events for what
    /// changed, and drops the sockets of those that ended and were released.
    fn observe(&mut self, now: Instant) {
        let mut ended = Vec::new();
        for (id, c) in &mut self.tcp {
            let s = self.sockets.get_mut::<smoltcp::socket::tcp::Socket>(c.handle);
            for kind in c.observe(s, now, &mut self.stats) {
                self.events.insert((*id, kind), ());
            }
            if c.finished(s) {
                ended.push(*id);
            }
        }
        for id in ended {
            self.drop_tcp(id);
        }
        let mut idle = Vec::new();
        for (id, f) in &mut self.udp {
            let s = self.sockets.get_mut::<smoltcp::socket::udp::Socket>(f.handle);
            if f.observe(s, now) {
                self.events.insert((*id, EventKind::Readable), ());
            }
            if now.saturating_duration_since(f.last) >= UDP_IDLE {
                idle.push(*id);
            }
        }
        for id in idle {
            self.events.insert((id, EventKind::Closed), ());
            self.udp_close(id);
        }
    }

    /// Sets when the next poll is due after a run at `now`: smoltcp's next
    /// timer, the connect, close and idle deadlines still ahead, at most [`TICK`] and at
    /// least [`MIN_TICK`] after the last poll.
    fn schedule(&mut self, now: Instant) {
        let t = self.smol_now(now);
        let smol = self
            .iface
            .poll_delay(t, &self.sockets)
            .map(|d| now + Duration::from_micros(d.total_micros()));
        let tcp = self.tcp.values().filter_map(tcp::Conn::deadline);
        let udp = self.udp.values().map(|f| f.last + UDP_IDLE);
        // Deadlines already past were acted on (or are, at the next TICK).
        let due = smol
            .into_iter()
            .chain(tcp.chain(udp).filter(|d| *d > now))
            .min()
            .unwrap_or(now + TICK);
        // max/min, not clamp: `now` may trail `last_poll` (a caller's clock read
        // before another's), and this must never panic.
        let floor = self.last_poll + MIN_TICK;
        self.next_poll = due.min(now.max(self.last_poll) + TICK).max(floor);
    }

    /// The events since the last call, in order of id then kind (at most one
    /// per connection or flow and kind).
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
            .into_keys()
            .map(|(id, kind)| Event { id, kind })
            .collect()
    }

    /// Whether events wait for [`Forwarder::take_events`].
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// When [`Forwarder::poll`] is next due: `None` with nothing open, else
    /// the next timer of smoltcp or of the timeouts (see [`TICK`], [`MIN_TICK`]).
    pub fn poll_at(&self) -> Option<Instant> {
        self.active().then_some(self.next_poll)
    }

    /// Runs smoltcp's timers and the timeouts at `now` (when
    /// [`Forwarder::poll_at`] says, and after the driver moved bytes or
    /// opened or closed something), pushing the frames to send into `out`.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        self.last_poll = self.last_poll.max(now);
        for c in self.tcp.values_mut() {
            let s = self.sockets.get_mut::<smoltcp::socket::tcp::Socket>(c.handle);
            c.timeouts(s, now);
        }
        self.run(now, out);
    }

    /// A free ephemeral port for `owner`, or `None` when all [`PORTS`] are taken.
    fn take_port(&mut self, owner: Owner) -> Option<u16> {
        for _ in PORTS {
            let p = self.next_port;
            self.next_port = if p == *PORTS.end() { *PORTS.start() } else { p + 1 };
            if let std::collections::hash_map::Entry::Vacant(e) = self.ports.entry(p) {
                e.insert(owner);
                return Some(p);
            }
        }
        None
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// Whether `remote` is a guest address in `net` (not the host's own, the
/// network's or the broadcast address) with a port other than 0.
pub fn on_segment(net: Ipv4Net, remote: SocketAddrV4) -> bool {
    let ip = *remote.ip();
    remote.port() != 0
        && net.contains(&ip)
        && ip != net.addr()
        && (net.prefix_len() >= 31 || (ip != net.network() && ip != net.broadcast()))
}
