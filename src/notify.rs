//! `vmlan hub --notification unix:PATH`: gvproxy's (gvisor-tap-vsock)
//! notification socket. Each notification is one JSON object and a newline,
//! `{"notification_type": TYPE, "mac_address": MAC}` (`mac_address` left out
//! when empty), written on a new unix stream connection to PATH that is then
//! closed, as gvproxy's `pkg/notification` sender does. Types and when they
//! are sent, as gvproxy does:
//! - `ready`: once, when every port is open and the hub serves;
//! - `connection_established`: a MAC seen for the first time on the segment
//!   (gvproxy: a source MAC not yet in its CAM);
//! - `connection_closed`: for each MAC seen on a port, when that port is
//!   removed (gvproxy: its CAM entries of a connection that ended).
//!
//! gvproxy's `hypervisor_error` (its vfkit/QEMU/vsock listener failed) is not
//! sent: vmlan's ports are opened before `ready`, and a port that fails at
//! start stops the hub. Like gvproxy's CAM, the MACs known here do not age
//! (an idle MAC re-learned by the switch is not announced again); they are at
//! most [`MAX_MACS`]. The notifications come from the event channel
//! (src/api/events.rs) on the hub's runtime; a peer that is not listening
//! costs a logged warning, a connection or write that takes more than
//! [`TIMEOUT`] is abandoned, and the segment never waits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;
use vmlan_hub::MacAddr;

use crate::api::events::{Event, Kind};

/// Most MACs remembered for `connection_closed`; past it new MACs are not announced.
pub const MAX_MACS: usize = 65536;

/// Longest a connection and write to the notification socket may take.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Where `--notification` sends: `unix:PATH` (gvproxy also takes `unix://PATH`).
///
/// # Errors
/// Anything else, naming the flag.
pub fn parse_addr(v: &str) -> Result<PathBuf> {
    let p = v.strip_prefix("unix://").or_else(|| v.strip_prefix("unix:"));
    match p {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => bail!("--notification {v}: expected unix:PATH (a unix socket another program listens on)"),
    }
}

/// One notification's JSON: `{"notification_type", "mac_address"?}`.
pub fn message(kind: &str, mac: Option<MacAddr>) -> Value {
    match mac {
        Some(m) => json!({"notification_type": kind, "mac_address": m.to_string()}),
        None => json!({"notification_type": kind}),
    }
}

/// The notifications events call for, with the MACs known per port.
#[derive(Debug, Default)]
pub struct Notifier {
    macs: HashMap<MacAddr, usize>,
}

impl Notifier {
    /// The notifications `e` calls for (none for most events).
    pub fn on_event(&mut self, e: &Event) -> Vec<Value> {
        match &e.kind {
            Kind::Mac {
                event: "learned" | "moved",
                mac,
                port,
                ..
            } if *port != vmlan_hub::HOST_PORT => {
                let known = self.macs.contains_key(mac);
                if known || self.macs.len() < MAX_MACS {
                    self.macs.insert(*mac, *port);
                }
                if known || self.macs.len() > MAX_MACS {
                    return Vec::new();
                }
                vec![message("connection_established", Some(*mac))]
            }
            Kind::Port { up: false, id, .. } => {
                let gone: Vec<MacAddr> = self.macs.iter().filter(|(_, p)| *p == id).map(|(m, _)| *m).collect();
                let mut out = Vec::new();
                for m in gone {
                    self.macs.remove(&m);
                    out.push(message("connection_closed", Some(m)));
                }
                out.sort_by(|a, b| a["mac_address"].as_str().cmp(&b["mac_address"].as_str()));
                out
            }
            _ => Vec::new(),
        }
    }
}

/// Writes one notification to `path` on a connection of its own.
async fn send(path: &Path, v: &Value) {
    let mut line = serde_json::to_vec(v).unwrap_or_default();
    line.push(b'\n');
    let attempt = async {
        let mut s = tokio::net::UnixStream::connect(path).await?;
        s.write_all(&line).await?;
        s.shutdown().await
    };
    match tokio::time::timeout(TIMEOUT, attempt).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(path = %path.display(), error = %e, "--notification: cannot send"),
        Err(_) => tracing::warn!(path = %path.display(), "--notification: timed out"),
    }
}

/// Sends `ready`, then the notifications of the events from `rx`, in order,
/// until the channel closes (a task on the hub's runtime).
pub async fn run(path: PathBuf, mut rx: broadcast::Receiver<Arc<Event>>) {
    send(&path, &message("ready", None)).await;
    let mut n = Notifier::default();
    loop {
        match rx.recv().await {
            Ok(e) => {
                for v in n.on_event(&e) {
                    send(&path, &v).await;
                }
            }
            Err(broadcast::error::RecvError::Lagged(k)) => {
                tracing::warn!(missed = k, "--notification: events missed (the socket is slow)");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmlan_hub::SegmentEvent;

    #[test]
    fn gvproxy_shapes_and_when() {
        let a = MacAddr([0x5a, 0x94, 0xef, 0xe4, 0x0c, 0xee]);
        let mut n = Notifier::default();
        let ev = |e| Event::segment(e, 0);
        assert_eq!(
            n.on_event(&ev(SegmentEvent::MacLearned { mac: a, port: 1 })),
            [json!({"notification_type": "connection_established", "mac_address": "5a:94:ef:e4:0c:ee"})]
        );
        assert!(n.on_event(&ev(SegmentEvent::MacAged { mac: a, port: 1 })).is_empty());
        assert!(n.on_event(&ev(SegmentEvent::MacLearned { mac: a, port: 1 })).is_empty());
        assert!(n
            .on_event(&ev(SegmentEvent::MacMoved {
                mac: a,
                port: 2,
                from: 1
            }))
            .is_empty());
        assert!(n.on_event(&ev(SegmentEvent::PortDown { id: 1, name: "x" })).is_empty());
        assert_eq!(
            n.on_event(&ev(SegmentEvent::PortDown { id: 2, name: "x" })),
            [json!({"notification_type": "connection_closed", "mac_address": "5a:94:ef:e4:0c:ee"})]
        );
        assert_eq!(message("ready", None), json!({"notification_type": "ready"}));
        assert_eq!(parse_addr("unix:///a/b").unwrap(), PathBuf::from("/a/b"));
        assert_eq!(parse_addr("unix:/a/b").unwrap(), PathBuf::from("/a/b"));
        assert!(parse_addr("tcp://x")
            .unwrap_err()
            .to_string()
            .contains("--notification"));
    }
}
