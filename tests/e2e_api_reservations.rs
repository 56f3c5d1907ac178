//! End to end (issue 15: reservations and records through the runtime API,
//! persisted): in a private network namespace, `vmlan hub --stream unix:...
//! --api unix:... --api-state FILE` with a busybox QEMU guest whose udhcpc
//! stays running (`vmtest.redhcp`). The guest leases a pool address; `curl
//! --unix-socket` POSTs a reservation for its MAC with another address and
//! a hostname; the guest's next DHCP exchange (udhcpc's RENEW on SIGUSR1 is
//! answered DHCPNAK, it DISCOVERs again) gets exactly the reserved address
//! and name, and `dig` resolves the name to it. Records of each type added
//! through the API (A, AAAA, CNAME, SRV, PTR) resolve with `dig`. The hub is
//! SIGKILLed and restarted with the same `--api-state`: `GET /reservations`
//! and `GET /records` still list them and `dig` still answers; DELETE
//! removes them and the file no longer has them. The API's refusals (bad
//! MAC or address, outside the subnet, the hub's own address, duplicates
//! 409, unknown members) name their field; a bad state file line stops the
//! hub at start with FILE:LINE.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;

const MAC: &str = "00:00:00:15:00:05";
const RESERVED: &str = "10.0.3.50";

/// `dig +short NAME TYPE` (or `-x ADDR` with `rtype` "-x") at the hub's --dns-listen.
fn dig(ns: &Netns, name: &str, rtype: &str) -> String {
    let args: Vec<&str> = match rtype {
        "-x" => vec!["@127.0.0.1", "-p", "5353", "+time=3", "+tries=2", "+short", "-x", name],
        t => vec!["@127.0.0.1", "-p", "5353", "+time=3", "+tries=2", "+short", name, t],
    };
    let out = run_ok(&mut ns.cmd("dig", &args));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A POST that must answer 201; its JSON.
fn created(ns: &Netns, api: &Path, route: &str, body: &str) -> Value {
    let (code, text) = api_call(ns, api, "POST", route, Some(body));
    assert_eq!(code, 201, "POST {route} {body}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The records the API (`api: true`) lists, as "NAME TYPE VALUE".
fn api_records(ns: &Netns, api: &Path) -> Vec<String> {
    let v = api_get(ns, api, "/records");
    let mut out: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["api"] == true)
        .map(|r| {
            format!(
                "{} {} {}",
                r["name"].as_str().unwrap(),
                r["type"].as_str().unwrap(),
                r["value"].as_str().unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

/// Every name added here resolves as it should.
fn check_dns(ns: &Netns) {
    assert_eq!(dig(ns, "resv1", "A"), RESERVED);
    assert_eq!(dig(ns, "resv1", "AAAA"), "fd00::50");
    assert_eq!(dig(ns, "web", "A"), "10.0.3.60");
    assert_eq!(dig(ns, "web6", "AAAA"), "fd00::60");
    assert_eq!(dig(ns, "www", "A"), "web.\n10.0.3.60", "the CNAME and its target's A");
    assert_eq!(dig(ns, "_http._tcp", "SRV"), "1 2 8080 web.");
    assert_eq!(dig(ns, "10.0.3.70", "-x"), "printer.example.");
    assert_eq!(dig(ns, RESERVED, "-x"), "resv1.");
}

#[test]
fn reservations_and_records_through_the_api_persist() {
    let dir = scratch("e2e_api_resv");
    let mut ns = Netns::new("apiresv");
    let sock = dir.join("hub.sock");
    let api = dir.join("api.sock");
    let state = dir.join("api-state.conf");
    let api_flag = format!("unix:{}", api.display());
    let state_flag = state.display().to_string();
    let flags = [
        "--dhcp-range",
        "10.0.3.100,10.0.3.200",
        "--dhcp-host",
        "52:54:00:00:00:99,10.0.3.99,flagged",
        "--dns-listen",
        "127.0.0.1:5353",
        "--api",
        &api_flag,
        "--api-state",
        &state_flag,
    ];

    // A bad line in the state file stops the hub at start, naming FILE:LINE.
    std::fs::write(&state, "# x\ncname=a,b\ndhcp-host=zz\n").unwrap();
    let mut test_flags = flags.to_vec();
    test_flags.push("--test");
    let o = stream_hub_cmd(&ns, &sock, &test_flags).output().unwrap();
    let text = output_text(&o);
    assert!(!o.status.success(), "{text}");
    assert!(text.contains(&format!("{}:3:", state.display())), "{text}");
    std::fs::remove_file(&state).unwrap();

    let cmd = stream_hub_cmd(&ns, &sock, &flags);
    let hub = start_hub_cmd(&mut ns, cmd, &dir.join("hub.log"));
    let spec = GuestSpec {
        mac: MAC,
        ssh_port: 10152,
        netdev: stream_netdev(&sock),
        actions: "vmtest.sendname=pooled vmtest.redhcp=resv1 vmtest.hold=30".into(),
        unprivileged: None,
    };
    let console = dir.join("guest.console");
    boot_guest_until(&mut ns, &spec, &console, "VMTEST dhcp ", "run DHCP");
    let got = parse_console(&console);
    let pooled = got
        .dhcp
        .get("ip")
        .cloned()
        .unwrap_or_else(|| panic!("no lease: {}", got.console));
    assert!(pooled.starts_with("10.0.3.1") && pooled != RESERVED, "{pooled}");

    // Refusals, each naming its field.
    let r = "/reservations";
    for (body, field) in [
        (r#"{"mac": "00:00:00:15:00"}"#.to_string(), "mac"),
        (r#"{"mac": "01:00:5e:00:00:01"}"#.to_string(), "mac"),
        (r#"{"ipv4": "10.0.3.9"}"#.to_string(), "mac"),
        (format!(r#"{{"mac": "{MAC}", "ipv4": "10.0.3.300"}}"#), "ipv4"),
        (format!(r#"{{"mac": "{MAC}", "ipv4": "192.0.2.5"}}"#), "ipv4"),
        (format!(r#"{{"mac": "{MAC}", "ipv4": "10.0.3.1"}}"#), "ipv4"),
        (format!(r#"{{"mac": "{MAC}", "ipv6": "fe80::1"}}"#), "ipv6"),
        (format!(r#"{{"mac": "{MAC}", "hostname": "a b"}}"#), "hostname"),
        (format!(r#"{{"mac": "{MAC}", "lease_time": 5}}"#), "lease_time"),
        (format!(r#"{{"mac": "{MAC}", "ip": "10.0.3.9"}}"#), "ip"),
    ] {
        api_refused(&ns, &api, "POST", r, Some(&body), field);
    }
    api_refused(&ns, &api, "DELETE", "/reservations/nonsense", None, "mac");
    api_refused_with(
        &ns,
        &api,
        "POST",
        r,
        Some(r#"{"mac": "52:54:00:00:00:99"}"#),
        409,
        "mac",
    );
    api_refused_with(
        &ns,
        &api,
        "POST",
        r,
        Some(&format!(r#"{{"mac": "{MAC}", "ipv4": "10.0.3.99"}}"#)),
        409,
        "ipv4",
    );
    assert_eq!(
        api_call(&ns, &api, "DELETE", "/reservations/52:54:00:00:00:99", None).0,
        404,
        "a flag's stays"
    );

    // The reservation: the name resolves at once, the guest's next DHCP gets it.
    let row = created(
        &ns,
        &api,
        r,
        &format!(
            r#"{{"mac": "{MAC}", "ipv4": "{RESERVED}", "ipv6": "fd00::50", "hostname": "resv1", "lease_time": 7200}}"#
        ),
    );
    assert_eq!(
        row,
        serde_json::json!({"mac": MAC, "ipv4": RESERVED, "ipv6": "fd00::50", "hostname": "resv1", "lease_time": 7200, "source": "api"})
    );
    api_refused_with(
        &ns,
        &api,
        "POST",
        r,
        Some(&format!(r#"{{"mac": "{MAC}"}}"#)),
        409,
        "mac",
    );
    api_refused_with(
        &ns,
        &api,
        "POST",
        r,
        Some(r#"{"mac": "52:54:00:00:00:98", "ipv6": "fd00::50"}"#),
        409,
        "ipv6",
    );
    assert!(
        wait_for_text(&console, "VMTEST redhcp ", Duration::from_secs(300)),
        "the guest did not DHCP again: {}",
        std::fs::read_to_string(&console).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&console).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.split("VMTEST redhcp ").nth(1))
        .unwrap()
        .trim();
    assert!(line.starts_with(&format!("ip={RESERVED} ")), "{line}");
    assert!(
        line.contains(" hostname=resv1 ") && line.contains(" lease=7200"),
        "{line}"
    );
    let log = std::fs::read_to_string(dir.join("hub.log")).unwrap();
    assert!(log.contains("DHCPNAK"), "the RENEW of the pool lease was NAKed: {log}");
    let v = api_get(&ns, &api, "/leases?family=ipv4");
    assert_eq!(v[0]["ip"], RESERVED, "{v}");
    let rows = api_get(&ns, &api, r);
    let sources: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["flag", "api"], "{rows}");

    // Records of each type.
    created(
        &ns,
        &api,
        "/records",
        r#"{"name": "web", "ip": "10.0.3.60", "ttl": 30}"#,
    );
    created(
        &ns,
        &api,
        "/records",
        r#"{"name": "web6", "type": "AAAA", "ip": "fd00::60"}"#,
    );
    created(
        &ns,
        &api,
        "/records",
        r#"{"name": "www", "type": "CNAME", "target": "web"}"#,
    );
    let srv = created(
        &ns,
        &api,
        "/records",
        r#"{"name": "_http._tcp", "type": "SRV", "target": "web", "port": 8080, "priority": 1, "weight": 2}"#,
    );
    assert_eq!(srv["value"], "1 2 8080 web", "{srv}");
    let ptr = created(
        &ns,
        &api,
        "/records",
        r#"{"name": "70.3.0.10.in-addr.arpa", "type": "PTR", "target": "printer.example"}"#,
    );
    assert_eq!(ptr["name"], "70.3.0.10.in-addr.arpa", "{ptr}");
    api_refused_with(
        &ns,
        &api,
        "POST",
        "/records",
        Some(r#"{"name": "web", "type": "CNAME", "target": "x"}"#),
        409,
        "name",
    );
    api_refused_with(
        &ns,
        &api,
        "POST",
        "/records",
        Some(r#"{"name": "web", "ip": "10.0.3.60", "ttl": 30}"#),
        409,
        "name",
    );
    for (body, field) in [
        (r#"{"name": "a", "type": "A", "ip": "fd00::1"}"#, "ip"),
        (r#"{"name": "a", "type": "MX", "target": "b"}"#, "type"),
        (r#"{"name": "a", "target": "b"}"#, "type"),
        (
            r#"{"name": "a", "type": "CNAME", "ip": "10.0.3.9", "target": "b"}"#,
            "ip",
        ),
        (r#"{"name": "web.example", "type": "PTR", "target": "b"}"#, "name"),
        (r#"{"name": "_x._tcp", "type": "SRV", "port": 70000}"#, "port"),
    ] {
        api_refused(&ns, &api, "POST", "/records", Some(body), field);
    }
    api_refused(&ns, &api, "DELETE", "/records/web?type=MX", None, "type");
    check_dns(&ns);
    let want = [
        "70.3.0.10.in-addr.arpa PTR printer.example",
        "_http._tcp SRV 1 2 8080 web",
        "web A 10.0.3.60",
        "web6 AAAA fd00::60",
        "www CNAME web",
    ];
    assert_eq!(api_records(&ns, &api), want);
    let file = std::fs::read_to_string(&state).unwrap();
    for l in [
        "dhcp-host=00:00:00:15:00:05,10.0.3.50,[fd00::50],resv1,7200",
        "host-record=web,10.0.3.60,30",
        "host-record=web6,fd00::60,0",
        "cname=www,web,0",
        "srv-host=_http._tcp,web,8080,1,2",
        "ptr-record=70.3.0.10.in-addr.arpa,printer.example",
    ] {
        assert!(file.lines().any(|x| x == l), "{l} not in the state file:\n{file}");
    }

    // SIGKILL, restart with the same --api-state: everything is back.
    let _ = ns.child(hub).kill();
    let _ = ns.child(hub).wait();
    let cmd = stream_hub_cmd(&ns, &sock, &flags);
    let hub = start_hub_cmd(&mut ns, cmd, &dir.join("hub2.log"));
    let rows = api_get(&ns, &api, r);
    assert!(
        rows.as_array().unwrap().contains(&row),
        "the API's reservation is back: {rows}"
    );
    assert_eq!(api_records(&ns, &api), want);
    check_dns(&ns);

    // DELETE: the API's own, then the file no longer has them.
    let del = |route: &str| api_call(&ns, &api, "DELETE", route, None);
    assert_eq!(
        del(&format!("/reservations/{MAC}")),
        (200, r#"{"removed":1}"#.to_string())
    );
    assert_eq!(del(&format!("/reservations/{MAC}")).0, 404);
    assert_eq!(del("/records/web?type=AAAA").0, 404, "web has no AAAA");
    for route in [
        "/records/web?type=A",
        "/records/web6",
        "/records/www",
        "/records/_http._tcp",
        "/records/10.0.3.70",
    ] {
        assert_eq!(del(route), (200, r#"{"removed":1}"#.to_string()), "{route}");
    }
    assert_eq!(del("/records/www").0, 404);
    assert!(api_records(&ns, &api).is_empty());
    assert_eq!(
        dig(&ns, "resv1", "A"),
        "",
        "no lease file: the name went with the reservation"
    );
    assert_eq!(dig(&ns, "www", "A"), "");
    assert_eq!(dig(&ns, "10.0.3.70", "-x"), "");
    let file = std::fs::read_to_string(&state).unwrap();
    assert!(
        file.lines().all(|l| l.is_empty() || l.starts_with('#')),
        "only the header is left:\n{file}"
    );
    assert!(ns.child(hub).try_wait().unwrap().is_none(), "the hub exited");
}
