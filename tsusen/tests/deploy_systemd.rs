//! packaging/tsusen.service and packaging/tsusen.toml: the unit passes
//! `systemd-analyze verify` without a single complaint (unknown keys are only
//! warnings there, so any line about the unit fails the test), grants only
//! the sensor's capabilities, keeps a low exposure score, and the example
//! config is accepted by `tsusen run`'s settings.

use std::{fs, path::PathBuf, process::Command};

use tsusen::{
    skip_unless,
    testing::{have_program, unique_name},
};

const TSUSEN: &str = env!("CARGO_BIN_EXE_tsusen");

fn packaging(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging")
        .join(name)
}

/// A temp dir holding the unit with ExecStart pointed at the test binary
/// (verify checks that the binary exists), removed on drop.
struct UnitCopy {
    dir: PathBuf,
    unit: PathBuf,
}

impl UnitCopy {
    fn new() -> Self {
        let text = fs::read_to_string(packaging("tsusen.service")).unwrap();
        assert!(
            text.contains("ExecStart=/usr/local/bin/tsusen run --config /etc/tsusen/tsusen.toml"),
            "{text}"
        );
        let dir = std::env::temp_dir().join(unique_name("unit"));
        fs::create_dir_all(&dir).unwrap();
        let unit = dir.join("tsusen.service");
        fs::write(&unit, text.replace("/usr/local/bin/tsusen", TSUSEN)).unwrap();
        UnitCopy { dir, unit }
    }
}

impl Drop for UnitCopy {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn the_unit_verifies_cleanly() {
    skip_unless!(
        have_program("systemd-analyze"),
        "needs systemd-analyze (apt-get install systemd)"
    );
    let copy = UnitCopy::new();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy.unit)
        .current_dir(&copy.dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("tsusen.service"))
        .collect();
    assert!(complaints.is_empty(), "{complaints:#?}");

    // The same unit with the binary missing fails: verify really looks.
    let broken = copy.dir.join("broken.service");
    fs::write(
        &broken,
        fs::read_to_string(&copy.unit)
            .unwrap()
            .replace(TSUSEN, "/nonexistent/tsusen"),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!out.status.success(), "verify accepted a missing binary");
}

#[test]
fn the_unit_grants_only_the_sensors_capabilities_and_is_hardened() {
    let text = fs::read_to_string(packaging("tsusen.service")).unwrap();
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in the unit"))
            .to_owned()
    };
    let caps = "CAP_BPF CAP_PERFMON CAP_NET_ADMIN";
    assert_eq!(value("AmbientCapabilities"), caps);
    assert_eq!(value("CapabilityBoundingSet"), caps);
    assert_eq!(value("User"), "tsusen");
    assert_eq!(value("ProtectSystem"), "strict");
    assert_eq!(value("NoNewPrivileges"), "yes");
    assert_eq!(value("Restart"), "on-failure");
    assert_eq!(value("LogsDirectory"), "tsusen");
    assert!(value("ReadWritePaths").contains("/sys/fs/bpf/tsusen"));
    assert!(value("ExecStartPre").starts_with('+'), "runs privileged");

    skip_unless!(
        have_program("systemd-analyze"),
        "needs systemd-analyze (apt-get install systemd)"
    );
    let copy = UnitCopy::new();
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&copy.unit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let score: f64 = stdout
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for tsusen.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score: {stdout}"));
    assert!(score <= 4.0, "exposure {score} (was 3.3): {stdout}");
}

#[test]
fn the_example_config_is_accepted() {
    // `tsusen check` resolves the same settings as `tsusen run`; a bad key
    // or value would be a MISSING "settings" line (no privileges needed).
    let dir = std::env::temp_dir().join(unique_name("cfgx"));
    let out = Command::new(TSUSEN)
        .arg("check")
        .arg("--config")
        .arg(packaging("tsusen.toml"))
        .args(["--iface", "lo", "--out-dir"])
        .arg(dir.join("out"))
        .arg("--pin-dir")
        .arg(dir.join("pins"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("settings:"), "{stdout}");
    assert!(stdout.contains("interface lo:"), "{stdout}");
    assert!(!dir.exists(), "check created {}", dir.display());
}
