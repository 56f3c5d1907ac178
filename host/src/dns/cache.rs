//! The answer cache of the DNS server: local answers, by the query's bytes.
//!
//! A local answer (from the zones or an `--address` rule) depends only on the
//! query message and on the records, never on the client or the time: two
//! queries that differ only in their ID (RFC 1035 section 4.1.1, the first 2
//! bytes) get the same answer but for its ID. So the server keeps each local
//! answer under the query's bytes after the ID, with the transport and the
//! path's UDP limit in front (they set where the answer is truncated), and
//! answers a repeated query by copying the stored answer and writing the new
//! ID into it, without parsing the query again. A hit is byte for byte what
//! the server would have built; case differences (RFC 4343, DNS 0x20) are
//! different bytes, so different entries.
//!
//! Any change to the records empties the cache ([`AnswerCache::clear`]), so a
//! stale answer is never served. The cache holds at most [`MAX_ENTRIES`]
//! answers of queries up to [`MAX_QUERY`] bytes; when full it starts over
//! empty, which bounds its memory at about 4 MiB.

use std::collections::HashMap;

use crate::dns::forward::{Client, Transport};

/// Most answers held.
pub const MAX_ENTRIES: usize = 4096;
/// Longest query cached, in bytes (a plain query is under 300; longer ones
/// carry EDNS options such as cookies, which make every query distinct).
pub const MAX_QUERY: usize = 512;

/// Local answers keyed by (transport, UDP limit, query bytes after the ID).
#[derive(Debug, Default)]
pub struct AnswerCache {
    map: HashMap<Box<[u8]>, Box<[u8]>>,
    /// The key of the last lookup, built here so a lookup does not allocate.
    key: Vec<u8>,
}

impl AnswerCache {
    /// Builds the key of `query` from `client` into `self.key`; false if the
    /// query is not cacheable (too short to hold a header, or over [`MAX_QUERY`]).
    fn make_key(&mut self, query: &[u8], client: &Client) -> bool {
        if query.len() < 12 || query.len() > MAX_QUERY {
            return false;
        }
        self.key.clear();
        self.key.push(match client.transport {
            Transport::Udp => 0,
            Transport::Tcp => 1,
        });
        self.key.extend_from_slice(&client.udp_max.to_be_bytes());
        self.key.extend_from_slice(&query[2..]);
        true
    }

    /// The stored answer to `query` from `client`, with `query`'s ID; `None` on a miss.
    pub fn get(&mut self, query: &[u8], client: &Client) -> Option<Vec<u8>> {
        if !self.make_key(query, client) {
            return None;
        }
        let stored = self.map.get(&self.key[..])?;
        let mut answer = stored.to_vec();
        answer[..2].copy_from_slice(&query[..2]);
        Some(answer)
    }

    /// Stores `answer` (at least 2 bytes) as the answer to `query` from `client`.
    pub fn insert(&mut self, query: &[u8], client: &Client, answer: &[u8]) {
        if answer.len() < 2 || !self.make_key(query, client) {
            return;
        }
        if self.map.len() >= MAX_ENTRIES {
            self.map.clear();
        }
        self.map.insert(self.key.as_slice().into(), answer.into());
    }

    /// Forgets every answer: call on any change to the records.
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Number of answers held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if no answer is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u16, name: &[u8]) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        q.extend_from_slice(name);
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    #[test]
    fn hits_differ_only_in_id_and_transport_matters() {
        let udp = Client::udp("127.0.0.1:1000".parse().unwrap(), 0);
        let mut tcp = udp;
        tcp.transport = Transport::Tcp;
        let mut c = AnswerCache::default();
        let q1 = query(0x1111, b"\x04host");
        let mut a = q1.clone();
        a[2] |= 0x80;
        c.insert(&q1, &udp, &a);
        let hit = c.get(&query(0x2222, b"\x04host"), &udp).unwrap();
        assert_eq!(&hit[..2], &[0x22, 0x22]);
        assert_eq!(&hit[2..], &a[2..]);
        assert!(
            c.get(&query(0x2222, b"\x04HOST"), &udp).is_none(),
            "other bytes, other entry"
        );
        assert!(
            c.get(&query(0x2222, b"\x04host"), &tcp).is_none(),
            "other transport, other entry"
        );
        assert!(c.get(&[0; 5], &udp).is_none());
        c.clear();
        assert!(c.get(&query(0x2222, b"\x04host"), &udp).is_none());
    }

    #[test]
    fn bounded() {
        let udp = Client::udp("127.0.0.1:1000".parse().unwrap(), 0);
        let mut c = AnswerCache::default();
        for i in 0..(MAX_ENTRIES as u32 + 10) {
            let q = query(1, &[4, b'h', (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            c.insert(&q, &udp, &q);
            assert!(c.len() <= MAX_ENTRIES);
        }
        let long = vec![0u8; MAX_QUERY + 1];
        c.clear();
        c.insert(&long, &udp, &long);
        assert!(c.is_empty());
    }
}
