//! A DISCOVER flood against a large pool (issue: it stalled all switching):
//! random-MAC DISCOVERs fill a /16 pool with offers; after that, a DISCOVER
//! that finds the pool full must not scan it (the server's
//! [`DhcpServer::pool_scan_steps`] counter, not a timing), an address freed
//! by RELEASE is found at once, and offers that run out give the pool back.
//! Deterministic: the server is driven with decoded messages and a clock.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Message, MessageType};
use vmlan_host::config::*;
use vmlan_host::dhcp::{Binding, DhcpServer, Ignored};
use vmlan_host::leases::LeaseDb;
use vmlan_host::HostConfig;
use vmlan_hub::MacAddr;

const HUB: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn server() -> DhcpServer {
    let cfg = HostConfig {
        ranges: vec![parse_dhcp_range("10.0.0.2,10.0.255.254,1h").unwrap()],
        ..HostConfig::new(parse_addr("10.0.0.1/16").unwrap())
    };
    cfg.validate().unwrap();
    DhcpServer::new(&cfg, LeaseDb::in_memory())
}

fn mac(i: u32) -> MacAddr {
    MacAddr([0x52, 0x54, (i >> 24) as u8, (i >> 16) as u8, (i >> 8) as u8, i as u8])
}

fn msg(m: MacAddr, mtype: MessageType, opts: Vec<DhcpOption>) -> Message {
    let mut msg = Message::new_with_id(
        1,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &m.0,
    );
    msg.opts_mut().insert(DhcpOption::MessageType(mtype));
    for o in opts {
        msg.opts_mut().insert(o);
    }
    msg
}

fn discover(s: &mut DhcpServer, m: MacAddr, now: u64) -> Result<Ipv4Addr, Ignored> {
    s.handle(&msg(m, MessageType::Discover, vec![]), m, now, &mut vec![])
        .map(|r| r.msg.yiaddr())
}

#[test]
fn a_full_pool_costs_no_scan_per_discover() {
    let mut s = server();
    let pool = 0xffff - 2; // 10.0.0.2 ..= 10.0.255.254
    let now = 1_000_000;
    let mut i = 0u32;
    // Fill the pool with offers, one DISCOVER per fresh MAC.
    loop {
        match discover(&mut s, mac(i), now) {
            Ok(_) => i += 1,
            Err(Ignored::PoolFull(_)) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(i, pool, "every pool address offered once");
    // Filling cost about one step per address, plus one round to find it full.
    let filled = s.pool_scan_steps();
    assert!(filled <= 2 * u64::from(pool) + 2, "{filled} steps");
    // 1,000 more DISCOVERs from new MACs: no scan at all.
    for k in 0..1000 {
        assert!(matches!(
            discover(&mut s, mac(pool + 1 + k), now),
            Err(Ignored::PoolFull(_))
        ));
    }
    assert_eq!(s.pool_scan_steps(), filled, "a full pool is not scanned again");

    // One client takes its offer and releases it: the next new client gets
    // that address at once.
    let a = mac(7);
    let ip = discover(&mut s, a, now).unwrap();
    let req = msg(
        a,
        MessageType::Request,
        vec![DhcpOption::ServerIdentifier(HUB), DhcpOption::RequestedIpAddress(ip)],
    );
    let mut changes = vec![];
    s.handle(&req, a, now, &mut changes).unwrap();
    assert!(matches!(changes.as_slice(), [Binding::Bound(_)]));
    let mut rel = msg(a, MessageType::Release, vec![DhcpOption::ServerIdentifier(HUB)]);
    rel.set_ciaddr(ip);
    assert!(s.handle(&rel, a, now, &mut changes).is_err());
    let before = s.pool_scan_steps();
    assert_eq!(discover(&mut s, mac(900_000), now), Ok(ip), "the released address");
    assert!(s.pool_scan_steps() - before <= 1);
    for k in 0..1000 {
        assert!(discover(&mut s, mac(900_001 + k), now).is_err());
    }
    // Each freeing (the ACK's dropped offer, the RELEASE) is looked at once.
    assert!(s.pool_scan_steps() - before <= 2, "still no scan");

    // The offers run out (the tick's expiry): the pool is free again, and
    // handing it out costs about a step per address.
    let later = now + 3600;
    s.expire(later);
    let before = s.pool_scan_steps();
    for k in 0..1000 {
        discover(&mut s, mac(2_000_000 + k), later).unwrap();
    }
    assert!(s.pool_scan_steps() - before <= 2000, "{}", s.pool_scan_steps() - before);
}
