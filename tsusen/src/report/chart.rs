//! The trendline chart: distinct sources per day for the top series, log
//! scale, spikes circled, each series' least-squares trend dashed-light, and
//! every point's value in an SVG `<title>` (shown on hover). Drawn by
//! plotters' SVG backend (text as SVG <text>, no fonts or bitmaps), so the
//! page needs no script to show it. Also the time-of-day bars.

use std::fmt::Write as _;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::{
    aggregate::{Hours, Series, Spike, Trends, Window, date},
    html::esc,
};

pub const WIDTH: u32 = 1000;
pub const HEIGHT: u32 = 440;
const LEGEND_WIDTH: u32 = 200;

/// Tableau 10 without its red, which marks spikes.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(57, 59, 121),
];
/// Spike markers (`#E00000` in the SVG).
pub const SPIKE: RGBColor = RGBColor(224, 0, 0);

/// The series colour, as the page's tables show it too.
pub fn color(index: usize) -> RGBColor {
    PALETTE[index % PALETTE.len()]
}

/// `#rrggbb` of a colour.
pub fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// What the chart draws: the charted series and their spikes over the shown
/// days. Of the whole window, or of [`Trends`] built from filtered counts, so
/// the chart follows whatever filter built them.
#[derive(Clone, Copy, Debug)]
pub struct ChartView<'a> {
    pub first_day: u16,
    /// Shown days that have a day file.
    pub covered: &'a [bool],
    pub charted: &'a [Series],
    pub spikes: &'a [Spike],
}

impl<'a> ChartView<'a> {
    pub fn of(window: &'a Window) -> Self {
        ChartView {
            first_day: window.first_day,
            covered: &window.covered,
            charted: window.charted(),
            spikes: &window.spikes,
        }
    }

    /// The top `top` unfolded series of `trends`.
    pub fn of_trends(trends: &'a Trends, top: usize) -> Self {
        ChartView {
            first_day: trends.first_day,
            covered: &trends.covered,
            charted: trends.charted(top),
            spikes: &trends.spikes,
        }
    }
}

/// The chart as a standalone SVG document.
pub fn trends_svg(window: &Window) -> Result<String> {
    view_svg(&ChartView::of(window))
}

/// The chart of `view` as a standalone SVG document.
pub fn view_svg(view: &ChartView<'_>) -> Result<String> {
    let mut svg = String::new();
    let points = draw(view, &mut svg).map_err(|e| anyhow!("drawing the chart: {e}"))?;
    // Hover targets after (above) everything plotters drew: an invisible
    // circle per point with its value as a tooltip.
    if !points.is_empty() {
        let mut hover = String::from("<g class=\"hover\">\n");
        for (x, y, title) in points {
            let _ = writeln!(
                hover,
                r##"<circle cx="{x}" cy="{y}" r="6" fill="#000" fill-opacity="0"><title>{}</title></circle>"##,
                esc(&title)
            );
        }
        hover.push_str("</g>\n");
        let end = svg.rfind("</svg>").unwrap_or(svg.len());
        svg.insert_str(end, &hover);
    }
    Ok(svg)
}

/// A hover target: backend coordinates and its text.
type Point = (i32, i32, String);

fn draw(view: &ChartView<'_>, svg: &mut String) -> Result<Vec<Point>, Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let charted = view.charted;
    if charted.is_empty() {
        root.draw(&Text::new(
            "No series to draw (no data, or all folded away)",
            (20, 30),
            ("sans-serif", 16).into_font(),
        ))?;
        root.present()?;
        return Ok(Vec::new());
    }
    let (plot, legend) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
    // A window is at most a few hundred days and a chart a dozen series.
    let days = i32::try_from(view.covered.len()).expect("a window of days fits i32");
    let max = charted
        .iter()
        .flat_map(|s| s.counts.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1);
    let first_day = view.first_day;
    let y_min = 0.8;
    let label = |i: &i32| {
        if (0..days).contains(i) {
            date(first_day + u16::try_from(*i).unwrap_or(0))[5..].to_owned()
        } else {
            String::new()
        }
    };
    let mut chart = ChartBuilder::on(&plot)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(-1..days, (y_min..f64::from(max) * 1.6).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(usize::try_from(days).unwrap_or(0).clamp(2, 12))
        .x_label_formatter(&label)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("distinct sources (log)")
        .light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;

    let mut hover = Vec::new();
    for (index, series) in charted.iter().enumerate() {
        let c = color(index);
        // The trend: thin and light, under the data; a log scale has no
        // place for values below its floor, so the line stops there.
        if let Some(trend) = series.trend {
            let fitted: Vec<(i32, f64)> = (0..days)
                .map(|i| (i, trend.at(usize::try_from(i).unwrap_or(0))))
                .collect();
            for run in fitted
                .chunk_by(|a, b| (a.1 >= y_min) == (b.1 >= y_min))
                .filter(|run| run[0].1 >= y_min)
            {
                chart.draw_series(DashedLineSeries::new(
                    run.iter().copied(),
                    6,
                    4,
                    c.mix(0.6).stroke_width(1),
                ))?;
            }
        }
        let points: Vec<(i32, f64)> = series
            .counts
            .iter()
            .zip(0..)
            .filter(|(n, _)| **n > 0)
            .map(|(&n, day)| (day, f64::from(n)))
            .collect();
        // A day without sources has no place on a log scale: break the line.
        for run in points.chunk_by(|a, b| b.0 == a.0 + 1) {
            chart.draw_series(LineSeries::new(run.iter().copied(), c.stroke_width(2)))?;
        }
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 2, c.filled())))?;
        for &(x, y) in &points {
            let day = first_day + u16::try_from(x).unwrap_or(0);
            let spike = view
                .spikes
                .iter()
                .find(|s| s.day == day && s.service == series.service)
                .map_or(String::new(), |s| {
                    format!(" (spike, {:.1}× its threshold)", s.ratio)
                });
            let (px, py) = chart.backend_coord(&(x, y));
            hover.push((
                px,
                py,
                format!("{} on {}: {y} sources{spike}", series.service, date(day)),
            ));
        }
    }
    let spikes: Vec<(i32, f64)> = view
        .spikes
        .iter()
        .filter(|s| charted.iter().any(|c| c.service == s.service))
        .map(|s| (i32::from(s.day - first_day), f64::from(s.count)))
        .collect();
    chart.draw_series(
        spikes
            .iter()
            .map(|&p| Circle::new(p, 8, SPIKE.stroke_width(2))),
    )?;

    // The legend, beside the plot so it never hides a line.
    let last = view.covered.len() - 1;
    let font = ("sans-serif", 13).into_font();
    for (index, series) in charted.iter().enumerate() {
        let y = 24 + 20 * i32::try_from(index).expect("a dozen series at most");
        legend.draw(&PathElement::new(
            vec![(4, y), (26, y)],
            color(index).stroke_width(3),
        ))?;
        legend.draw(&Text::new(
            format!("{} ({})", series.service, series.counts[last]),
            (32, y - 7),
            font.clone(),
        ))?;
    }
    let y = 24 + 20 * i32::try_from(charted.len()).expect("a dozen series at most") + 10;
    legend.draw(&Circle::new((15, y), 7, SPIKE.stroke_width(2)))?;
    legend.draw(&Text::new(
        format!("spike ({})", spikes.len()),
        (32, y - 7),
        font,
    ))?;
    root.present()?;
    Ok(hover)
}

pub const HOURS_WIDTH: u32 = 720;
pub const HOURS_HEIGHT: u32 = 200;

/// The time-of-day bars of one day and port as an SVG document: one bar per
/// UTC hour, each with its count as a tooltip.
pub fn hours_svg(hours: &Hours) -> String {
    const LEFT: u32 = 48;
    const TOP: u32 = 28;
    const BOTTOM: u32 = 28;
    let plot_h = HOURS_HEIGHT - TOP - BOTTOM;
    let bar_w = (HOURS_WIDTH - LEFT - 12) / 24;
    let max = hours.counts.iter().copied().max().unwrap_or(0).max(1);
    let mut svg = String::with_capacity(8 * 1024);
    let _ = writeln!(
        svg,
        r#"<svg width="{HOURS_WIDTH}" height="{HOURS_HEIGHT}" viewBox="0 0 {HOURS_WIDTH} {HOURS_HEIGHT}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{HOURS_WIDTH}" height="{HOURS_HEIGHT}" fill="white"/><text x="{LEFT}" y="16">{} on {}: {} sources by the hour (UTC) first seen</text>"#,
        esc(&hours.service.to_string()),
        date(hours.day),
        hours.total()
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">{max}</text><text x="{}" y="{}" text-anchor="end">0</text>"#,
        LEFT - 6,
        TOP + 10,
        LEFT - 6,
        TOP + plot_h
    );
    for (hour, &n) in (0u32..).zip(&hours.counts) {
        let h = plot_h * n / max;
        let x = LEFT + hour * bar_w;
        let _ = writeln!(
            svg,
            r#"<rect x="{}" y="{}" width="{}" height="{h}" fill="{}"><title>{hour:02}:00–{hour:02}:59 UTC: {n} sources</title></rect>"#,
            x + 1,
            TOP + plot_h - h,
            bar_w - 2,
            hex(PALETTE[0]),
        );
        if hour % 3 == 0 {
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="middle">{hour:02}</text>"#,
                x + bar_w / 2,
                HOURS_HEIGHT - 10
            );
        }
    }
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#999"/>"##,
        LEFT + 24 * bar_w,
        y = TOP + plot_h
    );
    svg.push_str("</svg>\n");
    svg
}

/// The chart for embedding in HTML: the same SVG without its namespace URL
/// (the HTML parser supplies it), so the page holds no URL at all.
pub fn inline(svg: &str) -> String {
    svg.replacen(r#" xmlns="http://www.w3.org/2000/svg""#, "", 1)
}
