//! Feeds the host's DHCP server arbitrary bytes as DHCP messages: each record
//! of the input (control byte, 2-byte length, message; see `vmlan_fuzz::records`)
//! goes in a valid Ethernet/IPv4/UDP frame to port 67, broadcast from 0.0.0.0:68,
//! from guest MAC 52:54:00:00:00:(control & 7) (1 and 2 have reservations), so
//! leases build up; control bits 3..6 move the clock on by that many minutes
//! (leases last 2) and run the host's timers. Checks: every reply is a well-formed
//! Ethernet frame from the host's MAC, at most one per message, and the lease
//! table stays bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmlan_fuzz::{check_bounds, check_replies, guest_mac, host, udp_frame};

fuzz_target!(init: vmlan_fuzz::expect_caught_dhcproto_panics(), |data: &[u8]| {
    let mut host = host();
    for (ctl, msg) in vmlan_fuzz::records(data) {
        let mut out = vec![];
        let minutes = u64::from((ctl >> 3) & 0xf);
        if minutes > 0 {
            host.advance(minutes * 60, &mut out);
        }
        let ticked = out.len();
        let frame = udp_frame(guest_mac(ctl & 7), [0; 4], 68, 67, true, msg);
        host.handle_frame(&frame, &mut out);
        assert!(out.len() - ticked <= 1, "{} replies to one DHCP message", out.len() - ticked);
        check_replies(&host, &out);
        check_bounds(&mut host);
    }
});
