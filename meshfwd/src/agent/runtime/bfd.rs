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
//! On a planned stop every session says AdminDown (its peer's clients take
//! nothing down: RFC 5882 §3.2) before the thread ends. A crash sends
//! nothing: the peers' sessions time out.

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

use crate::api::BfdReport;

/// The source port of every session (RFC 5881 §4: 49152-65535, the same
/// for all packets of a session).
pub const SOURCE_PORT: u16 = 49_152;

/// Longest the thread sleeps when nothing is due: how soon a command is
/// taken up.
const IDLE: Duration = Duration::from_millis(20);

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
    /// Say AdminDown on every session and end (a planned stop).
    Stop,
}

/// The running thread.
pub struct BfdRuntime {
    commands: mpsc::Sender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BfdRuntime {
    /// Open the sockets and start the thread; changes go to `changes`.
    pub fn start(changes: UnboundedSender<SessionChange>) -> io::Result<BfdRuntime> {
        let sockets = Sockets::open()?;
        let (commands, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("bfd".into())
            .spawn(move || run(sockets, rx, changes))?;
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

    /// Say AdminDown on every session and wait for the thread.
    pub fn stop(mut self) {
        self.send(Command::Stop);
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

/// The thread's loop.
fn run(
    sockets: Sockets,
    commands: mpsc::Receiver<Command>,
    changes: UnboundedSender<SessionChange>,
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
    // packets for the last run's sessions name none of this run's.
    let first = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| (d.as_millis() as u32) << 8);
    let mut bfd = Bfd::new(first);
    let mut buf = [0u8; 512];
    loop {
        loop {
            match commands.try_recv() {
                Ok(Command::Add { key, timers }) => {
                    tracing::debug!(ifindex = key.ifindex, peer = %key.peer, "BFD session added");
                    bfd.add(key, timers, now());
                }
                Ok(Command::Remove(key)) => {
                    bfd.remove(&key);
                }
                Ok(Command::Report(reply)) => {
                    let _ = reply.send(BfdReport {
                        sessions: bfd.sessions(),
                        discards: bfd.discards().clone(),
                    });
                }
                Ok(Command::Stop) | Err(mpsc::TryRecvError::Disconnected) => {
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
            let _ = changes.send(c);
        }
        let next = bfd.next_deadline_us();
        let wait = Duration::from_micros(next.saturating_sub(now())).min(IDLE);
        match sockets.recv(&mut buf, wait) {
            Ok(Some((src, hops, len))) => {
                match bfd.receive(now(), src.scope_id(), *src.ip(), hops, &buf[..len]) {
                    Ok(Some(c)) => {
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
