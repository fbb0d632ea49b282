//! `cargo xtask bench`: what a packet costs, in nanoseconds over a floor
//! measured in the same run (this machine is shared and noisy; absolute
//! numbers drift, and the floor is a few ns, so ratios to it mean little).
//!
//! 1. The XDP program under BPF_PROG_TEST_RUN (median of 7 rounds) against
//!    an empty XDP_PASS program, per kind of packet, each beside its target
//!    (issue 13): as this kernel loads it, then with the precise clock of
//!    kernels before 5.11. The kernel reports whole nanoseconds per run.
//!    Beside the new tuples: the kernel's LRU insert alone (a program that
//!    only inserts a new key of the same size into a map of the same size),
//!    with common and with per-CPU LRU lists (`BPF_F_NO_COMMON_LRU`).
//! 2. `tsusen replay` end to end (read pcap, classify, write day files) on a
//!    generated capture of 1,000,000 packets, on one core.

use std::time::{Duration, Instant};

use tsusen::{
    capture::LoadOptions,
    replay::Replay,
    store::DayStore,
    tables::{Tables, parse_net},
    testing::{
        is_root,
        kernel::KernelSensor,
        packet::{ACK, Pkt},
        pcapgen, unique_name,
    },
};

const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 7;
/// New tuples per round: the fresh program counts the IPv4 source up from
/// 198.18.0.0, so a round stays inside 198.18.0.0/15.
const FRESH_REPEAT: u32 = 100_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ns(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

/// A SYN to a new destination port each round (the fresh program counts the
/// source up within the round), so every run of every round is a new tuple.
fn fresh_syn(round: u16) -> Vec<u8> {
    Pkt::syn("198.18.0.0", "192.0.2.1", 1_000 + round).bytes()
}

/// One table for the program as loaded with `options` (`clock` names it);
/// with `insert_floors`, beside the new tuples, what the kernel's LRU insert
/// alone costs in a map of the same size, and with per-CPU LRU lists.
fn kernel_table(options: &LoadOptions, clock: &str, insert_floors: bool) {
    // The live sensor's usual setup: local networks known, nothing ignored.
    let mut tables = Tables::default();
    tables.local.insert(parse_net("192.0.2.0/24").unwrap());
    tables.local.insert(parse_net("2001:db8:1::/48").unwrap());
    let capacity = tsusen_common::DEFAULT_FIRST_SEEN_ENTRIES;
    let options = LoadOptions {
        insert_floor_entries: insert_floors.then_some(capacity),
        ..options.clone()
    };
    let mut kernel = KernelSensor::load_with(&tables, &options).expect("load the XDP program");

    let cases: [(&str, Vec<u8>, Option<f64>); 5] = [
        (
            "TCP ACK (not a candidate)",
            Pkt::tcp("198.51.100.7", "192.0.2.1", 443, ACK).bytes(),
            Some(3.0),
        ),
        (
            "SYN, tuple already recorded",
            Pkt::syn("198.51.100.7", "192.0.2.1", 443).bytes(),
            Some(20.0),
        ),
        (
            "UDP datagram, tuple recorded",
            Pkt::udp("198.51.100.7", "192.0.2.1", 40_000, 53).bytes(),
            None,
        ),
        (
            "IPv6 SYN, tuple recorded",
            Pkt::syn("2001:db8:bad::7", "2001:db8:1::1", 22).bytes(),
            None,
        ),
        (
            "VLAN-tagged SYN, tuple recorded",
            Pkt::syn("198.51.100.8", "192.0.2.1", 22)
                .vlan(0x8100, 7)
                .bytes(),
            None,
        ),
    ];
    let floor_pkt = &cases[0].1;
    let mut floor = Vec::new();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..ROUNDS {
        // Interleave the floor with the cases so drift hits both alike.
        floor.push(ns(kernel.time_floor(floor_pkt, REPEAT).unwrap()));
        for (i, (_, pkt, _)) in cases.iter().enumerate() {
            times[i].push(ns(kernel.time(pkt, REPEAT).unwrap()));
        }
    }

    // New tuples: first while the map has room (7 rounds of 100,000 into a
    // map of 1,048,576), then with the map full, where every insert evicts.
    // Each round times the sensor, then the insert floors on the same keys.
    let mut round = 0;
    let mut fresh = |kernel: &mut KernelSensor| -> [f64; 3] {
        round += 1;
        let syn = fresh_syn(round);
        let sensor = ns(kernel.time_fresh(&syn, FRESH_REPEAT).unwrap());
        if !insert_floors {
            return [sensor, 0.0, 0.0];
        }
        let mut floor = |per_cpu| {
            ns(kernel
                .time_insert_floor(per_cpu, &syn, FRESH_REPEAT)
                .unwrap())
        };
        [sensor, floor(false), floor(true)]
    };
    let mut not_full = Vec::new();
    for _ in 0..ROUNDS {
        not_full.push(fresh(&mut kernel));
    }
    for _ in 0..capacity.div_ceil(FRESH_REPEAT) {
        fresh(&mut kernel);
    }
    let mut evicting = Vec::new();
    for _ in 0..ROUNDS {
        evicting.push(fresh(&mut kernel));
    }
    let column = |rounds: &[[f64; 3]], i: usize| median(rounds.iter().map(|r| r[i]).collect());
    let stats = kernel.stats().unwrap();
    let failed = stats[tsusen_common::Stat::InsertFailed as usize];

    let floor = median(floor);
    println!(
        "XDP program, {clock}: BPF_PROG_TEST_RUN, median of {ROUNDS} rounds (repeat {REPEAT}; new tuples {FRESH_REPEAT})"
    );
    println!(
        "{:<44} {:>9} {:>10} {:>14}",
        "packet", "ns/packet", "ns over floor", "target"
    );
    println!(
        "{:<44} {:>9.0} {:>10} {:>14}",
        "empty XDP_PASS program (the floor)", floor, "", ""
    );
    let line = |name: &str, t: f64, target: Option<f64>| {
        let over = t - floor;
        let target = match target {
            Some(max) => format!("<= {max:.0} {}", if over <= max { "met" } else { "missed" }),
            None => String::new(),
        };
        println!("{name:<44} {t:>9.0} {over:>10.0} {target:>14}");
    };
    for (i, (name, _, target)) in cases.iter().enumerate() {
        line(name, median(times[i].clone()), *target);
    }
    for (name, rounds, target) in [
        ("SYN, new tuple (map not full)", &not_full, 200.0),
        ("SYN, new tuple (map full: evicting)", &evicting, 300.0),
    ] {
        line(name, column(rounds, 0), Some(target));
        if insert_floors {
            line("  the kernel's LRU insert alone", column(rounds, 1), None);
            line("  the same, per-CPU LRU lists", column(rounds, 2), None);
        }
    }
    if failed > 0 {
        println!("(the kernel refused {failed} inserts)");
    }
}

fn replay_throughput() {
    const PACKETS: u32 = 1_000_000;
    let dir = std::env::temp_dir().join(unique_name("bench"));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("scan.pcap");
    pcapgen::write_scan_pcap(&pcap, PACKETS, 1_795_521_600).unwrap();
    let mut tables = Tables::default();
    tables.local.insert(parse_net("192.0.2.0/24").unwrap());
    tables.local.insert(parse_net("2001:db8:1::/48").unwrap());

    // Best and median of three runs: throughput is what the machine allows
    // when nothing else runs; the median shows how noisy it was.
    let mut rates = Vec::new();
    let mut rows = 0;
    for run in 0..3 {
        let out = dir.join(format!("out{run}"));
        let started = Instant::now();
        let store = DayStore::open(&out, usize::MAX).unwrap();
        let mut replay = Replay::new(tables.clone(), store);
        replay.file(&pcap).unwrap();
        replay.store().flush().unwrap();
        rates.push(f64::from(PACKETS) / started.elapsed().as_secs_f64() / 1e6);
        rows = replay.summary.rows;
    }
    let best = rates.iter().copied().fold(0.0, f64::max);
    let median = median(rates);
    println!();
    println!(
        "tsusen replay, end to end on one core: {PACKETS} packets -> {rows} rows: best {best:.2}, median {median:.2} M packets/s (target >= 2.5: {})",
        if best >= 2.5 { "met" } else { "MISSED" }
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is not supported.
    if is_root() {
        // As loaded on this kernel (the coarse clock from 5.11), then as on
        // kernels before 5.11 (the precise clock).
        kernel_table(&LoadOptions::default(), "as loaded here", true);
        println!();
        kernel_table(
            &LoadOptions {
                precise_clock: true,
                ..LoadOptions::default()
            },
            "precise clock (kernels before 5.11)",
            false,
        );
    } else {
        println!("SKIPPED the XDP measurements: needs root to load the program");
    }
    if std::env::var_os("TSUSEN_BENCH_KERNEL_ONLY").is_none() {
        replay_throughput();
    }
}
