//! DNS over TCP on the segment, sans-IO: the host's port 53 over TCP (RFC 1035
//! section 4.2.2; RFC 7766: each message behind a 2-byte big-endian length,
//! several queries per connection, answers in the order they are ready). The
//! TCP stack is smoltcp 0.14 (`Interface` with `Medium::Ip`, a pool of
//! `tcp::Socket`s listening on port 53), fed through a small `phy::Device` of
//! queued IP packets; nothing here touches a socket or reads a clock.
//!
//! The host hands over the IPv4 and IPv6 packets of TCP frames to its own
//! addresses ([`DnsTcp::receive`]: its IPv4 address and up to
//! [`MAX_IPV6_ADDRS`] of its IPv6 ones, the link-local address first), takes the complete queries ([`DnsTcp::queries`]),
//! answers them through the DNS server ([`DnsTcp::answer`], at once or when a
//! forwarded query's answer comes back) and gets the frames to send from
//! [`DnsTcp::poll`], which also runs smoltcp's timers. smoltcp's shortest
//! timer is its 1 s minimum retransmission timeout (RFC 6298 section 2.4):
//! delayed ACKs and Nagle are off, and [`DnsTcp::poll_at`] asks for a poll
//! every [`RETRANSMIT_CHECK`] while a connection is open, which is
//! fine-grained enough. The Ethernet header of an outgoing packet carries the MAC last seen
//! with the peer's IP address (IPv4 or IPv6; EtherType by the packet's version).
//!
//! Bounds: [`TCP_SLOTS`] connections (a SYN beyond them gets a RST from
//! smoltcp, as does a SYN to any other port), a query of at most
//! [`QUERY_MAX`] bytes (a longer length prefix aborts the connection,
//! counted), answers queued per connection up to [`BACKLOG_MAX`] bytes (the
//! next query is read only once the previous answers are in smoltcp's send
//! buffer), a connection closed after [`IDLE`] without a query (RFC 7766
//! section 6.2.3), and aborted when it is still open [`STALL`] later.
//! Segments with a bad checksum are dropped and counted before smoltcp sees them.

use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::Medium;

use crate::smol_queue::Queue;
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Packet, Ipv6Packet, TcpPacket};
use vmlan_hub::MacAddr;

use crate::dns::forward as dns_forward;
use vmlan_hub::sys::prefix::put_prefixed;

/// TCP port of DNS (RFC 1035 section 4.2.2).
pub const DNS_TCP_PORT: u16 = 53;
/// Connections served at once; a SYN beyond them is answered with a RST.
pub const TCP_SLOTS: usize = 8;
/// The largest query read, in bytes (without its 2-byte length prefix). A query
/// holds one question (a name of at most 255 bytes) and maybe an OPT record, so
/// real ones stay far below; a longer prefix aborts the connection, counted.
pub const QUERY_MAX: usize = 4094;
/// smoltcp's receive buffer per connection, in bytes: one whole query with its prefix.
const RX_BUF: usize = QUERY_MAX + 2;
/// smoltcp's send buffer per connection, in bytes: one largest answer with its prefix.
const TX_BUF: usize = 65537;
/// Answer bytes queued per connection beyond smoltcp's send buffer; an answer
/// that does not fit is dropped, counted (the client times it out).
pub const BACKLOG_MAX: usize = 4 * 65537;
/// A connection with no query, no answer pending and nothing to send for this
/// long is closed by the host (RFC 7766 section 6.2.3; dns_io.rs's `TCP_IDLE`).
pub const IDLE: Duration = Duration::from_secs(10);
/// A connection still not closed this long after it went idle (a peer that
/// stops reading or acknowledging) is aborted with a RST, freeing its slot.
pub const STALL: Duration = Duration::from_secs(20);
/// Most IPv6 addresses served: smoltcp's interface holds 8 addresses
/// (feature `iface-max-addr-count-8`), one of them the IPv4 address.
pub const MAX_IPV6_ADDRS: usize = 7;
/// Most IP address to MAC bindings remembered for the way back.
const MACS: usize = 64;
/// While connections are open, [`DnsTcp::poll`] runs at least this often, so
/// smoltcp's retransmission timers fire on time (its minimum RTO is 1 s).
pub const RETRANSMIT_CHECK: Duration = Duration::from_millis(200);
/// Most packets waiting for smoltcp (it is polled after every packet).
const RX_QUEUE: usize = 64;
/// The IP MTU of the segment, in bytes (a 1500-byte Ethernet payload).
const MTU: usize = 1500;

/// Counters of DNS over TCP on the segment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DnsTcpStats {
    /// Connections accepted on port 53.
    pub connections: u64,
    /// Queries read from connections.
    pub queries: u64,
    /// Malformed input dropped: TCP segments that do not parse or fail their
    /// checksum, and length prefixes over [`QUERY_MAX`] (the connection is aborted).
    pub malformed: u64,
    /// Answers dropped: their connection had closed, or its backlog was full.
    pub dropped: u64,
}

/// One complete query read from a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpQuery {
    /// The connection's id, for [`DnsTcp::answer`]: at most 48 bits, never 0,
    /// not reused by another connection while the hub runs (2^48 connections).
    pub conn: u64,
    /// The client's address (IPv4 or IPv6) and port.
    pub peer: SocketAddr,
    /// The DNS message, without its length prefix (0 to [`QUERY_MAX`] bytes).
    pub message: Vec<u8>,
}

/// One slot of the pool: a smoltcp socket and the connection it holds.
struct Conn {
    handle: SocketHandle,
    /// The connection's id; 0 while the socket listens.
    id: u64,
    peer: Option<SocketAddr>,
    /// Framed answers not yet taken by smoltcp's send buffer.
    backlog: Vec<u8>,
    /// The last query read or answer queued.
    last: Instant,
    /// Forwarded queries whose answer may still come, and when the last one times out.
    forwards: u32,
    forward_until: Instant,
}

impl Conn {
    /// The state of socket `handle` listening for a new connection at `now`.
    fn listening(handle: SocketHandle, now: Instant) -> Self {
        Conn {
            handle,
            id: 0,
            peer: None,
            backlog: Vec::new(),
            last: now,
            forwards: 0,
            forward_until: now,
        }
    }

    /// Whether an answer may still come for a forwarded query.
    fn waiting(&self, now: Instant) -> bool {
        self.forwards > 0 && now < self.forward_until
    }

    /// When the connection counts as idle.
    fn idle_at(&self) -> Instant {
        let idle = self.last + IDLE;
        match self.forwards {
            0 => idle,
            _ => idle.max(self.forward_until),
        }
    }
}

/// DNS over TCP at the host's address, port 53 (see the module documentation).
pub struct DnsTcp {
    mac: MacAddr,
    iface: Interface,
    dev: Queue,
    sockets: SocketSet<'static>,
    conns: Vec<Conn>,
    /// (IP address, MAC) of the peers, most recently learned at `mac_next - 1`.
    macs: Vec<(IpAddr, MacAddr)>,
    mac_next: usize,
    epoch: Instant,
    /// When [`DnsTcp::poll`] last ran.
    last_poll: Instant,
    next_id: u64,
    stats: DnsTcpStats,
}

impl DnsTcp {
    /// DNS over TCP for the host at `mac`, `ip` and the IPv6 addresses `ip6`
    /// (the first [`MAX_IPV6_ADDRS`] of them; segments to the others get no
    /// answer), created at `now` (smoltcp's clock counts from it). Initial
    /// sequence numbers come from a random seed (RFC 6528: unpredictable).
    pub fn new(mac: MacAddr, ip: Ipv4Addr, ip6: &[Ipv6Addr], now: Instant) -> Self {
        let mut dev = Queue::new(Medium::Ip, MTU);
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = RandomState::new().hash_one(now);
        let mut iface = Interface::new(config, &mut dev, smoltcp::time::Instant::ZERO);
        // Prefix 0: every peer counts as on-link, so smoltcp answers any source
        // address; the host puts the Ethernet header on by the peer's MAC.
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(ip), 0));
            for v6 in ip6.iter().take(MAX_IPV6_ADDRS) {
                let _ = a.push(IpCidr::new(IpAddress::Ipv6(*v6), 0));
            }
        });
        let mut sockets = SocketSet::new(Vec::with_capacity(TCP_SLOTS));
        let mut conns = Vec::with_capacity(TCP_SLOTS);
        for _ in 0..TCP_SLOTS {
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; RX_BUF]),
                tcp::SocketBuffer::new(vec![0; TX_BUF]),
            );
            s.set_ack_delay(None);
            s.set_nagle_enabled(false);
            s.set_timeout(Some(smoltcp::time::Duration::from_secs(STALL.as_secs())));
            let _ = s.listen(DNS_TCP_PORT);
            conns.push(Conn::listening(sockets.add(s), now));
        }
        DnsTcp {
            mac,
            iface,
            dev,
            sockets,
            conns,
            macs: Vec::with_capacity(MACS),
            mac_next: 0,
            epoch: now,
            last_poll: now,
            next_id: 1,
            stats: DnsTcpStats::default(),
        }
    }

    /// The counters (cumulative since [`DnsTcp::new`]).
    pub fn stats(&self) -> DnsTcpStats {
        self.stats
    }

    /// How many of the [`TCP_SLOTS`] sockets hold a connection now (from the
    /// SYN to the end of the close, TIME-WAIT included: RFC 9293 section 3.3.2).
    pub fn open(&self) -> usize {
        self.conns.iter().filter(|c| c.id != 0).count()
    }

    fn smol_now(&self, now: Instant) -> smoltcp::time::Instant {
        let us = now.saturating_duration_since(self.epoch).as_micros();
        smoltcp::time::Instant::from_micros(i64::try_from(us).unwrap_or(i64::MAX))
    }

    /// Takes `packet`, an IPv4 or IPv6 packet carrying TCP to one of the host's
    /// addresses (an Ethernet payload: trailing padding is ignored; IPv6 with
    /// TCP as its first next header, no extension headers), from a station at
    /// `src_mac`, at `now`, and runs smoltcp on it. A packet that does not
    /// parse or fails its IPv4 or TCP checksum (RFC 793 section 3.1; over
    /// IPv6 with the RFC 8200 section 8.1 pseudo-header) is dropped and
    /// counted in [`DnsTcpStats::malformed`]. Then read [`DnsTcp::queries`].
    pub fn receive(&mut self, packet: &[u8], src_mac: MacAddr, now: Instant) {
        let Some((src, len)) = checked_tcp(packet) else {
            self.stats.malformed += 1;
            return;
        };
        self.learn(src, src_mac);
        if self.dev.rx.len() < RX_QUEUE {
            self.dev.rx.push_back(packet[..len].to_vec());
        }
        self.run(now);
    }

    /// Remembers that `ip` is at `mac`, replacing the oldest binding when full.
    fn learn(&mut self, ip: IpAddr, mac: MacAddr) {
        if let Some(e) = self.macs.iter_mut().find(|e| e.0 == ip) {
            e.1 = mac;
        } else if self.macs.len() < MACS {
            self.macs.push((ip, mac));
        } else {
            self.macs[self.mac_next % MACS] = (ip, mac);
            self.mac_next = (self.mac_next + 1) % MACS;
        }
    }

    /// Polls smoltcp at `now`, then notes new connections and re-arms closed sockets.
    fn run(&mut self, now: Instant) {
        let t = self.smol_now(now);
        self.iface.poll(t, &mut self.dev, &mut self.sockets);
        let mut relisten = false;
        for c in &mut self.conns {
            let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
            match s.state() {
                tcp::State::Listen => {}
                tcp::State::Closed => {
                    *c = Conn::listening(c.handle, now);
                    let _ = s.listen(DNS_TCP_PORT);
                    relisten = true;
                }
                _ if c.id == 0 => {
                    c.id = self.next_id;
                    self.next_id = (self.next_id % ((1 << 48) - 1)) + 1;
                    c.peer = s.remote_endpoint().map(SocketAddr::from);
                    c.last = now;
                    self.stats.connections += 1;
                }
                _ => {}
            }
        }
        if relisten {
            self.iface.poll(t, &mut self.dev, &mut self.sockets);
        }
    }

    /// The complete queries waiting in the connections at `now` (RFC 7766
    /// section 6.2.1.1: a client may send several without waiting), at most one
    /// per connection, and only from connections whose earlier answers are all
    /// in smoltcp's send buffer (so a client that does not read is not fed
    /// more). Answer each ([`DnsTcp::answer`]) and call again until it returns
    /// none; then [`DnsTcp::poll`]. A length prefix over [`QUERY_MAX`] aborts
    /// its connection (counted in [`DnsTcpStats::malformed`]).
    pub fn queries(&mut self, now: Instant) -> Vec<TcpQuery> {
        let mut out = Vec::new();
        for c in &mut self.conns {
            let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
            if c.id == 0 || !c.backlog.is_empty() || !s.can_recv() {
                continue;
            }
            let mut len = [0u8; 2];
            if s.peek_slice(&mut len) != Ok(2) {
                continue;
            }
            let len = usize::from(u16::from_be_bytes(len));
            if len > QUERY_MAX {
                self.stats.malformed += 1;
                s.abort();
                continue;
            }
            if s.recv_queue() < len + 2 {
                continue;
            }
            let mut msg = vec![0u8; len + 2];
            if s.recv_slice(&mut msg) != Ok(len + 2) {
                continue;
            }
            msg.drain(..2);
            let Some(peer) = c.peer else { continue };
            c.last = now;
            self.stats.queries += 1;
            out.push(TcpQuery {
                conn: c.id,
                peer,
                message: msg,
            });
        }
        out
    }

    /// Notes that the query read from connection `conn` at `now` was forwarded
    /// upstream: the connection stays open for its answer, or the SERVFAIL
    /// that follows the forward timeout ([`dns_forward::TIMEOUT`]) when the
    /// host's timer runs, up to two seconds after it.
    pub fn forwarded(&mut self, conn: u64, now: Instant) {
        if let Some(c) = self.conns.iter_mut().find(|c| c.id == conn && conn != 0) {
            c.forwards = c.forwards.saturating_add(1);
            c.forward_until = now + dns_forward::TIMEOUT + Duration::from_secs(2);
        }
    }

    /// Queues the DNS `message` (at most 65535 bytes) for connection `conn`,
    /// behind its 2-byte length (RFC 1035 section 4.2.2), at `now`. Returns
    /// false, counted in [`DnsTcpStats::dropped`], when the connection is gone
    /// or cannot send any more, the message is too long, or the connection's
    /// backlog is full. The bytes go out on the next [`DnsTcp::poll`].
    pub fn answer(&mut self, conn: u64, message: &[u8], now: Instant) -> bool {
        let Some(c) = self.conns.iter_mut().find(|c| c.id == conn && conn != 0) else {
            self.stats.dropped += 1;
            return false;
        };
        let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
        if !s.may_send()
            || c.backlog.len() + message.len() + 2 > BACKLOG_MAX
            || put_prefixed::<2>(&mut c.backlog, message).is_err()
        {
            self.stats.dropped += 1;
            return false;
        }
        c.forwards = c.forwards.saturating_sub(1);
        c.last = now;
        if let Ok(n) = s.send_slice(&c.backlog) {
            c.backlog.drain(..n);
        }
        true
    }

    /// When [`DnsTcp::poll`] is next due: `None` without an open connection;
    /// else the earliest connection's idle or stall deadline, and at most
    /// [`RETRANSMIT_CHECK`] after the last poll, at which smoltcp's
    /// retransmissions and keep-alive timers are looked at while connections
    /// are open.
    pub fn poll_at(&self) -> Option<Instant> {
        self.conns
            .iter()
            .filter(|c| c.id != 0)
            .map(|c| c.idle_at().min(self.last_poll + RETRANSMIT_CHECK))
            .min()
    }

    /// Runs smoltcp's timers and the connections' housekeeping at `now` (call
    /// after the queries are answered, and when [`DnsTcp::poll_at`] says): moves
    /// backlogs into send buffers, closes idle connections ([`IDLE`]) and those
    /// the client closed once every answer is out, aborts stalled ones
    /// ([`STALL`]), and pushes every frame to send into `out` (Ethernet II from
    /// the host's MAC to the peer's, IPv4 or IPv6, TCP). A packet to a peer whose MAC
    /// is not known is dropped (the host only answers stations it heard from).
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        self.last_poll = now;
        for c in &mut self.conns {
            if c.id == 0 {
                continue;
            }
            let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
            if !c.backlog.is_empty() {
                if let Ok(n) = s.send_slice(&c.backlog) {
                    c.backlog.drain(..n);
                }
            }
            let quiet = c.backlog.is_empty() && !c.waiting(now);
            let closable = matches!(s.state(), tcp::State::Established | tcp::State::CloseWait);
            if quiet && closable && (s.state() == tcp::State::CloseWait || now >= c.idle_at()) {
                s.close();
            } else if now >= c.idle_at() + STALL && s.state() != tcp::State::TimeWait {
                s.abort();
            }
        }
        self.run(now);
        for p in self.dev.tx.drain(..) {
            let Some((dst, ethertype)) = destination(&p) else {
                continue;
            };
            let Some(&(_, mac)) = self.macs.iter().find(|e| e.0 == dst) else {
                continue;
            };
            let mut f = Vec::with_capacity(14 + p.len());
            f.extend_from_slice(&mac.0);
            f.extend_from_slice(&self.mac.0);
            f.extend_from_slice(&ethertype);
            f.extend_from_slice(&p);
            out.push(f);
        }
    }
}

/// The destination address of the IP packet `p` smoltcp sent, and the
/// EtherType of its version.
fn destination(p: &[u8]) -> Option<(IpAddr, [u8; 2])> {
    match p.first()? >> 4 {
        4 => {
            let d: [u8; 4] = p.get(16..20)?.try_into().ok()?;
            Some((IpAddr::from(d), [0x08, 0x00]))
        }
        6 => {
            let d: [u8; 16] = p.get(24..40)?.try_into().ok()?;
            Some((IpAddr::from(d), [0x86, 0xdd]))
        }
        _ => None,
    }
}

/// The source address and length of `packet` if it is an IPv6 packet whose
/// next header is TCP (no extension headers, so never a fragment) and whose
/// TCP checksum holds, or an unfragmented IPv4 packet carrying TCP whose IPv4
/// header and TCP checksums hold.
fn checked_tcp(packet: &[u8]) -> Option<(IpAddr, usize)> {
    if packet.first()? >> 4 == 6 {
        let ip = Ipv6Packet::new_checked(packet).ok()?;
        if ip.next_header() != smoltcp::wire::IpProtocol::Tcp {
            return None;
        }
        let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        return tcp
            .verify_checksum(&IpAddress::Ipv6(src), &IpAddress::Ipv6(dst))
            .then_some((IpAddr::V6(src), 40 + usize::from(ip.payload_len())));
    }
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    let whole = !ip.more_frags() && ip.frag_offset() == 0;
    if ip.next_header() != smoltcp::wire::IpProtocol::Tcp || !ip.verify_checksum() || !whole {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    tcp.verify_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst))
        .then_some((IpAddr::V4(src), usize::from(ip.total_len())))
}
