//! The live sensor end to end: `tsusen run` as a child process inside a test
//! namespace, fed by real tools (nmap, masscan, kernel sockets) from the peer
//! namespace, and checked only through what a user sees: the day files, the
//! log lines on stderr, the exit status, the metrics endpoint and whether an
//! XDP program is left on the interface.
//!
//! Everything here cleans up after itself on success and on panic: the daemon
//! and traffic tools are killed in `Drop`, mounts are detached and the scratch
//! directory removed. Nothing is sent outside the test namespaces.

use std::{
    collections::{BTreeMap, HashSet},
    fs,
    io::{self, BufRead as _, BufReader, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

use super::{Netns, TestNet, have_program, is_root, run, unique_name};

/// How long a daemon may take from spawn to its `ready` line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a daemon may take to exit after SIGTERM (final drain and flush).
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// The header line of every day file.
pub use crate::store::row::HEADER;

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
}

impl Live {
    pub fn new(bin: &str) -> Self {
        Live {
            net: TestNet::new(),
            scratch: Scratch::new(),
            bin: bin.to_owned(),
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
    use std::os::unix::ffi::OsStrExt as _;

    use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_map_type};
    let bpf = |cmd: bpf_cmd, attr: &mut bpf_attr| {
        let fd =
            crate::capture::force::bpf(cmd, attr).unwrap_or_else(|err| panic!("{cmd:?}: {err}"));
        fd as i32
    };
    // SAFETY: plain integers: all-zero is valid.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.__bindgen_anon_1.map_type = bpf_map_type::BPF_MAP_TYPE_ARRAY as u32;
    attr.__bindgen_anon_1.key_size = 4;
    attr.__bindgen_anon_1.value_size = 4;
    attr.__bindgen_anon_1.max_entries = 1;
    let fd = bpf(bpf_cmd::BPF_MAP_CREATE, &mut attr);
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: as above.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.__bindgen_anon_4.pathname = c_path.as_ptr() as u64;
    attr.__bindgen_anon_4.bpf_fd = fd.cast_unsigned();
    bpf(bpf_cmd::BPF_OBJ_PIN, &mut attr);
    // SAFETY: our fd; the pin holds the map from now on.
    unsafe { libc::close(fd) };
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

#[derive(Default)]
struct LogState {
    lines: Vec<String>,
    closed: bool,
}

#[derive(Default)]
struct Log {
    state: Mutex<LogState>,
    changed: Condvar,
}

/// A `tsusen run` child process; its stderr is collected line by line (and
/// echoed, so a failing test shows it). Killed with SIGKILL when dropped.
pub struct Daemon {
    pub label: String,
    child: Child,
    log: Arc<Log>,
    reader: Option<thread::JoinHandle<()>>,
    status: Option<ExitStatus>,
    pub spawned_at: Instant,
}

impl Daemon {
    /// `ip netns exec <ns> <bin> <args>` with RUST_LOG=info. `ip netns exec`
    /// execs the program, so the child's pid is the daemon's.
    pub fn spawn(label: &str, bin: &str, ns: &Netns, args: &[String]) -> Daemon {
        eprintln!("[{label}] $ {bin} {}", args.join(" "));
        let mut child = ns
            .command(bin)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        let spawned_at = Instant::now();
        let log = Arc::new(Log::default());
        let stderr = child.stderr.take().unwrap();
        let reader = {
            let log = Arc::clone(&log);
            let label = label.to_owned();
            thread::spawn(move || {
                let mut stderr = BufReader::new(stderr);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match stderr.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let line = String::from_utf8_lossy(&buf).trim_end().to_owned();
                    eprintln!("[{label}] {line}");
                    log.state.lock().unwrap().lines.push(line);
                    log.changed.notify_all();
                }
                log.state.lock().unwrap().closed = true;
                log.changed.notify_all();
            })
        };
        Daemon {
            label: label.to_owned(),
            child,
            log,
            reader: Some(reader),
            status: None,
            spawned_at,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id().cast_signed()
    }

    /// Every stderr line so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.state.lock().unwrap().lines.clone()
    }

    /// The last lines, for a failure message.
    pub fn tail(&self) -> String {
        let lines = self.lines();
        let start = lines.len().saturating_sub(25);
        lines[start..].join("\n")
    }

    /// Wait until a stderr line at index >= `from` satisfies `pred`; returns
    /// it, or `None` at the timeout or when stderr closes (the daemon exited).
    pub fn wait_line_from(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut state = self.log.state.lock().unwrap();
        let mut seen = from;
        loop {
            if let Some(line) = state.lines.iter().skip(seen).find(|l| pred(l)) {
                return Some(line.clone());
            }
            seen = seen.max(state.lines.len());
            let now = Instant::now();
            if state.closed || now >= deadline {
                return None;
            }
            state = self
                .log
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Wait for the `ready` line; panic with the log if it does not come.
    pub fn wait_ready(&mut self) {
        if self
            .wait_line_from(0, READY_TIMEOUT, is_ready_line)
            .is_none()
        {
            let status = self.wait_exit(Duration::from_millis(200));
            panic!(
                "[{}] no `ready` line within {READY_TIMEOUT:?} (exit: {status:?}); log:\n{}",
                self.label,
                self.tail()
            );
        }
    }

    /// The `flush:` lines so far, parsed.
    pub fn flushes(&self) -> Vec<Flush> {
        self.lines()
            .iter()
            .filter_map(|l| Flush::parse(l))
            .collect()
    }

    /// Wait until there are more than `after` flush lines; returns the first
    /// new one. Panics with the log at the timeout.
    pub fn wait_flush_after(&self, after: usize, timeout: Duration) -> Flush {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.lines();
            let flushes: Vec<Flush> = lines.iter().filter_map(|l| Flush::parse(l)).collect();
            if flushes.len() > after {
                return flushes[after].clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let more = !left.is_zero()
                && self
                    .wait_line_from(lines.len(), left, |l| Flush::parse(l).is_some())
                    .is_some();
            assert!(
                !(!more && self.flushes().len() <= after),
                "[{}] no flush line #{} within {timeout:?}; log:\n{}",
                self.label,
                after + 1,
                self.tail()
            );
        }
    }

    /// Wait for the next flush line after now, then one more, so everything
    /// the kernel recorded before this call has been drained and written.
    pub fn wait_two_flushes(&self, timeout: Duration) -> Flush {
        let n = self.flushes().len();
        self.wait_flush_after(n, timeout);
        self.wait_flush_after(n + 1, timeout)
    }

    /// Send a signal (no-op once the daemon was reaped).
    pub fn signal(&self, signal: libc::c_int) {
        if self.status.is_none() {
            // SAFETY: kill(2) with our child's pid; it is not reaped yet, so the
            // pid cannot have been reused.
            unsafe { libc::kill(self.pid(), signal) };
        }
    }

    /// Poll for exit up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.status {
                return Some(status);
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                self.status = Some(status);
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait for the exit; panics if it does not exit in time.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        match self.wait_exit(EXIT_TIMEOUT) {
            Some(status) => status,
            None => panic!(
                "[{}] did not exit within {EXIT_TIMEOUT:?} of SIGTERM; log:\n{}",
                self.label,
                self.tail()
            ),
        }
    }

    /// SIGTERM, and assert a clean exit (status 0).
    pub fn terminate_cleanly(&mut self) {
        let status = self.terminate();
        assert!(
            status.success(),
            "[{}] exit after SIGTERM: {status}; log:\n{}",
            self.label,
            self.tail()
        );
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait_exit(Duration::from_secs(10))
            .expect("a SIGKILLed process exits");
    }

    /// Lines starting (after the env_logger prefix, if any) with
    /// `tsusen: error:`.
    pub fn error_lines(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| l.starts_with("tsusen: error:"))
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The message of an env_logger line (`[TIMESTAMP LEVEL ] message`), or the
/// whole line when it has no such prefix.
pub fn message(line: &str) -> &str {
    if line.starts_with('[')
        && let Some(end) = line.find("] ")
    {
        return &line[end + 2..];
    }
    line
}

/// Whether a log line is the `ready` line: the word `ready` (not as part of
/// another word like `already`).
pub fn is_ready_line(line: &str) -> bool {
    message(line)
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| word == "ready")
}

/// A `flush: key=value ...` log line.
#[derive(Clone, Debug)]
pub struct Flush {
    pub line: String,
    pub values: BTreeMap<String, String>,
}

impl Flush {
    pub fn parse(line: &str) -> Option<Flush> {
        let rest = message(line).strip_prefix("flush:")?;
        let values = rest
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_end_matches(',').to_owned()))
            .collect();
        Some(Flush {
            line: line.to_owned(),
            values,
        })
    }

    /// A numeric value; panics naming the line when it is missing.
    pub fn get(&self, key: &str) -> u64 {
        self.values
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("flush line has no numeric {key}=: {}", self.line))
    }
}

/// A parsed day-file row.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DayRow {
    pub proto: String,
    /// `None` for `-` (protocols without ports).
    pub port: Option<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub timestamp: i64,
}

/// (proto, port, src, dst): what "at most once per day file" is about.
pub type Tuple = (String, Option<u16>, IpAddr, IpAddr);

impl DayRow {
    pub fn tuple(&self) -> Tuple {
        (self.proto.clone(), self.port, self.src, self.dst)
    }
}

/// A tuple as the test expects it.
pub fn tuple(proto: &str, port: Option<u16>, src: &str, dst: &str) -> Tuple {
    (
        proto.to_owned(),
        port,
        src.parse().unwrap(),
        dst.parse().unwrap(),
    )
}

/// Unix seconds of 00:00 UTC on `date` (YYYY-MM-DD).
pub fn day_start(date: &str) -> i64 {
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .unwrap_or_else(|e| panic!("{date}: {e}"))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp()
}

/// Read one day file strictly: the header first, every line complete
/// (the file ends with '\n') and well formed, every timestamp inside the
/// file's UTC day, no tuple twice. Panics naming the file and line.
pub fn read_day_file(path: &Path) -> Vec<DayRow> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let name = path.display();
    assert!(text.ends_with('\n'), "{name}: does not end with a newline");
    let date = path.file_stem().unwrap().to_str().unwrap();
    let start = day_start(date);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(HEADER), "{name}: header");
    let mut rows = Vec::new();
    let mut seen = HashSet::new();
    for (i, line) in lines.enumerate() {
        let row = parse_row(line).unwrap_or_else(|| panic!("{name}:{}: bad row {line:?}", i + 2));
        assert!(
            (start..start + 86_400).contains(&row.timestamp),
            "{name}:{}: timestamp {} outside {date}",
            i + 2,
            row.timestamp
        );
        assert!(
            seen.insert(row.tuple()),
            "{name}:{}: tuple twice: {line}",
            i + 2
        );
        rows.push(row);
    }
    rows
}

fn parse_row(line: &str) -> Option<DayRow> {
    let fields: Vec<&str> = line.split(' ').collect();
    let [proto, port, src, dst, timestamp] = fields[..] else {
        return None;
    };
    if proto.is_empty() || !proto.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let port = match port {
        "-" => None,
        p => Some(p.parse().ok()?),
    };
    Some(DayRow {
        proto: proto.to_owned(),
        port,
        src: src.parse().ok()?,
        dst: dst.parse().ok()?,
        timestamp: timestamp.parse().ok()?,
    })
}

/// The day files (`YYYY-MM-DD.csv`) in `dir`, by date.
pub fn day_files(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut files = BTreeMap::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(date) = name.strip_suffix(".csv")
            && chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok()
        {
            files.insert(date.to_owned(), entry.path());
        }
    }
    files
}

/// Every row of every day file in `dir`, each file read strictly.
pub fn read_all_rows(dir: &Path) -> BTreeMap<String, Vec<DayRow>> {
    day_files(dir)
        .into_iter()
        .map(|(date, path)| (date, read_day_file(&path)))
        .collect()
}

/// All rows of all days in one list.
pub fn all_rows(dir: &Path) -> Vec<DayRow> {
    read_all_rows(dir).into_values().flatten().collect()
}

/// Complete data lines in the day files of `dir` right now (cheap, lenient:
/// for polling while the daemon writes).
pub fn count_rows(dir: &Path) -> usize {
    day_files(dir)
        .values()
        .map(|path| {
            let bytes = fs::read(path).unwrap_or_default();
            let lines = bytes.iter().filter(|&&b| b == b'\n').count();
            let header = usize::from(bytes.starts_with(HEADER.as_bytes()));
            lines.saturating_sub(header)
        })
        .sum()
}

/// Poll until the day files hold at least `n` rows or `timeout` passes;
/// returns the last count.
pub fn wait_rows(dir: &Path, n: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let count = count_rows(dir);
        if count >= n || Instant::now() >= deadline {
            return count;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Run `f` on a thread inside `ns` (sockets it opens live there).
pub fn in_netns<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|scope| {
        scope
            .spawn(|| {
                ns.enter_this_thread();
                f()
            })
            .join()
            .unwrap()
    })
}

/// A TCP connection attempt from `ns`: the kernel sends a real SYN. The
/// result is the connect's (refused when the target answers with RST).
pub fn connect_from(ns: &Netns, to: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    in_netns(ns, || TcpStream::connect_timeout(&to, timeout))
}

/// SYNs from `ns` to each of `ports` on `ip`; the target must answer (RST
/// or SYN-ACK), so each port gets exactly one SYN.
pub fn syns_from(ns: &Netns, ip: &str, ports: &[u16]) {
    let ip: IpAddr = ip.parse().unwrap();
    in_netns(ns, || {
        for &port in ports {
            match TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(2)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => panic!("SYN to {ip}:{port}: {e} (expected an answer)"),
            }
        }
    });
}

/// GET http://`addr`/metrics from inside `ns`; the body.
pub fn fetch_metrics(ns: &Netns, addr: &str) -> io::Result<String> {
    fetch_metrics_as(ns, addr, None)
}

/// [`fetch_metrics`] with a bearer token (`--metrics-auth-file`).
pub fn fetch_metrics_as(ns: &Netns, addr: &str, token: Option<&str>) -> io::Result<String> {
    let addr: SocketAddr = addr.parse().unwrap();
    let auth = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    in_netns(ns, || {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| io::Error::other(format!("no HTTP header end: {response:?}")))?;
        if head.split(' ').nth(1) != Some("200") {
            return Err(io::Error::other(format!("HTTP status: {head}")));
        }
        Ok(body.to_owned())
    })
}

/// The value of a sample in Prometheus text, `name` including its labels
/// exactly as written (e.g. `tsusen_candidates_total{proto="tcp"}`).
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let value = rest.strip_prefix(' ')?.split_whitespace().next()?;
        value.parse().ok()
    })
}

/// A UDP exchange from `ns`: send `payload` to `to` from an ephemeral port,
/// wait for the reply.
pub fn udp_query_from(ns: &Netns, bind: &str, to: SocketAddr) -> io::Result<Vec<u8>> {
    let bind: IpAddr = bind.parse().unwrap();
    in_netns(ns, || {
        let socket = UdpSocket::bind(SocketAddr::new(bind, 0))?;
        socket.set_read_timeout(Some(Duration::from_secs(3)))?;
        socket.send_to(b"tsusen-test query", to)?;
        let mut buf = [0u8; 1500];
        let (n, _) = socket.recv_from(&mut buf)?;
        Ok(buf[..n].to_vec())
    })
}

/// A child process killed (and reaped) when dropped: traffic tools.
pub struct ChildGuard {
    pub name: String,
    pub child: Child,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A masscan SYN sweep running in the peer namespace (see [`masscan`]).
pub struct Masscan<'a> {
    net: &'a TestNet,
    guard: ChildGuard,
    probes: u64,
    tx_before: u64,
    started: Instant,
    log: PathBuf,
}

/// What a finished sweep sent.
#[derive(Debug)]
pub struct Sweep {
    /// Frames that left the peer's interface during the sweep.
    pub frames: u64,
    /// From masscan's start to its first frame (`None` when the sweep had
    /// begun before [`Masscan::finish`] started watching) and its last.
    pub first_frame: Option<Duration>,
    pub last_frame: Duration,
    /// masscan's own status output.
    pub log: String,
}

impl Sweep {
    /// The achieved send rate, first frame to last.
    pub fn pps(&self) -> f64 {
        let first = self.first_frame.unwrap_or_default();
        let secs = self.last_frame.checked_sub(first).unwrap().as_secs_f64();
        if secs > 0.0 {
            self.frames as f64 / secs
        } else {
            f64::NAN
        }
    }
}

/// Start a masscan SYN sweep from the peer to `targets` x `ports` (`probes`
/// frames in all) at `rate` pps, framed for the sensor's MAC, from
/// `source_ip` (an address of neither namespace: nothing answers, so each
/// probe is sent exactly once). Its status output goes to a file in
/// `scratch` (which is also its working directory, for `paused.conf`).
pub fn masscan<'a>(
    net: &'a TestNet,
    targets: &str,
    ports: &str,
    probes: u64,
    rate: u32,
    source_ip: &str,
    scratch: &Path,
) -> Masscan<'a> {
    let mac = net.sensor_mac();
    let rate = rate.to_string();
    let args = [
        targets,
        "-p",
        ports,
        "--rate",
        &rate,
        "--router-mac",
        &mac,
        "-e",
        &net.peer_if,
        "--source-ip",
        source_ip,
        "--wait",
        "0",
    ];
    eprintln!("$ masscan {}", args.join(" "));
    let log = scratch.join(format!("{}.log", unique_name("masscan")));
    let tx_before = if_counters(&net.peer, &net.peer_if).tx_packets;
    let child = net
        .peer
        .command("masscan")
        .args(args)
        .current_dir(scratch)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("masscan: {e}"));
    Masscan {
        net,
        guard: ChildGuard {
            name: "masscan".into(),
            child,
        },
        probes,
        tx_before,
        started: Instant::now(),
        log,
    }
}

impl Masscan<'_> {
    /// Wait until every probe has left the peer's interface (its TX counter
    /// grew by at least the probe count, then stood still for 300 ms), then
    /// stop masscan. masscan 1.3.2 often does not exit by itself after a
    /// sweep (`waiting -N-secs`, counting down past zero for tens of
    /// seconds) while its receive thread waits for a packet that never
    /// comes, so its exit is no signal that the sweep is done.
    pub fn finish(mut self, timeout: Duration) -> Sweep {
        let (net, probes, before, started) = (self.net, self.probes, self.tx_before, self.started);
        let child = &mut self.guard.child;
        let (frames, first_frame, last_frame) = in_netns(&net.peer, || {
            let deadline = started + timeout;
            let (mut last, mut first_at, mut last_at) = (0, None, started.elapsed());
            // Only a sweep seen from before its first frame has a known start.
            let watched_from_start = read_counters(&net.peer_if).tx_packets == before;
            let mut still_since = Instant::now();
            loop {
                let sent = read_counters(&net.peer_if).tx_packets - before;
                let now = Instant::now();
                if sent != last {
                    if watched_from_start {
                        first_at.get_or_insert(now - started);
                    }
                    last_at = now - started;
                    last = sent;
                    still_since = now;
                }
                if sent >= probes && now - still_since >= Duration::from_millis(300) {
                    return (sent, first_at, last_at);
                }
                if let Ok(Some(status)) = child.try_wait()
                    && !status.success()
                {
                    return (sent, first_at, last_at);
                }
                assert!(
                    now < deadline,
                    "masscan sent {sent} of {probes} frames within {timeout:?}"
                );
                thread::sleep(Duration::from_millis(5));
            }
        });
        let exited = child.try_wait().ok().flatten();
        drop(self.guard);
        let log = fs::read_to_string(&self.log)
            .unwrap_or_default()
            .replace('\r', "\n");
        if let Some(status) = exited {
            assert!(status.success(), "masscan: {status}: {log}");
        }
        assert!(
            frames >= probes,
            "masscan sent {frames} of {probes} frames: {log}"
        );
        let sweep = Sweep {
            frames,
            first_frame,
            last_frame,
            log,
        };
        eprintln!(
            "masscan: {} frames, first at {:?}, last at {:.2?}: {:.0} pps",
            sweep.frames,
            sweep.first_frame,
            sweep.last_frame,
            sweep.pps()
        );
        sweep
    }
}

/// Packet counters of one interface.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub rx_packets: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_dropped: u64,
}

/// The counters of `ifname` in `ns` (from /proc/thread-self/net/dev on a
/// thread inside the namespace: no process to spawn, cheap to poll).
pub fn if_counters(ns: &Netns, ifname: &str) -> Counters {
    in_netns(ns, || read_counters(ifname))
}

/// The counters of `ifname` in the calling thread's namespace.
fn read_counters(ifname: &str) -> Counters {
    let text = fs::read_to_string("/proc/thread-self/net/dev").unwrap();
    for line in text.lines() {
        let Some((name, numbers)) = line.split_once(':') else {
            continue;
        };
        if name.trim() != ifname {
            continue;
        }
        let n: Vec<u64> = numbers
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        return Counters {
            rx_packets: n[1],
            rx_dropped: n[3],
            tx_packets: n[9],
            tx_dropped: n[11],
        };
    }
    panic!("no interface {ifname} in /proc/thread-self/net/dev:\n{text}");
}

/// Every (dst, port) of a masscan-style sweep of `net24` (a /24 given as
/// "a.b.c") x `ports`, as TCP tuples from `src`.
pub fn sweep_tuples(
    net24: &str,
    ports: std::ops::RangeInclusive<u16>,
    src: &str,
) -> HashSet<Tuple> {
    let src: IpAddr = src.parse().unwrap();
    let mut all = HashSet::new();
    for host in 0..=255u8 {
        let dst: IpAddr = format!("{net24}.{host}").parse().unwrap();
        for port in ports.clone() {
            all.insert(("TCP".to_owned(), Some(port), src, dst));
        }
    }
    all
}

/// Compare the rows' tuples to `expected`; a short, readable difference.
pub fn assert_tuples(rows: &[DayRow], expected: &HashSet<Tuple>, what: &str) {
    let got: HashSet<Tuple> = rows.iter().map(DayRow::tuple).collect();
    assert_eq!(got.len(), rows.len(), "{what}: a tuple appears twice");
    let missing: Vec<_> = expected.difference(&got).take(10).collect();
    let extra: Vec<_> = got.difference(expected).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} rows, {} expected; {} missing (first: {missing:?}); {} unexpected (first: {extra:?})",
        rows.len(),
        expected.len(),
        expected.difference(&got).count(),
        got.difference(expected).count(),
    );
}

/// Wall-clock Unix seconds now.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_recognised() {
        assert!(is_ready_line(
            "[2026-11-24T05:47:07Z INFO ] ready: attached to vs0 (native); draining every 1s"
        ));
        assert!(!is_ready_line(
            "tsusen: error: an XDP program is already attached to vs0; use --force"
        ));
        let flush = Flush::parse(
            "[2026-11-24T05:47:07Z INFO ] flush: packets=10 candidates=4 new_tuples=3 rows=3 evicted=0",
        )
        .unwrap();
        assert_eq!(flush.get("rows"), 3);
        assert_eq!(flush.get("packets"), 10);
        assert!(Flush::parse("[x INFO ] flushing soon").is_none());
    }

    #[test]
    fn rows_and_metrics_parse() {
        let row = parse_row("ICMP - 198.51.100.3 192.0.2.46 1446042324").unwrap();
        assert_eq!(row.port, None);
        assert_eq!(
            parse_row("TCP 8080 198.51.100.40 192.0.2.46 1446042553")
                .unwrap()
                .port,
            Some(8080)
        );
        assert!(parse_row("TCP 8080 198.51.100.40 192.0.2.46").is_none());
        assert!(parse_row("TCP 8080 198.51.100.40 192.0.2.46 14460425").is_some());
        assert!(parse_row("TCP 80800 198.51.100.40 192.0.2.46 1").is_none());
        let text = "# HELP x\ntsusen_candidates_total{proto=\"tcp\"} 5\ntsusen_pending_rows 0\n";
        assert_eq!(
            metric(text, "tsusen_candidates_total{proto=\"tcp\"}"),
            Some(5.0)
        );
        assert_eq!(metric(text, "tsusen_pending_rows"), Some(0.0));
        assert_eq!(metric(text, "tsusen_pending"), None);
        assert_eq!(day_start("2026-11-25"), 1_795_564_800);
    }
}
