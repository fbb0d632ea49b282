//! The JSON endpoints (`/api/...`), their documents, and the details query
//! the page shares with them.

use std::sync::Arc;

use anyhow::Result;
use axum::{
    extract::{Path as UrlPath, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, Snapshot};
use crate::{
    dayfile::{ProtoColumn, day_of_name},
    report::{
        aggregate::{
            Change, DetailFilter, DetailPage, Hours, ProtoPort, Series, Window, date, utc_time,
        },
        chart,
        spikes::{BASELINE_DAYS, MIN_BASELINE_DAYS},
    },
};
use tsusen_common::{classify::has_ports, proto};

/// Most details rows per page.
const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 50;

pub(super) fn error(status: StatusCode, message: &str) -> Response {
    (status, json_body(json!({ "error": message }).to_string())).into_response()
}

pub(super) fn json_body(body: String) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
}

pub(super) async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not found")
}

fn cached(state: &AppState, pick: impl Fn(&Snapshot) -> &String) -> Response {
    json_body(pick(&state.snapshot()).clone()).into_response()
}

pub(super) async fn summary(State(state): State<Arc<AppState>>) -> Response {
    cached(&state, |s| &s.summary)
}

pub(super) async fn trends(State(state): State<Arc<AppState>>) -> Response {
    cached(&state, |s| &s.trends)
}

pub(super) async fn spikes(State(state): State<Arc<AppState>>) -> Response {
    cached(&state, |s| &s.spikes)
}

pub(super) async fn today(State(state): State<Arc<AppState>>) -> Response {
    cached(&state, |s| &s.today)
}

/// The details query: filters and page.
#[derive(Debug, Default, Deserialize)]
pub struct DetailQuery {
    pub ip: Option<String>,
    pub port: Option<String>,
    pub proto: Option<String>,
    pub offset: Option<usize>,
    pub limit: Option<usize>,
}

impl DetailQuery {
    pub(super) fn run(&self, window: &Window) -> Result<DetailPage> {
        let filter = DetailFilter::parse(
            self.ip.as_deref(),
            self.port.as_deref(),
            self.proto.as_deref(),
        )?;
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        Ok(window.details_page(&filter, self.offset.unwrap_or(0), limit))
    }
}

pub(super) async fn details(
    State(state): State<Arc<AppState>>,
    Query(query): Query<DetailQuery>,
) -> Response {
    let snapshot = state.snapshot();
    let result = tokio::task::spawn_blocking(move || {
        query
            .run(&snapshot.page.window)
            .map(|page| details_json(&snapshot.page.window, &page).to_string())
    })
    .await;
    match result {
        Ok(Ok(body)) => json_body(body).into_response(),
        Ok(Err(err)) => error(StatusCode::BAD_REQUEST, &format!("{err:#}")),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "query failed"),
    }
}

/// One shown day's distinct sources per protocol/port. The date is checked
/// to be a canonical `YYYY-MM-DD` and only looked up in memory.
pub(super) async fn day(
    State(state): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let Some(day) = day_of_name(&name) else {
        return error(StatusCode::BAD_REQUEST, "expected a date like 2026-01-30");
    };
    let snapshot = state.snapshot();
    let w = &snapshot.page.window;
    if w.is_empty() || day < w.first_day || day > w.last_day {
        return error(StatusCode::NOT_FOUND, "day outside the window");
    }
    let i = usize::from(day - w.first_day);
    let mut ports: Vec<(ProtoPort, u32)> = w
        .series
        .iter()
        .filter(|s| s.counts[i] > 0)
        .map(|s| (s.service, s.counts[i]))
        .collect();
    ports.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let body = json!({
        "date": date(day),
        "day_file": w.covered[i],
        "ports": ports.iter().map(|&(s, n)| service_json(s, Some(n))).collect::<Vec<_>>(),
    });
    json_body(body.to_string()).into_response()
}

fn service_json(service: ProtoPort, sources: Option<u32>) -> Value {
    let mut v = json!({
        "label": service.to_string(),
        "proto": ProtoColumn(service.proto).to_string(),
        "port": service.port(),
    });
    if let Some(n) = sources {
        v["sources"] = json!(n);
    }
    v
}

pub fn summary_json(window: &Window, files: usize, warnings: &[String]) -> Value {
    let o = &window.options;
    json!({
        "first_day": (!window.is_empty()).then(|| date(window.first_day)),
        "last_day": (!window.is_empty()).then(|| date(window.last_day)),
        "days": window.covered.len(),
        "day_files": files,
        "rows": window.rows,
        "series": window.series.len(),
        "folded": window.folded_count(),
        "spikes": window.spikes.len(),
        "details": window.detail_count(),
        "warnings": warnings,
        "options": {
            "days": o.days,
            "min_sources": o.min_sources,
            "burst_factor": o.burst_factor,
            "spike_min": o.spike_min,
            "spike_k": o.spike_k,
            "top": o.top,
        },
    })
}

pub fn trends_json(window: &Window) -> Value {
    let charted = window.charted();
    json!({
        "days": window.days().map(date).collect::<Vec<_>>(),
        "day_files": window.covered,
        "series": charted.iter().map(|s| {
            let mut v = service_json(s.service, None);
            v["counts"] = json!(s.counts);
            v["spikes"] = json!(window.spikes.iter().filter(|p| p.service == s.service).map(|p| date(p.day)).collect::<Vec<_>>());
            add_change(&mut v, s);
            v
        }).collect::<Vec<_>>(),
        "not_drawn": window.series.len() - window.folded_count() - charted.len(),
        "folded": window.folded_count(),
    })
}

pub fn spikes_json(window: &Window) -> Value {
    let o = &window.options;
    json!({
        "rule": format!(
            "count > median + {k}*IQR and count > mean + {k}*SD of the previous {BASELINE_DAYS} days with a day file (at least {MIN_BASELINE_DAYS}), and count >= {}; ranked by ratio = count / max(threshold, 1), largest first",
            o.spike_min,
            k = o.spike_k,
        ),
        "spike_k": o.spike_k,
        "spike_min": o.spike_min,
        "spikes": window.spikes.iter().map(|s| {
            let mut v = service_json(s.service, None);
            v["date"] = json!(date(s.day));
            v["count"] = json!(s.count);
            v["threshold"] = json!(s.threshold);
            v["ratio"] = json!(s.ratio);
            v["new"] = json!(s.new);
            v["baseline"] = json!(s.baseline);
            v
        }).collect::<Vec<_>>(),
    })
}

fn change_json(change: Option<Change>) -> Value {
    change.map_or(Value::Null, |c| {
        json!({
            "before": c.before,
            "now": c.now,
            "delta": c.delta(),
            "percent": c.percent(),
        })
    })
}

/// A series' newest count, its changes and its trend, into `v`.
fn add_change(v: &mut Value, s: &Series) {
    v["sources"] = json!(s.newest());
    v["vs_yesterday"] = change_json(s.vs_yesterday);
    v["vs_last_week"] = change_json(s.vs_last_week);
    v["trend"] = json!(s.trend.map(|t| t.slope));
}

/// The series query: one page of every series in the window's order.
#[derive(Debug, Default, Deserialize)]
pub struct SeriesQuery {
    pub offset: Option<usize>,
    pub limit: Option<usize>,
}

pub fn series_json(window: &Window, query: &SeriesQuery) -> Value {
    let offset = query.offset.unwrap_or(0);
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    json!({
        "date": (!window.is_empty()).then(|| date(window.last_day)),
        "total": window.series.len(),
        "offset": offset,
        "limit": limit,
        "series": window.series.iter().skip(offset).take(limit).map(|s| {
            let mut v = service_json(s.service, None);
            v["folded"] = json!(s.folded);
            add_change(&mut v, s);
            v["spikes"] = json!(window.spikes.iter().filter(|p| p.service == s.service).count());
            v
        }).collect::<Vec<_>>(),
    })
}

pub(super) async fn series(
    State(state): State<Arc<AppState>>,
    Query(query): Query<SeriesQuery>,
) -> Response {
    json_body(series_json(&state.snapshot().page.window, &query).to_string()).into_response()
}

/// The time-of-day query: a shown day and a protocol/port.
#[derive(Debug, Default, Deserialize)]
pub struct HoursQuery {
    pub day: Option<String>,
    pub proto: Option<String>,
    pub port: Option<String>,
}

impl HoursQuery {
    /// The hours asked for; `Err((status, one line))` for a bad or unknown query.
    pub fn run(&self, window: &Window) -> Result<Hours, (StatusCode, String)> {
        let bad = |m: String| (StatusCode::BAD_REQUEST, m);
        let day = self.day.as_deref().unwrap_or("").trim();
        let day = day_of_name(day)
            .ok_or_else(|| bad(format!("bad day {day:?}: expected a date like 2026-01-30")))?;
        let name = self.proto.as_deref().unwrap_or("").trim();
        let proto = proto::from_column(name).ok_or_else(|| {
            bad(format!(
                "bad protocol {name:?}: expected a name like TCP or a number"
            ))
        })?;
        let port = self
            .port
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty());
        let service = match (has_ports(proto), port) {
            (true, Some(port)) => ProtoPort {
                proto,
                port: port
                    .parse()
                    .map_err(|_| bad(format!("bad port {port:?}: expected 0-65535")))?,
            },
            (true, None) => return Err(bad(format!("no port: {name} needs port=N"))),
            (false, None) => ProtoPort { proto, port: 0 },
            (false, Some(_)) => return Err(bad(format!("{name} has no ports: leave port out"))),
        };
        window
            .hours(day, service)
            .ok_or_else(|| (StatusCode::NOT_FOUND, "day outside the window".to_owned()))
    }
}

pub fn hours_json(hours: &Hours) -> Value {
    let mut v = service_json(hours.service, Some(hours.total()));
    v["date"] = json!(date(hours.day));
    v["hours"] = json!(hours.counts);
    v
}

pub(super) async fn hours(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HoursQuery>,
) -> Response {
    match query.run(&state.snapshot().page.window) {
        Ok(h) => json_body(hours_json(&h).to_string()).into_response(),
        Err((status, message)) => error(status, &message),
    }
}

/// The time-of-day bars as SVG (the served page swaps them in on a click).
pub(super) async fn hours_svg(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HoursQuery>,
) -> Response {
    match query.run(&state.snapshot().page.window) {
        Ok(h) => (
            [(header::CONTENT_TYPE, "image/svg+xml")],
            chart::hours_svg(&h),
        )
            .into_response(),
        Err((status, message)) => error(status, &message),
    }
}

pub fn today_json(window: &Window) -> Value {
    let t = &window.today;
    json!({
        "date": (!window.is_empty()).then(|| date(t.day)),
        "top_ports": t.top.iter().map(|&(s, n)| service_json(s, Some(n))).collect::<Vec<_>>(),
        "new_ports": t.new.iter().map(|&(s, n)| service_json(s, Some(n))).collect::<Vec<_>>(),
        "new_ports_total": t.new_total,
        "busiest_sources": t.busiest.iter().map(|b| json!({
            "src": b.src.to_string(), "ports": b.ports, "probes": b.probes,
        })).collect::<Vec<_>>(),
    })
}

pub fn details_json(window: &Window, page: &DetailPage) -> Value {
    json!({
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
        "rows": page.rows.iter().map(|d| json!({
            "proto": ProtoColumn(d.service.proto).to_string(),
            "port": d.service.port(),
            "src": window.source_of(d).to_string(),
            "first_seen": utc_time(d.first_seen),
            "first_seen_unix": d.first_seen,
            "last_day": date(d.last_day),
            "days": d.days,
            "destinations": d.destinations,
        })).collect::<Vec<_>>(),
    })
}
