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
        aggregate::{DetailFilter, DetailPage, ProtoPort, Window, date, utc_time},
        spikes::{BASELINE_DAYS, MIN_BASELINE_DAYS},
    },
};

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
            "count > median + 2*IQR and count > mean + 2*SD of the previous {BASELINE_DAYS} days with a day file (at least {MIN_BASELINE_DAYS}), and count >= {}",
            o.spike_min
        ),
        "spikes": window.spikes.iter().map(|s| {
            let mut v = service_json(s.service, None);
            v["date"] = json!(date(s.day));
            v["count"] = json!(s.count);
            v["threshold"] = json!(s.baseline.threshold());
            v["baseline"] = json!(s.baseline);
            v
        }).collect::<Vec<_>>(),
    })
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
