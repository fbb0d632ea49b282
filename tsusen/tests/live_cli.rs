//! `tsusen run` refusing bad input in a real namespace: one clear error
//! line, a non-zero exit, and no XDP program left on the interface. A second
//! sensor on an interface that already has one is refused unless --force.

use std::time::Duration;

use tsusen::{
    live_test,
    testing::{
        TestNet,
        live::{self, Daemon, Live},
    },
};

const TSUSEN: &str = env!("CARGO_BIN_EXE_tsusen");

/// Run the daemon with `extra` and expect it to refuse: exits non-zero
/// within 10 s with exactly one error line (`tsusen: error: ...`, or clap's
/// `error: ...` for a value clap rejects) mentioning each of `mentions`; no
/// `ready`; no XDP program left on the sensor's interface. Returns the line.
fn refused(live: &Live, extra: &[&str], mentions: &[&str]) -> String {
    let mut daemon = live.spawn("refused", extra);
    let Some(status) = daemon.wait_exit(Duration::from_secs(10)) else {
        panic!(
            "{extra:?}: still running after 10 s; log:\n{}",
            daemon.tail()
        );
    };
    assert!(!status.success(), "{extra:?}: exit {status}");
    let lines = daemon.lines();
    let errors: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("tsusen: error:") || l.starts_with("error:"))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "{extra:?}: one error line; log:\n{}",
        lines.join("\n")
    );
    let line = errors[0].clone();
    for word in mentions {
        assert!(
            line.contains(word),
            "{extra:?}: {line:?} should mention {word:?}"
        );
    }
    assert!(
        !lines.iter().any(|l| live::is_ready_line(l)),
        "{extra:?}: said ready before failing"
    );
    assert!(!live.xdp_attached(), "{extra:?}: XDP left attached");
    line
}

#[test]
fn a_nonexistent_interface_is_one_clear_error() {
    let live = live_test!(&[]);
    let mut args = live.args(&[]);
    // Replace the sensor's interface with one that does not exist.
    args[2] = "nosuch0".into();
    let mut daemon = Daemon::spawn("refused", TSUSEN, &live.net.sensor, &args);
    let status = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("exits within 10 s");
    assert!(!status.success());
    let errors = daemon.error_lines();
    assert_eq!(errors.len(), 1, "{}", daemon.tail());
    assert!(errors[0].contains("nosuch0"), "{}", errors[0]);
    assert!(!live.xdp_attached());
}

#[test]
fn an_unwritable_out_dir_fails_before_attaching() {
    let live = live_test!(&[]);
    let line = refused(
        &live,
        &["--out-dir", "/proc/tsusen-no-such-dir"],
        &["/proc/tsusen-no-such-dir"],
    );
    assert!(line.starts_with("tsusen: error:"), "{line}");
    // Nothing was pinned either: the check comes before loading anything.
    let pins = live.pin_dir();
    assert!(
        !pins.exists() || std::fs::read_dir(&pins).unwrap().next().is_none(),
        "pins left in {}",
        pins.display()
    );
}

#[test]
fn malformed_values_are_one_clear_error_each() {
    let live = live_test!(&[]);
    refused(&live, &["--local", "198.18.0.0/40"], &["198.18.0.0/40"]);
    refused(&live, &["--ignore-net", "192.0.2.0/33"], &["192.0.2.0/33"]);
    refused(&live, &["--ignore-port", "70000"], &["70000"]);
    refused(&live, &["--flush-interval", "0s"], &["0s"]);
    refused(&live, &["--flush-interval", "banana"], &["banana"]);
    refused(&live, &["--xdp-mode", "turbo"], &["turbo"]);
    refused(&live, &["--clock-start", "yesterday"], &["yesterday"]);
    // Values with no sane meaning: bounded, one line each.
    refused(
        &live,
        &["--flush-interval", "293000000000y"],
        &["293000000000y", "24h maximum"],
    );
    refused(
        &live,
        &["--map-size", "4294967295"],
        &["4294967295", "1024..=33554432"],
    );
    refused(&live, &["--out-dir", ""], &["--out-dir"]);
    // Metrics others can reach need credentials, as `tsusen serve` does.
    for addr in ["0.0.0.0:9339", ":9339", "[::]:9339"] {
        refused(
            &live,
            &["--metrics", addr],
            &[
                &format!("refusing to listen on {addr} (not loopback)"),
                "--metrics-auth-file",
            ],
        );
    }
}

/// `GET /metrics` from inside `ns`, with `headers`, waiting up to
/// `patience` for the answer: the status and the body.
fn scrape(
    ns: &tsusen::testing::Netns,
    addr: &str,
    headers: &str,
    patience: Duration,
) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    live::in_netns(ns, || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(patience)).unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {response:?}"));
        (status, response)
    })
}

/// `--metrics localhost:PORT` works; `--metrics :PORT` (every address)
/// works with `--metrics-auth-file` and then requires the credentials.
#[test]
fn metrics_take_host_names_and_every_address_with_credentials() {
    let live = live_test!(&[]);
    let mut daemon = live.start("localhost", &["--metrics", "localhost:9478"]);
    let (status, body) = scrape(
        &live.net.sensor,
        "127.0.0.1:9478",
        "",
        Duration::from_secs(10),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("tsusen_packets_total"), "{body}");
    daemon.terminate_cleanly();

    let auth = live.scratch.path("metrics-auth");
    std::fs::write(&auth, "scrape-token-1\n").unwrap();
    let auth = auth.display().to_string();
    let mut daemon = live.start(
        "every-address",
        &["--metrics", ":9479", "--metrics-auth-file", &auth],
    );
    let target = format!("{}:9479", TestNet::SENSOR_IP);
    let (status, body) = scrape(&live.net.peer, &target, "", Duration::from_secs(10));
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("tsusen_packets_total"), "{body}");
    let (status, body) = scrape(
        &live.net.peer,
        &target,
        "Authorization: Bearer scrape-token-1\r\n",
        Duration::from_secs(10),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("tsusen_packets_total"), "{body}");
    daemon.terminate_cleanly();
}

/// Sockets `pid` holds open.
fn sockets_of(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// With 128 descriptors, /metrics holds at most 32 connections (a quarter);
/// a connection that never finishes its headers is closed after the 10 s
/// header timeout, idle ones too; the sensor keeps recording meanwhile, and a
/// scrape queued behind the idle connections is then answered.
#[test]
fn metrics_connections_are_capped_and_idle_ones_time_out() {
    let live = live_test!(&["prlimit"]);
    let mut args = vec!["--nofile=128:128".to_owned(), TSUSEN.to_owned()];
    args.extend(live.args(&["--metrics", "127.0.0.1:9480"]));
    let mut daemon = Daemon::spawn("capped", "prlimit", &live.net.sensor, &args);
    daemon.wait_ready();
    let baseline = sockets_of(daemon.pid());
    let addr: std::net::SocketAddr = "127.0.0.1:9480".parse().unwrap();
    let (mut half_open, idle) = live::in_netns(&live.net.sensor, || {
        use std::io::Write as _;
        let mut half_open = std::net::TcpStream::connect(addr).unwrap();
        half_open
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .unwrap();
        let idle: Vec<std::net::TcpStream> = (0..60)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        (half_open, idle)
    });
    // The sensor records while the connections are held.
    live::syns_from(&live.net.peer, TestNet::SENSOR_IP, &[4243]);
    assert_eq!(
        live::wait_rows(&live.out_dir(), 1, Duration::from_secs(20)),
        1
    );
    // Closed by the daemon (EOF or reset), not by this read's own 60 s limit.
    half_open
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = [0u8; 512];
    match std::io::Read::read(&mut half_open, &mut buf) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the half-open connection stayed open: {e}"),
    }
    let held = sockets_of(daemon.pid());
    assert!(
        held <= baseline + 32,
        "{held} sockets (baseline {baseline}): connections beyond the cap"
    );
    let (status, body) = scrape(
        &live.net.sensor,
        "127.0.0.1:9480",
        "",
        Duration::from_secs(120),
    );
    assert_eq!(status, 200, "{body}");
    drop(idle);
    daemon.terminate_cleanly();
}

#[test]
fn a_second_sensor_on_the_same_interface_needs_force() {
    let live = live_test!(&[]);
    let mut first = live.start("first", &[]);

    let other_pins = live.scratch.dir.join("bpf/other-pins");
    let other_out = live.scratch.path("other-out");
    std::fs::create_dir(&other_out).unwrap();
    let (pins_arg, out_arg) = (
        other_pins.display().to_string(),
        other_out.display().to_string(),
    );
    let second_args = [
        "--pin-dir",
        pins_arg.as_str(),
        "--out-dir",
        out_arg.as_str(),
    ];
    let mut second = live.spawn("second", &second_args);
    let status = second
        .wait_exit(Duration::from_secs(10))
        .expect("the second sensor exits");
    assert!(!status.success());
    let errors = second.error_lines();
    assert_eq!(errors.len(), 1, "{}", second.tail());
    assert!(
        errors[0].contains("already attached") && errors[0].contains("--force"),
        "{}",
        errors[0]
    );
    assert!(live.xdp_attached(), "the first sensor's program stays");
    assert!(
        first.wait_exit(Duration::ZERO).is_none(),
        "the first sensor keeps running"
    );

    // With --force the second replaces the first's program and records.
    let forced: Vec<&str> = second_args.iter().copied().chain(["--force"]).collect();
    let mut second = live.start("second-forced", &forced);
    // The first sees its program gone and says so at its next flushes.
    let lost = first.wait_line_from(0, Duration::from_secs(10), |l| {
        l.contains("ERROR") && l.contains(&live.net.sensor_if) && l.contains("no longer attached")
    });
    assert!(
        lost.is_some(),
        "the first sensor reports that its program was replaced; log:\n{}",
        first.tail()
    );
    live::syns_from(&live.net.peer, TestNet::SENSOR_IP, &[4242]);
    assert_eq!(live::wait_rows(&other_out, 1, Duration::from_secs(10)), 1);
    second.terminate_cleanly();
    let expected = [live::tuple(
        "TCP",
        Some(4242),
        TestNet::PEER_IP,
        TestNet::SENSOR_IP,
    )]
    .into();
    live::assert_tuples(&live::all_rows(&other_out), &expected, "forced sensor");
    assert!(
        !live.xdp_attached(),
        "nothing attached once the sensor that replaced the first has stopped"
    );
    first.kill9();
}

#[test]
fn a_second_sensor_on_the_same_pin_dir_or_out_dir_is_refused_naming_the_first() {
    let live = live_test!(&[]);
    let mut first = live.start("first", &[]);
    let holder = format!("pid {}", first.pid());

    let other_out = live.scratch.path("other-out");
    std::fs::create_dir(&other_out).unwrap();
    let other_pins = live.scratch.dir.join("bpf/other-pins");
    let (out_arg, pins_arg) = (
        other_out.display().to_string(),
        other_pins.display().to_string(),
    );
    let pin_dir = live.pin_dir().display().to_string();
    let out_dir = live.out_dir().display().to_string();
    for (label, extra, shared) in [
        ("same-pins", ["--out-dir", out_arg.as_str()], &pin_dir),
        ("same-out", ["--pin-dir", pins_arg.as_str()], &out_dir),
    ] {
        let mut second = live.spawn(label, &extra);
        let status = second
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("[{label}] still running; log:\n{}", second.tail()));
        assert!(!status.success(), "[{label}] exit {status}");
        let errors = second.error_lines();
        assert_eq!(errors.len(), 1, "[{label}] {}", second.tail());
        assert!(
            errors[0].contains(&holder) && errors[0].contains(shared.as_str()),
            "[{label}] the error names the directory and the holder ({holder}): {}",
            errors[0]
        );
    }
    assert!(
        first.wait_exit(Duration::ZERO).is_none(),
        "the first sensor keeps running"
    );
    live::syns_from(&live.net.peer, TestNet::SENSOR_IP, &[4343]);
    assert_eq!(
        live::wait_rows(&live.out_dir(), 1, Duration::from_secs(10)),
        1
    );
    first.terminate_cleanly();
    assert!(!live.xdp_attached());
}

#[test]
fn force_leaves_another_namespaces_sensor_alone() {
    let a = live_test!(&[]);
    let b = Live::new(TSUSEN);
    // Fresh namespaces number their veths alike: what made --force take
    // the other namespace's interface.
    assert_eq!(
        a.net.sensor_ifindex(),
        b.net.sensor_ifindex(),
        "the two sensor interfaces share an ifindex"
    );
    let mut first = a.start("a", &[]);
    let mut second = b.start("b-forced", &["--force"]);
    assert!(a.xdp_attached(), "the other namespace's program stays");
    assert!(b.xdp_attached());
    let sensor = TestNet::SENSOR_IP;
    live::syns_from(&a.net.peer, sensor, &[5001]);
    live::syns_from(&b.net.peer, sensor, &[5002]);
    assert_eq!(live::wait_rows(&a.out_dir(), 1, Duration::from_secs(10)), 1);
    assert_eq!(live::wait_rows(&b.out_dir(), 1, Duration::from_secs(10)), 1);
    first.wait_two_flushes(Duration::from_secs(10));
    assert!(
        !first
            .lines()
            .iter()
            .any(|l| l.contains("no longer attached")),
        "a false alarm; log:\n{}",
        first.tail()
    );
    second.terminate_cleanly();
    first.terminate_cleanly();
    let peer = TestNet::PEER_IP;
    for (live, port) in [(&a, 5001), (&b, 5002)] {
        let expected = [live::tuple("TCP", Some(port), peer, sensor)].into();
        live::assert_tuples(&live::all_rows(&live.out_dir()), &expected, "each sensor");
    }
}

#[test]
fn an_error_after_attaching_leaves_nothing_behind() {
    let live = live_test!(&[]);
    // Too long to schedule: accepted by the parser, fatal only once the
    // sensor is attached (unless the settings refuse it first).
    refused(&live, &["--flush-interval", "293000000000y"], &[]);
    assert_eq!(
        live::names_in(&live.pin_dir()),
        Vec::<String>::new(),
        "pins left behind"
    );
}
