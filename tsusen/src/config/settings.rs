//! What `tsusen run` is told: flags, then the `--config` TOML file, then
//! defaults, in that order of precedence; every value checked up front.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result, bail};
use clap::ValueEnum as _;

use super::{
    DEFAULT_FLUSH_INTERVAL, DEFAULT_MAP_SIZE, DEFAULT_MAX_PENDING, DEFAULT_OUT_DIR,
    DEFAULT_PIN_DIR, MAX_MAP_SIZE, MAX_MAX_PENDING, MIN_MAP_SIZE, Rules, RunFlags,
    default_route_iface, file, parse_flush_interval,
};
use crate::{
    capture::XdpMode,
    http::{auth::Auth, listen::ListenAddr},
    named_file::read_named_file,
    tables::Tables,
};

const NS_PER_DAY_I64: i64 = 86_400 * 1_000_000_000;

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
    pub metrics: Option<ListenAddr>,
    /// What `/metrics` requires (`--metrics-auth-file`).
    pub metrics_auth: Option<Auth>,
    pub max_pending: usize,
    pub force: bool,
    /// Seconds the injected clock is ahead of the real one (`--clock-start`).
    pub clock_skew_ns: i64,
    /// Where to ship rows (`--clickhouse`), if anywhere.
    pub ship: Option<ShipSettings>,
}

/// `run --clickhouse`: where rows go, checked up front.
#[derive(Debug)]
pub struct ShipSettings {
    pub client: crate::clickhouse::Client,
    pub table: crate::clickhouse::schema::Table,
    pub sensor: String,
}

impl ShipSettings {
    fn resolve(
        args: &crate::clickhouse::ClickHouseArgs,
        sensor: Option<&str>,
    ) -> Result<Option<Self>> {
        if args.urls.is_empty() {
            let others = [
                ("sensor", sensor.is_some()),
                (
                    "clickhouse-password-file",
                    args.clickhouse_password_file.is_some(),
                ),
                ("clickhouse-ca", args.clickhouse_ca.is_some()),
                ("clickhouse-table", args.clickhouse_table.is_some()),
                ("clickhouse-cluster", args.clickhouse_cluster.is_some()),
            ];
            if let Some((key, _)) = others.iter().find(|(_, given)| *given) {
                bail!("{key} is given without clickhouse (the URL rows are shipped to)");
            }
            return Ok(None);
        }
        Ok(Some(ShipSettings {
            client: args.client()?,
            table: args.table()?,
            sensor: crate::ship::sensor_name(sensor)?,
        }))
    }

    /// How reload compares it: everything but the password.
    pub fn show(ship: Option<&Self>) -> String {
        ship.map_or("off".into(), |s| {
            format!(
                "{} as {} into {}{}",
                s.client.urls().join(", "),
                s.sensor,
                s.table.qualified(),
                s.table
                    .cluster
                    .as_ref()
                    .map(|c| format!(" on cluster {c}"))
                    .unwrap_or_default()
            )
        })
    }
}

/// Flags win; a list given as flags replaces the file's list.
fn pick<T>(flag: Vec<T>, file: Vec<T>) -> Vec<T> {
    if flag.is_empty() { file } else { flag }
}

impl Settings {
    pub fn resolve(args: RunFlags) -> Result<Self> {
        let file = match &args.config {
            Some(path) => file::read(path)?,
            None => file::FileConfig::default(),
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
        let rules = Rules {
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
            (None, Some(text)) => Some(
                text.parse::<ListenAddr>()
                    .map_err(|e| anyhow::anyhow!("config file: metrics: {e}"))?,
            ),
            (None, None) => None,
        };
        let metrics_auth_file = args.metrics_auth_file.or(file.metrics_auth_file);
        // Only from the file: an environment variable would reach every
        // child of the unit too.
        let metrics_auth = match &metrics_auth_file {
            Some(path) => Some(Auth::parse(
                &read_named_file(path, &format!("--metrics-auth-file {}", path.display()))?,
                &format!("--metrics-auth-file {}", path.display()),
            )?),
            None => None,
        };
        let map_size = args
            .map_size
            .map(u64::from)
            .or(file.map_size)
            .unwrap_or(u64::from(DEFAULT_MAP_SIZE));
        let map_size = match u32::try_from(map_size) {
            Ok(n) if (MIN_MAP_SIZE..=MAX_MAP_SIZE).contains(&n) => n,
            _ => bail!(
                "map-size {map_size} is outside {MIN_MAP_SIZE}..={MAX_MAP_SIZE} (2^25 entries, about 3.5 GiB of kernel memory, is the most)"
            ),
        };
        let max_pending = args
            .max_pending
            .or(file.max_pending)
            .unwrap_or(DEFAULT_MAX_PENDING);
        if max_pending > MAX_MAX_PENDING {
            bail!("max-pending {max_pending} is above the {MAX_MAX_PENDING} maximum");
        }
        let out_dir = args
            .out_dir
            .or(file.out_dir)
            .unwrap_or_else(|| DEFAULT_OUT_DIR.into());
        let pin_dir = args
            .pin_dir
            .or(file.pin_dir)
            .unwrap_or_else(|| DEFAULT_PIN_DIR.into());
        // An empty path would mean the current directory.
        if out_dir.as_os_str().is_empty() {
            bail!("out-dir is empty; name a directory (default {DEFAULT_OUT_DIR})");
        }
        if pin_dir.as_os_str().is_empty() {
            bail!("pin-dir is empty; name a directory (default {DEFAULT_PIN_DIR})");
        }
        let clock_skew_ns = match &args.clock_start {
            Some(text) => {
                let start = chrono::DateTime::parse_from_rfc3339(text)
                    .with_context(|| format!("--clock-start {text:?} is not an RFC 3339 time"))?;
                // Day files are named for days 1970-01-01 to 2149-06-06.
                let start_ns = start
                    .timestamp_nanos_opt()
                    .filter(|ns| (0..=i64::from(u16::MAX) * NS_PER_DAY_I64).contains(ns))
                    .with_context(|| {
                        format!("--clock-start {text:?} is outside 1970-01-01 to 2149-06-06")
                    })?;
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
            // Not a mistake in the settings: at boot the route may come later.
            vec![default_route_iface().map_err(crate::exit::runtime)?]
        } else {
            ifaces
        };
        if max_pending == 0 {
            bail!("--max-pending must be at least 1 (rows held while the out-dir refuses writes)");
        }
        let sensor = args.sensor.or(file.sensor);
        let ship = ShipSettings::resolve(
            &crate::clickhouse::ClickHouseArgs {
                urls: pick(args.clickhouse.urls, file.clickhouse),
                clickhouse_password_file: args
                    .clickhouse
                    .clickhouse_password_file
                    .or(file.clickhouse_password_file),
                clickhouse_ca: args.clickhouse.clickhouse_ca.or(file.clickhouse_ca),
                clickhouse_table: args.clickhouse.clickhouse_table.or(file.clickhouse_table),
                clickhouse_cluster: args
                    .clickhouse
                    .clickhouse_cluster
                    .or(file.clickhouse_cluster),
            },
            sensor.as_deref(),
        )?;
        Ok(Settings {
            ifaces,
            xdp_mode,
            out_dir,
            flush_interval,
            tables: rules.tables()?,
            local: rules
                .local
                .iter()
                .map(|net| crate::tables::parse_net(net))
                .collect::<Result<_>>()?,
            map_size,
            pin_dir,
            metrics,
            metrics_auth,
            max_pending,
            force: args.force || file.force.unwrap_or(false),
            clock_skew_ns,
            ship,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{
        fs,
        path::{Path, PathBuf},
    };

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
        let args = RunFlags {
            config: Some(path.clone()),
            flush_interval: Some(Duration::from_secs(5)),
            ..RunFlags::default()
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

    fn resolve_file(text: &str) -> Result<Settings> {
        let path = write(text);
        let args = RunFlags {
            config: Some(path.clone()),
            ..RunFlags::default()
        };
        let result = Settings::resolve(args);
        fs::remove_file(path).unwrap();
        result
    }

    #[test]
    fn clickhouse_settings_come_from_the_file_and_flags_win() {
        let text = "iface = \"lo\"\nclickhouse = \"http://tsusen@ch1:8123\"\nsensor = \"edge-1\"\nclickhouse-table = \"fleet.rows\"\nclickhouse-cluster = \"fleet\"\n";
        let ship = resolve_file(text).unwrap().ship.expect("shipping on");
        assert_eq!(ship.client.urls(), ["http://tsusen@ch1:8123/"]);
        assert_eq!(ship.sensor, "edge-1");
        assert_eq!(ship.table.qualified(), "fleet.rows");
        assert_eq!(ship.table.cluster.as_deref(), Some("fleet"));
        let path = write(text);
        let args = RunFlags {
            config: Some(path.clone()),
            sensor: Some("edge-2".into()),
            ..RunFlags::default()
        };
        let s = Settings::resolve(args).unwrap();
        fs::remove_file(path).unwrap();
        assert_eq!(s.ship.unwrap().sensor, "edge-2");

        assert!(resolve_file("iface = \"lo\"\n").unwrap().ship.is_none());
        let err = resolve_file("iface = \"lo\"\nsensor = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("without clickhouse"), "{err}");
        let err = resolve_file("iface = \"lo\"\nclickhouse = \"http://h:1\"\nsensor = \"a/b\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("--sensor"), "{err}");
    }

    #[test]
    fn a_list_key_takes_one_value_too() {
        let s = resolve_file(
            "iface = \"lo\"\nlocal = \"203.0.113.0/24\"\nignore-port = 23\nignore-net = \"198.51.100.0/24\"\n",
        )
        .unwrap();
        assert_eq!(s.ifaces, ["lo"]);
        assert_eq!(s.local, ["203.0.113.0/24".parse::<ipnet::IpNet>().unwrap()]);
        use tsusen_common::classify::Tables as _;
        assert!(s.tables.is_ignored_port(23));
        let err = format!(
            "{:#}",
            resolve_file("iface = [\"lo\"]\nlocal = 5\n").unwrap_err()
        );
        assert!(
            err.contains("line 2: invalid type: integer `5`") && !err.contains('\n'),
            "{err}"
        );
    }

    #[test]
    fn every_value_is_bounded_in_the_file_too() {
        for (text, expected) in [
            (
                "map-size = 4294967295",
                "map-size 4294967295 is outside 1024..=33554432",
            ),
            ("map-size = 33554433", "outside 1024..=33554432"),
            ("map-size = 1023", "outside 1024..=33554432"),
            (
                "max-pending = 100000001",
                "max-pending 100000001 is above the 100000000 maximum",
            ),
            (
                "flush-interval = \"293000000000y\"",
                "longer than the 24h maximum",
            ),
            ("out-dir = \"\"", "out-dir is empty"),
            ("pin-dir = \"\"", "pin-dir is empty"),
            ("metrics = \"localhost\"", "ADDRESS:PORT"),
        ] {
            let err = format!(
                "{:#}",
                resolve_file(&format!("iface = \"lo\"\n{text}\n")).unwrap_err()
            );
            assert!(
                err.contains(expected) && !err.contains('\n'),
                "{text}: {err}"
            );
        }
        let s = resolve_file(
            "iface = \"lo\"\nmap-size = 33554432\nflush-interval = \"24h\"\nmetrics = \":9339\"\n",
        )
        .unwrap();
        assert_eq!(s.map_size, 1 << 25);
        assert_eq!(s.metrics, Some(ListenAddr::Any(9339)));
        let args = RunFlags {
            ifaces: vec!["lo".into()],
            out_dir: Some(PathBuf::new()),
            ..RunFlags::default()
        };
        assert!(Settings::resolve(args).is_err(), "--out-dir \"\"");
        let args = RunFlags {
            ifaces: vec!["lo".into()],
            clock_start: Some("2150-01-01T00:00:00Z".into()),
            ..RunFlags::default()
        };
        let err = format!("{:#}", Settings::resolve(args).unwrap_err());
        assert!(err.contains("outside 1970-01-01 to 2149-06-06"), "{err}");
    }

    #[test]
    fn an_interface_named_twice_is_watched_once() {
        let args = RunFlags {
            ifaces: vec!["lo".into(), "lo".into()],
            ..RunFlags::default()
        };
        assert_eq!(Settings::resolve(args).unwrap().ifaces, ["lo"]);
    }

    #[test]
    fn a_bad_config_file_is_one_clear_line() {
        let path = write("out-dir = \"/x\"\nflush-intervall = \"1s\"\n");
        let args = RunFlags {
            config: Some(path.clone()),
            ifaces: vec!["lo".into()],
            ..RunFlags::default()
        };
        let err = format!("{:#}", Settings::resolve(args).unwrap_err());
        assert!(
            err.contains("flush-intervall") && !err.contains('\n'),
            "{err}"
        );
        fs::remove_file(path).unwrap();
        let args = RunFlags {
            config: Some("/nonexistent/tsusen.toml".into()),
            ..RunFlags::default()
        };
        let err = format!("{:#}", Settings::resolve(args).unwrap_err());
        assert!(
            err.contains("cannot read config file /nonexistent/tsusen.toml"),
            "{err}"
        );
    }
}
