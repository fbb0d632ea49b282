//! Mistakes a person can make get one clear `tsusen: error:` line and a
//! non-zero exit: 2 for what the user told us (the command line, the config
//! file, the host set up for it), 1 for a failure at run time. Under
//! journald the lines carry syslog priorities.

use std::{
    fs,
    net::TcpListener,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use tsusen::testing::one_error_line;
use tsusen::{
    skip_unless,
    testing::{Netns, have_program, is_root, live, unique_name},
};

fn tsusen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tsusen"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap()
}

/// The exit status of a command that must have failed with one error line.
fn exit_code(out: &Output) -> i32 {
    one_error_line(out);
    out.status.code().expect("exited, not killed")
}

/// A scratch directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique_name("cli"));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
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
fn command_line_mistakes_are_one_error_line_and_exit_2() {
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
        let out = tsusen(args);
        let line = one_error_line(&out);
        assert!(line.len() < 200, "{args:?}: {line}");
        assert_eq!(exit_code(&out), 2, "{args:?}: {line}");
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

#[test]
fn usage_errors_keep_what_clap_says_beyond_the_first_line() {
    // A missing argument: its name is on the lines after the first.
    let out = tsusen(&["replay"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(exit_code(&out), 2, "{stderr}");
    assert!(
        stderr.contains("tsusen: error: the following required arguments were not provided"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--out-dir <DIR>") && stderr.contains("<PCAP>"),
        "{stderr}"
    );
    assert!(stderr.contains("Usage: tsusen replay"), "{stderr}");
    // A misspelt flag and subcommand: the tip says what was meant.
    for (args, tip) in [
        (
            &["run", "--flush-intervl", "3s"][..],
            "a similar argument exists: '--flush-interval'",
        ),
        (&["runn"], "a similar subcommand exists: 'run'"),
    ] {
        let out = tsusen(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(exit_code(&out), 2, "{args:?}: {stderr}");
        assert!(stderr.contains(tip), "{args:?}: {stderr}");
    }
}

#[test]
fn config_file_mistakes_exit_2() {
    let dir = TempDir::new();
    let config = dir.path("tsusen.toml");
    for text in [
        "flush-intervall = \"1s\"\n",
        "ignore-port = [\"http\"]\n",
        "map-size = 12\n",
    ] {
        fs::write(&config, text).unwrap();
        let out = tsusen(&["run", "--iface", "lo", "--config", config.to_str().unwrap()]);
        assert_eq!(exit_code(&out), 2, "{text}: {}", one_error_line(&out));
    }
    let out = tsusen(&[
        "run",
        "--config",
        dir.path("missing.toml").to_str().unwrap(),
    ]);
    assert_eq!(exit_code(&out), 2, "{}", one_error_line(&out));
}

#[test]
fn an_unknown_interface_exits_2() {
    assert_eq!(exit_code(&tsusen(&["run", "--iface", "nosuch0"])), 2);
}

#[test]
fn missing_privileges_exit_2() {
    let out = if is_root() {
        skip_unless!(have_program("setpriv"), "needs setpriv (util-linux)");
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_tsusen"))
            .args(["run", "--iface", "lo"])
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap()
    } else {
        tsusen(&["run", "--iface", "lo"])
    };
    assert_eq!(exit_code(&out), 2, "{}", one_error_line(&out));
}

/// `tsusen run` on the loopback of a namespace of its own, with a pin
/// directory that is not on bpffs: whatever happens, it stops before
/// attaching anything.
fn run_in_netns(ns: &Netns, dir: &Path, extra: &[&str]) -> Output {
    ns.command(env!("CARGO_BIN_EXE_tsusen"))
        .args(["run", "--iface", "lo", "--pin-dir"])
        .arg(dir.join("not-bpffs"))
        .args(extra)
        .env("RUST_LOG", "warn")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn an_out_dir_the_file_system_refuses_exits_2_and_a_full_disk_1() {
    let why = live::why_not(&[]);
    skip_unless!(why.is_empty(), &why);
    let mut scratch = live::Scratch::new();
    let ns = Netns::new("cli");
    // Refused for good: a path through a regular file.
    let file = scratch.path("a-file");
    fs::write(&file, "x").unwrap();
    let out = run_in_netns(
        &ns,
        &scratch.dir,
        &["--out-dir", file.join("out").to_str().unwrap()],
    );
    let line = one_error_line(&out);
    assert_eq!(exit_code(&out), 2, "{line}");
    // A full disk may be freed: worth a restart.
    let full = scratch.mount_tmpfs("full", "8k");
    let filler = fs::write(full.join("filler"), vec![0u8; 64 * 1024]);
    assert!(filler.is_err(), "the 8k tmpfs filled up");
    let out = run_in_netns(&ns, &scratch.dir, &["--out-dir", full.to_str().unwrap()]);
    let line = one_error_line(&out);
    assert!(line.contains("not writable"), "{line}");
    assert_eq!(exit_code(&out), 1, "{line}");
}

#[test]
fn a_metrics_port_in_use_exits_1() {
    let why = live::why_not(&[]);
    skip_unless!(why.is_empty(), &why);
    let dir = TempDir::new();
    let ns = Netns::new("cli");
    // Hold the port inside the namespace, where the daemon will try it.
    let taken = live::in_netns(&ns, || TcpListener::bind("127.0.0.1:0").unwrap());
    let addr = taken.local_addr().unwrap().to_string();
    let out = run_in_netns(
        &ns,
        &dir.0,
        &[
            "--out-dir",
            dir.path("out").to_str().unwrap(),
            "--metrics",
            &addr,
        ],
    );
    let line = one_error_line(&out);
    assert!(line.contains("cannot listen on --metrics"), "{line}");
    assert_eq!(exit_code(&out), 1, "{line}");
}

#[test]
fn no_default_route_yet_exits_1() {
    let why = live::why_not(&[]);
    skip_unless!(why.is_empty(), &why);
    // A namespace of its own has no route at all (as a host at boot
    // before its network is up): a restart later may find one.
    let ns = Netns::new("cli");
    let out = ns
        .command(env!("CARGO_BIN_EXE_tsusen"))
        .args(["run", "--out-dir", "/nonexistent/never-reached"])
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    let line = one_error_line(&out);
    assert!(line.contains("no default route"), "{line}");
    assert_eq!(exit_code(&out), 1, "{line}");
}

/// Run `tsusen args` with stderr going to a file; with `journal`, tell it
/// (JOURNAL_STREAM) that this file is the journal's stream.
fn stderr_lines(args: &[&str], journal: bool) -> Vec<String> {
    let dir = TempDir::new();
    let path = dir.path("stderr");
    let stderr = fs::File::create(&path).unwrap();
    let meta = stderr.metadata().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsusen"));
    cmd.args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(stderr);
    if journal {
        cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    } else {
        // Another file's identity: a stderr that is not the journal's.
        let other = fs::metadata(std::env::temp_dir()).unwrap();
        cmd.env("JOURNAL_STREAM", format!("{}:{}", other.dev(), other.ino()));
    }
    cmd.status().unwrap();
    fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Replay a pcap cut short (it logs a warning and an info line) into `dir`,
/// under journald or not; its stderr lines.
fn replay_truncated_pcap(dir: &TempDir, journal: bool) -> Vec<String> {
    let data = fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/scan.pcap")).unwrap();
    let pcap = dir.path("cut.pcap");
    fs::write(&pcap, &data[..data.len() - 7]).unwrap();
    let out = dir.path("out");
    stderr_lines(
        &[
            "replay",
            "--out-dir",
            out.to_str().unwrap(),
            pcap.to_str().unwrap(),
        ],
        journal,
    )
}

#[test]
fn under_journald_lines_carry_their_priority_and_no_timestamp() {
    let dir = TempDir::new();
    let lines = replay_truncated_pcap(&dir, true);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<4>") && l.contains("stopped after")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("<6>replayed ")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with('<') && !l.contains("Z INFO")),
        "{lines:?}"
    );

    // The fatal line, and every line of a usage error, at err.
    let config = dir.path("bad.toml");
    fs::write(&config, "nope = 1\n").unwrap();
    let lines = stderr_lines(&["run", "--config", config.to_str().unwrap()], true);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("<3>tsusen: error: config file"),
        "{lines:?}"
    );
    let lines = stderr_lines(&["runn"], true);
    assert!(
        lines[0].starts_with("<3>tsusen: error: unrecognized subcommand"),
        "{lines:?}"
    );
    assert!(lines.iter().all(|l| l.starts_with("<3>")), "{lines:?}");
}

#[test]
fn elsewhere_lines_keep_their_timestamp_and_level() {
    let dir = TempDir::new();
    // JOURNAL_STREAM inherited but naming another stream: not the journal.
    let lines = replay_truncated_pcap(&dir, false);
    let replayed = lines
        .iter()
        .find(|l| l.contains("replayed "))
        .unwrap_or_else(|| panic!("{lines:?}"));
    // [2026-11-24T05:47:07Z INFO ] replayed ...
    assert!(
        replayed.starts_with("[20") && replayed.contains("Z INFO ] replayed "),
        "{replayed}"
    );
    assert!(lines.iter().all(|l| !l.starts_with('<')), "{lines:?}");
    let config = dir.path("bad.toml");
    fs::write(&config, "nope = 1\n").unwrap();
    let lines = stderr_lines(&["run", "--config", config.to_str().unwrap()], false);
    assert!(
        lines[0].starts_with("tsusen: error: config file"),
        "{lines:?}"
    );
}
