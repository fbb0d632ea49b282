//! Capture: load the eBPF programs, hand them their settings, attach them.
//!
//! The object is built by build.rs and embedded in the binary, so a deployed
//! `tsusen` is one file.

pub mod clock;
pub mod force;
pub mod iface;
pub mod pins;
pub mod privileges;
pub mod sensor;
pub mod stats;

use std::{collections::HashSet, path::PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, LpmTrie, MapData, lpm_trie::Key},
    programs::{ProgramError, Xdp, XdpMode as AyaXdpMode, xdp::XdpLinkId},
};
use log::{info, warn};
use nix::errno::Errno;
use tsusen_common::{Config, NET_ENTRIES, Stat, maps};

use crate::{sys, tables::Tables};

/// The eBPF object built by build.rs from tsusen-ebpf.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tsusen"));

/// Name of the XDP program in the object.
pub const XDP_PROGRAM: &str = "tsusen";
/// Name of the empty XDP program, the benchmark's floor.
pub const FLOOR_PROGRAM: &str = "tsusen_floor";
/// Name of the benchmark's XDP program that records every run as a new tuple.
pub const FRESH_PROGRAM: &str = "tsusen_fresh";
/// Names of the benchmark's floors for a new tuple: only the kernel's LRU
/// insert, into a map with common or per-CPU LRU lists.
pub const INSERT_FLOOR_PROGRAM: &str = "tsusen_insert_floor";
pub const INSERT_FLOOR_PERCPU_PROGRAM: &str = "tsusen_insert_floor_percpu";
/// Their maps (one entry unless `LoadOptions::insert_floor_entries`).
const INSERT_FLOOR_MAPS: [&str; 2] = ["INSERT_FLOOR", "INSERT_FLOOR_PERCPU"];
/// Name of the TC egress program in the object.
pub const EGRESS_PROGRAM: &str = "tsusen_egress";

/// How the XDP program is attached (`--xdp-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpMode {
    /// Generic mode on a veth (see [`auto_mode`]); elsewhere native mode
    /// where the driver supports it, generic otherwise.
    Auto,
    /// Native mode, in the driver, before an skb is allocated.
    Native,
    /// Generic mode, after the skb is allocated: works on every interface.
    Generic,
}

/// How to load the object.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Entries of the first-seen map; `None` keeps the compiled-in default.
    pub first_seen_entries: Option<u32>,
    /// Pin (and reuse) the maps in this bpffs directory.
    pub pin_dir: Option<PathBuf>,
    /// Read the precise clock even where the coarse one exists (tests of the
    /// older kernels' program).
    pub precise_clock: bool,
    /// Entries of the benchmark's insert-floor maps (see
    /// `INSERT_FLOOR_PROGRAM`); `None` keeps them at one.
    pub insert_floor_entries: Option<u32>,
}

/// The global in the XDP object that picks its clock (see tsusen-ebpf).
const COARSE_CLOCK: &str = "COARSE_CLOCK";

/// Whether the programs may read the coarse clock: `bpf_ktime_get_coarse_ns`
/// exists from 5.11. Probed, not guessed from the version (backports).
fn coarse_clock_available() -> bool {
    match aya::sys::is_helper_supported(
        aya::programs::ProgramType::Xdp,
        aya::sys::BpfHelper::BPF_FUNC_ktime_get_coarse_ns,
    ) {
        Ok(true) => true,
        Ok(false) => {
            info!(
                "this kernel has no bpf_ktime_get_coarse_ns (5.11+): first-seen times from the \
                 precise clock, about 25 ns more per attempt"
            );
            false
        }
        Err(err) => {
            warn!("probing bpf_ktime_get_coarse_ns: {err}; using the precise clock");
            false
        }
    }
}

/// Load the eBPF object and the XDP program into the kernel (not attached).
pub fn load(opts: &LoadOptions) -> Result<Ebpf> {
    let mut loader = EbpfLoader::new();
    let coarse = u8::from(!opts.precise_clock && coarse_clock_available());
    loader.override_global(COARSE_CLOCK, &coarse, true);
    if let Some(entries) = opts.first_seen_entries {
        loader.map_max_entries(maps::FIRST_SEEN, entries);
    }
    if let Some(entries) = opts.insert_floor_entries {
        for map in INSERT_FLOOR_MAPS {
            loader.map_max_entries(map, entries);
        }
    }
    let pins: Vec<(&str, PathBuf)> = match &opts.pin_dir {
        Some(dir) => pins::MAPS.iter().map(|&m| (m, dir.join(m))).collect(),
        None => Vec::new(),
    };
    for (name, path) in &pins {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader
        .load(EBPF_OBJECT)
        .map_err(|err| privileges::explain(anyhow!(err), "loading the eBPF maps"))?;
    let xdp: &mut Xdp = program(&mut ebpf, XDP_PROGRAM)?.try_into()?;
    // A verifier rejection carries the verifier's log in the error.
    xdp.load()
        .map_err(|err| privileges::explain(anyhow!(err), "loading the XDP program"))?;
    Ok(ebpf)
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::programs::Program> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("the eBPF object has no program {name}"))
}

/// Write the settings the XDP program reads.
pub fn set_config(ebpf: &mut Ebpf, config: &Config) -> Result<()> {
    let mut array: Array<&mut MapData, Config> = Array::try_from(
        ebpf.map_mut(maps::CONFIG)
            .context("the eBPF object has no CONFIG map")?,
    )?;
    array.set(0, config, 0).context("writing the CONFIG map")?;
    Ok(())
}

/// Write `tables` into the kernel's maps and set CONFIG (flags and the
/// wall-clock offset). Prefixes no longer wanted are removed, so this also
/// updates a running program.
pub fn write_tables(ebpf: &mut Ebpf, tables: &Tables, wall_offset_ns: u64) -> Result<()> {
    for (name, nets) in [
        (maps::LOCAL_NETS, &tables.local),
        (maps::IGNORED_NETS, &tables.ignored_nets),
    ] {
        if nets.len() > NET_ENTRIES as usize {
            bail!(
                "{} networks for {name}, more than the {NET_ENTRIES} the kernel map holds",
                nets.len()
            );
        }
        let map = ebpf.map_mut(name).context("missing prefix map")?;
        let mut trie: LpmTrie<&mut MapData, [u8; 16], u8> = LpmTrie::try_from(map)?;
        let wanted: HashSet<([u8; 16], u8)> = nets.prefixes().collect();
        let stale: Vec<Key<[u8; 16]>> = trie
            .keys()
            .filter_map(Result::ok)
            .filter(|k| {
                // A prefix length is at most 128: it fits.
                let len = u8::try_from(k.prefix_len()).unwrap_or(u8::MAX);
                !wanted.contains(&(k.data(), len))
            })
            .collect();
        for key in stale {
            trie.remove(&key)
                .with_context(|| format!("updating {name}"))?;
        }
        for (addr, len) in &wanted {
            trie.insert(&Key::new(u32::from(*len), *addr), 1, 0)
                .with_context(|| format!("updating {name}"))?;
        }
    }
    let map = ebpf
        .map_mut(maps::IGNORED_PORTS)
        .context("missing IGNORED_PORTS")?;
    let mut ports: Array<&mut MapData, u64> = Array::try_from(map)?;
    for (index, word) in (0u32..).zip(tables.ignored_ports.iter()) {
        ports.set(index, word, 0)?;
    }
    set_config(
        ebpf,
        &Config {
            wall_offset_ns,
            flags: tables.config_flags(),
            _pad: 0,
        },
    )
}

/// Sum the per-CPU counters (see [`stats::sum_counters`]).
pub fn read_stats(ebpf: &Ebpf) -> Result<[u64; Stat::COUNT as usize]> {
    stats::sum_counters(
        ebpf.map(maps::STATS)
            .context("the eBPF object has no STATS map")?,
    )
}

/// Link kinds on which `auto` attaches in generic mode: their native XDP
/// works on skbs, not on a driver's receive buffers, and costs more than
/// generic mode. On a veth, native XDP moves every packet through a ring and
/// NAPI and copies it into a new buffer (`veth_xdp_rcv_skb`,
/// `skb_pp_cow_data`); measured here (README, Performance), the empty program
/// alone took 30% off the sender's rate in native mode and 12% in generic
/// mode, and the sensor was as fast or faster in generic mode on every stream.
const GENERIC_FIRST: &[&str] = &["veth"];

/// What `--xdp-mode auto` attaches on an interface of this link kind (as
/// rtnetlink names it; `None` for a real NIC): `Generic` for the kinds in
/// [`GENERIC_FIRST`], otherwise `Native` (with generic as the fallback when
/// the driver has no XDP).
pub fn auto_mode(kind: Option<&str>) -> XdpMode {
    match kind {
        Some(kind) if GENERIC_FIRST.contains(&kind) => XdpMode::Generic,
        _ => XdpMode::Native,
    }
}

/// Attach the loaded XDP program to `iface`. `Auto` takes generic mode on a
/// veth ([`auto_mode`]); elsewhere it tries native mode first and falls back
/// to generic mode when the driver has no XDP support. Returns the mode
/// attached.
pub fn attach_xdp(ebpf: &mut Ebpf, iface: &str, mode: XdpMode) -> Result<(XdpLinkId, XdpMode)> {
    let ifindex = iface::require(iface)?;
    let xdp: &mut Xdp = program(ebpf, XDP_PROGRAM)?.try_into()?;
    let attempt = |xdp: &mut Xdp, mode: XdpMode| {
        let aya_mode = match mode {
            XdpMode::Native => AyaXdpMode::Driver,
            XdpMode::Generic | XdpMode::Auto => AyaXdpMode::Skb,
        };
        xdp.attach(iface, aya_mode)
    };
    let kind = if mode == XdpMode::Auto {
        iface::link_kind(ifindex).unwrap_or_else(|err| {
            warn!("{iface}: reading its link kind: {err}; taking it for a real NIC");
            None
        })
    } else {
        None
    };
    let (link, mode) = match mode {
        XdpMode::Auto if auto_mode(kind.as_deref()) == XdpMode::Generic => {
            info!(
                "{iface}: a {} device: generic XDP (--xdp-mode auto; native XDP on it copies \
                 every packet and is slower)",
                kind.as_deref().unwrap_or("?")
            );
            (
                attempt(xdp, XdpMode::Generic).map_err(|e| attach_error(e, iface))?,
                XdpMode::Generic,
            )
        }
        XdpMode::Auto => match attempt(xdp, XdpMode::Native) {
            Ok(link) => (link, XdpMode::Native),
            Err(err) if already_attached(&err) => return Err(attach_error(err, iface)),
            Err(err) => {
                info!("{iface}: native XDP not available ({err}); using generic mode");
                (
                    attempt(xdp, XdpMode::Generic).map_err(|e| attach_error(e, iface))?,
                    XdpMode::Generic,
                )
            }
        },
        mode => (
            attempt(xdp, mode).map_err(|e| attach_error(e, iface))?,
            mode,
        ),
    };
    Ok((link, mode))
}

fn already_attached(err: &ProgramError) -> bool {
    matches!(sys::errno(err), Some(Errno::EBUSY | Errno::EEXIST))
}

fn attach_error(err: ProgramError, iface: &str) -> anyhow::Error {
    if already_attached(&err) {
        return anyhow!(
            "another XDP program is already attached to {iface} (see `ip link show {iface}`); \
             stop it, or pass --force to replace it"
        );
    }
    match sys::errno(&err) {
        Some(Errno::EOPNOTSUPP) => {
            anyhow!("{iface} does not support this XDP mode; try --xdp-mode generic")
        }
        _ => privileges::explain(anyhow!(err), &format!("attaching XDP to {iface}")),
    }
}

/// Warn when the memlock limit may be too low for old kernels (< 5.11), which
/// charge BPF maps to RLIMIT_MEMLOCK rather than the cgroup.
pub fn raise_memlock_limit() {
    use nix::sys::resource::{RLIM_INFINITY, Resource, setrlimit};
    if let Err(err) = setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY) {
        warn!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels >= 5.11",
            std::io::Error::from(err)
        );
    }
}

/// Fail with one line naming the missing capabilities, before any bpf() call
/// fails with a bare EPERM.
pub fn ensure_root_or_caps() -> Result<()> {
    let missing = privileges::missing();
    if missing.is_empty() {
        Ok(())
    } else {
        bail!(
            "missing privileges: tsusen needs {} (run as root, e.g. with sudo)",
            missing.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_generic_mode_on_a_veth_only() {
        assert_eq!(auto_mode(Some("veth")), XdpMode::Generic);
        assert_eq!(auto_mode(None), XdpMode::Native, "a real NIC");
        assert_eq!(auto_mode(Some("bridge")), XdpMode::Native);
    }
}
