//! dnsmasq's operational files and SIGHUP (issue 15), with real clients on
//! the host side of a tap bridged into the hub with `--tap`, in a network
//! namespace the test creates: a name from `--addn-hosts` resolves with
//! `dig`; ISC dhclient takes a pool lease; the hosts file and the
//! `--dhcp-hostsfile` are edited and the hub gets SIGHUP: the new name
//! resolves, the old one is NXDOMAIN, the lease is still in the lease file
//! (`vmlan leases`), and a client with the newly reserved MAC gets its
//! reserved address. A missing `--addn-hosts` file stops the hub at start
//! with the flag named. `--log-dhcp` and `--log-queries` log dnsmasq's lines.
//! A `--dhcp-script` sees `add`, `old` (renewal, restart) and `del` (release).
//! A `--dhcp-hostsfile` line with `[IPv6]` is a DHCPv6 reservation:
//! ISC `dhclient -6` gets its address, and after an edit and SIGHUP a new
//! client (another DUID of the same MAC) gets the new one, both named in DNS.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const TAP_MAC: &str = "02:00:00:00:55:55";
const NEW_MAC: &str = "02:00:00:00:66:66";

/// ISC dhclient for IPv4 on vmtap0 with the client script `script` ([`spawn_dhclient`]).
fn dhclient(ns: &mut Netns, dir: &Path, script: &Path, name: &str) -> usize {
    spawn_dhclient(ns, dir, name, "vmtap0", script, &["-4"])
}

fn leases_json(leasefile: &Path) -> String {
    let o = run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_vmlan"))
            .args(["leases", "--json", "--leasefile"])
            .arg(leasefile),
    );
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn sighup_rereads_hosts_files_and_keeps_leases() {
    let dir = scratch("dnsops");
    let mut ns = Netns::new("e2e-dnsops");
    let hosts = dir.join("hosts");
    let dhcp_hosts = dir.join("dhcp-hosts");
    let leases = dir.join("leases");
    std::fs::write(
        &hosts,
        "# added hosts\n10.0.3.7 alpha alpha-alias\nnot-an-address bogus\n",
    )
    .unwrap();
    std::fs::write(&dhcp_hosts, "# reservations\n").unwrap();
    let hub = tap_hub(
        &mut ns,
        &dir,
        Some(TAP_MAC),
        None,
        &[
            "--dhcp-range",
            "10.0.3.100,10.0.3.200,10m",
            "--addn-hosts",
            hosts.to_str().unwrap(),
            "--dhcp-hostsfile",
            dhcp_hosts.to_str().unwrap(),
            "--domain",
            "cluster",
            "--dns-listen",
            "127.0.0.1:5353",
            "--log-dhcp",
            "--log-queries",
            "--leasefile",
            leases.to_str().unwrap(),
        ],
    );
    let hub_log = dir.join("hub.log");
    assert!(
        wait_for_text(&hub_log, "hosts:3: ", Duration::from_secs(5)),
        "the bad line is logged with FILE:LINE: {}",
        std::fs::read_to_string(&hub_log).unwrap()
    );
    assert_eq!(
        dig_status(&ns, "alpha", "A"),
        ("NOERROR".into(), vec!["10.0.3.7".into()])
    );
    assert_eq!(
        dig_status(&ns, "alpha-alias", "A"),
        ("NOERROR".into(), vec!["10.0.3.7".into()])
    );
    assert_eq!(
        dig_status(&ns, "alpha", "A"),
        ("NOERROR".into(), vec!["10.0.3.7".into()]),
        "again, from the cache"
    );

    // A pool lease for the tap's MAC.
    let out = dir.join("record.out");
    let script = dhcp_recorder(&dir, &out);
    let c = dhclient(&mut ns, &dir, &script, "first");
    let v = wait_dhcp_record(&out, "BOUND", Duration::from_secs(30));
    let leased = v.get("new_ip_address").cloned().unwrap_or_default();
    assert!(leased.starts_with("10.0.3.1"), "a pool address: {v:?}");
    ns.stop(c);
    assert!(leases_json(&leases).contains(&leased));
    // --log-dhcp and --log-queries: dnsmasq's lines.
    let log = std::fs::read_to_string(&hub_log).unwrap();
    for needle in [
        format!("DHCPDISCOVER {TAP_MAC}"),
        format!("DHCPOFFER {leased} {TAP_MAC}"),
        format!("DHCPACK {leased} {TAP_MAC}"),
        "query[A] alpha from 127.0.0.1".to_string(),
        "config alpha is 10.0.3.7".to_string(),
        "cached alpha is 10.0.3.7".to_string(),
    ] {
        assert!(log.contains(&needle), "no {needle:?} in the log: {log}");
    }

    // Edit both files, then SIGHUP.
    std::fs::write(&hosts, "10.0.3.8 beta\n10.0.3.9 -bad-name\n").unwrap();
    std::fs::write(&dhcp_hosts, format!("{NEW_MAC},10.0.3.66,newbie\n")).unwrap();
    let pid = ns.child(hub).id().to_string();
    run_ok(std::process::Command::new("kill").args(["-HUP", &pid]));
    assert!(
        wait_for_text(&hub_log, "SIGHUP: files re-read", Duration::from_secs(10)),
        "{}",
        std::fs::read_to_string(&hub_log).unwrap()
    );
    assert!(ns.child(hub).try_wait().unwrap().is_none(), "the hub still runs");
    assert!(
        wait_for_text(&hub_log, "hosts:2: ", Duration::from_secs(5)),
        "a bad line after start is logged with FILE:LINE and skipped"
    );
    assert_eq!(
        dig_status(&ns, "beta", "A"),
        ("NOERROR".into(), vec!["10.0.3.8".into()])
    );
    assert_eq!(
        dig_status(&ns, "alpha.cluster", "A").0,
        "NXDOMAIN",
        "gone from the local domain"
    );
    assert!(dig_status(&ns, "alpha", "A").1.is_empty());
    assert_eq!(
        dig_status(&ns, "newbie", "A"),
        ("NOERROR".into(), vec!["10.0.3.66".into()])
    );
    let list = leases_json(&leases);
    assert!(list.contains(&leased), "the lease survives SIGHUP: {list}");

    // A new client with the reserved MAC gets the reserved address.
    run_all(
        &ns,
        &[
            &["ip", "link", "set", "vmtap0", "down"],
            &["ip", "link", "set", "vmtap0", "address", NEW_MAC],
            &["ip", "link", "set", "vmtap0", "up"],
        ],
    );
    std::fs::remove_file(&out).ok();
    let c = dhclient(&mut ns, &dir, &script, "second");
    let v = wait_dhcp_record(&out, "BOUND", Duration::from_secs(30));
    assert_eq!(v.get("new_ip_address").map(String::as_str), Some("10.0.3.66"), "{v:?}");
    assert_eq!(v.get("new_host_name").map(String::as_str), Some("newbie"), "{v:?}");
    ns.stop(c);
    let list = leases_json(&leases);
    assert!(list.contains(&leased) && list.contains("10.0.3.66"), "{list}");
}

#[test]
fn missing_addn_hosts_file_stops_the_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vmlan"))
        .args([
            "hub",
            "--addr",
            "10.0.3.1/24",
            "--no-resolv",
            "--addn-hosts",
            "/nonexistent/vmlan-hosts",
            "--test",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("--addn-hosts /nonexistent/vmlan-hosts"), "{text}");
}

/// Blocks of `OUT` the script wrote (argv line, then its DNSMASQ_ variables).
fn script_runs(out: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let complete = text.rfind("---\n").map_or("", |end| &text[..end + 4]);
    complete
        .split("---\n")
        .filter(|b| !b.trim().is_empty())
        .map(|b| b.lines().map(String::from).collect())
        .collect()
}

/// Waits until the script has run `n` times or more; returns the runs.
fn wait_runs(out: &Path, n: usize, limit: Duration) -> Vec<Vec<String>> {
    let start = std::time::Instant::now();
    loop {
        let runs = script_runs(out);
        if runs.len() >= n {
            return runs;
        }
        assert!(start.elapsed() < limit, "{} runs, {n} expected: {runs:?}", runs.len());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn dhcp_script_sees_add_old_del() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("dnsops-script");
    let mut ns = Netns::new("e2e-dhcpscript");
    let leases = dir.join("leases");
    let out = dir.join("script.out");
    let script = dir.join("on-lease.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ echo \"$*\"; env | grep '^DNSMASQ_' | sort; echo ---; }} >> {}\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hub_args = [
        "--dhcp-range",
        "10.0.3.100,10.0.3.200,10m",
        "--domain",
        "cluster",
        "--leasefile",
        leases.to_str().unwrap(),
        "--dhcp-script",
        script.to_str().unwrap(),
    ];
    let hub = tap_hub(&mut ns, &dir, Some(TAP_MAC), None, &hub_args);
    let rec = dir.join("record.out");
    let recorder = dhcp_recorder(&dir, &rec);

    // add: a new lease.
    let c = dhclient(&mut ns, &dir, &recorder, "first");
    let v = wait_dhcp_record(&rec, "BOUND", Duration::from_secs(30));
    ns.stop(c);
    let ip = v.get("new_ip_address").cloned().unwrap();
    let runs = wait_runs(&out, 1, Duration::from_secs(10));
    assert!(runs[0][0].starts_with(&format!("add {TAP_MAC} {ip}")), "{runs:?}");
    assert!(runs[0].contains(&"DNSMASQ_DOMAIN=cluster".to_string()), "{runs:?}");
    assert!(
        runs[0].iter().any(|l| l.starts_with("DNSMASQ_LEASE_EXPIRES=")),
        "{runs:?}"
    );
    assert!(
        runs[0].iter().any(|l| l.starts_with("DNSMASQ_TIME_REMAINING=")),
        "{runs:?}"
    );

    // old: the client comes back from its lease file (INIT-REBOOT).
    std::fs::remove_file(&rec).ok();
    let c = dhclient(&mut ns, &dir, &recorder, "first");
    wait_dhcp_record(&rec, "REBOOT", Duration::from_secs(30));
    ns.stop(c);
    let runs = wait_runs(&out, 2, Duration::from_secs(10));
    assert!(runs[1][0].starts_with(&format!("old {TAP_MAC} {ip}")), "{runs:?}");

    // old at a restart, for the restored lease.
    ns.stop(hub);
    let mut args = vec!["hub", "--tap", "vmtap0", "--no-resolv", "--addr", "10.0.3.1/24"];
    args.extend_from_slice(&hub_args);
    let cmd = ns.cmd(env!("CARGO_BIN_EXE_vmlan"), &args);
    start_hub_cmd(&mut ns, cmd, &dir.join("hub2.log"));
    let runs = wait_runs(&out, 3, Duration::from_secs(10));
    assert!(runs[2][0].starts_with(&format!("old {TAP_MAC} {ip}")), "{runs:?}");
    assert!(runs[2].contains(&"DNSMASQ_DATA_MISSING=1".to_string()), "{runs:?}");

    // del: RELEASE (a unicast from the leased address, so the interface holds it).
    run_ok(&mut ns.cmd("ip", &["addr", "add", &format!("{ip}/24"), "dev", "vmtap0"]));
    let lf = dir.join("first.leases");
    let pf = dir.join("first.pid");
    let cmd = ns.cmd(
        "dhclient",
        &[
            "-4",
            "-d",
            "-v",
            "-r",
            "-sf",
            recorder.to_str().unwrap(),
            "-lf",
            lf.to_str().unwrap(),
            "-pf",
            pf.to_str().unwrap(),
            "vmtap0",
        ],
    );
    let c = ns.spawn(cmd, &dir.join("release.log"));
    ns.wait(c, Duration::from_secs(30), "dhclient -r");
    let runs = wait_runs(&out, 4, Duration::from_secs(10));
    assert!(runs[3][0].starts_with(&format!("del {TAP_MAC} {ip}")), "{runs:?}");
    assert_eq!(runs.len(), 4, "{runs:?}");
}

/// `[IPv6]` in a `--dhcp-hostsfile` line: served over DHCPv6 (dhclient -6,
/// matched by the MAC in its DUID), and swapped on SIGHUP.
#[test]
fn dhcp_hostsfile_ipv6_reservations_with_dhclient6() {
    let dir = scratch("dnsops6");
    let mut ns = Netns::new("e2e-dnsops6");
    // No duplicate address detection on the tap: dhclient -6 needs its link-local at once.
    run_ok(&mut ns.cmd("sysctl", &["-q", "-w", "net.ipv6.conf.default.accept_dad=0"]));
    let dhcp_hosts = dir.join("dhcp-hosts");
    std::fs::write(&dhcp_hosts, format!("{TAP_MAC},[1234::55],six\n")).unwrap();
    let hub = tap_hub(
        &mut ns,
        &dir,
        Some(TAP_MAC),
        Some("10.0.3.50/24"),
        &[
            "--enable-ra",
            "--dhcp-range",
            "1234::100,1234::1ff,64,1h",
            "--dhcp-hostsfile",
            dhcp_hosts.to_str().unwrap(),
            "--dns-listen",
            "127.0.0.1:5353",
        ],
    );
    let (c, out) = dhclient6(&mut ns, &dir, "six1", "vmtap0");
    let v = wait_dhcp_record(&out, "BOUND6", Duration::from_secs(30));
    assert_eq!(v.get("new_ip6_address").map(String::as_str), Some("1234::55"), "{v:?}");
    ns.stop(c);
    assert_eq!(
        dig_status(&ns, "six", "AAAA"),
        ("NOERROR".into(), vec!["1234::55".into()])
    );

    std::fs::write(&dhcp_hosts, format!("{TAP_MAC},[1234::56],six2\n")).unwrap();
    let pid = ns.child(hub).id().to_string();
    run_ok(std::process::Command::new("kill").args(["-HUP", &pid]));
    let hub_log = dir.join("hub.log");
    assert!(
        wait_for_text(&hub_log, "SIGHUP: files re-read", Duration::from_secs(10)),
        "{}",
        std::fs::read_to_string(&hub_log).unwrap()
    );
    assert_eq!(
        dig_status(&ns, "six2", "AAAA"),
        ("NOERROR".into(), vec!["1234::56".into()])
    );
    // A fresh lease file: another DUID (DUID-LLT of the same MAC), matched by the MAC.
    let (c, out) = dhclient6(&mut ns, &dir, "six2", "vmtap0");
    let v = wait_dhcp_record(&out, "BOUND6", Duration::from_secs(30));
    assert_eq!(v.get("new_ip6_address").map(String::as_str), Some("1234::56"), "{v:?}");
    ns.stop(c);
    assert!(ns.child(hub).try_wait().unwrap().is_none(), "the hub still runs");
}
