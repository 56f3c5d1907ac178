//! The hub's host on IPv6, driven with frames as byte vectors through
//! `Host::handle_frame` and its timers: its addresses, Neighbor
//! Advertisements for them (unicast, solicited-node, DAD), ICMPv6 echo on
//! both, router advertisements answering solicitations and on the
//! schedule (only with `--enable-ra` and an IPv6 range), and ICMPv6 with a
//! bad checksum dropped and counted.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use etherparse::{Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use vmlan_host::config::*;
use vmlan_host::leases::LeaseDb;
use vmlan_host::{Host, HostConfig};
use vmlan_hub::{LocalHost, MacAddr};

const PEER_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
const HUB_MAC: [u8; 6] = [0x02, 0x76, 0x6d, 0, 3, 1];
const PEER: &str = "fe80::5054:ff:fe12:3456";
const HUB_LL: &str = "fe80::76:6dff:fe00:301";
const HUB_GLOBAL: &str = "1234::76:6dff:fe00:301";

fn config(ranges6: &[&str], enable_ra: bool) -> HostConfig {
    let c = HostConfig {
        ranges: vec![parse_dhcp_range("10.0.3.100,10.0.3.200").unwrap()],
        ranges6: ranges6.iter().map(|r| parse_dhcp_range6(r).unwrap()).collect(),
        enable_ra,
        domain: Some("cluster".into()),
        ..HostConfig::new(parse_addr("10.0.3.1/24").unwrap())
    };
    c.validate().unwrap();
    c
}

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// An ICMPv6 frame from the peer: type, code, bytes 5 to 8, body; `hop` the hop limit.
fn icmp6(dst_mac: [u8; 6], src: &str, dst: &str, hop: u8, (ty, code, b58): (u8, u8, [u8; 4]), body: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(PEER_MAC, dst_mac)
        .ipv6(ip(src).octets(), ip(dst).octets(), hop)
        .icmpv6_raw(ty, code, b58);
    let mut f = Vec::new();
    b.write(&mut f, body).unwrap();
    f
}

/// A Neighbor Solicitation for `target` with the peer's link-layer address.
fn ns(src: &str, dst: &str, target: &str) -> Vec<u8> {
    let dst_ip = ip(dst);
    let o = dst_ip.octets();
    let dst_mac = if dst_ip.is_multicast() {
        [0x33, 0x33, o[12], o[13], o[14], o[15]]
    } else {
        HUB_MAC
    };
    let mut body = ip(target).octets().to_vec();
    if src != "::" {
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&PEER_MAC);
    }
    icmp6(dst_mac, src, dst, 255, (135, 0, [0; 4]), &body)
}

/// (Ethernet destination, IPv6 source, destination, ICMPv6 type, bytes 5 to 8, body) of `f`.
fn read(f: &[u8]) -> ([u8; 6], Ipv6Addr, Ipv6Addr, u8, [u8; 4], Vec<u8>) {
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let (Some(NetSlice::Ipv6(i)), Some(TransportSlice::Icmpv6(m))) = (p.net, p.transport) else {
        panic!("not ICMPv6: {f:02x?}")
    };
    let h = i.header();
    assert!(m.is_checksum_valid(h.source_addr().octets(), h.destination_addr().octets()));
    (
        f[0..6].try_into().unwrap(),
        h.source_addr(),
        h.destination_addr(),
        m.type_u8(),
        m.bytes5to8(),
        m.payload().to_vec(),
    )
}

fn run(h: &mut Host, now: Instant, f: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    h.handle_frame(now, f, &mut out);
    out
}

#[test]
fn addresses_neighbour_advertisements_and_echo() {
    let now = Instant::now();
    let mut h = Host::new(
        &config(&["1234::,ra-only"], false),
        LeaseDb::in_memory(),
        now,
        1_700_000_000,
    );
    assert_eq!(h.ipv6_addrs(), [ip(HUB_LL), ip(HUB_GLOBAL)]);
    // Neither RAs nor timers without --enable-ra.
    assert_eq!(h.poll_timeout(), None);

    for (dst, target) in [
        (HUB_LL, HUB_LL),
        ("ff02::1:ff00:301", HUB_LL),
        ("ff02::1:ff00:301", HUB_GLOBAL),
    ] {
        let out = run(&mut h, now, &ns(PEER, dst, target));
        assert_eq!(out.len(), 1, "{dst} {target}");
        let (mac, src, to, ty, flags, body) = read(&out[0]);
        assert_eq!(
            (mac, src, to, ty, flags[0]),
            (PEER_MAC, ip(target), ip(PEER), 136, 0x60)
        );
        assert_eq!(body[16..], [2, 1, 2, 0x76, 0x6d, 0, 3, 1]);
    }
    // DAD for our address: to all-nodes, no S.
    let out = run(&mut h, now, &ns("::", "ff02::1:ff00:301", HUB_LL));
    let (mac, _, to, _, flags, _) = read(&out[0]);
    assert_eq!((mac, to, flags[0]), ([0x33, 0x33, 0, 0, 0, 1], ip("ff02::1"), 0x20));
    // Someone else's address: nothing.
    assert!(run(&mut h, now, &ns(PEER, "ff02::1:ff00:302", "fe80::76:6dff:fe00:302")).is_empty());
    assert!(run(&mut h, now, &ns("::", "ff02::1:ff12:3456", PEER)).is_empty());
    assert_eq!(h.stats().ndp_answers, 4);

    // Echo on both addresses.
    for to in [HUB_LL, HUB_GLOBAL] {
        let b = PacketBuilder::ethernet2(PEER_MAC, HUB_MAC)
            .ipv6(ip(PEER).octets(), ip(to).octets(), 64)
            .icmpv6_echo_request(9, 1);
        let mut f = Vec::new();
        b.write(&mut f, b"ping").unwrap();
        let out = run(&mut h, now, &f);
        let (mac, src, dst, ty, _, body) = read(&out[0]);
        assert_eq!(
            (mac, src, dst, ty, body.as_slice()),
            (PEER_MAC, ip(to), ip(PEER), 129, &b"ping"[..])
        );
        let p = SlicedPacket::from_ethernet(&out[0]).unwrap();
        let Some(TransportSlice::Icmpv6(m)) = p.transport else {
            panic!()
        };
        assert_eq!(
            m.icmp_type(),
            Icmpv6Type::EchoReply(etherparse::IcmpEchoHeader { id: 9, seq: 1 })
        );
    }
    assert_eq!(h.stats().icmpv6_replies, 2);

    // A bad checksum, a bad hop limit: dropped, counted.
    let mut f = ns(PEER, HUB_LL, HUB_LL);
    let n = f.len();
    f[n - 1] ^= 0x55;
    let before = h.stats().malformed_frames;
    assert!(run(&mut h, now, &f).is_empty());
    assert_eq!(h.stats().malformed_frames, before + 1);
    let mut f = ns(PEER, HUB_LL, HUB_LL);
    f[14 + 7] = 64; // hop limit (not in the checksum)
    assert!(run(&mut h, now, &f).is_empty());
    assert_eq!(h.stats().malformed_frames, before + 2);
    assert_eq!(h.stats().ndp_answers, 4);
    assert!(
        h.report().contains("ndp answers 4, icmpv6 replies 2, ras sent 0"),
        "{}",
        h.report()
    );
}

#[test]
fn router_advertisements_on_solicitation_and_schedule() {
    let t0 = Instant::now();
    let mut h = Host::new(
        &config(&["1234::,slaac"], true),
        LeaseDb::in_memory(),
        t0,
        1_700_000_000,
    );
    // The first unsolicited RA is due at start, then 16 s, 16 s, then 200 to 600 s apart.
    let mut sent = vec![];
    for _ in 0..5 {
        let at = h.poll_timeout().unwrap();
        let mut out = Vec::new();
        h.handle_timeout(at, &mut out);
        assert_eq!(out.len(), 1);
        let (mac, src, dst, ty, b58, _) = read(&out[0]);
        assert_eq!(
            (mac, src, dst, ty),
            ([0x33, 0x33, 0, 0, 0, 1], ip(HUB_LL), ip("ff02::1"), 134)
        );
        assert_eq!(b58, [64, 0xc0, 0x07, 0x08], "M, O, router lifetime 1800");
        sent.push(at.duration_since(t0));
    }
    assert_eq!(
        sent[..3],
        [Duration::ZERO, Duration::from_secs(16), Duration::from_secs(32)]
    );
    assert!((200..=600).contains(&(sent[3] - sent[2]).as_secs()));
    assert_eq!(h.stats().ras_sent, 5);

    // A solicitation with a link-layer address: answered unicast, at once.
    let now = t0 + sent[4] + Duration::from_secs(1);
    let rs = icmp6(
        [0x33, 0x33, 0, 0, 0, 2],
        PEER,
        "ff02::2",
        255,
        (133, 0, [0; 4]),
        &[1, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56],
    );
    let out = run(&mut h, now, &rs);
    let (mac, _, dst, ty, _, _) = read(&out[0]);
    assert_eq!((mac, dst, ty), (PEER_MAC, ip(PEER), 134));
    // From ::, within 3 s of the last multicast RA: no answer now, the timer brought forward.
    let rs = icmp6([0x33, 0x33, 0, 0, 0, 2], "::", "ff02::2", 255, (133, 0, [0; 4]), &[]);
    assert!(run(&mut h, now, &rs).is_empty());
    assert_eq!(h.poll_timeout(), Some(t0 + sent[4] + Duration::from_secs(3)));
    // Later: answered to all-nodes.
    let out = run(&mut h, now + Duration::from_secs(5), &rs);
    assert_eq!(read(&out[0]).2, ip("ff02::1"));
    // Our NAs carry R (the hub is a router).
    let out = run(&mut h, now, &ns(PEER, HUB_LL, HUB_LL));
    assert_eq!(read(&out[0]).4[0], 0xe0);

    // Without an IPv6 range, --enable-ra sends nothing.
    let mut h = Host::new(&config(&[], true), LeaseDb::in_memory(), t0, 1_700_000_000);
    assert_eq!(h.poll_timeout(), None);
    let rs = icmp6([0x33, 0x33, 0, 0, 0, 2], PEER, "ff02::2", 255, (133, 0, [0; 4]), &[]);
    assert!(run(&mut h, t0, &rs).is_empty());
    assert_eq!(h.ipv6_addrs(), [ip(HUB_LL)]);
    let _ = MacAddr(HUB_MAC);
}
