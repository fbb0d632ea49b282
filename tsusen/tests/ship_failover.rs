//! `tsusen ship` given several replicas: one that cannot be reached is
//! skipped for the next with one log line (not one per request), and one
//! that answers "I am unhealthy" (here TOO_MANY_PARTS; read-only tables
//! and ZooKeeper errors alike) is left for the next too, instead of being retried forever; the rows land
//! once on the replica that works.

mod ship_support;

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use ship_support::{counts, rows_in_files, rows_stored, ship_command, tempdir, url};
use tsusen::{
    clickhouse::schema::{COLUMNS, ORDER_BY},
    report::testdata,
    skip_unless,
    testing::{clickhouse, clickhouse::Node},
};

/// `tsusen ship --once` of `dir` as `sensor` into `table`, given `urls` in
/// that order; its stderr once it exited (successfully: a shipper stuck on
/// one replica fails the test at the deadline).
fn ship_once_to(node: &Node, urls: &[String], dir: &Path, sensor: &str, table: &str) -> String {
    let dir = dir.display().to_string();
    let mut args = vec![
        "--dir",
        &dir,
        "--sensor",
        sensor,
        "--clickhouse-table",
        table,
    ];
    for url in urls {
        args.extend(["--clickhouse", url]);
    }
    args.push("--once");
    let mut child = KillOnDrop(
        ship_command(node, &args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = child.0.stderr.take().unwrap();
    let reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    // A deadline for a failing test only: a shipper retrying one replica
    // forever never exits.
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.0.kill();
            let _ = child.0.wait();
            panic!(
                "tsusen ship --once still running after 90 s:\n{}",
                reader.join().unwrap()
            );
        }
        thread::sleep(Duration::from_millis(100));
    };
    let log = reader.join().unwrap();
    eprintln!("{log}");
    assert!(status.success(), "{status:?}");
    log
}

/// Assert that `log` has one line about leaving the replica at `base` (its
/// URL without the user, as log lines show it), and that it says `why`.
fn assert_left_once(log: &str, base: &str, why: &str) {
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(base)).collect();
    assert_eq!(lines.len(), 1, "one line for the replica {base}:\n{log}");
    assert!(
        lines[0].contains("trying the next replica") && lines[0].contains(why),
        "{log}"
    );
}

#[test]
fn a_replica_that_cannot_be_reached_is_logged_once_and_skipped() {
    let why = clickhouse::why_not_node();
    skip_unless!(why.is_empty(), &why);
    let node = Node::start();
    let dir = tempdir("failover-down");
    // Several files: many requests, each of which would try the dead one first.
    testdata::generate(&dir, &testdata::Spec::bench(4, 2_000)).unwrap();
    let expected = rows_in_files(&dir, "f");
    let n = expected.len() as u64;
    // A port nothing listens on (bound, then closed).
    let dead = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dead_url = format!("http://default@127.0.0.1:{dead}");
    let log = ship_once_to(&node, &[dead_url, url(&node)], &dir, "f", "t.f");
    assert_left_once(
        &log,
        &format!("http://127.0.0.1:{dead}/"),
        "Connection refused",
    );
    let query = |sql: &str| node.query(sql);
    assert_eq!(counts(query, "t.f"), (n, n, n));
}

/// The columns as a CREATE/ATTACH statement lists them.
fn columns_sql() -> String {
    COLUMNS
        .iter()
        .map(|(name, ty)| format!("{name} {ty}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn a_replica_refusing_inserts_is_left_for_the_next_and_rows_land_once() {
    let why = clickhouse::why_not_node();
    skip_unless!(why.is_empty(), &why);
    let (broken, healthy) = (Node::start(), Node::start());
    let table = |settings: &str| {
        format!(
            "CREATE TABLE t.r ({}) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(day) \
             ORDER BY {ORDER_BY}{settings}",
            columns_sql()
        )
    };
    for node in [&broken, &healthy] {
        node.query("CREATE DATABASE t");
    }
    healthy.query(&table(""));
    // One part is already "too many" on this server: every insert gets
    // TOO_MANY_PARTS (252), as from a replica whose merges fell behind.
    broken.query(&table(
        " SETTINGS parts_to_delay_insert = 1, parts_to_throw_insert = 1",
    ));
    let seed = b"2026-11-24\tseed\t6\t1\t0000000000000000\t0000000000000000\t2026-11-24 00:00:00\n";
    broken
        .insert("INSERT INTO t.r FORMAT TabSeparated", seed)
        .unwrap();
    let refused = broken
        .insert("INSERT INTO t.r FORMAT TabSeparated", seed)
        .unwrap_err();
    assert!(refused.contains("Code: 252"), "{refused}");

    let dir = tempdir("failover-refusing");
    testdata::generate(&dir, &testdata::Spec::bench(3, 2_000)).unwrap();
    let expected = rows_in_files(&dir, "r");
    let n = expected.len() as u64;
    // The broken server first: every batch is offered to it first.
    let log = ship_once_to(&healthy, &[url(&broken), url(&healthy)], &dir, "r", "t.r");
    assert_left_once(&log, &format!("{}/", broken.url()), "Code: 252");
    let query = |sql: &str| healthy.query(sql);
    assert_eq!(counts(query, "t.r"), (n, n, n));
    assert_eq!(rows_stored(query, "t.r", "r"), expected);
    assert_eq!(broken.count("SELECT count() FROM t.r"), 1);
}

/// A child killed (`kill -9`) and reaped when the test ends, failed or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
