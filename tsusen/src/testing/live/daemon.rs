//! `tsusen run` as a child process: its log lines (the `ready` line, flush
//! lines, errors), signals and exit, and its metrics endpoint.

use std::{
    collections::BTreeMap,
    io::{self, BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::{Child, ExitStatus, Stdio},
    sync::{Arc, Condvar, Mutex},
    thread,
    time::{Duration, Instant},
};

use super::in_netns;
use crate::testing::Netns;

/// How long a daemon may take from spawn to its `ready` line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a daemon may take to exit after SIGTERM (final drain and flush).
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

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
        Self::spawn_with_env(label, bin, ns, args, &[])
    }

    /// [`Daemon::spawn`] with more environment variables.
    pub fn spawn_with_env(
        label: &str,
        bin: &str,
        ns: &Netns,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Daemon {
        eprintln!("[{label}] $ {bin} {}", args.join(" "));
        let mut command = ns.command(bin);
        command.args(args).envs(env.iter().copied());
        Self::spawn_command(label, command)
    }

    /// `bin args` in the test's own namespace, with RUST_LOG=info: a
    /// process that talks to servers on the host's loopback (`tsusen ship`
    /// to a test ClickHouse).
    pub fn spawn_here(label: &str, bin: &str, args: &[String]) -> Daemon {
        eprintln!("[{label}] $ {bin} {}", args.join(" "));
        let mut command = std::process::Command::new(bin);
        command.args(args);
        Self::spawn_command(label, command)
    }

    fn spawn_command(label: &str, mut command: std::process::Command) -> Daemon {
        let mut child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
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
                more || self.flushes().len() > after,
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
    fn metrics_parse() {
        let text = "# HELP x\ntsusen_candidates_total{proto=\"tcp\"} 5\ntsusen_pending_rows 0\n";
        assert_eq!(
            metric(text, "tsusen_candidates_total{proto=\"tcp\"}"),
            Some(5.0)
        );
        assert_eq!(metric(text, "tsusen_pending_rows"), Some(0.0));
        assert_eq!(metric(text, "tsusen_pending"), None);
    }
}
