//! The table a fleet's rows go to: one row per (day, sensor, proto,
//! dst_port, src_ip, dst_ip) with its `first_seen`.
//!
//! - IPs are `FixedString(16)`: 18.16 has no IPv4/IPv6 column types, and an
//!   IPv4 address is stored mapped (`::ffff:a.b.c.d`), as the kernel's keys
//!   are. `IPv6NumToString(src_ip)` shows one.
//! - `ReplacingMergeTree` keyed by the whole tuple: a row sent twice becomes
//!   one at the next merge (and at once under `FINAL`).
//! - Partitioned by month (`toYYYYMM(day)`), so old months are dropped with
//!   `ALTER TABLE ... DROP PARTITION 202611` (18.16 has no TTL).
//! - With a cluster: the same DDL `ON CLUSTER`, a `ReplicatedReplacingMergeTree`
//!   local table `<table>_local` on every node, and a `Distributed` table
//!   under the table's own name, sharded by `cityHash64(sensor)`. Everything
//!   reads and writes the table's own name either way.

use std::fmt::Write as _;

use anyhow::{Result, bail};
use tsusen_common::tuple::mapped;

use super::{Cause, ClickHouseError, Client};
use crate::dayfile::{Row, day_name};

/// `--clickhouse-table`'s default.
pub const DEFAULT_TABLE: &str = "tsusen.attempts";

/// The columns, in order, with their types as `system.columns` shows them.
pub const COLUMNS: [(&str, &str); 7] = [
    ("day", "Date"),
    ("sensor", "String"),
    ("proto", "UInt8"),
    ("dst_port", "UInt16"),
    ("src_ip", "FixedString(16)"),
    ("dst_ip", "FixedString(16)"),
    ("first_seen", "DateTime('UTC')"),
];

/// The sorting (and replacing) key.
pub const ORDER_BY: &str = "(day, proto, dst_port, src_ip, sensor, dst_ip)";

/// The longest `--sensor` name.
pub const MAX_SENSOR: usize = 128;

/// The table rows go to (and the report reads), and how it is laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    pub database: String,
    pub name: String,
    /// `--clickhouse-cluster`: ON CLUSTER, a replicated local table and a
    /// Distributed one.
    pub cluster: Option<String>,
}

/// A name ClickHouse takes unquoted (and that cannot break out of SQL).
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Table {
    /// `DATABASE.TABLE` (or `TABLE` in the database `tsusen`), and a cluster.
    pub fn new(qualified: &str, cluster: Option<&str>) -> Result<Self> {
        let (database, name) = qualified.split_once('.').unwrap_or(("tsusen", qualified));
        for part in [database, name] {
            if !is_identifier(part) {
                bail!(
                    "--clickhouse-table {qualified:?}: expected DATABASE.TABLE of letters, digits and _"
                );
            }
        }
        if let Some(cluster) = cluster
            && !is_identifier(cluster)
        {
            bail!("--clickhouse-cluster {cluster:?}: expected a name of letters, digits and _");
        }
        Ok(Table {
            database: database.to_owned(),
            name: name.to_owned(),
            cluster: cluster.map(str::to_owned),
        })
    }

    /// `database.name`: where rows are inserted and read.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.database, self.name)
    }

    /// The table that stores the rows: the table itself, or with a cluster
    /// the local replicated one under the Distributed table.
    pub fn storage_name(&self) -> String {
        match self.cluster {
            Some(_) => format!("{}_local", self.name),
            None => self.name.clone(),
        }
    }

    fn on_cluster(&self) -> String {
        match &self.cluster {
            Some(cluster) => format!(" ON CLUSTER {cluster}"),
            None => String::new(),
        }
    }

    fn columns_sql() -> String {
        let columns: Vec<String> = COLUMNS
            .iter()
            .map(|(name, ty)| format!("    {name} {ty}"))
            .collect();
        format!("(\n{}\n)", columns.join(",\n"))
    }

    /// The statements that create the database and table(s) where missing,
    /// in order: what tsusen runs and `--print-schema` shows.
    pub fn ddl(&self) -> Vec<String> {
        let on = self.on_cluster();
        let db = &self.database;
        let storage = format!("{db}.{}", self.storage_name());
        let engine = match &self.cluster {
            Some(_) => format!(
                "ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{storage}', '{{replica}}')"
            ),
            None => "ReplacingMergeTree".to_owned(),
        };
        let mut ddl = vec![
            format!("CREATE DATABASE IF NOT EXISTS {db}{on}"),
            format!(
                "CREATE TABLE IF NOT EXISTS {storage}{on}\n{}\nENGINE = {engine}\nPARTITION BY toYYYYMM(day)\nORDER BY {ORDER_BY}",
                Self::columns_sql()
            ),
        ];
        if let Some(cluster) = &self.cluster {
            ddl.push(format!(
                "CREATE TABLE IF NOT EXISTS {}{on}\n{}\nENGINE = Distributed({cluster}, {db}, {}, cityHash64(sensor))",
                self.qualified(),
                Self::columns_sql(),
                self.storage_name()
            ));
        }
        ddl
    }

    /// The DDL as a DBA runs it: statements ending in `;`.
    pub fn print(&self) -> String {
        let mut out = String::new();
        for statement in self.ddl() {
            let _ = writeln!(out, "{statement};\n");
        }
        out
    }

    /// Create what is missing, then check that the table has our columns
    /// (a table of the same name made for something else is one clear error).
    pub fn ensure(&self, client: &Client) -> Result<(), ClickHouseError> {
        for statement in self.ddl() {
            client.query(&statement)?;
        }
        self.check(client)
    }

    /// Check that the table (and with a cluster its local table) has
    /// exactly our columns, in order.
    pub fn check(&self, client: &Client) -> Result<(), ClickHouseError> {
        let mut names = vec![self.name.clone()];
        if self.cluster.is_some() {
            names.push(self.storage_name());
        }
        for name in names {
            let lines = client.query_lines(&format!(
                "SELECT name, type FROM system.columns WHERE database = '{}' AND table = '{name}' FORMAT TabSeparated",
                self.database
            ))?;
            let found: Vec<String> = lines.iter().map(|l| l.replace("\\'", "'")).collect();
            let wanted: Vec<String> = COLUMNS
                .iter()
                .map(|(name, ty)| format!("{name}\t{ty}"))
                .collect();
            let server = client.urls().join(", ");
            if found.is_empty() {
                return Err(ClickHouseError::new(
                    Cause::UnknownTable,
                    &server,
                    format!("table {}.{name} does not exist", self.database),
                ));
            }
            if found != wanted {
                let show = |cols: &[String]| {
                    cols.iter()
                        .map(|c| c.replace('\t', " "))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(ClickHouseError::new(
                    Cause::Schema,
                    &server,
                    format!(
                        "table {}.{name} has columns ({}), tsusen writes ({})",
                        self.database,
                        show(&found),
                        show(&wanted)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Check a `--sensor` name: it is stored as is and shown in reports, so
/// letters, digits, `.`, `-` and `_` (host names are), at most
/// [`MAX_SENSOR`] bytes.
pub fn check_sensor(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_SENSOR
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        bail!(
            "--sensor {name:?}: expected 1 to {MAX_SENSOR} letters, digits, '.', '-' or '_' (e.g. the host name)"
        );
    }
    Ok(())
}

/// Append `row` of `sensor` as one TabSeparated line of the table's columns.
/// `sensor` was checked with [`check_sensor`] (nothing in it needs escaping).
pub fn write_tsv_row(row: &Row, sensor: &str, day_cache: &mut DayCache, out: &mut Vec<u8>) {
    out.extend_from_slice(day_cache.name(row.day()).as_bytes());
    out.push(b'\t');
    out.extend_from_slice(sensor.as_bytes());
    out.push(b'\t');
    let mut num = itoa::Buffer::new();
    out.extend_from_slice(num.format(row.proto).as_bytes());
    out.push(b'\t');
    out.extend_from_slice(num.format(row.dst_port).as_bytes());
    for ip in [row.src_ip, row.dst_ip] {
        out.push(b'\t');
        write_fixed_string(&mapped(ip), out);
    }
    out.push(b'\t');
    // DateTime in TSV takes Unix seconds (18.16 and current releases).
    out.extend_from_slice(num.format(row.timestamp.max(0)).as_bytes());
    out.push(b'\n');
}

/// 16 bytes as TSV's `\xNN` escapes (every byte, so none needs thought).
fn write_fixed_string(bytes: &[u8; 16], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.extend_from_slice(&[
            b'\\',
            b'x',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 15)],
        ]);
    }
}

/// The `YYYY-MM-DD` of the last day written (a file's rows share one).
#[derive(Default)]
pub struct DayCache {
    day: Option<(u16, String)>,
}

impl DayCache {
    fn name(&mut self, day: u16) -> &str {
        if self.day.as_ref().is_none_or(|(d, _)| *d != day) {
            self.day = Some((day, day_name(day)));
        }
        &self.day.as_ref().expect("just set").1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_node_table_and_a_cluster() {
        let single = Table::new(DEFAULT_TABLE, None).unwrap();
        let ddl = single.ddl();
        assert_eq!(ddl.len(), 2);
        assert!(ddl[1].starts_with("CREATE TABLE IF NOT EXISTS tsusen.attempts\n("));
        assert!(ddl[1].contains("ENGINE = ReplacingMergeTree\nPARTITION BY toYYYYMM(day)\nORDER BY (day, proto, dst_port, src_ip, sensor, dst_ip)"));
        let cluster = Table::new("fleet.rows", Some("tsusen")).unwrap();
        let ddl = cluster.ddl();
        assert_eq!(ddl.len(), 3);
        assert_eq!(
            ddl[0],
            "CREATE DATABASE IF NOT EXISTS fleet ON CLUSTER tsusen"
        );
        assert!(
            ddl[1].starts_with("CREATE TABLE IF NOT EXISTS fleet.rows_local ON CLUSTER tsusen")
        );
        assert!(ddl[1].contains("ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/fleet.rows_local', '{replica}')"));
        assert!(
            ddl[2].ends_with("ENGINE = Distributed(tsusen, fleet, rows_local, cityHash64(sensor))")
        );
        assert!(Table::new("a.b;DROP", None).is_err());
        assert!(Table::new("a.b", Some("x y")).is_err());
    }

    #[test]
    fn a_row_as_tsv() {
        let row: Row = "TCP 22 198.18.0.1 2001:db8::2 1764000000".parse().unwrap();
        let mut out = Vec::new();
        write_tsv_row(&row, "s-1", &mut DayCache::default(), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "2025-11-24\ts-1\t6\t22\t\
             \\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\xff\\xff\\xc6\\x12\\x00\\x01\t\
             \\x20\\x01\\x0d\\xb8\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\t1764000000\n"
        );
        assert!(check_sensor("edge-1.example").is_ok());
        assert!(check_sensor("a b").is_err() && check_sensor("").is_err());
    }
}
