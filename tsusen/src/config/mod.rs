//! What `tsusen run` (and `tsusen check`, which asks about the same run) is
//! told: the flags' values, the `--config` file, the defaults and bounds, all
//! in one place. The command line (`cli`) only describes the flags and takes
//! its defaults and bounds from here; `run` and `check` take [`Settings`].

mod file;
mod settings;

use std::{fs, path::PathBuf, time::Duration};

use anyhow::{Result, bail};
pub use settings::{Settings, ShipSettings};
pub use tsusen_common::DEFAULT_FIRST_SEEN_ENTRIES as DEFAULT_MAP_SIZE;

use crate::{capture::XdpMode, http::listen::ListenAddr, tables};

/// `--out-dir`'s default.
pub const DEFAULT_OUT_DIR: &str = "/var/log/tsusen";
/// `--pin-dir`'s default.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/tsusen";
/// `--flush-interval`'s default.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// `--max-pending`'s default.
pub const DEFAULT_MAX_PENDING: usize = 1_000_000;

/// The shortest `--flush-interval`.
pub const MIN_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
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

/// The flags of `tsusen run` as given: `None` (or empty) where a flag was
/// not given, so the config file and then the defaults fill it in.
#[derive(Debug, Clone, Default)]
pub struct RunFlags {
    pub ifaces: Vec<String>,
    pub xdp_mode: Option<XdpMode>,
    pub out_dir: Option<PathBuf>,
    pub flush_interval: Option<Duration>,
    pub rules: Rules,
    pub map_size: Option<u32>,
    pub pin_dir: Option<PathBuf>,
    pub metrics: Option<ListenAddr>,
    pub metrics_auth_file: Option<PathBuf>,
    pub max_pending: Option<usize>,
    pub force: bool,
    /// `--clickhouse` and its companions, and `--sensor`.
    pub clickhouse: crate::clickhouse::ClickHouseArgs,
    pub sensor: Option<String>,
    pub config: Option<PathBuf>,
    /// For tests: run the clock from this UTC time (RFC 3339).
    pub clock_start: Option<String>,
}

/// The rules' settings, shared by `run` and `replay`, as text.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Local networks (CIDR or address).
    pub local: Vec<String>,
    /// Ports or ranges like `6000-6010`.
    pub ignore_ports: Vec<String>,
    /// Ignored networks (CIDR or address).
    pub ignore_nets: Vec<String>,
    pub include_multicast: bool,
}

impl Rules {
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

/// `--flush-interval`: a humantime duration, from one second to a day.
pub fn parse_flush_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration {text:?} ({e}); e.g. 30s, 15m, 1h"))?;
    if interval < MIN_FLUSH_INTERVAL {
        return Err(format!(
            "{text:?} is shorter than the {} minimum",
            short_duration(MIN_FLUSH_INTERVAL)
        ));
    }
    if interval > MAX_FLUSH_INTERVAL {
        return Err(format!(
            "{text:?} is longer than the {} maximum",
            short_duration(MAX_FLUSH_INTERVAL)
        ));
    }
    Ok(interval)
}

/// A whole number of hours, minutes or seconds as a flag takes it: `24h`,
/// `15m`, `1s`.
pub fn short_duration(duration: Duration) -> String {
    match duration.as_secs() {
        secs if secs >= 3600 && secs % 3600 == 0 => format!("{}h", secs / 3600),
        secs if secs >= 60 && secs % 60 == 0 => format!("{}m", secs / 60),
        secs => format!("{secs}s"),
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

/// Whether `text` is a complete config file: every key known, every value
/// of the right type (bounds are checked by [`Settings::resolve`]). For the
/// test that holds the shipped examples to the flags.
#[cfg(test)]
pub(crate) fn parse_config_text(text: &str) -> Result<(), String> {
    file::parse(text)
        .map(drop)
        .map_err(|err| format!("line {:?}: {}", err.line, err.message))
}
