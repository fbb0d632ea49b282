//! `tsusen serve` over real HTTP on loopback: the JSON endpoints, that no
//! request reads outside `--dir`, credentials, limits, live updates; and the
//! one-line errors of both report commands.

mod report_support;

use std::{
    io::Write as _,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use report_support::{Server, raw, raw_from, raw_patient, tempdir};
use tsusen::testing::one_error_line;
use tsusen::{
    dayfile::{Row, day_from_name},
    report::testdata::write_day,
};
use tsusen::{skip_unless, testing::have_program};

fn at(d: u16, secs: i64) -> i64 {
    i64::from(d) * 86_400 + secs
}

fn tcp(port: u16, src: &str, dst: &str, ts: i64) -> Row {
    Row {
        proto: 6,
        dst_port: port,
        src_ip: src.parse().unwrap(),
        dst_ip: dst.parse().unwrap(),
        timestamp: ts,
    }
}

fn src(i: u32) -> String {
    std::net::Ipv4Addr::from(0xc612_0000 + i).to_string()
}

const LAST: &str = "2026-02-28";

/// 29 days of TCP 23 around 20 sources, then 60 on 2026-02-28 (a spike);
/// TCP 22 with 12 sources each day; one UDP 53 row on the last day.
fn fixture(name: &str) -> PathBuf {
    let dir = tempdir(name);
    let last = day_from_name(LAST).unwrap();
    for i in 0..29u16 {
        let d = last - 28 + i;
        let n = if i == 28 { 60 } else { 18 + u32::from(i) % 5 };
        let mut rows: Vec<Row> = (0..n)
            .map(|s| tcp(23, &src(s), "192.0.2.1", at(d, 60)))
            .collect();
        rows.extend((0..12).map(|s| tcp(22, &src(1000 + s), "192.0.2.2", at(d, 30))));
        if i == 28 {
            rows.push(Row {
                proto: 17,
                dst_port: 53,
                src_ip: "198.51.100.53".parse().unwrap(),
                dst_ip: "192.0.2.1".parse().unwrap(),
                timestamp: at(d, 5),
            });
        }
        write_day(&dir, d, &rows).unwrap();
    }
    dir
}

#[test]
fn endpoints_return_the_expected_json() {
    let dir = fixture("serve-json");
    let server = Server::start(&dir, &[], &[]);

    let summary = server.json("/api/summary");
    assert_eq!(summary["last_day"], LAST);
    assert_eq!(summary["days"], 30);
    assert_eq!(summary["day_files"], 29);
    assert_eq!(summary["spikes"], 1);
    let rows: u64 = (0..28).map(|i| 18 + i % 5 + 12).sum::<u64>() + 60 + 12 + 1;
    assert_eq!(summary["rows"], rows);

    let trends = server.json("/api/trends");
    assert_eq!(trends["days"].as_array().unwrap().len(), 30);
    assert_eq!(trends["days"][29], LAST);
    assert_eq!(trends["series"][0]["label"], "TCP 23");
    assert_eq!(trends["series"][0]["counts"][29], 60);
    assert_eq!(trends["series"][0]["spikes"], serde_json::json!([LAST]));
    assert_eq!(trends["series"][1]["label"], "TCP 22");
    assert_eq!(trends["folded"], 1, "UDP 53: one source on one day");

    let spikes = server.json("/api/spikes");
    let spike = &spikes["spikes"][0];
    assert_eq!(
        (spike["date"].as_str(), spike["count"].as_u64()),
        (Some(LAST), Some(60))
    );
    assert_eq!(
        (spike["proto"].as_str(), spike["port"].as_u64()),
        (Some("TCP"), Some(23))
    );
    assert_eq!(spike["baseline"]["median"], 20.0);
    assert_eq!(spikes["spikes"].as_array().unwrap().len(), 1);

    let today = server.json("/api/today");
    assert_eq!(today["date"], LAST);
    assert_eq!(today["top_ports"][0]["label"], "TCP 23");
    assert_eq!(today["top_ports"][0]["sources"], 60);
    assert_eq!(today["new_ports"][0]["label"], "UDP 53");
    assert_eq!(today["new_ports_total"], 1);

    // 198.18.0.0/30 on port 23: four sources, each on all 29 days.
    let details = server.json("/api/details?ip=198.18.0.0/30&port=23&proto=tcp");
    assert_eq!(details["total"], 4);
    for row in details["rows"].as_array().unwrap() {
        assert_eq!(
            (row["proto"].as_str(), row["port"].as_u64()),
            (Some("TCP"), Some(23))
        );
        assert_eq!(row["days"], 29);
        assert_eq!(row["last_day"], LAST);
        assert_eq!(row["destinations"], 1);
    }
    let page = server.json("/api/details?offset=10&limit=5");
    assert_eq!(
        (page["offset"].as_u64(), page["limit"].as_u64()),
        (Some(10), Some(5))
    );
    assert_eq!(page["rows"].as_array().unwrap().len(), 5);
    assert_eq!(page["total"], 60 + 12 + 1);
    let capped = server.json("/api/details?limit=999999");
    assert_eq!(capped["limit"], 1000);

    let bad = server.get("/api/details?ip=198.18.0.0/99");
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("bad address filter"), "{}", bad.body);

    let day = server.json("/api/day/2026-02-28");
    assert_eq!(day["ports"][0]["label"], "TCP 23");
    assert_eq!(day["ports"][0]["sources"], 60);
    assert_eq!(server.get("/api/day/2026-13-01").status, 400);
    assert_eq!(
        server.get("/api/day/2026-2-28").status,
        400,
        "canonical dates only"
    );
    assert_eq!(server.get("/api/day/2020-01-01").status, 404);

    let page = server.get("/?port=22");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(
        page.body.contains("12 matching rows"),
        "server-side first page"
    );
    assert!(page.body.contains("<svg"));
    let svg = server.get("/chart.svg");
    assert_eq!(svg.header("content-type").as_deref(), Some("image/svg+xml"));
    assert!(svg.body.contains("TCP 23 (60)"));
    assert_eq!(server.get("/assets/app.js").status, 200);
    assert_eq!(server.get("/nope").status, 404);
}

/// Nothing a request says can make the server read outside `--dir`: files
/// beside it hold markers that must never appear in a response.
#[test]
fn no_request_reads_outside_the_directory() {
    let base = tempdir("serve-traversal");
    let dir = base.join("days");
    std::fs::create_dir(&dir).unwrap();
    let d = day_from_name(LAST).unwrap();
    write_day(&dir, d, &[tcp(23, &src(1), "192.0.2.1", at(d, 1))]).unwrap();
    // Beside --dir: a day file with a marker port and address, and a secret.
    write_day(
        &base,
        d - 1,
        &[tcp(31337, "203.0.113.250", "192.0.2.1", at(d - 1, 1))],
    )
    .unwrap();
    std::fs::write(base.join("secret.txt"), "SENTINEL-7f3a\n").unwrap();
    let server = Server::start(&dir, &[], &[]);
    let markers = ["SENTINEL", "31337", "203.0.113.250", "root:x:0"];

    let targets = [
        "/../secret.txt",
        "/../../../../etc/passwd",
        "/%2e%2e/secret.txt",
        "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/assets/../../secret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "//etc/passwd",
        "/etc/passwd",
        "/api/day/..%2f2026-02-27",
        "/api/day/../2026-02-27.csv",
        "/api/day/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/api/day/2026-02-27",
        "/api/day/2026-02-28%00.csv",
        "/2026-02-27.csv",
        "/2026-02-28.csv",
        "/api/details?ip=../secret.txt",
        "http://127.0.0.1/etc/passwd",
        "file:///etc/passwd",
    ];
    for target in targets {
        let r = raw(
            server.addr,
            format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        for marker in markers {
            assert!(!r.body.contains(marker), "{target}: {marker} in {}", r.body);
        }
        if target == "/api/day/2026-02-27" {
            // A shown day without a file in --dir: empty, though one exists beside it.
            assert_eq!(r.status, 200);
            assert!(
                r.body.contains(r#""day_file":false,"ports":[]"#),
                "{}",
                r.body
            );
        } else {
            assert_ne!(r.status, 200, "{target}: {}", r.body);
        }
    }
    // And the data itself shows only --dir's day.
    let summary = server.json("/api/summary");
    assert_eq!(summary["day_files"], 1);
    let all = server.json("/api/details?limit=1000");
    assert!(!all.to_string().contains("31337"));
}

#[test]
fn credentials_are_required_when_configured() {
    let dir = fixture("serve-auth");
    let basic = Server::start(&dir, &[], &[("TSUSEN_AUTH", "alice:s3cret")]);
    let r = basic.get("/api/summary");
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
    assert!(!r.body.contains("rows"));
    // alice:s3cret
    let ok = basic.get_with(
        "/api/summary",
        &[("Authorization", "Basic YWxpY2U6czNjcmV0")],
    );
    assert_eq!(ok.status, 200);
    // alice:wrong
    let wrong = basic.get_with(
        "/api/summary",
        &[("Authorization", "Basic YWxpY2U6d3Jvbmc=")],
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(basic.get("/").status, 401);

    let file = dir.join("..").join("serve-auth-token");
    std::fs::write(&file, "tok-123456\n").unwrap();
    let token = Server::start(&dir, &["--auth-file", file.to_str().unwrap()], &[]);
    assert_eq!(token.get("/api/today").status, 401);
    let ok = token.get_with("/api/today", &[("Authorization", "Bearer tok-123456")]);
    assert_eq!(ok.status, 200);
    let wrong = token.get_with("/api/today", &[("Authorization", "Bearer tok-12345")]);
    assert_eq!(wrong.status, 401);
}

#[test]
fn requests_are_limited() {
    let dir = fixture("serve-limits");
    let server = Server::start(&dir, &["--rate-limit", "3"], &[]);
    let post = raw(
        server.addr,
        b"POST /api/summary HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    );
    assert_eq!(post.status, 405);
    let body = raw(
        server.addr,
        b"GET /api/summary HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(body.status, 413);
    let long = server.get(&format!("/api/details?ip={}", "1".repeat(4000)));
    assert_eq!(long.status, 414);
    // A burst of twice the rate passes, then 429 until tokens refill.
    let statuses: Vec<u16> = (0..12).map(|_| server.get("/api/summary").status).collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(server.get("/api/summary").status, 200);
}

/// `GET path` with `Host: host`.
fn get_host(target: &str, host: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// DNS rebinding: a page of attacker.example that made its name resolve to
/// 127.0.0.1 sends `Host: attacker.example`; it gets nothing. An
/// absolute-form target is refused even when it names this server.
#[test]
fn the_host_header_must_name_this_server() {
    let dir = fixture("serve-host");
    let server = Server::start(&dir, &["--allow-host", "sensor.example.org"], &[]);
    let port = server.addr.port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("sensor.example.org:{port}"),
    ] {
        let r = raw(server.addr, &get_host("/api/summary", &host));
        assert_eq!(r.status, 200, "Host: {host}: {}", r.body);
    }
    for host in [
        "attacker.example".to_owned(),
        format!("attacker.example:{port}"),
        "localhost.attacker.example".to_owned(),
    ] {
        let r = raw(server.addr, &get_host("/api/summary", &host));
        assert_eq!(r.status, 421, "Host: {host}: {}", r.body);
        assert!(!r.body.contains("rows"), "Host: {host}: {}", r.body);
    }
    let no_host = raw(server.addr, b"GET /api/summary HTTP/1.0\r\n\r\n");
    assert_eq!(no_host.status, 421, "{}", no_host.body);
    let absolute = raw(
        server.addr,
        &get_host(
            &format!("http://127.0.0.1:{port}/api/summary"),
            &format!("127.0.0.1:{port}"),
        ),
    );
    assert_eq!(absolute.status, 400, "{}", absolute.body);
    assert!(!absolute.body.contains("rows"), "{}", absolute.body);
}

/// 400, 401, 405, 413, 414, 421 and 429 carry the same security headers as a page.
#[test]
fn every_response_carries_the_security_headers() {
    let dir = fixture("serve-headers");
    let server = Server::start(&dir, &["--rate-limit", "1"], &[("TSUSEN_AUTH", "tok-1")]);
    let host = server.addr.to_string();
    let mut responses = vec![
        server.get("/api/summary"),
        raw(
            server.addr,
            format!("POST /api/summary HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}").as_bytes(),
        ),
        raw(
            server.addr,
            format!("GET /api/summary HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello").as_bytes(),
        ),
        server.get(&format!("/api/details?ip={}", "1".repeat(4000))),
        raw(server.addr, &get_host("/api/summary", "attacker.example")),
        raw(
            server.addr,
            &get_host(&format!("http://{host}/api/summary"), &host),
        ),
    ];
    // Bursts of 2 at 1 per second: a few more requests meet the limit.
    for _ in 0..10 {
        let r = server.get("/api/summary");
        let limited = r.status == 429;
        responses.push(r);
        if limited {
            break;
        }
    }
    let mut statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    statuses.sort_unstable();
    statuses.dedup();
    assert_eq!(statuses, [400, 401, 405, 413, 414, 421, 429]);
    for r in &responses {
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.starts_with("default-src 'self'"), "{}: {csp:?}", r.head);
        assert_eq!(
            r.header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{}",
            r.head
        );
    }
}

/// Other loopback addresses are the same client: 127.0.0.2, 127.0.0.3, ...
/// do not each get a fresh bucket.
#[test]
fn other_loopback_addresses_share_the_rate_limit() {
    let dir = fixture("serve-loopback-limit");
    let server = Server::start(&dir, &["--rate-limit", "2"], &[]);
    let request = get_host("/api/summary", &server.addr.to_string());
    let statuses: Vec<u16> = (2..14u8)
        .map(|last| {
            let from = std::net::Ipv4Addr::new(127, 0, 0, last).into();
            raw_from(from, server.addr, &request).status
        })
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
}

/// Sockets `pid` holds open (connections and the listener).
fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// With 100 descriptors the server holds at most 25 connections (a quarter);
/// one that never finishes its headers is closed after the 10 s header
/// timeout, idle ones too, and a request queued behind them is then served.
#[test]
fn idle_and_half_open_connections_time_out_and_are_capped() {
    skip_unless!(have_program("prlimit"), "needs prlimit (util-linux)");
    let dir = fixture("serve-connections");
    let server = Server::start_with_nofile(&dir, &[], 100);
    // The listener and the runtime's own (signal) sockets.
    let baseline = sockets_of(server.pid());
    let mut half_open = std::net::TcpStream::connect(server.addr).unwrap();
    half_open
        .write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\n", server.addr).as_bytes())
        .unwrap();
    let idle: Vec<std::net::TcpStream> = (0..40)
        .map(|_| std::net::TcpStream::connect(server.addr).unwrap())
        .collect();
    // Closed by the server (EOF or reset), not by this read's own 60 s limit.
    half_open
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = [0u8; 512];
    match std::io::Read::read(&mut half_open, &mut buf) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the half-open connection stayed open: {e}"),
    }
    let held = sockets_of(server.pid());
    assert!(
        held <= baseline + 25,
        "{held} sockets (baseline {baseline}): connections beyond the cap"
    );
    let r = raw_patient(
        server.addr,
        &get_host("/api/summary", &server.addr.to_string()),
        Duration::from_secs(120),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    drop(idle);
}

#[test]
fn the_page_follows_the_growing_newest_file() {
    let dir = fixture("serve-live");
    let server = Server::start(&dir, &[], &[]);
    let before = server.json("/api/summary")["rows"].as_u64().unwrap();
    let path = dir.join(format!("{LAST}.csv"));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    let d = day_from_name(LAST).unwrap();
    for i in 0..5 {
        writeln!(f, "{}", tcp(8080, &src(5000 + i), "192.0.2.9", at(d, 99))).unwrap();
    }
    drop(f);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let summary = server.json("/api/summary");
        if summary["rows"].as_u64().unwrap() == before + 5 {
            break;
        }
        assert!(Instant::now() < deadline, "rows stayed {}", summary["rows"]);
        std::thread::sleep(Duration::from_millis(200));
    }
    let details = server.json("/api/details?port=8080");
    assert_eq!(details["total"], 5);
    let today = server.json("/api/today");
    assert!(
        today["new_ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["label"] == "TCP 8080")
    );
}

fn tsusen(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tsusen"))
        .args(args)
        .env_remove("TSUSEN_AUTH")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn user_errors_are_one_clear_line() {
    let dir = fixture("serve-errors");
    let d = dir.to_str().unwrap();
    let line = one_error_line(&tsusen(&["serve", "--dir", d, "--listen", "0.0.0.0:0"]));
    assert!(line.contains("refusing to listen on 0.0.0.0:0"), "{line}");
    assert!(
        line.contains("--auth-file") && line.contains("TSUSEN_AUTH"),
        "{line}"
    );
    let line = one_error_line(&tsusen(&["serve", "--dir", d, "--listen", "localhost"]));
    assert!(line.contains("bad --listen \"localhost\""), "{line}");
    let line = one_error_line(&tsusen(&["serve", "--dir", "/nonexistent/days"]));
    assert!(
        line.contains("cannot read directory /nonexistent/days"),
        "{line}"
    );
    let line = one_error_line(&tsusen(&[
        "serve",
        "--dir",
        d,
        "--auth-file",
        "/nonexistent/auth",
    ]));
    assert!(
        line.contains("cannot read --auth-file /nonexistent/auth"),
        "{line}"
    );

    let line = one_error_line(&tsusen(&[
        "report",
        "--dir",
        "/nonexistent/days",
        "--out",
        "/tmp/x.html",
    ]));
    assert!(
        line.contains("cannot read directory /nonexistent/days"),
        "{line}"
    );
    let line = one_error_line(&tsusen(&[
        "report",
        "--dir",
        d,
        "--out",
        "/nonexistent/r.html",
    ]));
    assert!(line.contains("cannot write /nonexistent/r.html"), "{line}");
}

#[test]
fn the_static_report_is_self_contained() {
    let dir = fixture("report-static");
    let out = dir.join("..").join("report-static.html");
    let status = tsusen(&[
        "report",
        "--dir",
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--details-rows",
        "20",
    ]);
    assert!(status.status.success(), "{status:?}");
    let html = std::fs::read_to_string(&out).unwrap();
    assert_no_urls(&html, None);
    assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none'"));
    assert!(!html.contains("<script"), "the static file has no script");
    assert!(!html.contains("<link"), "nor anything it would load");
    assert!(html.contains("TCP 23 (60)"), "legend of the top series");
    assert!(html.contains("<tr class=\"spike\"><td>2026-02-28</td><td>TCP</td>"));
    assert!(html.contains("The first 20 of 73 (protocol, port, source) rows"));
    let details = &html[html.find("id=\"details-table\"").unwrap()..];
    // The drill-down and destinations tables follow.
    let details = &details[..details.find("</table>").unwrap()];
    assert_eq!(
        details.matches("<tr>").count(),
        21,
        "header row and 20 rows"
    );
}

/// No `http://` or `https://` URL in a page except the server's own.
pub fn assert_no_urls(html: &str, own: Option<&str>) {
    for scheme in ["http://", "https://"] {
        for (i, _) in html.match_indices(scheme) {
            let url: String = html[i..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '"')
                .collect();
            assert!(
                own.is_some_and(|own| url.starts_with(own)),
                "external URL {url} in page"
            );
        }
    }
}
