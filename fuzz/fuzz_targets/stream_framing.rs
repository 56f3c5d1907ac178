//! Feeds the stream framing decoder (hub/src/framing.rs, QEMU's 4-byte
//! big-endian length prefix) a connection's byte stream: the input after its
//! first byte, repeated 1 to 64 times (so that a short input still fills and
//! compacts the 256 KiB buffer), read in chunks of 1 to 70000 bytes (count and
//! sizes drawn from that first byte; see `vmlan_fuzz::chunks`). Checks: every
//! frame is 14..=69632 bytes and is exactly the next prefixed frame of the
//! stream, the decoder holds exactly the bytes not handed out, never more than its buffer, and it stops at the
//! first bad prefix only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmlan_hub::framing::{Decoder, DECODER_CAPACITY};

fuzz_target!(|data: &[u8]| {
    let (seed, bytes) = vmlan_fuzz::split_seed(data);
    let stream = bytes.repeat(1 + usize::from(seed >> 2));
    let mut d = Decoder::new();
    let (mut at, mut fed) = (0, 0); // where the next frame starts in `stream`; bytes given
    for mut chunk in vmlan_fuzz::chunks(seed, &stream, 70_000) {
        while !chunk.is_empty() {
            let spare = d.spare();
            let n = spare.len().min(chunk.len());
            spare[..n].copy_from_slice(&chunk[..n]);
            d.filled(n);
            (fed, chunk) = (fed + n, &chunk[n..]);
            let result = d.frames(|f| {
                assert!((14..=69_632).contains(&f.len()), "frame of {} bytes", f.len());
                assert_eq!(stream[at..at + 4], (f.len() as u32).to_be_bytes());
                assert_eq!(&stream[at + 4..at + 4 + f.len()], f);
                at += 4 + f.len();
            });
            assert!(
                d.pending() == fed - at && d.pending() <= DECODER_CAPACITY,
                "holds {}",
                d.pending()
            );
            if result.is_err() {
                let len = u32::from_be_bytes(stream[at..at + 4].try_into().unwrap()) as usize;
                assert!(!(14..=69_632).contains(&len), "refused a good prefix ({len})");
                return; // the hub closes the connection
            }
        }
    }
});
