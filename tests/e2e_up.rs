//! End to end (issue 5): `vmlan up` on a 3-node cluster file (master with a
//! reserved address + worker x2 from the pool), in a private network namespace,
//! with the test guest booted directly (TCG) and the `stream` transport.
//! Checks: `up` returns with every node leased at its reserved or pool address;
//! `vmlan status --json` matches `up`'s table and the running processes; the TCP
//! listener each guest starts on port 22 answers at the node's ssh port on the
//! host side (the SLIRP hostfwd); the guests ping each other by name; the host
//! resolves them through the hub's DNS; the overlay's backing file is the base
//! (`qemu-img info --output=json`); a second cluster asking for a taken ssh port
//! is refused, and so is one whose `dns_listen` the first cluster's hub holds; `vmlan console` reaches the guest's serial console and Ctrl-]
//! detaches; `vmlan logs` prints the console; `vmlan down` sends QMP
//! `system_powerdown` to every QEMU and leaves no process in the namespace; `up` again reuses
//! the overlays and the nodes lease again; `down --purge` removes the state.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Reads what the guest's port 22 sends through the node's hostfwd (retried up to 30 s).
fn banner(ns: &Netns, port: u64) -> String {
    let start = Instant::now();
    loop {
        let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && timeout 5 cat <&3");
        let o = ns.cmd("bash", &["-c", &script]).output().unwrap();
        let got = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if !got.is_empty() || start.elapsed() > Duration::from_secs(30) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Pids of every process in the namespace.
fn pids(ns: &Netns) -> Vec<String> {
    let o = std::process::Command::new("ip")
        .args(["netns", "pids", &ns.name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

const NODES: [&str; 3] = ["master", "worker1", "worker2"];

/// Attaches `vmlan console master` with a pipe for stdin (not a terminal, so no
/// raw mode), types a line (the guest's `vmtest.echo` loop answers it on the
/// console), then Ctrl-] (0x1d): the command must print the answer and exit 0.
fn console_round_trip(ns: &Netns, dir: &Path) {
    use std::io::{Read, Write};
    use std::process::Stdio;
    let mut child = ns
        .cmd(env!("CARGO_BIN_EXE_vmlan"), &["console", "master"])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let want = "VMTEST echo hello-console";
    let start = Instant::now();
    let text = || String::from_utf8_lossy(&seen.lock().unwrap()).to_string();
    while !text().contains(want) && start.elapsed() < Duration::from_secs(30) {
        // Typed again until answered: the console client may attach after the first line.
        stdin.write_all(b"hello-console\n").unwrap();
        std::thread::sleep(Duration::from_secs(1));
    }
    stdin.write_all(&[0x1d]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("vmlan console did not detach on Ctrl-]; it printed: {}", text());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    reader.join().unwrap();
    assert!(text().contains(want), "console printed: {}", text());
    assert!(status.success(), "vmlan console: {status}");
}

fn cluster_file(kernel: &Path, initrd: &Path, name: &str) -> String {
    format!(
        r#"
[cluster]
name = "{name}"
[network]
subnet = "10.0.3.0/24"
address = "10.0.3.1"
domain = "cluster"
transport = "stream"
dhcp_range = "10.0.3.100,10.0.3.200"
dns_listen = "127.0.0.1:5353"
no_resolv = true          # the namespace has no upstream, and nothing may leave it
[defaults]
memory = "256M"
cpus = 1
accel = "tcg"
image = "base.qcow2"
ssh_port_base = 10022
kernel = "{}"
initrd = "{}"
append = "console=ttyS0 quiet panic=-1 no_timer_check vmtest.mac={{mac}} vmtest.slirp={{slirp_mac}} vmtest.listen=22 vmtest.ping=master,worker1,worker2 vmtest.hold=3600 vmtest.echo=1"
[[node]]
name = "master"
mac = "00:00:00:11:11:11"
ip = "10.0.3.101"
[[node]]
name = "worker"
count = 2
"#,
        kernel.display(),
        initrd.display()
    )
}

/// Waits for "VMTEST round1" in each node's console log, then checks every ping by name.
fn check_pings(state: &Path) {
    for node in NODES {
        let log = state.join(format!("{node}.log"));
        assert!(
            wait_for_text(&log, "VMTEST round1", Duration::from_secs(180)),
            "{node} did not finish its pings: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let r = parse_console(&log);
        for other in NODES {
            assert_eq!(r.pings.get(other), Some(&true), "{node} pings {other}: {}", r.console);
        }
    }
}

#[test]
fn up_status_hostfwd_pings_down_and_resume() {
    let (kernel, initrd) = guest();
    let dir = scratch("up");
    let ns = Netns::new("e2e-up");
    let base = dir.join("base.qcow2");
    run_ok(
        std::process::Command::new("qemu-img")
            .args(["create", "-f", "qcow2"])
            .arg(&base)
            .arg("64M"),
    );
    std::fs::write(dir.join("cluster.toml"), cluster_file(&kernel, &initrd, "e2e")).unwrap();
    let state = dir.join(".vmlan/e2e");

    // ---- up ----
    let o = vmlan_in(&ns, &dir, &["up", "cluster.toml", "--timeout", "240", "--no-wait-ssh"]);
    let out = output_text(&o);
    assert!(o.status.success(), "vmlan up: {out}");
    let table: Vec<Vec<String>> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| NODES.iter().any(|n| l.starts_with(&format!("{n} "))))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    assert_eq!(table.len(), 3, "{out}");
    // Readiness came from the hub's event stream (its --api socket), not its lease file,
    // and `vmlan ctl -f` finds that socket.
    assert!(!out.contains("lease file instead"), "{out}");
    let o = vmlan_in(&ns, &dir, &["ctl", "-f", "cluster.toml", "leases"]);
    let leases = output_text(&o);
    assert!(
        o.status.success() && leases.contains("00:00:00:11:11:11") && leases.contains("10.0.3.101"),
        "vmlan ctl -f cluster.toml leases: {leases}"
    );

    // ---- status --json matches up's table, and the processes run ----
    let s = vmlan_status(&ns, &dir);
    assert_eq!(s["cluster"], "e2e");
    assert_eq!(s["hubs"][0]["state"], "running", "{s}");
    let mut pool_ips = vec![];
    for (i, node) in NODES.iter().enumerate() {
        let n = &s["nodes"][i];
        assert_eq!(n["name"], *node, "{s}");
        assert_eq!(n["state"], "running", "{s}");
        let pid = n["pid"].as_u64().unwrap();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(String::from_utf8_lossy(&cmdline).contains("qemu-system-x86_64"), "{s}");
        let ip = n["ip"].as_str().unwrap_or_else(|| panic!("{node} has no lease: {s}"));
        let row = &table[i];
        assert_eq!(row[0], *node);
        assert_eq!(row[1], n["mac"].as_str().unwrap(), "{out}\n{s}");
        assert_eq!(row[2], ip, "{out}\n{s}");
        assert_eq!(n["ssh_port"], 10022 + i as u64);
        if *node == "master" {
            assert_eq!(ip, "10.0.3.101");
            assert_eq!(n["mac"], "00:00:00:11:11:11");
        } else {
            let last: u8 = ip.strip_prefix("10.0.3.").unwrap().parse().unwrap();
            assert!((100..=200).contains(&last), "{node} {ip} is not from the pool");
            assert!(n["mac"].as_str().unwrap().starts_with("52:54:00:"), "{s}");
            pool_ips.push(ip.to_string());
        }
    }
    assert_ne!(pool_ips[0], pool_ips[1]);

    // ---- the hostfwd reaches the guest's port 22 ----
    for (i, node) in NODES.iter().enumerate() {
        assert_eq!(banner(&ns, 10022 + i as u64), "vmtest-hello", "{node}'s ssh port");
    }

    // ---- guests ping each other by name; the host resolves them ----
    check_pings(&state);
    let o = ns
        .cmd(
            "dig",
            &[
                "+short",
                "+time=2",
                "+tries=2",
                "@127.0.0.1",
                "-p",
                "5353",
                "worker2.cluster",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        s["nodes"][2]["ip"].as_str().unwrap()
    );

    // ---- vmlan console: a line typed reaches the guest, its answer comes back, Ctrl-] detaches ----
    console_round_trip(&ns, &dir);

    // ---- overlays: backed by the base ----
    let mut inodes = vec![];
    for node in NODES {
        let overlay = state.join(format!("{node}.qcow2"));
        let info = run_ok(
            std::process::Command::new("qemu-img")
                .args(["info", "--output=json", "-U"])
                .arg(&overlay),
        );
        let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(v["format"], "qcow2");
        assert_eq!(v["backing-filename"], base.display().to_string(), "{v}");
        assert_eq!(v["backing-filename-format"], "qcow2", "{v}");
        inodes.push(std::fs::metadata(&overlay).unwrap().ino());
    }

    // ---- a second cluster wanting a taken ssh port is refused, nothing started ----
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(&base, other.join("base.qcow2")).unwrap();
    let text2 = cluster_file(&kernel, &initrd, "other").replace("127.0.0.1:5353", "127.0.0.1:5354");
    std::fs::write(other.join("cluster.toml"), text2).unwrap();
    let before = pids(&ns).len();
    let o = vmlan_in(&ns, &other, &["up", "cluster.toml"]);
    let msg = output_text(&o);
    assert!(!o.status.success(), "{msg}");
    assert!(
        msg.contains("cluster.toml: [[node]] 1 (master): ssh port 10022 is taken"),
        "{msg}"
    );
    assert_eq!(pids(&ns).len(), before, "a refused up started something");
    // ... and so is one whose dns_listen this cluster's hub holds, named by the file's key.
    let third = dir.join("third");
    std::fs::create_dir_all(&third).unwrap();
    std::fs::copy(&base, third.join("base.qcow2")).unwrap();
    let text3 = cluster_file(&kernel, &initrd, "third").replace("ssh_port_base = 10022", "ssh_port_base = 10122");
    std::fs::write(third.join("cluster.toml"), text3).unwrap();
    let o = vmlan_in(&ns, &third, &["up", "cluster.toml"]);
    let msg = output_text(&o);
    assert!(!o.status.success(), "{msg}");
    assert!(
        msg.contains("cluster.toml: [network]: dns_listen 127.0.0.1:5353 is taken"),
        "{msg}"
    );
    assert_eq!(pids(&ns).len(), before, "a refused up started something");

    // ---- logs: the console log through the CLI ----
    let o = vmlan_in(&ns, &dir, &["logs", "worker1"]);
    assert!(
        o.status.success() && output_text(&o).contains("VMTEST dhcp ip="),
        "logs: {}",
        output_text(&o)
    );

    // ---- down: no process left ----
    let o = vmlan_in(&ns, &dir, &["down", "--timeout", "5"]);
    let out = output_text(&o);
    assert!(o.status.success(), "down: {out}");
    // QMP system_powerdown went through to every real QEMU (the test guest has no
    // ACPI daemon, so each is then terminated after the grace period).
    for node in NODES {
        assert!(
            out.contains(&format!(
                "{node}: terminated (still running 5 s after the ACPI power button)"
            )),
            "{out}"
        );
    }
    assert!(!out.contains("QMP"), "a QMP exchange failed: {out}");
    assert_eq!(
        pids(&ns),
        Vec::<String>::new(),
        "processes left after down: {}",
        output_text(&o)
    );
    let s = vmlan_status(&ns, &dir);
    assert!(
        s["nodes"].as_array().unwrap().iter().all(|n| n["state"] == "stopped"),
        "{s}"
    );
    assert_eq!(s["hubs"][0]["state"], "stopped");

    // ---- up again: the overlays are reused, every node leases again ----
    let o = vmlan_in(&ns, &dir, &["up", "cluster.toml", "--timeout", "240", "--no-wait-ssh"]);
    let out = output_text(&o);
    assert!(o.status.success(), "second up: {out}");
    for (node, ino) in NODES.iter().zip(&inodes) {
        assert!(out.contains(&format!("{node}: reusing overlay")), "{out}");
        let overlay = state.join(format!("{node}.qcow2"));
        assert_eq!(
            std::fs::metadata(&overlay).unwrap().ino(),
            *ino,
            "{node}'s overlay was replaced"
        );
    }
    let s = vmlan_status(&ns, &dir);
    for n in s["nodes"].as_array().unwrap() {
        assert_eq!(n["state"], "running", "{s}");
        assert!(n["ip"].is_string(), "{s}");
    }
    assert_eq!(banner(&ns, 10022), "vmtest-hello");

    // ---- down --purge: nothing left, state removed ----
    let o = vmlan_in(&ns, &dir, &["down", "--purge", "--timeout", "5"]);
    assert!(o.status.success(), "down --purge: {}", output_text(&o));
    assert_eq!(pids(&ns), Vec::<String>::new());
    assert!(!state.exists());
}

/// `vmlan up` with `transport = "vhost-user"` (issue 13): each node's memory
/// is a shared memfd and the hub dials each node's vhost-user socket. Every
/// node leases and pings the others by name; the hub's report lists three
/// vhost-user ports. Then the hub is killed and `vmlan up` (with a host record
/// only the new hub has) starts a new one, which dials the running nodes
/// again: each node resolves that name and pings the others and the hub
/// through it. `down` leaves no process.
#[test]
fn up_on_vhost_user_pings_survives_a_hub_restart_and_down() {
    let (kernel, initrd) = guest();
    let dir = scratch("up-vhost");
    let ns = Netns::new("e2e-upvh");
    run_ok(
        std::process::Command::new("qemu-img")
            .args(["create", "-f", "qcow2"])
            .arg(dir.join("base.qcow2"))
            .arg("64M"),
    );
    let text = cluster_file(&kernel, &initrd, "vh")
        .replace("transport = \"stream\"", "transport = \"vhost-user\"")
        .replace(
            "vmtest.hold=3600",
            "vmtest.resolve2=restarted vmtest.ping2=master,worker1,worker2,10.0.3.1 vmtest.hold=3600",
        );
    std::fs::write(dir.join("cluster.toml"), &text).unwrap();
    let state = dir.join(".vmlan/vh");

    let o = vmlan_in(&ns, &dir, &["up", "cluster.toml", "--timeout", "240", "--no-wait-ssh"]);
    assert!(o.status.success(), "vmlan up: {}", output_text(&o));
    check_pings(&state);
    let s = vmlan_status(&ns, &dir);
    for n in s["nodes"].as_array().unwrap() {
        assert_eq!(n["state"], "running", "{s}");
        assert!(n["ip"].is_string(), "{s}");
        let pid = n["pid"].as_u64().unwrap();
        let cmdline =
            String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap()).replace('\0', " ");
        assert!(
            cmdline.contains("memory-backend-memfd,id=mem,size=256M,share=on"),
            "{cmdline}"
        );
        assert!(cmdline.contains("-netdev vhost-user,id=net0,chardev=vhu0"), "{cmdline}");
    }
    let hub_pid = s["hubs"][0]["pid"].as_u64().expect("the hub's pid").to_string();
    let hub_log = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with("hub-") && name.ends_with(".log")
        })
        .expect("the hub's log");
    run_ok(std::process::Command::new("kill").args(["-USR1", &hub_pid]));
    assert!(wait_for_text(
        &hub_log,
        "mac 00:00:00:11:11:11 port",
        Duration::from_secs(5)
    ));
    let report = std::fs::read_to_string(&hub_log).unwrap();
    let ports = report
        .lines()
        .filter(|l| l.starts_with("port ") && l.contains(" vhost-user-connect:"));
    assert_eq!(ports.count(), 3, "{report}");

    // Kill the hub; `up` starts a new one that alone knows `restarted`.
    run_ok(std::process::Command::new("kill").args(["-KILL", &hub_pid]));
    let restarted = text.replace(
        "no_resolv = true",
        "hub_args = [\"--host-record\", \"restarted,10.0.3.1\"]\nno_resolv = true",
    );
    std::fs::write(dir.join("cluster.toml"), restarted).unwrap();
    let o = vmlan_in(&ns, &dir, &["up", "cluster.toml", "--timeout", "240", "--no-wait-ssh"]);
    assert!(o.status.success(), "up after the hub died: {}", output_text(&o));
    let s = vmlan_status(&ns, &dir);
    assert_eq!(s["hubs"][0]["state"], "running", "{s}");
    for node in NODES {
        let log = state.join(format!("{node}.log"));
        let needle = "VMTEST ping2 10.0.3.1";
        assert!(
            wait_for_text(&log, needle, Duration::from_secs(150)),
            "{node} did not finish round two: {}\nhub:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            std::fs::read_to_string(&hub_log).unwrap_or_default()
        );
        let r = parse_console(&log);
        assert_eq!(
            r.resolved2.get("restarted").map(String::as_str),
            Some("10.0.3.1"),
            "{node}: {}",
            r.console
        );
        for t in ["master", "worker1", "worker2", "10.0.3.1"] {
            assert_eq!(
                r.pings2.get(t),
                Some(&true),
                "{node} pings {t} after the restart: {}",
                r.console
            );
        }
    }

    let o = vmlan_in(&ns, &dir, &["down", "--purge", "--timeout", "5"]);
    assert!(o.status.success(), "down: {}", output_text(&o));
    assert_eq!(pids(&ns), Vec::<String>::new(), "processes left after down");
}
