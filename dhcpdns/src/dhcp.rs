//! The DHCP server, sans-IO (RFC 2131, options from RFC 2132; message codec
//! from the dhcproto crate). [`DhcpServer::handle`] takes a decoded client
//! message and returns the reply and where it must go; the host (host.rs) wraps
//! it in UDP/IP/Ethernet.
//!
//! Messages: DISCOVER -> OFFER; REQUEST -> ACK or NAK (selecting, init-reboot,
//! renewing, rebinding, RFC 2131 section 4.3.2); RELEASE frees the lease;
//! DECLINE quarantines the address; INFORM -> ACK with options only.
//!
//! Address choice (section 4.3.1), in order: the MAC's reservation
//! (`--dhcp-host`), the MAC's current or previous lease, the address the client
//! asked for (option 50) if free, then the first free pool address. An address
//! reserved for another MAC is never given out. Leases are keyed by MAC.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode, OptionCode, UnknownOption};
use ipnet::Ipv4Net;
use vmlan_hub::MacAddr;

use crate::config::{HostConfig, LeaseSecs, Reservation, DEFAULT_LEASE, INFINITE};
use crate::leases::{Lease, LeaseDb};

/// How long an OFFER holds its address for the client, in seconds.
const OFFER_HOLD: u64 = 60;
/// How long a DECLINEd address stays out of the pool, in seconds (dnsmasq: 10 minutes).
const DECLINE_HOLD: u64 = 600;

/// What happened to a lease, for the DNS server and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseChange {
    /// A lease was granted or renewed (ACK).
    Bound(Lease),
    /// A lease ended (RELEASE, DECLINE, expiry, or the MAC moved to another address).
    Removed(Lease),
}

/// Where a reply goes (RFC 2131 section 4.1, "the server sends ... to").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    /// IPv4 destination.
    pub ip: Ipv4Addr,
    /// Ethernet destination.
    pub mac: MacAddr,
    /// UDP destination port: 68 to a client, 67 to a relay agent.
    pub port: u16,
}

/// A reply to send.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The DHCP message.
    pub msg: Message,
    /// Where it goes.
    pub to: Destination,
}

/// Why a message got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    /// Not a BOOTREQUEST, no message type, or not an Ethernet chaddr.
    #[error("not a DHCP client request: {0}")]
    NotARequest(&'static str),
    /// A REQUEST for another server's OFFER.
    #[error("the client chose another server")]
    OtherServer,
    /// The pool has no free address.
    #[error("no free address in the pool for {0}")]
    PoolFull(MacAddr),
    /// Nothing to answer (RELEASE, DECLINE, an OFFER or ACK seen on the segment).
    #[error("no reply needed")]
    NoReply,
}

/// The DHCP server state: configuration, leases, outstanding offers, declined addresses.
#[derive(Debug)]
pub struct DhcpServer {
    net: Ipv4Net,
    server_ip: Ipv4Addr,
    domain: Option<String>,
    ranges: Vec<(u32, u32, LeaseSecs)>,
    reservations: HashMap<MacAddr, Reservation>,
    reserved_ips: HashMap<Ipv4Addr, MacAddr>,
    options: Vec<(u8, Vec<u8>)>,
    leases: LeaseDb,
    offers: HashMap<MacAddr, (Ipv4Addr, u64)>,
    declined: HashMap<Ipv4Addr, u64>,
}

fn opt_ip(msg: &Message, code: OptionCode) -> Option<Ipv4Addr> {
    match msg.opts().get(code)? {
        DhcpOption::RequestedIpAddress(ip) | DhcpOption::ServerIdentifier(ip) => Some(*ip),
        _ => None,
    }
}

impl DhcpServer {
    /// A server for `cfg` (already validated) with the leases in `leases`.
    pub fn new(cfg: &HostConfig, leases: LeaseDb) -> Self {
        DhcpServer {
            net: cfg.net,
            server_ip: cfg.addr(),
            domain: cfg.domain.clone(),
            ranges: cfg
                .ranges
                .iter()
                .map(|r| (r.start.into(), r.end.into(), r.lease))
                .collect(),
            reservations: cfg.reservations.iter().map(|r| (r.mac, r.clone())).collect(),
            reserved_ips: cfg.reservations.iter().filter_map(|r| Some((r.ip?, r.mac))).collect(),
            options: cfg.options.iter().map(|o| (o.code, o.data.clone())).collect(),
            leases,
            offers: HashMap::new(),
            declined: HashMap::new(),
        }
    }

    /// The lease table.
    pub fn leases(&self) -> &LeaseDb {
        &self.leases
    }

    /// Handles one client message received at `now` (Unix seconds) from Ethernet
    /// source `frame_src`; lease changes are pushed to `changes`.
    ///
    /// # Errors
    /// [`Ignored`] says why there is no reply; it is not a fault of the server.
    pub fn handle(
        &mut self,
        req: &Message,
        frame_src: MacAddr,
        now: u64,
        changes: &mut Vec<LeaseChange>,
    ) -> Result<Reply, Ignored> {
        if req.opcode() != Opcode::BootRequest {
            return Err(Ignored::NoReply);
        }
        if req.htype() != HType::Eth || req.hlen() != 6 {
            return Err(Ignored::NotARequest("chaddr is not a 6-byte Ethernet address"));
        }
        let mac = MacAddr(req.chaddr()[..6].try_into().expect("hlen is 6"));
        let Some(DhcpOption::MessageType(mtype)) = req.opts().get(OptionCode::MessageType) else {
            return Err(Ignored::NotARequest("no message type (option 53)"));
        };
        match mtype {
            MessageType::Discover => self.discover(req, mac, frame_src, now),
            MessageType::Request => self.request(req, mac, frame_src, now, changes),
            MessageType::Release => {
                if self.leases.get(&mac).is_some_and(|l| l.ip == req.ciaddr()) {
                    if let Ok(Some(l)) = self.leases.remove(&mac).map_err(log_io) {
                        tracing::info!(mac = %mac, ip = %l.ip, "DHCPRELEASE");
                        changes.push(LeaseChange::Removed(l));
                    }
                }
                Err(Ignored::NoReply)
            }
            MessageType::Decline => {
                if let Some(ip) = opt_ip(req, OptionCode::RequestedIpAddress) {
                    tracing::warn!(mac = %mac, ip = %ip, "DHCPDECLINE: address in use by another host, quarantined");
                    self.declined.insert(ip, now + DECLINE_HOLD);
                    if self.leases.get(&mac).is_some_and(|l| l.ip == ip) {
                        if let Ok(Some(l)) = self.leases.remove(&mac).map_err(log_io) {
                            changes.push(LeaseChange::Removed(l));
                        }
                    }
                }
                Err(Ignored::NoReply)
            }
            MessageType::Inform => {
                let mut reply = self.reply(req, MessageType::Ack, Ipv4Addr::UNSPECIFIED);
                self.add_options(&mut reply, mac, None);
                let to = self.destination(req, &reply, mac, frame_src);
                Ok(Reply { msg: reply, to })
            }
            _ => Err(Ignored::NoReply),
        }
    }

    fn discover(&mut self, req: &Message, mac: MacAddr, frame_src: MacAddr, now: u64) -> Result<Reply, Ignored> {
        let requested = opt_ip(req, OptionCode::RequestedIpAddress);
        let Some(ip) = self.choose(mac, requested, now) else {
            tracing::warn!(mac = %mac, "DHCPDISCOVER: no address available, the pool is full");
            return Err(Ignored::PoolFull(mac));
        };
        self.offers.insert(mac, (ip, now + OFFER_HOLD));
        let mut reply = self.reply(req, MessageType::Offer, ip);
        self.add_options(&mut reply, mac, Some(self.lease_secs(mac, ip)));
        tracing::debug!(mac = %mac, ip = %ip, "DHCPOFFER");
        let to = self.destination(req, &reply, mac, frame_src);
        Ok(Reply { msg: reply, to })
    }

    fn request(
        &mut self,
        req: &Message,
        mac: MacAddr,
        frame_src: MacAddr,
        now: u64,
        changes: &mut Vec<LeaseChange>,
    ) -> Result<Reply, Ignored> {
        let server_id = opt_ip(req, OptionCode::ServerIdentifier);
        if server_id.is_some_and(|s| s != self.server_ip) {
            // SELECTING another server's offer: forget ours (section 4.3.2).
            self.offers.remove(&mac);
            return Err(Ignored::OtherServer);
        }
        let requested = opt_ip(req, OptionCode::RequestedIpAddress)
            .or_else(|| (!req.ciaddr().is_unspecified()).then(|| req.ciaddr()));
        let Some(ip) = requested else {
            return Err(Ignored::NotARequest("REQUEST without requested address or ciaddr"));
        };
        if !self.acceptable(mac, ip, now) {
            tracing::info!(mac = %mac, ip = %ip, "DHCPNAK: address not available to this client");
            let mut nak = self.reply(req, MessageType::Nak, Ipv4Addr::UNSPECIFIED);
            nak.set_flags(req.flags().set_broadcast());
            nak.opts_mut().insert(DhcpOption::ServerIdentifier(self.server_ip));
            let to = self.destination(req, &nak, mac, frame_src);
            return Ok(Reply { msg: nak, to });
        }
        self.offers.remove(&mac);
        let secs = self.lease_secs(mac, ip);
        let hostname = self
            .reservations
            .get(&mac)
            .and_then(|r| r.hostname.clone())
            .or_else(|| client_hostname(req));
        let client_id = match req.opts().get(OptionCode::ClientIdentifier) {
            Some(DhcpOption::ClientIdentifier(id)) => Some(id.clone()),
            _ => None,
        };
        let lease = Lease {
            mac,
            ip,
            hostname,
            client_id,
            expires: if secs == INFINITE { 0 } else { now + u64::from(secs) },
        };
        if let Some(old) = self.leases.get(&mac).cloned() {
            if old.ip != ip || old.hostname != lease.hostname {
                changes.push(LeaseChange::Removed(old));
            }
        }
        if let Some(old) = self.leases.by_ip(&ip).filter(|l| l.mac != mac).cloned() {
            changes.push(LeaseChange::Removed(old));
        }
        let _ = self.leases.insert(lease.clone()).map_err(log_io);
        tracing::info!(
            mac = %mac, ip = %ip,
            hostname = lease.hostname.as_deref().unwrap_or("*"),
            lease_secs = secs,
            "DHCPACK: lease granted"
        );
        changes.push(LeaseChange::Bound(lease));
        let mut ack = self.reply(req, MessageType::Ack, ip);
        self.add_options(&mut ack, mac, Some(secs));
        let to = self.destination(req, &ack, mac, frame_src);
        Ok(Reply { msg: ack, to })
    }

    /// Drops offers and leases that have run out at `now`; returns the expired leases.
    pub fn expire(&mut self, now: u64) -> Vec<Lease> {
        self.offers.retain(|_, (_, until)| *until > now);
        self.declined.retain(|_, until| *until > now);
        self.leases.expire(now).unwrap_or_else(|e| {
            log_io(e);
            Vec::new()
        })
    }

    fn is_client_addr(&self, ip: Ipv4Addr) -> bool {
        let net = self.net.trunc();
        net.contains(&ip) && ip != net.network() && ip != net.broadcast() && ip != self.server_ip
    }

    /// True if `ip` may be leased to `mac` now: in the subnet, not the server's,
    /// not reserved for or leased to or offered to another MAC, not declined.
    fn free_for(&self, mac: MacAddr, ip: Ipv4Addr, now: u64) -> bool {
        self.is_client_addr(ip)
            && self.reserved_ips.get(&ip).is_none_or(|m| *m == mac)
            && self.leases.by_ip(&ip).is_none_or(|l| l.mac == mac || l.expired(now))
            && !self
                .offers
                .iter()
                .any(|(m, (o, until))| *o == ip && *m != mac && *until > now)
            && self.declined.get(&ip).is_none_or(|until| *until <= now)
    }

    fn in_pool(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        self.ranges.iter().any(|(s, e, _)| (*s..=*e).contains(&v))
    }

    /// The address a REQUEST for `ip` from `mac` may have (section 4.3.2): its
    /// reservation if it has one, else a free address in a pool or its own lease.
    fn acceptable(&self, mac: MacAddr, ip: Ipv4Addr, now: u64) -> bool {
        if let Some(r) = self.reservations.get(&mac).and_then(|r| r.ip) {
            return r == ip;
        }
        let own = self.leases.get(&mac).is_some_and(|l| l.ip == ip);
        (own || self.in_pool(ip)) && self.free_for(mac, ip, now)
    }

    fn choose(&self, mac: MacAddr, requested: Option<Ipv4Addr>, now: u64) -> Option<Ipv4Addr> {
        if let Some(ip) = self.reservations.get(&mac).and_then(|r| r.ip) {
            return Some(ip);
        }
        if let Some((ip, _)) = self.offers.get(&mac) {
            if self.free_for(mac, *ip, now) {
                return Some(*ip);
            }
        }
        if let Some(l) = self.leases.get(&mac) {
            if self.in_pool(l.ip) && self.free_for(mac, l.ip, now) {
                return Some(l.ip);
            }
        }
        if let Some(ip) = requested.filter(|ip| self.in_pool(*ip) && self.free_for(mac, *ip, now)) {
            return Some(ip);
        }
        self.ranges
            .iter()
            .flat_map(|(s, e, _)| *s..=*e)
            .map(Ipv4Addr::from)
            .find(|ip| self.free_for(mac, *ip, now))
    }

    fn lease_secs(&self, mac: MacAddr, ip: Ipv4Addr) -> LeaseSecs {
        if let Some(l) = self.reservations.get(&mac).and_then(|r| r.lease) {
            return l;
        }
        let v = u32::from(ip);
        self.ranges
            .iter()
            .find(|(s, e, _)| (*s..=*e).contains(&v))
            .or(self.ranges.first())
            .map_or(DEFAULT_LEASE, |r| r.2)
    }

    fn reply(&self, req: &Message, mtype: MessageType, yiaddr: Ipv4Addr) -> Message {
        let mut m = Message::new_with_id(
            req.xid(),
            if mtype == MessageType::Nak {
                Ipv4Addr::UNSPECIFIED
            } else {
                req.ciaddr()
            },
            yiaddr,
            Ipv4Addr::UNSPECIFIED,
            req.giaddr(),
            &req.chaddr()[..6],
        );
        m.set_opcode(Opcode::BootReply)
            .set_htype(HType::Eth)
            .set_flags(req.flags());
        m.opts_mut().insert(DhcpOption::MessageType(mtype));
        m
    }

    /// Adds the server's options: server id, lease times, mask, router and DNS
    /// server (the hub unless `--dhcp-option` says otherwise), domain, hostname,
    /// then every `--dhcp-option` (which override the defaults).
    fn add_options(&self, m: &mut Message, mac: MacAddr, lease: Option<LeaseSecs>) {
        let o = m.opts_mut();
        o.insert(DhcpOption::ServerIdentifier(self.server_ip));
        if let Some(secs) = lease {
            o.insert(DhcpOption::AddressLeaseTime(secs));
            if secs != INFINITE {
                o.insert(DhcpOption::Renewal(secs / 2));
                o.insert(DhcpOption::Rebinding(secs / 8 * 7));
            }
        }
        o.insert(DhcpOption::SubnetMask(self.net.netmask()));
        o.insert(DhcpOption::BroadcastAddr(self.net.broadcast()));
        o.insert(DhcpOption::Router(vec![self.server_ip]));
        o.insert(DhcpOption::DomainNameServer(vec![self.server_ip]));
        if let Some(d) = &self.domain {
            o.insert(DhcpOption::DomainName(d.clone()));
        }
        if let Some(name) = self.reservations.get(&mac).and_then(|r| r.hostname.clone()) {
            o.insert(DhcpOption::Hostname(name));
        }
        for (code, data) in &self.options {
            o.insert(DhcpOption::Unknown(UnknownOption::new((*code).into(), data.clone())));
        }
    }

    /// RFC 2131 section 4.1: to the relay if giaddr is set; NAK broadcast; to
    /// ciaddr if set; broadcast if the client asked; else unicast to yiaddr at chaddr.
    fn destination(&self, req: &Message, reply: &Message, mac: MacAddr, frame_src: MacAddr) -> Destination {
        let bcast = Destination {
            ip: Ipv4Addr::BROADCAST,
            mac: MacAddr::BROADCAST,
            port: 68,
        };
        if !req.giaddr().is_unspecified() {
            return Destination {
                ip: req.giaddr(),
                mac: frame_src,
                port: 67,
            };
        }
        let is_nak = matches!(
            reply.opts().get(OptionCode::MessageType),
            Some(DhcpOption::MessageType(MessageType::Nak))
        );
        if is_nak {
            bcast
        } else if !req.ciaddr().is_unspecified() {
            Destination {
                ip: req.ciaddr(),
                mac,
                port: 68,
            }
        } else if req.flags().broadcast() || reply.yiaddr().is_unspecified() {
            bcast
        } else {
            Destination {
                ip: reply.yiaddr(),
                mac,
                port: 68,
            }
        }
    }
}

/// The hostname a client sent in option 12, if it is a valid single label.
fn client_hostname(req: &Message) -> Option<String> {
    match req.opts().get(OptionCode::Hostname) {
        Some(DhcpOption::Hostname(h)) => crate::config::check_hostname(h)
            .ok()
            .map(|n| n.split('.').next().unwrap_or_default().to_string()),
        _ => None,
    }
}

fn log_io(e: std::io::Error) {
    tracing::error!(error = %e, "cannot write the lease file");
}
