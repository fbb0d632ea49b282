//! The report: trends, spikes and details from the day files (or from the
//! rows a fleet shipped to ClickHouse), as one static
//! HTML file (`tsusen report`) or served live with JSON endpoints (`tsusen
//! serve`).
//!
//! Days come from a [`source`]: a directory of day files (read by
//! [`crate::dayfile`]) or ClickHouse (aggregated in SQL);
//! [`aggregate`] reduces each day to compact counts and builds the window,
//! [`spikes`] is the spike rule, [`load`] keeps aggregates in step with the
//! source, [`chart`] draws the SVG, [`html`] renders the page (its style
//! and script are `assets/`), [`Page`] assembles it once for both commands,
//! [`serve`] the server, `testdata` makes up day files for tests and the
//! benchmark (only with the `test-helpers` feature).

pub mod aggregate;
pub mod chart;
pub mod enrich;
pub mod filter;
pub mod html;
pub mod load;
pub mod serve;
pub mod source;
pub mod spikes;
#[cfg(any(test, feature = "test-helpers"))]
pub mod testdata;
pub mod who;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context as _, Result, anyhow};

#[cfg(any(test, feature = "test-helpers"))]
pub use self::testdata::{bench_inputs, generate};
use self::{
    aggregate::{DetailFilter, Window, WindowOptions, utc_time},
    enrich::{Enricher, Enrichment},
    load::Loader,
    source::{DaySource, clickhouse::ClickHouseDays, files::DayFiles},
};
use crate::{clickhouse::ClickHouseArgs, exit};

/// What both commands show.
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("source").args(["dir", "urls"]).required(true)))]
pub struct ViewArgs {
    /// Directory of day files (YYYY-MM-DD.csv, UTC); nothing else in it is read. Or --clickhouse.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Read the rows sensors shipped to ClickHouse instead of --dir (--clickhouse URL, the flags below).
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    /// With --clickhouse: only this sensor's rows (repeatable; default every sensor). With --dir: the directory's sensor name in the per-sensor breakdown (default the directory's name).
    #[arg(long = "sensor", value_name = "NAME")]
    pub sensors: Vec<String>,
    /// Days shown, ending with the newest day file up to today (UTC; files dated later are skipped with a warning).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u16).range(1..=366))]
    pub days: u16,
    /// Fold a series away when some earlier shown day has fewer distinct sources than this...
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub min_sources: u32,
    /// ...unless some day reaches min-sources x this factor.
    #[arg(long, value_name = "X", default_value_t = 5)]
    pub burst_factor: u32,
    /// A spike needs at least this many distinct sources that day.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub spike_min: u32,
    /// A spike is above median + K x IQR and mean + K x SD of its baseline (0 to 100).
    #[arg(long, value_name = "K", default_value_t = spikes::DEFAULT_K, value_parser = parse_spike_k)]
    pub spike_k: f64,
    /// Series drawn on the chart (the top ones by the newest day).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    /// ASN, country and labels of addresses (see [`enrich`]).
    #[command(flatten)]
    pub enrich: enrich::EnrichArgs,
}

impl ViewArgs {
    /// Where the days come from: `--dir` or `--clickhouse` (clap makes sure
    /// exactly one is given).
    pub fn source(&self) -> Result<Arc<dyn DaySource>> {
        let Some(dir) = &self.dir else {
            let span = self
                .days
                .saturating_add(u16::try_from(spikes::BASELINE_DAYS).expect("a baseline of weeks"));
            return Ok(Arc::new(ClickHouseDays::connect(
                &self.clickhouse,
                &self.sensors,
                span,
            )?));
        };
        if self.sensors.len() > 1 {
            return Err(exit::config(anyhow!(
                "--dir holds one sensor's day files: give at most one --sensor (its name), or read several from --clickhouse"
            )));
        }
        Ok(Arc::new(DayFiles::new(
            dir.clone(),
            self.sensors.first().cloned(),
        )))
    }

    /// A loader over [`ViewArgs::source`].
    pub fn loader(&self) -> Result<Loader> {
        Ok(Loader::with_source(self.source()?, self.options()))
    }

    pub fn options(&self) -> WindowOptions {
        WindowOptions {
            days: self.days,
            min_sources: self.min_sources,
            burst_factor: self.burst_factor,
            spike_min: self.spike_min,
            spike_k: self.spike_k,
            top: self.top,
        }
    }
}

/// `--spike-k`: a finite number from 0 to 100.
fn parse_spike_k(v: &str) -> Result<f64, String> {
    match v.trim().parse::<f64>() {
        Ok(k) if (0.0..=100.0).contains(&k) => Ok(k),
        _ => Err("expected a number from 0 to 100, like 2 or 1.5".to_owned()),
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    #[command(flatten)]
    pub view: ViewArgs,
    /// The HTML file to write (replaced atomically).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Rows of the details table included in the file.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub details_rows: usize,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub view: ViewArgs,
    /// Address to listen on (IP:PORT, localhost:PORT, :PORT for every address); other than loopback needs --auth-file or TSUSEN_AUTH.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8339")]
    pub listen: String,
    /// File whose first line is a token (Bearer) or user:password (Basic).
    #[arg(long, value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// A host name clients may use in the Host header besides IP addresses and localhost (repeatable).
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_hosts: Vec<String>,
    /// Seconds between checks of --dir for new or grown files, or of --clickhouse for new rows (1 to 3600).
    #[arg(long, value_name = "SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub refresh: u64,
    /// Requests per second per client (bursts of twice that; loopback is one client, IPv6 a /64); 0 for no limit (at most 100000).
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub rate_limit: u32,
}

/// Run `tsusen report`.
pub fn report(args: &ReportArgs) -> Result<()> {
    let mut loader = args.view.loader()?;
    loader.refresh()?.new_warnings.log();
    let enricher = Enricher::load(&args.view.enrich);
    let html = static_page_with(&loader, args.details_rows, &enricher)?;
    write_atomically(&args.out, html.as_bytes())?;
    log::info!(
        "wrote {} ({} {})",
        args.out.display(),
        loader.files(),
        loader.unit()
    );
    Ok(())
}

/// The page both commands show, but for the details table (the static
/// file's first rows, or the server's filtered pages): built once from what
/// a [`Loader`] holds.
pub struct Page {
    pub window: Window,
    /// The day files read (or days in ClickHouse).
    pub files: usize,
    /// What `files` counts, as the page says it.
    pub unit: &'static str,
    /// Input skipped, as the page lists it.
    pub warnings: Vec<String>,
    pub chart_svg: String,
    /// The HTML above the details table.
    pub top: String,
    /// The HTML below it.
    pub bottom: String,
    /// ASN, country and labels of the window's addresses.
    pub enrichment: std::sync::Arc<Enrichment>,
}

impl Page {
    pub fn build(loader: &Loader, mode: html::Mode, enricher: &Enricher) -> Result<Page> {
        let window = loader.window();
        let mut warnings = loader.warnings();
        warnings.extend(enricher.warnings.iter().cloned());
        let enrichment = std::sync::Arc::new(enricher.enrich(window.addresses()));
        let chart_svg = chart::trends_svg(&window)?;
        let generated = utc_time(chrono::Utc::now().timestamp());
        let about = html::About {
            files: loader.files(),
            unit: loader.unit(),
            warnings: &warnings,
            generated: &generated,
        };
        let top = html::top(&window, &chart_svg, &about, mode);
        let bottom = html::bottom(&warnings);
        Ok(Page {
            window,
            files: loader.files(),
            unit: loader.unit(),
            warnings,
            chart_svg,
            top,
            bottom,
            enrichment,
        })
    }

    /// The served page's top (chart, spikes, newest day) of another window,
    /// e.g. the one a filter sees: a chart that fails to draw is left out.
    pub fn top_of(&self, window: &Window) -> String {
        let chart_svg = chart::trends_svg(window).unwrap_or_default();
        let generated = utc_time(chrono::Utc::now().timestamp());
        let about = html::About {
            files: self.files,
            unit: self.unit,
            warnings: &self.warnings,
            generated: &generated,
        };
        html::top(window, &chart_svg, &about, html::Mode::Served)
    }
}

/// The static report of what `loader` holds, without enrichment.
pub fn static_page(loader: &Loader, details_rows: usize) -> Result<String> {
    static_page_with(loader, details_rows, &Enricher::default())
}

/// The static report of what `loader` holds, enriched by `enricher`.
pub fn static_page_with(
    loader: &Loader,
    details_rows: usize,
    enricher: &Enricher,
) -> Result<String> {
    let page = Page::build(loader, html::Mode::Static, enricher)?;
    let details = page
        .window
        .details_page(&DetailFilter::default(), 0, details_rows);
    Ok(format!(
        "{}{}{}{}{}",
        page.top,
        html::static_details(&page.window, &page.enrichment, &details),
        who::static_drills(&page.window, &page.enrichment),
        who::static_destinations(&page.window, &page.enrichment),
        page.bottom
    ))
}

/// Write next to `path` and rename, so a web server never serves half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("cannot write {}: not a file name", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}
