//! The VXLAN port's forwarding path allocates nothing per frame (as
//! hub/tests/alloc_forwarding.rs proves for the other datagram ports): a
//! counting global allocator counts this thread's allocations while frames go
//! from a guest port through a VXLAN port (encapsulation, FDB lookup, a
//! broadcast replicated to two peers, a unicast to its learned VTEP, the
//! batched send), and while the peers' VXLAN packets are received, learned
//! and switched back (the port's task runs on this thread's runtime). The
//! count over 10,000 rounds must be no larger than over 1,000. Tokio's
//! `block_on`, which lets the port's task run, allocates once per call by
//! itself: the same rounds without the peer's packet measure that, and are
//! subtracted. Loopback only.

#[path = "common/alloc.rs"]
mod alloc;
mod common;

use alloc::allocations;

use common::NoHost;

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::SockaddrIn;
use vmlan_hub::port::vxlan::{self, wire};
use vmlan_hub::segment::DatagramTx;
use vmlan_hub::sys::mmsg::RecvBatch;
use vmlan_hub::{Egress, Segment, Switch};

/// A guest port that counts what it is sent, allocating nothing.
#[derive(Clone, Default)]
struct Sink(Arc<AtomicUsize>);
impl DatagramTx for Sink {
    fn send_batch(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        self.0.fetch_add(frames.len(), Ordering::Relaxed);
        Ok(frames.len())
    }
}

const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = vec![7u8; 64];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

#[test]
fn vxlan_forwarding_allocates_nothing_per_frame() {
    let rt = common::runtime();
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg: vxlan::VxlanConfig = format!("vni=42,local=127.0.0.1:{port},port={port},peer=127.0.0.2,peer=127.0.0.3")
        .parse()
        .unwrap();
    let p2 = UdpSocket::bind(("127.0.0.2", port)).unwrap();
    let p3 = UdpSocket::bind(("127.0.0.3", port)).unwrap();
    p2.set_nonblocking(true).unwrap();
    p3.set_nonblocking(true).unwrap();
    let seg = Arc::new(Segment::new(NoHost, Switch::default()));
    let sink = Sink::default();
    let (pg, _) = seg.add_port("guest".into(), Egress::Datagram(Box::new(sink.clone())));
    let vx = rt.block_on(async { vxlan::open(&cfg).unwrap() });
    let counters = vx.counters();
    rt.spawn(vx.run(seg.clone()));
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });

    let (a_to_b, bcast) = (frame(B, A), frame([0xff; 6], A));
    let mut from_b = wire::header(42).to_vec();
    from_b.extend_from_slice(&frame(A, B));
    let to_a = SockaddrIn::from(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port));
    let mut rx: RecvBatch<SockaddrIn> = RecvBatch::new();
    let mut tx = vmlan_hub::sys::mmsg::SendBatch::<SockaddrIn>::new();
    let mut at_peers = 0usize;

    // Each round: B's VTEP (127.0.0.2) sends B -> A, the port's task receives,
    // learns and switches it; guest A sends a unicast to B (to 127.0.0.2 only)
    // and a broadcast (to both peers). Then the peers' sockets are drained.
    let mut rounds = |n: usize, from_peer: bool, run_task: bool| {
        for _ in 0..n {
            if from_peer {
                tx.send(p2.as_raw_fd(), &[&from_b], Some(to_a)).unwrap();
            }
            if run_task {
                rt.block_on(async {
                    for _ in 0..4 {
                        tokio::task::yield_now().await;
                    }
                });
            }
            seg.ingress(pg, &a_to_b);
            seg.ingress(pg, &bcast);
            for s in [&p2, &p3] {
                while let Ok(k) = rx.recv(s.as_raw_fd()) {
                    at_peers += k;
                }
            }
        }
    };
    rounds(100, true, true); // learn the MACs, grow the buffers
                             // The send path alone (no task run), then the receive path: rounds with
                             // the peer's packet less the same rounds without it (block_on's own).
    let mut port_allocs = |n: usize| {
        let send = allocations(|| rounds(n, false, false));
        let with = allocations(|| rounds(n, true, true));
        let without = allocations(|| rounds(n, false, true));
        send + with.saturating_sub(without)
    };
    let small = port_allocs(1_000);
    let big = port_allocs(10_000);
    let s = counters.get();
    assert_eq!(at_peers, 33_100 * 3, "unicast to one peer, broadcast to two: {s}");
    assert_eq!(s.rx_packets, 11_100, "every packet of the peer was received: {s}");
    assert!(
        sink.0.load(Ordering::Relaxed) >= 11_100,
        "the peer's frames reached the guest: {s}"
    );
    assert!(
        big <= small,
        "allocations grow with the frames: {small} for 1,000 rounds, {big} for 10,000"
    );
    assert!(big < 10, "{big} allocations for 40,000 frames");
}
