//! Keeping day aggregates in step with the directory: read new and changed
//! files (size or mtime differ), keep the rest, drop what left the window.
//! The report reads once; the server calls [`Loader::refresh`] on a timer.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
};

use anyhow::Result;

use super::{
    aggregate::{DayAggregate, DayBuilder, Interner, LocalDay, Window, WindowOptions},
    spikes::BASELINE_DAYS,
};
use crate::dayfile::{self, DayFile, Warnings, day_name};

struct Cached {
    file: DayFile,
    aggregate: DayAggregate,
    warnings: Warnings,
}

/// Day aggregates of one directory, cached by file size and mtime.
pub struct Loader {
    dir: PathBuf,
    options: WindowOptions,
    interner: Interner,
    days: BTreeMap<u16, Cached>,
    newest: Option<u16>,
    listing: Warnings,
}

/// What one refresh did.
#[derive(Clone, Debug, Default)]
pub struct Refresh {
    /// Files read (new or changed).
    pub read: usize,
    /// Whether anything changed since the previous refresh.
    pub changed: bool,
    /// Warnings from the files read in this refresh and from the listing.
    pub new_warnings: Warnings,
}

impl Loader {
    pub fn new(dir: PathBuf, options: WindowOptions) -> Self {
        Loader {
            dir,
            options,
            interner: Interner::default(),
            days: BTreeMap::new(),
            newest: None,
            listing: Warnings::default(),
        }
    }

    /// Bring the cache in step with the directory.
    pub fn refresh(&mut self) -> Result<Refresh> {
        let mut listing = Warnings::default();
        let mut files = dayfile::list_day_files(&self.dir, &mut listing)?;
        // A file dated after today (a stray 2149-06-06.csv, a clock gone
        // wrong) must not become the newest day and push the real ones out.
        let today = dayfile::today();
        files.retain(|f| {
            let future = f.day > today;
            if future {
                listing.push(format!(
                    "{}: skipped: dated after today ({} UTC)",
                    f.path.display(),
                    day_name(today)
                ));
            }
            !future
        });
        let mut refresh = Refresh::default();
        if listing.lines != self.listing.lines {
            refresh.changed = true;
            refresh
                .new_warnings
                .lines
                .extend(listing.lines.iter().cloned());
        }
        self.listing = listing;

        let newest = files.last().map(|f| f.day);
        if newest != self.newest {
            // The window moved (or this is the first load): start over, so
            // ids of addresses that left the window don't pile up.
            self.interner = Interner::default();
            self.days.clear();
            self.newest = newest;
            refresh.changed = true;
        }
        let Some(newest) = newest else {
            return Ok(refresh);
        };
        let first_shown = newest.saturating_sub(self.options.days.max(1) - 1);
        let first_needed =
            first_shown.saturating_sub(u16::try_from(BASELINE_DAYS).expect("a baseline of weeks"));
        let wanted: Vec<DayFile> = files
            .into_iter()
            .filter(|f| f.day >= first_needed)
            .collect();

        let before = self.days.len();
        self.days
            .retain(|day, _| wanted.iter().any(|f| f.day == *day));
        refresh.changed |= self.days.len() != before;

        let stale: Vec<(DayFile, bool)> = wanted
            .into_iter()
            .filter(|f| {
                self.days
                    .get(&f.day)
                    .is_none_or(|c| c.file.len != f.len || c.file.modified != f.modified)
            })
            .map(|f| {
                let details = f.day >= first_shown;
                (f, details)
            })
            .collect();
        refresh.read = stale.len();
        refresh.changed |= !stale.is_empty();
        for (file, aggregate, mut warnings) in read_parallel(&stale, &mut self.interner) {
            if file.day == newest {
                warnings
                    .lines
                    .retain(|l| !l.ends_with(dayfile::INCOMPLETE_LAST_LINE));
            }
            // Only what is new for this file, so a growing file isn't re-reported.
            let old = self.days.get(&file.day).map(|c| &c.warnings.lines);
            refresh.new_warnings.lines.extend(
                warnings
                    .lines
                    .iter()
                    .filter(|l| old.is_none_or(|old| !old.contains(l)))
                    .cloned(),
            );
            self.days.insert(
                file.day,
                Cached {
                    file,
                    aggregate,
                    warnings,
                },
            );
        }
        Ok(refresh)
    }

    /// The window over what is cached.
    pub fn window(&self) -> Window {
        let days: Vec<&DayAggregate> = self.days.values().map(|c| &c.aggregate).collect();
        Window::build(&days, &self.interner, self.options)
    }

    /// Every current warning: the listing's and each cached file's.
    pub fn warnings(&self) -> Vec<String> {
        self.listing
            .lines
            .iter()
            .chain(self.days.values().flat_map(|c| &c.warnings.lines))
            .cloned()
            .collect()
    }

    /// Day files read into the cache.
    pub fn files(&self) -> usize {
        self.days.len()
    }
}

fn read_one(file: &DayFile, details: bool) -> (Option<LocalDay>, Warnings) {
    let mut warnings = Warnings::default();
    let mut builder = DayBuilder::new(file.day, details);
    match dayfile::read_day_file(&file.path, &mut warnings, |row| builder.add(row)) {
        Ok(_) => (Some(builder.finish()), warnings),
        Err(err) => {
            // Vanished or unreadable between listing and reading: skip it.
            warnings.push(format!("{}: skipped: {err:#}", file.path.display()));
            (None, warnings)
        }
    }
}

/// Read files on every core, adopting them into the interner in day order so
/// ids (and with them tie-breaks) are the same from run to run.
fn read_parallel(
    files: &[(DayFile, bool)],
    interner: &mut Interner,
) -> Vec<(DayFile, DayAggregate, Warnings)> {
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(files.len());
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel();
    let mut out = Vec::with_capacity(files.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((file, details)) = files.get(i) else {
                        break;
                    };
                    if tx.send((i, read_one(file, *details))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut pending = BTreeMap::new();
        let mut want = 0;
        for (i, result) in rx {
            pending.insert(i, result);
            while let Some((local, warnings)) = pending.remove(&want) {
                let file = files[want].0.clone();
                if let Some(local) = local {
                    out.push((file, interner.adopt(local), warnings));
                } else {
                    warnings.log();
                }
                want += 1;
            }
        }
    });
    out
}
