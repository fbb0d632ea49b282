//! The ClickHouse source (`--clickhouse`): the rows every sensor shipped
//! (see [`crate::clickhouse::schema`]), aggregated in SQL, one query per day
//! read:
//!
//! - a baseline day: distinct sources per (protocol, port), `uniqExact`;
//! - a shown day: one row per (protocol, port, source, sensor) with
//!   `min(first_seen)` and its destinations (`groupArray`), which the
//!   [`DayBuilder`] turns into the same aggregate a day file gives (merging
//!   sensors, each destination once).
//!
//! Every result is insensitive to duplicate rows (a batch shipped twice, a
//! replica's copy): `uniqExact` and `min` count a row once, and a
//! destination listed twice is counted once.
//! `--sensor` (repeatable) keeps only those sensors' rows; none means all.
//!
//! A day's [`Stamp`] is its `count()` and `max(first_seen)`: an insert (or a
//! merge dropping duplicates) changes it and the day is read again at the
//! next refresh. The count is asked for every day (it reads only the `day`
//! column), the newest first sighting only for the days the window needs.
//!
//! Addresses travel as `hex()` of their 16 bytes: the client reads answers
//! as text, and an IPv4 address comes back from its mapped form
//! (`::ffff:a.b.c.d`) as the day files write it.

use std::{
    net::{IpAddr, Ipv6Addr},
    ops::RangeInclusive,
};

use anyhow::{Context as _, Result, anyhow, bail};

use super::{DayRead, DaySource, Listed, Listing, PerSensor, Stamp};
use crate::{
    clickhouse::{
        Cause, ClickHouseArgs, ClickHouseError, Client,
        schema::{Table, check_sensor},
    },
    dayfile::{self, Row, Warnings, day_name},
    exit,
    report::aggregate::{DayBuilder, LocalDay, ProtoPort},
};

pub struct ClickHouseDays {
    client: Client,
    /// `database.table`, as the shipper writes it (a Distributed table
    /// under that name on a cluster).
    table: String,
    /// `AND sensor IN (...)`, or empty for every sensor.
    sensor_filter: String,
    /// Days a window needs, ending with the newest: the shown days and
    /// the baseline before them.
    span: u16,
}

impl ClickHouseDays {
    /// Connect and check the table (its columns are the shipper's). `span`:
    /// the days a window needs (shown days plus the spike baseline).
    pub fn connect(args: &ClickHouseArgs, sensors: &[String], span: u16) -> Result<Self> {
        for name in sensors {
            check_sensor(name).map_err(exit::config)?;
        }
        let client = args.client().map_err(exit::config)?;
        let table: Table = args.table().map_err(exit::config)?;
        table.check(&client).map_err(|err| match err.cause {
            // The report creates nothing: the shipper's fix would mislead.
            Cause::UnknownTable => exit::config(anyhow::anyhow!(
                "ClickHouse at {}: {}; nothing was shipped there: ship rows first (tsusen \
                 ship, or tsusen run --clickhouse), or name the table they went to with \
                 --clickhouse-table",
                err.server,
                err.detail
            )),
            _ => user_error(err),
        })?;
        let sensor_filter = if sensors.is_empty() {
            String::new()
        } else {
            // Checked names: letters, digits, '.', '-', '_' (nothing to escape).
            let quoted: Vec<String> = sensors.iter().map(|s| format!("'{s}'")).collect();
            format!(" AND sensor IN ({})", quoted.join(", "))
        };
        if !sensors.is_empty() {
            // A misspelt --sensor would otherwise be an empty page and no word.
            let found = client
                .query_lines(&format!(
                    "SELECT DISTINCT sensor FROM {} WHERE 1{sensor_filter} FORMAT TabSeparated",
                    table.qualified()
                ))
                .map_err(user_error)?;
            for name in sensors.iter().filter(|name| !found.contains(name)) {
                log::warn!(
                    "--sensor {name}: no rows of this sensor in {} (yet)",
                    table.qualified()
                );
            }
        }
        Ok(ClickHouseDays {
            client,
            table: table.qualified(),
            sensor_filter,
            span: span.max(1),
        })
    }

    /// Run a query: its TabSeparated answer, read line by line with
    /// [`fields`].
    fn query(&self, sql: &str) -> Result<String> {
        self.client.query(sql).map_err(user_error)
    }

    fn day_condition(day: u16) -> String {
        format!("day = toDate('{}')", day_name(day))
    }
}

/// A ClickHouse error the user can fix (a password, a URL's host, a table)
/// exits with the configuration status, one that waiting may cure with the
/// run-time one; either way one line with cause and fix.
fn user_error(err: ClickHouseError) -> anyhow::Error {
    match err.cause {
        Cause::Unreachable | Cause::Unhealthy | Cause::Server => exit::runtime(err),
        _ => exit::config(err),
    }
}

impl DaySource for ClickHouseDays {
    fn list(&self) -> Result<Listing> {
        let counts = self.query(&format!(
            "SELECT toUInt16(day), count() FROM {} WHERE 1{} GROUP BY day ORDER BY day FORMAT TabSeparated",
            self.table, self.sensor_filter
        ))?;
        let mut days = Vec::new();
        for line in counts.lines() {
            let [day, count] = fields(line)?;
            let day = parse(day)?;
            days.push(Listed {
                day,
                name: format!("{} in ClickHouse", day_name(day)),
                stamp: Stamp::Rows {
                    count: parse(count)?,
                    newest: 0,
                },
            });
        }
        // The newest first sighting, only over the days a window can need
        // (a day after today is skipped by the loader, as a stray file is).
        let today = dayfile::today();
        if let Some(newest) = days.iter().rev().map(|d| d.day).find(|&d| d <= today) {
            let first = newest.saturating_sub(self.span - 1);
            let newest_seen = self.query(&format!(
                "SELECT toUInt16(day), toUInt32(max(first_seen)) FROM {} WHERE day >= toDate('{}') AND day <= toDate('{}'){} GROUP BY day FORMAT TabSeparated",
                self.table,
                day_name(first),
                day_name(newest),
                self.sensor_filter
            ))?;
            for line in newest_seen.lines() {
                let [day, seen] = fields(line)?;
                let day: u16 = parse(day)?;
                if let Some(listed) = days.iter_mut().find(|d| d.day == day)
                    && let Stamp::Rows { newest, .. } = &mut listed.stamp
                {
                    *newest = parse(seen)?;
                }
            }
        }
        Ok(Listing {
            days,
            warnings: Warnings::default(),
        })
    }

    fn read_day(&self, listed: &Listed, with_details: bool) -> Result<DayRead> {
        let day = listed.day;
        if !with_details {
            let rows = self.query(&format!(
                "SELECT proto, dst_port, uniqExact(src_ip) FROM {} WHERE {}{} GROUP BY proto, dst_port FORMAT TabSeparated",
                self.table,
                Self::day_condition(day),
                self.sensor_filter
            ))?;
            let mut services = Vec::new();
            for line in rows.lines() {
                let [proto, port, sources] = fields(line)?;
                services.push((
                    ProtoPort {
                        proto: parse(proto)?,
                        port: parse(port)?,
                    },
                    parse(sources)?,
                ));
            }
            // A baseline day's rows are never shown (only its counts are
            // compared): not worth a count over every column.
            return Ok((
                Some(LocalDay::from_counts(day, services, 0)),
                Warnings::default(),
            ));
        }
        // Per sensor too, so the stored rows can be counted (one per sensor
        // that saw a tuple); `groupArray`, not `groupUniqArray`: on 18.16 a
        // set per key costs twice the whole query, and a destination stored
        // twice is dropped here instead.
        let rows = self.query(&format!(
            "SELECT proto, dst_port, hex(src_ip), toUInt32(min(first_seen)), \
             arrayStringConcat(arrayMap(d -> hex(d), groupArray(dst_ip))) \
             FROM {} WHERE {}{} GROUP BY proto, dst_port, src_ip, sensor FORMAT TabSeparated",
            self.table,
            Self::day_condition(day),
            self.sensor_filter
        ))?;
        let mut builder = DayBuilder::new(day, true);
        let mut stored = 0u64;
        let mut dsts: Vec<&[u8]> = Vec::new();
        for line in rows.lines() {
            let [proto, port, src, first_seen, hex_dsts] = fields(line)?;
            let mut row = Row {
                proto: parse(proto)?,
                dst_port: parse(port)?,
                src_ip: ip_of_hex(src)?,
                dst_ip: IpAddr::from([0u8; 16]),
                timestamp: parse(first_seen)?,
            };
            if hex_dsts.len() % 32 != 0 {
                bail!("ClickHouse answered destinations {hex_dsts:?}: not 32 hex digits each");
            }
            dsts.clear();
            dsts.extend(hex_dsts.as_bytes().chunks(32));
            dsts.sort_unstable();
            dsts.dedup();
            stored += dsts.len() as u64;
            for dst in &dsts {
                row.dst_ip = ip_of_hex(std::str::from_utf8(dst).context("hex digits")?)?;
                builder.add(&row);
            }
        }
        let mut local = builder.finish();
        // Rows as stored, one per sensor that saw a tuple (not per copy).
        local.set_rows(stored);
        Ok((Some(local), Warnings::default()))
    }

    fn unit(&self) -> &'static str {
        "days in ClickHouse"
    }

    fn per_sensor(&self, service: ProtoPort, days: RangeInclusive<u16>) -> Result<PerSensor> {
        let (first, last) = (*days.start(), *days.end());
        let rows = self.query(&format!(
            "SELECT sensor, toUInt16(day), uniqExact(src_ip) FROM {} \
             WHERE day >= toDate('{}') AND day <= toDate('{}') AND proto = {} AND dst_port = {}{} \
             GROUP BY sensor, day ORDER BY sensor, day FORMAT TabSeparated",
            self.table,
            day_name(first),
            day_name(last),
            service.proto,
            service.port,
            self.sensor_filter
        ))?;
        let shown = usize::from(last.saturating_sub(first)) + 1;
        let mut sensors: Vec<(String, Vec<u32>)> = Vec::new();
        for line in rows.lines() {
            let [sensor, day, sources] = fields(line)?;
            let sensor = unescape(sensor);
            let day: u16 = parse(day)?;
            if sensors.last().is_none_or(|(name, _)| *name != sensor) {
                sensors.push((sensor, vec![0; shown]));
            }
            let counts = &mut sensors.last_mut().expect("just pushed").1;
            if let Some(n) = counts.get_mut(usize::from(day.wrapping_sub(first))) {
                *n = parse(sources)?;
            }
        }
        Ok(PerSensor::Many(sensors))
    }
}

/// A TabSeparated line's fields, exactly `N` of them (as they are: numbers
/// and hex digits have nothing to unescape).
fn fields<const N: usize>(line: &str) -> Result<[&str; N]> {
    let wrong = || anyhow!("ClickHouse answered {line:?} where {N} fields were asked for");
    let mut out = [""; N];
    let mut split = line.split('\t');
    for field in &mut out {
        *field = split.next().ok_or_else(wrong)?;
    }
    if split.next().is_some() {
        return Err(wrong());
    }
    Ok(out)
}

fn parse<T: std::str::FromStr>(field: &str) -> Result<T> {
    field
        .parse()
        .map_err(|_| anyhow!("ClickHouse answered {field:?} where a number was expected"))
}

/// 32 hex digits of a `FixedString(16)`: an IPv6 address, or an IPv4 one
/// in its mapped form.
fn ip_of_hex(hex: &str) -> Result<IpAddr> {
    let bits = u128::from_str_radix(hex, 16)
        .ok()
        .filter(|_| hex.len() == 32)
        .ok_or_else(|| {
            anyhow!("ClickHouse answered {hex:?} where an address in hex was expected")
        })?;
    Ok(IpAddr::V6(Ipv6Addr::from_bits(bits)).to_canonical())
}

/// A TabSeparated field as it was (backslash escapes undone).
fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_owned();
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_come_back_as_the_day_files_write_them() {
        assert_eq!(
            ip_of_hex("00000000000000000000FFFFC6120001").unwrap(),
            "198.18.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            ip_of_hex("20010DB8000000000000000000000002").unwrap(),
            "2001:db8::2".parse::<IpAddr>().unwrap()
        );
        assert!(ip_of_hex("C6120001").is_err());
        assert!(ip_of_hex("zz000000000000000000FFFFC6120001").is_err());
    }

    #[test]
    fn tsv_escapes_are_undone() {
        assert_eq!(unescape("plain"), "plain");
        assert_eq!(unescape(r"a\tb\\c\'d"), "a\tb\\c'd");
    }
}
