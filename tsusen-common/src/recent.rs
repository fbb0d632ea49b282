//! The XDP program's per-CPU cache of tuples recorded today (`RECENT` in
//! tsusen-ebpf): its size and the slot a key goes to, here so that tests can
//! pick keys that share a slot.
//!
//! A slot holds one whole key (its day included): a repeated attempt whose
//! key is in its slot is recorded today, and skips the first-seen map's
//! lookup. The slot only spreads keys: a hit compares the whole key, so two
//! keys that share a slot only take it from each other.

use crate::TupleKey;

/// Slots per CPU, a power of two. The cache is one per-CPU value of this
/// many 40-byte slots (a per-CPU value is at most 32 KiB).
pub const SLOTS: usize = 256;

/// Bytes of one slot: the 38-byte key, 8-aligned so that comparing it takes
/// word loads.
pub const SLOT_BYTES: usize = 40;

const _: () = assert!(SLOTS.is_power_of_two() && SLOTS * SLOT_BYTES <= 32 * 1024);

/// The slot of a key: a multiplicative hash of the bytes that differ most
/// between tuples (the low halves of the addresses, all of an IPv4 address;
/// the port and protocol). The day is left out: the next day's key takes the
/// slot of the same tuple's key of the day before.
#[inline(always)]
#[must_use]
pub fn slot(key: &TupleKey) -> usize {
    let low = |ip: &[u8; 16]| {
        u32::from_ne_bytes([ip[8], ip[9], ip[10], ip[11]])
            ^ u32::from_ne_bytes([ip[12], ip[13], ip[14], ip[15]])
    };
    let mixed = low(&key.src_ip)
        ^ low(&key.dst_ip).rotate_left(16)
        ^ u32::from(key.dst_port)
        ^ (u32::from(key.proto) << 16);
    // Fibonacci hashing: the top bits of the product depend on every bit.
    (mixed.wrapping_mul(0x9e37_79b9) >> (32 - SLOTS.trailing_zeros())) as usize
}
