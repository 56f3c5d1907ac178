//! The DHCPv6 server, sans-IO (RFC 8415; message codec from dhcproto's `v6`
//! module). [`Dhcp6Server::handle`] takes a client message's UDP payload, the
//! Ethernet source of its frame and the time, and returns the reply's UDP
//! payload; lease events come out of [`Dhcp6Server::take_events`], timers run
//! when [`Dhcp6Server::poll_timeout`] says, through
//! [`Dhcp6Server::handle_timeout`]. No files, threads or clocks.
//!
//! # Messages (RFC 8415 section 18.3)
//!
//! - SOLICIT (18.3.1) -> ADVERTISE: one address per IA_NA asked (T1 and T2
//!   0.5 and 0.8 of the lease time, preferred and valid lifetimes the lease
//!   time), held for the client for [`OFFER_HOLD`] seconds, with the
//!   Preference option; an IA_NA for which no address is left carries a
//!   Status Code NoAddrsAvail (18.3.9). With Rapid Commit asked (21.14) and
//!   [`Dhcp6Config::rapid_commit`] set: a REPLY carrying Rapid Commit and the
//!   leases bound at once.
//! - REQUEST (18.3.2) -> REPLY binding an address per IA_NA (NoAddrsAvail in
//!   an IA when none is left).
//! - RENEW (18.3.4), REBIND (18.3.5) -> REPLY extending the IA's lease;
//!   addresses the client lists that are not its lease get lifetimes 0. An IA
//!   this server holds no lease for gets NoBinding on RENEW; on REBIND its
//!   addresses are bound again if they are free pool addresses (or the
//!   client's reserved one: the server may have lost its leases), else get
//!   lifetimes 0, and an IA without addresses gets NoBinding.
//! - CONFIRM (18.3.3) -> REPLY Success if every address listed is on a
//!   pool's link (its prefix), else NotOnLink; no reply if none is listed.
//! - RELEASE (18.3.7) -> REPLY Success; the IA's lease ends, its address is
//!   free and remembered as the client's (below); an IA with no such lease
//!   gets NoBinding.
//! - DECLINE (18.3.8) -> REPLY Success; the IA's lease ends and its address
//!   is quarantined for [`DECLINE_HOLD`] seconds (only an address leased to
//!   that client: a client cannot take others' addresses out of the pool).
//! - INFORMATION-REQUEST (18.3.6) -> REPLY with the configuration options only.
//!
//! Every reply carries the Server Identifier (this server's DUID) and the
//! client's Client Identifier, and the DNS servers (option 23) and domain
//! search list (option 24) when configured and asked for in the Option
//! Request option (21.7). Messages are checked as section 16 says: a Server
//! Identifier that is not ours means the message is for another server and
//! it is ignored ([`Dhcp6Stats::foreign`]); a missing Client Identifier, a
//! Server Identifier where none may be, an INFORMATION-REQUEST carrying an
//! IA, a message that does not parse, or options of the wrong length drop
//! the message ([`Dhcp6Stats::malformed`]). Times saturate: no `now` overflows.
//! Server messages, relay messages and types this server does not handle
//! are ignored. Only IA_NA (non-temporary addresses) is served: an IA_TA gets
//! NoAddrsAvail and an IA_PD NoPrefixAvail. At most [`MAX_IAS`] IAs of a
//! message are answered, and [`MAX_ADDRS`] addresses of an IA looked at.
//!
//! # Leases and addresses
//!
//! A lease ([`Lease6`]) is keyed by the client's DUID and the IA's IAID
//! (section 4.2, "binding"). The address for an IA_NA is, in order: the
//! client's reservation ([`Reservation6`], by DUID, else by the frame's
//! source MAC or the MAC in a DUID-LL/LLT), for its first IA; the IA's
//! current lease; the address advertised to it; the address it last had (its
//! released or expired lease) if free; the address it asked for (an IA
//! Address in its IA_NA) if a free pool address that is no other client's
//! last address; else a free pool address found from a hash of DUID and IAID
//! ([`super::pool`]), one that is no other client's last address first. An
//! address reserved for another client is never handed out.
//!
//! The table is bounded ([`Dhcp6Config::max_records`], and
//! [`Dhcp6Config::max_offers`] for ADVERTISE holds): a pool may be a /64, and
//! made-up DUIDs cost a sender nothing.
//!
//! Ended leases are remembered, as the v4 server's table does: a pool
//! lease released or expired stays as a record (ended, with the time it ended
//! as its expiry) until its client or another one is given its address, so
//! a client that releases its lease and asks again gets the same address.
//! [`Dhcp6Server::records`] gives the records, live and ended, for the lease
//! file; [`Dhcp6Server::restore`] takes them back at start.
//!
//! # Events
//!
//! [`Lease6Event`]s follow the v4 server's `Binding`: [`Lease6Event::Bound`]
//! when an IA gets a lease it did not hold live (address or name new; its name
//! to publish in DNS), [`Lease6Event::Renewed`] when its lease is extended
//! unchanged (only the expiry to persist), [`Lease6Event::Ended`] when a lease
//! ends (release, decline, expiry, or the IA moved to another address or
//! name): each `Bound` is matched by exactly one `Ended`.
//!
//! # Wiring (the driver's part, not done yet)
//!
//! The host must: on a frame to UDP port 547 (to ff02::1:2 or its own
//! address), call [`Dhcp6Server::handle`] with the UDP payload, the frame's
//! source MAC and the Unix time; wrap a reply in UDP from port 547 to port 546
//! at the request's IPv6 source (the client's link-local address), from the
//! hub's link-local address, to the frame's source MAC; after each call and
//! each [`Dhcp6Server::handle_timeout`], take the events: publish
//! `Bound` names as AAAA records, withdraw `Ended` ones, and persist the
//! records (the lease file's IPv6 part, [`crate::leases::export_text6`]);
//! include [`Dhcp6Server::poll_timeout`] in the host's `poll_timeout`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::Ipv6Addr;

use dhcproto::v6::{
    DhcpOption, DhcpOptions, IAAddr, Message, MessageType, OptionCode, Status, StatusCode, IANA, IAPD, IATA,
};
use dhcproto::Encodable;
use hickory_proto::rr::Name;
use vmlan_hub::MacAddr;

use crate::config::INFINITE;
use crate::leases::Lease6;

use super::config::{duid_mac, Dhcp6Config, Pool6, Reservation6};
use super::{pool, wire};

/// How long an ADVERTISE holds its address for the client, in seconds.
pub const OFFER_HOLD: u64 = 60;
/// How long a DECLINEd address stays out of the pool, in seconds (as the v4
/// server: 10 minutes).
pub const DECLINE_HOLD: u64 = 600;
/// Most identity associations of one message answered.
pub const MAX_IAS: usize = 16;
/// Most addresses of one IA looked at (and answered, with lifetimes 0 when
/// not the client's): a reply's IA stays far below the 65535 bytes an
/// option's 16-bit length can say, however many a client lists (dhcproto
/// 0.15 wraps a longer option's length silently: a garbled reply).
pub const MAX_ADDRS: usize = 16;
/// Lease time of a reserved address outside every pool when there is no pool.
const DEFAULT_LEASE: u32 = 3600;

/// A lease's key: the client's DUID and the IA's IAID.
type Key = (Vec<u8>, u32);

/// Why a lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The client released it (RELEASE); the address is remembered as the client's.
    Released,
    /// The client declined it (DECLINE); the address is quarantined.
    Declined,
    /// It ran out (or was found run out when another client was given its address).
    Expired,
    /// Its IA was given another address or name (the new lease comes as a `Bound`).
    Replaced,
}

/// What happened to a lease, for DNS and the lease file (see the module
/// documentation: each `Bound` is matched by exactly one `Ended`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease6Event {
    /// An IA was granted a lease it did not hold live (a new address or name).
    Bound(Lease6),
    /// An IA's live lease was extended, same address and name: a new expiry.
    Renewed(Lease6),
    /// A lease ended; the lease as it was (its expiry unchanged).
    Ended(Lease6, EndReason),
}

/// Counters of the messages the server saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dhcp6Stats {
    /// Messages given to [`Dhcp6Server::handle`].
    pub received: u64,
    /// Replies returned.
    pub replied: u64,
    /// Messages dropped as malformed: did not parse, options of the wrong
    /// length, a missing Client Identifier, a Server Identifier where none
    /// may be, an IA in an INFORMATION-REQUEST.
    pub malformed: u64,
    /// Messages for another server (a Server Identifier not ours).
    pub foreign: u64,
    /// Messages of types a server does not answer (server or relay messages,
    /// unknown types).
    pub ignored: u64,
    /// IA_NAs answered NoAddrsAvail (no address left for them).
    pub no_addrs: u64,
}

/// A lease record, live or ended.
#[derive(Debug, Clone)]
struct Record {
    lease: Lease6,
    /// Released or expired: kept as the address its client last had.
    ended: bool,
}

/// What a timer is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Lease(Key),
    Offer(Key),
    Decline(Ipv6Addr),
}

/// The DHCPv6 server's state: configuration, lease records, outstanding
/// offers, quarantined addresses, timers, events not yet taken, counters.
#[derive(Debug)]
pub struct Dhcp6Server {
    duid: Vec<u8>,
    pools: Vec<Pool6>,
    reservations: Vec<Reservation6>,
    /// Reserved address -> index of its reservation.
    reserved_addrs: HashMap<Ipv6Addr, usize>,
    dns_servers: Vec<Ipv6Addr>,
    domain_search: Vec<Name>,
    rapid_commit: bool,
    preference: u8,
    max_records: usize,
    max_offers: usize,
    records: HashMap<Key, Record>,
    /// Keys of ended records, oldest first, to make room at `max_records`
    /// (an entry may be stale: checked when taken).
    ended_order: VecDeque<Key>,
    by_addr: HashMap<Ipv6Addr, Key>,
    offers: HashMap<Key, (Ipv6Addr, u64)>,
    offered: HashMap<Ipv6Addr, (Key, u64)>,
    declined: HashMap<Ipv6Addr, u64>,
    /// When something runs out (Unix seconds): an entry may be stale (the
    /// lease renewed, the offer taken), checked when it comes due.
    timers: BinaryHeap<Reverse<(u64, Timer)>>,
    events: Vec<Lease6Event>,
    stats: Dhcp6Stats,
}

/// A client of a message: its DUID and its reservation.
struct Client<'a> {
    duid: &'a [u8],
    /// Index of its reservation, if any.
    res: Option<usize>,
}

impl Dhcp6Server {
    /// A server with `config` and the DUID `server_duid` (its Server
    /// Identifier, RFC 8415 section 11; the hub's is
    /// [`super::duid_ll`] of its MAC), holding no leases.
    pub fn new(config: Dhcp6Config, server_duid: Vec<u8>) -> Self {
        let reserved_addrs = config
            .reservations
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((r.addr?, i)))
            .collect();
        let domain_search = config
            .domain_search
            .iter()
            .filter_map(|d| Name::from_ascii(d).ok())
            .map(|mut n| {
                n.set_fqdn(true);
                n
            })
            .collect();
        Dhcp6Server {
            duid: server_duid,
            pools: config.pools,
            reservations: config.reservations,
            reserved_addrs,
            dns_servers: config.dns_servers,
            domain_search,
            rapid_commit: config.rapid_commit,
            preference: config.preference,
            max_records: config.max_records,
            max_offers: config.max_offers,
            records: HashMap::new(),
            ended_order: VecDeque::new(),
            by_addr: HashMap::new(),
            offers: HashMap::new(),
            offered: HashMap::new(),
            declined: HashMap::new(),
            timers: BinaryHeap::new(),
            events: Vec::new(),
            stats: Dhcp6Stats::default(),
        }
    }

    /// The server's DUID (its Server Identifier option's value).
    pub fn server_duid(&self) -> &[u8] {
        &self.duid
    }

    /// The counters.
    pub fn stats(&self) -> Dhcp6Stats {
        self.stats
    }

    /// Takes back lease records, as read from the lease file
    /// ([`crate::leases::parse_v6_text`]) at `now` (Unix seconds): those not
    /// expired are live (each reported as a [`Lease6Event::Bound`], for DNS),
    /// expired pool ones are remembered as their clients' last addresses,
    /// others dropped. Temporary-address (IA_TA) lines are skipped. A later
    /// record of the same key or address replaces an earlier one (a live one
    /// replaced ends: [`EndReason::Replaced`]); records past
    /// [`Dhcp6Config::max_records`] are dropped.
    pub fn restore(&mut self, leases: impl IntoIterator<Item = Lease6>, now: u64) {
        for l in leases {
            if l.temporary || l.duid.is_empty() {
                continue;
            }
            let key = (l.duid.clone(), l.iaid);
            // A live record replaced was reported Bound: it ends.
            for k in [Some(key.clone()), self.by_addr.get(&l.addr).cloned()]
                .into_iter()
                .flatten()
            {
                if self.records.get(&k).is_some_and(|r| !r.ended) {
                    self.end(&k, EndReason::Replaced, None);
                }
                self.drop_record(&k);
            }
            if !self.room_for(&key, false) {
                continue;
            }
            if l.expired(now) {
                if self.rememberable(l.addr) {
                    self.ended_order.push_back(key.clone());
                    self.put(key, l, true);
                }
            } else {
                if l.expires != 0 {
                    self.timers.push(Reverse((l.expires, Timer::Lease(key.clone()))));
                }
                self.events.push(Lease6Event::Bound(l.clone()));
                self.put(key, l, false);
            }
        }
    }

    /// The live lease of the IA `iaid` of the client with DUID `duid` at `now`.
    pub fn lease(&self, duid: &[u8], iaid: u32, now: u64) -> Option<&Lease6> {
        self.live(&(duid.to_vec(), iaid), now)
    }

    /// Every live lease (not ended; it may have expired since the last
    /// [`Dhcp6Server::handle_timeout`]), in no particular order.
    pub fn leases(&self) -> impl Iterator<Item = &Lease6> {
        self.records.values().filter(|r| !r.ended).map(|r| &r.lease)
    }

    /// Every record, live and ended (`true`), in no particular order: what
    /// the lease file holds (an ended one's expiry is when it ended).
    pub fn records(&self) -> impl Iterator<Item = (&Lease6, bool)> {
        self.records.values().map(|r| (&r.lease, r.ended))
    }

    /// Moves the events since the last call into `into`, oldest first.
    pub fn take_events(&mut self, into: &mut Vec<Lease6Event>) {
        into.append(&mut self.events);
    }

    /// When [`Dhcp6Server::handle_timeout`] is next due (Unix seconds): the
    /// first lease expiry, offer or quarantine end; `None` if nothing runs
    /// out. It may come early (a lease renewed since): nothing is lost.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Runs the timers due at `now` (Unix seconds): drops offers and
    /// quarantines that ran out, ends leases that did
    /// ([`Lease6Event::Ended`] with [`EndReason::Expired`]; a pool lease stays
    /// remembered as its client's last address).
    pub fn handle_timeout(&mut self, now: u64) {
        while let Some(Reverse((t, _))) = self.timers.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((t, timer))) = self.timers.pop() else {
                break;
            };
            match timer {
                Timer::Lease(key) => {
                    let due = self
                        .records
                        .get(&key)
                        .is_some_and(|r| !r.ended && r.lease.expires == t && t != 0);
                    if due {
                        self.end(&key, EndReason::Expired, None);
                    }
                }
                Timer::Offer(key) => {
                    if self.offers.get(&key).is_some_and(|(_, until)| *until == t) {
                        self.forget_offer(&key);
                    }
                }
                Timer::Decline(addr) => {
                    if self.declined.get(&addr) == Some(&t) {
                        self.declined.remove(&addr);
                    }
                }
            }
        }
    }

    /// Handles one client message received at `now_unix` (Unix seconds):
    /// `msg` is the UDP payload (to port 547), `client_mac` the Ethernet
    /// source of its frame. Returns the reply's UDP payload (for port 546 at
    /// the message's IPv6 source), or `None`: no reply (dropped as
    /// malformed, for another server, or needing none; see
    /// [`Dhcp6Server::stats`]). Never panics, whatever the bytes.
    pub fn handle(&mut self, now_unix: u64, client_mac: MacAddr, msg: &[u8]) -> Option<Vec<u8>> {
        self.stats.received += 1;
        let Some(req) = wire::decode(msg) else {
            self.stats.malformed += 1;
            return None;
        };
        let client_id = match req.opts().get(OptionCode::ClientId) {
            Some(DhcpOption::ClientId(id)) => Some(id.clone()),
            _ => None,
        };
        let server_id = match req.opts().get(OptionCode::ServerId) {
            Some(DhcpOption::ServerId(id)) => Some(id.as_slice()),
            _ => None,
        };
        use MessageType as M;
        let mtype = req.msg_type();
        // Section 16: which messages carry which identifiers.
        let (needs_client, server) = match mtype {
            M::Solicit | M::Rebind | M::Confirm => (true, Some(false)),
            M::Request | M::Renew | M::Release | M::Decline => (true, Some(true)),
            M::InformationRequest => (false, None),
            _ => {
                self.stats.ignored += 1;
                return None;
            }
        };
        if server_id.is_some_and(|s| s != self.duid.as_slice()) {
            // For another server (or, where none may be, malformed: either
            // way not ours to answer).
            self.stats.foreign += 1;
            return None;
        }
        // Section 16.12: an INFORMATION-REQUEST carries no IA.
        let has_ia = [OptionCode::IANA, OptionCode::IATA, OptionCode::IAPD]
            .into_iter()
            .any(|c| req.opts().get(c).is_some());
        if (needs_client && client_id.is_none())
            || server.is_some_and(|must| must != server_id.is_some())
            || (mtype == M::InformationRequest && has_ia)
        {
            self.stats.malformed += 1;
            return None;
        }
        let reply = match (mtype, client_id) {
            (M::InformationRequest, id) => Some(self.reply(&req, M::Reply, id.as_deref())),
            (_, None) => None,
            (M::Solicit, Some(id)) => Some(self.solicit(&req, &id, client_mac, now_unix)),
            (M::Request, Some(id)) => Some(self.request(&req, &id, client_mac, now_unix)),
            (M::Renew | M::Rebind, Some(id)) => Some(self.renew(&req, &id, client_mac, now_unix)),
            (M::Release | M::Decline, Some(id)) => Some(self.release(&req, &id, now_unix)),
            (M::Confirm, Some(id)) => self.confirm(&req, &id),
            (_, Some(_)) => None,
        }?;
        let bytes = reply.to_vec().ok()?;
        self.stats.replied += 1;
        Some(bytes)
    }

    // ---- messages ----

    /// A reply of type `mtype` to `req`: its transaction id, our Server
    /// Identifier, the client's Client Identifier, and the configuration
    /// options it asked for.
    fn reply(&self, req: &Message, mtype: MessageType, client_id: Option<&[u8]>) -> Message {
        let mut m = Message::new_with_id(mtype, req.xid());
        let o = m.opts_mut();
        o.insert(DhcpOption::ServerId(self.duid.clone()));
        if let Some(id) = client_id {
            o.insert(DhcpOption::ClientId(id.to_vec()));
        }
        let asked = |code: OptionCode| match req.opts().get(OptionCode::ORO) {
            Some(DhcpOption::ORO(oro)) => oro.opts.contains(&code),
            _ => false,
        };
        if !self.dns_servers.is_empty() && asked(OptionCode::DomainNameServers) {
            o.insert(DhcpOption::DomainNameServers(self.dns_servers.clone()));
        }
        if !self.domain_search.is_empty() && asked(OptionCode::DomainSearchList) {
            o.insert(DhcpOption::DomainSearchList(self.domain_search.clone()));
        }
        m
    }

    fn solicit(&mut self, req: &Message, duid: &[u8], mac: MacAddr, now: u64) -> Message {
        let rapid = self.rapid_commit && req.opts().get(OptionCode::RapidCommit).is_some();
        let mut m = self.reply(
            req,
            if rapid {
                MessageType::Reply
            } else {
                MessageType::Advertise
            },
            Some(duid),
        );
        let client = self.client(duid, mac);
        let mut out_ias = Vec::new();
        for (i, ia) in ia_nas(req).into_iter().enumerate() {
            let key = (duid.to_vec(), ia.id);
            let chosen = match self.room_for(&key, !rapid) {
                true => self.choose(&key, &client, i == 0, hint(&ia.opts), now),
                false => None,
            };
            let out = match chosen {
                Some(addr) if rapid => {
                    let l = self.bind(key, addr, &client, now);
                    ia_with(ia.id, &[(l.addr, self.lease_secs(l.addr))])
                }
                Some(addr) => {
                    self.offer(key, addr, now);
                    ia_with(ia.id, &[(addr, self.lease_secs(addr))])
                }
                None => self.no_addrs(ia.id),
            };
            out_ias.push(DhcpOption::IANA(out));
        }
        insert_in_order(&mut m, out_ias);
        refuse_other_ias(req, &mut m);
        if rapid {
            m.opts_mut().insert(DhcpOption::RapidCommit);
        } else {
            m.opts_mut().insert(DhcpOption::Preference(self.preference));
        }
        m
    }

    fn request(&mut self, req: &Message, duid: &[u8], mac: MacAddr, now: u64) -> Message {
        let mut m = self.reply(req, MessageType::Reply, Some(duid));
        let client = self.client(duid, mac);
        let mut out_ias = Vec::new();
        for (i, ia) in ia_nas(req).into_iter().enumerate() {
            let key = (duid.to_vec(), ia.id);
            let chosen = match self.room_for(&key, false) {
                true => self.choose(&key, &client, i == 0, hint(&ia.opts), now),
                false => None,
            };
            let out = match chosen {
                Some(addr) => {
                    let l = self.bind(key, addr, &client, now);
                    ia_with(ia.id, &[(l.addr, self.lease_secs(l.addr))])
                }
                None => self.no_addrs(ia.id),
            };
            out_ias.push(DhcpOption::IANA(out));
        }
        insert_in_order(&mut m, out_ias);
        refuse_other_ias(req, &mut m);
        m
    }

    /// RENEW and REBIND (sections 18.3.4, 18.3.5).
    fn renew(&mut self, req: &Message, duid: &[u8], mac: MacAddr, now: u64) -> Message {
        let rebind = req.msg_type() == MessageType::Rebind;
        let mut m = self.reply(req, MessageType::Reply, Some(duid));
        let client = self.client(duid, mac);
        let mut out_ias = Vec::new();
        for (i, ia) in ia_nas(req).into_iter().enumerate() {
            let key = (duid.to_vec(), ia.id);
            let asked = addrs(&ia.opts);
            let mut bound = None;
            if let Some(l) = self.live(&key, now) {
                // A reservation made since the lease was bound (the API, a
                // SIGHUP) moves the IA to its address: the server may change
                // the addresses it binds (section 18.3.4); the old one is
                // listed below with lifetimes 0, so the client drops it.
                let held = l.addr;
                let addr = self
                    .reserved(&client, i == 0)
                    .filter(|r| *r != held && self.free_for(&key, *r, client.res, now))
                    .unwrap_or(held);
                bound = Some(self.bind(key.clone(), addr, &client, now).addr);
            } else if rebind && self.room_for(&key, false) {
                // The server may have lost the lease: bind the first address
                // listed that this client may have.
                let first = i == 0;
                let reserved = self.reserved(&client, first);
                bound = asked
                    .iter()
                    .copied()
                    .find(|a| {
                        (Some(*a) == reserved || (self.in_pool(*a) && !self.reserved_addrs.contains_key(a)))
                            && self.free_for(&key, *a, client.res, now)
                    })
                    .map(|a| self.bind(key.clone(), a, &client, now).addr);
            }
            let out = match bound {
                Some(addr) => {
                    let mut list = vec![(addr, self.lease_secs(addr))];
                    list.extend(asked.iter().filter(|a| **a != addr).map(|a| (*a, 0)));
                    ia_with(ia.id, &list)
                }
                None if rebind && !asked.is_empty() => {
                    let list: Vec<(Ipv6Addr, u32)> = asked.iter().map(|a| (*a, 0)).collect();
                    let mut out = ia_with(ia.id, &list);
                    (out.t1, out.t2) = (0, 0);
                    out
                }
                None => ia_status(ia.id, Status::NoBinding, "no binding for this IA"),
            };
            out_ias.push(DhcpOption::IANA(out));
        }
        insert_in_order(&mut m, out_ias);
        m
    }

    /// RELEASE and DECLINE (sections 18.3.7, 18.3.8).
    fn release(&mut self, req: &Message, duid: &[u8], now: u64) -> Message {
        let decline = req.msg_type() == MessageType::Decline;
        let mut m = self.reply(req, MessageType::Reply, Some(duid));
        let mut out_ias = Vec::new();
        for ia in ia_nas(req) {
            let key = (duid.to_vec(), ia.id);
            let listed = addrs(&ia.opts);
            let held = self.live(&key, now).map(|l| l.addr).filter(|a| listed.contains(a));
            match held {
                Some(addr) if decline => {
                    tracing::warn!(addr = %addr, "DHCPv6 DECLINE: address in use by another host, quarantined");
                    self.end(&key, EndReason::Declined, Some(now));
                    let until = now.saturating_add(DECLINE_HOLD);
                    self.declined.insert(addr, until);
                    self.timers.push(Reverse((until, Timer::Decline(addr))));
                }
                Some(addr) => {
                    tracing::info!(addr = %addr, "DHCPv6 RELEASE");
                    self.end(&key, EndReason::Released, Some(now));
                }
                None => {
                    let out = ia_status(ia.id, Status::NoBinding, "no binding for this IA");
                    out_ias.push(DhcpOption::IANA(out));
                }
            }
        }
        insert_in_order(&mut m, out_ias);
        m.opts_mut().insert(status(Status::Success, "ok"));
        m
    }

    /// CONFIRM (section 18.3.3): are the listed addresses on our link?
    fn confirm(&self, req: &Message, duid: &[u8]) -> Option<Message> {
        let listed: Vec<Ipv6Addr> = ia_nas(req).iter().flat_map(|ia| addrs(&ia.opts)).collect();
        if listed.is_empty() {
            return None;
        }
        let on_link = listed.iter().all(|a| self.pools.iter().any(|p| pool::on_link(p, *a)));
        let mut m = self.reply(req, MessageType::Reply, Some(duid));
        m.opts_mut().insert(match on_link {
            true => status(Status::Success, "on link"),
            false => status(Status::NotOnLink, "not on link"),
        });
        Some(m)
    }

    /// Replaces every reservation with `all` (flags, files and API
    /// together, without clashes): used from the next message on. Leases
    /// stay; a client now reserved another address gets it at its next
    /// RENEW or REBIND (its first IA is bound to the reserved address and
    /// the old one is listed with lifetimes 0, RFC 8415 section 18.3.4), or
    /// SOLICIT. A lease at an address now reserved for another client runs
    /// on until it ends.
    pub fn set_reservations(&mut self, all: Vec<Reservation6>) {
        self.reserved_addrs = all.iter().enumerate().filter_map(|(i, r)| Some((r.addr?, i))).collect();
        self.reservations = all;
    }

    // ---- addresses ----

    fn client<'a>(&self, duid: &'a [u8], mac: MacAddr) -> Client<'a> {
        let by_duid = self.reservations.iter().position(|r| r.duid.as_deref() == Some(duid));
        let duid_mac = duid_mac(duid);
        let res = by_duid.or_else(|| {
            self.reservations
                .iter()
                .position(|r| r.mac.is_some_and(|m| m == mac || Some(m) == duid_mac))
        });
        Client { duid, res }
    }

    /// Whether the IA `key` may get an advertised address (`offer`) or a
    /// lease under the limits ([`Dhcp6Config::max_offers`],
    /// [`Dhcp6Config::max_records`]); for a lease at the limit, the oldest
    /// ended record makes room.
    fn room_for(&mut self, key: &Key, offer: bool) -> bool {
        if offer {
            return self.offers.contains_key(key) || self.offers.len() < self.max_offers;
        }
        if self.records.contains_key(key) {
            return true;
        }
        while self.records.len() >= self.max_records {
            let Some(k) = self.ended_order.pop_front() else {
                return false;
            };
            if self.records.get(&k).is_some_and(|r| r.ended) {
                self.drop_record(&k);
            }
        }
        true
    }

    /// The client's reserved address, for its first IA only.
    fn reserved(&self, client: &Client<'_>, first: bool) -> Option<Ipv6Addr> {
        first
            .then(|| client.res.and_then(|i| self.reservations[i].addr))
            .flatten()
    }

    fn in_pool(&self, addr: Ipv6Addr) -> bool {
        self.pools.iter().any(|p| pool::contains(p, addr))
    }

    /// An ended lease's address is remembered if it is a pool address reserved for no one.
    fn rememberable(&self, addr: Ipv6Addr) -> bool {
        self.in_pool(addr) && !self.reserved_addrs.contains_key(&addr)
    }

    /// The live lease of `key` at `now`.
    fn live(&self, key: &Key, now: u64) -> Option<&Lease6> {
        self.records
            .get(key)
            .filter(|r| !r.ended && !r.lease.expired(now))
            .map(|r| &r.lease)
    }

    /// True if `addr` may be leased to `key` (of reservation `res`) at `now`:
    /// reserved for no other client, not leased or advertised to another IA,
    /// not quarantined.
    fn free_for(&self, key: &Key, addr: Ipv6Addr, res: Option<usize>, now: u64) -> bool {
        self.reserved_addrs.get(&addr).is_none_or(|i| Some(*i) == res)
            && self
                .by_addr
                .get(&addr)
                .is_none_or(|k| k == key || self.live(k, now).is_none())
            && self
                .offered
                .get(&addr)
                .is_none_or(|(k, until)| k == key || *until <= now)
            && self.declined.get(&addr).is_none_or(|until| *until <= now)
    }

    /// The address for the IA `key` (see the module documentation), `None`
    /// if none is left.
    fn choose(
        &mut self,
        key: &Key,
        client: &Client<'_>,
        first: bool,
        hint: Option<Ipv6Addr>,
        now: u64,
    ) -> Option<Ipv6Addr> {
        let res = client.res;
        if let Some(a) = self
            .reserved(client, first)
            .filter(|a| self.free_for(key, *a, res, now))
        {
            return Some(a);
        }
        let mine = |a: Ipv6Addr| self.in_pool(a) && self.free_for(key, a, res, now);
        if let Some(l) = self.live(key, now).filter(|l| mine(l.addr)) {
            return Some(l.addr);
        }
        if let Some((a, _)) = self.offers.get(key).filter(|(a, _)| mine(*a)) {
            return Some(*a);
        }
        if let Some(r) = self.records.get(key).filter(|r| r.ended && mine(r.lease.addr)) {
            return Some(r.lease.addr);
        }
        let someone_elses = |a: &Ipv6Addr| {
            self.by_addr
                .get(a)
                .is_some_and(|k| k != key && self.records.get(k).is_some_and(|r| r.ended))
        };
        if let Some(a) = hint.filter(|a| mine(*a) && !someone_elses(a)) {
            return Some(a);
        }
        let hash = pool::client_hash(&key.0, key.1);
        for others_last in [false, true] {
            for p in &self.pools {
                if let Some(a) = pool::candidates(p, hash).find(|a| mine(*a) && (others_last || !someone_elses(a))) {
                    return Some(a);
                }
            }
        }
        None
    }

    /// The lease time of `addr`: its pool's, else the first pool's, else an hour.
    fn lease_secs(&self, addr: Ipv6Addr) -> u32 {
        self.pools
            .iter()
            .find(|p| pool::contains(p, addr))
            .or(self.pools.first())
            .map_or(DEFAULT_LEASE, |p| p.lease_secs)
    }

    /// Holds `addr` for `key` for [`OFFER_HOLD`] seconds.
    fn offer(&mut self, key: Key, addr: Ipv6Addr, now: u64) {
        let until = now.saturating_add(OFFER_HOLD);
        if let Some((old, _)) = self.offers.insert(key.clone(), (addr, until)) {
            if old != addr {
                self.offered.remove(&old);
            }
        }
        self.offered.insert(addr, (key.clone(), until));
        self.timers.push(Reverse((until, Timer::Offer(key))));
    }

    fn forget_offer(&mut self, key: &Key) {
        if let Some((addr, _)) = self.offers.remove(key) {
            if self.offered.get(&addr).is_some_and(|(k, _)| k == key) {
                self.offered.remove(&addr);
            }
        }
    }

    /// Binds `addr` to the IA `key` from `now` for the address's lease time;
    /// returns the lease. Records and events as the module documentation says.
    fn bind(&mut self, key: Key, addr: Ipv6Addr, client: &Client<'_>, now: u64) -> Lease6 {
        self.forget_offer(&key);
        let secs = self.lease_secs(addr);
        let lease = Lease6 {
            expires: if secs == INFINITE {
                0
            } else {
                now.saturating_add(u64::from(secs))
            },
            iaid: key.1,
            temporary: false,
            addr,
            hostname: client.res.and_then(|i| self.reservations[i].name.clone()),
            duid: client.duid.to_vec(),
        };
        // Another IA's record of this address (ended, or run out unnoticed) goes.
        if let Some(other) = self.by_addr.get(&addr).filter(|k| **k != key).cloned() {
            if self.records.get(&other).is_some_and(|r| !r.ended) {
                self.end(&other, EndReason::Expired, None);
            }
            self.drop_record(&other);
        }
        let renewal = match self.records.get(&key) {
            Some(r) if !r.ended && r.lease.addr == addr && r.lease.hostname == lease.hostname => true,
            Some(r) if !r.ended => {
                self.end(&key, EndReason::Replaced, None);
                false
            }
            _ => false,
        };
        self.drop_record(&key);
        if lease.expires != 0 {
            self.timers.push(Reverse((lease.expires, Timer::Lease(key.clone()))));
        }
        if renewal {
            self.events.push(Lease6Event::Renewed(lease.clone()));
        } else {
            tracing::info!(
                addr = %addr,
                name = lease.hostname.as_deref().unwrap_or("*"),
                lease_secs = secs,
                "DHCPv6 lease granted"
            );
            self.events.push(Lease6Event::Bound(lease.clone()));
        }
        self.put(key, lease.clone(), false);
        lease
    }

    /// Ends the live lease of `key` (an `Ended` event): kept as its client's
    /// last address if released or expired and rememberable (with expiry
    /// `ended_at` when given), else dropped.
    fn end(&mut self, key: &Key, why: EndReason, ended_at: Option<u64>) {
        let Some(r) = self.records.get_mut(key).filter(|r| !r.ended) else {
            return;
        };
        let lease = r.lease.clone();
        let keep = matches!(why, EndReason::Released | EndReason::Expired) && {
            let a = lease.addr;
            self.pools.iter().any(|p| pool::contains(p, a)) && !self.reserved_addrs.contains_key(&a)
        };
        if keep {
            let r = self.records.get_mut(key).expect("checked above");
            r.ended = true;
            if let Some(t) = ended_at {
                r.lease.expires = t;
            }
            self.ended_order.push_back(key.clone());
            if self.ended_order.len() > 2 * self.records.len() + 64 {
                let records = &self.records;
                self.ended_order.retain(|k| records.get(k).is_some_and(|r| r.ended));
            }
        } else {
            self.drop_record(key);
        }
        self.events.push(Lease6Event::Ended(lease, why));
    }

    fn put(&mut self, key: Key, lease: Lease6, ended: bool) {
        self.by_addr.insert(lease.addr, key.clone());
        self.records.insert(key, Record { lease, ended });
    }

    fn drop_record(&mut self, key: &Key) {
        if let Some(r) = self.records.remove(key) {
            if self.by_addr.get(&r.lease.addr) == Some(key) {
                self.by_addr.remove(&r.lease.addr);
            }
        }
    }

    fn no_addrs(&mut self, iaid: u32) -> IANA {
        self.stats.no_addrs += 1;
        ia_status(iaid, Status::NoAddrsAvail, "no addresses available")
    }
}

/// The message's IA_NA options, at most [`MAX_IAS`], one per IAID, in IAID
/// order (dhcproto keeps no order among options of one code; this order
/// makes the choice of addresses the same whatever the options' order).
fn ia_nas(req: &Message) -> Vec<IANA> {
    let mut out: Vec<IANA> = Vec::new();
    for o in req.opts().get_all(OptionCode::IANA).unwrap_or_default() {
        if let DhcpOption::IANA(ia) = o {
            if !out.iter().any(|x| x.id == ia.id) {
                out.push(ia.clone());
            }
        }
    }
    out.sort_by_key(|ia| ia.id);
    out.truncate(MAX_IAS);
    out
}

/// Adds `opts` to `m` so that they are encoded in the order given
/// (dhcproto's `insert` puts an option before those of its code already there).
fn insert_in_order(m: &mut Message, opts: Vec<DhcpOption>) {
    for o in opts.into_iter().rev() {
        m.opts_mut().insert(o);
    }
}

/// The addresses in an IA's IA Address options, the first [`MAX_ADDRS`].
fn addrs(opts: &DhcpOptions) -> Vec<Ipv6Addr> {
    opts.get_all(OptionCode::IAAddr)
        .unwrap_or_default()
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IAAddr(a) => Some(a.addr),
            _ => None,
        })
        .take(MAX_ADDRS)
        .collect()
}

/// The address a client suggests in its IA (RFC 8415 section 18.2.1: a hint).
fn hint(opts: &DhcpOptions) -> Option<Ipv6Addr> {
    addrs(opts).into_iter().find(|a| !a.is_unspecified())
}

fn status(status: Status, msg: &str) -> DhcpOption {
    DhcpOption::StatusCode(StatusCode {
        status,
        msg: msg.to_string(),
    })
}

/// An IA_NA with `addrs` (address, lifetime in seconds): preferred = valid =
/// the lifetime, T1 and T2 0.5 and 0.8 of the first's (infinite stays infinite).
fn ia_with(iaid: u32, addrs: &[(Ipv6Addr, u32)]) -> IANA {
    let secs = addrs.first().map_or(0, |a| a.1);
    let (t1, t2) = match secs {
        INFINITE => (INFINITE, INFINITE),
        s => (s / 2, (u64::from(s) * 4 / 5) as u32),
    };
    let opts = addrs
        .iter()
        .map(|(addr, life)| {
            DhcpOption::IAAddr(IAAddr {
                addr: *addr,
                preferred_life: *life,
                valid_life: *life,
                opts: DhcpOptions::new(),
            })
        })
        .collect();
    IANA { id: iaid, t1, t2, opts }
}

/// An IA_NA carrying only a Status Code.
fn ia_status(iaid: u32, s: Status, msg: &str) -> IANA {
    IANA {
        id: iaid,
        t1: 0,
        t2: 0,
        opts: [status(s, msg)].into_iter().collect(),
    }
}

/// Answers the IA_TAs and IA_PDs of `req`, which this server does not serve:
/// NoAddrsAvail and NoPrefixAvail (RFC 8415 sections 18.3.1, 18.3.2).
fn refuse_other_ias(req: &Message, m: &mut Message) {
    let mut tas = Vec::new();
    let mut pds = Vec::new();
    for o in req.opts().iter() {
        match o {
            DhcpOption::IATA(ia) if tas.len() < MAX_IAS => tas.push(DhcpOption::IATA(IATA {
                id: ia.id,
                opts: [status(Status::NoAddrsAvail, "temporary addresses not served")]
                    .into_iter()
                    .collect(),
            })),
            DhcpOption::IAPD(ia) if pds.len() < MAX_IAS => pds.push(DhcpOption::IAPD(IAPD {
                id: ia.id,
                t1: 0,
                t2: 0,
                opts: [status(Status::NoPrefixAvail, "prefixes not delegated")]
                    .into_iter()
                    .collect(),
            })),
            _ => {}
        }
    }
    insert_in_order(m, tas);
    insert_in_order(m, pds);
}
