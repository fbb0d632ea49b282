//! SIGHUP on the live sensor: it keeps running and recording, a day file
//! moved away (logrotate) starts afresh with its header, and a changed
//! `ignore-port` in the config file applies at once; a key that takes a
//! restart is warned about, a file that no longer parses changes nothing.

use std::{collections::BTreeSet, fs, path::Path, time::Duration};

use tsusen::{
    live_test,
    testing::{
        TestNet,
        live::{self, Daemon, HEADER, Live},
    },
};

const WAIT: Duration = Duration::from_secs(15);

/// SIGHUP, and wait for the reload's last line (one satisfying `done`).
fn hangup(daemon: &Daemon, done: impl Fn(&str) -> bool) -> Vec<String> {
    let from = daemon.lines().len();
    daemon.signal(libc::SIGHUP);
    let last = daemon.wait_line_from(from, WAIT, |l| done(live::message(l)));
    assert!(
        last.is_some(),
        "no end of the reload within {WAIT:?}; log:\n{}",
        daemon.tail()
    );
    daemon.lines()[from..].to_vec()
}

/// SYNs from the peer to the sensor's `ports`, then two flushes, so every
/// row they make is on disk.
fn syns(live: &Live, daemon: &Daemon, ports: &[u16]) {
    live::syns_from(&live.net.peer, TestNet::SENSOR_IP, ports);
    daemon.wait_two_flushes(WAIT);
}

/// The TCP ports in the day file at `path`.
fn ports(path: &Path) -> BTreeSet<u16> {
    live::read_day_file(path)
        .iter()
        .filter(|row| row.proto == "TCP")
        .filter_map(|row| row.port)
        .collect()
}

#[test]
fn sighup_reopens_day_files_and_applies_a_new_ignore_port() {
    let live = live_test!(&[]);
    let config = live.scratch.path("tsusen.toml");
    fs::write(&config, "ignore-port = [7000]\n").unwrap();
    let mut daemon = live.start("sensor", &["--config", config.to_str().unwrap()]);
    syns(&live, &daemon, &[7000, 7001]);
    let (_, day_file) = live::day_files(&live.out_dir())
        .pop_last()
        .expect("a day file");
    assert_eq!(ports(&day_file), BTreeSet::from([7001]));

    // A SIGHUP with nothing changed: still running, still recording, and
    // the day file read again gets no row twice (read_day_file checks).
    let lines = hangup(&daemon, |l| l.starts_with("reload: nothing to apply"));
    assert!(lines.iter().all(|l| !l.contains("WARN")), "{lines:?}");
    syns(&live, &daemon, &[7001, 7002]);
    assert_eq!(ports(&day_file), BTreeSet::from([7001, 7002]));

    // logrotate moves the file away: after the SIGHUP the next rows start
    // a new file, with its header (before, rows were appended after a hole
    // the size of the old file, with no header).
    fs::rename(&day_file, day_file.with_extension("csv.1")).unwrap();
    hangup(&daemon, |l| l.starts_with("reload: nothing to apply"));
    syns(&live, &daemon, &[7003]);
    let text = fs::read_to_string(&day_file).unwrap();
    assert!(text.starts_with(&format!("{HEADER}\n")), "{text:?}");
    assert_eq!(ports(&day_file), BTreeSet::from([7003]));

    // A new ignored port applies at once; map-size takes a restart.
    fs::write(&config, "ignore-port = [7000, 7004]\nmap-size = 4096\n").unwrap();
    let lines = hangup(&daemon, |l| l.starts_with("reload: ignore-port:"));
    assert!(
        lines
            .iter()
            .any(|l| live::message(l) == "reload: ignore-port: 7000 -> 7000, 7004"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("WARN")
            && l.contains("map-size changed from 1048576 to 4096, which takes a restart")),
        "{lines:?}"
    );
    syns(&live, &daemon, &[7004, 7005]);
    assert_eq!(ports(&day_file), BTreeSet::from([7003, 7005]));

    // A file that no longer parses: an error, and the sensor runs on as it was.
    fs::write(&config, "ignore-port = [\"seven\"]\n").unwrap();
    let lines = hangup(&daemon, |l| {
        l.contains("running on with the settings as they were")
    });
    assert!(lines.iter().any(|l| l.contains("ERROR")), "{lines:?}");
    syns(&live, &daemon, &[7004, 7006]);
    assert_eq!(ports(&day_file), BTreeSet::from([7003, 7005, 7006]));

    daemon.terminate_cleanly();
    assert!(!live.xdp_attached(), "XDP left attached after SIGTERM");
}
