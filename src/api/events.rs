//! `GET /events`: the segment's changes as a stream of JSON lines
//! (`application/x-ndjson`, one object per line, flushed per event).
//!
//! The driver (host_driver.rs) turns the segment's port and MAC table
//! changes ([`vmlan_hub::SegmentEvent`]) and the batch's lease changes (as
//! dhcp_script.rs's `Tracker` classifies them: bound, renewed, released,
//! expired) into small [`Event`] values and sends them on a bounded
//! `tokio::sync::broadcast` channel ([`CAPACITY`]) without waiting; the JSON
//! is built here, in the API's task, never under the segment's lock. A
//! subscriber that falls more than [`CAPACITY`] events behind gets one
//! `{"type": "lagged", "missed": N}` line and goes on with the newest ones.
//!
//! Line objects (`time` is Unix seconds; `expires` Unix seconds, 0 for an
//! infinite lease):
//! - `{"time", "type": "lease", "event": "bound"|"renewed"|"released"|"expired"|"current",
//!   "family": "ipv4"|"ipv6", "mac", "ip", "hostname", "expires"}` (`mac` of a
//!   DHCPv6 lease is the one in its client's DUID-LL/LLT, else null; `duid` too for ipv6);
//! - `{"time", "type": "port", "event": "up"|"down", "id", "kind", "name"}`;
//! - `{"time", "type": "mac", "event": "learned"|"moved"|"aged", "mac", "port", "from_port"?}`
//!   (`aged`: the entry left the MAC table, idle for the aging time or its port removed);
//! - `{"time", "type": "lagged", "missed": N}`;
//! - `{"time", "type": "keepalive"}` every [`KEEPALIVE`] without another line,
//!   so the API's 30 s idle limit (listener.rs) never ends a quiet stream.
//!
//! `?current=true` first sends one `"current"` lease event per live lease
//! (v4 then v6), read under the segment's lock in the same call that
//! subscribes, so no change falls between the two. `?types=lease,port,mac`
//! keeps only those types (`lagged` and `keepalive` lines always come).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::broadcast;
use vmlan_hub::{MacAddr, SegmentEvent};

use super::{bad, unix_now, Api};
use crate::dhcp_script::{Action, End, Tracked};

/// Events the channel holds for its slowest subscriber; past it that
/// subscriber gets a `lagged` line.
pub const CAPACITY: usize = 1024;

/// A keep-alive line is sent after this long without another line.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// One change of the segment, as the driver sends it (small, built under the
/// lock without JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When, in Unix seconds.
    pub time: u64,
    /// What.
    pub kind: Kind,
}

/// What an [`Event`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A lease changed (or, for `?current=true`, is live).
    Lease {
        /// `bound`, `renewed`, `released`, `expired` or `current`.
        event: &'static str,
        /// The client's MAC (DHCPv6: from its DUID, if it carries one).
        mac: Option<MacAddr>,
        /// The DHCPv6 client's DUID; `None` for DHCPv4.
        duid: Option<Vec<u8>>,
        /// The leased address.
        ip: IpAddr,
        /// The lease's hostname, if any.
        hostname: Option<String>,
        /// Expiry in Unix seconds, 0 for infinite.
        expires: u64,
    },
    /// A port was added (`up`) or removed.
    Port {
        /// True for `up`.
        up: bool,
        /// Its id.
        id: usize,
        /// Its name (kind and peer).
        name: String,
    },
    /// A MAC table change.
    Mac {
        /// `learned`, `moved` or `aged`.
        event: &'static str,
        /// The station's MAC.
        mac: MacAddr,
        /// Its port (for `aged`, the one it was on).
        port: usize,
        /// For `moved`, the port it was on.
        from_port: Option<usize>,
    },
}

/// The sending side, held by the driver.
pub type Sender = broadcast::Sender<Arc<Event>>;

/// A new channel of [`CAPACITY`].
pub fn channel() -> Sender {
    broadcast::channel(CAPACITY).0
}

impl Event {
    /// The event of a segment change at `time`.
    pub fn segment(e: SegmentEvent<'_>, time: u64) -> Self {
        let kind = match e {
            SegmentEvent::PortUp { id, name } => Kind::Port {
                up: true,
                id,
                name: name.to_string(),
            },
            SegmentEvent::PortDown { id, name } => Kind::Port {
                up: false,
                id,
                name: name.to_string(),
            },
            SegmentEvent::MacLearned { mac, port } => Kind::Mac {
                event: "learned",
                mac,
                port,
                from_port: None,
            },
            SegmentEvent::MacMoved { mac, port, from } => Kind::Mac {
                event: "moved",
                mac,
                port,
                from_port: Some(from),
            },
            SegmentEvent::MacAged { mac, port } => Kind::Mac {
                event: "aged",
                mac,
                port,
                from_port: None,
            },
        };
        Event { time, kind }
    }

    /// The lease event of a classified lease change at `time`: `Add` is
    /// `bound`, `Old` `renewed`, a `Del` `released` or `expired`.
    pub fn lease(t: &Tracked, time: u64) -> Self {
        let word = |a: &Action| match a {
            Action::Add => "bound",
            Action::Old => "renewed",
            Action::Del(End::Released) => "released",
            Action::Del(End::Expired) => "expired",
        };
        let kind = match t {
            Tracked::V4(a, l) => Kind::Lease {
                event: word(a),
                mac: Some(l.mac),
                duid: None,
                ip: IpAddr::V4(l.ip),
                hostname: l.hostname.clone(),
                expires: l.expires,
            },
            Tracked::V6(a, l) => Kind::Lease {
                event: word(a),
                mac: vmlan_host::dhcp6::duid_mac(&l.duid),
                duid: Some(l.duid.clone()),
                ip: IpAddr::V6(l.addr),
                hostname: l.hostname.clone(),
                expires: l.expires,
            },
        };
        Event { time, kind }
    }

    /// Its line object (see the module's comment).
    pub fn to_json(&self) -> Value {
        match &self.kind {
            Kind::Lease {
                event,
                mac,
                duid,
                ip,
                hostname,
                expires,
            } => {
                let mut v = json!({
                    "time": self.time, "type": "lease", "event": event,
                    "family": if ip.is_ipv4() { "ipv4" } else { "ipv6" },
                    "mac": mac.map(|m| m.to_string()), "ip": ip.to_string(),
                    "hostname": hostname, "expires": expires,
                });
                if let Some(d) = duid {
                    v["duid"] = json!(super::hex(d));
                }
                v
            }
            Kind::Port { up, id, name } => json!({
                "time": self.time, "type": "port", "event": if *up { "up" } else { "down" },
                "id": id, "kind": name.split(':').next().unwrap_or(name), "name": name,
            }),
            Kind::Mac {
                event,
                mac,
                port,
                from_port,
            } => {
                let mut v = json!({
                    "time": self.time, "type": "mac", "event": event, "mac": mac.to_string(), "port": port,
                });
                if let Some(f) = from_port {
                    v["from_port"] = json!(f);
                }
                v
            }
        }
    }
}

/// One JSON line.
fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

/// Which types a subscriber wants.
#[derive(Debug, Clone, Copy)]
struct Types {
    lease: bool,
    port: bool,
    mac: bool,
}

impl Types {
    fn wants(&self, e: &Event) -> bool {
        match e.kind {
            Kind::Lease { .. } => self.lease,
            Kind::Port { .. } => self.port,
            Kind::Mac { .. } => self.mac,
        }
    }
}

/// `?types=`: a comma-separated list of `lease`, `port`, `mac`.
fn parse_types(v: &str) -> Result<Types, String> {
    let mut t = Types {
        lease: false,
        port: false,
        mac: false,
    };
    for w in v.split(',') {
        match w.trim() {
            "lease" => t.lease = true,
            "port" => t.port = true,
            "mac" => t.mac = true,
            other => {
                return Err(format!(
                    "{other:?}: expected a comma-separated list of lease, port, mac"
                ))
            }
        }
    }
    Ok(t)
}

/// The stream's state between lines.
struct Feed {
    first: std::vec::IntoIter<Event>,
    rx: broadcast::Receiver<Arc<Event>>,
    types: Types,
    /// When the last line went out: a keep-alive follows [`KEEPALIVE`] after
    /// it, however many filtered-out events came in between (they send
    /// nothing, and the listener closes a connection idle for 30 s).
    sent: tokio::time::Instant,
}

/// `GET /events[?current=true][&types=lease,port,mac]`: see the module's comment.
pub(super) async fn events(
    State(api): State<Api>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad("query", e.body_text()),
    };
    if let Some(k) = q.keys().find(|k| !["current", "types"].contains(&k.as_str())) {
        return bad(k, "unknown parameter (current, types)");
    }
    let current = match q.get("current").map(String::as_str) {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(v) => return bad("current", format!("{v:?}: expected true or false")),
    };
    let types = match q.get("types").map(|v| parse_types(v)) {
        None => Types {
            lease: true,
            port: true,
            mac: true,
        },
        Some(Ok(t)) => t,
        Some(Err(e)) => return bad("types", e),
    };
    let now = unix_now();
    let subscribed = api.seg.with_host(|d| {
        let rx = d.subscribe()?;
        let first = if current { d.current_leases(now) } else { Vec::new() };
        Some((rx, first))
    });
    let Some((rx, first)) = subscribed else {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": "events are off in this hub"})),
        )
            .into_response();
    };
    let feed = Feed {
        first: first.into_iter(),
        rx,
        types,
        sent: tokio::time::Instant::now(),
    };
    let stream = futures_util::stream::unfold(feed, |mut f| async move {
        if let Some(e) = f.first.next() {
            f.sent = tokio::time::Instant::now();
            return Some((Ok::<_, std::convert::Infallible>(line(&e.to_json())), f));
        }
        let item = f.next_line().await?;
        f.sent = tokio::time::Instant::now();
        Some((Ok(item), f))
    });
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

impl Feed {
    /// The next line to send: a wanted event, a `lagged` or a `keepalive`
    /// line; `None` when the hub is stopping (the channel closed).
    async fn next_line(&mut self) -> Option<Bytes> {
        loop {
            match tokio::time::timeout_at(self.sent + KEEPALIVE, self.rx.recv()).await {
                Err(_) => return Some(line(&json!({"time": unix_now(), "type": "keepalive"}))),
                Ok(Ok(e)) if self.types.wants(&e) => return Some(line(&e.to_json())),
                Ok(Ok(_)) => {}
                Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                    return Some(line(&json!({"time": unix_now(), "type": "lagged", "missed": n})));
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmlan_host::leases::Lease;

    #[test]
    fn lines_have_the_documented_shapes() {
        let mac = MacAddr([0x52, 0x54, 0, 0, 0, 5]);
        let l = Lease {
            mac,
            ip: "10.0.3.5".parse().unwrap(),
            hostname: Some("n1".into()),
            client_id: None,
            expires: 1600,
        };
        let v = Event::lease(&Tracked::V4(Action::Add, l.clone()), 1000).to_json();
        assert_eq!(
            v,
            json!({"time": 1000, "type": "lease", "event": "bound", "family": "ipv4",
                   "mac": "52:54:00:00:00:05", "ip": "10.0.3.5", "hostname": "n1", "expires": 1600})
        );
        let v = Event::lease(&Tracked::V4(Action::Del(End::Expired), l), 1600).to_json();
        assert_eq!(v["event"], "expired");
        let v = Event::segment(
            SegmentEvent::PortUp {
                id: 3,
                name: "stream:unix:/run/a.sock",
            },
            5,
        )
        .to_json();
        assert_eq!(
            v,
            json!({"time": 5, "type": "port", "event": "up", "id": 3, "kind": "stream", "name": "stream:unix:/run/a.sock"})
        );
        let v = Event::segment(SegmentEvent::MacMoved { mac, port: 2, from: 1 }, 5).to_json();
        assert_eq!(
            v,
            json!({"time": 5, "type": "mac", "event": "moved", "mac": "52:54:00:00:00:05", "port": 2, "from_port": 1})
        );
    }

    #[test]
    fn types_are_checked() {
        assert!(parse_types("lease,mac").is_ok_and(|t| t.lease && t.mac && !t.port));
        assert!(parse_types("lease,bogus").unwrap_err().contains("bogus"));
        assert!(parse_types("").is_err());
    }
}
