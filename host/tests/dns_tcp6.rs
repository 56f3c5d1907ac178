//! DNS over TCP at the host's IPv6 addresses on the segment (RFC 7766 over
//! IPv6), driven with frames as byte vectors: a fake peer built with
//! etherparse does the TCP handshake with the host's global address (from an
//! `ra-only` range) and with its link-local address, port 53, sends a
//! length-prefixed AAAA query and reads the answer; frames back are IPv6
//! (EtherType 86dd) from the host's MAC and the address asked; TCP to an
//! IPv6 address not the host's gets nothing, and a segment with a bad TCP
//! checksum is dropped and counted.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use vmlan_host::config::*;
use vmlan_host::leases::LeaseDb;
use vmlan_host::{Host, HostConfig};

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
const GUEST_GLOBAL: &str = "1234::5054:ff:fe12:3456";
const HUB_LL: &str = "fe80::76:6dff:fe00:301";
const HUB_GLOBAL: &str = "1234::76:6dff:fe00:301";

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn hub_mac() -> [u8; 6] {
    default_mac(Ipv4Addr::new(10, 0, 3, 1)).0
}

fn host() -> Host {
    let c = HostConfig {
        ranges6: vec![parse_dhcp_range6("1234::,ra-only").unwrap()],
        host_records: vec![parse_host_record("master,10.0.3.101,fd00::101").unwrap()],
        domain: Some("cluster".into()),
        ..HostConfig::new(parse_addr("10.0.3.1/24").unwrap())
    };
    c.validate().unwrap();
    Host::new(&c, LeaseDb::in_memory(), Instant::now(), 1_700_000_000)
}

/// The fake client over IPv6: its addresses, next sequence number, what it received.
struct Peer {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    port: u16,
    seq: u32,
    ack: u32,
    stream: Vec<u8>,
}

/// A TCP segment the host sent, parsed and checked: IPv6 from `dst` to the
/// peer, Ethernet from the host's MAC to the guest's.
struct Seg {
    seq: u32,
    syn: bool,
    rst: bool,
    payload: Vec<u8>,
}

impl Peer {
    fn new(src: &str, dst: &str, port: u16) -> Self {
        Peer {
            src: ip(src),
            dst: ip(dst),
            port,
            seq: 7_000_000,
            ack: 0,
            stream: vec![],
        }
    }

    fn frame(&self, syn: bool, payload: &[u8]) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2(GUEST_MAC, hub_mac())
            .ipv6(self.src.octets(), self.dst.octets(), 64)
            .tcp(self.port, 53, self.seq, 64800);
        if syn {
            b = b.syn().options(&[TcpOptionElement::MaximumSegmentSize(1440)]).unwrap();
        } else {
            b = b.ack(self.ack);
        }
        if !payload.is_empty() {
            b = b.psh();
        }
        let mut v = vec![];
        b.write(&mut v, payload).unwrap();
        v
    }

    fn take(&mut self, out: &[Vec<u8>]) -> Vec<Seg> {
        let mut segs = vec![];
        for f in out {
            assert_eq!(
                (&f[0..6], &f[6..12], &f[12..14]),
                (&GUEST_MAC[..], &hub_mac()[..], &[0x86, 0xdd][..])
            );
            let p = SlicedPacket::from_ethernet(f).unwrap();
            let (Some(NetSlice::Ipv6(i)), Some(TransportSlice::Tcp(t))) = (&p.net, &p.transport) else {
                panic!("not TCP/IPv6: {f:02x?}")
            };
            let h = i.header();
            assert_eq!((h.source_addr(), h.destination_addr()), (self.dst, self.src));
            assert_eq!((t.source_port(), t.destination_port()), (53, self.port));
            let tcp_bytes = &f[54..];
            assert_eq!(
                t.calc_checksum_ipv6(h.source_addr().octets(), h.destination_addr().octets())
                    .unwrap(),
                t.checksum(),
                "TCP checksum of {tcp_bytes:02x?}"
            );
            let s = Seg {
                seq: t.sequence_number(),
                syn: t.syn(),
                rst: t.rst(),
                payload: t.payload().to_vec(),
            };
            if s.syn {
                self.ack = s.seq.wrapping_add(1);
            } else if !s.rst && s.seq == self.ack {
                self.stream.extend_from_slice(&s.payload);
                self.ack = self.ack.wrapping_add(s.payload.len() as u32);
            }
            segs.push(s);
        }
        segs
    }
}

fn run(h: &mut Host, f: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![];
    h.handle_frame(Instant::now(), f, &mut out);
    out
}

fn aaaa_query(name: &str, id: u16) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::AAAA));
    let q = m.to_bytes().unwrap();
    let mut v = (q.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(&q);
    v
}

/// Handshake, one AAAA query for master.cluster, its answer.
fn ask(h: &mut Host, p: &mut Peer) {
    let segs = p.take(&run(h, &p.frame(true, &[])));
    assert_eq!(segs.len(), 1);
    assert!(segs[0].syn && !segs[0].rst, "a SYN-ACK");
    p.seq += 1;
    let q = aaaa_query("master.cluster", 0x6666);
    let _ = p.take(&run(h, &p.frame(false, &[])));
    let _ = p.take(&run(h, &p.frame(false, &q)));
    p.seq += q.len() as u32;
    assert!(p.stream.len() >= 2, "an answer");
    let n = usize::from(u16::from_be_bytes([p.stream[0], p.stream[1]]));
    assert_eq!(p.stream.len(), n + 2);
    let m = Message::from_bytes(&p.stream[2..]).unwrap();
    assert_eq!(m.metadata.id, 0x6666);
    let got: Vec<Ipv6Addr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::AAAA(a) => Some(a.0),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![ip("fd00::101")]);
}

#[test]
fn aaaa_over_tcp_at_the_hosts_global_and_link_local_addresses() {
    let mut h = host();
    let mut p = Peer::new(GUEST_GLOBAL, HUB_GLOBAL, 42000);
    ask(&mut h, &mut p);
    let s = h.stats().dns_tcp;
    assert_eq!((s.connections, s.queries), (1, 1));
    let mut p = Peer::new("fe80::5054:ff:fe12:3456", HUB_LL, 42001);
    ask(&mut h, &mut p);
    assert_eq!(h.stats().dns_tcp.queries, 2);
}

#[test]
fn tcp_to_another_ipv6_address_or_with_a_bad_checksum_gets_nothing() {
    let mut h = host();
    let p = Peer::new(GUEST_GLOBAL, "1234::99", 42002);
    assert!(run(&mut h, &p.frame(true, &[])).is_empty());
    assert_eq!(h.stats().dns_tcp.malformed, 0);
    let p = Peer::new(GUEST_GLOBAL, HUB_GLOBAL, 42003);
    let mut f = p.frame(true, &[]);
    let last = f.len() - 1;
    f[last] ^= 0xff;
    assert!(run(&mut h, &f).is_empty());
    let s = h.stats().dns_tcp;
    assert_eq!((s.malformed, s.connections), (1, 0));
}
