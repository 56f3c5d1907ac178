//! Socket addresses: the endpoints named on the command line (`--stream`,
//! `--connect`, `--dgram`: `unix:PATH` or `SCHEME:HOST:PORT`, SCHEME being
//! `tcp` or `udp`), resolving `HOST:PORT` for a bind, and the `SocketAddr` of
//! an address the kernel reports (`recvmmsg(2)` sources).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use nix::sys::socket::SockaddrStorage;

/// An endpoint as written on the command line, before any resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `unix:PATH`: a unix socket path (not empty).
    Unix(PathBuf),
    /// `SCHEME:HOST:PORT`: the `HOST:PORT` part, kept as written (a name is
    /// resolved when binding or dialing; an IPv6 host is in brackets).
    Inet(String),
}

impl Endpoint {
    /// Parses `unix:PATH` or `SCHEME:HOST:PORT` (`scheme` is `tcp` or `udp`;
    /// HOST is not empty, PORT is a number from 0 to 65535).
    ///
    /// # Errors
    /// A message quoting `s` and saying what was expected.
    pub fn parse(s: &str, scheme: &str) -> Result<Endpoint, String> {
        if let Some(p) = s.strip_prefix("unix:").filter(|p| !p.is_empty()) {
            return Ok(Endpoint::Unix(PathBuf::from(p)));
        }
        let Some(a) = s.strip_prefix(scheme).and_then(|r| r.strip_prefix(':')) else {
            return Err(format!("{s:?}: expected unix:PATH or {scheme}:HOST:PORT"));
        };
        match a.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(Endpoint::Inet(a.to_string())),
            _ => Err(format!("{s:?}: expected {scheme}:HOST:PORT")),
        }
    }
}

/// The first address `host_port` (`HOST:PORT`, a name or an address)
/// resolves to, for a bind.
///
/// # Errors
/// The resolver's error, or `NotFound` when it returns no address.
pub fn resolve(host_port: &str) -> io::Result<SocketAddr> {
    host_port
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host_port} resolves to nothing")))
}

/// The `SocketAddr` of an IPv4 or IPv6 socket address from the kernel (a
/// datagram's source); `None` for any other family (unix, unnamed).
pub fn inet(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("unix:/tmp/a", "tcp"),
            Ok(Endpoint::Unix("/tmp/a".into()))
        );
        assert_eq!(Endpoint::parse("udp:h:1", "udp"), Ok(Endpoint::Inet("h:1".into())));
        assert_eq!(
            Endpoint::parse("tcp:[::1]:5", "tcp"),
            Ok(Endpoint::Inet("[::1]:5".into()))
        );
        for bad in [
            "",
            "unix:",
            "tcp:5",
            "tcp:h:p",
            "tcp:h:70000",
            "udp:h:1",
            "tcpx:h:1",
            "/tmp/a",
        ] {
            assert!(Endpoint::parse(bad, "tcp").is_err(), "{bad}");
        }
    }

    #[test]
    fn kernel_addresses() {
        let v4: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let v6: SocketAddr = "[::1]:53".parse().unwrap();
        assert_eq!(inet(&SockaddrStorage::from(v4)), Some(v4));
        assert_eq!(inet(&SockaddrStorage::from(v6)), Some(v6));
        assert_eq!(
            resolve("127.0.0.1:9").unwrap(),
            "127.0.0.1:9".parse::<SocketAddr>().unwrap()
        );
    }
}
