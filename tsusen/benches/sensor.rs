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
            .args(["run", "--iface", &net.sensor_if])
            .args(if extra.contains(&"--flush-interval") {
                &[][..]
            } else {
                &["--flush-interval", "1s"][..]
            })
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
/// most `limit`: packets sent and the rate it reports (packets/s). Without
/// flow statistics: tcpreplay's own table of flows (a hash walk and a 40-byte
/// compare per packet, over a million flows in the new-tuple stream) took
/// half the sender's CPU there, whatever the receiver did.
fn tcpreplay(net: &TestNet, pcap: &std::path::Path, loops: u32, limit: Duration) -> (u64, f64) {
    let out = net
        .peer
        .command("timeout")
        .args(["-s", "INT", &limit.as_secs().to_string()])
        .args([
            "tcpreplay",
            "--topspeed",
            "--preload-pcap",
            "--no-flow-stats",
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

/// What is attached to the sensor's end of the veth for one round. Besides
/// tsusen and its peers, the parts of tsusen's cost: XDP attached at all (the
/// empty program), the programs without the daemon, the TC egress program
/// alone (it runs on every reply the sensor's namespace sends: RSTs here).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Peer {
    Nothing,
    Egress,
    FloorNative,
    FloorGeneric,
    ProgramsNative,
    ProgramsGeneric,
    TsusenNative,
    TsusenGeneric,
    TsusenQuiet,
    TsusenSmallMap,
    Nftables,
    Tcpdump,
}

impl Peer {
    const ALL: [Peer; 12] = [
        Peer::Nothing,
        Peer::Egress,
        Peer::FloorNative,
        Peer::FloorGeneric,
        Peer::ProgramsNative,
        Peer::ProgramsGeneric,
        Peer::TsusenNative,
        Peer::TsusenGeneric,
        Peer::TsusenQuiet,
        Peer::TsusenSmallMap,
        Peer::Nftables,
        Peer::Tcpdump,
    ];

    fn name(self) -> &'static str {
        match self {
            Peer::Nothing => "nothing attached",
            Peer::Egress => "TC egress program alone",
            Peer::FloorNative => "empty XDP program, native",
            Peer::FloorGeneric => "empty XDP program, generic",
            Peer::ProgramsNative => "XDP + egress, no daemon, native",
            Peer::ProgramsGeneric => "XDP + egress, no daemon, generic",
            Peer::TsusenNative => "tsusen --xdp-mode native",
            Peer::TsusenGeneric => "tsusen --xdp-mode generic",
            Peer::TsusenQuiet => "tsusen (auto), flush every 15m",
            Peer::TsusenSmallMap => "tsusen (auto), --map-size 65536",
            Peer::Nftables => "nftables dynamic set",
            Peer::Tcpdump => "tcpdump -w, SYN filter",
        }
    }

    /// The name `TSUSEN_BENCH_SIDE_PEERS` picks it by.
    fn key(self) -> &'static str {
        match self {
            Peer::Nothing => "nothing",
            Peer::Egress => "egress",
            Peer::FloorNative => "floor-native",
            Peer::FloorGeneric => "floor-generic",
            Peer::ProgramsNative => "programs-native",
            Peer::ProgramsGeneric => "programs-generic",
            Peer::TsusenNative => "tsusen-native",
            Peer::TsusenGeneric => "tsusen-generic",
            Peer::TsusenQuiet => "tsusen-quiet",
            Peer::TsusenSmallMap => "tsusen-small-map",
            Peer::Nftables => "nft",
            Peer::Tcpdump => "tcpdump",
        }
    }
}

/// Load the object in the sensor's namespace and attach the XDP program
/// `xdp` (if any) in `mode`, and the TC egress program if `egress`: tsusen's
/// programs with the daemon's tables (the sensor's network local) but no
/// daemon, or the empty program. Dropping the `Ebpf` detaches them.
fn attach_programs(
    net: &TestNet,
    xdp: Option<(&str, aya::programs::xdp::XdpMode)>,
    egress: bool,
) -> aya::Ebpf {
    use aya::programs::{SchedClassifier, TcAttachType, Xdp, tc};
    use tsusen::capture;
    tsusen::testing::live::in_netns(&net.sensor, || {
        let mut ebpf = capture::load(&capture::LoadOptions::default()).unwrap();
        let mut tables = tsusen::tables::Tables::default();
        tables
            .local
            .insert(tsusen::tables::parse_net("198.18.0.0/24").unwrap());
        capture::write_tables(&mut ebpf, &tables, capture::clock::wall_offset_ns()).unwrap();
        if let Some((name, mode)) = xdp {
            let program: &mut Xdp = ebpf.program_mut(name).unwrap().try_into().unwrap();
            if program.fd().is_err() {
                program.load().unwrap();
            }
            program.attach(&net.sensor_if, mode).unwrap();
        }
        if egress {
            let program: &mut SchedClassifier = ebpf
                .program_mut(capture::EGRESS_PROGRAM)
                .unwrap()
                .try_into()
                .unwrap();
            program.load().unwrap();
            let _ = tc::qdisc_add_clsact(&net.sensor_if);
            program
                .attach(&net.sensor_if, TcAttachType::Egress)
                .unwrap();
        }
        ebpf
    })
}

/// Attach `peer` in the sensor's namespace; the returned guard detaches it
/// (and gives the daemon's pid, if one runs, for its CPU time).
fn attach(net: &TestNet, peer: Peer, dir: &std::path::Path) -> (Box<dyn FnOnce()>, Option<u32>) {
    use aya::programs::xdp::XdpMode::{Driver as DrvMode, Skb as SkbMode};
    let programs = |xdp, egress| -> (Box<dyn FnOnce()>, Option<u32>) {
        let ebpf = attach_programs(net, xdp, egress);
        (Box::new(move || drop(ebpf)), None)
    };
    match peer {
        Peer::Nothing => (Box::new(|| {}), None),
        Peer::Egress => programs(None, true),
        Peer::FloorNative => programs(Some((tsusen::capture::FLOOR_PROGRAM, DrvMode)), false),
        Peer::FloorGeneric => programs(Some((tsusen::capture::FLOOR_PROGRAM, SkbMode)), false),
        Peer::ProgramsNative => programs(Some((tsusen::capture::XDP_PROGRAM, DrvMode)), true),
        Peer::ProgramsGeneric => programs(Some((tsusen::capture::XDP_PROGRAM, SkbMode)), true),
        Peer::TsusenNative | Peer::TsusenGeneric | Peer::TsusenQuiet | Peer::TsusenSmallMap => {
            let args: &[&str] = match peer {
                Peer::TsusenNative => &["--xdp-mode", "native"],
                Peer::TsusenGeneric => &["--xdp-mode", "generic"],
                // The default flush interval: no drain during the stream.
                Peer::TsusenQuiet => &["--flush-interval", "15m"],
                _ => &["--map-size", "65536"],
            };
            let daemon = Daemon::start(net, args);
            let pid = daemon.pid();
            (
                Box::new(move || {
                    let out = daemon.out.clone();
                    daemon.stop();
                    let _ = fs::remove_dir_all(&out);
                }),
                Some(pid),
            )
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
            (
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
                }),
                None,
            )
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
            (
                Box::new(move || {
                    // SAFETY: kill(2) on our own child.
                    unsafe { libc::kill(child.id().cast_signed(), libc::SIGINT) };
                    let _ = child.wait();
                    let _ = fs::remove_file(&file);
                }),
                None,
            )
        }
    }
}

/// A counter of a veth end, in its namespace.
fn link_counter(ns: &tsusen::testing::Netns, iface: &str, counter: &str) -> u64 {
    ns.exec(
        "cat",
        &[&format!("/sys/class/net/{iface}/statistics/{counter}")],
    )
    .trim()
    .parse()
    .unwrap_or(0)
}

/// `perf record -a -g` into `file` until the returned child gets SIGINT.
fn perf_record(file: &std::path::Path) -> std::process::Child {
    let child = std::process::Command::new("perf")
        .args(["record", "-a", "-g", "-q", "-o"])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    child
}

/// One stream through one peer: what the sender reported, and what it cost
/// on the way.
#[derive(Clone, Copy, Default)]
struct Round {
    /// The sender's rate, packets/s.
    pps: f64,
    /// That rate over the rate with nothing attached just before.
    ratio: f64,
    /// Packets the sensor's end received / packets sent.
    delivered: f64,
    /// Packets the sensor's end sent back (RSTs) / packets sent.
    replies: f64,
    /// The daemon's CPU seconds during the stream (0 without a daemon).
    daemon_cpu: f64,
}

/// One stream from the peer (under `perf record -a -g` into `perf`, if
/// given), with the counters of the sensor's end and the daemon's CPU time.
fn stream(
    net: &TestNet,
    pcap: &std::path::Path,
    daemon: Option<u32>,
    perf: Option<std::path::PathBuf>,
) -> Round {
    let perf = perf.map(|file| perf_record(&file));
    let rx = link_counter(&net.sensor, &net.sensor_if, "rx_packets");
    let tx = link_counter(&net.sensor, &net.sensor_if, "tx_packets");
    let ticks = daemon.map(cpu_ticks);
    let (sent, pps) = tcpreplay(net, pcap, 1, Duration::from_secs(30));
    let daemon_cpu = match (daemon, ticks) {
        (Some(pid), Some(t)) => (cpu_ticks(pid) - t) as f64 / 100.0,
        _ => 0.0,
    };
    let received = link_counter(&net.sensor, &net.sensor_if, "rx_packets") - rx;
    let replied = link_counter(&net.sensor, &net.sensor_if, "tx_packets") - tx;
    if let Some(mut perf) = perf {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(perf.id().cast_signed(), libc::SIGINT) };
        let _ = perf.wait();
    }
    Round {
        pps,
        ratio: 0.0,
        delivered: received as f64 / sent.max(1) as f64,
        replies: replied as f64 / sent.max(1) as f64,
        daemon_cpu,
    }
}

/// What the TC egress program costs on each packet the host sends: the
/// streams here get no answer (their TCP checksums are wrong on purpose), but
/// a host on the Internet answers every SYN to a closed port with a RST, and
/// the program runs on each (BPF_PROG_TEST_RUN, 1,000,000 runs, beside the
/// empty XDP program).
fn egress_cost() {
    use tsusen::testing::{kernel::KernelSensor, packet::Pkt};
    let Ok(mut kernel) = KernelSensor::load(&tsusen::tables::Tables::default()) else {
        println!("SKIPPED the egress program's cost: cannot load the programs");
        return;
    };
    let tcp = Pkt::syn(TestNet::SENSOR_IP, "198.19.0.7", 443).bytes();
    let udp = Pkt::udp(TestNet::SENSOR_IP, "198.19.0.7", 40000, 53).bytes();
    let ns = |d: Duration| d.as_nanos();
    let runs = 1_000_000;
    println!(
        "TC egress program per packet sent (BPF_PROG_TEST_RUN): TCP (a RST) {} ns, UDP (a new flow, then known) {} ns; \
         the empty XDP program {} ns",
        ns(kernel.time_egress(&tcp, runs).unwrap()),
        ns(kernel.time_egress(&udp, runs).unwrap()),
        ns(kernel.time_floor(&tcp, runs).unwrap()),
    );
}

/// Which mode `tsusen run --xdp-mode auto` picks on this veth, from its log.
fn auto_mode(net: &TestNet) -> String {
    let daemon = Daemon::start(net, &[]);
    let text = daemon.log_text();
    let out = daemon.out.clone();
    daemon.stop();
    let _ = fs::remove_dir_all(&out);
    // "watching IFACE (MODE) -> ..."
    let watching = format!("watching {} (", net.sensor_if);
    text.lines()
        .find_map(|l| l.split_once(watching.as_str()).map(|(_, m)| m.to_owned()))
        .and_then(|m| m.split_once(')').map(|(mode, _)| mode.to_owned()))
        .unwrap_or_else(|| "?".into())
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
    // Exploring: fewer rounds, fewer peers ("nothing" always runs: the
    // ratios are to it), and `perf record -a -g` of the first round's streams
    // into a directory.
    let rounds: usize = std::env::var("TSUSEN_BENCH_SIDE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let wanted = std::env::var("TSUSEN_BENCH_SIDE_PEERS").ok();
    let peers: Vec<Peer> = Peer::ALL
        .into_iter()
        .filter(|p| {
            *p == Peer::Nothing
                || wanted
                    .as_deref()
                    .is_none_or(|w| w.split(',').any(|k| k.trim() == p.key()))
        })
        .collect();
    let perf_dir = std::env::var_os("TSUSEN_BENCH_SIDE_PERF").map(std::path::PathBuf::from);
    if let Some(dir) = &perf_dir {
        fs::create_dir_all(dir).unwrap();
    }
    let net = TestNet::new();
    let dir = std::env::temp_dir().join(unique_name("bench-side"));
    fs::create_dir_all(&dir).unwrap();
    let mac = pcapgen::parse_mac(&net.sensor_mac());
    let repeated = dir.join("repeated.pcap");
    pcapgen::write_repeat_pcap(&repeated, PACKETS, "198.19.0.7", TestNet::SENSOR_IP, mac).unwrap();
    let fresh = dir.join("fresh.pcap");
    pcapgen::write_flood_pcap(&fresh, PACKETS, TestNet::SENSOR_IP, mac).unwrap();
    egress_cost();
    let load_before = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    // Median of the rounds. This 2-core machine is shared: its load moves
    // within seconds, so each peer is measured right after "nothing
    // attached" and its ratio is to that pair's rate; the order of the peers
    // turns by one each round.
    let mut results = vec![[Vec::new(), Vec::new()]; peers.len()];
    for round in 0..rounds {
        for k in 1..peers.len() {
            let i = 1 + (k - 1 + round) % (peers.len() - 1);
            let peer = peers[i];
            let perf = |s: usize, p: Peer| {
                perf_dir
                    .as_ref()
                    .filter(|_| round == 0)
                    .map(|d| d.join(format!("{}-{s}.data", p.key())))
            };
            let mut alone = [0.0; 2];
            for (s, pcap) in [&repeated, &fresh].into_iter().enumerate() {
                let nothing = stream(&net, pcap, None, perf(s, Peer::Nothing));
                alone[s] = nothing.pps;
                results[0][s].push(Round {
                    ratio: 1.0,
                    ..nothing
                });
            }
            let (detach, daemon) = attach(&net, peer, &dir);
            for (s, pcap) in [&repeated, &fresh].into_iter().enumerate() {
                let with = stream(&net, pcap, daemon, perf(s, peer));
                results[i][s].push(Round {
                    ratio: with.pps / alone[s],
                    ..with
                });
            }
            detach();
            // The clsact qdisc that carried a TC program stays behind.
            let _ = net
                .sensor
                .command("tc")
                .args(["qdisc", "del", "dev", &net.sensor_if, "clsact"])
                .stderr(Stdio::null())
                .status();
        }
    }
    let auto = auto_mode(&net);
    let load_after = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let median = |v: &[Round], f: fn(&Round) -> f64| {
        let mut v: Vec<f64> = v.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let pps = |i: usize, s: usize| median(&results[i][s], |r| r.pps);
    let ratio = |i: usize, s: usize| median(&results[i][s], |r| r.ratio);
    println!();
    println!(
        "side by side, one veth, 1,000,000-packet streams, sender's rate (median of {rounds}) and its ratio \
         to nothing attached just before (median of {rounds}); delivered = received by the sensor's end / sent; replies = sent back / sent; \
         daemon = its CPU seconds during the stream (load average before: {}, after: {}):",
        load_before.trim(),
        load_after.trim()
    );
    println!(
        "{:<34} {:>43} {:>43}",
        "", "one tuple repeated", "a new tuple per packet"
    );
    for (i, &peer) in peers.iter().enumerate() {
        let cell = |s: usize| {
            format!(
                "{:>5.0} kpps {:>4.2} {:>5.1}% {:>5.1}% {:>5.2}s",
                pps(i, s) / 1e3,
                ratio(i, s),
                100.0 * median(&results[i][s], |r| r.delivered),
                100.0 * median(&results[i][s], |r| r.replies),
                median(&results[i][s], |r| r.daemon_cpu)
            )
        };
        println!("{:<34} {:>43} {:>43}", peer.name(), cell(0), cell(1));
    }
    println!("each round (nothing attached: kpps; the others: ratio to the nothing just before):");
    for (i, &peer) in peers.iter().enumerate() {
        let all = |s: usize| {
            results[i][s]
                .iter()
                .map(|r| {
                    if i == 0 {
                        format!("{:.0}", r.pps / 1e3)
                    } else {
                        format!("{:.2}", r.ratio)
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!("  {:<32} {} | {}", peer.name(), all(0), all(1));
    }
    println!("tsusen --xdp-mode auto attaches here in {auto} mode");
    let row = |p: Peer| peers.iter().position(|&q| q == p);
    let tsusen = if auto == "native" {
        row(Peer::TsusenNative)
    } else {
        row(Peer::TsusenGeneric)
    };
    if let (Some(ts), Some(nft), Some(dump)) = (tsusen, row(Peer::Nftables), row(Peer::Tcpdump)) {
        println!(
            "target: tsusen ({auto}, as auto picks) above nftables on both streams: {}; within 10% of tcpdump on \
             the repeated stream: {}",
            met(ratio(ts, 0) > ratio(nft, 0) && ratio(ts, 1) > ratio(nft, 1)),
            met(ratio(ts, 0) >= 0.9 * ratio(dump, 0))
        );
    }
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
