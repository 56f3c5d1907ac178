//! The NoCloud seed of a node: a small FAT image labelled `cidata` holding
//! `user-data` (a `#cloud-config`), `meta-data` (instance-id, local-hostname) and
//! `network-config`, attached to the VM as a read-only drive, like the seed.img
//! of the vhost-user recipe.
//!
//! What `network-config` (version 2, NICs matched by MAC and renamed) sets up,
//! and why:
//! - the SLIRP NIC (`slirp0`) gets a static address, 10.0.2.15/24, the address
//!   QEMU's user network hands out anyway, and no DNS server. Without DHCP on it,
//!   SLIRP's DNS server (10.0.2.3) never reaches the guest's resolver, so every
//!   cluster name goes to the hub, on every boot, whatever order the NICs come up
//!   in. Its default route is via 10.0.2.2 (SLIRP's gateway: the host's network,
//!   for apt, pip, git) unless one of the node's networks sets `router`, in which
//!   case that router is the way out and SLIRP only carries the ssh port forward
//!   (a node with `ssh_via = "hub"` has no SLIRP NIC, so none is configured);
//! - each segment NIC (`net0`, `net1`, ...) runs DHCP: the hub hands out the
//!   node's reserved address, hostname, the hub as DNS server and the network's
//!   domain as search domain, and a router only when the network sets one (the
//!   hub is no router). The hub and domain are also written as the NIC's static
//!   `nameservers`, for renderers (netplan, networkd) that keep DNS per link;
//! - on a dual-stack network (`ipv6`) the segment NIC also gets `accept-ra:
//!   true` (the hub's router advertisements: the on-link prefix, and SLAAC in
//!   every mode but `stateful`, which gives the node its EUI-64 address, the
//!   one the hub publishes for it), plus a static `addresses: [ADDR/64]` when
//!   the file sets the node's `ipv6`, else `dhcp6: true` in the `stateful`
//!   mode (the DHCPv6 reservation hands out the same EUI-64 address). In the
//!   `slaac` mode the seed does not start a DHCPv6 client: SLAAC already gives
//!   the address the reservation holds, and a second copy of it would only
//!   clash. cloud-init's ENI renderer (Debian) turns `dhcp6` into `iface NIC
//!   inet6 dhcp` and a static address into `inet6 static`; without either the
//!   kernel's own SLAAC (accept_ra, autoconf, on by default) does the work.
//!   (Checked with Debian bookworm: SLAAC and `inet6 static` in
//!   tests/e2e_debian.rs; `stateful` by hand: dhclient -6 gets the reserved
//!   address as a /128 and rewrites /etc/resolv.conf with the hub's IPv6 DNS.)
//!
//! `user-data` sets the hostname, and with a domain the FQDN and
//! `manage_etc_hosts` (so `hostname -f` prints `master.cluster`), then the user
//! and keys.
//!
//! Source: cloud-init's NoCloud datasource docs (a vfat or iso9660 filesystem
//! with volume label `cidata`/`CIDATA`; files user-data, meta-data,
//! network-config), cloud-config modules `users`, `ssh_authorized_keys`,
//! `disable_root`, `chpasswd`, `ssh_pwauth`; network config version 2.
//! The contents are written as JSON, which YAML parsers (cloud-init's) read.
//!
//! The image is made with the `fatfs` crate (MIT): a FAT12 filesystem in 2 MiB.
//! `hadris-iso` was considered for an ISO 9660 seed, but its current release on
//! crates.io is a release candidate (3.0.0-rc) with a changing API; FAT is a
//! format NoCloud reads just as well.

use std::io::{Cursor, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use crate::cluster::{Cluster, Ipv6Mode, Node};

/// The address the SLIRP NIC is given (QEMU's user network: `net=10.0.2.0/24`, guest 10.0.2.15).
pub const SLIRP_GUEST: &str = "10.0.2.15";
/// SLIRP's gateway (`host=10.0.2.2`): the way out to the host's network.
pub const SLIRP_GATEWAY: &str = "10.0.2.2";

/// Size of the seed image in bytes (2 MiB: FAT12 with room for keys and config).
pub const SEED_BYTES: usize = 2 * 1024 * 1024;

/// The three seed files of `node`: (name, contents).
pub fn seed_files(c: &Cluster, node: &Node) -> Vec<(&'static str, String)> {
    let ci = node.cloud_init.clone().unwrap_or_default();
    let user = ci.user.clone().unwrap_or_else(|| "root".into());
    let domain = node.nics.first().and_then(|nic| c.networks[nic.network].domain.clone());
    let mut cfg = serde_json::Map::new();
    cfg.insert("hostname".into(), json!(node.name));
    cfg.insert("preserve_hostname".into(), json!(false));
    if let Some(d) = &domain {
        cfg.insert("fqdn".into(), json!(format!("{}.{d}", node.name)));
        cfg.insert("prefer_fqdn_over_hostname".into(), json!(false));
        cfg.insert("manage_etc_hosts".into(), json!(true));
    }
    if user == "root" {
        cfg.insert("disable_root".into(), json!(false));
        cfg.insert("ssh_authorized_keys".into(), json!(ci.ssh_authorized_keys));
    } else {
        cfg.insert(
            "users".into(),
            json!([{
                "name": user,
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "shell": "/bin/bash",
                "lock_passwd": ci.password.is_none(),
                "ssh_authorized_keys": ci.ssh_authorized_keys,
            }]),
        );
    }
    if let Some(pw) = &ci.password {
        cfg.insert("ssh_pwauth".into(), json!(true));
        cfg.insert(
            "chpasswd".into(),
            json!({"expire": false, "users": [{"name": user, "password": pw, "type": "text"}]}),
        );
    }
    let user_data = format!(
        "#cloud-config\n{}\n",
        serde_json::to_string_pretty(&serde_json::Value::Object(cfg)).unwrap_or_default()
    );
    let meta_data = format!(
        "instance-id: vmlan-{}-{}\nlocal-hostname: {}\n",
        c.name, node.name, node.name
    );
    let mut eth = serde_json::Map::new();
    let routed = node.nics.iter().any(|nic| c.networks[nic.network].router.is_some());
    let mut slirp = json!({"match": {"macaddress": node.slirp_mac.to_string()}, "set-name": "slirp0",
                           "addresses": [format!("{SLIRP_GUEST}/24")]});
    if !routed {
        slirp["gateway4"] = json!(SLIRP_GATEWAY);
    }
    // ssh_via = "hub": no SLIRP NIC (the hub forwards the ssh port).
    if !node.ssh_via_hub {
        eth.insert("slirp".into(), slirp);
    }
    for (i, nic) in node.nics.iter().enumerate() {
        let net = &c.networks[nic.network];
        let mut ns = json!({"addresses": [net.address.to_string()]});
        if let Some(d) = &net.domain {
            ns["search"] = json!([d]);
        }
        let mut e = json!({"match": {"macaddress": nic.mac.to_string()}, "set-name": format!("net{i}"), "dhcp4": true,
                           "nameservers": ns});
        if let Some(prefix) = net.ipv6 {
            // IPv6 (see the module comment): router advertisements always (the
            // on-link prefix, and SLAAC where the mode has it); a static address
            // when the file gives one; else DHCPv6 in the stateful mode.
            e["accept-ra"] = json!(true);
            match nic.ipv6 {
                Some(a) if nic.ipv6_from_file => {
                    e["addresses"] = json!([format!("{a}/{}", prefix.prefix_len())]);
                }
                _ if net.ipv6_mode == Ipv6Mode::Stateful => e["dhcp6"] = json!(true),
                _ => {}
            }
        }
        eth.insert(format!("net{i}"), e);
    }
    let network = json!({"version": 2, "ethernets": eth});
    vec![
        ("user-data", user_data),
        ("meta-data", meta_data),
        (
            "network-config",
            serde_json::to_string_pretty(&network).unwrap_or_default() + "\n",
        ),
    ]
}

/// The seed image bytes ([`SEED_BYTES`] long): FAT12, volume label `cidata`, with [`seed_files`].
/// Errors: only if `fatfs` fails to format or write (not expected for these sizes).
pub fn seed_image(c: &Cluster, node: &Node) -> std::io::Result<Vec<u8>> {
    let mut disk = Cursor::new(vec![0u8; SEED_BYTES]);
    fatfs::format_volume(
        &mut disk,
        fatfs::FormatVolumeOptions::new()
            .volume_label(*b"cidata     ")
            .fat_type(fatfs::FatType::Fat12),
    )?;
    disk.set_position(0);
    {
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new())?;
        {
            let root = fs.root_dir();
            for (name, text) in seed_files(c, node) {
                let mut f = root.create_file(name)?;
                f.truncate()?;
                f.write_all(text.as_bytes())?;
                f.flush()?;
            }
        }
        fs.unmount()?;
    }
    Ok(disk.into_inner())
}

/// Writes `node`'s seed image to `path` (replacing it).
pub fn write_seed(c: &Cluster, node: &Node, path: &Path) -> Result<()> {
    let img = seed_image(c, node).with_context(|| format!("NoCloud seed for {}", node.name))?;
    std::fs::write(path, img).with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn seed_holds_the_three_files_under_label_cidata() {
        let text = "[cluster]\nname = \"y\"\n[network]\nsubnet = \"10.0.3.0/24\"\naddress = \"10.0.3.1\"\n\
                    [[node]]\nname = \"master\"\nimage = \"b\"\n\
                    cloud_init = { user = \"salt\", password = \"pw\", ssh_authorized_keys = [\"ssh-ed25519 AAAA k\"] }\n";
        let c = crate::cluster::parse(Path::new("/c.toml"), text).unwrap();
        let n = &c.nodes[0];
        let img = seed_image(&c, n).unwrap();
        assert_eq!(img.len(), SEED_BYTES);
        // cloud-init finds a NoCloud seed by its label through blkid (util-linux).
        let file = std::env::temp_dir().join(format!("vmlan-seed-{}.img", std::process::id()));
        std::fs::write(&file, &img).unwrap();
        let blkid = ["/usr/sbin/blkid", "/sbin/blkid"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("blkid");
        let out = std::process::Command::new(blkid)
            .args(["-p", "-o", "export"])
            .arg(&file)
            .output()
            .expect("blkid (util-linux) runs");
        let _ = std::fs::remove_file(&file);
        let tags = String::from_utf8_lossy(&out.stdout);
        assert!(tags.lines().any(|l| l == "LABEL=cidata"), "blkid: {tags}");
        assert!(tags.lines().any(|l| l == "TYPE=vfat"), "blkid: {tags}");
        let mut cur = Cursor::new(img);
        let fs = fatfs::FileSystem::new(&mut cur, fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.volume_label(), "cidata");
        let read = |name: &str| {
            let mut s = String::new();
            fs.root_dir().open_file(name).unwrap().read_to_string(&mut s).unwrap();
            s
        };
        let ud = read("user-data");
        assert!(ud.starts_with("#cloud-config\n"), "{ud}");
        let v: serde_json::Value = serde_json::from_str(ud.trim_start_matches("#cloud-config\n")).unwrap();
        assert_eq!(v["hostname"], "master");
        assert_eq!(v["users"][0]["name"], "salt");
        assert_eq!(v["users"][0]["ssh_authorized_keys"][0], "ssh-ed25519 AAAA k");
        assert_eq!(v["chpasswd"]["users"][0]["password"], "pw");
        assert_eq!(
            read("meta-data"),
            "instance-id: vmlan-y-master\nlocal-hostname: master\n"
        );
        let nc: serde_json::Value = serde_json::from_str(&read("network-config")).unwrap();
        assert_eq!(
            nc["ethernets"]["net0"]["match"]["macaddress"],
            n.nics[0].mac.to_string()
        );
        assert_eq!(nc["ethernets"]["slirp"]["match"]["macaddress"], n.slirp_mac.to_string());
        // SLIRP: static, no DNS, the default route; the segment: DHCP, the hub as DNS server.
        assert_eq!(nc["ethernets"]["slirp"]["addresses"][0], "10.0.2.15/24");
        assert_eq!(nc["ethernets"]["slirp"]["gateway4"], "10.0.2.2");
        assert!(nc["ethernets"]["slirp"].get("dhcp4").is_none(), "{nc}");
        assert!(nc["ethernets"]["slirp"].get("nameservers").is_none(), "{nc}");
        assert_eq!(nc["ethernets"]["net0"]["dhcp4"], true);
        assert_eq!(nc["ethernets"]["net0"]["nameservers"]["addresses"][0], "10.0.3.1");
        assert!(v.get("fqdn").is_none(), "no domain, no fqdn: {v}");
    }

    #[test]
    fn a_domain_gives_fqdn_and_search_a_router_takes_the_default_route() {
        let text = "[cluster]\nname = \"y\"\n[network]\nsubnet = \"10.0.3.0/24\"\naddress = \"10.0.3.1\"\n\
                    domain = \"cluster\"\n[[node]]\nname = \"a\"\nimage = \"b\"\ncloud_init = {}\n";
        let c = crate::cluster::parse(Path::new("/c.toml"), text).unwrap();
        let files = seed_files(&c, &c.nodes[0]);
        let v: serde_json::Value = serde_json::from_str(files[0].1.trim_start_matches("#cloud-config\n")).unwrap();
        assert_eq!(v["fqdn"], "a.cluster");
        assert_eq!(v["manage_etc_hosts"], true);
        let nc: serde_json::Value = serde_json::from_str(&files[2].1).unwrap();
        assert_eq!(nc["ethernets"]["net0"]["nameservers"]["search"][0], "cluster");
        assert_eq!(nc["ethernets"]["slirp"]["gateway4"], "10.0.2.2");
        let routed = text.replace("domain =", "router = \"10.0.3.9\"\ndomain =");
        let c = crate::cluster::parse(Path::new("/c.toml"), &routed).unwrap();
        let nc: serde_json::Value = serde_json::from_str(&seed_files(&c, &c.nodes[0])[2].1).unwrap();
        assert!(nc["ethernets"]["slirp"].get("gateway4").is_none(), "{nc}");
    }

    #[test]
    fn dual_stack_network_config_per_mode() {
        let text = "[cluster]\nname = \"y\"\n[network]\nsubnet = \"10.0.3.0/24\"\naddress = \"10.0.3.1\"\n\
                    ipv6 = \"fd00:10::/64\"\n[[node]]\nname = \"a\"\nimage = \"b\"\ncloud_init = {}\n\
                    [[node]]\nname = \"s\"\nimage = \"b\"\nip = \"10.0.3.7\"\nipv6 = \"fd00:10::1:{ipv4}\"\ncloud_init = {}\n";
        let net0 = |text: &str, node: usize| -> serde_json::Value {
            let mut c = crate::cluster::parse(Path::new("/c.toml"), text).unwrap();
            crate::addresses::assign(&mut c, None).unwrap();
            let nc: serde_json::Value = serde_json::from_str(&seed_files(&c, &c.nodes[node])[2].1).unwrap();
            nc["ethernets"]["net0"].clone()
        };
        // slaac (the default) and the ra-* modes: router advertisements, SLAAC, no DHCPv6 client.
        for mode in [
            "",
            "ipv6_mode = \"slaac\"\n",
            "ipv6_mode = \"ra-only\"\n",
            "ipv6_mode = \"ra-stateless\"\n",
            "ipv6_mode = \"ra-names\"\n",
        ] {
            let t = text.replace("[[node]]\nname = \"a\"", &format!("{mode}[[node]]\nname = \"a\""));
            let e = net0(&t, 0);
            assert_eq!(e["accept-ra"], true, "{mode}: {e}");
            assert!(e.get("dhcp6").is_none(), "{mode}: {e}");
            assert!(e.get("addresses").is_none(), "{mode}: {e}");
            // IPv4 as before.
            assert_eq!(e["dhcp4"], true);
            assert_eq!(e["nameservers"]["addresses"][0], "10.0.3.1");
        }
        // stateful: a DHCPv6 client.
        let t = text.replace(
            "[[node]]\nname = \"a\"",
            "ipv6_mode = \"stateful\"\n[[node]]\nname = \"a\"",
        );
        let e = net0(&t, 0);
        assert_eq!(e["dhcp6"], true, "{e}");
        assert_eq!(e["accept-ra"], true, "{e}");
        // A node with ipv6 in the file: that address, static, in every mode.
        for t in [text.to_string(), t] {
            let e = net0(&t, 1);
            assert_eq!(e["addresses"], serde_json::json!(["fd00:10::1:a00:307/64"]), "{e}");
            assert!(e.get("dhcp6").is_none(), "{e}");
            assert_eq!(e["dhcp4"], true);
        }
        // IPv4-only: no IPv6 key at all.
        let e = net0(
            &text
                .replace("ipv6 = \"fd00:10::/64\"\n", "")
                .replace("ipv6 = \"fd00:10::1:{ipv4}\"\n", ""),
            0,
        );
        assert!(e.get("accept-ra").is_none() && e.get("dhcp6").is_none(), "{e}");
    }

    #[test]
    fn root_gets_keys_and_disable_root_false() {
        let text = "[cluster]\nname = \"y\"\n[network]\nsubnet = \"10.0.3.0/24\"\naddress = \"10.0.3.1\"\n\
                    [[node]]\nname = \"a\"\nimage = \"b\"\ncloud_init = { ssh_authorized_keys = [\"k1\"] }\n";
        let c = crate::cluster::parse(Path::new("/c.toml"), text).unwrap();
        let files = seed_files(&c, &c.nodes[0]);
        let v: serde_json::Value = serde_json::from_str(files[0].1.trim_start_matches("#cloud-config\n")).unwrap();
        assert_eq!(v["disable_root"], false);
        assert_eq!(v["ssh_authorized_keys"][0], "k1");
        assert!(v.get("chpasswd").is_none());
    }
}
