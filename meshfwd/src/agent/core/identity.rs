//! The node's OSPF router id: configured, or derived with no one's help
//! from `/etc/machine-id` (or, lacking one, the first universal MAC), and
//! re-derived when another router turns out to use the same id.
//!
//! Derivation is a stable hash, so a node keeps its id (and with it its
//! pod prefix, see [`super::prefixes`]) across restarts. Cloned disk images
//! share a machine id, so a collision must be expected; it is resolved by
//! drawing a fresh id from the seed and a random salt, which two colliding
//! nodes will not draw alike.

use std::{collections::BTreeSet, net::Ipv4Addr};

use meshfwd_common::hash::stable_hash;
use serde::{Deserialize, Serialize};

/// Where the router id came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "from")]
pub enum IdSource {
    /// Set in the configuration.
    Configured,
    /// Hashed from the machine id in this file.
    MachineId(String),
    /// Hashed from this interface's universal MAC.
    Mac(String),
    /// Random: no machine id and no universal MAC.
    Random,
}

/// The node's identity and how it was obtained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub router_id: Ipv4Addr,
    pub source: IdSource,
    /// How many times a collision forced a new id.
    pub rederived: u32,
    #[serde(skip)]
    seed: Vec<u8>,
}

impl Identity {
    /// Use a configured router id (never re-derived: the operator chose it).
    pub fn configured(router_id: Ipv4Addr) -> Self {
        Identity {
            router_id,
            source: IdSource::Configured,
            rederived: 0,
            seed: Vec::new(),
        }
    }

    /// Derive the id from `seed` (the machine id's or MAC's bytes).
    pub fn derived(seed: &[u8], source: IdSource) -> Self {
        Identity {
            router_id: router_id_from(seed, 0),
            source,
            rederived: 0,
            seed: seed.to_vec(),
        }
    }

    /// Derive the id from the machine id (the file's name and what it
    /// holds, when it could be read), else from the first universal MAC in
    /// `macs` (name, address; in a stable order), else from `random`.
    pub fn discover(
        machine_id_file: Option<(&str, &str)>,
        macs: &[(String, [u8; 6])],
        random: u64,
    ) -> Self {
        if let Some((path, id)) =
            machine_id_file.and_then(|(path, text)| Some((path, machine_id(text)?)))
        {
            return Identity::derived(id.as_bytes(), IdSource::MachineId(path.to_owned()));
        }
        if let Some((name, mac)) = macs.iter().find(|(_, mac)| is_universal_mac(mac)) {
            return Identity::derived(mac, IdSource::Mac(name.clone()));
        }
        Identity::derived(&random.to_be_bytes(), IdSource::Random)
    }

    /// Return whether a collision may change the id (not when configured).
    pub fn can_rederive(&self) -> bool {
        self.source != IdSource::Configured
    }

    /// Pick a new id after a collision, different from every id in `avoid`
    /// (the LSDB's routers) and from the current one; return it.
    pub fn rederive(&mut self, salt: u64, avoid: &BTreeSet<Ipv4Addr>) -> Ipv4Addr {
        let old = self.router_id;
        let mut seed = self.seed.clone();
        seed.extend_from_slice(&salt.to_be_bytes());
        for attempt in 0..1024 {
            let id = router_id_from(&seed, attempt);
            if id != old && !avoid.contains(&id) {
                self.router_id = id;
                break;
            }
        }
        self.rederived += 1;
        self.router_id
    }
}

/// Return the machine id in `text` if it is a usable one (systemd writes
/// "uninitialized" before first boot completes).
pub fn machine_id(text: &str) -> Option<&str> {
    let id = text.trim();
    (!id.is_empty() && id != "uninitialized" && id.bytes().any(|b| b != b'0')).then_some(id)
}

/// Return whether `mac` is a universally administered unicast address.
pub fn is_universal_mac(mac: &[u8; 6]) -> bool {
    mac[0] & 0x03 == 0 && mac.iter().any(|b| *b != 0)
}

/// Hash `seed` and `attempt` into a router id, never 0.0.0.0 or
/// 255.255.255.255.
pub fn router_id_from(seed: &[u8], attempt: u32) -> Ipv4Addr {
    for extra in 0u32..16 {
        let h = stable_hash(&[
            b"kubermesh/router-id",
            seed,
            &attempt.to_be_bytes(),
            &extra.to_be_bytes(),
        ]);
        let id = (h ^ (h >> 32)) as u32;
        if id != 0 && id != u32::MAX {
            return Ipv4Addr::from(id);
        }
    }
    Ipv4Addr::new(10, 255, 255, 254)
}

/// What makes us re-originate our LSAs: our pod prefix, our interfaces'
/// states and our neighbours' states.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    pub pod_prefix: ipnet::Ipv6Net,
    pub interfaces: Vec<(u32, routing::interface::ism::State)>,
    pub neighbors: Vec<(u32, Ipv4Addr, routing::neighbor::nsm::State)>,
}

/// What the agent sees at one moment that can betray a duplicate router id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DupEvidence {
    /// Milliseconds on the agent's clock.
    pub now_ms: u64,
    /// Packets dropped so far because they carried our own router id (a
    /// direct neighbour uses it): a running counter.
    pub own_id_packets: u64,
    /// The sequence numbers of our area-scope LSAs (router, intra-area
    /// prefix) in the LSDB, added up: it grows with every re-origination.
    pub own_lsa_seqs: Option<u64>,
    /// Anything that makes us re-originate those LSAs.
    pub topology: Topology,
    /// Newer instances of our own LSAs received again after we had already
    /// re-originated them (the OSPF core's `self_originated_repeat`): a
    /// running counter.
    pub own_lsa_repeats: u64,
}

/// Decides from [`DupEvidence`] samples that another router uses our id.
///
/// A neighbour sending with our id is proof at once. A router elsewhere
/// with our id shows as a fight over our LSAs (RFC 2328 §13.4): each side
/// takes the other's instance for a stale one of its own and re-originates
/// with a higher sequence number, every MinLSInterval. So our LSAs'
/// sequence numbers keep climbing while nothing of ours changed;
/// [`DupDetector::FIGHT_BUMPS`] such bumps within
/// [`DupDetector::WINDOW_MS`] settle it.
///
/// The OSPF core counts the fight directly: a newer copy of one of our
/// LSAs arriving again after we re-originated it (the first one may be a
/// leftover of our previous life). [`DupDetector::FIGHT_BUMPS`] of those
/// within [`DupDetector::REPEAT_WINDOW_MS`] settle it too, sooner than the
/// sequence numbers (which a snapshot may catch between two bumps).
#[derive(Debug, Clone, Default)]
pub struct DupDetector {
    last_own_id_packets: Option<u64>,
    last_repeats: Option<u64>,
    repeats: Vec<u64>,
    last_seq: Option<u64>,
    last_topology: Option<Topology>,
    last_change_ms: u64,
    unexplained: Vec<u64>,
}

impl DupDetector {
    /// Unexplained re-originations that prove a fight.
    pub const FIGHT_BUMPS: usize = 3;
    /// Window the bumps must fall into.
    pub const WINDOW_MS: u64 = 60_000;
    /// A bump this soon after a change of ours is explained by it
    /// (origination may wait MinLSInterval, 5 s).
    pub const QUIET_MS: u64 = 6_000;
    /// Window the core's repeated newer self-originated LSAs must fall into.
    pub const REPEAT_WINDOW_MS: u64 = 30_000;

    /// Start with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget the history (after the router id changed).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Feed one sample; return whether a duplicate is now established.
    pub fn sample(&mut self, ev: &DupEvidence) -> bool {
        let before = self.last_own_id_packets.replace(ev.own_id_packets);
        if before.is_some_and(|b| ev.own_id_packets > b) {
            return true;
        }
        // The counter starts over with each OSPF instance: only a rise counts.
        let before = self.last_repeats.replace(ev.own_lsa_repeats);
        if let Some(b) = before
            && ev.own_lsa_repeats > b
        {
            let rise = (ev.own_lsa_repeats - b).min(Self::FIGHT_BUMPS as u64);
            self.repeats
                .extend(std::iter::repeat_n(ev.now_ms, rise as usize));
        }
        self.repeats
            .retain(|t| ev.now_ms.saturating_sub(*t) <= Self::REPEAT_WINDOW_MS);
        if self.repeats.len() >= Self::FIGHT_BUMPS {
            return true;
        }
        if self.last_topology.as_ref() != Some(&ev.topology) {
            self.last_topology = Some(ev.topology.clone());
            self.last_change_ms = ev.now_ms;
        }
        let old_seq = std::mem::replace(&mut self.last_seq, ev.own_lsa_seqs);
        if let (Some(old), Some(new)) = (old_seq, ev.own_lsa_seqs)
            && new != old
            && ev.now_ms.saturating_sub(self.last_change_ms) > Self::QUIET_MS
        {
            self.unexplained.push(ev.now_ms);
        }
        self.unexplained
            .retain(|t| ev.now_ms.saturating_sub(*t) <= Self::WINDOW_MS);
        self.unexplained.len() >= Self::FIGHT_BUMPS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MACHINE_ID: &str = "4c4c4544003957108052b4c04f384833\n";

    #[test]
    fn same_machine_id_same_router_id() {
        let a = Identity::derived(machine_id(MACHINE_ID).unwrap().as_bytes(), IdSource::Random);
        let b = Identity::derived(b"4c4c4544003957108052b4c04f384833", IdSource::Random);
        assert_eq!(a.router_id, b.router_id);
        let c = Identity::derived(b"4c4c4544003957108052b4c04f384834", IdSource::Random);
        assert_ne!(a.router_id, c.router_id);
    }

    #[test]
    fn router_id_is_pinned_across_builds() {
        // A changed hash would renumber every node of a running cluster.
        assert_eq!(
            router_id_from(b"4c4c4544003957108052b4c04f384833", 0),
            Ipv4Addr::new(4, 165, 29, 125)
        );
    }

    #[test]
    fn unusable_machine_ids() {
        assert_eq!(machine_id(""), None);
        assert_eq!(machine_id("uninitialized\n"), None);
        assert_eq!(machine_id("00000000000000000000000000000000"), None);
        assert_eq!(machine_id(" abc \n"), Some("abc"));
    }

    #[test]
    fn universal_macs() {
        assert!(is_universal_mac(&[0x00, 0x1b, 0x21, 1, 2, 3]));
        assert!(!is_universal_mac(&[0x02, 0x1b, 0x21, 1, 2, 3])); // locally administered
        assert!(!is_universal_mac(&[0x01, 0x00, 0x5e, 1, 2, 3])); // multicast
        assert!(!is_universal_mac(&[0; 6]));
    }

    #[test]
    fn discover_prefers_machine_id_then_mac() {
        let file = "/etc/machine-id";
        let macs = vec![
            ("eth0".to_string(), [0x02, 0, 0, 0, 0, 1]),
            ("eth1".to_string(), [0x00, 0x1b, 0x21, 1, 2, 3]),
        ];
        let by_file = Identity::discover(Some((file, MACHINE_ID)), &macs, 7);
        assert_eq!(by_file.source, IdSource::MachineId(file.into()));
        let by_mac = Identity::discover(Some((file, "uninitialized\n")), &macs, 7);
        assert_eq!(by_mac.source, IdSource::Mac("eth1".into()));
        assert_eq!(
            by_mac.router_id,
            router_id_from(&[0x00, 0x1b, 0x21, 1, 2, 3], 0)
        );
        let random = Identity::discover(None, &macs[..1], 7);
        assert_eq!(random.source, IdSource::Random);
        assert_eq!(random, Identity::discover(None, &macs[..1], 7));
        assert_ne!(
            random.router_id,
            Identity::discover(None, &macs[..1], 8).router_id
        );
    }

    #[test]
    fn rederive_avoids_known_ids_and_salts_apart() {
        let mut a = Identity::derived(b"clone", IdSource::Random);
        let mut b = a.clone();
        let first = a.router_id;
        let avoid: BTreeSet<Ipv4Addr> = [first].into();
        let na = a.rederive(1, &avoid);
        let nb = b.rederive(2, &avoid);
        assert_ne!(na, first);
        assert_ne!(na, nb, "two clones drawing different salts must part");
        assert_eq!(a.rederived, 1);
        assert!(!Identity::configured(Ipv4Addr::new(10, 0, 0, 1)).can_rederive());
        assert!(a.can_rederive());
    }

    #[test]
    fn neighbour_with_our_id_is_a_duplicate_at_once() {
        let mut d = DupDetector::new();
        let ev = |own_id_packets| DupEvidence {
            own_id_packets,
            ..Default::default()
        };
        assert!(!d.sample(&ev(4)));
        assert!(!d.sample(&ev(4)));
        assert!(d.sample(&ev(5)));
    }

    #[test]
    fn sequence_fight_is_a_duplicate_but_our_own_changes_are_not() {
        // Topology number `n`: a different pod prefix for each.
        let topo = |n: u64| Topology {
            pod_prefix: ipnet::Ipv6Net::new_assert(
                std::net::Ipv6Addr::from(u128::from(n) << 64),
                64,
            ),
            ..Topology::default()
        };
        let ev = |now_ms, seq: u64, topology| DupEvidence {
            now_ms,
            own_id_packets: 0,
            own_lsa_seqs: Some(0x8000_0000 + seq),
            topology: topo(topology),
            own_lsa_repeats: 0,
        };
        // Our neighbours change, and the LSA follows: explained.
        let mut d = DupDetector::new();
        assert!(!d.sample(&ev(0, 1, 1)));
        for i in 1..20u64 {
            assert!(
                !d.sample(&ev(i * 10_000, i + 1, i)),
                "bump {i} follows a change"
            );
        }
        // Nothing of ours changes, yet the LSA keeps being re-originated.
        let mut d = DupDetector::new();
        assert!(!d.sample(&ev(0, 1, 7)));
        assert!(!d.sample(&ev(10_000, 2, 7)));
        assert!(!d.sample(&ev(15_000, 3, 7)));
        assert!(d.sample(&ev(20_000, 4, 7)));
        // One refresh now and then is not a fight.
        let mut d = DupDetector::new();
        for i in 0..10u64 {
            assert!(!d.sample(&ev(i * 40_000, i, 7)));
        }
    }

    #[test]
    fn repeated_newer_own_lsas_are_a_duplicate() {
        let ev = |now_ms, own_lsa_repeats| DupEvidence {
            now_ms,
            own_lsa_repeats,
            ..Default::default()
        };
        // Three repeats within the window, one at a time.
        let mut d = DupDetector::new();
        assert!(!d.sample(&ev(0, 0)));
        assert!(!d.sample(&ev(5_000, 1)));
        assert!(!d.sample(&ev(10_000, 2)));
        assert!(d.sample(&ev(15_000, 3)));
        // Spread too thin: not a fight.
        let mut d = DupDetector::new();
        assert!(!d.sample(&ev(0, 0)));
        for i in 1..10u64 {
            assert!(!d.sample(&ev(i * 20_000, i)), "repeat {i}");
        }
        // A counter already high at the first sample (or after an OSPF
        // restart) is a baseline, not a rise.
        let mut d = DupDetector::new();
        assert!(!d.sample(&ev(0, 50)));
        assert!(!d.sample(&ev(1_000, 0)));
        assert!(!d.sample(&ev(2_000, 1)));
    }
}
