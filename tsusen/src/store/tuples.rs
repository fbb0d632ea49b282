//! The set of a day's tuples, kept compact: a 64-bit keyed fingerprint per
//! tuple instead of its 40-byte key, so a day of 1,000,000 rows costs about
//! 16 MB instead of 80 (see the README's Performance section).
//!
//! The fingerprint is a keyed hash (a random seed per process, so no one can
//! pick tuples that collide). Two distinct tuples of one day sharing a
//! fingerprint would make the second look written already: with n tuples in
//! a day that happens with probability about n² / 2⁶⁵, one in 370,000 days
//! at 10,000,000 rows a day.

use std::{
    collections::HashSet,
    hash::{BuildHasher, BuildHasherDefault, Hasher},
    sync::OnceLock,
};

use tsusen_common::TupleKey;

/// The process's fingerprint function: one seed for every day's set, so a
/// tuple has the same fingerprint wherever it is looked up.
fn fingerprint(key: &TupleKey) -> u64 {
    static STATE: OnceLock<foldhash::quality::RandomState> = OnceLock::new();
    STATE.get_or_init(Default::default).hash_one(key)
}

/// Fingerprints are uniformly distributed already: the set uses them as
/// their own hash.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64s are hashed here; any other input still gets a hash.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Default)]
pub(super) struct TupleSet(HashSet<u64, BuildHasherDefault<Identity>>);

impl TupleSet {
    /// Whether the tuple was not in the set yet.
    pub(super) fn insert(&mut self, key: &TupleKey) -> bool {
        self.0.insert(fingerprint(key))
    }

    /// Whether the tuple was in the set.
    pub(super) fn remove(&mut self, key: &TupleKey) -> bool {
        self.0.remove(&fingerprint(key))
    }

    pub(super) fn contains(&self, key: &TupleKey) -> bool {
        self.0.contains(&fingerprint(key))
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn reserve(&mut self, additional: usize) {
        self.0.reserve(additional);
    }
}

impl FromIterator<TupleKey> for TupleSet {
    fn from_iter<I: IntoIterator<Item = TupleKey>>(keys: I) -> Self {
        let mut set = TupleSet::default();
        for key in keys {
            set.insert(&key);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use tsusen_common::tuple::ipv4_mapped;

    use super::*;

    fn key(port: u16, day: u16) -> TupleKey {
        TupleKey {
            src_ip: ipv4_mapped([198, 51, 100, 1]),
            dst_ip: ipv4_mapped([192, 0, 2, 1]),
            dst_port: port,
            day,
            proto: 6,
            _pad: 0,
        }
    }

    #[test]
    fn every_field_of_the_key_counts() {
        let mut set = TupleSet::default();
        assert!(set.insert(&key(22, 1)));
        assert!(!set.insert(&key(22, 1)));
        assert!(set.insert(&key(23, 1)));
        assert!(set.insert(&key(22, 2)));
        let mut udp = key(22, 1);
        udp.proto = 17;
        assert!(set.insert(&udp));
        assert_eq!(set.len(), 4);
        assert!(set.contains(&key(23, 1)) && !set.contains(&key(24, 1)));
    }

    #[test]
    fn a_million_distinct_tuples_are_a_million_entries() {
        let mut set = TupleSet::default();
        for i in 0..1_000_000u32 {
            let [lo, hi, third, _] = i.to_le_bytes();
            let mut k = key(u16::from_le_bytes([lo, hi]), 1);
            k.src_ip = ipv4_mapped([198, 18, third, 1]);
            assert!(set.insert(&k), "collision at {i}");
        }
        assert_eq!(set.len(), 1_000_000);
    }
}
