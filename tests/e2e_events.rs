//! End to end (issue 15, `GET /events` and gvproxy's notification socket):
//! in a private network namespace, `vmlan hub --stream unix:... --api
//! unix:... --notification unix:...` with a python3 listener on the
//! notification socket and `curl -N --unix-socket ... /events` reading the
//! stream while a busybox QEMU guest (udhcpc, udhcpc6) comes and goes:
//! - the stream shows the guest's port up (a stream port), its MAC learned on
//!   that port, its DHCPv4 lease bound, renewed and released (udhcpc -R),
//!   bound again and, never renewed, expired after the 2 minute lease; its
//!   DHCPv6 lease bound; and when QEMU is killed its MAC aged and the port
//!   down. A quiet stream outlives the API's 30 s idle limit (keep-alive lines);
//!   `?types=port` carries port lines only;
//! - `?current=true` after the fact starts with a `current` event per live
//!   lease (v4 and v6); a bad `types` gets 400 naming `types`;
//! - `vmlan ctl leases` (table and `--json`) and `vmlan ctl events --json`
//!   read the same hub;
//! - the notification listener gets gvproxy's `ready`, then
//!   `connection_established` and `connection_closed` with the guest's MAC.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const MAC: &str = "00:00:00:15:0e:01";

/// The JSON lines of `path` so far (a line cut short at the end is left out).
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits up to `limit` for a line of `path` matching `want`; panics with the lines past that.
fn wait_line(path: &Path, what: &str, limit: Duration, want: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        if let Some(v) = lines(path).into_iter().find(&want) {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "no {what} within {limit:?} in {}:\n{}",
            path.display(),
            std::fs::read_to_string(path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A lease event `event` of `family` for the guest.
fn lease_is(v: &Value, event: &str, family: &str) -> bool {
    v["type"] == "lease" && v["event"] == event && v["family"] == family && v["mac"] == MAC
}

/// `curl` in `ns` on the API socket: (status, body); `limit` bounds a stream.
fn curl(ns: &Netns, api: &Path, route: &str, limit: &str) -> (u16, String) {
    let url = format!("http://vmlan{route}");
    let out = ns
        .cmd(
            "curl",
            &[
                "-sSN",
                "--max-time",
                limit,
                "--unix-socket",
                api.to_str().unwrap(),
                "-w",
                "\n%{http_code}",
                &url,
            ],
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// A python3 listener on unix socket `sock` appending what each connection
/// sends to `out`.
fn notification_listener(ns: &mut Netns, dir: &Path, sock: &Path, out: &Path) {
    let script = format!(
        r#"
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind({sock:?})
s.listen(16)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    data = b""
    try:
        while True:
            b = c.recv(4096)
            if not b:
                break
            data += b
    except OSError:
        pass
    c.close()
    with open({out:?}, "ab") as f:
        f.write(data)
"#,
        sock = sock.display().to_string(),
        out = out.display().to_string()
    );
    let path = dir.join("listener.py");
    std::fs::write(&path, script).unwrap();
    ns.spawn(ns.cmd("python3", &[path.to_str().unwrap()]), &dir.join("listener.log"));
    let start = Instant::now();
    while !sock.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "the listener did not bind");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn events_and_notifications_follow_a_guest() {
    let dir = scratch("e2e_events");
    let mut ns = Netns::new("events");
    let sock = dir.join("hub.sock");
    let api = dir.join("api.sock");
    let notify = dir.join("notify.sock");
    let notes = dir.join("notifications");
    notification_listener(&mut ns, &dir, &notify, &notes);
    let api_flag = format!("unix:{}", api.display());
    let notify_flag = format!("unix:{}", notify.display());
    let cmd = stream_hub_cmd(
        &ns,
        &sock,
        &[
            "--dhcp-range",
            "10.0.3.100,10.0.3.200,2m",
            "--enable-ra",
            "--dhcp-range",
            "1234::100,1234::1ff,64,1h",
            "--api",
            &api_flag,
            "--notification",
            &notify_flag,
        ],
    );
    start_hub_cmd(&mut ns, cmd, &dir.join("hub.log"));
    wait_line(&notes, "ready", Duration::from_secs(10), |v| {
        v["notification_type"] == "ready"
    });

    // Two streams from the start: everything, and ports only.
    let all = dir.join("events.ndjson");
    let ports_only = dir.join("ports.ndjson");
    let url = |q: &str| format!("http://vmlan/events{q}");
    let stream = |q: &str| {
        let u = url(q);
        ns.cmd("curl", &["-sN", "--unix-socket", api.to_str().unwrap(), &u])
    };
    let (c1, c2) = (stream(""), stream("?types=port"));
    let curl_all = ns.spawn(c1, &all);
    let curl_ports = ns.spawn(c2, &ports_only);
    std::thread::sleep(Duration::from_millis(500));

    let spec = GuestSpec {
        mac: MAC,
        ssh_port: 10161,
        netdev: stream_netdev(&sock),
        actions: "vmtest.sendname=evguest vmtest.release=1 vmtest.dhcp6=1 vmtest.hold=400".into(),
        unprivileged: None,
    };
    let console = dir.join("guest.console");
    let guest = ns.spawn(qemu(&ns, &spec), &console);
    let boot = Duration::from_secs(300);
    let up = wait_line(&all, "port up", boot, |v| v["type"] == "port" && v["event"] == "up");
    assert_eq!(up["kind"], "stream", "{up}");
    let port = up["id"].as_u64().unwrap();
    let learned = wait_line(&all, "MAC learned", boot, |v| {
        v["type"] == "mac" && v["event"] == "learned" && v["mac"] == MAC
    });
    assert_eq!(learned["port"], port, "{learned}");
    let bound = wait_line(&all, "v4 bound", boot, |v| lease_is(v, "bound", "ipv4"));
    let ip = bound["ip"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.0.3."), "{bound}");
    assert_eq!(bound["hostname"], "evguest", "{bound}");
    assert!(bound["expires"].as_u64().unwrap() > bound["time"].as_u64().unwrap());
    wait_line(&all, "v4 renewed", boot, |v| {
        lease_is(v, "renewed", "ipv4") && v["ip"] == ip.as_str()
    });
    wait_line(&all, "v4 released", boot, |v| {
        lease_is(v, "released", "ipv4") && v["ip"] == ip.as_str()
    });
    assert!(
        wait_for_text(&console, "VMTEST release done", boot),
        "the guest did not finish its DHCP runs: {}",
        std::fs::read_to_string(&console).unwrap_or_default()
    );
    let v6 = wait_line(&all, "v6 bound", boot, |v| lease_is(v, "bound", "ipv6"));
    assert!(v6["ip"].as_str().unwrap().starts_with("1234::"), "{v6}");
    assert!(v6["duid"].as_str().is_some(), "{v6}");
    // The order of the v4 lease's life.
    let v4: Vec<String> = lines(&all)
        .iter()
        .filter(|v| lease_is(v, "bound", "ipv4") || lease_is(v, "renewed", "ipv4") || lease_is(v, "released", "ipv4"))
        .map(|v| v["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(v4[..3], ["bound", "renewed", "released"], "{v4:?}");
    assert_eq!(v4.len(), 4, "bound again after the release: {v4:?}");

    // After the fact: the live leases first, as `current`.
    let (code, body) = curl(&ns, &api, "/events?current=true&types=lease", "3");
    assert_eq!(code, 200, "{body}");
    let cur: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(cur.iter().any(|v| lease_is(v, "current", "ipv4")), "{body}");
    assert!(
        cur.iter()
            .any(|v| lease_is(v, "current", "ipv6") && v["ip"] == v6["ip"]),
        "{body}"
    );
    let (code, body) = curl(&ns, &api, "/events?types=lease,bogus", "5");
    assert_eq!(code, 400, "{body}");
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["field"], "types", "{body}");

    // vmlan ctl reads the same hub.
    let ctl = vmlan_in(&ns, &dir, &["ctl", "--api", api.to_str().unwrap(), "leases"]);
    let text = output_text(&ctl);
    assert!(ctl.status.success(), "{text}");
    assert!(
        text.starts_with("FAMILY") && text.contains(MAC) && text.contains("ipv6"),
        "{text}"
    );
    let ctl = vmlan_in(&ns, &dir, &["ctl", "--api", api.to_str().unwrap(), "leases", "--json"]);
    let rows: Value = serde_json::from_slice(&ctl.stdout).unwrap_or_else(|_| panic!("{}", output_text(&ctl)));
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["mac"] == MAC && r["family"] == "ipv4"),
        "{rows}"
    );

    // The second lease was never renewed: it expires after its 2 minutes.
    let again = lines(&all).into_iter().rfind(|v| lease_is(v, "bound", "ipv4")).unwrap();
    let expired = wait_line(&all, "v4 expired", Duration::from_secs(240), |v| {
        lease_is(v, "expired", "ipv4")
    });
    assert_eq!(expired["ip"], again["ip"], "{expired}");
    assert!(
        expired["time"].as_u64() >= again["expires"].as_u64(),
        "{expired} {again}"
    );

    // Killing QEMU: the MAC leaves the table, then the port goes down.
    let _ = ns.child(guest).kill();
    let down = wait_line(&all, "port down", Duration::from_secs(30), |v| {
        v["type"] == "port" && v["event"] == "down"
    });
    assert_eq!(down["id"], port, "{down}");
    let aged = wait_line(&all, "MAC aged", Duration::from_secs(5), |v| {
        v["type"] == "mac" && v["event"] == "aged" && v["mac"] == MAC
    });
    assert_eq!(aged["port"], port, "{aged}");

    // The stream ran for minutes (past the 30 s idle limit), with keep-alives when quiet.
    assert!(
        ns.child(curl_all).try_wait().unwrap().is_none(),
        "the event stream ended"
    );
    assert!(
        lines(&all).iter().any(|v| v["type"] == "keepalive"),
        "no keep-alive line"
    );
    // The ?types=port stream stayed open too: its keep-alives count from its
    // last line, not from the last event it filtered out.
    assert!(
        ns.child(curl_ports).try_wait().unwrap().is_none(),
        "the ?types=port stream ended: {:?}",
        lines(&ports_only)
    );
    assert!(
        lines(&ports_only).iter().any(|v| v["type"] == "keepalive"),
        "no keep-alive line on the ?types=port stream"
    );
    // The ?types=port stream is a reader of its own: wait for it to see the down too.
    wait_line(&ports_only, "port down (?types=port)", Duration::from_secs(10), |v| {
        v["type"] == "port" && v["event"] == "down"
    });
    let only = lines(&ports_only);
    assert!(
        only.iter().all(|v| v["type"] == "port" || v["type"] == "keepalive"),
        "?types=port let others through: {only:?}"
    );
    assert!(only.iter().filter(|v| v["type"] == "port").count() >= 2, "{only:?}");
    // gvproxy's notifications, in order.
    let note = |v: &Value, kind: &str| v["notification_type"] == kind && v["mac_address"] == MAC;
    wait_line(&notes, "connection_closed", Duration::from_secs(10), |v| {
        note(v, "connection_closed")
    });
    let got = lines(&notes);
    let at = |f: &dyn Fn(&Value) -> bool| got.iter().position(f).unwrap_or_else(|| panic!("{got:?}"));
    let ready = at(&|v| v["notification_type"] == "ready" && v.get("mac_address").is_none());
    let est = at(&|v| note(v, "connection_established"));
    let closed = at(&|v| note(v, "connection_closed"));
    assert!(ready < est && est < closed, "{got:?}");
    assert_eq!(
        got.iter().filter(|v| note(v, "connection_established")).count(),
        1,
        "one connection_established per MAC: {got:?}"
    );
}
