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
use std::os::unix::net::UnixDatagram as StdUnixDatagram;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{UdpSocket, UnixDatagram};

use super::RECV_BATCH;
use crate::frame::MAX_FRAME_LEN;
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

/// Sends to one peer through the shared socket.
struct PeerTx<A> {
    sock: Arc<Sock>,
    peer: A,
}

impl DatagramTx for PeerTx<PathBuf> {
    fn send(&self, frame: &[u8]) -> io::Result<()> {
        match &*self.sock {
            Sock::Unix(s) => s.try_send_to(frame, &self.peer).map(|_| ()),
            Sock::Udp(_) => Err(io::ErrorKind::Unsupported.into()),
        }
    }
}

impl DatagramTx for PeerTx<SocketAddr> {
    fn send(&self, frame: &[u8]) -> io::Result<()> {
        match &*self.sock {
            Sock::Udp(s) => s.try_send_to(frame, self.peer).map(|_| ()),
            Sock::Unix(_) => Err(io::ErrorKind::Unsupported.into()),
        }
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

impl<A: std::hash::Hash + Eq + Clone + fmt::Debug + Send + 'static> Peers<A>
where
    PeerTx<A>: DatagramTx,
{
    /// The port of `peer`, adding one on first sight.
    fn port<H: LocalHost, Q>(
        &mut self,
        batch: &mut Batch<'_, H>,
        sock: &Arc<Sock>,
        label: &str,
        peer: &Q,
        now: Instant,
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
        let (id, _) = batch.add_port(
            name.clone(),
            Egress::Datagram(Box::new(PeerTx {
                sock: sock.clone(),
                peer: owned.clone(),
            })),
        );
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

impl DgramPort {
    /// Receives datagrams forever, up to [`RECV_BATCH`] per lock; each new source
    /// address becomes a port of `segment`.
    ///
    /// # Errors
    /// Returns only on a socket error other than an interrupted or refused receive.
    pub async fn run<H: LocalHost>(self, segment: Arc<Segment<H>>) -> io::Result<()> {
        let label = format!("dgram:{}", self.addr);
        let mut buf = vec![0u8; MAX_FRAME_LEN + 1];
        let mut unix_peers: Peers<PathBuf> = Peers { map: HashMap::new() };
        let mut udp_peers: Peers<SocketAddr> = Peers { map: HashMap::new() };
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
            let now = Instant::now();
            let mut batch = segment.batch();
            for _ in 0..RECV_BATCH {
                let r = match &*self.sock {
                    Sock::Unix(s) => s.try_recv_from(&mut buf).map(|(n, from)| {
                        let id = from
                            .as_pathname()
                            .map(|p: &Path| unix_peers.port(&mut batch, &self.sock, &label, p, now));
                        (n, id)
                    }),
                    Sock::Udp(s) => s
                        .try_recv_from(&mut buf)
                        .map(|(n, from)| (n, Some(udp_peers.port(&mut batch, &self.sock, &label, &from, now)))),
                };
                match r {
                    Ok((n, Some(id))) => batch.ingress(id, &buf[..n]),
                    Ok((_, None)) => tracing::debug!("dropping a datagram from an unnamed unix socket"),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionRefused) => {}
                    Err(e) => return Err(e),
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
