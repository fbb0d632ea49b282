//! Headless Chromium for the report's browser tests: a bounded run with a
//! fresh profile and a network log, the requests a page made, and where
//! screenshots go.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use super::tempdir;

/// Where screenshots and dumped pages go: `target/test-artifacts/`.
pub(crate) fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run headless Chromium with a fresh profile, bounded in time, recording
/// its network log. Returns stdout.
pub(crate) fn chromium(name: &str, args: &[&str]) -> (String, PathBuf) {
    let profile = tempdir(&format!("chromium-{name}"));
    let netlog = profile.join("netlog.json");
    let stdout = tsusen::testing::run_command(
        Command::new("timeout")
            .args(["120", "chromium"])
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                // Nothing leaves the machine, whatever asks.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--virtual-time-budget=5000",
            ])
            .arg(format!(
                "--user-data-dir={}",
                profile.join("profile").display()
            ))
            .arg(format!("--log-net-log={}", netlog.display()))
            .args(args),
    );
    (stdout, netlog)
}

/// URLs of requests the page made (Chromium's own background requests have
/// no initiator origin and are not the page's doing).
pub(crate) fn page_requests(netlog: &Path) -> Vec<String> {
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(netlog).unwrap()).unwrap();
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].clone();
    log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == start_job)
        .map(|e| &e["params"])
        // The end of a job repeats the type without parameters.
        .filter(|p| p["url"].is_string())
        .filter(|p| p["request_type"] == "main frame" || p["initiator"] != "not an origin")
        .map(|p| p["url"].as_str().unwrap().to_owned())
        .collect()
}

/// No `http://` or `https://` URL in a page except the server's own.
pub(crate) fn assert_no_urls(html: &str, own: Option<&str>) {
    for scheme in ["http://", "https://"] {
        for (i, _) in html.match_indices(scheme) {
            let url: String = html[i..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '<')
                .collect();
            assert!(
                own.is_some_and(|own| url.starts_with(own)),
                "external URL {url} in page"
            );
        }
    }
}
