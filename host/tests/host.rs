//! The hub's host driven with frames as byte vectors: ARP, ICMP echo, every
//! DHCP message of issue 2 (DISCOVER/OFFER, REQUEST/ACK, NAK, RELEASE), a
//! client's address given back to it after RELEASE or expiry (and after a
//! restart), a lease's name in DNS exactly while the lease lives (through
//! renewals, RELEASE, expiry, DECLINE, a move), and DNS answers (A, PTR,
//! NXDOMAIN, empty AAAA), plus malformed input and frames from group or
//! all-zero source MACs (dropped unanswered, counted).

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use hickory_proto::op::{Message as DnsMessage, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use vmlan_host::config::*;
use vmlan_host::leases::{write_journal_line, LeaseDb, LeaseKey};
use vmlan_host::{Host, HostConfig, ReservationSource};
use vmlan_hub::{LocalHost, MacAddr};

const MASTER: [u8; 6] = [0, 0, 0, 0x11, 0x11, 0x11];
const WORKER: [u8; 6] = [0, 0, 0, 0x22, 0x22, 0x22];
const OTHER: [u8; 6] = [0x52, 0x54, 0, 0xaa, 0xbb, 0xcc];
const HUB_MAC: [u8; 6] = [0x02, 0x76, 0x6d, 0, 3, 1];
const HUB_IP: [u8; 4] = [10, 0, 3, 1];

fn config() -> HostConfig {
    let c = HostConfig {
        ranges: vec![parse_dhcp_range("10.0.3.100,10.0.3.200").unwrap()],
        reservations: vec![
            parse_dhcp_host("00:00:00:11:11:11,10.0.3.101,master").unwrap(),
            parse_dhcp_host("00:00:00:22:22:22,10.0.3.102,worker1").unwrap(),
        ],
        options: vec![parse_dhcp_option("option:router,10.0.3.101").unwrap()],
        host_records: vec![parse_host_record("gateway,10.0.3.254").unwrap()],
        domain: Some("cluster".into()),
        ..HostConfig::new(parse_addr("10.0.3.1/24").unwrap())
    };
    c.validate().unwrap();
    c
}

/// The host on a test clock: Unix seconds in `clock`, given to the host as
/// instants counted from `t0` (the host's Unix time at `t0` being `base`).
struct TestHost {
    h: Host,
    t0: Instant,
    base: u64,
    clock: Arc<AtomicU64>,
}

impl TestHost {
    fn at(cfg: &HostConfig, db: LeaseDb, clock: Arc<AtomicU64>) -> Self {
        let (t0, base) = (Instant::now(), clock.load(Ordering::Relaxed));
        TestHost {
            h: Host::new(cfg, db, t0, base),
            t0,
            base,
            clock,
        }
    }

    fn fixed(cfg: &HostConfig, db: LeaseDb, unix: u64) -> Self {
        Self::at(cfg, db, Arc::new(AtomicU64::new(unix)))
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_secs(self.clock.load(Ordering::Relaxed).saturating_sub(self.base))
    }

    fn handle_frame(&mut self, frame: &[u8], out: &mut Vec<Vec<u8>>) {
        let now = self.now();
        self.h.handle_frame(now, frame, out);
    }

    fn tick(&mut self, out: &mut Vec<Vec<u8>>) {
        let now = self.now();
        self.h.handle_timeout(now, out);
    }
}

impl std::ops::Deref for TestHost {
    type Target = Host;
    fn deref(&self) -> &Host {
        &self.h
    }
}

impl std::ops::DerefMut for TestHost {
    fn deref_mut(&mut self) -> &mut Host {
        &mut self.h
    }
}

fn host_at(clock: Arc<AtomicU64>) -> TestHost {
    TestHost::at(&config(), LeaseDb::in_memory(), clock)
}

fn host() -> TestHost {
    host_at(Arc::new(AtomicU64::new(1_000_000)))
}

fn run(h: &mut TestHost, frame: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![];
    h.handle_frame(frame, &mut out);
    out
}

fn udp(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .udp(sport, dport);
    let mut v = vec![];
    b.write(&mut v, payload).unwrap();
    v
}

#[test]
fn answers_arp_for_its_address_only() {
    // Who has 10.0.3.1? Tell 10.0.3.101 (00:00:00:11:11:11), as bytes on the wire.
    let mut req: Vec<u8> = vec![
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0x11, 0x11, 0x11, 0x08, 0x06, // Ethernet
        0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, // htype, ptype, hlen, plen, op=request
        0, 0, 0, 0x11, 0x11, 0x11, 10, 0, 3, 101, // sender
        0, 0, 0, 0, 0, 0, 10, 0, 3, 1, // target
    ];
    let mut h = host();
    let out = run(&mut h, &req);
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!(&r[0..6], &MASTER);
    assert_eq!(&r[6..12], &HUB_MAC);
    assert_eq!(&r[12..14], &[0x08, 0x06]);
    assert_eq!(&r[20..22], &[0x00, 0x02], "op=reply");
    assert_eq!(&r[22..28], &HUB_MAC, "sender MAC");
    assert_eq!(&r[28..32], &HUB_IP, "sender IP");
    assert_eq!(&r[32..38], &MASTER);
    assert_eq!(&r[38..42], &[10, 0, 3, 101]);
    // For someone else's address: silence.
    req[41] = 102;
    assert!(run(&mut h, &req).is_empty());
    // Truncated ARP: dropped and counted, no panic.
    assert!(run(&mut h, &req[..30]).is_empty());
    assert_eq!(h.stats().malformed_frames, 1);
}

#[test]
fn answers_icmp_echo() {
    let b = PacketBuilder::ethernet2(MASTER, HUB_MAC)
        .ipv4([10, 0, 3, 101], HUB_IP, 64)
        .icmpv4_echo_request(0x1234, 7);
    let mut req = vec![];
    b.write(&mut req, b"ping payload").unwrap();
    let mut h = host();
    let out = run(&mut h, &req);
    assert_eq!(out.len(), 1);
    let p = SlicedPacket::from_ethernet(&out[0]).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4")
    };
    assert_eq!(ip.header().destination(), [10, 0, 3, 101]);
    assert_eq!(ip.header().source(), HUB_IP);
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not ICMP")
    };
    match icmp.icmp_type() {
        etherparse::Icmpv4Type::EchoReply(e) => assert_eq!((e.id, e.seq), (0x1234, 7)),
        t => panic!("{t:?}"),
    }
    assert_eq!(icmp.payload(), b"ping payload");
    // The checksum etherparse verifies on parse must be right.
    assert!(etherparse::Icmpv4Header::from_slice(&out[0][34..]).is_ok());
    assert_eq!(h.stats().icmp_replies, 1);
}

fn dhcp_msg(chaddr: [u8; 6], mtype: MessageType, opts: Vec<DhcpOption>) -> Message {
    let mut m = Message::new_with_id(
        0xdead_beef,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &chaddr,
    );
    m.opts_mut().insert(DhcpOption::MessageType(mtype));
    for o in opts {
        m.opts_mut().insert(o);
    }
    m
}

/// Sends `m` as a client would (broadcast from 0.0.0.0, or from ciaddr) and decodes the reply.
fn dhcp(h: &mut TestHost, m: &Message) -> Option<(Message, Vec<u8>)> {
    let mac: [u8; 6] = m.chaddr()[..6].try_into().unwrap();
    let src = m.ciaddr().octets();
    let frame = udp(mac, [0xff; 6], src, [255; 4], 68, 67, &m.to_vec().unwrap());
    let out = run(h, &frame);
    assert!(out.len() <= 1);
    let f = out.into_iter().next()?;
    let msg = {
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(TransportSlice::Udp(u)) = &p.transport else {
            panic!("not UDP")
        };
        assert_eq!((u.source_port(), u.destination_port()), (67, 68));
        Message::decode(&mut Decoder::new(u.payload())).unwrap()
    };
    Some((msg, f))
}

fn mtype(m: &Message) -> MessageType {
    match m.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(t)) => *t,
        o => panic!("no message type: {o:?}"),
    }
}

#[test]
fn dhcp_reservation_discover_offer_request_ack() {
    let mut h = host();
    let (offer, frame) = dhcp(&mut h, &dhcp_msg(MASTER, MessageType::Discover, vec![])).unwrap();
    assert_eq!(mtype(&offer), MessageType::Offer);
    assert_eq!(offer.xid(), 0xdead_beef);
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 0, 3, 101));
    // No broadcast flag: unicast to yiaddr at chaddr (RFC 2131 section 4.1).
    assert_eq!(&frame[0..6], &MASTER);
    assert_eq!(&frame[30..34], &[10, 0, 3, 101]);
    let o = offer.opts();
    assert_eq!(
        o.get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(HUB_IP.into()))
    );
    assert_eq!(
        o.get(OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask([255, 255, 255, 0].into()))
    );
    assert_eq!(
        o.get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 3, 101)])),
        "--dhcp-option overrides the default router"
    );
    assert_eq!(
        o.get(OptionCode::DomainNameServer),
        Some(&DhcpOption::DomainNameServer(vec![HUB_IP.into()]))
    );
    assert_eq!(
        o.get(OptionCode::DomainName),
        Some(&DhcpOption::DomainName("cluster".into()))
    );
    assert_eq!(
        o.get(OptionCode::Hostname),
        Some(&DhcpOption::Hostname("master".into()))
    );
    assert_eq!(
        o.get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(3600))
    );

    let req = dhcp_msg(
        MASTER,
        MessageType::Request,
        vec![
            DhcpOption::ServerIdentifier(HUB_IP.into()),
            DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 3, 101)),
        ],
    );
    let (ack, _) = dhcp(&mut h, &req).unwrap();
    assert_eq!(mtype(&ack), MessageType::Ack);
    assert_eq!(ack.yiaddr(), Ipv4Addr::new(10, 0, 3, 101));
    let lease = h.dhcp().leases().get(&LeaseKey::Mac(MacAddr(MASTER))).unwrap();
    assert_eq!(
        (lease.ip, lease.hostname.as_deref(), lease.expires),
        (Ipv4Addr::new(10, 0, 3, 101), Some("master"), 1_000_000 + 3600)
    );
}

#[test]
fn dhcp_pool_broadcast_flag_client_hostname_and_release() {
    let clock = Arc::new(AtomicU64::new(5_000));
    let mut h = host_at(clock.clone());
    let mut disc = dhcp_msg(
        OTHER,
        MessageType::Discover,
        vec![DhcpOption::Hostname("scratch".into())],
    );
    disc.set_flags(Flags::default().set_broadcast());
    let (offer, frame) = dhcp(&mut h, &disc).unwrap();
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 0, 3, 100), "first pool address");
    assert_eq!(&frame[0..6], &[0xff; 6], "broadcast flag: broadcast reply");
    assert!(offer.opts().get(OptionCode::Hostname).is_none());
    let req = dhcp_msg(
        OTHER,
        MessageType::Request,
        vec![
            DhcpOption::ServerIdentifier(HUB_IP.into()),
            DhcpOption::RequestedIpAddress(offer.yiaddr()),
            DhcpOption::Hostname("scratch".into()),
        ],
    );
    assert_eq!(mtype(&dhcp(&mut h, &req).unwrap().0), MessageType::Ack);
    // The client's own name (option 12) is published, bare and in the domain.
    assert_eq!(dns_a(&mut h, "scratch.cluster."), vec![Ipv4Addr::new(10, 0, 3, 100)]);
    // RELEASE frees it: no reply, lease gone, name gone.
    let mut rel = dhcp_msg(
        OTHER,
        MessageType::Release,
        vec![DhcpOption::ServerIdentifier(HUB_IP.into())],
    );
    rel.set_ciaddr(Ipv4Addr::new(10, 0, 3, 100));
    assert!(dhcp(&mut h, &rel).is_none());
    assert!(h.dhcp().leases().get(&LeaseKey::Mac(MacAddr(OTHER))).is_none());
    assert_eq!(
        dns(&mut h, "scratch.cluster.", RecordType::A).metadata.response_code,
        ResponseCode::NXDomain
    );
}

#[test]
fn dhcp_request_states_like_dnsmasq() {
    // Not authoritative (dnsmasq's default): a client with no lease or reservation
    // here gets silence, so another server may answer it.
    let mut h = host();
    let init_reboot = |mac, ip| dhcp_msg(mac, MessageType::Request, vec![DhcpOption::RequestedIpAddress(ip)]);
    assert!(dhcp(&mut h, &init_reboot(OTHER, Ipv4Addr::new(10, 0, 3, 150))).is_none());
    // An address on the wrong network is always NAKed.
    let (nak, frame) = dhcp(&mut h, &init_reboot(OTHER, Ipv4Addr::new(192, 168, 1, 5))).unwrap();
    assert_eq!(mtype(&nak), MessageType::Nak);
    assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(&frame[0..6], &[0xff; 6], "NAKs are broadcast");
    // A reserved MAC is known: asking for any other address gets NAK.
    assert_eq!(
        mtype(
            &dhcp(&mut h, &init_reboot(WORKER, Ipv4Addr::new(10, 0, 3, 150)))
                .unwrap()
                .0
        ),
        MessageType::Nak
    );
    assert_eq!(
        mtype(
            &dhcp(&mut h, &init_reboot(WORKER, Ipv4Addr::new(10, 0, 3, 102)))
                .unwrap()
                .0
        ),
        MessageType::Ack
    );
    // A REQUEST for another server's offer: silence.
    let req = dhcp_msg(
        OTHER,
        MessageType::Request,
        vec![
            DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 3, 9)),
            DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 3, 150)),
        ],
    );
    assert!(dhcp(&mut h, &req).is_none());

    // Authoritative: unknown clients get an answer.
    let mut cfg = config();
    cfg.authoritative = true;
    let mut h = TestHost::fixed(&cfg, LeaseDb::in_memory(), 1_000_000);
    let (nak, _) = dhcp(&mut h, &init_reboot(OTHER, Ipv4Addr::new(10, 0, 3, 102))).unwrap();
    assert_eq!(mtype(&nak), MessageType::Nak, "another MAC's reservation");
    let (ack, _) = dhcp(&mut h, &init_reboot(OTHER, Ipv4Addr::new(10, 0, 3, 150))).unwrap();
    assert_eq!(
        (mtype(&ack), ack.yiaddr()),
        (MessageType::Ack, Ipv4Addr::new(10, 0, 3, 150))
    );
    // RENEWING: unicast with ciaddr, answered unicast to ciaddr.
    let mut renew = dhcp_msg(OTHER, MessageType::Request, vec![]);
    renew.set_ciaddr(Ipv4Addr::new(10, 0, 3, 150));
    let (ack, frame) = dhcp(&mut h, &renew).unwrap();
    assert_eq!(mtype(&ack), MessageType::Ack);
    assert_eq!(&frame[30..34], &[10, 0, 3, 150]);
    assert_eq!(&frame[0..6], &OTHER);
    // REBINDING: broadcast with ciaddr; still ACKed to ciaddr.
    renew.set_flags(Flags::default().set_broadcast());
    assert_eq!(mtype(&dhcp(&mut h, &renew).unwrap().0), MessageType::Ack);
    // Renewing an address it does not hold: NAK.
    renew.set_ciaddr(Ipv4Addr::new(10, 0, 3, 101));
    assert_eq!(mtype(&dhcp(&mut h, &renew).unwrap().0), MessageType::Nak);
}

#[test]
fn dhcp_client_identifier_keys_leases() {
    let mut h = host();
    // One MAC, two client identifiers (a PXE stage and the OS): two leases.
    let id = |b: u8| DhcpOption::ClientIdentifier(vec![0xff, 0, 0, 0, b]);
    let mut got = vec![];
    for b in [1, 2] {
        let (offer, _) = dhcp(&mut h, &dhcp_msg(OTHER, MessageType::Discover, vec![id(b)])).unwrap();
        let req = dhcp_msg(
            OTHER,
            MessageType::Request,
            vec![
                id(b),
                DhcpOption::ServerIdentifier(HUB_IP.into()),
                DhcpOption::RequestedIpAddress(offer.yiaddr()),
            ],
        );
        assert_eq!(mtype(&dhcp(&mut h, &req).unwrap().0), MessageType::Ack);
        got.push(offer.yiaddr());
    }
    assert_ne!(got[0], got[1]);
    assert_eq!(h.dhcp().leases().len(), 2);
    let lease = h
        .dhcp()
        .leases()
        .get(&LeaseKey::ClientId(vec![0xff, 0, 0, 0, 2]))
        .unwrap();
    assert_eq!(lease.ip, got[1]);
    assert_eq!(lease.client_id.as_deref(), Some(&[0xff, 0, 0, 0, 2][..]));
}

/// DISCOVER (with `opts`), then REQUEST of the offered address: the address ACKed.
fn lease_with(h: &mut TestHost, mac: [u8; 6], opts: Vec<DhcpOption>) -> Ipv4Addr {
    let (offer, _) = dhcp(h, &dhcp_msg(mac, MessageType::Discover, opts)).expect("an OFFER");
    let req = dhcp_msg(
        mac,
        MessageType::Request,
        vec![
            DhcpOption::ServerIdentifier(HUB_IP.into()),
            DhcpOption::RequestedIpAddress(offer.yiaddr()),
        ],
    );
    let (ack, _) = dhcp(h, &req).expect("an ACK");
    assert_eq!(mtype(&ack), MessageType::Ack);
    ack.yiaddr()
}

fn lease(h: &mut TestHost, mac: [u8; 6]) -> Ipv4Addr {
    lease_with(h, mac, vec![])
}

/// RELEASE of `ip` by `mac` (no reply).
fn release(h: &mut TestHost, mac: [u8; 6], ip: Ipv4Addr) {
    let mut rel = dhcp_msg(
        mac,
        MessageType::Release,
        vec![DhcpOption::ServerIdentifier(HUB_IP.into())],
    );
    rel.set_ciaddr(ip);
    assert!(dhcp(h, &rel).is_none());
}

const A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0a];
const B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0b];
const C: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0c];

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 3, last)
}

#[test]
fn dhcp_a_client_gets_back_the_address_it_last_had() {
    let clock = Arc::new(AtomicU64::new(1_000_000));
    let mut h = host_at(clock.clone());
    // The pool 10.0.3.100-200 holds the reservations .101 and .102.
    assert_eq!(lease(&mut h, A), ip(100));
    release(&mut h, A, ip(100));
    assert!(h.dhcp().leases().get(&LeaseKey::Mac(MacAddr(A))).is_none());
    assert_eq!(
        h.dhcp().leases().remembered(&LeaseKey::Mac(MacAddr(A))).map(|l| l.ip),
        Some(ip(100))
    );
    // A new client gets the next address never handed out, even when it asks
    // for A's (option 50).
    assert_eq!(
        lease_with(&mut h, B, vec![DhcpOption::RequestedIpAddress(ip(100))]),
        ip(103)
    );
    // A comes back: DISCOVER offers its old address, not the cursor's next.
    let (offer, _) = dhcp(&mut h, &dhcp_msg(A, MessageType::Discover, vec![])).unwrap();
    assert_eq!(offer.yiaddr(), ip(100));
    assert_eq!(lease(&mut h, A), ip(100));
    assert!(h.dhcp().leases().remembered(&LeaseKey::Mac(MacAddr(A))).is_none());
    // After its lease expired (1 h), the same.
    clock.store(1_000_000 + 3601, Ordering::Relaxed);
    h.tick(&mut vec![]);
    assert!(h.dhcp().leases().is_empty());
    assert_eq!(h.dhcp().leases().remembered_len(), 2);
    assert_eq!(lease(&mut h, C), ip(104));
    assert_eq!(lease(&mut h, B), ip(103));
    // INIT-REBOOT (a REQUEST for its old address, no server id) from a client
    // that has only a remembered address: known, so ACKed.
    let reboot = dhcp_msg(A, MessageType::Request, vec![DhcpOption::RequestedIpAddress(ip(100))]);
    let (ack, _) = dhcp(&mut h, &reboot).unwrap();
    assert_eq!((mtype(&ack), ack.yiaddr()), (MessageType::Ack, ip(100)));
}

#[test]
fn dhcp_remembered_addresses_go_to_new_clients_only_when_the_pool_is_used_up() {
    let mut cfg = config();
    cfg.ranges = vec![parse_dhcp_range("10.0.3.150,10.0.3.151").unwrap()];
    let mut h = TestHost::fixed(&cfg, LeaseDb::in_memory(), 1_000_000);
    assert_eq!(lease(&mut h, A), ip(150));
    release(&mut h, A, ip(150));
    // .151 was never handed out: B gets it; then C takes over A's .150.
    assert_eq!(lease(&mut h, B), ip(151));
    assert_eq!(lease(&mut h, C), ip(150));
    assert!(h.dhcp().leases().remembered(&LeaseKey::Mac(MacAddr(A))).is_none());
    // A comes back to a full pool: no OFFER.
    assert!(dhcp(&mut h, &dhcp_msg(A, MessageType::Discover, vec![])).is_none());
    // Reservations are not remembered (the reservation decides).
    assert_eq!(lease(&mut h, MASTER), ip(101));
    release(&mut h, MASTER, ip(101));
    assert_eq!(h.dhcp().leases().remembered_len(), 0);
}

#[test]
fn dhcp_remembered_addresses_survive_a_restart() {
    // A restart is a new host on the table its recorded changes give, through
    // the journal's text format (what the lease store writes and replays).
    let journal = std::cell::RefCell::new(String::new());
    let persist = |h: &mut TestHost| {
        let mut changes = vec![];
        h.take_lease_changes(&mut changes);
        for c in &changes {
            write_journal_line(c, &mut journal.borrow_mut());
        }
    };
    let t0 = 1_000_000;
    let start = |now: u64| {
        let (mut db, bad) = LeaseDb::from_texts("", &[&journal.borrow()]);
        assert!(bad.is_empty());
        db.end_expired(now);
        db.record_changes();
        TestHost::fixed(&config(), db, now)
    };
    let mut h = start(t0);
    assert_eq!(lease(&mut h, A), ip(100));
    assert_eq!(lease(&mut h, B), ip(103));
    release(&mut h, A, ip(100));
    persist(&mut h);
    drop(h);
    let mut h = start(t0 + 10);
    assert_eq!(h.dhcp().leases().len(), 1);
    // The cursor resumes after the furthest address with a record (.103): a new
    // client gets .104, not A's .100 at the start of the pool.
    assert_eq!(lease(&mut h, C), ip(104));
    assert_eq!(lease(&mut h, A), ip(100));
    persist(&mut h);
    drop(h);
    // Two hours later every lease has expired; each client still gets its own back.
    let mut h = start(t0 + 7200);
    assert!(h.dhcp().leases().is_empty());
    assert_eq!(h.dhcp().leases().remembered_len(), 3);
    for (mac, want) in [(C, 104), (B, 103), (A, 100)] {
        assert_eq!(lease(&mut h, mac), ip(want));
    }
}

#[test]
fn dhcp_leases_expire_and_full_pool_gets_no_offer() {
    let clock = Arc::new(AtomicU64::new(10_000));
    let mut cfg = config();
    cfg.ranges = vec![parse_dhcp_range("10.0.3.100,10.0.3.100,2m").unwrap()];
    let mut h = TestHost::at(&cfg, LeaseDb::in_memory(), clock.clone());
    assert!(dhcp(&mut h, &dhcp_msg(OTHER, MessageType::Discover, vec![])).is_some());
    let req = dhcp_msg(
        OTHER,
        MessageType::Request,
        vec![
            DhcpOption::ServerIdentifier(HUB_IP.into()),
            DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 3, 100)),
        ],
    );
    assert_eq!(mtype(&dhcp(&mut h, &req).unwrap().0), MessageType::Ack);
    let other2 = [0x52, 0x54, 0, 0, 0, 2];
    assert!(
        dhcp(&mut h, &dhcp_msg(other2, MessageType::Discover, vec![])).is_none(),
        "pool full: no OFFER"
    );
    clock.store(10_000 + 121, Ordering::Relaxed);
    h.tick(&mut vec![]);
    assert!(h.dhcp().leases().is_empty());
    let (offer, _) = dhcp(&mut h, &dhcp_msg(other2, MessageType::Discover, vec![])).unwrap();
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(10, 0, 3, 100));
}

#[test]
fn malformed_dhcp_is_dropped_and_counted() {
    let mut h = host();
    let good = dhcp_msg(OTHER, MessageType::Discover, vec![]).to_vec().unwrap();
    for bad in [&good[..10], &good[..240], &[0u8; 0][..]] {
        let f = udp(OTHER, [0xff; 6], [0; 4], [255; 4], 68, 67, bad);
        assert!(run(&mut h, &f).is_empty());
    }
    // An option whose length overruns the packet.
    let mut overrun = good.clone();
    let n = overrun.len();
    overrun[n - 3] = 200;
    let f = udp(OTHER, [0xff; 6], [0; 4], [255; 4], 68, 67, &overrun);
    run(&mut h, &f);
    assert!(h.stats().malformed_dhcp >= 3, "{:?}", h.stats());
    // And the server still answers a good client.
    assert!(dhcp(&mut h, &dhcp_msg(MASTER, MessageType::Discover, vec![])).is_some());
}

fn dns_query(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut m = DnsMessage::query();
    m.metadata.id = 4242;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
    m.to_bytes().unwrap()
}

/// Asks the host over the segment (UDP to 10.0.3.1:53) and decodes the answer.
fn dns(h: &mut TestHost, name: &str, rtype: RecordType) -> DnsMessage {
    let f = udp(
        MASTER,
        HUB_MAC,
        [10, 0, 3, 101],
        HUB_IP,
        40000,
        53,
        &dns_query(name, rtype),
    );
    let out = run(h, &f);
    assert_eq!(out.len(), 1, "one answer for {name}");
    let p = SlicedPacket::from_ethernet(&out[0]).unwrap();
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        panic!("not UDP")
    };
    assert_eq!((u.source_port(), u.destination_port()), (53, 40000));
    let m = DnsMessage::from_bytes(u.payload()).unwrap();
    assert_eq!(m.metadata.id, 4242);
    m
}

fn dns_a(h: &mut TestHost, name: &str) -> Vec<Ipv4Addr> {
    let m = dns(h, name, RecordType::A);
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[test]
fn dns_answers_reservations_and_host_records() {
    let mut h = host();
    for (name, ip) in [
        ("master.", [10, 0, 3, 101]),
        ("master.cluster.", [10, 0, 3, 101]),
        ("MASTER.Cluster.", [10, 0, 3, 101]),
        ("worker1.", [10, 0, 3, 102]),
        ("worker1.cluster.", [10, 0, 3, 102]),
        ("gateway.cluster.", [10, 0, 3, 254]),
    ] {
        assert_eq!(dns_a(&mut h, name), vec![Ipv4Addr::from(ip)], "{name}");
    }
    let m = dns(&mut h, "master.cluster.", RecordType::A);
    assert!(m.metadata.authoritative, "local answers are authoritative");
    // PTR to the fully qualified name.
    let m = dns(&mut h, "101.3.0.10.in-addr.arpa.", RecordType::PTR);
    let RData::PTR(ptr) = &m.answers[0].data else {
        panic!("{m:?}")
    };
    assert_eq!(ptr.0.to_string(), "master.cluster.");
}

#[test]
fn dns_negative_answers() {
    let mut h = host();
    // Unknown name in the domain: NXDOMAIN with the SOA.
    let m = dns(&mut h, "nosuch.cluster.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.answers.is_empty());
    // AAAA for an A-only name: NOERROR, empty answer (not REFUSED, not NXDOMAIN).
    for name in ["master.cluster.", "master."] {
        let m = dns(&mut h, name, RecordType::AAAA);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(m.answers.is_empty());
    }
    // Unknown address in the subnet: NXDOMAIN.
    let m = dns(&mut h, "77.3.0.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn malformed_dns_is_dropped_and_counted() {
    let mut h = host();
    let good = dns_query("master.cluster.", RecordType::A);
    // Truncated, garbage, and a compression pointer that loops onto itself.
    let mut looped = good[..12].to_vec();
    looped[5] = 1; // qdcount 1
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    for bad in [&good[..5], &[0xffu8; 40][..], &looped[..]] {
        let f = udp(MASTER, HUB_MAC, [10, 0, 3, 101], HUB_IP, 40000, 53, bad);
        assert!(run(&mut h, &f).is_empty());
    }
    assert_eq!(h.dns_mut().stats().malformed, 3);
    assert!(h.report().contains("dns in 3 answered 0 malformed 3"), "{}", h.report());
    assert_eq!(dns_a(&mut h, "master."), vec![Ipv4Addr::new(10, 0, 3, 101)]);
}

/// A REQUEST in RENEWING state (ciaddr set, no server identifier) for `ip`
/// with hostname `name`: the ACK.
fn renew(h: &mut TestHost, mac: [u8; 6], ip: Ipv4Addr, name: &str) {
    let mut req = dhcp_msg(mac, MessageType::Request, vec![DhcpOption::Hostname(name.into())]);
    req.set_ciaddr(ip);
    assert_eq!(mtype(&dhcp(h, &req).expect("an ACK").0), MessageType::Ack);
}

fn ptr_code(h: &mut TestHost, ip: Ipv4Addr) -> ResponseCode {
    let o = ip.octets();
    let name = format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0]);
    dns(h, &name, RecordType::PTR).metadata.response_code
}

/// A lease's name is in DNS exactly while the lease is live: renewals do not
/// stack references, and RELEASE, expiry, DECLINE and a move to another
/// address each withdraw it; a reservation's configured name stays.
#[test]
fn dhcp_lease_names_live_exactly_as_long_as_their_lease() {
    let clock = Arc::new(AtomicU64::new(5_000));
    let mut h = host_at(clock.clone());
    let nx =
        |h: &mut TestHost, name: &str| dns(h, name, RecordType::A).metadata.response_code == ResponseCode::NXDomain;
    // Lease, renew twice, release.
    let a = lease_with(&mut h, OTHER, vec![DhcpOption::Hostname("scratch".into())]);
    renew(&mut h, OTHER, a, "scratch");
    renew(&mut h, OTHER, a, "scratch");
    assert_eq!(dns_a(&mut h, "scratch.cluster."), vec![a]);
    assert_eq!(ptr_code(&mut h, a), ResponseCode::NoError);
    release(&mut h, OTHER, a);
    assert!(nx(&mut h, "scratch.cluster."), "the name goes with the lease");
    assert!(dns_a(&mut h, "scratch.").is_empty());
    assert_eq!(ptr_code(&mut h, a), ResponseCode::NXDomain, "the PTR goes too");

    // Renewed, then expired.
    let a = lease_with(&mut h, OTHER, vec![DhcpOption::Hostname("scratch".into())]);
    renew(&mut h, OTHER, a, "scratch");
    clock.fetch_add(u64::from(DEFAULT_LEASE) + 1, Ordering::Relaxed);
    h.tick(&mut vec![]);
    assert!(nx(&mut h, "scratch.cluster."), "expiry withdraws the name");
    assert_eq!(ptr_code(&mut h, a), ResponseCode::NXDomain);

    // Renewed, then DECLINEd.
    let a = lease_with(&mut h, OTHER, vec![DhcpOption::Hostname("scratch".into())]);
    renew(&mut h, OTHER, a, "scratch");
    let dec = dhcp_msg(
        OTHER,
        MessageType::Decline,
        vec![
            DhcpOption::ServerIdentifier(HUB_IP.into()),
            DhcpOption::RequestedIpAddress(a),
        ],
    );
    assert!(dhcp(&mut h, &dec).is_none());
    assert!(nx(&mut h, "scratch.cluster."), "DECLINE withdraws the name");

    // Renewed, then a new lease elsewhere under another name.
    let a = lease_with(&mut h, OTHER, vec![DhcpOption::Hostname("scratch".into())]);
    renew(&mut h, OTHER, a, "scratch");
    renew(&mut h, OTHER, a, "renamed");
    assert!(nx(&mut h, "scratch.cluster."), "a new name replaces the old one");
    assert_eq!(dns_a(&mut h, "renamed.cluster."), vec![a]);
    release(&mut h, OTHER, a);
    assert!(nx(&mut h, "renamed.cluster."));

    // A reservation's configured name stays after its lease, renewed, is released.
    let m = lease(&mut h, MASTER);
    renew(&mut h, MASTER, m, "master");
    renew(&mut h, MASTER, m, "master");
    release(&mut h, MASTER, m);
    assert_eq!(dns_a(&mut h, "master.cluster."), vec![m]);
    assert_eq!(ptr_code(&mut h, m), ResponseCode::NoError);
}

/// Frames to the hub's MAC (or broadcast) from a group or all-zero source MAC
/// get no reply, whatever the protocol, and are counted.
#[test]
fn frames_from_group_or_null_source_macs_are_dropped_and_counted() {
    const GROUP: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];
    const BCAST: [u8; 6] = [0xff; 6];
    const NULL: [u8; 6] = [0; 6];
    let arp = |src: [u8; 6], dst: [u8; 6]| -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[10, 0, 3, 101, 0, 0, 0, 0, 0, 0, 10, 0, 3, 1]);
        f
    };
    let echo = |src: [u8; 6]| -> Vec<u8> {
        let b = PacketBuilder::ethernet2(src, HUB_MAC)
            .ipv4([10, 0, 3, 101], HUB_IP, 64)
            .icmpv4_echo_request(1, 1);
        let mut v = vec![];
        b.write(&mut v, b"x").unwrap();
        v
    };
    let discover = |src: [u8; 6], dst: [u8; 6]| -> Vec<u8> {
        let m = dhcp_msg(src, MessageType::Discover, vec![]);
        udp(src, dst, [0; 4], [255; 4], 68, 67, &m.to_vec().unwrap())
    };
    let mut h = host();
    // The same frames from a unicast source are answered.
    assert_eq!(run(&mut h, &arp(MASTER, HUB_MAC)).len(), 1);
    assert_eq!(run(&mut h, &echo(MASTER)).len(), 1);
    assert_eq!(run(&mut h, &discover(OTHER, HUB_MAC)).len(), 1);
    let before = h.stats();
    let mut n = 0;
    for src in [GROUP, BCAST, NULL] {
        for f in [
            arp(src, HUB_MAC),
            arp(src, BCAST),
            echo(src),
            discover(src, HUB_MAC),
            discover(src, BCAST),
        ] {
            assert!(run(&mut h, &f).is_empty(), "answered a frame from {src:02x?}");
            n += 1;
        }
    }
    let after = h.stats();
    assert_eq!(after.bad_source_frames, n);
    assert_eq!(
        (after.arp_replies, after.icmp_replies, after.dhcp_in, after.dhcp_out),
        (before.arp_replies, before.icmp_replies, before.dhcp_in, before.dhcp_out),
        "no protocol saw them"
    );
}

/// SIGHUP's swap (`Host::replace_file_entries`): file-given records and
/// reservations replace the previous file-given ones, the flags' stay, and a
/// lease that now conflicts with a new reservation is kept until it ends.
#[test]
fn file_entries_are_replaced_and_leases_kept() {
    let mut h = host();
    let names = |h: &mut TestHost| h.dns_mut().names();
    let cfg = config();
    let (ok, refused) =
        cfg.accept_file_reservations(vec![parse_dhcp_host("52:54:00:aa:bb:cc,10.0.3.150,other").unwrap()]);
    assert!(refused.is_empty());
    h.replace_file_entries(vec![parse_host_record("web,10.0.3.7").unwrap()], ok);
    let n = names(&mut h);
    assert!(
        n.contains_key("web.") && n.contains_key("other.") && n.contains_key("gateway."),
        "{n:?}"
    );
    let (offer, _) = dhcp(&mut h, &dhcp_msg(OTHER, MessageType::Discover, vec![])).unwrap();
    assert_eq!(
        offer.yiaddr(),
        Ipv4Addr::new(10, 0, 3, 150),
        "the file's reservation is served"
    );
    let req = dhcp_msg(
        OTHER,
        MessageType::Request,
        vec![
            DhcpOption::ServerIdentifier(HUB_IP.into()),
            DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 3, 150)),
        ],
    );
    assert_eq!(mtype(&dhcp(&mut h, &req).unwrap().0), MessageType::Ack);

    // Edited files: web is now web2, OTHER is reserved another address.
    let (ok, _) = cfg.accept_file_reservations(vec![parse_dhcp_host("52:54:00:aa:bb:cc,10.0.3.160,other2").unwrap()]);
    h.replace_file_entries(vec![parse_host_record("web2,10.0.3.8").unwrap()], ok);
    let n = names(&mut h);
    assert!(!n.contains_key("web.") && n.contains_key("web2."), "{n:?}");
    assert!(
        n.contains_key("gateway.") && n.contains_key("master."),
        "the flags' names stay: {n:?}"
    );
    let lease = h.dhcp().leases().get(&LeaseKey::Mac(MacAddr(OTHER))).unwrap();
    assert_eq!(
        lease.ip,
        Ipv4Addr::new(10, 0, 3, 150),
        "the live lease stays until it ends"
    );
    let (offer, _) = dhcp(&mut h, &dhcp_msg(MASTER, MessageType::Discover, vec![])).unwrap();
    assert_eq!(
        offer.yiaddr(),
        Ipv4Addr::new(10, 0, 3, 101),
        "the flags' reservation stays"
    );

    // Files emptied: only the flags' entries remain.
    h.replace_file_entries(vec![], vec![]);
    let n = names(&mut h);
    assert!(!n.contains_key("web2.") && !n.contains_key("other2."), "{n:?}");
}

/// File reservations are checked against the flags' and each other; the bad
/// ones are refused with the reason, the rest kept.
#[test]
fn file_reservations_checked_against_the_flags() {
    let cfg = config();
    let (ok, refused) = cfg.accept_file_reservations(vec![
        parse_dhcp_host("00:00:00:11:11:11,10.0.3.120").unwrap(),
        parse_dhcp_host("52:54:00:00:00:01,10.0.3.121").unwrap(),
        parse_dhcp_host("52:54:00:00:00:02,10.0.3.121").unwrap(),
        parse_dhcp_host("52:54:00:00:00:03,192.0.2.9").unwrap(),
        parse_dhcp_host("52:54:00:00:00:04,[fd00::4]").unwrap(),
        parse_dhcp_host("52:54:00:00:00:05,[fd00::4]").unwrap(),
    ]);
    assert_eq!(
        ok.len(),
        2,
        "an [IPv6] reservation is taken, as dnsmasq's files: {ok:?}"
    );
    assert_eq!(ok[0].ip, Some(Ipv4Addr::new(10, 0, 3, 121)));
    assert_eq!(ok[1].ip6, Some("fd00::4".parse().unwrap()));
    assert_eq!(refused.len(), 4, "{refused:?}");
}

/// Runtime reservations (`Host::replace_api_reservations`, the API's source):
/// the name resolves at once; a client holding a pool lease at another
/// address is NAKed on its RENEW, as for a `--dhcp-host` that differs from
/// a lease, then DISCOVERs and gets the reserved address with the reserved
/// name; one clashing with a flag's reservation is ignored; removing it
/// withdraws its name, and the flags' and files' reservations stay.
#[test]
fn api_reservations_take_effect_on_the_next_exchange() {
    let mut h = host();
    let pool = lease(&mut h, OTHER);
    assert_ne!(pool, ip(170));
    let api = vec![
        parse_dhcp_host("52:54:00:aa:bb:cc,10.0.3.170,apinode").unwrap(),
        // MASTER's MAC is a flag's: ignored.
        parse_dhcp_host("00:00:00:11:11:11,10.0.3.171,stolen").unwrap(),
    ];
    h.replace_api_reservations(api);
    let sources: Vec<_> = h.reservations().map(|(s, r)| (s, r.hostname.clone())).collect();
    assert!(
        sources.contains(&(ReservationSource::Api, Some("apinode".into()))),
        "{sources:?}"
    );
    assert_eq!(dns_a(&mut h, "apinode.cluster."), vec![ip(170)]);
    assert!(dns_a(&mut h, "stolen.cluster.").is_empty(), "a flag's MAC wins");
    // RENEW of the pool lease: NAK.
    let mut renew = dhcp_msg(OTHER, MessageType::Request, vec![]);
    renew.set_ciaddr(pool);
    assert_eq!(mtype(&dhcp(&mut h, &renew).unwrap().0), MessageType::Nak);
    // DISCOVER, then REQUEST: the reserved address, with its name.
    let (offer, _) = dhcp(&mut h, &dhcp_msg(OTHER, MessageType::Discover, vec![])).unwrap();
    assert_eq!(offer.yiaddr(), ip(170));
    let req = dhcp_msg(
        OTHER,
        MessageType::Request,
        vec![
            DhcpOption::ServerIdentifier(HUB_IP.into()),
            DhcpOption::RequestedIpAddress(ip(170)),
        ],
    );
    assert_eq!(mtype(&dhcp(&mut h, &req).unwrap().0), MessageType::Ack);
    let l = h.dhcp().leases().get(&LeaseKey::Mac(MacAddr(OTHER))).unwrap();
    assert_eq!((l.ip, l.hostname.as_deref()), (ip(170), Some("apinode")));
    // MASTER still gets its flag's address.
    let (offer, _) = dhcp(&mut h, &dhcp_msg(MASTER, MessageType::Discover, vec![])).unwrap();
    assert_eq!(offer.yiaddr(), ip(101));
    // Removed: the reserved name goes with it (the lease's own name stays while it lives).
    h.replace_api_reservations(vec![]);
    assert!(h.reservations().all(|(s, _)| s != ReservationSource::Api));
    let (offer, _) = dhcp(
        &mut h,
        &dhcp_msg([0x52, 0x54, 0, 1, 2, 3], MessageType::Discover, vec![]),
    )
    .unwrap();
    assert_ne!(offer.yiaddr(), ip(170), "still leased to OTHER");
}
