//! Ethernet II frames as the hub sees them: a MAC address type and a zero-copy
//! view of a frame's header (IEEE 802.3 clause 3.2; no preamble, no FCS, no
//! virtio header, exactly what QEMU's netdevs carry, see QEMU net/net.c).

use std::fmt;
use std::str::FromStr;

/// Length of an Ethernet II header in bytes: destination, source, EtherType.
pub const HEADER_LEN: usize = 14;

/// Largest frame QEMU's socket, stream and dgram netdevs accept, in bytes
/// (`NET_BUFSIZE` in QEMU include/net/net.h: 4096 + 65536).
pub const MAX_FRAME_LEN: usize = 69632;

/// A 48-bit IEEE 802 MAC address, in transmission (network) byte order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl std::hash::Hash for MacAddr {
    /// Hashes the address as one `u64`, so the MAC table's hasher does one step.
    fn hash<S: std::hash::Hasher>(&self, state: &mut S) {
        let b = self.0;
        state.write_u64(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], 0, 0]));
    }
}

impl MacAddr {
    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// True for group addresses (the I/G bit, bit 0 of the first byte): broadcast,
    /// IPv4 multicast `01:00:5e:*` and IPv6 multicast `33:33:*`. A switch floods them.
    pub fn is_group(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for a locally administered address (the U/L bit, bit 1 of the first byte).
    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// The 6 bytes, in network order.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Error from parsing a MAC address that is not six hex pairs joined by `:` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a MAC address (expected six hex pairs like 52:54:00:12:34:56): {0:?}")]
pub struct MacParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacParseError;

    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-`), case-insensitive, as dnsmasq and QEMU write them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

/// A read-only view of an Ethernet II frame held in a byte slice.
///
/// Construct it with [`Frame::new`], which checks the length once; the
/// accessors then never fail.
#[derive(Clone, Copy)]
pub struct Frame<'a> {
    bytes: &'a [u8],
}

/// Why a byte slice is not a frame the hub forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than the 14-byte Ethernet header (a zero-length datagram included).
    #[error("frame of {0} bytes is shorter than the 14-byte Ethernet header")]
    TooShort(usize),
    /// Longer than QEMU's 69632-byte limit.
    #[error("frame of {0} bytes is longer than QEMU's 69632-byte limit")]
    TooLong(usize),
}

impl<'a> Frame<'a> {
    /// Views `bytes` as a frame.
    ///
    /// # Errors
    /// [`FrameError::TooShort`] under [`HEADER_LEN`] bytes, [`FrameError::TooLong`]
    /// over [`MAX_FRAME_LEN`] bytes.
    pub fn new(bytes: &'a [u8]) -> Result<Self, FrameError> {
        if bytes.len() < HEADER_LEN {
            return Err(FrameError::TooShort(bytes.len()));
        }
        if bytes.len() > MAX_FRAME_LEN {
            return Err(FrameError::TooLong(bytes.len()));
        }
        Ok(Frame { bytes })
    }

    /// Destination MAC address (bytes 0..6).
    pub fn dst(&self) -> MacAddr {
        MacAddr(self.bytes[0..6].try_into().expect("checked length"))
    }

    /// Source MAC address (bytes 6..12).
    pub fn src(&self) -> MacAddr {
        MacAddr(self.bytes[6..12].try_into().expect("checked length"))
    }

    /// EtherType (bytes 12..14), host byte order (0x0800 IPv4, 0x0806 ARP, 0x86dd IPv6).
    pub fn ethertype(&self) -> u16 {
        u16::from_be_bytes([self.bytes[12], self.bytes[13]])
    }

    /// The whole frame, header included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_print() {
        let m: MacAddr = "00:00:00:11:11:1A".parse().unwrap();
        assert_eq!(m.0, [0, 0, 0, 0x11, 0x11, 0x1a]);
        assert_eq!(m.to_string(), "00:00:00:11:11:1a");
        assert_eq!("52-54-00-12-34-56".parse::<MacAddr>().unwrap().0[0], 0x52);
        for bad in [
            "",
            "00:00:00:11:11",
            "00:00:00:11:11:11:11",
            "0:00:00:11:11:11",
            "zz:00:00:11:11:11",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn group_and_local_bits() {
        assert!(MacAddr::BROADCAST.is_group());
        assert!("33:33:00:00:00:01".parse::<MacAddr>().unwrap().is_group());
        assert!("01:00:5e:00:00:01".parse::<MacAddr>().unwrap().is_group());
        assert!(!"52:54:00:12:34:56".parse::<MacAddr>().unwrap().is_group());
        assert!("02:00:00:00:00:01".parse::<MacAddr>().unwrap().is_local());
    }

    #[test]
    fn frame_view() {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&[0, 0, 0, 0x11, 0x11, 0x11]);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        let v = Frame::new(&f).unwrap();
        assert_eq!(v.dst(), MacAddr::BROADCAST);
        assert_eq!(v.src().to_string(), "00:00:00:11:11:11");
        assert_eq!(v.ethertype(), 0x0806);
        assert_eq!(Frame::new(&f[..13]).err(), Some(FrameError::TooShort(13)));
        assert_eq!(Frame::new(&[]).err(), Some(FrameError::TooShort(0)));
        let big = vec![0u8; MAX_FRAME_LEN + 1];
        assert_eq!(Frame::new(&big).err(), Some(FrameError::TooLong(MAX_FRAME_LEN + 1)));
    }
}
