//! `--metrics`: the sensor's counters in the Prometheus text format
//! (prometheus-client), served at `/metrics`.
//!
//! Two kinds of values. What the kernel counts (packets, candidates, skips,
//! new tuples, failed inserts) and the interfaces' receive counters are read
//! when `/metrics` is scraped, by a collector with its own handle on the
//! STATS map, so `rate()` works whatever `--flush-interval` is. What only a
//! flush knows (rows written, pending, evictions, the map's fill) moves at
//! each flush.

use std::{fmt, net::TcpListener, path::Path, sync::Arc, time::Duration};

use anyhow::Result;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet, text::encode},
    metrics::{MetricType, counter::Counter, gauge::Gauge, histogram::Histogram, info::Info},
    registry::{Registry, Unit},
};
use tsusen_common::{
    Stat,
    stats::{StatKind, packets},
};

use crate::{
    capture::stats::KernelStats,
    config::Settings,
    http::{auth::Auth, connections},
};

/// What the daemon knows at start and the metrics need.
pub struct Setup {
    /// A handle of the metrics' own on the kernel's counters.
    pub kernel: KernelStats,
    /// The watched interfaces, for their receive counters.
    pub ifaces: Vec<String>,
    pub flush_interval: Duration,
    /// Entries the first-seen map can hold.
    pub map_capacity: u32,
    /// The shipper's metrics, with `--clickhouse`.
    pub ship: Option<crate::ship::ShipMetrics>,
}

/// What a flush knows, handed to the metrics. A plain struct: a new value is
/// a new field here and a line in [`Metrics::update`].
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub rows_written: u64,
    pub write_errors: u64,
    pub pending_dropped: u64,
    pub pending: u64,
    pub evicted: u64,
    pub map_entries: u64,
    pub local_networks: u64,
    pub flush_unix: i64,
    /// Interfaces whose XDP program is no longer tsusen's (detached,
    /// replaced, or the interface is gone).
    pub links_detached: u64,
    /// Lines of day files skipped as not rows (since start).
    pub bad_lines: u64,
    /// Days whose file cannot be read or written right now.
    pub blocked_days: u64,
    /// Entries the last drain left in the kernel's map (rows not on disk).
    pub kept_entries: u64,
    /// Entries the last drain left in the kernel's map, unwritten, beyond
    /// its row budget (a flood).
    pub deferred_entries: u64,
    /// Whether every row drained so far is on disk (fsynced) after this
    /// flush: nothing failed and nothing waits for the out-dir.
    pub all_written: bool,
}

pub struct Metrics {
    registry: Arc<Registry>,
    rows_written: Counter,
    write_errors: Counter,
    capped_rows: Counter,
    evicted: Counter,
    pending: Gauge,
    map_entries: Gauge,
    local_networks: Gauge,
    last_flush: Gauge,
    last_successful_write: Gauge,
    flush_duration: Histogram,
    bad_lines: Counter,
    blocked_days: Gauge,
    kept_entries: Gauge,
    deferred_entries: Gauge,
    detached_interfaces: Gauge,
    last: Snapshot,
}

impl Metrics {
    pub fn new(setup: Setup) -> Self {
        let mut registry = Registry::with_prefix("tsusen");
        macro_rules! reg {
            ($name:literal, $help:literal, $metric:expr) => {{
                let metric = $metric;
                registry.register($name, $help, metric.clone());
                metric
            }};
            ($name:literal, $help:literal, $unit:expr, $metric:expr) => {{
                let metric = $metric;
                registry.register_with_unit($name, $help, $unit, metric.clone());
                metric
            }};
        }
        registry.register(
            "build",
            "The running tsusen's version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        let flush_interval = reg!(
            "flush_interval",
            "--flush-interval: how often the kernel's map is drained and rows written",
            Unit::Seconds,
            Gauge::<f64, std::sync::atomic::AtomicU64>::default()
        );
        flush_interval.set(setup.flush_interval.as_secs_f64());
        let map_limit: Gauge = reg!(
            "map_entries_limit",
            "Entries the kernel's first-seen map can hold",
            Gauge::default()
        );
        map_limit.set(i64::from(setup.map_capacity));
        let rows_written = reg!(
            "rows_written",
            "Rows appended to day files",
            Counter::default()
        );
        let write_errors = reg!(
            "write_errors",
            "Failed day-file writes (rows kept for the next flush)",
            Counter::default()
        );
        let capped_rows = reg!(
            "capped_rows",
            "Rows not held in memory because --max-pending rows were already waiting for a \
             failing out-dir (their entries stay in the kernel's map until written, or evicted)",
            Counter::default()
        );
        let evicted = reg!(
            "evicted_tuples",
            "Tuples the first-seen map evicted before a drain read them (lost); counted at each flush",
            Counter::default()
        );
        let pending = reg!(
            "pending_rows",
            "Rows waiting in memory for the out-dir to take them, after the last flush",
            Gauge::default()
        );
        let map_entries = reg!(
            "map_entries",
            "Entries in the first-seen map at the last drain, before removal (its fill over the last interval)",
            Gauge::default()
        );
        let local_networks = reg!(
            "local_networks",
            "Local networks (own addresses and --local)",
            Gauge::default()
        );
        let last_flush = reg!(
            "last_flush_timestamp",
            "Unix time of the last flush, whether or not it could write",
            Unit::Seconds,
            Gauge::default()
        );
        let bad_lines = reg!(
            "bad_lines",
            "Lines of day files skipped because they are not rows",
            Counter::default()
        );
        let blocked_days = reg!(
            "blocked_days",
            "Days whose file cannot be read or written right now",
            Gauge::default()
        );
        let kept_entries = reg!(
            "kept_entries",
            "Entries the last drain left in the kernel's map because their rows are not on disk",
            Gauge::default()
        );
        let deferred_entries = reg!(
            "deferred_entries",
            "Entries the last drain left in the kernel's map beyond its row budget (a flood of new tuples): written by later drains unless the map evicts them",
            Gauge::default()
        );
        let detached_interfaces = reg!(
            "detached_interfaces",
            "Watched interfaces whose XDP program is no longer tsusen's (detached, replaced, or the interface is gone)",
            Gauge::default()
        );
        let last_successful_write = reg!(
            "last_successful_write_timestamp",
            "Unix time of the last flush after which every drained row was on disk (fsynced)",
            Unit::Seconds,
            Gauge::default()
        );
        let flush_duration = reg!(
            "flush_duration",
            "How long a flush took: drain the map, write and fsync the day files, remove what was written",
            Unit::Seconds,
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.001, 4.0, 10
            ))
        );
        if let Some(ship) = &setup.ship {
            ship.register(&mut registry);
        }
        registry.register_collector(Box::new(AtScrape {
            kernel: setup.kernel,
            ifaces: setup.ifaces,
        }));
        Metrics {
            registry: Arc::new(registry),
            rows_written,
            write_errors,
            capped_rows,
            evicted,
            pending,
            map_entries,
            local_networks,
            last_flush,
            last_successful_write,
            flush_duration,
            bad_lines,
            blocked_days,
            kept_entries,
            deferred_entries,
            detached_interfaces,
            last: Snapshot::default(),
        }
    }

    /// Move the flush's values to `now` (counters grow by the difference).
    pub fn update(&mut self, now: &Snapshot) {
        let delta = |new: u64, old: u64| new.saturating_sub(old);
        self.rows_written
            .inc_by(delta(now.rows_written, self.last.rows_written));
        self.write_errors
            .inc_by(delta(now.write_errors, self.last.write_errors));
        self.capped_rows
            .inc_by(delta(now.pending_dropped, self.last.pending_dropped));
        self.evicted.inc_by(delta(now.evicted, self.last.evicted));
        self.pending.set(now.pending.cast_signed());
        self.map_entries.set(now.map_entries.cast_signed());
        self.local_networks.set(now.local_networks.cast_signed());
        self.last_flush.set(now.flush_unix);
        self.bad_lines
            .inc_by(delta(now.bad_lines, self.last.bad_lines));
        self.blocked_days.set(now.blocked_days.cast_signed());
        self.kept_entries.set(now.kept_entries.cast_signed());
        self.deferred_entries
            .set(now.deferred_entries.cast_signed());
        self.detached_interfaces
            .set(now.links_detached.cast_signed());
        if now.all_written {
            self.last_successful_write.set(now.flush_unix);
        }
        self.last = now.clone();
    }

    /// A flush took `took`, whatever its outcome.
    pub fn observe_flush(&self, took: Duration) {
        self.flush_duration.observe(took.as_secs_f64());
    }

    /// Serve `/metrics` on a listener bound before anything was attached,
    /// within [`connections::METRICS`]'s limits.
    pub fn serve(&self, listener: Listener) -> Result<()> {
        listener.socket.set_nonblocking(true)?;
        let socket = tokio::net::TcpListener::from_std(listener.socket)?;
        let registry = self.registry.clone();
        let mut app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let registry = registry.clone();
                async move {
                    let mut text = String::new();
                    let status = match encode(&mut text, &registry) {
                        Ok(()) => axum::http::StatusCode::OK,
                        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    };
                    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                    (
                        status,
                        [(axum::http::header::CONTENT_TYPE, content_type)],
                        text,
                    )
                }
            }),
        );
        if let Some(auth) = listener.auth {
            app = app.layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let allowed = auth.allows(request.headers());
                    async move {
                        if allowed {
                            next.run(request).await
                        } else {
                            axum::response::IntoResponse::into_response((
                                axum::http::StatusCode::UNAUTHORIZED,
                                [(
                                    axum::http::header::WWW_AUTHENTICATE,
                                    "Basic realm=\"tsusen\", charset=\"UTF-8\"",
                                )],
                                "credentials required\n",
                            ))
                        }
                    }
                },
            ));
        }
        tokio::spawn(connections::serve(
            socket,
            app,
            connections::METRICS,
            std::future::pending(),
        ));
        Ok(())
    }
}

/// The bound `--metrics` listener and the credentials it requires.
pub struct Listener {
    socket: TcpListener,
    auth: Option<Auth>,
}

/// Bind the metrics address (before attaching, so a bad address is an error
/// with nothing left behind). Like `tsusen serve`, an address other hosts can
/// reach needs credentials (`--metrics-auth-file`).
pub fn bind(settings: &Settings) -> Result<Option<Listener>> {
    let Some(addr) = &settings.metrics else {
        return Ok(None);
    };
    let socket = addr.bind(
        "--metrics",
        settings.metrics_auth.is_some(),
        "give --metrics-auth-file FILE (a token, or user:password)",
    )?;
    Ok(Some(Listener {
        socket,
        auth: settings.metrics_auth.clone(),
    }))
}

/// The values read at scrape time: the kernel's counters and the watched
/// interfaces' receive counters.
#[derive(Debug)]
struct AtScrape {
    kernel: KernelStats,
    ifaces: Vec<String>,
}

impl Collector for AtScrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let kernel = self.kernel.read().map_err(|err| {
            log::warn!("metrics: {err:#}");
            fmt::Error
        })?;
        let count = |stat: Stat| kernel[stat as usize];
        counter(
            &mut encoder,
            "packets",
            "Packets the XDP program saw, on every watched interface",
            packets(&kernel),
        )?;
        family(
            &mut encoder,
            "candidates",
            "Connection attempts that passed every rule, by protocol",
            "proto",
            Stat::ALL
                .iter()
                .filter(|s| s.kind() == StatKind::Candidate)
                .map(|s| (s.label(), count(*s))),
        )?;
        family(
            &mut encoder,
            "skipped_packets",
            "Packets that are not rows, by the first rule they broke",
            "reason",
            Stat::ALL
                .iter()
                .filter(|s| s.kind() == StatKind::Skipped)
                .map(|s| (s.label(), count(*s))),
        )?;
        counter(
            &mut encoder,
            "new_tuples",
            "Tuples the kernel recorded as first seen on their day",
            count(Stat::NewTuples),
        )?;
        counter(
            &mut encoder,
            "insert_failures",
            "First-seen inserts the kernel refused (the map full beyond what LRU could evict: lost)",
            count(Stat::InsertFailed),
        )?;
        counter(
            &mut encoder,
            "udp_flows",
            "Outbound UDP flows registered (their replies are not rows)",
            count(Stat::UdpFlowsSeen),
        )?;
        counter(
            &mut encoder,
            "udp_flows_expired",
            "Outbound UDP flows forgotten after the flow timeout (a later datagram was judged as an attempt)",
            count(Stat::UdpFlowsExpired),
        )?;
        // The interface's own counter, not the XDP program's: it tells a
        // quiet link from a sensor that stopped seeing a busy one.
        let received = self
            .ifaces
            .iter()
            .filter_map(|iface| Some((iface.as_str(), rx_packets(iface)?)));
        family(
            &mut encoder,
            "interface_receive_packets",
            "Packets the watched interface received, from its kernel counter (/sys/class/net/IF/statistics/rx_packets)",
            "iface",
            received,
        )?;
        Ok(())
    }
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), fmt::Error> {
    encoder
        .encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

/// A counter with one label, one series per `(label value, count)`.
fn family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    series: impl Iterator<Item = (&'a str, u64)>,
) -> Result<(), fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in series {
        let labels = [(label, value)];
        metric
            .encode_family(&labels)?
            .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
    }
    Ok(())
}

/// The interface's receive counter; `None` when it cannot be read (the
/// interface is gone), which leaves its series out of this scrape.
fn rx_packets(iface: &str) -> Option<u64> {
    let path = Path::new("/sys/class/net")
        .join(iface)
        .join("statistics/rx_packets");
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
