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

/// What the agent samples every second that may betray another router
/// with our id (all counters are running counts of the OSPF instance).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DupEvidence {
    /// Milliseconds on the agent's clock.
    pub now_ms: u64,
    /// Links to our id in reachable routers' Router-LSAs that none of our
    /// adjacencies explains (`routing::state::Summary::foreign_links`).
    pub foreign_links: usize,
    /// Newer copies of our own LSAs with content we never originated.
    pub foreign_content: u64,
    /// Packets with our id that passed authentication.
    pub own_id_authenticated: u64,
}

/// Decides from [`DupEvidence`] samples that another router uses our id,
/// only on evidence nothing but a second live router can produce, and
/// only after it held for [`DupDetector::hold_ms`]:
///
/// - **a router elsewhere** (RFC 2328 §13.4): reachable routers list links
///   to our id that are not ours, in every sample of the hold-down, and
///   copies of our own LSAs with content we never sent keep arriving (the
///   two routers fight over them). A forged LSA of ours alone (content,
///   no links) or a forged link alone proves nothing; a router SPF does
///   not reach is not heard at all;
/// - **a neighbour** (cloned disks cabled together): packets with our id
///   that passed authentication keep coming for the hold-down. Only a
///   holder of the mesh's key can send them. Without authentication a
///   Hello proves nothing, since anyone can send one.
///
/// Sequence numbers alone never count: an adjacency that flaps makes us
/// re-originate as much as a fight does.
#[derive(Debug, Clone, Default)]
pub struct DupDetector {
    hold_ms: u64,
    links_since: Option<u64>,
    last_content: Option<u64>,
    content_rises: Vec<u64>,
    last_auth: Option<u64>,
    auth_since: Option<u64>,
    auth_last_rise: u64,
}

impl DupDetector {
    /// Copies of our LSAs with foreign content the hold-down must see.
    pub const FIGHT_ROUNDS: usize = 2;
    /// The shortest hold-down.
    pub const MIN_HOLD_MS: u64 = 20_000;
    /// A pause in the authenticated packets with our id this long ends a
    /// neighbour's case.
    pub const GAP_MS: u64 = 5_000;

    /// Start with no history; the hold-down is at least four dead
    /// intervals (`dead_ms`), so an adjacency that went down is gone from
    /// everyone's LSAs before a link to us counts.
    pub fn new(dead_ms: u64) -> Self {
        DupDetector {
            hold_ms: (4 * dead_ms).max(Self::MIN_HOLD_MS),
            ..Self::default()
        }
    }

    /// How long evidence must hold.
    pub fn hold_ms(&self) -> u64 {
        self.hold_ms
    }

    /// Forget the history (after the router id changed).
    pub fn reset(&mut self) {
        *self = DupDetector {
            hold_ms: self.hold_ms,
            ..DupDetector::default()
        };
    }

    /// Feed one sample; return whether a duplicate is now established.
    pub fn sample(&mut self, ev: &DupEvidence) -> bool {
        let now = ev.now_ms;
        // A router elsewhere.
        if ev.foreign_links > 0 {
            self.links_since.get_or_insert(now);
        } else {
            self.links_since = None;
        }
        // The counters start over with each OSPF instance: only rises count.
        if let Some(before) = self.last_content.replace(ev.foreign_content)
            && ev.foreign_content > before
        {
            self.content_rises.push(now);
        }
        self.content_rises
            .retain(|t| now.saturating_sub(*t) <= self.hold_ms);
        let far = self
            .links_since
            .is_some_and(|since| now.saturating_sub(since) >= self.hold_ms)
            && self.content_rises.len() >= Self::FIGHT_ROUNDS;
        // A neighbour, authenticated.
        if let Some(before) = self.last_auth.replace(ev.own_id_authenticated)
            && ev.own_id_authenticated > before
        {
            self.auth_since.get_or_insert(now);
            self.auth_last_rise = now;
        } else if now.saturating_sub(self.auth_last_rise) > Self::GAP_MS {
            self.auth_since = None;
        }
        let near = self
            .auth_since
            .is_some_and(|since| now.saturating_sub(since) >= self.hold_ms);
        far || near
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

    fn ev(now_ms: u64, foreign_links: usize, foreign_content: u64, auth: u64) -> DupEvidence {
        DupEvidence {
            now_ms,
            foreign_links,
            foreign_content,
            own_id_authenticated: auth,
        }
    }

    #[test]
    fn a_far_duplicate_needs_foreign_links_and_a_fight_held_for_the_hold_down() {
        let mut d = DupDetector::new(3_000);
        assert_eq!(d.hold_ms(), 20_000);
        let mut content = 0;
        let mut settled = None;
        for t in 0..40u64 {
            content += u64::from(t % 5 == 0);
            if d.sample(&ev(t * 1_000, 1, content, 0)) {
                settled = Some(t);
                break;
            }
        }
        assert_eq!(settled, Some(20), "after the hold-down, not before");
        // Links alone (a forged Router-LSA naming us), or content alone
        // (forged LSAs of ours, our own after a restart): never.
        let mut d = DupDetector::new(3_000);
        for t in 0..100u64 {
            assert!(!d.sample(&ev(t * 1_000, 1, 0, 0)));
        }
        let mut d = DupDetector::new(3_000);
        for t in 0..100u64 {
            assert!(!d.sample(&ev(t * 1_000, 0, t, 0)));
        }
        // Links that come and go (adjacencies settling) restart the count.
        let mut d = DupDetector::new(3_000);
        for t in 0..100u64 {
            assert!(!d.sample(&ev(t * 1_000, usize::from(t % 15 != 0), t, 0)));
        }
    }

    #[test]
    fn an_authenticated_neighbour_with_our_id_settles_it_after_the_hold_down() {
        let mut d = DupDetector::new(3_000);
        let mut settled = None;
        for t in 0..40u64 {
            if d.sample(&ev(t * 1_000, 0, 0, t)) {
                settled = Some(t);
                break;
            }
        }
        assert_eq!(settled, Some(21), "20 s after the first rise");
        // Bursts with long pauses (replayed packets, say) never do.
        let mut d = DupDetector::new(3_000);
        let mut n = 0;
        for t in 0..200u64 {
            n += u64::from(t % 10 == 0);
            assert!(!d.sample(&ev(t * 1_000, 0, 0, n)), "at {t}");
        }
    }
}
