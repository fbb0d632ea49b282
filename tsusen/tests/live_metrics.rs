//! The metrics an operator alerts on, against the live sensor (`tsusen run`
//! in a test namespace, scraped over HTTP from inside it): the kernel's
//! counters move between flushes, and a flush that cannot write does not
//! pass for a successful one.
#![expect(
    clippy::float_cmp,
    reason = "Prometheus carries the counters as f64; they are whole numbers, compared exactly"
)]

use std::{
    fs,
    io::Write as _,
    thread,
    time::{Duration, Instant},
};

use tsusen::{
    live_test,
    testing::{
        TestNet,
        live::{self, Live},
    },
};

/// Inside the sensor namespace, so every test can use the same port.
const METRICS: &str = "127.0.0.1:9477";

fn scrape(live: &Live) -> String {
    live::fetch_metrics(&live.net.sensor, METRICS).expect("metrics")
}

fn value(text: &str, name: &str) -> f64 {
    live::metric(text, name).unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// Scrape until `name` reaches `at_least` or `timeout` passes; the last text.
fn scrape_until(live: &Live, name: &str, at_least: f64, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = scrape(live);
        if live::metric(&text, name).is_some_and(|v| v >= at_least) || Instant::now() >= deadline {
            return text;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// With an hour between flushes, a scrape still shows the SYNs just sent:
/// the kernel's counters are read when `/metrics` is scraped (before, they
/// moved only at a flush, which made `rate()` useless at the default 15 m).
#[test]
fn kernel_counters_move_at_scrape_time_between_flushes() {
    let live = live_test!(&[]);
    let mut daemon = live.start(
        "sensor",
        &[
            "--flush-interval",
            "1h",
            "--map-size",
            "4096",
            "--metrics",
            METRICS,
        ],
    );
    // The flush at start; the next is an hour away.
    daemon.wait_flush_after(0, Duration::from_secs(10));
    let flushes = daemon.flushes().len();
    let iface = format!(
        "tsusen_interface_receive_packets_total{{iface=\"{}\"}}",
        live.net.sensor_if
    );
    let before = scrape(&live);
    let received_before = value(&before, &iface);

    let ports = [22, 80, 443, 3389];
    live::syns_from(&live.net.peer, TestNet::SENSOR_IP, &ports);
    let text = scrape_until(
        &live,
        "tsusen_candidates_total{proto=\"tcp\"}",
        ports.len() as f64,
        Duration::from_secs(10),
    );
    assert_eq!(daemon.flushes().len(), flushes, "no flush in between");
    for name in [
        "tsusen_candidates_total{proto=\"tcp\"}",
        "tsusen_new_tuples_total",
    ] {
        assert_eq!(value(&text, name), ports.len() as f64, "{name}:\n{text}");
    }
    assert!(value(&text, "tsusen_packets_total") >= ports.len() as f64);
    assert!(value(&text, &iface) >= received_before + ports.len() as f64);
    // Only a flush writes rows, and none ran.
    assert_eq!(value(&text, "tsusen_rows_written_total"), 0.0);
    // What the daemon was started with.
    assert_eq!(value(&text, "tsusen_flush_interval_seconds"), 3600.0);
    assert_eq!(value(&text, "tsusen_map_entries_limit"), 4096.0);
    let version = format!(
        "tsusen_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(value(&text, &version), 1.0);
    // Every metric the shipped alert rules name is served.
    let rules = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/tsusen-alerts.yml"
    ))
    .unwrap();
    let served = |name: &str| {
        text.lines().any(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
    };
    for name in rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("tsusen_"))
    {
        assert!(
            served(name),
            "the alert rules use {name}, not served:\n{text}"
        );
    }
    // Counters carry `_total`, and the old names are gone.
    for old in [
        "tsusen_evicted_total",
        "tsusen_insert_failed_total",
        "tsusen_pending_dropped_total",
    ] {
        assert!(!text.contains(old), "{old} still served:\n{text}");
    }

    // The drain at SIGTERM writes them.
    daemon.terminate_cleanly();
    assert_eq!(live::count_rows(&live.out_dir()), ports.len());
}

/// A full out-dir: flushes go on (`last_flush` advances) but the last
/// successful write stays where it was until the rows are on disk.
#[test]
fn the_last_successful_write_stands_still_while_the_disk_is_full() {
    let mut live = live_test!(&[]);
    let out = live.scratch.mount_tmpfs("small", "64k");
    let out_arg = out.display().to_string();
    let mut daemon = live.start("sensor", &["--out-dir", &out_arg, "--metrics", METRICS]);
    daemon.wait_two_flushes(Duration::from_secs(10));
    let healthy = scrape(&live);
    let written = value(&healthy, "tsusen_last_successful_write_timestamp_seconds");
    assert!(written > 0.0, "a flush with nothing to write succeeded");
    assert!(value(&healthy, "tsusen_flush_duration_seconds_count") >= 2.0);

    // Fill the filesystem to the last byte.
    let filler = out.join("filler");
    {
        let mut file = fs::File::create(&filler).unwrap();
        let chunk = [0u8; 4096];
        let mut small = false;
        loop {
            let result = if small {
                file.write_all(&[0u8])
            } else {
                file.write_all(&chunk)
            };
            match result {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && !small => small = true,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filler: {e}"),
            }
        }
    }
    let ports = [22, 80, 443, 3389];
    live::syns_from(&live.net.peer, TestNet::SENSOR_IP, &ports);
    let failed = daemon.wait_line_from(0, Duration::from_secs(10), |l| {
        live::Flush::parse(l).is_some_and(|f| f.get("pending") > 0)
    });
    assert!(
        failed.is_some(),
        "no flush kept rows pending:\n{}",
        daemon.tail()
    );
    daemon.wait_two_flushes(Duration::from_secs(10));
    let full = scrape(&live);
    assert!(value(&full, "tsusen_pending_rows") > 0.0, "{full}");
    assert!(value(&full, "tsusen_write_errors_total") > 0.0, "{full}");
    let stuck = value(&full, "tsusen_last_successful_write_timestamp_seconds");
    let flushed = value(&full, "tsusen_last_flush_timestamp_seconds");
    assert!(
        flushed > stuck,
        "last flush {flushed} must pass the last successful write {stuck} while the disk is full"
    );
    daemon.wait_two_flushes(Duration::from_secs(10));
    let later = scrape(&live);
    assert_eq!(
        value(&later, "tsusen_last_successful_write_timestamp_seconds"),
        stuck,
        "the last successful write moved while the disk was full"
    );

    // Room again: the rows go out and the timestamp moves on.
    fs::remove_file(&filler).unwrap();
    assert_eq!(
        live::wait_rows(&out, ports.len(), Duration::from_secs(15)),
        ports.len()
    );
    daemon.wait_two_flushes(Duration::from_secs(10));
    let recovered = scrape(&live);
    assert_eq!(value(&recovered, "tsusen_pending_rows"), 0.0);
    assert!(value(&recovered, "tsusen_last_successful_write_timestamp_seconds") > stuck);
    daemon.terminate_cleanly();
}
