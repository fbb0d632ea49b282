//! The shipper: follows a directory of day files and sends their complete
//! rows to ClickHouse in batches, moving its [`Cursor`] only after
//! ClickHouse acknowledged a batch.
//!
//! One batch at a time, read from the file (nothing else is held in memory):
//! at most [`BATCH_BYTES`] of day file, cut after its last newline, so only
//! complete rows go. Before a batch is sent its byte range is saved in the
//! cursor; after a crash that same range is sent again, the same bytes, so a
//! replicated table drops it as a block it already has. On a table that is
//! not replicated the shipper first asks whether the batch's first and last
//! rows are stored: a batch is one insert, which ClickHouse stores as one
//! block, all or nothing, so if they are, all of it is, and it is not sent
//! again.

use std::{
    fs::File,
    io::{Read as _, Seek as _, SeekFrom},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, RecvTimeoutError},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use log::{error, info, warn};

use super::{
    cursor::{self, Cursor, FileCursor},
    metrics::ShipMetrics,
};
use crate::{
    clickhouse::{
        Cause, ClickHouseError, Client,
        schema::{self, DayCache, Table},
    },
    dayfile::{self, Foreign, Reading, Row, Warnings},
};

/// The most of a day file one batch reads: 2 MiB, about 40,000 rows (far
/// below ClickHouse's `max_insert_block_size` of 1,048,576 rows, so a batch
/// is stored as one block).
pub const BATCH_BYTES: usize = 2 << 20;
/// The first wait after a failed request; doubled after each failure.
pub const RETRY_FIRST: Duration = Duration::from_millis(200);
/// The longest wait between two tries.
pub const RETRY_CAP: Duration = Duration::from_secs(30);
/// How often `ship` looks for new rows when following a directory.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// At SIGTERM/SIGINT, how long the batch in flight may take to be
/// acknowledged before it is abandoned (its range stays in the cursor, so
/// the next start sends exactly it again).
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often a progress line is logged while shipping.
const REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// How often a waiting shipper looks whether it was told to stop.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// Why shipping stopped.
#[derive(Debug)]
pub enum Stop {
    /// Told to (the daemon is stopping).
    Asked,
    /// ClickHouse refused in a way waiting does not cure (for `ship`, which
    /// gives up on those; `run` keeps trying).
    Refused(ClickHouseError),
    /// The day files or the cursor could not be read or written.
    Local(anyhow::Error),
}

/// What to do when ClickHouse refuses for a reason waiting does not cure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnRefusal {
    /// Give up (`tsusen ship`: the user is there to fix it).
    Stop,
    /// Keep trying at the longest interval (`run`: recording goes on, and
    /// someone may fix ClickHouse meanwhile).
    Retry,
}

/// Wakes the shipper (`run` after each flush) or stops it (the sender dropped).
pub type Wake = Receiver<()>;

pub struct Shipper {
    pub dir: PathBuf,
    pub sensor: String,
    client: Client,
    table: Table,
    cursor_path: PathBuf,
    cursor: Cursor,
    pub metrics: ShipMetrics,
    on_refusal: OnRefusal,
    /// Whether the table is known to exist with our columns.
    table_ready: bool,
    /// The error logged last, to log a lasting one once.
    last_logged: Option<Cause>,
    /// Rows acknowledged since start, and when shipping started.
    pub shipped: u64,
    started: Instant,
    /// Set to stop: no new batch is read, waits end (see [`Shipper::stop_flag`]).
    stop: Arc<AtomicBool>,
    /// Shows progress on a terminal (`ship`).
    progress: Option<indicatif::ProgressBar>,
    last_report: Instant,
    /// Whether `ship` said it caught up once (following a directory).
    caught_up: bool,
    /// Held while this shipper lives: one per directory and sensor.
    _lock: nix::fcntl::Flock<File>,
}

impl Shipper {
    pub fn new(
        dir: &Path,
        sensor: &str,
        client: Client,
        table: Table,
        on_refusal: OnRefusal,
    ) -> Result<Self> {
        schema::check_sensor(sensor)?;
        let lock = cursor::lock(dir, sensor)?;
        let cursor_path = cursor::path(dir, sensor);
        let mut cursor = Cursor::load(&cursor_path)?;
        // Offsets into another table say nothing about this one.
        let qualified = table.qualified();
        if let Some(was) = cursor.table.as_deref()
            && was != qualified
        {
            warn!(
                "{}: the day files were shipped to {was}, not {qualified}: shipping them to \
                 {qualified} from their start",
                dir.display()
            );
            cursor = Cursor::default();
        }
        cursor.table = Some(qualified);
        let client = if table.cluster.is_some() {
            // Acknowledged only once the shards have the rows.
            client.with_insert_setting("insert_distributed_sync", "1")
        } else {
            client
        };
        let metrics = ShipMetrics {
            failovers: client.failovers(),
            ..ShipMetrics::default()
        };
        Ok(Shipper {
            dir: dir.to_owned(),
            sensor: sensor.to_owned(),
            client,
            table,
            cursor_path,
            cursor,
            metrics,
            on_refusal,
            table_ready: false,
            last_logged: None,
            shipped: 0,
            started: Instant::now(),
            stop: Arc::new(AtomicBool::new(false)),
            progress: None,
            last_report: Instant::now(),
            caught_up: false,
            _lock: lock,
        })
    }

    /// Show a progress bar on stderr while more than one file is behind.
    pub fn with_progress_bar(mut self) -> Self {
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        bar.set_style(progress_style());
        self.progress = Some(bar);
        self
    }

    /// The progress bar, if one is shown: log lines go above it
    /// ([`indicatif::ProgressBar::suspend`]), not after it on its line.
    pub fn progress_bar(&self) -> Option<indicatif::ProgressBar> {
        self.progress.clone()
    }

    /// Log with `log`, above the progress bar if one is shown.
    pub fn say(&self, log: impl FnOnce()) {
        above_bar(self.progress.as_ref(), log);
    }

    /// Set it to make the shipper stop: it finishes the request in flight
    /// (a batch acknowledged moves the cursor), reads no new batch, and
    /// [`Shipper::follow`] returns [`Stop::Asked`].
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleep `wait`, or less if told to stop meanwhile.
    fn pause(&self, wait: Duration) -> Result<(), Stop> {
        let deadline = Instant::now() + wait;
        loop {
            if self.stopping() {
                return Err(Stop::Asked);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(STOP_CHECK));
        }
    }

    /// Create the table where missing and check its columns.
    pub fn prepare(&mut self) -> Result<(), ClickHouseError> {
        self.table.ensure(&self.client)?;
        self.table_ready = true;
        Ok(())
    }

    /// Ship, then wait for `wake` (or [`POLL_INTERVAL`] without one) and
    /// ship again, until `wake`'s sender is dropped, the [`Shipper::stop_flag`]
    /// is set or, with `once`, until everything complete in the files is
    /// shipped. Ends with a last progress line unless refused.
    pub fn follow(&mut self, wake: Option<&Wake>, once: bool) -> Stop {
        let stop = self.follow_until_stop(wake, once);
        if matches!(stop, Stop::Asked) {
            self.report(true);
        }
        stop
    }

    fn follow_until_stop(&mut self, wake: Option<&Wake>, once: bool) -> Stop {
        loop {
            let before = self.shipped;
            match self.pass(wake) {
                Ok(()) => {}
                Err(stop) => return stop,
            }
            if once || self.stopping() {
                return Stop::Asked;
            }
            // `ship` following a directory says when it caught up: after
            // its backfill, then at most every 10 s while rows come.
            if wake.is_none()
                && self.shipped > before
                && (!self.caught_up || self.last_report.elapsed() >= REPORT_INTERVAL)
            {
                self.caught_up = true;
                self.report_line();
            }
            match wake {
                Some(wake) => match wake.recv_timeout(POLL_INTERVAL * 10) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Stop::Asked,
                },
                None => {
                    if let Err(stop) = self.pause(POLL_INTERVAL) {
                        return stop;
                    }
                }
            }
        }
    }

    /// Count the rows behind now (the metric, and the last progress line
    /// if shipping is stopped before its first pass).
    pub fn measure(&mut self) -> Result<()> {
        self.look().map(drop)
    }

    /// Ship every complete row of every day file.
    fn pass(&mut self, wake: Option<&Wake>) -> Result<(), Stop> {
        let files = self.look().map_err(Stop::Local)?;
        while !self.table_ready {
            match self.prepare() {
                Ok(()) => self.recovered(),
                Err(err) => self.failed(err, 0, wake)?,
            }
        }
        for file in &files {
            self.ship_file(&file.path, wake)?;
        }
        self.metrics.rows_behind.set(0);
        self.metrics
            .last_success
            .set(chrono::Utc::now().timestamp());
        Ok(())
    }

    /// The day files now, and how many rows they hold that are not shipped
    /// yet (the metric, and the progress bar's length).
    fn look(&mut self) -> Result<Vec<dayfile::DayFile>> {
        let mut warnings = Warnings::default();
        let files = dayfile::list_day_files(&self.dir, &mut warnings)?;
        self.say(|| warnings.log());
        // Forget files that are gone.
        self.cursor.files.retain(|name, _| {
            files
                .iter()
                .any(|f| f.path.file_name().and_then(|n| n.to_str()) == Some(name.as_str()))
        });
        let behind = self.rows_behind(&files)?;
        self.metrics
            .rows_behind
            .set(i64::try_from(behind).unwrap_or(i64::MAX));
        if let Some(bar) = &self.progress
            && behind > 0
        {
            bar.set_length(self.shipped + behind);
            bar.set_position(self.shipped);
        }
        Ok(files)
    }

    /// Lines not shipped yet in `files`, but for the header of a file not
    /// started yet (it is no row: it would keep the bar short of its end).
    fn rows_behind(&self, files: &[dayfile::DayFile]) -> Result<u64> {
        let mut behind = 0;
        for file in files {
            let name = file_name(&file.path);
            let offset = self.cursor.files.get(name).map_or(0, |c| c.offset);
            if offset >= file.len {
                continue;
            }
            let Ok(mut f) = File::open(&file.path) else {
                continue;
            };
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = vec![0; 1 << 20];
            let mut first = offset == 0;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                let lines = memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
                behind += lines;
                if std::mem::take(&mut first) && lines > 0 {
                    let end = memchr::memchr(b'\n', &buf[..n]).unwrap_or(n);
                    let line = String::from_utf8_lossy(&buf[..end]);
                    if dayfile::Format::of_header(line.trim_end()).is_some() {
                        behind -= 1;
                    }
                }
            }
        }
        Ok(behind)
    }

    /// Ship what `path` holds beyond its cursor, a batch at a time.
    fn ship_file(&mut self, path: &Path, wake: Option<&Wake>) -> Result<(), Stop> {
        let name = file_name(path).to_owned();
        let Ok((inode, len, head)) = cursor::identify(path) else {
            // Gone since it was listed: the next pass forgets it.
            return Ok(());
        };
        let mut state = match self.cursor.files.get(&name) {
            Some(state) => match state.changed(inode, len, &head) {
                None => state.clone(),
                Some(why) => {
                    self.say(|| {
                        warn!(
                            "{}: {why} since rows were shipped from it; shipping it again from \
                             its start (rows sent twice are stored once)",
                            path.display()
                        );
                    });
                    self.metrics.cursor_resets.inc();
                    FileCursor::start(inode)
                }
            },
            None => FileCursor::start(inode),
        };
        // A batch in flight when the last run ended: the same bytes again.
        if let Some(end) = state.in_flight {
            let batch = self
                .read_batch(path, &state, Some(end))
                .map_err(Stop::Local)?;
            let stored = match (&batch.first, &batch.last) {
                (Some(first), Some(last)) if self.table.cluster.is_none() => {
                    self.batch_stored(first, last, wake)?
                }
                _ => false,
            };
            if stored {
                self.say(|| {
                    info!(
                        "{}: the batch in flight at the last stop (bytes {}..{end}) is stored; \
                         not sent again",
                        path.display(),
                        state.offset
                    );
                });
                self.acknowledged(&name, &mut state, &batch, 0)?;
            } else {
                self.send(&name, &mut state, &batch, wake)?;
            }
        }
        while state.offset < len {
            if self.stopping() {
                return Err(Stop::Asked);
            }
            let batch = self.read_batch(path, &state, None).map_err(Stop::Local)?;
            if batch.end == state.offset {
                // No complete line yet.
                break;
            }
            if batch.rows == 0 {
                // A header, or only bad lines: nothing to send.
                self.acknowledged(&name, &mut state, &batch, 0)?;
                continue;
            }
            state.in_flight = Some(batch.end);
            self.cursor.files.insert(name.clone(), state.clone());
            self.cursor.save(&self.cursor_path).map_err(Stop::Local)?;
            self.send(&name, &mut state, &batch, wake)?;
        }
        // Only shipped bytes identify the file: beyond them may be a torn
        // line that the sensor's restart cuts.
        let shipped = usize::try_from(state.offset).map_or(head.len(), |n| n.min(head.len()));
        state.learn_head(&head[..shipped]);
        if self.cursor.files.get(&name) != Some(&state) {
            self.cursor.files.insert(name, state);
            self.cursor.save(&self.cursor_path).map_err(Stop::Local)?;
        }
        Ok(())
    }

    /// Read the batch after `state.offset`: up to `end`, or up to
    /// [`BATCH_BYTES`] cut after the last newline; its rows as TSV.
    fn read_batch(&self, path: &Path, state: &FileCursor, end: Option<u64>) -> Result<Batch> {
        let mut file =
            File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        file.seek(SeekFrom::Start(state.offset))
            .with_context(|| format!("cannot read {}", path.display()))?;
        let want = end.map_or(BATCH_BYTES as u64, |end| end - state.offset);
        let mut bytes = Vec::new();
        (&mut file)
            .take(want)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let complete = match memchr::memrchr(b'\n', &bytes) {
            Some(at) => at + 1,
            None => 0,
        };
        bytes.truncate(complete);
        let mut reading = Reading {
            path,
            format: state.format(),
            line_no: state.line_no,
            foreign: Foreign::SkipLine,
        };
        let mut warnings = Warnings::default();
        let mut tsv = Vec::with_capacity(bytes.len() * 4);
        let mut days = DayCache::default();
        let mut first = None;
        let mut last = None;
        let counts = reading
            .read(&bytes[..], &mut warnings, |row| {
                schema::write_tsv_row(row, &self.sensor, &mut days, &mut tsv);
                if first.is_none() {
                    first = Some(*row);
                }
                last = Some(*row);
            })
            .with_context(|| format!("cannot read {}", path.display()))?;
        self.say(|| warnings.log());
        Ok(Batch {
            end: state.offset + bytes.len() as u64,
            line_no: reading.line_no,
            format: reading.format,
            rows: counts.rows,
            tsv,
            first,
            last,
        })
    }

    /// Send `batch` until ClickHouse acknowledges it, then move the cursor.
    fn send(
        &mut self,
        name: &str,
        state: &mut FileCursor,
        batch: &Batch,
        wake: Option<&Wake>,
    ) -> Result<(), Stop> {
        let mut failures = 0;
        loop {
            match self.client.insert(&self.table.qualified(), &batch.tsv) {
                Ok(()) => {
                    self.recovered();
                    return self.acknowledged(name, state, batch, batch.rows);
                }
                Err(err) => {
                    if matches!(err.cause, Cause::UnknownTable | Cause::Schema) {
                        // Someone dropped or changed the table: check it again.
                        self.table_ready = false;
                    }
                    self.failed(err, failures, wake)?;
                    failures += 1;
                    if !self.table_ready {
                        match self.prepare() {
                            Ok(()) => {}
                            Err(err) => self.failed(err, failures, wake)?,
                        }
                    }
                }
            }
        }
    }

    /// `batch` is stored: move the cursor past it and save it.
    fn acknowledged(
        &mut self,
        name: &str,
        state: &mut FileCursor,
        batch: &Batch,
        rows: u64,
    ) -> Result<(), Stop> {
        state.offset = batch.end;
        state.line_no = batch.line_no;
        state.set_format(batch.format);
        state.in_flight = None;
        self.cursor.files.insert(name.to_owned(), state.clone());
        self.cursor.save(&self.cursor_path).map_err(Stop::Local)?;
        self.shipped += rows;
        self.metrics.rows_shipped.inc_by(rows);
        let behind = self.metrics.rows_behind.get();
        self.metrics.rows_behind.set(
            behind
                .saturating_sub(i64::try_from(rows).unwrap_or(i64::MAX))
                .max(0),
        );
        self.metrics
            .last_success
            .set(chrono::Utc::now().timestamp());
        if let Some(bar) = &self.progress {
            bar.set_position(self.shipped);
        }
        self.report(false);
        Ok(())
    }

    /// Whether the rows `first` and `last` of a batch are in the table.
    fn batch_stored(&mut self, first: &Row, last: &Row, wake: Option<&Wake>) -> Result<bool, Stop> {
        let condition = |row: &Row| {
            let hex = |ip| {
                use std::fmt::Write as _;
                tsusen_common::tuple::mapped(ip)
                    .iter()
                    .fold(String::new(), |mut hex, b| {
                        let _ = write!(hex, "{b:02X}");
                        hex
                    })
            };
            format!(
                "(day = '{}' AND proto = {} AND dst_port = {} AND hex(src_ip) = '{}' AND hex(dst_ip) = '{}')",
                dayfile::day_name(row.day()),
                row.proto,
                row.dst_port,
                hex(row.src_ip),
                hex(row.dst_ip)
            )
        };
        let sql = format!(
            "SELECT countIf({}) > 0 AND countIf({}) > 0 FROM {} WHERE sensor = '{}' FORMAT TabSeparated",
            condition(first),
            condition(last),
            self.table.qualified(),
            self.sensor
        );
        let mut failures = 0;
        loop {
            match self.client.query(&sql) {
                Ok(answer) => return Ok(answer.trim() == "1"),
                Err(err) => {
                    self.failed(err, failures, wake)?;
                    failures += 1;
                }
            }
        }
    }

    /// A request failed: count it, log it (once while it lasts), and wait
    /// before the next try; or stop, if it is for good and this shipper
    /// stops on those.
    fn failed(
        &mut self,
        err: ClickHouseError,
        failures: u32,
        wake: Option<&Wake>,
    ) -> Result<(), Stop> {
        self.metrics.error(err.cause);
        if !err.cause.is_transient() && self.on_refusal == OnRefusal::Stop {
            return Err(Stop::Refused(err));
        }
        if self.stopping() {
            // The batch stays in flight in the cursor: the next start sends it.
            return Err(Stop::Asked);
        }
        if self.last_logged != Some(err.cause) {
            self.say(|| {
                error!(
                    "shipping to ClickHouse: {err}; rows wait in the day files{}",
                    if self.on_refusal == OnRefusal::Retry {
                        " (recording goes on)"
                    } else {
                        ""
                    }
                );
            });
            self.last_logged = Some(err.cause);
        }
        let wait = if err.cause.is_transient() {
            backoff(failures)
        } else {
            RETRY_CAP
        };
        match wake {
            Some(wake) => {
                let deadline = Instant::now() + wait;
                // Flushes wake us meanwhile; only the deadline ends the wait.
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    if self.stopping() {
                        return Err(Stop::Asked);
                    }
                    match wake.recv_timeout(left.min(STOP_CHECK * 10)) {
                        // A flush: more rows may be behind.
                        Ok(()) => {
                            self.look().map_err(Stop::Local)?;
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return Err(Stop::Asked),
                    }
                }
            }
            None => self.pause(wait)?,
        }
        Ok(())
    }

    /// A request succeeded: say so if errors were logged before.
    fn recovered(&mut self) {
        if self.last_logged.take().is_some() {
            self.say(|| {
                info!(
                    "shipping to ClickHouse works again ({})",
                    self.client.urls().join(", ")
                );
            });
        }
    }

    /// Rows shipped, behind, and the rate: every 10 s, and when caught up
    /// (`done`).
    fn report(&mut self, done: bool) {
        if !done && self.last_report.elapsed() < REPORT_INTERVAL {
            return;
        }
        match &self.progress {
            Some(bar) if done => bar.finish_and_clear(),
            // The bar shows the same, without a line every 10 s.
            Some(bar) if !done && !bar.is_hidden() => return,
            _ => {}
        }
        self.report_line();
    }

    /// Log `shipped N rows (R rows/s), B behind`.
    fn report_line(&mut self) {
        self.last_report = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let line = format!(
            "shipped {} rows ({:.0} rows/s), {} behind",
            self.shipped,
            self.shipped as f64 / secs,
            self.metrics.rows_behind.get()
        );
        self.say(|| info!("{line}"));
    }
}

/// One batch of a file: its end offset, the reading's state there, its rows
/// as TSV.
struct Batch {
    end: u64,
    line_no: u64,
    format: Option<dayfile::Format>,
    rows: u64,
    tsv: Vec<u8>,
    first: Option<Row>,
    last: Option<Row>,
}

/// The progress bar: `████░░░ 120,000/660,000 rows (118241 rows/s, 4s left)`.
fn progress_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(
        "{bar:40} {human_pos}/{human_len} rows ({rate}, {eta} left)",
    )
    .expect("a valid template")
    .with_key(
        "rate",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0} rows/s", state.per_sec());
        },
    )
}

/// Run `log` with `bar` (if any) cleared meanwhile and drawn again after.
pub fn above_bar(bar: Option<&indicatif::ProgressBar>, log: impl FnOnce()) {
    match bar {
        Some(bar) => bar.suspend(log),
        None => log(),
    }
}

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
}

/// The wait after `failures` failed tries: [`RETRY_FIRST`] doubled each
/// time up to [`RETRY_CAP`], then between half and all of it at random (so
/// a fleet that lost ClickHouse together does not return in step).
pub fn backoff(failures: u32) -> Duration {
    use std::hash::{BuildHasher as _, Hasher as _};
    let full = RETRY_FIRST
        .saturating_mul(1 << failures.min(16))
        .min(RETRY_CAP);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(failures);
    let jitter = hasher.finish() % 1000;
    full / 2 + full / 2 * u32::try_from(jitter).expect("below 1000") / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A terminal that keeps what is written to it.
    #[derive(Debug, Default, Clone)]
    struct Screen(Arc<std::sync::Mutex<String>>);

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            120
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(&format!("{s}\n"))
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Counts a person reads at a glance: thousands grouped, a whole rate.
    #[test]
    fn the_progress_bar_shows_rows_and_a_whole_rate() {
        let screen = Screen::default();
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(660_000),
            indicatif::ProgressDrawTarget::term_like(Box::new(screen.clone())),
        );
        bar.set_style(progress_style());
        bar.set_position(120_000);
        bar.force_draw();
        let shown = screen.0.lock().unwrap().clone();
        assert!(shown.contains(" 120,000/660,000 rows ("), "{shown}");
        let rate = shown.split(" rows (").nth(1).unwrap();
        let rate = rate.split(" rows/s,").next().unwrap();
        assert!(
            !rate.is_empty() && rate.chars().all(|c| c.is_ascii_digit()),
            "{shown}"
        );
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        assert!(backoff(0) >= RETRY_FIRST / 2 && backoff(0) <= RETRY_FIRST);
        assert!(backoff(3) >= RETRY_FIRST * 4 && backoff(3) <= RETRY_FIRST * 8);
        for failures in [10, 20, u32::MAX] {
            let wait = backoff(failures);
            assert!(wait >= RETRY_CAP / 2 && wait <= RETRY_CAP, "{wait:?}");
        }
    }
}
