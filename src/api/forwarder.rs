//! gvproxy's forwarder routes (gvisor-tap-vsock, pkg/services/forwarder),
//! over the hub's port forwards (forward_io.rs):
//! - `GET /services/forwarder/all`: `[{"local": "127.0.0.1:2222", "remote":
//!   "10.0.3.5:22", "protocol": "tcp"|"udp"}]`, sorted by local address then protocol;
//! - `POST /services/forwarder/expose` `{"local", "remote", "protocol"?}`
//!   (protocol `tcp` when absent or empty, as gvproxy): 200 with the row;
//! - `POST /services/forwarder/unexpose` `{"local", "protocol"?}`: 200 `{"removed": 1}`.
//!
//! Where gvproxy answers 500 with text, vmlan answers JSON naming the field:
//! 400 for a bad member or a guest outside the hub's `--addr` prefix or a
//! local address that cannot be listened on, 409 for a forward already on
//! that address (or a hub without a host), 404 for unexposing none. Unknown
//! members are refused (400 naming them). `local` is `ADDR:PORT`, or a
//! `PORT`/`:PORT` meaning 127.0.0.1 (gvproxy's `:PORT` would be every address:
//! vmlan keeps forwards on loopback unless told an address).
//!
//! Forwards exposed here are written to `--api-state` (state.rs, an
//! `expose=PROTO:LOCAL=REMOTE` line) before the 200 answer, and unexpose
//! removes the line first, under the API's state lock as reservations and
//! records are (the segment's lock is never held across the write); a file
//! that cannot be written gets 500 naming `api-state`, and nothing changes.
//! The `--expose` flags' forwards are never written: they come back from
//! the flags (unexposing one lasts until the hub restarts).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{bad, body_json, persist, Api, Refused};
use crate::forward_io::{self, ExposeError, Proto};

/// Most forwards the API adds (and `--api-state` holds) at once; more get
/// 400 naming `local`.
pub const MAX_FORWARDS: usize = 1024;

/// The forwarder's routes, to merge into the API's router.
pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/services/forwarder/all", get(all))
        .route("/services/forwarder/expose", post(expose))
        .route("/services/forwarder/unexpose", post(unexpose))
}

/// One forward as gvproxy's JSON.
fn row(s: &forward_io::Spec) -> Value {
    json!({"local": s.local.to_string(), "remote": s.remote.to_string(), "protocol": s.protocol.name()})
}

/// `GET /services/forwarder/all`.
async fn all() -> Response {
    let rows: Vec<Value> = forward_io::installed()
        .map(|f| f.all())
        .unwrap_or_default()
        .iter()
        .map(row)
        .collect();
    Json(rows).into_response()
}

/// The body as an object whose members are all in `allowed`, or the 400 answer.
fn object(body: &Result<Bytes, BytesRejection>, allowed: &[&str]) -> Result<Value, Refused> {
    let v = body_json(body)?;
    let Some(m) = v.as_object() else {
        let e = format!("expected an object with members {}", allowed.join(", "));
        return Err(Box::new(bad("body", e)));
    };
    if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Box::new(bad(k, format!("unknown member ({})", allowed.join(", ")))));
    }
    Ok(v)
}

/// A required string member.
fn string<'a>(v: &'a Value, key: &str) -> Result<&'a str, Refused> {
    match v.get(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(Box::new(bad(key, "missing"))),
        Some(_) => Err(Box::new(bad(key, "must be a string"))),
    }
}

/// The `protocol` member: `tcp` (also when absent or empty) or `udp`.
fn protocol(v: &Value) -> Result<Proto, Refused> {
    match v.get("protocol") {
        None | Some(Value::Null) => Ok(Proto::Tcp),
        Some(Value::String(s)) if s.is_empty() => Ok(Proto::Tcp),
        Some(Value::String(s)) => {
            Proto::parse(s).ok_or_else(|| Box::new(bad("protocol", format!("{s:?}: expected tcp or udp"))))
        }
        Some(_) => Err(Box::new(bad("protocol", "must be a string: tcp or udp"))),
    }
}

/// The `local` member, parsed ([`forward_io::parse_local`]).
fn local(v: &Value) -> Result<std::net::SocketAddr, Refused> {
    forward_io::parse_local(string(v, "local")?).map_err(|e| Box::new(bad("local", e)))
}

/// The expose body's forward.
fn spec(v: &Value) -> Result<forward_io::Spec, Refused> {
    let local = local(v)?;
    let remote = forward_io::parse_remote(string(v, "remote")?).map_err(|e| Box::new(bad("remote", e)))?;
    Ok(forward_io::Spec {
        protocol: protocol(v)?,
        local,
        remote,
    })
}

/// `POST /services/forwarder/expose`: listens, then writes the forward to
/// `--api-state` (a failed write closes the listener again: 500).
async fn expose(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> Response {
    let spec = match object(&body, &["local", "remote", "protocol"]).and_then(|v| spec(&v)) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Some(f) = forward_io::installed() else {
        return conflict("remote", &ExposeError::NoHost);
    };
    let same = |o: &forward_io::Spec| o.local == spec.local && o.protocol == spec.protocol;
    let mut st = api.state.lock().await;
    if st.forwards.len() >= MAX_FORWARDS && !st.forwards.iter().any(same) {
        return bad("local", format!("at most {MAX_FORWARDS} forwards through the API"));
    }
    match f.expose(spec) {
        Ok(()) => {}
        Err(e @ (ExposeError::Exists(_) | ExposeError::NoHost)) => return conflict(e.field(), &e),
        Err(e) => return bad(e.field(), &e),
    }
    // A line kept from start-up that could not be installed then is replaced.
    let mut next = st.clone();
    next.forwards.retain(|o| !same(o));
    next.forwards.push(spec);
    if let Err(e) = persist(&api, &next).await {
        f.unexpose(spec.protocol, spec.local).await;
        return *e;
    }
    *st = next;
    Json(row(&spec)).into_response()
}

/// A 409 answer naming the field.
fn conflict(field: &str, e: &ExposeError) -> Response {
    (
        StatusCode::CONFLICT,
        Json(json!({"error": e.to_string(), "field": field})),
    )
        .into_response()
}

/// `POST /services/forwarder/unexpose`: removes the forward's line from
/// `--api-state` (when there is one; 500 if the file cannot be written, and
/// the forward stays), then closes its listener. A line kept from start-up
/// that was not installed is removed too (200).
async fn unexpose(State(api): State<Api>, body: Result<Bytes, BytesRejection>) -> Response {
    let found = object(&body, &["local", "protocol"]).and_then(|v| Ok((local(&v)?, protocol(&v)?)));
    let (local, proto) = match found {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let mut st = api.state.lock().await;
    let saved = st.forwards.iter().position(|o| o.local == local && o.protocol == proto);
    if let Some(i) = saved {
        let mut next = st.clone();
        next.forwards.remove(i);
        if let Err(e) = persist(&api, &next).await {
            return *e;
        }
        *st = next;
    }
    let removed = match forward_io::installed() {
        Some(f) => f.unexpose(proto, local).await,
        None => false,
    };
    match removed || saved.is_some() {
        true => Json(json!({"removed": 1})).into_response(),
        false => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no {} forward listens on {local}", proto.name()), "field": "local"})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// The OpenAPI document describes the three routes, each body refusing
    /// unknown members, and the changes' persistence.
    #[test]
    fn openapi_has_the_forwarder_routes() {
        let v: Value = serde_json::from_str(super::super::OPENAPI).unwrap();
        for (p, m) in [
            ("/services/forwarder/all", "get"),
            ("/services/forwarder/expose", "post"),
            ("/services/forwarder/unexpose", "post"),
        ] {
            assert!(v["paths"][p][m].is_object(), "{p} {m} missing");
        }
        // Both changes go to --api-state, and say so; a failed write is 500.
        for p in ["/services/forwarder/expose", "/services/forwarder/unexpose"] {
            let op = &v["paths"][p]["post"];
            assert!(op["summary"].as_str().unwrap().contains("--api-state"), "{p}");
            assert!(op["responses"]["500"].is_object(), "{p}: no 500");
        }
        for s in ["ExposeRequest", "UnexposeRequest"] {
            assert_eq!(v["components"]["schemas"][s]["additionalProperties"], false, "{s}");
        }
    }
}
