//! Store: the daily CSV files, `<out-dir>/YYYY-MM-DD.csv` (UTC).
//!
//! Each row is a tuple's first sighting on that day, written once: the store
//! keeps, per day, the set of tuples on disk or waiting to be written, loaded
//! from the day's file when the day is first touched (so a restart continues
//! where the last run stopped). A flush appends the waiting rows in one write
//! and fsyncs; a failed write is cut back to the last complete row and its
//! rows stay waiting for the next flush, so a file never ends in a partial row
//! and nothing is written twice.

pub mod row;

use std::{
    collections::{BTreeMap, HashSet},
    fs::{self, File, OpenOptions},
    io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use log::{info, warn};
use row::{HEADER, Row, day_name};
use tsusen_common::TupleKey;

/// What the store has done, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Rows appended to day files (and fsynced).
    pub rows_written: u64,
    /// Flushes of a day file that failed (disk full, I/O error).
    pub write_errors: u64,
    /// Rows dropped because more than `max_pending` were waiting.
    pub pending_dropped: u64,
    /// Torn last lines cut off at start (a crash mid-write).
    pub repaired_lines: u64,
}

/// One day's file and what is known about it.
struct Day {
    path: PathBuf,
    /// Tuples on disk or pending: a tuple is never written twice.
    tuples: HashSet<TupleKey, foldhash::fast::RandomState>,
    pending: Vec<Row>,
    /// Bytes of the file known to end in a complete row.
    good_len: u64,
}

pub struct DayStore {
    dir: PathBuf,
    days: BTreeMap<u16, Day>,
    max_pending: usize,
    pending: usize,
    pub stats: StoreStats,
}

/// The path of a day's file.
pub fn day_path(dir: &Path, day: u16) -> PathBuf {
    dir.join(format!("{}.csv", day_name(day)))
}

impl DayStore {
    /// Open (and create) the out-dir, checking that it is writable.
    pub fn open(dir: &Path, max_pending: usize) -> Result<Self> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create out-dir {}", dir.display()))?;
        let probe = dir.join(format!(".tsusen-write-test-{}", std::process::id()));
        if let Err(err) = File::create(&probe).and_then(|mut f| f.write_all(b"x")) {
            let _ = fs::remove_file(&probe);
            // The io::Error stays in the chain: `run` tells a refusal
            // (exit 2) from a full disk (exit 1) by its kind.
            return Err(err).with_context(|| format!("out-dir {} is not writable", dir.display()));
        }
        let _ = fs::remove_file(&probe);
        Ok(DayStore {
            dir: dir.to_path_buf(),
            days: BTreeMap::new(),
            max_pending,
            pending: 0,
            stats: StoreStats::default(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Rows waiting to be written.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Tuples known for `day` (on disk or pending).
    pub fn tuples(&mut self, day: u16) -> Result<usize> {
        Ok(self.day(day)?.tuples.len())
    }

    /// Make room for `additional` more tuples on `day`.
    pub fn reserve(&mut self, day: u16, additional: usize) -> Result<()> {
        let day = self.day(day)?;
        day.tuples.reserve(additional);
        day.pending.reserve(additional);
        Ok(())
    }

    /// Whether the row's tuple is already on disk or pending for its day.
    pub fn contains(&mut self, key: &TupleKey) -> Result<bool> {
        Ok(self.day(key.day)?.tuples.contains(key))
    }

    /// Queue a row unless its tuple is already recorded that day. Returns
    /// whether it was queued.
    pub fn record(&mut self, row: Row) -> Result<bool> {
        let key = row.key();
        let full = self.pending >= self.max_pending;
        let day = self.day(key.day)?;
        if full {
            if !day.tuples.contains(&key) {
                // Counted, and not remembered: if the tuple is seen again it
                // is written then.
                self.stats.pending_dropped += 1;
            }
            return Ok(false);
        }
        if !day.tuples.insert(key) {
            return Ok(false);
        }
        day.pending.push(row);
        self.pending += 1;
        Ok(true)
    }

    /// Append every pending row to its day file and fsync. Days whose write
    /// fails keep their rows pending; the first error is returned after all
    /// days were tried.
    pub fn flush(&mut self) -> Result<usize> {
        let mut written = 0;
        let mut first_error = None;
        for (&day, entry) in &mut self.days {
            if entry.pending.is_empty() {
                continue;
            }
            match append(entry) {
                Ok(rows) => {
                    written += rows;
                    self.pending -= rows;
                }
                Err(err) => {
                    self.stats.write_errors += 1;
                    let err = err.context(format!("writing {}", day_name(day)));
                    warn!(
                        "{err:#}; {} rows kept for the next flush",
                        entry.pending.len()
                    );
                    first_error.get_or_insert(err);
                }
            }
        }
        self.stats.rows_written += written as u64;
        match first_error {
            Some(err) => Err(err),
            None => Ok(written),
        }
    }

    /// Drop the in-memory state of days before `day` that have nothing
    /// pending; they are reloaded from their files if ever touched again.
    pub fn forget_days_before(&mut self, day: u16) {
        self.days
            .retain(|&d, entry| d >= day || !entry.pending.is_empty());
    }

    /// Forget what is known of the day files (SIGHUP), so each is read
    /// again from disk when next written: a file moved away (logrotate)
    /// starts afresh with its header. Rows waiting to be written stay.
    pub fn reopen(&mut self) {
        for (day, known) in std::mem::take(&mut self.days) {
            if known.pending.is_empty() {
                continue;
            }
            match load(&known.path, &mut self.stats) {
                Ok(mut fresh) => {
                    for row in known.pending {
                        if fresh.tuples.insert(row.key()) {
                            fresh.pending.push(row);
                        } else {
                            // Already in the file someone put there.
                            self.pending -= 1;
                        }
                    }
                    self.days.insert(day, fresh);
                }
                Err(err) => {
                    warn!("{err:#}; reading it again at the next flush");
                    self.days.insert(day, known);
                }
            }
        }
    }

    fn day(&mut self, day: u16) -> Result<&mut Day> {
        use std::collections::btree_map::Entry;
        match self.days.entry(day) {
            Entry::Occupied(entry) => Ok(entry.into_mut()),
            Entry::Vacant(entry) => {
                let loaded = load(&day_path(&self.dir, day), &mut self.stats)?;
                Ok(entry.insert(loaded))
            }
        }
    }
}

/// Load a day file's tuples, cutting off a torn last line.
fn load(path: &Path, stats: &mut StoreStats) -> Result<Day> {
    let mut day = Day {
        path: path.to_path_buf(),
        tuples: HashSet::default(),
        pending: Vec::new(),
        good_len: 0,
    };
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(day),
        Err(err) => return Err(err).with_context(|| format!("opening {}", path.display())),
    };
    let len = file.metadata()?.len();
    let good_len = complete_rows_len(&mut file, len)?;
    if good_len < len {
        warn!(
            "{}: cut off a torn last line ({} bytes) left by a crash; its tuple is written again",
            path.display(),
            len - good_len
        );
        file.set_len(good_len)?;
        file.sync_data()?;
        stats.repaired_lines += 1;
    }
    file.seek(SeekFrom::Start(0))?;
    for (number, line) in BufReader::new(file.take(good_len)).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if number == 0 && line == HEADER {
            continue;
        }
        match line.parse::<Row>() {
            Ok(row) => {
                day.tuples.insert(row.key());
            }
            Err(err) => warn!("{}:{}: skipping line: {err:#}", path.display(), number + 1),
        }
    }
    day.good_len = good_len;
    Ok(day)
}

/// Length of the file up to and including its last newline.
fn complete_rows_len(file: &mut File, len: u64) -> Result<u64> {
    let mut end = len;
    let mut buf = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(pos) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + pos as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Append a day's pending rows (with the header if the file is new) in one
/// write, fsync, and cut back to the last complete row on failure.
fn append(day: &mut Day) -> Result<usize> {
    // By time, then by the row itself: the file's order does not depend on
    // the order a drain happened to read the kernel map in. Rows from a
    // capture come in time order already, where the stable sort is linear.
    day.pending.sort_by_key(|row| row.timestamp);
    for same_second in day.pending.chunk_by_mut(|a, b| a.timestamp == b.timestamp) {
        same_second.sort_unstable();
    }
    let mut buf = Vec::with_capacity(day.pending.len() * 48 + HEADER.len() + 1);
    if day.good_len == 0 {
        buf.extend_from_slice(HEADER.as_bytes());
        buf.push(b'\n');
    }
    for row in &day.pending {
        row.write_line(&mut buf);
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&day.path)
        .with_context(|| format!("opening {}", day.path.display()))?;
    let result = (|| {
        // A failed earlier write may have left part of a row behind.
        if file.metadata()?.len() != day.good_len {
            file.set_len(day.good_len)?;
        }
        file.write_all(&buf)?;
        file.sync_data()
    })();
    match result {
        Ok(()) => {
            day.good_len += buf.len() as u64;
            let rows = day.pending.len();
            // Give the buffer back: after a burst it can be large.
            day.pending = Vec::new();
            if day.good_len == buf.len() as u64 {
                info!("started {}", day.path.display());
            }
            Ok(rows)
        }
        Err(err) => {
            // Never leave a partial row: cut back to what was complete.
            let _ = file.set_len(day.good_len).and_then(|()| file.sync_data());
            Err(err.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(text: &str) -> Row {
        text.parse().unwrap()
    }

    fn tmp() -> PathBuf {
        let dir = std::env::temp_dir().join(crate::testing::unique_name("store"));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    const T0: i64 = 1_764_000_000; // 2025-11-24 16:00:00 UTC

    #[test]
    fn writes_header_then_rows_once_per_day_sorted_by_time() {
        let dir = tmp();
        let mut store = DayStore::open(&dir, 1000).unwrap();
        assert!(
            store
                .record(row(&format!("TCP 22 198.51.100.1 192.0.2.1 {}", T0 + 5)))
                .unwrap()
        );
        assert!(
            store
                .record(row(&format!("UDP 53 198.51.100.1 192.0.2.1 {T0}")))
                .unwrap()
        );
        // Same tuple later that day: not a new row.
        assert!(
            !store
                .record(row(&format!("TCP 22 198.51.100.1 192.0.2.1 {}", T0 + 60)))
                .unwrap()
        );
        // Same tuple the next day: a row in the next day's file.
        assert!(
            store
                .record(row(&format!(
                    "TCP 22 198.51.100.1 192.0.2.1 {}",
                    T0 + 86_400
                )))
                .unwrap()
        );
        assert_eq!(store.flush().unwrap(), 3);
        let day1 = fs::read_to_string(dir.join("2025-11-24.csv")).unwrap();
        assert_eq!(
            day1,
            format!(
                "{HEADER}\nUDP 53 198.51.100.1 192.0.2.1 {T0}\nTCP 22 198.51.100.1 192.0.2.1 {}\n",
                T0 + 5
            )
        );
        let day2 = fs::read_to_string(dir.join("2025-11-25.csv")).unwrap();
        assert_eq!(day2.lines().count(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_restart_continues_the_file_without_duplicates() {
        let dir = tmp();
        let mut store = DayStore::open(&dir, 1000).unwrap();
        store
            .record(row(&format!("TCP 22 198.51.100.1 192.0.2.1 {T0}")))
            .unwrap();
        store.flush().unwrap();
        drop(store);
        let mut store = DayStore::open(&dir, 1000).unwrap();
        assert!(
            !store
                .record(row(&format!("TCP 22 198.51.100.1 192.0.2.1 {}", T0 + 9)))
                .unwrap()
        );
        assert!(
            store
                .record(row(&format!("TCP 23 198.51.100.1 192.0.2.1 {}", T0 + 9)))
                .unwrap()
        );
        store.flush().unwrap();
        let text = fs::read_to_string(dir.join("2025-11-24.csv")).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert_eq!(text.matches(HEADER).count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_cut_and_its_tuple_written_again() {
        let dir = tmp();
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("2025-11-24.csv");
        fs::write(
            &path,
            format!("{HEADER}\nTCP 22 198.51.100.1 192.0.2.1 {T0}\nTCP 23 198.51.1"),
        )
        .unwrap();
        let mut store = DayStore::open(&dir, 1000).unwrap();
        assert!(
            !store
                .record(row(&format!("TCP 22 198.51.100.1 192.0.2.1 {T0}")))
                .unwrap()
        );
        assert!(
            store
                .record(row(&format!("TCP 23 198.51.100.1 192.0.2.1 {T0}")))
                .unwrap()
        );
        store.flush().unwrap();
        assert_eq!(store.stats.repaired_lines, 1);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!(
                "{HEADER}\nTCP 22 198.51.100.1 192.0.2.1 {T0}\nTCP 23 198.51.100.1 192.0.2.1 {T0}\n"
            )
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn foreign_lines_are_skipped_not_fatal() {
        let dir = tmp();
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("2025-11-24.csv"),
            format!("{HEADER}\nnot a row\nTCP 22 198.51.100.1 192.0.2.1 {T0}\n"),
        )
        .unwrap();
        let mut store = DayStore::open(&dir, 1000).unwrap();
        assert!(
            !store
                .record(row(&format!("TCP 22 198.51.100.1 192.0.2.1 {T0}")))
                .unwrap()
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn too_many_pending_rows_are_counted_not_hidden() {
        let dir = tmp();
        let mut store = DayStore::open(&dir, 2).unwrap();
        for port in 1..=3 {
            store
                .record(row(&format!("TCP {port} 198.51.100.1 192.0.2.1 {T0}")))
                .unwrap();
        }
        assert_eq!(store.pending(), 2);
        assert_eq!(store.stats.pending_dropped, 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_out_dir_is_refused_up_front() {
        let Err(err) = DayStore::open(Path::new("/proc/tsusen-nope"), 10) else {
            panic!("opened an out-dir under /proc");
        };
        assert!(
            format!("{err:#}").contains("out-dir /proc/tsusen-nope"),
            "{err:#}"
        );
    }

    #[test]
    fn after_reopen_a_file_moved_away_starts_afresh_and_pending_rows_stay() {
        let dir = tmp();
        let mut store = DayStore::open(&dir, 1000).unwrap();
        let path = dir.join("2025-11-24.csv");
        store
            .record(row(&format!("TCP 22 198.51.100.1 192.0.2.1 {T0}")))
            .unwrap();
        store.flush().unwrap();
        // Waiting when the file is rotated: written to the new file.
        store
            .record(row(&format!("TCP 23 198.51.100.1 192.0.2.1 {}", T0 + 1)))
            .unwrap();
        fs::rename(&path, dir.join("2025-11-24.csv.1")).unwrap();
        store.reopen();
        assert_eq!(store.pending(), 1);
        store
            .record(row(&format!("TCP 24 198.51.100.1 192.0.2.1 {}", T0 + 2)))
            .unwrap();
        assert_eq!(store.flush().unwrap(), 2);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!(
                "{HEADER}\nTCP 23 198.51.100.1 192.0.2.1 {}\nTCP 24 198.51.100.1 192.0.2.1 {}\n",
                T0 + 1,
                T0 + 2
            )
        );
        // A reopen of a file left in place changes nothing: no duplicates.
        store.reopen();
        assert!(
            !store
                .record(row(&format!("TCP 24 198.51.100.1 192.0.2.1 {}", T0 + 3)))
                .unwrap()
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
