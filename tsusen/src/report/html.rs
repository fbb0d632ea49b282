//! The page: one HTML document for both the static report and the server.
//! The static file carries its style inline and no script; the served page
//! loads its style and a small script from the server itself, so a strict
//! `default-src 'self'` policy holds. Style and script live in `assets/` and
//! are compiled in: the binary fetches nothing. Every value from a day file
//! is escaped.

use std::fmt::Write as _;

use super::{
    aggregate::{Change, DetailPage, ProtoPort, Series, Window, date, utc_time},
    chart,
    enrich::Enrichment,
    spikes::{BASELINE_DAYS, MIN_BASELINE_DAYS},
    who,
};
use crate::dayfile::ProtoColumn;

/// Content-Security-Policy of the served page (header and meta).
pub const SERVED_CSP: &str = "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
/// Content-Security-Policy of the static file: nothing may be fetched at all.
pub const STATIC_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

/// The page's style: inline in the static file, `/assets/style.css` when served.
pub const STYLE: &str = include_str!("assets/report.css");

/// The served page's script: the details table's filter form and pager call
/// `/api/details` instead of reloading the page.
pub const APP_JS: &str = include_str!("assets/report.js");

/// Rows of the spike table on the page.
const SPIKES_SHOWN: usize = 200;
/// Rows of the series table on the page.
const SERIES_SHOWN: usize = 100;

/// Escape text for HTML element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Which page: the static file or the served one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Static,
    Served,
}

/// Context the page states about its input.
pub struct About<'a> {
    pub files: usize,
    /// What `files` counts: "day files", "days in ClickHouse".
    pub unit: &'a str,
    pub warnings: &'a [String],
    pub generated: &'a str,
}

/// Everything above the details table.
pub fn top(window: &Window, chart_svg: &str, about: &About<'_>, mode: Mode) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let (csp, style) = match mode {
        Mode::Static => (STATIC_CSP, format!("<style>{STYLE}</style>")),
        Mode::Served => (
            SERVED_CSP,
            r#"<link rel="stylesheet" href="/assets/style.css">"#.to_owned(),
        ),
    };
    let range = if window.is_empty() {
        "no data".to_owned()
    } else {
        format!("{} to {}", date(window.first_day), date(window.last_day))
    };
    let _ = write!(
        h,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<title>tsusen: {range}</title>
{style}
</head><body>
<header><h1>tsusen</h1>
<p class="meta">Distinct source addresses per protocol/port and UTC day, {range} ({days} days, {files} {unit}, {rows} rows). Generated {generated} UTC.</p></header>
"#,
        range = esc(&range),
        days = window.covered.len(),
        files = about.files,
        unit = esc(about.unit),
        rows = window.rows,
        generated = esc(about.generated),
    );
    if window.is_empty() {
        let _ = writeln!(h, "<p>No {} found.</p>", esc(about.unit));
    }
    trends(&mut h, window, chart_svg);
    series(&mut h, window);
    spikes(&mut h, window);
    hours(&mut h, window, mode);
    today(&mut h, window);
    h
}

fn trends(h: &mut String, window: &Window, chart_svg: &str) {
    let o = &window.options;
    let charted = window.charted();
    let unfolded = window.series.len() - window.folded_count();
    let _ = write!(
        h,
        r#"<section id="trends"><h2>Trendlines</h2>
<figure id="chart">{svg}</figure>
<p class="note">The top {shown} of {unfolded} series by distinct sources on the newest day (log scale); red circles mark spikes, dashed lines are each series' least-squares trend; hover a point for its value.
{folded} series are folded away: fewer than {min} sources (<code>--min-sources</code>) on some earlier day and never {burst} or more (<code>--burst-factor</code> {factor}).</p>
</section>
"#,
        svg = chart::inline(chart_svg),
        shown = charted.len(),
        folded = window.folded_count(),
        min = o.min_sources,
        burst = o.min_sources.saturating_mul(o.burst_factor),
        factor = o.burst_factor,
    );
}

fn service_cells(service: ProtoPort) -> String {
    format!(
        "<td>{}</td><td class=\"n\">{}</td>",
        esc(&ProtoColumn(service.proto).to_string()),
        service.port().map_or("-".to_owned(), |p| p.to_string())
    )
}

/// `+12 (+25%)`, `+5 (new)` after a day without sources, `-` without a day file.
fn change_text(change: Option<Change>) -> String {
    let Some(c) = change else {
        return "-".to_owned();
    };
    match c.percent() {
        Some(p) => format!("{:+} ({p:+.0}%)", c.delta()),
        None if c.now > 0 => format!("{:+} (new)", c.delta()),
        None => "0".to_owned(),
    }
}

fn series(h: &mut String, window: &Window) {
    if window.is_empty() {
        return;
    }
    let unfolded: Vec<&Series> = window.series.iter().take_while(|s| !s.folded).collect();
    let _ = write!(
        h,
        r#"<section id="series"><h2>Series</h2>
<p class="note">Each unfolded series on the newest day ({newest}): its distinct sources, the change against the day before and against the same weekday a week before (&ndash; when that day has no day file), and its trend: the least-squares slope over the shown days with a day file, in sources per day.</p>
<table id="series-table" data-day="{newest}"><thead><tr><th></th><th>Protocol</th><th class="n">Port</th><th class="n">Sources</th><th class="n">vs yesterday</th><th class="n">vs last week</th><th class="n">Trend /day</th><th class="n">Spikes</th></tr></thead><tbody>
"#,
        newest = date(window.last_day)
    );
    let charted = window.charted().len();
    for (index, s) in unfolded.iter().take(SERIES_SHOWN).enumerate() {
        let swatch = if index < charted {
            format!(
                r#"<svg class="swatch" width="10" height="10"><rect width="10" height="10" fill="{}"/></svg>"#,
                chart::hex(chart::color(index))
            )
        } else {
            String::new()
        };
        let spikes = window
            .spikes
            .iter()
            .filter(|p| p.service == s.service)
            .count();
        let _ = writeln!(
            h,
            r#"<tr><td>{swatch}</td>{}<td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{spikes}</td></tr>"#,
            service_cells(s.service),
            s.newest(),
            change_text(s.vs_yesterday),
            change_text(s.vs_last_week),
            s.trend
                .map_or("-".to_owned(), |t| format!("{:+.1}", t.slope)),
        );
    }
    h.push_str("</tbody></table>\n");
    if unfolded.len() > SERIES_SHOWN {
        let _ = writeln!(
            h,
            "<p class=\"note\">The first {SERIES_SHOWN} of {} unfolded series; <code>/api/series</code> lists every series.</p>",
            unfolded.len()
        );
    }
    h.push_str("</section>\n");
}

fn spikes(h: &mut String, window: &Window) {
    let o = &window.options;
    let _ = write!(
        h,
        r#"<section id="spikes"><h2>Spikes</h2>
<p class="note">A day is a spike for a series when its distinct sources are above both the median + {k}&times;IQR and the mean + {k}&times;SD (<code>--spike-k</code>) of the previous {BASELINE_DAYS} days (days with a day file; at least {MIN_BASELINE_DAYS}), and at least {min} (<code>--spike-min</code>). Largest first: the ratio is sources / threshold (a threshold under 1 counts as 1). <em>new</em>: no source on any baseline day.</p>
<table id="spike-table"><thead><tr><th>Date</th><th>Protocol</th><th class="n">Port</th><th class="n">Sources</th><th class="n">Threshold</th><th class="n">Ratio</th><th>New</th><th class="n">Median</th><th class="n">IQR</th><th class="n">Mean</th><th class="n">SD</th><th class="n">Baseline days</th></tr></thead><tbody>
"#,
        k = o.spike_k,
        min = o.spike_min
    );
    for s in window.spikes.iter().take(SPIKES_SHOWN) {
        let b = &s.baseline;
        let _ = writeln!(
            h,
            r#"<tr class="spike"><td>{}</td>{}<td class="n">{}</td><td class="n">{:.1}</td><td class="n">{:.2}</td><td>{}</td><td class="n">{:.1}</td><td class="n">{:.1}</td><td class="n">{:.1}</td><td class="n">{:.1}</td><td class="n">{}</td></tr>"#,
            date(s.day),
            service_cells(s.service),
            s.count,
            s.threshold,
            s.ratio,
            if s.new { "new" } else { "" },
            b.median,
            b.iqr,
            b.mean,
            b.sd,
            b.days
        );
    }
    h.push_str("</tbody></table>\n");
    if window.spikes.is_empty() {
        h.push_str("<p>No spikes in the window.</p>\n");
    } else if window.spikes.len() > SPIKES_SHOWN {
        let _ = writeln!(
            h,
            "<p class=\"note\">The largest {SPIKES_SHOWN} of {} spikes; <code>/api/spikes</code> lists all.</p>",
            window.spikes.len()
        );
    }
    h.push_str("</section>\n");
}

/// The time-of-day view: the largest spike's day and port by hour (without
/// spikes, the top series on the newest day); on the served page a click on
/// a spike or series row shows that one instead.
fn hours(h: &mut String, window: &Window, mode: Mode) {
    let (day, service, what) = match (window.spikes.first(), window.series.first()) {
        (Some(top), _) => (top.day, top.service, "the largest spike"),
        (None, Some(top)) => (window.last_day, top.service, "the top series"),
        (None, None) => return,
    };
    let Some(hours) = window.hours(day, service) else {
        return;
    };
    let _ = write!(
        h,
        r#"<section id="hours"><h2>By hour</h2>
<figure id="hours-chart">{svg}</figure>
<p class="note">Distinct sources by the UTC hour each was first seen that day{which}.</p>
</section>
"#,
        svg = chart::inline(&chart::hours_svg(&hours)),
        which = match mode {
            Mode::Static => format!(" ({what})"),
            Mode::Served =>
                format!(" ({what}); click a row of the series or spike table to show another"),
        },
    );
}

fn today(h: &mut String, window: &Window) {
    let t = &window.today;
    if window.is_empty() {
        return;
    }
    let _ = write!(
        h,
        r#"<section id="today"><h2>Newest day: {}</h2><div class="cols">
<div><h3>Top ports</h3><table id="top-ports"><thead><tr><th>Protocol</th><th class="n">Port</th><th class="n">Sources</th></tr></thead><tbody>
"#,
        date(t.day)
    );
    for &(service, n) in &t.top {
        let _ = writeln!(
            h,
            r#"<tr>{}<td class="n">{n}</td></tr>"#,
            service_cells(service)
        );
    }
    let _ = write!(
        h,
        r#"</tbody></table></div>
<div><h3>New in the window</h3><table id="new-ports"><thead><tr><th>Protocol</th><th class="n">Port</th><th class="n">Sources</th></tr></thead><tbody>
"#
    );
    for &(service, n) in &t.new {
        let _ = writeln!(
            h,
            r#"<tr>{}<td class="n">{n}</td></tr>"#,
            service_cells(service)
        );
    }
    let _ = write!(
        h,
        r#"</tbody></table><p class="note">{} protocol/ports seen on no earlier day of the window{}.</p></div>
<div><h3>Busiest sources</h3><table id="busiest"><thead><tr><th>Source</th><th class="n">Ports</th><th class="n">Probes</th></tr></thead><tbody>
"#,
        t.new_total,
        if t.new_total > t.new.len() {
            format!(" (top {} shown)", t.new.len())
        } else {
            String::new()
        }
    );
    for b in &t.busiest {
        let _ = writeln!(
            h,
            r#"<tr><td>{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
            esc(&b.src.to_string()),
            b.ports,
            b.probes
        );
    }
    h.push_str(
        "</tbody></table><p class=\"note\">Probes: distinct (protocol, port, destination).</p></div>\n</div></section>\n",
    );
}

/// The details rows of one page.
fn detail_rows(h: &mut String, window: &Window, e: &Enrichment, page: &DetailPage) {
    for d in &page.rows {
        let _ = writeln!(
            h,
            r#"<tr>{}<td>{}</td>{}<td>{}</td><td>{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
            service_cells(d.service),
            esc(&window.source_of(d).to_string()),
            who::enrich_cells(e, d.src_id()),
            utc_time(d.first_seen),
            date(d.last_day),
            d.days,
            d.destinations
        );
    }
}

/// The details table's head, with the enrichment columns that are on.
fn details_head(e: &Enrichment) -> String {
    format!(
        r#"<table id="details-table"><thead><tr><th>Protocol</th><th class="n">Port</th><th>Source</th>{}<th>First seen (UTC)</th><th>Last day</th><th class="n">Days</th><th class="n">Destinations</th></tr></thead><tbody>
"#,
        who::enrich_head(e.columns)
    )
}

/// The static file's details: the first rows of the table, and how many there are.
pub fn static_details(window: &Window, e: &Enrichment, page: &DetailPage) -> String {
    let mut h = String::with_capacity(128 * page.rows.len() + 1024);
    let _ = write!(
        h,
        r#"<section id="details"><h2>Details</h2>
<p class="note">The first {} of {} (protocol, port, source) rows over the window, most recently seen, then most days, then most destinations first. This static file holds only these; <code>tsusen serve</code> filters and pages through all of them.</p>
{}"#,
        page.rows.len(),
        page.total,
        details_head(e)
    );
    detail_rows(&mut h, window, e, page);
    h.push_str("</tbody></table></section>\n");
    h
}

/// The filter form's current values.
#[derive(Clone, Copy, Debug, Default)]
pub struct Form<'a> {
    pub ip: &'a str,
    pub port: &'a str,
    pub proto: &'a str,
    pub dst: &'a str,
    pub asn: &'a str,
    pub country: &'a str,
    pub label: &'a str,
    pub nolabel: &'a str,
}

/// The served page's details: filter form, first page (also without script),
/// pager, and the script that takes over.
pub fn served_details(
    window: &Window,
    e: &Enrichment,
    form: Form<'_>,
    page: Result<&DetailPage, &str>,
) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        r#"<section id="details"><h2>Details</h2>
<p class="note">Every (protocol, port, source) over the window, most recently seen, then most days, then most destinations first. Filters run on the server.</p>
<form id="filter" method="get" action="/">
<label>Source addresses, CIDRs or ranges <input name="ip" value="{ip}" placeholder="198.51.100.0/24"></label>
<label>Port <input name="port" value="{port}" placeholder="23"></label>
<label>Protocol <input name="proto" value="{proto}" placeholder="TCP"></label>
<label>Destinations <input name="dst" value="{dst}" placeholder="192.0.2.0/24, 203.0.113.1-203.0.113.9"></label>
<label>ASN <input name="asn" value="{asn}" placeholder="AS64500"></label>
<label>Country <input name="country" value="{country}" placeholder="NL"></label>
<label>Label <input name="label" value="{label}"></label>
<label>Hide label <input name="nolabel" value="{nolabel}" placeholder="research"></label>
<button type="submit">Filter</button>
</form>
<p class="note">Lists are comma-separated; the filters apply to the details, the drill-down and the destinations, and stay in the URL.</p>
"#,
        ip = esc(form.ip),
        port = esc(form.port),
        proto = esc(form.proto),
        dst = esc(form.dst),
        asn = esc(form.asn),
        country = esc(form.country),
        label = esc(form.label),
        nolabel = esc(form.nolabel),
    );
    match page {
        Ok(page) => {
            let to = page.offset + page.rows.len();
            let _ = writeln!(
                h,
                r#"<p id="details-status" data-loaded="server" data-total="{total}">{total} matching rows; showing {from}&ndash;{to}.</p>"#,
                total = page.total,
                from = if page.rows.is_empty() {
                    0
                } else {
                    page.offset + 1
                },
            );
            h.push_str(&details_head(e));
            detail_rows(&mut h, window, e, page);
            let prev = page.offset.saturating_sub(page.limit);
            let _ = write!(
                h,
                r#"</tbody></table>
<nav id="pager"><a id="prev" href="?offset={prev}" data-offset="{prev}"{}>Previous</a><a id="next" href="?offset={to}" data-offset="{to}"{}>Next</a></nav>
"#,
                if page.offset > 0 { "" } else { " hidden" },
                if to < page.total { "" } else { " hidden" },
            );
        }
        Err(error) => {
            let _ = writeln!(
                h,
                r#"<p id="details-status" data-loaded="error">{}</p>{}</tbody></table><nav id="pager"><a id="prev" href="?" hidden>Previous</a><a id="next" href="?" hidden>Next</a></nav>"#,
                esc(error),
                details_head(e)
            );
        }
    }
    h.push_str("<script src=\"/assets/app.js\"></script>\n</section>\n");
    h
}

/// Everything below the details table.
pub fn bottom(warnings: &[String]) -> String {
    let mut h = String::new();
    if !warnings.is_empty() {
        let _ = writeln!(
            h,
            r#"<section id="warnings"><h2>Skipped input</h2><ul class="warnings">"#
        );
        for w in warnings.iter().take(200) {
            let _ = writeln!(h, "<li>{}</li>", esc(w));
        }
        if warnings.len() > 200 {
            let _ = writeln!(h, "<li>… and {} more</li>", warnings.len() - 200);
        }
        h.push_str("</ul></section>\n");
    }
    h.push_str("</body></html>\n");
    h
}
