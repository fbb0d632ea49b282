//! The XDP program in the real kernel: attached to a veth in a fresh network
//! namespace, fed real TCP, UDP and ICMP from the peer namespace.

use std::{net::IpAddr, thread};

use aya::maps::{HashMap, MapData};
use tsusen::{
    capture::{self, XdpMode},
    dayfile::Row,
    skip_unless,
    testing::{TestNet, have_program, is_root},
};
use tsusen_common::{Config, FirstSeen, Stat, TupleKey, maps};

/// Attach in `mode`, send one attempt of each kind, return the rows recorded
/// and the counters.
fn record_real_traffic(mode: XdpMode) -> (Vec<Row>, [u64; Stat::COUNT as usize], XdpMode) {
    let net = TestNet::new();
    let sensor_ip = TestNet::SENSOR_IP;
    let sensor_ip6 = TestNet::SENSOR_IP6;
    thread::scope(|scope| {
        scope
            .spawn(|| {
                net.sensor.enter_this_thread();
                let mut ebpf = capture::load(&capture::LoadOptions::default()).expect("load");
                capture::set_config(
                    &mut ebpf,
                    &Config {
                        wall_offset_ns: capture::clock::wall_offset_ns(),
                        ..Config::default()
                    },
                )
                .unwrap();
                let (_link, mode) = capture::attach_xdp(&mut ebpf, &net.sensor_if, mode).unwrap();

                // TCP: a SYN to a closed port (answered by RST, so sent once).
                let _ = net
                    .peer
                    .command("bash")
                    .args(["-c", &format!("exec 3<>/dev/tcp/{sensor_ip}/8080")])
                    .output();
                let _ = net
                    .peer
                    .command("bash")
                    .args(["-c", &format!("exec 3<>/dev/tcp/{sensor_ip6}/22")])
                    .output();
                // UDP: one datagram.
                net.peer.exec(
                    "bash",
                    &["-c", &format!("echo hello > /dev/udp/{sensor_ip}/5353")],
                );
                // ICMP: two echo requests, one tuple.
                net.peer
                    .exec("ping", &["-c", "2", "-i", "0.2", "-W", "1", sensor_ip]);

                let stats = capture::read_stats(&ebpf).unwrap();
                let first_seen: HashMap<&MapData, TupleKey, FirstSeen> =
                    HashMap::try_from(ebpf.map(maps::FIRST_SEEN).unwrap()).unwrap();
                let mut rows: Vec<Row> = first_seen
                    .iter()
                    .map(|entry| {
                        let (key, seen) = entry.unwrap();
                        Row::from_entry(&key, &seen)
                    })
                    .collect();
                rows.sort();
                (rows, stats, mode)
            })
            .join()
            .unwrap()
    })
}

fn check(mode: XdpMode) {
    let started = chrono::Utc::now().timestamp();
    let (rows, stats, attached_mode) = record_real_traffic(mode);
    if mode != XdpMode::Auto {
        assert_eq!(attached_mode, mode);
    }
    let peer: IpAddr = TestNet::PEER_IP.parse().unwrap();
    let peer6: IpAddr = TestNet::PEER_IP6.parse().unwrap();
    let shown: Vec<String> = rows
        .iter()
        .map(|r| {
            let s = r.to_string();
            s[..s.rfind(' ').unwrap()].to_owned()
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            format!("ICMP - {peer} {}", TestNet::SENSOR_IP),
            format!("TCP 22 {peer6} {}", TestNet::SENSOR_IP6),
            format!("TCP 8080 {peer} {}", TestNet::SENSOR_IP),
            format!("UDP 5353 {peer} {}", TestNet::SENSOR_IP),
        ],
        "rows recorded in {mode:?} mode"
    );
    for row in &rows {
        assert!(
            (row.timestamp - started).abs() <= 5,
            "timestamp {} is the send time",
            row.timestamp
        );
    }
    let count = |stat: Stat| stats[stat as usize];
    assert_eq!(count(Stat::NewTuples), 4);
    assert!(count(Stat::CandidateTcp) >= 2);
    assert_eq!(count(Stat::CandidateUdp), 1);
    assert_eq!(
        count(Stat::CandidateIcmp),
        2,
        "both echo requests are candidates"
    );
    assert!(tsusen_common::stats::packets(&stats) >= 5);
    assert_eq!(count(Stat::InsertFailed), 0);
}

#[test]
fn native_xdp_on_veth_records_real_tcp_udp_icmp() {
    skip_unless!(is_root(), "needs root to create namespaces and attach XDP");
    skip_unless!(
        have_program("ping"),
        "needs ping (apt-get install iputils-ping)"
    );
    check(XdpMode::Native);
}

#[test]
fn generic_xdp_on_veth_records_real_tcp_udp_icmp() {
    skip_unless!(is_root(), "needs root to create namespaces and attach XDP");
    skip_unless!(
        have_program("ping"),
        "needs ping (apt-get install iputils-ping)"
    );
    check(XdpMode::Generic);
}

#[test]
fn a_second_xdp_program_on_the_same_interface_is_refused_clearly() {
    skip_unless!(is_root(), "needs root to create namespaces and attach XDP");
    let net = TestNet::new();
    thread::scope(|scope| {
        scope
            .spawn(|| {
                net.sensor.enter_this_thread();
                let opts = capture::LoadOptions::default();
                let mut first = capture::load(&opts).unwrap();
                capture::attach_xdp(&mut first, &net.sensor_if, XdpMode::Native).unwrap();
                let mut second = capture::load(&opts).unwrap();
                for mode in [XdpMode::Auto, XdpMode::Native, XdpMode::Generic] {
                    let err = capture::attach_xdp(&mut second, &net.sensor_if, mode)
                        .expect_err("a second program must not attach")
                        .to_string();
                    assert!(err.contains("already attached"), "{mode:?}: {err}");
                }
            })
            .join()
            .unwrap();
    });
}

/// `--xdp-mode auto` on a veth attaches in generic mode: native XDP on a veth
/// copies every packet and measured slower (README, Performance). Checked
/// in the mode returned and in what the kernel reports over rtnetlink (what
/// `ip link` shows: `xdpgeneric`).
#[test]
fn auto_on_a_veth_attaches_in_generic_mode() {
    skip_unless!(is_root(), "needs root to create namespaces and attach XDP");
    let net = TestNet::new();
    let ifindex = net.sensor_ifindex();
    thread::scope(|scope| {
        scope
            .spawn(|| {
                net.sensor.enter_this_thread();
                assert_eq!(
                    capture::iface::link_kind(ifindex).unwrap().as_deref(),
                    Some("veth")
                );
                let mut ebpf = capture::load(&capture::LoadOptions::default()).unwrap();
                let (_link, mode) =
                    capture::attach_xdp(&mut ebpf, &net.sensor_if, XdpMode::Auto).unwrap();
                assert_eq!(mode, XdpMode::Generic, "the mode auto reports");
                let query = capture::iface::xdp_query(ifindex).unwrap();
                // IFLA_XDP_ATTACHED: 1 driver (native), 2 generic (skb).
                assert_eq!(query.mode, 2, "the mode the kernel reports: {query:?}");
            })
            .join()
            .unwrap();
    });
}
