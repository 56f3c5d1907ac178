//! Feeds the DNS server (`DnsServer::handle`) the input as a query from a
//! client over UDP (1472-byte path, as on the segment) and over TCP, then as an
//! upstream's answer (`DnsServer::upstream_answer`) to a forwarded query, with
//! the forward's ID written over its first two bytes so that it reaches the
//! matching. Checks: an answer repeats the query's ID and fits the UDP path
//! (or 64 KiB on TCP); a forward goes to the configured upstream; a matched
//! upstream answer goes back to its client with the client's ID; the forward
//! table stays within `--dns-forward-max`.
#![no_main]

use std::net::SocketAddr;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use vmlan_fuzz::{host, FORWARD_MAX, UPSTREAM};
use vmlan_host::dns::{Client, DnsAction};

fuzz_target!(|data: &[u8]| {
    let mut host = host();
    let dns = host.dns_mut();
    let peer: SocketAddr = "10.0.3.107:40000".parse().unwrap();
    let mut udp = Client::udp(peer, 1);
    udp.udp_max = 1472;
    let upstream: SocketAddr = UPSTREAM.parse().unwrap();
    for (client, max) in [(udp, 1472), (Client::tcp(peer, 2), 65535)] {
        match dns.handle(data, client, Instant::now()) {
            DnsAction::Answer(a) => assert!(a.len() <= max && a[..2] == data[..2], "answer {a:02x?}"),
            DnsAction::Forward(f) => assert_eq!(f.upstream, upstream),
            DnsAction::Drop => {}
        }
    }
    // A question forwarded upstream: example.org A, ID 0x4242, from a UDP client.
    let query = b"\x42\x42\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03org\x00\x00\x01\x00\x01";
    if let DnsAction::Forward(f) = dns.handle(query, udp, Instant::now()) {
        let mut answer = data.to_vec();
        if answer.len() >= 2 {
            answer[..2].copy_from_slice(&f.query[..2]);
        }
        if let Some((client, back)) = dns.upstream_answer(upstream, &answer) {
            assert_eq!((client.path, &back[..2]), (1, &query[..2]));
        }
    }
    assert!(dns.pending() <= FORWARD_MAX);
});
