//! The state directory of a cluster: where `vmlan up` keeps overlays, seeds,
//! sockets, pid files, logs, lease files, the generated ssh config and roster,
//! and `state.json` (what `status`, `ssh`, `console`, `logs` and `down` read).
//!
//! Location: `[cluster] state_dir` when the file sets it, else `.vmlan/NAME`
//! under the directory `vmlan up` runs in (like Vagrant's `.vagrant/`: overlays
//! are disks, so they live with the project rather than in a tmpfs such as
//! `$XDG_RUNTIME_DIR`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, Transport};

/// Longest path of a unix socket (`sun_path` is 108 bytes with the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Paths inside one cluster's state directory. Pure: nothing is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    /// The directory (absolute).
    pub root: PathBuf,
}

impl StateDir {
    /// The state directory of `c`: its `state_dir`, else `cwd/.vmlan/NAME`.
    pub fn of(c: &Cluster, cwd: &Path) -> StateDir {
        StateDir {
            root: c.state_dir.clone().unwrap_or_else(|| default_root(cwd).join(&c.name)),
        }
    }

    /// `NODE.qcow2`: the node's overlay (or full copy).
    pub fn overlay(&self, node: &str) -> PathBuf {
        self.root.join(format!("{node}.qcow2"))
    }
    /// `NODE-seed.img`: its NoCloud seed (FAT, label `cidata`).
    pub fn seed(&self, node: &str) -> PathBuf {
        self.root.join(format!("{node}-seed.img"))
    }
    /// `NODE.console`: the serial console's unix socket (QEMU listens).
    pub fn console(&self, node: &str) -> PathBuf {
        self.root.join(format!("{node}.console"))
    }
    /// `NODE.log`: everything the serial console printed (QEMU's chardev `logfile`).
    pub fn log(&self, node: &str) -> PathBuf {
        self.root.join(format!("{node}.log"))
    }
    /// `NODE.qmp`: the QMP socket (QEMU listens).
    pub fn qmp(&self, node: &str) -> PathBuf {
        self.root.join(format!("{node}.qmp"))
    }
    /// `NODE.pid`: QEMU's `-pidfile`.
    pub fn pid(&self, node: &str) -> PathBuf {
        self.root.join(format!("{node}.pid"))
    }
    /// `NODE.qemu.log`: QEMU's own messages while starting.
    pub fn qemu_log(&self, node: &str) -> PathBuf {
        self.root.join(format!("{node}.qemu.log"))
    }
    /// `hub-NET.sock`: the hub's stream socket for network NET.
    pub fn hub_socket(&self, net: &str) -> PathBuf {
        self.root.join(format!("hub-{net}.sock"))
    }
    /// `NODE.NET.vhost`: the vhost-user socket of `node`'s NIC on network `net`
    /// (a `transport = "vhost-user"` network): QEMU listens, the hub connects.
    /// A dot joins the names, which cannot hold one, so no two NICs share a path.
    pub fn vhost_socket(&self, node: &str, net: &str) -> PathBuf {
        self.root.join(format!("{node}.{net}.vhost"))
    }
    /// `hub-NET.pid`.
    pub fn hub_pid(&self, net: &str) -> PathBuf {
        self.root.join(format!("hub-{net}.pid"))
    }
    /// `hub-NET.log`: the hub's stderr.
    pub fn hub_log(&self, net: &str) -> PathBuf {
        self.root.join(format!("hub-{net}.log"))
    }
    /// `hub-NET.leases`: its lease file (dnsmasq format, plus `.journal`).
    pub fn leases(&self, net: &str) -> PathBuf {
        self.root.join(format!("hub-{net}.leases"))
    }
    /// `ssh_config`: `Host NODE` entries (`ssh -F ssh_config master`).
    pub fn ssh_config(&self) -> PathBuf {
        self.root.join("ssh_config")
    }
    /// `known_hosts`: the nodes' host keys, under `HostKeyAlias vmlan-CLUSTER-NODE`
    /// (the ssh config's `UserKnownHostsFile`), apart from the user's own.
    pub fn known_hosts(&self) -> PathBuf {
        self.root.join("known_hosts")
    }
    /// `roster`: a Salt SSH roster (YAML).
    pub fn roster(&self) -> PathBuf {
        self.root.join("roster")
    }
    /// `inventory.ini`: an Ansible inventory.
    pub fn inventory(&self) -> PathBuf {
        self.root.join("inventory.ini")
    }
    /// `state.json`: [`State`].
    pub fn state_json(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// `hub-NET.api`: the hub's runtime API socket (its `--api unix:PATH`),
    /// which `vmlan up` reads leases from and `vmlan ctl -f` talks to.
    pub fn hub_api(&self, net: &str) -> PathBuf {
        self.root.join(format!("hub-{net}.api"))
    }

    /// `hub-NET.api-state`: what was added through the hub's API at run time
    /// (reservations, records, port forwards), in dnsmasq's configuration syntax (its
    /// `--api-state FILE`), so they outlive `vmlan down` and `up`.
    pub fn hub_api_state(&self, net: &str) -> PathBuf {
        self.root.join(format!("hub-{net}.api-state"))
    }

    /// Errors when a socket path of `c` would not fit in `sun_path` (107 bytes):
    /// consoles, QMP, the hubs' stream sockets and the NICs' vhost-user sockets.
    pub fn check_socket_paths(&self, c: &Cluster) -> Result<()> {
        let mut paths: Vec<PathBuf> = vec![];
        for n in &c.nodes {
            paths.push(self.console(&n.name));
            paths.push(self.qmp(&n.name));
            for nic in &n.nics {
                let net = &c.networks[nic.network];
                if net.transport == Transport::VhostUser {
                    paths.push(self.vhost_socket(&n.name, &net.name));
                }
            }
        }
        for n in &c.networks {
            paths.push(self.hub_socket(&n.name));
            paths.push(self.hub_api(&n.name));
        }
        for p in paths {
            if p.as_os_str().len() > MAX_SOCKET_PATH {
                bail!(
                    "state directory {}: the socket path {} is longer than {MAX_SOCKET_PATH} bytes; \
                     set [cluster] state_dir to a shorter path (or shorten the node or network name)",
                    self.root.display(),
                    p.display()
                );
            }
        }
        Ok(())
    }

    /// Reads `state.json`. Errors: missing (the cluster was never started here) or unreadable.
    pub fn read(&self) -> Result<State> {
        let p = self.state_json();
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!(
                "{}: cannot read (was `vmlan up` run for this cluster here?)",
                p.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a vmlan state file", p.display()))
    }

    /// Writes `state.json` atomically (temporary file, rename).
    pub fn write(&self, s: &State) -> Result<()> {
        let p = self.state_json();
        let tmp = self.root.join("state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(s)?).with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, &p).with_context(|| format!("rename to {}", p.display()))
    }
}

/// `cwd/.vmlan`: where clusters without a `state_dir` keep their state.
pub fn default_root(cwd: &Path) -> PathBuf {
    cwd.join(".vmlan")
}

/// What `vmlan up` recorded: enough for the other commands to work without the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// `[cluster] name`.
    pub cluster: String,
    /// The cluster file (absolute).
    pub file: PathBuf,
    /// One entry per network, in file order.
    pub networks: Vec<NetworkState>,
    /// One entry per node, in file order.
    pub nodes: Vec<NodeState>,
}

/// A network's hub as started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkState {
    /// Its name.
    pub name: String,
    /// The hub's full command line (program first), to tell whether a running hub is current.
    pub hub_argv: Vec<String>,
    /// Its DNS domain, if any.
    pub domain: Option<String>,
    /// The hub's address.
    pub address: String,
    /// The network's IPv6 prefix (`fd00:10::/64`) when it is dual-stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    /// The hub's own IPv6 address in that prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address6: Option<String>,
}

/// A node as started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// Its name.
    pub name: String,
    /// Its segment NICs: (network name, MAC, reserved IP: the file's or the one
    /// `up` derived, see [`crate::addresses`]).
    pub nics: Vec<NicState>,
    /// Host port forwarded to its port 22 (on 127.0.0.1).
    pub ssh_port: u16,
    /// ssh user.
    pub ssh_user: String,
    /// The private key for the ssh config's `IdentityFile`, if the file names one.
    #[serde(default)]
    pub ssh_identity_file: Option<PathBuf>,
}

/// One segment NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicState {
    /// Network name.
    pub network: String,
    /// MAC, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Reserved IP, if any.
    pub ip: Option<String>,
    /// Its IPv6 address on a dual-stack network (the file's, or the EUI-64 one
    /// `up` derived, see [`crate::addresses`]); absent on an IPv4-only one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
}

impl State {
    /// The state `up` records for `c`, with each network's hub command line.
    pub fn of(c: &Cluster, file: PathBuf, hub_argvs: Vec<Vec<String>>) -> State {
        State {
            cluster: c.name.clone(),
            file,
            networks: c
                .networks
                .iter()
                .zip(hub_argvs)
                .map(|(n, argv)| NetworkState {
                    name: n.name.clone(),
                    hub_argv: argv,
                    domain: n.domain.clone(),
                    address: n.address.to_string(),
                    ipv6: n.ipv6.map(|p| p.to_string()),
                    address6: crate::cluster::hub_ipv6(n).map(|a| a.to_string()),
                })
                .collect(),
            nodes: c
                .nodes
                .iter()
                .map(|n| NodeState {
                    name: n.name.clone(),
                    nics: n
                        .nics
                        .iter()
                        .map(|nic| NicState {
                            network: c.networks[nic.network].name.clone(),
                            mac: nic.mac.to_string(),
                            ip: nic.ip.map(|i| i.to_string()),
                            ipv6: nic.ipv6.map(|i| i.to_string()),
                        })
                        .collect(),
                    ssh_port: n.ssh_port,
                    ssh_user: n.ssh_user.clone(),
                    ssh_identity_file: n.ssh_identity_file.clone(),
                })
                .collect(),
        }
    }

    /// The node called `name`. Errors: no such node (the message lists them).
    pub fn node(&self, name: &str) -> Result<&NodeState> {
        match self.nodes.iter().find(|n| n.name == name) {
            Some(n) => Ok(n),
            None => {
                let all: Vec<_> = self.nodes.iter().map(|n| n.name.as_str()).collect();
                bail!(
                    "cluster {} has no node {name:?} (nodes: {})",
                    self.cluster,
                    all.join(", ")
                )
            }
        }
    }
}

/// Finds the state directory for the commands other than `up`: `file`'s when
/// given; else `cwd/.vmlan/NAME` for `cluster`; else the only cluster under
/// `cwd/.vmlan`. Errors: none or several found, or the file is invalid.
pub fn locate(file: Option<&Path>, cluster: Option<&str>, cwd: &Path) -> Result<StateDir> {
    if let Some(f) = file {
        let c = crate::cluster::load(f)?;
        return Ok(StateDir::of(&c, cwd));
    }
    let root = default_root(cwd);
    if let Some(name) = cluster {
        let d = StateDir { root: root.join(name) };
        if !d.state_json().exists() {
            bail!(
                "no cluster {name:?} under {} (was `vmlan up` run here?)",
                root.display()
            );
        }
        return Ok(d);
    }
    let mut found = vec![];
    if let Ok(rd) = std::fs::read_dir(&root) {
        for e in rd.flatten() {
            if e.path().join("state.json").exists() {
                found.push(e.path());
            }
        }
    }
    found.sort();
    match found.len() {
        1 => Ok(StateDir {
            root: found.pop().unwrap(),
        }),
        0 => bail!(
            "no cluster under {} (run `vmlan up FILE` here first, or give --file FILE)",
            root.display()
        ),
        _ => {
            let names: Vec<_> = found
                .iter()
                .map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned())
                .collect();
            bail!(
                "several clusters under {}: {}; choose one with --cluster NAME or --file FILE",
                root.display(),
                names.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_locate() {
        let dir = std::env::temp_dir().join(format!("vmlan-state-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let text = "[cluster]\nname = \"c1\"\n[network]\nsubnet = \"10.0.3.0/24\"\naddress = \"10.0.3.1\"\n\
                    [[node]]\nname = \"a\"\nkernel = \"k\"\n";
        let file = dir.join("c.toml");
        std::fs::write(&file, text).unwrap();
        let c = crate::cluster::load(&file).unwrap();
        let sd = StateDir::of(&c, &dir);
        assert_eq!(sd.root, dir.join(".vmlan/c1"));
        assert_eq!(sd.overlay("a"), dir.join(".vmlan/c1/a.qcow2"));
        assert!(locate(None, None, &dir).unwrap_err().to_string().contains("no cluster"));
        std::fs::create_dir_all(&sd.root).unwrap();
        let st = State::of(&c, file.clone(), vec![vec!["vmlan".into(), "hub".into()]]);
        sd.write(&st).unwrap();
        assert_eq!(sd.read().unwrap(), st);
        assert_eq!(locate(None, None, &dir).unwrap(), sd);
        assert_eq!(locate(None, Some("c1"), &dir).unwrap(), sd);
        assert_eq!(locate(Some(&file), None, &dir).unwrap(), sd);
        assert!(locate(None, Some("c2"), &dir).is_err());
        assert!(st.node("b").unwrap_err().to_string().contains("nodes: a"));
        let long = StateDir {
            root: PathBuf::from("/".to_string() + &"x".repeat(100)),
        };
        assert!(long
            .check_socket_paths(&c)
            .unwrap_err()
            .to_string()
            .contains("longer than 107"));
        // A vhost-user NIC's socket, NODE.NET.vhost, is checked too. With node
        // `abcdef` and a 91-byte root it is the only path over the limit
        // ("/abcdef.lan.vhost": 17 bytes; "/abcdef.console": 15).
        assert_eq!(sd.vhost_socket("a", "lan"), dir.join(".vmlan/c1/a.lan.vhost"));
        let edge = StateDir {
            root: PathBuf::from("/".to_string() + &"x".repeat(90)),
        };
        let text = text.replace("name = \"a\"", "name = \"abcdef\"");
        let c = crate::cluster::parse(&file, &text).unwrap();
        assert!(edge.check_socket_paths(&c).is_ok());
        let vhost = text.replace("[[node]]", "transport = \"vhost-user\"\n[[node]]");
        let c = crate::cluster::parse(&file, &vhost).unwrap();
        let e = edge.check_socket_paths(&c).unwrap_err().to_string();
        assert!(e.contains("abcdef.lan.vhost is longer than 107"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
