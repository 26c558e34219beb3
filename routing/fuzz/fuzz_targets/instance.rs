//! Feed a sequence of arbitrary packets (and timer expiries) to an instance
//! with one point-to-point interface: nothing may panic. The input is split
//! into packets by a 1-byte length prefix; a zero length fires every timer
//! due after a second passes. Checksums are fixed up so the fuzzer reaches
//! the state machines rather than the checksum check.
#![no_main]

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use routing::packet::checksum::ospf_checksum;
use routing::{Input, Instance, InstanceConfig, InterfaceConfig, Output, Time, TimerId};

const ME: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const PEER: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
const DST: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 5);

fn run(inst: &mut Instance, now: Time, input: Input, timers: &mut HashMap<TimerId, Time>) {
    for o in inst.handle(now, input) {
        match o {
            Output::ArmTimer { id, at } => {
                timers.insert(id, at);
            }
            Output::CancelTimer(id) => {
                timers.remove(&id);
            }
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let config = InstanceConfig { router_id: Ipv4Addr::new(198, 18, 0, 1), ..Default::default() };
    let (mut inst, _) = Instance::new(config, Time(0));
    let mut timers = HashMap::new();
    let up = Input::InterfaceUp {
        ifindex: 1,
        name: "mesh1".into(),
        link_local: ME,
        mtu: 1500,
        config: InterfaceConfig::default(),
    };
    run(&mut inst, Time(0), up, &mut timers);
    let mut now = Time(0);
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (pkt, tail) = tail.split_at(len);
        rest = tail;
        now = now.plus_ms(10);
        if len == 0 {
            now = now.plus_ms(1000);
            let due: Vec<TimerId> = timers.iter().filter(|(_, at)| **at <= now).map(|(id, _)| *id).collect();
            for id in due {
                timers.remove(&id);
                run(&mut inst, now, Input::Timer(id), &mut timers);
            }
            continue;
        }
        let mut pkt = pkt.to_vec();
        if pkt.len() >= 16 {
            let plen = usize::from(u16::from_be_bytes([pkt[2], pkt[3]])).clamp(16, pkt.len());
            let sum = ospf_checksum(PEER, DST, &pkt[..plen], 12);
            pkt[12..14].copy_from_slice(&sum.to_be_bytes());
        }
        run(&mut inst, now, Input::Packet { ifindex: 1, src: PEER, dst: DST, data: pkt }, &mut timers);
    }
    let _ = inst.state();
});
