//! The container deployment end to end: a `FROM scratch` image holding only
//! tsusen (built from local files: no registry is reachable here), run with
//! podman as a privileged container joined to a test namespace, the out-dir
//! and a bpffs mounted in as volumes. A real scan from the peer namespace
//! must become rows in the mounted out-dir, and `podman stop` (SIGTERM) must
//! drain, detach, unpin and exit 0. The container, the image, the mounts,
//! the namespaces and the temp files go away on success and on failure.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use tsusen::{
    skip_unless,
    testing::{
        TestNet,
        live::{self, Scratch},
        unique_name,
    },
};

const TSUSEN: &str = env!("CARGO_BIN_EXE_tsusen");

/// The static binary `cargo xtask image --local` builds, when it is there and
/// not older than the test's own binary; else the test's binary, with the
/// shared libraries `ldd` names copied next to it into the image.
fn image_binary() -> (PathBuf, bool) {
    if let Some(path) = std::env::var_os("TSUSEN_IMAGE_BINARY") {
        return (path.into(), true);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let fresh = target.join("x86_64-unknown-linux-gnu/release/tsusen");
    let mtime = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    match (mtime(&fresh), mtime(Path::new(TSUSEN))) {
        (Some(static_time), Some(test_time)) if static_time >= test_time => (fresh, true),
        _ => (TSUSEN.into(), false),
    }
}

/// Run podman with this test's containers.conf (no default ulimits, which
/// fail here without CAP_SYS_RESOURCE) and runc (crun fails on this cgroup
/// layout); see the guide's "Containers here".
fn podman(conf: &Path, args: &[&str]) -> Output {
    Command::new("podman")
        .env("CONTAINERS_CONF", conf)
        .args(["--runtime", "runc"])
        .args(args)
        .output()
        .expect("podman")
}

fn podman_ok(conf: &Path, args: &[&str]) -> String {
    let out = podman(conf, args);
    assert!(
        out.status.success(),
        "podman {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The image, the container and the temp dir; removed on drop.
struct Deployment {
    dir: PathBuf,
    conf: PathBuf,
    image: String,
    container: String,
}

impl Deployment {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique_name("ctr"));
        let context = dir.join("context");
        fs::create_dir_all(context.join("root")).unwrap();
        let conf = dir.join("containers.conf");
        fs::write(&conf, "[containers]\ndefault_ulimits = []\n").unwrap();
        let name = unique_name("c");
        let deployment = Deployment {
            dir,
            conf,
            image: format!("localhost/tsusen-test:{name}"),
            container: name,
        };
        // The image: the binary as /tsusen (and, when it is not static, the
        // loader and libraries at their paths).
        let (binary, is_static) = image_binary();
        fs::copy(&binary, context.join("root/tsusen")).unwrap();
        if !is_static {
            let ldd = live_run("ldd", &[binary.to_str().unwrap()]);
            for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
                let to = context.join("root").join(lib.trim_start_matches('/'));
                fs::create_dir_all(to.parent().unwrap()).unwrap();
                fs::copy(lib, &to).unwrap();
            }
        }
        fs::write(
            context.join("Containerfile"),
            "FROM scratch\nCOPY root/ /\nENTRYPOINT [\"/tsusen\"]\n",
        )
        .unwrap();
        podman_ok(
            &deployment.conf,
            &[
                "build",
                "--quiet",
                "--tag",
                &deployment.image,
                context.to_str().unwrap(),
            ],
        );
        deployment
    }

    fn logs(&self) -> String {
        let out = podman(&self.conf, &["logs", &self.container]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn wait_log(&self, what: impl Fn(&str) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.logs().lines().any(&what) {
                return true;
            }
            thread::sleep(Duration::from_millis(200));
        }
        false
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = podman(
            &self.conf,
            &["rm", "--force", "--time", "5", &self.container],
        );
        let _ = podman(&self.conf, &["rmi", "--force", &self.image]);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn live_run(program: &str, args: &[&str]) -> String {
    tsusen::testing::run(program, args)
}

#[test]
fn a_scratch_image_records_a_scan_into_a_mounted_out_dir() {
    let why = live::why_not(&["podman", "runc", "ldd"]);
    skip_unless!(why.is_empty(), &why);
    let _serial = live::serial();
    scan_in_a_container(&["--privileged"]);
}

/// README.md#deploy's minimum instead of --privileged: three capabilities,
/// and seccomp lifted (podman's default profile refuses bpf() without
/// CAP_SYS_ADMIN, which `tsusen check` in the container reports).
#[test]
fn the_documented_minimum_capabilities_suffice() {
    let why = live::why_not(&["podman", "runc", "ldd"]);
    skip_unless!(why.is_empty(), &why);
    let _serial = live::serial();
    let caps = [
        "--cap-drop",
        "ALL",
        "--cap-add",
        "BPF",
        "--cap-add",
        "PERFMON",
        "--cap-add",
        "NET_ADMIN",
    ];
    scan_in_a_container(&[&caps[..], &["--security-opt", "seccomp=unconfined"]].concat());

    // Without lifting seccomp, check names bpf() as refused, and the fix.
    let net = TestNet::new();
    let deployment = Deployment::new();
    let network = format!("ns:/run/netns/{}", net.sensor.name);
    let mut args = vec!["run", "--name", &deployment.container];
    args.extend(caps);
    args.extend([
        "--network",
        &network,
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1000:1000",
        &deployment.image,
        "check",
        "--iface",
        "lo",
    ]);
    let out = podman(&deployment.conf, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let bpf = stdout
        .lines()
        .find(|l| l.contains(" bpf: "))
        .unwrap_or_else(|| panic!("no bpf line: {stdout}"));
    assert!(
        bpf.starts_with("MISSING") && bpf.contains("seccomp=unconfined"),
        "{bpf}"
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("ok       privileges")),
        "{stdout}"
    );
}

/// Run the image with `privileges` in the sensor's namespace, scan it from
/// the peer, find the rows, stop it cleanly.
fn scan_in_a_container(privileges: &[&str]) {
    let net = TestNet::new();
    let scratch = Scratch::new();
    let deployment = Deployment::new();
    let out_dir = scratch.out_dir();
    let bpf = scratch.dir.join("bpf");
    let volume_out = format!("{}:/var/log/tsusen", out_dir.display());
    let volume_bpf = format!("{}:/sys/fs/bpf", bpf.display());
    let network = format!("ns:/run/netns/{}", net.sensor.name);
    let mut args = vec!["run", "--detach", "--name", &deployment.container];
    args.extend(privileges);
    args.extend([
        "--network",
        &network,
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1000:1000",
        "--volume",
        &volume_out,
        "--volume",
        &volume_bpf,
        &deployment.image,
        "run",
        "--iface",
        &net.sensor_if,
        "--flush-interval",
        "1s",
    ]);
    podman_ok(&deployment.conf, &args);
    assert!(
        deployment.wait_log(live::is_ready_line, live::READY_TIMEOUT),
        "no ready line:\n{}",
        deployment.logs()
    );
    assert!(live::xdp_attached(&net.sensor, &net.sensor_if));
    // The default pin-dir, /sys/fs/bpf/tsusen, is the test's bpffs.
    assert!(bpf.join("tsusen").is_dir(), "{}", deployment.logs());

    let ports = [22, 80, 443, 3389];
    live::syns_from(&net.peer, TestNet::SENSOR_IP, &ports);
    let rows = live::wait_rows(&out_dir, ports.len(), Duration::from_secs(20));
    assert!(rows >= ports.len(), "{rows} rows:\n{}", deployment.logs());
    let tuples: Vec<_> = live::all_rows(&out_dir).iter().map(|r| r.tuple()).collect();
    for port in ports {
        let want = live::tuple("TCP", Some(port), TestNet::PEER_IP, TestNet::SENSOR_IP);
        assert!(tuples.contains(&want), "{want:?} not in {tuples:?}");
    }

    // podman stop sends SIGTERM: a clean exit that detaches and unpins.
    podman_ok(
        &deployment.conf,
        &["stop", "--time", "30", &deployment.container],
    );
    let code = podman_ok(
        &deployment.conf,
        &[
            "inspect",
            "--format",
            "{{.State.ExitCode}}",
            &deployment.container,
        ],
    );
    assert_eq!(code.trim(), "0", "{}", deployment.logs());
    assert!(
        deployment.logs().contains("detached and unpinned"),
        "{}",
        deployment.logs()
    );
    assert!(!live::xdp_attached(&net.sensor, &net.sensor_if));
    assert!(!bpf.join("tsusen").exists(), "pins left behind");
}
