//! Batched datagram I/O for the datagram transports (multicast group, dgram
//! peers) and the hub's DNS listener: `recvmmsg(2)` takes up to [`RECV_BATCH`]
//! datagrams in one syscall and `sendmmsg(2)` sends a batch's datagrams, to
//! one destination or each to its own, in one syscall (through nix). Buffers
//! and headers are allocated once per socket.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::RawFd;

use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrLike};

use super::RECV_BATCH;
use crate::frame::MAX_FRAME_LEN;

/// Room for one datagram: a maximum frame plus one byte, so a longer datagram
/// shows as truncated instead of passing as a maximum one.
const SLOT: usize = MAX_FRAME_LEN + 1;

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
        }
    }

    /// Receives what is waiting on `fd` without blocking (up to [`RECV_BATCH`]
    /// datagrams) and returns how many arrived; read them with [`RecvBatch::get`].
    ///
    /// # Errors
    /// `WouldBlock` when nothing is waiting; any other socket error.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let RecvBatch { bufs, headers, meta } = self;
        meta.clear();
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs.chunks_exact_mut(SLOT).map(|c| [IoSliceMut::new(c)]).collect();
        let results =
            recvmmsg(fd, &mut headers.0, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None).map_err(io::Error::from)?;
        for r in results {
            meta.push(Meta {
                len: r.bytes.min(SLOT),
                from: r.address,
                truncated: r.flags.contains(MsgFlags::MSG_TRUNC),
            });
        }
        Ok(meta.len())
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
}

impl<S: SockaddrLike + Copy> SendBatch<S> {
    /// Room for [`SEND_BATCH`] datagrams per call.
    pub fn new() -> Self {
        SendBatch {
            headers: Headers(MultiHeaders::preallocate(SEND_BATCH, None)),
            addrs: Vec::with_capacity(SEND_BATCH),
        }
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

    fn send_with<'a>(
        &mut self,
        fd: RawFd,
        len: usize,
        item: impl Fn(usize) -> (&'a [u8], Option<S>),
    ) -> io::Result<usize> {
        let mut sent = 0;
        while sent < len {
            let end = (sent + SEND_BATCH).min(len);
            self.addrs.clear();
            let slices: Vec<[IoSlice<'_>; 1]> = (sent..end)
                .map(|i| {
                    let (bytes, to) = item(i);
                    self.addrs.push(to);
                    [IoSlice::new(bytes)]
                })
                .collect();
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
                Err(e) if sent == 0 => return Err(e.into()),
                Err(_) => break,
            }
        }
        Ok(sent)
    }
}

impl<S: SockaddrLike + Copy> Default for SendBatch<S> {
    fn default() -> Self {
        Self::new()
    }
}

/// Most datagrams given to one `sendmmsg` call.
pub const SEND_BATCH: usize = 64;
