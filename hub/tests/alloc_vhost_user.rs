//! The vhost-user path allocates nothing per frame (ring.rs and the README
//! promise it): two guests (two in-process frontends, tests/common/
//! vhost_frontend.rs) on two vhost-user ports of one segment; guest A
//! transmits frames one kick each (one segment batch each: the worst case)
//! and they land in guest B's RX ring, unicast to B's MAC and flooded
//! (broadcast). A frame crosses only the hub's threads: A's vring worker
//! drains A's TX ring (returning the chain, calling A), switches the frame
//! and writes it into B's RX ring (`Egress::Direct`), calling B; B's worker
//! handles B's RX kicks; the listener, request handler and relay threads
//! sit idle.
//!
//! A counting global allocator counts the allocations of every thread but
//! the test's own (exempted by a thread-local flag: the frontend, the guest
//! driver and its checks run there), so what is counted is the hub's
//! (libtest's main thread, counted too, only waits for the test). Hence a
//! test binary of its own with a single test: nothing else may run in the
//! process while it counts. The count over 10,000 frames must be no larger
//! than over 1,000, for unicast and for flooding: it does not grow with the
//! frames.

mod common;

use common::vhost_frontend::{frame, listen, rx_header, Guest, SocketDir, BROADCAST, DATA_AT, QSIZE, RX, TX};
use common::NoHost;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};
use vmlan_hub::port::vhost_user::ring::HDR_LEN;
use vmlan_hub::{Segment, Switch};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    /// Set on the test's thread: its allocations are not the hub's.
    static EXEMPT: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to the system allocator; only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !EXEMPT.with(Cell::get) {
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
        if !EXEMPT.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// How long the hub's threads are given to finish the work of the last
/// frame (microseconds of it: returning TX chains, re-arming the TX kick,
/// handling B's last RX kick) before and after a count.
const SETTLE: Duration = Duration::from_millis(50);

/// The allocations of every thread but this one while `f` runs, the hub
/// idle when the count starts and ends.
fn hub_allocations(f: impl FnOnce()) -> usize {
    std::thread::sleep(SETTLE);
    let before = ALLOCS.load(Ordering::SeqCst);
    f();
    std::thread::sleep(SETTLE);
    ALLOCS.load(Ordering::SeqCst) - before
}

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
/// Length of the frames A sends (the minimum without FCS).
const LEN: usize = 60;
/// Byte offset of the frame's tag (`frame` puts it after the EtherType).
const TAG_AT: usize = 14;
/// Size of each RX buffer B posts (a 1514-byte frame and its header fit).
const RX_BUF: u32 = 1536;
/// Spacing of B's RX buffers, as [`Guest::post_rx`] lays them out.
const RX_STRIDE: u64 = 0x1000;

/// Guest A transmitting to guest B, B's RX ring kept full.
struct Pair {
    a: Guest,
    b: Guest,
    /// Frames sent so far (each one's tag).
    sent: u32,
}

impl Pair {
    /// `n` frames from A to `dst`, one chain and one kick each: A writes the
    /// frame (header, then the frame tagged with its number) into its one TX
    /// buffer, offers it and kicks; B sleeps until the frame is in its RX
    /// ring, checks it, and posts the buffer again (and kicks, as a driver
    /// refilling its ring does); A takes its chain back.
    fn send(&mut self, dst: [u8; 6], n: usize) {
        let tx = DATA_AT[TX];
        let mut bytes = vec![0u8; HDR_LEN];
        bytes.extend_from_slice(&frame(dst, MAC_A, LEN, 0));
        let want_hdr = rx_header(1);
        for _ in 0..n {
            self.sent += 1;
            let tag = self.sent;
            bytes[HDR_LEN + TAG_AT..HDR_LEN + TAG_AT + 4].copy_from_slice(&tag.to_be_bytes());
            self.a.mem.write_slice(&bytes, GuestAddress(tx)).unwrap();
            let head = self.a.offer(TX, &[(tx, bytes.len() as u32, false)]);
            self.a.kick(TX);

            self.b.sleep_until_used(RX, 1);
            let [(rx_head, len)] = self.b.wait_used(RX, 1)[..] else {
                unreachable!("wait_used returns what it waited for")
            };
            assert_eq!(len as usize, HDR_LEN + LEN, "frame {tag}: used length");
            let got = self.b.read(DATA_AT[RX] + u64::from(rx_head) * RX_STRIDE, HDR_LEN + LEN);
            assert_eq!(got[..HDR_LEN], want_hdr, "frame {tag}: virtio-net header");
            assert_eq!(got[HDR_LEN..], bytes[HDR_LEN..], "frame {tag} arrived changed");
            self.b.publish(RX, rx_head);
            self.b.kick(RX);

            // A's chain was returned before the frame was switched.
            assert_eq!(self.a.wait_used(TX, 1), vec![(head, 0)], "frame {tag}: A's TX chain");
        }
    }
}

#[test]
fn the_vhost_user_path_allocates_nothing_per_frame() {
    let started = Instant::now();
    EXEMPT.with(|e| e.set(true));
    let dir = SocketDir::new("alloc");
    let seg = Arc::new(Segment::new(NoHost, Switch::default()));
    let (path_a, path_b) = (dir.join("a.sock"), dir.join("b.sock"));
    listen(&seg, &path_a);
    listen(&seg, &path_b);
    let a = Guest::negotiate(&seg, &path_a);
    let mut b = Guest::negotiate(&seg, &path_b);
    // The hub's threads allocate while a frontend connects: the counter sees them.
    assert!(
        ALLOCS.load(Ordering::SeqCst) > 0,
        "nothing counted: the hub's threads are not"
    );
    // B speaks first, so the switch learns its MAC (A has no RX buffer: the
    // broadcast is dropped there); then B fills its RX ring, each buffer at
    // DATA_AT[RX] + head * RX_STRIDE.
    b.send(&[(&frame(BROADCAST, MAC_B, LEN, 0), 0)]);
    let heads = b.post_rx(usize::from(QSIZE), RX_BUF, DATA_AT[RX]);
    assert!(heads.iter().enumerate().all(|(i, &h)| usize::from(h) == i));
    let mut pair = Pair { a, b, sent: 0 };

    // Warm up (A's MAC learned, every buffer and lazily made thread-local
    // state grown), then count.
    pair.send(MAC_B, 100);
    pair.send(BROADCAST, 100);
    let unicast = [1_000, 10_000].map(|n| hub_allocations(|| pair.send(MAC_B, n)));
    let flood = [1_000, 10_000].map(|n| hub_allocations(|| pair.send(BROADCAST, n)));
    println!(
        "hub allocations: unicast {} for 1,000 frames, {} for 10,000; flood {} for 1,000, {} for 10,000 ({:?})",
        unicast[0],
        unicast[1],
        flood[0],
        flood[1],
        started.elapsed()
    );

    let frames = u64::from(pair.sent);
    assert_eq!(frames, 22_200);
    let (sa, sb) = (seg.stats(pair.a.id).unwrap(), seg.stats(pair.b.id).unwrap());
    assert_eq!((sa.rx_frames, sa.errors), (frames, 0), "A's port");
    assert_eq!((sb.tx_frames, sb.drops, sb.errors), (frames, 0, 0), "B's port");
    // No slack: once warmed up the hub's threads allocate nothing at all
    // while frames flow (0 and 0 measured, unicast and flood), and whatever
    // one-time allocation there might be falls in the first, smaller count.
    // One allocation per frame, or per batch (one frame each here), makes the
    // larger count 9,000 more.
    assert!(
        unicast[1] <= unicast[0] && flood[1] <= flood[0],
        "hub allocations grow with the frames: unicast {} for 1,000 frames, {} for 10,000; flood {} for 1,000, {} \
         for 10,000",
        unicast[0],
        unicast[1],
        flood[0],
        flood[1]
    );
}
