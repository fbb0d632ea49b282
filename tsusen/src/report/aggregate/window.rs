//! The window: the shown days' series, folded or charted, their change and
//! trend, and their spikes, built from the day aggregates. [`Trends`] is the
//! part built from per-day counts alone, so counts a filter kept can be
//! turned into series, spikes and a chart the same way.
#![expect(
    clippy::cast_possible_truncation,
    reason = "day indices of a window fit u16 (a window is at most a few hundred days)"
)]

use std::{net::IpAddr, sync::Arc};

use rustc_hash::FxHashMap;

use super::{
    DayAggregate, Detail, Interner, ProtoPort, Today, details::build_details, hours::ShownDay,
    today::build_today,
};
use crate::report::spikes::{self, Baseline, DEFAULT_K};

/// What a window shows, from the command line.
#[derive(Clone, Copy, Debug)]
pub struct WindowOptions {
    /// Days shown, ending with the newest day file.
    pub days: u16,
    /// A series stays on the chart when it has at least this many sources on
    /// every earlier day of the window...
    pub min_sources: u32,
    /// ...or at least `min_sources * burst_factor` on any one day.
    pub burst_factor: u32,
    /// A spike needs at least this many sources.
    pub spike_min: u32,
    /// A spike is above `k` IQRs over the median and `k` SDs over the mean.
    pub spike_k: f64,
    /// Series drawn on the chart.
    pub top: usize,
}

impl Default for WindowOptions {
    fn default() -> Self {
        WindowOptions {
            days: 30,
            min_sources: 10,
            burst_factor: 5,
            spike_min: 10,
            spike_k: DEFAULT_K,
            top: 10,
        }
    }
}

/// Distinct sources per day for one protocol/port over the shown days.
#[derive(Clone, Debug)]
pub struct Series {
    pub service: ProtoPort,
    pub counts: Vec<u32>,
    /// Too little traffic by the fold rule; not drawn.
    pub folded: bool,
    /// The newest day against the day before (when that day has a day file).
    pub vs_yesterday: Option<Change>,
    /// The newest day against the same weekday a week before (when that day
    /// has a day file; it may lie before the shown days).
    pub vs_last_week: Option<Change>,
    /// Least-squares line through the shown days with a day file.
    pub trend: Option<Trend>,
}

impl Series {
    /// Sources on the newest day.
    pub fn newest(&self) -> u32 {
        self.counts.last().copied().unwrap_or(0)
    }
}

/// The newest day's count against an earlier day's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub before: u32,
    pub now: u32,
}

impl Change {
    pub fn delta(self) -> i64 {
        i64::from(self.now) - i64::from(self.before)
    }

    /// The change in percent of `before`; none when `before` is 0.
    pub fn percent(self) -> Option<f64> {
        (self.before > 0).then(|| self.delta() as f64 * 100.0 / f64::from(self.before))
    }
}

/// A least-squares line over the shown days: `intercept + slope * i` sources
/// on shown day `i` (0 is the first shown day).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trend {
    /// Sources per day.
    pub slope: f64,
    pub intercept: f64,
}

impl Trend {
    /// The line through `(day index, count)` points; none for fewer than two.
    pub fn fit(points: impl Iterator<Item = (usize, u32)> + Clone) -> Option<Trend> {
        let n = points.clone().count();
        if n < 2 {
            return None;
        }
        let n = n as f64;
        let (sx, sy) = points.clone().fold((0.0, 0.0), |(sx, sy), (x, y)| {
            (sx + x as f64, sy + f64::from(y))
        });
        let (mx, my) = (sx / n, sy / n);
        let (sxy, sxx) = points.fold((0.0, 0.0), |(sxy, sxx), (x, y)| {
            let dx = x as f64 - mx;
            (sxy + dx * (f64::from(y) - my), sxx + dx * dx)
        });
        let slope = sxy / sxx;
        Some(Trend {
            slope,
            intercept: my - slope * mx,
        })
    }

    pub fn at(&self, i: usize) -> f64 {
        self.intercept + self.slope * i as f64
    }
}

/// A day whose count is above its baseline (see [`spikes`]).
#[derive(Clone, Debug)]
pub struct Spike {
    pub day: u16,
    pub service: ProtoPort,
    pub count: u32,
    pub baseline: Baseline,
    /// The count it exceeded (with the window's `spike_k`).
    pub threshold: f64,
    /// `count / threshold` (threshold at least 1): the spike's size, by
    /// which spikes are ranked.
    pub ratio: f64,
    /// No source on any baseline day: a port new to the baseline window.
    pub new: bool,
}

/// One day's distinct sources per protocol/port: all [`Trends`] needs.
#[derive(Clone, Copy, Debug)]
pub struct DayCounts<'a> {
    pub day: u16,
    pub services: &'a [(ProtoPort, u32)],
}

/// The shown days' series and spikes, built from per-day counts (the shown
/// days and up to [`spikes::BASELINE_DAYS`] before them). [`Window::build`]
/// builds them from every source; counts a filter kept give the filtered
/// series, spikes and chart ([`crate::report::chart::ChartView`]).
#[derive(Clone, Debug)]
pub struct Trends {
    /// Shown days: `first_day..=last_day`.
    pub first_day: u16,
    pub last_day: u16,
    /// Shown days that have a day file.
    pub covered: Vec<bool>,
    /// Every protocol/port with sources on a shown day: unfolded first, each
    /// part by the newest day's count, highest first.
    pub series: Vec<Series>,
    /// Largest ratio first (then count, newest day, protocol/port).
    pub spikes: Vec<Spike>,
}

impl Trends {
    /// Build from the counts of every loaded day, sorted by day; the newest
    /// is the last shown day.
    pub fn build(days: &[DayCounts<'_>], options: &WindowOptions) -> Trends {
        let Some(last_day) = days.iter().map(|d| d.day).max() else {
            return Trends {
                first_day: 0,
                last_day: 0,
                covered: Vec::new(),
                series: Vec::new(),
                spikes: Vec::new(),
            };
        };
        let first_day = last_day.saturating_sub(options.days.max(1) - 1);
        let base = days[0].day.min(first_day);
        let span = usize::from(last_day - base) + 1;
        let shown = usize::from(last_day - first_day) + 1;
        let offset = usize::from(first_day - base);

        let mut covered_all = vec![false; span];
        let mut counts: FxHashMap<ProtoPort, Vec<u32>> = FxHashMap::default();
        for day in days {
            let i = usize::from(day.day - base);
            covered_all[i] = true;
            for &(service, n) in day.services {
                counts.entry(service).or_insert_with(|| vec![0; span])[i] = n;
            }
        }
        let covered = covered_all[offset..].to_vec();
        // The newest day against an earlier one, when that day has a file.
        let compare = |all: &[u32], back: usize| {
            let then = span.checked_sub(1 + back)?;
            covered_all[then].then(|| Change {
                before: all[then],
                now: all[span - 1],
            })
        };

        let mut spikes = Vec::new();
        let mut series = Vec::new();
        for (service, all) in counts {
            let shown_counts = &all[offset..];
            if shown_counts.iter().all(|&n| n == 0) {
                continue;
            }
            for (i, &count) in shown_counts.iter().enumerate() {
                if count < options.spike_min {
                    continue;
                }
                let at = offset + i;
                let history: Vec<u32> = (at.saturating_sub(spikes::BASELINE_DAYS)..at)
                    .filter(|&j| covered_all[j])
                    .map(|j| all[j])
                    .collect();
                let Some(baseline) = spikes::baseline(&history) else {
                    continue;
                };
                if baseline.is_spike(count, options.spike_min, options.spike_k) {
                    let threshold = baseline.threshold(options.spike_k);
                    spikes.push(Spike {
                        day: first_day + i as u16,
                        service,
                        count,
                        threshold,
                        ratio: spikes::ratio(count, threshold),
                        new: baseline.is_new(),
                        baseline,
                    });
                }
            }
            let on_file = shown_counts
                .iter()
                .zip(&covered)
                .enumerate()
                .filter(|(_, (_, c))| **c)
                .map(|(i, (&n, _))| (i, n));
            series.push(Series {
                service,
                folded: is_folded(shown_counts, &covered, options),
                vs_yesterday: compare(&all, 1),
                vs_last_week: compare(&all, 7),
                trend: Trend::fit(on_file),
                counts: shown_counts.to_vec(),
            });
        }
        series.sort_by(|a, b| {
            (a.folded, std::cmp::Reverse(a.counts[shown - 1]))
                .cmp(&(b.folded, std::cmp::Reverse(b.counts[shown - 1])))
                .then_with(|| {
                    let total = |s: &Series| s.counts.iter().map(|&n| u64::from(n)).sum::<u64>();
                    total(b).cmp(&total(a))
                })
                .then(a.service.cmp(&b.service))
        });
        // The most significant first: an analyst reads the top rows.
        spikes.sort_by(|a, b| {
            b.ratio
                .total_cmp(&a.ratio)
                .then(b.count.cmp(&a.count))
                .then(b.day.cmp(&a.day))
                .then(a.service.cmp(&b.service))
        });
        Trends {
            first_day,
            last_day,
            covered,
            series,
            spikes,
        }
    }

    /// The series a chart of the top `top` draws.
    pub fn charted(&self, top: usize) -> &[Series] {
        top_unfolded(&self.series, top)
    }
}

/// Everything the report shows, built from day aggregates.
pub struct Window {
    pub options: WindowOptions,
    /// Shown days: `first_day..=last_day`.
    pub first_day: u16,
    pub last_day: u16,
    /// Shown days that have a day file.
    pub covered: Vec<bool>,
    pub rows: u64,
    /// Every protocol/port with sources on a shown day: unfolded first, each
    /// part by the newest day's count, highest first.
    pub series: Vec<Series>,
    /// Largest ratio first (see [`Trends`]).
    pub spikes: Vec<Spike>,
    pub today: Today,
    pub(super) details: Vec<Detail>,
    pub(super) ips: Arc<Vec<IpAddr>>,
    /// The shown days' first-seen hours, for [`Window::hours`].
    /// Shared with the windows a filter sees ([`Window::selected`]).
    pub(super) shown_days: Arc<Vec<ShownDay>>,
    /// The shown days' (protocol, port, source) entries, for the drill-down
    /// and the per-destination view (see `drill.rs`).
    pub(super) drill: super::drill::DrillDays,
}

impl Window {
    /// Build from every loaded day (shown days and the baseline days before
    /// them), sorted by day.
    pub fn build(days: &[&DayAggregate], interner: &Interner, options: WindowOptions) -> Window {
        let counts: Vec<DayCounts<'_>> = days
            .iter()
            .map(|d| DayCounts {
                day: d.day,
                services: &d.services,
            })
            .collect();
        let Trends {
            first_day,
            last_day,
            covered,
            series,
            spikes,
        } = Trends::build(&counts, &options);
        if covered.is_empty() {
            return Window::empty(options);
        }
        let rows = days
            .iter()
            .filter(|d| d.day >= first_day)
            .map(|d| d.rows)
            .sum();

        let shown_days: Vec<&DayAggregate> = days
            .iter()
            .copied()
            .filter(|d| d.day >= first_day)
            .collect();
        let details = build_details(&shown_days, interner);
        let today = build_today(&series, &shown_days, last_day, interner);
        let shown = shown_days.iter().filter_map(|d| ShownDay::of(d)).collect();
        let drill = super::drill::DrillDays::new(&shown_days, interner);
        Window {
            options,
            first_day,
            last_day,
            covered,
            rows,
            series,
            spikes,
            today,
            details,
            ips: Arc::new(interner.ips.clone()),
            shown_days: Arc::new(shown),
            drill,
        }
    }

    fn empty(options: WindowOptions) -> Window {
        Window {
            options,
            first_day: 0,
            last_day: 0,
            covered: Vec::new(),
            rows: 0,
            series: Vec::new(),
            spikes: Vec::new(),
            today: Today::default(),
            details: Vec::new(),
            ips: Arc::default(),
            shown_days: Arc::default(),
            drill: super::drill::DrillDays::default(),
        }
    }

    /// Whether any day file was read.
    pub fn is_empty(&self) -> bool {
        self.covered.is_empty()
    }

    /// Day numbers of the shown days.
    pub fn days(&self) -> impl Iterator<Item = u16> + '_ {
        (0..self.covered.len()).map(|i| self.first_day + i as u16)
    }

    /// The series drawn on the chart: the top unfolded ones.
    pub fn charted(&self) -> &[Series] {
        top_unfolded(&self.series, self.options.top)
    }

    pub fn folded_count(&self) -> usize {
        self.series.iter().filter(|s| s.folded).count()
    }
}

/// The first `top` unfolded series (unfolded ones come first).
fn top_unfolded(series: &[Series], top: usize) -> &[Series] {
    let unfolded = series.iter().take_while(|s| !s.folded).count();
    &series[..unfolded.min(top)]
}

/// The original tsusen's rule: fold a series away when some earlier day of
/// the window has fewer than `min_sources`, unless some day bursts to
/// `min_sources * burst_factor`. Days without a day file don't count.
fn is_folded(counts: &[u32], covered: &[bool], options: &WindowOptions) -> bool {
    let last = counts.len() - 1;
    let on_file = || {
        counts
            .iter()
            .zip(covered)
            .enumerate()
            .filter(|(_, (_, c))| **c)
    };
    let some_day_low = on_file().any(|(i, (&n, _))| i != last && n < options.min_sources);
    let burst = options.min_sources.saturating_mul(options.burst_factor);
    let some_day_burst = on_file().any(|(_, (&n, _))| n >= burst);
    some_day_low && !some_day_burst
}
