//! The `--config` file: TOML with the flags' names as keys.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Deserializer, de::DeserializeOwned};

use crate::named_file::read_named_file;

/// The `--config` file: the flags' names as keys.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(deserialize_with = "one_or_many")]
    pub(super) iface: Vec<String>,
    pub(super) xdp_mode: Option<String>,
    pub(super) out_dir: Option<PathBuf>,
    pub(super) flush_interval: Option<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub(super) local: Vec<String>,
    #[serde(deserialize_with = "one_or_many")]
    pub(super) ignore_port: Vec<toml::Value>,
    #[serde(deserialize_with = "one_or_many")]
    pub(super) ignore_net: Vec<String>,
    pub(super) include_multicast: Option<bool>,
    // Wider than the flag's u32, so a too-large value gets the bound's message.
    pub(super) map_size: Option<u64>,
    pub(super) pin_dir: Option<PathBuf>,
    pub(super) metrics: Option<String>,
    pub(super) metrics_auth_file: Option<PathBuf>,
    pub(super) max_pending: Option<usize>,
    pub(super) force: Option<bool>,
    #[serde(deserialize_with = "one_or_many")]
    pub(super) clickhouse: Vec<String>,
    pub(super) clickhouse_password_file: Option<PathBuf>,
    pub(super) clickhouse_ca: Option<PathBuf>,
    pub(super) clickhouse_table: Option<String>,
    pub(super) clickhouse_cluster: Option<String>,
    pub(super) sensor: Option<String>,
}

/// A list key also takes one value: `iface = "eth0"` as `iface = ["eth0"]`.
fn one_or_many<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    deserializer: D,
) -> Result<Vec<T>, D::Error> {
    let items = match toml::Value::deserialize(deserializer)? {
        toml::Value::Array(items) => items,
        one => vec![one],
    };
    items
        .into_iter()
        .map(|item| T::deserialize(item).map_err(serde::de::Error::custom))
        .collect()
}

/// The config file at `path`; one line saying where it is wrong.
pub(super) fn read(path: &Path) -> Result<FileConfig> {
    let text = read_named_file(path, &format!("config file {}", path.display()))?;
    parse(&text).map_err(|err| match err.line {
        Some(line) => anyhow::anyhow!(
            "config file {}, line {line}: {}",
            path.display(),
            err.message
        ),
        None => anyhow::anyhow!("config file {}: {}", path.display(), err.message),
    })
}

/// What is wrong with a config file's text, on one line.
#[derive(Debug)]
pub(super) struct ParseError {
    /// The line it is on, since a message about a value does not name its key.
    pub(super) line: Option<usize>,
    pub(super) message: String,
}

/// A config file's text.
pub(super) fn parse(text: &str) -> Result<FileConfig, ParseError> {
    toml::from_str(text).map_err(|err| ParseError {
        // toml's messages span lines; keep the one line that says what is wrong.
        message: err
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_owned(),
        line: err.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.lines().count().max(1);
            if before.ends_with('\n') {
                line + 1
            } else {
                line
            }
        }),
    })
}
