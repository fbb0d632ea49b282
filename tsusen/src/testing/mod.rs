//! Test support shared by unit and integration tests (not part of the API).

use std::io::Write as _;

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether a program is on PATH.
pub fn have_program(program: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Skip the calling test with a one-line reason unless `ready` holds.
///
/// The line goes straight to stderr (past the test harness's capture) so a
/// skip is visible. In CI (`TSUSEN_REQUIRE_ROOT_TESTS=1`, set by `cargo xtask
/// test` when `CI` is set) a skip is a failure: these tests must run there.
#[macro_export]
macro_rules! skip_unless {
    ($ready:expr, $reason:expr) => {
        if !$ready {
            $crate::testing::skip(module_path!(), $reason);
            return;
        }
    };
}

#[doc(hidden)]
pub fn skip(test: &str, reason: &str) {
    assert!(
        std::env::var_os("TSUSEN_REQUIRE_ROOT_TESTS").is_none(),
        "{test}: cannot skip in CI: {reason}"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
}

/// A network namespace made for one test, removed when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `ip netns add` a namespace with a name unique to this process and call.
    pub fn new(tag: &str) -> Self {
        let name = unique_name(tag);
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.exec("ip", &["link", "set", "lo", "up"]);
        ns
    }

    /// Run a command inside the namespace; panics on failure.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A `Command` that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Move the calling thread into the namespace (for in-process attach).
    pub fn enter_this_thread(&self) {
        let file = std::fs::File::open(format!("/run/netns/{}", self.name)).expect("open netns");
        use std::os::fd::AsRawFd as _;
        // SAFETY: a valid namespace fd; only this thread changes namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two namespaces joined by a veth pair: the sensor's end and a peer's end.
/// Addresses come from the benchmarking range 198.18.0.0/15 and 2001:db8::/32.
pub struct TestNet {
    pub sensor: Netns,
    pub peer: Netns,
    /// The veth end in the sensor namespace.
    pub sensor_if: String,
    pub peer_if: String,
}

impl TestNet {
    pub const SENSOR_IP: &'static str = "198.18.0.1";
    pub const PEER_IP: &'static str = "198.18.0.2";
    pub const SENSOR_IP6: &'static str = "2001:db8:7:1::1";
    pub const PEER_IP6: &'static str = "2001:db8:7:1::2";

    pub fn new() -> Self {
        let net = TestNet {
            sensor: Netns::new("s"),
            peer: Netns::new("p"),
            sensor_if: unique_name("vs"),
            peer_if: unique_name("vp"),
        };
        net.add_veth();
        net
    }

    /// The veth pair, one end per namespace, addressed and up.
    fn add_veth(&self) {
        let (sensor, peer) = (&self.sensor, &self.peer);
        let (sensor_if, peer_if) = (&self.sensor_if, &self.peer_if);
        run(
            "ip",
            &[
                "link",
                "add",
                sensor_if,
                "netns",
                &sensor.name,
                "type",
                "veth",
                "peer",
                "name",
                peer_if,
                "netns",
                &peer.name,
            ],
        );
        for (ns, ifname, v4, v6) in [
            (sensor, sensor_if, Self::SENSOR_IP, Self::SENSOR_IP6),
            (peer, peer_if, Self::PEER_IP, Self::PEER_IP6),
        ] {
            ns.exec("ip", &["addr", "add", &format!("{v4}/24"), "dev", ifname]);
            ns.exec(
                "ip",
                &[
                    "-6",
                    "addr",
                    "add",
                    &format!("{v6}/64"),
                    "dev",
                    ifname,
                    "nodad",
                ],
            );
            ns.exec("ip", &["link", "set", ifname, "up"]);
        }
    }

    /// Delete the veth pair and make it again under the same names (new
    /// interfaces, new ifindexes): what a reconfigured host does.
    pub fn recreate_veth(&self) {
        self.sensor
            .exec("ip", &["link", "del", "dev", &self.sensor_if]);
        self.add_veth();
    }

    /// The kernel's index of the sensor's veth end (in its namespace).
    pub fn sensor_ifindex(&self) -> u32 {
        self.sensor
            .exec(
                "cat",
                &[&format!("/sys/class/net/{}/ifindex", self.sensor_if)],
            )
            .trim()
            .parse()
            .unwrap()
    }

    /// The MAC address of the sensor's veth end (for raw senders like masscan).
    pub fn sensor_mac(&self) -> String {
        self.sensor
            .exec(
                "cat",
                &[&format!("/sys/class/net/{}/address", self.sensor_if)],
            )
            .trim()
            .to_owned()
    }
}

impl Default for TestNet {
    fn default() -> Self {
        Self::new()
    }
}

/// A name of at most 15 characters (the interface-name limit), unique to this
/// process and call, so parallel tests and leftovers never collide.
pub fn unique_name(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("ts{tag}{}x{n}", std::process::id() % 100_000)
}

/// The one `tsusen: error:` line of a command that must have failed: every
/// mistake a user can make gets exactly one, and a non-zero exit.
pub fn one_error_line(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "must exit non-zero");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("tsusen: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line, got: {stderr}");
    errors[0].to_owned()
}

/// Run a program, panic with its output on failure, return its stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    run_command(std::process::Command::new(program).args(args))
}

/// [`run`] for a command with more than arguments (environment, directory).
pub fn run_command(command: &mut std::process::Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub mod clickhouse;
pub mod kernel;
pub mod live;
pub mod packet;
pub mod pcapgen;
