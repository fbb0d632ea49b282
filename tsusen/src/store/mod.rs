//! Store: the daily CSV files, `<out-dir>/YYYY-MM-DD.csv` (UTC).
//!
//! Each row is a tuple's first sighting on that day, written once: the store
//! keeps, per day, the set of tuples on disk or waiting to be written, loaded
//! from the day's file when the day is first touched (so a restart continues
//! where the last run stopped). A flush appends the waiting rows (written a
//! megabyte at a time, under one lock) and fsyncs once.
//!
//! The file is shared with whoever else writes the out-dir (another tsusen,
//! a replay, a person moving files): before each append the store checks that
//! the file is still the one it knows and as long as it left it. Rows another
//! writer added are read and not written again; a file moved or deleted is
//! started anew with a header; bytes it did not write are never cut. A file
//! that cannot be read (a directory in its place, no permission) blocks only
//! its own day: its rows are not queued, so the drain leaves their entries in
//! the kernel's map until the file can be used. Bad lines are skipped and
//! counted. A file is appended to in its own format (ours or either of the
//! original tsusen's, see [`crate::dayfile::Format`]).

mod file;
mod tuples;

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{self, Read as _, Seek as _, SeekFrom, Write as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, anyhow, bail};
use log::{info, warn};
use tsusen_common::TupleKey;

use tuples::TupleSet;

use crate::dayfile::{Foreign, Format, Reading, Row, Warnings, day_path};

/// What the store has done, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Rows appended to day files (and fsynced).
    pub rows_written: u64,
    /// Flushes of a day file that failed (disk full, I/O error).
    pub write_errors: u64,
    /// Rows not held in memory because `max_pending` rows were already
    /// waiting for a failing out-dir; their entries stay in the kernel's map.
    pub pending_dropped: u64,
    /// Torn last lines cut off at start (a crash mid-write).
    pub repaired_lines: u64,
    /// Lines of day files skipped as not a row (foreign text, not UTF-8).
    pub bad_lines: u64,
}

/// Where a drained entry's tuple stands (see [`DayStore::claim`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Not known that day: claimed now. Its row must be queued
    /// ([`DayStore::queue`]) or the claim given back ([`DayStore::unclaim`])
    /// before the next flush.
    New,
    /// Its row is on disk: the entry may leave the kernel's map.
    Written,
    /// Its row is not on disk and is not queued now (its day's file cannot
    /// be read, it waits after a failed write, or `--max-pending` rows wait
    /// for a failing disk): the entry stays in the kernel's map.
    Held,
}

/// One day's file and what is known about it.
struct Day {
    path: PathBuf,
    /// Tuples on disk (in this file, or one moved away) or pending: a tuple
    /// is never written twice.
    tuples: TupleSet,
    pending: Vec<Row>,
    /// After a failed write, the pending tuples (which are not on disk).
    unwritten: TupleSet,
    /// The file as this store last read or wrote it; `None` before it exists.
    seen: Option<Seen>,
    /// The file's format; `None` until a header or row says.
    format: Option<Format>,
    /// Why the file cannot be read: then rows of this day are not queued.
    blocked: Option<Blocked>,
    /// Why the last write failed, to warn once per new reason.
    failing: Option<String>,
}

/// What this store left in a day file.
#[derive(Clone, Copy)]
struct Seen {
    id: file::Identity,
    len: u64,
    lines: u64,
}

struct Blocked {
    reason: String,
    /// The flush generation it was found in: retried in the next one.
    generation: u64,
}

impl Day {
    fn new(path: PathBuf) -> Self {
        Day {
            path,
            tuples: TupleSet::default(),
            pending: Vec::new(),
            unwritten: TupleSet::default(),
            seen: None,
            format: None,
            blocked: None,
            failing: None,
        }
    }
}

pub struct DayStore {
    dir: PathBuf,
    days: BTreeMap<u16, Day>,
    max_pending: usize,
    pending: usize,
    /// Whether the last flush failed to write some day: only then does
    /// `max_pending` limit what is queued.
    refusing: bool,
    /// Flushes so far: a blocked day is retried once per flush.
    generation: u64,
    pub stats: StoreStats,
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
            refusing: false,
            generation: 0,
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
        Ok(self.day(day).tuples.len())
    }

    /// Make room for `additional` more tuples on `day`.
    pub fn reserve_tuples(&mut self, day: u16, additional: usize) {
        let day = self.day(day);
        if day.blocked.is_none() {
            day.tuples.reserve(additional);
        }
    }

    /// Make room for `additional` more rows to queue on `day`.
    pub fn reserve_rows(&mut self, day: u16, additional: usize) {
        let day = self.day(day);
        if day.blocked.is_none() {
            day.pending.reserve(additional);
        }
    }

    /// Whether the row's tuple is already on disk or pending for its day; an
    /// error when the day's file cannot be read.
    pub fn contains(&mut self, key: &TupleKey) -> Result<bool> {
        let day = self.day(key.day);
        if let Some(blocked) = &day.blocked {
            bail!("{}: {}", day.path.display(), blocked.reason);
        }
        Ok(day.tuples.contains(key))
    }

    /// Queue a row unless its tuple is already recorded that day. Returns
    /// whether it was queued. Not queued either: a row of a day whose file
    /// cannot be read, and a row beyond `max_pending` while writes fail (see
    /// [`DayStore::is_written`]).
    pub fn record(&mut self, row: Row) -> Result<bool> {
        self.record_keyed(row.key(), row)
    }

    /// [`DayStore::record`] for a row whose tuple key is at hand (a drain's
    /// entry): the key is not made again from the row.
    pub fn record_keyed(&mut self, key: TupleKey, row: Row) -> Result<bool> {
        let capped = self.refusing && self.pending >= self.max_pending;
        let day = self.day(key.day);
        if day.blocked.is_some() {
            return Ok(false);
        }
        if capped {
            if !day.tuples.contains(&key) {
                // Not remembered: when the tuple is drained again it is
                // queued then.
                self.stats.pending_dropped += 1;
            }
            return Ok(false);
        }
        if !day.tuples.insert(&key) {
            return Ok(false);
        }
        day.pending.push(row);
        self.pending += 1;
        Ok(true)
    }

    /// A drained entry's tuple, in one lookup of its day's set: a new one is
    /// claimed (and counts as pending), so the drain can apply its row
    /// budget to the rows it would write before queuing them.
    pub fn claim(&mut self, key: &TupleKey) -> Claim {
        let capped = self.refusing && self.pending >= self.max_pending;
        let day = self.day(key.day);
        if day.blocked.is_some() {
            return Claim::Held;
        }
        let known = if capped {
            day.tuples.contains(key)
        } else {
            !day.tuples.insert(key)
        };
        if !known {
            if capped {
                // Not remembered: when the tuple is drained again it is
                // queued then.
                self.stats.pending_dropped += 1;
                return Claim::Held;
            }
            self.pending += 1;
            return Claim::New;
        }
        if day.unwritten.is_empty() || !day.unwritten.contains(key) {
            Claim::Written
        } else {
            Claim::Held
        }
    }

    /// Queue the row of a tuple [`DayStore::claim`] found new.
    pub fn queue(&mut self, key: &TupleKey, row: Row) {
        let day = self.days.get_mut(&key.day).expect("claimed before");
        day.pending.push(row);
    }

    /// Give back the claim on a tuple [`DayStore::claim`] found new, whose
    /// row is not queued after all (beyond the drain's row budget).
    pub fn unclaim(&mut self, key: &TupleKey) {
        let day = self.days.get_mut(&key.day).expect("claimed before");
        if day.tuples.remove(key) {
            self.pending -= 1;
        }
    }

    /// Whether every row queued for `day` is on disk (after a flush).
    pub fn day_written(&self, day: u16) -> bool {
        self.days
            .get(&day)
            .is_some_and(|day| day.blocked.is_none() && day.pending.is_empty())
    }

    /// Whether the tuple's row is on disk (written by this flush, an earlier
    /// one, or another writer): only then may its kernel entry go.
    pub fn is_written(&self, key: &TupleKey) -> bool {
        self.days.get(&key.day).is_some_and(|day| {
            day.blocked.is_none()
                && day.tuples.contains(key)
                && (day.unwritten.is_empty() || !day.unwritten.contains(key))
        })
    }

    /// Days whose file cannot be read or written right now.
    pub fn blocked_days(&self) -> usize {
        self.days
            .values()
            .filter(|day| day.blocked.is_some() || day.failing.is_some())
            .count()
    }

    /// What is wrong with each blocked day, for the last words at shutdown.
    pub fn problems(&self) -> Vec<String> {
        self.days
            .values()
            .filter_map(|day| {
                let why = day
                    .blocked
                    .as_ref()
                    .map(|b| &b.reason)
                    .or(day.failing.as_ref())?;
                Some(format!("{}: {why}", day.path.display()))
            })
            .collect()
    }

    /// Append every pending row to its day file and fsync. Days whose write
    /// fails keep their rows pending; the first error is returned after all
    /// days were tried.
    pub fn flush(&mut self) -> Result<usize> {
        self.generation += 1;
        let mut written = 0;
        let mut first_error = None;
        for entry in self.days.values_mut() {
            if entry.pending.is_empty() {
                continue;
            }
            match append(entry, &mut self.stats) {
                Ok(rows) => {
                    written += rows;
                    entry.unwritten = TupleSet::default();
                    if entry.failing.take().is_some() {
                        info!("{}: written again", entry.path.display());
                    }
                }
                Err(err) => {
                    self.stats.write_errors += 1;
                    entry.unwritten = entry.pending.iter().map(Row::key).collect();
                    let why = format!("{err:#}");
                    if entry.failing.as_ref() != Some(&why) {
                        warn!(
                            "{}: cannot write: {why}; its rows wait (in memory up to \
                             --max-pending, and in the kernel's map) for a later flush",
                            entry.path.display()
                        );
                    }
                    first_error.get_or_insert_with(|| {
                        anyhow!("cannot write {}: {why}", entry.path.display())
                    });
                    entry.failing = Some(why);
                }
            }
        }
        // Rows another writer had written leave the queue too.
        self.pending = self.days.values().map(|d| d.pending.len()).sum();
        self.refusing = first_error.is_some();
        self.stats.rows_written += written as u64;
        match first_error {
            Some(err) => Err(err),
            None => Ok(written),
        }
    }

    /// Drop the in-memory state of days before `day` that have nothing
    /// pending; they are reloaded from their files if ever touched again.
    /// Blocked days stay, so their warning is not repeated every flush.
    pub fn forget_days_before(&mut self, day: u16) {
        self.days
            .retain(|&d, entry| d >= day || !entry.pending.is_empty() || entry.blocked.is_some());
    }

    /// Forget what is cached about day files (for SIGHUP, after files were
    /// moved or fixed): days with nothing pending are reloaded, and blocked
    /// days retried, when next touched.
    pub fn reopen(&mut self) {
        self.days.retain(|_, entry| !entry.pending.is_empty());
        self.generation += 1;
    }

    /// The day's state, loaded from its file on first touch. A day whose
    /// file cannot be read is blocked, and tried again after each flush.
    fn day(&mut self, day: u16) -> &mut Day {
        let retry = match self.days.get(&day) {
            None => true,
            Some(entry) => entry
                .blocked
                .as_ref()
                .is_some_and(|b| b.generation < self.generation),
        };
        if retry {
            let path = day_path(&self.dir, day);
            let was = self.days.remove(&day).and_then(|entry| entry.blocked);
            let entry = match load(path.clone(), &mut self.stats) {
                Ok(entry) => {
                    if was.is_some() {
                        info!("{}: readable again", path.display());
                    }
                    entry
                }
                Err(err) => {
                    let reason = format!("cannot read it: {err}");
                    if was.is_none_or(|b| b.reason != reason) {
                        warn!(
                            "{}: {reason}; its entries stay in the kernel's map until it \
                             can be read (other days go on)",
                            path.display()
                        );
                    }
                    let mut entry = Day::new(path);
                    entry.blocked = Some(Blocked {
                        reason,
                        generation: self.generation,
                    });
                    entry
                }
            };
            self.days.insert(day, entry);
        }
        self.days.get_mut(&day).expect("inserted above")
    }
}

/// Load a day file's tuples, cutting off a torn last line.
fn load(path: PathBuf, stats: &mut StoreStats) -> io::Result<Day> {
    let mut day = Day::new(path);
    let Some(mut locked) = file::open(&day.path, false)? else {
        return Ok(day);
    };
    let mut len = locked.len;
    let good = file::complete_len(&mut locked.file, 0, len)?;
    if good < len {
        // Every tsusen writes under the lock we hold: this is a row whose
        // writer died mid-write. Its tuple is written again.
        match file::cut(&day.path, &locked, good) {
            Ok(()) => {
                warn!(
                    "{}: cut off a torn last line ({} bytes) left by a crash; its tuple is \
                     written again",
                    day.path.display(),
                    len - good
                );
                stats.repaired_lines += 1;
                len = good;
            }
            Err(err) => warn!(
                "{}: cannot cut off a torn last line: {err}",
                day.path.display()
            ),
        }
    }
    let tuples = &mut day.tuples;
    let lines = read_rows(
        &day.path,
        &mut locked.file,
        (0, 0),
        good,
        &mut day.format,
        stats,
        |key| {
            tuples.insert(&key);
        },
    )?;
    day.seen = Some(Seen {
        id: locked.id,
        len,
        lines,
    });
    Ok(day)
}

/// Read the rows of `start.0..to` (line `start.1 + 1` on) with the day-file
/// reader, calling `row` for each; a header sets `format`, bad lines are
/// skipped, counted and logged. Returns the number of the last line read.
fn read_rows(
    path: &Path,
    file: &mut File,
    start: (u64, u64),
    to: u64,
    format: &mut Option<Format>,
    stats: &mut StoreStats,
    mut row: impl FnMut(TupleKey),
) -> io::Result<u64> {
    let (from, line_no) = start;
    file.seek(SeekFrom::Start(from))?;
    let mut reading = Reading {
        path,
        format: *format,
        line_no,
        foreign: Foreign::SkipLine,
    };
    let mut warnings = Warnings::default();
    let counts = reading.read((&*file).take(to - from), &mut warnings, |r| row(r.key()));
    // What was read before an error is logged too.
    warnings.log();
    let counts = counts?;
    *format = reading.format;
    stats.bad_lines += counts.bad_lines;
    Ok(reading.line_no)
}

/// Append a day's pending rows (with the header if the file is new), a
/// megabyte per write, and fsync once, after reading what others wrote there
/// since; a failed write cuts back what this append wrote. Returns the
/// rows written.
fn append(day: &mut Day, stats: &mut StoreStats) -> Result<usize> {
    let mut locked = file::open(&day.path, true)?.expect("opened to append, or created");
    let len = locked.len;
    // What of the file has this store not read or written?
    let unread = match day.seen {
        Some(seen) if seen.id == locked.id && len == seen.len => None,
        Some(seen) if seen.id == locked.id && len > seen.len => Some((seen.len, seen.lines)),
        Some(seen) if seen.id == locked.id => {
            warn!(
                "{}: cut from {} to {len} bytes by another program; continuing after what is \
                 left (tuples written before are not written again)",
                day.path.display(),
                seen.len
            );
            Some((0, 0))
        }
        Some(_) => {
            warn!(
                "{}: moved, deleted or replaced; continuing in the file now there \
                 (tuples written before are not written again)",
                day.path.display()
            );
            Some((0, 0))
        }
        None if len == 0 => None,
        None => Some((0, 0)),
    };
    let mut lines = day.seen.map_or(0, |seen| seen.lines);
    if let Some(start) = unread {
        if start.0 == 0 {
            day.format = None;
        }
        let good = file::complete_len(&mut locked.file, start.0, len)?;
        // Only pending rows can turn out to be on disk already.
        let queued: TupleSet = if good > start.0 {
            day.pending.iter().map(Row::key).collect::<TupleSet>()
        } else {
            TupleSet::default()
        };
        let mut found = TupleSet::default();
        let tuples = &mut day.tuples;
        lines = read_rows(
            &day.path,
            &mut locked.file,
            start,
            good,
            &mut day.format,
            stats,
            |key| {
                if !tuples.insert(&key) && queued.contains(&key) {
                    found.insert(&key);
                }
            },
        )?;
        if !found.is_empty() {
            // Another writer wrote them first.
            day.pending.retain(|row| !found.contains(&row.key()));
        }
        day.seen = Some(Seen {
            id: locked.id,
            len,
            lines,
        });
    }
    if day.pending.is_empty() {
        return Ok(0);
    }

    // By time, then by the row itself: the file's order does not depend on
    // the order a drain happened to read the kernel map in. Rows from a
    // capture come in time order already: only each second is sorted. A
    // drain's come in the map's order: one in-place sort (no scratch buffer
    // the size of the drain, which would stay resident).
    if day.pending.is_sorted_by_key(|row| row.timestamp) {
        for same_second in day.pending.chunk_by_mut(|a, b| a.timestamp == b.timestamp) {
            same_second.sort_unstable();
        }
    } else {
        day.pending
            .sort_unstable_by(|a, b| a.timestamp.cmp(&b.timestamp).then_with(|| a.cmp(b)));
    }
    let format = *day.format.get_or_insert_default();
    let mut buf = Vec::with_capacity((day.pending.len() * 48 + 64).min(WRITE_PIECE + 256));
    if len == 0 {
        buf.extend_from_slice(format.header().as_bytes());
        buf.push(b'\n');
        lines += 1;
    } else if !ends_in_newline(&mut locked.file, len)? {
        // Another writer's unfinished line: not ours to cut; end it, so it
        // is one bad line and our rows stay whole.
        buf.push(b'\n');
        lines += 1;
    }
    // Written a piece at a time from one small buffer, which stays in the
    // cache (one buffer of the whole append would be as large as the rows).
    let mut appended = 0;
    let mut result = Ok(());
    for row in &day.pending {
        row.write_line_as(format, &mut buf);
        if buf.len() >= WRITE_PIECE {
            result = locked.file.write_all(&buf);
            if result.is_err() {
                break;
            }
            appended += buf.len() as u64;
            buf.clear();
        }
    }
    if result.is_ok() {
        result = locked.file.write_all(&buf);
        appended += buf.len() as u64;
    }
    let result = result.and_then(|()| locked.file.sync_data());
    if let Err(err) = result {
        // Cut back our own partial write, and only that: under the lock, the
        // bytes past `len` of this file are ours.
        if locked.file.metadata().is_ok_and(|m| m.len() > len) {
            let _ = locked
                .file
                .set_len(len)
                .and_then(|()| locked.file.sync_data());
        }
        return Err(err.into());
    }
    let rows = day.pending.len();
    day.seen = Some(Seen {
        id: locked.id,
        len: len + appended,
        lines: lines + rows as u64,
    });
    // Give the buffer back: after a burst it can be large.
    day.pending = Vec::new();
    if len == 0 {
        info!("started {}", day.path.display());
    }
    Ok(rows)
}

/// Bytes of rows formatted before each write of an append.
const WRITE_PIECE: usize = 1 << 20;

fn ends_in_newline(file: &mut File, len: u64) -> io::Result<bool> {
    let mut last = [0u8];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

#[cfg(test)]
mod tests;
