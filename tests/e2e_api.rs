//! End to end (issue 15, the runtime API): in a private network namespace,
//! `vmlan hub --stream unix:... --api unix:...` with a busybox QEMU guest on
//! the stream socket. `curl --unix-socket` calls every route: the socket's
//! mode is 0600; the guest's lease is in `/leases`, `/services/dhcp/leases`
//! (gvproxy's `{"IP": "MAC"}`) and `/leases?family=ipv4` (vmlan's rows), its
//! DHCPv6 lease (busybox udhcpc6) in `/leases?family=ipv6` with its DUID, its
//! MAC in `/cam` on the port `/ports` lists as a stream port with traffic;
//! `POST /services/dns/add` (gvproxy's zone) and `POST /records` make names
//! that `dig @--dns-listen` resolves at once, `DELETE /records/{name}`
//! withdraws one; malformed bodies and parameters get 400 naming the field,
//! an unknown route 404, and the hub keeps running; 64 silent connections
//! delay the next client until they time out (30 s), never lock it out.

mod common;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;
use common::{api_call as call, api_get as get_json, api_refused as refused};

const MAC: &str = "00:00:00:15:00:01";

/// `dig +short` for `name` (A) at the hub's --dns-listen.
fn dig_a(ns: &Netns, name: &str) -> String {
    let out = run_ok(&mut ns.cmd(
        "dig",
        &["@127.0.0.1", "-p", "5353", "+time=3", "+tries=2", "+short", name, "A"],
    ));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn api_routes_with_a_guest() {
    let dir = scratch("e2e_api");
    let mut ns = Netns::new("api");
    let sock = dir.join("hub.sock");
    let api = dir.join("api.sock");
    let api_flag = format!("unix:{}", api.display());
    let cmd = stream_hub_cmd(
        &ns,
        &sock,
        &[
            "--dhcp-range",
            "10.0.3.100,10.0.3.200",
            "--enable-ra",
            "--dhcp-range",
            "1234::100,1234::1ff,64,1h",
            "--dns-listen",
            "127.0.0.1:5353",
            "--api",
            &api_flag,
        ],
    );
    let hub = start_hub_cmd(&mut ns, cmd, &dir.join("hub.log"));
    let mode = std::fs::metadata(&api).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the API socket's mode");

    let spec = GuestSpec {
        mac: MAC,
        ssh_port: 10151,
        netdev: stream_netdev(&sock),
        actions: "vmtest.sendname=apiguest vmtest.dhcp6=1 vmtest.hold=120".into(),
        unprivileged: None,
    };
    let console = dir.join("guest.console");
    boot_guest_until(&mut ns, &spec, &console, "VMTEST dhcp6 ", "run DHCP and DHCPv6");
    let got = parse_console(&console);
    let ip = got
        .dhcp
        .get("ip")
        .cloned()
        .unwrap_or_else(|| panic!("no lease: {}", got.console));
    let ip6 = got
        .dhcp6
        .as_deref()
        .and_then(|r| r.strip_prefix("ip="))
        .unwrap_or_else(|| panic!("no DHCPv6 lease: {}", got.console))
        .to_string();

    // gvproxy's lease maps: IP -> MAC.
    for route in ["/leases", "/services/dhcp/leases"] {
        let v = get_json(&ns, &api, route);
        assert_eq!(v[&ip], MAC, "{route}: {v}");
    }
    // vmlan's rows.
    let v = get_json(&ns, &api, "/leases?family=ipv4");
    let row = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["mac"] == MAC)
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(row["family"], "ipv4");
    assert_eq!(row["ip"], ip.as_str());
    assert_eq!(row["hostname"], "apiguest", "{row}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = row["expires"].as_u64().unwrap();
    assert!(exp > now && exp <= now + 3700, "expires {exp}, now {now}");
    let v6 = get_json(&ns, &api, "/leases?family=ipv6");
    let row6 = &v6[0];
    assert_eq!(v6.as_array().unwrap().len(), 1, "{v6}");
    assert_eq!(row6["family"], "ipv6", "{row6}");
    assert_eq!(row6["ip"], ip6.as_str(), "{row6}");
    assert_eq!(row6["mac"], MAC, "the MAC from the guest's DUID: {row6}");
    assert!(row6["duid"].as_str().is_some_and(|d| !d.is_empty()), "{row6}");
    assert!(
        row6["iaid"].is_u64() && row6["expires"].as_u64().unwrap() > now,
        "{row6}"
    );
    let all = get_json(&ns, &api, "/leases?family=all");
    let families: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["family"].as_str().unwrap())
        .collect();
    assert_eq!(families, ["ipv4", "ipv6"], "{all}");
    refused(&ns, &api, "GET", "/leases?family=ipv5", None, "family");
    refused(&ns, &api, "GET", "/leases?fam=ipv4", None, "fam");

    // The guest's MAC in the MAC table, on a stream port with traffic.
    let cam = get_json(&ns, &api, "/cam");
    let port = cam[MAC].as_u64().unwrap_or_else(|| panic!("/cam: {cam}"));
    let ports = get_json(&ns, &api, "/ports");
    let p = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == port)
        .unwrap_or_else(|| panic!("/ports: {ports}"));
    assert_eq!(p["kind"], "stream", "{p}");
    assert!(p["name"].as_str().unwrap().contains("hub.sock"), "{p}");
    assert!(p["peer"].as_str().unwrap().contains("hub.sock"), "{p}");
    assert_eq!(p["state"], "up", "{p}");
    assert!(
        p["rx_frames"].as_u64().unwrap() > 0 && p["tx_frames"].as_u64().unwrap() > 0,
        "{p}"
    );
    assert!(p["macs"].as_array().unwrap().iter().any(|m| m == MAC), "{p}");
    assert!(ports.as_array().unwrap().iter().any(|p| p["kind"] == "host"), "{ports}");
    // The one segment: the host's addresses, its ranges, and what it has now.
    let segs = get_json(&ns, &api, "/segments");
    let seg = &segs[0];
    assert_eq!(segs.as_array().unwrap().len(), 1, "{segs}");
    assert_eq!(seg["addr"], "10.0.3.1/24", "{seg}");
    assert_eq!(seg["host"], true, "{seg}");
    assert_eq!(seg["dhcp_ranges"][0]["start"], "10.0.3.100", "{seg}");
    assert_eq!(seg["dhcp_ranges"][0]["end"], "10.0.3.200", "{seg}");
    assert_eq!(seg["ipv6_ranges"][0]["mode"], "stateful", "{seg}");
    assert_eq!(seg["ipv6_ranges"][0]["lease_time"], 3600, "{seg}");
    assert_eq!(seg["ra"], true, "{seg}");
    assert!(seg["ipv6"][0].as_str().unwrap().starts_with("fe80::"), "{seg}");
    assert!(seg["ipv6"][1].as_str().unwrap().starts_with("1234::"), "{seg}");
    assert!(seg["leases"].as_u64().unwrap() >= 2, "{seg}");
    assert_eq!(
        seg["ports"].as_u64(),
        Some(ports.as_array().unwrap().len() as u64),
        "{seg}"
    );
    let stats = get_json(&ns, &api, "/stats");
    assert!(stats["rx_frames"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["BytesReceived"], stats["rx_bytes"], "{stats}");
    assert!(stats["BytesSent"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["ports"].as_u64().unwrap() >= 2, "{stats}");

    // gvproxy's DNS: a zone's record resolves at once as NAME.ZONE.
    let (code, body) = call(
        &ns,
        &api,
        "POST",
        "/services/dns/add",
        Some(r#"{"Name": "dns.internal.", "Records": [{"Name": "web", "IP": "10.0.3.50"}]}"#),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(dig_a(&ns, "web.dns.internal"), "10.0.3.50");
    let ptr = run_ok(&mut ns.cmd("dig", &["@127.0.0.1", "-p", "5353", "+short", "-x", "10.0.3.50"]));
    assert_eq!(String::from_utf8_lossy(&ptr.stdout).trim(), "web.dns.internal.");
    // Names under the zone are its alone: NXDOMAIN for one without a record.
    assert_eq!(dig_status(&ns, "nosuch.dns.internal", "A").0, "NXDOMAIN");
    // A zone with a DefaultIP (crc's wildcard apps domain): any other name under it.
    let (code, body) = call(
        &ns,
        &api,
        "POST",
        "/services/dns/add",
        Some(
            r#"{"Name": "apps-crc.testing.", "Records": [{"Name": "api", "IP": "10.0.3.52", "Regexp": null}], "DefaultIP": "10.0.3.53"}"#,
        ),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(dig_a(&ns, "api.apps-crc.testing"), "10.0.3.52");
    assert_eq!(dig_a(&ns, "console.apps-crc.testing"), "10.0.3.53");
    assert_eq!(dig_a(&ns, "a.b.apps-crc.testing"), "10.0.3.53");
    let all = get_json(&ns, &api, "/services/dns/all");
    let zone = |name: &str| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|z| z["Name"] == name)
            .unwrap_or_else(|| panic!("zone {name:?}: {all}"))
            .clone()
    };
    let internal = zone("dns.internal.");
    assert_eq!(
        internal["Records"],
        serde_json::json!([{"Name": "web", "IP": "10.0.3.50"}]),
        "{all}"
    );
    assert!(internal["DefaultIP"].is_null(), "{all}");
    assert_eq!(zone("apps-crc.testing.")["DefaultIP"], "10.0.3.53", "{all}");
    assert!(
        zone("")["Records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["Name"] == "apiguest."),
        "the guest's leased name is in the zone \"\": {all}"
    );

    // vmlan's records: add, list, resolve, delete.
    let (code, body) = call(
        &ns,
        &api,
        "POST",
        "/records",
        Some(r#"{"name": "db", "ip": "10.0.3.51", "ttl": 30}"#),
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(dig_a(&ns, "db"), "10.0.3.51");
    let list = get_json(&ns, &api, "/records");
    assert!(
        list.as_array().unwrap().iter().any(|r| r["name"] == "db"
            && r["type"] == "A"
            && r["value"] == "10.0.3.51"
            && r["ttl"] == 30
            && r["api"] == true),
        "{list}"
    );
    let (code, body) = call(
        &ns,
        &api,
        "POST",
        "/records",
        Some(r#"{"name": "db6", "ip": "1234::51"}"#),
    );
    assert_eq!(code, 201, "{body}");
    let aaaa = run_ok(&mut ns.cmd("dig", &["@127.0.0.1", "-p", "5353", "+short", "db6", "AAAA"]));
    assert_eq!(String::from_utf8_lossy(&aaaa.stdout).trim(), "1234::51");
    let (code, body) = call(&ns, &api, "DELETE", "/records/db", None);
    assert_eq!((code, body.as_str()), (200, r#"{"removed":1}"#));
    assert_eq!(dig_a(&ns, "db"), "");
    assert_eq!(call(&ns, &api, "DELETE", "/records/db", None).0, 404);

    // Bad bodies name their field; unknown routes get 404.
    refused(&ns, &api, "POST", "/records", Some("{bad"), "body");
    refused(&ns, &api, "POST", "/records", Some("[1]"), "body");
    refused(&ns, &api, "POST", "/records", Some(r#"{"name": "x"}"#), "ip");
    refused(
        &ns,
        &api,
        "POST",
        "/records",
        Some(r#"{"name": "x", "addr": "10.0.3.9"}"#),
        "addr",
    );
    refused(
        &ns,
        &api,
        "POST",
        "/records",
        Some(r#"{"name": 5, "ip": "10.0.3.9"}"#),
        "name",
    );
    refused(
        &ns,
        &api,
        "POST",
        "/records",
        Some(r#"{"name": "a b", "ip": "10.0.3.9"}"#),
        "name",
    );
    refused(
        &ns,
        &api,
        "POST",
        "/records",
        Some(r#"{"name": "x", "ip": "10.0.3.9", "ttl": -1}"#),
        "ttl",
    );
    refused(&ns, &api, "POST", "/services/dns/add", Some("{"), "body");
    refused(
        &ns,
        &api,
        "POST",
        "/services/dns/add",
        Some(r#"{"Name": "z", "Records": 3}"#),
        "Records",
    );
    refused(
        &ns,
        &api,
        "POST",
        "/services/dns/add",
        Some(r#"{"Name": "z", "Records": [{"Name": "a", "IP": "nope"}]}"#),
        "Records[0].IP",
    );
    refused(
        &ns,
        &api,
        "POST",
        "/services/dns/add",
        Some(r#"{"Name": "z", "DefaultIP": 5}"#),
        "DefaultIP",
    );
    refused(
        &ns,
        &api,
        "POST",
        "/services/dns/add",
        Some(r#"{"Name": "z", "Records": [{"Regexp": "^a.*"}]}"#),
        "Records[0].Regexp",
    );
    refused(
        &ns,
        &api,
        "POST",
        "/services/dns/add",
        Some(r#"{"Name": "z", "Zone": 1}"#),
        "Zone",
    );
    let nested = "[".repeat(10_000);
    refused(&ns, &api, "POST", "/records", Some(&nested), "body");
    let big = format!(r#"{{"name": "x", "ip": "10.0.3.9", "pad": "{}"}}"#, "a".repeat(70_000));
    let (code, text) = call(&ns, &api, "POST", "/records", Some(&big));
    assert_eq!(code, 413, "{text}");
    assert!(text.contains(r#""field":"body""#), "{text}");
    let (code, body) = call(&ns, &api, "GET", "/no/such/route", None);
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("error"), "{body}");
    let (code, body) = call(&ns, &api, "PUT", "/cam", None);
    assert_eq!(code, 405, "{body}");

    // The OpenAPI document names every route.
    let doc = get_json(&ns, &api, "/openapi.json");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    for r in [
        "/stats",
        "/cam",
        "/leases",
        "/services/dhcp/leases",
        "/services/dns/all",
        "/services/dns/add",
        "/ports",
        "/segments",
        "/records",
        "/records/{name}",
        "/reservations",
        "/reservations/{mac}",
        "/openapi.json",
    ] {
        assert!(doc["paths"].get(r).is_some(), "{r} not in /openapi.json");
    }

    assert!(ns.child(hub).try_wait().unwrap().is_none(), "the hub exited");

    // At most 64 connections at once; an idle one is closed after 30 s, so
    // 64 silent clients delay the next one, never lock it out.
    let mut idle: Vec<UnixStream> = (0..64).map(|_| UnixStream::connect(&api).unwrap()).collect();
    let start = Instant::now();
    let sock = api.to_str().unwrap();
    let out = run_ok(&mut ns.cmd(
        "curl",
        &["-sS", "--max-time", "90", "--unix-socket", sock, "http://vmlan/cam"],
    ));
    let waited = start.elapsed();
    assert!(String::from_utf8_lossy(&out.stdout).contains(MAC));
    assert!(
        waited > Duration::from_secs(20) && waited < Duration::from_secs(80),
        "{waited:?}"
    );
    let mut byte = [0u8; 1];
    idle[0].set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(idle[0].read(&mut byte).unwrap(), 0, "an idle connection is closed");

    // --api-group: mode 0660 and the group's; bad --api and --api-group values
    // stop the hub at start, naming the flag.
    let shared = dir.join("shared.sock");
    let shared_flag = format!("unix:{}", shared.display());
    let cmd = stream_hub_cmd(
        &ns,
        &dir.join("hub2.sock"),
        &["--api", &shared_flag, "--api-group", "nogroup"],
    );
    start_hub_cmd(&mut ns, cmd, &dir.join("hub2.log"));
    let meta = std::fs::metadata(&shared).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660, "--api-group's mode");
    let group = run_ok(std::process::Command::new("getent").args(["group", "nogroup"]));
    let gid: u32 = String::from_utf8_lossy(&group.stdout)
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), gid, "--api-group's group");
    assert_eq!(get_json(&ns, &shared, "/ports").as_array().unwrap().len(), 1);
    for (flags, needle) in [
        (vec!["--api", "tcp:127.0.0.1:80"], "--api tcp:127.0.0.1:80"),
        (
            vec!["--api", "unix:/nonexistent-dir/x"],
            "--api unix:/nonexistent-dir/x",
        ),
        (vec!["--api", &api_flag], "another server is listening"),
        (
            vec![
                "--api",
                &shared_flag.replace("shared.sock", "x.sock"),
                "--api-group",
                "no-such-group-vmlan",
            ],
            "--api-group no-such-group-vmlan",
        ),
    ] {
        let text = hub_refused(&ns, &dir.join("hub3.sock"), &flags);
        assert!(text.contains(needle), "{flags:?}: {text}");
    }
}
