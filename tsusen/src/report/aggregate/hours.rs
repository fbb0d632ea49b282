//! Time of day: one (day, protocol/port)'s distinct sources by the UTC hour
//! each was first seen that day, so one sees when a wave started. Read from
//! the day's per-source first-seen times, which the window shares with the
//! loaded day (nothing is copied per request but the day's port list).

use std::sync::Arc;

use super::{DayAggregate, ProtoPort, Window, day::DayDetails};
use crate::dayfile::SECS_PER_DAY;

/// Seconds in an hour.
const HOUR: i64 = 3600;

/// A shown day's per-source first-seen times, shared with its aggregate.
#[derive(Debug)]
pub(super) struct ShownDay {
    day: u16,
    /// Distinct sources per protocol/port: where each one's keys are.
    services: Vec<(ProtoPort, u32)>,
    details: Arc<DayDetails>,
}

impl ShownDay {
    pub(super) fn of(day: &DayAggregate) -> Option<ShownDay> {
        Some(ShownDay {
            day: day.day,
            services: day.services.clone(),
            details: Arc::clone(day.details.as_ref()?),
        })
    }
}

/// Distinct sources of one protocol/port on one day, by the hour (UTC) of
/// their first probe that day. The hours add up to the day's count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hours {
    pub day: u16,
    pub service: ProtoPort,
    pub counts: [u32; 24],
}

impl Hours {
    pub fn total(&self) -> u32 {
        self.counts.iter().sum()
    }
}

impl Window {
    /// The time-of-day view of `service` on `day`: none outside the shown
    /// days; all zeros on a day without a file or without that port.
    pub fn hours(&self, day: u16, service: ProtoPort) -> Option<Hours> {
        if self.is_empty() || day < self.first_day || day > self.last_day {
            return None;
        }
        let mut hours = Hours {
            day,
            service,
            counts: [0; 24],
        };
        let Some(shown) = self.shown_days.iter().find(|d| d.day == day) else {
            return Some(hours);
        };
        // Keys are grouped by protocol/port in the order of `services`.
        let at = shown.services.partition_point(|(s, _)| *s < service);
        if shown.services.get(at).is_none_or(|(s, _)| *s != service) {
            return Some(hours);
        }
        let start: usize = shown.services[..at].iter().map(|&(_, n)| n as usize).sum();
        let len = shown.services[at].1 as usize;
        let day_start = i64::from(day) * SECS_PER_DAY;
        for key in &shown.details.keys[start..start + len] {
            // A row stamped outside its day (a hand-edited file) counts in
            // the nearest hour of the day.
            let hour = ((key.first_seen - day_start).div_euclid(HOUR)).clamp(0, 23);
            hours.counts[usize::try_from(hour).expect("0..=23")] += 1;
        }
        Some(hours)
    }
}
