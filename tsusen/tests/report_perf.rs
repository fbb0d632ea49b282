//! Timing of the report on generated data (ignored by default: the full size
//! writes about 1.4 GB). `cargo xtask bench` times the same inputs.
//!
//! `TSUSEN_REPORT_ROWS=1000000 cargo test --release -p tsusen --test report_perf -- --ignored --nocapture`

use std::{path::PathBuf, time::Instant};

use tsusen::report::{aggregate::WindowOptions, bench_inputs, load::Loader, static_page};

fn rows_per_day() -> usize {
    std::env::var("TSUSEN_REPORT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// Current and peak resident memory of this process, in MiB.
fn memory_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
#[ignore = "writes up to 1.4 GB of day files; run with --ignored in release"]
fn thirty_days_report_and_refresh() {
    let rows = rows_per_day();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("report-bench-{rows}"));
    if std::fs::read_dir(&dir).map_or(0, std::iter::Iterator::count) != 30 {
        let t = Instant::now();
        bench_inputs(&dir, 30, rows).unwrap();
        eprintln!("generated 30 x {rows} rows in {:.2?}", t.elapsed());
    }
    let t = Instant::now();
    let mut loader = Loader::new(dir.clone(), WindowOptions::default());
    loader.refresh().unwrap();
    let loaded = t.elapsed();
    let html = static_page(&loader, 1000).unwrap();
    let total = t.elapsed();
    let (rss, peak) = memory_mib();
    eprintln!(
        "report: load {loaded:.2?}, total {total:.2?}, html {} KiB, rss {rss} MiB, peak {peak} MiB",
        html.len() / 1024
    );

    // The server's steady state: nothing changed, then the newest file grew.
    let t = Instant::now();
    let r = loader.refresh().unwrap();
    assert!(!r.changed);
    eprintln!("refresh without changes: {:.2?}", t.elapsed());
    let window = loader.window();
    let t = Instant::now();
    let page = window.details_page(&tsusen::report::aggregate::DetailFilter::default(), 0, 50);
    eprintln!("details page of {}: {:.2?}", page.total, t.elapsed());
    let t = Instant::now();
    let filter =
        tsusen::report::aggregate::DetailFilter::parse(Some("198.18.0.0/20"), None, Some("tcp"))
            .unwrap();
    let page = window.details_page(&filter, 0, 50);
    eprintln!(
        "filtered details page of {}: {:.2?}",
        page.total,
        t.elapsed()
    );
}
