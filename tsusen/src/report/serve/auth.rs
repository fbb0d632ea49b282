//! Which requests get an answer: GET and HEAD only, a short request target,
//! a Host header naming this server, no body, within the rate limit
//! ([`super::limit`]) and with the credentials of [`crate::http::auth`] when
//! they are configured. Every response carries the security headers.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, Method, StatusCode, header, uri::Authority},
    middleware::Next,
    response::Response,
};

use super::{AppState, api::error};
use crate::report::html;

/// Longest request target accepted.
const MAX_URI: usize = 2048;

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

/// Security headers on every response, refusals included.
pub(super) async fn guard(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
