//! Drain: the kernel's first-seen map, turned into rows in the day store.
//!
//! Each drain reads every entry, queues a row for each tuple not yet written
//! that day, flushes (one write and fsync per day file) and only then removes
//! from the map the entries whose rows are on disk. An entry whose row is not
//! (its day's file cannot be read or written, or `--max-pending` rows already
//! wait for a failing disk) stays in the map, and the next drain tries again;
//! a crash at any point leaves the entries in the (pinned) map. Rows are
//! neither lost nor written twice. Entries carry their UTC day in the key, so
//! at rollover the old day's entries go to the old day's file and leave the
//! map like any others; a day that cannot be written holds back only its own.

mod batch;

use anyhow::{Context as _, Result};
use tsusen_common::{FirstSeen, Stat, TupleKey};

use crate::{capture::sensor::Sensor, dayfile::Row, store::DayStore};

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
    /// Whether the flush failed for some day (its rows stay pending).
    pub flush_failed: bool,
}

/// Keeps the eviction count between drains.
#[derive(Debug, Default)]
pub struct Drain {
    /// Entries the LRU map evicted before a drain read them (since the
    /// programs were loaded). Every insert is drained, still present, or
    /// evicted; the counts come from the kernel, so this survives restarts.
    pub evicted: u64,
    /// Read and delete one key at a time, as on kernels before 5.6, even
    /// where batch operations work: so tests run that path on any kernel.
    pub per_key: bool,
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
        let entries = read_all(sensor, per_key)?;
        let (mut drained, written) = write(store, &entries)?;
        if !written.is_empty() {
            drained.removed = remove(sensor, &written, per_key)?;
            // All of them were drained, even those evicted after the read.
            sensor.add_to_counter(Stat::Drained, written.len() as u64)?;
        }
        let drained_total = before[Stat::Drained as usize] + written.len() as u64;
        let present = drained.kept as u64;
        let inserted = before[Stat::NewTuples as usize];
        self.evicted = self
            .evicted
            .max(inserted.saturating_sub(drained_total + present));
        Ok(drained)
    }
}

/// The userspace half of a drain: queue a row for each entry, flush, and
/// pick the entries whose rows are on disk, the only ones that may leave the
/// kernel's map.
fn write(
    store: &mut DayStore,
    entries: &[(TupleKey, FirstSeen)],
) -> Result<(Drained, Vec<TupleKey>)> {
    let mut drained = Drained {
        entries: entries.len(),
        ..Drained::default()
    };
    if let Some((key, _)) = entries.first() {
        // Most entries share the current day: size its set once.
        store.reserve(key.day, entries.len())?;
    }
    for (key, seen) in entries {
        store.record(Row::from_entry(key, seen))?;
    }
    // Rows of the days that could be written count even when another failed.
    let written_before = store.stats.rows_written;
    drained.flush_failed = store.flush().is_err(); // logged by the store
    drained.rows = (store.stats.rows_written - written_before) as usize;
    let written: Vec<TupleKey> = entries
        .iter()
        .map(|(key, _)| *key)
        .filter(|key| store.is_written(key))
        .collect();
    drained.kept = entries.len() - written.len();
    Ok((drained, written))
}

/// Entries per batch read: 48 bytes each, so about 3 MiB of buffer.
const BATCH: usize = 65_536;

fn read_all(sensor: &mut Sensor, per_key: bool) -> Result<Vec<(TupleKey, FirstSeen)>> {
    if !per_key {
        match batch::lookup_all(sensor.first_seen_fd()?, BATCH) {
            Ok(entries) => return Ok(entries),
            Err(err) if batch::unsupported(&err) => {}
            Err(err) => return Err(err).context("reading the first-seen map"),
        }
    }
    // Kernels before 5.6: one key at a time. An entry evicted while we walk
    // can end the walk early; the next drain gets the rest.
    let map = sensor.first_seen()?;
    Ok(map.iter().filter_map(Result::ok).collect())
}

fn remove(sensor: &mut Sensor, keys: &[TupleKey], per_key: bool) -> Result<usize> {
    if !per_key {
        match batch::delete_all(sensor.first_seen_fd()?, keys) {
            Ok(removed) => return Ok(removed),
            Err(err) if batch::unsupported(&err) => {}
            Err(err) => return Err(err).context("removing drained entries"),
        }
    }
    let mut map = sensor.first_seen()?;
    // Gone already (evicted) is fine: it was written.
    Ok(keys.iter().filter(|key| map.remove(key).is_ok()).count())
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
        let (drained, written) = write(&mut store, &all).unwrap();
        assert_eq!(drained.rows, 50, "every row of the healthy day");
        assert_eq!(drained.kept, 50, "the blocked day's entries stay");
        let expected: Vec<TupleKey> = healthy.iter().map(|(key, _)| *key).collect();
        assert_eq!(written, expected);

        // Its file fixed, the next drain writes the blocked day and lets go
        // of the rest, written before.
        fs::remove_dir(dir.join("2025-11-24.csv")).unwrap();
        let (drained, written) = write(&mut store, &all).unwrap();
        assert_eq!((drained.rows, drained.kept, written.len()), (50, 0, 100));
        fs::remove_dir_all(&dir).unwrap();
    }
}
