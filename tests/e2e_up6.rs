//! End to end (issue 12, the launcher): a dual-stack `vmlan up` of 3 nodes in a
//! private network namespace, test guests booted directly (TCG), `stream`
//! transport. The network has `ipv6 = "fd00:10::/64"` (mode `slaac`, the
//! default) and `ipv6_alias`. `master` has no `ipv6`: its address is its MAC's
//! EUI-64 one, which its kernel takes by SLAAC from the hub's router
//! advertisements;
//! `worker1`, `worker2` have the xcluster-style template `fd00:10::1:{ipv4}`,
//! set statically by the guest (`vmtest.addr6={ipv6}/64` in `append`).
//! Checks: `vmlan status --json` shows each node's IPv6 address and the hub's;
//! master's SLAAC address is the one status (and the hub's DNS) gives it; every
//! node resolves every other node's name, and `ip6-master`, over AAAA to the
//! addresses status shows, and pings them over IPv6; the host resolves the
//! names (AAAA, and the ip6.arpa PTR) through the hub's `dns_listen`; `vmlan
//! leases --json` lists the DHCPv6 lease ISC `dhclient -6` gets from the
//! pool on a tap the hub bridges in (family ipv6, its address, the MAC from its
//! DUID); the ssh config names the IPv6 addresses; `down --purge` leaves no
//! process.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const NODES: [&str; 3] = ["master", "worker1", "worker2"];
/// The tap in the test's namespace that the hub bridges to the segment.
const TAP: &str = "up6tap";
/// The tap's MAC (no node's): its DHCPv6 client gets a pool address.
const TAP_MAC: &str = "02:00:00:00:66:01";

fn cluster_file(kernel: &Path, initrd: &Path) -> String {
    let common = "console=ttyS0 quiet panic=-1 no_timer_check vmtest.mac={mac} vmtest.slirp={slirp_mac} \
                  vmtest.resolve6=master,worker1,worker2,ip6-master vmtest.ping6=master,worker1,worker2 vmtest.hold=3600";
    format!(
        r#"
[cluster]
name = "six"
[network]
subnet = "10.0.3.0/24"
address = "10.0.3.1"
domain = "cluster"
dhcp_range = "10.0.3.100,10.0.3.200"
dns_listen = "127.0.0.1:5353"
no_resolv = true          # the namespace has no upstream, and nothing may leave it
hub_args = ["--tap", "{TAP}"]   # the namespace's own DHCPv6 client joins the segment here
ipv6 = "fd00:10::/64"
ipv6_alias = true
[defaults]
memory = "256M"
cpus = 1
accel = "tcg"
kernel = "{kernel}"
initrd = "{initrd}"
[[node]]
name = "master"
mac = "00:00:00:11:11:11"
ip = "10.0.3.101"
append = "{common} vmtest.slaac=1"
[[node]]
name = "worker"
count = 2
ipv6 = "fd00:10::1:{{ipv4}}"
append = "{common} vmtest.addr6={{ipv6}}/64"
"#,
        kernel = kernel.display(),
        initrd = initrd.display(),
        TAP = TAP,
    )
}

/// `dig +short` of `args` at the hub's dns_listen, in the namespace.
fn dig(ns: &Netns, args: &[&str]) -> String {
    let mut a = vec!["+short", "+time=2", "+tries=2", "@127.0.0.1", "-p", "5353"];
    a.extend_from_slice(args);
    let o = ns.cmd("dig", &a).output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn dual_stack_up_nodes_ping_each_other_over_ipv6_by_name() {
    let (kernel, initrd) = guest();
    let dir = scratch("up6");
    let mut ns = Netns::new("e2e-up6");
    std::fs::write(dir.join("cluster.toml"), cluster_file(&kernel, &initrd)).unwrap();
    // The tap the hub bridges (`hub_args`), without DAD so dhclient -6 can use
    // its link-local address at once.
    run_ok(&mut ns.cmd("sysctl", &["-q", "-w", "net.ipv6.conf.default.accept_dad=0"]));
    tap(&ns, TAP, Some(TAP_MAC), None);
    let state = dir.join(".vmlan/six");

    // ---- up: the hub line is dual-stack ----
    let o = vmlan_in(&ns, &dir, &["up", "cluster.toml", "--check"]);
    let plan = output_text(&o);
    assert!(o.status.success(), "{plan}");
    assert!(
        plan.contains("--dhcp-range fd00:10::1000,fd00:10::1fff,slaac,64 --enable-ra"),
        "{plan}"
    );
    let o = vmlan_in(&ns, &dir, &["up", "cluster.toml", "--timeout", "240", "--no-wait-ssh"]);
    let out = output_text(&o);
    assert!(o.status.success(), "vmlan up: {out}");
    assert!(out.contains("IPV6"), "up's table has an IPv6 column: {out}");

    // ---- status --json: each node's IPv6 ----
    let s = vmlan_status(&ns, &dir);
    assert_eq!(s["hubs"][0]["address6"], "fd00:10::76:6dff:fe00:301", "{s}");
    let mut v6 = std::collections::HashMap::new();
    for (i, node) in NODES.iter().enumerate() {
        let n = &s["nodes"][i];
        assert_eq!(n["name"], *node, "{s}");
        assert_eq!(n["state"], "running", "{s}");
        let a = n["ipv6"].as_str().unwrap_or_else(|| panic!("{node} has no ipv6: {s}"));
        assert_eq!(n["nics"][0]["ipv6"], a, "{s}");
        v6.insert(node.to_string(), a.to_string());
    }
    // master: the EUI-64 address of 00:00:00:11:11:11; the workers: the template
    // with their pool IPv4 address.
    assert_eq!(v6["master"], "fd00:10::200:ff:fe11:1111", "{s}");
    for (i, node) in NODES.iter().enumerate().skip(1) {
        let v4: std::net::Ipv4Addr = s["nodes"][i]["ip"].as_str().unwrap().parse().unwrap();
        let want: std::net::Ipv6Addr = format!("fd00:10::1:{v4}").parse().unwrap();
        assert_eq!(v6[*node], want.to_string(), "{node}: {s}");
    }

    // ---- in the guests: SLAAC, static, AAAA by name, ping6 ----
    for node in NODES {
        let log = state.join(format!("{node}.log"));
        assert!(
            wait_for_text(&log, "VMTEST round1", Duration::from_secs(180)),
            "{node} did not finish: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let r = parse_console(&log);
        if node == "master" {
            assert_eq!(r.slaac.as_deref(), Some(v6["master"].as_str()), "{}", r.console);
        } else {
            assert!(
                r.console.contains(&format!("VMTEST addr6 {}/64 ok", v6[node])),
                "{node}: {}",
                r.console
            );
        }
        for other in NODES {
            assert_eq!(
                r.resolved6.get(other),
                Some(&v6[other]),
                "{node} resolves {other}: {}",
                r.console
            );
            assert_eq!(r.pings6.get(other), Some(&true), "{node} ping6s {other}: {}", r.console);
        }
        assert_eq!(r.resolved6.get("ip6-master"), Some(&v6["master"]), "{}", r.console);
    }

    // ---- the host resolves them through the hub ----
    assert_eq!(dig(&ns, &["AAAA", "worker2.cluster"]), v6["worker2"]);
    assert_eq!(dig(&ns, &["AAAA", "ip6-worker1"]), v6["worker1"]);
    assert_eq!(dig(&ns, &["-x", &v6["worker1"]]), "worker1.cluster.");

    // ---- leases --json: a DHCPv6 lease (ISC dhclient -6 on the tap, from the pool) ----
    let out6 = dir.join("dhclient6.out");
    let script = dhcp_recorder(&dir, &out6);
    let client = ns.cmd(
        "dhclient",
        &[
            "-6",
            "-1",
            "-d",
            "-sf",
            script.to_str().unwrap(),
            "-lf",
            dir.join("dhclient6.leases").to_str().unwrap(),
            "-pf",
            dir.join("dhclient6.pid").to_str().unwrap(),
            TAP,
        ],
    );
    let c = ns.spawn(client, &dir.join("dhclient6.log"));
    let leased: std::net::Ipv6Addr = wait_dhcp_record(&out6, "BOUND6", Duration::from_secs(60))["new_ip6_address"]
        .parse()
        .unwrap();
    ns.stop(c);
    let seg = (u128::from(leased) >> 64) as u64;
    let host = u128::from(leased) as u64;
    assert_eq!(seg, 0xfd00_0010_0000_0000, "{leased} is not in the prefix");
    assert!((0x1000..=0x1fff).contains(&host), "{leased} is not from the pool");
    let lf = state.join("hub-lan.leases");
    let o = vmlan_in(&ns, &dir, &["leases", "--leasefile", lf.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", output_text(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.iter().filter(|r| r["family"] == "ipv4").count(), 3, "{rows:?}");
    let l6: Vec<_> = rows.iter().filter(|r| r["family"] == "ipv6").collect();
    assert_eq!(l6.len(), 1, "{rows:?}");
    assert_eq!(l6[0]["ip"], leased.to_string());
    assert_eq!(
        l6[0]["mac"], TAP_MAC,
        "dhclient's DUID-LLT carries the tap's MAC: {rows:?}"
    );
    assert!(l6[0]["duid"].as_str().is_some_and(|d| !d.is_empty()), "{rows:?}");
    assert!(l6[0]["iaid"].is_u64(), "{rows:?}");

    // ---- the ssh config names the addresses ----
    let cfg = std::fs::read_to_string(state.join("ssh_config")).unwrap();
    assert!(
        cfg.contains(&format!("# master on lan 10.0.3.101 {}\nHost master\n", v6["master"])),
        "{cfg}"
    );

    // ---- down --purge: nothing left ----
    let o = vmlan_in(&ns, &dir, &["down", "--purge", "--timeout", "5"]);
    assert!(o.status.success(), "down: {}", output_text(&o));
    let o = std::process::Command::new("ip")
        .args(["netns", "pids", &ns.name])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "",
        "processes left after down"
    );
    assert!(!state.exists());
}
