//! A small client of the hub's runtime API (`vmlan hub --api unix:PATH`):
//! HTTP/1.1 (RFC 9112) over a unix stream socket, with JSON bodies, built on
//! hyper 1's client connection over tokio's `UnixStream`, run on a
//! current-thread runtime of its own, so callers stay blocking. One
//! connection per request (the API closes idle connections after 30 s).
//! `GET`, `POST` and `DELETE` return the status and the JSON body; an
//! `application/x-ndjson` stream (`GET /events`) is read line by line.
//! Errors name the socket's path and ask whether the hub runs with `--api`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// How long connecting and a whole plain request may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Longest line of an ndjson stream; a longer one is an error.
pub const MAX_LINE: usize = 1024 * 1024;

/// What went wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The socket cannot be reached (no such file, nobody listening, refused).
    #[error("cannot reach the hub's API at {path}: {source} (is the hub running with --api unix:{path}?)")]
    Connect {
        /// The socket's path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The exchange failed after connecting.
    #[error("the hub's API at {path}: {what} (is the hub running with --api unix:{path}?)")]
    Http {
        /// The socket's path.
        path: String,
        /// What failed.
        what: String,
    },
    /// The answer is not JSON (or a stream line is not).
    #[error("the hub's API at {path}: {route}: the answer is not JSON: {what}")]
    NotJson {
        /// The socket's path.
        path: String,
        /// The route asked.
        route: String,
        /// The parser's message.
        what: String,
    },
    /// The API refused the request (status 400 and up), with its `error` and `field`.
    #[error("{method} {route}: {status} {error}{}", field.as_ref().map(|f| format!(" (field {f})")).unwrap_or_default())]
    Refused {
        /// The request's method.
        method: String,
        /// The route.
        route: String,
        /// The HTTP status.
        status: u16,
        /// The answer's `error` (or its body).
        error: String,
        /// The answer's `field`, if any.
        field: Option<String>,
    },
}

/// An answer: the HTTP status and the JSON body (`Null` when empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The body, parsed.
    pub body: Value,
}

/// A client of the API at one socket path.
pub struct ApiClient {
    path: PathBuf,
    rt: tokio::runtime::Runtime,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

impl ApiClient {
    /// A client of the API at `path` (nothing is connected yet).
    ///
    /// # Errors
    /// The runtime cannot be made (out of threads or descriptors).
    pub fn new(path: &Path) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(ApiClient {
            path: path.to_path_buf(),
            rt,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn http(&self, what: impl std::fmt::Display) -> ApiError {
        ApiError::Http {
            path: self.path.display().to_string(),
            what: what.to_string(),
        }
    }

    /// Connects and hands the connection to a task; returns the sender.
    async fn connect(&self) -> Result<Sender, ApiError> {
        let path = self.path.display().to_string();
        let stream = match tokio::time::timeout(TIMEOUT, tokio::net::UnixStream::connect(&self.path)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(ApiError::Connect { path, source }),
            Err(_) => {
                return Err(ApiError::Connect {
                    path,
                    source: std::io::ErrorKind::TimedOut.into(),
                })
            }
        };
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.http(e))?;
        tokio::spawn(conn);
        Ok(sender)
    }

    fn request(method: &str, route: &str, body: Option<&Value>) -> Request<Full<Bytes>> {
        let b = Request::builder()
            .method(method)
            .uri(route)
            .header(hyper::header::HOST, "vmlan");
        let (b, bytes) = match body {
            Some(v) => (
                b.header(hyper::header::CONTENT_TYPE, "application/json"),
                Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
            ),
            None => (b, Bytes::new()),
        };
        b.body(Full::new(bytes))
            .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
    }

    /// Sends `method route` with `body` (JSON) and returns the answer,
    /// whatever its status.
    ///
    /// # Errors
    /// The socket cannot be reached, the exchange fails or takes over
    /// [`TIMEOUT`], or the answer is not JSON.
    pub fn send(&self, method: &str, route: &str, body: Option<&Value>) -> Result<Answer, ApiError> {
        self.rt.block_on(async {
            let fut = async {
                let mut s = self.connect().await?;
                let resp = s
                    .send_request(Self::request(method, route, body))
                    .await
                    .map_err(|e| self.http(e))?;
                let status = resp.status().as_u16();
                let bytes = resp.into_body().collect().await.map_err(|e| self.http(e))?.to_bytes();
                let body = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).map_err(|e| ApiError::NotJson {
                        path: self.path.display().to_string(),
                        route: route.to_string(),
                        what: e.to_string(),
                    })?
                };
                Ok(Answer { status, body })
            };
            match tokio::time::timeout(TIMEOUT, fut).await {
                Ok(r) => r,
                Err(_) => Err(self.http(format!("{method} {route}: no answer within {TIMEOUT:?}"))),
            }
        })
    }

    /// [`ApiClient::send`], with a status of 400 and up as [`ApiError::Refused`].
    ///
    /// # Errors
    /// As [`ApiClient::send`], and the API's refusal.
    pub fn call(&self, method: &str, route: &str, body: Option<&Value>) -> Result<Value, ApiError> {
        let a = self.send(method, route, body)?;
        if a.status < 400 {
            return Ok(a.body);
        }
        let error = match a.body.get("error").and_then(Value::as_str) {
            Some(e) => e.to_string(),
            None => a.body.to_string(),
        };
        Err(ApiError::Refused {
            method: method.to_string(),
            route: route.to_string(),
            status: a.status,
            error,
            field: a.body.get("field").and_then(Value::as_str).map(str::to_string),
        })
    }

    /// `GET route`, refusals as errors.
    ///
    /// # Errors
    /// See [`ApiClient::call`].
    pub fn get(&self, route: &str) -> Result<Value, ApiError> {
        self.call("GET", route, None)
    }

    /// `POST route` with `body`, refusals as errors.
    ///
    /// # Errors
    /// See [`ApiClient::call`].
    pub fn post(&self, route: &str, body: &Value) -> Result<Value, ApiError> {
        self.call("POST", route, Some(body))
    }

    /// `DELETE route`, refusals as errors.
    ///
    /// # Errors
    /// See [`ApiClient::call`].
    pub fn delete(&self, route: &str) -> Result<Value, ApiError> {
        self.call("DELETE", route, None)
    }

    /// `GET route` as an ndjson stream: calls `each` with every line's JSON
    /// until it returns false or the stream ends (`Ok` either way). No
    /// timeout: the hub's keep-alive lines come every 15 s.
    ///
    /// # Errors
    /// The socket cannot be reached, the API refuses (400 and up), a line is
    /// not JSON or longer than [`MAX_LINE`], or the connection breaks.
    pub fn stream(&self, route: &str, mut each: impl FnMut(Value) -> bool) -> Result<(), ApiError> {
        self.rt.block_on(async {
            let mut s = self.connect().await?;
            let resp = s
                .send_request(Self::request("GET", route, None))
                .await
                .map_err(|e| self.http(e))?;
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            if status >= 400 {
                let bytes = body.collect().await.map_err(|e| self.http(e))?.to_bytes();
                let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                return Err(ApiError::Refused {
                    method: "GET".into(),
                    route: route.to_string(),
                    status,
                    error: v.get("error").and_then(Value::as_str).unwrap_or("").to_string(),
                    field: v.get("field").and_then(Value::as_str).map(str::to_string),
                });
            }
            let mut buf = BytesMut::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| self.http(e))?;
                let Ok(data) = frame.into_data() else { continue };
                buf.extend_from_slice(data.chunk());
                while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                    let line = buf.split_to(nl + 1);
                    let text = &line[..nl];
                    if text.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let v = serde_json::from_slice(text).map_err(|e| ApiError::NotJson {
                        path: self.path.display().to_string(),
                        route: route.to_string(),
                        what: e.to_string(),
                    })?;
                    if !each(v) {
                        return Ok(());
                    }
                }
                if buf.len() > MAX_LINE {
                    return Err(self.http(format!("{route}: a line over {MAX_LINE} bytes")));
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A missing socket's error names the path and the flag.
    #[test]
    fn missing_socket_names_path_and_flag() {
        let c = ApiClient::new(Path::new("/nonexistent/vmlan.api")).unwrap();
        let e = c.get("/ports").unwrap_err().to_string();
        assert!(e.contains("/nonexistent/vmlan.api") && e.contains("--api"), "{e}");
    }
}
