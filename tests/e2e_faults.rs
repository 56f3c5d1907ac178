//! The hub under faults, end to end, each test in network namespaces of its own
//! (nothing leaves them) with real tools, every load bounded in count and time:
//!
//! 1. a DHCPDISCOVER flood from thousands of random MACs through a `--tap`
//!    (tests/tools/l2_flood.py, AF_PACKET) while `ping` to the hub through the same
//!    tap and `dig` at `--dns-listen` keep working: loss, RTT and answers checked;
//! 2. a MAC flood (more source MACs than the switch's table holds, from a third tap)
//!    while two stations in two namespaces keep pinging each other and the hub;
//! 3. a `--stream` client that never reads while another sends broadcasts: the
//!    healthy clients get every frame, the stuck one's port counts drops (SIGUSR1
//!    report), and the hub's host still answers ARP;
//! 4. `perfdhcp` leasing while the hub is killed with SIGKILL at seeded random
//!    moments and restarted on the same `--leasefile`: every DHCPACK captured with
//!    `tcpdump` (tests/tools/pcap_acks.py) is in the lease file afterwards;
//! 5. the lease file's filesystem (a small tmpfs the test mounts) full while
//!    clients lease: ACKs still come, "No space left on device" is logged exactly
//!    once for the outage, and once space is back every lease reaches the file.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A seed for this run (printed, so a failure can be replayed by setting `VMLAN_SEED`).
fn seed(test: &str) -> u64 {
    let s = std::env::var("VMLAN_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000_007
        });
    eprintln!("{test}: seed {s} (VMLAN_SEED={s} replays it)");
    s
}

/// xorshift64*: a small seeded PRNG.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..hi` (milliseconds, say).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// tests/tools/`name`.
fn tool(name: &str) -> String {
    repo().join("tests/tools").join(name).display().to_string()
}

/// A bounded flood for tests/tools/l2_flood.py: at most `count` frames, at
/// most `secs` seconds, paced to `rate` frames per second.
struct Flood {
    mode: &'static str,
    count: u32,
    secs: u32,
    rate: u32,
}

/// Starts tests/tools/l2_flood.py in `ns` on `iface`, its JSON summary to `out`.
fn start_flood(ns: &mut Netns, out: &Path, iface: &str, f: &Flood, seed: u64) -> usize {
    let (mode, count, secs, rate, seed) = (
        f.mode,
        f.count.to_string(),
        f.secs.to_string(),
        f.rate.to_string(),
        seed.to_string(),
    );
    let script = tool("l2_flood.py");
    let cmd = ns.cmd(
        "python3",
        &[
            &script,
            "--iface",
            iface,
            "--mode",
            mode,
            "--count",
            &count,
            "--seconds",
            &secs,
            "--rate",
            &rate,
            "--seed",
            &seed,
        ],
    );
    ns.spawn(cmd, out)
}

/// Waits for the flood started as child `i` (its summary in `out`) and returns (sent, offers).
fn flood_result(ns: &mut Netns, i: usize, out: &Path) -> (u64, u64) {
    ns.wait(i, Duration::from_secs(40), "l2_flood.py");
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let v: serde_json::Value = text
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no summary from l2_flood.py: {text}"));
    eprintln!("flood: {v}");
    (v["sent"].as_u64().unwrap(), v["offers"].as_u64().unwrap())
}

/// `ping` results: (transmitted, received, max RTT in ms) and the output.
fn ping_stats(out: &std::process::Output) -> (u64, u64, f64, String) {
    let text = output_text(out);
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_default();
    let num = |after: &str| -> u64 {
        line.split(", ")
            .find(|p| p.contains(after))
            .and_then(|p| p.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let max = text
        .lines()
        .find_map(|l| l.strip_prefix("rtt min/avg/max/mdev = "))
        .and_then(|r| r.split('/').nth(2))
        .and_then(|m| m.parse().ok())
        .unwrap_or(f64::INFINITY);
    (num("transmitted"), num("received"), max, text)
}

/// A `ping -i 0.05 -c COUNT -W 1 TARGET` in `ns`, started now; [`finish_ping`] collects it.
fn start_ping(ns: &Netns, target: &str, count: u32) -> std::process::Child {
    ns.cmd(
        "ping",
        &["-n", "-i", "0.05", "-W", "1", "-c", &count.to_string(), target],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("ping")
}

/// Waits for a ping from [`start_ping`] to finish.
fn finish_ping(child: std::process::Child) -> std::process::Output {
    child.wait_with_output().unwrap()
}

/// Asserts under 10% loss, and a max RTT under `max_rtt` ms when given, in a finished ping.
fn check_ping(out: &std::process::Output, what: &str, max_rtt: Option<f64>) {
    let (tx, rx, max, text) = ping_stats(out);
    eprintln!("{what}: {rx}/{tx} replies, max RTT {max} ms");
    assert!(
        tx > 0 && (tx - rx) * 10 < tx,
        "{what}: lost {} of {tx} (10% allowed):\n{text}",
        tx - rx
    );
    if let Some(limit) = max_rtt {
        assert!(max < limit, "{what}: max RTT {max} ms ({limit} allowed):\n{text}");
    }
}

/// Sends SIGUSR1 to the hub (child `hub`, logging to `log`) and returns the report it printed.
fn hub_report(ns: &mut Netns, hub: usize, log: &Path) -> String {
    let from = std::fs::metadata(log).map(|m| m.len() as usize).unwrap_or(0);
    let pid = ns.child(hub).id().to_string();
    run_ok(Command::new("kill").args(["-USR1", &pid]));
    let start = Instant::now();
    loop {
        let text = std::fs::read(log).unwrap_or_default();
        let tail = String::from_utf8_lossy(text.get(from..).unwrap_or_default()).to_string();
        // One write: the port lines, the host line, the MAC table.
        if tail.lines().any(|l| l.starts_with("host ")) {
            std::thread::sleep(Duration::from_millis(300));
            let text = std::fs::read(log).unwrap_or_default();
            return String::from_utf8_lossy(text.get(from..).unwrap_or_default()).to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no report after SIGUSR1:\n{tail}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The number after `key` (e.g. "dhcp in ") in `text`.
fn counter(text: &str, key: &str) -> u64 {
    text.split(key)
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key:?} in {text}"))
}

/// A report's port line for the port named `name`: (tx frames, drops).
fn port_counts(report: &str, name: &str) -> (u64, u64) {
    let line = report
        .lines()
        .find(|l| l.starts_with("port ") && l.contains(&format!(" {name}: ")))
        .unwrap_or_else(|| panic!("no port {name} in the report:\n{report}"));
    (counter(line, "tx "), counter(line, "drops "))
}

/// One `dig @127.0.0.1 -p 5353 +short` in `ns` asking `times` queries for NAME A
/// (one dig process, so queries are not slowed by process start-ups): the answer lines.
fn dig_a(ns: &Netns, name: &str, times: usize) -> Vec<String> {
    let mut args = vec!["@127.0.0.1", "-p", "5353", "+time=1", "+tries=1", "+short"];
    for _ in 0..times {
        args.extend([name, "A"]);
    }
    let out = ns.cmd("dig", &args).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .collect()
}

/// `vmlan hub ARGS` in `ns` at nice -10, for the tests that time the hub's answers
/// under a flood: the flood and the hub share the machine as they would in use, but
/// other work on a shared 2-core test machine (compiles, benchmarks, guests of other
/// tests) must not decide the round-trip times: at load 7 a ping once waited 1.5 s.
fn hub_ahead(ns: &Netns, args: &[&str]) -> Command {
    let mut a = vec!["-n", "-10", env!("CARGO_BIN_EXE_vmlan"), "hub"];
    a.extend_from_slice(args);
    ns.cmd("nice", &a)
}

#[test]
fn dhcp_discover_flood_leaves_ping_and_dns_answered() {
    let seed = seed("dhcp flood");
    let dir = scratch("faults-dhcp-flood");
    let mut ns = Netns::new("flt-dhcp");
    let hub_log = dir.join("hub.log");
    tap(&ns, "vmtap0", Some("02:00:00:00:d0:01"), Some("10.0.0.250/16"));
    let cmd = hub_ahead(
        &ns,
        &[
            "--tap",
            "vmtap0",
            "--no-resolv",
            "--addr",
            "10.0.0.1/16",
            "--dhcp-range",
            "10.0.1.0,10.0.254.254",
            "--dns-listen",
            "127.0.0.1:5353",
            "--host-record",
            "gateway,10.0.0.254",
        ],
    );
    let hub = start_hub_cmd(&mut ns, cmd, &hub_log);
    assert_eq!(dig_a(&ns, "gateway", 1), ["10.0.0.254"], "DNS before the flood");
    // The hub's MAC resolved before the flood: the pings time echoes, not ARP.
    run_ok(&mut ns.cmd("ping", &["-n", "-c", "1", "-W", "2", "10.0.0.1"]));
    let flood_out = dir.join("flood.json");
    // 14,000 DISCOVERs at 1,000/s: 14 s, never more than 15. The debug build's hub
    // spends about 0.1 ms of CPU on one, so it needs a tenth of a core: on a loaded
    // 2-core machine it still keeps up (at 2,000/s it fell behind there, and pings
    // waited behind the DISCOVERs queued in the tap).
    let flood = start_flood(
        &mut ns,
        &flood_out,
        "vmtap0",
        &Flood {
            mode: "dhcp",
            count: 14_000,
            secs: 15,
            rate: 1_000,
        },
        seed,
    );
    std::thread::sleep(Duration::from_secs(1));
    let ping = start_ping(&ns, "10.0.0.1", 160);
    // 50 queries, 5 every half second, while ping runs.
    let (mut right, mut wrong) = (0, vec![]);
    for round in 0..10 {
        for a in dig_a(&ns, "gateway", 5) {
            if a == "10.0.0.254" {
                right += 1;
            } else {
                wrong.push(format!("round {round}: {a:?}"));
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let ping = finish_ping(ping);
    let flooding = ns.child(flood).try_wait().unwrap().is_none();
    let (sent, offers) = flood_result(&mut ns, flood, &flood_out);
    let cpu = cpu_time(ns.child(hub).id());
    let report = hub_report(&mut ns, hub, &hub_log);
    let dhcp_in = counter(&report, "dhcp in ");
    eprintln!(
        "DISCOVERs sent {sent}, OFFERs seen {offers}, hub's dhcp in {dhcp_in}, hub's CPU time {cpu:?}; \
         dig during the flood: {right} of 50 answered right"
    );
    check_ping(&ping, "ping to the hub during the flood", Some(250.0));
    assert!(
        right == 50 && wrong.is_empty(),
        "dig during the flood: {right} of 50 right; {wrong:?}"
    );
    assert!(flooding, "the flood ended before the pings and queries did");
    assert!(sent >= 10_000, "the flood sent only {sent} DISCOVERs");
    assert!(
        offers * 10 >= sent * 9,
        "only {offers} OFFERs for {sent} DISCOVERs (hub's dhcp in {dhcp_in})"
    );
}

#[test]
fn mac_flood_leaves_unicast_between_stations_working() {
    const A: &str = "02:00:00:00:0a:01";
    const B: &str = "02:00:00:00:0b:01";
    let seed = seed("mac flood");
    let dir = scratch("faults-mac-flood");
    // B's namespace goes last: the hub (in A's) is killed before vmtap1 goes away.
    let nsb = Netns::new("flt-macb");
    let mut ns = Netns::new("flt-maca");
    tap(&ns, "vmtap0", Some(A), Some("10.0.3.250/24"));
    tap(&ns, "vmtap1", Some(B), None);
    tap(&ns, "vmtap2", None, None);
    let hub_log = dir.join("hub.log");
    let cmd = hub_ahead(
        &ns,
        &[
            "--tap",
            "vmtap0",
            "--tap",
            "vmtap1",
            "--tap",
            "vmtap2",
            "--addr",
            "10.0.3.1/24",
            "--no-resolv",
        ],
    );
    let hub = start_hub_cmd(&mut ns, cmd, &hub_log);
    // Station B: the hub keeps vmtap1 open while the link moves to the second namespace.
    run_ok(&mut ns.cmd("ip", &["link", "set", "vmtap1", "netns", &nsb.name]));
    run_all(
        &nsb,
        &[
            &["ip", "addr", "add", "10.0.3.251/24", "dev", "vmtap1"],
            &["ip", "link", "set", "vmtap1", "up"],
        ],
    );
    run_ok(&mut ns.cmd("ping", &["-n", "-c", "3", "-i", "0.2", "-W", "2", "10.0.3.251"]));
    run_ok(&mut nsb.cmd("ping", &["-n", "-c", "1", "-W", "2", "10.0.3.1"]));

    let flood_out = dir.join("flood.json");
    // 80,000 source MACs (the table holds 65,536) at 6,500/s: about 12 s, never more than 15.
    let flood = start_flood(
        &mut ns,
        &flood_out,
        "vmtap2",
        &Flood {
            mode: "mac",
            count: 80_000,
            secs: 15,
            rate: 6_500,
        },
        seed,
    );
    std::thread::sleep(Duration::from_secs(1));
    let a_to_b = start_ping(&ns, "10.0.3.251", 160);
    let b_to_hub = start_ping(&nsb, "10.0.3.1", 160);
    let (a_to_b, b_to_hub) = (finish_ping(a_to_b), finish_ping(b_to_hub));
    let flooding = ns.child(flood).try_wait().unwrap().is_none();
    let (sent, _) = flood_result(&mut ns, flood, &flood_out);
    eprintln!("hub's CPU time {:?}", cpu_time(ns.child(hub).id()));
    check_ping(&a_to_b, "A -> B during the MAC flood", None);
    check_ping(&b_to_hub, "B -> hub during the MAC flood", None);
    assert!(flooding, "the flood ended before the pings did");
    assert!(sent >= 70_000, "the flood sent only {sent} frames");

    let report = hub_report(&mut ns, hub, &hub_log);
    let entries: Vec<&str> = report.lines().filter(|l| l.starts_with("mac ")).collect();
    let port_of = |name: &str| -> String {
        let line = report
            .lines()
            .find(|l| l.starts_with("port ") && l.contains(&format!(" {name}: ")))
            .unwrap_or_else(|| {
                panic!(
                    "no port {name}:\n{}",
                    report.lines().take(10).collect::<Vec<_>>().join("\n")
                )
            });
        line.split_whitespace().nth(1).unwrap().to_string()
    };
    eprintln!("MAC table: {} entries after {sent} flood frames", entries.len());
    assert_eq!(
        entries.len(),
        65_536,
        "the MAC table is bounded at 65,536 and the flood filled it"
    );
    for (mac, tap) in [(A, "tap:vmtap0"), (B, "tap:vmtap1")] {
        let want = format!("mac {mac} port {} ", port_of(tap));
        assert!(
            entries.iter().any(|e| e.starts_with(&want)),
            "station {mac} not in the table on {tap}"
        );
    }
    // The 640 ping frames went unicast: the flood's port got only the stations'
    // few broadcasts and multicasts (ARP, IPv6 neighbour discovery).
    let (to_flooder, _) = port_counts(&report, "tap:vmtap2");
    eprintln!("frames switched to the flood's port: {to_flooder}");
    assert!(
        to_flooder < 100,
        "{to_flooder} frames went to the flood's port: the stations' unicast was flooded"
    );
}

/// A broadcast test frame of `len` bytes from `src`, carrying sequence number `seq`.
fn seq_frame(src: [u8; 6], seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0x5a; len];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    f
}

/// An ARP request from `mac`/`ip` for `target`.
fn arp_request(mac: [u8; 6], ip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f.resize(60, 0);
    f
}

/// What a healthy client's reader saw: test frames (in order?), ARP replies.
#[derive(Debug, Default)]
struct Seen {
    frames: u32,
    out_of_order: u32,
    arp_replies: u32,
}

/// Reads `c` until it is quiet for 3 s, counting the sender's frames and ARP replies.
/// Returns the stream too, so the client stays connected.
fn reader(mut c: UnixStream, sender: [u8; 6]) -> std::thread::JoinHandle<(Seen, UnixStream)> {
    std::thread::spawn(move || {
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut seen = Seen::default();
        while let Some(f) = recv_framed(&mut c) {
            if f[6..12] == sender && f[12..14] == [0x88, 0xb5] {
                let seq = u32::from_be_bytes(f[14..18].try_into().unwrap());
                if seq != seen.frames {
                    seen.out_of_order += 1;
                }
                seen.frames += 1;
            } else if f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2] && f[28..32] == [10, 0, 3, 1] {
                seen.arp_replies += 1;
            }
        }
        (seen, c)
    })
}

#[test]
fn stream_client_that_stops_reading_costs_only_itself() {
    const FRAMES: u32 = 20_000;
    const LEN: usize = 1_000;
    const SENDER: [u8; 6] = [2, 0, 0, 0, 0x0c, 1];
    let dir = scratch("faults-stuck-stream");
    let mut ns = Netns::new("flt-stuck");
    let sock = dir.join("hub.sock");
    let hub_log = dir.join("hub.log");
    let cmd = stream_hub_cmd(&ns, &sock, &[]);
    let hub = start_hub_cmd(&mut ns, cmd, &hub_log);
    // Connects a client and returns it with the port name the hub gave it.
    let connect = || -> (UnixStream, String) {
        let before = std::fs::read_to_string(&hub_log)
            .unwrap()
            .matches("client connected")
            .count();
        let c = UnixStream::connect(&sock).unwrap();
        let start = Instant::now();
        loop {
            let log = std::fs::read_to_string(&hub_log).unwrap();
            if let Some(line) = log.lines().filter(|l| l.contains("client connected")).nth(before) {
                let name = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("port="))
                    .unwrap()
                    .to_string();
                return (c, name);
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no 'client connected':\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let (mut sender, _) = connect();
    let (h1, h1_name) = connect();
    let (h2, h2_name) = connect();
    let (mut stuck, stuck_name) = connect();
    let h2_mac = [2, 0, 0, 0, 0x0c, 2];
    let mut h2_tx = h2.try_clone().unwrap();
    let r1 = reader(h1, SENDER);
    let r2 = reader(h2, SENDER);
    // The stuck client says hello once (so the hub knows its MAC), then never reads.
    send_framed(&mut stuck, &seq_frame([2, 0, 0, 0, 0x0c, 9], u32::MAX, 60));

    // 20,000 frames of 1,000 bytes at 2,000/s (10 s), each a broadcast; an ARP
    // request for the hub from a healthy client every 1,000 frames.
    let start = Instant::now();
    let mut arps = 0;
    for seq in 0..FRAMES {
        let due = start + Duration::from_micros(500 * u64::from(seq));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        send_framed(&mut sender, &seq_frame(SENDER, seq, LEN));
        if seq % 1_000 == 500 {
            send_framed(&mut h2_tx, &arp_request(h2_mac, [10, 0, 3, 12], [10, 0, 3, 1]));
            arps += 1;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "sending took too long");
    }
    let elapsed = start.elapsed();
    let ((s1, _h1), (s2, _h2)) = (r1.join().unwrap(), r2.join().unwrap());
    let report = hub_report(&mut ns, hub, &hub_log);
    let (stuck_tx, stuck_drops) = port_counts(&report, &stuck_name);
    eprintln!(
        "sent {FRAMES} in {elapsed:?}; {h1_name}: {s1:?}; {h2_name}: {s2:?}; \
         {stuck_name}: tx {stuck_tx} drops {stuck_drops}"
    );
    assert_eq!((s1.frames, s1.out_of_order), (FRAMES, 0), "healthy client 1");
    assert_eq!((s2.frames, s2.out_of_order), (FRAMES, 0), "healthy client 2");
    assert_eq!(s2.arp_replies, arps, "ARP replies from the hub during the load");
    for n in [&h1_name, &h2_name] {
        assert_eq!(port_counts(&report, n).1, 0, "{n} dropped frames:\n{report}");
    }
    // The stuck port took what its buffers hold (4 MiB in the hub plus the
    // socket's) and dropped the rest: about 15 MB of the 20 MB.
    assert!(
        stuck_drops >= u64::from(FRAMES) / 2,
        "the stuck client's port dropped only {stuck_drops}:\n{report}"
    );
    assert!(
        stuck_tx + stuck_drops >= u64::from(FRAMES),
        "frames to the stuck port unaccounted for: tx {stuck_tx} + drops {stuck_drops}:\n{report}"
    );

    // Still responsive: a new client is switched to a healthy one and the hub answers ARP.
    let (mut late, _) = connect();
    late.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    send_framed(
        &mut late,
        &arp_request([2, 0, 0, 0, 0x0c, 7], [10, 0, 3, 17], [10, 0, 3, 1]),
    );
    let reply = recv_framed(&mut late).expect("no ARP reply for a client connecting after the load");
    assert_eq!(reply[20..22], [0, 2], "{reply:?}");
}

/// The leases `vmlan leases --json --leasefile FILE` lists: MAC to IP.
fn listed_leases(file: &Path) -> BTreeMap<String, String> {
    let out = run_ok(
        Command::new(env!("CARGO_BIN_EXE_vmlan"))
            .args(["leases", "--json", "--leasefile"])
            .arg(file),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["mac"].as_str().unwrap().to_string(),
                l["ip"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn acked_leases_survive_kill_9() {
    let seed = seed("kill -9");
    let mut rng = Rng::new(seed);
    let dir = scratch("faults-kill9");
    let mut ns = Netns::new("flt-kill9");
    let leases = dir.join("leases");
    let hub_args = [
        "--addr",
        "10.0.0.1/16",
        "--dhcp-range",
        "10.0.1.0,10.0.254.254",
        "--leasefile",
        leases.to_str().unwrap(),
    ];
    let mut hub = tap_hub(&mut ns, &dir, None, Some("10.0.0.250/16"), &hub_args);
    let pcap = dir.join("acks.pcap");
    let tcpdump_log = dir.join("tcpdump.log");
    let cmd = ns.cmd(
        "tcpdump",
        &[
            "-i",
            "vmtap0",
            "-n",
            "-U",
            "-Z",
            "root",
            "-B",
            "16384",
            "-w",
            pcap.to_str().unwrap(),
            "udp port 67",
        ],
    );
    let tcpdump = ns.spawn(cmd, &tcpdump_log);
    assert!(
        wait_for_text(&tcpdump_log, "listening on", Duration::from_secs(10)),
        "tcpdump: {}",
        std::fs::read_to_string(&tcpdump_log).unwrap_or_default()
    );
    perfdhcp_warm_up(&ns, "10.0.0.250", "10.0.0.1");

    // 2,000 exchanges at 100/s from 2,000 clients (20 s); three SIGKILLs within it.
    let seed_arg = (seed % 1_000_000).to_string();
    let cmd = perfdhcp(
        &ns,
        "10.0.0.250",
        "10.0.0.1",
        &["-r", "100", "-n", "2000", "-p", "25", "-R", "2000", "-s", &seed_arg],
    );
    let perf = ns.spawn(cmd, &dir.join("perfdhcp.log"));
    let start = Instant::now();
    let mut kills: Vec<u64> = (0..3).map(|_| rng.range(1_000, 18_000)).collect();
    kills.sort_unstable();
    eprintln!("SIGKILL at {kills:?} ms into the run");
    for (n, at) in kills.iter().enumerate() {
        if let Some(wait) = Duration::from_millis(*at).checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        ns.child(hub).kill().unwrap();
        ns.child(hub).wait().unwrap();
        let mut args = vec!["hub", "--tap", "vmtap0", "--no-resolv"];
        args.extend_from_slice(&hub_args);
        let cmd = ns.cmd(env!("CARGO_BIN_EXE_vmlan"), &args);
        hub = start_hub_cmd(&mut ns, cmd, &dir.join(format!("hub{}.log", n + 2)));
        eprintln!("kill {} at {:?}: restarted", n + 1, start.elapsed());
    }
    ns.wait(perf, Duration::from_secs(60), "perfdhcp");
    let perf_text = std::fs::read_to_string(dir.join("perfdhcp.log")).unwrap_or_default();
    eprintln!("perfdhcp: {:?}", perfdhcp_counts(&perf_text));
    ns.stop(tcpdump);
    let tcpdump_text = std::fs::read_to_string(&tcpdump_log).unwrap_or_default();
    assert!(
        tcpdump_text.lines().any(|l| l.trim() == "0 packets dropped by kernel"),
        "tcpdump lost packets: {tcpdump_text}"
    );

    let out = run_ok(Command::new("python3").args([&tool("pcap_acks.py"), pcap.to_str().unwrap(), "10.0.0.1"]));
    let mut acked: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut count = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (mac, ip) = line.split_once(' ').unwrap();
        acked.entry(mac.to_string()).or_default().insert(ip.to_string());
        count += 1;
    }
    let listed = listed_leases(&leases);
    let moved: Vec<_> = acked.iter().filter(|(_, ips)| ips.len() > 1).collect();
    let missing: Vec<_> = acked
        .iter()
        .filter(|(mac, ips)| ips.len() == 1 && listed.get(*mac) != ips.first())
        .map(|(mac, ips)| format!("{mac} {ips:?} (file: {:?})", listed.get(mac)))
        .collect();
    eprintln!(
        "{count} ACKs to {} clients; {} leases listed; {} clients moved, {} missing",
        acked.len(),
        listed.len(),
        moved.len(),
        missing.len()
    );
    assert!(acked.len() >= 500, "only {} clients ACKed: {perf_text}", acked.len());
    assert!(
        moved.is_empty(),
        "clients ACKed with two addresses (a lease lost at a kill): {moved:?}"
    );
    assert!(
        missing.is_empty(),
        "{} ACKed leases not in the lease file, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

/// A tmpfs mounted for one test, lazily unmounted on drop (also on panic).
struct Tmpfs(PathBuf);
impl Tmpfs {
    fn mount(dir: PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&dir).unwrap();
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "vmlan-test"])
                .arg(&dir),
        );
        Tmpfs(dir)
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The leases the hub's log says it granted (the last address of each MAC).
fn granted(log: &str) -> BTreeMap<String, String> {
    log.lines()
        .filter(|l| l.contains("lease granted"))
        .filter_map(|l| {
            let field = |k: &str| l.split_whitespace().find_map(|w| w.strip_prefix(k)).map(String::from);
            Some((field("mac=")?, field("ip=")?))
        })
        .collect()
}

#[test]
fn leases_reach_the_file_after_a_full_disk() {
    let dir = scratch("faults-full-disk");
    let disk = Tmpfs::mount(dir.join("disk"), "256k");
    let mut ns = Netns::new("flt-disk");
    let leases = disk.0.join("leases");
    let hub_log = dir.join("hub.log");
    tap_hub(
        &mut ns,
        &dir,
        None,
        Some("10.0.3.250/24"),
        &[
            "--dhcp-range",
            "10.0.3.10,10.0.3.240",
            "--leasefile",
            leases.to_str().unwrap(),
        ],
    );
    perfdhcp_warm_up(&ns, "10.0.3.250", "10.0.3.1");
    // `n` exchanges at 50/s from `n` clients whose MACs start with `base`: every one answered.
    let run = |n: u64, base: &str| {
        let mac = format!("mac={base}");
        perfdhcp_all_answered(&ns, "10.0.3.250", "10.0.3.1", n, &["-b", &mac]);
    };
    run(50, "00:0c:01:00:00:00");

    // The disk fills up.
    let filler = disk.0.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 4096];
    let full = loop {
        if let Err(e) = f.write_all(&chunk) {
            break e;
        }
    };
    assert_eq!(full.raw_os_error(), Some(28), "filling the tmpfs: {full}");
    drop(f);
    let outage_start = std::fs::metadata(&hub_log).unwrap().len() as usize;
    run(150, "00:0c:02:00:00:00");
    // The journal's sync and a compaction attempt (at most 5 s after a change) happen in the outage.
    std::thread::sleep(Duration::from_secs(6));

    std::fs::remove_file(&filler).unwrap();
    let log = std::fs::read_to_string(&hub_log).unwrap();
    let want = granted(&log);
    let outage = granted(&log[outage_start..]);
    assert!(outage.len() >= 150, "{} leases granted in the outage", outage.len());
    let start = Instant::now();
    let missing = loop {
        let listed = listed_leases(&leases);
        let missing: Vec<String> = want
            .iter()
            .filter(|(mac, ip)| listed.get(*mac) != Some(ip))
            .map(|(mac, ip)| format!("{mac} {ip} (file: {:?})", listed.get(mac)))
            .collect();
        if missing.is_empty() || start.elapsed() > Duration::from_secs(15) {
            break missing;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let log = std::fs::read_to_string(&hub_log).unwrap();
    let enospc: Vec<&str> = log.lines().filter(|l| l.contains("No space left on device")).collect();
    eprintln!(
        "{} leases granted ({} in the outage), {} missing from the file 15 s after; {} ENOSPC lines",
        want.len(),
        outage.len(),
        missing.len(),
        enospc.len()
    );
    let summary = format!(
        "ENOSPC lines: {} (one wanted): {:?}; leases missing from the file: {} of {}, e.g. {:?}",
        enospc.len(),
        &enospc[..enospc.len().min(5)],
        missing.len(),
        want.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(enospc.len() == 1 && missing.is_empty(), "{summary}");
}
