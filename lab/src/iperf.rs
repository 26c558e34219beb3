//! A TCP stream between two lab nodes with iperf3, for tests that cut a
//! path under a live stream and then ask whether it kept going.
//!
//! The client reports per-second intervals as JSON into the lab's work
//! dir; [`Stream::finish`] waits for it (bounded) and reads the report.

use std::{
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::{Lab, ProcId};

/// A running iperf3 stream.
pub struct Stream<'a> {
    lab: &'a Lab,
    client: (String, ProcId),
    server: (String, ProcId),
    report: PathBuf,
    secs: u32,
}

/// What the client reported.
#[derive(Clone, Debug)]
pub struct Report {
    /// Bits per second of each one-second interval, in order.
    pub intervals: Vec<f64>,
    /// Bytes the server received.
    pub received: u64,
}

impl Report {
    /// Return the last `n` intervals' rates, latest first.
    pub fn last(&self, n: usize) -> Vec<f64> {
        self.intervals.iter().rev().take(n).copied().collect()
    }
}

impl<'a> Stream<'a> {
    /// Start an iperf3 server on `to` bound to `dst`, then a client on
    /// `from` bound to `src` sending to it for `secs` seconds.
    pub fn start(
        lab: &'a Lab,
        (from, src): (&str, IpAddr),
        (to, dst): (&str, IpAddr),
        secs: u32,
    ) -> Result<Self> {
        let (src, dst) = (src.to_string(), dst.to_string());
        let server = lab
            .node(to)
            .spawn("iperf3", &["iperf3", "-s", "-1", "-B", &dst])?;
        // The server must listen before the client connects.
        std::thread::sleep(Duration::from_millis(500));
        let report = lab.work_dir().join(format!("iperf3-{from}-{to}.json"));
        let report_arg = report.display().to_string();
        let t = secs.to_string();
        let client = lab.node(from).spawn(
            "iperf3c",
            &[
                "iperf3",
                "-c",
                &dst,
                "-B",
                &src,
                "-t",
                &t,
                "-i",
                "1",
                "-J",
                "--logfile",
                &report_arg,
            ],
        )?;
        Ok(Stream {
            lab,
            client: (from.to_owned(), client),
            server: (to.to_owned(), server),
            report,
            secs,
        })
    }

    /// Wait for the client to finish (at most its duration plus 30 s),
    /// stop the server, and return the report; an iperf3 error is an
    /// error.
    pub fn finish(self) -> Result<Report> {
        let deadline = Instant::now() + Duration::from_secs(u64::from(self.secs) + 30);
        let (from, client) = (&self.client.0, self.client.1);
        while self.lab.node(from).is_running(client) {
            if Instant::now() >= deadline {
                bail!("the iperf3 client on {from} did not finish");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.lab.node(&self.server.0).kill(self.server.1);
        let text = std::fs::read_to_string(&self.report)
            .with_context(|| format!("reading {}", self.report.display()))?;
        let json: Value = serde_json::from_str(&text)
            .with_context(|| format!("iperf3's report is not JSON: {text}"))?;
        if let Some(e) = json.get("error") {
            bail!("iperf3 failed: {e}");
        }
        let intervals = json["intervals"]
            .as_array()
            .context("iperf3's report has no intervals")?
            .iter()
            .map(|i| i["sum"]["bits_per_second"].as_f64().unwrap_or(0.0))
            .collect();
        let received = json["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
        Ok(Report {
            intervals,
            received,
        })
    }
}
