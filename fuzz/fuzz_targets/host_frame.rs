//! Feeds the hub's host (`Host::handle_frame`) arbitrary bytes as Ethernet
//! frames: the input is records (control byte, 2-byte length, frame bytes; see
//! `vmlan_fuzz::records`), and a control byte with its top bit set first moves
//! the host's clock on by its low bits in minutes and runs the host's timers.
//! Checks: every reply is a well-formed Ethernet frame from the host's MAC,
//! and the lease table and DNS forward table and queue stay within their bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmlan_fuzz::{check_bounds, check_replies, host};

fuzz_target!(init: vmlan_fuzz::expect_caught_dhcproto_panics(), |data: &[u8]| {
    let mut host = host();
    for (ctl, frame) in vmlan_fuzz::records(data) {
        let mut out = vec![];
        if ctl & 0x80 != 0 {
            host.advance(u64::from(ctl & 0x7f) * 60, &mut out);
        }
        // The segment hands the host frames of 14 bytes or more only.
        if frame.len() >= 14 {
            host.handle_frame(frame, &mut out);
        }
        check_replies(&host, &out);
        check_bounds(&mut host);
    }
});
