//! `vmlan up/status/down` as a user meets them, without starting anything:
//! the example cluster files validate (`up --check` prints their command lines),
//! and bad files are refused before anything starts, with the file, table and
//! field named: an IP outside the subnet, a duplicate MAC or IP, a missing image,
//! missing QEMU tools; commands other than `up` say where they looked.

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
        let (ok, out) = vmlan(&dir, &["up", "--check", p.to_str().unwrap()], None);
        assert!(ok, "{name}: {out}");
        let text = std::fs::read_to_string(&p).unwrap();
        let networks = text.lines().filter(|l| l.trim() == "[[network]]").count().max(1);
        assert_eq!(
            out.lines().filter(|l| l.contains(" hub ")).count(),
            networks,
            "{name}: {out}"
        );
        assert!(
            out.lines().filter(|l| l.starts_with("qemu-system-x86_64 ")).count() >= 2,
            "{name}: {out}"
        );
        assert!(!dir.join(".vmlan").exists(), "--check created the state directory");
        checked += 1;
    }
    assert!(checked >= 2, "examples/yomi.toml and examples/lab.toml");
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
