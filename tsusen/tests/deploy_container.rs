//! The container deployment end to end: packaging/Containerfile's run stage
//! (`FROM scratch`, its labels, stop signal and entry point) holding only
//! tsusen (built from local files: no registry is reachable here), run with
//! podman as a container joined to a test namespace, the out-dir and a bpffs
//! mounted in as volumes. A real scan from the peer namespace must become
//! rows in the mounted out-dir, and `podman stop` (SIGTERM) must drain,
//! detach, unpin and exit 0. The same for the pod of
//! packaging/tsusen-daemonset.yaml under `podman kube play`. Also: the
//! build-context ignore file and the pinned base image. The containers, the
//! images, the mounts, the namespaces and the temp files go away on success
//! and on failure.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tsusen::{
    live_test, skip_unless,
    testing::{
        TestNet,
        live::{self, Live},
        unique_name,
    },
};

const TSUSEN: &str = env!("CARGO_BIN_EXE_tsusen");

fn packaging(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging")
        .join(name)
}

/// packaging/Containerfile's run stage (from its last `FROM`), taking the
/// binary from `root/` in the context instead of the build stage (as
/// `cargo xtask image --local` does).
fn run_stage() -> String {
    let text = fs::read_to_string(packaging("Containerfile")).unwrap();
    let start = text.rfind("\nFROM ").expect("a run stage") + 1;
    let copy = "COPY --from=build /tsusen /tsusen";
    let stage = &text[start..];
    assert!(
        stage.contains(copy),
        "no `{copy}` in the run stage:\n{stage}"
    );
    stage.replace(copy, "COPY root/ /")
}

/// The static binary `cargo xtask image --local` builds, when it is there and
/// not older than the test's own binary; else the test's binary, with the
/// shared libraries `ldd` names copied next to it into the image.
fn image_binary() -> (PathBuf, bool) {
    if let Some(path) = std::env::var_os("TSUSEN_IMAGE_BINARY") {
        return (path.into(), true);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
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
fn podman_command(conf: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("podman");
    command
        .env("CONTAINERS_CONF", conf)
        .args(["--runtime", "runc"])
        .args(args);
    command
}

fn podman(conf: &Path, args: &[&str]) -> Output {
    podman_command(conf, args).output().expect("podman")
}

fn podman_ok(conf: &Path, args: &[&str]) -> String {
    tsusen::testing::run_command(&mut podman_command(conf, args))
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
        fs::write(context.join("Containerfile"), run_stage()).unwrap();
        let version = format!("VERSION={}", env!("CARGO_PKG_VERSION"));
        podman_ok(
            &deployment.conf,
            &[
                "build",
                "--quiet",
                "--build-arg",
                &version,
                "--build-arg",
                "REVISION=test",
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
    let live = live_test!(&["podman", "runc", "ldd"]);
    scan_in_a_container(&live, &["--privileged"]);
}

/// README.md#deploy's minimum instead of --privileged: three capabilities,
/// and seccomp lifted (podman's default profile refuses bpf() without
/// CAP_SYS_ADMIN, which `tsusen check` in the container reports).
#[test]
fn the_documented_minimum_capabilities_suffice() {
    let live = live_test!(&["podman", "runc", "ldd"]);
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
    scan_in_a_container(
        &live,
        &[&caps[..], &["--security-opt", "seccomp=unconfined"]].concat(),
    );

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
fn scan_in_a_container(live: &Live, privileges: &[&str]) {
    let (net, scratch) = (&live.net, &live.scratch);
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
    let tuples: Vec<_> = live::all_rows(&out_dir)
        .iter()
        .map(tsusen::testing::live::DayRow::tuple)
        .collect();
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

/// Every base image of packaging/Containerfile is pinned by digest, directly
/// or through the `ARG` its `FROM` names.
#[test]
fn the_base_image_is_pinned_by_digest() {
    let text = fs::read_to_string(packaging("Containerfile")).unwrap();
    let arg = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("ARG {name}=")))
            .unwrap_or_else(|| panic!("no ARG {name}= default"))
            .to_owned()
    };
    let mut bases = 0;
    for line in text.lines().filter(|l| l.starts_with("FROM ")) {
        let image = line.split_whitespace().nth(1).unwrap();
        if image == "scratch" {
            continue;
        }
        let image = match image.strip_prefix("${").and_then(|i| i.strip_suffix('}')) {
            Some(name) => arg(name),
            None => image.to_owned(),
        };
        let digest = image.split_once("@sha256:").map_or_else(
            || panic!("{line}: {image} is not pinned by digest"),
            |(_, d)| d,
        );
        assert!(
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
            "{image}: not a sha256 digest"
        );
        bases += 1;
    }
    assert!(bases > 0, "no base image found");
}

#[test]
fn the_image_has_oci_labels_and_stops_with_sigterm() {
    let why = live::why_not(&["podman", "runc", "ldd"]);
    skip_unless!(why.is_empty(), &why);
    let deployment = Deployment::new();
    let inspect = |format: &str| {
        podman_ok(
            &deployment.conf,
            &["image", "inspect", "--format", format, &deployment.image],
        )
    };
    assert_eq!(inspect("{{.Config.StopSignal}}").trim(), "SIGTERM");
    let labels: Value = serde_json::from_str(&inspect("{{json .Config.Labels}}")).unwrap();
    for (key, want) in [
        ("title", Some("tsusen")),
        ("version", Some(env!("CARGO_PKG_VERSION"))),
        ("revision", Some("test")),
        ("licenses", Some("MIT OR Apache-2.0")),
        ("source", None),
        ("description", None),
    ] {
        let key = format!("org.opencontainers.image.{key}");
        let value = labels[&key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key}: {labels}"));
        if let Some(want) = want {
            assert_eq!(value, want, "{key}");
        }
    }
}

/// `podman build -f packaging/Containerfile .` at the workspace's top: the
/// ignore file beside the Containerfile keeps build output and git history
/// out of the context, and the sources in. Checked on a copy of the layout
/// with a probe Containerfile of the same name, whose image holds the
/// context.
#[test]
fn the_ignore_file_keeps_target_and_git_out_of_the_build_context() {
    let why = live::why_not(&["podman", "runc", "tar"]);
    skip_unless!(why.is_empty(), &why);
    let dir = std::env::temp_dir().join(unique_name("ctx"));
    let _cleanup = RemoveOnDrop(dir.clone());
    let workspace = dir.join("workspace");
    for file in [
        "Cargo.toml",
        "tsusen/src/lib.rs",
        "packaging/tsusen.toml",
        "target/debug/tsusen",
        "target/release/build/huge",
        "tsusen-ebpf/target/bpfel-unknown-none/release/tsusen",
        ".git/HEAD",
        ".git/objects/pack/pack-1.pack",
    ] {
        let path = workspace.join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, file).unwrap();
    }
    fs::copy(
        packaging("Containerfile.containerignore"),
        workspace.join("packaging/Containerfile.containerignore"),
    )
    .unwrap();
    fs::write(
        workspace.join("packaging/Containerfile"),
        "FROM scratch\nCOPY . /context/\nENTRYPOINT [\"/none\"]\n",
    )
    .unwrap();
    let conf = dir.join("containers.conf");
    fs::write(&conf, "[containers]\ndefault_ulimits = []\n").unwrap();
    let name = unique_name("ign");
    let image = format!("localhost/tsusen-test:{name}");
    let out = Command::new("podman")
        .current_dir(&workspace)
        .env("CONTAINERS_CONF", &conf)
        .args(["build", "--quiet", "--tag", &image])
        .args(["-f", "packaging/Containerfile", "."])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _image = RemoveImageOnDrop {
        conf: conf.clone(),
        container: name.clone(),
        image: image.clone(),
    };
    podman_ok(&conf, &["create", "--name", &name, &image]);
    let tar = dir.join("image.tar");
    podman_ok(&conf, &["export", "--output", tar.to_str().unwrap(), &name]);
    let listing = live_run("tar", &["-tf", tar.to_str().unwrap()]);
    let files: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.trim_start_matches("./").strip_prefix("context/"))
        .filter(|l| !l.ends_with('/'))
        .collect();
    for kept in ["Cargo.toml", "tsusen/src/lib.rs", "packaging/tsusen.toml"] {
        assert!(files.contains(&kept), "{kept} left out: {files:?}");
    }
    for file in &files {
        assert!(
            !file.starts_with("target/")
                && !file.contains("/target/")
                && !file.starts_with(".git/"),
            "{file} was sent in the build context: {files:?}"
        );
    }
}

struct RemoveOnDrop(PathBuf);

struct RemoveImageOnDrop {
    conf: PathBuf,
    container: String,
    image: String,
}

impl Drop for RemoveImageOnDrop {
    fn drop(&mut self) {
        let _ = podman(&self.conf, &["rm", "--force", &self.container]);
        let _ = podman(&self.conf, &["rmi", "--force", &self.image]);
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The DaemonSet of packaging/tsusen-daemonset.yaml (a file of several
/// documents).
fn daemonset() -> Value {
    let text = fs::read_to_string(packaging("tsusen-daemonset.yaml")).unwrap();
    let documents: Vec<Value> = serde_norway::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("YAML"))
        .collect();
    let sets: Vec<&Value> = documents
        .iter()
        .filter(|d| d["kind"] == "DaemonSet")
        .collect();
    assert_eq!(sets.len(), 1, "one DaemonSet in {documents:?}");
    sets[0].clone()
}

/// What Kubernetes needs (a selector that matches the template), and what
/// the sensor does: the node's network, exactly three capabilities, no
/// seccomp filter, bpffs and the out-dir from the node, time to drain.
#[test]
fn the_daemonset_asks_for_what_the_sensor_needs() {
    let set = daemonset();
    assert_eq!(set["apiVersion"], "apps/v1");
    let template = &set["spec"]["template"];
    let labels = template["metadata"]["labels"].as_object().unwrap();
    for (key, value) in set["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(
            labels.get(key),
            Some(value),
            "selector {key} must match the pod's labels"
        );
    }
    let spec = &template["spec"];
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["dnsPolicy"], "ClusterFirstWithHostNet");
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace >= 300,
        "{grace} s: as long as the unit's TimeoutStopSec=5min"
    );
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let security = &container["securityContext"];
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    let mut add: Vec<&str> = security["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    add.sort_unstable();
    assert_eq!(add, ["BPF", "NET_ADMIN", "PERFMON"]);
    assert_eq!(security["seccompProfile"]["type"], "Unconfined");
    assert!(security["privileged"].is_null(), "not privileged");
    let annotation = format!(
        "container.seccomp.security.alpha.kubernetes.io/{}",
        container["name"].as_str().unwrap()
    );
    assert_eq!(
        template["metadata"]["annotations"][&annotation],
        "unconfined"
    );
    // hostPath volumes mounted where the sensor's defaults are.
    for (host, mount) in [
        ("/sys/fs/bpf", "/sys/fs/bpf"),
        ("/var/log/tsusen", "/var/log/tsusen"),
    ] {
        let volume = spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["hostPath"]["path"] == host)
            .unwrap_or_else(|| panic!("no hostPath {host}"));
        assert!(
            container["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["name"] == volume["name"] && m["mountPath"] == mount),
            "{host} is not mounted at {mount}"
        );
    }
}

/// The pod removed on drop.
struct Pod {
    conf: PathBuf,
    name: String,
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = podman(
            &self.conf,
            &["pod", "rm", "--force", "--time", "5", &self.name],
        );
    }
}

/// The DaemonSet's pod template as a Pod for `podman kube play` (podman 4.3
/// plays Pods and Deployments, not DaemonSets), changed only where a test
/// must: the test's image and directories, the test's interface, 1 s
/// flushes, no restart, no port declaration (refused by podman with the
/// host's network). Its hostNetwork is the test namespace: podman runs
/// in it (nsenter), and "the host's network" is that of podman.
#[test]
fn the_daemonset_pod_records_a_scan_and_drains_within_its_grace_period() {
    let live = live_test!(&["podman", "runc", "ldd", "nsenter", "catatonit"]);
    let (net, scratch) = (&live.net, &live.scratch);
    let deployment = Deployment::new();
    let set = daemonset();
    let template = &set["spec"]["template"];
    let grace = template["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap();

    let mut spec = template["spec"].clone();
    spec["restartPolicy"] = json!("Never");
    let container = &mut spec["containers"][0];
    container["image"] = json!(deployment.image);
    container["imagePullPolicy"] = json!("Never");
    // podman 4.3 refuses port declarations with the host's network
    // (Kubernetes takes them as information there); the port is still the
    // one the args open, scraped below.
    container.as_object_mut().unwrap().remove("ports");
    let args = container["args"].as_array_mut().unwrap();
    for arg in ["--iface", &net.sensor_if, "--flush-interval", "1s"] {
        args.push(json!(arg));
    }
    let bpf = scratch.dir.join("bpf");
    let out_dir = scratch.out_dir();
    // The metrics Secret, as a file on the "node".
    let token = "test-token-for-the-daemonset";
    let auth_dir = scratch.dir.join("metrics-auth");
    fs::create_dir_all(&auth_dir).unwrap();
    fs::write(auth_dir.join("credentials"), format!("{token}\n")).unwrap();
    for volume in spec["volumes"].as_array_mut().unwrap() {
        if volume["secret"]["secretName"] == json!("tsusen-metrics") {
            *volume = json!({
                "name": volume["name"],
                "hostPath": { "path": auth_dir, "type": "Directory" },
            });
            continue;
        }
        let path = &mut volume["hostPath"]["path"];
        *path = match path.as_str().unwrap() {
            "/sys/fs/bpf" => json!(bpf),
            "/var/log/tsusen" => json!(out_dir),
            other => panic!("a hostPath the test does not know: {other}"),
        };
    }
    let pod = Pod {
        conf: deployment.conf.clone(),
        name: unique_name("pod"),
    };
    let manifest = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod.name,
            "labels": template["metadata"]["labels"],
            "annotations": template["metadata"]["annotations"],
        },
        "spec": spec,
    });
    // JSON is YAML.
    let file = deployment.dir.join("pod.yaml");
    fs::write(&file, manifest.to_string()).unwrap();
    let netns = format!("--net=/run/netns/{}", net.sensor.name);
    let out = Command::new("nsenter")
        .env("CONTAINERS_CONF", &deployment.conf)
        .args([&netns, "podman", "--runtime", "runc", "kube", "play"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "podman kube play: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let container = format!("{}-tsusen", pod.name);
    let logs = || {
        let out = podman(&deployment.conf, &["logs", &container]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let deadline = Instant::now() + live::READY_TIMEOUT;
    while !logs().lines().any(live::is_ready_line) {
        assert!(Instant::now() < deadline, "no ready line:\n{}", logs());
        thread::sleep(Duration::from_millis(200));
    }
    assert!(live::xdp_attached(&net.sensor, &net.sensor_if));
    assert!(bpf.join("tsusen").is_dir(), "{}", logs());

    let ports = [22, 80, 443];
    live::syns_from(&net.peer, TestNet::SENSOR_IP, &ports);
    let rows = live::wait_rows(&out_dir, ports.len(), Duration::from_secs(20));
    assert!(rows >= ports.len(), "{rows} rows:\n{}", logs());
    // The metrics port the manifest opens, on the node's (here: the test
    // namespace's) network.
    assert!(
        live::fetch_metrics(&net.sensor, "127.0.0.1:9339").is_err(),
        "metrics served without the Secret's token"
    );
    let text = live::fetch_metrics_as(&net.sensor, "127.0.0.1:9339", Some(token)).expect("metrics");
    assert!(text.contains("tsusen_build_info"), "{text}");

    // Stopping the pod sends SIGTERM and waits the grace period (given
    // here: podman 4.3 does not read terminationGracePeriodSeconds).
    let time = grace.to_string();
    podman_ok(
        &deployment.conf,
        &["pod", "stop", "--time", &time, &pod.name],
    );
    let code = podman_ok(
        &deployment.conf,
        &["inspect", "--format", "{{.State.ExitCode}}", &container],
    );
    assert_eq!(code.trim(), "0", "{}", logs());
    assert!(logs().contains("detached and unpinned"), "{}", logs());
    assert!(!live::xdp_attached(&net.sensor, &net.sensor_if));
    assert!(!bpf.join("tsusen").exists(), "pins left behind");
}
