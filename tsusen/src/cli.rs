//! The command line: clap's description of each subcommand and its flags,
//! and nothing else. The defaults and bounds shown in `--help` come from
//! [`crate::config`], which `run` and `check` resolve the flags with; `main`
//! turns these structs into the plain values the commands take.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    capture::XdpMode,
    config::{
        self, DEFAULT_FLUSH_INTERVAL, DEFAULT_MAP_SIZE, DEFAULT_MAX_PENDING, DEFAULT_OUT_DIR,
        DEFAULT_PIN_DIR, MAX_FLUSH_INTERVAL, MAX_MAP_SIZE, MAX_MAX_PENDING, MIN_FLUSH_INTERVAL,
        MIN_MAP_SIZE, short_duration,
    },
    http::listen::ListenAddr,
};

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
    // Boxed: the largest by far (its ClickHouse flags included).
    Run(Box<RunArgs>),
    /// Feed pcap/pcapng files through the same rules and write day files (no root needed).
    Replay(ReplayArgs),
    /// Write trends, spikes and details of the day files as one self-contained HTML file.
    Report(crate::report::ReportArgs),
    /// Serve the report live (updating as today's file grows) with JSON endpoints.
    Serve(crate::report::ServeArgs),
    /// Check that this host can run the sensor: kernel, BPF, privileges, interfaces, bpffs, out-dir.
    Check(CheckArgs),
    /// Ship the rows of a directory of day files into ClickHouse, then follow it.
    Ship(crate::ship::ShipArgs),
}

#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Interface to watch (repeatable) [default: the interface of the default route].
    #[arg(long = "iface", short = 'i', value_name = "IF")]
    pub ifaces: Vec<String>,
    /// How to attach XDP: native in the driver where supported, else generic (auto), or force one [default: auto].
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpMode>,
    #[arg(long, value_name = "DIR", help = format!(
        "Where the day files go [default: {DEFAULT_OUT_DIR}]"
    ))]
    pub out_dir: Option<PathBuf>,
    #[arg(long, value_name = "DURATION", value_parser = config::parse_flush_interval, help = format!(
        "How often rows are drained from the kernel and written ({} to {}) [default: {}]",
        short_duration(MIN_FLUSH_INTERVAL),
        short_duration(MAX_FLUSH_INTERVAL),
        short_duration(DEFAULT_FLUSH_INTERVAL),
    ))]
    pub flush_interval: Option<Duration>,
    #[command(flatten)]
    pub rules: RuleArgs,
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(i64::from(MIN_MAP_SIZE)..=i64::from(MAX_MAP_SIZE)),
        help = format!(
            "Entries of the kernel's first-seen map: distinct tuples it holds between two flushes \
             ({MIN_MAP_SIZE} to {MAX_MAP_SIZE}) [default: {DEFAULT_MAP_SIZE}]"
        ),
    )]
    pub map_size: Option<u32>,
    #[arg(long, value_name = "DIR", help = format!(
        "bpffs directory where maps and links are pinned, so the kernel keeps recording across \
         restarts [default: {DEFAULT_PIN_DIR}]"
    ))]
    pub pin_dir: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics: IP:PORT, localhost:PORT, or :PORT for every address (off by default).
    #[arg(long, value_name = "ADDR", value_parser = clap::value_parser!(ListenAddr))]
    pub metrics: Option<ListenAddr>,
    /// File whose first line is a token (Bearer) or user:password (Basic) that /metrics requires; needed to listen beyond loopback.
    #[arg(long, value_name = "FILE")]
    pub metrics_auth_file: Option<PathBuf>,
    #[arg(long, value_name = "N", help = format!(
        "Rows kept in memory while the out-dir cannot be written (at most {MAX_MAX_PENDING}) \
         [default: {DEFAULT_MAX_PENDING}]"
    ))]
    pub max_pending: Option<usize>,
    /// Replace an XDP program already attached to an interface.
    #[arg(long)]
    pub force: bool,
    /// Ship rows to ClickHouse after each flush (see `tsusen ship`).
    #[command(flatten)]
    pub clickhouse: crate::clickhouse::ClickHouseArgs,
    /// The name this sensor's rows are stored under in ClickHouse [default: this host's name].
    #[arg(long, value_name = "NAME")]
    pub sensor: Option<String>,
    /// TOML file with the same keys as these flags (e.g. `out-dir = "/srv/tsusen"`); flags win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// For tests: run the clock from this UTC time (RFC 3339) instead of now.
    #[arg(long, value_name = "TIME", hide = true)]
    pub clock_start: Option<String>,
}

impl From<RunArgs> for config::RunFlags {
    fn from(args: RunArgs) -> Self {
        config::RunFlags {
            ifaces: args.ifaces,
            xdp_mode: args.xdp_mode,
            out_dir: args.out_dir,
            flush_interval: args.flush_interval,
            rules: args.rules.into(),
            map_size: args.map_size,
            pin_dir: args.pin_dir,
            metrics: args.metrics,
            metrics_auth_file: args.metrics_auth_file,
            max_pending: args.max_pending,
            force: args.force,
            clickhouse: args.clickhouse,
            sensor: args.sensor,
            config: args.config,
            clock_start: args.clock_start,
        }
    }
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

impl From<RuleArgs> for config::Rules {
    fn from(args: RuleArgs) -> Self {
        config::Rules {
            local: args.local,
            ignore_ports: args.ignore_ports,
            ignore_nets: args.ignore_nets,
            include_multicast: args.include_multicast,
        }
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

#[derive(Args, Debug, Clone, Default)]
pub struct CheckArgs {
    /// Interface to check (repeatable) [default: the interface of the default route].
    #[arg(long = "iface", short = 'i', value_name = "IF")]
    pub ifaces: Vec<String>,
    #[arg(long, value_name = "DIR", help = format!(
        "Where the day files would go [default: {DEFAULT_OUT_DIR}]"
    ))]
    pub out_dir: Option<PathBuf>,
    #[arg(long, value_name = "DIR", help = format!(
        "bpffs directory for the pins [default: {DEFAULT_PIN_DIR}]"
    ))]
    pub pin_dir: Option<PathBuf>,
    /// The `tsusen run` config file to take the settings from; flags win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `tsusen check` asks about the run these flags describe.
impl From<CheckArgs> for config::RunFlags {
    fn from(args: CheckArgs) -> Self {
        config::RunFlags {
            ifaces: args.ifaces,
            out_dir: args.out_dir,
            pin_dir: args.pin_dir,
            config: args.config,
            ..config::RunFlags::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    /// The long flags of `tsusen run` a config file takes (all but
    /// `--config` itself and hidden test flags).
    fn run_flags() -> Vec<String> {
        let cli = Cli::command();
        let run = cli.find_subcommand("run").expect("a run subcommand");
        run.get_arguments()
            .filter(|a| !a.is_hide_set())
            .filter_map(|a| a.get_long())
            .filter(|long| *long != "config" && *long != "help")
            .map(str::to_owned)
            .collect()
    }

    /// `# key = value` lines uncommented; prose comments dropped.
    fn every_key_enabled(example: &str) -> String {
        example
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|l| l.contains(" = "))
                    .unwrap_or(l)
            })
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_config_examples_show_every_flag_and_parse() {
        let shipped = include_str!("../../packaging/tsusen.toml");
        let readme = include_str!("../../README.md");
        let (_, after) = readme
            .split_once("A config file uses the flags' names")
            .and_then(|(_, rest)| rest.split_once("```toml\n"))
            .expect("the README's config example");
        let (in_readme, _) = after.split_once("```").unwrap();
        for (name, example) in [("packaging/tsusen.toml", shipped), ("README.md", in_readme)] {
            let enabled = every_key_enabled(example);
            for flag in run_flags() {
                assert!(
                    enabled
                        .lines()
                        .any(|l| l.starts_with(&format!("{flag} = "))),
                    "{name}: no `{flag} = ...` in\n{enabled}"
                );
            }
            crate::config::parse_config_text(&enabled)
                .unwrap_or_else(|e| panic!("{name}: {e}\n{enabled}"));
        }
    }

    /// The defaults `tsusen run --help` and the README's flag table show are
    /// the ones [`config`] applies.
    #[test]
    fn help_and_readme_show_the_defaults_config_applies() {
        let readme = include_str!("../../README.md");
        let cli = Cli::command();
        let run = cli.find_subcommand("run").expect("a run subcommand");
        for (flag, default) in [
            ("out-dir", DEFAULT_OUT_DIR.to_owned()),
            ("pin-dir", DEFAULT_PIN_DIR.to_owned()),
            ("flush-interval", short_duration(DEFAULT_FLUSH_INTERVAL)),
            ("map-size", DEFAULT_MAP_SIZE.to_string()),
            ("max-pending", DEFAULT_MAX_PENDING.to_string()),
        ] {
            let arg = run
                .get_arguments()
                .find(|a| a.get_long() == Some(flag))
                .unwrap_or_else(|| panic!("no --{flag}"));
            let help = arg.get_help().expect("help").to_string();
            assert!(help.ends_with(&format!("[default: {default}]")), "{help}");
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `--{flag} ")))
                .unwrap_or_else(|| panic!("no README row for --{flag}"));
            assert!(row.ends_with(&format!("| `{default}` |")), "{row}");
        }
        assert_eq!(short_duration(MIN_FLUSH_INTERVAL), "1s");
        assert_eq!(short_duration(MAX_FLUSH_INTERVAL), "24h");
    }
}
