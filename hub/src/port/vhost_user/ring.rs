//! The data path of a vhost-user port: frames out of a guest's TX virtqueue and
//! into its RX virtqueue, as plain functions over a [`virtio_queue::Queue`] and
//! the guest's memory (no sockets, no threads; unit-tested against rings built
//! in memory with virtio-queue's `mock` module).
//!
//! Source: VIRTIO 1.2 (OASIS), section 2.7 "Split Virtqueues" and section 5.1.6
//! "Device Operation" of the network device:
//! - every buffer starts with the 12-byte `struct virtio_net_hdr_v1` (VERSION_1
//!   makes `num_buffers` always present). The header may sit in a descriptor of
//!   its own or share one with the frame: chains of any layout are walked
//!   descriptor by descriptor;
//! - TX (5.1.6.2): the port offers no offloads (a userspace switch has no
//!   checksum or segmentation engine to hand them to), so the header's flags and
//!   GSO fields are never set by a conforming driver and are skipped; a frame
//!   over [`MAX_FRAME_LEN`] bytes is dropped and counted;
//! - RX (5.1.6.3, 5.1.6.4): the header is all zero but `num_buffers`
//!   (little endian): 1, or with VIRTIO_NET_F_MRG_RXBUF the number of chains
//!   the frame spans. A frame that does not fit the posted buffers is dropped,
//!   and the chains it was written into are given back to the ring (what was
//!   written there does not count: no used entry names it);
//! - a malformed ring (a descriptor outside guest memory, a chain that loops
//!   or is longer than the queue, an indirect descriptor (INDIRECT_DESC is not
//!   offered), an avail index more than the queue size ahead) is a
//!   [`RingError`]: the caller closes the port.
//!
//! Speed: virtio-queue's [`Queue`] keeps the ring's state (its addresses, size,
//! the device's next avail and used indices, EVENT_IDX), but the per-frame
//! accesses go through a `View` of the three ring areas translated to host
//! memory once per batch, rather than through a guest-address translation per
//! access. A batch's frames go through one pass over the avail ring (its
//! index, a cache line the guest keeps writing, read once per batch); their
//! used entries are written after it and published with one store of the
//! used index (2.7.8), then the need for a notification is decided once
//! (2.7.10: `used_event` with EVENT_IDX, else the avail ring's NO_INTERRUPT
//! flag). Nothing here allocates: TX frames are copied into a [`TxBatch`]
//! whose buffers are sized once, RX used entries go into a list the port keeps.

use std::num::Wrapping;
use std::sync::atomic::{fence, Ordering};

use virtio_bindings::bindings::virtio_ring::VRING_AVAIL_F_NO_INTERRUPT;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileSlice};

use crate::frame::MAX_FRAME_LEN;

/// Length of `struct virtio_net_hdr_v1` in bytes (VIRTIO 1.2 section 5.1.6).
pub const HDR_LEN: usize = 12;
/// Byte offset of `num_buffers` (u16, little endian) in the header.
const NUM_BUFFERS_AT: usize = 10;
/// Most RX chains one frame may span with MRG_RXBUF (a 69,632-byte frame in
/// 1,536-byte buffers needs 46).
pub const MAX_RX_CHAINS: usize = 64;

/// A malformed virtqueue: the port that owns it is closed.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// The queue's indices are inconsistent (an avail index more than the
    /// queue size ahead of the device's, virtio-queue's
    /// `InvalidAvailRingIndex`).
    #[error("virtqueue: {0}")]
    Queue(virtio_queue::Error),
    /// A ring or a descriptor's buffer is not inside the guest memory the
    /// frontend shared.
    #[error("a ring or buffer lies outside guest memory: {0}")]
    Memory(vm_memory::GuestMemoryError),
    /// A descriptor chain loops, points outside the descriptor table, is
    /// longer than the queue or uses an indirect table.
    #[error("a descriptor chain loops, points outside the table or is indirect")]
    Chain,
}

/// Frames copied out of a TX virtqueue, kept by the port between drains (its
/// buffers are sized once and reused).
pub struct TxBatch {
    /// The frames' bytes, back to back (virtio-net headers removed).
    pub buf: Vec<u8>,
    /// `(offset, length)` in bytes of each frame in `buf`.
    pub frames: Vec<(u32, u32)>,
    /// Frames dropped because they were longer than [`MAX_FRAME_LEN`].
    pub oversize: u64,
    /// Head indices of the chains taken, returned to the guest after the copy.
    heads: Vec<u16>,
}

/// At most this many frames are taken per drain (one segment batch).
pub const TX_BATCH_FRAMES: usize = 64;
/// A drain stops taking chains once its buffer holds this many bytes.
const TX_BATCH_BYTES: usize = 256 * 1024;

impl Default for TxBatch {
    fn default() -> Self {
        TxBatch {
            buf: Vec::with_capacity(TX_BATCH_BYTES + MAX_FRAME_LEN + 1),
            frames: Vec::with_capacity(TX_BATCH_FRAMES),
            oversize: 0,
            heads: Vec::with_capacity(TX_BATCH_FRAMES),
        }
    }
}

impl TxBatch {
    /// Frame `i` of the batch.
    pub fn frame(&self, i: usize) -> &[u8] {
        let (at, len) = self.frames[i];
        &self.buf[at as usize..(at + len) as usize]
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.frames.clear();
        self.heads.clear();
    }
}

/// What became of one frame offered to the RX ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The frame is in the ring.
    Sent,
    /// No posted buffer, or too few: the frame is dropped.
    NoRoom,
    /// The frame does not fit the buffers a guest without MRG_RXBUF posts, or
    /// needs more than [`MAX_RX_CHAINS`] chains: dropped.
    TooBig,
}

/// What a call did with the ring, for the caller's counters and its
/// notification of the guest.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    /// Chains taken (TX: frames plus dropped ones) or frames delivered (RX).
    pub count: usize,
    /// Frame bytes delivered (RX).
    pub bytes: u64,
    /// The guest asked to be notified of the used buffers just published
    /// (the caller writes the call eventfd).
    pub notify: bool,
}

/// The three areas of a split ring (VIRTIO 1.2 section 2.7), each translated
/// to host memory once: the descriptor table (16 bytes per entry), the avail
/// ring (flags, idx, ring, used_event) and the used ring (flags, idx, ring of
/// 8-byte elements, avail_event). All fields little endian.
struct View<'m> {
    desc: VolatileSlice<'m, ()>,
    avail: VolatileSlice<'m, ()>,
    used: VolatileSlice<'m, ()>,
    size: u16,
    event_idx: bool,
}

fn slice_err(e: vm_memory::VolatileMemoryError) -> RingError {
    RingError::Memory(vm_memory::GuestMemoryError::from(e))
}

impl<'m> View<'m> {
    /// `None` when the queue is not ready (not set up yet, or reset): not
    /// malformed, nothing to do.
    fn new(q: &Queue, mem: &'m GuestMemoryMmap) -> Result<Option<Self>, RingError> {
        if !q.ready() || q.avail_ring() == 0 || q.size() == 0 {
            return Ok(None);
        }
        let n = usize::from(q.size());
        let get = |addr: u64, len: usize| mem.get_slice(GuestAddress(addr), len).map_err(RingError::Memory);
        Ok(Some(View {
            desc: get(q.desc_table(), 16 * n)?,
            avail: get(q.avail_ring(), 6 + 2 * n)?,
            used: get(q.used_ring(), 6 + 8 * n)?,
            size: q.size(),
            event_idx: q.event_idx_enabled(),
        }))
    }

    fn u16_at(s: &VolatileSlice<'_, ()>, at: usize, order: Ordering) -> u16 {
        s.load::<u16>(at, order).map(u16::from_le).unwrap_or(0)
    }

    /// The driver's avail index, read with acquire ordering (2.7.13).
    fn avail_idx(&self) -> u16 {
        Self::u16_at(&self.avail, 2, Ordering::Acquire)
    }

    /// The head index in avail ring slot `i`.
    fn avail_entry(&self, i: Wrapping<u16>) -> u16 {
        Self::u16_at(&self.avail, 4 + 2 * usize::from(i.0 % self.size), Ordering::Relaxed)
    }

    /// Descriptor `i`.
    fn desc(&self, i: u16) -> Result<Descriptor, RingError> {
        if i >= self.size {
            return Err(RingError::Chain);
        }
        let raw: RawDescriptor = self.desc.read_obj(16 * usize::from(i)).map_err(slice_err)?;
        Ok(Descriptor::from(raw))
    }

    /// Calls `f(addr, len, writable)` for each descriptor of the chain at
    /// `head`, in order.
    fn walk(
        &self,
        head: u16,
        mut f: impl FnMut(GuestAddress, u32, bool) -> Result<(), RingError>,
    ) -> Result<(), RingError> {
        let mut i = head;
        // A chain has at most `size` descriptors; one more hop is a loop.
        for _ in 0..self.size {
            let d = self.desc(i)?;
            if d.refers_to_indirect_table() {
                return Err(RingError::Chain);
            }
            f(d.addr(), d.len(), d.is_write_only())?;
            if !d.has_next() {
                return Ok(());
            }
            i = d.next();
        }
        Err(RingError::Chain)
    }

    /// Writes `entries` (head, length written) to the used ring from the
    /// queue's next used index on, publishes them with one release store of
    /// the used index, and says whether the guest wants a notification.
    fn publish(&self, q: &mut Queue, entries: impl Iterator<Item = (u16, u32)>) -> Result<bool, RingError> {
        let old = Wrapping(q.next_used());
        let mut idx = old;
        for (head, len) in entries {
            let at = 4 + 8 * usize::from(idx.0 % self.size);
            // struct virtq_used_elem: le32 id, le32 len.
            let elem = (u64::from(len) << 32 | u64::from(head)).to_le();
            self.used.write_obj(elem, at).map_err(slice_err)?;
            idx += Wrapping(1);
        }
        if idx == old {
            return Ok(false);
        }
        self.used
            .store(u16::to_le(idx.0), 2, Ordering::Release)
            .map_err(slice_err)?;
        q.set_next_used(idx.0);
        // The used index must be visible before the driver's wishes are read (2.7.10).
        fence(Ordering::SeqCst);
        Ok(if self.event_idx {
            let event = Wrapping(Self::u16_at(
                &self.avail,
                4 + 2 * usize::from(self.size),
                Ordering::Acquire,
            ));
            idx - event - Wrapping(1) < idx - old
        } else {
            Self::u16_at(&self.avail, 0, Ordering::Acquire) & VRING_AVAIL_F_NO_INTERRUPT as u16 == 0
        })
    }

    /// The avail index, checked against the device's next: at most a queue's
    /// worth ahead (virtio-queue's check).
    fn available(&self, next: Wrapping<u16>) -> Result<Wrapping<u16>, RingError> {
        let avail = Wrapping(self.avail_idx());
        if (avail - next).0 > self.size {
            return Err(RingError::Queue(virtio_queue::Error::InvalidAvailRingIndex));
        }
        Ok(avail)
    }
}

/// Copies guest memory at `addr` into `buf`, through one translated slice
/// when the range lies in one region (vm-memory's `read_slice` otherwise).
fn read_guest(mem: &GuestMemoryMmap, addr: GuestAddress, buf: &mut [u8]) -> Result<(), RingError> {
    match mem.get_slice(addr, buf.len()) {
        Ok(s) => {
            s.copy_to(buf);
            Ok(())
        }
        Err(_) => mem.read_slice(buf, addr).map_err(RingError::Memory),
    }
}

/// Copies `src` into guest memory at `addr` (as [`read_guest`]).
fn write_guest(mem: &GuestMemoryMmap, addr: GuestAddress, src: &[u8]) -> Result<(), RingError> {
    match mem.get_slice(addr, src.len()) {
        Ok(s) => {
            s.copy_from(src);
            Ok(())
        }
        Err(_) => mem.write_slice(src, addr).map_err(RingError::Memory),
    }
}

/// `addr + n`, or an error when a guest's descriptor wraps the address space.
fn offset(addr: GuestAddress, n: usize) -> Result<GuestAddress, RingError> {
    addr.0.checked_add(n as u64).map(GuestAddress).ok_or(RingError::Memory(
        vm_memory::GuestMemoryError::InvalidGuestAddress(addr),
    ))
}

/// Copies up to [`TX_BATCH_FRAMES`] frames out of the TX queue `q` into
/// `batch` (cleared first), then returns their chains to the guest (used
/// length 0: the device wrote nothing). [`Done::count`] is the chains taken
/// (frames plus dropped ones); 0 when the ring is empty or not ready.
///
/// # Errors
/// [`RingError`] on a malformed ring or chain; the chains taken before it are
/// returned to the guest and their frames stay in `batch`.
pub fn drain_tx(q: &mut Queue, mem: &GuestMemoryMmap, batch: &mut TxBatch) -> Result<Done, RingError> {
    batch.clear();
    let Some(v) = View::new(q, mem)? else {
        return Ok(Done::default());
    };
    let mut next = Wrapping(q.next_avail());
    let avail = v.available(next)?;
    let mut result = Ok(());
    while next != avail && batch.heads.len() < TX_BATCH_FRAMES && batch.buf.len() < TX_BATCH_BYTES {
        let head = v.avail_entry(next);
        next += Wrapping(1);
        if head >= v.size {
            result = Err(RingError::Chain);
            break;
        }
        batch.heads.push(head);
        if let Err(e) = read_frame(&v, mem, head, batch) {
            result = Err(e);
            break;
        }
    }
    q.set_next_avail(next.0);
    let notify = v.publish(q, batch.heads.iter().map(|&h| (h, 0)))?;
    result.map(|()| Done {
        count: batch.heads.len(),
        bytes: 0,
        notify,
    })
}

/// Appends the frame of the TX chain at `head` (its virtio-net header
/// skipped) to `batch`, or counts it in `oversize`.
fn read_frame(v: &View<'_>, mem: &GuestMemoryMmap, head: u16, batch: &mut TxBatch) -> Result<(), RingError> {
    let start = batch.buf.len();
    let mut skip = HDR_LEN; // header bytes still to skip
    let mut len = 0usize; // frame bytes seen
    let result = v.walk(head, |addr, n, writable| {
        if writable {
            return Ok(()); // TX chains are read-only; a writable part is ignored
        }
        let mut n = n as usize;
        let h = skip.min(n);
        skip -= h;
        n -= h;
        if n == 0 {
            return Ok(());
        }
        let addr = offset(addr, h)?;
        // Copy at most one byte past the largest frame: enough to know it is too long.
        let copy = n.min((MAX_FRAME_LEN + 1).saturating_sub(len));
        if copy > 0 {
            let at = start + len;
            batch.buf.resize(at + copy, 0);
            read_guest(mem, addr, &mut batch.buf[at..at + copy])?;
        }
        len += n;
        Ok(())
    });
    if result.is_err() || len > MAX_FRAME_LEN {
        batch.buf.truncate(start);
        batch.oversize += u64::from(result.is_ok());
        return result;
    }
    batch.frames.push((start as u32, len as u32));
    Ok(())
}

/// Writes bytes `from..` of `hdr ++ frame` into the writable descriptors of
/// the chain at `head`, as many as fit; returns how many were written, and
/// notes in `nb_at` where the header's `num_buffers` bytes went (they may fall
/// in two descriptors).
fn fill(
    v: &View<'_>,
    mem: &GuestMemoryMmap,
    head: u16,
    hdr: &[u8; HDR_LEN],
    frame: &[u8],
    from: usize,
    nb_at: &mut [Option<GuestAddress>; 2],
) -> Result<usize, RingError> {
    let total = HDR_LEN + frame.len();
    let mut pos = from;
    v.walk(head, |addr, n, writable| {
        if !writable {
            return Ok(());
        }
        let mut left = n as usize;
        let mut addr = addr;
        while left > 0 && pos < total {
            let src = if pos < HDR_LEN {
                &hdr[pos..]
            } else {
                &frame[pos - HDR_LEN..]
            };
            let k = src.len().min(left);
            for (i, slot) in nb_at.iter_mut().enumerate() {
                let b = NUM_BUFFERS_AT + i;
                if (pos..pos + k).contains(&b) {
                    *slot = Some(offset(addr, b - pos)?);
                }
            }
            write_guest(mem, addr, &src[..k])?;
            addr = offset(addr, k)?;
            left -= k;
            pos += k;
        }
        Ok(())
    })?;
    Ok(pos - from)
}

/// Puts `frames` (whole Ethernet frames, 14..=69632 bytes each) into the RX
/// queue `q`, each behind a virtio-net header, in one pass over the avail ring,
/// then publishes the used entries; `mrg` says whether VIRTIO_NET_F_MRG_RXBUF
/// was negotiated (a frame may then span several chains). `used` is the
/// caller's scratch list (kept between calls, so this allocates nothing once
/// it has grown to the queue size). [`Done`] gives the frames and bytes
/// delivered; the others found no room ([`Pushed`]) and were dropped, their
/// chains left to the next frames.
///
/// # Errors
/// [`RingError`] on a malformed ring or chain (the caller closes the port).
pub fn push_rx(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    frames: &[&[u8]],
    mrg: bool,
    used: &mut Vec<(u16, u32)>,
) -> Result<Done, RingError> {
    push_each(q, mem, frames, mrg, used, |_| {})
}

/// [`push_rx`], telling `each` what became of every frame.
fn push_each(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    frames: &[&[u8]],
    mrg: bool,
    used: &mut Vec<(u16, u32)>,
    mut each: impl FnMut(Pushed),
) -> Result<Done, RingError> {
    used.clear();
    let Some(v) = View::new(q, mem)? else {
        frames.iter().for_each(|_| each(Pushed::NoRoom));
        return Ok(Done::default());
    };
    let mut cursor = Cursor {
        next: Wrapping(q.next_avail()),
        avail: Wrapping(0),
    };
    cursor.avail = v.available(cursor.next)?;
    let mut done = Done::default();
    for f in frames {
        let r = put_frame(&v, mem, &mut cursor, f, mrg, used)?;
        if r == Pushed::Sent {
            done.count += 1;
            done.bytes += f.len() as u64;
        }
        each(r);
    }
    q.set_next_avail(cursor.next.0);
    done.notify = v.publish(q, used.iter().copied())?;
    Ok(done)
}

/// The device's position in the avail ring during one batch.
struct Cursor {
    next: Wrapping<u16>,
    avail: Wrapping<u16>,
}

/// One frame into the chains the avail ring offers, in one pass: the header
/// and frame are written chain after chain; when they do not fit, the chains
/// are given back (the cursor moves back) and what was written in them does
/// not count.
fn put_frame(
    v: &View<'_>,
    mem: &GuestMemoryMmap,
    cur: &mut Cursor,
    frame: &[u8],
    mrg: bool,
    used: &mut Vec<(u16, u32)>,
) -> Result<Pushed, RingError> {
    let total = HDR_LEN + frame.len();
    let start = used.len();
    let mut hdr = [0u8; HDR_LEN];
    hdr[NUM_BUFFERS_AT..].copy_from_slice(&1u16.to_le_bytes());
    let mut nb_at = [None; 2];
    let mut pos = 0;
    let give_back = |cur: &mut Cursor, used: &mut Vec<(u16, u32)>| {
        cur.next -= Wrapping((used.len() - start) as u16);
        used.truncate(start);
    };
    while pos < total {
        if cur.next == cur.avail {
            give_back(cur, used);
            return Ok(Pushed::NoRoom);
        }
        let head = v.avail_entry(cur.next);
        cur.next += Wrapping(1);
        let k = fill(v, mem, head, &hdr, frame, pos, &mut nb_at)?;
        pos += k;
        used.push((head, k as u32));
        let chains = used.len() - start;
        if pos < total && (!mrg || chains == MAX_RX_CHAINS) {
            give_back(cur, used);
            return Ok(Pushed::TooBig);
        }
    }
    let n = (used.len() - start) as u16;
    if n > 1 {
        for (slot, byte) in nb_at.iter().zip(n.to_le_bytes()) {
            if let Some(addr) = slot {
                write_guest(mem, *addr, &[byte])?;
            }
        }
    }
    Ok(Pushed::Sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};
    use virtio_queue::mock::{AvailRing, DescriptorTable, UsedRing};
    use vm_memory::GuestMemoryMmap;

    const QSIZE: u16 = 16;
    const DATA: u64 = 0x10_0000;
    /// Where the descriptor table, the avail ring and the used ring lie: 4 KiB
    /// apart, far more than each takes (256, 38 and 134 bytes).
    const RINGS_AT: [u64; 3] = [0x0, 0x1000, 0x2000];

    /// (frames, bytes) delivered.
    fn sent(d: Done) -> (usize, u64) {
        (d.count, d.bytes)
    }

    /// One frame through [`push_rx`], with what became of it.
    fn push1(q: &mut Queue, mem: &GuestMemoryMmap, f: &[u8], mrg: bool) -> Result<Pushed, RingError> {
        let mut r = Pushed::NoRoom;
        push_each(q, mem, &[f], mrg, &mut Vec::new(), |p| r = p)?;
        Ok(r)
    }

    /// A split virtqueue as its driver sees it, for [`Queue`] to serve.
    ///
    /// Not virtio-queue's `MockSplitQueue::new`/`create`: in 0.18 they place
    /// the used ring `len` bytes after the avail ring's entries rather than
    /// `2 * len` (`SplitQueueRing::end` counts elements as bytes;
    /// rust-vmm/vm-virtio pull request 400), so the used ring overlaps the
    /// avail ring's second half and its `used_event`. The mock's parts are
    /// used here at the addresses [`RINGS_AT`], as tests/vhost_user.rs does,
    /// with the `MockSplitQueue` methods these tests call.
    struct Rings<'a> {
        desc: DescriptorTable<'a, GuestMemoryMmap>,
        avail: AvailRing<'a, GuestMemoryMmap>,
        used: UsedRing<'a, GuestMemoryMmap>,
    }

    impl<'a> Rings<'a> {
        /// A queue of [`QSIZE`] entries with empty rings.
        fn new(mem: &'a GuestMemoryMmap) -> Self {
            let [d, a, u] = RINGS_AT.map(GuestAddress);
            Rings {
                desc: DescriptorTable::new(mem, d, QSIZE),
                avail: AvailRing::new(mem, a, QSIZE),
                used: UsedRing::new(mem, u, QSIZE),
            }
        }

        fn avail(&self) -> &AvailRing<'a, GuestMemoryMmap> {
            &self.avail
        }

        fn used(&self) -> &UsedRing<'a, GuestMemoryMmap> {
            &self.used
        }

        /// Offers `head` in the avail ring.
        fn publish(&self, head: u16) {
            let idx = self.avail.idx().load();
            self.avail.ring().ref_at(usize::from(idx % QSIZE)).unwrap().store(head);
            self.avail.idx().store(idx.wrapping_add(1));
        }

        /// As `MockSplitQueue::build_desc_chain`: `descs` as one chain from
        /// descriptor 0 (NEXT set and `next` pointing at the following one on all
        /// but the last), offered.
        fn build_desc_chain(&self, descs: &[RawDescriptor]) -> Result<(), virtio_queue::mock::MockError> {
            for (i, d) in descs.iter().enumerate() {
                let d = Descriptor::from(*d);
                let last = i + 1 == descs.len();
                let (flags, next) = if last {
                    (d.flags() & !(VRING_DESC_F_NEXT as u16), 0)
                } else {
                    (d.flags() | VRING_DESC_F_NEXT as u16, i as u16 + 1)
                };
                let raw = RawDescriptor::from(Descriptor::new(d.addr().0, d.len(), flags, next));
                self.desc.store(i as u16, raw)?;
            }
            self.publish(0);
            Ok(())
        }

        /// As `MockSplitQueue::add_desc_chains`: `descs` stored from descriptor
        /// `offset` as they are; each one that does not follow a descriptor with
        /// NEXT starts a chain, which is offered.
        fn add_desc_chains(&self, descs: &[RawDescriptor], offset: u16) -> Result<(), virtio_queue::mock::MockError> {
            for (i, d) in descs.iter().enumerate() {
                let at = offset + i as u16;
                self.desc.store(at, *d)?;
                if i == 0 || Descriptor::from(descs[i - 1]).flags() & VRING_DESC_F_NEXT as u16 == 0 {
                    self.publish(at);
                }
            }
            Ok(())
        }

        /// A ready [`Queue`] over these rings.
        fn create_queue(&self) -> Result<Queue, virtio_queue::Error> {
            let mut q = Queue::new(QSIZE)?;
            q.set_size(QSIZE);
            q.set_ready(true);
            let [d, a, u] = RINGS_AT;
            q.set_desc_table_address(Some(d as u32), Some((d >> 32) as u32));
            q.set_avail_ring_address(Some(a as u32), Some((a >> 32) as u32));
            q.set_used_ring_address(Some(u as u32), Some((u >> 32) as u32));
            Ok(q)
        }
    }

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap()
    }

    fn frame(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 3) as u8).collect()
    }

    fn desc(addr: u64, len: u32, flags: u32) -> RawDescriptor {
        RawDescriptor::from(Descriptor::new(addr, len, flags as u16, 0))
    }

    /// A TX chain carrying `hdr ++ f`, split after each byte offset in `cuts`.
    fn tx_chain(mem: &GuestMemoryMmap, f: &[u8], cuts: &[usize], at: u64) -> Vec<RawDescriptor> {
        let mut bytes = vec![0u8; HDR_LEN];
        bytes.extend_from_slice(f);
        mem.write_slice(&bytes, GuestAddress(at)).unwrap();
        let mut bounds = vec![0];
        bounds.extend(cuts.iter().copied().filter(|c| *c > 0 && *c < bytes.len()));
        bounds.push(bytes.len());
        bounds
            .windows(2)
            .map(|w| desc(at + w[0] as u64, (w[1] - w[0]) as u32, 0))
            .collect()
    }

    #[test]
    fn tx_frames_are_read_whatever_the_chain_layout() {
        let f = frame(60);
        // The header alone, split inside the header, inside the frame, one byte per piece at the start.
        for cuts in [
            vec![],
            vec![HDR_LEN],
            vec![5],
            vec![HDR_LEN + 13],
            vec![1, 2, 3, 12, 13, 40],
        ] {
            let mem = memory();
            let vq = Rings::new(&mem);
            vq.build_desc_chain(&tx_chain(&mem, &f, &cuts, DATA)).unwrap();
            let mut q = vq.create_queue().unwrap();
            let mut b = TxBatch::default();
            assert_eq!(drain_tx(&mut q, &mem, &mut b).unwrap().count, 1, "cuts {cuts:?}");
            assert_eq!(b.frames.len(), 1);
            assert_eq!(b.frame(0), &f[..], "cuts {cuts:?}");
            // The chain went back to the guest.
            assert_eq!(q.next_used(), 1);
            assert_eq!(drain_tx(&mut q, &mem, &mut b).unwrap().count, 0);
        }
    }

    #[test]
    fn tx_drains_many_chains_and_drops_oversize_frames() {
        let mem = memory();
        let vq = Rings::new(&mem);
        let (a, big, c) = (frame(64), frame(MAX_FRAME_LEN + 1), frame(1514));
        let mut descs = tx_chain(&mem, &a, &[], DATA);
        descs.extend(tx_chain(&mem, &big, &[], DATA + 0x1000));
        descs.extend(tx_chain(&mem, &c, &[HDR_LEN], DATA + 0x2_0000));
        // Three chains: no NEXT flags, so each descriptor but the split one is a chain.
        let mut raw: Vec<RawDescriptor> = descs;
        let split = Descriptor::from(raw[2]);
        raw[2] = RawDescriptor::from(Descriptor::new(
            split.addr().0,
            split.len(),
            VRING_DESC_F_NEXT as u16,
            3,
        ));
        vq.add_desc_chains(&raw, 0).unwrap();
        let mut q = vq.create_queue().unwrap();
        let mut b = TxBatch::default();
        assert_eq!(drain_tx(&mut q, &mem, &mut b).unwrap().count, 3);
        assert_eq!((b.frames.len(), b.oversize), (2, 1));
        assert_eq!(b.frame(0), &a[..]);
        assert_eq!(b.frame(1), &c[..]);
        assert_eq!(q.next_used(), 3);
    }

    #[test]
    fn malformed_tx_chains_are_errors() {
        // A buffer outside guest memory.
        let mem = memory();
        let vq = Rings::new(&mem);
        vq.build_desc_chain(&[desc(0x1000_0000, 100, 0)]).unwrap();
        let mut q = vq.create_queue().unwrap();
        let mut b = TxBatch::default();
        assert!(matches!(drain_tx(&mut q, &mem, &mut b), Err(RingError::Memory(_))));

        // A loop: descriptor 0 -> 1 -> 0.
        let mem = memory();
        let vq = Rings::new(&mem);
        let next = VRING_DESC_F_NEXT as u16;
        vq.add_desc_chains(
            &[
                RawDescriptor::from(Descriptor::new(DATA, 20, next, 1)),
                RawDescriptor::from(Descriptor::new(DATA + 100, 20, next, 0)),
            ],
            0,
        )
        .unwrap();
        let mut q = vq.create_queue().unwrap();
        assert!(matches!(drain_tx(&mut q, &mem, &mut b), Err(RingError::Chain)));

        // A next index outside the table.
        let mem = memory();
        let vq = Rings::new(&mem);
        vq.add_desc_chains(&[RawDescriptor::from(Descriptor::new(DATA, 20, next, QSIZE + 3))], 0)
            .unwrap();
        let mut q = vq.create_queue().unwrap();
        assert!(matches!(drain_tx(&mut q, &mem, &mut b), Err(RingError::Chain)));

        // An avail index far ahead of the queue size.
        let mem = memory();
        let vq = Rings::new(&mem);
        vq.avail().idx().store(u16::to_le(QSIZE + 5));
        let mut q = vq.create_queue().unwrap();
        assert!(matches!(drain_tx(&mut q, &mem, &mut b), Err(RingError::Queue(_))));
    }

    #[test]
    fn a_ring_not_ready_is_empty_not_malformed() {
        let mem = memory();
        let vq = Rings::new(&mem);
        let mut q = vq.create_queue().unwrap();
        q.set_ready(false);
        let mut b = TxBatch::default();
        assert_eq!(drain_tx(&mut q, &mem, &mut b).unwrap().count, 0);
        assert_eq!(push1(&mut q, &mem, &frame(60), true).unwrap(), Pushed::NoRoom);
    }

    /// Used entry `i`: (head index, length written).
    fn used(vq: &Rings<'_>, i: u16) -> (u16, u32) {
        let e = vq.used().ring().ref_at(i as usize).unwrap().load();
        (e.id() as u16, e.len())
    }

    /// The first `n` bytes of the buffers `pieces` ((address, length), in order).
    fn read(mem: &GuestMemoryMmap, pieces: &[(u64, usize)], mut n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for &(at, len) in pieces {
            let k = len.min(n);
            let mut v = vec![0u8; k];
            mem.read_slice(&mut v, GuestAddress(at)).unwrap();
            out.extend(v);
            n -= k;
        }
        out
    }

    #[test]
    fn rx_frames_land_in_chains_of_any_layout() {
        let f = frame(60);
        let w = VRING_DESC_F_WRITE;
        // One buffer; the header in its own buffer; a split inside the header; many small buffers.
        let layouts: Vec<Vec<usize>> = vec![vec![2048], vec![HDR_LEN, 2048], vec![7, 2048], vec![5, 5, 5, 5, 100]];
        for sizes in layouts {
            let mem = memory();
            let vq = Rings::new(&mem);
            let mut at = DATA;
            let mut pieces = Vec::new();
            let descs: Vec<_> = sizes
                .iter()
                .map(|&s| {
                    pieces.push((at, s));
                    let d = desc(at, s as u32, w);
                    at += 0x1000;
                    d
                })
                .collect();
            vq.build_desc_chain(&descs).unwrap();
            let mut q = vq.create_queue().unwrap();
            assert_eq!(push1(&mut q, &mem, &f, false).unwrap(), Pushed::Sent, "{sizes:?}");
            let (id, len) = used(&vq, 0);
            assert_eq!((id, len as usize), (0, HDR_LEN + f.len()), "{sizes:?}");
            let got = read(&mem, &pieces, len as usize);
            assert_eq!(&got[..NUM_BUFFERS_AT], &[0; NUM_BUFFERS_AT]);
            assert_eq!(&got[NUM_BUFFERS_AT..HDR_LEN], &1u16.to_le_bytes());
            assert_eq!(&got[HDR_LEN..], &f[..], "{sizes:?}");
        }
    }

    #[test]
    fn rx_with_mergeable_buffers_spans_chains_and_sets_num_buffers() {
        let mem = memory();
        let vq = Rings::new(&mem);
        let w = VRING_DESC_F_WRITE;
        // Four one-descriptor chains of 600 bytes.
        let descs: Vec<_> = (0..4).map(|i| desc(DATA + i * 0x1000, 600, w)).collect();
        vq.add_desc_chains(&descs, 0).unwrap();
        let mut q = vq.create_queue().unwrap();
        let f = frame(1514);
        // Without MRG_RXBUF it does not fit one chain: dropped, the chain given back.
        assert_eq!(push1(&mut q, &mem, &f, false).unwrap(), Pushed::TooBig);
        assert_eq!(q.next_avail(), 0);
        assert_eq!(push1(&mut q, &mem, &f, true).unwrap(), Pushed::Sent);
        assert_eq!(q.next_avail(), 3);
        assert_eq!(q.next_used(), 3);
        let lens: Vec<_> = (0..3).map(|i| used(&vq, i)).collect();
        assert_eq!(lens, vec![(0, 600), (1, 600), (2, (HDR_LEN + 1514 - 1200) as u32)]);
        let pieces: Vec<_> = (0..3).map(|i| (DATA + i * 0x1000, 600)).collect();
        let got = read(&mem, &pieces, HDR_LEN + 1514);
        assert_eq!(&got[NUM_BUFFERS_AT..HDR_LEN], &3u16.to_le_bytes());
        assert_eq!(&got[HDR_LEN..], &f[..]);
        // One 600-byte chain left: a second 1514-byte frame finds no room and takes nothing.
        assert_eq!(push1(&mut q, &mem, &f, true).unwrap(), Pushed::NoRoom);
        assert_eq!(q.next_avail(), 3);
        // A small frame still fits it.
        assert_eq!(push1(&mut q, &mem, &frame(60), true).unwrap(), Pushed::Sent);
        // Now the ring is full (no buffer posted): dropped.
        assert_eq!(push1(&mut q, &mem, &frame(60), true).unwrap(), Pushed::NoRoom);
    }

    #[test]
    fn a_batch_goes_through_one_pass_and_num_buffers_may_be_split() {
        let mem = memory();
        let vq = Rings::new(&mem);
        let w = VRING_DESC_F_WRITE;
        let next = VRING_DESC_F_NEXT as u16;
        // Chain 0: the header cut inside num_buffers (11 + 1 bytes), then 600; chains 1-3: 600 each.
        let raw = vec![
            RawDescriptor::from(Descriptor::new(DATA, 11, w as u16 | next, 1)),
            RawDescriptor::from(Descriptor::new(DATA + 0x100, 1, w as u16 | next, 2)),
            RawDescriptor::from(Descriptor::new(DATA + 0x1000, 600, w as u16, 0)),
            desc(DATA + 0x2000, 600, w),
            desc(DATA + 0x3000, 600, w),
            desc(DATA + 0x4000, 600, w),
        ];
        vq.add_desc_chains(&raw, 0).unwrap();
        let mut q = vq.create_queue().unwrap();
        let (big, small) = (frame(1514), frame(60));
        let mut scratch = Vec::new();
        // Without MRG_RXBUF the big frame is dropped and the small ones use the chains in order.
        let frames: [&[u8]; 3] = [&small, &big, &small];
        assert_eq!(
            sent(push_rx(&mut q, &mem, &frames, false, &mut scratch).unwrap()),
            (2, 120)
        );
        assert_eq!((q.next_avail(), q.next_used()), (2, 2));
        assert_eq!(used(&vq, 0), (0, (HDR_LEN + 60) as u32));
        assert_eq!(used(&vq, 1), (3, (HDR_LEN + 60) as u32));
        // With it, a big frame spans the two chains left... and one more is missing: no room.
        assert_eq!(
            sent(push_rx(&mut q, &mem, &[&big], true, &mut scratch).unwrap()),
            (0, 0)
        );
        assert_eq!(q.next_avail(), 2, "the chains were given back");
        // A fresh ring: the big frame starting in chain 0 gets num_buffers = 3 across the cut.
        let mem = memory();
        let vq = Rings::new(&mem);
        vq.add_desc_chains(&raw, 0).unwrap();
        let mut q = vq.create_queue().unwrap();
        assert_eq!(
            sent(push_rx(&mut q, &mem, &[&big], true, &mut scratch).unwrap()),
            (1, 1514)
        );
        let pieces = [
            (DATA, 11),
            (DATA + 0x100, 1),
            (DATA + 0x1000, 600),
            (DATA + 0x2000, 600),
            (DATA + 0x3000, 600),
        ];
        let got = read(&mem, &pieces, HDR_LEN + 1514);
        assert_eq!(&got[NUM_BUFFERS_AT..HDR_LEN], &3u16.to_le_bytes());
        assert_eq!(&got[HDR_LEN..], &big[..]);
        assert_eq!(used(&vq, 0), (0, 612));
        assert_eq!(used(&vq, 2), (4, (HDR_LEN + 1514 - 612 - 600) as u32));
    }

    #[test]
    fn notifications_follow_no_interrupt_and_used_event() {
        let mem = memory();
        let vq = Rings::new(&mem);
        let descs: Vec<_> = (0..8)
            .map(|i| desc(DATA + i * 0x1000, 2048, VRING_DESC_F_WRITE))
            .collect();
        vq.add_desc_chains(&descs, 0).unwrap();
        let mut q = vq.create_queue().unwrap();
        let f = frame(60);
        let mut scratch = Vec::new();
        // Without EVENT_IDX: notify unless the driver set VRING_AVAIL_F_NO_INTERRUPT.
        assert!(push_rx(&mut q, &mem, &[&f], false, &mut scratch).unwrap().notify);
        mem.write_obj(u16::to_le(VRING_AVAIL_F_NO_INTERRUPT as u16), GuestAddress(RINGS_AT[1]))
            .unwrap();
        assert!(!push_rx(&mut q, &mem, &[&f], false, &mut scratch).unwrap().notify);
        // With EVENT_IDX: notify when the used index passes used_event (VIRTIO 1.2 2.7.10).
        q.set_event_idx(true);
        let used_event = GuestAddress(RINGS_AT[1] + 4 + 2 * u64::from(QSIZE));
        mem.write_obj(u16::to_le(5), used_event).unwrap();
        // Used index 2 -> 4: entries 2 and 3, not past 5: no notification.
        let d = push_rx(&mut q, &mem, &[&f, &f], false, &mut scratch).unwrap();
        assert_eq!((d.count, d.notify), (2, false));
        // 4 -> 6 writes entry 5: the driver asked for it.
        let d = push_rx(&mut q, &mem, &[&f, &f], false, &mut scratch).unwrap();
        assert_eq!((d.count, d.notify), (2, true));
        assert_eq!(q.next_used(), 6);
        assert_eq!(u16::from_le(vq.used().idx().load()), 6);
        // Nothing delivered (no buffer left after two more): nothing published, no notification.
        push_rx(&mut q, &mem, &[&f, &f], false, &mut scratch).unwrap();
        let d = push_rx(&mut q, &mem, &[&f], false, &mut scratch).unwrap();
        assert_eq!((d.count, d.notify), (0, false));
    }

    #[test]
    fn malformed_rx_chains_are_errors() {
        let mem = memory();
        let vq = Rings::new(&mem);
        vq.build_desc_chain(&[desc(0x1000_0000, 2048, VRING_DESC_F_WRITE)])
            .unwrap();
        let mut q = vq.create_queue().unwrap();
        assert!(matches!(
            push1(&mut q, &mem, &frame(60), false),
            Err(RingError::Memory(_))
        ));
    }
}
