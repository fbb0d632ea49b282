//! A fleet on a ClickHouse cluster, end to end: ZooKeeper and two
//! ClickHouse replicas of one shard (tsusen::testing::clickhouse), the
//! schema `tsusen ship --print-schema --clickhouse-cluster` prints, and three
//! live sensors (`tsusen run` in their own test networks, swept by masscan)
//! whose day files each feed a `tsusen ship` in the host's namespace (where
//! the servers listen on loopback) with both replicas' URLs.
//!
//! Mid-stream, while sweeps are being recorded and shipped: `kill -9` of a
//! sensor (then a restart on the same out-dir), of a shipper (then a restart
//! on the same cursor), and of a ClickHouse node (the shippers go on to the
//! other replica; then a restart on the same data). Afterwards every row of
//! every sensor's day files is in the cluster exactly once: no duplicate is
//! even stored (the nodes never merge, so nothing hides one), on the
//! Distributed table and on each replica.
//!
//! And one sensor `kill -9`ed in the middle of a write at the very start of
//! a day file: the torn line it leaves is cut by its restart, and the
//! shipper must not take that for a file rewritten under it.

mod report_support;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use tsusen::{
    live_test, skip_unless,
    testing::{
        self, TestNet,
        clickhouse::{CLUSTER, Cluster, Node, why_not_cluster, why_not_node},
        live::{self, Daemon, Live},
    },
};

use self::report_support::Server;

/// The masscan sweeps' source: an address of no namespace, so nothing
/// answers and each probe is sent once.
const SCAN_SOURCE: &str = "198.19.255.254";
/// Each sensor's own network (the same in each test network), swept.
const LOCAL: &str = "198.18.1.0/24";
/// Probes per second of every sweep: well within what a veth and the
/// sensor take on a shared machine.
const RATE: u32 = 10_000;
/// The table `tsusen ship` writes by default: a Distributed table over the
/// replicated `_local` one.
const TABLE: &str = "tsusen.attempts";
const LOCAL_TABLE: &str = "tsusen.attempts_local";
/// How long shipping may take to catch up with the day files.
const CATCH_UP: Duration = Duration::from_secs(120);

/// One sensor of the fleet: its test network and daemon, and the shipper
/// that follows its day files.
struct Sensor {
    name: &'static str,
    /// Before `live`: fields drop in order, the processes before their
    /// network and directory.
    daemon: Option<Daemon>,
    shipper: Option<Daemon>,
    live: Live,
    /// `tsusen ship`'s arguments, to start it again after a kill.
    ship_args: Vec<String>,
}

impl Sensor {
    fn new(name: &'static str, live: Live, urls: &[String]) -> Sensor {
        let mut ship_args = vec![
            "ship".to_owned(),
            "--dir".to_owned(),
            live.out_dir().display().to_string(),
            "--sensor".to_owned(),
            name.to_owned(),
            "--clickhouse-cluster".to_owned(),
            CLUSTER.to_owned(),
        ];
        for url in urls {
            ship_args.push("--clickhouse".to_owned());
            ship_args.push(url.clone());
        }
        let daemon = start_daemon(name, &live);
        let shipper = start_shipper(name, &live.bin, &ship_args);
        Sensor {
            name,
            daemon: Some(daemon),
            shipper: Some(shipper),
            live,
            ship_args,
        }
    }

    /// Rows in the day files now (complete lines).
    fn rows_on_disk(&self) -> u64 {
        live::count_rows(&self.live.out_dir()) as u64
    }
}

/// `tsusen run` on the sensor's network, recording its own addresses.
fn start_daemon(name: &str, live: &Live) -> Daemon {
    live.start(&format!("{name}-run"), &["--local", LOCAL])
}

/// `tsusen ship` in the test's namespace (the servers are on its loopback).
fn start_shipper(name: &str, bin: &str, args: &[String]) -> Daemon {
    Daemon::spawn_here(&format!("{name}-ship"), bin, args)
}

/// A masscan sweep of the sensor's network x `ports` from the peer,
/// started (`probes` = 256 x the number of ports).
fn sweep<'a>(live: &'a Live, ports: &str, probes: u64) -> live::Masscan<'a> {
    live::masscan(
        &live.net,
        LOCAL,
        ports,
        probes,
        RATE,
        SCAN_SOURCE,
        &live.scratch.dir,
    )
}

/// The union of the sensors' day files in one directory, day by day (the
/// rows of every sensor, one after the other): what the fleet saw, for
/// `tsusen report --dir`.
fn union_of_day_files(sensors: &[Sensor], dir: &Path) -> PathBuf {
    let union = dir.join("union");
    fs::create_dir_all(&union).unwrap();
    let mut days: BTreeMap<String, String> = BTreeMap::new();
    for sensor in sensors {
        for (date, path) in live::day_files(&sensor.live.out_dir()) {
            let text = fs::read_to_string(path).unwrap();
            let rows = text.split_once('\n').expect("a header line").1;
            days.entry(date)
                .or_insert_with(|| format!("{}\n", live::HEADER))
                .push_str(rows);
        }
    }
    for (date, text) in days {
        fs::write(union.join(format!("{date}.csv")), text).unwrap();
    }
    union
}

/// Every details row `serve` has, paged through, in a fixed order (rows
/// that tie in the table's order come in the order sources were read).
fn all_details(server: &Server) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    loop {
        let page = server.json(&format!("/api/details?offset={}&limit=1000", rows.len()));
        let got = page["rows"].as_array().unwrap();
        if got.is_empty() {
            assert_eq!(page["total"], rows.len(), "details total");
            break;
        }
        rows.extend(got.iter().cloned());
    }
    rows.sort_by_key(|r| {
        (
            r["proto"].to_string(),
            r["port"].to_string(),
            r["src"].to_string(),
        )
    });
    rows
}

/// The 200 ports only sensor `i` is swept on (rounds 2 to 4): the fleet's
/// sensors see some scans together and some alone.
fn own_ports(i: u16) -> String {
    format!("{}-{}", 21 + 1000 * i, 220 + 1000 * i)
}

/// The rows as the cluster stores them: (day, sensor, proto, dst_port,
/// src_ip hex, dst_ip hex, first_seen).
type StoredRow = (String, String, u8, u16, String, String, i64);

/// The rows of `sensor`'s day files (read strictly) as the cluster must
/// store them: IPv4 mapped to `::ffff:a.b.c.d`, no port as 0.
fn rows_from_day_files(sensor: &str, dir: &Path) -> Vec<StoredRow> {
    let hex = |ip: std::net::IpAddr| -> String {
        let v6 = match ip {
            std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            std::net::IpAddr::V6(v6) => v6,
        };
        v6.octets().iter().fold(String::new(), |mut out, b| {
            let _ = write!(out, "{b:02X}");
            out
        })
    };
    live::read_all_rows(dir)
        .into_iter()
        .flat_map(|(day, rows)| {
            rows.into_iter().map(move |row| {
                (
                    day.clone(),
                    sensor.to_owned(),
                    tsusen_common::proto::from_column(&row.proto)
                        .unwrap_or_else(|| panic!("proto {}", row.proto)),
                    row.port.unwrap_or(0),
                    hex(row.src),
                    hex(row.dst),
                    row.timestamp,
                )
            })
        })
        .collect()
}

/// Every row of `table` as a node returns it.
fn stored_rows(node: &Node, table: &str) -> Vec<StoredRow> {
    let out = node.query(&format!(
        "SELECT toString(day), sensor, proto, dst_port, hex(src_ip), hex(dst_ip), \
         toUInt32(first_seen) FROM {table} FORMAT TabSeparated"
    ));
    out.lines()
        .map(|line| {
            let c: Vec<&str> = line.split('\t').collect();
            assert_eq!(c.len(), 7, "{table}: {line:?}");
            (
                c[0].to_owned(),
                c[1].to_owned(),
                c[2].parse().unwrap(),
                c[3].parse().unwrap(),
                c[4].to_owned(),
                c[5].to_owned(),
                c[6].parse().unwrap(),
            )
        })
        .collect()
}

/// Inserted blocks a replica dropped because it had them already (since
/// its start).
fn duplicate_blocks(node: &Node) -> u64 {
    let out =
        node.query("SELECT sum(value) FROM system.events WHERE event = 'DuplicatedInsertedBlocks'");
    out.trim().parse().unwrap_or(0)
}

/// Distinct rows (whole tuples with `first_seen`) per sensor in `table`,
/// as `node` answers now (an error while a node is down counts as none).
fn distinct_per_sensor(node: &Node, table: &str) -> BTreeMap<String, u64> {
    let Ok(out) = node.try_query(&format!(
        "SELECT sensor, uniqExact(day, proto, dst_port, src_ip, dst_ip, first_seen) \
         FROM {table} GROUP BY sensor FORMAT TabSeparated"
    )) else {
        return BTreeMap::new();
    };
    out.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(sensor, n)| (sensor.to_owned(), n.parse().unwrap()))
        .collect()
}

/// Wait until `node` serves at least `at_least` distinct rows of `sensor`
/// through the Distributed table: shipping is flowing.
fn wait_shipped(node: &Node, sensor: &str, at_least: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let n = distinct_per_sensor(node, TABLE)
            .get(sensor)
            .copied()
            .unwrap_or(0);
        if n >= at_least {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "{sensor}: {n} rows in the cluster, not {at_least}, after {timeout:?}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// Wait until the cluster (through `node`) holds as many distinct rows of
/// each sensor as its day files.
fn wait_caught_up(node: &Node, sensors: &[Sensor]) {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let on_disk: BTreeMap<String, u64> = sensors
            .iter()
            .map(|s| (s.name.to_owned(), s.rows_on_disk()))
            .collect();
        let stored = distinct_per_sensor(node, TABLE);
        if stored == on_disk {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "shipping did not catch up within {CATCH_UP:?}: day files {on_disk:?}, cluster {stored:?}"
        );
        thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn three_sensors_ship_to_a_replicated_cluster_exactly_once_across_kill9() {
    let why = why_not_cluster();
    skip_unless!(why.is_empty(), &why);
    let first = live_test!(&["masscan"]);
    let mut cluster = Cluster::start_without_merges();
    let bin = first.bin.clone();

    // The DBA's way: the DDL `ship --print-schema` prints, run on one node.
    let schema = testing::run(
        &bin,
        &["ship", "--print-schema", "--clickhouse-cluster", CLUSTER],
    );
    for statement in schema.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        cluster.nodes[0].query(statement);
    }
    for node in &cluster.nodes {
        assert_eq!(
            node.query("SELECT engine FROM system.tables WHERE database = 'tsusen' ORDER BY name"),
            "Distributed\nReplicatedReplacingMergeTree\n",
            "the schema is on both nodes"
        );
    }

    // The shippers start on different replicas; a failed one is skipped for
    // the next.
    let urls = cluster.urls();
    let reversed: Vec<String> = urls.iter().rev().cloned().collect();
    let mut sensors = [
        Sensor::new("sensor-a", first, &urls),
        Sensor::new("sensor-b", Live::new(&bin), &reversed),
        Sensor::new("sensor-c", Live::new(&bin), &urls),
    ];
    // The node never killed answers the test's questions.
    let witness = 1;

    // Round 1: a short sweep of each sensor, shipped.
    for sensor in &sensors {
        sweep(&sensor.live, "1-20", 256 * 20).finish(Duration::from_secs(30));
    }
    for sensor in &sensors {
        let n = live::wait_rows(&sensor.live.out_dir(), 256 * 20, Duration::from_secs(15));
        assert_eq!(n, 256 * 20, "{}: the first sweep recorded", sensor.name);
        wait_shipped(&cluster.nodes[witness], sensor.name, 256 * 20, CATCH_UP);
    }

    // Round 2: kill -9 sensor a in the middle of a sweep, start it again
    // on the same out-dir.
    {
        let Sensor {
            name, daemon, live, ..
        } = &mut sensors[0];
        let scan = sweep(live, &own_ports(0), 256 * 200);
        let mut first = daemon.take().unwrap();
        let wrote = first
            .wait_line_from(first.flushes().len(), Duration::from_secs(10), |l| {
                live::Flush::parse(l).is_some_and(|f| f.get("rows") > 0)
            })
            .is_some();
        assert!(wrote, "{name} wrote rows of the sweep before the kill");
        first.kill9();
        *daemon = Some(start_daemon(name, live));
        scan.finish(Duration::from_secs(60));
    }

    // Round 3: kill -9 sensor b's shipper with a batch in flight, start it
    // again on its cursor. Its first replica (node 1) is frozen, so the
    // batch it sends for the sweep waits there, unanswered; thawed after
    // the restart, node 1 gets the dead shipper's batch and the same bytes
    // again from the new one.
    let duplicates_before = duplicate_blocks(&cluster.nodes[1]);
    {
        let Sensor {
            name,
            shipper,
            live,
            ship_args,
            ..
        } = &mut sensors[1];
        let frozen = &cluster.nodes[1];
        frozen.freeze();
        let scan = sweep(live, &own_ports(1), 256 * 200);
        let deadline = Instant::now() + Duration::from_secs(30);
        while frozen.requests_waiting() == 0 {
            assert!(
                Instant::now() < deadline,
                "{name}'s shipper sent nothing to the frozen node within 30 s"
            );
            thread::sleep(Duration::from_millis(50));
        }
        shipper.as_mut().unwrap().kill9();
        *shipper = Some(start_shipper(name, &live.bin, ship_args));
        frozen.thaw();
        scan.finish(Duration::from_secs(60));
    }

    // Round 4: kill -9 ClickHouse node 0 with sensor c's batch in flight
    // there (frozen first, so the batch waits in it); its shipper goes on
    // to node 1. Then node 0 comes back on the same data and catches up.
    {
        let sensor = &sensors[2];
        let killed = &mut cluster.nodes[0];
        killed.freeze();
        let scan = sweep(&sensor.live, &own_ports(2), 256 * 200);
        let deadline = Instant::now() + Duration::from_secs(30);
        while killed.requests_waiting() == 0 {
            assert!(
                Instant::now() < deadline,
                "{}'s shipper sent nothing to the frozen node within 30 s",
                sensor.name
            );
            thread::sleep(Duration::from_millis(50));
        }
        killed.kill9();
        wait_shipped(&cluster.nodes[witness], sensor.name, 256 * 20 + 1, CATCH_UP);
        scan.finish(Duration::from_secs(60));
        cluster.nodes[0].restart();
    }

    // Round 5: with everything back, one more sweep of each.
    for sensor in &sensors {
        sweep(&sensor.live, "221-240", 256 * 20).finish(Duration::from_secs(30));
    }

    // The sensors stop cleanly (their last rows flushed); the shippers
    // catch up, then stop.
    for sensor in &mut sensors {
        sensor.daemon.as_mut().unwrap().terminate_cleanly();
    }
    wait_caught_up(&cluster.nodes[witness], &sensors);
    // `ship` has no shutdown of its own to wait for: SIGTERM ends it
    // wherever it is, like a crash (shipping is at-least-once).
    for sensor in &mut sensors {
        sensor.shipper.as_mut().unwrap().terminate();
    }
    for node in &cluster.nodes {
        node.query(&format!("SYSTEM SYNC REPLICA {LOCAL_TABLE}"));
    }
    // Node 1 read the dead shipper's batch when thawed, and the same bytes
    // from its successor: one of the two was dropped as a block it had.
    let dropped = duplicate_blocks(&cluster.nodes[1]) - duplicates_before;
    eprintln!("node 1 dropped {dropped} re-sent block(s) as duplicates");
    assert!(
        dropped >= 1,
        "the batch in flight at the kill was sent again"
    );

    // Exactly once: per sensor, the rows of its day files (read strictly),
    // and the same rows on the Distributed table and on each replica.
    let mut expected = BTreeSet::new();
    for (i, sensor) in (0u16..).zip(&sensors) {
        let out = sensor.live.out_dir();
        let mut swept = live::sweep_tuples("198.18.1", 1..=20, SCAN_SOURCE);
        swept.extend(live::sweep_tuples("198.18.1", 221..=240, SCAN_SOURCE));
        let own = 21 + 1000 * i..=220 + 1000 * i;
        swept.extend(live::sweep_tuples("198.18.1", own, SCAN_SOURCE));
        live::assert_tuples(&live::all_rows(&out), &swept, sensor.name);
        expected.extend(rows_from_day_files(sensor.name, &out));
    }
    let expected_count = expected.len() as u64;
    for (i, node) in cluster.nodes.iter().enumerate() {
        for table in [TABLE, LOCAL_TABLE] {
            let what = format!("node {i}, {table}");
            let count = node.count(&format!("SELECT count() FROM {table}"));
            let final_count = node.count(&format!("SELECT count() FROM {table} FINAL"));
            let keys = node.count(&format!(
                "SELECT uniqExact(day, sensor, proto, dst_port, src_ip, dst_ip) FROM {table}"
            ));
            assert_eq!(
                (count, final_count, keys),
                (expected_count, expected_count, expected_count),
                "{what}: count(), count() FINAL, distinct keys = rows in the day files"
            );
            let stored = stored_rows(node, table);
            let stored_set: BTreeSet<StoredRow> = stored.iter().cloned().collect();
            assert_eq!(stored_set.len(), stored.len(), "{what}: a row stored twice");
            if stored_set != expected {
                let missing: Vec<_> = expected.difference(&stored_set).take(5).collect();
                let extra: Vec<_> = stored_set.difference(&expected).take(5).collect();
                panic!(
                    "{what}: rows differ from the day files; missing {missing:?}, extra {extra:?}"
                );
            }
        }
    }

    // The report from the cluster (through the Distributed table, from
    // either replica) equals the report from the union of the day files:
    // the page's series, spikes, today and every details row.
    let union = union_of_day_files(&sensors, &sensors[0].live.scratch.dir);
    let from_files = Server::start(&union, &[], &[]);
    let mut source = vec!["--clickhouse-cluster", CLUSTER];
    for url in &urls {
        source.extend(["--clickhouse", url]);
    }
    let from_cluster = Server::start_from(&source, &[]);
    for endpoint in ["/api/trends", "/api/spikes", "/api/today"] {
        assert_eq!(
            from_cluster.json(endpoint),
            from_files.json(endpoint),
            "{endpoint}: the cluster against the union of the day files"
        );
    }
    assert_eq!(
        from_cluster.json("/api/summary")["rows"],
        from_files.json("/api/summary")["rows"]
    );
    assert_eq!(
        all_details(&from_cluster),
        all_details(&from_files),
        "details"
    );
}

/// `tsusen ship --once` of a sensor's out-dir to `node`; its log.
fn ship_once(live: &Live, node: &Node) -> String {
    let out = std::process::Command::new(&live.bin)
        .args(["ship", "--once", "--sensor", "edge-1", "--clickhouse"])
        .arg(node.url())
        .arg("--dir")
        .arg(live.out_dir())
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ship --once: {}\n{log}", out.status);
    log
}

/// The shipper identifies a day file by its first bytes: only those it
/// shipped, as the torn line may be cut and written otherwise.
#[test]
fn a_torn_line_early_in_a_day_file_is_not_taken_for_a_rewrite() {
    let why = why_not_node();
    skip_unless!(why.is_empty(), &why);
    let live = live_test!(&[]);
    let node = Node::start_without_merges();
    let out = live.out_dir();
    let mut first = live.start("first", &[]);
    live::syns_from(&live.net.peer, TestNet::SENSOR_IP, &[2001]);
    assert_eq!(live::wait_rows(&out, 1, Duration::from_secs(10)), 1);
    first.kill9();
    // A kill in the middle of a write leaves a torn last line: make one,
    // inside the first bytes of the file (what identifies it to a shipper).
    let day_file = live::day_files(&out)
        .into_values()
        .next()
        .expect("a day file");
    let mut file = fs::OpenOptions::new().append(true).open(&day_file).unwrap();
    std::io::Write::write_all(&mut file, b"TCP 3 198.19.2").unwrap();
    assert!(fs::metadata(&day_file).unwrap().len() < 128);
    ship_once(&live, &node);
    assert_eq!(node.count("SELECT count() FROM tsusen.attempts"), 1);

    // The restart cuts the torn line; more rows follow it.
    let mut second = live.start("second", &[]);
    live::syns_from(&live.net.peer, TestNet::SENSOR_IP, &[2002, 2003]);
    assert_eq!(live::wait_rows(&out, 3, Duration::from_secs(10)), 3);
    second.terminate_cleanly();
    let log = ship_once(&live, &node);
    let rows = live::all_rows(&out).len() as u64;
    assert_eq!(
        (
            node.count("SELECT count() FROM tsusen.attempts"),
            node.count("SELECT count() FROM tsusen.attempts FINAL")
        ),
        (rows, rows),
        "every row stored once; the shipper said:\n{log}"
    );
}
