//! The DNS server, sans-IO (RFC 1034/1035; records, zones and lookups from
//! hickory-server 0.26: `Catalog`, `InMemoryZoneHandler`, `Request::from_bytes`).
//! [`DnsServer::handle`] takes a query datagram and returns the response bytes.
//!
//! Records come from `--host-record`, reservations with a name, and the names of
//! live leases. Each name is published bare (`master`) and, for a single-label
//! name with `--domain` set, also as `master.cluster`; each IPv4 address gets a
//! PTR to the first name given for it (fully qualified when there is a domain).
//!
//! Zones, so that answers are authoritative and negative answers right
//! (RFC 2308): one zone for `--domain`, one `in-addr.arpa` zone for the
//! subnet, and one zone per name that falls in neither (bare names,
//! host records in foreign domains). Unknown names inside a zone get
//! NXDOMAIN; a name with only A records gets an empty NOERROR answer to AAAA;
//! names in no zone get REFUSED (forwarding comes later).
//!
//! The zone handlers are async, but over in-memory data they never wait:
//! the server polls each future once and treats a pending one as a failure.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use hickory_proto::op::MessageType;
use hickory_proto::rr::rdata::{A, AAAA, PTR, SOA};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, MessageResponse, ZoneHandler, ZoneType};
use ipnet::Ipv4Net;

/// Counters of the DNS server.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DnsStats {
    /// Queries answered.
    pub answered: u64,
    /// Datagrams dropped because they did not parse as a DNS query.
    pub malformed: u64,
    /// Queries the zone handlers could not answer at once (should stay 0).
    pub failed: u64,
}

/// A name or address the server publishes, with how many sources hold it.
type Refs<K> = HashMap<K, Vec<(IpAddr, u32, usize)>>;

/// The DNS server: a catalog of in-memory zones and the record sources behind them.
pub struct DnsServer {
    catalog: Catalog,
    zones: HashMap<Name, Arc<InMemoryZoneHandler>>,
    permanent: Vec<Name>,
    domain: Option<Name>,
    reverse: Option<(Ipv4Net, Name)>,
    /// name -> [(address, ttl, refcount)]
    names: Refs<Name>,
    /// address -> [(name, ttl, refcount)] in insertion order; the first is the PTR.
    ptrs: HashMap<Ipv4Addr, Vec<(Name, u32, usize)>>,
    serial: u32,
    stats: DnsStats,
}

/// Polls `f` once: the in-memory zone handlers finish without waiting.
fn poll_once<F: Future>(f: F) -> Option<F::Output> {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
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

/// `d.c.b.a.in-addr.arpa.` for `a.b.c.d`.
pub fn ptr_name(ip: Ipv4Addr) -> Name {
    let o = ip.octets();
    Name::from_str(&format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])).expect("valid PTR name")
}

fn fqdn(name: &str) -> Option<Name> {
    let mut n = Name::from_str(name).ok()?;
    n.set_fqdn(true);
    Some(n.to_lowercase())
}

/// Captures the encoded response of the catalog, truncated to `max` bytes for UDP.
#[derive(Clone)]
struct Capture {
    out: Arc<Mutex<Option<Vec<u8>>>>,
    max: u16,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::with_capacity(512);
        let mut enc = BinEncoder::new(&mut bytes);
        enc.set_max_size(self.max);
        let info = response.destructive_emit(&mut enc)?;
        *self.out.lock().unwrap_or_else(|e| e.into_inner()) = Some(bytes);
        Ok(info)
    }
}

impl DnsServer {
    /// A server for the subnet `net` (its reverse zone) and the optional `domain`.
    pub fn new(net: Ipv4Net, domain: Option<&str>) -> Self {
        let mut s = DnsServer {
            catalog: Catalog::new(),
            zones: HashMap::new(),
            permanent: Vec::new(),
            domain: domain.and_then(fqdn),
            reverse: None,
            names: HashMap::new(),
            ptrs: HashMap::new(),
            serial: 1,
            stats: DnsStats::default(),
        };
        if let Some(d) = s.domain.clone() {
            s.zone(&d);
            s.permanent.push(d);
        }
        let rev = reverse_zone(net.trunc());
        s.zone(&rev);
        s.permanent.push(rev.clone());
        s.reverse = Some((net.trunc(), rev));
        s
    }

    /// The counters.
    pub fn stats(&self) -> DnsStats {
        self.stats
    }

    /// The zone handler for `origin`, created (with its SOA) on first use.
    fn zone(&mut self, origin: &Name) -> Arc<InMemoryZoneHandler> {
        if let Some(z) = self.zones.get(origin) {
            return z.clone();
        }
        let mut z = InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        let soa = SOA::new(
            Name::from_str("vmlan.").expect("valid"),
            Name::from_str("hostmaster.vmlan.").expect("valid"),
            self.serial,
            1200,
            180,
            1_209_600,
            0,
        );
        z.upsert_mut(Record::from_rdata(origin.clone(), 0, RData::SOA(soa)), self.serial);
        let z = Arc::new(z);
        self.catalog
            .upsert(LowerName::new(origin), vec![z.clone() as Arc<dyn ZoneHandler>]);
        self.zones.insert(origin.clone(), z.clone());
        z
    }

    /// The zone a record named `name` lives in.
    fn origin_for(&self, name: &Name) -> Name {
        if let Some(d) = &self.domain {
            if d.zone_of(name) {
                return d.clone();
            }
        }
        if let Some((_, rev)) = &self.reverse {
            if rev.zone_of(name) {
                return rev.clone();
            }
        }
        name.clone()
    }

    /// Rewrites the RRset of (`name`, `rtype`) in its zone from `records`
    /// (removing it when empty), and drops a per-name zone that became empty.
    fn write_rrset(&mut self, name: &Name, rtype: RecordType, records: Vec<Record>) {
        let origin = self.origin_for(name);
        let zone = self.zone(&origin);
        let key = RrKey::new(LowerName::new(name), rtype);
        self.serial = self.serial.wrapping_add(1);
        let serial = self.serial;
        let empty_zone = poll_once(async {
            let mut map = zone.records_mut().await;
            if records.is_empty() {
                map.remove(&key);
            } else {
                let mut set = RecordSet::new(name.clone(), rtype, serial);
                for r in records {
                    set.insert(r, serial);
                }
                map.insert(key, Arc::new(set));
            }
            map.len() <= 1 // only the SOA left
        });
        if empty_zone == Some(true) && !self.permanent.contains(&origin) {
            self.catalog.remove(&LowerName::new(&origin));
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

    fn rewrite_ptr(&mut self, ip: Ipv4Addr) {
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

    /// Publishes `name` -> `ip` (A or AAAA, and a PTR for IPv4) with `ttl` seconds.
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
        if let (IpAddr::V4(v4), Some(target)) = (ip, names.last()) {
            let e = self.ptrs.entry(v4).or_default();
            match e.iter_mut().find(|(n, _, _)| n == target) {
                Some(x) => x.2 += 1,
                None => e.push((target.clone(), ttl, 1)),
            }
            self.rewrite_ptr(v4);
        }
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
        if let (IpAddr::V4(v4), Some(target)) = (ip, names.last()) {
            if let Some(e) = self.ptrs.get_mut(&v4) {
                if let Some(pos) = e.iter().position(|(n, _, _)| n == target) {
                    e[pos].2 -= 1;
                    if e[pos].2 == 0 {
                        e.remove(pos);
                    }
                }
                if e.is_empty() {
                    self.ptrs.remove(&v4);
                }
            }
            self.rewrite_ptr(v4);
        }
    }

    /// Answers one DNS query (`query`: the message bytes, over UDP when `udp`,
    /// from `src`). Returns the response bytes, or `None` for a datagram that is
    /// not a query (counted in [`DnsStats::malformed`]). UDP answers are
    /// truncated (TC set) to 512 bytes, or to the client's EDNS payload size.
    pub fn handle(&mut self, query: &[u8], src: SocketAddr, udp: bool) -> Option<Vec<u8>> {
        let protocol = if udp { Protocol::Udp } else { Protocol::Tcp };
        let request = match Request::from_bytes(query.to_vec(), src, protocol) {
            Ok(r) if r.metadata.message_type == MessageType::Query => r,
            _ => {
                self.stats.malformed += 1;
                return None;
            }
        };
        let max = if udp {
            request.edns.as_ref().map_or(512, |e| e.max_payload().max(512))
        } else {
            u16::MAX
        };
        let capture = Capture {
            out: Arc::new(Mutex::new(None)),
            max,
        };
        let done = poll_once(self.catalog.handle_request::<_, TokioTime>(&request, capture.clone()));
        let out = capture.out.lock().unwrap_or_else(|e| e.into_inner()).take();
        match (done, out) {
            (Some(_), Some(bytes)) => {
                self.stats.answered += 1;
                Some(bytes)
            }
            _ => {
                self.stats.failed += 1;
                None
            }
        }
    }

    /// All published A/AAAA names with their addresses, sorted (for logs and tests).
    pub fn names(&self) -> BTreeMap<String, Vec<IpAddr>> {
        self.names
            .iter()
            .map(|(n, v)| (n.to_string(), v.iter().map(|e| e.0).collect()))
            .collect()
    }
}
