//! Command-line interface: argument parsing and dispatch.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};
use meshfwd_common::pin;

use crate::{
    ebpf::{self, AttachMode},
    stats::Stats,
};

/// kubermesh node agent and operator CLI.
///
/// meshfwd loads the kubermesh eBPF fast path onto a node's mesh NICs and
/// shows what it is doing. Maps and program links are pinned under a bpffs
/// directory, so the data plane outlives the command that attached it.
#[derive(Debug, Parser)]
#[command(name = "meshfwd", version, about, long_about)]
struct Cli {
    /// bpffs directory holding the node's pinned maps and links.
    #[arg(long, global = true, env = "MESHFWD_BPFFS", default_value = pin::DEFAULT_DIR)]
    bpffs: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attach the XDP program to a mesh interface and pin it.
    ///
    /// Example: `meshfwd attach --iface eth1`. Attaching a second interface
    /// reuses the pinned maps, so counters cover the whole node.
    Attach {
        /// Interface to attach to.
        #[arg(long)]
        iface: String,
        /// XDP attach mode.
        #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
        mode: AttachMode,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Detach the XDP program from an interface (removes its pinned link).
    Detach {
        /// Interface to detach from.
        #[arg(long)]
        iface: String,
    },
    /// Show data-plane state.
    Show {
        #[command(subcommand)]
        what: Show,
    },
    /// Static routes into the fast path's maps (see `meshfwd fib --help`).
    Fib {
        #[command(subcommand)]
        cmd: crate::cli_fib::FibCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Debug, Subcommand)]
enum Show {
    /// Per-verdict packet counters of the XDP program, summed over CPUs.
    Stats {
        /// Print as JSON (for scripts).
        #[arg(long)]
        json: bool,
    },
}

/// Parse arguments, run the command, report errors on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("meshfwd: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Attach { iface, mode, json } => {
            let link = ebpf::attach(&cli.bpffs, &iface, mode)?;
            if json {
                let out = serde_json::json!({"iface": iface, "link": link, "bpffs": cli.bpffs});
                println!("{out}");
            } else {
                println!(
                    "attached XDP to {iface} (link pinned at {})",
                    link.display()
                );
            }
        }
        Command::Detach { iface } => {
            ebpf::detach(&cli.bpffs, &iface)?;
            println!("detached XDP from {iface}");
        }
        Command::Show {
            what: Show::Stats { json },
        } => {
            let stats = Stats::read(&ebpf::open_stats(&cli.bpffs)?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print!("{}", stats.table());
            }
        }
        Command::Fib { cmd } => crate::cli_fib::run(&cli.bpffs, cmd)?,
        Command::Version => println!("meshfwd {}", env!("CARGO_PKG_VERSION")),
    }
    Ok(())
}
