//! BFD (RFC 5880) for single-hop IPv6 over link-local addresses (RFC
//! 5881), as a sans-IO core: the caller hands in received datagrams with
//! their hop limit, interface and source, and the time; it sends what
//! [`Bfd::poll`] returns and comes back at [`Bfd::next_deadline_us`]. The
//! agent drives it from a thread of its own (`meshfwd`'s BFD runtime).
//!
//! Sessions are keyed by (interface, peer link-local address): one per
//! OSPF neighbour, created by the client (RFC 5882).

pub mod packet;
pub mod session;

use std::{collections::BTreeMap, net::Ipv6Addr};

use serde::{Deserialize, Serialize};

pub use packet::{ControlRepr, Diag, Discard, State};
pub use session::{Change, Counters, Session, Timers};

/// The UDP port BFD Control packets go to (RFC 5881 §4).
pub const CONTROL_PORT: u16 = 3784;
/// The hop limit sent, and required of what arrives (RFC 5881 §5).
pub const HOP_LIMIT: u8 = 255;

/// A session's key: the interface and the peer's link-local address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    pub ifindex: u32,
    pub peer: Ipv6Addr,
}

/// A packet to send: to `key.peer` port [`CONTROL_PORT`] on
/// `key.ifindex`, hop limit [`HOP_LIMIT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub key: Key,
    pub packet: [u8; packet::LEN],
}

/// A session's state change for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionChange {
    pub key: Key,
    pub change: Change,
}

/// One session as `show bfd` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub key: Key,
    pub state: State,
    pub remote_state: State,
    pub diag: Diag,
    pub local_disc: u32,
    pub remote_disc: u32,
    /// What it was asked to run at.
    pub timers: Timers,
    /// The interval its packets go at, as negotiated.
    pub tx_interval_us: u32,
    /// The time without a packet after which it goes Down.
    pub detect_time_us: u64,
    pub counters: Counters,
}

/// Every session of a node, and the packets no session took.
#[derive(Debug, Clone, Default)]
pub struct Bfd {
    sessions: BTreeMap<Key, Session>,
    by_disc: BTreeMap<u32, Key>,
    next_disc: u32,
    discards: BTreeMap<Discard, u64>,
}

impl Bfd {
    /// Start with no sessions; local discriminators count up from
    /// `first_disc` (a restarted process should pick another range, so a
    /// peer's packets for the old session are not taken for the new).
    pub fn new(first_disc: u32) -> Bfd {
        Bfd {
            next_disc: first_disc.max(1),
            ..Bfd::default()
        }
    }

    /// Add a session (a no-op if it exists; its timers are then updated
    /// the next time it comes Up).
    pub fn add(&mut self, key: Key, timers: Timers, now_us: u64) {
        if self.sessions.contains_key(&key) {
            return;
        }
        let mut disc = self.next_disc;
        while disc == 0 || self.by_disc.contains_key(&disc) {
            disc = disc.wrapping_add(1);
        }
        self.next_disc = disc.wrapping_add(1);
        self.sessions
            .insert(key, Session::new(disc, timers, now_us));
        self.by_disc.insert(disc, key);
    }

    /// Take over a session an earlier run left Up (see
    /// [`Session::adopted`]); a no-op if the key or discriminator is taken.
    pub fn adopt(
        &mut self,
        key: Key,
        local_disc: u32,
        remote_disc: u32,
        timers: Timers,
        now_us: u64,
    ) {
        if local_disc == 0
            || self.sessions.contains_key(&key)
            || self.by_disc.contains_key(&local_disc)
        {
            return;
        }
        self.sessions.insert(
            key,
            Session::adopted(local_disc, remote_disc, timers, now_us),
        );
        self.by_disc.insert(local_disc, key);
    }

    /// Remove a session (its neighbour is gone); return whether it was
    /// there.
    pub fn remove(&mut self, key: &Key) -> bool {
        match self.sessions.remove(key) {
            Some(s) => {
                self.by_disc.remove(&s.local_disc());
                true
            }
            None => false,
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.sessions.keys()
    }

    pub fn session(&self, key: &Key) -> Option<&Session> {
        self.sessions.get(key)
    }

    /// Take every session administratively down (a planned stop): each
    /// sends AdminDown at once, which its peer's clients ignore.
    pub fn shutdown_all(&mut self, now_us: u64) {
        for s in self.sessions.values_mut() {
            s.shutdown(now_us);
        }
    }

    /// Take one datagram that arrived on `ifindex` from `src` with
    /// `hop_limit`; return the state change it caused, or why it was
    /// discarded (also counted).
    pub fn receive(
        &mut self,
        now_us: u64,
        ifindex: u32,
        src: Ipv6Addr,
        hop_limit: u8,
        data: &[u8],
    ) -> Result<Option<SessionChange>, Discard> {
        let result = self.demux(now_us, ifindex, src, hop_limit, data);
        if let Err(d) = result {
            *self.discards.entry(d).or_default() += 1;
        }
        result
    }

    fn demux(
        &mut self,
        now_us: u64,
        ifindex: u32,
        src: Ipv6Addr,
        hop_limit: u8,
        data: &[u8],
    ) -> Result<Option<SessionChange>, Discard> {
        if hop_limit != HOP_LIMIT {
            return Err(Discard::HopLimit);
        }
        let p = ControlRepr::parse(data)?;
        let here = Key { ifindex, peer: src };
        let key = if p.your_disc != 0 {
            let key = *self
                .by_disc
                .get(&p.your_disc)
                .ok_or(Discard::UnknownDiscriminator)?;
            // RFC 5881 §3: single hop sessions are also bound to the link
            // and the peer's address.
            if key != here {
                return Err(Discard::WrongPeer);
            }
            key
        } else {
            let s = self.sessions.get(&here).ok_or(Discard::NoSession)?;
            if !matches!(s.state(), State::Down | State::AdminDown) {
                return Err(Discard::ZeroYourDiscriminator);
            }
            here
        };
        let session = self.sessions.get_mut(&key).ok_or(Discard::NoSession)?;
        Ok(session
            .receive(now_us, &p)?
            .map(|change| SessionChange { key, change }))
    }

    /// Expire detection times and return the state changes and the packets
    /// due at `now_us`.
    pub fn poll(&mut self, now_us: u64) -> (Vec<SessionChange>, Vec<Transmit>) {
        let mut changes = Vec::new();
        let mut out = Vec::new();
        for (key, s) in &mut self.sessions {
            if let Some(change) = s.check_detection(now_us) {
                changes.push(SessionChange { key: *key, change });
            }
            if let Some(p) = s.transmit(now_us) {
                out.push(Transmit {
                    key: *key,
                    packet: p.emit(),
                });
            }
        }
        (changes, out)
    }

    /// When [`Bfd::poll`] next has work (`u64::MAX`: none).
    pub fn next_deadline_us(&self) -> u64 {
        self.sessions
            .values()
            .map(Session::next_deadline_us)
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Every session, for `show bfd`.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.sessions
            .iter()
            .map(|(key, s)| SessionInfo {
                key: *key,
                state: s.state(),
                remote_state: s.remote_state(),
                diag: s.diag(),
                local_disc: s.local_disc(),
                remote_disc: s.remote_disc(),
                timers: s.timers(),
                tx_interval_us: s.tx_interval_us(),
                detect_time_us: s.detect_time_us(),
                counters: s.counters,
            })
            .collect()
    }

    /// Packets dropped, by reason.
    pub fn discards(&self) -> &BTreeMap<Discard, u64> {
        &self.discards
    }
}

#[cfg(test)]
mod tests;
