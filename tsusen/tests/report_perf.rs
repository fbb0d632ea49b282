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

    who_views(&window);
}

/// The median of `runs` timings of `f`, in milliseconds.
fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

/// Issue 10's targets for `serve`: a drill-down or a filtered answer within
/// 100 ms at the median, with enrichment on (here a label list: the
/// MaxMind databases need a writer the bench does not assume), memory
/// within 300 MB. Printed, never asserted.
fn who_views(window: &tsusen::report::aggregate::Window) {
    use tsusen::report::{
        aggregate::{DestinationSort, DrillSort, ProtoPort},
        enrich::{EnrichArgs, Enricher},
        filter::{Filter, FilterQuery},
    };
    let labels = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-bench-labels.txt");
    std::fs::write(
        &labels,
        "198.18.0.0/24 research\n198.18.0.0/16 partner\n192.0.2.0/24 ours\n",
    )
    .unwrap();
    let t = Instant::now();
    let enricher = Enricher::load(&EnrichArgs {
        labels: vec![labels],
        ..EnrichArgs::default()
    });
    let enrichment = enricher.enrich(window.addresses());
    eprintln!(
        "enrichment (labels) of {} addresses: {:.2?}",
        window.addresses().len(),
        t.elapsed()
    );
    let selection = |q: FilterQuery| {
        Filter::parse(&q)
            .unwrap()
            .selection(window, &enrichment)
            .unwrap()
    };
    let all = selection(FilterQuery::default());
    let spike = ProtoPort {
        proto: 6,
        port: 5555,
    };
    let day = window.last_day;
    let mut total = 0;
    let drill = median_ms(30, || {
        total = window
            .drill(day, spike, &all, DrillSort::default(), 0, 50)
            .unwrap()
            .total;
    });
    eprintln!(
        "drill-down of TCP 5555 on the newest day ({total} sources), median of 30: {drill:.1} ms"
    );
    let by_ports = DrillSort::parse(Some("-ports")).unwrap();
    let drill = median_ms(30, || {
        window.drill(day, spike, &all, by_ports, 0, 50).unwrap();
    });
    eprintln!("the same by ports tried, median of 30: {drill:.1} ms");
    let dst = FilterQuery {
        dst: Some("192.0.2.0/25,203.0.113.5-203.0.113.9".into()),
        nolabel: Some("research".into()),
        ..FilterQuery::default()
    };
    let filtered = median_ms(30, || {
        let sel = selection(FilterQuery {
            dst: dst.dst.clone(),
            nolabel: dst.nolabel.clone(),
            ..FilterQuery::default()
        });
        total = window.details_selected(&sel, 0, 50).total;
    });
    eprintln!("details under dst= and nolabel= ({total} rows), median of 30: {filtered:.1} ms");
    let dests = median_ms(30, || {
        total = window
            .destinations(None, &all, DestinationSort::Probes, 0, 50)
            .total;
    });
    eprintln!("destinations over the window ({total}), median of 30: {dests:.1} ms");
    let chart = median_ms(30, || {
        let sel = selection(FilterQuery {
            dst: dst.dst.clone(),
            ..FilterQuery::default()
        });
        window.selected(&sel);
    });
    eprintln!("chart and spikes under dst=, median of 30: {chart:.1} ms");
    let (rss, peak) = memory_mib();
    eprintln!("after the views: rss {rss} MiB, peak {peak} MiB");
}
