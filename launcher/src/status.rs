//! `vmlan status`: each node's state (running or stopped, by its QEMU pid file),
//! pid, MAC, leased IP (from its hub's lease file), IPv6 address on a
//! dual-stack network (and its DHCPv6 lease, if any), ssh port and the commands
//! that log in (through the generated ssh config) and attach to its console,
//! and each hub's state (with its VXLAN peers, and whether it is its segment's
//! DHCP/DNS authority); as a table or JSON. Also the lease lookup `up` waits on.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
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
    /// The hub's IPv6 address on a dual-stack network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address6: Option<String>,
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
    /// The first segment NIC's IPv6 address (the one the hub publishes for the
    /// node), on a dual-stack network; else absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
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
    /// Its IPv6 address on a dual-stack network (the file's `ipv6`, or its
    /// MAC's EUI-64 address in the prefix): the address the hub publishes
    /// (AAAA, PTR) and reserves for it in DHCPv6; else absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    /// The address of its current DHCPv6 lease, if it holds one (matched by the
    /// MAC in the client's DUID, or by the reserved address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_lease: Option<String>,
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

/// Current (unexpired) DHCPv6 leases of the lease file `path`: the MAC in the
/// client's DUID (DUID-LLT or DUID-LL of Ethernet, RFC 8415 sections 11.2 and
/// 11.4), if it has one, and the leased address. A missing file gives none.
pub fn leases6(path: &Path) -> Vec<(Option<MacAddr>, Ipv6Addr)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match store::read(path) {
        Ok(db) => db
            .leases6()
            .filter(|l| !l.expired(now))
            .map(|l| (duid_mac(&l.duid), l.addr))
            .collect(),
        Err(_) => vec![],
    }
}

/// The Ethernet MAC in a DUID-LLT (type 1: type, hardware type 1, 4-byte time,
/// MAC) or DUID-LL (type 3: type, hardware type 1, MAC); `None` for other DUIDs.
pub fn duid_mac(duid: &[u8]) -> Option<MacAddr> {
    let mac = match duid {
        [0, 1, 0, 1, _, _, _, _, m @ ..] | [0, 3, 0, 1, m @ ..] if m.len() == 6 => m,
        _ => return None,
    };
    let mut o = [0u8; 6];
    o.copy_from_slice(mac);
    Some(MacAddr(o))
}

/// The status of the cluster whose state is in `sd`. Errors: no readable state.json.
pub fn status(sd: &StateDir) -> Result<Status> {
    let st: State = sd.read()?;
    let mut by_net: HashMap<String, HashMap<MacAddr, Ipv4Addr>> = HashMap::new();
    let mut by_net6: HashMap<String, Vec<(Option<MacAddr>, Ipv6Addr)>> = HashMap::new();
    let mut hubs = vec![];
    for n in &st.networks {
        let pid = process::running(&sd.hub_pid(&n.name), &sd.leases(&n.name));
        hubs.push(HubStatus {
            network: n.name.clone(),
            state: if pid.is_some() { "running" } else { "stopped" },
            pid,
            address: n.address.clone(),
            address6: n.address6.clone(),
            leasefile: sd.leases(&n.name).display().to_string(),
            vxlan: n.hub_argv.windows(2).find(|w| w[0] == "--vxlan").map(|w| w[1].clone()),
            authority: !n.hub_argv.iter().any(|x| x == "--no-host"),
        });
        by_net.insert(n.name.clone(), leases(&sd.leases(&n.name)));
        by_net6.insert(n.name.clone(), leases6(&sd.leases(&n.name)));
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
                let mac = nic.mac.parse::<MacAddr>().ok();
                let ipv6_lease = by_net6
                    .get(&nic.network)
                    .and_then(|l| {
                        l.iter().find(|(m, a)| {
                            (m.is_some() && *m == mac) || nic.ipv6.as_deref() == Some(a.to_string().as_str())
                        })
                    })
                    .map(|(_, a)| a.to_string());
                NicStatus {
                    network: nic.network.clone(),
                    mac: nic.mac.clone(),
                    ip: leased,
                    reserved_ip: nic.ip.clone(),
                    ipv6: nic.ipv6.clone(),
                    ipv6_lease,
                }
            })
            .collect();
        nodes.push(NodeStatus {
            name: n.name.clone(),
            state: if pid.is_some() { "running" } else { "stopped" },
            pid,
            mac: nics.first().map(|x| x.mac.clone()).unwrap_or_default(),
            ip: nics.first().and_then(|x| x.ip.clone()),
            ipv6: nics.first().and_then(|x| x.ipv6.clone()),
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
            "hub {:<10} {:<8} pid {:<8} address {}{}\n",
            h.network,
            h.state,
            h.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            h.address,
            h.address6.as_ref().map(|a| format!(" {a}")).unwrap_or_default()
        );
        if let Some(v) = &h.vxlan {
            out += &format!("    vxlan {v}\n");
        }
        if !h.authority {
            out += "    no host here (--no-host): another machine's hub answers DHCP and DNS\n";
        }
    }
    // The IPV6 column only when some node is on a dual-stack network.
    let v6 = s.nodes.iter().any(|n| n.ipv6.is_some());
    let col6 = |x: &str| if v6 { format!("{x:<39} ") } else { String::new() };
    out += &format!(
        "{:<16} {:<8} {:<8} {:<17} {:<15} {}{:<6} SSH\n",
        "NODE",
        "STATE",
        "PID",
        "MAC",
        "IP",
        col6("IPV6"),
        "PORT"
    );
    for n in &s.nodes {
        out += &format!(
            "{:<16} {:<8} {:<8} {:<17} {:<15} {}{:<6} {}\n",
            n.name,
            n.state,
            n.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            n.mac,
            n.ip.as_deref().unwrap_or("-"),
            col6(n.ipv6.as_deref().unwrap_or("-")),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ipv6: Option<&str>) -> NodeStatus {
        NodeStatus {
            name: name.into(),
            state: "running",
            pid: Some(7),
            mac: "52:54:00:00:00:01".into(),
            ip: Some("10.0.3.100".into()),
            ipv6: ipv6.map(str::to_string),
            ssh_port: 10022,
            ssh: format!("ssh -F /s/ssh_config {name}"),
            console: format!("vmlan console {name}"),
            nics: vec![],
        }
    }

    #[test]
    fn table_has_an_ipv6_column_only_when_dual_stack() {
        let mut s = Status {
            cluster: "c".into(),
            state_dir: "/s".into(),
            ssh_config: "/s/ssh_config".into(),
            hubs: vec![],
            nodes: vec![node("a", None)],
        };
        let t = table(&s);
        assert!(!t.contains("IPV6"), "{t}");
        assert!(
            t.contains("a                running  7        52:54:00:00:00:01 10.0.3.100      10022  ssh"),
            "{t}"
        );
        s.nodes.push(node("b", Some("fd00:10::1:a00:365")));
        let t = table(&s);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[1].contains(" IP              IPV6 "), "{t}");
        assert!(lines[2].contains(" 10.0.3.100      -  "), "{t}");
        assert!(lines[3].contains(" 10.0.3.100      fd00:10::1:a00:365 "), "{t}");
        // JSON: ipv6 only where there is one.
        let v = serde_json::to_value(&s).unwrap();
        assert!(v["nodes"][0].get("ipv6").is_none(), "{v}");
        assert_eq!(v["nodes"][1]["ipv6"], "fd00:10::1:a00:365");
    }

    #[test]
    fn duid_mac_reads_llt_and_ll_only() {
        let mac: MacAddr = "52:54:00:00:00:05".parse().unwrap();
        assert_eq!(duid_mac(&[0, 3, 0, 1, 0x52, 0x54, 0, 0, 0, 5]), Some(mac));
        assert_eq!(duid_mac(&[0, 1, 0, 1, 9, 9, 9, 9, 0x52, 0x54, 0, 0, 0, 5]), Some(mac));
        assert_eq!(duid_mac(&[0, 2, 0, 0, 0, 9, 1]), None, "DUID-EN");
        assert_eq!(duid_mac(&[0, 3, 0, 6, 1, 2, 3, 4, 5, 6]), None, "not Ethernet");
        assert_eq!(duid_mac(&[0, 3, 0, 1, 1, 2]), None, "short");
    }
}
