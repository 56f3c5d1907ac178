//! The DHCPv6 lease file checked against dnsmasq itself (issue 12): in a
//! network namespace the test creates, real dnsmasq (`--enable-ra`,
//! `--dhcp-range=1234::10,1234::ff,64,1h`, `--dhcp-leasefile`) on one end of a
//! veth pair leases an address to ISC `dhclient -6` on the other end. dnsmasq's
//! file must have the shape vmlan reads and writes: the `duid SERVER-DUID`
//! line (alone before the first lease, as vmlan's file of a hub without
//! leases), then `EXPIRY IAID ADDR NAME CLIENT-DUID` (epoch seconds, decimal
//! IAID, the address, a name or `*`, colon-separated hex). Then dnsmasq is
//! stopped, the veth deleted, and vmlan starts on a `--tap` with the same
//! MAC and dnsmasq's file as its `--leasefile`: it restores the lease (its
//! report counts it), and a `dhclient -6` with the same DUID but no memory of
//! the address (a lease file with only its `default-duid` line, so it asks for
//! no address) gets the very address dnsmasq gave. vmlan's own file, written
//! at its stop, keeps dnsmasq's `duid` line (vmlan adopts the file's server
//! DUID, as dnsmasq does) and has a line of the same shape for that client
//! with dnsmasq's IAID, address and client DUID. Nothing leaves the namespace.

mod common;

use std::net::Ipv6Addr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

const MAC: &str = "02:00:00:00:78:01";

/// The kind of each field of a leases-file line, to compare dnsmasq's lines with vmlan's.
fn shape(line: &str) -> Vec<&'static str> {
    let hex = |s: &str| !s.is_empty() && s.split(':').all(|b| b.len() == 2 && u8::from_str_radix(b, 16).is_ok());
    line.split(' ')
        .enumerate()
        .map(|(i, f)| match (i, f) {
            (0, "duid") => "duid",
            (_, "*") => "star",
            _ if f.parse::<u64>().is_ok() => "decimal",
            _ if hex(f) => "hex",
            _ if f.parse::<Ipv6Addr>().is_ok() => "ipv6",
            _ if !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') => "name",
            _ => "other",
        })
        .collect()
}

/// The `duid` line and the DHCPv6 lease lines (the rest) of a leases file, checked for shape and expiry.
fn v6_part(file: &str, now: u64) -> (String, Vec<Vec<String>>) {
    let duid = file
        .lines()
        .find(|l| l.starts_with("duid "))
        .unwrap_or_else(|| panic!("no duid line: {file}"));
    assert_eq!(shape(duid), ["duid", "hex"], "{duid}");
    let leases: Vec<Vec<String>> = file
        .lines()
        .skip_while(|l| !l.starts_with("duid "))
        .skip(1)
        .map(|l| {
            let s = shape(l);
            assert!(
                s == ["decimal", "decimal", "ipv6", "star", "hex"]
                    || s == ["decimal", "decimal", "ipv6", "name", "hex"],
                "{l}: {s:?}"
            );
            let f: Vec<String> = l.split(' ').map(str::to_string).collect();
            let expiry: u64 = f[0].parse().unwrap();
            assert!(
                (now..=now + 3600 + 120).contains(&expiry),
                "expiry {expiry}, now {now}: {l}"
            );
            f
        })
        .collect();
    (duid.to_string(), leases)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn dnsmasq_lease_file_shape_matches_and_vmlan_restores_its_dhcp6_lease() {
    let dir = scratch("dnsmasq-leases6");
    let mut ns = Netns::new("e2e-dml6");
    run_ok(&mut ns.cmd("sysctl", &["-q", "-w", "net.ipv6.conf.default.accept_dad=0"]));
    for args in [
        &["link", "add", "d0", "type", "veth", "peer", "name", "c0"][..],
        &["link", "set", "c0", "address", MAC],
        &["addr", "add", "1234::1/64", "dev", "d0"],
        &["link", "set", "d0", "up"],
        &["link", "set", "c0", "up"],
    ] {
        run_ok(&mut ns.cmd("ip", args));
    }

    // 1. dnsmasq leases an address to dhclient -6 and writes its file.
    let dm_leases = dir.join("dnsmasq.leases");
    let dm_log = dir.join("dnsmasq.log");
    let cmd = ns.cmd(
        "dnsmasq",
        &[
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=d0",
            "--bind-interfaces",
            "--enable-ra",
            "--dhcp-range=1234::10,1234::ff,64,1h",
            &format!("--dhcp-leasefile={}", dm_leases.display()),
            "--log-dhcp",
            "--log-facility=-",
            "--user=root",
            &format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
        ],
    );
    let dm = ns.spawn(cmd, &dm_log);
    assert!(
        wait_for_text(&dm_log, "started", Duration::from_secs(10)),
        "{}",
        std::fs::read_to_string(&dm_log).unwrap_or_default()
    );
    // Before any lease, dnsmasq's file is its duid line alone.
    assert!(wait_for_text(&dm_leases, "duid ", Duration::from_secs(10)));
    let dm_empty = std::fs::read_to_string(&dm_leases).unwrap();
    assert_eq!(dm_empty.lines().count(), 1, "{dm_empty}");
    assert_eq!(shape(dm_empty.trim_end()), ["duid", "hex"], "{dm_empty}");
    let (c, out) = dhclient6(&mut ns, &dir, "client1", "c0");
    let v = wait_dhcp_record(&out, "BOUND6", Duration::from_secs(40));
    let addr: Ipv6Addr = v["new_ip6_address"].parse().unwrap();
    ns.stop(c);
    ns.stop(dm);
    let dm_file = std::fs::read_to_string(&dm_leases).unwrap();
    let (dm_duid, dm_lines) = v6_part(&dm_file, now());
    assert_eq!(dm_lines.len(), 1, "{dm_file}");
    assert_eq!(dm_lines[0][2].parse::<Ipv6Addr>().unwrap(), addr, "{dm_file}");
    run_ok(&mut ns.cmd("ip", &["link", "del", "d0"]));

    // 2. vmlan without leases writes its duid line alone too (at its clean stop).
    let empty = dir.join("empty.leases");
    let hub_args = |file: &Path| -> Vec<String> {
        ["--enable-ra", "--dhcp-range", "1234::10,1234::ff,64,1h", "--leasefile"]
            .iter()
            .map(|s| s.to_string())
            .chain([file.display().to_string()])
            .collect()
    };
    let args = hub_args(&empty);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let hub = tap_hub(&mut ns, &dir, Some(MAC), Some("10.0.3.50/24"), &refs);
    ns.stop(hub);
    let vm_empty = std::fs::read_to_string(&empty).unwrap();
    assert_eq!(vm_empty, "duid 00:03:00:01:02:76:6d:00:03:01\n");
    assert_eq!(shape(vm_empty.trim_end()), shape(dm_empty.trim_end()));

    // 3. vmlan on dnsmasq's file restores the lease (a copy: the original stays for the record).
    let leasefile = dir.join("hub.leases");
    std::fs::copy(&dm_leases, &leasefile).unwrap();
    let mut cmd = ns.cmd(
        env!("CARGO_BIN_EXE_vmlan"),
        &["hub", "--tap", "vmtap0", "--no-resolv", "--addr", "10.0.3.1/24"],
    );
    cmd.args(hub_args(&leasefile));
    let hub_log = dir.join("hub2.log");
    let hub = start_hub_cmd(&mut ns, cmd, &hub_log);
    let pid = ns.child(hub).id().to_string();
    run_ok(std::process::Command::new("kill").args(["-USR1", &pid]));
    assert!(
        wait_for_text(&hub_log, "dhcp6 leases 1 in 0 out 0", Duration::from_secs(10)),
        "{}",
        std::fs::read_to_string(&hub_log).unwrap_or_default()
    );

    // 4. The same DUID, asking for no address: vmlan hands back dnsmasq's.
    let duid_line = std::fs::read_to_string(dir.join("client1.leases"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("default-duid "))
        .expect("dhclient's default-duid line")
        .to_string();
    std::fs::write(dir.join("client2.leases"), format!("{duid_line}\n")).unwrap();
    let (c, out) = dhclient6(&mut ns, &dir, "client2", "vmtap0");
    let v = wait_dhcp_record(&out, "BOUND6", Duration::from_secs(40));
    ns.stop(c);
    assert_eq!(
        v["new_ip6_address"].parse::<Ipv6Addr>().unwrap(),
        addr,
        "{v:?}\nhub:\n{}",
        std::fs::read_to_string(&hub_log).unwrap_or_default()
    );

    // 5. vmlan's file: the same shape, dnsmasq's server DUID (vmlan keeps the file's, as
    // dnsmasq does), and dnsmasq's IAID, address and client DUID for that client.
    ns.stop(hub);
    let file = std::fs::read_to_string(&leasefile).unwrap();
    let (duid, lines) = v6_part(&file, now());
    assert_eq!(duid, dm_duid, "server DUID\nvmlan:\n{file}\ndnsmasq:\n{dm_file}");
    assert_eq!(lines.len(), 1, "{file}");
    assert_eq!(
        lines[0][1..3],
        dm_lines[0][1..3],
        "IAID and address\nvmlan:\n{file}\ndnsmasq:\n{dm_file}"
    );
    assert_eq!(
        lines[0][4], dm_lines[0][4],
        "client DUID\nvmlan:\n{file}\ndnsmasq:\n{dm_file}"
    );
    let log = std::fs::read_to_string(&hub_log).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}
