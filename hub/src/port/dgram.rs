//! Datagram ports: one bound socket that serves many QEMU datagram peers, one
//! frame per datagram with no prefix (QEMU net/dgram.c and net/socket.c `udp=`):
//!
//! - `--dgram unix:PATH` for `-netdev dgram,local.type=unix,local.path=VM.sock,
//!   remote.type=unix,remote.path=PATH`;
//! - `--dgram udp:HOST:PORT` for `-netdev socket,udp=HOST:PORT,localaddr=127.0.0.1:VMPORT`
//!   and `-netdev dgram,local.type=inet,...,remote.type=inet,...`.
//!
//! Each peer is learned by its source address and becomes its own switch port;
//! frames for it go back to that address. Peers are bounded: at most
//! [`MAX_PEERS`] per socket (datagrams from further addresses are dropped and
//! counted, [`DgramCounters::refused`], with a log line at most once a second),
//! and a peer silent for the MAC aging time ([`DEFAULT_AGING`], 300 s, as the
//! switch's MAC table in switch.rs) is forgotten with its port, which frees its
//! place. Both limits can be set per socket ([`DgramPort::with_limits`]).
//! Never sends a zero-length datagram (QEMU would stop receiving for good);
//! unix peers without a bound path cannot be answered and are dropped. A
//! receive error never ends the port: transient ones are skipped, others are
//! followed by a backoff ([`crate::sys::retry`]).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram as StdUnixDatagram;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::socket::{SockaddrLike, SockaddrStorage, UnixAddr};
use tokio::io::Interest;
use tokio::net::{UdpSocket, UnixDatagram};

use crate::segment::{Batch, DatagramTx, Egress, LocalHost, Segment};
use crate::switch::{PortId, DEFAULT_AGING};
use crate::sys::addr::{self, inet};
use crate::sys::mmsg::{RecvBatch, SendBatch};
use crate::sys::{retry::Pacer, unix::clear_stale_socket};

/// Where a datagram port binds: `unix:PATH` or `udp:HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DgramAddr {
    /// A unix datagram socket path.
    Unix(PathBuf),
    /// A UDP `HOST:PORT`.
    Udp(String),
}

impl fmt::Display for DgramAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DgramAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            DgramAddr::Udp(a) => write!(f, "udp:{a}"),
        }
    }
}

impl FromStr for DgramAddr {
    type Err = String;

    /// Parses `unix:PATH` or `udp:HOST:PORT` ([`addr::Endpoint::parse`]).
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match addr::Endpoint::parse(s, "udp")? {
            addr::Endpoint::Unix(p) => DgramAddr::Unix(p),
            addr::Endpoint::Inet(a) => DgramAddr::Udp(a),
        })
    }
}

enum Sock {
    Unix(UnixDatagram),
    Udp(UdpSocket),
}

impl Sock {
    fn fd(&self) -> RawFd {
        match self {
            Sock::Unix(s) => s.as_raw_fd(),
            Sock::Udp(s) => s.as_raw_fd(),
        }
    }
}

/// Sends to one peer through the shared socket, a batch per `sendmmsg`.
struct PeerTx<S> {
    sock: Arc<Sock>,
    dest: S,
    batch: SendBatch<S>,
}

impl<S: SockaddrLike + Copy + Send + 'static> DatagramTx for PeerTx<S> {
    fn send_batch(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        self.batch.send(self.sock.fd(), frames, Some(self.dest))
    }
}

/// Most peers (source addresses) one datagram socket serves at once, by
/// default: each is a switch port with its own send buffers, walked on every
/// flood. Datagrams from further addresses are dropped until a peer ages out.
pub const MAX_PEERS: usize = 256;

/// The peer counters of one datagram socket, shared with its running task.
#[derive(Debug, Default)]
pub struct DgramCounters {
    peers: AtomicUsize,
    refused: AtomicU64,
}

impl DgramCounters {
    /// Peers served now (at most the socket's maximum).
    pub fn peers(&self) -> usize {
        self.peers.load(Ordering::Relaxed)
    }

    /// Datagrams dropped since start because they came from a new address
    /// while the socket already served its maximum of peers.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// A bound datagram socket, ready to [`DgramPort::run`].
pub struct DgramPort {
    sock: Arc<Sock>,
    addr: DgramAddr,
    max_peers: usize,
    aging: Duration,
    counters: Arc<DgramCounters>,
}

/// Binds `addr` (a stale unix socket file is replaced). Must be called inside a tokio runtime.
///
/// # Errors
/// The bind error, or `AddrInUse` when another process serves the unix path.
pub fn bind(addr: &DgramAddr) -> io::Result<DgramPort> {
    let sock = match addr {
        DgramAddr::Unix(path) => {
            clear_stale_socket(path)?;
            let s = StdUnixDatagram::bind(path)?;
            s.set_nonblocking(true)?;
            Sock::Unix(UnixDatagram::from_std(s)?)
        }
        DgramAddr::Udp(a) => {
            let sa = addr::resolve(a)?;
            let s = socket2::Socket::new(socket2::Domain::for_address(sa), socket2::Type::DGRAM, None)?;
            s.set_recv_buffer_size(4 << 20)?;
            s.set_send_buffer_size(4 << 20)?;
            s.bind(&sa.into())?;
            s.set_nonblocking(true)?;
            Sock::Udp(UdpSocket::from_std(s.into())?)
        }
    };
    Ok(DgramPort {
        sock: Arc::new(sock),
        addr: addr.clone(),
        max_peers: MAX_PEERS,
        aging: DEFAULT_AGING,
        counters: Arc::default(),
    })
}

/// The peers met so far: address -> (port, last datagram); at most `max`.
struct Peers<A> {
    map: HashMap<A, (PortId, Instant)>,
    max: usize,
    aging: Duration,
    counters: Arc<DgramCounters>,
    /// When a refused peer was last logged (one line per second at most).
    last_refusal_log: Option<Instant>,
}

impl<A: std::hash::Hash + Eq + Clone + fmt::Debug> Peers<A> {
    fn new(max: usize, aging: Duration, counters: Arc<DgramCounters>) -> Self {
        Peers {
            map: HashMap::new(),
            max,
            aging,
            counters,
            last_refusal_log: None,
        }
    }

    /// The port of `peer`, adding one (sending through `make(peer)`) on first
    /// sight; `None` (counted, logged at most once a second) when a new peer
    /// would exceed the maximum.
    fn port<H: LocalHost, Q>(
        &mut self,
        batch: &mut Batch<'_, H>,
        label: &str,
        peer: &Q,
        now: Instant,
        make: impl FnOnce(&A) -> Box<dyn DatagramTx>,
    ) -> Option<PortId>
    where
        A: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ToOwned<Owned = A> + ?Sized,
    {
        if let Some(e) = self.map.get_mut(peer) {
            e.1 = now;
            return Some(e.0);
        }
        let owned: A = peer.to_owned();
        if self.map.len() >= self.max {
            let refused = self.counters.refused.fetch_add(1, Ordering::Relaxed) + 1;
            if self
                .last_refusal_log
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                self.last_refusal_log = Some(now);
                tracing::warn!(
                    port = %label, peer = ?owned, max = self.max, refused,
                    "too many datagram peers; dropping datagrams from new ones until one goes silent"
                );
            }
            return None;
        }
        let name = format!("{label}<-{owned:?}");
        let (id, _) = batch.add_port(name.clone(), Egress::Datagram(make(&owned)));
        tracing::info!(port = %name, id, "datagram peer joined");
        self.map.insert(owned, (id, now));
        self.counters.peers.store(self.map.len(), Ordering::Relaxed);
        Some(id)
    }

    /// Forgets peers (and removes their ports) silent since before `now - aging`.
    fn age<H: LocalHost>(&mut self, segment: &Segment<H>, now: Instant) {
        let (aging, before) = (self.aging, self.map.len());
        self.map.retain(|peer, (id, seen)| {
            let keep = now.saturating_duration_since(*seen) < aging;
            if !keep {
                segment.remove_port(*id);
                tracing::info!(?peer, id = *id, "datagram peer forgotten after silence");
            }
            keep
        });
        if self.map.len() != before {
            self.counters.peers.store(self.map.len(), Ordering::Relaxed);
        }
    }
}

impl DgramPort {
    /// Sets the most peers this socket serves at once (default [`MAX_PEERS`];
    /// at least 1) and how long a silent peer is kept (default
    /// [`DEFAULT_AGING`], the MAC aging time). Silence is checked every quarter
    /// of `aging` (between 10 ms and 10 s), so a peer goes at most that much later.
    pub fn with_limits(mut self, max_peers: usize, aging: Duration) -> Self {
        self.max_peers = max_peers.max(1);
        self.aging = aging;
        self
    }

    /// The socket's peer counters, readable while [`DgramPort::run`] runs.
    pub fn counters(&self) -> Arc<DgramCounters> {
        self.counters.clone()
    }

    /// Receives datagrams forever, up to [`RECV_BATCH`](crate::sys::mmsg::RECV_BATCH) per `recvmmsg` and lock;
    /// each new source address becomes a port of `segment`, up to the maximum
    /// of peers (see the module's comment). Transient receive errors (EINTR,
    /// EAGAIN, ECONNREFUSED) are skipped; any other is logged, rate limited,
    /// and followed by a backoff from 1 ms doubling to 1 s ([`crate::sys::retry`]).
    ///
    /// # Errors
    /// None: it returns only when its task is dropped (the hub's shutdown).
    pub async fn run<H: LocalHost>(self, segment: Arc<Segment<H>>) -> io::Result<()> {
        let label = format!("dgram:{}", self.addr);
        let (max, aging_time) = (self.max_peers, self.aging);
        let mut unix_peers: Peers<PathBuf> = Peers::new(max, aging_time, self.counters.clone());
        let mut udp_peers: Peers<SocketAddr> = Peers::new(max, aging_time, self.counters.clone());
        let mut unix_rx: RecvBatch<UnixAddr> = RecvBatch::new();
        let mut udp_rx: RecvBatch<SockaddrStorage> = RecvBatch::new();
        let fd = self.sock.fd();
        let check = (aging_time / 4).clamp(Duration::from_millis(10), Duration::from_secs(10));
        let mut aging = tokio::time::interval(check);
        aging.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pacer = Pacer::new("receiving datagrams");
        loop {
            let ready = tokio::select! {
                r = readable(&self.sock) => r,
                _ = aging.tick() => {
                    let now = Instant::now();
                    unix_peers.age(&segment, now);
                    udp_peers.age(&segment, now);
                    continue;
                }
            };
            let received = ready.and_then(|()| match &*self.sock {
                Sock::Unix(s) => s.try_io(Interest::READABLE, || unix_rx.recv(fd)),
                Sock::Udp(s) => s.try_io(Interest::READABLE, || udp_rx.recv(fd)),
            });
            let Some(n) = pacer.settle(&label, received).await else {
                continue;
            };
            let now = Instant::now();
            let mut batch = segment.batch();
            for i in 0..n {
                let (bytes, id, truncated) = match &*self.sock {
                    Sock::Unix(_) => {
                        let (bytes, meta) = unix_rx.get(i);
                        let Some(path) = meta.from.as_ref().and_then(UnixAddr::path) else {
                            tracing::debug!("dropping a datagram from an unnamed unix socket");
                            continue;
                        };
                        let Some(id) = unix_peers.port(&mut batch, &label, path, now, |p| {
                            let dest = UnixAddr::new(p.as_path()).expect("a path the kernel reported");
                            Box::new(PeerTx {
                                sock: self.sock.clone(),
                                dest,
                                batch: SendBatch::new(),
                            })
                        }) else {
                            continue;
                        };
                        (bytes, id, meta.truncated)
                    }
                    Sock::Udp(_) => {
                        let (bytes, meta) = udp_rx.get(i);
                        let Some(from) = meta.from.as_ref().and_then(inet) else {
                            continue;
                        };
                        let Some(id) = udp_peers.port(&mut batch, &label, &from, now, |p| {
                            Box::new(PeerTx {
                                sock: self.sock.clone(),
                                dest: SockaddrStorage::from(*p),
                                batch: SendBatch::new(),
                            })
                        }) else {
                            continue;
                        };
                        (bytes, id, meta.truncated)
                    }
                };
                if truncated {
                    batch.count_drop(id, 1);
                } else {
                    batch.ingress(id, bytes);
                }
            }
        }
    }
}

async fn readable(sock: &Sock) -> io::Result<()> {
    match sock {
        Sock::Unix(s) => s.readable().await,
        Sock::Udp(s) => s.readable().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            "unix:/tmp/d.sock".parse::<DgramAddr>(),
            Ok(DgramAddr::Unix("/tmp/d.sock".into()))
        );
        assert_eq!(
            "udp:127.0.0.1:6000".parse::<DgramAddr>(),
            Ok(DgramAddr::Udp("127.0.0.1:6000".into()))
        );
        for bad in ["", "unix:", "udp:6000", "tcp:127.0.0.1:1"] {
            assert!(bad.parse::<DgramAddr>().is_err(), "{bad}");
        }
    }
}
