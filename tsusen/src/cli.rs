//! The command line.

use std::{
    io::Read as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::{capture::XdpMode, http::listen::ListenAddr, tables};

/// The longest `--flush-interval`: a day (the sensor also flushes just after
/// each UTC midnight, so a longer one would change nothing but the risk).
pub const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
/// The smallest `--map-size`.
pub const MIN_MAP_SIZE: u32 = 1024;
/// The largest `--map-size`: 2^25 entries, about 3.5 GiB of kernel memory
/// (2^25 buckets of 16 bytes plus 2^25 elements of about 96). Kernels before
/// 5.11 refuse a map whose memory reaches 4 GiB (E2BIG, "Argument list too
/// long"), every kernel one of more than 2^27 entries (its buckets' u32 size).
pub const MAX_MAP_SIZE: u32 = 1 << 25;
/// The largest `--max-pending`: 100 million rows, a few GB of memory.
pub const MAX_MAX_PENDING: usize = 100_000_000;
/// The largest file read for `--config` or credentials.
pub const MAX_NAMED_FILE: u64 = 1 << 20;

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
    /// Write trends, spikes and details of the day files as one self-contained HTML file.
    Report(crate::report::ReportArgs),
    /// Serve the report live (updating as today's file grows) with JSON endpoints.
    Serve(crate::report::ServeArgs),
    /// Check that this host can run the sensor: kernel, BPF, privileges, interfaces, bpffs, out-dir.
    Check(crate::check::CheckArgs),
}

#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Interface to watch (repeatable) [default: the interface of the default route].
    #[arg(long = "iface", short = 'i', value_name = "IF")]
    pub ifaces: Vec<String>,
    /// How to attach XDP: native in the driver where supported, else generic (auto), or force one [default: auto].
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpMode>,
    /// Where the day files go [default: /var/log/tsusen].
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// How often rows are drained from the kernel and written (1s to 24h) [default: 15m].
    #[arg(long, value_name = "DURATION", value_parser = parse_flush_interval)]
    pub flush_interval: Option<Duration>,
    #[command(flatten)]
    pub rules: RuleArgs,
    /// Entries of the kernel's first-seen map: distinct tuples it holds between two flushes (1024 to 33554432) [default: 1048576].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(i64::from(MIN_MAP_SIZE)..=i64::from(MAX_MAP_SIZE)))]
    pub map_size: Option<u32>,
    /// bpffs directory where maps and links are pinned, so the kernel keeps recording across restarts [default: /sys/fs/bpf/tsusen].
    #[arg(long, value_name = "DIR")]
    pub pin_dir: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics: IP:PORT, localhost:PORT, or :PORT for every address (off by default).
    #[arg(long, value_name = "ADDR", value_parser = clap::value_parser!(ListenAddr))]
    pub metrics: Option<ListenAddr>,
    /// File whose first line is a token (Bearer) or user:password (Basic) that /metrics requires; needed to listen beyond loopback.
    #[arg(long, value_name = "FILE")]
    pub metrics_auth_file: Option<PathBuf>,
    /// Rows kept in memory while the out-dir cannot be written (at most 100000000) [default: 1000000].
    #[arg(long, value_name = "N")]
    pub max_pending: Option<usize>,
    /// Replace an XDP program already attached to an interface.
    #[arg(long)]
    pub force: bool,
    /// TOML file with the same keys as these flags (e.g. `out-dir = "/srv/tsusen"`); flags win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// For tests: run the clock from this UTC time (RFC 3339) instead of now.
    #[arg(long, value_name = "TIME", hide = true)]
    pub clock_start: Option<String>,
}

/// `--flush-interval`: a humantime duration, from one second to a day.
pub fn parse_flush_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration {text:?} ({e}); e.g. 30s, 15m, 1h"))?;
    if interval < Duration::from_secs(1) {
        return Err(format!("{text:?} is shorter than the 1s minimum"));
    }
    if interval > MAX_FLUSH_INTERVAL {
        return Err(format!("{text:?} is longer than the 24h maximum"));
    }
    Ok(interval)
}

/// Read a small text file the user named (`--config`, credentials): a
/// regular file of at most [`MAX_NAMED_FILE`] bytes, so `/dev/zero` or a FIFO
/// is one clear error instead of a read that never ends. `what` names it in
/// errors, e.g. `config file /etc/tsusen/tsusen.toml`.
pub fn read_named_file(path: &Path, what: &str) -> Result<String> {
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("cannot read {what}"))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {what}"))?;
    if !meta.is_file() {
        bail!("cannot read {what}: not a regular file");
    }
    let mut bytes = Vec::new();
    file.take(MAX_NAMED_FILE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what}"))?;
    if bytes.len() as u64 > MAX_NAMED_FILE {
        bail!("cannot read {what}: larger than 1 MiB");
    }
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("cannot read {what}: not UTF-8 text"))
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
