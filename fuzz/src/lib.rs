//! What the fuzz targets in `fuzz_targets/` share: the host they drive (one
//! configuration with a DHCP pool, reservations, DNS names, `--address`,
//! `--cname` and an upstream server, on a clock the target sets), frame
//! builders, the way an input is cut into records or chunks, a TCP client for
//! DNS over TCP, and the checks every reply and table must pass.
//!
//! The targets are built by cargo-fuzz (libFuzzer) with `--sanitizer none`,
//! which needs no nightly flag: coverage comes from LLVM's SanitizerCoverage
//! pass (`-Cpasses=sancov-module` and `-Cllvm-args=-sanitizer-coverage-*`, both
//! stable rustc options), and libfuzzer-sys builds libFuzzer itself with the C++
//! compiler. Safe Rust needs no AddressSanitizer to find panics, hangs and
//! unbounded growth, which is what these targets look for.
//!
//! Why cargo-fuzz: it is the maintained driver of libFuzzer for Rust, and with
//! `--sanitizer none` it passes rustc only stable flags (its `-Z` flags are for
//! the sanitizers, `build-std` and `--careful`), so no nightly toolchain and no
//! `RUSTC_BOOTSTRAP` hack; a script of our own around libfuzzer-sys would repeat
//! its flags, and afl.rs would add AFL++ to build and a fork server to run.

use std::net::{Ipv4Addr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use etherparse::{PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
use vmlan_host::config::{
    default_mac, parse_addr, parse_dhcp_host, parse_dhcp_option, parse_dhcp_range, parse_dhcp_range6, parse_host_record,
};
use vmlan_host::dns::config::{parse_address, parse_cname, parse_server, DnsConfig};
use vmlan_host::host::DnsReturn;
use vmlan_host::leases::LeaseDb;
use vmlan_host::{Host, HostConfig};
use vmlan_hub::frame::{HEADER_LEN, MAX_FRAME_LEN};
use vmlan_hub::LocalHost;

/// The host's address (the subnet is 10.0.3.0/24).
pub const HOST_IP: [u8; 4] = [10, 0, 3, 1];
/// The upstream DNS server of the configuration (never contacted: the targets
/// play its part with [`Host::dns_upstream_answer`]).
pub const UPSTREAM: &str = "127.0.0.2:5300";
/// `--dns-forward-max` of the configuration.
pub const FORWARD_MAX: usize = 64;
/// Unix time of the host's clock when a target starts.
pub const START: u64 = 1_000_000;
/// Most queries from the segment waiting for the adapter (host.rs `DNS_QUEUE_MAX`).
const DNS_QUEUE_MAX: usize = 4096;

/// The configuration of every target: dnsmasq-style flags, as tests/host.rs has them.
pub fn config() -> HostConfig {
    let c = HostConfig {
        ranges: vec![parse_dhcp_range("10.0.3.100,10.0.3.200,120").unwrap()],
        ranges6: vec![parse_dhcp_range6("1234::,slaac").unwrap()],
        enable_ra: true,
        reservations: vec![
            parse_dhcp_host("52:54:00:00:00:01,10.0.3.101,master").unwrap(),
            parse_dhcp_host("52:54:00:00:00:02,10.0.3.102,worker1").unwrap(),
        ],
        options: vec![parse_dhcp_option("option:router,10.0.3.1").unwrap()],
        host_records: vec![parse_host_record("gateway,10.0.3.254").unwrap()],
        domain: Some("cluster".into()),
        dns: DnsConfig {
            cnames: vec![parse_cname("www,master").unwrap()],
            srv_hosts: vec![],
            addresses: vec![parse_address("/ads.test/192.0.2.1").unwrap()],
            ptr_records: vec![],
            servers: vec![parse_server("--server", "127.0.0.2#5300").unwrap()],
            forward_max: FORWARD_MAX,
        },
        ..HostConfig::new(parse_addr("10.0.3.1/24").unwrap())
    };
    c.validate().unwrap();
    c
}

/// The host under test on a clock of its own: it starts at [`START`] (Unix
/// seconds) and moves only by [`FuzzHost::advance`], so a run is deterministic.
pub struct FuzzHost {
    host: Host,
    t0: Instant,
    secs: u64,
}

impl FuzzHost {
    /// The host's current time.
    pub fn now(&self) -> Instant {
        self.t0 + Duration::from_secs(self.secs)
    }

    /// Moves the clock on by `secs` seconds and runs the host's timers then
    /// (`Host::handle_timeout`), pushing the frames it sends into `out`.
    pub fn advance(&mut self, secs: u64, out: &mut Vec<Vec<u8>>) {
        self.secs += secs;
        let now = self.now();
        self.host.handle_timeout(now, out);
    }

    /// `Host::handle_frame` at the current time.
    pub fn handle_frame(&mut self, frame: &[u8], out: &mut Vec<Vec<u8>>) {
        let now = self.now();
        self.host.handle_frame(now, frame, out);
    }
}

impl Deref for FuzzHost {
    type Target = Host;
    fn deref(&self) -> &Host {
        &self.host
    }
}

impl DerefMut for FuzzHost {
    fn deref_mut(&mut self) -> &mut Host {
        &mut self.host
    }
}

/// A fresh host at [`START`].
pub fn host() -> FuzzHost {
    let t0 = Instant::now();
    FuzzHost {
        host: Host::new(&config(), LeaseDb::in_memory(), t0, START),
        t0,
        secs: 0,
    }
}

/// The MAC of guest number `n` (52:54:00:00:00:n; 1 and 2 have reservations).
pub fn guest_mac(n: u8) -> [u8; 6] {
    [0x52, 0x54, 0, 0, 0, n]
}

/// An Ethernet/IPv4/UDP frame from `src_mac` (`src`:`sport`) to the host's
/// `dport`, at the host's address, or broadcast when `broadcast` (as DHCP clients send).
pub fn udp_frame(src_mac: [u8; 6], src: [u8; 4], sport: u16, dport: u16, broadcast: bool, payload: &[u8]) -> Vec<u8> {
    let (dst_mac, dst) = match broadcast {
        true => ([0xff; 6], [255; 4]),
        false => (default_mac(Ipv4Addr::from(HOST_IP)).0, HOST_IP),
    };
    let mut v = vec![];
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .udp(sport, dport);
    b.write(&mut v, payload).expect("a fuzz record is under 64 KiB");
    v
}

/// Cuts `data` into records `(control byte, bytes)`: each is a control byte, a
/// 2-byte big-endian length, then that many bytes (fewer at the end of `data`).
pub fn records(mut data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (&ctl, rest) = data.split_first()?;
        let len = match rest {
            [a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
            _ => 0,
        };
        let rest = rest.get(2..).unwrap_or(&[]);
        let (rec, tail) = rest.split_at(len.min(rest.len()));
        data = tail;
        Some((ctl, rec))
    })
}

/// Splits an input into its first byte, the seed of [`chunks`], and the rest.
pub fn split_seed(data: &[u8]) -> (u8, &[u8]) {
    data.split_first().map_or((0, &[]), |(s, rest)| (*s, rest))
}

/// Cuts `stream` into chunks of 1..=`max` bytes, their sizes drawn from a
/// generator seeded by `seed`: the same stream, read by a peer whose reads (or
/// segments) end anywhere.
pub fn chunks(seed: u8, mut stream: &[u8], max: usize) -> Vec<&[u8]> {
    let mut state = u32::from(seed) | 0x100;
    let mut out = vec![];
    while !stream.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = 1 + (state as usize) % max.max(1);
        let (a, b) = stream.split_at(n.min(stream.len()));
        out.push(a);
        stream = b;
    }
    out
}

/// Lets the panics of dhcproto's decoder unwind to the host's `catch_unwind`
/// (host.rs `decode_dhcp`: dhcproto 0.15 `debug_assert!`s some option lengths,
/// and the host counts such a message as malformed); every other panic still
/// aborts through libFuzzer's hook, and so does one of dhcproto's that is not
/// caught. Call from the target's `init:`, after libFuzzer set its hook.
pub fn expect_caught_dhcproto_panics() {
    let abort = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.location().is_some_and(|l| l.file().contains("/dhcproto-")) {
            abort(info);
        }
    }));
}

/// Checks the frames the host sent: each a well-formed Ethernet frame (header
/// to maximum length, parsed by etherparse) from the host's MAC.
pub fn check_replies(host: &Host, out: &[Vec<u8>]) {
    for f in out {
        assert!(
            (HEADER_LEN..=MAX_FRAME_LEN).contains(&f.len()),
            "reply of {} bytes",
            f.len()
        );
        assert_eq!(&f[6..12], &host.mac().0, "reply not from the host's MAC");
        assert!(SlicedPacket::from_ethernet(f).is_ok(), "reply does not parse: {f:02x?}");
    }
}

/// Checks that the host's tables stay bounded (at most one lease, live or
/// remembered, per address of the /24; the forward table and queue within their
/// limits), then answers the queued forwards as an upstream that echoes the
/// query with the QR bit set, and checks those frames too.
pub fn check_bounds(host: &mut FuzzHost) {
    let leases = host.dhcp().leases();
    assert!(leases.len() + leases.remembered_len() <= 256, "{} leases", leases.len());
    assert!(
        host.dns_mut().pending() <= FORWARD_MAX,
        "{} pending",
        host.dns_mut().pending()
    );
    let forwards = host.take_dns_forwards();
    assert!(forwards.len() <= DNS_QUEUE_MAX);
    for f in forwards {
        assert_eq!(f.upstream, UPSTREAM.parse::<SocketAddr>().unwrap());
        let mut answer = f.query;
        if let Some(flags) = answer.get_mut(2) {
            *flags |= 0x80;
        }
        let now = host.now();
        let frames = match host.dns_upstream_answer(now, f.upstream, &answer) {
            Some(DnsReturn::Frame(f)) => vec![f],
            Some(DnsReturn::Frames(fs)) => fs,
            _ => vec![],
        };
        check_replies(host, &frames);
    }
}

/// A TCP client on the segment (guest 52:54:00:00:00:07 at 10.0.3.107) talking
/// to the host's port 53: its next sequence number and the host's.
pub struct TcpPeer {
    seq: u32,
    ack: u32,
}

impl TcpPeer {
    const MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 7];
    const IP: [u8; 4] = [10, 0, 3, 107];
    const PORT: u16 = 40_000;

    /// Opens a connection to the host's 10.0.3.1:53 (SYN, SYN-ACK, ACK).
    pub fn connect(host: &mut FuzzHost) -> TcpPeer {
        let mut p = TcpPeer { seq: 7_000_000, ack: 0 };
        let out = p.send(host, true, &[]);
        assert!(out.iter().any(|s| s.2), "no SYN-ACK: {out:?}");
        p.seq = p.seq.wrapping_add(1);
        p.send(host, false, &[]);
        p
    }

    /// Sends `payload` (SYN when `syn`, else ACK of all received, PSH with
    /// data), then ACKs whatever data the host sends back until it sends none.
    /// Returns the host's segments in reply to this one segment, each as
    /// (sequence number, payload length, SYN).
    pub fn send(&mut self, host: &mut FuzzHost, syn: bool, payload: &[u8]) -> Vec<(u32, usize, bool)> {
        let mac = default_mac(Ipv4Addr::from(HOST_IP)).0;
        let b = PacketBuilder::ethernet2(Self::MAC, mac).ipv4(Self::IP, HOST_IP, 64);
        let b = b.tcp(Self::PORT, 53, self.seq, 64_240);
        let b = match syn {
            true => b.syn().options(&[TcpOptionElement::MaximumSegmentSize(1460)]).unwrap(),
            false => b.ack(self.ack).psh(),
        };
        let mut frame = vec![];
        b.write(&mut frame, payload).expect("a chunk is under 64 KiB");
        self.seq = self.seq.wrapping_add(payload.len() as u32);
        let mut out = vec![];
        host.handle_frame(&frame, &mut out);
        check_replies(host, &out);
        let segs: Vec<_> = out.iter().filter_map(|f| self.take(f)).collect();
        let advanced = segs.iter().any(|s| s.1 > 0);
        if advanced && !syn {
            self.send(host, false, &[]);
        }
        segs
    }

    /// Reads one segment from the host: to this peer, in order: ACK its bytes (and SYN or FIN).
    fn take(&mut self, frame: &[u8]) -> Option<(u32, usize, bool)> {
        let p = SlicedPacket::from_ethernet(frame).ok()?;
        let Some(TransportSlice::Tcp(t)) = &p.transport else {
            return None;
        };
        assert_eq!(t.destination_port(), Self::PORT, "a segment to another port");
        let seg = (t.sequence_number(), t.payload().len(), t.syn());
        if t.syn() {
            self.ack = seg.0.wrapping_add(1);
        } else if !t.rst() && seg.0 == self.ack {
            self.ack = self.ack.wrapping_add(seg.1 as u32 + u32::from(t.fin()));
        }
        Some(seg)
    }
}
