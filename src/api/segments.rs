//! `GET /segments`: the segment this hub serves. One hub is one segment
//! (one switch, one host on it), so the list has one element; it is a list
//! so that a client written for several segments per process reads it as is.
//!
//! The row: the host's addresses (`--addr`, `--mac`, and its IPv6 addresses:
//! the link-local one of RFC 4291 appendix A, then one per IPv6 range), its
//! DHCP and IPv6 `--dhcp-range`s (lease times in seconds, `null` for infinite),
//! whether it sends router advertisements, its `--domain`, and how many
//! ports, MAC table entries and live leases (DHCPv4 and DHCPv6) it has now.
//! The counts come from one `Segment::snapshot` and one `Segment::with_host`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use vmlan_host::dhcp::config::{LeaseSecs, INFINITE};
use vmlan_host::ipv6::RaMode;

use super::{unix_now, Api};

/// A lease time in seconds, or `null` for infinite.
fn lease_time(l: LeaseSecs) -> Value {
    if l == INFINITE {
        Value::Null
    } else {
        json!(l)
    }
}

/// dnsmasq's word for an IPv6 range's mode (`stateful` when it has none).
fn mode_name(m: RaMode) -> &'static str {
    match m {
        RaMode::Stateful => "stateful",
        RaMode::Slaac => "slaac",
        RaMode::RaOnly => "ra-only",
        RaMode::RaStateless => "ra-stateless",
        RaMode::RaNames => "ra-names",
    }
}

/// `GET /segments`: `[{addr, mac, host, ipv6, dhcp_ranges, ipv6_ranges, ra,
/// domain, ports, macs, leases}]` (src/api/openapi.json, schema `Segment`).
pub(super) async fn segments(State(api): State<Api>) -> Response {
    let cfg = &api.cfg;
    let snap = api.seg.snapshot();
    let now = unix_now();
    let (on, leases) = api.seg.with_host(|d| {
        let v4 = d.host.dhcp().leases().iter().filter(|l| !l.expired(now)).count();
        let v6 = d
            .host
            .dhcp6()
            .map_or(0, |s| s.leases().filter(|l| !l.expired(now)).count());
        (d.is_on(), v4 + v6)
    });
    let ipv6: Vec<String> = std::iter::once(vmlan_host::ipv6::link_local(cfg.mac))
        .chain(cfg.ranges6.iter().map(|r| vmlan_host::ipv6::address_in(r, cfg.mac)))
        .map(|a| a.to_string())
        .collect();
    let ranges: Vec<Value> = cfg
        .ranges
        .iter()
        .map(|r| {
            json!({"start": r.start.to_string(), "end": r.end.to_string(),
                   "lease_time": lease_time(r.lease), "static": r.static_only})
        })
        .collect();
    let ranges6: Vec<Value> = cfg
        .ranges6
        .iter()
        .map(|r| {
            json!({"start": r.start.to_string(), "end": r.end.to_string(), "prefix_len": r.prefix_len,
                   "mode": mode_name(r.mode), "lease_time": lease_time(r.lease)})
        })
        .collect();
    Json(json!([{
        "addr": cfg.net.to_string(), "mac": cfg.mac.to_string(), "host": on, "ipv6": ipv6,
        "dhcp_ranges": ranges, "ipv6_ranges": ranges6, "ra": cfg.enable_ra && !cfg.ranges6.is_empty(),
        "domain": cfg.domain, "ports": snap.ports.len(), "macs": snap.macs.len(), "leases": leases,
    }]))
    .into_response()
}
