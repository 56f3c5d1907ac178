//! `vmlan up FILE`: checks the cluster file, the tools, the ssh ports and DNS
//! listeners, makes the state directory, the overlays (reused when they exist, so
//! a second `up` resumes) and seeds, gives every node a stable reservation
//! ([`crate::addresses`]), starts one hub per network and one QEMU per node
//! (nodes and hubs already running are left alone), writes state.json, the ssh
//! config, the roster and the inventory, then waits until every node is ready,
//! showing progress per node: booting, leased (each segment NIC holds its
//! lease), ssh ready (its forwarded ssh port sends an SSH banner, see
//! [`crate::ready`]; skipped with [`UpOptions::wait_ssh`] false).
//!
//! Leases are learned from each authority hub's runtime API (`vmlan up`
//! starts every hub with `--api unix:STATE/hub-NET.api`): a reader thread per
//! hub follows `GET /events?current=true&types=lease` ([`LeaseFeed`]) into a
//! map of MAC -> (address, expiry). Only a hub without that socket (one
//! started by an older vmlan and left running) is read from its lease file at
//! each poll instead, as is a hub whose stream failed.
//!
//! A file with `[[host]]` tables ([`crate::machines`]) starts only this
//! machine's nodes and hubs. On a machine that is not a segment's authority
//! there is no lease to watch (its hub runs `--no-host`; the nodes lease
//! from the authority's hub across the VXLAN link): those NICs count as leased
//! at once, so readiness there is the SSH banner (or QEMU started, with
//! `--no-wait-ssh`).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::cluster::{self, Cluster, Transport};
use crate::hub::hub_argv;
use crate::qemu::{disk_argvs, qemu_argv, QEMU, QEMU_IMG};
use crate::ready::SshProbe;
use crate::state::{State, StateDir};

/// How long one QEMU may take to start (to daemonize): past it `up` stops it and
/// says why. A vhost-user NIC makes QEMU wait for the hub to connect.
const QEMU_START_LIMIT: Duration = Duration::from_secs(60);
use crate::status::{self, Status};
use crate::{addresses, files, process, seed};

/// How `up` runs.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The vmlan binary that runs the hubs (`std::env::current_exe()`).
    pub exe: PathBuf,
    /// The directory `.vmlan/` is made in (the caller's working directory).
    pub cwd: PathBuf,
    /// How long to wait for every node to be ready (leases, and sshd when
    /// `wait_ssh`), counted from the start of the wait.
    pub timeout: Duration,
    /// Also wait for each node's sshd (an SSH banner on its forwarded port);
    /// false for images without sshd (`vmlan up --no-wait-ssh`).
    pub wait_ssh: bool,
    /// The machine this is (`vmlan up --host NAME`) for a file with `[[host]]`
    /// tables; `None`: the hostname (see [`cluster::select_host`]).
    pub host: Option<String>,
}

/// Brings the cluster of `file` up and returns its status once every node holds
/// a lease on each of its segments and (with `wait_ssh`) its sshd answers.
/// Messages of what it does go to stderr.
///
/// Errors (nothing is started for the first seven): an invalid file (naming file,
/// table, field), a missing image/kernel/initrd/ssh_identity_file,
/// qemu-system-x86_64 or qemu-img missing, a socket path too long for the state
/// directory, a range with no address left for a node's reservation, an ssh port
/// already taken on 127.0.0.1, a `dns_listen` address something else holds (e.g.
/// another cluster's hub); then a hub that does not start within 10 s (with its
/// log), a qemu-img or QEMU command that fails (with QEMU's message), a node
/// whose QEMU exits while booting (with its console's last lines), or the timeout
/// (nodes and hubs keep running: `up` again resumes, `down` stops them).
pub fn up(file: &Path, o: &UpOptions) -> Result<Status> {
    let mut c = cluster::load(file)?;
    cluster::select_host(&mut c, o.host.as_deref())?;
    cluster::check_files(&c)?;
    process::require_tool(QEMU)?;
    if c.nodes.iter().any(|n| n.image.is_some()) {
        process::require_tool(QEMU_IMG)?;
    }
    let sd = StateDir::of(&c, &o.cwd);
    sd.check_socket_paths(&c)?;
    let previous = sd.read().ok();
    addresses::assign(&mut c, previous.as_ref())?;
    // The hubs' lines name every node (the authority's reservations cover all
    // machines); from here on only this machine's nodes are started and recorded.
    let argvs: Vec<Vec<String>> = (0..c.networks.len()).map(|i| hub_argv(&o.exe, &c, i, &sd)).collect();
    let here: Vec<bool> = c.nodes.iter().map(|n| c.is_here(n)).collect();
    let mut keep = here.iter();
    c.nodes.retain(|_| *keep.next().unwrap_or(&true));
    std::fs::create_dir_all(&sd.root).with_context(|| format!("create state directory {}", sd.root.display()))?;
    let f = file.display();

    let running: Vec<Option<u32>> = c
        .nodes
        .iter()
        .map(|n| process::running(&sd.pid(&n.name), &sd.qmp(&n.name)))
        .collect();
    for (n, r) in c.nodes.iter().zip(&running) {
        if r.is_none() && process::tcp_port_taken(n.ssh_port) {
            bail!(
                "{f}: [[node]] {} ({}): ssh port {} is taken: something already listens on 127.0.0.1:{} \
                 (set ssh_port or [defaults] ssh_port_base)",
                n.table,
                n.name,
                n.ssh_port,
                n.ssh_port
            );
        }
    }

    // ---- hubs ----
    let hubs: Vec<Option<u32>> = c
        .networks
        .iter()
        .map(|n| process::running(&sd.hub_pid(&n.name), &sd.leases(&n.name)))
        .collect();
    // A DNS listener another process holds (another cluster's hub, a dnsmasq) is
    // found here, before anything starts, and named by the file's key.
    for (i, net) in c.networks.iter().enumerate() {
        let Some(addr) = net.dns_listen else { continue };
        // A hub that is not its segment's authority gets no --dns-listen.
        if hubs[i].is_some() || !c.is_authority(i) {
            continue;
        }
        if let Some(proto) = process::dns_listen_taken(addr) {
            let table = if c.networks.len() > 1 {
                format!("[[network]] {} ({})", i + 1, net.name)
            } else {
                "[network]".into()
            };
            bail!(
                "{f}: {table}: dns_listen {addr} is taken: something already uses {proto} {addr} \
                 (another cluster's dns_listen? choose another port)"
            );
        }
    }
    for (i, net) in c.networks.iter().enumerate() {
        let argv = &argvs[i];
        let current = previous
            .as_ref()
            .and_then(|p| p.networks.iter().find(|n| n.name == net.name))
            .is_some_and(|n| &n.hub_argv == argv);
        match hubs[i] {
            Some(pid) if current => eprintln!("hub {}: running (pid {pid})", net.name),
            Some(pid) => {
                eprintln!("hub {}: the file changed its settings, restarting it", net.name);
                process::terminate(pid);
                start_hub(&sd, &net.name, argv)?;
            }
            None => start_hub(&sd, &net.name, argv)?,
        }
    }
    let abs_file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let st = State::of(&c, abs_file, argvs);
    sd.write(&st)?;
    write_files(&sd, &st)?;

    // ---- nodes ----
    // Leases held before the nodes start: a node started now must get a new one
    // (a later expiry), not be taken as up because of its lease from a previous run.
    let before: Vec<_> = c
        .networks
        .iter()
        .map(|n| status::leases_with_expiry(&sd.leases(&n.name)))
        .collect();
    for (n, r) in c.nodes.iter().zip(&running) {
        if let Some(pid) = r {
            eprintln!("{}: running (pid {pid})", n.name);
            continue;
        }
        let overlay = sd.overlay(&n.name);
        if n.image.is_some() {
            if overlay.exists() {
                eprintln!("{}: reusing overlay {}", n.name, overlay.display());
            } else {
                for argv in disk_argvs(n, &sd) {
                    process::run(&argv).with_context(|| format!("{}: making its disk", n.name))?;
                }
                // A new disk means new host keys: the old one must not trip ssh.
                files::forget_host_key(&sd.known_hosts(), &files::host_key_alias(&c.name, &n.name))
                    .with_context(|| format!("update {}", sd.known_hosts().display()))?;
                eprintln!("{}: created {}", n.name, overlay.display());
            }
        }
        if n.cloud_init.is_some() {
            seed::write_seed(&c, n, &sd.seed(&n.name))?;
        }
        for p in [sd.pid(&n.name), sd.console(&n.name), sd.qmp(&n.name)] {
            let _ = std::fs::remove_file(p);
        }
        for nic in &n.nics {
            let _ = std::fs::remove_file(sd.vhost_socket(&n.name, &c.networks[nic.network].name));
        }
        let argv = qemu_argv(&c, n, &sd);
        std::fs::write(sd.qemu_log(&n.name), argv.join(" ") + "\n")?;
        // QEMU's start waits for the hub to connect each vhost-user NIC: bounded.
        let vhost: Vec<&str> = n
            .nics
            .iter()
            .map(|nic| &c.networks[nic.network])
            .filter(|net| net.transport == Transport::VhostUser)
            .map(|net| net.name.as_str())
            .collect();
        let hint = if vhost.is_empty() {
            String::new()
        } else {
            format!(
                " (its vhost-user NICs wait for the hub to connect: is the hub of {} running? see its log in {})",
                vhost.join(", "),
                sd.root.display()
            )
        };
        process::run_within(&argv, QEMU_START_LIMIT, &sd.pid(&n.name), &hint)
            .with_context(|| format!("{}: starting QEMU", n.name))?;
        let pid = process::read_pid(&sd.pid(&n.name)).unwrap_or(0);
        eprintln!(
            "{}: started (pid {pid}), console log {}",
            n.name,
            sd.log(&n.name).display()
        );
    }

    let fresh_only: Vec<bool> = running.iter().map(Option::is_none).collect();
    wait_until_ready(&c, &sd, o, &before, &fresh_only)?;
    status::status(&sd)
}

/// What `up` would run for `file`, without running or creating anything: each
/// network's hub command line (with the reservations `up` would give, reusing
/// the state's when there is one), then per node the qemu-img lines for its disk
/// and its QEMU line. Errors: the file is invalid (image and kernel files are
/// not checked), or a range has no address left for a node.
///
/// `host`: as [`UpOptions::host`]; only that machine's hubs and nodes are shown.
pub fn plan(file: &Path, exe: &Path, cwd: &Path, host: Option<&str>) -> Result<Vec<Vec<String>>> {
    let mut c = cluster::load(file)?;
    cluster::select_host(&mut c, host)?;
    let sd = StateDir::of(&c, cwd);
    addresses::assign(&mut c, sd.read().ok().as_ref())?;
    let mut v: Vec<Vec<String>> = (0..c.networks.len()).map(|i| hub_argv(exe, &c, i, &sd)).collect();
    for n in c.nodes.iter().filter(|n| c.is_here(n)) {
        v.extend(disk_argvs(n, &sd));
        v.push(qemu_argv(&c, n, &sd));
    }
    Ok(v)
}

/// Writes ssh_config, roster and inventory.ini into the state directory.
pub fn write_files(sd: &StateDir, st: &State) -> Result<()> {
    std::fs::write(sd.ssh_config(), files::ssh_config(st, &sd.known_hosts()))?;
    std::fs::write(sd.roster(), files::roster(st))?;
    std::fs::write(sd.inventory(), files::inventory(st))?;
    Ok(())
}

/// Spawns the hub of network `net` and waits up to 10 s for "hub running" in its log.
fn start_hub(sd: &StateDir, net: &str, argv: &[String]) -> Result<()> {
    let log = sd.hub_log(net);
    let offset = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let pid = process::spawn_detached(argv, &[("RUST_LOG", &level)], &log, &sd.hub_pid(net))?;
    let start = Instant::now();
    loop {
        let text = std::fs::read(&log).unwrap_or_default();
        let new = String::from_utf8_lossy(text.get(offset as usize..).unwrap_or_default()).into_owned();
        if new.contains("hub running") {
            eprintln!("hub {net}: started (pid {pid}), log {}", log.display());
            return Ok(());
        }
        if !process::alive(pid) || start.elapsed() > Duration::from_secs(10) {
            process::terminate(pid);
            bail!("hub {net} did not start (`{}`):\n{}", argv.join(" "), new.trim_end());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last `n` lines of a file (for error messages).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The machine whose hub is network `net`'s authority, for messages.
fn authority_name(c: &Cluster, net: usize) -> String {
    match &c.networks[net].authority {
        crate::machines::Authority::Host(h) => format!("host {h}"),
        _ => "the authority".into(),
    }
}

/// Leases by MAC with their expiry (Unix seconds), per network.
type Leases = Vec<HashMap<vmlan_hub::MacAddr, (Ipv4Addr, u64)>>;

/// The DHCPv4 leases of one hub, learned from its API's event stream
/// (`GET /events?current=true&types=lease`) by a reader thread: first a
/// `current` event per live lease, then bound/renewed (added or updated),
/// released/expired (removed). The thread ends at the next line (a keep-alive
/// comes every 15 s at the latest) after the feed is dropped.
pub struct LeaseFeed {
    map: Arc<Mutex<HashMap<vmlan_hub::MacAddr, (Ipv4Addr, u64)>>>,
    /// The stream's error, once it failed (the caller falls back to the lease file).
    failed: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
}

impl LeaseFeed {
    /// Starts following the API at `api` (a unix socket path).
    ///
    /// # Errors
    /// The reader thread cannot be started.
    pub fn start(api: &Path) -> Result<Self> {
        let feed = LeaseFeed {
            map: Arc::default(),
            failed: Arc::default(),
            stop: Arc::default(),
        };
        let (map, failed, stop) = (feed.map.clone(), feed.failed.clone(), feed.stop.clone());
        let api = api.to_path_buf();
        std::thread::Builder::new()
            .name("lease-feed".into())
            .spawn(move || {
                let r = crate::api_client::ApiClient::new(&api)
                    .map_err(|e| e.to_string())
                    .and_then(|c| {
                        c.stream("/events?current=true&types=lease", |v| {
                            apply_lease_event(&mut map.lock().unwrap_or_else(|e| e.into_inner()), &v);
                            !stop.load(Ordering::Relaxed)
                        })
                        .map_err(|e| e.to_string())
                    });
                let why = r.err().unwrap_or_else(|| "the event stream ended".into());
                if !stop.load(Ordering::Relaxed) {
                    *failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                }
            })
            .context("cannot start a thread to follow the hub's events")?;
        Ok(feed)
    }

    /// The live leases now, unless the stream failed (then its error).
    ///
    /// # Errors
    /// The stream failed or ended.
    pub fn leases(&self) -> std::result::Result<HashMap<vmlan_hub::MacAddr, (Ipv4Addr, u64)>, String> {
        if let Some(e) = self.failed.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Err(e);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map
            .iter()
            .filter(|(_, (_, exp))| *exp == 0 || *exp > now)
            .map(|(m, l)| (*m, *l))
            .collect())
    }
}

impl Drop for LeaseFeed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Applies one line of the lease event stream to `map`: an IPv4 lease
/// `current`, `bound` or `renewed` is (re)put, `released` or `expired` removed
/// (when it is still that address); other lines are ignored.
pub fn apply_lease_event(map: &mut HashMap<vmlan_hub::MacAddr, (Ipv4Addr, u64)>, v: &serde_json::Value) {
    if v["type"] != "lease" || v["family"] != "ipv4" {
        return;
    }
    let (Some(mac), Some(ip)) = (
        v["mac"].as_str().and_then(|m| m.parse::<vmlan_hub::MacAddr>().ok()),
        v["ip"].as_str().and_then(|i| i.parse::<Ipv4Addr>().ok()),
    ) else {
        return;
    };
    let expires = v["expires"].as_u64().unwrap_or(0);
    match v["event"].as_str() {
        Some("current" | "bound" | "renewed") => {
            map.insert(mac, (ip, expires));
        }
        Some("released" | "expired") if map.get(&mac).is_some_and(|l| l.0 == ip) => {
            map.remove(&mac);
        }
        _ => {}
    }
}

/// Where a node is on its way up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// QEMU runs; not every segment NIC holds its lease yet.
    Booting,
    /// Every NIC holds its lease; its sshd has not answered yet.
    Leased,
    /// Leased, and its sshd answered (or `wait_ssh` is off).
    Ready,
}

/// Waits until every node is ready: every NIC of it holds a current lease
/// from its hub, as the hub's API event stream tells ([`LeaseFeed`]; the
/// hub's lease file for a hub without an API socket, started by an older
/// vmlan, or whose stream failed) (a NIC on a segment whose authority is
/// another machine's hub counts at once: its lease is on that machine) and, with `o.wait_ssh`, its forwarded ssh port sends an SSH
/// banner. Shows a spinner per node on a terminal (else one line per step), with
/// the seconds each step took. For node `i` with `fresh_only[i]` (started by this
/// `up`) the lease must be new or renewed since `before` (a later expiry;
/// infinite leases count as they are).
fn wait_until_ready(c: &Cluster, sd: &StateDir, o: &UpOptions, before: &Leases, fresh_only: &[bool]) -> Result<()> {
    let tty = std::io::stderr().is_terminal();
    let mp = MultiProgress::new();
    let style = ProgressStyle::with_template("{spinner} {prefix:<16} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bars: Vec<ProgressBar> = c
        .nodes
        .iter()
        .map(|n| {
            let b = if tty {
                mp.add(ProgressBar::new_spinner())
            } else {
                ProgressBar::hidden()
            };
            b.set_style(style.clone());
            b.set_prefix(n.name.clone());
            b.set_message("booting, waiting for its lease");
            b.enable_steady_tick(Duration::from_millis(120));
            b
        })
        .collect();
    let mut phase = vec![Phase::Booting; c.nodes.len()];
    let mut probes: Vec<SshProbe> = c.nodes.iter().map(|n| SshProbe::new(n.ssh_port)).collect();
    let mut leased_at = vec![0u64; c.nodes.len()];
    // One event reader per authority hub with an API socket.
    let feeds: Vec<Option<LeaseFeed>> = c
        .networks
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let api = sd.hub_api(&n.name);
            if !c.is_authority(i) || !api.exists() {
                return None;
            }
            LeaseFeed::start(&api)
                .map_err(|e| tracing::warn!(network = %n.name, error = %e, "reading the lease file instead"))
                .ok()
        })
        .collect();
    let mut warned = vec![false; c.networks.len()];
    let start = Instant::now();
    let say = |i: usize, msg: String, last: bool| {
        if tty {
            if last {
                bars[i].finish_with_message(msg);
            } else {
                bars[i].set_message(msg);
            }
        } else {
            eprintln!("{}: {msg}", c.nodes[i].name);
        }
    };
    loop {
        let leases: Leases = c
            .networks
            .iter()
            .enumerate()
            .map(|(k, n)| match feeds[k].as_ref().map(LeaseFeed::leases) {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    if !std::mem::replace(&mut warned[k], true) {
                        tracing::warn!(network = %n.name, error = %e, "the hub's events failed: reading its lease file instead");
                    }
                    status::leases_with_expiry(&sd.leases(&n.name))
                }
                None => status::leases_with_expiry(&sd.leases(&n.name)),
            })
            .collect();
        for (i, n) in c.nodes.iter().enumerate() {
            if phase[i] == Phase::Booting {
                let got: Vec<_> = n
                    .nics
                    .iter()
                    .map(|nic| {
                        if !c.is_authority(nic.network) {
                            // No lease file here: another machine's hub leases it.
                            return Some(format!("(its lease is on {}'s hub)", authority_name(c, nic.network)));
                        }
                        let (ip, exp) = *leases[nic.network].get(&nic.mac)?;
                        let old = before[nic.network].get(&nic.mac).map(|l| l.1);
                        let fresh = !fresh_only[i] || exp == 0 || old.is_none_or(|o| exp > o);
                        fresh.then_some(ip.to_string())
                    })
                    .collect();
                if got.iter().all(Option::is_some) {
                    leased_at[i] = start.elapsed().as_secs();
                    let ips: Vec<String> = got.into_iter().flatten().collect();
                    let ips = ips.join(", ");
                    if o.wait_ssh {
                        phase[i] = Phase::Leased;
                        say(
                            i,
                            format!("leased {ips} after {} s, waiting for ssh", leased_at[i]),
                            false,
                        );
                    } else {
                        phase[i] = Phase::Ready;
                        say(i, format!("leased {ips} after {} s", leased_at[i]), true);
                        continue;
                    }
                }
            }
            if phase[i] == Phase::Leased && probes[i].poll() {
                phase[i] = Phase::Ready;
                let t = start.elapsed().as_secs();
                say(
                    i,
                    format!("ssh ready after {t} s (leased after {} s)", leased_at[i]),
                    true,
                );
                continue;
            }
            if phase[i] != Phase::Ready && process::running(&sd.pid(&n.name), &sd.qmp(&n.name)).is_none() {
                mp.clear().ok();
                bail!(
                    "{}: QEMU exited while booting; last lines of {}:\n{}",
                    n.name,
                    sd.log(&n.name).display(),
                    tail(&sd.log(&n.name), 20)
                );
            }
        }
        if phase.iter().all(|p| *p == Phase::Ready) {
            return Ok(());
        }
        if start.elapsed() > o.timeout {
            mp.clear().ok();
            let waiting: Vec<String> = c
                .nodes
                .iter()
                .zip(&phase)
                .filter(|(_, p)| **p != Phase::Ready)
                .map(|(n, p)| match p {
                    Phase::Booting => format!("{} (no lease)", n.name),
                    _ => format!("{} (leased, ssh port {} sends no SSH banner)", n.name, n.ssh_port),
                })
                .collect();
            bail!(
                "timed out after {} s waiting for {} (they keep running: see `vmlan logs NODE`, \
                 run `vmlan up` again to keep waiting, `--no-wait-ssh` for images without sshd, or `vmlan down`)",
                o.timeout.as_secs(),
                waiting.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The lease map follows current/bound/renewed/released/expired lines, IPv4 only.
    #[test]
    fn lease_events_feed_the_map() {
        let mut m = HashMap::new();
        let mac: vmlan_hub::MacAddr = "52:54:00:00:00:05".parse().unwrap();
        let ev = |event: &str, ip: &str, family: &str| json!({"type": "lease", "event": event, "family": family, "mac": "52:54:00:00:00:05", "ip": ip, "expires": 99});
        apply_lease_event(&mut m, &ev("current", "10.0.3.5", "ipv4"));
        assert_eq!(m.get(&mac), Some(&("10.0.3.5".parse().unwrap(), 99)));
        apply_lease_event(&mut m, &ev("bound", "fd00::5", "ipv6"));
        apply_lease_event(&mut m, &ev("released", "10.0.3.6", "ipv4"));
        assert_eq!(m.len(), 1, "another address's release leaves the lease");
        apply_lease_event(&mut m, &ev("expired", "10.0.3.5", "ipv4"));
        assert!(m.is_empty());
        apply_lease_event(&mut m, &json!({"type": "keepalive"}));
        assert!(m.is_empty());
    }
}
