//! Shipping rows to ClickHouse: `tsusen ship` over a directory of day files
//! (following it, or `--once` for a backfill), and `tsusen run
//! --clickhouse`, which ships its own out-dir in a thread of its own.
//!
//! The day files stay the source of truth and are the shipping buffer: the
//! [`shipper`] follows them with a persisted [`cursor`], so rows wait on
//! disk while ClickHouse is away and nothing is kept in memory beyond a
//! batch.

pub mod background;
pub mod cursor;
pub mod metrics;
pub mod shipper;

use std::{
    io::IsTerminal as _,
    path::PathBuf,
    sync::{atomic::Ordering, mpsc},
};

use anyhow::{Context as _, Result};
use clap::Args;
use log::{info, warn};
pub use metrics::ShipMetrics;
use nix::sys::signal::{SigSet, Signal};
pub use shipper::{OnRefusal, STOP_GRACE, Shipper, Stop};

use crate::{
    clickhouse::{ClickHouseArgs, schema},
    exit::{self, ResultExt as _},
};

#[derive(Args, Debug, Clone)]
pub struct ShipArgs {
    /// The directory of day files to ship (a sensor's --out-dir, or the original tsusen's files).
    #[arg(long, value_name = "DIR", required_unless_present = "print_schema")]
    pub dir: Option<PathBuf>,
    /// The name rows are stored under (the sensor that recorded them) [default: this host's name].
    #[arg(long, value_name = "NAME")]
    pub sensor: Option<String>,
    /// Exit once everything in the directory is shipped, instead of following it.
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    /// Print the CREATE statements of the table (for a DBA) and exit.
    #[arg(long)]
    pub print_schema: bool,
}

/// This host's name: the default `--sensor`.
pub fn host_name() -> Result<String> {
    let name = nix::unistd::gethostname()?;
    Ok(name.to_string_lossy().into_owned())
}

/// The `--sensor` name, checked, or the host's name.
pub fn sensor_name(given: Option<&str>) -> Result<String> {
    let name = match given {
        Some(name) => name.to_owned(),
        None => host_name()?,
    };
    schema::check_sensor(&name)?;
    Ok(name)
}

pub fn run(args: &ShipArgs) -> Result<()> {
    let table = args.clickhouse.table().config_error()?;
    if args.print_schema {
        print!("{}", table.print());
        return Ok(());
    }
    let dir = args.dir.clone().expect("clap requires --dir");
    if !dir.is_dir() {
        crate::config_bail!("--dir {}: not a directory", dir.display());
    }
    let sensor = sensor_name(args.sensor.as_deref()).config_error()?;
    let client = args.clickhouse.client().config_error()?;
    let mut shipper = Shipper::new(&dir, &sensor, client, table, OnRefusal::Stop).config_error()?;
    if std::io::stderr().is_terminal() {
        shipper = shipper.with_progress_bar();
    }
    let what = format!(
        "{} as sensor {sensor} to {} ({}){}",
        dir.display(),
        args.clickhouse.urls.join(", "),
        args.clickhouse.table()?.qualified(),
        if args.once { ", once" } else { "" }
    );

    // SIGTERM and SIGINT go to a thread of their own (blocked here and so
    // in the threads started after), shipping to another: a signal stops
    // shipping cleanly, whatever ClickHouse does.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals
        .thread_block()
        .context("cannot block SIGTERM and SIGINT")?;
    let (event, events) = mpsc::channel();
    let signalled = event.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            while let Ok(signal) = signals.wait() {
                if signalled.send(Event::Signal(signal)).is_err() {
                    return;
                }
            }
        })?;
    let stop = shipper.stop_flag();
    let bar = shipper.progress_bar();
    let metrics = shipper.metrics.clone();
    let once = args.once;
    std::thread::Builder::new()
        .name("ship".into())
        .spawn(move || {
            // A panic must end the wait too (the signal thread keeps the
            // channel open): it is an error like any other.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                ship(&mut shipper, &what, once)
            }))
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the shipping thread panicked")));
            let _ = event.send(Event::Done(result));
        })?;
    match events.recv().expect("the shipping thread reports its end") {
        Event::Done(result) => result,
        Event::Signal(signal) => {
            shipper::above_bar(bar.as_ref(), || {
                info!("{signal}: stopping (the batch in flight gets up to {STOP_GRACE:?})");
            });
            stop.store(true, Ordering::Relaxed);
            let deadline = std::time::Instant::now() + STOP_GRACE;
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match events.recv_timeout(left) {
                    Ok(Event::Done(result)) => return result,
                    // A second signal does not hurry it: the grace is short.
                    Ok(Event::Signal(_)) => {}
                    Err(_) => break,
                }
            }
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            warn!(
                "ClickHouse did not answer within {STOP_GRACE:?}: the request in flight is \
                 abandoned (a batch in flight is sent again at the next start, and rows sent \
                 twice are stored once)"
            );
            info!(
                "shipped {} rows, {} behind",
                metrics.rows_shipped.get(),
                metrics.rows_behind.get()
            );
            Ok(())
        }
    }
}

/// What ends `ship`'s wait: shipping ended, or a signal came.
enum Event {
    Done(Result<()>),
    Signal(Signal),
}

/// Prepare the table, then ship (in `ship`'s shipping thread).
fn ship(shipper: &mut Shipper, what: &str, once: bool) -> Result<()> {
    shipper.measure()?;
    // The first contact says at once whether the URL, the password and the
    // table are right.
    shipper.prepare().map_err(refusal)?;
    shipper.say(|| info!("shipping {what}"));
    match shipper.follow(None, once) {
        Stop::Asked => Ok(()),
        Stop::Refused(err) => Err(refusal(err)),
        Stop::Local(err) => Err(err),
    }
}

/// A ClickHouse error as `ship`'s exit: a configuration error (2) unless
/// waiting may cure it (1).
fn refusal(err: crate::clickhouse::ClickHouseError) -> anyhow::Error {
    if err.cause.is_transient() {
        anyhow::Error::new(err)
    } else {
        exit::config(err)
    }
}
