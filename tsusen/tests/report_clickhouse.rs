//! The report over ClickHouse (`--clickhouse`) against the report over the
//! same day files (`--dir`): the same series, spikes, today and details,
//! with every row stored twice too; the `--sensor` filter and the
//! per-sensor breakdown with two sensors; a refresh that picks up new rows;
//! and the one-line errors. A real ClickHouse is started by each test
//! (`tsusen::testing::clickhouse`); without `clickhouse-server` they skip.

mod report_support;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tsusen::{
    clickhouse::{
        ClickHouseArgs,
        schema::{DayCache, Table, write_tsv_row},
    },
    dayfile::{self, Row, Warnings, day_from_name},
    report::{
        aggregate::{DetailFilter, ProtoPort, WindowOptions},
        enrich::Enrichment,
        load::Loader,
        serve::{details_json, spikes_json, summary_json, today_json, trends_json},
        source::{DaySource, PerSensor, clickhouse::ClickHouseDays},
        testdata::{Spec, generate, write_day},
    },
    skip_unless,
    testing::{
        clickhouse::{Node, why_not_node},
        one_error_line,
    },
};

use self::report_support::{Server, tempdir};

const SPIKE: ProtoPort = ProtoPort {
    proto: 6,
    port: 5555,
};

/// 35 days ending 2026-01-30 with a spike on TCP 5555 on the last one (a
/// full baseline behind every shown day).
fn spec(seed: u64) -> Spec {
    Spec {
        seed,
        ..Spec::bench(35, 20_000)
    }
}

fn day_files(name: &str, seed: u64) -> PathBuf {
    let dir = tempdir(name);
    generate(&dir, &spec(seed)).unwrap();
    dir
}

fn rows_of(dir: &Path) -> Vec<Row> {
    let mut warnings = Warnings::default();
    let mut rows = Vec::new();
    for file in dayfile::list_day_files(dir, &mut warnings).unwrap() {
        dayfile::read_day_file(&file.path, &mut warnings, |r| rows.push(*r)).unwrap();
    }
    assert!(warnings.lines.is_empty(), "{:?}", warnings.lines);
    rows
}

/// Create `table` as the shipper does.
fn create_table(node: &Node, table: &str) {
    for statement in Table::new(table, None).unwrap().ddl() {
        node.query(&statement);
    }
}

/// Insert `rows` as `sensor`'s, as the shipper writes them (one block).
fn insert(node: &Node, table: &str, sensor: &str, rows: &[Row]) {
    let mut tsv = Vec::new();
    let mut days = DayCache::default();
    for row in rows {
        write_tsv_row(row, sensor, &mut days, &mut tsv);
    }
    node.insert(&format!("INSERT INTO {table} FORMAT TabSeparated"), &tsv)
        .unwrap();
}

fn args(node: &Node, table: &str) -> ClickHouseArgs {
    ClickHouseArgs {
        urls: vec![node.url()],
        clickhouse_table: Some(table.to_owned()),
        ..ClickHouseArgs::default()
    }
}

fn span() -> u16 {
    WindowOptions::default().days + 28
}

fn clickhouse_loader(node: &Node, table: &str, sensors: &[&str]) -> Loader {
    let sensors: Vec<String> = sensors.iter().map(|s| (*s).to_owned()).collect();
    let source = ClickHouseDays::connect(&args(node, table), &sensors, span()).unwrap();
    let mut loader = Loader::with_source(Arc::new(source), WindowOptions::default());
    loader.refresh().unwrap();
    loader
}

fn files_loader(dir: &Path) -> Loader {
    let mut loader = Loader::new(dir.to_path_buf(), WindowOptions::default());
    loader.refresh().unwrap();
    loader
}

/// Everything the page and the JSON endpoints show. Details rows that tie
/// in the table's order are ordered by the ids of their sources, which
/// depend on the order rows were read: compared as a set.
fn views(loader: &Loader) -> Value {
    let w = loader.window();
    let all = w.details_page(&DetailFilter::default(), 0, usize::MAX);
    let details = details_json(&w, &Enrichment::default(), &all);
    let mut rows = details["rows"].as_array().unwrap().clone();
    rows.sort_by_key(|r| {
        (
            r["proto"].to_string(),
            r["port"].to_string(),
            r["src"].to_string(),
        )
    });
    json!({
        "summary": summary_json(&w, loader.files(), &loader.warnings()),
        "trends": trends_json(&w),
        "spikes": spikes_json(&w),
        "today": today_json(&w),
        "details_total": details["total"],
        "details": rows,
    })
}

fn assert_same(from_clickhouse: &Value, from_files: &Value) {
    for part in [
        "summary",
        "trends",
        "spikes",
        "today",
        "details_total",
        "details",
    ] {
        assert!(
            from_clickhouse[part] == from_files[part],
            "{part} differs:\nClickHouse: {}\nfiles: {}",
            from_clickhouse[part],
            from_files[part]
        );
    }
}

/// `value` as a client reads it from the server's text (serde_json parses
/// some floats a last digit off: compare after the same round trip).
fn as_served(value: &Value) -> Value {
    serde_json::from_str(&value.to_string()).unwrap()
}

/// The spike the data was made with is found.
fn assert_spike(views: &Value) {
    let spikes = views["spikes"]["spikes"].as_array().unwrap();
    assert!(
        spikes
            .iter()
            .any(|s| s["label"] == "TCP 5555" && s["date"] == "2026-01-30"),
        "{spikes:?}"
    );
}

fn tsusen(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tsusen"));
    cmd.args(args)
        .env_remove("TSUSEN_CLICKHOUSE_PASSWORD")
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn clickhouse_gives_the_report_the_day_files_give() {
    skip_unless!(why_not_node().is_empty(), &why_not_node());
    let dir = day_files("ch-same", 1);
    let rows = rows_of(&dir);
    // A node that never merges: a row inserted twice stays stored twice.
    let node = Node::start_without_merges();
    create_table(&node, "tsusen.attempts");
    insert(&node, "tsusen.attempts", "edge-1", &rows);

    let files = views(&files_loader(&dir));
    assert_spike(&files);
    let clickhouse = views(&clickhouse_loader(&node, "tsusen.attempts", &[]));
    assert_same(&clickhouse, &files);

    // Every row stored twice (a batch shipped again): counted once.
    insert(&node, "tsusen.attempts", "edge-1", &rows);
    assert_eq!(
        node.count("SELECT count() FROM tsusen.attempts"),
        2 * rows.len() as u64
    );
    let twice = views(&clickhouse_loader(&node, "tsusen.attempts", &[]));
    assert_same(&twice, &files);

    // The command line: `serve --clickhouse` answers the same JSON, and
    // `report --clickhouse` writes the page.
    let server = Server::start_from(&["--clickhouse", &node.url()], &[]);
    for (endpoint, part) in [
        ("/api/trends", "trends"),
        ("/api/spikes", "spikes"),
        ("/api/today", "today"),
    ] {
        assert_eq!(server.json(endpoint), as_served(&files[part]), "{endpoint}");
    }
    let summary = server.json("/api/summary");
    assert_eq!(summary["rows"], files["summary"]["rows"]);
    let out = dir.join("..").join("ch-same.html");
    let done = tsusen(
        &[
            "report",
            "--clickhouse",
            &node.url(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(done.status.success(), "{done:?}");
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(
        html.contains("days in ClickHouse") && html.contains("TCP 5555"),
        "{html:.2000}"
    );
}

#[test]
fn sensors_filter_and_break_down_a_series() {
    skip_unless!(why_not_node().is_empty(), &why_not_node());
    let a = day_files("ch-sensor-a", 1);
    let b = day_files("ch-sensor-b", 2);
    // Both sensors' rows in one directory, day by day: what the fleet saw.
    let both = tempdir("ch-sensor-both");
    let (rows_a, rows_b) = (rows_of(&a), rows_of(&b));
    let spec = spec(1);
    for day in spec.first_day..spec.first_day + spec.days {
        let of_day = |rows: &[Row]| -> Vec<Row> {
            rows.iter()
                .filter(|r| dayfile::day_of(r.timestamp) == day)
                .copied()
                .collect()
        };
        let mut rows = of_day(&rows_a);
        rows.extend(of_day(&rows_b));
        write_day(&both, day, &rows).unwrap();
    }
    let node = Node::start();
    let table = "fleet.rows";
    create_table(&node, table);
    insert(&node, table, "a", &rows_a);
    insert(&node, table, "b", &rows_b);

    let files_a = views(&files_loader(&a));
    let files_both = views(&files_loader(&both));
    assert_same(&views(&clickhouse_loader(&node, table, &["a"])), &files_a);
    assert_same(&views(&clickhouse_loader(&node, table, &[])), &files_both);
    assert_same(
        &views(&clickhouse_loader(&node, table, &["b", "a"])),
        &files_both,
    );
    let none = views(&clickhouse_loader(&node, table, &["c"]));
    assert_eq!(none["summary"]["days"], 0, "{}", none["summary"]);
    // A sensor without rows (a typo) is named in a warning.
    let out = tempdir("ch-sensor-typo").join("r.html");
    let typo = tsusen(
        &[
            "report",
            "--clickhouse",
            &node.url(),
            "--clickhouse-table",
            table,
            "--sensor",
            "a",
            "--sensor",
            "c",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(typo.status.success(), "{typo:?}");
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(
        stderr.contains("--sensor c: no rows") && !stderr.contains("--sensor a:"),
        "{stderr}"
    );

    // The breakdown of a series: each sensor's distinct sources per day,
    // as its own day files count them.
    let series = |views: &Value| -> Value {
        views["trends"]["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["label"] == "TCP 5555")
            .map(|s| s["counts"].clone())
            .expect("TCP 5555 is charted")
    };
    let files_b = views(&files_loader(&b));
    let source = ClickHouseDays::connect(&args(&node, table), &[], span()).unwrap();
    let last = day_from_name("2026-01-30").unwrap();
    let PerSensor::Many(per_sensor) = source.per_sensor(SPIKE, last - 29..=last).unwrap() else {
        panic!("ClickHouse breaks a series down by sensor");
    };
    let names: Vec<&str> = per_sensor.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(json!(per_sensor[0].1), series(&files_a));
    assert_eq!(json!(per_sensor[1].1), series(&files_b));

    // The same over HTTP, within --sensor.
    let server = Server::start_from(
        &["--clickhouse", &node.url(), "--clickhouse-table", table],
        &[],
    );
    let answer = server.json("/api/series/sensors?proto=TCP&port=5555");
    assert_eq!(answer["label"], "TCP 5555");
    assert_eq!(answer["days"].as_array().unwrap().len(), 30);
    assert_eq!(answer["sensors"][0]["sensor"], "a");
    assert_eq!(answer["sensors"][0]["counts"], series(&files_a));
    assert_eq!(answer["sensors"][1]["counts"], series(&files_b));
    let only_b = Server::start_from(
        &[
            "--clickhouse",
            &node.url(),
            "--clickhouse-table",
            table,
            "--sensor",
            "b",
        ],
        &[],
    );
    let answer = only_b.json("/api/series/sensors?proto=TCP&port=5555");
    assert_eq!(answer["sensors"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(answer["sensors"][0]["sensor"], "b");
    for bad in [
        "proto=TCP",
        "proto=XYZ&port=1",
        "proto=TCP&port=70000",
        "port=22",
    ] {
        let r = only_b.get(&format!("/api/series/sensors?{bad}"));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }

    // Over a directory the series is its one sensor's: the directory's
    // name, or --sensor.
    let server = Server::start(&a, &["--sensor", "edge-7"], &[]);
    let answer = server.json("/api/series/sensors?proto=tcp&port=5555");
    assert_eq!(answer["sensors"][0]["sensor"], "edge-7");
    assert_eq!(answer["sensors"][0]["counts"], series(&files_a));
    let server = Server::start(&a, &[], &[]);
    let answer = server.json("/api/series/sensors?proto=TCP&port=5555");
    assert_eq!(answer["sensors"][0]["sensor"], "report-ch-sensor-a");
}

#[test]
fn serve_picks_up_rows_shipped_while_it_runs() {
    skip_unless!(why_not_node().is_empty(), &why_not_node());
    let dir = day_files("ch-refresh", 3);
    let rows = rows_of(&dir);
    let last = day_from_name("2026-01-30").unwrap();
    let mut node = Node::start();
    create_table(&node, "tsusen.attempts");
    let (old, newest): (Vec<Row>, Vec<Row>) = rows
        .into_iter()
        .partition(|r| dayfile::day_of(r.timestamp) < last);
    insert(&node, "tsusen.attempts", "edge-1", &old);
    let server = Server::start_from(&["--clickhouse", &node.url()], &[]);
    assert_eq!(server.json("/api/summary")["last_day"], "2026-01-29");
    // The spike day arrives (half of it, then the rest: the same day's
    // stamp changes).
    let (first_half, second_half) = newest.split_at(newest.len() / 2);
    insert(&node, "tsusen.attempts", "edge-1", first_half);
    wait_for(&server, |s| s["last_day"] == "2026-01-29", "the new day");
    let rows_then = server.json("/api/summary")["rows"].as_u64().unwrap();
    insert(&node, "tsusen.attempts", "edge-1", second_half);
    wait_for(&server, |s| s["rows"] == rows_then, "the grown day");
    let files = views(&files_loader(&dir));
    assert_spike(&files);
    for (endpoint, part) in [
        ("/api/trends", "trends"),
        ("/api/spikes", "spikes"),
        ("/api/today", "today"),
    ] {
        assert_eq!(server.json(endpoint), as_served(&files[part]), "{endpoint}");
    }

    // ClickHouse gone: the views stay served (refreshes fail and are
    // logged); what is asked at request time is a 502 with the one line.
    node.kill9();
    let r = server.get("/api/series/sensors?proto=TCP&port=5555");
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(
        r.body.contains("is clickhouse-server running"),
        "{}",
        r.body
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(server.json("/api/spikes"), as_served(&files["spikes"]));
}

/// Poll `/api/summary` until `unchanged` no longer holds (a refresh ran).
fn wait_for(server: &Server, unchanged: impl Fn(&Value) -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while unchanged(&server.json("/api/summary")) {
        assert!(Instant::now() < deadline, "serve never showed {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn wrong_url_password_table_or_flags_are_one_clear_line() {
    skip_unless!(why_not_node().is_empty(), &why_not_node());
    let node = Node::start_with_password("right horse");
    let out = tempdir("ch-errors").join("r.html");
    let out = out.to_str().unwrap();
    let url = node.url();
    let report = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["report", "--out", out];
        args.extend_from_slice(extra);
        one_error_line(&tsusen(&args, env))
    };

    // Nothing listens there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let line = report(&["--clickhouse", &closed], &[]);
    assert!(
        line.contains(&format!("ClickHouse at {closed}/"))
            && line.contains("is clickhouse-server running"),
        "{line}"
    );
    let line = report(
        &["--clickhouse", &url],
        &[("TSUSEN_CLICKHOUSE_PASSWORD", "wrong")],
    );
    assert!(
        line.contains("password")
            && line.contains("TSUSEN_CLICKHOUSE_PASSWORD")
            && !line.contains("wrong"),
        "{line}"
    );
    let env = [("TSUSEN_CLICKHOUSE_PASSWORD", "right horse")];
    let line = report(
        &["--clickhouse", &url, "--clickhouse-table", "nope.rows"],
        &env,
    );
    assert!(
        line.contains("nope.rows does not exist")
            && line.contains("ship rows first")
            && !line.contains("let tsusen create it"),
        "{line}"
    );
    node.query("CREATE DATABASE other");
    node.query("CREATE TABLE other.rows (day Date, n UInt64) ENGINE = MergeTree ORDER BY day");
    let line = report(
        &["--clickhouse", &url, "--clickhouse-table", "other.rows"],
        &env,
    );
    assert!(
        line.contains("other.rows has columns (day Date, n UInt64)"),
        "{line}"
    );
    let line = report(&["--clickhouse", &url, "--sensor", "a b"], &env);
    assert!(line.contains("--sensor \"a b\""), "{line}");
    let line = report(&["--dir", "/tmp", "--sensor", "a", "--sensor", "b"], &env);
    assert!(line.contains("give at most one --sensor"), "{line}");

    // One source, exactly (clap's usage error, exit status 2).
    let both = tsusen(
        &[
            "report",
            "--out",
            out,
            "--dir",
            "/tmp",
            "--clickhouse",
            &url,
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert_eq!(both.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    let neither = tsusen(&["serve"], &[]);
    let stderr = String::from_utf8_lossy(&neither.stderr);
    assert_eq!(neither.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--dir <DIR>") && stderr.contains("--clickhouse <URL>"),
        "{stderr}"
    );
}

/// The report over 30 generated days from ClickHouse against the same day
/// files, both timed in one run (ignored by default: the full size writes
/// about 1.4 GB of day files and stores 30,000,000 rows).
///
/// `TSUSEN_REPORT_ROWS=1000000 cargo test --release -p tsusen --test report_clickhouse -- --ignored --nocapture`
#[test]
#[ignore = "stores up to 30,000,000 rows; run with --ignored in release"]
fn thirty_days_from_clickhouse_against_day_files() {
    skip_unless!(why_not_node().is_empty(), &why_not_node());
    let rows: usize = std::env::var("TSUSEN_REPORT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // The inputs report_perf times too.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("report-bench-{rows}"));
    if std::fs::read_dir(&dir).map_or(0, Iterator::count) != 30 {
        tsusen::report::bench_inputs(&dir, 30, rows).unwrap();
    }
    let node = Node::start();
    let t = Instant::now();
    node.store_day_files(&dir, "tsusen.attempts", "edge-1");
    eprintln!("stored 30 x {rows} rows in {:.2?}", t.elapsed());

    let t = Instant::now();
    let files = files_loader(&dir);
    let from_files = t.elapsed();
    let t = Instant::now();
    let clickhouse = clickhouse_loader(&node, "tsusen.attempts", &[]);
    let from_clickhouse = t.elapsed();
    eprintln!(
        "load: day files {from_files:.2?}, ClickHouse {from_clickhouse:.2?} ({:.2}x the files' time)",
        from_clickhouse.as_secs_f64() / from_files.as_secs_f64()
    );
    let t = Instant::now();
    let mut clickhouse = clickhouse;
    assert!(!clickhouse.refresh().unwrap().changed);
    eprintln!("ClickHouse refresh without changes: {:.2?}", t.elapsed());
    assert_same(&views(&clickhouse), &views(&files));
}
