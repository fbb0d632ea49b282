//! `cargo xtask bench`, the live sensor's part (root only):
//!
//! 1. Drain: 1,000,000 first-seen entries from the kernel map to a day file,
//!    its wall time and CPU per row written.
//! 2. Memory: the resident size with 1,000,000 and 2,000,000 tuples written
//!    today (the second million gives the cost per row).
//! 3. A masscan sweep at the fastest rate masscan reaches here, through a veth
//!    into the running daemon: rows recorded / distinct probes sent, and the
//!    daemon's CPU seconds / wall seconds during the sweep.
//! 4. A 60-second spoofed SYN flood (`tcpreplay --topspeed`, every packet of
//!    its capture a new tuple) into the daemon at `--flush-interval 1s`: its
//!    CPU and peak resident size, and what the flood bound cost.
//! 5. Side by side, one run, one veth, the same two streams (one tuple
//!    repeated; a new tuple per packet): the sender's rate with tsusen, an
//!    nftables dynamic set and `tcpdump -w` with a SYN filter, each as a
//!    ratio to nothing attached.
#![expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "generated keys and measured rates are small and positive by construction"
)]

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
    testing::{TestNet, have_program, is_root, pcapgen, unique_name},
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
        day: tsusen_common::classify::day_of(WALL_NS),
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

/// CPU seconds (user, system) this process has used.
fn cpu_self() -> (f64, f64) {
    // SAFETY: getrusage(2) fills the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the pointer is to our own struct.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

fn fill(sensor: &mut Sensor, from: u32, to: u32) {
    let mut map: HashMap<_, TupleKey, FirstSeen> =
        HashMap::try_from(sensor.ebpf().map_mut(maps::FIRST_SEEN).unwrap()).unwrap();
    for i in from..to {
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

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn drain_and_memory() {
    let mut sensor = Sensor::unattached(ENTRIES + ENTRIES / 4).expect("load the programs");
    fill(&mut sensor, 0, ENTRIES);
    let dir = std::env::temp_dir().join(unique_name("bench-drain"));
    let rss_before = rss_kib();
    let mut store = DayStore::open(&dir, usize::MAX).unwrap();
    let today = tsusen_common::classify::day_of(WALL_NS);
    let mut drain = Drain::default();
    let cpu = cpu_self();
    let started = Instant::now();
    let drained = drain.run(&mut sensor, &mut store).unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let (user, system) = cpu_self();
    let rows = drained.rows.max(1) as f64;
    let (user, system) = ((user - cpu.0) / rows * 1e6, (system - cpu.1) / rows * 1e6);
    let cpu_per_row = user + system;
    let rss_one = rss_kib();
    println!();
    println!(
        "drain: {} entries read, {} rows written and fsynced, {} removed from the map in {elapsed:.2} s (target <= 1 s: {})",
        drained.entries,
        drained.rows,
        drained.removed,
        met(elapsed <= 1.0)
    );
    println!(
        "daemon CPU per row written (drain: read, dedup, format, write, fsync, delete): {cpu_per_row:.2} us \
         ({user:.2} user, {system:.2} system; target <= 0.5 us: {})",
        met(cpu_per_row <= 0.5)
    );
    // A second million the same day: what each more row costs.
    fill(&mut sensor, ENTRIES, 2 * ENTRIES);
    drain.run(&mut sensor, &mut store).unwrap();
    let rss_two = rss_kib();
    let one_mb = rss_one.saturating_sub(rss_before) as f64 / 1024.0;
    let per_row = rss_two.saturating_sub(rss_one) as f64 * 1024.0 / f64::from(ENTRIES);
    println!(
        "memory: {one_mb:.0} MB more resident with {} tuples written today (target <= 100 MB: {}); \
         {:.0} MB with {}: {per_row:.0} bytes per more row (target: at most linear)",
        ENTRIES,
        met(one_mb <= 100.0),
        rss_two.saturating_sub(rss_before) as f64 / 1024.0,
        store.tuples(today).unwrap(),
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
    let daemon = Daemon::start(&net, &["--local", "198.18.1.0/24"]);
    let pid = daemon.pid();
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
    let out = daemon.out.clone();
    daemon.stop();
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
    let _ = fs::remove_dir_all(&out);
}

/// The daemon in the sensor namespace, its pins on a bpffs of its own (in
/// the host's mount namespace, see testbed.md) and its log in a file.
struct Daemon {
    child: std::process::Child,
    pins: std::path::PathBuf,
    out: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Daemon {
    fn start(net: &TestNet, extra: &[&str]) -> Daemon {
        let pins = std::path::PathBuf::from("/run").join(unique_name("bench-bpf"));
        fs::create_dir_all(&pins).unwrap();
        tsusen::testing::run("mount", &["-t", "bpf", "bpf", pins.to_str().unwrap()]);
        let out = std::env::temp_dir().join(unique_name("bench-out"));
        let log = std::env::temp_dir().join(unique_name("bench-log"));
        let child = net
            .sensor
            .command(env!("CARGO_BIN_EXE_tsusen"))
            .args(["run", "--iface", &net.sensor_if, "--flush-interval", "1s"])
            .args(extra)
            .arg("--out-dir")
            .arg(&out)
            .arg("--pin-dir")
            .arg(pins.join("p"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let daemon = Daemon {
            child,
            pins,
            out,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !daemon.log_text().contains("] ready") {
            assert!(
                Instant::now() < deadline,
                "no ready line:\n{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        daemon
    }

    /// `ip netns exec` execs the daemon: the child's pid is its pid.
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A value of the last `flush:` line.
    fn last_flush(&self, key: &str) -> u64 {
        self.log_text()
            .lines()
            .rev()
            .find_map(|l| l.split_once("flush: ").map(|(_, rest)| rest.to_owned()))
            .and_then(|rest| {
                rest.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_owned))
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// A `VmHWM`/`VmRSS` line of the daemon's status, in MB.
    fn memory_mb(&self, field: &str) -> f64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    }

    /// SIGTERM; the seconds until it exited. The out-dir stays (the caller
    /// reads it, then removes it).
    fn stop(mut self) -> f64 {
        let started = Instant::now();
        // SAFETY: kill(2) on our own child, not reaped yet.
        unsafe { libc::kill(self.pid().cast_signed(), libc::SIGTERM) };
        let _ = self.child.wait();
        let took = started.elapsed().as_secs_f64();
        tsusen::testing::run("umount", &[self.pins.to_str().unwrap()]);
        let _ = fs::remove_dir_all(&self.pins);
        let _ = fs::remove_file(&self.log);
        took
    }
}

/// `tcpreplay --topspeed` of `pcap` from the peer, `loops` times, for at
/// most `limit`: packets sent and the rate it reports (packets/s).
fn tcpreplay(net: &TestNet, pcap: &std::path::Path, loops: u32, limit: Duration) -> (u64, f64) {
    let out = net
        .peer
        .command("timeout")
        .args(["-s", "INT", &limit.as_secs().to_string()])
        .args([
            "tcpreplay",
            "--topspeed",
            "--preload-pcap",
            "--loop",
            &loops.to_string(),
            "-i",
        ])
        .arg(&net.peer_if)
        .arg(pcap)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let number_after = |label: &str| -> f64 {
        text.split(label)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.trim_end_matches(',').parse().ok())
            .unwrap_or(0.0)
    };
    // "Actual: 1000000 packets (...) sent in 1.2 seconds" / "Rated: ... 812345.6 pps"
    let sent = number_after("Actual:") as u64;
    let pps = text
        .split("Rated:")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .and_then(|line| line.split(',').find(|p| p.trim_end().ends_with("pps")))
        .and_then(|p| p.trim().trim_end_matches("pps").trim().parse().ok())
        .unwrap_or(0.0);
    (sent, pps)
}

/// The flood: a capture of this many distinct tuples, preloaded by
/// tcpreplay and looped; measured over a window of this many seconds.
const FLOOD_TUPLES: u32 = 1_000_000;
const FLOOD_SECONDS: u64 = 60;

/// The receive counter of the sensor's veth end.
fn rx_packets(net: &TestNet) -> u64 {
    net.sensor
        .exec(
            "cat",
            &[&format!(
                "/sys/class/net/{}/statistics/rx_packets",
                net.sensor_if
            )],
        )
        .trim()
        .parse()
        .unwrap_or(0)
}

fn flood() {
    let net = TestNet::new();
    let dir = std::env::temp_dir().join(unique_name("bench-flood"));
    fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("flood.pcap");
    let mac = pcapgen::parse_mac(&net.sensor_mac());
    pcapgen::write_flood_pcap(&pcap, FLOOD_TUPLES, TestNet::SENSOR_IP, mac).unwrap();
    let daemon = Daemon::start(&net, &[]);
    // tcpreplay preloads the capture (seconds), then floods until stopped;
    // the window starts once packets arrive.
    let sender = {
        let mut command = net.peer.command("timeout");
        command
            .args(["-s", "INT", &(FLOOD_SECONDS + 60).to_string()])
            .args([
                "tcpreplay",
                "--topspeed",
                "--preload-pcap",
                "--loop",
                "1000",
                "-q",
                "-i",
            ])
            .arg(&net.peer_if)
            .arg(&pcap)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command.spawn().unwrap()
    };
    let start_rx = rx_packets(&net);
    let waited = Instant::now();
    while rx_packets(&net) < start_rx + 100_000 && waited.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ticks_before, rx_before, started) =
        (cpu_ticks(daemon.pid()), rx_packets(&net), Instant::now());
    std::thread::sleep(Duration::from_secs(FLOOD_SECONDS));
    let (ticks_after, rx_after, wall) = (
        cpu_ticks(daemon.pid()),
        rx_packets(&net),
        started.elapsed().as_secs_f64(),
    );
    let mut sender = sender;
    // SAFETY: kill(2) on our own child (timeout), which passes SIGINT on.
    unsafe { libc::kill(sender.id().cast_signed(), libc::SIGINT) };
    let _ = sender.wait();
    let cpu = (ticks_after - ticks_before) as f64 / 100.0;
    let received = rx_after - rx_before;
    let peak = daemon.memory_mb("VmHWM:");
    std::thread::sleep(Duration::from_secs(2));
    let rows: u64 = daemon
        .log_text()
        .lines()
        .filter_map(|l| {
            l.split(" rows=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    let (evicted, new_tuples, deferred) = (
        daemon.last_flush("evicted"),
        daemon.last_flush("new_tuples"),
        daemon.last_flush("deferred"),
    );
    let out = daemon.out.clone();
    let stop = daemon.stop();
    let _ = fs::remove_dir_all(&out);
    println!(
        "flood: {:.1} M spoofed SYNs received in {wall:.0} s ({:.0} kpps; {FLOOD_TUPLES} distinct tuples, looped), \
         --flush-interval 1s, default map: {new_tuples} new tuples, {rows} rows written, {deferred} deferred at the end, \
         {evicted} evicted (lost, counted)",
        received as f64 / 1e6,
        received as f64 / wall / 1e3,
    );
    println!(
        "flood: daemon CPU {cpu:.1} s over {wall:.0} s = {:.0}% of a core (target <= 50%: {}); peak resident {peak:.0} MB \
         (target <= 200 MB: {}); SIGTERM to exit {stop:.1} s (target <= 5 s: {})",
        100.0 * cpu / wall,
        met(cpu / wall <= 0.5),
        met(peak <= 200.0),
        met(stop <= 5.0),
    );
    fs::remove_dir_all(&dir).unwrap();
}

/// What is attached to the sensor's end of the veth for one round.
#[derive(Clone, Copy, PartialEq)]
enum Peer {
    Nothing,
    Tsusen,
    TsusenGeneric,
    Nftables,
    Tcpdump,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Nothing => "nothing attached",
            Peer::Tsusen => "tsusen (auto: native on veth)",
            Peer::TsusenGeneric => "tsusen --xdp-mode generic",
            Peer::Nftables => "nftables dynamic set",
            Peer::Tcpdump => "tcpdump -w, SYN filter",
        }
    }
}

/// Attach `peer` in the sensor's namespace; the returned guard detaches it.
fn attach(net: &TestNet, peer: Peer, dir: &std::path::Path) -> Box<dyn FnOnce()> {
    match peer {
        Peer::Nothing => Box::new(|| {}),
        Peer::Tsusen | Peer::TsusenGeneric => {
            let mode = if peer == Peer::Tsusen {
                "auto"
            } else {
                "generic"
            };
            let daemon = Daemon::start(net, &["--xdp-mode", mode]);
            Box::new(move || {
                let out = daemon.out.clone();
                daemon.stop();
                let _ = fs::remove_dir_all(&out);
            })
        }
        Peer::Nftables => {
            let rules = "table inet tsusen_bench {\n\
                 set seen { type ipv4_addr . ipv4_addr . inet_service; flags dynamic; size 1048576; }\n\
                 chain input {\n\
                 type filter hook prerouting priority 0; policy accept;\n\
                 tcp flags & (syn | ack) == syn add @seen { ip saddr . ip daddr . tcp dport }\n\
                 }\n\
                 }\n";
            let file = dir.join("rules.nft");
            fs::write(&file, rules).unwrap();
            net.sensor.exec("nft", &["-f", file.to_str().unwrap()]);
            let ns = net.sensor.name.clone();
            Box::new(move || {
                tsusen::testing::run(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        &ns,
                        "nft",
                        "delete",
                        "table",
                        "inet",
                        "tsusen_bench",
                    ],
                );
            })
        }
        Peer::Tcpdump => {
            let file = dir.join("syns.pcap");
            let mut child = net
                .sensor
                .command("tcpdump")
                .args(["-q", "-n", "-i", &net.sensor_if, "-w"])
                .arg(&file)
                .arg("tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_secs(2));
            Box::new(move || {
                // SAFETY: kill(2) on our own child.
                unsafe { libc::kill(child.id().cast_signed(), libc::SIGINT) };
                let _ = child.wait();
                let _ = fs::remove_file(&file);
            })
        }
    }
}

fn side_by_side() {
    const PACKETS: u32 = 1_000_000;
    let mut missing: Vec<&str> = ["tcpreplay", "nft", "tcpdump"]
        .into_iter()
        .filter(|t| !have_program(t))
        .collect();
    if !missing.is_empty() {
        missing.sort_unstable();
        println!(
            "SKIPPED the side-by-side: needs {} (cargo xtask setup --test-tools)",
            missing.join(", ")
        );
        return;
    }
    let net = TestNet::new();
    let dir = std::env::temp_dir().join(unique_name("bench-side"));
    fs::create_dir_all(&dir).unwrap();
    let mac = pcapgen::parse_mac(&net.sensor_mac());
    let repeated = dir.join("repeated.pcap");
    pcapgen::write_repeat_pcap(&repeated, PACKETS, "198.19.0.7", TestNet::SENSOR_IP, mac).unwrap();
    let fresh = dir.join("fresh.pcap");
    pcapgen::write_flood_pcap(&fresh, PACKETS, TestNet::SENSOR_IP, mac).unwrap();
    let peers = [
        Peer::Nothing,
        Peer::Tsusen,
        Peer::TsusenGeneric,
        Peer::Nftables,
        Peer::Tcpdump,
    ];
    // Median of three rounds; in each round every peer in turn, so load
    // changes on this shared machine hit them alike.
    let mut rates = vec![[Vec::new(), Vec::new()]; peers.len()];
    for _round in 0..3 {
        for (i, &peer) in peers.iter().enumerate() {
            let detach = attach(&net, peer, &dir);
            for (s, pcap) in [&repeated, &fresh].into_iter().enumerate() {
                let (_, pps) = tcpreplay(&net, pcap, 1, Duration::from_secs(30));
                rates[i][s].push(pps);
            }
            detach();
        }
    }
    let median = |v: &Vec<f64>| {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratio: Vec<[f64; 2]> = rates
        .iter()
        .map(|r| {
            [
                median(&r[0]) / median(&rates[0][0]),
                median(&r[1]) / median(&rates[0][1]),
            ]
        })
        .collect();
    println!();
    println!(
        "side by side, one veth, 1,000,000-packet streams, sender's rate (median of 3) as a ratio to nothing attached:"
    );
    println!(
        "{:<32} {:>22} {:>26}",
        "", "one tuple repeated", "a new tuple per packet"
    );
    for (i, &peer) in peers.iter().enumerate() {
        println!(
            "{:<32} {:>12.0} kpps {:>5.2} {:>16.0} kpps {:>5.2}",
            peer.name(),
            median(&rates[i][0]) / 1e3,
            ratio[i][0],
            median(&rates[i][1]) / 1e3,
            ratio[i][1]
        );
    }
    let (ts, nft, dump) = (ratio[1], ratio[3], ratio[4]);
    println!(
        "target: tsusen above nftables on both streams: {}; within 10% of tcpdump on the repeated stream: {}",
        met(ts[0] > nft[0] && ts[1] > nft[1]),
        met(ts[0] >= 0.9 * dump[0])
    );
    fs::remove_dir_all(&dir).unwrap();
}

fn main() {
    if std::env::var_os("TSUSEN_BENCH_SIDE_ONLY").is_some() {
        side_by_side();
        return;
    }
    if !is_root() {
        println!("SKIPPED the live sensor measurements: needs root");
        return;
    }
    drain_and_memory();
    if std::env::var_os("TSUSEN_BENCH_NO_SWEEP").is_none() {
        masscan_sweep();
    }
    if !have_program("tcpreplay") {
        println!(
            "SKIPPED the flood and the side-by-side: needs tcpreplay (cargo xtask setup --test-tools)"
        );
        return;
    }
    if std::env::var_os("TSUSEN_BENCH_NO_FLOOD").is_none() {
        flood();
    }
    if std::env::var_os("TSUSEN_BENCH_NO_SIDE").is_none() {
        side_by_side();
    }
}
