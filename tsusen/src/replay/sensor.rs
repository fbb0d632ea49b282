//! The kernel's decision, on the host: `classify::decide`, the function the
//! XDP program calls, over a [`Recorded`] set in place of the FIRST_SEEN map
//! (a hash set in tests, the day store itself in replay) and the packet's
//! capture time in place of the kernel's clock.

use std::collections::HashSet;

use anyhow::Result;

pub use tsusen_common::classify::Verdict;
use tsusen_common::{
    FlowKey, NS_PER_DAY, Stat, TupleKey,
    classify::{self, Insert, Skip, UDP_FLOW_REFRESH_NS, UDP_FLOW_TIMEOUT_NS},
};

use crate::{dayfile::Row, tables::Tables};

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
    /// Flows held before timed-out ones are dropped (the kernel's map is an
    /// LRU of fixed size; here the bound is the flows still live).
    prune_flows_at: usize,
}

/// Flows held before the first pruning.
const PRUNE_FLOWS_AT: usize = 1 << 16;

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
            prune_flows_at: PRUNE_FLOWS_AT,
        }
    }

    pub fn stats(&self) -> &[u64; Stat::COUNT as usize] {
        &self.stats
    }

    /// Forget what was recorded (as clearing the kernel map does).
    pub fn clear_seen(&mut self) {
        self.recorded.clear();
    }

    /// An outbound packet seen at `wall_ns`: remember the UDP flow it sends
    /// on, and when, as the TC egress program does.
    pub fn outbound(&mut self, pkt: &[u8], network: Result<(usize, u16), Skip>, wall_ns: u64) {
        // Without local networks nothing is outbound (a capture of inbound
        // traffic); with them, only flows a local address opened count.
        if self.tables.local.is_empty() {
            return;
        }
        if let Ok((offset, ethertype)) = network
            && let Some(flow) = classify::outbound_udp_flow(pkt, offset, ethertype)
            && self.tables.local.contains(&flow.local_ip)
        {
            if let Some(seen) = self.tables.udp_flows.get_mut(&flow) {
                if wall_ns.wrapping_sub(*seen) > UDP_FLOW_REFRESH_NS {
                    *seen = wall_ns;
                }
            } else {
                self.prune_flows(wall_ns);
                self.tables.udp_flows.insert(flow, wall_ns);
                self.stats[Stat::UdpFlowsSeen as usize] += 1;
            }
        }
    }

    /// Drop timed-out flows once the table has doubled since the last time,
    /// so replay's memory follows the live flows, not the capture's length.
    /// A dropped flow answers nothing: no verdict changes.
    fn prune_flows(&mut self, now: u64) {
        if self.tables.udp_flows.len() < self.prune_flows_at {
            return;
        }
        self.tables
            .udp_flows
            .retain(|_, seen| now.saturating_sub(*seen) <= UDP_FLOW_TIMEOUT_NS);
        self.prune_flows_at = (self.tables.udp_flows.len() * 2).max(PRUNE_FLOWS_AT);
    }

    /// An inbound packet whose network header is at `network` (from the link
    /// layer), seen at `wall_ns`.
    pub fn inbound(
        &mut self,
        pkt: &[u8],
        network: Result<(usize, u16), Skip>,
        wall_ns: u64,
    ) -> Result<Verdict> {
        // Callers skip what is past 2149-06-06 (replay counts it); a day
        // number never wraps.
        if wall_ns / NS_PER_DAY > u64::from(u16::MAX) {
            anyhow::bail!("a packet dated after 2149-06-06 reached the rules");
        }
        let mut today = HostToday {
            tables: &mut self.tables,
            recorded: &mut self.recorded,
            stats: &mut self.stats,
            wall_ns,
        };
        classify::decide(pkt, network, &mut today)
    }
}

/// The row for a new tuple seen at `wall_ns`.
pub fn row(key: &TupleKey, wall_ns: u64) -> Row {
    Row::from_entry(key, &tsusen_common::FirstSeen { wall_ns })
}

/// The host's side of the decision: the tables, the recorded set, the
/// counters, and the packet's time as the clock.
struct HostToday<'a, R> {
    tables: &'a mut Tables,
    recorded: &'a mut R,
    stats: &'a mut [u64; Stat::COUNT as usize],
    wall_ns: u64,
}

impl<R> classify::Tables for HostToday<'_, R> {
    fn has_local(&self) -> bool {
        self.tables.has_local()
    }

    fn is_local(&self, ip: &[u8; 16]) -> bool {
        self.tables.is_local(ip)
    }

    fn is_ignored_port(&self, port: u16) -> bool {
        self.tables.is_ignored_port(port)
    }

    fn is_ignored_net(&self, ip: &[u8; 16]) -> bool {
        self.tables.is_ignored_net(ip)
    }

    fn udp_flow_seen(&self, flow: &FlowKey) -> Option<u64> {
        self.tables.udp_flow_seen(flow)
    }

    fn expire_udp_flow(&mut self, flow: &FlowKey) {
        self.tables.expire_udp_flow(flow);
        self.stats[Stat::UdpFlowsExpired as usize] += 1;
    }
}

impl<R: Recorded> classify::Today for HostToday<'_, R> {
    type Error = anyhow::Error;

    fn include_multicast(&mut self) -> bool {
        self.tables.include_multicast
    }

    fn now_ns(&mut self) -> u64 {
        self.wall_ns
    }

    fn contains(&mut self, key: &TupleKey) -> Result<bool> {
        self.recorded.contains(key)
    }

    fn insert(&mut self, key: &TupleKey, wall_ns: u64) -> Result<Insert> {
        self.recorded.insert(*key, wall_ns)?;
        Ok(Insert::New)
    }

    fn count(&mut self, stat: Stat) {
        self.stats[stat as usize] += 1;
    }
}
