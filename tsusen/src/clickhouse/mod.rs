//! ClickHouse, where a fleet's rows meet: a small client over its HTTP
//! interface ([`Client`]), the errors it maps to one line with cause and fix
//! ([`error`]), and the table the rows go to ([`schema`]).
//!
//! Why plain HTTP with TSV: every ClickHouse since long before 18.16 (the one
//! Debian 12 ships) speaks it the same way, while the official crate needs a
//! newer rustc and, against 18.16, its validation turned off. Only settings
//! 18.16 knows are ever sent.
//!
//! Credentials: the user is part of the URL (`http://tsusen@host:8123`), the
//! password comes from `TSUSEN_CLICKHOUSE_PASSWORD` or
//! `--clickhouse-password-file`, never from the command line, and it is sent
//! as HTTP Basic authentication (never in a URL, so never in a log line).

pub mod error;
pub mod schema;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use clap::Args;
pub use error::{Cause, ClickHouseError};
use log::{info, warn};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};

use crate::named_file::read_named_file;

/// The environment variable the password may come from.
pub const PASSWORD_ENV: &str = "TSUSEN_CLICKHOUSE_PASSWORD";

/// How long to wait for a TCP (and TLS) connection to a server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request (an insert of a whole batch included) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// The most of a response read: query results the report pages are small.
const MAX_RESPONSE: u64 = 256 << 20;

/// The flags naming a ClickHouse, shared by `ship`, `run` and the report.
#[derive(Args, Debug, Clone, Default)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP(S) URL, the user in it (http://tsusen@host:8123); repeat for replicas (a failed one is skipped for the next).
    #[arg(long = "clickhouse", value_name = "URL")]
    pub urls: Vec<String>,
    /// File whose first line is the ClickHouse password [default: $TSUSEN_CLICKHOUSE_PASSWORD, else none].
    #[arg(long, value_name = "FILE")]
    pub clickhouse_password_file: Option<PathBuf>,
    /// PEM file of the CA that signed the ClickHouse server's certificate (https URLs) [default: the system's web roots].
    #[arg(long, value_name = "FILE")]
    pub clickhouse_ca: Option<PathBuf>,
    /// The table rows go to, as DATABASE.TABLE [default: tsusen.attempts].
    #[arg(long, value_name = "DB.TABLE")]
    pub clickhouse_table: Option<String>,
    /// A ClickHouse cluster (remote_servers) to create the tables ON: a replicated local table and a Distributed one sharded by sensor.
    #[arg(long, value_name = "NAME")]
    pub clickhouse_cluster: Option<String>,
}

impl ClickHouseArgs {
    /// The client these flags describe (the password read now).
    pub fn client(&self) -> Result<Client> {
        let password = read_password(self.clickhouse_password_file.as_deref())?;
        Client::new(&self.urls, password, self.clickhouse_ca.as_deref())
    }

    /// The table these flags name.
    pub fn table(&self) -> Result<schema::Table> {
        schema::Table::new(
            self.clickhouse_table
                .as_deref()
                .unwrap_or(schema::DEFAULT_TABLE),
            self.clickhouse_cluster.as_deref(),
        )
    }
}

/// The password: the first line of `file`, else `$TSUSEN_CLICKHOUSE_PASSWORD`,
/// else none.
pub fn read_password(file: Option<&Path>) -> Result<Option<String>> {
    if let Some(path) = file {
        let what = format!("--clickhouse-password-file {}", path.display());
        let text = read_named_file(path, &what)?;
        let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
        return Ok(Some(line.to_owned()));
    }
    Ok(std::env::var(PASSWORD_ENV).ok())
}

/// One server: its URL without the user, and the user.
#[derive(Clone, Debug)]
struct Endpoint {
    /// `scheme://host:port/path`, as requests go and log lines show it.
    base: String,
    user: Option<String>,
}

impl Endpoint {
    /// Split `http://user@host:port/path`; a password in the URL is refused
    /// (it would show in `ps` and in logs).
    fn parse(url: &str) -> Result<Self> {
        let (scheme, rest) = url.split_once("://").with_context(|| {
            format!("--clickhouse {url:?}: not a URL; e.g. http://tsusen@localhost:8123")
        })?;
        if scheme != "http" && scheme != "https" {
            bail!("--clickhouse {url:?}: the scheme must be http or https");
        }
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, "/"),
        };
        let (user, host) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                if userinfo.contains(':') {
                    bail!(
                        "--clickhouse: a password in the URL would show in ps and logs; \
                         put it in ${PASSWORD_ENV} or --clickhouse-password-file"
                    );
                }
                (Some(userinfo.to_owned()), host)
            }
            None => (None, authority),
        };
        if host.is_empty() {
            bail!("--clickhouse {url:?}: no host; e.g. http://tsusen@localhost:8123");
        }
        Ok(Endpoint {
            base: format!("{scheme}://{host}{path}"),
            user,
        })
    }
}

/// A replica, as `tsusen_ship_failovers_total` labels it: its URL without
/// the user.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaLabel {
    pub url: String,
}

/// Requests moved on from a replica to the next, by replica.
pub type Failovers = Family<ReplicaLabel, Counter>;

/// A client of one ClickHouse, or of several replicas of it. Cheap to clone
/// (the connections are shared). Blocking: the shipper runs in its own thread.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    endpoints: Arc<[Endpoint]>,
    password: Option<Arc<str>>,
    /// The endpoint that answered last: tried first next time.
    current: Arc<AtomicUsize>,
    /// Per endpoint: whether it was left for the next one (logged once when
    /// it goes down, once when it answers again).
    down: Arc<[AtomicBool]>,
    /// Requests moved on from each endpoint to the next.
    failovers: Failovers,
    /// Settings sent with every insert (see [`Client::with_insert_setting`]).
    insert_settings: Vec<(&'static str, &'static str)>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("Client")
            .field("urls", &self.urls())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the servers at `urls` (tried in order, a failed one
    /// skipped for the next), with `ca_file` as the only trusted CA for
    /// https if given.
    pub fn new(urls: &[String], password: Option<String>, ca_file: Option<&Path>) -> Result<Self> {
        if urls.is_empty() {
            bail!("no --clickhouse URL given; e.g. --clickhouse http://tsusen@localhost:8123");
        }
        let endpoints = urls
            .iter()
            .map(|url| Endpoint::parse(url))
            .collect::<Result<Vec<_>>>()?;
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(path) = ca_file {
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&read_ca(path)?));
        }
        let config = ureq::Agent::config_builder()
            // ClickHouse's errors come with 4xx/5xx: read them as answers.
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .tls_config(tls.build())
            .user_agent(concat!("tsusen/", env!("CARGO_PKG_VERSION")))
            .build();
        let failovers = Failovers::default();
        // Every replica from the start, so a rate() has a series before the first failover.
        for endpoint in &endpoints {
            let _ = failovers.get_or_create(&ReplicaLabel {
                url: endpoint.base.clone(),
            });
        }
        Ok(Client {
            agent: config.new_agent(),
            down: endpoints.iter().map(|_| AtomicBool::new(false)).collect(),
            endpoints: endpoints.into(),
            password: password.map(Into::into),
            current: Arc::new(AtomicUsize::new(0)),
            failovers,
            insert_settings: Vec::new(),
        })
    }

    /// The failover counter (clones share it): for the ship metrics.
    pub fn failovers(&self) -> Failovers {
        self.failovers.clone()
    }

    /// Send `name=value` with every insert (e.g. `insert_distributed_sync=1`
    /// for a Distributed table, so an insert is acknowledged only once the
    /// shards have it). Only settings 18.16 knows.
    pub fn with_insert_setting(mut self, name: &'static str, value: &'static str) -> Self {
        self.insert_settings.push((name, value));
        self
    }

    /// The servers' URLs as given, without the password (there is none in them).
    pub fn urls(&self) -> Vec<String> {
        self.endpoints
            .iter()
            .map(|e| match &e.user {
                Some(user) => e.base.replacen("://", &format!("://{user}@"), 1),
                None => e.base.clone(),
            })
            .collect()
    }

    /// Run `sql` (a query or DDL) and return its output: for a SELECT, the
    /// rows as TSV text (add `FORMAT TabSeparated` or leave the default,
    /// which is TSV too).
    pub fn query(&self, sql: &str) -> Result<String, ClickHouseError> {
        self.request(sql, &[], |req| req.send(sql.as_bytes()))
    }

    /// `query`'s output split into lines.
    pub fn query_lines(&self, sql: &str) -> Result<Vec<String>, ClickHouseError> {
        Ok(self.query(sql)?.lines().map(str::to_owned).collect())
    }

    /// Insert `tsv` (rows in TabSeparated, each ending in a newline) into
    /// `table`. One request: ClickHouse stores it as one block (up to its
    /// `max_insert_block_size`, 1,048,576 rows), all or nothing.
    pub fn insert(&self, table: &str, tsv: &[u8]) -> Result<(), ClickHouseError> {
        let query = format!("INSERT INTO {table} FORMAT TabSeparated");
        let settings = self.insert_settings.clone();
        self.request(&query, &settings, |req| req.send(tsv))
            .map(drop)
    }

    /// Send one request to the current server, then to each other one in
    /// turn while they cannot be reached or say they are unwell
    /// ([`Cause::tries_next_replica`]); the first other answer (or the error
    /// of the last server tried) is the result. A server left for the next
    /// is logged once, and once more when it answers again; each move to
    /// the next is counted.
    fn request(
        &self,
        what: &str,
        settings: &[(&str, &str)],
        send: impl Fn(
            ureq::RequestBuilder<ureq::typestate::WithBody>,
        ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<String, ClickHouseError> {
        let first = self.current.load(Ordering::Relaxed) % self.endpoints.len();
        let mut last_err = None;
        for step in 0..self.endpoints.len() {
            let index = (first + step) % self.endpoints.len();
            let endpoint = &self.endpoints[index];
            let mut req = self.agent.post(&endpoint.base);
            // A query too long for a URL goes in the body; an insert's
            // query goes in the URL, its rows in the body.
            if what.starts_with("INSERT ") {
                req = req.query("query", what);
            }
            for (name, value) in settings {
                req = req.query(*name, *value);
            }
            if let Some(user) = &endpoint.user {
                req = req.header(
                    "Authorization",
                    basic_auth(user, self.password.as_deref().unwrap_or("")),
                );
            } else if let Some(password) = &self.password {
                req = req.header("Authorization", basic_auth("default", password));
            }
            let result = send(req)
                .map_err(|err| ClickHouseError::transport(&endpoint.base, &err))
                .and_then(|mut response| {
                    let status = response.status().as_u16();
                    let body = response
                        .body_mut()
                        .with_config()
                        .limit(MAX_RESPONSE)
                        .read_to_string()
                        .map_err(|err| ClickHouseError::transport(&endpoint.base, &err))?;
                    if status == 200 {
                        Ok(body)
                    } else {
                        Err(ClickHouseError::server(&endpoint.base, status, &body))
                    }
                });
            match result {
                Ok(body) => {
                    self.answered(index);
                    self.current.store(index, Ordering::Relaxed);
                    return Ok(body);
                }
                // Another replica may do better; any other answer is the
                // same from every replica.
                Err(err) if err.cause.tries_next_replica() => {
                    if self.endpoints.len() > 1 {
                        self.left(index, &err, step + 1 < self.endpoints.len());
                    }
                    last_err = Some(err);
                }
                Err(err) => {
                    self.answered(index);
                    return Err(err);
                }
            }
        }
        Err(last_err.expect("at least one endpoint"))
    }

    /// The endpoint `index` failed with `err` and the next is tried
    /// (`moving_on`) or every one has been.
    fn left(&self, index: usize, err: &ClickHouseError, moving_on: bool) {
        let endpoint = &self.endpoints[index];
        if moving_on {
            self.failovers
                .get_or_create(&ReplicaLabel {
                    url: endpoint.base.clone(),
                })
                .inc();
        }
        if !self.down[index].swap(true, Ordering::Relaxed) {
            let next = &self.endpoints[(index + 1) % self.endpoints.len()];
            warn!(
                "ClickHouse at {}: {}; trying the next replica ({}) until this one answers again",
                endpoint.base, err.detail, next.base
            );
        }
    }

    /// The endpoint `index` answered: say so if it was left before.
    fn answered(&self, index: usize) {
        if self.down[index].swap(false, Ordering::Relaxed) {
            info!("ClickHouse at {} answers again", self.endpoints[index].base);
        }
    }
}

/// `Basic base64(user:password)`.
fn basic_auth(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        crate::http::auth::base64(format!("{user}:{password}").as_bytes())
    )
}

/// The certificates of a PEM file (`--clickhouse-ca`).
fn read_ca(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>> {
    let what = format!("--clickhouse-ca {}", path.display());
    let pem = read_named_file(path, &what)?;
    let certs = ureq::tls::parse_pem(pem.as_bytes())
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
            Ok(_) => None,
            Err(err) => Some(Err(err)),
        })
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{what}: not a PEM file"))?;
    if certs.is_empty() {
        bail!("{what}: no certificate (-----BEGIN CERTIFICATE-----) in it");
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_comes_from_the_url_and_a_password_never_does() {
        let e = Endpoint::parse("http://tsusen@127.0.0.1:8123").unwrap();
        assert_eq!(e.base, "http://127.0.0.1:8123/");
        assert_eq!(e.user.as_deref(), Some("tsusen"));
        let e = Endpoint::parse("https://ch.example:8443/x").unwrap();
        assert_eq!(e.base, "https://ch.example:8443/x");
        assert_eq!(e.user, None);
        let err = Endpoint::parse("http://u:secret@h:1")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(PASSWORD_ENV) && !err.contains("secret"),
            "{err}"
        );
        assert!(Endpoint::parse("ftp://h").is_err());
        assert!(Endpoint::parse("localhost:8123").is_err());
    }

    #[test]
    fn basic_auth_is_base64_of_user_colon_password() {
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic_auth("a", ""), "Basic YTo=");
        assert_eq!(basic_auth("ab", "c"), "Basic YWI6Yw==");
    }

    /// A server on 127.0.0.1 answering every request with `status` and
    /// `body`; its URL.
    fn fake_server(status: u16, body: &'static str) -> String {
        use std::io::{BufRead as _, BufReader, Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://u@{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap();
                    }
                }
                let mut request = vec![0; length];
                let _ = reader.read_exact(&mut request);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        url
    }

    fn failovers(client: &Client, url: &str) -> u64 {
        let base = Endpoint::parse(url).unwrap().base;
        client
            .failovers()
            .get_or_create(&ReplicaLabel { url: base })
            .get()
    }

    #[test]
    fn an_unwell_or_unreachable_replica_is_left_for_the_next_and_counted() {
        let read_only = fake_server(
            500,
            "Code: 242, e.displayText() = DB::Exception: Table is in readonly mode, e.what() = DB::Exception\n",
        );
        let healthy = fake_server(200, "");
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://u@{}", listener.local_addr().unwrap())
        };
        let urls = [read_only.clone(), closed.clone(), healthy.clone()];
        let client = Client::new(&urls, None, None).unwrap();
        client.insert("t.a", b"row\n").unwrap();
        assert_eq!(failovers(&client, &read_only), 1);
        assert_eq!(failovers(&client, &closed), 1);
        assert_eq!(failovers(&client, &healthy), 0);
        // The one that answered is asked first from now on.
        client.insert("t.a", b"row\n").unwrap();
        assert_eq!(failovers(&client, &read_only), 1);

        // Answers that are the same from every replica are not moved on from.
        let wrong_password = fake_server(
            401,
            "Code: 193, e.displayText() = DB::Exception: Wrong password for user u\n",
        );
        let client = Client::new(&[wrong_password.clone(), healthy], None, None).unwrap();
        let err = client.insert("t.a", b"row\n").unwrap_err();
        assert_eq!(err.cause, Cause::Auth);
        assert_eq!(failovers(&client, &wrong_password), 0);
    }

    #[test]
    fn debug_shows_no_password() {
        let client = Client::new(
            &["http://u@h:1".to_owned()],
            Some("hunter2".to_owned()),
            None,
        )
        .unwrap();
        let shown = format!("{client:?}");
        assert!(
            shown.contains("http://u@h:1/") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
