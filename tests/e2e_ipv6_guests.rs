//! Real QEMU guests on IPv6 (issue 12): one hub in a private network namespace,
//! run as `nobody` without capabilities, with `--enable-ra` and
//! `--dhcp-range 1234::100,1234::1ff,slaac,64,1h` (SLAAC and DHCPv6 both) and a
//! `--dhcp-host` reservation per guest, serving four
//! busybox guests on four transports (`socket,mcast=`, `stream` over a unix
//! socket, `socket,connect=` over TCP, and `--vhost-user` with the guest's
//! memory in a shared memfd). Each guest leases its IPv4 address with
//! `udhcpc`, and its kernel configures a SLAAC address from the hub's router
//! advertisement. Two guests' reservations are
//! `MAC,IPv4,[IPv6],NAME` with `[IPv6]` their SLAAC address (modified EUI-64
//! of their MACs), and they also run DHCPv6 (busybox `udhcpc6`, built by
//! tests/guest/udhcpc6.sh), which must lease them that reservation; the other two have no IPv6 reservation, one a
//! `MAC,IPv4,NAME` reservation, one `MAC,IPv4` and its name sent in DHCP
//! (`vmtest.sendname`): their AAAA records come only from what the hub sees
//! on the segment (SLAAC names, host/src/slaac_names.rs), and are checked
//! from the host side too (`dig` AAAA and `dig -x` at `--dns-listen`). Each
//! guest resolves the others' names and the hub's (`--host-record`) to AAAA (one
//! of them asking the hub's DNS server at its IPv6 address, the others at
//! 10.0.3.1) and pings them by name with `ping6`, and pings the hub's global
//! address.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// (name, MAC, reserved IPv4, the SLAAC address of the MAC in 1234::/64)
const GUESTS: [(&str, &str, &str, &str); 4] = [
    ("mc6", "00:00:00:30:00:01", "10.0.3.31", "1234::200:ff:fe30:1"),
    ("st6", "00:00:00:30:00:02", "10.0.3.32", "1234::200:ff:fe30:2"),
    ("tc6", "00:00:00:30:00:03", "10.0.3.33", "1234::200:ff:fe30:3"),
    ("vu6", "00:00:00:30:00:04", "10.0.3.34", "1234::200:ff:fe30:4"),
];
/// How each guest's name gets to its SLAAC address: a `[IPv6]` reservation
/// (mc6, st6), or observation only, under a DHCPv4 reservation's name (tc6) or
/// the name the guest sends in DHCP (vu6).
const HOW: [Named; 4] = [Named::Reserved6, Named::Reserved6, Named::Reserved4, Named::Sent];

#[derive(Clone, Copy, PartialEq)]
enum Named {
    Reserved6,
    Reserved4,
    Sent,
}
const VU: usize = 3;
/// The hub's global address in 1234::/64: the modified EUI-64 of its default MAC 02:76:6d:00:03:01.
const HUB6: &str = "1234::76:6dff:fe00:301";

#[test]
fn guests_on_four_transports_slaac_aaaa_and_ping6_by_name() {
    let t0 = Instant::now();
    guest();
    let (dir, bin) = unprivileged_dir("ipv6-guests");
    let mut ns = Netns::new("e2e-g6");

    let mut args: Vec<String> = AS_NOBODY.iter().map(|s| s.to_string()).collect();
    args.push(bin.display().to_string());
    for a in [
        "hub",
        "--addr",
        "10.0.3.1/24",
        "--domain",
        "lab",
        "--no-resolv",
        "--enable-ra",
        "--dhcp-range",
        "1234::100,1234::1ff,slaac,64,1h",
        "--host-record",
        &format!("hub,10.0.3.1,{HUB6}"),
        "--mcast",
        "230.0.0.1:1234",
        "--stream",
        "tcp:127.0.0.1:5556",
    ] {
        args.push(a.to_string());
    }
    args.extend(["--stream".into(), format!("unix:{}", dir.join("hub.sock").display())]);
    args.extend(["--vhost-user".into(), dir.join("vu6.vhost").display().to_string()]);
    args.extend(["--leasefile".into(), dir.join("leases").display().to_string()]);
    args.extend(["--dns-listen".into(), "127.0.0.1:5353".into()]);
    for (i, (name, mac, ip, ip6)) in GUESTS.into_iter().enumerate() {
        let host = match HOW[i] {
            Named::Reserved6 => format!("{mac},{ip},[{ip6}],{name}"),
            Named::Reserved4 => format!("{mac},{ip},{name}"),
            Named::Sent => format!("{mac},{ip}"),
        };
        args.extend(["--dhcp-host".into(), host]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let hub_log = dir.join("hub.log");
    let cmd = ns.cmd("setpriv", &refs);
    start_hub_cmd(&mut ns, cmd, &hub_log);

    let netdevs = [
        "socket,id=seg,mcast=230.0.0.1:1234,localaddr=127.0.0.1".to_string(),
        format!(
            "stream,id=seg,server=off,addr.type=unix,addr.path={},reconnect-ms=500",
            dir.join("hub.sock").display()
        ),
        "socket,id=seg,connect=127.0.0.1:5556".to_string(),
        "vhost-user,id=seg,chardev=vhu".to_string(),
    ];
    let mut logs = vec![];
    for (i, (name, mac, _, _)) in GUESTS.iter().enumerate() {
        let others: Vec<&str> = GUESTS.iter().map(|g| g.0).filter(|n| n != name).collect();
        // vmtest.hold: a guest done early stays up for the others' pings (the namespace kills it at the end).
        let mut actions = format!(
            "vmtest.slaac=1 vmtest.resolve6={0},hub vmtest.ping6={0},hub,{HUB6} vmtest.hold=120",
            others.join(",")
        );
        if HOW[i] == Named::Sent {
            actions.push_str(&format!(" vmtest.sendname={name}"));
        }
        if HOW[i] == Named::Reserved6 {
            // DHCPv6 too: the reservation is its SLAAC address, so it holds one address.
            actions.push_str(" vmtest.dhcp6=1");
        }
        if *name == "st6" {
            // This one asks the hub's DNS server at its global IPv6 address (over IPv6).
            actions.push_str(&format!(" vmtest.dns6={HUB6}"));
        }
        let spec = GuestSpec {
            mac,
            ssh_port: 10041 + i as u16,
            netdev: netdevs[i].clone(),
            actions,
            unprivileged: Some(&dir),
        };
        let mut cmd = qemu(&ns, &spec);
        if i == VU {
            // As tests/e2e_vhost_user.rs: the guest's memory in a shared memfd, QEMU the socket's client.
            let chardev = format!(
                "socket,id=vhu,path={},reconnect-ms=500",
                dir.join("vu6.vhost").display()
            );
            cmd.args([
                "-object",
                "memory-backend-memfd,id=mem,size=256M,share=on",
                "-numa",
                "node,memdev=mem",
                "-chardev",
                &chardev,
            ]);
        }
        let log = dir.join(format!("{name}.console"));
        ns.spawn(cmd, &log);
        logs.push(log);
    }
    wait_round1(&logs, Duration::from_secs(150));

    for (i, (name, mac, ip, ip6)) in GUESTS.iter().enumerate() {
        let r = parse_console(&logs[i]);
        let ctx = format!(
            "guest {name}:\n{}\nhub:\n{}",
            r.console,
            std::fs::read_to_string(&hub_log).unwrap_or_default()
        );
        assert_eq!(
            r.dhcp.get("ip").map(String::as_str),
            Some(*ip),
            "IPv4 lease of {mac}; {ctx}"
        );
        assert_eq!(r.slaac.as_deref(), Some(*ip6), "SLAAC address of {mac}; {ctx}");
        // The [IPv6]-reserved guests lease their reservation over DHCPv6; the others run none.
        let want6 = (HOW[i] == Named::Reserved6).then(|| format!("ip={ip6}"));
        assert_eq!(r.dhcp6, want6, "DHCPv6 of {mac}; {ctx}");
        for (other, _, _, other6) in GUESTS.iter().filter(|g| g.0 != *name) {
            assert_eq!(
                r.resolved6.get(*other).map(String::as_str),
                Some(*other6),
                "{name} resolves {other} to AAAA; {ctx}"
            );
            assert_eq!(
                r.pings6.get(*other),
                Some(&true),
                "{name} pings {other} over IPv6; {ctx}"
            );
        }
        assert_eq!(r.resolved6.get("hub").map(String::as_str), Some(HUB6), "{ctx}");
        assert_eq!(r.pings6.get("hub"), Some(&true), "{name} pings the hub by name; {ctx}");
        assert_eq!(r.pings6.get(HUB6), Some(&true), "{name} pings {HUB6}; {ctx}");
    }
    // The observed names from the host side: AAAA and the ip6.arpa PTR at --dns-listen.
    let hub = std::fs::read_to_string(&hub_log).unwrap_or_default();
    for (i, (name, _, _, ip6)) in GUESTS.iter().enumerate() {
        let fqdn = format!("{name}.lab");
        assert_eq!(
            dig(&ns, &["AAAA", &fqdn]),
            [ip6.to_string()],
            "dig AAAA {fqdn}; hub:\n{hub}"
        );
        assert_eq!(
            dig(&ns, &["-x", ip6]),
            [format!("{fqdn}.")],
            "dig -x {ip6}; hub:\n{hub}"
        );
        if HOW[i] != Named::Reserved6 {
            assert!(
                hub.lines()
                    .any(|l| l.contains("SLAAC address named") && l.contains(&format!("addr={ip6} "))),
                "the hub logs naming {ip6}:\n{hub}"
            );
        }
    }
    eprintln!("IPv6 guests done in {:?}", t0.elapsed());
}

/// `dig +short` at the hub's `--dns-listen` (127.0.0.1:5353) in `ns`: the answer lines.
fn dig(ns: &Netns, args: &[&str]) -> Vec<String> {
    let mut a = vec!["@127.0.0.1", "-p", "5353", "+time=3", "+tries=2", "+short"];
    a.extend_from_slice(args);
    let out = ns.cmd("dig", &a).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}
