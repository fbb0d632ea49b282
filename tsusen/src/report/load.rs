//! Keeping day aggregates in step with a [`DaySource`]: read new and
//! changed days (their [`Stamp`](super::source::Stamp) differs), keep the
//! rest, drop what left the window. The report reads once; the server calls
//! [`Loader::refresh`] on a timer.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
};

use anyhow::Result;

use super::{
    aggregate::{DayAggregate, Interner, Window, WindowOptions},
    source::{DayRead, DaySource, Listed, Listing, files::DayFiles},
    spikes::BASELINE_DAYS,
};
use crate::dayfile::{self, Warnings, day_name};

struct Cached {
    listed: Listed,
    aggregate: DayAggregate,
    warnings: Warnings,
}

/// Day aggregates of one source, cached by the days' stamps.
pub struct Loader {
    source: Arc<dyn DaySource>,
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
    /// Over a directory of day files.
    pub fn new(dir: PathBuf, options: WindowOptions) -> Self {
        Loader::with_source(Arc::new(DayFiles::new(dir, None)), options)
    }

    pub fn with_source(source: Arc<dyn DaySource>, options: WindowOptions) -> Self {
        Loader {
            source,
            options,
            interner: Interner::default(),
            days: BTreeMap::new(),
            newest: None,
            listing: Warnings::default(),
        }
    }

    /// The source read, for what the window does not hold (the per-sensor
    /// breakdown).
    pub fn source(&self) -> Arc<dyn DaySource> {
        Arc::clone(&self.source)
    }

    /// Bring the cache in step with the source. On an error the days read
    /// before it stay cached and the rest are tried again next time.
    pub fn refresh(&mut self) -> Result<Refresh> {
        let Listing {
            days: mut listed,
            warnings: mut listing,
        } = self.source.list()?;
        // A day dated after today (a stray 2149-06-06.csv, a clock gone
        // wrong) must not become the newest day and push the real ones out.
        let today = dayfile::today();
        listed.retain(|f| {
            let future = f.day > today;
            if future {
                listing.push(format!(
                    "{}: skipped: dated after today ({} UTC)",
                    f.name,
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

        let newest = listed.last().map(|f| f.day);
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
        let wanted: Vec<Listed> = listed
            .into_iter()
            .filter(|f| f.day >= first_needed)
            .collect();

        let before = self.days.len();
        self.days
            .retain(|day, _| wanted.iter().any(|f| f.day == *day));
        refresh.changed |= self.days.len() != before;

        let stale: Vec<(Listed, bool)> = wanted
            .into_iter()
            .filter(|f| {
                self.days
                    .get(&f.day)
                    .is_none_or(|c| c.listed.stamp != f.stamp)
            })
            .map(|f| {
                let details = f.day >= first_shown;
                (f, details)
            })
            .collect();
        refresh.read = stale.len();
        refresh.changed |= !stale.is_empty();
        let (read, failed) = read_parallel(self.source.as_ref(), &stale, &mut self.interner);
        for (listed, aggregate, mut warnings) in read {
            if listed.day == newest {
                warnings
                    .lines
                    .retain(|l| !l.ends_with(dayfile::INCOMPLETE_LAST_LINE));
            }
            // Only what is new for this day, so a growing file isn't re-reported.
            let old = self.days.get(&listed.day).map(|c| &c.warnings.lines);
            refresh.new_warnings.lines.extend(
                warnings
                    .lines
                    .iter()
                    .filter(|l| old.is_none_or(|old| !old.contains(l)))
                    .cloned(),
            );
            self.days.insert(
                listed.day,
                Cached {
                    listed,
                    aggregate,
                    warnings,
                },
            );
        }
        match failed {
            Some(err) => Err(err),
            None => Ok(refresh),
        }
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

    /// Days read into the cache (day files, or days in ClickHouse).
    pub fn files(&self) -> usize {
        self.days.len()
    }

    /// What the page calls them ("day files").
    pub fn unit(&self) -> &'static str {
        self.source.unit()
    }
}

/// Read days on every core, adopting them into the interner in day order so
/// ids (and with them tie-breaks) are the same from run to run. Stops
/// adopting at the first day the source fails on, and returns that error.
fn read_parallel(
    source: &dyn DaySource,
    days: &[(Listed, bool)],
    interner: &mut Interner,
) -> (Vec<(Listed, DayAggregate, Warnings)>, Option<anyhow::Error>) {
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(days.len());
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, Result<DayRead>)>();
    let mut out = Vec::with_capacity(days.len());
    let mut failed = None;
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let next = &next;
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((listed, details)) = days.get(i) else {
                        break;
                    };
                    let result = source.read_day(listed, *details);
                    let stop = result.is_err();
                    if tx.send((i, result)).is_err() || stop {
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
            while failed.is_none() {
                let Some(result) = pending.remove(&want) else {
                    break;
                };
                match result {
                    Ok((Some(local), warnings)) => {
                        out.push((days[want].0.clone(), interner.adopt(local), warnings));
                    }
                    Ok((None, warnings)) => warnings.log(),
                    Err(err) => {
                        // The others stop at their next day.
                        next.store(days.len(), Ordering::Relaxed);
                        failed = Some(err);
                    }
                }
                want += 1;
            }
        }
    });
    (out, failed)
}
