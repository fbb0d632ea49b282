//! `tsusen replay` on captures written by real tools (tcpdump, tshark; made
//! by tests/data/make-captures.sh): the rows a person expects, and one clear
//! error for each kind of bad input.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use tsusen::testing::{
    one_error_line,
    packet::Pkt,
    pcapgen::{PcapNg, binary_resolution, write_days_pcap},
    unique_name,
};

const LOCAL: [&str; 4] = ["--local", "198.18.0.1", "--local", "2001:db8:7:1::1"];

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn out_dir() -> PathBuf {
    std::env::temp_dir().join(unique_name("replay"))
}

fn replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tsusen"))
        .arg("replay")
        .args(args)
        .output()
        .unwrap()
}

fn day_file(dir: &Path) -> String {
    fs::read_to_string(dir.join("2026-11-24.csv")).unwrap()
}

#[test]
fn tcpdump_and_tshark_captures_give_the_expected_rows() {
    let expected = fs::read_to_string(data("scan.expected.csv")).unwrap();
    // Ethernet pcap (tcpdump), Linux cooked v2 (tcpdump -i any), pcapng with
    // nanosecond timestamps (tshark).
    for capture in ["scan.pcap", "scan-any.pcap", "scan.pcapng"] {
        let dir = out_dir();
        let pcap = data(capture);
        let mut args = vec![pcap.to_str().unwrap(), "--out-dir", dir.to_str().unwrap()];
        args.extend(LOCAL);
        let out = replay(&args);
        assert!(
            out.status.success(),
            "{capture}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(day_file(&dir), expected, "{capture}");
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn replaying_again_adds_nothing() {
    let dir = out_dir();
    let pcap = data("scan.pcap");
    let mut args = vec![pcap.to_str().unwrap(), "--out-dir", dir.to_str().unwrap()];
    args.extend(LOCAL);
    assert!(replay(&args).status.success());
    let first = day_file(&dir);
    // The same packets twice more, in one run and in another.
    let twice = [pcap.to_str().unwrap(), pcap.to_str().unwrap()];
    let mut args = twice.to_vec();
    args.extend(["--out-dir", dir.to_str().unwrap()]);
    args.extend(LOCAL);
    assert!(replay(&args).status.success());
    assert_eq!(day_file(&dir), first);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_local_networks_every_packet_is_inbound() {
    let dir = out_dir();
    let pcap = data("scan.pcap");
    let out = replay(&[pcap.to_str().unwrap(), "--out-dir", dir.to_str().unwrap()]);
    assert!(out.status.success());
    let rows = day_file(&dir);
    // The sensor's own UDP question and SYN now count, and so does the answer
    // to the question: nothing says which side is local.
    assert!(rows.contains("UDP 53 198.18.0.1 198.18.0.2 "), "{rows}");
    assert!(rows.contains("TCP 9 198.18.0.1 198.18.0.2 "), "{rows}");
    assert!(rows.contains("UDP 40001 198.18.0.2 198.18.0.1 "), "{rows}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ignore_lists_apply() {
    let dir = out_dir();
    let pcap = data("scan.pcapng");
    let mut args = vec![pcap.to_str().unwrap(), "--out-dir", dir.to_str().unwrap()];
    args.extend(LOCAL);
    args.extend([
        "--ignore-port",
        "22",
        "--ignore-port",
        "400-500",
        "--ignore-net",
        "2001:db8:7::/48",
    ]);
    assert!(replay(&args).status.success());
    let rows: Vec<String> = day_file(&dir)
        .lines()
        .skip(1)
        .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
        .collect();
    assert_eq!(
        rows,
        [
            "TCP 80 198.18.0.2 198.18.0.1",
            "ICMP - 198.18.0.2 198.18.0.1",
            "UDP 5353 198.18.0.2 198.18.0.1"
        ]
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_gets_one_clear_error_line() {
    let dir = out_dir();
    let d = dir.to_str().unwrap();
    fs::create_dir_all(&dir).unwrap();

    let line = one_error_line(&replay(&["/nonexistent/x.pcap", "--out-dir", d]));
    assert!(line.contains("cannot open /nonexistent/x.pcap"), "{line}");

    let text = dir.join("notes.txt");
    fs::write(&text, "these are not packets").unwrap();
    let line = one_error_line(&replay(&[text.to_str().unwrap(), "--out-dir", d]));
    assert!(line.contains("is not a pcap or pcapng file"), "{line}");

    // A pcap header with link type 127 (802.11 radiotap).
    let radiotap = dir.join("wifi.pcap");
    let mut header = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    header.extend_from_slice(&[0; 8]);
    header.extend_from_slice(&65535u32.to_le_bytes());
    header.extend_from_slice(&127u32.to_le_bytes());
    fs::write(&radiotap, header).unwrap();
    let line = one_error_line(&replay(&[radiotap.to_str().unwrap(), "--out-dir", d]));
    assert!(
        line.contains("unsupported link type IEEE802_11_RADIOTAP (127)"),
        "{line}"
    );

    let pcap = data("scan.pcap");
    let line = one_error_line(&replay(&[
        pcap.to_str().unwrap(),
        "--out-dir",
        d,
        "--local",
        "198.18.0.0/33",
    ]));
    assert!(line.contains("invalid network \"198.18.0.0/33\""), "{line}");
    let line = one_error_line(&replay(&[
        pcap.to_str().unwrap(),
        "--out-dir",
        d,
        "--ignore-port",
        "http",
    ]));
    assert!(line.contains("invalid port \"http\""), "{line}");
    let line = one_error_line(&replay(&[
        pcap.to_str().unwrap(),
        "--out-dir",
        "/proc/nope",
    ]));
    assert!(line.contains("out-dir /proc/nope"), "{line}");
    fs::remove_dir_all(&dir).unwrap();
}

/// 2026-11-24 12:00:00 UTC.
const T: u64 = 1_795_521_600;
const NS: u64 = 1_000_000_000;

fn syn(port: u16) -> Vec<u8> {
    Pkt::syn("198.51.100.7", "192.0.2.1", port).bytes()
}

/// Replay one capture into a fresh out-dir; (out-dir, output).
fn replay_one(ng: &PcapNg) -> (PathBuf, PathBuf, Output) {
    let dir = out_dir();
    fs::create_dir_all(&dir).unwrap();
    let capture = dir.with_extension("pcapng");
    ng.write(&capture).unwrap();
    let out = replay(&[
        capture.to_str().unwrap(),
        "--out-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, capture, out)
}

fn day_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The capture times tshark reads (whole seconds; `None` for a packet
/// without one), when tshark is installed: an independent reader agrees on
/// what the capture says.
fn tshark_seconds(capture: &Path) -> Option<Vec<Option<u64>>> {
    let out = Command::new("tshark")
        .args([
            "-r",
            capture.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.time_epoch",
        ])
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.split('.').next().unwrap().parse().ok())
            .collect(),
    )
}

#[test]
fn pcapng_timestamps_are_exact_in_every_resolution() {
    let mut ng = PcapNg::new();
    ng.interface(None, None) // µs
        .interface(Some(9), None) // ns
        .interface(Some(binary_resolution(20)), None)
        .interface(Some(binary_resolution(30)), None)
        .interface(Some(3), Some(T.cast_signed())); // ms, from an offset
    // Port 1000 + i at T + i seconds and a half.
    ng.packet(0, (T + 1) * 1_000_000 + 500_000, &syn(1001))
        .packet(1, (T + 2) * NS + NS / 2, &syn(1002))
        .packet(2, ((T + 3) << 20) + (1 << 19), &syn(1003))
        .packet(3, ((T + 4) << 30) + (1 << 29), &syn(1004))
        .packet(4, 5_500, &syn(1005))
        .obsolete_packet(1, (T + 6) * NS + NS / 2, &syn(1006));
    let (dir, capture, _) = replay_one(&ng);
    let expected: String = (1..=6)
        .map(|i| format!("TCP {} 198.51.100.7 192.0.2.1 {}\n", 1000 + i, T + i))
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(day_files(&dir), ["2026-11-24.csv"]);
    assert_eq!(
        day_file(&dir),
        format!("proto dst_port src_ip dst_ip timestamp\n{expected}")
    );
    if let Some(seconds) = tshark_seconds(&capture) {
        assert_eq!(
            seconds,
            (1..=6).map(|i| Some(T + i)).collect::<Vec<_>>(),
            "tshark"
        );
    }
    fs::remove_dir_all(&dir).unwrap();
    fs::remove_file(&capture).unwrap();
}

#[test]
fn packets_after_2149_06_06_are_skipped_with_one_warning() {
    // Day 65,535 is the last a 16-bit day number holds.
    let last_day = 65_535 * 86_400;
    let mut ng = PcapNg::new();
    ng.interface(Some(9), None)
        .packet(0, (last_day + 3_600) * NS, &syn(1))
        .packet(0, (last_day + 86_400 + 10) * NS, &syn(2))
        .packet(0, (last_day + 50 * 365 * 86_400) * NS, &syn(3))
        .packet(0, u64::MAX, &syn(4));
    let (dir, capture, out) = replay_one(&ng);
    assert_eq!(day_files(&dir), ["2149-06-06.csv"]);
    let rows = fs::read_to_string(dir.join("2149-06-06.csv")).unwrap();
    assert_eq!(rows.lines().skip(1).count(), 1, "{rows}");
    assert!(rows.contains("TCP 1 198.51.100.7 192.0.2.1 "), "{rows}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("skipped 3 packets"), "{stderr}");
    fs::remove_dir_all(&dir).unwrap();
    fs::remove_file(&capture).unwrap();
}

#[test]
fn simple_packet_blocks_take_the_time_of_the_packet_before_them() {
    let mut ng = PcapNg::new();
    ng.interface(Some(9), None)
        .simple_packet(&syn(2001)) // nothing before it: no time, skipped
        .packet(0, T * NS + 7, &syn(2002))
        .simple_packet(&syn(2003))
        .simple_packet(
            &Pkt::udp("198.51.100.7", "192.0.2.1", 5000, 2004)
                .payload(3)
                .bytes(),
        )
        .section() // a new section starts without a time
        .interface(Some(6), None)
        .simple_packet(&syn(2005));
    let (dir, capture, out) = replay_one(&ng);
    assert_eq!(
        day_file(&dir),
        format!(
            "proto dst_port src_ip dst_ip timestamp\n\
             TCP 2002 198.51.100.7 192.0.2.1 {T}\n\
             TCP 2003 198.51.100.7 192.0.2.1 {T}\n\
             UDP 2004 198.51.100.7 192.0.2.1 {T}\n"
        )
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("skipped 2 "), "{stderr}");
    if let Some(seconds) = tshark_seconds(&capture) {
        assert_eq!(seconds.len(), 5, "tshark reads every packet: {seconds:?}");
    }
    fs::remove_dir_all(&dir).unwrap();
    fs::remove_file(&capture).unwrap();
}

/// Run `tsusen replay` and return its peak resident memory in KiB.
#[expect(
    clippy::zombie_processes,
    reason = "wait4 reaps the child, to read its own rusage"
)]
fn replay_peak_kib(args: &[&str]) -> i64 {
    let child = Command::new(env!("CARGO_BIN_EXE_tsusen"))
        .arg("replay")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is valid; wait4 reaps this child only.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: status and usage are valid for writes; the pid is our child.
    let pid = unsafe { libc::wait4(child.id().cast_signed(), &raw mut status, 0, &raw mut usage) };
    assert_eq!(pid, child.id().cast_signed());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "replay failed"
    );
    usage.ru_maxrss
}

#[test]
fn a_long_capture_is_written_day_by_day_in_the_memory_of_one_day() {
    // 2026-11-20 00:00 UTC; 60,000 distinct rows a day.
    let first_day = 1_795_132_800;
    let per_day = 60_000;
    let dir = out_dir();
    fs::create_dir_all(&dir).unwrap();
    let one = dir.join("one-day.pcap");
    let six = dir.join("six-days.pcap");
    write_days_pcap(&one, 1, per_day, first_day).unwrap();
    write_days_pcap(&six, 6, per_day, first_day).unwrap();
    let (out1, out6) = (dir.join("out1"), dir.join("out6"));
    let one_kib = replay_peak_kib(&[one.to_str().unwrap(), "--out-dir", out1.to_str().unwrap()]);
    let six_kib = replay_peak_kib(&[six.to_str().unwrap(), "--out-dir", out6.to_str().unwrap()]);
    let days = day_files(&out6);
    assert_eq!(days.len(), 6, "{days:?}");
    for day in &days {
        let text = fs::read_to_string(out6.join(day)).unwrap();
        assert_eq!(text.lines().count(), 1 + per_day as usize, "{day}");
    }
    assert_eq!(
        fs::read_to_string(out1.join(&days[0])).unwrap(),
        fs::read_to_string(out6.join(&days[0])).unwrap(),
        "the first day is the same whether or not more days follow"
    );
    eprintln!("replay peak memory: one day {one_kib} KiB, six days {six_kib} KiB");
    // Holding every row would need about six times one day's rows.
    assert!(
        six_kib < one_kib * 2,
        "six days took {six_kib} KiB, one day {one_kib} KiB"
    );
    // Again: nothing new.
    let before: Vec<String> = days
        .iter()
        .map(|d| fs::read_to_string(out6.join(d)).unwrap())
        .collect();
    replay_peak_kib(&[six.to_str().unwrap(), "--out-dir", out6.to_str().unwrap()]);
    let after: Vec<String> = days
        .iter()
        .map(|d| fs::read_to_string(out6.join(d)).unwrap())
        .collect();
    assert!(before == after, "a second replay changed the day files");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_negative_if_tsoffset_is_one_clear_error() {
    let dir = out_dir();
    fs::create_dir_all(&dir).unwrap();
    let capture = dir.join("negative.pcapng");
    let mut ng = PcapNg::new();
    ng.interface(Some(9), Some(-5)).packet(0, T * NS, &syn(1));
    ng.write(&capture).unwrap();
    let line = one_error_line(&replay(&[
        capture.to_str().unwrap(),
        "--out-dir",
        dir.to_str().unwrap(),
    ]));
    assert!(line.contains("if_tsoffset -5 s is negative"), "{line}");
    fs::remove_dir_all(&dir).unwrap();
}
