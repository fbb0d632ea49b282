//! Starting `tsusen serve` on an ephemeral loopback port, and a raw HTTP/1.1
//! client (raw, so tests can send paths no client library would).

#![allow(dead_code, reason = "each test crate uses a different part")]

pub(crate) mod browser;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

/// `tsusen report --dir DIR --out OUT`, which must succeed.
pub(crate) fn write_report(dir: &Path, out: &Path) {
    tsusen::testing::run_command(
        Command::new(env!("CARGO_BIN_EXE_tsusen"))
            .args(["report", "--dir"])
            .arg(dir)
            .arg("--out")
            .arg(out),
    );
}

/// A fresh directory under the target dir, unique per test.
pub(crate) fn tempdir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("report-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) struct Server {
    pub addr: SocketAddr,
    child: Child,
}

impl Server {
    /// `tsusen serve --dir DIR --listen 127.0.0.1:0 --refresh 1 EXTRA...`,
    /// with `TSUSEN_AUTH` only as given in `env`.
    pub(crate) fn start(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_with(Command::new(env!("CARGO_BIN_EXE_tsusen")), dir, extra, env)
    }

    /// The same, under `prlimit --nofile=N:N` (soft and hard open-files limit).
    pub(crate) fn start_with_nofile(dir: &Path, extra: &[&str], nofile: u64) -> Server {
        let mut cmd = Command::new("prlimit");
        cmd.arg(format!("--nofile={nofile}:{nofile}"))
            .arg(env!("CARGO_BIN_EXE_tsusen"));
        Server::start_with(cmd, dir, extra, &[])
    }

    /// `tsusen serve SOURCE... --listen 127.0.0.1:0 --refresh 1` for another
    /// source than `--dir` (`--clickhouse URL ...`).
    pub(crate) fn start_from(source: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tsusen"));
        cmd.arg("serve").args(source);
        Server::spawn(cmd, &[], env)
    }

    fn start_with(mut cmd: Command, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        cmd.args(["serve", "--dir"]).arg(dir);
        Server::spawn(cmd, extra, env)
    }

    fn spawn(mut cmd: Command, extra: &[&str], env: &[(&str, &str)]) -> Server {
        cmd.args(["--listen", "127.0.0.1:0", "--refresh", "1"])
            .args(extra)
            .env_remove("TSUSEN_AUTH")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start tsusen serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("tsusen serve announces its address");
        let addr = line
            .trim()
            .strip_prefix("tsusen: serving http://")
            .and_then(|rest| rest.strip_suffix('/'))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Server { addr, child }
    }

    pub(crate) fn url(&self, target: &str) -> String {
        format!("http://{}{target}", self.addr)
    }

    pub(crate) fn get(&self, target: &str) -> Response {
        self.get_with(target, &[])
    }

    pub(crate) fn get_with(&self, target: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        for (k, v) in headers {
            request.extend([k, ": ", v, "\r\n"]);
        }
        request.push_str("\r\n");
        raw(self.addr, request.as_bytes())
    }

    pub(crate) fn json(&self, target: &str) -> serde_json::Value {
        let r = self.get(target);
        assert_eq!(r.status, 200, "{target}: {}", r.body);
        assert!(
            r.header("content-type")
                .unwrap()
                .starts_with("application/json")
        );
        serde_json::from_str(&r.body).unwrap()
    }
}

impl Server {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Send bytes as they are, read the whole response (the server closes).
pub(crate) fn raw(addr: SocketAddr, request: &[u8]) -> Response {
    exchange(
        TcpStream::connect(addr).unwrap(),
        request,
        Duration::from_secs(30),
    )
}

/// [`raw`] from the local address `from` (e.g. 127.0.0.2).
pub(crate) fn raw_from(from: std::net::IpAddr, addr: SocketAddr, request: &[u8]) -> Response {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    exchange(socket.into(), request, Duration::from_secs(30))
}

/// [`raw`] waiting up to `patience` for the answer (behind queued connections).
pub(crate) fn raw_patient(addr: SocketAddr, request: &[u8], patience: Duration) -> Response {
    exchange(TcpStream::connect(addr).unwrap(), request, patience)
}

fn exchange(mut stream: TcpStream, request: &[u8], patience: Duration) -> Response {
    stream.set_read_timeout(Some(patience)).unwrap();
    stream.write_all(request).unwrap();
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let mut response = Response {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    };
    if response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        response.body = dechunk(&response.body);
    }
    response
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}
