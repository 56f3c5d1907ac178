//! The VXLAN header, sans-IO (RFC 7348 section 5, "VXLAN Frame Format"):
//! 8 bytes before the inner Ethernet frame, in network byte order:
//!
//! ```text
//! flags (8: R R R R I R R R) | reserved (24) | VNI (24) | reserved (8)
//! ```
//!
//! The I flag (0x08) must be set for a valid VNI; the other flag bits and the
//! reserved fields are sent as zero and ignored on receipt (RFC 7348 section 5).
//! Also the outer UDP source port (RFC 7348 section 5, "Source Port": a hash
//! of the inner headers, in the dynamic range 49152-65535) and the IPv4
//! overhead (RFC 7348 section 4: 50 bytes = outer IPv4 20 + UDP 8 + VXLAN 8
//! + inner Ethernet header 14).

use crate::frame::HEADER_LEN as ETH_HEADER_LEN;

/// Length of the VXLAN header in bytes (RFC 7348 section 5).
pub const HEADER_LEN: usize = 8;

/// The I flag: the VNI field is valid (RFC 7348 section 5, "Flags").
pub const FLAG_I: u8 = 0x08;

/// The IANA-assigned VXLAN UDP port (RFC 7348 section 5, "Destination Port").
/// Linux's `ip link add ... type vxlan` defaults to 8472 unless `dstport 4789`.
pub const DEFAULT_PORT: u16 = 4789;

/// Largest VNI: the field is 24 bits.
pub const MAX_VNI: u32 = 0x00ff_ffff;

/// What VXLAN over IPv4 adds to an inner IP packet, in bytes: outer IPv4 (20)
/// + UDP (8) + VXLAN (8) + inner Ethernet header (14) (RFC 7348 section 4).
pub const OVERHEAD_V4: usize = 50;

/// Bytes between the start of the outer IPv4 header and the inner Ethernet
/// frame: an underlay MTU of `mtu` carries inner frames of at most `mtu - 36`
/// bytes (FCS not counted).
pub const OUTER_V4: usize = OVERHEAD_V4 - ETH_HEADER_LEN;

/// The start of RFC 7348 section 5's recommended source port range.
pub const SOURCE_PORT_MIN: u16 = 49152;

/// Why a received VXLAN datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than the 8-byte header.
    Short,
    /// The I flag is clear: no valid VNI (RFC 7348 section 5).
    NoIFlag,
    /// A valid header for another VNI (the segment is not ours).
    ForeignVni(u32),
    /// The inner frame is shorter than an Ethernet header (14 bytes).
    RuntFrame,
}

/// The header for `vni` (at most [`MAX_VNI`]; higher bits are ignored):
/// the I flag set, every reserved bit zero.
pub fn header(vni: u32) -> [u8; HEADER_LEN] {
    let v = (vni & MAX_VNI).to_be_bytes();
    [FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// Parses the header of `packet` (a UDP payload): the VNI and the inner
/// frame, which may be shorter than an Ethernet header (see [`decap`]).
///
/// # Errors
/// [`Malformed::Short`] under 8 bytes, [`Malformed::NoIFlag`] when the I flag is clear.
pub fn parse(packet: &[u8]) -> Result<(u32, &[u8]), Malformed> {
    let Some((h, inner)) = packet.split_first_chunk::<HEADER_LEN>() else {
        return Err(Malformed::Short);
    };
    if h[0] & FLAG_I == 0 {
        return Err(Malformed::NoIFlag);
    }
    Ok((u32::from_be_bytes([0, h[4], h[5], h[6]]), inner))
}

/// The inner Ethernet frame of `packet` if it is a valid VXLAN packet of `vni`.
///
/// # Errors
/// As [`parse`], plus [`Malformed::ForeignVni`] for another VNI and
/// [`Malformed::RuntFrame`] for an inner frame under 14 bytes.
pub fn decap(packet: &[u8], vni: u32) -> Result<&[u8], Malformed> {
    let (got, inner) = parse(packet)?;
    if got != vni {
        return Err(Malformed::ForeignVni(got));
    }
    if inner.len() < ETH_HEADER_LEN {
        return Err(Malformed::RuntFrame);
    }
    Ok(inner)
}

/// A hash of `frame`'s flow (RFC 7348 section 5, "Source Port"): the
/// Ethernet addresses and EtherType, and for IPv4 (IHL honoured) or IPv6 the
/// addresses and protocol, and for TCP, UDP, SCTP and UDP-Lite the ports
/// (first fragment only for IPv4). Frames of one flow hash alike, so they take
/// one outer source port and stay in order through ECMP. Never reads past `frame`.
pub fn flow_hash(frame: &[u8]) -> u32 {
    let mut h = Fnv::default();
    let eth = &frame[..frame.len().min(ETH_HEADER_LEN)];
    h.write(eth);
    if frame.len() < ETH_HEADER_LEN {
        return h.finish();
    }
    let ip = &frame[ETH_HEADER_LEN..];
    let (proto, l4) = match [frame[12], frame[13]] {
        [0x08, 0x00] if ip.len() >= 20 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            h.write(&ip[12..20]);
            let first_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
            (ip[9], ip.get(ihl..).filter(|_| ihl >= 20 && first_fragment))
        }
        [0x86, 0xdd] if ip.len() >= 40 => {
            h.write(&ip[8..40]);
            (ip[6], ip.get(40..))
        }
        _ => return h.finish(),
    };
    h.write(&[proto]);
    if let (6 | 17 | 132 | 136, Some(l4)) = (proto, l4) {
        if let Some(ports) = l4.get(..4) {
            h.write(ports);
        }
    }
    h.finish()
}

/// The source port for a flow hash in RFC 7348's recommended range 49152-65535.
pub fn source_port(hash: u32) -> u16 {
    SOURCE_PORT_MIN + (hash % 16384) as u16
}

/// 32-bit FNV-1a: simple, stable, and enough to spread flows over ports.
struct Fnv(u32);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0x811c_9dc5)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u32::from(*b)).wrapping_mul(0x0100_0193);
        }
    }
    fn finish(&self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_rfc_7348_and_round_trips() {
        // VNI 42: flags 0x08, reserved zero, VNI 00 00 2a, reserved zero.
        assert_eq!(header(42), [0x08, 0, 0, 0, 0, 0, 0x2a, 0]);
        assert_eq!(header(0x12_3456), [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        for vni in [0, 1, 42, 4096, MAX_VNI] {
            let mut p = header(vni).to_vec();
            p.extend_from_slice(&[0xab; 60]);
            assert_eq!(parse(&p), Ok((vni, &[0xab; 60][..])));
            assert_eq!(decap(&p, vni), Ok(&[0xab; 60][..]));
        }
    }

    #[test]
    fn reserved_bits_are_ignored_on_receipt() {
        let mut p = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 42, 0xff];
        p.extend_from_slice(&[0; 14]);
        assert_eq!(decap(&p, 42).map(<[u8]>::len), Ok(14));
    }

    #[test]
    fn bad_packets_are_refused() {
        let mut p = header(42).to_vec();
        p.extend_from_slice(&[0; 14]);
        assert_eq!(decap(&p[..7], 42), Err(Malformed::Short));
        assert_eq!(decap(&[], 42), Err(Malformed::Short));
        assert_eq!(decap(&p, 43), Err(Malformed::ForeignVni(42)));
        assert_eq!(decap(&p[..8 + 13], 42), Err(Malformed::RuntFrame));
        let mut no_i = p.clone();
        no_i[0] = 0;
        assert_eq!(decap(&no_i, 42), Err(Malformed::NoIFlag));
        assert_eq!(decap(&p, 42).map(<[u8]>::len), Ok(14));
    }

    fn udp4(sport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[14 + 9] = 17;
        f[14 + 12..14 + 16].copy_from_slice(&[10, 0, 0, 1]);
        f[14 + 16..14 + 20].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&53u16.to_be_bytes());
        f
    }

    #[test]
    fn flow_hash_follows_the_inner_headers() {
        assert_eq!(flow_hash(&udp4(1000)), flow_hash(&udp4(1000)));
        assert_ne!(flow_hash(&udp4(1000)), flow_hash(&udp4(1001)));
        // The payload does not count.
        let mut a = udp4(1000);
        a.extend_from_slice(&[1, 2, 3]);
        assert_eq!(flow_hash(&a), flow_hash(&udp4(1000)));
        // Truncated or odd frames never panic.
        for n in 0..udp4(1).len() {
            let _ = flow_hash(&udp4(7)[..n]);
        }
        let mut bad_ihl = udp4(1);
        bad_ihl[14] = 0x4f;
        let _ = flow_hash(&bad_ihl);
        for h in [0, 1, 16383, 16384, u32::MAX] {
            assert!(source_port(h) >= 49152);
        }
    }
}
