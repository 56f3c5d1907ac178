//! End to end (issue 13): vhost-user ports beside socket ports on one segment.
//! Five real QEMU guests (TCG, the busybox test guest) in a private network
//! namespace, all run as the unprivileged user `nobody` with no hugepages:
//! - `va` and `vc` on vhost-user ports the hub listens on (`--vhost-user`;
//!   QEMU's chardev is a client with `reconnect-ms`),
//! - `vb` on a vhost-user port the hub dials (`--vhost-user-connect`; QEMU's
//!   chardev is a server, `server=on,wait=off`),
//! - `mc` on the multicast segment and `st` on a unix stream.
//!
//! The vhost-user guests' memory is a shared memfd
//! (`memory-backend-memfd,share=on`). All five get their reserved leases,
//! resolve and ping each other and the hub. Then `vc` is killed with SIGKILL:
//! the hub logs its port removed and drops its MAC, and keeps serving. Then
//! the hub is killed and restarted: QEMU reconnects `va` by itself, the new hub
//! dials `vb` again, and both resolve a name only the new hub knows and ping
//! the hub, each other, `mc` and `st`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// (name, MAC, ssh port)
const GUESTS: [(&str, &str, u16); 5] = [
    ("va", "00:00:00:13:00:01", 10131),
    ("vb", "00:00:00:13:00:02", 10132),
    ("mc", "00:00:00:13:00:03", 10133),
    ("st", "00:00:00:13:00:04", 10134),
    ("vc", "00:00:00:13:00:05", 10135),
];
const VA: usize = 0;
const VB: usize = 1;
const VC: usize = 4;

fn ip_of(i: usize) -> String {
    format!("10.0.3.{}", 21 + i)
}

/// (name, MAC, reserved IP) of every guest.
fn reservations() -> Vec<(&'static str, &'static str, String)> {
    GUESTS.iter().enumerate().map(|(i, g)| (g.0, g.1, ip_of(i))).collect()
}

fn start_hub(ns: &mut Netns, dir: &Path, bin: &Path, log: &str, extra: &[&str]) -> usize {
    let mut args = lab_hub_args(bin, dir, &reservations());
    args.extend(["--mcast".into(), "230.0.0.1:1234".into()]);
    args.extend(["--stream".into(), format!("unix:{}", dir.join("hub.sock").display())]);
    for p in ["va.vhost", "vc.vhost"] {
        args.extend(["--vhost-user".into(), dir.join(p).display().to_string()]);
    }
    args.extend([
        "--vhost-user-connect".into(),
        dir.join("vb.vhost").display().to_string(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmd = ns.cmd("setpriv", &refs);
    start_hub_cmd(ns, cmd, &dir.join(log))
}

/// SIGUSR1 to the hub `pid`, then the report it logged to `log` (after `mark`
/// appeared in it).
fn report(pid: &str, log: &Path, mark: &str) -> String {
    run_ok(Command::new("kill").args(["-USR1", pid]));
    assert!(
        wait_for_text(log, mark, Duration::from_secs(5)),
        "no report in {}",
        log.display()
    );
    std::fs::read_to_string(log).unwrap()
}

#[test]
fn vhost_user_guests_share_the_segment_survive_a_guest_kill_and_a_hub_restart() {
    guest();
    let (dir, bin) = unprivileged_dir("vhost");
    let mut ns = Netns::new("e2e-vu");
    let hub = start_hub(&mut ns, &dir, &bin, "hub.log", &[]);

    let shared_memory = [
        "-object",
        "memory-backend-memfd,id=mem,size=256M,share=on",
        "-numa",
        "node,memdev=mem",
    ];
    let client = |p: &str| format!("socket,id=vhu,path={},reconnect-ms=500", dir.join(p).display());
    let chardevs = [
        Some(client("va.vhost")),
        Some(format!(
            "socket,id=vhu,path={},server=on,wait=off",
            dir.join("vb.vhost").display()
        )),
        None,
        None,
        Some(client("vc.vhost")),
    ];
    let vhost = "vhost-user,id=seg,chardev=vhu".to_string();
    let netdevs = [
        vhost.clone(),
        vhost.clone(),
        "socket,id=seg,mcast=230.0.0.1:1234,localaddr=127.0.0.1".to_string(),
        format!(
            "stream,id=seg,server=off,addr.type=unix,addr.path={},reconnect-ms=500",
            dir.join("hub.sock").display()
        ),
        vhost,
    ];
    let mut procs = vec![];
    for (i, (name, mac, port)) in GUESTS.iter().enumerate() {
        let names: Vec<&str> = GUESTS.iter().map(|g| g.0).collect();
        let mut actions = round1_actions(&names, name);
        if i == VA || i == VB {
            // After vc's death and the hub's restart (only the new hub knows `restarted`).
            let peer = if i == VA { "vb" } else { "va" };
            actions.push_str(&format!(
                " vmtest.resolve2=restarted vmtest.ping2=10.0.3.1,{peer},mc,st"
            ));
        }
        // Stay up for the others' pings; the namespace's end stops them.
        actions.push_str(" vmtest.hold=400");
        let spec = GuestSpec {
            mac,
            ssh_port: *port,
            netdev: netdevs[i].clone(),
            actions,
            unprivileged: Some(&dir),
        };
        let mut cmd = qemu(&ns, &spec);
        if let Some(chardev) = &chardevs[i] {
            cmd.args(shared_memory).args(["-chardev", chardev]);
        }
        let log = dir.join(format!("{name}.console"));
        procs.push((ns.spawn(cmd, &log), log));
    }
    let logs: Vec<_> = procs.iter().map(|p| p.1.clone()).collect();
    wait_round1(&logs, Duration::from_secs(300));

    let hub_log = dir.join("hub.log");
    check_round1(&reservations(), &logs, &hub_log);

    // The three vhost-user ports are in the report, with traffic and no errors.
    let pid = ns.child(hub).id().to_string();
    let text = report(&pid, &hub_log, "mac 00:00:00:13:00:05 port");
    for sock in ["vhost-user:", "vhost-user-connect:"]
        .iter()
        .zip(["va.vhost", "vb.vhost"])
    {
        let line = text
            .lines()
            .find(|l| l.starts_with("port ") && l.contains(sock.0) && l.contains(sock.1))
            .unwrap_or_else(|| panic!("no port line for {sock:?}:\n{text}"));
        assert!(line.contains("errors 0"), "{line}");
        assert!(!line.contains("rx 0 frames"), "{line}");
    }

    // SIGKILL vc: its port goes away (and its MAC with it); the hub stays up.
    let vc_pid = ns.child(procs[VC].0).id().to_string();
    run_ok(Command::new("kill").args(["-KILL", &vc_pid]));
    assert!(
        wait_for_text(&hub_log, "vhost-user port removed", Duration::from_secs(10)),
        "vc's port was not removed:\n{}",
        std::fs::read_to_string(&hub_log).unwrap()
    );
    let before = std::fs::read_to_string(&hub_log).unwrap().len();
    run_ok(Command::new("kill").args(["-USR1", &pid]));
    std::thread::sleep(Duration::from_secs(1));
    let after = std::fs::read_to_string(&hub_log).unwrap();
    let second = &after[before..];
    assert!(
        second.contains("mac 00:00:00:13:00:02 port"),
        "no second report:\n{second}"
    );
    assert!(
        !second.contains("mac 00:00:00:13:00:05"),
        "vc's MAC outlived its port:\n{second}"
    );
    assert!(
        second.contains("mac 00:00:00:13:00:01 port"),
        "va's MAC is gone:\n{second}"
    );
    assert!(ns.child(hub).try_wait().unwrap().is_none(), "the hub died with vc");

    // Kill the hub (no goodbye) and start a new one that also knows `restarted`:
    // QEMU reconnects va, the new hub dials vb, and both work through it.
    run_ok(Command::new("kill").args(["-KILL", &pid]));
    let _ = ns.child(hub).wait();
    let _hub2 = start_hub(
        &mut ns,
        &dir,
        &bin,
        "hub2.log",
        &["--host-record", "restarted,10.0.3.1"],
    );
    let hub2_log = dir.join("hub2.log");
    for (i, name) in [(VA, "va"), (VB, "vb")] {
        // `st` is the last target of round two.
        let finished = wait_for_text(&logs[i], "VMTEST ping2 st", Duration::from_secs(240));
        let r = parse_console(&logs[i]);
        let hub2 = std::fs::read_to_string(&hub2_log).unwrap();
        let ctx = format!("guest {name}:\n{}\nhub2:\n{hub2}", r.console);
        assert!(finished, "{name} did not finish round two; {ctx}");
        assert_eq!(
            r.resolved2.get("restarted").map(String::as_str),
            Some("10.0.3.1"),
            "{ctx}"
        );
        for t in ["10.0.3.1", "va", "vb", "mc", "st"].iter().filter(|t| **t != name) {
            assert_eq!(
                r.pings2.get(*t),
                Some(&true),
                "{name} pings {t} after the restart; {ctx}"
            );
        }
    }
    let hub2 = std::fs::read_to_string(&hub2_log).unwrap();
    for p in ["vhost-user:", "vhost-user-connect:"]
        .iter()
        .zip(["va.vhost", "vb.vhost"])
    {
        assert!(
            hub2.lines()
                .any(|l| l.contains("vhost-user frontend connected") && l.contains(p.0) && l.contains(p.1)),
            "{p:?} did not come back:\n{hub2}"
        );
    }
}
