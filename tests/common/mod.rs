//! Shared pieces of the end-to-end tests: a private network namespace that is
//! deleted on drop, the project's test guests (busybox: tests/guest/build.sh;
//! Debian: tests/guest/debian/build.sh), an upstream dnsmasq,
//! QEMU guests started inside the namespace, and the `VMTEST` lines they print.
//!
//! Every process a test starts runs inside its own namespace (`ip netns exec`),
//! so multicast and all guest traffic stay on that namespace's loopback.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory under target/, emptied first.
pub fn scratch(name: &str) -> PathBuf {
    let d = repo().join("target").join("e2e").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Builds the test guest if needed (cached) and returns (kernel, initramfs).
/// Panics with the build output if it fails: QEMU and busybox are required,
/// installed by tests/setup.sh, never skipped.
pub fn guest() -> (PathBuf, PathBuf) {
    let out = Command::new("bash")
        .arg(repo().join("tests/guest/build.sh"))
        .output()
        .expect("run tests/guest/build.sh");
    assert!(
        out.status.success(),
        "tests/guest/build.sh failed (run tests/setup.sh first):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = repo().join("target/vmlan-guest");
    (dir.join("vmlinuz"), dir.join("initramfs.cpio.gz"))
}

/// A network namespace created for one test, with loopback up and multicast
/// routed to it; deleted (with every process still in it killed) on drop.
pub struct Netns {
    pub name: String,
    children: Vec<Child>,
}

impl Netns {
    /// Creates `vmlan-<tag>-<pid>`.
    pub fn new(tag: &str) -> Netns {
        let name = format!("vmlan-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name, children: vec![] };
        for args in [
            &["ip", "link", "set", "lo", "up"][..],
            &["ip", "link", "set", "lo", "multicast", "on"],
            &["ip", "route", "add", "224.0.0.0/4", "dev", "lo"],
        ] {
            run_ok(&mut ns.cmd(args[0], &args[1..]));
        }
        ns
    }

    /// A command that runs `prog args...` inside the namespace.
    pub fn cmd(&self, prog: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(prog).args(args);
        c
    }

    /// Starts `cmd` with stdout and stderr to `log`; the namespace kills it on drop.
    pub fn spawn(&mut self, mut cmd: Command, log: &Path) -> usize {
        let f = std::fs::File::create(log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .expect("spawn");
        self.children.push(child);
        self.children.len() - 1
    }

    /// The process started as number `i`.
    pub fn child(&mut self, i: usize) -> &mut Child {
        &mut self.children[i]
    }

    /// Waits for child `i` to exit, up to `limit`; kills it and panics past that.
    pub fn wait(&mut self, i: usize, limit: Duration, what: &str) {
        let start = Instant::now();
        loop {
            if self.children[i].try_wait().unwrap().is_some() {
                return;
            }
            if start.elapsed() > limit {
                let _ = self.children[i].kill();
                panic!("{what} did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends SIGTERM to child `i` and waits for it (SIGKILL after 10 s).
    pub fn stop(&mut self, i: usize) {
        let pid = self.children[i].id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        while self.children[i].try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.children[i].kill();
                let _ = self.children[i].wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            });
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A scratch directory under /tmp that `nobody` may write, with a copy of the
/// vmlan binary it may execute (the checkout may sit under a private
/// directory): (directory, binary).
pub fn unprivileged_dir(tag: &str) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("vmlan-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let bin = dir.join("vmlan");
    std::fs::copy(env!("CARGO_BIN_EXE_vmlan"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, bin)
}

/// Waits until every guest printed `VMTEST round1` (or one exited), up to `limit`.
pub fn wait_round1(logs: &[PathBuf], limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if logs.iter().all(|l| parse_console(l).round1) {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let consoles: Vec<String> = logs.iter().map(|l| parse_console(l).console).collect();
    panic!(
        "guests did not finish round one within {limit:?}:\n{}",
        consoles.join("\n-----\n")
    );
}

/// The lab segment of the transport tests: `bin hub` run as `nobody` (the
/// [`AS_NOBODY`] prefix, for `setpriv`) at 10.0.3.1/24, domain `lab`, no
/// upstream DNS, leases in `dir/leases`, and a reservation per guest
/// `(name, MAC, IP)`. The caller appends the ports.
pub fn lab_hub_args(bin: &Path, dir: &Path, guests: &[(&str, &str, String)]) -> Vec<String> {
    let mut args: Vec<String> = AS_NOBODY.iter().map(|s| s.to_string()).collect();
    let fixed = [
        "hub",
        "--addr",
        "10.0.3.1/24",
        "--domain",
        "lab",
        "--no-resolv",
        "--leasefile",
    ];
    args.push(bin.display().to_string());
    args.extend(fixed.iter().map(|s| s.to_string()));
    args.push(dir.join("leases").display().to_string());
    for (name, mac, ip) in guests {
        args.extend(["--dhcp-host".into(), format!("{mac},{ip},{name}")]);
    }
    args
}

/// Round one's vmtest actions for guest `me` of `names`: resolve and ping
/// every other guest, and ping the hub (10.0.3.1).
pub fn round1_actions(names: &[&str], me: &str) -> String {
    let others: Vec<&str> = names.iter().copied().filter(|n| *n != me).collect();
    format!("vmtest.resolve={0} vmtest.ping={0},10.0.3.1", others.join(","))
}

/// Checks round one of each guest `(name, MAC, IP)` from its console log
/// (`logs`, in the same order): its reserved lease and hostname, every other
/// guest resolved to its address and pinged, the hub pinged. Failures show
/// the console and `hub_log`.
pub fn check_round1(guests: &[(&str, &str, String)], logs: &[PathBuf], hub_log: &Path) {
    for (i, (name, mac, ip)) in guests.iter().enumerate() {
        let r = parse_console(&logs[i]);
        let ctx = format!(
            "guest {name}:\n{}\nhub:\n{}",
            r.console,
            std::fs::read_to_string(hub_log).unwrap_or_default()
        );
        assert_eq!(r.dhcp.get("ip"), Some(ip), "reserved lease of {mac}; {ctx}");
        assert_eq!(r.dhcp.get("hostname").map(String::as_str), Some(*name), "{ctx}");
        for (other, _, other_ip) in guests.iter().filter(|g| g.0 != *name) {
            assert_eq!(r.resolved.get(*other), Some(other_ip), "{name} resolves {other}; {ctx}");
            assert_eq!(r.pings.get(*other), Some(&true), "{name} pings {other}; {ctx}");
        }
        assert_eq!(r.pings.get("10.0.3.1"), Some(&true), "{name} pings the hub; {ctx}");
    }
}

/// A guest's `-netdev` to the hub of [`stream_hub_cmd`]: QEMU's `stream`
/// netdev dialling the unix socket `sock`, redialling every second.
pub fn stream_netdev(sock: &Path) -> String {
    format!(
        "stream,id=seg,server=off,addr.type=unix,addr.path={},reconnect-ms=1000",
        sock.display()
    )
}

/// Boots the guest `spec` in `ns` with its console in `console`, and waits
/// (up to 300 s, TCG) for the console line starting with `marker` (the
/// guest init's `VMTEST ...` lines); panics with the console, saying `what`
/// did not happen, when it does not come.
pub fn boot_guest_until(ns: &mut Netns, spec: &GuestSpec<'_>, console: &Path, marker: &str, what: &str) {
    let cmd = qemu(ns, spec);
    ns.spawn(cmd, console);
    assert!(
        wait_for_text(console, marker, Duration::from_secs(300)),
        "the guest did not {what}: {}",
        std::fs::read_to_string(console).unwrap_or_default()
    );
}

/// Runs the hub of [`stream_hub_cmd`] on `sock` with `flags`, bounded to
/// 20 s, and asserts it refuses to start (exits with an error, not the
/// timeout); its output (stdout and stderr).
pub fn hub_refused(ns: &Netns, sock: &Path, flags: &[&str]) -> String {
    let stream = format!("unix:{}", sock.display());
    let mut args = vec![
        "20",
        env!("CARGO_BIN_EXE_vmlan"),
        "hub",
        "--stream",
        &stream,
        "--addr",
        "10.0.3.1/24",
        "--no-resolv",
    ];
    args.extend_from_slice(flags);
    let out = ns.cmd("timeout", &args).output().unwrap();
    let text = output_text(&out);
    assert!(
        !out.status.success() && out.status.code() != Some(124),
        "{flags:?} started: {text}"
    );
    text
}

/// `vmlan hub` in `ns` on a unix stream socket `sock`, at 10.0.3.1/24 without
/// upstream DNS servers, with `extra` flags after those.
pub fn stream_hub_cmd(ns: &Netns, sock: &Path, extra: &[&str]) -> Command {
    let stream = format!("unix:{}", sock.display());
    let mut args = vec!["hub", "--stream", &stream, "--addr", "10.0.3.1/24", "--no-resolv"];
    args.extend_from_slice(extra);
    ns.cmd(env!("CARGO_BIN_EXE_vmlan"), &args)
}

/// Starts a `vmlan hub` command line (`cmd`, already inside the namespace) with
/// `RUST_LOG=info` and its log in `log`, and waits until it runs; panics with
/// the log if it does not start within 10 s. Returns its child number.
pub fn start_hub_cmd(ns: &mut Netns, mut cmd: Command, log: &Path) -> usize {
    cmd.env("RUST_LOG", "info");
    let i = ns.spawn(cmd, log);
    assert!(
        wait_for_text(log, "hub running", Duration::from_secs(10)),
        "hub did not start: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    i
}

/// Runs the vmlan binary with `args` inside `ns`, in `dir`, and waits for it.
pub fn vmlan_in(ns: &Netns, dir: &Path, args: &[&str]) -> Output {
    let mut c = ns.cmd(env!("CARGO_BIN_EXE_vmlan"), args);
    c.current_dir(dir);
    c.output().unwrap()
}

/// A command's stdout then stderr, as text (for messages and matching).
pub fn output_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `vmlan status --json` in `dir`, parsed; panics unless it succeeds.
pub fn vmlan_status(ns: &Netns, dir: &Path) -> serde_json::Value {
    let o = vmlan_in(ns, dir, &["status", "--json"]);
    assert!(o.status.success(), "status: {}", output_text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Runs each command line of `steps` (program, then arguments) inside `ns`, each must succeed.
pub fn run_all(ns: &Netns, steps: &[&[&str]]) {
    for args in steps {
        run_ok(&mut ns.cmd(args[0], &args[1..]));
    }
}

/// Runs `cmd`, panicking with its output unless it succeeds; returns the output.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Waits until `path` contains `needle`, up to `limit`.
pub fn wait_for_text(path: &Path, needle: &str, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Starts dnsmasq in `ns` as an upstream DNS server on `addr`#`port` serving
/// `records` (dnsmasq flags such as `--host-record=NAME,IP`), logging queries to
/// `dir/NAME.log` (returned); panics unless it starts within 10 s.
pub fn upstream_dnsmasq(ns: &mut Netns, dir: &Path, name: &str, addr: &str, port: u16, records: &[String]) -> PathBuf {
    let log = dir.join(format!("{name}.log"));
    let mut args: Vec<String> = vec![
        "--no-daemon".into(),
        "--conf-file=/dev/null".into(),
        format!("--port={port}"),
        format!("--listen-address={addr}"),
        "--bind-interfaces".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--log-queries".into(),
        "--log-facility=-".into(),
        "--user=nobody".into(),
        "--group=nogroup".into(),
        format!("--pid-file={}", dir.join(format!("{name}.pid")).display()),
    ];
    args.extend(records.iter().cloned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let cmd = ns.cmd("dnsmasq", &refs);
    ns.spawn(cmd, &log);
    assert!(
        wait_for_text(&log, "started", Duration::from_secs(10)),
        "dnsmasq {name} did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    log
}

/// The Debian guest (tests/guest/debian/build.sh, cached): (base.qcow2, vmlinuz,
/// initrd.img). Panics with the build's output if it fails: never skipped.
pub fn debian_guest() -> (PathBuf, PathBuf, PathBuf) {
    let out = Command::new("bash")
        .arg(repo().join("tests/guest/debian/build.sh"))
        .output()
        .expect("run tests/guest/debian/build.sh");
    assert!(
        out.status.success(),
        "tests/guest/debian/build.sh failed (run tests/setup.sh first):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The link's target (the cache directory named by the build files' hash), so an
    // overlay records the very base it was made from, not a link a rebuild moves.
    let dir = std::fs::canonicalize(repo().join("target/vmlan-guest/debian")).expect("the Debian guest's directory");
    (dir.join("base.qcow2"), dir.join("vmlinuz"), dir.join("initrd.img"))
}

/// A guest for [`qemu`]: its segment NIC's MAC, the SLIRP ssh port, and the vmtest actions.
pub struct GuestSpec<'a> {
    pub mac: &'a str,
    pub ssh_port: u16,
    /// The `-netdev` for the segment NIC, with `id=seg`.
    pub netdev: String,
    /// Extra `vmtest.*` parameters, space-separated.
    pub actions: String,
    /// Run QEMU as the unprivileged user `nobody`, with the kernel and initramfs
    /// copied into this directory (which `nobody` can read).
    pub unprivileged: Option<&'a Path>,
}

/// `setpriv` arguments that run the rest of a command line as `nobody`, with no
/// capabilities (util-linux).
pub const AS_NOBODY: &[&str] = &[
    "--reuid=nobody",
    "--regid=nogroup",
    "--clear-groups",
    "--inh-caps=-all",
    "--bounding-set=-all",
    "--",
];

/// The QEMU command line (in `ns`) for `spec`: TCG, 256 MiB, direct kernel boot,
/// a SLIRP NIC with an ssh port forward, and the segment NIC. `no_timer_check`:
/// under TCG on a loaded host the kernel's IO-APIC timer check can time out and
/// panic the boot ("IO-APIC + timer doesn't work!").
pub fn qemu(ns: &Netns, spec: &GuestSpec<'_>) -> Command {
    let (mut kernel, mut initrd) = guest();
    if let Some(dir) = spec.unprivileged {
        for f in [&mut kernel, &mut initrd] {
            let copy = dir.join(f.file_name().unwrap());
            if !copy.exists() {
                std::fs::copy(&*f, &copy).unwrap();
            }
            *f = copy;
        }
    }
    let slirp_mac = format!("52:54:00:12:34:{:02x}", spec.ssh_port % 256);
    let append = format!(
        "console=ttyS0 quiet panic=-1 no_timer_check vmtest.mac={} vmtest.slirp={slirp_mac} {}",
        spec.mac, spec.actions
    );
    let user = format!("user,id=slirp,hostfwd=tcp:127.0.0.1:{}-:22", spec.ssh_port);
    let args: Vec<String> = vec![
        "-machine".into(),
        "q35,accel=tcg".into(),
        "-m".into(),
        "256".into(),
        "-nographic".into(),
        "-no-reboot".into(),
        "-kernel".into(),
        kernel.display().to_string(),
        "-initrd".into(),
        initrd.display().to_string(),
        "-append".into(),
        append,
        "-netdev".into(),
        user,
        "-device".into(),
        format!("virtio-net-pci,netdev=slirp,mac={slirp_mac},romfile="),
        "-netdev".into(),
        spec.netdev.clone(),
        "-device".into(),
        format!("virtio-net-pci,netdev=seg,mac={},romfile=", spec.mac),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    if spec.unprivileged.is_some() {
        let mut all = AS_NOBODY.to_vec();
        all.push("qemu-system-x86_64");
        all.extend(refs);
        ns.cmd("setpriv", &all)
    } else {
        ns.cmd("qemu-system-x86_64", &refs)
    }
}

/// The `VMTEST` results a guest printed: `dhcp` fields, resolved names, pings, done.
#[derive(Debug, Default)]
pub struct GuestResult {
    pub dhcp: HashMap<String, String>,
    pub resolved: HashMap<String, String>,
    pub pings: HashMap<String, bool>,
    /// Second round (`vmtest.resolve2`, `vmtest.ping2`).
    pub resolved2: HashMap<String, String>,
    pub pings2: HashMap<String, bool>,
    /// IPv6 (`vmtest.slaac`, `vmtest.dhcp6`, `vmtest.resolve6`, `vmtest.ping6`):
    /// the SLAAC address, the DHCPv6 line's rest ("ip=..", "fail", "unsupported").
    pub slaac: Option<String>,
    pub dhcp6: Option<String>,
    pub resolved6: HashMap<String, String>,
    pub pings6: HashMap<String, bool>,
    pub round1: bool,
    pub done: bool,
    pub console: String,
}

/// Parses a guest console log.
pub fn parse_console(path: &Path) -> GuestResult {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut r = GuestResult {
        console: text.clone(),
        ..Default::default()
    };
    for line in text.lines() {
        let Some(rest) = line.trim_end_matches('\r').split("VMTEST ").nth(1) else {
            continue;
        };
        let w: Vec<&str> = rest.split_whitespace().collect();
        match w.as_slice() {
            ["dhcp", fields @ ..] => {
                for f in fields {
                    if let Some((k, v)) = f.split_once('=') {
                        r.dhcp.insert(k.to_string(), v.to_string());
                    }
                }
            }
            ["resolve", name, ip] => {
                r.resolved.insert(name.to_string(), ip.to_string());
            }
            ["ping", target, res] => {
                r.pings.insert(target.to_string(), *res == "ok");
            }
            ["resolve2", name, ip] => {
                r.resolved2.insert(name.to_string(), ip.to_string());
            }
            ["ping2", target, res] => {
                r.pings2.insert(target.to_string(), *res == "ok");
            }
            ["slaac", res] => r.slaac = Some(res.strip_prefix("ip=").unwrap_or(res).to_string()),
            ["dhcp6", res] => r.dhcp6 = Some(res.to_string()),
            ["resolve6", name, ip] => {
                r.resolved6.insert(name.to_string(), ip.to_string());
            }
            ["ping6", target, res] => {
                r.pings6.insert(target.to_string(), *res == "ok");
            }
            ["round1"] => r.round1 = true,
            ["done"] => r.done = true,
            _ => {}
        }
    }
    r
}

/// Makes the tap `name` in `ns` (with `mac` and `addr` when given) and brings it up.
pub fn tap(ns: &Netns, name: &str, mac: Option<&str>, addr: Option<&str>) {
    run_ok(&mut ns.cmd("ip", &["tuntap", "add", "dev", name, "mode", "tap"]));
    if let Some(m) = mac {
        run_ok(&mut ns.cmd("ip", &["link", "set", name, "address", m]));
    }
    if let Some(a) = addr {
        run_ok(&mut ns.cmd("ip", &["addr", "add", a, "dev", name]));
    }
    run_ok(&mut ns.cmd("ip", &["link", "set", name, "up"]));
}

/// Makes the tap vmtap0 in `ns` (with `mac` and `addr` when given, then up) and
/// starts `vmlan hub --tap vmtap0 --addr 10.0.3.1/24 --no-resolv HUB_ARGS...` on
/// it (without that `--addr` when `hub_args` has its own), logging to
/// `dir/hub.log`; returns the hub's child number.
pub fn tap_hub(ns: &mut Netns, dir: &Path, mac: Option<&str>, addr: Option<&str>, hub_args: &[&str]) -> usize {
    tap(ns, "vmtap0", mac, addr);
    let mut args = vec!["hub", "--tap", "vmtap0", "--no-resolv"];
    if !hub_args.contains(&"--addr") {
        args.extend(["--addr", "10.0.3.1/24"]);
    }
    args.extend_from_slice(hub_args);
    let cmd = ns.cmd(env!("CARGO_BIN_EXE_vmlan"), &args);
    start_hub_cmd(ns, cmd, &dir.join("hub.log"))
}

/// Writes one frame with QEMU's stream framing (4-byte big-endian length, then the frame).
pub fn send_framed(c: &mut std::os::unix::net::UnixStream, f: &[u8]) {
    use std::io::Write;
    let mut wire = (f.len() as u32).to_be_bytes().to_vec();
    wire.extend_from_slice(f);
    c.write_all(&wire).unwrap();
}

/// Reads one frame with QEMU's stream framing, or None on timeout or EOF.
pub fn recv_framed(c: &mut std::os::unix::net::UnixStream) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut len = [0u8; 4];
    c.read_exact(&mut len).ok()?;
    let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
    c.read_exact(&mut f).ok()?;
    Some(f)
}

/// ISC's `perfdhcp` in `ns` (60 s at most) as a relay agent: from `local`, UDP
/// port 67, to the unicast `server`, with `args` added.
pub fn perfdhcp(ns: &Netns, local: &str, server: &str, args: &[&str]) -> Command {
    let mut a = vec!["60", "perfdhcp", "-4", "-W", "1000000", "-l", local, "-L", "67"];
    a.extend_from_slice(args);
    a.push(server);
    ns.cmd("timeout", &a)
}

/// A warm-up exchange (ARP for the server, perfdhcp's first socket), whose
/// outcome does not count. Rate-limited: without `-r`, perfdhcp sends as fast as
/// it can until an exchange completes (thousands of them, seen on a loaded machine).
pub fn perfdhcp_warm_up(ns: &Netns, local: &str, server: &str) {
    let _ = perfdhcp(ns, local, server, &["-r", "10", "-n", "1"]).output();
}

/// perfdhcp's counters: for each exchange ("DISCOVER-OFFER", "REQUEST-ACK"), (sent, received, drops).
pub fn perfdhcp_counts(text: &str) -> Vec<(String, u64, u64, u64)> {
    let mut out: Vec<(String, u64, u64, u64)> = vec![];
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("***Statistics for: ") {
            out.push((name.trim_end_matches('*').trim().to_string(), 0, 0, 0));
        } else if let Some(c) = out.last_mut() {
            let num = |p: &str| line.strip_prefix(p).and_then(|v| v.trim().parse::<u64>().ok());
            if let Some(n) = num("sent packets:") {
                c.1 = n;
            } else if let Some(n) = num("received packets:") {
                c.2 = n;
            } else if let Some(n) = num("drops:") {
                c.3 = n;
            }
        }
    }
    out
}

/// [`perfdhcp`]: `n` exchanges at 50/s from `n` clients (`args` added, e.g. a
/// base MAC); asserts that every DISCOVER and REQUEST was answered (perfdhcp
/// sometimes starts one exchange more than `-n`: 151 of 150 seen).
pub fn perfdhcp_all_answered(ns: &Netns, local: &str, server: &str, n: u64, args: &[&str]) {
    let n_arg = n.to_string();
    let mut a = vec!["-r", "50", "-n", &n_arg, "-R", &n_arg];
    a.extend_from_slice(args);
    let out = run_ok(&mut perfdhcp(ns, local, server, &a));
    let text = String::from_utf8_lossy(&out.stdout);
    let counts = perfdhcp_counts(&text);
    assert_eq!(counts.len(), 2, "{text}");
    for (name, sent, received, drops) in counts {
        assert!(
            sent >= n && received == sent && drops == 0,
            "{name}: {received} answered of {sent} sent ({n} wanted), {drops} drops: {text}"
        );
    }
}

/// The CPU time (user + system) process `pid` has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which ends with ')'): utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// A DHCP client script (ISC dhclient's `-sf`, dhcpcd's `-c`) written as
/// `dir/record6.sh`: it appends `reason=...`, then the client's `new_*` and
/// `old_*` variables sorted, then `---`, to `out`; it configures nothing.
pub fn dhcp_recorder(dir: &Path, out: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("record6.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n# Records what the DHCP client got; configures nothing.\n\
             {{ echo \"reason=$reason\"; env | grep -E '^(new_|old_)' | sort; echo ---; }} >> {}\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// The variables (quotes trimmed) of the first complete block with `reason`
/// that [`dhcp_recorder`] wrote to `out`, waiting `within` at most (panics then,
/// with what was recorded).
pub fn wait_dhcp_record(out: &Path, reason: &str, within: Duration) -> HashMap<String, String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        let complete = text.rfind("---\n").map_or("", |end| &text[..end + 4]);
        for block in complete.split("---\n") {
            let vars: HashMap<String, String> = block
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
                .collect();
            if vars.get("reason").map(String::as_str) == Some(reason) {
                return vars;
            }
        }
        assert!(
            start.elapsed() < within,
            "no {reason} within {within:?}; recorded:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// ISC `dhclient OPTS -d -v` (foreground) on `iface` in `ns` with the client
/// script `script`, its own lease and pid files `dir/NAME.leases`,
/// `dir/NAME.pid`, and its log in `dir/NAME.log`; returns the child number.
pub fn spawn_dhclient(ns: &mut Netns, dir: &Path, name: &str, iface: &str, script: &Path, opts: &[&str]) -> usize {
    let lf = dir.join(format!("{name}.leases"));
    let pf = dir.join(format!("{name}.pid"));
    let mut args: Vec<&str> = opts.to_vec();
    args.extend(["-d", "-v", "-sf", script.to_str().unwrap(), "-lf", lf.to_str().unwrap()]);
    args.extend(["-pf", pf.to_str().unwrap(), iface]);
    let cmd = ns.cmd("dhclient", &args);
    ns.spawn(cmd, &dir.join(format!("{name}.log")))
}

/// ISC `dhclient -6 -1` (one try) on `iface` ([`spawn_dhclient`]), with
/// [`dhcp_recorder`] writing to `dir/NAME.out`. Returns (child number, record file).
pub fn dhclient6(ns: &mut Netns, dir: &Path, name: &str, iface: &str) -> (usize, PathBuf) {
    let out = dir.join(format!("{name}.out"));
    let script = dhcp_recorder(dir, &out);
    (spawn_dhclient(ns, dir, name, iface, &script, &["-6", "-1"]), out)
}

/// `dig @127.0.0.1 -p 5353 NAME TYPE` in `ns` (a hub's `--dns-listen
/// 127.0.0.1:5353`): the status (NOERROR, NXDOMAIN, ...) and the answer section's data.
pub fn dig_status(ns: &Netns, name: &str, rtype: &str) -> (String, Vec<String>) {
    let out = ns
        .cmd(
            "dig",
            &[
                "@127.0.0.1",
                "-p",
                "5353",
                "+time=3",
                "+tries=2",
                "+nocookie",
                name,
                rtype,
            ],
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let status = text
        .lines()
        .find_map(|l| l.split("status: ").nth(1))
        .and_then(|s| s.split(',').next())
        .unwrap_or_default()
        .to_string();
    let answers = text
        .lines()
        .skip_while(|l| !l.starts_with(";; ANSWER SECTION:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().nth(4).map(String::from))
        .collect();
    (status, answers)
}

// ---- the runtime API (--api unix:PATH) with curl ----

/// `curl --unix-socket api` with `method` on `route` (and `body`): (HTTP status, body).
pub fn api_call(ns: &Netns, api: &Path, method: &str, route: &str, body: Option<&str>) -> (u16, String) {
    let url = format!("http://vmlan{route}");
    let sock = api.to_str().unwrap();
    let mut args = vec![
        "-sS",
        "--max-time",
        "10",
        "--unix-socket",
        sock,
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ];
    if let Some(b) = body {
        args.extend(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    args.push(&url);
    let out = run_ok(&mut ns.cmd("curl", &args));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').expect("curl printed the status");
    (code.trim().parse().expect("a status code"), body.to_string())
}

/// A GET that must answer 200 with JSON.
pub fn api_get(ns: &Netns, api: &Path, route: &str) -> serde_json::Value {
    let (code, body) = api_call(ns, api, "GET", route, None);
    assert_eq!(code, 200, "GET {route}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {route}: not JSON ({e}): {body}"))
}

/// A request that must get 400 with `{"error", "field": field}`.
pub fn api_refused(ns: &Netns, api: &Path, method: &str, route: &str, body: Option<&str>, field: &str) {
    api_refused_with(ns, api, method, route, body, 400, field);
}

/// As [`api_refused`], with the HTTP `status` it must get (400, 404, 409...).
pub fn api_refused_with(
    ns: &Netns,
    api: &Path,
    method: &str,
    route: &str,
    body: Option<&str>,
    status: u16,
    field: &str,
) {
    let (code, text) = api_call(ns, api, method, route, body);
    assert_eq!(code, status, "{method} {route} {body:?}: {text}");
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{route}: not JSON ({e}): {text}"));
    assert_eq!(v["field"], field, "{method} {route} {body:?}: {text}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{text}");
}
