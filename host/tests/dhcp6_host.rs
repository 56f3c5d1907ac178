//! DHCPv6 wired into the hub's host (issue 12), driven with frames as byte
//! vectors through `Host::handle_frame` and its timers: a SOLICIT to
//! `ff02::1:2` gets an ADVERTISE frame (host MAC to the client's, from the
//! host's link-local address to the client's, UDP 547 to 546, checksum
//! verified here by hand), a REQUEST its REPLY; a `--dhcp-host` reservation
//! by MAC gets its `[IPv6]` address, a named lease's name resolves to AAAA
//! over IPv4 DNS while the lease lives (gone after RELEASE and after
//! expiry); DNS over UDP to the host's IPv6 address; no DHCPv6 without a
//! range that has it; `--dhcp-host` IPv6 errors at validation; a SOLICIT
//! with Rapid Commit gets a REPLY with the lease under `--dhcp-rapid-commit`
//! and an ADVERTISE without it.

use std::net::Ipv6Addr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use dhcproto::v6::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use hickory_proto::op::{Message as DnsMessage, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use vmlan_host::config::*;
use vmlan_host::dhcp6::duid_ll;
use vmlan_host::leases::LeaseDb;
use vmlan_host::{Host, HostConfig};
use vmlan_hub::{LocalHost, MacAddr};

mod common;
use common::{ia, oro, sid};

const HUB_MAC: [u8; 6] = [0x02, 0x76, 0x6d, 0, 3, 1];
const HUB_LL: &str = "fe80::76:6dff:fe00:301";
const HUB_GLOBAL: &str = "1234::76:6dff:fe00:301";
/// Reserved with `[1234::5]` and the name `name6`.
const RESERVED: [u8; 6] = [0x52, 0x54, 0, 0, 0, 5];
/// Reserved with a name only: a pool address.
const NAMED: [u8; 6] = [0x52, 0x54, 0, 0, 0, 7];
/// No reservation.
const OTHER: [u8; 6] = [0x52, 0x54, 0, 0, 0, 9];
const T0: u64 = 1_700_000_000;

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn config(ranges6: &[&str]) -> HostConfig {
    let c = HostConfig {
        ranges: vec![parse_dhcp_range("10.0.3.100,10.0.3.200").unwrap()],
        ranges6: ranges6.iter().map(|r| parse_dhcp_range6(r).unwrap()).collect(),
        enable_ra: true,
        reservations: vec![
            parse_dhcp_host("52:54:00:00:00:05,[1234::5],name6").unwrap(),
            parse_dhcp_host("52:54:00:00:00:07,named7").unwrap(),
        ],
        domain: Some("cluster".into()),
        ..HostConfig::new(parse_addr("10.0.3.1/24").unwrap())
    };
    c.validate().unwrap();
    c
}

fn host(ranges6: &[&str]) -> (Host, Instant) {
    let now = Instant::now();
    (Host::new(&config(ranges6), LeaseDb::in_memory(), now, T0), now)
}

/// A host as [`host`]'s, with `--dhcp-rapid-commit` set to `rapid`.
fn host_rapid(ranges6: &[&str], rapid: bool) -> (Host, Instant) {
    let now = Instant::now();
    let c = HostConfig {
        rapid_commit: rapid,
        ..config(ranges6)
    };
    (Host::new(&c, LeaseDb::in_memory(), now, T0), now)
}

/// The client's link-local address (modified EUI-64 of its MAC).
fn ll(mac: [u8; 6]) -> Ipv6Addr {
    vmlan_host::ipv6::link_local(MacAddr(mac))
}

/// A DHCPv6 client message from `mac`: type, the DUID-LL of `mac`, then `opts`.
fn msg(t: MessageType, mac: [u8; 6], opts: Vec<DhcpOption>) -> Vec<u8> {
    let mut m = Message::new_with_id(t, [1, 2, 3]);
    m.opts_mut().insert(DhcpOption::ClientId(duid_ll(MacAddr(mac))));
    for o in opts.into_iter().rev() {
        m.opts_mut().insert(o);
    }
    m.to_vec().unwrap()
}

/// The frame of `payload` over UDP/IPv6 from `mac` (at its link-local
/// address, port 546) to `dst`:`dport`.
fn udp6(mac: [u8; 6], dst: Ipv6Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let dst_mac = if dst.is_multicast() {
        let o = dst.octets();
        [0x33, 0x33, o[12], o[13], o[14], o[15]]
    } else {
        HUB_MAC
    };
    let b = PacketBuilder::ethernet2(mac, dst_mac)
        .ipv6(ll(mac).octets(), dst.octets(), 1)
        .udp(546, dport);
    let mut f = Vec::new();
    b.write(&mut f, payload).unwrap();
    f
}

fn run(h: &mut Host, now: Instant, f: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    h.handle_frame(now, f, &mut out);
    out
}

/// The UDP checksum over the IPv6 pseudo-header (RFC 8200 section 8.1),
/// computed here independently of etherparse: 0 for a correct datagram
/// whose checksum field is included.
fn udp6_sum(src: Ipv6Addr, dst: Ipv6Addr, udp: &[u8]) -> u16 {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&src.octets());
    bytes.extend_from_slice(&dst.octets());
    bytes.extend_from_slice(&(udp.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&[0, 0, 0, 17]);
    bytes.extend_from_slice(udp);
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Checks a reply frame's headers (host MAC to `mac`, host link-local to
/// the client's link-local, UDP 547 to 546, checksum) and decodes it.
fn reply(frames: &[Vec<u8>], mac: [u8; 6]) -> Message {
    assert_eq!(frames.len(), 1, "one reply");
    let f = &frames[0];
    assert_eq!((&f[0..6], &f[6..12]), (&mac[..], &HUB_MAC[..]));
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let (Some(NetSlice::Ipv6(i)), Some(TransportSlice::Udp(u))) = (&p.net, &p.transport) else {
        panic!("not UDP/IPv6: {f:02x?}")
    };
    let h = i.header();
    assert_eq!((h.source_addr(), h.destination_addr()), (ip(HUB_LL), ll(mac)));
    assert_eq!((u.source_port(), u.destination_port()), (547, 546));
    assert_ne!(u.checksum(), 0);
    assert_eq!(
        udp6_sum(h.source_addr(), h.destination_addr(), &f[54..]),
        0,
        "UDP checksum"
    );
    assert_eq!(usize::from(u.length()), f.len() - 54);
    Message::decode(&mut Decoder::new(u.payload())).unwrap()
}

/// The addresses of the first IA_NA of `m`, with their valid lifetimes.
fn addrs(m: &Message) -> Vec<(Ipv6Addr, u32)> {
    let Some(DhcpOption::IANA(ia)) = m.opts().get(OptionCode::IANA) else {
        panic!("no IA_NA: {m:?}")
    };
    ia.opts
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IAAddr(a) => Some((a.addr, a.valid_life)),
            _ => None,
        })
        .collect()
}

/// SOLICIT to ff02::1:2 then REQUEST; the address bound.
fn obtain(h: &mut Host, now: Instant, mac: [u8; 6]) -> Ipv6Addr {
    let adv = reply(
        &run(
            h,
            now,
            &udp6(
                mac,
                ip("ff02::1:2"),
                547,
                &msg(MessageType::Solicit, mac, vec![ia(1, &[]), oro()]),
            ),
        ),
        mac,
    );
    assert_eq!(adv.msg_type(), MessageType::Advertise);
    let offered = addrs(&adv)[0].0;
    let rep = reply(
        &run(
            h,
            now,
            &udp6(
                mac,
                ip("ff02::1:2"),
                547,
                &msg(
                    MessageType::Request,
                    mac,
                    vec![sid(MacAddr(HUB_MAC)), ia(1, &[offered]), oro()],
                ),
            ),
        ),
        mac,
    );
    assert_eq!(rep.msg_type(), MessageType::Reply);
    assert_eq!(addrs(&rep), vec![(offered, 3600)]);
    offered
}

fn dns_query(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut m = DnsMessage::query();
    m.metadata.id = 4242;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
    m.to_bytes().unwrap()
}

/// The AAAA answers for `name` asked of the host over IPv4 (UDP to 10.0.3.1:53).
fn aaaa(h: &mut Host, now: Instant, name: &str) -> Vec<Ipv6Addr> {
    let b = PacketBuilder::ethernet2(OTHER, HUB_MAC)
        .ipv4([10, 0, 3, 150], [10, 0, 3, 1], 64)
        .udp(40000, 53);
    let mut f = Vec::new();
    b.write(&mut f, &dns_query(name, RecordType::AAAA)).unwrap();
    let out = run(h, now, &f);
    assert_eq!(out.len(), 1, "one answer for {name}");
    let p = SlicedPacket::from_ethernet(&out[0]).unwrap();
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        panic!("not UDP")
    };
    let m = DnsMessage::from_bytes(u.payload()).unwrap();
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

const STATEFUL: &str = "1234::100,1234::1ff,64,1h";

#[test]
fn solicit_to_all_servers_is_advertised_and_a_request_replied() {
    let (mut h, now) = host(&[STATEFUL]);
    let sol = msg(MessageType::Solicit, OTHER, vec![ia(1, &[]), oro()]);
    let adv = reply(&run(&mut h, now, &udp6(OTHER, ip("ff02::1:2"), 547, &sol)), OTHER);
    assert_eq!(adv.msg_type(), MessageType::Advertise);
    assert_eq!(adv.xid(), [1, 2, 3]);
    assert_eq!(adv.opts().get(OptionCode::ServerId), Some(&sid(MacAddr(HUB_MAC))));
    let offered = addrs(&adv)[0].0;
    assert!((ip("1234::100")..=ip("1234::1ff")).contains(&offered), "{offered}");
    // The options asked for: the host's address in the prefix as DNS server, --domain.
    let Some(DhcpOption::DomainNameServers(dns)) = adv.opts().get(OptionCode::DomainNameServers) else {
        panic!("no DNS servers: {adv:?}")
    };
    assert_eq!(dns, &vec![ip(HUB_GLOBAL)]);
    assert!(adv.opts().get(OptionCode::DomainSearchList).is_some());
    // The REQUEST, here to the host's own global address.
    let req = msg(
        MessageType::Request,
        OTHER,
        vec![sid(MacAddr(HUB_MAC)), ia(1, &[offered])],
    );
    let rep = reply(&run(&mut h, now, &udp6(OTHER, ip(HUB_GLOBAL), 547, &req)), OTHER);
    assert_eq!(rep.msg_type(), MessageType::Reply);
    assert_eq!(addrs(&rep), vec![(offered, 3600)]);
    let lease = h.dhcp6().unwrap().leases().next().unwrap().clone();
    assert_eq!((lease.addr, lease.expires), (offered, T0 + 3600));
    let s = h.stats().dhcp6;
    assert_eq!((s.received, s.replied), (2, 2));
    assert!(h.report().contains("dhcp6 leases 1 in 2 out 2"), "{}", h.report());
    // Not for the server: another port, another group, a unicast address not the host's.
    for f in [
        udp6(OTHER, ip("ff02::1:2"), 548, &sol),
        udp6(OTHER, ip("ff02::1:3"), 547, &sol),
        udp6(OTHER, ip("1234::99"), 547, &sol),
    ] {
        assert!(run(&mut h, now, &f).is_empty());
    }
    assert_eq!(h.stats().dhcp6.received, 2);
}

#[test]
fn rapid_commit_solicit_gets_a_reply_with_the_lease_only_with_the_flag() {
    let sol = msg(
        MessageType::Solicit,
        OTHER,
        vec![DhcpOption::RapidCommit, ia(1, &[]), oro()],
    );
    let frame = udp6(OTHER, ip("ff02::1:2"), 547, &sol);
    // --dhcp-rapid-commit: a REPLY carrying Rapid Commit, the address bound.
    let (mut h, now) = host_rapid(&[STATEFUL], true);
    let rep = reply(&run(&mut h, now, &frame), OTHER);
    assert_eq!(rep.msg_type(), MessageType::Reply);
    assert!(rep.opts().get(OptionCode::RapidCommit).is_some(), "{rep:?}");
    let bound = addrs(&rep);
    assert_eq!(bound.len(), 1);
    assert_eq!(bound[0].1, 3600);
    assert!((ip("1234::100")..=ip("1234::1ff")).contains(&bound[0].0), "{bound:?}");
    let lease = h.dhcp6().unwrap().leases().next().unwrap().clone();
    assert_eq!((lease.addr, lease.expires), (bound[0].0, T0 + 3600));
    // Without the flag (the default): an ADVERTISE, no Rapid Commit, no lease yet.
    let (mut h, now) = host_rapid(&[STATEFUL], false);
    let adv = reply(&run(&mut h, now, &frame), OTHER);
    assert_eq!(adv.msg_type(), MessageType::Advertise);
    assert!(adv.opts().get(OptionCode::RapidCommit).is_none(), "{adv:?}");
    assert_eq!(addrs(&adv).len(), 1);
}

#[test]
fn a_reservation_by_mac_gets_its_address_and_its_name_resolves() {
    let (mut h, now) = host(&[STATEFUL]);
    assert_eq!(obtain(&mut h, now, RESERVED), ip("1234::5"));
    assert_eq!(aaaa(&mut h, now, "name6.cluster."), vec![ip("1234::5")]);
    // A name-only reservation: a pool address, published while the lease lives.
    assert!(aaaa(&mut h, now, "named7.cluster.").is_empty());
    let a = obtain(&mut h, now, NAMED);
    assert!((ip("1234::100")..=ip("1234::1ff")).contains(&a), "{a}");
    assert_eq!(aaaa(&mut h, now, "named7.cluster."), vec![a]);
    // RELEASE withdraws it.
    let rel = msg(MessageType::Release, NAMED, vec![sid(MacAddr(HUB_MAC)), ia(1, &[a])]);
    let rep = reply(&run(&mut h, now, &udp6(NAMED, ip("ff02::1:2"), 547, &rel)), NAMED);
    assert_eq!(rep.msg_type(), MessageType::Reply);
    assert!(aaaa(&mut h, now, "named7.cluster.").is_empty());
    // Expiry too, through the host's timers.
    let a = obtain(&mut h, now, NAMED);
    assert_eq!(aaaa(&mut h, now, "named7.cluster."), vec![a]);
    let due = h.poll_timeout().unwrap();
    assert!(due <= now + Duration::from_secs(3600), "{due:?}");
    let later = now + Duration::from_secs(3601);
    let mut out = Vec::new();
    h.handle_timeout(later, &mut out);
    assert_eq!(h.dhcp6().unwrap().leases().count(), 0);
    assert!(aaaa(&mut h, later, "named7.cluster.").is_empty());
    // The reserved name stays (a --dhcp-host name is published whatever its lease does).
    assert_eq!(aaaa(&mut h, later, "name6.cluster."), vec![ip("1234::5")]);
}

#[test]
fn dns_over_udp_at_the_hosts_ipv6_address() {
    let (mut h, now) = host(&[STATEFUL]);
    for dst in [ip(HUB_GLOBAL), ip(HUB_LL)] {
        let out = run(
            &mut h,
            now,
            &udp6(OTHER, dst, 53, &dns_query("name6.cluster.", RecordType::AAAA)),
        );
        assert_eq!(out.len(), 1);
        let p = SlicedPacket::from_ethernet(&out[0]).unwrap();
        let (Some(NetSlice::Ipv6(i)), Some(TransportSlice::Udp(u))) = (&p.net, &p.transport) else {
            panic!("not UDP/IPv6")
        };
        assert_eq!(
            (i.header().source_addr(), i.header().destination_addr()),
            (dst, ll(OTHER))
        );
        assert_eq!((u.source_port(), u.destination_port()), (53, 546));
        assert_eq!(udp6_sum(dst, ll(OTHER), &out[0][54..]), 0);
        let m = DnsMessage::from_bytes(u.payload()).unwrap();
        assert!(
            matches!(m.answers[0].data, RData::AAAA(a) if a.0 == ip("1234::5")),
            "{m:?}"
        );
    }
}

#[test]
fn modes_without_addresses_and_no_dhcpv6_without_a_range_for_it() {
    // ra-stateless: INFORMATION-REQUEST answered, SOLICIT gets no address.
    let (mut h, now) = host(&["1234::,ra-stateless"]);
    let inf = Message::new_with_id(MessageType::InformationRequest, [4, 5, 6]);
    let mut inf = inf;
    inf.opts_mut().insert(oro());
    let rep = reply(
        &run(&mut h, now, &udp6(OTHER, ip("ff02::1:2"), 547, &inf.to_vec().unwrap())),
        OTHER,
    );
    assert_eq!(rep.msg_type(), MessageType::Reply);
    assert!(rep.opts().get(OptionCode::DomainNameServers).is_some());
    // ra-only, and no IPv6 range at all: no DHCPv6 server.
    for r in [&["1234::,ra-only"][..], &[]] {
        let (mut h, now) = host(r);
        assert!(h.dhcp6().is_none());
        let sol = msg(MessageType::Solicit, OTHER, vec![ia(1, &[])]);
        assert!(run(&mut h, now, &udp6(OTHER, ip("ff02::1:2"), 547, &sol)).is_empty());
    }
    // DNS over UDP/IPv6 is answered without DHCPv6 too (the RA's RDNSS is the link-local address).
    let (mut h, now) = host(&["1234::,ra-only"]);
    let q = dns_query("name6.cluster.", RecordType::AAAA);
    assert_eq!(run(&mut h, now, &udp6(OTHER, ip(HUB_LL), 53, &q)).len(), 1);
}

#[test]
fn dhcp_host_ipv6_reservations_are_validated() {
    let mut c = config(&[STATEFUL]);
    c.reservations
        .push(parse_dhcp_host("52:54:00:00:00:08,[1234::5]").unwrap());
    let e = c.validate().unwrap_err();
    assert!(
        e.flag == "--dhcp-host" && e.reason.contains("1234::5") && e.reason.contains("twice"),
        "{e}"
    );
    let mut c = config(&[STATEFUL]);
    c.reservations
        .push(parse_dhcp_host(&format!("52:54:00:00:00:08,[{HUB_GLOBAL}]")).unwrap());
    let e = c.validate().unwrap_err();
    assert!(e.reason.contains("own IPv6 address"), "{e}");
    let mut c = config(&[STATEFUL]);
    c.reservations
        .push(parse_dhcp_host("id:00:03:00:01:52:54:00:00:00:05,[1234::6]").unwrap());
    c.reservations
        .push(parse_dhcp_host("id:00:03:00:01:52:54:00:00:00:05,[1234::7]").unwrap());
    assert!(c.validate().unwrap_err().reason.contains("id:"));
}

#[test]
fn dhcpv6_leases_go_to_the_journal_and_come_back_after_a_restart() {
    use vmlan_host::leases::{parse_journal_line, write_journal_line, LeaseChange};
    let mut db = LeaseDb::in_memory();
    db.record_changes();
    let now = Instant::now();
    let mut h = Host::new(&config(&[STATEFUL]), db, now, T0);
    let a = obtain(&mut h, now, NAMED);
    let other = obtain(&mut h, now, OTHER);
    let rel = msg(
        MessageType::Release,
        OTHER,
        vec![sid(MacAddr(HUB_MAC)), ia(1, &[other])],
    );
    reply(&run(&mut h, now, &udp6(OTHER, ip("ff02::1:2"), 547, &rel)), OTHER);
    let mut changes = Vec::new();
    h.take_lease_changes(&mut changes);
    assert_eq!(changes[0], LeaseChange::ServerDuid6(duid_ll(MacAddr(HUB_MAC))));
    assert!(changes.iter().any(|c| matches!(c, LeaseChange::Put6(l) if l.addr == a)));
    assert!(changes
        .iter()
        .any(|c| matches!(c, LeaseChange::Removed6(d, 1) if *d == duid_ll(MacAddr(OTHER)))));
    // Through the journal's text and back: the same changes.
    let mut journal = String::new();
    for c in &changes {
        write_journal_line(c, &mut journal);
    }
    let parsed: Vec<_> = journal.lines().filter_map(parse_journal_line).collect();
    assert_eq!(parsed, changes, "{journal}");
    let (mut db, bad) = LeaseDb::from_texts("", &[&journal]);
    assert!(bad.is_empty());
    assert_eq!(db.server_duid6(), Some(&duid_ll(MacAddr(HUB_MAC))[..]));
    let live: Vec<_> = db.leases6().map(|l| (l.addr, l.hostname.clone())).collect();
    assert_eq!(live, vec![(a, Some("named7".to_string()))]);
    // Exported as dnsmasq's file (v4 lines, then the duid line and the v6 lines) and read back.
    let file = vmlan_host::leases::export_text6(db.server_duid6().unwrap(), db.leases6());
    assert!(file.starts_with("duid 00:03:00:01:02:76:6d:00:03:01\n"), "{file}");
    let (db2, bad) = LeaseDb::from_texts(&file, &[]);
    assert!(bad.is_empty());
    assert_eq!(db2.leases6().count(), 1);
    // A restart with that table: the lease is the server's again, and its name in DNS.
    db.end_expired(T0 + 10);
    let later = now + Duration::from_secs(10);
    let mut h = Host::new(&config(&[STATEFUL]), db, later, T0 + 10);
    let leases: Vec<_> = h.dhcp6().unwrap().leases().map(|l| l.addr).collect();
    assert_eq!(leases, vec![a]);
    assert_eq!(aaaa(&mut h, later, "named7.cluster."), vec![a]);
    // Expired by the next start: dropped from the table.
    let (mut db3, _) = LeaseDb::from_texts(&file, &[]);
    db3.end_expired(T0 + 3600);
    assert_eq!(db3.leases6().count(), 0);
}

#[test]
fn the_lease_files_server_duid_is_kept_so_renewals_naming_it_are_answered() {
    // A file written by dnsmasq (or a hub with another MAC): its `duid` line and one lease.
    let dnsmasq_duid = [0u8, 1, 0, 1, 0x2e, 0x9a, 0x1c, 0x33, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f];
    let client = duid_ll(MacAddr(NAMED));
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":");
    let file = format!(
        "duid {}\n{} 1 1234::42 named7 {}\n",
        hex(&dnsmasq_duid),
        T0 + 3600,
        hex(&client)
    );
    let (mut db, bad) = LeaseDb::from_texts(&file, &[]);
    assert!(bad.is_empty(), "{bad:?}");
    db.record_changes();
    let now = Instant::now();
    let mut h = Host::new(&config(&[STATEFUL]), db, now, T0);
    assert_eq!(h.dhcp6().unwrap().server_duid(), &dnsmasq_duid[..]);
    let mut changes = Vec::new();
    h.take_lease_changes(&mut changes);
    assert_eq!(
        changes[0],
        vmlan_host::leases::LeaseChange::ServerDuid6(dnsmasq_duid.to_vec())
    );
    // A RENEW naming that server is answered with the lease and the same Server Identifier.
    let renew = msg(
        MessageType::Renew,
        NAMED,
        vec![
            DhcpOption::ServerId(dnsmasq_duid.to_vec()),
            ia(1, &[ip("1234::42")]),
            oro(),
        ],
    );
    let rep = reply(&run(&mut h, now, &udp6(NAMED, ip("ff02::1:2"), 547, &renew)), NAMED);
    assert_eq!(rep.msg_type(), MessageType::Reply);
    assert_eq!(addrs(&rep), vec![(ip("1234::42"), 3600)]);
    assert!(
        rep.opts()
            .iter()
            .any(|o| matches!(o, DhcpOption::ServerId(d) if d[..] == dnsmasq_duid[..])),
        "{rep:?}"
    );
    // A file without a `duid` line: the DUID-LL of the hub's MAC.
    let h = Host::new(&config(&[STATEFUL]), LeaseDb::in_memory(), now, T0);
    assert_eq!(h.dhcp6().unwrap().server_duid(), &duid_ll(MacAddr(HUB_MAC))[..]);
}

/// dnsmasq's DHCP hosts file lines may carry `[IPv6]` and `id:DUID`: they
/// are accepted as `--dhcp-host` values and served over DHCPv6, and swapped
/// on SIGHUP (`Host::replace_file_entries`): the new address is leased and
/// published, the old name withdrawn.
#[test]
fn dhcp_hostsfile_reservations_with_ipv6_are_served_and_swapped() {
    let (mut h, now) = host(&[STATEFUL]);
    let cfg = config(&[STATEFUL]);
    let (lines, bad) = vmlan_host::hostsfile::parse_dhcp_hosts(
        "52:54:00:00:00:09,[1234::9],file6\nid:00:03:00:01:52:54:00:00:00:0a,[1234::a],byduid\n",
    );
    assert!(bad.is_empty(), "{bad:?}");
    let (ok, refused) = cfg.accept_file_reservations(lines);
    assert!(refused.is_empty(), "{refused:?}");
    h.replace_file_entries(vec![], ok);
    assert_eq!(aaaa(&mut h, now, "file6.cluster."), vec![ip("1234::9")]);
    assert_eq!(obtain(&mut h, now, OTHER), ip("1234::9"));
    assert_eq!(
        obtain(&mut h, now, [0x52, 0x54, 0, 0, 0, 0x0a]),
        ip("1234::a"),
        "by DUID (its DUID-LL)"
    );
    // A clash with a flag's [IPv6] is refused.
    let (_, refused) = cfg.accept_file_reservations(vec![parse_dhcp_host("52:54:00:00:00:0b,[1234::5]").unwrap()]);
    assert_eq!(refused.len(), 1);
    // SIGHUP with an edited file: another address and name.
    let (lines, _) = vmlan_host::hostsfile::parse_dhcp_hosts("52:54:00:00:00:09,[1234::19],file6b\n");
    let (ok, _) = cfg.accept_file_reservations(lines);
    h.replace_file_entries(vec![], ok);
    // The live lease keeps its name while it lives; the reservation's is the new one.
    assert_eq!(aaaa(&mut h, now, "file6.cluster."), vec![ip("1234::9")]);
    assert_eq!(aaaa(&mut h, now, "file6b.cluster."), vec![ip("1234::19")]);
    let (mut h2, now2) = host(&[STATEFUL]);
    let (lines, _) = vmlan_host::hostsfile::parse_dhcp_hosts("52:54:00:00:00:09,[1234::19],file6b\n");
    h2.replace_file_entries(vec![], cfg.accept_file_reservations(lines).0);
    assert_eq!(
        obtain(&mut h2, now2, OTHER),
        ip("1234::19"),
        "a new client gets the new address"
    );
}

/// A reservation made while a client holds a pool lease (the API's
/// `Host::replace_api_reservations`): its next RENEW binds the reserved
/// address and lists the old one with lifetimes 0 (RFC 8415 section
/// 18.3.4), and the name answers AAAA.
#[test]
fn a_reservation_added_later_moves_the_lease_at_renew() {
    let (mut h, now) = host(&[STATEFUL]);
    let pool = obtain(&mut h, now, OTHER);
    assert!((ip("1234::100")..=ip("1234::1ff")).contains(&pool), "{pool}");
    h.replace_api_reservations(vec![parse_dhcp_host("52:54:00:00:00:09,[1234::77],moved").unwrap()]);
    assert_eq!(aaaa(&mut h, now, "moved.cluster."), vec![ip("1234::77")]);
    let renew = msg(MessageType::Renew, OTHER, vec![sid(MacAddr(HUB_MAC)), ia(1, &[pool])]);
    let rep = reply(&run(&mut h, now, &udp6(OTHER, ip("ff02::1:2"), 547, &renew)), OTHER);
    assert_eq!(rep.msg_type(), MessageType::Reply);
    assert_eq!(addrs(&rep), vec![(ip("1234::77"), 3600), (pool, 0)]);
    let leased: Vec<_> = h.dhcp6().unwrap().leases().map(|l| l.addr).collect();
    assert_eq!(leased, vec![ip("1234::77")]);
}
