//! The API's DNS records: `GET /records` (every published record, with
//! whether the API added it), `POST /records` (A, AAAA, CNAME, SRV and PTR,
//! as `--host-record`, `--cname`, `--srv-host` and dnsmasq's `--ptr-record`:
//! RFC 1035 section 3.3, RFC 2782) and `DELETE /records/{name}[?type=T]`
//! (only records the API added). gvproxy's `POST /services/dns/add` adds
//! through [`add_records`] too. Every change is written to `--api-state`
//! (state.rs) before it is answered; without it, changes last until the hub
//! stops.

use std::collections::HashMap;
use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use vmlan_host::config::check_hostname;
use vmlan_host::dns::config::{reverse_addr, SrvHost};

use super::state::ApiRecord;
use super::{bad, body_json, conflict, not_found, persist, str_field, Api, Refused, MAX_RECORDS};

/// The members `POST /records` takes.
const MEMBERS: [&str; 8] = ["name", "type", "ip", "target", "port", "priority", "weight", "ttl"];

/// A `GET /records` row.
fn row(name: &str, rtype: &str, value: &str, ttl: u32, api: bool) -> Value {
    json!({"name": name, "type": rtype, "value": value, "ttl": ttl, "api": api})
}

/// Whether the published record (`name`, `rtype`, `value`) is one of `mine`
/// (under its own name, or the name with `domain` appended).
fn is_mine(mine: &[ApiRecord], domain: Option<&str>, name: &str, rtype: &str, value: &str) -> bool {
    mine.iter().any(|r| {
        let n = r.name();
        r.rtype() == rtype && r.value() == value && (n == name || domain.is_some_and(|d| format!("{n}.{d}") == name))
    })
}

/// `GET /records`: every published record but the zones' SOAs, sorted by
/// name and type: `[{name, type, value, ttl, api}]` (see [`ApiRecord::value`]
/// for the value's form), `api` true for those the API added.
pub(super) async fn records_list(State(api): State<Api>) -> Response {
    let all = api.seg.with_host(|d| d.host.dns_mut().records());
    let mine = api.state.lock().await.records.clone();
    let domain = api.cfg.domain.as_deref();
    let v: Vec<Value> = all
        .iter()
        .map(|(n, t, v, ttl)| {
            let t = t.to_string();
            row(n, &t, v, *ttl, is_mine(&mine, domain, n, &t, v))
        })
        .collect();
    Json(v).into_response()
}

/// Checks that `r` can join the published records: not the API's already,
/// and no CNAME shares its owner with other records (RFC 1034 section 3.6.2).
fn clash(api: &Api, mine: &[ApiRecord], r: &ApiRecord) -> Option<String> {
    if mine.contains(r) {
        return Some(format!("the API already has the {} record {}", r.rtype(), r.name()));
    }
    let name = r.name();
    let mut owners = vec![name.clone()];
    if let (false, Some(d)) = (name.contains('.'), &api.cfg.domain) {
        owners.push(format!("{name}.{d}"));
    }
    let all = api.seg.with_host(|d| d.host.dns_mut().records());
    let cname = r.rtype() == "CNAME";
    all.iter()
        .find(|(n, t, _, _)| owners.contains(n) && (cname || t.to_string() == "CNAME"))
        .map(|(n, t, _, _)| format!("{n} already has a {t} record; a CNAME must be alone at its name"))
}

/// Adds `recs` to the API's records (refused whole past [`MAX_RECORDS`]):
/// written to `--api-state`, then published. Each A/AAAA name must be a
/// hostname (`field` is named otherwise); it is kept lower-cased.
///
/// # Errors
/// The answer to send: 400 past the cap or for a bad name, 500 when the
/// state file cannot be written.
pub(super) async fn add_records(api: &Api, mut recs: Vec<ApiRecord>, field: &str) -> Result<(), Refused> {
    for r in &mut recs {
        if let ApiRecord::Host { name, .. } = r {
            *name = check_hostname(name).map_err(|e| Box::new(bad(field, e)))?;
        }
    }
    let mut st = api.state.lock().await;
    // A zone posted again keeps one entry: the same one is not added twice,
    // and a new DefaultIP replaces the old.
    let mut replaced = Vec::new();
    let mut next = st.clone();
    recs.retain(|r| {
        let ApiRecord::Zone { name, .. } = r else { return true };
        match next
            .records
            .iter()
            .position(|o| matches!(o, ApiRecord::Zone { name: n, .. } if n == name))
        {
            Some(i) if next.records[i] == *r => false,
            Some(i) => {
                replaced.push(next.records.remove(i));
                true
            }
            None => true,
        }
    });
    if next.records.len() + recs.len() > MAX_RECORDS {
        return Err(Box::new(bad(
            "records",
            format!("at most {MAX_RECORDS} records through the API"),
        )));
    }
    next.records.extend(recs.iter().cloned());
    persist(api, &next).await?;
    api.seg.with_host(|d| {
        for r in &replaced {
            r.withdraw(d.host.dns_mut());
        }
        for r in &recs {
            r.publish(d.host.dns_mut());
        }
    });
    *st = next;
    Ok(())
}

/// A member that must be a whole number from `lo` to `hi`, or absent.
fn number(v: &Value, key: &str, lo: u64, hi: u64) -> Result<Option<u64>, Refused> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(n) => match n.as_u64().filter(|n| (lo..=hi).contains(n)) {
            Some(n) => Ok(Some(n)),
            None => Err(Box::new(bad(key, format!("must be an integer from {lo} to {hi}")))),
        },
    }
}

/// A hostname member (lower-cased, without the trailing dot).
fn hostname(v: &Value, key: &str) -> Result<String, Refused> {
    let s = str_field(v, &[key], key)?;
    check_hostname(s).map_err(|e| Box::new(bad(key, e)))
}

/// Refuses the members of `v` a record of type `rtype` does not take.
fn only(v: &Value, rtype: &str, allowed: &[&str]) -> Result<(), Refused> {
    let extra = v
        .as_object()
        .and_then(|m| m.iter().find(|(k, x)| !allowed.contains(&k.as_str()) && !x.is_null()));
    match extra {
        Some((k, _)) => Err(Box::new(bad(k, format!("a {rtype} record takes no {k}")))),
        None => Ok(()),
    }
}

/// The record a `POST /records` body describes.
fn parse_record(v: &Value) -> Result<ApiRecord, Refused> {
    if let Some(k) = v
        .as_object()
        .and_then(|m| m.keys().find(|k| !MEMBERS.contains(&k.as_str())))
    {
        return Err(Box::new(bad(k, format!("unknown member ({})", MEMBERS.join(", ")))));
    }
    let rtype = match v.get("type") {
        None | Some(Value::Null) if v.get("ip").is_some_and(|i| !i.is_null()) || v.get("target").is_none() => {
            // A or AAAA, from the address.
            None
        }
        None | Some(Value::Null) => {
            return Err(Box::new(bad(
                "type",
                "missing (A, AAAA, CNAME, SRV or PTR; A/AAAA may be inferred from ip)",
            )))
        }
        Some(Value::String(t)) => Some(t.to_ascii_uppercase()),
        Some(_) => return Err(Box::new(bad("type", "must be a string"))),
    };
    let ttl = number(v, "ttl", 0, u64::from(u32::MAX))?.map_or(0, |t| t as u32);
    match rtype.as_deref() {
        None | Some("A" | "AAAA") => {
            only(v, "A/AAAA", &["name", "type", "ip", "ttl"])?;
            let name = hostname(v, "name")?;
            let ip = match str_field(v, &["ip"], "ip")?.parse::<IpAddr>() {
                Ok(ip) => ip,
                Err(_) => return Err(Box::new(bad("ip", "not an IPv4 or IPv6 address"))),
            };
            match (rtype.as_deref(), ip) {
                (Some("A"), IpAddr::V6(_)) => return Err(Box::new(bad("ip", "an A record needs an IPv4 address"))),
                (Some("AAAA"), IpAddr::V4(_)) => {
                    return Err(Box::new(bad("ip", "an AAAA record needs an IPv6 address")))
                }
                _ => {}
            }
            Ok(ApiRecord::Host { name, ip, ttl })
        }
        Some("CNAME") => {
            only(v, "CNAME", &["name", "type", "target", "ttl"])?;
            let alias = hostname(v, "name")?;
            let target = hostname(v, "target")?;
            if alias == target {
                return Err(Box::new(bad("target", "an alias cannot be its own target")));
            }
            Ok(ApiRecord::Cname { alias, target, ttl })
        }
        Some("SRV") => {
            only(
                v,
                "SRV",
                &["name", "type", "target", "port", "priority", "weight", "ttl"],
            )?;
            if ttl != 0 {
                return Err(Box::new(bad("ttl", "an SRV record's TTL is 0, as --srv-host's")));
            }
            let name = hostname(v, "name")?;
            let target = match v.get("target") {
                None | Some(Value::Null) => None,
                Some(Value::String(t)) if t == "." => None,
                Some(_) => Some(hostname(v, "target")?),
            };
            let n = |k: &str, default: u16| -> Result<u16, Refused> {
                Ok(number(v, k, 0, 65535)?.map_or(default, |x| x as u16))
            };
            Ok(ApiRecord::Srv(SrvHost {
                name,
                target,
                port: n("port", 1)?,
                priority: n("priority", 0)?,
                weight: n("weight", 0)?,
            }))
        }
        Some("PTR") => {
            only(v, "PTR", &["name", "type", "target", "ttl"])?;
            if ttl != 0 {
                return Err(Box::new(bad(
                    "ttl",
                    "a PTR record's TTL is 0, as dnsmasq's --ptr-record",
                )));
            }
            let name = str_field(v, &["name"], "name")?;
            let Some(ip) = name.parse::<IpAddr>().ok().or_else(|| reverse_addr(name)) else {
                return Err(Box::new(bad(
                    "name",
                    format!(
                        "{name:?}: a PTR's name is an address or its reverse name (d.c.b.a.in-addr.arpa, or .ip6.arpa)"
                    ),
                )));
            };
            let target = hostname(v, "target")?;
            Ok(ApiRecord::Ptr { ip, target })
        }
        Some(t) => Err(Box::new(bad(
            "type",
            format!("{t:?}: expected A, AAAA, CNAME, SRV or PTR"),
        ))),
    }
}

/// `POST /records`: `{"name", "type"?, "ip"?, "target"?, "port"?,
/// "priority"?, "weight"?, "ttl"?}`. A and AAAA (`type` may be left out:
/// inferred from `ip`) publish the name and its PTR; CNAME `name` ->
/// `target`; SRV at `name` (a name of `_` labels gets `--domain`) to
/// `target` (absent or `.`: "no service"), `port` (default 1), `priority`,
/// `weight` (default 0); PTR at `name` (an address, or its
/// `in-addr.arpa`/`ip6.arpa` name) to `target`. `ttl` (seconds, default
/// 0) for A, AAAA and CNAME only. 201 with the `GET /records` row. A member
/// a type does not take, a bad value or an unknown member: 400 naming it;
/// the same record again, a CNAME at a name with records, or a record at a
/// CNAME's name: 409 naming `name`. Written to `--api-state` before the
/// answer (500 naming `api-state` when it cannot be).
pub(super) async fn records_add(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> Response {
    let v = match body_json(&body) {
        Ok(v) if v.is_object() => v,
        Ok(_) => {
            return bad(
                "body",
                "expected an object {\"name\", \"type\", \"ip\"|\"target\", ...}",
            )
        }
        Err(r) => return *r,
    };
    let r = match parse_record(&v) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    if !r.round_trips() {
        return bad("name", "cannot be written to --api-state and read back the same");
    }
    {
        let mine = api.state.lock().await.records.clone();
        if let Some(why) = clash(&api, &mine, &r) {
            return conflict("name", why);
        }
    }
    match add_records(&api, vec![r.clone()], "name").await {
        Ok(()) => (
            StatusCode::CREATED,
            Json(row(&r.name(), r.rtype(), &r.value(), r.ttl(), true)),
        )
            .into_response(),
        Err(e) => *e,
    }
}

/// `DELETE /records/{name}[?type=A|AAAA|CNAME|SRV|PTR]`: withdraws the
/// records the API added at `name` (for PTR, the reverse name or the
/// address), of every type or of `type`; 200 with `{"removed": N}`, 404
/// naming `name` when the API added none there (records of the flags,
/// files and leases are never removed here).
pub(super) async fn records_delete(
    State(api): State<Api>,
    name: Result<UrlPath<String>, PathRejection>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let name = match name {
        Ok(UrlPath(n)) => n,
        Err(e) => return bad("name", e.body_text()),
    };
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return bad("query", e.body_text()),
    };
    if let Some(k) = q.keys().find(|k| *k != "type") {
        return bad(k, "unknown parameter (only type)");
    }
    let rtype = q.get("type").map(|t| t.to_ascii_uppercase());
    if let Some(t) = &rtype {
        if !["A", "AAAA", "CNAME", "SRV", "PTR"].contains(&t.as_str()) {
            return bad("type", format!("{t:?}: expected A, AAAA, CNAME, SRV or PTR"));
        }
    }
    let bare = name.trim_end_matches('.').to_ascii_lowercase();
    let as_ptr = bare.parse::<IpAddr>().ok();
    let hit = |r: &ApiRecord| {
        let at = r.name() == bare || matches!(r, ApiRecord::Ptr { ip, .. } if Some(*ip) == as_ptr);
        at && rtype.as_deref().is_none_or(|t| t == r.rtype())
    };
    let mut st = api.state.lock().await;
    let (gone, keep): (Vec<_>, Vec<_>) = st.records.iter().cloned().partition(|r| hit(r));
    if gone.is_empty() {
        return not_found("name", format!("no record added through the API is named {name:?}"));
    }
    let mut next = st.clone();
    next.records = keep;
    if let Err(e) = persist(&api, &next).await {
        return *e;
    }
    api.seg.with_host(|d| {
        for r in &gone {
            r.withdraw(d.host.dns_mut());
        }
    });
    *st = next;
    Json(json!({"removed": gone.len()})).into_response()
}
