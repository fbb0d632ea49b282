//! `--metrics`: the sensor's counters in the Prometheus text format
//! (prometheus-client), served at `/metrics`.

use std::{net::TcpListener, sync::Arc};

use anyhow::Result;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tsusen_common::Stat;

use super::settings::Settings;
use crate::http::{auth::Auth, connections};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Proto {
    proto: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// What a flush knows, handed to the metrics.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub kernel: Vec<u64>,
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
}

pub struct Metrics {
    registry: Arc<Registry>,
    packets: Counter,
    candidates: Family<Proto, Counter>,
    skipped: Family<Reason, Counter>,
    new_tuples: Counter,
    insert_failed: Counter,
    udp_flows: Counter,
    udp_flows_expired: Counter,
    rows_written: Counter,
    write_errors: Counter,
    pending_dropped: Counter,
    evicted: Counter,
    pending: Gauge,
    map_entries: Gauge,
    local_networks: Gauge,
    last_flush: Gauge,
    bad_lines: Counter,
    blocked_days: Gauge,
    kept_entries: Gauge,
    last: Snapshot,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tsusen");
        macro_rules! reg {
            ($name:literal, $help:literal, $metric:expr) => {{
                let metric = $metric;
                registry.register($name, $help, metric.clone());
                metric
            }};
        }
        let packets = reg!("packets", "Packets the XDP program saw", Counter::default());
        let candidates = reg!(
            "candidates",
            "Connection attempts that passed every rule, by protocol",
            Family::<Proto, Counter>::default()
        );
        let skipped = reg!(
            "skipped",
            "Packets that are not rows, by the rule they broke",
            Family::<Reason, Counter>::default()
        );
        let new_tuples = reg!(
            "new_tuples",
            "Tuples the kernel recorded as first seen that day",
            Counter::default()
        );
        let insert_failed = reg!(
            "insert_failed",
            "First-seen inserts the kernel refused",
            Counter::default()
        );
        let udp_flows = reg!(
            "udp_flows",
            "Outbound UDP flows registered (their replies are not rows)",
            Counter::default()
        );
        let udp_flows_expired = reg!(
            "udp_flows_expired",
            "Outbound UDP flows forgotten after the flow timeout (a later datagram was judged as an attempt)",
            Counter::default()
        );
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
        let pending_dropped = reg!(
            "pending_dropped",
            "Rows not held in memory because --max-pending rows were waiting for a failing \
             out-dir (their entries stay in the kernel's map)",
            Counter::default()
        );
        let evicted = reg!(
            "evicted",
            "Tuples the LRU map evicted before a drain read them (lost)",
            Counter::default()
        );
        let pending = reg!(
            "pending_rows",
            "Rows waiting to be written",
            Gauge::default()
        );
        let map_entries = reg!(
            "map_entries",
            "Entries in the first-seen map at the last drain, before removal",
            Gauge::default()
        );
        let local_networks = reg!(
            "local_networks",
            "Local networks (own addresses and --local)",
            Gauge::default()
        );
        let last_flush = reg!(
            "last_flush_timestamp_seconds",
            "Unix time of the last flush",
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
        Metrics {
            registry: Arc::new(registry),
            packets,
            candidates,
            skipped,
            new_tuples,
            insert_failed,
            udp_flows,
            udp_flows_expired,
            rows_written,
            write_errors,
            pending_dropped,
            evicted,
            pending,
            map_entries,
            local_networks,
            last_flush,
            bad_lines,
            blocked_days,
            kept_entries,
            last: Snapshot {
                kernel: vec![0; Stat::COUNT as usize],
                ..Snapshot::default()
            },
        }
    }

    /// Move the counters to `now` (the kernel's counters are totals since the
    /// programs were loaded; a counter here grows by the difference).
    pub fn update(&mut self, now: &Snapshot) {
        let delta = |new: u64, old: u64| new.saturating_sub(old);
        let kernel = |stat: Stat| delta(now.kernel[stat as usize], self.last.kernel[stat as usize]);
        let classified: u64 = Stat::ALL
            .iter()
            .filter(|s| s.is_classification())
            .map(|s| kernel(*s))
            .sum();
        self.packets.inc_by(classified);
        for stat in Stat::ALL {
            let name = stat.name();
            if let Some(proto) = name.strip_prefix("candidates_") {
                self.candidates
                    .get_or_create(&Proto { proto })
                    .inc_by(kernel(stat));
            } else if let Some(reason) = name.strip_prefix("skipped_") {
                self.skipped
                    .get_or_create(&Reason { reason })
                    .inc_by(kernel(stat));
            }
        }
        self.new_tuples.inc_by(kernel(Stat::NewTuples));
        self.insert_failed.inc_by(kernel(Stat::InsertFailed));
        self.udp_flows.inc_by(kernel(Stat::UdpFlowsSeen));
        self.udp_flows_expired.inc_by(kernel(Stat::UdpFlowsExpired));
        self.rows_written
            .inc_by(delta(now.rows_written, self.last.rows_written));
        self.write_errors
            .inc_by(delta(now.write_errors, self.last.write_errors));
        self.pending_dropped
            .inc_by(delta(now.pending_dropped, self.last.pending_dropped));
        self.evicted.inc_by(delta(now.evicted, self.last.evicted));
        self.pending.set(now.pending as i64);
        self.map_entries.set(now.map_entries as i64);
        self.local_networks.set(now.local_networks as i64);
        self.last_flush.set(now.flush_unix);
        self.bad_lines
            .inc_by(delta(now.bad_lines, self.last.bad_lines));
        self.blocked_days.set(now.blocked_days as i64);
        self.kept_entries.set(now.kept_entries as i64);
        self.last = now.clone();
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
