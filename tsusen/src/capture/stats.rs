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
    array: PerCpuArray<MapData, u64>,
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
        let array = PerCpuArray::try_from(Map::PerCpuArray(data))?;
        Ok(KernelStats { array })
    }

    /// Every counter, summed over the CPUs.
    pub fn read(&self) -> Result<[u64; Stat::COUNT as usize]> {
        let mut totals = [0u64; Stat::COUNT as usize];
        for (index, total) in totals.iter_mut().enumerate() {
            let per_cpu = self
                .array
                .get(&(index as u32), 0)
                .context("reading STATS")?;
            *total = per_cpu.iter().sum();
        }
        Ok(totals)
    }
}
