//! Forwarding DNS queries to upstream servers, sans-IO (RFC 1035 section 7.3
//! and RFC 5452 section 9: a fresh unpredictable ID per forwarded query, and an
//! answer accepted only from the server asked, with the same ID and question).
//!
//! [`Forwarder::start`] takes a client's query and returns the bytes to send
//! upstream; [`Forwarder::answer`] matches an upstream's answer to its pending
//! query and returns it to the client with the client's own ID. The pending
//! table holds at most `--dns-forward-max` queries (dnsmasq's name and default,
//! 150): a query that finds it full is dropped and counted. A query left
//! unanswered for [`TIMEOUT`] is forgotten (counted; the client retries), and
//! its server set aside for [`DOWN_FOR`] while others answer. A client that
//! sends the same query again while it is pending gets it sent to the next
//! server, as dnsmasq does on retries.
//!
//! The caller does the I/O: UDP queries from UDP clients, TCP (RFC 1035 section
//! 4.2.2) for TCP clients, so a big answer is not truncated twice.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::{DNSClass, LowerName, RecordType};
use hickory_proto::serialize::binary::BinEncoder;

/// How long a forwarded query waits for its answer (dnsmasq's `TIMEOUT`, 10 s).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// How long a server that let a query time out is passed over, when another is up.
pub const DOWN_FOR: Duration = Duration::from_secs(30);

/// The transport a query came by, and the one it is forwarded by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP (RFC 1035 section 4.2.1): answers over the client's limit are truncated (TC).
    Udp,
    /// TCP (RFC 1035 section 4.2.2): each message behind a 2-byte length.
    Tcp,
}

/// Who asked: where a local answer goes now, or a forwarded answer later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client {
    /// The client's address and port.
    pub addr: SocketAddr,
    /// The transport the query came by.
    pub transport: Transport,
    /// The caller's name for the way back (a listening socket, a connection, the
    /// segment and the client's MAC), returned with the answer as given.
    pub path: u64,
    /// The largest UDP answer this path carries, in bytes (the client's EDNS size,
    /// or 512, is further capped by it); 65535 when the path sets no limit.
    pub udp_max: u16,
}

impl Client {
    /// A UDP client at `addr` reached by `path`, without a path limit.
    pub fn udp(addr: SocketAddr, path: u64) -> Self {
        Client {
            addr,
            transport: Transport::Udp,
            path,
            udp_max: u16::MAX,
        }
    }

    /// A TCP client at `addr` reached by `path` (a connection).
    pub fn tcp(addr: SocketAddr, path: u64) -> Self {
        Client {
            addr,
            transport: Transport::Tcp,
            path,
            udp_max: u16::MAX,
        }
    }
}

/// A query to send to an upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The server.
    pub upstream: SocketAddr,
    /// UDP, or TCP with the 2-byte length prefix added by the caller.
    pub transport: Transport,
    /// The DNS message: the client's query with a fresh ID.
    pub query: Vec<u8>,
}

/// The question of a query: what an answer must repeat to match (RFC 5452 section 9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The name, lower-cased.
    pub name: LowerName,
    /// The type.
    pub qtype: RecordType,
    /// The class.
    pub class: DNSClass,
}

/// Counters of the forwarder.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ForwardStats {
    /// Queries sent upstream (retries included).
    pub forwarded: u64,
    /// Upstream answers returned to their client.
    pub answered: u64,
    /// Queries dropped because the pending table was full.
    pub full: u64,
    /// Pending queries forgotten after [`TIMEOUT`].
    pub timeouts: u64,
    /// Upstream datagrams dropped: no pending query with that ID from that
    /// server (late, duplicate or spoofed), or not an answer to its question.
    pub bad: u64,
}

struct Pending {
    client: Client,
    client_id: u16,
    question: Question,
    servers: Vec<SocketAddr>,
    sent_to: usize,
    deadline: Instant,
    limit: u16,
}

/// The pending table and the servers' health.
pub struct Forwarder {
    pending: HashMap<u16, Pending>,
    by_client: HashMap<(u64, SocketAddr, u16), u16>,
    max: usize,
    down: HashMap<SocketAddr, Instant>,
    keys: RandomState,
    counter: u64,
    stats: ForwardStats,
}

impl Forwarder {
    /// A forwarder holding at most `max` pending queries (at least 1).
    pub fn new(max: usize) -> Self {
        Forwarder {
            pending: HashMap::new(),
            by_client: HashMap::new(),
            max: max.max(1),
            down: HashMap::new(),
            keys: RandomState::new(),
            counter: 0,
            stats: ForwardStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> ForwardStats {
        self.stats
    }

    /// How many queries wait for an answer.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// An unused ID: SipHash (keyed from the OS's randomness) of a counter.
    fn fresh_id(&mut self) -> u16 {
        loop {
            self.counter += 1;
            let id = self.keys.hash_one(self.counter) as u16;
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    /// The first of `servers` not set aside at `now` (the first if all are).
    fn first_up(&self, servers: &[SocketAddr], now: Instant) -> usize {
        servers
            .iter()
            .position(|s| self.down.get(s).is_none_or(|until| *until <= now))
            .unwrap_or(0)
    }

    /// Forwards `query` (a parsed query: its ID `client_id` and `question`) from
    /// `client` to one of `servers` (not empty), at `now`. UDP answers are later
    /// cut to `limit` bytes (the client's EDNS size, at least 512).
    ///
    /// Returns what to send, or `None` when the table is full (counted in
    /// [`ForwardStats::full`]) or `servers` is empty.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        query: &[u8],
        client_id: u16,
        question: Question,
        client: Client,
        servers: &[SocketAddr],
        limit: u16,
        now: Instant,
    ) -> Option<Forward> {
        if servers.is_empty() || query.len() < 12 {
            return None;
        }
        let key = (client.path, client.addr, client_id);
        if let Some(id) = self.by_client.get(&key).copied() {
            if let Some(p) = self.pending.get_mut(&id) {
                if p.question == question && p.client == client {
                    // The client asks again: try the next server.
                    p.sent_to = (p.sent_to + 1) % p.servers.len();
                    p.deadline = now + TIMEOUT;
                    let upstream = p.servers[p.sent_to];
                    let mut q = query.to_vec();
                    q[0..2].copy_from_slice(&id.to_be_bytes());
                    self.stats.forwarded += 1;
                    return Some(Forward {
                        upstream,
                        transport: client.transport,
                        query: q,
                    });
                }
            }
        }
        if self.pending.len() >= self.max {
            self.stats.full += 1;
            return None;
        }
        let id = self.fresh_id();
        let sent_to = self.first_up(servers, now);
        let upstream = servers[sent_to];
        let mut q = query.to_vec();
        q[0..2].copy_from_slice(&id.to_be_bytes());
        self.pending.insert(
            id,
            Pending {
                client,
                client_id,
                question,
                servers: servers.to_vec(),
                sent_to,
                deadline: now + TIMEOUT,
                limit,
            },
        );
        self.by_client.insert(key, id);
        self.stats.forwarded += 1;
        Some(Forward {
            upstream,
            transport: client.transport,
            query: q,
        })
    }

    /// Matches `answer`, received from `from`, to its pending query: the ID must
    /// be pending, `from` one of the servers it may go to, and the message a
    /// response to the same question. Returns the client and the answer with the
    /// client's ID (over UDP, cut to a header and question with TC set when it
    /// exceeds the client's limit). Anything else is dropped and counted in
    /// [`ForwardStats::bad`]; the query then stays pending.
    pub fn answer(&mut self, from: SocketAddr, answer: &[u8]) -> Option<(Client, Vec<u8>)> {
        let matched = self.matches(from, answer);
        let Some(id) = matched else {
            self.stats.bad += 1;
            return None;
        };
        let p = self.pending.remove(&id)?;
        self.forget_client(id, &p);
        self.down.remove(&from);
        let mut out = answer.to_vec();
        out[0..2].copy_from_slice(&p.client_id.to_be_bytes());
        if p.client.transport == Transport::Udp && out.len() > usize::from(p.limit) {
            let mut m = Message::from_vec(&out).ok()?.truncate();
            m.metadata.id = p.client_id;
            out.clear();
            let mut enc = BinEncoder::new(&mut out);
            enc.set_max_size(p.limit);
            hickory_proto::serialize::binary::BinEncodable::emit(&m, &mut enc).ok()?;
        }
        self.stats.answered += 1;
        Some((p.client, out))
    }

    /// Drops the client's index entry of pending query `id`, unless a newer query took it.
    fn forget_client(&mut self, id: u16, p: &Pending) {
        let key = (p.client.path, p.client.addr, p.client_id);
        if self.by_client.get(&key) == Some(&id) {
            self.by_client.remove(&key);
        }
    }

    /// The pending ID `answer` from `from` answers, if it does.
    fn matches(&self, from: SocketAddr, answer: &[u8]) -> Option<u16> {
        if answer.len() < 12 {
            return None;
        }
        let id = u16::from_be_bytes([answer[0], answer[1]]);
        let p = self.pending.get(&id)?;
        if !p.servers.contains(&from) {
            return None;
        }
        let m = Message::from_vec(answer).ok()?;
        let q = match (m.metadata.message_type, m.queries.as_slice()) {
            (MessageType::Response, [q]) => q,
            _ => return None,
        };
        let same = LowerName::new(q.name()) == p.question.name
            && q.query_type() == p.question.qtype
            && q.query_class() == p.question.class;
        same.then_some(id)
    }

    /// Forgets the queries unanswered at `now` (counted in
    /// [`ForwardStats::timeouts`]) and sets their servers aside for [`DOWN_FOR`].
    /// Returns how many went.
    pub fn expire(&mut self, now: Instant) -> usize {
        let gone: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            if let Some(p) = self.pending.remove(id) {
                self.forget_client(*id, &p);
                self.down.insert(p.servers[p.sent_to], now + DOWN_FOR);
                self.stats.timeouts += 1;
            }
        }
        self.down.retain(|_, until| *until > now);
        gone.len()
    }
}
