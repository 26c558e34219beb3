//! The pure half of the map writer: from the desired route table and the
//! current shadow of the maps, the smallest ordered list of map operations.
//!
//! Order is what makes it make-before-break: new next hops, then new
//! groups, then every prefix moved or added (an LPM update replaces an
//! entry atomically), then removed prefixes, and only then the groups and
//! next hops nobody uses any more. A prefix therefore always points at a
//! complete group whose members are all written.

use std::collections::{BTreeMap, BTreeSet};

use meshfwd_common::fib::{
    FibEntry, GROUP_MAX_ENTRIES, GROUP_MAX_MEMBERS, NEXT_HOP_MAX_ENTRIES, kind,
};

use ipnet::IpNet;

use super::{NextHopKey, RouteTable};

/// One write to the maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Write next hop `id` for `key` (the applier fills in MACs and MTU).
    AddNextHop { id: u32, key: NextHopKey },
    /// Write group `id` with these next-hop ids.
    AddGroup { id: u32, members: Vec<u32> },
    /// Add or replace a FIB entry.
    SetRoute { prefix: IpNet, entry: FibEntry },
    /// Remove a FIB entry.
    DelRoute { prefix: IpNet },
    /// Clear group `id` (no prefix uses it any more).
    DelGroup { id: u32 },
    /// Clear next hop `id` (no group uses it any more).
    DelNextHop { id: u32, key: NextHopKey },
}

/// A shared object with its id and how many users it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shared {
    pub id: u32,
    pub refs: u32,
}

/// The planner's view of what is in the maps.
#[derive(Debug)]
pub struct Planner {
    next_hops: BTreeMap<NextHopKey, Shared>,
    groups: BTreeMap<Vec<u32>, Shared>,
    routes: BTreeMap<IpNet, FibEntry>,
    free_nh: IdPool,
    free_group: IdPool,
}

/// Why a table cannot be planned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("out of next-hop ids ({0} in use)")]
    NextHopsFull(usize),
    #[error("out of group ids ({0} in use)")]
    GroupsFull(usize),
}

impl Default for Planner {
    fn default() -> Self {
        Self::new()
    }
}

impl Planner {
    /// Return an empty planner (the maps are assumed empty).
    pub fn new() -> Self {
        Planner {
            next_hops: BTreeMap::new(),
            groups: BTreeMap::new(),
            routes: BTreeMap::new(),
            free_nh: IdPool::new(NEXT_HOP_MAX_ENTRIES),
            free_group: IdPool::new(GROUP_MAX_ENTRIES),
        }
    }

    /// Return the ops that turn the current maps into `desired`, and take
    /// `desired` as the new current state.
    pub fn plan(&mut self, desired: &RouteTable) -> Result<Vec<Op>, PlanError> {
        let mut ops = Vec::new();

        // Desired next-hop sets per prefix, widest ECMP capped at 16 (the
        // lowest keys win, so the choice is stable).
        let mut wanted_sets: BTreeMap<IpNet, Vec<NextHopKey>> = BTreeMap::new();
        // Prefixes of shared segments: the kernel resolves each address.
        let mut on_link: BTreeSet<IpNet> = BTreeSet::new();
        for (prefix, hops) in &desired.routes {
            if hops.is_empty()
                || desired.local.contains(&prefix.addr())
                    && prefix.prefix_len() == prefix.max_prefix_len()
            {
                continue;
            }
            if hops.iter().any(NextHopKey::is_on_link) {
                on_link.insert(*prefix);
                continue;
            }
            wanted_sets.insert(
                *prefix,
                hops.iter().take(GROUP_MAX_MEMBERS).copied().collect(),
            );
        }

        // 1. Next hops: keep the existing ids, allocate new ones.
        let wanted_nh: BTreeSet<NextHopKey> = wanted_sets.values().flatten().copied().collect();
        let mut nh_ids: BTreeMap<NextHopKey, u32> = BTreeMap::new();
        for key in &wanted_nh {
            let id = match self.next_hops.get(key) {
                Some(s) => s.id,
                None => {
                    let id = self
                        .free_nh
                        .alloc()
                        .ok_or(PlanError::NextHopsFull(self.next_hops.len()))?;
                    ops.push(Op::AddNextHop { id, key: *key });
                    self.next_hops.insert(*key, Shared { id, refs: 0 });
                    id
                }
            };
            nh_ids.insert(*key, id);
        }

        // 2. Groups, content-addressed by their sorted member ids.
        let mut group_of: BTreeMap<IpNet, u32> = BTreeMap::new();
        let mut group_refs: BTreeMap<Vec<u32>, u32> = BTreeMap::new();
        for (prefix, hops) in &wanted_sets {
            let mut members: Vec<u32> = hops.iter().map(|k| nh_ids[k]).collect();
            members.sort_unstable();
            let id = match self.groups.get(&members) {
                Some(s) => s.id,
                None => {
                    let id = self
                        .free_group
                        .alloc()
                        .ok_or(PlanError::GroupsFull(self.groups.len()))?;
                    ops.push(Op::AddGroup {
                        id,
                        members: members.clone(),
                    });
                    self.groups.insert(members.clone(), Shared { id, refs: 0 });
                    id
                }
            };
            *group_refs.entry(members).or_default() += 1;
            group_of.insert(*prefix, id);
        }

        // 3. Prefixes: add or move (atomic replace), locals first-class.
        let mut wanted_routes: BTreeMap<IpNet, FibEntry> = group_of
            .iter()
            .map(|(p, g)| {
                (
                    *p,
                    FibEntry {
                        kind: kind::FORWARD,
                        group: *g,
                    },
                )
            })
            .collect();
        for prefix in on_link {
            wanted_routes.insert(
                prefix,
                FibEntry {
                    kind: kind::ON_LINK,
                    group: 0,
                },
            );
        }
        for addr in &desired.local {
            wanted_routes.insert(
                IpNet::from(*addr),
                FibEntry {
                    kind: kind::LOCAL,
                    group: 0,
                },
            );
        }
        for (prefix, entry) in &wanted_routes {
            if self.routes.get(prefix) != Some(entry) {
                ops.push(Op::SetRoute {
                    prefix: *prefix,
                    entry: *entry,
                });
            }
        }

        // 4. Prefixes that went away.
        for prefix in self.routes.keys() {
            if !wanted_routes.contains_key(prefix) {
                ops.push(Op::DelRoute { prefix: *prefix });
            }
        }
        self.routes = wanted_routes;

        // 5. Groups nobody points at any more; refresh the others' counts.
        let mut gone_groups = Vec::new();
        for (members, shared) in self.groups.iter_mut() {
            match group_refs.get(members) {
                Some(refs) => shared.refs = *refs,
                None => gone_groups.push(members.clone()),
            }
        }
        for members in gone_groups {
            let shared = self.groups.remove(&members).expect("listed above");
            ops.push(Op::DelGroup { id: shared.id });
            self.free_group.free(shared.id);
        }

        // 6. Next hops no group uses any more; refresh the others' counts.
        let mut nh_refs: BTreeMap<u32, u32> = BTreeMap::new();
        for members in self.groups.keys() {
            for id in members {
                *nh_refs.entry(*id).or_default() += 1;
            }
        }
        let mut gone_nh = Vec::new();
        for (key, shared) in self.next_hops.iter_mut() {
            match nh_refs.get(&shared.id) {
                Some(refs) => shared.refs = *refs,
                None => gone_nh.push(*key),
            }
        }
        for key in gone_nh {
            let shared = self.next_hops.remove(&key).expect("listed above");
            ops.push(Op::DelNextHop { id: shared.id, key });
            self.free_nh.free(shared.id);
        }
        Ok(ops)
    }

    /// Return the next hops with their ids and group counts.
    pub fn next_hops(&self) -> &BTreeMap<NextHopKey, Shared> {
        &self.next_hops
    }

    /// Return the groups (sorted member ids) with their ids and prefix counts.
    pub fn groups(&self) -> &BTreeMap<Vec<u32>, Shared> {
        &self.groups
    }

    /// Return the FIB entries as planned.
    pub fn routes(&self) -> &BTreeMap<IpNet, FibEntry> {
        &self.routes
    }

    /// Return the id of the next hop for `key`.
    pub fn next_hop_id(&self, key: &NextHopKey) -> Option<u32> {
        self.next_hops.get(key).map(|s| s.id)
    }

    /// Hand out none of these ids until [`Planner::release`]: an earlier
    /// run's next hops and groups, still in the maps and in use.
    pub fn reserve(
        &mut self,
        next_hops: impl IntoIterator<Item = u32>,
        groups: impl IntoIterator<Item = u32>,
    ) {
        self.free_nh.reserved.extend(next_hops);
        self.free_group.reserved.extend(groups);
    }

    /// Make reserved ids available again (their slots are cleared).
    pub fn release(
        &mut self,
        next_hops: impl IntoIterator<Item = u32>,
        groups: impl IntoIterator<Item = u32>,
    ) {
        for id in next_hops {
            if self.free_nh.reserved.remove(&id) {
                self.free_nh.free(id);
            }
        }
        for id in groups {
            if self.free_group.reserved.remove(&id) {
                self.free_group.free(id);
            }
        }
    }
}

/// Ids 1..max; 0 is never handed out (an unset slot reads as id 0). Freed
/// ids are reused last-in-first-out only after the rest, so a just-freed
/// slot is not rewritten while a packet that read the old route may still
/// be looking at it.
/// Reserved ids (see [`Planner::reserve`]) are skipped.
#[derive(Debug)]
struct IdPool {
    next: u32,
    max: u32,
    freed: std::collections::VecDeque<u32>,
    reserved: BTreeSet<u32>,
}

impl IdPool {
    fn new(max: u32) -> Self {
        IdPool {
            next: 1,
            max,
            freed: Default::default(),
            reserved: BTreeSet::new(),
        }
    }

    fn alloc(&mut self) -> Option<u32> {
        while self.next < self.max {
            self.next += 1;
            if !self.reserved.contains(&(self.next - 1)) {
                return Some(self.next - 1);
            }
        }
        self.freed.pop_front()
    }

    fn free(&mut self, id: u32) {
        self.freed.push_back(id);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use ipnet::Ipv6Net;

    use super::*;

    fn nh(ifindex: u32, last: u16) -> NextHopKey {
        NextHopKey {
            ifindex,
            via: Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, last),
        }
    }

    fn p(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn table(routes: &[(&str, &[NextHopKey])]) -> RouteTable {
        let mut t = RouteTable::default();
        for (prefix, hops) in routes {
            t.routes.insert(p(prefix), hops.iter().copied().collect());
        }
        t
    }

    #[test]
    fn first_table_writes_next_hops_then_groups_then_routes() {
        let mut pl = Planner::new();
        let ops = pl
            .plan(&table(&[("2001:db8:1::/48", &[nh(2, 1), nh(3, 1)])]))
            .unwrap();
        assert_eq!(
            ops,
            vec![
                Op::AddNextHop {
                    id: 1,
                    key: nh(2, 1)
                },
                Op::AddNextHop {
                    id: 2,
                    key: nh(3, 1)
                },
                Op::AddGroup {
                    id: 1,
                    members: vec![1, 2]
                },
                Op::SetRoute {
                    prefix: p("2001:db8:1::/48"),
                    entry: FibEntry {
                        kind: kind::FORWARD,
                        group: 1
                    }
                },
            ]
        );
    }

    #[test]
    fn same_table_twice_is_no_op() {
        let mut pl = Planner::new();
        let t = table(&[
            ("2001:db8:1::/48", &[nh(2, 1)]),
            ("2001:db8:2::/48", &[nh(2, 1)]),
        ]);
        pl.plan(&t).unwrap();
        assert_eq!(pl.plan(&t).unwrap(), vec![]);
    }

    #[test]
    fn prefixes_with_the_same_next_hops_share_one_group() {
        let mut pl = Planner::new();
        let hops = [nh(2, 1), nh(3, 1)];
        let t = table(&[
            ("2001:db8:1::/48", &hops),
            ("2001:db8:2::/48", &hops),
            ("fd00::/8", &hops),
        ]);
        let ops = pl.plan(&t).unwrap();
        assert_eq!(
            ops.iter()
                .filter(|o| matches!(o, Op::AddGroup { .. }))
                .count(),
            1
        );
        assert_eq!(pl.groups().values().next().unwrap().refs, 3);
        assert_eq!(pl.next_hops()[&nh(2, 1)].refs, 1);
    }

    #[test]
    fn moving_a_prefix_is_make_before_break() {
        let mut pl = Planner::new();
        pl.plan(&table(&[("2001:db8:1::/48", &[nh(2, 1)])]))
            .unwrap();
        let ops = pl
            .plan(&table(&[("2001:db8:1::/48", &[nh(3, 1)])]))
            .unwrap();
        // New next hop and group first, then the one atomic route update,
        // then the old group and next hop are released.
        assert_eq!(
            ops,
            vec![
                Op::AddNextHop {
                    id: 2,
                    key: nh(3, 1)
                },
                Op::AddGroup {
                    id: 2,
                    members: vec![2]
                },
                Op::SetRoute {
                    prefix: p("2001:db8:1::/48"),
                    entry: FibEntry {
                        kind: kind::FORWARD,
                        group: 2
                    }
                },
                Op::DelGroup { id: 1 },
                Op::DelNextHop {
                    id: 1,
                    key: nh(2, 1)
                },
            ]
        );
    }

    #[test]
    fn shared_group_survives_while_any_prefix_uses_it() {
        let mut pl = Planner::new();
        let hops = [nh(2, 1)];
        pl.plan(&table(&[
            ("2001:db8:1::/48", &hops),
            ("2001:db8:2::/48", &hops),
        ]))
        .unwrap();
        let ops = pl.plan(&table(&[("2001:db8:2::/48", &hops)])).unwrap();
        assert_eq!(
            ops,
            vec![Op::DelRoute {
                prefix: p("2001:db8:1::/48")
            }]
        );
        assert_eq!(pl.groups().values().next().unwrap().refs, 1);
        let ops = pl.plan(&RouteTable::default()).unwrap();
        assert_eq!(
            ops,
            vec![
                Op::DelRoute {
                    prefix: p("2001:db8:2::/48")
                },
                Op::DelGroup { id: 1 },
                Op::DelNextHop {
                    id: 1,
                    key: nh(2, 1)
                },
            ]
        );
    }

    #[test]
    fn adding_an_ecmp_member_keeps_next_hop_ids() {
        let mut pl = Planner::new();
        pl.plan(&table(&[("2001:db8:1::/48", &[nh(2, 1)])]))
            .unwrap();
        let ops = pl
            .plan(&table(&[("2001:db8:1::/48", &[nh(2, 1), nh(4, 1)])]))
            .unwrap();
        assert_eq!(
            ops[0],
            Op::AddNextHop {
                id: 2,
                key: nh(4, 1)
            }
        );
        assert_eq!(
            ops[1],
            Op::AddGroup {
                id: 2,
                members: vec![1, 2]
            }
        );
        assert!(!ops.iter().any(|o| matches!(o, Op::DelNextHop { .. })));
    }

    #[test]
    fn local_addresses_become_local_entries() {
        let mut pl = Planner::new();
        let mut t = table(&[("2001:db8:1::/48", &[nh(2, 1)])]);
        let me: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        t.local.insert(me.into());
        let ops = pl.plan(&t).unwrap();
        assert!(ops.contains(&Op::SetRoute {
            prefix: IpNet::from(Ipv6Net::from(me)),
            entry: FibEntry {
                kind: kind::LOCAL,
                group: 0
            }
        }));
    }

    #[test]
    fn on_link_prefixes_go_to_the_kernel_without_next_hops() {
        let mut pl = Planner::new();
        let on_link = NextHopKey {
            ifindex: 4,
            via: Ipv6Addr::UNSPECIFIED,
        };
        let ops = pl
            .plan(&table(&[("2001:db8:99::/64", &[on_link])]))
            .unwrap();
        assert_eq!(
            ops,
            vec![Op::SetRoute {
                prefix: p("2001:db8:99::/64"),
                entry: FibEntry {
                    kind: kind::ON_LINK,
                    group: 0
                }
            }]
        );
        assert!(pl.next_hops().is_empty());
        // The segment's prefix leaves: the entry goes, nothing else.
        assert_eq!(
            pl.plan(&RouteTable::default()).unwrap(),
            vec![Op::DelRoute {
                prefix: p("2001:db8:99::/64")
            }]
        );
    }

    #[test]
    fn reserved_ids_are_skipped_until_released() {
        let mut pl = Planner::new();
        pl.reserve([1, 2], [1]);
        pl.plan(&table(&[("2001:db8:1::/48", &[nh(2, 1)])]))
            .unwrap();
        assert_eq!(pl.next_hop_id(&nh(2, 1)), Some(3));
        assert_eq!(pl.groups().values().next().unwrap().id, 2);
        pl.release([1, 2], [1]);
        // Fresh ids first, released ones after (as any freed id).
        pl.plan(&table(&[
            ("2001:db8:1::/48", &[nh(2, 1)]),
            ("2001:db8:2::/48", &[nh(3, 1)]),
        ]))
        .unwrap();
        assert_eq!(pl.next_hop_id(&nh(3, 1)), Some(4));
    }

    #[test]
    fn ecmp_is_capped_at_sixteen_members() {
        let mut pl = Planner::new();
        let hops: Vec<NextHopKey> = (1..=20).map(|i| nh(i, 1)).collect();
        pl.plan(&table(&[("2001:db8:1::/48", &hops)])).unwrap();
        assert_eq!(pl.groups().keys().next().unwrap().len(), GROUP_MAX_MEMBERS);
    }

    #[test]
    fn freed_ids_are_reused_only_after_fresh_ones() {
        let mut pool = IdPool::new(4);
        assert_eq!((pool.alloc(), pool.alloc()), (Some(1), Some(2)));
        pool.free(1);
        assert_eq!(
            (pool.alloc(), pool.alloc(), pool.alloc()),
            (Some(3), Some(1), None)
        );
    }

    #[test]
    fn ten_thousand_prefixes_over_eight_next_hops_use_one_group() {
        let mut pl = Planner::new();
        let hops: Vec<NextHopKey> = (1..=8).map(|i| nh(i, 1)).collect();
        let mut t = RouteTable::default();
        for i in 0..10_000u16 {
            let prefix =
                Ipv6Net::new_assert(Ipv6Addr::new(0xfd00, 0, 0, i, 0, 0, 0, 0), 64).trunc();
            t.routes
                .insert(prefix.into(), hops.iter().copied().collect());
        }
        let ops = pl.plan(&t).unwrap();
        assert_eq!(ops.len(), 8 + 1 + 10_000);
    }
}
