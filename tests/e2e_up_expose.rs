//! End to end (issue 15, the launcher side of port forwards): `vmlan up` on a
//! one-node cluster file with `ssh_via = "hub"`, in a private network
//! namespace, with the busybox test guest booted directly (TCG): QEMU gets no
//! SLIRP NIC (its command line), the hub forwards the node's ssh port
//! (`--expose tcp:127.0.0.1:10022=10.0.3.101:22`, in its command line), and
//! the TCP listener the guest starts on port 22 answers at 127.0.0.1:10022;
//! `vmlan down` leaves no process in the namespace.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Reads what 127.0.0.1:`port` sends (retried up to 60 s).
fn banner(ns: &Netns, port: u16) -> String {
    let start = Instant::now();
    loop {
        let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && timeout 5 cat <&3");
        let o = ns.cmd("bash", &["-c", &script]).output().unwrap();
        let got = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if !got.is_empty() || start.elapsed() > Duration::from_secs(60) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn up_with_ssh_through_the_hub() {
    let (kernel, initrd) = guest();
    let dir = scratch("up_expose");
    let ns = Netns::new("e2e-upx");
    let text = format!(
        r#"
[cluster]
name = "upx"
[network]
subnet = "10.0.3.0/24"
address = "10.0.3.1"
transport = "stream"
no_resolv = true          # the namespace has no upstream, and nothing may leave it
[defaults]
memory = "256M"
cpus = 1
accel = "tcg"
kernel = "{}"
initrd = "{}"
append = "console=ttyS0 quiet panic=-1 no_timer_check vmtest.mac={{mac}} vmtest.listen=22 vmtest.hold=3600"
[[node]]
name = "solo"
mac = "00:00:00:15:00:31"
ip = "10.0.3.101"
ssh_via = "hub"
"#,
        kernel.display(),
        initrd.display()
    );
    std::fs::write(dir.join("cluster.toml"), text).unwrap();
    let o = vmlan_in(&ns, &dir, &["up", "cluster.toml", "--timeout", "240", "--no-wait-ssh"]);
    assert!(o.status.success(), "vmlan up: {}", output_text(&o));

    let s = vmlan_status(&ns, &dir);
    let n = &s["nodes"][0];
    assert_eq!(n["ip"], "10.0.3.101", "{s}");
    let cmdline =
        |pid: u64| String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap()).replace('\0', " ");
    let q = cmdline(n["pid"].as_u64().unwrap());
    assert!(q.contains("qemu-system-x86_64") && !q.contains("slirp"), "QEMU: {q}");
    let h = cmdline(
        s["hubs"][0]["pid"]
            .as_u64()
            .unwrap_or_else(|| panic!("no hub pid: {s}")),
    );
    assert!(h.contains("--expose tcp:127.0.0.1:10022=10.0.3.101:22"), "hub: {h}");

    assert_eq!(
        banner(&ns, 10022),
        "vmtest-hello",
        "the node's ssh port through the hub"
    );

    let o = vmlan_in(&ns, &dir, &["down"]);
    assert!(o.status.success(), "vmlan down: {}", output_text(&o));
    let start = Instant::now();
    let left = loop {
        let o = std::process::Command::new("ip")
            .args(["netns", "pids", &ns.name])
            .output()
            .unwrap();
        let left = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if left.is_empty() || start.elapsed() > Duration::from_secs(30) {
            break left;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(left.is_empty(), "processes left after down: {left}");
}
