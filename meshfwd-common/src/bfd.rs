//! BFD sessions answered by the XDP program while the agent is away (a
//! crash or a restart): the agent's BFD thread keeps each Up session here
//! and a heartbeat; when the heartbeat is stale, the XDP program answers a
//! peer's Up packet for a session of this map with the packet the session
//! would have sent, so the peer's session stays Up for as long as the
//! node's forwarding plane works, agent or not. The next agent adopts the
//! sessions from the same map.

/// Sessions the map holds (one per neighbour and link).
pub const SESSIONS_MAX_ENTRIES: u32 = 256;

/// The heartbeat is stale, and the program answers, after this long
/// without one (ns). The thread beats at every wake-up, at least every 5
/// ms. At the fastest we run (10 ms x 3) a peer's detection time is 30 ms
/// from our last packet, and the program answers the peer's first packet
/// after the heartbeat goes stale: that is at most 5 (the last beat after
/// our last packet) + 10 (stale) + 10 (the peer's interval) = 25 ms after
/// our last packet, inside the 30. (With 15 ms here the worst case was
/// exactly 30, and a planned restart lost a session now and then.) An
/// agent alive but late by more than this only gets a duplicate Up packet
/// sent for it.
pub const HEARTBEAT_STALE_NS: u64 = 10_000_000;

/// The UDP port answers come from (RFC 5881 §4: 49152-65535, the same as
/// the agent's).
pub const SOURCE_PORT: u16 = 49_152;
/// The UDP port BFD Control packets go to (RFC 5881 §4).
pub const CONTROL_PORT: u16 = 3784;
/// Length of the Control packet (mandatory section, no authentication).
pub const CONTROL_LEN: usize = 24;

/// One Up session, keyed by its local discriminator (what the peer's
/// packets carry as Your Discriminator).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReflectSession {
    /// The peer's link-local address, as it lies in a packet.
    pub peer: [u8; 16],
    /// The link the session runs on.
    pub ifindex: u32,
    /// The peer's discriminator (our packets' Your Discriminator).
    pub remote_disc: u32,
    /// What our packets advertise, in microseconds.
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
    pub detect_mult: u8,
    pub _pad: [u8; 3],
}

const _: () = assert!(core::mem::size_of::<ReflectSession>() == 36);

/// Length of what [`answer`] reads and writes: the UDP header and the
/// Control packet.
pub const UDP_BFD_LEN: usize = 8 + CONTROL_LEN;

/// The Control packet's state bits for Up (RFC 5880 §4.1).
const STATE_UP: u8 = 3 << 6;
const POLL: u8 = 0x20;
const FINAL: u8 = 0x10;
/// Bits a packet we answer must not carry: Authentication, Demand,
/// Multipoint (we answer only the plain asynchronous mode we run).
const REFUSED: u8 = 0x04 | 0x02 | 0x01;

#[inline(always)]
fn be32(b: &[u8; UDP_BFD_LEN], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Write into `out` the answer to `req` (the UDP header and Control
/// packet of a datagram from `src` to `dst`) for session `s`, found by
/// `req`'s Your Discriminator: the packet the session sends while Up, with
/// Final set if `req` polled (RFC 5880 §6.8.7). `false` when `req` is not
/// one to answer: not to the control port, not a lone mandatory section,
/// not from the session's peer, or not Up. Everything is passed by
/// reference (the XDP program's stack has no room for copies).
#[inline(always)]
pub fn answer(
    req: &[u8; UDP_BFD_LEN],
    s: &ReflectSession,
    src: &[u8; 16],
    dst: &[u8; 16],
    out: &mut [u8; UDP_BFD_LEN],
) -> bool {
    let bfd = 8;
    let dport = u16::from_be_bytes([req[2], req[3]]);
    let udp_len = u16::from_be_bytes([req[4], req[5]]);
    let flags = req[bfd + 1];
    if dport != CONTROL_PORT
        || usize::from(udp_len) != UDP_BFD_LEN
        || req[bfd] >> 5 != 1
        || usize::from(req[bfd + 3]) != CONTROL_LEN
        || req[bfd + 2] == 0
        || flags & 0xc0 != STATE_UP
        || flags & REFUSED != 0
        || be32(req, bfd + 4) != s.remote_disc
        || *src != s.peer
    {
        return false;
    }
    *out = [0u8; UDP_BFD_LEN];
    out[0..2].copy_from_slice(&SOURCE_PORT.to_be_bytes());
    out[2..4].copy_from_slice(&CONTROL_PORT.to_be_bytes());
    out[4..6].copy_from_slice(&(UDP_BFD_LEN as u16).to_be_bytes());
    out[bfd] = 1 << 5;
    out[bfd + 1] = STATE_UP | if flags & POLL != 0 { FINAL } else { 0 };
    out[bfd + 2] = s.detect_mult;
    out[bfd + 3] = CONTROL_LEN as u8;
    // Our discriminator is what the peer called us; its own is ours to
    // call it.
    out[bfd + 4..bfd + 8].copy_from_slice(&req[bfd + 8..bfd + 12]);
    out[bfd + 8..bfd + 12].copy_from_slice(&s.remote_disc.to_be_bytes());
    out[bfd + 12..bfd + 16].copy_from_slice(&s.desired_min_tx_us.to_be_bytes());
    out[bfd + 16..bfd + 20].copy_from_slice(&s.required_min_rx_us.to_be_bytes());
    let sum = udp6_checksum(dst, src, out);
    out[6..8].copy_from_slice(&sum.to_be_bytes());
    true
}

/// The UDP checksum of `udp` (its checksum field zero) from `src` to
/// `dst` over IPv6 (RFC 8200 §8.1).
#[inline(always)]
pub fn udp6_checksum(src: &[u8; 16], dst: &[u8; 16], udp: &[u8; UDP_BFD_LEN]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < 16 {
        sum += u32::from(u16::from_be_bytes([src[i], src[i + 1]]));
        sum += u32::from(u16::from_be_bytes([dst[i], dst[i + 1]]));
        i += 2;
    }
    sum += UDP_BFD_LEN as u32;
    sum += 17;
    let mut i = 0;
    while i < UDP_BFD_LEN {
        sum += u32::from(u16::from_be_bytes([udp[i], udp[i + 1]]));
        i += 2;
    }
    // At most 40 words: the sum stays below 2^22, and two folds bring it
    // within 16 bits (a fixed count the verifier can follow).
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    match !(sum as u16) {
        // RFC 768: a computed zero is sent as all ones.
        0 => 0xffff,
        c => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xb];
    const US: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa];

    fn session() -> ReflectSession {
        ReflectSession {
            peer: PEER,
            ifindex: 2,
            remote_disc: 0x0b0b_0b0b,
            desired_min_tx_us: 10_000,
            required_min_rx_us: 10_000,
            detect_mult: 3,
            _pad: [0; 3],
        }
    }

    /// The peer's Up packet to our session 0x0a0a0a0a, with `flags`.
    fn request(flags: u8) -> [u8; UDP_BFD_LEN] {
        let mut r = [0u8; UDP_BFD_LEN];
        r[0..2].copy_from_slice(&50_000u16.to_be_bytes());
        r[2..4].copy_from_slice(&CONTROL_PORT.to_be_bytes());
        r[4..6].copy_from_slice(&32u16.to_be_bytes());
        r[8] = 0x20;
        r[9] = STATE_UP | flags;
        r[10] = 3;
        r[11] = 24;
        r[12..16].copy_from_slice(&0x0b0b_0b0bu32.to_be_bytes());
        r[16..20].copy_from_slice(&0x0a0a_0a0au32.to_be_bytes());
        r[20..24].copy_from_slice(&10_000u32.to_be_bytes());
        r[24..28].copy_from_slice(&10_000u32.to_be_bytes());
        r
    }

    fn answered(
        req: &[u8; UDP_BFD_LEN],
        s: &ReflectSession,
        src: &[u8; 16],
    ) -> Option<[u8; UDP_BFD_LEN]> {
        let mut out = [0xee; UDP_BFD_LEN];
        answer(req, s, src, &US, &mut out).then_some(out)
    }

    #[test]
    fn answers_an_up_packet_as_the_session_would() {
        let out = answered(&request(0), &session(), &PEER).unwrap();
        assert_eq!(u16::from_be_bytes([out[0], out[1]]), SOURCE_PORT);
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), CONTROL_PORT);
        assert_eq!(&out[8..12], &[0x20, 0xc0, 3, 24]);
        assert_eq!(&out[12..16], &0x0a0a_0a0au32.to_be_bytes(), "my disc");
        assert_eq!(&out[16..20], &0x0b0b_0b0bu32.to_be_bytes(), "your disc");
        assert_eq!(&out[20..24], &10_000u32.to_be_bytes());
        // The checksum verifies: summing with it gives all ones.
        let mut zeroed = out;
        zeroed[6] = 0;
        zeroed[7] = 0;
        assert_eq!(
            udp6_checksum(&US, &PEER, &zeroed),
            u16::from_be_bytes([out[6], out[7]])
        );
        // A poll is answered with Final, never Poll.
        let f = answered(&request(POLL), &session(), &PEER).unwrap();
        assert_eq!(f[9], STATE_UP | FINAL);
    }

    #[test]
    fn answers_nothing_else() {
        let s = session();
        let with = |at: usize, v: u8| {
            let mut r = request(0);
            r[at] = v;
            answered(&r, &s, &PEER)
        };
        assert_eq!(with(9, 0x40), None, "the peer is Down");
        assert_eq!(with(9, 0x80), None, "the peer is Init");
        assert_eq!(with(9, STATE_UP | 0x04), None, "authentication");
        assert_eq!(with(9, STATE_UP | 0x02), None, "demand");
        assert_eq!(with(8, 0x40), None, "version 2");
        assert_eq!(with(11, 32), None, "a longer packet");
        assert_eq!(with(10, 0), None, "multiplier 0");
        assert_eq!(with(3, 0xe9), None, "another port");
        assert_eq!(with(15, 0x0c), None, "another peer's discriminator");
        assert_eq!(answered(&request(0), &s, &US), None, "another address");
    }

    #[test]
    fn checksum_matches_a_known_datagram() {
        // All zeros but the pseudo header's length and protocol.
        let udp = [0u8; UDP_BFD_LEN];
        let zero = [0u8; 16];
        // Only the length (32) and protocol (17) count: !(49) = 0xffce.
        assert_eq!(udp6_checksum(&zero, &zero, &udp), 0xffce);
    }
}
