//! The kernel's clock at UTC midnight: a tuple recorded just before midnight
//! is new again just after it, with the new day in its key, whichever clock
//! the program reads (the coarse one of 5.11+, the precise one of older
//! kernels). The day comes from the clock at every attempt, never from a
//! setting userspace may not have refreshed yet.

use std::{thread::sleep, time::Duration};

use tsusen::{
    capture::LoadOptions,
    replay::sensor::Verdict,
    skip_unless,
    tables::{Tables, parse_net},
    testing::{is_root, kernel::KernelSensor, packet::Pkt},
};
use tsusen_common::{NS_PER_DAY, TupleKey, classify::day_of};

/// 2026-11-25 00:00:00 UTC.
const MIDNIGHT_NS: u64 = 1_796_083_200 * 1_000_000_000;
/// How far before midnight the first packet is sent; the second goes this far
/// after it (the coarse clock lags by a tick, 10 ms at most).
const MARGIN_NS: u64 = 300_000_000;

fn tuple_recorded_before_midnight_is_new_after_it(options: &LoadOptions) {
    let mut tables = Tables::default();
    tables.local.insert(parse_net("192.0.2.0/24").unwrap());
    let mut kernel = KernelSensor::load_with(&tables, options).expect("load the XDP program");
    let syn = Pkt::syn("198.51.100.7", "192.0.2.1", 22).bytes();
    let before = (MIDNIGHT_NS - 1) / NS_PER_DAY;
    // A machine that stalls past midnight between setting the clock and the
    // first packet gets another try.
    for _ in 0..5 {
        kernel.clear().unwrap();
        kernel
            .set_wall_clock(&tables, MIDNIGHT_NS - MARGIN_NS)
            .unwrap();
        let first = kernel.verdict(&syn).unwrap();
        let Verdict::New(first) = first else {
            panic!("the first SYN is not new: {first:?}");
        };
        if u64::from(first.day) != before {
            continue;
        }
        assert_eq!(
            kernel.verdict(&syn).unwrap(),
            Verdict::Repeat(TupleKey::default())
        );
        sleep(Duration::from_nanos(2 * MARGIN_NS));
        let after = kernel.verdict(&syn).unwrap();
        let Verdict::New(after) = after else {
            panic!("the same SYN after midnight is not new: {after:?}");
        };
        assert_eq!(after.day, day_of(MIDNIGHT_NS));
        assert_eq!(
            after,
            TupleKey {
                day: after.day,
                ..first
            }
        );
        let recorded = kernel.recorded().unwrap();
        assert_eq!(recorded.len(), 2, "{recorded:?}");
        for (key, seen) in recorded {
            assert_eq!(
                day_of(seen.wall_ns),
                key.day,
                "a time outside its key's day"
            );
        }
        return;
    }
    panic!("never got a packet in before midnight (machine too slow)");
}

#[test]
fn coarse_clock_midnight() {
    skip_unless!(is_root(), "loading XDP programs needs root");
    tuple_recorded_before_midnight_is_new_after_it(&LoadOptions::default());
}

#[test]
fn precise_clock_midnight() {
    skip_unless!(is_root(), "loading XDP programs needs root");
    tuple_recorded_before_midnight_is_new_after_it(&LoadOptions {
        precise_clock: true,
        ..LoadOptions::default()
    });
}
