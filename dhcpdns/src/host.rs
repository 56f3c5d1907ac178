//! The hub's own host on the segment, sans-IO: one MAC and one IPv4 address
//! that answer ARP (arp.rs), ICMP echo (icmp.rs), DHCP on UDP 67 (dhcp.rs) and
//! DNS on UDP 53 (dns.rs). [`Host::handle_frame`] takes an Ethernet frame and
//! pushes the frames to send; nothing here touches a socket. Frames are parsed
//! with etherparse; anything malformed is dropped and counted in [`HostStats`].
//!
//! The host ties DHCP to DNS: a lease bound with a hostname is published in DNS,
//! and withdrawn when it is released, declined or expires.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use dhcproto::{Decodable, Decoder};
use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use vmlan_hub::{LocalHost, MacAddr};

use crate::config::HostConfig;
use crate::dhcp::{request_list, DhcpServer, Ignored, LeaseChange};
use crate::dns::DnsServer;
use crate::leases::LeaseDb;
use crate::{arp, icmp};

/// UDP port of a DHCP server (RFC 2131 section 4.1).
pub const DHCP_SERVER_PORT: u16 = 67;
/// UDP port of DNS (RFC 1035 section 4.2.1).
pub const DNS_PORT: u16 = 53;

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
    /// Frames that did not parse (bad IPv4/UDP/ARP headers, lengths that overrun).
    pub malformed_frames: u64,
    /// UDP 67 datagrams that were not a DHCP message.
    pub malformed_dhcp: u64,
}

/// A clock in Unix seconds; tests substitute a fixed one.
pub type Clock = Box<dyn Fn() -> u64 + Send>;

fn system_clock() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The hub's host.
pub struct Host {
    mac: MacAddr,
    ip: Ipv4Addr,
    dhcp: DhcpServer,
    dns: DnsServer,
    stats: HostStats,
    clock: Clock,
    changes: Vec<LeaseChange>,
}

impl Host {
    /// A host for `cfg` (validated), with the leases in `leases` and the system clock.
    /// Host records, named reservations and named leases are published in DNS.
    pub fn new(cfg: &HostConfig, leases: LeaseDb) -> Self {
        Self::with_clock(cfg, leases, Box::new(system_clock))
    }

    /// Like [`Host::new`] with `clock` as the time source (Unix seconds).
    pub fn with_clock(cfg: &HostConfig, leases: LeaseDb, clock: Clock) -> Self {
        let mut dns = DnsServer::new(cfg.net, cfg.domain.as_deref());
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
        }
        let mut host = Host {
            mac: cfg.mac,
            ip: cfg.addr(),
            dhcp: DhcpServer::new(cfg, LeaseDb::in_memory()),
            dns,
            stats: HostStats::default(),
            clock,
            changes: Vec::new(),
        };
        let loaded: Vec<_> = leases.iter().cloned().collect();
        host.dhcp = DhcpServer::new(cfg, leases);
        for l in loaded {
            host.apply(LeaseChange::Bound(l));
        }
        host
    }

    /// The host's counters.
    pub fn stats(&self) -> HostStats {
        self.stats
    }

    /// The DHCP server (its lease table).
    pub fn dhcp(&self) -> &DhcpServer {
        &self.dhcp
    }

    /// The DNS server, for queries that arrive from the host side (`--dns-listen`).
    pub fn dns_mut(&mut self) -> &mut DnsServer {
        &mut self.dns
    }

    fn apply(&mut self, change: LeaseChange) {
        match change {
            LeaseChange::Bound(l) => {
                if let Some(name) = &l.hostname {
                    self.dns.add_host(name, IpAddr::V4(l.ip), 0);
                }
            }
            LeaseChange::Removed(l) => {
                if let Some(name) = &l.hostname {
                    self.dns.remove_host(name, IpAddr::V4(l.ip));
                }
            }
        }
    }

    fn udp_frame(&self, dst_mac: MacAddr, dst_ip: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Option<Vec<u8>> {
        let b = PacketBuilder::ethernet2(self.mac.0, dst_mac.0)
            .ipv4(self.ip.octets(), dst_ip.octets(), 64)
            .udp(sport, dport);
        let mut out = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut out, payload).ok()?;
        Some(out)
    }

    fn dhcp_in(&mut self, payload: &[u8], frame_src: MacAddr, out: &mut Vec<Vec<u8>>) {
        self.stats.dhcp_in += 1;
        let Ok(msg) = dhcproto::v4::Message::decode(&mut Decoder::new(payload)) else {
            self.stats.malformed_dhcp += 1;
            return;
        };
        let now = (self.clock)();
        let mut changes = std::mem::take(&mut self.changes);
        let result = self.dhcp.handle(&msg, frame_src, now, &mut changes);
        for c in changes.drain(..) {
            self.apply(c);
        }
        self.changes = changes;
        match result {
            Ok(reply) => {
                let Ok(bytes) = reply.encode(&request_list(&msg)) else {
                    return;
                };
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

impl LocalHost for Host {
    fn mac(&self) -> MacAddr {
        self.mac
    }

    fn handle_frame(&mut self, frame: &[u8], out: &mut Vec<Vec<u8>>) {
        let Ok(p) = SlicedPacket::from_ethernet(frame) else {
            self.stats.malformed_frames += 1;
            return;
        };
        let src_mac = MacAddr(frame[6..12].try_into().expect("frame has a header"));
        let dst_mac = MacAddr(frame[0..6].try_into().expect("frame has a header"));
        if dst_mac != self.mac && !dst_mac.is_group() {
            return;
        }
        match (&p.net, &p.transport) {
            (Some(NetSlice::Arp(a)), _) => {
                if let Some(f) = arp::answer(a, self.mac, self.ip) {
                    self.stats.arp_replies += 1;
                    out.push(f);
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
                        self.dhcp_in(udp.payload(), src_mac, out);
                    }
                    TransportSlice::Udp(udp) if udp.destination_port() == DNS_PORT && dst_ip == self.ip => {
                        self.stats.dns_in += 1;
                        let from = SocketAddr::new(IpAddr::V4(src_ip), udp.source_port());
                        if let Some(resp) = self.dns.handle(udp.payload(), from, true) {
                            if let Some(f) = self.udp_frame(src_mac, src_ip, DNS_PORT, udp.source_port(), &resp) {
                                out.push(f);
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn report(&self) -> String {
        let (h, d) = (self.stats, self.dns.stats());
        format!(
            "{} leases; arp replies {}, icmp replies {}, dhcp in {} out {} malformed {}, \
             dns in {} answered {} malformed {} failed {}, malformed frames {}",
            self.dhcp.leases().len(),
            h.arp_replies,
            h.icmp_replies,
            h.dhcp_in,
            h.dhcp_out,
            h.malformed_dhcp,
            h.dns_in,
            d.answered,
            d.malformed,
            d.failed,
            h.malformed_frames
        )
    }

    fn tick(&mut self) {
        let now = (self.clock)();
        for l in self.dhcp.expire(now) {
            tracing::info!(mac = %l.mac, ip = %l.ip, "lease expired");
            self.apply(LeaseChange::Removed(l));
        }
        self.dhcp.sync(now);
    }
}
