//! The DNS server's local zones, in memory, looked up synchronously (RFC
//! 1034 section 4.3.2's algorithm for an authoritative server, over flat
//! zones: no delegations and no wildcards, which the hub never publishes).
//!
//! Each zone has an origin and an SOA (for the authority section of negative
//! answers, RFC 2308 section 3) and holds RRsets by owner name and type. A
//! lookup finds the zone whose origin is the nearest ancestor of the name
//! and answers from it: the RRset of the type asked, else the name's CNAME,
//! else NODATA if the name owns records of other types or is an empty
//! non-terminal (RFC 8020 section 2), else NXDOMAIN.
//!
//! This replaces hickory-server's `Catalog` and `InMemoryZoneHandler`, whose
//! lookups are async (over a tokio lock) and had to be polled with a no-op
//! waker: the records are the server's own maps already, so a plain lookup
//! here is simpler and cannot be left pending. hickory-proto still does the
//! wire format (`Record`, `Name`, `Message`).

use std::collections::HashMap;

use hickory_proto::rr::{Name, Record, RecordType};

/// What a zone says about a name and type.
#[derive(Debug, PartialEq)]
pub enum Lookup<'a> {
    /// No zone here holds the name (not authoritative: REFUSED).
    NotHere,
    /// The records of the type asked (every type's for ANY).
    Found(Vec<&'a Record>),
    /// The name is an alias: its CNAME record, to follow.
    Cname(&'a Record),
    /// The name exists without records of this type: NOERROR, no answer, the zone's SOA.
    NoData(&'a Record),
    /// The name does not exist in its zone: NXDOMAIN and the zone's SOA.
    NxDomain(&'a Record),
}

/// One zone.
#[derive(Debug)]
struct Zone {
    soa: Record,
    /// RRsets by owner and type; never an empty one.
    rrsets: HashMap<Name, HashMap<RecordType, Vec<Record>>>,
}

/// The local zones by origin (names are fully qualified and lower-cased).
#[derive(Debug, Default)]
pub struct Zones {
    zones: HashMap<Name, Zone>,
}

impl Zones {
    /// Whether a zone with this origin exists.
    pub fn contains(&self, origin: &Name) -> bool {
        self.zones.contains_key(origin)
    }

    /// Adds an empty zone at `origin` with `soa` (an SOA record owned by
    /// `origin`), unless one exists.
    pub fn ensure(&mut self, origin: &Name, soa: impl FnOnce() -> Record) {
        self.zones.entry(origin.clone()).or_insert_with(|| Zone {
            soa: soa(),
            rrsets: HashMap::new(),
        });
    }

    /// Removes the zone at `origin`.
    pub fn remove(&mut self, origin: &Name) {
        self.zones.remove(origin);
    }

    /// Replaces the RRset (`name`, `rtype`) in the zone at `origin` (which must
    /// exist; nothing happens otherwise) with `records`, removing it when
    /// empty. Returns whether the zone now holds no RRset at all.
    pub fn write(&mut self, origin: &Name, name: &Name, rtype: RecordType, records: Vec<Record>) -> bool {
        let Some(z) = self.zones.get_mut(origin) else {
            return false;
        };
        if records.is_empty() {
            if let Some(types) = z.rrsets.get_mut(name) {
                types.remove(&rtype);
                if types.is_empty() {
                    z.rrsets.remove(name);
                }
            }
        } else {
            z.rrsets.entry(name.clone()).or_default().insert(rtype, records);
        }
        z.rrsets.is_empty()
    }

    /// The origin of the zone holding `name`: its nearest ancestor (itself
    /// included) that is a zone's origin.
    pub fn origin_of(&self, name: &Name) -> Option<&Name> {
        let mut n = name.clone();
        loop {
            if let Some((origin, _)) = self.zones.get_key_value(&n) {
                return Some(origin);
            }
            if n.is_root() {
                return None;
            }
            n = n.base_name();
        }
    }

    /// Looks (`name`, `qtype`) up (see the module documentation); `name` is
    /// fully qualified and lower-cased.
    pub fn lookup(&self, name: &Name, qtype: RecordType) -> Lookup<'_> {
        let Some(z) = self.origin_of(name).and_then(|o| self.zones.get(o)) else {
            return Lookup::NotHere;
        };
        let apex_soa = (*name == z.soa.name && matches!(qtype, RecordType::SOA | RecordType::ANY)).then_some(&z.soa);
        let Some(types) = z.rrsets.get(name) else {
            if let Some(soa) = apex_soa {
                return Lookup::Found(vec![soa]);
            }
            // An empty non-terminal exists (RFC 8020): some owner lies below it.
            let below = *name == z.soa.name || z.rrsets.keys().any(|o| name.zone_of(o));
            return if below {
                Lookup::NoData(&z.soa)
            } else {
                Lookup::NxDomain(&z.soa)
            };
        };
        if qtype == RecordType::ANY {
            let mut all: Vec<&Record> = apex_soa.into_iter().collect();
            all.extend(types.values().flatten());
            return Lookup::Found(all);
        }
        if let Some(set) = types.get(&qtype) {
            return Lookup::Found(set.iter().collect());
        }
        if let Some(soa) = apex_soa {
            return Lookup::Found(vec![soa]);
        }
        if let Some(c) = types.get(&RecordType::CNAME).and_then(|s| s.first()) {
            return Lookup::Cname(c);
        }
        Lookup::NoData(&z.soa)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::str::FromStr;

    use hickory_proto::rr::rdata::{A, CNAME, SOA};
    use hickory_proto::rr::RData;

    use super::*;

    fn n(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    fn zones() -> Zones {
        let mut z = Zones::default();
        let origin = n("cluster.");
        let soa = SOA::new(n("vmlan."), n("hostmaster.vmlan."), 1, 1200, 180, 1_209_600, 0);
        z.ensure(&origin, || Record::from_rdata(origin.clone(), 0, RData::SOA(soa)));
        let a = Record::from_rdata(n("master.cluster."), 0, RData::A(A(Ipv4Addr::new(10, 0, 3, 101))));
        assert!(!z.write(&origin, &n("master.cluster."), RecordType::A, vec![a]));
        let c = Record::from_rdata(n("www.x.cluster."), 0, RData::CNAME(CNAME(n("master.cluster."))));
        z.write(&origin, &n("www.x.cluster."), RecordType::CNAME, vec![c]);
        z
    }

    #[test]
    fn lookups_follow_rfc_1034_and_2308() {
        let z = zones();
        assert!(matches!(z.lookup(&n("master.cluster."), RecordType::A), Lookup::Found(r) if r.len() == 1));
        assert!(matches!(
            z.lookup(&n("master.cluster."), RecordType::AAAA),
            Lookup::NoData(_)
        ));
        assert!(matches!(
            z.lookup(&n("nobody.cluster."), RecordType::A),
            Lookup::NxDomain(_)
        ));
        assert!(
            matches!(z.lookup(&n("x.cluster."), RecordType::A), Lookup::NoData(_)),
            "empty non-terminal"
        );
        assert!(matches!(
            z.lookup(&n("www.x.cluster."), RecordType::A),
            Lookup::Cname(_)
        ));
        assert!(matches!(
            z.lookup(&n("www.x.cluster."), RecordType::CNAME),
            Lookup::Found(_)
        ));
        assert!(matches!(z.lookup(&n("cluster."), RecordType::SOA), Lookup::Found(r) if r.len() == 1));
        assert!(matches!(z.lookup(&n("cluster."), RecordType::NS), Lookup::NoData(_)));
        assert_eq!(z.lookup(&n("example.com."), RecordType::A), Lookup::NotHere);
        let mut z = z;
        let origin = n("cluster.");
        z.write(&origin, &n("www.x.cluster."), RecordType::CNAME, vec![]);
        assert!(
            z.write(&origin, &n("master.cluster."), RecordType::A, vec![]),
            "now empty"
        );
        assert!(matches!(
            z.lookup(&n("master.cluster."), RecordType::A),
            Lookup::NxDomain(_)
        ));
    }
}
