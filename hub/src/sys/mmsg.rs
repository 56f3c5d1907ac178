//! Batched datagram I/O for the datagram transports (multicast group, dgram
//! peers) and the hub's DNS listener: `recvmmsg(2)` takes up to [`RECV_BATCH`]
//! datagrams in one syscall and `sendmmsg(2)` sends a batch's datagrams, to
//! one destination or each to its own, in one syscall (through nix). Buffers,
//! headers and the `iovec` arrays are allocated once per socket, so a call
//! allocates nothing (tested in hub/tests/alloc_forwarding.rs).
//!
//! [`SendBatch::send_segmented`] also uses UDP generic segmentation offload
//! (`UDP_SEGMENT`, Linux 4.18, `udp(7)`): a run of datagrams of one length to
//! one address goes down the stack as one large datagram that the kernel cuts
//! into the original datagrams at the last moment (at the receiving socket on
//! loopback, in the driver or just before it otherwise), so the route lookup,
//! IP output and device queueing are paid once per run instead of once per
//! datagram. The receiver sees the same datagrams either way.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::ManuallyDrop;
use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::sys::socket::{recvmmsg, sendmmsg, sendmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrLike};

use crate::frame::MAX_FRAME_LEN;

/// Most datagrams one [`RecvBatch::recv`] takes (one `recvmmsg(2)`), and so
/// the most a port or DNS listener handles under one lock of the segment.
pub const RECV_BATCH: usize = 64;

/// Room for one datagram: a maximum frame plus one byte, so a longer datagram
/// shows as truncated instead of passing as a maximum one.
const SLOT: usize = MAX_FRAME_LEN + 1;

/// An empty vector with `v`'s allocation, for items of another lifetime (or
/// any type of the same size and alignment): the per-call vectors of slices
/// (`IoSlice`s, frame slices) live in the structs between calls this way, so a
/// call allocates nothing. The collect reuses the allocation in place (std's
/// in-place iteration for `vec::IntoIter` + `map`, same layout: an
/// optimization rather than a documented guarantee, which
/// hub/tests/alloc_forwarding.rs checks); nothing is ever mapped, since the
/// vector is empty.
pub(crate) fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    const { assert!(size_of::<T>() == size_of::<U>() && align_of::<T>() == align_of::<U>()) };
    v.clear();
    v.into_iter().map(|_| unreachable!("the vector is empty")).collect()
}

/// One received datagram: its length, its source, whether it was cut short.
#[derive(Clone, Copy)]
pub struct Meta<S> {
    /// Bytes received (at most the slot).
    pub len: usize,
    /// The sender's address, if the socket reported one.
    pub from: Option<S>,
    /// The datagram was longer than the slot (MSG_TRUNC): never a valid frame.
    pub truncated: bool,
}

/// nix's preallocated `mmsghdr` array. It holds raw pointers, which nix sets on
/// every call to buffers that the call borrows (and to the address array it owns),
/// so moving it to another thread between calls is sound.
struct Headers<S>(MultiHeaders<S>);

// SAFETY: see `Headers`: no pointer in it is used outside a call that borrows its targets.
unsafe impl<S: Send> Send for Headers<S> {}

/// Receive buffers and headers for `recvmmsg`, reused for every call.
pub struct RecvBatch<S> {
    bufs: Box<[u8]>,
    headers: Headers<S>,
    meta: Vec<Meta<S>>,
    /// The `iovec`s of one call, kept empty between calls (see [`recycle`]).
    iovs: Vec<[IoSliceMut<'static>; 1]>,
}

impl<S: SockaddrLike + Copy> Default for RecvBatch<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: SockaddrLike + Copy> RecvBatch<S> {
    /// Buffers for [`RECV_BATCH`] datagrams of up to 69633 bytes.
    pub fn new() -> Self {
        RecvBatch {
            bufs: vec![0u8; RECV_BATCH * SLOT].into_boxed_slice(),
            headers: Headers(MultiHeaders::preallocate(RECV_BATCH, None)),
            meta: Vec::with_capacity(RECV_BATCH),
            iovs: Vec::with_capacity(RECV_BATCH),
        }
    }

    /// Receives what is waiting on `fd` without blocking (up to [`RECV_BATCH`]
    /// datagrams) and returns how many arrived; read them with [`RecvBatch::get`].
    ///
    /// # Errors
    /// `WouldBlock` when nothing is waiting; any other socket error.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let RecvBatch {
            bufs,
            headers,
            meta,
            iovs: spare,
        } = self;
        meta.clear();
        // `recvmmsg` borrows the iovecs for as long as the buffers they point
        // to, so the vector cannot be moved back after the call: its
        // allocation is taken back by hand below instead.
        let mut iovs = ManuallyDrop::new(recycle::<_, [IoSliceMut<'_>; 1]>(std::mem::take(spare)));
        iovs.extend(bufs.chunks_exact_mut(SLOT).map(|c| [IoSliceMut::new(c)]));
        let (ptr, cap) = (iovs.as_mut_ptr(), iovs.capacity());
        let received = match recvmmsg(fd, &mut headers.0, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None) {
            Ok(results) => {
                for r in results {
                    meta.push(Meta {
                        len: r.bytes.min(SLOT),
                        from: r.address,
                        truncated: r.flags.contains(MsgFlags::MSG_TRUNC),
                    });
                }
                Ok(meta.len())
            }
            Err(e) => Err(io::Error::from(e)),
        };
        // SAFETY: `ptr` and `cap` are the allocation of `iovs`, a vector of the
        // same layout (`recycle`'s assertion) that is never dropped
        // (`ManuallyDrop`) nor used again; with length 0 no element of the old
        // lifetime is reachable, and `IoSliceMut` needs no drop.
        *spare = unsafe { Vec::from_raw_parts(ptr.cast::<[IoSliceMut<'static>; 1]>(), 0, cap) };
        received
    }

    /// Datagram `i` of the last [`RecvBatch::recv`]: its bytes and metadata.
    pub fn get(&self, i: usize) -> (&[u8], Meta<S>) {
        let m = self.meta[i];
        (&self.bufs[i * SLOT..i * SLOT + m.len], m)
    }
}

/// Headers for `sendmmsg`, reused for every call.
pub struct SendBatch<S> {
    headers: Headers<S>,
    addrs: Vec<Option<S>>,
    /// [`SendBatch::send_segmented`]: one run's datagrams back to back.
    run: Vec<u8>,
    /// [`SendBatch::send_segmented`]: the datagrams not in a run (indices).
    singles: Vec<usize>,
    /// Cleared when the socket or its route refuses `UDP_SEGMENT`.
    gso: bool,
    /// Longest datagram sent in a run, in bytes ([`SendBatch::with_segment_max`]).
    segment_max: usize,
    /// The `iovec`s of one `sendmmsg`, kept empty between calls (see [`recycle`]).
    iovs: Vec<[IoSlice<'static>; 1]>,
}

impl<S: SockaddrLike + Copy> SendBatch<S> {
    /// Room for [`SEND_BATCH`] datagrams per call.
    pub fn new() -> Self {
        SendBatch {
            headers: Headers(MultiHeaders::preallocate(SEND_BATCH, None)),
            addrs: Vec::with_capacity(SEND_BATCH),
            run: Vec::new(),
            singles: Vec::with_capacity(SEND_BATCH),
            gso: true,
            segment_max: GSO_SEGMENT_MAX,
            iovs: Vec::with_capacity(SEND_BATCH),
        }
    }

    /// Runs of [`SendBatch::send_segmented`] take datagrams up to `bytes`
    /// long (default [`GSO_SEGMENT_MAX`], capped at 65,507, the largest UDP
    /// payload over IPv4): for a socket whose route's MTU is known, e.g. a
    /// VXLAN port's underlay MTU less 28 bytes of IPv4 and UDP headers. A
    /// route that cannot carry them makes the kernel refuse segmentation, and
    /// the batch then sends datagram by datagram from then on.
    pub fn with_segment_max(mut self, bytes: usize) -> Self {
        self.segment_max = bytes.min(65_507);
        self
    }

    /// Sends each of `frames` as one datagram to `to` (or to the connected peer
    /// when `None`), in order, [`SEND_BATCH`] per syscall; returns how many went.
    ///
    /// # Errors
    /// The socket's error when not even the first datagram could be sent
    /// (`WouldBlock` when its buffer is full).
    pub fn send(&mut self, fd: RawFd, frames: &[&[u8]], to: Option<S>) -> io::Result<usize> {
        self.send_with(fd, frames.len(), |i| (frames[i], to))
    }

    /// Sends each datagram of `datagrams` to its own address, in order,
    /// [`SEND_BATCH`] per syscall; returns how many went.
    ///
    /// # Errors
    /// As [`SendBatch::send`].
    pub fn send_each(&mut self, fd: RawFd, datagrams: &[(&[u8], S)]) -> io::Result<usize> {
        self.send_with(fd, datagrams.len(), |i| (datagrams[i].0, Some(datagrams[i].1)))
    }

    /// Sends each datagram of `datagrams` to its own address, as
    /// [`SendBatch::send_each`] does, except that each run of consecutive
    /// datagrams of the same length (at most [`GSO_SEGMENT_MAX`] bytes, or
    /// [`SendBatch::with_segment_max`]'s) to the
    /// same address goes in one `sendmsg(2)` with `UDP_SEGMENT` (see the
    /// module's comment), up to [`GSO_SEGMENTS`] datagrams and [`GSO_BYTES`]
    /// per call. The rest go by `sendmmsg`, after the runs. Sort the datagrams
    /// by address and length first to make the runs long. For UDP sockets
    /// only. Returns how many datagrams went.
    ///
    /// When the kernel refuses segmentation for the socket or its route
    /// (`EINVAL`, `EIO`, `EMSGSIZE`, `ENOPROTOOPT`, `EOPNOTSUPP`: an old
    /// kernel, a route whose MTU is below the length, IPsec) the run goes
    /// datagram by datagram and this `SendBatch` stops trying it.
    ///
    /// # Errors
    /// As [`SendBatch::send`].
    pub fn send_segmented(&mut self, fd: RawFd, datagrams: &[(&[u8], S)]) -> io::Result<usize>
    where
        S: PartialEq,
    {
        let mut singles = std::mem::take(&mut self.singles);
        singles.clear();
        let (mut sent, mut first_err) = (0, None);
        let mut i = 0;
        while i < datagrams.len() {
            let (bytes, to) = datagrams[i];
            let len = bytes.len();
            let most = match len {
                l if l >= 1 && l <= self.segment_max && self.gso => GSO_SEGMENTS.min(GSO_BYTES / len),
                _ => 1,
            };
            let mut end = i + 1;
            while end < datagrams.len() && end - i < most && datagrams[end].0.len() == len && datagrams[end].1 == to {
                end += 1;
            }
            if end - i == 1 {
                singles.push(i);
                i = end;
                continue;
            }
            self.run.clear();
            for (b, _) in &datagrams[i..end] {
                self.run.extend_from_slice(b);
            }
            let segment = len as u16; // at most segment_max <= 65,507
            let cmsg = [ControlMessage::UdpGsoSegments(&segment)];
            match sendmsg(fd, &[IoSlice::new(&self.run)], &cmsg, MsgFlags::MSG_DONTWAIT, Some(&to)) {
                Ok(_) => sent += end - i,
                Err(Errno::EINVAL | Errno::EIO | Errno::EMSGSIZE | Errno::ENOPROTOOPT | Errno::EOPNOTSUPP) => {
                    self.gso = false;
                    singles.extend(i..end);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
            i = end;
        }
        let rest = self.send_with(fd, singles.len(), |j| {
            (datagrams[singles[j]].0, Some(datagrams[singles[j]].1))
        });
        self.singles = singles;
        sent += rest.as_ref().map_or(0, |n| *n);
        match (sent, rest, first_err) {
            (0, Err(e), _) => Err(e),
            (0, Ok(_), Some(e)) => Err(e.into()),
            _ => Ok(sent),
        }
    }

    fn send_with<'a>(
        &mut self,
        fd: RawFd,
        len: usize,
        item: impl Fn(usize) -> (&'a [u8], Option<S>),
    ) -> io::Result<usize> {
        let mut sent = 0;
        let mut slices: Vec<[IoSlice<'a>; 1]> = recycle(std::mem::take(&mut self.iovs));
        let mut failed = None;
        while sent < len {
            let end = (sent + SEND_BATCH).min(len);
            self.addrs.clear();
            slices.clear();
            for i in sent..end {
                let (bytes, to) = item(i);
                self.addrs.push(to);
                slices.push([IoSlice::new(bytes)]);
            }
            match sendmmsg(
                fd,
                &mut self.headers.0,
                slices.iter(),
                &self.addrs,
                [],
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(results) => {
                    let n = results.count();
                    sent += n;
                    if n < slices.len() {
                        break;
                    }
                }
                Err(e) if sent == 0 => {
                    failed = Some(e);
                    break;
                }
                Err(_) => break,
            }
        }
        self.iovs = recycle(slices);
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(sent),
        }
    }
}

impl<S: SockaddrLike + Copy> Default for SendBatch<S> {
    fn default() -> Self {
        Self::new()
    }
}

/// Most datagrams given to one `sendmmsg` call.
pub const SEND_BATCH: usize = 64;
/// Most datagrams in one `UDP_SEGMENT` send (the kernel's `UDP_MAX_SEGMENTS`,
/// 64 in every kernel that has `UDP_SEGMENT`; newer ones allow more).
pub const GSO_SEGMENTS: usize = 64;
/// Most bytes of datagrams in one `UDP_SEGMENT` send (a UDP payload over IPv4
/// is at most 65,507 bytes).
pub const GSO_BYTES: usize = 65_000;
/// Longest datagram sent in a run, in bytes: a segment must fit the route's
/// MTU, and 1,400 bytes plus IPv6 and UDP headers fit an Ethernet MTU.
pub const GSO_SEGMENT_MAX: usize = 1_400;

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::SockaddrStorage;

    use super::*;

    fn addr(s: &UdpSocket) -> SockaddrStorage {
        SockaddrStorage::from(s.local_addr().unwrap())
    }

    /// Every datagram waiting on `s`, in arrival order.
    fn drain(s: &UdpSocket) -> Vec<Vec<u8>> {
        s.set_nonblocking(true).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = s.recv(&mut buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }

    #[test]
    fn segmented_runs_arrive_as_the_original_datagrams() {
        let tx_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (a, b) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        let (to_a, to_b) = (addr(&a), addr(&b));
        // A run of 70 (more than one send's worth) of 100 bytes to a, a single
        // of 30 bytes to a, a run of 3 of 1,400 bytes to b, one too long for a run.
        let mut data: Vec<(Vec<u8>, SockaddrStorage)> = Vec::new();
        for i in 0..70u8 {
            data.push((vec![i; 100], to_a));
        }
        data.push((vec![200; 30], to_a));
        for i in 0..3u8 {
            data.push((vec![i; GSO_SEGMENT_MAX], to_b));
        }
        data.push((vec![9; GSO_SEGMENT_MAX + 1], to_b));
        let refs: Vec<(&[u8], SockaddrStorage)> = data.iter().map(|(d, t)| (d.as_slice(), *t)).collect();
        let mut tx = SendBatch::new();
        assert_eq!(tx.send_segmented(tx_sock.as_raw_fd(), &refs).unwrap(), data.len());
        assert!(tx.gso, "the kernel refused UDP_SEGMENT on loopback");

        let got_a = drain(&a);
        let want_a: Vec<Vec<u8>> = data[..71].iter().map(|(d, _)| d.clone()).collect();
        assert_eq!(got_a, want_a, "runs first, in order, then the single");
        let got_b = drain(&b);
        let want_b: Vec<Vec<u8>> = data[71..].iter().map(|(d, _)| d.clone()).collect();
        assert_eq!(got_b, want_b);
    }

    #[test]
    fn with_segment_max_full_size_datagrams_go_in_runs() {
        // A VXLAN port's 1514-byte frame is a 1,522-byte datagram: over the
        // default limit, within an underlay MTU of 1,550 less 28.
        let tx_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = addr(&a);
        let data: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 1_522]).collect();
        let refs: Vec<(&[u8], SockaddrStorage)> = data.iter().map(|d| (d.as_slice(), to)).collect();
        let mut tx = SendBatch::new().with_segment_max(1_550 - 28);
        // Only a run fills `run`: proof the datagrams went by UDP_SEGMENT.
        assert_eq!(tx.send_segmented(tx_sock.as_raw_fd(), &refs).unwrap(), 10);
        assert!(tx.gso && tx.run.len() == 10 * 1_522, "{}", tx.run.len());
        assert_eq!(drain(&a), data);
        // The default limit sends them one by one.
        let mut tx = SendBatch::new();
        assert_eq!(tx.send_segmented(tx_sock.as_raw_fd(), &refs).unwrap(), 10);
        assert!(tx.run.is_empty());
        assert_eq!(drain(&a), data);
    }

    #[test]
    fn segmented_send_without_runs_is_send_each() {
        let tx_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = addr(&a);
        let data: Vec<Vec<u8>> = (1..=5u8).map(|n| vec![n; usize::from(n)]).collect();
        let refs: Vec<(&[u8], SockaddrStorage)> = data.iter().map(|d| (d.as_slice(), to)).collect();
        let mut tx = SendBatch::new();
        assert_eq!(tx.send_segmented(tx_sock.as_raw_fd(), &refs).unwrap(), 5);
        assert_eq!(drain(&a), data);
    }

    #[test]
    fn a_refused_segmented_send_goes_datagram_by_datagram() {
        let tx_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        // SO_NO_CHECK (no UDP checksums): the kernel refuses UDP_SEGMENT with EINVAL.
        let one: libc::c_int = 1;
        // SAFETY: a valid socket and a c_int option value of the stated size.
        let rc = unsafe {
            libc::setsockopt(
                tx_sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NO_CHECK,
                (&raw const one).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = addr(&a);
        let data: Vec<Vec<u8>> = (0..10u8).map(|n| vec![n; 64]).collect();
        let refs: Vec<(&[u8], SockaddrStorage)> = data.iter().map(|d| (d.as_slice(), to)).collect();
        let mut tx = SendBatch::new();
        assert_eq!(tx.send_segmented(tx_sock.as_raw_fd(), &refs).unwrap(), 10);
        assert!(!tx.gso, "segmentation is off for this socket after a refusal");
        assert_eq!(drain(&a), data);
        // And later batches go by sendmmsg directly.
        assert_eq!(tx.send_segmented(tx_sock.as_raw_fd(), &refs).unwrap(), 10);
        assert_eq!(drain(&a), data);
    }
}
