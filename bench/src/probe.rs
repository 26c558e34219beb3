//! Sequence-numbered UDP probe flows: a sender at a fixed rate, a
//! receiver that records every arrival, and the largest hole between them
//! (the recovery and restart benchmarks).

use std::{
    net::UdpSocket,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// Receive probe packets until `stop`; return (seq, arrival) pairs.
pub fn receive(sock: UdpSocket, stop: Arc<AtomicBool>) -> Vec<(u64, Instant)> {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
    let mut got = Vec::with_capacity(200_000);
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        if let Ok(n) = sock.recv(&mut buf)
            && n >= 8
        {
            got.push((
                u64::from_be_bytes(buf[..8].try_into().expect("8 bytes")),
                Instant::now(),
            ));
        }
    }
    got
}

/// Send `pps` sequence-numbered packets per second until `stop`, in bursts
/// of one millisecond's worth; return how many were sent.
pub fn send(sock: UdpSocket, pps: u32, stop: Arc<AtomicBool>) -> u64 {
    let per_ms = f64::from(pps) / 1000.0;
    let start = Instant::now();
    let mut seq = 0u64;
    let mut buf = [0u8; 32];
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * 1000.0 * per_ms) as u64;
        while seq < due {
            buf[..8].copy_from_slice(&seq.to_be_bytes());
            // A send error (no route for a moment) is a lost packet too.
            let _ = sock.send(&buf);
            seq += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    seq
}

/// The largest run of missing sequence numbers, and the arrival gap
/// around it.
pub fn largest_hole(got: &[(u64, Instant)], sent: u64) -> (u64, Duration) {
    let mut seen: Vec<(u64, Instant)> = got.to_vec();
    seen.sort_by_key(|(s, _)| *s);
    seen.dedup_by_key(|(s, _)| *s);
    let mut best = (0u64, Duration::ZERO);
    let mut prev: Option<(u64, Instant)> = None;
    for &(s, t) in &seen {
        // Losses before the first arrival are the flow starting up, not
        // the cut.
        let (gap, dt) = match prev {
            Some((ps, pt)) => (s - ps - 1, t.saturating_duration_since(pt)),
            None => (0, Duration::ZERO),
        };
        if gap > best.0 {
            best = (gap, dt);
        }
        prev = Some((s, t));
    }
    if let Some((ps, _)) = prev
        && sent > ps + 1
        && sent - ps - 1 > best.0
    {
        best = (sent - ps - 1, Duration::MAX);
    }
    best
}

/// A running probe flow from one namespace to an address in another.
pub struct Flow {
    pps: u32,
    stop_tx: Arc<AtomicBool>,
    stop_rx: Arc<AtomicBool>,
    sender: std::thread::JoinHandle<u64>,
    receiver: std::thread::JoinHandle<Vec<(u64, Instant)>>,
}

/// What a flow lost.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FlowResult {
    pub pps: u32,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    /// Packets in the largest run of consecutive losses.
    pub largest_hole: u64,
    /// Arrival-time gap around the largest hole, less one packet interval
    /// (0 without a hole).
    pub loss_window_ms: f64,
}

impl Flow {
    /// Send `pps` packets a second from namespace `from` to `dst`:`port`,
    /// received by a socket bound in namespace `to`.
    pub fn start(
        from: &str,
        to: &str,
        dst: std::net::Ipv6Addr,
        port: u16,
        pps: u32,
    ) -> anyhow::Result<Flow> {
        let rx = lab::netns::enter(to, || Ok(UdpSocket::bind(("::", port))?))?;
        let tx = lab::netns::enter(from, || {
            let s = UdpSocket::bind("[::]:0")?;
            s.connect(std::net::SocketAddrV6::new(dst, port, 0, 0))?;
            Ok(s)
        })?;
        let stop_rx = Arc::new(AtomicBool::new(false));
        let stop_tx = Arc::new(AtomicBool::new(false));
        let receiver = {
            let stop = stop_rx.clone();
            std::thread::spawn(move || receive(rx, stop))
        };
        let sender = {
            let stop = stop_tx.clone();
            std::thread::spawn(move || send(tx, pps, stop))
        };
        Ok(Flow {
            pps,
            stop_tx,
            stop_rx,
            sender,
            receiver,
        })
    }

    /// Stop sending, give the last packets 300 ms, and count.
    pub fn stop(self) -> FlowResult {
        self.stop_tx.store(true, Ordering::Relaxed);
        let sent = self.sender.join().expect("sender thread");
        std::thread::sleep(Duration::from_millis(300));
        self.stop_rx.store(true, Ordering::Relaxed);
        let got = self.receiver.join().expect("receiver thread");
        let (hole, window) = largest_hole(&got, sent);
        let interval_ms = 1000.0 / f64::from(self.pps);
        let by_count = hole as f64 * interval_ms;
        // A hole that never closed has no arrival after it: count packets.
        let loss_window_ms = if hole == 0 {
            0.0
        } else if window == Duration::MAX {
            by_count
        } else {
            (window.as_secs_f64() * 1000.0 - interval_ms).max(by_count)
        };
        let received = got
            .iter()
            .map(|(s, _)| *s)
            .collect::<std::collections::BTreeSet<u64>>()
            .len() as u64;
        FlowResult {
            pps: self.pps,
            sent,
            received,
            lost: sent.saturating_sub(received),
            largest_hole: hole,
            loss_window_ms,
        }
    }
}
