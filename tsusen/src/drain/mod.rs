//! Drain: the kernel's first-seen map, turned into rows in the day store.
//!
//! Each drain reads every entry, queues a row for each tuple not yet written
//! that day, flushes (one write and fsync per day file) and only then removes
//! the drained entries from the map. A crash at any point leaves the entries
//! in the (pinned) map, and the next drain writes what the file lacks: rows
//! are neither lost nor written twice. Entries carry their UTC day in the
//! key, so at rollover the old day's entries go to the old day's file and
//! leave the map like any others.

mod batch;

use anyhow::{Context as _, Result};
use tsusen_common::{FirstSeen, Stat, TupleKey};

use crate::{
    capture::sensor::Sensor,
    store::{DayStore, row::Row},
};

/// What one drain did.
#[derive(Debug, Default)]
pub struct Drained {
    /// Entries read from the map.
    pub entries: usize,
    /// Rows written to day files by this drain's flush.
    pub rows: usize,
    /// Entries removed from the map (0 when the flush failed).
    pub removed: usize,
    /// Whether the flush failed (rows stay pending, entries stay in the map).
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
        let mut drained = Drained {
            entries: entries.len(),
            ..Drained::default()
        };
        if let Some((key, _)) = entries.first() {
            // Most entries share the current day: size its set once.
            store.reserve(key.day, entries.len())?;
        }
        for (key, seen) in &entries {
            store.record(Row::from_entry(key, seen))?;
        }
        match store.flush() {
            Ok(rows) => drained.rows = rows,
            Err(_) => drained.flush_failed = true, // logged by the store
        }
        let present = if drained.flush_failed {
            entries.len() as u64
        } else {
            drained.removed = remove(sensor, &entries, per_key)?;
            // All of them were drained, even those evicted after the read.
            sensor.add_to_counter(Stat::Drained, entries.len() as u64)?;
            0
        };
        let drained_total = before[Stat::Drained as usize]
            + if drained.flush_failed {
                0
            } else {
                entries.len() as u64
            };
        let inserted = before[Stat::NewTuples as usize];
        self.evicted = self
            .evicted
            .max(inserted.saturating_sub(drained_total + present));
        Ok(drained)
    }
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

fn remove(sensor: &mut Sensor, entries: &[(TupleKey, FirstSeen)], per_key: bool) -> Result<usize> {
    let keys: Vec<TupleKey> = entries.iter().map(|(key, _)| *key).collect();
    if !per_key {
        match batch::delete_all(sensor.first_seen_fd()?, &keys) {
            Ok(removed) => return Ok(removed),
            Err(err) if batch::unsupported(&err) => {}
            Err(err) => return Err(err).context("removing drained entries"),
        }
    }
    let mut map = sensor.first_seen()?;
    // Gone already (evicted) is fine: it was written.
    Ok(keys.iter().filter(|key| map.remove(key).is_ok()).count())
}
