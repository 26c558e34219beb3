//! Two BFD cores joined by a simulated link with a simulated clock: every
//! rule of RFC 5880 §6.8.6 that needs a session, the Poll Sequence, timer
//! negotiation, detection and AdminDown.

use super::*;

const A_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xa);
const B_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xb);
/// a's session (with b, on a's ifindex 2) and b's (with a, on 3).
const AK: Key = Key {
    ifindex: 2,
    peer: B_LL,
};
const BK: Key = Key {
    ifindex: 3,
    peer: A_LL,
};

struct Pair {
    a: Bfd,
    b: Bfd,
    now: u64,
    /// Whether packets get through, each way.
    a_to_b: bool,
    b_to_a: bool,
    /// Every change, with when and on which side.
    changes: Vec<(u64, char, Change)>,
    /// Every packet sent, with when and by whom.
    sent: Vec<(u64, char, ControlRepr)>,
}

impl Pair {
    fn new(timers: Timers) -> Pair {
        let mut a = Bfd::new(100);
        let mut b = Bfd::new(200);
        a.add(AK, timers, 0);
        b.add(BK, timers, 0);
        Pair {
            a,
            b,
            now: 0,
            a_to_b: true,
            b_to_a: true,
            changes: Vec::new(),
            sent: Vec::new(),
        }
    }

    /// Run both cores until `until` (µs), delivering at once.
    fn run(&mut self, until: u64) {
        loop {
            let next = self.a.next_deadline_us().min(self.b.next_deadline_us());
            if next > until {
                self.now = until;
                return;
            }
            self.now = self.now.max(next);
            for side in ['a', 'b'] {
                let (me, other, pass, other_if, my_ll) = match side {
                    'a' => (&mut self.a, &mut self.b, self.a_to_b, BK.ifindex, A_LL),
                    _ => (&mut self.b, &mut self.a, self.b_to_a, AK.ifindex, B_LL),
                };
                let (changes, out) = me.poll(self.now);
                for c in changes {
                    self.changes.push((self.now, side, c.change));
                }
                for t in out {
                    self.sent
                        .push((self.now, side, ControlRepr::parse(&t.packet).unwrap()));
                    if pass
                        && let Ok(Some(c)) =
                            other.receive(self.now, other_if, my_ll, HOP_LIMIT, &t.packet)
                    {
                        let peer = if side == 'a' { 'b' } else { 'a' };
                        self.changes.push((self.now, peer, c.change));
                    }
                }
            }
        }
    }

    fn state(&self, side: char) -> State {
        match side {
            'a' => self.a.session(&AK).unwrap().state(),
            _ => self.b.session(&BK).unwrap().state(),
        }
    }
}

/// A packet of peer 9 to our session 1, in Init, at 10 ms x 3.
fn from_peer() -> ControlRepr {
    ControlRepr {
        diag: Diag::None,
        state: State::Init,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_disc: 9,
        your_disc: 1,
        desired_min_tx_us: 10_000,
        required_min_rx_us: 10_000,
        required_min_echo_rx_us: 0,
    }
}

fn ms(n: u64) -> u64 {
    n * 1000
}

#[test]
fn a_session_comes_up_by_three_way_handshake_and_speeds_up_by_poll() {
    let mut p = Pair::new(Timers::default());
    p.run(ms(2_100));
    // Both start Down and send at once: each goes Init; the next packet
    // (below Up, at most one a second) takes them Up.
    assert_eq!(p.state('a'), State::Up, "{:?}", p.changes);
    assert_eq!(p.state('b'), State::Up);
    let ups: Vec<char> = p
        .changes
        .iter()
        .filter(|c| c.2 == Change::Up)
        .map(|c| c.1)
        .collect();
    assert_eq!(ups.len(), 2, "{:?}", p.changes);
    // Before Up, packets go at 1 s; once Up, the fast timers are polled
    // in and used.
    p.run(ms(3_000));
    let a = p.a.session(&AK).unwrap();
    assert!(!a.polling(), "the poll ended with a Final");
    assert_eq!(a.tx_interval_us(), 10_000);
    assert_eq!(a.detect_time_us(), 30_000);
    let polls: Vec<_> = p.sent.iter().filter(|s| s.2.poll).collect();
    let finals: Vec<_> = p.sent.iter().filter(|s| s.2.final_).collect();
    assert!(!polls.is_empty() && !finals.is_empty());
    assert!(
        p.sent.iter().all(|s| !(s.2.poll && s.2.final_)),
        "never P and F together"
    );
    // Between 75% and 100% of 10 ms apart once settled (§6.8.7 jitter).
    let a_times: Vec<u64> = p
        .sent
        .iter()
        .filter(|s| s.1 == 'a' && s.0 > ms(2_000) && !s.2.final_)
        .map(|s| s.0)
        .collect();
    for w in a_times.windows(2) {
        let gap = w[1] - w[0];
        assert!((7_500..=10_000).contains(&gap), "gap {gap} us");
    }
}

#[test]
fn a_silent_peer_is_detected_within_the_detection_time() {
    let mut p = Pair::new(Timers::default());
    p.run(ms(3_000));
    assert_eq!(p.state('a'), State::Up);
    let cut = p.now;
    assert!(
        p.changes.iter().all(|c| c.2 == Change::Up),
        "no flap before the cut: {:?}",
        p.changes
    );
    p.b_to_a = false;
    p.run(cut + ms(100));
    let down = p
        .changes
        .iter()
        .find(|c| c.1 == 'a' && matches!(c.2, Change::Down { .. }))
        .expect("a went down");
    assert_eq!(
        down.2,
        Change::Down {
            diag: Diag::ControlDetectionTimeExpired,
            peer_admin: false
        }
    );
    // Detection runs from the last packet, at most 30 ms before the cut
    // was noticed and at most one interval before the cut.
    assert!(
        down.0 - cut <= 30_000,
        "detected {} us after the cut",
        down.0 - cut
    );
    let a = p.a.session(&AK).unwrap();
    assert_eq!(a.remote_disc(), 0, "the peer is forgotten (§6.8.1)");
    assert_eq!(a.counters.flaps, 1);
    assert_eq!(a.diag(), Diag::ControlDetectionTimeExpired);
    // a forgot b's discriminator, so b discards a's Down packets (your
    // discriminator 0 while Up) and goes down by its own detection time.
    let b_down: Vec<_> = p
        .changes
        .iter()
        .filter(|c| c.1 == 'b' && c.0 > cut)
        .collect();
    assert_eq!(
        b_down.iter().map(|c| c.2).collect::<Vec<_>>(),
        [Change::Down {
            diag: Diag::ControlDetectionTimeExpired,
            peer_admin: false
        }],
        "{:?}",
        p.changes
    );
    assert!(b_down[0].0 - down.0 <= 30_000);
    assert!(p.b.discards()[&Discard::ZeroYourDiscriminator] >= 1);
    // The link heals: both come back Up.
    p.b_to_a = true;
    p.run(p.now + ms(5_000));
    assert_eq!((p.state('a'), p.state('b')), (State::Up, State::Up));
}

#[test]
fn admin_down_from_the_peer_is_marked_so_clients_ignore_it() {
    let mut p = Pair::new(Timers::default());
    p.run(ms(3_000));
    let at = p.now;
    p.b.shutdown_all(p.now);
    p.run(p.now + ms(50));
    assert_eq!(p.state('b'), State::AdminDown);
    assert_eq!(p.state('a'), State::Down);
    let a_down = p
        .changes
        .iter()
        .find(|c| c.1 == 'a' && c.0 >= at)
        .map(|c| c.2);
    assert_eq!(
        a_down,
        Some(Change::Down {
            diag: Diag::NeighborSignaledDown,
            peer_admin: true
        })
    );
    // An AdminDown session sends a few packets, then falls silent, and
    // discards what arrives.
    p.run(p.now + ms(5_000));
    let sent_before = p.sent.iter().filter(|s| s.1 == 'b').count();
    p.run(p.now + ms(5_000));
    assert_eq!(p.sent.iter().filter(|s| s.1 == 'b').count(), sent_before);
    assert!(
        p.b.discards()
            .get(&Discard::AdminDown)
            .copied()
            .unwrap_or(0)
            > 0
    );
    // a stays Down: it does not take AdminDown's silence for a failure.
    assert_eq!(p.state('a'), State::Down);
}

#[test]
fn the_peer_going_down_takes_an_up_session_down() {
    let mut s = Session::new(1, Timers::default(), 0);
    let mut pkt = from_peer();
    // Down ignores Up; Down + Init -> Up.
    pkt.state = State::Up;
    assert_eq!(s.receive(0, &pkt), Ok(None));
    assert_eq!(s.state(), State::Down);
    pkt.state = State::Init;
    assert_eq!(s.receive(0, &pkt), Ok(Some(Change::Up)));
    // Up ignores Init and Up; Up + Down -> Down (diag 3).
    assert_eq!(s.receive(0, &pkt), Ok(None));
    pkt.state = State::Down;
    assert_eq!(
        s.receive(0, &pkt),
        Ok(Some(Change::Down {
            diag: Diag::NeighborSignaledDown,
            peer_admin: false
        }))
    );
    // Down + Down -> Init; Init ignores Down; Init + Up -> Up.
    assert_eq!(s.receive(0, &pkt), Ok(None));
    assert_eq!(s.state(), State::Init);
    assert_eq!(s.receive(0, &pkt), Ok(None));
    assert_eq!(s.state(), State::Init);
    pkt.state = State::Up;
    assert_eq!(s.receive(0, &pkt), Ok(Some(Change::Up)));
    // Init times out to Down without a change for the client (it never
    // saw Up from there), Up with one.
    assert_eq!(
        s.check_detection(1_000_000),
        Some(Change::Down {
            diag: Diag::ControlDetectionTimeExpired,
            peer_admin: false
        })
    );
    assert_eq!(s.check_detection(2_000_000), None, "Down does not time out");
}

#[test]
fn a_poll_is_answered_with_a_final_at_once_and_an_increase_waits_for_its_final() {
    let mut s = Session::new(1, Timers::default(), 0);
    let up = from_peer();
    assert_eq!(s.receive(0, &up), Ok(Some(Change::Up)));
    // Up: 10 ms is used at once (a decrease) and polled.
    assert_eq!(s.tx_interval_us(), 10_000);
    let first = s.transmit(0).unwrap();
    assert!(first.poll && !first.final_);
    assert_eq!(first.desired_min_tx_us, 10_000);
    // The peer polls: the answer is due at once, with F and without P,
    // and does not move the periodic schedule.
    let deadline = s.next_deadline_us();
    assert!(deadline > 0);
    s.receive(
        1,
        &ControlRepr {
            poll: true,
            state: State::Up,
            ..up
        },
    )
    .unwrap();
    assert_eq!(s.next_deadline_us(), 0);
    let answer = s.transmit(1).unwrap();
    assert!(answer.final_ && !answer.poll);
    let after = s.next_deadline_us();
    assert!(
        after > 1 && after <= deadline,
        "the periodic schedule stays: {after} vs {deadline}"
    );
    // Our poll ends with the peer's Final.
    assert!(s.polling());
    s.receive(
        2,
        &ControlRepr {
            final_: true,
            state: State::Up,
            ..up
        },
    )
    .unwrap();
    assert!(!s.polling());
    // The peer asks for 50 ms: our interval follows its Required Min RX.
    s.receive(
        3,
        &ControlRepr {
            required_min_rx_us: 50_000,
            state: State::Up,
            ..up
        },
    )
    .unwrap();
    assert_eq!(s.tx_interval_us(), 50_000);
    // The peer's desired TX sets our detection time.
    s.receive(
        4,
        &ControlRepr {
            desired_min_tx_us: 40_000,
            detect_mult: 5,
            state: State::Up,
            ..up
        },
    )
    .unwrap();
    assert_eq!(s.detect_time_us(), 200_000);
    // Going down slows to 1 s at once: no poll can finish with a dead peer.
    s.check_detection(10_000_000);
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.tx_interval_us(), 1_000_000);
    assert!(!s.polling());
}

#[test]
fn demand_mode_from_the_peer_stops_periodic_packets_once_both_are_up() {
    let mut s = Session::new(1, Timers::default(), 0);
    let up = from_peer();
    s.receive(0, &up).unwrap();
    s.receive(
        1,
        &ControlRepr {
            final_: true,
            demand: true,
            state: State::Up,
            ..up
        },
    )
    .unwrap();
    assert_eq!(
        s.transmit(1_000_000),
        None,
        "no periodic packets in demand mode"
    );
    // A peer that cannot take packets gets none (§6.8.7).
    s.receive(
        2,
        &ControlRepr {
            required_min_rx_us: 0,
            state: State::Up,
            ..up
        },
    )
    .unwrap();
    assert_eq!(s.transmit(2_000_000), None);
}

#[test]
fn every_discard_rule_that_needs_a_session_is_counted() {
    let mut p = Pair::new(Timers::default());
    p.run(ms(3_000));
    let a_disc = p.a.session(&AK).unwrap().local_disc();
    let b_disc = p.b.session(&BK).unwrap().local_disc();
    let pkt = |your: u32| {
        ControlRepr {
            diag: Diag::None,
            state: State::Up,
            poll: false,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_disc: b_disc,
            your_disc: your,
            desired_min_tx_us: 10_000,
            required_min_rx_us: 10_000,
            required_min_echo_rx_us: 0,
        }
        .emit()
    };
    let now = p.now;
    let a = &mut p.a;
    assert_eq!(
        a.receive(now, 2, B_LL, 254, &pkt(a_disc)),
        Err(Discard::HopLimit)
    );
    assert_eq!(
        a.receive(now, 2, B_LL, 64, &pkt(a_disc)),
        Err(Discard::HopLimit)
    );
    assert_eq!(
        a.receive(now, 2, B_LL, 255, &pkt(a_disc + 7)),
        Err(Discard::UnknownDiscriminator)
    );
    assert_eq!(
        a.receive(now, 5, B_LL, 255, &pkt(a_disc)),
        Err(Discard::WrongPeer)
    );
    assert_eq!(
        a.receive(now, 2, A_LL, 255, &pkt(a_disc)),
        Err(Discard::WrongPeer)
    );
    assert_eq!(
        a.receive(now, 5, B_LL, 255, &pkt(0)),
        Err(Discard::NoSession)
    );
    assert_eq!(
        a.receive(now, 2, B_LL, 255, &pkt(0)),
        Err(Discard::ZeroYourDiscriminator)
    );
    assert_eq!(
        a.receive(now, 2, B_LL, 255, &pkt(a_disc)[..20]),
        Err(Discard::Truncated)
    );
    let mut v2 = pkt(a_disc);
    v2[0] = 0x40;
    assert_eq!(a.receive(now, 2, B_LL, 255, &v2), Err(Discard::Version));
    for d in [
        Discard::HopLimit,
        Discard::UnknownDiscriminator,
        Discard::WrongPeer,
        Discard::NoSession,
        Discard::ZeroYourDiscriminator,
        Discard::Truncated,
        Discard::Version,
    ] {
        assert!(
            a.discards().get(&d).copied().unwrap_or(0) >= 1,
            "{d:?} counted"
        );
    }
    assert_eq!(a.discards()[&Discard::HopLimit], 2);
    // None of it moved the session.
    assert_eq!(a.session(&AK).unwrap().state(), State::Up);
    // Garbage of every length never panics.
    for len in 0..64 {
        let junk: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
        let _ = a.receive(now, 2, B_LL, 255, &junk);
    }
}

#[test]
fn sessions_get_distinct_discriminators_and_go_away() {
    let mut bfd = Bfd::new(0);
    for i in 0..5 {
        bfd.add(
            Key {
                ifindex: i,
                peer: B_LL,
            },
            Timers::default(),
            0,
        );
    }
    bfd.add(
        Key {
            ifindex: 0,
            peer: B_LL,
        },
        Timers::default(),
        0,
    );
    let discs: std::collections::BTreeSet<u32> =
        bfd.sessions().iter().map(|s| s.local_disc).collect();
    assert_eq!(discs.len(), 5);
    assert!(!discs.contains(&0));
    assert!(bfd.remove(&Key {
        ifindex: 3,
        peer: B_LL
    }));
    assert!(!bfd.remove(&Key {
        ifindex: 3,
        peer: B_LL
    }));
    assert_eq!(bfd.sessions().len(), 4);
}

#[test]
fn an_adopted_session_is_up_and_carries_on_with_its_peer() {
    let mut p = Pair::new(Timers::default());
    p.run(ms(3_000));
    let (a_disc, b_disc) = (
        p.a.session(&AK).unwrap().local_disc(),
        p.b.session(&BK).unwrap().local_disc(),
    );
    // a's process restarts: a new core adopts the session it left.
    let mut a = Bfd::new(5_000);
    a.adopt(AK, a_disc, b_disc, Timers::default(), p.now);
    assert_eq!(a.session(&AK).unwrap().state(), State::Up);
    p.a = a;
    let flaps_before = p.changes.len();
    p.run(p.now + ms(3_000));
    assert_eq!(
        p.changes.len(),
        flaps_before,
        "no change either side: {:?}",
        p.changes
    );
    assert_eq!((p.state('a'), p.state('b')), (State::Up, State::Up));
    // A new session after adoption never takes an adopted discriminator.
    p.a.add(
        Key {
            ifindex: 9,
            peer: B_LL,
        },
        Timers::default(),
        p.now,
    );
    let discs: std::collections::BTreeSet<u32> =
        p.a.sessions().iter().map(|s| s.local_disc).collect();
    assert_eq!(discs.len(), 2);
}
