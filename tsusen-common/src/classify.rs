//! Which packets are connection attempts: the rules, written once.
//!
//! This module is the spec. The XDP program (live traffic) and `tsusen replay`
//! (pcap files) both run exactly this code; a differential test runs a corpus
//! through the loaded XDP program and through the host build and compares.
//!
//! A packet yields a row when all of these hold:
//!
//! 1. Link layer: Ethernet II with up to two VLAN tags ([`ethernet`]). The host
//!    also reads Linux cooked and raw-IP captures and enters at rule 2.
//! 2. Network layer: IPv4 with a valid header, not a non-first fragment; or
//!    IPv6 with neither address IPv4-mapped (`::ffff:0:0/96` is never valid
//!    on the wire, RFC 4291 2.5.5.2: malformed), its extension headers walked
//!    up to [`MAX_IPV6_EXT_HEADERS`], not a non-first fragment ([`attempt`]).
//! 3. Direction, against the local networks L ([`admit`]): a source in L is
//!    outbound; with L non-empty the destination must be in L, or be a
//!    multicast or broadcast address that rule 4 let through; with L empty
//!    every packet is inbound.
//! 4. Not noise: multicast and broadcast destinations are skipped unless asked
//!    for ([`not_noise`]).
//! 5. Ignore lists: ignored destination port (TCP/UDP), source or destination in
//!    an ignored network ([`admit`]). Exact numbers and prefixes.
//! 6. Protocol ([`attempt`], and UDP replies in [`admit`]): TCP with SYN set and
//!    ACK, RST clear; UDP unless it replies to a flow this host sent on within
//!    the last [`UDP_FLOW_TIMEOUT_NS`] (an older flow is forgotten); ICMP
//!    echo, timestamp and address-mask requests; ICMPv6 echo requests; any other
//!    IP protocol, with no port.
//! 7. A truncated or malformed header is skipped, never misread.
//!
//! Rules 1, 2 and 6 need only the packet ([`ethernet`], [`attempt`]) and run
//! first, so most non-attempts cost no map lookup; rule 4 ([`not_noise`])
//! needs one setting; rules 3, 5 and the UDP reply check need the tables
//! ([`admit`]). A packet fails on the first rule it breaks, in that order;
//! that rule is its [`Skip`] reason.
//!
//! [`decide`] is the whole pipeline, rules and first-seen map together: the
//! XDP program and the host sensor both call it, over their own [`Today`]
//! (the kernel's maps and clock; a set and the packet's timestamp on the host).
//! A tuple already recorded today passed every rule then, so a repeated
//! attempt costs the parse and one lookup, and the tables are consulted only
//! for tuples not seen yet.
//!
//! Everything is `#[inline(always)]` and loop-free but for one bounded walk, so
//! the BPF verifier sees straight-line code with a bounds check before every
//! packet read.

use crate::{
    NS_PER_DAY,
    stats::Stat,
    tuple::{FlowKey, TupleKey, ipv4_mapped},
};

pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_AH: u8 = 51;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_DSTOPTS: u8 = 60;

/// IPv6 extension headers walked before giving up on the chain (rule 2).
pub const MAX_IPV6_EXT_HEADERS: usize = 6;

const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_TIMESTAMP_REQUEST: u8 = 13;
const ICMP_ADDRESS_MASK_REQUEST: u8 = 17;
const ICMPV6_ECHO_REQUEST: u8 = 128;

/// How long after this host's last packet on an outbound UDP flow an inbound
/// datagram on it is a reply (rule 6): 5 minutes, above Linux conntrack's
/// 120-180 s for UDP streams. Past it the flow is forgotten, so a scanner that
/// probed a service (and got an answer, which registers a flow too) is
/// recorded again when it comes back later from the same source port.
pub const UDP_FLOW_TIMEOUT_NS: u64 = 300 * 1_000_000_000;

/// The egress program moves a flow's time forward at most this often, so a
/// busy flow costs a lookup per packet and a write per second.
pub const UDP_FLOW_REFRESH_NS: u64 = 1_000_000_000;

/// Read access to a packet's bytes, bounds-checked.
///
/// The host implements it for byte slices; the XDP program for its context,
/// where the check is the `data + offset + N <= data_end` the verifier wants.
pub trait Packet {
    /// `N` bytes at `offset`, or `None` when they are not all in the packet.
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]>;
}

impl Packet for [u8] {
    #[inline]
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let end = offset.checked_add(N)?;
        self.get(offset..end)?.try_into().ok()
    }
}

/// The lookups rules 3, 5 and the UDP reply check need: maps in the kernel,
/// in-memory tables on the host. Addresses are IPv4-mapped IPv6.
pub trait Tables {
    /// Whether L, the set of local networks, has any entry.
    fn has_local(&self) -> bool;
    fn is_local(&self, ip: &[u8; 16]) -> bool;
    fn is_ignored_port(&self, port: u16) -> bool;
    fn is_ignored_net(&self, ip: &[u8; 16]) -> bool;
    /// When this host last sent on the outbound UDP flow with this (remote,
    /// local) pair (wall-clock ns), if it has.
    fn udp_flow_seen(&self, flow: &FlowKey) -> Option<u64>;
    /// The flow timed out: forget it, and count it (`Stat::UdpFlowsExpired`).
    fn expire_udp_flow(&mut self, flow: &FlowKey);
}

/// Where the tuples recorded today live, the clock, the counters, and the
/// one setting rule 4 needs: what [`decide`] needs beyond the [`Tables`].
/// The XDP program implements it over its maps (infallible), the host over a
/// set or the day store.
pub trait Today: Tables {
    type Error;
    /// Whether multicast and broadcast destinations count (rule 4). Called
    /// once the packet is an attempt and before every other method here, so
    /// the kernel reads its settings map only for attempts.
    fn include_multicast(&mut self) -> bool;
    /// Wall-clock nanoseconds: when this packet was seen.
    fn now_ns(&mut self) -> u64;
    /// Whether this tuple (its day included) was recorded already.
    fn contains(&mut self, key: &TupleKey) -> Result<bool, Self::Error>;
    /// Record a new tuple first seen at `wall_ns`, unless it is there already.
    fn insert(&mut self, key: &TupleKey, wall_ns: u64) -> Result<Insert, Self::Error>;
    /// Move one counter.
    fn count(&mut self, stat: Stat);
}

/// What became of an insert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    /// The tuple is recorded with this time.
    New,
    /// Another CPU recorded the same tuple first; its earlier time stays.
    Raced,
    /// The map refused it (full beyond what eviction frees).
    Failed,
}

/// What became of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not an attempt, for this reason.
    Skipped(Skip),
    /// An attempt whose tuple was already recorded that day.
    Repeat(TupleKey),
    /// A new tuple: a row.
    New(TupleKey),
    /// A new tuple the map refused (`Stat::InsertFailed`).
    Failed(TupleKey),
}

/// The UTC day of a wall-clock time, as keys carry it (until 2149-06-06;
/// the host refuses later times before they get here).
#[inline(always)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "the key's day is a u16 that wraps after 2149-06-06, as documented"
)]
pub const fn day_of(wall_ns: u64) -> u16 {
    (wall_ns / NS_PER_DAY) as u16
}

/// The whole decision for an inbound packet whose network header `network`
/// found (rule 1, from the link layer): the rules in order, the lookup in
/// today's tuples, the insert, and the one counter each packet moves (plus
/// `NewTuples`, `InsertFailed`, `UdpFlowsExpired` when they happen).
#[inline(always)]
pub fn decide<P: Packet + ?Sized, T: Today + ?Sized>(
    pkt: &P,
    network: Result<(usize, u16), Skip>,
    today: &mut T,
) -> Result<Verdict, T::Error> {
    let attempt = match network.and_then(|(offset, ethertype)| attempt(pkt, offset, ethertype)) {
        Ok(attempt) => attempt,
        Err(skip) => return Ok(skipped(today, skip)),
    };
    // Only attempts get this far: the rest touch no map but the counters.
    if let Err(skip) = not_noise(&attempt, today.include_multicast()) {
        return Ok(skipped(today, skip));
    }
    let wall_ns = today.now_ns();
    let key = attempt.key(day_of(wall_ns));
    // Already recorded today: it passed every rule then.
    if today.contains(&key)? {
        today.count(attempt.candidate_stat());
        return Ok(Verdict::Repeat(key));
    }
    if let Err(skip) = admit(&attempt, today, wall_ns) {
        return Ok(skipped(today, skip));
    }
    today.count(attempt.candidate_stat());
    Ok(match today.insert(&key, wall_ns)? {
        Insert::New => {
            today.count(Stat::NewTuples);
            Verdict::New(key)
        }
        Insert::Raced => Verdict::Repeat(key),
        Insert::Failed => {
            today.count(Stat::InsertFailed);
            Verdict::Failed(key)
        }
    })
}

#[inline(always)]
fn skipped<T: Today + ?Sized>(today: &mut T, skip: Skip) -> Verdict {
    today.count(skip.stat());
    Verdict::Skipped(skip)
}

/// Why a packet is not a row: the first rule it broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Skip {
    /// Rule 1/2: neither IPv4 nor IPv6.
    NotIp,
    /// Rule 7: a header is cut short or invalid (rule 2: an IPv6 address
    /// that is IPv4-mapped).
    Malformed,
    /// Rule 2: a non-first fragment (no transport header).
    Fragment,
    /// Rule 2: more IPv6 extension headers than we walk.
    HeaderChain,
    /// Rule 4: multicast or broadcast destination.
    Multicast,
    /// Rule 6: TCP without SYN, or with ACK or RST.
    TcpNotSyn,
    /// Rule 6: an ICMP/ICMPv6 message that is not a request.
    IcmpNotRequest,
    /// Rule 3: the source is local.
    Outbound,
    /// Rule 3: the destination is not local (and L is not empty).
    NotLocal,
    /// Rule 5.
    IgnoredPort,
    /// Rule 5.
    IgnoredNet,
    /// Rule 6: a reply to an outbound UDP flow.
    UdpReply,
}

impl Skip {
    /// The counter this reason increments.
    #[inline(always)]
    pub const fn stat(self) -> Stat {
        match self {
            Skip::NotIp => Stat::SkipNotIp,
            Skip::Malformed => Stat::SkipMalformed,
            Skip::Fragment => Stat::SkipFragment,
            Skip::HeaderChain => Stat::SkipHeaderChain,
            Skip::Multicast => Stat::SkipMulticast,
            Skip::TcpNotSyn => Stat::SkipTcpNotSyn,
            Skip::IcmpNotRequest => Stat::SkipIcmpNotRequest,
            Skip::Outbound => Stat::SkipOutbound,
            Skip::NotLocal => Stat::SkipNotLocal,
            Skip::IgnoredPort => Stat::SkipIgnoredPort,
            Skip::IgnoredNet => Stat::SkipIgnoredNet,
            Skip::UdpReply => Stat::SkipUdpReply,
        }
    }
}

/// A connection attempt as the headers describe it (rules 1, 2, 4, 6 passed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Attempt {
    pub proto: u8,
    pub src_ip: [u8; 16],
    pub dst_ip: [u8; 16],
    /// TCP and UDP only; 0 otherwise.
    pub src_port: u16,
    pub dst_port: u16,
}

impl Attempt {
    /// The key this attempt is counted under on `day`.
    #[inline(always)]
    pub fn key(&self, day: u16) -> TupleKey {
        TupleKey {
            src_ip: self.src_ip,
            dst_ip: self.dst_ip,
            dst_port: self.dst_port,
            day,
            proto: self.proto,
            _pad: 0,
        }
    }

    /// The outbound flow this packet would be a reply to.
    #[inline(always)]
    pub fn reply_to(&self) -> FlowKey {
        FlowKey {
            remote_ip: self.src_ip,
            local_ip: self.dst_ip,
            remote_port: self.src_port,
            local_port: self.dst_port,
        }
    }

    /// The counter of a candidate of this protocol.
    #[inline(always)]
    pub const fn candidate_stat(&self) -> Stat {
        candidate_stat(self.proto)
    }
}

/// The counter of a candidate of protocol `proto`.
#[inline(always)]
pub const fn candidate_stat(proto: u8) -> Stat {
    match proto {
        IPPROTO_TCP => Stat::CandidateTcp,
        IPPROTO_UDP => Stat::CandidateUdp,
        IPPROTO_ICMP => Stat::CandidateIcmp,
        IPPROTO_ICMPV6 => Stat::CandidateIcmpv6,
        _ => Stat::CandidateOther,
    }
}

/// Whether `proto` has ports (and so a `dst_port` column other than `-`).
#[inline(always)]
pub const fn has_ports(proto: u8) -> bool {
    proto == IPPROTO_TCP || proto == IPPROTO_UDP
}

#[inline(always)]
const fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

#[inline(always)]
const fn is_vlan(ethertype: u16) -> bool {
    ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD
}

/// Rule 1: an Ethernet II frame with up to two VLAN tags.
/// Returns the offset of the network header and its ethertype.
#[inline(always)]
pub fn ethernet<P: Packet + ?Sized>(pkt: &P) -> Result<(usize, u16), Skip> {
    link(pkt, 12, 14)
}

/// Rule 1 for any link header that ends in an ethertype (Ethernet, Linux
/// cooked capture): the ethertype at `ethertype_at`, the payload at
/// `payload_at`, then up to two VLAN tags. Returns the offset of the network
/// header and its ethertype.
#[inline(always)]
pub fn link<P: Packet + ?Sized>(
    pkt: &P,
    ethertype_at: usize,
    payload_at: usize,
) -> Result<(usize, u16), Skip> {
    let mut ethertype = be16(pkt.bytes(ethertype_at).ok_or(Skip::Malformed)?);
    let mut offset = payload_at;
    // Two tags at most (802.1ad outer, 802.1Q inner): unrolled, not a loop.
    // A tag is 2 bytes of TCI, then the next ethertype.
    if is_vlan(ethertype) {
        ethertype = be16(pkt.bytes(offset + 2).ok_or(Skip::Malformed)?);
        offset += 4;
        if is_vlan(ethertype) {
            ethertype = be16(pkt.bytes(offset + 2).ok_or(Skip::Malformed)?);
            offset += 4;
        }
    }
    Ok((offset, ethertype))
}

/// Rules 2 and 6 (but for UDP replies): the attempt a network-layer packet
/// at `offset` makes, if any. Addresses are read only once the protocol rule
/// passed, so the common non-attempt (a TCP ACK) costs the least.
#[inline(always)]
pub fn attempt<P: Packet + ?Sized>(
    pkt: &P,
    offset: usize,
    ethertype: u16,
) -> Result<Attempt, Skip> {
    let ip = match ethertype {
        ETH_P_IPV4 => ipv4(pkt, offset)?,
        ETH_P_IPV6 => ipv6(pkt, offset)?,
        _ => return Err(Skip::NotIp),
    };
    let (src_port, dst_port) = transport(pkt, &ip)?;
    let (src_ip, dst_ip) = addresses(pkt, &ip)?;
    Ok(Attempt {
        proto: ip.proto,
        src_ip,
        dst_ip,
        src_port,
        dst_port,
    })
}

/// Rule 4: multicast and broadcast destinations are noise, unless asked for.
#[inline(always)]
pub fn not_noise(a: &Attempt, include_multicast: bool) -> Result<(), Skip> {
    if !include_multicast && is_multicast_or_broadcast(&a.dst_ip) {
        return Err(Skip::Multicast);
    }
    Ok(())
}

/// Rules 3, 5 and the UDP half of rule 6: what the tables say of an attempt
/// that passed rule 4 ([`not_noise`]), seen at `now_ns` (wall clock).
#[inline(always)]
pub fn admit<T: Tables + ?Sized>(a: &Attempt, tables: &mut T, now_ns: u64) -> Result<(), Skip> {
    if tables.has_local() {
        if tables.is_local(&a.src_ip) {
            return Err(Skip::Outbound);
        }
        // A group or broadcast address is never local; it got past rule 4
        // only because `--include-multicast` asked for it.
        if !tables.is_local(&a.dst_ip) && !is_multicast_or_broadcast(&a.dst_ip) {
            return Err(Skip::NotLocal);
        }
    }
    if has_ports(a.proto) && tables.is_ignored_port(a.dst_port) {
        return Err(Skip::IgnoredPort);
    }
    if tables.is_ignored_net(&a.src_ip) || tables.is_ignored_net(&a.dst_ip) {
        return Err(Skip::IgnoredNet);
    }
    if a.proto == IPPROTO_UDP {
        let flow = a.reply_to();
        if let Some(seen) = tables.udp_flow_seen(&flow) {
            // A clock set back makes `seen` later than now: still a reply.
            if now_ns.saturating_sub(seen) <= UDP_FLOW_TIMEOUT_NS {
                return Err(Skip::UdpReply);
            }
            tables.expire_udp_flow(&flow);
        }
    }
    Ok(())
}

/// The flow an outbound UDP packet opens: replies to it are not attempts.
/// The TC egress program registers it; `tsusen replay` does the same for the
/// outbound packets of a capture.
#[inline(always)]
pub fn outbound_udp_flow<P: Packet + ?Sized>(
    pkt: &P,
    offset: usize,
    ethertype: u16,
) -> Option<FlowKey> {
    let ip = match ethertype {
        ETH_P_IPV4 => ipv4(pkt, offset).ok()?,
        ETH_P_IPV6 => ipv6(pkt, offset).ok()?,
        _ => return None,
    };
    if ip.proto != IPPROTO_UDP {
        return None;
    }
    let udp: [u8; 8] = pkt.bytes(ip.l4)?;
    let (src_ip, dst_ip) = addresses(pkt, &ip).ok()?;
    Some(FlowKey {
        remote_ip: dst_ip,
        local_ip: src_ip,
        remote_port: be16([udp[2], udp[3]]),
        local_port: be16([udp[0], udp[1]]),
    })
}

/// Rule 4: 224.0.0.0/4, 255.255.255.255 and ff00::/8.
#[inline(always)]
pub fn is_multicast_or_broadcast(ip: &[u8; 16]) -> bool {
    if ip[0] == 0xff {
        return true; // ff00::/8
    }
    let v4 = ip[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
    v4 && (ip[12] & 0xf0 == 0xe0 || ip[12..] == [0xff; 4])
}

/// The network layer, parsed: the protocol, where the addresses are and where
/// the transport header starts.
struct Ip {
    proto: u8,
    /// Offset of the IP header (the addresses' place follows from `v6`).
    offset: usize,
    v6: bool,
    l4: usize,
}

/// The source and destination addresses, IPv4-mapped for IPv4.
#[inline(always)]
fn addresses<P: Packet + ?Sized>(pkt: &P, ip: &Ip) -> Result<([u8; 16], [u8; 16]), Skip> {
    // Where the IPv4 and IPv6 paths meet, each address is one 128-bit value:
    // as 16 bytes, LLVM would carry (and spill) every byte separately in the
    // XDP program. Native order both ways, so the bytes come back unchanged.
    let (src, dst) = if ip.v6 {
        let src: [u8; 16] = pkt.bytes(ip.offset + 8).ok_or(Skip::Malformed)?;
        let dst: [u8; 16] = pkt.bytes(ip.offset + 24).ok_or(Skip::Malformed)?;
        (u128::from_ne_bytes(src), u128::from_ne_bytes(dst))
    } else {
        let a: [u8; 8] = pkt.bytes(ip.offset + 12).ok_or(Skip::Malformed)?;
        (
            u128::from_ne_bytes(ipv4_mapped([a[0], a[1], a[2], a[3]])),
            u128::from_ne_bytes(ipv4_mapped([a[4], a[5], a[6], a[7]])),
        )
    };
    Ok((src.to_ne_bytes(), dst.to_ne_bytes()))
}

/// Rule 2 for IPv4: version 4, IHL >= 5, the whole header (options included)
/// in the packet, not a non-first fragment.
#[inline(always)]
fn ipv4<P: Packet + ?Sized>(pkt: &P, offset: usize) -> Result<Ip, Skip> {
    let h: [u8; 20] = pkt.bytes(offset).ok_or(Skip::Malformed)?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if h[0] >> 4 != 4 || ihl < 20 {
        return Err(Skip::Malformed);
    }
    // Options: their last byte must be in the packet too.
    if ihl > 20 && pkt.bytes::<1>(offset + ihl - 1).is_none() {
        return Err(Skip::Malformed);
    }
    if be16([h[6], h[7]]) & 0x1fff != 0 {
        return Err(Skip::Fragment);
    }
    Ok(Ip {
        proto: h[9],
        offset,
        v6: false,
        l4: offset + ihl,
    })
}

/// Rule 2 for IPv6: neither address IPv4-mapped; walk hop-by-hop, routing,
/// destination options, fragment (offset 0 only) and AH headers, at most
/// [`MAX_IPV6_EXT_HEADERS`] of them.
#[inline(always)]
fn ipv6<P: Packet + ?Sized>(pkt: &P, offset: usize) -> Result<Ip, Skip> {
    let h: [u8; 40] = pkt.bytes(offset).ok_or(Skip::Malformed)?;
    if h[0] >> 4 != 6 {
        return Err(Skip::Malformed);
    }
    // Keys store IPv4 as ::ffff:a.b.c.d: such an IPv6 address would pass for
    // an IPv4 attempt, and it never appears on the wire (RFC 4291 2.5.5.2).
    if is_v4_mapped(&h[8..20]) || is_v4_mapped(&h[24..36]) {
        return Err(Skip::Malformed);
    }
    let mut next = h[6];
    let mut l4 = offset + 40;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let len = match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                let e: [u8; 2] = pkt.bytes(l4).ok_or(Skip::Malformed)?;
                next = e[0];
                (usize::from(e[1]) + 1) * 8
            }
            IPPROTO_FRAGMENT => {
                let e: [u8; 4] = pkt.bytes(l4).ok_or(Skip::Malformed)?;
                if be16([e[2], e[3]]) >> 3 != 0 {
                    return Err(Skip::Fragment);
                }
                next = e[0];
                8
            }
            IPPROTO_AH => {
                let e: [u8; 2] = pkt.bytes(l4).ok_or(Skip::Malformed)?;
                next = e[0];
                (usize::from(e[1]) + 2) * 4
            }
            _ => break,
        };
        l4 += len;
    }
    if is_ipv6_ext(next) {
        return Err(Skip::HeaderChain);
    }
    Ok(Ip {
        proto: next,
        offset,
        v6: true,
        l4,
    })
}

/// Whether the first 12 bytes of an IPv6 address are the `::ffff:0:0/96` prefix.
#[inline(always)]
fn is_v4_mapped(first12: &[u8]) -> bool {
    first12 == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
}

#[inline(always)]
const fn is_ipv6_ext(next: u8) -> bool {
    matches!(
        next,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_FRAGMENT | IPPROTO_AH
    )
}

/// Rule 6 (the packet half) and rule 7 for the transport header: the ports
/// of an attempt (0, 0 for protocols without them).
#[inline(always)]
fn transport<P: Packet + ?Sized>(pkt: &P, ip: &Ip) -> Result<(u16, u16), Skip> {
    match ip.proto {
        IPPROTO_TCP => {
            let tcp: [u8; 20] = pkt.bytes(ip.l4).ok_or(Skip::Malformed)?;
            let flags = tcp[13];
            // SYN set, ACK and RST clear; ECE, CWR, FIN, PSH, URG don't matter.
            if flags & (TCP_SYN | TCP_ACK | TCP_RST) != TCP_SYN {
                return Err(Skip::TcpNotSyn);
            }
            Ok((be16([tcp[0], tcp[1]]), be16([tcp[2], tcp[3]])))
        }
        IPPROTO_UDP => {
            let udp: [u8; 8] = pkt.bytes(ip.l4).ok_or(Skip::Malformed)?;
            Ok((be16([udp[0], udp[1]]), be16([udp[2], udp[3]])))
        }
        IPPROTO_ICMP => {
            let icmp: [u8; 8] = pkt.bytes(ip.l4).ok_or(Skip::Malformed)?;
            match icmp[0] {
                ICMP_ECHO_REQUEST | ICMP_TIMESTAMP_REQUEST | ICMP_ADDRESS_MASK_REQUEST => {
                    Ok((0, 0))
                }
                _ => Err(Skip::IcmpNotRequest),
            }
        }
        IPPROTO_ICMPV6 => {
            let icmp: [u8; 8] = pkt.bytes(ip.l4).ok_or(Skip::Malformed)?;
            if icmp[0] == ICMPV6_ECHO_REQUEST {
                Ok((0, 0))
            } else {
                Err(Skip::IcmpNotRequest)
            }
        }
        _ => Ok((0, 0)),
    }
}
