//! DNS on the segment and for the host side: the server ([`server`], RFC
//! 1034/1035), its local zones ([`zone`]), its answer cache ([`cache`]), its settings and dnsmasq-syntax
//! flag parsers ([`config`]), forwarding to upstream servers ([`forward`],
//! RFC 5452 answer matching) and DNS over TCP on the segment ([`tcp`], RFC
//! 7766, on smoltcp). All sans-IO.

pub mod cache;
pub mod config;
pub mod forward;
pub mod server;
pub mod tcp;
pub mod zone;

pub use server::{ptr_name, Client, DnsAction, DnsServer, DnsStats, Failover, Forward, Transport};
