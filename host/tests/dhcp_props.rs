//! Property tests of the DHCP path of the hub's host (issue 4, bad input): any
//! bytes on UDP port 67, and valid client messages with bytes flipped, cut
//! short or with option lengths that overrun, are dropped (and counted) or
//! answered, never a panic; afterwards the server still answers a good client.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::Encodable;
use etherparse::PacketBuilder;
use proptest::prelude::*;
use std::time::Instant;
use vmlan_host::config::*;
use vmlan_host::leases::LeaseDb;
use vmlan_host::{Host, HostConfig};

fn host() -> Host {
    let cfg = HostConfig {
        ranges: vec![parse_dhcp_range("10.0.3.100,10.0.3.110,2m").unwrap()],
        reservations: vec![parse_dhcp_host("00:00:00:11:11:11,10.0.3.101,master").unwrap()],
        options: vec![parse_dhcp_option("option:domain-search,a.example,b.example").unwrap()],
        domain: Some("cluster".into()),
        boot: Some(parse_dhcp_boot("pxelinux.0").unwrap()),
        authoritative: true,
        ..HostConfig::new(parse_addr("10.0.3.1/24").unwrap())
    };
    Host::new(&cfg, LeaseDb::in_memory(), Instant::now(), 1_000_000)
}

fn frame(payload: &[u8], src_mac: [u8; 6]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, [0xff; 6])
        .ipv4([0; 4], [255; 4], 64)
        .udp(68, 67);
    let mut v = vec![];
    b.write(&mut v, payload).unwrap();
    v
}

fn valid(mtype: MessageType, mac: [u8; 6]) -> Vec<u8> {
    let mut m = Message::new_with_id(
        7,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac,
    );
    m.opts_mut().insert(DhcpOption::MessageType(mtype));
    m.opts_mut()
        .insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 3, 105)));
    m.opts_mut().insert(DhcpOption::Hostname("guest".into()));
    m.opts_mut().insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::Router,
        OptionCode::DomainSearch,
    ]));
    m.to_vec().unwrap()
}

fn still_answers(h: &mut Host) {
    let mut out = vec![];
    h.handle_frame(
        Instant::now(),
        &frame(
            &valid(MessageType::Discover, [0, 0, 0, 0x11, 0x11, 0x11]),
            [0, 0, 0, 0x11, 0x11, 0x11],
        ),
        &mut out,
    );
    assert_eq!(out.len(), 1, "the reserved client still gets its OFFER");
}

const TYPES: [MessageType; 6] = [
    MessageType::Discover,
    MessageType::Request,
    MessageType::Release,
    MessageType::Decline,
    MessageType::Inform,
    MessageType::Ack,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..700)) {
        let mut h = host();
        let mut out = vec![];
        h.handle_frame(Instant::now(), &frame(&payload, [0x52, 0x54, 0, 0, 0, 1]), &mut out);
        still_answers(&mut h);
    }

    #[test]
    fn mutated_messages_never_panic(
        t in 0usize..TYPES.len(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in any::<usize>(),
    ) {
        let mut h = host();
        let mut bytes = valid(TYPES[t], [0x52, 0x54, 0, 0, 0, 2]);
        for (at, v) in flips {
            // Mostly in the options, where lengths live.
            let i = 236 + at % (bytes.len() - 236);
            bytes[i] = v;
        }
        bytes.truncate(cut % (bytes.len() + 1));
        let mut out = vec![];
        h.handle_frame(Instant::now(), &frame(&bytes, [0x52, 0x54, 0, 0, 0, 2]), &mut out);
        still_answers(&mut h);
    }
}

#[test]
fn an_option_the_decoder_asserts_on_is_counted_not_a_crash() {
    // dhcproto 0.15 debug-asserts that option 94 (client network interface) is 3 bytes.
    let mut h = host();
    let mut bytes = valid(MessageType::Discover, [0x52, 0x54, 0, 0, 0, 4]);
    bytes.pop(); // the end option
    bytes.extend_from_slice(&[94, 2, 1, 2, 255]);
    let mut out = vec![];
    h.handle_frame(Instant::now(), &frame(&bytes, [0x52, 0x54, 0, 0, 0, 4]), &mut out);
    assert!(out.is_empty());
    assert_eq!(h.stats().malformed_dhcp, 1);
    still_answers(&mut h);
}

#[test]
fn an_option_length_that_overruns_is_counted() {
    let mut h = host();
    let mut bytes = valid(MessageType::Discover, [0x52, 0x54, 0, 0, 0, 3]);
    // The first option after the cookie is 53 (len 1); claim 250 bytes instead.
    bytes[241] = 250;
    let mut out = vec![];
    h.handle_frame(Instant::now(), &frame(&bytes, [0x52, 0x54, 0, 0, 0, 3]), &mut out);
    assert!(out.is_empty());
    assert_eq!(h.stats().malformed_dhcp, 1);
    still_answers(&mut h);
}
