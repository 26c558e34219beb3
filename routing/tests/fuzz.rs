//! Nothing that arrives from the network may panic the process.
//!
//! Seeded, bounded mutation testing: real packets (from a simulated
//! adjacency, the scapy-built codec fixtures and BIRD's captured packets)
//! are mutated byte-wise (bit flips, truncation, extension, overwritten
//! length and count fields, splices) and structurally (re-encoded with
//! random field values and valid checksums, so they get past the checksum
//! and reach the state machines), then fed
//!
//! - 200,000 times through the parser (plus the LSA walker of LS Updates),
//!   checking that whatever parses re-emits into something that parses the same;
//! - 200,000 times through an `Instance` holding a Full adjacency, with its
//!   timers fired as the clock advances.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv6Addr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use routing::neighbor::nsm;
use routing::packet::lsa::header::{LsaType, MAX_AGE, MAX_SEQ};
use routing::packet::lsa::{Lsa, LsaBody};
use routing::packet::lsupd::LsUpdatePacket;
use routing::packet::{ALL_D_ROUTERS, ALL_SPF_ROUTERS, Body, Packet, PacketRepr};
use routing::sim::{Sim, link_local, router_id};
use routing::{Input, InstanceConfig, Ipv6Net, Output, Time, TimerId};

const PARSER_ITERATIONS: usize = 200_000;
const INSTANCE_ITERATIONS: usize = 200_000;

/// Packets router 0 received from router 1 while a two-router adjacency formed.
fn corpus() -> (Sim, Vec<Vec<u8>>) {
    let mut sim = Sim::new();
    for n in 0..2 {
        sim.add_router(InstanceConfig {
            router_id: router_id(n),
            stub_prefixes: vec![
                format!("fd00:{n}::/64").parse::<Ipv6Net>().unwrap(),
                format!("fd00:ff::{n}/128").parse::<Ipv6Net>().unwrap(),
            ],
            ..Default::default()
        });
    }
    sim.capture = Some(Vec::new());
    sim.add_link(0, 1, 1);
    sim.run_for(12_000);
    let mut packets: Vec<Vec<u8>> = sim
        .capture
        .take()
        .unwrap()
        .into_iter()
        .filter(|c| c.0 == 0)
        .map(|c| c.4)
        .collect();
    packets.sort();
    packets.dedup();
    // Add BIRD's packets when the fixtures are there.
    let dir = std::path::PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    )
    .join("tests/fixtures/bird");
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().extension().is_some_and(|x| x == "bin") {
                packets.push(std::fs::read(e.path()).unwrap());
            }
        }
    }
    (sim, packets)
}

/// Mutate raw bytes.
fn mutate_bytes(rng: &mut ChaCha8Rng, corpus: &[Vec<u8>], data: &mut Vec<u8>) {
    match rng.gen_range(0..8) {
        0 => {
            for _ in 0..rng.gen_range(1..=8) {
                if !data.is_empty() {
                    let i = rng.gen_range(0..data.len());
                    data[i] ^= 1 << rng.gen_range(0..8);
                }
            }
        }
        1 => {
            let n = rng.gen_range(0..=data.len());
            data.truncate(n);
        }
        2 => {
            for _ in 0..rng.gen_range(1..64) {
                data.push(rng.r#gen());
            }
        }
        3 => {
            // Overwrite a 16-bit field at a "length-like" offset.
            let offsets = [2usize, 16, 18, 20, 22, 34, 36, 38, 40, 42];
            let at = offsets[rng.gen_range(0..offsets.len())];
            if at + 1 < data.len() {
                let v: u16 = if rng.gen_bool(0.5) {
                    rng.r#gen()
                } else {
                    rng.gen_range(0..64)
                };
                data[at..at + 2].copy_from_slice(&v.to_be_bytes());
            }
        }
        4 => {
            // Overwrite a 32-bit count at the start of the body.
            if data.len() >= 20 {
                let v: u32 = if rng.gen_bool(0.5) {
                    rng.r#gen()
                } else {
                    rng.gen_range(0..8)
                };
                data[16..20].copy_from_slice(&v.to_be_bytes());
            }
        }
        5 => {
            // Splice the tail of another packet.
            let other = &corpus[rng.gen_range(0..corpus.len())];
            let cut = rng.gen_range(0..=data.len());
            let from = rng.gen_range(0..=other.len());
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        6 => {
            for _ in 0..rng.gen_range(1..4) {
                if !data.is_empty() {
                    let i = rng.gen_range(0..data.len());
                    data[i] = rng.r#gen();
                }
            }
        }
        _ => {
            *data = (0..rng.gen_range(0..200)).map(|_| rng.r#gen()).collect();
        }
    }
}

/// Mutate a parsed packet's fields; return it re-encoded with valid checksums.
fn mutate_repr(rng: &mut ChaCha8Rng, repr: &mut PacketRepr) {
    let pick_seq = |rng: &mut ChaCha8Rng| match rng.gen_range(0..4) {
        0 => MAX_SEQ,
        1 => 0x8000_0001,
        2 => rng.r#gen(),
        _ => 0x8000_0000,
    };
    match &mut repr.body {
        Body::Hello(h) => match rng.gen_range(0..6) {
            0 => h.neighbors.clear(),
            1 => h.hello_interval = rng.gen_range(0..3),
            2 => h.dr = router_id(rng.gen_range(0..3)),
            3 => h.interface_id = rng.r#gen(),
            4 => h.options.0 = rng.gen_range(0..0x40),
            _ => h.neighbors.push(router_id(rng.gen_range(0..5))),
        },
        Body::DbDesc(d) => match rng.gen_range(0..5) {
            0 => d.flags.0 = rng.gen_range(0..8),
            1 => d.seq = d.seq.wrapping_add(rng.gen_range(0..3)),
            2 => d.mtu = rng.r#gen(),
            3 => {
                for h in &mut d.lsa_headers {
                    h.seq = pick_seq(rng);
                    h.ls_type = LsaType(rng.r#gen());
                }
            }
            _ => d.options.0 ^= 2,
        },
        Body::LsRequest(r) => {
            for k in &mut r.entries {
                if rng.gen_bool(0.5) {
                    k.ls_type = LsaType(rng.r#gen());
                }
                if rng.gen_bool(0.3) {
                    k.ls_id = rng.r#gen();
                }
            }
        }
        Body::LsUpdate(u) => {
            for lsa in &mut u.lsas {
                match rng.gen_range(0..7) {
                    0 => lsa.header.seq = pick_seq(rng),
                    1 => {
                        lsa.header.age = if rng.gen_bool(0.5) {
                            MAX_AGE
                        } else {
                            rng.r#gen()
                        }
                    }
                    2 => lsa.header.ls_type = LsaType(rng.r#gen()),
                    3 => lsa.header.adv_router = router_id(rng.gen_range(0..4)),
                    4 => {
                        if let LsaBody::Router(r) = &mut lsa.body {
                            for l in &mut r.links {
                                l.neighbor_router_id = router_id(rng.gen_range(0..4));
                                l.metric = rng.r#gen();
                            }
                        }
                    }
                    5 => {
                        lsa.body =
                            LsaBody::Other((0..rng.gen_range(0..40)).map(|_| rng.r#gen()).collect())
                    }
                    _ => lsa.header.ls_id = rng.r#gen(),
                }
                lsa.header.checksum = 0;
                let _ = lsa.encode();
            }
        }
        Body::LsAck(a) => {
            for h in &mut a.headers {
                h.seq = pick_seq(rng);
                if rng.gen_bool(0.3) {
                    h.age = MAX_AGE;
                }
            }
        }
    }
}

#[test]
fn parser_survives_mutations() {
    let (_, corpus) = corpus();
    assert!(corpus.len() > 10, "corpus of {} packets", corpus.len());
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut parsed = 0usize;
    for _ in 0..PARSER_ITERATIONS {
        let mut data = corpus[rng.gen_range(0..corpus.len())].clone();
        mutate_bytes(&mut rng, &corpus, &mut data);
        if rng.gen_bool(0.2) {
            mutate_bytes(&mut rng, &corpus, &mut data);
        }
        if let Ok(p) = Packet::new_checked(&data[..]) {
            let _ = p.verify_checksum(link_local(1, 1), ALL_SPF_ROUTERS);
            if let Ok(u) = LsUpdatePacket::new_checked(p.payload()) {
                for raw in u.lsas().take(1000).flatten() {
                    let _ = Lsa::parse(raw);
                    let _ = routing::packet::checksum::lsa_checksum_valid(raw);
                }
            }
            if let Ok(repr) = PacketRepr::parse(&p) {
                parsed += 1;
                let again = repr.to_bytes(link_local(1, 1), ALL_SPF_ROUTERS);
                assert_eq!(
                    PacketRepr::parse_bytes(&again).as_ref(),
                    Ok(&repr),
                    "re-emit of {data:02x?}"
                );
            }
        }
    }
    eprintln!("{PARSER_ITERATIONS} mutated packets, {parsed} still parsed");
}

#[test]
fn instance_survives_mutations() {
    if let Ok(filter) = std::env::var("FUZZ_TRACE") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let (mut sim, corpus) = corpus();
    // Router 0 is under attack; router 1 is its honest partner. Packets from
    // 1 to 0 are mutated one time in twenty, and mutated corpus packets are
    // injected besides, so the adjacency keeps cycling through its states.
    let mut insts = [
        sim.routers[0].instance.take().expect("router 0"),
        sim.routers[1].instance.take().expect("router 1"),
    ];
    assert_eq!(insts[0].state().neighbors.len(), 1);
    let reprs: Vec<PacketRepr> = corpus
        .iter()
        .filter_map(|d| PacketRepr::parse_bytes(d).ok())
        .collect();
    let addr = [link_local(0, 1), link_local(1, 1)];
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut now = sim.now;
    // Pending inputs: (time, sequence, router, input).
    let mut queue: Vec<(Time, usize, usize, Input)> = Vec::new();
    let mut timers: [HashMap<TimerId, Time>; 2] = [HashMap::new(), HashMap::new()];
    let mut seq = 0usize;
    let mut delivered = 0usize;
    let mut full_seen = 0usize;
    while delivered < INSTANCE_ITERATIONS {
        now = now.plus_ms(rng.gen_range(0..20));
        // Inject a mutated packet into router 0; Hellos rarely, since most
        // mutated Hellos tear the adjacency down.
        let pick = |rng: &mut ChaCha8Rng, n: usize, is_hello: &dyn Fn(usize) -> bool| loop {
            let i = rng.gen_range(0..n);
            if !is_hello(i) || rng.gen_bool(0.05) {
                break i;
            }
        };
        let (mut data, fix_checksum) = if rng.gen_bool(0.5) {
            let i = pick(&mut rng, reprs.len(), &|i| {
                matches!(reprs[i].body, Body::Hello(_))
            });
            let mut repr = reprs[i].clone();
            repr.router_id = router_id(1);
            mutate_repr(&mut rng, &mut repr);
            (repr.to_bytes(addr[1], ALL_SPF_ROUTERS), false)
        } else {
            let i = pick(&mut rng, corpus.len(), &|i| corpus[i].get(1) == Some(&1));
            let mut data = corpus[i].clone();
            mutate_bytes(&mut rng, &corpus, &mut data);
            (data, rng.gen_bool(0.8))
        };
        if fix_checksum {
            fix(&mut data, addr[1]);
        }
        let dst = match rng.gen_range(0..10) {
            0 => ALL_D_ROUTERS,
            1 => addr[0],
            _ => ALL_SPF_ROUTERS,
        };
        let src = if rng.gen_range(0..50) == 0 {
            "2001:db8::1".parse::<Ipv6Addr>().unwrap()
        } else {
            addr[1]
        };
        let ifindex = if rng.gen_range(0..100) == 0 { 7 } else { 1 };
        queue.push((
            now,
            seq,
            0,
            Input::Packet {
                ifindex,
                src,
                dst,
                data,
            },
        ));
        seq += 1;
        // Due timers.
        for (r, t) in timers.iter_mut().enumerate() {
            let due: Vec<TimerId> = t
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in due {
                t.remove(&id);
                queue.push((now, seq, r, Input::Timer(id)));
                seq += 1;
            }
        }
        queue.sort_by_key(|(t, s, _, _)| (*t, *s));
        let ready: Vec<_> = {
            let n = queue.iter().take_while(|(t, ..)| *t <= now).count();
            queue.drain(..n).collect()
        };
        for (_, _, r, input) in ready {
            if r == 0 && matches!(input, Input::Packet { .. }) {
                delivered += 1;
            }
            for o in insts[r].handle(now, input) {
                match o {
                    Output::ArmTimer { id, at } => {
                        timers[r].insert(id, at);
                    }
                    Output::CancelTimer(id) => {
                        timers[r].remove(&id);
                    }
                    Output::Send { dst, mut data, .. } => {
                        assert!(
                            PacketRepr::parse_bytes(&data).is_ok(),
                            "we only send what we can parse"
                        );
                        if r == 1 && rng.gen_bool(0.05) {
                            mutate_bytes(&mut rng, &corpus, &mut data);
                            if rng.gen_bool(0.8) {
                                fix(&mut data, addr[1]);
                            }
                        }
                        let input = Input::Packet {
                            ifindex: 1,
                            src: addr[r],
                            dst,
                            data,
                        };
                        queue.push((now.plus_ms(1), seq, 1 - r, input));
                        seq += 1;
                    }
                    Output::RibChanged(_) => {}
                }
            }
        }
        if insts[0]
            .interfaces()
            .values()
            .any(|i| i.neighbors.values().any(|n| n.state == nsm::State::Full))
        {
            full_seen += 1;
        }
    }
    let state = insts[0].state();
    let json = serde_json::to_string(&state).expect("state serialises");
    let drops: BTreeMap<_, _> = state.drops.clone();
    eprintln!(
        "{delivered} packets into router 0 (mostly mutated); Full in {full_seen} steps; drops {drops:?}; state {} bytes",
        json.len()
    );
    assert!(drops.len() >= 8, "many drop reasons exercised: {drops:?}");
    assert!(full_seen > 0, "the adjacency was Full at times");
}

/// Recompute the OSPF checksum of (possibly mutated) bytes.
fn fix(data: &mut [u8], src: Ipv6Addr) {
    if data.len() >= 16 {
        let len = usize::from(u16::from_be_bytes([data[2], data[3]])).clamp(16, data.len());
        let sum = routing::packet::checksum::ospf_checksum(src, ALL_SPF_ROUTERS, &data[..len], 12);
        data[12..14].copy_from_slice(&sum.to_be_bytes());
    }
}
