//! The live sensor's life: killed with SIGKILL mid-sweep and restarted,
//! stopped with SIGTERM, running across midnight, writing to a disk that
//! fills up. Whatever happens, every attempt ends up in the day files exactly
//! once and no line is ever torn.

use std::{
    collections::HashSet,
    fs,
    io::Write as _,
    thread,
    time::{Duration, Instant},
};

use tsusen::{
    skip_unless,
    testing::{
        TestNet,
        live::{self, Live},
    },
};

const TSUSEN: &str = env!("CARGO_BIN_EXE_tsusen");

const SCAN_SOURCE: &str = "198.19.255.254";

#[test]
fn kill9_mid_sweep_then_restart_records_every_probe_once() {
    let why = live::why_not(&["masscan"]);
    skip_unless!(why.is_empty(), &why);
    let _serial = live::serial();
    let live = Live::new(TSUSEN);
    let args = ["--local", "198.18.1.0/24", "--map-size", "262144"];
    let mut first = live.start("first", &args);

    // 102,400 probes at 20,000 pps: about 5 s of sweep.
    let started = Instant::now();
    let scan = live::masscan(
        &live.net,
        "198.18.1.0/24",
        "1-400",
        102_400,
        20_000,
        SCAN_SOURCE,
        &live.scratch.dir,
    );
    // Let the first daemon write part of the sweep, then kill it hard.
    let wrote = first
        .wait_line_from(0, Duration::from_secs(5), |l| {
            live::Flush::parse(l).is_some_and(|f| f.get("rows") > 0)
        })
        .is_some();
    assert!(wrote, "the first daemon wrote rows before the kill");
    first.kill9();
    let killed_after = started.elapsed();
    assert!(
        live.xdp_attached(),
        "the pinned XDP link keeps the program attached after kill -9"
    );
    let out = live.out_dir();
    let at_kill = live::count_rows(&out);
    // A crash in the middle of a write leaves a torn last line: make one.
    let day_file = live::day_files(&out)
        .into_values()
        .next_back()
        .expect("a day file");
    fs::OpenOptions::new()
        .append(true)
        .open(&day_file)
        .unwrap()
        .write_all(b"TCP 3 198.19.2")
        .unwrap();

    let mut second = live.start("second", &args);
    let restarted_after = started.elapsed();
    let sweep = scan.finish(Duration::from_secs(30));
    eprintln!(
        "killed at {killed_after:.2?} with {at_kill} rows written; restarted (ready) at \
         {restarted_after:.2?}; the sweep's last frame at {:.2?}",
        sweep.last_frame
    );
    assert!(
        restarted_after < sweep.last_frame,
        "the restart happened while masscan was still sweeping"
    );

    let count = live::wait_rows(&out, 102_400, Duration::from_secs(15));
    assert_eq!(count, 102_400, "rows within 15 s of the sweep's end");
    second.terminate_cleanly();
    let rows = live::all_rows(&out);
    let expected = live::sweep_tuples("198.18.1", 1..=400, SCAN_SOURCE);
    live::assert_tuples(&rows, &expected, "sweep across kill -9 and restart");
    assert!(!live.xdp_attached(), "XDP left attached after SIGTERM");
}

#[test]
fn sigterm_writes_everything_recorded_before_the_flush_interval() {
    let why = live::why_not(&["masscan"]);
    skip_unless!(why.is_empty(), &why);
    let _serial = live::serial();
    let live = Live::new(TSUSEN);
    let mut daemon = live.start(
        "sensor",
        &["--local", "198.18.1.0/24", "--flush-interval", "1h"],
    );
    // A flush right at start is fine; let it pass before the traffic.
    thread::sleep(Duration::from_millis(300));
    let flushes_before = daemon.flushes().len();
    // 256 x 4 = 1,024 SYNs, then SIGTERM well before any periodic flush
    // (`finish` returns 300 ms after the last frame left the peer).
    let scan = live::masscan(
        &live.net,
        "198.18.1.0/24",
        "1-4",
        1_024,
        100_000,
        SCAN_SOURCE,
        &live.scratch.dir,
    );
    scan.finish(Duration::from_secs(20));
    let written_before: u64 = daemon.flushes()[flushes_before..]
        .iter()
        .map(|f| f.get("rows"))
        .sum();
    assert_eq!(written_before, 0, "no periodic flush wrote rows yet");
    daemon.terminate_cleanly();

    let rows = live::all_rows(&live.out_dir());
    let expected = live::sweep_tuples("198.18.1", 1..=4, SCAN_SOURCE);
    live::assert_tuples(&rows, &expected, "rows after SIGTERM");
    assert!(!live.xdp_attached(), "XDP left attached after SIGTERM");
    assert!(
        !live.pin_dir().exists() || fs::read_dir(live.pin_dir()).unwrap().next().is_none(),
        "pins left after a clean shutdown"
    );
}

#[test]
fn rows_land_in_the_day_of_their_first_packet_across_midnight() {
    let why = live::why_not(&[]);
    skip_unless!(why.is_empty(), &why);
    let _serial = live::serial();
    let live = Live::new(TSUSEN);
    let metrics = "127.0.0.1:9477";
    // Midnight comes 6 s after the clock starts (at spawn at the earliest,
    // at `ready` at the latest).
    let lead = Duration::from_secs(6);
    let mut daemon = live.start(
        "sensor",
        &[
            "--clock-start",
            "2026-11-24T23:59:54Z",
            "--metrics",
            metrics,
        ],
    );
    let ready_at = Instant::now();
    let startup = ready_at - daemon.spawned_at;
    assert!(
        startup < lead - Duration::from_secs(1),
        "ready took {startup:?}: too slow to send before the injected midnight"
    );
    let sensor = TestNet::SENSOR_IP;
    let peer = &live.net.peer;
    live::syns_from(peer, sensor, &[1001, 1003, 1004]);
    assert!(
        daemon.spawned_at.elapsed() < lead - Duration::from_millis(300),
        "the pre-midnight SYNs were sent too late"
    );
    thread::sleep(
        (ready_at + lead + Duration::from_millis(700)).saturating_duration_since(Instant::now()),
    );
    live::syns_from(peer, sensor, &[1001, 1002]);

    let out = live.out_dir();
    let count = live::wait_rows(&out, 5, Duration::from_secs(10));
    assert_eq!(count, 5, "rows within 10 s");
    // The flush after the new day's rows were written has dropped the old
    // day's entries from the kernel map: at most the new day's 2 remain.
    daemon.wait_two_flushes(Duration::from_secs(5));
    let text = live::fetch_metrics(&live.net.sensor, metrics).expect("metrics");
    let entries = live::metric(&text, "tsusen_map_entries");
    assert!(
        entries.is_some_and(|n| n <= 2.0),
        "tsusen_map_entries = {entries:?} after the rollover flush (old day's 3 must be gone); \
         metrics:\n{text}"
    );
    daemon.terminate_cleanly();

    let days = live::read_all_rows(&out);
    assert_eq!(
        days.keys().collect::<Vec<_>>(),
        ["2026-11-24", "2026-11-25"],
        "day files"
    );
    let midnight = live::day_start("2026-11-25");
    let peer_ip = TestNet::PEER_IP;
    let tcp = |port| live::tuple("TCP", Some(port), peer_ip, sensor);
    let before: HashSet<_> = [tcp(1001), tcp(1003), tcp(1004)].into();
    let after: HashSet<_> = [tcp(1001), tcp(1002)].into();
    live::assert_tuples(&days["2026-11-24"], &before, "2026-11-24.csv");
    live::assert_tuples(&days["2026-11-25"], &after, "2026-11-25.csv");
    for row in &days["2026-11-24"] {
        assert!(row.timestamp >= midnight - 8, "{row:?}: too early");
    }
    for row in &days["2026-11-25"] {
        assert!(row.timestamp <= midnight + 8, "{row:?}: too late");
    }
}

#[test]
fn a_full_out_dir_delays_rows_but_loses_and_tears_none() {
    let why = live::why_not(&["masscan"]);
    skip_unless!(why.is_empty(), &why);
    let _serial = live::serial();
    let mut live = Live::new(TSUSEN);
    let out = live.scratch.mount_tmpfs("small", "128k");
    let out_arg = out.display().to_string();
    let mut daemon = live.start(
        "sensor",
        &["--local", "198.18.1.0/24", "--out-dir", &out_arg],
    );

    // Fill the filesystem, then free one page: a flush can write part of
    // its rows and no more.
    let filler = out.join("filler");
    {
        let mut file = fs::File::create(&filler).unwrap();
        let chunk = [0u8; 4096];
        loop {
            match file.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filler: {e}"),
            }
        }
        let len = file.metadata().unwrap().len();
        file.set_len(len.saturating_sub(4096)).unwrap();
    }

    // 256 x 2 = 512 SYNs, about 23 kB of rows.
    let scan = live::masscan(
        &live.net,
        "198.18.1.0/24",
        "1-2",
        512,
        100_000,
        SCAN_SOURCE,
        &live.scratch.dir,
    );
    scan.finish(Duration::from_secs(20));
    let failed = daemon
        .wait_line_from(0, Duration::from_secs(10), |l| {
            live::Flush::parse(l).is_some_and(|f| f.get("write_errors") > 0)
        })
        .map(|l| live::Flush::parse(&l).unwrap());
    let failed = failed.expect("a flush line with write_errors > 0 while the disk is full");
    assert!(
        failed.get("pending") > 0,
        "rows that could not be written are pending: {}",
        failed.line
    );
    assert!(
        daemon.wait_exit(Duration::ZERO).is_none(),
        "a full disk is not fatal"
    );

    fs::remove_file(&filler).unwrap();
    let count = live::wait_rows(&out, 512, Duration::from_secs(15));
    assert_eq!(count, 512, "rows within 15 s of freeing space");
    daemon.wait_two_flushes(Duration::from_secs(5));
    daemon.terminate_cleanly();

    let rows = live::all_rows(&out);
    let expected = live::sweep_tuples("198.18.1", 1..=2, SCAN_SOURCE);
    live::assert_tuples(&rows, &expected, "rows after the disk had room again");
}
