//! The XDP program's per-CPU cache of tuples recorded today (`RECENT`, in
//! front of the first-seen map): a hit must mean the whole key, its day
//! included, was recorded, never only that something sits in its slot.
//! Each test picks tuples that share a slot (`tsusen_common::recent::slot`).

use tsusen::{
    replay::sensor::Verdict,
    skip_unless,
    tables::{Tables, parse_net},
    testing::{
        is_root,
        kernel::{KernelSensor, TEST_WALL_NS},
        packet::Pkt,
    },
};
use tsusen_common::{NS_PER_DAY, TupleKey, classify::IPPROTO_TCP, recent, tuple::mapped};

const DST: &str = "192.0.2.1";
const PORT: u16 = 22;

fn tables() -> Tables {
    let mut tables = Tables::default();
    tables.local.insert(parse_net("192.0.2.0/24").unwrap());
    tables
}

/// The key the program records for a SYN from `src` on `day`.
fn key(src: &str, day: u16) -> TupleKey {
    TupleKey {
        src_ip: mapped(src.parse().unwrap()),
        dst_ip: mapped(DST.parse().unwrap()),
        dst_port: PORT,
        day,
        proto: IPPROTO_TCP,
        _pad: 0,
    }
}

/// Two sources in 198.18.0.0/15 whose SYNs' keys take the same slot.
fn sharing_a_slot(day: u16) -> (String, String) {
    let first = "198.18.0.1".to_owned();
    let wanted = recent::slot(&key(&first, day));
    let second = (2..=u16::MAX)
        .map(|n| format!("198.18.{}.{}", n >> 8, n & 0xff))
        .find(|src| recent::slot(&key(src, day)) == wanted)
        .expect("some source shares the slot");
    (first, second)
}

fn syn(src: &str) -> Vec<u8> {
    Pkt::syn(src, DST, PORT).bytes()
}

fn is_new(verdict: &Verdict) -> bool {
    matches!(verdict, Verdict::New(_))
}

fn recorded_keys(kernel: &KernelSensor) -> Vec<TupleKey> {
    let mut keys: Vec<TupleKey> = kernel
        .recorded()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    keys.sort();
    keys
}

#[test]
fn two_tuples_that_share_a_slot_are_both_recorded() {
    skip_unless!(is_root(), "loading XDP programs needs root");
    let mut kernel = KernelSensor::load(&tables()).expect("load the XDP program");
    let day = kernel.day();
    let (a, b) = sharing_a_slot(day);
    assert!(is_new(&kernel.verdict(&syn(&a)).unwrap()));
    // `a` holds the slot now: `b` is new all the same.
    let second = kernel.verdict(&syn(&b)).unwrap();
    assert!(
        is_new(&second),
        "{b} taken for {a}, which shares its slot: {second:?}"
    );
    for src in [&a, &b, &a] {
        assert_eq!(
            kernel.verdict(&syn(src)).unwrap(),
            Verdict::Repeat(TupleKey::default()),
            "{src}"
        );
    }
    let mut both = vec![key(&a, day), key(&b, day)];
    both.sort();
    assert_eq!(recorded_keys(&kernel), both);
}

/// A drained tuple (its row on disk, its entry gone from the map) stays
/// recorded today while its slot holds it; once another tuple took the slot,
/// the map decides again, and the tuple is recorded anew (the store keeps one
/// row per tuple and day).
#[test]
fn a_drained_tuple_is_a_repeat_while_its_slot_holds_it() {
    skip_unless!(is_root(), "loading XDP programs needs root");
    let mut kernel = KernelSensor::load(&tables()).expect("load the XDP program");
    let day = kernel.day();
    let (a, b) = sharing_a_slot(day);
    assert!(is_new(&kernel.verdict(&syn(&a)).unwrap()));
    kernel.forget(&key(&a, day)).unwrap();
    assert_eq!(
        kernel.verdict(&syn(&a)).unwrap(),
        Verdict::Repeat(TupleKey::default()),
        "the cache did not answer"
    );
    assert!(recorded_keys(&kernel).is_empty());
    assert!(is_new(&kernel.verdict(&syn(&b)).unwrap()));
    assert!(is_new(&kernel.verdict(&syn(&a)).unwrap()));
    let mut both = vec![key(&a, day), key(&b, day)];
    both.sort();
    assert_eq!(recorded_keys(&kernel), both);
}

/// The next day's key takes the same slot as the day before's (the day is not
/// hashed): it is new, and its row has the new day.
#[test]
fn the_next_days_key_is_recorded() {
    skip_unless!(is_root(), "loading XDP programs needs root");
    let tables = tables();
    let mut kernel = KernelSensor::load(&tables).expect("load the XDP program");
    let day = kernel.day();
    let (a, _) = sharing_a_slot(day);
    assert_eq!(recent::slot(&key(&a, day)), recent::slot(&key(&a, day + 1)));
    assert!(is_new(&kernel.verdict(&syn(&a)).unwrap()));
    assert_eq!(
        kernel.verdict(&syn(&a)).unwrap(),
        Verdict::Repeat(TupleKey::default())
    );
    kernel
        .set_wall_clock(&tables, TEST_WALL_NS + NS_PER_DAY)
        .unwrap();
    let next = kernel.verdict(&syn(&a)).unwrap();
    assert!(is_new(&next), "the next day's SYN: {next:?}");
    assert_eq!(recorded_keys(&kernel), vec![key(&a, day), key(&a, day + 1)]);
}
