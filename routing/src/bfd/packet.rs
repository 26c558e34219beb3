//! The BFD Control packet (RFC 5880 §4.1), mandatory section only: we run
//! no authentication, and a packet that asks for it is discarded (§6.8.6).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! |                       My Discriminator                        |
//! |                      Your Discriminator                       |
//! |                    Desired Min TX Interval                    |
//! |                   Required Min RX Interval                    |
//! |                 Required Min Echo RX Interval                 |
//! ```

use serde::{Deserialize, Serialize};

mod field {
    pub const VERS_DIAG: usize = 0;
    pub const FLAGS: usize = 1;
    pub const DETECT_MULT: usize = 2;
    pub const LENGTH: usize = 3;
    pub const MY_DISC: usize = 4;
    pub const YOUR_DISC: usize = 8;
    pub const DESIRED_MIN_TX: usize = 12;
    pub const REQUIRED_MIN_RX: usize = 16;
    pub const REQUIRED_MIN_ECHO_RX: usize = 20;
    pub const END: usize = 24;
}

/// Length of the mandatory section, the whole of every packet we send.
pub const LEN: usize = field::END;
/// The protocol version.
pub const VERSION: u8 = 1;

const P: u8 = 0x20;
const F: u8 = 0x10;
const C: u8 = 0x08;
const A: u8 = 0x04;
const D: u8 = 0x02;
const M: u8 = 0x01;

/// Why a received packet was dropped before reaching a session
/// (RFC 5880 §6.8.6, RFC 5881 §5), counted by name.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    thiserror::Error,
)]
#[serde(rename_all = "snake_case")]
pub enum Discard {
    #[error("shorter than the mandatory section")]
    Truncated,
    #[error("version is not 1")]
    Version,
    #[error("length field below 24 or beyond the datagram")]
    BadLength,
    #[error("detect multiplier 0")]
    ZeroDetectMult,
    #[error("multipoint bit set")]
    Multipoint,
    #[error("my discriminator 0")]
    ZeroMyDiscriminator,
    #[error("authentication asked for, none configured")]
    Authentication,
    #[error("hop limit is not 255 (not from a neighbour on the link)")]
    HopLimit,
    #[error("your discriminator names no session")]
    UnknownDiscriminator,
    #[error("your discriminator names a session on another link or peer")]
    WrongPeer,
    #[error("no session for this peer on this link")]
    NoSession,
    #[error("your discriminator 0 while the session is past Down")]
    ZeroYourDiscriminator,
    #[error("the session is administratively down")]
    AdminDown,
}

/// Session states (§4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum State {
    AdminDown,
    Down,
    Init,
    Up,
}

impl State {
    fn from_bits(b: u8) -> State {
        match b & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }
    fn bits(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }
}

/// Diagnostic codes (§4.1): why the session last left Up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Diag {
    None,
    ControlDetectionTimeExpired,
    EchoFunctionFailed,
    NeighborSignaledDown,
    ForwardingPlaneReset,
    PathDown,
    ConcatenatedPathDown,
    AdministrativelyDown,
    ReverseConcatenatedPathDown,
    Unknown(u8),
}

impl Diag {
    fn from_bits(b: u8) -> Diag {
        match b & 0x1f {
            0 => Diag::None,
            1 => Diag::ControlDetectionTimeExpired,
            2 => Diag::EchoFunctionFailed,
            3 => Diag::NeighborSignaledDown,
            4 => Diag::ForwardingPlaneReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatenatedPathDown,
            7 => Diag::AdministrativelyDown,
            8 => Diag::ReverseConcatenatedPathDown,
            n => Diag::Unknown(n),
        }
    }
    fn bits(self) -> u8 {
        match self {
            Diag::None => 0,
            Diag::ControlDetectionTimeExpired => 1,
            Diag::EchoFunctionFailed => 2,
            Diag::NeighborSignaledDown => 3,
            Diag::ForwardingPlaneReset => 4,
            Diag::PathDown => 5,
            Diag::ConcatenatedPathDown => 6,
            Diag::AdministrativelyDown => 7,
            Diag::ReverseConcatenatedPathDown => 8,
            Diag::Unknown(n) => n & 0x1f,
        }
    }
}

/// A zero-copy view of a Control packet; after [`ControlPacket::new_checked`]
/// no getter can panic.
#[derive(Debug, Clone)]
pub struct ControlPacket<T: AsRef<[u8]>> {
    buffer: T,
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<T: AsRef<[u8]>> ControlPacket<T> {
    /// Wrap a datagram, checking the length rules of §6.8.6.
    pub fn new_checked(buffer: T) -> Result<Self, Discard> {
        let b = buffer.as_ref();
        if b.len() < LEN {
            return Err(Discard::Truncated);
        }
        let length = usize::from(b[field::LENGTH]);
        if length < LEN || length > b.len() {
            return Err(Discard::BadLength);
        }
        Ok(ControlPacket { buffer })
    }
    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn version(&self) -> u8 {
        self.b()[field::VERS_DIAG] >> 5
    }
    pub fn diag(&self) -> Diag {
        Diag::from_bits(self.b()[field::VERS_DIAG])
    }
    pub fn state(&self) -> State {
        State::from_bits(self.b()[field::FLAGS] >> 6)
    }
    fn flag(&self, f: u8) -> bool {
        self.b()[field::FLAGS] & f != 0
    }
    pub fn poll(&self) -> bool {
        self.flag(P)
    }
    pub fn final_(&self) -> bool {
        self.flag(F)
    }
    pub fn control_plane_independent(&self) -> bool {
        self.flag(C)
    }
    pub fn auth(&self) -> bool {
        self.flag(A)
    }
    pub fn demand(&self) -> bool {
        self.flag(D)
    }
    pub fn multipoint(&self) -> bool {
        self.flag(M)
    }
    pub fn detect_mult(&self) -> u8 {
        self.b()[field::DETECT_MULT]
    }
    pub fn my_disc(&self) -> u32 {
        get_u32(self.b(), field::MY_DISC)
    }
    pub fn your_disc(&self) -> u32 {
        get_u32(self.b(), field::YOUR_DISC)
    }
    pub fn desired_min_tx_us(&self) -> u32 {
        get_u32(self.b(), field::DESIRED_MIN_TX)
    }
    pub fn required_min_rx_us(&self) -> u32 {
        get_u32(self.b(), field::REQUIRED_MIN_RX)
    }
    pub fn required_min_echo_rx_us(&self) -> u32 {
        get_u32(self.b(), field::REQUIRED_MIN_ECHO_RX)
    }
}

/// A Control packet, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRepr {
    pub diag: Diag,
    pub state: State,
    pub poll: bool,
    pub final_: bool,
    pub control_plane_independent: bool,
    pub demand: bool,
    pub detect_mult: u8,
    pub my_disc: u32,
    pub your_disc: u32,
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
    pub required_min_echo_rx_us: u32,
}

impl ControlRepr {
    /// Parse a datagram, applying the discard rules of §6.8.6 that need no
    /// session (a packet that asks for authentication is discarded: we run
    /// none).
    pub fn parse(data: &[u8]) -> Result<ControlRepr, Discard> {
        let p = ControlPacket::new_checked(data)?;
        if p.version() != VERSION {
            return Err(Discard::Version);
        }
        if p.detect_mult() == 0 {
            return Err(Discard::ZeroDetectMult);
        }
        if p.multipoint() {
            return Err(Discard::Multipoint);
        }
        if p.my_disc() == 0 {
            return Err(Discard::ZeroMyDiscriminator);
        }
        if p.auth() {
            return Err(Discard::Authentication);
        }
        Ok(ControlRepr {
            diag: p.diag(),
            state: p.state(),
            poll: p.poll(),
            final_: p.final_(),
            control_plane_independent: p.control_plane_independent(),
            demand: p.demand(),
            detect_mult: p.detect_mult(),
            my_disc: p.my_disc(),
            your_disc: p.your_disc(),
            desired_min_tx_us: p.desired_min_tx_us(),
            required_min_rx_us: p.required_min_rx_us(),
            required_min_echo_rx_us: p.required_min_echo_rx_us(),
        })
    }

    /// Return the packet's bytes.
    pub fn emit(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[field::VERS_DIAG] = (VERSION << 5) | self.diag.bits();
        let mut flags = self.state.bits() << 6;
        for (on, f) in [
            (self.poll, P),
            (self.final_, F),
            (self.control_plane_independent, C),
            (self.demand, D),
        ] {
            if on {
                flags |= f;
            }
        }
        b[field::FLAGS] = flags;
        b[field::DETECT_MULT] = self.detect_mult;
        b[field::LENGTH] = LEN as u8;
        for (at, v) in [
            (field::MY_DISC, self.my_disc),
            (field::YOUR_DISC, self.your_disc),
            (field::DESIRED_MIN_TX, self.desired_min_tx_us),
            (field::REQUIRED_MIN_RX, self.required_min_rx_us),
            (field::REQUIRED_MIN_ECHO_RX, self.required_min_echo_rx_us),
        ] {
            b[at..at + 4].copy_from_slice(&v.to_be_bytes());
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FRR bfdd's packet in Up state at 300 ms x 3, as captured on a link.
    const UP: [u8; 24] = [
        0x20, 0xc0, 0x03, 0x18, // v1, diag 0, Up, mult 3, len 24
        0x3d, 0x6e, 0x2f, 0x01, // my disc
        0x00, 0x00, 0x00, 0x07, // your disc
        0x00, 0x04, 0x93, 0xe0, // 300,000 us
        0x00, 0x04, 0x93, 0xe0, // 300,000 us
        0x00, 0x00, 0xc3, 0x50, // echo 50,000 us
    ];

    #[test]
    fn parses_and_emits_the_same_bytes() {
        let r = ControlRepr::parse(&UP).unwrap();
        assert_eq!(r.state, State::Up);
        assert_eq!(r.diag, Diag::None);
        assert_eq!(r.detect_mult, 3);
        assert_eq!(r.my_disc, 0x3d6e_2f01);
        assert_eq!(r.your_disc, 7);
        assert_eq!(r.desired_min_tx_us, 300_000);
        assert_eq!(r.required_min_echo_rx_us, 50_000);
        assert!(!r.poll && !r.final_ && !r.demand);
        assert_eq!(r.emit(), UP);
    }

    #[test]
    fn flags_and_diag_round_trip() {
        let r = ControlRepr {
            diag: Diag::NeighborSignaledDown,
            state: State::Init,
            poll: true,
            final_: false,
            control_plane_independent: true,
            demand: true,
            ..ControlRepr::parse(&UP).unwrap()
        };
        let b = r.emit();
        assert_eq!(b[0], 0x23);
        assert_eq!(b[1], 0x80 | P | C | D);
        assert_eq!(ControlRepr::parse(&b).unwrap(), r);
    }

    #[test]
    fn every_discard_rule_without_a_session() {
        let with = |at: usize, v: u8| {
            let mut b = UP;
            b[at] = v;
            ControlRepr::parse(&b)
        };
        assert_eq!(ControlRepr::parse(&UP[..23]), Err(Discard::Truncated));
        assert_eq!(ControlRepr::parse(&[]), Err(Discard::Truncated));
        assert_eq!(with(0, 0x40), Err(Discard::Version));
        assert_eq!(with(0, 0x00), Err(Discard::Version));
        assert_eq!(with(3, 23), Err(Discard::BadLength));
        assert_eq!(with(3, 25), Err(Discard::BadLength), "beyond the datagram");
        assert_eq!(with(2, 0), Err(Discard::ZeroDetectMult));
        assert_eq!(with(1, 0xc0 | M), Err(Discard::Multipoint));
        assert_eq!(with(1, 0xc0 | A), Err(Discard::Authentication));
        let mut zero = UP;
        zero[4..8].fill(0);
        assert_eq!(ControlRepr::parse(&zero), Err(Discard::ZeroMyDiscriminator));
        // A longer datagram with the length field covering 24 is fine.
        let mut long = UP.to_vec();
        long.extend_from_slice(&[0xff; 8]);
        assert!(ControlRepr::parse(&long).is_ok());
        // Diag codes beyond the RFC's flow through.
        assert_eq!(
            ControlRepr::parse(&with(0, 0x3f).unwrap().emit())
                .unwrap()
                .diag,
            Diag::Unknown(31)
        );
    }
}
