//! The kernel's counters when the STATS map was pinned by an older build.
//!
//! A build that knows more counters than the pinned map holds (an upgrade
//! that restarted over the pins instead of a clean stop) adopts the smaller
//! map: every read of the counters must still work (the counters it lacks
//! read 0), or every flush would fail and nothing would be drained.

use std::{fs, path::PathBuf, process::Command};

use aya::EbpfLoader;
use tsusen::{
    capture::{self, EBPF_OBJECT, LoadOptions, stats::KernelStats},
    skip_unless,
    testing::{is_root, unique_name},
};
use tsusen_common::{Stat, maps};

/// A bpffs of the test's own, unmounted and removed on drop.
struct Bpffs(PathBuf);

impl Bpffs {
    fn mount() -> Self {
        let dir = std::env::temp_dir().join(unique_name("bpffs"));
        fs::create_dir_all(&dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount -t bpf");
        Bpffs(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = fs::remove_dir(&self.0);
    }
}

#[test]
fn a_smaller_stats_map_pinned_by_an_older_build_reads_as_zeros() {
    skip_unless!(is_root(), "needs root (bpf maps, mount)");
    let bpffs = Bpffs::mount();
    let pins = bpffs.0.join("tsusen");
    fs::create_dir_all(&pins).unwrap();
    let older = Stat::COUNT - 1;

    // The older build: a STATS map with one counter fewer, pinned.
    let old = EbpfLoader::new()
        .map_max_entries(maps::STATS, older)
        .map_pin_path(maps::STATS, pins.join(maps::STATS))
        .load(EBPF_OBJECT)
        .expect("load the object with a smaller STATS map");

    // This build adopts it, as `tsusen run` does over the pins.
    let new = capture::load(&LoadOptions {
        first_seen_entries: Some(1024),
        pin_dir: Some(pins.clone()),
        ..LoadOptions::default()
    })
    .expect("load over the pins");
    let totals = capture::read_stats(&new).expect("read the adopted counters");
    assert_eq!(totals.len(), Stat::COUNT as usize);
    assert_eq!(totals[older as usize], 0, "the counter the map lacks");
    let scraped = KernelStats::open(&new)
        .expect("a second handle")
        .read()
        .expect("a scrape of the adopted counters");
    assert_eq!(scraped, totals);

    drop(new);
    drop(old);
    for entry in fs::read_dir(&pins).unwrap().flatten() {
        fs::remove_file(entry.path()).unwrap();
    }
}
