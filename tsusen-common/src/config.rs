//! Settings userspace hands the XDP program through the one-entry `CONFIG` array.

#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct Config {
    /// Added to the kernel's monotonic clock to get wall-clock nanoseconds.
    /// Userspace refreshes it at every flush, so clock adjustments follow.
    pub wall_offset_ns: u64,
    /// `flags::*` bits.
    pub flags: u32,
    pub _pad: u32,
}

/// Bits of [`Config::flags`]. The "has" bits let the program skip lookups in
/// maps that are empty, which keeps the per-packet cost down.
pub mod flags {
    /// LOCAL_NETS holds at least one prefix: direction rules apply.
    pub const HAS_LOCAL_NETS: u32 = 1 << 0;
    /// IGNORED_NETS holds at least one prefix.
    pub const HAS_IGNORED_NETS: u32 = 1 << 1;
    /// IGNORED_PORTS has at least one bit set.
    pub const HAS_IGNORED_PORTS: u32 = 1 << 2;
    /// Multicast and broadcast destinations are attempts too (`--include-multicast`).
    pub const INCLUDE_MULTICAST: u32 = 1 << 3;
}

impl Config {
    #[inline(always)]
    pub const fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }
}

#[cfg(feature = "user")]
crate::aya_pod!(Config);

const _: () = assert!(core::mem::size_of::<Config>() == 16);
