//! `vmlan status`: each node's state (running or stopped, by its QEMU pid file),
//! pid, MAC, leased IP (from its hub's lease file), ssh port and the commands
//! that log in (through the generated ssh config) and attach to its console,
//! and each hub's state (with its VXLAN peers, and whether it is its segment's
//! DHCP/DNS authority); as a table or JSON. Also the lease lookup `up` waits on.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use vmlan_hub::MacAddr;
use vmlan_store as store;

use crate::process;
use crate::state::{State, StateDir};

/// The whole cluster's status (the `--json` output).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Cluster name.
    pub cluster: String,
    /// The state directory.
    pub state_dir: String,
    /// The generated ssh config (`ssh -F PATH NODE`).
    pub ssh_config: String,
    /// One per network.
    pub hubs: Vec<HubStatus>,
    /// One per node.
    pub nodes: Vec<NodeStatus>,
}

/// A network's hub.
#[derive(Debug, Clone, Serialize)]
pub struct HubStatus {
    /// Network name.
    pub network: String,
    /// "running" or "stopped".
    pub state: &'static str,
    /// Its pid while running.
    pub pid: Option<u32>,
    /// The hub's address.
    pub address: String,
    /// Its lease file.
    pub leasefile: String,
    /// Its VXLAN port (the hub's `--vxlan` value: `vni=N,local=..,peer=..,port=P`), if any.
    pub vxlan: Option<String>,
    /// False when the hub runs `--no-host` (another machine's hub is the
    /// segment's DHCP/DNS authority; no leases here).
    pub authority: bool,
}

/// A node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Node name.
    pub name: String,
    /// "running" or "stopped".
    pub state: &'static str,
    /// QEMU's pid while running.
    pub pid: Option<u32>,
    /// The first segment NIC's MAC.
    pub mac: String,
    /// The first segment NIC's leased IP, if it holds a current lease.
    pub ip: Option<String>,
    /// Host port (127.0.0.1) forwarded to the guest's port 22.
    pub ssh_port: u16,
    /// A command that logs in through the generated ssh config (its own
    /// known_hosts): `ssh -F STATE/ssh_config NODE`.
    pub ssh: String,
    /// The command that attaches to its serial console (run where `up` ran).
    pub console: String,
    /// Every segment NIC.
    pub nics: Vec<NicStatus>,
}

/// One segment NIC of a node.
#[derive(Debug, Clone, Serialize)]
pub struct NicStatus {
    /// Network name.
    pub network: String,
    /// MAC.
    pub mac: String,
    /// Leased IP, if any.
    pub ip: Option<String>,
    /// Reserved IP from the file, if any.
    pub reserved_ip: Option<String>,
}

/// Current (unexpired) leases of the lease file `path` (and its journal), by MAC.
/// A missing file gives none.
pub fn leases(path: &Path) -> HashMap<MacAddr, Ipv4Addr> {
    leases_with_expiry(path)
        .into_iter()
        .map(|(m, (ip, _))| (m, ip))
        .collect()
}

/// Like [`leases`], with each lease's expiry (Unix seconds; 0: infinite).
pub fn leases_with_expiry(path: &Path) -> HashMap<MacAddr, (Ipv4Addr, u64)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match store::read(path) {
        Ok(db) => db
            .iter()
            .filter(|l| !l.expired(now))
            .map(|l| (l.mac, (l.ip, l.expires)))
            .collect(),
        Err(_) => HashMap::new(),
    }
}

/// The status of the cluster whose state is in `sd`. Errors: no readable state.json.
pub fn status(sd: &StateDir) -> Result<Status> {
    let st: State = sd.read()?;
    let mut by_net: HashMap<String, HashMap<MacAddr, Ipv4Addr>> = HashMap::new();
    let mut hubs = vec![];
    for n in &st.networks {
        let pid = process::running(&sd.hub_pid(&n.name), &sd.leases(&n.name));
        hubs.push(HubStatus {
            network: n.name.clone(),
            state: if pid.is_some() { "running" } else { "stopped" },
            pid,
            address: n.address.clone(),
            leasefile: sd.leases(&n.name).display().to_string(),
            vxlan: n.hub_argv.windows(2).find(|w| w[0] == "--vxlan").map(|w| w[1].clone()),
            authority: !n.hub_argv.iter().any(|x| x == "--no-host"),
        });
        by_net.insert(n.name.clone(), leases(&sd.leases(&n.name)));
    }
    let mut nodes = vec![];
    for n in &st.nodes {
        let pid = process::running(&sd.pid(&n.name), &sd.qmp(&n.name));
        let nics: Vec<NicStatus> = n
            .nics
            .iter()
            .map(|nic| {
                let leased = nic
                    .mac
                    .parse::<MacAddr>()
                    .ok()
                    .and_then(|m| by_net.get(&nic.network).and_then(|l| l.get(&m)))
                    .map(|ip| ip.to_string());
                NicStatus {
                    network: nic.network.clone(),
                    mac: nic.mac.clone(),
                    ip: leased,
                    reserved_ip: nic.ip.clone(),
                }
            })
            .collect();
        nodes.push(NodeStatus {
            name: n.name.clone(),
            state: if pid.is_some() { "running" } else { "stopped" },
            pid,
            mac: nics.first().map(|x| x.mac.clone()).unwrap_or_default(),
            ip: nics.first().and_then(|x| x.ip.clone()),
            ssh_port: n.ssh_port,
            ssh: format!("ssh -F {} {}", sd.ssh_config().display(), n.name),
            console: format!("vmlan console {}", n.name),
            nics,
        });
    }
    Ok(Status {
        cluster: st.cluster,
        state_dir: sd.root.display().to_string(),
        ssh_config: sd.ssh_config().display().to_string(),
        hubs,
        nodes,
    })
}

/// The status as a table: hubs, then one line per node, then how to log in.
pub fn table(s: &Status) -> String {
    let mut out = format!("cluster {} (state in {})\n", s.cluster, s.state_dir);
    for h in &s.hubs {
        out += &format!(
            "hub {:<10} {:<8} pid {:<8} address {}\n",
            h.network,
            h.state,
            h.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            h.address
        );
        if let Some(v) = &h.vxlan {
            out += &format!("    vxlan {v}\n");
        }
        if !h.authority {
            out += "    no host here (--no-host): another machine's hub answers DHCP and DNS\n";
        }
    }
    out += &format!(
        "{:<16} {:<8} {:<8} {:<17} {:<15} {:<6} SSH\n",
        "NODE", "STATE", "PID", "MAC", "IP", "PORT"
    );
    for n in &s.nodes {
        out += &format!(
            "{:<16} {:<8} {:<8} {:<17} {:<15} {:<6} {}\n",
            n.name,
            n.state,
            n.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            n.mac,
            n.ip.as_deref().unwrap_or("-"),
            n.ssh_port,
            n.ssh
        );
    }
    out + &next_steps(s)
}

/// What to type next: `vmlan ssh`, the plain ssh command with the generated
/// config, the console (shown under `up`'s and `status`'s tables).
pub fn next_steps(s: &Status) -> String {
    let first = s.nodes.first().map(|n| n.name.as_str()).unwrap_or("NODE");
    format!(
        "log in: vmlan ssh {first} [COMMAND]   or   ssh -F {} {first}\n\
         console: vmlan console {first}   (detach with Ctrl-])\n",
        s.ssh_config
    )
}
