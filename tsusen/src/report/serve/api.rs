//! The JSON endpoints (`/api/...`), their documents, and the details query
//! the page shares with them.

use std::{borrow::Cow, sync::Arc};

use anyhow::{Context as _, Result, bail};
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
            Change, DestinationCounts, DestinationPage, DestinationSort, DetailPage, DrillPage,
            DrillSort, Hours, ProtoPort, Series, Window, date, utc_time,
        },
        chart,
        enrich::Enrichment,
        filter::{Filter, FilterQuery},
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

/// The cached document, or with filters in the query the same document of
/// the window as they see it ([`Window::selected`]).
async fn cached_or_selected(
    state: &AppState,
    query: DetailQuery,
    pick: impl Fn(&Snapshot) -> &String,
    document: fn(&Window) -> Value,
) -> Response {
    if query.filter.narrows() {
        from_snapshot(state, move |w, e| {
            let selection = query.filter()?.selection(w, e)?;
            Ok(document(&w.selected(&selection)).to_string())
        })
        .await
    } else {
        cached(state, pick)
    }
}

pub(super) async fn trends(
    State(state): State<Arc<AppState>>,
    Query(query): Query<DetailQuery>,
) -> Response {
    cached_or_selected(&state, query, |s| &s.trends, trends_json).await
}

pub(super) async fn spikes(
    State(state): State<Arc<AppState>>,
    Query(query): Query<DetailQuery>,
) -> Response {
    cached_or_selected(&state, query, |s| &s.spikes, spikes_json).await
}

pub(super) async fn today(State(state): State<Arc<AppState>>) -> Response {
    cached(&state, |s| &s.today)
}

/// The query every filtered view takes: the filters (see
/// [`crate::report::filter`]), a page, and for the drill-down a day and an
/// order. Numbers are strings here so a bad one is our one-line 400.
#[derive(Debug, Default, Deserialize)]
pub struct DetailQuery {
    #[serde(flatten)]
    pub filter: FilterQuery,
    pub offset: Option<String>,
    pub limit: Option<String>,
    pub day: Option<String>,
    pub sort: Option<String>,
    /// What `/api/export.*` exports: details (default), drill or destinations.
    pub view: Option<String>,
}

fn given(v: Option<&String>) -> Option<&str> {
    v.map(|v| v.trim()).filter(|v| !v.is_empty())
}

impl DetailQuery {
    /// Offset and limit, the limit at most `max`.
    pub(super) fn page(&self, default: usize, max: usize) -> Result<(usize, usize)> {
        let number = |v: Option<&String>, name: &str| -> Result<Option<usize>> {
            given(v)
                .map(|v| {
                    v.parse::<usize>()
                        .with_context(|| format!("bad {name} {v:?}: expected a whole number"))
                })
                .transpose()
        };
        let offset = number(self.offset.as_ref(), "offset")?.unwrap_or(0);
        let limit = number(self.limit.as_ref(), "limit")?
            .unwrap_or(default)
            .clamp(1, max);
        Ok((offset, limit))
    }

    /// The day asked for, if any, checked to be shown.
    pub(super) fn day(&self, window: &Window) -> Result<Option<u16>> {
        let Some(v) = given(self.day.as_ref()) else {
            return Ok(None);
        };
        let day = day_of_name(v)
            .with_context(|| format!("bad day {v:?}: expected a date like 2026-01-30"))?;
        if window.is_empty() || day < window.first_day || day > window.last_day {
            bail!("day {v} is outside the window");
        }
        Ok(Some(day))
    }

    pub(super) fn filter(&self) -> Result<Filter> {
        Filter::parse(&self.filter)
    }

    pub(super) fn run(&self, window: &Window, e: &Enrichment) -> Result<DetailPage> {
        let (offset, limit) = self.page(DEFAULT_LIMIT, MAX_LIMIT)?;
        let selection = self.filter()?.selection(window, e)?;
        Ok(window.details_selected(&selection, offset, limit))
    }

    /// The drill-down this query asks for: a day, one protocol and (for
    /// protocols with ports) one port.
    pub(super) fn drill(&self, window: &Window, e: &Enrichment, max: usize) -> Result<DrillPage> {
        let filter = self.filter()?;
        let day = self
            .day(window)?
            .context("the drill-down needs day=YYYY-MM-DD")?;
        let service = one_service(&filter)?;
        let (offset, limit) = self.page(DEFAULT_LIMIT, max)?;
        let sort = DrillSort::parse(self.sort.as_deref())?;
        let selection = filter.selection(window, e)?;
        window
            .drill(day, service, &selection, sort, offset, limit)
            .with_context(|| format!("no details kept for {}", date(day)))
    }

    /// The per-destination page this query asks for. Without filters or a
    /// day, `unfiltered` (the probe counts the snapshot keeps) spares the
    /// first of its two scans of the shown days.
    pub(super) fn destinations(
        &self,
        window: &Window,
        e: &Enrichment,
        max: usize,
        unfiltered: &DestinationCounts,
    ) -> Result<DestinationPage> {
        let selection = self.filter()?.selection(window, e)?;
        let (offset, limit) = self.page(DEFAULT_LIMIT, max)?;
        let sort = DestinationSort::parse(self.sort.as_deref())?;
        let day = self.day(window)?;
        let counts = if day.is_none() && !self.filter.narrows() {
            Cow::Borrowed(unfiltered)
        } else {
            Cow::Owned(window.destination_counts(day, &selection))
        };
        Ok(window.destination_page(&counts, &selection, sort, offset, limit))
    }
}

/// The one protocol/port a drill-down is about.
pub(super) fn one_service(filter: &Filter) -> Result<ProtoPort> {
    let [proto] = filter.protos[..] else {
        bail!("the drill-down needs exactly one proto= (e.g. TCP)");
    };
    let port = match (filter.ports.as_slice(), has_ports(proto)) {
        (&[port], true) => port,
        ([], false) => 0,
        (_, true) => bail!(
            "the drill-down needs exactly one port= for {}",
            ProtoColumn(proto)
        ),
        (_, false) => bail!("{} has no ports: leave port= out", ProtoColumn(proto)),
    };
    Ok(ProtoPort { proto, port })
}

/// Run `f` off the async runtime; its error is a 400 with one line.
async fn answer(f: impl FnOnce() -> Result<String> + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(body)) => json_body(body).into_response(),
        Ok(Err(err)) => error(StatusCode::BAD_REQUEST, &format!("{err:#}")),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "query failed"),
    }
}

/// Answer from the current window and enrichment, off the async runtime.
async fn from_snapshot(
    state: &AppState,
    f: impl FnOnce(&Window, &Enrichment) -> Result<String> + Send + 'static,
) -> Response {
    let snapshot = state.snapshot();
    answer(move || f(&snapshot.page.window, &snapshot.page.enrichment)).await
}

pub(super) async fn details(
    State(state): State<Arc<AppState>>,
    Query(query): Query<DetailQuery>,
) -> Response {
    from_snapshot(&state, move |w, e| {
        query
            .run(w, e)
            .map(|page| details_json(w, e, &page).to_string())
    })
    .await
}

/// `/api/drill`: one day's sources for one protocol/port.
pub(super) async fn drill(
    State(state): State<Arc<AppState>>,
    Query(query): Query<DetailQuery>,
) -> Response {
    from_snapshot(&state, move |w, e| {
        query
            .drill(w, e, MAX_LIMIT)
            .map(|page| drill_json(e, &page).to_string())
    })
    .await
}

/// `/api/destinations`: our addresses, most probed first.
pub(super) async fn destinations(
    State(state): State<Arc<AppState>>,
    Query(query): Query<DetailQuery>,
) -> Response {
    let snapshot = state.snapshot();
    answer(move || {
        let (w, e) = (&snapshot.page.window, &snapshot.page.enrichment);
        query
            .destinations(w, e, MAX_LIMIT, &snapshot.destination_counts)
            .map(|page| destinations_json(e, &page).to_string())
    })
    .await
}

/// ASNs and countries listed as a drill-down's top ones.
const TOP_ENRICHED: usize = 10;

/// Most rows of one export (page on with offset=).
pub const EXPORT_MAX: usize = 100_000;

/// The CSV columns of each view, in order (enrichment ones only when on).
const DETAILS_COLUMNS: &[&str] = &[
    "proto",
    "port",
    "src",
    "asn",
    "org",
    "country",
    "labels",
    "first_seen",
    "first_seen_unix",
    "last_day",
    "days",
    "destinations",
];
const DRILL_COLUMNS: &[&str] = &[
    "src",
    "asn",
    "org",
    "country",
    "labels",
    "first_seen",
    "first_seen_unix",
    "destinations",
    "ports",
    "destination_list",
];
const DESTINATIONS_COLUMNS: &[&str] = &["dst", "labels", "probes", "services", "ports"];

/// The document of the view an export names, and its CSV columns.
fn export_rows(
    query: &DetailQuery,
    snapshot: &Snapshot,
) -> Result<(Value, &'static [&'static str])> {
    let (w, e) = (&snapshot.page.window, &snapshot.page.enrichment);
    match given(query.view.as_ref()).unwrap_or("details") {
        "details" => {
            let (offset, limit) = query.page(EXPORT_MAX, EXPORT_MAX)?;
            let selection = query.filter()?.selection(w, e)?;
            let page = w.details_selected(&selection, offset, limit);
            Ok((details_json(w, e, &page), DETAILS_COLUMNS))
        }
        "drill" => Ok((
            drill_json(e, &query.drill(w, e, EXPORT_MAX)?),
            DRILL_COLUMNS,
        )),
        "destinations" => Ok((
            destinations_json(
                e,
                &query.destinations(w, e, EXPORT_MAX, &snapshot.destination_counts)?,
            ),
            DESTINATIONS_COLUMNS,
        )),
        v => bail!("bad view {v:?}: expected details, drill or destinations"),
    }
}

/// `/api/export.json`: the rows of a filtered view (details, drill or
/// destinations), up to [`EXPORT_MAX`] a request.
pub(super) async fn export_json(
    State(state): State<Arc<AppState>>,
    Query(query): Query<DetailQuery>,
) -> Response {
    let snapshot = state.snapshot();
    answer(move || export_rows(&query, &snapshot).map(|(v, _)| v.to_string())).await
}

/// `/api/export.csv`: the same rows as CSV, lists space-separated; the
/// `X-Total-Rows` header says how many match over all pages.
pub(super) async fn export_csv(
    State(state): State<Arc<AppState>>,
    Query(query): Query<DetailQuery>,
) -> Response {
    let snapshot = state.snapshot();
    let result = tokio::task::spawn_blocking(move || {
        export_rows(&query, &snapshot).map(|(v, columns)| {
            (
                v["total"].as_u64().unwrap_or(0),
                to_csv(&v["rows"], columns),
            )
        })
    })
    .await;
    match result {
        Ok(Ok((total, csv))) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"tsusen-export.csv\"".to_owned(),
                ),
                (
                    header::HeaderName::from_static("x-total-rows"),
                    total.to_string(),
                ),
            ],
            csv,
        )
            .into_response(),
        Ok(Err(err)) => error(StatusCode::BAD_REQUEST, &format!("{err:#}")),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "query failed"),
    }
}

/// JSON rows as CSV: `columns` that the rows have, in that order (a header
/// line, even for no rows); lists joined by spaces, objects as
/// `label:probes`; fields quoted when needed.
pub fn to_csv(rows: &Value, columns: &[&str]) -> String {
    let rows = rows.as_array().map_or(&[][..], Vec::as_slice);
    let columns: Vec<&str> = columns
        .iter()
        .copied()
        .filter(|c| rows.first().is_none_or(|r| r.get(c).is_some()))
        .collect();
    let cell = |v: &Value| -> String {
        match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => s.clone(),
                    Value::Object(o) => match (o.get("label"), o.get("probes")) {
                        (Some(Value::String(l)), Some(n)) => format!("{l}:{n}"),
                        (Some(Value::String(l)), None) => l.clone(),
                        _ => i.to_string(),
                    },
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(" "),
            other => other.to_string(),
        }
    };
    let quote = |s: String| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s
        }
    };
    let mut out = columns.join(",");
    out.push('\n');
    for row in rows {
        let line: Vec<String> = columns
            .iter()
            .map(|c| quote(cell(row.get(*c).unwrap_or(&Value::Null))))
            .collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
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

pub fn details_json(window: &Window, e: &Enrichment, page: &DetailPage) -> Value {
    json!({
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
        "columns": columns_json(e),
        "rows": page.rows.iter().map(|d| {
            let mut v = json!({
                "proto": ProtoColumn(d.service.proto).to_string(),
                "port": d.service.port(),
                "src": window.source_of(d).to_string(),
                "first_seen": utc_time(d.first_seen),
                "first_seen_unix": d.first_seen,
                "last_day": date(d.last_day),
                "days": d.days,
                "destinations": d.destinations,
            });
            e.json_fields(d.src_id(), &mut v);
            v
        }).collect::<Vec<_>>(),
    })
}

fn columns_json(e: &Enrichment) -> Value {
    json!({ "asn": e.columns.asn, "country": e.columns.country, "labels": e.columns.labels })
}

pub fn drill_json(e: &Enrichment, page: &DrillPage) -> Value {
    let mut v = service_json(page.service, None);
    v["date"] = json!(date(page.day));
    v["sort"] = json!(page.sort.name());
    v["total"] = json!(page.total);
    v["offset"] = json!(page.offset);
    v["limit"] = json!(page.limit);
    v["columns"] = columns_json(e);
    let crate::report::enrich::Tops { asns, countries } =
        e.top(page.all_source_ids(), TOP_ENRICHED);
    if e.columns.asn {
        v["top_asns"] = asns
            .iter()
            .map(|&(asn, n)| json!({ "asn": asn, "org": e.org(asn), "sources": n }))
            .collect();
    }
    if e.columns.country {
        v["top_countries"] = countries
            .iter()
            .map(|&(c, n)| json!({ "country": c, "sources": n }))
            .collect();
    }
    v["rows"] = page
        .rows
        .iter()
        .map(|r| {
            let mut row = json!({
                "src": r.src.to_string(),
                "first_seen": utc_time(r.first_seen),
                "first_seen_unix": r.first_seen,
                "destinations": r.destinations,
                "destination_list": r.destination_list.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "ports": r.ports.iter().map(ToString::to_string).collect::<Vec<_>>(),
            });
            e.json_fields(r.src_id(), &mut row);
            row
        })
        .collect();
    v
}

pub fn destinations_json(e: &Enrichment, page: &DestinationPage) -> Value {
    json!({
        "date": page.day.map(date),
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
        "rows": page.rows.iter().map(|r| {
            let mut row = json!({
                "dst": r.dst.to_string(),
                "probes": r.probes,
                "services": r.services,
                "ports": r.ports.iter().map(|&(s, n)| {
                    let mut p = service_json(s, None);
                    p["probes"] = json!(n);
                    p
                }).collect::<Vec<_>>(),
            });
            if e.columns.labels {
                row["labels"] = json!(e.labels(r.dst_id()).collect::<Vec<_>>());
            }
            row
        }).collect::<Vec<_>>(),
    })
}
