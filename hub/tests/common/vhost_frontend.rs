//! An in-process vhost-user frontend (QEMU's side, built on rust-vmm's `vhost`
//! Frontend) that drives the hub's vhost-user port through its real socket
//! protocol: it negotiates features, shares a memfd as guest memory
//! (SET_MEM_TABLE), lays out the RX and TX virtqueues in it with the parts of
//! virtio-queue's `mock` module (descriptor table, avail and used rings) and
//! plays the guest driver on them, with eventfds for the kicks and calls.
//!
//! [`Hub`] is a [`Segment`] with the port behind a [`vhost_user::Listener`]
//! and a second port that records what it is sent ([`Recorder`]), so frames
//! are followed from a guest's TX ring to another port and from another port
//! into the guest's RX ring; [`connect`] is one guest on it. A test that
//! builds its own segment (several vhost-user ports) binds its listeners
//! itself and connects each guest with [`Guest::negotiate`]. Every wait is
//! bounded by [`LIMIT`].

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
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
use vmlan_hub::{Egress, LocalHost, PortId, Segment, Switch};

use super::NoHost;

/// Queue index of the RX virtqueue (device to guest).
pub const RX: usize = 0;
/// Queue index of the TX virtqueue (guest to device).
pub const TX: usize = 1;
/// Size of both virtqueues (QEMU's virtio-net default).
pub const QSIZE: u16 = 256;
/// Guest memory: one region at guest address 0.
pub const MEM_SIZE: usize = 4 << 20;
/// Where each queue's descriptor table lies; its avail ring is 4 KiB
/// further (past the 4,096-byte table), its used ring 8 KiB further (past
/// the 518-byte avail ring).
pub const RING_AT: [u64; 2] = [0x0, 0x1_0000];
/// Where each queue's buffers lie (1 MiB each).
pub const DATA_AT: [u64; 2] = [0x10_0000, 0x20_0000];
/// An address past the end of guest memory.
pub const OUTSIDE: u64 = 0x1000_0000;
/// How long any wait may last.
pub const LIMIT: Duration = Duration::from_secs(5);

/// The guest's MAC (QEMU's default prefix).
pub const GUEST: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
/// The broadcast address.
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// An Ethernet frame of `len` bytes whose payload depends on `tag`.
pub fn frame(dst: [u8; 6], src: [u8; 6], len: usize, tag: u32) -> Vec<u8> {
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
pub fn rx_header(num_buffers: u16) -> [u8; HDR_LEN] {
    let mut h = [0u8; HDR_LEN];
    h[10..].copy_from_slice(&num_buffers.to_le_bytes());
    h
}

/// Polls `cond` every millisecond until it holds; fails the test (naming
/// `what`) after [`LIMIT`].
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A datagram egress that keeps what it is sent.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

impl DatagramTx for Recorder {
    fn send_batch(&mut self, frames: &[&[u8]]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend(frames.iter().map(|f| f.to_vec()));
        Ok(frames.len())
    }
}

impl Recorder {
    /// Waits until `n` frames were recorded and takes them.
    pub fn take(&self, n: usize) -> Vec<Vec<u8>> {
        wait_for(&format!("{n} frames at the recording port"), || {
            self.0.lock().unwrap().len() >= n
        });
        let got = std::mem::take(&mut *self.0.lock().unwrap());
        assert_eq!(got.len(), n, "more frames than expected at the recording port");
        got
    }

    pub fn is_empty(&self) -> bool {
        self.0.lock().unwrap().is_empty()
    }
}

/// A fresh directory for a test's sockets, removed when dropped.
pub struct SocketDir(PathBuf);

impl SocketDir {
    /// `vmlan-vu-NAME-PID` in the temporary directory, emptied.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vmlan-vu-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        SocketDir(dir)
    }

    /// The path of `file` in the directory.
    pub fn join(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Binds a vhost-user listener at `path` serving `seg`; its thread ends with
/// the test process.
pub fn listen<H: LocalHost>(seg: &Arc<Segment<H>>, path: &Path) {
    vhost_user::Listener::bind(path).unwrap().spawn(seg.clone()).unwrap();
}

/// The id of the vhost-user port of `seg` served on the socket `path`, if
/// there is one (from the report, where it is named `vhost-user:PATH`).
pub fn vhost_port<H: LocalHost>(seg: &Segment<H>, path: &Path) -> Option<PortId> {
    let name = format!(" vhost-user:{}:", path.display());
    let report = seg.report();
    let line = report.lines().find(|l| l.contains(&name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A segment with a recording port and a vhost-user listener.
pub struct Hub {
    pub seg: Arc<Segment<NoHost>>,
    pub rec: Recorder,
    pub other: PortId,
    pub path: PathBuf,
    _dir: SocketDir,
}

pub fn hub(name: &str) -> Hub {
    let dir = SocketDir::new(name);
    let path = dir.join("vu.sock");
    let seg = Arc::new(Segment::new(NoHost, Switch::default()));
    let rec = Recorder::default();
    let (other, _) = seg.add_port("recorder".into(), Egress::Datagram(Box::new(rec.clone())));
    listen(&seg, &path);
    Hub {
        seg,
        rec,
        other,
        path,
        _dir: dir,
    }
}

impl Hub {
    /// The id of the vhost-user port in the report, if there is one.
    pub fn vhost_port(&self) -> Option<PortId> {
        vhost_port(&self.seg, &self.path)
    }

    pub fn stats(&self, id: PortId) -> PortStats {
        self.seg.stats(id).expect("the vhost-user port is gone")
    }

    /// Sends `f` from the recording port's side (as a frame it received).
    pub fn ingress(&self, f: &[u8]) {
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
pub struct Vq {
    pub desc: DescriptorTable<'static, GuestMemoryMmap>,
    pub avail: AvailRing<'static, GuestMemoryMmap>,
    pub used: UsedRing<'static, GuestMemoryMmap>,
    /// Guest addresses of the descriptor table, avail ring and used ring.
    pub at: [GuestAddress; 3],
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
pub struct Guest {
    pub fe: Frontend,
    /// The same socket as `fe`'s, to see the hub close it.
    sock: UnixStream,
    pub mem: &'static GuestMemoryMmap,
    pub vq: [Vq; 2],
    kick: [EventFd; 2],
    call: [EventFd; 2],
    /// Next free descriptor of each queue (used round robin).
    pub next_desc: [u16; 2],
    /// Used entries of each queue the driver has consumed.
    seen_used: [u16; 2],
    /// The port id the hub gave this connection.
    pub id: PortId,
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
pub fn connect(hub: &Hub) -> Guest {
    let mut g = Guest::negotiate(&hub.seg, &hub.path);
    let hello = frame(BROADCAST, GUEST, 60, 0xfeed);
    g.send(&[(&hello, 0)]);
    assert_eq!(hub.rec.take(1), vec![hello]);
    g
}

impl Guest {
    /// Connects to the vhost-user listener at `path` as QEMU does and sets up
    /// both rings (fresh guest memory, RX and TX enabled); returns once the
    /// port is on `seg`. The port finds its rings at the first event its
    /// worker thread handles: a guest that sends a frame first (as
    /// [`connect`] does) is sure they are known before a frame comes for it.
    pub fn negotiate<H: LocalHost>(seg: &Segment<H>, path: &Path) -> Guest {
        let sock = UnixStream::connect(path).unwrap();
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

        wait_for("the vhost-user port", || vhost_port(seg, path).is_some());
        let id = vhost_port(seg, path).unwrap();
        Guest {
            fe,
            sock,
            mem,
            vq,
            kick,
            call,
            next_desc: [0; 2],
            seen_used: [0; 2],
            id,
        }
    }

    /// Writes `descs` ((address, length, device-writable)) as one chain in
    /// the next free descriptors of queue `q` and offers it; returns its head.
    pub fn offer(&mut self, q: usize, descs: &[(u64, u32, bool)]) -> u16 {
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

    /// Puts `head` in queue `q`'s avail ring (also how a chain the device
    /// returned is offered again, its descriptors unchanged).
    pub fn publish(&self, q: usize, head: u16) {
        let avail = &self.vq[q].avail;
        let idx = avail.idx().load();
        avail.ring().ref_at(usize::from(idx % QSIZE)).unwrap().store(head);
        // The entry before the index that publishes it (the driver's write barrier).
        fence(Ordering::SeqCst);
        avail.idx().store(idx.wrapping_add(1));
    }

    pub fn kick(&self, q: usize) {
        self.kick[q].write(1).unwrap();
    }

    /// Whether the hub signalled queue `q`'s call eventfd since the last look.
    pub fn called(&self, q: usize) -> bool {
        self.call[q].read().is_ok()
    }

    pub fn used_idx(&self, q: usize) -> u16 {
        self.vq[q].used.idx().load()
    }

    /// Waits for `n` more used entries on queue `q` and consumes them:
    /// (head, length written). Then asks to be called at the next one
    /// (EVENT_IDX's `used_event`), as a driver does after reading its ring.
    pub fn wait_used(&mut self, q: usize, n: u16) -> Vec<(u16, u32)> {
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

    /// Sleeps on queue `q`'s call eventfd until it has at least `n` used
    /// entries the driver has not consumed, as an interrupt-driven driver
    /// does: before each sleep it asks to be called at the next used entry
    /// (`used_event` set to the used index it saw) and looks once more, since
    /// the device may have written one meanwhile. Consume them with
    /// [`Guest::wait_used`].
    pub fn sleep_until_used(&mut self, q: usize, n: u16) {
        let start = Instant::now();
        loop {
            let idx = self.used_idx(q);
            if idx.wrapping_sub(self.seen_used[q]) >= n {
                return;
            }
            self.mem.write_obj(idx, self.vq[q].used_event()).unwrap();
            fence(Ordering::SeqCst);
            if self.used_idx(q) != idx {
                continue;
            }
            let left = LIMIT.saturating_sub(start.elapsed());
            assert!(!left.is_zero(), "timed out waiting for {n} used entries on queue {q}");
            // SAFETY: the eventfd is `self`'s and outlives this borrow.
            let fd = unsafe { BorrowedFd::borrow_raw(self.call[q].as_raw_fd()) };
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            match poll(&mut [PollFd::new(fd, PollFlags::POLLIN)], PollTimeout::from(ms)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => panic!("poll on the call eventfd of queue {q}: {e}"),
            }
            let _ = self.called(q);
        }
    }

    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    /// Transmits each frame (after a zero virtio-net header) as one chain cut
    /// after the given byte offset of header + frame, one kick for all; waits
    /// for the hub's call and for every chain to come back unwritten, in order.
    pub fn send(&mut self, frames: &[(&[u8], usize)]) {
        self.send_cut(&frames.iter().map(|&(f, cut)| (f, vec![cut])).collect::<Vec<_>>());
    }

    /// [`Guest::send`] with any number of cuts per frame.
    pub fn send_cut(&mut self, frames: &[(&[u8], Vec<usize>)]) {
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
    pub fn post_rx(&mut self, n: usize, size: u32, at: u64) -> Vec<u16> {
        let heads = (0..n)
            .map(|i| self.offer(RX, &[(at + i as u64 * 0x1000, size, true)]))
            .collect();
        self.kick(RX);
        heads
    }

    /// Waits until the hub closed the connection: the socket reads end of
    /// file, and requests fail.
    pub fn wait_closed(&mut self, why: &str) {
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
