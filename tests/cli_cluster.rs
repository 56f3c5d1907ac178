//! `vmlan up/status/down` as a user meets them, without starting anything:
//! the example cluster files validate (`up --check` prints their command lines),
//! and bad files are refused before anything starts, with the file, table and
//! field named: an IP outside the subnet, a duplicate MAC or IP, a missing image,
//! missing QEMU tools; commands other than `up` say where they looked; a file on
//! two machines (examples/two-machines.toml) is checked per `--host`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn vmlan(dir: &Path, args: &[&str], path_env: Option<&str>) -> (bool, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vmlan"));
    c.args(args).current_dir(dir);
    if let Some(p) = path_env {
        c.env("PATH", p);
    }
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vmlan-cli-cluster-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const GOOD: &str = r#"
[cluster]
name = "c"
[network]
subnet = "10.0.3.0/24"
address = "10.0.3.1"
dhcp_range = "10.0.3.100,10.0.3.200"
[defaults]
image = "base.qcow2"
[[node]]
name = "master"
mac = "00:00:00:11:11:11"
ip = "10.0.3.101"
[[node]]
name = "worker"
count = 2
"#;

#[test]
fn example_cluster_files_validate() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for e in std::fs::read_dir(&examples).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".toml") || name.ends_with("-hub.toml") {
            continue;
        }
        let dir = tmp(&name);
        let text = std::fs::read_to_string(&p).unwrap();
        // A file on several machines is checked once per machine (`--host NAME`).
        let hosts: Vec<String> = text
            .split("\n[[host]]\n")
            .skip(1)
            .filter_map(|t| t.lines().find_map(|l| l.trim().strip_prefix("name = ")))
            .map(|n| n.trim_matches('"').to_string())
            .collect();
        let runs: Vec<Option<&str>> = if hosts.is_empty() {
            vec![None]
        } else {
            hosts.iter().map(|h| Some(h.as_str())).collect()
        };
        let mut qemus = 0;
        for host in runs {
            let mut args = vec!["up", "--check", p.to_str().unwrap()];
            args.extend(host.iter().flat_map(|h| ["--host", *h]));
            let (ok, out) = vmlan(&dir, &args, None);
            assert!(ok, "{name} {host:?}: {out}");
            let networks = text.lines().filter(|l| l.trim() == "[[network]]").count().max(1);
            assert_eq!(
                out.lines().filter(|l| l.contains(" hub ")).count(),
                networks,
                "{name}: {out}"
            );
            if host.is_some() {
                assert!(out.contains(" --vxlan vni="), "{name} {host:?}: {out}");
            }
            qemus += out.lines().filter(|l| l.starts_with("qemu-system-x86_64 ")).count();
        }
        assert!(qemus >= 2, "{name}");
        assert!(!dir.join(".vmlan").exists(), "--check created the state directory");
        checked += 1;
    }
    assert!(
        checked >= 3,
        "examples/yomi.toml, examples/lab.toml and examples/two-machines.toml"
    );
}

#[test]
fn bad_cluster_files_are_refused_before_anything_starts() {
    let dir = tmp("bad");
    std::fs::write(dir.join("base.qcow2"), b"").unwrap();
    for (from, to, want) in [
        (
            "count = 2",
            "count = 2\nip = \"10.0.4.5\"",
            "c.toml: [[node]] 2 (worker): ip 10.0.4.5 is outside [network] subnet 10.0.3.0/24",
        ),
        (
            "count = 2",
            "count = 2\nmac = \"00:00:00:11:11:10\"",
            "c.toml: [[node]] 2 (worker2): mac 00:00:00:11:11:11 is also node master's",
        ),
        (
            "count = 2",
            "count = 2\nip = \"10.0.3.100\"",
            "c.toml: [[node]] 2 (worker2): ip 10.0.3.101 is also node master's",
        ),
        (
            "image = \"base.qcow2\"",
            "image = \"nothere.qcow2\"",
            "c.toml: [[node]] 1 (master): image ",
        ),
        ("count = 2", "count = 2\nmemroy = \"1G\"", "unknown field `memroy`"),
        (
            "count = 2",
            "count = 2\nipv6 = \"fd00::1:{ipv4}\"",
            "c.toml: [[node]] 2 (worker): ipv6 is set but [network] has no ipv6 prefix",
        ),
        (
            "dhcp_range =",
            "ipv6 = \"fd00::/56\"\ndhcp_range =",
            "c.toml: [network]: ipv6 \"fd00::/56\" must be a /64 prefix",
        ),
    ] {
        std::fs::write(dir.join("c.toml"), GOOD.replace(from, to)).unwrap();
        let (ok, out) = vmlan(&dir, &["up", "c.toml"], None);
        assert!(!ok, "{to}: accepted");
        assert!(out.contains(want), "{to}: want {want:?} in {out}");
        assert!(!out.contains("panicked"), "{out}");
        assert!(!dir.join(".vmlan").exists(), "{to}: created state");
    }
    // A missing image says so.
    std::fs::write(dir.join("c.toml"), GOOD.replace("base.qcow2", "nothere.qcow2")).unwrap();
    let (_, out) = vmlan(&dir, &["up", "c.toml"], None);
    assert!(out.contains("nothere.qcow2: no such file"), "{out}");
    // No QEMU on PATH: a clear message, nothing created.
    std::fs::write(dir.join("c.toml"), GOOD).unwrap();
    let empty = tmp("empty-path");
    let (ok, out) = vmlan(&dir, &["up", "c.toml"], Some(empty.to_str().unwrap()));
    assert!(!ok);
    assert!(out.contains("qemu-system-x86_64 not found on PATH"), "{out}");
    assert!(!dir.join(".vmlan").exists());
}

/// A file on two machines (`[[host]]`): `up --check --host` shows only that
/// machine's nodes, with the authority's hub holding every node's reservation
/// and the other's a pure switch; a wrong or missing `--host` and bad machine
/// keys are refused with the file, table and field named.
#[test]
fn two_machines_host_selection_and_errors() {
    let dir = tmp("two");
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/two-machines.toml");
    let f = file.to_str().unwrap();
    let (ok, out) = vmlan(&dir, &["up", "--check", f, "--host", "a"], None);
    assert!(ok, "{out}");
    let hub = out.lines().find(|l| l.contains(" hub ")).unwrap();
    assert!(
        hub.contains("--vxlan vni=42,local=192.0.2.10:4789,peer=192.0.2.20,port=4789,mtu=1500"),
        "{hub}"
    );
    assert!(hub.contains(",web1 ") && hub.contains(",10.0.3.50,db "), "{hub}");
    assert!(!hub.contains("--no-host"), "{hub}");
    let qemus: Vec<&str> = out.lines().filter(|l| l.starts_with("qemu-system-x86_64 ")).collect();
    assert_eq!(qemus.len(), 2, "{out}");
    assert!(qemus.iter().all(|q| q.contains("-name web")), "{out}");
    let (ok, out) = vmlan(&dir, &["up", "--check", f, "--host", "b"], None);
    assert!(ok, "{out}");
    let hub = out.lines().find(|l| l.contains(" hub ")).unwrap();
    assert!(
        hub.contains("local=192.0.2.20:4789,peer=192.0.2.10,") && hub.contains(" --no-host"),
        "{hub}"
    );
    assert!(!hub.contains("--dhcp-host"), "{hub}");
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("qemu-system-x86_64 -name db"))
            .count(),
        1,
        "{out}"
    );
    let (ok, out) = vmlan(&dir, &["up", "--check", f, "--host", "c"], None);
    assert!(!ok);
    assert!(out.contains("--host c: ") && out.contains("(its hosts: a, b)"), "{out}");
    let (ok, out) = vmlan(&dir, &["up", f, "--host", "c"], None);
    assert!(!ok && out.contains("--host c: "), "{out}");
    let (ok, out) = vmlan(&dir, &["up", "--check", "--host", "a", "c.toml"], None);
    assert!(!ok, "{out}");
    std::fs::write(dir.join("c.toml"), GOOD).unwrap();
    let (ok, out) = vmlan(&dir, &["up", "--check", "--host", "a", "c.toml"], None);
    assert!(!ok && out.contains("c.toml has no [[host]] tables"), "{out}");
    let text = std::fs::read_to_string(&file).unwrap();
    for (from, to, want) in [
        ("host = \"b\"\n", "", "[[node]] 2 (db): host is missing"),
        ("vni = 42,", "vni = -1,", "[network]: vxlan vni -1 must be between"),
        (
            "authority = \"a\"",
            "authority = \"z\"",
            "[network]: authority \"z\" is not a [[host]] name",
        ),
        (
            "address = \"192.0.2.20\"",
            "address = \"192.0.2.10\"",
            "[[host]] 2 (b): address 192.0.2.10 is also host a's",
        ),
    ] {
        assert!(text.contains(from), "{from}");
        std::fs::write(dir.join("t.toml"), text.replace(from, to)).unwrap();
        let (ok, out) = vmlan(&dir, &["up", "--check", "t.toml", "--host", "a"], None);
        assert!(!ok, "{to}: accepted");
        assert!(out.contains(&format!("t.toml: {want}")), "{to}: want {want:?} in {out}");
        assert!(!out.contains("panicked"), "{out}");
    }
    assert!(!dir.join(".vmlan").exists());
}

#[test]
fn commands_without_a_cluster_say_where_they_looked() {
    let dir = tmp("none");
    for args in [
        &["status"][..],
        &["down"],
        &["ssh", "master"],
        &["console", "master"],
        &["logs", "master"],
    ] {
        let (ok, out) = vmlan(&dir, args, None);
        assert!(!ok, "{args:?}");
        assert!(
            out.contains("no cluster under") && out.contains(".vmlan"),
            "{args:?}: {out}"
        );
    }
    let (ok, out) = vmlan(&dir, &["--help"], None);
    assert!(ok);
    for cmd in ["up", "status", "ssh", "console", "logs", "down"] {
        assert!(out.lines().any(|l| l.trim_start().starts_with(cmd)), "{cmd}: {out}");
    }
}
