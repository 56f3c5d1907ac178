//! The stream port with real unix sockets: many clients on one listening
//! socket, each its own switch port; frames framed as QEMU does (4-byte
//! big-endian length, then the frame) are switched between them; a client that
//! sends a bad length prefix is closed alone, and the others keep working; a
//! client that leaves frees its port and its MAC table entries.

mod common;

use common::NoHost;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmlan_hub::framing::encode_into;
use vmlan_hub::port::stream::{Listener, StreamAddr};
use vmlan_hub::{Segment, Switch};

fn frame(dst: [u8; 6], src: [u8; 6], tag: u8) -> Vec<u8> {
    let mut f = vec![tag; 64];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

fn send(c: &mut UnixStream, f: &[u8]) {
    let mut wire = vec![];
    encode_into(&mut wire, f);
    c.write_all(&wire).unwrap();
}

/// Reads one framed frame (or None at EOF / timeout).
fn recv(c: &mut UnixStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    c.read_exact(&mut len).ok()?;
    let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
    c.read_exact(&mut f).ok()?;
    Some(f)
}

fn wait_for(mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(5), "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn clients_are_switched_and_a_bad_one_is_closed_alone() {
    let dir = std::env::temp_dir().join(format!("vmlan-stream-port-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hub.sock");
    let seg = Arc::new(Segment::new(NoHost, Switch::default()));
    let rt = common::runtime();
    let listener = rt
        .block_on(async { Listener::bind(&StreamAddr::Unix(path.clone())) })
        .unwrap();
    let s2 = seg.clone();
    let server = std::thread::spawn(move || rt.block_on(async move { listener.run(s2).await }));

    let connect = || {
        let c = UnixStream::connect(&path).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        c
    };
    let (mut a, mut b, mut bad) = (connect(), connect(), connect());
    wait_for(|| seg.report().lines().filter(|l| l.contains("stream:unix:")).count() == 3);
    let (ma, mb) = ([0, 0, 0, 0, 0, 0xa], [0, 0, 0, 0, 0, 0xb]);

    // A broadcast from A reaches B and the bad client, not A itself.
    send(&mut a, &frame([0xff; 6], ma, 1));
    assert_eq!(recv(&mut b).unwrap(), frame([0xff; 6], ma, 1));
    assert_eq!(recv(&mut bad).unwrap(), frame([0xff; 6], ma, 1));
    // B answers A by unicast: only A gets it.
    send(&mut b, &frame(ma, mb, 2));
    assert_eq!(recv(&mut a).unwrap(), frame(ma, mb, 2));

    // A length prefix of 13 (under an Ethernet header): that client is closed...
    let mut wire = 13u32.to_be_bytes().to_vec();
    wire.extend_from_slice(&[0u8; 13]);
    let _ = bad.write_all(&wire); // the hub may close it before the whole write lands
    let mut buf = [0u8; 16];
    match bad.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the hub did not close the bad client: {other:?}"),
    }
    // ...and the others go on, many frames per write included.
    let mut burst = vec![];
    for i in 0..100u8 {
        encode_into(&mut burst, &frame(mb, ma, i));
    }
    a.write_all(&burst).unwrap();
    for i in 0..100u8 {
        assert_eq!(recv(&mut b).unwrap(), frame(mb, ma, i));
    }
    // A maximum-length frame, 69632 bytes, passes too.
    let mut big = frame(mb, ma, 7);
    big.resize(69632, 7);
    send(&mut a, &big);
    assert_eq!(recv(&mut b).unwrap().len(), 69632);

    // A leaves: its port and its MAC go.
    drop(a);
    wait_for(|| !seg.report().contains("mac 00:00:00:00:00:0a"));
    assert_eq!(seg.report().lines().filter(|l| l.contains("stream:unix:")).count(), 1);
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}
