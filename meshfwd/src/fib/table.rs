//! The compiled IPv6 lookup table (`meshfwd_common::fib::table`): built
//! from the FIB by [`compile`], written into the idle region and made live
//! by [`Publisher`].
//!
//! The table is a multibit trie with 8-bit strides: group 0 is indexed by
//! an address's first byte, and each entry either holds the FIB entry of
//! the longest prefix covering its range (a leaf) or points at the group
//! for the next byte. Prefixes are inserted shortest first, so a prefix
//! only ever overwrites leaves of shorter ones (leaf pushing), and a prefix
//! whose entry equals that of its covering prefix adds nothing and is left
//! out: a node's /128 behind the same next hops as its /64 costs no group.
//!
//! Group numbers are kept from one build of a region to the next (a group
//! is known by the address bytes that lead to it), so a route change
//! rewrites only the entries that differ.
//!
//! The IPv4 table is the same compiler over IPv4-mapped prefixes
//! ([`ipv4_mapped`]), in maps of its own with fewer groups.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::{Doing as _, Result};
use meshfwd_common::fib::{
    FibEntry, addr_words,
    table::{self as layout, Head},
};

use dataplane::maps::TableMaps;
use ipnet::{Ipv4Net, Ipv6Net};

/// Where a group sits: its level (the index of the address byte it is
/// indexed by) and the address bytes before that level.
type Path = (u8, [u8; 16]);

const ROOT: Path = (0, [0; 16]);

/// How long a region stays untouched after it stops being live, so a
/// lookup that read the old root finishes before its groups change. XDP
/// lookups take nanoseconds; this is generous.
const RETIRE: Duration = Duration::from_millis(2);

/// A table too big for one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooBig {
    /// Groups the FIB needs.
    pub groups: usize,
    /// Groups a region has.
    pub room: u32,
}

impl std::fmt::Display for TooBig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the compiled table needs {} groups, more than the {} of a region",
            self.groups, self.room
        )
    }
}

/// Return an IPv4 prefix as the IPv4-mapped IPv6 prefix the IPv4 table is
/// compiled from (`198.18.3.0/24` is `::ffff:198.18.3.0/120`).
pub fn ipv4_mapped(p: Ipv4Net) -> Ipv6Net {
    Ipv6Net::new_assert(p.network().to_ipv6_mapped(), 96 + p.prefix_len())
}

impl std::error::Error for TooBig {}

/// A compiled table: groups by number, the number of each path, and the
/// head that skips the groups every route shares.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    pub groups: BTreeMap<u32, [u32; 256]>,
    pub ids: HashMap<Path, u32>,
    pub head: Head,
}

impl Compiled {
    /// Look `addr` up the way the XDP program does (the tests' model).
    #[cfg(test)]
    pub fn lookup(&self, addr: std::net::Ipv6Addr) -> FibEntry {
        let bytes = addr.octets();
        let (level, mut group) = self.head.start(&addr_words(&bytes));
        for &byte in &bytes[level as usize..] {
            let Some(entries) = self.groups.get(&group) else {
                return FibEntry::default();
            };
            let e = entries[usize::from(byte)];
            if e & layout::POINTER == 0 {
                return layout::entry(e);
            }
            group = e & layout::INDEX_MASK;
        }
        FibEntry::default()
    }
}

/// One entry while building: a leaf, or the index of a child node.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Leaf(u32),
    Child(usize),
}

struct Node {
    path: Path,
    slots: [Slot; 256],
}

/// Compile `routes` into a table of at most `room` groups, numbering
/// groups as `prev` did where their paths still exist. Entries of `kind` 0
/// (no route) are skipped.
pub fn compile<'a>(
    routes: impl IntoIterator<Item = (&'a Ipv6Net, &'a FibEntry)>,
    prev: &HashMap<Path, u32>,
    room: u32,
) -> Result<Compiled, TooBig> {
    let mut routes: Vec<(&Ipv6Net, &FibEntry)> =
        routes.into_iter().filter(|(_, e)| e.kind != 0).collect();
    // Shortest first: a prefix then only overwrites shorter prefixes' leaves.
    routes.sort_by_key(|(p, _)| (p.prefix_len(), p.addr()));

    let mut nodes = vec![Node {
        path: ROOT,
        slots: [Slot::Leaf(0); 256],
    }];
    for (prefix, entry) in routes {
        let leaf = layout::leaf(*entry);
        let bytes = prefix.addr().octets();
        if lookup_nodes(&nodes, &bytes) == leaf {
            continue;
        }
        let len = usize::from(prefix.prefix_len());
        let mut node = 0usize;
        let mut level = 0usize;
        // Descend through every byte the prefix covers in full, except
        // when it ends exactly on a byte boundary: then its last byte is
        // a range of one entry in the group of that byte.
        while len > 8 * (level + 1) {
            let b = usize::from(bytes[level]);
            node = match nodes[node].slots[b] {
                Slot::Child(c) => c,
                Slot::Leaf(covering) => {
                    let mut path = (level as u8 + 1, [0u8; 16]);
                    path.1[..=level].copy_from_slice(&bytes[..=level]);
                    nodes.push(Node {
                        path,
                        slots: [Slot::Leaf(covering); 256],
                    });
                    let c = nodes.len() - 1;
                    nodes[node].slots[b] = Slot::Child(c);
                    c
                }
            };
            level += 1;
        }
        // The last (partial) byte: 2^(8 - bits) entries.
        let bits = len - 8 * level;
        let span = 1usize << (8 - bits);
        let first = usize::from(bytes.get(level).copied().unwrap_or(0)) & !(span - 1);
        for slot in &mut nodes[node].slots[first..first + span] {
            // Shortest first means nothing below this level exists yet.
            debug_assert!(matches!(slot, Slot::Leaf(_)));
            *slot = Slot::Leaf(leaf);
        }
    }

    if nodes.len() > room as usize {
        return Err(TooBig {
            groups: nodes.len(),
            room,
        });
    }
    // Number the groups: the root is 0, known paths keep their number, new
    // ones take the lowest numbers left.
    let mut id_of = vec![u32::MAX; nodes.len()];
    let mut taken = vec![false; room as usize];
    id_of[0] = 0;
    taken[0] = true;
    for (i, n) in nodes.iter().enumerate().skip(1) {
        if let Some(&id) = prev.get(&n.path)
            && id != 0
            && id < room
            && !taken[id as usize]
        {
            id_of[i] = id;
            taken[id as usize] = true;
        }
    }
    let mut free = (0..room).filter(|&id| !taken[id as usize]);
    for id in id_of.iter_mut().filter(|id| **id == u32::MAX) {
        // Enough numbers: nodes.len() <= GROUPS was checked above.
        *id = free.next().unwrap_or(0);
    }

    // The head: follow the root down while a group has exactly one
    // pointer, i.e. while every route more specific than a leaf shares the
    // path.
    let (mut node, mut level) = (0usize, 0usize);
    while level < 15 {
        let mut children = nodes[node].slots.iter().filter_map(|s| match s {
            Slot::Child(c) => Some(*c),
            Slot::Leaf(_) => None,
        });
        match (children.next(), children.next()) {
            (Some(c), None) => (node, level) = (c, level + 1),
            _ => break,
        }
    }
    let mut prefix = [0u8; 16];
    let mut mask = [0u8; 16];
    prefix[..level].copy_from_slice(&nodes[node].path.1[..level]);
    mask[..level].fill(0xff);
    let head = Head {
        prefix: addr_words(&prefix),
        mask: addr_words(&mask),
        level: level as u32,
        group: id_of[node],
    };

    let mut out = Compiled {
        head,
        ..Compiled::default()
    };
    for (i, n) in nodes.iter().enumerate() {
        let mut entries = [0u32; 256];
        for (e, slot) in entries.iter_mut().zip(&n.slots) {
            *e = match *slot {
                Slot::Leaf(l) => l,
                Slot::Child(c) => layout::pointer(id_of[c]),
            };
        }
        out.groups.insert(id_of[i], entries);
        out.ids.insert(n.path, id_of[i]);
    }
    Ok(out)
}

/// Look up address bytes in the table under construction.
fn lookup_nodes(nodes: &[Node], bytes: &[u8; 16]) -> u32 {
    let mut node = 0usize;
    for &b in bytes {
        match nodes[node].slots[usize::from(b)] {
            Slot::Leaf(l) => return l,
            Slot::Child(c) => node = c,
        }
    }
    0
}

/// Writes compiled tables into the idle region and flips the root.
#[derive(Debug)]
pub struct Publisher {
    /// The live region, if a table is live.
    live: Option<u32>,
    /// What each region holds, as far as this publisher wrote it.
    shadow: [BTreeMap<u32, [u32; 256]>; 2],
    /// Group numbers of each region's table.
    ids: [HashMap<Path, u32>; 2],
    /// When each region last stopped being live.
    retired: [Option<Instant>; 2],
    /// Whether the last build fell back to the trie (logged once).
    too_big: bool,
}

/// What one [`Publisher::publish`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Table entries written.
    pub writes: usize,
    /// Groups in the live table (0 when the trie is used instead).
    pub groups: usize,
}

impl Publisher {
    /// Return a publisher for `maps`, whose table an earlier run may have
    /// left live: that region is treated as live and not written first.
    pub fn new(maps: &TableMaps) -> Self {
        let root = maps.root.get(&0, 0).unwrap_or(0);
        Publisher {
            live: root.checked_sub(1).map(|r| r & 1),
            shadow: Default::default(),
            ids: Default::default(),
            retired: [None; 2],
            too_big: false,
        }
    }

    /// Make a table of `routes` live. A FIB too big for a region turns the
    /// table off (the fast path walks the trie) instead of failing.
    pub async fn publish(
        &mut self,
        maps: &mut TableMaps,
        routes: &BTreeMap<Ipv6Net, FibEntry>,
    ) -> Result<Published> {
        let target = match self.live {
            Some(r) => 1 - r,
            None => 0,
        };
        let t = target as usize;
        let compiled = match compile(routes, &self.ids[t], maps.groups) {
            Ok(c) => c,
            Err(too_big) => {
                if !self.too_big {
                    tracing::warn!(error = %too_big, "using the LPM trie for lookups");
                    self.too_big = true;
                }
                maps.root
                    .set(0, 0, 0)
                    .doing(|| "turning the lookup table off".into())?;
                if let Some(r) = self.live.take() {
                    self.retired[r as usize] = Some(Instant::now());
                }
                return Ok(Published::default());
            }
        };
        self.too_big = false;
        if let Some(at) = self.retired[t] {
            let wait = RETIRE.saturating_sub(at.elapsed());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let base = target * maps.groups * 256;
        let mut writes = 0;
        for (&id, entries) in &compiled.groups {
            let old = self.shadow[t].get(&id);
            for (i, &e) in entries.iter().enumerate() {
                if old.is_some_and(|o| o[i] == e) {
                    continue;
                }
                maps.entries
                    .set(base + id * 256 + i as u32, e, 0)
                    .doing(|| "writing the lookup table".into())?;
                writes += 1;
            }
            self.shadow[t].insert(id, *entries);
        }
        maps.head
            .set(target, compiled.head, 0)
            .doing(|| "writing the lookup table's head".into())?;
        maps.root
            .set(0, target + 1, 0)
            .doing(|| "making the lookup table live".into())?;
        if let Some(r) = self.live.replace(target)
            && r != target
        {
            self.retired[r as usize] = Some(Instant::now());
        }
        let groups = compiled.groups.len();
        self.ids[t] = compiled.ids;
        Ok(Published { writes, groups })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use rand::{Rng as _, SeedableRng as _};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn fwd(group: u32) -> FibEntry {
        FibEntry {
            kind: meshfwd_common::fib::kind::FORWARD,
            group,
        }
    }

    /// The reference: the longest matching prefix by linear scan.
    fn reference(routes: &BTreeMap<Ipv6Net, FibEntry>, addr: Ipv6Addr) -> FibEntry {
        routes
            .iter()
            .filter(|(p, e)| {
                e.kind != 0 && Ipv6Net::new_assert(addr, p.prefix_len()).trunc() == **p
            })
            .max_by_key(|(p, _)| p.prefix_len())
            .map(|(_, e)| *e)
            .unwrap_or_default()
    }

    fn random_routes(rng: &mut ChaCha8Rng, n: usize) -> BTreeMap<Ipv6Net, FibEntry> {
        // Few distinct upper bits, so prefixes nest and share groups.
        let bases: Vec<u128> = (0..rng.gen_range(1..=4))
            .map(|_| rng.r#gen::<u128>())
            .collect();
        (0..n)
            .map(|_| {
                let base = bases[rng.gen_range(0..bases.len())];
                let noise = rng.r#gen::<u128>() >> rng.gen_range(16..128);
                let len = [0u8, 7, 16, 48, 56, 63, 64, 65, 96, 127, 128][rng.gen_range(0..11)];
                let p = Ipv6Net::new_assert(Ipv6Addr::from(base ^ noise), len).trunc();
                (p, fwd(rng.gen_range(1..6)))
            })
            .collect()
    }

    /// Addresses worth probing: each prefix's first and last address,
    /// their neighbours, and random ones.
    fn probes(rng: &mut ChaCha8Rng, routes: &BTreeMap<Ipv6Net, FibEntry>) -> Vec<Ipv6Addr> {
        let mut out = Vec::new();
        for p in routes.keys() {
            let first = u128::from(p.addr());
            let host = u128::MAX
                .checked_shr(u32::from(p.prefix_len()))
                .unwrap_or(0);
            for a in [
                first,
                first | host,
                first.wrapping_sub(1),
                (first | host).wrapping_add(1),
            ] {
                out.push(Ipv6Addr::from(a));
            }
            out.push(Ipv6Addr::from(first | (rng.r#gen::<u128>() & host)));
        }
        out.extend((0..200).map(|_| Ipv6Addr::from(rng.r#gen::<u128>())));
        out
    }

    #[test]
    fn matches_the_longest_prefix_everywhere() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for round in 0..40 {
            let routes = random_routes(&mut rng, 1 + round * 5);
            let table = compile(&routes, &HashMap::new(), layout::GROUPS).expect("fits");
            for addr in probes(&mut rng, &routes) {
                assert_eq!(
                    table.lookup(addr),
                    reference(&routes, addr),
                    "round {round}, address {addr}, routes {routes:?}"
                );
            }
        }
    }

    #[test]
    fn a_prefix_like_its_covering_prefix_costs_no_group() {
        let mut routes = BTreeMap::new();
        let pod: Ipv6Addr = "fd00:1:2:3::".parse().unwrap();
        routes.insert(Ipv6Net::new_assert(pod, 64).trunc(), fwd(1));
        routes.insert(
            Ipv6Net::from("fd00:1:2:3::1".parse::<Ipv6Addr>().unwrap()),
            fwd(1),
        );
        let same = compile(&routes, &HashMap::new(), layout::GROUPS).unwrap();
        // Root plus one group per byte 1..=7 of the /64.
        assert_eq!(same.groups.len(), 8);
        routes.insert(
            Ipv6Net::from("fd00:1:2:3::1".parse::<Ipv6Addr>().unwrap()),
            fwd(2),
        );
        let other = compile(&routes, &HashMap::new(), layout::GROUPS).unwrap();
        assert_eq!(other.groups.len(), 16);
        assert_eq!(other.lookup("fd00:1:2:3::1".parse().unwrap()), fwd(2));
        assert_eq!(other.lookup("fd00:1:2:3::2".parse().unwrap()), fwd(1));
    }

    #[test]
    fn the_head_skips_the_shared_groups() {
        let mut routes = BTreeMap::new();
        for i in 0..300u16 {
            let p = Ipv6Addr::new(0xfd6b, 0x6d65, 0x7368, i, 0, 0, 0, 0);
            routes.insert(
                Ipv6Net::new_assert(p, 64).trunc(),
                fwd(u32::from(i % 5) + 1),
            );
        }
        let table = compile(&routes, &HashMap::new(), layout::GROUPS).unwrap();
        assert_eq!(table.head.level, 6, "the /48 is skipped: {:?}", table.head);
        // A default route gives the root a leaf for everything else, and
        // the head still applies.
        routes.insert(
            Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 0).trunc(),
            fwd(9),
        );
        let table = compile(&routes, &HashMap::new(), layout::GROUPS).unwrap();
        assert_eq!(table.head.level, 6);
        for addr in [
            "fd6b:6d65:7368:12b::1",
            "fd6b:6d65:7369::1",
            "2001:db8::1",
            "::",
        ] {
            let addr: Ipv6Addr = addr.parse().unwrap();
            assert_eq!(table.lookup(addr), reference(&routes, addr), "{addr}");
        }
        // Two subtrees under the root: no shortcut.
        routes.insert(
            Ipv6Net::new_assert("2001:db8::".parse().unwrap(), 64).trunc(),
            fwd(3),
        );
        let table = compile(&routes, &HashMap::new(), layout::GROUPS).unwrap();
        assert_eq!(table.head.level, 0);
    }

    #[test]
    fn group_numbers_survive_a_rebuild() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut routes = random_routes(&mut rng, 60);
        let first = compile(&routes, &HashMap::new(), layout::GROUPS).unwrap();
        // A new, early-sorting prefix must not renumber the others.
        routes.insert(
            Ipv6Net::new_assert("::".parse().unwrap(), 24).trunc(),
            fwd(9),
        );
        routes.insert(
            Ipv6Net::new_assert("0:0:0:7::".parse().unwrap(), 64).trunc(),
            fwd(9),
        );
        let second = compile(&routes, &first.ids, layout::GROUPS).unwrap();
        for (path, id) in &first.ids {
            if let Some(again) = second.ids.get(path) {
                assert_eq!(again, id, "group at {path:?} was renumbered");
            }
        }
    }

    #[test]
    fn ipv4_prefixes_compile_through_the_mapped_table() {
        // The IPv4 table's worst case: the IPv4 FIB full of /32s of one
        // /15, plus shorter prefixes over them; lookups of mapped
        // addresses match the longest IPv4 prefix, and the head skips the
        // mapped bytes and the shared first octet.
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut v4: BTreeMap<Ipv4Net, FibEntry> = BTreeMap::new();
        for i in 0..65_535u32 {
            let a = std::net::Ipv4Addr::from(0xC612_0000 + i * 2);
            v4.insert(Ipv4Net::new_assert(a, 32), fwd(1 + i % 7));
        }
        for (p, g) in [
            ("198.18.0.0/15", 100),
            ("198.19.0.0/16", 101),
            ("198.18.77.0/24", 102),
        ] {
            v4.insert(p.parse().unwrap(), fwd(g));
        }
        let mapped: BTreeMap<Ipv6Net, FibEntry> =
            v4.iter().map(|(p, e)| (ipv4_mapped(*p), *e)).collect();
        let table =
            compile(&mapped, &HashMap::new(), layout::GROUPS4).expect("fits the IPv4 table");
        assert!(table.head.level >= 13, "head at level {}", table.head.level);
        for _ in 0..20_000 {
            let a = std::net::Ipv4Addr::from(0xC612_0000 + rng.gen_range(0..1u32 << 17));
            // The reference: the longest prefix of the set covering `a`.
            let want = (0..=32u8)
                .rev()
                .find_map(|len| v4.get(&Ipv4Net::new_assert(a, len).trunc()))
                .copied()
                .unwrap_or_default();
            assert_eq!(table.lookup(a.to_ipv6_mapped()), want, "{a}");
        }
        // Outside the space: no route.
        assert_eq!(
            table.lookup(std::net::Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()),
            FibEntry::default()
        );
    }

    #[test]
    fn too_many_groups_is_an_error() {
        // Random /128s share nothing below the first byte or two: about 15
        // groups each.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let routes: BTreeMap<Ipv6Net, FibEntry> = (0..1000)
            .map(|_| (Ipv6Net::from(Ipv6Addr::from(rng.r#gen::<u128>())), fwd(1)))
            .collect();
        let err = compile(&routes, &HashMap::new(), layout::GROUPS).unwrap_err();
        assert!(err.groups > layout::GROUPS as usize, "{err}");
    }
}
