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
//! that runs out is seen by [`DhcpServer::expire`], which the host's timer
//! runs when [`DhcpServer::next_expiry`] comes (an ordered queue of offer and
//! quarantine ends, and the table's first lease expiry: nothing is walked
//! before something runs out). The
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

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, HType, Message, MessageType, Opcode, OptionCode};
use vmlan_hub::MacAddr;

use crate::config::{DhcpBoot, HostConfig, Reservation, DEFAULT_LEASE, INFINITE};
use crate::leases::{Lease, LeaseChange, LeaseDb, LeaseKey};

use super::pool::{resume_cursor, Subnet};
use super::reply::{client_hostname, Reply};

/// How long an OFFER holds its address for the client, in seconds.
const OFFER_HOLD: u64 = 60;
/// Most leases the table is sized for at start (a /16 pool fits; larger pools grow as needed).
pub const RESERVE_MAX: usize = 1 << 17;
/// How long a DECLINEd address stays out of the pool, in seconds (dnsmasq: 10 minutes).
const DECLINE_HOLD: u64 = 600;

/// What happened to a lease's binding of a name and address, for the DNS
/// server and the log (what to persist comes from the table: [`LeaseDb::take_changes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// A lease was granted (ACK) to a client that held no live lease with
    /// this address and name; a renewal of the same address and name is not
    /// reported (its name is published already), so each `Bound` is matched by
    /// exactly one `Removed` when the lease ends.
    Bound(Lease),
    /// A lease ended (RELEASE, DECLINE, expiry, or the client moved to another address).
    Removed(Lease),
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

/// The DHCP server state: configuration, leases, outstanding offers, declined addresses.
#[derive(Debug)]
pub struct DhcpServer {
    pub(super) server_ip: Ipv4Addr,
    pub(super) domain: Option<String>,
    pub(super) subnets: Vec<Subnet>,
    pub(super) reservations: HashMap<MacAddr, Reservation>,
    pub(super) reserved_ips: HashMap<Ipv4Addr, MacAddr>,
    pub(super) options: Vec<(u8, Vec<u8>)>,
    pub(super) boot: Option<DhcpBoot>,
    pub(super) authoritative: bool,
    pub(super) leases: LeaseDb,
    pub(super) offers: HashMap<LeaseKey, (Ipv4Addr, u64)>,
    pub(super) offered_ips: HashMap<Ipv4Addr, (LeaseKey, u64)>,
    pub(super) declined: HashMap<Ipv4Addr, u64>,
    /// When offers and quarantines run out (Unix seconds), in time order, one
    /// entry per second at most: the front is when [`DhcpServer::expire`] next
    /// has one to drop, so it walks them only then.
    pub(super) hold_ends: VecDeque<u64>,
    /// Pool addresses looked at by the search for a free one, in total.
    pub(super) scan_steps: u64,
    /// When the last "pool is full" warning was logged (Unix seconds).
    pub(super) full_warned: Option<u64>,
    /// "Pool is full" warnings not logged since then.
    pub(super) full_suppressed: u64,
}

fn opt_ip(msg: &Message, code: OptionCode) -> Option<Ipv4Addr> {
    match msg.opts().get(code)? {
        DhcpOption::RequestedIpAddress(ip) | DhcpOption::ServerIdentifier(ip) => Some(*ip),
        _ => None,
    }
}

pub(super) fn message_type(msg: &Message) -> Option<MessageType> {
    match msg.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(t)) => Some(*t),
        _ => None,
    }
}

impl DhcpServer {
    /// Replaces every reservation with `all` (validated together, as
    /// [`HostConfig::validate`] does). Leases and offers already made stay.
    pub fn set_reservations(&mut self, all: &[Reservation]) {
        self.reservations = all.iter().filter_map(|r| Some((r.mac?, r.clone()))).collect();
        self.reserved_ips = all.iter().filter_map(|r| Some((r.ip?, r.mac?))).collect();
    }

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
        let reservations: HashMap<MacAddr, Reservation> = cfg
            .reservations
            .iter()
            .filter_map(|r| Some((r.mac?, r.clone())))
            .collect();
        let reserved_ips: HashMap<Ipv4Addr, MacAddr> =
            cfg.reservations.iter().filter_map(|r| Some((r.ip?, r.mac?))).collect();
        let reserved =
            |l: &Lease| reserved_ips.contains_key(&l.ip) || reservations.get(&l.mac).is_some_and(|r| r.ip.is_some());
        let stale: Vec<LeaseKey> = leases
            .records()
            .filter(|(l, ended)| *ended && (!pooled(l.ip) || reserved(l)))
            .map(|(l, _)| l.key())
            .collect();
        for k in stale {
            leases.remove(&k);
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
            hold_ends: VecDeque::new(),
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

    /// The lease table.
    pub fn leases(&self) -> &LeaseDb {
        &self.leases
    }

    /// Moves the lease table's changes recorded since the last call into
    /// `into`, oldest first (see [`LeaseDb::take_changes`]).
    pub fn take_lease_changes(&mut self, into: &mut Vec<LeaseChange>) {
        self.leases.take_changes(into);
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
        changes: &mut Vec<Binding>,
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
                    if let Some(l) = ended {
                        tracing::info!(mac = %mac, ip = %l.ip, "DHCPRELEASE");
                        self.freed(l.ip);
                        changes.push(Binding::Removed(l));
                    }
                }
                Err(Ignored::NoReply)
            }
            MessageType::Decline => {
                if let Some(ip) = opt_ip(req, OptionCode::RequestedIpAddress) {
                    tracing::warn!(mac = %mac, ip = %ip, "DHCPDECLINE: address in use by another host, quarantined");
                    self.declined.insert(ip, now + DECLINE_HOLD);
                    self.hold_until(now + DECLINE_HOLD);
                    if self.leases.get(&key).is_some_and(|l| l.ip == ip) {
                        if let Some(l) = self.leases.remove(&key) {
                            changes.push(Binding::Removed(l));
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
        self.hold_until(now + OFFER_HOLD);
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
        changes: &mut Vec<Binding>,
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
                changes.push(Binding::Removed(old));
            } else {
                renewal = true;
            }
        }
        if let Some(old) = self.leases.by_ip(&ip).filter(|l| l.key() != key).cloned() {
            changes.push(Binding::Removed(old));
        }
        let moved = self.leases.get(&key).map(|l| l.ip).filter(|old| *old != ip);
        self.leases.insert(lease.clone());
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
            changes.push(Binding::Bound(lease));
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

    /// Notes that an offer or quarantine runs out at `until`.
    fn hold_until(&mut self, until: u64) {
        // Quarantines (600 s) end after offers (60 s) made at the same time;
        // keep the queue in order by placing an earlier end before later ones.
        if self.hold_ends.back().is_some_and(|b| *b >= until) {
            if !self.hold_ends.contains(&until) {
                let at = self.hold_ends.partition_point(|t| *t < until);
                self.hold_ends.insert(at, until);
            }
        } else {
            self.hold_ends.push_back(until);
        }
    }

    /// When [`DhcpServer::expire`] next has something to do (Unix seconds): the
    /// first lease expiry, offer or quarantine end; `None` if nothing runs out.
    pub fn next_expiry(&self) -> Option<u64> {
        let holds = self.hold_ends.front().copied();
        match (self.leases.earliest_expiry(), holds) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Drops offers and quarantines that have run out at `now` and ends the
    /// leases that have; returns those leases. An expired pool lease stays
    /// as its client's last address; any other is forgotten. Does nothing
    /// before [`DhcpServer::next_expiry`].
    pub fn expire(&mut self, now: u64) -> Vec<Lease> {
        if self.next_expiry().is_none_or(|t| t > now) {
            return Vec::new();
        }
        while self.hold_ends.front().is_some_and(|t| *t <= now) {
            self.hold_ends.pop_front();
        }
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
                self.leases.remove(&l.key());
            }
            gone.push(l.ip);
        }
        for ip in gone {
            self.freed(ip);
        }
        ended
    }
}
