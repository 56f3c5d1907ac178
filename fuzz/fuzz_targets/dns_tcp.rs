//! Feeds the host's DNS over TCP (host/src/dns/tcp.rs, on smoltcp) the input as the byte
//! stream of one connection: a client on the segment does the real handshake
//! with 10.0.3.1:53 in frames, then sends the input after its first byte in
//! segments of 1 to 600 bytes (sizes drawn from that first byte; see
//! `vmlan_fuzz::chunks`), ACKing all the host sends, so the host reassembles
//! 2-byte length-prefixed messages across segments, answers local names and
//! forwards the rest (answered as an echoing upstream would). Checks: every
//! frame the host sends is well-formed from its MAC, and its tables stay bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmlan_fuzz::{check_bounds, chunks, host, split_seed, TcpPeer};

fuzz_target!(|data: &[u8]| {
    let mut host = host();
    let mut peer = TcpPeer::connect(&mut host);
    let (seed, stream) = split_seed(data);
    for chunk in chunks(seed, stream, 600) {
        peer.send(&mut host, false, chunk);
        check_bounds(&mut host);
    }
});
