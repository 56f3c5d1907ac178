//! The hub's own host on the segment, sans-IO: one MAC and one IPv4 address
//! that answer ARP (arp.rs), ICMP echo (icmp.rs), DHCP on UDP 67 (dhcp/) and
//! DNS on UDP and TCP 53 (dns/; TCP through dns/tcp.rs, which runs smoltcp:
//! only TCP frames to the host's IPv4 and IPv6 addresses go there). On IPv6 the host
//! has a link-local address and one per IPv6 `--dhcp-range` (ipv6.rs), which
//! answer Neighbor Solicitations (ndp.rs) and ICMPv6 echo (icmpv6.rs), and
//! with `--enable-ra` it sends router advertisements (ra.rs), unsolicited
//! from its timers and in answer to Router Solicitations. With a range that
//! has DHCPv6 it serves DHCPv6 on UDP 547 (dhcp6/, configured by
//! [`Dhcp6Config::from_host`]); it answers DNS over UDP and TCP at its IPv6
//! addresses. For `--expose` the host also opens TCP connections and UDP
//! flows to guests from its IPv4 address (forward/, a second smoltcp stack):
//! segments and datagrams to the ports it opened them from, and ARP for
//! its address while any is open, go there too. [`Host::handle_frame`]
//! takes an Ethernet frame and the current time and pushes the frames to
//! send; nothing here touches a socket, a file or a clock (the quinn-proto
//! shape: time comes in, [`Host::poll_timeout`] says when
//! [`Host::handle_timeout`] is next due, and what must go elsewhere comes out
//! as events the driver takes).
//!
//! Time: the host is made at an instant with the Unix time of that instant
//! ([`Host::new`]); DHCP's Unix seconds (lease expiries, as in the lease
//! file) are counted from there on the monotonic instants given since.
//!
//! Leases: every change of the lease table (a grant, a renewal, a release, a
//! removal) is recorded, once the driver asked for it
//! ([`crate::leases::LeaseDb::record_changes`]), for the driver to take with
//! [`Host::take_lease_changes`] and persist before it sends the replies of
//! the same batch (the hub's segment calls `LocalHost::end_batch` there). Frames are parsed
//! with etherparse; anything malformed is dropped and counted in [`HostStats`],
//! and so is any frame from a group (multicast, broadcast) or all-zero source
//! MAC, before any protocol sees it: a reply would go to a group and be flooded.
//!
//! The host ties DHCP to DNS: a lease bound with a hostname is published in DNS
//! exactly while it is live: once when granted (renewals add nothing), and
//! withdrawn when it is released, declined, expires, or its client moves to
//! another address or name. DHCPv6 leases likewise: a lease bound with a name
//! (a `--dhcp-host` reservation's) is published as an AAAA record (and
//! its ip6.arpa PTR) from its `Bound` event until its `Ended` one
//! ([`Lease6Event`]). Names configured with `--dhcp-host` and
//! `--host-record` stay whatever their leases do. SLAAC addresses likewise
//! (slaac_names.rs): every Neighbor Solicitation or Advertisement flooded on
//! the segment, and every IPv6 packet to the host, shows an address its
//! source MAC uses; one inside an IPv6 range's prefix is published as an
//! AAAA (and PTR) under the MAC's name (its DHCPv4 lease's, else its
//! `--dhcp-host` reservation's, else its DHCPv6 lease's) while it keeps
//! being seen within the range's lease time (at its end the host probes it
//! with a unicast Neighbor Solicitation). DHCPv6 leases are persisted
//! too: their events become [`LeaseChange::Put6`] and
//! [`LeaseChange::Removed6`] (and the server DUID a
//! [`LeaseChange::ServerDuid6`] first), and the DHCPv6 leases of the table
//! given to [`Host::new`] are restored into the DHCPv6 server.
//!
//! DNS queries from guests for names that are not local are queued for the
//! binary's adapter ([`Host::take_dns_forwards`], which it is woken to drain);
//! the upstream's answer comes back through [`Host::dns_upstream_answer`] as
//! the frames to send to the guest (a UDP datagram, or the answer on the
//! guest's TCP connection). When an upstream fails a query, the adapter says
//! so ([`Host::dns_upstream_failed`], [`Host::dns_upstream_refused`]): the query
//! is queued again for its next server, or its client gets SERVFAIL, returned
//! the same way as an answer. Queries left unanswered get SERVFAIL from the
//! host's timers ([`Host::handle_timeout`]): a guest's as frames switched at
//! once, a host-side client's queued for the adapter ([`Host::take_dns_returns`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use dhcproto::{Decodable, Decoder};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use vmlan_hub::{LocalHost, MacAddr};

use crate::config::{HostConfig, HostRecord, Reservation};
use crate::dhcp::{request_list, Binding, DhcpServer, Ignored};
use crate::dhcp6::{duid_ll, duid_mac, Dhcp6Config, Dhcp6Server, Dhcp6Stats, Lease6Event, Reservation6};
use crate::dns::tcp::{DnsTcp, DnsTcpStats};
use crate::dns::{Client, DnsAction, DnsServer, Failover, Forward, Transport};
use crate::forward::Forwarder;
use crate::icmpv6::Icmpv6In;
use crate::leases::{LeaseChange, LeaseDb};
use crate::ra::{RaConfig, RaTimer};
use crate::slaac_names::{Sighting, SlaacNames, SlaacStats};
use crate::{arp, icmp, icmpv6, ipv6, ndp, ra, slaac_names};

/// UDP port of a DHCP server (RFC 2131 section 4.1).
pub const DHCP_SERVER_PORT: u16 = 67;
/// UDP port of a DHCPv6 server (RFC 8415 section 7.2).
pub const DHCP6_SERVER_PORT: u16 = 547;
/// UDP port of a DHCPv6 client (RFC 8415 section 7.2).
pub const DHCP6_CLIENT_PORT: u16 = 546;
/// All_DHCP_Relay_Agents_and_Servers, `ff02::1:2` (RFC 8415 section 7.1):
/// where clients send their messages.
pub const ALL_DHCP_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
/// UDP port of DNS (RFC 1035 section 4.2.1).
pub const DNS_PORT: u16 = 53;

/// The [`Client::path`] bit of DNS clients on the segment; the low 48 bits hold
/// the client's MAC (UDP) or its connection's id ([`crate::dns::tcp::TcpQuery::conn`],
/// TCP), so a forwarded answer finds its way back.
pub const SEGMENT_PATH: u64 = 1 << 63;

/// The largest DNS answer sent over UDP on the segment, in bytes: a 1500-byte
/// Ethernet payload less the IPv4 and UDP headers (the host does not fragment).
pub const SEGMENT_DNS_MAX: u16 = 1472;

/// Most queries from the segment queued for the adapter to send upstream.
const DNS_QUEUE_MAX: usize = 4096;

/// Where a DNS message for a client goes: an upstream's answer given to
/// [`Host::dns_upstream_answer`], or a SERVFAIL made here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsReturn {
    /// The answer for a client on the segment: this frame, from the host's port 53,
    /// to switch as if the host sent it (`Segment::ingress` on `HOST_PORT`).
    Frame(Vec<u8>),
    /// The answer for a client on the segment over TCP: these frames (TCP
    /// segments from the host's port 53, none when the connection is gone), to
    /// switch in order as if the host sent them.
    Frames(Vec<Vec<u8>>),
    /// The answer for a client on the host side, with the client it goes to.
    Client(Client, Vec<u8>),
}

/// Counters of the host.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HostStats {
    /// ARP replies sent.
    pub arp_replies: u64,
    /// ICMP echo replies sent.
    pub icmp_replies: u64,
    /// DHCP messages received.
    pub dhcp_in: u64,
    /// DHCP replies sent.
    pub dhcp_out: u64,
    /// DNS queries received on the segment.
    pub dns_in: u64,
    /// Neighbor Advertisements sent (ndp.rs).
    pub ndp_answers: u64,
    /// ICMPv6 echo replies sent (icmpv6.rs).
    pub icmpv6_replies: u64,
    /// Router advertisements sent, unsolicited and answers (ra.rs).
    pub ras_sent: u64,
    /// Frames that did not parse (bad IPv4/IPv6/UDP/ARP headers, lengths that
    /// overrun, ICMPv6 messages to the host with a bad checksum, invalid NDP
    /// messages to it: RFC 4861 sections 6.1.1, 7.1.1).
    pub malformed_frames: u64,
    /// Frames dropped unanswered because their source MAC is a group address
    /// (I/G bit set) or all-zero, which no station sends from (answering would
    /// send to a group, flooded).
    pub bad_source_frames: u64,
    /// UDP 67 datagrams that were not a DHCP message.
    pub malformed_dhcp: u64,
    /// The DHCPv6 server's counters (all zero without one): messages
    /// received, replies sent, malformed, for other servers, ignored,
    /// IAs answered NoAddrsAvail.
    pub dhcp6: Dhcp6Stats,
    /// DNS over TCP on the segment (dns_tcp.rs): connections, queries, malformed input.
    pub dns_tcp: DnsTcpStats,
    /// The observed SLAAC addresses' counters (slaac_names.rs): sightings,
    /// moves, evictions over the caps, refusals, mismatched link-layer options, expiries.
    pub slaac: SlaacStats,
}

/// Decodes a DHCP message; `None` if it is malformed. dhcproto 0.15 asserts some
/// option lengths (`debug_assert!`, e.g. option 94 must be 3 bytes), which panics
/// in debug builds; a packet from the segment must never stop the hub, so any
/// panic of the decoder is caught and the packet counted as malformed.
fn decode_dhcp(payload: &[u8]) -> Option<dhcproto::v4::Message> {
    std::panic::catch_unwind(|| dhcproto::v4::Message::decode(&mut Decoder::new(payload)).ok())
        .ok()
        .flatten()
}

/// The (name, address) pairs a host record publishes.
fn record_pairs(r: &HostRecord) -> impl Iterator<Item = (&str, IpAddr)> {
    let ips: Vec<IpAddr> = r
        .ipv4
        .map(IpAddr::V4)
        .into_iter()
        .chain(r.ipv6.map(IpAddr::V6))
        .collect();
    r.names
        .iter()
        .flat_map(move |n| ips.clone().into_iter().map(move |ip| (n.as_str(), ip)))
}

/// `--log-dhcp`: one info line per DHCP message, as dnsmasq's: its type
/// (`DHCPDISCOVER`...), the address it concerns (yiaddr, else ciaddr, else
/// the requested address), the client's MAC, the hostname, the transaction
/// ID and the option codes carried.
fn log_dhcp4(dir: &str, m: &dhcproto::v4::Message) {
    use dhcproto::v4::{DhcpOption, OptionCode};
    let mtype = match m.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(t)) => format!("DHCP{t:?}").to_uppercase(),
        _ => "BOOTP".into(),
    };
    let ip = [m.yiaddr(), m.ciaddr()]
        .into_iter()
        .find(|a| !a.is_unspecified())
        .or_else(|| match m.opts().get(OptionCode::RequestedIpAddress) {
            Some(DhcpOption::RequestedIpAddress(a)) => Some(*a),
            _ => None,
        });
    let name = match m.opts().get(OptionCode::Hostname) {
        Some(DhcpOption::Hostname(h)) => h.as_str(),
        _ => "",
    };
    let mac = m.chaddr().get(..6).map(|c| MacAddr(c.try_into().unwrap_or([0; 6])));
    let mut codes: Vec<u8> = m.opts().iter().map(|(c, _)| u8::from(*c)).collect();
    codes.sort_unstable();
    tracing::info!(
        dir,
        xid = m.xid(),
        options = ?codes,
        "{}",
        format!(
            "{mtype} {}{} {name}",
            ip.map(|a| format!("{a} ")).unwrap_or_default(),
            mac.map(|m| m.to_string()).unwrap_or_default()
        )
        .trim_end()
    );
}

/// `--log-dhcp`: one info line per DHCPv6 message: its type, the client's
/// MAC on the segment, the transaction ID and the option codes.
fn log_dhcp6(dir: &str, mac: MacAddr, payload: &[u8]) {
    use dhcproto::v6;
    let Ok(m) = v6::Message::decode(&mut Decoder::new(payload)) else {
        return;
    };
    let codes: Vec<u16> = m.opts().iter().map(|o| u16::from(v6::OptionCode::from(o))).collect();
    tracing::info!(dir, xid = ?m.xid(), options = ?codes, "DHCPv6 {:?} {mac}", m.msg_type());
}

/// The hub's host.
pub struct Host {
    mac: MacAddr,
    ip: Ipv4Addr,
    /// The host's IPv6 addresses: the link-local one first, then one per IPv6 range.
    ip6: Vec<Ipv6Addr>,
    /// Router advertisements (`--enable-ra` with an IPv6 range) and their schedule.
    ra: Option<(RaConfig, RaTimer)>,
    dhcp: DhcpServer,
    /// The DHCPv6 server, when an IPv6 range has DHCPv6 ([`Dhcp6Config::from_host`]).
    dhcp6: Option<Dhcp6Server>,
    /// Scratch for the DHCPv6 server's lease events.
    events6: Vec<Lease6Event>,
    /// The DHCPv6 lease changes for [`Host::take_lease_changes`]; `None`
    /// when the table given to [`Host::new`] did not record changes.
    changes6: Option<Vec<LeaseChange>>,
    dns: DnsServer,
    /// Queries from the segment (and failovers) to send upstream, drained by the binary's adapter.
    dns_out: Vec<Forward>,
    /// SERVFAILs for host-side clients made by the timers, drained by the adapter.
    dns_back: Vec<DnsReturn>,
    dns_wake: Option<Box<dyn Fn() + Send>>,
    /// DNS over TCP at the host's IPv4 and IPv6 addresses.
    tcp: DnsTcp,
    /// `--expose`: connections and flows from the host's address to guests (forward/).
    forward: Forwarder,
    forward_wake: Option<Box<dyn Fn() + Send>>,
    stats: HostStats,
    /// An instant and the Unix time (seconds) at it: Unix time at `now` is
    /// `epoch.1` plus the whole seconds from `epoch.0` to `now`.
    epoch: (Instant, u64),
    bindings: Vec<Binding>,
    /// The SLAAC addresses seen on the segment per MAC, named after the MAC's name.
    slaac: SlaacNames,
    /// Each MAC's name from its live DHCPv4 lease.
    names4: HashMap<MacAddr, String>,
    /// Each MAC's name from its `--dhcp-host` reservation.
    names_reserved: HashMap<MacAddr, String>,
    /// Each MAC's name from its live DHCPv6 lease (the MAC in its DUID-LL/LLT).
    names6: HashMap<MacAddr, String>,
    /// The `--dhcp-host` reservations of the flags (never replaced).
    flag_reservations: Vec<Reservation>,
    /// `--log-dhcp`: log every DHCP and DHCPv6 message in and out at info level.
    log_dhcp: bool,
    /// The host records and reservations last given to
    /// [`Host::replace_file_entries`] (from `--addn-hosts`, `--dhcp-hostsfile`...).
    file_entries: (Vec<HostRecord>, Vec<Reservation>),
    /// The reservations last given to [`Host::replace_api_reservations`].
    api_reservations: Vec<Reservation>,
}

/// Where a reservation comes from ([`Host::reservations`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationSource {
    /// `--dhcp-host` (and the config file's `dhcp-host`).
    Flag,
    /// `--dhcp-hostsfile` or `--dhcp-hostsdir`, swapped on SIGHUP.
    File,
    /// The runtime API (`POST /reservations`, `--api-state`).
    Api,
}

/// The MACs, DUIDs and addresses reservations hold, to find one that clashes.
#[derive(Default)]
struct ReservedKeys {
    macs: std::collections::HashSet<MacAddr>,
    duids: std::collections::HashSet<Vec<u8>>,
    ips: std::collections::HashSet<IpAddr>,
}

impl ReservedKeys {
    fn clashes(&self, r: &Reservation) -> bool {
        r.mac.is_some_and(|m| self.macs.contains(&m))
            || r.duid.as_ref().is_some_and(|d| self.duids.contains(d))
            || r.ip.is_some_and(|a| self.ips.contains(&IpAddr::V4(a)))
            || r.ip6.is_some_and(|a| self.ips.contains(&IpAddr::V6(a)))
    }

    fn take(&mut self, r: &Reservation) {
        self.macs.extend(r.mac);
        self.duids.extend(r.duid.clone());
        self.ips.extend(r.ip.map(IpAddr::V4));
        self.ips.extend(r.ip6.map(IpAddr::V6));
    }
}

impl Host {
    /// A host for `cfg` (validated), with the leases in `leases`, made at
    /// `now`, which is `unix_now` in Unix seconds (the driver reads both
    /// clocks once; tests pick them). Host records, named reservations and
    /// named leases are published in DNS. The table's DHCPv6 leases
    /// ([`LeaseDb::leases6`]) are restored into the DHCPv6 server (those
    /// expired at `unix_now` as its remembered records), when it has one; its
    /// server DUID is the table's ([`LeaseDb::server_duid6`], 3 to 130 bytes,
    /// RFC 8415 section 11.1), else the DUID-LL of `cfg.mac`.
    pub fn new(cfg: &HostConfig, leases: LeaseDb, now: Instant, unix_now: u64) -> Self {
        let mut dns = DnsServer::new(cfg.net, cfg.domain.as_deref(), &cfg.dns);
        for r in &cfg.host_records {
            for name in &r.names {
                if let Some(v4) = r.ipv4 {
                    dns.add_host(name, IpAddr::V4(v4), r.ttl);
                }
                if let Some(v6) = r.ipv6 {
                    dns.add_host(name, IpAddr::V6(v6), r.ttl);
                }
            }
        }
        for r in &cfg.reservations {
            if let (Some(name), Some(ip)) = (&r.hostname, r.ip) {
                dns.add_host(name, IpAddr::V4(ip), 0);
            }
            if let (Some(name), Some(ip)) = (&r.hostname, r.ip6) {
                dns.add_host(name, IpAddr::V6(ip), 0);
            }
        }
        let link_local = ipv6::link_local(cfg.mac);
        let mut ip6 = vec![link_local];
        for r in &cfg.ranges6 {
            let a = ipv6::address_in(r, cfg.mac);
            if !ip6.contains(&a) {
                ip6.push(a);
            }
        }
        let tcp = DnsTcp::new(cfg.mac, cfg.addr(), &ip6, now);
        let mut slaac = SlaacNames::new(&cfg.ranges6, &ip6);
        let mut names_reserved = HashMap::new();
        for r in &cfg.reservations {
            if let (Some(mac), Some(_)) = (r.mac, r.ip6) {
                slaac.pin(mac);
            }
        }
        for r in &cfg.reservations {
            if let (Some(mac), Some(name)) = (r.mac, &r.hostname) {
                names_reserved.insert(mac, name.clone());
                slaac.set_name(mac, Some(name), &mut dns);
            }
            if let Some(ip6) = r.ip6 {
                slaac.claim(ip6, r.mac.or_else(|| r.duid.as_deref().and_then(duid_mac)), &mut dns);
            }
        }
        // The RA schedule's seed: the MAC, so hubs on one segment differ and a run is reproducible.
        let mut seed = [0u8; 8];
        seed[2..].copy_from_slice(&cfg.mac.0);
        let ra = RaConfig::new(cfg, link_local).map(|c| (c, RaTimer::new(now, u64::from_be_bytes(seed))));
        let mut host = Host {
            mac: cfg.mac,
            ip: cfg.addr(),
            ip6,
            ra,
            dhcp: DhcpServer::new(cfg, LeaseDb::in_memory()),
            // The server DUID is the lease file's `duid` line when it has one, as
            // dnsmasq keeps its own: clients renewing with it (RFC 8415 section
            // 18.3.4: a RENEW names the server) get answers after a restart, a
            // change of the hub's MAC, or a move from dnsmasq; else the DUID-LL of the MAC.
            dhcp6: Dhcp6Config::from_host(cfg).map(|c| {
                let duid = match leases.server_duid6() {
                    Some(d) if (3..=130).contains(&d.len()) => d.to_vec(),
                    _ => duid_ll(cfg.mac),
                };
                Dhcp6Server::new(c, duid)
            }),
            events6: Vec::new(),
            changes6: None,
            dns,
            dns_out: Vec::new(),
            dns_back: Vec::new(),
            dns_wake: None,
            tcp,
            forward: Forwarder::new(cfg.mac, cfg.net, now),
            forward_wake: None,
            stats: HostStats::default(),
            epoch: (now, unix_now),
            bindings: Vec::new(),
            slaac,
            names4: HashMap::new(),
            names_reserved,
            names6: HashMap::new(),
            log_dhcp: false,
            flag_reservations: cfg.reservations.clone(),
            file_entries: (Vec::new(), Vec::new()),
            api_reservations: Vec::new(),
        };
        let loaded: Vec<_> = leases.iter().cloned().collect();
        let loaded6: Vec<_> = leases.leases6().cloned().collect();
        if leases.recording() {
            host.changes6 = Some(Vec::new());
        }
        host.dhcp = DhcpServer::new(cfg, leases);
        for l in loaded {
            host.apply(Binding::Bound(l));
        }
        if let Some(d) = &mut host.dhcp6 {
            if let Some(c) = &mut host.changes6 {
                c.push(LeaseChange::ServerDuid6(d.server_duid().to_vec()));
            }
            d.restore(loaded6, unix_now);
        }
        host.apply6();
        host
    }

    /// `--log-dhcp` and `--log-queries`, as dnsmasq: log each DHCP/DHCPv6
    /// message received and sent (type, addresses, MAC or DUID, name,
    /// transaction ID, options), and each DNS query and its answer
    /// ([`DnsServer::set_log_queries`]), at info level.
    pub fn set_logging(&mut self, dhcp: bool, queries: bool) {
        self.log_dhcp = dhcp;
        self.dns.set_log_queries(queries);
    }

    /// Replaces the host records and reservations that came from files
    /// (`--addn-hosts`, `--hostsdir`, `--dhcp-hostsfile`, `--dhcp-hostsdir`)
    /// with `records` and `reservations`, as dnsmasq does on SIGHUP: the
    /// previous file-given ones are withdrawn from DNS and from the DHCP and
    /// DHCPv6 servers, the new ones published, and the DNS answer cache is
    /// emptied. The reservations of the flags and of the API stay; leases
    /// are untouched (a lease that now conflicts with a reservation runs
    /// until its client's next exchange, see [`Host::replace_api_reservations`]).
    /// `reservations` should be checked against the flags first
    /// ([`HostConfig::accept_file_reservations`]); one whose MAC, DUID or
    /// address a flag's reservation has is ignored all the same. They may
    /// carry an IPv6 part (`[IPv6]`, `id:DUID`), as `--dhcp-host`.
    pub fn replace_file_entries(&mut self, records: Vec<HostRecord>, reservations: Vec<Reservation>) {
        let old_records = std::mem::take(&mut self.file_entries.0);
        for r in &old_records {
            for (name, ip) in record_pairs(r) {
                self.dns.remove_host(name, ip);
            }
        }
        for r in &records {
            for (name, ip) in record_pairs(r) {
                self.dns.add_host(name, ip, r.ttl);
            }
        }
        self.file_entries.0 = records;
        self.swap_reservations(|h| h.file_entries.1 = reservations);
        self.dns.clear_cache();
    }

    /// Replaces the reservations added through the runtime API (the third
    /// source, after the flags and the files) with `reservations`. They act
    /// as `--dhcp-host` ones: a hostname is published as A (and AAAA with an
    /// IPv6 address) and names the MAC's leases and SLAAC addresses, and the
    /// DHCP and DHCPv6 servers use them from the client's next message. A
    /// lease already held at another address runs on until then: its
    /// client's RENEW (or INIT-REBOOT REQUEST) is answered DHCPNAK, as for a
    /// `--dhcp-host` that differs from a lease, so the client goes back to
    /// DISCOVER and is offered the reserved address (RFC 2131 section 3.2;
    /// dnsmasq does the same). A reservation whose MAC, DUID or address a flag
    /// or file reservation already has is ignored (flags win, then files);
    /// the caller checks for those conflicts first.
    pub fn replace_api_reservations(&mut self, reservations: Vec<Reservation>) {
        self.swap_reservations(|h| h.api_reservations = reservations);
        self.dns.clear_cache();
    }

    /// Every reservation the host knows, with its source, in precedence
    /// order: flags, files, API (ignored ones, see
    /// [`Host::replace_api_reservations`], included).
    pub fn reservations(&self) -> impl Iterator<Item = (ReservationSource, &Reservation)> {
        let f = self.flag_reservations.iter().map(|r| (ReservationSource::Flag, r));
        let h = self.file_entries.1.iter().map(|r| (ReservationSource::File, r));
        let a = self.api_reservations.iter().map(|r| (ReservationSource::Api, r));
        f.chain(h).chain(a)
    }

    /// The file and API reservations in effect: those whose MAC, DUID and
    /// addresses no reservation before them (flags first, then files, then
    /// API) holds.
    fn extra_reservations(&self) -> Vec<Reservation> {
        let mut taken = ReservedKeys::default();
        for r in &self.flag_reservations {
            taken.take(r);
        }
        let mut out = Vec::new();
        for r in self.file_entries.1.iter().chain(&self.api_reservations) {
            if taken.clashes(r) {
                tracing::debug!(mac = ?r.mac, "reservation shadowed by an earlier one");
                continue;
            }
            taken.take(r);
            out.push(r.clone());
        }
        out
    }

    /// Runs `change` (which replaces the file or API reservations) and moves
    /// the host from the reservations in effect before to those after: DNS
    /// names, the MAC names of SLAAC addresses, and the DHCP and DHCPv6
    /// servers' tables.
    fn swap_reservations(&mut self, change: impl FnOnce(&mut Self)) {
        let old = self.extra_reservations();
        change(self);
        let new = self.extra_reservations();
        for r in &old {
            if let Some(name) = &r.hostname {
                for ip in r.ip.map(IpAddr::V4).into_iter().chain(r.ip6.map(IpAddr::V6)) {
                    self.dns.remove_host(name, ip);
                }
            }
            if let Some(a) = r.ip6 {
                self.slaac.release(a);
            }
            if let Some(mac) = r.mac {
                if r.ip6.is_some() {
                    self.slaac.unpin(mac);
                }
                if self.names_reserved.remove(&mac).is_some() {
                    self.rename(mac);
                }
            }
        }
        for r in &new {
            if let Some(name) = &r.hostname {
                for ip in r.ip.map(IpAddr::V4).into_iter().chain(r.ip6.map(IpAddr::V6)) {
                    self.dns.add_host(name, ip, 0);
                }
            }
            if let (Some(mac), Some(_)) = (r.mac, r.ip6) {
                self.slaac.pin(mac);
            }
            if let Some(a) = r.ip6 {
                self.slaac
                    .claim(a, r.mac.or_else(|| r.duid.as_deref().and_then(duid_mac)), &mut self.dns);
            }
            if let Some(mac) = r.mac {
                if let Some(name) = &r.hostname {
                    self.names_reserved.insert(mac, name.clone());
                }
                self.rename(mac);
            }
        }
        let all: Vec<Reservation> = self.flag_reservations.iter().cloned().chain(new).collect();
        self.dhcp.set_reservations(&all);
        if let Some(d) = &mut self.dhcp6 {
            d.set_reservations(all.iter().filter_map(Reservation6::of).collect());
        }
    }

    /// The host's counters.
    pub fn stats(&self) -> HostStats {
        HostStats {
            dns_tcp: self.tcp.stats(),
            dhcp6: self.dhcp6.as_ref().map(Dhcp6Server::stats).unwrap_or_default(),
            slaac: self.slaac.stats(),
            ..self.stats
        }
    }

    /// The host's IPv6 addresses: its link-local address
    /// ([`ipv6::link_local`]), then its address in each IPv6 range's prefix
    /// ([`ipv6::address_in`]), in `--dhcp-range` order.
    pub fn ipv6_addrs(&self) -> &[Ipv6Addr] {
        &self.ip6
    }

    /// The DHCP server (its lease table).
    pub fn dhcp(&self) -> &DhcpServer {
        &self.dhcp
    }

    /// The DHCPv6 server (its leases), if an IPv6 range has DHCPv6.
    pub fn dhcp6(&self) -> Option<&Dhcp6Server> {
        self.dhcp6.as_ref()
    }

    /// Moves the lease table's changes since the last call into `into`, oldest
    /// first, for the driver to persist (nothing is recorded until the driver
    /// turned recording on with [`LeaseDb::record_changes`] before handing the
    /// table to [`Host::new`]): the DHCP table's, then the DHCPv6 server's
    /// (its DUID first, then its leases' changes; the two families' changes
    /// are independent of each other).
    pub fn take_lease_changes(&mut self, into: &mut Vec<LeaseChange>) {
        self.dhcp.take_lease_changes(into);
        if let Some(c) = &mut self.changes6 {
            into.append(c);
        }
    }

    /// The Unix time (seconds) at `now`.
    pub fn unix_time(&self, now: Instant) -> u64 {
        self.epoch.1 + now.saturating_duration_since(self.epoch.0).as_secs()
    }

    /// The instant of Unix time `t` (seconds); the host's own start for a time before it.
    fn instant_of(&self, t: u64) -> Instant {
        self.epoch.0 + Duration::from_secs(t.saturating_sub(self.epoch.1))
    }

    /// When [`Host::handle_timeout`] is next due: the first of a lease's
    /// expiry (DHCP or DHCPv6), an offer's or quarantine's end, a forwarded DNS query's
    /// timeout, the DNS-over-TCP connections' timers, the next unsolicited
    /// router advertisement ([`ra::RaTimer`]) and the first observed SLAAC
    /// address's deadline ([`SlaacNames::poll_timeout`]); `None` when nothing is
    /// waiting. Cost: a look at every pending forwarded query (at most
    /// `--dns-forward-max`); the rest is O(1).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let dhcp = self.dhcp.next_expiry().map(|t| self.instant_of(t));
        let dhcp6 = self
            .dhcp6
            .as_ref()
            .and_then(Dhcp6Server::poll_timeout)
            .map(|t| self.instant_of(t));
        let ra = self.ra.as_ref().map(|(_, t)| t.next());
        let slaac = self.slaac.poll_timeout();
        let fwd = self.forward.poll_at();
        [
            dhcp,
            dhcp6,
            self.dns.next_deadline(),
            self.tcp.poll_at(),
            ra,
            slaac,
            fwd,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs the timers due at `now`: ends expired leases (withdrawing their
    /// names), drops run-out offers and quarantines, answers forwarded DNS
    /// queries that timed out with SERVFAIL (a guest's as frames in `out`, a
    /// host-side client's queued for [`Host::take_dns_returns`]), and runs the
    /// TCP connections' timers, sends a Neighbor Solicitation for each
    /// observed SLAAC address whose lifetime ran out without a sighting and
    /// forgets (withdrawing their names) those whose probe went unanswered,
    /// and sends the router
    /// advertisement due, if any.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        if let Some((c, t)) = &mut self.ra {
            if t.due(now) {
                let (mac, dst) = ra::all_nodes();
                if let Some(f) = c.advertisement(mac, dst) {
                    self.stats.ras_sent += 1;
                    out.push(f);
                }
            }
        }
        for l in self.dhcp.expire(self.unix_time(now)) {
            tracing::info!(mac = %l.mac, ip = %l.ip, "lease expired");
            self.apply(Binding::Removed(l));
        }
        let unix = self.unix_time(now);
        if let Some(d) = &mut self.dhcp6 {
            d.handle_timeout(unix);
        }
        self.apply6();
        let mut probes = Vec::new();
        self.slaac.handle_timeout(now, &mut self.dns, &mut probes);
        for (mac, addr) in probes {
            if let Some(f) = ndp::solicitation(self.mac, self.source6_for(addr), mac, addr) {
                out.push(f);
            }
        }
        self.dns_expire(now, out);
        self.dns_tcp_serve(now, out);
        if self.forward.poll_at().is_some_and(|t| t <= now) {
            self.forward_flush(now, out);
        }
    }

    /// The port forwarder (`--expose`, forward/): the driver opens
    /// connections and flows and moves bytes through it, then calls
    /// [`Host::forward_flush`] to send what it queued.
    pub fn forward_mut(&mut self) -> &mut Forwarder {
        &mut self.forward
    }

    /// Runs the forwarder's stack at `now` ([`Forwarder::poll`]): the frames
    /// it sends go into `out` (to switch as the host's), and the forward
    /// waker is called if events wait ([`Forwarder::take_events`]).
    pub fn forward_flush(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        self.forward.poll(now, out);
        self.forward_woken();
    }

    /// Installs `wake`, called (under the segment's lock: it must not block)
    /// whenever the forwarder has events for the driver
    /// ([`Forwarder::take_events`]) after frames from guests or its timers.
    pub fn set_forward_waker(&mut self, wake: Box<dyn Fn() + Send>) {
        self.forward_wake = Some(wake);
    }

    fn forward_woken(&self) {
        if let (true, Some(w)) = (self.forward.has_events(), &self.forward_wake) {
            w();
        }
    }

    /// A frame from the segment for the forwarder.
    fn forward_in(&mut self, now: Instant, frame: &[u8], out: &mut Vec<Vec<u8>>) {
        self.forward.receive(frame, now, out);
        self.forward_woken();
    }

    /// The DNS server, for queries that arrive from the host side (`--dns-listen`).
    pub fn dns_mut(&mut self) -> &mut DnsServer {
        &mut self.dns
    }

    /// Installs `wake`, called (under the segment's lock: it must not block)
    /// whenever a DNS query is queued for an upstream server or a SERVFAIL for
    /// a host-side client, so the binary's adapter drains
    /// [`Host::take_dns_forwards`] and [`Host::take_dns_returns`]: the host
    /// itself never touches a socket.
    pub fn set_dns_waker(&mut self, wake: Box<dyn Fn() + Send>) {
        self.dns_wake = Some(wake);
    }

    /// The queries from guests on the segment to send upstream, oldest first.
    /// At most 4096 wait; more are dropped (their pending entries time out, counted).
    pub fn take_dns_forwards(&mut self) -> Vec<Forward> {
        std::mem::take(&mut self.dns_out)
    }

    /// The SERVFAILs for host-side clients (`--dns-listen`) made by the timers,
    /// oldest first, each with its client ([`DnsReturn::Client`]). At most 4096
    /// wait; more are dropped.
    pub fn take_dns_returns(&mut self) -> Vec<DnsReturn> {
        std::mem::take(&mut self.dns_back)
    }

    /// Gives an upstream server's `answer`, received from `from`, to the DNS
    /// server ([`DnsServer::upstream_answer`]): the answer for a guest becomes
    /// the UDP frame to it from the host's port 53, or, for a guest that asked
    /// over TCP, the TCP segments on its connection; the answer for a host-side
    /// client comes back with its client. `None`: it answers no pending query
    /// (dropped and counted).
    pub fn dns_upstream_answer(&mut self, now: Instant, from: SocketAddr, answer: &[u8]) -> Option<DnsReturn> {
        let (client, bytes) = self.dns.upstream_answer(from, answer)?;
        self.dns_route(now, client, bytes)
    }

    /// Sending the forwarded `query` to `upstream` failed (the kernel refused
    /// the send, or the TCP exchange failed; see
    /// [`crate::dns::forward::Forwarder::failed`]): the query is queued for its
    /// next server (and the adapter woken), or its client gets SERVFAIL,
    /// returned here as [`Host::dns_upstream_answer`] returns an answer.
    pub fn dns_upstream_failed(&mut self, now: Instant, upstream: SocketAddr, query: &[u8]) -> Option<DnsReturn> {
        let f = self.dns.upstream_failed(upstream, query, now)?;
        self.dns_failover(now, f)
    }

    /// `upstream` refused (ICMP port unreachable on its socket): each query
    /// sent to it over UDP is queued for its next server, or its client gets
    /// SERVFAIL, returned here.
    pub fn dns_upstream_refused(&mut self, now: Instant, upstream: SocketAddr) -> Vec<DnsReturn> {
        let failed = self.dns.upstream_refused(upstream, now);
        failed.into_iter().filter_map(|f| self.dns_failover(now, f)).collect()
    }

    fn dns_failover(&mut self, now: Instant, f: Failover) -> Option<DnsReturn> {
        match f {
            Failover::Retry(f) => {
                // A full queue leaves the query pending: it times out to SERVFAIL.
                self.queue_forward(f);
                None
            }
            Failover::ServFail(client, bytes) => self.dns_route(now, client, bytes),
        }
    }

    /// Ends the forwarded queries unanswered at `now` with a SERVFAIL each
    /// ([`DnsServer::expire`]): a guest's goes out as frames in `out`, a
    /// host-side client's is queued for the adapter ([`Host::take_dns_returns`]).
    fn dns_expire(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        let mut queued = false;
        for (client, bytes) in self.dns.expire(now) {
            match self.dns_route(now, client, bytes) {
                Some(DnsReturn::Frame(f)) => out.push(f),
                Some(DnsReturn::Frames(fs)) => out.extend(fs),
                Some(r @ DnsReturn::Client(..)) if self.dns_back.len() < DNS_QUEUE_MAX => {
                    self.dns_back.push(r);
                    queued = true;
                }
                _ => {}
            }
        }
        if let (true, Some(wake)) = (queued, &self.dns_wake) {
            wake();
        }
    }

    /// Where a DNS message `bytes` for `client` goes (see [`DnsReturn`]).
    fn dns_route(&mut self, now: Instant, client: Client, bytes: Vec<u8>) -> Option<DnsReturn> {
        if client.path & SEGMENT_PATH == 0 {
            return Some(DnsReturn::Client(client, bytes));
        }
        if client.transport == Transport::Tcp {
            let mut out = Vec::new();
            self.tcp.answer(client.path & !SEGMENT_PATH, &bytes, now);
            self.dns_tcp_serve(now, &mut out);
            return Some(DnsReturn::Frames(out));
        }
        let m = client.path.to_be_bytes();
        let mac = MacAddr([m[2], m[3], m[4], m[5], m[6], m[7]]);
        match client.addr.ip() {
            IpAddr::V4(ip) => self.udp_frame(mac, ip, DNS_PORT, client.addr.port(), &bytes),
            // The forwarded answer goes from the host's address in the client's prefix
            // (the one it most likely asked), else the link-local one.
            IpAddr::V6(ip) => {
                let from = self.source6_for(ip);
                self.udp6_frame_from(from, mac, ip, DNS_PORT, client.addr.port(), &bytes)
            }
        }
        .map(DnsReturn::Frame)
    }

    /// A DNS query over UDP from a guest (`mac`, `ip`:`port`) on the
    /// segment, to the host's address `to` (over IPv6, the answer comes
    /// from that address).
    #[allow(clippy::too_many_arguments)]
    fn dns_in(
        &mut self,
        now: Instant,
        payload: &[u8],
        mac: MacAddr,
        ip: IpAddr,
        to: Ipv6Addr,
        port: u16,
        out: &mut Vec<Vec<u8>>,
    ) {
        self.stats.dns_in += 1;
        let mut path = [0u8; 8];
        path[2..].copy_from_slice(&mac.0);
        let mut client = Client::udp(SocketAddr::new(ip, port), SEGMENT_PATH | u64::from_be_bytes(path));
        // Over IPv6 the headers take 20 bytes more (the host does not fragment).
        client.udp_max = if ip.is_ipv4() {
            SEGMENT_DNS_MAX
        } else {
            SEGMENT_DNS_MAX - 20
        };
        match self.dns.handle(payload, client, now) {
            DnsAction::Answer(resp) => out.extend(match ip {
                IpAddr::V4(ip) => self.udp_frame(mac, ip, DNS_PORT, port, &resp),
                IpAddr::V6(ip) => self.udp6_frame_from(to, mac, ip, DNS_PORT, port, &resp),
            }),
            DnsAction::Forward(f) => {
                self.queue_forward(f);
            }
            DnsAction::Drop => {}
        }
    }

    /// A TCP segment to one of the host's addresses: `packet` is the IPv4 or
    /// IPv6 packet, from `mac`.
    fn tcp_in(&mut self, now: Instant, packet: &[u8], mac: MacAddr, out: &mut Vec<Vec<u8>>) {
        self.tcp.receive(packet, mac, now);
        self.dns_tcp_serve(now, out);
    }

    /// Answers the queries complete on the TCP connections, queues the ones to
    /// forward, and pushes the frames smoltcp has to send.
    fn dns_tcp_serve(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        loop {
            let queries = self.tcp.queries(now);
            if queries.is_empty() {
                break;
            }
            for q in queries {
                self.stats.dns_in += 1;
                let client = Client::tcp(q.peer, SEGMENT_PATH | q.conn);
                match self.dns.handle(&q.message, client, now) {
                    DnsAction::Answer(resp) => {
                        self.tcp.answer(q.conn, &resp, now);
                    }
                    DnsAction::Forward(f) => {
                        if self.queue_forward(f) {
                            self.tcp.forwarded(q.conn, now);
                        }
                    }
                    DnsAction::Drop => {}
                }
            }
        }
        self.tcp.poll(now, out);
    }

    /// Queues `f` for the adapter and wakes it; false when the queue is full.
    fn queue_forward(&mut self, f: Forward) -> bool {
        if self.dns_out.len() >= DNS_QUEUE_MAX {
            return false;
        }
        self.dns_out.push(f);
        if let Some(wake) = &self.dns_wake {
            wake();
        }
        true
    }

    /// Publishes and withdraws the names of the DHCPv6 server's lease events.
    fn apply6(&mut self) {
        let Some(d) = &mut self.dhcp6 else { return };
        let mut events = std::mem::take(&mut self.events6);
        d.take_events(&mut events);
        for e in events.drain(..) {
            match e {
                Lease6Event::Bound(l) => {
                    tracing::debug!(addr = %l.addr, name = ?l.hostname, "DHCPv6 lease bound");
                    if let Some(name) = &l.hostname {
                        self.dns.add_host(name, IpAddr::V6(l.addr), 0);
                    }
                    let mac = duid_mac(&l.duid);
                    self.slaac.claim(l.addr, mac, &mut self.dns);
                    if let (Some(mac), Some(name)) = (mac, &l.hostname) {
                        self.names6.insert(mac, name.clone());
                        self.rename(mac);
                    }
                    if let Some(c) = &mut self.changes6 {
                        c.push(LeaseChange::Put6(l));
                    }
                }
                Lease6Event::Renewed(l) => {
                    if let Some(c) = &mut self.changes6 {
                        c.push(LeaseChange::Put6(l));
                    }
                }
                Lease6Event::Ended(l, why) => {
                    tracing::info!(addr = %l.addr, name = ?l.hostname, ?why, "DHCPv6 lease ended");
                    if let Some(name) = &l.hostname {
                        self.dns.remove_host(name, IpAddr::V6(l.addr));
                    }
                    self.slaac.release(l.addr);
                    if let Some(mac) = duid_mac(&l.duid) {
                        if self.names6.get(&mac).is_some_and(|n| Some(n) == l.hostname.as_ref()) {
                            self.names6.remove(&mac);
                            self.rename(mac);
                        }
                    }
                    if let Some(c) = &mut self.changes6 {
                        c.push(LeaseChange::Removed6(l.duid, l.iaid));
                    }
                }
            }
        }
        self.events6 = events;
    }

    /// A DHCPv6 message (UDP 547) from `src_mac`, `src`: the reply, if any,
    /// goes from the host's link-local address, port 547, to `src` port 546
    /// (RFC 8415 section 7.2).
    fn dhcp6_in(&mut self, now: Instant, payload: &[u8], src_mac: MacAddr, src: Ipv6Addr, out: &mut Vec<Vec<u8>>) {
        let unix = self.unix_time(now);
        let Some(d) = &mut self.dhcp6 else { return };
        if self.log_dhcp {
            log_dhcp6("in", src_mac, payload);
        }
        let reply = d.handle(unix, src_mac, payload);
        if let (true, Some(r)) = (self.log_dhcp, &reply) {
            log_dhcp6("out", src_mac, r);
        }
        self.apply6();
        if let Some(bytes) = reply {
            out.extend(self.udp6_frame(src_mac, src, DHCP6_SERVER_PORT, DHCP6_CLIENT_PORT, &bytes));
        }
    }

    /// The host's IPv6 address in the /64 of `dst`, else its link-local one.
    fn source6_for(&self, dst: Ipv6Addr) -> Ipv6Addr {
        let p = |a: Ipv6Addr| u128::from(a) >> 64;
        self.ip6
            .iter()
            .copied()
            .find(|a| p(*a) == p(dst))
            .unwrap_or(self.ip6[0])
    }

    /// A UDP datagram from the host's link-local address (`self.ip6[0]`) to `dst_mac`, `dst_ip`.
    fn udp6_frame(
        &self,
        dst_mac: MacAddr,
        dst_ip: Ipv6Addr,
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        self.udp6_frame_from(self.ip6[0], dst_mac, dst_ip, sport, dport, payload)
    }

    fn udp6_frame_from(
        &self,
        src_ip: Ipv6Addr,
        dst_mac: MacAddr,
        dst_ip: Ipv6Addr,
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        let b = PacketBuilder::ethernet2(self.mac.0, dst_mac.0)
            .ipv6(src_ip.octets(), dst_ip.octets(), 64)
            .udp(sport, dport);
        let mut out = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut out, payload).ok()?;
        Some(out)
    }

    fn apply(&mut self, change: Binding) {
        match change {
            Binding::Bound(l) => {
                if let Some(name) = &l.hostname {
                    self.dns.add_host(name, IpAddr::V4(l.ip), 0);
                    self.names4.insert(l.mac, name.clone());
                } else {
                    self.names4.remove(&l.mac);
                }
                self.rename(l.mac);
            }
            Binding::Removed(l) => {
                if let Some(name) = &l.hostname {
                    self.dns.remove_host(name, IpAddr::V4(l.ip));
                }
                if self.names4.get(&l.mac) == l.hostname.as_ref() {
                    self.names4.remove(&l.mac);
                    self.rename(l.mac);
                }
            }
        }
    }

    /// Gives `mac`'s observed SLAAC addresses its current name: its DHCPv4
    /// lease's, else its reservation's, else its DHCPv6 lease's, else none.
    fn rename(&mut self, mac: MacAddr) {
        let name = self
            .names4
            .get(&mac)
            .or_else(|| self.names_reserved.get(&mac))
            .or_else(|| self.names6.get(&mac));
        self.slaac.set_name(mac, name.map(String::as_str), &mut self.dns);
    }

    /// The observed SLAAC addresses (slaac_names.rs).
    pub fn slaac_names(&self) -> &SlaacNames {
        &self.slaac
    }

    fn udp_frame(&self, dst_mac: MacAddr, dst_ip: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Option<Vec<u8>> {
        let b = PacketBuilder::ethernet2(self.mac.0, dst_mac.0)
            .ipv4(self.ip.octets(), dst_ip.octets(), 64)
            .udp(sport, dport);
        let mut out = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut out, payload).ok()?;
        Some(out)
    }

    fn dhcp_in(&mut self, now: u64, payload: &[u8], frame_src: MacAddr, out: &mut Vec<Vec<u8>>) {
        self.stats.dhcp_in += 1;
        let Some(msg) = decode_dhcp(payload) else {
            self.stats.malformed_dhcp += 1;
            return;
        };
        if self.log_dhcp {
            log_dhcp4("in", &msg);
        }
        let mut bindings = std::mem::take(&mut self.bindings);
        let result = self.dhcp.handle(&msg, frame_src, now, &mut bindings);
        for b in bindings.drain(..) {
            self.apply(b);
        }
        self.bindings = bindings;
        match result {
            Ok(reply) => {
                let Ok(bytes) = reply.encode(&request_list(&msg)) else {
                    return;
                };
                if self.log_dhcp {
                    if let Some(m) = decode_dhcp(&bytes) {
                        log_dhcp4("out", &m);
                    }
                }
                let to = reply.to;
                if let Some(f) = self.udp_frame(to.mac, to.ip, DHCP_SERVER_PORT, to.port, &bytes) {
                    self.stats.dhcp_out += 1;
                    out.push(f);
                }
            }
            Err(Ignored::NotARequest(why)) => {
                self.stats.malformed_dhcp += 1;
                tracing::debug!(why, "dropping a DHCP message");
            }
            Err(_) => {}
        }
    }
}

impl Host {
    /// Handles one frame received at `now` (at least 14 bytes; shorter ones
    /// are counted as malformed), pushing the frames to send into `out`:
    /// replies to ARP and ICMP echo for the host's address, DHCP (UDP 67, to
    /// the host or broadcast), DNS over UDP and TCP (port 53, to the host);
    /// on IPv6, ICMPv6 to the host's addresses, their solicited-node groups,
    /// all-nodes or all-routers: Neighbor Solicitations (ndp.rs), echo
    /// requests (icmpv6.rs) and, with router advertisements on, Router
    /// Solicitations (ra.rs); DHCPv6 (UDP 547 to `ff02::1:2` or the host's
    /// addresses, when the host serves DHCPv6) and DNS over UDP to the
    /// host's IPv6 addresses. Every valid Neighbor Solicitation or
    /// Advertisement (to whatever group) and every IPv6 packet to the host (its MAC or its
    /// addresses) also feeds the SLAAC names (slaac_names.rs). TCP and UDP to
    /// the host's IPv4 address and a port of an open forward, and ARP for
    /// that address while forwards are open, go to the forwarder ([`Host::forward_mut`]).
    /// Malformed packets are dropped and counted in [`HostStats`]; so are
    /// frames from a group or all-zero source MAC.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8], out: &mut Vec<Vec<u8>>) {
        let Ok(p) = SlicedPacket::from_ethernet(frame) else {
            self.stats.malformed_frames += 1;
            return;
        };
        let src_mac = MacAddr(frame[6..12].try_into().expect("frame has a header"));
        let dst_mac = MacAddr(frame[0..6].try_into().expect("frame has a header"));
        if src_mac.is_group() || src_mac.0 == [0; 6] {
            // Whatever the destination: no reply ever goes to a group or a null MAC.
            self.stats.bad_source_frames += 1;
            return;
        }
        if dst_mac != self.mac && !dst_mac.is_group() {
            return;
        }
        if let Some(NetSlice::Ipv6(ip)) = &p.net {
            // A packet to the host (its MAC, as the segment's router, or one of its
            // addresses) from a global source: its sender uses that address.
            // Neighbor Solicitations and Advertisements are checked below instead.
            let h = ip.header();
            let ndp = matches!(&p.transport, Some(TransportSlice::Icmpv6(i))
                if matches!(i.type_u8(), ndp::NEIGHBOR_SOLICITATION | ndp::NEIGHBOR_ADVERTISEMENT));
            if !ndp && (dst_mac == self.mac || self.ip6.contains(&h.destination_addr())) {
                self.slaac.observe(now, src_mac, h.source_addr(), &mut self.dns);
            }
        }
        match (&p.net, &p.transport) {
            (Some(NetSlice::Arp(a)), _) => {
                if let Some(f) = arp::answer(a, self.mac, self.ip) {
                    self.stats.arp_replies += 1;
                    out.push(f);
                }
                // The forwarder resolves guests itself (ARP replies to it, and
                // requests for the host's address, fill its neighbour cache).
                if self.forward.active() && a.target_protocol_addr() == self.ip.octets() {
                    self.forward_in(now, frame, out);
                }
            }
            (Some(NetSlice::Ipv4(ip)), Some(t)) => {
                let h = ip.header();
                let (src_ip, dst_ip) = (h.source_addr(), h.destination_addr());
                if h.is_fragmenting_payload() {
                    return;
                }
                match t {
                    TransportSlice::Icmpv4(icmp) if dst_ip == self.ip => {
                        if let Some(f) = icmp::answer(icmp, self.mac, self.ip, src_mac, src_ip) {
                            self.stats.icmp_replies += 1;
                            out.push(f);
                        }
                    }
                    TransportSlice::Udp(udp)
                        if udp.destination_port() == DHCP_SERVER_PORT
                            && (dst_ip == self.ip || dst_ip == Ipv4Addr::BROADCAST) =>
                    {
                        self.dhcp_in(self.unix_time(now), udp.payload(), src_mac, out);
                    }
                    TransportSlice::Udp(udp)
                        if dst_ip == self.ip && self.forward.owns(false, udp.destination_port()) =>
                    {
                        self.forward_in(now, frame, out);
                    }
                    TransportSlice::Udp(udp) if udp.destination_port() == DNS_PORT && dst_ip == self.ip => {
                        let ll = self.ip6[0];
                        self.dns_in(
                            now,
                            udp.payload(),
                            src_mac,
                            IpAddr::V4(src_ip),
                            ll,
                            udp.source_port(),
                            out,
                        );
                    }
                    // Plain Ethernet II only (no VLAN tag): the IPv4 packet starts at byte 14.
                    TransportSlice::Tcp(t)
                        if dst_ip == self.ip
                            && frame[12..14] == [0x08, 0x00]
                            && self.forward.owns(true, t.destination_port()) =>
                    {
                        self.forward_in(now, frame, out);
                    }
                    TransportSlice::Tcp(_) if dst_ip == self.ip && frame[12..14] == [0x08, 0x00] => {
                        self.tcp_in(now, &frame[14..], src_mac, out);
                    }
                    _ => {}
                }
            }
            (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Udp(udp))) => {
                if ip.is_payload_fragmented() {
                    return;
                }
                let h = ip.header();
                let (src, dst) = (h.source_addr(), h.destination_addr());
                // Unicast to the host is answered as multicast is: the server never
                // sends Server Unicast (RFC 8415 section 21.12), so a strict server
                // would answer UseMulticast (section 18.4); clients send to ff02::1:2.
                if udp.destination_port() == DHCP6_SERVER_PORT && (dst == ALL_DHCP_SERVERS || self.ip6.contains(&dst)) {
                    self.dhcp6_in(now, udp.payload(), src_mac, src, out);
                } else if udp.destination_port() == DNS_PORT && self.ip6.contains(&dst) {
                    self.dns_in(
                        now,
                        udp.payload(),
                        src_mac,
                        IpAddr::V6(src),
                        dst,
                        udp.source_port(),
                        out,
                    );
                }
            }
            // DNS over TCP at the host's IPv6 addresses; plain Ethernet II only
            // (the IPv6 packet starts at byte 14), no extension headers.
            (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Tcp(_))) => {
                let h = ip.header();
                if !ip.is_payload_fragmented()
                    && self.ip6.contains(&h.destination_addr())
                    && frame[12..14] == [0x86, 0xdd]
                    && h.next_header() == etherparse::IpNumber::TCP
                {
                    self.tcp_in(now, &frame[14..], src_mac, out);
                }
            }
            (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(icmp))) => {
                if ip.is_payload_fragmented() {
                    return;
                }
                let h = ip.header();
                let (src, dst) = (h.source_addr(), h.destination_addr());
                let for_us = self.ip6.contains(&dst)
                    || dst == ipv6::ALL_NODES
                    || dst == ipv6::ALL_ROUTERS
                    || self.ip6.iter().any(|a| ipv6::solicited_node(*a) == dst);
                let m = Icmpv6In::checked(src_mac, src, dst, h.hop_limit(), icmp.clone());
                if let Some(m) = &m {
                    // Any valid NS or NA on the segment shows an address its sender uses
                    // (slaac_names.rs); invalid ones not for the host are not counted.
                    match slaac_names::sighting(m) {
                        Ok(Sighting::Uses(a)) => self.slaac.observe(now, src_mac, a, &mut self.dns),
                        Ok(Sighting::Mismatched) => self.slaac.mismatched(),
                        Ok(Sighting::Nothing) | Err(_) => {}
                    }
                }
                if !for_us {
                    return;
                }
                match m {
                    Some(m) => self.icmpv6_in(now, &m, out),
                    None => self.stats.malformed_frames += 1,
                }
            }
            _ => {}
        }
    }

    /// An invalid NDP message to the host: dropped, counted as malformed.
    fn malformed_ndp(&mut self, m: &Icmpv6In<'_>, why: &'static str) {
        self.stats.malformed_frames += 1;
        tracing::debug!(src = %m.src, why, "dropping an NDP message");
    }

    /// An ICMPv6 message to one of the host's addresses or groups, checksum verified.
    fn icmpv6_in(&mut self, now: Instant, m: &Icmpv6In<'_>, out: &mut Vec<Vec<u8>>) {
        match m.icmp.type_u8() {
            ndp::NEIGHBOR_SOLICITATION => {
                let router = self.ra.as_ref().is_some_and(|(c, _)| c.router_lifetime > 0);
                match ndp::answer(m, self.mac, &self.ip6, router) {
                    Ok(Some(f)) => {
                        self.stats.ndp_answers += 1;
                        out.push(f);
                    }
                    Ok(None) => {}
                    Err(why) => self.malformed_ndp(m, why),
                }
            }
            ndp::ROUTER_SOLICITATION => {
                let to = match ra::solicitation(m, &self.ip6) {
                    Ok(Some(to)) => to,
                    Ok(None) => return,
                    Err(why) => return self.malformed_ndp(m, why),
                };
                let Some((c, t)) = &mut self.ra else { return };
                let to = match to {
                    ra::Answer::Unicast(mac, ip) => (mac, ip),
                    ra::Answer::Multicast if t.multicast_answer(now) => ra::all_nodes(),
                    ra::Answer::Multicast => return,
                };
                if let Some(f) = c.advertisement(to.0, to.1) {
                    self.stats.ras_sent += 1;
                    out.push(f);
                }
            }
            _ => {
                if let Some(f) = icmpv6::answer(m, self.mac, &self.ip6) {
                    self.stats.icmpv6_replies += 1;
                    out.push(f);
                }
            }
        }
    }
}

impl LocalHost for Host {
    fn mac(&self) -> MacAddr {
        self.mac
    }

    fn handle_frame(&mut self, now: Instant, frame: &[u8], out: &mut Vec<Vec<u8>>) {
        Host::handle_frame(self, now, frame, out);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Host::poll_timeout(self)
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        Host::handle_timeout(self, now, out);
    }

    fn report(&self) -> String {
        let (h, d, t) = (self.stats(), self.dns.stats(), self.tcp.stats());
        let f = self.forward.stats();
        format!(
            "{} leases, {} remembered; arp replies {}, icmp replies {}, dhcp in {} out {} malformed {}, \
             dns in {} answered {} malformed {} failed {}, forwarded {} answered {} full {} timeouts {} unreachable {} servfail {} bad {}, \
             dns tcp connections {} queries {} malformed {} dropped {}, ndp answers {}, icmpv6 replies {}, ras sent {}, \
             dhcp6 leases {} in {} out {} malformed {} foreign {} ignored {} noaddrs {}, \
             slaac addresses {} named {} seen {} moved {} evicted {} refused {} mismatched {} probes {} expired {}, \
             malformed frames {}, bad source frames {}, \
             forward tcp open {} opened {} refused {} reset {} bytes out {} in {}, udp open {} opened {} sent {} received {} dropped {}, full {}",
            self.dhcp.leases().len(),
            self.dhcp.leases().remembered_len(),
            h.arp_replies,
            h.icmp_replies,
            h.dhcp_in,
            h.dhcp_out,
            h.malformed_dhcp,
            h.dns_in,
            d.answered,
            d.malformed,
            d.failed,
            d.forward.forwarded,
            d.forward.answered,
            d.forward.full,
            d.forward.timeouts,
            d.forward.unreachable,
            d.forward.servfail,
            d.forward.bad,
            t.connections,
            t.queries,
            t.malformed,
            t.dropped,
            h.ndp_answers,
            h.icmpv6_replies,
            h.ras_sent,
            self.dhcp6.as_ref().map_or(0, |s| s.leases().count()),
            h.dhcp6.received,
            h.dhcp6.replied,
            h.dhcp6.malformed,
            h.dhcp6.foreign,
            h.dhcp6.ignored,
            h.dhcp6.no_addrs,
            self.slaac.len(),
            self.slaac.published(),
            h.slaac.sightings,
            h.slaac.moved,
            h.slaac.evicted,
            h.slaac.refused,
            h.slaac.mismatched,
            h.slaac.probes,
            h.slaac.expired,
            h.malformed_frames,
            h.bad_source_frames,
            self.forward.open().0,
            f.tcp_opened,
            f.tcp_refused,
            f.tcp_reset,
            f.tcp_bytes_out,
            f.tcp_bytes_in,
            self.forward.open().1,
            f.udp_opened,
            f.udp_sent,
            f.udp_received,
            f.udp_dropped,
            f.full
        )
    }
}
