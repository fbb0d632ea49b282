//! `tsusen serve`: the report's views, live, and JSON endpoints.
//!
//! Requests never name a file: every response comes from the aggregates a
//! background thread keeps in step with `--dir` (see [`super::load`]). The
//! one path parameter, `/api/day/{date}`, must be a canonical `YYYY-MM-DD` and
//! is looked up in memory. Only GET and HEAD without a body are accepted, URIs
//! are capped, the Host header must name this server (no DNS rebinding), each
//! client has a token bucket, and a non-loopback listener needs credentials.
//! Connections are capped and time out ([`crate::http::connections`]).

use std::{
    collections::HashMap,
    io::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};
use axum::{
    Router,
    extract::{ConnectInfo, Path as UrlPath, Query, Request, State},
    http::{HeaderValue, Method, StatusCode, header, uri::Authority},
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
use crate::{
    http::{auth::Auth, connections, listen::ListenAddr},
    store::row::{ProtoColumn, day_from_name, day_name},
};

/// Longest request target accepted.
const MAX_URI: usize = 2048;
/// Most details rows per page.
const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 50;

/// Whom the rate limit counts as one client: every loopback address is one
/// (127.0.0.2, 127.0.0.3, ... and ::1 are the same host), an IPv6 client is
/// its /64 (the usual smallest prefix a host gets), an IPv4 client its address
/// (IPv4-mapped IPv6 included).
fn client_key(ip: IpAddr) -> IpAddr {
    let ip = ip.to_canonical();
    if ip.is_loopback() {
        return IpAddr::V4(Ipv4Addr::LOCALHOST);
    }
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !0u128 << 64)),
    }
}

/// Whether a `Host` header names this server: an IP address (a page of
/// another site cannot make a browser send one of ours), `localhost` or a
/// name under `.localhost` (browsers resolve those to loopback themselves),
/// or one of `--allow-host`. Anything else may be DNS rebinding: a name that
/// resolved to an attacker, then to us.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let Ok(authority) = host.parse::<Authority>() else {
        return false;
    };
    if authority.as_str().contains('@') {
        return false;
    }
    let name = authority.host();
    if name.parse::<Ipv4Addr>().is_ok()
        || name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .is_some_and(|n| n.parse::<Ipv6Addr>().is_ok())
    {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(&name))
}

/// A token bucket per client ([`client_key`]).
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
        let (tokens, at) = self
            .buckets
            .entry(client_key(client))
            .or_insert((self.burst, now));
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
pub fn serve(args: ServeArgs) -> Result<()> {
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
    let mut loader = Loader::new(args.view.dir.clone(), args.view.options());
    loader.refresh()?.new_warnings.log();
    let listener = addr.bind("--listen", auth.is_some(), how_to_auth)?;
    let state = Arc::new(AppState {
        snapshot: RwLock::new(Arc::new(Snapshot::build(&loader)?)),
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
            .spawn(move || refresh_loop(loader, &refresher, every))
            .context("cannot start the refresh thread")?;

        connections::serve(listener, router(state), connections::SERVE, shutdown()).await;
        Ok(())
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

/// Security headers on every response, refusals included.
async fn guard(
    state: State<Arc<AppState>>,
    peer: ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = check(state, peer, request, next).await;
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

/// Method, request target, Host, body, rate limit and credentials before any handler.
async fn check(
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
    // `GET http://host/path`: the target would override Host; only paths.
    if request.uri().scheme().is_some() || request.uri().authority().is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "absolute-form request targets are refused; send the path only",
        );
    }
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if !host.is_some_and(|h| host_allowed(h, &state.allowed_hosts)) {
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            "the Host header must be this server's address, localhost, or a name given with --allow-host",
        );
    }
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
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
    next.run(request).await
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
    fn other_loopback_addresses_share_one_bucket() {
        let mut l = Limiter::new(2);
        let clients: Vec<IpAddr> = [
            "127.0.0.1",
            "127.0.0.2",
            "127.1.2.3",
            "::1",
            "::ffff:127.0.0.9",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        assert!((0..4).all(|i| l.allow(clients[i % clients.len()])));
        for client in &clients {
            assert!(!l.allow(*client), "{client} escaped the loopback bucket");
        }
        // One IPv6 /64 is one client; another /64 and an IPv4 client are not.
        let mut l = Limiter::new(1);
        assert!(l.allow("2001:db8::1".parse().unwrap()));
        assert!(l.allow("2001:db8::2".parse().unwrap()));
        assert!(!l.allow("2001:db8::ffff:1".parse().unwrap()));
        assert!(l.allow("2001:db8:0:1::1".parse().unwrap()));
        assert!(l.allow("192.0.2.1".parse().unwrap()));
        assert!(l.allow("192.0.2.2".parse().unwrap()));
    }

    #[test]
    fn host_names_that_could_be_rebound_are_refused() {
        let allowed = ["sensor.example.org".to_owned()];
        for ok in [
            "127.0.0.1:8339",
            "127.0.0.1",
            "[::1]:8339",
            "198.51.100.7:80",
            "localhost:8339",
            "LOCALHOST",
            "app.localhost:8339",
            "localhost.",
            "sensor.example.org",
            "Sensor.Example.org:8339",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok} refused");
        }
        for bad in [
            "attacker.example:8339",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "x",
            "",
            "user@127.0.0.1",
            "127.0.0.1:8339/",
            "[::1",
        ] {
            assert!(!host_allowed(bad, &allowed), "{bad} allowed");
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
