//! The live sensor in the kernel: the programs attached to each interface,
//! their maps, and what survives a restart.
//!
//! With a pin directory, the maps and the links (XDP ingress, TC egress) are
//! pinned. A daemon that dies leaves the kernel recording; the next start
//! loads the programs against the pinned maps and swaps them into the pinned
//! links (bpf_link_update, atomic: no packet goes unseen), so what was
//! recorded meanwhile is drained like anything else.

use std::{fs, path::Path};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf,
    maps::{HashMap, MapData, PerCpuArray, PerCpuValues},
    programs::{
        SchedClassifier, TcAttachType, Xdp,
        links::{FdLink, PinnedLink},
        tc::{self, SchedClassifierLink},
        xdp::XdpLink,
    },
    util::nr_cpus,
};
use log::{info, warn};
use tsusen_common::{FirstSeen, Stat, TupleKey, maps};

use super::{EGRESS_PROGRAM, LoadOptions, XDP_PROGRAM, XdpMode, pins::Pins};

/// How one program is attached to one interface.
enum Attached {
    /// Pinned: stays attached while the pin exists.
    Pinned(PinnedLink),
    /// Owned by the program (no pin directory, or a kernel without links):
    /// detached when the `Ebpf` is dropped.
    Owned,
}

/// An interface and the XDP mode it got (`None`: an adopted link, which
/// keeps the mode it had).
pub type AttachedMode = (String, Option<XdpMode>);

pub struct Sensor {
    ebpf: Ebpf,
    pins: Option<Pins>,
    attached: Vec<(String, &'static str, Attached)>,
    /// Whether pinned state from an earlier run was adopted.
    pub adopted: bool,
}

impl Sensor {
    /// Load the programs (against pinned maps, if any), let `settle` write
    /// every table and setting into the maps, and only then attach to every
    /// interface (adopting pinned links of an earlier run): no packet is
    /// ever seen with an unset clock or empty local networks.
    ///
    /// A start that fails leaves nothing behind; an adopted sensor stays
    /// attached and pinned, since its maps hold what was not written yet.
    pub fn start(
        ifaces: &[String],
        mode: XdpMode,
        first_seen_entries: u32,
        pins: Option<Pins>,
        force: bool,
        settle: impl FnOnce(&mut Ebpf) -> Result<()>,
    ) -> Result<(Self, Vec<AttachedMode>)> {
        let adopted = pins.as_ref().is_some_and(Pins::earlier_run);
        let loaded = super::load(&LoadOptions {
            first_seen_entries: Some(first_seen_entries),
            pin_dir: pins.as_ref().map(|p| p.dir.clone()),
            ..LoadOptions::default()
        });
        let ebpf = match loaded {
            Ok(ebpf) => ebpf,
            Err(err) => {
                // The loader pins each map as it creates it.
                if let Some(pins) = pins.as_ref().filter(|_| !adopted)
                    && let Err(undo) = pins.remove_own()
                {
                    warn!("undoing the failed start: {undo:#}");
                }
                return Err(err);
            }
        };
        let mut sensor = Sensor {
            ebpf,
            pins,
            attached: Vec::new(),
            adopted,
        };
        if adopted {
            sensor.warn_if_resized(first_seen_entries);
        }
        let attached = settle(&mut sensor.ebpf).and_then(|()| {
            let mut modes = Vec::new();
            for iface in ifaces {
                let mode = sensor.attach_xdp(iface, mode, force)?;
                sensor.attach_egress(iface)?;
                modes.push((iface.clone(), mode));
            }
            Ok(modes)
        });
        match attached {
            Ok(modes) => Ok((sensor, modes)),
            Err(err) => {
                sensor.abandon_start();
                Err(err)
            }
        }
    }

    /// Undo a start that failed before the daemon's main loop: detach and
    /// unpin what a fresh start made. An adopted sensor stays attached and
    /// pinned: its maps hold entries not on disk yet.
    pub fn abandon_start(self) {
        if self.adopted {
            warn!(
                "the sensor an earlier run left stays attached and pinned in {}; \
                 the next start drains it",
                self.pins
                    .as_ref()
                    .map_or("?".into(), |p| p.dir.display().to_string())
            );
            self.leave_running();
        } else if let Err(err) = self.shutdown() {
            warn!("undoing the failed start: {err:#}");
        }
    }

    /// Loaded but attached nowhere, nothing pinned: for tests and benchmarks
    /// of the drain.
    pub fn unattached(first_seen_entries: u32) -> Result<Self> {
        let ebpf = super::load(&LoadOptions {
            first_seen_entries: Some(first_seen_entries),
            pin_dir: None,
            ..LoadOptions::default()
        })?;
        Ok(Sensor {
            ebpf,
            pins: None,
            attached: Vec::new(),
            adopted: false,
        })
    }

    /// A pinned map keeps the size it was made with.
    fn warn_if_resized(&self, wanted: u32) {
        if let Some(aya::maps::Map::LruHashMap(data)) = self.ebpf.map(maps::FIRST_SEEN)
            && let Ok(info) = data.info()
            && info.max_entries() != wanted
        {
            warn!(
                "the pinned first-seen map holds {} entries, not --map-size {wanted}; \
                 the new size applies after a clean stop (SIGTERM) and start",
                info.max_entries()
            );
        }
    }

    fn link_pin(&self, program: &str, iface: &str) -> Option<std::path::PathBuf> {
        self.pins.as_ref().map(|p| p.link(program, iface))
    }

    /// Attach (or adopt) the XDP program; the mode it got, `None` when an
    /// earlier run's link was adopted (it keeps the mode it had).
    fn attach_xdp(&mut self, iface: &str, mode: XdpMode, force: bool) -> Result<Option<XdpMode>> {
        let pin = self.link_pin(XDP_PROGRAM, iface);
        if let Some(path) = pin.as_deref().filter(|p| p.exists()) {
            let ifindex = super::iface::require(iface)?;
            let target = super::force::pinned_xdp_link(path)
                .with_context(|| format!("opening the pinned link {}", path.display()))?;
            match target {
                // The interface it was attached to is gone (deleted, or
                // recreated under the same name): the link is dead weight.
                Some(target) if target.ifindex == 0 => {
                    warn!(
                        "{iface}: the XDP link an earlier run pinned was severed (the interface \
                         was removed or recreated); attaching afresh"
                    );
                    fs::remove_file(path)
                        .with_context(|| format!("unpinning {}", path.display()))?;
                }
                Some(target)
                    if target.ifindex == ifindex
                        && super::iface::xdp_prog_ids(ifindex)
                            .is_ok_and(|ids| ids.contains(&target.prog_id)) =>
                {
                    let link = PinnedLink::from_pin(path)
                        .with_context(|| format!("opening the pinned link {}", path.display()))?;
                    self.adopt(XDP_PROGRAM, iface, link, path)?;
                    info!("{iface}: adopted the running XDP program's link");
                    return Ok(None);
                }
                _ => bail!(
                    "the pinned link {} is not attached to {iface} of this network namespace; \
                     remove it (rm {}) or use another --pin-dir",
                    path.display(),
                    path.display()
                ),
            }
        }
        if force {
            super::force::detach_xdp(iface)?;
        }
        let (id, mode) = super::attach_xdp(&mut self.ebpf, iface, mode)?;
        let attached = match pin {
            Some(path) => {
                let xdp: &mut Xdp = program(&mut self.ebpf, XDP_PROGRAM)?.try_into()?;
                pin_or_own(xdp.take_link(id)?, &path, iface)?
            }
            None => Attached::Owned,
        };
        self.attached
            .push((iface.to_owned(), XDP_PROGRAM, attached));
        Ok(Some(mode))
    }

    /// Put the loaded `program` into an earlier run's pinned link (an atomic
    /// program swap: bpf_link_update, kernel 5.7 for XDP, 6.6 for TCX). The
    /// pin stays in place throughout, so a failed swap leaves the earlier
    /// sensor as it was.
    fn adopt(
        &mut self,
        name: &'static str,
        iface: &str,
        link: PinnedLink,
        path: &Path,
    ) -> Result<()> {
        let fd = FdLink::from(link);
        let context = || format!("adopting the pinned link {} on {iface}", path.display());
        match program(&mut self.ebpf, name)? {
            aya::programs::Program::Xdp(xdp) => {
                let id = xdp
                    .attach_to_link(XdpLink::try_from(fd)?)
                    .with_context(context)?;
                drop(xdp.take_link(id)?);
            }
            aya::programs::Program::SchedClassifier(egress) => {
                let id = egress
                    .attach_to_link(SchedClassifierLink::try_from(fd)?)
                    .with_context(context)?;
                drop(egress.take_link(id)?);
            }
            _ => bail!("cannot adopt a link of program {name}"),
        }
        // Our fd closed; the pin still holds the link, now running our program.
        let link = PinnedLink::from_pin(path).with_context(context)?;
        self.attached
            .push((iface.to_owned(), name, Attached::Pinned(link)));
        Ok(())
    }

    fn attach_egress(&mut self, iface: &str) -> Result<()> {
        let pin = self.link_pin(EGRESS_PROGRAM, iface);
        let egress: &mut SchedClassifier = program(&mut self.ebpf, EGRESS_PROGRAM)?.try_into()?;
        if egress.fd().is_err() {
            egress.load().context("loading the TC egress program")?;
        }
        if let Some(path) = pin.as_deref().filter(|p| p.exists()) {
            let link = PinnedLink::from_pin(path)
                .with_context(|| format!("opening the pinned link {}", path.display()))?;
            match self.adopt(EGRESS_PROGRAM, iface, link, path) {
                Ok(()) => return Ok(()),
                // The interface went away under the link (kernel: ENOLINK,
                // "Link has been severed"): replace it.
                Err(err) if severed(&err) => {
                    warn!(
                        "{iface}: the TC egress link an earlier run pinned was severed; \
                         attaching afresh"
                    );
                    fs::remove_file(path)
                        .with_context(|| format!("unpinning {}", path.display()))?;
                }
                Err(err) => return Err(err),
            }
        }
        let egress: &mut SchedClassifier = program(&mut self.ebpf, EGRESS_PROGRAM)?.try_into()?;
        // The clsact qdisc carries TC programs on kernels without TCX; it may be there already.
        if let Err(err) = tc::qdisc_add_clsact(iface) {
            log::debug!("{iface}: clsact qdisc: {err}");
        }
        let id = egress
            .attach(iface, TcAttachType::Egress)
            .with_context(|| format!("attaching the TC egress program to {iface}"))?;
        let attached = match pin {
            Some(path) => {
                let link = egress.take_link(id)?;
                match FdLink::try_from(link) {
                    Ok(fd) => Attached::Pinned(fd.pin(&path)?),
                    Err(_) => {
                        // Netlink-attached (kernel < 6.6): it stays until the
                        // qdisc goes, with or without us.
                        Attached::Owned
                    }
                }
            }
            None => Attached::Owned,
        };
        self.attached
            .push((iface.to_owned(), EGRESS_PROGRAM, attached));
        Ok(())
    }

    /// The interfaces whose XDP program is no longer ours: someone detached
    /// or replaced it (`--force`, `ip link set ... xdp off`), or the
    /// interface is gone. Nothing is recorded from those.
    pub fn detached(&self) -> Result<Vec<String>> {
        if !self.attached.iter().any(|(_, p, _)| *p == XDP_PROGRAM) {
            // Stopped recording (shutdown): nothing is expected to run.
            return Ok(Vec::new());
        }
        let xdp: &Xdp = self
            .ebpf
            .program(XDP_PROGRAM)
            .context("the eBPF object has no XDP program")?
            .try_into()?;
        let ours = xdp.info()?.id();
        let mut gone = Vec::new();
        for (iface, program, _) in &self.attached {
            if *program != XDP_PROGRAM {
                continue;
            }
            let running = match super::iface::index(iface) {
                Some(index) => super::iface::xdp_prog_ids(index)
                    .with_context(|| format!("asking which XDP program {iface} runs"))?,
                None => Vec::new(),
            };
            if !running.contains(&ours) {
                gone.push(iface.clone());
            }
        }
        Ok(gone)
    }

    pub fn ebpf(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Summed counters.
    pub fn stats(&self) -> Result<[u64; Stat::COUNT as usize]> {
        super::read_stats(&self.ebpf)
    }

    /// The first-seen map.
    pub fn first_seen(&mut self) -> Result<HashMap<&mut MapData, TupleKey, FirstSeen>> {
        Ok(HashMap::try_from(
            self.ebpf.map_mut(maps::FIRST_SEEN).context("FIRST_SEEN")?,
        )?)
    }

    /// The first-seen map's fd, for batch operations.
    pub fn first_seen_fd(&self) -> Result<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd as _;
        match self.ebpf.map(maps::FIRST_SEEN).context("FIRST_SEEN")? {
            aya::maps::Map::LruHashMap(data) | aya::maps::Map::HashMap(data) => {
                Ok(data.fd().as_fd())
            }
            _ => Err(anyhow!("FIRST_SEEN is not a hash map")),
        }
    }

    /// Entries the first-seen map can hold: a pinned map keeps the size it
    /// was made with, whatever `--map-size` says now.
    pub fn first_seen_capacity(&self) -> Result<u32> {
        match self.ebpf.map(maps::FIRST_SEEN).context("FIRST_SEEN")? {
            aya::maps::Map::LruHashMap(data) | aya::maps::Map::HashMap(data) => {
                Ok(data.info()?.max_entries())
            }
            _ => Err(anyhow!("FIRST_SEEN is not a hash map")),
        }
    }

    /// Add `n` to a counter only userspace moves (it lives with the kernel's
    /// counters so it survives restarts the same way).
    pub fn add_to_counter(&mut self, stat: Stat, n: u64) -> Result<()> {
        let mut array: PerCpuArray<&mut MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map_mut(maps::STATS).context("STATS")?)?;
        let mut values: Vec<u64> = array.get(&(stat as u32), 0)?.iter().copied().collect();
        let cpus = nr_cpus().map_err(|(_, e)| anyhow!(e))?;
        values.resize(cpus, 0);
        values[0] += n;
        array.set(stat as u32, PerCpuValues::try_from(values)?, 0)?;
        Ok(())
    }

    /// Detach the XDP program from every interface, keeping the maps (and
    /// their pins): from here on nothing new is recorded, so a drain after
    /// this one is the last and misses nothing. The TC egress program stays
    /// until [`Sensor::shutdown`]; it records no rows.
    pub fn stop_recording(&mut self) -> Result<()> {
        let (xdp, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.attached)
            .into_iter()
            .partition(|(_, program, _)| *program == XDP_PROGRAM);
        self.attached = others;
        unpin_links(xdp)?;
        // Attachments without a pin belong to the program: unloading it
        // detaches them (a netlink attachment too).
        let xdp: &mut Xdp = program(&mut self.ebpf, XDP_PROGRAM)?.try_into()?;
        xdp.unload().context("detaching the XDP program")?;
        Ok(())
    }

    /// Detach everything and remove the pins: a clean shutdown.
    pub fn shutdown(self) -> Result<()> {
        let Sensor {
            ebpf,
            pins,
            attached,
            ..
        } = self;
        unpin_links(attached)?;
        drop(ebpf);
        if let Some(pins) = pins {
            pins.remove_own()?;
        }
        Ok(())
    }

    /// Leave everything attached and pinned (the kernel keeps recording):
    /// for a shutdown that could not write what it drained. Only our file
    /// descriptors close; the pins hold the maps and links.
    pub fn leave_running(self) {
        drop(self);
    }
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::programs::Program> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("the eBPF object has no program {name}"))
}

/// Whether an error is the kernel's ENOLINK: a link whose interface is gone.
fn severed(err: &anyhow::Error) -> bool {
    crate::sys::errno(err.as_ref()) == Some(nix::errno::Errno::ENOLINK)
}

/// Remove the pins of these links and drop them: our fd is the last
/// reference once the pin is gone, so each link detaches. Attachments
/// without a pin stay with their program.
fn unpin_links(attached: Vec<(String, &'static str, Attached)>) -> Result<()> {
    for (iface, program, attached) in attached {
        if let Attached::Pinned(link) = attached {
            let link = link
                .unpin()
                .with_context(|| format!("unpinning {program} on {iface}"))?;
            drop(link);
        }
    }
    Ok(())
}

fn pin_or_own(link: XdpLink, path: &Path, iface: &str) -> Result<Attached> {
    if let Ok(fd) = FdLink::try_from(link) {
        Ok(Attached::Pinned(fd.pin(path)?))
    } else {
        // A netlink attachment (kernel < 5.9): it outlives the daemon by
        // itself, but cannot be pinned or adopted.
        warn!("{iface}: XDP attached through netlink (kernel < 5.9); restarts re-attach");
        Ok(Attached::Owned)
    }
}
