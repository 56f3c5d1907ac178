//! Socket plumbing shared by the ports and by the `vmlan` binary's DNS
//! listeners (src/dns_io.rs): everything here is I/O helpers without switching
//! logic, so one policy serves every socket.
//!
//! - [`mmsg`]: batched datagram I/O (`recvmmsg(2)`, `sendmmsg(2)`, UDP GSO),
//!   allocation-free per call, and [`mmsg::RECV_BATCH`].
//! - [`addr`]: endpoint parsing (`unix:PATH` or `SCHEME:HOST:PORT`), name
//!   resolution for binding, the `SocketAddr` of a kernel socket address
//!   ([`addr::inet`]).
//! - [`unix`]: unix socket paths ([`unix::clear_stale_socket`]).
//! - [`prefix`]: one big-endian length-prefix writer for every prefixed
//!   stream: QEMU's 4-byte frame prefix (framing.rs) and DNS over TCP's
//!   2-byte message prefix (RFC 1035 section 4.2.2): [`prefix::put_prefixed`].
//! - [`coalesce`]: the wake-up coalescing of busy readers (stream ports, DNS
//!   listeners): [`coalesce::Coalescer`].
//! - [`retry`]: backoff and rate-limited logs for accept and receive loops.

pub mod addr;
pub mod coalesce;
pub mod mmsg;
pub mod prefix;
pub mod retry;
pub mod unix;
