//! What the shipping tests share: `tsusen ship` as a command, the rows of a
//! directory of day files as ClickHouse would hold them, and the three
//! counts that say "exactly once".

#![allow(dead_code, reason = "each test crate uses a different part")]

use std::{
    collections::BTreeSet,
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use tsusen::{
    dayfile::{self, Warnings},
    testing::clickhouse::Node,
};

/// A fresh directory under the target dir, unique per test.
pub(crate) fn tempdir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("ship-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `tsusen ship` with these arguments, as the node's `default` user.
pub(crate) fn ship_command(node: &Node, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tsusen"));
    command
        .arg("ship")
        .args(args)
        .env("TSUSEN_CLICKHOUSE_PASSWORD", node.password())
        .env("RUST_LOG", "info");
    command
}

/// `default@` in the node's URL.
pub(crate) fn url(node: &Node) -> String {
    node.url().replacen("://", "://default@", 1)
}

/// `tsusen ship` following `dir` into `table` as `sensor`.
pub(crate) fn follow_command(node: &Node, dir: &Path, sensor: &str, table: &str) -> Command {
    let url = url(node);
    let dir = dir.display().to_string();
    ship_command(
        node,
        &[
            "--dir",
            &dir,
            "--clickhouse",
            &url,
            "--clickhouse-table",
            table,
            "--sensor",
            sensor,
        ],
    )
}

/// `tsusen ship --once` of `dir` into `table` as `sensor`; its output.
pub(crate) fn ship_once(node: &Node, dir: &Path, sensor: &str, table: &str) -> Output {
    let out = follow_command(node, dir, sensor, table)
        .arg("--once")
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// [`ship_once`], which must succeed.
pub(crate) fn ship_once_ok(node: &Node, dir: &Path, sensor: &str, table: &str) -> String {
    let out = ship_once(node, dir, sensor, table);
    assert!(out.status.success(), "{:?}", out.status);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An address as `IPv6NumToString` shows the stored 16 bytes.
fn as_stored(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("::ffff:{v4}"),
        IpAddr::V6(v6) => v6.to_string(),
    }
}

/// The distinct rows of `dir`'s day files as ClickHouse stores them:
/// `day sensor proto dst_port src_ip dst_ip first_seen`, TSV.
pub(crate) fn rows_in_files(dir: &Path, sensor: &str) -> BTreeSet<String> {
    let mut warnings = Warnings::default();
    let mut rows = BTreeSet::new();
    for file in dayfile::list_day_files(dir, &mut warnings).unwrap() {
        dayfile::read_day_file(&file.path, &mut warnings, |row| {
            rows.insert(format!(
                "{}\t{sensor}\t{}\t{}\t{}\t{}\t{}",
                dayfile::day_name(row.day()),
                row.proto,
                row.dst_port,
                as_stored(row.src_ip),
                as_stored(row.dst_ip),
                row.timestamp
            ));
        })
        .unwrap();
    }
    rows
}

/// Every stored row of `sensor` (duplicates collapsed), in the same form.
pub(crate) fn rows_stored(
    query: impl Fn(&str) -> String,
    table: &str,
    sensor: &str,
) -> BTreeSet<String> {
    query(&format!(
        "SELECT DISTINCT day, sensor, proto, dst_port, IPv6NumToString(src_ip), \
         IPv6NumToString(dst_ip), toUnixTimestamp(first_seen) FROM {table} \
         WHERE sensor = '{sensor}' FORMAT TabSeparated"
    ))
    .lines()
    .map(str::to_owned)
    .collect()
}

/// `count()`, `count()` with `FINAL` (duplicates merged away) and the number
/// of distinct rows: all three equal means no row is stored twice.
pub(crate) fn counts(query: impl Fn(&str) -> String, table: &str) -> (u64, u64, u64) {
    let number = |sql: &str| -> u64 {
        let out = query(sql);
        out.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{sql}: {out:?}: {e}"))
    };
    (
        number(&format!("SELECT count() FROM {table}")),
        number(&format!("SELECT count() FROM {table} FINAL")),
        number(&format!(
            "SELECT uniqExact(day, sensor, proto, dst_port, src_ip, dst_ip, first_seen) FROM {table}"
        )),
    )
}

/// Wait until `query`'s count of `table` reaches `n` (a generous deadline
/// for a failing test to end, not a speed requirement).
pub(crate) fn wait_count(
    query: impl Fn(&str) -> Result<String, String>,
    table: &str,
    n: u64,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let count = query(&format!("SELECT count() FROM {table}"))
            .ok()
            .and_then(|out| out.trim().parse().ok())
            .unwrap_or(0);
        if count >= n || Instant::now() > deadline {
            return count;
        }
        thread::sleep(Duration::from_millis(200));
    }
}
