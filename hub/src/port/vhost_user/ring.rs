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
//!   or is longer than the queue, an avail index more than the queue size
//!   ahead) is a [`RingError`]: the caller closes the port.
//!
//! A batch's frames go through one pass over the avail ring (its index, a
//! cache line the guest keeps writing, is read once per batch) and their used
//! entries are written after it. Nothing here allocates: TX frames are copied
//! into a [`TxBatch`] whose buffers are sized once, RX used entries go into a
//! list the port keeps.

use std::ops::Deref;

use virtio_queue::{AvailIter, DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, GuestMemoryError};

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
    /// The queue's indices are inconsistent (virtio-queue's check, for example
    /// an avail index more than the queue size ahead of the device's).
    #[error("virtqueue: {0}")]
    Queue(virtio_queue::Error),
    /// A descriptor's buffer is not inside the guest memory the frontend shared.
    #[error("a descriptor's buffer lies outside guest memory: {0}")]
    Memory(vm_memory::GuestMemoryError),
    /// A descriptor chain is empty, loops, points outside the descriptor table
    /// or is longer than the queue.
    #[error("a descriptor chain loops, is empty or longer than the queue")]
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

/// What [`push_rx`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The frame is in the ring (its used entries written; the caller
    /// notifies the guest once per batch).
    Sent,
    /// No posted buffer, or too few: the frame is dropped.
    NoRoom,
    /// The frame does not fit the buffers a guest without MRG_RXBUF posts, or
    /// needs more than [`MAX_RX_CHAINS`] chains: dropped.
    TooBig,
}

fn queue_err(e: virtio_queue::Error) -> Option<RingError> {
    match e {
        // Not set up yet, or reset: not malformed, just nothing to do.
        virtio_queue::Error::QueueNotReady => None,
        e => Some(RingError::Queue(e)),
    }
}

/// `addr + n`, or an error when a guest's descriptor wraps the address space.
fn offset(addr: GuestAddress, n: usize) -> Result<GuestAddress, RingError> {
    addr.checked_add(n as u64)
        .ok_or(RingError::Memory(GuestMemoryError::InvalidGuestAddress(addr)))
}

/// Walks `chain`'s descriptors, calling `f(addr, len, writable)` for each;
/// fails when the chain is empty or ended early (a loop, a `next` outside the
/// table, a descriptor table outside memory).
fn walk<M, F>(chain: DescriptorChain<M>, mut f: F) -> Result<(), RingError>
where
    M: Deref,
    M::Target: GuestMemory,
    F: FnMut(GuestAddress, u32, bool) -> Result<(), RingError>,
{
    let mut any = false;
    let mut more = false;
    for d in chain {
        any = true;
        more = d.has_next();
        f(d.addr(), d.len(), d.is_write_only())?;
    }
    // The iterator stops silently when it runs out of hops or cannot read the
    // next descriptor: a last descriptor that still says NEXT means that.
    if !any || more {
        return Err(RingError::Chain);
    }
    Ok(())
}

/// Copies up to [`TX_BATCH_FRAMES`] frames out of the TX queue `q` into
/// `batch` (cleared first), then returns their chains to the guest (used
/// length 0: the device wrote nothing). The avail index is read once per call
/// (it sits on a cache line the guest keeps writing). Returns how many chains
/// were taken (frames plus dropped ones); 0 when the ring is empty or not ready.
///
/// # Errors
/// [`RingError`] on a malformed ring or chain; the chains taken before it are
/// returned to the guest and their frames stay in `batch`.
pub fn drain_tx<M: GuestMemory>(q: &mut Queue, mem: &M, batch: &mut TxBatch) -> Result<usize, RingError> {
    batch.clear();
    let mut result = Ok(());
    {
        let mut it = match q.iter(mem) {
            Ok(it) => it,
            Err(e) => return queue_err(e).map_or(Ok(0), Err),
        };
        while batch.heads.len() < TX_BATCH_FRAMES && batch.buf.len() < TX_BATCH_BYTES {
            let Some(chain) = it.next() else { break };
            batch.heads.push(chain.head_index());
            if let Err(e) = read_frame(chain, mem, batch) {
                result = Err(e);
                break;
            }
        }
    }
    for &head in &batch.heads {
        q.add_used(mem, head, 0).map_err(RingError::Queue)?;
    }
    result.map(|()| batch.heads.len())
}

/// Appends the frame of TX chain `chain` (its virtio-net header skipped) to
/// `batch`, or counts it in `oversize`.
fn read_frame<M: GuestMemory>(chain: DescriptorChain<&M>, mem: &M, batch: &mut TxBatch) -> Result<(), RingError> {
    let start = batch.buf.len();
    let mut skip = HDR_LEN; // header bytes still to skip
    let mut len = 0usize; // frame bytes seen
    let result = walk(chain, |addr, n, writable| {
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
            mem.read_slice(&mut batch.buf[at..at + copy], addr)
                .map_err(RingError::Memory)?;
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

/// Writes bytes `from..` of `hdr ++ frame` into `chain`'s writable
/// descriptors, as many as fit; returns how many were written, and notes in
/// `nb_at` where the header's `num_buffers` bytes went (they may fall in two
/// descriptors).
fn fill<M>(
    chain: DescriptorChain<M>,
    mem: &M::Target,
    hdr: &[u8; HDR_LEN],
    frame: &[u8],
    from: usize,
    nb_at: &mut [Option<GuestAddress>; 2],
) -> Result<usize, RingError>
where
    M: Deref,
    M::Target: GuestMemory,
{
    let total = HDR_LEN + frame.len();
    let mut pos = from;
    walk(chain, |addr, n, writable| {
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
            mem.write_slice(&src[..k], addr).map_err(RingError::Memory)?;
            addr = offset(addr, k)?;
            left -= k;
            pos += k;
        }
        Ok(())
    })?;
    Ok(pos - from)
}

/// Puts `frames` (whole Ethernet frames, 14..=69632 bytes each) into the RX
/// queue `q`, each behind a virtio-net header, in one pass over the avail ring
/// (its index read once), then writes the used entries; `mrg` says whether
/// VIRTIO_NET_F_MRG_RXBUF was negotiated (a frame may then span several
/// chains). `used` is the caller's scratch list (kept between calls, so this
/// allocates nothing once it has grown to the queue size). Returns the frames
/// and bytes delivered; the others found no room ([`Pushed`]) and were
/// dropped, their chains left to the next frames. The caller notifies the
/// guest (once per batch).
///
/// # Errors
/// [`RingError`] on a malformed ring or chain (the caller closes the port).
pub fn push_rx<M: GuestMemory>(
    q: &mut Queue,
    mem: &M,
    frames: &[&[u8]],
    mrg: bool,
    used: &mut Vec<(u16, u32)>,
) -> Result<(usize, u64), RingError> {
    used.clear();
    let (mut sent, mut bytes) = (0, 0);
    {
        let mut it = match q.iter(mem) {
            Ok(it) => it,
            Err(e) => return queue_err(e).map_or(Ok((0, 0)), Err),
        };
        for f in frames {
            if put_frame(&mut it, mem, f, mrg, used)? == Pushed::Sent {
                sent += 1;
                bytes += f.len() as u64;
            }
        }
    }
    for &(head, len) in used.iter() {
        q.add_used(mem, head, len).map_err(RingError::Queue)?;
    }
    Ok((sent, bytes))
}

/// One frame into the chains `it` offers, in one pass: the header and frame
/// are written chain after chain; when they do not fit, the chains are given
/// back ([`AvailIter::go_to_previous_position`]) and what was written in them
/// does not count.
fn put_frame<M: GuestMemory>(
    it: &mut AvailIter<'_, &M>,
    mem: &M,
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
    let give_back = |it: &mut AvailIter<'_, &M>, used: &mut Vec<(u16, u32)>| {
        (start..used.len()).for_each(|_| it.go_to_previous_position());
        used.truncate(start);
    };
    while pos < total {
        let Some(chain) = it.next() else {
            give_back(it, used);
            return Ok(Pushed::NoRoom);
        };
        let head = chain.head_index();
        let k = fill(chain, mem, &hdr, frame, pos, &mut nb_at)?;
        pos += k;
        used.push((head, k as u32));
        let chains = used.len() - start;
        if pos < total && (!mrg || chains == MAX_RX_CHAINS) {
            give_back(it, used);
            return Ok(Pushed::TooBig);
        }
    }
    let n = (used.len() - start) as u16;
    if n > 1 {
        for (slot, byte) in nb_at.iter().zip(n.to_le_bytes()) {
            if let Some(addr) = slot {
                mem.write_slice(&[byte], *addr).map_err(RingError::Memory)?;
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

    /// One frame through [`put_frame`], its used entries written: what
    /// [`push_rx`] does per frame, with the reason of a drop.
    fn push1(q: &mut Queue, mem: &GuestMemoryMmap, f: &[u8], mrg: bool) -> Result<Pushed, RingError> {
        let mut used = Vec::new();
        let r = match q.iter(mem) {
            Ok(mut it) => put_frame(&mut it, mem, f, mrg, &mut used)?,
            Err(_) => return Ok(Pushed::NoRoom),
        };
        for (head, len) in used {
            q.add_used(mem, head, len).unwrap();
        }
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
            assert_eq!(drain_tx(&mut q, &mem, &mut b).unwrap(), 1, "cuts {cuts:?}");
            assert_eq!(b.frames.len(), 1);
            assert_eq!(b.frame(0), &f[..], "cuts {cuts:?}");
            // The chain went back to the guest.
            assert_eq!(q.next_used(), 1);
            assert_eq!(drain_tx(&mut q, &mem, &mut b).unwrap(), 0);
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
        assert_eq!(drain_tx(&mut q, &mem, &mut b).unwrap(), 3);
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
        assert_eq!(drain_tx(&mut q, &mem, &mut b).unwrap(), 0);
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
        assert_eq!(push_rx(&mut q, &mem, &frames, false, &mut scratch).unwrap(), (2, 120));
        assert_eq!((q.next_avail(), q.next_used()), (2, 2));
        assert_eq!(used(&vq, 0), (0, (HDR_LEN + 60) as u32));
        assert_eq!(used(&vq, 1), (3, (HDR_LEN + 60) as u32));
        // With it, a big frame spans the two chains left... and one more is missing: no room.
        assert_eq!(push_rx(&mut q, &mem, &[&big], true, &mut scratch).unwrap(), (0, 0));
        assert_eq!(q.next_avail(), 2, "the chains were given back");
        // A fresh ring: the big frame starting in chain 0 gets num_buffers = 3 across the cut.
        let mem = memory();
        let vq = Rings::new(&mem);
        vq.add_desc_chains(&raw, 0).unwrap();
        let mut q = vq.create_queue().unwrap();
        assert_eq!(push_rx(&mut q, &mem, &[&big], true, &mut scratch).unwrap(), (1, 1514));
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
