//! The link state database: every LSA instance the router holds, by
//! flooding scope (one map per link, one for the area, one for the AS), with
//! ages that advance with the caller's clock (RFC 2328 §12.4, §14).
//!
//! Entries keep the bytes as installed, so flooding and DD exchange copy them
//! without re-encoding, and the parsed body, so SPF never parses.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::events::Time;
use crate::packet::lsa::Lsa;
use crate::packet::lsa::header::{
    AGE_OFFSET, INF_TRANS_DELAY, LsaHeader, LsaKey, LsaScope, MAX_AGE,
};
use crate::packet::put_u16;

/// One LSA instance in the database.
#[derive(Debug, Clone)]
pub struct LsaEntry {
    /// The parsed LSA; `lsa.header.age` is the age at `installed_at`.
    pub lsa: Lsa,
    /// The encoded LSA (age field as at installation).
    pub raw: Arc<[u8]>,
    pub installed_at: Time,
    /// Whether the instance came by flooding (MinLSArrival counts from
    /// it), not from our own origination nor in answer to our Link State
    /// Request during a database exchange.
    pub received: bool,
}

impl LsaEntry {
    /// Build an entry from a parsed LSA and its bytes.
    pub fn new(lsa: Lsa, raw: Arc<[u8]>, now: Time, received: bool) -> Self {
        LsaEntry {
            lsa,
            raw,
            installed_at: now,
            received,
        }
    }

    /// Return the age at `now` (RFC 2328 §12.1.1), capped at MaxAge.
    pub fn age(&self, now: Time) -> u16 {
        let age = self.lsa.header.age;
        if age >= MAX_AGE {
            return MAX_AGE;
        }
        let elapsed = now.since(self.installed_at) / 1000;
        u64::from(age)
            .saturating_add(elapsed)
            .min(u64::from(MAX_AGE)) as u16
    }

    /// Return the header with the age at `now`.
    pub fn header_at(&self, now: Time) -> LsaHeader {
        LsaHeader {
            age: self.age(now),
            ..self.lsa.header
        }
    }

    /// Return a copy of the bytes ready to transmit: age at `now` plus
    /// InfTransDelay (RFC 2328 §13.3 step 5).
    pub fn aged_copy(&self, now: Time) -> Vec<u8> {
        let mut v = self.raw.to_vec();
        let age = self.age(now).saturating_add(INF_TRANS_DELAY).min(MAX_AGE);
        put_u16(&mut v, AGE_OFFSET, age);
        v
    }

    /// Return whether the entry has reached MaxAge at `now`.
    pub fn is_max_age(&self, now: Time) -> bool {
        self.age(now) >= MAX_AGE
    }

    /// Return the time the entry reaches `age` seconds.
    pub fn reaches(&self, age: u16) -> Time {
        let left = u64::from(age.saturating_sub(self.lsa.header.age));
        self.installed_at.plus_ms(left * 1000)
    }

    /// Turn the entry into its MaxAge instance at `now` (premature aging or
    /// natural expiry).
    pub fn set_max_age(&mut self, now: Time) {
        self.lsa.header.age = MAX_AGE;
        let mut v = self.raw.to_vec();
        put_u16(&mut v, AGE_OFFSET, MAX_AGE);
        self.raw = v.into();
        self.installed_at = now;
    }
}

/// A map of LSAs of one scope.
pub type LsaMap = BTreeMap<LsaKey, LsaEntry>;

/// The whole database of the instance.
#[derive(Debug, Clone, Default)]
pub struct Lsdb {
    area: LsaMap,
    as_scope: LsaMap,
    link: BTreeMap<u32, LsaMap>,
    /// Bumped whenever an instance is installed or removed, so an observer
    /// can tell the database changed without comparing it.
    changes: u64,
    /// Entries per advertising router, and in all: what the limits count.
    per_router: std::collections::HashMap<Ipv4Addr, usize>,
    total: usize,
}

impl Lsdb {
    /// Return an empty database.
    pub fn new() -> Self {
        Self::default()
    }

    /// Return the area-scope LSAs (Router, Network, Intra-Area-Prefix, ...).
    pub fn area(&self) -> &LsaMap {
        &self.area
    }

    /// Return the AS-scope LSAs.
    pub fn as_scope(&self) -> &LsaMap {
        &self.as_scope
    }

    /// Return the link-scope LSAs of an interface.
    pub fn link(&self, ifindex: u32) -> Option<&LsaMap> {
        self.link.get(&ifindex)
    }

    /// Iterate over every link-scope map.
    pub fn links(&self) -> impl Iterator<Item = (u32, &LsaMap)> {
        self.link.iter().map(|(i, m)| (*i, m))
    }

    fn map(&self, ifindex: u32, key: &LsaKey) -> Option<&LsaMap> {
        match key.ls_type.flooding_scope()? {
            LsaScope::Link => self.link.get(&ifindex),
            LsaScope::Area => Some(&self.area),
            LsaScope::As => Some(&self.as_scope),
            LsaScope::Reserved => None,
        }
    }

    fn map_mut(&mut self, ifindex: u32, key: &LsaKey) -> Option<&mut LsaMap> {
        match key.ls_type.flooding_scope()? {
            LsaScope::Link => Some(self.link.entry(ifindex).or_default()),
            LsaScope::Area => Some(&mut self.area),
            LsaScope::As => Some(&mut self.as_scope),
            LsaScope::Reserved => None,
        }
    }

    /// Look an LSA up; `ifindex` selects the link for link-scope types.
    pub fn get(&self, ifindex: u32, key: &LsaKey) -> Option<&LsaEntry> {
        self.map(ifindex, key)?.get(key)
    }

    pub(crate) fn get_mut(&mut self, ifindex: u32, key: &LsaKey) -> Option<&mut LsaEntry> {
        self.map_mut(ifindex, key)?.get_mut(key)
    }

    /// Install an entry, returning the instance it replaces.
    pub fn insert(&mut self, ifindex: u32, entry: LsaEntry) -> Option<LsaEntry> {
        let key = entry.lsa.header.key();
        let map = self.map_mut(ifindex, &key)?;
        let old = map.insert(key, entry);
        self.changes += 1;
        if old.is_none() {
            self.total += 1;
            *self.per_router.entry(key.adv_router).or_default() += 1;
        }
        old
    }

    /// Encode and install an LSA (for tests, benchmarks and tools): length
    /// and checksum are computed.
    pub fn insert_lsa(&mut self, ifindex: u32, mut lsa: Lsa, now: Time) -> Option<LsaEntry> {
        let raw = lsa.encode();
        self.insert(ifindex, LsaEntry::new(lsa, raw.into(), now, true))
    }

    /// Remove an entry.
    pub fn remove(&mut self, ifindex: u32, key: &LsaKey) -> Option<LsaEntry> {
        let old = self.map_mut(ifindex, key)?.remove(key);
        if old.is_some() {
            self.changes += 1;
            self.uncount(key.adv_router);
        }
        old
    }

    fn uncount(&mut self, router: Ipv4Addr) {
        self.total = self.total.saturating_sub(1);
        if let std::collections::hash_map::Entry::Occupied(mut e) = self.per_router.entry(router) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    /// Return how many entries `router` advertises.
    pub fn count_of(&self, router: Ipv4Addr) -> usize {
        self.per_router.get(&router).copied().unwrap_or(0)
    }

    /// Forget the link-scope LSAs of an interface that went down.
    pub(crate) fn drop_link_scope(&mut self, ifindex: u32) {
        if let Some(map) = self.link.remove(&ifindex) {
            self.changes += 1;
            for k in map.keys() {
                self.uncount(k.adv_router);
            }
        }
    }

    /// Return how many times an instance was installed or removed.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Return (keys to describe, MaxAge keys to send instead) for a DD
    /// exchange on `ifindex`.
    pub(crate) fn summary_keys(&self, ifindex: u32, now: Time) -> (Vec<LsaKey>, Vec<LsaKey>) {
        let mut keys = Vec::new();
        let mut max_age = Vec::new();
        let link = self.link.get(&ifindex).into_iter().flat_map(|m| m.iter());
        for (k, e) in link.chain(self.area.iter()).chain(self.as_scope.iter()) {
            if e.is_max_age(now) {
                max_age.push(*k);
            } else {
                keys.push(*k);
            }
        }
        (keys, max_age)
    }

    /// Iterate over every entry with the interface of link-scope ones.
    pub fn iter(&self) -> impl Iterator<Item = (Option<u32>, &LsaEntry)> {
        self.link
            .iter()
            .flat_map(|(i, m)| m.values().map(move |e| (Some(*i), e)))
            .chain(self.area.values().map(|e| (None, e)))
            .chain(self.as_scope.values().map(|e| (None, e)))
    }

    /// Return the keys (with interface for link scope) of all entries
    /// advertised by `router`.
    pub(crate) fn keys_of(&self, router: Ipv4Addr) -> Vec<(u32, LsaKey)> {
        self.iter()
            .filter(|(_, e)| e.lsa.header.adv_router == router)
            .map(|(i, e)| (i.unwrap_or(0), e.lsa.header.key()))
            .collect()
    }

    /// Return the number of entries.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Return whether the database is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
