//! QEMU's stream framing, sans-IO: on `-netdev stream` and `-netdev socket`
//! (`connect=`/`listen=`) every frame travels as a 4-byte big-endian length
//! followed by the raw Ethernet frame, no FCS, no virtio header (QEMU
//! net/stream.c and net/socket.c, both via `net_fill_rstate` in net/net.c).
//!
//! QEMU accepts lengths up to `NET_BUFSIZE` (69632 bytes); a length under the
//! 14-byte Ethernet header or over that limit is a protocol error, which closes
//! that client only.
//!
//! [`Decoder`] keeps one receive buffer per connection: a read appends bytes,
//! [`Decoder::frames`] hands out every complete frame as a slice of that buffer
//! (no copy, no allocation) and keeps a partial frame for the next read, so a
//! read may hold many frames, or a frame may span many reads.
//! [`encode_into`] appends one framed frame to an output buffer, through the
//! hub's one length-prefix writer ([`crate::sys::prefix::put_prefixed`]).

use crate::frame::{HEADER_LEN, MAX_FRAME_LEN};
use crate::sys::prefix::put_prefixed;

/// Bytes of the length prefix.
pub const PREFIX_LEN: usize = 4;

/// Receive buffer of a connection: room for several maximum frames, so one read
/// syscall can take many small frames at once.
pub const DECODER_CAPACITY: usize = 256 * 1024;

/// A length prefix QEMU would refuse; the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The prefix announces fewer bytes than an Ethernet header (0 included).
    #[error("frame length {0} is under the 14-byte Ethernet header")]
    TooShort(u32),
    /// The prefix announces more than QEMU's 69632-byte limit.
    #[error("frame length {0} is over QEMU's 69632-byte limit")]
    TooLong(u32),
}

/// Reassembles frames from the byte stream of one connection.
pub struct Decoder {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// An empty decoder with a [`DECODER_CAPACITY`]-byte buffer (allocated once).
    pub fn new() -> Self {
        Decoder {
            buf: vec![0u8; DECODER_CAPACITY].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Free space to read into, at least one maximum frame plus its prefix. Call
    /// [`Decoder::filled`] with the number of bytes read into it.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.buf.len() - self.end < PREFIX_LEN + MAX_FRAME_LEN {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into [`Decoder::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Bytes received but not yet handed out (a partial frame).
    pub fn pending(&self) -> usize {
        self.end - self.start
    }

    /// Calls `f` with each complete frame, in order, then keeps any partial frame.
    ///
    /// # Errors
    /// The first invalid length prefix; frames before it were delivered, and the
    /// connection must be closed (nothing after it can be trusted).
    pub fn frames(&mut self, mut f: impl FnMut(&[u8])) -> Result<(), FramingError> {
        loop {
            let avail = &self.buf[self.start..self.end];
            if avail.len() < PREFIX_LEN {
                break;
            }
            let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]);
            if (len as usize) < HEADER_LEN {
                return Err(FramingError::TooShort(len));
            }
            if len as usize > MAX_FRAME_LEN {
                return Err(FramingError::TooLong(len));
            }
            let total = PREFIX_LEN + len as usize;
            if avail.len() < total {
                break;
            }
            f(&avail[PREFIX_LEN..total]);
            self.start += total;
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(())
    }
}

/// Appends `frame` with its length prefix to `out`. `frame` must be 14..=69632
/// bytes (the segment only forwards such frames).
#[inline]
pub fn encode_into(out: &mut Vec<u8>, frame: &[u8]) {
    debug_assert!((HEADER_LEN..=MAX_FRAME_LEN).contains(&frame.len()));
    // Cannot fail: a frame is far under 4 GiB.
    let _ = put_prefixed::<PREFIX_LEN>(out, frame);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize, fill: u8) -> Vec<u8> {
        vec![fill; len]
    }

    fn feed(d: &mut Decoder, bytes: &[u8]) {
        let s = d.spare();
        s[..bytes.len()].copy_from_slice(bytes);
        d.filled(bytes.len());
    }

    fn collect(d: &mut Decoder) -> Result<Vec<Vec<u8>>, FramingError> {
        let mut v = vec![];
        d.frames(|f| v.push(f.to_vec()))?;
        Ok(v)
    }

    #[test]
    fn merged_frames_in_one_read() {
        let mut wire = vec![];
        for (len, fill) in [(14, 1), (60, 2), (1514, 3)] {
            encode_into(&mut wire, &frame(len, fill));
        }
        assert_eq!(&wire[..4], &[0, 0, 0, 14]);
        let mut d = Decoder::new();
        feed(&mut d, &wire);
        let got = collect(&mut d).unwrap();
        assert_eq!(got, vec![frame(14, 1), frame(60, 2), frame(1514, 3)]);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn frames_split_at_every_byte() {
        let mut wire = vec![];
        encode_into(&mut wire, &frame(100, 7));
        encode_into(&mut wire, &frame(64, 8));
        for cut in 0..wire.len() {
            let mut d = Decoder::new();
            feed(&mut d, &wire[..cut]);
            let mut got = collect(&mut d).unwrap();
            feed(&mut d, &wire[cut..]);
            got.extend(collect(&mut d).unwrap());
            assert_eq!(got, vec![frame(100, 7), frame(64, 8)], "cut at {cut}");
        }
    }

    #[test]
    fn one_byte_at_a_time_and_maximum_frames() {
        let mut wire = vec![];
        encode_into(&mut wire, &frame(MAX_FRAME_LEN, 9));
        encode_into(&mut wire, &frame(MAX_FRAME_LEN, 10));
        let mut d = Decoder::new();
        let mut got = vec![];
        for b in &wire {
            feed(&mut d, &[*b]);
            got.extend(collect(&mut d).unwrap());
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], frame(MAX_FRAME_LEN, 10));
    }

    #[test]
    fn buffer_compacts_under_sustained_load() {
        // Many reads that each end mid-frame: the buffer must compact, never overflow.
        let mut wire = vec![];
        for i in 0..2000 {
            encode_into(&mut wire, &frame(60 + i % 1400, (i % 251) as u8));
        }
        let mut d = Decoder::new();
        let mut n = 0;
        for chunk in wire.chunks(70_001) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let s = d.spare();
                let k = s.len().min(rest.len());
                s[..k].copy_from_slice(&rest[..k]);
                d.filled(k);
                rest = &rest[k..];
                d.frames(|_| n += 1).unwrap();
            }
        }
        assert_eq!(n, 2000);
    }

    #[test]
    fn every_bad_length() {
        for (len, want) in [
            (0u32, FramingError::TooShort(0)),
            (13, FramingError::TooShort(13)),
            (69633, FramingError::TooLong(69633)),
            (u32::MAX, FramingError::TooLong(u32::MAX)),
        ] {
            let mut d = Decoder::new();
            let mut wire = vec![];
            encode_into(&mut wire, &frame(20, 1));
            wire.extend_from_slice(&len.to_be_bytes());
            wire.extend_from_slice(&[0; 20]);
            feed(&mut d, &wire);
            let mut got = 0;
            assert_eq!(d.frames(|_| got += 1), Err(want));
            assert_eq!(got, 1, "the good frame before the bad prefix is delivered");
        }
        // The limits themselves are fine.
        for len in [14usize, MAX_FRAME_LEN] {
            let mut d = Decoder::new();
            let mut wire = vec![];
            encode_into(&mut wire, &frame(len, 1));
            feed(&mut d, &wire);
            assert_eq!(collect(&mut d).unwrap().len(), 1);
        }
    }
}
