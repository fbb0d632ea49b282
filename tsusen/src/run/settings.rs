//! What `tsusen run` is told: flags, then the `--config` TOML file, then
//! defaults, in that order of precedence; every value checked up front.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use clap::ValueEnum as _;
use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use tsusen_common::DEFAULT_FIRST_SEEN_ENTRIES;

use crate::{
    capture::XdpMode,
    cli::{
        MAX_MAP_SIZE, MAX_MAX_PENDING, MIN_MAP_SIZE, RuleArgs, RunArgs, parse_flush_interval,
        read_named_file,
    },
    http::{auth::Auth, listen::ListenAddr},
    tables::Tables,
};

pub const DEFAULT_OUT_DIR: &str = "/var/log/tsusen";
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/tsusen";
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_MAX_PENDING: usize = 1_000_000;
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
}

/// The `--config` file: the flags' names as keys.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    #[serde(deserialize_with = "one_or_many")]
    iface: Vec<String>,
    xdp_mode: Option<String>,
    out_dir: Option<PathBuf>,
    flush_interval: Option<String>,
    #[serde(deserialize_with = "one_or_many")]
    local: Vec<String>,
    #[serde(deserialize_with = "one_or_many")]
    ignore_port: Vec<toml::Value>,
    #[serde(deserialize_with = "one_or_many")]
    ignore_net: Vec<String>,
    include_multicast: Option<bool>,
    // Wider than the flag's u32, so a too-large value gets the bound's message.
    map_size: Option<u64>,
    pin_dir: Option<PathBuf>,
    metrics: Option<String>,
    metrics_auth_file: Option<PathBuf>,
    max_pending: Option<usize>,
    force: Option<bool>,
}

/// A list key also takes one value: `iface = "eth0"` as `iface = ["eth0"]`.
fn one_or_many<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    deserializer: D,
) -> Result<Vec<T>, D::Error> {
    let items = match toml::Value::deserialize(deserializer)? {
        toml::Value::Array(items) => items,
        one => vec![one],
    };
    items
        .into_iter()
        .map(|item| T::deserialize(item).map_err(serde::de::Error::custom))
        .collect()
}

fn read_config(path: &Path) -> Result<FileConfig> {
    let text = read_named_file(path, &format!("config file {}", path.display()))?;
    toml::from_str(&text).map_err(|err| {
        // toml's messages span lines; keep the one line that says what is wrong.
        let first = err
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_owned();
        // The line it is on, since a message about a value does not name its key.
        match err.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].lines().count().max(1);
                let line = if text[..span.start.min(text.len())].ends_with('\n') {
                    line + 1
                } else {
                    line
                };
                anyhow::anyhow!("config file {}, line {line}: {first}", path.display())
            }
            None => anyhow::anyhow!("config file {}: {first}", path.display()),
        }
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
            .unwrap_or(u64::from(DEFAULT_FIRST_SEEN_ENTRIES));
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

    fn resolve_file(text: &str) -> Result<Settings> {
        let path = write(text);
        let args = RunArgs {
            config: Some(path.clone()),
            ..RunArgs::default()
        };
        let result = Settings::resolve(args);
        fs::remove_file(path).unwrap();
        result
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
        let args = RunArgs {
            ifaces: vec!["lo".into()],
            out_dir: Some(PathBuf::new()),
            ..RunArgs::default()
        };
        assert!(Settings::resolve(args).is_err(), "--out-dir \"\"");
        let args = RunArgs {
            ifaces: vec!["lo".into()],
            clock_start: Some("2150-01-01T00:00:00Z".into()),
            ..RunArgs::default()
        };
        let err = format!("{:#}", Settings::resolve(args).unwrap_err());
        assert!(err.contains("outside 1970-01-01 to 2149-06-06"), "{err}");
    }

    /// The long flags of `tsusen run` a config file takes (all but
    /// `--config` itself and hidden test flags).
    fn run_flags() -> Vec<String> {
        use clap::CommandFactory as _;
        let cli = crate::cli::Cli::command();
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
        let shipped = include_str!("../../../packaging/tsusen.toml");
        let readme = include_str!("../../../README.md");
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
            toml::from_str::<FileConfig>(&enabled)
                .unwrap_or_else(|e| panic!("{name}: {e}\n{enabled}"));
        }
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
