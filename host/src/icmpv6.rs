//! ICMPv6 for the hub's own addresses (RFC 4443): an echo request to one of
//! them gets an echo reply with the same identifier, sequence and data
//! (sections 4.1 and 4.2). Also the checked ICMPv6 message ([`Icmpv6In`])
//! that NDP (ndp.rs) and router advertisements (ra.rs) take, and the frame
//! builder they share.

use std::net::Ipv6Addr;

use etherparse::{Icmpv6Slice, Icmpv6Type, PacketBuilder};
use vmlan_hub::MacAddr;

/// An ICMPv6 message received by the host, with its checksum verified
/// (RFC 4443 section 2.3, over the IPv6 pseudo-header).
#[derive(Debug, Clone)]
pub struct Icmpv6In<'a> {
    /// The Ethernet source.
    pub src_mac: MacAddr,
    /// The IPv6 source.
    pub src: Ipv6Addr,
    /// The IPv6 destination.
    pub dst: Ipv6Addr,
    /// The IPv6 hop limit as received (NDP requires 255: RFC 4861 section 6.1, 7.1).
    pub hop_limit: u8,
    /// The message.
    pub icmp: Icmpv6Slice<'a>,
}

impl<'a> Icmpv6In<'a> {
    /// The message, or `None` when its checksum is wrong (to be dropped and
    /// counted as malformed).
    pub fn checked(
        src_mac: MacAddr,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        icmp: Icmpv6Slice<'a>,
    ) -> Option<Self> {
        icmp.is_checksum_valid(src.octets(), dst.octets()).then_some(Icmpv6In {
            src_mac,
            src,
            dst,
            hop_limit,
            icmp,
        })
    }
}

/// An Ethernet frame with an IPv6 packet carrying one ICMPv6 message: `ty`,
/// `code`, the header's bytes 5 to 8 and the body after them; the checksum
/// is computed here. `None` only if the body is too long for IPv6 (over 64 KiB).
pub(crate) fn frame(
    (src_mac, dst_mac): (MacAddr, MacAddr),
    (src, dst, hop_limit): (Ipv6Addr, Ipv6Addr, u8),
    (ty, code, bytes5to8): (u8, u8, [u8; 4]),
    body: &[u8],
) -> Option<Vec<u8>> {
    let b = PacketBuilder::ethernet2(src_mac.0, dst_mac.0)
        .ipv6(src.octets(), dst.octets(), hop_limit)
        .icmpv6_raw(ty, code, bytes5to8);
    let mut out = Vec::with_capacity(b.size(body.len()));
    b.write(&mut out, body).ok()?;
    Some(out)
}

/// The echo reply frame to `m` if it is an echo request (code 0) to one of
/// `ours` (unicast: requests to a multicast group are not answered), from
/// that address with hop limit 64; `None` otherwise.
pub fn answer(m: &Icmpv6In<'_>, our_mac: MacAddr, ours: &[Ipv6Addr]) -> Option<Vec<u8>> {
    let Icmpv6Type::EchoRequest(echo) = m.icmp.icmp_type() else {
        return None;
    };
    if !ours.contains(&m.dst) || m.src.is_unspecified() || m.src.is_multicast() {
        return None;
    }
    let b = PacketBuilder::ethernet2(our_mac.0, m.src_mac.0)
        .ipv6(m.dst.octets(), m.src.octets(), 64)
        .icmpv6_echo_reply(echo.id, echo.seq);
    let payload = m.icmp.payload();
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).ok()?;
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    pub(crate) const PEER_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    pub(crate) const OUR_MAC: MacAddr = MacAddr([0x02, 0x76, 0x6d, 0, 3, 1]);

    /// Parses `f` as the host does: the checked message, or `None` (bad checksum).
    pub(crate) fn parse(f: &[u8]) -> Option<Icmpv6In<'_>> {
        let p = SlicedPacket::from_ethernet(f).unwrap();
        let (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(icmp))) = (p.net, p.transport) else {
            panic!("not ICMPv6")
        };
        let h = ip.header();
        let src_mac = MacAddr(f[6..12].try_into().unwrap());
        Icmpv6In::checked(src_mac, h.source_addr(), h.destination_addr(), h.hop_limit(), icmp)
    }

    #[test]
    fn echo_request_gets_a_reply() {
        let ours: Ipv6Addr = "fe80::76:6dff:fe00:301".parse().unwrap();
        let peer: Ipv6Addr = "fe80::5054:ff:fe12:3456".parse().unwrap();
        let b = PacketBuilder::ethernet2(PEER_MAC.0, OUR_MAC.0)
            .ipv6(peer.octets(), ours.octets(), 64)
            .icmpv6_echo_request(0x1234, 7);
        let mut req = Vec::new();
        b.write(&mut req, b"hello").unwrap();
        let m = parse(&req).unwrap();
        let reply = answer(&m, OUR_MAC, &[ours]).unwrap();
        assert_eq!(&reply[0..6], &PEER_MAC.0);
        assert_eq!(&reply[6..12], &OUR_MAC.0);
        let r = parse(&reply).expect("the reply's checksum is right");
        assert_eq!((r.src, r.dst), (ours, peer));
        assert_eq!(
            r.icmp.icmp_type(),
            Icmpv6Type::EchoReply(etherparse::IcmpEchoHeader { id: 0x1234, seq: 7 })
        );
        assert_eq!(r.icmp.payload(), b"hello");
        // Not ours: no reply.
        assert!(answer(&m, OUR_MAC, &["1234::1".parse().unwrap()]).is_none());
        // A bad checksum does not get as far.
        let n = req.len();
        req[n - 1] ^= 1;
        assert!(parse(&req).is_none());
    }
}
