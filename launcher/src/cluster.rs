//! The cluster file (TOML): its model, validation and expansion into the nodes
//! and networks `vmlan up` starts. Every error names the file, the table and the
//! field, e.g. `cluster.toml: [[node]] 2 (worker): ip 10.0.4.5 is outside [network] subnet 10.0.3.0/24`.
//!
//! Follows the issue's file layout (`[cluster]`, `[network]` or `[[network]]`,
//! `[defaults]`, `[[node]]`, and `[[host]]` for a cluster on several machines);
//! QEMU's names where it drives QEMU (accel, machine, overlay, backing file);
//! dnsmasq's for the hub (dhcp_range, domain, and the IPv6 range modes of
//! `ipv6_mode`); xcluster's `ip6-NAME` for `ipv6_alias`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Deserialize;
use vmlan_hub::MacAddr;

/// A cluster file that could not be read or is not valid. Each message names the
/// file, the table and the field; all problems found are listed, one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ClusterError(pub Vec<String>);

/// `[cluster]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterTable {
    name: Option<String>,
    state_dir: Option<PathBuf>,
}

/// `[network]` or one `[[network]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkTable {
    name: Option<String>,
    subnet: Option<String>,
    address: Option<String>,
    router: Option<String>,
    domain: Option<String>,
    transport: Option<String>,
    mcast: Option<String>,
    dhcp_range: Option<String>,
    dns_listen: Option<String>,
    no_resolv: Option<bool>,
    hub_args: Option<Vec<String>>,
    vxlan: Option<crate::machines::VxlanTable>,
    authority: Option<crate::machines::AuthorityValue>,
    ipv6: Option<String>,
    ipv6_mode: Option<String>,
    ipv6_alias: Option<bool>,
}

/// `[network]` (one segment) or `[[network]]` (several).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Networks {
    One(Box<NetworkTable>),
    Many(Vec<NetworkTable>),
}

/// A value given either for the node's first network, or per network name.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum PerNetwork {
    First(String),
    ByName(BTreeMap<String, String>),
}

/// `cloud_init` (per node or in `[defaults]`): what goes into the NoCloud seed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CloudInit {
    /// Public keys for the user's `~/.ssh/authorized_keys`.
    #[serde(default)]
    pub ssh_authorized_keys: Vec<String>,
    /// The user to create and log in as (default `root`).
    pub user: Option<String>,
    /// A plain-text password for that user (cloud-init `chpasswd`), if any.
    pub password: Option<String>,
}

/// `[defaults]` and each `[[node]]`: the same keys, some only valid in one of them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeTable {
    // [[node]] only
    name: Option<String>,
    count: Option<u32>,
    mac: Option<PerNetwork>,
    ip: Option<PerNetwork>,
    ssh_port: Option<u32>,
    // both (a template with {ipv4} is what [defaults] is for)
    ipv6: Option<PerNetwork>,
    // [defaults] only
    ssh_port_base: Option<u32>,
    // both
    memory: Option<String>,
    cpus: Option<u32>,
    accel: Option<String>,
    machine: Option<String>,
    image: Option<PathBuf>,
    image_format: Option<String>,
    clone: Option<String>,
    disk_size: Option<String>,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    append: Option<String>,
    extra_args: Option<Vec<String>>,
    cloud_init: Option<CloudInit>,
    networks: Option<Vec<String>>,
    ssh_user: Option<String>,
    ssh_identity_file: Option<PathBuf>,
    ssh_via: Option<String>,
    host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    cluster: Option<ClusterTable>,
    network: Option<Networks>,
    defaults: Option<NodeTable>,
    #[serde(default)]
    node: Vec<NodeTable>,
    #[serde(default)]
    host: Vec<crate::machines::HostTable>,
}

/// How a network's guests reach its hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A unix stream socket in the state directory, `vmlan hub --stream unix:PATH`;
    /// QEMU `-netdev stream,server=off,addr.type=unix` (QEMU 7.2+; `reconnect-ms` 9.2+).
    Stream,
    /// QEMU's multicast segment GROUP:PORT, `-netdev socket,mcast=` on 127.0.0.1.
    Mcast(SocketAddrV4),
    /// vhost-user, one unix socket per node NIC (`NODE.NET.vhost` in the state
    /// directory, see [`crate::state::StateDir::vhost_socket`]): QEMU listens on
    /// it (`-chardev socket,server=on,wait=off`, `-netdev vhost-user`) and the hub
    /// dials it (`vmlan hub --vhost-user-connect PATH`), again whenever it goes
    /// away, so a restarted hub finds its guests. The node's memory becomes a
    /// shared memfd the hub maps (QEMU docs/system/devices/vhost-user.rst).
    VhostUser,
}

/// One segment, served by one `vmlan hub` that `up` starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Its name (`[[network]] name`; `lan` for a single `[network]` without one).
    pub name: String,
    /// The subnet, e.g. 10.0.3.0/24.
    pub subnet: Ipv4Net,
    /// The hub's address: the segment's DNS server.
    pub address: Ipv4Addr,
    /// The default gateway DHCP hands out on this segment (a router VM, the hub's
    /// own address, ...). `None`: DHCP sends no router and nodes keep their
    /// default route through SLIRP (see [`crate::seed`]).
    pub router: Option<Ipv4Addr>,
    /// DNS domain (DHCP option 15).
    pub domain: Option<String>,
    /// How guests connect.
    pub transport: Transport,
    /// The DHCP pool, first and last address (inclusive); `None`: reservations only.
    pub dhcp_range: Option<(Ipv4Addr, Ipv4Addr)>,
    /// Where the hub also answers DNS from the host, e.g. 127.0.0.1:5353.
    pub dns_listen: Option<SocketAddr>,
    /// Pass `--no-resolv` to the hub (no upstream servers from /etc/resolv.conf).
    pub no_resolv: bool,
    /// Extra `vmlan hub` arguments, appended as given.
    pub hub_args: Vec<String>,
    /// `vxlan = { ... }`: the VXLAN port that stretches this segment to other machines.
    pub vxlan: Option<crate::machines::Vxlan>,
    /// Whose hub answers ARP, DHCP and DNS on this segment (see [`crate::machines`]).
    pub authority: crate::machines::Authority,
    /// The segment's IPv6 prefix (`ipv6 = "fd00:10::/64"`, always a /64), if it
    /// is dual-stack: the hub advertises it (`--enable-ra`) and every node NIC on
    /// it gets a stable IPv6 address ([`Nic::ipv6`]).
    pub ipv6: Option<Ipv6Net>,
    /// How hosts get their IPv6 addresses (`ipv6_mode`, dnsmasq's range modes).
    pub ipv6_mode: Ipv6Mode,
    /// Also publish `ip6-NODE` for each node's IPv6 address (`ipv6_alias`, xcluster's names).
    pub ipv6_alias: bool,
}

/// `ipv6_mode`: what the hub's router advertisements and DHCPv6 server offer on
/// a dual-stack network, and what the node's seed turns on. The words are
/// dnsmasq's `--dhcp-range` modes (dnsmasq(8)); `stateful` is dnsmasq's mode
/// without a keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ipv6Mode {
    /// Addresses from DHCPv6 only (RA: M and O, prefix not autonomous); the seed runs a DHCPv6 client.
    Stateful,
    /// SLAAC, and DHCPv6 addresses for clients that ask (RA: A, M, O); the seed uses SLAAC. The default.
    #[default]
    Slaac,
    /// SLAAC, and DHCPv6 for other settings only (RA: A, O); the seed uses SLAAC.
    RaStateless,
    /// SLAAC only, no DHCPv6 (RA: A); the seed uses SLAAC.
    RaOnly,
    /// As `ra-only` (dnsmasq also names SLAAC hosts; the reservations name the nodes here).
    RaNames,
}

impl Ipv6Mode {
    /// The file's (and dnsmasq's) word for it.
    pub fn word(self) -> &'static str {
        match self {
            Ipv6Mode::Stateful => "stateful",
            Ipv6Mode::Slaac => "slaac",
            Ipv6Mode::RaStateless => "ra-stateless",
            Ipv6Mode::RaOnly => "ra-only",
            Ipv6Mode::RaNames => "ra-names",
        }
    }

    /// Whether the hub hands out DHCPv6 addresses from a pool in this mode.
    pub fn managed(self) -> bool {
        matches!(self, Ipv6Mode::Stateful | Ipv6Mode::Slaac)
    }
}

/// The DHCPv6 pool of a dual-stack network whose mode hands out addresses:
/// `PREFIX::1000` to `PREFIX::1fff` (4096 addresses; a node's `ipv6` may not lie
/// in it, and EUI-64 addresses, `ff:fe` in the middle, never do).
pub fn ipv6_pool(prefix: Ipv6Net) -> (Ipv6Addr, Ipv6Addr) {
    let p = u128::from(prefix.network());
    (Ipv6Addr::from(p | 0x1000), Ipv6Addr::from(p | 0x1fff))
}

/// The address with `mac`'s modified EUI-64 interface identifier (RFC 4291
/// appendix A) in `prefix` (a /64): what SLAAC (RFC 4862) gives a NIC with
/// that MAC, so a node's derived IPv6 is the one its kernel takes by itself.
pub fn eui64_in(prefix: Ipv6Net, mac: MacAddr) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(prefix.network()) | u128::from(vmlan_host::ipv6::interface_id(mac)))
}

/// The hub's own IPv6 address on network `n` (its default MAC,
/// [`vmlan_host::config::default_mac`], in the prefix), if it is dual-stack.
pub fn hub_ipv6(n: &Network) -> Option<Ipv6Addr> {
    n.ipv6.map(|p| eui64_in(p, vmlan_host::config::default_mac(n.address)))
}

/// How a node's disk is made from the base image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloneMode {
    /// A qcow2 overlay whose backing file is the base (`qemu-img create -b`).
    Overlay,
    /// An independent copy (`qemu-img convert`).
    Full,
}

/// One NIC of a node on a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// Index into [`Cluster::networks`].
    pub network: usize,
    /// The NIC's MAC.
    pub mac: MacAddr,
    /// Its reserved address: the file's `ip`, or (after [`crate::addresses::assign`])
    /// one `up` derived and recorded in the state. `None` only before that.
    pub ip: Option<Ipv4Addr>,
    /// True when `ip` came from the file (`ip =`), false when `up` derived it.
    pub ip_from_file: bool,
    /// Its IPv6 address on a dual-stack network: the file's `ipv6` (an address,
    /// or a template resolved once `ip` is known), else the EUI-64 address of
    /// its MAC in the prefix (see [`crate::addresses::assign`]). `None` on an
    /// IPv4-only network, and before `assign` for a template or derived one.
    pub ipv6: Option<Ipv6Addr>,
    /// The file's `ipv6` template (with `{ipv4}`) while `ip` is not known yet.
    pub ipv6_template: Option<String>,
    /// True when `ipv6` comes from the file (a static address in the seed).
    pub ipv6_from_file: bool,
}

/// One VM, after `count` is expanded and defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Its name (`worker1`, `worker2` for `name = "worker"`, `count = 2`); DHCP hostname.
    pub name: String,
    /// The 1-based `[[node]]` table it came from (for messages).
    pub table: usize,
    /// Its segment NICs, in the order of `networks`.
    pub nics: Vec<Nic>,
    /// The SLIRP NIC's MAC (52:54:01 + the same three bytes as the first NIC's derived MAC).
    pub slirp_mac: MacAddr,
    /// Host TCP port forwarded (127.0.0.1 only) to the guest's port 22.
    pub ssh_port: u16,
    /// `ssh_via = "hub"`: no SLIRP NIC; the hub of the node's first network
    /// forwards 127.0.0.1:`ssh_port` to the first NIC's address, port 22
    /// (`vmlan hub --expose`). Default (`"slirp"`): QEMU's SLIRP `hostfwd`.
    pub ssh_via_hub: bool,
    /// User for `vmlan ssh` and the ssh config (default root, or cloud_init.user).
    pub ssh_user: String,
    /// The private key the generated ssh config names (`IdentityFile`, absolute),
    /// if the file sets `ssh_identity_file`; else ssh's own defaults and agent.
    pub ssh_identity_file: Option<PathBuf>,
    /// QEMU `-m` value: MiB, or with an `M`/`G` suffix ("512M", "2G").
    pub memory: String,
    /// QEMU `-smp`.
    pub cpus: u32,
    /// Accelerators to try in order (`kvm:tcg` -> kvm, then tcg), one `-accel` each.
    pub accel: Vec<String>,
    /// QEMU machine type (default q35).
    pub machine: String,
    /// The base image (absolute), if the node has a disk.
    pub image: Option<PathBuf>,
    /// The base image's format (`-F`, default qcow2).
    pub image_format: String,
    /// Overlay or full copy.
    pub clone: CloneMode,
    /// Disk size for the overlay or copy (`qemu-img` size syntax, e.g. 20G); `None`: the base's.
    pub disk_size: Option<String>,
    /// Direct kernel boot: kernel (absolute).
    pub kernel: Option<PathBuf>,
    /// Direct kernel boot: initrd (absolute).
    pub initrd: Option<PathBuf>,
    /// Kernel command line, with `{name}`, `{mac}`, `{slirp_mac}`, `{ssh_port}` substituted,
    /// and (by [`crate::addresses::assign`]) `{ip}` and `{ipv6}`, the first NIC's addresses
    /// (empty when it has none).
    pub append: Option<String>,
    /// Appended to the QEMU command line as given.
    pub extra_args: Vec<String>,
    /// A NoCloud seed to generate and attach.
    pub cloud_init: Option<CloudInit>,
    /// The `[[host]]` (machine) it runs on; `None` in a file without `[[host]]` tables.
    pub host: Option<String>,
}

/// A validated cluster file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// The file it was read from, as given.
    pub file: PathBuf,
    /// `[cluster] name`.
    pub name: String,
    /// `[cluster] state_dir` (relative to the file's directory), if set; else the
    /// state directory is `./.vmlan/NAME` (see [`crate::state::StateDir`]).
    pub state_dir: Option<PathBuf>,
    /// The segments, in file order.
    pub networks: Vec<Network>,
    /// The nodes, expanded, in file order.
    pub nodes: Vec<Node>,
    /// The machines (`[[host]]`), in file order; empty: everything runs here.
    pub hosts: Vec<crate::machines::Host>,
    /// The machine this run is for (see [`select_host`]); `None`: no `[[host]]` tables.
    pub here: Option<String>,
}

impl Cluster {
    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// True when `node` runs on this machine (always, without `[[host]]` tables).
    pub fn is_here(&self, node: &Node) -> bool {
        self.here.is_none() || node.host == self.here
    }

    /// True when this machine's hub of network `net` answers ARP, DHCP and DNS
    /// (is the segment's authority); false: it runs `--no-host`.
    pub fn is_authority(&self, net: usize) -> bool {
        use crate::machines::Authority;
        match &self.networks[net].authority {
            Authority::Here => true,
            Authority::Elsewhere => false,
            Authority::Host(h) => self.here.as_deref().is_none_or(|x| x == h),
        }
    }
}

/// Chooses the machine this run is for (`vmlan up --host NAME`, else the
/// machine's hostname when a `[[host]]` has it) and records it in `c.here`.
/// Errors (naming the file): see [`crate::machines::select`].
pub fn select_host(c: &mut Cluster, given: Option<&str>) -> Result<(), ClusterError> {
    let f = c.file.display().to_string();
    c.here = crate::machines::select(&f, &c.hosts, given, crate::machines::hostname().as_deref())
        .map_err(|m| ClusterError(vec![m]))?;
    Ok(())
}

/// Reads and validates a cluster file. Relative paths in it (image, kernel,
/// initrd, ssh_identity_file, state_dir) are relative to the file's directory;
/// a leading `~/` is `$HOME`.
///
/// Errors: the file cannot be read, is not TOML, has an unknown key or a value
/// of the wrong type, or fails [`parse`]'s checks.
pub fn load(path: &Path) -> Result<Cluster, ClusterError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ClusterError(vec![format!("{}: cannot read: {e}", path.display())]))?;
    parse(path, &text)
}

/// Validates `text` as the cluster file `path` (only used for messages and to
/// resolve relative paths; nothing is read). Checks: a cluster name; at least one
/// network and node; subnets, addresses, ranges, MACs and IPs that parse, lie in
/// their subnet and collide nowhere; unique node names and ssh ports that fit in
/// 1..=65535; memory, cpus, clone and accel values; an image or a kernel per node;
/// networks that exist; an `ipv6` prefix that is a unicast /64, an `ipv6_mode` of
/// dnsmasq's words, node `ipv6` addresses or `{ipv4}` templates that lie in their
/// network's prefix (not its `::`, the hub's address or the DHCPv6 pool) and only
/// on dual-stack networks; names short enough for `ip6-NAME` with `ipv6_alias`;
/// `[[host]]` tables, `vxlan`, `authority` and node `host` (see
/// [`crate::machines`]; `here` is left `None`: see [`select_host`]).
/// Templates on pool addresses and derived IPv6 addresses are completed, and
/// checked for collisions, by [`crate::addresses::assign`]. Files are not checked
/// here (see [`check_files`]).
pub fn parse(path: &Path, text: &str) -> Result<Cluster, ClusterError> {
    let f = path.display().to_string();
    let file: ClusterFile =
        toml::from_str(text).map_err(|e| ClusterError(vec![format!("{f}: {}", e.to_string().trim_end())]))?;
    // Relative paths in the file are relative to its directory, made absolute (QEMU and
    // qemu-img run with other working directories and record the backing file's path).
    let base = std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    // `~/` is the user's home, as in a shell (for ssh_identity_file = "~/.ssh/id_ed25519").
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let abs = |p: &Path| match (p.strip_prefix("~"), &home) {
        (Ok(rest), Some(h)) => h.join(rest),
        _ if p.is_absolute() => p.to_path_buf(),
        _ => base.join(p),
    };
    let mut errs: Vec<String> = vec![];

    let cluster = file.cluster.clone().unwrap_or_default();
    let name = match cluster.name {
        Some(n) if valid_name(&n) => n,
        Some(n) => {
            errs.push(format!(
                "{f}: [cluster]: name {n:?} must be letters, digits, '-' or '_'"
            ));
            n
        }
        None => {
            errs.push(format!("{f}: [cluster]: name is missing"));
            String::new()
        }
    };

    // ---- machines ----
    let hosts = crate::machines::hosts(&file.host, &mut |m| errs.push(format!("{f}: {m}")));

    // ---- networks ----
    let (tables, many) = match file.network {
        None => {
            errs.push(format!(
                "{f}: [network] is missing: the shared segment needs a subnet and address"
            ));
            (vec![], false)
        }
        Some(Networks::One(t)) => (vec![*t], false),
        Some(Networks::Many(v)) => (v, true),
    };
    let mut networks = vec![];
    for (i, t) in tables.iter().enumerate() {
        let label = if many {
            format!("[[network]] {} ({})", i + 1, t.name.as_deref().unwrap_or("?"))
        } else {
            "[network]".to_string()
        };
        let mut e = |field: &str, msg: String| errs.push(format!("{f}: {label}: {field} {msg}"));
        let net_name = match &t.name {
            Some(n) if valid_name(n) => n.clone(),
            Some(n) => {
                e("name", format!("{n:?} must be letters, digits, '-' or '_'"));
                n.clone()
            }
            None if many => {
                e(
                    "name",
                    "is missing (needed when there are several [[network]] tables)".into(),
                );
                format!("net{}", i + 1)
            }
            None => "lan".to_string(),
        };
        let subnet = match t.subnet.as_deref().map(str::parse::<Ipv4Net>) {
            Some(Ok(s)) => Some(s.trunc()),
            Some(Err(_)) => {
                e(
                    "subnet",
                    format!(
                        "{:?} is not an IPv4 subnet like 10.0.3.0/24",
                        t.subnet.as_deref().unwrap()
                    ),
                );
                None
            }
            None => {
                e("subnet", "is missing".into());
                None
            }
        };
        let in_subnet = |ip: Ipv4Addr| subnet.is_none_or(|s| s.contains(&ip));
        let subnet_text = subnet.map(|s| s.to_string()).unwrap_or_default();
        let mut ip_field = |field: &str, v: &Option<String>, required: bool| -> Option<Ipv4Addr> {
            match v.as_deref().map(str::parse::<Ipv4Addr>) {
                Some(Ok(ip)) if in_subnet(ip) => Some(ip),
                Some(Ok(ip)) => {
                    e(field, format!("{ip} is outside subnet {subnet_text}"));
                    None
                }
                Some(Err(_)) => {
                    e(field, format!("{:?} is not an IPv4 address", v.as_deref().unwrap()));
                    None
                }
                None if required => {
                    e(field, "is missing".into());
                    None
                }
                None => None,
            }
        };
        let address = ip_field("address", &t.address, true);
        let router = ip_field("router", &t.router, false);
        let mut e = |field: &str, msg: String| errs.push(format!("{f}: {label}: {field} {msg}"));
        let dhcp_range = match t.dhcp_range.as_deref() {
            None => None,
            Some(r) => {
                let parts: Vec<_> = r.split(',').map(|p| p.trim().parse::<Ipv4Addr>()).collect();
                match parts.as_slice() {
                    [Ok(a), Ok(b)] if a > b => {
                        e("dhcp_range", format!("{r:?}: the start is after the end"));
                        None
                    }
                    [Ok(a), Ok(b)] if !in_subnet(*a) || !in_subnet(*b) => {
                        e("dhcp_range", format!("{r:?} is outside subnet {subnet_text}"));
                        None
                    }
                    [Ok(a), Ok(b)] => Some((*a, *b)),
                    _ => {
                        e(
                            "dhcp_range",
                            format!("{r:?} is not START,END like 10.0.3.100,10.0.3.200"),
                        );
                        None
                    }
                }
            }
        };
        let transport = match t.transport.as_deref().unwrap_or("stream") {
            tr @ ("stream" | "vhost-user") => {
                if t.mcast.is_some() {
                    e("mcast", format!("is set but transport is {tr:?}"));
                }
                if tr == "stream" {
                    Transport::Stream
                } else {
                    Transport::VhostUser
                }
            }
            "mcast" => match t.mcast.as_deref().map(str::parse::<SocketAddrV4>) {
                Some(Ok(a)) if a.ip().is_multicast() && a.port() != 0 => Transport::Mcast(a),
                Some(_) => {
                    e(
                        "mcast",
                        format!(
                            "{:?} is not GROUP:PORT like 230.0.0.1:1234",
                            t.mcast.as_deref().unwrap()
                        ),
                    );
                    Transport::Stream
                }
                None => {
                    e("mcast", "is missing (transport is \"mcast\")".into());
                    Transport::Stream
                }
            },
            other => {
                e(
                    "transport",
                    format!("{other:?} must be \"stream\", \"mcast\" or \"vhost-user\""),
                );
                Transport::Stream
            }
        };
        let dns_listen = match t.dns_listen.as_deref().map(str::parse::<SocketAddr>) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(_)) => {
                e(
                    "dns_listen",
                    format!(
                        "{:?} is not ADDR:PORT like 127.0.0.1:5353",
                        t.dns_listen.as_deref().unwrap()
                    ),
                );
                None
            }
        };
        if let Some(d) = &t.domain {
            if d.is_empty() || !d.split('.').all(valid_name) {
                e("domain", format!("{d:?} is not a DNS domain"));
            }
        }
        if let (Some(s), Some(a)) = (subnet, address) {
            if a == s.network() || a == s.broadcast() {
                e("address", format!("{a} is the network or broadcast address of {s}"));
            }
        }
        let (vxlan, authority) = crate::machines::network(t.vxlan.as_ref(), t.authority.as_ref(), &hosts, &mut e);
        let ipv6 = match t.ipv6.as_deref() {
            None => None,
            Some(v) => {
                match v.parse::<Ipv6Net>() {
                    Ok(p) if p.prefix_len() != 64 => {
                        e(
                            "ipv6",
                            format!("{v:?} must be a /64 prefix (SLAAC needs one, RFC 4862 section 5.5.3)"),
                        );
                        None
                    }
                    Ok(p)
                        if p.addr().is_multicast()
                            || p.addr().is_loopback()
                            || p.addr().is_unspecified()
                            || (p.addr().segments()[0] & 0xffc0) == 0xfe80 =>
                    {
                        e(
                        "ipv6",
                        format!("{v:?} is not a unicast prefix for the segment (link-local, multicast, :: and ::1 are not)"),
                    );
                        None
                    }
                    Ok(p) => Some(p.trunc()),
                    Err(_) => {
                        e("ipv6", format!("{v:?} is not an IPv6 prefix like fd00:10::/64"));
                        None
                    }
                }
            }
        };
        let ipv6_mode = match t.ipv6_mode.as_deref() {
            None => Ipv6Mode::default(),
            Some(m) => {
                if t.ipv6.is_none() {
                    e("ipv6_mode", "is set without ipv6 (the segment's prefix)".into());
                }
                match m {
                    "stateful" => Ipv6Mode::Stateful,
                    "slaac" => Ipv6Mode::Slaac,
                    "ra-stateless" => Ipv6Mode::RaStateless,
                    "ra-only" => Ipv6Mode::RaOnly,
                    "ra-names" => Ipv6Mode::RaNames,
                    _ => {
                        e(
                            "ipv6_mode",
                            format!(
                                "{m:?} must be \"stateful\", \"slaac\", \"ra-stateless\", \"ra-only\" or \"ra-names\""
                            ),
                        );
                        Ipv6Mode::default()
                    }
                }
            }
        };
        if t.ipv6_alias.is_some() && t.ipv6.is_none() {
            e("ipv6_alias", "is set without ipv6 (the segment's prefix)".into());
        }
        networks.push(Network {
            name: net_name,
            subnet: subnet.unwrap_or_default(),
            address: address.unwrap_or(Ipv4Addr::UNSPECIFIED),
            router,
            domain: t.domain.clone(),
            transport,
            dhcp_range,
            dns_listen,
            no_resolv: t.no_resolv.unwrap_or(false),
            hub_args: t.hub_args.clone().unwrap_or_default(),
            vxlan,
            authority,
            ipv6,
            ipv6_mode,
            ipv6_alias: t.ipv6_alias.unwrap_or(false),
        });
    }
    let mut seen = HashSet::new();
    for (i, n) in networks.iter().enumerate() {
        if !seen.insert(n.name.clone()) {
            errs.push(format!("{f}: [[network]] {} ({}): name is used twice", i + 1, n.name));
        }
    }
    let mut groups = HashMap::new();
    let mut dns_ports = HashMap::new();
    for (i, n) in networks.iter().enumerate() {
        if let Transport::Mcast(g) = n.transport {
            if let Some(other) = groups.insert(g, n.name.clone()) {
                errs.push(format!(
                    "{f}: [[network]] {} ({}): mcast {g} is also network {other}'s: they would be one segment",
                    i + 1,
                    n.name
                ));
            }
        }
        if let Some(d) = n.dns_listen {
            if let Some(other) = dns_ports.insert(d, n.name.clone()) {
                errs.push(format!(
                    "{f}: [[network]] {} ({}): dns_listen {d} is also network {other}'s",
                    i + 1,
                    n.name
                ));
            }
        }
    }

    // ---- defaults ----
    let defaults = file.defaults.clone().unwrap_or_default();
    for (field, set) in [
        ("name", defaults.name.is_some()),
        ("count", defaults.count.is_some()),
        ("mac", defaults.mac.is_some()),
        ("ip", defaults.ip.is_some()),
        ("ssh_port", defaults.ssh_port.is_some()),
    ] {
        if set {
            errs.push(format!(
                "{f}: [defaults]: {field} is per node: set it in a [[node]] table"
            ));
        }
    }
    let port_base = defaults.ssh_port_base.unwrap_or(10022);

    // ---- nodes ----
    if file.node.is_empty() {
        errs.push(format!(
            "{f}: [[node]]: there is none; add at least one [[node]] table with a name"
        ));
    }
    let mut nodes = vec![];
    let mut next_port = port_base;
    for (ti, t) in file.node.iter().enumerate() {
        let label = format!("[[node]] {} ({})", ti + 1, t.name.as_deref().unwrap_or("?"));
        // A field written `[defaults] NAME` is reported against [defaults] (where the value came from).
        let mut e = |field: &str, msg: String| match field.strip_prefix("[defaults] ") {
            Some(df) => errs.push(format!("{f}: [defaults]: {df} {msg}")),
            None => errs.push(format!("{f}: {label}: {field} {msg}")),
        };
        // The field's name, or `[defaults] NAME` when the node does not set it.
        let src = |node_sets: bool, field: &'static str| -> String {
            if node_sets {
                field.to_string()
            } else {
                format!("[defaults] {field}")
            }
        };
        if t.ssh_port_base.is_some() {
            e("ssh_port_base", "belongs in [defaults] (per node: ssh_port)".into());
        }
        let base_name = match &t.name {
            Some(n) if valid_name(n) => n.clone(),
            Some(n) => {
                e(
                    "name",
                    format!("{n:?} must be letters, digits, '-' or '_' (it is the DHCP hostname)"),
                );
                continue;
            }
            None => {
                e("name", "is missing".into());
                continue;
            }
        };
        let count = t.count.unwrap_or(0);
        if t.count == Some(0) {
            e("count", "must be at least 1".into());
            continue;
        }
        let names: Vec<String> = if t.count.is_none() {
            vec![base_name.clone()]
        } else {
            (1..=count).map(|k| format!("{base_name}{k}")).collect()
        };
        // settings: node, else defaults
        let memory = t
            .memory
            .clone()
            .or(defaults.memory.clone())
            .unwrap_or_else(|| "1G".into());
        if !valid_memory(&memory) {
            e(
                &src(t.memory.is_some(), "memory"),
                format!("{memory:?} is not a size like 512M or 2G (a bare number is MiB)"),
            );
        }
        let cpus = t.cpus.or(defaults.cpus).unwrap_or(1);
        if cpus == 0 || cpus > 1024 {
            e(
                &src(t.cpus.is_some(), "cpus"),
                format!("{cpus} must be between 1 and 1024"),
            );
        }
        let accel_text = t
            .accel
            .clone()
            .or(defaults.accel.clone())
            .unwrap_or_else(|| "kvm:tcg".into());
        let accel: Vec<String> = accel_text.split(':').map(str::to_string).collect();
        if accel
            .iter()
            .any(|a| !["kvm", "tcg", "xen", "hvf", "whpx", "nvmm"].contains(&a.as_str()))
        {
            e(
                &src(t.accel.is_some(), "accel"),
                format!("{accel_text:?} must be accelerators joined by ':' like \"kvm:tcg\" (kvm, tcg, xen, hvf, whpx, nvmm)"),
            );
        }
        let machine = t
            .machine
            .clone()
            .or(defaults.machine.clone())
            .unwrap_or_else(|| "q35".into());
        if machine.is_empty() || machine.contains([',', ' ']) {
            e(
                &src(t.machine.is_some(), "machine"),
                format!("{machine:?} is not a QEMU machine type like q35"),
            );
        }
        let image = t.image.clone().or(defaults.image.clone()).map(|p| abs(&p));
        let image_format = t
            .image_format
            .clone()
            .or(defaults.image_format.clone())
            .unwrap_or_else(|| "qcow2".into());
        if !["qcow2", "raw", "vmdk", "vdi", "vpc", "vhdx", "qed"].contains(&image_format.as_str()) {
            e(
                &src(t.image_format.is_some(), "image_format"),
                format!("{image_format:?} is not a qemu-img format like qcow2 or raw"),
            );
        }
        let clone = match t.clone.as_deref().or(defaults.clone.as_deref()).unwrap_or("overlay") {
            "overlay" => CloneMode::Overlay,
            "full" => CloneMode::Full,
            other => {
                e(
                    &src(t.clone.is_some(), "clone"),
                    format!("{other:?} must be \"overlay\" or \"full\""),
                );
                CloneMode::Overlay
            }
        };
        let disk_size = t.disk_size.clone().or(defaults.disk_size.clone());
        if let Some(d) = &disk_size {
            if !valid_disk_size(d) {
                e(
                    &src(t.disk_size.is_some(), "disk_size"),
                    format!("{d:?} is not a size like 20G or 512M"),
                );
            }
        }
        let kernel = t.kernel.clone().or(defaults.kernel.clone()).map(|p| abs(&p));
        let initrd = t.initrd.clone().or(defaults.initrd.clone()).map(|p| abs(&p));
        if image.is_none() && kernel.is_none() {
            e(
                "image",
                "is missing (nor is there a kernel): the node has nothing to boot".into(),
            );
        }
        if initrd.is_some() && kernel.is_none() {
            e("initrd", "is set without a kernel".into());
        }
        let append = t.append.clone().or(defaults.append.clone());
        if append.is_some() && kernel.is_none() {
            e("append", "is set without a kernel (direct kernel boot)".into());
        }
        let extra_args = t.extra_args.clone().or(defaults.extra_args.clone()).unwrap_or_default();
        let cloud_init = t.cloud_init.clone().or(defaults.cloud_init.clone());
        let ssh_user = t
            .ssh_user
            .clone()
            .or(defaults.ssh_user.clone())
            .or_else(|| cloud_init.as_ref().and_then(|c| c.user.clone()))
            .unwrap_or_else(|| "root".into());
        let ssh_identity_file = t
            .ssh_identity_file
            .clone()
            .or(defaults.ssh_identity_file.clone())
            .map(|p| abs(&p));
        let ssh_via_hub = match t.ssh_via.as_deref().or(defaults.ssh_via.as_deref()) {
            None | Some("slirp") => false,
            Some("hub") => {
                if !hosts.is_empty() {
                    e(
                        "ssh_via",
                        "\"hub\" is for clusters on one machine (without [[host]] tables)".into(),
                    );
                }
                true
            }
            Some(v) => {
                e("ssh_via", format!("{v:?}: expected \"slirp\" or \"hub\""));
                false
            }
        };
        let host = t.host.clone().or(defaults.host.clone());
        match &host {
            Some(h) if hosts.is_empty() => e(
                &src(t.host.is_some(), "host"),
                format!("{h:?} names a machine, but there are no [[host]] tables"),
            ),
            Some(h) if !hosts.iter().any(|x| &x.name == h) => {
                e(&src(t.host.is_some(), "host"), format!("{h:?} is not a [[host]] name"))
            }
            None if !hosts.is_empty() => e(
                "host",
                "is missing: with [[host]] tables every node names the machine it runs on".into(),
            ),
            _ => {}
        }
        // networks
        let net_names = t
            .networks
            .clone()
            .or(defaults.networks.clone())
            .unwrap_or_else(|| networks.first().map(|n| vec![n.name.clone()]).unwrap_or_default());
        let mut net_idx = vec![];
        for nn in &net_names {
            match networks.iter().position(|n| &n.name == nn) {
                Some(i) if net_idx.contains(&i) => e("networks", format!("names {nn:?} twice")),
                Some(i) => net_idx.push(i),
                None => e("networks", format!("{nn:?} is not a [[network]] name")),
            }
        }
        if net_idx.is_empty() && !networks.is_empty() {
            e("networks", "is empty: a node needs at least one segment".into());
        }
        // per-network mac and ip
        let per = |v: &Option<PerNetwork>, field: &str, e: &mut dyn FnMut(&str, String)| -> Vec<Option<String>> {
            let mut out = vec![None; net_idx.len()];
            match v {
                None => {}
                Some(PerNetwork::First(s)) => {
                    if let Some(o) = out.first_mut() {
                        *o = Some(s.clone());
                    }
                }
                Some(PerNetwork::ByName(m)) => {
                    for (k, s) in m {
                        match net_idx.iter().position(|&i| networks[i].name == *k) {
                            Some(p) => out[p] = Some(s.clone()),
                            None => e(field, format!("names network {k:?}, which this node is not on")),
                        }
                    }
                }
            }
            out
        };
        let macs = per(&t.mac, "mac", &mut e);
        let ips = per(&t.ip, "ip", &mut e);
        let ipv6_field = src(t.ipv6.is_some(), "ipv6");
        let ip6s = per(&t.ipv6.clone().or(defaults.ipv6.clone()), &ipv6_field, &mut e);
        let mut parsed_macs = vec![];
        for m in &macs {
            parsed_macs.push(match m {
                None => None,
                Some(s) => match s.parse::<MacAddr>() {
                    Ok(m) if m.0[0] & 1 == 1 => {
                        e("mac", format!("{m} is a multicast address"));
                        None
                    }
                    Ok(m) => Some(m),
                    Err(_) => {
                        e("mac", format!("{s:?} is not a MAC like 52:54:00:12:34:56"));
                        None
                    }
                },
            });
        }
        let mut parsed_ips = vec![];
        for (p, ip) in ips.iter().enumerate() {
            let net = &networks[net_idx[p]];
            parsed_ips.push(match ip {
                None => None,
                Some(s) => match s.parse::<Ipv4Addr>() {
                    Ok(ip) if !net.subnet.contains(&ip) => {
                        let where_ = if many {
                            format!("[[network]] {}", net.name)
                        } else {
                            "[network]".into()
                        };
                        e("ip", format!("{ip} is outside {where_} subnet {}", net.subnet));
                        None
                    }
                    Ok(ip) if ip == net.subnet.network() || ip == net.subnet.broadcast() => {
                        e(
                            "ip",
                            format!("{ip} is the network or broadcast address of {}", net.subnet),
                        );
                        None
                    }
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        e("ip", format!("{s:?} is not an IPv4 address"));
                        None
                    }
                },
            });
        }
        // ipv6: an address (count: each next node the next one) or a template with {ipv4}.
        let mut parsed_ip6s: Vec<Option<Ipv6Spec>> = vec![];
        for (p, v) in ip6s.iter().enumerate() {
            let net = &networks[net_idx[p]];
            let where_ = if many {
                format!("[[network]] {}", net.name)
            } else {
                "[network]".into()
            };
            parsed_ip6s.push(match (v, net.ipv6) {
                (None, _) => None,
                (Some(_), None) => {
                    e(
                        &ipv6_field,
                        format!("is set but {where_} has no ipv6 prefix (it is IPv4-only)"),
                    );
                    None
                }
                (Some(v), Some(prefix)) => match check_ipv6(v, net, prefix) {
                    Ok(spec) => Some(spec),
                    Err(msg) => {
                        e(&ipv6_field, format!("{v:?} {msg} ({where_} ipv6 {prefix})"));
                        None
                    }
                },
            });
        }
        for (k, node_name) in names.iter().enumerate() {
            let k32 = k as u32;
            let mut nics = vec![];
            for (p, &ni) in net_idx.iter().enumerate() {
                let mac = match parsed_macs[p] {
                    Some(m) => add_mac(m, k32),
                    None => derive_mac(&name, node_name, p),
                };
                let ip = parsed_ips[p].map(|ip| Ipv4Addr::from(u32::from(ip).wrapping_add(k32)));
                if let Some(ip) = ip {
                    if !networks[ni].subnet.contains(&ip) {
                        e(
                            "ip",
                            format!(
                                "{ip} (for {node_name}, count {count}) runs outside subnet {}",
                                networks[ni].subnet
                            ),
                        );
                    }
                }
                let (ipv6, ipv6_template) = match &parsed_ip6s[p] {
                    None => (None, None),
                    Some(Ipv6Spec::Addr(a)) => {
                        let a = Ipv6Addr::from(u128::from(*a).wrapping_add(u128::from(k32)));
                        if let Err(msg) =
                            check_ipv6(&a.to_string(), &networks[ni], networks[ni].ipv6.unwrap_or_default())
                        {
                            e(&ipv6_field, format!("{a} (for {node_name}, count {count}) {msg}"));
                        }
                        (Some(a), None)
                    }
                    Some(Ipv6Spec::Template(t)) => match ip {
                        Some(v4) => (resolve_template(t, v4), None),
                        None => (None, Some(t.clone())),
                    },
                };
                nics.push(Nic {
                    network: ni,
                    mac,
                    ip,
                    ip_from_file: ip.is_some(),
                    ipv6,
                    ipv6_from_file: parsed_ip6s[p].is_some(),
                    ipv6_template,
                });
            }
            let d = derive_mac(&name, node_name, 0).0;
            let slirp_mac = MacAddr([0x52, 0x54, 0x01, d[3], d[4], d[5]]);
            let port = match t.ssh_port {
                Some(p) => p + k32,
                None => {
                    let p = next_port;
                    next_port += 1;
                    p
                }
            };
            if port == 0 || port > 65535 {
                e(
                    "ssh_port",
                    format!("{port} (for {node_name}) is not a TCP port (1..=65535)"),
                );
            }
            if ssh_via_hub && nics.is_empty() {
                e("ssh_via", "\"hub\" needs a segment NIC (networks)".into());
            }
            nodes.push(Node {
                name: node_name.clone(),
                table: ti + 1,
                nics,
                slirp_mac,
                ssh_port: port.clamp(1, 65535) as u16,
                ssh_via_hub,
                ssh_user: ssh_user.clone(),
                ssh_identity_file: ssh_identity_file.clone(),
                memory: memory.clone(),
                cpus,
                accel: accel.clone(),
                machine: machine.clone(),
                image: image.clone(),
                image_format: image_format.clone(),
                clone,
                disk_size: disk_size.clone(),
                kernel: kernel.clone(),
                initrd: initrd.clone(),
                append: None,
                extra_args: extra_args.clone(),
                cloud_init: cloud_init.clone(),
                host: host.clone(),
            });
            let n = nodes.last_mut().unwrap();
            n.append = append.as_ref().map(|a| substitute(a, n));
        }
    }

    // ---- collisions across nodes ----
    let label = |n: &Node| format!("[[node]] {} ({})", n.table, n.name);
    let mut names = HashMap::new();
    let mut macs: HashMap<MacAddr, String> = HashMap::new();
    let mut ips: HashMap<(usize, Ipv4Addr), String> = HashMap::new();
    let mut ports: HashMap<u16, String> = HashMap::new();
    for n in &nodes {
        if let Some(other) = names.insert(n.name.clone(), label(n)) {
            errs.push(format!("{f}: {}: name {} is also {other}'s", label(n), n.name));
        }
        for nic in &n.nics {
            if let Some(other) = macs.insert(nic.mac, n.name.clone()) {
                errs.push(format!("{f}: {}: mac {} is also node {other}'s", label(n), nic.mac));
            }
            if let Some(ip) = nic.ip {
                let net = &networks[nic.network];
                if ip == net.address {
                    errs.push(format!(
                        "{f}: {}: ip {ip} is the hub's address on {}",
                        label(n),
                        net.name
                    ));
                }
                if let Some(other) = ips.insert((nic.network, ip), n.name.clone()) {
                    errs.push(format!("{f}: {}: ip {ip} is also node {other}'s", label(n)));
                }
            }
        }
        if n.name.len() > 59 && n.nics.iter().any(|nic| networks[nic.network].ipv6_alias) {
            errs.push(format!(
                "{f}: {}: name {} is too long for its ipv6_alias ip6-{} (a DNS label holds 63 characters)",
                label(n),
                n.name,
                n.name
            ));
        }
        if let Some(other) = ports.insert(n.ssh_port, n.name.clone()) {
            errs.push(format!(
                "{f}: {}: ssh port {} is also node {other}'s",
                label(n),
                n.ssh_port
            ));
        }
    }

    // A bad value in [defaults] is reported once, not once per node.
    let mut seen = HashSet::new();
    errs.retain(|m| seen.insert(m.clone()));
    if errs.is_empty() {
        Ok(Cluster {
            file: path.to_path_buf(),
            name,
            state_dir: cluster.state_dir.map(|p| abs(&p)),
            networks,
            nodes,
            hosts,
            here: None,
        })
    } else {
        Err(ClusterError(errs))
    }
}

/// A node's `ipv6` as written: an address, or a template with `{ipv4}`.
#[derive(Debug, Clone)]
enum Ipv6Spec {
    Addr(Ipv6Addr),
    Template(String),
}

/// `template` with `{ipv4}` replaced by `v4` (`1000::1:{ipv4}` gives
/// `1000::1:192.168.1.3`, an IPv6 address whose last 32 bits are the IPv4
/// address, RFC 4291 section 2.2 form 3), parsed; `None` if it does not parse.
pub fn resolve_template(template: &str, v4: Ipv4Addr) -> Option<Ipv6Addr> {
    template.replace("{ipv4}", &v4.to_string()).parse().ok()
}

/// Checks a node's `ipv6` text for network `net` with prefix `prefix`: an IPv6
/// address, or a template whose only placeholder is `{ipv4}`, in the prefix,
/// not its subnet-router anycast address (interface identifier 0), not the
/// hub's own address, not in the DHCPv6 pool. Since `{ipv4}` can only stand for
/// the last 32 bits of an IPv6 address, trying it with the hub's IPv4 address
/// decides for every node. Errors: what is wrong, to follow the value.
fn check_ipv6(v: &str, net: &Network, prefix: Ipv6Net) -> Result<Ipv6Spec, String> {
    let is_template = v.contains("{ipv4}");
    let rest = v.replace("{ipv4}", "");
    if rest.contains(['{', '}']) {
        return Err("has a placeholder other than {ipv4}".into());
    }
    let a = if is_template {
        resolve_template(v, net.address)
            .ok_or_else(|| "is not an IPv6 address with {ipv4} in its last 32 bits, like fd00::1:{ipv4}".to_string())?
    } else {
        v.parse::<Ipv6Addr>()
            .map_err(|_| "is not an IPv6 address (or a template with {ipv4})".to_string())?
    };
    if !prefix.contains(&a) {
        return Err("is outside the network's prefix".into());
    }
    if a == prefix.network() {
        return Err("is the prefix's subnet-router anycast address (interface identifier 0)".into());
    }
    if !is_template && hub_ipv6(net) == Some(a) {
        return Err("is the hub's own IPv6 address".into());
    }
    let (lo, hi) = ipv6_pool(prefix);
    if !is_template && net.ipv6_mode.managed() && (lo..=hi).contains(&a) {
        return Err(format!("is inside the DHCPv6 pool {lo}-{hi}"));
    }
    Ok(if is_template {
        Ipv6Spec::Template(v.to_string())
    } else {
        Ipv6Spec::Addr(a)
    })
}

/// Checks that the files the nodes need exist: image, kernel, initrd, ssh_identity_file. Errors
/// name the node's table and field, e.g. `c.toml: [[node]] 1 (master): image /x/base.qcow2: no such file`.
/// Only this machine's nodes ([`Cluster::is_here`]): another machine's are looked for there.
pub fn check_files(c: &Cluster) -> Result<(), ClusterError> {
    let f = c.file.display();
    let mut errs = vec![];
    let mut seen = HashSet::new();
    for n in c.nodes.iter().filter(|n| c.is_here(n)) {
        for (field, p) in [
            ("image", &n.image),
            ("kernel", &n.kernel),
            ("initrd", &n.initrd),
            ("ssh_identity_file", &n.ssh_identity_file),
        ] {
            if let Some(p) = p {
                if !p.is_file() && seen.insert(p.clone()) {
                    errs.push(format!(
                        "{f}: [[node]] {} ({}): {field} {}: no such file",
                        n.table,
                        n.name,
                        p.display()
                    ));
                }
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ClusterError(errs))
    }
}

/// Letters, digits, '-' and '_', 1 to 63 characters (a DNS label, a file name).
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 63 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// QEMU `-m`: a number of MiB, or with a suffix M or G.
fn valid_memory(s: &str) -> bool {
    let digits = s.strip_suffix(['M', 'G']).unwrap_or(s);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) && digits.parse::<u64>().is_ok_and(|v| v > 0)
}

/// qemu-img size: a number of bytes, or with a suffix K, M, G or T.
fn valid_disk_size(s: &str) -> bool {
    let digits = s.strip_suffix(['K', 'M', 'G', 'T']).unwrap_or(s);
    !digits.is_empty() && digits.parse::<u64>().is_ok_and(|v| v > 0)
}

/// A MAC derived from the cluster, node and NIC: `52:54:00` (QEMU's prefix) and
/// three bytes of the FNV-1a hash of `cluster/node/nic`. Stable across runs.
pub fn derive_mac(cluster: &str, node: &str, nic: usize) -> MacAddr {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in format!("{cluster}/{node}/{nic}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    let b = h.to_be_bytes();
    MacAddr([0x52, 0x54, 0x00, b[5], b[6], b[7]])
}

/// `mac` + `k`, carried over the low 24 bits (for `count`: the k-th node's MAC).
fn add_mac(m: MacAddr, k: u32) -> MacAddr {
    let o = m.0;
    let low = (u32::from(o[3]) << 16 | u32::from(o[4]) << 8 | u32::from(o[5])).wrapping_add(k) & 0xff_ffff;
    MacAddr([o[0], o[1], o[2], (low >> 16) as u8, (low >> 8) as u8, low as u8])
}

/// Substitutes `{name}`, `{mac}` (first segment NIC), `{slirp_mac}` and `{ssh_port}` in `append`.
fn substitute(s: &str, n: &Node) -> String {
    s.replace("{name}", &n.name)
        .replace("{mac}", &n.nics.first().map(|m| m.mac.to_string()).unwrap_or_default())
        .replace("{slirp_mac}", &n.slirp_mac.to_string())
        .replace("{ssh_port}", &n.ssh_port.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const YOMI: &str = r#"
[cluster]
name = "yomi"
[network]
subnet = "10.0.3.0/24"
address = "10.0.3.1"
domain = "cluster"
transport = "mcast"
mcast = "230.0.0.1:1234"
dhcp_range = "10.0.3.100,10.0.3.200"
dns_listen = "127.0.0.1:5353"
[defaults]
memory = "2G"
cpus = 2
accel = "kvm:tcg"
image = "base.qcow2"
clone = "overlay"
ssh_port_base = 10022
[[node]]
name = "master"
mac = "00:00:00:11:11:11"
ip = "10.0.3.101"
[[node]]
name = "worker"
count = 2
"#;

    fn p(text: &str) -> Result<Cluster, ClusterError> {
        parse(Path::new("/d/cluster.toml"), text)
    }

    fn err(text: &str) -> String {
        p(text).unwrap_err().to_string()
    }

    #[test]
    fn the_issue_example_expands() {
        let c = p(YOMI).unwrap();
        assert_eq!(c.name, "yomi");
        let names: Vec<_> = c.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["master", "worker1", "worker2"]);
        assert_eq!(c.nodes[0].nics[0].mac.to_string(), "00:00:00:11:11:11");
        assert_eq!(c.nodes[0].nics[0].ip, Some("10.0.3.101".parse().unwrap()));
        assert_eq!(c.nodes[1].nics[0].ip, None);
        let ports: Vec<_> = c.nodes.iter().map(|n| n.ssh_port).collect();
        assert_eq!(ports, [10022, 10023, 10024]);
        assert_eq!(c.nodes[1].image.as_deref(), Some(Path::new("/d/base.qcow2")));
        assert_eq!(c.nodes[1].accel, ["kvm", "tcg"]);
        assert_eq!(c.nodes[2].memory, "2G");
        assert_eq!(c.networks[0].name, "lan");
        assert_eq!(
            c.networks[0].transport,
            Transport::Mcast("230.0.0.1:1234".parse().unwrap())
        );
        let w1 = c.nodes[1].nics[0].mac.octets();
        assert_eq!(w1[..3], [0x52, 0x54, 0x00]);
        assert_ne!(c.nodes[1].nics[0].mac, c.nodes[2].nics[0].mac);
        // Stable: the same file gives the same MACs.
        assert_eq!(p(YOMI).unwrap().nodes[2].nics[0].mac, c.nodes[2].nics[0].mac);
    }

    #[test]
    fn identity_file_relative_or_under_home() {
        let c = p(&YOMI.replace("[defaults]\n", "[defaults]\nssh_identity_file = \"keys/k\"\n")).unwrap();
        assert_eq!(c.nodes[0].ssh_identity_file.as_deref(), Some(Path::new("/d/keys/k")));
        let c = p(&YOMI.replace("[defaults]\n", "[defaults]\nssh_identity_file = \"~/.ssh/k\"\n")).unwrap();
        let home = PathBuf::from(std::env::var_os("HOME").unwrap());
        assert_eq!(c.nodes[2].ssh_identity_file, Some(home.join(".ssh/k")));
    }

    #[test]
    fn ip_outside_the_subnet_names_file_table_and_field() {
        let text = YOMI.replace("count = 2", "count = 2\nip = \"10.0.4.5\"");
        assert_eq!(
            err(&text),
            "/d/cluster.toml: [[node]] 2 (worker): ip 10.0.4.5 is outside [network] subnet 10.0.3.0/24"
        );
    }

    #[test]
    fn count_with_ip_and_mac_counts_up() {
        let text = YOMI.replace(
            "count = 2",
            "count = 2\nip = \"10.0.3.102\"\nmac = \"00:00:00:22:22:22\"",
        );
        let c = p(&text).unwrap();
        assert_eq!(c.nodes[2].nics[0].ip, Some("10.0.3.103".parse().unwrap()));
        assert_eq!(c.nodes[2].nics[0].mac.to_string(), "00:00:00:22:22:23");
    }

    #[test]
    fn duplicates_are_refused() {
        let text = YOMI.replace(
            "count = 2",
            "count = 2\nip = \"10.0.3.100\"\nmac = \"00:00:00:11:11:10\"",
        );
        let e = err(&text);
        assert!(
            e.contains("[[node]] 2 (worker2): mac 00:00:00:11:11:11 is also node master's"),
            "{e}"
        );
        assert!(
            e.contains("[[node]] 2 (worker2): ip 10.0.3.101 is also node master's"),
            "{e}"
        );
        let e = err(&YOMI.replace("count = 2", "ssh_port = 10022"));
        assert!(
            e.contains("[[node]] 2 (worker): ssh port 10022 is also node master's"),
            "{e}"
        );
        let e = err(&YOMI.replace("name = \"worker\"\ncount = 2", "name = \"master\""));
        assert!(e.contains("name master is also [[node]] 1 (master)'s"), "{e}");
        let e = err(&YOMI.replace("ip = \"10.0.3.101\"", "ip = \"10.0.3.1\""));
        assert!(e.contains("ip 10.0.3.1 is the hub's address"), "{e}");
    }

    #[test]
    fn bad_values_name_their_field() {
        for (from, to, want) in [
            ("memory = \"2G\"", "memory = \"2 GB\"", "[defaults]: memory"),
            ("memory = \"2G\"", "memory = \"2 GB\"", "memory \"2 GB\" is not a size"),
            ("cpus = 2", "cpus = 0", "cpus 0 must be between"),
            ("accel = \"kvm:tcg\"", "accel = \"kvm:fast\"", "accel \"kvm:fast\""),
            ("clone = \"overlay\"", "clone = \"copy\"", "clone \"copy\" must be"),
            (
                "subnet = \"10.0.3.0/24\"",
                "subnet = \"10.0.3/24\"",
                "[network]: subnet \"10.0.3/24\"",
            ),
            (
                "address = \"10.0.3.1\"",
                "address = \"10.0.9.1\"",
                "[network]: address 10.0.9.1 is outside",
            ),
            (
                "mcast = \"230.0.0.1:1234\"",
                "mcast = \"10.0.0.1:1234\"",
                "[network]: mcast \"10.0.0.1:1234\"",
            ),
            (
                "transport = \"mcast\"",
                "transport = \"tcp\"",
                "[network]: transport \"tcp\"",
            ),
            (
                "dhcp_range = \"10.0.3.100,10.0.3.200\"",
                "dhcp_range = \"10.0.3.200,10.0.3.100\"",
                "start is after",
            ),
            (
                "dhcp_range = \"10.0.3.100,10.0.3.200\"",
                "dhcp_range = \"10.0.3.100\"",
                "dhcp_range \"10.0.3.100\"",
            ),
            (
                "mac = \"00:00:00:11:11:11\"",
                "mac = \"00:00:00:11:11\"",
                "(master): mac \"00:00:00:11:11\"",
            ),
            (
                "mac = \"00:00:00:11:11:11\"",
                "mac = \"01:00:00:11:11:11\"",
                "multicast",
            ),
            ("count = 2", "count = 0", "(worker): count must be at least 1"),
            ("count = 2", "count = 2\nbogus = 1", "unknown field `bogus`"),
            (
                "ssh_port_base = 10022",
                "ssh_port_base = 65535",
                "ssh_port 65536 (for worker1)",
            ),
            (
                "[cluster]\nname = \"yomi\"",
                "[cluster]\nname = \"a b\"",
                "[cluster]: name \"a b\"",
            ),
            ("[cluster]\nname = \"yomi\"", "[cluster]", "[cluster]: name is missing"),
            (
                "count = 2",
                "count = 2\nnetworks = [\"back\"]",
                "networks \"back\" is not a [[network]] name",
            ),
            ("cpus = 2", "cpus = 2\nname = \"x\"", "[defaults]: name is per node"),
            ("image = \"base.qcow2\"", "", "image is missing (nor is there a kernel)"),
        ] {
            assert!(YOMI.contains(from), "{from}");
            let e = err(&YOMI.replace(from, to));
            assert!(e.starts_with("/d/cluster.toml: "), "{e}");
            assert!(e.contains(want), "{to}: want {want:?} in {e}");
        }
        assert!(err("[cluster]\nname = \"x\"\n[[node]]\nname = \"a\"\nimage = \"i\"").contains("[network] is missing"));
        assert!(err("not toml [").starts_with("/d/cluster.toml: "));
    }

    const DUAL: &str = r#"
[cluster]
name = "d"
[network]
subnet = "192.168.1.0/24"
address = "192.168.1.1"
dhcp_range = "192.168.1.100,192.168.1.200"
ipv6 = "1000::/64"
ipv6_alias = true
[defaults]
kernel = "/k"
[[node]]
name = "vm"
count = 2
ip = "192.168.1.3"
ipv6 = "1000::1:{ipv4}"
[[node]]
name = "fixed"
ipv6 = "1000::5"
[[node]]
name = "auto"
"#;

    #[test]
    fn ipv6_templates_addresses_and_derived() {
        let c = p(DUAL).unwrap();
        let n = &c.networks[0];
        assert_eq!(n.ipv6, Some("1000::/64".parse().unwrap()));
        assert_eq!(n.ipv6_mode, Ipv6Mode::Slaac);
        assert!(n.ipv6_alias);
        // {ipv4} with a file ip: resolved at once, one per count.
        let v6 = |i: usize| c.nodes[i].nics[0].ipv6;
        assert_eq!(v6(0), Some("1000::1:192.168.1.3".parse().unwrap()));
        assert_eq!(v6(1), Some("1000::1:192.168.1.4".parse().unwrap()));
        assert_eq!(v6(1).unwrap().to_string(), "1000::1:c0a8:104");
        assert!(c.nodes[0].nics[0].ipv6_from_file);
        assert_eq!(v6(2), Some("1000::5".parse().unwrap()));
        // No ipv6: derived later (addresses::assign), from the MAC.
        assert_eq!(v6(3), None);
        assert!(!c.nodes[3].nics[0].ipv6_from_file);
        // A literal address with count counts up.
        let c = p(&DUAL.replace("1000::1:{ipv4}", "1000::a")).unwrap();
        assert_eq!(c.nodes[1].nics[0].ipv6, Some("1000::b".parse().unwrap()));
        // A template with a pool IPv4 waits for the address.
        let c = p(&DUAL.replace("ip = \"192.168.1.3\"\n", "")).unwrap();
        assert_eq!(c.nodes[0].nics[0].ipv6, None);
        assert_eq!(c.nodes[0].nics[0].ipv6_template.as_deref(), Some("1000::1:{ipv4}"));
        // [defaults] may hold the template; the mode words are dnsmasq's.
        let c = p(&DUAL
            .replace("[defaults]\n", "[defaults]\nipv6 = \"1000::2:{ipv4}\"\n")
            .replace("ipv6_alias = true", "ipv6_mode = \"ra-only\""))
        .unwrap();
        assert_eq!(c.networks[0].ipv6_mode, Ipv6Mode::RaOnly);
        assert_eq!(c.nodes[3].nics[0].ipv6_template.as_deref(), Some("1000::2:{ipv4}"));
        assert_eq!(
            eui64_in("1000::/64".parse().unwrap(), "52:54:00:12:34:56".parse().unwrap()),
            "1000::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            hub_ipv6(&c.networks[0]),
            Some("1000::76:6dff:fea8:101".parse().unwrap())
        );
    }

    #[test]
    fn ipv6_errors_name_file_table_and_field() {
        for (from, to, want) in [
            (
                "ipv6 = \"1000::/64\"",
                "ipv6 = \"1000::/48\"",
                "/d/cluster.toml: [network]: ipv6 \"1000::/48\" must be a /64 prefix",
            ),
            (
                "ipv6 = \"1000::/64\"",
                "ipv6 = \"1000::/x\"",
                "/d/cluster.toml: [network]: ipv6 \"1000::/x\" is not an IPv6 prefix",
            ),
            (
                "ipv6 = \"1000::/64\"",
                "ipv6 = \"fe80::/64\"",
                "[network]: ipv6 \"fe80::/64\" is not a unicast prefix",
            ),
            (
                "ipv6_alias = true",
                "ipv6_mode = \"dhcp\"",
                "[network]: ipv6_mode \"dhcp\" must be \"stateful\", \"slaac\"",
            ),
            (
                "ipv6 = \"1000::/64\"\nipv6_alias = true",
                "",
                "/d/cluster.toml: [[node]] 1 (vm): ipv6 is set but [network] has no ipv6 prefix",
            ),
            (
                "ipv6 = \"1000::/64\"\n",
                "",
                "[network]: ipv6_alias is set without ipv6",
            ),
            (
                "1000::1:{ipv4}",
                "2000::1:{ipv4}",
                "/d/cluster.toml: [[node]] 1 (vm): ipv6 \"2000::1:{ipv4}\" is outside the network's prefix ([network] ipv6 1000::/64)",
            ),
            (
                "1000::1:{ipv4}",
                "{ipv4}::1",
                "[[node]] 1 (vm): ipv6 \"{ipv4}::1\" is not an IPv6 address with {ipv4} in its last 32 bits",
            ),
            (
                "1000::1:{ipv4}",
                "1000::{name}",
                "ipv6 \"1000::{name}\" has a placeholder other than {ipv4}",
            ),
            (
                "ipv6 = \"1000::5\"",
                "ipv6 = \"1000::1005\"",
                "[[node]] 2 (fixed): ipv6 \"1000::1005\" is inside the DHCPv6 pool 1000::1000-1000::1fff",
            ),
            (
                "ipv6 = \"1000::5\"",
                "ipv6 = \"1000::76:6dff:fea8:101\"",
                "is the hub's own IPv6 address",
            ),
            ("ipv6 = \"1000::5\"", "ipv6 = \"1000::\"", "subnet-router anycast"),
            ("ipv6 = \"1000::5\"", "ipv6 = \"10.0.0.1\"", "is not an IPv6 address"),
        ] {
            assert!(DUAL.contains(from), "{from}");
            let e = err(&DUAL.replace(from, to));
            assert!(e.contains(want), "{to}: want {want:?} in {e}");
        }
        // The pool only matters where the mode hands out DHCPv6 addresses.
        assert!(p(&DUAL
            .replace("ipv6 = \"1000::5\"", "ipv6 = \"1000::1005\"")
            .replace("ipv6_alias = true", "ipv6_mode = \"ra-only\""))
        .is_ok());
        let long = "n".repeat(60);
        let e = err(&DUAL.replace("name = \"auto\"", &format!("name = \"{long}\"")));
        assert!(e.contains("is too long for its ipv6_alias"), "{e}");
    }

    #[test]
    fn transport_vhost_user() {
        let text = YOMI.replace(
            "transport = \"mcast\"\nmcast = \"230.0.0.1:1234\"",
            "transport = \"vhost-user\"",
        );
        let c = p(&text).unwrap();
        assert_eq!(c.networks[0].transport, Transport::VhostUser);
        assert_eq!(
            err(&YOMI.replace("transport = \"mcast\"", "transport = \"vhost_user\"")),
            "/d/cluster.toml: [network]: transport \"vhost_user\" must be \"stream\", \"mcast\" or \"vhost-user\""
        );
        assert_eq!(
            err(&YOMI.replace("transport = \"mcast\"", "transport = \"vhost-user\"")),
            "/d/cluster.toml: [network]: mcast is set but transport is \"vhost-user\""
        );
    }

    #[test]
    fn several_networks_with_a_router_node() {
        let text = r#"
[cluster]
name = "lab"
[[network]]
name = "front"
subnet = "10.0.3.0/24"
address = "10.0.3.1"
router = "10.0.3.254"
[[network]]
name = "back"
subnet = "10.0.4.0/24"
address = "10.0.4.1"
transport = "mcast"
mcast = "230.0.0.2:1234"
[defaults]
kernel = "/k/vmlinuz"
append = "console=ttyS0 host={name} mac={mac}"
[[node]]
name = "router"
networks = ["front", "back"]
ip = { front = "10.0.3.254", back = "10.0.4.254" }
[[node]]
name = "app"
networks = ["back"]
"#;
        let c = p(text).unwrap();
        assert_eq!(c.networks.len(), 2);
        let r = c.node("router").unwrap();
        assert_eq!(r.nics.len(), 2);
        assert_eq!(r.nics[1].network, 1);
        assert_eq!(r.nics[1].ip, Some("10.0.4.254".parse().unwrap()));
        assert_ne!(r.nics[0].mac, r.nics[1].mac);
        let app = c.node("app").unwrap();
        assert_eq!(app.nics[0].network, 1);
        assert_eq!(
            app.append.as_deref(),
            Some(&*format!("console=ttyS0 host=app mac={}", app.nics[0].mac))
        );
        let e = err(&text.replace("name = \"back\"", "name = \"front\""));
        assert!(e.contains("[[network]] 2 (front): name is used twice"), "{e}");
        let e = err(&text.replace("back = \"10.0.4.254\"", "back = \"10.0.3.9\""));
        assert!(
            e.contains("[[node]] 1 (router): ip 10.0.3.9 is outside [[network]] back subnet 10.0.4.0/24"),
            "{e}"
        );
        let e = err(&text.replace("230.0.0.2", "230.0.0.1").replace(
            "name = \"front\"\nsubnet = \"10.0.3.0/24\"",
            "name = \"front\"\ntransport = \"mcast\"\nmcast = \"230.0.0.1:1234\"\nsubnet = \"10.0.3.0/24\"",
        ));
        assert!(e.contains("would be one segment"), "{e}");
    }
}
