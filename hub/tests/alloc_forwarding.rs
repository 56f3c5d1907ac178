//! The forwarding path allocates nothing per frame (segment.rs, sys/mmsg.rs and
//! the README promise it): a counting global allocator counts the allocations
//! of this thread while frames are switched one batch each (the worst case)
//! between a datagram port (sent with `sendmmsg` through `mmsg::SendBatch`,
//! received with `recvmmsg` through `mmsg::RecvBatch`) and a stream port (a
//! unix socket pair), unicast both ways and flooded. The count over 10,000
//! frames must be no larger than over 1,000: it does not grow with the frames.

#[path = "common/alloc.rs"]
mod alloc;
mod common;

use alloc::allocations;

use common::NoHost;

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::sync::Arc;

use nix::sys::socket::UnixAddr;
use vmlan_hub::segment::{DatagramTx, StreamTx};
use vmlan_hub::sys::mmsg::{RecvBatch, SendBatch};
use vmlan_hub::{Egress, Segment, Switch};

/// A datagram egress: `sendmmsg` on one end of a connected socket pair.
struct DgramTx {
    sock: UnixDatagram,
    batch: SendBatch<UnixAddr>,
}
impl DatagramTx for DgramTx {
    fn send_batch(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        self.batch.send(self.sock.as_raw_fd(), frames, None)
    }
}

/// A stream egress: non-blocking writes on one end of a socket pair.
struct StreamOut(UnixStream);
impl StreamTx for StreamOut {
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        (&self.0).write(buf)
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
fn forwarding_allocates_nothing_per_frame() {
    let seg = Arc::new(Segment::new(NoHost, Switch::default()));
    let (dtx, drx) = UnixDatagram::pair().unwrap();
    dtx.set_nonblocking(true).unwrap();
    let (stx, mut srx) = UnixStream::pair().unwrap();
    stx.set_nonblocking(true).unwrap();
    srx.set_nonblocking(true).unwrap();
    let tx = DgramTx {
        sock: dtx,
        batch: SendBatch::new(),
    };
    let (pd, _) = seg.add_port("dgram".into(), Egress::Datagram(Box::new(tx)));
    let (ps, _) = seg.add_port("stream".into(), Egress::Stream(Arc::new(StreamOut(stx))));
    let (a_to_b, b_to_a, bcast) = (frame(B, A), frame(A, B), frame([0xff; 6], A));
    let mut rx: RecvBatch<UnixAddr> = RecvBatch::new();
    let mut sbuf = vec![0u8; 1 << 16];
    let (mut dgrams, mut bytes) = (0usize, 0usize);

    // Each round: A (on the datagram port) to B, B (on the stream port) to A,
    // a broadcast from A; one batch each. Then both receivers are drained.
    let mut rounds = |n: usize| {
        for _ in 0..n {
            seg.ingress(pd, &a_to_b);
            seg.ingress(ps, &b_to_a);
            seg.ingress(pd, &bcast);
            while let Ok(k) = rx.recv(drx.as_raw_fd()) {
                dgrams += k;
            }
            while let Ok(k) = srx.read(&mut sbuf) {
                bytes += k;
            }
        }
    };
    rounds(100); // learn the MACs, grow the buffers
    let small = allocations(|| rounds(1_000));
    let big = allocations(|| rounds(10_000));
    assert_eq!(dgrams, 11_100, "every frame for A arrived");
    assert_eq!(bytes, 11_100 * 2 * 68, "every frame for B arrived, framed");
    assert!(
        big <= small,
        "allocations grow with the frames: {small} for 1,000 rounds, {big} for 10,000"
    );
    assert!(big < 10, "{big} allocations for 30,000 frames");
}
