//! The XDP program in the kernel, run on single packets with
//! BPF_PROG_TEST_RUN: the kernel half of the rule and differential tests, and
//! the benchmark. Reports the same `Verdict` the host sensor gives.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use aya::util::nr_cpus;
use aya::{
    Ebpf, TestRunResult,
    maps::{HashMap, MapData, PerCpuArray, PerCpuValues},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use tsusen_common::{FirstSeen, FlowKey, Stat, TupleKey, maps, recent};

use crate::{capture, replay::sensor::Verdict, tables::Tables};

/// 2026-11-24 12:00:00 UTC: tests pin the kernel's clock here (through the
/// wall-clock offset) so both sides agree on the day.
pub const TEST_WALL_NS: u64 = 1_795_521_600 * 1_000_000_000;

/// One CPU's RECENT cache, as bytes.
type RecentSlots = [[u8; recent::SLOT_BYTES]; recent::SLOTS];

/// What a program returns to let the packet go on, and its name: XDP_PASS,
/// from linux/bpf.h, and TC_ACT_OK, from linux/pkt_cls.h.
const XDP_PASS: (u32, &str) = (2, "XDP_PASS");
const TC_ACT_OK: (u32, &str) = (0, "TC_ACT_OK");

pub struct KernelSensor {
    ebpf: Ebpf,
}

impl KernelSensor {
    /// Load the program (not attached anywhere) with these tables.
    pub fn load(tables: &Tables) -> Result<Self> {
        Self::load_with(tables, &capture::LoadOptions::default())
    }

    /// The same, loaded with these options (the precise clock of older kernels).
    pub fn load_with(tables: &Tables, options: &capture::LoadOptions) -> Result<Self> {
        let ebpf = capture::load(options)?;
        let mut sensor = KernelSensor { ebpf };
        sensor.set_tables(tables)?;
        Ok(sensor)
    }

    /// Set the kernel's wall clock to read `wall_ns` now (through the offset
    /// in CONFIG), with these tables' flags.
    pub fn set_wall_clock(&mut self, tables: &Tables, wall_ns: u64) -> Result<()> {
        let offset = wall_ns.wrapping_sub(capture::clock::monotonic_ns());
        capture::write_tables(&mut self.ebpf, tables, offset)
    }

    /// Replace the tables (maps and flags) and forget every recorded tuple.
    pub fn set_tables(&mut self, tables: &Tables) -> Result<()> {
        self.set_wall_clock(tables, TEST_WALL_NS)?;
        let mut flows: HashMap<&mut MapData, FlowKey, u64> =
            HashMap::try_from(self.ebpf.map_mut(maps::UDP_FLOWS).context("UDP_FLOWS")?)?;
        let old: Vec<FlowKey> = flows.keys().filter_map(Result::ok).collect();
        for key in old {
            flows.remove(&key)?;
        }
        for (flow, seen) in &tables.udp_flows {
            flows.insert(flow, seen, 0)?;
        }
        self.clear()
    }

    /// Forget every recorded tuple: the map and each CPU's cache of it.
    pub fn clear(&mut self) -> Result<()> {
        let mut map = self.first_seen_mut()?;
        let keys: Vec<TupleKey> = map.keys().filter_map(Result::ok).collect();
        for key in keys {
            map.remove(&key)?;
        }
        self.clear_recent()
    }

    /// Empty every CPU's RECENT cache (see tsusen-ebpf), keeping the map: a
    /// drained tuple, as far as the program can tell.
    pub fn clear_recent(&mut self) -> Result<()> {
        let mut recent: PerCpuArray<&mut MapData, RecentSlots> =
            PerCpuArray::try_from(self.ebpf.map_mut(maps::RECENT).context("RECENT")?)?;
        let cpus = nr_cpus().map_err(|(_, err)| err)?;
        let empty = [[0; recent::SLOT_BYTES]; recent::SLOTS];
        recent.set(0, PerCpuValues::try_from(vec![empty; cpus])?, 0)?;
        Ok(())
    }

    /// Forget `key` in the map only, as the drain does once its row is on
    /// disk.
    pub fn forget(&mut self, key: &TupleKey) -> Result<()> {
        self.first_seen_mut()?.remove(key)?;
        Ok(())
    }

    fn first_seen_mut(&mut self) -> Result<HashMap<&mut MapData, TupleKey, FirstSeen>> {
        Ok(HashMap::try_from(
            self.ebpf.map_mut(maps::FIRST_SEEN).context("FIRST_SEEN")?,
        )?)
    }

    /// The counters (summed over CPUs).
    pub fn stats(&self) -> Result<[u64; Stat::COUNT as usize]> {
        capture::read_stats(&self.ebpf)
    }

    /// The outbound UDP flows in the kernel's map, with their times.
    pub fn udp_flows(&self) -> Result<Vec<(FlowKey, u64)>> {
        let map: HashMap<&MapData, FlowKey, u64> =
            HashMap::try_from(self.ebpf.map(maps::UDP_FLOWS).context("UDP_FLOWS")?)?;
        Ok(map.iter().filter_map(Result::ok).collect())
    }

    /// The recorded tuples.
    pub fn recorded(&self) -> Result<Vec<(TupleKey, FirstSeen)>> {
        let map: HashMap<&MapData, TupleKey, FirstSeen> =
            HashMap::try_from(self.ebpf.map(maps::FIRST_SEEN).context("FIRST_SEEN")?)?;
        Ok(map.iter().filter_map(Result::ok).collect())
    }

    fn xdp(&self) -> Result<&Xdp> {
        Ok(self
            .ebpf
            .program(capture::XDP_PROGRAM)
            .context("no XDP program")?
            .try_into()?)
    }

    /// Run the program `repeat` times on `packet`; returns the mean time per run.
    pub fn time(&self, packet: &[u8], repeat: u32) -> Result<Duration> {
        test_run(self.xdp()?, packet, repeat, XDP_PASS)
    }

    /// Run the TC egress program (loaded on first use) once on `packet`, as
    /// if this host sent it.
    pub fn egress(&mut self, packet: &[u8]) -> Result<()> {
        test_run(self.egress_program()?, packet, 1, TC_ACT_OK)?;
        Ok(())
    }

    /// Run the TC egress program (loaded on first use) `repeat` times on
    /// `packet`; returns the mean time per run.
    pub fn time_egress(&mut self, packet: &[u8], repeat: u32) -> Result<Duration> {
        test_run(self.egress_program()?, packet, repeat, TC_ACT_OK)
    }

    /// The TC egress program, loaded on first use.
    fn egress_program(&mut self) -> Result<&mut SchedClassifier> {
        let egress: &mut SchedClassifier = self
            .ebpf
            .program_mut(capture::EGRESS_PROGRAM)
            .context("no egress program")?
            .try_into()?;
        if egress.fd().is_err() {
            egress.load()?;
        }
        Ok(egress)
    }

    /// The same for the empty program (loaded on first use): the floor.
    pub fn time_floor(&mut self, packet: &[u8], repeat: u32) -> Result<Duration> {
        self.time_other(capture::FLOOR_PROGRAM, packet, repeat)
    }

    /// The same for the benchmark's program that makes every run a new tuple
    /// (loaded on first use; see `tsusen_fresh` in tsusen-ebpf).
    pub fn time_fresh(&mut self, packet: &[u8], repeat: u32) -> Result<Duration> {
        self.time_other(capture::FRESH_PROGRAM, packet, repeat)
    }

    /// The same for the benchmark's floor of a new tuple, the kernel's LRU
    /// insert alone (load with `LoadOptions::insert_floor_entries`), into a
    /// map with common or per-CPU LRU lists (`BPF_F_NO_COMMON_LRU`).
    pub fn time_insert_floor(
        &mut self,
        per_cpu_lru: bool,
        packet: &[u8],
        repeat: u32,
    ) -> Result<Duration> {
        let name = if per_cpu_lru {
            capture::INSERT_FLOOR_PERCPU_PROGRAM
        } else {
            capture::INSERT_FLOOR_PROGRAM
        };
        self.time_other(name, packet, repeat)
    }

    fn time_other(&mut self, name: &str, packet: &[u8], repeat: u32) -> Result<Duration> {
        let program: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .with_context(|| format!("no program {name}"))?
            .try_into()?;
        if program.fd().is_err() {
            program.load()?;
        }
        test_run(program, packet, repeat, XDP_PASS)
    }

    /// Run the program once on `packet` and say what it decided, from the
    /// counters it moved and the tuple it recorded.
    pub fn verdict(&mut self, packet: &[u8]) -> Result<Verdict> {
        let before = capture::read_stats(&self.ebpf)?;
        let recorded_before = self.recorded()?.len();
        self.time(packet, 1)?;
        let after = capture::read_stats(&self.ebpf)?;
        let moved: Vec<Stat> = Stat::ALL
            .iter()
            .copied()
            .filter(|s| after[*s as usize] != before[*s as usize])
            .collect();
        let new = moved.contains(&Stat::NewTuples);
        let reason = moved.iter().copied().find(|s| s.is_classification());
        match (reason, new) {
            (Some(stat), _) if skip_of(stat).is_some() => {
                Ok(Verdict::Skipped(skip_of(stat).expect("checked")))
            }
            (Some(_), true) => {
                let recorded = self.recorded()?;
                if recorded.len() != recorded_before + 1 {
                    bail!(
                        "a new tuple was counted but {} entries are recorded",
                        recorded.len()
                    );
                }
                let newest = recorded
                    .into_iter()
                    .max_by_key(|(_, seen)| seen.wall_ns)
                    .expect("one entry");
                Ok(Verdict::New(newest.0))
            }
            (Some(_), false) if moved.contains(&Stat::InsertFailed) => {
                Ok(Verdict::Failed(TupleKey::default()))
            }
            (Some(_), false) => Ok(Verdict::Repeat(TupleKey::default())),
            (None, _) => bail!("no classification counter moved: {moved:?}"),
        }
    }

    /// The kernel's UTC day (it follows TEST_WALL_NS).
    pub fn day(&self) -> u16 {
        tsusen_common::classify::day_of(TEST_WALL_NS)
    }
}

/// Run a packet program `repeat` times on `packet` (BPF_PROG_TEST_RUN); an
/// error unless it returned `pass`. Returns the mean time per run.
fn test_run<P>(
    program: &P,
    packet: &[u8],
    repeat: u32,
    (pass, pass_name): (u32, &str),
) -> Result<Duration>
where
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = TestRunResult>,
{
    let result = program.test_run(TestRunOptions {
        data_in: Some(packet),
        repeat,
        ..TestRunOptions::default()
    })?;
    if result.return_value != pass {
        bail!(
            "the program returned {} instead of {pass_name}",
            result.return_value
        );
    }
    Ok(result.duration)
}

fn skip_of(stat: Stat) -> Option<tsusen_common::classify::Skip> {
    use tsusen_common::classify::Skip;
    [
        Skip::NotIp,
        Skip::Malformed,
        Skip::Fragment,
        Skip::HeaderChain,
        Skip::Multicast,
        Skip::TcpNotSyn,
        Skip::IcmpNotRequest,
        Skip::Outbound,
        Skip::NotLocal,
        Skip::IgnoredPort,
        Skip::IgnoredNet,
        Skip::UdpReply,
    ]
    .into_iter()
    .find(|skip| skip.stat() == stat)
}
