//! `--expose` and the API's forwarder: port forwards from the machine into
//! guests, the machine's half (the segment's half is vmlan_host::forward).
//!
//! Each forward listens on a local address (TCP or UDP, tokio sockets). An
//! accepted TCP connection becomes a connection from the hub's host (its
//! address on the segment, an ephemeral port) to the guest's address and
//! port, with bytes relayed both ways, half-closes passed on (a FIN either
//! way shuts the other side's write half) and failures too: a guest that
//! refuses or resets the connection makes the client's connection end with
//! a RST, a client that resets makes the guest's get one. A UDP datagram
//! from a machine-side client goes out from the hub's address and a port of
//! the client's own (a flow), and what the guest sends back to that port
//! goes back to that client.
//!
//! Backpressure, so one slow side costs only its own connection: bytes from
//! a client are read only while the connection's send buffer on the segment
//! has room (64 KiB), at most [`CHUNK`] at a time, and bytes from the guest
//! are taken from its receive
//! buffer only once the previous ones were written to the client; a full
//! buffer closes the TCP window. The segment's lock is taken only inside one
//! synchronous call at a time, never across an await or a socket operation.
//! The host wakes this side through `Host::set_forward_waker` (under the
//! segment's lock, so it only notifies a task) whenever guest frames or its
//! timers changed a connection; a dispatcher task then wakes that
//! connection's task.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Notify;
use vmlan_host::forward::{EventKind, ForwardError, Forwarder, TcpState};
use vmlan_hub::{Segment, HOST_PORT};

use crate::host_driver::Driven;

/// A connection task looks at its connection at least this often, even
/// without a wake-up (every change the host sees comes as an event; this is
/// a safety net, not the pace of the relay).
const RECHECK: Duration = Duration::from_secs(5);
/// Datagrams from guests taken per wake-up of a UDP forward, at most.
const UDP_BATCH: usize = 256;
/// How often a UDP forward forgets the flows the host closed (idle).
const UDP_PRUNE: Duration = Duration::from_secs(5);
/// Bytes moved per step of a relay, each way (the segment's side buffers
/// [`vmlan_host::forward::BUF`] more in smoltcp).
const CHUNK: usize = 32 * 1024;

/// A forward's transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `"tcp"` or `"udp"`, as gvproxy spells them.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    /// Parses `"tcp"` or `"udp"` (lower case, as gvproxy's `types.TransportProtocol`).
    pub fn parse(s: &str) -> Option<Proto> {
        match s {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            _ => None,
        }
    }
}

/// One forward: listen on `local` (`protocol`), reach the guest at `remote`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// TCP or UDP.
    pub protocol: Proto,
    /// The machine-side address listened on.
    pub local: SocketAddr,
    /// The guest's address and port on the segment.
    pub remote: SocketAddrV4,
}

/// Parses a local listen address: `ADDR:PORT` (IPv6 in brackets), or a bare
/// `PORT` / `:PORT` on 127.0.0.1 (loopback by default). Port 0 is refused.
///
/// # Errors
/// A message saying what was expected.
pub fn parse_local(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let port_only = s.strip_prefix(':').unwrap_or(s);
    let a = match port_only.parse::<u16>() {
        Ok(p) => SocketAddr::from((Ipv4Addr::LOCALHOST, p)),
        Err(_) => s.parse::<SocketAddr>().map_err(|_| {
            format!("{s:?}: expected ADDR:PORT such as 127.0.0.1:2222 or [::1]:2222, or a PORT on 127.0.0.1")
        })?,
    };
    if a.port() == 0 {
        return Err(format!("{s:?}: port 0 is not a port to listen on"));
    }
    Ok(a)
}

/// Parses a guest's `IPV4:PORT`.
///
/// # Errors
/// A message saying what was expected.
pub fn parse_remote(s: &str) -> Result<SocketAddrV4, String> {
    let a: SocketAddrV4 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: expected a guest's IPV4:PORT such as 10.0.3.5:22"))?;
    if a.port() == 0 {
        return Err(format!("{s:?}: port 0 is not a guest's port"));
    }
    Ok(a)
}

/// Parses an `--expose` value: `[tcp:|udp:]LISTEN:PORT=GUEST_IP:PORT`
/// (TCP by default; LISTEN as [`parse_local`]).
///
/// # Errors
/// A message saying which part is wrong (without the flag's name).
pub fn parse_spec(v: &str) -> Result<Spec, String> {
    let (protocol, rest) = match v.split_once(':') {
        Some((p, rest)) if Proto::parse(p).is_some() => (Proto::parse(p).unwrap_or(Proto::Tcp), rest),
        _ => (Proto::Tcp, v),
    };
    let Some((local, remote)) = rest.split_once('=') else {
        return Err(format!(
            "{v:?}: expected [tcp:|udp:]LISTEN_ADDR:PORT=GUEST_IP:PORT, e.g. tcp:127.0.0.1:2222=10.0.3.5:22"
        ));
    };
    Ok(Spec {
        protocol,
        local: parse_local(local)?,
        remote: parse_remote(remote)?,
    })
}

/// Why a forward was not made.
#[derive(Debug)]
pub enum ExposeError {
    /// `--no-host`: no host on the segment to connect from.
    NoHost,
    /// The guest address is outside the host's `--addr` prefix (or is the host's own).
    Remote(SocketAddrV4),
    /// A forward already listens on that address and protocol.
    Exists(SocketAddr),
    /// The local address cannot be listened on (not one of the machine's, in use, ...).
    Listen(SocketAddr, std::io::Error),
}

impl std::fmt::Display for ExposeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExposeError::NoHost => write!(f, "the hub runs with --no-host: no host on the segment to forward from"),
            ExposeError::Remote(r) => write!(
                f,
                "{r} is not a guest on the segment: the address must be inside the hub's --addr prefix (not the hub's own, the network or broadcast address), the port not 0"
            ),
            ExposeError::Exists(l) => write!(f, "a forward already listens on {l}"),
            ExposeError::Listen(l, e) => write!(
                f,
                "cannot listen on {l}: {e} (the listen address must be one of this machine's, the port free)"
            ),
        }
    }
}

impl ExposeError {
    /// The request field at fault: `local` or `remote`.
    pub fn field(&self) -> &'static str {
        match self {
            ExposeError::NoHost | ExposeError::Remote(_) => "remote",
            ExposeError::Exists(_) | ExposeError::Listen(..) => "local",
        }
    }
}

/// One running forward: where it goes and its listener's task.
struct Entry {
    remote: SocketAddrV4,
    task: tokio::task::JoinHandle<()>,
}

/// The wake-ups of one connection's two directions (or of a UDP forward: `rx` only).
struct Sub {
    rx: Arc<Notify>,
    tx: Arc<Notify>,
}

/// The forwards of a hub and what their tasks share.
pub struct Forwards {
    seg: Arc<Segment<Driven>>,
    host_on: bool,
    table: Mutex<BTreeMap<(SocketAddr, Proto), Entry>>,
    subs: Mutex<HashMap<u64, Sub>>,
}

static INSTALLED: OnceLock<Arc<Forwards>> = OnceLock::new();

/// The hub's forwards, once [`start`] ran (the API reads them).
pub fn installed() -> Option<Arc<Forwards>> {
    INSTALLED.get().cloned()
}

/// Sets up the forwards of the segment `seg` (whose host is on unless
/// `--no-host`): installs the host's forward waker and starts the
/// dispatcher task. Call once, on the hub's tokio runtime.
pub fn start(seg: Arc<Segment<Driven>>, host_on: bool) -> Arc<Forwards> {
    let f = Arc::new(Forwards {
        seg: seg.clone(),
        host_on,
        table: Mutex::new(BTreeMap::new()),
        subs: Mutex::new(HashMap::new()),
    });
    let wake = Arc::new(Notify::new());
    let w = wake.clone();
    seg.with_host(|d| d.host.set_forward_waker(Box::new(move || w.notify_one())));
    tokio::spawn(dispatch(f.clone(), wake));
    let _ = INSTALLED.set(f.clone());
    f
}

/// Hands the host's forward events to the tasks they concern.
async fn dispatch(f: Arc<Forwards>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        let events = f.seg.with_host(|d| d.host.forward_mut().take_events());
        let subs = f.subs.lock().unwrap_or_else(|e| e.into_inner());
        for e in events {
            let Some(s) = subs.get(&e.id) else { continue };
            match e.kind {
                EventKind::Readable => s.rx.notify_one(),
                EventKind::Writable => s.tx.notify_one(),
                _ => {
                    s.rx.notify_one();
                    s.tx.notify_one();
                }
            }
        }
    }
}

impl Forwards {
    /// Runs `op` on the host's forwarder at the current time, then its stack,
    /// and switches the frames it sends (after the lock is released).
    fn run<R>(&self, op: impl FnOnce(&mut Forwarder, Instant) -> R) -> R {
        let (r, frames) = self.seg.with_host(|d| {
            // The clock is read under the lock, so the host's times never go back.
            let now = Instant::now();
            let r = op(d.host.forward_mut(), now);
            let mut out = Vec::new();
            d.host.forward_flush(now, &mut out);
            (r, out)
        });
        if !frames.is_empty() {
            let mut b = self.seg.batch();
            for fr in &frames {
                b.ingress(HOST_PORT, fr);
            }
        }
        r
    }

    fn subscribe(&self, id: u64, rx: Arc<Notify>, tx: Arc<Notify>) {
        self.subs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Sub { rx, tx });
    }

    fn unsubscribe(&self, id: u64) {
        self.subs.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }

    /// Starts forwarding `spec`: checks the guest address against the host's
    /// prefix, binds the local address and serves it in the background.
    /// Must run on the hub's tokio runtime.
    ///
    /// # Errors
    /// See [`ExposeError`].
    pub fn expose(self: &Arc<Self>, spec: Spec) -> Result<(), ExposeError> {
        if !self.host_on {
            return Err(ExposeError::NoHost);
        }
        if !self.seg.with_host(|d| d.host.forward_mut().reachable(spec.remote)) {
            return Err(ExposeError::Remote(spec.remote));
        }
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.contains_key(&(spec.local, spec.protocol)) {
            return Err(ExposeError::Exists(spec.local));
        }
        let listen_err = |e| ExposeError::Listen(spec.local, e);
        let task = match spec.protocol {
            Proto::Tcp => {
                let l = std::net::TcpListener::bind(spec.local).map_err(listen_err)?;
                l.set_nonblocking(true).map_err(listen_err)?;
                let l = TcpListener::from_std(l).map_err(listen_err)?;
                tokio::spawn(tcp_listener(self.clone(), l, spec.remote))
            }
            Proto::Udp => {
                let s = std::net::UdpSocket::bind(spec.local).map_err(listen_err)?;
                s.set_nonblocking(true).map_err(listen_err)?;
                let s = UdpSocket::from_std(s).map_err(listen_err)?;
                tokio::spawn(udp_forward(self.clone(), s, spec.remote))
            }
        };
        tracing::info!(protocol = spec.protocol.name(), local = %spec.local, remote = %spec.remote, "forward exposed");
        table.insert(
            (spec.local, spec.protocol),
            Entry {
                remote: spec.remote,
                task,
            },
        );
        Ok(())
    }

    /// Stops the forward listening on `local` for `protocol`: its listener is
    /// closed when this returns (new connections are refused by the machine;
    /// any still in the kernel's backlog are reset); TCP connections already
    /// relayed run on until they end; a UDP forward's flows end with it.
    /// False when there was none.
    pub async fn unexpose(&self, protocol: Proto, local: SocketAddr) -> bool {
        let e = self
            .table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(local, protocol));
        match e {
            Some(e) => {
                e.task.abort();
                // The task's future, and with it the socket, is dropped once this returns.
                let _ = e.task.await;
                tracing::info!(protocol = protocol.name(), local = %local, "forward unexposed");
                true
            }
            None => false,
        }
    }

    /// Every forward, by local address then protocol (as gvproxy sorts them).
    pub fn all(&self) -> Vec<Spec> {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(&(local, protocol), e)| Spec {
                protocol,
                local,
                remote: e.remote,
            })
            .collect()
    }
}

/// Accepts TCP clients and relays each on a task of its own. Accept errors
/// (EMFILE...) are logged and followed by a pause, never a spin.
async fn tcp_listener(f: Arc<Forwards>, l: TcpListener, remote: SocketAddrV4) {
    loop {
        match l.accept().await {
            Ok((c, from)) => {
                let _ = c.set_nodelay(true);
                tokio::spawn(tcp_conn(f.clone(), c, from, remote));
            }
            Err(e) => {
                tracing::warn!(error = %e, "forward: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Releases a connection in the host when its task ends (or is dropped).
struct ConnGuard {
    f: Arc<Forwards>,
    id: u64,
    abort: bool,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.f.unsubscribe(self.id);
        let (id, abort) = (self.id, self.abort);
        self.f.run(|fw, now| match abort {
            true => fw.tcp_abort(id),
            false => fw.tcp_release(id, now),
        });
    }
}

/// How one direction of a relayed connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Cleanly (EOF / FIN passed on).
    Clean,
    /// The guest's side refused or reset the connection: reset the client.
    GuestReset,
    /// The client's socket failed: reset the guest's connection.
    ClientFailed,
}

/// Relays one accepted client `c` (from `from`) to the guest at `remote`.
async fn tcp_conn(f: Arc<Forwards>, mut c: TcpStream, from: SocketAddr, remote: SocketAddrV4) {
    let (rx, tx) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    // Subscribed under the same lock as the connect, so no event is missed.
    let connect = f.run(|fw, now| {
        let id = fw.tcp_connect(remote, now)?;
        f.subscribe(id, rx.clone(), tx.clone());
        Ok(id)
    });
    let id = match connect {
        Ok(id) => id,
        Err(e @ (ForwardError::Full | ForwardError::NotOnSegment(_))) => {
            tracing::warn!(client = %from, remote = %remote, error = %e, "forward: connection refused");
            let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
            return;
        }
    };
    let mut guard = ConnGuard {
        f: f.clone(),
        id,
        abort: false,
    };
    let reset_client = {
        let (rd, wr) = c.split();
        let up = to_guest(&f, id, rd, &tx);
        let down = to_client(&f, id, wr, &rx);
        tokio::pin!(up, down);
        let (mut up_end, mut down_end) = (None, None);
        loop {
            tokio::select! {
                e = &mut up, if up_end.is_none() => up_end = Some(e),
                e = &mut down, if down_end.is_none() => down_end = Some(e),
            }
            if up_end == Some(End::ClientFailed) || down_end == Some(End::ClientFailed) {
                guard.abort = true;
                break false;
            }
            if up_end == Some(End::GuestReset) || down_end == Some(End::GuestReset) {
                break true;
            }
            if up_end.is_some() && down_end.is_some() {
                break false;
            }
        }
    };
    if reset_client {
        let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
    }
    tracing::debug!(client = %from, remote = %remote, id, reset_client, "forward: connection ended");
    drop(guard);
}

/// Client to guest: reads the client only while the connection's send
/// buffer has room, passes its EOF on as a FIN.
async fn to_guest(f: &Forwards, id: u64, mut rd: impl AsyncReadExt + Unpin, wake: &Notify) -> End {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let (state, space) = f.run(|fw, _| (fw.tcp_state(id), fw.tcp_send_space(id)));
        match state {
            TcpState::Refused | TcpState::Reset | TcpState::Gone => return End::GuestReset,
            TcpState::Done => return End::Clean,
            TcpState::Connecting => space_wait(wake).await,
            TcpState::Open | TcpState::PeerClosed if space == 0 => space_wait(wake).await,
            TcpState::Open | TcpState::PeerClosed => {
                tokio::select! {
                    r = rd.read(&mut buf[..space.min(CHUNK)]) => match r {
                        Ok(0) => {
                            f.run(|fw, _| fw.tcp_close(id));
                            return End::Clean;
                        }
                        Ok(n) => {
                            f.run(|fw, _| fw.tcp_send(id, &buf[..n]));
                        }
                        Err(_) => return End::ClientFailed,
                    },
                    _ = wake.notified() => {}
                }
            }
        }
    }
}

/// Waits for a wake-up, or [`RECHECK`].
async fn space_wait(wake: &Notify) {
    let _ = tokio::time::timeout(RECHECK, wake.notified()).await;
}

/// Guest to client: takes what the guest sent once the previous bytes are
/// written to the client, passes the guest's FIN on (shutting the client's
/// write half).
async fn to_client(f: &Forwards, id: u64, mut wr: impl AsyncWriteExt + Unpin, wake: &Notify) -> End {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let (n, state) = f.run(|fw, _| (fw.tcp_recv(id, &mut buf), fw.tcp_state(id)));
        if n > 0 {
            if wr.write_all(&buf[..n]).await.is_err() {
                return End::ClientFailed;
            }
            continue;
        }
        match state {
            TcpState::PeerClosed | TcpState::Done => {
                let _ = wr.shutdown().await;
                return End::Clean;
            }
            TcpState::Refused | TcpState::Reset | TcpState::Gone => return End::GuestReset,
            TcpState::Connecting | TcpState::Open => space_wait(wake).await,
        }
    }
}

/// A UDP forward's flows: one per client address. Dropping it (the forward
/// unexposed) closes them all in the host.
struct Flows {
    f: Arc<Forwards>,
    by_client: HashMap<SocketAddr, u64>,
    by_id: HashMap<u64, SocketAddr>,
}

impl Drop for Flows {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.by_id.keys().copied().collect();
        for id in &ids {
            self.f.unsubscribe(*id);
        }
        self.f.run(|fw, _| {
            for id in ids {
                fw.udp_close(id);
            }
        });
    }
}

impl Flows {
    fn forget(&mut self, id: u64) {
        if let Some(c) = self.by_id.remove(&id) {
            self.by_client.remove(&c);
        }
        self.f.unsubscribe(id);
    }
}

/// Serves one UDP forward: datagrams from clients to the guest, each client
/// on its own flow; the guest's answers back to their client.
async fn udp_forward(f: Arc<Forwards>, sock: UdpSocket, remote: SocketAddrV4) {
    let wake = Arc::new(Notify::new());
    let mut flows = Flows {
        f: f.clone(),
        by_client: HashMap::new(),
        by_id: HashMap::new(),
    };
    let mut buf = vec![0u8; 65536];
    let mut prune = tokio::time::interval(UDP_PRUNE);
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let (n, from) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!(error = %e, "forward: UDP receive failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let id = match flows.by_client.get(&from) {
                    Some(&id) => id,
                    None => match f.run(|fw, now| {
                        let id = fw.udp_open(remote, now)?;
                        f.subscribe(id, wake.clone(), wake.clone());
                        Ok::<_, ForwardError>(id)
                    }) {
                        Ok(id) => {
                            flows.by_client.insert(from, id);
                            flows.by_id.insert(id, from);
                            id
                        }
                        Err(e) => {
                            tracing::debug!(client = %from, error = %e, "forward: UDP flow refused");
                            continue;
                        }
                    },
                };
                let data = &buf[..n];
                let open = f.run(|fw, now| {
                    fw.udp_send(id, data, now);
                    fw.udp_is_open(id)
                });
                if !open {
                    flows.forget(id);
                }
            }
            _ = wake.notified() => {
                let ids: Vec<u64> = flows.by_id.keys().copied().collect();
                let (got, closed) = f.seg.with_host(|d| {
                    let fw = d.host.forward_mut();
                    let (mut got, mut closed) = (Vec::new(), Vec::new());
                    for id in ids {
                        if !fw.udp_is_open(id) {
                            closed.push(id);
                            continue;
                        }
                        while got.len() < UDP_BATCH {
                            match fw.udp_recv(id) {
                                Some(d) => got.push((id, d)),
                                None => break,
                            }
                        }
                    }
                    (got, closed)
                });
                if got.len() >= UDP_BATCH {
                    wake.notify_one();
                }
                for id in closed {
                    flows.forget(id);
                }
                for (id, d) in got {
                    if let Some(to) = flows.by_id.get(&id) {
                        let _ = sock.try_send_to(&d, *to);
                    }
                }
            }
            _ = prune.tick() => {
                let ids: Vec<u64> = flows.by_id.keys().copied().collect();
                let closed: Vec<u64> = f.seg.with_host(|d| {
                    let fw = d.host.forward_mut();
                    ids.into_iter().filter(|id| !fw.udp_is_open(*id)).collect()
                });
                for id in closed {
                    flows.forget(id);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--expose` values: protocol prefix, loopback by default, errors name the part.
    #[test]
    fn expose_values() {
        let s = parse_spec("tcp:127.0.0.1:2222=10.0.3.5:22").unwrap();
        assert_eq!(
            (s.protocol, s.local, s.remote),
            (
                Proto::Tcp,
                "127.0.0.1:2222".parse().unwrap(),
                "10.0.3.5:22".parse().unwrap()
            )
        );
        let s = parse_spec("udp:[::1]:5353=10.0.3.5:53").unwrap();
        assert_eq!((s.protocol, s.local), (Proto::Udp, "[::1]:5353".parse().unwrap()));
        let s = parse_spec("8080=10.0.3.5:80").unwrap();
        assert_eq!((s.protocol, s.local), (Proto::Tcp, "127.0.0.1:8080".parse().unwrap()));
        assert!(parse_spec("tcp:127.0.0.1:2222").unwrap_err().contains("GUEST_IP:PORT"));
        assert!(parse_spec("127.0.0.1:0=10.0.3.5:22").unwrap_err().contains("port 0"));
        assert!(parse_spec("127.0.0.1:22=10.0.3.5").unwrap_err().contains("IPV4:PORT"));
        assert!(parse_spec("127.0.0.1:22=[fd00::5]:22")
            .unwrap_err()
            .contains("IPV4:PORT"));
        assert!(parse_spec("sctp:127.0.0.1:22=10.0.3.5:22").is_err());
    }
}
