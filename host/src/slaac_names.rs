//! Names for the SLAAC addresses stations actually use (issue 12), learnt by
//! watching the segment rather than guessing (dnsmasq's `ra-names` pings a
//! modified EUI-64 guess). The host sees every flooded frame, so it sees
//! each station's duplicate address detection probe (RFC 4862 section
//! 5.4.2: a Neighbor Solicitation from `::` for the tentative address), its
//! Neighbor Advertisements (RFC 4861 section 4.4; the target link-layer
//! option, when present, must be the frame's source MAC), its
//! solicitations from a global source (section 4.3; likewise the source
//! link-layer option) and any packet it sends to the host itself (to its MAC or addresses). Each
//! such sighting of a global address inside an IPv6 `--dhcp-range` prefix
//! is recorded as MAC -> address with a deadline (the range's lease time,
//! the valid lifetime its router advertisements give); when the MAC has a
//! name (from its DHCPv4 lease, a `--dhcp-host` reservation or a DHCPv6
//! lease: the host decides, [`SlaacNames::set_name`]) and no `[IPv6]`
//! reservation ([`SlaacNames::pin`]: its name stays on that address) the address is
//! published as `NAME` (and `NAME.DOMAIN`) AAAA plus its ip6.arpa PTR,
//! through [`DnsServer::add_host`] as DHCPv6 leases are.
//!
//! At the deadline the host first checks the address is still in use, as
//! neighbour unreachability detection does (RFC 4861 section 7.3.1): a
//! unicast Neighbor Solicitation to the MAC for the address
//! ([`SlaacNames::handle_timeout`] hands it out; the host sends it from its
//! own address in the prefix); the station's advertisement is a sighting,
//! so an address in use keeps its name however quiet its station is. No
//! answer within [`PROBE_WAIT`]: the record goes.
//!
//! Records go when the deadline passes without a sighting, when the MAC's
//! name goes away (the address stays observed, unnamed), when another MAC
//! is seen with the address (it moved: the newest sighting wins), or when a
//! DHCPv6 lease of another MAC binds it ([`SlaacNames::claim`]; DHCPv6
//! leases and `--dhcp-host` IPv6 reservations always win over sightings).
//! Tentative addresses: a DAD probe is published at once; a station that
//! already holds the address defends it with a Neighbor Advertisement to
//! all-nodes (RFC 4862 section 5.4.3), which the host sees and which moves
//! the address back, so the newest-wins rule settles duplicates without a
//! hold timer.
//!
//! Bounded against a hostile guest: at most [`PER_MAC_MAX`] addresses per
//! MAC and [`TOTAL_MAX`] in all; past either, the address nearest its
//! deadline is evicted (counted in [`SlaacStats::evicted`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use vmlan_hub::MacAddr;

use crate::dhcp::config::INFINITE;
use crate::dns::DnsServer;
use crate::icmpv6::Icmpv6In;
use crate::ipv6::{solicited_node, DhcpRange6};
use crate::ndp::{
    option_mac, options, NDP_HOP_LIMIT, NEIGHBOR_ADVERTISEMENT, NEIGHBOR_SOLICITATION, OPT_SOURCE_LL, OPT_TARGET_LL,
};

/// Most addresses recorded for one MAC (a SLAAC address and a few
/// temporary ones, RFC 8981, per prefix); past it the MAC's address nearest
/// its deadline goes.
pub const PER_MAC_MAX: usize = 8;

/// Most addresses recorded in all; past it the address nearest its deadline goes.
pub const TOTAL_MAX: usize = 4096;

/// How long the host waits for the answer to its Neighbor Solicitation
/// probing an address at its deadline before forgetting it: RFC 4861's
/// RETRANS_TIMER (1 s, section 10) times 5, room for slow (emulated) guests.
pub const PROBE_WAIT: Duration = Duration::from_secs(5);

/// The longest an address is kept without a sighting, whatever the range's
/// lease time (an infinite lease time stands for this): ten years.
const LONGEST: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Counters of the observation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SlaacStats {
    /// Sightings of an address inside a range's prefix (new or refreshing).
    pub sightings: u64,
    /// Addresses that moved to another MAC (a newer sighting from it).
    pub moved: u64,
    /// Addresses dropped over [`PER_MAC_MAX`] or [`TOTAL_MAX`].
    pub evicted: u64,
    /// Sightings refused: the address is a DHCPv6 lease or `--dhcp-host`
    /// reservation of another (or an unknown) MAC.
    pub refused: u64,
    /// Neighbor Solicitations and Advertisements ignored because their
    /// link-layer address option is not the frame's source MAC.
    pub mismatched: u64,
    /// Neighbor Solicitations sent to check an address at its deadline.
    pub probes: u64,
    /// Addresses whose deadline passed without a sighting (nor an answer to the probe).
    pub expired: u64,
}

/// What an NDP message shows about its sender ([`sighting`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    /// The frame's source MAC uses (or, for a DAD probe, is about to use) this address.
    Uses(Ipv6Addr),
    /// A link-layer address option names another MAC than the frame's source: ignored.
    Mismatched,
    /// Nothing to learn: not a Neighbor Solicitation or Advertisement, or one
    /// for no unicast address.
    Nothing,
}

/// The address a Neighbor Solicitation or Advertisement `m` shows its
/// sender using (RFC 4861 sections 4.3, 4.4, 7.1.1, 7.1.2; RFC 4862
/// section 5.4): a DAD probe's target (source `::`, sent to the target's
/// solicited-node group, no source link-layer option), a solicitation's
/// unicast source, an advertisement's target. A source (solicitation) or
/// target (advertisement) link-layer option must hold the frame's source
/// MAC, else [`Sighting::Mismatched`].
///
/// # Errors
/// Why an invalid message is dropped: hop limit not 255, code not 0, no
/// room for a target, a bad option length, a multicast target, a DAD probe
/// not to the solicited-node group or with a source link-layer option.
pub fn sighting(m: &Icmpv6In<'_>) -> Result<Sighting, &'static str> {
    let ty = m.icmp.type_u8();
    if ty != NEIGHBOR_SOLICITATION && ty != NEIGHBOR_ADVERTISEMENT {
        return Ok(Sighting::Nothing);
    }
    if m.icmp.code_u8() != 0 || m.hop_limit != NDP_HOP_LIMIT {
        return Err("NDP message with a code or hop limit other than 0 and 255");
    }
    let body = m.icmp.payload();
    let target: [u8; 16] = body
        .get(..16)
        .and_then(|t| t.try_into().ok())
        .ok_or("NDP message without a target")?;
    let target = Ipv6Addr::from(target);
    let opts = options(&body[16..]).ok_or("NDP message with a bad option length")?;
    if target.is_multicast() {
        return Err("NDP message with a multicast target");
    }
    let ll = if ty == NEIGHBOR_SOLICITATION {
        OPT_SOURCE_LL
    } else {
        OPT_TARGET_LL
    };
    let ll = opts.iter().find(|(t, _)| *t == ll).map(|(_, o)| option_mac(o));
    if ty == NEIGHBOR_SOLICITATION && m.src.is_unspecified() {
        if m.dst != solicited_node(target) || ll.is_some() {
            return Err("DAD probe not to the solicited-node group, or with a source link-layer option");
        }
        return Ok(Sighting::Uses(target));
    }
    if m.src.is_unspecified() || m.src.is_multicast() {
        return Ok(Sighting::Nothing);
    }
    match ll {
        Some(Some(mac)) if mac != m.src_mac => Ok(Sighting::Mismatched),
        Some(None) => Err("a link-layer address option that is not 6 bytes"),
        _ if ty == NEIGHBOR_SOLICITATION => Ok(Sighting::Uses(m.src)),
        _ => Ok(Sighting::Uses(target)),
    }
}

/// One recorded address.
#[derive(Debug, Clone)]
struct Seen {
    mac: MacAddr,
    /// When it goes (or is probed) without another sighting.
    deadline: Instant,
    /// Whether the deadline is a probe's (the address's lifetime ran out).
    probing: bool,
    /// The name it is published under, if any.
    published: Option<String>,
}

/// The observed SLAAC addresses per MAC and the names published for them.
#[derive(Debug)]
pub struct SlaacNames {
    /// Each range's prefix, mask and lifetime.
    prefixes: Vec<(u128, u128, Duration)>,
    /// The host's own addresses (never recorded).
    own: Vec<Ipv6Addr>,
    by_addr: HashMap<Ipv6Addr, Seen>,
    by_mac: HashMap<MacAddr, Vec<Ipv6Addr>>,
    /// `(deadline, address)` of every recorded address.
    deadlines: BTreeSet<(Instant, Ipv6Addr)>,
    /// The name of each named MAC.
    names: HashMap<MacAddr, String>,
    /// Addresses that DHCPv6 leases and reservations hold, with the MAC
    /// owning each (`None`: unknown, e.g. a DUID without a MAC), and how
    /// many leases/reservations hold it.
    owners: HashMap<Ipv6Addr, (Option<MacAddr>, u32)>,
    /// MACs with a `--dhcp-host` `[IPv6]` reservation: their name is their
    /// reserved address, so their observed addresses are recorded but never named.
    pinned: HashSet<MacAddr>,
    stats: SlaacStats,
}

impl SlaacNames {
    /// Observation of the prefixes of `ranges` (every IPv6 range, whatever
    /// its mode), never of `own` (the host's addresses).
    pub fn new(ranges: &[DhcpRange6], own: &[Ipv6Addr]) -> Self {
        let prefixes = ranges
            .iter()
            .map(|r| {
                let mask = match r.prefix_len {
                    0 => 0,
                    l => u128::MAX << (128 - u32::from(l.min(128))),
                };
                let life = if r.lease == INFINITE {
                    LONGEST
                } else {
                    Duration::from_secs(u64::from(r.lease)).min(LONGEST)
                };
                (u128::from(r.start) & mask, mask, life)
            })
            .collect();
        SlaacNames {
            prefixes,
            own: own.to_vec(),
            by_addr: HashMap::new(),
            by_mac: HashMap::new(),
            deadlines: BTreeSet::new(),
            names: HashMap::new(),
            owners: HashMap::new(),
            pinned: HashSet::new(),
            stats: SlaacStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> SlaacStats {
        self.stats
    }

    /// How many addresses are recorded.
    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    /// Whether no address is recorded.
    pub fn is_empty(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// How many addresses are published under a name.
    pub fn published(&self) -> usize {
        self.by_addr.values().filter(|s| s.published.is_some()).count()
    }

    /// The addresses recorded for `mac`, in no particular order.
    pub fn addresses(&self, mac: MacAddr) -> &[Ipv6Addr] {
        self.by_mac.get(&mac).map_or(&[], Vec::as_slice)
    }

    /// Counts a Neighbor Solicitation or Advertisement whose link-layer
    /// option did not match its frame ([`Sighting::Mismatched`]).
    pub fn mismatched(&mut self) {
        self.stats.mismatched += 1;
    }

    /// The lifetime of `addr` if it is a global unicast address inside a
    /// range's prefix and not the host's.
    fn lifetime(&self, addr: Ipv6Addr) -> Option<Duration> {
        if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() || self.own.contains(&addr) {
            return None;
        }
        let a = u128::from(addr);
        if a >> 118 == 0x3fa {
            return None; // fe80::/10, link-local
        }
        self.prefixes.iter().find(|(p, m, _)| a & m == *p).map(|(_, _, l)| *l)
    }

    /// `mac` was seen using `addr` at `now`: recorded (or its deadline
    /// pushed back) and published under the MAC's name, unless `addr` is
    /// outside every range's prefix, link-local, the host's own, or a
    /// DHCPv6 lease or reservation of another MAC. An address recorded for
    /// another MAC moves to `mac`.
    pub fn observe(&mut self, now: Instant, mac: MacAddr, addr: Ipv6Addr, dns: &mut DnsServer) {
        let Some(life) = self.lifetime(addr) else { return };
        if let Some((owner, _)) = self.owners.get(&addr) {
            if *owner != Some(mac) {
                self.stats.refused += 1;
                return;
            }
        }
        self.stats.sightings += 1;
        let deadline = now + life;
        if let Some(s) = self.by_addr.get_mut(&addr) {
            if s.mac == mac {
                self.deadlines.remove(&(s.deadline, addr));
                s.deadline = deadline;
                s.probing = false;
                self.deadlines.insert((deadline, addr));
                return;
            }
            tracing::info!(%addr, from = %s.mac, to = %mac, "SLAAC address moved");
            self.stats.moved += 1;
            self.remove(addr, dns);
        }
        let mine = self.by_mac.get(&mac).map_or(0, Vec::len);
        if mine >= PER_MAC_MAX {
            let oldest = self.by_mac[&mac]
                .iter()
                .copied()
                .min_by_key(|a| self.by_addr[a].deadline)
                .expect("the MAC has addresses");
            self.stats.evicted += 1;
            self.remove(oldest, dns);
        }
        if self.by_addr.len() >= TOTAL_MAX {
            if let Some(&(_, oldest)) = self.deadlines.first() {
                self.stats.evicted += 1;
                self.remove(oldest, dns);
            }
        }
        let published = self.names.get(&mac).cloned();
        if let Some(name) = &published {
            tracing::info!(%addr, %mac, name, "SLAAC address named");
            dns.add_host(name, IpAddr::V6(addr), 0);
        }
        self.by_addr.insert(
            addr,
            Seen {
                mac,
                deadline,
                probing: false,
                published,
            },
        );
        self.by_mac.entry(mac).or_default().push(addr);
        self.deadlines.insert((deadline, addr));
    }

    /// Forgets `addr`, withdrawing its name.
    fn remove(&mut self, addr: Ipv6Addr, dns: &mut DnsServer) {
        let Some(s) = self.by_addr.remove(&addr) else { return };
        self.deadlines.remove(&(s.deadline, addr));
        if let Some(v) = self.by_mac.get_mut(&s.mac) {
            v.retain(|a| *a != addr);
            if v.is_empty() {
                self.by_mac.remove(&s.mac);
            }
        }
        if let Some(name) = &s.published {
            dns.remove_host(name, IpAddr::V6(addr));
        }
    }

    /// Marks `mac` as holding a `--dhcp-host` `[IPv6]` reservation (call
    /// before [`SlaacNames::set_name`]): its name stays on the reserved
    /// address alone, as a static node's in the cluster file (xcluster's
    /// style), so the addresses it is seen using are never published.
    pub fn pin(&mut self, mac: MacAddr) {
        self.pinned.insert(mac);
    }

    /// Undoes [`SlaacNames::pin`] (the reservation was withdrawn); call
    /// [`SlaacNames::set_name`] after it.
    pub fn unpin(&mut self, mac: MacAddr) {
        self.pinned.remove(&mac);
    }

    /// Sets the name of `mac` (`None`: it has none): its recorded addresses
    /// are withdrawn under the old name and published under the new one
    /// (never for a MAC given to [`SlaacNames::pin`]).
    pub fn set_name(&mut self, mac: MacAddr, name: Option<&str>, dns: &mut DnsServer) {
        let name = if self.pinned.contains(&mac) { None } else { name };
        if self.names.get(&mac).map(String::as_str) == name {
            return;
        }
        match name {
            Some(n) => self.names.insert(mac, n.to_string()),
            None => self.names.remove(&mac),
        };
        for addr in self.by_mac.get(&mac).map(Vec::as_slice).unwrap_or_default() {
            let s = self.by_addr.get_mut(addr).expect("indexed");
            if let Some(old) = s.published.take() {
                dns.remove_host(&old, IpAddr::V6(*addr));
            }
            if let Some(n) = name {
                dns.add_host(n, IpAddr::V6(*addr), 0);
                s.published = Some(n.to_string());
            }
        }
    }

    /// A DHCPv6 lease or reservation of `owner` (`None`: of an unknown MAC)
    /// holds `addr`: a sighting of it from another MAC is dropped, and none
    /// is recorded from now until [`SlaacNames::release`].
    pub fn claim(&mut self, addr: Ipv6Addr, owner: Option<MacAddr>, dns: &mut DnsServer) {
        let e = self.owners.entry(addr).or_insert((owner, 0));
        e.0 = owner;
        e.1 += 1;
        if self.by_addr.get(&addr).is_some_and(|s| Some(s.mac) != owner) {
            self.remove(addr, dns);
        }
    }

    /// Undoes one [`SlaacNames::claim`] of `addr`.
    pub fn release(&mut self, addr: Ipv6Addr) {
        if let Some(e) = self.owners.get_mut(&addr) {
            e.1 -= 1;
            if e.1 == 0 {
                self.owners.remove(&addr);
            }
        }
    }

    /// When the first recorded address runs out, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Runs the deadlines due at `now`: an address whose lifetime ran out
    /// without a sighting is to be probed (pushed onto `probes` as the
    /// station's MAC and the address, for the host to send a unicast
    /// Neighbor Solicitation; its deadline becomes `now` + [`PROBE_WAIT`]); one
    /// whose probe went unanswered is forgotten, its name withdrawn.
    pub fn handle_timeout(&mut self, now: Instant, dns: &mut DnsServer, probes: &mut Vec<(MacAddr, Ipv6Addr)>) {
        while let Some(&(t, addr)) = self.deadlines.first() {
            if t > now {
                break;
            }
            let s = self.by_addr.get_mut(&addr).expect("indexed");
            if !s.probing {
                self.deadlines.remove(&(t, addr));
                s.probing = true;
                s.deadline = now + PROBE_WAIT;
                self.deadlines.insert((s.deadline, addr));
                self.stats.probes += 1;
                probes.push((s.mac, addr));
                continue;
            }
            tracing::info!(%addr, mac = %s.mac, "SLAAC address not seen for its lifetime");
            self.stats.expired += 1;
            self.remove(addr, dns);
        }
    }
}
