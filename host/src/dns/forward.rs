//! Forwarding DNS queries to upstream servers, sans-IO (RFC 1035 section 7.3
//! and RFC 5452 section 9: a fresh unpredictable ID per forwarded query, and an
//! answer accepted only from the server asked, with the same ID and question).
//!
//! [`Forwarder::start`] takes a client's query and returns the bytes to send
//! upstream; [`Forwarder::answer`] matches an upstream's answer to its pending
//! query and returns it to the client with the client's own ID. The pending
//! table holds at most `--dns-forward-max` queries (dnsmasq's name and default,
//! 150; at most [`MAX_FORWARD_MAX`], 4096, a sixteenth of the ID space): a
//! query that finds it full is dropped and counted, and so is one for which
//! [`ID_TRIES`] random IDs were all taken (the ID search is bounded; with the
//! cap it practically never fails). A client that sends
//! the same query again while it is pending gets it sent to the next server, as
//! dnsmasq does on retries.
//!
//! When the servers do not answer, the client gets SERVFAIL (RFC 1035 section
//! 4.1.1, RCODE 2, "the name server was unable to process this query") rather
//! than a silence it would wait out, retry and wait out again:
//!
//! - a server that fails outright, a send that the kernel refuses (no route, a
//!   blackhole route: [`Forwarder::failed`]) or one that answers with ICMP port
//!   unreachable (seen on its connected socket: [`Forwarder::refused`]), or a TCP
//!   exchange that fails: the query goes at once to the next of its servers that
//!   has not failed it; when none is left, SERVFAIL at once;
//! - a query whose last send stays unanswered for [`TIMEOUT`] (3 s): SERVFAIL
//!   ([`Forwarder::expire`], run by the host's timer at
//!   [`Forwarder::next_deadline`], so 3 s after the send, at most a second more),
//!   and its server is set aside for [`DOWN_FOR`] while others answer.
//!
//! The SERVFAIL carries the client's ID, its question as it wrote it, RD and CD
//! as it set them and RA; when the query had EDNS (RFC 6891), an OPT record
//! with an extended error (RFC 8914): 23 "Network Error" for a server that
//! failed, 22 "No Reachable Authority" for one that did not answer. A late
//! answer finds nothing pending and is dropped (counted as bad).
//!
//! Why 3 s: glibc's stub resolver (resolv.h `RES_TIMEOUT` 5 s, `RES_DFLRETRY`
//! 2 tries) waits 5 s for an answer, sends again, and gives up 10 s after its
//! first query; its retry would restart the wait here, so the SERVFAIL must
//! reach it within 5 s of a send: 3 s plus at most the second the hub's timer
//! may take to wake for a deadline set while it slept.
//! On SERVFAIL glibc moves on at once (its next server, or its second try).
//! dnsmasq itself (config.h `TIMEOUT`, 10 s) keeps a forwarded query 10 s and
//! then forgets it without a word, and answers REFUSED (with EDE 23) at once
//! when it can send to no server; measured with dnsmasq 2.90, a client of a
//! silent upstream times out, 10 s per name and type for glibc. vmlan answers
//! SERVFAIL in both cases, the code for a server that failed (REFUSED is for
//! policy, RFC 8914 section 4); a `dig` or glibc client sees the failure in a
//! few seconds instead of a timeout.
//!
//! The caller does the I/O: UDP queries from UDP clients, TCP (RFC 1035 section
//! 4.2.2) for TCP clients, so a big answer is not truncated twice.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{DNSClass, LowerName, RecordType};
use hickory_proto::serialize::binary::BinEncoder;

use crate::dns::config::MAX_FORWARD_MAX;

/// Most random IDs tried for a forwarded query before it is dropped (counted
/// in [`ForwardStats::full`]): the ID search is bounded whatever the table holds.
pub const ID_TRIES: usize = 64;

/// How long a forwarded query waits for its answer after its last send before
/// the client gets SERVFAIL (see the module documentation for the value).
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// EDNS option code of an extended DNS error (RFC 8914 section 2).
const EDE: u16 = 15;
/// Extended DNS error 22, "No Reachable Authority" (RFC 8914 section 4.23): no server answered.
pub const EDE_NO_REACHABLE_AUTHORITY: u16 = 22;
/// Extended DNS error 23, "Network Error" (RFC 8914 section 4.24): every server failed.
pub const EDE_NETWORK_ERROR: u16 = 23;

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
    /// Queries dropped because the pending table was full (or no free ID
    /// was found in a bounded number of tries).
    pub full: u64,
    /// Pending queries unanswered for [`TIMEOUT`] (each answered SERVFAIL).
    pub timeouts: u64,
    /// Sends that failed and refusals (ICMP port unreachable, a failed TCP
    /// exchange), each moving its query to another server or to SERVFAIL.
    pub unreachable: u64,
    /// SERVFAIL answers made here: every server failed, or the last send timed out.
    pub servfail: u64,
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
    /// The servers that failed this query outright (by index into `servers`).
    failed: Vec<bool>,
    deadline: Instant,
    limit: u16,
    /// The query as sent upstream (with our ID): sent again on a failover, and
    /// the source of the SERVFAIL's question.
    query: Vec<u8>,
}

impl Pending {
    /// The next server after the current one, in order and round, that has
    /// not failed this query (the current one last); `None` when all have.
    fn next_server(&self) -> Option<usize> {
        let n = self.servers.len();
        (1..=n).map(|k| (self.sent_to + k) % n).find(|&i| !self.failed[i])
    }
}

/// What to do with a query after its server failed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failover {
    /// Send it again, to another of its servers.
    Retry(Forward),
    /// Every server failed it: send this SERVFAIL to the client.
    ServFail(Client, Vec<u8>),
}

/// The SERVFAIL for `query` (as forwarded) to a client whose ID is `id`, with
/// extended error `ede` when the query had EDNS (see the module documentation).
/// A query that does not parse (it did before it was forwarded) gets its header
/// back as a SERVFAIL without a question.
pub fn servfail(query: &[u8], id: u16, ede: u16) -> Vec<u8> {
    let made = Message::from_vec(query).ok().and_then(|q| {
        let mut m = Message::response(id, q.metadata.op_code);
        m.metadata.recursion_desired = q.metadata.recursion_desired;
        m.metadata.recursion_available = true;
        m.metadata.checking_disabled = q.metadata.checking_disabled;
        m.metadata.response_code = ResponseCode::ServFail;
        if let Some(question) = q.queries.first() {
            m.add_query(question.clone());
        }
        if let Some(e) = &q.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(e.max_payload().max(512));
            edns.options_mut()
                .insert(EdnsOption::Unknown(EDE, ede.to_be_bytes().to_vec()));
            m.set_edns(edns);
        }
        m.to_vec().ok()
    });
    made.unwrap_or_else(|| {
        let mut h = [0u8; 12];
        let n = query.len().min(12);
        h[..n].copy_from_slice(&query[..n]);
        h[0..2].copy_from_slice(&id.to_be_bytes());
        h[2] = 0x80 | (h[2] & 0x79); // QR, opcode and RD as asked; AA and TC clear
        h[3] = 0x80 | (h[3] & 0x10) | 2; // RA, CD as asked, SERVFAIL
        h[4..].fill(0);
        h.to_vec()
    })
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
    /// A forwarder holding at most `max` pending queries (clamped to 1 ..=
    /// [`MAX_FORWARD_MAX`]; `--dns-forward-max` is refused outside it at start).
    pub fn new(max: usize) -> Self {
        Forwarder {
            pending: HashMap::new(),
            by_client: HashMap::new(),
            max: max.clamp(1, MAX_FORWARD_MAX),
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
    /// At most [`ID_TRIES`] tries, so the search ends even with every ID
    /// pending; `None` then. With at most [`MAX_FORWARD_MAX`] of the 65,536
    /// IDs pending, all tries fail with a probability under 16^-64.
    fn fresh_id(&mut self) -> Option<u16> {
        for _ in 0..ID_TRIES {
            self.counter += 1;
            let id = self.keys.hash_one(self.counter) as u16;
            if !self.pending.contains_key(&id) {
                return Some(id);
            }
        }
        None
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
    /// Returns what to send, or `None` when the table is full or no free ID
    /// turned up in [`ID_TRIES`] tries (both counted in [`ForwardStats::full`]),
    /// or `servers` is empty.
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
                    // The client asks again: try the next server that has not failed.
                    p.sent_to = p.next_server().unwrap_or(p.sent_to);
                    p.deadline = now + TIMEOUT;
                    let upstream = p.servers[p.sent_to];
                    let mut q = query.to_vec();
                    q[0..2].copy_from_slice(&id.to_be_bytes());
                    p.query.clone_from(&q);
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
        let Some(id) = self.fresh_id() else {
            self.stats.full += 1;
            return None;
        };
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
                failed: vec![false; servers.len()],
                deadline: now + TIMEOUT,
                limit,
                query: q.clone(),
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

    /// Sending `query` (as returned in a [`Forward`]) to `upstream` failed at
    /// `now`: the kernel refused the send, or the TCP exchange failed. The
    /// server is set aside for [`DOWN_FOR`]; the query goes to its next server
    /// that has not failed it, or, when none is left, its client gets SERVFAIL
    /// (EDE 23). `None`: the query is no longer pending, or another send of it
    /// (a client's retry) is on its way to another server.
    pub fn failed(&mut self, upstream: SocketAddr, query: &[u8], now: Instant) -> Option<Failover> {
        let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
        let p = self.pending.get_mut(&id)?;
        let i = p.servers.iter().position(|s| *s == upstream)?;
        p.failed[i] = true;
        let current = p.sent_to == i;
        self.stats.unreachable += 1;
        self.down.insert(upstream, now + DOWN_FOR);
        current.then(|| self.fail_over(id, now)).flatten()
    }

    /// `upstream` refused at `now` (ICMP port unreachable on its UDP socket):
    /// every query sent to it over UDP fails over as in [`Forwarder::failed`].
    pub fn refused(&mut self, upstream: SocketAddr, now: Instant) -> Vec<Failover> {
        self.down.insert(upstream, now + DOWN_FOR);
        let mut at: Vec<u16> = Vec::new();
        for (id, p) in &mut self.pending {
            if p.client.transport != Transport::Udp {
                continue;
            }
            if let Some(i) = p.servers.iter().position(|s| *s == upstream) {
                p.failed[i] = true;
                if p.sent_to == i {
                    at.push(*id);
                }
            }
        }
        self.stats.unreachable += at.len() as u64;
        at.into_iter().filter_map(|id| self.fail_over(id, now)).collect()
    }

    /// Sends pending query `id` to its next server that has not failed it, or
    /// ends it with a SERVFAIL (EDE 23) when every one has.
    fn fail_over(&mut self, id: u16, now: Instant) -> Option<Failover> {
        let p = self.pending.get_mut(&id)?;
        if let Some(next) = p.next_server() {
            p.sent_to = next;
            p.deadline = now + TIMEOUT;
            self.stats.forwarded += 1;
            return Some(Failover::Retry(Forward {
                upstream: p.servers[next],
                transport: p.client.transport,
                query: p.query.clone(),
            }));
        }
        let p = self.pending.remove(&id)?;
        self.forget_client(id, &p);
        self.stats.servfail += 1;
        Some(Failover::ServFail(
            p.client,
            servfail(&p.query, p.client_id, EDE_NETWORK_ERROR),
        ))
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

    /// When the first pending query times out ([`Forwarder::expire`] is due);
    /// `None` with none pending. Looks at every pending query (at most the
    /// `--dns-forward-max`), so callers ask once per timer wake, not per packet.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Ends the queries whose last send went unanswered for [`TIMEOUT`] at
    /// `now` (counted in [`ForwardStats::timeouts`]) and sets their servers
    /// aside for [`DOWN_FOR`]. Returns their clients with the SERVFAIL for each
    /// (EDE 22). Due at [`Forwarder::next_deadline`].
    pub fn expire(&mut self, now: Instant) -> Vec<(Client, Vec<u8>)> {
        let gone: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::with_capacity(gone.len());
        for id in gone {
            if let Some(p) = self.pending.remove(&id) {
                self.forget_client(id, &p);
                self.down.insert(p.servers[p.sent_to], now + DOWN_FOR);
                self.stats.timeouts += 1;
                self.stats.servfail += 1;
                let answer = servfail(&p.query, p.client_id, EDE_NO_REACHABLE_AUTHORITY);
                out.push((p.client, answer));
            }
        }
        self.down.retain(|_, until| *until > now);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    /// With every 16-bit ID pending (only possible here, past the cap), the ID
    /// search gives up after [`ID_TRIES`] tries and the query is dropped and
    /// counted, instead of spinning under the segment lock.
    #[test]
    fn id_search_ends_when_every_id_is_taken() {
        let mut f = Forwarder::new(usize::MAX);
        assert_eq!(f.max, MAX_FORWARD_MAX, "clamped to the cap");
        let client = Client::udp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 4000), 0);
        let question = Question {
            name: LowerName::from(hickory_proto::rr::Name::from_ascii("a.example.").unwrap()),
            qtype: RecordType::A,
            class: DNSClass::IN,
        };
        let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 53);
        for id in 0..=u16::MAX {
            f.pending.insert(
                id,
                Pending {
                    client,
                    client_id: id,
                    question: question.clone(),
                    servers: vec![server],
                    sent_to: 0,
                    failed: vec![false],
                    deadline: Instant::now(),
                    limit: 512,
                    query: vec![],
                },
            );
        }
        assert_eq!(f.fresh_id(), None);
        f.max = usize::MAX;
        let query = [0u8; 12];
        let got = f.start(&query, 7, question, client, &[server], 512, Instant::now());
        assert!(got.is_none());
        assert_eq!(f.stats().full, 1);
        // One ID freed: found again.
        f.pending.remove(&1234);
        let mut found = None;
        for _ in 0..10_000 {
            found = f.fresh_id();
            if found.is_some() {
                break;
            }
        }
        assert_eq!(found, Some(1234));
    }
}
