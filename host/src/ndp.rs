//! Neighbor Discovery for the hub's own addresses (RFC 4861 sections 4.3,
//! 4.4, 7.1.1, 7.2.3-7.2.4; duplicate address detection: RFC 4862 section
//! 5.4): a Neighbor Solicitation for one of the host's addresses, unicast or
//! to its solicited-node group, gets a Neighbor Advertisement with the S and
//! O flags and our MAC as target link-layer address; a DAD probe (source
//! `::`) for one of them is answered to all-nodes (`ff02::1`) without S, so
//! the prober sees the address is taken. Solicitations for other addresses
//! are never answered; invalid ones (hop limit not 255, code not 0, a bad
//! option length, a DAD probe not sent to the solicited-node group or with
//! a source link-layer option) are dropped.
//!
//! The host answers every frame to its source MAC; it solicits only to check
//! that a SLAAC address it names is still in use ([`solicitation`],
//! slaac_names.rs).

use std::net::Ipv6Addr;

use vmlan_hub::MacAddr;

use crate::icmpv6::{frame, Icmpv6In};
use crate::ipv6::{multicast_mac, solicited_node, ALL_NODES};

/// ICMPv6 type of a Router Solicitation (RFC 4861 section 4.1).
pub const ROUTER_SOLICITATION: u8 = 133;
/// ICMPv6 type of a Router Advertisement (RFC 4861 section 4.2).
pub const ROUTER_ADVERTISEMENT: u8 = 134;
/// ICMPv6 type of a Neighbor Solicitation (RFC 4861 section 4.3).
pub const NEIGHBOR_SOLICITATION: u8 = 135;
/// ICMPv6 type of a Neighbor Advertisement (RFC 4861 section 4.4).
pub const NEIGHBOR_ADVERTISEMENT: u8 = 136;

/// Option type: source link-layer address (RFC 4861 section 4.6.1).
pub const OPT_SOURCE_LL: u8 = 1;
/// Option type: target link-layer address (RFC 4861 section 4.6.1).
pub const OPT_TARGET_LL: u8 = 2;

/// The hop limit of every NDP message (RFC 4861 section 6.1.1, 7.1.1).
pub const NDP_HOP_LIMIT: u8 = 255;

/// The options of an NDP message body, `(type, whole option bytes)` in order;
/// `None` when one has length 0 or overruns (RFC 4861 section 4.6: drop it).
pub fn options(mut body: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let len = usize::from(*body.get(1)?) * 8;
        if len == 0 || len > body.len() {
            return None;
        }
        out.push((body[0], &body[..len]));
        body = &body[len..];
    }
    Some(out)
}

/// The MAC of a source or target link-layer address option (`None`: not 8 bytes).
pub fn option_mac(opt: &[u8]) -> Option<MacAddr> {
    (opt.len() == 8).then(|| MacAddr(opt[2..8].try_into().expect("8 bytes")))
}

/// A link-layer address option of `ty` with `mac` (8 bytes).
pub fn ll_option(ty: u8, mac: MacAddr) -> [u8; 8] {
    let m = mac.0;
    [ty, 1, m[0], m[1], m[2], m[3], m[4], m[5]]
}

/// The Neighbor Advertisement frame answering `m` if it is a valid Neighbor
/// Solicitation for one of `ours`; `router` sets the R flag (the host
/// advertises itself as a default router: RFC 4861 section 7.2.5 makes a
/// host drop a router whose advertisements clear it). `Ok(None)`: not a
/// solicitation, or for an address that is not ours.
///
/// # Errors
/// Why an invalid solicitation is dropped (RFC 4861 section 7.1.1): hop
/// limit not 255, code not 0, shorter than a target, an option of length
/// 0 or overrunning, a DAD probe not to the solicited-node group or with a
/// source link-layer option, a multicast source.
///
/// A solicitation from a unicast source gets S=1, O=1, unicast to the
/// solicitor (its source link-layer option's MAC, else the frame's source);
/// a DAD probe (source `::`) gets S=0, O=1 to `ff02::1` (RFC 4861 section
/// 7.2.4). Sent from the target address, hop limit 255.
pub fn answer(
    m: &Icmpv6In<'_>,
    our_mac: MacAddr,
    ours: &[Ipv6Addr],
    router: bool,
) -> Result<Option<Vec<u8>>, &'static str> {
    if m.icmp.type_u8() != NEIGHBOR_SOLICITATION {
        return Ok(None);
    }
    if m.icmp.code_u8() != 0 || m.hop_limit != NDP_HOP_LIMIT {
        return Err("neighbor solicitation with a code or hop limit other than 0 and 255");
    }
    let body = m.icmp.payload();
    let target: [u8; 16] = body
        .get(..16)
        .and_then(|t| t.try_into().ok())
        .ok_or("neighbor solicitation without a target")?;
    let target = Ipv6Addr::from(target);
    let opts = options(&body[16..]).ok_or("neighbor solicitation with a bad option length")?;
    if !ours.contains(&target) || !(m.dst == target || m.dst == solicited_node(target)) {
        return Ok(None);
    }
    let sll = opts.iter().find(|(t, _)| *t == OPT_SOURCE_LL).map(|(_, o)| *o);
    let mut flags = 0x20; // O: override
    if router {
        flags |= 0x80;
    }
    let (dst_mac, dst) = if m.src.is_unspecified() {
        // DAD (RFC 4861 section 7.1.1): to the solicited-node group, no source link-layer option.
        if m.dst != solicited_node(target) || sll.is_some() {
            return Err("DAD probe not to the solicited-node group, or with a source link-layer option");
        }
        (multicast_mac(ALL_NODES), ALL_NODES)
    } else {
        if m.src.is_multicast() {
            return Err("neighbor solicitation from a multicast address");
        }
        flags |= 0x40; // S: solicited
        let mac = match sll {
            Some(o) => option_mac(o).ok_or("a source link-layer option that is not 6 bytes")?,
            None => m.src_mac,
        };
        (mac, m.src)
    };
    let mut reply = target.octets().to_vec();
    reply.extend_from_slice(&ll_option(OPT_TARGET_LL, our_mac));
    Ok(frame(
        (our_mac, dst_mac),
        (target, dst, NDP_HOP_LIMIT),
        (NEIGHBOR_ADVERTISEMENT, 0, [flags, 0, 0, 0]),
        &reply,
    ))
}

/// A unicast Neighbor Solicitation (RFC 4861 section 4.3, as neighbour
/// unreachability detection sends, section 7.3.1) from `our_mac`, `src`, to
/// `dst_mac` for `target`, sent to `target` itself with `our_mac` as source
/// link-layer option, hop limit 255. `None` only if the frame cannot be built.
pub fn solicitation(our_mac: MacAddr, src: Ipv6Addr, dst_mac: MacAddr, target: Ipv6Addr) -> Option<Vec<u8>> {
    let mut body = target.octets().to_vec();
    body.extend_from_slice(&ll_option(OPT_SOURCE_LL, our_mac));
    frame(
        (our_mac, dst_mac),
        (src, target, NDP_HOP_LIMIT),
        (NEIGHBOR_SOLICITATION, 0, [0; 4]),
        &body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::icmpv6::tests::{parse, OUR_MAC, PEER_MAC};

    fn ours() -> Vec<Ipv6Addr> {
        vec![
            "fe80::76:6dff:fe00:301".parse().unwrap(),
            "1234::76:6dff:fe00:301".parse().unwrap(),
        ]
    }

    /// A Neighbor Solicitation frame for `target`, with a source link-layer option if `sll`.
    fn ns(src: &str, dst: &str, target: &str, hop: u8, sll: bool) -> Vec<u8> {
        let dst: Ipv6Addr = dst.parse().unwrap();
        let dst_mac = if dst.is_multicast() {
            multicast_mac(dst)
        } else {
            OUR_MAC
        };
        let mut body = target.parse::<Ipv6Addr>().unwrap().octets().to_vec();
        if sll {
            body.extend_from_slice(&ll_option(OPT_SOURCE_LL, PEER_MAC));
        }
        frame(
            (PEER_MAC, dst_mac),
            (src.parse().unwrap(), dst, hop),
            (NEIGHBOR_SOLICITATION, 0, [0; 4]),
            &body,
        )
        .unwrap()
    }

    /// The answer to `f`; `None` for no answer, valid or not (see [`invalid`]).
    fn run(f: &[u8]) -> Option<Vec<u8>> {
        answer(&parse(f).unwrap(), OUR_MAC, &ours(), false).unwrap_or(None)
    }

    /// Whether `f` is refused as invalid (rather than not ours).
    fn invalid(f: &[u8]) -> bool {
        answer(&parse(f).unwrap(), OUR_MAC, &ours(), false).is_err()
    }

    const PEER: &str = "fe80::5054:ff:fe12:3456";

    /// Checks an advertisement: MACs, addresses, flags, target and its link-layer option.
    fn check_na(f: &[u8], dst_mac: MacAddr, dst: &str, target: &str, flags: u8) {
        assert_eq!(&f[0..6], &dst_mac.0);
        assert_eq!(&f[6..12], &OUR_MAC.0);
        let m = parse(f).expect("checksum");
        assert_eq!(m.src, target.parse::<Ipv6Addr>().unwrap());
        assert_eq!(m.dst, dst.parse::<Ipv6Addr>().unwrap());
        assert_eq!(m.hop_limit, 255);
        assert_eq!((m.icmp.type_u8(), m.icmp.code_u8()), (NEIGHBOR_ADVERTISEMENT, 0));
        assert_eq!(m.icmp.bytes5to8(), [flags, 0, 0, 0]);
        let body = m.icmp.payload();
        assert_eq!(&body[..16], &target.parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(&body[16..], &ll_option(OPT_TARGET_LL, OUR_MAC));
    }

    #[test]
    fn unicast_and_solicited_node_solicitations_are_answered() {
        let ll = "fe80::76:6dff:fe00:301";
        let na = run(&ns(PEER, ll, ll, 255, true)).unwrap();
        check_na(&na, PEER_MAC, PEER, ll, 0x60);
        let na = run(&ns(PEER, "ff02::1:ff00:301", ll, 255, true)).unwrap();
        check_na(&na, PEER_MAC, PEER, ll, 0x60);
        // Without a source link-layer option: to the frame's source.
        let na = run(&ns("1234::9", "ff02::1:ff00:301", "1234::76:6dff:fe00:301", 255, false)).unwrap();
        check_na(&na, PEER_MAC, "1234::9", "1234::76:6dff:fe00:301", 0x60);
        // As a router: R too.
        let m = ns(PEER, ll, ll, 255, true);
        let na = answer(&parse(&m).unwrap(), OUR_MAC, &ours(), true).unwrap().unwrap();
        check_na(&na, PEER_MAC, PEER, ll, 0xe0);
    }

    #[test]
    fn dad_probe_is_answered_to_all_nodes() {
        let ll = "fe80::76:6dff:fe00:301";
        let na = run(&ns("::", "ff02::1:ff00:301", ll, 255, false)).unwrap();
        check_na(&na, multicast_mac(ALL_NODES), "ff02::1", ll, 0x20);
        // A DAD probe with a source link-layer option, or sent unicast, is invalid.
        assert!(invalid(&ns("::", "ff02::1:ff00:301", ll, 255, true)));
        assert!(invalid(&ns("::", ll, ll, 255, false)));
    }

    #[test]
    fn foreign_and_invalid_solicitations_are_ignored() {
        let ll = "fe80::76:6dff:fe00:301";
        // Not ours: no answer, and valid.
        let f = ns(PEER, "ff02::1:ff00:302", "fe80::76:6dff:fe00:302", 255, true);
        assert!(run(&f).is_none() && !invalid(&f));
        let f = ns("::", "ff02::1:ff12:3456", PEER, 255, false);
        assert!(run(&f).is_none() && !invalid(&f));
        // Sent to another node's solicited-node group.
        assert!(run(&ns(PEER, "ff02::1:ff12:3456", ll, 255, true)).is_none());
        // Hop limit not 255: it crossed a router.
        assert!(invalid(&ns(PEER, ll, ll, 254, true)));
        // Code not 0.
        let mut f = ns(PEER, ll, ll, 255, true);
        f[14 + 40 + 1] = 1;
        let m = parse(&f);
        assert!(m.is_none(), "the checksum covers the code");
        // An option of length 0.
        let mut body = ll.parse::<Ipv6Addr>().unwrap().octets().to_vec();
        body.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        let f = frame(
            (PEER_MAC, OUR_MAC),
            (PEER.parse().unwrap(), ll.parse().unwrap(), 255),
            (NEIGHBOR_SOLICITATION, 0, [0; 4]),
            &body,
        )
        .unwrap();
        assert!(invalid(&f));
        let f = frame(
            (PEER_MAC, OUR_MAC),
            (PEER.parse().unwrap(), ll.parse().unwrap(), 255),
            (NEIGHBOR_SOLICITATION, 1, [0; 4]),
            &ll.parse::<Ipv6Addr>().unwrap().octets(),
        )
        .unwrap();
        assert!(invalid(&f));
        // A bad checksum is refused before NDP sees it.
        let mut f = ns(PEER, ll, ll, 255, true);
        let n = f.len();
        f[n - 1] ^= 0xff;
        assert!(parse(&f).is_none());
    }
}
