//! The DNS server, sans-IO (RFC 1034/1035; messages and records from
//! hickory-proto and hickory-server's `Request::from_bytes`, the zones and
//! their lookups in [`super::zone`]).
//! [`DnsServer::handle`] takes a query message and returns a [`DnsAction`]: the
//! answer bytes, or a query to forward upstream ([`crate::dns::forward`]), whose
//! answer [`DnsServer::upstream_answer`] matches back to the client; when its
//! servers fail ([`DnsServer::upstream_failed`], [`DnsServer::upstream_refused`])
//! or stay silent ([`DnsServer::expire`]), the client gets SERVFAIL instead.
//!
//! Records come from `--host-record`, reservations with a name, the names of
//! live leases, `--cname` and `--srv-host` (RFC 2782). Each name is published
//! bare (`master`) and, for a single-label name with `--domain` set, also as
//! `master.cluster`; each address gets a PTR (`in-addr.arpa`, or `ip6.arpa` for
//! IPv6, RFC 3596 section 2.5) to the first name given for it (fully qualified
//! when there is a domain).
//!
//! Zones, so that answers are authoritative (AA) and negative answers right
//! (RFC 2308: NXDOMAIN for a name that does not exist, NOERROR with no answer,
//! "NODATA", for a name without records of the type asked): one zone for
//! `--domain`, one `in-addr.arpa` zone for the subnet, one per `--local` domain,
//! and one per name that falls in none (bare names, records in foreign domains).
//!
//! Which query goes where, in dnsmasq's order (dnsmasq(8) `--address`, `--server`):
//! 1. a name with local records: answered from them (hosts and leases win over
//!    `--address`);
//! 2. the longest `--address`/`--server`/`--local` domain holding the name:
//!    its addresses for A/AAAA; NXDOMAIN for `--address=/D/`; local data only for
//!    `--local` (NODATA for the other types of an `--address` name); its servers;
//!    other types of an `--address` name go on to 3 (dnsmasq 2.86 and later);
//! 3. a name inside a local zone: answered locally (NXDOMAIN or NODATA);
//! 4. anything else: forwarded to the default servers, or REFUSED without any.
//!
//! CNAME answers carry the target's records (RFC 1034 section 3.6.2), across
//! zones too; SRV answers carry their targets' addresses as additional records.
//! UDP answers are cut at 512 bytes, or at the client's EDNS size (RFC 6891
//! section 6.2.5), with TC set (RFC 1035 section 4.2.1).
//!
//! Local answers are kept by the query's bytes ([`crate::dns::cache`]), so a
//! repeated query is answered without parsing it again; any record change
//! empties that cache.
//!
//! Answers are built synchronously from the zones ([`super::zone`]: why not
//! hickory-server's async catalog is said there). Bad input (a message cut short, a compression loop, a name over 255 bytes,
//! not exactly one question) is dropped and counted, never answered.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Instant;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use ipnet::Ipv4Net;

use crate::dns::cache::AnswerCache;
use crate::dns::config::{AddressAnswer, DnsConfig, ServerTarget, SrvHost};
use crate::dns::forward::Forwarder;
pub use crate::dns::forward::{Client, Failover, Forward, ForwardStats, Question, Transport};
use crate::dns::zone::{Lookup, Zones};

/// Counters of the DNS server.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DnsStats {
    /// Queries answered locally.
    pub answered: u64,
    /// Messages dropped because they did not parse as a DNS query with one question.
    pub malformed: u64,
    /// Queries whose answer could not be encoded (should stay 0).
    pub failed: u64,
    /// The forwarder's counters.
    pub forward: ForwardStats,
}

/// What to do with a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsAction {
    /// Send these response bytes to the client.
    Answer(Vec<u8>),
    /// Send this query upstream and give the answer to [`DnsServer::upstream_answer`].
    Forward(Forward),
    /// Send nothing: the message was malformed, or the forward table is full (counted).
    Drop,
}

/// A name or address the server publishes, with how many sources hold it.
type Refs<K> = HashMap<K, Vec<(IpAddr, u32, usize)>>;

/// What the `--address`, `--server` and `--local` rules (and the zones added
/// at run time) of one domain say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Rules {
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
    nxdomain: bool,
    local: bool,
    /// [`DnsServer::add_zone`]s of the domain (answered from local data as
    /// with `local`, counted so each can be withdrawn).
    zones: usize,
    servers: Vec<SocketAddr>,
    default: bool,
}

/// Where a query is answered.
enum Route {
    Zones,
    Addresses(Vec<IpAddr>),
    NxDomain,
    NoData,
    Forward(Vec<SocketAddr>),
}

/// The DNS server: the local zones, the record sources behind them, the
/// forwarding rules and the forwarder.
pub struct DnsServer {
    zones: Zones,
    /// Zones that stay when empty: the domain, the subnet's reverse zone, `--local` domains.
    permanent: HashSet<Name>,
    domain: Option<Name>,
    /// name -> [(address, ttl, refcount)]
    names: Refs<Name>,
    /// address -> [(name, ttl, refcount)] in insertion order; the first is the PTR.
    ptrs: HashMap<IpAddr, Vec<(Name, u32, usize)>>,
    /// Owner names with records (other than SOA), and their types.
    owners: HashMap<Name, HashSet<RecordType>>,
    /// alias -> (target, ttl, refcount): `--cname` and runtime CNAMEs.
    cnames: HashMap<Name, (Name, u32, usize)>,
    /// SRV owner -> its records with their TTLs, in insertion order.
    srvs: HashMap<Name, Vec<(SRV, u32)>>,
    rules: HashMap<Name, Rules>,
    default_servers: Vec<SocketAddr>,
    forwarder: Forwarder,
    serial: u32,
    stats: DnsStats,
    /// Local answers by query bytes; emptied on every record change.
    cache: AnswerCache,
    /// `--log-queries`: log each query and its answer at info level.
    log_queries: bool,
    /// Whether the last answer of [`DnsServer::handle`] came from the cache (for its log line).
    last_cached: bool,
}

/// `--log-queries`: the name and type of a DNS message's first question.
fn question_of(msg: &[u8]) -> Option<(String, RecordType)> {
    let m = Message::from_bytes(msg).ok()?;
    let q = m.queries.first()?;
    Some((q.name().to_string().trim_end_matches('.').to_string(), q.query_type()))
}

/// `--log-queries`: logs an answer as dnsmasq does: `SOURCE NAME is DATA`
/// per record, or `SOURCE NAME is RCODE` when it has none (`source`:
/// `config` for local data, `cached`, `reply` for an upstream's).
pub fn log_answer(source: &str, answer: &[u8]) {
    let Ok(m) = Message::from_bytes(answer) else {
        return;
    };
    let bare = |n: &Name| n.to_string().trim_end_matches('.').to_string();
    let name = m.queries.first().map(|q| bare(q.name())).unwrap_or_default();
    if m.answers.is_empty() {
        let rcode = match m.metadata.response_code {
            ResponseCode::NoError => "NODATA".to_string(),
            ResponseCode::NXDomain => "NXDOMAIN".to_string(),
            c => c.to_string(),
        };
        tracing::info!("{source} {name} is {rcode}");
    }
    for r in &m.answers {
        tracing::info!("{source} {} is {}", bare(&r.name), r.data);
    }
}

/// The reverse zone covering `net`: whole octets only (a /24 gives
/// `3.0.10.in-addr.arpa.`; a /20 is served from its /16 zone).
fn reverse_zone(net: Ipv4Net) -> Name {
    let octets = usize::from(net.prefix_len() / 8);
    let o = net.network().octets();
    let mut s = String::new();
    for b in o[..octets].iter().rev() {
        s.push_str(&format!("{b}."));
    }
    s.push_str("in-addr.arpa.");
    Name::from_str(&s).expect("valid reverse name")
}

/// The PTR owner of `ip`: `d.c.b.a.in-addr.arpa.` for IPv4 (RFC 1035 section
/// 3.5), 32 reversed nibbles under `ip6.arpa.` for IPv6 (RFC 3596 section 2.5).
pub fn ptr_name(ip: IpAddr) -> Name {
    let s = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    };
    Name::from_str(&s).expect("valid PTR name")
}

fn fqdn(name: &str) -> Option<Name> {
    let mut n = Name::from_str(name).ok()?;
    n.set_fqdn(true);
    Some(n.to_lowercase())
}

/// `name` and its ancestors up to the root, nearest first.
/// The key of a zone's rules: the root for `""`, else the fully qualified name.
fn zone_key(domain: &str) -> Option<Name> {
    match domain.trim_end_matches('.') {
        "" => Some(Name::root()),
        d => fqdn(d),
    }
}

fn ancestors(name: &Name) -> impl Iterator<Item = Name> {
    let mut next = Some(name.clone());
    std::iter::from_fn(move || {
        let n = next.take()?;
        if !n.is_root() {
            next = Some(n.base_name());
        }
        Some(n)
    })
}

/// Whether `msg` can be a query with one question: at least a header, QDCOUNT 1,
/// and no more records announced than the bytes could hold (11 bytes at least
/// each), so a 12-byte message cannot make the decoder reserve megabytes.
fn plausible(msg: &[u8]) -> bool {
    if msg.len() < 12 {
        return false;
    }
    let count = |i: usize| usize::from(u16::from_be_bytes([msg[i], msg[i + 1]]));
    let records = count(6) + count(8) + count(10);
    count(4) == 1 && records * 11 <= msg.len() - 12
}

/// Encodes `m`, cut to `max` bytes with TC set when it does not fit.
fn encode(m: &Message, max: u16) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(512);
    let mut enc = BinEncoder::new(&mut out);
    enc.set_max_size(max);
    m.emit(&mut enc).ok()?;
    Some(out)
}

impl DnsServer {
    /// A server for the subnet `net` (its reverse zone), the optional `domain`
    /// and the settings `cfg` (CNAME and SRV records, `--address`, `--server`
    /// and `--local` rules, `--dns-forward-max`). The default upstream servers
    /// are `cfg`'s rules without a domain.
    pub fn new(net: Ipv4Net, domain: Option<&str>, cfg: &DnsConfig) -> Self {
        let mut s = DnsServer {
            zones: Zones::default(),
            permanent: HashSet::new(),
            domain: domain.and_then(fqdn),
            names: HashMap::new(),
            ptrs: HashMap::new(),
            owners: HashMap::new(),
            cnames: HashMap::new(),
            srvs: HashMap::new(),
            rules: HashMap::new(),
            default_servers: cfg.default_servers(),
            forwarder: Forwarder::new(cfg.forward_max),
            serial: 1,
            stats: DnsStats::default(),
            cache: AnswerCache::default(),
            log_queries: false,
            last_cached: false,
        };
        if let Some(d) = s.domain.clone() {
            s.permanent_zone(&d);
        }
        s.permanent_zone(&reverse_zone(net.trunc()));
        let rule_name = |d: &str| if d.is_empty() { Some(Name::root()) } else { fqdn(d) };
        for r in &cfg.servers {
            for d in r.domains.iter().filter_map(|d| rule_name(d)) {
                let rules = s.rules.entry(d.clone()).or_default();
                match r.target {
                    ServerTarget::Upstream(a) => rules.servers.push(a),
                    ServerTarget::Local => rules.local = true,
                    ServerTarget::Default => rules.default = true,
                }
                if r.target == ServerTarget::Local {
                    s.permanent_zone(&d);
                }
            }
        }
        for a in &cfg.addresses {
            for d in a.domains.iter().filter_map(|d| rule_name(d)) {
                let rules = s.rules.entry(d).or_default();
                match a.answer {
                    AddressAnswer::Ip(IpAddr::V4(v4)) => rules.v4.push(v4),
                    AddressAnswer::Ip(IpAddr::V6(v6)) => rules.v6.push(v6),
                    AddressAnswer::Null => {
                        rules.v4.push(Ipv4Addr::UNSPECIFIED);
                        rules.v6.push(Ipv6Addr::UNSPECIFIED);
                    }
                    AddressAnswer::NxDomain => rules.nxdomain = true,
                }
            }
        }
        for c in &cfg.cnames {
            for a in &c.aliases {
                s.add_cname(a, &c.target, c.ttl);
            }
        }
        for h in &cfg.srv_hosts {
            s.add_srv(h, 0);
        }
        for p in &cfg.ptr_records {
            s.add_ptr(p.ip, &p.target, 0);
        }
        s
    }

    /// The counters.
    pub fn stats(&self) -> DnsStats {
        DnsStats {
            forward: self.forwarder.stats(),
            ..self.stats
        }
    }

    /// How many forwarded queries wait for their answer.
    pub fn pending(&self) -> usize {
        self.forwarder.pending()
    }

    fn permanent_zone(&mut self, origin: &Name) {
        self.zone(origin);
        self.permanent.insert(origin.clone());
    }

    /// Creates the zone at `origin` (with its SOA) unless it exists.
    fn zone(&mut self, origin: &Name) {
        let serial = self.serial;
        self.zones.ensure(origin, || {
            let soa = SOA::new(
                Name::from_str("vmlan.").expect("valid"),
                Name::from_str("hostmaster.vmlan.").expect("valid"),
                serial,
                1200,
                180,
                1_209_600,
                0,
            );
            Record::from_rdata(origin.clone(), 0, RData::SOA(soa))
        });
    }

    /// The zone a record named `name` lives in: the nearest permanent zone
    /// holding it, else a zone of its own.
    fn origin_for(&self, name: &Name) -> Name {
        ancestors(name)
            .find(|a| self.permanent.contains(a))
            .unwrap_or_else(|| name.clone())
    }

    /// Rewrites the RRset of (`name`, `rtype`) in its zone from `records`
    /// (removing it when empty), and drops a per-name zone that became empty.
    fn write_rrset(&mut self, name: &Name, rtype: RecordType, records: Vec<Record>) {
        let origin = self.origin_for(name);
        self.zone(&origin);
        self.cache.clear();
        self.serial = self.serial.wrapping_add(1);
        let empty = records.is_empty();
        let empty_zone = self.zones.write(&origin, name, rtype, records);
        let types = self.owners.entry(name.clone()).or_default();
        if empty {
            types.remove(&rtype);
            if types.is_empty() {
                self.owners.remove(name);
            }
        } else {
            types.insert(rtype);
        }
        if empty_zone && !self.permanent.contains(&origin) {
            self.zones.remove(&origin);
        }
    }

    fn rewrite_name(&mut self, name: &Name) {
        let entries = self.names.get(name).cloned().unwrap_or_default();
        let mut a = Vec::new();
        let mut aaaa = Vec::new();
        for (ip, ttl, _) in entries {
            match ip {
                IpAddr::V4(v4) => a.push(Record::from_rdata(name.clone(), ttl, RData::A(A(v4)))),
                IpAddr::V6(v6) => aaaa.push(Record::from_rdata(name.clone(), ttl, RData::AAAA(AAAA(v6)))),
            }
        }
        self.write_rrset(name, RecordType::A, a);
        self.write_rrset(name, RecordType::AAAA, aaaa);
    }

    fn rewrite_ptr(&mut self, ip: IpAddr) {
        let rname = ptr_name(ip);
        let recs = match self.ptrs.get(&ip).and_then(|v| v.first()) {
            Some((target, ttl, _)) => vec![Record::from_rdata(rname.clone(), *ttl, RData::PTR(PTR(target.clone())))],
            None => vec![],
        };
        self.write_rrset(&rname, RecordType::PTR, recs);
    }

    /// The names a host called `name` is published under: the name itself and,
    /// for a single label with a domain set, `name.domain`.
    fn published(&self, name: &str) -> Vec<Name> {
        let Some(n) = fqdn(name) else { return vec![] };
        let mut v = vec![n.clone()];
        if n.num_labels() == 1 {
            if let Some(d) = &self.domain {
                if let Ok(full) = n.clone().append_domain(d) {
                    v.push(full);
                }
            }
        }
        v
    }

    /// Publishes `name` -> `ip` (A or AAAA, and a PTR) with `ttl` seconds.
    /// Adding the same pair twice needs two [`DnsServer::remove_host`] calls to go.
    pub fn add_host(&mut self, name: &str, ip: IpAddr, ttl: u32) {
        let names = self.published(name);
        for n in &names {
            let e = self.names.entry(n.clone()).or_default();
            match e.iter_mut().find(|(i, _, _)| *i == ip) {
                Some(x) => x.2 += 1,
                None => e.push((ip, ttl, 1)),
            }
            self.rewrite_name(n);
        }
        if let Some(target) = names.last() {
            let e = self.ptrs.entry(ip).or_default();
            match e.iter_mut().find(|(n, _, _)| n == target) {
                Some(x) => x.2 += 1,
                None => e.push((target.clone(), ttl, 1)),
            }
            self.rewrite_ptr(ip);
        }
    }

    /// Makes `domain` (and every name under it) a zone published at run time,
    /// as gvproxy's `/services/dns/add` zones are: names under it are answered
    /// from local data only (NXDOMAIN when there is none, never forwarded, as
    /// `--local=/DOMAIN/`), and with `default_ip`, any A (IPv4) or AAAA (IPv6)
    /// query for a name under it that has no record of its own gets that
    /// address (gvproxy's zone `DefaultIP`; dnsmasq's `--address=/DOMAIN/IP`).
    /// `domain` `""` is every name: only `default_ip` applies then (local data
    /// still wins; other names get it instead of being forwarded). Adding the
    /// same zone twice needs two [`DnsServer::remove_zone`]s. The answer cache
    /// is emptied. A `domain` that is not a valid DNS name is ignored.
    pub fn add_zone(&mut self, domain: &str, default_ip: Option<IpAddr>) {
        let Some(d) = zone_key(domain) else { return };
        let r = self.rules.entry(d.clone()).or_default();
        if !d.is_root() {
            r.zones += 1;
        }
        match default_ip {
            Some(IpAddr::V4(a)) => r.v4.push(a),
            Some(IpAddr::V6(a)) => r.v6.push(a),
            None => {}
        }
        self.cache.clear();
    }

    /// Withdraws one [`DnsServer::add_zone`] of `domain` with `default_ip`.
    pub fn remove_zone(&mut self, domain: &str, default_ip: Option<IpAddr>) {
        let Some(d) = zone_key(domain) else { return };
        if let Some(r) = self.rules.get_mut(&d) {
            if !d.is_root() {
                r.zones = r.zones.saturating_sub(1);
            }
            match default_ip {
                Some(IpAddr::V4(a)) => {
                    if let Some(i) = r.v4.iter().position(|x| *x == a) {
                        r.v4.remove(i);
                    }
                }
                Some(IpAddr::V6(a)) => {
                    if let Some(i) = r.v6.iter().position(|x| *x == a) {
                        r.v6.remove(i);
                    }
                }
                None => {}
            }
            if *r == Rules::default() {
                self.rules.remove(&d);
            }
        }
        self.cache.clear();
    }

    /// Publishes `alias` (and `alias.DOMAIN` for a single label) as a CNAME
    /// to `target` with `ttl` seconds (`--cname`, RFC 1034 section 3.6.2).
    /// Adding the same alias again to the same target needs as many
    /// [`DnsServer::remove_cname`] calls; another target replaces it.
    /// Names that are not valid DNS names are ignored.
    pub fn add_cname(&mut self, alias: &str, target: &str, ttl: u32) {
        let Some(target) = fqdn(target) else { return };
        for alias in self.published(alias) {
            let e = self.cnames.entry(alias.clone()).or_insert((target.clone(), ttl, 0));
            if e.0 != target {
                *e = (target.clone(), ttl, 0);
            }
            e.2 += 1;
            let rec = Record::from_rdata(alias.clone(), e.1, RData::CNAME(CNAME(target.clone())));
            self.write_rrset(&alias, RecordType::CNAME, vec![rec]);
        }
    }

    /// Withdraws one [`DnsServer::add_cname`] of `alias`.
    pub fn remove_cname(&mut self, alias: &str) {
        for alias in self.published(alias) {
            let Some(e) = self.cnames.get_mut(&alias) else { continue };
            e.2 -= 1;
            if e.2 == 0 {
                self.cnames.remove(&alias);
                self.write_rrset(&alias, RecordType::CNAME, vec![]);
            }
        }
    }

    /// The owner of an SRV record named `name` (`--srv-host`): `--domain` is
    /// appended when every label starts with `_` (`_ldap._tcp`).
    fn srv_owner(&self, name: &str) -> Option<Name> {
        let mut owner = fqdn(name)?;
        if let Some(d) = &self.domain {
            if owner.iter().all(|l| l.starts_with(b"_")) {
                if let Ok(full) = owner.clone().append_domain(d) {
                    owner = full;
                }
            }
        }
        Some(owner)
    }

    /// Rewrites the SRV RRset of `owner` from [`DnsServer::srvs`].
    fn rewrite_srv(&mut self, owner: &Name) {
        let recs = self.srvs.get(owner).map_or_else(Vec::new, |v| {
            v.iter()
                .map(|(srv, ttl)| Record::from_rdata(owner.clone(), *ttl, RData::SRV(srv.clone())))
                .collect()
        });
        self.write_rrset(owner, RecordType::SRV, recs);
    }

    /// Publishes the SRV record of `h` (`--srv-host`, RFC 2782) with `ttl`
    /// seconds, next to any other of its owner; a target of `None` is `.`.
    pub fn add_srv(&mut self, h: &SrvHost, ttl: u32) {
        let Some(owner) = self.srv_owner(&h.name) else { return };
        let target = h.target.as_deref().and_then(fqdn).unwrap_or_else(Name::root);
        let srv = SRV::new(h.priority, h.weight, h.port, target);
        self.srvs.entry(owner.clone()).or_default().push((srv, ttl));
        self.rewrite_srv(&owner);
    }

    /// Withdraws one [`DnsServer::add_srv`] of `h`.
    pub fn remove_srv(&mut self, h: &SrvHost) {
        let Some(owner) = self.srv_owner(&h.name) else { return };
        let target = h.target.as_deref().and_then(fqdn).unwrap_or_else(Name::root);
        let srv = SRV::new(h.priority, h.weight, h.port, target);
        if let Some(v) = self.srvs.get_mut(&owner) {
            if let Some(i) = v.iter().position(|(s, _)| *s == srv) {
                v.remove(i);
            }
            if v.is_empty() {
                self.srvs.remove(&owner);
            }
        }
        self.rewrite_srv(&owner);
    }

    /// Publishes a PTR record for `ip` naming `target` with `ttl` seconds
    /// (dnsmasq's `--ptr-record`, RFC 1035 section 3.3.12): it wins over the
    /// PTRs host names give the address, until [`DnsServer::remove_ptr`].
    pub fn add_ptr(&mut self, ip: IpAddr, target: &str, ttl: u32) {
        let Some(target) = fqdn(target) else { return };
        let e = self.ptrs.entry(ip).or_default();
        match e.iter().position(|(n, _, _)| *n == target) {
            Some(i) => {
                let mut x = e.remove(i);
                x.2 += 1;
                e.insert(0, x);
            }
            None => e.insert(0, (target, ttl, 1)),
        }
        self.rewrite_ptr(ip);
    }

    /// Withdraws one [`DnsServer::add_ptr`] of `ip` -> `target`.
    pub fn remove_ptr(&mut self, ip: IpAddr, target: &str) {
        let Some(target) = fqdn(target) else { return };
        self.release_ptr(ip, &target);
    }

    /// Drops one reference to the PTR `ip` -> `target` (a fully qualified
    /// name), the entry when it was the last, and rewrites `ip`'s answer.
    fn release_ptr(&mut self, ip: IpAddr, target: &Name) {
        if let Some(e) = self.ptrs.get_mut(&ip) {
            if let Some(pos) = e.iter().position(|(n, _, _)| n == target) {
                e[pos].2 -= 1;
                if e[pos].2 == 0 {
                    e.remove(pos);
                }
            }
            if e.is_empty() {
                self.ptrs.remove(&ip);
            }
        }
        self.rewrite_ptr(ip);
    }

    /// Every published record but the zones' SOAs, sorted: (owner without
    /// the trailing dot, type, value, TTL seconds). The value is the address
    /// (A, AAAA), the target name without the trailing dot (CNAME, PTR), or
    /// `PRIORITY WEIGHT PORT TARGET` (SRV, RFC 2782's order).
    pub fn records(&self) -> Vec<(String, RecordType, String, u32)> {
        let bare = |n: &Name| {
            let s = n.to_string();
            match s.strip_suffix('.') {
                Some(b) if !b.is_empty() => b.to_string(),
                _ => s,
            }
        };
        let mut out = Vec::new();
        for (owner, types) in &self.owners {
            for t in types {
                let Lookup::Found(recs) = self.zones.lookup(owner, *t) else {
                    continue;
                };
                for r in recs {
                    let value = match &r.data {
                        RData::A(a) => a.0.to_string(),
                        RData::AAAA(a) => a.0.to_string(),
                        RData::CNAME(c) => bare(&c.0),
                        RData::PTR(p) => bare(&p.0),
                        RData::SRV(s) => format!("{} {} {} {}", s.priority, s.weight, s.port, bare(&s.target)),
                        _ => continue,
                    };
                    out.push((bare(owner), r.record_type(), value, r.ttl));
                }
            }
        }
        out.sort_by(|a, b| (&a.0, u16::from(a.1), &a.2).cmp(&(&b.0, u16::from(b.1), &b.2)));
        out
    }

    /// `--log-queries`: log every query (`query[TYPE] NAME from IP`), where
    /// it went (`forwarded NAME to IP`) and its answer ([`log_answer`]) at
    /// info level, as dnsmasq's lines.
    pub fn set_log_queries(&mut self, on: bool) {
        self.log_queries = on;
    }

    /// Empties the cache of local answers (as dnsmasq on SIGHUP).
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }

    /// Withdraws one [`DnsServer::add_host`] of `name` -> `ip`.
    pub fn remove_host(&mut self, name: &str, ip: IpAddr) {
        let names = self.published(name);
        for n in &names {
            if let Some(e) = self.names.get_mut(n) {
                if let Some(pos) = e.iter().position(|(i, _, _)| *i == ip) {
                    e[pos].2 -= 1;
                    if e[pos].2 == 0 {
                        e.remove(pos);
                    }
                }
                if e.is_empty() {
                    self.names.remove(n);
                }
            }
            self.rewrite_name(n);
        }
        if let Some(target) = names.last() {
            self.release_ptr(ip, target);
        }
    }

    /// Whether local answers offer recursion (RA): when queries can be forwarded.
    fn forwards(&self) -> bool {
        !self.default_servers.is_empty() || self.rules.values().any(|r| !r.servers.is_empty())
    }

    /// Where a query for (`name`, `qtype`) is answered (the module's steps 1 to 4).
    fn route(&self, name: &Name, qtype: RecordType) -> Route {
        if self.owners.contains_key(name) {
            return Route::Zones;
        }
        let default = || match self.default_servers.is_empty() {
            true => Route::Zones,
            false => Route::Forward(self.default_servers.clone()),
        };
        if let Some(r) = ancestors(name).find_map(|a| self.rules.get(&a)) {
            let addrs: Vec<IpAddr> = match qtype {
                RecordType::A => r.v4.iter().map(|a| IpAddr::V4(*a)).collect(),
                RecordType::AAAA => r.v6.iter().map(|a| IpAddr::V6(*a)).collect(),
                _ => vec![],
            };
            let has_addrs = !(r.v4.is_empty() && r.v6.is_empty());
            if !addrs.is_empty() {
                return Route::Addresses(addrs);
            } else if r.nxdomain {
                return Route::NxDomain;
            } else if r.local {
                return if has_addrs { Route::NoData } else { Route::Zones };
            } else if r.zones > 0 {
                // A zone added at run time has no SOA of its own: NXDOMAIN
                // for a name it lacks, as gvproxy answers.
                return if has_addrs { Route::NoData } else { Route::NxDomain };
            } else if !r.servers.is_empty() {
                return Route::Forward(r.servers.clone());
            } else if r.default {
                return default();
            }
        }
        if self.zones.origin_of(name).is_some() {
            return Route::Zones;
        }
        default()
    }

    /// Answers one DNS message `query` from `client` at `now` (for the forward
    /// table's timeouts). Returns the answer, the query to forward, or
    /// [`DnsAction::Drop`] for a message that is not a query with one question
    /// (counted in [`DnsStats::malformed`]) or a full forward table (counted in
    /// [`ForwardStats::full`]). UDP answers are truncated (TC set) to 512
    /// bytes, or to the client's EDNS payload size, capped at `client.udp_max`.
    pub fn handle(&mut self, query: &[u8], client: Client, now: Instant) -> DnsAction {
        if self.log_queries {
            if let Some((name, qtype)) = question_of(query) {
                tracing::info!("query[{qtype}] {name} from {}", client.addr.ip());
            }
        }
        let action = self.handle_inner(query, client, now);
        if self.log_queries {
            match &action {
                DnsAction::Answer(a) => log_answer(if self.last_cached { "cached" } else { "config" }, a),
                DnsAction::Forward(f) => {
                    let name = question_of(&f.query).map(|q| q.0).unwrap_or_default();
                    tracing::info!("forwarded {name} to {}", f.upstream.ip());
                }
                DnsAction::Drop => {}
            }
        }
        action
    }

    fn handle_inner(&mut self, query: &[u8], client: Client, now: Instant) -> DnsAction {
        self.last_cached = false;
        if let Some(answer) = self.cache.get(query, &client) {
            self.last_cached = true;
            self.stats.answered += 1;
            return DnsAction::Answer(answer);
        }
        let protocol = match client.transport {
            Transport::Udp => Protocol::Udp,
            Transport::Tcp => Protocol::Tcp,
        };
        let request = match plausible(query).then(|| Request::from_bytes(query.to_vec(), client.addr, protocol)) {
            Some(Ok(r)) if r.metadata.message_type == MessageType::Query => r,
            _ => {
                self.stats.malformed += 1;
                return DnsAction::Drop;
            }
        };
        let Some(q) = request.queries.queries().first() else {
            self.stats.malformed += 1;
            return DnsAction::Drop;
        };
        let limit = match client.transport {
            Transport::Udp => request.max_payload().min(client.udp_max).max(512),
            Transport::Tcp => u16::MAX,
        };
        let name = Name::from(q.name().clone());
        let qtype = q.query_type();
        let route = match request.metadata.op_code {
            OpCode::Query => self.route(&name, qtype),
            _ => Route::Zones,
        };
        let out = match route {
            Route::Zones => self.local(&request, &name, qtype, limit),
            Route::Addresses(a) => self.synthesize(&request, a, ResponseCode::NoError, limit),
            Route::NoData => self.synthesize(&request, vec![], ResponseCode::NoError, limit),
            Route::NxDomain => self.synthesize(&request, vec![], ResponseCode::NXDomain, limit),
            Route::Forward(servers) => {
                let question = Question {
                    name: q.name().clone(),
                    qtype,
                    class: q.query_class(),
                };
                let id = request.metadata.id;
                return match self.forwarder.start(query, id, question, client, &servers, limit, now) {
                    Some(f) => DnsAction::Forward(f),
                    None => DnsAction::Drop,
                };
            }
        };
        match out {
            Some(bytes) => {
                self.stats.answered += 1;
                self.cache.insert(query, &client, &bytes);
                DnsAction::Answer(bytes)
            }
            None => {
                self.stats.failed += 1;
                DnsAction::Drop
            }
        }
    }

    /// Matches an upstream's `answer`, received from `from`, to its forwarded
    /// query (see [`Forwarder::answer`]): returns the client to send it to and
    /// the bytes with the client's ID, or `None` (dropped and counted).
    pub fn upstream_answer(&mut self, from: SocketAddr, answer: &[u8]) -> Option<(Client, Vec<u8>)> {
        let r = self.forwarder.answer(from, answer);
        if self.log_queries {
            if let Some((_, a)) = &r {
                log_answer("reply", a);
            }
        }
        r
    }

    /// Sending the forwarded `query` to `upstream` failed at `now` (see
    /// [`Forwarder::failed`]): the query to send to its next server, or the
    /// SERVFAIL for its client; `None` when there is nothing to do.
    pub fn upstream_failed(&mut self, upstream: SocketAddr, query: &[u8], now: Instant) -> Option<Failover> {
        self.forwarder.failed(upstream, query, now)
    }

    /// `upstream` refused at `now` (ICMP port unreachable): every query sent to
    /// it over UDP fails over ([`Forwarder::refused`]).
    pub fn upstream_refused(&mut self, upstream: SocketAddr, now: Instant) -> Vec<Failover> {
        self.forwarder.refused(upstream, now)
    }

    /// When the first forwarded query times out (see [`Forwarder::next_deadline`]).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.forwarder.next_deadline()
    }

    /// Ends the forwarded queries unanswered at `now` (after
    /// [`crate::dns::forward::TIMEOUT`]): returns each one's client with the
    /// SERVFAIL to send it. Due at [`DnsServer::next_deadline`].
    pub fn expire(&mut self, now: Instant) -> Vec<(Client, Vec<u8>)> {
        self.forwarder.expire(now)
    }

    /// The answer to (`name`, `qtype`) from the local zones, as a
    /// response to `request`: AA set when a zone holds the name, CNAME
    /// chains followed across zones (at most 8 links, RFC 1034 section
    /// 3.6.2), SRV targets' addresses added as additional records; REFUSED
    /// for a name in no local zone, NOTIMP for an opcode other than QUERY.
    fn local(&self, request: &Request, name: &Name, qtype: RecordType, limit: u16) -> Option<Vec<u8>> {
        let mut m = self.response(request)?;
        if request.metadata.op_code != OpCode::Query {
            m.metadata.response_code = ResponseCode::NotImp;
            return encode(&m, limit);
        }
        let mut seen = HashSet::from([name.clone()]);
        let mut at = name.clone();
        loop {
            match self.zones.lookup(&at, qtype) {
                Lookup::NotHere => {
                    if at == *name {
                        m.metadata.response_code = ResponseCode::Refused;
                    }
                    break;
                }
                Lookup::Found(recs) => {
                    m.metadata.authoritative |= at == *name;
                    m.answers.extend(recs.into_iter().cloned());
                    break;
                }
                Lookup::Cname(c) => {
                    m.metadata.authoritative |= at == *name;
                    m.answers.push(c.clone());
                    let RData::CNAME(CNAME(target)) = &c.data else { break };
                    let target = target.to_lowercase();
                    if !seen.insert(target.clone()) || seen.len() > 8 {
                        break;
                    }
                    at = target;
                }
                Lookup::NoData(soa) => {
                    m.metadata.authoritative |= at == *name;
                    m.authorities = vec![soa.clone()];
                    break;
                }
                Lookup::NxDomain(soa) => {
                    m.metadata.authoritative |= at == *name;
                    m.metadata.response_code = ResponseCode::NXDomain;
                    m.authorities = vec![soa.clone()];
                    break;
                }
            }
        }
        if qtype == RecordType::SRV {
            let targets: Vec<Name> = m
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(s) if !s.target.is_root() => Some(s.target.to_lowercase()),
                    _ => None,
                })
                .collect();
            for t in targets {
                for rtype in [RecordType::A, RecordType::AAAA] {
                    if let Lookup::Found(recs) = self.zones.lookup(&t, rtype) {
                        for r in recs {
                            if !m.additionals.contains(r) {
                                m.additionals.push(r.clone());
                            }
                        }
                    }
                }
            }
        }
        encode(&m, limit)
    }

    /// An empty response to `request`: its ID, opcode, RD and CD bits, its
    /// question as the client wrote it (the parsed one is lower-cased), RA
    /// when queries can be forwarded, and an OPT record if it sent one (RFC
    /// 6891 section 6.1.1).
    fn response(&self, request: &Request) -> Option<Message> {
        let query = Query::read(&mut BinDecoder::new(request.queries.as_bytes())).ok()?;
        let mut m = Message::response(request.metadata.id, request.metadata.op_code);
        m.metadata.recursion_desired = request.metadata.recursion_desired;
        m.metadata.recursion_available = self.forwards();
        m.metadata.checking_disabled = request.metadata.checking_disabled;
        m.add_query(query);
        if let Some(e) = &request.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(e.max_payload().max(512));
            m.set_edns(edns);
        }
        Some(m)
    }

    /// An authoritative answer to `request` made here (for `--address` rules):
    /// `addrs` as A/AAAA records with TTL 0, and `rcode`.
    fn synthesize(&self, request: &Request, addrs: Vec<IpAddr>, rcode: ResponseCode, limit: u16) -> Option<Vec<u8>> {
        let mut m = self.response(request)?;
        m.metadata.authoritative = true;
        m.metadata.response_code = rcode;
        let owner = m.queries.first()?.name().clone();
        for ip in addrs {
            let rdata = match ip {
                IpAddr::V4(v4) => RData::A(A(v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
            };
            m.add_answer(Record::from_rdata(owner.clone(), 0, rdata));
        }
        encode(&m, limit)
    }

    /// All published A/AAAA names with their addresses, sorted (for logs and tests).
    pub fn names(&self) -> BTreeMap<String, Vec<IpAddr>> {
        self.names
            .iter()
            .map(|(n, v)| (n.to_string(), v.iter().map(|e| e.0).collect()))
            .collect()
    }
}
