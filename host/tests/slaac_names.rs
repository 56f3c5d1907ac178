//! SLAAC names (issue 12, host/src/slaac_names.rs), driven with frames as
//! byte vectors through `Host::handle_frame` and its timers: a DAD probe
//! (RFC 4862 section 5.4.2) from a station with a named DHCPv4 lease makes
//! its address answer AAAA and PTR through the host's DNS; a Neighbor
//! Advertisement (RFC 4861 section 4.4) from another MAC moves the
//! address; an address not seen for the range's lease time is probed with a
//! unicast Neighbor Solicitation and goes when that is not answered (a
//! packet to the host, or the answer, refreshes it); releasing the DHCPv4 lease withdraws the
//! name; at most 8 addresses per MAC; a target link-layer option naming
//! another MAC, link-local and out-of-prefix addresses, and a DHCPv6
//! reservation's address are ignored; random NDP and RA messages with
//! valid checksums never panic the host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Message, MessageType};
use dhcproto::Encodable;
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use hickory_proto::op::{Message as DnsMessage, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use proptest::prelude::*;
use vmlan_host::config::*;
use vmlan_host::dns::server::ptr_name;
use vmlan_host::leases::LeaseDb;
use vmlan_host::slaac_names::{PER_MAC_MAX, PROBE_WAIT};
use vmlan_host::{Host, HostConfig};
use vmlan_hub::{LocalHost, MacAddr};

const HUB_MAC: [u8; 6] = [0x02, 0x76, 0x6d, 0, 3, 1];
const HUB_GLOBAL: &str = "1234::76:6dff:fe00:301";
const A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0a];
const B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0b];
/// Asks the DNS questions (over IPv4); never seen on IPv6.
const ASKER: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0c];
/// Reserved with `[1234::5]` (DHCPv6) and the name `res6`.
const RES6: [u8; 6] = [0x52, 0x54, 0, 0, 0, 5];
/// Reserved with a name only (DHCPv4 reservation name `named7`).
const NAMED: [u8; 6] = [0x52, 0x54, 0, 0, 0, 7];
/// A's SLAAC address in 1234::/64 (modified EUI-64).
const A6: &str = "1234::5054:ff:fe00:a";
const T0: u64 = 1_700_000_000;

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn config() -> HostConfig {
    let c = HostConfig {
        ranges: vec![parse_dhcp_range("10.0.3.100,10.0.3.200").unwrap()],
        ranges6: vec![parse_dhcp_range6("1234::,ra-only,64,1h").unwrap()],
        enable_ra: true,
        reservations: vec![
            parse_dhcp_host("52:54:00:00:00:05,[1234::5],res6").unwrap(),
            parse_dhcp_host("52:54:00:00:00:07,named7").unwrap(),
        ],
        domain: Some("cluster".into()),
        ..HostConfig::new(parse_addr("10.0.3.1/24").unwrap())
    };
    c.validate().unwrap();
    c
}

fn host() -> (Host, Instant) {
    let now = Instant::now();
    (Host::new(&config(), LeaseDb::in_memory(), now, T0), now)
}

fn run(h: &mut Host, now: Instant, f: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    h.handle_frame(now, f, &mut out);
    out
}

/// The solicited-node group and its MAC for `target`.
fn solicited(target: Ipv6Addr) -> (Ipv6Addr, [u8; 6]) {
    let o = target.octets();
    let g = Ipv6Addr::from((0xff02u128 << 112) | 0x1_ff00_0000 | (u128::from(target) & 0xff_ffff));
    (g, [0x33, 0x33, 0xff, o[13], o[14], o[15]])
}

/// An ICMPv6 frame from `mac`, hop limit 255.
fn icmp6(mac: [u8; 6], dst_mac: [u8; 6], src: Ipv6Addr, dst: Ipv6Addr, ty: u8, b58: [u8; 4], body: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac, dst_mac)
        .ipv6(src.octets(), dst.octets(), 255)
        .icmpv6_raw(ty, 0, b58);
    let mut f = Vec::new();
    b.write(&mut f, body).unwrap();
    f
}

/// A DAD probe from `mac` for `target` (RFC 4862 section 5.4.2: from `::`
/// to the target's solicited-node group, no source link-layer option).
fn dad(mac: [u8; 6], target: &str) -> Vec<u8> {
    let t = ip(target);
    let (g, gmac) = solicited(t);
    icmp6(mac, gmac, Ipv6Addr::UNSPECIFIED, g, 135, [0; 4], &t.octets())
}

/// An unsolicited Neighbor Advertisement from `mac` for `target` to
/// all-nodes, O flag, with a target link-layer option of `tlla` if given.
fn na(mac: [u8; 6], target: &str, tlla: Option<[u8; 6]>) -> Vec<u8> {
    let t = ip(target);
    let mut body = t.octets().to_vec();
    if let Some(m) = tlla {
        body.extend_from_slice(&[2, 1]);
        body.extend_from_slice(&m);
    }
    icmp6(
        mac,
        [0x33, 0x33, 0, 0, 0, 1],
        t,
        ip("ff02::1"),
        136,
        [0x20, 0, 0, 0],
        &body,
    )
}

/// An echo request from `mac` at `src` to the host's global address.
fn echo(mac: [u8; 6], src: &str) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac, HUB_MAC)
        .ipv6(ip(src).octets(), ip(HUB_GLOBAL).octets(), 64)
        .icmpv6_echo_request(1, 1);
    let mut f = Vec::new();
    b.write(&mut f, b"x").unwrap();
    f
}

/// A DHCPv4 message from `mac`, broadcast.
fn dhcp4(
    h: &mut Host,
    now: Instant,
    mac: [u8; 6],
    mtype: MessageType,
    opts: Vec<DhcpOption>,
    ciaddr: Ipv4Addr,
) -> Option<Message> {
    let mut m = Message::new_with_id(
        1,
        ciaddr,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac,
    );
    m.opts_mut().insert(DhcpOption::MessageType(mtype));
    for o in opts {
        m.opts_mut().insert(o);
    }
    let b = PacketBuilder::ethernet2(mac, [0xff; 6])
        .ipv4(ciaddr.octets(), [255; 4], 64)
        .udp(68, 67);
    let mut f = Vec::new();
    b.write(&mut f, &m.to_vec().unwrap()).unwrap();
    let out = run(h, now, &f);
    let f = out.first()?;
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        panic!("not UDP")
    };
    Some(dhcproto::Decodable::decode(&mut dhcproto::Decoder::new(u.payload())).unwrap())
}

/// Leases an IPv4 address to `mac`, sending `name` as option 12.
fn lease(h: &mut Host, now: Instant, mac: [u8; 6], name: &str) -> Ipv4Addr {
    let name = DhcpOption::Hostname(name.into());
    let offer = dhcp4(
        h,
        now,
        mac,
        MessageType::Discover,
        vec![name.clone()],
        Ipv4Addr::UNSPECIFIED,
    )
    .expect("an OFFER");
    let req = vec![
        DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 3, 1)),
        DhcpOption::RequestedIpAddress(offer.yiaddr()),
        name,
    ];
    let ack = dhcp4(h, now, mac, MessageType::Request, req, Ipv4Addr::UNSPECIFIED).expect("an ACK");
    ack.yiaddr()
}

/// RELEASE of `ip` by `mac`.
fn release(h: &mut Host, now: Instant, mac: [u8; 6], ip: Ipv4Addr) {
    let opts = vec![DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 3, 1))];
    assert!(dhcp4(h, now, mac, MessageType::Release, opts, ip).is_none());
}

/// The answer records' data for `name`/`rtype`, asked by ASKER over IPv4.
fn ask(h: &mut Host, now: Instant, name: &str, rtype: RecordType) -> Vec<RData> {
    let mut q = DnsMessage::query();
    q.metadata.id = 7;
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
    let b = PacketBuilder::ethernet2(ASKER, HUB_MAC)
        .ipv4([10, 0, 3, 150], [10, 0, 3, 1], 64)
        .udp(40000, 53);
    let mut f = Vec::new();
    b.write(&mut f, &q.to_bytes().unwrap()).unwrap();
    let out = run(h, now, &f);
    assert_eq!(out.len(), 1, "one answer for {name}");
    let p = SlicedPacket::from_ethernet(&out[0]).unwrap();
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        panic!("not UDP")
    };
    DnsMessage::from_bytes(u.payload())
        .unwrap()
        .answers
        .into_iter()
        .map(|r| r.data)
        .collect()
}

fn aaaa(h: &mut Host, now: Instant, name: &str) -> Vec<Ipv6Addr> {
    ask(h, now, name, RecordType::AAAA)
        .into_iter()
        .filter_map(|d| match d {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

fn ptr(h: &mut Host, now: Instant, addr: &str) -> Vec<String> {
    let n = ptr_name(IpAddr::V6(ip(addr))).to_string();
    ask(h, now, &n, RecordType::PTR)
        .into_iter()
        .filter_map(|d| match d {
            RData::PTR(p) => Some(p.0.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn dad_probe_of_a_named_dhcpv4_client_answers_aaaa_and_ptr() {
    let (mut h, now) = host();
    lease(&mut h, now, A, "alpha");
    assert!(aaaa(&mut h, now, "alpha").is_empty());
    assert!(
        run(&mut h, now, &dad(A, A6)).is_empty(),
        "a DAD probe for another's address is not answered"
    );
    assert_eq!(aaaa(&mut h, now, "alpha"), [ip(A6)]);
    assert_eq!(aaaa(&mut h, now, "alpha.cluster"), [ip(A6)]);
    assert_eq!(ptr(&mut h, now, A6), ["alpha.cluster."]);
    assert_eq!(h.slaac_names().addresses(MacAddr(A)), [ip(A6)]);

    // Seen before it had a name: published when its lease binds.
    let b6 = "1234::5054:ff:fe00:b";
    run(&mut h, now, &na(B, b6, Some(B)));
    assert!(aaaa(&mut h, now, "beta").is_empty());
    lease(&mut h, now, B, "beta");
    assert_eq!(aaaa(&mut h, now, "beta"), [ip(b6)]);

    // A DHCPv4 reservation's name needs no lease; a packet to the host is a sighting.
    run(&mut h, now, &echo(NAMED, "1234::77"));
    assert_eq!(aaaa(&mut h, now, "named7"), [ip("1234::77")]);
    assert_eq!(ptr(&mut h, now, "1234::77"), ["named7.cluster."]);
    let s = h.stats().slaac;
    assert_eq!((s.sightings, s.moved, s.evicted, s.refused), (3, 0, 0, 0));
    assert!(
        h.report().contains("slaac addresses 3 named 3 seen 3 moved 0"),
        "{}",
        h.report()
    );
}

#[test]
fn an_advertisement_from_another_mac_moves_the_address() {
    let (mut h, now) = host();
    lease(&mut h, now, A, "alpha");
    lease(&mut h, now, B, "beta");
    run(&mut h, now, &dad(A, A6));
    assert_eq!(aaaa(&mut h, now, "alpha"), [ip(A6)]);
    // B advertises A's address (without a link-layer option): it moved.
    run(&mut h, now, &na(B, A6, None));
    assert!(aaaa(&mut h, now, "alpha").is_empty());
    assert_eq!(aaaa(&mut h, now, "beta"), [ip(A6)]);
    assert_eq!(ptr(&mut h, now, A6), ["beta.cluster."]);
    // A defends it: the newest wins.
    run(&mut h, now, &na(A, A6, Some(A)));
    assert_eq!(aaaa(&mut h, now, "alpha"), [ip(A6)]);
    assert!(aaaa(&mut h, now, "beta").is_empty());
    assert_eq!(h.stats().slaac.moved, 2);

    // An advertisement whose target link-layer option is not its frame's source: ignored.
    run(&mut h, now, &na(B, A6, Some(A)));
    assert_eq!(aaaa(&mut h, now, "alpha"), [ip(A6)]);
    assert!(aaaa(&mut h, now, "beta").is_empty());
    assert_eq!(h.stats().slaac.mismatched, 1);
    // Also when sent unicast to the host.
    let mut body = ip("1234::b1").octets().to_vec();
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&A);
    run(
        &mut h,
        now,
        &icmp6(B, HUB_MAC, ip("1234::b1"), ip(HUB_GLOBAL), 136, [0x60, 0, 0, 0], &body),
    );
    assert!(aaaa(&mut h, now, "beta").is_empty());
    assert_eq!(h.stats().slaac.mismatched, 2);
    // Likewise a solicitation whose source link-layer option names another MAC.
    let (g, gmac) = solicited(ip("1234::99"));
    let mut body = ip("1234::99").octets().to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&A);
    run(&mut h, now, &icmp6(B, gmac, ip("1234::b0"), g, 135, [0; 4], &body));
    assert!(aaaa(&mut h, now, "beta").is_empty());
    assert_eq!(h.stats().slaac.mismatched, 3);
    // A solicitation from a global source with B's own option: B uses its source.
    body.truncate(18);
    body.extend_from_slice(&B);
    run(&mut h, now, &icmp6(B, gmac, ip("1234::b0"), g, 135, [0; 4], &body));
    assert_eq!(aaaa(&mut h, now, "beta"), [ip("1234::b0")]);
}

#[test]
fn addresses_expire_unseen_and_go_with_the_name() {
    let (mut h, t0) = host();
    let ip4 = lease(&mut h, t0, A, "alpha");
    run(&mut h, t0, &dad(A, A6));
    // The range's lease time (1h) is the address's lifetime: a sighting at
    // 30 min (a packet to the host) carries it past the first hour.
    let mut out = Vec::new();
    h.handle_timeout(t0, &mut out);
    let t30 = t0 + Duration::from_secs(1800);
    run(&mut h, t30, &echo(A, A6));
    assert_eq!(h.stats().slaac.sightings, 2);
    let t59 = t0 + Duration::from_secs(3540);
    h.handle_timeout(t59, &mut out);
    assert_eq!(aaaa(&mut h, t59, "alpha"), [ip(A6)]);
    release(&mut h, t59, A, ip4);
    assert!(aaaa(&mut h, t59, "alpha").is_empty(), "released: the name goes");
    assert_eq!(h.slaac_names().addresses(MacAddr(A)), [ip(A6)], "still observed");
    lease(&mut h, t59, A, "alpha2");
    assert_eq!(aaaa(&mut h, t59, "alpha2"), [ip(A6)]);
    assert_eq!(ptr(&mut h, t59, A6), ["alpha2.cluster."]);
    // Not seen again: at 30 min + 1 h, when its timer says, the host asks A
    // (a unicast Neighbor Solicitation from its address in the prefix).
    let due = t30 + Duration::from_secs(3600);
    let (t, sent) = timers_until(&mut h, due);
    assert_eq!(t, Some(due), "the address's deadline is a timer");
    let probes: Vec<_> = sent.iter().filter(|f| f[..6] == A).collect();
    assert_eq!(probes.len(), 1, "one probe to A: {sent:02x?}");
    let (dst_mac, src, dst, ty, body) = read(probes[0]);
    assert_eq!((dst_mac, src, dst, ty), (A, ip(HUB_GLOBAL), ip(A6), 135));
    assert_eq!(body[..16], ip(A6).octets());
    assert_eq!(body[16..], [1, 1, 2, 0x76, 0x6d, 0, 3, 1]);
    assert_eq!(aaaa(&mut h, due, "alpha2"), [ip(A6)], "named while probed");
    // A answers (solicited advertisement to the host): the address lives on.
    let answer = {
        let mut body = ip(A6).octets().to_vec();
        body.extend_from_slice(&[2, 1]);
        body.extend_from_slice(&A);
        icmp6(A, HUB_MAC, ip(A6), ip(HUB_GLOBAL), 136, [0x60, 0, 0, 0], &body)
    };
    let t1 = due + Duration::from_secs(1);
    run(&mut h, t1, &answer);
    let (_, sent) = timers_until(&mut h, due + Duration::from_secs(60));
    assert!(sent.iter().all(|f| f[..6] != A), "no second probe");
    assert_eq!(h.slaac_names().addresses(MacAddr(A)), [ip(A6)]);
    assert_eq!(ptr(&mut h, t1, A6), ["alpha2.cluster."]);
    // An hour on, the next probe goes unanswered: gone 5 s later.
    let due2 = t1 + Duration::from_secs(3600);
    let (_, sent) = timers_until(&mut h, due2);
    assert_eq!(sent.iter().filter(|f| f[..6] == A).count(), 1);
    assert_eq!(h.slaac_names().len(), 1);
    let (t, _) = timers_until(&mut h, due2 + PROBE_WAIT);
    assert_eq!(t, Some(due2 + PROBE_WAIT));
    let t = due2 + PROBE_WAIT;
    assert!(ptr(&mut h, t, A6).is_empty());
    assert!(h.slaac_names().is_empty());
    let s = h.stats().slaac;
    assert_eq!((s.probes, s.expired, s.sightings), (2, 1, 3));
}

/// Runs the host's timers as they fall due up to `until`: the last instant
/// run and the frames sent.
fn timers_until(h: &mut Host, until: Instant) -> (Option<Instant>, Vec<Vec<u8>>) {
    let (mut t, mut out) = (None, Vec::new());
    for _ in 0..1000 {
        match h.poll_timeout() {
            Some(next) if next <= until => {
                t = Some(next);
                h.handle_timeout(next, &mut out);
            }
            _ => break,
        }
    }
    (t, out)
}

/// (Ethernet destination, IPv6 source, destination, ICMPv6 type, body) of an ICMPv6 frame.
fn read(f: &[u8]) -> ([u8; 6], Ipv6Addr, Ipv6Addr, u8, Vec<u8>) {
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let (Some(etherparse::NetSlice::Ipv6(i)), Some(TransportSlice::Icmpv6(m))) = (p.net, p.transport) else {
        panic!("not ICMPv6: {f:02x?}")
    };
    let h = i.header();
    assert!(m.is_checksum_valid(h.source_addr().octets(), h.destination_addr().octets()));
    assert_eq!(h.hop_limit(), 255);
    (
        f[0..6].try_into().unwrap(),
        h.source_addr(),
        h.destination_addr(),
        m.type_u8(),
        m.payload().to_vec(),
    )
}

#[test]
fn at_most_eight_addresses_per_mac() {
    let (mut h, now) = host();
    lease(&mut h, now, A, "alpha");
    for i in 0..(PER_MAC_MAX as u16 + 2) {
        // One second apart: the oldest ones go first.
        run(
            &mut h,
            now + Duration::from_secs(u64::from(i)),
            &dad(A, &format!("1234::a:{:x}", i + 1)),
        );
    }
    let later = now + Duration::from_secs(20);
    let mut got = aaaa(&mut h, later, "alpha");
    got.sort();
    let want: Vec<Ipv6Addr> = (3..=PER_MAC_MAX as u16 + 2)
        .map(|i| ip(&format!("1234::a:{i:x}")))
        .collect();
    assert_eq!(got, want);
    assert_eq!(h.stats().slaac.evicted, 2);
    assert_eq!(h.slaac_names().len(), PER_MAC_MAX);
}

#[test]
fn link_local_foreign_prefix_and_dhcpv6_reserved_addresses_are_not_named() {
    let (mut h, now) = host();
    lease(&mut h, now, A, "alpha");
    run(&mut h, now, &dad(A, "fe80::5054:ff:fe00:a"));
    run(&mut h, now, &na(A, "4321::5054:ff:fe00:a", Some(A)));
    run(&mut h, now, &echo(A, "4321::1"));
    // The host's own address: never A's.
    run(&mut h, now, &na(A, HUB_GLOBAL, Some(A)));
    // RES6's DHCPv6 reservation wins over A's advertisement.
    run(&mut h, now, &na(A, "1234::5", Some(A)));
    assert!(aaaa(&mut h, now, "alpha").is_empty());
    assert!(h.slaac_names().is_empty());
    assert_eq!(h.stats().slaac.refused, 1);
    assert_eq!(h.stats().slaac.sightings, 0);
    // The reservation's own MAC may use it.
    run(&mut h, now, &na(RES6, "1234::5", Some(RES6)));
    assert_eq!(h.slaac_names().addresses(MacAddr(RES6)), [ip("1234::5")]);
    // Published by the reservation and by the sighting: one record.
    assert_eq!(aaaa(&mut h, now, "res6"), [ip("1234::5")]);
    // Its SLAAC address is recorded but not named: an [IPv6] reservation pins its name.
    run(&mut h, now, &dad(RES6, "1234::5054:ff:fe00:5"));
    assert_eq!(h.slaac_names().addresses(MacAddr(RES6)).len(), 2);
    assert_eq!(aaaa(&mut h, now, "res6"), [ip("1234::5")]);
    // Invalid NDP (hop limit not 255) teaches nothing.
    let mut f = dad(A, "1234::a:1");
    f[14 + 7] = 64;
    run(&mut h, now, &f);
    assert!(aaaa(&mut h, now, "alpha").is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any NS/NA/RS/RA/redirect with a valid checksum, to any of the groups the host
    /// listens on or another node's, never panics the host, and it still answers.
    #[test]
    fn random_ndp_messages_never_panic(
        ty in 133u8..=137,
        code in prop_oneof![Just(0u8), any::<u8>()],
        b58 in any::<[u8; 4]>(),
        hop in prop_oneof![Just(255u8), any::<u8>()],
        src in prop_oneof![Just(Ipv6Addr::UNSPECIFIED), Just(ip("1234::1")), Just(ip("fe80::1")), any::<u128>().prop_map(Ipv6Addr::from)],
        dst in prop_oneof![Just(ip("ff02::1")), Just(ip("ff02::1:ff00:1")), Just(ip(HUB_GLOBAL)), Just(ip("ff02::2"))],
        mut body in proptest::collection::vec(any::<u8>(), 0..120),
        target_in_prefix in any::<bool>(),
        mac_last in any::<u8>(),
    ) {
        let (mut h, now) = host();
        if target_in_prefix && body.len() >= 16 {
            body[..8].copy_from_slice(&ip("1234::").octets()[..8]);
        }
        let mac = [0x52, 0x54, 0, 0, 1, mac_last];
        let b = PacketBuilder::ethernet2(mac, [0x33, 0x33, 0, 0, 0, 1])
            .ipv6(src.octets(), dst.octets(), hop)
            .icmpv6_raw(ty, code, b58);
        let mut f = Vec::new();
        b.write(&mut f, &body).unwrap();
        let mut out = Vec::new();
        h.handle_frame(now, &f, &mut out);
        h.handle_timeout(now + Duration::from_secs(7200), &mut out);
        prop_assert!(h.slaac_names().len() <= 1);
        prop_assert_eq!(aaaa(&mut h, now, "named7").len(), 0);
        let _ = h.report();
    }
}

/// A DHCPv6 client message (RFC 8415) from `mac` with its DUID-LL, to
/// `ff02::1:2` from its link-local address; the reply's first IA_NA address.
fn dhcp6(
    h: &mut Host,
    now: Instant,
    mac: [u8; 6],
    t: dhcproto::v6::MessageType,
    opts: Vec<dhcproto::v6::DhcpOption>,
) -> Option<Ipv6Addr> {
    use dhcproto::v6::{DhcpOption as O, Message as M, OptionCode};
    let mut m = M::new_with_id(t, [1, 2, 3]);
    m.opts_mut()
        .insert(O::ClientId(vmlan_host::dhcp6::duid_ll(MacAddr(mac))));
    for o in opts {
        m.opts_mut().insert(o);
    }
    let b = PacketBuilder::ethernet2(mac, [0x33, 0x33, 0, 1, 0, 2])
        .ipv6(
            vmlan_host::ipv6::link_local(MacAddr(mac)).octets(),
            ip("ff02::1:2").octets(),
            1,
        )
        .udp(546, 547);
    let mut f = Vec::new();
    b.write(&mut f, &m.to_vec().unwrap()).unwrap();
    let out = run(h, now, &f);
    let p = SlicedPacket::from_ethernet(out.first()?).unwrap();
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        panic!("not UDP")
    };
    let r: M = dhcproto::Decodable::decode(&mut dhcproto::Decoder::new(u.payload())).unwrap();
    let Some(O::IANA(ia)) = r.opts().get(OptionCode::IANA) else {
        return None;
    };
    let addr = ia.opts.iter().find_map(|o| match o {
        O::IAAddr(a) => Some(a.addr),
        _ => None,
    });
    addr
}

#[test]
fn dhcpv6_lease_names_and_claims() {
    use dhcproto::v6::{DhcpOption as O, IAAddr, MessageType as T, IANA};
    const D: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0d];
    let mut c = config();
    c.ranges6 = vec![parse_dhcp_range6("1234::100,1234::1ff,slaac,64,1h").unwrap()];
    // A DUID-only reservation with a name: D's DHCPv6 lease is named, not its MAC.
    c.reservations
        .push(parse_dhcp_host("id:00:03:00:01:52:54:00:00:00:0d,named13").unwrap());
    c.validate().unwrap();
    let now = Instant::now();
    let mut h = Host::new(&c, LeaseDb::in_memory(), now, T0);
    let ia = |addr: Option<Ipv6Addr>| {
        O::IANA(IANA {
            id: 1,
            t1: 0,
            t2: 0,
            opts: addr
                .into_iter()
                .map(|a| {
                    O::IAAddr(IAAddr {
                        addr: a,
                        preferred_life: 0,
                        valid_life: 0,
                        opts: Default::default(),
                    })
                })
                .collect(),
        })
    };
    // D's SLAAC address, seen before its DHCPv6 lease: unnamed.
    let d6 = "1234::5054:ff:fe00:d";
    run(&mut h, now, &dad(D, d6));
    assert!(aaaa(&mut h, now, "named13").is_empty());
    let offered = dhcp6(&mut h, now, D, T::Solicit, vec![ia(None)]).expect("an ADVERTISE");
    // Meanwhile A claims the offered address: A's, until the lease binds.
    lease(&mut h, now, A, "alpha");
    run(&mut h, now, &na(A, &offered.to_string(), Some(A)));
    assert_eq!(aaaa(&mut h, now, "alpha"), [offered]);
    let sid = O::ServerId(vmlan_host::dhcp6::duid_ll(MacAddr(HUB_MAC)));
    let bound = dhcp6(&mut h, now, D, T::Request, vec![sid, ia(Some(offered))]).expect("a REPLY");
    assert_eq!(bound, offered);
    // The lease wins over A's sighting; its name now names D's SLAAC address too.
    assert!(aaaa(&mut h, now, "alpha").is_empty());
    let mut got = aaaa(&mut h, now, "named13");
    got.sort();
    let mut want = vec![offered, ip(d6)];
    want.sort();
    assert_eq!(got, want);
    // A's further claims are refused while the lease lives.
    run(&mut h, now, &na(A, &offered.to_string(), Some(A)));
    assert!(aaaa(&mut h, now, "alpha").is_empty());
    assert_eq!(h.stats().slaac.refused, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any sequence of sightings (DAD probes, advertisements, packets to the
    /// host) from a few MACs over a few addresses, with time passing: each
    /// MAC holds at most 8 addresses, no address is held by two MACs, and
    /// each named MAC's AAAA records are exactly the addresses held for it.
    #[test]
    fn sightings_keep_names_and_records_consistent(
        steps in proptest::collection::vec((0usize..4, 0u16..24, 0u8..3, 0u64..1200), 1..60),
    ) {
        let mut c = config();
        c.reservations.clear();
        let macs: Vec<[u8; 6]> = (0..4u8).map(|i| [0x52, 0x54, 0, 0, 2, i]).collect();
        for (i, m) in macs.iter().enumerate() {
            let mac = MacAddr(*m);
            c.reservations.push(parse_dhcp_host(&format!("{mac},n{i}")).unwrap());
        }
        let t0 = Instant::now();
        let mut h = Host::new(&c, LeaseDb::in_memory(), t0, T0);
        let mut now = t0;
        let mut out = Vec::new();
        for (m, a, kind, dt) in steps {
            now += Duration::from_secs(dt);
            h.handle_timeout(now, &mut out);
            let addr = format!("1234::f:{a:x}");
            let f = match kind {
                0 => dad(macs[m], &addr),
                1 => na(macs[m], &addr, Some(macs[m])),
                _ => echo(macs[m], &addr),
            };
            run(&mut h, now, &f);
        }
        let mut seen = std::collections::HashSet::new();
        for (i, m) in macs.iter().enumerate() {
            let mut held = h.slaac_names().addresses(MacAddr(*m)).to_vec();
            prop_assert!(held.len() <= PER_MAC_MAX);
            for a in &held {
                prop_assert!(seen.insert(*a), "{} held twice", a);
            }
            held.sort();
            let mut named = aaaa(&mut h, now, &format!("n{i}"));
            named.sort();
            prop_assert_eq!(named, held);
        }
        prop_assert_eq!(seen.len(), h.slaac_names().len());
    }
}
