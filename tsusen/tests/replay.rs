//! `tsusen replay` on captures written by real tools (tcpdump, tshark; made
//! by tests/data/make-captures.sh): the rows a person expects, and one clear
//! error for each kind of bad input.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use tsusen::testing::one_error_line;
use tsusen::testing::unique_name;

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
