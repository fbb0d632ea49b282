//! The served page and the static file in headless Chromium: the chart shows
//! the expected series, the spike is marked, filtering the table works (the
//! script calls the server), and the page requests nothing but the server.
//! Screenshots go to `target/test-artifacts/`.

mod report_support;

use report_support::{
    Server,
    browser::{artifacts, assert_no_urls, chromium, page_requests},
    tempdir, write_report,
};
use tsusen::{
    dayfile::{day_from_name, day_name},
    report::{
        aggregate::{DetailFilter, ProtoPort, Window, WindowOptions},
        enrich::Enrichment,
        filter::{Filter, FilterQuery},
        load::Loader,
        testdata::{Spec, generate},
    },
    skip_unless,
    testing::have_program,
};

/// The chart's checks, the same for both pages: every charted series in the
/// legend with its newest count, and one red circle per spike plus the legend's.
fn assert_chart(dom: &str, window: &Window, spike: ProtoPort) {
    let start = dom.find("<figure id=\"chart\">").expect("chart figure");
    let end = start + dom[start..].find("</figure>").unwrap();
    let svg = &dom[start..end];
    assert!(svg.contains("<svg"), "chart is an inline SVG");
    let charted = window.charted();
    assert!(charted.len() >= 3, "a chart worth the name");
    let last = window.covered.len() - 1;
    for series in charted {
        // plotters writes each label on a line of its own inside <text>.
        let label = format!(">\n{} ({})\n</text>", series.service, series.counts[last]);
        assert!(svg.contains(&label), "legend lacks {label}");
    }
    assert!(
        charted.iter().any(|s| s.service == spike),
        "the spiking series is drawn"
    );
    let marked = window
        .spikes
        .iter()
        .filter(|s| charted.iter().any(|c| c.service == s.service))
        .count();
    assert!(marked >= 1);
    assert!(svg.contains(&format!(">\nspike ({marked})\n</text>")));
    assert_eq!(
        svg.matches("stroke=\"#E00000\"").count(),
        marked + 1,
        "one marker per spike, and the legend's"
    );
    // A tooltip per drawn point (days with sources).
    let points: usize = charted
        .iter()
        .map(|s| s.counts.iter().filter(|&&n| n > 0).count())
        .sum();
    assert_eq!(
        svg.matches("<title>").count(),
        points,
        "a tooltip per point"
    );
}

fn assert_spike_listed(dom: &str, day: u16, spike: ProtoPort) {
    let row = format!(
        "<tr class=\"spike\"><td>{}</td><td>TCP</td><td class=\"n\">{}</td>",
        day_name(day),
        spike.port
    );
    assert!(dom.contains(&row), "spike table lacks {row}");
    // Ranked by ratio: the generated wave comes first.
    let table = &dom[dom.find("id=\"spike-table\"").unwrap()..];
    let first = table.find("<tr class=\"spike\">").unwrap();
    assert!(table[first..].starts_with(&row), "the largest spike first");
}

#[test]
fn served_and_static_pages_in_headless_chromium() {
    skip_unless!(
        have_program("chromium"),
        "needs Debian's chromium (apt-get install chromium)"
    );
    let dir = tempdir("browser-days");
    let spike = ProtoPort {
        proto: 6,
        port: 5555,
    };
    let last = day_from_name("2026-01-30").unwrap();
    generate(
        &dir,
        &Spec {
            first_day: last - 29,
            days: 30,
            rows_per_day: 40_000,
            seed: 7,
            spike: Some(spike),
        },
    )
    .unwrap();
    // What the pages must show, from the same code the server runs.
    let mut loader = Loader::new(dir.clone(), WindowOptions::default());
    loader.refresh().unwrap();
    let window = loader.window();
    assert!(
        window
            .spikes
            .iter()
            .any(|s| s.service == spike && s.day == last),
        "the generator makes TCP 5555 spike on its last day: {:?}",
        window.spikes
    );
    let filter = DetailFilter::parse(Some("198.18.0.0/20"), Some("23"), Some("TCP")).unwrap();
    let expected_total = window.details_page(&filter, 0, 1).total;
    assert!(expected_total > 50, "enough rows to page");

    // The served page, filtered through the URL: the script reads the
    // filter, calls /api/details and fills the table.
    let server = Server::start(&dir, &[], &[]);
    let origin = server.url("");
    let origin = origin.trim_end_matches('/');
    // ?hours= asks for TCP 23's hours on the last day instead of the spike's.
    let url = server.url(&format!(
        "/?ip=198.18.0.0/20&port=23&proto=TCP&hours={}/TCP/23",
        day_name(last)
    ));
    let (dom, netlog) = chromium("served", &["--dump-dom", &url]);
    std::fs::write(artifacts().join("report-served.html"), &dom).unwrap();
    // The chart follows the filter (TCP 23 from 198.18.0.0/20): its one
    // series, drawn with that count.
    let selection = Filter::parse(&FilterQuery {
        ip: Some("198.18.0.0/20".into()),
        port: Some("23".into()),
        proto: Some("TCP".into()),
        ..FilterQuery::default()
    })
    .unwrap()
    .selection(&window, &Enrichment::default())
    .unwrap();
    let filtered = window.selected(&selection);
    assert_eq!(filtered.series.len(), 1);
    let newest = filtered.series[0].counts.last().unwrap();
    assert!(dom.contains(&format!(">\nTCP 23 ({newest})\n</text>")));
    assert!(!dom.contains(">\nTCP 5555 ("));
    assert!(dom.contains("http-equiv=\"Content-Security-Policy\" content=\"default-src 'self'"));
    let status = format!(
        "<p id=\"details-status\" data-loaded=\"api\" data-total=\"{expected_total}\">{expected_total} matching rows; showing 1–50.</p>"
    );
    assert!(
        dom.contains(&status),
        "the script loaded the filtered rows: {status}"
    );
    let table = &dom[dom.find("<table id=\"details-table\">").unwrap()..];
    let body = &table[table.find("<tbody>").unwrap()..table.find("</tbody>").unwrap()];
    let rows: Vec<&str> = body.split("<tr>").skip(1).collect();
    assert_eq!(rows.len(), 50);
    let net: ipnet::IpNet = "198.18.0.0/20".parse().unwrap();
    for row in rows {
        let cells: Vec<&str> = row
            .split("</td>")
            .filter_map(|c| c.rsplit('>').next())
            .collect();
        assert_eq!(&cells[..2], ["TCP", "23"], "{row}");
        assert!(
            net.contains(&cells[2].parse::<std::net::IpAddr>().unwrap()),
            "{row}"
        );
    }
    let hours = &dom[dom.find("<figure id=\"hours-chart\"").unwrap()..];
    assert!(
        hours.starts_with(&format!(
            "<figure id=\"hours-chart\" data-shown=\"{} TCP 23\">",
            day_name(last)
        )),
        "the script swapped in the asked hours: {}",
        &hours[..200]
    );
    assert!(hours.contains(&format!("TCP 23 on {}:", day_name(last))));
    assert_no_urls(&dom, Some(origin));
    let requests = page_requests(&netlog);
    assert!(
        requests.iter().any(|u| u.contains("/api/details?")),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|u| u.contains("/hours.svg?")),
        "{requests:?}"
    );
    for request in &requests {
        assert!(request.starts_with(origin), "the page requested {request}");
    }

    // Unfiltered, the whole window's chart and spikes.
    let (dom, _) = chromium("served-all", &["--dump-dom", &server.url("/")]);
    assert_chart(&dom, &window, spike);
    assert_spike_listed(&dom, last, spike);

    let shot = artifacts().join("report-served.png");
    chromium(
        "served-shot",
        &[
            "--window-size=1280,2200",
            &format!("--screenshot={}", shot.display()),
            &server.url("/"),
        ],
    );
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);

    // The static file, from file://: same chart and spike, and no requests.
    let out = artifacts().join("report-static.html");
    write_report(&dir, &out);
    let file_url = format!("file://{}", out.display());
    let (dom, netlog) = chromium("static", &["--dump-dom", &file_url]);
    assert_chart(&dom, &window, spike);
    assert_spike_listed(&dom, last, spike);
    assert!(dom.contains("The first 1000 of "));
    assert_no_urls(&dom, None);
    let requests = page_requests(&netlog);
    assert!(
        requests.iter().all(|u| u.starts_with("file://")),
        "the static file requested {requests:?}"
    );
    let shot = artifacts().join("report-static.png");
    chromium(
        "static-shot",
        &[
            "--window-size=1280,2200",
            &format!("--screenshot={}", shot.display()),
            &file_url,
        ],
    );
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
}
