//! The trendline chart: distinct sources per day for the top series, log
//! scale, spikes circled. Drawn by plotters' SVG backend (text as SVG <text>,
//! no fonts or bitmaps), so the page needs no script to show it.

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::aggregate::{Window, date};

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

/// The chart as a standalone SVG document.
pub fn trends_svg(window: &Window) -> Result<String> {
    let mut svg = String::new();
    draw(window, &mut svg).map_err(|e| anyhow!("drawing the chart: {e}"))?;
    Ok(svg)
}

fn draw(window: &Window, svg: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let charted = window.charted();
    if charted.is_empty() {
        root.draw(&Text::new(
            "No series to draw (no data, or all folded away)",
            (20, 30),
            ("sans-serif", 16).into_font(),
        ))?;
        root.present()?;
        return Ok(());
    }
    let (plot, legend) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
    // A window is at most a few hundred days and a chart a dozen series.
    let days = i32::try_from(window.covered.len()).expect("a window of days fits i32");
    let max = charted
        .iter()
        .flat_map(|s| s.counts.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1);
    let first_day = window.first_day;
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
        .build_cartesian_2d(-1..days, (0.8f64..f64::from(max) * 1.6).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(usize::try_from(days).unwrap_or(0).clamp(2, 12))
        .x_label_formatter(&label)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("distinct sources (log)")
        .light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;

    for (index, series) in charted.iter().enumerate() {
        let c = color(index);
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
    }
    let spikes: Vec<(i32, f64)> = window
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
    let last = window.covered.len() - 1;
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
    Ok(())
}

/// The chart for embedding in HTML: the same SVG without its namespace URL
/// (the HTML parser supplies it), so the page holds no URL at all.
pub fn inline(svg: &str) -> String {
    svg.replacen(r#" xmlns="http://www.w3.org/2000/svg""#, "", 1)
}
