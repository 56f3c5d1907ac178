//! The vhost-user port driven through its real socket protocol by an
//! in-process frontend (QEMU's side, built on rust-vmm's `vhost` Frontend):
//! the test negotiates features, shares a memfd as guest memory
//! (SET_MEM_TABLE), lays out the RX and TX virtqueues in it with the parts of
//! virtio-queue's `mock` module (descriptor table, avail and used rings) and
//! plays the guest driver on them, with eventfds for the kicks and calls.
//! The hub's side is a [`Segment`] with the port behind a
//! [`vhost_user::Listener`] and a second port that records what it is sent,
//! so frames are followed from a guest's TX ring to another port and from
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

use common::NoHost;

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{fence, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};
use vhost::vhost_user::message::{VhostUserHeaderFlag, VhostUserProtocolFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend, VhostUserVirtioFeatures};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::bindings::virtio_net::VIRTIO_NET_F_MRG_RXBUF;
use virtio_bindings::bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::{AvailRing, DescriptorTable, UsedRing};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use vmlan_hub::port::vhost_user::{self, ring::HDR_LEN};
use vmlan_hub::segment::{DatagramTx, PortStats};
use vmlan_hub::{Egress, PortId, Segment, Switch};

/// Queue index of the RX virtqueue (device to guest).
const RX: usize = 0;
/// Queue index of the TX virtqueue (guest to device).
const TX: usize = 1;
/// Size of both virtqueues (QEMU's virtio-net default).
const QSIZE: u16 = 256;
/// Guest memory: one region at guest address 0.
const MEM_SIZE: usize = 4 << 20;
/// Where each queue's descriptor table lies; its avail ring is 4 KiB
/// further (past the 4,096-byte table), its used ring 8 KiB further (past
/// the 518-byte avail ring).
const RING_AT: [u64; 2] = [0x0, 0x1_0000];
/// Where each queue's buffers lie (1 MiB each).
const DATA_AT: [u64; 2] = [0x10_0000, 0x20_0000];
/// An address past the end of guest memory.
const OUTSIDE: u64 = 0x1000_0000;
/// How long any wait may last.
const LIMIT: Duration = Duration::from_secs(5);

/// The guest's MAC (QEMU's default prefix).
const GUEST: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
/// A station behind the recording port.
const OTHER: [u8; 6] = [2, 0, 0, 0, 0, 0x0b];
/// A unicast address nobody has: flooded, so the recording port sees it.
const NOBODY: [u8; 6] = [2, 0, 0, 0, 0, 0x99];
const BROADCAST: [u8; 6] = [0xff; 6];

/// An Ethernet frame of `len` bytes whose payload depends on `tag`.
fn frame(dst: [u8; 6], src: [u8; 6], len: usize, tag: u32) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(tag.wrapping_mul(7919)) as u8)
        .collect();
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14..18].copy_from_slice(&tag.to_be_bytes());
    f
}

/// The virtio-net header the port writes on RX: all zero but `num_buffers`.
fn rx_header(num_buffers: u16) -> [u8; HDR_LEN] {
    let mut h = [0u8; HDR_LEN];
    h[10..].copy_from_slice(&num_buffers.to_le_bytes());
    h
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A datagram egress that keeps what it is sent.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

impl DatagramTx for Recorder {
    fn send_batch(&mut self, frames: &[&[u8]]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend(frames.iter().map(|f| f.to_vec()));
        Ok(frames.len())
    }
}

impl Recorder {
    /// Waits until `n` frames were recorded and takes them.
    fn take(&self, n: usize) -> Vec<Vec<u8>> {
        wait_for(&format!("{n} frames at the recording port"), || {
            self.0.lock().unwrap().len() >= n
        });
        let got = std::mem::take(&mut *self.0.lock().unwrap());
        assert_eq!(got.len(), n, "more frames than expected at the recording port");
        got
    }

    fn is_empty(&self) -> bool {
        self.0.lock().unwrap().is_empty()
    }
}

/// A segment with a recording port and a vhost-user listener.
struct Hub {
    seg: Arc<Segment<NoHost>>,
    rec: Recorder,
    other: PortId,
    path: PathBuf,
    dir: PathBuf,
}

fn hub(name: &str) -> Hub {
    let dir = std::env::temp_dir().join(format!("vmlan-vu-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("vu.sock");
    let seg = Arc::new(Segment::new(NoHost, Switch::default()));
    let rec = Recorder::default();
    let (other, _) = seg.add_port("recorder".into(), Egress::Datagram(Box::new(rec.clone())));
    // The listener's thread ends with the test process.
    vhost_user::Listener::bind(&path).unwrap().spawn(seg.clone()).unwrap();
    Hub {
        seg,
        rec,
        other,
        path,
        dir,
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Hub {
    /// The id of the vhost-user port in the report, if there is one.
    fn vhost_port(&self) -> Option<PortId> {
        let report = self.seg.report();
        let line = report.lines().find(|l| l.contains(" vhost-user:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    fn stats(&self, id: PortId) -> PortStats {
        self.seg.stats(id).expect("the vhost-user port is gone")
    }

    /// Sends `f` from the recording port's side (as a frame it received).
    fn ingress(&self, f: &[u8]) {
        self.seg.ingress(self.other, f);
    }
}

/// One virtqueue as its driver sees it, in guest memory.
///
/// Not virtio-queue's `MockSplitQueue::create`: in 0.18 its layout puts the
/// used ring `len` bytes after the avail ring's entries rather than `2 * len`
/// (`SplitQueueRing::end` counts elements as bytes; rust-vmm/vm-virtio pull
/// request 400), so with 256 entries the used ring overlaps the avail ring's
/// second half and its `used_event`: used entry 31 overwrote `used_event` with
/// 0 and the hub then rightly stopped calling. Its parts are used here at
/// addresses laid out apart.
struct Vq {
    desc: DescriptorTable<'static, GuestMemoryMmap>,
    avail: AvailRing<'static, GuestMemoryMmap>,
    used: UsedRing<'static, GuestMemoryMmap>,
    /// Guest addresses of the descriptor table, avail ring and used ring.
    at: [GuestAddress; 3],
}

impl Vq {
    /// A queue of [`QSIZE`] entries at `base` (its rings zeroed).
    fn new(mem: &'static GuestMemoryMmap, base: u64) -> Self {
        let at = [base, base + 0x1000, base + 0x2000].map(GuestAddress);
        Vq {
            desc: DescriptorTable::new(mem, at[0], QSIZE),
            avail: AvailRing::new(mem, at[1], QSIZE),
            used: UsedRing::new(mem, at[2], QSIZE),
            at,
        }
    }

    /// Where the driver writes `used_event` (EVENT_IDX): after the avail ring's entries.
    fn used_event(&self) -> GuestAddress {
        GuestAddress(self.at[1].0 + 4 + 2 * u64::from(QSIZE))
    }
}

/// The frontend and the guest driver: guest memory, both virtqueues and
/// their eventfds, and the driver's view of the rings.
struct Guest {
    fe: Frontend,
    /// The same socket as `fe`'s, to see the hub close it.
    sock: UnixStream,
    mem: &'static GuestMemoryMmap,
    vq: [Vq; 2],
    kick: [EventFd; 2],
    call: [EventFd; 2],
    /// Next free descriptor of each queue (used round robin).
    next_desc: [u16; 2],
    /// Used entries of each queue the driver has consumed.
    seen_used: [u16; 2],
    /// The port id the hub gave this connection.
    id: PortId,
}

/// Guest memory backed by a memfd, which the frontend hands to the hub.
/// Leaked: the queues' mock views borrow it for the rest of the test.
fn guest_memory() -> &'static GuestMemoryMmap {
    // SAFETY: a plain syscall with a valid C string; the descriptor it returns is ours.
    let fd = unsafe { libc::memfd_create(c"vmlan-guest".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just created and is owned by nothing else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(MEM_SIZE as u64).unwrap();
    let mem =
        GuestMemoryMmap::<()>::from_ranges_with_files(&[(GuestAddress(0), MEM_SIZE, Some(FileOffset::new(file, 0)))])
            .unwrap();
    Box::leak(Box::new(mem))
}

fn offered_features() -> u64 {
    (1 << VIRTIO_F_VERSION_1)
        | (1 << VIRTIO_NET_F_MRG_RXBUF)
        | (1 << VIRTIO_RING_F_EVENT_IDX)
        | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
}

/// Connects to the hub's listener as QEMU does, sets up both rings, then
/// sends one broadcast from [`GUEST`] (so the switch learns the guest's MAC
/// and the port knows its rings) and waits for it at the recording port.
fn connect(hub: &Hub) -> Guest {
    let sock = UnixStream::connect(&hub.path).unwrap();
    // A hub that stops answering fails the requests instead of hanging the test.
    sock.set_read_timeout(Some(LIMIT)).unwrap();
    let mut fe = Frontend::from_stream(sock.try_clone().unwrap(), 2);

    let features = fe.get_features().unwrap();
    assert_eq!(features, offered_features(), "features offered: {features:#x}");
    let proto = fe.get_protocol_features().unwrap();
    assert_eq!(
        proto,
        VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
    );
    fe.set_protocol_features(proto).unwrap();
    // Every request is acknowledged: each is done when its call returns.
    fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
    fe.set_owner().unwrap();
    assert_eq!(fe.get_queue_num().unwrap(), 2);
    fe.set_features(features).unwrap();

    let mem = guest_memory();
    let region = mem.find_region(GuestAddress(0)).unwrap();
    fe.set_mem_table(&[VhostUserMemoryRegionInfo::from_guest_region(region).unwrap()])
        .unwrap();
    // The rings are given as addresses in the frontend's process (QEMU's too).
    let host = |a: GuestAddress| mem.get_host_address(a).unwrap() as u64;
    let vq = [Vq::new(mem, RING_AT[RX]), Vq::new(mem, RING_AT[TX])];
    let kick = [EventFd::new(EFD_NONBLOCK).unwrap(), EventFd::new(EFD_NONBLOCK).unwrap()];
    let call = [EventFd::new(EFD_NONBLOCK).unwrap(), EventFd::new(EFD_NONBLOCK).unwrap()];
    for q in [RX, TX] {
        fe.set_vring_num(q, QSIZE).unwrap();
        let config = VringConfigData {
            queue_max_size: QSIZE,
            queue_size: QSIZE,
            flags: 0,
            desc_table_addr: host(vq[q].at[0]),
            avail_ring_addr: host(vq[q].at[1]),
            used_ring_addr: host(vq[q].at[2]),
            log_addr: None,
        };
        fe.set_vring_addr(q, &config).unwrap();
        fe.set_vring_base(q, 0).unwrap();
        fe.set_vring_call(q, &call[q]).unwrap();
        fe.set_vring_kick(q, &kick[q]).unwrap();
        fe.set_vring_enable(q, true).unwrap();
    }

    wait_for("the vhost-user port", || hub.vhost_port().is_some());
    let id = hub.vhost_port().unwrap();
    let mut g = Guest {
        fe,
        sock,
        mem,
        vq,
        kick,
        call,
        next_desc: [0; 2],
        seen_used: [0; 2],
        id,
    };
    let hello = frame(BROADCAST, GUEST, 60, 0xfeed);
    g.send(&[(&hello, 0)]);
    assert_eq!(hub.rec.take(1), vec![hello]);
    g
}

impl Guest {
    /// Writes `descs` ((address, length, device-writable)) as one chain in
    /// the next free descriptors of queue `q` and offers it; returns its head.
    fn offer(&mut self, q: usize, descs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc[q];
        for (i, &(addr, len, writable)) in descs.iter().enumerate() {
            let idx = (head + i as u16) % QSIZE;
            let last = i + 1 == descs.len();
            let mut flags = if writable { VRING_DESC_F_WRITE } else { 0 } as u16;
            if !last {
                flags |= VRING_DESC_F_NEXT as u16;
            }
            let next = if last { 0 } else { (idx + 1) % QSIZE };
            self.vq[q]
                .desc
                .store(idx, RawDescriptor::from(Descriptor::new(addr, len, flags, next)))
                .unwrap();
        }
        self.next_desc[q] = (head + descs.len() as u16) % QSIZE;
        self.publish(q, head);
        head
    }

    /// Puts `head` in queue `q`'s avail ring.
    fn publish(&self, q: usize, head: u16) {
        let avail = &self.vq[q].avail;
        let idx = avail.idx().load();
        avail.ring().ref_at(usize::from(idx % QSIZE)).unwrap().store(head);
        // The entry before the index that publishes it (the driver's write barrier).
        fence(Ordering::SeqCst);
        avail.idx().store(idx.wrapping_add(1));
    }

    fn kick(&self, q: usize) {
        self.kick[q].write(1).unwrap();
    }

    /// Whether the hub signalled queue `q`'s call eventfd since the last look.
    fn called(&self, q: usize) -> bool {
        self.call[q].read().is_ok()
    }

    fn used_idx(&self, q: usize) -> u16 {
        self.vq[q].used.idx().load()
    }

    /// Waits for `n` more used entries on queue `q` and consumes them:
    /// (head, length written). Then asks to be called at the next one
    /// (EVENT_IDX's `used_event`), as a driver does after reading its ring.
    fn wait_used(&mut self, q: usize, n: u16) -> Vec<(u16, u32)> {
        wait_for(&format!("{n} used entries on queue {q}"), || {
            self.used_idx(q).wrapping_sub(self.seen_used[q]) >= n
        });
        fence(Ordering::SeqCst);
        assert_eq!(
            self.used_idx(q).wrapping_sub(self.seen_used[q]),
            n,
            "more used entries than expected on queue {q}"
        );
        let used: Vec<(u16, u32)> = (0..n)
            .map(|i| {
                let at = usize::from(self.seen_used[q].wrapping_add(i) % QSIZE);
                let e = self.vq[q].used.ring().ref_at(at).unwrap().load();
                (e.id() as u16, e.len())
            })
            .collect();
        self.seen_used[q] = self.seen_used[q].wrapping_add(n);
        self.mem.write_obj(self.seen_used[q], self.vq[q].used_event()).unwrap();
        used
    }

    fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    /// Transmits each frame (after a zero virtio-net header) as one chain cut
    /// after the given byte offset of header + frame, one kick for all; waits
    /// for the hub's call and for every chain to come back unwritten, in order.
    fn send(&mut self, frames: &[(&[u8], usize)]) {
        self.send_cut(&frames.iter().map(|&(f, cut)| (f, vec![cut])).collect::<Vec<_>>());
    }

    /// [`Guest::send`] with any number of cuts per frame.
    fn send_cut(&mut self, frames: &[(&[u8], Vec<usize>)]) {
        let mut heads = Vec::new();
        for (k, (f, cuts)) in frames.iter().enumerate() {
            let at = DATA_AT[TX] + k as u64 * 0x800;
            let mut bytes = vec![0u8; HDR_LEN];
            bytes.extend_from_slice(f);
            assert!(bytes.len() <= 0x800 && k < 0x200);
            self.mem.write_slice(&bytes, GuestAddress(at)).unwrap();
            let mut bounds = vec![0];
            bounds.extend(cuts.iter().copied().filter(|&c| c > 0 && c < bytes.len()));
            bounds.push(bytes.len());
            let descs: Vec<_> = bounds
                .windows(2)
                .map(|w| (at + w[0] as u64, (w[1] - w[0]) as u32, false))
                .collect();
            heads.push(self.offer(TX, &descs));
        }
        self.kick(TX);
        // Wait for the call before reading the used ring, as an interrupt-driven
        // driver does: a driver that reads it first and moves `used_event` on
        // may rightly not be called (EVENT_IDX).
        wait_for("a call on the TX queue", || self.called(TX));
        let used = self.wait_used(TX, heads.len() as u16);
        let want: Vec<(u16, u32)> = heads.iter().map(|&h| (h, 0)).collect();
        assert_eq!(used, want, "the TX chains returned");
    }

    /// Offers `n` RX chains of one `size`-byte buffer each, from `at`; returns their heads.
    fn post_rx(&mut self, n: usize, size: u32, at: u64) -> Vec<u16> {
        let heads = (0..n)
            .map(|i| self.offer(RX, &[(at + i as u64 * 0x1000, size, true)]))
            .collect();
        self.kick(RX);
        heads
    }

    /// Waits until the hub closed the connection: the socket reads end of
    /// file, and requests fail.
    fn wait_closed(&mut self, why: &str) {
        let start = Instant::now();
        let mut b = [0u8; 1];
        // Blocks for at most the socket's read timeout.
        match recv(self.sock.as_raw_fd(), &mut b, MsgFlags::MSG_PEEK) {
            Ok(0) | Err(Errno::ECONNRESET) => {}
            Ok(_) => panic!("{why}: the hub sent a message instead of closing"),
            Err(e) => panic!("{why}: the hub did not close the connection within {LIMIT:?}: {e}"),
        }
        assert!(start.elapsed() < LIMIT, "{why}: closed too late");
        assert!(
            self.fe.get_features().is_err(),
            "{why}: a request succeeded on a closed connection"
        );
    }
}

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
