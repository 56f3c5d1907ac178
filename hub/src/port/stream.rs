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
//! Under load the hub coalesces wake-ups, as NICs moderate interrupts: when a
//! connection is read again less than [`BUSY_GAP`](crate::sys::coalesce::BUSY_GAP) after its previous read and
//! that read held few frames ([`FEW_ITEMS`](crate::sys::coalesce::FEW_ITEMS)), the hub waits [`COALESCE`](crate::sys::coalesce::COALESCE) before
//! reading again, so the sender's next writes land in one batch instead of
//! waking the hub each time (the policy the DNS listeners share,
//! [`crate::sys::coalesce`]). Light traffic (interactive sessions, pings)
//! never waits.
//!
//! An accept error (out of descriptors, buffers or memory) is logged, rate
//! limited, and followed by a backoff; the listener never stops accepting
//! (see [`Listener::run`]). A bad length prefix closes that connection only,
//! logged with the peer.
//! TCP connections set TCP_NODELAY. Each connection has a thread of its own
//! that waits in `poll(2)` and reads into its own 256 KiB buffer (many frames
//! per `read`); its egress is written by the segment once per batch (many
//! frames per `write`).

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::framing::Decoder;
use crate::segment::{Egress, LocalHost, Segment, StreamTx};
use crate::sys::coalesce::Coalescer;
use crate::sys::{addr, retry::Pacer, unix::clear_stale_socket};

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

    /// Parses `unix:PATH` or `tcp:HOST:PORT` ([`addr::Endpoint::parse`]).
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match addr::Endpoint::parse(s, "tcp")? {
            addr::Endpoint::Unix(p) => StreamAddr::Unix(p),
            addr::Endpoint::Inet(a) => StreamAddr::Tcp(a),
        })
    }
}

/// A connected socket, unix or TCP, in non-blocking mode.
enum Sock {
    Unix(StdUnixStream),
    Tcp(std::net::TcpStream),
}

impl Sock {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Sock::Unix(s) => s.as_fd(),
            Sock::Tcp(s) => s.as_fd(),
        }
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Unix(s) => (&*s).read(buf),
            Sock::Tcp(s) => (&*s).read(buf),
        }
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Sock::Unix(s) => s.set_nonblocking(true),
            Sock::Tcp(s) => s.set_nonblocking(true),
        }
    }
}

/// The transmit half the segment writes to: a plain non-blocking write. When
/// it cannot take everything, the segment wakes the connection's thread, which
/// polls for writability and flushes the rest.
impl StreamTx for Sock {
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Unix(s) => (&*s).write(buf),
            Sock::Tcp(s) => (&*s).write(buf),
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
                let sa = addr::resolve(a)?;
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
    /// An accept error (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`, or any other)
    /// never ends the loop: it is logged at most once a second and followed by
    /// a backoff from 1 ms doubling to 1 s (see [`crate::sys::retry`], after tokio's
    /// mini-redis); then accepting resumes, so clients are taken again as soon
    /// as descriptors free up. A client that fails its set-up (`TCP_NODELAY`,
    /// registration) is closed alone.
    ///
    /// # Errors
    /// None: it returns only when its task is dropped (the hub's shutdown).
    pub async fn run<H: LocalHost>(self, segment: Arc<Segment<H>>) -> io::Result<()> {
        let mut n = 0u64;
        let mut pacer = Pacer::new("accepting a stream client");
        let at = match &self {
            Listener::Unix(_, path) => format!("stream:unix:{}", path.display()),
            Listener::Tcp(l) => format!("stream:tcp:{}", l.local_addr().map_or("?".into(), |a| a.to_string())),
        };
        loop {
            let accepted = match &self {
                Listener::Unix(l, path) => l.accept().await.and_then(|(s, _)| {
                    n += 1;
                    Ok((Sock::Unix(s.into_std()?), format!("stream:unix:{}#{n}", path.display())))
                }),
                Listener::Tcp(l) => l.accept().await.and_then(|(s, peer)| {
                    s.set_nodelay(true)?;
                    Ok((Sock::Tcp(s.into_std()?), format!("stream:tcp:{peer}")))
                }),
            };
            let Some((conn, name)) = pacer.settle(&at, accepted).await else {
                continue;
            };
            let seg = segment.clone();
            tokio::task::spawn_blocking(move || serve(seg, conn, name));
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
            StreamAddr::Unix(p) => UnixStream::connect(p).await.and_then(|s| s.into_std()).map(Sock::Unix),
            StreamAddr::Tcp(a) => match TcpStream::connect(a.as_str()).await {
                Ok(s) => s.set_nodelay(true).and_then(|_| s.into_std()).map(Sock::Tcp),
                Err(e) => Err(e),
            },
        };
        match conn {
            Ok(conn) => {
                tracing::info!(peer = %addr, "connected");
                backoff = Duration::from_millis(100);
                warned = false;
                let (seg, name) = (segment.clone(), format!("connect:{addr}"));
                let _ = tokio::task::spawn_blocking(move || serve(seg, conn, name)).await;
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
/// fails; then removes the port (and the MACs learned on it). Runs on a thread
/// of its own (the runtime's blocking pool): it waits in `poll(2)`, which keeps
/// the socket's wait queue empty while the thread is busy, so the sender's
/// writes cost it no wake-up callback (a socket registered with epoll would
/// pay one on every write).
fn serve<H: LocalHost>(segment: Arc<Segment<H>>, sock: Sock, name: String) {
    if let Err(e) = sock.set_nonblocking() {
        tracing::error!(port = %name, error = %e, "cannot set the connection non-blocking");
        return;
    }
    let sock = Arc::new(sock);
    let (id, signal) = segment.add_port(name.clone(), Egress::Stream(sock.clone()));
    tracing::info!(port = %name, id, "client connected");
    let mut decoder = Decoder::new();
    let mut coalescer = Coalescer::new();
    let mut read_now = false;
    let reason: String = loop {
        if signal.broken.load(Ordering::Acquire) {
            break "write failed".into();
        }
        let pending = signal.pending.load(Ordering::Acquire);
        if !read_now || pending {
            let mut events = PollFlags::POLLIN;
            if pending {
                events |= PollFlags::POLLOUT;
            }
            let wake = signal.wake_fd.as_ref().map_or(sock.fd(), |w| w.as_fd());
            let mut fds = [PollFd::new(sock.fd(), events), PollFd::new(wake, PollFlags::POLLIN)];
            let n = if signal.wake_fd.is_some() { 2 } else { 1 };
            match poll(&mut fds[..n], PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => break e.to_string(),
            }
            let woken = n == 2 && fds[1].revents().is_some_and(|r| r.contains(PollFlags::POLLIN));
            let rev = fds[0].revents().unwrap_or(PollFlags::empty());
            if woken {
                signal.clear_wake();
            }
            if rev.contains(PollFlags::POLLOUT) && pending {
                match segment.flush_port(id) {
                    Err(e) if !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                        break e.to_string()
                    }
                    _ => {}
                }
            }
            if !rev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                read_now = false;
                continue;
            }
        }
        let spare = decoder.spare();
        let room = spare.len();
        let n = match sock.read(spare) {
            Ok(0) => break "closed by peer".into(),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                read_now = false;
                continue;
            }
            Err(e) => break e.to_string(),
        };
        coalescer.read_at(Instant::now());
        decoder.filled(n);
        let mut frames = 0;
        let mut batch = segment.batch();
        if let Err(e) = decoder.frames(|f| {
            frames += 1;
            batch.ingress(id, f)
        }) {
            drop(batch);
            segment.count_error(id);
            break format!("protocol error: {e}");
        }
        drop(batch);
        // A full read: more is waiting. Busy with few frames: pause, then read
        // without polling (data will be there). Otherwise the socket is drained.
        read_now = n == room || coalescer.pause(frames);
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
