//! The vhost-user port driven through its real socket protocol by an
//! in-process frontend (QEMU's side: tests/common/vhost_frontend.rs, which
//! negotiates features, shares a memfd as guest memory and plays the guest
//! driver on the RX and TX virtqueues, with eventfds for the kicks and
//! calls). The hub's side is a `Segment` with the port behind a
//! `vhost_user::Listener` and a second port that records what it is sent, so
//! frames are followed from a guest's TX ring to another port and from
//! another port into the guest's RX ring.
//!
//! What is checked (issue 13, one level above ring.rs's unit tests): TX
//! chains split at every byte offset arrive intact and are all returned;
//! RX frames land behind a 12-byte virtio-net header with the right
//! `num_buffers`, mergeable buffers included, and the guest is notified; a
//! full or disabled RX ring drops frames and counts them; a malformed chain
//! (outside guest memory, looping) closes the connection and removes the
//! port, and the next frontend is served. Every wait is bounded.

mod common;

use common::vhost_frontend::{connect, frame, hub, rx_header, wait_for, BROADCAST, DATA_AT, GUEST, OUTSIDE, RX, TX};

use vhost::vhost_user::VhostUserFrontend;
use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_NEXT;
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use vmlan_hub::port::vhost_user::ring::HDR_LEN;

/// A station behind the recording port.
const OTHER: [u8; 6] = [2, 0, 0, 0, 0, 0x0b];
/// A unicast address nobody has: flooded, so the recording port sees it.
const NOBODY: [u8; 6] = [2, 0, 0, 0, 0, 0x99];

#[test]
fn tx_frames_arrive_intact_whatever_the_split() {
    let hub = hub("tx");
    let mut g = connect(&hub);

    // A 60-byte frame, cut into two descriptors after every byte of header +
    // frame (after byte 12: the header alone), each chain sent on its own
    // (`send` waits for the hub's call and checks the used entries).
    let mut sent = 1u64;
    for cut in 1..HDR_LEN + 60 {
        let f = frame(NOBODY, GUEST, 60, cut as u32);
        g.send(&[(&f, cut)]);
        assert_eq!(hub.rec.take(1), vec![f], "cut after byte {cut}");
        sent += 1;
    }
    // Header and frame both split over many descriptors.
    let f = frame(NOBODY, GUEST, 60, 1000);
    g.send_cut(&[(&f, vec![1, 5, 11, 12, 13, 14, 30, 71])]);
    assert_eq!(hub.rec.take(1), vec![f]);
    sent += 1;

    // A 1514-byte frame cut after every byte, 100 chains offered per kick
    // (the port drains 64 frames per batch).
    let cuts: Vec<usize> = (1..HDR_LEN + 1514).collect();
    for group in cuts.chunks(100) {
        let frames: Vec<Vec<u8>> = group.iter().map(|&c| frame(NOBODY, GUEST, 1514, c as u32)).collect();
        let chains: Vec<(&[u8], usize)> = frames.iter().map(|f| f.as_slice()).zip(group.iter().copied()).collect();
        g.send(&chains);
        let got = hub.rec.take(frames.len());
        for (i, (got, want)) in got.iter().zip(&frames).enumerate() {
            assert!(
                got == want,
                "1514-byte frame cut after byte {} arrived changed",
                group[i]
            );
        }
        sent += frames.len() as u64;
    }
    let st = hub.stats(g.id);
    assert_eq!((st.rx_frames, st.errors, st.drops), (sent, 0, 0));
    assert_eq!(hub.seg.stats(hub.other).unwrap().tx_frames, sent);
}

#[test]
fn rx_frames_land_behind_their_header() {
    let hub = hub("rx");
    let mut g = connect(&hub);
    let _ = g.called(RX);
    let at = DATA_AT[RX];

    // Chain a: the header in a descriptor of its own, then 1536 bytes; chain b: 1536 bytes.
    let a = g.offer(RX, &[(at, HDR_LEN as u32, true), (at + 0x1000, 1536, true)]);
    let b = g.offer(RX, &[(at + 0x2000, 1536, true)]);
    g.kick(RX);
    let small = frame(GUEST, OTHER, 60, 1);
    let big = frame(GUEST, OTHER, 1514, 2);
    hub.ingress(&small);
    hub.ingress(&big);
    assert_eq!(g.wait_used(RX, 2), vec![(a, 72), (b, 1526)]);
    assert_eq!(g.read(at, HDR_LEN), rx_header(1));
    assert_eq!(g.read(at + 0x1000, 60), small);
    assert_eq!(g.read(at + 0x2000, HDR_LEN), rx_header(1));
    assert_eq!(g.read(at + 0x2000 + HDR_LEN as u64, 1514), big);
    assert!(g.called(RX), "the guest was not notified");
    assert!(hub.rec.is_empty(), "a frame for the guest reached the other port");

    // Mergeable buffers: a 1514-byte frame over 512-byte chains takes three.
    let heads = g.post_rx(4, 512, at + 0x10_000);
    let big2 = frame(GUEST, OTHER, 1514, 3);
    hub.ingress(&big2);
    let rest = (HDR_LEN + 1514 - 1024) as u32;
    assert_eq!(
        g.wait_used(RX, 3),
        vec![(heads[0], 512), (heads[1], 512), (heads[2], rest)]
    );
    let mut got = g.read(at + 0x10_000, 512);
    got.extend(g.read(at + 0x11_000, 512));
    got.extend(g.read(at + 0x12_000, rest as usize));
    assert_eq!(got[..HDR_LEN], rx_header(3));
    assert_eq!(got[HDR_LEN..], big2[..]);
    assert!(g.called(RX), "the guest was not notified of the merged frame");

    // A broadcast from the other side lands in the fourth chain.
    let bcast = frame(BROADCAST, OTHER, 60, 4);
    hub.ingress(&bcast);
    assert_eq!(g.wait_used(RX, 1), vec![(heads[3], 72)]);
    assert_eq!(g.read(at + 0x13_000, 72), [&rx_header(1)[..], &bcast].concat());
    assert!(g.called(RX));

    let st = hub.stats(g.id);
    assert_eq!((st.tx_frames, st.drops, st.errors), (4, 0, 0));
    assert_eq!(st.tx_bytes, 60 + 1514 + 1514 + 60);
}

#[test]
fn a_full_rx_ring_drops_and_counts() {
    const N: u64 = 10;
    let hub = hub("full");
    let mut g = connect(&hub);
    let _ = g.called(RX);
    let before = hub.stats(g.id);

    // No buffer posted: every frame is dropped and counted.
    for i in 0..N {
        hub.ingress(&frame(GUEST, OTHER, 60, i as u32));
    }
    let st = hub.stats(g.id);
    assert_eq!(st.drops, before.drops + N);
    assert_eq!(st.tx_frames, before.tx_frames);
    assert_eq!(g.used_idx(RX), 0, "a used entry for a dropped frame");
    assert!(!g.called(RX), "notified of nothing");

    // The port still transmits.
    let out = frame(OTHER, GUEST, 60, 100);
    g.send(&[(&out, 0)]);
    assert_eq!(hub.rec.take(1), vec![out]);

    // Too little room: a 1514-byte frame does not fit one 512-byte chain; it
    // is dropped and the chain stays posted for the next frame.
    let at = DATA_AT[RX];
    let small_chain = g.post_rx(1, 512, at)[0];
    hub.ingress(&frame(GUEST, OTHER, 1514, 200));
    assert_eq!(hub.stats(g.id).drops, before.drops + N + 1);
    assert_eq!(g.used_idx(RX), 0);
    let f = frame(GUEST, OTHER, 60, 300);
    hub.ingress(&f);
    assert_eq!(g.wait_used(RX, 1), vec![(small_chain, 72)]);
    assert_eq!(g.read(at, 72), [&rx_header(1)[..], &f].concat());
    assert!(g.called(RX));

    // Buffers posted: the next frames arrive.
    let heads = g.post_rx(2, 1536, at + 0x10_000);
    let f = frame(GUEST, OTHER, 1514, 400);
    hub.ingress(&f);
    assert_eq!(g.wait_used(RX, 1), vec![(heads[0], 1526)]);
    assert_eq!(g.read(at + 0x10_000, 1526), [&rx_header(1)[..], &f].concat());
    let st = hub.stats(g.id);
    assert_eq!((st.drops, st.tx_frames), (before.drops + N + 1, before.tx_frames + 2));
}

#[test]
fn a_disabled_rx_ring_takes_nothing() {
    const N: u64 = 5;
    let hub = hub("disabled");
    let mut g = connect(&hub);
    let _ = g.called(RX);
    let at = DATA_AT[RX];
    let heads = g.post_rx(2, 1536, at);
    g.fe.set_vring_enable(RX, false).unwrap();
    let before = hub.stats(g.id);

    for i in 0..N {
        hub.ingress(&frame(GUEST, OTHER, 60, i as u32));
    }
    let st = hub.stats(g.id);
    assert_eq!(st.drops, before.drops + N);
    assert_eq!(st.tx_frames, before.tx_frames);
    assert_eq!(g.used_idx(RX), 0, "a disabled ring was written");
    assert_eq!(g.read(at, 72), vec![0u8; 72], "a disabled ring's buffer was written");
    assert!(!g.called(RX));

    // Enabled again: the buffers posted before are used.
    g.fe.set_vring_enable(RX, true).unwrap();
    let f = frame(GUEST, OTHER, 60, 100);
    hub.ingress(&f);
    assert_eq!(g.wait_used(RX, 1), vec![(heads[0], 72)]);
    assert_eq!(g.read(at, 72), [&rx_header(1)[..], &f].concat());
    assert!(g.called(RX));
    assert_eq!(hub.stats(g.id).drops, before.drops + N);
}

/// How a connection breaks its rings.
#[derive(Debug, Clone, Copy)]
enum Malformed {
    /// A TX chain whose buffer lies past the end of guest memory.
    TxOutside,
    /// A TX chain whose second descriptor points back at the first.
    TxLoop,
    /// An RX chain whose buffer lies past the end of guest memory.
    RxOutside,
}

#[test]
fn a_malformed_ring_closes_the_port_and_the_hub_serves_the_next_frontend() {
    let hub = hub("malformed");
    for bad in [Malformed::TxOutside, Malformed::TxLoop, Malformed::RxOutside] {
        let mut g = connect(&hub);
        let id = g.id;
        match bad {
            Malformed::TxOutside => {
                g.offer(TX, &[(OUTSIDE, 100, false)]);
                g.kick(TX);
            }
            Malformed::TxLoop => {
                let (d0, d1) = (g.next_desc[TX], g.next_desc[TX] + 1);
                let next = VRING_DESC_F_NEXT as u16;
                let table = &g.vq[TX].desc;
                table
                    .store(d0, RawDescriptor::from(Descriptor::new(DATA_AT[TX], 40, next, d1)))
                    .unwrap();
                table
                    .store(d1, RawDescriptor::from(Descriptor::new(DATA_AT[TX] + 40, 40, next, d0)))
                    .unwrap();
                g.publish(TX, d0);
                g.kick(TX);
            }
            Malformed::RxOutside => {
                g.offer(RX, &[(OUTSIDE, 1536, true)]);
                g.kick(RX);
                hub.ingress(&frame(GUEST, OTHER, 60, 1));
            }
        }
        g.wait_closed(&format!("{bad:?}"));
        wait_for(&format!("the port's removal after {bad:?}"), || {
            hub.seg.stats(id).is_none()
        });
        let report = hub.seg.report();
        assert!(!report.contains("vhost-user:"), "{bad:?}: {report}");
        assert!(
            !report.contains("52:54:00:12:34:56"),
            "{bad:?}: the guest's MAC is remembered"
        );
        assert!(hub.seg.stats(hub.other).is_some(), "the other port went too");
        assert!(hub.rec.is_empty(), "{bad:?}: a frame came out of the malformed ring");
    }

    // A new frontend on the same listener: frames flow both ways.
    let mut g = connect(&hub);
    let out = frame(OTHER, GUEST, 1514, 7);
    g.send(&[(&out, HDR_LEN)]);
    assert_eq!(hub.rec.take(1), vec![out]);
    let head = g.post_rx(1, 1536, DATA_AT[RX])[0];
    let f = frame(GUEST, OTHER, 60, 8);
    hub.ingress(&f);
    assert_eq!(g.wait_used(RX, 1), vec![(head, 72)]);
    assert_eq!(g.read(DATA_AT[RX], 72), [&rx_header(1)[..], &f].concat());
}
