//! The report's numbers on day files with known answers: distinct counts,
//! destinations over days, spikes, filters, pages, the original format, and
//! bad input skipped with warnings.
#![expect(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::float_cmp,
    reason = "small generated indices used as ports and seconds; medians of whole counts are exact"
)]

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use tsusen::{
    dayfile::{Row, day_from_name},
    report::{
        aggregate::{DayCounts, DetailFilter, ProtoPort, Trends, Window, WindowOptions},
        chart::{self, ChartView},
        load::Loader,
        testdata::write_day,
    },
};

fn day(name: &str) -> u16 {
    day_from_name(name).unwrap()
}

fn row(proto: u8, port: u16, src: &str, dst: &str, ts: i64) -> Row {
    Row {
        proto,
        dst_port: port,
        src_ip: src.parse().unwrap(),
        dst_ip: dst.parse().unwrap(),
        timestamp: ts,
    }
}

fn at(d: u16, secs: i64) -> i64 {
    i64::from(d) * 86_400 + secs
}

/// A fresh directory under the target dir, unique per test.
fn tempdir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("report-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn load(dir: &Path, options: WindowOptions) -> (Loader, Window) {
    let mut loader = Loader::new(dir.to_path_buf(), options);
    loader.refresh().unwrap();
    let window = loader.window();
    (loader, window)
}

fn counts(window: &Window, label: &str) -> Vec<u32> {
    window
        .series
        .iter()
        .find(|s| s.service.to_string() == label)
        .unwrap_or_else(|| panic!("no series {label}"))
        .counts
        .clone()
}

/// `n` distinct sources from 198.18.0.0/15, starting at `from`.
fn sources(from: u32, n: u32) -> impl Iterator<Item = String> {
    (from..from + n).map(|i| std::net::Ipv4Addr::from(0xc612_0000 + i).to_string())
}

#[test]
fn distinct_sources_and_destinations_over_days() {
    let dir = tempdir("distinct");
    let (d1, d2) = (day("2026-03-01"), day("2026-03-02"));
    write_day(
        &dir,
        d1,
        &[
            // One source, two destinations: one distinct source.
            row(6, 23, "198.51.100.1", "192.0.2.1", at(d1, 50)),
            row(6, 23, "198.51.100.1", "192.0.2.2", at(d1, 10)),
            row(6, 23, "198.51.100.2", "192.0.2.1", at(d1, 20)),
            row(17, 53, "198.51.100.1", "192.0.2.1", at(d1, 30)),
            row(1, 0, "2001:db8::1", "192.0.2.1", at(d1, 40)),
        ],
    )
    .unwrap();
    write_day(
        &dir,
        d2,
        &[
            row(6, 23, "198.51.100.1", "192.0.2.2", at(d2, 5)),
            row(6, 23, "198.51.100.1", "192.0.2.3", at(d2, 6)),
            row(6, 23, "198.51.100.3", "192.0.2.3", at(d2, 7)),
            row(6, 23, "198.51.100.4", "192.0.2.3", at(d2, 8)),
            row(6, 8080, "198.51.100.3", "192.0.2.3", at(d2, 9)),
        ],
    )
    .unwrap();
    let options = WindowOptions {
        days: 7,
        ..WindowOptions::default()
    };
    let (_, w) = load(&dir, options);
    assert_eq!((w.first_day, w.last_day), (d2 - 6, d2));
    assert_eq!(w.rows, 10);
    let tcp23 = counts(&w, "TCP 23");
    assert_eq!(&tcp23[5..], &[2, 3]);
    assert!(tcp23[..5].iter().all(|&n| n == 0));
    assert_eq!(&counts(&w, "UDP 53")[5..], &[1, 0]);
    assert_eq!(&counts(&w, "ICMP")[5..], &[1, 0]);
    assert_eq!(&counts(&w, "TCP 8080")[5..], &[0, 1]);

    // Today: the newest day's ports, what is new in the window, busy sources.
    let today = &w.today;
    assert_eq!(today.day, d2);
    let top: Vec<(String, u32)> = today.top.iter().map(|(s, n)| (s.to_string(), *n)).collect();
    assert_eq!(top, [("TCP 23".into(), 3), ("TCP 8080".into(), 1)]);
    let new: Vec<String> = today.new.iter().map(|(s, _)| s.to_string()).collect();
    assert_eq!(new, ["TCP 8080"]);
    // By probes, then ports: .3 probed TCP 23 and 8080 once each, .1 TCP 23 twice.
    let busiest: Vec<(IpAddr, u32, u64)> = today
        .busiest
        .iter()
        .map(|b| (b.src, b.ports, b.probes))
        .collect();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(
        busiest,
        [
            (ip("198.51.100.3"), 2, 2),
            (ip("198.51.100.1"), 1, 2),
            (ip("198.51.100.4"), 1, 1)
        ]
    );

    // Details: 198.51.100.1 on TCP 23 hit .1 and .2, then .2 and .3: three
    // destinations over two days, first seen at its earliest row.
    let filter = DetailFilter::parse(Some("198.51.100.1"), Some("23"), Some("TCP")).unwrap();
    let page = w.details_page(&filter, 0, 10);
    assert_eq!(page.total, 1);
    let d = page.rows[0];
    assert_eq!((d.days, d.destinations, d.last_day), (2, 3, d2));
    assert_eq!(d.first_seen, at(d1, 10));
    assert_eq!(w.detail_count(), 7);
}

/// Day files for `counts.len()` days ending 2026-02-28 where TCP 23 has
/// `counts[i]` distinct sources on day i.
fn series_files(name: &str, counts: &[u32]) -> (PathBuf, u16) {
    let dir = tempdir(name);
    let last = day("2026-02-28");
    let first = last + 1 - counts.len() as u16;
    for (i, &n) in counts.iter().enumerate() {
        let d = first + i as u16;
        let rows: Vec<Row> = sources(0, n)
            .map(|src| row(6, 23, &src, "192.0.2.1", at(d, 60)))
            .collect();
        write_day(&dir, d, &rows).unwrap();
    }
    (dir, last)
}

#[test]
fn a_spike_above_both_bounds_is_flagged() {
    // 28 days around 20 (18..=22), then 60.
    let mut counts: Vec<u32> = (0..28).map(|i| 18 + i % 5).collect();
    counts.push(60);
    let (dir, last) = series_files("spike", &counts);
    let (_, w) = load(&dir, WindowOptions::default());
    assert_eq!(w.spikes.len(), 1, "{:?}", w.spikes);
    let spike = &w.spikes[0];
    assert_eq!((spike.day, spike.count), (last, 60));
    assert_eq!(spike.service.to_string(), "TCP 23");
    assert_eq!(spike.baseline.days, 28);
    assert_eq!(spike.baseline.median, 20.0);
    assert!(spike.threshold < 60.0);
}

#[test]
fn above_mean_plus_2sd_but_not_median_plus_2iqr_is_not_a_spike() {
    // Alternating 10 and 100: mean + 2 SD = 145, median + 2 IQR = 235.
    let mut counts: Vec<u32> = (0..28).map(|i| if i % 2 == 0 { 10 } else { 100 }).collect();
    counts.push(200);
    let (dir, _) = series_files("no-spike-iqr", &counts);
    let (_, w) = load(&dir, WindowOptions::default());
    assert!(w.spikes.is_empty(), "{:?}", w.spikes);

    // The same day at 240 clears both bounds.
    *counts.last_mut().unwrap() = 240;
    let (dir, _) = series_files("spike-iqr", &counts);
    let (_, w) = load(&dir, WindowOptions::default());
    assert_eq!(w.spikes.len(), 1);
}

#[test]
fn spikes_need_the_minimum_count_and_a_baseline() {
    // Flat 2 then 8: above both bounds but under --spike-min 10.
    let mut counts = vec![2; 28];
    counts.push(8);
    let (dir, _) = series_files("spike-min", &counts);
    let (_, w) = load(&dir, WindowOptions::default());
    assert!(w.spikes.is_empty());
    let lower = WindowOptions {
        spike_min: 5,
        ..WindowOptions::default()
    };
    let (_, w) = load(&dir, lower);
    assert_eq!(w.spikes.len(), 1);

    // Five days of history are too few to judge.
    let (dir, _) = series_files("spike-short", &[10, 10, 10, 10, 10, 100]);
    let (_, w) = load(&dir, WindowOptions::default());
    assert!(w.spikes.is_empty());
}

#[test]
fn quiet_series_are_folded_unless_they_burst() {
    let dir = tempdir("fold");
    let last = day("2026-04-10");
    for i in 0..3u16 {
        let d = last - 2 + i;
        let mut rows = Vec::new();
        // TCP 22: 12 sources every day (kept). UDP 161: 3, 3, 60 (burst, kept).
        // TCP 81: 3 every day (folded).
        rows.extend(sources(0, 12).map(|s| row(6, 22, &s, "192.0.2.1", at(d, 1))));
        let burst = if i == 2 { 60 } else { 3 };
        rows.extend(sources(100, burst).map(|s| row(17, 161, &s, "192.0.2.1", at(d, 1))));
        rows.extend(sources(200, 3).map(|s| row(6, 81, &s, "192.0.2.1", at(d, 1))));
        write_day(&dir, d, &rows).unwrap();
    }
    let (_, w) = load(&dir, WindowOptions::default());
    let charted: Vec<String> = w.charted().iter().map(|s| s.service.to_string()).collect();
    assert_eq!(charted, ["UDP 161", "TCP 22"], "ordered by the newest day");
    assert_eq!(w.folded_count(), 1);
}

fn filter_fixture() -> Window {
    let dir = tempdir("filters");
    let d = day("2026-05-01");
    let mut rows = Vec::new();
    for (i, src) in sources(0, 30).enumerate() {
        let port = [22, 23, 80][i % 3];
        rows.push(row(6, port, &src, "192.0.2.1", at(d, i as i64)));
    }
    rows.push(row(17, 53, "198.51.100.7", "192.0.2.1", at(d, 1)));
    rows.push(row(6, 23, "2001:db8::7", "2001:db8:7::1", at(d, 1)));
    write_day(&dir, d, &rows).unwrap();
    load(&dir, WindowOptions::default()).1
}

fn sources_of(w: &Window, filter: &DetailFilter) -> Vec<String> {
    let page = w.details_page(filter, 0, 1000);
    assert_eq!(page.total, page.rows.len());
    page.rows
        .iter()
        .map(|d| w.source_of(d).to_string())
        .collect()
}

#[test]
fn details_filter_by_ip_cidr_port_and_protocol() {
    let w = fixture_checked();
    let f = |ip: Option<&str>, port: Option<&str>, proto: Option<&str>| {
        DetailFilter::parse(ip, port, proto).unwrap()
    };
    assert_eq!(w.details_page(&f(None, None, None), 0, 1000).total, 32);
    assert_eq!(
        sources_of(&w, &f(Some("198.18.0.5"), None, None)),
        ["198.18.0.5"]
    );
    // 198.18.0.0/28: sources 0..16.
    assert_eq!(
        sources_of(&w, &f(Some("198.18.0.0/28"), None, None)).len(),
        16
    );
    // Host bits in a CIDR are ignored, as `ip route` does.
    assert_eq!(
        sources_of(&w, &f(Some("198.18.0.9/28"), None, None)).len(),
        16
    );
    assert_eq!(
        sources_of(&w, &f(Some("2001:db8::/32"), None, None)),
        ["2001:db8::7"]
    );
    assert_eq!(sources_of(&w, &f(None, Some("23"), None)).len(), 11);
    assert_eq!(
        sources_of(&w, &f(None, None, Some("udp"))),
        ["198.51.100.7"]
    );
    assert_eq!(sources_of(&w, &f(None, Some("53"), Some("TCP"))).len(), 0);
    assert_eq!(
        sources_of(&w, &f(Some("198.18.0.0/28"), Some("23"), Some("6"))).len(),
        5,
        "sources 1, 4, 7, 10, 13"
    );
    for (ip, port, proto) in [
        (Some("198.18.0.0/33"), None, None),
        (Some("not-an-ip"), None, None),
        (None, Some("65536"), None),
        (None, None, Some("NOPE")),
    ] {
        let err = DetailFilter::parse(ip, port, proto)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bad "), "{err}");
    }
}

fn fixture_checked() -> Window {
    let w = filter_fixture();
    assert_eq!(w.rows, 32);
    w
}

#[test]
fn details_pages_cover_every_row_once() {
    let w = fixture_checked();
    let all = DetailFilter::default();
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let page = w.details_page(&all, offset, 7);
        assert_eq!((page.total, page.offset, page.limit), (32, offset, 7));
        if page.rows.is_empty() {
            break;
        }
        assert!(page.rows.len() <= 7);
        seen.extend(page.rows.iter().map(|d| (d.service, w.source_of(d))));
        offset += page.rows.len();
    }
    assert_eq!(seen.len(), 32);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 32);
    assert_eq!(w.details_page(&all, 1000, 7).rows.len(), 0);
}

#[test]
fn reads_the_original_seven_column_format() {
    let dir = tempdir("original");
    let d = day("2015-10-28");
    std::fs::write(
        dir.join("2015-10-28.csv"),
        format!(
            "proto dst_port dst_ip src_ip first_seen last_seen count\n\
             TCP 23 192.0.2.46 198.51.100.40 {t} {t2} 3\n\
             TCP 23 192.0.2.47 198.51.100.40 {t} {t2} 1\n\
             TCP 23 192.0.2.46 198.51.100.41 {t} {t2} 1\n\
             UDP 53 192.0.2.46 198.51.100.42 {t} {t2} 1\n\
             ICMP 0 192.0.2.46 198.51.100.43 {t} {t2} 9\n",
            t = at(d, 100),
            t2 = at(d, 200)
        ),
    )
    .unwrap();
    // Without a header: detected by its 7 columns, with a warning.
    std::fs::write(
        dir.join("2015-10-27.csv"),
        format!(
            "TCP 22 192.0.2.46 198.51.100.50 {t} {t} 1\n",
            t = at(d - 1, 5)
        ),
    )
    .unwrap();
    let (loader, w) = load(&dir, WindowOptions::default());
    assert_eq!(&counts(&w, "TCP 23")[29..], &[2]);
    assert_eq!(&counts(&w, "UDP 53")[29..], &[1]);
    assert_eq!(&counts(&w, "ICMP")[29..], &[1]);
    assert_eq!(&counts(&w, "TCP 22")[28..], &[1, 0]);
    // dst before src in this format: the source is 198.51.100.40, with 2 destinations.
    let filter = DetailFilter::parse(Some("198.51.100.40"), None, None).unwrap();
    let page = w.details_page(&filter, 0, 10);
    assert_eq!(page.total, 1);
    assert_eq!(page.rows[0].destinations, 2);
    assert_eq!(page.rows[0].first_seen, at(d, 100));
    let warnings = loader.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("2015-10-27.csv: no header line") && w.contains("7 columns")),
        "{warnings:?}"
    );
}

#[test]
fn reads_the_original_first_format_whose_header_ends_in_sec() {
    let dir = tempdir("original-first");
    let d = day("2015-10-28");
    // The original's first hours (October 2015): our columns, the last one
    // named `sec` in the header.
    std::fs::write(
        dir.join("2015-10-28.csv"),
        format!(
            "proto dst_port src_ip dst_ip sec\n\
             TCP 80 198.51.100.5 192.0.2.63 {t}\n\
             TCP 80 198.51.100.6 192.0.2.63 {t}\n\
             ICMP - 198.51.100.5 192.0.2.63 {t}\n",
            t = at(d, 100)
        ),
    )
    .unwrap();
    let (loader, w) = load(&dir, WindowOptions::default());
    assert_eq!(&counts(&w, "TCP 80")[29..], &[2]);
    assert_eq!(&counts(&w, "ICMP")[29..], &[1]);
    let warnings = loader.warnings();
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn malformed_and_foreign_files_are_skipped_with_warnings() {
    let dir = tempdir("malformed");
    let (d1, d2) = (day("2026-06-01"), day("2026-06-02"));
    std::fs::write(dir.join("notes.txt"), "remember the milk\n").unwrap();
    std::fs::write(dir.join("2026-06-03.csv.bak"), "x").unwrap();
    std::fs::create_dir(dir.join("2026-05-01.csv")).unwrap();
    // A file named like a day file that is not one.
    std::fs::write(
        dir.join("2026-05-02.csv"),
        "hello world, this is prose\nmore\n",
    )
    .unwrap();
    std::fs::write(dir.join("2026-05-03.csv"), [0xff, 0xfe, 0x00, 0x41, b'\n']).unwrap();
    // Bad lines among good ones, and a truncated last line.
    std::fs::write(
        dir.join("2026-06-01.csv"),
        format!(
            "proto dst_port src_ip dst_ip timestamp\n\
             TCP 23 198.51.100.1 192.0.2.1 {t}\n\
             TCP 23 198.51.100.999 192.0.2.1 {t}\n\
             TCP 23 198.51.100.2 192.0.2.1\n\
             TCP 23 198.51.100.3 192.0.2.1 {t}\n\
             TCP 23 198.51.100.4 192.0.2.1 {t} extra\n\
             TCP 23 198.51.100.5 192.0",
            t = at(d1, 7)
        ),
    )
    .unwrap();
    write_day(
        &dir,
        d2,
        &[row(6, 23, "198.51.100.9", "192.0.2.1", at(d2, 1))],
    )
    .unwrap();

    let (loader, w) = load(&dir, WindowOptions::default());
    assert_eq!(&counts(&w, "TCP 23")[28..], &[2, 1]);
    let warnings = loader.warnings().join("\n");
    let has = |needle: &str| assert!(warnings.contains(needle), "no {needle:?} in:\n{warnings}");
    has("notes.txt: skipped: not a day file");
    has("2026-06-03.csv.bak: skipped: not a day file");
    has("2026-05-01.csv: skipped: not a day file");
    has("2026-05-02.csv: skipped: not a day file (first line");
    has("2026-05-03.csv: skipped: not a text file");
    has("2026-06-01.csv:3: skipped line: bad source address");
    has("2026-06-01.csv:4: skipped line: expected 5 columns, found 4");
    has("2026-06-01.csv:6: skipped line: expected 5 columns, found 6");
    has("2026-06-01.csv:7: skipped line: incomplete last line");
    // Only files named like day files were opened, and each problem is one line.
    assert_eq!(loader.files(), 4, "2026-05-02, 05-03, 06-01, 06-02");
}

#[test]
fn the_newest_file_growing_is_read_again() {
    let dir = tempdir("grow");
    let d = day("2026-07-01");
    let path = write_day(
        &dir,
        d,
        &[row(6, 23, "198.51.100.1", "192.0.2.1", at(d, 1))],
    )
    .unwrap();
    let mut loader = Loader::new(dir.clone(), WindowOptions::default());
    loader.refresh().unwrap();
    assert_eq!(counts(&loader.window(), "TCP 23")[29], 1);
    let unchanged = loader.refresh().unwrap();
    assert!(!unchanged.changed);
    assert_eq!(unchanged.read, 0);

    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    // A half-written line on the newest day is not a warning: the sensor is writing.
    write!(
        f,
        "TCP 23 198.51.100.2 192.0.2.1 {}\nTCP 23 198.51",
        at(d, 2)
    )
    .unwrap();
    drop(f);
    let grown = loader.refresh().unwrap();
    assert!(grown.changed);
    assert_eq!(grown.read, 1);
    assert!(
        grown.new_warnings.lines.is_empty(),
        "{:?}",
        grown.new_warnings
    );
    assert_eq!(counts(&loader.window(), "TCP 23")[29], 2);
}

/// A stray file dated in the future (2149-06-06, the last day a day file can
/// name) does not become the newest day: the window ends with the newest day
/// file up to today (UTC), and the stray file is named in a warning.
#[test]
fn a_day_file_dated_in_the_future_is_skipped_with_a_warning() {
    let dir = tempdir("future");
    let today = u16::try_from(chrono::Utc::now().timestamp() / 86_400).unwrap();
    let yesterday = today - 1;
    write_day(
        &dir,
        yesterday,
        &[row(6, 22, "198.51.100.1", "192.0.2.1", at(yesterday, 5))],
    )
    .unwrap();
    write_day(
        &dir,
        today,
        &[row(6, 23, "198.51.100.2", "192.0.2.1", at(today, 5))],
    )
    .unwrap();
    let stray = day("2149-06-06");
    write_day(
        &dir,
        stray,
        &[row(6, 80, "198.51.100.3", "192.0.2.1", at(stray, 5))],
    )
    .unwrap();
    let (loader, w) = load(&dir, WindowOptions::default());
    assert_eq!(w.last_day, today, "the newest real day ends the window");
    assert_eq!(w.rows, 2, "the real days' rows, not the stray file's");
    assert_eq!(loader.files(), 2);
    let warnings = loader.warnings().join("\n");
    assert!(
        warnings.contains("2149-06-06.csv: skipped: dated after today"),
        "{warnings}"
    );
}

/// Day files for `days` days ending 2026-02-28 where, on day `i` (0 = the
/// first), TCP `port` has `count(i, port)` distinct sources for each port of
/// `ports`; a day for which `skip(i)` holds has no file.
fn ports_files(
    name: &str,
    days: u16,
    ports: &[u16],
    count: impl Fn(u16, u16) -> u32,
    skip: impl Fn(u16) -> bool,
) -> (PathBuf, u16) {
    let dir = tempdir(name);
    let last = day("2026-02-28");
    for i in (0..days).filter(|&i| !skip(i)) {
        let d = last + 1 - days + i;
        let rows: Vec<Row> = ports
            .iter()
            .flat_map(|&port| {
                sources(u32::from(port) * 1000, count(i, port))
                    .map(move |src| row(6, port, &src, "192.0.2.1", at(d, 60)))
            })
            .collect();
        write_day(&dir, d, &rows).unwrap();
    }
    (dir, last)
}

#[test]
fn spikes_are_ranked_by_ratio_and_new_ports_are_marked() {
    // TCP 23 around 20 then 60 on the last day (threshold 24, ratio 2.5);
    // TCP 22 flat 12 then 150 five days before (threshold 12, ratio 12.5);
    // TCP 8443 never seen, then 30 two days before (threshold 0, ratio 30).
    let (dir, last) = ports_files(
        "spike-rank",
        36,
        &[22, 23, 8443],
        |i, port| match (port, i) {
            (23, 35) => 60,
            (23, _) => 18 + u32::from(i) % 5,
            (22, 30) => 150,
            (22, _) => 12,
            (_, 33) => 30,
            _ => 0,
        },
        |_| false,
    );
    let (_, w) = load(&dir, WindowOptions::default());
    let ranked: Vec<(String, u16, u32, bool)> = w
        .spikes
        .iter()
        .map(|s| (s.service.to_string(), last - s.day, s.count, s.new))
        .collect();
    // Newest first would have been TCP 23, TCP 8443, TCP 22.
    assert_eq!(
        ranked,
        [
            ("TCP 8443".to_owned(), 2, 30, true),
            ("TCP 22".to_owned(), 5, 150, false),
            ("TCP 23".to_owned(), 0, 60, false),
        ]
    );
    let ratios: Vec<f64> = w.spikes.iter().map(|s| s.ratio).collect();
    assert_eq!(ratios, [30.0, 12.5, 2.5]);
    let thresholds: Vec<f64> = w.spikes.iter().map(|s| s.threshold).collect();
    assert_eq!(thresholds, [0.0, 12.0, 24.0]);
}

#[test]
fn spike_k_sets_the_sensitivity() {
    // 18..=22 around 20 (median 20, IQR 2, mean 20, SD about 1.41), then 23.
    let (dir, last) = ports_files(
        "spike-k",
        29,
        &[23],
        |i, _| if i == 28 { 23 } else { 18 + u32::from(i) % 5 },
        |_| false,
    );
    let (_, w) = load(&dir, WindowOptions::default());
    assert!(w.spikes.is_empty(), "k = 2: threshold 24");
    let k1 = WindowOptions {
        spike_k: 1.0,
        ..WindowOptions::default()
    };
    let (_, w) = load(&dir, k1);
    assert_eq!(w.spikes.len(), 1, "k = 1: threshold 22");
    let s = &w.spikes[0];
    assert_eq!((s.day, s.count, s.threshold), (last, 23, 22.0));
    assert_eq!(s.ratio, 23.0 / 22.0);
    assert_eq!(w.options.spike_k, 1.0);
}

#[test]
fn series_change_against_yesterday_and_last_week_and_their_trend() {
    // TCP 23 grows by 2 a day: 10, 12, ... 80 over 36 days.
    let grow = |i: u16, _| 10 + 2 * u32::from(i);
    let (dir, _) = ports_files("change", 36, &[23], grow, |_| false);
    // Seven shown days: last week's day lies before them and still counts.
    let week = WindowOptions {
        days: 7,
        ..WindowOptions::default()
    };
    let (_, w) = load(&dir, week);
    let s = &w.series[0];
    assert_eq!(s.newest(), 80);
    let yesterday = s.vs_yesterday.unwrap();
    assert_eq!(
        (yesterday.before, yesterday.now, yesterday.delta()),
        (78, 80, 2)
    );
    let last_week = s.vs_last_week.unwrap();
    assert_eq!((last_week.before, last_week.delta()), (66, 14));
    assert!((last_week.percent().unwrap() - 14.0 * 100.0 / 66.0).abs() < 1e-9);
    let trend = s.trend.unwrap();
    assert!((trend.slope - 2.0).abs() < 1e-9, "{trend:?}");
    assert!((trend.at(6) - 80.0).abs() < 1e-9, "{trend:?}");

    // Without the day before's file there is nothing to compare with; the
    // trend fits the days that have one.
    let (dir, _) = ports_files("change-gap", 36, &[23], grow, |i| i == 34);
    let (_, w) = load(&dir, week);
    let s = &w.series[0];
    assert_eq!(s.vs_yesterday, None);
    assert_eq!(s.vs_last_week.unwrap().before, 66);
    assert!((s.trend.unwrap().slope - 2.0).abs() < 1e-9);

    // A port new today: +N against 0, no percentage.
    let (dir, _) = ports_files(
        "change-new",
        9,
        &[23],
        |i, _| if i == 8 { 5 } else { 0 },
        |_| false,
    );
    let (_, w) = load(&dir, WindowOptions::default());
    let c = w.series[0].vs_yesterday.unwrap();
    assert_eq!((c.delta(), c.percent()), (5, None));
}

#[test]
fn hours_count_each_source_once_at_its_first_probe() {
    let dir = tempdir("hours");
    let d = day("2026-08-10");
    let h = |hour: i64, secs: i64| at(d, hour * 3600 + secs);
    write_day(
        &dir,
        d,
        &[
            // .1 at 03:10 and 05:00: first seen in hour 3.
            row(6, 22, "198.51.100.1", "192.0.2.1", h(5, 0)),
            row(6, 22, "198.51.100.1", "192.0.2.2", h(3, 600)),
            row(6, 22, "198.51.100.2", "192.0.2.1", h(0, 0)),
            row(6, 22, "198.51.100.3", "192.0.2.1", h(23, 3599)),
            // .4: hour 5 on port 22, hour 1 on port 23.
            row(6, 22, "198.51.100.4", "192.0.2.1", h(5, 1800)),
            row(6, 23, "198.51.100.4", "192.0.2.1", h(1, 0)),
            row(1, 0, "198.51.100.5", "192.0.2.1", h(12, 0)),
        ],
    )
    .unwrap();
    let (_, w) = load(&dir, WindowOptions::default());
    let tcp = |port| ProtoPort { proto: 6, port };
    let hours = w.hours(d, tcp(22)).unwrap();
    let mut want = [0; 24];
    for hour in [0, 3, 5, 23] {
        want[hour] = 1;
    }
    assert_eq!(hours.counts, want);
    assert_eq!(hours.total(), counts(&w, "TCP 22")[29]);
    let mut want = [0; 24];
    want[1] = 1;
    assert_eq!(w.hours(d, tcp(23)).unwrap().counts, want);
    let mut want = [0; 24];
    want[12] = 1;
    assert_eq!(
        w.hours(d, ProtoPort { proto: 1, port: 0 }).unwrap().counts,
        want
    );
    // A shown day without a file, a port without sources: zeros; outside: none.
    assert_eq!(w.hours(d - 1, tcp(22)).unwrap().total(), 0);
    assert_eq!(w.hours(d, tcp(80)).unwrap().total(), 0);
    assert_eq!(w.hours(d + 1, tcp(22)), None);
    assert_eq!(w.hours(d - 30, tcp(22)), None);
}

/// Series, spikes and the chart come from per-day counts alone
/// ([`Trends`]): the window's own counts give the window's chart, and
/// counts a filter kept give a chart of what it kept.
#[test]
fn trends_from_per_day_counts_draw_the_windows_chart_or_a_filtered_one() {
    let (dir, _) = ports_files(
        "trends-counts",
        20,
        &[22, 23, 80],
        |i, port| match (port, i) {
            (23, 19) => 90,
            _ => 12 + u32::from(port % 7) + u32::from(i % 3),
        },
        |i| i == 4,
    );
    let (_, w) = load(&dir, WindowOptions::default());
    assert_eq!(w.spikes.len(), 1);
    let per_day: Vec<(u16, Vec<(ProtoPort, u32)>)> = w
        .days()
        .zip(&w.covered)
        .enumerate()
        .filter(|(_, (_, covered))| **covered)
        .map(|(i, (day, _))| {
            let services = w
                .series
                .iter()
                .filter(|s| s.counts[i] > 0)
                .map(|s| (s.service, s.counts[i]))
                .collect();
            (day, services)
        })
        .collect();
    let counts = |keep: &dyn Fn(ProtoPort) -> bool| -> Vec<Vec<(ProtoPort, u32)>> {
        per_day
            .iter()
            .map(|(_, services)| services.iter().copied().filter(|(s, _)| keep(*s)).collect())
            .collect()
    };
    let build = |kept: &[Vec<(ProtoPort, u32)>]| {
        let days: Vec<DayCounts<'_>> = per_day
            .iter()
            .zip(kept)
            .map(|((day, _), services)| DayCounts {
                day: *day,
                services,
            })
            .collect();
        Trends::build(&days, &w.options)
    };

    let all = counts(&|_| true);
    let trends = build(&all);
    assert_eq!(trends.spikes.len(), 1);
    assert_eq!(trends.spikes[0].ratio, w.spikes[0].ratio);
    assert_eq!(
        chart::view_svg(&ChartView::of_trends(&trends, w.options.top)).unwrap(),
        chart::trends_svg(&w).unwrap(),
        "the same chart"
    );

    // A filter that drops TCP 23: its line, spike and legend are gone.
    let without = counts(&|s| s.port != 23);
    let filtered = build(&without);
    assert!(filtered.spikes.is_empty());
    let svg = chart::view_svg(&ChartView::of_trends(&filtered, w.options.top)).unwrap();
    assert!(!svg.contains("TCP 23 ("), "no TCP 23 in the legend");
    assert!(svg.contains("TCP 22 ("));
    assert!(svg.contains(">\nspike (0)\n</text>"));
}
