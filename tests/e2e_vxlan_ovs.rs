//! End to end (issue 14): vmlan's VXLAN port (RFC 7348) interoperates with Open
//! vSwitch. Three network namespaces the test creates:
//!
//! - A: `vmlan hub` (host on, 10.0.3.1/24) with a busybox QEMU guest on a unix
//!   stream port and `--vxlan vni=42,local=10.99.0.1,peer=10.99.0.2`;
//! - O: Debian's Open vSwitch (openvswitch-switch, installed by tests/setup.sh),
//!   ovsdb-server and ovs-vswitchd started by the test in the foreground with their
//!   database, sockets and logs in the test's directory (the system's OVS, if any, is
//!   never touched), the userspace datapath (`datapath_type=netdev`: this kernel has
//!   no `openvswitch` module, CONFIG_OPENVSWITCH is not set). Bridge `br-phy` holds the
//!   underlay veth and the VTEP address 10.99.0.2 (OVS's native tunnelling routes and
//!   resolves the outer headers through it); bridge `br-int` holds a
//!   `type=vxlan options:remote_ip=10.99.0.1 options:key=42 options:dst_port=4789`
//!   port and a veth to namespace H;
//! - H: a plain host, 10.0.3.50/24 on that veth.
//!
//! The guest leases its reservation from the hub and pings H (ARP for H crosses the
//! VXLAN hop: the guest starts with an empty neighbour table); then H, its neighbour
//! table flushed, pings the guest and the hub and must have learned the guest's MAC by
//! ARP; OVS's MAC table must hold the guest's MAC on its vxlan port.
//!
//! The underlay veth end in A has transmit checksum offload off (`ethtool -K uA tx off`):
//! a UDP datagram sent on a veth carries a partial checksum (CHECKSUM_PARTIAL) that the
//! kernel never fills in, and OVS 3.1's userspace datapath, reading the frame with an
//! AF_PACKET socket, verifies the outer UDP checksum and drops it
//! (`datapath_drop_tunnel_pop_error`); on a real NIC the hardware fills it in.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const GUEST_MAC: &str = "00:00:00:10:00:41";
const GUEST_IP: &str = "10.0.3.11";
const HOST_H: &str = "10.0.3.50";
const VNI: &str = "42";

/// `ovs-vsctl` against the test's own database.
fn vsctl(ns: &Netns, dir: &Path, args: &[&str]) -> String {
    let db = format!("--db=unix:{}", dir.join("db.sock").display());
    let mut all = vec![db.as_str(), "--timeout=30"];
    all.extend_from_slice(args);
    let out = run_ok(&mut ovs_env(ns.cmd("ovs-vsctl", &all), dir));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ovs-appctl` against the test's own ovs-vswitchd.
fn appctl(ns: &Netns, dir: &Path, args: &[&str]) -> String {
    let ctl = dir.join("ovs-vswitchd.ctl");
    let mut all = vec!["-t", ctl.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = run_ok(&mut ovs_env(ns.cmd("ovs-appctl", &all), dir));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Points every OVS directory at the test's own, so nothing reads or writes the
/// system's (/var/run/openvswitch, /etc/openvswitch, /var/log/openvswitch).
fn ovs_env(mut cmd: Command, dir: &Path) -> Command {
    for var in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
        cmd.env(var, dir);
    }
    cmd
}

/// Starts ovsdb-server and ovs-vswitchd (foreground, children of the namespace, so
/// they are killed with it) and builds the two bridges.
fn start_ovs(ns: &mut Netns, dir: &Path) {
    let db = dir.join("conf.db");
    run_ok(
        Command::new("ovsdb-tool")
            .arg("create")
            .arg(&db)
            .arg("/usr/share/openvswitch/vswitch.ovsschema"),
    );
    let sock = dir.join("db.sock");
    let remote = format!("--remote=punix:{}", sock.display());
    let unixctl = format!("--unixctl={}", dir.join("ovsdb-server.ctl").display());
    let log = format!("--log-file={}", dir.join("ovsdb-server.log").display());
    let cmd = ovs_env(
        ns.cmd(
            "ovsdb-server",
            &[db.to_str().unwrap(), &remote, &unixctl, &log, "--no-chdir"],
        ),
        dir,
    );
    ns.spawn(cmd, &dir.join("ovsdb-server.out"));
    let start = Instant::now();
    while !sock.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "ovsdb-server did not start: {}",
            std::fs::read_to_string(dir.join("ovsdb-server.out")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    vsctl(ns, dir, &["--no-wait", "init"]);

    let db_remote = format!("unix:{}", sock.display());
    let unixctl = format!("--unixctl={}", dir.join("ovs-vswitchd.ctl").display());
    let log = format!("--log-file={}", dir.join("ovs-vswitchd.log").display());
    let cmd = ovs_env(ns.cmd("ovs-vswitchd", &[&db_remote, &unixctl, &log, "--no-chdir"]), dir);
    ns.spawn(cmd, &dir.join("ovs-vswitchd.out"));

    // The underlay: br-phy with the veth to A and the VTEP address on br-phy's own port.
    vsctl(
        ns,
        dir,
        &[
            "add-br",
            "br-phy",
            "--",
            "set",
            "bridge",
            "br-phy",
            "datapath_type=netdev",
        ],
    );
    vsctl(ns, dir, &["add-port", "br-phy", "uO"]);
    run_all(
        ns,
        &[
            &["ip", "addr", "add", "10.99.0.2/24", "dev", "br-phy"],
            &["ip", "link", "set", "br-phy", "up"],
        ],
    );
    // The overlay: br-int with the VXLAN port towards the hub and the veth to H.
    vsctl(
        ns,
        dir,
        &[
            "add-br",
            "br-int",
            "--",
            "set",
            "bridge",
            "br-int",
            "datapath_type=netdev",
        ],
    );
    let key = format!("options:key={VNI}");
    vsctl(
        ns,
        dir,
        &[
            "add-port",
            "br-int",
            "vx0",
            "--",
            "set",
            "interface",
            "vx0",
            "type=vxlan",
            "options:remote_ip=10.99.0.1",
            &key,
            "options:dst_port=4789",
        ],
    );
    vsctl(ns, dir, &["add-port", "br-int", "hO"]);
}

/// `ping -c 3` from `ns` to `target`, asserting success; `ctx` is shown on failure.
fn ping_ok(ns: &Netns, target: &str, ctx: &dyn Fn() -> String) {
    let out = ns
        .cmd("ping", &["-c", "3", "-i", "0.3", "-W", "3", target])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} cannot ping {target}: {}{}\n{}",
        ns.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        ctx()
    );
}

#[test]
fn guest_behind_vmlan_and_host_behind_open_vswitch_ping_over_vxlan() {
    let (dir, bin) = unprivileged_dir("vxovs");
    let mut a = Netns::new("vxovs-a");
    let mut o = Netns::new("vxovs-o");
    let h = Netns::new("vxovs-h");

    // Underlay veth A <-> O, and the veth O <-> H on the overlay.
    run_ok(Command::new("ip").args([
        "link", "add", "uA", "netns", &a.name, "type", "veth", "peer", "name", "uO", "netns", &o.name,
    ]));
    run_ok(Command::new("ip").args([
        "link", "add", "hO", "netns", &o.name, "type", "veth", "peer", "name", "hH", "netns", &h.name,
    ]));
    run_all(
        &a,
        &[
            &["ip", "addr", "add", "10.99.0.1/24", "dev", "uA"],
            &["ip", "link", "set", "uA", "up"],
            &["ethtool", "-K", "uA", "tx", "off"],
        ],
    );
    run_all(
        &o,
        &[&["ip", "link", "set", "uO", "up"], &["ip", "link", "set", "hO", "up"]],
    );
    run_all(
        &h,
        &[
            &["ip", "addr", "add", "10.0.3.50/24", "dev", "hH"],
            &["ip", "link", "set", "hH", "up"],
        ],
    );
    start_ovs(&mut o, &dir);

    // The hub in A, as `nobody`, its host on; the guest on a unix stream port.
    let mut args = lab_hub_args(&bin, &dir, &[("vx", GUEST_MAC, GUEST_IP.to_string())]);
    args.extend(["--stream".into(), format!("unix:{}", dir.join("hub.sock").display())]);
    args.extend(["--vxlan".into(), format!("vni={VNI},local=10.99.0.1,peer=10.99.0.2")]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmd = a.cmd("setpriv", &refs);
    let hub_log = dir.join("hub.log");
    start_hub_cmd(&mut a, cmd, &hub_log);

    let spec = GuestSpec {
        mac: GUEST_MAC,
        ssh_port: 10041,
        netdev: format!(
            "stream,id=seg,server=off,addr.type=unix,addr.path={}",
            dir.join("hub.sock").display()
        ),
        // Ping H across the VXLAN hop, then stay up for H's pings (killed at the end).
        actions: format!("vmtest.ping={HOST_H} vmtest.hold=300"),
        unprivileged: Some(&dir),
    };
    let console = dir.join("vx.console");
    let cmd = qemu(&a, &spec);
    a.spawn(cmd, &console);

    let ctx = || {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        format!(
            "guest:\n{}\nhub:\n{}\novs-vswitchd:\n{}\ndpctl/dump-flows:\n{}\ncoverage:\n{}",
            parse_console(&console).console,
            read("hub.log"),
            read("ovs-vswitchd.log"),
            ovs_env(
                o.cmd(
                    "ovs-appctl",
                    &["-t", dir.join("ovs-vswitchd.ctl").to_str().unwrap(), "dpctl/dump-flows"]
                ),
                &dir
            )
            .output()
            .map(|x| String::from_utf8_lossy(&x.stdout).into_owned())
            .unwrap_or_default(),
            ovs_env(
                o.cmd(
                    "ovs-appctl",
                    &["-t", dir.join("ovs-vswitchd.ctl").to_str().unwrap(), "coverage/show"]
                ),
                &dir
            )
            .output()
            .map(|x| String::from_utf8_lossy(&x.stdout).into_owned())
            .unwrap_or_default(),
        )
    };
    let start = Instant::now();
    while !parse_console(&console).round1 {
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "the guest did not finish round one within 240 s\n{}",
            ctx()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let r = parse_console(&console);
    assert_eq!(r.dhcp.get("ip").map(String::as_str), Some(GUEST_IP), "{}", ctx());
    assert_eq!(
        r.pings.get(HOST_H),
        Some(&true),
        "the guest pings H behind OVS\n{}",
        ctx()
    );

    // H resolves the guest by ARP itself (its neighbour table flushed first), and
    // reaches the guest and the hub's host.
    run_ok(&mut h.cmd("ip", &["neigh", "flush", "all"]));
    ping_ok(&h, GUEST_IP, &ctx);
    ping_ok(&h, "10.0.3.1", &ctx);
    let neigh = String::from_utf8_lossy(&run_ok(&mut h.cmd("ip", &["neigh", "show", GUEST_IP])).stdout).into_owned();
    assert!(
        neigh.contains(&format!("lladdr {GUEST_MAC}")),
        "H did not learn the guest's MAC by ARP: {neigh:?}"
    );

    // OVS learned the guest's MAC on its vxlan port (the vxlan port's OpenFlow number).
    let ofport = vsctl(&o, &dir, &["get", "interface", "vx0", "ofport"]);
    let fdb = appctl(&o, &dir, &["fdb/show", "br-int"]);
    assert!(
        fdb.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() >= 3 && w[0] == ofport.trim() && w[2] == GUEST_MAC
        }),
        "OVS's br-int did not learn {GUEST_MAC} on vx0 (ofport {}):\n{fdb}",
        ofport.trim()
    );
    drop(a);
    drop(o);
    let _ = std::fs::remove_dir_all(&dir);
}
