//! The VXLAN port end to end on loopback, from bytes: two hubs' segments (A on
//! 127.0.0.1, B on 127.0.0.2) and a hand-made VTEP C (a plain UDP socket on
//! 127.0.0.3) on one VNI. Checks head-end replication of floods to every
//! peer, FDB learning (unicast to one VTEP only), split horizon (a frame from
//! a VTEP never goes to another), and that foreign-VNI, malformed, oversized
//! and unknown-peer packets are counted and never forwarded. Loopback only:
//! nothing leaves the machine.

mod common;

use std::io;
use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::NoHost;
use vmlan_hub::port::vxlan::{self, wire, VxlanConfig};
use vmlan_hub::segment::DatagramTx;
use vmlan_hub::{Egress, Segment, Switch};

/// A guest port that records what the segment sends it.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);
impl DatagramTx for Recorder {
    fn send_batch(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        self.0.lock().unwrap().extend(frames.iter().map(|f| f.to_vec()));
        Ok(frames.len())
    }
}
impl Recorder {
    fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

const GA: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const GB: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
const GC: [u8; 6] = [2, 0, 0, 0, 0, 0xc];
const BCAST: [u8; 6] = [0xff; 6];

fn frame(dst: [u8; 6], src: [u8; 6], len: usize, tag: u8) -> Vec<u8> {
    let mut f = vec![tag; len];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

fn vxlan(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut p = wire::header(vni).to_vec();
    p.extend_from_slice(inner);
    p
}

/// Every datagram waiting on `s` (waiting up to `wait` for the first), with its source port.
fn drain(s: &UdpSocket, wait: Duration) -> Vec<(Vec<u8>, u16)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    s.set_read_timeout(Some(wait)).unwrap();
    while let Ok((n, from)) = s.recv_from(&mut buf) {
        out.push((buf[..n].to_vec(), from.port()));
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    }
    out
}

/// A UDP port free on 127.0.0.1 now (the test binds it on 127.0.0.1-3).
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn replication_learning_split_horizon_and_drops() {
    let rt = common::runtime();
    let port = free_port();
    let cfg = |me: u8, peers: &[u8]| -> VxlanConfig {
        let mut s = format!("vni=42,local=127.0.0.{me}:{port},port={port}");
        for p in peers {
            s += &format!(",peer=127.0.0.{p}");
        }
        s.parse().unwrap()
    };
    let c = UdpSocket::bind(("127.0.0.3", port)).unwrap();
    let a_addr = ("127.0.0.1", port);
    let rogue = UdpSocket::bind("127.0.0.4:0").unwrap();

    let seg_a = Arc::new(Segment::new(NoHost, Switch::default()));
    let seg_b = Arc::new(Segment::new(NoHost, Switch::default()));
    let (ga, gb) = (Recorder::default(), Recorder::default());
    let (pa, _) = seg_a.add_port("ga".into(), Egress::Datagram(Box::new(ga.clone())));
    let (pb, _) = seg_b.add_port("gb".into(), Egress::Datagram(Box::new(gb.clone())));

    rt.block_on(async {
        let va = vxlan::open(&cfg(1, &[2, 3])).unwrap();
        let vb = vxlan::open(&cfg(2, &[1, 3])).unwrap();
        let (ca, cb) = (va.counters(), vb.counters());
        tokio::spawn(va.run(seg_a.clone()));
        tokio::spawn(vb.run(seg_b.clone()));
        let settle = || tokio::time::sleep(Duration::from_millis(200));
        settle().await;

        // 1. A broadcast from guest A: replicated to B and C, once each,
        // from a source port in 49152-65535, with the VNI 42 header.
        let b1 = frame(BCAST, GA, 60, 1);
        seg_a.ingress(pa, &b1);
        settle().await;
        assert_eq!(gb.take(), vec![b1.clone()], "B's guest gets the broadcast once");
        let got = drain(&c, Duration::from_secs(2));
        assert_eq!(got.len(), 1, "C gets the broadcast once");
        assert_eq!(got[0].0, vxlan(42, &b1));
        assert!(got[0].1 >= 49152, "source port {}", got[0].1);
        let s = ca.get();
        assert_eq!((s.flooded, s.tx_packets), (1, 2), "{s}");

        // 2. C (a VTEP) sends to guest A: delivered, and A learns GC -> C.
        let c1 = frame(GA, GC, 60, 2);
        c.send_to(&vxlan(42, &c1), a_addr).unwrap();
        settle().await;
        assert_eq!(ga.take(), vec![c1]);

        // 3. Split horizon: a broadcast from C reaches A's guest, never B nor C again.
        let c2 = frame(BCAST, GC, 60, 3);
        c.send_to(&vxlan(42, &c2), a_addr).unwrap();
        settle().await;
        assert_eq!(ga.take(), vec![c2]);
        assert!(gb.take().is_empty(), "a frame from a VTEP went to another VTEP");
        assert!(drain(&c, Duration::from_millis(300)).is_empty(), "echoed to its VTEP");
        assert_eq!(ca.get().tx_packets, 2, "A sent a VTEP's frame out again");

        // 4. Unicast to a learned MAC goes to its VTEP only (C's port, not its source port).
        let a2 = frame(GC, GA, 60, 4);
        seg_a.ingress(pa, &a2);
        settle().await;
        let got = drain(&c, Duration::from_secs(2));
        assert_eq!(
            got.iter().map(|g| g.0.clone()).collect::<Vec<_>>(),
            vec![vxlan(42, &a2)]
        );
        assert!(gb.take().is_empty(), "a unicast to C's MAC was replicated to B");
        assert_eq!(ca.get().flooded, 1);

        // 5. B's guest answers A's broadcast: B learned GA at A, so it goes to A only.
        let b_reply = frame(GA, GB, 60, 5);
        seg_b.ingress(pb, &b_reply);
        settle().await;
        assert_eq!(ga.take(), vec![b_reply]);
        assert!(
            drain(&c, Duration::from_millis(300)).is_empty(),
            "B flooded a known unicast"
        );

        // 6. Bad packets: counted, never forwarded, never learned.
        let good = frame(BCAST, [2, 0, 0, 0, 0, 0xee], 60, 6);
        let mut no_i = vxlan(42, &good);
        no_i[0] = 0;
        c.send_to(&vxlan(43, &good), a_addr).unwrap(); // foreign VNI
        c.send_to(&no_i, a_addr).unwrap(); // I flag clear
        c.send_to(&[0x08, 0, 0], a_addr).unwrap(); // short
        c.send_to(&vxlan(42, &good[..13]), a_addr).unwrap(); // runt inner frame
        rogue.send_to(&vxlan(42, &good), a_addr).unwrap(); // not a peer
        settle().await;
        assert!(ga.take().is_empty(), "a bad packet was forwarded");
        assert!(gb.take().is_empty());
        let s = ca.get();
        assert_eq!((s.foreign_vni, s.malformed, s.unknown_peer), (1, 3, 1), "{s}");
        let report = seg_a.report();
        assert!(report.contains("foreign_vni 1 unknown_peer 1"), "{report}");
        assert!(
            !report.contains("02:00:00:00:00:ee"),
            "a bad packet's MAC was learned: {report}"
        );

        // 7. A frame too big for the underlay (1500 - 36 = 1464 bytes at most): dropped, counted.
        seg_a.ingress(pa, &frame(BCAST, GA, 1465, 7));
        seg_a.ingress(pa, &frame(BCAST, GA, 1464, 8));
        settle().await;
        assert_eq!(ca.get().too_big, 1);
        let line = seg_a.report();
        let line = line.lines().find(|l| l.contains("vxlan:vni=42")).unwrap();
        // Drops: the foreign VNI, the unknown peer, the too-big frame; errors: the
        // three malformed packets; sent: the two broadcasts and the unicast.
        assert!(
            line.contains("tx 3 frames") && line.contains(", drops 3, errors 3"),
            "the port's counters: {line}"
        );
        let got = drain(&c, Duration::from_secs(2));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.len(), 8 + 1464);
        assert_eq!(gb.take().len(), 1);
        assert_eq!(cb.get().rx_packets, 2);
    });
}
