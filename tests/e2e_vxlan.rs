//! End to end (issue 14): one segment stretched over VXLAN (RFC 7348) between
//! network namespaces joined by a veth pair (10.99.0.1/24 and 10.99.0.2/24),
//! with real busybox QEMU guests under TCG. Nothing leaves the namespaces the
//! test creates; no multicast is used.
//!
//! 1. Two hubs, A (the authority: host on, DHCP range and reservations,
//!    domain `lab`) and B (`--no-host`, a pure switch), each with one guest on
//!    a unix stream socket, joined by `--vxlan`: both guests lease from A,
//!    resolve each other's names and ping each other and A's host across the
//!    VXLAN hop. A packet of another VNI (sent by python3 from B's namespace)
//!    is counted by A (`foreign_vni 1`) and its inner MAC is never learned.
//! 2. Interop with the Linux kernel: in namespace B a kernel `vxlan` device
//!    (`id 42 dstport 4789`) in a bridge with a veth to namespace C, a plain
//!    host at 10.0.3.50; the hub in A with its host on and one guest. The
//!    guest pings C and C pings the guest and the hub (ARP across both ways),
//!    and the kernel's FDB (`bridge fdb show dev vx0`) holds the guest's MAC at
//!    `dst 10.99.0.1`.
//! 3. The opt-in multicast group, with the kernel: hub A with `group=239.1.1.1,
//!    dev=vethA` and no peer, the kernel's `vxlan` device in B with `group
//!    239.1.1.1 dev vethB` and an address: B pings A's host (its ARP request
//!    reaches the hub through the group), and the hub's router advertisement
//!    (multicast, so replicated to the group) gives B's device its SLAAC address
//!    and the inner MTU (1450). The group lives on the veth between the test's
//!    own namespaces.
//!
//! The hubs and QEMU run as `nobody` with no capabilities; root only makes the
//! namespaces, the veths and the kernel's devices.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// Joins `a` and `b` by the veth pair vethA (10.99.0.1/24) - vethB (10.99.0.2/24).
fn underlay(a: &Netns, b: &Netns) {
    run_ok(&mut a.cmd(
        "ip",
        &[
            "link", "add", "vethA", "type", "veth", "peer", "name", "vethB", "netns", &b.name,
        ],
    ));
    run_all(
        a,
        &[
            &["ip", "addr", "add", "10.99.0.1/24", "dev", "vethA"],
            &["ip", "link", "set", "vethA", "up"],
        ],
    );
    run_all(
        b,
        &[
            &["ip", "addr", "add", "10.99.0.2/24", "dev", "vethB"],
            &["ip", "link", "set", "vethB", "up"],
        ],
    );
}

/// Starts `bin hub ARGS` as nobody in `ns`, logging to `dir/log`.
fn hub(ns: &mut Netns, bin: &Path, dir: &Path, log: &str, args: &[String]) -> PathBuf {
    let mut all: Vec<String> = AS_NOBODY.iter().map(|s| s.to_string()).collect();
    all.push(bin.display().to_string());
    all.push("hub".into());
    all.extend(args.iter().cloned());
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let cmd = ns.cmd("setpriv", &refs);
    let log = dir.join(log);
    start_hub_cmd(ns, cmd, &log);
    log
}

/// Boots a busybox guest in `ns` on the stream socket `sock`.
fn boot(ns: &mut Netns, dir: &Path, name: &str, mac: &str, ssh_port: u16, sock: &Path, actions: String) -> PathBuf {
    let spec = GuestSpec {
        mac,
        ssh_port,
        netdev: format!(
            "stream,id=seg,server=off,addr.type=unix,addr.path={},reconnect-ms=500",
            sock.display()
        ),
        actions,
        unprivileged: Some(dir),
    };
    let log = dir.join(format!("{name}.console"));
    let cmd = qemu(ns, &spec);
    ns.spawn(cmd, &log);
    log
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn two_hubs_one_authority_over_vxlan() {
    guest();
    let (dir, bin) = unprivileged_dir("vxlan2");
    let mut a = Netns::new("vxa");
    let mut b = Netns::new("vxb");
    underlay(&a, &b);
    let guests = [
        ("ga", "00:00:00:14:00:01", "10.0.3.11".to_string()),
        ("gb", "00:00:00:14:00:02", "10.0.3.12".to_string()),
    ];
    let (sock_a, sock_b) = (dir.join("a.sock"), dir.join("b.sock"));
    let mut args_a = strings(&[
        "--addr",
        "10.0.3.1/24",
        "--domain",
        "lab",
        "--no-resolv",
        "--dhcp-range",
        "10.0.3.100,10.0.3.200",
        "--stats",
        "1",
        "--vxlan",
        "vni=42,local=10.99.0.1,peer=10.99.0.2",
    ]);
    for (name, mac, ip) in &guests {
        args_a.extend(["--dhcp-host".into(), format!("{mac},{ip},{name}")]);
    }
    args_a.extend(["--stream".into(), format!("unix:{}", sock_a.display())]);
    let log_a = hub(&mut a, &bin, &dir, "hub-a.log", &args_a);
    let mut args_b = strings(&[
        "--no-host",
        "--no-resolv",
        "--vxlan",
        "vni=42,local=10.99.0.2,peer=10.99.0.1",
    ]);
    args_b.extend(["--stream".into(), format!("unix:{}", sock_b.display())]);
    let log_b = hub(&mut b, &bin, &dir, "hub-b.log", &args_b);

    let names = ["ga", "gb"];
    let la = boot(
        &mut a,
        &dir,
        "ga",
        guests[0].1,
        10141,
        &sock_a,
        round1_actions(&names, "ga") + " vmtest.hold=60",
    );
    let lb = boot(
        &mut b,
        &dir,
        "gb",
        guests[1].1,
        10142,
        &sock_b,
        round1_actions(&names, "gb") + " vmtest.hold=60",
    );
    let logs = [la, lb];
    wait_round1(&logs, Duration::from_secs(180));
    check_round1(&guests, &logs, &log_a);
    let hub_b = std::fs::read_to_string(&log_b).unwrap();
    assert!(hub_b.contains("host=false"), "hub B runs without its host:\n{hub_b}");

    // A VXLAN packet of VNI 43 from B's address to A's port: counted, never switched.
    let script = "import socket\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        s.bind(('10.99.0.2', 0))\n\
        inner = b'\\xff' * 6 + bytes([2, 0, 0, 0, 0, 0xee]) + b'\\x08\\x06' + bytes(46)\n\
        s.sendto(bytes([8, 0, 0, 0, 0, 0, 43, 0]) + inner, ('10.99.0.1', 4789))\n";
    run_ok(&mut b.cmd("python3", &["-c", script]));
    assert!(
        wait_for_text(&log_a, "foreign_vni 1 ", Duration::from_secs(10)),
        "hub A did not count the foreign-VNI packet:\n{}",
        std::fs::read_to_string(&log_a).unwrap_or_default()
    );
    // Two more stats reports after the count: the MAC was never learned.
    std::thread::sleep(Duration::from_millis(2500));
    let text = std::fs::read_to_string(&log_a).unwrap();
    assert!(
        !text.contains("02:00:00:00:00:ee"),
        "a foreign-VNI frame was switched:\n{text}"
    );
}

#[test]
fn interop_with_the_linux_kernel_vxlan_and_bridge() {
    guest();
    let (dir, bin) = unprivileged_dir("vxlank");
    let mut a = Netns::new("vxka");
    let b = Netns::new("vxkb");
    let c = Netns::new("vxkc");
    underlay(&a, &b);
    run_ok(&mut b.cmd(
        "ip",
        &[
            "link", "add", "vethBC", "type", "veth", "peer", "name", "vethC", "netns", &c.name,
        ],
    ));
    run_all(
        &b,
        &[
            &[
                "ip",
                "link",
                "add",
                "vx0",
                "type",
                "vxlan",
                "id",
                "42",
                "dstport",
                "4789",
                "local",
                "10.99.0.2",
                "remote",
                "10.99.0.1",
                "dev",
                "vethB",
            ],
            &["ip", "link", "add", "br0", "type", "bridge"],
            &["ip", "link", "set", "vx0", "master", "br0"],
            &["ip", "link", "set", "vethBC", "master", "br0"],
            &["ip", "link", "set", "vx0", "up"],
            &["ip", "link", "set", "vethBC", "up"],
            &["ip", "link", "set", "br0", "up"],
        ],
    );
    run_all(
        &c,
        &[
            &["ip", "addr", "add", "10.0.3.50/24", "dev", "vethC"],
            &["ip", "link", "set", "vethC", "up"],
        ],
    );

    let mac = "00:00:00:14:00:03";
    let sock = dir.join("a.sock");
    let mut args = strings(&[
        "--addr",
        "10.0.3.1/24",
        "--domain",
        "lab",
        "--no-resolv",
        "--dhcp-range",
        "10.0.3.100,10.0.3.200",
        "--dhcp-host",
        "00:00:00:14:00:03,10.0.3.11,ga",
        "--vxlan",
        "vni=42,local=10.99.0.1,peer=10.99.0.2",
    ]);
    args.extend(["--stream".into(), format!("unix:{}", sock.display())]);
    let log_a = hub(&mut a, &bin, &dir, "hub.log", &args);
    let log = boot(
        &mut a,
        &dir,
        "ga",
        mac,
        10143,
        &sock,
        "vmtest.ping=10.0.3.50,10.0.3.1 vmtest.hold=90".into(),
    );
    wait_round1(std::slice::from_ref(&log), Duration::from_secs(180));
    let r = parse_console(&log);
    let ctx = || {
        format!(
            "guest:\n{}\nhub:\n{}",
            parse_console(&log).console,
            std::fs::read_to_string(&log_a).unwrap_or_default()
        )
    };
    assert_eq!(r.dhcp.get("ip").map(String::as_str), Some("10.0.3.11"), "{}", ctx());
    assert_eq!(r.pings.get("10.0.3.50"), Some(&true), "the guest pings C; {}", ctx());
    assert_eq!(r.pings.get("10.0.3.1"), Some(&true), "{}", ctx());

    // C reaches the guest and the hub's host (ARP from C's side this time).
    run_ok(&mut c.cmd("ip", &["neigh", "flush", "dev", "vethC"]));
    for target in ["10.0.3.11", "10.0.3.1"] {
        let start = Instant::now();
        let ok = loop {
            let out = c.cmd("ping", &["-c", "1", "-W", "2", target]).output().unwrap();
            if out.status.success() {
                break true;
            }
            if start.elapsed() > Duration::from_secs(20) {
                break false;
            }
        };
        assert!(ok, "C cannot ping {target}; {}", ctx());
    }
    let fdb = run_ok(&mut b.cmd("bridge", &["fdb", "show", "dev", "vx0"]));
    let fdb = output_text(&fdb);
    assert!(
        fdb.lines().any(|l| l.starts_with(mac) && l.contains("dst 10.99.0.1")),
        "the kernel did not learn the guest's MAC at the hub:\n{fdb}"
    );
}

#[test]
fn multicast_group_with_the_linux_kernel() {
    let (dir, bin) = unprivileged_dir("vxlanm");
    let mut a = Netns::new("vxma");
    let b = Netns::new("vxmb");
    underlay(&a, &b);
    run_all(
        &b,
        &[
            &[
                "ip",
                "link",
                "add",
                "vx0",
                "type",
                "vxlan",
                "id",
                "42",
                "dstport",
                "4789",
                "local",
                "10.99.0.2",
                "group",
                "239.1.1.1",
                "dev",
                "vethB",
            ],
            &["ip", "addr", "add", "10.0.3.50/24", "dev", "vx0"],
            &["ip", "link", "set", "vx0", "up"],
        ],
    );
    let args = strings(&[
        "--addr",
        "10.0.3.1/24",
        "--no-resolv",
        "--enable-ra",
        "--dhcp-range",
        "fd00::,ra-only",
        "--stats",
        "1",
        "--vxlan",
        "vni=42,local=10.99.0.1,group=239.1.1.1,dev=vethA",
    ]);
    let log = hub(&mut a, &bin, &dir, "hub.log", &args);
    let ctx = || std::fs::read_to_string(&log).unwrap_or_default();
    // B to the hub: ARP through the group, the answers unicast to the learned VTEP.
    let out = b
        .cmd("ping", &["-c", "3", "-i", "0.3", "-W", "2", "10.0.3.1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "B cannot ping the hub: {}\n{}",
        output_text(&out),
        ctx()
    );
    // The hub's RAs (at start, then 16 s apart) go to the group only: B's device takes
    // an address in fd00::/64 and the advertised MTU.
    let start = Instant::now();
    let mut addrs = String::new();
    while start.elapsed() < Duration::from_secs(40) {
        addrs = output_text(&run_ok(&mut b.cmd("ip", &["-6", "addr", "show", "dev", "vx0"])));
        if addrs.contains("inet6 fd00::") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        addrs.contains("inet6 fd00::"),
        "no SLAAC address from the hub's RA via the group:\n{addrs}\n{}",
        ctx()
    );
    let mtu = output_text(&run_ok(&mut b.cmd("sysctl", &["-n", "net.ipv6.conf.vx0.mtu"])));
    assert_eq!(mtu.trim(), "1450", "the RA's MTU option");
    // The hub flooded (the RA) with no peer configured: to the group.
    std::thread::sleep(Duration::from_millis(1500));
    let flooded = ctx()
        .lines()
        .filter_map(|l| l.split(" flooded ").nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .max();
    assert!(flooded.is_some_and(|n| n > 0), "no flood counted:\n{}", ctx());
}
