//! The kernel's decision, on the host: the same rules in the same order as
//! `record()` in tsusen-ebpf, with a hash set in place of the FIRST_SEEN map.

use std::collections::HashSet;

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

pub struct HostSensor {
    pub tables: Tables,
    seen: HashSet<TupleKey>,
    stats: [u64; Stat::COUNT as usize],
}

impl HostSensor {
    pub fn new(tables: Tables) -> Self {
        HostSensor {
            tables,
            seen: HashSet::new(),
            stats: [0; Stat::COUNT as usize],
        }
    }

    pub fn stats(&self) -> &[u64; Stat::COUNT as usize] {
        &self.stats
    }

    /// Forget what was recorded (as clearing the kernel map does).
    pub fn clear_seen(&mut self) {
        self.seen.clear();
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
    ) -> Verdict {
        self.stats[Stat::Packets as usize] += 1;
        let verdict = self.decide(pkt, network, wall_ns);
        let stat = match verdict {
            Verdict::Skipped(skip) => skip.stat(),
            Verdict::Repeat(key) | Verdict::New(key) => candidate_stat(key.proto),
        };
        self.stats[stat as usize] += 1;
        if let Verdict::New(_) = verdict {
            self.stats[Stat::NewTuples as usize] += 1;
        }
        verdict
    }

    fn decide(&mut self, pkt: &[u8], network: Result<(usize, u16), Skip>, wall_ns: u64) -> Verdict {
        let found = network.and_then(|(offset, ethertype)| {
            classify::attempt(pkt, offset, ethertype, self.tables.include_multicast)
        });
        let attempt = match found {
            Ok(attempt) => attempt,
            Err(skip) => return Verdict::Skipped(skip),
        };
        let key = attempt.key((wall_ns / NS_PER_DAY) as u16);
        if self.seen.contains(&key) {
            return Verdict::Repeat(key);
        }
        if let Err(skip) = classify::admit(&attempt, &self.tables) {
            return Verdict::Skipped(skip);
        }
        self.seen.insert(key);
        Verdict::New(key)
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
