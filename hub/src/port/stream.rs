//! Stream ports: QEMU's `-netdev stream` (QEMU 7.2+, net/stream.c) and the older
//! `-netdev socket,connect=`/`listen=` (net/socket.c), over a unix or TCP socket,
//! with QEMU's length-prefixed framing (framing.rs).
//!
//! - [`Listener`] (`--stream unix:PATH|tcp:HOST:PORT`) accepts any number of
//!   QEMU clients (`server=off`, or `socket,connect=`); each connection is one
//!   switch port. A client that goes away frees its port and the MACs learned on
//!   it. QEMU clients with `reconnect-ms=` come back by themselves after the hub
//!   restarts, because the hub listens on the same path again.
//! - [`connect_loop`] (`--connect`) dials a QEMU that listens (`server=on`, or
//!   `socket,listen=`) and dials again, with backoff, whenever it is not there.
//!
//! A bad length prefix closes that connection only, logged with the peer.
//! TCP connections set TCP_NODELAY. Each connection reads into its own
//! 256 KiB buffer (many frames per `read`) and its egress is written by the
//! segment once per batch (many frames per `write`).

use std::fmt;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::framing::Decoder;
use crate::segment::{Egress, LocalHost, Segment, StreamTx};

/// Where a stream port listens or dials: `unix:PATH` or `tcp:HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamAddr {
    /// A unix socket path.
    Unix(PathBuf),
    /// A TCP `HOST:PORT` (a name is resolved when binding or dialing).
    Tcp(String),
}

impl fmt::Display for StreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            StreamAddr::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl FromStr for StreamAddr {
    type Err = String;

    /// Parses `unix:PATH` or `tcp:HOST:PORT`.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("unix:").filter(|p| !p.is_empty()) {
            Ok(StreamAddr::Unix(PathBuf::from(p)))
        } else if let Some(a) = s.strip_prefix("tcp:") {
            match a.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(StreamAddr::Tcp(a.to_string()))
                }
                _ => Err(format!("{s:?}: expected tcp:HOST:PORT")),
            }
        } else {
            Err(format!("{s:?}: expected unix:PATH or tcp:HOST:PORT"))
        }
    }
}

/// One connection, unix or TCP.
enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    async fn readable(&self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.readable().await,
            Conn::Tcp(s) => s.readable().await,
        }
    }

    async fn writable(&self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.writable().await,
            Conn::Tcp(s) => s.writable().await,
        }
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.try_read(buf),
            Conn::Tcp(s) => s.try_read(buf),
        }
    }
}

/// The transmit half the segment writes to: the connection itself. A
/// `WouldBlock` here clears the socket's write readiness, so the port's task
/// then waits for the socket to drain.
impl StreamTx for Conn {
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.try_write(buf),
            Conn::Tcp(s) => s.try_write(buf),
        }
    }
}

/// Removes a stale unix socket at `path` (one nobody accepts on); refuses to
/// touch a live one or a file that is not a socket.
pub(crate) fn clear_stale_socket(path: &std::path::Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if !m.file_type().is_socket() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        )),
        Ok(_) => {
            if StdUnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by a running process", path.display()),
                ));
            }
            std::fs::remove_file(path)
        }
    }
}

/// A bound listening socket, ready to [`Listener::run`].
pub enum Listener {
    /// Listening on a unix socket path.
    Unix(UnixListener, PathBuf),
    /// Listening on TCP.
    Tcp(TcpListener),
}

impl Listener {
    /// Binds `addr` (a stale unix socket file is replaced). Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// The bind error, or `AddrInUse` when another process serves the unix path.
    pub fn bind(addr: &StreamAddr) -> io::Result<Listener> {
        match addr {
            StreamAddr::Unix(path) => {
                clear_stale_socket(path)?;
                let l = StdUnixListener::bind(path)?;
                l.set_nonblocking(true)?;
                Ok(Listener::Unix(UnixListener::from_std(l)?, path.clone()))
            }
            StreamAddr::Tcp(a) => {
                let sa = std::net::ToSocketAddrs::to_socket_addrs(a)?
                    .next()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{a} resolves to nothing")))?;
                let s = socket2::Socket::new(socket2::Domain::for_address(sa), socket2::Type::STREAM, None)?;
                s.set_reuse_address(true)?;
                s.bind(&sa.into())?;
                s.listen(128)?;
                s.set_nonblocking(true)?;
                Ok(Listener::Tcp(TcpListener::from_std(s.into())?))
            }
        }
    }

    /// Accepts clients forever; each one is served as its own port of `segment`.
    ///
    /// # Errors
    /// Returns only if accepting fails for good.
    pub async fn run<H: LocalHost>(self, segment: Arc<Segment<H>>) -> io::Result<()> {
        let mut n = 0u64;
        loop {
            let (conn, name) = match &self {
                Listener::Unix(l, path) => {
                    let (s, _) = l.accept().await?;
                    n += 1;
                    (Conn::Unix(s), format!("stream:unix:{}#{n}", path.display()))
                }
                Listener::Tcp(l) => {
                    let (s, peer) = l.accept().await?;
                    s.set_nodelay(true)?;
                    (Conn::Tcp(s), format!("stream:tcp:{peer}"))
                }
            };
            tokio::spawn(serve(segment.clone(), conn, name));
        }
    }
}

/// Dials `addr` until it answers, serves the connection as a port while it
/// lasts, and dials again: backoff from 100 ms doubling to 5 s between attempts.
pub async fn connect_loop<H: LocalHost>(segment: Arc<Segment<H>>, addr: StreamAddr) {
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    loop {
        let conn = match &addr {
            StreamAddr::Unix(p) => UnixStream::connect(p).await.map(Conn::Unix),
            StreamAddr::Tcp(a) => match TcpStream::connect(a.as_str()).await {
                Ok(s) => s.set_nodelay(true).map(|_| Conn::Tcp(s)),
                Err(e) => Err(e),
            },
        };
        match conn {
            Ok(conn) => {
                tracing::info!(peer = %addr, "connected");
                backoff = Duration::from_millis(100);
                warned = false;
                serve(segment.clone(), conn, format!("connect:{addr}")).await;
            }
            Err(e) if !warned => {
                tracing::warn!(peer = %addr, error = %e, "cannot connect yet; retrying with backoff");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Serves one connection as a port until it closes, breaks its framing or
/// fails; then removes the port (and the MACs learned on it).
async fn serve<H: LocalHost>(segment: Arc<Segment<H>>, conn: Conn, name: String) {
    let conn = Arc::new(conn);
    let (id, signal) = segment.add_port(name.clone(), Egress::Stream(conn.clone()));
    tracing::info!(port = %name, id, "client connected");
    let mut decoder = Decoder::new();
    let reason: String = loop {
        if signal.broken.load(Ordering::Acquire) {
            break "write failed".into();
        }
        let pending = signal.pending.load(Ordering::Acquire);
        tokio::select! {
            r = conn.readable() => {
                if let Err(e) = r {
                    break e.to_string();
                }
                match conn.try_read(decoder.spare()) {
                    Ok(0) => break "closed by peer".into(),
                    Ok(n) => {
                        decoder.filled(n);
                        let mut batch = segment.batch();
                        if let Err(e) = decoder.frames(|f| batch.ingress(id, f)) {
                            drop(batch);
                            segment.count_error(id);
                            break format!("protocol error: {e}");
                        }
                    }
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
                    Err(e) => break e.to_string(),
                }
            }
            r = conn.writable(), if pending => {
                if let Err(e) = r {
                    break e.to_string();
                }
                match segment.flush_port(id) {
                    Err(e) if !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => break e.to_string(),
                    _ => {}
                }
            }
            _ = signal.wake.notified() => {}
        }
    };
    let stats = segment.remove_port(id).unwrap_or_default();
    tracing::info!(
        port = %name, id, %reason,
        rx_frames = stats.rx_frames, tx_frames = stats.tx_frames, drops = stats.drops,
        "client gone"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            "unix:/tmp/a.sock".parse::<StreamAddr>(),
            Ok(StreamAddr::Unix("/tmp/a.sock".into()))
        );
        assert_eq!(
            "tcp:127.0.0.1:5000".parse::<StreamAddr>(),
            Ok(StreamAddr::Tcp("127.0.0.1:5000".into()))
        );
        assert_eq!(
            "tcp:[::1]:5000".parse::<StreamAddr>().unwrap().to_string(),
            "tcp:[::1]:5000"
        );
        for bad in ["", "unix:", "tcp:5000", "tcp:host:port", "/tmp/a.sock", "udp:1.2.3.4:5"] {
            assert!(bad.parse::<StreamAddr>().is_err(), "{bad}");
        }
    }
}
