//! Real QEMU guests in every IPv6 range mode (issue 12): one hub in a private
//! network namespace with `--enable-ra` and four IPv6 ranges, one per mode,
//! each its own /64:
//!
//! - `1234:1::100,1234:1::1ff,64,1h`: stateful (DHCPv6 addresses only; its
//!   prefix is on-link but not autonomous, so no SLAAC address in it),
//! - `1234:2::100,1234:2::1ff,slaac,64,1h`: SLAAC and DHCPv6,
//! - `1234:3::,ra-stateless`: SLAAC, other settings over DHCPv6,
//! - `1234:4::,ra-only`: SLAAC only.
//!
//! Three busybox guests on two transports (`socket,mcast=` and `stream` over a
//! unix socket): `m6a` (mcast) and `s6b` (stream) run busybox `udhcpc6`
//! (tests/guest/udhcpc6.sh builds it: Debian's busybox lacks it) and get
//! `m6a`'s reservation `[1234:1::a]` and a pool address named `s6b`; `i6c`
//! (mcast) only sends an INFORMATION-REQUEST (`udhcpc6 -l`) for the DNS
//! server. Each guest holds exactly its DHCPv6 address (if any) and its SLAAC
//! addresses in the three autonomous prefixes; each asks the DNS server DHCPv6
//! gave it (the hub, over IPv6) for the others' names and the hub's, gets AAAA
//! answers and `ping6`s them by name. The hub's lease journal (or the file
//! it was compacted into) then holds the `duid` line and both DHCPv6 leases; the hub is killed (SIGKILL) and a new
//! one on the same `--leasefile` knows a new name; once the guests resolve it
//! their `udhcpc6` renews (SIGUSR1; busybox 1.35 sends a REQUEST) and keeps
//! its address, and the file the new hub writes at its stop has the `duid`
//! line and both leases. Nothing leaves the namespace.

mod common;

use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// (name, MAC, IPv4, transport index: 0 mcast, 1 stream, DHCPv6 action)
const GUESTS: [(&str, &str, &str, usize, &str); 3] = [
    ("m6a", "00:00:00:31:00:01", "10.0.3.41", 0, "1"),
    ("s6b", "00:00:00:31:00:02", "10.0.3.42", 1, "1"),
    ("i6c", "00:00:00:31:00:03", "10.0.3.43", 0, "info"),
];
/// The hub's address in the stateful prefix: the modified EUI-64 of its default MAC 02:76:6d:00:03:01.
const HUB6: &str = "1234:1::76:6dff:fe00:301";
const RESERVED6: &str = "1234:1::a";

/// The hub's arguments (before `--leasefile`), plus `extra`.
fn hub_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "hub",
        "--addr",
        "10.0.3.1/24",
        "--domain",
        "lab",
        "--no-resolv",
        "--enable-ra",
        "--dhcp-range",
        "1234:1::100,1234:1::1ff,64,1h",
        "--dhcp-range",
        "1234:2::100,1234:2::1ff,slaac,64,1h",
        "--dhcp-range",
        "1234:3::,ra-stateless",
        "--dhcp-range",
        "1234:4::,ra-only",
        "--mcast",
        "230.0.0.1:1234",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(["--stream".into(), format!("unix:{}", dir.join("hub.sock").display())]);
    a.extend(["--leasefile".into(), dir.join("leases").display().to_string()]);
    for (name, mac, ip, _, _) in GUESTS {
        let host = if name == "m6a" {
            format!("{mac},{ip},[{RESERVED6}],{name}")
        } else {
            format!("{mac},{ip},{name}")
        };
        a.extend(["--dhcp-host".into(), host]);
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// The SLAAC address of `mac` (modified EUI-64) in the /64 `prefix` (its first four groups).
fn slaac(prefix: [u16; 4], mac: &str) -> Ipv6Addr {
    let m: Vec<u8> = mac.split(':').map(|b| u8::from_str_radix(b, 16).unwrap()).collect();
    let iid = [m[0] ^ 2, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]];
    let g = |i: usize| u16::from_be_bytes([iid[i], iid[i + 1]]);
    Ipv6Addr::new(prefix[0], prefix[1], prefix[2], prefix[3], g(0), g(2), g(4), g(6))
}

/// The rest of the last `VMTEST <tag> ...` line of a console, if any.
fn vmtest_line(console: &str, tag: &str) -> Option<String> {
    let want = format!("VMTEST {tag} ");
    console
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').split(&want).nth(1))
        .next_back()
        .map(|s| s.trim().to_string())
}

/// The hub's DHCPv6 lease lines in a dnsmasq leases file's text: (IAID, address, name, client DUID).
fn v6_leases(text: &str) -> Vec<(u32, Ipv6Addr, String, String)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let addr: Ipv6Addr = f.get(2)?.parse().ok()?;
            assert_eq!(f.len(), 5, "a DHCPv6 lease line has 5 fields: {l}");
            assert!(f[0].parse::<u64>().is_ok(), "expiry: {l}");
            Some((
                f[1].parse().expect("decimal IAID"),
                addr,
                f[3].to_string(),
                f[4].to_string(),
            ))
        })
        .collect()
}

#[test]
fn guests_on_two_transports_in_every_ipv6_mode_udhcpc6_slaac_aaaa_ping6_and_renew_after_restart() {
    let t0 = Instant::now();
    guest();
    let dir = scratch("ipv6-modes");
    let mut ns = Netns::new("e2e-m6");
    let hub_log = dir.join("hub.log");
    let args = hub_args(&dir, &["--host-record", &format!("hub,10.0.3.1,{HUB6}")]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmd = ns.cmd(env!("CARGO_BIN_EXE_vmlan"), &refs);
    let hub = start_hub_cmd(&mut ns, cmd, &hub_log);

    let netdevs = [
        "socket,id=seg,mcast=230.0.0.1:1234,localaddr=127.0.0.1".to_string(),
        format!(
            "stream,id=seg,server=off,addr.type=unix,addr.path={},reconnect-ms=500",
            dir.join("hub.sock").display()
        ),
    ];
    let mut logs = vec![];
    for (i, (name, mac, _, transport, dhcp6)) in GUESTS.iter().enumerate() {
        let others: Vec<&str> = ["m6a", "s6b"].into_iter().filter(|n| n != name).collect();
        let addrs = if *dhcp6 == "1" { 4 } else { 3 };
        // vmtest.hold: a guest done early still answers the others (the namespace kills it at the end).
        let mut actions = format!(
            "vmtest.dhcp6={dhcp6} vmtest.addrs6={addrs} vmtest.dns6=dhcp6 vmtest.resolve6={0},hub \
             vmtest.ping6={0},hub vmtest.hold=300",
            others.join(",")
        );
        if *dhcp6 == "1" {
            actions.push_str(" vmtest.renew6=back6");
        }
        let spec = GuestSpec {
            mac,
            ssh_port: 10061 + i as u16,
            netdev: netdevs[*transport].clone(),
            actions,
            unprivileged: None,
        };
        let cmd = qemu(&ns, &spec);
        let log = dir.join(format!("{name}.console"));
        ns.spawn(cmd, &log);
        logs.push(log);
    }
    wait_round1(&logs, Duration::from_secs(180));
    eprintln!("round one after {:?}", t0.elapsed());

    let ctx = |i: usize| {
        format!(
            "guest {}:\n{}\nhub:\n{}",
            GUESTS[i].0,
            std::fs::read_to_string(&logs[i]).unwrap_or_default(),
            std::fs::read_to_string(&hub_log).unwrap_or_default()
        )
    };
    let hub6: Ipv6Addr = HUB6.parse().unwrap();
    let mut leased: Vec<Option<Ipv6Addr>> = vec![];
    for (i, (name, mac, ip, _, dhcp6)) in GUESTS.iter().enumerate() {
        let r = parse_console(&logs[i]);
        assert_eq!(
            r.dhcp.get("ip").map(String::as_str),
            Some(*ip),
            "IPv4 lease; {}",
            ctx(i)
        );
        // DHCPv6: the reservation, a pool address of the stateful range, or (info) no address.
        let got6: Option<Ipv6Addr> = match *dhcp6 {
            "1" => {
                let line = r.dhcp6.clone().unwrap_or_default();
                let a: Ipv6Addr = line
                    .strip_prefix("ip=")
                    .and_then(|a| a.parse().ok())
                    .unwrap_or_else(|| panic!("DHCPv6 address of {name}: {line:?}; {}", ctx(i)));
                if *name == "m6a" {
                    assert_eq!(a, RESERVED6.parse::<Ipv6Addr>().unwrap(), "{}", ctx(i));
                } else {
                    let (lo, hi): (Ipv6Addr, Ipv6Addr) =
                        ("1234:1::100".parse().unwrap(), "1234:1::1ff".parse().unwrap());
                    assert!((lo..=hi).contains(&a), "{a} not in the stateful pool; {}", ctx(i));
                }
                Some(a)
            }
            _ => {
                assert_eq!(
                    r.dhcp6.as_deref(),
                    Some("info"),
                    "INFORMATION-REQUEST of {name}; {}",
                    ctx(i)
                );
                None
            }
        };
        leased.push(got6);
        // The DNS server DHCPv6 gave: the hub's address in the first range.
        assert_eq!(
            vmtest_line(&r.console, "dhcp6dns").and_then(|a| a.parse::<Ipv6Addr>().ok()),
            Some(hub6),
            "DHCPv6 DNS server of {name}; {}",
            ctx(i)
        );
        // Exactly: the DHCPv6 address and SLAAC in the three autonomous prefixes, none in the stateful one.
        let mut want: BTreeSet<Ipv6Addr> = [[0x1234, 2, 0, 0], [0x1234, 3, 0, 0], [0x1234, 4, 0, 0]]
            .into_iter()
            .map(|p| slaac(p, mac))
            .collect();
        want.extend(got6);
        let have: BTreeSet<Ipv6Addr> = vmtest_line(&r.console, "addrs6")
            .unwrap_or_default()
            .split(',')
            .filter_map(|a| a.parse().ok())
            .collect();
        assert_eq!(have, want, "global IPv6 addresses of {name}; {}", ctx(i));
        assert_eq!(r.resolved6.get("hub").map(String::as_str), Some(HUB6), "{}", ctx(i));
        assert_eq!(
            r.pings6.get("hub"),
            Some(&true),
            "{name} pings the hub by name; {}",
            ctx(i)
        );
    }
    // Each resolves the DHCPv6 guests' names to their leased addresses and pings them.
    for (i, (name, ..)) in GUESTS.iter().enumerate() {
        let r = parse_console(&logs[i]);
        for (j, (other, ..)) in GUESTS.iter().enumerate().take(2) {
            if other == name {
                continue;
            }
            let want = leased[j].unwrap().to_string();
            assert_eq!(
                r.resolved6.get(*other),
                Some(&want),
                "{name} resolves {other} to AAAA; {}",
                ctx(i)
            );
            assert_eq!(r.pings6.get(*other), Some(&true), "{name} pings {other}; {}", ctx(i));
        }
    }

    // Both leases are on disk, in the journal (dnsmasq's lines after "add6 ")
    // or the file it was exported into (read in this order, so an export
    // running meanwhile hides nothing); the hub is then killed (SIGKILL:
    // nothing written at a stop).
    let disk: String = ["leases.journal", "leases.journal.old", "leases"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
        .collect::<Vec<_>>()
        .iter()
        .flat_map(|t| t.lines())
        .map(|l| format!("{}\n", l.strip_prefix("add6 ").unwrap_or(l)))
        .collect();
    assert!(
        disk.lines().any(|l| l == "duid 00:03:00:01:02:76:6d:00:03:01"),
        "{disk}"
    );
    let v6 = v6_leases(&disk);
    for (j, (name, mac, ..)) in GUESTS.iter().enumerate().take(2) {
        let duid = format!("00:03:00:01:{mac}");
        assert!(
            v6.iter()
                .any(|(_, a, n, d)| Some(*a) == leased[j] && n == name && *d == duid),
            "{name} {:?} {duid}: {disk}",
            leased[j]
        );
    }
    let _ = ns.child(hub).kill();
    let _ = ns.child(hub).wait();

    // The hub comes back on the same lease file, with a name the old one did not
    // have; the guests resolve it, then their udhcpc6 renews and keeps its address.
    let log2 = dir.join("hub2.log");
    let args = hub_args(
        &dir,
        &[
            "--host-record",
            &format!("hub,10.0.3.1,{HUB6}"),
            "--host-record",
            &format!("back6,10.0.3.1,{HUB6}"),
        ],
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmd = ns.cmd(env!("CARGO_BIN_EXE_vmlan"), &refs);
    let hub2 = start_hub_cmd(&mut ns, cmd, &log2);
    let start = Instant::now();
    for (j, (name, ..)) in GUESTS.iter().enumerate().take(2) {
        let renewed = loop {
            let console = std::fs::read_to_string(&logs[j]).unwrap_or_default();
            if let Some(r) = vmtest_line(&console, "renew6") {
                break r;
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "{name} did not renew within 180 s:\n{console}\nhub2:\n{}",
                std::fs::read_to_string(&log2).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        };
        assert_eq!(
            renewed,
            format!("ip={}", leased[j].unwrap()),
            "{name} renews its address with the restarted hub; hub2:\n{}",
            std::fs::read_to_string(&log2).unwrap_or_default()
        );
    }
    // The new hub answered those renewals (its report: 2 leases, a REPLY per request, none foreign).
    let pid = ns.child(hub2).id().to_string();
    run_ok(std::process::Command::new("kill").args(["-USR1", &pid]));
    assert!(wait_for_text(&log2, "dhcp6 leases", Duration::from_secs(10)));
    let log = std::fs::read_to_string(&log2).unwrap_or_default();
    let report = log.split("dhcp6 leases ").nth(1).unwrap_or_default();
    let n: Vec<u64> = report
        .split([' ', ','])
        .filter_map(|w| w.parse().ok())
        .take(4)
        .collect();
    // leases, in, out, malformed
    assert!(
        n.len() == 4 && n[0] == 2 && n[2] >= 2 && n[2] <= n[1] && n[3] == 0,
        "{report}\n{log}"
    );
    // A clean stop writes dnsmasq's file: the duid line, then both DHCPv6 leases (DUID-LL of the MAC).
    ns.stop(hub2);
    let file = std::fs::read_to_string(dir.join("leases")).unwrap();
    assert!(
        file.lines().any(|l| l == "duid 00:03:00:01:02:76:6d:00:03:01"),
        "{file}"
    );
    let v6 = v6_leases(&file);
    assert_eq!(v6.len(), 2, "{file}");
    for (j, (name, mac, ..)) in GUESTS.iter().enumerate().take(2) {
        let duid = format!("00:03:00:01:{mac}");
        assert!(
            v6.iter()
                .any(|(_, a, n, d)| Some(*a) == leased[j] && n == name && *d == duid),
            "{name} {:?} {duid}: {file}",
            leased[j]
        );
    }
    for l in [&hub_log, &log2] {
        let log = std::fs::read_to_string(l).unwrap_or_default();
        assert!(!log.contains("panicked"), "{log}");
    }
    eprintln!("IPv6 modes done in {:?}", t0.elapsed());
}
