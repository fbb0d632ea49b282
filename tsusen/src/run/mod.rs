//! `tsusen run`: the sensor daemon.
//!
//! Checks everything a user can get wrong before attaching anything, attaches
//! (or adopts a pinned sensor left by an earlier run), then loops: drain and
//! flush every `--flush-interval` and just after each UTC midnight, follow
//! the host's addresses, on SIGHUP reopen the day files and re-read the
//! config ([`reload`]), and on SIGINT/SIGTERM drain, detach the XDP
//! program, drain what arrived meanwhile, unpin and exit.

pub mod local;
pub mod metrics;
pub mod reload;

use std::time::Duration;

use anyhow::{Result, bail};
use ipnet::IpNet;
use log::{error, info, warn};
use tokio::{
    signal::unix::{SignalKind, signal},
    time::Instant,
};
use tsusen_common::{
    Config, NS_PER_DAY, Stat,
    stats::{StatKind, packets},
};

use crate::{
    capture::{self, pins::Pins, sensor::Sensor, stats::KernelStats},
    config::{RunFlags, Settings},
    drain::{self, Drain, Drained},
    exit::{self, ResultExt as _},
    store::DayStore,
    tables::Tables,
};

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
        (now + self.skew_ns).cast_unsigned()
    }

    /// The offset the kernel adds to its monotonic clock.
    fn kernel_offset(self) -> u64 {
        capture::clock::wall_offset_ns().wrapping_add(self.skew_ns.cast_unsigned())
    }

    /// Time until just after the next UTC midnight, when the day that ended
    /// is drained.
    fn until_after_midnight(self) -> Duration {
        let now = self.wall_ns();
        let next = (now / NS_PER_DAY + 1) * NS_PER_DAY;
        Duration::from_nanos(next - now) + Duration::from_secs(1)
    }
}

pub fn run(args: RunFlags) -> Result<()> {
    // What the user told us, and a host set up to match it: a mistake here
    // is permanent (exit 2: systemd does not restart in vain).
    let settings = Settings::resolve(args.clone()).config_error()?;
    for iface in &settings.ifaces {
        capture::iface::require(iface).config_error()?;
    }
    capture::ensure_root_or_caps().config_error()?;
    // Everything that can fail on the user's input fails here, before
    // anything is attached.
    let store =
        DayStore::open(&settings.out_dir, settings.max_pending).map_err(exit::config_if_refused)?;
    // Descriptors for the day files and connections (systemd's soft default is 1,024).
    crate::http::connections::raise_nofile_limit();
    let metrics_listener = metrics::bind(&settings)?;
    let extra_local = settings.local.clone();
    let mut tables = settings.tables.clone();
    let (local, local_list) = local::local_networks(&extra_local)?;
    tables.local = local;
    let clock = Clock {
        skew_ns: settings.clock_skew_ns,
    };

    // One sensor per out-dir and per pin directory, held until exit.
    let out_dir_lock = crate::lock::out_dir(&settings.out_dir)?;
    let shipper = match &settings.ship {
        Some(ship) => {
            info!(
                "shipping rows to ClickHouse at {} as sensor {} into {}",
                ship.client.urls().join(", "),
                ship.sensor,
                ship.table.qualified()
            );
            Some(
                crate::ship::Shipper::new(
                    &settings.out_dir,
                    &ship.sensor,
                    ship.client.clone(),
                    ship.table.clone(),
                    crate::ship::OnRefusal::Retry,
                )
                .config_error()?,
            )
        }
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    capture::raise_memlock_limit();
    let pins = Pins::prepare(&settings.pin_dir).config_error()?;
    // Every table and setting is in the maps before the first packet is
    // seen (an unset clock offset would date it 1970, empty local networks
    // would take it as inbound): written between loading and attaching.
    let offset = clock.kernel_offset();
    let (sensor, modes) = Sensor::start(
        &settings.ifaces,
        settings.xdp_mode,
        settings.map_size,
        Some(pins),
        settings.force,
        |ebpf| capture::write_tables(ebpf, &tables, offset),
    )?;
    // From here on, the daemon undoes this start if anything fails before
    // its main loop (see `Drop for Daemon`).
    let adopted = sensor.adopted;
    let daemon = Daemon {
        args,
        settings,
        clock,
        sensor: Some(sensor),
        store,
        tables,
        extra_local,
        local_list,
        drain: Drain::default(),
        metrics: None,
        looping: false,
        stopping: false,
        shipper,
        shipping: None,
        _out_dir_lock: out_dir_lock,
    };

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
        daemon.settings.out_dir.display(),
        humantime::format_duration(daemon.settings.flush_interval),
        show(&daemon.local_list),
        daemon.settings.map_size,
        daemon.settings.pin_dir.display(),
        if adopted {
            " (adopted the sensor an earlier run left recording)"
        } else {
            ""
        }
    );
    runtime.block_on(daemon.run(metrics_listener))
}

fn show(nets: &[IpNet]) -> String {
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

struct Daemon {
    /// The flags, to resolve the settings again on SIGHUP.
    args: RunFlags,
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
    /// Whether the main loop was reached: until then, dropping the daemon
    /// (an error or a panic) undoes the start.
    looping: bool,
    /// Whether this is the last drain (SIGINT/SIGTERM): it has no row budget.
    stopping: bool,
    /// `--clickhouse`: the shipper, until its thread starts.
    shipper: Option<crate::ship::Shipper>,
    /// Its thread, once started.
    shipping: Option<crate::ship::background::Background>,
    /// Held until exit: one sensor per out-dir.
    _out_dir_lock: crate::lock::Lock,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.looping
            && let Some(sensor) = self.sensor.take()
        {
            sensor.abandon_start();
        }
    }
}

impl Daemon {
    async fn run(mut self, metrics_listener: Option<metrics::Listener>) -> Result<()> {
        if let Some(listener) = metrics_listener {
            let sensor = self.sensor();
            let setup = metrics::Setup {
                kernel: KernelStats::open(sensor.ebpf())?,
                map_capacity: sensor.first_seen_capacity()?,
                ifaces: self.settings.ifaces.clone(),
                flush_interval: self.settings.flush_interval,
                ship: self.shipper.as_ref().map(|s| s.metrics.clone()),
            };
            let metrics = metrics::Metrics::new(setup);
            metrics.serve(listener)?;
            self.metrics = Some(metrics);
        }
        if let Some(shipper) = self.shipper.take() {
            self.shipping = Some(crate::ship::background::Background::spawn(shipper)?);
        }
        let mut watch = local::AddressWatch::new()?;
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let Some(mut next_flush) = Instant::now().checked_add(self.settings.flush_interval) else {
            bail!(
                "--flush-interval {} is too long",
                humantime::format_duration(self.settings.flush_interval)
            );
        };
        // Past this point a failure leaves the sensor attached and pinned
        // for the next start (the drain has begun).
        self.looping = true;
        info!("ready");

        // Drain at once: an adopted sensor may hold a lot.
        let _ = self.flush();
        loop {
            let deadline = next_flush.min(Instant::now() + self.clock.until_after_midnight());
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    let _ = self.flush();
                    if Instant::now() >= next_flush {
                        next_flush = Instant::now() + self.settings.flush_interval;
                    }
                }
                changed = watch.changed() => {
                    if let Err(err) = changed.and_then(|()| self.refresh_local()) {
                        warn!("following address changes: {err:#}");
                    }
                }
                _ = hangup.recv() => {
                    let interval = self.settings.flush_interval;
                    self.reload();
                    if self.settings.flush_interval != interval {
                        next_flush = Instant::now() + self.settings.flush_interval;
                    }
                }
                _ = term.recv() => break,
                _ = interrupt.recv() => break,
            }
        }
        // Shipping starts no new batch now; it gets a short chance to
        // finish the one it has after the sensor's last drains, which never
        // wait for it.
        if let Some(shipping) = &mut self.shipping {
            shipping.stop();
        }
        let stopped = self.stop();
        if let Some(shipping) = self.shipping.take() {
            shipping.wait();
        }
        stopped
    }

    /// SIGINT/SIGTERM: drain, detach, drain, unpin.
    fn stop(&mut self) -> Result<()> {
        info!("stopping: draining what is left");
        // Everything, whatever the budget: the map is unpinned after these drains.
        self.stopping = true;
        // Drain while still recording: if the rows cannot be written, the
        // sensor stays attached and the next start writes them.
        let last = self.flush();
        if let Some(why) = self.unwritten(last.as_ref()) {
            self.sensor
                .take()
                .expect("the sensor runs until shutdown")
                .leave_running();
            bail!(
                "{why}; the sensor stays attached and pinned with its map, so the next start \
                 writes them"
            );
        }
        // Stop recording, then drain once more: what arrived between the
        // drain above and the detach is in the map, and unpinning the map
        // would lose it.
        if let Err(err) = self.sensor().stop_recording() {
            self.sensor
                .take()
                .expect("the sensor runs until shutdown")
                .leave_running();
            return Err(err.context(
                "stopping the XDP program; the sensor stays pinned with its map, so the next \
                 start drains it",
            ));
        }
        let last = self.flush();
        let sensor = self.sensor.take().expect("the sensor runs until shutdown");
        if let Some(why) = self.unwritten(last.as_ref()) {
            sensor.leave_running();
            bail!(
                "{why}; the map stays pinned (the sensor no longer records), so the next start \
                 writes them"
            );
        }
        sensor.shutdown()?;
        info!("detached and unpinned; bye");
        Ok(())
    }

    /// Why the map cannot be dropped yet, if some entries are not on disk.
    fn unwritten(&self, last: Option<&Drained>) -> Option<String> {
        match last {
            Some(drained) if drained.kept == 0 && self.store.pending() == 0 => None,
            Some(drained) => Some(format!(
                "could not write {} rows to {} ({})",
                drained.kept.max(self.store.pending()),
                self.settings.out_dir.display(),
                self.store.problems().join("; ")
            )),
            None => Some("the last drain failed".to_owned()),
        }
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
        capture::write_tables(self.sensor().ebpf(), &tables, offset)?;
        info!("local networks now: {}", show(&list));
        self.local_list = list;
        Ok(())
    }

    /// One drain and flush, with its log line and metrics; `None` when it
    /// failed (logged).
    fn flush(&mut self) -> Option<Drained> {
        let started = std::time::Instant::now();
        let drained = match self.try_flush() {
            Ok(drained) => Some(drained),
            Err(err) => {
                error!("flush failed: {err:#}");
                None
            }
        };
        if let Some(metrics) = &self.metrics {
            metrics.observe_flush(started.elapsed());
        }
        if let Some(shipping) = &self.shipping {
            shipping.wake();
        }
        drained
    }

    fn try_flush(&mut self) -> Result<Drained> {
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
        let now = self.clock.wall_ns();
        let written_today = self.store.tuples(tsusen_common::classify::day_of(now))?;
        self.drain.row_budget = if self.stopping {
            usize::MAX
        } else {
            drain::row_budget(self.settings.flush_interval, now, written_today)
        };
        let drained = self.drain.run(sensor, &mut self.store)?;
        if drained.deferred > 0 {
            warn!(
                "{} new tuples in the first-seen map beyond this flush's row budget \
                 ({} rows): left there for the next flushes (a flood?); tuples the map must \
                 evict meanwhile count as evicted",
                drained.deferred, self.drain.row_budget
            );
        }
        // Someone may have taken an interface from us (`--force` from
        // another sensor, `ip link set ... xdp off`, the interface deleted):
        // say so at every flush while it lasts.
        let detached = match sensor.detached() {
            Ok(ifaces) => ifaces,
            Err(err) => {
                warn!("checking the XDP attachments: {err:#}");
                Vec::new()
            }
        };
        for iface in &detached {
            error!(
                "{iface}: tsusen's XDP program is no longer attached (detached or replaced by \
                 another program, or the interface is gone); nothing is recorded from {iface} \
                 until tsusen is restarted"
            );
        }
        let kernel = sensor.stats()?;
        let today = tsusen_common::classify::day_of(self.clock.wall_ns());
        // Yesterday stays in memory for late entries; older days are on disk.
        self.store.forget_days_before(today.saturating_sub(1));

        let stats = self.store.stats;
        let candidates: u64 = Stat::ALL
            .iter()
            .filter(|s| s.kind() == StatKind::Candidate)
            .map(|s| kernel[*s as usize])
            .sum();
        info!(
            "flush: packets={} candidates={} new_tuples={} rows={} evicted={} insert_failed={} \
             write_errors={} pending={} kept={} deferred={} capped={} blocked_days={} bad_lines={}",
            packets(&kernel),
            candidates,
            kernel[Stat::NewTuples as usize],
            drained.rows,
            self.drain.evicted,
            kernel[Stat::InsertFailed as usize],
            stats.write_errors,
            self.store.pending(),
            drained.kept,
            drained.deferred,
            stats.pending_dropped,
            self.store.blocked_days(),
            stats.bad_lines,
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
                flush_unix: (self.clock.wall_ns() / 1_000_000_000).cast_signed(),
                links_detached: detached.len() as u64,
                bad_lines: stats.bad_lines,
                blocked_days: self.store.blocked_days() as u64,
                kept_entries: drained.kept as u64,
                deferred_entries: drained.deferred as u64,
                all_written: !drained.flush_failed && self.store.pending() == 0,
            });
        }
        Ok(drained)
    }
}
