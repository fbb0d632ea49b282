//! The page's "who is behind it" and "which of our hosts" sections: the
//! drill-down of a day's sources for one protocol/port, our most probed
//! addresses, and the enrichment cells (ASN, country, labels) every source
//! row carries. The static file holds the top spikes' drill-downs (bounded);
//! the server renders the one the URL asks for, with its pages.

use std::fmt::Write as _;

use super::{
    aggregate::{
        DestinationPage, DestinationSort, DrillPage, DrillSort, ProtoPort, Selection, Window, date,
        utc_time,
    },
    enrich::{Columns, Enrichment},
    filter::{FilterQuery, encode},
    html::esc,
};
use crate::dayfile::ProtoColumn;

/// Spikes whose drill-down the static file holds, and rows of each.
pub const STATIC_DRILLS: usize = 5;
pub const STATIC_DRILL_ROWS: usize = 100;
/// Destinations listed in a drill-down cell (the JSON lists up to 1000).
const DESTINATIONS_IN_CELL: usize = 8;
/// Rows of the per-destination table on the page.
pub const DESTINATIONS_SHOWN: usize = 20;

/// Header cells of the enrichment columns that are on.
pub fn enrich_head(c: Columns) -> String {
    let mut h = String::new();
    if c.asn {
        h.push_str("<th>ASN</th><th>Organisation</th>");
    }
    if c.country {
        h.push_str("<th>Country</th>");
    }
    if c.labels {
        h.push_str("<th>Labels</th>");
    }
    h
}

/// The enrichment cells of address `id`.
pub fn enrich_cells(e: &Enrichment, id: u32) -> String {
    let mut h = String::new();
    if e.columns.asn {
        let asn = e.asn(id);
        let _ = write!(
            h,
            r#"<td class="asn">{}</td><td class="org">{}</td>"#,
            asn.map(|n| format!("AS{n}")).unwrap_or_default(),
            esc(asn.and_then(|n| e.org(n)).unwrap_or(""))
        );
    }
    if e.columns.country {
        let _ = write!(
            h,
            r#"<td class="country">{}</td>"#,
            esc(e.country(id).unwrap_or(""))
        );
    }
    if e.columns.labels {
        let _ = write!(
            h,
            r#"<td class="labels">{}</td>"#,
            esc(&e.labels(id).collect::<Vec<_>>().join(", "))
        );
    }
    h
}

fn service_text(s: ProtoPort) -> (String, String) {
    (
        ProtoColumn(s.proto).to_string(),
        s.port().map_or(String::new(), |p| p.to_string()),
    )
}

/// The URL query of a drill-down of `service` on `day`, keeping the
/// filters other than protocol and port.
fn drill_query(
    filters: &FilterQuery,
    day: u16,
    service: ProtoPort,
    extra: &[(&str, &str)],
) -> String {
    let (proto, port) = service_text(service);
    let d = date(day);
    let mut pairs: Vec<(&str, &str)> = filters
        .pairs()
        .into_iter()
        .filter(|(k, _)| *k != "proto" && *k != "port")
        .collect();
    pairs.push(("day", &d));
    pairs.push(("proto", &proto));
    if !port.is_empty() {
        pairs.push(("port", &port));
    }
    pairs.extend_from_slice(extra);
    encode(&pairs)
}

/// "Top ASNs: …; countries: …" of every source of a drill-down.
fn drill_tops(h: &mut String, e: &Enrichment, page: &DrillPage) {
    let crate::report::enrich::Tops { asns, countries } = e.top(page.all_source_ids(), 5);
    let mut parts = Vec::new();
    if e.columns.asn && !asns.is_empty() {
        let list: Vec<String> = asns
            .iter()
            .map(|&(a, n)| format!("AS{a} {} ({n})", e.org(a).unwrap_or("")))
            .collect();
        parts.push(format!("top ASNs: {}", list.join(", ")));
    }
    if e.columns.country && !countries.is_empty() {
        let list: Vec<String> = countries
            .iter()
            .map(|(c, n)| format!("{c} ({n})"))
            .collect();
        parts.push(format!("countries: {}", list.join(", ")));
    }
    if !parts.is_empty() {
        let _ = writeln!(
            h,
            r#"<p class="note drill-tops">Of all {} sources: {}.</p>"#,
            page.total,
            esc(&parts.join("; "))
        );
    }
}

fn drill_table(
    h: &mut String,
    e: &Enrichment,
    page: &DrillPage,
    sort_links: Option<&dyn Fn(DrillSort) -> String>,
) {
    let th = |name: &str, by: &str, class: &str| -> String {
        match sort_links {
            Some(link) => {
                let sort = DrillSort::parse(Some(by)).unwrap_or_default();
                // A second click on the current column reverses it.
                let sort = if sort.by == page.sort.by {
                    DrillSort {
                        by: sort.by,
                        descending: !page.sort.descending,
                    }
                } else {
                    sort
                };
                format!(
                    r#"<th{class}><a class="sort" href="?{}#drill">{name}</a></th>"#,
                    esc(&link(sort))
                )
            }
            None => format!("<th{class}>{name}</th>"),
        }
    };
    let _ = writeln!(
        h,
        r#"<table class="drill-table" data-date="{date}" data-proto="{proto}" data-port="{port}" data-total="{total}"><thead><tr>{}{}{}{}{}<th>Destination list</th></tr></thead><tbody>"#,
        th("Source", "src", ""),
        enrich_head(e.columns),
        th("First seen (UTC)", "first_seen", ""),
        th("Destinations", "destinations", r#" class="n""#),
        th("Ports that day", "ports", ""),
        date = date(page.day),
        proto = esc(&service_text(page.service).0),
        port = service_text(page.service).1,
        total = page.total,
    );
    for r in &page.rows {
        let ports: Vec<String> = r.ports.iter().map(ToString::to_string).collect();
        let dsts: Vec<String> = r
            .destination_list
            .iter()
            .take(DESTINATIONS_IN_CELL)
            .map(ToString::to_string)
            .collect();
        let _ = writeln!(
            h,
            r#"<tr><td class="src">{}</td>{}<td>{}</td><td class="n">{}</td><td class="ports" title="{}">{} ({})</td><td class="dsts">{}{}</td></tr>"#,
            esc(&r.src.to_string()),
            enrich_cells(e, r.src_id()),
            utc_time(r.first_seen),
            r.destinations,
            esc(&ports.join(", ")),
            ports.len(),
            esc(&ports.iter().take(5).cloned().collect::<Vec<_>>().join(", ")),
            esc(&dsts.join(" ")),
            if (r.destinations as usize) > dsts.len() {
                " …"
            } else {
                ""
            }
        );
    }
    h.push_str("</tbody></table>\n");
}

/// The served page's drill-down: the one the URL asks for, or links to the
/// top spikes' when it asks for none.
pub fn served_drill(
    window: &Window,
    e: &Enrichment,
    filters: &FilterQuery,
    asked: Option<Result<&DrillPage, &str>>,
) -> String {
    let mut h = String::with_capacity(16 * 1024);
    h.push_str(
        r#"<section id="drill"><h2>Drill-down: who is behind it</h2>
<p class="note">One day's sources for one protocol/port: when each was first seen, which of our addresses it hit, and every port it tried that day. Click a column to sort; all rows are paged (<code>/api/drill</code>).</p>
"#,
    );
    match asked {
        Some(Ok(page)) => {
            let (proto, port) = service_text(page.service);
            let link = |sort: DrillSort| {
                drill_query(filters, page.day, page.service, &[("sort", &sort.name())])
            };
            let _ = writeln!(
                h,
                r#"<h3 id="drill-title">{} {} on {}: {} sources</h3>"#,
                esc(&proto),
                port,
                date(page.day),
                page.total
            );
            drill_tops(&mut h, e, page);
            drill_table(&mut h, e, page, Some(&link));
            let to = page.offset + page.rows.len();
            let pager = |offset: usize| {
                drill_query(
                    filters,
                    page.day,
                    page.service,
                    &[("sort", &page.sort.name()), ("offset", &offset.to_string())],
                )
            };
            let _ = writeln!(
                h,
                r#"<p id="drill-status">Showing {}&ndash;{to} of {}.</p><nav id="drill-pager">{}{}</nav>"#,
                if page.rows.is_empty() {
                    0
                } else {
                    page.offset + 1
                },
                page.total,
                if page.offset > 0 {
                    format!(
                        r#"<a id="drill-prev" href="?{}#drill">Previous</a>"#,
                        esc(&pager(page.offset.saturating_sub(page.limit)))
                    )
                } else {
                    String::new()
                },
                if to < page.total {
                    format!(
                        r#"<a id="drill-next" href="?{}#drill">Next</a>"#,
                        esc(&pager(to))
                    )
                } else {
                    String::new()
                },
            );
            let q = drill_query(filters, page.day, page.service, &[("view", "drill")]);
            let _ = writeln!(
                h,
                r#"<p class="note">Export: <a href="/api/export.csv?{q}">CSV</a> <a href="/api/export.json?{q}">JSON</a></p>"#,
                q = esc(&q)
            );
        }
        Some(Err(message)) => {
            let _ = writeln!(
                h,
                r#"<p id="drill-status" class="error">{}</p>"#,
                esc(message)
            );
        }
        None => {}
    }
    h.push_str("<ul id=\"drill-links\">\n");
    for s in window.spikes.iter().take(10) {
        let q = drill_query(filters, s.day, s.service, &[]);
        let _ = writeln!(
            h,
            r#"<li><a class="drill-link" href="?{}#drill">{} {}: {} sources</a></li>"#,
            esc(&q),
            date(s.day),
            esc(&s.service.to_string()),
            s.count
        );
    }
    h.push_str("</ul>\n");
    if !window.is_empty() {
        // Any series on any shown day: the form the links fill.
        let _ = writeln!(
            h,
            r#"<form id="drill-form" method="get" action="/#drill"><label>Day <input name="day" value="{}"></label><label>Protocol <input name="proto" value="TCP"></label><label>Port <input name="port"></label><button type="submit">Drill down</button></form>"#,
            date(window.last_day)
        );
    }
    h.push_str("</section>\n");
    h
}

/// The static file's drill-downs: the first [`STATIC_DRILLS`] spikes, the
/// first [`STATIC_DRILL_ROWS`] sources of each by first seen.
pub fn static_drills(window: &Window, e: &Enrichment) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let _ = writeln!(
        h,
        r#"<section id="drill"><h2>Drill-down: who is behind it</h2>
<p class="note">For the first {STATIC_DRILLS} spikes above, the first {STATIC_DRILL_ROWS} sources by first seen, with every port each tried that day and the destinations it hit. This static file holds only these; <code>tsusen serve</code> drills into any day and series, sorted and paged.</p>"#
    );
    let all = Selection::default();
    for s in window.spikes.iter().take(STATIC_DRILLS) {
        let Some(page) = window.drill(
            s.day,
            s.service,
            &all,
            DrillSort::default(),
            0,
            STATIC_DRILL_ROWS,
        ) else {
            continue;
        };
        let _ = writeln!(
            h,
            "<h3>{} on {}: {} sources{}</h3>",
            esc(&s.service.to_string()),
            date(s.day),
            page.total,
            if page.total > page.rows.len() {
                format!(" (first {} shown)", page.rows.len())
            } else {
                String::new()
            }
        );
        drill_tops(&mut h, e, &page);
        drill_table(&mut h, e, &page, None);
    }
    if window.spikes.is_empty() {
        h.push_str("<p>No spikes to drill into.</p>\n");
    }
    h.push_str("</section>\n");
    h
}

/// Our most probed addresses (which of our hosts), under the filters.
pub fn destinations_section(
    e: &Enrichment,
    page: Result<&DestinationPage, &str>,
    export_query: Option<&str>,
) -> String {
    let mut h = String::with_capacity(8 * 1024);
    let _ = writeln!(
        h,
        r#"<section id="destinations"><h2>Which of our hosts</h2>
<p class="note">Our addresses by probes: distinct (day, protocol, port, source) that reached each, over the window{}, with the ports most probed on it.</p>"#,
        if export_query.is_some() {
            " (or the day given) under the filters; <code>/api/destinations</code> pages through all"
        } else {
            ""
        }
    );
    match page {
        Ok(page) => {
            let _ = writeln!(
                h,
                r#"<table id="destinations-table" data-total="{}"><thead><tr><th>Destination</th>{}<th class="n">Probes</th><th class="n">Ports</th><th>Most probed</th></tr></thead><tbody>"#,
                page.total,
                if e.columns.labels {
                    "<th>Labels</th>"
                } else {
                    ""
                }
            );
            for r in &page.rows {
                let ports: Vec<String> = r
                    .ports
                    .iter()
                    .take(5)
                    .map(|(s, n)| format!("{s} ({n})"))
                    .collect();
                let _ = writeln!(
                    h,
                    r#"<tr><td class="dst">{}</td>{}<td class="n">{}</td><td class="n">{}</td><td>{}</td></tr>"#,
                    esc(&r.dst.to_string()),
                    if e.columns.labels {
                        format!(
                            r#"<td class="labels">{}</td>"#,
                            esc(&e.labels(r.dst_id()).collect::<Vec<_>>().join(", "))
                        )
                    } else {
                        String::new()
                    },
                    r.probes,
                    r.services,
                    esc(&ports.join(", "))
                );
            }
            let _ = writeln!(
                h,
                "</tbody></table><p class=\"note\">{} of {} addresses shown.</p>",
                page.rows.len(),
                page.total
            );
        }
        Err(message) => {
            let _ = writeln!(h, r#"<p class="error">{}</p>"#, esc(message));
        }
    }
    if let Some(q) = export_query {
        let sep = if q.is_empty() { "" } else { "&" };
        let _ = writeln!(
            h,
            r#"<p class="note">Export: details <a href="/api/export.csv?{q}">CSV</a> <a href="/api/export.json?{q}">JSON</a>; destinations <a href="/api/export.csv?{q}{sep}view=destinations">CSV</a> <a href="/api/export.json?{q}{sep}view=destinations">JSON</a></p>"#,
            q = esc(q)
        );
    }
    h.push_str("</section>\n");
    h
}

/// The per-destination page the static file holds.
pub fn static_destinations(window: &Window, e: &Enrichment) -> String {
    let page = window.destinations(
        None,
        &Selection::default(),
        DestinationSort::Probes,
        0,
        DESTINATIONS_SHOWN,
    );
    destinations_section(e, Ok(&page), None)
}
