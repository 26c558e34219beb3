//! The XDP program's verdict counters, summed over CPUs.

use std::collections::BTreeMap;

use anyhow::Result;
use aya::maps::{MapData, PerCpuArray};
use meshfwd_common::stats::Stat;
use serde::Serialize;

/// Counter totals, by name, plus how many CPUs contributed.
#[derive(Debug, Serialize)]
pub struct Stats {
    pub cpus: usize,
    pub counters: BTreeMap<&'static str, u64>,
}

impl Stats {
    /// Read and sum every counter from the pinned map.
    pub fn read(map: &PerCpuArray<MapData, u64>) -> Result<Self> {
        let mut counters = BTreeMap::new();
        let mut cpus = 0;
        for stat in Stat::ALL {
            let values = map.get(&(stat as u32), 0)?;
            cpus = values.len();
            counters.insert(stat.name(), values.iter().sum());
        }
        Ok(Stats { cpus, counters })
    }

    /// Render as an aligned two-column table, in index order.
    pub fn table(&self) -> String {
        let width = Stat::ALL.iter().map(|s| s.name().len()).max().unwrap_or(0);
        let mut out = format!("{:<width$} {:>14}\n", "COUNTER", "PACKETS");
        for stat in Stat::ALL {
            let value = self.counters.get(stat.name()).copied().unwrap_or(0);
            out.push_str(&format!("{:<width$} {:>14}\n", stat.name(), value));
        }
        out
    }
}
