//! The agent's decisions, each driven through [`Core::handle`] with a
//! simulated clock: no namespace, no kernel, no OSPF running.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::agent::config::NetworkType;
use dataplane::netlink::{Address6, Mac};
use routing::{
    Route,
    interface::ism,
    state::{NeighborSummary, Summary},
};

use super::{
    testing::{addr, ll, route, veth},
    *,
};

const CLUSTER: &str = "fd00:77::/48";

fn settings() -> Settings {
    Settings {
        xdp: true,
        cluster_prefix: CLUSTER.parse().unwrap(),
        pod_prefix: None,
        skip_dad: true,
        filter: LinkFilter {
            include: vec!["*".parse().unwrap()],
            exclude: ["lo", "km*"].iter().map(|p| p.parse().unwrap()).collect(),
        },
        interface: InterfaceConfig {
            hello_interval: 1,
            dead_interval: 3,
            ..InterfaceConfig::default()
        },
        networks: Default::default(),
        mtu: 1500,
        bpffs: "/sys/fs/bpf/test".into(),
        bfd: None,
        ipv4: None,
    }
}

fn rid(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(n)
}

/// A mesh link (veth with a link-local address) as dump events.
fn mesh_link(ifindex: u32, name: &str) -> Vec<LinkEvent> {
    vec![
        LinkEvent::Link(veth(ifindex, name)),
        addr(ifindex, ll(ifindex as u16), true),
    ]
}

/// A core with router id `me` on links `m-b` (3) and `m-c` (4), started.
fn started(me: u32, settings: Settings) -> (Core, Vec<Action>) {
    let dump: Vec<LinkEvent> = [mesh_link(3, "m-b"), mesh_link(4, "m-c")].concat();
    let mut core = Core::new(
        settings,
        Identity::derived(&me.to_be_bytes(), identity::IdSource::Random),
        dump,
    );
    // Pin the id the tests reason about.
    core.identity.router_id = rid(me);
    core.prefixes = NodePrefixes::new(
        prefixes::pod_prefix_candidate(core.settings.cluster_prefix, rid(me), 0),
        0,
    );
    let actions = core.handle(0, Event::Start);
    (core, actions)
}

fn rib_diff(routes: &[(Ipv6Net, Route)]) -> RibDiff {
    RibDiff {
        added_or_changed: routes.to_vec(),
        removed: Vec::new(),
    }
}

/// An OSPF sample with every neighbour Full.
fn summary(me: Ipv4Addr, routers: &[Ipv4Addr], lsdb_changes: u64) -> Summary {
    Summary {
        router_id: me,
        interfaces: vec![(3, ism::State::PointToPoint), (4, ism::State::PointToPoint)],
        neighbors: vec![NeighborSummary {
            ifindex: 3,
            interface: "m-b".into(),
            router_id: rid(2),
            addr: "fe80::2".parse().unwrap(),
            state: nsm::State::Full,
        }],
        advertisers: routers.iter().copied().chain([me]).collect(),
        lsdb_changes,
        own_id_drops: 0,
        self_originated_foreign: 0,
        own_id_authenticated: 0,
        reachable: routers.iter().copied().chain([me]).collect(),
        foreign_links: Vec::new(),
        refused: Vec::new(),
        restarting: false,
    }
}

/// What a clone of ours sends on a link, as the core's summary counts it:
/// `n` authenticated packets with our id.
fn authenticated_clone(s: &mut Summary, n: u64) {
    s.own_id_authenticated = n;
}

/// A router elsewhere with our id, as reachable routers report it: a link
/// to us no adjacency of ours explains, and a fight over our LSAs.
fn far_clone(s: &mut Summary, fights: u64) {
    s.foreign_links = vec![routing::state::ForeignLink {
        reporter: rid(2),
        interface_id: 9,
        neighbor_interface_id: 9,
    }];
    s.self_originated_foreign = fights;
}

fn restarted(actions: &[Action]) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::StartOspf { .. }))
}

/// Feed `core` an OSPF sample at `now`.
fn sample(core: &mut Core, now: Millis, summary: &Summary, salt: u64) -> Vec<Action> {
    core.handle(
        now,
        Event::OspfSample {
            summary: summary.clone(),
            salt,
        },
    )
}

fn tables(actions: &[Action]) -> Vec<&RouteTable> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ApplyTable(t) => Some(t),
            _ => None,
        })
        .collect()
}

fn states(actions: &[Action]) -> Vec<&NodeState> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::WriteState(s) => Some(s),
            _ => None,
        })
        .collect()
}

#[test]
fn start_sets_the_node_up_in_order() {
    let (core, actions) = started(7, settings());
    let pod = core.prefixes().pod_prefix;
    let node = core.prefixes().node_address;
    assert!(CLUSTER.parse::<Ipv6Net>().unwrap().contains(&pod));
    assert_eq!(pod.prefix_len(), 64);
    let spec = |ifindex: u32, name: &str| InterfaceSpec {
        name: name.into(),
        config: NetworkType::Auto.apply(settings().interface),
        link_local: Some(ll(ifindex as u16)),
        mtu: Some(1500),
    };
    let link_up = |ifindex: u32, name: &str| {
        vec![
            Action::SetLinkAlive {
                ifindex,
                alive: true,
            },
            Action::PrepareVeth {
                ifname: name.into(),
            },
            Action::OspfAddInterface(spec(ifindex, name)),
            Action::AttachXdp {
                ifname: name.into(),
            },
        ]
    };
    let mut want = vec![
        Action::SkipDad {
            ifname: "default".into(),
        },
        Action::SkipDad {
            ifname: "m-b".into(),
        },
        Action::SkipDad {
            ifname: "m-c".into(),
        },
        Action::StartOspf {
            router_id: rid(7),
            stubs: vec![pod, Ipv6Net::from(node)],
            stubs4: None,
        },
        Action::SetNodeAddress(node),
        Action::WriteState(NodeState {
            router_id: rid(7),
            pod_prefix: pod,
            node_address: node,
            mtu: 1500,
            bpffs: "/sys/fs/bpf/test".into(),
            pod_attach: PodAttach::Agent,
            ipv4: None,
        }),
    ];
    want.extend(link_up(3, "m-b"));
    want.extend(link_up(4, "m-c"));
    let mut table = RouteTable::default();
    table.local.insert(node.into());
    want.push(Action::ApplyTable(table));
    assert_eq!(actions, want);
    assert_eq!(core.counters().mesh_link_ups, 2);
}

#[test]
fn carrier_loss_flips_the_fast_path_first_then_tells_ospf() {
    let (mut core, _) = started(7, settings());
    core.handle(
        10,
        Event::Rib(vec![rib_diff(&[
            route("fd00:77:1::/64", &[(3, ll(3)), (4, ll(4))]),
            route("fd00:77:2::/64", &[(3, ll(3))]),
        ])]),
    );
    let mut gone = veth(3, "m-b");
    gone.carrier = false;
    let actions = core.handle(20, Event::Link(LinkEvent::Link(gone)));
    assert_eq!(
        actions[0],
        Action::SetLinkAlive {
            ifindex: 3,
            alive: false
        },
        "the alive flip comes before anything else: {actions:?}"
    );
    assert_eq!(
        actions[1],
        Action::OspfRemoveInterface {
            ifname: "m-b".into()
        }
    );
    // The table leaves the dead link out at once, before OSPF reconverges:
    // the ECMP route keeps its live member, the single-path one goes.
    let t = tables(&actions)[0];
    let hops: Vec<_> = t.routes.values().flatten().map(|h| h.ifindex).collect();
    assert_eq!(hops, vec![4]);
    assert_eq!(core.counters().carrier_losses, 1);
    assert_eq!(core.counters().mesh_link_downs, 1);
    // Carrier back: alive again and OSPF back on the link.
    let actions = core.handle(30, Event::Link(LinkEvent::Link(veth(3, "m-b"))));
    assert_eq!(
        actions[0],
        Action::SetLinkAlive {
            ifindex: 3,
            alive: true
        }
    );
    assert!(matches!(&actions[2], Action::OspfAddInterface(s) if s.name == "m-b"));
    assert_eq!(tables(&actions)[0].routes.len(), 2);
}

#[test]
fn a_deleted_link_forgets_its_xdp_pin_and_admin_down_does_not() {
    let (mut core, _) = started(7, settings());
    let mut down = veth(4, "m-c");
    down.admin_up = false;
    let actions = core.handle(5, Event::Link(LinkEvent::Link(down)));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::ForgetXdp { .. }))
    );
    assert_eq!(core.counters().carrier_losses, 0);
    let actions = core.handle(6, Event::Link(LinkEvent::LinkGone(3)));
    assert_eq!(
        actions[..3],
        [
            Action::SetLinkAlive {
                ifindex: 3,
                alive: false
            },
            Action::ForgetXdp {
                ifname: "m-b".into()
            },
            Action::OspfRemoveInterface {
                ifname: "m-b".into()
            },
        ]
    );
}

#[test]
fn a_link_plugged_in_later_joins_once_it_has_a_link_local() {
    let (mut core, _) = started(7, settings());
    let actions = core.handle(5, Event::Link(LinkEvent::Link(veth(9, "m-new"))));
    assert_eq!(
        actions,
        vec![Action::SkipDad {
            ifname: "m-new".into()
        }],
        "DAD off at once, nothing else until the link-local is usable"
    );
    let mut tentative = Address6 {
        ifindex: 9,
        addr: ll(9),
        prefix_len: 64,
        usable: false,
        global: false,
    };
    assert!(
        core.handle(6, Event::Link(LinkEvent::Addr(tentative)))
            .is_empty()
    );
    tentative.usable = true;
    let actions = core.handle(7, Event::Link(LinkEvent::Addr(tentative)));
    assert!(
        matches!(&actions[2], Action::OspfAddInterface(s) if s.name == "m-new" && s.link_local == Some(ll(9)))
    );
    assert!(actions.contains(&Action::AttachXdp {
        ifname: "m-new".into()
    }));
    // A link the filter refuses never joins, and keeps its DAD.
    let actions = core.handle(8, Event::Link(LinkEvent::Link(veth(10, "km0123456789"))));
    assert!(actions.is_empty(), "{actions:?}");
}

#[test]
fn the_table_leaves_out_our_own_prefixes_and_keeps_on_link_ones() {
    let (mut core, _) = started(7, settings());
    let own = core.prefixes().pod_prefix.to_string();
    let actions = core.handle(
        10,
        Event::Rib(vec![
            rib_diff(&[route(&own, &[(3, ll(3))])]),
            rib_diff(&[
                route("fd00:77:3::/64", &[(4, Ipv6Addr::UNSPECIFIED)]),
                route("fe80::/64", &[(4, ll(4))]),
                route("fd00:77:4::1/128", &[(4, ll(4))]),
            ]),
        ]),
    );
    let t = tables(&actions);
    assert_eq!(t.len(), 1, "one table for a batch of RIB changes");
    let keys: Vec<String> = t[0].routes.keys().map(|p| p.to_string()).collect();
    assert_eq!(keys, vec!["fd00:77:3::/64", "fd00:77:4::1/128"]);
    assert!(t[0].local.contains(&core.prefixes().node_address.into()));
    assert_eq!(core.counters().rib_changes, 2);
}

#[test]
fn a_neighbour_with_our_router_id_makes_us_take_a_new_one() {
    let (mut core, _) = started(7, settings());
    let old_prefix = core.prefixes().pod_prefix;
    let mut s = summary(rid(7), &[rid(2)], 10);
    assert!(sample(&mut core, 1_000, &s, 1).is_empty());
    // A clone on one of our links, holding the mesh key: its packets keep
    // coming, and after the hold-down (20 s) we part.
    let mut actions = Vec::new();
    for t in 1..=21u64 {
        authenticated_clone(&mut s, t * 3);
        actions = sample(&mut core, 1_000 + t * 1_000, &s, 1);
        if restarted(&actions) {
            assert_eq!(t, 21, "not before the hold-down");
            break;
        }
    }
    let new_id = core.identity().router_id;
    assert_ne!(new_id, rid(7));
    assert!(
        ![rid(2), rid(7)].contains(&new_id),
        "avoids ids in the LSDB"
    );
    let new_prefix = core.prefixes().pod_prefix;
    assert_ne!(new_prefix, old_prefix, "the pod prefix follows the id");
    assert_eq!(
        actions[0],
        Action::StartOspf {
            router_id: new_id,
            stubs: core.prefixes().own(),
            stubs4: None,
        }
    );
    assert_eq!(states(&actions)[0].router_id, new_id);
    assert_eq!(states(&actions)[0].pod_prefix, new_prefix);
    let added: Vec<&str> = actions
        .iter()
        .filter_map(|a| match a {
            Action::OspfAddInterface(s) => Some(s.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(added, vec!["m-b", "m-c"], "OSPF back on every mesh link");
    assert!(
        core.rib().routes.is_empty(),
        "the old instance's routes are gone"
    );
    assert_eq!(core.counters().router_id_changes, 1);
    assert_eq!(core.identity().rederived, 1);
}

#[test]
fn a_configured_router_id_is_never_changed_only_reported() {
    let mut core = Core::new(
        settings(),
        Identity::configured(rid(7)),
        mesh_link(3, "m-b"),
    );
    core.handle(0, Event::Start);
    let mut s = summary(rid(7), &[rid(2)], 10);
    sample(&mut core, 1_000, &s, 1);
    for t in 1..=23u64 {
        authenticated_clone(&mut s, t);
        let actions = sample(&mut core, 1_000 + t * 1_000, &s, 1);
        assert!(!restarted(&actions));
    }
    assert_eq!(core.identity().router_id, rid(7));
    assert_eq!(core.counters().duplicate_router_ids, 3, "t = 21, 22, 23");
}

#[test]
fn a_far_router_with_our_id_moves_us_and_forgeries_and_flaps_do_not() {
    // Reachable routers list a link to us that is none of ours, and copies
    // of our LSAs with content we never sent keep coming: settled after
    // the hold-down.
    let (mut core, _) = started(7, settings());
    let mut s = summary(rid(7), &[rid(2)], 10);
    let mut moved = None;
    for t in 0..30u64 {
        far_clone(&mut s, t / 5);
        if restarted(&sample(&mut core, t * 1_000, &s, 9)) {
            moved = Some(t);
            break;
        }
    }
    assert_eq!(moved, Some(20));
    // Forged copies of our LSAs alone (attack 4: a Router-LSA of ours with
    // a higher sequence number, early flushes), our own re-originations
    // after flaps (attack 5), sequence numbers, Hellos with our id from
    // anyone without the key: a minute of each moves nothing.
    let (mut core, _) = started(7, settings());
    let mut s = summary(rid(7), &[rid(2)], 10);
    for t in 0..60u64 {
        s.self_originated_foreign = t;
        s.own_id_drops = t * 10;
        s.neighbors[0].state = if t % 2 == 0 {
            nsm::State::Full
        } else {
            nsm::State::ExStart
        };
        assert!(!restarted(&sample(&mut core, t * 1_000, &s, 9)), "t = {t}");
    }
    // A forged Router-LSA naming us as a neighbour, alone: nothing either.
    let mut s = summary(rid(7), &[rid(2)], 10);
    for t in 60..120u64 {
        far_clone(&mut s, 0);
        assert!(!restarted(&sample(&mut core, t * 1_000, &s, 9)), "t = {t}");
    }
    assert_eq!(core.identity().router_id, rid(7));
    assert_eq!(core.counters().duplicate_router_ids, 0);
}

/// A router id above `me` whose first candidate is `me`'s first candidate.
fn clashing_higher_id(me: u32) -> Ipv4Addr {
    let cluster: Ipv6Net = CLUSTER.parse().unwrap();
    let mine = prefixes::pod_prefix_candidate(cluster, rid(me), 0);
    (me + 1..u32::MAX)
        .map(rid)
        .find(|r| prefixes::pod_prefix_candidate(cluster, *r, 0) == mine)
        .expect("a clash exists")
}

#[test]
fn a_higher_router_id_on_our_prefix_moves_us_once_the_lsdb_settles() {
    // A /48 has 65535 slots; searching for a clash takes a moment but is
    // bounded (about 65535 tries on average).
    let (mut core, _) = started(7, settings());
    let old = core.prefixes().pod_prefix;
    let higher = clashing_higher_id(7);
    let s = summary(rid(7), &[rid(2), higher], 10);
    // The LSDB just changed: not yet.
    let actions = sample(&mut core, 1_000, &s, 1);
    assert!(actions.is_empty(), "{actions:?}");
    // A neighbour still exchanging databases: not yet either.
    let mut syncing = s.clone();
    syncing.neighbors[0].state = nsm::State::Loading;
    let actions = sample(&mut core, 1_000 + QUIET_MS, &syncing, 1);
    assert!(actions.is_empty());
    // Settled: move to the next free candidate.
    let actions = sample(&mut core, 1_000 + QUIET_MS, &s, 1);
    let new = core.prefixes().pod_prefix;
    assert_ne!(new, old);
    assert_eq!(core.prefixes().attempt, 1);
    assert_eq!(
        actions[..2],
        [
            Action::OspfStubPrefixes(vec![new, Ipv6Net::from(core.prefixes().node_address)]),
            Action::SetNodeAddress(core.prefixes().node_address),
        ]
    );
    assert_eq!(states(&actions)[0].pod_prefix, new);
    assert_eq!(tables(&actions).len(), 1);
    assert_eq!(core.counters().pod_prefix_moves, 1);
    // The same picture again changes nothing (OSPF has settled since
    // start, so the earlier run's routes may go).
    assert_eq!(sample(&mut core, 5_000, &s, 1), vec![Action::PruneStale]);
}

#[test]
fn routers_spf_cannot_reach_move_no_one() {
    // Attack 3: a Router-LSA of a higher id whose first candidate is our
    // /64, from a router nobody can reach (no links, or links nobody
    // confirms): in the LSDB, not in the SPF tree.
    let (mut core, _) = started(7, settings());
    let old = core.prefixes().pod_prefix;
    let mut s = summary(rid(7), &[rid(2), clashing_higher_id(7)], 10);
    s.reachable = [rid(7), rid(2)].into();
    sample(&mut core, 1_000, &s, 1);
    sample(&mut core, 1_000 + QUIET_MS, &s, 1);
    sample(&mut core, 60_000, &s, 1);
    assert_eq!(core.prefixes().pod_prefix, old);
    assert_eq!(core.counters().pod_prefix_moves, 0);
}

#[test]
fn a_node_with_pods_keeps_its_prefix_until_a_clash_is_proven_then_moves_once() {
    let (mut core, _) = started(7, settings());
    let old = core.prefixes().pod_prefix;
    let mut pod = veth(20, "km0123456789ab");
    pod.alias = Some(POD_VETH_ALIAS.into());
    core.handle(1, Event::Link(LinkEvent::Link(pod)));
    let higher = clashing_higher_id(7);
    let mut s = summary(rid(7), &[rid(2), higher], 10);
    // The higher router is reachable and would win the rule, but it does
    // not advertise our /64: the pods keep their addresses.
    sample(&mut core, 1_000, &s, 1);
    sample(&mut core, 1_000 + QUIET_MS, &s, 1);
    sample(&mut core, 60_000, &s, 1);
    assert_eq!(core.prefixes().pod_prefix, old);
    // Now it does: an alarm at once, a move only once the clash held for
    // the hold-down.
    s.refused = vec![routing::ownership::Refused {
        prefix: old,
        advertiser: higher,
        reason: routing::ownership::Refusal::Contested,
    }];
    let mut moved_at = None;
    for t in 62..100u64 {
        let actions = sample(&mut core, t * 1_000, &s, 1);
        if core.prefixes().pod_prefix != old {
            assert!(actions.contains(&Action::OspfStubPrefixes(core.prefixes().own())));
            moved_at = Some(t);
            break;
        }
    }
    assert_eq!(core.counters().pod_prefix_clashes, 1);
    let moved_at = moved_at.expect("moved");
    assert!(
        moved_at >= 62 + 20,
        "moved at {moved_at} s, before the hold-down"
    );
    assert_eq!(core.counters().pod_prefix_moves, 1);
    // Settled: no further moves.
    let now = core.prefixes().pod_prefix;
    for t in 100..130u64 {
        sample(&mut core, t * 1_000, &s, 1);
    }
    assert_eq!(core.prefixes().pod_prefix, now);
    assert_eq!(core.counters().pod_prefix_moves, 1);
}

#[test]
fn a_lower_router_id_on_our_prefix_and_a_fixed_prefix_never_move() {
    let (mut core, _) = started(7, settings());
    let old = core.prefixes().pod_prefix;
    let s = summary(rid(7), &[rid(2), rid(3)], 10);
    sample(&mut core, 0, &s, 1);
    sample(&mut core, 10_000, &s, 1);
    assert_eq!(core.prefixes().pod_prefix, old);

    let fixed: Ipv6Net = "fd00:77:0:42::/64".parse().unwrap();
    let mut with_fixed = settings();
    with_fixed.pod_prefix = Some(fixed);
    let mut core = Core::new(
        with_fixed,
        Identity::configured(rid(7)),
        mesh_link(3, "m-b"),
    );
    core.handle(0, Event::Start);
    assert_eq!(core.prefixes().pod_prefix, fixed);
    let s = summary(rid(7), &[clashing_higher_id(7)], 10);
    sample(&mut core, 0, &s, 1);
    sample(&mut core, 10_000, &s, 1);
    assert_eq!(core.prefixes().pod_prefix, fixed);
}

#[test]
fn the_state_file_says_who_attaches_pods_and_is_written_on_change_only() {
    let (core, actions) = started(7, settings());
    assert_eq!(states(&actions)[0].pod_attach, PodAttach::Agent);
    assert_eq!(core.counters().pod_prefix_moves, 0);
    let mut no_xdp = settings();
    no_xdp.xdp = false;
    let (mut core, actions) = started(7, no_xdp);
    assert_eq!(states(&actions)[0].pod_attach, PodAttach::Plugin);
    // A router id change rewrites it; a restart to the same content would not.
    let mut s = summary(rid(7), &[], 1);
    let mut actions = Vec::new();
    for t in 0..=21u64 {
        authenticated_clone(&mut s, t);
        actions = sample(&mut core, t * 1_000, &s, 3);
    }
    assert!(restarted(&actions));
    assert_eq!(states(&actions).len(), 1);
    let mut again = Vec::new();
    core.publish(&mut again);
    assert!(states(&again).is_empty(), "unchanged: not written again");
}

#[test]
fn finished_pod_veths_get_the_fast_path_once_and_lose_it_with_the_veth() {
    let (mut core, _) = started(7, settings());
    let mut pod = veth(20, "km0123456789ab");
    // Still being wired by the plugin: no mark yet.
    assert!(
        core.handle(1, Event::Link(LinkEvent::Link(pod.clone())))
            .is_empty()
    );
    pod.alias = Some(POD_VETH_ALIAS.into());
    let attach = Action::AttachPod {
        ifindex: 20,
        ifname: "km0123456789ab".into(),
    };
    assert_eq!(
        core.handle(2, Event::Link(LinkEvent::Link(pod.clone()))),
        vec![attach.clone()]
    );
    // Seen again (any change of the link): attached once only.
    assert!(
        core.handle(3, Event::Link(LinkEvent::Link(pod.clone())))
            .is_empty()
    );
    assert_eq!(
        core.handle(4, Event::Link(LinkEvent::LinkGone(20))),
        vec![Action::DetachPod {
            ifname: "km0123456789ab".into()
        }]
    );
    assert_eq!(core.counters().pod_attaches, 1);
    // Without XDP the plugin attaches pods itself.
    let mut no_xdp = settings();
    no_xdp.xdp = false;
    let (mut core, _) = started(7, no_xdp);
    assert!(core.handle(5, Event::Link(LinkEvent::Link(pod))).is_empty());
}

#[test]
fn pods_wired_while_the_agent_was_away_are_attached_at_start() {
    let mut pod = veth(20, "km0123456789ab");
    pod.alias = Some(POD_VETH_ALIAS.into());
    let dump = vec![LinkEvent::Link(pod)];
    let mut core = Core::new(settings(), Identity::configured(rid(7)), dump);
    let actions = core.handle(0, Event::Start);
    assert!(actions.contains(&Action::AttachPod {
        ifindex: 20,
        ifname: "km0123456789ab".into()
    }));
}

#[test]
fn two_neighbours_with_one_router_id_are_reported_once() {
    let (mut core, _) = started(7, settings());
    let mut s = summary(rid(7), &[rid(2)], 10);
    s.neighbors.push(NeighborSummary {
        ifindex: 4,
        interface: "m-c".into(),
        router_id: rid(2),
        addr: "fe80::2".parse().unwrap(),
        state: nsm::State::Full,
    });
    for t in 0..3 {
        sample(&mut core, t * 1_000, &s, 1);
    }
    assert_eq!(core.counters().duplicate_neighbor_ids, 1);
    assert_eq!(
        core.identity().router_id,
        rid(7),
        "not our id: nothing to change"
    );
}

#[test]
fn identity_comes_from_configuration_then_machine_id_then_mac() {
    let mut eth = veth(2, "eth0");
    eth.kind = None;
    eth.mac = Some(Mac([0x00, 0x1b, 0x21, 1, 2, 3]));
    let mut lo = veth(1, "lo");
    lo.loopback = true;
    lo.mac = Some(Mac([0x00, 0x1b, 0x21, 9, 9, 9]));
    let links = vec![LinkEvent::Link(eth), LinkEvent::Link(lo)];
    let configured =
        Core::discover_identity(Some(rid(5)), Some(("/etc/machine-id", "abc")), &links, 1);
    assert_eq!(configured.router_id, rid(5));
    assert!(!configured.can_rederive());
    let by_file = Core::discover_identity(None, Some(("/etc/machine-id", "abc\n")), &links, 1);
    assert_eq!(by_file.router_id, identity::router_id_from(b"abc", 0));
    let by_mac = Core::discover_identity(None, None, &links, 1);
    assert_eq!(
        by_mac.source,
        identity::IdSource::Mac("eth0".into()),
        "the loopback's MAC never counts"
    );
}

#[test]
fn an_earlier_runs_routes_go_only_once_ospf_has_resynchronised() {
    let (mut core, actions) = started(7, settings());
    assert!(
        !actions.contains(&Action::PruneStale),
        "nothing pruned at start"
    );
    let prune = |a: &[Action]| a.iter().filter(|a| **a == Action::PruneStale).count();
    // Every neighbour Full and the LSDB quiet, but within the first dead
    // interval another neighbour may still show up.
    let s = summary(rid(7), &[rid(2)], 5);
    assert_eq!(prune(&sample(&mut core, 1_000, &s, 1)), 0);
    assert_eq!(prune(&sample(&mut core, 2_000, &s, 1)), 0);
    // A neighbour still exchanging holds it up.
    let mut exchanging = s.clone();
    exchanging.neighbors[0].state = nsm::State::Exchange;
    assert_eq!(prune(&sample(&mut core, 4_000, &exchanging, 1)), 0);
    // Settled: pruned once.
    assert_eq!(prune(&sample(&mut core, 6_000, &s, 1)), 1);
    assert_eq!(prune(&sample(&mut core, 7_000, &s, 1)), 0);

    // OSPF that never settles: pruned at the latest after RESYNC_MAX_MS.
    let (mut core, _) = started(7, settings());
    for t in (1..15).map(|k| k * 1_000) {
        assert_eq!(prune(&sample(&mut core, t, &exchanging, 1)), 0, "at {t} ms");
    }
    assert_eq!(prune(&sample(&mut core, RESYNC_MAX_MS, &exchanging, 1)), 1);
}

fn bfd_actions(actions: &[Action]) -> Vec<Action> {
    actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::BfdAdd { .. }
                    | Action::BfdRemove(_)
                    | Action::OspfNeighborDown { .. }
                    | Action::SetLinkAlive { .. }
            )
        })
        .cloned()
        .collect()
}

#[test]
fn bfd_follows_the_neighbours_and_a_down_clears_alive_flags_before_the_adjacency() {
    let timers = routing::bfd::Timers::default();
    let (mut core, _) = started(
        7,
        Settings {
            bfd: Some(timers),
            ..settings()
        },
    );
    let key = routing::bfd::Key {
        ifindex: 3,
        peer: "fe80::2".parse().unwrap(),
    };
    let s = summary(rid(7), &[rid(2)], 10);
    assert_eq!(
        bfd_actions(&sample(&mut core, 0, &s, 1)),
        [Action::BfdAdd { key, timers }]
    );
    assert_eq!(
        bfd_actions(&sample(&mut core, 1_000, &s, 1)),
        [],
        "added once"
    );
    let down = |peer_admin| {
        Event::Bfd(routing::bfd::SessionChange {
            key,
            change: routing::bfd::Change::Down {
                diag: routing::bfd::Diag::ControlDetectionTimeExpired,
                peer_admin,
            },
        })
    };
    // AdminDown from the peer takes nothing down (RFC 5882 §3.2).
    assert_eq!(bfd_actions(&core.handle(1_100, down(true))), []);
    // A failure: the fast path first, then OSPF.
    assert_eq!(
        bfd_actions(&core.handle(1_200, down(false))),
        [
            Action::SetLinkAlive {
                ifindex: 3,
                alive: false
            },
            Action::OspfNeighborDown {
                ifindex: 3,
                router_id: rid(2)
            }
        ]
    );
    // Up again: the flags come back.
    let up = Event::Bfd(routing::bfd::SessionChange {
        key,
        change: routing::bfd::Change::Up,
    });
    assert_eq!(
        bfd_actions(&core.handle(1_300, up.clone())),
        [Action::SetLinkAlive {
            ifindex: 3,
            alive: true
        }]
    );
    assert_eq!(bfd_actions(&core.handle(1_400, up)), [], "once");
    // Down again, and the killed neighbour goes away: the session goes,
    // and the link stays dead (OSPF may still route over it until its SPF
    // runs)...
    core.handle(1_500, down(false));
    let mut gone = s.clone();
    gone.neighbors.clear();
    assert_eq!(
        bfd_actions(&sample(&mut core, 2_000, &gone, 1)),
        [Action::BfdRemove(key)]
    );
    // ...until the neighbour is back at 2-Way, which it may be without
    // ever running BFD again.
    assert_eq!(
        bfd_actions(&sample(&mut core, 3_000, &s, 1)),
        [
            Action::BfdAdd { key, timers },
            Action::SetLinkAlive {
                ifindex: 3,
                alive: true
            }
        ]
    );
    core.handle(
        3_100,
        Event::Bfd(routing::bfd::SessionChange {
            key,
            change: routing::bfd::Change::Down {
                diag: routing::bfd::Diag::ControlDetectionTimeExpired,
                peer_admin: false,
            },
        }),
    );
    sample(&mut core, 4_000, &gone, 1);
    // A change for a session the core does not know is ignored.
    assert_eq!(bfd_actions(&core.handle(2_100, down(false))), []);
}

#[test]
fn bfd_on_a_shared_segment_takes_down_the_adjacency_only() {
    let (mut core, _) = started(
        7,
        Settings {
            bfd: Some(routing::bfd::Timers::default()),
            ..settings()
        },
    );
    let mut s = summary(rid(7), &[rid(2), rid(5)], 10);
    s.neighbors.push(NeighborSummary {
        ifindex: 3,
        interface: "m-b".into(),
        router_id: rid(5),
        addr: "fe80::5".parse().unwrap(),
        state: nsm::State::TwoWay,
    });
    assert_eq!(bfd_actions(&sample(&mut core, 0, &s, 1)).len(), 2);
    let key = routing::bfd::Key {
        ifindex: 3,
        peer: "fe80::5".parse().unwrap(),
    };
    // The other router on the segment is still there: no alive flip.
    assert_eq!(
        bfd_actions(&core.handle(
            100,
            Event::Bfd(routing::bfd::SessionChange {
                key,
                change: routing::bfd::Change::Down {
                    diag: routing::bfd::Diag::ControlDetectionTimeExpired,
                    peer_admin: false
                },
            })
        )),
        [Action::OspfNeighborDown {
            ifindex: 3,
            router_id: rid(5)
        }]
    );
}

#[test]
fn a_node_with_ipv4_advertises_routes_and_publishes_both_families() {
    use ipnet::Ipv4Net;
    let space = prefixes::Ipv4Space {
        cluster: "198.18.0.0/15".parse().unwrap(),
        pod_len: 24,
    };
    let dump: Vec<LinkEvent> = [mesh_link(3, "m-b"), mesh_link(4, "m-c")].concat();
    let mut core = Core::new(
        Settings {
            ipv4: Some(space),
            ..settings()
        },
        Identity::derived(&7u32.to_be_bytes(), identity::IdSource::Random),
        dump,
    );
    core.identity.router_id = rid(7);
    core.prefixes4 = Some(NodePrefixes4::new(space.candidate(rid(7), 0), 0));
    let p4 = *core.prefixes4().expect("IPv4 prefixes");
    assert!(space.cluster.contains(&p4.pod_prefix));
    assert_eq!(p4.pod_prefix.prefix_len(), 24);
    let actions = core.handle(0, Event::Start);
    // The IPv4 instance starts with the node's IPv4 prefixes in their LSA
    // encoding, and the node's /32 goes on the local device.
    let stubs4 = actions.iter().find_map(|a| match a {
        Action::StartOspf { stubs4, .. } => stubs4.clone(),
        _ => None,
    });
    assert_eq!(
        stubs4,
        Some(vec![
            routing::af::ipv4_to_wire(p4.pod_prefix),
            routing::af::ipv4_to_wire(Ipv4Net::from(p4.node_address)),
        ])
    );
    assert!(actions.contains(&Action::SetNodeAddress4(p4.node_address)));
    let state = states(&actions)[0];
    assert_eq!(state.ipv4.map(|v| v.pod_prefix), Some(p4.pod_prefix));
    assert_eq!(state.ipv4.map(|v| v.node_address), Some(p4.node_address));
    // A neighbour's IPv4 pod prefix from the IPv4 instance: routed via its
    // IPv6 link-local address; our own prefixes never are.
    let theirs: Ipv4Net = "198.18.200.0/24".parse().unwrap();
    let via = ll(3);
    let route = |p: Ipv4Net| {
        (
            routing::af::ipv4_to_wire(p),
            Route {
                cost: 10,
                nexthops: [routing::NextHop {
                    ifindex: 3,
                    addr: via,
                }]
                .into(),
            },
        )
    };
    let actions = core.handle(
        10,
        Event::Rib4(vec![rib_diff(&[route(theirs), route(p4.pod_prefix)])]),
    );
    let t = tables(&actions)[0];
    assert_eq!(
        t.routes.get(&theirs.into()),
        Some(&[crate::fib::NextHopKey { ifindex: 3, via }].into())
    );
    assert!(!t.routes.contains_key(&p4.pod_prefix.into()));
    assert!(t.local.contains(&p4.node_address.into()));
}

#[test]
fn a_node_with_pods_keeps_its_ipv4_prefix_until_a_clash_is_proven_then_moves_once() {
    let space = prefixes::Ipv4Space {
        cluster: "198.18.0.0/15".parse().unwrap(),
        pod_len: 24,
    };
    let (mut core, _) = started(
        7,
        Settings {
            ipv4: Some(space),
            ..settings()
        },
    );
    core.prefixes4 = Some(NodePrefixes4::new(space.candidate(rid(7), 0), 0));
    let old = core.prefixes4().expect("IPv4").pod_prefix;
    let mut pod = veth(20, "km0123456789ab");
    pod.alias = Some(POD_VETH_ALIAS.into());
    core.handle(1, Event::Link(LinkEvent::Link(pod)));
    // A higher router id whose first IPv4 candidate is ours (512 slots in
    // a /15 of /24s: one is near).
    let higher = (8..u32::MAX)
        .map(rid)
        .find(|r| space.candidate(*r, 0) == old)
        .expect("a clash exists");
    let s = summary(rid(7), &[rid(2), higher], 10);
    // It is reachable and would win the rule, but advertises nothing of
    // ours: the pods keep their IPv4 addresses.
    sample(&mut core, 1_000, &s, 1);
    sample(&mut core, 1_000 + QUIET_MS, &s, 1);
    sample(&mut core, 60_000, &s, 1);
    assert_eq!(core.prefixes4().expect("IPv4").pod_prefix, old);
    assert_eq!(core.counters().pod_prefix_clashes, 0);
    // Now the IPv4 instance refuses its advertisement of our /24: an
    // alarm at once, a move once the clash held for the hold-down.
    let refused = vec![routing::ownership::Refused {
        prefix: routing::af::ipv4_to_wire(old),
        advertiser: higher,
        reason: routing::ownership::Refusal::Contested,
    }];
    let mut moved_at = None;
    for t in 62..100u64 {
        core.handle(
            t * 1_000,
            Event::Ospf4Sample {
                refused: refused.clone(),
            },
        );
        let actions = sample(&mut core, t * 1_000, &s, 1);
        let now = *core.prefixes4().expect("IPv4");
        if now.pod_prefix != old {
            assert!(actions.contains(&Action::OspfStubPrefixes4(now.stubs())));
            assert_eq!(
                states(&actions)[0].ipv4.map(|v| v.pod_prefix),
                Some(now.pod_prefix)
            );
            moved_at = Some(t);
            break;
        }
    }
    assert_eq!(core.counters().pod_prefix_clashes, 1);
    assert_eq!(core.counters().prefixes_refused, 1);
    let moved_at = moved_at.expect("moved");
    assert!(
        moved_at >= 62 + 20,
        "moved at {moved_at} s, before the hold-down"
    );
    assert_eq!(core.counters().pod_prefix_moves, 1);
    // The IPv6 prefix stayed where it was: only the IPv4 one clashed.
    assert_eq!(
        core.prefixes().pod_prefix,
        prefixes::pod_prefix_candidate(core.settings.cluster_prefix, rid(7), 0)
    );
}
