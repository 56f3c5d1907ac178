//! The VXLAN port (RFC 7348): stretches the segment over an IP network to
//! other VTEPs (other hubs, the Linux kernel's `vxlan` devices, Open vSwitch),
//! with unprivileged UDP sockets.
//!
//! - [`wire`]: the 8-byte header (RFC 7348 section 5), the flow hash.
//! - [`fdb`]: the inner MAC -> remote VTEP table (RFC 7348 section 4.1).
//!
//! Shape: the whole VXLAN network is **one switch port** with its own FDB.
//! The switch learns every remote MAC on that port, so a frame that came from
//! a VTEP is never sent to another VTEP (split horizon: the switch never sends
//! a frame back out of its ingress port, and filters frames between two MACs
//! on one port). Frames the switch gives the port go to the VTEP the FDB
//! names for their destination, at the configured `port=` (never the source
//! port a packet came from); broadcast, multicast and unknown unicast go by
//! head-end replication to every static `peer=`, and to the `group=` only when
//! one is given (RFC 7348 section 4.2; opt-in, never by default).
//!
//! Receive: one socket bound to `local=ADDR:PORT` (default port 4789), and,
//! with `group=`, one bound to the group on `dev=`'s interface. Only packets
//! from a configured peer's address (any source port), from the group
//! socket, or from a VTEP met through the group in the last aging time (its
//! unicast answers; at most [`MAX_PEERS`] of them), are accepted; others are dropped and counted (`unknown_peer`), as
//! are packets without the I flag, too short, with an inner frame under 14
//! bytes (`malformed`), or for another VNI (`foreign_vni`). Never forwarded.
//!
//! Send: an unprivileged socket cannot choose its source port per packet, so
//! the port binds a pool of [`SEND_SOCKETS`] sockets to `local`'s address,
//! each on its own source port in RFC 7348 section 5's range 49152-65535
//! (the kernel's ephemeral ports when those are taken), and sends each frame
//! through the socket picked by the hash of its inner Ethernet/IP/L4 headers
//! ([`wire::flow_hash`]): one flow, one source port, up to 8 ports for ECMP.
//! Sends are batched (`sendmmsg`, `UDP_SEGMENT` runs, sys/mmsg.rs), and
//! receives come `recvmmsg`'s worth per segment lock.
//!
//! MTU: VTEPs must not fragment (RFC 7348 section 4.3). The sending sockets
//! set `IP_MTU_DISCOVER` to `IP_PMTUDISC_DO` (DF set, never fragmented
//! locally), and a frame longer than the underlay MTU (`mtu=`, default 1500)
//! less 36 bytes is dropped and counted (`too_big`); the hub advertises the
//! inner MTU, `mtu - 50`, to guests (hub_cmd.rs).
//!
//! Bounds: the FDB holds at most [`fdb::DEFAULT_MAX_ENTRIES`] MACs (refusals
//! counted), at most [`MAX_PEERS`] peers; buffers are reused, so the
//! forwarding path allocates nothing per frame (hub/tests/alloc_vxlan.rs).

pub mod fdb;
pub mod wire;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket as StdUdpSocket};
use std::os::fd::AsRawFd;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::socket::SockaddrIn;
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::frame::MacAddr;
use crate::segment::{Batch, DatagramTx, Egress, LocalHost, Segment};
use crate::switch::{PortId, DEFAULT_AGING};
use crate::sys::mmsg::{recycle, RecvBatch, SendBatch};
use crate::sys::retry::Pacer;

use self::fdb::Fdb;

/// Sending sockets per VXLAN port: distinct outer source ports for flows.
pub const SEND_SOCKETS: usize = 8;

/// Most `peer=` entries on one `--vxlan`.
pub const MAX_PEERS: usize = 256;

/// The default underlay MTU (`mtu=`), in bytes.
pub const DEFAULT_MTU: u16 = 1500;

/// Smallest underlay MTU accepted (IPv4's minimum datagram size, RFC 791).
pub const MIN_MTU: u16 = 576;

/// One `--vxlan` setting:
/// `vni=N,local=ADDR[:PORT],peer=ADDR[,peer=ADDR...][,group=MCAST,dev=IFACE][,port=P][,mtu=M]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanConfig {
    /// The VXLAN network identifier, 0 to 16777215 (24 bits).
    pub vni: u32,
    /// The local address and port packets are received on (port default 4789),
    /// and the address the sending sockets are bound to.
    pub local: SocketAddrV4,
    /// The static remote VTEPs (IPv4 unicast): floods are replicated to each,
    /// and only their packets (and the group's) are accepted.
    pub peers: Vec<Ipv4Addr>,
    /// The multicast group and the interface it is joined on, opt-in.
    pub group: Option<(Ipv4Addr, String)>,
    /// The destination UDP port towards peers and the group (default 4789).
    pub port: u16,
    /// The underlay MTU in bytes (default 1500): inner frames longer than
    /// `mtu - 36` are dropped; guests are told `mtu - 50`.
    pub mtu: u16,
}

impl VxlanConfig {
    /// The MTU guests should use: the underlay MTU less VXLAN's 50 bytes over IPv4.
    pub fn inner_mtu(&self) -> u16 {
        self.mtu - wire::OVERHEAD_V4 as u16
    }

    /// The longest inner frame (Ethernet header included, no FCS) the underlay carries.
    pub fn max_frame(&self) -> usize {
        usize::from(self.mtu) - wire::OUTER_V4
    }
}

impl fmt::Display for VxlanConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vni={},local={}", self.vni, self.local)?;
        for p in &self.peers {
            write!(f, ",peer={p}")?;
        }
        if let Some((g, dev)) = &self.group {
            write!(f, ",group={g},dev={dev}")?;
        }
        write!(f, ",port={},mtu={}", self.port, self.mtu)
    }
}

impl FromStr for VxlanConfig {
    type Err = String;

    /// Parses the `--vxlan` syntax (see [`VxlanConfig`]); keys in any order.
    ///
    /// # Errors
    /// A message naming the bad part (`peer=x: ...`) or the missing key.
    fn from_str(s: &str) -> Result<Self, String> {
        let (mut vni, mut local, mut peers, mut group, mut dev) = (None, None, Vec::new(), None, None);
        let (mut port, mut mtu) = (wire::DEFAULT_PORT, DEFAULT_MTU);
        for part in s.split(',').map(str::trim) {
            let Some((key, value)) = part.split_once('=') else {
                return Err(format!(
                    "{part:?}: expected KEY=VALUE (vni, local, peer, group, dev, port, mtu)"
                ));
            };
            let bad = |what: &str| format!("{part}: expected {what}");
            let ipv4 = |v: &str| v.parse::<Ipv4Addr>().map_err(|_| bad("an IPv4 address"));
            match key {
                "vni" => {
                    let n = value.parse::<u32>().ok().filter(|n| *n <= wire::MAX_VNI);
                    vni = Some(n.ok_or_else(|| bad("a VNI from 0 to 16777215"))?);
                }
                "local" => {
                    let a = match value.parse::<SocketAddrV4>() {
                        Ok(a) => a,
                        Err(_) => SocketAddrV4::new(ipv4(value).map_err(|_| bad("ADDR or ADDR:PORT (IPv4)"))?, 0),
                    };
                    if a.ip().is_unspecified() || a.ip().is_multicast() || a.ip().is_broadcast() {
                        return Err(bad("a unicast IPv4 address of this machine"));
                    }
                    local = Some(a);
                }
                "peer" => {
                    let ip = ipv4(value)?;
                    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
                        return Err(bad("a unicast IPv4 address (a multicast one goes in group=)"));
                    }
                    if !peers.contains(&ip) {
                        peers.push(ip);
                    }
                }
                "group" => {
                    let ip = ipv4(value)?;
                    if !ip.is_multicast() {
                        return Err(bad("an IPv4 multicast address (224.0.0.0/4)"));
                    }
                    group = Some(ip);
                }
                "dev" => {
                    if value.is_empty() || value.len() > 15 {
                        return Err(bad("an interface name of 1 to 15 characters"));
                    }
                    dev = Some(value.to_string());
                }
                "port" => {
                    port = value
                        .parse()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| bad("a UDP port 1-65535"))?
                }
                "mtu" => {
                    mtu = value
                        .parse()
                        .ok()
                        .filter(|m| *m >= MIN_MTU)
                        .ok_or_else(|| bad("an underlay MTU from 576 to 65535"))?
                }
                _ => {
                    return Err(format!(
                        "{part}: unknown key {key:?} (vni, local, peer, group, dev, port, mtu)"
                    ))
                }
            }
        }
        let vni = vni.ok_or("vni= is missing (e.g. vni=42)")?;
        let mut local = local.ok_or("local= is missing (e.g. local=10.99.0.1)")?;
        if local.port() == 0 {
            local.set_port(wire::DEFAULT_PORT);
        }
        let group = match (group, dev) {
            (Some(g), Some(d)) => Some((g, d)),
            (None, None) => None,
            (Some(g), None) => return Err(format!("group={g}: needs dev=IFACE, the interface to join it on")),
            (None, Some(d)) => return Err(format!("dev={d}: only goes with group=")),
        };
        if peers.is_empty() && group.is_none() {
            return Err("no peer=ADDR (nor group=): nowhere to send".into());
        }
        if peers.len() > MAX_PEERS {
            return Err(format!("{} peers: at most {MAX_PEERS}", peers.len()));
        }
        if let Some(p) = peers.iter().find(|p| *p == local.ip()) {
            return Err(format!("peer={p}: that is local= itself"));
        }
        Ok(VxlanConfig {
            vni,
            local,
            peers,
            group,
            port,
            mtu,
        })
    }
}

/// A VXLAN port's counters since start (see the module's comment).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VxlanStats {
    /// Packets accepted and switched.
    pub rx_packets: u64,
    /// Packets dropped: no I flag, shorter than the header, an inner frame
    /// under 14 bytes, or longer than a receive slot.
    pub malformed: u64,
    /// Packets dropped: a valid header for another VNI.
    pub foreign_vni: u64,
    /// Packets dropped: not from a configured peer (nor the group).
    pub unknown_peer: u64,
    /// Frames dropped: longer than the underlay MTU allows.
    pub too_big: u64,
    /// Source MACs not learned: the FDB was full.
    pub fdb_refused: u64,
    /// Frames sent to every peer (broadcast, multicast, unknown unicast).
    pub flooded: u64,
    /// Datagrams sent.
    pub tx_packets: u64,
    /// Datagrams not sent: the socket buffer was full, or a send error.
    pub tx_dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    rx_packets: AtomicU64,
    malformed: AtomicU64,
    foreign_vni: AtomicU64,
    unknown_peer: AtomicU64,
    too_big: AtomicU64,
    fdb_refused: AtomicU64,
    flooded: AtomicU64,
    tx_packets: AtomicU64,
    tx_dropped: AtomicU64,
}

/// The counters of a running VXLAN port, readable from any thread.
#[derive(Debug, Clone, Default)]
pub struct VxlanCounters(Arc<Counters>);

impl VxlanCounters {
    /// The counters now.
    pub fn get(&self) -> VxlanStats {
        let c = &self.0;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        VxlanStats {
            rx_packets: l(&c.rx_packets),
            malformed: l(&c.malformed),
            foreign_vni: l(&c.foreign_vni),
            unknown_peer: l(&c.unknown_peer),
            too_big: l(&c.too_big),
            fdb_refused: l(&c.fdb_refused),
            flooded: l(&c.flooded),
            tx_packets: l(&c.tx_packets),
            tx_dropped: l(&c.tx_dropped),
        }
    }

    fn add(a: &AtomicU64, n: u64) {
        if n > 0 {
            a.fetch_add(n, Ordering::Relaxed);
        }
    }
}

impl fmt::Display for VxlanStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "vxlan rx {} tx {} flooded {} malformed {} foreign_vni {} unknown_peer {} too_big {} fdb_refused {} tx_dropped {}",
            self.rx_packets,
            self.tx_packets,
            self.flooded,
            self.malformed,
            self.foreign_vni,
            self.unknown_peer,
            self.too_big,
            self.fdb_refused,
            self.tx_dropped
        )
    }
}

/// Where one encapsulated packet goes: its bytes in `Tx::buf`, its
/// destination, its sending socket.
#[derive(Clone, Copy)]
struct Queued {
    start: usize,
    len: usize,
    to: SockaddrIn,
    sock: usize,
}

/// The transmit half: encapsulates, looks up the FDB, replicates, sends.
struct Tx {
    header: [u8; wire::HEADER_LEN],
    socks: Vec<StdUdpSocket>,
    batches: Vec<SendBatch<SockaddrIn>>,
    peers: Vec<SockaddrIn>,
    group: Option<SockaddrIn>,
    port: u16,
    max_frame: usize,
    fdb: Arc<Mutex<Fdb>>,
    counters: VxlanCounters,
    /// Encapsulated packets of one call, back to back.
    buf: Vec<u8>,
    queued: Vec<Queued>,
    /// The datagrams of one socket's send, kept empty between calls.
    list: Vec<(&'static [u8], SockaddrIn)>,
    /// Frames and bytes of the last call dropped as too big ([`DatagramTx::take_dropped`]).
    dropped: (u64, u64),
}

impl DatagramTx for Tx {
    fn send_batch(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        let c = &self.counters.0;
        self.buf.clear();
        self.queued.clear();
        let now = Instant::now();
        let (mut too_big, mut too_big_bytes, mut flooded) = (0, 0, 0);
        {
            let fdb = self.fdb.lock().unwrap_or_else(|e| e.into_inner());
            for f in frames {
                if f.len() > self.max_frame || f.len() < crate::frame::HEADER_LEN {
                    too_big += 1;
                    too_big_bytes += f.len() as u64;
                    continue;
                }
                let start = self.buf.len();
                self.buf.extend_from_slice(&self.header);
                self.buf.extend_from_slice(f);
                let len = self.buf.len() - start;
                let sock = wire::flow_hash(f) as usize % self.socks.len();
                let mut dst = [0u8; 6];
                dst.copy_from_slice(&f[..6]);
                let dst = MacAddr(dst);
                let known = if dst.is_group() { None } else { fdb.lookup(&dst, now) };
                match known {
                    Some(ip) => self.queued.push(Queued {
                        start,
                        len,
                        to: SockaddrIn::from(SocketAddrV4::new(ip, self.port)),
                        sock,
                    }),
                    None => {
                        flooded += 1;
                        for to in self.peers.iter().chain(self.group.iter()) {
                            self.queued.push(Queued {
                                start,
                                len,
                                to: *to,
                                sock,
                            });
                        }
                    }
                }
            }
        }
        VxlanCounters::add(&c.too_big, too_big);
        self.dropped = (too_big, too_big_bytes);
        VxlanCounters::add(&c.flooded, flooded);
        let (mut sent, mut dropped) = (0u64, 0u64);
        for s in 0..self.socks.len() {
            let mut list: Vec<(&[u8], SockaddrIn)> = recycle(std::mem::take(&mut self.list));
            for q in self.queued.iter().filter(|q| q.sock == s) {
                list.push((&self.buf[q.start..q.start + q.len], q.to));
            }
            if !list.is_empty() {
                match self.batches[s].send_segmented(self.socks[s].as_raw_fd(), &list) {
                    Ok(n) => {
                        sent += n as u64;
                        dropped += (list.len() - n) as u64;
                    }
                    Err(_) => dropped += list.len() as u64,
                }
            }
            self.list = recycle(list);
        }
        VxlanCounters::add(&c.tx_packets, sent);
        VxlanCounters::add(&c.tx_dropped, dropped);
        Ok(frames.len())
    }

    fn take_dropped(&mut self) -> (u64, u64) {
        std::mem::take(&mut self.dropped)
    }

    fn report(&self) -> String {
        self.counters.get().to_string()
    }
}

/// An open VXLAN port, ready to [`VxlanPort::run`].
pub struct VxlanPort {
    cfg: VxlanConfig,
    rx: UdpSocket,
    group_rx: Option<UdpSocket>,
    tx: Tx,
    fdb: Arc<Mutex<Fdb>>,
    counters: VxlanCounters,
}

/// Sets `IP_MTU_DISCOVER` to `IP_PMTUDISC_DO`: DF on every packet, never
/// fragmented by this host (a packet over the route's MTU fails with `EMSGSIZE`).
fn set_pmtudisc_do(s: &Socket) -> io::Result<()> {
    let v: libc::c_int = libc::IP_PMTUDISC_DO;
    // SAFETY: a valid socket and a c_int option value of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&raw const v).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A sending socket bound to `ip` on a source port in 49152-65535 (tried
/// from `seed`), or on an ephemeral port when 32 tries find none free.
fn bind_sender(ip: Ipv4Addr, seed: u32, group: bool) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    set_pmtudisc_do(&s)?;
    s.set_send_buffer_size(4 << 20)?;
    // Nothing is received here; keep the buffer a stray sender could fill small.
    s.set_recv_buffer_size(4096)?;
    if group {
        s.set_multicast_if_v4(&ip)?;
        s.set_multicast_loop_v4(false)?;
        s.set_multicast_ttl_v4(1)?;
    }
    let mut bound = false;
    for k in 0..32u32 {
        let port = wire::source_port(seed.wrapping_add(k.wrapping_mul(2053)));
        if s.bind(&SocketAddr::V4(SocketAddrV4::new(ip, port)).into()).is_ok() {
            bound = true;
            break;
        }
    }
    if !bound {
        s.bind(&SocketAddr::V4(SocketAddrV4::new(ip, 0)).into())?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Opens the sockets of `cfg`: the receiving socket on `local`, the group's
/// (with `group=`), and [`SEND_SOCKETS`] sending sockets. Must be called inside
/// a tokio runtime.
///
/// # Errors
/// A message naming the part that failed (`local=...: cannot bind: ...`).
pub fn open(cfg: &VxlanConfig) -> Result<VxlanPort, String> {
    let rx = (|| -> io::Result<UdpSocket> {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_recv_buffer_size(4 << 20)?;
        s.bind(&SocketAddr::V4(cfg.local).into())?;
        s.set_nonblocking(true)?;
        UdpSocket::from_std(s.into())
    })()
    .map_err(|e| format!("local={}: cannot bind: {e}", cfg.local))?;
    let group_rx = match &cfg.group {
        None => None,
        Some((g, dev)) => Some(
            (|| -> io::Result<UdpSocket> {
                let index = nix::net::if_::if_nametoindex(dev.as_str()).map_err(io::Error::from)?;
                let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
                s.set_reuse_address(true)?;
                s.set_recv_buffer_size(4 << 20)?;
                s.bind(&SocketAddr::V4(SocketAddrV4::new(*g, cfg.local.port())).into())?;
                s.join_multicast_v4_n(g, &InterfaceIndexOrAddress::Index(index))?;
                s.set_multicast_all_v4(false)?;
                s.set_nonblocking(true)?;
                UdpSocket::from_std(s.into())
            })()
            .map_err(|e| format!("group={g},dev={dev}: cannot join: {e}"))?,
        ),
    };
    let seed = std::process::id().wrapping_mul(0x9e37_79b9) ^ cfg.vni;
    let mut socks = Vec::with_capacity(SEND_SOCKETS);
    for i in 0..SEND_SOCKETS as u32 {
        let s = bind_sender(
            *cfg.local.ip(),
            seed.wrapping_add(i.wrapping_mul(7919)),
            cfg.group.is_some(),
        )
        .map_err(|e| format!("local={}: cannot bind a sending socket: {e}", cfg.local.ip()))?;
        socks.push(StdUdpSocket::from(s));
    }
    let fdb = Arc::new(Mutex::new(Fdb::new(DEFAULT_AGING, fdb::DEFAULT_MAX_ENTRIES)));
    let counters = VxlanCounters::default();
    let tx = Tx {
        header: wire::header(cfg.vni),
        // Runs of equal-length datagrams go as one UDP_SEGMENT send up to the
        // underlay MTU less the outer IPv4 (20) and UDP (8) headers, so
        // full-size frames are segmented too, not only those under 1,400 bytes.
        batches: (0..socks.len())
            .map(|_| SendBatch::new().with_segment_max(usize::from(cfg.mtu) - 28))
            .collect(),
        socks,
        peers: cfg
            .peers
            .iter()
            .map(|p| SockaddrIn::from(SocketAddrV4::new(*p, cfg.port)))
            .collect(),
        group: cfg
            .group
            .as_ref()
            .map(|(g, _)| SockaddrIn::from(SocketAddrV4::new(*g, cfg.port))),
        port: cfg.port,
        max_frame: cfg.max_frame(),
        fdb: fdb.clone(),
        counters: counters.clone(),
        buf: Vec::new(),
        queued: Vec::new(),
        list: Vec::new(),
        dropped: (0, 0),
    };
    Ok(VxlanPort {
        cfg: cfg.clone(),
        rx,
        group_rx,
        tx,
        fdb,
        counters,
    })
}

/// Handles `n` datagrams of `rb` as received on the port `id`: checks the
/// sender (`accept`), decapsulates, learns, switches; counts the rest.
#[allow(clippy::too_many_arguments)]
fn receive<H: LocalHost>(
    batch: &mut Batch<'_, H>,
    id: PortId,
    rb: &RecvBatch<SockaddrIn>,
    n: usize,
    vni: u32,
    mut accept: impl FnMut(Ipv4Addr) -> bool,
    fdb: &Mutex<Fdb>,
    counters: &VxlanCounters,
) {
    let c = &counters.0;
    let now = Instant::now();
    let (mut ok, mut malformed, mut foreign, mut unknown, mut refused) = (0, 0, 0, 0, 0);
    for i in 0..n {
        let (bytes, meta) = rb.get(i);
        let Some(from) = meta.from.map(|a| *SocketAddrV4::from(a).ip()).filter(|ip| accept(*ip)) else {
            unknown += 1;
            continue;
        };
        if meta.truncated {
            malformed += 1;
            continue;
        }
        match wire::decap(bytes, vni) {
            Ok(inner) => {
                let mut src = [0u8; 6];
                src.copy_from_slice(&inner[6..12]);
                if !fdb
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .learn(MacAddr(src), from, now)
                {
                    refused += 1;
                }
                ok += 1;
                batch.ingress(id, inner);
            }
            Err(wire::Malformed::ForeignVni(_)) => foreign += 1,
            Err(_) => malformed += 1,
        }
    }
    batch.count_drop(id, unknown + foreign);
    batch.count_error(id, malformed);
    VxlanCounters::add(&c.rx_packets, ok);
    VxlanCounters::add(&c.malformed, malformed);
    VxlanCounters::add(&c.foreign_vni, foreign);
    VxlanCounters::add(&c.unknown_peer, unknown);
    VxlanCounters::add(&c.fdb_refused, refused);
}

/// The VTEPs met through the group (`group=`): their unicast packets (the
/// answers to what they learned from the group) are accepted like a peer's.
/// At most [`MAX_PEERS`], allocated once; one silent for the aging time is
/// forgotten, and a new one past the bound is refused (its group packets are
/// still accepted).
struct GroupVteps {
    seen: Vec<(Ipv4Addr, Instant)>,
    aging: Duration,
}

impl GroupVteps {
    fn new() -> Self {
        GroupVteps {
            seen: Vec::with_capacity(MAX_PEERS),
            aging: DEFAULT_AGING,
        }
    }

    fn saw(&mut self, ip: Ipv4Addr, now: Instant) {
        if let Some(e) = self.seen.iter_mut().find(|e| e.0 == ip) {
            e.1 = now;
            return;
        }
        if self.seen.len() >= MAX_PEERS {
            self.age(now);
        }
        if self.seen.len() < MAX_PEERS {
            self.seen.push((ip, now));
        }
    }

    fn knows(&self, ip: Ipv4Addr, now: Instant) -> bool {
        self.seen
            .iter()
            .any(|e| e.0 == ip && now.saturating_duration_since(e.1) < self.aging)
    }

    fn age(&mut self, now: Instant) {
        let aging = self.aging;
        self.seen.retain(|e| now.saturating_duration_since(e.1) < aging);
    }
}

/// Waits until `s` is readable; forever when there is no socket.
async fn readable(s: Option<&UdpSocket>) -> io::Result<()> {
    match s {
        Some(s) => s.readable().await,
        None => std::future::pending().await,
    }
}

impl VxlanPort {
    /// The port's counters, readable while [`VxlanPort::run`] runs.
    pub fn counters(&self) -> VxlanCounters {
        self.counters.clone()
    }

    /// The port's FDB (inner MAC -> remote VTEP), shared with its running task.
    pub fn fdb(&self) -> Arc<Mutex<Fdb>> {
        self.fdb.clone()
    }

    /// Adds the VXLAN network to `segment` as one port and switches what
    /// arrives, a `recvmmsg` batch per segment lock; ages the FDB every second.
    /// Transient receive errors are skipped; others are logged, rate limited,
    /// with a backoff ([`crate::sys::retry`]).
    ///
    /// # Errors
    /// None: it returns only when its task is dropped (the hub's shutdown).
    pub async fn run<H: LocalHost>(self, segment: Arc<Segment<H>>) -> io::Result<()> {
        let VxlanPort {
            cfg,
            rx,
            group_rx,
            tx,
            fdb,
            counters,
        } = self;
        let label = format!("vxlan:{}", cfg);
        let (id, _) = segment.add_port(
            format!("vxlan:vni={},local={}", cfg.vni, cfg.local),
            Egress::Datagram(Box::new(tx)),
        );
        let mut rb: RecvBatch<SockaddrIn> = RecvBatch::new();
        let mut gb: RecvBatch<SockaddrIn> = RecvBatch::new();
        let mut aging = tokio::time::interval(Duration::from_secs(1));
        aging.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pacer = Pacer::new("receiving VXLAN packets");
        let local_ip = *cfg.local.ip();
        let peers = cfg.peers.clone();
        let mut vteps = GroupVteps::new();
        loop {
            tokio::select! {
                r = rx.readable() => {
                    let got = r.and_then(|()| rx.try_io(Interest::READABLE, || rb.recv(rx.as_raw_fd())));
                    let Some(n) = pacer.settle(&label, got).await else { continue };
                    let mut batch = segment.batch();
                    let now = Instant::now();
                    let known = |ip| peers.contains(&ip) || vteps.knows(ip, now);
                    receive(&mut batch, id, &rb, n, cfg.vni, known, &fdb, &counters);
                }
                r = readable(group_rx.as_ref()) => {
                    let Some(g) = group_rx.as_ref() else { continue };
                    let got = r.and_then(|()| g.try_io(Interest::READABLE, || gb.recv(g.as_raw_fd())));
                    let Some(n) = pacer.settle(&label, got).await else { continue };
                    let mut batch = segment.batch();
                    let now = Instant::now();
                    let member = |ip| {
                        if ip == local_ip {
                            return false;
                        }
                        vteps.saw(ip, now);
                        true
                    };
                    receive(&mut batch, id, &gb, n, cfg.vni, member, &fdb, &counters);
                }
                _ = aging.tick() => {
                    fdb.lock().unwrap_or_else(|e| e.into_inner()).age(Instant::now());
                    vteps.age(Instant::now());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_flag() {
        let c: VxlanConfig = "vni=42,local=10.99.0.1,peer=10.99.0.2,peer=10.99.0.3".parse().unwrap();
        assert_eq!(c.vni, 42);
        assert_eq!(c.local, "10.99.0.1:4789".parse().unwrap());
        assert_eq!(c.peers.len(), 2);
        assert_eq!((c.port, c.mtu, c.inner_mtu(), c.max_frame()), (4789, 1500, 1450, 1464));
        assert_eq!(c.group, None);
        let c: VxlanConfig = "vni=7,local=127.0.0.1:5000,group=239.1.1.1,dev=lo,port=8472,mtu=9000"
            .parse()
            .unwrap();
        assert_eq!(c.local.port(), 5000);
        assert_eq!(c.group, Some(("239.1.1.1".parse().unwrap(), "lo".into())));
        assert_eq!((c.port, c.inner_mtu()), (8472, 8950));
        assert_eq!(c.to_string().parse::<VxlanConfig>(), Ok(c));
    }

    #[test]
    fn errors_name_the_bad_part() {
        for (bad, says) in [
            ("local=10.0.0.1,peer=10.0.0.2", "vni= is missing"),
            ("vni=42,peer=10.0.0.2", "local= is missing"),
            ("vni=16777216,local=10.0.0.1,peer=10.0.0.2", "vni=16777216"),
            ("vni=42,local=10.0.0.1", "no peer"),
            ("vni=42,local=0.0.0.0,peer=10.0.0.2", "local=0.0.0.0"),
            ("vni=42,local=10.0.0.1,peer=nope", "peer=nope"),
            ("vni=42,local=10.0.0.1,peer=239.1.1.1", "peer=239.1.1.1"),
            ("vni=42,local=10.0.0.1,peer=10.0.0.1", "peer=10.0.0.1"),
            ("vni=42,local=10.0.0.1,group=10.0.0.9,dev=eth0", "group=10.0.0.9"),
            ("vni=42,local=10.0.0.1,group=239.1.1.1", "needs dev="),
            ("vni=42,local=10.0.0.1,peer=10.0.0.2,dev=eth0", "dev=eth0"),
            ("vni=42,local=10.0.0.1,peer=10.0.0.2,port=0", "port=0"),
            ("vni=42,local=10.0.0.1,peer=10.0.0.2,mtu=100", "mtu=100"),
            ("vni=42,local=10.0.0.1,peer=10.0.0.2,ttl=3", "ttl=3"),
            ("vni=42,local=10.0.0.1,peer", "\"peer\""),
        ] {
            let e = bad.parse::<VxlanConfig>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
