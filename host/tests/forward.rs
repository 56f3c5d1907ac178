//! The port forwarder's segment half (host/src/forward, `--expose`), driven
//! with frames through `Host::handle_frame`: the guest is a second smoltcp
//! stack (its own MAC and address on 10.0.3.0/24) wired to the host frame by
//! frame on a fake clock. Checked: the ARP exchange (one reply from the
//! host, never a second from the forwarder), a TCP connection's events,
//! bytes both ways with flow control (the host never holds more than its
//! window), FINs both ways, a RST for a port without a listener (refused),
//! guests outside the prefix refused, the cap on connections, a UDP flow's
//! echo and its idle timeout, and sockets and ports freed at the end.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};
use vmlan_host::config::parse_addr;
use vmlan_host::forward::{EventKind, ForwardError, TcpState, BUF, UDP_IDLE};
use vmlan_host::leases::LeaseDb;
use vmlan_host::{Host, HostConfig};

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 5];
const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 5);

#[derive(Default)]
struct Wire {
    rx: Vec<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut v = vec![0; len];
        let r = f(&mut v);
        self.0.push(v);
        r
    }
}

impl Device for Wire {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;
    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(Rx, Tx<'_>)> {
        if self.rx.is_empty() {
            return None;
        }
        let f = self.rx.remove(0);
        Some((Rx(f), Tx(&mut self.tx)))
    }
    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c
    }
}

/// The guest: a smoltcp stack at 10.0.3.5/24.
struct Guest {
    iface: Interface,
    wire: Wire,
    sockets: SocketSet<'static>,
}

/// The host, the guest, and the fake clock between them.
struct Lab {
    host: Host,
    guest: Guest,
    start: Instant,
    now: Instant,
    /// Every frame the host sent, for the checks.
    host_sent: Vec<Vec<u8>>,
}

impl Lab {
    fn new() -> Lab {
        let start = Instant::now();
        let cfg = HostConfig::new(parse_addr("10.0.3.1/24").unwrap());
        cfg.validate().unwrap();
        let host = Host::new(&cfg, LeaseDb::in_memory(), start, 1_000_000);
        let mut wire = Wire::default();
        let config = Config::new(HardwareAddress::Ethernet(EthernetAddress(GUEST_MAC)));
        let mut iface = Interface::new(config, &mut wire, smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::Ipv4(GUEST), 24)).unwrap();
        });
        Lab {
            host,
            guest: Guest {
                iface,
                wire,
                sockets: SocketSet::new(vec![]),
            },
            start,
            now: start,
            host_sent: vec![],
        }
    }

    /// A listening socket on the guest with a receive buffer of `rx` bytes.
    fn guest_listen(&mut self, port: u16, rx: usize) -> SocketHandle {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; rx]),
            tcp::SocketBuffer::new(vec![0; 1 << 20]),
        );
        s.listen(port).unwrap();
        self.guest.sockets.add(s)
    }

    fn guest_tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
        self.guest.sockets.get_mut::<tcp::Socket>(h)
    }

    fn smol(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros((self.now - self.start).as_micros() as i64)
    }

    /// Flushes the host's forwarder (the driver's part after an operation),
    /// then moves frames both ways until both sides are quiet (bounded).
    fn pump(&mut self) {
        let mut out = vec![];
        self.host.forward_flush(self.now, &mut out);
        for _ in 0..10_000 {
            self.host_sent.extend(out.iter().cloned());
            for f in out.drain(..) {
                if f[0..6] == GUEST_MAC || f[0] & 1 == 1 {
                    self.guest.wire.rx.push(f);
                }
            }
            let t = self.smol();
            self.guest.iface.poll(t, &mut self.guest.wire, &mut self.guest.sockets);
            let sent: Vec<_> = self.guest.wire.tx.drain(..).collect();
            if sent.is_empty() {
                return;
            }
            for f in sent {
                self.host.handle_frame(self.now, &f, &mut out);
            }
        }
        panic!("the frames never stopped");
    }

    /// Advances the clock by `d`, runs the host's timers due, and pumps.
    fn advance(&mut self, d: Duration) {
        self.now += d;
        if self.host.poll_timeout().is_some_and(|t| t <= self.now) {
            let mut out = vec![];
            self.host.handle_timeout(self.now, &mut out);
            self.host_sent.extend(out.iter().cloned());
            for f in out {
                self.guest.wire.rx.push(f);
            }
        }
        self.pump();
    }

    fn events(&mut self) -> Vec<(u64, EventKind)> {
        self.host
            .forward_mut()
            .take_events()
            .into_iter()
            .map(|e| (e.id, e.kind))
            .collect()
    }
}

fn remote(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(GUEST, port)
}

/// A connection to the guest's listener: ARP once, SYN, events, bytes both
/// ways under flow control, FIN both ways, the socket and port freed.
#[test]
fn tcp_connection_relays_both_ways() {
    let mut lab = Lab::new();
    let lh = lab.guest_listen(80, 16 * 1024);
    let id = lab.host.forward_mut().tcp_connect(remote(80), lab.now).unwrap();
    assert_eq!(lab.host.forward_mut().tcp_state(id), TcpState::Connecting);
    lab.pump();
    // The forwarder asked for the guest's MAC with ARP; the guest's ARP
    // request for the host (if any) got exactly one reply.
    let arp_requests = lab
        .host_sent
        .iter()
        .filter(|f| f[12..14] == [8, 6] && f[20..22] == [0, 1])
        .count();
    assert_eq!(arp_requests, 1, "one ARP request from the forwarder");
    let arp_replies = lab
        .host_sent
        .iter()
        .filter(|f| f[12..14] == [8, 6] && f[20..22] == [0, 2])
        .count();
    assert!(arp_replies <= 1, "the forwarder never answers ARP itself");
    assert!(lab.events().contains(&(id, EventKind::Connected)));
    assert_eq!(lab.host.forward_mut().tcp_state(id), TcpState::Open);
    assert!(lab.guest_tcp(lh).is_active());

    // Host to guest.
    let n = lab.host.forward_mut().tcp_send(id, b"hello guest");
    assert_eq!(n, 11);
    lab.pump();
    let mut buf = vec![0u8; 64];
    let got = lab.guest_tcp(lh).recv_slice(&mut buf).unwrap();
    assert_eq!(&buf[..got], b"hello guest");

    // Guest to host: 300 KB; the host holds at most its window until read.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(lab.guest_tcp(lh).send_slice(&data).unwrap(), data.len());
    let mut got = Vec::new();
    let mut readable = 0;
    for _ in 0..1000 {
        lab.pump();
        if lab.events().contains(&(id, EventKind::Readable)) {
            readable += 1;
        }
        let mut chunk = vec![0u8; 2 * BUF];
        let n = lab.host.forward_mut().tcp_recv(id, &mut chunk);
        assert!(n <= BUF, "the host held {n} bytes, over its {BUF}-byte window");
        got.extend_from_slice(&chunk[..n]);
        if got.len() == data.len() {
            break;
        }
        lab.advance(Duration::from_millis(5));
    }
    assert_eq!(got.len(), data.len());
    assert!(got == data, "the bytes arrived in order, unchanged");
    assert!(readable > 0, "readable events");

    // The host's send buffer fills while the guest does not read: space runs out at BUF.
    let lots = vec![0x5au8; 3 * BUF];
    let mut queued = 0;
    for _ in 0..10 {
        let space = lab.host.forward_mut().tcp_send_space(id);
        queued += lab.host.forward_mut().tcp_send(id, &lots[..space]);
        lab.pump();
    }
    let in_guest = lab.guest_tcp(lh).recv_queue();
    assert_eq!(lab.host.forward_mut().tcp_send_space(id), 0, "the send buffer is full");
    assert!(queued <= in_guest + BUF, "queued {queued}, guest has {in_guest}");
    let mut sink = vec![0u8; 1 << 20];
    let drained = lab.guest_tcp(lh).recv_slice(&mut sink).unwrap();
    assert_eq!(drained, in_guest);
    lab.advance(Duration::from_millis(300));
    assert!(
        lab.events().contains(&(id, EventKind::Writable)),
        "space freed: writable"
    );

    // The guest closes: PeerClosed, then the host closes: Done, and the socket goes.
    lab.guest_tcp(lh).close();
    for _ in 0..50 {
        lab.advance(Duration::from_millis(100));
        let mut sink = vec![0u8; 1 << 20];
        let _ = lab.guest_tcp(lh).recv_slice(&mut sink);
        if lab.host.forward_mut().tcp_state(id) == TcpState::PeerClosed {
            break;
        }
    }
    assert_eq!(lab.host.forward_mut().tcp_state(id), TcpState::PeerClosed);
    assert!(lab.events().contains(&(id, EventKind::Closed)));
    lab.host.forward_mut().tcp_close(id);
    for _ in 0..50 {
        lab.advance(Duration::from_millis(100));
        let mut sink = vec![0u8; 1 << 20];
        let _ = lab.guest_tcp(lh).recv_slice(&mut sink);
    }
    assert_eq!(lab.host.forward_mut().tcp_state(id), TcpState::Done);
    lab.host.forward_mut().tcp_release(id, lab.now);
    lab.advance(Duration::from_millis(300));
    assert_eq!(lab.host.forward_mut().open(), (0, 0), "the socket and port are freed");
    assert_eq!(lab.host.forward_mut().tcp_state(id), TcpState::Gone);
    let s = lab.host.forward_mut().stats();
    assert_eq!((s.tcp_opened, s.tcp_refused, s.tcp_reset), (1, 0, 0));
}

/// No listener on the guest's port: its RST makes the connection refused at
/// once; a RST on an established connection makes it reset.
#[test]
fn refused_and_reset() {
    let mut lab = Lab::new();
    let id = lab.host.forward_mut().tcp_connect(remote(81), lab.now).unwrap();
    lab.pump();
    assert_eq!(lab.host.forward_mut().tcp_state(id), TcpState::Refused);
    assert!(lab.events().contains(&(id, EventKind::Refused)));
    assert_eq!(lab.host.forward_mut().stats().tcp_refused, 1);
    lab.host.forward_mut().tcp_release(id, lab.now);

    let lh = lab.guest_listen(80, 1 << 20);
    let id = lab.host.forward_mut().tcp_connect(remote(80), lab.now).unwrap();
    lab.pump();
    assert_eq!(lab.host.forward_mut().tcp_state(id), TcpState::Open);
    lab.guest_tcp(lh).abort();
    lab.pump();
    assert_eq!(lab.host.forward_mut().tcp_state(id), TcpState::Reset);
    assert!(lab.events().contains(&(id, EventKind::Reset)));
    lab.host.forward_mut().tcp_release(id, lab.now);
    lab.advance(Duration::from_millis(300));
    assert_eq!(lab.host.forward_mut().open(), (0, 0));
}

/// A guest that never answers: the SYN is aborted after the connect timeout (refused).
#[test]
fn silent_guest_times_out() {
    let mut lab = Lab::new();
    let id = lab
        .host
        .forward_mut()
        .tcp_connect(SocketAddrV4::new(Ipv4Addr::new(10, 0, 3, 77), 80), lab.now)
        .unwrap();
    for _ in 0..60 {
        lab.advance(Duration::from_millis(250));
    }
    assert_eq!(lab.host.forward_mut().tcp_state(id), TcpState::Refused);
    assert!(lab.events().contains(&(id, EventKind::Refused)));
}

/// Only guests inside the --addr prefix are reached (not the host itself,
/// the network or the broadcast address, not port 0).
#[test]
fn remote_outside_the_prefix_is_refused() {
    let mut lab = Lab::new();
    let now = lab.now;
    let fw = lab.host.forward_mut();
    for bad in [
        "10.9.9.9:80",
        "10.0.3.1:80",
        "10.0.3.0:80",
        "10.0.3.255:80",
        "10.0.3.5:0",
    ] {
        let r: SocketAddrV4 = bad.parse().unwrap();
        assert_eq!(fw.tcp_connect(r, now), Err(ForwardError::NotOnSegment(r)), "{bad}");
        assert_eq!(fw.udp_open(r, now), Err(ForwardError::NotOnSegment(r)), "{bad}");
        assert!(!fw.reachable(r));
    }
    assert_eq!(fw.open(), (0, 0));
}

/// The cap on connections: past it, Full (counted); a released slot is usable again.
#[test]
fn connection_cap() {
    let mut lab = Lab::new();
    let now = lab.now;
    let fw = lab.host.forward_mut();
    let ids: Vec<u64> = (0..vmlan_host::forward::TCP_MAX)
        .map(|_| fw.tcp_connect(remote(80), now).unwrap())
        .collect();
    assert_eq!(fw.tcp_connect(remote(80), now), Err(ForwardError::Full));
    assert_eq!(fw.stats().full, 1);
    fw.tcp_abort(ids[0]);
    let mut out = vec![];
    lab.host.forward_flush(now, &mut out);
    assert!(lab.host.forward_mut().tcp_connect(remote(80), now).is_ok());
}

/// A UDP flow: the datagram reaches the guest from the host's address and
/// the flow's port, the guest's answer comes back as a readable event;
/// datagrams from another guest port are dropped; the flow ends after UDP_IDLE.
#[test]
fn udp_flow_echo_and_idle() {
    let mut lab = Lab::new();
    let mut s = udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 8192]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 8192]),
    );
    s.bind(7).unwrap();
    let gh = lab.guest.sockets.add(s);
    let id = lab.host.forward_mut().udp_open(remote(7), lab.now).unwrap();
    assert!(lab.host.forward_mut().udp_send(id, b"ping", lab.now));
    lab.pump();
    let (data, meta) = {
        let s = lab.guest.sockets.get_mut::<udp::Socket>(gh);
        let (d, m) = s.recv().unwrap();
        (d.to_vec(), m)
    };
    assert_eq!(data, b"ping");
    assert_eq!(meta.endpoint.addr, IpAddress::Ipv4(Ipv4Addr::new(10, 0, 3, 1)));
    assert!((49152..=65535).contains(&meta.endpoint.port));
    lab.guest
        .sockets
        .get_mut::<udp::Socket>(gh)
        .send_slice(b"pong", meta.endpoint)
        .unwrap();
    lab.pump();
    assert!(lab.events().contains(&(id, EventKind::Readable)));
    assert_eq!(lab.host.forward_mut().udp_recv(id).as_deref(), Some(&b"pong"[..]));
    assert_eq!(lab.host.forward_mut().udp_recv(id), None);

    // From another port of the guest: dropped.
    let mut other = udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 8192]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 8192]),
    );
    other.bind(8).unwrap();
    other.send_slice(b"stranger", meta.endpoint).unwrap();
    lab.guest.sockets.add(other);
    lab.pump();
    assert_eq!(lab.host.forward_mut().udp_recv(id), None);
    // Over the MTU: dropped (never fragmented), the flow goes on.
    let now = lab.now;
    assert!(!lab.host.forward_mut().udp_send(id, &[0u8; 1473], now));
    assert!(lab.host.forward_mut().udp_send(id, &[7u8; 1472], now));
    lab.pump();
    let got = lab
        .guest
        .sockets
        .get_mut::<udp::Socket>(gh)
        .recv()
        .map(|(d, _)| d.len());
    assert_eq!(got, Ok(1472));
    let s = lab.host.forward_mut().stats();
    assert_eq!((s.udp_sent, s.udp_received, s.udp_dropped), (2, 1, 2));

    // Silent both ways for UDP_IDLE: closed, with an event.
    for _ in 0..(UDP_IDLE.as_secs() + 2) {
        lab.advance(Duration::from_secs(1));
    }
    assert!(!lab.host.forward_mut().udp_is_open(id));
    assert!(lab.events().contains(&(id, EventKind::Closed)));
    assert_eq!(lab.host.forward_mut().open(), (0, 0));
}

/// Garbage to a forwarded port (a truncated TCP segment, a bad checksum) is
/// dropped by smoltcp without a panic, and the connection lives on.
#[test]
fn garbage_is_dropped() {
    let mut lab = Lab::new();
    let lh = lab.guest_listen(80, 1 << 20);
    let id = lab.host.forward_mut().tcp_connect(remote(80), lab.now).unwrap();
    lab.pump();
    assert_eq!(lab.host.forward_mut().tcp_state(id), TcpState::Open);
    // Take a real segment from the guest and corrupt it.
    lab.guest_tcp(lh).send_slice(b"x").unwrap();
    let t = lab.smol();
    lab.guest.iface.poll(t, &mut lab.guest.wire, &mut lab.guest.sockets);
    let f = lab.guest.wire.tx.pop().unwrap();
    let mut out = vec![];
    let mut bad = f.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    lab.host.handle_frame(lab.now, &bad, &mut out);
    lab.host.handle_frame(lab.now, &f[..f.len() - 10], &mut out);
    let mut buf = [0u8; 8];
    assert_eq!(
        lab.host.forward_mut().tcp_recv(id, &mut buf),
        0,
        "nothing taken from garbage"
    );
    lab.host.handle_frame(lab.now, &f, &mut out);
    assert_eq!(lab.host.forward_mut().tcp_recv(id, &mut buf), 1);
}

/// A clock read that trails the last poll by more than a second (a driver
/// thread that read it, then waited for the lock) neither panics nor stalls
/// the timers.
#[test]
fn a_late_clock_read_is_harmless() {
    let mut lab = Lab::new();
    let lh = lab.guest_listen(80, 1 << 20);
    let id = lab.host.forward_mut().tcp_connect(remote(80), lab.now).unwrap();
    lab.pump();
    lab.now += Duration::from_secs(5);
    lab.pump();
    let early = lab.now - Duration::from_secs(3);
    // A guest segment handled at the early instant, then a flush at it.
    lab.guest_tcp(lh).send_slice(b"x").unwrap();
    let t = lab.smol();
    lab.guest.iface.poll(t, &mut lab.guest.wire, &mut lab.guest.sockets);
    let mut out = vec![];
    for f in std::mem::take(&mut lab.guest.wire.tx) {
        lab.host.handle_frame(early, &f, &mut out);
    }
    lab.host.forward_flush(early, &mut out);
    let at = lab.host.forward_mut().poll_at().unwrap();
    assert!(at > early && at <= lab.now + Duration::from_secs(1), "{at:?}");
    assert_eq!(lab.host.forward_mut().tcp_send(id, b"late"), 4);
    lab.pump();
    let mut buf = [0u8; 8];
    assert_eq!(lab.guest_tcp(lh).recv_slice(&mut buf).unwrap(), 4);
}
