//! The Debian package under a real systemd (252, PID 1 of a Debian 12
//! container booted with systemd-nspawn on a private network): `dpkg -i`
//! installs it, `systemctl` drives it, and only what an operator sees is
//! checked (the journal, the unit's state, the day files, the interface).
//!
//! - a config error: the fatal line is in the journal (at priority err, and
//!   exit 2 without restarts, once the binary has them);
//! - the unit starts with its bpffs of its own at /run/tsusen/bpf while
//!   /sys/fs/bpf is mounted mode 0700 as systemd does on a host, and
//!   `tsusen check` as the tsusen user names that fix;
//! - it records real pings and SYNs sent from another namespace inside the
//!   container, survives `kill -9` (systemd restarts it, it adopts the
//!   running program, nothing is lost), reloads on SIGHUP, and stops with a
//!   full drain: every row in the day file exactly once, XDP detached, pins gone.
//!
//! The rootfs is built once by mmdebstrap from Debian's packages and cached
//! under target/tmp; each run boots a fresh copy. The package is the one
//! `cargo xtask deb` built (`cargo xtask test` sets TSUSEN_DEB).

use std::{
    collections::HashSet,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use tsusen::{
    skip_unless,
    testing::{have_program, is_root, live, unique_name},
};

/// What the rootfs holds beyond Debian's minbase (a new list, a new cache).
const PACKAGES: &str = "systemd,systemd-sysv,dbus,iproute2,iputils-ping,netcat-openbsd";
const SENSOR_IF: &str = "tsu0";
const PEER_IF: &str = "tsp0";
const SENSOR_IP: &str = "198.18.0.1";
const PEER_IP: &str = "198.18.0.2";
/// Bounds for waits on a shared, noisy machine (not speed assertions).
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
const UNIT_TIMEOUT: Duration = Duration::from_secs(90);

fn work_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("systemd-test")
}

/// The package to install: TSUSEN_DEB, else the newest `cargo xtask deb` built.
fn package() -> Option<PathBuf> {
    if let Some(deb) = std::env::var_os("TSUSEN_DEB") {
        return Some(PathBuf::from(deb));
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../debian");
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("tsusen_") && name.ends_with(".deb")
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
}

/// Why this test cannot run here ("" when it can).
fn why_not() -> String {
    if !is_root() {
        return "needs root to build a rootfs and boot it with systemd-nspawn".into();
    }
    for (tool, package) in [
        ("mmdebstrap", "mmdebstrap"),
        ("systemd-nspawn", "systemd-container"),
        ("nsenter", "util-linux"),
        ("tar", "tar"),
    ] {
        if !have_program(tool) {
            return format!("needs {tool} (apt-get install {package})");
        }
    }
    if package().is_none() {
        return "needs the package: run `cargo xtask deb` (or `cargo xtask test`)".into();
    }
    String::new()
}

/// A Debian 12 rootfs tarball with systemd, built once and kept.
fn rootfs_tarball() -> PathBuf {
    // FNV-1a of the package list names the cache.
    let key = PACKAGES.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let tarball = work_dir().join(format!("bookworm-{key:016x}.tar"));
    if tarball.exists() {
        return tarball;
    }
    fs::create_dir_all(work_dir()).unwrap();
    let partial = tarball.with_extension("partial.tar");
    eprintln!("building the Debian 12 rootfs with mmdebstrap (a few minutes, once)");
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--quiet", "--variant=minbase", "--mode=root"])
        .arg(format!("--include={PACKAGES}"))
        .args(["bookworm"])
        .arg(&partial);
    // The host's Debian sources (its mirror), when it has them.
    let sources = Path::new("/etc/apt/sources.list.d/debian.sources");
    if sources.exists() {
        cmd.arg(sources);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "mmdebstrap failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::rename(&partial, &tarball).unwrap();
    tarball
}

/// A container booted with systemd-nspawn from a fresh copy of the rootfs;
/// powered off and removed on drop.
struct Container {
    root: PathBuf,
    nspawn: Child,
    leader: u32,
}

impl Container {
    fn boot(tarball: &Path) -> Self {
        let name = unique_name("tsc");
        let root = work_dir().join(&name);
        fs::create_dir_all(&root).unwrap();
        let status = Command::new("tar")
            .arg("-xf")
            .arg(tarball)
            .arg("-C")
            .arg(&root)
            .status()
            .unwrap();
        assert!(status.success(), "extracting the rootfs");
        let log = fs::File::create(work_dir().join(format!("{name}.console"))).unwrap();
        let nspawn = Command::new("systemd-nspawn")
            .args(["--quiet", "--boot", "--directory"])
            .arg(&root)
            .args(["--machine", &name])
            // Never the host's network: only lo and the test's veth pair.
            .arg("--private-network")
            // What the sensor needs: nspawn's own seccomp filter refuses
            // bpf() and perf_event_open() unless allowed.
            .arg("--capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN")
            .arg("--system-call-filter=bpf perf_event_open")
            // The host's PID 1 need not be systemd: no machined, no scope.
            .args(["--register=no", "--keep-unit", "--console=passive"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut container = Container {
            root,
            nspawn,
            leader: 0,
        };
        container.leader = container.find_leader();
        // systemctl needs systemd's bus, which comes up a moment after PID 1
        // starts: until then it says "offline" (or nothing) at once.
        let start = Instant::now();
        let state = loop {
            let out = container.sh("timeout 150 systemctl is-system-running --wait");
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !(state.is_empty() || state == "offline") || start.elapsed() > BOOT_TIMEOUT {
                break state;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(
            state == "running" || state == "degraded",
            "systemd did not finish booting: {state}; failed units: {}",
            container.text("systemctl --failed --no-legend")
        );
        container
    }

    /// The container's PID 1 (systemd), seen from here: nspawn's child
    /// whose PID in its own namespace is 1.
    fn find_leader(&mut self) -> u32 {
        let nspawn = self.nspawn.id();
        let start = Instant::now();
        loop {
            if let Some(status) = self.nspawn.try_wait().unwrap() {
                panic!("systemd-nspawn exited ({status}): {}", self.console());
            }
            let children = fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children"))
                .unwrap_or_default();
            for pid in children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
            {
                let init_there = fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                    s.lines()
                        .any(|l| l.starts_with("NSpid:") && l.ends_with("\t1"))
                });
                if init_there {
                    return pid;
                }
            }
            assert!(
                start.elapsed() < BOOT_TIMEOUT,
                "no container init: {}",
                self.console()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn console(&self) -> String {
        let name = self.root.file_name().unwrap().to_string_lossy();
        fs::read_to_string(work_dir().join(format!("{name}.console"))).unwrap_or_default()
    }

    /// `sh -c script` inside the container (all its namespaces), as root.
    fn sh_command(&self, script: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .args(["--all", "--target", &self.leader.to_string(), "--"])
            .args([
                "/usr/bin/env",
                "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
            ])
            .args(["sh", "-c", script])
            .stdin(Stdio::null());
        command
    }

    fn sh(&self, script: &str) -> Output {
        self.sh_command(script).output().unwrap()
    }

    /// stdout of a script that must succeed.
    fn ok(&self, script: &str) -> String {
        tsusen::testing::run_command(&mut self.sh_command(script))
    }

    /// stdout and stderr of a script, whatever its status.
    fn text(&self, script: &str) -> String {
        let out = self.sh(script);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// A property of tsusen.service (`systemctl show -p`).
    fn prop(&self, name: &str) -> String {
        self.ok(&format!("systemctl show -p {name} --value tsusen"))
            .trim()
            .to_owned()
    }

    fn journal(&self) -> String {
        self.text("journalctl -u tsusen -o cat --no-pager")
    }

    /// Wait (bounded) for `done`; panic with the unit's journal if it never holds.
    fn wait(&self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < UNIT_TIMEOUT,
                "{what}: not within {UNIT_TIMEOUT:?}; status:\n{}\njournal:\n{}",
                self.text("systemctl status --no-pager tsusen"),
                self.journal()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Lines of the unit's journal that are the daemon's `ready` line.
    fn ready_lines(&self) -> usize {
        self.journal()
            .lines()
            .filter(|l| live::is_ready_line(l))
            .count()
    }

    /// A command in the scanner's namespace inside the container.
    fn on_peer(&self, command: &str) -> String {
        self.text(&format!("nsenter --net=/run/netns/scan -- {command}"))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SIGTERM makes nspawn power the container off cleanly.
        // SAFETY: a child we spawned and have not reaped.
        unsafe { libc::kill(self.nspawn.id().cast_signed(), libc::SIGTERM) };
        let start = Instant::now();
        while self.nspawn.try_wait().ok().flatten().is_none() {
            if start.elapsed() > Duration::from_secs(60) {
                let _ = self.nspawn.kill();
                let _ = self.nspawn.wait();
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        if !thread::panicking() {
            let name = self
                .root
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let _ = fs::remove_file(work_dir().join(format!("{name}.console")));
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// The exposure score `systemd-analyze security` prints for the unit.
fn exposure(text: &str) -> f64 {
    text.lines()
        .find_map(|l| l.split_once("Overall exposure level for tsusen.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score: {text}"))
}

#[test]
fn the_package_under_systemd_records_survives_kill_9_and_drains_on_stop() {
    let why = why_not();
    skip_unless!(why.is_empty(), &why);
    let deb = package().unwrap();
    eprintln!("package: {}", deb.display());
    let c = Container::boot(&rootfs_tarball());

    // What systemd's mount-setup does on a host (nspawn's /sys has none,
    // not even the directory: its /sys is a read-only tmpfs here).
    c.ok(
        "{ [ -d /sys/fs/bpf ] || { mount -o remount,rw /sys && mkdir /sys/fs/bpf \
         && mount -o remount,ro /sys; }; } && mount -t bpf -o mode=700 bpf /sys/fs/bpf",
    );
    // The sensor's interface and, in a namespace of its own, a scanner.
    c.ok(&format!(
        "ip link add {SENSOR_IF} type veth peer name {PEER_IF} && ip netns add scan \
         && ip link set {PEER_IF} netns scan \
         && ip addr add {SENSOR_IP}/24 dev {SENSOR_IF} && ip link set {SENSOR_IF} up \
         && ip -n scan addr add {PEER_IP}/24 dev {PEER_IF} && ip -n scan link set {PEER_IF} up \
         && ip -n scan link set lo up"
    ));

    // The package: what it installs, and that it starts nothing.
    fs::copy(&deb, c.root.join("root/tsusen.deb")).unwrap();
    c.ok("dpkg -i /root/tsusen.deb");
    let files = c.ok("dpkg -L tsusen");
    for path in [
        "/usr/bin/tsusen",
        "/usr/lib/systemd/system/tsusen.service",
        "/usr/lib/systemd/system/run-tsusen-bpf.mount",
        "/usr/lib/sysusers.d/tsusen.conf",
        "/usr/lib/tmpfiles.d/tsusen.conf",
        "/etc/tsusen/tsusen.toml",
        "/usr/share/man/man1/tsusen.1.gz",
        "/usr/share/man/man1/tsusen-run.1.gz",
        "/usr/share/bash-completion/completions/tsusen",
        "/usr/share/zsh/vendor-completions/_tsusen",
        "/usr/share/fish/vendor_completions.d/tsusen.fish",
        "/usr/share/doc/tsusen/copyright",
        "/usr/share/doc/tsusen/LICENSE-MIT",
        "/usr/share/doc/tsusen/LICENSE-APACHE",
    ] {
        assert!(
            files.lines().any(|l| l == path),
            "{path} not in the package:\n{files}"
        );
    }
    assert!(
        c.ok("dpkg-query -W -f='${Conffiles}' tsusen")
            .contains("/etc/tsusen/tsusen.toml"),
        "the config is not a conffile"
    );
    assert!(c.ok("tsusen --version").starts_with("tsusen "));
    // The man page is the clap definitions': every subcommand is in it.
    let man = c.ok("zcat /usr/share/man/man1/tsusen.1.gz");
    for sub in ["run", "replay", "report", "serve", "check"] {
        assert!(
            man.contains(&format!("tsusen\\-{sub}(1)")),
            "{sub} not in tsusen(1)"
        );
    }
    assert!(
        c.ok("getent passwd tsusen")
            .trim_end()
            .ends_with(":/usr/sbin/nologin")
    );
    assert_eq!(c.ok("stat -c %U:%a /var/log/tsusen").trim(), "tsusen:750");
    assert_eq!(c.text("systemctl is-enabled tsusen").trim(), "disabled");
    assert_eq!(c.text("systemctl is-active tsusen").trim(), "inactive");

    // `tsusen check` as the tsusen user: /sys/fs/bpf/tsusen cannot work
    // (mode 0700 parent), and the fix is the package's own bpffs.
    let check =
        c.text("runuser -u tsusen -- tsusen check --iface tsu0 --pin-dir /sys/fs/bpf/tsusen");
    let pin_line = check
        .lines()
        .find(|l| l.contains("pin-dir /sys/fs/bpf/tsusen:"))
        .unwrap_or_else(|| panic!("no pin-dir line: {check}"));
    assert!(
        pin_line.starts_with("MISSING")
            && pin_line.contains("cannot enter /sys/fs/bpf")
            && pin_line.contains("run-tsusen-bpf.mount"),
        "{pin_line}"
    );

    // A config error: the fatal line reaches the journal; with exit 2 the
    // unit is not restarted (RestartPreventExitStatus=2).
    c.ok(&format!(
        "sed -i 's/^iface = .*/iface = [\"{SENSOR_IF}\"]/; \
         s/^flush-interval = .*/flush-interval = \"soon\"/' /etc/tsusen/tsusen.toml"
    ));
    // (Type=simple: the start itself succeeds, the daemon then exits.)
    c.text("systemctl start tsusen");
    c.wait("the bad config's start fails", |c| {
        c.prop("ActiveState") == "failed" || c.prop("SubState") == "auto-restart"
    });
    let fatal = c.journal();
    let fatal_line = fatal
        .lines()
        .find(|l| l.contains("tsusen: error:") && l.contains("flush-interval"))
        .unwrap_or_else(|| panic!("no fatal line in the journal:\n{fatal}"))
        .to_owned();
    // Usage/config errors exit 2 and log at priority err once the binary
    // does (main.rs: exit codes and journald priorities); until then the
    // line above is all that can be asserted.
    let exit_2 = c.prop("ExecMainStatus") == "2";
    if exit_2 {
        assert_eq!(c.prop("ActiveState"), "failed", "exit 2 was restarted");
        assert_eq!(c.prop("NRestarts"), "0");
        let errors = c.text("journalctl -u tsusen -p err -o cat --no-pager");
        assert!(
            errors.contains(&fatal_line),
            "not at priority err:\n{errors}"
        );
    } else {
        eprintln!(
            "note: the binary exits {} on a config error; exit 2, RestartPreventExitStatus \
             and priority err are not checked",
            c.prop("ExecMainStatus")
        );
    }
    c.ok("systemctl stop tsusen; systemctl reset-failed tsusen");

    // The real config: the flush interval is long, so every row below is
    // written by the drain at stop (through a kill -9 in between).
    c.ok("sed -i 's/^flush-interval = .*/flush-interval = \"1h\"/' /etc/tsusen/tsusen.toml");
    c.ok("systemctl enable --now tsusen");
    c.wait("ready", |c| c.ready_lines() == 1);
    let journal = c.journal();
    assert!(journal.contains("pins in /run/tsusen/bpf"), "{journal}");
    assert_eq!(c.ok("findmnt -n -o FSTYPE /run/tsusen/bpf").trim(), "bpf");
    // mode=0700; a bpffs root always carries the sticky bit too.
    assert_eq!(c.ok("stat -c %U:%a /run/tsusen/bpf").trim(), "tsusen:1700");
    assert!(c.ok(&format!("ip link show {SENSOR_IF}")).contains("xdp"));

    // The hardened unit, as systemd 252 scores it running (README: Deploy).
    let security = c.ok("systemd-analyze security --no-pager tsusen.service");
    let score = exposure(&security);
    eprintln!("systemd-analyze security (systemd 252, running): {score}");
    assert!(score <= 2.0, "exposure {score}:\n{security}");

    // Batch 1: a ping and SYNs to two closed ports.
    c.on_peer(&format!("ping -c 2 -i 0.2 -W 1 {SENSOR_IP}"));
    c.on_peer(&format!("nc -z -w 1 {SENSOR_IP} 22 80"));

    // kill -9: systemd restarts it; the new daemon adopts the program that
    // kept recording, and the rows of batch 1 still in the kernel's map.
    let first = c.prop("MainPID");
    let restarts: u32 = c.prop("NRestarts").parse().unwrap();
    c.ok(&format!("kill -9 {first}"));
    c.wait("restarted after kill -9", |c| {
        c.ready_lines() == 2 && c.prop("ActiveState") == "active"
    });
    assert_ne!(c.prop("MainPID"), first);
    assert_eq!(c.prop("NRestarts"), (restarts + 1).to_string());
    let journal = c.journal();
    assert!(
        journal.contains("adopted the sensor an earlier run left recording"),
        "{journal}"
    );

    // Batch 2 while the adopted sensor runs.
    c.on_peer(&format!("nc -z -w 1 {SENSOR_IP} 443 8080"));

    // SIGHUP (ExecReload) is not a death, once the binary handles it.
    if exit_2 {
        let pid = c.prop("MainPID");
        c.ok("systemctl reload tsusen");
        thread::sleep(Duration::from_secs(1));
        assert_eq!(c.prop("MainPID"), pid, "reload restarted the daemon");
        assert_eq!(c.prop("ActiveState"), "active");
    }

    // A clean stop drains everything: each row exactly once.
    c.ok("systemctl stop tsusen");
    assert_eq!(c.prop("Result"), "success");
    assert_eq!(c.prop("ExecMainStatus"), "0");
    let rows = live::all_rows(&c.root.join("var/log/tsusen"));
    let mut wanted: HashSet<_> = [22, 80, 443, 8080]
        .into_iter()
        .map(|port| live::tuple("TCP", Some(port), PEER_IP, SENSOR_IP))
        .collect();
    wanted.insert(live::tuple("ICMP", None, PEER_IP, SENSOR_IP));
    live::assert_tuples(&rows, &wanted, "the unit's day file");
    assert!(
        !c.ok(&format!("ip link show {SENSOR_IF}")).contains("xdp"),
        "XDP left attached after a clean stop"
    );
    // What is left is the kernel's own (every fresh bpffs holds them).
    assert_eq!(
        c.ok("ls -A /run/tsusen/bpf").trim(),
        "maps.debug\nprogs.debug",
        "pins left behind"
    );
    // UMask=0077: the day files are the tsusen user's alone.
    let modes = c.ok("stat -c %U:%a /var/log/tsusen/*.csv");
    assert!(modes.lines().all(|l| l == "tsusen:600"), "{modes}");
}
