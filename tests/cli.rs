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
        "--enable-ra",
        "--dhcp-host",
        "--dhcp-option",
        "--host-record",
        "--domain",
        "--dns-listen",
        "--cname",
        "--srv-host",
        "--address",
        "--server",
        "--local",
        "--no-resolv",
        "--resolv-file",
        "--dns-forward-max",
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
    for example in ["yomi-hub.toml", "lab-hub.toml"] {
        let cfg = format!("{}/examples/{example}", env!("CARGO_MANIFEST_DIR"));
        let (ok, out) = vmlan(&["hub", "--config", &cfg, "--test"]);
        assert!(ok, "{example}: {out}");
    }
    let (ok, out) = with(&["--dhcp-host=00:00:00:11:11:11,10.0.3.101,master", "--domain=cluster"]);
    assert!(ok, "{out}");
    let (ok, out) = with(&["--enable-ra", "--dhcp-range=1234::2,1234::500,slaac,64,12h"]);
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
        (&["--dhcp-range", "1234::,ra-sometimes"], "\"ra-sometimes\""),
        (&["--dhcp-range", "1234::,ra-only,48"], "/64"),
        (&["--dhcp-option", "option:router,10.0.3"], "--dhcp-option"),
        (&["--host-record", "master"], "--host-record"),
        (&["--mac", "00:11"], "--mac"),
        (&["--dns-listen", "localhost"], "--dns-listen"),
        (&["--mcast", "10.0.0.1:1234"], "--mcast"),
        (&["--cname", "www,google.com"], "--cname"),
        (&["--srv-host", "_x._tcp,host,99999"], "--srv-host"),
        (&["--address", "ads.test/192.0.2.1"], "--address"),
        (&["--server", "192.0.2.53#x"], "--server"),
        (&["--local", "/bad name/"], "--local"),
        (&["--dns-forward-max", "0"], "--dns-forward-max"),
        (&["--resolv-file", "/nonexistent"], "--resolv-file"),
        (
            &["--dns-listen", "127.0.0.1:5353", "--server", "127.0.0.1#5353"],
            "loop",
        ),
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
        .args(["hub", "--addr", "10.0.3.1/24", "--no-resolv", "--stream"])
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

#[test]
fn leases_command_reads_file_and_journal() {
    let dir = std::env::temp_dir().join(format!("vmlan-cli-leases-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("leases");
    let far = 4_000_000_000u64;
    std::fs::write(
        &file,
        format!(
            "{far} 00:00:00:11:11:11 10.0.3.101 master *\n0 00:00:00:22:22:22 10.0.3.102 worker1 *\n\
             duid 00:03:00:01:02:76:6d:00:03:01\n{far} 30469 1234::5 name6 00:03:00:01:52:54:00:00:00:05\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("leases.journal"),
        format!(
            "del mac 00:00:00:22:22:22 10.0.3.102\nadd {far} 52:54:00:00:00:09 10.0.3.150 scratch ff:00:00:00:01\n"
        ),
    )
    .unwrap();
    let (ok, out) = vmlan(&["leases", "--leasefile", file.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.lines().next().unwrap().starts_with("IP"), "{out}");
    assert!(out.contains("10.0.3.101") && out.contains("master"), "{out}");
    assert!(
        out.contains("10.0.3.150") && out.contains("scratch") && out.contains("ff:00:00:00:01"),
        "{out}"
    );
    assert!(!out.contains("worker1"), "released in the journal: {out}");
    // The DHCPv6 lease, in a section of its own after the IPv4 ones.
    let v6 = out.lines().position(|l| l.starts_with("IPv6")).expect(&out);
    assert!(
        out.lines().nth(v6 + 1).is_some_and(|l| l.starts_with("1234::5 ")
            && l.contains(" 30469 ")
            && l.contains("name6")
            && l.ends_with("00:03:00:01:52:54:00:00:00:05")),
        "{out}"
    );
    let (ok, out) = vmlan(&["leases", "--leasefile", file.to_str().unwrap(), "--json"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert_eq!(v[0]["ip"], "10.0.3.101");
    assert_eq!(v[0]["family"], "ipv4");
    assert_eq!(v[1]["client_id"], "ff:00:00:00:01");
    // The DHCPv6 lease after the IPv4 ones, its MAC from the DUID-LL.
    assert_eq!(v[2]["family"], "ipv6");
    assert_eq!(v[2]["ip"], "1234::5");
    assert_eq!(v[2]["iaid"], 30469);
    assert_eq!(v[2]["duid"], "00:03:00:01:52:54:00:00:00:05");
    assert_eq!(v[2]["mac"], "52:54:00:00:00:05");
    assert_eq!(v[2]["hostname"], "name6");
    let (ok, out) = vmlan(&["leases"]);
    assert!(!ok && out.contains("--leasefile"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}
