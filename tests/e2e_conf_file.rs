//! `--conf-file` (dnsmasq's configuration format, issue 15): a dnsmasq.conf
//! taken from the Yomi recipe's flags (examples/yomi-dnsmasq.conf) starts the
//! same hub as the flags. Two hubs, one given the flags and one the file (the
//! ports, the address and the DNS listener on the command line for both), each
//! in a network namespace the test creates, behind a tap: ISC dhclient gets the
//! same reserved and pool addresses, router, DNS server, domain, host name and
//! lease time from both; `dig` gets the same answers for the recipe's names;
//! both write the lease file the configuration names. The example passes real
//! dnsmasq's `--test`, and `vmlan hub --conf-file ... --test` prints the
//! configuration-OK line; bad lines stop the hub naming FILE:LINE.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// worker1's reserved MAC in the recipe.
const RESERVED_MAC: &str = "00:00:00:22:22:22";
/// A MAC with no reservation: a pool lease.
const POOL_MAC: &str = "52:54:00:00:00:77";

/// The Yomi recipe's settings as `vmlan hub` flags (examples/yomi-hub.toml).
const YOMI_FLAGS: &[&str] = &[
    "--dhcp-range",
    "10.0.3.100,10.0.3.200,12h",
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
    "--leasefile",
    "leases",
];

fn example() -> PathBuf {
    repo().join("examples/yomi-dnsmasq.conf")
}

/// One hub in its own namespace behind the tap vmtap0, run in its own
/// directory (the lease file `leases` is relative), with `config` flags.
struct Side {
    ns: Netns,
    dir: PathBuf,
    log: PathBuf,
}

impl Side {
    fn start(tag: &str, config: &[&str]) -> Side {
        let dir = scratch(&format!("conf-file-{tag}"));
        let mut ns = Netns::new(&format!("conf-{tag}"));
        tap(&ns, "vmtap0", Some(RESERVED_MAC), None);
        let mut args = vec![
            "hub",
            "--tap",
            "vmtap0",
            "--addr",
            "10.0.3.1/24",
            "--no-resolv",
            "--dns-listen",
            "127.0.0.1:5353",
        ];
        args.extend_from_slice(config);
        let mut cmd = ns.cmd(env!("CARGO_BIN_EXE_vmlan"), &args);
        cmd.current_dir(&dir);
        let log = dir.join("hub.log");
        start_hub_cmd(&mut ns, cmd, &log);
        Side { ns, dir, log }
    }

    /// A DHCP exchange by ISC dhclient on vmtap0 with the tap's MAC set to
    /// `mac`: every `new_*` variable dhclient hands its script.
    fn dhcp(&mut self, mac: &str, name: &str) -> BTreeMap<String, String> {
        run_all(
            &self.ns,
            &[
                &["ip", "link", "set", "vmtap0", "down"],
                &["ip", "link", "set", "vmtap0", "address", mac],
                &["ip", "link", "set", "vmtap0", "up"],
            ],
        );
        let out = self.dir.join(format!("{name}.out"));
        let script = dhcp_recorder(&self.dir, &out);
        let c = spawn_dhclient(&mut self.ns, &self.dir, name, "vmtap0", &script, &["-4"]);
        let v = wait_dhcp_record(&out, "BOUND", Duration::from_secs(60));
        self.ns.stop(c);
        assert!(v.contains_key("new_expiry"), "{v:?}");
        // new_expiry is the clock's: the two exchanges may be a second apart.
        v.into_iter()
            .filter(|(k, _)| k.starts_with("new_") && k != "new_expiry")
            .collect()
    }

    /// The answers `dig` gets from this hub's --dns-listen for each query.
    fn answers(&self, queries: &[(&str, &str)]) -> Vec<(String, String, String, Vec<String>)> {
        queries
            .iter()
            .map(|(name, t)| {
                let (status, data) = dig_status(&self.ns, name, t);
                (name.to_string(), t.to_string(), status, data)
            })
            .collect()
    }
}

#[test]
fn conf_file_from_the_yomi_recipe_starts_the_same_hub_as_the_flags() {
    // The example is dnsmasq's own format: real dnsmasq accepts it.
    let o = run_ok(
        Command::new("dnsmasq")
            .arg("--test")
            .arg(format!("--conf-file={}", example().display())),
    );
    assert!(output_text(&o).contains("syntax check OK"), "{}", output_text(&o));

    let mut flags = Side::start("flags", YOMI_FLAGS);
    let conf_path = example();
    let mut conf = Side::start("file", &["--conf-file", conf_path.to_str().unwrap()]);
    let conf_log = std::fs::read_to_string(&conf.log).unwrap();
    for (line, name) in [(19, "interface"), (20, "except-interface"), (22, "bind-interfaces")] {
        let needle = format!("yomi-dnsmasq.conf:{line}: ignoring dnsmasq's `{name}`");
        assert!(conf_log.contains(&needle), "no {needle:?} in the log: {conf_log}");
    }

    // A reserved client and a pool client, on each hub.
    let reserved = flags.dhcp(RESERVED_MAC, "reserved");
    assert_eq!(
        reserved,
        conf.dhcp(RESERVED_MAC, "reserved"),
        "the reserved client's lease"
    );
    for (k, want) in [
        ("new_ip_address", "10.0.3.102"),
        ("new_host_name", "worker1"),
        ("new_routers", "10.0.3.101"),
        ("new_domain_name_servers", "10.0.3.1"),
        ("new_domain_name", "cluster"),
        ("new_subnet_mask", "255.255.255.0"),
        ("new_dhcp_server_identifier", "10.0.3.1"),
    ] {
        assert_eq!(reserved.get(k).map(String::as_str), Some(want), "{k}: {reserved:?}");
    }
    assert_eq!(
        reserved.get("new_dhcp_lease_time").map(String::as_str),
        Some("43200"),
        "the range's 12h: {reserved:?}"
    );
    let pool = flags.dhcp(POOL_MAC, "pool");
    assert_eq!(pool, conf.dhcp(POOL_MAC, "pool"), "the pool client's lease");
    let ip = pool.get("new_ip_address").cloned().unwrap_or_default();
    let last: u8 = ip.rsplit('.').next().and_then(|o| o.parse().ok()).unwrap_or(0);
    assert!(ip.starts_with("10.0.3.") && (100..=200).contains(&last), "{pool:?}");
    assert_eq!(
        pool.get("new_dhcp_lease_time").map(String::as_str),
        Some("43200"),
        "the range's 12h: {pool:?}"
    );

    // The same DNS answers for the recipe's names.
    let queries = [
        ("master", "A"),
        ("master.cluster", "A"),
        ("worker1", "A"),
        ("worker1.cluster", "A"),
        ("101.3.0.10.in-addr.arpa", "PTR"),
        ("102.3.0.10.in-addr.arpa", "PTR"),
        ("nosuch.cluster", "A"),
    ];
    let want = flags.answers(&queries);
    assert_eq!(want, conf.answers(&queries));
    assert_eq!(want[0].2, "NOERROR");
    assert_eq!(want[0].3, ["10.0.3.101"]);
    assert_eq!(want[3].3, ["10.0.3.102"]);
    assert_eq!(want[6].2, "NXDOMAIN");

    // Both keep their leases in `leases` in their own directory.
    for side in [&flags, &conf] {
        let o = run_ok(
            Command::new(env!("CARGO_BIN_EXE_vmlan"))
                .args(["leases", "--json", "--leasefile"])
                .arg(side.dir.join("leases")),
        );
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("10.0.3.102") && text.contains(&ip) && text.contains(POOL_MAC),
            "{}: {text}",
            side.dir.display()
        );
    }
    for side in [&mut flags, &mut conf] {
        assert!(side.ns.child(0).try_wait().unwrap().is_none(), "the hub still runs");
    }
}

/// Runs `vmlan hub ARGS` (no port is opened with --test) in `dir`.
fn hub_test(dir: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_vmlan"))
        .arg("hub")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (o.status.success(), output_text(&o))
}

/// `--test` with a conf file prints the configuration-OK line; a conf file
/// with an option vmlan lacks, or a bad value, stops the hub naming
/// FILE:LINE; `--config` and `--conf-file` go together.
#[test]
fn conf_file_test_flag_and_refusals() {
    let dir = scratch("conf-file-test");
    let ex = example();
    let ex = ex.to_str().unwrap();
    let base = ["--addr", "10.0.3.1/24", "--mcast", "230.0.0.1:1234", "--test"];
    let (ok, out) = hub_test(&dir, &[&["--conf-file", ex][..], &base].concat());
    assert!(ok && out.contains("vmlan: configuration OK"), "{out}");
    let toml = dir.join("ports.toml");
    std::fs::write(&toml, "addr = \"10.0.3.1/24\"\nmcast = [\"230.0.0.1:1234\"]\n").unwrap();
    let (ok, out) = hub_test(&dir, &["--config", toml.to_str().unwrap(), "--conf-file", ex, "--test"]);
    assert!(ok && out.contains("vmlan: configuration OK"), "{out}");

    let bad = dir.join("bad.conf");
    std::fs::write(&bad, "domain=cluster\n# PXE over TFTP\nenable-tftp\n").unwrap();
    let (ok, out) = hub_test(&dir, &[&["--conf-file", bad.to_str().unwrap()][..], &base].concat());
    assert!(!ok, "{out}");
    assert!(
        out.contains("bad.conf:3: vmlan does not support dnsmasq's `enable-tftp`"),
        "{out}"
    );
    std::fs::write(
        &bad,
        "dhcp-range=10.0.3.100,10.0.3.200\ndhcp-host=00:00:00:11:11:11,10.0.3.x,m\n",
    )
    .unwrap();
    let (ok, out) = hub_test(&dir, &[&["--conf-file", bad.to_str().unwrap()][..], &base].concat());
    assert!(
        !ok && out.contains("bad.conf:2: dhcp-host=00:00:00:11:11:11,10.0.3.x,m"),
        "{out}"
    );
    assert!(!out.contains("panicked"), "{out}");
}
