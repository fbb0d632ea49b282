//! The drain against a real kernel map, by both paths: batched
//! (BPF_MAP_LOOKUP_BATCH / BPF_MAP_DELETE_BATCH, 5.6+) and one key at a time
//! (what kernels before 5.6 get). No kernel obtainable here is older than
//! 5.6, so the per-key path is forced (`Drain::per_key`) to run at all.

use std::{collections::BTreeSet, fs};

use aya::maps::HashMap;
use tsusen::{
    capture::sensor::Sensor,
    drain::Drain,
    skip_unless,
    store::DayStore,
    testing::{is_root, unique_name},
};
use tsusen_common::{FirstSeen, TupleKey, maps, tuple::ipv4_mapped};

const WALL_NS: u64 = 1_795_521_600 * 1_000_000_000; // 2026-11-24 12:00 UTC
const ENTRIES: u32 = 300;

fn key(i: u32) -> TupleKey {
    TupleKey {
        src_ip: ipv4_mapped([198, 18, i.to_be_bytes()[2], i.to_be_bytes()[3]]),
        dst_ip: ipv4_mapped([192, 0, 2, 1]),
        dst_port: 1000 + u16::try_from(i).expect("ENTRIES fit a port range"),
        day: u16::try_from(WALL_NS / tsusen_common::NS_PER_DAY).expect("a day before 2149"),
        proto: 6,
        _pad: 0,
    }
}

/// Fill a fresh map, drain it twice; the rows of the day file (without header).
fn drain_twice(per_key: bool) -> Vec<String> {
    let mut sensor = Sensor::unattached(4096).expect("load the programs");
    {
        let mut map: HashMap<_, TupleKey, FirstSeen> =
            HashMap::try_from(sensor.ebpf().map_mut(maps::FIRST_SEEN).unwrap()).unwrap();
        for i in 0..ENTRIES {
            let seen = FirstSeen {
                wall_ns: WALL_NS + u64::from(i) * 1_000_000_000,
            };
            map.insert(key(i), seen, 0).unwrap();
        }
    }
    let dir = std::env::temp_dir().join(unique_name("kernel-drain"));
    let mut store = DayStore::open(&dir, usize::MAX).unwrap();
    let mut drain = Drain {
        per_key,
        ..Drain::default()
    };
    let first = drain.run(&mut sensor, &mut store).unwrap();
    assert_eq!(first.entries, ENTRIES as usize, "entries read");
    assert_eq!(first.rows, ENTRIES as usize, "rows written");
    assert_eq!(first.removed, ENTRIES as usize, "entries removed");
    assert!(!first.flush_failed);
    let second = drain.run(&mut sensor, &mut store).unwrap();
    assert_eq!(
        (second.entries, second.rows),
        (0, 0),
        "the map is empty after a drain"
    );
    assert_eq!(drain.evicted, 0);
    let text = fs::read_to_string(dir.join("2026-11-24.csv")).unwrap();
    fs::remove_dir_all(&dir).unwrap();
    text.lines().skip(1).map(str::to_owned).collect()
}

fn expected_rows() -> Vec<String> {
    (0..ENTRIES)
        .map(|i| {
            format!(
                "TCP {} 198.18.{}.{} 192.0.2.1 {}",
                1000 + i,
                i >> 8,
                i & 0xff,
                WALL_NS / 1_000_000_000 + u64::from(i)
            )
        })
        .collect()
}

#[test]
fn batched_drain_writes_every_entry_once_and_empties_the_map() {
    skip_unless!(is_root(), "loading eBPF programs needs root");
    let rows = drain_twice(false);
    assert_eq!(rows.len(), ENTRIES as usize, "no row twice");
    let rows: BTreeSet<String> = rows.into_iter().collect();
    assert_eq!(rows, expected_rows().into_iter().collect());
}

#[test]
fn per_key_drain_writes_every_entry_once_and_empties_the_map() {
    skip_unless!(is_root(), "loading eBPF programs needs root");
    let rows = drain_twice(true);
    assert_eq!(rows.len(), ENTRIES as usize, "no row twice");
    let rows: BTreeSet<String> = rows.into_iter().collect();
    assert_eq!(rows, expected_rows().into_iter().collect());
}
