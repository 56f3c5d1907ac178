//! The forwarding path allocates nothing per frame (segment.rs, sys/mmsg.rs and
//! the README promise it): a counting global allocator counts the allocations
//! of this thread while frames are switched one batch each (the worst case)
//! between a datagram port (sent with `sendmmsg` through `mmsg::SendBatch`,
//! received with `recvmmsg` through `mmsg::RecvBatch`) and a stream port (a
//! unix socket pair), unicast both ways and flooded. The count over 10,000
//! frames must be no larger than over 1,000: it does not grow with the frames.

mod common;

use common::NoHost;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use nix::sys::socket::UnixAddr;
use vmlan_hub::segment::{DatagramTx, StreamTx};
use vmlan_hub::sys::mmsg::{RecvBatch, SendBatch};
use vmlan_hub::{Egress, Segment, Switch};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to the system allocator; only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: a pointer this allocator (the system's) returned.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The allocations of this thread while `f` runs.
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.load(Ordering::Relaxed) - before
}

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
