//! Stable addresses: every node NIC gets a reservation, so a node has the same
//! address on every boot, reboot and `up`.
//!
//! A NIC whose `[[node]]` sets `ip` keeps it. Every other NIC gets one derived by
//! `vmlan up` and recorded in `state.json`:
//! 1. the address recorded for the same node, network and MAC by an earlier `up`,
//!    when it is still free (in the range, not the hub's, the router's or another
//!    node's);
//! 2. else the lowest free address of the network's `dhcp_range` (or, without
//!    one, of the subnet), nodes taken in file order.
//!
//! The hub then gets a `--dhcp-host MAC,IP,NAME` reservation per NIC (see
//! [`crate::hub`]), which it never gives to another client. Recorded addresses
//! go first, so adding or removing a node never moves the others. (The hub also
//! gives any client back the address it last had, as dnsmasq does; reservations
//! make that hold across a lost lease file too.)
//!
//! IPv6, on a network with an `ipv6` prefix: a NIC whose node sets `ipv6` gets
//! that address, or its template with `{ipv4}` replaced by the NIC's IPv4
//! address once that is known (`fd00::1:{ipv4}` gives `fd00::1:10.0.3.100`).
//! Every other NIC gets the modified EUI-64 address of its MAC in the prefix
//! (RFC 4291 appendix A): the address SLAAC (RFC 4862) makes the node's kernel
//! take by itself, so the name the hub publishes is the address the node uses,
//! whether it autoconfigures or asks DHCPv6 (its reservation carries the same
//! address). It follows the MAC, so it is as stable as the MAC, with nothing
//! to record.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{bail, Result};

use crate::cluster::Cluster;
use crate::state::State;

/// Gives every NIC of `c` without an `ip` a reservation, reusing what `previous`
/// (the last `state.json`, if any) recorded. Pure: nothing is read or written.
///
/// Errors: a network whose range (or subnet) has no free address left for a NIC;
/// the message names the file, the network, its `dhcp_range` and the node.
pub fn assign(c: &mut Cluster, previous: Option<&State>) -> Result<()> {
    for net in 0..c.networks.len() {
        let n = &c.networks[net];
        let (lo, hi) = match n.dhcp_range {
            Some(r) => (u32::from(r.0), u32::from(r.1)),
            None => (
                u32::from(n.subnet.network()) + 1,
                u32::from(n.subnet.broadcast()).saturating_sub(1),
            ),
        };
        let mut taken: HashSet<Ipv4Addr> = [Some(n.address), n.router].into_iter().flatten().collect();
        for node in &c.nodes {
            taken.extend(node.nics.iter().filter(|x| x.network == net).filter_map(|x| x.ip));
        }
        let usable = |ip: Ipv4Addr, taken: &HashSet<Ipv4Addr>| {
            (lo..=hi).contains(&u32::from(ip)) && n.subnet.contains(&ip) && !taken.contains(&ip)
        };
        // Pass 1: what an earlier `up` recorded for this node, network and MAC.
        let mut wanted: Vec<(usize, usize)> = vec![];
        let mut chosen: Vec<(usize, usize, Ipv4Addr)> = vec![];
        for (i, node) in c.nodes.iter().enumerate() {
            for (k, nic) in node.nics.iter().enumerate() {
                if nic.network != net || nic.ip.is_some() {
                    continue;
                }
                let recorded = previous
                    .and_then(|p| p.nodes.iter().find(|s| s.name == node.name))
                    .and_then(|s| {
                        s.nics
                            .iter()
                            .find(|r| r.network == n.name && r.mac == nic.mac.to_string())
                    })
                    .and_then(|r| r.ip.as_deref()?.parse::<Ipv4Addr>().ok())
                    .filter(|ip| usable(*ip, &taken));
                match recorded {
                    Some(ip) => {
                        taken.insert(ip);
                        chosen.push((i, k, ip));
                    }
                    None => wanted.push((i, k)),
                }
            }
        }
        // Pass 2: the lowest free address, in file order.
        let mut next = lo;
        for (i, k) in wanted {
            while next <= hi && !usable(Ipv4Addr::from(next), &taken) {
                next += 1;
            }
            if next > hi {
                let range = match n.dhcp_range {
                    Some((a, b)) => format!("dhcp_range {a},{b}"),
                    None => format!("subnet {}", n.subnet),
                };
                bail!(
                    "{}: network {}: {range} has no free address left for {}: widen it or set ip for some nodes",
                    c.file.display(),
                    n.name,
                    c.nodes[i].name
                );
            }
            let ip = Ipv4Addr::from(next);
            taken.insert(ip);
            chosen.push((i, k, ip));
        }
        for (i, k, ip) in chosen {
            c.nodes[i].nics[k].ip = Some(ip);
        }
    }
    assign6(c)
}

/// The IPv6 half of [`assign`], once every NIC has its IPv4 address: resolves
/// `ipv6` templates, derives the EUI-64 address of the rest, and checks that no
/// two NICs of a network share an address and none is the hub's own.
fn assign6(c: &mut Cluster) -> Result<()> {
    let f = c.file.display().to_string();
    let mut errs = vec![];
    let mut seen: HashMap<(usize, Ipv6Addr), String> = HashMap::new();
    for node in &mut c.nodes {
        for nic in &mut node.nics {
            let net = &c.networks[nic.network];
            let Some(prefix) = net.ipv6 else { continue };
            if let Some(t) = nic.ipv6_template.take() {
                nic.ipv6 = nic.ip.and_then(|v4| crate::cluster::resolve_template(&t, v4));
                if nic.ipv6.is_none() {
                    errs.push(format!(
                        "{f}: [[node]] {} ({}): ipv6 {t:?} does not give an IPv6 address",
                        node.table, node.name
                    ));
                    continue;
                }
            }
            let a = *nic
                .ipv6
                .get_or_insert_with(|| crate::cluster::eui64_in(prefix, nic.mac));
            if crate::cluster::hub_ipv6(net) == Some(a) {
                errs.push(format!(
                    "{f}: [[node]] {} ({}): ipv6 {a} is the hub's own IPv6 address on {}",
                    node.table, node.name, net.name
                ));
            }
            if let Some(other) = seen.insert((nic.network, a), node.name.clone()) {
                errs.push(format!(
                    "{f}: [[node]] {} ({}): ipv6 {a} is also node {other}'s",
                    node.table, node.name
                ));
            }
        }
    }
    if !errs.is_empty() {
        bail!("{}", errs.join("\n"));
    }
    // `append`'s address placeholders, now that the addresses are known.
    for node in &mut c.nodes {
        let first = node.nics.first();
        let ip = first.and_then(|n| n.ip).map(|a| a.to_string()).unwrap_or_default();
        let ip6 = first.and_then(|n| n.ipv6).map(|a| a.to_string()).unwrap_or_default();
        if let Some(a) = &mut node.append {
            *a = a.replace("{ipv6}", &ip6).replace("{ip}", &ip);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const FILE: &str = "[cluster]\nname = \"y\"\n[network]\nsubnet = \"10.0.3.0/24\"\naddress = \"10.0.3.1\"\n\
                        dhcp_range = \"10.0.3.100,10.0.3.200\"\n[defaults]\nimage = \"b\"\n\
                        [[node]]\nname = \"master\"\nip = \"10.0.3.101\"\n[[node]]\nname = \"worker\"\ncount = 3\n";

    fn ips(c: &Cluster) -> Vec<String> {
        c.nodes.iter().map(|n| n.nics[0].ip.unwrap().to_string()).collect()
    }

    #[test]
    fn lowest_free_in_the_range_skipping_reserved() {
        let mut c = crate::cluster::parse(Path::new("/c.toml"), FILE).unwrap();
        assign(&mut c, None).unwrap();
        assert_eq!(ips(&c), ["10.0.3.101", "10.0.3.100", "10.0.3.102", "10.0.3.103"]);
        assert!(c.nodes[0].nics[0].ip_from_file);
        assert!(!c.nodes[1].nics[0].ip_from_file);
    }

    #[test]
    fn recorded_addresses_stay_when_nodes_come_and_go() {
        let mut c = crate::cluster::parse(Path::new("/c.toml"), FILE).unwrap();
        assign(&mut c, None).unwrap();
        let st = State::of(&c, "/c.toml".into(), vec![vec![]]);
        // worker1 removed (count 3 -> a file with worker2, worker3 only is not
        // expressible with count, so drop it from the parsed cluster instead).
        let mut c2 = crate::cluster::parse(Path::new("/c.toml"), FILE).unwrap();
        c2.nodes.remove(1);
        assign(&mut c2, Some(&st)).unwrap();
        assert_eq!(ips(&c2), ["10.0.3.101", "10.0.3.102", "10.0.3.103"]);
        // A new node takes the lowest free address, nobody moves.
        let text = FILE.replace("count = 3", "count = 4");
        let mut c3 = crate::cluster::parse(Path::new("/c.toml"), &text).unwrap();
        assign(&mut c3, Some(&st)).unwrap();
        assert_eq!(
            ips(&c3),
            ["10.0.3.101", "10.0.3.100", "10.0.3.102", "10.0.3.103", "10.0.3.104"]
        );
    }

    #[test]
    fn a_recorded_address_now_reserved_in_the_file_is_given_up() {
        let mut c = crate::cluster::parse(Path::new("/c.toml"), FILE).unwrap();
        assign(&mut c, None).unwrap();
        let st = State::of(&c, "/c.toml".into(), vec![vec![]]);
        let text = FILE.replace("ip = \"10.0.3.101\"", "ip = \"10.0.3.100\"");
        let mut c2 = crate::cluster::parse(Path::new("/c.toml"), &text).unwrap();
        assign(&mut c2, Some(&st)).unwrap();
        assert_eq!(ips(&c2), ["10.0.3.100", "10.0.3.101", "10.0.3.102", "10.0.3.103"]);
    }

    #[test]
    fn a_full_range_names_network_and_node() {
        let text = FILE.replace("10.0.3.100,10.0.3.200", "10.0.3.100,10.0.3.102");
        let mut c = crate::cluster::parse(Path::new("/c.toml"), &text).unwrap();
        let e = assign(&mut c, None).unwrap_err().to_string();
        assert_eq!(
            e,
            "/c.toml: network lan: dhcp_range 10.0.3.100,10.0.3.102 has no free address left for worker3: \
             widen it or set ip for some nodes"
        );
    }

    #[test]
    fn ipv6_templates_resolve_after_ipv4_and_the_rest_is_eui64() {
        let text = FILE
            .replace("dhcp_range", "ipv6 = \"fd00:10::/64\"\ndhcp_range")
            .replace("count = 3", "count = 3\nipv6 = \"fd00:10::1:{ipv4}\"");
        let mut c = crate::cluster::parse(Path::new("/c.toml"), &text).unwrap();
        assign(&mut c, None).unwrap();
        let v6: Vec<String> = c.nodes.iter().map(|n| n.nics[0].ipv6.unwrap().to_string()).collect();
        let master = crate::cluster::eui64_in("fd00:10::/64".parse().unwrap(), c.nodes[0].nics[0].mac);
        let mac = "00:00:00:11:11:11".parse().unwrap();
        let flipped = crate::cluster::eui64_in("fd00:10::/64".parse().unwrap(), mac);
        assert_eq!(flipped.to_string(), "fd00:10::200:ff:fe11:1111", "the U/L bit flips");
        assert_eq!(
            v6,
            [
                master.to_string(),
                "fd00:10::1:a00:364".into(), // 10.0.3.100
                "fd00:10::1:a00:366".into(), // 10.0.3.102
                "fd00:10::1:a00:367".into()
            ]
        );
        assert!(c.nodes.iter().all(|n| n.nics[0].ipv6_template.is_none()));
        // Two nodes on one address: refused, naming the node.
        let text = text.replace("name = \"master\"", "name = \"master\"\nipv6 = \"fd00:10::1:a00:364\"");
        let mut c = crate::cluster::parse(Path::new("/c.toml"), &text).unwrap();
        let e = assign(&mut c, None).unwrap_err().to_string();
        assert_eq!(
            e,
            "/c.toml: [[node]] 2 (worker1): ipv6 fd00:10::1:a00:364 is also node master's"
        );
    }

    #[test]
    fn without_a_range_the_subnet_after_the_hub() {
        let text = FILE.replace("dhcp_range = \"10.0.3.100,10.0.3.200\"\n", "");
        let mut c = crate::cluster::parse(Path::new("/c.toml"), &text).unwrap();
        assign(&mut c, None).unwrap();
        assert_eq!(ips(&c), ["10.0.3.101", "10.0.3.2", "10.0.3.3", "10.0.3.4"]);
    }
}
