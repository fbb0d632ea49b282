//! Capture: the kernel half of tsusen.
//!
//! `tsusen` (XDP, ingress) applies the rules of `tsusen_common::classify` to
//! every packet and records each new (protocol, port, source, destination, day)
//! tuple with the time it was first seen. `tsusen_egress` (TC clsact egress)
//! registers outbound UDP flows so that their replies are not counted.
//! Both always let the packet through: the sensor observes, it never drops.
//!
//! Kernel requirements (the oldest kernel each feature needs):
//! XDP 4.8, TC clsact 4.5 with direct packet access 4.7, LRU hash 4.10
//! (`BPF_F_NO_COMMON_LRU` too, for a benchmark map), LPM trie 4.11, per-CPU
//! array 4.6 (counters, the RECENT cache), bpf_ktime_get_coarse_ns 5.11 (else
//! bpf_ktime_get_ns 4.1, chosen at load through `COARSE_CLOCK`), global data
//! (`.rodata`) 5.2, bpf_map_delete_elem 3.19 (expired UDP flows), bounded
//! loops 5.3 (the IPv6 extension-header walk, if LLVM does not unroll it).
#![no_std]
#![no_main]
// Every helper is inlined into the program: the verifier follows packet
// bounds through inlined code, and BPF-to-BPF calls need 4.16+.
#![expect(clippy::inline_always, reason = "the BPF program inlines every helper")]
#![expect(
    clippy::needless_pass_by_value,
    reason = "aya's program macros hand each program its context by value"
)]

use aya_ebpf::{
    Global,
    bindings::{BPF_F_NO_COMMON_LRU, BPF_NOEXIST, TC_ACT_OK, xdp_action},
    helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    macros::{classifier, map, xdp},
    maps::{Array, LpmTrie, LruHashMap, PerCpuArray, lpm_trie::Key},
    programs::{TcContext, XdpContext},
};
use tsusen_common::{
    Config, DEFAULT_FIRST_SEEN_ENTRIES, FirstSeen, FlowKey, IGNORED_PORT_WORDS, NET_ENTRIES, Stat,
    TupleKey, UDP_FLOW_ENTRIES,
    classify::{
        Insert, Packet, Tables, Today, UDP_FLOW_REFRESH_NS, decide, ethernet, outbound_udp_flow,
    },
    config::flags,
    recent,
    tuple::ipv4_mapped,
};

/// First-seen time of each tuple not yet drained by userspace.
#[map]
static FIRST_SEEN: LruHashMap<TupleKey, FirstSeen> =
    LruHashMap::with_max_entries(DEFAULT_FIRST_SEEN_ENTRIES, 0);

/// A per-CPU direct-mapped cache of tuples recorded today, in front of
/// FIRST_SEEN (slots and hash: `tsusen_common::recent`): a repeated attempt
/// whose whole key (its day included) is in its slot skips the LRU lookup
/// (hashing 38 bytes, the bucket walk, the compare). A slot is filled when
/// FIRST_SEEN has the key or has just taken it, and what it says stays true
/// all day whatever becomes of the map entry: a drained entry's row is on
/// disk, so the tuple is recorded today all the same; yesterday's key never
/// equals today's, so midnight starts afresh. An all-zero slot matches no
/// key (day 0 is 1970-01-01). An entry the map evicted before a drain read
/// it is counted lost (`evicted`); without the cache the tuple's next attempt
/// would record it again, with a later time; with it, not while its slot
/// holds it. The map evicts only while new tuples outrun the drains, and
/// each of those takes a slot, so slots turn over within a few hundred new
/// tuples: nothing more to count.
#[map]
static RECENT: PerCpuArray<[RecentKey; recent::SLOTS]> = PerCpuArray::with_max_entries(1, 0);

/// A RECENT slot: the key, 8-aligned so comparing it takes word loads.
#[repr(C, align(8))]
struct RecentKey(TupleKey);

const _: () = assert!(core::mem::size_of::<RecentKey>() == recent::SLOT_BYTES);

/// The benchmark's floor for a new tuple: what the kernel's own LRU insert
/// costs, with keys and values of FIRST_SEEN's sizes, in a map that
/// `cargo xtask bench` sizes as FIRST_SEEN (`tsusen_insert_floor`). One entry
/// unless the bench asks for more, so a sensor does not pay for it.
#[map]
static INSERT_FLOOR: LruHashMap<TupleKey, FirstSeen> = LruHashMap::with_max_entries(1, 0);

/// The same with per-CPU LRU lists (`BPF_F_NO_COMMON_LRU`, 4.10), a figure
/// the README compares (`tsusen_insert_floor_percpu`).
#[map]
static INSERT_FLOOR_PERCPU: LruHashMap<TupleKey, FirstSeen> =
    LruHashMap::with_max_entries(1, BPF_F_NO_COMMON_LRU);

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

/// 1: read the coarse clock (`bpf_ktime_get_coarse_ns`, 5.11+), 0: the precise
/// one (`bpf_ktime_get_ns`). The loader sets 0 on kernels without the coarse
/// helper; the value is a constant to the verifier (a frozen `.rodata`), which
/// drops the branch not taken, so older kernels never see the unknown helper.
///
/// The coarse clock is the monotonic clock as of the last tick (1-10 ms
/// behind, by CONFIG_HZ), read in about 1 ns where the precise one costs
/// 25-35 ns in a VM. Day files keep whole seconds, and a packet's day and
/// first-seen time come from the same reading, so they always agree.
#[unsafe(no_mangle)]
static COARSE_CLOCK: Global<u8> = Global::new(1);

#[xdp]
pub(crate) fn tsusen(ctx: XdpContext) -> u32 {
    record(&Frame::new(ctx.data(), ctx.data_end()));
    xdp_action::XDP_PASS
}

/// The benchmark's new-tuple case: [`tsusen`], then the IPv4 source address
/// (an untagged frame's bytes 26..30) counted up by one, so each run of a
/// BPF_PROG_TEST_RUN repeat (which reuses the packet buffer) is a new tuple.
/// Never attached.
#[xdp]
pub(crate) fn tsusen_fresh(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    record(&Frame::new(start, end));
    if start + 30 <= end {
        let src = (start + 26) as *mut [u8; 4];
        // SAFETY: in bounds, checked above; [u8; 4] has no alignment needs.
        unsafe { *src = u32::from_be_bytes(*src).wrapping_add(1).to_be_bytes() };
    }
    xdp_action::XDP_PASS
}

/// The benchmark's floor for [`tsusen_fresh`]: only the insert of a new key
/// into an LRU map of FIRST_SEEN's size (no parse, no rules, no clock), the
/// key made of the frame's IPv4 addresses and ports, whose source is then
/// counted up as in `tsusen_fresh`. Never attached.
#[xdp]
pub(crate) fn tsusen_insert_floor(ctx: XdpContext) -> u32 {
    insert_floor(&ctx, &INSERT_FLOOR)
}

/// [`tsusen_insert_floor`] into a map with per-CPU LRU lists. Never attached.
#[xdp]
pub(crate) fn tsusen_insert_floor_percpu(ctx: XdpContext) -> u32 {
    insert_floor(&ctx, &INSERT_FLOOR_PERCPU)
}

#[inline(always)]
fn insert_floor(ctx: &XdpContext, map: &LruHashMap<TupleKey, FirstSeen>) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    // An untagged IPv4 frame without options: addresses at 26..34, ports 34..38.
    if start + 38 <= end {
        // SAFETY: in bounds, checked above; [u8; 12] has no alignment needs.
        let b = unsafe { *((start + 26) as *const [u8; 12]) };
        let key = TupleKey {
            src_ip: ipv4_mapped([b[0], b[1], b[2], b[3]]),
            dst_ip: ipv4_mapped([b[4], b[5], b[6], b[7]]),
            dst_port: u16::from_be_bytes([b[10], b[11]]),
            day: 1,
            proto: 6,
            _pad: 0,
        };
        let _ = map.insert(key, FirstSeen { wall_ns: 1 }, u64::from(BPF_NOEXIST));
        let src = (start + 26) as *mut [u8; 4];
        // SAFETY: in bounds, checked above.
        unsafe { *src = u32::from_be_bytes(*src).wrapping_add(1).to_be_bytes() };
    }
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

/// Classify one inbound packet and record it if it is a new attempt: the
/// shared decision, over the maps.
#[inline(always)]
fn record(pkt: &Frame) {
    let mut today = KernelToday {
        config: Config::default(),
        recent: None,
    };
    let _ = decide(pkt, ethernet(pkt), &mut today);
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

/// Wall-clock nanoseconds: the monotonic clock (coarse where the kernel has
/// it, see [`COARSE_CLOCK`]) plus the offset userspace keeps in CONFIG.
#[inline(always)]
fn now_wall_ns(config: &Config) -> u64 {
    let monotonic = if COARSE_CLOCK.load() != 0 {
        // SAFETY: a helper without arguments (5.11+; the loader turns this
        // branch off on older kernels, where the verifier drops it).
        unsafe { bpf_ktime_get_coarse_ns() }
    } else {
        // SAFETY: a helper without arguments (4.1+).
        unsafe { bpf_ktime_get_ns() }
    };
    monotonic.wrapping_add(config.wall_offset_ns)
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

/// The maps, behind what the decision needs. The config flags say which
/// maps are empty, so their lookups are skipped.
struct KernelToday {
    /// CONFIG, read once the packet is an attempt.
    config: Config,
    /// This CPU's RECENT slot for the packet's key, once `contains` missed it.
    recent: Option<*mut RecentKey>,
}

impl KernelToday {
    /// Remember in this CPU's RECENT slot that `key` is recorded today.
    #[inline(always)]
    fn remember(&self, key: &TupleKey) {
        if let Some(slot) = self.recent {
            // SAFETY: a valid per-CPU map value; this program is its only
            // writer on this CPU, and it runs to completion there.
            unsafe { (*slot).0 = *key };
        }
    }
}

impl Tables for KernelToday {
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

impl Today for KernelToday {
    type Error = core::convert::Infallible;

    #[inline(always)]
    fn include_multicast(&mut self) -> bool {
        // A one-entry array always has entry 0; the check is the verifier's.
        if let Some(config) = CONFIG.get(0) {
            self.config = *config;
        }
        self.config.has(flags::INCLUDE_MULTICAST)
    }

    #[inline(always)]
    fn now_ns(&mut self) -> u64 {
        now_wall_ns(&self.config)
    }

    #[inline(always)]
    fn contains(&mut self, key: &TupleKey) -> Result<bool, Self::Error> {
        self.recent = RECENT.get_ptr_mut(0).map(|slots| {
            // SAFETY: a valid per-CPU map value; `slot` is below SLOTS.
            unsafe { &raw mut (*slots)[recent::slot(key) & (recent::SLOTS - 1)] }
        });
        if let Some(slot) = self.recent {
            // SAFETY: a valid per-CPU map value (see `remember`).
            if unsafe { (*slot).0 } == *key {
                return Ok(true);
            }
        }
        let recorded = FIRST_SEEN.get_ptr(key).is_some();
        if recorded {
            self.remember(key);
        }
        Ok(recorded)
    }

    #[inline(always)]
    fn insert(&mut self, key: &TupleKey, wall_ns: u64) -> Result<Insert, Self::Error> {
        // BPF_NOEXIST: when two CPUs race on the same new tuple, one wins and
        // the earlier time stays.
        let insert = match FIRST_SEEN.insert(key, FirstSeen { wall_ns }, u64::from(BPF_NOEXIST)) {
            Ok(()) => Insert::New,
            Err(err) if err == -EEXIST => Insert::Raced,
            Err(_) => Insert::Failed,
        };
        if insert != Insert::Failed {
            self.remember(key);
        }
        Ok(insert)
    }

    #[inline(always)]
    fn count(&mut self, stat: Stat) {
        count(stat);
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
