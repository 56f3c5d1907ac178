//! End to end (issue 15, port forwards): in a private network namespace,
//! `vmlan hub --stream unix:... --expose ...` with a busybox QEMU guest on
//! the stream socket at a reserved address, running busybox httpd (TCP 80),
//! a SHA-256 service on TCP 9000 (reads until EOF, answers the digest) and
//! a UDP echo (port 7), all reached only through the hub's forwards:
//! - curl through `--expose tcp:127.0.0.1:P=GUEST:80` gets the guest's page,
//!   and its 4 MiB file with the SHA-256 the guest printed;
//! - 3 MiB sent through a forward to TCP 9000, then a half-close, come back
//!   as the right digest (the client's FIN reached the guest, the guest's
//!   answer and FIN came back);
//! - datagrams through `--expose udp:...` come back from the echo, two
//!   clients each getting their own;
//! - `POST /services/forwarder/expose|unexpose` and `GET .../all` over the
//!   API socket (curl --unix-socket) add a forward that works and remove one,
//!   after which the port refuses connections; bad bodies get 400 naming the
//!   field, a duplicate 409, a second unexpose 404;
//! - a forward to a guest port without a listener: the guest's RST makes the
//!   client's connection end at once (curl fails within seconds);
//! - the API's forwards persist in `--api-state` (`expose=` lines; the
//!   flags' are not written): after a SIGKILL, a restart with a program on
//!   one's port and an `--expose` flag on the other's address skips both
//!   (logged, kept in the file); a second restart with the same flags as
//!   the first hub lists them again and curl through one reaches the guest;
//!   unexpose removes their lines; a state file that cannot be written
//!   gets 500 and changes nothing;
//! - bad `--expose` values, a guest outside `--addr`, a listen address not on
//!   the machine, and `--no-host` are refused at start naming the flag; a
//!   bad `expose=` line of `--api-state` naming FILE:LINE.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const MAC: &str = "00:00:00:15:00:21";
const GUEST: &str = "10.0.3.50";

/// A POST that must get `status` with `{"error", "field": field}`.
fn refused(ns: &Netns, api: &Path, route: &str, body: &str, status: u16, field: &str) {
    api_refused_with(ns, api, "POST", route, Some(body), status, field);
}

/// `curl` of `url` inside the namespace: (exit code, body, seconds taken).
fn curl(ns: &Netns, url: &str, extra: &[&str]) -> (i32, String, f64) {
    let start = Instant::now();
    let mut args = vec!["-sS", "--max-time", "60"];
    args.extend_from_slice(extra);
    args.push(url);
    let out = ns.cmd("curl", &args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        start.elapsed().as_secs_f64(),
    )
}

/// `sha256sum FILE`'s digest.
fn sha256(ns: &Netns, file: &Path) -> String {
    let out = run_ok(&mut ns.cmd("sha256sum", &[file.to_str().unwrap()]));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Python: send FILE to 127.0.0.1:PORT, half-close, print what comes back (60 s at most).
const UPLOAD: &str = r#"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
s.sendall(open(sys.argv[2], "rb").read())
s.shutdown(socket.SHUT_WR)
got = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    got += b
print(got.decode().strip())
"#;

/// Python: ask for /big on 127.0.0.1:PORT, then never read (until killed).
const STUCK: &str = r#"
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.sendall(b"GET /big HTTP/1.0\r\n\r\n")
print("sent", flush=True)
time.sleep(120)
"#;

/// Python: listen on TCP 127.0.0.1:PORT (SO_REUSEADDR, as the hub's) and hold it.
const SQUAT: &str = r#"
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("listening", flush=True)
time.sleep(120)
"#;

/// The forwards `GET /services/forwarder/all` lists: (local, remote, protocol).
fn forwards(ns: &Netns, api: &Path) -> Vec<(String, String, String)> {
    let all = api_get(ns, api, "/services/forwarder/all");
    all.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["local"].as_str().unwrap().to_string(),
                r["remote"].as_str().unwrap().to_string(),
                r["protocol"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The `expose=` lines of the state file.
fn expose_lines(state: &Path) -> Vec<String> {
    std::fs::read_to_string(state)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("expose="))
        .map(str::to_string)
        .collect()
}

/// Python: from two sockets (two clients), send datagrams to 127.0.0.1:PORT
/// and print each echo (up to 10 tries of 3 s each per client).
const UDP_ECHO: &str = r#"
import socket, sys
port = int(sys.argv[1])
for name in ("first", "second"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    msg = ("vmlan-udp-" + name).encode() * 20
    for _ in range(10):
        s.sendto(msg, ("127.0.0.1", port))
        try:
            data, _ = s.recvfrom(65536)
        except socket.timeout:
            continue
        print(name, "ok" if data == msg else "mismatch", len(data))
        break
    else:
        print(name, "timeout")
"#;

#[test]
fn expose_tcp_and_udp_into_a_guest() {
    let dir = scratch("e2e_expose");
    let mut ns = Netns::new("expose");
    let sock = dir.join("hub.sock");
    let api = dir.join("api.sock");
    let api_flag = format!("unix:{}", api.display());
    let state = dir.join("api-state.conf");
    let state_flag = state.display().to_string();
    let reservation = format!("{MAC},{GUEST},exposed");
    let http = format!("tcp:127.0.0.1:18080={GUEST}:80");
    let sha = format!("127.0.0.1:19000={GUEST}:9000");
    let udp = format!("udp:127.0.0.1:17007={GUEST}:7");
    let norst = format!("tcp:127.0.0.1:18081={GUEST}:81");
    let flags = [
        "--dhcp-host",
        &reservation,
        "--api",
        &api_flag,
        "--api-state",
        &state_flag,
        "--expose",
        &http,
        "--expose",
        &sha,
        "--expose",
        &udp,
        "--expose",
        &norst,
    ];
    let cmd = stream_hub_cmd(&ns, &sock, &flags);
    let hub = start_hub_cmd(&mut ns, cmd, &dir.join("hub.log"));

    let spec = GuestSpec {
        mac: MAC,
        ssh_port: 10171,
        netdev: stream_netdev(&sock),
        actions: "vmtest.expose=1 vmtest.hold=900".into(),
        unprivileged: None,
    };
    let console = dir.join("guest.console");
    boot_guest_until(&mut ns, &spec, &console, "VMTEST expose big ", "start its servers");
    let text = std::fs::read_to_string(&console).unwrap();
    assert!(text.contains(&format!("ip={GUEST}")), "the guest's lease: {text}");
    let big_sha = text
        .lines()
        .find_map(|l| l.split("VMTEST expose big ").nth(1))
        .map(|s| s.trim().to_string())
        .unwrap();

    // The page, through the forward.
    let (code, body, _) = curl(&ns, "http://127.0.0.1:18080/", &[]);
    assert_eq!((code, body.trim()), (0, "vmtest-httpd"), "GET / through the forward");

    // 4 MiB from the guest, checked by SHA-256.
    let big = dir.join("big");
    let (code, body, secs) = curl(
        &ns,
        "http://127.0.0.1:18080/big",
        &["--max-time", "300", "-o", big.to_str().unwrap()],
    );
    assert_eq!(code, 0, "GET /big: {body}");
    assert_eq!(std::fs::metadata(&big).unwrap().len(), 4 << 20);
    assert_eq!(sha256(&ns, &big), big_sha, "the 4 MiB file's digest");
    eprintln!("4 MiB from the guest in {secs:.1} s");

    // A client that asks for the 4 MiB and never reads stalls only its own
    // connection: others are served meanwhile.
    let stuck = ns.spawn(
        ns.cmd("timeout", &["60", "python3", "-c", STUCK, "18080"]),
        &dir.join("stuck.log"),
    );
    assert!(wait_for_text(&dir.join("stuck.log"), "sent", Duration::from_secs(20)));
    std::thread::sleep(Duration::from_secs(2));
    let (code, body, secs) = curl(
        &ns,
        "http://127.0.0.1:18080/big",
        &["--max-time", "120", "-o", big.to_str().unwrap()],
    );
    assert_eq!(code, 0, "GET /big beside a stuck client: {body}");
    assert_eq!(
        sha256(&ns, &big),
        big_sha,
        "the 4 MiB file's digest beside a stuck client"
    );
    eprintln!("4 MiB beside a stuck client in {secs:.1} s");
    ns.stop(stuck);

    // 3 MiB to the guest, then a half-close: the guest answers the digest.
    let up = dir.join("up");
    let of = format!("of={}", up.display());
    run_ok(&mut ns.cmd("dd", &["if=/dev/urandom", &of, "bs=1M", "count=3", "status=none"]));
    let want = sha256(&ns, &up);
    let out = run_ok(&mut ns.cmd(
        "timeout",
        &["120", "python3", "-c", UPLOAD, "19000", up.to_str().unwrap()],
    ));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        want,
        "the digest of 3 MiB sent to the guest"
    );

    // UDP: two clients, each its own echo.
    let out = run_ok(&mut ns.cmd("timeout", &["90", "python3", "-c", UDP_ECHO, "17007"]));
    let echo = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        echo.contains("first ok 300") && echo.contains("second ok 320"),
        "UDP echo through the forward: {echo}"
    );

    // A guest port without a listener: the guest's RST ends the client's connection at once.
    let (code, body, secs) = curl(&ns, "http://127.0.0.1:18081/", &[]);
    assert!(
        [52, 55, 56].contains(&code),
        "curl to a port without a listener: {code} {body}"
    );
    assert!(secs < 10.0, "the refusal took {secs:.1} s");

    // The API: the forwards given as flags, sorted by local address then protocol.
    let row = |l: &str, r: &str, p: &str| (l.to_string(), format!("{GUEST}:{r}"), p.to_string());
    let flag_rows = [
        row("127.0.0.1:17007", "7", "udp"),
        row("127.0.0.1:18080", "80", "tcp"),
        row("127.0.0.1:18081", "81", "tcp"),
        row("127.0.0.1:19000", "9000", "tcp"),
    ];
    assert_eq!(forwards(&ns, &api), flag_rows);

    // Expose at run time (protocol absent: tcp, as gvproxy), use, unexpose.
    let body = format!(r#"{{"local": "127.0.0.1:18090", "remote": "{GUEST}:80"}}"#);
    let (code, text) = api_call(&ns, &api, "POST", "/services/forwarder/expose", Some(&body));
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["protocol"], "tcp", "{text}");
    // Written before the answer; the flags' forwards are not.
    assert_eq!(expose_lines(&state), [format!("expose=tcp:127.0.0.1:18090={GUEST}:80")]);
    let (code, page, _) = curl(&ns, "http://127.0.0.1:18090/", &[]);
    assert_eq!(
        (code, page.trim()),
        (0, "vmtest-httpd"),
        "GET / through the runtime forward"
    );
    refused(&ns, &api, "/services/forwarder/expose", &body, 409, "local");
    let un = r#"{"local": "127.0.0.1:18090", "protocol": "tcp"}"#;
    let (code, text) = api_call(&ns, &api, "POST", "/services/forwarder/unexpose", Some(un));
    assert_eq!((code, text.as_str()), (200, r#"{"removed":1}"#));
    let (code, body, _) = curl(&ns, "http://127.0.0.1:18090/", &[]);
    assert_eq!(code, 7, "an unexposed port refuses connections: {body}");
    let (code, text) = api_call(&ns, &api, "POST", "/services/forwarder/unexpose", Some(un));
    assert_eq!(code, 404, "{text}");
    assert!(expose_lines(&state).is_empty(), "unexpose removed the line");
    // UDP at run time too.
    let body = format!(r#"{{"local": "127.0.0.1:17008", "remote": "{GUEST}:7", "protocol": "udp"}}"#);
    let (code, text) = api_call(&ns, &api, "POST", "/services/forwarder/expose", Some(&body));
    assert_eq!(code, 200, "{text}");
    let out = run_ok(&mut ns.cmd("timeout", &["90", "python3", "-c", UDP_ECHO, "17008"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("first ok"),
        "UDP through a runtime forward: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // And one more TCP forward, to be there after a restart.
    let body = format!(r#"{{"local": "127.0.0.1:18092", "remote": "{GUEST}:80", "protocol": "tcp"}}"#);
    let (code, text) = api_call(&ns, &api, "POST", "/services/forwarder/expose", Some(&body));
    assert_eq!(code, 200, "{text}");
    let saved = [
        format!("expose=udp:127.0.0.1:17008={GUEST}:7"),
        format!("expose=tcp:127.0.0.1:18092={GUEST}:80"),
    ];
    assert_eq!(expose_lines(&state), saved);
    // A state file that cannot be written (a directory where its temporary
    // file goes): 500 naming api-state, and nothing changes.
    let tmp = dir.join("api-state.conf.tmp");
    std::fs::create_dir(&tmp).unwrap();
    let body = format!(r#"{{"local": "127.0.0.1:18093", "remote": "{GUEST}:80"}}"#);
    refused(&ns, &api, "/services/forwarder/expose", &body, 500, "api-state");
    let (code, out, _) = curl(&ns, "http://127.0.0.1:18093/", &[]);
    assert_eq!(code, 7, "the refused forward's listener is closed again: {out}");
    let un = r#"{"local": "127.0.0.1:18092"}"#;
    refused(&ns, &api, "/services/forwarder/unexpose", un, 500, "api-state");
    let (code, page, _) = curl(&ns, "http://127.0.0.1:18092/", &[]);
    assert_eq!((code, page.trim()), (0, "vmtest-httpd"), "the forward stays");
    assert_eq!(expose_lines(&state), saved);
    std::fs::remove_dir(&tmp).unwrap();

    // Bad bodies: 400 naming the field.
    let fwd = "/services/forwarder/expose";
    for (body, field) in [
        (
            r#"{"local": "127.0.0.1:18091", "remote": "10.9.9.9:80"}"#.to_string(),
            "remote",
        ),
        (
            format!(r#"{{"local": "127.0.0.1:18091", "remote": "{GUEST}"}}"#),
            "remote",
        ),
        (
            r#"{"local": "127.0.0.1:18091", "remote": "10.0.3.1:53"}"#.to_string(),
            "remote",
        ),
        (format!(r#"{{"remote": "{GUEST}:80"}}"#), "local"),
        (
            format!(r#"{{"local": "10.9.9.9:18091", "remote": "{GUEST}:80"}}"#),
            "local",
        ),
        (
            format!(r#"{{"local": "127.0.0.1:0", "remote": "{GUEST}:80"}}"#),
            "local",
        ),
        (format!(r#"{{"local": 18091, "remote": "{GUEST}:80"}}"#), "local"),
        (
            format!(r#"{{"local": "127.0.0.1:18091", "remote": "{GUEST}:80", "protocol": "sctp"}}"#),
            "protocol",
        ),
        (
            format!(r#"{{"local": "127.0.0.1:18091", "remote": "{GUEST}:80", "colour": 1}}"#),
            "colour",
        ),
        ("[1, 2]".to_string(), "body"),
        ("{".to_string(), "body"),
    ] {
        refused(&ns, &api, fwd, &body, 400, field);
    }
    refused(
        &ns,
        &api,
        "/services/forwarder/unexpose",
        r#"{"protocol": "tcp"}"#,
        400,
        "local",
    );
    refused(
        &ns,
        &api,
        "/services/forwarder/unexpose",
        r#"{"local": "x"}"#,
        400,
        "local",
    );

    // The hub still runs, the forwards still work, and its counters show them.
    assert!(ns.child(hub).try_wait().unwrap().is_none(), "the hub died");
    let (code, body, _) = curl(&ns, "http://127.0.0.1:18080/", &[]);
    assert_eq!((code, body.trim()), (0, "vmtest-httpd"));
    let (code, stats) = api_call(&ns, &api, "GET", "/stats", None);
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&stats).unwrap();
    let host = v["host"].as_str().unwrap();
    assert!(host.contains("forward tcp open"), "{host}");
    assert!(
        !host.contains("refused 0 reset"),
        "the refused connection is counted: {host}"
    );

    // SIGKILL; restart with a program on 18092 and an --expose flag on the
    // UDP forward's address: both saved forwards are skipped, logged, and
    // kept in the file.
    let _ = ns.child(hub).kill();
    let _ = ns.child(hub).wait();
    let squat_log = dir.join("squat.log");
    let squat = ns.spawn(ns.cmd("timeout", &["120", "python3", "-c", SQUAT, "18092"]), &squat_log);
    assert!(wait_for_text(&squat_log, "listening", Duration::from_secs(20)));
    let dup = format!("udp:127.0.0.1:17008={GUEST}:7");
    let mut flags2 = flags.to_vec();
    flags2.extend(["--expose", &dup]);
    let log2 = dir.join("hub2.log");
    let cmd = stream_hub_cmd(&ns, &sock, &flags2);
    let hub = start_hub_cmd(&mut ns, cmd, &log2);
    let text = std::fs::read_to_string(&log2).unwrap();
    assert!(
        text.contains(&format!("{}: cannot listen on 127.0.0.1:18092", saved[1])),
        "{text}"
    );
    assert!(text.contains(&format!("{}: an --expose flag", saved[0])), "{text}");
    let mut want = flag_rows.to_vec();
    want.insert(1, row("127.0.0.1:17008", "7", "udp"));
    assert_eq!(forwards(&ns, &api), want);
    assert_eq!(expose_lines(&state), saved);

    // SIGKILL; restart with the first hub's flags: the API's forwards are
    // back, and one reaches the guest (once it reconnected).
    ns.stop(squat);
    let _ = ns.child(hub).kill();
    let _ = ns.child(hub).wait();
    let cmd = stream_hub_cmd(&ns, &sock, &flags);
    let hub = start_hub_cmd(&mut ns, cmd, &dir.join("hub3.log"));
    want.push(row("127.0.0.1:18092", "80", "tcp"));
    want.sort();
    assert_eq!(forwards(&ns, &api), want);
    let (code, page, secs) = curl(&ns, "http://127.0.0.1:18092/", &[]);
    assert_eq!(
        (code, page.trim()),
        (0, "vmtest-httpd"),
        "GET / through the restored forward"
    );
    eprintln!("the restored forward answered in {secs:.1} s");
    // Unexpose removes their lines.
    for (un, left) in [
        (r#"{"local": "127.0.0.1:18092"}"#, &saved[..1]),
        (r#"{"local": "127.0.0.1:17008", "protocol": "udp"}"#, &[][..]),
    ] {
        let (code, text) = api_call(&ns, &api, "POST", "/services/forwarder/unexpose", Some(un));
        assert_eq!((code, text.as_str()), (200, r#"{"removed":1}"#), "{un}");
        assert_eq!(expose_lines(&state), left, "after {un}");
    }
    assert_eq!(forwards(&ns, &api), flag_rows);

    // Bad --expose values are refused at start, naming the flag.
    let bad_state = dir.join("bad-state.conf");
    std::fs::write(
        &bad_state,
        format!("# x\nexpose=tcp:127.0.0.1:2222={GUEST}:22\nexpose=tcp:127.0.0.1:2223=10.9.9.9:22\n"),
    )
    .unwrap();
    let bad_state_at = format!("{}:3: ", bad_state.display());
    for (flags, needles) in [
        (
            vec!["--expose", "tcp:127.0.0.1:2222"],
            vec!["--expose", "GUEST_IP:PORT"],
        ),
        (
            vec!["--expose", "127.0.0.1:2222=10.0.3.50"],
            vec!["--expose", "IPV4:PORT"],
        ),
        (
            vec!["--expose", "127.0.0.1:2222=10.9.9.9:22"],
            vec!["--expose", "not a guest", "10.0.3.1/24"],
        ),
        (
            vec!["--expose", "10.9.9.9:2222=10.0.3.50:22"],
            vec!["--expose 10.9.9.9:2222=10.0.3.50:22", "cannot listen"],
        ),
        (
            vec![
                "--expose",
                "127.0.0.1:2223=10.0.3.50:22",
                "--expose",
                "127.0.0.1:2223=10.0.3.51:22",
            ],
            vec!["--expose", "twice"],
        ),
        (
            vec!["--no-host", "--expose", "127.0.0.1:2222=10.0.3.50:22"],
            vec!["--expose", "--no-host"],
        ),
        (
            vec!["--api-state", bad_state.to_str().unwrap()],
            vec![bad_state_at.as_str(), "--expose", "not a guest"],
        ),
    ] {
        let text = hub_refused(&ns, &dir.join("hub2.sock"), &flags);
        for n in needles {
            assert!(text.contains(n), "{flags:?}: no {n:?} in {text}");
        }
    }
    ns.stop(hub);
}
