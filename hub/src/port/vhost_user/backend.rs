//! The vhost-user-net backend of one port: what the device offers, the TX
//! virtqueue drained into the segment on each kick, and the RX virtqueue the
//! segment writes other ports' frames into ([`RxRing`], a
//! [`DirectTx`](crate::segment::DirectTx)).
//!
//! Built on rust-vmm's vhost-user-backend (the vhost-user protocol, memory
//! table, vring setup and its worker thread), following QEMU's
//! docs/interop/vhost-user.rst and VIRTIO 1.2 section 5.1 (network device).
//! Queue 0 is RX, queue 1 is TX (one queue pair).
//!
//! Locks: the TX ring is drained with its vring lock held, then released
//! before the segment's lock is taken; the segment, under its lock, takes the
//! RX vring lock of each vhost-user port it sends to. Nothing takes them in
//! the other order, so no two threads can wait on each other.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::VhostUserVirtioFeatures;
use vhost_user_backend::{ShutdownHandle, VhostUserBackend, VringMutex, VringT};
use virtio_bindings::bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::bindings::virtio_net::VIRTIO_NET_F_MRG_RXBUF;
use virtio_bindings::bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::QueueT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier};

use super::ring::{self, RingError, TxBatch};
use crate::segment::{DirectTx, LocalHost, Segment};
use crate::switch::PortId;

/// The guest memory the frontend shares (no dirty-page bitmap).
pub type Mem = GuestMemoryAtomic<GuestMemoryMmap>;
type Vring = VringMutex<Mem>;

/// Queue index of the RX virtqueue (device to guest).
const RX: usize = 0;
/// Queue index of the TX virtqueue (guest to device).
const TX: usize = 1;
/// Largest virtqueue the port accepts (QEMU's virtio-net default is 256, at most 1024).
const MAX_QUEUE_SIZE: usize = 1024;
/// No port id yet (the frontend connected, the port is being added).
const NO_PORT: usize = usize::MAX;

/// State of one vhost-user connection, shared by the backend (its worker
/// thread), the segment's [`RxRing`] and the port's thread.
pub(super) struct Shared<H> {
    pub(super) name: String,
    segment: Arc<Segment<H>>,
    pub(super) mem: Mem,
    port: AtomicUsize,
    /// The RX and TX vrings, known from the first event of the worker thread
    /// (vhost-user-backend creates them and hands them only to the backend's
    /// event handler; they live as long as the connection).
    rings: OnceLock<[Vring; 2]>,
    mrg_rxbuf: AtomicBool,
    /// The frontend sent its memory table (VHOST_USER_SET_MEM_TABLE).
    memory_shared: AtomicBool,
    tx: Mutex<TxBatch>,
    /// Set once the port must close (a malformed ring); the connection is shut down.
    broken: AtomicBool,
    shutdown: Mutex<Option<ShutdownHandle>>,
}

impl<H: LocalHost> Shared<H> {
    pub(super) fn new(name: String, segment: Arc<Segment<H>>) -> Arc<Self> {
        Arc::new(Shared {
            name,
            segment,
            mem: GuestMemoryAtomic::new(GuestMemoryMmap::new()),
            port: AtomicUsize::new(NO_PORT),
            rings: OnceLock::new(),
            mrg_rxbuf: AtomicBool::new(false),
            memory_shared: AtomicBool::new(false),
            tx: Mutex::new(TxBatch::default()),
            broken: AtomicBool::new(false),
            shutdown: Mutex::new(None),
        })
    }

    /// The connection is up: frames go to and come from port `id`; `shutdown` closes it.
    pub(super) fn attach(&self, id: PortId, shutdown: Option<ShutdownHandle>) {
        *self.shutdown.lock().unwrap_or_else(|e| e.into_inner()) = shutdown;
        self.port.store(id, Ordering::Release);
        if self.broken.load(Ordering::Acquire) {
            self.close();
        }
    }

    /// Whether the frontend ever shared its memory (QEMU cannot without
    /// `share=on` and says "Failed to set msg fds").
    pub(super) fn memory_shared(&self) -> bool {
        self.memory_shared.load(Ordering::Acquire)
    }

    /// Whether the port was closed for a malformed ring.
    pub(super) fn broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    fn close(&self) {
        if let Some(h) = self.shutdown.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            h.shutdown();
        }
    }

    /// A malformed ring: logs it, counts it and closes the connection (its
    /// port goes away as a closed stream client's does).
    fn fail(&self, what: &str, e: &RingError) {
        if !self.broken.swap(true, Ordering::AcqRel) {
            tracing::warn!(port = %self.name, error = %e, "malformed {what} virtqueue; closing the port");
            self.close();
        }
    }

    /// Drains the TX ring into the segment, one segment batch per
    /// [`ring::TX_BATCH_FRAMES`] frames, until the guest has posted nothing
    /// more (with EVENT_IDX the kick is re-armed and the ring read once more).
    fn handle_tx(&self, tx: &Vring) {
        let mut batch = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let mem = self.mem.memory();
            let taken = {
                let mut st = tx.get_mut();
                let q = st.get_queue_mut();
                let _ = q.disable_notification(&*mem);
                ring::drain_tx(q, &mem, &mut batch)
            };
            let taken = match taken {
                Ok(done) => {
                    if done.notify {
                        let _ = tx.signal_used_queue();
                    }
                    done.count
                }
                Err(e) => {
                    self.fail("TX", &e);
                    return;
                }
            };
            let port = self.port.load(Ordering::Acquire);
            if port != NO_PORT && (!batch.frames.is_empty() || batch.oversize > 0) {
                let mut b = self.segment.batch();
                if batch.oversize > 0 {
                    b.count_error(port, std::mem::take(&mut batch.oversize));
                }
                for i in 0..batch.frames.len() {
                    b.ingress(port, batch.frame(i));
                }
            }
            if taken == 0 {
                // Empty: ask for a kick, and read again if the guest posted meanwhile.
                match tx.enable_notification() {
                    Ok(true) => continue,
                    _ => return,
                }
            }
        }
    }
}

/// The [`VhostUserBackend`] of one connection (a handle on [`Shared`]).
pub(super) struct Backend<H>(pub(super) Arc<Shared<H>>);

impl<H> Clone for Backend<H> {
    fn clone(&self) -> Self {
        Backend(self.0.clone())
    }
}

impl<H: LocalHost> VhostUserBackend for Backend<H> {
    type Bitmap = ();
    type Vring = Vring;

    fn num_queues(&self) -> usize {
        2
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    /// VERSION_1, MRG_RXBUF, EVENT_IDX and vhost-user's PROTOCOL_FEATURES; no
    /// offloads (no checksum or segmentation engine to hand them to).
    fn features(&self) -> u64 {
        (1 << VIRTIO_F_VERSION_1)
            | (1 << VIRTIO_NET_F_MRG_RXBUF)
            | (1 << VIRTIO_RING_F_EVENT_IDX)
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn acked_features(&self, features: u64) {
        self.0
            .mrg_rxbuf
            .store(features & (1 << VIRTIO_NET_F_MRG_RXBUF) != 0, Ordering::Release);
    }

    /// REPLY_ACK, MQ (one queue pair) and CONFIGURE_MEM_SLOTS.
    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
    }

    fn set_event_idx(&self, _enabled: bool) {
        // The vrings track it (virtio-queue's Queue::set_event_idx).
    }

    fn update_memory(&self, _mem: Mem) -> io::Result<()> {
        // The same GuestMemoryAtomic was given to the daemon, which updates it.
        self.0.memory_shared.store(true, Ordering::Release);
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC).ok()
    }

    fn handle_event(&self, device_event: u16, _evset: EventSet, vrings: &[Vring], _thread_id: usize) -> io::Result<()> {
        if vrings.len() <= TX {
            return Ok(());
        }
        let pair = self.0.rings.get_or_init(|| [vrings[RX].clone(), vrings[TX].clone()]);
        if self.0.broken() {
            return Ok(());
        }
        // An RX kick (buffers posted) needs nothing: frames for a full ring were
        // dropped when they came, as on a switch's full egress queue.
        if usize::from(device_event) == TX {
            self.0.handle_tx(&pair[TX]);
        }
        Ok(())
    }
}

/// The segment's way into a vhost-user port: at the end of each batch the
/// frames queued for the port are written straight into the guest's RX
/// virtqueue (one lock, one pass over the ring, no syscall per frame), and the
/// guest is notified once.
pub(super) struct RxRing<H> {
    shared: Arc<Shared<H>>,
    /// Used entries of one batch (reused; grows to the queue size at most).
    used: Vec<(u16, u32)>,
}

impl<H> RxRing<H> {
    pub(super) fn new(shared: Arc<Shared<H>>) -> Self {
        RxRing {
            shared,
            used: Vec::with_capacity(MAX_QUEUE_SIZE),
        }
    }
}

impl<H: LocalHost> DirectTx for RxRing<H> {
    fn send_batch(&mut self, frames: &[&[u8]]) -> (usize, u64) {
        let s = &*self.shared;
        let Some(rings) = s.rings.get() else { return (0, 0) };
        if s.broken() {
            return (0, 0);
        }
        let mem = s.mem.memory();
        let r = {
            let mut st = rings[RX].get_mut();
            if !st.is_enabled() {
                return (0, 0);
            }
            let mrg = s.mrg_rxbuf.load(Ordering::Relaxed);
            ring::push_rx(st.get_queue_mut(), &mem, frames, mrg, &mut self.used)
        };
        match r {
            Ok(done) => {
                if done.notify {
                    let _ = rings[RX].signal_used_queue();
                }
                (done.count, done.bytes)
            }
            Err(e) => {
                s.fail("RX", &e);
                (0, 0)
            }
        }
    }
}
