//! What the tsusen XDP program and its userspace agree on.
//!
//! Everything here is `no_std` and `#[repr(C)]` without implicit padding, so the
//! kernel and userspace see the same bytes. The classification rules live in
//! [`classify`]: written once, compiled into the XDP program and into the host
//! (`tsusen replay`), and proven to agree by a differential test.
#![cfg_attr(not(test), no_std)]
// The rules are compiled into the XDP program, where every helper must be
// inlined: the verifier follows packet bounds through inlined code only, and
// BPF-to-BPF calls need 4.16+ with restrictions on what they may pass.
#![expect(clippy::inline_always, reason = "the BPF program inlines every helper")]

/// `aya::Pod` for types that derive `bytemuck::Pod`: aya's trait has no
/// derive, so it rests on bytemuck's, which refuses padding and fields that
/// are not plain data at compile time.
#[cfg(feature = "user")]
macro_rules! aya_pod {
    ($($ty:ty),+ $(,)?) => {
        $(
            const _: fn() = {
                fn derived_bytemuck_pod<T: bytemuck::Pod>() {}
                derived_bytemuck_pod::<$ty>
            };
            // SAFETY: the type derives bytemuck::Pod (checked just above),
            // which is what aya::Pod asks: any bytes are a valid value.
            unsafe impl aya::Pod for $ty {}
        )+
    };
}
#[cfg(feature = "user")]
pub(crate) use aya_pod;

pub mod classify;
pub mod config;
pub mod proto;
pub mod recent;
pub mod stats;
pub mod tuple;

pub use config::Config;
pub use stats::Stat;
pub use tuple::{FirstSeen, FlowKey, TupleKey};

/// Nanoseconds in one day: tuples are keyed by UTC day (`wall_ns / NS_PER_DAY`).
pub const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;

/// Names of the maps, as userspace finds (and pins) them.
pub mod maps {
    pub const FIRST_SEEN: &str = "FIRST_SEEN";
    pub const STATS: &str = "STATS";
    pub const CONFIG: &str = "CONFIG";
    pub const LOCAL_NETS: &str = "LOCAL_NETS";
    pub const IGNORED_NETS: &str = "IGNORED_NETS";
    pub const IGNORED_PORTS: &str = "IGNORED_PORTS";
    pub const UDP_FLOWS: &str = "UDP_FLOWS";
    pub const RECENT: &str = "RECENT";
}

/// Default number of entries of the first-seen map (`--map-size`).
pub const DEFAULT_FIRST_SEEN_ENTRIES: u32 = 1 << 20;
/// Entries of the outbound UDP flow map: replies to flows older than what fits are rows.
pub const UDP_FLOW_ENTRIES: u32 = 1 << 16;
/// Entries of each prefix map (local networks, ignored networks).
pub const NET_ENTRIES: u32 = 4096;
/// The ignored-ports bitmap: 65,536 bits in 64-bit words.
pub const IGNORED_PORT_WORDS: u32 = 65_536 / 64;
