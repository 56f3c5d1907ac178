//! ICMP echo for the hub's own address (RFC 792): an echo request to our IPv4
//! address gets an echo reply with the same identifier, sequence and data.

use std::net::Ipv4Addr;

use etherparse::{Icmpv4Slice, Icmpv4Type, PacketBuilder};
use vmlan_hub::MacAddr;

/// The reply frame to an echo request from (`peer_mac`, `peer_ip`) to us, or
/// `None` if `icmp` is not an echo request.
pub fn answer(
    icmp: &Icmpv4Slice<'_>,
    our_mac: MacAddr,
    our_ip: Ipv4Addr,
    peer_mac: MacAddr,
    peer_ip: Ipv4Addr,
) -> Option<Vec<u8>> {
    let Icmpv4Type::EchoRequest(echo) = icmp.icmp_type() else {
        return None;
    };
    let payload = icmp.payload();
    let builder = PacketBuilder::ethernet2(our_mac.0, peer_mac.0)
        .ipv4(our_ip.octets(), peer_ip.octets(), 64)
        .icmpv4_echo_reply(echo.id, echo.seq);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).ok()?;
    Some(out)
}
