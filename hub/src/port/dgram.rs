//! Datagram ports: one bound socket that serves many QEMU datagram peers, one
//! frame per datagram with no prefix (QEMU net/dgram.c and net/socket.c `udp=`):
//!
//! - `--dgram unix:PATH` for `-netdev dgram,local.type=unix,local.path=VM.sock,
//!   remote.type=unix,remote.path=PATH`;
//! - `--dgram udp:HOST:PORT` for `-netdev socket,udp=HOST:PORT,localaddr=127.0.0.1:VMPORT`
//!   and `-netdev dgram,local.type=inet,...,remote.type=inet,...`.
//!
//! Each peer is learned by its source address and becomes its own switch port;
//! frames for it go back to that address. A peer silent for the MAC aging time
//! is forgotten. Never sends a zero-length datagram (QEMU would stop receiving
//! for good); unix peers without a bound path cannot be answered and are dropped.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram as StdUnixDatagram;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::socket::{SockaddrLike, SockaddrStorage, UnixAddr};
use tokio::io::Interest;
use tokio::net::{UdpSocket, UnixDatagram};

use super::mmsg::{RecvBatch, SendBatch};
#[allow(unused_imports)]
use super::RECV_BATCH;
use crate::segment::{Batch, DatagramTx, Egress, LocalHost, Segment};
use crate::switch::{PortId, DEFAULT_AGING};

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

    /// Parses `unix:PATH` or `udp:HOST:PORT`.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("unix:").filter(|p| !p.is_empty()) {
            Ok(DgramAddr::Unix(PathBuf::from(p)))
        } else if let Some(a) = s.strip_prefix("udp:") {
            match a.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(DgramAddr::Udp(a.to_string()))
                }
                _ => Err(format!("{s:?}: expected udp:HOST:PORT")),
            }
        } else {
            Err(format!("{s:?}: expected unix:PATH or udp:HOST:PORT"))
        }
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

/// A bound datagram socket, ready to [`DgramPort::run`].
pub struct DgramPort {
    sock: Arc<Sock>,
    addr: DgramAddr,
}

/// Binds `addr` (a stale unix socket file is replaced). Must be called inside a tokio runtime.
///
/// # Errors
/// The bind error, or `AddrInUse` when another process serves the unix path.
pub fn bind(addr: &DgramAddr) -> io::Result<DgramPort> {
    let sock = match addr {
        DgramAddr::Unix(path) => {
            super::stream::clear_stale_socket(path)?;
            let s = StdUnixDatagram::bind(path)?;
            s.set_nonblocking(true)?;
            Sock::Unix(UnixDatagram::from_std(s)?)
        }
        DgramAddr::Udp(a) => {
            let sa = std::net::ToSocketAddrs::to_socket_addrs(a)?
                .next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{a} resolves to nothing")))?;
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
    })
}

/// The peers met so far: address -> (port, last datagram).
struct Peers<A> {
    map: HashMap<A, (PortId, Instant)>,
}

impl<A: std::hash::Hash + Eq + Clone + fmt::Debug> Peers<A> {
    fn new() -> Self {
        Peers { map: HashMap::new() }
    }

    /// The port of `peer`, adding one (sending through `make(peer)`) on first sight.
    fn port<H: LocalHost, Q>(
        &mut self,
        batch: &mut Batch<'_, H>,
        label: &str,
        peer: &Q,
        now: Instant,
        make: impl FnOnce(&A) -> Box<dyn DatagramTx>,
    ) -> PortId
    where
        A: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ToOwned<Owned = A> + ?Sized,
    {
        if let Some(e) = self.map.get_mut(peer) {
            e.1 = now;
            return e.0;
        }
        let owned: A = peer.to_owned();
        let name = format!("{label}<-{owned:?}");
        let (id, _) = batch.add_port(name.clone(), Egress::Datagram(make(&owned)));
        tracing::info!(port = %name, id, "datagram peer joined");
        self.map.insert(owned, (id, now));
        id
    }

    /// Forgets peers silent since before `now - DEFAULT_AGING`.
    fn age<H: LocalHost>(&mut self, segment: &Segment<H>, now: Instant) {
        self.map.retain(|peer, (id, seen)| {
            let keep = now.saturating_duration_since(*seen) < DEFAULT_AGING;
            if !keep {
                segment.remove_port(*id);
                tracing::info!(?peer, id = *id, "datagram peer forgotten after silence");
            }
            keep
        });
    }
}

/// The `SocketAddr` of an IPv4 or IPv6 socket address from the kernel.
fn inet(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

impl DgramPort {
    /// Receives datagrams forever, up to [`RECV_BATCH`] per `recvmmsg` and lock;
    /// each new source address becomes a port of `segment`.
    ///
    /// # Errors
    /// Returns only on a socket error other than an interrupted or refused receive.
    pub async fn run<H: LocalHost>(self, segment: Arc<Segment<H>>) -> io::Result<()> {
        let label = format!("dgram:{}", self.addr);
        let mut unix_peers: Peers<PathBuf> = Peers::new();
        let mut udp_peers: Peers<SocketAddr> = Peers::new();
        let mut unix_rx: RecvBatch<UnixAddr> = RecvBatch::new();
        let mut udp_rx: RecvBatch<SockaddrStorage> = RecvBatch::new();
        let fd = self.sock.fd();
        let mut aging = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                r = readable(&self.sock) => r?,
                _ = aging.tick() => {
                    let now = Instant::now();
                    unix_peers.age(&segment, now);
                    udp_peers.age(&segment, now);
                    continue;
                }
            }
            let received = match &*self.sock {
                Sock::Unix(s) => s.try_io(Interest::READABLE, || unix_rx.recv(fd)),
                Sock::Udp(s) => s.try_io(Interest::READABLE, || udp_rx.recv(fd)),
            };
            let n = match received {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
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
                        let id = unix_peers.port(&mut batch, &label, path, now, |p| {
                            let dest = UnixAddr::new(p.as_path()).expect("a path the kernel reported");
                            Box::new(PeerTx {
                                sock: self.sock.clone(),
                                dest,
                                batch: SendBatch::new(),
                            })
                        });
                        (bytes, id, meta.truncated)
                    }
                    Sock::Udp(_) => {
                        let (bytes, meta) = udp_rx.get(i);
                        let Some(from) = meta.from.as_ref().and_then(inet) else {
                            continue;
                        };
                        let id = udp_peers.port(&mut batch, &label, &from, now, |p| {
                            Box::new(PeerTx {
                                sock: self.sock.clone(),
                                dest: SockaddrStorage::from(*p),
                                batch: SendBatch::new(),
                            })
                        });
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
