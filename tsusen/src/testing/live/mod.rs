//! The live sensor end to end: `tsusen run` as a child process inside a test
//! namespace, fed by real tools (nmap, masscan, kernel sockets) from the peer
//! namespace, and checked only through what a user sees: the day files, the
//! log lines on stderr, the exit status, the metrics endpoint and whether an
//! XDP program is left on the interface.
//!
//! Everything here cleans up after itself on success and on panic: the daemon
//! and traffic tools are killed in `Drop`, mounts are detached and the scratch
//! directory removed. Nothing is sent outside the test namespaces.
//!
//! Here: the fixture (test network, scratch directory, binary) and checks of
//! what is left on the host; [`daemon`] drives `tsusen run` and reads its
//! log and metrics, [`traffic`] sends from the peer namespace, [`day_files`]
//! reads what the daemon wrote, strictly.

mod daemon;
mod day_files;
mod traffic;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, MutexGuard},
};

pub use self::{
    daemon::{
        Daemon, EXIT_TIMEOUT, Flush, READY_TIMEOUT, fetch_metrics, fetch_metrics_as, is_ready_line,
        message, metric,
    },
    day_files::{
        DayRow, HEADER, Tuple, all_rows, assert_tuples, count_rows, day_files, day_start,
        read_all_rows, read_day_file, tuple, wait_rows,
    },
    traffic::{
        ChildGuard, Counters, Masscan, Sweep, connect_from, if_counters, in_netns, masscan,
        sweep_tuples, syns_from, udp_query_from,
    },
};
use super::{Netns, TestNet, have_program, is_root, run, unique_name};

/// Why a live test cannot run here ("" when it can): root, then each tool.
pub fn why_not(tools: &[&str]) -> String {
    if !is_root() {
        return "needs root to create namespaces, mount bpffs and attach XDP".into();
    }
    for tool in ["ip", "mount", "umount"].iter().chain(tools) {
        if !have_program(tool) {
            return format!("needs {tool} (cargo xtask setup --test-tools)");
        }
    }
    String::new()
}

/// One live test at a time within a test binary: floods and clock-sensitive
/// checks must not compete for the CPUs (a veth drops frames when its
/// receiver falls behind, which would look like a sensor losing rows).
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A directory under /run for one test, with its own bpffs mounted at
/// `bpf/` (so pins survive `ip netns exec`, whose /sys is private) and an
/// empty `out/`. Extra mounts (a small tmpfs) are detached on drop too.
pub struct Scratch {
    pub dir: PathBuf,
    mounts: Vec<PathBuf>,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = PathBuf::from("/run").join(format!("tsusen-test-{}", unique_name("d")));
        fs::create_dir_all(&dir).unwrap();
        let mut scratch = Scratch {
            dir,
            mounts: Vec::new(),
        };
        let bpf = scratch.dir.join("bpf");
        fs::create_dir(&bpf).unwrap();
        run("mount", &["-t", "bpf", "bpf", bpf.to_str().unwrap()]);
        scratch.mounts.push(bpf);
        fs::create_dir(scratch.out_dir()).unwrap();
        scratch
    }

    /// `--pin-dir`: a directory the daemon creates on the test's bpffs.
    pub fn pin_dir(&self) -> PathBuf {
        self.dir.join("bpf/pins")
    }

    /// `--out-dir`.
    pub fn out_dir(&self) -> PathBuf {
        self.dir.join("out")
    }

    /// A path inside the scratch directory (not created).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Mount a tmpfs of `size` (e.g. "128k") at `name`, detached on drop.
    pub fn mount_tmpfs(&mut self, name: &str, size: &str) -> PathBuf {
        let dir = self.dir.join(name);
        fs::create_dir_all(&dir).unwrap();
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
                dir.to_str().unwrap(),
            ],
        );
        self.mounts.push(dir.clone());
        dir
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for mount in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(mount).status();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The test network, a scratch directory, and the binary under test.
/// Declare daemons after this so they are dropped (killed) first.
pub struct Live {
    pub net: TestNet,
    pub scratch: Scratch,
    pub bin: String,
    /// The [`serial`] lock when this is the test's [`live_test!`] fixture;
    /// the last field, so it is released after the network and directory
    /// are gone.
    _serial: Option<MutexGuard<'static, ()>>,
}

/// The start of every live and deploy test that runs the sensor in a test
/// network: skip the test (saying why) unless this host can run it — root,
/// and each of the tools named — then take the [`serial`] lock and make a
/// fresh [`Live`] for this package's `tsusen` binary. The `Live` holds the
/// lock until it is dropped; a second network in the same test is
/// [`Live::new`].
///
/// ```ignore
/// let live = tsusen::live_test!(&["masscan"]);
/// let mut daemon = live.start("sensor", &[]);
/// ```
#[macro_export]
macro_rules! live_test {
    ($tools:expr) => {{
        let why = $crate::testing::live::why_not($tools);
        $crate::skip_unless!(why.is_empty(), &why);
        $crate::testing::live::Live::serial(env!("CARGO_BIN_EXE_tsusen"))
    }};
}

impl Live {
    /// A test network and scratch directory for `bin`, without the
    /// [`serial`] lock (for a second one in a test that holds it).
    pub fn new(bin: &str) -> Self {
        Live {
            net: TestNet::new(),
            scratch: Scratch::new(),
            bin: bin.to_owned(),
            _serial: None,
        }
    }

    /// [`Live::new`] once the [`serial`] lock is taken; held until dropped.
    pub fn serial(bin: &str) -> Self {
        let lock = serial();
        Live {
            _serial: Some(lock),
            ..Live::new(bin)
        }
    }

    pub fn out_dir(&self) -> PathBuf {
        self.scratch.out_dir()
    }

    pub fn pin_dir(&self) -> PathBuf {
        self.scratch.pin_dir()
    }

    /// `run --iface <sensor_if> --out-dir <out> --pin-dir <pins>
    /// --flush-interval 1s` followed by `extra`; an `extra` that names
    /// --out-dir, --pin-dir or --flush-interval itself replaces the default.
    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            "run".to_owned(),
            "--iface".to_owned(),
            self.net.sensor_if.clone(),
        ];
        let defaults = [
            ("--out-dir", self.out_dir().display().to_string()),
            ("--pin-dir", self.pin_dir().display().to_string()),
            ("--flush-interval", "1s".to_owned()),
        ];
        for (flag, value) in defaults {
            if !extra.contains(&flag) {
                args.push(flag.to_owned());
                args.push(value);
            }
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    }

    /// Spawn the daemon in the sensor namespace (no wait).
    pub fn spawn(&self, label: &str, extra: &[&str]) -> Daemon {
        Daemon::spawn(label, &self.bin, &self.net.sensor, &self.args(extra))
    }

    /// Spawn the daemon and wait for its `ready` line.
    pub fn start(&self, label: &str, extra: &[&str]) -> Daemon {
        let mut daemon = self.spawn(label, extra);
        daemon.wait_ready();
        daemon
    }

    /// Whether any XDP program is attached to the sensor's veth end.
    pub fn xdp_attached(&self) -> bool {
        xdp_attached(&self.net.sensor, &self.net.sensor_if)
    }
}

/// Whether `ip link show` reports an XDP program (any mode) on `ifname`.
pub fn xdp_attached(ns: &Netns, ifname: &str) -> bool {
    ns.exec("ip", &["link", "show", "dev", ifname])
        .contains("xdp")
}

/// Pin a small array map at `path` on a bpffs, as another tool would
/// (BPF_MAP_CREATE, BPF_OBJ_PIN): something a sensor sharing the directory
/// must leave alone.
pub fn pin_foreign_map(path: &Path) {
    use std::os::fd::AsFd as _;
    let map = crate::sys::array_map_create(4, 1).expect("BPF_MAP_CREATE");
    crate::sys::obj_pin(map.as_fd(), path).expect("BPF_OBJ_PIN");
    // Closing our fd leaves the map to the pin.
}

/// The names in a directory, sorted.
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Wall-clock Unix seconds now.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
