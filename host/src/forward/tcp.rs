//! Forwarded TCP connections (RFC 9293) from the host's address to a guest:
//! one smoltcp socket each, opened with [`Forwarder::tcp_connect`], bytes
//! moved with [`Forwarder::tcp_send`] and [`Forwarder::tcp_recv`] within the
//! socket's buffers (flow control: what does not fit waits on the driver's
//! side), ended with [`Forwarder::tcp_close`] (FIN), [`Forwarder::tcp_abort`]
//! (RST) and [`Forwarder::tcp_release`].

use std::net::SocketAddrV4;
use std::time::Instant;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{Socket, SocketBuffer, State};

use super::{
    on_segment, EventKind, ForwardError, ForwardStats, Forwarder, Owner, ACK_TIMEOUT, BUF, CONNECT_TIMEOUT, KEEPALIVE,
    TCP_MAX,
};

/// A forwarded connection's state, as the driver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    /// SYN sent, no answer yet.
    Connecting,
    /// Established; bytes may flow both ways (or one, after a close of ours).
    Open,
    /// The guest closed its half (FIN) and every byte it sent was read:
    /// shut the machine-side client's write half.
    PeerClosed,
    /// Ended cleanly both ways.
    Done,
    /// Never established: refused by the guest (RST) or timed out.
    Refused,
    /// Ended by a RST from the guest, or a timeout, after it was established.
    Reset,
    /// No such connection (released, or never opened).
    Gone,
}

/// One connection's bookkeeping next to its smoltcp socket.
pub(super) struct Conn {
    pub(super) handle: SocketHandle,
    port: u16,
    opened: Instant,
    established: bool,
    fin_received: bool,
    closed_by_us: bool,
    aborted: bool,
    /// Set by [`Forwarder::tcp_release`]: the driver is done; the socket goes when closed.
    released: Option<Instant>,
    /// What the last look saw, for the events: bytes waiting, bytes unacknowledged.
    rx_seen: usize,
    tx_seen: usize,
    peer_closed_told: bool,
    end_told: bool,
}

impl Conn {
    /// The events for what changed since the last look at socket `s`, at `now`.
    pub(super) fn observe(&mut self, s: &Socket, _now: Instant, stats: &mut ForwardStats) -> Vec<EventKind> {
        let mut ev = Vec::new();
        let state = s.state();
        if !self.established && !matches!(state, State::SynSent | State::Closed | State::Listen) {
            self.established = true;
            ev.push(EventKind::Connected);
        }
        if matches!(
            state,
            State::CloseWait | State::LastAck | State::Closing | State::TimeWait
        ) {
            self.fin_received = true;
        }
        let (rx, tx) = (s.recv_queue(), s.send_queue());
        if rx > self.rx_seen {
            ev.push(EventKind::Readable);
        }
        if tx < self.tx_seen {
            ev.push(EventKind::Writable);
        }
        self.rx_seen = rx;
        self.tx_seen = tx;
        if self.fin_received && rx == 0 && !self.peer_closed_told {
            self.peer_closed_told = true;
            ev.push(EventKind::Closed);
        }
        if state == State::Closed && !self.end_told && !self.aborted {
            self.end_told = true;
            if !self.established {
                stats.tcp_refused += 1;
                ev.push(EventKind::Refused);
            } else if !(self.fin_received && self.closed_by_us) {
                stats.tcp_reset += 1;
                ev.push(EventKind::Reset);
            }
        }
        ev
    }

    /// The state the driver sees.
    fn state(&self, s: &Socket) -> TcpState {
        match s.state() {
            State::SynSent => TcpState::Connecting,
            State::Closed | State::TimeWait if !self.established => TcpState::Refused,
            State::Closed | State::TimeWait if self.fin_received && self.closed_by_us => TcpState::Done,
            State::Closed | State::TimeWait => TcpState::Reset,
            _ if self.fin_received && s.recv_queue() == 0 => TcpState::PeerClosed,
            _ => TcpState::Open,
        }
    }

    /// Aborts at `now` what waited too long: a SYN unanswered for
    /// [`CONNECT_TIMEOUT`], a released connection still not closed
    /// [`ACK_TIMEOUT`] after its release.
    pub(super) fn timeouts(&mut self, s: &mut Socket, now: Instant) {
        let late_syn = !self.established && now.saturating_duration_since(self.opened) >= CONNECT_TIMEOUT;
        let late_close = self
            .released
            .is_some_and(|r| now.saturating_duration_since(r) >= ACK_TIMEOUT);
        if (late_syn || late_close) && s.state() != State::Closed {
            s.abort();
        }
    }

    /// When [`Conn::timeouts`] next has something to do: the connect deadline
    /// while not established, the close deadline once released.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match (self.established, self.released) {
            (false, _) => Some(self.opened + CONNECT_TIMEOUT),
            (true, Some(r)) => Some(r + ACK_TIMEOUT),
            (true, None) => None,
        }
    }

    /// Whether the socket can go: released by the driver and closed (or in TIME-WAIT).
    pub(super) fn finished(&self, s: &Socket) -> bool {
        self.released.is_some() && matches!(s.state(), State::Closed | State::TimeWait)
    }
}

impl Forwarder {
    /// Opens a TCP connection from the host's address and a free ephemeral
    /// port to the guest at `remote`, at `now`: the SYN (after an ARP
    /// request if the guest's MAC is not known) goes out on the next
    /// [`Forwarder::poll`]. Returns the connection's id (never 0, never
    /// reused); its progress comes as events ([`EventKind::Connected`] or
    /// [`EventKind::Refused`]).
    ///
    /// # Errors
    /// [`ForwardError::NotOnSegment`] when `remote` is outside the `--addr`
    /// prefix; [`ForwardError::Full`] at [`TCP_MAX`] connections (counted).
    pub fn tcp_connect(&mut self, remote: SocketAddrV4, now: Instant) -> Result<u64, ForwardError> {
        if !on_segment(self.net, remote) {
            return Err(ForwardError::NotOnSegment(remote));
        }
        let id = self.new_id();
        let port = match (self.tcp.len() < TCP_MAX)
            .then(|| self.take_port(Owner::Tcp(id)))
            .flatten()
        {
            Some(p) => p,
            None => {
                self.stats.full += 1;
                return Err(ForwardError::Full);
            }
        };
        let mut s = Socket::new(SocketBuffer::new(vec![0; BUF]), SocketBuffer::new(vec![0; BUF]));
        s.set_nagle_enabled(false);
        s.set_timeout(Some(smoltcp::time::Duration::from_secs(ACK_TIMEOUT.as_secs())));
        s.set_keep_alive(Some(smoltcp::time::Duration::from_secs(KEEPALIVE.as_secs())));
        let local = (smoltcp::wire::IpAddress::Ipv4(self.ip), port);
        let remote_ep = (smoltcp::wire::IpAddress::Ipv4(*remote.ip()), remote.port());
        if s.connect(self.iface.context(), remote_ep, local).is_err() {
            self.ports.remove(&port);
            return Err(ForwardError::NotOnSegment(remote));
        }
        let handle = self.sockets.add(s);
        self.tcp.insert(
            id,
            Conn {
                handle,
                port,
                opened: now,
                established: false,
                fin_received: false,
                closed_by_us: false,
                aborted: false,
                released: None,
                rx_seen: 0,
                tx_seen: 0,
                peer_closed_told: false,
                end_told: false,
            },
        );
        self.stats.tcp_opened += 1;
        Ok(id)
    }

    /// The state of connection `id` ([`TcpState::Gone`] when there is none).
    pub fn tcp_state(&self, id: u64) -> TcpState {
        match self.tcp.get(&id) {
            Some(c) => c.state(self.sockets.get::<Socket>(c.handle)),
            None => TcpState::Gone,
        }
    }

    /// How many bytes [`Forwarder::tcp_send`] takes now on connection `id`:
    /// the free part of its send buffer while the connection may send, else 0.
    pub fn tcp_send_space(&self, id: u64) -> usize {
        let Some(c) = self.tcp.get(&id) else { return 0 };
        let s = self.sockets.get::<Socket>(c.handle);
        match s.may_send() || s.state() == State::SynSent {
            true => s.send_capacity() - s.send_queue(),
            false => 0,
        }
    }

    /// Queues up to [`Forwarder::tcp_send_space`] bytes of `data` for the
    /// guest on connection `id` (sent on the next [`Forwarder::poll`]);
    /// returns how many were taken (0 when the connection is gone or closing).
    pub fn tcp_send(&mut self, id: u64, data: &[u8]) -> usize {
        let Some(c) = self.tcp.get_mut(&id) else { return 0 };
        let s = self.sockets.get_mut::<Socket>(c.handle);
        let n = s.send_slice(data).unwrap_or(0);
        c.tx_seen = s.send_queue();
        self.stats.tcp_bytes_out += n as u64;
        n
    }

    /// Moves up to `buf.len()` bytes the guest sent on connection `id` into
    /// `buf`; returns how many (0: none waiting, or no such connection). Run
    /// [`Forwarder::poll`] afterwards so a window that opened is announced.
    pub fn tcp_recv(&mut self, id: u64, buf: &mut [u8]) -> usize {
        let Some(c) = self.tcp.get_mut(&id) else { return 0 };
        let s = self.sockets.get_mut::<Socket>(c.handle);
        let n = s.recv_slice(buf).unwrap_or(0);
        c.rx_seen = s.recv_queue();
        self.stats.tcp_bytes_in += n as u64;
        n
    }

    /// Closes the host's half of connection `id` (a FIN after the bytes
    /// queued): the machine-side client sent all it will.
    pub fn tcp_close(&mut self, id: u64) {
        if let Some(c) = self.tcp.get_mut(&id) {
            c.closed_by_us = true;
            self.sockets.get_mut::<Socket>(c.handle).close();
        }
    }

    /// Aborts connection `id` with a RST (the machine-side client went away
    /// without a clean close) and releases it.
    pub fn tcp_abort(&mut self, id: u64) {
        if let Some(c) = self.tcp.get_mut(&id) {
            c.aborted = true;
            c.released.get_or_insert(self.last_poll);
            self.sockets.get_mut::<Socket>(c.handle).abort();
        }
    }

    /// The driver is done with connection `id` at `now`: a connection still
    /// open is closed (FIN); its socket and port go once it is closed (or
    /// [`ACK_TIMEOUT`] later, with a RST).
    pub fn tcp_release(&mut self, id: u64, now: Instant) {
        let Some(c) = self.tcp.get_mut(&id) else { return };
        c.released.get_or_insert(now);
        let s = self.sockets.get_mut::<Socket>(c.handle);
        if !c.closed_by_us && !matches!(s.state(), State::Closed | State::TimeWait) {
            c.closed_by_us = true;
            s.close();
        }
    }

    /// Forgets connection `id`: its socket and port are freed.
    pub(super) fn drop_tcp(&mut self, id: u64) {
        if let Some(c) = self.tcp.remove(&id) {
            self.sockets.remove(c.handle);
            self.ports.remove(&c.port);
        }
    }
}
