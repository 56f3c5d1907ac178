//! DHCPv6 (RFC 8415), sans-IO: a stateful server for the segment's guests,
//! leasing addresses (IA_NA) from pools and reservations and answering
//! configuration requests. The host (host.rs) drives it: it builds the
//! configuration ([`Dhcp6Config::from_host`]), hands it the UDP 547
//! datagrams, sends the replies, runs its timers and turns its lease events
//! into DNS records and lease-file changes (see [`server`] for the driver's
//! part).
//!
//! - [`config`]: the server's settings ([`Dhcp6Config`]: pools, reservations,
//!   DNS servers, domain search list, Rapid Commit) and the DUID helpers
//!   ([`duid_ll`], [`duid_mac`]; DUIDs are RFC 8415 section 11).
//! - [`server`]: [`Dhcp6Server`], the message exchanges of RFC 8415 section 18.3
//!   (SOLICIT, REQUEST, RENEW, REBIND, CONFIRM, RELEASE, DECLINE,
//!   INFORMATION-REQUEST), its lease records, timers and events.
//! - [`pool`]: address choice inside the pools.
//! - `wire`: the checks a message passes before it is decoded (RFC 8415
//!   section 16, and the option lengths of section 21), so that malformed
//!   input is dropped, never a panic.
//!
//! Messages are decoded and encoded with dhcproto's `v6` module. The lease
//! records are [`crate::leases::Lease6`], the lines of dnsmasq's leases file.

pub mod config;
pub mod pool;
pub mod server;
mod wire;

pub use config::{duid_ll, duid_mac, Dhcp6Config, Pool6, Reservation6, DEFAULT_PREFERENCE, MAX_OFFERS, MAX_RECORDS};
pub use server::{Dhcp6Server, Dhcp6Stats, EndReason, Lease6Event, DECLINE_HOLD, MAX_ADDRS, MAX_IAS, OFFER_HOLD};
