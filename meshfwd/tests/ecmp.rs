//! ECMP under `BPF_PROG_TEST_RUN`: 10,000 random flows over four live next
//! hops spread evenly, each flow keeps its member, and a dead member's
//! flows, and only those, move.

mod support;

use std::net::Ipv6Addr;

use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use support::{Frame, Harness, XDP_REDIRECT, nh_mac};

const FLOWS: usize = 10_000;
const MEMBERS: u32 = 4;

/// Return which next hop (1..=4) carried `frame`, from its new dst MAC.
fn member_of(h: &Harness, frame: &[u8]) -> u32 {
    let (verdict, out) = h.run(frame);
    assert_eq!(verdict, XDP_REDIRECT, "flow forwarded");
    (1..=MEMBERS)
        .find(|n| out[..6] == nh_mac(*n as u8))
        .expect("a member's MAC")
}

fn random_flows() -> Vec<Vec<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(0x6b75_6265);
    (0..FLOWS)
        .map(|_| {
            let src = Ipv6Addr::from(
                rng.r#gen::<u128>() & !(0xffff_ffffu128 << 96) | (0x2001_0db8u128 << 96),
            );
            // Destinations anywhere inside the routed 2001:db8:8000::/33.
            let dst = Ipv6Addr::from((rng.r#gen::<u128>() >> 33) | (0x2001_0db8_8000u128 << 80));
            let mut f = Frame::udp(&src.to_string(), &dst.to_string(), rng.r#gen(), rng.r#gen());
            f.next_header = if rng.gen_bool(0.5) { 17 } else { 6 };
            f.flow_label = rng.r#gen::<u32>() & 0xF_FFFF;
            f.bytes()
        })
        .collect()
}

#[test]
fn flows_spread_evenly_stick_and_only_dead_member_flows_move() {
    let mut h = Harness::new();
    for id in 1..=MEMBERS {
        h.next_hop(id);
    }
    h.group(7, &[1, 2, 3, 4]);
    h.route("2001:db8:8000::".parse().unwrap(), 33, 7);

    let flows = random_flows();
    let first: Vec<u32> = flows.iter().map(|f| member_of(&h, f)).collect();

    // Even spread: each member within 25% +/- 3 points.
    let mut counts = [0usize; MEMBERS as usize];
    for m in &first {
        counts[*m as usize - 1] += 1;
    }
    for (i, c) in counts.iter().enumerate() {
        let share = *c as f64 / FLOWS as f64;
        assert!(
            (0.22..=0.28).contains(&share),
            "member {} carries {share:.4} of flows: {counts:?}",
            i + 1
        );
    }
    eprintln!("spread over 4 live members: {counts:?}");

    // Stickiness: the same flow always takes the same member.
    for (f, m) in flows.iter().zip(&first) {
        assert_eq!(
            member_of(&h, f),
            *m,
            "a flow changed member without a change"
        );
    }

    // Member 3 dies (one map write): only its flows move, over the others.
    h.set_alive(3, false);
    let mut moved_to = [0usize; MEMBERS as usize];
    for (f, m) in flows.iter().zip(&first) {
        let now = member_of(&h, f);
        if *m == 3 {
            assert_ne!(now, 3, "a flow still uses the dead member");
            moved_to[now as usize - 1] += 1;
        } else {
            assert_eq!(now, *m, "a flow of a live member moved");
        }
    }
    eprintln!("member 3's {} flows moved to: {moved_to:?}", counts[2]);
    for id in [1, 2, 4] {
        let share = moved_to[id - 1] as f64 / counts[2] as f64;
        assert!(
            (0.25..=0.42).contains(&share),
            "survivor {id} got {share:.3} of the moved flows"
        );
    }

    // Member 3 comes back: every flow returns to its original member.
    h.set_alive(3, true);
    for (f, m) in flows.iter().zip(&first) {
        assert_eq!(
            member_of(&h, f),
            *m,
            "flows return when the member is alive again"
        );
    }
}
