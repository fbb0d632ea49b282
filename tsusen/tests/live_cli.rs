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
