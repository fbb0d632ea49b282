//! SIGHUP: reopen the day files and re-read the `--config` file.
//!
//! The day files are read again from disk when next written, so one that
//! logrotate (or a person) moved away starts afresh with its header. The
//! settings are resolved again from the same flags and the file as it is
//! now (flags still win). Applied at once: `flush-interval` and the rules'
//! tables (`local`, `ignore-port`, `ignore-net`, `include-multicast`), which
//! are written to the kernel's maps again. The others name what the sensor
//! is built from (`iface`, `xdp-mode`, `out-dir`, `map-size`, `pin-dir`,
//! `metrics`, `max-pending`, `force`): a change is logged as a warning and
//! takes effect at the next restart. A file that does not parse changes
//! nothing: the error is logged and the sensor runs on as it was.

use std::net::IpAddr;

use anyhow::Result;
use ipnet::IpNet;
use log::{error, info, warn};

use super::{Daemon, local, show};
use crate::{config::Settings, tables::Networks};

/// The keys a SIGHUP applies to the running sensor.
pub const APPLIED: &[&str] = &[
    "flush-interval",
    "local",
    "ignore-port",
    "ignore-net",
    "include-multicast",
];

/// The keys that take a restart.
pub const NEED_RESTART: &[&str] = &[
    "iface",
    "xdp-mode",
    "out-dir",
    "map-size",
    "pin-dir",
    "metrics",
    "max-pending",
    "force",
    "clickhouse",
];

/// A setting whose value differs between the running and the re-read settings.
#[derive(Debug, PartialEq, Eq)]
pub struct Change {
    pub key: &'static str,
    pub from: String,
    pub to: String,
}

impl Change {
    pub fn applied(&self) -> bool {
        APPLIED.contains(&self.key)
    }
}

/// Every key whose value differs, in the README's order.
pub fn changes(old: &Settings, new: &Settings) -> Vec<Change> {
    let ifaces = |s: &Settings| s.ifaces.join(", ");
    let mode = |s: &Settings| format!("{:?}", s.xdp_mode).to_lowercase();
    let interval = |s: &Settings| humantime::format_duration(s.flush_interval).to_string();
    let ports = |s: &Settings| port_list(&s.tables.ignored_ports);
    let nets = |s: &Settings| show(&networks(&s.tables.ignored_nets));
    let metrics = |s: &Settings| {
        s.metrics
            .as_ref()
            .map_or("off".into(), std::string::ToString::to_string)
    };
    let ship = |s: &Settings| crate::config::ShipSettings::show(s.ship.as_ref());
    let values: [(&'static str, String, String); 14] = [
        ("iface", ifaces(old), ifaces(new)),
        ("xdp-mode", mode(old), mode(new)),
        (
            "out-dir",
            old.out_dir.display().to_string(),
            new.out_dir.display().to_string(),
        ),
        ("flush-interval", interval(old), interval(new)),
        ("local", show(&old.local), show(&new.local)),
        ("ignore-port", ports(old), ports(new)),
        ("ignore-net", nets(old), nets(new)),
        (
            "include-multicast",
            old.tables.include_multicast.to_string(),
            new.tables.include_multicast.to_string(),
        ),
        (
            "map-size",
            old.map_size.to_string(),
            new.map_size.to_string(),
        ),
        (
            "pin-dir",
            old.pin_dir.display().to_string(),
            new.pin_dir.display().to_string(),
        ),
        ("metrics", metrics(old), metrics(new)),
        (
            "max-pending",
            old.max_pending.to_string(),
            new.max_pending.to_string(),
        ),
        ("force", old.force.to_string(), new.force.to_string()),
        ("clickhouse", ship(old), ship(new)),
    ];
    values
        .into_iter()
        .filter(|(_, from, to)| from != to)
        .map(|(key, from, to)| Change { key, from, to })
        .collect()
}

/// Ignored ports as the config writes them: `22, 6000-6010`.
fn port_list(words: &[u64]) -> String {
    let ignored = |port: usize| words[port / 64] & (1 << (port % 64)) != 0;
    let mut ranges = Vec::new();
    let mut port = 0;
    while port < words.len() * 64 {
        if ignored(port) {
            let start = port;
            while port + 1 < words.len() * 64 && ignored(port + 1) {
                port += 1;
            }
            ranges.push(if start == port {
                start.to_string()
            } else {
                format!("{start}-{port}")
            });
        }
        port += 1;
    }
    ranges.join(", ")
}

/// A prefix set as networks, sorted.
fn networks(nets: &Networks) -> Vec<IpNet> {
    let mut list: Vec<IpNet> = nets
        .prefixes()
        .map(|(addr, len)| {
            let v6 = std::net::Ipv6Addr::from(addr);
            match v6.to_ipv4_mapped() {
                Some(v4) if len >= 96 => IpNet::new(IpAddr::V4(v4), len - 96),
                _ => IpNet::new(IpAddr::V6(v6), len),
            }
            .expect("a prefix length the set accepted")
        })
        .collect();
    list.sort();
    list
}

impl Daemon {
    /// SIGHUP: reopen the day files, then re-read the config and apply
    /// what can be applied while running.
    pub(super) fn reload(&mut self) {
        info!("SIGHUP: reopening the day files and re-reading the settings");
        self.store.reopen();
        let new = match Settings::resolve(self.args.clone()) {
            Ok(new) => new,
            Err(err) => {
                error!("reload: {err:#}; running on with the settings as they were");
                return;
            }
        };
        let changes = changes(&self.settings, &new);
        for change in changes.iter().filter(|c| !c.applied()) {
            warn!(
                "reload: {} changed from {} to {}, which takes a restart; still using {}",
                change.key,
                or_none(&change.from),
                or_none(&change.to),
                or_none(&change.from)
            );
        }
        if !changes.iter().any(Change::applied) {
            info!("reload: nothing to apply");
            return;
        }
        if let Err(err) = self.apply(&new) {
            error!("reload: {err:#}; running on with the settings as they were");
            return;
        }
        for change in changes.iter().filter(|c| c.applied()) {
            info!(
                "reload: {}: {} -> {}",
                change.key,
                or_none(&change.from),
                or_none(&change.to)
            );
        }
    }

    /// Take the new rules and flush interval; the kernel's tables first, so
    /// a failure there leaves everything as it was.
    fn apply(&mut self, new: &Settings) -> Result<()> {
        let mut tables = new.tables.clone();
        let (local, local_list) = local::local_networks(&new.local)?;
        tables.local = local;
        let offset = self.clock.kernel_offset();
        crate::capture::write_tables(self.sensor().ebpf(), &tables, offset)?;
        self.tables = tables;
        self.local_list = local_list;
        self.extra_local.clone_from(&new.local);
        self.settings.local.clone_from(&new.local);
        self.settings.tables = new.tables.clone();
        self.settings.flush_interval = new.flush_interval;
        Ok(())
    }
}

fn or_none(value: &str) -> &str {
    if value.is_empty() { "(none)" } else { value }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{Rules, RunFlags};

    fn settings(rules: Rules, map_size: u32) -> Settings {
        Settings::resolve(RunFlags {
            ifaces: vec!["lo".into()],
            rules,
            map_size: Some(map_size),
            flush_interval: Some(Duration::from_secs(60)),
            ..RunFlags::default()
        })
        .unwrap()
    }

    #[test]
    fn changes_name_each_key_and_whether_it_is_applied() {
        let old = settings(
            Rules {
                ignore_ports: vec!["23".into()],
                ..Rules::default()
            },
            4096,
        );
        let new = settings(
            Rules {
                ignore_ports: vec!["23".into(), "6000-6010".into(), "6011".into()],
                ignore_nets: vec!["198.51.100.0/24".into(), "2001:db8::/32".into()],
                include_multicast: true,
                ..Rules::default()
            },
            8192,
        );
        assert!(changes(&old, &old).is_empty());
        let got = changes(&old, &new);
        let summary: Vec<(&str, &str, &str, bool)> = got
            .iter()
            .map(|c| (c.key, c.from.as_str(), c.to.as_str(), c.applied()))
            .collect();
        assert_eq!(
            summary,
            [
                ("ignore-port", "23", "23, 6000-6011", true),
                ("ignore-net", "", "198.51.100.0/24, 2001:db8::/32", true),
                ("include-multicast", "false", "true", true),
                ("map-size", "4096", "8192", false),
            ]
        );
    }

    #[test]
    fn every_key_is_either_applied_or_needs_a_restart() {
        let mut keys: Vec<&str> = APPLIED.iter().chain(NEED_RESTART).copied().collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), APPLIED.len() + NEED_RESTART.len());
    }

    #[test]
    fn port_lists_read_like_the_config() {
        let mut words = vec![0u64; 1024];
        for port in [0, 63, 64, 65, 65535] {
            words[port / 64] |= 1 << (port % 64);
        }
        assert_eq!(port_list(&words), "0, 63-65, 65535");
    }
}
