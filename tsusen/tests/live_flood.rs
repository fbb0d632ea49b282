//! A spoofed SYN flood against the live sensor: every packet a new tuple
//! (random sources in 198.18.0.0/15, random ports), sent by `tcpreplay
//! --topspeed` over the veth, with `--flush-interval 1s` and the default map.
//!
//! What the flood bound promises (README, Performance): no drain writes more
//! than its row budget; what it costs is counted (`deferred` entries waiting
//! in the map, `evicted` tuples lost) in the flush line and the metrics, and
//! every new tuple is either a row or counted as evicted; `/metrics` answers
//! during the flood; SIGTERM drains and exits; and a scan after the flood is
//! recorded in full.
#![expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "Prometheus carries whole, non-negative counters as f64"
)]

use std::{
    thread,
    time::{Duration, Instant},
};

use tsusen::{
    live_test,
    testing::{
        TestNet,
        live::{self},
        pcapgen,
    },
};

const METRICS: &str = "127.0.0.1:9478";
/// Packets in the flood: more than the map holds.
const FLOOD: u32 = 1_500_000;
/// Each drain's row budget, set through the test-only variable: the real
/// one (`drain::ROWS_PER_SECOND` at 1 s) is more than a busy machine's veth
/// delivers, and this test is about what happens beyond it.
const BUDGET: u64 = 10_000;

#[test]
fn a_spoofed_flood_is_bounded_counted_and_recording_resumes() {
    let live = live_test!(&["tcpreplay"]);
    let pcap = live.scratch.path("flood.pcap");
    let mac = pcapgen::parse_mac(&live.net.sensor_mac());
    pcapgen::write_flood_pcap(&pcap, FLOOD, TestNet::SENSOR_IP, mac).unwrap();
    let mut daemon = live::Daemon::spawn_with_env(
        "sensor",
        &live.bin,
        &live.net.sensor,
        &live.args(&["--metrics", METRICS]),
        &[(tsusen::drain::ROW_BUDGET_ENV, &BUDGET.to_string())],
    );
    daemon.wait_ready();
    daemon.wait_flush_after(0, Duration::from_secs(30));

    // The flood, bounded in count (the file) and time (timeout).
    let sender = {
        let mut command = live.net.peer.command("timeout");
        command
            .args([
                "120",
                "tcpreplay",
                "--topspeed",
                "--preload-pcap",
                "-q",
                "-i",
            ])
            .arg(&live.net.peer_if)
            .arg(&pcap);
        thread::spawn(move || command.output().unwrap())
    };
    // The sensor answers while it lasts.
    let mut scrapes = 0;
    while !sender.is_finished() {
        let text = live::fetch_metrics(&live.net.sensor, METRICS)
            .unwrap_or_else(|e| panic!("/metrics during the flood: {e}\n{}", daemon.tail()));
        assert!(
            live::metric(&text, "tsusen_deferred_entries").is_some(),
            "{text}"
        );
        scrapes += 1;
        thread::sleep(Duration::from_millis(300));
    }
    let sent = sender.join().unwrap();
    assert!(
        sent.status.success(),
        "tcpreplay: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    eprintln!(
        "flood sent: {}; {scrapes} scrapes answered during it",
        String::from_utf8_lossy(&sent.stdout).trim()
    );

    // More new tuples than one drain may write reached the map, so some
    // drain deferred entries, and none wrote more than its budget.
    let after_flood = daemon.wait_two_flushes(Duration::from_secs(60));
    let deferring: Vec<_> = daemon
        .flushes()
        .into_iter()
        .filter(|f| f.get("deferred") > 0)
        .collect();
    assert!(
        !deferring.is_empty(),
        "no drain deferred entries (new_tuples={}); log:\n{}",
        after_flood.get("new_tuples"),
        daemon.tail()
    );
    for flush in daemon.flushes() {
        assert!(flush.get("rows") <= BUDGET, "{}", flush.line);
    }
    // Each drain over budget warns once, with the count its flush line
    // calls deferred (not every entry it read: a looping flood brings back
    // tuples whose rows are on disk, and those are not over the budget).
    let mut warned: Vec<u64> = daemon
        .lines()
        .iter()
        .filter(|line| line.contains("beyond this flush's row budget"))
        .map(|line| {
            let count = live::message(line).split(' ').next().unwrap_or_default();
            count
                .parse()
                .unwrap_or_else(|_| panic!("a count first: {line}"))
        })
        .collect();
    let mut deferred: Vec<u64> = deferring.iter().map(|f| f.get("deferred")).collect();
    warned.sort_unstable();
    deferred.sort_unstable();
    assert_eq!(warned, deferred, "the warnings and the flush lines agree");
    let text = live::fetch_metrics(&live.net.sensor, METRICS).unwrap();
    let evicted_metric = live::metric(&text, "tsusen_evicted_tuples_total").unwrap();
    assert_eq!(
        evicted_metric as u64,
        daemon.flushes().last().unwrap().get("evicted"),
        "the metric and the flush line agree"
    );

    // A real scan once the flood stops: every probe is a row, even while
    // the map still holds the flood's backlog.
    let ports: Vec<u16> = (1..=300).collect();
    live::syns_from(&live.net.peer, TestNet::SENSOR_IP, &ports);
    let want: Vec<_> = ports
        .iter()
        .map(|&p| live::tuple("TCP", Some(p), TestNet::PEER_IP, TestNet::SENSOR_IP))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let missing = loop {
        let rows: std::collections::HashSet<_> = live::all_rows(&live.out_dir())
            .iter()
            .map(live::DayRow::tuple)
            .collect();
        let missing: Vec<_> = want.iter().filter(|t| !rows.contains(t)).collect();
        if missing.is_empty() || Instant::now() >= deadline {
            break missing.len();
        }
        thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(missing, 0, "scan rows missing; log:\n{}", daemon.tail());
    // Written ahead of the flood's backlog: the scanner's rows go first.
    let backlog = daemon.flushes().last().unwrap().get("deferred");
    assert!(
        backlog > 0,
        "the flood's backlog was gone before the scan was written"
    );

    // SIGTERM drains what is left (the whole map, no budget) and exits.
    let stop = Instant::now();
    daemon.signal(libc::SIGTERM);
    let status = daemon
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no exit after SIGTERM; log:\n{}", daemon.tail()));
    assert!(status.success(), "{status}; log:\n{}", daemon.tail());
    eprintln!("SIGTERM to exit: {:.2} s", stop.elapsed().as_secs_f64());

    // Every new tuple is a row or counted as evicted; no row twice.
    let last = daemon.flushes().last().unwrap().clone();
    assert_eq!(last.get("deferred"), 0, "{}", last.line);
    let rows: u64 = daemon.flushes().iter().map(|f| f.get("rows")).sum();
    let in_files = live::all_rows(&live.out_dir());
    assert_eq!(in_files.len() as u64, rows, "rows in the files");
    let distinct: std::collections::HashSet<_> = in_files.iter().map(live::DayRow::tuple).collect();
    assert_eq!(distinct.len(), in_files.len(), "no tuple twice");
    assert_eq!(
        last.get("new_tuples"),
        rows + last.get("evicted"),
        "every new tuple is a row or evicted: {}",
        last.line
    );
}
