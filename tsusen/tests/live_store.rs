//! The live sensor and its day files on a shared, imperfect out-dir: today's
//! file unusable, full of garbage, written by a replay at the same time, and
//! a `--max-pending` far below one drain. Whatever happens, no row recorded
//! in the kernel is lost and none is written twice.

use std::{collections::HashSet, fs, process::Command, time::Duration};

use tsusen::{
    live_test,
    testing::{TestNet, live, one_error_line, pcapgen},
};

const TSUSEN: &str = env!("CARGO_BIN_EXE_tsusen");

/// The sensor's clock starts here, so today's file is `2026-11-24.csv`.
const CLOCK_START: &str = "2026-11-24T12:00:00Z";
const TODAY: &str = "2026-11-24";

fn tcp_tuples(ports: impl IntoIterator<Item = u16>) -> HashSet<live::Tuple> {
    ports
        .into_iter()
        .map(|port| live::tuple("TCP", Some(port), TestNet::PEER_IP, TestNet::SENSOR_IP))
        .collect()
}

#[test]
fn an_unusable_day_file_keeps_the_map_pinned_until_a_start_can_write_it() {
    let live = live_test!(&[]);
    let day_file = live.out_dir().join(format!("{TODAY}.csv"));
    // A directory where today's file belongs: it can be neither read nor
    // written.
    fs::create_dir(&day_file).unwrap();
    let args = ["--clock-start", CLOCK_START];
    let mut first = live.start("first", &args);
    live::syns_from(
        &live.net.peer,
        TestNet::SENSOR_IP,
        &(2001..=2020).collect::<Vec<_>>(),
    );
    first.wait_two_flushes(Duration::from_secs(10));

    let status = first.terminate();
    assert!(
        !status.success(),
        "SIGTERM with 20 rows not on disk must not exit 0; log:\n{}",
        first.tail()
    );
    let errors = first.error_lines();
    assert!(
        errors.len() == 1 && errors[0].contains("could not write 20 rows"),
        "one error line naming the rows: {errors:?}"
    );
    assert!(live.xdp_attached(), "the sensor stays attached");
    assert!(
        fs::read_dir(live.pin_dir()).unwrap().next().is_some(),
        "the pins (and the map with the rows) stay"
    );
    let last = first.flushes().pop().expect("a flush line");
    assert_eq!(
        (last.get("kept"), last.get("blocked_days")),
        (20, 1),
        "{}",
        last.line
    );

    // Fixed: the next start adopts the map and writes every row.
    fs::remove_dir(&day_file).unwrap();
    let mut second = live.start("second", &args);
    assert_eq!(
        live::wait_rows(&live.out_dir(), 20, Duration::from_secs(10)),
        20
    );
    second.terminate_cleanly();
    let rows = live::read_day_file(&day_file);
    live::assert_tuples(&rows, &tcp_tuples(2001..=2020), "rows after the fix");
    assert!(!live.xdp_attached(), "XDP left attached after SIGTERM");
}

#[test]
fn bad_lines_in_todays_file_are_skipped_counted_and_named_a_few_times() {
    let live = live_test!(&[]);
    let day_file = live.out_dir().join(format!("{TODAY}.csv"));
    let start = live::day_start(TODAY) + 12 * 3600;
    let mut before = format!(
        "{}\nTCP 3001 {} {} {start}\n",
        live::HEADER,
        TestNet::PEER_IP,
        TestNet::SENSOR_IP
    )
    .into_bytes();
    before.extend_from_slice(&b"not a row at all\n".repeat(20_000));
    before.extend_from_slice(b"TCP 3002 \xff\xfe 198.18.0.1 1\n");
    fs::write(&day_file, &before).unwrap();

    let mut daemon = live.start("sensor", &["--clock-start", CLOCK_START]);
    live::syns_from(&live.net.peer, TestNet::SENSOR_IP, &[3001, 3002, 3003]);
    let flush = daemon.wait_two_flushes(Duration::from_secs(10));
    daemon.terminate_cleanly();

    let after = fs::read(&day_file).unwrap();
    assert_eq!(
        after[..before.len()],
        before[..],
        "the file's lines are kept"
    );
    let added = String::from_utf8(after[before.len()..].to_vec()).unwrap();
    let ports: Vec<&str> = added
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(ports, ["3002", "3003"], "rows appended:\n{added}");
    assert_eq!(flush.get("bad_lines"), 20_001, "{}", flush.line);
    let named = daemon
        .lines()
        .iter()
        .filter(|l| l.contains("skipped line"))
        .count();
    assert_eq!(named, 5, "bad lines named one by one");
    assert!(
        daemon
            .lines()
            .iter()
            .any(|l| l.contains("19996 more bad lines skipped")),
        "the rest counted in one line"
    );
}

#[test]
fn max_pending_limits_nothing_while_the_disk_takes_every_row() {
    let live = live_test!(&[]);
    let mut daemon = live.start(
        "sensor",
        &["--max-pending", "100", "--flush-interval", "1h"],
    );
    let ports: Vec<u16> = (4001..=4300).collect();
    live::syns_from(&live.net.peer, TestNet::SENSOR_IP, &ports);
    // One drain, at SIGTERM, reads all 300 entries.
    daemon.terminate_cleanly();
    let rows = live::all_rows(&live.out_dir());
    live::assert_tuples(&rows, &tcp_tuples(ports), "rows after SIGTERM");
}

#[test]
fn a_replay_into_the_live_out_dir_keeps_its_rows() {
    let live = live_test!(&[]);
    let out = live.out_dir();
    let day_file = out.join(format!("{TODAY}.csv"));
    let mut daemon = live.start("sensor", &["--clock-start", CLOCK_START]);
    live::syns_from(&live.net.peer, TestNet::SENSOR_IP, &[5001, 5002]);
    assert_eq!(live::wait_rows(&out, 2, Duration::from_secs(10)), 2);

    // 500 packets of a scan an hour into the day, replayed into the same
    // out-dir while the sensor writes there.
    let pcap = live.scratch.path("scan.pcap");
    pcapgen::write_scan_pcap(&pcap, 500, live::day_start(TODAY).cast_unsigned() + 3600).unwrap();
    let replay = Command::new(TSUSEN)
        .args(["replay", pcap.to_str().unwrap(), "--out-dir"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(replay.status.success(), "{}", one_error_line(&replay));
    let replayed: HashSet<live::Tuple> = live::read_day_file(&day_file)
        .iter()
        .map(live::DayRow::tuple)
        .collect();
    assert!(
        replayed.len() > 100,
        "the replay wrote rows: {}",
        replayed.len()
    );

    live::syns_from(&live.net.peer, TestNet::SENSOR_IP, &[5002, 5003]);
    daemon.wait_two_flushes(Duration::from_secs(10));
    daemon.terminate_cleanly();
    // Read strictly: one header, every tuple once.
    let rows: HashSet<live::Tuple> = live::read_day_file(&day_file)
        .iter()
        .map(live::DayRow::tuple)
        .collect();
    assert!(
        replayed.is_subset(&rows),
        "{} replayed rows erased",
        replayed.difference(&rows).count()
    );
    assert!(tcp_tuples([5001, 5002, 5003]).is_subset(&rows));
}

#[test]
fn max_pending_zero_is_refused_in_one_line() {
    // An interface that does not exist and scratch paths: if the check were
    // gone, the run would still stop before attaching or writing anything.
    let scratch = std::env::temp_dir().join(tsusen::testing::unique_name("mp0"));
    let out = Command::new(TSUSEN)
        .args(["run", "--iface", "tsusen-no-such-if", "--max-pending", "0"])
        .arg("--out-dir")
        .arg(scratch.join("out"))
        .arg("--pin-dir")
        .arg(scratch.join("pins"))
        .output()
        .unwrap();
    let _ = fs::remove_dir_all(&scratch);
    assert!(!out.status.success());
    let line = one_error_line(&out);
    assert!(line.contains("--max-pending must be at least 1"), "{line}");
}
