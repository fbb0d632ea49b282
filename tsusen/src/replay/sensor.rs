//! The kernel's decision, on the host: the same rules in the same order as
//! `record()` in tsusen-ebpf, with a [`Recorded`] set in place of the
//! FIRST_SEEN map (a hash set in tests, the day store itself in replay).

use std::collections::HashSet;

use anyhow::Result;

use tsusen_common::{
    NS_PER_DAY, Stat, TupleKey,
    classify::{self, Skip},
};

use crate::{store::row::Row, tables::Tables};

/// What became of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not an attempt, for this reason.
    Skipped(Skip),
    /// An attempt whose tuple was already recorded that day.
    Repeat(TupleKey),
    /// A new tuple: a row.
    New(TupleKey),
}

/// Where the host sensor remembers the tuples it recorded.
pub trait Recorded {
    fn contains(&mut self, key: &TupleKey) -> Result<bool>;
    /// Remember a new tuple first seen at `wall_ns`.
    fn insert(&mut self, key: TupleKey, wall_ns: u64) -> Result<()>;
    /// Forget everything (as clearing the kernel map does).
    fn clear(&mut self);
}

/// A plain set: for tests, where nothing is written.
pub type Seen = HashSet<TupleKey, foldhash::fast::RandomState>;

impl Recorded for Seen {
    fn contains(&mut self, key: &TupleKey) -> Result<bool> {
        Ok(HashSet::contains(self, key))
    }

    fn insert(&mut self, key: TupleKey, _wall_ns: u64) -> Result<()> {
        HashSet::insert(self, key);
        Ok(())
    }

    fn clear(&mut self) {
        HashSet::clear(self);
    }
}

pub struct HostSensor<R: Recorded = Seen> {
    pub tables: Tables,
    pub recorded: R,
    stats: [u64; Stat::COUNT as usize],
}

impl HostSensor<Seen> {
    pub fn new(tables: Tables) -> Self {
        Self::with_recorded(tables, Seen::default())
    }
}

impl<R: Recorded> HostSensor<R> {
    pub fn with_recorded(tables: Tables, recorded: R) -> Self {
        HostSensor {
            tables,
            recorded,
            stats: [0; Stat::COUNT as usize],
        }
    }

    pub fn stats(&self) -> &[u64; Stat::COUNT as usize] {
        &self.stats
    }

    /// Forget what was recorded (as clearing the kernel map does).
    pub fn clear_seen(&mut self) {
        self.recorded.clear();
    }

    /// An outbound packet: remember the UDP flow it opens, as the TC egress
    /// program does.
    pub fn outbound(&mut self, pkt: &[u8], network: Result<(usize, u16), Skip>) {
        // Without local networks nothing is outbound (a capture of inbound
        // traffic); with them, only flows a local address opened count.
        if self.tables.local.is_empty() {
            return;
        }
        if let Ok((offset, ethertype)) = network
            && let Some(flow) = classify::outbound_udp_flow(pkt, offset, ethertype)
            && self.tables.local.contains(&flow.local_ip)
        {
            self.tables.udp_flows.insert(flow);
            self.stats[Stat::UdpFlowsSeen as usize] += 1;
        }
    }

    /// An inbound packet whose network header is at `network` (from the link
    /// layer), seen at `wall_ns`.
    pub fn inbound(
        &mut self,
        pkt: &[u8],
        network: Result<(usize, u16), Skip>,
        wall_ns: u64,
    ) -> Result<Verdict> {
        let verdict = self.decide(pkt, network, wall_ns)?;
        let stat = match verdict {
            Verdict::Skipped(skip) => skip.stat(),
            Verdict::Repeat(key) | Verdict::New(key) => classify::candidate_stat(key.proto),
        };
        self.stats[stat as usize] += 1;
        if let Verdict::New(_) = verdict {
            self.stats[Stat::NewTuples as usize] += 1;
        }
        Ok(verdict)
    }

    fn decide(
        &mut self,
        pkt: &[u8],
        network: Result<(usize, u16), Skip>,
        wall_ns: u64,
    ) -> Result<Verdict> {
        let found = network.and_then(|(offset, ethertype)| {
            let attempt = classify::attempt(pkt, offset, ethertype)?;
            classify::not_noise(&attempt, self.tables.include_multicast)?;
            Ok(attempt)
        });
        let attempt = match found {
            Ok(attempt) => attempt,
            Err(skip) => return Ok(Verdict::Skipped(skip)),
        };
        let key = attempt.key((wall_ns / NS_PER_DAY) as u16);
        if self.recorded.contains(&key)? {
            return Ok(Verdict::Repeat(key));
        }
        if let Err(skip) = classify::admit(&attempt, &self.tables) {
            return Ok(Verdict::Skipped(skip));
        }
        self.recorded.insert(key, wall_ns)?;
        Ok(Verdict::New(key))
    }
}

/// The row for a new tuple seen at `wall_ns`.
pub fn row(key: &TupleKey, wall_ns: u64) -> Row {
    Row::from_entry(key, &tsusen_common::FirstSeen { wall_ns })
}
