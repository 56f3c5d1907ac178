//! Length-prefixed messages on a byte stream: each message travels behind its
//! length, a `W`-byte big-endian unsigned integer. One writer serves every
//! such stream of vmlan:
//!
//! - QEMU's stream framing, `W = 4` (QEMU net/stream.c and net/socket.c via
//!   `net_fill_rstate` in net/net.c; the hub's framing.rs);
//! - DNS over TCP, `W = 2` (RFC 1035 section 4.2.2; the `--dns-listen` TCP
//!   listener and the upstream TCP exchange in src/dns_io.rs, and the host's
//!   DNS-over-TCP server).

/// A message longer than its length prefix can say; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {len}-byte message does not fit a {width}-byte length prefix")]
pub struct TooLong {
    /// The message's length, in bytes.
    pub len: usize,
    /// The prefix's width, in bytes.
    pub width: usize,
}

/// Appends `msg` to `out` behind its length as a `W`-byte big-endian unsigned
/// integer (`W` from 1 to 8): `W + msg.len()` bytes. Allocates only when `out`
/// must grow, so a reused buffer costs no allocation per message.
///
/// # Errors
/// [`TooLong`] when `msg.len()` is at least `2^(8 W)` (over 65,535 bytes for
/// `W = 2`); `out` is left as it was.
#[inline]
pub fn put_prefixed<const W: usize>(out: &mut Vec<u8>, msg: &[u8]) -> Result<(), TooLong> {
    const { assert!(W >= 1 && W <= 8, "a length prefix is 1 to 8 bytes") };
    let len = msg.len() as u64;
    if W < 8 && len >> (8 * W) != 0 {
        return Err(TooLong {
            len: msg.len(),
            width: W,
        });
    }
    out.extend_from_slice(&len.to_be_bytes()[8 - W..]);
    out.extend_from_slice(msg);
    Ok(())
}

/// `msg` behind its `W`-byte big-endian length, in a new vector (see [`put_prefixed`]).
///
/// # Errors
/// [`TooLong`], as [`put_prefixed`].
pub fn prefixed<const W: usize>(msg: &[u8]) -> Result<Vec<u8>, TooLong> {
    let mut out = Vec::with_capacity(W + msg.len());
    put_prefixed::<W>(&mut out, msg)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_and_limits() {
        assert_eq!(prefixed::<2>(b"abc").unwrap(), [0, 3, b'a', b'b', b'c']);
        assert_eq!(prefixed::<4>(&[7; 300]).unwrap()[..5], [0, 0, 1, 44, 7]);
        assert_eq!(prefixed::<1>(&[]).unwrap(), [0]);
        let big = vec![0u8; 65_536];
        assert_eq!(prefixed::<2>(&big[..65_535]).unwrap()[..2], [0xff, 0xff]);
        let mut out = vec![9];
        assert_eq!(
            put_prefixed::<2>(&mut out, &big),
            Err(TooLong { len: 65_536, width: 2 })
        );
        assert_eq!(out, [9], "nothing written on error");
        assert_eq!(prefixed::<4>(&big).unwrap()[..4], [0, 1, 0, 0]);
        assert_eq!(prefixed::<8>(b"x").unwrap(), [0, 0, 0, 0, 0, 0, 0, 1, b'x']);
    }
}
