//! One switched segment: the [`Switch`], the hub's own host on it, and the
//! transmit halves of the ports. Port receive loops call [`Segment::ingress`]
//! with each frame they read; the segment decides (switch.rs) and writes the
//! frame to the chosen ports with non-blocking sends, so the forwarding path
//! does no heap allocation and never waits on a slow port (a full socket
//! buffer drops the frame and counts it, like a switch's full egress queue).
//!
//! The hub's own host (ARP, ICMP, DHCP, DNS in the dhcpdns crate) is port 0,
//! [`HOST_PORT`]: it sees every flooded frame and every frame to its MAC, and
//! its replies go through the switch like any station's.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::frame::{Frame, MacAddr};
use crate::switch::{Decision, PortId, Switch};

/// The port id of the hub's own host.
pub const HOST_PORT: PortId = 0;

/// The hub's own host on the segment, as the segment drives it (sans-IO).
pub trait LocalHost: Send + 'static {
    /// The host's MAC address; frames to it are delivered to the host only.
    fn mac(&self) -> MacAddr;
    /// Handles one received frame (already at least 14 bytes), pushing any frames
    /// to send into `out`. Malformed packets are dropped and counted by the host.
    fn handle_frame(&mut self, frame: &[u8], out: &mut Vec<Vec<u8>>);
    /// Periodic housekeeping (lease expiry); called about once a second.
    fn tick(&mut self) {}
    /// One line of the host's own counters for [`Segment::report`] (empty: none).
    fn report(&self) -> String {
        String::new()
    }
}

/// The transmit half of a port: writes one whole frame, without blocking.
pub trait PortTx: Send + Sync + 'static {
    /// Sends `frame` (14..=69632 bytes, never empty).
    ///
    /// # Errors
    /// The socket's error; `WouldBlock` when its buffer is full (the frame is dropped).
    fn send(&self, frame: &[u8]) -> io::Result<()>;
}

/// Per-port counters (frames and bytes, since start).
#[derive(Debug, Default)]
pub struct PortStats {
    /// Frames received from the port.
    pub rx_frames: AtomicU64,
    /// Bytes received from the port (Ethernet header included).
    pub rx_bytes: AtomicU64,
    /// Frames sent to the port.
    pub tx_frames: AtomicU64,
    /// Bytes sent to the port.
    pub tx_bytes: AtomicU64,
    /// Frames not delivered: the port's send buffer was full, or received frames
    /// dropped on purpose (our own multicast echo, a group source MAC).
    pub drops: AtomicU64,
    /// Malformed input (a frame under 14 bytes or over 69632) and send errors.
    pub errors: AtomicU64,
}

impl PortStats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one drop.
    pub fn drop_one(&self) {
        Self::add(&self.drops, 1);
    }

    /// Counts one error.
    pub fn error_one(&self) {
        Self::add(&self.errors, 1);
    }

    /// The counters as plain numbers: (rx_frames, rx_bytes, tx_frames, tx_bytes, drops, errors).
    pub fn snapshot(&self) -> [u64; 6] {
        [
            &self.rx_frames,
            &self.rx_bytes,
            &self.tx_frames,
            &self.tx_bytes,
            &self.drops,
            &self.errors,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

/// A port as the segment knows it: a name for logs and stats, its transmit half, its counters.
pub struct Port {
    /// Human-readable name, e.g. `mcast:230.0.0.1:1234`.
    pub name: String,
    tx: Option<Arc<dyn PortTx>>,
    /// The port's counters.
    pub stats: PortStats,
}

struct Inner<H> {
    switch: Switch,
    host: H,
    host_out: Vec<Vec<u8>>,
}

/// A switched segment with its host `H`; shared by the port tasks behind an `Arc`.
pub struct Segment<H> {
    inner: Mutex<Inner<H>>,
    ports: Vec<Port>,
    host_mac: MacAddr,
}

impl<H: LocalHost> Segment<H> {
    /// A segment with `host` as port 0 and `ports` (name, transmit half) as ports 1, 2, ...
    pub fn new(host: H, switch: Switch, ports: Vec<(String, Arc<dyn PortTx>)>) -> Self {
        let mut all = vec![Port {
            name: "host".to_string(),
            tx: None,
            stats: PortStats::default(),
        }];
        all.extend(ports.into_iter().map(|(name, tx)| Port {
            name,
            tx: Some(tx),
            stats: PortStats::default(),
        }));
        Segment {
            host_mac: host.mac(),
            inner: Mutex::new(Inner {
                switch,
                host,
                host_out: Vec::new(),
            }),
            ports: all,
        }
    }

    /// The ports, index = [`PortId`] (0 is the host).
    pub fn ports(&self) -> &[Port] {
        &self.ports
    }

    fn lock(&self) -> MutexGuard<'_, Inner<H>> {
        // A panic while holding the lock would be a bug; keep serving rather than cascade.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the host (for example to answer a DNS query that came from the host side).
    pub fn with_host<R>(&self, f: impl FnOnce(&mut H) -> R) -> R {
        f(&mut self.lock().host)
    }

    /// Switches one frame received on `in_port`: malformed frames are counted and dropped.
    pub fn ingress(&self, in_port: PortId, bytes: &[u8]) {
        let stats = &self.ports[in_port].stats;
        PortStats::add(&stats.rx_frames, 1);
        PortStats::add(&stats.rx_bytes, bytes.len() as u64);
        let frame = match Frame::new(bytes) {
            Ok(f) => f,
            Err(_) => return stats.error_one(),
        };
        let now = Instant::now();
        let mut guard = self.lock();
        let inner = &mut *guard;
        let decision = inner.switch.decide(in_port, &frame, now);
        let to_host = match self.route(in_port, &frame, decision) {
            Some(to_host) => to_host,
            None => return stats.drop_one(),
        };
        if to_host && in_port != HOST_PORT {
            let mut out = std::mem::take(&mut inner.host_out);
            inner.host.handle_frame(bytes, &mut out);
            for reply in out.drain(..) {
                if let Ok(f) = Frame::new(&reply) {
                    let d = inner.switch.decide(HOST_PORT, &f, now);
                    self.route(HOST_PORT, &f, d);
                }
            }
            inner.host_out = out;
        }
    }

    /// Carries out `decision` for the non-host ports; returns whether the host
    /// must see the frame too, or `None` when the frame is dropped.
    fn route(&self, in_port: PortId, frame: &Frame<'_>, decision: Decision) -> Option<bool> {
        if frame.dst() == self.host_mac {
            return Some(true);
        }
        match decision {
            Decision::Unicast(HOST_PORT) => Some(true),
            Decision::Unicast(p) => {
                self.transmit(p, frame.as_bytes());
                Some(false)
            }
            Decision::Flood => {
                for p in 1..self.ports.len() {
                    if p != in_port {
                        self.transmit(p, frame.as_bytes());
                    }
                }
                Some(true)
            }
            Decision::Filter => Some(false),
            Decision::DropInvalidSource => None,
        }
    }

    fn transmit(&self, port: PortId, bytes: &[u8]) {
        let p = &self.ports[port];
        let Some(tx) = &p.tx else { return };
        match tx.send(bytes) {
            Ok(()) => {
                PortStats::add(&p.stats.tx_frames, 1);
                PortStats::add(&p.stats.tx_bytes, bytes.len() as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => p.stats.drop_one(),
            Err(_) => p.stats.error_one(),
        }
    }

    /// Housekeeping, about once a second: ages the MAC table, lets the host expire leases.
    pub fn tick(&self) {
        let mut inner = self.lock();
        inner.switch.age(Instant::now());
        inner.host.tick();
    }

    /// A printable report: one line per port with its counters, then the MAC table.
    pub fn report(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        for (i, p) in self.ports.iter().enumerate() {
            let [rf, rb, tf, tb, d, e] = p.stats.snapshot();
            let _ = writeln!(
                s,
                "port {i} {}: rx {rf} frames {rb} bytes, tx {tf} frames {tb} bytes, drops {d}, errors {e}",
                p.name
            );
        }
        let inner = self.lock();
        let host = inner.host.report();
        if !host.is_empty() {
            let _ = writeln!(s, "host {host}");
        }
        for (mac, port, idle) in inner.switch.entries(Instant::now()) {
            let _ = writeln!(s, "mac {mac} port {port} idle {}s", idle.as_secs());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Recorder(Mutex<Vec<Vec<u8>>>);
    impl PortTx for Recorder {
        fn send(&self, frame: &[u8]) -> io::Result<()> {
            self.0.lock().unwrap().push(frame.to_vec());
            Ok(())
        }
    }

    /// A host that answers every frame to its MAC with one frame back to the sender.
    struct EchoHost(Arc<AtomicUsize>);
    const HOST_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    impl LocalHost for EchoHost {
        fn mac(&self) -> MacAddr {
            HOST_MAC
        }
        fn handle_frame(&mut self, frame: &[u8], out: &mut Vec<Vec<u8>>) {
            self.0.fetch_add(1, Ordering::Relaxed);
            if frame[0..6] == HOST_MAC.0 {
                let mut r = frame.to_vec();
                r[0..6].copy_from_slice(&frame[6..12]);
                r[6..12].copy_from_slice(&HOST_MAC.0);
                out.push(r);
            }
        }
    }

    fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[0..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f
    }

    #[test]
    fn host_replies_are_switched_and_floods_skip_ingress() {
        let seen = Arc::new(AtomicUsize::new(0));
        let p1 = Arc::new(Recorder(Mutex::new(vec![])));
        let p2 = Arc::new(Recorder(Mutex::new(vec![])));
        let seg = Segment::new(
            EchoHost(seen.clone()),
            Switch::default(),
            vec![
                ("p1".into(), p1.clone() as Arc<dyn PortTx>),
                ("p2".into(), p2.clone() as _),
            ],
        );
        let a = [0, 0, 0, 0x11, 0x11, 0x11];
        // Broadcast from port 1: flooded to port 2 only, and seen by the host.
        seg.ingress(1, &frame([0xff; 6], a));
        assert_eq!(p1.0.lock().unwrap().len(), 0);
        assert_eq!(p2.0.lock().unwrap().len(), 1);
        assert_eq!(seen.load(Ordering::Relaxed), 1);
        // To the host: the host's reply goes back to port 1 only (A was learned there).
        seg.ingress(1, &frame(HOST_MAC.0, a));
        assert_eq!(p1.0.lock().unwrap().len(), 1);
        assert_eq!(p2.0.lock().unwrap().len(), 1);
        // A runt counts as an error on the ingress port, reaching nobody.
        seg.ingress(2, &[1, 2, 3]);
        assert_eq!(seg.ports()[2].stats.snapshot()[5], 1);
        assert!(seg.report().contains("mac 00:00:00:11:11:11 port 1"));
    }
}
