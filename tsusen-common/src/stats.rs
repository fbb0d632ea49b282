//! Counters of the per-CPU `STATS` array: what the kernel saw and why it skipped.

/// One counter, by its index in `STATS`.
///
/// Every packet moves exactly one classification counter (a candidate or a
/// skip reason), so the packet count is their sum ([`packets`]) and the XDP
/// program pays for one counter per packet, not two.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stat {
    /// Row candidates (attempts that passed every rule), by protocol.
    CandidateTcp = 0,
    CandidateUdp,
    CandidateIcmp,
    CandidateIcmpv6,
    CandidateOther,
    /// Tuples inserted into FIRST_SEEN: first seen on their day.
    NewTuples,
    /// Inserts the kernel refused (map full beyond what LRU could evict).
    InsertFailed,
    /// Skipped, by reason (see `classify::Skip`).
    SkipNotIp,
    SkipMalformed,
    SkipFragment,
    SkipHeaderChain,
    SkipMulticast,
    SkipTcpNotSyn,
    SkipIcmpNotRequest,
    SkipOutbound,
    SkipNotLocal,
    SkipIgnoredPort,
    SkipIgnoredNet,
    SkipUdpReply,
    /// Outbound UDP packets the TC egress program registered as flows.
    UdpFlowsSeen,
    /// First-seen entries userspace drained (written, then removed from the
    /// map). Moved by userspace only; kept here so it survives restarts like
    /// the kernel's counters, which evictions are computed against.
    Drained,
    /// Outbound UDP flows forgotten because an inbound datagram came after
    /// `classify::UDP_FLOW_TIMEOUT_NS` (it was then judged as an attempt).
    /// Last, so the indices of an older build's counters stay where they were.
    UdpFlowsExpired,
}

impl Stat {
    /// Every counter, in index order.
    pub const ALL: [Stat; Stat::COUNT as usize] = [
        Stat::CandidateTcp,
        Stat::CandidateUdp,
        Stat::CandidateIcmp,
        Stat::CandidateIcmpv6,
        Stat::CandidateOther,
        Stat::NewTuples,
        Stat::InsertFailed,
        Stat::SkipNotIp,
        Stat::SkipMalformed,
        Stat::SkipFragment,
        Stat::SkipHeaderChain,
        Stat::SkipMulticast,
        Stat::SkipTcpNotSyn,
        Stat::SkipIcmpNotRequest,
        Stat::SkipOutbound,
        Stat::SkipNotLocal,
        Stat::SkipIgnoredPort,
        Stat::SkipIgnoredNet,
        Stat::SkipUdpReply,
        Stat::UdpFlowsSeen,
        Stat::Drained,
        Stat::UdpFlowsExpired,
    ];

    /// Number of counters (entries of `STATS`).
    pub const COUNT: u32 = Stat::UdpFlowsExpired as u32 + 1;

    /// What the counter counts.
    pub const fn kind(self) -> StatKind {
        match self {
            Stat::CandidateTcp
            | Stat::CandidateUdp
            | Stat::CandidateIcmp
            | Stat::CandidateIcmpv6
            | Stat::CandidateOther => StatKind::Candidate,
            Stat::SkipNotIp
            | Stat::SkipMalformed
            | Stat::SkipFragment
            | Stat::SkipHeaderChain
            | Stat::SkipMulticast
            | Stat::SkipTcpNotSyn
            | Stat::SkipIcmpNotRequest
            | Stat::SkipOutbound
            | Stat::SkipNotLocal
            | Stat::SkipIgnoredPort
            | Stat::SkipIgnoredNet
            | Stat::SkipUdpReply => StatKind::Skipped,
            Stat::NewTuples
            | Stat::InsertFailed
            | Stat::UdpFlowsSeen
            | Stat::Drained
            | Stat::UdpFlowsExpired => StatKind::Event,
        }
    }

    /// Whether each packet moves this counter or another of its kind.
    pub const fn is_classification(self) -> bool {
        !matches!(self.kind(), StatKind::Event)
    }

    /// The name within its kind: the protocol of a candidate (`tcp`), the
    /// reason of a skip (`not_ip`), an event's whole name (`new_tuples`).
    /// The label value in metrics and logs.
    pub fn label(self) -> &'static str {
        let prefix = match self.kind() {
            StatKind::Candidate => "candidates_",
            StatKind::Skipped => "skipped_",
            StatKind::Event => "",
        };
        let name = self.name();
        name.strip_prefix(prefix).unwrap_or(name)
    }

    /// A short snake_case name, used in logs and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Stat::CandidateTcp => "candidates_tcp",
            Stat::CandidateUdp => "candidates_udp",
            Stat::CandidateIcmp => "candidates_icmp",
            Stat::CandidateIcmpv6 => "candidates_icmpv6",
            Stat::CandidateOther => "candidates_other",
            Stat::NewTuples => "new_tuples",
            Stat::InsertFailed => "insert_failed",
            Stat::SkipNotIp => "skipped_not_ip",
            Stat::SkipMalformed => "skipped_malformed",
            Stat::SkipFragment => "skipped_fragment",
            Stat::SkipHeaderChain => "skipped_header_chain",
            Stat::SkipMulticast => "skipped_multicast",
            Stat::SkipTcpNotSyn => "skipped_tcp_not_syn",
            Stat::SkipIcmpNotRequest => "skipped_icmp_not_request",
            Stat::SkipOutbound => "skipped_outbound",
            Stat::SkipNotLocal => "skipped_not_local",
            Stat::SkipIgnoredPort => "skipped_ignored_port",
            Stat::SkipIgnoredNet => "skipped_ignored_net",
            Stat::SkipUdpReply => "skipped_udp_reply",
            Stat::UdpFlowsSeen => "udp_flows_seen",
            Stat::Drained => "drained",
            Stat::UdpFlowsExpired => "udp_flows_expired",
        }
    }
}

/// What a [`Stat`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatKind {
    /// A packet that passed every rule: a row candidate, by protocol.
    Candidate,
    /// A packet that is not a row, by the first rule it broke.
    Skipped,
    /// Not a packet's classification: what the maps and flows did.
    Event,
}

/// Packets seen: the sum of the classification counters.
pub fn packets(stats: &[u64; Stat::COUNT as usize]) -> u64 {
    Stat::ALL
        .iter()
        .filter(|s| s.is_classification())
        .map(|s| stats[*s as usize])
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_the_classification_counters_only() {
        let mut stats = [0u64; Stat::COUNT as usize];
        stats[Stat::CandidateTcp as usize] = 1;
        stats[Stat::SkipNotIp as usize] = 2;
        stats[Stat::SkipUdpReply as usize] = 4;
        // Counted alongside a packet's classification, or not per packet at all.
        stats[Stat::NewTuples as usize] = 100;
        stats[Stat::InsertFailed as usize] = 100;
        stats[Stat::UdpFlowsSeen as usize] = 100;
        stats[Stat::Drained as usize] = 100;
        stats[Stat::UdpFlowsExpired as usize] = 100;
        assert_eq!(packets(&stats), 7);
    }

    #[test]
    fn kinds_and_labels_follow_the_names() {
        for stat in Stat::ALL {
            let name = stat.name();
            match stat.kind() {
                StatKind::Candidate => assert_eq!(format!("candidates_{}", stat.label()), name),
                StatKind::Skipped => assert_eq!(format!("skipped_{}", stat.label()), name),
                StatKind::Event => {
                    assert_eq!(stat.label(), name);
                    assert!(!name.starts_with("candidates_") && !name.starts_with("skipped_"));
                }
            }
        }
        assert_eq!(Stat::CandidateIcmpv6.label(), "icmpv6");
        assert_eq!(Stat::SkipNotIp.label(), "not_ip");
    }

    #[test]
    fn every_counter_is_listed_once_in_index_order() {
        for (index, stat) in Stat::ALL.iter().enumerate() {
            assert_eq!(*stat as usize, index, "{}", stat.name());
        }
    }
}
