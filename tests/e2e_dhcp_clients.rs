//! Real DHCP clients against the hub (issue 4): ISC `dhclient` and `dhcpcd`,
//! on the host side of a tap bridged into the hub with `--tap`, in a network
//! namespace the test creates. Their scripts only record what they were given
//! (nothing is configured, no resolv.conf is touched). dhclient does the whole
//! exchange (DISCOVER/OFFER/REQUEST/ACK), then comes back from its lease file
//! (INIT-REBOOT), then releases (RELEASE); dhcpcd (test mode) reads an OFFER.
//! With `--dhcp-option 3` (no value), dhclient's lease has no router. A client
//! that released its lease gets the same address back, also after a hub restart.
//! A lease's name (dhclient sending host-name "scratch") answers in DNS
//! (`dig` at `--dns-listen`) through renewals and is gone, PTR included, once
//! the lease is released. ISC's `perfdhcp`, acting as a relay agent (giaddr set, UDP port 67), runs a
//! bounded burst of exchanges and must see every one answered.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const TAP_MAC: &str = "02:00:00:00:55:55";

/// A client script that appends `reason` and the lease variables to OUT.
fn recorder(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("record.sh");
    let out = dir.join("record.out");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n# Records what the DHCP client got; configures nothing.\n\
             {{ echo \"reason=$reason\"; env | grep -E '^(new_|old_)' | sort; echo ---; }} >> {}\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// ISC dhclient in the foreground on vmtap0 with the [`recorder`] `script`, lease
/// file `lf`, pid file `pf`, and `extra` flags (e.g. `-r` to RELEASE).
fn dhclient_cmd(ns: &Netns, script: &Path, lf: &Path, pf: &Path, extra: &[&str]) -> std::process::Command {
    let mut a = vec![
        "-4",
        "-d",
        "-v",
        "-sf",
        script.to_str().unwrap(),
        "-lf",
        lf.to_str().unwrap(),
        "-pf",
        pf.to_str().unwrap(),
    ];
    a.extend_from_slice(extra);
    a.push("vmtap0");
    ns.cmd("dhclient", &a)
}

/// The variable blocks recorded so far: (reason, variables).
fn records(dir: &Path) -> Vec<(String, std::collections::HashMap<String, String>)> {
    let text = std::fs::read_to_string(dir.join("record.out")).unwrap_or_default();
    // Complete blocks only: the script writes a block in several writes, and
    // the text after the last "---" may be one still being written.
    let complete = text.rfind("---\n").map_or("", |end| &text[..end + 4]);
    complete
        .split("---\n")
        .filter(|b| !b.trim().is_empty())
        .map(|b| {
            let mut vars = std::collections::HashMap::new();
            let mut reason = String::new();
            for line in b.lines() {
                if let Some((k, v)) = line.split_once('=') {
                    let v = v.trim_matches('\'').to_string();
                    if k == "reason" {
                        reason = v;
                    } else {
                        vars.insert(k.to_string(), v);
                    }
                }
            }
            (reason, vars)
        })
        .collect()
}

fn wait_record(dir: &Path, reason: &str, limit: Duration) -> std::collections::HashMap<String, String> {
    let start = std::time::Instant::now();
    loop {
        if let Some((_, v)) = records(dir).into_iter().rev().find(|(r, _)| r == reason) {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "no {reason} within {limit:?}; recorded: {:?}",
            records(dir).iter().map(|r| r.0.clone()).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn dhclient_and_dhcpcd_get_their_leases() {
    let dir = scratch("dhcp-clients");
    let mut ns = Netns::new("e2e-dhcpc");
    let leases = dir.join("leases");
    let hub_log = dir.join("hub.log");
    tap_hub(
        &mut ns,
        &dir,
        Some(TAP_MAC),
        None,
        &[
            "--dhcp-range",
            "10.0.3.100,10.0.3.200,10m",
            "--dhcp-host",
            &format!("{TAP_MAC},10.0.3.55,tapper"),
            "--domain",
            "cluster",
            "--dhcp-option",
            "option:ntp-server,10.0.3.1",
            "--dhcp-option",
            "option:mtu,1400",
            "--leasefile",
            leases.to_str().unwrap(),
        ],
    );
    let script = recorder(&dir);
    let lf = dir.join("dhclient.leases");
    let pf = dir.join("dhclient.pid");
    let dhclient = |ns: &Netns, extra: &[&str]| dhclient_cmd(ns, &script, &lf, &pf, extra);

    // 1. The whole exchange.
    let cmd = dhclient(&ns, &[]);
    let c = ns.spawn(cmd, &dir.join("dhclient1.log"));
    let v = wait_record(&dir, "BOUND", Duration::from_secs(30));
    assert_eq!(v.get("new_ip_address").map(String::as_str), Some("10.0.3.55"), "{v:?}");
    assert_eq!(v.get("new_subnet_mask").map(String::as_str), Some("255.255.255.0"));
    assert_eq!(v.get("new_routers").map(String::as_str), Some("10.0.3.1"));
    assert_eq!(v.get("new_domain_name_servers").map(String::as_str), Some("10.0.3.1"));
    assert_eq!(v.get("new_domain_name").map(String::as_str), Some("cluster"));
    assert_eq!(v.get("new_host_name").map(String::as_str), Some("tapper"));
    assert_eq!(v.get("new_ntp_servers").map(String::as_str), Some("10.0.3.1"));
    assert_eq!(v.get("new_interface_mtu").map(String::as_str), Some("1400"));
    assert_eq!(v.get("new_dhcp_lease_time").map(String::as_str), Some("600"));
    assert_eq!(
        v.get("new_dhcp_server_identifier").map(String::as_str),
        Some("10.0.3.1")
    );
    ns.stop(c);

    // 2. Back from its lease file: INIT-REBOOT (a REQUEST for the old address), ACKed.
    let cmd = dhclient(&ns, &[]);
    let c = ns.spawn(cmd, &dir.join("dhclient2.log"));
    let v = wait_record(&dir, "REBOOT", Duration::from_secs(30));
    assert_eq!(v.get("new_ip_address").map(String::as_str), Some("10.0.3.55"), "{v:?}");
    ns.stop(c);

    // 3. RELEASE: a unicast from the leased address, which a configured client
    // holds (the recorder configures nothing), so give it to the interface first.
    run_ok(&mut ns.cmd("ip", &["addr", "add", "10.0.3.55/24", "dev", "vmtap0"]));
    let cmd = dhclient(&ns, &["-r"]);
    let c = ns.spawn(cmd, &dir.join("dhclient3.log"));
    ns.wait(c, Duration::from_secs(30), "dhclient -r");
    assert!(
        wait_for_text(&hub_log, "DHCPRELEASE", Duration::from_secs(10)),
        "{}",
        std::fs::read_to_string(&hub_log).unwrap()
    );
    let list = run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_vmlan"))
            .args(["leases", "--json", "--leasefile"])
            .arg(&leases),
    );
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "[]");

    // 4. dhcpcd in test mode: it reads an OFFER and reports it (client id from its DUID or MAC).
    std::fs::remove_file(dir.join("record.out")).ok();
    let cmd = ns.cmd(
        "dhcpcd",
        &[
            "-4",
            "-T",
            "-f",
            "/dev/null",
            "-c",
            script.to_str().unwrap(),
            "-t",
            "20",
            "vmtap0",
        ],
    );
    let c = ns.spawn(cmd, &dir.join("dhcpcd.log"));
    let v = wait_record(&dir, "TEST", Duration::from_secs(40));
    assert_eq!(v.get("new_ip_address").map(String::as_str), Some("10.0.3.55"), "{v:?}");
    assert_eq!(v.get("new_domain_name").map(String::as_str), Some("cluster"));
    assert_eq!(v.get("new_host_name").map(String::as_str), Some("tapper"));
    ns.stop(c);
}

/// `--dhcp-option 3` (no value): dhclient's ACK carries no router at all, not
/// even the hub's default, while the other options still come.
#[test]
fn dhclient_gets_no_router_when_option_3_has_no_value() {
    let dir = scratch("dhcp-no-router");
    let mut ns = Netns::new("e2e-norouter");
    tap_hub(
        &mut ns,
        &dir,
        Some("02:00:00:00:55:66"),
        None,
        &["--dhcp-range", "10.0.3.100,10.0.3.200", "--dhcp-option", "3"],
    );
    let script = recorder(&dir);
    let cmd = ns.cmd(
        "dhclient",
        &[
            "-4",
            "-d",
            "-v",
            "-sf",
            script.to_str().unwrap(),
            "-lf",
            dir.join("dhclient.leases").to_str().unwrap(),
            "-pf",
            dir.join("dhclient.pid").to_str().unwrap(),
            "vmtap0",
        ],
    );
    let c = ns.spawn(cmd, &dir.join("dhclient.log"));
    let v = wait_record(&dir, "BOUND", Duration::from_secs(30));
    ns.stop(c);
    assert_eq!(v.get("new_ip_address").map(String::as_str), Some("10.0.3.100"), "{v:?}");
    assert_eq!(v.get("new_routers"), None, "option 3 was sent: {v:?}");
    assert_eq!(v.get("new_domain_name_servers").map(String::as_str), Some("10.0.3.1"));
    assert_eq!(v.get("new_subnet_mask").map(String::as_str), Some("255.255.255.0"));
}

/// A client gets back the address it last had (dnsmasq's behaviour): dhclient
/// leases and releases (`dhclient -r`); another MAC leases; dhclient comes back
/// with its lease file gone (so it cannot ask for its old address) and gets the
/// same address. It releases again, the hub restarts, a third MAC comes first,
/// and dhclient still gets its address back.
#[test]
fn dhclient_gets_its_address_back_after_release_and_restart() {
    const A: &str = "02:00:00:00:aa:01";
    const B: &str = "02:00:00:00:aa:02";
    const C: &str = "02:00:00:00:aa:03";
    let dir = scratch("dhcp-same-address");
    let mut ns = Netns::new("e2e-sameaddr");
    run_all(&ns, &[&["ip", "tuntap", "add", "dev", "vmtap0", "mode", "tap"]]);
    let leases = dir.join("leases");
    let hub_args = [
        "hub",
        "--tap",
        "vmtap0",
        "--addr",
        "10.0.3.1/24",
        "--dhcp-range",
        "10.0.3.100,10.0.3.200",
        "--leasefile",
        leases.to_str().unwrap(),
        "--no-resolv",
    ];
    let hub_log = dir.join("hub.log");
    let cmd = ns.cmd(env!("CARGO_BIN_EXE_vmlan"), &hub_args);
    let hub = start_hub_cmd(&mut ns, cmd, &hub_log);
    let script = recorder(&dir);
    let pf = dir.join("dhclient.pid");
    let dhclient = |ns: &Netns, lf: &Path, extra: &[&str]| dhclient_cmd(ns, &script, lf, &pf, extra);
    // A fresh dhclient (no lease file: nothing to ask for) on `mac`: its address.
    let bound = |ns: &mut Netns, mac: &str, tag: &str| -> String {
        run_all(
            ns,
            &[
                &["ip", "link", "set", "vmtap0", "down"],
                &["ip", "link", "set", "vmtap0", "address", mac],
                &["ip", "link", "set", "vmtap0", "up"],
            ],
        );
        let _ = std::fs::remove_file(dir.join("record.out"));
        let lf = dir.join(format!("{tag}.leases"));
        let cmd = dhclient(ns, &lf, &[]);
        let c = ns.spawn(cmd, &dir.join(format!("{tag}.log")));
        let v = wait_record(&dir, "BOUND", Duration::from_secs(30));
        ns.stop(c);
        v.get("new_ip_address").cloned().unwrap_or_default()
    };
    // `dhclient -r` with the lease file of run `tag`: a RELEASE from the address.
    let release = |ns: &mut Netns, ip: &str, tag: &str| {
        let released = std::fs::read_to_string(&hub_log)
            .unwrap()
            .matches("DHCPRELEASE")
            .count();
        let cidr = format!("{ip}/24");
        run_ok(&mut ns.cmd("ip", &["addr", "add", &cidr, "dev", "vmtap0"]));
        let cmd = dhclient(ns, &dir.join(format!("{tag}.leases")), &["-r"]);
        let c = ns.spawn(cmd, &dir.join(format!("{tag}-release.log")));
        ns.wait(c, Duration::from_secs(30), "dhclient -r");
        run_ok(&mut ns.cmd("ip", &["addr", "del", &cidr, "dev", "vmtap0"]));
        let start = std::time::Instant::now();
        while std::fs::read_to_string(&hub_log)
            .unwrap()
            .matches("DHCPRELEASE")
            .count()
            == released
        {
            assert!(start.elapsed() < Duration::from_secs(10), "no RELEASE seen by the hub");
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    let a = bound(&mut ns, A, "a1");
    assert_eq!(a, "10.0.3.100");
    release(&mut ns, &a, "a1");
    assert_eq!(
        bound(&mut ns, B, "b1"),
        "10.0.3.101",
        "a new client takes a new address"
    );
    assert_eq!(bound(&mut ns, A, "a2"), a, "A is given back the address it last had");
    release(&mut ns, &a, "a2");
    // The hub restarts (the lease file holds A's ended lease); C comes first.
    ns.stop(hub);
    let cmd = ns.cmd(env!("CARGO_BIN_EXE_vmlan"), &hub_args);
    start_hub_cmd(&mut ns, cmd, &dir.join("hub2.log"));
    assert_eq!(
        bound(&mut ns, C, "c1"),
        "10.0.3.102",
        "after a restart the cursor goes on"
    );
    assert_eq!(bound(&mut ns, A, "a3"), a, "A's address survived the restart");
    // `vmlan leases` lists the live leases only.
    let list = run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_vmlan"))
            .args(["leases", "--json", "--leasefile"])
            .arg(&leases),
    );
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let ips: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ip"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["10.0.3.100", "10.0.3.101", "10.0.3.102"], "{v}");
}

#[test]
fn perfdhcp_as_a_relay_gets_every_exchange_answered() {
    let dir = scratch("perfdhcp");
    let mut ns = Netns::new("e2e-perfdhcp");
    let hub_log = dir.join("hub.log");
    tap_hub(
        &mut ns,
        &dir,
        None,
        Some("10.0.3.250/24"),
        &["--dhcp-range", "10.0.3.10,10.0.3.200"],
    );
    perfdhcp_warm_up(&ns, "10.0.3.250", "10.0.3.1");
    // Only what the main run is granted counts (the warm-up may have completed its own exchange).
    let log_start = std::fs::metadata(&hub_log).map(|m| m.len() as usize).unwrap_or(0);
    // 100 exchanges at 50/s from 100 clients, every one answered.
    perfdhcp_all_answered(&ns, "10.0.3.250", "10.0.3.1", 100, &[]);
    // One lease per client: a REQUEST perfdhcp retransmits on a loaded machine is ACKed
    // again, so ACK lines are counted by client MAC.
    let log = std::fs::read_to_string(&hub_log).unwrap();
    let clients: std::collections::HashSet<&str> = log
        .get(log_start..)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("lease granted"))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("mac=")))
        .collect();
    assert_eq!(clients.len(), 100, "{log}");
}

/// A lease's name lives exactly as long as the lease: dhclient (sending the
/// hostname "scratch") leases, renews twice (comes back from its lease file:
/// INIT-REBOOT REQUESTs, ACKed), then releases; `scratch.cluster` and the PTR
/// are gone from `--dns-listen` at once, while a `--host-record` stays.
#[test]
fn dhclient_lease_name_goes_with_its_release_after_renewals() {
    let dir = scratch("dhcp-lease-name");
    let mut ns = Netns::new("e2e-leasename");
    run_ok(&mut ns.cmd("ip", &["link", "set", "lo", "up"]));
    let hub_log = dir.join("hub.log");
    tap_hub(
        &mut ns,
        &dir,
        Some(TAP_MAC),
        None,
        &[
            "--dhcp-range",
            "10.0.3.100,10.0.3.200,10m",
            "--domain",
            "cluster",
            "--host-record",
            "gateway,10.0.3.254",
            "--dns-listen",
            "127.0.0.1:5353",
        ],
    );
    let script = recorder(&dir);
    let cf = dir.join("dhclient.conf");
    std::fs::write(&cf, "send host-name \"scratch\";\n").unwrap();
    let lf = dir.join("dhclient.leases");
    let pf = dir.join("dhclient.pid");
    let dhclient = |ns: &Netns, extra: &[&str]| {
        let mut a = vec!["-cf", cf.to_str().unwrap()];
        a.extend_from_slice(extra);
        dhclient_cmd(ns, &script, &lf, &pf, &a)
    };

    let c = ns.spawn(dhclient(&ns, &[]), &dir.join("dhclient1.log"));
    let v = wait_record(&dir, "BOUND", Duration::from_secs(30));
    ns.stop(c);
    let ip = v.get("new_ip_address").cloned().unwrap_or_default();
    assert_eq!(ip, "10.0.3.100", "{v:?}");
    for n in 2..=3 {
        std::fs::remove_file(dir.join("record.out")).ok();
        let c = ns.spawn(dhclient(&ns, &[]), &dir.join(format!("dhclient{n}.log")));
        let v = wait_record(&dir, "REBOOT", Duration::from_secs(30));
        ns.stop(c);
        assert_eq!(v.get("new_ip_address"), Some(&ip), "renewal {n}: {v:?}");
    }
    assert_eq!(
        dig_status(&ns, "scratch.cluster", "A"),
        ("NOERROR".to_string(), vec![ip.clone()])
    );
    let (status, ptr) = dig_status(&ns, "100.3.0.10.in-addr.arpa", "PTR");
    assert_eq!(
        (status.as_str(), ptr),
        ("NOERROR", vec!["scratch.cluster.".to_string()])
    );

    // RELEASE: a unicast from the leased address, so the interface holds it.
    let cidr = format!("{ip}/24");
    run_ok(&mut ns.cmd("ip", &["addr", "add", &cidr, "dev", "vmtap0"]));
    let c = ns.spawn(dhclient(&ns, &["-r"]), &dir.join("dhclient-release.log"));
    ns.wait(c, Duration::from_secs(30), "dhclient -r");
    run_ok(&mut ns.cmd("ip", &["addr", "del", &cidr, "dev", "vmtap0"]));
    assert!(
        wait_for_text(&hub_log, "DHCPRELEASE", Duration::from_secs(10)),
        "{}",
        std::fs::read_to_string(&hub_log).unwrap()
    );
    let (status, answers) = dig_status(&ns, "scratch.cluster", "A");
    assert_eq!(
        (status.as_str(), answers.len()),
        ("NXDOMAIN", 0),
        "the name goes with the lease"
    );
    let (status, ptr) = dig_status(&ns, "100.3.0.10.in-addr.arpa", "PTR");
    assert!(
        ptr.is_empty() && status == "NXDOMAIN",
        "the PTR goes too: {status} {ptr:?}"
    );
    assert_eq!(
        dig_status(&ns, "gateway.cluster", "A"),
        ("NOERROR".to_string(), vec!["10.0.3.254".to_string()]),
        "configured records stay"
    );
}
