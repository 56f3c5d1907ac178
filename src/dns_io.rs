//! The DNS adapter: thin socket I/O around the host's sans-IO DNS server.
//!
//! - `--dns-listen` over UDP and TCP (RFC 1035 section 4.2.2: 2-byte length
//!   prefix, many queries per connection, answers in any order, closed after
//!   [`TCP_IDLE`] without a query; at most 64 connections). Each UDP listener
//!   has a thread of its own: it takes the queries waiting, up to
//!   [`RECV_BATCH`] per `recvmmsg(2)`, answers them under one lock of the
//!   segment and sends the answers in one `sendmmsg(2)`, those of one length
//!   to one client as one segmented send (UDP GSO, see
//!   [`vmlan_hub::port::mmsg`]); under load it waits
//!   [`COALESCE`] before reading again, as the stream ports do, so that one
//!   wake-up serves many queries;
//! - upstream servers: one UDP socket per address family for the forwarded
//!   queries of UDP clients, those of the segment's guests included (the host
//!   queues them and wakes this task); one TCP connection per forwarded query
//!   of a TCP client, a guest's on the segment included. An answer for a guest
//!   comes back from the host as frames (a datagram, or TCP segments on the
//!   guest's connection), switched as if the host had sent them.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::SockaddrStorage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::time::timeout;
use vmlan_dhcpdns::dns::{Client, DnsAction, Forward, Transport};
use vmlan_dhcpdns::dns_config::{DnsConfig, ServerTarget};
use vmlan_dhcpdns::dns_forward::TIMEOUT;
use vmlan_dhcpdns::host::DnsReturn;
use vmlan_dhcpdns::Host;
use vmlan_hub::port::mmsg::{RecvBatch, SendBatch};
use vmlan_hub::port::stream::{BUSY_GAP, COALESCE, FEW_FRAMES};
use vmlan_hub::port::RECV_BATCH;
use vmlan_hub::{Segment, HOST_PORT};

/// A TCP client that sends no query for this long is disconnected.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// Most TCP clients served at once; more are closed at once.
const TCP_CLIENTS: usize = 64;

struct Io {
    seg: Arc<Segment<Host>>,
    /// The UDP `--dns-listen` sockets (non-blocking).
    listeners: Vec<Arc<std::net::UdpSocket>>,
    up4: Option<UdpSocket>,
    up6: Option<UdpSocket>,
}

/// Binds every `--dns-listen` address (UDP and TCP) and the upstream sockets,
/// then serves them in the background.
///
/// # Errors
/// An address that cannot be bound, naming the flag.
pub async fn start(seg: Arc<Segment<Host>>, listen: &[SocketAddr], cfg: &DnsConfig) -> Result<()> {
    let ups: Vec<SocketAddr> = cfg
        .servers
        .iter()
        .filter_map(|r| match r.target {
            ServerTarget::Upstream(a) => Some(a),
            _ => None,
        })
        .collect();
    let bind_up = |any: &str| UdpSocket::bind(any.parse::<SocketAddr>().expect("valid"));
    let up4 = match ups.iter().any(SocketAddr::is_ipv4) {
        true => Some(bind_up("0.0.0.0:0").await.context("upstream DNS: cannot bind")?),
        false => None,
    };
    let up6 = match ups.iter().any(SocketAddr::is_ipv6) {
        true => Some(bind_up("[::]:0").await.context("upstream DNS: cannot bind IPv6")?),
        false => None,
    };
    let mut listeners = Vec::new();
    let mut tcp = Vec::new();
    for addr in listen {
        let sock = std::net::UdpSocket::bind(addr)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .with_context(|| format!("--dns-listen {addr}: cannot bind UDP"))?;
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
        up4,
        up6,
    });
    if io.up4.is_some() || io.up6.is_some() {
        let wake = Arc::new(Notify::new());
        let w = wake.clone();
        io.seg.with_host(|h| h.set_dns_waker(Box::new(move || w.notify_one())));
        tokio::spawn(upstream(io.clone(), wake));
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
    /// Sends a query upstream over UDP (from the socket of its family), from
    /// any thread; a full socket buffer drops it (the client retries).
    fn send_udp(&self, f: &Forward) {
        let sock = if f.upstream.is_ipv4() { &self.up4 } else { &self.up6 };
        if let Some(s) = sock {
            if let Err(e) = s.try_send_to(&f.query, f.upstream) {
                tracing::debug!(upstream = %f.upstream, error = %e, "cannot send a DNS query upstream");
            }
        }
    }

    /// Gives an upstream answer to the host and sends it on its way.
    async fn answer(&self, from: SocketAddr, bytes: &[u8]) {
        match self.seg.with_host(|h| h.dns_upstream_answer(from, bytes)) {
            Some(DnsReturn::Frame(frame)) => self.seg.ingress(HOST_PORT, &frame),
            Some(DnsReturn::Frames(frames)) => {
                let mut b = self.seg.batch();
                for f in &frames {
                    b.ingress(HOST_PORT, f);
                }
            }
            Some(DnsReturn::Client(c, b)) if c.transport == Transport::Udp => {
                if let Some(s) = usize::try_from(c.path).ok().and_then(|i| self.listeners.get(i)) {
                    let _ = s.send_to(&b, c.addr);
                }
            }
            _ => {}
        }
    }
}

async fn recv(sock: &Option<UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// Sends the segment's queued queries when woken, and takes every upstream answer.
async fn upstream(io: Arc<Io>, wake: Arc<Notify>) {
    let (mut b4, mut b6) = (vec![0u8; 65535], vec![0u8; 65535]);
    loop {
        tokio::select! {
            _ = wake.notified() => {
                for f in io.seg.with_host(|h| h.take_dns_forwards()) {
                    match f.transport {
                        Transport::Udp => io.send_udp(&f),
                        // A guest's query over TCP: forwarded over TCP (no second truncation).
                        Transport::Tcp => {
                            let io = io.clone();
                            tokio::spawn(async move {
                                if let Some(answer) = tcp_exchange(f.upstream, &f.query).await {
                                    io.answer(f.upstream, &answer).await;
                                }
                            });
                        }
                    }
                }
            }
            r = recv(&io.up4, &mut b4) => if let Ok((n, from)) = r { io.answer(from, &b4[..n]).await },
            r = recv(&io.up6, &mut b6) => if let Ok((n, from)) = r { io.answer(from, &b6[..n]).await },
        }
    }
}

/// The socket address of a received datagram, if it is an IP one.
fn inet(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// Serves `--dns-listen` number `i` over UDP, forever (see the module's comment).
fn serve_udp(io: Arc<Io>, i: usize) {
    let sock = io.listeners[i].clone();
    let fd = sock.as_raw_fd();
    let mut rx: RecvBatch<SockaddrStorage> = RecvBatch::new();
    let mut tx: SendBatch<SockaddrStorage> = SendBatch::new();
    let mut answers: Vec<(Vec<u8>, SockaddrStorage, SocketAddr)> = Vec::with_capacity(RECV_BATCH);
    let mut forwards = Vec::new();
    let mut last_read = Instant::now() - BUSY_GAP;
    loop {
        let n = match rx.recv(fd) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::NONE);
                continue;
            }
            Err(_) => continue, // an ICMP error for an earlier answer, EINTR
        };
        let now = Instant::now();
        let busy = now.duration_since(last_read) < BUSY_GAP;
        last_read = now;
        io.seg.with_host(|h| {
            for k in 0..n {
                let (bytes, meta) = rx.get(k);
                let Some((from, storage)) = meta.from.and_then(|s| Some((inet(&s)?, s))) else {
                    continue;
                };
                if meta.truncated {
                    continue;
                }
                match h.dns_mut().handle(bytes, Client::udp(from, i as u64), now) {
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
            io.send_udp(&f);
        }
        if busy && n < FEW_FRAMES {
            std::thread::sleep(COALESCE);
        }
    }
}

/// Accepts TCP clients of `--dns-listen` number `i`.
async fn serve_tcp(io: Arc<Io>, l: TcpListener, i: u64, slots: Arc<Semaphore>) {
    loop {
        let Ok((stream, from)) = l.accept().await else {
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

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

/// Serves one TCP client: queries in, answers out as they are ready.
async fn tcp_client(io: Arc<Io>, stream: TcpStream, from: SocketAddr, path: u64) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if wr.write_all(&framed(&m)).await.is_err() {
                break;
            }
        }
    });
    while let Some(msg) = read_msg(&mut rd).await {
        let client = Client::tcp(from, path);
        match io.seg.with_host(|h| h.dns_mut().handle(&msg, client, Instant::now())) {
            DnsAction::Answer(b) => {
                if tx.send(b).await.is_err() {
                    break;
                }
            }
            DnsAction::Forward(f) => {
                let (io, tx) = (io.clone(), tx.clone());
                tokio::spawn(async move {
                    let Some(answer) = tcp_exchange(f.upstream, &f.query).await else {
                        return;
                    };
                    let back = io.seg.with_host(|h| h.dns_upstream_answer(f.upstream, &answer));
                    if let Some(DnsReturn::Client(_, b)) = back {
                        let _ = tx.send(b).await;
                    }
                });
            }
            DnsAction::Drop => {}
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// One query to `upstream` over TCP, within the forward timeout.
async fn tcp_exchange(upstream: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let exchange = async {
        let mut s = TcpStream::connect(upstream).await.ok()?;
        s.write_all(&framed(query)).await.ok()?;
        read_msg(&mut s).await
    };
    timeout(TIMEOUT, exchange).await.ok().flatten()
}
