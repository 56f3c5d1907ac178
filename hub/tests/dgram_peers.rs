//! The datagram port's peers are bounded and aged, with real unix datagram
//! sockets in a temporary directory: more source addresses than the maximum
//! leave the peer count at the maximum and count the extra datagrams as
//! refused; a peer silent for longer than the aging time (short here, through
//! `DgramPort::with_limits`) is removed with its port, and its place goes to a
//! new peer, while a peer that keeps sending stays.

mod common;

use common::NoHost;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmlan_hub::port::dgram::{self, DgramAddr, DgramCounters, MAX_PEERS};
use vmlan_hub::switch::DEFAULT_AGING;
use vmlan_hub::{Segment, Switch};

fn frame(src: u16) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 0x99]); // unknown unicast
    f[6..12].copy_from_slice(&[2, 0, 0, 1, (src >> 8) as u8, src as u8]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vmlan-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Starts a dgram port on `dir/hub.sock` with the given limits, serving a new segment.
fn start(dir: &Path, max: usize, aging: Duration) -> (Arc<Segment<NoHost>>, Arc<DgramCounters>, PathBuf) {
    let path = dir.join("hub.sock");
    let seg = Arc::new(Segment::new(NoHost, Switch::default()));
    let rt = common::runtime();
    let port = rt
        .block_on(async { dgram::bind(&DgramAddr::Unix(path.clone())) })
        .unwrap()
        .with_limits(max, aging);
    let counters = port.counters();
    let s2 = seg.clone();
    // The thread ends with the test process.
    std::thread::spawn(move || rt.block_on(port.run(s2)));
    (seg, counters, path)
}

fn peer(dir: &Path, i: usize) -> UnixDatagram {
    UnixDatagram::bind(dir.join(format!("peer{i}.sock"))).unwrap()
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn dgram_ports(seg: &Segment<NoHost>) -> usize {
    seg.report().lines().filter(|l| l.contains("dgram:unix:")).count()
}

#[test]
fn peers_beyond_the_maximum_are_dropped_and_counted() {
    const EXTRA: usize = 44;
    let d = dir("dgram-max");
    let (seg, counters, hub) = start(&d, MAX_PEERS, DEFAULT_AGING);
    let peers: Vec<UnixDatagram> = (0..MAX_PEERS + EXTRA).map(|i| peer(&d, i)).collect();
    for (i, p) in peers.iter().enumerate() {
        p.send_to(&frame(i as u16), &hub).unwrap();
    }
    wait_for("the refused peers", Duration::from_secs(5), || {
        counters.refused() >= EXTRA as u64
    });
    assert_eq!(counters.peers(), MAX_PEERS);
    assert_eq!(counters.refused(), EXTRA as u64);
    assert_eq!(dgram_ports(&seg), MAX_PEERS);
    // A known peer still gets through; a refused one still does not.
    peers[0].send_to(&frame(0), &hub).unwrap();
    peers[MAX_PEERS].send_to(&frame(MAX_PEERS as u16), &hub).unwrap();
    wait_for("the second refusal", Duration::from_secs(5), || {
        counters.refused() == EXTRA as u64 + 1
    });
    assert_eq!(counters.peers(), MAX_PEERS);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn silent_peers_age_out_and_free_their_place() {
    let d = dir("dgram-aging");
    let aging = Duration::from_millis(400);
    let (seg, counters, hub) = start(&d, 2, aging);
    let (silent, chatty, late) = (peer(&d, 0), peer(&d, 1), peer(&d, 2));
    silent.send_to(&frame(0), &hub).unwrap();
    chatty.send_to(&frame(1), &hub).unwrap();
    wait_for("two peers", Duration::from_secs(5), || counters.peers() == 2);
    late.send_to(&frame(2), &hub).unwrap();
    wait_for("the late peer refused", Duration::from_secs(5), || {
        counters.refused() == 1
    });

    // The chatty peer keeps sending; the silent one is forgotten with its port.
    let start = Instant::now();
    while counters.peers() != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "the silent peer never aged out"
        );
        chatty.send_to(&frame(1), &hub).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(start.elapsed() >= aging / 2, "aged out too soon: {:?}", start.elapsed());
    let report = seg.report();
    assert!(!report.contains("peer0.sock"), "{report}");
    assert!(report.contains("peer1.sock"), "{report}");
    assert!(
        !report.contains("02:00:00:01:00:00"),
        "its MAC is forgotten too:\n{report}"
    );

    // Its place goes to the peer that was refused.
    late.send_to(&frame(2), &hub).unwrap();
    wait_for("the late peer joined", Duration::from_secs(5), || counters.peers() == 2);
    assert!(seg.report().contains("peer2.sock"));
    assert_eq!(counters.refused(), 1);
    let _ = std::fs::remove_dir_all(&d);
}
