//! The multicast port with real sockets: a QEMU-like member of the group and
//! another port exchange frames through the hub, and the hub's own sends that
//! come back from the group are dropped (counted), never re-teaching a MAC to
//! the multicast port. Multicast must stay in a private network namespace, so
//! the test re-runs itself under `unshare -n` and sets up loopback there.

mod common;

use common::NoHost;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use vmlan_hub::port::mcast;
use vmlan_hub::segment::DatagramTx;
use vmlan_hub::{Egress, Segment, Switch};

const INSIDE: &str = "VMLAN_TEST_IN_NETNS";
const GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(230, 0, 0, 1), 1234);

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);
impl DatagramTx for Recorder {
    fn send_batch(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        self.0.lock().unwrap().extend(frames.iter().map(|f| f.to_vec()));
        Ok(frames.len())
    }
}

fn frame(dst: [u8; 6], src: [u8; 6], tag: u8) -> Vec<u8> {
    let mut f = vec![tag; 60];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

/// A socket joined to the group like QEMU's `socket,mcast=...,localaddr=127.0.0.1`.
fn qemu_like() -> UdpSocket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.bind(&SocketAddr::V4(GROUP).into()).unwrap();
    s.join_multicast_v4(GROUP.ip(), &Ipv4Addr::LOCALHOST).unwrap();
    s.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    s.into()
}

#[test]
fn multicast_echo_never_reteaches_a_mac() {
    if std::env::var_os(INSIDE).is_none() {
        let exe = std::env::current_exe().unwrap();
        let status = Command::new("unshare")
            .args(["-n", "--"])
            .arg(exe)
            .args(["--exact", "multicast_echo_never_reteaches_a_mac", "--nocapture"])
            .env(INSIDE, "1")
            .status()
            .expect("unshare -n (util-linux) must be installed and the test run as root");
        assert!(status.success(), "the test failed inside its network namespace");
        return;
    }
    for args in [
        &["link", "set", "lo", "up"][..],
        &["link", "set", "lo", "multicast", "on"],
        &["route", "add", "224.0.0.0/4", "dev", "lo"],
    ] {
        assert!(Command::new("ip").args(args).status().unwrap().success(), "ip {args:?}");
    }
    let rt = common::runtime();
    rt.block_on(async {
        let seg = Arc::new(Segment::new(NoHost, Switch::default()));
        let other = Recorder::default();
        let (other_id, _) = seg.add_port("other".into(), Egress::Datagram(Box::new(other.clone())));
        let port = mcast::open(GROUP).unwrap();
        tokio::spawn(port.run(seg.clone()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let vm = qemu_like();
        let (a, b) = ([0, 0, 0, 0xaa, 0, 1], [0, 0, 0, 0xbb, 0, 2]);

        // The guest behind the group sends a broadcast: it reaches the other port, A is learned.
        vm.send_to(&frame([0xff; 6], a, 1), GROUP).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(other.0.lock().unwrap().len(), 1);
        let mcast_id = 2;
        assert!(
            seg.report().contains(&format!("mac 00:00:00:aa:00:01 port {mcast_id}")),
            "{}",
            seg.report()
        );

        // B on the other port floods a broadcast into the group: the guest hears it once,
        // the hub hears its own echo, drops it, and B stays learned on the other port.
        seg.ingress(other_id, &frame([0xff; 6], b, 2));
        let mut buf = [0u8; 2048];
        let mut heard = vec![];
        while let Ok((n, _)) = vm.recv_from(&mut buf) {
            heard.push(buf[..n].to_vec());
        }
        // The guest's socket also hears its own first frame back, as QEMU does.
        assert!(
            heard.contains(&frame([0xff; 6], b, 2)),
            "the guest got the flooded frame"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let report = seg.report();
        assert!(
            report.contains(&format!("mac 00:00:00:bb:00:02 port {other_id}")),
            "{report}"
        );
        assert!(
            seg.stats(mcast_id).unwrap().drops >= 1,
            "the echo was counted: {report}"
        );

        // Unicast from A to B now goes only to the other port, and B to A into the group.
        vm.send_to(&frame(b, a, 3), GROUP).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(other.0.lock().unwrap().last().unwrap(), &frame(b, a, 3));
        assert_eq!(
            seg.stats(mcast_id).unwrap().rx_frames,
            2,
            "echoes are not switched as frames"
        );
    });
}
