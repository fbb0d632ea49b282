//! Compact per-day aggregates, and the window (trends, spikes, today, details)
//! built from them. Raw rows are never kept: a day is reduced to distinct
//! source counts per protocol/port and, for the shown days, one entry per
//! (protocol, port, source) with its destinations as interned ids.

use std::{fmt, net::IpAddr, sync::Arc};

use anyhow::{Context as _, Result, bail};
use ipnet::IpNet;
use rustc_hash::FxHashMap;
use tsusen_common::{classify::has_ports, proto};

use super::spikes::{self, Baseline};
use crate::store::row::{ProtoColumn, Row, SECS_PER_DAY, day_name};

/// A protocol and destination port (0 for protocols without ports): one series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtoPort {
    pub proto: u8,
    pub port: u16,
}

impl ProtoPort {
    fn packed(self) -> u32 {
        (u32::from(self.proto) << 16) | u32::from(self.port)
    }

    fn from_packed(p: u32) -> Self {
        ProtoPort {
            proto: (p >> 16) as u8,
            port: p as u16,
        }
    }

    /// The port, for protocols that have one.
    pub fn port(self) -> Option<u16> {
        has_ports(self.proto).then_some(self.port)
    }
}

impl fmt::Display for ProtoPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", ProtoColumn(self.proto))?;
        match self.port() {
            Some(port) => write!(f, " {port}"),
            None => Ok(()),
        }
    }
}

/// One row reduced to day-local ids, 16 bytes, sorted by `key`.
#[derive(Clone, Copy)]
struct Probe {
    /// Protocol/port in the high 32 bits, source id in the low 32.
    key: u64,
    dst: u32,
    /// Seconds from the start of the file's day (rows of a day file belong
    /// to that day; clamped, should one not).
    offset: i32,
}

impl Probe {
    fn service(&self) -> u32 {
        (self.key >> 32) as u32
    }
}

/// Builds one day's aggregate from its rows. Ids are local to the day so
/// files can be read in parallel; [`Interner::adopt`] makes them global.
pub struct DayBuilder {
    day: u16,
    with_details: bool,
    /// IPv4 keyed by its u32 (most addresses, and the cheapest hash).
    v4_ids: FxHashMap<u32, u32>,
    v6_ids: FxHashMap<u128, u32>,
    ips: Vec<IpAddr>,
    probes: Vec<Probe>,
}

/// A day with day-local ids, as a reader thread hands it over.
pub struct LocalDay {
    day: u16,
    ips: Vec<IpAddr>,
    services: Vec<(ProtoPort, u32)>,
    /// (service, src, first seen, end of its destinations in `dsts`).
    keys: Vec<(u32, u32, i64, u32)>,
    dsts: Vec<u32>,
    rows: u64,
    with_details: bool,
}

impl DayBuilder {
    /// `with_details`: keep sources and destinations per (protocol, port),
    /// not only the distinct-source counts a baseline day needs.
    pub fn new(day: u16, with_details: bool) -> Self {
        DayBuilder {
            day,
            with_details,
            v4_ids: FxHashMap::default(),
            v6_ids: FxHashMap::default(),
            ips: Vec::new(),
            probes: Vec::new(),
        }
    }

    fn intern(&mut self, ip: IpAddr) -> u32 {
        let next = self.ips.len() as u32;
        let id = match ip {
            IpAddr::V4(v4) => *self.v4_ids.entry(v4.to_bits()).or_insert(next),
            IpAddr::V6(v6) => *self.v6_ids.entry(v6.to_bits()).or_insert(next),
        };
        if id == next {
            self.ips.push(ip);
        }
        id
    }

    pub fn add(&mut self, row: &Row) {
        let src = self.intern(row.src_ip);
        let dst = if self.with_details {
            self.intern(row.dst_ip)
        } else {
            0
        };
        let service = ProtoPort {
            proto: row.proto,
            port: row.dst_port,
        }
        .packed();
        let offset = (row.timestamp - i64::from(self.day) * SECS_PER_DAY)
            .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
        self.probes.push(Probe {
            key: u64::from(service) << 32 | u64::from(src),
            dst,
            offset,
        });
    }

    pub fn finish(mut self) -> LocalDay {
        self.probes.sort_unstable_by_key(|p| p.key);
        let day_start = i64::from(self.day) * SECS_PER_DAY;
        let mut services = Vec::new();
        let mut keys = Vec::new();
        let mut dsts = Vec::new();
        // Marks destinations already counted for the current key: a tuple is
        // once per day file, but a hand-edited file may repeat one.
        let mut stamp = vec![u32::MAX; if self.with_details { self.ips.len() } else { 0 }];
        let probes = &self.probes;
        let mut i = 0;
        while i < probes.len() {
            let service = probes[i].service();
            let mut sources = 0u32;
            while i < probes.len() && probes[i].service() == service {
                let key = probes[i].key;
                let mut first_offset = i32::MAX;
                sources += 1;
                while i < probes.len() && probes[i].key == key {
                    let p = probes[i];
                    first_offset = first_offset.min(p.offset);
                    if self.with_details && stamp[p.dst as usize] != keys.len() as u32 {
                        stamp[p.dst as usize] = keys.len() as u32;
                        dsts.push(p.dst);
                    }
                    i += 1;
                }
                if self.with_details {
                    keys.push((
                        service,
                        key as u32,
                        day_start + i64::from(first_offset),
                        dsts.len() as u32,
                    ));
                }
            }
            services.push((ProtoPort::from_packed(service), sources));
        }
        LocalDay {
            day: self.day,
            ips: self.ips,
            services,
            keys,
            dsts,
            rows: self.probes.len() as u64,
            with_details: self.with_details,
        }
    }
}

/// One (protocol, port, source) on one day.
#[derive(Clone, Copy, Debug)]
struct DayKey {
    key: u32,
    first_seen: i64,
    /// End of this key's destinations in [`DayDetails::dsts`]; the start is
    /// the previous key's end.
    dst_end: u32,
}

#[derive(Debug, Default)]
struct DayDetails {
    keys: Vec<DayKey>,
    dsts: Vec<u32>,
}

/// One day, aggregated, with global ids.
#[derive(Debug)]
pub struct DayAggregate {
    pub day: u16,
    pub rows: u64,
    /// Distinct sources per protocol/port, sorted by protocol/port.
    pub services: Vec<(ProtoPort, u32)>,
    details: Option<DayDetails>,
}

impl DayAggregate {
    pub fn has_details(&self) -> bool {
        self.details.is_some()
    }
}

/// Global ids for addresses and (protocol, port, source) keys.
#[derive(Default)]
pub struct Interner {
    ip_ids: FxHashMap<IpAddr, u32>,
    ips: Vec<IpAddr>,
    key_ids: FxHashMap<u64, u32>,
    /// Key id -> (protocol/port, source address id).
    keys: Vec<(ProtoPort, u32)>,
}

impl Interner {
    fn ip(&mut self, ip: IpAddr) -> u32 {
        let next = self.ips.len() as u32;
        *self.ip_ids.entry(ip).or_insert_with(|| {
            self.ips.push(ip);
            next
        })
    }

    /// Take over a day read with local ids.
    pub fn adopt(&mut self, local: LocalDay) -> DayAggregate {
        let details = local.with_details.then(|| {
            let ids: Vec<u32> = local.ips.iter().map(|&ip| self.ip(ip)).collect();
            let keys = local
                .keys
                .iter()
                .map(|&(service, src, first_seen, dst_end)| {
                    let src = ids[src as usize];
                    let next = self.keys.len() as u32;
                    let key = *self
                        .key_ids
                        .entry(u64::from(service) << 32 | u64::from(src))
                        .or_insert_with(|| {
                            self.keys.push((ProtoPort::from_packed(service), src));
                            next
                        });
                    DayKey {
                        key,
                        first_seen,
                        dst_end,
                    }
                })
                .collect();
            let dsts = local.dsts.iter().map(|&d| ids[d as usize]).collect();
            DayDetails { keys, dsts }
        });
        DayAggregate {
            day: local.day,
            rows: local.rows,
            services: local.services,
            details,
        }
    }
}

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

/// One (protocol, port, source) over the shown days.
#[derive(Clone, Copy, Debug)]
pub struct Detail {
    pub service: ProtoPort,
    src: u32,
    pub first_seen: i64,
    pub last_day: u16,
    pub days: u16,
    /// Distinct destinations over the shown days.
    pub destinations: u32,
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
    details: Vec<Detail>,
    ips: Arc<Vec<IpAddr>>,
}

/// Shown at most in the "today" lists.
const TODAY_TOP: usize = 20;

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

fn build_details(shown: &[&DayAggregate], interner: &Interner) -> Vec<Detail> {
    let n = interner.keys.len();
    let mut days_seen = vec![0u16; n];
    let mut first_seen = vec![i64::MAX; n];
    let mut last_day = vec![0u16; n];
    let mut destinations = vec![0u32; n];
    for day in shown {
        let Some(details) = &day.details else {
            continue;
        };
        let mut start = 0;
        for k in &details.keys {
            let i = k.key as usize;
            days_seen[i] += 1;
            first_seen[i] = first_seen[i].min(k.first_seen);
            last_day[i] = last_day[i].max(day.day);
            // Exact when seen on one day; keys seen on several days are
            // counted again below as the union of their destinations.
            destinations[i] = k.dst_end - start;
            start = k.dst_end;
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
        for (day_index, day) in shown.iter().enumerate() {
            let Some(details) = &day.details else {
                continue;
            };
            let mut start = 0;
            for k in &details.keys {
                let i = k.key as usize;
                if days_seen[i] > 1 {
                    occurrences[fill[i] as usize] = (day_index as u16, start, k.dst_end);
                    fill[i] += 1;
                }
                start = k.dst_end;
            }
        }
        let mut stamp = vec![u32::MAX; interner.ips.len()];
        for key in 0..n {
            if days_seen[key] < 2 {
                continue;
            }
            let mut count = 0;
            for &(day_index, from, to) in
                &occurrences[starts[key] as usize..starts[key + 1] as usize]
            {
                let dsts = &shown[usize::from(day_index)]
                    .details
                    .as_ref()
                    .expect("occurrences come from days with details")
                    .dsts;
                for &dst in &dsts[from as usize..to as usize] {
                    if stamp[dst as usize] != key as u32 {
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
            let (service, src) = interner.keys[i];
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
    // Most recent, most persistent, widest first; ids break ties so the order
    // is stable from one build to the next.
    details.sort_unstable_by(|a, b| {
        (b.last_day, b.days, b.destinations)
            .cmp(&(a.last_day, a.days, a.destinations))
            .then(a.service.cmp(&b.service))
            .then(a.src.cmp(&b.src))
    });
    details
}

fn build_today(
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

/// `YYYY-MM-DD HH:MM:SS` (UTC) of Unix seconds.
pub fn utc_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).map_or_else(
        || secs.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

/// The UTC day of Unix seconds, as a day number.
pub fn day_of(secs: i64) -> u16 {
    secs.div_euclid(SECS_PER_DAY) as u16
}

/// `YYYY-MM-DD` of a day number (re-exported for views).
pub fn date(day: u16) -> String {
    day_name(day)
}
