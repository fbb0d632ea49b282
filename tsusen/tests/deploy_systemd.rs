//! packaging/tsusen.service and packaging/tsusen.toml: the unit passes
//! `systemd-analyze verify` without a single complaint (unknown keys are only
//! warnings there, so any line about the unit fails the test), grants only
//! the sensor's capabilities, keeps a low exposure score, and the example
//! config is accepted by `tsusen run`'s settings. `tsusen check` names the fix
//! for a pin directory under a bpffs mounted mode 0700 (as systemd mounts
//! /sys/fs/bpf), and that fix works. The unit under a real systemd is
//! tests/deploy_systemd_real.rs.

use std::{fs, path::PathBuf, process::Command};

use tsusen::{
    skip_unless,
    testing::{have_program, is_root, unique_name},
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
            text.contains("ExecStart=/usr/bin/tsusen run --config /etc/tsusen/tsusen.toml"),
            "{text}"
        );
        let dir = std::env::temp_dir().join(unique_name("unit"));
        fs::create_dir_all(&dir).unwrap();
        let unit = dir.join("tsusen.service");
        fs::write(&unit, text.replace("/usr/bin/tsusen", TSUSEN)).unwrap();
        // The pin directory's mount unit, which RequiresMountsFor= names.
        fs::copy(
            packaging("run-tsusen-bpf.mount"),
            dir.join("run-tsusen-bpf.mount"),
        )
        .unwrap();
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
        .arg(copy.dir.join("run-tsusen-bpf.mount"))
        .current_dir(&copy.dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("tsusen.service") || l.contains("run-tsusen-bpf.mount"))
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
    assert_eq!(value("RestartPreventExitStatus"), "2");
    assert!(value("StartLimitBurst").parse::<u32>().unwrap() > 0);
    assert!(value("LimitNOFILE").parse::<u32>().unwrap() >= 65536);
    assert_eq!(value("ExecReload"), "/bin/sh -c 'kill -HUP $MAINPID'");
    assert_eq!(value("LogsDirectory"), "tsusen");
    // The pin directory is a bpffs of the unit's own, not /sys/fs/bpf
    // (mode 0700 under systemd): mounted by run-tsusen-bpf.mount, handed to
    // the user by a privileged chown, writable in the sandbox.
    assert_eq!(value("RequiresMountsFor"), "/run/tsusen/bpf");
    assert_eq!(value("ReadWritePaths"), "/run/tsusen/bpf");
    assert!(value("ExecStart").ends_with("--pin-dir /run/tsusen/bpf"));
    assert_eq!(
        value("ExecStartPre"),
        "+/bin/chown tsusen:tsusen /run/tsusen/bpf"
    );
    let mount = fs::read_to_string(packaging("run-tsusen-bpf.mount")).unwrap();
    assert!(mount.contains("\nWhere=/run/tsusen/bpf\n"), "{mount}");
    assert!(mount.contains("\nType=bpf\n"), "{mount}");
    assert!(
        value("SystemCallFilter").contains("bpf")
            && value("SystemCallFilter").contains("@system-service")
    );
    for (key, want) in [
        ("ProcSubset", "pid"),
        ("PrivateIPC", "yes"),
        ("UMask", "0077"),
        ("DevicePolicy", "closed"),
    ] {
        assert_eq!(value(key), want, "{key}");
    }

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
    // The README's Deploy section states the measured score.
    assert!(score <= 2.0, "exposure {score} (was 1.6): {stdout}");
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

/// A bpffs mounted mode 0700 (systemd's /sys/fs/bpf) in a temp dir, unmounted
/// and removed on drop.
struct BpffsMount(PathBuf);

impl BpffsMount {
    fn new(at: PathBuf, mode: &str) -> Self {
        fs::create_dir_all(&at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "bpf", "-o", &format!("mode={mode}"), "bpf"])
            .arg(&at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        BpffsMount(at)
    }
}

impl Drop for BpffsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = fs::remove_dir(&self.0);
    }
}

/// `tsusen check` as an unprivileged user (nobody); returns the pin-dir line.
fn check_pin_dir_as_nobody(pin_dir: &std::path::Path, out_dir: &std::path::Path) -> String {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(TSUSEN)
        .args(["check", "--iface", "lo", "--out-dir"])
        .arg(out_dir)
        .arg("--pin-dir")
        .arg(pin_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let want = format!("pin-dir {}:", pin_dir.display());
    stdout
        .lines()
        .find(|l| l.contains(&want))
        .unwrap_or_else(|| panic!("no {want} line: {stdout}"))
        .to_owned()
}

#[test]
fn check_gives_the_pin_dir_fix_that_works_under_a_0700_bpffs() {
    skip_unless!(is_root(), "needs root to mount bpffs");
    skip_unless!(
        have_program("setpriv") && have_program("mount"),
        "needs setpriv and mount (util-linux, mount)"
    );
    let dir = PathBuf::from("/run").join(unique_name("pinfix"));
    fs::create_dir_all(&dir).unwrap();
    let _cleanup = scopeguard_dir(dir.clone());
    let out_dir = dir.join("out");
    // What systemd does to /sys/fs/bpf on every host: root's, mode 0700.
    let hosts = BpffsMount::new(dir.join("sysfsbpf"), "0700");
    let under_hosts = hosts.0.join("tsusen");
    let line = check_pin_dir_as_nobody(&under_hosts, &out_dir);
    assert!(line.starts_with("MISSING"), "{line}");
    assert!(line.contains("cannot enter"), "{line}");
    // The fix: a bpffs of its own, mode 0700, owned by the user. Not a chown
    // of a directory below the closed one, which could never be reached.
    assert!(
        line.contains("mount -t bpf -o mode=0700 bpf /run/tsusen/bpf")
            && line.contains("chown 65534:65534 /run/tsusen/bpf"),
        "{line}"
    );

    // Following it (at a test path) makes the pin directory ok.
    let own = BpffsMount::new(dir.join("own"), "0700");
    let line = check_pin_dir_as_nobody(&own.0, &out_dir);
    assert!(line.starts_with("MISSING"), "root's bpffs: {line}");
    assert!(line.contains("chown 65534:65534"), "{line}");
    std::os::unix::fs::chown(&own.0, Some(65534), Some(65534)).unwrap();
    let line = check_pin_dir_as_nobody(&own.0, &out_dir);
    assert!(line.starts_with("ok"), "{line}");
}

/// Removes a directory on drop (after the mounts in it are gone).
fn scopeguard_dir(dir: PathBuf) -> impl Drop {
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    Remove(dir)
}
