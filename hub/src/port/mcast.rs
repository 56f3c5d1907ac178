//! The multicast port: joins the UDP multicast group of QEMU's
//! `-netdev socket,mcast=GROUP:PORT,localaddr=127.0.0.1` and
//! `-netdev dgram,remote.type=inet,remote.host=GROUP` (QEMU net/socket.c
//! `net_socket_mcast_create`, net/dgram.c).
//!
//! Framing: one Ethernet frame per datagram, no length prefix. Every QEMU on the
//! host sends from the same GROUP:PORT, so peers are told apart only by the
//! frame's source MAC: the whole group is one switch port, and the switch
//! learns every guest's MAC on it. QEMU also receives its own frames back, and
//! so would we: the hub sends from a second, non-member socket bound to
//! 127.0.0.1 with an ephemeral port, and drops any datagram whose source is
//! that address (our echo), so the switch never re-learns a MAC on the wrong
//! port. A zero-length datagram stops QEMU's receive for good; the segment never
//! sends a frame under 14 bytes.
//!
//! Safety: the group is joined on the loopback interface only (membership and
//! IP_MULTICAST_IF on 127.0.0.1), IP_MULTICAST_ALL is off, and the hub sends
//! with multicast TTL 0, so nothing the hub sends can leave the host.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket as StdUdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use nix::sys::socket::SockaddrIn;
use tokio::io::Interest;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::segment::{DatagramTx, Egress, LocalHost, Segment};
use crate::sys::mmsg::{RecvBatch, SendBatch};
use crate::sys::retry::Pacer;

/// The loopback address every multicast socket of the hub is tied to.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// An open multicast port, ready to [`McastPort::run`].
pub struct McastPort {
    rx: UdpSocket,
    tx: McastTx,
    echo_src: SocketAddr,
    group: SocketAddrV4,
}

/// The transmit half: a non-member socket that sends to the group with TTL 0.
struct McastTx {
    sock: StdUdpSocket,
    group: SockaddrIn,
    batch: SendBatch<SockaddrIn>,
}

impl DatagramTx for McastTx {
    fn send_batch(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        self.batch.send(self.sock.as_raw_fd(), frames, Some(self.group))
    }
}

/// Opens the port for `group` (an IPv4 multicast address and UDP port).
/// Must be called inside a tokio runtime.
///
/// # Errors
/// `InvalidInput` if `group` is not a multicast address; the socket error if
/// binding or joining fails (for example no multicast route on `lo`:
/// `ip link set lo multicast on; ip route add 224.0.0.0/4 dev lo`).
pub fn open(group: SocketAddrV4) -> io::Result<McastPort> {
    if !group.ip().is_multicast() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not an IPv4 multicast address (224.0.0.0/4)", group.ip()),
        ));
    }
    // Receive: bound to GROUP:PORT with SO_REUSEADDR, as QEMU binds, so both share the port.
    let rx = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    rx.set_reuse_address(true)?;
    rx.bind(&SocketAddr::V4(group).into())?;
    rx.join_multicast_v4(group.ip(), &LOOPBACK)?;
    rx.set_multicast_all_v4(false)?;
    rx.set_recv_buffer_size(4 << 20)?;
    rx.set_nonblocking(true)?;
    let rx = UdpSocket::from_std(rx.into())?;

    // Transmit: not a member, loopback only, TTL 0, loop on so local QEMUs hear it.
    let tx = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    tx.set_multicast_if_v4(&LOOPBACK)?;
    tx.set_multicast_ttl_v4(0)?;
    tx.set_multicast_loop_v4(true)?;
    tx.set_multicast_all_v4(false)?;
    tx.set_send_buffer_size(4 << 20)?;
    tx.bind(&SocketAddr::V4(SocketAddrV4::new(LOOPBACK, 0)).into())?;
    tx.set_nonblocking(true)?;
    let tx: StdUdpSocket = tx.into();
    let echo_src = tx.local_addr()?;
    Ok(McastPort {
        rx,
        tx: McastTx {
            sock: tx,
            group: SockaddrIn::from(group),
            batch: SendBatch::new(),
        },
        echo_src,
        group,
    })
}

impl McastPort {
    /// Adds the group to `segment` as one port and switches every datagram
    /// received, up to [`RECV_BATCH`](crate::sys::mmsg::RECV_BATCH) per `recvmmsg` and lock. Our own echoes are
    /// counted as drops and never switched.
    ///
    /// Transient receive errors (EINTR, EAGAIN, ECONNREFUSED) are skipped;
    /// any other is logged, rate limited, and followed by a backoff from 1 ms
    /// doubling to 1 s ([`crate::sys::retry`]), so the port never spins nor stops.
    ///
    /// # Errors
    /// None: it returns only when its task is dropped (the hub's shutdown).
    pub async fn run<H: LocalHost>(self, segment: Arc<Segment<H>>) -> io::Result<()> {
        let (id, _) = segment.add_port(format!("mcast:{}", self.group), Egress::Datagram(Box::new(self.tx)));
        let mut rb: RecvBatch<SockaddrIn> = RecvBatch::new();
        let fd = self.rx.as_raw_fd();
        let echo = match self.echo_src {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!("bound to 127.0.0.1"),
        };
        let at = format!("mcast:{}", self.group);
        let mut pacer = Pacer::new("receiving from the multicast group");
        loop {
            let received = match self.rx.readable().await {
                Ok(()) => self.rx.try_io(Interest::READABLE, || rb.recv(fd)),
                Err(e) => Err(e),
            };
            let Some(n) = pacer.settle(&at, received).await else {
                continue;
            };
            let mut batch = segment.batch();
            let mut dropped = 0;
            for i in 0..n {
                let (bytes, meta) = rb.get(i);
                let from = meta.from.map(SocketAddrV4::from);
                if from == Some(echo) || meta.truncated {
                    dropped += 1;
                } else {
                    batch.ingress(id, bytes);
                }
            }
            batch.count_drop(id, dropped);
        }
    }
}
