//! Forwarded UDP flows (RFC 768): one per machine-side client, each a
//! smoltcp UDP socket bound to its own ephemeral port of the host's address,
//! so the guest's replies find their client. Datagrams the guest sends from
//! another address or port are dropped; a flow silent both ways for
//! [`UDP_IDLE`](super::UDP_IDLE) is closed (an [`EventKind::Closed`](super::EventKind::Closed) event).

use std::net::SocketAddrV4;
use std::time::Instant;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp::{PacketBuffer, PacketMetadata, Socket};
use smoltcp::wire::{IpAddress, IpEndpoint};

use super::{on_segment, ForwardError, Forwarder, Owner, BUF, UDP_MAX, UDP_PACKETS};

/// The largest datagram sent to a guest, in bytes: the segment's 1500-byte
/// IP MTU less the IPv4 and UDP headers (RFC 791, RFC 768); longer ones are
/// dropped and counted, never fragmented.
pub const UDP_MAX_PAYLOAD: usize = 1472;

/// One flow's bookkeeping next to its smoltcp socket.
pub(super) struct Flow {
    pub(super) handle: SocketHandle,
    port: u16,
    remote: IpEndpoint,
    /// The last datagram either way.
    pub(super) last: Instant,
    /// Bytes waiting at the last look, for the events.
    rx_seen: usize,
}

impl Flow {
    /// Whether datagrams arrived since the last look at `s` (then the flow is live at `now`).
    pub(super) fn observe(&mut self, s: &Socket, now: Instant) -> bool {
        let rx = s.recv_queue();
        let more = rx > self.rx_seen;
        if more {
            self.last = now;
        }
        self.rx_seen = rx;
        more
    }
}

impl Forwarder {
    /// Opens a UDP flow from the host's address and a free ephemeral port to
    /// the guest at `remote`, at `now`; returns its id (never 0, never reused).
    ///
    /// # Errors
    /// [`ForwardError::NotOnSegment`] when `remote` is outside the `--addr`
    /// prefix; [`ForwardError::Full`] at [`UDP_MAX`] flows (counted).
    pub fn udp_open(&mut self, remote: SocketAddrV4, now: Instant) -> Result<u64, ForwardError> {
        if !on_segment(self.net, remote) {
            return Err(ForwardError::NotOnSegment(remote));
        }
        let id = self.new_id();
        let port = match (self.udp.len() < UDP_MAX)
            .then(|| self.take_port(Owner::Udp(id)))
            .flatten()
        {
            Some(p) => p,
            None => {
                self.stats.full += 1;
                return Err(ForwardError::Full);
            }
        };
        let buf = || PacketBuffer::new(vec![PacketMetadata::EMPTY; UDP_PACKETS], vec![0; BUF]);
        let mut s = Socket::new(buf(), buf());
        if s.bind((IpAddress::Ipv4(self.ip), port)).is_err() {
            self.ports.remove(&port);
            return Err(ForwardError::NotOnSegment(remote));
        }
        let handle = self.sockets.add(s);
        self.udp.insert(
            id,
            Flow {
                handle,
                port,
                remote: IpEndpoint::new(IpAddress::Ipv4(*remote.ip()), remote.port()),
                last: now,
                rx_seen: 0,
            },
        );
        self.stats.udp_opened += 1;
        Ok(id)
    }

    /// Queues the datagram `data` for the guest on flow `id` at `now` (sent
    /// on the next [`Forwarder::poll`]). False, counted, when the flow's send
    /// queue is full or `data` is over [`UDP_MAX_PAYLOAD`] bytes (the host
    /// does not fragment); false when there is no such flow.
    pub fn udp_send(&mut self, id: u64, data: &[u8], now: Instant) -> bool {
        let Some(f) = self.udp.get_mut(&id) else { return false };
        let s = self.sockets.get_mut::<Socket>(f.handle);
        if data.len() > UDP_MAX_PAYLOAD || s.send_slice(data, f.remote).is_err() {
            self.stats.udp_dropped += 1;
            return false;
        }
        f.last = now;
        self.stats.udp_sent += 1;
        true
    }

    /// The next datagram the guest sent on flow `id` (from the flow's remote
    /// address and port; others are dropped), or `None`.
    pub fn udp_recv(&mut self, id: u64) -> Option<Vec<u8>> {
        let f = self.udp.get_mut(&id)?;
        let s = self.sockets.get_mut::<Socket>(f.handle);
        let got = loop {
            match s.recv() {
                Ok((d, meta)) if meta.endpoint == f.remote => break Some(d.to_vec()),
                Ok(_) => self.stats.udp_dropped += 1,
                Err(_) => break None,
            }
        };
        f.rx_seen = s.recv_queue();
        if got.is_some() {
            self.stats.udp_received += 1;
        }
        got
    }

    /// Whether flow `id` is open.
    pub fn udp_is_open(&self, id: u64) -> bool {
        self.udp.contains_key(&id)
    }

    /// Closes flow `id`: its socket and port are freed at once (datagrams not yet sent are dropped).
    pub fn udp_close(&mut self, id: u64) {
        if let Some(f) = self.udp.remove(&id) {
            self.sockets.remove(f.handle);
            self.ports.remove(&f.port);
        }
    }
}
