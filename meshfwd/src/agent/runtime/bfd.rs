//! The BFD runtime: the sans-IO core (`routing::bfd`) driven from a
//! thread of its own with real-time priority (SCHED_FIFO), so a session's
//! 10 ms timers hold while the agent's loop or the rest of the node is
//! busy. The agent adds and removes sessions by command; state changes come
//! back on a channel the agent's loop reads.
//!
//! Sockets (RFC 5881): packets arrive on UDP 3784, where the hop limit of
//! each is read (IPV6_RECVHOPLIMIT) and the interface is the scope of its
//! link-local source; they leave from one fixed source port with hop limit
//! 255.
//!
//! With XDP, the thread keeps every Up session and a heartbeat in pinned
//! maps (`meshfwd_common::bfd`). When the agent is gone (a crash, a
//! restart) the heartbeat goes stale and the XDP program answers the
//! peers' packets in its place, so their sessions stay Up for as long as
//! the node forwards; the next agent adopts the sessions from the map and
//! carries on with the same discriminators. A stop that is not a restart
//! (graceful restart off) says AdminDown on every session (its peer's
//! clients take nothing down: RFC 5882 §3.2) and empties the map.

use std::{
    io,
    mem::MaybeUninit,
    net::{Ipv6Addr, SocketAddrV6, UdpSocket},
    os::fd::AsFd as _,
    sync::mpsc,
    time::{Duration, Instant},
};

use nix::{
    poll::{PollFd, PollFlags, ppoll},
    sys::time::TimeSpec,
};
use routing::bfd::{Bfd, CONTROL_PORT, HOP_LIMIT, Key, SessionChange, Timers};
use socket2::{Domain, MaybeUninitSlice, MsgHdrMut, Protocol, SockAddr, Socket, Type};
use tokio::sync::{mpsc::UnboundedSender, oneshot};

use dataplane::maps::BfdMaps;
use meshfwd_common::bfd::ReflectSession;

use crate::api::BfdReport;

/// The source port of every session (RFC 5881 §4: 49152-65535, the same
/// for all packets of a session), the one XDP answers from too.
use meshfwd_common::bfd::SOURCE_PORT;

/// Longest the thread sleeps when nothing is due: how soon a command is
/// taken up, and the longest gap between heartbeats (well inside
/// `meshfwd_common::bfd::HEARTBEAT_STALE_NS`, after which XDP answers).
const IDLE: Duration = Duration::from_millis(5);

/// `IPV6_HOPLIMIT` (`<linux/in6.h>`): the control message of
/// IPV6_RECVHOPLIMIT.
const IPV6_HOPLIMIT: i32 = 52;

/// What the agent asks of the thread.
#[derive(Debug)]
pub enum Command {
    Add {
        key: Key,
        timers: Timers,
    },
    Remove(Key),
    Report(oneshot::Sender<BfdReport>),
    /// End the thread: for good (say AdminDown on every session and stop
    /// answering in XDP), or for a restart (leave the sessions to XDP).
    Stop {
        for_good: bool,
    },
}

/// The running thread.
pub struct BfdRuntime {
    commands: mpsc::Sender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BfdRuntime {
    /// Open the sockets and start the thread; changes go to `changes`.
    /// With `maps` (XDP runs), sessions an earlier run left are adopted
    /// and the thread keeps the maps XDP answers from while it is gone.
    pub fn start(
        changes: UnboundedSender<SessionChange>,
        maps: Option<BfdMaps>,
    ) -> io::Result<BfdRuntime> {
        let sockets = Sockets::open()?;
        let (commands, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("bfd".into())
            .spawn(move || run(sockets, rx, changes, maps))?;
        Ok(BfdRuntime {
            commands,
            thread: Some(thread),
        })
    }

    pub fn send(&self, c: Command) {
        // A thread that ended has logged why.
        let _ = self.commands.send(c);
    }

    /// Ask for the sessions and counters.
    pub async fn report(&self) -> Option<BfdReport> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Report(tx));
        rx.await.ok()
    }

    /// End the thread (see [`Command::Stop`]) and wait for it.
    pub fn stop(mut self, for_good: bool) {
        self.send(Command::Stop { for_good });
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Sockets {
    rx: Socket,
    tx: UdpSocket,
}

impl Sockets {
    fn open() -> io::Result<Sockets> {
        let rx = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
        rx.set_only_v6(true)?;
        rx.set_reuse_address(true)?;
        rx.set_recv_hoplimit_v6(true)?;
        rx.bind(&SockAddr::from(SocketAddrV6::new(
            Ipv6Addr::UNSPECIFIED,
            CONTROL_PORT,
            0,
            0,
        )))?;
        let tx = UdpSocket::bind(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, SOURCE_PORT, 0, 0))?;
        socket2::SockRef::from(&tx).set_unicast_hops_v6(u32::from(HOP_LIMIT))?;
        Ok(Sockets { rx, tx })
    }

    /// Wait up to `wait` for one datagram; return its source (with the
    /// interface as scope), hop limit and length.
    #[expect(
        unsafe_code,
        reason = "reading the bytes recvmsg filled in a MaybeUninit buffer"
    )]
    fn recv(
        &self,
        buf: &mut [u8],
        wait: Duration,
    ) -> io::Result<Option<(SocketAddrV6, u8, usize)>> {
        // ppoll sleeps on a high-resolution timer; a socket timeout would
        // round up to the next jiffy and stretch the 10 ms intervals.
        let mut fds = [PollFd::new(self.rx.as_fd(), PollFlags::POLLIN)];
        match ppoll(&mut fds, Some(TimeSpec::from_duration(wait)), None) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        let mut data = [MaybeUninit::new(0u8); 512];
        let mut control = [MaybeUninit::new(0u8); 64];
        let mut addr = SockAddr::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0));
        let (len, control_len) = {
            let mut bufs = [MaybeUninitSlice::new(&mut data)];
            let mut msg = MsgHdrMut::new()
                .with_addr(&mut addr)
                .with_buffers(&mut bufs)
                .with_control(&mut control);
            match self.rx.recvmsg(&mut msg, libc::MSG_DONTWAIT) {
                Ok(n) => (n, msg.control_len()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        };
        let Some(src) = addr.as_socket_ipv6() else {
            return Ok(None);
        };
        let len = len.min(buf.len()).min(data.len());
        for (to, from) in buf.iter_mut().zip(&data[..len]) {
            // SAFETY: every byte of `data` was initialised (to 0) above;
            // the kernel may have overwritten some, which keeps them so.
            *to = unsafe { from.assume_init() };
        }
        let control: Vec<u8> = control[..control_len.min(control.len())]
            .iter()
            // SAFETY: as for `data`: initialised to 0 before the call.
            .map(|b| unsafe { b.assume_init() })
            .collect();
        Ok(Some((src, hop_limit(&control).unwrap_or(0), len)))
    }

    fn send(&self, key: Key, packet: &[u8]) -> io::Result<()> {
        self.tx
            .send_to(
                packet,
                SocketAddrV6::new(key.peer, CONTROL_PORT, 0, key.ifindex),
            )
            .map(drop)
    }
}

/// Find the IPV6_HOPLIMIT control message in a control buffer (each a
/// `struct cmsghdr`: length as a `usize`, level and type as `i32`, data
/// aligned to a `usize`) and return its value.
fn hop_limit(control: &[u8]) -> Option<u8> {
    const W: usize = std::mem::size_of::<usize>();
    let header = W + 8;
    let mut at = 0;
    while at + header <= control.len() {
        let len = usize::from_ne_bytes(control[at..at + W].try_into().ok()?);
        let level = i32::from_ne_bytes(control[at + W..at + W + 4].try_into().ok()?);
        let kind = i32::from_ne_bytes(control[at + W + 4..at + W + 8].try_into().ok()?);
        if len < header || at + len > control.len() {
            return None;
        }
        if level == libc::IPPROTO_IPV6 && kind == IPV6_HOPLIMIT && len >= header + 4 {
            let v = i32::from_ne_bytes(control[at + header..at + header + 4].try_into().ok()?);
            return u8::try_from(v).ok();
        }
        at += len.div_ceil(W) * W;
    }
    None
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`, which
/// the XDP program compares the heartbeat with.
fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000
            + u64::try_from(t.tv_nsec()).unwrap_or(0)
    })
}

/// Keep the XDP program's copy of the sessions in step with a change:
/// an Up session is answered for while the agent is away, no other.
fn mirror(maps: &mut Option<BfdMaps>, bfd: &Bfd, c: &SessionChange) {
    let (Some(maps), Some(s)) = (maps.as_mut(), bfd.session(&c.key)) else {
        return;
    };
    match c.change {
        routing::bfd::Change::Up => {
            let t = s.timers();
            let kept = ReflectSession {
                peer: c.key.peer.octets(),
                ifindex: c.key.ifindex,
                remote_disc: s.remote_disc(),
                desired_min_tx_us: t.desired_min_tx_us,
                required_min_rx_us: t.required_min_rx_us,
                detect_mult: t.detect_mult,
                _pad: [0; 3],
            };
            if let Err(e) = maps.put(s.local_disc(), &kept) {
                tracing::warn!(error = %e, "BFD session not kept for XDP: it will flap if the agent restarts");
            }
        }
        routing::bfd::Change::Down { .. } => maps.remove(s.local_disc()),
    }
}

/// The thread's loop.
fn run(
    sockets: Sockets,
    commands: mpsc::Receiver<Command>,
    changes: UnboundedSender<SessionChange>,
    mut maps: Option<BfdMaps>,
) {
    use thread_priority::{
        RealtimeThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    let realtime =
        ThreadPriority::from_posix(thread_priority::ScheduleParams { sched_priority: 50 });
    if let Err(e) = set_thread_priority_and_policy(
        thread_native_id(),
        realtime,
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    ) {
        tracing::warn!(error = ?e, "BFD thread without real-time priority: its timers may slip under load");
    } else {
        tracing::info!("BFD thread running at real-time priority (SCHED_FIFO 50)");
    }
    let start = Instant::now();
    let now = || u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    // Another range of discriminators per process start, so a peer's
    // packets for the last run's sessions name none of this run's (the
    // adopted ones aside).
    let first = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| (d.as_millis() as u32) << 8);
    let mut bfd = Bfd::new(first);
    if let Some(m) = &maps {
        let left = m.sessions();
        for (disc, s) in &left {
            let key = Key {
                ifindex: s.ifindex,
                peer: Ipv6Addr::from(s.peer),
            };
            let timers = Timers {
                desired_min_tx_us: s.desired_min_tx_us,
                required_min_rx_us: s.required_min_rx_us,
                detect_mult: s.detect_mult,
            };
            bfd.adopt(key, *disc, s.remote_disc, timers, now());
        }
        if !left.is_empty() {
            tracing::info!(
                sessions = left.len(),
                "BFD sessions of an earlier run adopted (XDP answered for them meanwhile)"
            );
        }
    }
    let mut buf = [0u8; 512];
    loop {
        if let Some(m) = maps.as_mut()
            && let Err(e) = m.beat(monotonic_ns())
        {
            tracing::warn!(error = %e, "BFD heartbeat not written: XDP may answer for us");
        }
        loop {
            match commands.try_recv() {
                Ok(Command::Add { key, timers }) => {
                    tracing::debug!(ifindex = key.ifindex, peer = %key.peer, "BFD session added");
                    bfd.add(key, timers, now());
                }
                Ok(Command::Remove(key)) => {
                    if let (Some(m), Some(s)) = (maps.as_mut(), bfd.session(&key)) {
                        m.remove(s.local_disc());
                    }
                    bfd.remove(&key);
                }
                Ok(Command::Report(reply)) => {
                    let _ = reply.send(BfdReport {
                        sessions: bfd.sessions(),
                        discards: bfd.discards().clone(),
                    });
                }
                Ok(Command::Stop { for_good: false }) => return,
                Ok(Command::Stop { for_good: true }) | Err(mpsc::TryRecvError::Disconnected) => {
                    if let Some(m) = maps.as_mut() {
                        for s in bfd.sessions() {
                            m.remove(s.local_disc);
                        }
                    }
                    bfd.shutdown_all(now());
                    let (_, out) = bfd.poll(now());
                    for t in out {
                        let _ = sockets.send(t.key, &t.packet);
                    }
                    return;
                }
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        let t = now();
        let (due, out) = bfd.poll(t);
        for t in out {
            if let Err(e) = sockets.send(t.key, &t.packet) {
                tracing::debug!(ifindex = t.key.ifindex, peer = %t.key.peer, error = %e, "BFD packet not sent");
            }
        }
        for c in due {
            mirror(&mut maps, &bfd, &c);
            let _ = changes.send(c);
        }
        let next = bfd.next_deadline_us();
        let wait = Duration::from_micros(next.saturating_sub(now())).min(IDLE);
        match sockets.recv(&mut buf, wait) {
            Ok(Some((src, hops, len))) => {
                match bfd.receive(now(), src.scope_id(), *src.ip(), hops, &buf[..len]) {
                    Ok(Some(c)) => {
                        mirror(&mut maps, &bfd, &c);
                        let _ = changes.send(c);
                    }
                    Ok(None) => {}
                    Err(d) => tracing::trace!(peer = %src, reason = %d, "BFD packet discarded"),
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "BFD receive failed");
                std::thread::sleep(IDLE);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_hop_limit_among_control_messages() {
        const W: usize = std::mem::size_of::<usize>();
        let cmsg = |level: i32, kind: i32, data: &[u8]| {
            let mut b = Vec::new();
            b.extend_from_slice(&(W + 8 + data.len()).to_ne_bytes());
            b.extend_from_slice(&level.to_ne_bytes());
            b.extend_from_slice(&kind.to_ne_bytes());
            b.extend_from_slice(data);
            while b.len() % W != 0 {
                b.push(0);
            }
            b
        };
        let mut control = cmsg(libc::IPPROTO_IPV6, 50, &[0u8; 20]);
        control.extend(cmsg(
            libc::IPPROTO_IPV6,
            IPV6_HOPLIMIT,
            &255i32.to_ne_bytes(),
        ));
        assert_eq!(hop_limit(&control), Some(255));
        assert_eq!(hop_limit(&control[..10]), None, "truncated");
        assert_eq!(hop_limit(&[]), None);
        let bad_len = {
            let mut c = control.clone();
            c[..W].copy_from_slice(&4usize.to_ne_bytes());
            c
        };
        assert_eq!(
            hop_limit(&bad_len),
            None,
            "a length below the header stops the walk"
        );
    }
}
