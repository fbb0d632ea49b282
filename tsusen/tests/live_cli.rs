//! `tsusen run` refusing bad input in a real namespace: one clear error
//! line, a non-zero exit, and no XDP program left on the interface. A second
//! sensor on an interface that already has one is refused unless --force.

use std::time::Duration;

use tsusen::{
    skip_unless,
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
    let why = live::why_not(&[]);
    skip_unless!(why.is_empty(), &why);
    let _serial = live::serial();
    let live = Live::new(TSUSEN);
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
    let why = live::why_not(&[]);
    skip_unless!(why.is_empty(), &why);
    let _serial = live::serial();
    let live = Live::new(TSUSEN);
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
    let why = live::why_not(&[]);
    skip_unless!(why.is_empty(), &why);
    let _serial = live::serial();
    let live = Live::new(TSUSEN);
    refused(&live, &["--local", "198.18.0.0/40"], &["198.18.0.0/40"]);
    refused(&live, &["--ignore-net", "192.0.2.0/33"], &["192.0.2.0/33"]);
    refused(&live, &["--ignore-port", "70000"], &["70000"]);
    refused(&live, &["--flush-interval", "0s"], &["0s"]);
    refused(&live, &["--flush-interval", "banana"], &["banana"]);
    refused(&live, &["--xdp-mode", "turbo"], &["turbo"]);
    refused(&live, &["--clock-start", "yesterday"], &["yesterday"]);
}

#[test]
fn a_second_sensor_on_the_same_interface_needs_force() {
    let why = live::why_not(&[]);
    skip_unless!(why.is_empty(), &why);
    let _serial = live::serial();
    let live = Live::new(TSUSEN);
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
    let why = live::why_not(&[]);
    skip_unless!(why.is_empty(), &why);
    let _serial = live::serial();
    let live = Live::new(TSUSEN);
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
    let why = live::why_not(&[]);
    skip_unless!(why.is_empty(), &why);
    let _serial = live::serial();
    let (a, b) = (Live::new(TSUSEN), Live::new(TSUSEN));
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
    let why = live::why_not(&[]);
    skip_unless!(why.is_empty(), &why);
    let _serial = live::serial();
    let live = Live::new(TSUSEN);
    // Too long to schedule: accepted by the parser, fatal only once the
    // sensor is attached (unless the settings refuse it first).
    refused(&live, &["--flush-interval", "293000000000y"], &[]);
    assert_eq!(
        live::names_in(&live.pin_dir()),
        Vec::<String>::new(),
        "pins left behind"
    );
}
