//! A handle of its own on the kernel's `STATS` counters, for reading them
//! outside the daemon's loop (a `/metrics` scrape).
//!
//! It holds a duplicate of the map's file descriptor: reading a per-CPU
//! array is one lookup syscall per counter and takes no lock, so a scrape
//! never waits for a flush, nor a flush for a scrape. The duplicate keeps
//! the map alive (not the programs) until the handle is dropped.

use std::os::fd::AsFd as _;

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf,
    maps::{Map, MapData, PerCpuArray},
};
use tsusen_common::{Stat, maps};

pub struct KernelStats {
    map: Map,
}

impl std::fmt::Debug for KernelStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KernelStats")
    }
}

impl KernelStats {
    /// Open a second handle on `ebpf`'s STATS map.
    pub fn open(ebpf: &Ebpf) -> Result<Self> {
        let Some(Map::PerCpuArray(data)) = ebpf.map(maps::STATS) else {
            return Err(anyhow!("the eBPF object has no per-CPU STATS map"));
        };
        let fd = data
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating the STATS map's descriptor")?;
        let data = MapData::from_fd(fd).context("opening the STATS map")?;
        Ok(KernelStats {
            map: Map::PerCpuArray(data),
        })
    }

    /// Every counter, summed over the CPUs.
    pub fn read(&self) -> Result<[u64; Stat::COUNT as usize]> {
        sum_counters(&self.map)
    }
}

/// Every counter of a STATS map, summed over the CPUs. A map pinned by an
/// older build (adopted after an upgrade without a clean stop) holds fewer
/// counters than this build knows, and keeps its size until a clean stop:
/// the counters it lacks read 0 rather than failing every read, which would
/// stop the drain.
pub fn sum_counters(map: &Map) -> Result<[u64; Stat::COUNT as usize]> {
    let Map::PerCpuArray(data) = map else {
        return Err(anyhow!("STATS is not a per-CPU array"));
    };
    let present = data
        .info()
        .context("reading the STATS map's size")?
        .max_entries();
    let array: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map)?;
    let mut totals = [0u64; Stat::COUNT as usize];
    for (index, total) in (0..present).zip(totals.iter_mut()) {
        let per_cpu = array.get(&index, 0).context("reading STATS")?;
        *total = per_cpu.iter().sum();
    }
    Ok(totals)
}
