//! The command line.

use clap::{Args, Parser, Subcommand};

use crate::capture::XdpMode;

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
