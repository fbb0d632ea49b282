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
        if let Ok((offset, ethertype)) = network
            && let Some(flow) = classify::outbound_udp_flow(pkt, offset, ethertype)
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
            Verdict::Repeat(key) | Verdict::New(key) => candidate_stat(key.proto),
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

    /// Whether a packet's source is local: it is outbound.
    pub fn is_outbound(&self, pkt: &[u8], network: Result<(usize, u16), Skip>) -> bool {
        if self.tables.local.is_empty() {
            return false;
        }
        let Ok((offset, ethertype)) = network else {
            return false;
        };
        // The source address sits at a fixed place in both IP headers.
        let src = match ethertype {
            classify::ETH_P_IPV4 => pkt
                .get(offset + 12..offset + 16)
                .map(|b| tsusen_common::tuple::ipv4_mapped([b[0], b[1], b[2], b[3]])),
            classify::ETH_P_IPV6 => pkt
                .get(offset + 8..offset + 24)
                .map(|b| <[u8; 16]>::try_from(b).expect("16 bytes")),
            _ => None,
        };
        src.is_some_and(|src| self.tables.local.contains(&src))
    }
}

fn candidate_stat(proto: u8) -> Stat {
    classify::Attempt {
        proto,
        src_ip: [0; 16],
        dst_ip: [0; 16],
        src_port: 0,
        dst_port: 0,
    }
    .candidate_stat()
}

/// The row for a new tuple seen at `wall_ns`.
pub fn row(key: &TupleKey, wall_ns: u64) -> Row {
    Row::from_entry(key, &tsusen_common::FirstSeen { wall_ns })
}
