//! Drain: the kernel's first-seen map, turned into rows in the day store.
//!
//! Each drain reads every entry (in batches, into one vector sized for a
//! full map), looks each tuple up once in its day's set, queues a row for
//! each tuple not yet written that day, flushes (one fsync per day file) and
//! only then removes from the map the entries whose rows are on disk. An entry whose row is not
//! (its day's file cannot be read or written, or `--max-pending` rows already
//! wait for a failing disk) stays in the map, and the next drain tries again;
//! a crash at any point leaves the entries in the (pinned) map. Rows are
//! neither lost nor written twice. Entries carry their UTC day in the key, so
//! at rollover the old day's entries go to the old day's file and leave the
//! map like any others; a day that cannot be written holds back only its own.
//!
//! Under a flood of new tuples (a SYN flood from spoofed sources makes every
//! packet one) a drain writes at most [`Drain::row_budget`] rows (see
//! [`row_budget`]: a rate per drain for the daemon's CPU, a day's total for
//! its memory). The rest stay in the kernel's map (`deferred`): the next
//! drains write them once the flood ebbs, and while it lasts the map's LRU
//! evicts the oldest, counted as `evicted`. Rows of the sources with the most
//! tuples in the map go first, so a real scan (one source, many tuples) wins
//! over spoofed singletons. The budget counts rows to write: entries whose
//! rows are on disk already (a flood that loops over the same tuples brings
//! them back after a drain removed them) take only what it leaves over, and
//! leave the map without a row; any beyond that stay for a later drain
//! (`lingering`), so they never starve new rows and a drain's deletes stay
//! within the budget too.

mod batch;

use anyhow::{Context as _, Result};
use tsusen_common::{FirstSeen, Stat, TupleKey};

use crate::{
    capture::sensor::Sensor,
    dayfile::Row,
    store::{Claim, DayStore},
};

/// What one drain did.
#[derive(Debug, Default)]
pub struct Drained {
    /// Entries read from the map.
    pub entries: usize,
    /// Rows written to day files by this drain's flush.
    pub rows: usize,
    /// Entries removed from the map: their rows are on disk.
    pub removed: usize,
    /// Entries left in the map because their rows are not on disk.
    pub kept: usize,
    /// Entries left in the map, unwritten, because the drain reached its
    /// row budget (a flood): the next drains write them unless the map
    /// evicts them first (`evicted`).
    pub deferred: usize,
    /// Entries left in the map whose rows were on disk before this drain
    /// (a flood put their tuples back after a drain removed them), beyond
    /// what the row budget left for removing them: a later drain removes
    /// them.
    pub lingering: usize,
    /// Whether the flush failed for some day (its rows stay pending).
    pub flush_failed: bool,
}

/// Keeps the eviction count between drains.
#[derive(Debug)]
pub struct Drain {
    /// Entries the LRU map evicted before a drain read them (since the
    /// programs were loaded). Every insert is drained, still present, or
    /// evicted; the counts come from the kernel, so this survives restarts.
    pub evicted: u64,
    /// Read and delete one key at a time, as on kernels before 5.6, even
    /// where batch operations work: so tests run that path on any kernel.
    pub per_key: bool,
    /// The most rows one drain writes (`usize::MAX`: no limit). Bounds the
    /// daemon's CPU and memory under a flood; see the module's comment.
    pub row_budget: usize,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            evicted: 0,
            per_key: false,
            row_budget: usize::MAX,
        }
    }
}

/// Test-only switch (`=1`): every drain takes the per-key path of kernels
/// before 5.6. Only `cargo xtask vm-test` sets it, so that path also runs
/// on a real kernel with real traffic; the README's Tests section names it.
pub const PER_KEY_ENV: &str = "TSUSEN_TEST_DRAIN_PER_KEY";

fn per_key_forced() -> bool {
    static FORCED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| {
        let forced = std::env::var_os(PER_KEY_ENV).is_some_and(|v| v == "1");
        if forced {
            log::warn!("{PER_KEY_ENV}=1: draining one key at a time, as on kernels before 5.6");
        }
        forced
    })
}

impl Drain {
    pub fn run(&mut self, sensor: &mut Sensor, store: &mut DayStore) -> Result<Drained> {
        // Read the counters before the map: entries inserted during the read
        // then make this drain undercount evictions (the next one catches up),
        // never overcount them.
        let before = sensor.stats()?;
        let per_key = self.per_key || per_key_forced();
        let Claimed {
            mut entries,
            claims,
            ..
        } = read_and_claim(sensor, store, per_key, self.row_budget)?;
        let (mut drained, removable) = write(store, &mut entries, claims, self.row_budget);
        if removable > 0 {
            drained.removed = remove(sensor, &entries[..removable], per_key)?;
            // All of them were drained, even those evicted after the read.
            sensor.add_to_counter(Stat::Drained, removable as u64)?;
        }
        let drained_total = before[Stat::Drained as usize] + removable as u64;
        let present = (drained.kept + drained.deferred + drained.lingering) as u64;
        let inserted = before[Stat::NewTuples as usize];
        self.evicted = self
            .evicted
            .max(inserted.saturating_sub(drained_total + present));
        Ok(drained)
    }
}

/// Rows a drain writes per second of `--flush-interval`, at most: bounds the
/// daemon's CPU under a flood (a 200 kpps scan, masscan's top speed here,
/// fits in one second's budget).
pub const ROWS_PER_SECOND: usize = 250_000;
/// Rows a day may have by its start: a day's first bursts are written as
/// fast as [`ROWS_PER_SECOND`] allows.
pub const DAY_BURST_ROWS: usize = 4_000_000;
/// Rows a day may have by its end. Between start and end the allowance
/// grows evenly (about 116 rows a second), so a flood that spent the burst
/// leaves room all day for scans. Each row costs about 10-20 bytes of memory
/// (the day's set of tuples, see `store`), so a day's set stays under 160 MB.
pub const DAY_ROWS: usize = 14_000_000;

/// Test-only switch (`=N`): every drain's budget is `N` rows, whatever the
/// interval and the day's allowance, so a test's flood exceeds it on a slow
/// or busy machine too. Only `tests/live_flood.rs` sets it; the README's
/// Tests section names it.
pub const ROW_BUDGET_ENV: &str = "TSUSEN_TEST_ROW_BUDGET";

fn row_budget_forced() -> Option<usize> {
    static FORCED: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *FORCED.get_or_init(|| {
        let forced = std::env::var(ROW_BUDGET_ENV).ok()?.parse().ok()?;
        log::warn!("{ROW_BUDGET_ENV}={forced}: every drain writes at most {forced} rows");
        Some(forced)
    })
}

/// The row budget of the next drain: what [`ROWS_PER_SECOND`] allows at
/// `interval`, and what is left of the day's allowance at `now_ns` (Unix
/// nanoseconds) with `written_today` rows in today's file.
pub fn row_budget(interval: std::time::Duration, now_ns: u64, written_today: usize) -> usize {
    if let Some(forced) = row_budget_forced() {
        return forced;
    }
    let per_drain = usize::try_from(interval.as_secs().max(1))
        .unwrap_or(usize::MAX)
        .saturating_mul(ROWS_PER_SECOND);
    let into_day = (now_ns % tsusen_common::NS_PER_DAY) as f64 / tsusen_common::NS_PER_DAY as f64;
    // 0 <= into_day < 1: the product lies between 0 and DAY_ROWS.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a fraction of DAY_ROWS, rounded down"
    )]
    let growth = ((DAY_ROWS - DAY_BURST_ROWS) as f64 * into_day) as usize;
    let allowed = DAY_BURST_ROWS + growth;
    per_drain.min(allowed.saturating_sub(written_today))
}

/// Move to the front of `entries` the `budget` that go first: the entries
/// of the sources with the most entries (a scanner's), then the oldest;
/// returns how many that is (all of them when they fit). Linear: one count
/// per source and a selection, no sort.
fn over_budget(entries: &mut [(TupleKey, FirstSeen)], budget: usize) -> usize {
    if entries.len() <= budget {
        return entries.len();
    }
    let mut per_source: std::collections::HashMap<[u8; 16], u32, foldhash::fast::RandomState> =
        std::collections::HashMap::default();
    for (key, _) in entries.iter() {
        *per_source.entry(key.src_ip).or_default() += 1;
    }
    let rank = |(key, seen): &(TupleKey, FirstSeen)| {
        (std::cmp::Reverse(per_source[&key.src_ip]), seen.wall_ns)
    };
    if budget > 0 {
        entries.select_nth_unstable_by_key(budget - 1, rank);
    }
    budget
}

/// The userspace half of a drain: sort each entry out (a new row, a row on
/// disk already, or one that must wait), queue the new rows the budget
/// allows, flush, and move to the front of `entries` those whose rows are on
/// disk, the only ones that may leave the kernel's map; returns how many.
///
/// The budget counts rows to write first; what it leaves goes to entries
/// whose rows were written before (a flood brings tuples back after a drain
/// removed them), so those never crowd out new rows, and a drain's deletes
/// stay within the budget too. Entries are reordered in place: no copy of
/// them, whatever the drain's size.
fn write(
    store: &mut DayStore,
    entries: &mut [(TupleKey, FirstSeen)],
    mut claims: Vec<Claim>,
    budget: usize,
) -> (Drained, usize) {
    let mut drained = Drained {
        entries: entries.len(),
        ..Drained::default()
    };
    // New ones first, rows on disk next, and the entries that must stay last.
    let (mut new, mut i, mut held) = (0, 0, entries.len());
    while i < held {
        match claims[i] {
            Claim::New => {
                entries.swap(new, i);
                claims.swap(new, i);
                new += 1;
                i += 1;
            }
            Claim::Written => i += 1,
            Claim::Held => {
                held -= 1;
                entries.swap(i, held);
                claims.swap(i, held);
            }
        }
    }
    drop(claims);
    drained.kept = entries.len() - held;
    let queued = over_budget(&mut entries[..new], budget);
    for (key, _) in &entries[queued..new] {
        store.unclaim(key);
    }
    drained.deferred = new - queued;
    if let Some((key, _)) = entries.first() {
        store.reserve_rows(key.day, queued);
    }
    for (key, seen) in &entries[..queued] {
        store.queue(key, Row::from_entry(key, seen));
    }
    // Rows of the days that could be written count even when another failed.
    let written_before = store.stats.rows_written;
    drained.flush_failed = store.flush().is_err(); // logged by the store
    drained.rows = usize::try_from(store.stats.rows_written - written_before)
        .expect("one drain's rows fit in memory");
    // Queued rows on disk first. Days are few (today, yesterday): ask once
    // per run of entries of the same day.
    let mut last: Option<(u16, bool)> = None;
    let mut on_disk = 0;
    for i in 0..queued {
        let day = entries[i].0.day;
        let written = match last {
            Some((known, written)) if known == day => written,
            _ => {
                let written = store.day_written(day);
                last = Some((day, written));
                written
            }
        };
        if written {
            entries.swap(on_disk, i);
            on_disk += 1;
        }
    }
    drained.kept += queued - on_disk;
    // Then the rows on disk before, as many as the budget has room for.
    let before = held - new;
    let room = budget.saturating_sub(queued).min(before);
    entries[on_disk..held].rotate_left(new - on_disk);
    drained.lingering = before - room;
    (drained, on_disk + room)
}

/// Entries per batch read or deleted: 48 bytes each, so under a megabyte a
/// buffer (a drain has three in use at once; larger ones were no faster, and
/// the allocator kept them resident after the drain).
const BATCH: usize = 16_384;

/// Read the map and [`DayStore::claim`] each entry (one lookup in its day's
/// set), the claims overlapping the next batch's read. Should the read fail
/// part way, the claims made are given back.
fn read_and_claim(
    sensor: &mut Sensor,
    store: &mut DayStore,
    per_key: bool,
    budget: usize,
) -> Result<Claimed> {
    // Room for a full map up front: no copy as it grows, and pages are only
    // touched for the entries there are.
    let mut read = Claimed::with_capacity(sensor.first_seen_capacity()? as usize, budget);
    if !per_key {
        let result = batch::lookup_each(sensor.first_seen_fd()?, BATCH, |keys, values| {
            for (key, seen) in keys.iter().zip(values) {
                read.push(store, key, *seen);
            }
        });
        match result {
            Ok(()) => return Ok(read),
            Err(err) => {
                for ((key, _), claim) in read.entries.iter().zip(&read.claims) {
                    if *claim == Claim::New {
                        store.unclaim(key);
                    }
                }
                if !(read.entries.is_empty() && batch::unsupported(&err)) {
                    return Err(err).context("reading the first-seen map");
                }
            }
        }
    }
    // Kernels before 5.6: one key at a time. An entry evicted while we walk
    // can end the walk early; the next drain gets the rest.
    let map = sensor.first_seen()?;
    for (key, seen) in map.iter().filter_map(Result::ok) {
        read.push(store, &key, seen);
    }
    Ok(read)
}

/// Entries read and, for each, its [`Claim`].
struct Claimed {
    entries: Vec<(TupleKey, FirstSeen)>,
    claims: Vec<Claim>,
    /// The most new tuples the drain will keep in a day's set.
    new_rows: usize,
}

impl Claimed {
    fn with_capacity(capacity: usize, budget: usize) -> Self {
        Claimed {
            entries: Vec::with_capacity(capacity),
            claims: Vec::with_capacity(capacity),
            new_rows: capacity.min(budget),
        }
    }

    fn push(&mut self, store: &mut DayStore, key: &TupleKey, seen: FirstSeen) {
        if self.entries.is_empty() {
            // Most entries share the current day: size its set once, for
            // the rows the budget lets in.
            store.reserve_tuples(key.day, self.new_rows);
        }
        self.claims.push(store.claim(key));
        self.entries.push((*key, seen));
    }
}

fn remove(sensor: &mut Sensor, entries: &[(TupleKey, FirstSeen)], per_key: bool) -> Result<usize> {
    if !per_key {
        match batch::delete_all(sensor.first_seen_fd()?, entries, BATCH) {
            Ok(removed) => return Ok(removed),
            Err(err) if batch::unsupported(&err) => {}
            Err(err) => return Err(err).context("removing drained entries"),
        }
    }
    let mut map = sensor.first_seen()?;
    // Gone already (evicted) is fine: it was written.
    Ok(entries
        .iter()
        .filter(|(key, _)| map.remove(key).is_ok())
        .count())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    const T0: u64 = 1_764_000_000; // 2025-11-24 16:00:00 UTC

    fn entries(
        day_offset: u64,
        ports: std::ops::RangeInclusive<u16>,
    ) -> Vec<(TupleKey, FirstSeen)> {
        ports
            .map(|port| {
                let secs = T0 + day_offset * 86_400;
                let row: Row = format!("TCP {port} 198.51.100.1 192.0.2.1 {secs}")
                    .parse()
                    .unwrap();
                let seen = FirstSeen {
                    wall_ns: secs * 1_000_000_000,
                };
                (row.key(), seen)
            })
            .collect()
    }

    /// The same entries, first seen a microsecond later.
    fn later(entries: Vec<(TupleKey, FirstSeen)>) -> Vec<(TupleKey, FirstSeen)> {
        entries
            .into_iter()
            .map(|(key, seen)| {
                let later = FirstSeen {
                    wall_ns: seen.wall_ns + 1_000,
                };
                (key, later)
            })
            .collect()
    }

    #[test]
    fn the_budget_is_a_rate_per_drain_and_an_allowance_per_day() {
        use std::time::Duration;
        let midnight = 20_000 * tsusen_common::NS_PER_DAY;
        let second = Duration::from_secs(1);
        assert_eq!(row_budget(second, midnight, 0), ROWS_PER_SECOND);
        assert_eq!(
            row_budget(Duration::from_secs(900), midnight, 0),
            DAY_BURST_ROWS,
            "15 minutes: the day's burst first"
        );
        assert_eq!(row_budget(second, midnight, DAY_BURST_ROWS), 0);
        let noon = midnight + tsusen_common::NS_PER_DAY / 2;
        let half = DAY_BURST_ROWS + (DAY_ROWS - DAY_BURST_ROWS) / 2;
        assert_eq!(row_budget(second, noon, half - 100), 100);
        assert_eq!(row_budget(Duration::from_secs(3600), noon, 0), half);
        let end = midnight + tsusen_common::NS_PER_DAY - 1;
        assert_eq!(row_budget(second, end, DAY_ROWS), 0);
        assert!(row_budget(second, end, DAY_ROWS - 10) <= 10);
    }

    #[test]
    fn over_budget_a_scanners_rows_go_first_then_the_oldest() {
        // 100 spoofed singletons (one tuple per source), then a scan of 20
        // ports from one source, newest of all.
        let mut all: Vec<(TupleKey, FirstSeen)> = (0..100u32)
            .map(|i| {
                let mut entry = entries(0, 80..=80)[0];
                entry.0.src_ip =
                    tsusen_common::tuple::ipv4_mapped([198, 18, 0, i.to_le_bytes()[0]]);
                entry.1.wall_ns += u64::from(i);
                entry
            })
            .collect();
        let scan = later(entries(0, 1..=20));
        all.extend(&scan);
        let mut cut = all.clone();
        assert_eq!(over_budget(&mut cut, 30), 30);
        cut.truncate(30);
        for entry in &scan {
            assert!(cut.contains(entry), "the scan's {:?} is kept", entry.0);
        }
        // Then the 10 oldest singletons.
        for entry in &all[..10] {
            assert!(cut.contains(entry), "{:?} is among the oldest", entry.0);
        }
        let mut whole = all.clone();
        assert_eq!(over_budget(&mut whole, 120), 120);
        assert_eq!(whole, all);
        assert_eq!(over_budget(&mut whole, 0), 0);
    }

    /// The userspace half of a drain, claims included.
    fn claim_and_write(
        store: &mut DayStore,
        entries: &mut [(TupleKey, FirstSeen)],
        budget: usize,
    ) -> (Drained, usize) {
        let claims = entries.iter().map(|(key, _)| store.claim(key)).collect();
        write(store, entries, claims, budget)
    }

    /// Keys, in order, for comparing what a drain picked.
    fn keys(entries: &[(TupleKey, FirstSeen)]) -> Vec<TupleKey> {
        let mut keys: Vec<TupleKey> = entries.iter().map(|(key, _)| *key).collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn the_budget_is_for_rows_to_write_not_for_entries_written_before() {
        // A flood loops over the same spoofed tuples: a drain wrote the first
        // 50 and removed their entries, the flood put them back (older than
        // the 50 new ones that came after), and the map now holds both.
        let dir = std::env::temp_dir().join(crate::testing::unique_name("drain"));
        let mut store = DayStore::open(&dir, usize::MAX).unwrap();
        let old = entries(0, 1..=50);
        let (drained, removable) = claim_and_write(&mut store, &mut old.clone(), 50);
        assert_eq!((drained.rows, removable), (50, 50));
        let new = later(entries(0, 51..=100));
        let all: Vec<_> = old.iter().chain(&new).copied().collect();

        let mut drain = all.clone();
        let (drained, removable) = claim_and_write(&mut store, &mut drain, 50);
        assert_eq!(drained.rows, 50, "the 50 new rows, within the budget");
        assert_eq!(drained.deferred, 0, "nothing new waits");
        assert_eq!(drained.lingering, 50, "the budget is spent on rows");
        assert_eq!(keys(&drain[..removable]), keys(&new));
        assert_eq!(store.tuples(old[0].0.day).unwrap(), 100);

        // With budget to spare, entries written before leave the map too,
        // without being written again.
        let mut drain = all.clone();
        let (drained, removable) = claim_and_write(&mut store, &mut drain, 60);
        assert_eq!((drained.rows, drained.deferred, drained.kept), (0, 0, 0));
        assert_eq!((removable, drained.lingering), (60, 40));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_entries_whose_rows_are_on_disk_leave_the_map() {
        let dir = std::env::temp_dir().join(crate::testing::unique_name("drain"));
        fs::create_dir_all(&dir).unwrap();
        // Today's file cannot be used; tomorrow's can. --max-pending is far
        // below what one drain reads, on a healthy disk.
        fs::create_dir(dir.join("2025-11-24.csv")).unwrap();
        let mut store = DayStore::open(&dir, 10).unwrap();
        let blocked = entries(0, 1..=50);
        let healthy = entries(1, 1..=50);
        let all: Vec<_> = blocked.iter().chain(&healthy).copied().collect();
        let mut drain = all.clone();
        let (drained, written) = claim_and_write(&mut store, &mut drain, usize::MAX);
        assert_eq!(drained.rows, 50, "every row of the healthy day");
        assert_eq!(drained.kept, 50, "the blocked day's entries stay");
        assert_eq!(keys(&drain[..written]), keys(&healthy));

        // Its file fixed, the next drain writes the blocked day and lets go
        // of the rest, written before.
        fs::remove_dir(dir.join("2025-11-24.csv")).unwrap();
        let (drained, written) = claim_and_write(&mut store, &mut all.clone(), usize::MAX);
        assert_eq!((drained.rows, drained.kept, written), (50, 0, 100));
        fs::remove_dir_all(&dir).unwrap();
    }
}
