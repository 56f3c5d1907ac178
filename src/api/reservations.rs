//! The API's DHCP reservations: `GET /reservations` (every source: the
//! flags' `--dhcp-host`, the files' `--dhcp-hostsfile`/`--dhcp-hostsdir`,
//! and the API's), `POST /reservations` and `DELETE /reservations/{mac}`
//! (the API's only). An API reservation is a `--dhcp-host` added at run
//! time (vmlan_host's `Host::replace_api_reservations`): its name is
//! published at once (A, and AAAA with `ipv6`), and the DHCP and DHCPv6
//! servers use it from the client's next message. A client that holds a
//! lease at another address is answered DHCPNAK on its next RENEW or
//! REBIND, as for a `--dhcp-host` that differs from a lease (RFC 2131
//! section 3.2, and dnsmasq), so it goes back to DISCOVER and gets the
//! reserved address; a DHCPv6 client's RENEW or REBIND gets the reserved
//! address on its first IA and the old one at lifetime 0 (RFC 8415 section
//! 18.3.4). Every change is written to `--api-state` (state.rs)
//! before it is answered; without it, changes last until the hub stops.

use std::net::{Ipv4Addr, Ipv6Addr};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use vmlan_host::config::{check_hostname, Reservation};
use vmlan_host::ReservationSource;
use vmlan_hub::MacAddr;

use super::{bad, body_json, conflict, not_found, persist, Api, Refused};

/// Most reservations the API holds at once; more get 400.
pub const MAX_RESERVATIONS: usize = 4096;

/// The members `POST /reservations` takes.
const MEMBERS: [&str; 5] = ["mac", "ipv4", "ipv6", "hostname", "lease_time"];

/// A `GET /reservations` row.
fn row(source: ReservationSource, r: &Reservation) -> Value {
    let source = match source {
        ReservationSource::Flag => "flag",
        ReservationSource::File => "file",
        ReservationSource::Api => "api",
    };
    json!({
        "mac": r.mac.map(|m| m.to_string()),
        "ipv4": r.ip.map(|a| a.to_string()),
        "ipv6": r.ip6.map(|a| a.to_string()),
        "hostname": r.hostname,
        "lease_time": r.lease,
        "source": source,
    })
}

/// `GET /reservations`: every reservation, flags first, then files, then
/// the API's, as `[{mac, ipv4, ipv6, hostname, lease_time, source}]`
/// (`null` for what a reservation has not; `mac` is `null` for a file's
/// DHCPv6 reservation by `id:` only; `lease_time` in seconds, 4294967295
/// for `infinite`).
pub(super) async fn reservations_list(State(api): State<Api>) -> Response {
    let rows: Vec<Value> = api
        .seg
        .with_host(|d| d.host.reservations().map(|(s, r)| row(s, r)).collect());
    Json(rows).into_response()
}

/// A string member, absent or `null` as `None`.
fn opt_str<'a>(v: &'a Value, key: &str) -> Result<Option<&'a str>, Refused> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Box::new(bad(key, "must be a string"))),
    }
}

/// The reservation a `POST /reservations` body describes, each member
/// checked as `--dhcp-host` checks its part.
fn parse(v: &Value) -> Result<Reservation, Refused> {
    if let Some(k) = v
        .as_object()
        .and_then(|m| m.keys().find(|k| !MEMBERS.contains(&k.as_str())))
    {
        return Err(Box::new(bad(k, format!("unknown member ({})", MEMBERS.join(", ")))));
    }
    let mac = match opt_str(v, "mac")? {
        None => return Err(Box::new(bad("mac", "missing"))),
        Some(m) => m
            .parse::<MacAddr>()
            .map_err(|e| Box::new(bad("mac", format!("{m:?}: {e}"))))?,
    };
    if mac.is_group() || mac.0 == [0; 6] {
        return Err(Box::new(bad("mac", format!("{mac} is not a station's (unicast) MAC"))));
    }
    let ip = opt_str(v, "ipv4")?
        .map(|a| {
            a.parse::<Ipv4Addr>()
                .map_err(|_| Box::new(bad("ipv4", format!("{a:?} is not an IPv4 address"))))
        })
        .transpose()?;
    let ip6 = opt_str(v, "ipv6")?
        .map(|a| {
            let x = a
                .parse::<Ipv6Addr>()
                .map_err(|_| Box::new(bad("ipv6", format!("{a:?} is not an IPv6 address"))))?;
            if x.is_multicast() || x.is_unspecified() || x.is_loopback() || (x.segments()[0] & 0xffc0) == 0xfe80 {
                return Err(Box::new(bad(
                    "ipv6",
                    format!("{x} is not a global or unique-local unicast address"),
                )));
            }
            Ok(x)
        })
        .transpose()?;
    let hostname = opt_str(v, "hostname")?
        .map(|h| check_hostname(h).map_err(|e| Box::new(bad("hostname", e))))
        .transpose()?;
    let lease = match v.get("lease_time") {
        None | Some(Value::Null) => None,
        Some(t) => match t.as_u64().filter(|t| (120..u64::from(u32::MAX)).contains(t)) {
            Some(t) => Some(t as u32),
            None => {
                return Err(Box::new(bad(
                    "lease_time",
                    "seconds, an integer from 120 (dnsmasq's least) to 4294967294",
                )))
            }
        },
    };
    let r = Reservation {
        mac: Some(mac),
        duid: None,
        ip,
        ip6,
        hostname,
        lease,
    };
    if !super::state::reservation_round_trips(&r) {
        return Err(Box::new(bad(
            "hostname",
            "reads as a lease time in dnsmasq's dhcp-host syntax (5m, 2h, infinite...): choose another name",
        )));
    }
    Ok(r)
}

/// `POST /reservations`: `{"mac", "ipv4"?, "ipv6"?, "hostname"?,
/// "lease_time"?}` adds a reservation (a `--dhcp-host` at run time; see the
/// module documentation for when it takes effect); 201 with its `GET
/// /reservations` row. 400 naming the member for a bad or unknown one, an
/// address outside the segment (`--addr`'s subnet or a relayed range's, as
/// for `--dhcp-host`), the hub's own address, or a hostname that is a
/// `--cname` alias; 409 naming `mac`, `ipv4` or `ipv6` when a flag, file or
/// API reservation already has it; 400 past [`MAX_RESERVATIONS`]. Written
/// to `--api-state` before the answer (500 naming `api-state` when it
/// cannot be).
pub(super) async fn reservations_add(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> Response {
    let v = match body_json(&body) {
        Ok(v) if v.is_object() => v,
        Ok(_) => {
            return bad(
                "body",
                "expected an object {\"mac\", \"ipv4\", \"ipv6\", \"hostname\", \"lease_time\"}",
            )
        }
        Err(r) => return *r,
    };
    let r = match parse(&v) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let mut st = api.state.lock().await;
    if st.reservations.len() >= MAX_RESERVATIONS {
        return bad(
            "reservations",
            format!("at most {MAX_RESERVATIONS} reservations through the API"),
        );
    }
    let (all, checked): (Vec<(ReservationSource, Reservation)>, Vec<Reservation>) = api.seg.with_host(|d| {
        let all: Vec<_> = d.host.reservations().map(|(s, r)| (s, r.clone())).collect();
        let checked = all
            .iter()
            .filter(|(s, _)| *s != ReservationSource::Api)
            .map(|(_, r)| r.clone())
            .collect();
        (all, checked)
    });
    let held = |what: String, s: &ReservationSource| format!("{what} is already reserved (a {s:?} reservation)");
    for (s, o) in &all {
        if let Some(m) = r.mac.filter(|m| o.mac == Some(*m)) {
            return conflict("mac", held(format!("MAC {m}"), s));
        }
        if let Some(a) = r.ip.filter(|a| o.ip == Some(*a)) {
            return conflict("ipv4", held(a.to_string(), s));
        }
        if let Some(a) = r.ip6.filter(|a| o.ip6 == Some(*a)) {
            return conflict("ipv6", held(a.to_string(), s));
        }
    }
    // The checks of a --dhcp-host (subnet, own address, names against --cname).
    let mut cfg = (*api.cfg).clone();
    cfg.reservations = checked;
    cfg.reservations.push(r.clone());
    if let Err(e) = cfg.validate() {
        let field = match e.flag {
            "--cname" => "hostname",
            _ if r.ip6.is_some_and(|a| e.reason.contains(&a.to_string())) => "ipv6",
            _ if r.ip.is_some_and(|a| e.reason.contains(&a.to_string())) => "ipv4",
            _ => "body",
        };
        return bad(field, e.reason);
    }
    let mut next = st.clone();
    next.reservations.push(r.clone());
    if let Err(e) = persist(&api, &next).await {
        return *e;
    }
    let list = next.reservations.clone();
    api.seg.with_host(|d| d.host.replace_api_reservations(list));
    *st = next;
    (StatusCode::CREATED, Json(row(ReservationSource::Api, &r))).into_response()
}

/// `DELETE /reservations/{mac}`: removes the API's reservation of `mac`
/// (its name is withdrawn; a lease it gave runs on until it ends, as after
/// a `--dhcp-host` is dropped); 200 `{"removed": 1}`, 404 naming `mac` when
/// the API has none for it (a flag's or file's is never removed here), 400
/// for a bad MAC.
pub(super) async fn reservations_delete(
    State(api): State<Api>,
    mac: Result<UrlPath<String>, PathRejection>,
) -> Response {
    let mac = match mac {
        Ok(UrlPath(m)) => m,
        Err(e) => return bad("mac", e.body_text()),
    };
    let Ok(m) = mac.parse::<MacAddr>() else {
        return bad("mac", format!("{mac:?} is not a MAC address"));
    };
    let mut st = api.state.lock().await;
    let Some(i) = st.reservations.iter().position(|r| r.mac == Some(m)) else {
        return not_found("mac", format!("no reservation added through the API has MAC {m}"));
    };
    let mut next = st.clone();
    next.reservations.remove(i);
    if let Err(e) = persist(&api, &next).await {
        return *e;
    }
    let list = next.reservations.clone();
    api.seg.with_host(|d| d.host.replace_api_reservations(list));
    *st = next;
    Json(json!({"removed": 1})).into_response()
}
