//! The `vmlan hub` command line for one network of a cluster (a pure function
//! returning argv): the segment's transport (its stream socket, its multicast
//! group, or one vhost-user socket per node NIC, which the hub dials), address,
//! pool, one `--dhcp-host` reservation per node NIC on it (so every node's name
//! resolves), domain, DNS listener and lease file in the state directory. Flags
//! are the hub's own, which follow dnsmasq(8) (`--dhcp-range`, `--dhcp-host`,
//! `--dhcp-option`, `--no-resolv`).

use std::path::Path;

use crate::cluster::{Cluster, Ipv6Mode, Transport};
use crate::state::StateDir;

/// `EXE hub ...` for network number `net` of `c`; `exe` is the vmlan binary
/// (`std::env::current_exe()`), so the hub is the same executable.
///
/// Transport: `--stream unix:STATE/hub-NET.sock` (the hub listens), `--mcast
/// GROUP:PORT`, or for a vhost-user network one `--vhost-user-connect
/// STATE/NODE.NET.vhost` per node NIC on it, in node order: QEMU listens there and
/// the hub dials, again with backoff whenever the socket is absent or drops, so a
/// restarted hub gets its guests back (Open vSwitch's `dpdkvhostuserclient` way).
///
/// Reservations: `MAC,IP,NAME` for a node NIC with an `ip` (every NIC has one
/// once [`crate::addresses::assign`] ran), `MAC,NAME` for one without (a pool
/// address, but the node's name as hostname and DNS name). The default route:
/// a network's `router` becomes `--dhcp-option option:router,IP`; without one
/// the hub sends no router at all (`--dhcp-option 3`, dnsmasq's way to drop an
/// option), so the nodes keep their way out through SLIRP (see [`crate::seed`]).
/// A dual-stack network (`ipv6`) adds an IPv6 `--dhcp-range` ([`ipv6_range`])
/// and `--enable-ra`, each reservation becomes `MAC,IP,[IPv6],NAME` with the
/// NIC's IPv6 address (published as AAAA and ip6.arpa PTR, and leased to the
/// NIC over DHCPv6), and with `ipv6_alias` each node NIC also gets
/// `--host-record NAME,ip6-NAME,IPv6` (AAAA for both; the node's name first, so
/// the address's PTR stays NAME). The hub's RAs carry no default route (router
/// lifetime 0) unless the network's `router` is the hub's own address.
/// A node with `ssh_via = "hub"` whose first NIC is on this network gets
/// `--expose tcp:127.0.0.1:SSH_PORT=IP:22` (its ssh port, without a SLIRP NIC).
/// The network's `hub_args` come last.
///
/// A network with `vxlan` also gets `--vxlan` (see [`vxlan_arg`]); on a machine
/// that is not its authority ([`Cluster::is_authority`]) the hub is a pure
/// switch, `--no-host`, with none of the host's flags (address, pool,
/// reservations, domain, DNS listener). Only this machine's nodes
/// ([`Cluster::is_here`]) get vhost-user sockets; the authority's reservations
/// cover the nodes of every machine, so names resolve across.
pub fn hub_argv(exe: &Path, c: &Cluster, net: usize, sd: &StateDir) -> Vec<String> {
    let n = &c.networks[net];
    let mut a: Vec<String> = vec![exe.display().to_string(), "hub".into()];
    match n.transport {
        Transport::Stream => a.extend(["--stream".into(), format!("unix:{}", sd.hub_socket(&n.name).display())]),
        Transport::Mcast(g) => a.extend(["--mcast".into(), g.to_string()]),
        Transport::VhostUser => {
            for node in c.nodes.iter().filter(|n| c.is_here(n)) {
                if node.nics.iter().any(|nic| nic.network == net) {
                    let p = sd.vhost_socket(&node.name, &n.name);
                    a.extend(["--vhost-user-connect".into(), p.display().to_string()]);
                }
            }
        }
    }
    if let Some(v) = vxlan_arg(c, net) {
        a.extend(["--vxlan".into(), v]);
    }
    if !c.is_authority(net) {
        a.push("--no-host".into());
        a.extend(["--leasefile".into(), sd.leases(&n.name).display().to_string()]);
        a.extend(["--api".into(), format!("unix:{}", sd.hub_api(&n.name).display())]);
        a.extend(n.hub_args.iter().cloned());
        return a;
    }
    a.extend(["--addr".into(), format!("{}/{}", n.address, n.subnet.prefix_len())]);
    if let Some((lo, hi)) = n.dhcp_range {
        a.extend(["--dhcp-range".into(), format!("{lo},{hi}")]);
    }
    if let Some(p) = n.ipv6 {
        a.extend(["--dhcp-range".into(), ipv6_range(p, n.ipv6_mode), "--enable-ra".into()]);
    }
    match n.router {
        Some(r) => a.extend(["--dhcp-option".into(), format!("option:router,{r}")]),
        None => a.extend(["--dhcp-option".into(), "3".into()]),
    }
    for node in &c.nodes {
        for nic in node.nics.iter().filter(|nic| nic.network == net) {
            let mut v = nic.mac.to_string();
            if let Some(ip) = nic.ip {
                v += &format!(",{ip}");
            }
            if let Some(ip6) = nic.ipv6 {
                v += &format!(",[{ip6}]");
            }
            v += &format!(",{}", node.name);
            a.extend(["--dhcp-host".into(), v]);
        }
    }
    // ssh_via = "hub": the node's ssh port, forwarded by this hub to its first NIC.
    for node in c.nodes.iter().filter(|n| n.ssh_via_hub) {
        if let Some(ip) = node
            .nics
            .first()
            .filter(|nic| nic.network == net)
            .and_then(|nic| nic.ip)
        {
            a.extend(["--expose".into(), format!("tcp:127.0.0.1:{}={ip}:22", node.ssh_port)]);
        }
    }
    if n.ipv6_alias {
        for node in &c.nodes {
            for nic in node.nics.iter().filter(|nic| nic.network == net) {
                if let Some(ip6) = nic.ipv6 {
                    // NAME first: the address's PTR names the node, as without the alias.
                    a.extend(["--host-record".into(), format!("{},ip6-{},{ip6}", node.name, node.name)]);
                }
            }
        }
    }
    if let Some(d) = &n.domain {
        a.extend(["--domain".into(), d.clone()]);
    }
    if let Some(l) = n.dns_listen {
        a.extend(["--dns-listen".into(), l.to_string()]);
    }
    if n.no_resolv {
        a.push("--no-resolv".into());
    }
    a.extend(["--leasefile".into(), sd.leases(&n.name).display().to_string()]);
    a.extend(["--api".into(), format!("unix:{}", sd.hub_api(&n.name).display())]);
    a.extend(["--api-state".into(), sd.hub_api_state(&n.name).display().to_string()]);
    a.extend(n.hub_args.iter().cloned());
    a
}

/// The `--vxlan` value of network `net`, if it has a `vxlan` table:
/// `vni=N,local=ADDR:PORT,peer=ADDR...,port=P[,mtu=M]`. With `[[host]]`
/// tables `local` is this machine's address and the peers are every other
/// machine's; else the file's `local` and `peers`. `local`'s port is the file's
/// `local` port, else `port` (default 4789).
pub fn vxlan_arg(c: &Cluster, net: usize) -> Option<String> {
    let v = c.networks[net].vxlan.as_ref()?;
    // The hub listens on local's port, 4789 when it has none: give it `port`,
    // so a file's `port = 8472` is both listened on and sent to.
    let local = match v.local {
        Some((ip, Some(port))) => format!("{ip}:{port}"),
        Some((ip, None)) => format!("{ip}:{}", v.port),
        None => c
            .hosts
            .iter()
            .find(|h| Some(&h.name) == c.here.as_ref())
            .map(|h| format!("{}:{}", h.address, v.port))
            .unwrap_or_default(),
    };
    let peers: Vec<std::net::Ipv4Addr> = if c.hosts.is_empty() {
        v.peers.clone()
    } else {
        c.hosts
            .iter()
            .filter(|h| Some(&h.name) != c.here.as_ref())
            .map(|h| h.address)
            .collect()
    };
    let mut s = format!("vni={},local={local}", v.vni);
    for p in peers {
        s += &format!(",peer={p}");
    }
    s += &format!(",port={}", v.port);
    if let Some(m) = v.mtu {
        s += &format!(",mtu={m}");
    }
    Some(s)
}

/// The hub's IPv6 `--dhcp-range` for a dual-stack network with `prefix` (a /64)
/// in `mode`, dnsmasq's syntax: the pool [`crate::cluster::ipv6_pool`] with the
/// mode's keyword (none for stateful) when the mode hands out DHCPv6 addresses,
/// else the prefix and the keyword (`fd00:10::,ra-only,64`).
pub fn ipv6_range(prefix: ipnet::Ipv6Net, mode: Ipv6Mode) -> String {
    if mode.managed() {
        let (lo, hi) = crate::cluster::ipv6_pool(prefix);
        match mode {
            Ipv6Mode::Stateful => format!("{lo},{hi},64"),
            _ => format!("{lo},{hi},{},64", mode.word()),
        }
    } else {
        format!("{},{},64", prefix.network(), mode.word())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn reservations_from_the_nodes() {
        let text = r#"
[cluster]
name = "yomi"
[network]
subnet = "10.0.3.0/24"
address = "10.0.3.1"
router = "10.0.3.101"
domain = "cluster"
transport = "mcast"
mcast = "230.0.0.1:1234"
dhcp_range = "10.0.3.100,10.0.3.200"
dns_listen = "127.0.0.1:5353"
no_resolv = true
hub_args = ["--stats", "60"]
[defaults]
image = "b.qcow2"
[[node]]
name = "master"
mac = "00:00:00:11:11:11"
ip = "10.0.3.101"
[[node]]
name = "worker"
count = 2
"#;
        let c = crate::cluster::parse(Path::new("/c/y.toml"), text).unwrap();
        let sd = StateDir {
            root: PathBuf::from("/s"),
        };
        let a = hub_argv(Path::new("/bin/vmlan"), &c, 0, &sd);
        let w1 = c.nodes[1].nics[0].mac;
        let w2 = c.nodes[2].nics[0].mac;
        let want: Vec<String> = [
            "/bin/vmlan",
            "hub",
            "--mcast",
            "230.0.0.1:1234",
            "--addr",
            "10.0.3.1/24",
            "--dhcp-range",
            "10.0.3.100,10.0.3.200",
            "--dhcp-option",
            "option:router,10.0.3.101",
            "--dhcp-host",
            "00:00:00:11:11:11,10.0.3.101,master",
            "--dhcp-host",
            &format!("{w1},worker1"),
            "--dhcp-host",
            &format!("{w2},worker2"),
            "--domain",
            "cluster",
            "--dns-listen",
            "127.0.0.1:5353",
            "--no-resolv",
            "--leasefile",
            "/s/hub-lan.leases",
            "--api",
            "unix:/s/hub-lan.api",
            "--api-state",
            "/s/hub-lan.api-state",
            "--stats",
            "60",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        assert_eq!(a, want);
        let c = crate::cluster::parse(
            Path::new("/c/y.toml"),
            &text.replace("transport = \"mcast\"\nmcast = \"230.0.0.1:1234\"", ""),
        )
        .unwrap();
        let a = hub_argv(Path::new("/bin/vmlan"), &c, 0, &sd);
        assert_eq!(a[2..4], ["--stream", "unix:/s/hub-lan.sock"]);
        // Without `router` the hub is no default gateway: option 3 is dropped.
        let c = crate::cluster::parse(Path::new("/c/y.toml"), &text.replace("router = \"10.0.3.101\"\n", "")).unwrap();
        let a = hub_argv(Path::new("/bin/vmlan"), &c, 0, &sd);
        assert!(a.windows(2).any(|w| w == ["--dhcp-option", "3"]), "{a:?}");
        assert!(!a.iter().any(|w| w.starts_with("option:router")), "{a:?}");
    }

    /// `ssh_via = "hub"`: the hub forwards the node's ssh port to its first
    /// NIC (`--expose`), QEMU gets no SLIRP NIC, the seed configures none; a
    /// bad value and a node without a NIC are refused naming the key.
    #[test]
    fn ssh_via_hub_exposes_the_ssh_port() {
        let text = r#"
[cluster]
name = "x"
[network]
subnet = "10.0.3.0/24"
address = "10.0.3.1"
[defaults]
kernel = "/k"
cloud_init = { user = "u" }
[[node]]
name = "a"
ip = "10.0.3.5"
ssh_via = "hub"
[[node]]
name = "b"
ip = "10.0.3.6"
"#;
        let c = crate::cluster::parse(Path::new("/c/x.toml"), text).unwrap();
        let sd = StateDir {
            root: PathBuf::from("/s"),
        };
        let a = hub_argv(Path::new("/bin/vmlan"), &c, 0, &sd);
        let exposes: Vec<&[String]> = a.windows(2).filter(|w| w[0] == "--expose").collect();
        assert_eq!(exposes, [["--expose", "tcp:127.0.0.1:10022=10.0.3.5:22"]], "{a:?}");
        let q = crate::qemu::qemu_argv(&c, &c.nodes[0], &sd);
        assert!(!q.iter().any(|x| x.contains("slirp")), "{q:?}");
        let q = crate::qemu::qemu_argv(&c, &c.nodes[1], &sd);
        assert!(q.iter().any(|x| x.contains("hostfwd=tcp:127.0.0.1:10023-:22")), "{q:?}");
        let seed = crate::seed::seed_files(&c, &c.nodes[0]);
        let nc = &seed.iter().find(|f| f.0 == "network-config").unwrap().1;
        assert!(!nc.contains("slirp"), "{nc}");
        let e = crate::cluster::parse(
            Path::new("/c/x.toml"),
            &text.replace("ssh_via = \"hub\"", "ssh_via = \"tap\""),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("ssh_via") && e.contains("tap"), "{e}");
    }

    #[test]
    fn dual_stack_range_ra_reservations_and_aliases() {
        let text = r#"
[cluster]
name = "d"
[network]
subnet = "10.0.3.0/24"
address = "10.0.3.1"
ipv6 = "fd00:10::/64"
ipv6_alias = true
[defaults]
kernel = "/k"
[[node]]
name = "master"
mac = "00:00:00:11:11:11"
ip = "10.0.3.101"
ipv6 = "fd00:10::1:{ipv4}"
[[node]]
name = "worker"
mac = "52:54:00:00:00:01"
"#;
        let mut c = crate::cluster::parse(Path::new("/c/d.toml"), text).unwrap();
        crate::addresses::assign(&mut c, None).unwrap();
        let sd = StateDir {
            root: PathBuf::from("/s"),
        };
        let a = hub_argv(Path::new("/bin/vmlan"), &c, 0, &sd);
        let want: Vec<String> = [
            "/bin/vmlan",
            "hub",
            "--stream",
            "unix:/s/hub-lan.sock",
            "--addr",
            "10.0.3.1/24",
            "--dhcp-range",
            "fd00:10::1000,fd00:10::1fff,slaac,64",
            "--enable-ra",
            "--dhcp-option",
            "3",
            "--dhcp-host",
            "00:00:00:11:11:11,10.0.3.101,[fd00:10::1:a00:365],master",
            "--dhcp-host",
            "52:54:00:00:00:01,10.0.3.2,[fd00:10::5054:ff:fe00:1],worker",
            "--host-record",
            "master,ip6-master,fd00:10::1:a00:365",
            "--host-record",
            "worker,ip6-worker,fd00:10::5054:ff:fe00:1",
            "--leasefile",
            "/s/hub-lan.leases",
            "--api",
            "unix:/s/hub-lan.api",
            "--api-state",
            "/s/hub-lan.api-state",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        assert_eq!(a, want);
        // Every mode's range, in dnsmasq's words; each one the hub's parser takes.
        let p: ipnet::Ipv6Net = "fd00:10::/64".parse().unwrap();
        for (mode, want) in [
            (Ipv6Mode::Stateful, "fd00:10::1000,fd00:10::1fff,64"),
            (Ipv6Mode::Slaac, "fd00:10::1000,fd00:10::1fff,slaac,64"),
            (Ipv6Mode::RaStateless, "fd00:10::,ra-stateless,64"),
            (Ipv6Mode::RaOnly, "fd00:10::,ra-only,64"),
            (Ipv6Mode::RaNames, "fd00:10::,ra-names,64"),
        ] {
            let r = ipv6_range(p, mode);
            assert_eq!(r, want);
            let parsed = vmlan_host::ipv6::parse_dhcp_range6(&r).unwrap();
            assert_eq!(parsed.mode.managed(), mode.managed(), "{r}");
            assert_eq!(parsed.prefix(), p.network(), "{r}");
        }
    }

    #[test]
    fn vhost_user_dials_every_node_nic() {
        let text = r#"
[cluster]
name = "lab"
[[network]]
name = "front"
subnet = "10.0.3.0/24"
address = "10.0.3.1"
[[network]]
name = "back"
subnet = "10.0.4.0/24"
address = "10.0.4.1"
transport = "vhost-user"
dhcp_range = "10.0.4.100,10.0.4.200"
[defaults]
image = "b.qcow2"
[[node]]
name = "router"
networks = ["front", "back"]
ip = { front = "10.0.3.254", back = "10.0.4.254" }
[[node]]
name = "client"
[[node]]
name = "app"
count = 2
networks = ["back"]
"#;
        let c = crate::cluster::parse(Path::new("/c/lab.toml"), text).unwrap();
        let sd = StateDir {
            root: PathBuf::from("/s"),
        };
        let a = hub_argv(Path::new("/bin/vmlan"), &c, 1, &sd);
        let mac = |node: usize, nic: usize| c.nodes[node].nics[nic].mac;
        let want: Vec<String> = [
            "/bin/vmlan",
            "hub",
            "--vhost-user-connect",
            "/s/router.back.vhost",
            "--vhost-user-connect",
            "/s/app1.back.vhost",
            "--vhost-user-connect",
            "/s/app2.back.vhost",
            "--addr",
            "10.0.4.1/24",
            "--dhcp-range",
            "10.0.4.100,10.0.4.200",
            "--dhcp-option",
            "3",
            "--dhcp-host",
            &format!("{},10.0.4.254,router", mac(0, 1)),
            "--dhcp-host",
            &format!("{},app1", mac(2, 0)),
            "--dhcp-host",
            &format!("{},app2", mac(3, 0)),
            "--leasefile",
            "/s/hub-back.leases",
            "--api",
            "unix:/s/hub-back.api",
            "--api-state",
            "/s/hub-back.api-state",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        assert_eq!(a, want);
        // The stream network's hub is as before: its own socket, no vhost-user.
        let a = hub_argv(Path::new("/bin/vmlan"), &c, 0, &sd);
        assert_eq!(a[2..6], ["--stream", "unix:/s/hub-front.sock", "--addr", "10.0.3.1/24"]);
        assert!(!a.iter().any(|x| x.contains("vhost")), "{a:?}");
    }

    #[test]
    fn vxlan_authority_and_pure_switch() {
        let mut c = crate::cluster::parse(
            Path::new("/c/two.toml"),
            &crate::machines::tests::TWO.replace("vni = 42 }", "vni = 42, mtu = 1500 }\ntransport = \"vhost-user\""),
        )
        .unwrap();
        let sd = StateDir {
            root: PathBuf::from("/s"),
        };
        let (web, db) = (c.nodes[0].nics[0].mac, c.nodes[1].nics[0].mac);
        crate::cluster::select_host(&mut c, Some("a")).unwrap();
        let a = hub_argv(Path::new("/bin/vmlan"), &c, 0, &sd);
        let want: Vec<String> = [
            "/bin/vmlan",
            "hub",
            "--vhost-user-connect",
            "/s/web.lan.vhost",
            "--vxlan",
            "vni=42,local=10.99.0.1:4789,peer=10.99.0.2,port=4789,mtu=1500",
            "--addr",
            "10.0.3.1/24",
            "--dhcp-range",
            "10.0.3.100,10.0.3.200",
            "--dhcp-option",
            "3",
            "--dhcp-host",
            &format!("{web},10.0.3.10,web"),
            "--dhcp-host",
            &format!("{db},db"),
            "--domain",
            "cluster",
            "--leasefile",
            "/s/hub-lan.leases",
            "--api",
            "unix:/s/hub-lan.api",
            "--api-state",
            "/s/hub-lan.api-state",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        assert_eq!(a, want);
        // On b: a pure switch, its own node's socket, a as the peer.
        crate::cluster::select_host(&mut c, Some("b")).unwrap();
        let a = hub_argv(Path::new("/bin/vmlan"), &c, 0, &sd);
        let want: Vec<String> = [
            "/bin/vmlan",
            "hub",
            "--vhost-user-connect",
            "/s/db.lan.vhost",
            "--vxlan",
            "vni=42,local=10.99.0.2:4789,peer=10.99.0.1,port=4789,mtu=1500",
            "--no-host",
            "--leasefile",
            "/s/hub-lan.leases",
            "--api",
            "unix:/s/hub-lan.api",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        assert_eq!(a, want);
        // A file without [[host]]: its own local and peers.
        let c = crate::cluster::parse(
            Path::new("/c/y.toml"),
            "[cluster]\nname = \"y\"\n[network]\nsubnet = \"10.0.3.0/24\"\naddress = \"10.0.3.1\"\n\
             vxlan = { vni = 7, local = \"192.0.2.1:8472\", peers = [\"192.0.2.2\", \"192.0.2.3\"], port = 8472 }\n\
             [[node]]\nname = \"n\"\nkernel = \"/k\"\n",
        )
        .unwrap();
        assert_eq!(
            vxlan_arg(&c, 0).unwrap(),
            "vni=7,local=192.0.2.1:8472,peer=192.0.2.2,peer=192.0.2.3,port=8472"
        );
        let a = hub_argv(Path::new("/bin/vmlan"), &c, 0, &sd);
        assert!(!a.contains(&"--no-host".to_string()), "{a:?}");
    }
}
