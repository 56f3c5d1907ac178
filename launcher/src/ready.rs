//! Is a node's sshd up? `vmlan up` returns only when each node's forwarded ssh
//! port (127.0.0.1:PORT, QEMU's SLIRP `hostfwd` to the guest's port 22) sends an
//! SSH identification string, so the first `vmlan ssh` after `up` logs in.
//!
//! A TCP connect alone proves nothing: SLIRP accepts on the host side at once
//! and only then connects to the guest, closing the host side when the guest
//! refuses. So the probe keeps one non-blocking connection per node and reads:
//! `SSH-` at the start of a line (RFC 4253 section 4.2: the server sends
//! `SSH-protoversion-softwareversion`, possibly after other lines) means ready;
//! end of file or an error means not yet (reconnect on the next poll); a
//! connection silent for [`SILENT_LIMIT`] is dropped and made again. The probe
//! never sends anything, and closes its connection once it has seen the banner.

use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a connection may stay silent before the probe makes a new one.
pub const SILENT_LIMIT: Duration = Duration::from_secs(20);

/// Most bytes kept while looking for the banner (RFC 4253 4.2 caps a line at 255).
const MAX_PREFIX: usize = 4096;

/// One node's sshd probe on 127.0.0.1:`port`; call [`SshProbe::poll`] now and then.
#[derive(Debug)]
pub struct SshProbe {
    addr: SocketAddr,
    conn: Option<(TcpStream, Instant, Vec<u8>)>,
    ready: bool,
}

impl SshProbe {
    /// A probe of 127.0.0.1:`port` (TCP, host byte order port number).
    pub fn new(port: u16) -> SshProbe {
        SshProbe {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            conn: None,
            ready: false,
        }
    }

    /// Advances the probe without blocking for more than a connect to loopback
    /// (at most 1 s); true once the port has sent an SSH identification string
    /// (and from then on). Connection errors are not errors here: they mean "not yet".
    pub fn poll(&mut self) -> bool {
        if self.ready {
            return true;
        }
        if self.conn.is_none() {
            let Ok(s) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)) else {
                return false;
            };
            if s.set_nonblocking(true).is_err() {
                return false;
            }
            self.conn = Some((s, Instant::now(), vec![]));
        }
        let Some((s, since, got)) = self.conn.as_mut() else {
            return false;
        };
        let mut buf = [0u8; 512];
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    self.conn = None;
                    return false;
                }
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if has_banner(got) {
                        self.ready = true;
                        self.conn = None;
                        return true;
                    }
                    if got.len() > MAX_PREFIX {
                        self.conn = None;
                        return false;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if since.elapsed() > SILENT_LIMIT {
                        self.conn = None;
                    }
                    return false;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.conn = None;
                    return false;
                }
            }
        }
    }
}

/// True when `got` holds a line starting with `SSH-` (RFC 4253 4.2).
fn has_banner(got: &[u8]) -> bool {
    got.starts_with(b"SSH-") || got.windows(5).any(|w| w == b"\nSSH-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    fn wait(p: &mut SshProbe, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if p.poll() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn a_banner_after_other_lines_is_ready() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"hello\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(100));
            s.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(300));
        });
        let mut p = SshProbe::new(port);
        assert!(wait(&mut p, Duration::from_secs(5)));
        assert!(p.poll(), "stays ready");
        t.join().unwrap();
    }

    #[test]
    fn closed_or_not_ssh_is_not_ready_and_it_reconnects() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            // Like SLIRP before the guest listens: accept, then close at once.
            for _ in 0..3 {
                let (s, _) = l.accept().unwrap();
                drop(s);
            }
            // Something else than sshd.
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"vmtest-hello\n").unwrap();
            drop(s);
            // Then sshd.
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"SSH-2.0-x\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(300));
        });
        let mut p = SshProbe::new(port);
        assert!(wait(&mut p, Duration::from_secs(10)));
        t.join().unwrap();
        assert!(!has_banner(b"vmtest-hello\n"));
        assert!(!has_banner(b"xSSH-2.0"));
    }

    #[test]
    fn nothing_listening_is_not_ready() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut p = SshProbe::new(port);
        assert!(!p.poll());
        assert!(!p.poll());
    }
}
