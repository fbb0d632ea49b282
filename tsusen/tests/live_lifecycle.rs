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

use aya::maps::{HashMap, Map, MapData};
use tsusen::{
    live_test,
    testing::{
        TestNet,
        live::{self, Live},
    },
};

use tsusen_common::{FirstSeen, Stat, TupleKey, maps};

const SCAN_SOURCE: &str = "198.19.255.254";

#[test]
fn kill9_mid_sweep_then_restart_records_every_probe_once() {
    let live = live_test!(&["masscan"]);
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
    let live = live_test!(&["masscan"]);
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

/// SIGTERM in the middle of a sweep: the last drain happens after the XDP
/// program is detached, so nothing the kernel recorded is left in the map
/// when the daemon unpins it. The test holds its own descriptors of the
/// pinned FIRST_SEEN and STATS maps to look inside them after the daemon is
/// gone: every tuple the kernel counted as new is a row, and none is left.
#[test]
fn sigterm_mid_sweep_leaves_nothing_recorded_unwritten() {
    let live = live_test!(&["masscan"]);
    let mut daemon = live.start(
        "sensor",
        &["--local", "198.18.1.0/24", "--flush-interval", "1h"],
    );
    let pinned = |name: &str| {
        MapData::from_pin(live.pin_dir().join(name))
            .unwrap_or_else(|e| panic!("opening the pinned {name}: {e}"))
    };
    let first_seen = Map::LruHashMap(pinned(maps::FIRST_SEEN));
    let stats = Map::PerCpuArray(pinned(maps::STATS));
    // 256 x 1,000 new tuples at 20,000 pps: about 13 s of sweep, so the
    // sweep is still running when SIGTERM comes and while the daemon stops.
    let scan = live::masscan(
        &live.net,
        "198.18.1.0/24",
        "1-1000",
        256_000,
        20_000,
        SCAN_SOURCE,
        &live.scratch.dir,
    );
    thread::sleep(Duration::from_secs(2));
    daemon.terminate_cleanly();
    // The sweep goes on: a program still attached would keep recording.
    thread::sleep(Duration::from_millis(300));
    let sending = live::if_counters(&live.net.peer, &live.net.peer_if).tx_packets;
    thread::sleep(Duration::from_millis(100));
    assert!(
        live::if_counters(&live.net.peer, &live.net.peer_if).tx_packets > sending,
        "the sweep was over before the daemon stopped; the test proves nothing"
    );
    drop(scan);

    let left: HashMap<&MapData, TupleKey, FirstSeen> = HashMap::try_from(&first_seen).unwrap();
    let left = left.keys().count();
    let new_tuples =
        tsusen::capture::stats::sum_counters(&stats).unwrap()[Stat::NewTuples as usize];
    let rows = live::all_rows(&live.out_dir());
    let distinct: HashSet<_> = rows.iter().map(live::DayRow::tuple).collect();
    assert_eq!(distinct.len(), rows.len(), "a tuple written twice");
    assert!(!rows.is_empty(), "nothing recorded before SIGTERM");
    assert_eq!(
        left, 0,
        "entries recorded but never written: lost at shutdown"
    );
    assert_eq!(
        rows.len() as u64,
        new_tuples,
        "the kernel recorded {new_tuples} new tuples, the day files hold {}",
        rows.len()
    );
    assert!(!live.xdp_attached(), "XDP left attached after SIGTERM");
}

#[test]
fn rows_land_in_the_day_of_their_first_packet_across_midnight() {
    let live = live_test!(&[]);
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
        startup < lead.checked_sub(Duration::from_secs(1)).unwrap(),
        "ready took {startup:?}: too slow to send before the injected midnight"
    );
    let sensor = TestNet::SENSOR_IP;
    let peer = &live.net.peer;
    live::syns_from(peer, sensor, &[1001, 1003, 1004]);
    assert!(
        daemon.spawned_at.elapsed() < lead.checked_sub(Duration::from_millis(300)).unwrap(),
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
    let mut live = live_test!(&["masscan"]);
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

#[test]
fn traffic_during_startup_is_dated_today_and_judged_by_the_local_networks() {
    let live = live_test!(&["masscan"]);
    let first_day = chrono::Utc::now().date_naive();
    // 512 x 200 = 102,400 probes at 50,000 pps (about 2 s), running through
    // the whole start: half go to 198.18.2.0/24, which is local, half to
    // 198.18.3.0/24, which is not.
    let started = Instant::now();
    let scan = live::masscan(
        &live.net,
        "198.18.2.0/23",
        "1-200",
        102_400,
        50_000,
        SCAN_SOURCE,
        &live.scratch.dir,
    );
    let before = live::if_counters(&live.net.peer, &live.net.peer_if).tx_packets;
    while live::if_counters(&live.net.peer, &live.net.peer_if).tx_packets == before {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "masscan sent nothing"
        );
        thread::sleep(Duration::from_millis(5));
    }
    let spawned_after = started.elapsed();
    let mut daemon = live.start("sensor", &["--local", "198.18.2.0/24"]);
    let ready_after = started.elapsed();
    let sweep = scan.finish(Duration::from_secs(30));
    eprintln!(
        "spawned at {spawned_after:.2?}, ready at {ready_after:.2?}; the sweep's last frame at {:.2?}",
        sweep.last_frame
    );
    assert!(
        ready_after < sweep.last_frame,
        "the sweep ran through the whole start"
    );
    daemon.wait_two_flushes(Duration::from_secs(10));
    daemon.terminate_cleanly();
    let last_day = chrono::Utc::now().date_naive();

    // Not one row dated by the kernel's uptime (a 1970 file), not one row
    // for the network outside --local.
    let days = live::read_all_rows(&live.out_dir());
    let allowed = [first_day, last_day].map(|d| d.format("%Y-%m-%d").to_string());
    for day in days.keys() {
        assert!(
            allowed.contains(day),
            "a day file {day}.csv: {:?}",
            days.keys()
        );
    }
    let rows: Vec<_> = days.into_values().flatten().collect();
    assert!(!rows.is_empty(), "the sweep was recorded");
    let outside: Vec<_> = rows
        .iter()
        .filter(|r| !r.dst.to_string().starts_with("198.18.2."))
        .take(5)
        .collect();
    assert!(
        outside.is_empty(),
        "rows for a destination outside --local: {outside:?}"
    );
}

#[test]
fn kill9_then_the_interface_recreated_then_restart_attaches_to_the_new_one() {
    let live = live_test!(&[]);
    let sensor = TestNet::SENSOR_IP;
    let mut first = live.start("first", &[]);
    live::syns_from(&live.net.peer, sensor, &[2001]);
    assert_eq!(
        live::wait_rows(&live.out_dir(), 1, Duration::from_secs(10)),
        1
    );
    first.kill9();
    // The pinned links outlive the interface they were attached to.
    live.net.recreate_veth();
    assert!(!live.xdp_attached(), "a new interface starts bare");

    let mut second = live.start("second", &[]);
    assert!(live.xdp_attached(), "attached to the new interface");
    live::syns_from(&live.net.peer, sensor, &[2002]);
    assert_eq!(
        live::wait_rows(&live.out_dir(), 2, Duration::from_secs(10)),
        2
    );
    second.terminate_cleanly();
    let peer = TestNet::PEER_IP;
    let expected = [2001, 2002]
        .map(|port| live::tuple("TCP", Some(port), peer, sensor))
        .into();
    live::assert_tuples(
        &live::all_rows(&live.out_dir()),
        &expected,
        "before and after the interface was recreated",
    );
    assert!(!live.xdp_attached(), "XDP left attached after SIGTERM");
    assert_eq!(
        live::names_in(&live.pin_dir()),
        Vec::<String>::new(),
        "pins left after a clean stop"
    );
}

/// The root of a bpffs, shared with the kernel (`maps.debug`,
/// `progs.debug`) and other tools (a folder, a pinned map).
fn shared_bpffs(live: &Live) -> (std::path::PathBuf, Vec<String>) {
    let root = live.scratch.dir.join("bpf");
    fs::create_dir(root.join("other-tool")).unwrap();
    live::pin_foreign_map(&root.join("other_tools_map"));
    let names = live::names_in(&root);
    assert!(names.len() >= 2, "{names:?}");
    (root, names)
}

#[test]
fn a_sensor_at_the_root_of_a_shared_bpffs_touches_only_its_own_pins() {
    let live = live_test!(&[]);
    let (root, foreign) = shared_bpffs(&live);
    let root_arg = root.display().to_string();

    let mut daemon = live.start("sensor", &["--pin-dir", &root_arg]);
    assert!(
        !daemon.lines().iter().any(|l| l.contains("adopted")),
        "a fresh start claims to adopt an earlier run:\n{}",
        daemon.tail()
    );
    assert!(
        live::names_in(&root).len() > foreign.len(),
        "tsusen pinned its maps and links there"
    );
    live::syns_from(&live.net.peer, TestNet::SENSOR_IP, &[3001]);
    assert_eq!(
        live::wait_rows(&live.out_dir(), 1, Duration::from_secs(10)),
        1
    );
    daemon.terminate_cleanly();
    assert_eq!(
        live::names_in(&root),
        foreign,
        "after a clean stop: exactly what was there before"
    );
    assert!(!live.xdp_attached(), "XDP left attached after SIGTERM");
}

#[test]
fn a_failed_start_in_a_shared_pin_dir_removes_only_what_it_pinned() {
    let live = live_test!(&[]);
    let (root, foreign) = shared_bpffs(&live);
    let root_arg = root.display().to_string();
    // Another sensor holds the interface: this start loads, pins its maps,
    // then fails to attach.
    let other_out = live.scratch.path("other-out");
    fs::create_dir(&other_out).unwrap();
    let other_pins = root.join("other-tool/pins");
    let (out_arg, pins_arg) = (
        other_out.display().to_string(),
        other_pins.display().to_string(),
    );
    let mut holder = live.start("holder", &["--out-dir", &out_arg, "--pin-dir", &pins_arg]);
    let foreign_now = live::names_in(&root);
    assert_eq!(
        foreign_now, foreign,
        "the holder's pins are in its own folder"
    );

    let mut failed = live.spawn("failed", &["--pin-dir", &root_arg]);
    let status = failed
        .wait_exit(Duration::from_secs(10))
        .expect("the start fails");
    assert!(!status.success());
    let errors = failed.error_lines();
    assert_eq!(errors.len(), 1, "{}", failed.tail());
    assert!(errors[0].contains("already attached"), "{}", errors[0]);
    assert_eq!(
        live::names_in(&root),
        foreign,
        "after a failed start: exactly what was there before"
    );
    assert!(
        live::names_in(&other_pins).len() >= 9,
        "the holder's pins are untouched: {:?}",
        live::names_in(&other_pins)
    );
    holder.terminate_cleanly();
}
