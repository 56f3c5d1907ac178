//! End to end (issue 14): one cluster on two "machines" with `vmlan up`. Two
//! network namespaces, A and B, joined by a veth pair (10.99.0.1/24 and
//! 10.99.0.2/24), stand for two hosts; both run `vmlan up` on the same cluster
//! file (two `[[host]]` tables, a network with `vxlan = { vni = 42 }`), A with
//! `--host a` (the segment's authority), B with `--host b`, each in its own
//! directory (its own state directory). One test guest (busybox, TCG, direct
//! kernel boot) per side: `web` on A, `db` on B.
//!
//! Checks: A's hub runs `--vxlan ...,peer=10.99.0.2` and holds both nodes'
//! reservations, B's runs `--no-host` with peer 10.99.0.1; `up` on B returns
//! without a lease file (it has none); both guests lease from A's hub (db
//! across the VXLAN link, at its reserved address),
//! resolve each other's names through A's hub and ping each other across;
//! `vmlan status --json` on each side shows the vxlan peers and which hub is
//! the authority; A's lease file holds db's lease and B's holds none; `vmlan
//! down` on both leaves
//! no process in either namespace. Nothing leaves the two namespaces.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn cluster_file(kernel: &Path, initrd: &Path) -> String {
    format!(
        r#"
[cluster]
name = "vx"
[[host]]
name = "a"
address = "10.99.0.1"
[[host]]
name = "b"
address = "10.99.0.2"
[network]
subnet = "10.0.3.0/24"
address = "10.0.3.1"
domain = "cluster"
dhcp_range = "10.0.3.100,10.0.3.200"
no_resolv = true          # the namespaces have no upstream, and nothing may leave them
vxlan = {{ vni = 42 }}
authority = "a"
[defaults]
memory = "256M"
cpus = 1
accel = "tcg"
kernel = "{}"
initrd = "{}"
append = "console=ttyS0 quiet panic=-1 no_timer_check vmtest.mac={{mac}} vmtest.slirp={{slirp_mac}} vmtest.resolve=web,db vmtest.ping=web,db vmtest.hold=3600"
[[node]]
name = "web"
host = "a"
[[node]]
name = "db"
host = "b"
ip = "10.0.3.50"
"#,
        kernel.display(),
        initrd.display()
    )
}

/// Pids of every process in the namespace.
fn pids(ns: &Netns) -> Vec<String> {
    let o = std::process::Command::new("ip")
        .args(["netns", "pids", &ns.name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn up_on_two_machines_one_segment_names_resolve_across() {
    let (kernel, initrd) = guest();
    let dir = scratch("up-vxlan");
    let na = Netns::new("upvx-a");
    let nb = Netns::new("upvx-b");
    // The underlay: a veth pair between the two namespaces.
    run_ok(&mut na.cmd(
        "ip",
        &[
            "link", "add", "ua", "type", "veth", "peer", "name", "ub", "netns", &nb.name,
        ],
    ));
    run_all(
        &na,
        &[
            &["ip", "addr", "add", "10.99.0.1/24", "dev", "ua"],
            &["ip", "link", "set", "ua", "up"],
        ],
    );
    run_all(
        &nb,
        &[
            &["ip", "addr", "add", "10.99.0.2/24", "dev", "ub"],
            &["ip", "link", "set", "ub", "up"],
        ],
    );
    std::fs::write(dir.join("two.toml"), cluster_file(&kernel, &initrd)).unwrap();
    let (da, db) = (dir.join("a"), dir.join("b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let file = dir.join("two.toml");
    let file = file.to_str().unwrap();

    // ---- up on both machines at once ----
    let up_a = {
        let mut c = na.cmd(
            env!("CARGO_BIN_EXE_vmlan"),
            &["up", file, "--host", "a", "--timeout", "150", "--no-wait-ssh"],
        );
        c.current_dir(&da);
        std::thread::spawn(move || c.output().unwrap())
    };
    let o = vmlan_in(
        &nb,
        &db,
        &["up", file, "--host", "b", "--timeout", "150", "--no-wait-ssh"],
    );
    let out_b = output_text(&o);
    assert!(o.status.success(), "vmlan up on b: {out_b}");
    assert!(out_b.contains("its lease is on host a's hub"), "{out_b}");
    let o = up_a.join().unwrap();
    let out_a = output_text(&o);
    assert!(o.status.success(), "vmlan up on a: {out_a}");
    assert!(
        out_a
            .lines()
            .any(|l| l.starts_with("web ") && l.contains(" 10.0.3.100 ")),
        "{out_a}"
    );

    // ---- status: the vxlan peers and the authority on each side ----
    let sa = vmlan_status(&na, &da);
    let sb = vmlan_status(&nb, &db);
    assert_eq!(sa["hubs"][0]["state"], "running", "{sa}");
    assert_eq!(sa["hubs"][0]["authority"], true, "{sa}");
    assert_eq!(
        sa["hubs"][0]["vxlan"], "vni=42,local=10.99.0.1:4789,peer=10.99.0.2,port=4789",
        "{sa}"
    );
    assert_eq!(sb["hubs"][0]["state"], "running", "{sb}");
    assert_eq!(sb["hubs"][0]["authority"], false, "{sb}");
    assert_eq!(
        sb["hubs"][0]["vxlan"], "vni=42,local=10.99.0.2:4789,peer=10.99.0.1,port=4789",
        "{sb}"
    );
    let names = |s: &serde_json::Value| -> Vec<String> {
        s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&sa), ["web"], "{sa}");
    assert_eq!(names(&sb), ["db"], "{sb}");
    let o = vmlan_in(&nb, &db, &["status"]);
    assert!(
        output_text(&o).contains("no host here (--no-host)"),
        "{}",
        output_text(&o)
    );

    // ---- the guests: leases from A's hub, names and pings across ----
    let (web_ip, db_ip) = (
        sa["nodes"][0]["ip"].as_str().unwrap().to_string(),
        "10.0.3.50".to_string(),
    );
    let logs = [
        ("web", da.join(".vmlan/vx/web.log")),
        ("db", db.join(".vmlan/vx/db.log")),
    ];
    for (node, log) in &logs {
        assert!(
            wait_for_text(log, "VMTEST round1", Duration::from_secs(150)),
            "{node} did not finish its pings: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    for (node, log) in &logs {
        let r = parse_console(log);
        let want_ip = if *node == "web" { &web_ip } else { &db_ip };
        assert_eq!(r.dhcp.get("ip"), Some(want_ip), "{node}: {}", r.console);
        assert_eq!(
            r.dhcp.get("dns").map(String::as_str),
            Some("10.0.3.1"),
            "{node}: {}",
            r.console
        );
        assert_eq!(r.resolved.get("web"), Some(&web_ip), "{node}: {}", r.console);
        assert_eq!(r.resolved.get("db"), Some(&db_ip), "{node}: {}", r.console);
        assert_eq!(r.pings.get("web"), Some(&true), "{node} pings web: {}", r.console);
        assert_eq!(r.pings.get("db"), Some(&true), "{node} pings db: {}", r.console);
    }
    // Both leases are in A's lease file; B's hub (--no-host) leased nothing.
    let leases = |ns: &Netns, d: &Path| -> Vec<serde_json::Value> {
        let o = vmlan_in(ns, d, &["leases", "--json", "--leasefile", ".vmlan/vx/hub-lan.leases"]);
        assert!(o.status.success(), "{}", output_text(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .unwrap()
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let la = leases(&na, &da);
    for ip in [&web_ip, &db_ip] {
        assert!(
            la.iter().any(|l| l["ip"] == ip.as_str()),
            "{ip} not in A's leases: {la:?}"
        );
    }
    let lb = leases(&nb, &db);
    assert!(lb.is_empty(), "B's hub leased: {lb:?}");

    // ---- down on both: nothing left ----
    for (ns, d) in [(&na, &da), (&nb, &db)] {
        let o = vmlan_in(ns, d, &["down", "--timeout", "5"]);
        assert!(o.status.success(), "down: {}", output_text(&o));
        assert!(pids(ns).is_empty(), "processes left in {}: {:?}", ns.name, pids(ns));
    }
}
