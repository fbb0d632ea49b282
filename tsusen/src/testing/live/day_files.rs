//! The day files a daemon wrote, read strictly (every rule of the format
//! checked, panicking with file and line), and polled while it writes.

use std::{
    collections::{BTreeMap, HashSet},
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

/// The header line of every day file.
pub use crate::dayfile::HEADER;

/// A parsed day-file row.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DayRow {
    pub proto: String,
    /// `None` for `-` (protocols without ports).
    pub port: Option<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub timestamp: i64,
}

/// (proto, port, src, dst): what "at most once per day file" is about.
pub type Tuple = (String, Option<u16>, IpAddr, IpAddr);

impl DayRow {
    pub fn tuple(&self) -> Tuple {
        (self.proto.clone(), self.port, self.src, self.dst)
    }
}

/// A tuple as the test expects it.
pub fn tuple(proto: &str, port: Option<u16>, src: &str, dst: &str) -> Tuple {
    (
        proto.to_owned(),
        port,
        src.parse().unwrap(),
        dst.parse().unwrap(),
    )
}

/// Unix seconds of 00:00 UTC on `date` (YYYY-MM-DD).
pub fn day_start(date: &str) -> i64 {
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .unwrap_or_else(|e| panic!("{date}: {e}"))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp()
}

/// Read one day file strictly: the header first, every line complete
/// (the file ends with '\n') and well formed, every timestamp inside the
/// file's UTC day, no tuple twice. Panics naming the file and line.
pub fn read_day_file(path: &Path) -> Vec<DayRow> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path.display();
    assert!(text.ends_with('\n'), "{name}: does not end with a newline");
    let date = path.file_stem().unwrap().to_str().unwrap();
    let start = day_start(date);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(HEADER), "{name}: header");
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in lines.enumerate() {
        let row = parse_row(line).unwrap_or_else(|| panic!("{name}:{}: bad row {line:?}", i + 2));
        assert!(
            (start..start + 86_400).contains(&row.timestamp),
            "{name}:{}: timestamp {} outside {date}",
            i + 2,
            row.timestamp
        );
        assert!(
            seen.insert(row.tuple()),
            "{name}:{}: tuple twice: {line}",
            i + 2
        );
        rows.push(row);
    }
    rows
}

fn parse_row(line: &str) -> Option<DayRow> {
    let fields: Vec<&str> = line.split(' ').collect();
    let [proto, port, src, dst, timestamp] = fields[..] else {
        return None;
    };
    if proto.is_empty() || !proto.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let port = match port {
        "-" => None,
        p => Some(p.parse().ok()?),
    };
    Some(DayRow {
        proto: proto.to_owned(),
        port,
        src: src.parse().ok()?,
        dst: dst.parse().ok()?,
        timestamp: timestamp.parse().ok()?,
    })
}

/// The day files (`YYYY-MM-DD.csv`) in `dir`, by date.
pub fn day_files(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut files = BTreeMap::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(date) = name.strip_suffix(".csv")
            && chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok()
        {
            files.insert(date.to_owned(), entry.path());
        }
    }
    files
}

/// Every row of every day file in `dir`, each file read strictly.
pub fn read_all_rows(dir: &Path) -> BTreeMap<String, Vec<DayRow>> {
    day_files(dir)
        .into_iter()
        .map(|(date, path)| (date, read_day_file(&path)))
        .collect()
}

/// All rows of all days in one list.
pub fn all_rows(dir: &Path) -> Vec<DayRow> {
    read_all_rows(dir).into_values().flatten().collect()
}

/// Complete data lines in the day files of `dir` right now (cheap, lenient:
/// for polling while the daemon writes).
pub fn count_rows(dir: &Path) -> usize {
    day_files(dir)
        .values()
        .map(|path| {
            let bytes = fs::read(path).unwrap_or_default();
            let lines = memchr::memchr_iter(b'\n', &bytes).count();
            let header = usize::from(bytes.starts_with(HEADER.as_bytes()));
            lines.saturating_sub(header)
        })
        .sum()
}

/// Poll until the day files hold at least `n` rows or `timeout` passes;
/// returns the last count.
pub fn wait_rows(dir: &Path, n: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let count = count_rows(dir);
        if count >= n || Instant::now() >= deadline {
            return count;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Compare the rows' tuples to `expected`; a short, readable difference.
#[expect(
    clippy::implicit_hasher,
    reason = "the tests' expected sets use the default hasher"
)]
pub fn assert_tuples(rows: &[DayRow], expected: &HashSet<Tuple>, what: &str) {
    let got: HashSet<Tuple> = rows.iter().map(DayRow::tuple).collect();
    assert_eq!(got.len(), rows.len(), "{what}: a tuple appears twice");
    let missing: Vec<_> = expected.difference(&got).take(10).collect();
    let extra: Vec<_> = got.difference(expected).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} rows, {} expected; {} missing (first: {missing:?}); {} unexpected (first: {extra:?})",
        rows.len(),
        expected.len(),
        expected.difference(&got).count(),
        got.difference(expected).count(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse() {
        let row = parse_row("ICMP - 198.51.100.3 192.0.2.46 1446042324").unwrap();
        assert_eq!(row.port, None);
        assert_eq!(
            parse_row("TCP 8080 198.51.100.40 192.0.2.46 1446042553")
                .unwrap()
                .port,
            Some(8080)
        );
        assert!(parse_row("TCP 8080 198.51.100.40 192.0.2.46").is_none());
        assert!(parse_row("TCP 8080 198.51.100.40 192.0.2.46 14460425").is_some());
        assert!(parse_row("TCP 80800 198.51.100.40 192.0.2.46 1").is_none());
        assert_eq!(day_start("2026-11-25"), 1_795_564_800);
    }
}
