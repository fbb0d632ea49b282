//! Compact per-day aggregates, and the window (trends, spikes, today, details)
//! built from them. Raw rows are never kept: a day is reduced to distinct
//! source counts per protocol/port and, for the shown days, one entry per
//! (protocol, port, source) with its destinations as interned ids.
//!
//! [`day`] reduces one day file, [`window`] builds the trends and spikes,
//! [`details`] the details table, [`today`] the newest day's lists,
//! [`drill`] a day's sources for one port, our addresses, and selections,
//! [`hours`] a day's sources by hour.

mod day;
mod details;
mod drill;
mod hours;
mod today;
mod window;

pub use self::{
    day::{DayAggregate, DayBuilder, Interner, LocalDay, ProtoPort},
    details::{Detail, DetailFilter, DetailPage},
    drill::{
        DESTINATION_PORTS_LISTED, DESTINATIONS_LISTED, DestinationCounts, DestinationPage,
        DestinationRow, DestinationSort, DrillBy, DrillPage, DrillRow, DrillSort, Selection,
    },
    hours::Hours,
    today::{Busiest, Today},
    window::{Change, DayCounts, Series, Spike, Trend, Trends, Window, WindowOptions},
};
use crate::dayfile::day_name;

/// `YYYY-MM-DD HH:MM:SS` (UTC) of Unix seconds.
pub fn utc_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).map_or_else(
        || secs.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// `YYYY-MM-DD` of a day number (re-exported for views).
pub fn date(day: u16) -> String {
    day_name(day)
}
