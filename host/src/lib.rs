//! vmlan's own host on the segment: ARP, ICMP echo, IPv6 neighbour discovery,
//! ICMPv6 echo and router advertisements, a DHCP server with
//! MAC-keyed leases and a DNS server for host records and lease names. All
//! of it is sans-IO, deterministic, with no files, threads or clocks: the host
//! takes frames and the current time ([`Host::handle_frame`],
//! [`Host::handle_timeout`] when [`Host::poll_timeout`] says), returns the
//! frames to send, and hands its driver what must go elsewhere: lease changes
//! to persist ([`Host::take_lease_changes`]) and DNS queries to forward
//! ([`Host::take_dns_forwards`]).
//!
//! - [`config`]: the host's settings; the flag parsers (dnsmasq syntax) of
//!   every protocol are re-exported there.
//! - [`host`]: the host, dispatching frames to the protocols below.
//! - [`hostsfile`]: the hosts and DHCP hosts files (`--addn-hosts`,
//!   `--dhcp-hostsfile`), parsed from their text.
//! - [`arp`], [`icmp`]: ARP replies (RFC 826) and echo replies (RFC 792).
//! - [`ipv6`]: the host's IPv6 addresses (link-local and per IPv6 range, from
//!   its MAC) and the IPv6 `--dhcp-range` form.
//! - [`ndp`], [`icmpv6`], [`ra`]: Neighbor Advertisements for the host's
//!   addresses (RFC 4861, 4862), ICMPv6 echo (RFC 4443), router
//!   advertisements (RFC 4861 section 6.2, RFC 8106) with `--enable-ra`.
//! - [`slaac_names`]: AAAA and PTR records for the SLAAC addresses stations
//!   are seen using (DAD probes, neighbour advertisements, packets to the
//!   host), under the station's DHCP name.
//! - [`dhcp`]: the DHCP server (RFC 2131/2132): server, pool, replies, flags.
//! - [`dhcp6`]: the DHCPv6 server (RFC 8415): server, pool, its config
//!   (built from the host's flags by `Dhcp6Config::from_host`; driven by [`Host`]).
//! - [`dns`]: the DNS server (RFC 1035): server, zones, cache, flags, forwarding, TCP.
//! - [`forward`]: `--expose` port forwards, the segment's half: TCP
//!   connections and UDP flows from the host's address to guests (smoltcp).
//! - [`leases`]: the lease table and its files' formats (dnsmasq's leases
//!   file, the journal).
//!
//! Layers, in one direction: this crate uses vmlan-hub's frame types; the
//! vmlan-store crate and the `vmlan` binary drive it (files, sockets, time).

pub mod arp;
pub mod config;
pub mod dhcp;
pub mod dhcp6;
pub mod dns;
pub mod forward;
pub mod host;
pub mod hostsfile;
pub mod icmp;
pub mod icmpv6;
pub mod ipv6;
pub mod leases;
pub mod ndp;
pub mod ra;
pub mod slaac_names;
mod smol_queue;

pub use config::HostConfig;
pub use host::{Host, ReservationSource};
