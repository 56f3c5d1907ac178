//! A cluster on several machines (issue 14): the cluster file's `[[host]]`
//! tables (the machines and their underlay addresses), a network's `vxlan`
//! table (the VXLAN port, RFC 7348, that stretches its segment between the
//! machines' hubs) and `authority` (the one machine whose hub answers ARP, DHCP
//! and DNS on the stretched segment; the others run `vmlan hub --no-host`), each
//! node's `host`, and which machine this `vmlan up` runs on (`--host NAME`).
//!
//! Both machines use the same file: `vmlan up FILE --host a` on machine a starts
//! a's hubs and nodes; a's hub gets every node's reservation (on every machine)
//! when a is the authority, so names resolve across; b's nodes lease from a's
//! hub through the VXLAN link. Without `[[host]]` tables a `vxlan` table names
//! its `local` address and `peers` itself (a file per machine, or a peer that is
//! a kernel or Open vSwitch VTEP), and `authority = false` makes this machine's
//! hub a pure switch.

use std::net::Ipv4Addr;

use serde::Deserialize;

/// IANA's VXLAN UDP port (RFC 7348 section 5); Linux's own default is 8472.
pub const VXLAN_PORT: u16 = 4789;

/// `[[host]]`: one machine of the cluster.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HostTable {
    name: Option<String>,
    address: Option<String>,
}

/// A network's `vxlan = { ... }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VxlanTable {
    vni: Option<i64>,
    local: Option<String>,
    peers: Option<Vec<String>>,
    port: Option<i64>,
    mtu: Option<i64>,
}

/// A network's `authority`: a `[[host]]` name, or true/false without hosts.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum AuthorityValue {
    Here(bool),
    Host(String),
}

/// One machine (`[[host]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Its name (`vmlan up --host NAME`; by default the machine's hostname).
    pub name: String,
    /// Its underlay IPv4 address: its VXLAN `local` address, and where the
    /// other machines' hubs send to.
    pub address: Ipv4Addr,
}

/// A network's VXLAN port (the hub's `--vxlan`), as the file gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vxlan {
    /// The 24-bit VXLAN network identifier (RFC 7348 section 5).
    pub vni: u32,
    /// The UDP port sent to, and listened on unless `local` gives another (default 4789).
    pub port: u16,
    /// The hub's `mtu=` (the underlay MTU in bytes), if the file sets it.
    pub mtu: Option<u32>,
    /// `local` ADDR and optional :PORT as given; `None`: this machine's `[[host]]` address.
    pub local: Option<(Ipv4Addr, Option<u16>)>,
    /// `peers` as given; empty with `[[host]]` tables: the other machines' addresses.
    pub peers: Vec<Ipv4Addr>,
}

/// Which hub of a stretched segment answers ARP, DHCP and DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority {
    /// This machine's hub (`authority = true`, and every network without vxlan).
    Here,
    /// Not this machine's hub: it runs `--no-host` (`authority = false`).
    Elsewhere,
    /// The hub of the `[[host]]` of this name (default: the first `[[host]]`).
    Host(String),
}

/// Validates the `[[host]]` tables; `e(message)` gets each problem as
/// `[[host]] N (NAME): FIELD ...`.
pub(crate) fn hosts(tables: &[HostTable], e: &mut dyn FnMut(String)) -> Vec<Host> {
    let mut out: Vec<Host> = vec![];
    for (i, t) in tables.iter().enumerate() {
        let label = format!("[[host]] {} ({})", i + 1, t.name.as_deref().unwrap_or("?"));
        let name = match &t.name {
            Some(n) if crate::cluster::valid_name(n) => n.clone(),
            Some(n) => {
                e(format!("{label}: name {n:?} must be letters, digits, '-' or '_'"));
                continue;
            }
            None => {
                e(format!("{label}: name is missing"));
                continue;
            }
        };
        let address = match t.address.as_deref().map(str::parse::<Ipv4Addr>) {
            Some(Ok(a)) if !a.is_unspecified() && !a.is_multicast() && !a.is_broadcast() => a,
            Some(_) => {
                e(format!(
                    "{label}: address {:?} is not a unicast IPv4 address like 192.0.2.10",
                    t.address.as_deref().unwrap_or_default()
                ));
                continue;
            }
            None => {
                e(format!("{label}: address is missing (the machine's underlay address)"));
                continue;
            }
        };
        if let Some(o) = out.iter().find(|h| h.name == name) {
            e(format!("{label}: name is also {}'s", o.name));
        } else if let Some(o) = out.iter().find(|h| h.address == address) {
            e(format!("{label}: address {address} is also host {}'s", o.name));
        }
        out.push(Host { name, address });
    }
    out
}

/// Validates a network's `vxlan` and `authority` against `hosts`; `e(field,
/// message)` gets each problem. Returns the VXLAN port, if any, and the authority.
pub(crate) fn network(
    vxlan: Option<&VxlanTable>,
    authority: Option<&AuthorityValue>,
    hosts: &[Host],
    e: &mut dyn FnMut(&str, String),
) -> (Option<Vxlan>, Authority) {
    let authority = match (authority, vxlan.is_some(), hosts.is_empty()) {
        (Some(_), false, _) => {
            e("authority", "is set but the network has no vxlan".into());
            Authority::Here
        }
        (None, _, true) | (None, false, false) | (Some(AuthorityValue::Here(true)), _, true) => Authority::Here,
        (Some(AuthorityValue::Here(false)), _, true) => Authority::Elsewhere,
        (None, true, false) => Authority::Host(hosts[0].name.clone()),
        (Some(AuthorityValue::Host(h)), true, false) if hosts.iter().any(|x| &x.name == h) => {
            Authority::Host(h.clone())
        }
        (Some(AuthorityValue::Host(h)), true, false) => {
            e("authority", format!("{h:?} is not a [[host]] name"));
            Authority::Here
        }
        (Some(AuthorityValue::Host(h)), true, true) => {
            e(
                "authority",
                format!("{h:?} names a host, but there are no [[host]] tables (without them: true or false)"),
            );
            Authority::Here
        }
        (Some(AuthorityValue::Here(b)), true, false) => {
            e(
                "authority",
                format!("{b} must name the [[host]] whose hub answers DHCP and DNS, like \"a\""),
            );
            Authority::Here
        }
    };
    let Some(t) = vxlan else {
        return (None, authority);
    };
    let vni = match t.vni {
        Some(v) if (0..=0xff_ffff).contains(&v) => v as u32,
        Some(v) => {
            e("vxlan", format!("vni {v} must be between 0 and 16777215 (24 bits)"));
            0
        }
        None => {
            e("vxlan", "vni is missing".into());
            0
        }
    };
    let port = match t.port {
        None => VXLAN_PORT,
        Some(p) if (1..=65535).contains(&p) => p as u16,
        Some(p) => {
            e("vxlan", format!("port {p} is not a UDP port (1..=65535)"));
            VXLAN_PORT
        }
    };
    let mtu = match t.mtu {
        None => None,
        Some(m) if (576..=65535).contains(&m) => Some(m as u32),
        Some(m) => {
            e("vxlan", format!("mtu {m} must be between 576 and 65535"));
            None
        }
    };
    let local = match (&t.local, hosts.is_empty()) {
        (Some(_), false) => {
            e(
                "vxlan",
                "local is per machine: with [[host]] tables it is the host's address".into(),
            );
            None
        }
        (Some(l), true) => match parse_local(l) {
            Some(v) => Some(v),
            None => {
                e(
                    "vxlan",
                    format!("local {l:?} is not ADDR or ADDR:PORT like 192.0.2.10:4789"),
                );
                None
            }
        },
        (None, false) => None,
        (None, true) => {
            e(
                "vxlan",
                "local is missing (this machine's underlay address; or add [[host]] tables)".into(),
            );
            None
        }
    };
    let mut peers = vec![];
    match (&t.peers, hosts.is_empty()) {
        (Some(_), false) => e(
            "vxlan",
            "peers is per machine: with [[host]] tables they are the other hosts' addresses".into(),
        ),
        (Some(v), true) if v.is_empty() => e("vxlan", "peers is empty: name at least one VTEP".into()),
        (Some(v), true) => {
            for p in v {
                match p.parse::<Ipv4Addr>() {
                    Ok(a) if a.is_unspecified() || a.is_broadcast() || a.is_multicast() => {
                        e("vxlan", format!("peer {a} is not a unicast address"))
                    }
                    Ok(a) if peers.contains(&a) => e("vxlan", format!("peer {a} is named twice")),
                    Ok(a) if local.is_some_and(|l| l.0 == a) => e("vxlan", format!("peer {a} is local itself")),
                    Ok(a) => peers.push(a),
                    Err(_) => e("vxlan", format!("peer {p:?} is not an IPv4 address")),
                }
            }
        }
        (None, false) => {
            if hosts.len() < 2 {
                e(
                    "vxlan",
                    "needs a second [[host]] to peer with (or no [[host]] and local and peers)".into(),
                );
            }
        }
        (None, true) => e("vxlan", "peers is missing (the other VTEPs' addresses)".into()),
    }
    (
        Some(Vxlan {
            vni,
            port,
            mtu,
            local,
            peers,
        }),
        authority,
    )
}

/// `ADDR` or `ADDR:PORT` (IPv4).
fn parse_local(s: &str) -> Option<(Ipv4Addr, Option<u16>)> {
    if let Ok(a) = s.parse::<Ipv4Addr>() {
        return Some((a, None));
    }
    let a = s.parse::<std::net::SocketAddrV4>().ok()?;
    (a.port() != 0).then_some((*a.ip(), Some(a.port())))
}

/// The machine's hostname (`/proc/sys/kernel/hostname`), if readable.
pub fn hostname() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = h.trim();
    (!h.is_empty()).then(|| h.to_string())
}

/// Which `[[host]]` this run is for: `given` (`--host NAME`), else the
/// machine's hostname when a `[[host]]` has that name. Returns `None` for a file
/// without `[[host]]` tables (every node runs here). Errors (naming the file):
/// `--host` for a file without hosts, a name that is no `[[host]]`, or no
/// `--host` and a hostname that names none.
pub fn select(
    file: &str,
    hosts: &[Host],
    given: Option<&str>,
    hostname: Option<&str>,
) -> Result<Option<String>, String> {
    let names = || hosts.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ");
    match given {
        Some(g) if hosts.is_empty() => Err(format!(
            "--host {g}: {file} has no [[host]] tables: every node runs on this machine"
        )),
        Some(g) if hosts.iter().any(|h| h.name == g) => Ok(Some(g.to_string())),
        Some(g) => Err(format!(
            "--host {g}: {file} has no [[host]] of that name (its hosts: {})",
            names()
        )),
        None if hosts.is_empty() => Ok(None),
        None => match hostname.filter(|h| hosts.iter().any(|x| x.name == *h)) {
            Some(h) => Ok(Some(h.to_string())),
            None => Err(format!(
                "{file} spans machines ({}): say which one this is with --host NAME \
                 (this machine's hostname {:?} is none of them)",
                names(),
                hostname.unwrap_or("")
            )),
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn two() -> Vec<Host> {
        vec![
            Host {
                name: "a".into(),
                address: "10.99.0.1".parse().unwrap(),
            },
            Host {
                name: "b".into(),
                address: "10.99.0.2".parse().unwrap(),
            },
        ]
    }

    #[test]
    fn select_by_flag_or_hostname() {
        let h = two();
        assert_eq!(select("f", &h, Some("b"), Some("a")), Ok(Some("b".into())));
        assert_eq!(select("f", &h, None, Some("a")), Ok(Some("a".into())));
        assert_eq!(select("f", &[], None, Some("a")), Ok(None));
        let e = select("f", &h, None, Some("laptop")).unwrap_err();
        assert!(e.contains("spans machines (a, b)") && e.contains("\"laptop\""), "{e}");
        let e = select("f", &h, Some("c"), None).unwrap_err();
        assert_eq!(e, "--host c: f has no [[host]] of that name (its hosts: a, b)");
        let e = select("f", &[], Some("a"), None).unwrap_err();
        assert!(e.contains("has no [[host]] tables"), "{e}");
    }

    #[test]
    fn local_with_or_without_port() {
        assert_eq!(parse_local("10.0.0.1"), Some(("10.0.0.1".parse().unwrap(), None)));
        assert_eq!(
            parse_local("10.0.0.1:8472"),
            Some(("10.0.0.1".parse().unwrap(), Some(8472)))
        );
        assert_eq!(parse_local("10.0.0.1:0"), None);
        assert_eq!(parse_local("host:1"), None);
    }

    /// The two-machine file of the README (examples/two-machines.toml in short).
    pub(crate) const TWO: &str = r#"
[cluster]
name = "two"
[[host]]
name = "a"
address = "10.99.0.1"
[[host]]
name = "b"
address = "10.99.0.2"
[network]
subnet = "10.0.3.0/24"
address = "10.0.3.1"
domain = "cluster"
dhcp_range = "10.0.3.100,10.0.3.200"
vxlan = { vni = 42 }
[defaults]
kernel = "/k/vmlinuz"
[[node]]
name = "web"
host = "a"
ip = "10.0.3.10"
[[node]]
name = "db"
host = "b"
"#;

    fn parse(text: &str) -> Result<crate::cluster::Cluster, String> {
        crate::cluster::parse(std::path::Path::new("/d/two.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn hosts_vxlan_and_authority_parse() {
        let c = parse(TWO).unwrap();
        assert_eq!(c.hosts, two());
        let v = c.networks[0].vxlan.as_ref().unwrap();
        assert_eq!(
            (v.vni, v.port, v.mtu, v.local, v.peers.len()),
            (42, 4789, None, None, 0)
        );
        assert_eq!(c.networks[0].authority, Authority::Host("a".into()));
        assert_eq!(c.nodes[1].host.as_deref(), Some("b"));
        let c = parse(&TWO.replace("vni = 42 }", "vni = 42, port = 8472, mtu = 9000 }\nauthority = \"b\"")).unwrap();
        let v = c.networks[0].vxlan.as_ref().unwrap();
        assert_eq!((v.port, v.mtu), (8472, Some(9000)));
        assert_eq!(c.networks[0].authority, Authority::Host("b".into()));
        // Without hosts: local and peers in the file, authority true or false.
        let solo = TWO
            .replace("host = \"a\"\n", "")
            .replace("host = \"b\"\n", "")
            .replace("[[host]]\nname = \"a\"\naddress = \"10.99.0.1\"\n", "")
            .replace("[[host]]\nname = \"b\"\naddress = \"10.99.0.2\"\n", "")
            .replace(
                "vni = 42 }",
                "vni = 42, local = \"10.99.0.1:4790\", peers = [\"10.99.0.2\", \"10.99.0.3\"] }\nauthority = false",
            );
        let c = parse(&solo).unwrap();
        let v = c.networks[0].vxlan.as_ref().unwrap();
        assert_eq!(v.local, Some(("10.99.0.1".parse().unwrap(), Some(4790))));
        assert_eq!(v.peers.len(), 2);
        assert_eq!(c.networks[0].authority, Authority::Elsewhere);
        assert!(!c.is_authority(0));
    }

    #[test]
    fn bad_hosts_and_vxlan_name_their_table_and_field() {
        for (from, to, want) in [
            ("vni = 42 }", "port = 1 }", "[network]: vxlan vni is missing"),
            (
                "vni = 42 }",
                "vni = 16777216 }",
                "[network]: vxlan vni 16777216 must be between",
            ),
            ("vni = 42 }", "vni = 42, port = 0 }", "vxlan port 0 is not a UDP port"),
            ("vni = 42 }", "vni = 42, mtu = 100 }", "vxlan mtu 100 must be between"),
            // (serde's untagged `[network]`/`[[network]]` hides the key's name here)
            ("vni = 42 }", "vni = 42, bogus = 1 }", "[network]"),
            (
                "vni = 42 }",
                "vni = 42, local = \"10.99.0.1\" }",
                "vxlan local is per machine",
            ),
            (
                "vni = 42 }",
                "vni = 42, peers = [\"10.99.0.2\"] }",
                "vxlan peers is per machine",
            ),
            (
                "vni = 42 }",
                "vni = 42 }\nauthority = \"c\"",
                "[network]: authority \"c\" is not a [[host]] name",
            ),
            (
                "vni = 42 }",
                "vni = 42 }\nauthority = true",
                "[network]: authority true must name the [[host]]",
            ),
            (
                "vxlan = { vni = 42 }",
                "authority = \"a\"",
                "[network]: authority is set but the network has no vxlan",
            ),
            (
                "address = \"10.99.0.2\"",
                "address = \"10.99.0.1\"",
                "[[host]] 2 (b): address 10.99.0.1 is also host a's",
            ),
            (
                "address = \"10.99.0.2\"",
                "address = \"224.0.0.1\"",
                "[[host]] 2 (b): address \"224.0.0.1\" is not a unicast",
            ),
            ("address = \"10.99.0.2\"", "", "[[host]] 2 (b): address is missing"),
            (
                "name = \"b\"\naddress",
                "name = \"a\"\naddress",
                "[[host]] 2 (a): name is also a's",
            ),
            (
                "name = \"b\"\naddress",
                "name = \"b c\"\naddress",
                "[[host]] 2 (b c): name \"b c\" must be",
            ),
            (
                "host = \"b\"",
                "host = \"c\"",
                "[[node]] 2 (db): host \"c\" is not a [[host]] name",
            ),
            (
                "host = \"b\"\n",
                "",
                "[[node]] 2 (db): host is missing: with [[host]] tables",
            ),
            (
                "[[host]]\nname = \"b\"\naddress = \"10.99.0.2\"\n",
                "",
                "[network]: vxlan needs a second [[host]]",
            ),
        ] {
            assert!(TWO.contains(from), "{from}");
            let e = parse(&TWO.replace(from, to)).unwrap_err();
            assert!(e.starts_with("/d/two.toml: "), "{e}");
            assert!(e.contains(want), "{to}: want {want:?} in {e}");
        }
        let e = parse(
            &TWO.replace("[defaults]\n", "[defaults]\nhost = \"z\"\n")
                .replace("host = \"b\"\n", ""),
        )
        .unwrap_err();
        assert!(e.contains("[defaults]: host \"z\" is not a [[host]] name"), "{e}");
        // Without [[host]] tables.
        let solo = "[cluster]\nname = \"s\"\n[network]\nsubnet = \"10.0.3.0/24\"\naddress = \"10.0.3.1\"\n\
                    VX\n[[node]]\nname = \"n\"\nkernel = \"/k\"\n";
        for (vx, want) in [
            ("vxlan = { vni = 1, peers = [\"10.0.0.2\"] }", "vxlan local is missing"),
            ("vxlan = { vni = 1, local = \"10.0.0.1\" }", "vxlan peers is missing"),
            (
                "vxlan = { vni = 1, local = \"10.0.0.1\", peers = [] }",
                "vxlan peers is empty",
            ),
            (
                "vxlan = { vni = 1, local = \"x\", peers = [\"10.0.0.2\"] }",
                "vxlan local \"x\" is not ADDR",
            ),
            (
                "vxlan = { vni = 1, local = \"10.0.0.1\", peers = [\"y\"] }",
                "vxlan peer \"y\" is not an IPv4",
            ),
            (
                "vxlan = { vni = 1, local = \"10.0.0.1\", peers = [\"10.0.0.1\"] }",
                "vxlan peer 10.0.0.1 is local itself",
            ),
            (
                "vxlan = { vni = 1, local = \"10.0.0.1\", peers = [\"10.0.0.2\", \"10.0.0.2\"] }",
                "vxlan peer 10.0.0.2 is named twice",
            ),
            (
                "vxlan = { vni = 1, local = \"10.0.0.1\", peers = [\"10.0.0.2\"] }\nauthority = \"a\"",
                "authority \"a\" names a host, but there are no [[host]] tables",
            ),
            ("authority = false", "authority is set but the network has no vxlan"),
        ] {
            let e = parse(&solo.replace("VX", vx)).unwrap_err();
            assert!(e.contains(want), "{vx}: want {want:?} in {e}");
        }
        let e = parse(
            &solo
                .replace("VX", "")
                .replace("name = \"n\"", "name = \"n\"\nhost = \"a\""),
        )
        .unwrap_err();
        assert!(
            e.contains("[[node]] 1 (n): host \"a\" names a machine, but there are no [[host]] tables"),
            "{e}"
        );
    }

    #[test]
    fn here_and_authority_follow_the_selected_host() {
        let mut c = parse(TWO).unwrap();
        crate::cluster::select_host(&mut c, Some("a")).unwrap();
        assert!(c.is_authority(0));
        assert!(c.is_here(&c.nodes[0]) && !c.is_here(&c.nodes[1]));
        crate::cluster::select_host(&mut c, Some("b")).unwrap();
        assert!(!c.is_authority(0));
        assert!(!c.is_here(&c.nodes[0]) && c.is_here(&c.nodes[1]));
        // Files are looked for on the machine the node runs on only.
        let dir = std::env::temp_dir().join(format!("vmlan-machines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("k-b"), b"").unwrap();
        let text = TWO
            .replace("kernel = \"/k/vmlinuz\"\n", "")
            .replace("host = \"a\"", "host = \"a\"\nkernel = \"k-a\"")
            .replace("host = \"b\"", "host = \"b\"\nkernel = \"k-b\"");
        let mut c2 = crate::cluster::parse(&dir.join("two.toml"), &text).unwrap();
        crate::cluster::select_host(&mut c2, Some("b")).unwrap();
        crate::cluster::check_files(&c2).unwrap();
        crate::cluster::select_host(&mut c2, Some("a")).unwrap();
        let e = crate::cluster::check_files(&c2).unwrap_err().to_string();
        assert!(
            e.contains("[[node]] 1 (web): kernel ") && e.contains("k-a: no such file"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        let e = crate::cluster::select_host(&mut c, Some("c")).unwrap_err().to_string();
        assert_eq!(
            e,
            "--host c: /d/two.toml has no [[host]] of that name (its hosts: a, b)"
        );
    }
}
