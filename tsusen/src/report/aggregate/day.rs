//! One day file reduced to a [`DayAggregate`]: distinct sources per
//! protocol/port and, for shown days, one entry per (protocol, port, source)
//! with its destinations. [`DayBuilder`] works with day-local ids (files are
//! read in parallel); the [`Interner`] makes them global.
#![expect(
    clippy::cast_possible_truncation,
    reason = "ids, counts and offsets are u32/i32 by design (fewer than 2^32 addresses and rows in a day, offsets within a day); packed fields are unpacked"
)]

use std::{fmt, net::IpAddr, sync::Arc};

use rustc_hash::FxHashMap;
use tsusen_common::classify::has_ports;

use crate::dayfile::{ProtoColumn, Row, SECS_PER_DAY};

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

impl LocalDay {
    /// A baseline day from distinct-source counts alone, for a source that
    /// counts them itself (ClickHouse): no details.
    pub fn from_counts(day: u16, mut services: Vec<(ProtoPort, u32)>, rows: u64) -> LocalDay {
        services.sort_unstable_by_key(|&(service, _)| service);
        LocalDay {
            day,
            ips: Vec::new(),
            services,
            keys: Vec::new(),
            dsts: Vec::new(),
            rows,
            with_details: false,
        }
    }

    /// Set the day's row count, for a source whose builder saw each
    /// (protocol, port, source, destination) once while it stores more rows
    /// (one per sensor that saw it).
    pub fn set_rows(&mut self, rows: u64) {
        self.rows = rows;
    }
}

/// One (protocol, port, source) on one day.
#[derive(Clone, Copy, Debug)]
pub(super) struct DayKey {
    pub(super) key: u32,
    pub(super) first_seen: i64,
    /// End of this key's destinations in [`DayDetails::dsts`]; the start is
    /// the previous key's end.
    pub(super) dst_end: u32,
}

#[derive(Debug, Default)]
pub(super) struct DayDetails {
    pub(super) keys: Vec<DayKey>,
    pub(super) dsts: Vec<u32>,
}

/// One day, aggregated, with global ids.
#[derive(Debug)]
pub struct DayAggregate {
    pub day: u16,
    pub rows: u64,
    /// Distinct sources per protocol/port, sorted by protocol/port.
    pub services: Vec<(ProtoPort, u32)>,
    /// Keys are grouped by protocol/port in the order of `services`, each
    /// group as long as its count (the time-of-day view relies on it).
    /// Shared with the windows built from it (the drill-down reads them).
    pub(super) details: Option<Arc<DayDetails>>,
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
    pub(super) ips: Vec<IpAddr>,
    key_ids: FxHashMap<u64, u32>,
    /// Key id -> (protocol/port, source address id); shared with the
    /// windows built from it, copied on write.
    pub(super) keys: Arc<Vec<(ProtoPort, u32)>>,
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
                            Arc::make_mut(&mut self.keys)
                                .push((ProtoPort::from_packed(service), src));
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
            Arc::new(DayDetails { keys, dsts })
        });
        DayAggregate {
            day: local.day,
            rows: local.rows,
            services: local.services,
            details,
        }
    }
}
