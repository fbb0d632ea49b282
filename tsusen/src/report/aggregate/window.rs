//! The window: the shown days' series, folded or charted, and their spikes,
//! built from the day aggregates.
#![expect(
    clippy::cast_possible_truncation,
    reason = "day indices of a window fit u16 (a window is at most a few hundred days)"
)]

use std::{net::IpAddr, sync::Arc};

use rustc_hash::FxHashMap;

use super::{
    DayAggregate, Detail, Interner, ProtoPort, Today, details::build_details, today::build_today,
};
use crate::report::spikes::{self, Baseline};

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
}

/// A day whose count is above its baseline (see [`spikes`]).
#[derive(Clone, Debug)]
pub struct Spike {
    pub day: u16,
    pub service: ProtoPort,
    pub count: u32,
    pub baseline: Baseline,
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
    /// Newest first.
    pub spikes: Vec<Spike>,
    pub today: Today,
    pub(super) details: Vec<Detail>,
    pub(super) ips: Arc<Vec<IpAddr>>,
    /// The shown days' (protocol, port, source) entries, for the drill-down
    /// and the per-destination view (see `drill.rs`).
    pub(super) drill: super::drill::DrillDays,
}

impl Window {
    /// Build from every loaded day (shown days and the baseline days before
    /// them), sorted by day.
    pub fn build(days: &[&DayAggregate], interner: &Interner, options: WindowOptions) -> Window {
        let Some(last_day) = days.iter().map(|d| d.day).max() else {
            return Window::empty(options);
        };
        let first_day = last_day.saturating_sub(options.days.max(1) - 1);
        let base = days[0].day.min(first_day);
        let span = usize::from(last_day - base) + 1;
        let shown = usize::from(last_day - first_day) + 1;
        let offset = usize::from(first_day - base);

        let mut covered_all = vec![false; span];
        let mut counts: FxHashMap<ProtoPort, Vec<u32>> = FxHashMap::default();
        let mut rows = 0;
        for day in days {
            let i = usize::from(day.day - base);
            covered_all[i] = true;
            if day.day >= first_day {
                rows += day.rows;
            }
            for &(service, n) in &day.services {
                counts.entry(service).or_insert_with(|| vec![0; span])[i] = n;
            }
        }
        let covered = covered_all[offset..].to_vec();

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
                if baseline.is_spike(count, options.spike_min) {
                    spikes.push(Spike {
                        day: first_day + i as u16,
                        service,
                        count,
                        baseline,
                    });
                }
            }
            series.push(Series {
                service,
                folded: is_folded(shown_counts, &covered, &options),
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
        spikes.sort_by(|a, b| {
            b.day
                .cmp(&a.day)
                .then(b.count.cmp(&a.count))
                .then(a.service.cmp(&b.service))
        });

        let shown_days: Vec<&DayAggregate> = days
            .iter()
            .copied()
            .filter(|d| d.day >= first_day)
            .collect();
        let details = build_details(&shown_days, interner);
        let today = build_today(&series, &shown_days, last_day, interner);
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
            drill: super::drill::DrillDays::new(&shown_days, interner),
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
        let unfolded = self.series.iter().take_while(|s| !s.folded).count();
        &self.series[..unfolded.min(self.options.top)]
    }

    pub fn folded_count(&self) -> usize {
        self.series.iter().filter(|s| s.folded).count()
    }
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
