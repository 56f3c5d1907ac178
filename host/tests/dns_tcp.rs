//! DNS over TCP on the segment (RFC 7766), driven with frames as byte vectors:
//! a fake peer built with etherparse does the TCP handshake with the host's
//! 10.0.3.1:53, sends length-prefixed queries and reads the answers; plus
//! RST for other ports and a full pool, forwarded queries (their answer, or a
//! SERVFAIL when the upstream fails or stays silent), big answers that
//! UDP truncates, smoltcp's timers (retransmission, idle close) on a fake
//! clock, and garbage that must be dropped and counted without a panic.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use etherparse::{PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use vmlan_host::config::*;
use vmlan_host::dns::config::{parse_server, DnsConfig};
use vmlan_host::dns::forward::TIMEOUT;
use vmlan_host::dns::tcp::{DnsTcp, IDLE, QUERY_MAX, TCP_SLOTS};
use vmlan_host::dns::Transport;
use vmlan_host::host::DnsReturn;
use vmlan_host::leases::LeaseDb;
use vmlan_host::{Host, HostConfig};
use vmlan_hub::{LocalHost, MacAddr};

const HUB_IP: [u8; 4] = [10, 0, 3, 1];
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
const GUEST_IP: [u8; 4] = [10, 0, 3, 101];
const UPSTREAM: &str = "127.0.0.2:5300";
/// Addresses of the name `big`: 60 A records, 1000-odd bytes, over UDP's 512.
const BIG: u8 = 60;

fn config() -> HostConfig {
    let mut host_records = vec![parse_host_record("gateway,10.0.3.254").unwrap()];
    for i in 1..=BIG {
        host_records.push(parse_host_record(&format!("big,10.0.4.{i}")).unwrap());
    }
    let c = HostConfig {
        mac: default_mac(Ipv4Addr::from(HUB_IP)),
        net: parse_addr("10.0.3.1/24").unwrap(),
        ranges: vec![],
        ranges6: vec![],
        enable_ra: false,
        reservations: vec![],
        options: vec![],
        host_records,
        domain: Some("cluster".into()),
        leasefile: None,
        boot: None,
        authoritative: false,
        rapid_commit: false,
        dns: DnsConfig {
            servers: vec![parse_server("--server", "127.0.0.2#5300").unwrap()],
            forward_max: 150,
            ..Default::default()
        },
    };
    c.validate().unwrap();
    c
}

fn hub_mac() -> [u8; 6] {
    default_mac(Ipv4Addr::from(HUB_IP)).0
}

fn query(name: &str, rtype: RecordType, id: u16) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    m.to_bytes().unwrap()
}

fn framed(msgs: &[Vec<u8>]) -> Vec<u8> {
    let mut v = vec![];
    for m in msgs {
        v.extend_from_slice(&(m.len() as u16).to_be_bytes());
        v.extend_from_slice(m);
    }
    v
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

/// A TCP segment the host sent, parsed.
#[derive(Debug)]
struct Seg {
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    fin: bool,
    rst: bool,
    payload: Vec<u8>,
}

fn parse(frame: &[u8]) -> Seg {
    let p = SlicedPacket::from_ethernet(frame).expect("the host sends well-formed frames");
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("not TCP")
    };
    let h = ip.header();
    Seg {
        eth_src: frame[6..12].try_into().unwrap(),
        eth_dst: frame[0..6].try_into().unwrap(),
        src: (h.source_addr(), t.source_port()),
        dst: (h.destination_addr(), t.destination_port()),
        seq: t.sequence_number(),
        ack: t.ack().then(|| t.acknowledgment_number()),
        syn: t.syn(),
        fin: t.fin(),
        rst: t.rst(),
        payload: t.payload().to_vec(),
    }
}

#[derive(Default, Clone, Copy)]
struct Flags {
    syn: bool,
    ack: bool,
    fin: bool,
    rst: bool,
}

const SYN: Flags = Flags {
    syn: true,
    ack: false,
    fin: false,
    rst: false,
};
const ACK: Flags = Flags {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
};
const FIN: Flags = Flags {
    syn: false,
    ack: true,
    fin: true,
    rst: false,
};

/// The fake client: its next sequence number and what it has received.
struct Peer {
    mac: [u8; 6],
    ip: [u8; 4],
    port: u16,
    seq: u32,
    ack: u32,
    /// The bytes received from the host, in order.
    stream: Vec<u8>,
    fin_seen: bool,
}

impl Peer {
    fn new(port: u16) -> Self {
        Peer {
            mac: GUEST_MAC,
            ip: GUEST_IP,
            port,
            seq: 1_000_000,
            ack: 0,
            stream: vec![],
            fin_seen: false,
        }
    }

    /// An Ethernet frame to the host's `dport` with `flags` and `payload`.
    fn frame(&self, dport: u16, flags: Flags, payload: &[u8]) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2(self.mac, hub_mac())
            .ipv4(self.ip, HUB_IP, 64)
            .tcp(self.port, dport, self.seq, 64240);
        if flags.syn {
            b = b.syn().options(&[TcpOptionElement::MaximumSegmentSize(1460)]).unwrap();
        }
        if flags.ack {
            b = b.ack(self.ack);
        }
        if flags.fin {
            b = b.fin();
        }
        if flags.rst {
            b = b.rst();
        }
        if !payload.is_empty() {
            b = b.psh();
        }
        let mut v = vec![];
        b.write(&mut v, payload).unwrap();
        v
    }

    /// Takes the host's segments to this peer: payload appended in order (the
    /// host's segments come in order here: nothing is lost), ACK number advanced.
    fn take(&mut self, out: &[Vec<u8>]) -> Vec<Seg> {
        let segs: Vec<Seg> = out.iter().map(|f| parse(f)).collect();
        for s in &segs {
            assert_eq!(s.dst, (Ipv4Addr::from(self.ip), self.port));
            assert_eq!((s.eth_src, s.eth_dst), (hub_mac(), self.mac));
            if s.syn {
                self.ack = s.seq.wrapping_add(1);
            } else if !s.rst && s.seq == self.ack {
                self.stream.extend_from_slice(&s.payload);
                self.ack = self.ack.wrapping_add(s.payload.len() as u32);
                if s.fin {
                    self.ack = self.ack.wrapping_add(1);
                    self.fin_seen = true;
                }
            }
        }
        segs
    }

    /// The complete messages received so far, taken off the stream.
    fn messages(&mut self) -> Vec<Message> {
        let mut out = vec![];
        while self.stream.len() >= 2 {
            let n = usize::from(u16::from_be_bytes([self.stream[0], self.stream[1]]));
            if self.stream.len() < n + 2 {
                break;
            }
            out.push(Message::from_bytes(&self.stream[2..n + 2]).unwrap());
            self.stream.drain(..n + 2);
        }
        out
    }
}

/// Something that takes frames from the segment: the host, or DnsTcp alone on a fake clock.
trait Station {
    fn input(&mut self, frame: &[u8]) -> Vec<Vec<u8>>;
}

impl Station for Host {
    fn input(&mut self, frame: &[u8]) -> Vec<Vec<u8>> {
        let mut out = vec![];
        self.handle_frame(Instant::now(), frame, &mut out);
        out
    }
}

/// DnsTcp with a fake clock, answering every query with the query itself.
struct Echo {
    tcp: DnsTcp,
    now: Instant,
}

impl Echo {
    fn new() -> Self {
        let now = Instant::now();
        Echo {
            tcp: DnsTcp::new(MacAddr(hub_mac()), Ipv4Addr::from(HUB_IP), &[], now),
            now,
        }
    }

    fn serve(&mut self) -> Vec<Vec<u8>> {
        loop {
            let qs = self.tcp.queries(self.now);
            if qs.is_empty() {
                break;
            }
            for q in qs {
                assert!(self.tcp.answer(q.conn, &q.message, self.now));
            }
        }
        let mut out = vec![];
        self.tcp.poll(self.now, &mut out);
        out
    }

    /// Lets `d` pass and runs the timers, as the host's tick does.
    fn tick(&mut self, d: Duration) -> Vec<Vec<u8>> {
        self.now += d;
        self.serve()
    }
}

impl Station for Echo {
    fn input(&mut self, frame: &[u8]) -> Vec<Vec<u8>> {
        self.tcp
            .receive(&frame[14..], MacAddr(frame[6..12].try_into().unwrap()), self.now);
        self.serve()
    }
}

/// The three-way handshake with port 53; returns the SYN-ACK.
fn connect(st: &mut impl Station, p: &mut Peer) -> Seg {
    let out = st.input(&p.frame(53, SYN, &[]));
    let mut segs = p.take(&out);
    assert_eq!(segs.len(), 1, "{segs:?}");
    let sa = segs.remove(0);
    assert!(sa.syn && sa.ack == Some(p.seq.wrapping_add(1)), "{sa:?}");
    p.seq = p.seq.wrapping_add(1);
    assert!(st.input(&p.frame(53, ACK, &[])).is_empty());
    sa
}

/// Sends `bytes` on the connection; returns the host's segments.
fn send(st: &mut impl Station, p: &mut Peer, bytes: &[u8]) -> Vec<Seg> {
    let out = st.input(&p.frame(53, ACK, bytes));
    p.seq = p.seq.wrapping_add(bytes.len() as u32);
    p.take(&out)
}

fn host() -> Host {
    Host::new(&config(), LeaseDb::in_memory(), Instant::now(), 1_000_000)
}

#[test]
fn handshake_query_and_answer() {
    let mut h = host();
    let mut p = Peer::new(40001);
    let sa = connect(&mut h, &mut p);
    assert_eq!(sa.src, (Ipv4Addr::from(HUB_IP), 53));
    send(
        &mut h,
        &mut p,
        &framed(&[query("gateway.cluster.", RecordType::A, 0x1234)]),
    );
    let m = p.messages();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].metadata.id, 0x1234);
    assert!(m[0].metadata.authoritative);
    assert_eq!(a_records(&m[0]), vec![Ipv4Addr::new(10, 0, 3, 254)]);
    let st = h.stats();
    assert_eq!((st.dns_tcp.connections, st.dns_tcp.queries, st.dns_in), (1, 1, 1));
    assert!(
        h.report().contains("dns tcp connections 1 queries 1 malformed 0"),
        "{}",
        h.report()
    );
}

#[test]
fn several_queries_on_one_connection() {
    let mut h = host();
    let mut p = Peer::new(40002);
    connect(&mut h, &mut p);
    // Two queries in one segment (pipelined), answered in order.
    let two = framed(&[
        query("gateway.cluster.", RecordType::A, 1),
        query("gateway.", RecordType::A, 2),
    ]);
    send(&mut h, &mut p, &two);
    let ids: Vec<u16> = p.messages().iter().map(|m| m.metadata.id).collect();
    assert_eq!(ids, vec![1, 2]);
    // A third split across two segments, the length prefix cut in the middle.
    let third = framed(&[query("nowhere.cluster.", RecordType::A, 3)]);
    assert!(send(&mut h, &mut p, &third[..1]).iter().all(|s| s.payload.is_empty()));
    assert!(p.messages().is_empty());
    send(&mut h, &mut p, &third[1..]);
    let m = p.messages();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].metadata.id, 3);
    assert_eq!(m[0].metadata.response_code, hickory_proto::op::ResponseCode::NXDomain);
    assert_eq!(h.stats().dns_tcp.queries, 3);
    // The client closes: the host closes too once every answer is out.
    let out = h.input(&p.frame(53, FIN, &[]));
    p.seq = p.seq.wrapping_add(1);
    let segs = p.take(&out);
    assert!(segs.iter().any(|s| s.fin), "{segs:?}");
    assert!(h.input(&p.frame(53, ACK, &[])).is_empty());
}

#[test]
fn big_answer_truncated_over_udp_is_whole_over_tcp() {
    let mut h = host();
    // Over UDP without EDNS: cut to 512 bytes with TC (RFC 1035 section 4.2.1).
    let b = PacketBuilder::ethernet2(GUEST_MAC, hub_mac())
        .ipv4(GUEST_IP, HUB_IP, 64)
        .udp(40000, 53);
    let mut f = vec![];
    b.write(&mut f, &query("big.", RecordType::A, 7)).unwrap();
    let out = h.input(&f);
    let p = SlicedPacket::from_ethernet(&out[0]).unwrap();
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        panic!()
    };
    assert!(u.payload().len() <= 512);
    let m = Message::from_bytes(u.payload()).unwrap();
    assert!(m.metadata.truncation);
    // Over TCP: every record, the answer spanning several segments.
    let mut p = Peer::new(40003);
    connect(&mut h, &mut p);
    let segs = send(&mut h, &mut p, &framed(&[query("big.", RecordType::A, 8)]));
    let m = p.messages();
    assert_eq!(m.len(), 1);
    assert!(!m[0].metadata.truncation);
    assert_eq!(a_records(&m[0]).len(), usize::from(BIG));
    assert!(m[0].to_bytes().unwrap().len() > 512);
    assert!(segs.iter().all(|s| s.payload.len() <= 1460));
}

#[test]
fn forwarded_query_answer_comes_back_on_the_connection() {
    let mut h = host();
    let mut p = Peer::new(40004);
    connect(&mut h, &mut p);
    let segs = send(
        &mut h,
        &mut p,
        &framed(&[query("upstream.test.", RecordType::A, 0x4242)]),
    );
    assert!(segs.iter().all(|s| s.payload.is_empty()));
    let fwd = h.take_dns_forwards();
    assert_eq!(fwd.len(), 1);
    assert_eq!(fwd[0].transport, Transport::Tcp);
    let up: SocketAddr = UPSTREAM.parse().unwrap();
    assert_eq!(fwd[0].upstream, up);
    // The upstream's answer (with the forwarder's ID) goes out on the connection.
    let mut ans = Message::from_bytes(&fwd[0].query).unwrap();
    ans.metadata.message_type = hickory_proto::op::MessageType::Response;
    let name = Name::from_ascii("upstream.test.").unwrap();
    ans.add_answer(hickory_proto::rr::Record::from_rdata(
        name,
        60,
        RData::A(Ipv4Addr::new(192, 0, 2, 9).into()),
    ));
    let Some(DnsReturn::Frames(frames)) = h.dns_upstream_answer(Instant::now(), up, &ans.to_bytes().unwrap()) else {
        panic!("no TCP frames")
    };
    p.take(&frames);
    let m = p.messages();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].metadata.id, 0x4242);
    assert_eq!(a_records(&m[0]), vec![Ipv4Addr::new(192, 0, 2, 9)]);
}

#[test]
fn a_forwarded_query_whose_servers_fail_gets_servfail_on_the_connection() {
    let mut h = host();
    let mut p = Peer::new(40005);
    connect(&mut h, &mut p);
    let up: SocketAddr = UPSTREAM.parse().unwrap();
    // The TCP exchange with the only server failed: SERVFAIL at once.
    send(
        &mut h,
        &mut p,
        &framed(&[query("upstream.test.", RecordType::A, 0x4343)]),
    );
    let fwd = h.take_dns_forwards();
    let Some(DnsReturn::Frames(frames)) = h.dns_upstream_failed(Instant::now(), up, &fwd[0].query) else {
        panic!("no TCP frames")
    };
    p.take(&frames);
    let m = p.messages();
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].metadata.id, m[0].metadata.response_code),
        (0x4343, ResponseCode::ServFail)
    );
    // No answer within the forward timeout: SERVFAIL from the tick, on the
    // connection, which stayed open for it.
    send(&mut h, &mut p, &framed(&[query("silent.test.", RecordType::A, 0x4444)]));
    assert_eq!(h.take_dns_forwards().len(), 1);
    let mut out = vec![];
    h.handle_timeout(Instant::now() + TIMEOUT, &mut out);
    p.take(&out);
    let m = p.messages();
    assert_eq!(m.len(), 1, "{out:?}");
    assert_eq!(
        (m[0].metadata.id, m[0].metadata.response_code),
        (0x4444, ResponseCode::ServFail)
    );
    assert_eq!(m[0].queries[0].name().to_string(), "silent.test.");
}

#[test]
fn other_ports_and_a_full_pool_get_rst() {
    let mut h = host();
    // Port 80: RST, ACKing the SYN (RFC 9293 section 3.10.7.1).
    let p = Peer::new(40005);
    let out = h.input(&p.frame(80, SYN, &[]));
    let s = parse(&out[0]);
    assert!(s.rst && s.ack == Some(p.seq.wrapping_add(1)), "{s:?}");
    // Fill every slot; the next SYN to 53 gets a RST.
    let mut peers: Vec<Peer> = (0..TCP_SLOTS as u16).map(|i| Peer::new(41000 + i)).collect();
    for p in &mut peers {
        connect(&mut h, p);
    }
    let mut extra = Peer::new(42000);
    let out = h.input(&extra.frame(53, SYN, &[]));
    assert!(parse(&out[0]).rst);
    // One client closes; its slot listens again once the close completes.
    let p0 = &mut peers[0];
    let out = h.input(&p0.frame(53, FIN, &[]));
    p0.seq = p0.seq.wrapping_add(1);
    p0.take(&out);
    assert!(p0.fin_seen);
    h.input(&p0.frame(53, ACK, &[]));
    connect(&mut h, &mut extra);
    send(&mut h, &mut extra, &framed(&[query("gateway.", RecordType::A, 5)]));
    assert_eq!(extra.messages()[0].metadata.id, 5);
    assert_eq!(h.stats().dns_tcp.connections, TCP_SLOTS as u64 + 1);
}

#[test]
fn retransmits_on_the_tick_and_closes_idle_connections() {
    let mut e = Echo::new();
    let mut p = Peer::new(40006);
    connect(&mut e, &mut p);
    // The answer is lost: the peer does not ACK it. A second later (smoltcp's
    // minimum RTO), the tick retransmits it.
    let q = framed(&[query("x.", RecordType::A, 9)]);
    let out = e.input(&p.frame(53, ACK, &q));
    p.seq = p.seq.wrapping_add(q.len() as u32);
    let data: Vec<Seg> = out.iter().map(|f| parse(f)).filter(|s| !s.payload.is_empty()).collect();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0].payload, q);
    assert!(e.tick(Duration::from_millis(500)).is_empty());
    let again = e.tick(Duration::from_millis(600));
    assert_eq!(again.len(), 1);
    p.take(&again);
    assert_eq!(p.messages()[0].metadata.id, 9);
    assert!(e.input(&p.frame(53, ACK, &[])).is_empty());
    // Idle: closed (FIN) after IDLE without a query, not before.
    assert!(e.tick(IDLE - Duration::from_secs(2)).is_empty());
    let out = e.tick(Duration::from_secs(3));
    p.take(&out);
    assert!(p.fin_seen, "no FIN after the idle time");
    assert_eq!(e.tcp.open(), 1);
}

#[test]
fn stalled_connections_are_aborted() {
    let mut e = Echo::new();
    let mut p = Peer::new(40007);
    connect(&mut e, &mut p);
    // The peer never ACKs or closes; past idle and stall time the slot is freed.
    let mut rst = false;
    for _ in 0..60 {
        rst |= e.tick(Duration::from_secs(1)).iter().any(|f| parse(f).rst);
    }
    assert!(rst);
    assert_eq!(e.tcp.open(), 0);
}

#[test]
fn oversized_length_prefix_aborts_the_connection() {
    let mut e = Echo::new();
    let mut p = Peer::new(40008);
    connect(&mut e, &mut p);
    let len = (QUERY_MAX as u16 + 1).to_be_bytes();
    let segs = send(&mut e, &mut p, &len);
    assert!(segs.iter().any(|s| s.rst), "{segs:?}");
    assert_eq!(e.tcp.stats().malformed, 1);
    assert_eq!(e.tcp.open(), 0);
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Sets the IPv4 header checksum and the TCP checksum of `frame` right.
fn fix_checksums(frame: &mut [u8]) {
    if frame.len() < 34 {
        return;
    }
    let ihl = usize::from(frame[14] & 0xf) * 4;
    if ihl < 20 || frame.len() < 14 + ihl {
        return;
    }
    frame[24..26].fill(0);
    let sum = |b: &[u8], init: u32| {
        let mut s = init;
        for c in b.chunks(2) {
            s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        s
    };
    let c = !(sum(&frame[14..14 + ihl], 0) as u16);
    frame[24..26].copy_from_slice(&c.to_be_bytes());
    let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let end = (14 + total).min(frame.len());
    if end < 14 + ihl + 18 {
        return;
    }
    frame[14 + ihl + 16..14 + ihl + 18].fill(0);
    let tcp_len = (end - 14 - ihl) as u32;
    let pseudo = sum(&frame[26..34], 6 + tcp_len);
    let c = !(sum(&frame[14 + ihl..end], pseudo) as u16);
    frame[14 + ihl + 16..14 + ihl + 18].copy_from_slice(&c.to_be_bytes());
}

/// Feeds `n` mangled copies of valid segments of `p` (random bytes anywhere
/// past the Ethernet header, cut short, checksums fixed half of the time).
fn fuzz(st: &mut impl Station, p: &Peer, n: u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let seeds = [
        p.frame(53, SYN, &[]),
        p.frame(53, ACK, &framed(&[query("gateway.", RecordType::A, 2)])),
        p.frame(53, FIN, &[1, 2, 3]),
        Peer::new(40010).frame(80, SYN, &[]),
    ];
    for i in 0..n {
        let mut f = seeds[(i % 4) as usize].clone();
        for _ in 0..1 + rng.next() % 4 {
            let at = 14 + (rng.next() as usize) % (f.len() - 14);
            f[at] = rng.next() as u8;
        }
        if rng.next().is_multiple_of(3) {
            let keep = 14 + (rng.next() as usize) % (f.len() - 13);
            f.truncate(keep);
        }
        if i.is_multiple_of(2) {
            fix_checksums(&mut f);
        }
        st.input(&f);
    }
}

#[test]
fn garbage_tcp_is_dropped_and_counted_without_panic() {
    let mut h = host();
    let mut p = Peer::new(40009);
    connect(&mut h, &mut p);
    // A bad checksum: counted, never given to smoltcp.
    let mut f = p.frame(53, ACK, &framed(&[query("gateway.", RecordType::A, 1)]));
    let n = f.len();
    f[n - 1] ^= 0xff;
    assert!(h.input(&f).is_empty());
    assert_eq!(h.stats().dns_tcp.malformed, 1);
    // Garbage on the connection: not a DNS message; counted by the DNS server.
    send(&mut h, &mut p, &framed(&[vec![0xde, 0xad, 0xbe, 0xef]]));
    assert!(p.messages().is_empty());
    assert_eq!(h.dns_mut().stats().malformed, 1);
    // Mangled segments through the host: no panic, the bad ones counted.
    fuzz(&mut h, &p, 20_000);
    h.handle_timeout(Instant::now(), &mut vec![]);
    assert!(h.stats().dns_tcp.malformed > 1000, "{:?}", h.stats());
    assert!(h.stats().malformed_frames > 0, "{:?}", h.stats());
}

#[test]
fn garbage_leaves_smoltcp_serving_once_the_slots_time_out() {
    let mut e = Echo::new();
    let mut p = Peer::new(40009);
    connect(&mut e, &mut p);
    fuzz(&mut e, &p, 20_000);
    assert!(e.tcp.stats().malformed > 1000);
    // Whatever half-open connections the garbage made are gone after idle + stall.
    for _ in 0..40 {
        e.tick(Duration::from_secs(1));
    }
    assert_eq!(e.tcp.open(), 0);
    let mut q = Peer::new(40011);
    q.seq = 7;
    connect(&mut e, &mut q);
    send(&mut e, &mut q, &framed(&[query("x.", RecordType::A, 3)]));
    assert_eq!(q.messages()[0].metadata.id, 3);
}
