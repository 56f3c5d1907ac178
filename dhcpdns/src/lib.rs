//! vmlan's own host on the segment: ARP, ICMP echo, a DHCP server with
//! MAC-keyed leases and a DNS server for host records and lease names. All
//! protocol logic is sans-IO: functions and state machines that take bytes
//! (a frame, a datagram) and return the bytes to send.
//!
//! - [`config`]: settings and the dnsmasq-syntax flag parsers.
//! - [`host`]: the host, dispatching frames to the protocols below.
//! - [`arp`], [`icmp`]: ARP replies (RFC 826) and echo replies (RFC 792).
//! - [`dhcp`]: the DHCP server (RFC 2131/2132).
//! - [`dns`]: the DNS server (RFC 1035, on hickory-server's catalog).
//! - [`dns_cache`]: its cache of local answers, by the query's bytes.
//! - [`dns_config`]: the DNS flags (`--cname`, `--srv-host`, `--address`, `--server`, `--local`).
//! - [`dns_tcp`]: DNS over TCP on the segment (RFC 7766, on smoltcp).
//! - [`dns_forward`]: forwarding to upstream servers (RFC 5452 answer matching;
//!   SERVFAIL when they fail or stay silent).
//! - [`leases`]: the lease table in dnsmasq's leases-file format (ended leases
//!   remembered as the address their client last had).
//! - [`lease_writer`]: its background writer (journal syncs, exports).

pub mod arp;
pub mod config;
pub mod dhcp;
pub mod dns;
pub mod dns_cache;
pub mod dns_config;
pub mod dns_forward;
pub mod dns_tcp;
pub mod host;
pub mod icmp;
pub mod lease_writer;
pub mod leases;

pub use config::HostConfig;
pub use host::Host;
