//! DHCPv6 against a real client (issue 12): the hub runs with `--tap` in a
//! network namespace the test creates, `--enable-ra` and a stateful IPv6
//! `--dhcp-range 1234::100,1234::1ff,64,1h`, with two `--dhcp-host`
//! reservations: `MAC1,[1234::5],name6` and `MAC2,pool6` (a name only).
//! ISC `dhclient -6` (a recording script: it configures nothing) on the tap
//! with MAC1 is bound to 1234::5 with the hub's DNS server and search
//! list; then the tap takes MAC2 and a second `dhclient -6` (its own lease
//! file, so its own DUID) is bound to a pool address, whose name `pool6`
//! answers AAAA in DNS (`dig` over IPv4 to 10.0.3.1) until the client
//! releases it (`dhclient -6 -r`); `name6` answers 1234::5 throughout. With
//! `--leasefile`, the leases are in the journal at once and the file
//! written at the stop holds the `duid` line and the live DHCPv6 lease; a
//! hub restarted on that file holds that lease again.
//!
//! A second test does the same with `dhcpcd -6 -1` (oneshot, DHCPv6 only; its
//! DUID and lease database in the test's directory, bound over
//! /var/lib/dhcpcd in the mount namespace `ip netns exec` gives it, a tmpfs on
//! its /run): it reads the RA, is bound to `MAC3,[1234::7],dc6`, then with
//! MAC4 and a fresh DUID to a pool address named `dcpool`; `dig AAAA` and the
//! lease file written at the hub's stop (IAID, address, name, client DUID)
//! agree with what dhcpcd reported and stored.
//! Nothing leaves the namespace.

mod common;

use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const MAC1: &str = "02:00:00:00:77:05";
const MAC2: &str = "02:00:00:00:77:06";
const HUB_GLOBAL: &str = "1234::76:6dff:fe00:301";

/// The AAAA records `dig` gets for `name` from the hub over IPv4.
fn dig_aaaa(ns: &Netns, name: &str) -> Vec<Ipv6Addr> {
    let out = run_ok(&mut ns.cmd("dig", &["+short", "+time=2", "+tries=2", "AAAA", name, "@10.0.3.1"]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn dhclient6_gets_its_reserved_address_and_another_a_pool_address_named_in_dns() {
    let dir = scratch("dhcp6-clients");
    let mut ns = Netns::new("e2e-dhcp6");
    let leasefile = dir.join("hub.leases");
    // No duplicate address detection on the tap: dhclient -6 needs its
    // link-local address usable at once, also after the MAC changes.
    run_ok(&mut ns.cmd("sysctl", &["-q", "-w", "net.ipv6.conf.default.accept_dad=0"]));
    let args = [
        "--enable-ra",
        "--dhcp-range",
        "1234::100,1234::1ff,64,1h",
        "--dhcp-host",
        &format!("{MAC1},[1234::5],name6"),
        "--dhcp-host",
        &format!("{MAC2},pool6"),
        "--domain",
        "cluster",
        "--leasefile",
        leasefile.to_str().unwrap(),
    ];
    let hub = tap_hub(&mut ns, &dir, Some(MAC1), Some("10.0.3.50/24"), &args);

    // 1. The reservation by MAC.
    let (c, out) = dhclient6(&mut ns, &dir, "client1", "vmtap0");
    let v = wait_dhcp_record(&out, "BOUND6", Duration::from_secs(30));
    assert_eq!(v.get("new_ip6_address").map(String::as_str), Some("1234::5"), "{v:?}");
    assert_eq!(
        v.get("new_dhcp6_name_servers").map(String::as_str),
        Some(HUB_GLOBAL),
        "{v:?}"
    );
    assert!(
        v.get("new_dhcp6_domain_search").is_some_and(|s| s.contains("cluster")),
        "{v:?}"
    );
    ns.stop(c);
    assert_eq!(
        dig_aaaa(&ns, "name6.cluster"),
        vec!["1234::5".parse::<Ipv6Addr>().unwrap()]
    );
    assert!(dig_aaaa(&ns, "pool6.cluster").is_empty());

    // 2. Another MAC (and a fresh lease file, so another DUID): a pool address, named.
    for args in [
        &["link", "set", "vmtap0", "down"][..],
        &["link", "set", "vmtap0", "address", MAC2],
        &["link", "set", "vmtap0", "up"],
    ] {
        run_ok(&mut ns.cmd("ip", args));
    }
    let (c, out) = dhclient6(&mut ns, &dir, "client2", "vmtap0");
    let v = wait_dhcp_record(&out, "BOUND6", Duration::from_secs(30));
    let got: Ipv6Addr = v["new_ip6_address"].parse().unwrap();
    let (lo, hi): (Ipv6Addr, Ipv6Addr) = ("1234::100".parse().unwrap(), "1234::1ff".parse().unwrap());
    assert!((lo..=hi).contains(&got), "{got} not in the pool: {v:?}");
    ns.stop(c);
    assert_eq!(dig_aaaa(&ns, "pool6.cluster"), vec![got]);
    // Both leases are in the journal at once (before the reply went out).
    let journal = std::fs::read_to_string(dir.join("hub.leases.journal")).unwrap();
    assert!(journal.contains("duid 00:03:00:01:02:76:6d:00:03:01\n"), "{journal}");
    for a in ["1234::5 name6", &format!("{got} pool6")] {
        assert!(
            journal.lines().any(|l| l.starts_with("add6 ") && l.contains(a)),
            "{a}: {journal}"
        );
    }

    // 3. The second client releases (`dhclient -6 -r`): its name is withdrawn.
    let lf = dir.join("client2.leases");
    let pf = dir.join("client2.pid");
    let script = dir.join("record6.sh");
    let cmd = ns.cmd(
        "dhclient",
        &[
            "-6",
            "-r",
            "-v",
            "-sf",
            script.to_str().unwrap(),
            "-lf",
            lf.to_str().unwrap(),
            "-pf",
            pf.to_str().unwrap(),
            "vmtap0",
        ],
    );
    let r = ns.spawn(cmd, &dir.join("release.log"));
    ns.wait(r, Duration::from_secs(30), "dhclient -6 -r");
    assert!(dig_aaaa(&ns, "pool6.cluster").is_empty());
    assert_eq!(
        dig_aaaa(&ns, "name6.cluster"),
        vec!["1234::5".parse::<Ipv6Addr>().unwrap()]
    );

    ns.stop(hub);
    // The clean stop wrote dnsmasq's file: the duid line, then the live v6 lease.
    let file = std::fs::read_to_string(&leasefile).unwrap();
    let lines: Vec<&str> = file.lines().collect();
    assert_eq!(lines.len(), 2, "{file}");
    assert_eq!(lines[0], "duid 00:03:00:01:02:76:6d:00:03:01", "{file}");
    assert!(lines[1].contains(" 1234::5 name6 00:01:00:01:"), "{file}");
    let log = std::fs::read_to_string(dir.join("hub.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");

    // 4. A restart on that file: the live lease is the server's again (the report counts it).
    let mut cmd = ns.cmd(
        env!("CARGO_BIN_EXE_vmlan"),
        &["hub", "--tap", "vmtap0", "--no-resolv", "--addr", "10.0.3.1/24"],
    );
    cmd.args(args);
    let log2 = dir.join("hub2.log");
    let hub2 = start_hub_cmd(&mut ns, cmd, &log2);
    let pid = ns.child(hub2).id().to_string();
    run_ok(std::process::Command::new("kill").args(["-USR1", &pid]));
    assert!(
        wait_for_text(&log2, "dhcp6 leases 1 in 0 out 0", Duration::from_secs(10)),
        "{}",
        std::fs::read_to_string(&log2).unwrap_or_default()
    );
    assert_eq!(
        dig_aaaa(&ns, "name6.cluster"),
        vec!["1234::5".parse::<Ipv6Addr>().unwrap()]
    );
    ns.stop(hub2);
    assert!(log.contains("DHCPv6 lease granted addr=1234::5"), "{log}");
    assert!(log.contains("DHCPv6 RELEASE"), "{log}");
}

const MAC3: &str = "02:00:00:00:77:07";
const MAC4: &str = "02:00:00:00:77:08";

/// `dhcpcd -6 -1` (oneshot, DHCPv6 only) on vmtap0 with the recorder script
/// (writing to `dir/NAME.out`), its log in `dir/NAME.log`, asking for the DNS
/// servers and search list. dhcpcd keeps its DUID and leases in
/// /var/lib/dhcpcd and its pid files in /run/dhcpcd, compiled in: it runs in
/// the mount namespace `ip netns exec` makes for it, with `dir/NAME.db` bound
/// on /var/lib/dhcpcd and a tmpfs on /run, so the host's are untouched (and
/// a fresh directory means a fresh DUID). Waits for it to exit (60 s at most);
/// returns the record file.
fn dhcpcd6(ns: &mut Netns, dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(format!("{name}.out"));
    let script = dhcp_recorder(dir, &out);
    let db = dir.join(format!("{name}.db"));
    std::fs::create_dir_all(&db).unwrap();
    let conf = dir.join("dhcpcd.conf");
    std::fs::write(&conf, "option dhcp6_name_servers, dhcp6_domain_search\n").unwrap();
    let sh = format!(
        "mount -t tmpfs none /run && mkdir /run/dhcpcd && mount --bind {} /var/lib/dhcpcd && \
         exec dhcpcd -6 -1 -d -f {} -c {} -t 40 vmtap0",
        db.display(),
        conf.display(),
        script.display()
    );
    let c = ns.spawn(ns.cmd("sh", &["-c", &sh]), &dir.join(format!("{name}.log")));
    ns.wait(c, Duration::from_secs(60), "dhcpcd -6 -1");
    out
}

/// The DHCPv6 lease lines of a dnsmasq leases file: (IAID, address, name, client DUID).
fn v6_lines(file: &str) -> Vec<(u32, Ipv6Addr, String, String)> {
    file.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let addr = f.get(2)?.parse().ok()?;
            assert_eq!(f.len(), 5, "{l}");
            assert!(f[0].parse::<u64>().is_ok(), "{l}");
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
fn dhcpcd6_gets_its_reserved_address_and_another_a_pool_address_in_dns_and_the_lease_file() {
    let dir = scratch("dhcp6-dhcpcd");
    let mut ns = Netns::new("e2e-dhcpcd6");
    let leasefile = dir.join("hub.leases");
    run_ok(&mut ns.cmd("sysctl", &["-q", "-w", "net.ipv6.conf.default.accept_dad=0"]));
    let args = [
        "--enable-ra",
        "--dhcp-range",
        "1234::100,1234::1ff,64,1h",
        "--dhcp-host",
        &format!("{MAC3},[1234::7],dc6"),
        "--dhcp-host",
        &format!("{MAC4},dcpool"),
        "--domain",
        "cluster",
        "--leasefile",
        leasefile.to_str().unwrap(),
    ];
    let hub = tap_hub(&mut ns, &dir, Some(MAC3), Some("10.0.3.50/24"), &args);

    // 1. The reservation by MAC: dhcpcd reads the RA (M flag), solicits and is bound.
    let out = dhcpcd6(&mut ns, &dir, "dhcpcd1");
    let v = wait_dhcp_record(&out, "BOUND6", Duration::from_secs(30));
    assert_eq!(
        v.get("new_dhcp6_ia_na1_ia_addr1").map(String::as_str),
        Some("1234::7"),
        "{v:?}"
    );
    assert_eq!(
        v.get("new_dhcp6_name_servers").map(String::as_str),
        Some(HUB_GLOBAL),
        "{v:?}"
    );
    assert!(
        v.get("new_dhcp6_domain_search").is_some_and(|s| s.contains("cluster")),
        "{v:?}"
    );
    let iaid1 = u32::from_str_radix(&v["new_dhcp6_ia_na1_iaid"], 16).unwrap();
    let duid1 = std::fs::read_to_string(dir.join("dhcpcd1.db/duid"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        dig_aaaa(&ns, "dc6.cluster"),
        vec!["1234::7".parse::<Ipv6Addr>().unwrap()]
    );
    assert!(dig_aaaa(&ns, "dcpool.cluster").is_empty());

    // 2. Another MAC and a fresh DUID: a pool address, under the reservation's name.
    for args in [
        &["-6", "addr", "flush", "dev", "vmtap0", "scope", "global"][..],
        &["link", "set", "vmtap0", "down"],
        &["link", "set", "vmtap0", "address", MAC4],
        &["link", "set", "vmtap0", "up"],
    ] {
        run_ok(&mut ns.cmd("ip", args));
    }
    let out = dhcpcd6(&mut ns, &dir, "dhcpcd2");
    let v = wait_dhcp_record(&out, "BOUND6", Duration::from_secs(30));
    let got: Ipv6Addr = v["new_dhcp6_ia_na1_ia_addr1"].parse().unwrap();
    let (lo, hi): (Ipv6Addr, Ipv6Addr) = ("1234::100".parse().unwrap(), "1234::1ff".parse().unwrap());
    assert!((lo..=hi).contains(&got), "{got} not in the pool: {v:?}");
    let iaid2 = u32::from_str_radix(&v["new_dhcp6_ia_na1_iaid"], 16).unwrap();
    let duid2 = std::fs::read_to_string(dir.join("dhcpcd2.db/duid"))
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(duid1, duid2);
    assert_eq!(dig_aaaa(&ns, "dcpool.cluster"), vec![got]);

    // 3. The lease file agrees with what the clients hold: IAID, address, name, their DUIDs.
    ns.stop(hub);
    let file = std::fs::read_to_string(&leasefile).unwrap();
    assert!(
        file.lines().any(|l| l == "duid 00:03:00:01:02:76:6d:00:03:01"),
        "{file}"
    );
    let mut lines = v6_lines(&file);
    lines.sort();
    let mut want = vec![
        (iaid1, "1234::7".parse().unwrap(), "dc6".to_string(), duid1),
        (iaid2, got, "dcpool".to_string(), duid2),
    ];
    want.sort();
    assert_eq!(lines, want, "{file}");
    let log = std::fs::read_to_string(dir.join("hub.log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}
