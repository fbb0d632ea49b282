//! Kernel time to wall time.
//!
//! bpf_ktime_get_ns() is CLOCK_MONOTONIC. The XDP program adds the offset
//! `CLOCK_REALTIME - CLOCK_MONOTONIC`, which userspace refreshes at every flush,
//! so recorded times (and the UTC day they fall on) follow clock adjustments.

use nix::time::{ClockId, clock_gettime};

fn now_ns(clock: ClockId) -> u64 {
    // Both clocks exist on every Linux; a failure would be a broken kernel.
    let ts = clock_gettime(clock).expect("clock_gettime");
    ts.tv_sec().cast_unsigned() * 1_000_000_000 + ts.tv_nsec().cast_unsigned()
}

/// The kernel's monotonic clock (what bpf_ktime_get_ns() returns).
pub fn monotonic_ns() -> u64 {
    now_ns(ClockId::CLOCK_MONOTONIC)
}

/// Nanoseconds to add to the kernel's monotonic clock to get wall-clock time.
pub fn wall_offset_ns() -> u64 {
    // Read monotonic on both sides of realtime and use the midpoint.
    let before = now_ns(ClockId::CLOCK_MONOTONIC);
    let wall = now_ns(ClockId::CLOCK_REALTIME);
    let after = now_ns(ClockId::CLOCK_MONOTONIC);
    wall.wrapping_sub(before + (after - before) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_turns_monotonic_into_wall_time() {
        let wall = now_ns(ClockId::CLOCK_REALTIME);
        let converted = now_ns(ClockId::CLOCK_MONOTONIC).wrapping_add(wall_offset_ns());
        assert!(
            converted.abs_diff(wall) < 50_000_000,
            "{converted} vs {wall}"
        );
    }
}
