//! Command lines for `qemu-system-x86_64` (one node) and `qemu-img` (its
//! overlay or copy), as pure functions returning argv vectors (program first).
//!
//! Source: QEMU's documentation, docs/system/invocation (qemu-options): `-accel`,
//! `-daemonize`, `-pidfile`, `-chardev socket,...,logfile=`, `-serial chardev:`,
//! `-qmp`, `-netdev user,hostfwd=`, `-netdev stream`, `-netdev socket,mcast=`,
//! `-netdev vhost-user`, `-object memory-backend-memfd`, `-numa node,memdev=`,
//! `-kernel/-initrd/-append`; docs/system/devices/vhost-user.rst (the guest's
//! memory shared with the back end: a memfd object the size of `-m`, as the
//! memory of the one NUMA node); docs/tools/qemu-img (`create -b -F`, `convert`,
//! `resize`, `info --output=json`).

use std::path::Path;

use crate::cluster::{CloneMode, Cluster, Node, Transport};
use crate::state::StateDir;

/// The QEMU system emulator `up` runs.
pub const QEMU: &str = "qemu-system-x86_64";
/// The image tool `up` runs.
pub const QEMU_IMG: &str = "qemu-img";

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// QEMU's option-value escaping: a comma in a value is written twice.
fn esc(p: &Path) -> String {
    s(p).replace(',', ",,")
}

/// The `qemu-system-x86_64` command line for `node` of `c`, with its files in `sd`.
///
/// QEMU daemonizes once the machine is set up (`-daemonize`, so a bad option or
/// a taken port fails the command itself) and writes its pid to `NODE.pid`. NICs:
/// first a SLIRP NIC (`-netdev user`, id `slirp`) forwarding 127.0.0.1:SSH_PORT to
/// the guest's port 22 (none with `ssh_via = "hub"`: the hub forwards it), then one virtio NIC per segment (ids `net0`, `net1`, ...)
/// on the hub's stream socket (`reconnect-ms=1000`, QEMU 9.2+, so guests come back
/// after a hub restart), the multicast group, or, on a `vhost-user` network, its
/// own socket `NODE.NET.vhost` that QEMU listens on and the hub dials
/// (`-chardev socket,id=vhuN,path=...,server=on,wait=off`, then
/// `-netdev vhost-user,id=netN,chardev=vhuN`). A node with a vhost-user NIC has
/// its memory in a shared memfd the hub maps, right after `-m MEM`:
/// `-object memory-backend-memfd,id=mem,size=MEM,share=on`
/// `-numa node,memdev=mem` (no hugepages, no root). QEMU does not finish
/// starting (nor `-daemonize` return) before the hub has connected to each of
/// those sockets, so the hub must be running first. The serial console is a unix socket
/// QEMU listens on (`NODE.console`), also logged to `NODE.log`; QMP on `NODE.qmp`.
/// A disk `NODE.qcow2` when the node has an image, a NoCloud seed (`NODE-seed.img`,
/// raw, read-only) when it has `cloud_init`. `extra_args` come last.
pub fn qemu_argv(c: &Cluster, node: &Node, sd: &StateDir) -> Vec<String> {
    let n = &node.name;
    let mut a: Vec<String> = vec![QEMU.into()];
    let mut push = |args: &[&str]| a.extend(args.iter().map(|x| x.to_string()));
    push(&["-name", &format!("{n},process=vmlan-{}-{n}", c.name)]);
    push(&["-machine", &node.machine]);
    for acc in &node.accel {
        push(&["-accel", acc]);
    }
    push(&["-m", &node.memory, "-smp", &node.cpus.to_string()]);
    let vhost_user = node
        .nics
        .iter()
        .any(|nic| c.networks[nic.network].transport == Transport::VhostUser);
    if vhost_user {
        push(&[
            "-object",
            &format!("memory-backend-memfd,id=mem,size={},share=on", memfd_size(&node.memory)),
            "-numa",
            "node,memdev=mem",
        ]);
    }
    push(&["-display", "none", "-daemonize", "-pidfile", &s(&sd.pid(n))]);
    push(&[
        "-chardev",
        &format!(
            "socket,id=console,path={},server=on,wait=off,logfile={},logappend=on",
            esc(&sd.console(n)),
            esc(&sd.log(n))
        ),
        "-serial",
        "chardev:console",
    ]);
    push(&["-qmp", &format!("unix:{},server=on,wait=off", esc(&sd.qmp(n)))]);
    if node.image.is_some() {
        push(&[
            "-drive",
            &format!("file={},if=virtio,format=qcow2", esc(&sd.overlay(n))),
        ]);
    }
    if node.cloud_init.is_some() {
        push(&[
            "-drive",
            &format!("file={},if=virtio,format=raw,readonly=on", esc(&sd.seed(n))),
        ]);
    }
    if let Some(k) = &node.kernel {
        push(&["-kernel", &s(k)]);
        if let Some(i) = &node.initrd {
            push(&["-initrd", &s(i)]);
        }
        if let Some(ap) = &node.append {
            push(&["-append", ap]);
        }
    }
    if !node.ssh_via_hub {
        push(&[
            "-netdev",
            &format!("user,id=slirp,hostfwd=tcp:127.0.0.1:{}-:22", node.ssh_port),
            "-device",
            &format!("virtio-net-pci,netdev=slirp,mac={}", node.slirp_mac),
        ]);
    }
    for (i, nic) in node.nics.iter().enumerate() {
        let net = &c.networks[nic.network];
        let netdev = match net.transport {
            Transport::Stream => format!(
                "stream,id=net{i},server=off,addr.type=unix,addr.path={},reconnect-ms=1000",
                esc(&sd.hub_socket(&net.name))
            ),
            Transport::Mcast(g) => format!("socket,id=net{i},mcast={g},localaddr=127.0.0.1"),
            Transport::VhostUser => {
                push(&[
                    "-chardev",
                    &format!(
                        "socket,id=vhu{i},path={},server=on,wait=off",
                        esc(&sd.vhost_socket(n, &net.name))
                    ),
                ]);
                format!("vhost-user,id=net{i},chardev=vhu{i}")
            }
        };
        push(&[
            "-netdev",
            &netdev,
            "-device",
            &format!("virtio-net-pci,netdev=net{i},mac={}", nic.mac),
        ]);
    }
    a.extend(node.extra_args.iter().cloned());
    a
}

/// The `size=` of the memfd backing a node's memory, equal to its `-m`: `-m`
/// reads a bare number as MiB, an object's `size=` as bytes, so a bare number
/// gets an `M`; `512M` and `2G` stay as they are.
fn memfd_size(memory: &str) -> String {
    if memory.ends_with(['M', 'G']) {
        memory.to_string()
    } else {
        format!("{memory}M")
    }
}

/// The `qemu-img` command lines that make `node`'s disk `NODE.qcow2` from its base
/// image: for an overlay `qemu-img create -f qcow2 -F FMT -b BASE NODE.qcow2 [SIZE]`;
/// for a full copy `qemu-img convert -f FMT -O qcow2 BASE NODE.qcow2`, then
/// `qemu-img resize NODE.qcow2 SIZE` when `disk_size` is set. Empty when the node
/// has no image.
pub fn disk_argvs(node: &Node, sd: &StateDir) -> Vec<Vec<String>> {
    let Some(base) = &node.image else { return vec![] };
    let out = s(&sd.overlay(&node.name));
    let mut v: Vec<Vec<String>> = vec![];
    match node.clone {
        CloneMode::Overlay => {
            let mut a: Vec<String> = [QEMU_IMG, "create", "-f", "qcow2", "-F", &node.image_format, "-b"]
                .iter()
                .map(|x| x.to_string())
                .collect();
            a.push(s(base));
            a.push(out);
            if let Some(size) = &node.disk_size {
                a.push(size.clone());
            }
            v.push(a);
        }
        CloneMode::Full => {
            v.push(vec![
                QEMU_IMG.into(),
                "convert".into(),
                "-f".into(),
                node.image_format.clone(),
                "-O".into(),
                "qcow2".into(),
                s(base),
                out.clone(),
            ]);
            if let Some(size) = &node.disk_size {
                v.push(vec![QEMU_IMG.into(), "resize".into(), out, size.clone()]);
            }
        }
    }
    v
}

/// `qemu-img info --output=json FILE`: shows, among others, `backing-filename`.
pub fn info_argv(file: &Path) -> Vec<String> {
    vec![QEMU_IMG.into(), "info".into(), "--output=json".into(), s(file)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn cluster(extra_net: &str, node: &str) -> Cluster {
        let text = format!(
            "[cluster]\nname = \"t\"\n{extra_net}\n[defaults]\nmemory = \"256M\"\naccel = \"tcg\"\nimage = \"base.qcow2\"\n{node}"
        );
        crate::cluster::parse(Path::new("/c/t.toml"), &text).unwrap()
    }

    fn sd() -> StateDir {
        StateDir {
            root: PathBuf::from("/s"),
        }
    }

    /// The value after each occurrence of option `x` in `a`.
    fn values<'a>(a: &'a [String], x: &str) -> Vec<&'a String> {
        a.iter()
            .enumerate()
            .filter(|(_, y)| *y == x)
            .map(|(i, _)| &a[i + 1])
            .collect()
    }

    fn pos(a: &[String], x: &str) -> usize {
        a.iter()
            .position(|y| y == x)
            .unwrap_or_else(|| panic!("{x} not in {a:?}"))
    }

    #[test]
    fn a_stream_node_with_kernel_and_seed() {
        let c = cluster(
            "[network]\nsubnet = \"10.0.3.0/24\"\naddress = \"10.0.3.1\"",
            "[[node]]\nname = \"m\"\nmac = \"00:00:00:11:11:11\"\nkernel = \"/k/vmlinuz\"\ninitrd = \"i.gz\"\n\
             append = \"console=ttyS0 x={mac} y={slirp_mac} p={ssh_port}\"\ncloud_init = { user = \"u\" }\n\
             extra_args = [\"-device\", \"virtio-rng-pci\"]",
        );
        let n = &c.nodes[0];
        let a = qemu_argv(&c, n, &sd());
        assert_eq!(a[0], "qemu-system-x86_64");
        assert_eq!(a[pos(&a, "-m") + 1], "256M");
        assert_eq!(a[pos(&a, "-smp") + 1], "1");
        assert_eq!(a[pos(&a, "-accel") + 1], "tcg");
        assert_eq!(a[pos(&a, "-machine") + 1], "q35");
        assert_eq!(a[pos(&a, "-pidfile") + 1], "/s/m.pid");
        assert!(a.contains(&"-daemonize".to_string()));
        assert_eq!(
            a[pos(&a, "-chardev") + 1],
            "socket,id=console,path=/s/m.console,server=on,wait=off,logfile=/s/m.log,logappend=on"
        );
        assert_eq!(a[pos(&a, "-serial") + 1], "chardev:console");
        assert_eq!(a[pos(&a, "-qmp") + 1], "unix:/s/m.qmp,server=on,wait=off");
        assert_eq!(a[pos(&a, "-kernel") + 1], "/k/vmlinuz");
        assert_eq!(a[pos(&a, "-initrd") + 1], "/c/i.gz");
        assert_eq!(
            a[pos(&a, "-append") + 1],
            format!("console=ttyS0 x=00:00:00:11:11:11 y={} p=10022", n.slirp_mac)
        );
        let drives: Vec<_> = values(&a, "-drive");
        assert_eq!(
            drives,
            [
                "file=/s/m.qcow2,if=virtio,format=qcow2",
                "file=/s/m-seed.img,if=virtio,format=raw,readonly=on"
            ]
        );
        let netdevs: Vec<_> = values(&a, "-netdev");
        assert_eq!(
            netdevs,
            [
                "user,id=slirp,hostfwd=tcp:127.0.0.1:10022-:22",
                "stream,id=net0,server=off,addr.type=unix,addr.path=/s/hub-lan.sock,reconnect-ms=1000"
            ]
        );
        let devices: Vec<_> = values(&a, "-device");
        assert_eq!(devices[0], &format!("virtio-net-pci,netdev=slirp,mac={}", n.slirp_mac));
        assert_eq!(devices[1], "virtio-net-pci,netdev=net0,mac=00:00:00:11:11:11");
        assert_eq!(a[a.len() - 2..], ["-device", "virtio-rng-pci"]);
        // No vhost-user NIC: the memory stays QEMU's own.
        assert!(!a.contains(&"-object".to_string()), "{a:?}");
        assert!(!a.contains(&"-numa".to_string()), "{a:?}");
    }

    /// From `from` on, the arguments of `a` up to (without) the next `to`.
    fn between<'a>(a: &'a [String], from: &str, to: &str) -> &'a [String] {
        let i = pos(a, from);
        let j = i + pos(&a[i..], to);
        &a[i..j]
    }

    #[test]
    fn a_vhost_user_node_shares_its_memory() {
        let c = cluster(
            "[network]\nsubnet = \"10.0.3.0/24\"\naddress = \"10.0.3.1\"\ntransport = \"vhost-user\"",
            "[[node]]\nname = \"m\"\nmac = \"00:00:00:11:11:11\"\n[[node]]\nname = \"w\"\nmemory = \"1024\"",
        );
        let a = qemu_argv(&c, &c.nodes[0], &sd());
        // The memfd as large as -m, right after it, then the NUMA node that uses it.
        assert_eq!(
            between(&a, "-m", "-display"),
            [
                "-m",
                "256M",
                "-smp",
                "1",
                "-object",
                "memory-backend-memfd,id=mem,size=256M,share=on",
                "-numa",
                "node,memdev=mem"
            ]
        );
        // After the SLIRP NIC: the socket QEMU listens on, the netdev on it, the NIC.
        let slirp = pos(&a, "user,id=slirp,hostfwd=tcp:127.0.0.1:10022-:22");
        assert_eq!(
            a[slirp + 3..],
            [
                "-chardev",
                "socket,id=vhu0,path=/s/m.lan.vhost,server=on,wait=off",
                "-netdev",
                "vhost-user,id=net0,chardev=vhu0",
                "-device",
                "virtio-net-pci,netdev=net0,mac=00:00:00:11:11:11"
            ]
        );
        // A bare -m is MiB; the object's size= would be bytes, so it gets the M.
        let a = qemu_argv(&c, &c.nodes[1], &sd());
        assert_eq!(a[pos(&a, "-m") + 1], "1024");
        assert_eq!(
            a[pos(&a, "-object") + 1],
            "memory-backend-memfd,id=mem,size=1024M,share=on"
        );
        assert_eq!(
            a[pos(&a, "vhost-user,id=net0,chardev=vhu0") - 2],
            "socket,id=vhu0,path=/s/w.lan.vhost,server=on,wait=off"
        );
        assert_eq!(memfd_size("2G"), "2G");
    }

    #[test]
    fn a_node_on_a_stream_and_a_vhost_user_network() {
        let c = cluster(
            "[[network]]\nname = \"front\"\nsubnet = \"10.0.3.0/24\"\naddress = \"10.0.3.1\"\n\
             [[network]]\nname = \"back\"\nsubnet = \"10.0.4.0/24\"\naddress = \"10.0.4.1\"\ntransport = \"vhost-user\"",
            "[[node]]\nname = \"r\"\nmemory = \"2G\"\nnetworks = [\"front\", \"back\"]\n[[node]]\nname = \"c\"",
        );
        let r = &c.nodes[0];
        let a = qemu_argv(&c, r, &sd());
        assert_eq!(values(&a, "-object"), ["memory-backend-memfd,id=mem,size=2G,share=on"]);
        assert_eq!(values(&a, "-numa"), ["node,memdev=mem"]);
        let slirp = pos(&a, "user,id=slirp,hostfwd=tcp:127.0.0.1:10022-:22");
        let nics: Vec<String> = [
            "-netdev",
            "stream,id=net0,server=off,addr.type=unix,addr.path=/s/hub-front.sock,reconnect-ms=1000",
            "-device",
            &format!("virtio-net-pci,netdev=net0,mac={}", r.nics[0].mac),
            "-chardev",
            "socket,id=vhu1,path=/s/r.back.vhost,server=on,wait=off",
            "-netdev",
            "vhost-user,id=net1,chardev=vhu1",
            "-device",
            &format!("virtio-net-pci,netdev=net1,mac={}", r.nics[1].mac),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        assert_eq!(a[slirp + 3..], nics[..]);
        // Node c is on the stream network only: no memfd.
        let a = qemu_argv(&c, &c.nodes[1], &sd());
        assert!(
            !a.contains(&"-object".to_string()) && !a.contains(&"-numa".to_string()),
            "{a:?}"
        );
        assert!(!a.iter().any(|x| x.contains("vhost")), "{a:?}");
    }

    #[test]
    fn mcast_accel_list_and_two_networks() {
        let c = cluster(
            "[[network]]\nname = \"a\"\nsubnet = \"10.0.3.0/24\"\naddress = \"10.0.3.1\"\ntransport = \"mcast\"\n\
             mcast = \"230.0.0.1:1234\"\n[[network]]\nname = \"b\"\nsubnet = \"10.0.4.0/24\"\naddress = \"10.0.4.1\"",
            "[[node]]\nname = \"r\"\naccel = \"kvm:tcg\"\ncpus = 2\nnetworks = [\"a\", \"b\"]\nssh_port = 2222",
        );
        let n = &c.nodes[0];
        let a = qemu_argv(&c, n, &sd());
        let accels: Vec<_> = values(&a, "-accel");
        assert_eq!(accels, ["kvm", "tcg"]);
        assert!(a.contains(&"user,id=slirp,hostfwd=tcp:127.0.0.1:2222-:22".to_string()));
        assert!(a.contains(&"socket,id=net0,mcast=230.0.0.1:1234,localaddr=127.0.0.1".to_string()));
        assert!(a.contains(&format!("virtio-net-pci,netdev=net1,mac={}", n.nics[1].mac)));
        assert!(a.contains(
            &"stream,id=net1,server=off,addr.type=unix,addr.path=/s/hub-b.sock,reconnect-ms=1000".to_string()
        ));
        assert!(!a.contains(&"-kernel".to_string()));
        assert_eq!(a.iter().filter(|x| *x == "-drive").count(), 1);
    }

    #[test]
    fn qemu_img_lines() {
        let c = cluster(
            "[network]\nsubnet = \"10.0.3.0/24\"\naddress = \"10.0.3.1\"",
            "[[node]]\nname = \"a\"\n[[node]]\nname = \"b\"\nclone = \"full\"\ndisk_size = \"20G\"\n\
             [[node]]\nname = \"c\"\ndisk_size = \"8G\"\nimage_format = \"raw\"",
        );
        let v = disk_argvs(&c.nodes[0], &sd());
        assert_eq!(
            v,
            [[
                "qemu-img",
                "create",
                "-f",
                "qcow2",
                "-F",
                "qcow2",
                "-b",
                "/c/base.qcow2",
                "/s/a.qcow2"
            ]]
        );
        let v = disk_argvs(&c.nodes[1], &sd());
        assert_eq!(
            v,
            [
                vec![
                    "qemu-img",
                    "convert",
                    "-f",
                    "qcow2",
                    "-O",
                    "qcow2",
                    "/c/base.qcow2",
                    "/s/b.qcow2"
                ],
                vec!["qemu-img", "resize", "/s/b.qcow2", "20G"]
            ]
        );
        let v = disk_argvs(&c.nodes[2], &sd());
        assert_eq!(
            v,
            [[
                "qemu-img",
                "create",
                "-f",
                "qcow2",
                "-F",
                "raw",
                "-b",
                "/c/base.qcow2",
                "/s/c.qcow2",
                "8G"
            ]]
        );
        assert_eq!(
            info_argv(Path::new("/s/a.qcow2")),
            ["qemu-img", "info", "--output=json", "/s/a.qcow2"]
        );
    }
}
