//! The live sensor in the kernel: the programs attached to each interface,
//! their maps, and what survives a restart.
//!
//! With a pin directory, the maps and the links (XDP ingress, TC egress) are
//! pinned. A daemon that dies leaves the kernel recording; the next start
//! loads the programs against the pinned maps and swaps them into the pinned
//! links (bpf_link_update, atomic: no packet goes unseen), so what was
//! recorded meanwhile is drained like anything else.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow};
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
    /// Load the programs (against pinned maps, if any) and attach them to
    /// every interface, adopting pinned links of an earlier run.
    pub fn start(
        ifaces: &[String],
        mode: XdpMode,
        first_seen_entries: u32,
        pins: Option<Pins>,
        force: bool,
    ) -> Result<(Self, Vec<AttachedMode>)> {
        let adopted = pins.as_ref().is_some_and(Pins::any);
        let ebpf = super::load(&LoadOptions {
            first_seen_entries: Some(first_seen_entries),
            pin_dir: pins.as_ref().map(|p| p.dir.clone()),
        })?;
        let mut sensor = Sensor {
            ebpf,
            pins,
            attached: Vec::new(),
            adopted,
        };
        if adopted {
            sensor.warn_if_resized(first_seen_entries);
        }
        let mut modes = Vec::new();
        for iface in ifaces {
            let attached = sensor
                .attach_xdp(iface, mode, force)
                .and_then(|mode| sensor.attach_egress(iface).map(|()| mode));
            match attached {
                Ok(mode) => modes.push((iface.clone(), mode)),
                Err(err) => {
                    // Leave nothing behind, unless it was an earlier run's
                    // sensor, which keeps recording for the next try.
                    if !sensor.adopted {
                        let _ = sensor.shutdown();
                    }
                    return Err(err);
                }
            }
        }
        Ok((sensor, modes))
    }

    /// Loaded but attached nowhere, nothing pinned: for tests and benchmarks
    /// of the drain.
    pub fn unattached(first_seen_entries: u32) -> Result<Self> {
        let ebpf = super::load(&LoadOptions {
            first_seen_entries: Some(first_seen_entries),
            pin_dir: None,
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
        let xdp: &mut Xdp = program(&mut self.ebpf, XDP_PROGRAM)?.try_into()?;
        if let Some(path) = pin.as_deref().filter(|p| p.exists()) {
            // An earlier run's link: put the new program into it.
            let link = XdpLink::try_from(adopt(path)?)?;
            let id = xdp
                .attach_to_link(link)
                .with_context(|| format!("adopting the XDP link on {iface}"))?;
            let link = FdLink::try_from(xdp.take_link(id)?)?;
            self.attached.push((
                iface.to_owned(),
                XDP_PROGRAM,
                Attached::Pinned(link.pin(path)?),
            ));
            info!("{iface}: adopted the running XDP program's link");
            return Ok(None);
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

    fn attach_egress(&mut self, iface: &str) -> Result<()> {
        let pin = self.link_pin(EGRESS_PROGRAM, iface);
        let egress: &mut SchedClassifier = program(&mut self.ebpf, EGRESS_PROGRAM)?.try_into()?;
        if egress.fd().is_err() {
            egress.load().context("loading the TC egress program")?;
        }
        if let Some(path) = pin.as_deref().filter(|p| p.exists()) {
            let link = SchedClassifierLink::try_from(adopt(path)?)?;
            let id = egress.attach_to_link(link)?;
            let link = FdLink::try_from(egress.take_link(id)?)?;
            self.attached.push((
                iface.to_owned(),
                EGRESS_PROGRAM,
                Attached::Pinned(link.pin(path)?),
            ));
            return Ok(());
        }
        // The clsact qdisc carries TC programs on kernels without TCX; it may be there already.
        if let Err(err) = tc::qdisc_add_clsact(iface) {
            log::debug!("{iface}: clsact qdisc: {err}");
        }
        let id = egress
            .attach(iface, TcAttachType::Egress)
            .with_context(|| format!("attaching the TC egress program to {iface}"))?;
        let attached = match pin {
            Some(path) => {
                let egress: &mut SchedClassifier =
                    program(&mut self.ebpf, EGRESS_PROGRAM)?.try_into()?;
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

    /// Detach everything and remove the pins: a clean shutdown.
    pub fn shutdown(self) -> Result<()> {
        let Sensor {
            ebpf,
            pins,
            attached,
            ..
        } = self;
        for (iface, program, attached) in attached {
            if let Attached::Pinned(link) = attached {
                // Unpinned and dropped: the last reference goes, the link detaches.
                let link = link
                    .unpin()
                    .with_context(|| format!("unpinning {program} on {iface}"))?;
                drop(link);
            }
        }
        drop(ebpf);
        if let Some(pins) = pins {
            pins.remove_all()?;
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

/// Take over a pinned link: its fd, with the pin removed for the moment
/// (it is pinned again right after the program swap).
fn adopt(path: &Path) -> Result<FdLink> {
    let pinned = PinnedLink::from_pin(path)
        .with_context(|| format!("opening the pinned link {}", path.display()))?;
    Ok(pinned.unpin()?)
}

fn pin_or_own(link: XdpLink, path: &Path, iface: &str) -> Result<Attached> {
    match FdLink::try_from(link) {
        Ok(fd) => Ok(Attached::Pinned(fd.pin(path)?)),
        Err(_) => {
            // A netlink attachment (kernel < 5.9): it outlives the daemon by
            // itself, but cannot be pinned or adopted.
            warn!("{iface}: XDP attached through netlink (kernel < 5.9); restarts re-attach");
            Ok(Attached::Owned)
        }
    }
}
