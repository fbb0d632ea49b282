//! The details table: every (protocol, port, source) over the shown days,
//! its filters and its pages.
#![expect(
    clippy::cast_possible_truncation,
    reason = "day indices of a window (at most a few hundred days) and u32 ids, as in day.rs"
)]

use std::net::IpAddr;

use anyhow::{Context as _, Result, bail};
use ipnet::IpNet;
use tsusen_common::proto;

use super::{DayAggregate, Interner, ProtoPort, Window, day::DayDetails};

/// One (protocol, port, source) over the shown days.
#[derive(Clone, Copy, Debug)]
pub struct Detail {
    pub service: ProtoPort,
    pub(super) src: u32,
    pub first_seen: i64,
    pub last_day: u16,
    pub days: u16,
    /// Distinct destinations over the shown days.
    pub destinations: u32,
}

impl Window {
    pub fn detail_count(&self) -> usize {
        self.details.len()
    }

    pub fn source_of(&self, detail: &Detail) -> IpAddr {
        self.ips[detail.src as usize]
    }

    /// One page of the details table, filtered.
    pub fn details_page(&self, filter: &DetailFilter, offset: usize, limit: usize) -> DetailPage {
        // Address filters test each interned address once, not each row.
        let allowed: Option<Vec<bool>> = filter
            .src
            .map(|net| self.ips.iter().map(|ip| net.contains(ip)).collect());
        let matches = |d: &&Detail| {
            filter.proto.is_none_or(|p| d.service.proto == p)
                && filter.port.is_none_or(|p| d.service.port() == Some(p))
                && allowed.as_ref().is_none_or(|a| a[d.src as usize])
        };
        let mut total = 0;
        let mut rows = Vec::with_capacity(limit.min(1000));
        for detail in self.details.iter().filter(matches) {
            if total >= offset && rows.len() < limit {
                rows.push(*detail);
            }
            total += 1;
        }
        DetailPage {
            total,
            offset,
            limit,
            rows,
        }
    }
}

pub(super) fn build_details(shown: &[&DayAggregate], interner: &Interner) -> Vec<Detail> {
    let days: Vec<(u16, &DayDetails)> = shown
        .iter()
        .filter_map(|d| d.details.as_deref().map(|x| (d.day, x)))
        .collect();
    build_details_of(&days, &interner.keys, interner.ips.len(), |_, _| true, None)
}

/// The details rows of `days` for the keys `keep_key` keeps, counting only
/// the destinations `keep_dst` keeps (all when `None`); a key that hit none
/// of them that day does not count that day.
pub(super) fn build_details_of(
    days: &[(u16, &DayDetails)],
    keys: &[(ProtoPort, u32)],
    addresses: usize,
    keep_key: impl Fn(ProtoPort, u32) -> bool,
    keep_dst: Option<&[bool]>,
) -> Vec<Detail> {
    let n = keys.len();
    // Destinations of one key on one day that the filter keeps.
    let hits = |dsts: &[u32]| -> u32 {
        match keep_dst {
            None => dsts.len() as u32,
            Some(keep) => dsts.iter().filter(|&&d| keep[d as usize]).count() as u32,
        }
    };
    let mut days_seen = vec![0u16; n];
    let mut first_seen = vec![i64::MAX; n];
    let mut last_day = vec![0u16; n];
    let mut destinations = vec![0u32; n];
    for &(day, details) in days {
        let mut start = 0;
        for k in &details.keys {
            let i = k.key as usize;
            let range = start as usize..k.dst_end as usize;
            start = k.dst_end;
            let (service, src) = keys[i];
            if !keep_key(service, src) {
                continue;
            }
            let hit = hits(&details.dsts[range]);
            if hit == 0 {
                continue;
            }
            days_seen[i] += 1;
            first_seen[i] = first_seen[i].min(k.first_seen);
            last_day[i] = last_day[i].max(day);
            // Exact when seen on one day; keys seen on several days are
            // counted again below as the union of their destinations.
            destinations[i] = hit;
        }
    }

    // Union of destinations for keys seen on more than one day: gather their
    // (day, range) occurrences per key, then count each destination once,
    // marking it with the key's id in `stamp`.
    let mut starts = vec![0u32; n + 1];
    for (i, &d) in days_seen.iter().enumerate() {
        starts[i + 1] = starts[i] + if d > 1 { u32::from(d) } else { 0 };
    }
    if starts[n] > 0 {
        let mut occurrences = vec![(0u16, 0u32, 0u32); starts[n] as usize];
        let mut fill = starts.clone();
        for (day_index, &(_, details)) in days.iter().enumerate() {
            let mut start = 0;
            for k in &details.keys {
                let i = k.key as usize;
                let (from, to) = (start, k.dst_end);
                start = k.dst_end;
                // A day it hit none of the kept destinations is no occurrence.
                if days_seen[i] > 1
                    && (keep_dst.is_none() || hits(&details.dsts[from as usize..to as usize]) > 0)
                {
                    occurrences[fill[i] as usize] = (day_index as u16, from, to);
                    fill[i] += 1;
                }
            }
        }
        let mut stamp = vec![u32::MAX; addresses];
        for key in 0..n {
            if days_seen[key] < 2 {
                continue;
            }
            let mut count = 0;
            for &(day_index, from, to) in
                &occurrences[starts[key] as usize..starts[key + 1] as usize]
            {
                let dsts = &days[usize::from(day_index)].1.dsts;
                for &dst in &dsts[from as usize..to as usize] {
                    if keep_dst.is_none_or(|keep| keep[dst as usize])
                        && stamp[dst as usize] != key as u32
                    {
                        stamp[dst as usize] = key as u32;
                        count += 1;
                    }
                }
            }
            destinations[key] = count;
        }
    }

    let mut details: Vec<Detail> = (0..n)
        .filter(|&i| days_seen[i] > 0)
        .map(|i| {
            let (service, src) = keys[i];
            Detail {
                service,
                src,
                first_seen: first_seen[i],
                last_day: last_day[i],
                days: days_seen[i],
                destinations: destinations[i],
            }
        })
        .collect();
    details.sort_unstable_by(detail_order);
    details
}

/// The details table's order: most recent, most persistent, widest first;
/// ids break ties so the order is stable from one build to the next.
pub(super) fn detail_order(a: &Detail, b: &Detail) -> std::cmp::Ordering {
    (b.last_day, b.days, b.destinations)
        .cmp(&(a.last_day, a.days, a.destinations))
        .then(a.service.cmp(&b.service))
        .then(a.src.cmp(&b.src))
}

/// Filters for the details table; all given ones must match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetailFilter {
    /// Source address or network.
    pub src: Option<IpNet>,
    pub port: Option<u16>,
    pub proto: Option<u8>,
}

impl DetailFilter {
    /// Parse the query's values; empty means "any".
    pub fn parse(ip: Option<&str>, port: Option<&str>, proto: Option<&str>) -> Result<Self> {
        fn given(v: Option<&str>) -> Option<&str> {
            v.map(str::trim).filter(|v| !v.is_empty())
        }
        let src = given(ip)
            .map(|v| {
                v.parse::<IpNet>()
                    .or_else(|_| v.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "bad address filter {v:?}: expected an address or a CIDR like 198.51.100.0/24"
                        )
                    })
            })
            .transpose()?;
        let port = given(port)
            .map(|v| {
                v.parse::<u16>()
                    .with_context(|| format!("bad port filter {v:?}: expected 0-65535"))
            })
            .transpose()?;
        let proto = match given(proto) {
            None => None,
            Some(v) => match proto::from_column(v) {
                Some(p) => Some(p),
                None => bail!("bad protocol filter {v:?}: expected a name like TCP or a number"),
            },
        };
        Ok(DetailFilter { src, port, proto })
    }
}

/// One page of the filtered details table.
#[derive(Clone, Debug)]
pub struct DetailPage {
    /// Rows matching the filter, over all pages.
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub rows: Vec<Detail>,
}
