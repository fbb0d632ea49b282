//! What `tsusen run` is told: flags, then the `--config` TOML file, then
//! defaults, in that order of precedence; every value checked up front.

use std::{
    fs,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use clap::ValueEnum as _;
use serde::Deserialize;
use tsusen_common::DEFAULT_FIRST_SEEN_ENTRIES;

use crate::{
    capture::XdpMode,
    cli::{RuleArgs, RunArgs, parse_flush_interval},
    tables::Tables,
};

pub const DEFAULT_OUT_DIR: &str = "/var/log/tsusen";
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/tsusen";
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_MAX_PENDING: usize = 1_000_000;

#[derive(Debug)]
pub struct Settings {
    pub ifaces: Vec<String>,
    pub xdp_mode: XdpMode,
    pub out_dir: PathBuf,
    pub flush_interval: Duration,
    /// The rules' tables from the flags (local networks: only `--local`; the
    /// host's own addresses are added by the daemon).
    pub tables: Tables,
    /// The `--local` networks.
    pub local: Vec<ipnet::IpNet>,
    pub map_size: u32,
    pub pin_dir: PathBuf,
    pub metrics: Option<SocketAddr>,
    pub max_pending: usize,
    pub force: bool,
    /// Seconds the injected clock is ahead of the real one (`--clock-start`).
    pub clock_skew_ns: i64,
}

/// The `--config` file: the flags' names as keys.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    iface: Vec<String>,
    xdp_mode: Option<String>,
    out_dir: Option<PathBuf>,
    flush_interval: Option<String>,
    local: Vec<String>,
    ignore_port: Vec<toml::Value>,
    ignore_net: Vec<String>,
    include_multicast: Option<bool>,
    map_size: Option<u32>,
    pin_dir: Option<PathBuf>,
    metrics: Option<String>,
    max_pending: Option<usize>,
    force: Option<bool>,
}

fn read_config(path: &Path) -> Result<FileConfig> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).map_err(|err| {
        // toml's messages span lines; keep the one line that says what is wrong.
        let first = err
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_owned();
        anyhow::anyhow!("config file {}: {first}", path.display())
    })
}

/// Flags win; a list given as flags replaces the file's list.
fn pick<T>(flag: Vec<T>, file: Vec<T>) -> Vec<T> {
    if flag.is_empty() { file } else { flag }
}

impl Settings {
    pub fn resolve(args: RunArgs) -> Result<Self> {
        let file = match &args.config {
            Some(path) => read_config(path)?,
            None => FileConfig::default(),
        };
        let ignore_ports: Vec<String> = file
            .ignore_port
            .iter()
            .map(|v| match v {
                toml::Value::Integer(n) => Ok(n.to_string()),
                toml::Value::String(s) => Ok(s.clone()),
                other => bail!(
                    "config file: ignore-port takes numbers or ranges, not {}",
                    other.type_str()
                ),
            })
            .collect::<Result<_>>()?;
        let rules = RuleArgs {
            local: pick(args.rules.local, file.local),
            ignore_ports: pick(args.rules.ignore_ports, ignore_ports),
            ignore_nets: pick(args.rules.ignore_nets, file.ignore_net),
            include_multicast: args.rules.include_multicast
                || file.include_multicast.unwrap_or(false),
        };
        let xdp_mode = match (args.xdp_mode, file.xdp_mode) {
            (Some(mode), _) => mode,
            (None, Some(text)) => XdpMode::from_str(&text, true).map_err(|_| {
                anyhow::anyhow!("config file: xdp-mode {text:?} is not auto, native or generic")
            })?,
            (None, None) => XdpMode::Auto,
        };
        let flush_interval = match (args.flush_interval, file.flush_interval) {
            (Some(d), _) => d,
            (None, Some(text)) => parse_flush_interval(&text)
                .map_err(|e| anyhow::anyhow!("config file: flush-interval: {e}"))?,
            (None, None) => DEFAULT_FLUSH_INTERVAL,
        };
        let metrics = match (args.metrics, file.metrics) {
            (Some(addr), _) => Some(addr),
            (None, Some(text)) => Some(text.parse().with_context(|| {
                format!("config file: metrics {text:?} is not an address like 127.0.0.1:9339")
            })?),
            (None, None) => None,
        };
        let map_size = args
            .map_size
            .or(file.map_size)
            .unwrap_or(DEFAULT_FIRST_SEEN_ENTRIES);
        if map_size < 1024 {
            bail!("map-size {map_size} is below the 1024 minimum");
        }
        let clock_skew_ns = match &args.clock_start {
            Some(text) => {
                let start = chrono::DateTime::parse_from_rfc3339(text)
                    .with_context(|| format!("--clock-start {text:?} is not an RFC 3339 time"))?;
                let start_ns = start
                    .timestamp_nanos_opt()
                    .context("--clock-start out of range")?;
                start_ns
                    - chrono::Utc::now()
                        .timestamp_nanos_opt()
                        .expect("now is in range")
            }
            None => 0,
        };
        let mut ifaces = pick(args.ifaces, file.iface);
        // The same interface twice would be attached twice.
        let mut seen = std::collections::HashSet::new();
        ifaces.retain(|iface| seen.insert(iface.clone()));
        let ifaces = if ifaces.is_empty() {
            vec![default_route_iface()?]
        } else {
            ifaces
        };
        let max_pending = args
            .max_pending
            .or(file.max_pending)
            .unwrap_or(DEFAULT_MAX_PENDING);
        if max_pending == 0 {
            bail!("--max-pending must be at least 1 (rows held while the out-dir refuses writes)");
        }
        Ok(Settings {
            ifaces,
            xdp_mode,
            out_dir: args
                .out_dir
                .or(file.out_dir)
                .unwrap_or_else(|| DEFAULT_OUT_DIR.into()),
            flush_interval,
            tables: rules.tables()?,
            local: rules
                .local
                .iter()
                .map(|net| crate::tables::parse_net(net))
                .collect::<Result<_>>()?,
            map_size,
            pin_dir: args
                .pin_dir
                .or(file.pin_dir)
                .unwrap_or_else(|| DEFAULT_PIN_DIR.into()),
            metrics,
            max_pending,
            force: args.force || file.force.unwrap_or(false),
            clock_skew_ns,
        })
    }
}

/// The interface of the IPv4 default route, else of the IPv6 one.
pub fn default_route_iface() -> Result<String> {
    if let Ok(routes) = fs::read_to_string("/proc/net/route") {
        // Iface Destination Gateway Flags ... Mask: the default has both 0.
        for line in routes.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 7 && cols[1] == "00000000" && cols[7] == "00000000" {
                return Ok(cols[0].to_owned());
            }
        }
    }
    if let Ok(routes) = fs::read_to_string("/proc/net/ipv6_route") {
        // dest plen src plen next-hop metric refcnt use flags iface
        for line in routes.lines() {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() == 10
                && cols[0].chars().all(|c| c == '0')
                && cols[1] == "00"
                && cols[9] != "lo"
            {
                return Ok(cols[9].to_owned());
            }
        }
    }
    bail!("no default route to take the interface from; name one with --iface")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(crate::testing::unique_name("cfg"));
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let path = write(
            "iface = [\"lo\"]\nout-dir = \"/srv/t\"\nflush-interval = \"30s\"\nignore-port = [23, \"6000-6001\"]\nmap-size = 4096\nxdp-mode = \"generic\"\n",
        );
        let args = RunArgs {
            config: Some(path.clone()),
            flush_interval: Some(Duration::from_secs(5)),
            ..RunArgs::default()
        };
        let s = Settings::resolve(args).unwrap();
        assert_eq!(s.ifaces, ["lo"]);
        assert_eq!(s.out_dir, Path::new("/srv/t"));
        assert_eq!(s.flush_interval, Duration::from_secs(5));
        assert_eq!(s.map_size, 4096);
        assert_eq!(s.xdp_mode, XdpMode::Generic);
        assert_eq!(s.pin_dir, Path::new(DEFAULT_PIN_DIR));
        use tsusen_common::classify::Tables as _;
        assert!(s.tables.is_ignored_port(23) && s.tables.is_ignored_port(6001));
        assert!(!s.tables.is_ignored_port(6002));
        fs::remove_file(path).unwrap();
    }

    #[test]
    fn an_interface_named_twice_is_watched_once() {
        let args = RunArgs {
            ifaces: vec!["lo".into(), "lo".into()],
            ..RunArgs::default()
        };
        assert_eq!(Settings::resolve(args).unwrap().ifaces, ["lo"]);
    }

    #[test]
    fn a_bad_config_file_is_one_clear_line() {
        let path = write("out-dir = \"/x\"\nflush-intervall = \"1s\"\n");
        let args = RunArgs {
            config: Some(path.clone()),
            ifaces: vec!["lo".into()],
            ..RunArgs::default()
        };
        let err = format!("{:#}", Settings::resolve(args).unwrap_err());
        assert!(
            err.contains("flush-intervall") && !err.contains('\n'),
            "{err}"
        );
        fs::remove_file(path).unwrap();
        let args = RunArgs {
            config: Some("/nonexistent/tsusen.toml".into()),
            ..RunArgs::default()
        };
        let err = format!("{:#}", Settings::resolve(args).unwrap_err());
        assert!(
            err.contains("cannot read config file /nonexistent/tsusen.toml"),
            "{err}"
        );
    }
}
