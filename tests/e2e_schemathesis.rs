//! schemathesis (PyPI, the version pinned in tests/setup.sh) against the
//! runtime API's own `/openapi.json` (issue 15): a hub with `--api unix:PATH`
//! runs in a network namespace the test creates, socat bridges the socket to
//! 127.0.0.1 inside that namespace (schemathesis speaks TCP only), and
//! `schemathesis run` generates requests for every documented operation (its
//! examples, coverage, fuzzing and stateful phases, positive and negative
//! data), checking that no answer is a 5xx and that every status code,
//! content type and body is one the document declares. Any failure fails the
//! test with schemathesis's report. Afterwards the hub still runs and answers
//! the API and DNS.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Test cases per API operation and phase (VMLAN_SCHEMATHESIS_EXAMPLES
/// overrides it for a longer run; VMLAN_SCHEMATHESIS_SEED the seed).
const MAX_EXAMPLES: &str = "100";
/// The whole schemathesis run, killed (and the test failed) past this.
const RUN_LIMIT: Duration = Duration::from_secs(600);
/// The TCP port socat listens on, on the namespace's 127.0.0.1.
const PORT: &str = "18080";

/// The schemathesis executable tests/setup.sh installed: a venv under
/// /var/cache/vmlan named after the version pinned there.
fn schemathesis() -> std::path::PathBuf {
    let setup = std::fs::read_to_string(repo().join("tests/setup.sh")).unwrap();
    let version = setup
        .lines()
        .find_map(|l| l.strip_prefix("SCHEMATHESIS_VERSION="))
        .expect("SCHEMATHESIS_VERSION= in tests/setup.sh");
    let venv = Path::new("/var/cache/vmlan").join(format!("schemathesis-{version}"));
    assert!(
        venv.join(".installed").exists(),
        "schemathesis {version} is not installed in {}: run tests/setup.sh",
        venv.display()
    );
    venv.join("bin/schemathesis")
}

/// How many operations (path and method) schemathesis should test: those of
/// the OpenAPI document but the paths under /events (left out) and
/// /openapi.json (schemathesis does not test the operation it loaded the
/// document from; the test fetches it through socat itself).
fn operations() -> usize {
    let text = std::fs::read_to_string(repo().join("src/api/openapi.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let methods = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(p, _)| !p.starts_with("/events") && *p != "/openapi.json")
        .map(|(_, item)| methods.iter().filter(|m| item.get(**m).is_some()).count())
        .sum()
}

/// `curl` over the API socket in `ns`: (HTTP status, body).
fn api_get(ns: &Netns, sock: &Path, path: &str) -> (String, String) {
    let url = format!("http://vmlan{path}");
    let o = ns
        .cmd(
            "curl",
            &[
                "-sS",
                "--max-time",
                "10",
                "--unix-socket",
                sock.to_str().unwrap(),
                "-w",
                "\n%{http_code}",
                &url,
            ],
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.to_string())
}

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_mismatch() {
    let st = schemathesis();
    let dir = scratch("schemathesis");
    let mut ns = Netns::new("schemathesis");
    let sock = dir.join("segment.sock");
    let api = dir.join("api.sock");
    let api_flag = format!("unix:{}", api.display());
    let cmd = stream_hub_cmd(
        &ns,
        &sock,
        &[
            "--api",
            &api_flag,
            "--dns-listen",
            "127.0.0.1:5353",
            "--dhcp-range",
            "10.0.3.100,10.0.3.200",
            "--dhcp-host",
            "00:00:00:11:11:11,10.0.3.101,master",
            "--host-record",
            "master,10.0.3.101",
            "--cname",
            "salt,master",
            "--srv-host",
            "_salt._tcp,master,4506",
            "--domain",
            "cluster",
        ],
    );
    let hub = start_hub_cmd(&mut ns, cmd, &dir.join("hub.log"));
    assert_eq!(api_get(&ns, &api, "/stats").0, "200");

    // socat: 127.0.0.1:PORT (in the namespace) to the API socket, a
    // connection each.
    let listen = format!("TCP-LISTEN:{PORT},bind=127.0.0.1,reuseaddr,fork");
    let connect = format!("UNIX-CONNECT:{}", api.display());
    let socat = ns.cmd("socat", &[&listen, &connect]);
    ns.spawn(socat, &dir.join("socat.log"));
    let url = format!("http://127.0.0.1:{PORT}/openapi.json");
    let start = Instant::now();
    loop {
        let o = ns
            .cmd(
                "curl",
                &["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", &url],
            )
            .output()
            .unwrap();
        if o.stdout == b"200" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "socat did not bridge the API: {}",
            std::fs::read_to_string(dir.join("socat.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // GET /events streams until the client goes away, so schemathesis would
    // wait on it until its request timeout: it is left out by path.
    let seed = std::env::var("VMLAN_SCHEMATHESIS_SEED").unwrap_or_else(|_| "15".into());
    let examples = std::env::var("VMLAN_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| MAX_EXAMPLES.into());
    let report = dir.join("schemathesis.log");
    let mut run = ns.cmd(
        &st,
        &[
            "run",
            &url,
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            &examples,
            "--seed",
            &seed,
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--exclude-path-regex",
            "^/events",
        ],
    );
    run.current_dir(&dir).env("NO_COLOR", "1").env("COLUMNS", "120");
    let i = ns.spawn(run, &report);
    ns.wait(i, RUN_LIMIT, "schemathesis run");
    let status = ns.child(i).wait().unwrap();
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    assert!(status.success(), "schemathesis found failures ({status}):\n{text}");
    let n = operations();
    assert!(
        text.contains(&format!("Tested: {n}")),
        "schemathesis did not test all {n} operations:\n{text}"
    );

    // The hub survived and still answers the API and DNS.
    assert!(ns.child(hub).try_wait().unwrap().is_none(), "the hub exited:\n{text}");
    let (code, body) = api_get(&ns, &api, "/leases");
    assert_eq!(code, "200", "{body}");
    assert_eq!(
        dig_status(&ns, "master.cluster", "A"),
        ("NOERROR".into(), vec!["10.0.3.101".into()])
    );
    let log = std::fs::read_to_string(dir.join("hub.log")).unwrap();
    assert!(!log.contains("panicked"), "{log}");
}
