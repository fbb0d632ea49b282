//! `cargo xtask bench`, the live sensor's part (root only):
//!
//! 1. Drain: 1,000,000 first-seen entries from the kernel map to a day file.
//! 2. Memory: the daemon's resident size with 1,000,000 tuples written today.
//! 3. A masscan sweep at the fastest rate masscan reaches here, through a veth
//!    into the running daemon: rows recorded / distinct probes sent, and the
//!    daemon's CPU seconds / wall seconds during the sweep.

use std::{
    fs,
    process::Stdio,
    time::{Duration, Instant},
};

use aya::maps::HashMap;
use tsusen::{
    capture::sensor::Sensor,
    drain::Drain,
    store::DayStore,
    testing::{TestNet, have_program, is_root, unique_name},
};
use tsusen_common::{FirstSeen, TupleKey, maps, tuple::ipv4_mapped};

const ENTRIES: u32 = 1_000_000;
const WALL_NS: u64 = 1_795_521_600 * 1_000_000_000; // 2026-11-24 12:00 UTC

fn key(i: u32) -> TupleKey {
    let b = i.to_be_bytes();
    TupleKey {
        src_ip: ipv4_mapped([198, 18 + (b[1] & 1), b[2], b[3]]),
        dst_ip: ipv4_mapped([192, 0, 2, 1]),
        dst_port: 1 + (i >> 17) as u16,
        day: (WALL_NS / tsusen_common::NS_PER_DAY) as u16,
        proto: 6,
        _pad: 0,
    }
}

fn rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn drain_and_memory() {
    let mut sensor = Sensor::unattached(ENTRIES + ENTRIES / 4).expect("load the programs");
    {
        let mut map: HashMap<_, TupleKey, FirstSeen> =
            HashMap::try_from(sensor.ebpf().map_mut(maps::FIRST_SEEN).unwrap()).unwrap();
        for i in 0..ENTRIES {
            map.insert(
                key(i),
                FirstSeen {
                    wall_ns: WALL_NS + u64::from(i) * 1000,
                },
                0,
            )
            .unwrap();
        }
    }
    let dir = std::env::temp_dir().join(unique_name("bench-drain"));
    let rss_before = rss_kib();
    let mut store = DayStore::open(&dir, usize::MAX).unwrap();
    let started = Instant::now();
    let drained = Drain::default().run(&mut sensor, &mut store).unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let rss_after = rss_kib();
    println!();
    println!(
        "drain: {} entries read, {} rows written and fsynced, {} removed from the map in {elapsed:.2} s (target <= 1 s{})",
        drained.entries,
        drained.rows,
        drained.removed,
        if elapsed <= 1.0 { "" } else { ", MISSED" }
    );
    println!(
        "memory: {:.0} MB more resident with {} tuples written today (target <= 100 MB{})",
        (rss_after.saturating_sub(rss_before)) as f64 / 1024.0,
        store
            .tuples((WALL_NS / tsusen_common::NS_PER_DAY) as u16)
            .unwrap(),
        if rss_after - rss_before <= 100 * 1024 {
            ""
        } else {
            ", MISSED"
        }
    );
    fs::remove_dir_all(&dir).unwrap();
}

fn cpu_ticks(pid: u32) -> u64 {
    // utime + stime, fields 14 and 15 of /proc/PID/stat (after the comm).
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields
        .get(11)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
}

fn masscan_sweep() {
    if !have_program("masscan") {
        println!("SKIPPED the masscan sweep: masscan is not installed");
        return;
    }
    let net = TestNet::new();
    let pins = std::path::PathBuf::from("/run").join(unique_name("bench-bpf"));
    fs::create_dir_all(&pins).unwrap();
    tsusen::testing::run("mount", &["-t", "bpf", "bpf", pins.to_str().unwrap()]);
    let out = std::env::temp_dir().join(unique_name("bench-out"));
    let mut daemon = net
        .sensor
        .command(env!("CARGO_BIN_EXE_tsusen"))
        .args([
            "run",
            "--iface",
            &net.sensor_if,
            "--flush-interval",
            "1s",
            "--local",
            "198.18.1.0/24",
        ])
        .arg("--out-dir")
        .arg(&out)
        .arg("--pin-dir")
        .arg(pins.join("p"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The daemon is `ip netns exec`'s child: find it to read its CPU time.
    std::thread::sleep(Duration::from_secs(3));
    let pid = tsusen::testing::run(
        "pgrep",
        &["-n", "-f", &format!("tsusen run --iface {}", net.sensor_if)],
    );
    let pid: u32 = pid.trim().parse().unwrap();
    let ticks_per_s = 100.0; // USER_HZ
    let cpu_before = cpu_ticks(pid);
    let started = Instant::now();
    let mac = net.sensor_mac();
    let sweep = net
        .peer
        .command("timeout")
        .args([
            "60",
            "masscan",
            "198.18.1.0/24",
            "-p1-400",
            "--rate",
            "1000000",
            "--router-mac",
            &mac,
            "-e",
            &net.peer_if,
        ])
        .args(["--source-ip", "198.19.255.254", "--wait", "0"])
        .output()
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    let cpu = (cpu_ticks(pid) - cpu_before) as f64 / ticks_per_s;
    let rate = String::from_utf8_lossy(&sweep.stderr)
        .split("rate:")
        .filter_map(|s| {
            s.trim()
                .split('-')
                .next()
                .and_then(|r| r.trim().parse::<f64>().ok())
        })
        .fold(0.0, f64::max);
    // Let the last flush happen, then stop the daemon cleanly.
    std::thread::sleep(Duration::from_secs(2));
    unsafe { libc::kill(pid.cast_signed(), libc::SIGTERM) };
    let _ = daemon.wait();
    let mut rows = 0;
    let mut seen = std::collections::HashSet::new();
    for entry in fs::read_dir(&out).unwrap().flatten() {
        for line in fs::read_to_string(entry.path()).unwrap().lines().skip(1) {
            if line.contains(" 198.19.255.254 198.18.1.") {
                rows += 1;
                seen.insert(line.rsplit_once(' ').unwrap().0.to_owned());
            }
        }
    }
    println!(
        "masscan sweep: 102400 distinct probes at up to {rate:.0} kpps: {rows} rows ({} distinct) = {:.2}% recorded (target 100%); \
         daemon CPU {cpu:.2} s over {wall:.2} s = {:.1}% (target <= 5%)",
        seen.len(),
        100.0 * seen.len() as f64 / 102_400.0,
        100.0 * cpu / wall
    );
    tsusen::testing::run("umount", &[pins.to_str().unwrap()]);
    let _ = fs::remove_dir_all(&pins);
    let _ = fs::remove_dir_all(&out);
}

fn main() {
    if !is_root() {
        println!("SKIPPED the live sensor measurements: needs root");
        return;
    }
    drain_and_memory();
    if std::env::var_os("TSUSEN_BENCH_NO_SWEEP").is_none() {
        masscan_sweep();
    }
}
