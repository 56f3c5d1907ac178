//! End to end (issue 2): in a private network namespace, `vmlan hub` with the
//! Yomi/Salt command line and two real QEMU guests (busybox udhcpc, nslookup
//! and ping) on QEMU's `socket,mcast=` netdev, each with a SLIRP NIC too.
//! Checks: reserved IP, hostname, router, DNS server and domain by DHCP; each
//! guest resolves the other and `master.cluster`; they ping each other and the
//! hub; `dig @127.0.0.1 -p 5353 master` answers; leases survive a hub restart.
//! A third guest without a reservation gets a pool address and the name it
//! sends in option 12 (`scratch`) resolves, in the guests and on the host.

mod common;

use std::time::Duration;

use common::*;

const HUB_ARGS: &[&str] = &[
    "hub",
    "--mcast",
    "230.0.0.1:1234",
    "--addr",
    "10.0.3.1/24",
    "--dhcp-range",
    "10.0.3.100,10.0.3.200",
    "--dhcp-option",
    "option:router,10.0.3.101",
    "--dhcp-host",
    "00:00:00:11:11:11,10.0.3.101,master",
    "--dhcp-host",
    "00:00:00:22:22:22,10.0.3.102,worker1",
    "--host-record",
    "master,10.0.3.101",
    "--domain",
    "cluster",
    "--dns-listen",
    "127.0.0.1:5353",
    // No upstream: the test's namespace has none, and nothing may leave it.
    "--no-resolv",
];

fn start_hub(ns: &mut Netns, dir: &std::path::Path, log: &str) -> usize {
    let leases = dir.join("leases");
    let mut args: Vec<&str> = HUB_ARGS.to_vec();
    let lf = leases.to_str().unwrap();
    args.extend(["--leasefile", lf]);
    let cmd = ns.cmd(env!("CARGO_BIN_EXE_vmlan"), &args);
    start_hub_cmd(ns, cmd, &dir.join(log))
}

fn dig(ns: &Netns, args: &[&str]) -> String {
    let mut a = vec!["+short", "+time=2", "+tries=2", "@127.0.0.1", "-p", "5353"];
    a.extend_from_slice(args);
    let out = run_ok(&mut ns.cmd("dig", &a));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn two_guests_on_a_multicast_segment() {
    guest(); // build (or reuse) the test guest before the clock starts
    let dir = scratch("mcast");
    let mut ns = Netns::new("e2e-mcast");
    let hub = start_hub(&mut ns, &dir, "hub.log");

    let netdev = "socket,id=seg,mcast=230.0.0.1:1234,localaddr=127.0.0.1".to_string();
    // (name, MAC, ssh port, names to resolve, targets to ping)
    let guests = [
        (
            "master",
            "00:00:00:11:11:11",
            10022,
            "worker1,master.cluster,scratch.cluster",
            "worker1,10.0.3.1",
        ),
        (
            "worker1",
            "00:00:00:22:22:22",
            10023,
            "master,master.cluster",
            "master,10.0.3.1",
        ),
        (
            "scratch",
            "52:54:00:33:33:33",
            10024,
            "master,master.cluster",
            "master,10.0.3.1",
        ),
    ];
    let mut procs = vec![];
    for (name, mac, port, resolve, ping) in guests {
        let spec = GuestSpec {
            mac,
            ssh_port: port,
            netdev: netdev.clone(),
            actions: format!("vmtest.resolve={resolve} vmtest.ping={ping} vmtest.hold=20 vmtest.sendname={name}"),
            unprivileged: None,
        };
        let log = dir.join(format!("{name}.console"));
        procs.push((name, ns.spawn(qemu(&ns, &spec), &log), log));
    }
    for (name, i, _) in &procs {
        ns.wait(*i, Duration::from_secs(300), &format!("guest {name}"));
    }

    // While the hub still runs: the host side resolves through --dns-listen.
    assert_eq!(dig(&ns, &["master"]), "10.0.3.101");
    assert_eq!(dig(&ns, &["worker1.cluster"]), "10.0.3.102");
    assert_eq!(dig(&ns, &["-x", "10.0.3.102"]), "worker1.cluster.");
    assert_eq!(
        dig(&ns, &["scratch"]),
        "10.0.3.100",
        "the name a pool client sent in option 12"
    );

    for ((name, _, log), (_, mac, _, _, _)) in procs.iter().zip(guests) {
        let r = parse_console(log);
        let ctx = format!("guest {name} console:\n{}", r.console);
        assert!(r.done, "{ctx}");
        // (its address, its hostname by DHCP ("-": none, it has no reservation), a peer it resolves)
        let (ip, hostname, other, other_ip) = match *name {
            "master" => ("10.0.3.101", "master", "worker1", "10.0.3.102"),
            "worker1" => ("10.0.3.102", "worker1", "master", "10.0.3.101"),
            _ => ("10.0.3.100", "-", "master", "10.0.3.101"),
        };
        assert_eq!(r.dhcp.get("ip").map(String::as_str), Some(ip), "IP for {mac}; {ctx}");
        assert_eq!(r.dhcp.get("hostname").map(String::as_str), Some(hostname), "{ctx}");
        assert_eq!(r.dhcp.get("mask").map(String::as_str), Some("255.255.255.0"), "{ctx}");
        assert_eq!(r.dhcp.get("router").map(String::as_str), Some("10.0.3.101"), "{ctx}");
        assert_eq!(r.dhcp.get("dns").map(String::as_str), Some("10.0.3.1"), "{ctx}");
        assert_eq!(r.dhcp.get("domain").map(String::as_str), Some("cluster"), "{ctx}");
        assert_eq!(r.resolved.get(other).map(String::as_str), Some(other_ip), "{ctx}");
        assert_eq!(
            r.resolved.get("master.cluster").map(String::as_str),
            Some("10.0.3.101"),
            "{ctx}"
        );
        assert_eq!(r.pings.get(other), Some(&true), "{ctx}");
        assert_eq!(r.pings.get("10.0.3.1"), Some(&true), "{ctx}");
    }
    let master = parse_console(&procs[0].2);
    assert_eq!(
        master.resolved.get("scratch.cluster").map(String::as_str),
        Some("10.0.3.100"),
        "{}",
        master.console
    );
    let hub_log = std::fs::read_to_string(dir.join("hub.log")).unwrap();
    assert!(hub_log.matches("lease granted").count() >= 3, "{hub_log}");

    // Leases survive a restart of the hub, in dnsmasq's format.
    let leases = dir.join("leases");
    let check_leases = |when: &str| {
        let text = std::fs::read_to_string(&leases).unwrap();
        for want in [
            "00:00:00:11:11:11 10.0.3.101 master ",
            "00:00:00:22:22:22 10.0.3.102 worker1 ",
        ] {
            assert!(
                text.lines().any(|l| l.contains(want) && l.split(' ').count() == 5),
                "{when}: {want:?} missing in\n{text}"
            );
        }
    };
    ns.stop(hub);
    check_leases("after a clean stop");
    let _hub2 = start_hub(&mut ns, &dir, "hub2.log");
    check_leases("after the restart");
    let log2 = std::fs::read_to_string(dir.join("hub2.log")).unwrap();
    assert!(log2.contains("leases=3"), "{log2}");
    assert_eq!(dig(&ns, &["master.cluster"]), "10.0.3.101");
    // `vmlan leases` reads them too.
    let out = run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_vmlan"))
            .args(["leases", "--json", "--leasefile"])
            .arg(&leases),
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["scratch", "master", "worker1"], "sorted by address: {list}");
    assert_eq!(
        dig(&ns, &["scratch.cluster"]),
        "10.0.3.100",
        "lease names come back from the lease file"
    );
}
