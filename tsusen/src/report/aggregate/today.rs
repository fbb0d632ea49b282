//! The newest day at a glance: its top ports, ports new in the window, and
//! the busiest sources.

use std::net::IpAddr;

use rustc_hash::FxHashMap;

use super::{DayAggregate, Interner, ProtoPort, Series};

/// A source's activity on the newest day.
#[derive(Clone, Debug)]
pub struct Busiest {
    pub src: IpAddr,
    /// Distinct protocol/ports it probed.
    pub ports: u32,
    /// Distinct (protocol, port, destination) it probed.
    pub probes: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Today {
    pub day: u16,
    pub top: Vec<(ProtoPort, u32)>,
    /// Protocol/ports with sources today and on no earlier day of the window.
    pub new: Vec<(ProtoPort, u32)>,
    pub new_total: usize,
    pub busiest: Vec<Busiest>,
}

/// Shown at most in the "today" lists.
const TODAY_TOP: usize = 20;

pub(super) fn build_today(
    series: &[Series],
    shown: &[&DayAggregate],
    last_day: u16,
    interner: &Interner,
) -> Today {
    let last = series.first().map_or(0, |s| s.counts.len() - 1);
    let mut top: Vec<(ProtoPort, u32)> = series
        .iter()
        .filter(|s| s.counts[last] > 0)
        .map(|s| (s.service, s.counts[last]))
        .collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut new: Vec<(ProtoPort, u32)> = series
        .iter()
        .filter(|s| s.counts[last] > 0 && s.counts[..last].iter().all(|&n| n == 0))
        .map(|s| (s.service, s.counts[last]))
        .collect();
    new.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let new_total = new.len();
    new.truncate(TODAY_TOP);
    top.truncate(TODAY_TOP);

    let mut per_source: FxHashMap<u32, (u32, u64)> = FxHashMap::default();
    if let Some(details) = shown
        .iter()
        .find(|d| d.day == last_day)
        .and_then(|d| d.details.as_ref())
    {
        let mut start = 0;
        for k in &details.keys {
            let src = interner.keys[k.key as usize].1;
            let entry = per_source.entry(src).or_default();
            entry.0 += 1;
            entry.1 += u64::from(k.dst_end - start);
            start = k.dst_end;
        }
    }
    let mut busiest: Vec<Busiest> = per_source
        .into_iter()
        .map(|(src, (ports, probes))| Busiest {
            src: interner.ips[src as usize],
            ports,
            probes,
        })
        .collect();
    busiest.sort_by(|a, b| {
        (b.probes, b.ports)
            .cmp(&(a.probes, a.ports))
            .then(a.src.cmp(&b.src))
    });
    busiest.truncate(TODAY_TOP);
    Today {
        day: last_day,
        top,
        new,
        new_total,
        busiest,
    }
}
