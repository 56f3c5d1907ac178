//! The DHCP server, sans-IO (RFC 2131, options from RFC 2132; message codec
//! from the dhcproto crate). [`DhcpServer::handle`] takes a decoded client
//! message and returns the reply and where it must go; the host (host.rs) wraps
//! it in UDP/IP/Ethernet.
//!
//! Messages (RFC 2131 section 4.3): DISCOVER -> OFFER; REQUEST -> ACK or NAK in
//! every client state (SELECTING with the server identifier; INIT-REBOOT with
//! option 50; RENEWING and REBINDING with ciaddr); RELEASE ends the lease;
//! DECLINE quarantines the address for 10 minutes; INFORM -> ACK with options
//! only. Like dnsmasq, a REQUEST from a client this server holds no lease or
//! reservation for gets no answer (another server may know it), unless
//! `--dhcp-authoritative` is set; a REQUEST for an address on the wrong network
//! is always NAKed.
//!
//! Leases are keyed by the client identifier (option 61) when sent, else by the
//! MAC. Address choice (section 4.3.1), in order: the MAC's reservation
//! (`--dhcp-host`), the client's current lease, the address it last had (its
//! released or expired lease, below) if free, the address it asked for (option
//! 50) if free and no other client's last address, then the next free pool
//! address after the last one given (a cursor, so a large pool is not scanned
//! from its start for every client). An address reserved for another MAC is
//! never given out.
//!
//! A client gets back the address it last had, as from dnsmasq, whose clients
//! come back to the address they had: a pool client that releases its lease
//! (many do at shutdown) or lets it expire, then asks again, is offered the
//! same address while no one else holds it. dnsmasq gets there by starting its
//! search for a free address at a hash of the MAC (dhcp.c `address_allocate`);
//! vmlan remembers: the lease table keeps the ended lease as the client's
//! record (leases.rs, also across restarts, in the lease file), and only pool
//! addresses are remembered (a reservation decides by itself). A remembered
//! address is free for the cursor: a new client takes it over only when the
//! cursor, going round the pool, comes to it, that is once the pool addresses
//! ahead of the cursor (never handed out, in the cursor's first round) are
//! used up, and then in the cursor's order, the address handed out longest ago
//! first. At start the cursor resumes just after the pool address furthest
//! along its way that has a record, live or ended, so a restart does not give
//! remembered addresses away while others were never used. The table holds at
//! most one record per address: remembering costs no scan, and allocation
//! stays the cursor's.
//!
//! A full pool costs O(1) per DISCOVER, however large (a flood of random-MAC
//! DISCOVERs fills a /16 with offers in well under a second, and the host runs
//! under the segment's lock): an OFFER holds its address for 60 s; once the
//! cursor has gone all the way round without finding a free address, the pool
//! is marked full and the search looks only at the addresses freed since
//! (RELEASE, DECLINE's quarantine ended, an offer dropped or run out, a lease
//! expired, a client moved to another address), remembered up to 1024; past
//! that, the mark is cleared and the cursor searches again. An offer or lease
//! that runs out is seen by the next tick's expiry (about once a second). The
//! "pool is full" warning is logged at most once per 10 s, with the number of
//! those suppressed. [`DhcpServer::pool_scan_steps`] counts the addresses the
//! search looked at.
//!
//! Subnets: `--addr`'s, and any `--dhcp-range` with its own netmask, which
//! serves clients behind a relay agent: a request with giaddr set is answered
//! from the subnet holding giaddr, to the relay (UDP 67 at giaddr), with giaddr
//! as the default router.
//!
//! Replies carry the hub's defaults (mask, broadcast, router, DNS server,
//! domain, hostname) unless a `--dhcp-option` replaces them, or, given without a
//! value, leaves that option out (dnsmasq's `--dhcp-option=3`: no router).
//! They carry the options in the order of the client's parameter request
//! list (option 55), after the message type and server identifier; values over
//! 255 bytes are split into several options (RFC 3396, by dhcproto); replies are
//! padded to the 300 bytes of a BOOTP message (RFC 1542 section 2.1).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode, OptionCode, UnknownOption};
use dhcproto::Encodable;
use ipnet::Ipv4Net;
use vmlan_hub::MacAddr;

use crate::config::{DhcpBoot, HostConfig, LeaseSecs, Reservation, DEFAULT_LEASE, INFINITE};
use crate::leases::{Lease, LeaseDb, LeaseKey};

/// How long an OFFER holds its address for the client, in seconds.
const OFFER_HOLD: u64 = 60;
/// Most leases the table is sized for at start (a /16 pool fits; larger pools grow as needed).
pub const RESERVE_MAX: usize = 1 << 17;
/// How long a DECLINEd address stays out of the pool, in seconds (dnsmasq: 10 minutes).
const DECLINE_HOLD: u64 = 600;
/// Smallest reply, in bytes (a BOOTP message; RFC 1542 section 2.1).
const MIN_REPLY: usize = 300;
/// Most addresses remembered as freed while a pool is full (see [`Subnet::full`]);
/// past it, the pool search goes back to the cursor.
const FREED_MAX: usize = 1024;
/// At most one "pool is full" warning per this many seconds; the others are
/// counted and the count logged with the next warning.
const FULL_WARN_EVERY: u64 = 10;

/// What happened to a lease, for the DNS server and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseChange {
    /// A lease was granted (ACK) to a client that held no live lease with
    /// this address and name; a renewal of the same address and name is not
    /// reported (its name is published already), so each `Bound` is matched by
    /// exactly one `Removed` when the lease ends.
    Bound(Lease),
    /// A lease ended (RELEASE, DECLINE, expiry, or the client moved to another address).
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

impl Reply {
    /// The message as bytes: options in the client's requested order, padded to 300 bytes.
    ///
    /// # Errors
    /// dhcproto's encoding error (an option value it cannot encode).
    pub fn encode(&self, request_list: &[u8]) -> Result<Vec<u8>, dhcproto::error::EncodeError> {
        Ok(order_options(self.msg.to_vec()?, request_list))
    }
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
    /// A REQUEST from a client unknown here, and not `--dhcp-authoritative`.
    #[error("no lease for this client here, and not authoritative")]
    UnknownClient,
    /// The pool has no free address.
    #[error("no free address in the pool for {0}")]
    PoolFull(MacAddr),
    /// No subnet serves the request (a relay's giaddr outside every range).
    #[error("no subnet configured for this request")]
    NoSubnet,
    /// Nothing to answer (RELEASE, DECLINE, an OFFER or ACK seen on the segment).
    #[error("no reply needed")]
    NoReply,
}

/// One subnet the server hands addresses out on.
#[derive(Debug)]
struct Subnet {
    net: Ipv4Net,
    /// Pools: (first, last, lease seconds); empty for a `static` subnet.
    pools: Vec<(u32, u32, LeaseSecs)>,
    /// Lease time for reservations in this subnet.
    lease: LeaseSecs,
    /// Where the next pool search starts.
    cursor: u32,
    /// The cursor went all the way round its pools without finding a free
    /// address, and nothing has been freed since except the addresses in
    /// `freed`: a search then looks at those only, so a full pool costs O(1)
    /// per DISCOVER however large it is.
    full: bool,
    /// Pool addresses freed (RELEASE, expiry, a dropped offer, a quarantine's
    /// end, a client's move) since `full` was set, at most [`FREED_MAX`];
    /// more clear `full` instead.
    freed: Vec<u32>,
    /// Served through a relay (its own netmask, not `--addr`'s subnet).
    relayed: bool,
}

/// The DHCP server state: configuration, leases, outstanding offers, declined addresses.
#[derive(Debug)]
pub struct DhcpServer {
    server_ip: Ipv4Addr,
    domain: Option<String>,
    subnets: Vec<Subnet>,
    reservations: HashMap<MacAddr, Reservation>,
    reserved_ips: HashMap<Ipv4Addr, MacAddr>,
    options: Vec<(u8, Vec<u8>)>,
    boot: Option<DhcpBoot>,
    authoritative: bool,
    leases: LeaseDb,
    offers: HashMap<LeaseKey, (Ipv4Addr, u64)>,
    offered_ips: HashMap<Ipv4Addr, (LeaseKey, u64)>,
    declined: HashMap<Ipv4Addr, u64>,
    /// Pool addresses looked at by the search for a free one, in total.
    scan_steps: u64,
    /// When the last "pool is full" warning was logged (Unix seconds).
    full_warned: Option<u64>,
    /// "Pool is full" warnings not logged since then.
    full_suppressed: u64,
}

fn opt_ip(msg: &Message, code: OptionCode) -> Option<Ipv4Addr> {
    match msg.opts().get(code)? {
        DhcpOption::RequestedIpAddress(ip) | DhcpOption::ServerIdentifier(ip) => Some(*ip),
        _ => None,
    }
}

fn message_type(msg: &Message) -> Option<MessageType> {
    match msg.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(t)) => Some(*t),
        _ => None,
    }
}

/// The client's parameter request list (option 55), codes in its order.
pub fn request_list(msg: &Message) -> Vec<u8> {
    match msg.opts().get(OptionCode::ParameterRequestList) {
        Some(DhcpOption::ParameterRequestList(codes)) => codes.iter().map(|c| u8::from(*c)).collect(),
        _ => Vec::new(),
    }
}

impl DhcpServer {
    /// A server for `cfg` (already validated) with the leases in `leases`.
    /// The lease table is sized for every pool address and reservation at
    /// once (up to [`RESERVE_MAX`]), so it never rehashes while clients wait.
    pub fn new(cfg: &HostConfig, mut leases: LeaseDb) -> Self {
        let own = cfg.net.trunc();
        let mut subnets = vec![Subnet {
            net: own,
            pools: vec![],
            lease: DEFAULT_LEASE,
            cursor: 0,
            full: false,
            freed: Vec::new(),
            relayed: false,
        }];
        let mut own_lease = None;
        for r in &cfg.ranges {
            let net = cfg.range_subnet(r);
            let i = match subnets.iter().position(|s| s.net == net) {
                Some(i) => i,
                None => {
                    subnets.push(Subnet {
                        net,
                        pools: vec![],
                        lease: r.lease,
                        cursor: 0,
                        full: false,
                        freed: Vec::new(),
                        relayed: true,
                    });
                    subnets.len() - 1
                }
            };
            if i == 0 && own_lease.is_none() {
                own_lease = Some(r.lease);
            }
            let s = &mut subnets[i];
            s.lease = r.lease;
            if !r.static_only {
                s.pools.push((r.start.into(), r.end.into(), r.lease));
            }
        }
        subnets[0].lease = own_lease.unwrap_or(DEFAULT_LEASE);
        // Remembered addresses outside every pool, or reserved, serve no one.
        let pooled = |ip: Ipv4Addr| {
            let v = u32::from(ip);
            subnets
                .iter()
                .flat_map(|s| &s.pools)
                .any(|(a, b, _)| (*a..=*b).contains(&v))
        };
        let reservations: HashMap<MacAddr, Reservation> = cfg.reservations.iter().map(|r| (r.mac, r.clone())).collect();
        let reserved_ips: HashMap<Ipv4Addr, MacAddr> =
            cfg.reservations.iter().filter_map(|r| Some((r.ip?, r.mac))).collect();
        let reserved =
            |l: &Lease| reserved_ips.contains_key(&l.ip) || reservations.get(&l.mac).is_some_and(|r| r.ip.is_some());
        let stale: Vec<LeaseKey> = leases
            .records()
            .filter(|(l, ended)| *ended && (!pooled(l.ip) || reserved(l)))
            .map(|(l, _)| l.key())
            .collect();
        for k in stale {
            let _ = leases.remove(&k).map_err(log_io);
        }
        for s in &mut subnets {
            s.cursor = resume_cursor(&s.pools, leases.records().map(|(l, _)| l.ip));
        }
        let addresses: u64 = subnets
            .iter()
            .flat_map(|s| &s.pools)
            .map(|(a, b, _)| u64::from(b - a) + 1)
            .sum::<u64>()
            + cfg.reservations.len() as u64;
        leases.reserve(addresses.min(RESERVE_MAX as u64) as usize);
        DhcpServer {
            server_ip: cfg.addr(),
            domain: cfg.domain.clone(),
            subnets,
            reservations,
            reserved_ips,
            options: cfg.options.iter().map(|o| (o.code, o.data.clone())).collect(),
            boot: cfg.boot.clone(),
            authoritative: cfg.authoritative,
            leases,
            offers: HashMap::new(),
            offered_ips: HashMap::new(),
            declined: HashMap::new(),
            scan_steps: 0,
            full_warned: None,
            full_suppressed: 0,
        }
    }

    /// How many pool addresses the search for a free address has looked at
    /// since start (a counter: it grows by about one per address handed out,
    /// and not at all for a DISCOVER that finds the pool full, see the
    /// module's documentation).
    pub fn pool_scan_steps(&self) -> u64 {
        self.scan_steps
    }

    /// `ip` may have become free: if its pool is marked full, it is remembered
    /// for the next search (or, past [`FREED_MAX`], the mark is cleared).
    fn freed(&mut self, ip: Ipv4Addr) {
        let v = u32::from(ip);
        for s in &mut self.subnets {
            if s.full && s.pools.iter().any(|(a, b, _)| (*a..=*b).contains(&v)) {
                if s.freed.len() < FREED_MAX {
                    s.freed.push(v);
                } else {
                    s.full = false;
                    s.freed = Vec::new();
                }
            }
        }
    }

    /// Logs that the pool has no address for `mac`, at most once per
    /// [`FULL_WARN_EVERY`] seconds, with the count of those not logged.
    fn warn_full(&mut self, mac: MacAddr, now: u64) {
        if self.full_warned.is_some_and(|t| now < t + FULL_WARN_EVERY) {
            self.full_suppressed += 1;
            return;
        }
        tracing::warn!(
            mac = %mac,
            suppressed = self.full_suppressed,
            "DHCPDISCOVER: no address available, the pool is full (at most one such warning per {FULL_WARN_EVERY} s; suppressed counts the others)"
        );
        self.full_warned = Some(now);
        self.full_suppressed = 0;
    }

    /// The lease table.
    pub fn leases(&self) -> &LeaseDb {
        &self.leases
    }

    /// Exports the lease file now and empties the journal (at shutdown).
    ///
    /// # Errors
    /// Any I/O error.
    pub fn compact(&mut self) -> std::io::Result<()> {
        self.leases.compact()
    }

    /// Makes the lease journal durable and exports the lease file when due (see leases.rs).
    pub fn sync(&mut self, now: u64) {
        if let Err(e) = self.leases.sync(now) {
            log_io(e);
        }
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
        let client_id = match req.opts().get(OptionCode::ClientIdentifier) {
            Some(DhcpOption::ClientIdentifier(id)) => Some(id.as_slice()),
            _ => None,
        };
        let key = LeaseKey::of(mac, client_id);
        let Some(mtype) = message_type(req) else {
            return Err(Ignored::NotARequest("no message type (option 53)"));
        };
        let subnet = self.subnet_for(req).ok_or(Ignored::NoSubnet);
        match mtype {
            MessageType::Discover => self.discover(req, &key, mac, subnet?, frame_src, now),
            MessageType::Request => self.request(req, key, mac, subnet?, frame_src, now, changes),
            MessageType::Release => {
                let ip = req.ciaddr();
                if self.leases.get(&key).is_some_and(|l| l.ip == ip) {
                    // Kept as the client's last address if it is a pool one.
                    let ended = match self.rememberable(mac, ip) {
                        true => self.leases.release(&key, now),
                        false => self.leases.remove(&key),
                    };
                    if let Ok(Some(l)) = ended.map_err(log_io) {
                        tracing::info!(mac = %mac, ip = %l.ip, "DHCPRELEASE");
                        self.freed(l.ip);
                        changes.push(LeaseChange::Removed(l));
                    }
                }
                Err(Ignored::NoReply)
            }
            MessageType::Decline => {
                if let Some(ip) = opt_ip(req, OptionCode::RequestedIpAddress) {
                    tracing::warn!(mac = %mac, ip = %ip, "DHCPDECLINE: address in use by another host, quarantined");
                    self.declined.insert(ip, now + DECLINE_HOLD);
                    if self.leases.get(&key).is_some_and(|l| l.ip == ip) {
                        if let Ok(Some(l)) = self.leases.remove(&key).map_err(log_io) {
                            changes.push(LeaseChange::Removed(l));
                        }
                    }
                }
                Err(Ignored::NoReply)
            }
            MessageType::Inform => {
                let s = subnet?;
                let mut reply = self.reply(req, MessageType::Ack, Ipv4Addr::UNSPECIFIED);
                self.add_options(&mut reply, req, mac, s, None);
                let to = self.destination(req, &reply, mac, frame_src);
                Ok(Reply { msg: reply, to })
            }
            _ => Err(Ignored::NoReply),
        }
    }

    /// The subnet serving `req`: giaddr's for a relayed request, else `--addr`'s.
    fn subnet_for(&self, req: &Message) -> Option<usize> {
        let giaddr = req.giaddr();
        if giaddr.is_unspecified() {
            return Some(0);
        }
        self.subnets.iter().position(|s| s.net.contains(&giaddr))
    }

    fn discover(
        &mut self,
        req: &Message,
        key: &LeaseKey,
        mac: MacAddr,
        subnet: usize,
        frame_src: MacAddr,
        now: u64,
    ) -> Result<Reply, Ignored> {
        let requested = opt_ip(req, OptionCode::RequestedIpAddress);
        let Some(ip) = self.choose(key, mac, subnet, requested, now) else {
            self.warn_full(mac, now);
            return Err(Ignored::PoolFull(mac));
        };
        if let Some((old, _)) = self.offers.insert(key.clone(), (ip, now + OFFER_HOLD)) {
            if old != ip {
                self.offered_ips.remove(&old);
                self.freed(old);
            }
        }
        self.offered_ips.insert(ip, (key.clone(), now + OFFER_HOLD));
        let mut reply = self.reply(req, MessageType::Offer, ip);
        let secs = self.lease_secs(mac, subnet, ip);
        self.add_options(&mut reply, req, mac, subnet, Some(secs));
        tracing::debug!(mac = %mac, ip = %ip, "DHCPOFFER");
        let to = self.destination(req, &reply, mac, frame_src);
        Ok(Reply { msg: reply, to })
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        req: &Message,
        key: LeaseKey,
        mac: MacAddr,
        subnet: usize,
        frame_src: MacAddr,
        now: u64,
        changes: &mut Vec<LeaseChange>,
    ) -> Result<Reply, Ignored> {
        let server_id = opt_ip(req, OptionCode::ServerIdentifier);
        if server_id.is_some_and(|s| s != self.server_ip) {
            // SELECTING another server's offer: forget ours (section 4.3.2).
            self.forget_offer(&key);
            return Err(Ignored::OtherServer);
        }
        let requested = opt_ip(req, OptionCode::RequestedIpAddress)
            .or_else(|| (!req.ciaddr().is_unspecified()).then(|| req.ciaddr()));
        let Some(ip) = requested else {
            return Err(Ignored::NotARequest("REQUEST without requested address or ciaddr"));
        };
        let sub = &self.subnets[subnet];
        let wrong_network = !sub.net.contains(&ip);
        let known = self.leases.get(&key).is_some()
            || self.leases.remembered(&key).is_some()
            || self.reservations.contains_key(&mac);
        if server_id.is_none() && !wrong_network && !known && !self.authoritative {
            // INIT-REBOOT, RENEWING or REBINDING from a client we know nothing of.
            return Err(Ignored::UnknownClient);
        }
        if wrong_network || !self.acceptable(&key, mac, subnet, ip, now) {
            tracing::info!(mac = %mac, ip = %ip, "DHCPNAK: address not available to this client");
            let mut nak = self.reply(req, MessageType::Nak, Ipv4Addr::UNSPECIFIED);
            nak.set_flags(req.flags().set_broadcast());
            nak.opts_mut().insert(DhcpOption::ServerIdentifier(self.server_ip));
            let to = self.destination(req, &nak, mac, frame_src);
            return Ok(Reply { msg: nak, to });
        }
        self.forget_offer(&key);
        let secs = self.lease_secs(mac, subnet, ip);
        let hostname = self
            .reservations
            .get(&mac)
            .and_then(|r| r.hostname.clone())
            .or_else(|| client_hostname(req));
        let client_id = match &key {
            LeaseKey::ClientId(id) => Some(id.clone()),
            LeaseKey::Mac(_) => None,
        };
        let lease = Lease {
            mac,
            ip,
            hostname,
            client_id,
            expires: if secs == INFINITE { 0 } else { now + u64::from(secs) },
        };
        // A renewal (same address, same name) is already published: it changes
        // nothing in DNS, so renewals never stack references to the name.
        let mut renewal = false;
        if let Some(old) = self.leases.get(&key).cloned() {
            if old.ip != ip || old.hostname != lease.hostname {
                changes.push(LeaseChange::Removed(old));
            } else {
                renewal = true;
            }
        }
        if let Some(old) = self.leases.by_ip(&ip).filter(|l| l.key() != key).cloned() {
            changes.push(LeaseChange::Removed(old));
        }
        let moved = self.leases.get(&key).map(|l| l.ip).filter(|old| *old != ip);
        let _ = self.leases.insert(lease.clone()).map_err(log_io);
        if let Some(old) = moved {
            self.freed(old);
        }
        tracing::info!(
            mac = %mac, ip = %ip,
            hostname = lease.hostname.as_deref().unwrap_or("*"),
            lease_secs = secs,
            "DHCPACK: lease granted"
        );
        if !renewal {
            changes.push(LeaseChange::Bound(lease));
        }
        let mut ack = self.reply(req, MessageType::Ack, ip);
        self.add_options(&mut ack, req, mac, subnet, Some(secs));
        let to = self.destination(req, &ack, mac, frame_src);
        Ok(Reply { msg: ack, to })
    }

    fn forget_offer(&mut self, key: &LeaseKey) {
        if let Some((ip, _)) = self.offers.remove(key) {
            self.offered_ips.remove(&ip);
            self.freed(ip);
        }
    }

    /// Drops offers and quarantines that have run out at `now` and ends the
    /// leases that have; returns those leases. An expired pool lease stays
    /// as its client's last address; any other is forgotten.
    pub fn expire(&mut self, now: u64) -> Vec<Lease> {
        self.offers.retain(|_, (_, until)| *until > now);
        let mut gone = Vec::new();
        let full = self.subnets.iter().any(|s| s.full);
        self.offered_ips.retain(|ip, (_, until)| {
            let keep = *until > now;
            if !keep && full {
                gone.push(*ip);
            }
            keep
        });
        self.declined.retain(|ip, until| {
            let keep = *until > now;
            if !keep && full {
                gone.push(*ip);
            }
            keep
        });
        let ended = self.leases.expire(now);
        for l in &ended {
            if !self.rememberable(l.mac, l.ip) {
                let _ = self.leases.remove(&l.key()).map_err(log_io);
            }
            gone.push(l.ip);
        }
        for ip in gone {
            self.freed(ip);
        }
        ended
    }

    /// Whether an ended lease of `mac` on `ip` is kept as the client's last
    /// address: `ip` is a pool address not reserved for anyone.
    fn rememberable(&self, mac: MacAddr, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        let pooled = self
            .subnets
            .iter()
            .flat_map(|s| &s.pools)
            .any(|(a, b, _)| (*a..=*b).contains(&v));
        pooled && !self.reserved_ips.contains_key(&ip) && self.reservations.get(&mac).is_none_or(|r| r.ip.is_none())
    }

    fn is_client_addr(&self, subnet: usize, ip: Ipv4Addr) -> bool {
        let net = self.subnets[subnet].net;
        net.contains(&ip) && ip != net.network() && ip != net.broadcast() && ip != self.server_ip
    }

    /// True if `ip` may be leased to (`key`, `mac`) now: a client address of the
    /// subnet, not reserved for another MAC, not leased or offered to another
    /// client, not declined.
    fn free_for(&self, key: &LeaseKey, mac: MacAddr, subnet: usize, ip: Ipv4Addr, now: u64) -> bool {
        self.is_client_addr(subnet, ip)
            && self.reserved_ips.get(&ip).is_none_or(|m| *m == mac)
            && self.leases.by_ip(&ip).is_none_or(|l| l.key() == *key || l.expired(now))
            && self
                .offered_ips
                .get(&ip)
                .is_none_or(|(k, until)| k == key || *until <= now)
            && self.declined.get(&ip).is_none_or(|until| *until <= now)
    }

    fn in_pool(&self, subnet: usize, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        self.subnets[subnet]
            .pools
            .iter()
            .any(|(s, e, _)| (*s..=*e).contains(&v))
    }

    /// Whether a REQUEST for `ip` may be ACKed (section 4.3.2): the client's
    /// reservation if it has one, else its own lease or a free pool address.
    fn acceptable(&self, key: &LeaseKey, mac: MacAddr, subnet: usize, ip: Ipv4Addr, now: u64) -> bool {
        if let Some(r) = self.reservations.get(&mac).and_then(|r| r.ip) {
            return r == ip;
        }
        let own = self.leases.get(key).is_some_and(|l| l.ip == ip);
        (own || self.in_pool(subnet, ip)) && self.free_for(key, mac, subnet, ip, now)
    }

    fn choose(
        &mut self,
        key: &LeaseKey,
        mac: MacAddr,
        subnet: usize,
        requested: Option<Ipv4Addr>,
        now: u64,
    ) -> Option<Ipv4Addr> {
        if let Some(ip) = self.reservations.get(&mac).and_then(|r| r.ip) {
            return self.subnets[subnet].net.contains(&ip).then_some(ip);
        }
        if let Some((ip, _)) = self.offers.get(key) {
            if self.in_pool(subnet, *ip) && self.free_for(key, mac, subnet, *ip, now) {
                return Some(*ip);
            }
        }
        if let Some(l) = self.leases.get(key) {
            if self.in_pool(subnet, l.ip) && self.free_for(key, mac, subnet, l.ip, now) {
                return Some(l.ip);
            }
        }
        // The address it last had (released or expired), while no one took it.
        if let Some(l) = self.leases.remembered(key) {
            if self.in_pool(subnet, l.ip) && self.free_for(key, mac, subnet, l.ip, now) {
                return Some(l.ip);
            }
        }
        let someone_elses = |ip: &Ipv4Addr| self.leases.remembered_at(ip).is_some_and(|l| l.key() != *key);
        if let Some(ip) = requested
            .filter(|ip| self.in_pool(subnet, *ip) && self.free_for(key, mac, subnet, *ip, now) && !someone_elses(ip))
        {
            return Some(ip);
        }
        // A pool found full: only the addresses freed since can be free (or
        // ones whose hold ran out since the last tick's expiry, which that
        // expiry reports): O(1) per DISCOVER.
        if self.subnets[subnet].full {
            while let Some(v) = self.subnets[subnet].freed.pop() {
                self.scan_steps += 1;
                let ip = Ipv4Addr::from(v);
                if self.free_for(key, mac, subnet, ip, now) {
                    return Some(ip);
                }
            }
            return None;
        }
        // The next free address after the cursor, wrapping around the pools once.
        let total: u64 = self.subnets[subnet]
            .pools
            .iter()
            .map(|(s, e, _)| u64::from(e - s) + 1)
            .sum();
        let mut at = self.subnets[subnet].cursor;
        for _ in 0..total {
            let pools = &self.subnets[subnet].pools;
            let Some(pos) = pools.iter().position(|(s, e, _)| (*s..=*e).contains(&at)) else {
                at = pools.first()?.0;
                continue;
            };
            let next = if at == pools[pos].1 {
                pools[(pos + 1) % pools.len()].0
            } else {
                at + 1
            };
            self.scan_steps += 1;
            let ip = Ipv4Addr::from(at);
            if self.free_for(key, mac, subnet, ip, now) {
                self.subnets[subnet].cursor = next;
                return Some(ip);
            }
            at = next;
        }
        // All the way round: full until something is freed.
        let s = &mut self.subnets[subnet];
        s.full = !s.pools.is_empty();
        s.freed.clear();
        None
    }

    fn lease_secs(&self, mac: MacAddr, subnet: usize, ip: Ipv4Addr) -> LeaseSecs {
        if let Some(l) = self.reservations.get(&mac).and_then(|r| r.lease) {
            return l;
        }
        let v = u32::from(ip);
        let s = &self.subnets[subnet];
        s.pools
            .iter()
            .find(|(a, b, _)| (*a..=*b).contains(&v))
            .map_or(s.lease, |p| p.2)
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

    /// Adds the server's options: server id, lease times, mask, broadcast, router
    /// (the hub, or giaddr for a relayed subnet) and DNS server (the hub) unless
    /// `--dhcp-option` says otherwise, domain, hostname, the PXE boot fields, then
    /// every `--dhcp-option` in order (which override the defaults; one without a
    /// value removes the option, the default included, as dnsmasq's
    /// `--dhcp-option=3`).
    fn add_options(&self, m: &mut Message, req: &Message, mac: MacAddr, subnet: usize, lease: Option<LeaseSecs>) {
        let sub = &self.subnets[subnet];
        let router = if sub.relayed { req.giaddr() } else { self.server_ip };
        if let Some(b) = &self.boot {
            m.set_fname_str(&b.file);
            if let Some(name) = &b.server_name {
                m.set_sname_str(name);
            }
            m.set_siaddr(b.server_addr.unwrap_or(self.server_ip));
        }
        let o = m.opts_mut();
        o.insert(DhcpOption::ServerIdentifier(self.server_ip));
        if let Some(secs) = lease {
            o.insert(DhcpOption::AddressLeaseTime(secs));
            if secs != INFINITE {
                o.insert(DhcpOption::Renewal(secs / 2));
                o.insert(DhcpOption::Rebinding(secs / 8 * 7));
            }
        }
        o.insert(DhcpOption::SubnetMask(sub.net.netmask()));
        o.insert(DhcpOption::BroadcastAddr(sub.net.broadcast()));
        o.insert(DhcpOption::Router(vec![router]));
        o.insert(DhcpOption::DomainNameServer(vec![self.server_ip]));
        if let Some(d) = &self.domain {
            o.insert(DhcpOption::DomainName(d.clone()));
        }
        if let Some(name) = self.reservations.get(&mac).and_then(|r| r.hostname.clone()) {
            o.insert(DhcpOption::Hostname(name));
        }
        for (code, data) in &self.options {
            if data.is_empty() {
                o.remove((*code).into());
            } else {
                o.insert(DhcpOption::Unknown(UnknownOption::new((*code).into(), data.clone())));
            }
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
        if message_type(reply) == Some(MessageType::Nak) {
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

/// Where a subnet's pool search starts with the table as it is at start: just
/// after the pool address furthest along the cursor's way (the pools in order,
/// each upwards) that has a record, live or ended, wrapping to the next pool;
/// the first pool address when none has. So the cursor goes on through the
/// addresses never handed out before it comes round to remembered ones.
fn resume_cursor(pools: &[(u32, u32, LeaseSecs)], ips: impl Iterator<Item = Ipv4Addr>) -> u32 {
    let Some(first) = pools.first() else { return 0 };
    let furthest = ips
        .filter_map(|ip| {
            let v = u32::from(ip);
            pools
                .iter()
                .position(|(a, b, _)| (*a..=*b).contains(&v))
                .map(|p| (p, v))
        })
        .max();
    match furthest {
        None => first.0,
        Some((p, v)) if v == pools[p].1 => pools[(p + 1) % pools.len()].0,
        Some((_, v)) => v + 1,
    }
}

/// Reorders the options of an encoded message: message type (53) and server
/// identifier (54) first, then the codes of `request_list` in its order, then
/// the rest as they were; the runs of one split option (RFC 3396) stay together.
/// Pads the message to [`MIN_REPLY`] bytes.
pub fn order_options(mut msg: Vec<u8>, request_list: &[u8]) -> Vec<u8> {
    const OPTIONS: usize = 240; // 236-byte fixed header + 4-byte magic cookie
    if msg.len() <= OPTIONS {
        msg.resize(MIN_REPLY.max(msg.len()), 0);
        return msg;
    }
    // Groups of (code, byte range) in the encoded order, consecutive equal codes merged.
    let mut groups: Vec<(u8, usize, usize)> = Vec::new();
    let mut i = OPTIONS;
    while i < msg.len() {
        let code = msg[i];
        match code {
            0 => i += 1,
            255 => break,
            _ => {
                let Some(&len) = msg.get(i + 1) else { break };
                let end = (i + 2 + usize::from(len)).min(msg.len());
                match groups.last_mut() {
                    Some(g) if g.0 == code && g.2 == i => g.2 = end,
                    _ => groups.push((code, i, end)),
                }
                i = end;
            }
        }
    }
    let rank = |code: u8| match code {
        53 => 0,
        54 => 1,
        _ => request_list
            .iter()
            .position(|c| *c == code)
            .map_or(usize::MAX, |p| p + 2),
    };
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|g| rank(groups[*g].0)); // stable: unrequested keep their order
    let mut out = Vec::with_capacity(msg.len().max(MIN_REPLY));
    out.extend_from_slice(&msg[..OPTIONS]);
    for g in order {
        out.extend_from_slice(&msg[groups[g].1..groups[g].2]);
    }
    out.push(255);
    if out.len() < MIN_REPLY {
        out.resize(MIN_REPLY, 0);
    }
    msg = out;
    msg
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
