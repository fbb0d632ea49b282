//! Serving a listener without letting clients hold descriptors.
//!
//! Every connection costs a descriptor, and the sensor needs its own for the
//! day files: 1,100 idle connections once exhausted a 1,024 limit. So:
//! - at most [`Limits::max_connections`] connections at once (and never more
//!   than a quarter of the open-files limit); the others wait in the
//!   kernel's accept queue, which costs this process no descriptor;
//! - a request's headers must arrive within [`Limits::header_timeout`], which
//!   also closes a connection that sends nothing (idle or half-open);
//! - a connection lives at most [`Limits::lifetime`]: then it finishes the
//!   response in flight and closes, or is dropped after one more
//!   `header_timeout` if the client does not read it.
//!
//! HTTP/1.1 with hyper's own connection builder (axum's `serve` exposes no
//! header timeout).

use std::{future::Future, net::SocketAddr, pin::pin, sync::Arc, time::Duration};

use axum::{Router, extract::ConnectInfo, http::Request};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
};
use tower::ServiceExt as _;

/// How many connections, and for how long.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub lifetime: Duration,
}

/// `--metrics`: a scraper or two.
pub const METRICS: Limits = Limits {
    max_connections: 32,
    header_timeout: Duration::from_secs(10),
    lifetime: Duration::from_secs(60),
};

/// `tsusen serve`: a few browsers (six connections each) and scripts.
pub const SERVE: Limits = Limits {
    max_connections: 128,
    header_timeout: Duration::from_secs(10),
    lifetime: Duration::from_secs(120),
};

/// Time the open connections get to finish when the server stops.
const STOP_GRACE: Duration = Duration::from_secs(5);

impl Limits {
    /// The cap, lowered to a quarter of the open-files limit so the rest of
    /// the process (day files, BPF objects) always has descriptors left.
    pub fn connection_cap(&self) -> usize {
        let soft = nofile_limits().map_or(1024, |(soft, _)| soft);
        let quarter = usize::try_from(soft / 4).unwrap_or(usize::MAX);
        self.max_connections.min(quarter).max(1)
    }
}

/// The soft and hard RLIMIT_NOFILE.
fn nofile_limits() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return None;
    }
    Some((limit.rlim_cur, limit.rlim_max))
}

/// Raise the soft open-files limit to the hard one (systemd's default soft
/// limit is 1,024; its hard limit 524,288). Nothing here uses `select(2)`,
/// which is what the low soft default protects. Returns the new soft limit.
pub fn raise_nofile_limit() -> Option<u64> {
    let (soft, hard) = nofile_limits()?;
    if soft < hard {
        let limit = libc::rlimit {
            rlim_cur: hard,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) } != 0 {
            log::debug!("cannot raise the open-files limit from {soft} to {hard}");
            return Some(soft);
        }
    }
    Some(hard.max(soft))
}

/// Serve `router` on `listener` within `limits` until `stop` completes;
/// then give open connections [`STOP_GRACE`] to finish. Handlers see the
/// client's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: impl Future<Output = ()>,
) {
    let cap = limits.connection_cap();
    let permits = Arc::new(Semaphore::new(cap));
    let (stopping, stop_rx) = watch::channel(false);
    let mut stop = pin!(stop);
    let mut last_warning: Option<tokio::time::Instant> = None;
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut stop => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(connection(
                    stream,
                    peer,
                    router.clone(),
                    limits,
                    stop_rx.clone(),
                    permit,
                ));
            }
            Err(err) => {
                // Out of descriptors (EMFILE/ENFILE) or a connection reset
                // before accept: wait a little instead of spinning.
                if last_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                    log::warn!("cannot accept a connection: {err}");
                    last_warning = Some(tokio::time::Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    let _ = stopping.send(true);
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(STOP_GRACE, permits.acquire_many(all)).await;
}

/// One connection, holding its permit until it closes.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let service = router.map_request(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let mut conn =
        pin!(builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
    let deadline = tokio::time::sleep(limits.lifetime);
    let mut deadline = pin!(deadline);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    log::debug!("connection from {peer}: {err}");
                }
                return;
            }
            () = &mut deadline => {
                if closing {
                    log::debug!("connection from {peer}: dropped (response not read)");
                    return;
                }
                closing = true;
                conn.as_mut().graceful_shutdown();
                deadline.as_mut().reset(tokio::time::Instant::now() + limits.header_timeout);
            }
            changed = stopping.changed(), if !closing => {
                if changed.is_err() || *stopping.borrow() {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                    deadline.as_mut().reset(tokio::time::Instant::now() + limits.header_timeout);
                }
            }
        }
    }
}
