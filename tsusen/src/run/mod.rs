//! `tsusen run`: the sensor daemon.
//!
//! Checks everything a user can get wrong before attaching anything, attaches
//! (or adopts a pinned sensor left by an earlier run), then loops: drain and
//! flush every `--flush-interval` and just after each UTC midnight, follow
//! the host's addresses, and on SIGINT/SIGTERM drain a last time, detach,
//! unpin and exit.

pub mod local;
pub mod metrics;
pub mod settings;

use std::time::Duration;

use anyhow::{Result, bail};
use ipnet::IpNet;
use log::{error, info, warn};
use tokio::{
    signal::unix::{SignalKind, signal},
    time::Instant,
};
use tsusen_common::{Config, NS_PER_DAY, Stat, stats::packets};

use crate::{
    capture::{self, pins::Pins, sensor::Sensor, stats::KernelStats},
    cli::RunArgs,
    drain::Drain,
    store::DayStore,
    tables::Tables,
};
use settings::Settings;

/// The wall clock the sensor runs on: the real one, or one started at
/// `--clock-start` (for tests of day rollover).
#[derive(Clone, Copy)]
struct Clock {
    skew_ns: i64,
}

impl Clock {
    fn wall_ns(self) -> u64 {
        let now = chrono::Utc::now()
            .timestamp_nanos_opt()
            .expect("now is in range");
        (now + self.skew_ns) as u64
    }

    /// The offset the kernel adds to its monotonic clock.
    fn kernel_offset(self) -> u64 {
        capture::clock::wall_offset_ns().wrapping_add(self.skew_ns as u64)
    }

    /// Time until just after the next UTC midnight, when the day that ended
    /// is drained.
    fn until_after_midnight(self) -> Duration {
        let now = self.wall_ns();
        let next = (now / NS_PER_DAY + 1) * NS_PER_DAY;
        Duration::from_nanos(next - now) + Duration::from_secs(1)
    }
}

pub fn run(args: RunArgs) -> Result<()> {
    let settings = Settings::resolve(args)?;
    for iface in &settings.ifaces {
        capture::iface::require(iface)?;
    }
    capture::ensure_root_or_caps()?;
    // Everything that can fail on the user's input fails here, before
    // anything is attached.
    let store = DayStore::open(&settings.out_dir, settings.max_pending)?;
    let metrics_listener = settings.metrics.map(metrics::bind).transpose()?;
    let extra_local = settings.local.clone();
    let mut tables = settings.tables.clone();
    let (local, local_list) = local::local_networks(&extra_local)?;
    tables.local = local;
    let clock = Clock {
        skew_ns: settings.clock_skew_ns,
    };

    capture::raise_memlock_limit();
    let pins = Pins::prepare(&settings.pin_dir)?;
    let (mut sensor, modes) = Sensor::start(
        &settings.ifaces,
        settings.xdp_mode,
        settings.map_size,
        Some(pins),
        settings.force,
    )?;
    tables.write_to_kernel(sensor.ebpf(), clock.kernel_offset())?;

    let attached: Vec<String> = modes
        .iter()
        .map(|(iface, mode)| match mode {
            Some(mode) => format!("{iface} ({})", format!("{mode:?}").to_lowercase()),
            None => format!("{iface} (adopted)"),
        })
        .collect();
    info!(
        "watching {} -> {} every {}; local: {}; first-seen map {} entries; pins in {}{}",
        attached.join(", "),
        settings.out_dir.display(),
        humantime::format_duration(settings.flush_interval),
        show(&local_list),
        settings.map_size,
        settings.pin_dir.display(),
        if sensor.adopted {
            " (adopted the sensor an earlier run left recording)"
        } else {
            ""
        }
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let daemon = Daemon {
        settings,
        clock,
        sensor: Some(sensor),
        store,
        tables,
        extra_local,
        local_list,
        drain: Drain::default(),
        metrics: None,
    };
    runtime.block_on(daemon.run(metrics_listener))
}

fn show(nets: &[IpNet]) -> String {
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

struct Daemon {
    settings: Settings,
    clock: Clock,
    /// Taken at shutdown.
    sensor: Option<Sensor>,
    store: DayStore,
    tables: Tables,
    extra_local: Vec<IpNet>,
    /// L as a list, to tell when it changed.
    local_list: Vec<IpNet>,
    drain: Drain,
    metrics: Option<metrics::Metrics>,
}

impl Daemon {
    async fn run(mut self, metrics_listener: Option<std::net::TcpListener>) -> Result<()> {
        if let Some(listener) = metrics_listener {
            let sensor = self.sensor();
            let setup = metrics::Setup {
                kernel: KernelStats::open(sensor.ebpf())?,
                map_capacity: sensor.first_seen_capacity()?,
                ifaces: self.settings.ifaces.clone(),
                flush_interval: self.settings.flush_interval,
            };
            let metrics = metrics::Metrics::new(setup);
            metrics.serve(listener)?;
            self.metrics = Some(metrics);
        }
        let mut watch = local::AddressWatch::new()?;
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        info!("ready");

        // Drain at once: an adopted sensor may hold a lot.
        self.flush();
        let mut next_flush = Instant::now() + self.settings.flush_interval;
        loop {
            let deadline = next_flush.min(Instant::now() + self.clock.until_after_midnight());
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    self.flush();
                    if Instant::now() >= next_flush {
                        next_flush = Instant::now() + self.settings.flush_interval;
                    }
                }
                changed = watch.changed() => {
                    if let Err(err) = changed.and_then(|()| self.refresh_local()) {
                        warn!("following address changes: {err:#}");
                    }
                }
                _ = term.recv() => break,
                _ = interrupt.recv() => break,
            }
        }
        info!("stopping: draining what is left");
        self.flush();
        let sensor = self.sensor.take().expect("the sensor runs until shutdown");
        if self.store.pending() > 0 {
            sensor.leave_running();
            bail!(
                "could not write {} rows to {}; the sensor stays attached and pinned, \
                 so the next start writes them",
                self.store.pending(),
                self.settings.out_dir.display()
            );
        }
        sensor.shutdown()?;
        info!("detached and unpinned; bye");
        Ok(())
    }

    fn sensor(&mut self) -> &mut Sensor {
        self.sensor
            .as_mut()
            .expect("the sensor runs until shutdown")
    }

    /// Recompute L from the host's addresses; tell the kernel if it changed.
    fn refresh_local(&mut self) -> Result<()> {
        let (local, list) = local::local_networks(&self.extra_local)?;
        if list == self.local_list {
            return Ok(());
        }
        self.tables.local = local;
        let offset = self.clock.kernel_offset();
        let tables = self.tables.clone();
        tables.write_to_kernel(self.sensor().ebpf(), offset)?;
        info!("local networks now: {}", show(&list));
        self.local_list = list;
        Ok(())
    }

    /// One drain and flush, with its log line and metrics.
    fn flush(&mut self) {
        let started = std::time::Instant::now();
        if let Err(err) = self.try_flush() {
            error!("flush failed: {err:#}");
        }
        if let Some(metrics) = &self.metrics {
            metrics.observe_flush(started.elapsed());
        }
    }

    fn try_flush(&mut self) -> Result<()> {
        // Follow clock adjustments: the kernel stamps times with this offset.
        let config = Config {
            wall_offset_ns: self.clock.kernel_offset(),
            flags: self.tables.config_flags(),
            _pad: 0,
        };
        capture::set_config(self.sensor().ebpf(), &config)?;

        let sensor = self
            .sensor
            .as_mut()
            .expect("the sensor runs until shutdown");
        let drained = self.drain.run(sensor, &mut self.store)?;
        let kernel = sensor.stats()?;
        let today = (self.clock.wall_ns() / NS_PER_DAY) as u16;
        // Yesterday stays in memory for late entries; older days are on disk.
        self.store.forget_days_before(today.saturating_sub(1));

        let stats = self.store.stats;
        let candidates: u64 = Stat::ALL
            .iter()
            .filter(|s| s.name().starts_with("candidates_"))
            .map(|s| kernel[*s as usize])
            .sum();
        info!(
            "flush: packets={} candidates={} new_tuples={} rows={} evicted={} insert_failed={} \
             write_errors={} pending={} dropped={}",
            packets(&kernel),
            candidates,
            kernel[Stat::NewTuples as usize],
            drained.rows,
            self.drain.evicted,
            kernel[Stat::InsertFailed as usize],
            stats.write_errors,
            self.store.pending(),
            stats.pending_dropped,
        );
        if let Some(metrics) = &mut self.metrics {
            metrics.update(&metrics::Snapshot {
                rows_written: stats.rows_written,
                write_errors: stats.write_errors,
                pending_dropped: stats.pending_dropped,
                pending: self.store.pending() as u64,
                evicted: self.drain.evicted,
                map_entries: drained.entries as u64,
                local_networks: self.tables.local.len() as u64,
                flush_unix: (self.clock.wall_ns() / 1_000_000_000) as i64,
                all_written: !drained.flush_failed && self.store.pending() == 0,
            });
        }
        Ok(())
    }
}
