//! Mistakes a person can make get one clear line and a non-zero exit.

use std::process::{Command, Output};

use tsusen::testing::one_error_line;
use tsusen::{
    skip_unless,
    testing::{have_program, is_root},
};

fn tsusen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tsusen"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn unknown_interface_lists_the_real_ones() {
    let out = tsusen(&["run", "--iface", "nosuch0"]);
    let line = one_error_line(&out);
    assert!(line.contains("no interface named \"nosuch0\""), "{line}");
    assert!(line.contains("lo"), "{line}");
}

#[test]
fn without_privileges_it_names_the_capabilities() {
    if is_root() {
        // Drop to an unprivileged user to see what a non-root user sees.
        skip_unless!(have_program("setpriv"), "needs setpriv (util-linux)");
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_tsusen"))
            .args(["run", "--iface", "lo"])
            .output()
            .unwrap();
        let line = one_error_line(&out);
        assert!(line.contains("missing privileges"), "{line}");
        assert!(
            line.contains("CAP_BPF") && line.contains("CAP_NET_ADMIN"),
            "{line}"
        );
    } else {
        let line = one_error_line(&tsusen(&["run", "--iface", "lo"]));
        assert!(line.contains("missing privileges"), "{line}");
    }
}

#[test]
fn command_line_mistakes_are_one_line_too() {
    for args in [
        &["run", "--flush-interval", "0s"][..],
        &["run", "--flush-interval", "banana"],
        &["run", "--map-size", "12"],
        &["run", "--xdp-mode", "fast"],
        &["replay"],
        &[
            "report",
            "--dir",
            "/tmp",
            "--out",
            "/tmp/x.html",
            "--days",
            "0",
        ],
        &["frobnicate"],
    ] {
        let line = one_error_line(&tsusen(args));
        assert!(line.len() < 200, "{args:?}: {line}");
    }
    let line = one_error_line(&tsusen(&["run", "--flush-interval", "0s"]));
    assert!(line.contains("shorter than the 1s minimum"), "{line}");
}

/// `tsusen ARGS` under `prlimit` with a 2 GB address-space limit (a reader
/// that never stops fails fast instead of taking the machine's memory),
/// killed if it has not exited within 30 s (a FIFO blocks an open).
fn tsusen_bounded(args: &[&str]) -> Output {
    use std::{io::Read as _, process::Stdio, time::Duration};
    let mut child = Command::new("prlimit")
        .arg("--as=2000000000")
        .arg(env!("CARGO_BIN_EXE_tsusen"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("TSUSEN_AUTH")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?}: still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = Vec::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    Output {
        status,
        stdout: Vec::new(),
        stderr,
    }
}

/// `--config` and `--auth-file` are read only when they are regular files of
/// at most 1 MiB: /dev/zero, a FIFO and a 2 MiB file are one line each.
/// (`--iface nosuch0`: nothing could be attached even if the file were read.)
#[test]
fn endless_special_and_huge_files_are_refused() {
    skip_unless!(have_program("prlimit"), "needs prlimit (util-linux)");
    let scratch = std::env::temp_dir().join(tsusen::testing::unique_name("files"));
    std::fs::create_dir(&scratch).unwrap();
    let fifo = scratch.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let big = scratch.join("big.toml");
    std::fs::write(&big, format!("# {}\n", "x".repeat(2 << 20))).unwrap();
    let (fifo, big) = (fifo.to_str().unwrap(), big.to_str().unwrap());
    let dir = scratch.to_str().unwrap();
    for (file, why) in [
        ("/dev/zero", "not a regular file"),
        (fifo, "not a regular file"),
        (big, "larger than 1 MiB"),
    ] {
        let line = one_error_line(&tsusen_bounded(&[
            "run", "--iface", "nosuch0", "--config", file,
        ]));
        assert!(
            line.contains(&format!("cannot read config file {file}: {why}")),
            "{line}"
        );
        let line = one_error_line(&tsusen_bounded(&[
            "serve",
            "--dir",
            dir,
            "--listen",
            "127.0.0.1:0",
            "--auth-file",
            file,
        ]));
        assert!(
            line.contains(&format!("cannot read --auth-file {file}: {why}")),
            "{line}"
        );
    }
    std::fs::remove_dir_all(&scratch).unwrap();
}

#[test]
fn values_beyond_their_bounds_are_one_line() {
    let out = tsusen(&["run", "--iface", "nosuch0", "--map-size", "4294967295"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("4294967295") && stderr.contains("1024..=33554432"),
        "{stderr}"
    );
    for (flag, value, why) in [
        (
            "--flush-interval",
            "293000000000y",
            "longer than the 24h maximum",
        ),
        ("--flush-interval", "25h", "longer than the 24h maximum"),
    ] {
        let out = tsusen(&["run", "--iface", "nosuch0", flag, value]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(why), "{flag} {value}: {stderr}");
    }
    for (value, why) in [("0", "1..=3600"), ("99999999", "1..=3600")] {
        let out = tsusen(&["serve", "--dir", "/tmp", "--refresh", value]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(why), "--refresh {value}: {stderr}");
    }
}
