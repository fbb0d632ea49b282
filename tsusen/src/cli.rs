//! The command line.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::{capture::XdpMode, tables};

#[derive(Parser, Debug)]
#[command(
    name = "tsusen",
    version,
    about = "Who is scanning your hosts, on which ports, and when that changes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the sensor on one or more interfaces (needs root or CAP_BPF+CAP_PERFMON+CAP_NET_ADMIN).
    Run(RunArgs),
    /// Feed pcap/pcapng files through the same rules and write day files (no root needed).
    Replay(ReplayArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Interface to watch (repeatable).
    #[arg(long = "iface", short = 'i', value_name = "IF", required = true)]
    pub ifaces: Vec<String>,
    /// How to attach XDP: native in the driver where supported (auto), or force one.
    #[arg(long, value_enum, default_value_t = XdpMode::Auto)]
    pub xdp_mode: XdpMode,
}

/// The rules' settings, shared by `run` and `replay`.
#[derive(Args, Debug, Clone, Default)]
pub struct RuleArgs {
    /// A local network (CIDR or address): packets from it are outbound, and
    /// inbound packets must be addressed to one (repeatable).
    #[arg(long = "local", value_name = "CIDR")]
    pub local: Vec<String>,
    /// A destination port, or range like 6000-6010, whose TCP/UDP attempts are ignored (repeatable).
    #[arg(long = "ignore-port", value_name = "PORT")]
    pub ignore_ports: Vec<String>,
    /// A network whose packets (as source or destination) are ignored (repeatable).
    #[arg(long = "ignore-net", value_name = "CIDR")]
    pub ignore_nets: Vec<String>,
    /// Count attempts to multicast and broadcast destinations too.
    #[arg(long)]
    pub include_multicast: bool,
}

impl RuleArgs {
    /// The tables these settings describe; one clear error for a bad value.
    pub fn tables(&self) -> Result<tables::Tables> {
        let mut tables = tables::Tables::default();
        for net in &self.local {
            tables.local.insert(tables::parse_net(net)?);
        }
        for net in &self.ignore_nets {
            tables.ignored_nets.insert(tables::parse_net(net)?);
        }
        for ports in &self.ignore_ports {
            for port in tables::parse_ports(ports)? {
                tables.ignore_port(port);
            }
        }
        tables.include_multicast = self.include_multicast;
        Ok(tables)
    }
}

#[derive(Args, Debug, Clone)]
pub struct ReplayArgs {
    /// pcap or pcapng files, read in order.
    #[arg(value_name = "PCAP", required = true)]
    pub pcaps: Vec<PathBuf>,
    /// Where the day files go (YYYY-MM-DD.csv, UTC, by each packet's capture time).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    #[command(flatten)]
    pub rules: RuleArgs,
}
