//! Who is behind a series and which of our hosts it hit: the drill-down (one
//! day's sources for one protocol/port), the per-destination view, and the
//! details table under a [`Selection`]. All read the shown days' (protocol,
//! port, source) entries, which the window shares with the loader (an `Arc`,
//! not a copy).
#![expect(
    clippy::cast_possible_truncation,
    reason = "address and key ids are u32 by design (see day.rs)"
)]

use std::{cmp::Ordering, net::IpAddr, sync::Arc};

use anyhow::{Result, bail};
use rustc_hash::{FxHashMap, FxHashSet};

use super::{
    DayAggregate, DayCounts, Detail, DetailPage, Interner, ProtoPort, Trends, Window,
    day::{DayDetails, DayKey},
};

/// What a view keeps: sources and destinations by address id (`None`: all),
/// and protocols and ports (empty: all). Built by `report::filter` from the
/// query, with the enrichment (ASN, country, labels) already resolved to
/// addresses.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub src: Option<Vec<bool>>,
    pub dst: Option<Vec<bool>>,
    pub protos: Vec<u8>,
    pub ports: Vec<u16>,
}

impl Selection {
    pub fn service(&self, s: ProtoPort) -> bool {
        (self.protos.is_empty() || self.protos.contains(&s.proto))
            && (self.ports.is_empty() || s.port().is_some_and(|p| self.ports.contains(&p)))
    }

    fn src(&self, id: u32) -> bool {
        self.src.as_ref().is_none_or(|a| a[id as usize])
    }

    fn dst(&self, id: u32) -> bool {
        self.dst.as_ref().is_none_or(|a| a[id as usize])
    }
}

/// The shown days' entries, as the window keeps them.
#[derive(Clone, Debug, Default)]
pub(super) struct DrillDays {
    /// Key id -> (protocol/port, source id): the interner's, shared.
    keys: Arc<Vec<(ProtoPort, u32)>>,
    /// Shown days with details, oldest first.
    days: Vec<(u16, Arc<DayDetails>)>,
}

impl DrillDays {
    pub(super) fn new(shown: &[&DayAggregate], interner: &Interner) -> Self {
        DrillDays {
            keys: Arc::clone(&interner.keys),
            days: shown
                .iter()
                .filter_map(|d| d.details.as_ref().map(|x| (d.day, Arc::clone(x))))
                .collect(),
        }
    }
}

/// Where a key's destinations start in its day's list.
fn dst_start(keys: &[DayKey], i: usize) -> usize {
    if i == 0 {
        0
    } else {
        keys[i - 1].dst_end as usize
    }
}

/// The order of a drill-down: ascending by one field, or descending; ties
/// by source address (in the same direction when sorting by source).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrillSort {
    pub by: DrillBy,
    pub descending: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrillBy {
    FirstSeen,
    Source,
    Destinations,
    Ports,
}

impl Default for DrillSort {
    /// When the wave started: first seen, earliest first.
    fn default() -> Self {
        DrillSort {
            by: DrillBy::FirstSeen,
            descending: false,
        }
    }
}

impl DrillSort {
    /// `first_seen`, `src`, `destinations` or `ports`; a leading `-` reverses.
    pub fn parse(v: Option<&str>) -> Result<Self> {
        let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(DrillSort::default());
        };
        let (descending, name) = match v.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, v),
        };
        let by = match name {
            "first_seen" => DrillBy::FirstSeen,
            "src" => DrillBy::Source,
            "destinations" => DrillBy::Destinations,
            "ports" => DrillBy::Ports,
            _ => bail!(
                "bad sort {v:?}: expected first_seen, src, destinations or ports (a leading - reverses)"
            ),
        };
        Ok(DrillSort { by, descending })
    }

    pub fn name(self) -> String {
        let name = match self.by {
            DrillBy::FirstSeen => "first_seen",
            DrillBy::Source => "src",
            DrillBy::Destinations => "destinations",
            DrillBy::Ports => "ports",
        };
        format!("{}{name}", if self.descending { "-" } else { "" })
    }
}

/// Most destinations listed per drill-down row (the count is always whole).
pub const DESTINATIONS_LISTED: usize = 1000;

/// One source of a day's protocol/port.
#[derive(Clone, Debug)]
pub struct DrillRow {
    pub src: IpAddr,
    pub(super) src_id: u32,
    pub first_seen: i64,
    /// Destinations it hit (those the selection keeps).
    pub destinations: u32,
    /// The first [`DESTINATIONS_LISTED`] of them, by address.
    pub destination_list: Vec<IpAddr>,
    /// Every protocol/port it tried that day (whatever the selection).
    pub ports: Vec<ProtoPort>,
}

impl DestinationRow {
    pub fn dst_id(&self) -> u32 {
        self.dst_id
    }
}

impl DrillRow {
    pub fn src_id(&self) -> u32 {
        self.src_id
    }
}

/// One page of a drill-down.
#[derive(Clone, Debug)]
pub struct DrillPage {
    pub day: u16,
    pub service: ProtoPort,
    pub sort: DrillSort,
    /// Sources matching, over all pages.
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub rows: Vec<DrillRow>,
    /// Every matching source's address id, in order (for per-source
    /// summaries such as the top ASNs, over all pages).
    pub(super) all_sources: Vec<u32>,
}

impl DrillPage {
    pub fn all_source_ids(&self) -> &[u32] {
        &self.all_sources
    }
}

/// The order of the per-destination view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DestinationSort {
    /// Most probed first.
    #[default]
    Probes,
    /// By address.
    Address,
}

impl DestinationSort {
    pub fn parse(v: Option<&str>) -> Result<Self> {
        match v.map(str::trim).filter(|v| !v.is_empty()) {
            None | Some("probes") => Ok(DestinationSort::Probes),
            Some("dst") => Ok(DestinationSort::Address),
            Some(v) => bail!("bad sort {v:?}: expected probes or dst"),
        }
    }
}

/// Per-destination ports listed per row, most probed first.
pub const DESTINATION_PORTS_LISTED: usize = 20;

/// One of our addresses.
#[derive(Clone, Debug)]
pub struct DestinationRow {
    pub dst: IpAddr,
    pub(super) dst_id: u32,
    /// Distinct (day, protocol, port, source) that reached it: the day
    /// files' rows with this destination.
    pub probes: u64,
    /// Distinct protocol/ports it was probed on.
    pub services: u32,
    /// The most probed of them, with their probes.
    pub ports: Vec<(ProtoPort, u64)>,
}

#[derive(Clone, Debug)]
pub struct DestinationPage {
    pub day: Option<u16>,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub rows: Vec<DestinationRow>,
}

/// How much each of our addresses was probed, over the shown days or on one
/// day, under a selection: the first of the two scans of a per-destination
/// page, which the server keeps for the unfiltered view.
#[derive(Clone, Debug, Default)]
pub struct DestinationCounts {
    day: Option<u16>,
    /// By address id.
    probes: Vec<u64>,
    /// Ids of the probed addresses, most probed first (then by address).
    by_probes: Vec<u32>,
}

impl Window {
    /// Distinct sources per protocol/port on each shown day that the
    /// selection keeps (a source counts when it hit a kept destination).
    pub fn selected_counts(&self, sel: &Selection) -> Vec<(u16, Vec<(ProtoPort, u32)>)> {
        let keys = &self.drill.keys;
        self.drill
            .days
            .iter()
            .map(|(day, details)| {
                let mut counts: Vec<(ProtoPort, u32)> = Vec::new();
                for (i, k) in details.keys.iter().enumerate() {
                    let (service, src) = keys[k.key as usize];
                    if !sel.service(service) || !sel.src(src) {
                        continue;
                    }
                    if sel.dst.is_some()
                        && !details.dsts[dst_start(&details.keys, i)..k.dst_end as usize]
                            .iter()
                            .any(|&d| sel.dst(d))
                    {
                        continue;
                    }
                    // Keys come grouped by protocol/port.
                    match counts.last_mut() {
                        Some((s, n)) if *s == service => *n += 1,
                        _ => counts.push((service, 1)),
                    }
                }
                (*day, counts)
            })
            .collect()
    }

    /// The window as a selection sees it, for the chart, the spikes and the
    /// series: rebuilt by [`Trends::build`] from [`Window::selected_counts`].
    /// Only shown days keep their sources, so a filtered spike's baseline is
    /// the shown days before it (the unfiltered one reaches further back).
    /// The details, drill-down and destinations take the selection
    /// themselves; the newest-day lists and the by-hour view stay unfiltered
    /// (shared, not copied).
    pub fn selected(&self, sel: &Selection) -> Window {
        let counts = self.selected_counts(sel);
        let days: Vec<DayCounts<'_>> = counts
            .iter()
            .map(|(day, services)| DayCounts {
                day: *day,
                services,
            })
            .collect();
        let trends = Trends::build(&days, &self.options);
        Window {
            options: self.options,
            first_day: self.first_day,
            last_day: self.last_day,
            covered: self.covered.clone(),
            rows: self.rows,
            series: trends.series,
            spikes: trends.spikes,
            today: self.today.clone(),
            details: Vec::new(),
            ips: Arc::clone(&self.ips),
            shown_days: Arc::clone(&self.shown_days),
            drill: self.drill.clone(),
        }
    }

    /// Every address the window knows (sources and destinations), by id.
    pub fn addresses(&self) -> &[IpAddr] {
        &self.ips
    }

    /// Shown days that have their (protocol, port, source) entries.
    pub fn drill_days(&self) -> impl Iterator<Item = u16> + '_ {
        self.drill.days.iter().map(|(d, _)| *d)
    }

    fn day_details(&self, day: u16) -> Option<&DayDetails> {
        self.drill
            .days
            .iter()
            .find(|(d, _)| *d == day)
            .map(|(_, x)| x.as_ref())
    }

    /// Sources of `service` on `day` that the selection keeps, one page in
    /// `sort` order. `None` when the day is not shown.
    pub fn drill(
        &self,
        day: u16,
        service: ProtoPort,
        sel: &Selection,
        sort: DrillSort,
        offset: usize,
        limit: usize,
    ) -> Option<DrillPage> {
        let details = self.day_details(day)?;
        let keys = &self.drill.keys;
        let day_keys = &details.keys;
        // A day's keys are sorted by protocol/port (day.rs), so its sources
        // for one are a contiguous run.
        let lo = day_keys.partition_point(|k| keys[k.key as usize].0 < service);
        let hi = day_keys.partition_point(|k| keys[k.key as usize].0 <= service);
        let mut rows: Vec<(usize, u32, i64, u32)> = Vec::new();
        if sel.service(service) {
            for i in lo..hi {
                let k = day_keys[i];
                let src = keys[k.key as usize].1;
                if !sel.src(src) {
                    continue;
                }
                let dsts = &details.dsts[dst_start(day_keys, i)..k.dst_end as usize];
                let hit = if sel.dst.is_some() {
                    dsts.iter().filter(|&&d| sel.dst(d)).count() as u32
                } else {
                    dsts.len() as u32
                };
                if hit > 0 {
                    rows.push((i, src, k.first_seen, hit));
                }
            }
        }

        // Ports each source tried that day: one pass over the day, only
        // when the order needs it for every row (else for the page below).
        let port_counts = (sort.by == DrillBy::Ports).then(|| {
            let mut counts: FxHashMap<u32, u32> = rows.iter().map(|r| (r.1, 0)).collect();
            for k in day_keys {
                if let Some(c) = counts.get_mut(&keys[k.key as usize].1) {
                    *c += 1;
                }
            }
            counts
        });
        let ips = &self.ips;
        let cmp = |a: &(usize, u32, i64, u32), b: &(usize, u32, i64, u32)| -> Ordering {
            let primary = match sort.by {
                DrillBy::FirstSeen => a.2.cmp(&b.2),
                DrillBy::Source => Ordering::Equal,
                DrillBy::Destinations => a.3.cmp(&b.3),
                DrillBy::Ports => {
                    let c = port_counts.as_ref().expect("counted for this order");
                    c[&a.1].cmp(&c[&b.1])
                }
            };
            let primary = if sort.descending {
                primary.reverse()
            } else {
                primary
            };
            let by_src = ips[a.1 as usize].cmp(&ips[b.1 as usize]);
            primary.then(if sort.by == DrillBy::Source && sort.descending {
                by_src.reverse()
            } else {
                by_src
            })
        };
        rows.sort_unstable_by(cmp);
        let total = rows.len();
        let all_sources = rows.iter().map(|r| r.1).collect();
        let page: Vec<_> = rows.into_iter().skip(offset).take(limit).collect();

        let wanted: FxHashSet<u32> = page.iter().map(|r| r.1).collect();
        let mut ports: FxHashMap<u32, Vec<ProtoPort>> = FxHashMap::default();
        for k in day_keys {
            let (s, src) = keys[k.key as usize];
            if wanted.contains(&src) {
                ports.entry(src).or_default().push(s);
            }
        }
        let rows = page
            .into_iter()
            .map(|(i, src, first_seen, hit)| {
                let mut list: Vec<IpAddr> = details.dsts
                    [dst_start(day_keys, i)..day_keys[i].dst_end as usize]
                    .iter()
                    .filter(|&&d| sel.dst(d))
                    .map(|&d| ips[d as usize])
                    .collect();
                list.sort_unstable();
                list.truncate(DESTINATIONS_LISTED);
                DrillRow {
                    src: ips[src as usize],
                    src_id: src,
                    first_seen,
                    destinations: hit,
                    destination_list: list,
                    ports: ports.remove(&src).unwrap_or_default(),
                }
            })
            .collect();
        Some(DrillPage {
            day,
            service,
            sort,
            total,
            offset,
            limit,
            rows,
            all_sources,
        })
    }

    /// Folds every entry of the shown days (or of `day`) that the selection
    /// keeps by protocol/port and source into a `T` per worker (days are
    /// split between the cores): `f(acc, service, destinations)`.
    fn fold_entries<T: Send>(
        &self,
        day: Option<u16>,
        sel: &Selection,
        init: impl Fn() -> T + Sync,
        f: impl Fn(&mut T, ProtoPort, &[u32]) + Sync,
    ) -> Vec<T> {
        let keys = &self.drill.keys;
        let days: Vec<&DayDetails> = self
            .drill
            .days
            .iter()
            .filter(|(d, _)| day.is_none_or(|day| day == *d))
            .map(|(_, x)| x.as_ref())
            .collect();
        let workers = std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .min(days.len())
            .max(1);
        let (init, f) = (&init, &f);
        std::thread::scope(|scope| {
            let handles: Vec<_> = days
                .chunks(days.len().div_ceil(workers).max(1))
                .map(|part| {
                    scope.spawn(move || {
                        let mut acc = init();
                        for details in part {
                            for (i, k) in details.keys.iter().enumerate() {
                                let (service, src) = keys[k.key as usize];
                                if sel.service(service) && sel.src(src) {
                                    f(
                                        &mut acc,
                                        service,
                                        &details.dsts
                                            [dst_start(&details.keys, i)..k.dst_end as usize],
                                    );
                                }
                            }
                        }
                        acc
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a destinations worker"))
                .collect()
        })
    }

    /// Our addresses by how much they were probed, over the shown days or
    /// on `day`, under the selection.
    pub fn destinations(
        &self,
        day: Option<u16>,
        sel: &Selection,
        sort: DestinationSort,
        offset: usize,
        limit: usize,
    ) -> DestinationPage {
        let counts = self.destination_counts(day, sel);
        self.destination_page(&counts, sel, sort, offset, limit)
    }

    /// The probes per address under `sel`: one scan of the days' entries.
    pub fn destination_counts(&self, day: Option<u16>, sel: &Selection) -> DestinationCounts {
        let n = self.ips.len();
        let mut probes = vec![0u64; n];
        for part in self.fold_entries(
            day,
            sel,
            || vec![0u64; n],
            |probes, _, dsts| {
                for &d in dsts {
                    if sel.dst(d) {
                        probes[d as usize] += 1;
                    }
                }
            },
        ) {
            for (total, p) in probes.iter_mut().zip(part) {
                *total += p;
            }
        }
        let mut by_probes: Vec<u32> = (0..probes.len() as u32)
            .filter(|&d| probes[d as usize] > 0)
            .collect();
        let ips = &self.ips;
        by_probes.sort_unstable_by(|&a, &b| {
            probes[b as usize]
                .cmp(&probes[a as usize])
                .then(ips[a as usize].cmp(&ips[b as usize]))
        });
        DestinationCounts {
            day,
            probes,
            by_probes,
        }
    }

    /// One page of `counts` (made under the same `sel`) in `sort` order, with
    /// the ports of the page's addresses: a second scan, for those only.
    pub fn destination_page(
        &self,
        counts: &DestinationCounts,
        sel: &Selection,
        sort: DestinationSort,
        offset: usize,
        limit: usize,
    ) -> DestinationPage {
        let (day, probes, ips) = (counts.day, &counts.probes, &self.ips);
        let mut ids = counts.by_probes.clone();
        if sort == DestinationSort::Address {
            ids.sort_unstable_by(|&a, &b| ips[a as usize].cmp(&ips[b as usize]));
        }
        let total = ids.len();
        let page: Vec<u32> = ids.into_iter().skip(offset).take(limit).collect();
        let mut on_page = vec![false; self.ips.len()];
        for &d in &page {
            on_page[d as usize] = true;
        }
        let on_page = &on_page;
        let mut per_port: FxHashMap<(u32, ProtoPort), u64> = FxHashMap::default();
        for part in self.fold_entries(
            day,
            sel,
            FxHashMap::<(u32, ProtoPort), u64>::default,
            |per_port, service, dsts| {
                for &d in dsts {
                    if on_page[d as usize] && sel.dst(d) {
                        *per_port.entry((d, service)).or_default() += 1;
                    }
                }
            },
        ) {
            for (k, n) in part {
                *per_port.entry(k).or_default() += n;
            }
        }
        let mut ports: FxHashMap<u32, Vec<(ProtoPort, u64)>> = FxHashMap::default();
        for ((d, s), n) in per_port {
            ports.entry(d).or_default().push((s, n));
        }
        let rows = page
            .into_iter()
            .map(|d| {
                let mut list = ports.remove(&d).unwrap_or_default();
                list.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                let services = list.len() as u32;
                list.truncate(DESTINATION_PORTS_LISTED);
                DestinationRow {
                    dst: ips[d as usize],
                    dst_id: d,
                    probes: probes[d as usize],
                    services,
                    ports: list,
                }
            })
            .collect();
        DestinationPage {
            day,
            total,
            offset,
            limit,
            rows,
        }
    }

    /// The details table under a selection. Without a destination part the
    /// window's rows are filtered; with one, rows are rebuilt from the days
    /// so first seen, days and destinations count only matching destinations.
    pub fn details_selected(&self, sel: &Selection, offset: usize, limit: usize) -> DetailPage {
        let page = |rows: &mut dyn Iterator<Item = Detail>| {
            let mut total = 0;
            let mut out = Vec::with_capacity(limit.min(1000));
            for d in rows {
                if total >= offset && out.len() < limit {
                    out.push(d);
                }
                total += 1;
            }
            DetailPage {
                total,
                offset,
                limit,
                rows: out,
            }
        };
        if sel.dst.is_none() {
            return page(
                &mut self
                    .details
                    .iter()
                    .filter(|d| sel.service(d.service) && sel.src(d.src))
                    .copied(),
            );
        }
        let days: Vec<(u16, &DayDetails)> = self
            .drill
            .days
            .iter()
            .map(|(d, x)| (*d, x.as_ref()))
            .collect();
        let rows = super::details::build_details_of(
            &days,
            &self.drill.keys,
            self.ips.len(),
            |service, src| sel.service(service) && sel.src(src),
            sel.dst.as_deref(),
        );
        page(&mut rows.into_iter())
    }
}

impl Detail {
    /// The source's address id (for the enrichment's per-address tables).
    pub fn src_id(&self) -> u32 {
        self.src
    }
}
