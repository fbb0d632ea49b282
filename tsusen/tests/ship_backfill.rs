//! `tsusen ship` against a real ClickHouse (one node per test, started by
//! the test): a backfill of 30 generated days and of the original tsusen's
//! two formats; a crash with a batch in flight stores nothing twice, even on
//! a table that is not replicated; a day file truncated or replaced under
//! the shipper; ClickHouse down, then back; the user's mistakes as one line;
//! HTTPS with a private CA.

mod ship_support;

use std::{
    fs,
    io::Write as _,
    path::Path,
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use ship_support::{
    counts, follow_command, rows_in_files, rows_stored, ship_command, ship_once, ship_once_ok,
    tempdir, url, wait_count,
};
use tsusen::{
    dayfile::{self, ORIGINAL_FIRST_HEADER, ORIGINAL_LATER_HEADER},
    report::testdata,
    skip_unless,
    testing::{clickhouse, clickhouse::Node, one_error_line},
};

macro_rules! node_test {
    () => {{
        let why = clickhouse::why_not_node();
        skip_unless!(why.is_empty(), &why);
        Node::start()
    }};
}

/// The original tsusen's two formats, one day each.
fn write_original_days(dir: &Path) {
    fs::write(
        dir.join("2015-10-27.csv"),
        format!(
            "{ORIGINAL_FIRST_HEADER}\nTCP 80 198.51.100.5 192.0.2.63 1445990400\n\
             UDP 53 198.51.100.6 192.0.2.63 1445990401\n"
        ),
    )
    .unwrap();
    // Destination before source; ICMP with a port column of 0.
    fs::write(
        dir.join("2015-10-28.csv"),
        format!(
            "{ORIGINAL_LATER_HEADER}\nTCP 22 192.0.2.63 198.51.100.7 1446040782 1446040790 3\n\
             ICMP 0 192.0.2.64 198.51.100.8 1446040783 1446040783 1\n"
        ),
    )
    .unwrap();
}

#[test]
fn a_backfill_of_30_days_and_of_both_original_formats_lands_once() {
    let node = node_test!();
    let dir = tempdir("backfill");
    testdata::generate(&dir, &testdata::Spec::bench(30, 2_000)).unwrap();
    write_original_days(&dir);
    let expected = rows_in_files(&dir, "old");
    assert!(expected.len() > 30 * 1_500, "{}", expected.len());

    let log = ship_once_ok(&node, &dir, "old", "fleet.attempts");
    assert!(
        log.contains(&format!("shipped {} rows", expected.len())),
        "{log}"
    );
    let query = |sql: &str| node.query(sql);
    assert_eq!(rows_stored(query, "fleet.attempts", "old"), expected);
    let n = expected.len() as u64;
    assert_eq!(counts(query, "fleet.attempts"), (n, n, n));
    // The original's later format: destination before source.
    assert!(
        expected
            .contains("2015-10-28\told\t6\t22\t::ffff:198.51.100.7\t::ffff:192.0.2.63\t1446040782")
    );

    // Again: nothing new to ship, nothing sent.
    let log = ship_once_ok(&node, &dir, "old", "fleet.attempts");
    assert!(log.contains("shipped 0 rows"), "{log}");
    assert_eq!(counts(query, "fleet.attempts"), (n, n, n));
}

/// The state a crash leaves when ClickHouse stored a batch but the shipper
/// died before moving its cursor: the batch is still "in flight". The next
/// start must not store it again, on a table that is not replicated too
/// (where ClickHouse would not drop the repeated block itself).
#[test]
fn a_batch_stored_before_a_crash_is_not_stored_again() {
    let node = node_test!();
    let dir = tempdir("inflight");
    let rows: Vec<dayfile::Row> = (0..500)
        .map(|i| {
            format!(
                "TCP {} 198.18.{}.{} 192.0.2.1 1764000{:03}",
                1000 + i,
                i / 200,
                i % 200,
                i
            )
            .parse()
            .unwrap()
        })
        .collect();
    let path = testdata::write_day(&dir, rows[0].day(), &rows).unwrap();
    ship_once_ok(&node, &dir, "s1", "t.a");
    let query = |sql: &str| node.query(sql);
    assert_eq!(counts(query, "t.a"), (500, 500, 500));

    // Back to "sent, not acknowledged": offset 0, the whole file in flight.
    let cursor_path = dir.join(".tsusen-ship-s1.json");
    let mut cursor: serde_json::Value =
        serde_json::from_slice(&fs::read(&cursor_path).unwrap()).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    let len = fs::metadata(&path).unwrap().len();
    let file = &mut cursor["files"][name];
    assert_eq!(file["offset"], len);
    file["offset"] = 0.into();
    file["line_no"] = 0.into();
    file["format"] = serde_json::Value::Null;
    file["in_flight"] = len.into();
    fs::write(&cursor_path, serde_json::to_vec(&cursor).unwrap()).unwrap();

    let log = ship_once_ok(&node, &dir, "s1", "t.a");
    assert!(log.contains("is stored; not sent again"), "{log}");
    assert_eq!(counts(query, "t.a"), (500, 500, 500), "stored twice");
    assert!(
        fs::read_to_string(&cursor_path)
            .unwrap()
            .contains("\"in_flight\":null")
    );

    // Not stored (the crash came before ClickHouse had it): sent again.
    node.query("TRUNCATE TABLE t.a");
    fs::write(&cursor_path, serde_json::to_vec(&cursor).unwrap()).unwrap();
    ship_once_ok(&node, &dir, "s1", "t.a");
    assert_eq!(counts(query, "t.a"), (500, 500, 500));
}

/// `kill -9` of a following shipper while a batch is in flight, three
/// times, then a restart: every row once.
#[test]
fn kill_9_mid_batch_then_restart_stores_every_row_once() {
    let node = node_test!();
    let dir = tempdir("kill9");
    testdata::generate(&dir, &testdata::Spec::bench(6, 40_000)).unwrap();
    let expected = rows_in_files(&dir, "k");
    let n = expected.len() as u64;
    let cursor_path = dir.join(".tsusen-ship-k.json");
    let mut killed_in_flight = 0;
    for _ in 0..3 {
        let child = KillOnDrop(
            follow_command(&node, &dir, "k", "t.k")
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        // Until a batch is in flight (or everything is shipped).
        let deadline = Instant::now() + Duration::from_secs(120);
        for polls in 0.. {
            if batch_in_flight(&cursor_path) {
                killed_in_flight += 1;
                break;
            }
            let done = polls % 50 == 49
                && node
                    .try_query("SELECT count() FROM t.k")
                    .is_ok_and(|c| c.trim().parse::<u64>().is_ok_and(|c| c >= n));
            if done || Instant::now() > deadline {
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        drop(child);
    }
    assert!(killed_in_flight > 0, "no kill hit a batch in flight");
    ship_once_ok(&node, &dir, "k", "t.k");
    let query = |sql: &str| node.query(sql);
    assert_eq!(counts(query, "t.k"), (n, n, n));
    assert_eq!(rows_stored(query, "t.k", "k"), expected);
}

#[test]
fn a_day_file_truncated_or_replaced_is_shipped_again_from_its_start() {
    let node = node_test!();
    let dir = tempdir("truncated");
    let row = |port: u16| -> dayfile::Row {
        format!("TCP {port} 198.18.0.1 192.0.2.1 1764000000")
            .parse()
            .unwrap()
    };
    let path = testdata::write_day(&dir, row(1).day(), &[row(1), row(2), row(3)]).unwrap();
    ship_once_ok(&node, &dir, "s", "t.a");

    // Replaced: another file renamed over it.
    let new = dir.join("new.tmp");
    testdata::write_day(&dir, row(1).day(), &[row(4), row(5), row(6), row(7)]).unwrap();
    fs::rename(&path, &new).unwrap();
    fs::copy(&new, &path).unwrap();
    fs::remove_file(&new).unwrap();
    let log = ship_once_ok(&node, &dir, "s", "t.a");
    assert!(log.contains("replaced (another inode)"), "{log}");

    // Truncated below what was shipped, then written again.
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(0).unwrap();
    drop(file);
    testdata::write_day(&dir, row(1).day(), &[row(8)]).unwrap();
    let log = ship_once_ok(&node, &dir, "s", "t.a");
    assert!(log.contains("truncated"), "{log}");

    let query = |sql: &str| node.query(sql);
    let stored = rows_stored(query, "t.a", "s");
    assert_eq!(stored.len(), 8, "{stored:?}");
    let (_, final_count, distinct) = counts(query, "t.a");
    assert_eq!((final_count, distinct), (8, 8));
}

/// A child killed (`kill -9`) and reaped when the test ends, failed or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

type Lines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// The lines of `stream`, collected as they come.
fn collect_lines(stream: impl std::io::Read + Send + 'static) -> Lines {
    use std::io::BufRead as _;
    let lines = Lines::default();
    let collected = lines.clone();
    thread::spawn(move || {
        for line in std::io::BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            eprintln!("[ship] {line}");
            collected.lock().unwrap().push(line);
        }
    });
    lines
}

/// [`follow_command`] started, and its stderr lines as they come.
fn follow_logged(node: &Node, dir: &Path, sensor: &str, table: &str) -> (KillOnDrop, Lines) {
    let mut child = KillOnDrop(
        follow_command(node, dir, sensor, table)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = collect_lines(child.0.stderr.take().unwrap());
    (child, lines)
}

/// A progress line's `shipped A rows (R rows/s), B behind`: A + B.
fn shipped_plus_behind(line: &str) -> u64 {
    let number_after = |word: &str| -> u64 {
        let at = line
            .find(word)
            .unwrap_or_else(|| panic!("{word:?} in {line}"))
            + word.len();
        let digits: String = line[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap()
    };
    number_after("shipped ") + number_after("rows/s), ")
}

/// Whether the cursor at `path` holds a batch in flight.
fn batch_in_flight(path: &Path) -> bool {
    let cursor = fs::read_to_string(path).unwrap_or_default();
    cursor
        .match_indices("\"in_flight\":")
        .any(|(at, key)| cursor[at + key.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

/// Wait for a line containing `text` (a deadline for a failing test only).
fn wait_line(lines: &Lines, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !lines.lock().unwrap().iter().any(|l| l.contains(text)) {
        assert!(Instant::now() < deadline, "no line with {text:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Wait for `child` to exit (a deadline for a failing test only: well
/// below the client's 120 s request timeout, so a shipper that waits for a
/// hanging server instead of abandoning its batch fails).
fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 60 s after the signal"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &std::process::Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, signal).unwrap();
}

/// SIGTERM while a batch is in flight, then SIGINT while ClickHouse hangs:
/// each a clean exit 0 with a last progress line; a restart then stores
/// every row once.
#[test]
fn sigterm_or_sigint_stop_shipping_cleanly_and_a_restart_stores_every_row_once() {
    use nix::sys::signal::Signal;
    let node = node_test!();
    let dir = tempdir("sigterm");
    testdata::generate(&dir, &testdata::Spec::bench(6, 40_000)).unwrap();
    let expected = rows_in_files(&dir, "st");
    let n = expected.len() as u64;
    let cursor_path = dir.join(".tsusen-ship-st.json");

    let (mut child, log) = follow_logged(&node, &dir, "st", "t.st");
    // Until a batch is in flight.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !batch_in_flight(&cursor_path) {
        assert!(Instant::now() < deadline, "no batch in flight");
        thread::sleep(Duration::from_millis(1));
    }
    signal(&child.0, Signal::SIGTERM);
    let status = wait_exit(&mut child.0);
    assert!(status.success(), "{status:?}");
    wait_line(&log, "SIGTERM: stopping");
    wait_line(&log, "behind");
    // Rows shipped and behind add up to the rows in the files: a header is
    // no row behind.
    let last = log
        .lock()
        .unwrap()
        .iter()
        .rfind(|l| l.contains(" behind"))
        .cloned()
        .unwrap();
    assert_eq!(shipped_plus_behind(&last), n, "{last}");

    // ClickHouse hangs (stopped): the shipper's request waits for it.
    node.freeze();
    let (mut child, log) = follow_logged(&node, &dir, "st", "t.st");
    let deadline = Instant::now() + Duration::from_secs(120);
    while node.requests_waiting() == 0 {
        assert!(Instant::now() < deadline, "no request reached the server");
        thread::sleep(Duration::from_millis(50));
    }
    signal(&child.0, Signal::SIGINT);
    let status = wait_exit(&mut child.0);
    node.thaw();
    assert!(status.success(), "{status:?}");
    wait_line(&log, "SIGINT: stopping");
    wait_line(&log, "abandoned");

    ship_once_ok(&node, &dir, "st", "t.st");
    let query = |sql: &str| node.query(sql);
    assert_eq!(counts(query, "t.st"), (n, n, n));
    assert_eq!(rows_stored(query, "t.st", "st"), expected);
}

#[test]
fn rows_wait_while_clickhouse_is_down_and_arrive_when_it_is_back() {
    let mut node = node_test!();
    let dir = tempdir("down");
    let row = |port: u16| -> dayfile::Row {
        format!("UDP {port} 198.18.0.9 192.0.2.9 1764000000")
            .parse()
            .unwrap()
    };
    let path = testdata::write_day(&dir, row(1).day(), &[row(1), row(2)]).unwrap();
    let (shipper, log) = follow_logged(&node, &dir, "d", "t.d");
    let query = |sql: &str| node.try_query(sql);
    assert_eq!(wait_count(query, "t.d", 2), 2);
    // Following, it says when it caught up (not only when it stops).
    wait_line(&log, "shipped 2 rows");

    node.kill9();
    let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
    for port in 3..=10 {
        writeln!(file, "{}", row(port)).unwrap();
    }
    // A torn last line: shipped only once it is whole.
    write!(file, "UDP 11 198.18.0.9 192.0.").unwrap();
    wait_line(&log, "rows wait in the day files");
    node.restart();
    let query = |sql: &str| node.try_query(sql);
    assert_eq!(wait_count(query, "t.d", 10), 10);
    writeln!(file, "2.9 1764000000").unwrap();
    assert_eq!(wait_count(query, "t.d", 11), 11);
    wait_line(&log, "shipping to ClickHouse works again");
    drop(shipper);
    let log = log.lock().unwrap().join("\n");
    assert!(log.contains("Connection refused"), "{log}");
    let query = |sql: &str| node.query(sql);
    assert_eq!(counts(query, "t.d"), (11, 11, 11));
}

#[test]
fn wrong_password_wrong_url_and_another_schema_are_one_line_each() {
    let why = clickhouse::why_not_node();
    skip_unless!(why.is_empty(), &why);
    let node = Node::start_with_password("right");
    let dir = tempdir("errors");
    testdata::write_day(
        &dir,
        20_000,
        &["TCP 1 198.18.0.1 192.0.2.1 1728000000".parse().unwrap()],
    )
    .unwrap();
    let dir_arg = dir.display().to_string();
    let ship = |url: &str, password: &str, extra: &[&str]| {
        let mut args = vec![
            "--dir",
            &dir_arg,
            "--clickhouse",
            url,
            "--sensor",
            "e",
            "--once",
        ];
        args.extend_from_slice(extra);
        ship_command(&node, &args)
            .env("TSUSEN_CLICKHOUSE_PASSWORD", password)
            .output()
            .unwrap()
    };
    let url = url(&node);

    let out = ship(&url, "wrong", &[]);
    let line = one_error_line(&out);
    assert!(
        line.contains("Wrong password") && line.contains("TSUSEN_CLICKHOUSE_PASSWORD"),
        "{line}"
    );
    assert_eq!(out.status.code(), Some(2));

    let out = ship("http://default@127.0.0.1:1", "right", &[]);
    let line = one_error_line(&out);
    assert!(
        line.contains("Connection refused") && line.contains("is clickhouse-server running"),
        "{line}"
    );
    assert_eq!(out.status.code(), Some(1));

    // https to the plain HTTP port: no CA would help, the scheme or port is
    // wrong. ClickHouse answers a TLS greeting with an error or waits for
    // the rest of an HTTP request, by the greeting's random bytes: both say so.
    let out = ship(&url.replacen("http://", "https://", 1), "right", &[]);
    let line = one_error_line(&out);
    assert!(
        line.contains("plain HTTP")
            && line.contains("http://")
            && !line.contains("--clickhouse-ca"),
        "{line}"
    );
    assert_eq!(out.status.code(), Some(2));

    // The waiting kind, every time: a port that takes the connection and
    // never answers is a wrong scheme or port, not a server that is down.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("https://default@{}/", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().collect();
        drop(held);
    });
    let out = ship(&silent_url, "right", &[]);
    let line = one_error_line(&out);
    assert!(
        line.contains("did not answer the TLS handshake")
            && line.contains("plain HTTP")
            && line.contains("http://")
            && !line.contains("--clickhouse-ca"),
        "{line}"
    );
    assert_eq!(out.status.code(), Some(2));

    node.query("CREATE DATABASE other");
    node.query("CREATE TABLE other.attempts (x UInt8) ENGINE = Memory");
    let out = ship(&url, "right", &["--clickhouse-table", "other.attempts"]);
    let line = one_error_line(&out);
    assert!(
        line.contains("has columns (x UInt8)") && line.contains("--print-schema"),
        "{line}"
    );
    assert_eq!(out.status.code(), Some(2));

    let with_password = url.replacen("default@", "default:right@", 1);
    let line = one_error_line(&ship(&with_password, "right", &[]));
    assert!(
        line.contains("would show in ps") && !line.contains("right"),
        "{line}"
    );

    let out = ship_command(
        &node,
        &["--dir", &dir_arg, "--clickhouse", &url, "--sensor", "a b"],
    )
    .output()
    .unwrap();
    let line = one_error_line(&out);
    assert!(line.contains("--sensor \"a b\""), "{line}");

    // The password never shows, even in a failure.
    for out in [ship(&url, "wrong", &[]), ship(&url, "right", &[])] {
        assert!(!String::from_utf8_lossy(&out.stderr).contains("right"));
    }
}

/// `--print-schema` is what a DBA runs: its statements create a table the
/// shipper then takes as it is.
#[test]
fn the_printed_schema_creates_the_table_the_shipper_uses() {
    let node = node_test!();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tsusen"))
        .args(["ship", "--print-schema", "--clickhouse-table", "dba.rows"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for statement in text.split(';').filter(|s| !s.trim().is_empty()) {
        node.query(statement);
    }
    let dir = tempdir("printed");
    testdata::write_day(
        &dir,
        20_000,
        &["TCP 1 198.18.0.1 192.0.2.1 1728000000".parse().unwrap()],
    )
    .unwrap();
    ship_once_ok(&node, &dir, "p", "dba.rows");
    assert_eq!(node.count("SELECT count() FROM dba.rows"), 1);
    // The same directory and sensor to another table: the cursor was for
    // dba.rows, so every row goes again.
    ship_once_ok(&node, &dir, "p", "dba.other");
    assert_eq!(node.count("SELECT count() FROM dba.other"), 1);
}

/// HTTPS with a private CA: ClickHouse 18.16 serves it (its `openSSL`
/// config, added in `config.d`), `--clickhouse-ca` trusts it, and without it
/// the error names the flag.
#[test]
fn https_with_a_private_ca() {
    let mut node = node_test!();
    skip_unless!(
        tsusen::testing::have_program("openssl"),
        "needs openssl to make a CA"
    );
    let tls = tempdir("tls");
    let openssl = |args: &[&str]| {
        tsusen::testing::run_command(
            std::process::Command::new("openssl")
                .args(args)
                .current_dir(&tls),
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=tsusen test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    fs::write(tls.join("ext"), "subjectAltName=DNS:localhost\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    let https_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tls_dir = tls.display();
    fs::create_dir_all(node.dir.join("config.d")).unwrap();
    fs::write(
        node.dir.join("config.d/https.xml"),
        format!(
            "<yandex><https_port>{https_port}</https_port><openSSL><server>\
             <certificateFile>{tls_dir}/server.pem</certificateFile>\
             <privateKeyFile>{tls_dir}/server.key</privateKeyFile>\
             <verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile>\
             </server></openSSL></yandex>"
        ),
    )
    .unwrap();
    node.restart();

    let dir = tempdir("https");
    testdata::write_day(
        &dir,
        20_000,
        &["TCP 1 198.18.0.1 192.0.2.1 1728000000".parse().unwrap()],
    )
    .unwrap();
    let url = format!("https://default@localhost:{https_port}");
    let ca = tls.join("ca.pem").display().to_string();
    let dir_arg = dir.display().to_string();
    let args = [
        "--dir",
        &dir_arg,
        "--clickhouse",
        &url,
        "--sensor",
        "tls",
        "--once",
    ];
    // Wait for the HTTPS port (the HTTP one answered already).
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", https_port)).is_err()
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(100));
    }

    let out = ship_command(&node, &args).output().unwrap();
    let line = one_error_line(&out);
    assert!(
        line.contains("UnknownIssuer") && line.contains("--clickhouse-ca"),
        "{line}"
    );

    let mut with_ca = args.to_vec();
    with_ca.extend(["--clickhouse-ca", &ca]);
    let out = ship_command(&node, &with_ca).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(node.count("SELECT count() FROM tsusen.attempts"), 1);

    let out = ship_command(
        &node,
        &[&args[..], &["--clickhouse-ca", "/dev/null"]].concat(),
    )
    .output()
    .unwrap();
    assert!(one_error_line(&out).contains("--clickhouse-ca /dev/null"));
}

/// A sensor killed mid-write leaves a torn last line, which its restart cuts
/// before writing on: inside a file's first bytes, that must not look like
/// a file rewritten under the shipper (only shipped bytes identify a file).
#[test]
fn a_torn_line_cut_early_in_a_file_is_not_taken_for_a_rewrite() {
    let node = node_test!();
    let dir = tempdir("torn");
    let row = |port: u16| -> dayfile::Row {
        format!("TCP {port} 198.18.0.1 192.0.2.1 1764000000")
            .parse()
            .unwrap()
    };
    let path = testdata::write_day(&dir, row(1).day(), &[row(1)]).unwrap();
    let whole = fs::metadata(&path).unwrap().len();
    let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(b"TCP 3 198.19.2").unwrap();
    ship_once_ok(&node, &dir, "t", "t.torn");
    assert_eq!(node.count("SELECT count() FROM t.torn"), 1);

    // The restart's cut, then more rows.
    file.set_len(whole).unwrap();
    for port in [2, 3] {
        writeln!(file, "{}", row(port)).unwrap();
    }
    let log = ship_once_ok(&node, &dir, "t", "t.torn");
    assert!(!log.contains("shipping it again"), "{log}");
    let query = |sql: &str| node.query(sql);
    assert_eq!(counts(query, "t.torn"), (3, 3, 3));
}

/// Two shippers of one directory as one sensor would each ship every row on
/// a cursor of their own: the second is refused.
#[test]
fn a_second_shipper_of_the_same_directory_and_sensor_is_refused() {
    let node = node_test!();
    let dir = tempdir("twice");
    let _first = KillOnDrop(
        follow_command(&node, &dir, "s", "t.a")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join(".tsusen-ship-s.lock").exists() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    // The lock file is made before the lock is taken: wait for the holder.
    let out = loop {
        let out = ship_once(&node, &dir, "s", "t.a");
        if !out.status.success() || Instant::now() > deadline {
            break out;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let line = one_error_line(&out);
    assert!(line.contains("by another tsusen already"), "{line}");
    assert!(ship_once(&node, &dir, "other", "t.a").status.success());
}
