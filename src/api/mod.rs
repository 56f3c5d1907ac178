//! `vmlan hub --api unix:PATH`: the runtime HTTP/1.1 JSON API (RFC 9112 over
//! a unix stream socket, served by axum), to read and change a running segment.
//!
//! Routes (the OpenAPI 3 document at `GET /openapi.json`, src/api/openapi.json,
//! describes each one):
//! - gvproxy's (gvisor-tap-vsock) routes and JSON shapes, so its clients work:
//!   `GET /cam` (`{"MAC": port}`), `GET /leases` and `GET /services/dhcp/leases`
//!   (`{"IP": "MAC"}`), `GET /services/dns/all` (`[{"Name", "Records": [{"Name",
//!   "IP"}], "DefaultIP"}]`), `POST /services/dns/add` (one such zone; its
//!   records are published as `NAME.ZONE`, other names under a named zone get
//!   its DefaultIP or NXDOMAIN, as in gvproxy), `GET /stats` (gvproxy's top-level
//!   byte, drop and malformed counters, without its gVisor stack's `IP`/`TCP`/`UDP`,
//!   and vmlan's counters).
//! - gvproxy's forwarder, `/services/forwarder/{all,expose,unexpose}` (forwarder.rs).
//! - vmlan's own: `GET /ports`, `GET /segments` (segments.rs), `GET /events`
//!   (events.rs: lease, port and MAC changes as JSON lines),
//!   `GET /leases?family=ipv4|ipv6|all`, `GET /records`,
//!   `POST /records`, `DELETE /records/{name}[?type=]` (records.rs: A, AAAA,
//!   CNAME, SRV, PTR), `GET /reservations`, `POST /reservations`,
//!   `DELETE /reservations/{mac}` (reservations.rs). What the API adds
//!   (reservations, records, gvproxy's zones, port forwards) is written to `--api-state FILE`
//!   (state.rs, dnsmasq's config syntax) before the answer and read back at
//!   start; without the flag it lasts until the hub stops.
//!
//! At most 64 connections at once, each closed after 30 s without a byte
//! (listener.rs). A bad body or parameter gets 400 with `{"error": "...", "field": "..."}`
//! (a body over 64 KiB 413, `field` "body"); an unknown route 404 and a
//! wrong method 405, with `{"error": "..."}`. Every handler takes the
//! segment's lock only inside one synchronous call (`Segment::with_host`,
//! `Segment::snapshot`), never across an await.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use vmlan_host::config::{HostConfig, Reservation};
use vmlan_hub::Segment;

use crate::host_driver::Driven;

pub mod events;
mod forwarder;
mod listener;
mod records;
mod reservations;
mod segments;
pub mod state;

use state::ApiRecord;
pub use state::ApiState;

/// The OpenAPI 3 document served at `GET /openapi.json`.
const OPENAPI: &str = include_str!("openapi.json");

/// Most records the API keeps published at once (a client cannot grow the
/// hub's memory without bound); more get 400.
pub const MAX_RECORDS: usize = 4096;

/// Most bytes of a request body; longer bodies get 413.
const MAX_BODY: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
struct Api {
    seg: Arc<Segment<Driven>>,
    /// What the API added (reservations, records with gvproxy's zones',
    /// port forwards), in order. Changes are made one at a time under this lock, which is held
    /// across the write of `--api-state` (the segment's lock never is).
    state: Arc<tokio::sync::Mutex<ApiState>>,
    /// `--api-state`: where `state` is written after each change.
    file: Option<Arc<PathBuf>>,
    /// The host's configuration (the flags'), to check reservations against.
    cfg: Arc<HostConfig>,
}

/// Where `--api` listens: `unix:PATH`.
///
/// # Errors
/// Anything but `unix:` followed by a path, naming the flag.
pub fn parse_addr(v: &str) -> Result<PathBuf> {
    match v.strip_prefix("unix:") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => bail!("--api {v}: expected unix:PATH (a unix socket path), for example unix:/run/user/1000/vmlan.api"),
    }
}

/// What the API starts with besides its socket.
pub struct Options {
    /// The host's configuration from the flags (reservations are checked against it).
    pub cfg: HostConfig,
    /// What `--api-state` held at start ([`ApiState::load`]), already applied
    /// to the host ([`apply_state`]) and its forwards installed (by the
    /// hub's start-up, after `--expose`'s); empty without the flag.
    pub state: ApiState,
    /// `--api-state FILE`, rewritten after each change; `None`: changes last
    /// until the hub stops.
    pub state_file: Option<PathBuf>,
}

/// Puts `state` (read from `--api-state` at start) into `host`: its records
/// published, its reservations as the API's ([`vmlan_host::Host::replace_api_reservations`];
/// one that clashes with a flag's or file's is ignored, and logged). Its
/// forwards are not installed here (the hub's start-up does, after `--expose`'s).
pub fn apply_state(host: &mut vmlan_host::Host, state: &ApiState) {
    for r in &state.records {
        r.publish(host.dns_mut());
    }
    host.replace_api_reservations(state.reservations.clone());
    let taken: Vec<Reservation> = host
        .reservations()
        .filter(|(s, _)| *s != vmlan_host::ReservationSource::Api)
        .map(|(_, r)| r.clone())
        .collect();
    for r in &state.reservations {
        let clash = taken.iter().any(|o| {
            (r.mac.is_some() && o.mac == r.mac)
                || (r.ip.is_some() && o.ip == r.ip)
                || (r.ip6.is_some() && o.ip6 == r.ip6)
        });
        if clash {
            tracing::warn!(
                "--api-state: dhcp-host={} clashes with a --dhcp-host or hosts file reservation, which wins; ignored",
                state::dhcp_host_value(r)
            );
        }
    }
}

/// Writes `next` to `--api-state` (when given) on the blocking pool, off
/// the runtime's thread and without the segment's lock.
///
/// # Errors
/// 500 naming `api-state` when the file cannot be written (it keeps the
/// previous state, and the change is not made).
async fn persist(api: &Api, next: &ApiState) -> Result<(), Refused> {
    let Some(path) = api.file.clone() else {
        return Ok(());
    };
    let st = next.clone();
    let p = path.clone();
    let done = tokio::task::spawn_blocking(move || st.save(&p)).await;
    let why = match done {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::error!(file = %path.display(), error = %why, "--api-state: cannot write; the change is refused");
    let answer =
        Json(json!({"error": format!("cannot write --api-state {}: {why}", path.display()), "field": "api-state"}));
    Err(Box::new((StatusCode::INTERNAL_SERVER_ERROR, answer).into_response()))
}

/// A 404 answer naming the field.
fn not_found(field: &str, error: impl std::fmt::Display) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": error.to_string(), "field": field})),
    )
        .into_response()
}

/// A 409 answer naming the field.
fn conflict(field: &str, error: impl std::fmt::Display) -> Response {
    (
        StatusCode::CONFLICT,
        Json(json!({"error": error.to_string(), "field": field})),
    )
        .into_response()
}

/// Binds the API's socket at `path` (mode 0600, or 0660 owned by `group`
/// with `--api-group`: set before it listens, so no other user ever connects)
/// and serves the API on the current tokio runtime.
///
/// # Errors
/// The socket cannot be bound (a live socket or another file is there) or
/// `group` is not a group of this machine; messages name the flag.
pub fn start(seg: Arc<Segment<Driven>>, path: &Path, group: Option<&str>, opts: Options) -> Result<()> {
    let listener = bind(path, group)?;
    let api = Api {
        seg,
        state: Arc::new(tokio::sync::Mutex::new(opts.state)),
        file: opts.state_file.map(Arc::new),
        cfg: Arc::new(opts.cfg),
    };
    let app = router(api);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener::Capped::new(listener), app).await {
            tracing::error!(error = %e, "the API stopped");
        }
    });
    tracing::info!(path = %path.display(), "API listening");
    Ok(())
}

/// The socket, bound, with its mode and group set, then listening.
fn bind(path: &Path, group: Option<&str>) -> Result<tokio::net::UnixListener> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let flag = || format!("--api unix:{}", path.display());
    let gid = group.map(group_id).transpose()?;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            bail!("{}: a file that is not a socket is there", flag());
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("{}: another server is listening there", flag());
        }
        std::fs::remove_file(path).with_context(|| format!("{}: cannot remove the stale socket", flag()))?;
    }
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None).with_context(flag)?;
    sock.bind(&SockAddr::unix(path).with_context(flag)?)
        .with_context(|| format!("{}: cannot bind", flag()))?;
    let mode = if gid.is_some() { 0o660 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("{}: cannot set its mode", flag()))?;
    if let Some(g) = gid {
        std::os::unix::fs::chown(path, None, Some(g))
            .with_context(|| format!("--api-group: cannot give {} to group {g}", path.display()))?;
    }
    sock.listen(128).with_context(flag)?;
    sock.set_nonblocking(true).with_context(flag)?;
    let std_listener: std::os::unix::net::UnixListener = sock.into();
    tokio::net::UnixListener::from_std(std_listener).with_context(flag)
}

/// A group's id from its name or number (`--api-group`).
fn group_id(g: &str) -> Result<u32> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    match nix::unistd::Group::from_name(g) {
        Ok(Some(grp)) => Ok(grp.gid.as_raw()),
        _ => bail!("--api-group {g}: no such group"),
    }
}

/// Every route, and the 404 fallback.
fn router(api: Api) -> Router {
    Router::new()
        .route("/stats", get(stats))
        .route("/cam", get(cam))
        .route("/leases", get(leases))
        .route("/services/dhcp/leases", get(gv_leases))
        .route("/services/dns/all", get(dns_all))
        .route("/services/dns/add", post(dns_add))
        .route("/ports", get(ports))
        .route("/segments", get(segments::segments))
        .route("/records", get(records::records_list).post(records::records_add))
        .route("/records/{name}", delete(records::records_delete))
        .route(
            "/reservations",
            get(reservations::reservations_list).post(reservations::reservations_add),
        )
        .route("/reservations/{mac}", delete(reservations::reservations_delete))
        .route("/events", get(events::events))
        .route("/openapi.json", get(openapi))
        .merge(forwarder::routes())
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"error": "no such route"}))) })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(json!({"error": "method not allowed on this route"})),
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// A refusal from a helper: the answer to send, boxed (a `Response` is large).
type Refused = Box<Response>;

/// A 400 answer naming the field at fault.
fn bad(field: &str, error: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": error.to_string(), "field": field})),
    )
        .into_response()
}

/// A port's counters in the API's order: rx frames, rx bytes, tx frames,
/// tx bytes, drops, errors.
fn counters(t: &vmlan_hub::segment::PortStats) -> [u64; 6] {
    [t.rx_frames, t.rx_bytes, t.tx_frames, t.tx_bytes, t.drops, t.errors]
}

/// `GET /stats`: the segment's totals over every port, the port and MAC
/// counts, and the host's counters as text; with gvproxy's top-level
/// `BytesSent`, `BytesReceived`, `DroppedPackets` and `MalformedRcvdPackets`
/// (its nested `IP`/`TCP`/`UDP` are its gVisor stack's, which vmlan has not).
async fn stats(State(api): State<Api>) -> Response {
    let snap = api.seg.snapshot();
    let (ports, macs, host) = (&snap.ports, &snap.macs, &snap.host);
    let mut t = [0u64; 6];
    for p in ports {
        for (a, b) in t.iter_mut().zip(counters(&p.stats)) {
            *a += b;
        }
    }
    Json(json!({
        "BytesSent": t[3], "BytesReceived": t[1], "DroppedPackets": t[4], "MalformedRcvdPackets": t[5],
        "rx_frames": t[0], "rx_bytes": t[1], "tx_frames": t[2], "tx_bytes": t[3],
        "drops": t[4], "errors": t[5], "ports": ports.len(), "macs": macs.len(), "host": host,
    }))
    .into_response()
}

/// `GET /cam`: gvproxy's MAC table, `{"MAC": port id}`.
async fn cam(State(api): State<Api>) -> Response {
    let m: BTreeMap<String, usize> = api
        .seg
        .snapshot()
        .macs
        .into_iter()
        .map(|(m, p, _)| (m.to_string(), p))
        .collect();
    Json(m).into_response()
}

/// `GET /ports`: every port with its kind, name (its peer) and counters.
async fn ports(State(api): State<Api>) -> Response {
    let snap = api.seg.snapshot();
    let v: Vec<Value> = snap
        .ports
        .iter()
        .map(|p| {
            let c = counters(&p.stats);
            let learned: Vec<String> = snap
                .macs
                .iter()
                .filter(|m| m.1 == p.id)
                .map(|m| m.0.to_string())
                .collect();
            let (kind, peer) = p.name.split_once(':').unwrap_or((&p.name, ""));
            json!({
                "id": p.id, "kind": kind, "name": p.name, "peer": peer, "state": "up",
                "rx_frames": c[0], "rx_bytes": c[1], "tx_frames": c[2], "tx_bytes": c[3],
                "drops": c[4], "errors": c[5], "macs": learned,
            })
        })
        .collect();
    Json(v).into_response()
}

/// Unix seconds now.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The live DHCP leases, as gvproxy's `{"IP": "MAC"}`.
fn lease_map(api: &Api) -> BTreeMap<String, String> {
    let now = unix_now();
    api.seg.with_host(|d| {
        d.host
            .dhcp()
            .leases()
            .iter()
            .filter(|l| !l.expired(now))
            .map(|l| (l.ip.to_string(), l.mac.to_string()))
            .collect()
    })
}

/// `GET /services/dhcp/leases`: gvproxy's `{"IP": "MAC"}`.
async fn gv_leases(State(api): State<Api>) -> Response {
    Json(lease_map(&api)).into_response()
}

/// Hex bytes joined with colons (a DUID).
fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

/// `GET /leases`: without a query, gvproxy's `{"IP": "MAC"}`; with
/// `?family=ipv4|ipv6|all`, vmlan's rows: `{family, ip, mac, hostname,
/// client_id|duid+iaid, expires}` (expires in Unix seconds, 0 for infinite).
async fn leases(State(api): State<Api>, q: Result<Query<HashMap<String, String>>, QueryRejection>) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad("query", e.body_text()),
    };
    if let Some(k) = q.keys().find(|k| *k != "family") {
        return bad(k, "unknown parameter (only family)");
    }
    let Some(family) = q.get("family") else {
        return Json(lease_map(&api)).into_response();
    };
    let (v4, v6) = match family.as_str() {
        "ipv4" => (true, false),
        "ipv6" => (false, true),
        "all" => (true, true),
        _ => return bad("family", format!("{family:?}: expected ipv4, ipv6 or all")),
    };
    let now = unix_now();
    let rows = api.seg.with_host(|d| {
        let mut rows = Vec::new();
        if v4 {
            for l in d.host.dhcp().leases().sorted().into_iter().filter(|l| !l.expired(now)) {
                rows.push(json!({
                    "family": "ipv4", "ip": l.ip.to_string(), "mac": l.mac.to_string(),
                    "hostname": l.hostname, "client_id": l.client_id.as_deref().map(hex), "expires": l.expires,
                }));
            }
        }
        if v6 {
            if let Some(s) = d.host.dhcp6() {
                let mut v: Vec<_> = s.leases().filter(|l| !l.expired(now)).collect();
                v.sort_by_key(|l| l.addr);
                for l in v {
                    rows.push(json!({
                        "family": "ipv6", "ip": l.addr.to_string(),
                        "mac": vmlan_host::dhcp6::duid_mac(&l.duid).map(|m| m.to_string()),
                        "hostname": l.hostname, "duid": hex(&l.duid), "iaid": l.iaid, "expires": l.expires,
                    }));
                }
            }
        }
        rows
    });
    Json(rows).into_response()
}

/// Parses a JSON body, or the 400 answer for it.
/// A body over [`MAX_BODY`] gets 413, JSON that does not parse 400; both
/// name the field `body`.
fn body_json(body: &Result<Bytes, BytesRejection>) -> Result<Value, Refused> {
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let answer = Json(json!({"error": e.body_text(), "field": "body"}));
            return Err(Box::new((e.status(), answer).into_response()));
        }
    };
    serde_json::from_slice(body).map_err(|e| Box::new(bad("body", format!("not JSON: {e}"))))
}

/// A string member `key` of `obj` (`keys` are the accepted spellings).
fn str_field<'a>(obj: &'a Value, keys: &[&str], field: &str) -> Result<&'a str, Refused> {
    match keys.iter().find_map(|k| obj.get(*k)) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Box::new(bad(field, "must be a string"))),
        None => Err(Box::new(bad(field, "missing"))),
    }
}

/// A DNS name the hub can publish: 1 to 253 bytes of labels of letters,
/// digits, `-` and `_`, at most 63 bytes each (RFC 1035 section 2.3.4).
fn check_name(name: &str, field: &str) -> Result<(), Refused> {
    let n = name.strip_suffix('.').unwrap_or(name);
    let ok = !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(Box::new(bad(field, format!("{name:?} is not a DNS name"))))
    }
}

/// `GET /services/dns/all`: gvproxy's zones: each zone added through
/// `POST /services/dns/add` (`"Name": "ZONE."`, its `DefaultIP` or null)
/// with the published A/AAAA names under it (relative to it), and the zone
/// "" with every other published name (configured, leased and added).
async fn dns_all(State(api): State<Api>) -> Response {
    let names = api.seg.with_host(|d| d.host.dns_mut().names());
    let mut zones: Vec<(String, Option<IpAddr>)> = api
        .state
        .lock()
        .await
        .records
        .iter()
        .filter_map(|r| match r {
            ApiRecord::Zone { name, default_ip } => Some((name.clone(), *default_ip)),
            _ => None,
        })
        .collect();
    // The longest zone first, so a name lands in the nearest one; "" last.
    zones.sort_by_key(|z| std::cmp::Reverse(z.0.len()));
    if !zones.iter().any(|z| z.0.is_empty()) {
        zones.push((String::new(), None));
    }
    let mut records: Vec<Vec<Value>> = vec![Vec::new(); zones.len()];
    for (n, ips) in &names {
        let bare = n.trim_end_matches('.');
        let (i, rel) = zones
            .iter()
            .enumerate()
            .find_map(|(i, (z, _))| match z.is_empty() {
                true => Some((i, n.as_str())),
                false => bare.strip_suffix(z.as_str())?.strip_suffix('.').map(|r| (i, r)),
            })
            .unwrap_or((zones.len() - 1, n.as_str()));
        records[i].extend(ips.iter().map(|ip| json!({"Name": rel, "IP": ip.to_string()})));
    }
    let v: Vec<Value> = zones
        .iter()
        .zip(records)
        .map(|((z, ip), recs)| {
            let name = if z.is_empty() { String::new() } else { format!("{z}.") };
            json!({"Name": name, "Records": recs, "DefaultIP": ip.map(|a| a.to_string())})
        })
        .collect();
    Json(v).into_response()
}

/// `POST /services/dns/add`: gvproxy's zone `{"Name": ZONE, "Records":
/// [{"Name": NAME, "IP": ADDR}], "DefaultIP": ADDR|null}` (member names in
/// any case, as Go reads them); each record is published as `NAME.ZONE` (A
/// or AAAA, and PTR). As in gvproxy (pkg/services/dns), names under a named
/// ZONE are then answered locally only: a name without a record gets the
/// DefaultIP, or NXDOMAIN without one; with the zone "" the DefaultIP answers
/// every name without local data. Posting a zone again adds its records and
/// replaces its DefaultIP. A record's `Regexp` must be null (not supported).
async fn dns_add(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> Response {
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let lower: Value = match &v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect()),
        _ => return bad("body", "expected an object {\"Name\": ZONE, \"Records\": [...]}"),
    };
    let zone = match lower.get("name") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.trim_end_matches('.'),
        Some(_) => return bad("Name", "must be a string"),
    };
    if !zone.is_empty() {
        if let Err(r) = check_name(zone, "Name") {
            return *r;
        }
    }
    let default_ip = match lower.get("defaultip") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => match s.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => return bad("DefaultIP", "not an IPv4 or IPv6 address"),
        },
        Some(_) => return bad("DefaultIP", "must be a string (an address) or null"),
    };
    if let Some(k) = v.as_object().and_then(|m| {
        m.keys()
            .find(|k| !["name", "records", "defaultip"].contains(&k.to_ascii_lowercase().as_str()))
    }) {
        return bad(k, "unknown member (Name, Records, DefaultIP)");
    }
    let list = match lower.get("records") {
        None | Some(Value::Null) => &Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => return bad("Records", "must be an array"),
    };
    let mut recs = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let Value::Object(m) = r else {
            return bad(&format!("Records[{i}]"), "must be an object");
        };
        let r = Value::Object(m.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect());
        if r.get("regexp").is_some_and(|x| !x.is_null()) {
            return bad(
                &format!("Records[{i}].Regexp"),
                "regular-expression records are not supported by vmlan (give a Name)",
            );
        }
        let name = match str_field(&r, &["name"], &format!("Records[{i}].Name")) {
            Ok(n) => n.trim_end_matches('.'),
            Err(e) => return *e,
        };
        if let Err(e) = check_name(name, &format!("Records[{i}].Name")) {
            return *e;
        }
        let ip = match str_field(&r, &["ip"], &format!("Records[{i}].IP")).map(str::parse::<IpAddr>) {
            Ok(Ok(ip)) => ip,
            Ok(Err(_)) => return bad(&format!("Records[{i}].IP"), "not an IPv4 or IPv6 address"),
            Err(e) => return *e,
        };
        let full = if zone.is_empty() {
            name.to_string()
        } else {
            format!("{name}.{zone}")
        };
        recs.push(ApiRecord::Host { name: full, ip, ttl: 0 });
    }
    if !zone.is_empty() || default_ip.is_some() {
        recs.push(ApiRecord::Zone {
            name: zone.to_ascii_lowercase(),
            default_ip,
        });
    }
    match records::add_records(&api, recs, "Records").await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(r) => *r,
    }
}

/// `GET /openapi.json`.
async fn openapi() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenAPI document is JSON and names every route.
    #[test]
    fn openapi_is_json_with_every_route() {
        let v: Value = serde_json::from_str(OPENAPI).unwrap();
        for p in [
            "/stats",
            "/cam",
            "/leases",
            "/services/dhcp/leases",
            "/services/dns/all",
            "/services/dns/add",
            "/ports",
            "/segments",
            "/records",
            "/records/{name}",
            "/reservations",
            "/reservations/{mac}",
            "/events",
            "/openapi.json",
        ] {
            assert!(v["paths"].get(p).is_some(), "{p} missing");
        }
    }

    /// `--api` takes unix:PATH only.
    #[test]
    fn api_addr() {
        assert_eq!(parse_addr("unix:/a/b").unwrap(), PathBuf::from("/a/b"));
        assert!(parse_addr("/a/b").unwrap_err().to_string().contains("--api"));
        assert!(parse_addr("unix:").is_err());
    }
}
