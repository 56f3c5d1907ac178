//! The DNS server driven with messages as byte vectors (built and read with
//! hickory-proto): every record type (A, AAAA, PTR in-addr.arpa and ip6.arpa,
//! CNAME chains across zones, SRV with additional addresses), `--address`
//! wildcards, NXDOMAIN vs NODATA (RFC 2308), the AA and RA bits, TC over UDP
//! (RFC 1035 section 4.2.1) with and without EDNS, `--local` domains never
//! forwarded, the forward decision, ID rewrite and answer matching (RFC 5452),
//! the pending table's bound and timeout, SERVFAIL when the servers fail or
//! stay silent (failover first, the timeout on a fake clock), the segment's
//! forwarding path through the host, and bad input (property tests: never a panic).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use proptest::prelude::*;
use vmlan_host::config::*;
use vmlan_host::dns::config::*;
use vmlan_host::dns::forward::{DOWN_FOR, EDE_NETWORK_ERROR, EDE_NO_REACHABLE_AUTHORITY, TIMEOUT};
use vmlan_host::dns::{ptr_name, Client, DnsAction, DnsServer, Failover, Forward, Transport};
use vmlan_host::host::{DnsReturn, SEGMENT_PATH};
use vmlan_host::leases::LeaseDb;
use vmlan_host::{Host, HostConfig};
use vmlan_hub::LocalHost;

const UP1: &str = "127.0.0.2:5300";
const UP2: &str = "127.0.0.3:53";
const CORP: &str = "127.0.0.9:53";

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse().unwrap())
}

/// The DNS flags of the tests, in dnsmasq's syntax.
fn dns_config(forward_max: usize) -> DnsConfig {
    DnsConfig {
        cnames: ["www,master", "api,www,30", "sql,db.example.test", "ghost,gone.cluster"]
            .iter()
            .map(|c| parse_cname(c).unwrap())
            .collect(),
        srv_hosts: [
            "_salt._tcp,master.cluster,4506,1,10",
            "_salt._tcp,worker1.cluster,4506,2",
            "_none._udp.cluster",
        ]
        .iter()
        .map(|s| parse_srv_host(s).unwrap())
        .collect(),
        addresses: [
            "/ads.test/blocked.test/192.0.2.1",
            "/v6.test/fd00::7",
            "/gone.test/",
            "/both.test/192.0.2.2",
            "/example.test/192.0.2.9",
        ]
        .iter()
        .map(|a| parse_address(a).unwrap())
        .collect(),
        ptr_records: vec![parse_ptr_record("9.3.0.10.in-addr.arpa,printer.example").unwrap()],
        servers: vec![
            parse_server("--server", "127.0.0.2#5300").unwrap(),
            parse_server("--server", "127.0.0.3").unwrap(),
            parse_server("--server", "/corp.test/127.0.0.9").unwrap(),
            parse_server("--local", "/internal/").unwrap(),
            parse_server("--local", "/both.test/").unwrap(),
        ],
        forward_max,
    }
}

fn server_with(cfg: &DnsConfig) -> DnsServer {
    let mut s = DnsServer::new(parse_addr("10.0.3.1/24").unwrap(), Some("cluster"), cfg);
    s.add_host("master", v4("10.0.3.101"), 0);
    s.add_host("master", IpAddr::V6("fd00::101".parse().unwrap()), 0);
    s.add_host("worker1", v4("10.0.3.102"), 0);
    s.add_host("db.example.test", v4("10.0.3.5"), 60);
    s.add_host("host.internal", v4("10.0.3.6"), 0);
    for i in 1..=40 {
        s.add_host("big", IpAddr::V4(Ipv4Addr::new(10, 0, 4, i)), 0);
    }
    s
}

fn server() -> DnsServer {
    server_with(&dns_config(150))
}

fn query(name: &str, rtype: RecordType, id: u16, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_bytes().unwrap()
}

fn client() -> Client {
    Client::udp(sa("127.0.0.1:40000"), 0)
}

/// Asks over UDP without EDNS; the answer must be local.
fn ask(s: &mut DnsServer, name: &str, rtype: RecordType) -> Message {
    ask_as(s, &query(name, rtype, 4242, None), client())
}

fn ask_as(s: &mut DnsServer, q: &[u8], c: Client) -> Message {
    match s.handle(q, c, Instant::now()) {
        DnsAction::Answer(b) => {
            let m = Message::from_bytes(&b).unwrap();
            assert_eq!(m.metadata.id, u16::from_be_bytes([q[0], q[1]]));
            assert_eq!(m.metadata.message_type, MessageType::Response);
            m
        }
        other => panic!("not answered locally: {other:?}"),
    }
}

fn forwarded(s: &mut DnsServer, name: &str, rtype: RecordType) -> Forward {
    match s.handle(&query(name, rtype, 4242, None), client(), Instant::now()) {
        DnsAction::Forward(f) => f,
        other => panic!("{name} not forwarded: {other:?}"),
    }
}

fn rdata(m: &Message) -> Vec<String> {
    m.answers.iter().map(|r| r.data.to_string()).collect()
}

#[test]
fn a_aaaa_and_ptr_records_are_authoritative() {
    let mut s = server();
    for name in ["master.", "master.cluster.", "MASTER.Cluster."] {
        let m = ask(&mut s, name, RecordType::A);
        assert_eq!(rdata(&m), vec!["10.0.3.101"], "{name}");
        assert!(m.metadata.authoritative, "AA on local answers");
        assert!(m.metadata.recursion_available, "RA: upstream servers are set");
        assert_eq!(m.answers[0].ttl, 0, "dnsmasq's local-ttl");
    }
    assert_eq!(
        rdata(&ask(&mut s, "master.cluster.", RecordType::AAAA)),
        vec!["fd00::101"]
    );
    assert_eq!(ask(&mut s, "db.example.test.", RecordType::A).answers[0].ttl, 60);
    // PTR, in-addr.arpa and ip6.arpa, to the fully qualified name.
    let m = ask(&mut s, "101.3.0.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(rdata(&m), vec!["master.cluster."]);
    assert!(m.metadata.authoritative);
    let v6 = ptr_name("fd00::101".parse().unwrap());
    assert_eq!(
        v6.to_string(),
        "1.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa."
    );
    let m = ask(&mut s, &v6.to_string(), RecordType::PTR);
    assert_eq!(rdata(&m), vec!["master.cluster."]);
    assert!(m.metadata.authoritative);
    // Names under --domain resolve bare and qualified; the PTR of a foreign name is itself.
    assert_eq!(
        rdata(&ask(&mut s, "5.3.0.10.in-addr.arpa.", RecordType::PTR)),
        vec!["db.example.test."]
    );
}

#[test]
fn repeated_queries_are_answered_from_the_cache_until_the_records_change() {
    let mut s = server();
    let first = ask_as(&mut s, &query("worker1", RecordType::A, 1, None), client());
    let again = ask_as(&mut s, &query("worker1", RecordType::A, 2, None), client());
    assert_eq!(rdata(&first), ["10.0.3.102"]);
    assert_eq!(again.metadata.id, 2);
    assert_eq!(rdata(&again), rdata(&first));
    // The same question asked by EDNS or over TCP is another entry, with its own limits.
    let big = query("big", RecordType::A, 3, None);
    assert!(ask_as(&mut s, &big, client()).metadata.truncation);
    let mut tcp = client();
    tcp.transport = Transport::Tcp;
    let whole = ask_as(&mut s, &big, tcp);
    assert!(!whole.metadata.truncation);
    assert_eq!(whole.answers.len(), 40);
    assert!(ask_as(&mut s, &big, client()).metadata.truncation);
    // A lease moves worker1: the next answer has the new address, never the cached one.
    s.remove_host("worker1", v4("10.0.3.102"));
    s.add_host("worker1", v4("10.0.3.150"), 0);
    assert_eq!(rdata(&ask(&mut s, "worker1", RecordType::A)), ["10.0.3.150"]);
    s.remove_host("worker1", v4("10.0.3.150"));
    let gone = ask(&mut s, "worker1.cluster", RecordType::A);
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(s.stats().failed, 0);
}

#[test]
fn cname_chains_carry_the_target_records() {
    let mut s = server();
    // www.cluster -> master. (another zone): the chase crosses zones.
    let m = ask(&mut s, "www.cluster.", RecordType::A);
    assert_eq!(rdata(&m), vec!["master.", "10.0.3.101"]);
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
    assert!(m.metadata.authoritative);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    // A chain of two (api -> www -> master), bare, with the alias's TTL.
    let m = ask(&mut s, "api.", RecordType::A);
    assert_eq!(rdata(&m), vec!["www.", "master.", "10.0.3.101"]);
    assert_eq!(m.answers[0].ttl, 30);
    // AAAA through the chain, and a target in a foreign zone.
    assert_eq!(
        rdata(&ask(&mut s, "www.", RecordType::AAAA)),
        vec!["master.", "fd00::101"]
    );
    assert_eq!(
        rdata(&ask(&mut s, "sql.cluster.", RecordType::A)),
        vec!["db.example.test.", "10.0.3.5"]
    );
    // Asking for the CNAME itself: only the CNAME.
    assert_eq!(rdata(&ask(&mut s, "www.cluster.", RecordType::CNAME)), vec!["master."]);
    // A target of no record (a DHCP name not leased now): the CNAME, and NXDOMAIN
    // for the target (RFC 6604); once the name is leased, its address follows.
    let m = ask(&mut s, "ghost.cluster.", RecordType::A);
    let gone = vec!["gone.cluster.".to_string()];
    assert_eq!((rdata(&m), m.metadata.response_code), (gone, ResponseCode::NXDomain));
    s.add_host("gone", v4("10.0.3.150"), 0);
    assert_eq!(
        rdata(&ask(&mut s, "ghost.", RecordType::A)),
        vec!["gone.cluster.", "10.0.3.150"]
    );
}

#[test]
fn srv_records_with_target_addresses() {
    let mut s = server();
    let m = ask(&mut s, "_salt._tcp.cluster.", RecordType::SRV);
    let mut srv = rdata(&m);
    srv.sort();
    assert_eq!(srv, vec!["1 10 4506 master.cluster.", "2 0 4506 worker1.cluster."]);
    assert!(m.metadata.authoritative);
    let mut extra: Vec<String> = m.additionals.iter().map(|r| format!("{} {}", r.name, r.data)).collect();
    extra.sort();
    assert_eq!(
        extra,
        vec![
            "master.cluster. 10.0.3.101",
            "master.cluster. fd00::101",
            "worker1.cluster. 10.0.3.102"
        ]
    );
    // dnsmasq's defaults: no target ("." = no such service), port 1.
    assert_eq!(
        rdata(&ask(&mut s, "_none._udp.cluster.", RecordType::SRV)),
        vec!["0 0 1 ."]
    );
    // The owner exists: other types get NODATA.
    let m = ask(&mut s, "_salt._tcp.cluster.", RecordType::A);
    assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0));
}

#[test]
fn address_rules_match_a_domain_and_everything_under_it() {
    let mut s = server();
    for name in ["ads.test.", "x.y.ads.test.", "blocked.test.", "BLOCKED.test."] {
        let m = ask(&mut s, name, RecordType::A);
        assert_eq!(rdata(&m), vec!["192.0.2.1"], "{name}");
        assert!(m.metadata.authoritative);
        assert_eq!(
            m.queries[0].name().to_string(),
            name,
            "the question comes back as asked"
        );
    }
    assert_eq!(rdata(&ask(&mut s, "a.v6.test.", RecordType::AAAA)), vec!["fd00::7"]);
    // Only whole labels match, and other types are forwarded (dnsmasq 2.86+).
    assert_eq!(forwarded(&mut s, "notads.test.", RecordType::A).upstream, sa(UP1));
    forwarded(&mut s, "ads.test.", RecordType::AAAA);
    forwarded(&mut s, "v6.test.", RecordType::A);
    // No address: NXDOMAIN for the domain and below.
    for name in ["gone.test.", "a.gone.test."] {
        let m = ask(&mut s, name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(m.metadata.authoritative);
    }
    // With --local too: other types get NODATA instead of going upstream.
    assert_eq!(rdata(&ask(&mut s, "x.both.test.", RecordType::A)), vec!["192.0.2.2"]);
    for t in [RecordType::AAAA, RecordType::MX] {
        let m = ask(&mut s, "x.both.test.", t);
        assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0));
    }
    // Host records win over --address for their own names.
    assert_eq!(rdata(&ask(&mut s, "db.example.test.", RecordType::A)), vec!["10.0.3.5"]);
    assert_eq!(
        rdata(&ask(&mut s, "other.example.test.", RecordType::A)),
        vec!["192.0.2.9"]
    );
    // The null address and the every-domain rule.
    let cfg = DnsConfig {
        addresses: vec![parse_address("/#/#").unwrap()],
        ..Default::default()
    };
    let mut s = server_with(&cfg);
    assert_eq!(rdata(&ask(&mut s, "anything.test.", RecordType::A)), vec!["0.0.0.0"]);
    assert_eq!(rdata(&ask(&mut s, "anything.test.", RecordType::AAAA)), vec!["::"]);
    assert_eq!(rdata(&ask(&mut s, "master.", RecordType::A)), vec!["10.0.3.101"]);
}

/// gvproxy's zones at run time (`/services/dns/add`): a named zone answers
/// from local data only, its DefaultIP any other name under it; the zone ""
/// with a DefaultIP catches every name local data lacks; each withdraws.
#[test]
fn zones_added_at_run_time_with_and_without_a_default_ip() {
    let mut s = server();
    // --ptr-record: the configured PTR.
    assert_eq!(
        rdata(&ask(&mut s, "9.3.0.10.in-addr.arpa.", RecordType::PTR)),
        vec!["printer.example."]
    );
    // Before: names under apps.test go upstream.
    forwarded(&mut s, "x.apps.test.", RecordType::A);
    s.add_zone("apps.test.", Some(v4("10.0.3.9")));
    s.add_host("web.apps.test", v4("10.0.3.5"), 0);
    assert_eq!(rdata(&ask(&mut s, "web.apps.test.", RecordType::A)), vec!["10.0.3.5"]);
    for name in ["x.apps.test.", "a.b.apps.test.", "apps.test."] {
        assert_eq!(rdata(&ask(&mut s, name, RecordType::A)), vec!["10.0.3.9"], "{name}");
    }
    // Other types in the zone: NODATA, never upstream.
    let m = ask(&mut s, "x.apps.test.", RecordType::AAAA);
    assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0));
    // A zone without a DefaultIP, even with no record yet: NXDOMAIN for names it lacks.
    forwarded(&mut s, "nosuch.dns.podman.", RecordType::A);
    s.add_zone("dns.podman", None);
    let m = ask(&mut s, "nosuch.dns.podman.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // Withdrawn: back upstream, and the cached answers are gone.
    s.remove_zone("apps.test.", Some(v4("10.0.3.9")));
    s.remove_zone("dns.podman", None);
    forwarded(&mut s, "nosuch.dns.podman.", RecordType::A);
    assert_eq!(rdata(&ask(&mut s, "web.apps.test.", RecordType::A)), vec!["10.0.3.5"]);
    // The zone "": every name without local data gets the DefaultIP (a sinkhole).
    s.add_zone("", Some(v4("0.0.0.0")));
    assert_eq!(rdata(&ask(&mut s, "anything.example.", RecordType::A)), vec!["0.0.0.0"]);
    assert_eq!(rdata(&ask(&mut s, "master.", RecordType::A)), vec!["10.0.3.101"]);
    s.remove_zone("", Some(v4("0.0.0.0")));
    forwarded(&mut s, "anything.example.", RecordType::A);
    // Not a DNS name: ignored.
    s.add_zone("bad..name", Some(v4("10.0.3.9")));
    forwarded(&mut s, "x.bad.name.", RecordType::A);
}

#[test]
fn nxdomain_and_nodata_are_told_apart() {
    let mut s = server();
    let soa = |m: &Message| m.authorities.iter().any(|r| r.record_type() == RecordType::SOA);
    // No such name in a local zone: NXDOMAIN, the zone's SOA, AA.
    for name in ["nosuch.cluster.", "77.3.0.10.in-addr.arpa.", "x.master."] {
        let m = ask(&mut s, name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(
            m.answers.is_empty() && soa(&m) && m.metadata.authoritative,
            "{name}: {m:?}"
        );
    }
    // The name exists, not the type; or an empty non-terminal: NODATA.
    for (name, t) in [
        ("master.cluster.", RecordType::MX),
        ("worker1.", RecordType::AAAA),
        ("_tcp.cluster.", RecordType::A),
    ] {
        let m = ask(&mut s, name, t);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name} {t}");
        assert!(
            m.answers.is_empty() && soa(&m) && m.metadata.authoritative,
            "{name}: {m:?}"
        );
    }
}

#[test]
fn big_answers_are_truncated_over_udp_without_edns_only() {
    let mut s = server();
    // 40 A records: about 700 bytes.
    let m = ask(&mut s, "big.cluster.", RecordType::A);
    assert!(m.metadata.truncation, "TC without EDNS");
    assert!(m.answers.len() < 40);
    let q = query("big.cluster.", RecordType::A, 7, None);
    let DnsAction::Answer(b) = s.handle(&q, client(), Instant::now()) else {
        panic!()
    };
    assert!(b.len() <= 512, "{} bytes", b.len());
    // With EDNS (4096 bytes): all of it.
    let m = ask_as(&mut s, &query("big.cluster.", RecordType::A, 8, Some(4096)), client());
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 40);
    assert!(m.edns.is_some(), "EDNS answered with EDNS");
    // Over TCP, no limit.
    let m = ask_as(
        &mut s,
        &query("big.cluster.", RecordType::A, 9, None),
        Client::tcp(sa("127.0.0.1:40001"), 1),
    );
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 40);
    // A path limit under the client's EDNS size (the segment's 1472 bytes) still holds.
    let mut c = client();
    c.udp_max = 600;
    let m = ask_as(&mut s, &query("big.cluster.", RecordType::A, 10, Some(4096)), c);
    assert!(m.metadata.truncation);
}

#[test]
fn local_domains_are_never_forwarded() {
    let mut s = server();
    let m = ask(&mut s, "nosuch.internal.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert_eq!(rdata(&ask(&mut s, "host.internal.", RecordType::A)), vec!["10.0.3.6"]);
    let m = ask(&mut s, "host.internal.", RecordType::AAAA);
    assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0));
    // --domain is local too.
    assert_eq!(
        ask(&mut s, "nosuch.cluster.", RecordType::A).metadata.response_code,
        ResponseCode::NXDomain
    );
    assert_eq!(s.stats().forward.forwarded, 0);
}

#[test]
fn without_servers_foreign_names_are_refused() {
    let mut s = server_with(&DnsConfig::default());
    let m = ask(&mut s, "upstream.test.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative);
    assert!(!ask(&mut s, "master.", RecordType::A).metadata.recursion_available);
}

/// The answer an upstream server would send to `f`: A 192.0.2.7, or `extra` more.
fn upstream_reply(f: &Forward, extra: usize) -> Vec<u8> {
    let q = Message::from_bytes(&f.query).unwrap();
    let mut m = Message::response(q.metadata.id, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    let question = q.queries[0].clone();
    for i in 0..=extra {
        m.add_answer(Record::from_rdata(
            question.name().clone(),
            300,
            RData::A(A(Ipv4Addr::new(192, 0, 2, (7 + i) as u8))),
        ));
    }
    m.add_query(question);
    m.to_bytes().unwrap()
}

#[test]
fn forwarded_queries_get_a_new_id_and_their_answer_back() {
    let mut s = server();
    let q = query("upstream.test.", RecordType::A, 4242, None);
    let DnsAction::Forward(f) = s.handle(&q, client(), Instant::now()) else {
        panic!()
    };
    assert_eq!((f.upstream, f.transport), (sa(UP1), Transport::Udp));
    assert_eq!(
        f.query[2..],
        q[2..],
        "the query goes as the client sent it, but for the ID"
    );
    assert_eq!(s.pending(), 1);
    let reply = upstream_reply(&f, 0);
    // From a server it was not sent to: dropped, still pending.
    assert!(s.upstream_answer(sa("127.0.0.5:53"), &reply).is_none());
    // Not the question asked: dropped.
    let mut other = f.clone();
    other.query = query(
        "evil.test.",
        RecordType::A,
        u16::from_be_bytes([f.query[0], f.query[1]]),
        None,
    );
    assert!(s.upstream_answer(sa(UP1), &upstream_reply(&other, 0)).is_none());
    // Garbage: dropped.
    assert!(s.upstream_answer(sa(UP1), &reply[..7]).is_none());
    assert_eq!(s.stats().forward.bad, 3);
    // The real answer goes back to the client with the client's ID, as the server sent it.
    let (c, b) = s.upstream_answer(sa(UP1), &reply).unwrap();
    assert_eq!(c, client());
    assert_eq!(&b[0..2], &4242u16.to_be_bytes());
    assert_eq!(b[2..], reply[2..]);
    let m = Message::from_bytes(&b).unwrap();
    assert_eq!(rdata(&m), vec!["192.0.2.7"]);
    assert!(!m.metadata.authoritative, "forwarded answers are not ours");
    // Answered once only.
    assert!(s.upstream_answer(sa(UP1), &reply).is_none());
    assert_eq!(s.pending(), 0);
    assert_eq!((s.stats().forward.forwarded, s.stats().forward.answered), (1, 1));
    // A domain with its own server; TCP clients are forwarded over TCP.
    let q = query("host.corp.test.", RecordType::A, 5, None);
    let DnsAction::Forward(f) = s.handle(&q, Client::tcp(sa("127.0.0.1:40002"), 3), Instant::now()) else {
        panic!()
    };
    assert_eq!((f.upstream, f.transport), (sa(CORP), Transport::Tcp));
    let (c, _) = s.upstream_answer(sa(CORP), &upstream_reply(&f, 0)).unwrap();
    assert_eq!((c.transport, c.path), (Transport::Tcp, 3));
}

#[test]
fn a_client_retry_goes_to_the_next_server() {
    let mut s = server();
    let q = query("upstream.test.", RecordType::A, 77, None);
    let DnsAction::Forward(f1) = s.handle(&q, client(), Instant::now()) else {
        panic!()
    };
    let DnsAction::Forward(f2) = s.handle(&q, client(), Instant::now()) else {
        panic!()
    };
    assert_eq!((f1.upstream, f2.upstream), (sa(UP1), sa(UP2)));
    assert_eq!(f1.query, f2.query, "one pending query, same ID");
    assert_eq!(s.pending(), 1);
    // Either server may answer.
    assert!(s.upstream_answer(sa(UP2), &upstream_reply(&f2, 0)).is_some());
}

#[test]
fn upstream_answers_too_big_for_the_client_are_truncated() {
    let mut s = server();
    let f = forwarded(&mut s, "many.upstream.test.", RecordType::A);
    let reply = upstream_reply(&f, 40);
    assert!(reply.len() > 512);
    let (_, b) = s.upstream_answer(sa(UP1), &reply).unwrap();
    let m = Message::from_bytes(&b).unwrap();
    assert!(m.metadata.truncation && b.len() <= 512);
    assert_eq!(m.metadata.id, 4242);
}

#[test]
fn the_pending_table_is_bounded_and_times_out() {
    let mut s = server_with(&dns_config(4));
    let t0 = Instant::now();
    let ask_at = |s: &mut DnsServer, i: u16, t: Instant| {
        s.handle(&query(&format!("q{i}.test."), RecordType::A, i, None), client(), t)
    };
    let mut first = vec![];
    for i in 0..4 {
        let DnsAction::Forward(f) = ask_at(&mut s, i, t0) else {
            panic!()
        };
        first.push(f);
    }
    assert_eq!(ask_at(&mut s, 4, t0), DnsAction::Drop, "full: dropped");
    assert_eq!(s.stats().forward.full, 1);
    // Local answers still flow.
    assert_eq!(rdata(&ask(&mut s, "master.", RecordType::A)), vec!["10.0.3.101"]);
    assert_eq!(s.expire(t0 + TIMEOUT - Duration::from_millis(1)).len(), 0);
    assert_eq!(s.expire(t0 + TIMEOUT).len(), 4);
    assert_eq!((s.pending(), s.stats().forward.timeouts), (0, 4));
    // The server that did not answer is passed over for a while...
    let t1 = t0 + TIMEOUT;
    let DnsAction::Forward(f) = ask_at(&mut s, 5, t1) else {
        panic!()
    };
    assert_eq!(f.upstream, sa(UP2));
    // A late answer to a forgotten query finds nothing.
    assert!(s.upstream_answer(sa(UP1), &upstream_reply(&first[0], 0)).is_none());
    s.expire(t1 + DOWN_FOR);
    let DnsAction::Forward(f) = ask_at(&mut s, 6, t1 + DOWN_FOR) else {
        panic!()
    };
    assert_eq!(f.upstream, sa(UP1), "back after {DOWN_FOR:?}");
}

/// Checks that `b` is a SERVFAIL as the client must see it: its ID, RCODE 2,
/// RA and RD set, not authoritative, no answer, its question as it wrote it.
fn servfail(b: &[u8], id: u16, name: &str) -> Message {
    let m = Message::from_bytes(b).unwrap();
    assert_eq!(m.metadata.id, id);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(m.metadata.recursion_available && m.metadata.recursion_desired);
    assert!(!m.metadata.authoritative && !m.metadata.truncation);
    assert_eq!(m.queries.len(), 1);
    assert_eq!(m.queries[0].name().to_string(), name);
    assert_eq!(m.queries[0].query_type(), RecordType::A);
    assert!(m.answers.is_empty() && m.authorities.is_empty());
    m
}

/// The extended DNS error (RFC 8914) of an answer, if it has one.
fn ede(m: &Message) -> Option<u16> {
    match m.edns.as_ref()?.option(EdnsCode::from(15))? {
        EdnsOption::Unknown(_, d) if d.len() >= 2 => Some(u16::from_be_bytes([d[0], d[1]])),
        _ => None,
    }
}

#[test]
fn an_unanswered_query_gets_servfail_after_the_timeout() {
    let mut s = server();
    let t0 = Instant::now();
    let q = query("UpStream.Test.", RecordType::A, 4242, Some(1232));
    let DnsAction::Forward(f) = s.handle(&q, client(), t0) else {
        panic!()
    };
    assert!(s.expire(t0 + TIMEOUT - Duration::from_millis(1)).is_empty());
    let out = s.expire(t0 + TIMEOUT);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, client());
    let m = servfail(&out[0].1, 4242, "UpStream.Test.");
    assert_eq!(ede(&m), Some(EDE_NO_REACHABLE_AUTHORITY));
    let st = s.stats().forward;
    assert_eq!((st.timeouts, st.servfail, s.pending()), (1, 1, 0));
    // The answer that comes too late finds nothing.
    assert!(s.upstream_answer(sa(UP1), &upstream_reply(&f, 0)).is_none());
    // Without EDNS in the query, no OPT record in the SERVFAIL.
    let q = query("late.test.", RecordType::A, 5, None);
    let t1 = t0 + Duration::from_secs(10);
    assert!(matches!(s.handle(&q, client(), t1), DnsAction::Forward(_)));
    // A client's retry restarts the wait for the server it goes to.
    let t2 = t1 + Duration::from_secs(2);
    assert!(matches!(s.handle(&q, client(), t2), DnsAction::Forward(_)));
    assert!(s.expire(t1 + TIMEOUT).is_empty());
    let out = s.expire(t2 + TIMEOUT);
    let m = servfail(&out[0].1, 5, "late.test.");
    assert!(m.edns.is_none());
    // dns_forward::servfail on a query that does not parse: its header, as a SERVFAIL.
    let b = vmlan_host::dns::forward::servfail(&[0, 9, 0x01, 0x10, 0, 1, 0, 0], 77, 22);
    assert_eq!(b, [0, 77, 0x81, 0x92, 0, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn a_failed_send_goes_to_the_next_server_then_servfails() {
    let mut s = server();
    let t0 = Instant::now();
    let q = query("upstream.test.", RecordType::A, 7, Some(1232));
    let DnsAction::Forward(f1) = s.handle(&q, client(), t0) else {
        panic!()
    };
    assert_eq!(f1.upstream, sa(UP1));
    // The kernel refused the send (no route): at once to the next server, same bytes.
    let Some(Failover::Retry(f2)) = s.upstream_failed(sa(UP1), &f1.query, t0) else {
        panic!("no failover")
    };
    assert_eq!(
        (f2.upstream, &f2.query, f2.transport),
        (sa(UP2), &f1.query, Transport::Udp)
    );
    // The failed server is passed over by new queries for a while.
    assert_eq!(forwarded(&mut s, "other.test.", RecordType::A).upstream, sa(UP2));
    // The second fails too: SERVFAIL, "Network Error".
    let Some(Failover::ServFail(c, b)) = s.upstream_failed(sa(UP2), &f2.query, t0) else {
        panic!("no SERVFAIL")
    };
    assert_eq!(c, client());
    assert_eq!(ede(&servfail(&b, 7, "upstream.test.")), Some(EDE_NETWORK_ERROR));
    assert_eq!(s.upstream_failed(sa(UP2), &f2.query, t0), None, "answered once");
    let st = s.stats().forward;
    assert_eq!((st.unreachable, st.servfail), (2, 1));
    // A failure of a send the client's retry already moved on from changes
    // nothing now, and the retry after it skips the failed server.
    let q = query("again.test.", RecordType::A, 8, None);
    let t1 = t0 + DOWN_FOR;
    s.expire(t1);
    let DnsAction::Forward(g1) = s.handle(&q, client(), t1) else {
        panic!()
    };
    let DnsAction::Forward(g2) = s.handle(&q, client(), t1) else {
        panic!()
    };
    assert_eq!((g1.upstream, g2.upstream), (sa(UP1), sa(UP2)));
    assert_eq!(s.upstream_failed(sa(UP1), &g1.query, t1), None);
    let DnsAction::Forward(g3) = s.handle(&q, client(), t1) else {
        panic!()
    };
    assert_eq!(g3.upstream, sa(UP2), "UP1 failed this query");
    assert!(s.upstream_answer(sa(UP2), &upstream_reply(&g3, 0)).is_some());
}

#[test]
fn a_refusing_server_fails_over_the_udp_queries_sent_to_it() {
    let mut s = server();
    let t0 = Instant::now();
    let c2 = Client::udp(sa("127.0.0.1:40001"), 0);
    let DnsAction::Forward(a) = s.handle(&query("a.test.", RecordType::A, 1, None), client(), t0) else {
        panic!()
    };
    let DnsAction::Forward(b) = s.handle(&query("b.test.", RecordType::A, 2, None), c2, t0) else {
        panic!()
    };
    let tcp = Client::tcp(sa("127.0.0.1:40002"), 3);
    let DnsAction::Forward(t) = s.handle(&query("t.test.", RecordType::A, 3, None), tcp, t0) else {
        panic!()
    };
    assert!([&a, &b, &t].iter().all(|f| f.upstream == sa(UP1)));
    // ICMP port unreachable from UP1: its two UDP queries go to UP2; the TCP one
    // has a connection of its own and stays.
    let out = s.upstream_refused(sa(UP1), t0);
    assert_eq!(out.len(), 2);
    for f in &out {
        let Failover::Retry(f) = f else { panic!("{f:?}") };
        assert_eq!(f.upstream, sa(UP2));
        assert!(f.query == a.query || f.query == b.query);
    }
    assert_eq!(s.pending(), 3);
    // A domain with one server: refused means SERVFAIL.
    let DnsAction::Forward(c) = s.handle(&query("x.corp.test.", RecordType::A, 4, None), client(), t0) else {
        panic!()
    };
    assert_eq!(c.upstream, sa(CORP));
    let out = s.upstream_refused(sa(CORP), t0);
    let [Failover::ServFail(who, bytes)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(*who, client());
    servfail(bytes, 4, "x.corp.test.");
}

#[test]
fn servfails_reach_guests_and_host_side_clients() {
    let mut h = Host::new(&host_config(), LeaseDb::in_memory(), Instant::now(), 1_000_000);
    let woken = Arc::new(AtomicUsize::new(0));
    let w = woken.clone();
    h.set_dns_waker(Box::new(move || {
        w.fetch_add(1, Ordering::Relaxed);
    }));
    let now = Instant::now();
    // A guest's query, unanswered: its SERVFAIL is a frame from the tick.
    let mut out = vec![];
    h.handle_frame(Instant::now(), &guest_query("silent.test.", 0x5151), &mut out);
    assert_eq!(h.take_dns_forwards().len(), 1);
    // A host-side client's: queued for the adapter, which is woken.
    let DnsAction::Forward(_) = h
        .dns_mut()
        .handle(&query("quiet.test.", RecordType::A, 9, None), client(), now)
    else {
        panic!()
    };
    let before = woken.load(Ordering::Relaxed);
    h.handle_timeout(now + TIMEOUT + Duration::from_secs(1), &mut out);
    assert_eq!(out.len(), 1);
    let frame = out.remove(0);
    let p = SlicedPacket::from_ethernet(&frame).unwrap();
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        panic!()
    };
    assert_eq!(
        (&frame[0..6], u.source_port(), u.destination_port()),
        (&GUEST[..], 53, 40000)
    );
    servfail(u.payload(), 0x5151, "silent.test.");
    assert_eq!(woken.load(Ordering::Relaxed), before + 1);
    let back = h.take_dns_returns();
    let [DnsReturn::Client(c, b)] = back.as_slice() else {
        panic!("{back:?}")
    };
    assert_eq!(*c, client());
    servfail(b, 9, "quiet.test.");
    // A guest's query whose send fails: queued again for the next server;
    // when that fails too, the SERVFAIL frame comes back from the call.
    h.handle_frame(Instant::now(), &guest_query("upstream.test.", 0x5252), &mut out);
    let f1 = h.take_dns_forwards().remove(0);
    assert!(h.dns_upstream_failed(Instant::now(), f1.upstream, &f1.query).is_none());
    let f2 = h.take_dns_forwards().remove(0);
    assert_ne!(f2.upstream, f1.upstream);
    let Some(DnsReturn::Frame(f)) = h.dns_upstream_failed(Instant::now(), f2.upstream, &f2.query) else {
        panic!("no frame")
    };
    let p = SlicedPacket::from_ethernet(&f).unwrap();
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        panic!()
    };
    servfail(u.payload(), 0x5252, "upstream.test.");
    assert!(
        h.report().contains("timeouts 2 unreachable 2 servfail 3"),
        "{}",
        h.report()
    );
}

/// A query header (ID 1, RD, QDCOUNT 1) followed by `rest`.
fn raw(rest: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    v.extend_from_slice(rest);
    v
}

#[test]
fn malformed_messages_are_dropped_and_counted() {
    let mut s = server();
    let good = query("master.cluster.", RecordType::A, 1, None);
    let mut long_name = Vec::new();
    for _ in 0..5 {
        long_name.push(63);
        long_name.extend_from_slice(&[b'a'; 63]);
    }
    long_name.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut response = good.clone();
    response[2] |= 0x80; // QR: a response, not a query
    let mut two_questions = good.clone();
    two_questions[5] = 2;
    let mut many_records = good.clone();
    many_records[10] = 0xff; // ARCOUNT 65280 in a 30-byte message
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("cut in the header", good[..5].to_vec()),
        ("cut in the question", good[..good.len() - 3].to_vec()),
        ("compression pointer to itself", raw(&[0xc0, 12, 0, 1, 0, 1])),
        ("compression loop of two", raw(&[0xc0, 14, 0xc0, 12, 0, 1, 0, 1])),
        ("forward pointer", raw(&[0xc0, 20, 0, 1, 0, 1, 0, 0, 1, b'a', 0])),
        ("name over 255 bytes", raw(&long_name)),
        ("a response", response),
        ("two questions", two_questions),
        ("more records than bytes", many_records),
        ("garbage", vec![0xff; 40]),
    ];
    for (what, b) in &bad {
        assert_eq!(s.handle(b, client(), Instant::now()), DnsAction::Drop, "{what}");
    }
    assert_eq!(s.stats().malformed, bad.len() as u64);
    assert_eq!(s.stats().answered, 0);
    assert_eq!(rdata(&ask(&mut s, "master.", RecordType::A)), vec!["10.0.3.101"]);
}

fn host_config() -> HostConfig {
    let c = HostConfig {
        reservations: vec![parse_dhcp_host("00:00:00:11:11:11,10.0.3.101,master").unwrap()],
        host_records: vec![
            parse_host_record("gateway,10.0.3.254,fd00::254").unwrap(),
            parse_host_record("db.example.test,10.0.3.5").unwrap(),
        ],
        domain: Some("cluster".into()),
        dns: dns_config(150),
        ..HostConfig::new(parse_addr("10.0.3.1/24").unwrap())
    };
    c.validate().unwrap();
    c
}

const GUEST: [u8; 6] = [0, 0, 0, 0x11, 0x11, 0x11];

fn guest_query(name: &str, id: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(GUEST, [0x02, 0x76, 0x6d, 0, 3, 1])
        .ipv4([10, 0, 3, 101], [10, 0, 3, 1], 64)
        .udp(40000, 53);
    let mut v = vec![];
    b.write(&mut v, &query(name, RecordType::A, id, None)).unwrap();
    v
}

#[test]
fn guests_on_the_segment_are_forwarded_through_the_host() {
    let mut h = Host::new(&host_config(), LeaseDb::in_memory(), Instant::now(), 1_000_000);
    let woken = Arc::new(AtomicUsize::new(0));
    let w = woken.clone();
    h.set_dns_waker(Box::new(move || {
        w.fetch_add(1, Ordering::Relaxed);
    }));
    // A local name: answered at once, in a frame, no wake-up.
    let mut out = vec![];
    h.handle_frame(Instant::now(), &guest_query("gateway.cluster.", 1), &mut out);
    assert_eq!((out.len(), woken.load(Ordering::Relaxed)), (1, 0));
    // A foreign name: nothing now; the query waits for the adapter, which is woken.
    out.clear();
    h.handle_frame(Instant::now(), &guest_query("upstream.test.", 0x5151), &mut out);
    assert!(out.is_empty());
    assert_eq!(woken.load(Ordering::Relaxed), 1);
    let fwd = h.take_dns_forwards();
    assert_eq!(fwd.len(), 1);
    assert_eq!(fwd[0].upstream, sa(UP1));
    assert!(h.take_dns_forwards().is_empty());
    // The upstream's answer becomes a frame to the guest, from 10.0.3.1:53.
    let Some(DnsReturn::Frame(f)) = h.dns_upstream_answer(Instant::now(), sa(UP1), &upstream_reply(&fwd[0], 0)) else {
        panic!("no frame")
    };
    assert_eq!(&f[0..6], &GUEST);
    let p = SlicedPacket::from_ethernet(&f).unwrap();
    let Some(TransportSlice::Udp(u)) = &p.transport else {
        panic!()
    };
    assert_eq!((u.source_port(), u.destination_port()), (53, 40000));
    let m = Message::from_bytes(u.payload()).unwrap();
    assert_eq!((m.metadata.id, rdata(&m)), (0x5151, vec!["192.0.2.7".to_string()]));
    // A host-side client's answer comes back with its client.
    let DnsAction::Forward(f2) =
        h.dns_mut()
            .handle(&query("x.test.", RecordType::A, 9, None), client(), Instant::now())
    else {
        panic!()
    };
    let Some(DnsReturn::Client(c, _)) = h.dns_upstream_answer(Instant::now(), sa(UP1), &upstream_reply(&f2, 0)) else {
        panic!()
    };
    assert_eq!(c.path & SEGMENT_PATH, 0);
    assert!(h.report().contains("forwarded 2 answered 2"), "{}", h.report());
    // The host's IPv6 host record has its ip6.arpa PTR.
    let n = ptr_name("fd00::254".parse().unwrap()).to_string();
    let m = ask(h.dns_mut(), &n, RecordType::PTR);
    assert_eq!(rdata(&m), vec!["gateway.cluster."]);
}

/// A CNAME loop planted by hand (the flag parser refuses loops): the chase ends.
#[test]
fn cname_loops_end() {
    let cname = |a: &str, t: &str| Cname {
        aliases: vec![a.into()],
        target: t.into(),
        ttl: 0,
    };
    let cfg = DnsConfig {
        cnames: vec![cname("a", "b"), cname("b", "a")],
        ..Default::default()
    };
    let mut s = server_with(&cfg);
    let m = ask(&mut s, "a.", RecordType::A);
    assert!(m.answers.iter().all(|r| matches!(r.data, RData::CNAME(CNAME(_)))));
    assert!(m.answers.len() <= 9);
}

thread_local! {
    /// One server for all the cases of a property test (building one takes milliseconds);
    /// what the cases leave behind (pending queries) is part of the test.
    static SHARED: std::cell::RefCell<DnsServer> = std::cell::RefCell::new(server());
}

fn shared<R>(f: impl FnOnce(&mut DnsServer) -> R) -> R {
    SHARED.with(|s| f(&mut s.borrow_mut()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        shared(|s| {
            let _ = s.handle(&bytes, client(), Instant::now());
            let _ = s.handle(&bytes, Client::tcp(sa("127.0.0.1:1"), 1), Instant::now());
            let _ = s.upstream_answer(sa(UP1), &bytes);
        });
    }

    #[test]
    fn mutated_queries_never_panic(
        name in prop::sample::select(vec!["master.", "www.cluster.", "big.cluster.", "_salt._tcp.cluster.",
            "ads.test.", "upstream.test.", "101.3.0.10.in-addr.arpa.", "nosuch.internal.", "x.both.test."]),
        rtype in prop::sample::select(vec![RecordType::A, RecordType::AAAA, RecordType::PTR, RecordType::SRV,
            RecordType::CNAME, RecordType::ANY, RecordType::AXFR, RecordType::MX]),
        edns in proptest::option::of(0u16..5000),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        cut in any::<usize>(),
        insert in proptest::collection::vec(any::<u8>(), 0..4),
    ) {
        let mut q = query(name, rtype, 1, edns);
        for (i, b) in flips {
            let n = q.len();
            q[i % n] ^= b;
        }
        let at = cut % (q.len() + 1);
        let mut q2 = q[..at].to_vec();
        q2.extend_from_slice(&insert);
        q2.extend_from_slice(&q[at..]);
        let m = shared(|s| {
            for bytes in [&q, &q2, &q[..at].to_vec()] {
                if let DnsAction::Forward(f) = s.handle(bytes, client(), Instant::now()) {
                    // Whatever came in, the forwarded query and its answer are safe too.
                    let _ = s.upstream_answer(f.upstream, &f.query);
                }
            }
            // The server keeps answering everyone else.
            ask(s, "master.", RecordType::A)
        });
        prop_assert_eq!(rdata(&m), vec!["10.0.3.101".to_string()]);
    }

    #[test]
    fn mutated_upstream_answers_never_panic(
        extra in 0usize..60,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        shared(|s| {
            s.expire(Instant::now() + TIMEOUT);
            let f = forwarded(s, "upstream.test.", RecordType::A);
            let mut reply = upstream_reply(&f, extra);
            for (i, b) in flips {
                let n = reply.len();
                reply[i % n] ^= b;
            }
            let at = cut % (reply.len() + 1);
            for r in [&reply[..at], &reply[..]] {
                if let Some((_, b)) = s.upstream_answer(sa(UP1), r) {
                    // Whatever is passed on fits the client's 512 bytes.
                    assert!(b.len() <= 512 || Message::from_bytes(&b).is_err());
                }
            }
        });
    }
}

#[test]
fn stats_count_each_outcome() {
    let mut s = server();
    for name in ["master.", "upstream.test.", "ads.test."] {
        let _ = s.handle(&query(name, RecordType::A, 3, None), client(), Instant::now());
    }
    let st = s.stats();
    assert_eq!((st.answered, st.forward.forwarded, st.malformed), (2, 1, 0));
}
