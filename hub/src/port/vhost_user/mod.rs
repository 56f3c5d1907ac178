//! vhost-user ports: a QEMU guest's virtio-net device served by the hub over
//! shared memory (QEMU's `-netdev vhost-user`), one VM per unix socket, with
//! no root and no hugepages. Frames never cross the kernel: the hub copies
//! them out of the guest's TX virtqueue and into other guests' RX virtqueues
//! (ring.rs), waking a guest with one eventfd write per batch.
//!
//! Source: QEMU docs/interop/vhost-user.rst (the protocol; "Ring states":
//! rings start disabled until VHOST_USER_SET_VRING_ENABLE), QEMU
//! net/vhost-user.c (the netdev), VIRTIO 1.2 section 5.1 (the network device).
//! The protocol and vring plumbing are rust-vmm's vhost-user-backend
//! (backend.rs says what the device offers).
//!
//! Two roles, as QEMU's `-chardev socket` has:
//! - [`Listener`] (`--vhost-user PATH`): the hub listens and one QEMU connects
//!   (`-chardev socket,id=c,path=PATH,reconnect-ms=1000`). When the guest goes
//!   away the port is removed and the hub listens again on the same path, so a
//!   QEMU with `reconnect-ms` comes back after a hub restart.
//! - [`connect_loop`] (`--vhost-user-connect PATH`): QEMU listens
//!   (`-chardev socket,id=c,path=PATH,server=on,wait=off`) and the hub dials,
//!   again with backoff (0.1 s doubling to 1 s: QEMU's start waits for the
//!   backend to connect, so the wait is kept short) whenever QEMU is not there:
//!   the mode that survives a restart of either side, as Open vSwitch
//!   recommends.
//!
//! The guest's memory must be shared with the hub: `-object
//! memory-backend-memfd,id=mem,size=SIZE,share=on -numa node,memdev=mem`
//! (SIZE equal to `-m`). Without `share=on` QEMU cannot pass its memory
//! (it prints "Failed to set msg fds." and "vhost VQ 0 ring restore failed");
//! the hub then logs that the frontend never shared its memory, with the
//! lines above.
//!
//! Each connection is one switch port for as long as it lasts. A malformed
//! ring (a descriptor outside guest memory, a looping chain) closes that
//! connection, logged with the port; other ports do not notice. A full RX
//! ring (the guest posts buffers too slowly) drops frames and counts them on
//! the port, like a switch's full egress queue; a disabled ring (a guest
//! resetting its NIC) takes nothing and its TX is not read.

mod backend;
pub mod ring;
mod shim;

use std::io;
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use vhost_user_backend::VhostUserDaemon;

use self::backend::{Backend, RxRing, Shared};
use crate::segment::{Egress, LocalHost, Segment};
use crate::sys::{retry::Pacer, unix::clear_stale_socket};

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// A bound vhost-user socket, ready to [`Listener::spawn`].
pub struct Listener {
    path: PathBuf,
    listener: StdUnixListener,
}

impl Listener {
    /// Binds the unix socket `path` (a stale socket file is replaced, a live
    /// one is not: [`clear_stale_socket`]).
    ///
    /// # Errors
    /// The path is in use by a running process, is not a socket, or cannot
    /// be bound (its directory is missing, not writable, or the path is over
    /// 107 bytes).
    pub fn bind(path: &Path) -> io::Result<Self> {
        clear_stale_socket(path)?;
        Ok(Listener {
            path: path.to_owned(),
            listener: StdUnixListener::bind(path)?,
        })
    }

    /// Serves one frontend at a time on a thread of its own, forever: each
    /// connection is a port of `segment` until it closes, then the next
    /// frontend is accepted. Accept errors (out of descriptors) are logged,
    /// rate limited, and retried after a backoff.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn spawn<H: LocalHost>(self, segment: Arc<Segment<H>>) -> io::Result<thread::JoinHandle<()>> {
        let name = format!("vhost-user:{}", self.path.display());
        thread::Builder::new().name("vhost-user".into()).spawn(move || {
            let mut pacer = Pacer::new("vhost-user accept");
            loop {
                match self.listener.accept() {
                    Ok((qemu, _)) => {
                        pacer.ok();
                        serve(&segment, &name, qemu);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => thread::sleep(pacer.failed(&name, &e)),
                }
            }
        })
    }
}

/// Dials the frontend listening at `path` (QEMU's `server=on,wait=off`) and
/// serves it as a port of `segment`; dials again whenever it is absent or the
/// connection ends, backing off from 0.1 s to 1 s while it is absent (one log
/// line per outage). Runs on a thread of its own, forever.
///
/// # Errors
/// The thread could not be started.
pub fn connect_loop<H: LocalHost>(path: PathBuf, segment: Arc<Segment<H>>) -> io::Result<thread::JoinHandle<()>> {
    let name = format!("vhost-user-connect:{}", path.display());
    thread::Builder::new().name("vhost-user".into()).spawn(move || {
        let mut backoff = Duration::from_millis(100);
        let mut warned = false;
        loop {
            match UnixStream::connect(&path) {
                Ok(qemu) => {
                    backoff = Duration::from_millis(100);
                    warned = false;
                    serve(&segment, &name, qemu);
                }
                Err(e) if !warned => {
                    tracing::warn!(peer = %path.display(), error = %e, "cannot connect yet; retrying with backoff");
                    warned = true;
                }
                Err(_) => {}
            }
            thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    })
}

/// One connection (`qemu`, accepted or dialed): a rust-vmm vhost-user daemon
/// behind the [`shim`], and a port of `segment` while the frontend stays.
fn serve<H: LocalHost>(segment: &Arc<Segment<H>>, name: &str, qemu: UnixStream) {
    let shared = Shared::new(name.to_string(), segment.clone());
    let started = (|| {
        let mut daemon =
            VhostUserDaemon::new(name.to_string(), Backend(shared.clone()), shared.mem.clone()).map_err(io_err)?;
        let (mut listener, ours) = shim::private_pair()?;
        let relay = shim::relay(qemu, ours)?;
        daemon.start(&mut listener).map_err(io_err)?;
        Ok::<_, io::Error>((daemon, relay))
    })();
    match started {
        Ok((daemon, relay)) => {
            run(segment, daemon, &shared);
            let _ = relay.join();
        }
        Err(e) => tracing::warn!(port = %name, error = %e, "cannot serve the vhost-user connection"),
    }
}

/// One connection: a port of `segment` while the frontend stays; removed,
/// with the MACs learned on it, when the socket closes (the guest died, reset
/// its device's connection, or the port was closed for a malformed ring).
fn run<H: LocalHost>(segment: &Arc<Segment<H>>, mut daemon: VhostUserDaemon<Backend<H>>, shared: &Arc<Shared<H>>) {
    let (id, _) = segment.add_port(
        shared.name.clone(),
        Egress::Direct(Box::new(RxRing::new(shared.clone()))),
    );
    shared.attach(id, daemon.shutdown_handle());
    tracing::info!(port = %shared.name, id, "vhost-user frontend connected");
    let result = daemon.wait();
    let stats = segment.remove_port(id).unwrap_or_default();
    use vhost::vhost_user::Error as Proto;
    use vhost_user_backend::Error::HandleRequest;
    let why = match (&result, shared.broken()) {
        (_, true) => "closed: malformed virtqueue".to_string(),
        (Ok(()) | Err(HandleRequest(Proto::Disconnected | Proto::PartialMessage)), _) => {
            "frontend went away".to_string()
        }
        (Err(e), _) => format!("connection ended: {e}"),
    };
    tracing::info!(
        port = %shared.name, id, rx = stats.rx_frames, tx = stats.tx_frames, drops = stats.drops,
        errors = stats.errors, "vhost-user port removed ({why})"
    );
    if result.is_err() && !shared.memory_shared() {
        tracing::warn!(
            port = %shared.name,
            "the frontend never shared its memory: give QEMU -object memory-backend-memfd,id=mem,size=SIZE,share=on \
             -numa node,memdev=mem (SIZE equal to -m)"
        );
    }
    // Dropping the daemon stops and joins its vring worker thread.
    drop(daemon);
}
