//! One BFD session (RFC 5880 §6.8): the state machine, the timers it
//! negotiates and the Poll Sequence that changes them. Time comes in as
//! microseconds of a monotonic clock the caller owns.

use serde::{Deserialize, Serialize};

use super::packet::{ControlRepr, Diag, State};

/// Below Up, packets go at most once a second (§6.8.3).
pub const SLOW_TX_US: u32 = 1_000_000;

/// What a session is asked to run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    /// bfd.DesiredMinTxInterval once Up.
    pub desired_min_tx_us: u32,
    /// bfd.RequiredMinRxInterval.
    pub required_min_rx_us: u32,
    /// bfd.DetectMult.
    pub detect_mult: u8,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            desired_min_tx_us: 10_000,
            required_min_rx_us: 10_000,
            detect_mult: 3,
        }
    }
}

/// A state change the session's client acts on (RFC 5882).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    Up,
    /// Left Up. `peer_admin` when the peer said AdminDown: a
    /// client takes nothing down for it (RFC 5882 §3.2).
    Down {
        diag: Diag,
        peer_admin: bool,
    },
}

/// The session's counters and negotiated figures, for `show bfd`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub rx: u64,
    pub tx: u64,
    /// Times it left Up.
    pub flaps: u64,
}

mod sm {
    /// What moves the state machine (§6.8.6, §6.8.4, §6.8.16).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Event {
        /// A packet whose state field is this.
        Received(super::State),
        DetectionTimeExpired,
        AdminDown,
        AdminUp,
    }
}
pub use sm::Event;

/// One session.
#[derive(Debug, Clone)]
pub struct Session {
    timers: Timers,
    state: State,
    remote_state: State,
    local_disc: u32,
    remote_disc: u32,
    diag: Diag,
    /// bfd.DesiredMinTxInterval as advertised now.
    advertised_tx_us: u32,
    /// The interval our transmissions keep to: an increase waits for the
    /// Poll Sequence to end (§6.8.3).
    tx_in_use_us: u32,
    remote_min_rx_us: u32,
    remote_desired_min_tx_us: u32,
    remote_detect_mult: u8,
    remote_demand: bool,
    /// A Poll Sequence is under way: our packets carry P until an F.
    polling: bool,
    /// The peer polled: the next packet carries F, at once.
    final_due: bool,
    next_tx_us: u64,
    detect_deadline_us: Option<u64>,
    /// AdminDown packets still to send after a local shutdown.
    admin_down_left: u8,
    jitter: u32,
    pub counters: Counters,
}

impl Session {
    /// Start a session in Down with local discriminator `local_disc`
    /// (nonzero, unique on the node); it sends at once.
    pub fn new(local_disc: u32, timers: Timers, now_us: u64) -> Session {
        Session {
            timers,
            state: State::Down,
            remote_state: State::Down,
            local_disc,
            remote_disc: 0,
            diag: Diag::None,
            advertised_tx_us: SLOW_TX_US.max(timers.desired_min_tx_us),
            tx_in_use_us: SLOW_TX_US.max(timers.desired_min_tx_us),
            // §6.8.1: 1, so the first packets may go before we know it.
            remote_min_rx_us: 1,
            remote_desired_min_tx_us: 0,
            remote_detect_mult: 0,
            remote_demand: false,
            polling: false,
            final_due: false,
            next_tx_us: now_us,
            detect_deadline_us: None,
            admin_down_left: 0,
            jitter: local_disc | 1,
            counters: Counters::default(),
        }
    }

    /// Take over a session an earlier run of this node left Up (its
    /// discriminators and timers, kept where the next run finds them): it
    /// is Up from the start, as the peer still believes, and goes Down if
    /// nothing arrives within a second or its detection time.
    pub fn adopted(local_disc: u32, remote_disc: u32, timers: Timers, now_us: u64) -> Session {
        let mut s = Session::new(local_disc, timers, now_us);
        s.state = State::Up;
        s.remote_state = State::Up;
        s.remote_disc = remote_disc;
        s.advertised_tx_us = timers.desired_min_tx_us;
        s.tx_in_use_us = timers.desired_min_tx_us;
        s.remote_min_rx_us = timers.required_min_rx_us;
        s.remote_desired_min_tx_us = timers.desired_min_tx_us;
        s.remote_detect_mult = timers.detect_mult;
        s.detect_deadline_us = Some(now_us + s.detect_time_us().max(1_000_000));
        s
    }

    pub fn state(&self) -> State {
        self.state
    }
    pub fn remote_state(&self) -> State {
        self.remote_state
    }
    pub fn diag(&self) -> Diag {
        self.diag
    }
    pub fn local_disc(&self) -> u32 {
        self.local_disc
    }
    pub fn remote_disc(&self) -> u32 {
        self.remote_disc
    }
    pub fn timers(&self) -> Timers {
        self.timers
    }
    pub fn polling(&self) -> bool {
        self.polling
    }

    /// The interval our packets go at: the slower of what we want and what
    /// the peer can take (§6.8.7).
    pub fn tx_interval_us(&self) -> u32 {
        self.tx_in_use_us.max(self.remote_min_rx_us)
    }

    /// The detection time: the peer's multiplier times the slower of what
    /// we can take and what it sends at (§6.8.4, asynchronous mode).
    pub fn detect_time_us(&self) -> u64 {
        u64::from(self.remote_detect_mult)
            * u64::from(
                self.timers
                    .required_min_rx_us
                    .max(self.remote_desired_min_tx_us),
            )
    }

    /// Take a packet demultiplexed to this session (§6.8.6 from "set
    /// bfd.RemoteDiscr" on); return the change it made, if any.
    pub fn receive(
        &mut self,
        now_us: u64,
        p: &ControlRepr,
    ) -> Result<Option<Change>, super::Discard> {
        self.counters.rx += 1;
        self.remote_disc = p.my_disc;
        self.remote_state = p.state;
        self.remote_demand = p.demand;
        self.remote_min_rx_us = p.required_min_rx_us;
        self.remote_desired_min_tx_us = p.desired_min_tx_us;
        self.remote_detect_mult = p.detect_mult;
        if p.final_ && self.polling {
            // The peer has seen our new intervals: an increase takes effect.
            self.polling = false;
            self.tx_in_use_us = self.advertised_tx_us;
        }
        if p.poll {
            self.final_due = true;
        }
        self.detect_deadline_us = Some(now_us + self.detect_time_us());
        if self.state == State::AdminDown {
            return Err(super::Discard::AdminDown);
        }
        let change = self.fsm(now_us, Event::Received(p.state));
        self.pull_in(now_us);
        Ok(change)
    }

    /// A faster interval (ours once Up, or the peer's Required Min RX)
    /// applies to the packet already scheduled too: the peer times us by
    /// what we advertise.
    fn pull_in(&mut self, now_us: u64) {
        if !matches!(self.state, State::AdminDown) {
            let at = now_us + self.jittered(self.tx_interval_us());
            self.next_tx_us = self.next_tx_us.min(at);
        }
    }

    /// Expire the detection time if it has passed (§6.8.4).
    pub fn check_detection(&mut self, now_us: u64) -> Option<Change> {
        match self.detect_deadline_us {
            Some(at) if at <= now_us => {
                self.detect_deadline_us = None;
                self.fsm(now_us, Event::DetectionTimeExpired)
            }
            _ => None,
        }
    }

    /// Take the session down on purpose (§6.8.16): the peer is told
    /// AdminDown for a detection time's worth of packets.
    pub fn shutdown(&mut self, now_us: u64) -> Option<Change> {
        self.fsm(now_us, Event::AdminDown)
    }

    /// Bring an administratively down session back to Down.
    pub fn enable(&mut self, now_us: u64) -> Option<Change> {
        self.fsm(now_us, Event::AdminUp)
    }

    /// The state machine (§6.2, §6.8.6): every transition and its side
    /// effects in one place.
    fn fsm(&mut self, now_us: u64, event: Event) -> Option<Change> {
        use Event::*;
        let before = self.state;
        let (next, diag) = match (self.state, event) {
            (State::AdminDown, AdminUp) => (State::Down, Diag::None),
            (State::AdminDown, _) => return None,
            (_, AdminDown) => (State::AdminDown, Diag::AdministrativelyDown),
            (_, AdminUp) => return None,
            (State::Down, DetectionTimeExpired) => return None,
            (State::Init | State::Up, DetectionTimeExpired) => {
                (State::Down, Diag::ControlDetectionTimeExpired)
            }
            (State::Down, Received(State::AdminDown)) => return None,
            (_, Received(State::AdminDown)) => (State::Down, Diag::NeighborSignaledDown),
            (State::Down, Received(State::Down)) => (State::Init, self.diag),
            (State::Down, Received(State::Init)) => (State::Up, Diag::None),
            (State::Down, Received(State::Up)) => return None,
            (State::Init, Received(State::Init | State::Up)) => (State::Up, Diag::None),
            (State::Init, Received(State::Down)) => return None,
            (State::Up, Received(State::Down)) => (State::Down, Diag::NeighborSignaledDown),
            (State::Up, Received(State::Init | State::Up)) => return None,
        };
        self.state = next;
        self.diag = diag;
        match next {
            State::Up => {
                // Fast timers once Up: advertise them with a Poll Sequence
                // (§6.8.3); a faster rate may be used at once.
                self.set_advertised_tx(self.timers.desired_min_tx_us);
                Some(Change::Up)
            }
            State::Down | State::AdminDown => {
                if next == State::AdminDown {
                    self.admin_down_left = self.remote_detect_mult.max(3);
                    self.next_tx_us = now_us;
                }
                if event == DetectionTimeExpired {
                    // §6.8.1: the peer is forgotten with its packets.
                    self.remote_disc = 0;
                    self.remote_state = State::Down;
                }
                self.detect_deadline_us = None;
                self.polling = false;
                let slow = SLOW_TX_US.max(self.timers.desired_min_tx_us);
                self.advertised_tx_us = slow;
                self.tx_in_use_us = slow;
                if before == State::Up {
                    self.counters.flaps += 1;
                }
                (before == State::Up).then_some(Change::Down {
                    diag,
                    peer_admin: event == Received(State::AdminDown),
                })
            }
            State::Init => None,
        }
    }

    fn set_advertised_tx(&mut self, us: u32) {
        if us == self.advertised_tx_us {
            return;
        }
        self.advertised_tx_us = us;
        if us < self.tx_in_use_us {
            self.tx_in_use_us = us;
        }
        self.polling = true;
    }

    /// When this session next needs the caller: a packet to send or a
    /// detection time to check.
    pub fn next_deadline_us(&self) -> u64 {
        let tx = if self.final_due {
            0
        } else if self.sending() {
            self.next_tx_us
        } else {
            u64::MAX
        };
        tx.min(self.detect_deadline_us.unwrap_or(u64::MAX))
    }

    /// Whether periodic packets go out: not to a peer that cannot take
    /// them, not in demand mode once both are Up (§6.8.7), and after a
    /// local shutdown only the few that tell the peer.
    fn sending(&self) -> bool {
        if self.remote_min_rx_us == 0 {
            return false;
        }
        match self.state {
            State::AdminDown => self.admin_down_left > 0,
            State::Up => !(self.remote_demand && self.remote_state == State::Up) || self.polling,
            _ => true,
        }
    }

    /// Return the packet due now, if any, and schedule the next one.
    pub fn transmit(&mut self, now_us: u64) -> Option<ControlRepr> {
        let due = self.final_due || (self.sending() && self.next_tx_us <= now_us);
        if !due {
            return None;
        }
        // §6.8.7: P and F never together; the answer to a Poll goes first.
        let final_ = std::mem::take(&mut self.final_due);
        if self.next_tx_us <= now_us {
            self.next_tx_us = now_us + self.jittered(self.tx_interval_us());
        }
        if self.state == State::AdminDown {
            self.admin_down_left = self.admin_down_left.saturating_sub(1);
        }
        self.counters.tx += 1;
        Some(ControlRepr {
            diag: self.diag,
            state: self.state,
            poll: self.polling && !final_,
            final_,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.timers.detect_mult,
            my_disc: self.local_disc,
            your_disc: self.remote_disc,
            desired_min_tx_us: self.advertised_tx_us,
            required_min_rx_us: self.timers.required_min_rx_us,
            required_min_echo_rx_us: 0,
        })
    }

    /// `interval` less 0-25% at random, or 10-25% with a multiplier of 1
    /// (§6.8.7), so sessions do not synchronise.
    fn jittered(&mut self, interval: u32) -> u64 {
        // xorshift32: the core takes no randomness source, and this needs
        // none better.
        let mut x = self.jitter;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.jitter = x;
        let (lo, span) = if self.timers.detect_mult == 1 {
            (10, 15)
        } else {
            (0, 25)
        };
        let pct = lo + (x % (span + 1));
        u64::from(interval) * u64::from(100 - pct) / 100
    }
}
