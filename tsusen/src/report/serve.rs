//! `tsusen serve`: the report's views, live, and JSON endpoints.
//!
//! Requests never name a file: every response comes from the aggregates a
//! background thread keeps in step with `--dir` (see [`super::load`]). The
//! one path parameter, `/api/day/{date}`, must be a canonical `YYYY-MM-DD` and
//! is looked up in memory. Only GET and HEAD without a body are accepted, URIs
//! are capped, each client address has a token bucket, and a non-loopback
//! listener needs credentials.

use std::{
    collections::HashMap,
    io::Write as _,
    net::{IpAddr, SocketAddr},
    path::Path,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow, bail};
use axum::{
    Router,
    extract::{ConnectInfo, Path as UrlPath, Query, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ServeArgs,
    aggregate::{DetailFilter, DetailPage, ProtoPort, Window, date, utc_time},
    chart, html,
    load::Loader,
    spikes::{BASELINE_DAYS, MIN_BASELINE_DAYS},
};
use crate::store::row::{ProtoColumn, day_from_name, day_name};

/// Longest request target accepted.
const MAX_URI: usize = 2048;
/// Most details rows per page.
const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 50;

/// What a request must carry when credentials are configured.
#[derive(Clone)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Token(String),
    /// `Authorization: Basic <base64 of user:password>`, as browsers send it.
    Basic(String),
}

impl Auth {
    /// Credentials from text: `user:password` for basic auth, else a token.
    pub fn parse(text: &str, source: &str) -> Result<Auth> {
        let line = text.lines().map(str::trim).find(|l| !l.is_empty());
        let Some(line) = line else {
            bail!("{source} holds no credentials (expected a token, or user:password)");
        };
        Ok(if line.contains(':') {
            Auth::Basic(format!("Basic {}", base64(line.as_bytes())))
        } else {
            Auth::Token(format!("Bearer {line}"))
        })
    }

    /// From `--auth-file`, else the `TSUSEN_AUTH` environment variable.
    pub fn load(file: Option<&Path>) -> Result<Option<Auth>> {
        if let Some(file) = file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read --auth-file {}", file.display()))?;
            return Auth::parse(&text, &format!("--auth-file {}", file.display())).map(Some);
        }
        match std::env::var("TSUSEN_AUTH") {
            Ok(text) if !text.trim().is_empty() => Auth::parse(&text, "TSUSEN_AUTH").map(Some),
            _ => Ok(None),
        }
    }

    fn allows(&self, headers: &HeaderMap) -> bool {
        let expected = match self {
            Auth::Token(e) | Auth::Basic(e) => e.as_bytes(),
        };
        headers
            .get(header::AUTHORIZATION)
            .is_some_and(|got| same(got.as_bytes(), expected))
    }
}

/// Compare without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Standard base64 with padding (RFC 4648), for the expected Basic header.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A token bucket per client address.
struct Limiter {
    per_second: f64,
    burst: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl Limiter {
    fn new(per_second: u32) -> Self {
        Limiter {
            per_second: f64::from(per_second),
            burst: f64::from(per_second) * 2.0,
            buckets: HashMap::new(),
        }
    }

    fn allow(&mut self, client: IpAddr) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let now = Instant::now();
        if self.buckets.len() > 4096 {
            // Forget clients whose buckets have refilled.
            let (rate, burst) = (self.per_second, self.burst);
            self.buckets
                .retain(|_, (tokens, at)| *tokens + at.elapsed().as_secs_f64() * rate < burst);
        }
        let (tokens, at) = self.buckets.entry(client).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Everything a request may read: rebuilt whenever the files change.
pub struct Snapshot {
    window: Window,
    chart_svg: String,
    top: String,
    bottom: String,
    summary: String,
    trends: String,
    spikes: String,
    today: String,
}

impl Snapshot {
    pub fn build(loader: &Loader) -> Result<Snapshot> {
        let window = loader.window();
        let warnings = loader.warnings();
        let chart_svg = chart::trends_svg(&window)?;
        let generated = utc_time(chrono::Utc::now().timestamp());
        let about = html::About {
            files: loader.files(),
            warnings: &warnings,
            generated: &generated,
        };
        let top = html::top(&window, &chart_svg, &about, html::Mode::Served);
        let bottom = html::bottom(&warnings);
        let summary = summary_json(&window, loader.files(), &warnings).to_string();
        let trends = trends_json(&window).to_string();
        let spikes = spikes_json(&window).to_string();
        let today = today_json(&window).to_string();
        Ok(Snapshot {
            window,
            chart_svg,
            top,
            bottom,
            summary,
            trends,
            spikes,
            today,
        })
    }
}

struct AppState {
    snapshot: RwLock<Arc<Snapshot>>,
    auth: Option<Auth>,
    limiter: Mutex<Limiter>,
}

impl AppState {
    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Run `tsusen serve`.
pub fn serve(args: ServeArgs) -> Result<()> {
    let addr: SocketAddr = args.listen.parse().map_err(|_| {
        anyhow!(
            "bad --listen {:?}: expected ADDRESS:PORT, like 127.0.0.1:8339",
            args.listen
        )
    })?;
    let auth = Auth::load(args.auth_file.as_deref())?;
    if auth.is_none() && !addr.ip().is_loopback() {
        bail!(
            "refusing to listen on {addr} (not loopback) without credentials: give --auth-file FILE or set TSUSEN_AUTH (a token, or user:password)"
        );
    }
    let mut loader = Loader::new(args.view.dir.clone(), args.view.options());
    loader.refresh()?.new_warnings.log();
    let state = Arc::new(AppState {
        snapshot: RwLock::new(Arc::new(Snapshot::build(&loader)?)),
        auth,
        limiter: Mutex::new(Limiter::new(args.rate_limit)),
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        // On stdout, so scripts and tests can learn an ephemeral port.
        println!("tsusen: serving http://{local}/");
        let _ = std::io::stdout().flush();

        let refresher = Arc::clone(&state);
        let every = Duration::from_secs(args.refresh.max(1));
        std::thread::Builder::new()
            .name("refresh".into())
            .spawn(move || refresh_loop(loader, &refresher, every))
            .context("cannot start the refresh thread")?;

        axum::serve(
            listener,
            router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown())
        .await
        .context("serving")
    })
}

fn refresh_loop(mut loader: Loader, state: &AppState, every: Duration) {
    loop {
        std::thread::sleep(every);
        match loader.refresh() {
            Ok(r) if r.changed => {
                r.new_warnings.log();
                match Snapshot::build(&loader) {
                    Ok(s) => {
                        *state.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(s)
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
        _ = term => {}
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/chart.svg", get(chart_svg))
        .route("/assets/style.css", get(style))
        .route("/assets/app.js", get(script))
        .route("/api/summary", get(summary))
        .route("/api/trends", get(trends))
        .route("/api/spikes", get(spikes))
        .route("/api/today", get(today))
        .route("/api/details", get(details))
        .route("/api/day/{date}", get(day))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), guard))
        .with_state(state)
}

/// Limits, rate limit and credentials before any handler; security headers after.
async fn guard(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return error(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
    }
    if request.uri().to_string().len() > MAX_URI {
        return error(StatusCode::URI_TOO_LONG, "request target too long");
    }
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if has_body {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "requests carry no body");
    }
    let allowed = state
        .limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .allow(peer.ip());
    if !allowed {
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "too many requests");
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    if state
        .auth
        .as_ref()
        .is_some_and(|auth| !auth.allows(headers))
    {
        let mut r = error(StatusCode::UNAUTHORIZED, "credentials required");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"tsusen\", charset=\"UTF-8\""),
        );
        return r;
    }
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(html::SERVED_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, json_body(json!({ "error": message }).to_string())).into_response()
}

fn json_body(body: String) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not found")
}

fn cached(state: &AppState, pick: impl Fn(&Snapshot) -> &String) -> Response {
    json_body(pick(&state.snapshot()).clone()).into_response()
}

async fn summary(State(state): State<Arc<AppState>>) -> Response {
    cached(&state, |s| &s.summary)
}

async fn trends(State(state): State<Arc<AppState>>) -> Response {
    cached(&state, |s| &s.trends)
}

async fn spikes(State(state): State<Arc<AppState>>) -> Response {
    cached(&state, |s| &s.spikes)
}

async fn today(State(state): State<Arc<AppState>>) -> Response {
    cached(&state, |s| &s.today)
}

async fn chart_svg(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        state.snapshot().chart_svg.clone(),
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
    fn run(&self, window: &Window) -> Result<DetailPage> {
        let filter = DetailFilter::parse(
            self.ip.as_deref(),
            self.port.as_deref(),
            self.proto.as_deref(),
        )?;
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        Ok(window.details_page(&filter, self.offset.unwrap_or(0), limit))
    }
}

async fn page(State(state): State<Arc<AppState>>, Query(query): Query<DetailQuery>) -> Response {
    let snapshot = state.snapshot();
    let rendered = tokio::task::spawn_blocking(move || {
        let result = query.run(&snapshot.window);
        let form = html::Form {
            ip: query.ip.as_deref().unwrap_or(""),
            port: query.port.as_deref().unwrap_or(""),
            proto: query.proto.as_deref().unwrap_or(""),
        };
        let message = result.as_ref().err().map(|e| format!("{e:#}"));
        let details = html::served_details(
            &snapshot.window,
            form,
            result
                .as_ref()
                .map_err(|_| message.as_deref().unwrap_or_default()),
        );
        let status = if message.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        (
            status,
            format!("{}{details}{}", snapshot.top, snapshot.bottom),
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

async fn details(State(state): State<Arc<AppState>>, Query(query): Query<DetailQuery>) -> Response {
    let snapshot = state.snapshot();
    let result = tokio::task::spawn_blocking(move || {
        query
            .run(&snapshot.window)
            .map(|page| details_json(&snapshot.window, &page).to_string())
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
async fn day(State(state): State<Arc<AppState>>, UrlPath(name): UrlPath<String>) -> Response {
    let Some(day) = day_from_name(&name).filter(|&d| day_name(d) == name) else {
        return error(StatusCode::BAD_REQUEST, "expected a date like 2026-01-30");
    };
    let snapshot = state.snapshot();
    let w = &snapshot.window;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("user:pass", "dXNlcjpwYXNz"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
    }

    #[test]
    fn limiter_allows_a_burst_then_refuses() {
        let mut l = Limiter::new(2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!((0..4).all(|_| l.allow(ip)));
        assert!(!l.allow(ip));
        assert!(Limiter::new(0).allow(ip), "0 turns the limit off");
    }
}
