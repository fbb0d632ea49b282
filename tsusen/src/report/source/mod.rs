//! Where the report's days come from. A [`DaySource`] lists the days it
//! holds, each with a [`Stamp`] that changes when the day's data does, and
//! reduces one day to a [`LocalDay`] (distinct sources per protocol/port,
//! and for shown days one entry per (protocol, port, source) with its first
//! sighting and destinations). Everything above it (the
//! [`Loader`](super::load::Loader)'s cache, the window, spikes, details,
//! today, the page and the JSON endpoints) is the same for every source.
//!
//! [`files`] reads a directory of day files (`--dir`);
//! [`clickhouse`] asks ClickHouse (`--clickhouse`), where SQL does the
//! aggregation.

pub mod clickhouse;
pub mod files;

use std::{ops::RangeInclusive, time::SystemTime};

use anyhow::Result;

use super::aggregate::{LocalDay, ProtoPort};
use crate::dayfile::Warnings;

/// A version of one day's data: a day is read again when its stamp differs
/// from the one it was read with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stamp {
    /// A day file's size and modification time.
    File {
        len: u64,
        modified: Option<SystemTime>,
    },
    /// Rows stored for the day and the newest first sighting among them.
    Rows { count: u64, newest: i64 },
}

/// One day a source holds.
#[derive(Clone, Debug)]
pub struct Listed {
    pub day: u16,
    /// How warnings name it (a day file's path).
    pub name: String,
    pub stamp: Stamp,
}

/// Every day a source holds, sorted by day, and what listing them skipped.
#[derive(Debug, Default)]
pub struct Listing {
    pub days: Vec<Listed>,
    pub warnings: Warnings,
}

/// A day read: its aggregate, or `None` when it vanished or became
/// unreadable since it was listed (the warnings say which); the day is
/// tried again at the next refresh.
pub type DayRead = (Option<LocalDay>, Warnings);

/// Distinct sources of one series per sensor, over the shown days.
#[derive(Debug)]
pub enum PerSensor {
    /// The source is one sensor's data: the series as the window has it.
    One(String),
    /// (sensor, distinct sources per shown day), by sensor name.
    Many(Vec<(String, Vec<u32>)>),
}

/// Where the report's days come from (see the module documentation).
/// Shared between the refresh thread and the server's requests.
pub trait DaySource: Send + Sync {
    /// Every day held (sorted by day, future days included: the loader
    /// skips them with a warning). An error means the source itself cannot
    /// be read (a missing directory, an unreachable server).
    fn list(&self) -> Result<Listing>;

    /// Reduce one listed day; `with_details` for shown days (sources and
    /// destinations), not only distinct-source counts.
    fn read_day(&self, day: &Listed, with_details: bool) -> Result<DayRead>;

    /// What the page calls the days read: "day files", "days in ClickHouse".
    fn unit(&self) -> &'static str;

    /// Distinct sources of `service` per sensor on each day of `days`.
    fn per_sensor(&self, service: ProtoPort, days: RangeInclusive<u16>) -> Result<PerSensor>;
}
