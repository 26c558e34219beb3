//! The XDP program's verdict counters, summed over CPUs.

use std::collections::BTreeMap;

use aya::maps::{MapData, PerCpuArray};
use meshfwd_common::stats::Stat;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Counter totals, by name, plus how many CPUs contributed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub cpus: usize,
    pub counters: BTreeMap<String, u64>,
}

impl Stats {
    /// Read and sum every counter from the pinned map.
    pub fn read(map: &PerCpuArray<MapData, u64>) -> Result<Self> {
        let mut counters = BTreeMap::new();
        let mut cpus = 0;
        for stat in Stat::ALL {
            let values = map
                .get(&(stat as u32), 0)
                .map_err(Error::map(format!("reading counter {}", stat.name())))?;
            cpus = values.len();
            counters.insert(stat.name().to_owned(), values.iter().sum());
        }
        Ok(Stats { cpus, counters })
    }

    /// Return one counter (0 when absent).
    pub fn get(&self, stat: Stat) -> u64 {
        self.counters.get(stat.name()).copied().unwrap_or(0)
    }

    /// Render as an aligned two-column table, in index order.
    pub fn table(&self) -> String {
        let width = Stat::ALL.iter().map(|s| s.name().len()).max().unwrap_or(0);
        let mut out = format!("{:<width$} {:>14}\n", "COUNTER", "PACKETS");
        for stat in Stat::ALL {
            out.push_str(&format!("{:<width$} {:>14}\n", stat.name(), self.get(stat)));
        }
        out
    }
}
