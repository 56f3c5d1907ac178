//! End to end (issue 3): one hub in a private network namespace serving six
//! real QEMU guests, each on a different QEMU transport, all on one switched
//! segment: `socket,mcast=`, `stream` over a unix socket (with `reconnect-ms`),
//! `socket,connect=` over TCP, `dgram` over unix sockets, `socket,udp=`, and a
//! `stream,server=on` guest that the hub dials (`--connect`). Each guest gets its
//! reserved lease and pings the three others by name. A host tap bridged with
//! `--tap` (its host side addressed in the subnet) pings every guest. Then the
//! hub is killed and restarted while the `stream` guest runs: that guest
//! reconnects by itself, and its later lookups and pings succeed.
//!
//! The hub and the guests run as the unprivileged user `nobody` with no
//! capabilities, as users run them; root only makes the namespace and the tap
//! (created for `nobody` beforehand, as a user would have an admin do once).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// (name, MAC, ssh port)
const GUESTS: [(&str, &str, u16); 6] = [
    ("mc", "00:00:00:10:00:01", 10031),
    ("st", "00:00:00:10:00:02", 10032),
    ("tc", "00:00:00:10:00:03", 10033),
    ("dg", "00:00:00:10:00:04", 10034),
    ("ud", "00:00:00:10:00:05", 10035),
    ("cn", "00:00:00:10:00:06", 10036),
];

fn ip_of(i: usize) -> String {
    format!("10.0.3.{}", 11 + i)
}

/// (name, MAC, reserved IP) of every guest.
fn reservations() -> Vec<(&'static str, &'static str, String)> {
    GUESTS.iter().enumerate().map(|(i, g)| (g.0, g.1, ip_of(i))).collect()
}

fn start_hub(ns: &mut Netns, dir: &Path, bin: &Path, log: &str, extra: &[&str]) -> usize {
    let mut args = lab_hub_args(bin, dir, &reservations());
    args.extend(
        ["--mcast", "230.0.0.1:1234", "--tap", "vmtap0"]
            .iter()
            .map(|s| s.to_string()),
    );
    args.extend(["--stream".into(), format!("unix:{}", dir.join("hub.sock").display())]);
    args.extend(["--stream".into(), "tcp:127.0.0.1:5555".into()]);
    args.extend(["--dgram".into(), format!("unix:{}", dir.join("hub.dgram").display())]);
    args.extend(["--dgram".into(), "udp:127.0.0.1:6000".into()]);
    args.extend(["--connect".into(), format!("unix:{}", dir.join("cn.sock").display())]);
    args.extend(extra.iter().map(|s| s.to_string()));
    // On a stock system /dev/net/tun is 0666 (udev), so users open their own
    // taps; this machine may have it 0600. Give the hub, in a mount namespace of
    // its own, a 0666 node for the same device over /dev/net/tun: the system's
    // node is left as it is.
    let tun = dir.join("tun");
    if !tun.exists() {
        run_ok(
            Command::new("mknod")
                .args(["-m", "666"])
                .arg(&tun)
                .args(["c", "10", "200"]),
        );
    }
    let mut shell = vec![
        "-m",
        "--",
        "sh",
        "-c",
        r#"mount --bind "$0" /dev/net/tun && exec setpriv "$@""#,
        tun.to_str().unwrap(),
    ];
    shell.extend(args.iter().map(String::as_str));
    let cmd = ns.cmd("unshare", &shell);
    start_hub_cmd(ns, cmd, &dir.join(log))
}

#[test]
fn four_transports_one_segment_tap_and_hub_restart() {
    guest();
    let (dir, bin) = unprivileged_dir("transports");
    let mut ns = Netns::new("e2e-tr");
    // A persistent tap for the (unprivileged) hub, its host side in the subnet.
    run_all(
        &ns,
        &[
            &["ip", "tuntap", "add", "dev", "vmtap0", "mode", "tap", "user", "nobody"],
            &["ip", "addr", "add", "10.0.3.250/24", "dev", "vmtap0"],
            &["ip", "link", "set", "vmtap0", "up"],
        ],
    );
    let hub = start_hub(&mut ns, &dir, &bin, "hub.log", &[]);

    let netdevs = [
        "socket,id=seg,mcast=230.0.0.1:1234,localaddr=127.0.0.1".to_string(),
        format!(
            "stream,id=seg,server=off,addr.type=unix,addr.path={},reconnect-ms=500",
            dir.join("hub.sock").display()
        ),
        "socket,id=seg,connect=127.0.0.1:5555".to_string(),
        format!(
            "dgram,id=seg,local.type=unix,local.path={},remote.type=unix,remote.path={}",
            dir.join("dg.sock").display(),
            dir.join("hub.dgram").display()
        ),
        "socket,id=seg,udp=127.0.0.1:6000,localaddr=127.0.0.1:6001".to_string(),
        format!(
            "stream,id=seg,server=on,addr.type=unix,addr.path={}",
            dir.join("cn.sock").display()
        ),
    ];
    let mut procs = vec![];
    for (i, (name, mac, port)) in GUESTS.iter().enumerate() {
        let names: Vec<&str> = GUESTS.iter().map(|g| g.0).collect();
        let mut actions = round1_actions(&names, name);
        if *name == "st" {
            // After the hub restarts (the new hub alone knows `restarted`), look up and ping again.
            actions.push_str(" vmtest.resolve2=restarted vmtest.ping2=10.0.3.1,mc,dg,ud,cn");
        } else {
            // Stay up for the tap pings and the restart; the test kills them at the end.
            actions.push_str(" vmtest.hold=300");
        }
        let spec = GuestSpec {
            mac,
            ssh_port: *port,
            netdev: netdevs[i].clone(),
            actions,
            unprivileged: Some(&dir),
        };
        let log = dir.join(format!("{name}.console"));
        procs.push((ns.spawn(qemu(&ns, &spec), &log), log));
    }
    let logs: Vec<_> = procs.iter().map(|p| p.1.clone()).collect();
    wait_round1(&logs, Duration::from_secs(240));

    check_round1(&reservations(), &logs, &dir.join("hub.log"));

    // The host side of the tap reaches every guest.
    for i in 0..GUESTS.len() {
        let ip = ip_of(i);
        let out = ns
            .cmd("ping", &["-c", "3", "-i", "0.2", "-W", "2", &ip])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tap host cannot ping {ip}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(dir.join("hub.log")).unwrap_or_default()
        );
    }

    // SIGUSR1: per-port counters and the MAC table, every transport and guest in it.
    let pid = ns.child(hub).id().to_string();
    run_ok(Command::new("kill").args(["-USR1", &pid]));
    let log = dir.join("hub.log");
    assert!(wait_for_text(
        &log,
        "mac 00:00:00:10:00:06 port",
        Duration::from_secs(5)
    ));
    let report = std::fs::read_to_string(&log).unwrap();
    for kind in [
        "host:",
        "mcast:230.0.0.1:1234",
        "stream:unix:",
        "stream:tcp:",
        "dgram:unix:",
        "dgram:udp:",
        "connect:unix:",
        "tap:vmtap0",
    ] {
        let line = report.lines().find(|l| l.starts_with("port ") && l.contains(kind));
        let line = line.unwrap_or_else(|| panic!("no port line for {kind}:\n{report}"));
        assert!(
            line.contains("rx ") && line.contains("drops ") && line.contains("errors "),
            "{line}"
        );
    }
    for (_, mac, _) in GUESTS {
        assert!(
            report.contains(&format!("mac {mac} port")),
            "{mac} not in the MAC table:\n{report}"
        );
    }

    // Kill the hub (no goodbye) and start a new one that also knows `restarted`.
    run_ok(Command::new("kill").args(["-KILL", &pid]));
    let _ = ns.child(hub).wait();
    let _hub2 = start_hub(
        &mut ns,
        &dir,
        &bin,
        "hub2.log",
        &["--host-record", "restarted,10.0.3.1"],
    );
    let st = 1;
    ns.wait(procs[st].0, Duration::from_secs(180), "guest st after the restart");
    let r = parse_console(&logs[st]);
    let ctx = format!(
        "guest st:\n{}\nhub2:\n{}",
        r.console,
        std::fs::read_to_string(dir.join("hub2.log")).unwrap()
    );
    assert_eq!(
        r.resolved2.get("restarted").map(String::as_str),
        Some("10.0.3.1"),
        "{ctx}"
    );
    for t in ["10.0.3.1", "mc", "dg", "ud", "cn"] {
        assert_eq!(r.pings2.get(t), Some(&true), "st pings {t} after the restart; {ctx}");
    }
    assert!(r.done, "{ctx}");
    let hub2 = std::fs::read_to_string(dir.join("hub2.log")).unwrap();
    assert!(
        hub2.contains("client connected"),
        "the stream guest reconnected: {hub2}"
    );
}
