//! The day-file format, in one place: `<dir>/YYYY-MM-DD.csv`, one per UTC
//! day, space-separated, a header line and then one row per tuple.
//!
//! - [`Row`]: one line, `proto dst_port src_ip dst_ip timestamp`, parsed and
//!   written ([`row`]);
//! - [`Format`]: the columns a file has, named by its header: ours, and both
//!   of the original tsusen's (its first, whose header ends in `sec`, and its
//!   later 7-column one);
//! - [`read`]: the one reader of day files, used by the store and the report
//!   alike: tolerant (bad lines are skipped, counted, the first
//!   [`NAMED_BAD_LINES`] named), and the listing of a directory's day files;
//! - the day of a timestamp and the file name of a day.
//!
//! The store writes rows with [`Row::write_line_as`]; nothing else writes day
//! files.
//!
//! Why not the `csv` crate: the format has no quoting and a few
//! space-separated columns, and `benches/dayfile.rs` (`cargo xtask bench`)
//! measured the crate slower where speed matters (two runs): writing
//! 1,000,000 rows into a flush buffer (the daemon's per-row path) 1.5-1.7x
//! the time of [`Row::write_line`] (it copies each field again and checks it
//! for quotes), and reading 30 days of 1,000,000 rows (the report's load,
//! on one core) 1.3-1.45x the time of [`read`], which finds spaces and
//! newlines in one vectorised pass per 1 MiB and checks UTF-8 once per chunk.

pub mod read;
pub mod row;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use tsusen_common::{classify::has_ports, proto};

pub use self::{
    read::{
        Counts, DayFile, Foreign, INCOMPLETE_LAST_LINE, NAMED_BAD_LINES, Reading, Warnings,
        list_day_files, read_day_file,
    },
    row::{ProtoColumn, Row},
};

/// The header line of every day file tsusen starts.
pub const HEADER: &str = "proto dst_port src_ip dst_ip timestamp";

/// The header of the original tsusen's first day files (its first hours, in
/// October 2015): our columns, with the last one named `sec`.
pub const ORIGINAL_FIRST_HEADER: &str = "proto dst_port src_ip dst_ip sec";

/// The header of the original tsusen's later 7-column day files.
pub const ORIGINAL_LATER_HEADER: &str = "proto dst_port dst_ip src_ip first_seen last_seen count";

/// The columns of a day file, named by its header line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// `proto dst_port src_ip dst_ip timestamp`: ours, and the original's
    /// second.
    #[default]
    Tsusen,
    /// `proto dst_port src_ip dst_ip sec`: the original's first; its rows are
    /// ours.
    OriginalFirst,
    /// `proto dst_port dst_ip src_ip first_seen last_seen count`: the
    /// original's later one, destination before source.
    OriginalLater,
}

impl Format {
    const ALL: [Format; 3] = [Format::Tsusen, Format::OriginalFirst, Format::OriginalLater];

    pub fn header(self) -> &'static str {
        match self {
            Format::Tsusen => HEADER,
            Format::OriginalFirst => ORIGINAL_FIRST_HEADER,
            Format::OriginalLater => ORIGINAL_LATER_HEADER,
        }
    }

    /// How warnings name it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Tsusen => "tsusen",
            Format::OriginalFirst => "original tsusen's first",
            Format::OriginalLater => "original tsusen",
        }
    }

    /// The format whose header `line` is.
    pub fn of_header(line: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.header() == line)
    }

    /// The format of a line without a header before it: the one it parses in
    /// (5 columns are read as ours: the original's first has the same rows).
    pub fn of_row(columns: &[&str]) -> Option<Format> {
        match columns.len() {
            5 => Some(Format::Tsusen),
            7 => Some(Format::OriginalLater),
            _ => None,
        }
        .filter(|f| f.parse(columns).is_ok())
    }

    /// Parse a line's columns.
    pub fn parse(self, columns: &[&str]) -> Result<Row> {
        match self {
            Format::Tsusen | Format::OriginalFirst => Row::parse_columns(columns),
            Format::OriginalLater => {
                let [proto, port, dst, src, first_seen, _last_seen, _count] = columns else {
                    bail!("expected 7 columns, found {}", columns.len());
                };
                // The original wrote a port column for every protocol; ours
                // has `-` where there are no ports.
                let no_ports = proto::from_column(proto).is_some_and(|p| !has_ports(p));
                let port = if no_ports { "-" } else { port };
                Row::parse_columns(&[proto, port, src, dst, first_seen])
            }
        }
    }
}

/// Seconds in a day.
pub const SECS_PER_DAY: i64 = 86_400;

/// The UTC day (days since 1970-01-01) of Unix seconds. Like the kernel's
/// `wall_ns / NS_PER_DAY` key, it wraps past 2149-06-06 (day 65535).
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "day numbers wrap like the kernel's u16 day key"
)]
pub fn day_of(secs: i64) -> u16 {
    secs.div_euclid(SECS_PER_DAY) as u16
}

/// Today's UTC day.
pub fn today() -> u16 {
    day_of(chrono::Utc::now().timestamp())
}

/// `YYYY-MM-DD` of a UTC day number.
pub fn day_name(day: u16) -> String {
    let date = chrono::DateTime::from_timestamp(i64::from(day) * SECS_PER_DAY, 0)
        .expect("a u16 day is in chrono's range")
        .date_naive();
    date.format("%Y-%m-%d").to_string()
}

/// The UTC day number of a `YYYY-MM-DD` name.
pub fn day_from_name(name: &str) -> Option<u16> {
    let date = chrono::NaiveDate::parse_from_str(name, "%Y-%m-%d").ok()?;
    let secs = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp();
    u16::try_from(secs.div_euclid(SECS_PER_DAY)).ok()
}

/// The day a `YYYY-MM-DD` name spelled the one way [`day_name`] writes it
/// names (`2026-1-5` is not a day name), so one day has one file.
pub fn day_of_name(name: &str) -> Option<u16> {
    day_from_name(name).filter(|&day| day_name(day) == name)
}

/// The path of a day's file in `dir`.
pub fn day_path(dir: &Path, day: u16) -> PathBuf {
    dir.join(format!("{}.csv", day_name(day)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_names() {
        assert_eq!(day_name(0), "1970-01-01");
        let day = day_from_name("2026-11-24").unwrap();
        assert_eq!(day_name(day), "2026-11-24");
        assert_eq!(day_from_name("2026-13-01"), None);
        assert_eq!(day_of_name("2026-11-24"), Some(day));
        assert_eq!(day_of_name("2026-11-4"), None, "not the canonical spelling");
        assert_eq!(
            day_path(Path::new("/d"), day),
            Path::new("/d/2026-11-24.csv")
        );
    }

    #[test]
    fn the_day_of_a_time() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(86_399), 0);
        assert_eq!(day_of(86_400), 1);
        assert_eq!(day_of(1_764_000_000), day_from_name("2025-11-24").unwrap());
    }

    #[test]
    fn each_format_is_named_by_its_header() {
        for format in Format::ALL {
            assert_eq!(Format::of_header(format.header()), Some(format));
        }
        assert_eq!(
            Format::of_header(ORIGINAL_FIRST_HEADER),
            Some(Format::OriginalFirst)
        );
        assert_eq!(Format::of_header("proto dst_port src_ip dst_ip"), None);
    }

    #[test]
    fn the_original_first_format_has_our_rows() {
        let columns = ["TCP", "80", "198.51.100.5", "192.0.2.63", "1446040782"];
        assert_eq!(
            Format::OriginalFirst.parse(&columns).unwrap(),
            Format::Tsusen.parse(&columns).unwrap()
        );
    }
}
