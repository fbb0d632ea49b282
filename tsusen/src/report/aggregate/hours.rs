//! Time of day: one (day, protocol/port)'s distinct sources by the UTC hour
//! each was first seen that day, so one sees when a wave started. The window
//! keeps one byte per (protocol, port, source) of each shown day, its hour,
//! rather than the day's details: a server holding an old window while it
//! reads the new day's files holds no second copy of them.

use super::{DayAggregate, ProtoPort, Window};
use crate::dayfile::SECS_PER_DAY;

/// Seconds in an hour.
const HOUR: i64 = 3600;

/// A shown day's sources by the hour they were first seen.
#[derive(Debug)]
pub(super) struct ShownDay {
    day: u16,
    /// Distinct sources per protocol/port: where each one's hours are.
    services: Vec<(ProtoPort, u32)>,
    /// The first-seen hour of each (protocol, port, source), grouped by
    /// protocol/port in the order of `services`.
    hours: Vec<u8>,
}

impl ShownDay {
    pub(super) fn of(day: &DayAggregate) -> Option<ShownDay> {
        let details = day.details.as_ref()?;
        let day_start = i64::from(day.day) * SECS_PER_DAY;
        let hours = details
            .keys
            .iter()
            .map(|key| {
                // A row stamped outside its day (a hand-edited file) counts
                // in the nearest hour of the day.
                let hour = (key.first_seen - day_start).div_euclid(HOUR).clamp(0, 23);
                u8::try_from(hour).expect("0..=23")
            })
            .collect();
        Some(ShownDay {
            day: day.day,
            services: day.services.clone(),
            hours,
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
        for &hour in &shown.hours[start..start + len] {
            hours.counts[usize::from(hour)] += 1;
        }
        Some(hours)
    }
}
