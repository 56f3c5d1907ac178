//! What the host's DHCPv6 tests share: client message options built with
//! dhcproto's v6 types (RFC 8415 sections 21.4, 21.6, 21.7, 21.3).

use std::net::Ipv6Addr;

use dhcproto::v6::{DhcpOption, DhcpOptions, IAAddr, OptionCode, IANA, ORO};
use vmlan_host::dhcp6::duid_ll;
use vmlan_hub::MacAddr;

/// An IA_NA with IAID `iaid`, T1 = T2 = 0, holding `addrs` (lifetimes 0) as
/// the client's hints or the addresses it renews.
pub fn ia(iaid: u32, addrs: &[Ipv6Addr]) -> DhcpOption {
    DhcpOption::IANA(IANA {
        id: iaid,
        t1: 0,
        t2: 0,
        opts: addrs
            .iter()
            .map(|a| {
                DhcpOption::IAAddr(IAAddr {
                    addr: *a,
                    preferred_life: 0,
                    valid_life: 0,
                    opts: DhcpOptions::new(),
                })
            })
            .collect(),
    })
}

/// An Option Request asking for DNS servers (23) and the domain search list (24).
pub fn oro() -> DhcpOption {
    DhcpOption::ORO(ORO {
        opts: vec![OptionCode::DomainNameServers, OptionCode::DomainSearchList],
    })
}

/// The Server Identifier of a hub with MAC `hub` (its DUID-LL).
pub fn sid(hub: MacAddr) -> DhcpOption {
    DhcpOption::ServerId(duid_ll(hub))
}
