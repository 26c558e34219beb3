//! The tracepoint programs that count redirected frames an egress device
//! did not take (see `meshfwd-ebpf`'s `trace`), attached once per node
//! with their links pinned, so they count for as long as XDP forwards,
//! agent or no agent.

use std::{collections::BTreeMap, path::Path};

use aya::{
    maps::{Map, PerCpuHashMap},
    programs::{TracePoint, links::FdLink},
};
use meshfwd_common::pin;

use crate::{
    Error, Result, bpffs,
    maps::open_pinned,
    object::{self, DEVMAP_XMIT_PROGRAM, REDIRECT_ERR_PROGRAM},
};

/// Each program with the `xdp:` event it is attached to.
const PROGRAMS: [(&str, &str); 2] = [
    (DEVMAP_XMIT_PROGRAM, "xdp_devmap_xmit"),
    (REDIRECT_ERR_PROGRAM, "xdp_redirect_err"),
];

fn link_pin(pin_dir: &Path, event: &str) -> std::path::PathBuf {
    bpffs::links_dir(pin_dir).join(format!("trace-{event}"))
}

/// Attach both programs unless their links are pinned under `pin_dir`
/// already. The maps pinned there are shared with the XDP program.
pub fn ensure_attached(pin_dir: &Path) -> Result<()> {
    if PROGRAMS.iter().all(|(_, e)| link_pin(pin_dir, e).exists()) {
        return Ok(());
    }
    bpffs::prepare(pin_dir)?;
    let mut ebpf = object::load(Some(pin_dir))?;
    for (program, event) in PROGRAMS {
        let path = link_pin(pin_dir, event);
        if path.exists() {
            continue;
        }
        let prog: &mut TracePoint = object::program(&mut ebpf, program)?;
        prog.load()
            .map_err(|source| Error::Verifier { program, source })?;
        let attach_error = |source: Box<dyn std::error::Error + Send + Sync>| Error::Attach {
            program,
            iface: format!("tracepoint xdp:{event}"),
            source,
        };
        let id = prog
            .attach("xdp", event)
            .map_err(|e| attach_error(e.into()))?;
        let link: FdLink = prog
            .take_link(id)
            .map_err(|e| attach_error(e.into()))?
            .try_into()
            .map_err(|e: aya::programs::links::LinkError| attach_error(e.into()))?;
        link.pin(&path).map_err(|source| Error::Pin {
            what: format!("the link of tracepoint xdp:{event}"),
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Return the frames each egress device (by ifindex) did not take, summed
/// over CPUs; empty when nothing is pinned yet.
pub fn redirect_fails(pin_dir: &Path) -> Result<BTreeMap<u32, u64>> {
    let Ok(data) = open_pinned(pin_dir, pin::REDIRECT_FAILS) else {
        return Ok(BTreeMap::new());
    };
    let map: PerCpuHashMap<_, u32, u64> = PerCpuHashMap::try_from(Map::PerCpuHashMap(data))
        .map_err(crate::Error::map("map REDIRECT_FAILS"))?;
    let mut out = BTreeMap::new();
    for entry in map.iter() {
        let (ifindex, per_cpu) = entry.map_err(crate::Error::map("reading REDIRECT_FAILS"))?;
        out.insert(ifindex, per_cpu.iter().sum());
    }
    Ok(out)
}
