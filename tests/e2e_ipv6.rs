//! The hub's host on IPv6 against real clients (issue 12): the hub runs with
//! `--tap` in a network namespace the test creates and `--enable-ra` with an
//! IPv6 `--dhcp-range`. `rdisc6` (ndisc6) on the tap solicits and prints the
//! router advertisement: its flags, router lifetime, prefix, MTU, RDNSS and
//! DNSSL are checked. The kernel on the tap side configures a SLAAC address
//! from the advertisement, resolves the hub's addresses with neighbour
//! discovery and pings both, link-local and global, with `ping -6`. With
//! `--dhcp-option 3` (no way out) and `slaac`, the advertisement has M and O
//! set and router lifetime 0. `dig` on the tap side asks the hub's global
//! and link-local addresses for AAAA over TCP (and UDP) on port 53.
//! Nothing leaves the namespace.

mod common;

use std::time::{Duration, Instant};

use common::*;

const TAP_MAC: &str = "02:00:00:00:66:66";
/// The hub's link-local address: fe80:: and the modified EUI-64 of 02:76:6d:00:03:01.
const HUB_LL: &str = "fe80::76:6dff:fe00:301";
const HUB_GLOBAL: &str = "1234::76:6dff:fe00:301";

/// `rdisc6` on vmtap0 in `ns`: its output, once it printed an advertisement (30 s at most).
fn rdisc6(ns: &Netns) -> String {
    let start = Instant::now();
    loop {
        let out = ns
            .cmd("rdisc6", &["-1", "-w", "2000", "-r", "3", "vmtap0"])
            .output()
            .expect("rdisc6 (apt-get install ndisc6; tests/setup.sh does)");
        let text = output_text(&out);
        if out.status.success() && text.contains("Router lifetime") {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no router advertisement:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The value on `key`'s line of rdisc6's output, trimmed.
fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find(|l| l.trim_start().starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim())
        .unwrap_or_else(|| panic!("no {key:?} in:\n{text}"))
}

/// Accept router advertisements on vmtap0 (the default with forwarding off; made sure of).
fn accept_ra(ns: &Netns) {
    run_ok(&mut ns.cmd("sysctl", &["-q", "-w", "net.ipv6.conf.vmtap0.accept_ra=1"]));
    run_ok(&mut ns.cmd("sysctl", &["-q", "-w", "net.ipv6.conf.vmtap0.autoconf=1"]));
}

/// Waits (30 s at most) for the kernel's SLAAC address in 1234::/64 on
/// vmtap0, with duplicate address detection done (not tentative).
fn wait_slaac(ns: &Netns) {
    let start = Instant::now();
    loop {
        let out = run_ok(&mut ns.cmd("ip", &["-6", "addr", "show", "dev", "vmtap0", "scope", "global"]));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.contains("inet6 1234::") && !text.contains("tentative") {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no SLAAC address:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn rdisc6_reads_the_ra_and_the_kernel_pings_the_hub_over_slaac() {
    let dir = scratch("ipv6-ra-only");
    let mut ns = Netns::new("e2e-ipv6");
    tap(&ns, "vmtap0", Some(TAP_MAC), None);
    accept_ra(&ns);
    let cmd = ns.cmd(
        env!("CARGO_BIN_EXE_vmlan"),
        &[
            "hub",
            "--tap",
            "vmtap0",
            "--no-resolv",
            "--addr",
            "10.0.3.1/24",
            "--enable-ra",
            "--dhcp-range",
            "1234::,ra-only",
            "--domain",
            "cluster",
            "--dhcp-option",
            "option:mtu,1400",
        ],
    );
    let hub = start_hub_cmd(&mut ns, cmd, &dir.join("hub.log"));

    let ra = rdisc6(&ns);
    assert_eq!(field(&ra, "Stateful address conf."), "No", "{ra}");
    assert_eq!(field(&ra, "Stateful other conf."), "No", "{ra}");
    assert!(field(&ra, "Router lifetime").starts_with("1800 "), "{ra}");
    assert_eq!(field(&ra, "Prefix"), "1234::/64", "{ra}");
    assert_eq!(field(&ra, "Autonomous address conf."), "Yes", "{ra}");
    assert_eq!(field(&ra, "On-link"), "Yes", "{ra}");
    assert!(field(&ra, "MTU").starts_with("1400 bytes"), "{ra}");
    assert_eq!(field(&ra, "Recursive DNS server"), HUB_LL, "{ra}");
    assert!(field(&ra, "DNS search list").starts_with("cluster"), "{ra}");
    assert!(ra.contains(&format!("from {HUB_LL}")), "{ra}");

    wait_slaac(&ns);
    let out = run_ok(&mut ns.cmd("ip", &["-6", "route", "show", "default"]));
    let routes = String::from_utf8_lossy(&out.stdout);
    assert!(
        routes.contains(&format!("via {HUB_LL}")),
        "the hub is the default router: {routes}"
    );
    let ll = format!("{HUB_LL}%vmtap0");
    for to in [ll.as_str(), HUB_GLOBAL] {
        let out = ns.cmd("ping", &["-6", "-c", "2", "-W", "3", to]).output().unwrap();
        assert!(out.status.success(), "ping -6 {to}: {}", output_text(&out));
    }
    ns.stop(hub);
    let log = std::fs::read_to_string(dir.join("hub.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn rdisc6_sees_slaac_flags_and_no_default_route_without_a_way_out() {
    let dir = scratch("ipv6-no-router");
    let mut ns = Netns::new("e2e-ipv6-norouter");
    tap(&ns, "vmtap0", Some(TAP_MAC), None);
    accept_ra(&ns);
    let cmd = ns.cmd(
        env!("CARGO_BIN_EXE_vmlan"),
        &[
            "hub",
            "--tap",
            "vmtap0",
            "--no-resolv",
            "--addr",
            "10.0.3.1/24",
            "--enable-ra",
            "--dhcp-range",
            "1234::2,1234::500,slaac,64,12h",
            "--dhcp-option",
            "3",
        ],
    );
    let hub = start_hub_cmd(&mut ns, cmd, &dir.join("hub.log"));
    let ra = rdisc6(&ns);
    assert_eq!(field(&ra, "Stateful address conf."), "Yes", "{ra}");
    assert_eq!(field(&ra, "Stateful other conf."), "Yes", "{ra}");
    assert!(field(&ra, "Router lifetime").starts_with("0 "), "{ra}");
    assert!(field(&ra, "Valid time").starts_with("43200 "), "{ra}");
    assert!(field(&ra, "MTU").starts_with("1500 bytes"), "{ra}");
    assert!(!ra.contains("DNS search list"), "no --domain, no DNSSL: {ra}");
    // The kernel took the prefix (A=1), but no default route through the hub.
    wait_slaac(&ns);
    let out = run_ok(&mut ns.cmd("ip", &["-6", "route", "show", "default"]));
    assert!(out.stdout.is_empty(), "{}", output_text(&out));
    ns.stop(hub);
}

/// `dig +short` at `server` for `args`, over TCP when `tcp`: its output lines.
fn dig6(ns: &Netns, server: &str, tcp: bool, args: &[&str]) -> Vec<String> {
    let at = format!("@{server}");
    let mut a = vec![at.as_str(), "+short", "+time=3", "+tries=2"];
    if tcp {
        a.push("+tcp");
    }
    a.extend_from_slice(args);
    let out = ns.cmd("dig", &a).output().unwrap();
    assert!(out.status.success(), "dig {a:?}: {}", output_text(&out));
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

#[test]
fn dig_over_tcp_at_the_hubs_ipv6_addresses() {
    let dir = scratch("ipv6-dns-tcp");
    let mut ns = Netns::new("e2e-ipv6-dnstcp");
    // No duplicate address detection in this namespace: addresses usable at once.
    run_ok(&mut ns.cmd("sysctl", &["-q", "-w", "net.ipv6.conf.default.accept_dad=0"]));
    tap(&ns, "vmtap0", Some(TAP_MAC), None);
    run_ok(&mut ns.cmd("ip", &["addr", "add", "1234::66/64", "dev", "vmtap0", "nodad"]));
    let cmd = ns.cmd(
        env!("CARGO_BIN_EXE_vmlan"),
        &[
            "hub",
            "--tap",
            "vmtap0",
            "--no-resolv",
            "--addr",
            "10.0.3.1/24",
            "--dhcp-range",
            "1234::,ra-only",
            "--domain",
            "cluster",
            "--host-record",
            "master,10.0.3.101,fd00::101",
        ],
    );
    let hub = start_hub_cmd(&mut ns, cmd, &dir.join("hub.log"));
    let ll = format!("{HUB_LL}%vmtap0");
    for server in [HUB_GLOBAL, ll.as_str()] {
        for tcp in [true, false] {
            assert_eq!(
                dig6(&ns, server, tcp, &["AAAA", "master.cluster"]),
                vec!["fd00::101"],
                "{server} tcp {tcp}"
            );
        }
        assert_eq!(dig6(&ns, server, true, &["A", "master.cluster"]), vec!["10.0.3.101"]);
    }
    ns.stop(hub);
    let log = std::fs::read_to_string(dir.join("hub.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}
