//! What went wrong talking to ClickHouse, as one line naming the cause and
//! the fix, and a [`Cause`] that metrics count and the shipper decides on
//! (retry a server that is down; tell the user about a wrong password).

use std::fmt;

/// Why a request failed: the label `tsusen_ship_errors_total{cause}` counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// No connection: refused, no such host, timed out, reset.
    Unreachable,
    /// The TLS handshake failed (an unknown CA, a wrong host name).
    Tls,
    /// Unknown user or wrong password (codes 192, 193, 516).
    Auth,
    /// The table or its database does not exist (codes 60, 81).
    UnknownTable,
    /// The table's columns are not the ones tsusen writes, or the rows do
    /// not parse as them.
    Schema,
    /// The server does not know a setting it was sent (code 115).
    UnknownSetting,
    /// The server answered that it cannot take rows now, for reasons of its
    /// own that another replica may not share: a replicated table in
    /// read-only mode (242), its disk full (243), too many parts (252),
    /// ZooKeeper unreachable or its session lost (225, 999), too many
    /// queries (202), or a proxy in front of it without a server (502-504).
    Unhealthy,
    /// Any other error the server answered with.
    Server,
}

impl Cause {
    /// Every cause, for metrics that show each from the start.
    pub const ALL: [Cause; 8] = [
        Cause::Unreachable,
        Cause::Tls,
        Cause::Auth,
        Cause::UnknownTable,
        Cause::Schema,
        Cause::UnknownSetting,
        Cause::Unhealthy,
        Cause::Server,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Cause::Unreachable => "unreachable",
            Cause::Tls => "tls",
            Cause::Auth => "auth",
            Cause::UnknownTable => "unknown_table",
            Cause::Schema => "schema",
            Cause::UnknownSetting => "unknown_setting",
            Cause::Unhealthy => "unhealthy",
            Cause::Server => "server",
        }
    }

    /// Whether waiting may cure it (a server down or busy), rather than
    /// someone changing a setting.
    pub fn is_transient(self) -> bool {
        matches!(self, Cause::Unreachable | Cause::Unhealthy | Cause::Server)
    }

    /// Whether another replica may do better: this one cannot be reached,
    /// or said it is unwell. Every other answer is the same from all of them
    /// (a wrong password, a missing table, rows it cannot parse).
    pub fn tries_next_replica(self) -> bool {
        matches!(self, Cause::Unreachable | Cause::Unhealthy)
    }

    /// The fix to suggest.
    fn fix(self) -> &'static str {
        match self {
            Cause::Unreachable => {
                "is clickhouse-server running, and are the --clickhouse host and HTTP port (8123 by default) right?"
            }
            Cause::Tls => {
                "give the CA that signed the server's certificate with --clickhouse-ca, and a URL with the certificate's host name"
            }
            Cause::Auth => {
                "check the user in the --clickhouse URL and the password in $TSUSEN_CLICKHOUSE_PASSWORD or --clickhouse-password-file"
            }
            Cause::UnknownTable => {
                "let tsusen create it (the user needs CREATE rights) or create it with `tsusen ship --print-schema`"
            }
            Cause::Schema => {
                "the table has other columns than tsusen's: compare with `tsusen ship --print-schema`, or name another one with --clickhouse-table"
            }
            Cause::UnknownSetting => {
                "this ClickHouse does not know a setting tsusen sent; please report its version"
            }
            Cause::Unhealthy => {
                "this server cannot take rows now (another --clickhouse replica is tried); see its log"
            }
            Cause::Server => "see the ClickHouse server's log",
        }
    }
}

/// The fix for a TLS handshake whose answer was not TLS at all (rustls:
/// "received corrupt message of type InvalidContentType"): an `https` URL
/// with the port of ClickHouse's plain `http_port`. A CA would not help.
const PLAIN_HTTP_PORT_FIX: &str = "this port answers in plain HTTP, not TLS: use an http:// URL, or the port of the server's https_port";

/// What [`ClickHouseError::transport`] says when an `https` server took the
/// connection but never answered the TLS handshake.
const SILENT_HANDSHAKE: &str = "it took the connection but did not answer the TLS handshake";

/// The fix for that: ClickHouse's plain `http_port` often waits for the rest
/// of an HTTP request that a TLS greeting never completes, rather than
/// answering it with an error (which of the two depends on the greeting's
/// random bytes). A CA would not help.
const SILENT_HANDSHAKE_FIX: &str = "if this is the server's plain HTTP port (http_port), use an http:// URL, or the port of the server's https_port";

/// A failed request: which server, why, what it said, and the fix.
#[derive(Clone, Debug)]
pub struct ClickHouseError {
    pub cause: Cause,
    /// The server's URL (no credentials are ever in it).
    pub server: String,
    /// What happened, in one line (the server's message without its stack).
    pub detail: String,
}

impl ClickHouseError {
    /// The fix to suggest: the cause's, unless the detail says better.
    fn fix(&self) -> &'static str {
        if self.cause == Cause::Tls && self.detail.contains("InvalidContentType") {
            PLAIN_HTTP_PORT_FIX
        } else if self.cause == Cause::Tls && self.detail == SILENT_HANDSHAKE {
            SILENT_HANDSHAKE_FIX
        } else {
            self.cause.fix()
        }
    }
}

impl fmt::Display for ClickHouseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ClickHouse at {}: {}; {}",
            self.server,
            self.detail,
            self.fix()
        )
    }
}

impl std::error::Error for ClickHouseError {}

impl ClickHouseError {
    /// An error of our own about `server` (a table with other columns).
    pub fn new(cause: Cause, server: &str, detail: impl Into<String>) -> Self {
        ClickHouseError {
            cause,
            server: server.to_owned(),
            detail: detail.into(),
        }
    }

    /// No answer from `server`.
    pub(super) fn transport(server: &str, err: &ureq::Error) -> Self {
        // The connect timeout covers the TLS handshake too: tell a server
        // that is not there from one that took the connection and kept
        // silent (an https URL at a plain HTTP port), which waiting will not
        // cure.
        if matches!(err, ureq::Error::Timeout(ureq::Timeout::Connect))
            && server.starts_with("https://")
            && takes_connections(server)
        {
            return ClickHouseError::new(Cause::Tls, server, SILENT_HANDSHAKE);
        }
        let cause = match err {
            ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => Cause::Tls,
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => Cause::Tls,
            _ => Cause::Unreachable,
        };
        let detail = match err {
            ureq::Error::Io(io) => io.to_string(),
            ureq::Error::HostNotFound => "host not found".to_owned(),
            ureq::Error::ConnectionFailed => "connection failed".to_owned(),
            other => other.to_string(),
        };
        ClickHouseError::new(cause, server, detail)
    }

    /// An error answer: HTTP status and ClickHouse's `Code: N, ...` text.
    pub(super) fn server(server: &str, status: u16, body: &str) -> Self {
        let code = exception_code(body);
        let cause = match code {
            Some(192 | 193 | 194 | 516) => Cause::Auth,
            Some(60 | 81) => Cause::UnknownTable,
            Some(115) => Cause::UnknownSetting,
            // NO_SUCH_COLUMN_IN_TABLE, THERE_IS_NO_COLUMN, TYPE_MISMATCH,
            // the input formats' parse errors, INCORRECT_NUMBER_OF_COLUMNS,
            // NUMBER_OF_COLUMNS_DOESNT_MATCH, UNKNOWN_IDENTIFIER.
            Some(6 | 7 | 8 | 16 | 26 | 27 | 38 | 41 | 47 | 53 | 69 | 72 | 117 | 10) => {
                Cause::Schema
            }
            // TOO_MANY_SIMULTANEOUS_QUERIES, NO_ZOOKEEPER, TABLE_IS_READ_ONLY,
            // NOT_ENOUGH_SPACE, TOO_MANY_PARTS, KEEPER_EXCEPTION.
            Some(202 | 225 | 242 | 243 | 252 | 999) => Cause::Unhealthy,
            _ if body.contains("Table is in readonly mode")
                || body.contains("Coordination::Exception") =>
            {
                Cause::Unhealthy
            }
            None if matches!(status, 502..=504) => Cause::Unhealthy,
            _ if status == 401 || status == 403 => Cause::Auth,
            _ => Cause::Server,
        };
        ClickHouseError::new(cause, server, format!("HTTP {status}: {}", message(body)))
    }
}

/// Whether `server` (an `https://host[:port]/` URL) accepts a TCP connection
/// within a second.
fn takes_connections(server: &str) -> bool {
    let Ok(uri) = server.parse::<ureq::http::Uri>() else {
        return false;
    };
    let Some(host) = uri.host() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(443);
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).is_ok_and(|mut addrs| {
        addrs.any(|addr| {
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).is_ok()
        })
    })
}

/// The `N` of `Code: N, e.displayText() = ...` (18.16) or `Code: N. DB::...`
/// (current releases).
fn exception_code(body: &str) -> Option<u32> {
    let rest = body.trim_start().strip_prefix("Code: ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The server's message in one line: its first line, without 18.16's
/// `e.displayText() = ` and `, e.what() = ...` wrapping or the data a parse
/// error quotes, cut to a length a log line can carry.
fn message(body: &str) -> String {
    let line = body
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(empty answer)");
    let line = line.replace("e.displayText() = ", "");
    let line = match line.find(", e.what() = ") {
        Some(at) => &line[..at],
        None => &line,
    };
    // A parse error quotes the rows after it: the message is enough.
    let line = match line.find(" before: ") {
        Some(at) => &line[..at],
        None => line,
    };
    let line = match line.find(" (version ") {
        Some(at) => &line[..at],
        None => line,
    };
    let mut line = line.trim().to_owned();
    if line.len() > 300 {
        let mut cut = 300;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str("...");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_of_18_16_and_current_releases_map_to_causes() {
        let cases = [
            (
                "Code: 193, e.displayText() = DB::Exception: Wrong password for user tsusen, e.what() = DB::Exception\n",
                401,
                Cause::Auth,
            ),
            (
                "Code: 516. DB::Exception: tsusen: Authentication failed: password is incorrect. (AUTHENTICATION_FAILED) (version 24.8.1)",
                516,
                Cause::Auth,
            ),
            (
                "Code: 60, e.displayText() = DB::Exception: Table x.t doesn't exist., e.what() = DB::Exception",
                404,
                Cause::UnknownTable,
            ),
            (
                "Code: 115, e.displayText() = DB::Exception: Unknown setting foo, e.what() = DB::Exception",
                404,
                Cause::UnknownSetting,
            ),
            (
                "Code: 27, e.displayText() = DB::Exception: Cannot parse input",
                500,
                Cause::Schema,
            ),
            (
                "Code: 241, e.displayText() = DB::Exception: Memory limit exceeded",
                500,
                Cause::Server,
            ),
            (
                "Code: 242, e.displayText() = DB::Exception: Table is in readonly mode, e.what() = DB::Exception",
                500,
                Cause::Unhealthy,
            ),
            (
                "Code: 252. DB::Exception: Too many parts (300). Merges are processing significantly slower than inserts. (TOO_MANY_PARTS) (version 24.8.1)",
                500,
                Cause::Unhealthy,
            ),
            (
                "Code: 243, e.displayText() = DB::Exception: Cannot reserve 1.00 MiB, not enough space",
                500,
                Cause::Unhealthy,
            ),
            (
                "Code: 999, e.displayText() = Coordination::Exception: Session expired",
                500,
                Cause::Unhealthy,
            ),
            ("<html>502 Bad Gateway</html>", 502, Cause::Unhealthy),
        ];
        for (body, status, cause) in cases {
            let err = ClickHouseError::server("http://h:8123/", status, body);
            assert_eq!(err.cause, cause, "{body}");
            let line = err.to_string();
            assert!(!line.contains('\n') && !line.contains("e.what()"), "{line}");
        }
        let err = ClickHouseError::server(
            "http://h:8123/",
            401,
            "Code: 193, e.displayText() = DB::Exception: Wrong password for user tsusen, e.what() = DB::Exception\n",
        );
        assert_eq!(
            err.to_string(),
            "ClickHouse at http://h:8123/: HTTP 401: Code: 193, DB::Exception: Wrong password for user tsusen; \
             check the user in the --clickhouse URL and the password in $TSUSEN_CLICKHOUSE_PASSWORD or --clickhouse-password-file"
        );
    }
}
