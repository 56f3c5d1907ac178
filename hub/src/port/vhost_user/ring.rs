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
//!   and the chains it would have used are given back to the ring untouched;
//! - a malformed ring (a descriptor outside guest memory, a chain that loops
//!   or is longer than the queue, an avail index more than the queue size
//!   ahead) is a [`RingError`]: the caller closes the port.
//!
//! Nothing here allocates: TX frames are copied into a [`TxBatch`] whose
//! buffers are sized once, RX chains are tracked in a fixed array.

use std::ops::Deref;

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
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
/// `batch` (cleared first), returning each chain to the guest at once (used
/// length 0: the device wrote nothing). Returns how many chains were taken
/// (frames plus dropped ones); 0 when the ring is empty or not ready.
///
/// # Errors
/// [`RingError`] on a malformed ring or chain; the chains taken before it are
/// returned to the guest and their frames stay in `batch`.
pub fn drain_tx<M: GuestMemory>(q: &mut Queue, mem: &M, batch: &mut TxBatch) -> Result<usize, RingError> {
    batch.clear();
    let mut taken = 0;
    while batch.frames.len() < TX_BATCH_FRAMES && batch.buf.len() < TX_BATCH_BYTES {
        let chain = match q.iter(mem) {
            Ok(mut it) => it.next(),
            Err(e) => return queue_err(e).map_or(Ok(taken), Err),
        };
        let Some(chain) = chain else { break };
        let head = chain.head_index();
        let start = batch.buf.len();
        let mut skip = HDR_LEN; // header bytes still to skip
        let mut len = 0usize; // frame bytes seen
        let result = walk(chain, |addr, n, writable| {
            if writable {
                return Ok(()); // TX chains are read-only; a writable part is ignored
            }
            let mut n = n as usize;
            let mut addr = addr;
            let h = skip.min(n);
            skip -= h;
            n -= h;
            addr = offset(addr, h)?;
            if n == 0 {
                return Ok(());
            }
            // Copy at most one byte past the largest frame: enough to know it is too long.
            let room = (MAX_FRAME_LEN + 1).saturating_sub(len);
            let copy = n.min(room);
            if copy > 0 {
                let at = start + len;
                batch.buf.resize(at + copy, 0);
                mem.read_slice(&mut batch.buf[at..at + copy], addr)
                    .map_err(RingError::Memory)?;
            }
            len += n;
            Ok(())
        });
        q.add_used(mem, head, 0).map_err(RingError::Queue)?;
        taken += 1;
        if let Err(e) = result {
            batch.buf.truncate(start);
            return Err(e);
        }
        if len > MAX_FRAME_LEN {
            batch.buf.truncate(start);
            batch.oversize += 1;
            continue;
        }
        batch.frames.push((start as u32, len as u32));
    }
    Ok(taken)
}

/// Writable bytes of `chain`.
fn capacity<M>(chain: DescriptorChain<M>) -> Result<usize, RingError>
where
    M: Deref,
    M::Target: GuestMemory,
{
    let mut cap = 0usize;
    walk(chain, |_, n, writable| {
        if writable {
            cap = cap.saturating_add(n as usize);
        }
        Ok(())
    })?;
    Ok(cap)
}

/// Writes bytes `from..` of `hdr ++ frame` into `chain`'s writable
/// descriptors, as many as fit; returns how many were written.
fn fill<M>(
    chain: DescriptorChain<M>,
    mem: &M::Target,
    hdr: &[u8; HDR_LEN],
    frame: &[u8],
    from: usize,
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
            mem.write_slice(&src[..k], addr).map_err(RingError::Memory)?;
            addr = offset(addr, k)?;
            left -= k;
            pos += k;
        }
        Ok(())
    })?;
    Ok(pos - from)
}

/// Puts `frame` (a whole Ethernet frame, 14..=69632 bytes) into the RX queue
/// `q` behind a virtio-net header, writing its used entries; `mrg` says
/// whether VIRTIO_NET_F_MRG_RXBUF was negotiated (a frame may then span
/// several chains). The caller notifies the guest (once per batch).
///
/// # Errors
/// [`RingError`] on a malformed ring or chain (the caller closes the port).
pub fn push_rx<M: GuestMemory>(q: &mut Queue, mem: &M, frame: &[u8], mrg: bool) -> Result<Pushed, RingError> {
    let total = HDR_LEN + frame.len();
    let mut hdr = [0u8; HDR_LEN];
    let mut used = [(0u16, 0u32); MAX_RX_CHAINS];
    let n = {
        let mut it = match q.iter(mem) {
            Ok(it) => it,
            Err(e) => return queue_err(e).map_or(Ok(Pushed::NoRoom), Err),
        };
        let Some(first) = it.next() else {
            return Ok(Pushed::NoRoom);
        };
        let cap = capacity(first.clone())?;
        if cap >= total {
            // The common case: one chain holds it all.
            hdr[NUM_BUFFERS_AT..].copy_from_slice(&1u16.to_le_bytes());
            used[0] = (first.head_index(), fill(first, mem, &hdr, frame, 0)? as u32);
            1
        } else if !mrg {
            it.go_to_previous_position();
            return Ok(Pushed::TooBig);
        } else {
            // Count the chains needed, give them back, then take and fill them.
            let (mut n, mut sum) = (1usize, cap);
            while sum < total {
                let Some(c) = it.next() else {
                    (0..n).for_each(|_| it.go_to_previous_position());
                    return Ok(Pushed::NoRoom);
                };
                n += 1;
                sum = sum.saturating_add(capacity(c)?);
                if n == MAX_RX_CHAINS && sum < total {
                    (0..n).for_each(|_| it.go_to_previous_position());
                    return Ok(Pushed::TooBig);
                }
            }
            (0..n).for_each(|_| it.go_to_previous_position());
            hdr[NUM_BUFFERS_AT..].copy_from_slice(&(n as u16).to_le_bytes());
            let mut pos = 0;
            for slot in used.iter_mut().take(n) {
                let c = it.next().ok_or(RingError::Chain)?;
                let head = c.head_index();
                let k = fill(c, mem, &hdr, frame, pos)?;
                pos += k;
                *slot = (head, k as u32);
            }
            n
        }
    };
    for &(head, len) in &used[..n] {
        q.add_used(mem, head, len).map_err(RingError::Queue)?;
    }
    Ok(Pushed::Sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{split::Descriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::GuestMemoryMmap;

    const QSIZE: u16 = 16;
    const DATA: u64 = 0x10_0000;

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
            let vq = MockSplitQueue::new(&mem, QSIZE);
            vq.build_desc_chain(&tx_chain(&mem, &f, &cuts, DATA)).unwrap();
            let mut q: Queue = vq.create_queue().unwrap();
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
        let vq = MockSplitQueue::new(&mem, QSIZE);
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
        let mut q: Queue = vq.create_queue().unwrap();
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
        let vq = MockSplitQueue::new(&mem, QSIZE);
        vq.build_desc_chain(&[desc(0x1000_0000, 100, 0)]).unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let mut b = TxBatch::default();
        assert!(matches!(drain_tx(&mut q, &mem, &mut b), Err(RingError::Memory(_))));

        // A loop: descriptor 0 -> 1 -> 0.
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, QSIZE);
        let next = VRING_DESC_F_NEXT as u16;
        vq.add_desc_chains(
            &[
                RawDescriptor::from(Descriptor::new(DATA, 20, next, 1)),
                RawDescriptor::from(Descriptor::new(DATA + 100, 20, next, 0)),
            ],
            0,
        )
        .unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        assert!(matches!(drain_tx(&mut q, &mem, &mut b), Err(RingError::Chain)));

        // A next index outside the table.
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, QSIZE);
        vq.add_desc_chains(&[RawDescriptor::from(Descriptor::new(DATA, 20, next, QSIZE + 3))], 0)
            .unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        assert!(matches!(drain_tx(&mut q, &mem, &mut b), Err(RingError::Chain)));

        // An avail index far ahead of the queue size.
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, QSIZE);
        vq.avail().idx().store(u16::to_le(QSIZE + 5));
        let mut q: Queue = vq.create_queue().unwrap();
        assert!(matches!(drain_tx(&mut q, &mem, &mut b), Err(RingError::Queue(_))));
    }

    #[test]
    fn a_ring_not_ready_is_empty_not_malformed() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, QSIZE);
        let mut q: Queue = vq.create_queue().unwrap();
        q.set_ready(false);
        let mut b = TxBatch::default();
        assert_eq!(drain_tx(&mut q, &mem, &mut b).unwrap(), 0);
        assert_eq!(push_rx(&mut q, &mem, &frame(60), true).unwrap(), Pushed::NoRoom);
    }

    /// Used entry `i`: (head index, length written).
    fn used(vq: &MockSplitQueue<GuestMemoryMmap>, i: u16) -> (u16, u32) {
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
            let vq = MockSplitQueue::new(&mem, QSIZE);
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
            let mut q: Queue = vq.create_queue().unwrap();
            assert_eq!(push_rx(&mut q, &mem, &f, false).unwrap(), Pushed::Sent, "{sizes:?}");
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
        let vq = MockSplitQueue::new(&mem, QSIZE);
        let w = VRING_DESC_F_WRITE;
        // Four one-descriptor chains of 600 bytes.
        let descs: Vec<_> = (0..4).map(|i| desc(DATA + i * 0x1000, 600, w)).collect();
        vq.add_desc_chains(&descs, 0).unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        let f = frame(1514);
        // Without MRG_RXBUF it does not fit one chain: dropped, the chain given back.
        assert_eq!(push_rx(&mut q, &mem, &f, false).unwrap(), Pushed::TooBig);
        assert_eq!(q.next_avail(), 0);
        assert_eq!(push_rx(&mut q, &mem, &f, true).unwrap(), Pushed::Sent);
        assert_eq!(q.next_avail(), 3);
        assert_eq!(q.next_used(), 3);
        let lens: Vec<_> = (0..3).map(|i| used(&vq, i)).collect();
        assert_eq!(lens, vec![(0, 600), (1, 600), (2, (HDR_LEN + 1514 - 1200) as u32)]);
        let pieces: Vec<_> = (0..3).map(|i| (DATA + i * 0x1000, 600)).collect();
        let got = read(&mem, &pieces, HDR_LEN + 1514);
        assert_eq!(&got[NUM_BUFFERS_AT..HDR_LEN], &3u16.to_le_bytes());
        assert_eq!(&got[HDR_LEN..], &f[..]);
        // One 600-byte chain left: a second 1514-byte frame finds no room and takes nothing.
        assert_eq!(push_rx(&mut q, &mem, &f, true).unwrap(), Pushed::NoRoom);
        assert_eq!(q.next_avail(), 3);
        // A small frame still fits it.
        assert_eq!(push_rx(&mut q, &mem, &frame(60), true).unwrap(), Pushed::Sent);
        // Now the ring is full (no buffer posted): dropped.
        assert_eq!(push_rx(&mut q, &mem, &frame(60), true).unwrap(), Pushed::NoRoom);
    }

    #[test]
    fn malformed_rx_chains_are_errors() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, QSIZE);
        vq.build_desc_chain(&[desc(0x1000_0000, 2048, VRING_DESC_F_WRITE)])
            .unwrap();
        let mut q: Queue = vq.create_queue().unwrap();
        assert!(matches!(
            push_rx(&mut q, &mem, &frame(60), false),
            Err(RingError::Memory(_))
        ));
    }
}
