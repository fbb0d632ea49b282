//! `tsusen run --clickhouse` with the live sensor: real SYNs in a test
//! network, a real ClickHouse in the sensor's namespace (where the daemon
//! runs, so `127.0.0.1` is the same for both). The rows of the day files
//! land in ClickHouse exactly once; a wrong password, or ClickHouse not yet
//! there, is one clear line while recording goes on; the rows arrive once
//! ClickHouse does. At SIGTERM with ClickHouse hanging, the sensor drains
//! and detaches first, shipping gets a bounded chance, and the rows it
//! could not ship go at the next start.

mod ship_support;

use std::time::Duration;

use ship_support::{counts, rows_in_files, rows_stored, ship_command, tempdir, wait_count};
use tsusen::{
    live_test, skip_unless,
    testing::{
        TestNet,
        clickhouse::{self, Node},
        live::{self, Live, in_netns},
    },
};

const METRICS: &str = "127.0.0.1:9478";
const TIMEOUT: Duration = Duration::from_secs(60);

/// A query run from inside the sensor's namespace.
fn query<'a>(live: &'a Live, node: &'a Node) -> impl Fn(&str) -> String + Copy + 'a {
    move |sql: &str| in_netns(&live.net.sensor, || node.query(sql))
}

/// Wait until `table` holds `n` rows, asking from the sensor's namespace.
fn wait_stored(live: &Live, node: &Node, table: &str, n: u64) -> u64 {
    wait_count(
        |sql: &str| in_netns(&live.net.sensor, || node.try_query(sql)),
        table,
        n,
    )
}

fn url(node: &Node) -> String {
    format!("http://default@127.0.0.1:{}", node.ports.http)
}

#[test]
fn a_live_sensors_rows_land_in_clickhouse_exactly_once() {
    let why = clickhouse::why_not_node();
    skip_unless!(why.is_empty(), &why);
    let live = live_test!(&[]);
    let node = in_netns(&live.net.sensor, Node::start);
    let url = url(&node);
    let mut daemon = live.start(
        "sensor",
        &[
            "--clickhouse",
            &url,
            "--sensor",
            "edge-1",
            "--clickhouse-table",
            "fleet.attempts",
            "--metrics",
            METRICS,
        ],
    );
    let ports = [22, 80, 443, 3389, 5900, 8080];
    live::syns_from(&live.net.peer, TestNet::SENSOR_IP, &ports);
    let out_dir = live.out_dir();
    assert_eq!(live::wait_rows(&out_dir, ports.len(), TIMEOUT), ports.len());
    live::syns_from(&live.net.peer, TestNet::SENSOR_IP, &[25, 110]);
    assert_eq!(
        live::wait_rows(&out_dir, ports.len() + 2, TIMEOUT),
        ports.len() + 2
    );
    let n = (ports.len() + 2) as u64;
    assert_eq!(wait_stored(&live, &node, "fleet.attempts", n), n);
    daemon.terminate_cleanly();

    let expected = rows_in_files(&out_dir, "edge-1");
    assert_eq!(expected.len() as u64, n);
    let query = query(&live, &node);
    assert_eq!(rows_stored(query, "fleet.attempts", "edge-1"), expected);
    assert_eq!(counts(query, "fleet.attempts"), (n, n, n));
}

#[test]
fn a_wrong_password_is_one_line_and_recording_goes_on() {
    let why = clickhouse::why_not_node();
    skip_unless!(why.is_empty(), &why);
    let live = live_test!(&[]);
    let node = in_netns(&live.net.sensor, || Node::start_with_password("right"));
    let url = url(&node);
    let args = live.args(&["--clickhouse", &url, "--metrics", METRICS]);
    let mut daemon = live::Daemon::spawn_with_env(
        "sensor",
        &live.bin,
        &live.net.sensor,
        &args,
        &[("TSUSEN_CLICKHOUSE_PASSWORD", "wrong")],
    );
    daemon.wait_ready();
    live::syns_from(&live.net.peer, TestNet::SENSOR_IP, &[22, 80, 443]);
    assert_eq!(live::wait_rows(&live.out_dir(), 3, TIMEOUT), 3);
    let flushes = daemon.flushes().len();
    daemon.wait_flush_after(flushes + 2, TIMEOUT);
    let errors: Vec<String> = daemon
        .lines()
        .into_iter()
        .filter(|l| l.contains("shipping to ClickHouse"))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("Wrong password")
            && errors[0].contains("TSUSEN_CLICKHOUSE_PASSWORD")
            && errors[0].contains("recording goes on"),
        "{}",
        errors[0]
    );
    assert!(!daemon.lines().iter().any(|l| l.contains("wrong")));
    let metrics = live::fetch_metrics(&live.net.sensor, METRICS).unwrap();
    assert!(
        live::metric(&metrics, "tsusen_ship_errors_total{cause=\"auth\"}")
            .is_some_and(|v| v >= 1.0),
        "{metrics}"
    );
    assert!(
        live::metric(&metrics, "tsusen_ship_rows_behind").is_some_and(|v| v >= 3.0),
        "{metrics}"
    );
    daemon.terminate_cleanly();
}

/// ClickHouse comes after the sensor (its address given in the config
/// file): the rows wait in the day files and all arrive.
#[test]
fn clickhouse_started_after_the_sensor_gets_every_row() {
    let why = clickhouse::why_not_node();
    skip_unless!(why.is_empty(), &why);
    let live = live_test!(&[]);
    let mut node = in_netns(&live.net.sensor, Node::start);
    // Down before the sensor starts: its ports and data stay for later.
    node.kill9();
    let config = tempdir("late-config").join("tsusen.toml");
    std::fs::write(
        &config,
        format!("clickhouse = \"{}\"\nsensor = \"late\"\n", url(&node)),
    )
    .unwrap();
    let config_arg = config.display().to_string();
    let mut daemon = live.start("sensor", &["--config", &config_arg, "--metrics", METRICS]);
    live::syns_from(&live.net.peer, TestNet::SENSOR_IP, &[21, 22, 23, 25]);
    let out_dir = live.out_dir();
    assert_eq!(live::wait_rows(&out_dir, 4, TIMEOUT), 4);
    assert!(
        daemon
            .wait_line_from(0, TIMEOUT, |l| l.contains("Connection refused")
                && l.contains("recording goes on"))
            .is_some(),
        "{}",
        daemon.tail()
    );

    in_netns(&live.net.sensor, || node.restart());
    assert_eq!(wait_stored(&live, &node, "tsusen.attempts", 4), 4);
    // The shipper counts a batch after ClickHouse acknowledged it and the
    // cursor moved: a moment after the rows are visible there.
    let deadline = std::time::Instant::now() + TIMEOUT;
    let metrics = loop {
        let metrics = live::fetch_metrics(&live.net.sensor, METRICS).unwrap();
        if live::metric(&metrics, "tsusen_ship_rows_total").is_some_and(|v| v >= 4.0)
            || std::time::Instant::now() > deadline
        {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        live::metric(&metrics, "tsusen_ship_rows_total").is_some_and(|v| v >= 4.0),
        "{metrics}"
    );
    // One URL: nothing to move on to, but the series is there from the start.
    let failovers = format!(
        "tsusen_ship_failovers_total{{url=\"http://127.0.0.1:{}/\"}} 0",
        node.ports.http
    );
    assert!(metrics.contains(&failovers), "{metrics}");
    daemon.terminate_cleanly();
    let query = query(&live, &node);
    assert_eq!(
        rows_stored(query, "tsusen.attempts", "late"),
        rows_in_files(&out_dir, "late")
    );
    assert_eq!(counts(query, "tsusen.attempts"), (4, 4, 4));
}

#[test]
fn at_sigterm_the_sensor_drains_first_and_shipping_gets_a_bounded_chance() {
    let why = clickhouse::why_not_node();
    skip_unless!(why.is_empty(), &why);
    let live = live_test!(&[]);
    let node = in_netns(&live.net.sensor, Node::start);
    let url = url(&node);
    let mut daemon = live.start("sensor", &["--clickhouse", &url, "--sensor", "stop-1"]);
    live::syns_from(&live.net.peer, TestNet::SENSOR_IP, &[22, 80, 443]);
    let out_dir = live.out_dir();
    assert_eq!(live::wait_rows(&out_dir, 3, TIMEOUT), 3);
    assert_eq!(wait_stored(&live, &node, "tsusen.attempts", 3), 3);

    // ClickHouse hangs with the next batch in flight.
    node.freeze();
    live::syns_from(&live.net.peer, TestNet::SENSOR_IP, &[25, 110]);
    assert_eq!(live::wait_rows(&out_dir, 5, TIMEOUT), 5);
    let deadline = std::time::Instant::now() + TIMEOUT;
    while in_netns(&live.net.sensor, || node.requests_waiting()) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no insert reached the server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon.terminate_cleanly();
    let lines = daemon.lines();
    let at = |text: &str| {
        lines
            .iter()
            .position(|l| l.contains(text))
            .unwrap_or_else(|| panic!("no line with {text:?}:\n{}", lines.join("\n")))
    };
    // The sensor's own drains and detach did not wait for ClickHouse.
    assert!(at("detached and unpinned") < at("the batch in flight is abandoned"));
    in_netns(&live.net.sensor, || node.thaw());
    // The abandoned insert is still in the server's socket: let it run (or
    // fail) before the restart, which would otherwise race it (the
    // ReplacingMergeTree would fold the repeat, but only at a merge).
    let deadline = std::time::Instant::now() + TIMEOUT;
    while in_netns(&live.net.sensor, || node.requests_waiting()) > 0
        || query(&live, &node)("SELECT count() FROM system.processes WHERE query LIKE 'INSERT%'")
            .trim()
            != "0"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned insert never ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The next start (here `tsusen ship --once`) sends what was not shipped.
    let dir = out_dir.display().to_string();
    let out = in_netns(&live.net.sensor, || {
        ship_command(
            &node,
            &[
                "--dir",
                &dir,
                "--clickhouse",
                &url,
                "--sensor",
                "stop-1",
                "--once",
            ],
        )
        .output()
        .unwrap()
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let query = query(&live, &node);
    assert_eq!(
        rows_stored(query, "tsusen.attempts", "stop-1"),
        rows_in_files(&out_dir, "stop-1")
    );
    assert_eq!(counts(query, "tsusen.attempts"), (5, 5, 5));
}
