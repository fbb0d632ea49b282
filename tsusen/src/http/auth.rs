//! Credentials a request must carry: a bearer token or HTTP Basic.

use std::path::Path;

use anyhow::{Result, bail};
use axum::http::{HeaderMap, header};

/// What a request must carry when credentials are configured.
#[derive(Clone)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Token(String),
    /// `Authorization: Basic <base64 of user:password>`, as browsers send it.
    Basic(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret itself (settings are logged with {:?} in tests).
        f.write_str(match self {
            Auth::Token(_) => "Auth::Token(..)",
            Auth::Basic(_) => "Auth::Basic(..)",
        })
    }
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

    /// From `file` (named by `flag` in errors), else the environment
    /// variable `env`, else none.
    pub fn load(file: Option<&Path>, flag: &str, env: &str) -> Result<Option<Auth>> {
        if let Some(file) = file {
            let what = format!("{flag} {}", file.display());
            let text = crate::named_file::read_named_file(file, &what)?;
            return Auth::parse(&text, &what).map(Some);
        }
        match std::env::var(env) {
            Ok(text) if !text.trim().is_empty() => Auth::parse(&text, env).map(Some),
            _ => Ok(None),
        }
    }

    pub fn allows(&self, headers: &HeaderMap) -> bool {
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

/// Standard base64 with padding (RFC 4648), for the expected Basic header
/// (and the one the ClickHouse client sends).
pub(crate) fn base64(bytes: &[u8]) -> String {
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
}
