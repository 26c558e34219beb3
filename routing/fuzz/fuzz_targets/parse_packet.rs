//! Parse arbitrary bytes as an OSPFv3 packet: never panic, and whatever
//! parses must re-emit into bytes that parse the same.
#![no_main]

use std::net::Ipv6Addr;

use libfuzzer_sys::fuzz_target;
use routing::packet::lsa::Lsa;
use routing::packet::lsupd::LsUpdatePacket;
use routing::packet::{Packet, PacketRepr, checksum};

const SRC: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const DST: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 5);

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::new_checked(data) else { return };
    let _ = p.verify_checksum(SRC, DST);
    if let Ok(u) = LsUpdatePacket::new_checked(p.payload()) {
        for raw in u.lsas().flatten() {
            let _ = checksum::lsa_checksum_valid(raw);
            let _ = Lsa::parse(raw);
        }
    }
    if let Ok(repr) = PacketRepr::parse(&p) {
        let again = repr.to_bytes(SRC, DST);
        assert_eq!(PacketRepr::parse_bytes(&again), Ok(repr));
    }
});
