//! `tsusen serve`: the report's views, live, and JSON endpoints.
//!
//! Requests never name a file: every response comes from the aggregates a
//! background thread keeps in step with `--dir` or `--clickhouse` (see
//! [`super::load`]), but for the per-sensor breakdown ([`sensors`]), which
//! over ClickHouse is asked for at request time. The
//! one path parameter, `/api/day/{date}`, must be a canonical `YYYY-MM-DD` and
//! is looked up in memory. Only GET and HEAD without a body are accepted, URIs
//! are capped, the Host header must name this server (no DNS rebinding), each
//! client has a token bucket, and a non-loopback listener needs credentials.
//! Connections are capped and time out ([`crate::http::connections`]).
//!
//! Here: the server, its refresh thread and the page; [`auth`] decides which
//! requests get an answer, [`limit`] is the per-client rate limit, [`api`]
//! the JSON endpoints.

mod api;
mod auth;
mod limit;
mod sensors;

use std::{
    io::Write as _,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use anyhow::{Context as _, Result, anyhow};
use axum::{
    Router,
    extract::{Query, State},
    http::{StatusCode, header},
    middleware,
    response::{IntoResponse, Response},
    routing::get,
};

pub use self::api::{
    DetailQuery, EXPORT_MAX, HoursQuery, SeriesQuery, destinations_json, details_json, drill_json,
    hours_json, series_json, spikes_json, summary_json, to_csv, today_json, trends_json,
};
use self::{
    api::{error, not_found},
    limit::Limiter,
};
use super::{
    Page, ServeArgs,
    aggregate::{DestinationCounts, DestinationSort, Selection},
    enrich::Enricher,
    html,
    load::Loader,
    source::DaySource,
    who,
};
use crate::http::{auth::Auth, connections, listen::ListenAddr};

/// Everything a request may read: rebuilt whenever the files change.
pub struct Snapshot {
    page: Page,
    summary: String,
    trends: String,
    spikes: String,
    today: String,
    /// The page's "which of our hosts" without filters (a scan of every
    /// shown day: done here, off the request path).
    destinations: String,
    /// Probes per destination over the window without filters: unfiltered
    /// `/api/destinations` pages need only the second scan (their ports).
    destination_counts: DestinationCounts,
}

impl Snapshot {
    pub fn build(loader: &Loader, enricher: &Enricher) -> Result<Snapshot> {
        let page = Page::build(loader, html::Mode::Served, enricher)?;
        let summary = summary_json(&page.window, page.files, &page.warnings).to_string();
        let trends = trends_json(&page.window).to_string();
        let spikes = spikes_json(&page.window).to_string();
        let today = today_json(&page.window).to_string();
        let destination_counts = page.window.destination_counts(None, &Selection::default());
        let shown = page.window.destination_page(
            &destination_counts,
            &Selection::default(),
            DestinationSort::Probes,
            0,
            who::DESTINATIONS_SHOWN,
        );
        let destinations = who::destinations_section(&page.enrichment, Ok(&shown), Some(""));
        Ok(Snapshot {
            page,
            summary,
            trends,
            spikes,
            today,
            destinations,
            destination_counts,
        })
    }
}

struct AppState {
    snapshot: RwLock<Arc<Snapshot>>,
    /// For what is asked at request time (the per-sensor breakdown).
    source: Arc<dyn DaySource>,
    auth: Option<Auth>,
    limiter: Mutex<Limiter>,
    /// Host names besides IP addresses and localhost (`--allow-host`).
    allowed_hosts: Vec<String>,
}

impl AppState {
    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(
            &self
                .snapshot
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Run `tsusen serve`.
pub fn serve(args: &ServeArgs) -> Result<()> {
    let addr: ListenAddr = args.listen.parse().map_err(|_| {
        anyhow!(
            "bad --listen {:?}: {}",
            args.listen,
            crate::http::listen::EXPECTED.replace("9339", "8339")
        )
    })?;
    let auth = Auth::load(args.auth_file.as_deref(), "--auth-file", "TSUSEN_AUTH")?;
    let how_to_auth = "give --auth-file FILE or set TSUSEN_AUTH (a token, or user:password)";
    addr.check("--listen", auth.is_some(), how_to_auth)?;
    connections::raise_nofile_limit();
    let mut loader = args.view.loader()?;
    loader.refresh()?.new_warnings.log();
    // Read once at start; a new database needs a restart.
    let enricher = Enricher::load(&args.view.enrich);
    let listener = addr.bind("--listen", auth.is_some(), how_to_auth)?;
    let state = Arc::new(AppState {
        snapshot: RwLock::new(Arc::new(Snapshot::build(&loader, &enricher)?)),
        source: loader.source(),
        auth,
        limiter: Mutex::new(Limiter::new(args.rate_limit)),
        allowed_hosts: args
            .allow_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let local = listener.local_addr()?;
        // On stdout, so scripts and tests can learn an ephemeral port.
        println!("tsusen: serving http://{local}/");
        let _ = std::io::stdout().flush();

        let refresher = Arc::clone(&state);
        let every = Duration::from_secs(args.refresh.max(1));
        std::thread::Builder::new()
            .name("refresh".into())
            .spawn(move || refresh_loop(loader, &enricher, &refresher, every))
            .context("cannot start the refresh thread")?;

        connections::serve(listener, router(state), connections::SERVE, shutdown()).await;
        Ok(())
    })
}

fn refresh_loop(mut loader: Loader, enricher: &Enricher, state: &AppState, every: Duration) {
    loop {
        std::thread::sleep(every);
        match loader.refresh() {
            Ok(r) if r.changed => {
                r.new_warnings.log();
                match Snapshot::build(&loader, enricher) {
                    Ok(s) => {
                        *state
                            .snapshot
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(s);
                    }
                    Err(err) => log::warn!("cannot rebuild the report: {err:#}"),
                }
            }
            Ok(_) => {}
            Err(err) => log::warn!("cannot refresh: {err:#}"),
        }
    }
}

async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/chart.svg", get(chart_svg))
        .route("/assets/style.css", get(style))
        .route("/assets/app.js", get(script))
        .route("/api/summary", get(api::summary))
        .route("/api/trends", get(api::trends))
        .route("/api/spikes", get(api::spikes))
        .route("/api/today", get(api::today))
        .route("/api/details", get(api::details))
        .route("/api/drill", get(api::drill))
        .route("/api/destinations", get(api::destinations))
        .route("/api/export.csv", get(api::export_csv))
        .route("/api/export.json", get(api::export_json))
        .route("/api/day/{date}", get(api::day))
        .route("/api/series", get(api::series))
        .route("/api/hours", get(api::hours))
        .route("/hours.svg", get(api::hours_svg))
        .route("/api/series/sensors", get(sensors::series_sensors))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::guard,
        ))
        .with_state(state)
}

async fn chart_svg(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        state.snapshot().page.chart_svg.clone(),
    )
        .into_response()
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        html::STYLE,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        html::APP_JS,
    )
        .into_response()
}

async fn page(State(state): State<Arc<AppState>>, Query(query): Query<DetailQuery>) -> Response {
    let snapshot = state.snapshot();
    let rendered = tokio::task::spawn_blocking(move || {
        let (window, e) = (&snapshot.page.window, &snapshot.page.enrichment);
        let result = query.run(window, e);
        let f = &query.filter;
        let value = |v: &Option<String>| v.as_deref().unwrap_or("").to_owned();
        let ip = [value(&f.ip), value(&f.src)]
            .into_iter()
            .filter(|v| !v.trim().is_empty())
            .collect::<Vec<_>>()
            .join(",");
        let (port, proto, dst) = (value(&f.port), value(&f.proto), value(&f.dst));
        let (asn, country) = (value(&f.asn), value(&f.country));
        let (label, nolabel) = (value(&f.label), value(&f.nolabel));
        let form = html::Form {
            ip: &ip,
            port: &port,
            proto: &proto,
            dst: &dst,
            asn: &asn,
            country: &country,
            label: &label,
            nolabel: &nolabel,
        };
        let message = result.as_ref().err().map(|e| format!("{e:#}"));
        let details = html::served_details(
            window,
            e,
            form,
            result
                .as_ref()
                .map_err(|_| message.as_deref().unwrap_or_default()),
        );
        // A drill-down when the URL names a day; the destinations always.
        let drill = query
            .day
            .as_deref()
            .is_some_and(|d| !d.trim().is_empty())
            .then(|| query.drill(window, e, 1000).map_err(|e| format!("{e:#}")));
        let drill_html = who::served_drill(
            window,
            e,
            &query.filter,
            drill.as_ref().map(|r| r.as_ref().map_err(String::as_str)),
        );
        let destinations_html = if query.filter.narrows()
            || query.day.as_deref().is_some_and(|d| !d.trim().is_empty())
        {
            let destinations = query
                .destinations(
                    window,
                    e,
                    who::DESTINATIONS_SHOWN,
                    &snapshot.destination_counts,
                )
                .map_err(|e| format!("{e:#}"));
            let export = query.filter.to_query();
            who::destinations_section(
                e,
                destinations.as_ref().map_err(String::as_str),
                Some(&export),
            )
        } else {
            snapshot.destinations.clone()
        };
        let failed = message.is_some() || drill.as_ref().is_some_and(Result::is_err);
        let status = if failed {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        // With filters the chart and the spikes are those of what they keep.
        let top = if query.filter.narrows() && message.is_none() {
            query
                .filter()
                .and_then(|f| f.selection(window, e))
                .map_or_else(
                    |_| snapshot.page.top.clone(),
                    |selection| snapshot.page.top_of(&window.selected(&selection)),
                )
        } else {
            snapshot.page.top.clone()
        };
        (
            status,
            format!(
                "{top}{details}{drill_html}{destinations_html}{}",
                snapshot.page.bottom
            ),
        )
    })
    .await;
    match rendered {
        Ok((status, body)) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "rendering failed"),
    }
}
