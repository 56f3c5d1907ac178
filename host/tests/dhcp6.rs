//! The DHCPv6 server (host/src/dhcp6/, RFC 8415) from client messages built
//! with dhcproto's v6 encoder: each exchange of section 18.3, Rapid Commit,
//! reservations by DUID and by MAC, a full pool, foreign Server Identifiers,
//! remembered addresses, expiry, restore from the lease file, and input that
//! must never panic.

use std::net::Ipv6Addr;

use dhcproto::v6::{DhcpOption, DhcpOptions, Message, MessageType, OptionCode, Status, IAPD};
use dhcproto::{Decodable, Decoder, Encodable};
use proptest::prelude::*;
use vmlan_host::dhcp6::{
    duid_ll, Dhcp6Config, Dhcp6Server, EndReason, Lease6Event, Pool6, Reservation6, DECLINE_HOLD, OFFER_HOLD,
};
use vmlan_host::leases::{parse_v6_text, Lease6};
use vmlan_hub::MacAddr;

mod common;
use common::{ia, oro, sid};

const HUB: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
const T0: u64 = 1_700_000_000;

fn mac(n: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0, 0, 0, n])
}

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn pool(start: &str, end: &str) -> Pool6 {
    Pool6 {
        start: ip(start),
        end: ip(end),
        prefix_len: 64,
        lease_secs: 3600,
    }
}

fn config() -> Dhcp6Config {
    Dhcp6Config {
        pools: vec![pool("fd00::100", "fd00::1ff")],
        dns_servers: vec![ip("fd00::1")],
        domain_search: vec!["vm.test".into()],
        ..Dhcp6Config::default()
    }
}

fn server(cfg: Dhcp6Config) -> Dhcp6Server {
    Dhcp6Server::new(cfg, duid_ll(HUB))
}

/// A client: its MAC (the frame's source) and DUID (DUID-LL of the MAC).
#[derive(Clone)]
struct Client {
    mac: MacAddr,
    duid: Vec<u8>,
}

fn client(n: u8) -> Client {
    Client {
        mac: mac(n),
        duid: duid_ll(mac(n)),
    }
}

/// A client message's bytes: type, xid 0x0a0b0c, the client's Client
/// Identifier (when `c` is given), then `opts`.
fn msg(t: MessageType, c: Option<&Client>, opts: Vec<DhcpOption>) -> Vec<u8> {
    let mut m = Message::new_with_id(t, [0x0a, 0x0b, 0x0c]);
    if let Some(c) = c {
        m.opts_mut().insert(DhcpOption::ClientId(c.duid.clone()));
    }
    // dhcproto's insert puts an option before those of its code: reversed,
    // the options go out in the order given.
    for o in opts.into_iter().rev() {
        m.opts_mut().insert(o);
    }
    m.to_vec().unwrap()
}

fn decode(bytes: &[u8]) -> Message {
    Message::decode(&mut Decoder::new(bytes)).unwrap()
}

/// Sends `bytes` from `c` at `now`; the decoded reply.
fn send(s: &mut Dhcp6Server, now: u64, c: &Client, bytes: &[u8]) -> Option<Message> {
    s.handle(now, c.mac, bytes).map(|r| decode(&r))
}

/// One IA_NA of a reply, flattened.
#[derive(Debug, Clone, PartialEq)]
struct IaOut {
    iaid: u32,
    t1: u32,
    t2: u32,
    /// (address, preferred, valid)
    addrs: Vec<(Ipv6Addr, u32, u32)>,
    status: Option<Status>,
}

fn ias(m: &Message) -> Vec<IaOut> {
    m.opts()
        .get_all(OptionCode::IANA)
        .unwrap_or_default()
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IANA(ia) => Some(IaOut {
                iaid: ia.id,
                t1: ia.t1,
                t2: ia.t2,
                addrs: ia
                    .opts
                    .iter()
                    .filter_map(|o| match o {
                        DhcpOption::IAAddr(a) => Some((a.addr, a.preferred_life, a.valid_life)),
                        _ => None,
                    })
                    .collect(),
                status: status_in(&ia.opts),
            }),
            _ => None,
        })
        .collect()
}

fn status_in(opts: &DhcpOptions) -> Option<Status> {
    match opts.get(OptionCode::StatusCode) {
        Some(DhcpOption::StatusCode(s)) => Some(s.status),
        _ => None,
    }
}

fn events(s: &mut Dhcp6Server) -> Vec<Lease6Event> {
    let mut v = Vec::new();
    s.take_events(&mut v);
    v
}

/// SOLICIT then REQUEST of IA `iaid`; the address bound.
fn obtain(s: &mut Dhcp6Server, now: u64, c: &Client, iaid: u32) -> Ipv6Addr {
    let adv = send(s, now, c, &msg(MessageType::Solicit, Some(c), vec![ia(iaid, &[])])).unwrap();
    let offered = ias(&adv)[0].addrs[0].0;
    let rep = send(
        s,
        now,
        c,
        &msg(MessageType::Request, Some(c), vec![sid(HUB), ia(iaid, &[offered])]),
    )
    .unwrap();
    assert_eq!(rep.msg_type(), MessageType::Reply);
    let got = ias(&rep);
    assert_eq!(got[0].addrs[0].0, offered, "{got:?}");
    offered
}

#[test]
fn solicit_is_advertised_one_address_per_ia_with_the_options_asked_for() {
    let mut s = server(config());
    let c = client(1);
    let bytes = msg(MessageType::Solicit, Some(&c), vec![ia(1, &[]), ia(2, &[]), oro()]);
    let adv = send(&mut s, T0, &c, &bytes).unwrap();
    assert_eq!(adv.msg_type(), MessageType::Advertise);
    assert_eq!(adv.xid(), [0x0a, 0x0b, 0x0c]);
    assert_eq!(adv.opts().get(OptionCode::ServerId), Some(&sid(HUB)));
    assert_eq!(
        adv.opts().get(OptionCode::ClientId),
        Some(&DhcpOption::ClientId(c.duid.clone()))
    );
    assert_eq!(
        adv.opts().get(OptionCode::Preference),
        Some(&DhcpOption::Preference(255))
    );
    assert!(adv.opts().get(OptionCode::RapidCommit).is_none());
    let got = ias(&adv);
    assert_eq!(got.len(), 2);
    for (i, g) in got.iter().enumerate() {
        assert_eq!((g.iaid, g.t1, g.t2, g.status), (i as u32 + 1, 1800, 2880, None));
        assert_eq!(g.addrs.len(), 1);
        let (a, pref, valid) = g.addrs[0];
        assert!((ip("fd00::100")..=ip("fd00::1ff")).contains(&a), "{a}");
        assert_eq!((pref, valid), (3600, 3600));
    }
    assert_ne!(got[0].addrs[0].0, got[1].addrs[0].0);
    assert_eq!(
        adv.opts().get(OptionCode::DomainNameServers),
        Some(&DhcpOption::DomainNameServers(vec![ip("fd00::1")]))
    );
    match adv.opts().get(OptionCode::DomainSearchList) {
        Some(DhcpOption::DomainSearchList(names)) => {
            assert_eq!(names.iter().map(|n| n.to_ascii()).collect::<Vec<_>>(), ["vm.test."])
        }
        other => panic!("no domain search list: {other:?}"),
    }
    assert!(events(&mut s).is_empty(), "an ADVERTISE binds nothing");
    // The same SOLICIT again: the same addresses (held for the client).
    let again = send(&mut s, T0 + 1, &c, &bytes).unwrap();
    assert_eq!(ias(&again), got);
    // Not asked for in an Option Request option: not sent.
    let plain = send(&mut s, T0, &c, &msg(MessageType::Solicit, Some(&c), vec![ia(1, &[])])).unwrap();
    assert!(plain.opts().get(OptionCode::DomainNameServers).is_none());
    assert!(plain.opts().get(OptionCode::DomainSearchList).is_none());
}

#[test]
fn request_binds_the_advertised_address_and_no_one_else_gets_it() {
    let mut s = server(config());
    let (a, b) = (client(1), client(2));
    let addr = obtain(&mut s, T0, &a, 7);
    let ev = events(&mut s);
    assert_eq!(ev.len(), 1);
    let Lease6Event::Bound(l) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!((l.addr, l.iaid, &l.duid, l.expires), (addr, 7, &a.duid, T0 + 3600));
    assert_eq!(s.lease(&a.duid, 7, T0).map(|l| l.addr), Some(addr));
    // Another client asking for that very address gets another one.
    let adv = send(
        &mut s,
        T0,
        &b,
        &msg(MessageType::Solicit, Some(&b), vec![ia(7, &[addr])]),
    )
    .unwrap();
    assert_ne!(ias(&adv)[0].addrs[0].0, addr);
    // A free address the client hints at is taken.
    let hint = ip("fd00::1ee");
    let adv = send(
        &mut s,
        T0,
        &b,
        &msg(MessageType::Solicit, Some(&b), vec![ia(8, &[hint])]),
    )
    .unwrap();
    assert_eq!(ias(&adv)[0].addrs[0].0, hint);
    assert_eq!(s.stats().replied, 4);
}

#[test]
fn renew_extends_the_lease_and_an_unknown_ia_gets_no_binding() {
    let mut s = server(config());
    let c = client(1);
    let addr = obtain(&mut s, T0, &c, 1);
    events(&mut s);
    let stray = ip("fd00::1fe");
    let rep = send(
        &mut s,
        T0 + 1800,
        &c,
        &msg(
            MessageType::Renew,
            Some(&c),
            vec![sid(HUB), ia(1, &[addr, stray]), ia(9, &[])],
        ),
    )
    .unwrap();
    let got = ias(&rep);
    assert_eq!(
        got[0].addrs,
        vec![(addr, 3600, 3600), (stray, 0, 0)],
        "not its address: lifetimes 0"
    );
    assert_eq!((got[0].t1, got[0].t2), (1800, 2880));
    assert_eq!(
        (got[1].iaid, got[1].status, got[1].addrs.len()),
        (9, Some(Status::NoBinding), 0)
    );
    let ev = events(&mut s);
    assert!(
        matches!(&ev[..], [Lease6Event::Renewed(l)] if l.expires == T0 + 1800 + 3600),
        "{ev:?}"
    );
    assert_eq!(s.lease(&c.duid, 1, T0 + 5000).map(|l| l.addr), Some(addr), "extended");
}

#[test]
fn rebind_extends_binds_free_pool_addresses_again_and_zeroes_foreign_ones() {
    let mut s = server(config());
    let c = client(1);
    let addr = obtain(&mut s, T0, &c, 1);
    events(&mut s);
    let rebind = |opts| msg(MessageType::Rebind, Some(&c), opts);
    let rep = send(&mut s, T0 + 3000, &c, &rebind(vec![ia(1, &[addr])])).unwrap();
    assert_eq!(ias(&rep)[0].addrs, vec![(addr, 3600, 3600)]);
    // An address not ours: lifetimes 0.
    let foreign = ip("2001:db8::5");
    let rep = send(&mut s, T0 + 3000, &c, &rebind(vec![ia(2, &[foreign])])).unwrap();
    assert_eq!(ias(&rep)[0].addrs, vec![(foreign, 0, 0)]);
    // A free pool address of an IA the server has no lease for (it lost
    // them): bound again.
    let lost = ip("fd00::150");
    let rep = send(&mut s, T0 + 3000, &c, &rebind(vec![ia(3, &[lost])])).unwrap();
    assert_eq!(ias(&rep)[0].addrs, vec![(lost, 3600, 3600)]);
    // Another client's address: lifetimes 0; no address at all: NoBinding.
    let rep = send(&mut s, T0 + 3000, &c, &rebind(vec![ia(4, &[addr]), ia(5, &[])])).unwrap();
    let got = ias(&rep);
    assert_eq!(got[0].addrs, vec![(addr, 0, 0)]);
    assert_eq!(got[1].status, Some(Status::NoBinding));
    let ev = events(&mut s);
    assert!(
        matches!(&ev[..], [Lease6Event::Renewed(_), Lease6Event::Bound(l)] if l.addr == lost),
        "{ev:?}"
    );
    // A REBIND must carry no Server Identifier.
    assert!(send(&mut s, T0, &c, &rebind(vec![sid(HUB), ia(1, &[addr])])).is_none());
}

#[test]
fn release_frees_the_address_and_the_client_gets_it_back() {
    let mut s = server(Dhcp6Config {
        pools: vec![pool("fd00::10", "fd00::11")],
        ..config()
    });
    let (a, b) = (client(1), client(2));
    let addr = obtain(&mut s, T0, &a, 1);
    events(&mut s);
    let rep = send(
        &mut s,
        T0 + 10,
        &a,
        &msg(
            MessageType::Release,
            Some(&a),
            vec![sid(HUB), ia(1, &[addr]), ia(2, &[])],
        ),
    )
    .unwrap();
    assert_eq!(rep.msg_type(), MessageType::Reply);
    assert_eq!(status_in(rep.opts()), Some(Status::Success));
    let got = ias(&rep);
    assert_eq!((got.len(), got[0].iaid, got[0].status), (1, 2, Some(Status::NoBinding)));
    let ev = events(&mut s);
    assert!(
        matches!(&ev[..], [Lease6Event::Ended(l, EndReason::Released)] if l.addr == addr),
        "{ev:?}"
    );
    assert!(s.lease(&a.duid, 1, T0 + 10).is_none());
    let (rec, ended) = s.records().next().unwrap();
    assert_eq!(
        (rec.addr, rec.expires, ended),
        (addr, T0 + 10, true),
        "remembered, ended at the release"
    );
    // Another client gets the other address, not the one A last had.
    let other = obtain(&mut s, T0 + 20, &b, 1);
    assert_ne!(other, addr);
    // A comes back: its address again.
    assert_eq!(obtain(&mut s, T0 + 30, &a, 1), addr);
}

#[test]
fn decline_quarantines_the_address() {
    let mut s = server(Dhcp6Config {
        pools: vec![pool("fd00::10", "fd00::10")],
        ..config()
    });
    let (a, b) = (client(1), client(2));
    let addr = obtain(&mut s, T0, &a, 1);
    events(&mut s);
    // Declining an address it does not hold does nothing.
    let rep = send(
        &mut s,
        T0,
        &b,
        &msg(MessageType::Decline, Some(&b), vec![sid(HUB), ia(1, &[addr])]),
    )
    .unwrap();
    assert_eq!(ias(&rep)[0].status, Some(Status::NoBinding));
    assert!(s.lease(&a.duid, 1, T0).is_some());
    let rep = send(
        &mut s,
        T0 + 5,
        &a,
        &msg(MessageType::Decline, Some(&a), vec![sid(HUB), ia(1, &[addr])]),
    )
    .unwrap();
    assert_eq!(status_in(rep.opts()), Some(Status::Success));
    let ev = events(&mut s);
    assert!(
        matches!(&ev[..], [Lease6Event::Ended(_, EndReason::Declined)]),
        "{ev:?}"
    );
    assert_eq!(s.records().count(), 0, "a declined address is not remembered");
    s.handle_timeout(T0 + OFFER_HOLD); // the ADVERTISE's hold, taken since: a stale timer
    let solicit = msg(MessageType::Solicit, Some(&b), vec![ia(1, &[])]);
    let adv = send(&mut s, T0 + 10, &b, &solicit).unwrap();
    assert_eq!(ias(&adv)[0].status, Some(Status::NoAddrsAvail), "quarantined");
    assert_eq!(s.poll_timeout(), Some(T0 + 5 + DECLINE_HOLD));
    s.handle_timeout(T0 + 5 + DECLINE_HOLD);
    let adv = send(&mut s, T0 + 5 + DECLINE_HOLD, &b, &solicit).unwrap();
    assert_eq!(ias(&adv)[0].addrs[0].0, addr);
}

#[test]
fn information_request_gets_the_options_only() {
    let mut s = server(config());
    let c = client(1);
    let rep = send(
        &mut s,
        T0,
        &c,
        &msg(MessageType::InformationRequest, Some(&c), vec![oro()]),
    )
    .unwrap();
    assert_eq!(rep.msg_type(), MessageType::Reply);
    assert!(ias(&rep).is_empty());
    assert!(rep.opts().get(OptionCode::DomainNameServers).is_some());
    assert!(rep.opts().get(OptionCode::DomainSearchList).is_some());
    // Without a Client Identifier too (RFC 8415 section 16.12).
    let rep = send(&mut s, T0, &c, &msg(MessageType::InformationRequest, None, vec![oro()])).unwrap();
    assert!(rep.opts().get(OptionCode::ClientId).is_none());
    assert!(events(&mut s).is_empty());
}

#[test]
fn rapid_commit_binds_at_once_when_enabled() {
    let c = client(1);
    let solicit = msg(
        MessageType::Solicit,
        Some(&c),
        vec![ia(1, &[]), DhcpOption::RapidCommit],
    );
    let mut s = server(Dhcp6Config {
        rapid_commit: true,
        ..config()
    });
    let rep = send(&mut s, T0, &c, &solicit).unwrap();
    assert_eq!(rep.msg_type(), MessageType::Reply);
    assert_eq!(rep.opts().get(OptionCode::RapidCommit), Some(&DhcpOption::RapidCommit));
    let addr = ias(&rep)[0].addrs[0].0;
    assert!(matches!(&events(&mut s)[..], [Lease6Event::Bound(l)] if l.addr == addr));
    assert_eq!(s.lease(&c.duid, 1, T0).map(|l| l.addr), Some(addr));
    // Not enabled: an ordinary ADVERTISE.
    let mut s = server(config());
    let adv = send(&mut s, T0, &c, &solicit).unwrap();
    assert_eq!(adv.msg_type(), MessageType::Advertise);
    assert!(adv.opts().get(OptionCode::RapidCommit).is_none());
    assert!(events(&mut s).is_empty());
}

#[test]
fn reservations_by_duid_and_by_mac_get_their_address_and_name() {
    let by_duid = client(1);
    let by_mac = client(2);
    // A client whose DUID is not link-layer based: matched by the frame's MAC.
    let by_frame = Client {
        mac: mac(3),
        duid: vec![0, 4, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
    };
    let mut s = server(Dhcp6Config {
        reservations: vec![
            Reservation6 {
                duid: Some(by_duid.duid.clone()),
                addr: Some(ip("fd00::1:1")),
                name: Some("alpha".into()),
                ..Reservation6::default()
            },
            Reservation6 {
                mac: Some(mac(2)),
                addr: Some(ip("fd00::150")),
                name: Some("beta".into()),
                ..Reservation6::default()
            },
            Reservation6 {
                mac: Some(mac(3)),
                name: Some("gamma".into()),
                ..Reservation6::default()
            },
        ],
        ..config()
    });
    assert_eq!(obtain(&mut s, T0, &by_duid, 1), ip("fd00::1:1"), "outside the pool");
    // By the MAC in its DUID-LL, whatever the frame's source.
    let mut moved = by_mac.clone();
    moved.mac = mac(0x22);
    assert_eq!(obtain(&mut s, T0, &moved, 1), ip("fd00::150"));
    let gamma = obtain(&mut s, T0, &by_frame, 1);
    let names: Vec<(Ipv6Addr, Option<String>)> = events(&mut s)
        .into_iter()
        .map(|e| match e {
            Lease6Event::Bound(l) => (l.addr, l.hostname),
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            (ip("fd00::1:1"), Some("alpha".into())),
            (ip("fd00::150"), Some("beta".into())),
            (gamma, Some("gamma".into()))
        ]
    );
    // A second IA of a reserved client gets a pool address.
    let second = obtain(&mut s, T0, &by_duid, 2);
    assert_ne!(second, ip("fd00::1:1"));
    // A reserved address is no one else's, even asked for.
    let other = client(9);
    let adv = send(
        &mut s,
        T0,
        &other,
        &msg(MessageType::Solicit, Some(&other), vec![ia(1, &[ip("fd00::150")])]),
    )
    .unwrap();
    assert_ne!(ias(&adv)[0].addrs[0].0, ip("fd00::150"));
}

#[test]
fn a_full_pool_answers_no_addrs_avail() {
    let mut s = server(Dhcp6Config {
        pools: vec![pool("fd00::10", "fd00::11")],
        ..config()
    });
    obtain(&mut s, T0, &client(1), 1);
    // One IA is advertised the last address, the second gets NoAddrsAvail.
    let c = client(2);
    let adv = send(
        &mut s,
        T0,
        &c,
        &msg(MessageType::Solicit, Some(&c), vec![ia(1, &[]), ia(2, &[])]),
    )
    .unwrap();
    let got = ias(&adv);
    assert_eq!((got[0].addrs.len(), got[0].status), (1, None));
    assert_eq!((got[1].addrs.len(), got[1].status), (0, Some(Status::NoAddrsAvail)));
    // The advertised address is held for its client: a third finds none.
    let d = client(3);
    let solicit = msg(MessageType::Solicit, Some(&d), vec![ia(1, &[])]);
    let adv = send(&mut s, T0 + 1, &d, &solicit).unwrap();
    assert_eq!(ias(&adv)[0].status, Some(Status::NoAddrsAvail));
    let rep = send(
        &mut s,
        T0 + 1,
        &d,
        &msg(MessageType::Request, Some(&d), vec![sid(HUB), ia(1, &[])]),
    )
    .unwrap();
    assert_eq!(ias(&rep)[0].status, Some(Status::NoAddrsAvail));
    assert_eq!(s.stats().no_addrs, 3);
    // Once the hold runs out, the address is free again.
    s.handle_timeout(T0 + OFFER_HOLD);
    let adv = send(&mut s, T0 + OFFER_HOLD, &d, &solicit).unwrap();
    assert_eq!(ias(&adv)[0].addrs.len(), 1);
}

#[test]
fn messages_for_another_server_or_malformed_are_dropped() {
    let mut s = server(config());
    let c = client(1);
    let other = DhcpOption::ServerId(duid_ll(mac(0xee)));
    for t in [
        MessageType::Request,
        MessageType::Renew,
        MessageType::Release,
        MessageType::Decline,
    ] {
        assert!(send(&mut s, T0, &c, &msg(t, Some(&c), vec![other.clone(), ia(1, &[])])).is_none());
    }
    assert!(send(
        &mut s,
        T0,
        &c,
        &msg(MessageType::InformationRequest, Some(&c), vec![other])
    )
    .is_none());
    assert_eq!(s.stats().foreign, 5);
    // No Client Identifier; a REQUEST without Server Identifier; server messages.
    assert!(send(&mut s, T0, &c, &msg(MessageType::Solicit, None, vec![ia(1, &[])])).is_none());
    assert!(send(&mut s, T0, &c, &msg(MessageType::Request, Some(&c), vec![ia(1, &[])])).is_none());
    assert!(send(&mut s, T0, &c, &msg(MessageType::Advertise, Some(&c), vec![sid(HUB)])).is_none());
    assert!(s.handle(T0, c.mac, &[1, 2]).is_none());
    // An INFORMATION-REQUEST with an IA (RFC 8415 section 16.12).
    assert!(send(
        &mut s,
        T0,
        &c,
        &msg(MessageType::InformationRequest, Some(&c), vec![ia(1, &[])])
    )
    .is_none());
    let st = s.stats();
    assert_eq!((st.malformed, st.ignored, st.replied, st.received), (4, 1, 0, 10));
    assert!(events(&mut s).is_empty());
}

#[test]
fn the_tables_are_bounded_and_ended_records_make_room() {
    let mut s = server(Dhcp6Config {
        max_records: 2,
        max_offers: 1,
        ..config()
    });
    let (a, b, c) = (client(1), client(2), client(3));
    let solicit = |x: &Client| msg(MessageType::Solicit, Some(x), vec![ia(1, &[])]);
    assert_eq!(ias(&send(&mut s, T0, &a, &solicit(&a)).unwrap())[0].addrs.len(), 1);
    // One hold at most: B waits until A's runs out (or is taken).
    let adv = send(&mut s, T0, &b, &solicit(&b)).unwrap();
    assert_eq!(ias(&adv)[0].status, Some(Status::NoAddrsAvail));
    let addr_a = obtain(&mut s, T0, &a, 1);
    obtain(&mut s, T0, &b, 1);
    // Two records at most, both live: C gets none.
    let adv = send(&mut s, T0, &c, &solicit(&c)).unwrap();
    let offered = ias(&adv)[0].addrs[0].0;
    let rep = send(
        &mut s,
        T0,
        &c,
        &msg(MessageType::Request, Some(&c), vec![sid(HUB), ia(1, &[offered])]),
    )
    .unwrap();
    assert_eq!(ias(&rep)[0].status, Some(Status::NoAddrsAvail));
    // A releases: its ended record makes room for C, and is forgotten.
    let release = msg(MessageType::Release, Some(&a), vec![sid(HUB), ia(1, &[addr_a])]);
    send(&mut s, T0 + 1, &a, &release).unwrap();
    obtain(&mut s, T0 + 2, &c, 1);
    assert_eq!(s.records().count(), 2);
    assert!(s.records().all(|(l, ended)| !ended && l.duid != a.duid));
}

#[test]
fn an_ia_listing_thousands_of_addresses_gets_a_bounded_reply() {
    let mut s = server(config());
    let c = client(1);
    let addr = obtain(&mut s, T0, &c, 1);
    // 2340 addresses: the IA option all but fills its 16-bit length (65532 bytes).
    let many: Vec<Ipv6Addr> = (0..2340u32)
        .map(|i| Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i)))
        .collect();
    let renew = msg(MessageType::Renew, Some(&c), vec![sid(HUB), ia(1, &many)]);
    assert!(renew.len() > 64_000);
    let rep = send(&mut s, T0, &c, &renew).unwrap();
    let got = ias(&rep);
    assert_eq!(got[0].addrs.len(), 1 + vmlan_host::dhcp6::MAX_ADDRS);
    assert_eq!(got[0].addrs[0], (addr, 3600, 3600));
}

#[test]
fn times_at_the_end_of_u64_saturate() {
    let mut s = server(Dhcp6Config {
        rapid_commit: true,
        ..config()
    });
    let c = client(1);
    let now = u64::MAX - 5;
    let solicit = msg(
        MessageType::Solicit,
        Some(&c),
        vec![ia(1, &[]), DhcpOption::RapidCommit],
    );
    let addr = ias(&send(&mut s, now, &c, &solicit).unwrap())[0].addrs[0].0;
    assert_eq!(s.lease(&c.duid, 1, now).map(|l| l.expires), Some(u64::MAX));
    let decline = msg(MessageType::Decline, Some(&c), vec![sid(HUB), ia(1, &[addr])]);
    assert!(send(&mut s, now, &c, &decline).is_some());
    s.handle_timeout(u64::MAX);
    assert_eq!(s.leases().count(), 0);
}

#[test]
fn leases_expire_and_the_client_gets_its_address_back() {
    let mut s = server(Dhcp6Config {
        rapid_commit: true,
        ..config()
    });
    let c = client(1);
    let solicit = msg(
        MessageType::Solicit,
        Some(&c),
        vec![ia(1, &[]), DhcpOption::RapidCommit],
    );
    let addr = ias(&send(&mut s, T0, &c, &solicit).unwrap())[0].addrs[0].0;
    events(&mut s);
    assert_eq!(s.poll_timeout(), Some(T0 + 3600));
    s.handle_timeout(T0 + 3599);
    assert!(events(&mut s).is_empty());
    s.handle_timeout(T0 + 3600);
    let ev = events(&mut s);
    assert!(
        matches!(&ev[..], [Lease6Event::Ended(l, EndReason::Expired)] if l.addr == addr),
        "{ev:?}"
    );
    assert_eq!(s.poll_timeout(), None);
    assert!(s.lease(&c.duid, 1, T0 + 3600).is_none());
    // A RENEW now finds no binding; a new SOLICIT gets the same address.
    let rep = send(
        &mut s,
        T0 + 3601,
        &c,
        &msg(MessageType::Renew, Some(&c), vec![sid(HUB), ia(1, &[addr])]),
    )
    .unwrap();
    assert_eq!(ias(&rep)[0].status, Some(Status::NoBinding));
    assert_eq!(ias(&send(&mut s, T0 + 3700, &c, &solicit).unwrap())[0].addrs[0].0, addr);
    // A renewal moves the expiry: the earlier timer does nothing.
    let renew = msg(MessageType::Renew, Some(&c), vec![sid(HUB), ia(1, &[addr])]);
    send(&mut s, T0 + 5000, &c, &renew).unwrap();
    events(&mut s);
    s.handle_timeout(T0 + 3700 + 3600);
    assert!(events(&mut s).is_empty());
    assert!(s.lease(&c.duid, 1, T0 + 3700 + 3600).is_some());
}

#[test]
fn confirm_says_whether_the_addresses_are_on_link() {
    let mut s = server(config());
    let c = client(1);
    let confirm = |a: &str| msg(MessageType::Confirm, Some(&c), vec![ia(1, &[ip(a)])]);
    let rep = send(&mut s, T0, &c, &confirm("fd00::abcd")).unwrap();
    assert_eq!(status_in(rep.opts()), Some(Status::Success));
    let rep = send(&mut s, T0, &c, &confirm("fd01::1")).unwrap();
    assert_eq!(status_in(rep.opts()), Some(Status::NotOnLink));
    assert!(send(&mut s, T0, &c, &msg(MessageType::Confirm, Some(&c), vec![ia(1, &[])])).is_none());
}

#[test]
fn prefix_delegation_is_refused() {
    let mut s = server(config());
    let c = client(1);
    let pd = DhcpOption::IAPD(IAPD {
        id: 5,
        t1: 0,
        t2: 0,
        opts: DhcpOptions::new(),
    });
    let adv = send(&mut s, T0, &c, &msg(MessageType::Solicit, Some(&c), vec![pd])).unwrap();
    match adv.opts().get(OptionCode::IAPD) {
        Some(DhcpOption::IAPD(ia)) => assert_eq!((ia.id, status_in(&ia.opts)), (5, Some(Status::NoPrefixAvail))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn leases_restored_from_the_file_are_live_and_renewable() {
    let c = client(1);
    let mut file = String::new();
    let live = Lease6 {
        expires: T0 + 600,
        iaid: 1,
        temporary: false,
        addr: ip("fd00::123"),
        hostname: Some("vm1".into()),
        duid: c.duid.clone(),
    };
    let old = Lease6 {
        expires: T0 - 600,
        iaid: 2,
        addr: ip("fd00::124"),
        hostname: None,
        ..live.clone()
    };
    let text = vmlan_host::leases::export_text6(&duid_ll(HUB), [live.clone(), old.clone()].iter());
    file.push_str(&text);
    let (duid, leases) = parse_v6_text(&file);
    assert_eq!(duid, Some(duid_ll(HUB)));
    let mut s = server(config());
    // A stale line of the same IA first (a journal would replay so): replaced.
    let stale = Lease6 {
        addr: ip("fd00::122"),
        ..live.clone()
    };
    s.restore([stale.clone()].into_iter().chain(leases), T0);
    assert_eq!(
        events(&mut s),
        vec![
            Lease6Event::Bound(stale.clone()),
            Lease6Event::Ended(stale, EndReason::Replaced),
            Lease6Event::Bound(live.clone())
        ]
    );
    assert_eq!(s.records().count(), 2);
    assert_eq!(s.poll_timeout(), Some(T0 + 600));
    let rep = send(
        &mut s,
        T0 + 300,
        &c,
        &msg(MessageType::Renew, Some(&c), vec![sid(HUB), ia(1, &[live.addr])]),
    )
    .unwrap();
    assert_eq!(ias(&rep)[0].addrs, vec![(live.addr, 3600, 3600)]);
    // The expired one is remembered: its IA gets that address back.
    let adv = send(
        &mut s,
        T0 + 300,
        &c,
        &msg(MessageType::Solicit, Some(&c), vec![ia(2, &[])]),
    )
    .unwrap();
    assert_eq!(ias(&adv)[0].addrs[0].0, old.addr);
}

/// A valid message of each kind a client sends, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let c = client(1);
    let addr = ip("fd00::100");
    vec![
        msg(
            MessageType::Solicit,
            Some(&c),
            vec![ia(1, &[]), oro(), DhcpOption::RapidCommit],
        ),
        msg(MessageType::Request, Some(&c), vec![sid(HUB), ia(1, &[addr])]),
        msg(MessageType::Renew, Some(&c), vec![sid(HUB), ia(1, &[addr])]),
        msg(MessageType::Rebind, Some(&c), vec![ia(1, &[addr])]),
        msg(MessageType::Release, Some(&c), vec![sid(HUB), ia(1, &[addr])]),
        msg(MessageType::Decline, Some(&c), vec![sid(HUB), ia(1, &[addr])]),
        msg(MessageType::InformationRequest, Some(&c), vec![oro()]),
        msg(MessageType::Confirm, Some(&c), vec![ia(1, &[addr])]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary bytes never panic; what is answered parses.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut s = server(Dhcp6Config { rapid_commit: true, ..config() });
        if let Some(r) = s.handle(T0, mac(1), &bytes) {
            prop_assert!(Message::decode(&mut Decoder::new(&r)).is_ok());
        }
    }

    /// Valid messages truncated, with bytes changed, never panic.
    #[test]
    fn damaged_messages_never_panic(
        seed in 0usize..8,
        cut in 0usize..200,
        flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..6),
    ) {
        let mut s = server(Dhcp6Config { rapid_commit: true, ..config() });
        let mut bytes = seeds()[seed].clone();
        for (at, b) in flips {
            if let Some(x) = bytes.get_mut(at) {
                *x = b;
            }
        }
        bytes.truncate(cut.max(1));
        let _ = s.handle(T0, mac(1), &bytes);
        s.handle_timeout(T0 + 10_000);
    }
}

/// One step of a client in [`events_match_the_leases`]: which client, IA,
/// message kind, how many seconds pass before it, and whether the timers
/// run first (when not, a run-out lease is found by the messages).
fn step() -> impl Strategy<Value = (u8, u32, u8, u64, bool)> {
    (0u8..4, 0u32..2, 0u8..8, 0u64..1500, any::<bool>())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Whatever clients do, the events tell the leases exactly: each `Bound`
    /// is matched by one `Ended` before its IA is bound again, what is bound
    /// and not ended is the server's live leases, and no address is leased
    /// twice.
    #[test]
    fn events_match_the_leases(steps in proptest::collection::vec(step(), 1..40)) {
        use std::collections::HashMap;
        let mut s = server(Dhcp6Config {
            pools: vec![pool("fd00::10", "fd00::13")],
            rapid_commit: true,
            reservations: vec![Reservation6 { mac: Some(mac(1)), name: Some("one".into()), ..Reservation6::default() }],
            ..config()
        });
        let mut now = T0;
        let mut published: HashMap<(Vec<u8>, u32), Lease6> = HashMap::new();
        for (who, iaid, kind, dt, tick) in steps {
            now += dt;
            if tick {
                s.handle_timeout(now);
            }
            let c = client(who);
            let held: Vec<Ipv6Addr> = s.lease(&c.duid, iaid, now).map(|l| l.addr).into_iter().collect();
            let bytes = match kind {
                0 => msg(MessageType::Solicit, Some(&c), vec![ia(iaid, &[])]),
                1 => msg(MessageType::Solicit, Some(&c), vec![ia(iaid, &[]), DhcpOption::RapidCommit]),
                2 => msg(MessageType::Request, Some(&c), vec![sid(HUB), ia(iaid, &[])]),
                3 => msg(MessageType::Renew, Some(&c), vec![sid(HUB), ia(iaid, &held)]),
                4 => msg(MessageType::Rebind, Some(&c), vec![ia(iaid, &[ip("fd00::12")])]),
                5 => msg(MessageType::Release, Some(&c), vec![sid(HUB), ia(iaid, &held)]),
                6 => msg(MessageType::Decline, Some(&c), vec![sid(HUB), ia(iaid, &held)]),
                _ => msg(MessageType::InformationRequest, Some(&c), vec![oro()]),
            };
            prop_assert!(s.handle(now, c.mac, &bytes).is_some());
            for e in events(&mut s) {
                match e {
                    Lease6Event::Bound(l) => {
                        let old = published.insert((l.duid.clone(), l.iaid), l.clone());
                        prop_assert!(old.is_none(), "bound twice without an end: {:?}", old);
                    }
                    Lease6Event::Renewed(l) => {
                        let p = published.get_mut(&(l.duid.clone(), l.iaid));
                        prop_assert!(p.as_ref().is_some_and(|p| p.addr == l.addr && p.hostname == l.hostname));
                        *p.unwrap() = l;
                    }
                    Lease6Event::Ended(l, _) => {
                        let p = published.remove(&(l.duid.clone(), l.iaid));
                        prop_assert_eq!(p.map(|p| p.addr), Some(l.addr));
                    }
                }
            }
            let mut live: Vec<(Vec<u8>, u32, Ipv6Addr)> = s.leases().map(|l| (l.duid.clone(), l.iaid, l.addr)).collect();
            let mut want: Vec<(Vec<u8>, u32, Ipv6Addr)> = published.values().map(|l| (l.duid.clone(), l.iaid, l.addr)).collect();
            live.sort();
            want.sort();
            prop_assert_eq!(&live, &want);
            let mut addrs: Vec<Ipv6Addr> = live.iter().map(|l| l.2).collect();
            addrs.sort();
            addrs.dedup();
            prop_assert_eq!(addrs.len(), live.len(), "an address leased twice");
        }
    }
}
