//! The tap port: bridges the segment to a host tap device, so the host (and
//! anything routed through it) reaches the VMs without a bridge. Opens the tap
//! with IFF_TAP|IFF_NO_PI through tokio-tun; each read or write is one frame.
//!
//! Unprivileged use: create a persistent tap owned by the user once
//! (`ip tuntap add dev NAME mode tap user USER`, `ip link set NAME up`); the hub
//! then opens it without any capability. With CAP_NET_ADMIN the hub may create
//! the tap itself and brings the link up; without it, it never tries, and tells
//! the user the command to run if the link is down.

use std::io;
use std::sync::Arc;

use tokio_tun::Tun;

use crate::frame::MAX_FRAME_LEN;
use crate::segment::{DatagramTx, Egress, LocalHost, Segment};
use crate::sys::{mmsg::RECV_BATCH, retry::Pacer};

/// An open tap, ready to [`TapPort::run`].
pub struct TapPort {
    tun: Arc<Tun>,
    name: String,
}

struct TapTx(Arc<Tun>);

impl DatagramTx for TapTx {
    /// One write per frame: a tap takes no batches.
    fn send_batch(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        for (i, f) in frames.iter().enumerate() {
            if let Err(e) = self.0.try_send(f) {
                return if i == 0 { Err(e) } else { Ok(i) };
            }
        }
        Ok(frames.len())
    }
}

/// True if this process holds CAP_NET_ADMIN (bit 12 of CapEff in /proc/self/status).
pub fn has_net_admin() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << 12) != 0)
}

/// Opens the tap `name`. Must be called inside a tokio runtime.
///
/// # Errors
/// The open error, with the commands that create a tap the user may open.
pub fn open(name: &str) -> io::Result<TapPort> {
    let admin = has_net_admin();
    let mut b = Tun::builder().name(name).tap();
    if admin {
        b = b.up();
    }
    let tun = b.build().map_err(|e| {
        io::Error::other(format!(
            "{e}; create the tap for your user first: ip tuntap add dev {name} mode tap user $USER && ip link set {name} up"
        ))
    })?;
    let tun = tun.into_iter().next().ok_or_else(|| io::Error::other("no tap queue"))?;
    if !admin && tun.flags().is_ok_and(|f| f & libc::IFF_UP as i16 == 0) {
        tracing::warn!(tap = name, "the tap's link is down; run: ip link set {name} up");
    }
    Ok(TapPort {
        tun: Arc::new(tun),
        name: name.to_string(),
    })
}

impl TapPort {
    /// Adds the tap to `segment` as a port and switches every frame read from it.
    ///
    /// An interrupted read is retried at once; any other read error is logged,
    /// rate limited, and followed by a backoff from 1 ms doubling to 1 s
    /// ([`crate::sys::retry`]), so the port never spins nor stops.
    ///
    /// # Errors
    /// None: it returns only when its task is dropped (the hub's shutdown).
    pub async fn run<H: LocalHost>(self, segment: Arc<Segment<H>>) -> io::Result<()> {
        let (id, _) = segment.add_port(
            format!("tap:{}", self.name),
            Egress::Datagram(Box::new(TapTx(self.tun.clone()))),
        );
        let mut buf = vec![0u8; MAX_FRAME_LEN + 1];
        let at = format!("tap:{}", self.name);
        let mut pacer = Pacer::new("reading the tap");
        loop {
            let received = self.tun.recv(&mut buf).await;
            let Some(n) = pacer.settle(&at, received).await else {
                continue;
            };
            let mut batch = segment.batch();
            batch.ingress(id, &buf[..n]);
            for _ in 1..RECV_BATCH {
                match self.tun.try_recv(&mut buf) {
                    Ok(n) => batch.ingress(id, &buf[..n]),
                    Err(_) => break,
                }
            }
        }
    }
}
