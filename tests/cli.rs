//! `vmlan hub` as a user meets it: --help documents every flag, the example
//! config passes --test, `--flag=value` works, and bad input is refused at start
//! with a message that names the flag (or the config file and its key).

use std::process::Command;

fn vmlan(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vmlan")).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

const BASE: &[&str] = &["hub", "--mcast", "230.0.0.1:1234", "--addr", "10.0.3.1/24", "--test"];

fn with(extra: &[&str]) -> (bool, String) {
    let mut a = BASE.to_vec();
    a.extend_from_slice(extra);
    vmlan(&a)
}

#[test]
fn help_documents_every_flag_with_an_example() {
    let (ok, help) = vmlan(&["hub", "--help"]);
    assert!(ok);
    for flag in [
        "--config",
        "--mcast",
        "--addr",
        "--mac",
        "--dhcp-range",
        "--dhcp-host",
        "--dhcp-option",
        "--host-record",
        "--domain",
        "--dns-listen",
        "--leasefile",
        "--stats",
        "--test",
    ] {
        let line = help
            .lines()
            .position(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("{flag} missing"));
        let doc: String = help
            .lines()
            .skip(line + 1)
            .take_while(|l| !l.trim_start().starts_with("--"))
            .collect();
        assert!(doc.contains("Example"), "{flag} has no example: {doc}");
    }
    assert!(help.contains("TTL 0") && help.contains("127.0.0.1") && help.contains("IP_MULTICAST_ALL"));
}

#[test]
fn example_config_and_equals_syntax_pass() {
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/yomi-hub.toml");
    let (ok, out) = vmlan(&["hub", "--config", cfg, "--test"]);
    assert!(ok, "{out}");
    let (ok, out) = with(&["--dhcp-host=00:00:00:11:11:11,10.0.3.101,master", "--domain=cluster"]);
    assert!(ok, "{out}");
}

#[test]
fn bad_input_is_refused_naming_the_flag() {
    for (extra, needle) in [
        (
            &["--dhcp-host", "00:00:00:zz:11:11,10.0.3.101,master"][..],
            "--dhcp-host",
        ),
        (&["--dhcp-host", "00:00:00:11:11:11,10.0.9.101"], "--dhcp-host"),
        (&["--dhcp-host", "00:00:00:11:11:11,10.0.3.300"], "--dhcp-host"),
        (&["--dhcp-range", "10.0.3.200,10.0.3.100"], "reversed"),
        (&["--dhcp-range", "10.0.3.100,10.0.4.200"], "--dhcp-range"),
        (&["--dhcp-option", "option:router,10.0.3"], "--dhcp-option"),
        (&["--host-record", "master"], "--host-record"),
        (&["--mac", "00:11"], "--mac"),
        (&["--dns-listen", "localhost"], "--dns-listen"),
        (&["--mcast", "10.0.0.1:1234"], "--mcast"),
    ] {
        let (ok, out) = with(extra);
        assert!(!ok, "{extra:?} accepted");
        assert!(out.contains(needle), "{extra:?}: {out}");
        assert!(!out.contains("panicked"), "{out}");
    }
    let (ok, out) = vmlan(&["hub", "--mcast", "230.0.0.1:1234", "--test"]);
    assert!(!ok && out.contains("--addr"), "{out}");
}

#[test]
fn bad_config_file_names_file_and_key() {
    let dir = std::env::temp_dir().join(format!("vmlan-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.toml");
    std::fs::write(&f, "addr = \"10.0.3.1/24\"\ndhcp-rang = [\"10.0.3.5,10.0.3.9\"]\n").unwrap();
    let (ok, out) = vmlan(&["hub", "--config", f.to_str().unwrap(), "--test"]);
    assert!(!ok);
    assert!(out.contains("bad.toml") && out.contains("dhcp-rang"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigterm_stops_the_hub_with_stream_clients_connected() {
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};
    let dir = std::env::temp_dir().join(format!("vmlan-cli-term-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("hub.sock");
    let mut hub = Command::new(env!("CARGO_BIN_EXE_vmlan"))
        .args(["hub", "--addr", "10.0.3.1/24", "--stream"])
        .arg(format!("unix:{}", sock.display()))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let client = loop {
        match UnixStream::connect(&sock) {
            Ok(c) => break c,
            Err(_) if start.elapsed() < Duration::from_secs(10) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("hub did not listen: {e}"),
        }
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(Command::new("kill")
        .args(["-TERM", &hub.id().to_string()])
        .status()
        .unwrap()
        .success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = hub.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(5) {
            let _ = hub.kill();
            panic!("the hub did not exit within 5 s of SIGTERM with a client connected");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    drop(client);
    std::fs::remove_dir_all(&dir).unwrap();
}
