//! Who is behind a spike and which of our hosts it hit: enrichment from
//! MaxMind-format databases and label lists the test writes itself
//! (`tests/data/mmdb_write.pl`, Debian's libmaxmind-db-writer-perl), the
//! drill-down and per-destination endpoints against an independent
//! computation in Python over the same day files (`tests/data/who_expected.py`,
//! which reads the databases with python3-maxminddb), the filters, their
//! one-line 400s, and the exports; and in headless Chromium, from the spikes
//! to the drill-down of today's wave. The drill-down and per-destination
//! checks run over ClickHouse too (`serve --clickhouse` over the same days
//! stored in a test node; skipped without `clickhouse-server`).

mod report_support;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use report_support::{
    Server,
    browser::{chromium, page_requests},
    tempdir,
};
use serde_json::Value;
use tsusen::{
    dayfile::{day_from_name, day_name},
    report::testdata::{ASN_NETWORKS, COUNTRY_NETWORKS, LABELS, Spec, generate, write_mmdb},
    skip_unless,
    testing::clickhouse::{Node, why_not_node},
};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
/// The generated days end here, with a wave on TCP 5555 (report::testdata).
const LAST: &str = "2026-01-30";

fn python() -> &'static str {
    // Debian's, which has python3-maxminddb (a pyenv shim may not).
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

fn ready() -> bool {
    let ok = |cmd: &mut Command| {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    ok(Command::new("perl").args(["-MMaxMind::DB::Writer::Tree", "-e1"]))
        && ok(Command::new(python()).args(["-c", "import maxminddb"]))
}

const NEEDS: &str = "needs libmaxmind-db-writer-perl and python3-maxminddb (apt-get install)";

struct Fixture {
    days: PathBuf,
    /// A ClickHouse node holding the same days: `serve` reads it instead.
    clickhouse: Option<Node>,
    asn: PathBuf,
    country: PathBuf,
    labels: PathBuf,
}

impl Fixture {
    /// 30 generated days (the wave on TCP 5555 on the last), the two
    /// databases and the label list.
    fn new(name: &str) -> Fixture {
        let root = tempdir(name);
        let days = root.join("days");
        let mut spec = Spec::bench(30, 40_000);
        spec.seed = 7;
        generate(&days, &spec).unwrap();
        let f = Fixture {
            days,
            clickhouse: None,
            asn: root.join("asn.mmdb"),
            country: root.join("country.mmdb"),
            labels: root.join("labels.txt"),
        };
        write_mmdb(&f.asn, "GeoLite2-ASN", ASN_NETWORKS).unwrap();
        write_mmdb(&f.country, "GeoLite2-Country", COUNTRY_NETWORKS).unwrap();
        std::fs::write(&f.labels, LABELS).unwrap();
        f
    }

    fn flags(&self) -> Vec<String> {
        [
            ("--asn-db", &self.asn),
            ("--country-db", &self.country),
            ("--labels", &self.labels),
        ]
        .iter()
        .flat_map(|(k, v)| [(*k).to_owned(), v.display().to_string()])
        .collect()
    }

    /// The same days, also stored in a ClickHouse node that `serve` reads.
    fn in_clickhouse(name: &str) -> Fixture {
        let mut f = Fixture::new(name);
        let node = Node::start();
        node.store_day_files(&f.days, "tsusen.attempts", "edge-1");
        f.clickhouse = Some(node);
        f
    }

    fn serve(&self) -> Server {
        let flags = self.flags();
        let mut flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        match &self.clickhouse {
            None => Server::start(&self.days, &flags, &[]),
            Some(node) => {
                let url = node.url();
                flags.splice(0..0, ["--clickhouse", url.as_str()]);
                Server::start_from(&flags, &[])
            }
        }
    }

    /// What the Python script computes for `proto port` on `day`.
    fn expected(&self, day: &str, proto: &str, port: &str) -> Value {
        self.expected_with(day, proto, port, &[])
    }

    /// The same with more of the script's options (`--dst-net CIDR`).
    fn expected_with(&self, day: &str, proto: &str, port: &str, extra: &[&str]) -> Value {
        let out = Command::new(python())
            .arg(Path::new(DATA).join("who_expected.py"))
            .arg(&self.days)
            .args([day, proto, port])
            .args(self.flags())
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "who_expected.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// Every row of a paged endpoint, `limit` at a time, checking the pages
/// neither overlap nor leave gaps.
fn all_rows(server: &Server, target: &str, limit: usize) -> Vec<Value> {
    let mut rows = Vec::new();
    loop {
        let page = server.json(&format!("{target}&offset={}&limit={limit}", rows.len()));
        let got = page["rows"].as_array().unwrap();
        assert_eq!(page["offset"], rows.len());
        rows.extend(got.iter().cloned());
        let total = usize::try_from(page["total"].as_u64().unwrap()).unwrap();
        if got.is_empty() || rows.len() >= total {
            assert_eq!(rows.len(), total, "{target}: pages cover every row once");
            return rows;
        }
    }
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// The drill-down rows as the Python script shapes them.
fn drill_by_src(rows: &[Value]) -> BTreeMap<String, Value> {
    rows.iter()
        .map(|r| {
            let mut v = serde_json::json!({
                "first_seen": r["first_seen_unix"],
                "destinations": strings(&r["destination_list"]),
                "ports": strings(&r["ports"]),
                "asn": r["asn"], "org": r["org"], "country": r["country"], "labels": r["labels"],
            });
            assert_eq!(
                r["destinations"].as_u64().unwrap(),
                r["destination_list"].as_array().unwrap().len() as u64
            );
            v["destinations"] = serde_json::json!(v["destinations"]);
            v["ports"] = serde_json::json!(v["ports"]);
            (r["src"].as_str().unwrap().to_owned(), v)
        })
        .collect()
}

/// Equal maps, or a panic naming the first source that differs (the maps
/// are too big to print whole).
fn assert_same(got: &BTreeMap<String, Value>, want: &BTreeMap<String, Value>, context: &str) {
    for (src, w) in want {
        assert_eq!(got.get(src), Some(w), "{context}: source {src}");
    }
    for src in got.keys() {
        assert!(want.contains_key(src), "{context}: unexpected source {src}");
    }
}

fn expected_by_src(
    expected: &Value,
    keep: impl Fn(&str, &Value) -> bool,
) -> BTreeMap<String, Value> {
    expected["drill"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(src, e)| keep(src, e))
        .map(|(src, e)| {
            let mut e = e.clone();
            let as_set = |v: &Value| serde_json::json!(strings(v));
            e["destinations"] = as_set(&e["destinations"]);
            e["ports"] = as_set(&e["ports"]);
            (src.clone(), e)
        })
        .collect()
}

#[test]
fn drill_down_of_the_spike_matches_python_with_asn_country_and_labels() {
    skip_unless!(ready(), NEEDS);
    drill_down_matches_python(&Fixture::new("who-drill"));
}

/// The same from `serve --clickhouse` over the same days, against the same
/// Python over the day files.
#[test]
fn drill_down_from_clickhouse_matches_python_with_asn_country_and_labels() {
    skip_unless!(ready(), NEEDS);
    skip_unless!(why_not_node().is_empty(), &why_not_node());
    drill_down_matches_python(&Fixture::in_clickhouse("who-drill-ch"));
}

fn drill_down_matches_python(f: &Fixture) {
    let expected = f.expected(LAST, "TCP", "5555");
    let server = f.serve();

    let target = format!("/api/drill?day={LAST}&proto=TCP&port=5555");
    let rows = all_rows(&server, &target, 1000);
    let want = expected_by_src(&expected, |_, _| true);
    assert!(want.len() > 50, "the wave has many sources: {}", want.len());
    assert_same(&drill_by_src(&rows), &want, "all");
    // The top ASNs and countries count every source, not one page.
    let first = server.json(&format!("{target}&limit=1"));
    let mut asns: BTreeMap<u64, u64> = BTreeMap::new();
    let mut countries: BTreeMap<String, u64> = BTreeMap::new();
    for e in want.values() {
        if let Some(a) = e["asn"].as_u64() {
            *asns.entry(a).or_default() += 1;
        }
        if let Some(c) = e["country"].as_str() {
            *countries.entry(c.to_owned()).or_default() += 1;
        }
    }
    for t in first["top_asns"].as_array().unwrap() {
        assert_eq!(
            t["sources"].as_u64(),
            asns.get(&t["asn"].as_u64().unwrap()).copied()
        );
    }
    assert_eq!(
        first["top_asns"].as_array().unwrap().len(),
        asns.len().min(10)
    );
    for t in first["top_countries"].as_array().unwrap() {
        assert_eq!(
            t["sources"].as_u64(),
            countries.get(t["country"].as_str().unwrap()).copied()
        );
    }
    assert_eq!(
        first["top_countries"].as_array().unwrap().len(),
        countries.len().min(10)
    );

    // Some sources carry every column, and some two labels, most specific first.
    assert!(
        want.values()
            .any(|e| e["labels"] == serde_json::json!(["research", "partner"]))
    );
    assert!(
        want.values()
            .any(|e| e["country"] == "NL" && e["asn"] == 64500)
    );
    assert!(
        want.values()
            .any(|e| e["asn"] == 64501 && e["country"] == "DE")
    );

    // Small pages in every order cover the same rows once, in that order.
    for sort in [
        "first_seen",
        "-first_seen",
        "src",
        "-src",
        "-destinations",
        "-ports",
        "ports",
    ] {
        let rows = all_rows(&server, &format!("{target}&sort={sort}"), 37);
        assert_same(&drill_by_src(&rows), &want, sort);
        let key = |r: &Value| match sort {
            "first_seen" => r["first_seen_unix"].as_i64().unwrap(),
            "-first_seen" => -r["first_seen_unix"].as_i64().unwrap(),
            "-destinations" => -r["destinations"].as_i64().unwrap(),
            "ports" => i64::try_from(r["ports"].as_array().unwrap().len()).unwrap(),
            "-ports" => -i64::try_from(r["ports"].as_array().unwrap().len()).unwrap(),
            _ => 0,
        };
        assert!(
            rows.windows(2).all(|w| key(&w[0]) <= key(&w[1])),
            "sort={sort}"
        );
        let srcs: Vec<IpAddr> = rows
            .iter()
            .map(|r| r["src"].as_str().unwrap().parse().unwrap())
            .collect();
        if sort == "src" {
            assert!(srcs.windows(2).all(|w| w[0] < w[1]));
        }
        if sort == "-src" {
            assert!(srcs.windows(2).all(|w| w[0] > w[1]));
        }
    }

    // Filters narrow the drill-down exactly as they say.
    let labelled = |l: &str, e: &Value| e["labels"].as_array().unwrap().iter().any(|x| x == l);
    type Keep = Box<dyn Fn(&str, &Value) -> bool>;
    let cases: Vec<(&str, Keep)> = vec![
        (
            "label=research",
            Box::new(move |_, e| labelled("research", e)),
        ),
        (
            "nolabel=research,partner",
            Box::new(move |_, e| !labelled("research", e) && !labelled("partner", e)),
        ),
        ("asn=AS64501", Box::new(|_, e| e["asn"] == 64501)),
        ("country=de", Box::new(|_, e| e["country"] == "DE")),
        (
            "src=198.18.0.0/22,198.18.30.1-198.18.33.200",
            Box::new(|s, _| {
                let ip: IpAddr = s.parse().unwrap();
                let n = |a: &str| a.parse::<IpAddr>().unwrap();
                (n("198.18.0.0") <= ip && ip <= n("198.18.3.255"))
                    || (n("198.18.30.1") <= ip && ip <= n("198.18.33.200"))
            }),
        ),
    ];
    for (filter, keep) in &cases {
        let rows = all_rows(&server, &format!("{target}&{filter}"), 1000);
        let want = expected_by_src(&expected, keep);
        assert!(!want.is_empty(), "{filter}: the fixture has such sources");
        assert_same(&drill_by_src(&rows), &want, filter);
    }

    // A destination filter keeps the sources that hit one, with only those.
    let in_dst = |d: &str| {
        let ip: IpAddr = d.parse().unwrap();
        "192.0.2.0/25"
            .parse::<ipnet::IpNet>()
            .unwrap()
            .contains(&ip)
            || ("203.0.113.5".parse::<IpAddr>().unwrap() <= ip
                && ip <= "203.0.113.9".parse::<IpAddr>().unwrap())
    };
    let rows = all_rows(
        &server,
        &format!("{target}&dst=192.0.2.0/25,203.0.113.5-203.0.113.9"),
        1000,
    );
    let mut want = expected_by_src(&expected, |_, _| true);
    for e in want.values_mut() {
        let kept: BTreeSet<String> = strings(&e["destinations"])
            .into_iter()
            .filter(|d| in_dst(d))
            .collect();
        e["destinations"] = serde_json::json!(kept);
    }
    want.retain(|_, e| !e["destinations"].as_array().unwrap().is_empty());
    assert!(!want.is_empty());
    assert_same(&drill_by_src(&rows), &want, "dst");
}

#[test]
fn destinations_match_python_and_follow_filters() {
    skip_unless!(ready(), NEEDS);
    destinations_match_python(&Fixture::new("who-dst"));
}

/// The same from `serve --clickhouse` over the same days.
#[test]
fn destinations_from_clickhouse_match_python_and_follow_filters() {
    skip_unless!(ready(), NEEDS);
    skip_unless!(why_not_node().is_empty(), &why_not_node());
    destinations_match_python(&Fixture::in_clickhouse("who-dst-ch"));
}

fn destinations_match_python(f: &Fixture) {
    let expected = f.expected(LAST, "TCP", "5555");
    let server = f.serve();

    let rows = all_rows(&server, "/api/destinations?sort=probes", 500);
    let want = expected["destinations"].as_object().unwrap();
    assert_eq!(rows.len(), want.len());
    for r in &rows {
        let e = &want[r["dst"].as_str().unwrap()];
        assert_eq!(r["probes"], e["probes"], "{}", r["dst"]);
        let ports = e["ports"].as_object().unwrap();
        assert_eq!(r["services"].as_u64().unwrap(), ports.len() as u64);
        for p in r["ports"].as_array().unwrap() {
            assert_eq!(
                p["probes"],
                ports[p["label"].as_str().unwrap()],
                "{}",
                r["dst"]
            );
        }
        let ours = r["dst"].as_str().unwrap().starts_with("192.0.2.");
        assert_eq!(r["labels"] == serde_json::json!(["ours"]), ours);
    }
    assert!(
        rows.windows(2)
            .all(|w| w[0]["probes"].as_u64() >= w[1]["probes"].as_u64())
    );
    // By address: the same rows (the server pages one kept listing when
    // nothing narrows it), in address order.
    let by_dst = all_rows(&server, "/api/destinations?sort=dst", 50);
    let addr = |r: &Value| {
        r["dst"]
            .as_str()
            .unwrap()
            .parse::<std::net::IpAddr>()
            .unwrap()
    };
    let mut want_by_dst = rows.clone();
    want_by_dst.sort_by_key(addr);
    assert_eq!(by_dst, want_by_dst);

    // Under a destination range and a port, per-port counts are the
    // Python ones for that port.
    let rows = all_rows(
        &server,
        "/api/destinations?dst=198.51.100.0/24&proto=tcp&port=5555,23",
        1000,
    );
    let wanted: Vec<(&String, u64)> = want
        .iter()
        .filter(|(d, _)| d.starts_with("198.51.100."))
        .map(|(d, e)| {
            let n = |s: &str| e["ports"].get(s).and_then(Value::as_u64).unwrap_or(0);
            (d, n("TCP 5555") + n("TCP 23"))
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(rows.len(), wanted.len());
    for (d, n) in wanted {
        let r = rows.iter().find(|r| r["dst"] == d.as_str()).unwrap();
        assert_eq!(r["probes"], n, "{d}");
    }

    // The details under a destination CIDR count only what hit it: days,
    // first seen and the union of destinations over the days.
    let expected = f.expected_with(LAST, "TCP", "5555", &["--dst-net", "203.0.113.0/25"]);
    let rows = all_rows(&server, "/api/details?dst=203.0.113.0/25", 1000);
    let want = expected["details_in_dst_rows"].as_object().unwrap();
    assert_eq!(rows.len(), want.len());
    for r in &rows {
        let service = match r["port"].as_u64() {
            Some(p) => format!("{} {p}", r["proto"].as_str().unwrap()),
            None => r["proto"].as_str().unwrap().to_owned(),
        };
        let key = format!("{service} {}", r["src"].as_str().unwrap());
        let e = &want[&key];
        assert_eq!(
            (&r["days"], &r["destinations"], &r["first_seen_unix"]),
            (&e["days"], &e["destinations"], &e["first_seen"]),
            "{key}"
        );
    }

    // The day's view is that day's rows only.
    let day = server.json(&format!("/api/destinations?day={LAST}&limit=1"));
    assert_eq!(day["date"], LAST);
}

#[test]
fn enrichment_shows_in_the_static_page_and_the_details() {
    skip_unless!(ready(), NEEDS);
    let f = Fixture::new("who-page");
    let expected = f.expected(LAST, "TCP", "5555");
    let out = f.days.parent().unwrap().join("report.html");
    let run = Command::new(env!("CARGO_BIN_EXE_tsusen"))
        .args(["report", "--dir"])
        .arg(&f.days)
        .arg("--out")
        .arg(&out)
        .args(f.flags())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("<th>ASN</th><th>Organisation</th><th>Country</th><th>Labels</th>"));
    // The wave's earliest source is in the spike's drill-down with its columns.
    let (src, e) = expected["drill"]
        .as_object()
        .unwrap()
        .iter()
        .min_by_key(|(s, e)| (e["first_seen"].as_i64(), (*s).clone()))
        .unwrap();
    let cells = format!(
        r#"<tr><td class="src">{src}</td><td class="asn">{}</td><td class="org">{}</td><td class="country">{}</td><td class="labels">{}</td>"#,
        e["asn"]
            .as_u64()
            .map(|n| format!("AS{n}"))
            .unwrap_or_default(),
        e["org"].as_str().unwrap_or(""),
        e["country"].as_str().unwrap_or(""),
        e["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect::<Vec<_>>()
            .join(", "),
    );
    assert!(html.contains(&cells), "{cells} in the static drill-down");

    // The same source's details rows carry the same values in the JSON.
    let server = f.serve();
    let details = server.json(&format!("/api/details?src={src}&port=5555"));
    let row = &details["rows"][0];
    assert_eq!(details["total"], 1);
    for k in ["asn", "org", "country", "labels"] {
        assert_eq!(row[k], e[k], "{k}");
    }
    assert_eq!(
        details["columns"],
        serde_json::json!({"asn": true, "country": true, "labels": true})
    );
}

#[test]
fn missing_database_is_one_warning_and_the_report_renders_without_it() {
    let dir = tempdir("who-missing");
    let days = dir.join("days");
    generate(&days, &Spec::bench(3, 500)).unwrap();
    let labels = dir.join("labels.txt");
    std::fs::write(&labels, "192.0.2.0/24 ours\n").unwrap();
    let out = dir.join("report.html");
    let run = Command::new(env!("CARGO_BIN_EXE_tsusen"))
        .args(["report", "--dir"])
        .arg(&days)
        .arg("--out")
        .arg(&out)
        .args(["--asn-db", "/nonexistent/asn.mmdb", "--labels"])
        .arg(&labels)
        .output()
        .unwrap();
    assert!(run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("--asn-db")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("cannot read --asn-db /nonexistent/asn.mmdb"),
        "{stderr}"
    );
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(!html.contains("<th>ASN</th>"));
    assert!(html.contains("<th>Labels</th>"));
    assert!(
        html.contains("cannot read --asn-db"),
        "the page lists it too"
    );

    // A bad label list is left out the same way.
    std::fs::write(&labels, "not-a-network ours\n").unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_tsusen"))
        .args(["report", "--dir"])
        .arg(&days)
        .arg("--out")
        .arg(&out)
        .arg("--labels")
        .arg(&labels)
        .output()
        .unwrap();
    assert!(run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        stderr.lines().filter(|l| l.contains("--labels")).count(),
        1,
        "{stderr}"
    );
    assert!(
        !std::fs::read_to_string(&out)
            .unwrap()
            .contains("<th>Labels</th>")
    );
}

#[test]
fn bad_filters_are_a_400_with_one_line() {
    let dir = tempdir("who-bad");
    let days = dir.join("days");
    generate(&days, &Spec::bench(3, 500)).unwrap();
    let server = Server::start(&days, &[], &[]);
    let last = day_name(day_from_name(LAST).unwrap());
    let cases = [
        (
            "/api/details?src=198.51.100.9-198.51.100.1",
            "the range ends before it starts",
        ),
        (
            "/api/details?dst=198.51.100.1-2001:db8::1",
            "different families",
        ),
        (
            "/api/details?dst=300.1.1.1",
            "bad address filter \"300.1.1.1\"",
        ),
        ("/api/details?port=70000", "bad port filter \"70000\""),
        ("/api/details?proto=XYZ", "bad protocol filter \"XYZ\""),
        ("/api/details?asn=ASX", "bad ASN filter"),
        ("/api/details?country=NLD", "bad country filter"),
        ("/api/details?asn=64500", "no --asn-db"),
        ("/api/details?label=research", "unknown label \"research\""),
        ("/api/details?offset=-1", "bad offset"),
        ("/api/drill?proto=TCP&port=23", "needs day="),
        (
            &format!("/api/drill?day={last}&port=23") as &str,
            "exactly one proto=",
        ),
        (
            &format!("/api/drill?day={last}&proto=TCP,UDP&port=23"),
            "exactly one proto=",
        ),
        (
            &format!("/api/drill?day={last}&proto=TCP"),
            "exactly one port=",
        ),
        (
            &format!("/api/drill?day={last}&proto=TCP&port=23&sort=size"),
            "bad sort",
        ),
        ("/api/drill?day=2026-13-01&proto=TCP&port=23", "bad day"),
        (
            "/api/drill?day=2020-01-01&proto=TCP&port=23",
            "outside the window",
        ),
        ("/api/destinations?sort=size", "bad sort"),
        ("/api/export.csv?view=everything", "bad view"),
    ];
    for (target, message) in cases {
        let r = server.get(target);
        assert_eq!(r.status, 400, "{target}: {}", r.body);
        let error: Value = serde_json::from_str(&r.body).unwrap();
        let line = error["error"].as_str().unwrap();
        assert!(
            line.contains(message) && !line.contains('\n'),
            "{target}: {line}"
        );
    }
    // The page says the same, with a 400.
    let page = server.get("/?dst=1.2.3.0/99");
    assert_eq!(page.status, 400);
    assert!(page.body.contains("bad address filter"));
}

#[test]
fn exports_hold_the_filtered_views() {
    let dir = tempdir("who-export");
    let days = dir.join("days");
    generate(&days, &Spec::bench(5, 2000)).unwrap();
    let server = Server::start(&days, &[], &[]);
    let q = "dst=192.0.2.0/24&proto=tcp";
    let details = all_rows(&server, &format!("/api/details?{q}"), 1000);
    let json = server.json(&format!("/api/export.json?{q}"));
    assert_eq!(json["rows"].as_array().unwrap(), &details);
    let csv = server.get(&format!("/api/export.csv?{q}"));
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert_eq!(
        csv.header("x-total-rows").unwrap(),
        details.len().to_string()
    );
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), details.len() + 1);
    assert_eq!(
        lines[0],
        "proto,port,src,first_seen,first_seen_unix,last_day,days,destinations"
    );
    assert!(details.iter().all(|d| d["proto"] == "TCP"));

    let drill_q = format!("view=drill&day={LAST}&proto=TCP&port=5555&sort=src");
    let drill = all_rows(
        &server,
        &format!("/api/drill?day={LAST}&proto=TCP&port=5555&sort=src"),
        1000,
    );
    let json = server.json(&format!("/api/export.json?{drill_q}"));
    assert_eq!(json["rows"].as_array().unwrap(), &drill);
    let csv = server.get(&format!("/api/export.csv?{drill_q}"));
    let srcs: Vec<&str> = csv
        .body
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    let want: Vec<&str> = drill.iter().map(|r| r["src"].as_str().unwrap()).collect();
    assert_eq!(srcs, want);
    let dests = server.get("/api/export.csv?view=destinations&limit=3");
    assert_eq!(dests.body.lines().count(), 4);
}

/// `<td class="NAME">VALUE</td>` cells of a row, by class.
fn cells(row: &str) -> BTreeMap<String, String> {
    row.split("<td class=\"")
        .skip(1)
        .filter_map(|c| {
            let (class, rest) = c.split_once("\">")?;
            let value = rest.split("</td>").next()?;
            Some((class.to_owned(), value.replace("&amp;", "&")))
        })
        .collect()
}

#[test]
fn from_the_spikes_to_the_drill_down_in_headless_chromium() {
    skip_unless!(ready(), NEEDS);
    skip_unless!(
        tsusen::testing::have_program("chromium"),
        "needs Debian's chromium (apt-get install chromium)"
    );
    let f = Fixture::new("who-browser");
    let expected = f.expected(LAST, "TCP", "5555");
    let server = f.serve();
    let origin = server.url("");
    let origin = origin.trim_end_matches('/').to_owned();

    // The page links today's spike to its drill-down.
    let (dom, netlog) = chromium("who-page", &["--dump-dom", &server.url("/")]);
    let link = format!("?day={LAST}&amp;proto=TCP&amp;port=5555#drill");
    assert!(
        dom.contains(&format!("<a class=\"drill-link\" href=\"{link}\">")),
        "a drill-down link for today's spike"
    );
    let mut requests = page_requests(&netlog);

    // Follow it, then the pager, collecting the sources with their columns.
    let mut listed: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut next = Some(link.replace("&amp;", "&"));
    let mut pages = 0;
    while let Some(target) = next.take() {
        pages += 1;
        let (dom, netlog) = chromium(
            &format!("who-drill-{pages}"),
            &["--dump-dom", &server.url(&format!("/{target}"))],
        );
        requests.extend(page_requests(&netlog));
        let table = &dom[dom
            .find("<table class=\"drill-table\"")
            .expect("the drill table")..];
        let body = &table[table.find("<tbody>").unwrap()..table.find("</tbody>").unwrap()];
        for row in body.split("<tr>").skip(1) {
            let c = cells(row);
            assert!(
                listed.insert(c["src"].clone(), c).is_none(),
                "each source once"
            );
        }
        next = dom.find("id=\"drill-next\" href=\"").map(|i| {
            let rest = &dom[i + "id=\"drill-next\" href=\"".len()..];
            rest[..rest.find('"').unwrap()].replace("&amp;", "&")
        });
    }
    assert!(pages > 1, "the wave's sources span several pages");
    let want: BTreeMap<String, BTreeMap<String, String>> = expected["drill"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(src, e)| {
            let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
            let mut c = BTreeMap::new();
            c.insert("src".to_owned(), src.clone());
            c.insert(
                "asn".to_owned(),
                e["asn"]
                    .as_u64()
                    .map(|n| format!("AS{n}"))
                    .unwrap_or_default(),
            );
            c.insert("org".to_owned(), text(&e["org"]));
            c.insert("country".to_owned(), text(&e["country"]));
            let labels: Vec<&str> = e["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap())
                .collect();
            c.insert("labels".to_owned(), labels.join(", "));
            (src.clone(), c)
        })
        .collect();
    let listed: BTreeMap<String, BTreeMap<String, String>> = listed
        .into_iter()
        .map(|(src, mut c)| {
            c.retain(|k, _| ["src", "asn", "org", "country", "labels"].contains(&k.as_str()));
            (src, c)
        })
        .collect();
    assert_eq!(
        listed, want,
        "exactly the wave's sources, with their columns"
    );

    // A destination CIDR in the URL: the details the script loads and the
    // destinations table both keep to it.
    let expected = f.expected_with(LAST, "TCP", "5555", &["--dst-net", "192.0.2.0/24"]);
    let total = expected["details_in_dst"].as_u64().unwrap();
    let (dom, netlog) = chromium(
        "who-dst",
        &["--dump-dom", &server.url("/?dst=192.0.2.0/24")],
    );
    requests.extend(page_requests(&netlog));
    assert!(
        dom.contains(&format!("data-loaded=\"api\" data-total=\"{total}\"")),
        "the details under dst=192.0.2.0/24: {total} rows"
    );
    // The chart and the spikes are those of what the filter keeps: the
    // series' counts are Python's under the same CIDR, the page draws them,
    // and lists the spikes the JSON has.
    let trends = server.json("/api/trends?dst=192.0.2.0/24");
    let unfiltered = server.json("/api/trends");
    assert_ne!(trends["series"], unfiltered["series"]);
    let per_day = &expected["series_in_dst"];
    let days = trends["days"].as_array().unwrap();
    let chart = &dom[dom.find("<figure id=\"chart\">").unwrap()..];
    let chart = &chart[..chart.find("</figure>").unwrap()];
    for series in trends["series"].as_array().unwrap() {
        let label = series["label"].as_str().unwrap();
        let counts = series["counts"].as_array().unwrap();
        for (day, count) in days.iter().zip(counts) {
            let want = per_day[day.as_str().unwrap()][label].as_u64().unwrap_or(0);
            assert_eq!(count.as_u64().unwrap(), want, "{label} on {day}");
        }
        let legend = format!(">\n{label} ({})\n</text>", counts.last().unwrap());
        assert!(chart.contains(&legend), "the filtered chart draws {legend}");
    }
    let spikes = server.json("/api/spikes?dst=192.0.2.0/24");
    let spikes = spikes["spikes"].as_array().unwrap();
    assert_eq!(
        dom.matches("<tr class=\"spike\">").count(),
        spikes.len().min(200)
    );
    for s in spikes.iter().take(200) {
        let (day, label) = (s["date"].as_str().unwrap(), s["label"].as_str().unwrap());
        assert_eq!(s["count"], per_day[day][label], "{label} on {day}");
        let row = format!(
            "<tr class=\"spike\"><td>{day}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
            s["proto"].as_str().unwrap(),
            s["port"].as_u64().map_or("-".to_owned(), |p| p.to_string()),
            s["count"]
        );
        assert!(dom.contains(&row), "the page lists {row}");
    }

    let dests = &dom[dom.find("<table id=\"destinations-table\"").unwrap()..];
    let dests = &dests[..dests.find("</table>").unwrap()];
    assert_eq!(dests.matches("<td class=\"dst\">").count(), 20);
    assert_eq!(dests.matches("<td class=\"dst\">192.0.2.").count(), 20);
    assert!(dom.contains("href=\"/api/export.csv?dst=192.0.2.0/24\""));

    assert!(
        requests.iter().any(|u| u.contains("/api/details?")),
        "{requests:?}"
    );
    for request in &requests {
        assert!(request.starts_with(&origin), "the page requested {request}");
    }
}

/// ipinfo lite's one file (`asn` as "AS64500", `as_name`, `country_code`)
/// works as both databases.
#[test]
fn an_ipinfo_lite_shaped_database_gives_asn_and_country() {
    skip_unless!(ready(), NEEDS);
    let dir = tempdir("who-ipinfo");
    let days = dir.join("days");
    let last = day_from_name(LAST).unwrap();
    let row = |src: &str, dst: &str| tsusen::dayfile::Row {
        proto: 6,
        dst_port: 23,
        src_ip: src.parse().unwrap(),
        dst_ip: dst.parse().unwrap(),
        timestamp: i64::from(last) * 86_400 + 60,
    };
    std::fs::create_dir_all(&days).unwrap();
    tsusen::report::testdata::write_day(
        &days,
        last,
        &[
            row("198.51.100.7", "192.0.2.1"),
            row("2001:db8:5::9", "2001:db8:7::1"),
        ],
    )
    .unwrap();
    let db = dir.join("ipinfo_lite.mmdb");
    write_mmdb(
        &db,
        "ipinfo_lite.mmdb",
        r#"198.51.100.0/24 {"asn":"AS64510","as_name":"Lite Example","country_code":"JP"}
2001:db8:5::/48 {"asn":"AS64511","as_name":"Lite Six","country_code":"se"}
"#,
    )
    .unwrap();
    let server = Server::start(
        &days,
        &[
            "--asn-db",
            db.to_str().unwrap(),
            "--country-db",
            db.to_str().unwrap(),
        ],
        &[],
    );
    let drill = server.json(&format!("/api/drill?day={LAST}&proto=TCP&port=23&sort=src"));
    let got: Vec<(Value, Value, Value)> = drill["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["asn"].clone(), r["org"].clone(), r["country"].clone()))
        .collect();
    assert_eq!(
        got,
        [
            (64510.into(), "Lite Example".into(), "JP".into()),
            (64511.into(), "Lite Six".into(), "SE".into()),
        ]
    );
    assert_eq!(drill["columns"]["labels"], false);
    assert!(drill["rows"][0].get("labels").is_none(), "no labels column");
}
