//! ARP for the hub's own address (RFC 826; packet codec from etherparse):
//! a request for our IPv4 address gets a reply with our MAC. Nothing else is
//! answered; the hub never needs to resolve others, since it always replies to
//! the source MAC of the frame it answers (or to a DHCP client's chaddr).

use std::net::Ipv4Addr;

use etherparse::{ArpEthIpv4Packet, ArpOperation, ArpPacketSlice, EtherType, Ethernet2Header};
use vmlan_hub::MacAddr;

/// The reply frame to an ARP request for `our_ip`, or `None` if `arp` is not one.
pub fn answer(arp: &ArpPacketSlice<'_>, our_mac: MacAddr, our_ip: Ipv4Addr) -> Option<Vec<u8>> {
    let p = arp.to_packet().try_eth_ipv4().ok()?;
    if p.operation != ArpOperation::REQUEST || p.target_ipv4 != our_ip.octets() {
        return None;
    }
    let reply = ArpEthIpv4Packet {
        operation: ArpOperation::REPLY,
        sender_mac: our_mac.0,
        sender_ipv4: our_ip.octets(),
        target_mac: p.sender_mac,
        target_ipv4: p.sender_ipv4,
    };
    let eth = Ethernet2Header {
        source: our_mac.0,
        destination: p.sender_mac,
        ether_type: EtherType::ARP,
    };
    let mut out = Vec::with_capacity(42);
    out.extend_from_slice(&eth.to_bytes());
    out.extend_from_slice(&reply.to_bytes());
    Some(out)
}
