//! A pass-through between a QEMU vhost-user connection and rust-vmm's request
//! handler, so that QEMU's virtio-net can talk to it.
//!
//! Why: QEMU's virtio-net sends VHOST_USER_SET_VRING_ENABLE when the device is
//! reset (hw/net/virtio-net.c `peer_attach`), before any
//! VHOST_USER_SET_FEATURES, once the backend offered PROTOCOL_FEATURES; and
//! QEMU's vhost-user net cannot start without PROTOCOL_FEATURES
//! (hw/virtio/vhost-user.c `vhost_user_set_vring_enable` fails with EINVAL,
//! "unable to start vhost net: 22"). rust-vmm's vhost 0.18
//! (`BackendReqHandler`) refuses SET_VRING_ENABLE until SET_FEATURES acked
//! PROTOCOL_FEATURES and drops the connection. The message sequence seen from
//! QEMU 10.0: GET_FEATURES, GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES,
//! GET_QUEUE_NUM, GET_MAX_MEM_SLOTS, SET_OWNER, GET_FEATURES, SET_VRING_CALL,
//! SET_VRING_ERR (twice), SET_VRING_ENABLE.
//!
//! What: the handler is given one end of a private connection; the shim first
//! writes it one VHOST_USER_SET_FEATURES carrying only PROTOCOL_FEATURES (no
//! reply requested; QEMU's own SET_FEATURES replaces it when the device
//! starts), then relays whole messages both ways, each with the file
//! descriptors that came with it (SCM_RIGHTS: memory regions, kick and call
//! eventfds). A byte stream may glue a message without descriptors to the
//! next one with them, so the shim reads message by message (header, then the
//! size it gives) rather than chunk by chunk. Only control messages pass here;
//! frames go through shared memory. When either side closes, both are shut
//! down.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// VHOST_USER_SET_FEATURES (docs/interop/vhost-user.rst, "Front-end message types").
const SET_FEATURES: u32 = 2;
/// Header flags: protocol version 1, no reply wanted.
const VERSION_1: u32 = 0x1;
/// VHOST_USER_F_PROTOCOL_FEATURES.
const PROTOCOL_FEATURES: u64 = 1 << 30;
/// Length of a vhost-user message header in bytes.
const HEADER: usize = 12;
/// Most descriptors one vhost-user message carries (VHOST_MEMORY_BASELINE_NREGIONS is 8).
const MAX_FDS: usize = 32;

/// The first message the handler reads: SET_FEATURES(PROTOCOL_FEATURES), in
/// the wire layout (u32 request, u32 flags, u32 size, then the u64; little endian).
fn set_protocol_features() -> [u8; 20] {
    let mut m = [0u8; 20];
    m[0..4].copy_from_slice(&SET_FEATURES.to_le_bytes());
    m[4..8].copy_from_slice(&VERSION_1.to_le_bytes());
    m[8..12].copy_from_slice(&8u32.to_le_bytes());
    m[12..20].copy_from_slice(&PROTOCOL_FEATURES.to_le_bytes());
    m
}

/// A private listener for the request handler to accept on, with our end
/// already connected: an abstract unix socket (no file), named after the
/// process and a counter.
///
/// # Errors
/// Binding or connecting the abstract socket failed (out of descriptors).
pub(super) fn private_pair() -> io::Result<(vhost::vhost_user::Listener, UnixStream)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "vmlan-vhost-user-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
    let listener = UnixListener::bind_addr(&addr)?;
    let ours = UnixStream::connect_addr(&addr)?;
    Ok((vhost::vhost_user::Listener::from(listener), ours))
}

/// Starts relaying between `qemu` and `handler` (our end of [`private_pair`])
/// on a thread of its own, after writing the SET_FEATURES message above.
///
/// # Errors
/// The first write failed or the thread could not be started.
pub(super) fn relay(qemu: UnixStream, mut handler: UnixStream) -> io::Result<thread::JoinHandle<()>> {
    handler.write_all(&set_protocol_features())?;
    thread::Builder::new().name("vhost-user-relay".into()).spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut fds = [
                PollFd::new(qemu.as_fd(), PollFlags::POLLIN),
                PollFd::new(handler.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
            let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
            if ready[0] && !forward(&qemu, &handler, &mut buf) {
                break;
            }
            if ready[1] && !forward(&handler, &qemu, &mut buf) {
                break;
            }
        }
        let _ = qemu.shutdown(std::net::Shutdown::Both);
        let _ = handler.shutdown(std::net::Shutdown::Both);
    })
}

/// Moves one whole vhost-user message (12-byte header, then `size` bytes of
/// payload, with the descriptors that came with its header) from `from` to
/// `to`, sent with one `sendmsg` so its descriptors stay with its first byte;
/// `false` when `from` closed, sent something that is not a message, or
/// either side failed.
fn forward(from: &UnixStream, to: &UnixStream, buf: &mut [u8]) -> bool {
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (mut got, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf[..HEADER])];
        let msg = match recvmsg::<()>(from.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(m) => m,
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => return true,
            Err(_) => return false,
        };
        let mut fds: Vec<OwnedFd> = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    // SAFETY: the kernel just installed these descriptors for us; we own them.
                    fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                }
            }
        }
        (msg.bytes, fds)
    };
    if got == 0 {
        return false;
    }
    let mut reader = from;
    if reader.read_exact(&mut buf[got..HEADER]).is_err() {
        return false;
    }
    got = HEADER;
    let size = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize;
    if size > buf.len() - HEADER || reader.read_exact(&mut buf[got..HEADER + size]).is_err() {
        return false;
    }
    let n = HEADER + size;
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let mut sent = 0;
    while sent < n {
        let iov = [IoSlice::new(&buf[sent..n])];
        let cmsg = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage<'_>] = if sent == 0 && !raw.is_empty() { &cmsg } else { &[] };
        match sendmsg::<()>(to.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(k) => sent += k,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
    // Our copies of the descriptors close here; the receiver has its own.
    drop(fds);
    true
}
