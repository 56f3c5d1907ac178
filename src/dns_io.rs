//! The DNS adapter: thin socket I/O around the host's sans-IO DNS server.
//!
//! - `--dns-listen` over UDP and TCP, on IPv4 or IPv6 addresses alike (each
//!   socket bound to the address given, so UDP answers leave from it; TCP as
//!   RFC 1035 section 4.2.2: 2-byte length prefix, many queries per
//!   connection, answers in any order, closed after [`TCP_IDLE`] without a
//!   query; at most 64 connections). Each UDP listener
//!   has a thread of its own: it takes the queries waiting, up to
//!   [`RECV_BATCH`] per `recvmmsg(2)`, answers them under one lock of the
//!   segment and sends the answers in one `sendmmsg(2)`, those of one length
//!   to one client as one segmented send (UDP GSO, see
//!   [`vmlan_hub::sys::mmsg`]); under load it waits
//!   [`COALESCE`](vmlan_hub::sys::coalesce::COALESCE) before reading again, as the stream ports do
//!   ([`vmlan_hub::sys::coalesce`]), so that one wake-up serves many queries;
//! - upstream servers: one UDP socket per server, connected to it, for the
//!   forwarded queries of UDP clients, those of the segment's guests included
//!   (the host queues them and wakes this task); one TCP connection per
//!   forwarded query of a TCP client, a guest's on the segment included. An
//!   answer for a guest comes back from the host as frames (a datagram, or TCP
//!   segments on the guest's connection), switched as if the host had sent
//!   them; an answer for a `--dns-listen` TCP client finds its connection by
//!   the client's address.
//! - failures, so that clients get SERVFAIL rather than silence
//!   (vmlan_host::dns::forward): a send the kernel refuses (no route, a
//!   blackhole route) and a failed TCP exchange are reported for their query
//!   (`Host::dns_upstream_failed`); an ICMP port unreachable comes back as
//!   ECONNREFUSED on the server's connected socket, on a receive or the next
//!   send, and is reported for the server (`Host::dns_upstream_refused`).
//!   Either moves the queries to their next server at once, or answers
//!   SERVFAIL. A server that cannot be connected at start (no route yet) gets
//!   an unconnected socket, connected again on later sends. A full socket
//!   buffer is not a failure: the query is dropped, and times out to SERVFAIL
//!   if the client does not retry first.
//! - errors of the sockets themselves: an accept or receive error never ends
//!   a loop nor spins it; EINTR, EAGAIN and ECONNREFUSED are skipped, any other
//!   (EMFILE, ENOBUFS, ...) is logged at most once a second and followed by a
//!   backoff from 1 ms doubling to 1 s, as tokio's mini-redis does
//!   ([`vmlan_hub::sys::retry`]).

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::SockaddrStorage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::time::timeout;
use vmlan_host::dns::config::{DnsConfig, ServerTarget};
use vmlan_host::dns::forward::TIMEOUT;
use vmlan_host::dns::{Client, DnsAction, Forward, Transport};
use vmlan_host::host::DnsReturn;
use vmlan_hub::sys::addr::inet;
use vmlan_hub::sys::coalesce::Coalescer;
use vmlan_hub::sys::mmsg::{RecvBatch, SendBatch, RECV_BATCH};
use vmlan_hub::sys::prefix::prefixed;
use vmlan_hub::sys::retry::{self, Pacer};
use vmlan_hub::{Segment, HOST_PORT};

use crate::host_driver::Driven;

/// Receive buffer asked for each `--dns-listen` UDP socket, in bytes (SO_RCVBUF).
const DNS_LISTEN_RCVBUF: usize = 4 << 20;

/// A TCP client that sends no query for this long is disconnected.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// Most TCP clients served at once; more are closed at once.
const TCP_CLIENTS: usize = 64;

/// The UDP socket for one upstream server.
struct Upstream {
    addr: SocketAddr,
    sock: UdpSocket,
    /// Connected to `addr`: only its datagrams arrive, and its ICMP errors.
    connected: AtomicBool,
}

impl Upstream {
    /// A socket for `addr`, connected if the kernel has a route to it now.
    fn open(addr: SocketAddr) -> std::io::Result<Upstream> {
        let any: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("valid")
        } else {
            "[::]:0".parse().expect("valid")
        };
        let std = std::net::UdpSocket::bind(any)?;
        let connected = std.connect(addr).is_ok();
        std.set_nonblocking(true)?;
        Ok(Upstream {
            addr,
            sock: UdpSocket::from_std(std)?,
            connected: AtomicBool::new(connected),
        })
    }

    /// Sends `query`; connects first if the socket is not yet connected.
    fn send(&self, query: &[u8]) -> std::io::Result<usize> {
        if !self.connected.load(Ordering::Relaxed) {
            let to = SockaddrStorage::from(self.addr);
            if nix::sys::socket::connect(self.sock.as_raw_fd(), &to).is_ok() {
                self.connected.store(true, Ordering::Relaxed);
            }
        }
        match self.connected.load(Ordering::Relaxed) {
            true => self.sock.try_send(query),
            false => self.sock.try_send_to(query, self.addr),
        }
    }
}

/// The way back to a `--dns-listen` TCP client: its connection's writer.
type TcpClients = Mutex<HashMap<(u64, SocketAddr), mpsc::Sender<Vec<u8>>>>;

struct Io {
    seg: Arc<Segment<Driven>>,
    /// The UDP `--dns-listen` sockets (non-blocking).
    listeners: Vec<Arc<std::net::UdpSocket>>,
    /// One socket per upstream server.
    ups: HashMap<SocketAddr, Arc<Upstream>>,
    /// The connected `--dns-listen` TCP clients, by (listener, client address).
    tcp_clients: TcpClients,
}

/// Binds every `--dns-listen` address (UDP and TCP) and the upstream sockets,
/// then serves them in the background.
///
/// # Errors
/// An address that cannot be bound, naming the flag.
pub async fn start(seg: Arc<Segment<Driven>>, listen: &[SocketAddr], cfg: &DnsConfig) -> Result<()> {
    let mut ups = HashMap::new();
    for r in &cfg.servers {
        if let ServerTarget::Upstream(a) = r.target {
            if let std::collections::hash_map::Entry::Vacant(slot) = ups.entry(a) {
                let up = Upstream::open(a).with_context(|| format!("upstream DNS server {a}: cannot open a socket"))?;
                if !up.connected.load(Ordering::Relaxed) {
                    tracing::warn!(upstream = %a, "no route to this DNS server now; its queries fail until there is one");
                }
                slot.insert(Arc::new(up));
            }
        }
    }
    let mut listeners = Vec::new();
    let mut tcp = Vec::new();
    for addr in listen {
        let sock = std::net::UdpSocket::bind(addr)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .with_context(|| format!("--dns-listen {addr}: cannot bind UDP"))?;
        // A burst of queries (dnsperf keeps hundreds in flight) must wait in the socket
        // while the listener thread is not running: each small datagram takes about
        // 1 KiB of buffer, and the default (rmem_default, often 208 KiB) holds only ~200.
        // The kernel caps the request at net.core.rmem_max (and doubles it).
        let _ = nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::RcvBuf, &DNS_LISTEN_RCVBUF);
        listeners.push(Arc::new(sock));
        tcp.push(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("--dns-listen {addr}: cannot listen on TCP"))?,
        );
    }
    let io = Arc::new(Io {
        seg,
        listeners,
        ups,
        tcp_clients: Mutex::new(HashMap::new()),
    });
    if !io.ups.is_empty() {
        let wake = Arc::new(Notify::new());
        let w = wake.clone();
        io.seg
            .with_host(|d| d.host.set_dns_waker(Box::new(move || w.notify_one())));
        tokio::spawn(upstream(io.clone(), wake));
        for up in io.ups.values() {
            tokio::spawn(receive(io.clone(), up.clone()));
        }
    }
    for i in 0..io.listeners.len() {
        let io = io.clone();
        std::thread::Builder::new()
            .name(format!("vmlan-dns-udp{i}"))
            .spawn(move || serve_udp(io, i))
            .context("--dns-listen: cannot start a thread")?;
    }
    let slots = Arc::new(Semaphore::new(TCP_CLIENTS));
    for (i, l) in tcp.into_iter().enumerate() {
        tokio::spawn(serve_tcp(io.clone(), l, i as u64, slots.clone()));
    }
    Ok(())
}

impl Io {
    /// Sends a query upstream over UDP, from its server's socket, from any
    /// thread (outside the segment's lock). A full socket buffer drops it (the
    /// client retries, or it times out); a refused send is reported (see the
    /// module's comment).
    fn send_udp(&self, f: &Forward) {
        let Some(up) = self.ups.get(&f.upstream) else {
            return self.failed(f);
        };
        match up.send(&f.query) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                tracing::debug!(upstream = %f.upstream, "upstream DNS socket full; query dropped");
            }
            // An ICMP error for an earlier datagram; this one was not sent either.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => self.refused(f.upstream),
            Err(e) => {
                tracing::debug!(upstream = %f.upstream, error = %e, "cannot send a DNS query upstream");
                self.failed(f);
            }
        }
    }

    /// Sending `f` failed: the host moves it to its next server, or answers SERVFAIL.
    fn failed(&self, f: &Forward) {
        if let Some(r) = self
            .seg
            .with_host(|d| d.host.dns_upstream_failed(Instant::now(), f.upstream, &f.query))
        {
            self.deliver(r);
        }
    }

    /// `upstream` refused: the host moves its queries on, or answers SERVFAIL.
    fn refused(&self, upstream: SocketAddr) {
        tracing::debug!(%upstream, "upstream DNS server refused (port unreachable)");
        for r in self
            .seg
            .with_host(|d| d.host.dns_upstream_refused(Instant::now(), upstream))
        {
            self.deliver(r);
        }
    }

    /// Gives an upstream answer to the host and sends it on its way.
    fn answer(&self, from: SocketAddr, bytes: &[u8]) {
        if let Some(r) = self
            .seg
            .with_host(|d| d.host.dns_upstream_answer(Instant::now(), from, bytes))
        {
            self.deliver(r);
        }
    }

    /// Sends a DNS message the host returned to its client: frames into the
    /// segment, a datagram from its `--dns-listen` socket, or onto its TCP
    /// connection (dropped if the connection is gone).
    fn deliver(&self, r: DnsReturn) {
        match r {
            DnsReturn::Frame(frame) => self.seg.ingress(HOST_PORT, &frame),
            DnsReturn::Frames(frames) => {
                let mut b = self.seg.batch();
                for f in &frames {
                    b.ingress(HOST_PORT, f);
                }
            }
            DnsReturn::Client(c, b) if c.transport == Transport::Udp => {
                if let Some(s) = usize::try_from(c.path).ok().and_then(|i| self.listeners.get(i)) {
                    let _ = s.send_to(&b, c.addr);
                }
            }
            DnsReturn::Client(c, b) => {
                let tx = self
                    .tcp_clients
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&(c.path, c.addr))
                    .cloned();
                if let Some(tx) = tx {
                    if let Err(mpsc::error::TrySendError::Full(b)) = tx.try_send(b) {
                        // The writer is behind: wait for room on a task of its own.
                        if let Ok(rt) = tokio::runtime::Handle::try_current() {
                            rt.spawn(async move { tx.send(b).await });
                        }
                    }
                }
            }
        }
    }
}

/// Sends `f` upstream: over UDP, or over TCP on a task of its own (a TCP
/// client's query, so a big answer is not truncated twice).
fn forward(io: &Arc<Io>, f: Forward) {
    match f.transport {
        Transport::Udp => io.send_udp(&f),
        Transport::Tcp => {
            tokio::spawn(forward_tcp(io.clone(), f));
        }
    }
}

/// One forwarded query over TCP: its answer goes back, its failure is reported.
async fn forward_tcp(io: Arc<Io>, f: Forward) {
    match tcp_exchange(f.upstream, &f.query).await {
        Some(answer) => io.answer(f.upstream, &answer),
        None => io.failed(&f),
    }
}

/// Sends the queries the host queued (the segment's, and failovers) and the
/// SERVFAILs it made for host-side clients, whenever woken.
async fn upstream(io: Arc<Io>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        let (forwards, returns) = io
            .seg
            .with_host(|d| (d.host.take_dns_forwards(), d.host.take_dns_returns()));
        for r in returns {
            io.deliver(r);
        }
        for f in forwards {
            forward(&io, f);
        }
    }
}

/// Takes every datagram from one upstream server's socket; ECONNREFUSED there
/// is that server's ICMP port unreachable.
/// Other errors are logged, rate limited, and followed by a backoff from 1 ms
/// doubling to 1 s ([`vmlan_hub::sys::retry`]); EINTR is skipped.
async fn receive(io: Arc<Io>, up: Arc<Upstream>) {
    let mut buf = vec![0u8; 65535];
    let at = format!("upstream DNS {}", up.addr);
    let mut pacer = Pacer::new("receiving upstream DNS answers");
    loop {
        match up.sock.recv_from(&mut buf).await {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => io.refused(up.addr),
            received => {
                if let Some((n, from)) = pacer.settle(&at, received).await {
                    io.answer(from, &buf[..n]);
                }
            }
        }
    }
}

/// Serves `--dns-listen` number `i` over UDP, forever (see the module's
/// comment). Transient receive errors (EINTR, ECONNREFUSED) are skipped; a
/// persistent one is logged, rate limited, and followed by a backoff from 1 ms
/// doubling to 1 s instead of a busy loop ([`vmlan_hub::sys::retry`]).
fn serve_udp(io: Arc<Io>, i: usize) {
    let sock = io.listeners[i].clone();
    let fd = sock.as_raw_fd();
    let mut rx: RecvBatch<SockaddrStorage> = RecvBatch::new();
    let mut tx: SendBatch<SockaddrStorage> = SendBatch::new();
    let mut answers: Vec<(Vec<u8>, SockaddrStorage, SocketAddr)> = Vec::with_capacity(RECV_BATCH);
    let mut forwards = Vec::new();
    let mut coalescer = Coalescer::new();
    let at = sock
        .local_addr()
        .map_or_else(|_| format!("dns-listen#{i}"), |a| format!("dns-listen udp:{a}"));
    let mut pacer = Pacer::new("receiving DNS queries");
    loop {
        let n = match rx.recv(fd) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::NONE);
                continue;
            }
            // An ICMP error for an earlier answer, EINTR: skipped.
            Err(e) if retry::is_transient(&e) => continue,
            Err(e) => {
                std::thread::sleep(pacer.failed(&at, &e));
                continue;
            }
        };
        pacer.ok();
        let now = Instant::now();
        coalescer.read_at(now);
        io.seg.with_host(|d| {
            for k in 0..n {
                let (bytes, meta) = rx.get(k);
                let Some((from, storage)) = meta.from.and_then(|s| Some((inet(&s)?, s))) else {
                    continue;
                };
                if meta.truncated {
                    continue;
                }
                match d.host.dns_mut().handle(bytes, Client::udp(from, i as u64), now) {
                    DnsAction::Answer(b) => answers.push((b, storage, from)),
                    DnsAction::Forward(f) => forwards.push(f),
                    DnsAction::Drop => {}
                }
            }
        });
        // Runs of one length to one client go as one segmented send.
        answers.sort_unstable_by_key(|a| (a.2, a.0.len()));
        let out: Vec<(&[u8], SockaddrStorage)> = answers.iter().map(|(b, a, _)| (b.as_slice(), *a)).collect();
        let _ = tx.send_segmented(fd, &out);
        drop(out);
        answers.clear();
        for f in forwards.drain(..) {
            io.send_udp(&f); // a UDP client's query: forwarded over UDP
        }
        coalescer.pause(n);
    }
}

/// Accepts TCP clients of `--dns-listen` number `i`, forever: an accept error
/// (EMFILE, ENFILE, ENOBUFS, ENOMEM or any other) is logged, rate limited, and
/// followed by a backoff from 1 ms doubling to 1 s ([`vmlan_hub::sys::retry`]).
async fn serve_tcp(io: Arc<Io>, l: TcpListener, i: u64, slots: Arc<Semaphore>) {
    let at = l
        .local_addr()
        .map_or_else(|_| format!("dns-listen#{i}"), |a| format!("dns-listen tcp:{a}"));
    let mut pacer = Pacer::new("accepting a DNS TCP client");
    loop {
        let accepted = l.accept().await;
        let Some((stream, from)) = pacer.settle(&at, accepted).await else {
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%from, "too many DNS TCP clients; closing");
            continue;
        };
        let io = io.clone();
        tokio::spawn(async move {
            tcp_client(io, stream, from, i).await;
            drop(slot);
        });
    }
}

/// Reads one length-prefixed message, or `None` on EOF, error or `TCP_IDLE`.
async fn read_msg(r: &mut (impl AsyncReadExt + Unpin)) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    timeout(TCP_IDLE, r.read_exact(&mut len)).await.ok()?.ok()?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    timeout(TCP_IDLE, r.read_exact(&mut msg)).await.ok()?.ok()?;
    Some(msg)
}

/// Serves one TCP client: queries in, answers out as they are ready (a
/// forwarded query's answer, or its SERVFAIL, comes through [`Io::deliver`]).
async fn tcp_client(io: Arc<Io>, stream: TcpStream, from: SocketAddr, path: u64) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            // An answer over 65,535 bytes cannot be framed: dropped.
            let Ok(framed) = prefixed::<2>(&m) else { continue };
            if wr.write_all(&framed).await.is_err() {
                break;
            }
        }
    });
    io.tcp_clients
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((path, from), tx.clone());
    while let Some(msg) = read_msg(&mut rd).await {
        let client = Client::tcp(from, path);
        match io
            .seg
            .with_host(|d| d.host.dns_mut().handle(&msg, client, Instant::now()))
        {
            DnsAction::Answer(b) => {
                if tx.send(b).await.is_err() {
                    break;
                }
            }
            DnsAction::Forward(f) => forward(&io, f),
            DnsAction::Drop => {}
        }
    }
    io.tcp_clients
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&(path, from));
    drop(tx);
    let _ = writer.await;
}

/// One query to `upstream` over TCP, within the forward timeout.
async fn tcp_exchange(upstream: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let exchange = async {
        let mut s = TcpStream::connect(upstream).await.ok()?;
        s.write_all(&prefixed::<2>(query).ok()?).await.ok()?;
        read_msg(&mut s).await
    };
    timeout(TIMEOUT, exchange).await.ok().flatten()
}
