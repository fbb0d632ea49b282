//! The day-files source (`--dir`): one directory, one sensor; a day is read
//! again when its file's size or modification time changed.

use std::{ops::RangeInclusive, path::PathBuf};

use anyhow::Result;

use super::{DayRead, DaySource, Listed, Listing, PerSensor, Stamp};
use crate::{
    dayfile::{self, Warnings},
    report::aggregate::{DayBuilder, ProtoPort},
};

pub struct DayFiles {
    dir: PathBuf,
    /// The sensor these files are from (`--sensor`, else the directory's name).
    sensor: String,
}

impl DayFiles {
    /// `sensor`: what the per-sensor breakdown calls this directory's sensor
    /// (default: the directory's name).
    pub fn new(dir: PathBuf, sensor: Option<String>) -> Self {
        let sensor = sensor.unwrap_or_else(|| {
            dir.canonicalize()
                .unwrap_or_else(|_| dir.clone())
                .file_name()
                .map_or_else(
                    || dir.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                )
        });
        DayFiles { dir, sensor }
    }
}

impl DaySource for DayFiles {
    fn list(&self) -> Result<Listing> {
        let mut warnings = Warnings::default();
        let days = dayfile::list_day_files(&self.dir, &mut warnings)?
            .into_iter()
            .map(|f| Listed {
                day: f.day,
                name: f.path.display().to_string(),
                stamp: Stamp::File {
                    len: f.len,
                    modified: f.modified,
                },
            })
            .collect();
        Ok(Listing { days, warnings })
    }

    fn read_day(&self, day: &Listed, with_details: bool) -> Result<DayRead> {
        let path = dayfile::day_path(&self.dir, day.day);
        let mut warnings = Warnings::default();
        let mut builder = DayBuilder::new(day.day, with_details);
        match dayfile::read_day_file(&path, &mut warnings, |row| builder.add(row)) {
            Ok(_) => Ok((Some(builder.finish()), warnings)),
            Err(err) => {
                // Vanished or unreadable between listing and reading: skip it.
                warnings.push(format!("{}: skipped: {err:#}", path.display()));
                Ok((None, warnings))
            }
        }
    }

    fn unit(&self) -> &'static str {
        "day files"
    }

    fn per_sensor(&self, _service: ProtoPort, _days: RangeInclusive<u16>) -> Result<PerSensor> {
        Ok(PerSensor::One(self.sensor.clone()))
    }
}
