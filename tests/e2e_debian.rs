//! End to end (issue 10): `vmlan up` with a real Debian bookworm guest
//! (tests/guest/debian/build.sh: systemd, cloud-init with NoCloud, sshd,
//! ifupdown + isc-dhcp-client, as Debian's cloud images), three nodes under TCG
//! on the multicast transport, in a private network namespace.
//!
//! Checks, through `vmlan ssh` as a user types it:
//! - `up` returns only when every node is leased AND its sshd answers (its
//!   progress lines say so), and right after it both `vmlan ssh master --
//!   hostname` and `vmlan ssh master hostname` print `master`, as does the ssh
//!   command `up` prints (`ssh -F STATE/ssh_config master`);
//! - on every node: `cloud-init status` is `done`; `hostname -f` is
//!   `NODE.cluster`; every other node's name resolves, bare and under the domain,
//!   with `getent hosts` and `getent ahosts` (A and AAAA asked in parallel), to
//!   its address; an outside name resolves through the hub's forwarding (to an
//!   upstream dnsmasq in the namespace); `/etc/resolv.conf` names only the hub,
//!   with search `cluster`; the only default route is SLIRP's (10.0.2.2 on
//!   `slirp0`): the hub is no router; the segment NIC holds the reserved address;
//! - dual-stack (`ipv6 = "fd00:10::/64"`): master (no `ipv6`) holds its MAC's
//!   EUI-64 address by the kernel's SLAAC, the workers their `fd00:10::1:{ipv4}`
//!   address, static from the seed's network-config (ENI `inet6 static`); on
//!   every node `getent ahostsv6 OTHER` gives each other node's address as
//!   `vmlan status` shows it, and `ping -6 OTHER` answers;
//! - worker1 reboots (`vmlan ssh worker1 -- sudo systemctl reboot`) and comes
//!   back with a new boot id, the same address and name, resolvable from master;
//! - `down` then `up`: every node gets its address again, and the checks above
//!   hold again on the new boot.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;

const NODES: [&str; 3] = ["master", "worker1", "worker2"];

/// What each node reports, one `KEY value` per line.
const PROBE: &str = r#"
echo "STATUS $(cloud-init status --wait 2>/dev/null | tail -n1)"
echo "HOSTNAME $(hostname)"
echo "FQDN $(hostname -f)"
for n in master worker1 worker2; do
  for q in $n $n.cluster; do
    echo "HOSTS $q $(timeout 20 getent hosts $q | awk '{print $1}' | head -n1)"
    echo "AHOSTS $q $(timeout 20 getent ahosts $q | awk '{print $1}' | sort -u | tr '\n' ',')"
  done
done
echo "WWW $(timeout 20 getent hosts www.example.com | awk '{print $1}')"
for n in master worker1 worker2; do
  echo "AHOSTS6 $n $(timeout 20 getent ahostsv6 $n | awk '{print $1}' | sort -u | tr '\n' ',')"
  r=fail
  for i in 1 2 3 4 5; do ping -6 -c1 -W3 $n >/dev/null 2>&1 && { r=ok; break; }; sleep 1; done
  echo "PING6 $n $r"
done
echo "ADDR6 $(ip -6 -o addr show dev net0 scope global | awk '{print $4}' | sort | tr '\n' ',')"
ip route show default | sed 's/^/ROUTE /'
sed -n 's/^\(nameserver\|search\) /RESOLV \1 /p' /etc/resolv.conf
echo "ADDR $(ip -4 -o addr show dev net0 | awk '{print $4}')"
echo "BOOT $(cat /proc/sys/kernel/random/boot_id)"
"#;

/// `vmlan ssh NODE ARGS...` in `ns` (bounded by `timeout`).
fn ssh(ns: &Netns, dir: &Path, node: &str, args: &[&str]) -> Output {
    let mut all = vec!["120", env!("CARGO_BIN_EXE_vmlan"), "ssh", node];
    all.extend(args);
    let mut c = ns.cmd("timeout", &all);
    c.current_dir(dir);
    c.output().unwrap()
}

/// Runs [`PROBE`] on `node` and returns its lines: key -> values, in order.
fn probe(ns: &Netns, dir: &Path, node: &str) -> HashMap<String, Vec<String>> {
    let o = ssh(ns, dir, node, &["--", PROBE]);
    assert!(o.status.success(), "probe on {node}: {}", output_text(&o));
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        m.entry(k.to_string()).or_default().push(v.trim().to_string());
    }
    m
}

/// The one value of `key` (panics with everything when it is not exactly one).
fn one<'a>(m: &'a HashMap<String, Vec<String>>, key: &str, node: &str) -> &'a str {
    match m.get(key).map(Vec::as_slice) {
        Some([v]) => v,
        _ => panic!("{node}: {key}: {m:?}"),
    }
}

/// Every check of the module doc on `node`, given each node's IPv4 and IPv6
/// address (`ips`, `ips6`). Returns its boot id.
fn check_node(
    ns: &Netns,
    dir: &Path,
    node: &str,
    ips: &HashMap<String, String>,
    ips6: &HashMap<String, String>,
) -> String {
    let m = probe(ns, dir, node);
    assert_eq!(one(&m, "STATUS", node), "status: done", "{node}: cloud-init: {m:?}");
    assert_eq!(one(&m, "HOSTNAME", node), node, "{m:?}");
    assert_eq!(one(&m, "FQDN", node), format!("{node}.cluster"), "{m:?}");
    let hosts = &m["HOSTS"];
    let ahosts = &m["AHOSTS"];
    for other in NODES.iter().filter(|o| **o != node) {
        let want = &ips[*other];
        let want6 = &ips6[*other];
        for q in [other.to_string(), format!("{other}.cluster")] {
            // getent hosts asks for IPv6 first: the AAAA when there is one.
            assert!(
                hosts.contains(&format!("{q} {want}")) || hosts.contains(&format!("{q} {want6}")),
                "{node}: getent hosts {q} should be {want} or {want6}: {hosts:?}"
            );
            assert!(
                ahosts
                    .iter()
                    .any(|l| l.starts_with(&format!("{q} ")) && l.contains(&format!("{want},"))),
                "{node}: getent ahosts {q} should give {want}: {ahosts:?}"
            );
        }
    }
    assert_eq!(
        one(&m, "WWW", node),
        "192.0.2.80",
        "{node}: an outside name, forwarded: {m:?}"
    );
    let routes = m.get("ROUTE").cloned().unwrap_or_default();
    assert_eq!(routes.len(), 1, "{node}: one default route: {routes:?}");
    assert!(
        routes[0].starts_with("default via 10.0.2.2 dev slirp0"),
        "{node}: the way out is SLIRP, not the hub: {routes:?}"
    );
    let resolv = m.get("RESOLV").cloned().unwrap_or_default();
    let servers: Vec<&String> = resolv.iter().filter(|l| l.starts_with("nameserver ")).collect();
    assert_eq!(servers, ["nameserver 10.0.3.1"], "{node}: resolv.conf: {resolv:?}");
    assert!(
        resolv
            .iter()
            .any(|l| l.starts_with("search ") && l.split_whitespace().any(|d| d == "cluster")),
        "{node}: search domain: {resolv:?}"
    );
    assert_eq!(one(&m, "ADDR", node), format!("{}/24", ips[node]), "{m:?}");
    // Dual-stack: the node holds its IPv6 address (SLAAC's EUI-64 one, or the
    // seed's static one); every node's name gives its IPv6 address, and answers ping -6.
    assert!(
        one(&m, "ADDR6", node)
            .split(',')
            .any(|a| a == format!("{}/64", ips6[node])),
        "{node} holds {}: {m:?}",
        ips6[node]
    );
    let ahosts6 = &m["AHOSTS6"];
    let pings6 = &m["PING6"];
    // (Its own name is in its /etc/hosts, manage_etc_hosts: 127.0.1.1 only.)
    for other in NODES.iter().filter(|o| **o != node) {
        let want6 = &ips6[*other];
        assert!(
            pings6.contains(&format!("{other} ok")),
            "{node}: ping -6 {other}: {pings6:?}"
        );
        assert!(
            ahosts6
                .iter()
                .any(|l| l.starts_with(&format!("{other} ")) && l.contains(&format!("{want6},"))),
            "{node}: getent ahostsv6 {other} should give {want6}: {ahosts6:?}"
        );
    }
    one(&m, "BOOT", node).to_string()
}

/// [`check_node`] on each of `nodes` at once (one ssh each); their boot ids.
fn check_nodes(
    ns: &Netns,
    dir: &Path,
    nodes: &[&str],
    ips: &HashMap<String, String>,
    ips6: &HashMap<String, String>,
) -> HashMap<String, String> {
    let start = Instant::now();
    let boots = std::thread::scope(|s| {
        let hs: Vec<_> = nodes
            .iter()
            .map(|n| (n.to_string(), s.spawn(move || check_node(ns, dir, n, ips, ips6))))
            .collect();
        hs.into_iter()
            .map(|(n, h)| (n, h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))))
            .collect()
    });
    eprintln!("checked {nodes:?} in {} s", start.elapsed().as_secs());
    boots
}

/// Each node's leased address from `vmlan status --json` (all must hold one).
fn leased(ns: &Netns, dir: &Path) -> HashMap<String, String> {
    let s = vmlan_status(ns, dir);
    NODES
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let ip = s["nodes"][i]["ip"]
                .as_str()
                .unwrap_or_else(|| panic!("{n} has no lease: {s}"));
            (n.to_string(), ip.to_string())
        })
        .collect()
}

/// Each node's IPv6 address from `vmlan status --json` (all must have one).
fn addresses6(ns: &Netns, dir: &Path) -> HashMap<String, String> {
    let s = vmlan_status(ns, dir);
    NODES
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let ip = s["nodes"][i]["ipv6"]
                .as_str()
                .unwrap_or_else(|| panic!("{n} has no ipv6: {s}"));
            (n.to_string(), ip.to_string())
        })
        .collect()
}

/// `vmlan up` must return with every node leased and its sshd answering, and
/// the first ssh right after it must work in both forms users type.
fn up_and_first_ssh(ns: &Netns, dir: &Path) -> String {
    let start = Instant::now();
    let o = vmlan_in(ns, dir, &["up", "cluster.toml", "--timeout", "1200"]);
    let out = output_text(&o);
    assert!(o.status.success(), "vmlan up: {out}");
    eprintln!("vmlan up took {} s:\n{out}", start.elapsed().as_secs());
    for n in NODES {
        assert!(out.contains(&format!("{n}: ssh ready after")), "{out}");
    }
    for args in [&["--", "hostname"][..], &["hostname"]] {
        let o = ssh(ns, dir, "master", args);
        assert!(o.status.success(), "vmlan ssh master {args:?}: {}", output_text(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "master",
            "vmlan ssh master {args:?}"
        );
    }
    out
}

#[test]
fn debian_cluster_names_routes_stable_addresses_and_ssh() {
    let (base, kernel, initrd) = debian_guest();
    let dir = scratch("debian");
    let mut ns = Netns::new("e2e-deb");
    // An upstream for outside names, inside the namespace (nothing leaves it).
    upstream_dnsmasq(
        &mut ns,
        &dir,
        "upstream",
        "127.0.0.2",
        5300,
        &["--host-record=www.example.com,192.0.2.80".to_string()],
    );
    let key = dir.join("id_ed25519");
    run_ok(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "vmlan-e2e", "-f"])
            .arg(&key),
    );
    let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let file = format!(
        r#"
[cluster]
name = "deb"
[network]
subnet = "10.0.3.0/24"
address = "10.0.3.1"
domain = "cluster"
transport = "mcast"
mcast = "230.0.0.1:1234"
dhcp_range = "10.0.3.100,10.0.3.200"
dns_listen = "127.0.0.1:5353"
no_resolv = true
hub_args = ["--server", "127.0.0.2#5300"]
ipv6 = "fd00:10::/64"
[defaults]
memory = "1G"
cpus = 1
accel = "tcg"
image = "{base}"
kernel = "{kernel}"
initrd = "{initrd}"
append = "root=/dev/vda rw console=ttyS0 no_timer_check"
ssh_identity_file = "{key}"
cloud_init = {{ user = "rg", ssh_authorized_keys = ["{pubkey}"] }}
[[node]]
name = "master"
mac = "00:00:00:11:11:11"
ip = "10.0.3.101"
[[node]]
name = "worker"
count = 2
ipv6 = "fd00:10::1:{{ipv4}}"
"#,
        base = base.display(),
        kernel = kernel.display(),
        initrd = initrd.display(),
        key = key.display(),
        pubkey = pubkey.trim()
    );
    std::fs::write(dir.join("cluster.toml"), file).unwrap();
    let state = dir.join(".vmlan/deb");

    // ---- up: leased and ssh ready; the first ssh works; the printed command too ----
    let out = up_and_first_ssh(&ns, &dir);
    let cfg = state.join("ssh_config");
    assert!(
        out.contains(&format!("ssh -F {} master", cfg.display())),
        "up prints the ssh command through the generated config: {out}"
    );
    let o = ns
        .cmd(
            "timeout",
            &["60", "ssh", "-F", cfg.to_str().unwrap(), "worker2", "hostname"],
        )
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "worker2",
        "{}",
        output_text(&o)
    );
    let ips = leased(&ns, &dir);
    assert_eq!(ips["master"], "10.0.3.101");
    let ips6 = addresses6(&ns, &dir);
    // master: SLAAC's EUI-64 address of 00:00:00:11:11:11; the workers: the template.
    assert_eq!(ips6["master"], "fd00:10::200:ff:fe11:1111");
    for w in ["worker1", "worker2"] {
        let v4: std::net::Ipv4Addr = ips[w].parse().unwrap();
        let want: std::net::Ipv6Addr = format!("fd00:10::1:{v4}").parse().unwrap();
        assert_eq!(ips6[w], want.to_string());
    }
    let boots = check_nodes(&ns, &dir, &NODES, &ips, &ips6);

    // ---- worker1 reboots: same address, same name ----
    let _ = ssh(&ns, &dir, "worker1", &["--", "sudo systemctl reboot"]);
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "worker1 did not come back from its reboot"
        );
        std::thread::sleep(Duration::from_secs(5));
        let o = ssh(
            &ns,
            &dir,
            "worker1",
            &["-o", "ConnectTimeout=10", "--", "cat /proc/sys/kernel/random/boot_id"],
        );
        let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if o.status.success() && !id.is_empty() && id != boots["worker1"] {
            break;
        }
    }
    eprintln!("worker1 rebooted in {} s", start.elapsed().as_secs());
    // Its sshd answers once its network is up; wait for the lease to be back too.
    let start = Instant::now();
    while leased_ip(&ns, &dir, 1).as_deref() != Some(ips["worker1"].as_str()) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "worker1 has no lease at {} after its reboot: {}",
            ips["worker1"],
            vmlan_status(&ns, &dir)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    check_nodes(&ns, &dir, &["worker1", "master"], &ips, &ips6);

    // ---- down, then up: every node gets its address again ----
    let start = Instant::now();
    let o = vmlan_in(&ns, &dir, &["down", "--timeout", "120"]);
    assert!(o.status.success(), "down: {}", output_text(&o));
    eprintln!("down took {} s: {}", start.elapsed().as_secs(), output_text(&o));
    up_and_first_ssh(&ns, &dir);
    assert_eq!(leased(&ns, &dir), ips, "addresses after down and up");
    assert_eq!(addresses6(&ns, &dir), ips6, "IPv6 addresses after down and up");
    let again = check_nodes(&ns, &dir, &NODES, &ips, &ips6);
    for n in NODES {
        assert_ne!(again[n], boots[n], "{n} did not boot again");
    }

    let o = vmlan_in(&ns, &dir, &["down", "--purge", "--timeout", "120"]);
    assert!(o.status.success(), "down --purge: {}", output_text(&o));
}

/// Node `i`'s leased address from `vmlan status --json`, if it holds one.
fn leased_ip(ns: &Netns, dir: &Path, i: usize) -> Option<String> {
    vmlan_status(ns, dir)["nodes"][i]["ip"].as_str().map(str::to_string)
}
