//! "What changed", end to end: `tsusen serve` on generated day files with one
//! real spike, its JSON (spikes with threshold, ratio, new and their order;
//! every series' change against yesterday and last week and its trend; the
//! per-hour counts) against an independent computation in Python over the
//! same files (`tests/data/report_changes.py`), and the pages that show them.
//! The JSON checks run twice: over the day files, and over the same days
//! stored in a real ClickHouse node (`serve --clickhouse`; skipped without
//! `clickhouse-server`).

mod report_support;

use std::{collections::BTreeMap, path::Path, process::Command};

use report_support::{Server, tempdir, write_report};
use serde_json::Value;
use tsusen::{
    dayfile::{day_from_name, day_name},
    report::{
        aggregate::ProtoPort,
        testdata::{Spec, generate},
    },
    skip_unless,
    testing::{
        clickhouse::{Node, why_not_node},
        have_program,
    },
};

/// 36 days ending 2026-01-30 (30 shown, the first ones with a full
/// baseline), TCP 5555 spiking on the last day.
fn generated(name: &str, rows_per_day: usize) -> std::path::PathBuf {
    let dir = tempdir(name);
    let last = day_from_name("2026-01-30").unwrap();
    generate(
        &dir,
        &Spec {
            first_day: last - 35,
            days: 36,
            rows_per_day,
            seed: 11,
            spike: Some(ProtoPort {
                proto: 6,
                port: 5555,
            }),
        },
    )
    .unwrap();
    dir
}

/// The Python computation's answer.
fn expected(dir: &Path, k: &str, spike_min: &str, hours: &[String]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/report_changes.py");
    let out = tsusen::testing::run_command(
        Command::new("python3")
            .arg(script)
            .arg(dir)
            .args(["30", k, spike_min])
            .args(hours),
    );
    serde_json::from_str(&out).unwrap()
}

fn close(a: &Value, b: &Value, what: &str) {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => assert!(
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
            "{what}: {x} != {y}"
        ),
        _ => assert_eq!(a, b, "{what}"),
    }
}

fn same_change(got: &Value, want: &Value, what: &str) {
    if want.is_null() {
        assert!(got.is_null(), "{what}: {got}");
        return;
    }
    for field in ["before", "now", "delta"] {
        assert_eq!(got[field], want[field], "{what}.{field}");
    }
    close(
        &got["percent"],
        &want["percent"],
        &format!("{what}.percent"),
    );
}

/// Every series, paged through `/api/series`, by label.
fn all_series(server: &Server) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut offset = 0;
    loop {
        let page = server.json(&format!("/api/series?offset={offset}&limit=1000"));
        let rows = page["series"].as_array().unwrap();
        if rows.is_empty() {
            assert_eq!(page["total"].as_u64(), Some(out.len() as u64));
            return out;
        }
        offset += rows.len();
        for s in rows {
            out.insert(s["label"].as_str().unwrap().to_owned(), s.clone());
        }
    }
}

/// `/api/hours` for a `DATE/PROTO/PORT` query.
fn hours_of(server: &Server, query: &str) -> Value {
    let [date, proto, port]: [&str; 3] = query.split('/').collect::<Vec<_>>().try_into().unwrap();
    let port = if port == "-" {
        String::new()
    } else {
        format!("&port={port}")
    };
    server.json(&format!("/api/hours?day={date}&proto={proto}{port}"))
}

/// Where `serve` reads the days from: the directory Python reads, or a
/// ClickHouse node holding the same rows.
#[derive(Clone, Copy)]
enum Source<'a> {
    Files,
    ClickHouse(&'a Node),
}

impl Source<'_> {
    fn serve(self, dir: &Path, extra: &[&str]) -> Server {
        match self {
            Source::Files => Server::start(dir, extra, &[]),
            Source::ClickHouse(node) => {
                let url = node.url();
                let mut args = vec!["--clickhouse", &url];
                args.extend_from_slice(extra);
                Server::start_from(&args, &[])
            }
        }
    }
}

/// One server's JSON against Python's over `dir`, with the given sensitivity.
fn compare(source: Source, dir: &Path, k: &str, spike_min: &str) -> Value {
    let server = source.serve(
        dir,
        &[
            "--spike-k",
            k,
            "--spike-min",
            spike_min,
            "--rate-limit",
            "0",
        ],
    );
    let spikes = server.json("/api/spikes");
    assert_eq!(spikes["spike_k"].as_f64(), k.parse().ok());
    let got = spikes["spikes"].as_array().unwrap();
    let top = &got[0];
    let last = "2026-01-30";
    let newest_day = day_from_name(last).unwrap();
    let hours: Vec<String> = vec![
        format!(
            "{}/{}/{}",
            top["date"].as_str().unwrap(),
            top["proto"].as_str().unwrap(),
            top["port"]
        ),
        format!("{last}/TCP/23"),
        format!("{last}/ICMP/-"),
        format!("{}/UDP/53", day_name(newest_day - 10)),
    ];
    let want = expected(dir, k, spike_min, &hours);

    // Spikes: the same ones, in the same order, with the same numbers.
    let want_spikes = want["spikes"].as_array().unwrap();
    let brief = |v: &Vec<Value>| -> Vec<String> {
        v.iter()
            .map(|s| format!("{} {}", s["date"], s["label"]))
            .collect()
    };
    assert_eq!(brief(got), brief(want_spikes), "spikes and their order");
    for (g, w) in got.iter().zip(want_spikes) {
        let what = format!("spike {} {}", w["date"], w["label"]);
        assert_eq!(g["count"], w["count"], "{what}");
        assert_eq!(g["new"], w["new"], "{what}");
        close(
            &g["threshold"],
            &w["threshold"],
            &format!("{what} threshold"),
        );
        close(&g["ratio"], &w["ratio"], &format!("{what} ratio"));
    }

    // Every series: newest count, change against yesterday and last week, trend.
    let series = all_series(&server);
    let want_series = want["series"].as_object().unwrap();
    assert_eq!(
        series.keys().collect::<Vec<_>>(),
        want_series.keys().collect::<Vec<_>>()
    );
    for (label, w) in want_series {
        let g = &series[label];
        assert_eq!(g["sources"], w["sources"], "{label}");
        same_change(&g["vs_yesterday"], &w["vs_yesterday"], label);
        same_change(&g["vs_last_week"], &w["vs_last_week"], label);
        close(&g["trend"], &w["trend"], &format!("{label} trend"));
    }

    // Per hour.
    for query in &hours {
        let g = hours_of(&server, query);
        assert_eq!(g["hours"], want["hours"][query], "{query}");
        let sum: u64 = g["hours"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(g["sources"].as_u64(), Some(sum), "{query}");
        assert!(sum > 0, "{query}: a query with sources");
    }
    want
}

#[test]
fn spikes_changes_and_hours_match_an_independent_computation() {
    skip_unless!(have_program("python3"), "needs python3");
    let dir = generated("changes-python", 10_000);
    spikes_changes_and_hours_from(Source::Files, &dir);
}

/// The same JSON from `serve --clickhouse` over the same days stored in a
/// real ClickHouse node, still against Python over the day files.
#[test]
fn spikes_changes_and_hours_from_clickhouse_match_the_same_computation() {
    skip_unless!(have_program("python3"), "needs python3");
    skip_unless!(why_not_node().is_empty(), &why_not_node());
    let dir = generated("changes-clickhouse", 10_000);
    let node = Node::start();
    assert!(node.store_day_files(&dir, "tsusen.attempts", "edge-1") > 0);
    spikes_changes_and_hours_from(Source::ClickHouse(&node), &dir);
}

fn spikes_changes_and_hours_from(source: Source, dir: &Path) {
    let want = compare(source, dir, "2", "10");
    // The generated wave is the most significant spike, well clear of the
    // noise that crosses the threshold by chance.
    let spikes = want["spikes"].as_array().unwrap();
    assert_eq!(
        (spikes[0]["date"].as_str(), spikes[0]["label"].as_str()),
        (Some("2026-01-30"), Some("TCP 5555")),
        "{spikes:?}"
    );
    let ratio = |s: &Value| s["ratio"].as_f64().unwrap();
    assert!(ratio(&spikes[0]) > 3.0, "{spikes:?}");
    assert!(
        spikes[1..]
            .iter()
            .all(|s| ratio(s) < ratio(&spikes[0]) / 2.0),
        "{spikes:?}"
    );

    // More sensitive: more spikes, still the same answers as Python's.
    let sensitive = compare(source, dir, "1.5", "5");
    assert!(sensitive["spikes"].as_array().unwrap().len() > spikes.len());
}

#[test]
fn bad_hours_queries_are_one_line_errors() {
    let dir = generated("changes-errors", 10_000);
    let server = Server::start(&dir, &[], &[]);
    for (target, status, says) in [
        ("/api/hours?proto=tcp&port=22", 400, "bad day"),
        ("/api/hours?day=2026-1-30&proto=tcp&port=22", 400, "bad day"),
        ("/api/hours?day=2026-01-30&port=22", 400, "bad protocol"),
        (
            "/api/hours?day=2026-01-30&proto=nope&port=22",
            400,
            "bad protocol",
        ),
        ("/api/hours?day=2026-01-30&proto=tcp", 400, "needs port"),
        (
            "/api/hours?day=2026-01-30&proto=tcp&port=99999",
            400,
            "bad port",
        ),
        (
            "/api/hours?day=2026-01-30&proto=icmp&port=3",
            400,
            "no ports",
        ),
        (
            "/api/hours?day=2020-01-01&proto=tcp&port=22",
            404,
            "outside",
        ),
        (
            "/hours.svg?day=2020-01-01&proto=tcp&port=22",
            404,
            "outside",
        ),
    ] {
        let r = server.get(target);
        assert_eq!(r.status, status, "{target}: {}", r.body);
        let error: Value = serde_json::from_str(&r.body).unwrap();
        let line = error["error"].as_str().unwrap();
        assert!(
            line.contains(says) && !line.contains('\n'),
            "{target}: {line}"
        );
    }
    // A port nobody probed that day: zeros, not an error.
    let quiet = server.json("/api/hours?day=2026-01-30&proto=udp&port=9");
    assert_eq!(quiet["sources"], 0);
    assert_eq!(quiet["hours"].as_array().unwrap().len(), 24);
    let svg = server.get("/hours.svg?day=2026-01-30&proto=tcp&port=5555");
    assert_eq!(svg.status, 200);
    assert_eq!(svg.header("content-type").as_deref(), Some("image/svg+xml"));
    assert_eq!(
        svg.body.matches("<title>").count(),
        24,
        "a tooltip per hour"
    );
}

/// Both pages show the new columns, the series table, the hour view and the
/// chart's tooltips and trend lines.
#[test]
fn the_pages_show_ratio_change_trend_and_hours() {
    // Enough rows for a chart of several series.
    let dir = generated("changes-pages", 40_000);
    let out = dir.join("..").join("changes-pages.html");
    write_report(&dir, &out);
    let html = std::fs::read_to_string(&out).unwrap();
    let server = Server::start(&dir, &[], &[]);
    let served = server.get("/");
    assert_eq!(served.status, 200);
    for page in [&html, &served.body] {
        assert!(page.contains("<th class=\"n\">Ratio</th><th>New</th>"));
        // The largest spike is the first row: the generated wave.
        let table = &page[page.find("id=\"spike-table\"").unwrap()..];
        let first = &table[table.find("<tr class=\"spike\">").unwrap()..];
        assert!(
            first.starts_with(
                "<tr class=\"spike\"><td>2026-01-30</td><td>TCP</td><td class=\"n\">5555</td>"
            ),
            "{}",
            &first[..200]
        );
        let series = &page[page.find("id=\"series-table\"").unwrap()..];
        assert!(series.contains("<th class=\"n\">vs yesterday</th><th class=\"n\">vs last week</th><th class=\"n\">Trend /day</th>"));
        let hours = &page[page.find("<figure id=\"hours-chart\">").unwrap()..];
        assert!(
            hours.contains("TCP 5555 on 2026-01-30:"),
            "the largest spike's hours"
        );
        let chart = &page[page.find("<figure id=\"chart\">").unwrap()..];
        let chart = &chart[..chart.find("</figure>").unwrap()];
        assert!(
            chart.contains("<title>TCP 5555 on 2026-01-30: "),
            "hover values"
        );
        assert!(chart.contains("(spike, "), "the spike's tooltip says so");
    }
    assert!(
        !html.contains("<script"),
        "the static file stays script-free"
    );
}

#[test]
fn a_bad_spike_k_is_one_error_line() {
    for bad in ["-1", "101", "nope", "NaN", "inf"] {
        for command in ["report", "serve"] {
            let k = format!("--spike-k={bad}");
            let mut args = vec![command, "--dir", "/nonexistent", &k];
            if command == "report" {
                args.extend(["--out", "/nonexistent/r.html"]);
            }
            let out = Command::new(env!("CARGO_BIN_EXE_tsusen"))
                .args(&args)
                .output()
                .unwrap();
            let line = tsusen::testing::one_error_line(&out);
            assert!(
                line.contains("--spike-k") && line.contains("from 0 to 100"),
                "{args:?}: {line}"
            );
        }
    }
}
