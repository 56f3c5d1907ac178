//! End to end (issue 4, DNS): in a private network namespace, an upstream
//! dnsmasq on 127.0.0.2#5300 and `vmlan hub --dns-listen 127.0.0.1:5353` with
//! host records, a CNAME, an SRV record, `--address`, `--local` and that
//! upstream as `--server` (with `--no-resolv`). `dig`, over UDP and over TCP,
//! checks every record type (A, AAAA, PTR for IPv4 and IPv6, CNAME, SRV),
//! NXDOMAIN vs NODATA, the AA bit, a name answered by the upstream, a `--local`
//! name that never reaches it, TC on a big answer without EDNS (`+ignore
//! +noedns`), and a big upstream answer forwarded over TCP. A second hub with
//! neither `--server` nor `--no-resolv` takes its upstream from the namespace's
//! /etc/resolv.conf (`/etc/netns/NAME/resolv.conf`, which `ip netns exec`
//! mounts there): a second dnsmasq on 127.0.0.3:53. The segment's path is
//! checked with raw frames over the hub's `--stream` unix socket (a local name,
//! and a forwarded one whose answer comes back as a frame from 10.0.3.1:53);
//! tests/e2e_mcast.rs has real guests resolving through the segment. The
//! segment over TCP: `dig` from a namespace whose tap is bridged into the hub
//! (`--tap`) asks 10.0.3.1 over TCP, several queries on one connection
//! (`+keepopen`), a forwarded name, and a big answer that comes back
//! truncated over UDP and whole when dig retries over TCP. Upstreams that
//! refuse, cannot be sent to, or stay silent get the client a SERVFAIL in
//! seconds (dig, a guest on the segment, glibc's getent). Last, dnsperf sends
//! 6,000 queries from one socket, 200 in flight, and every answer must come
//! back (the batched, segmented answer path).

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// `/etc/netns/NAME`, removed on drop.
struct NetnsEtc(PathBuf);

impl Drop for NetnsEtc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What `dig` printed: status, header flags, the answer section ("TYPE RDATA").
#[derive(Debug)]
struct Dig {
    status: String,
    flags: Vec<String>,
    answers: Vec<String>,
    text: String,
}

impl Dig {
    fn rdata(&self, rtype: &str) -> Vec<String> {
        let p = format!("{rtype} ");
        self.answers
            .iter()
            .filter_map(|a| a.strip_prefix(&p))
            .map(String::from)
            .collect()
    }

    fn flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
}

fn dig(ns: &Netns, port: u16, tcp: bool, args: &[&str]) -> Dig {
    dig_at(ns, "127.0.0.1", port, tcp, args)
}

/// `dig` to `server` (an address) on `port`.
fn dig_at(ns: &Netns, server: &str, port: u16, tcp: bool, args: &[&str]) -> Dig {
    let (server, port) = (format!("@{server}"), port.to_string());
    let mut a = vec![server.as_str(), "-p", &port, "+time=3", "+tries=2"];
    if tcp {
        a.push("+tcp");
    }
    a.extend_from_slice(args);
    let out = ns.cmd("dig", &a).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut d = Dig {
        status: String::new(),
        flags: vec![],
        answers: vec![],
        text: text.clone(),
    };
    let mut in_answer = false;
    for line in text.lines() {
        if let Some(s) = line.split("status: ").nth(1) {
            d.status = s.split(',').next().unwrap_or_default().to_string();
        }
        if let Some(f) = line.strip_prefix(";; flags: ") {
            d.flags = f
                .split(';')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from)
                .collect();
        }
        if line.starts_with(";; ANSWER SECTION:") {
            in_answer = true;
            continue;
        }
        if in_answer {
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.len() < 5 {
                in_answer = false;
                continue;
            }
            d.answers.push(format!("{} {}", w[3], w[4..].join(" ")));
        }
    }
    d
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn hub(ns: &mut Netns, dir: &Path, name: &str, args: &[String]) -> PathBuf {
    let log = dir.join(format!("{name}.log"));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmd = ns.cmd(env!("CARGO_BIN_EXE_vmlan"), &refs);
    start_hub_cmd(ns, cmd, &log);
    log
}

/// A DNS query for `name` (type A, RD), by hand: header, name, type, class.
fn dns_query(name: &str, id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0, 0xdd, 0xdd, 1];

/// An Ethernet frame from the guest 10.0.3.150:40000 to the hub's DNS port.
fn dns_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0x76, 0x6d, 0, 3, 1];
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 3, 150, 10, 0, 3, 1]);
    let sum: u32 = ip.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&53u16.to_be_bytes());
    f.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// Sends a query for `name` as a guest on the segment (QEMU's stream framing)
/// and returns the DNS answer that comes back from 10.0.3.1:53.
fn segment_ask(sock: &mut UnixStream, name: &str, id: u16) -> Vec<u8> {
    let frame = dns_frame(&dns_query(name, id));
    sock.write_all(&(frame.len() as u32).to_be_bytes()).unwrap();
    sock.write_all(&frame).unwrap();
    loop {
        let mut len = [0u8; 4];
        sock.read_exact(&mut len).expect("an answer frame in time");
        let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
        sock.read_exact(&mut f).unwrap();
        // To us, IPv4/UDP from 10.0.3.1:53 to port 40000, our query's ID.
        let ours = f.len() > 44
            && f[0..6] == GUEST_MAC
            && f[23] == 17
            && f[26..30] == [10, 0, 3, 1]
            && f[34..36] == 53u16.to_be_bytes()
            && f[36..38] == 40000u16.to_be_bytes()
            && f[42..44] == id.to_be_bytes();
        if ours {
            return f[42..].to_vec();
        }
    }
}

#[test]
fn dns_records_forwarding_tcp_and_truncation() {
    let dir = scratch("dns");
    let mut ns = Netns::new("e2e-dns");
    for addr in ["127.0.0.2/32", "127.0.0.3/32"] {
        run_ok(&mut ns.cmd("ip", &["addr", "add", addr, "dev", "lo"]));
    }
    // The namespace's own resolv.conf, for the hub that reads it.
    let etc = NetnsEtc(PathBuf::from("/etc/netns").join(&ns.name));
    std::fs::create_dir_all(&etc.0).unwrap();
    std::fs::write(etc.0.join("resolv.conf"), "nameserver 127.0.0.3\n").unwrap();

    let mut upstream = vec!["--address=/upstream.test/192.0.2.7".to_string()];
    for i in 1..=40 {
        upstream.push(format!("--host-record=big.upstream.test,198.51.100.{i}"));
    }
    let up_log = upstream_dnsmasq(&mut ns, &dir, "upstream", "127.0.0.2", 5300, &upstream);
    upstream_dnsmasq(
        &mut ns,
        &dir,
        "resolv",
        "127.0.0.3",
        53,
        &["--address=/resolv.test/192.0.2.8".to_string()],
    );

    let seg_sock = format!("unix:{}", dir.join("seg.sock").display());
    let mut args: Vec<String> = [
        "hub",
        "--addr",
        "10.0.3.1/24",
        "--mcast",
        "230.0.0.1:1234",
        "--dns-listen",
        "127.0.0.1:5353",
        "--stream",
        &seg_sock,
        "--server",
        "127.0.0.2#5300",
        "--no-resolv",
        "--domain",
        "cluster",
        "--host-record",
        "master,10.0.3.101,fd00::101",
        "--dhcp-host",
        "00:00:00:22:22:22,10.0.3.102,worker1",
        "--cname",
        "www,master",
        "--srv-host",
        "_salt._tcp,master.cluster,4506,1,10",
        "--address",
        "/ads.test/192.0.2.1",
        "--local=/internal/",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in 1..=40 {
        args.extend(["--host-record".to_string(), format!("big,10.0.4.{i}")]);
    }
    let hub_log = hub(&mut ns, &dir, "hub", &args);
    let ctx = |d: &Dig| {
        format!(
            "{}\nhub log:\n{}",
            d.text,
            std::fs::read_to_string(&hub_log).unwrap_or_default()
        )
    };

    for tcp in [false, true] {
        let q = |args: &[&str]| dig(&ns, 5353, tcp, args);
        // A, AAAA, PTR (IPv4 and IPv6): authoritative.
        let d = q(&["master.cluster", "A"]);
        assert_eq!(d.rdata("A"), vec!["10.0.3.101"], "tcp={tcp} {}", ctx(&d));
        assert!(d.flag("aa") && d.flag("ra"), "{}", ctx(&d));
        assert_eq!(q(&["master", "AAAA"]).rdata("AAAA"), vec!["fd00::101"]);
        assert_eq!(q(&["worker1.cluster"]).rdata("A"), vec!["10.0.3.102"]);
        assert_eq!(q(&["-x", "10.0.3.101"]).rdata("PTR"), vec!["master.cluster."]);
        let d = q(&["-x", "fd00::101"]);
        assert_eq!(d.rdata("PTR"), vec!["master.cluster."], "{}", ctx(&d));
        assert!(d.flag("aa"));
        // CNAME with its target's record; SRV.
        let d = q(&["www.cluster", "A"]);
        assert_eq!(
            (d.rdata("CNAME"), d.rdata("A")),
            (vec!["master.".into()], vec!["10.0.3.101".into()]),
            "{}",
            ctx(&d)
        );
        let d = q(&["_salt._tcp.cluster", "SRV"]);
        assert_eq!(d.rdata("SRV"), vec!["1 10 4506 master.cluster."], "{}", ctx(&d));
        // NXDOMAIN vs NODATA.
        let d = q(&["nosuch.cluster"]);
        assert_eq!((d.status.as_str(), d.flag("aa")), ("NXDOMAIN", true), "{}", ctx(&d));
        let d = q(&["worker1.cluster", "AAAA"]);
        assert_eq!(
            (d.status.as_str(), d.answers.len(), d.flag("aa")),
            ("NOERROR", 0, true),
            "{}",
            ctx(&d)
        );
        // --address: the domain and below.
        assert_eq!(q(&["x.ads.test"]).rdata("A"), vec!["192.0.2.1"]);
        // Forwarded: the upstream's answer (dig checks that the ID is its own).
        let d = q(&["upstream.test"]);
        assert_eq!(d.rdata("A"), vec!["192.0.2.7"], "{}", ctx(&d));
        // --local: NXDOMAIN from the hub.
        let d = q(&["nosuch.internal"]);
        assert_eq!((d.status.as_str(), d.flag("aa")), ("NXDOMAIN", true), "{}", ctx(&d));
        // --no-resolv: the namespace's resolv.conf server is not asked.
        assert!(q(&["resolv.test"]).rdata("A").is_empty());
        // 40 A records: all of them over TCP, even without EDNS (so the query
        // to the upstream went over TCP too).
        if tcp {
            let d = q(&["+noedns", "big.cluster"]);
            assert_eq!((d.rdata("A").len(), d.flag("tc")), (40, false), "{}", ctx(&d));
            let d = q(&["+noedns", "big.upstream.test"]);
            assert_eq!(
                (d.rdata("A").len(), d.flag("tc")),
                (40, false),
                "forwarded over TCP: {}",
                ctx(&d)
            );
        }
    }
    // Over UDP without EDNS, the big answer is truncated (TC), local or forwarded.
    for name in ["big.cluster", "big.upstream.test"] {
        let d = dig(&ns, 5353, false, &["+ignore", "+noedns", name]);
        assert!(d.flag("tc"), "{name}: {}", ctx(&d));
        let d = dig(&ns, 5353, false, &["+ignore", name]);
        assert!(
            !d.flag("tc") && d.rdata("A").len() == 40,
            "with EDNS: {name}: {}",
            ctx(&d)
        );
    }
    // From the segment: a local answer at once; a forwarded one comes back as a
    // frame from the hub (A 192.0.2.7 = c0 00 02 07), with the guest's ID.
    let mut sock = UnixStream::connect(dir.join("seg.sock")).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let a = segment_ask(&mut sock, "master.cluster", 0x1111);
    assert!(a.ends_with(&[10, 0, 3, 101]) && a[3] & 0x0f == 0, "{a:?}");
    let a = segment_ask(&mut sock, "upstream.test", 0x2222);
    assert!(a.ends_with(&[192, 0, 2, 7]) && a[3] & 0x0f == 0, "{a:?}");
    let upstream_log = std::fs::read_to_string(&up_log).unwrap();
    assert!(upstream_log.contains("upstream.test"), "{upstream_log}");
    assert!(
        !upstream_log.contains("internal"),
        "a --local name reached the upstream:\n{upstream_log}"
    );
    assert!(
        !upstream_log.contains("cluster"),
        "a local name reached the upstream:\n{upstream_log}"
    );

    // Without --server or --no-resolv: the servers of /etc/resolv.conf.
    let args2: Vec<String> = [
        "hub",
        "--addr",
        "10.0.3.1/24",
        "--mcast",
        "230.0.0.1:1234",
        "--dns-listen",
        "127.0.0.1:5354",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    hub(&mut ns, &dir, "hub2", &args2);
    let mut d = dig(&ns, 5354, false, &["resolv.test"]);
    wait_until("the resolv.conf upstream answers", Duration::from_secs(10), || {
        d = dig(&ns, 5354, false, &["resolv.test"]);
        !d.rdata("A").is_empty()
    });
    assert_eq!(d.rdata("A"), vec!["192.0.2.8"], "{}", d.text);
}

/// DNS over TCP on the segment: the hub's own address 10.0.3.1, port 53, asked
/// by `dig` from the namespace's side of a tap bridged into the hub.
#[test]
fn dns_over_tcp_on_the_segment() {
    let dir = scratch("dns-seg-tcp");
    let mut ns = Netns::new("e2e-dnstcp");
    run_all(
        &ns,
        &[
            &["ip", "addr", "add", "127.0.0.2/32", "dev", "lo"],
            &["ip", "tuntap", "add", "dev", "vmtap0", "mode", "tap"],
            &["ip", "link", "set", "vmtap0", "address", "02:00:00:00:66:66"],
            &["ip", "addr", "add", "10.0.3.50/24", "dev", "vmtap0"],
            &["ip", "link", "set", "vmtap0", "up"],
        ],
    );
    upstream_dnsmasq(
        &mut ns,
        &dir,
        "upstream",
        "127.0.0.2",
        5300,
        &["--address=/upstream.test/192.0.2.7".to_string()],
    );
    let mut args: Vec<String> = [
        "hub",
        "--tap",
        "vmtap0",
        "--addr",
        "10.0.3.1/24",
        "--server",
        "127.0.0.2#5300",
        "--no-resolv",
        "--domain",
        "cluster",
        "--host-record",
        "master,10.0.3.101",
        "--stats",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in 1..=60 {
        args.extend(["--host-record".to_string(), format!("big,10.0.4.{i}")]);
    }
    let hub_log = hub(&mut ns, &dir, "hub", &args);
    let log = || std::fs::read_to_string(&hub_log).unwrap_or_default();
    let q = |tcp: bool, a: &[&str]| dig_at(&ns, "10.0.3.1", 53, tcp, a);

    // Two queries on one connection (RFC 7766 section 6.2.1): the hub's
    // counters show one connection for both.
    let d = q(true, &["+keepopen", "master.cluster", "master"]);
    assert_eq!(d.rdata("A"), vec!["10.0.3.101", "10.0.3.101"], "{}\n{}", d.text, log());
    assert!(d.flag("aa"), "{}", d.text);
    assert!(
        wait_for_text(&hub_log, "dns tcp connections 1 queries 2", Duration::from_secs(5)),
        "{}",
        log()
    );
    // Forwarded upstream (over TCP by the adapter), answered on the connection.
    let d = q(true, &["upstream.test"]);
    assert_eq!(d.rdata("A"), vec!["192.0.2.7"], "{}\n{}", d.text, log());
    // A big answer: over UDP without EDNS, truncated (TC) to 512 bytes...
    let d = q(false, &["+ignore", "+noedns", "big"]);
    assert!(d.flag("tc"), "{}", d.text);
    assert!(d.rdata("A").len() < 60, "{}", d.text);
    // ...and whole when dig retries the truncated answer over TCP, as it does.
    let d = q(false, &["+noedns", "big"]);
    assert!(d.text.contains("Truncated, retrying in TCP mode"), "{}", d.text);
    assert!(!d.flag("tc"), "{}", d.text);
    assert_eq!(d.rdata("A").len(), 60, "{}\n{}", d.text, log());
    let d = q(true, &["big"]);
    assert_eq!(d.rdata("A").len(), 60, "{}", d.text);
    assert!(
        wait_for_text(
            &hub_log,
            "dns tcp connections 4 queries 5 malformed 0",
            Duration::from_secs(5)
        ),
        "{}",
        log()
    );
}

/// `dig` with its own time limit (one try of 6 s: longer than the hub's forward
/// timeout), and how long it took.
fn timed_dig(ns: &Netns, tcp: bool, args: &[&str]) -> (Dig, Duration) {
    let start = Instant::now();
    let mut a = vec!["+time=6", "+tries=1"];
    a.extend_from_slice(args);
    let d = dig(ns, 5353, tcp, &a);
    (d, start.elapsed())
}

/// Upstream servers that fail or stay silent: the client gets SERVFAIL (its ID
/// and question, RA set, an extended error) instead of timing out. Inside the
/// test's namespace: a server address where nothing listens (127.0.0.9#53, ICMP
/// port unreachable: SERVFAIL at once, over UDP and TCP), one behind a blackhole
/// route (10.99.0.1: the kernel refuses the send, SERVFAIL at once), and one
/// that takes the queries and never answers (a dnsmasq whose own upstream is
/// 127.0.0.9: it stays silent, so the hub answers SERVFAIL after its 3 s forward
/// timeout). A domain whose first server refuses and second answers gets the
/// answer at once. The segment's path gets SERVFAIL too, and glibc (getent,
/// through the namespace's resolv.conf, timeout 5 s, 2 tries) gets its
/// failure before the 10 s after which it would give up.
#[test]
fn failing_and_silent_upstreams_get_servfail_in_seconds() {
    let dir = scratch("dns-servfail");
    let mut ns = Netns::new("e2e-servfail");
    run_all(
        &ns,
        &[
            &["ip", "addr", "add", "127.0.0.2/32", "dev", "lo"],
            &["ip", "addr", "add", "127.0.0.4/32", "dev", "lo"],
            &["ip", "route", "add", "blackhole", "10.99.0.0/24"],
        ],
    );
    let etc = NetnsEtc(PathBuf::from("/etc/netns").join(&ns.name));
    std::fs::create_dir_all(&etc.0).unwrap();
    std::fs::write(etc.0.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
    upstream_dnsmasq(
        &mut ns,
        &dir,
        "upstream",
        "127.0.0.2",
        5300,
        &["--address=/both.test/192.0.2.9".to_string()],
    );
    let silent_log = upstream_dnsmasq(
        &mut ns,
        &dir,
        "silent",
        "127.0.0.4",
        5300,
        &["--server=127.0.0.9".to_string()],
    );
    let seg_sock = format!("unix:{}", dir.join("seg.sock").display());
    let args: Vec<String> = [
        "hub",
        "--addr",
        "10.0.3.1/24",
        "--stream",
        &seg_sock,
        "--dns-listen",
        "127.0.0.1:5353",
        "--dns-listen",
        "127.0.0.1:53",
        "--no-resolv",
        "--server",
        "/refused.test/127.0.0.9",
        "--server",
        "/blackhole.test/10.99.0.1",
        "--server",
        "/silent.test/127.0.0.4#5300",
        "--server",
        "/both.test/127.0.0.9",
        "--server",
        "/both.test/127.0.0.2#5300",
    ]
    .map(String::from)
    .to_vec();
    let hub_log = hub(&mut ns, &dir, "hub", &args);
    let ctx = |d: &Dig, t: Duration| {
        format!(
            "after {t:?}:\n{}\nhub log:\n{}",
            d.text,
            std::fs::read_to_string(&hub_log).unwrap_or_default()
        )
    };
    let quick = Duration::from_secs(2);
    for tcp in [false, true] {
        for name in ["www.refused.test", "www.blackhole.test"] {
            let (d, t) = timed_dig(&ns, tcp, &[name]);
            assert_eq!(d.status, "SERVFAIL", "{name} tcp={tcp} {}", ctx(&d, t));
            assert!(t < quick, "{name} tcp={tcp}: {}", ctx(&d, t));
            assert!(d.flag("ra") && d.flag("rd") && !d.flag("aa"), "{}", ctx(&d, t));
            assert!(d.text.contains(&format!(";{name}.")), "the question: {}", ctx(&d, t));
            assert!(!d.text.contains("mismatch"), "{}", ctx(&d, t));
            assert!(d.text.contains("EDE: 23 (Network Error)"), "{}", ctx(&d, t));
        }
    }
    // The first server of the domain refuses: the second answers, at once.
    let (d, t) = timed_dig(&ns, false, &["www.both.test"]);
    assert_eq!(d.rdata("A"), vec!["192.0.2.9"], "{}", ctx(&d, t));
    assert!(t < quick, "{}", ctx(&d, t));
    // Silent: SERVFAIL after the hub's 3 s forward timeout (and its 1 s tick).
    let (d, t) = timed_dig(&ns, false, &["www.silent.test"]);
    assert_eq!(d.status, "SERVFAIL", "{}", ctx(&d, t));
    assert!(
        (Duration::from_millis(2900)..Duration::from_millis(5500)).contains(&t),
        "{}",
        ctx(&d, t)
    );
    assert!(d.text.contains("EDE: 22 (No Reachable Authority)"), "{}", ctx(&d, t));
    assert!(
        std::fs::read_to_string(&silent_log)
            .unwrap()
            .contains("www.silent.test"),
        "the query reached the silent server"
    );
    // A guest on the segment.
    let mut sock = UnixStream::connect(dir.join("seg.sock")).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let a = segment_ask(&mut sock, "www.refused.test", 0x3333);
    assert_eq!((a[3] & 0x0f, a[3] & 0x80), (2, 0x80), "SERVFAIL with RA: {a:?}");
    // glibc: getaddrinfo (A only) through the namespace's resolv.conf.
    for (name, limit) in [
        ("www.refused.test", quick),
        ("www.silent.test", Duration::from_millis(9500)),
    ] {
        let start = Instant::now();
        let out = ns.cmd("getent", &["ahostsv4", name]).output().unwrap();
        let t = start.elapsed();
        assert!(
            !out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(t < limit, "getent {name} took {t:?}");
    }
}

/// A real load client, dnsperf, sending from one socket with up to 200 queries
/// in flight: the listener answers them in batches, and the answers of one
/// length to that socket leave as UDP GSO sends (hub/src/sys/mmsg.rs). Every
/// answer must come back whole and matched to its query: a lost, merged or
/// damaged datagram shows as a lost query or a bad response code.
#[test]
fn a_burst_from_one_client_socket_is_answered_in_full() {
    let dir = scratch("dns-burst");
    let mut ns = Netns::new("e2e-dnsburst");
    let seg_sock = format!("unix:{}", dir.join("seg.sock").display());
    let mut args: Vec<String> = [
        "hub",
        "--addr",
        "10.0.3.1/24",
        "--stream",
        &seg_sock,
        "--no-resolv",
        "--dns-listen",
        "127.0.0.1:5353",
    ]
    .map(String::from)
    .to_vec();
    // Names of three lengths (host1..host300), hence answers of three lengths.
    let mut queries = String::new();
    for i in 1..=300 {
        args.push("--host-record".into());
        args.push(format!("host{i},10.1.{}.{}", i / 256, i % 256));
        queries.push_str(&format!("host{i} A\n"));
    }
    let qfile = dir.join("queries");
    std::fs::write(&qfile, queries).unwrap();
    hub(&mut ns, &dir, "hub", &args);

    let out = run_ok(&mut ns.cmd(
        "timeout",
        &[
            "60",
            "dnsperf",
            "-s",
            "127.0.0.1",
            "-p",
            "5353",
            "-d",
            qfile.to_str().unwrap(),
            "-n",
            "20",
            "-q",
            "200",
            "-t",
            "5",
        ],
    ));
    let report = String::from_utf8_lossy(&out.stdout);
    let stat = |label: &str| -> String {
        report
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|v| v.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no {label:?} in dnsperf's report:\n{report}"))
    };
    assert!(stat("Queries completed:").starts_with("6000 "), "{report}");
    assert!(stat("Queries lost:").starts_with("0 "), "{report}");
    assert_eq!(stat("Response codes:"), "NOERROR 6000", "{report}");
}

/// `--dns-listen [::1]:5353` (with an IPv4 listener beside it): `dig @::1`
/// over UDP and over TCP gets its answers (A, AAAA, NXDOMAIN), from `::1`
/// itself (dig reports an answer from another source), and IPv4 still works.
#[test]
fn dns_listen_on_an_ipv6_address() {
    let dir = scratch("dns-listen6");
    let mut ns = Netns::new("e2e-dnsl6");
    let cmd = stream_hub_cmd(
        &ns,
        &dir.join("seg.sock"),
        &[
            "--dns-listen",
            "[::1]:5353",
            "--dns-listen",
            "127.0.0.1:5353",
            "--domain",
            "cluster",
            "--host-record",
            "master,10.0.3.101,fd00::101",
        ],
    );
    start_hub_cmd(&mut ns, cmd, &dir.join("hub.log"));
    for tcp in [false, true] {
        let d = dig_at(&ns, "::1", 5353, tcp, &["master.cluster", "A"]);
        assert_eq!(d.status, "NOERROR", "{}", d.text);
        assert_eq!(d.rdata("A"), vec!["10.0.3.101"], "{}", d.text);
        assert!(d.flag("aa"), "{}", d.text);
        assert!(d.text.contains("SERVER: ::1#5353"), "{}", d.text);
        assert!(!d.text.contains("unexpected source"), "{}", d.text);
        let d = dig_at(&ns, "::1", 5353, tcp, &["master.cluster", "AAAA"]);
        assert_eq!(d.rdata("AAAA"), vec!["fd00::101"], "{}", d.text);
        let d = dig_at(&ns, "::1", 5353, tcp, &["nothere.cluster", "A"]);
        assert_eq!(d.status, "NXDOMAIN", "{}", d.text);
        let d = dig(&ns, 5353, tcp, &["master.cluster", "A"]);
        assert_eq!(d.rdata("A"), vec!["10.0.3.101"], "{}", d.text);
    }
}
