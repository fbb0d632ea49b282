//! Capture: the kernel half of tsusen.
//!
//! `tsusen` (XDP, ingress) applies the rules of `tsusen_common::classify` to
//! every packet and records each new (protocol, port, source, destination, day)
//! tuple with the time it was first seen. `tsusen_egress` (TC clsact egress)
//! registers outbound UDP flows so that their replies are not counted.
//! Both always let the packet through: the sensor observes, it never drops.
//!
//! Kernel requirements (the oldest kernel each feature needs):
//! XDP 4.8, TC clsact 4.5 with direct packet access 4.7, LRU hash 4.10,
//! LPM trie 4.11, per-CPU array 4.6, bpf_ktime_get_ns 4.1, bpf_map_delete_elem
//! 3.19 (expired UDP flows), bounded loops 5.3 (the IPv6 extension-header
//! walk, if LLVM does not unroll it).
#![no_std]
#![no_main]
// Every helper is inlined into the program: the verifier follows packet
// bounds through inlined code, and BPF-to-BPF calls need 4.16+.
#![expect(clippy::inline_always, reason = "the BPF program inlines every helper")]

use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_OK, xdp_action},
    helpers::bpf_ktime_get_ns,
    macros::{classifier, map, xdp},
    maps::{Array, LpmTrie, LruHashMap, PerCpuArray, lpm_trie::Key},
    programs::{TcContext, XdpContext},
};
use tsusen_common::{
    Config, DEFAULT_FIRST_SEEN_ENTRIES, FirstSeen, FlowKey, IGNORED_PORT_WORDS, NET_ENTRIES,
    NS_PER_DAY, Stat, TupleKey, UDP_FLOW_ENTRIES,
    classify::{
        Packet, Tables, UDP_FLOW_REFRESH_NS, admit, attempt, ethernet, not_noise, outbound_udp_flow,
    },
    config::flags,
};

/// First-seen time of each tuple not yet drained by userspace.
#[map]
static FIRST_SEEN: LruHashMap<TupleKey, FirstSeen> =
    LruHashMap::with_max_entries(DEFAULT_FIRST_SEEN_ENTRIES, 0);

/// Counters, indexed by `Stat`.
#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Stat::COUNT, 0);

/// One entry: the settings userspace hands us.
#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);

/// L, the local networks (value unused).
#[map]
static LOCAL_NETS: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(NET_ENTRIES, 0);

/// Networks whose packets are never rows (value unused).
#[map]
static IGNORED_NETS: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(NET_ENTRIES, 0);

/// A bitmap of ignored destination ports: bit `p % 64` of word `p / 64`.
#[map]
static IGNORED_PORTS: Array<u64> = Array::with_max_entries(IGNORED_PORT_WORDS, 0);

/// Outbound UDP flows (value: wall-clock ns of the latest outbound packet,
/// to within `UDP_FLOW_REFRESH_NS`). Replies count within the timeout only.
#[map]
static UDP_FLOWS: LruHashMap<FlowKey, u64> = LruHashMap::with_max_entries(UDP_FLOW_ENTRIES, 0);

const EEXIST: i32 = 17;

#[xdp]
pub(crate) fn tsusen(ctx: XdpContext) -> u32 {
    record(&Frame::new(ctx.data(), ctx.data_end()));
    xdp_action::XDP_PASS
}

/// An empty program: the floor `cargo xtask bench` measures the sensor against
/// (BPF_PROG_TEST_RUN's own cost). Never attached.
#[xdp]
pub(crate) fn tsusen_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[classifier]
pub(crate) fn tsusen_egress(ctx: TcContext) -> i32 {
    register_outbound(&Frame::new(ctx.data(), ctx.data_end()));
    TC_ACT_OK
}

/// Classify one inbound packet and record it if it is a new attempt.
#[inline(always)]
fn record(pkt: &Frame) {
    let found = ethernet(pkt).and_then(|(offset, ethertype)| attempt(pkt, offset, ethertype));
    let attempt = match found {
        Ok(attempt) => attempt,
        Err(skip) => return count(skip.stat()),
    };
    // Only attempts get this far: the rest never touch a map but STATS.
    let Some(config) = CONFIG.get(0) else {
        return;
    };
    if let Err(skip) = not_noise(&attempt, config.has(flags::INCLUDE_MULTICAST)) {
        return count(skip.stat());
    }

    let wall_ns = now_wall_ns(config);
    let key = attempt.key((wall_ns / NS_PER_DAY) as u16);
    // Already recorded today: it passed every rule then. This keeps a repeated
    // attempt at one hash lookup.
    if FIRST_SEEN.get_ptr(key).is_some() {
        return count(attempt.candidate_stat());
    }
    if let Err(skip) = admit(&attempt, &mut KernelTables { config }, wall_ns) {
        return count(skip.stat());
    }
    count(attempt.candidate_stat());
    // BPF_NOEXIST: when two CPUs race on the same new tuple, one wins and the
    // earlier time stays.
    match FIRST_SEEN.insert(key, FirstSeen { wall_ns }, u64::from(BPF_NOEXIST)) {
        Ok(()) => count(Stat::NewTuples),
        Err(err) if err == -EEXIST => {}
        Err(_) => count(Stat::InsertFailed),
    }
}

/// Remember an outbound UDP flow so its replies are not counted as attempts.
#[inline(always)]
fn register_outbound(pkt: &Frame) {
    let Ok((offset, ethertype)) = ethernet(pkt) else {
        return;
    };
    let Some(flow) = outbound_udp_flow(pkt, offset, ethertype) else {
        return;
    };
    let now = CONFIG.get(0).map_or(0, now_wall_ns);
    // Look first: an update per packet would churn the LRU for busy flows.
    // A known flow's time moves forward in place, at most once a second.
    match UDP_FLOWS.get_ptr_mut(flow) {
        Some(seen) => {
            // SAFETY: a valid map value; a racing CPU writes a time as recent.
            unsafe {
                if now.wrapping_sub(*seen) > UDP_FLOW_REFRESH_NS {
                    *seen = now;
                }
            }
        }
        None => {
            if UDP_FLOWS.insert(flow, now, 0).is_ok() {
                count(Stat::UdpFlowsSeen);
            }
        }
    }
}

#[inline(always)]
fn now_wall_ns(config: &Config) -> u64 {
    // SAFETY: a helper with no arguments.
    unsafe { bpf_ktime_get_ns() }.wrapping_add(config.wall_offset_ns)
}

#[inline(always)]
fn count(stat: Stat) {
    if let Some(counter) = STATS.get_ptr_mut(stat as u32) {
        // SAFETY: per-CPU slot: no other writer while this program runs here.
        unsafe { *counter += 1 };
    }
}

/// The packet between `data` and `data_end`.
struct Frame {
    start: usize,
    end: usize,
}

impl Frame {
    #[inline(always)]
    fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }
}

impl Packet for Frame {
    #[inline(always)]
    fn bytes<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        // The check the verifier needs before it allows the read.
        if self.start + offset + N > self.end {
            return None;
        }
        // SAFETY: in bounds, checked above; [u8; N] has no alignment needs.
        Some(unsafe { core::ptr::read_unaligned((self.start + offset) as *const [u8; N]) })
    }
}

/// The maps, behind the lookups the rules need. The config flags say which
/// maps are empty, so their lookups are skipped.
struct KernelTables<'a> {
    config: &'a Config,
}

impl Tables for KernelTables<'_> {
    #[inline(always)]
    fn has_local(&self) -> bool {
        self.config.has(flags::HAS_LOCAL_NETS)
    }

    #[inline(always)]
    fn is_local(&self, ip: &[u8; 16]) -> bool {
        LOCAL_NETS.get(Key::new(128, *ip)).is_some()
    }

    #[inline(always)]
    fn is_ignored_port(&self, port: u16) -> bool {
        self.config.has(flags::HAS_IGNORED_PORTS)
            && IGNORED_PORTS
                .get(u32::from(port >> 6))
                .is_some_and(|word| (word >> (port & 63)) & 1 == 1)
    }

    #[inline(always)]
    fn is_ignored_net(&self, ip: &[u8; 16]) -> bool {
        self.config.has(flags::HAS_IGNORED_NETS) && IGNORED_NETS.get(Key::new(128, *ip)).is_some()
    }

    #[inline(always)]
    fn udp_flow_seen(&self, flow: &FlowKey) -> Option<u64> {
        // SAFETY: a valid map value, read once.
        UDP_FLOWS.get_ptr(flow).map(|seen| unsafe { *seen })
    }

    #[inline(always)]
    fn expire_udp_flow(&mut self, flow: &FlowKey) {
        // Gone already (another CPU, LRU) is as good.
        let _ = UDP_FLOWS.remove(flow);
        count(Stat::UdpFlowsExpired);
    }
}

// On the host (clippy, the build dependency) std brings its own.
#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
