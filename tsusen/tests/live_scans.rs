//! The live sensor (`tsusen run` in a test namespace) against real scanners
//! and real connections from a peer namespace: the day file holds exactly
//! the attempts that were sent, once each, and nothing for the host's own
//! connections.

use std::{collections::HashSet, net::SocketAddr, thread, time::Duration};

use tsusen::{
    live_test,
    testing::{
        TestNet,
        live::{self, Live},
    },
};

/// Inside the sensor namespace, so every test can use the same port.
const METRICS: &str = "127.0.0.1:9477";

/// Run nmap in the peer namespace; returns the wall-clock window (Unix
/// seconds) around the call.
fn nmap(live: &Live, args: &[&str]) -> (f64, f64) {
    let before = live::unix_now();
    let out = live.net.peer.exec("nmap", args);
    let after = live::unix_now();
    eprintln!("$ nmap {}\n{out}", args.join(" "));
    (before, after)
}

#[test]
fn nmap_tcp_udp_icmp_and_ipv6_scans_give_exactly_the_rows_sent() {
    let live = live_test!(&["nmap"]);
    let mut daemon = live.start("sensor", &[]);

    let peer = TestNet::PEER_IP;
    let sensor = TestNet::SENSOR_IP;
    let (peer6, sensor6) = (TestNet::PEER_IP6, TestNet::SENSOR_IP6);
    // One probe per port (--max-retries 0), no host discovery (-Pn), no DNS
    // (-n): checked with tshark, each of these sends exactly the probes
    // listed (-sU sends two payloads to 53, 123 and 161: one tuple each).
    let quiet = ["-n", "--max-retries", "0"];
    let mut expected = Vec::new();
    let window = nmap(
        &live,
        &[&quiet[..], &["-Pn", "-sS", "-p", "22,80,443", sensor]].concat(),
    );
    for port in [22, 80, 443] {
        expected.push((live::tuple("TCP", Some(port), peer, sensor), window));
    }
    let window = nmap(
        &live,
        &[&quiet[..], &["-Pn", "-sU", "-p", "53,123,161", sensor]].concat(),
    );
    for port in [53, 123, 161] {
        expected.push((live::tuple("UDP", Some(port), peer, sensor), window));
    }
    // Echo requests only: no ARP ping, no TCP/timestamp probes.
    let window = nmap(
        &live,
        &[&quiet[..], &["-sn", "-PE", "--disable-arp-ping", sensor]].concat(),
    );
    expected.push((live::tuple("ICMP", None, peer, sensor), window));
    let window = nmap(
        &live,
        &[&quiet[..], &["-6", "-Pn", "-sS", "-p", "22,8080", sensor6]].concat(),
    );
    for port in [22, 8080] {
        expected.push((live::tuple("TCP", Some(port), peer6, sensor6), window));
    }

    let out = live.out_dir();
    let count = live::wait_rows(&out, expected.len(), Duration::from_secs(10));
    assert_eq!(count, expected.len(), "rows written within 10 s");
    // One more flush: nothing else may turn up.
    daemon.wait_two_flushes(Duration::from_secs(5));
    daemon.terminate_cleanly();

    let rows = live::all_rows(&out);
    let wanted: HashSet<_> = expected.iter().map(|(t, _)| t.clone()).collect();
    live::assert_tuples(&rows, &wanted, "nmap scans");
    for row in &rows {
        let (_, (before, after)) = expected.iter().find(|(t, _)| *t == row.tuple()).unwrap();
        let ts = row.timestamp as f64;
        assert!(
            ts >= before.floor() - 1.0 && ts <= after + 1.0,
            "{row:?}: timestamp not within 1 s of the send ({before:.3}..{after:.3})"
        );
    }
}

#[test]
fn masscan_sweep_of_102400_probes_is_recorded_once_each() {
    let live = live_test!(&["masscan"]);
    let rx_before = live::if_counters(&live.net.sensor, &live.net.sensor_if).rx_packets;
    let mut daemon = live.start(
        "sensor",
        &[
            "--local",
            "198.18.1.0/24",
            "--map-size",
            "262144",
            "--metrics",
            METRICS,
        ],
    );
    let sweep = live::masscan(
        &live.net,
        "198.18.1.0/24",
        "1-400",
        102_400,
        100_000,
        "198.19.255.254",
        &live.scratch.dir,
    )
    .finish(Duration::from_secs(30));
    assert!(sweep.frames >= 102_400);

    let out = live.out_dir();
    let count = live::wait_rows(&out, 102_400, Duration::from_secs(15));
    assert_eq!(count, 102_400, "rows written within 15 s of the sweep");
    let flush = daemon.wait_two_flushes(Duration::from_secs(5));
    let received = live::if_counters(&live.net.sensor, &live.net.sensor_if).rx_packets - rx_before;
    let text = live::fetch_metrics(&live.net.sensor, METRICS).expect("metrics");
    daemon.terminate_cleanly();

    let rows = live::all_rows(&out);
    let expected = live::sweep_tuples("198.18.1", 1..=400, "198.19.255.254");
    live::assert_tuples(&rows, &expected, "masscan sweep");
    assert!(!live.xdp_attached(), "XDP left attached after SIGTERM");

    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "the counters are whole numbers in Prometheus' f64"
    )]
    let value = |name: &str| {
        live::metric(&text, name).unwrap_or_else(|| panic!("no {name} in:\n{text}")) as u64
    };
    for (name, want) in [
        ("tsusen_candidates_total{proto=\"tcp\"}", 102_400),
        ("tsusen_new_tuples_total", 102_400),
        ("tsusen_rows_written_total", 102_400),
        ("tsusen_evicted_tuples_total", 0),
        ("tsusen_insert_failures_total", 0),
        ("tsusen_write_errors_total", 0),
        ("tsusen_pending_rows", 0),
        ("tsusen_capped_rows_total", 0),
    ] {
        assert_eq!(value(name), want, "{name}");
    }
    // The kernel counts each packet once: no more than the interface got.
    for (what, counted) in [
        ("flush line packets=", flush.get("packets")),
        ("tsusen_packets_total", value("tsusen_packets_total")),
    ] {
        assert!(
            (102_400..=received).contains(&counted),
            "{what} {counted}, but the interface received only {received} frames"
        );
    }
}

#[test]
fn the_hosts_own_connections_and_their_replies_make_no_rows() {
    let live = live_test!(&[]);
    let mut daemon = live.start("sensor", &["--metrics", METRICS]);

    // The peer runs a TCP server on 8000 and a UDP echo responder on 5300,
    // each answering once.
    let peer = &live.net.peer;
    let tcp_server: SocketAddr = format!("{}:8000", TestNet::PEER_IP).parse().unwrap();
    let udp_server: SocketAddr = format!("{}:5300", TestNet::PEER_IP).parse().unwrap();
    let (tcp_listener, udp_socket) = live::in_netns(peer, || {
        (
            std::net::TcpListener::bind(tcp_server).unwrap(),
            std::net::UdpSocket::bind(udp_server).unwrap(),
        )
    });
    udp_socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let servers = thread::spawn(move || {
        use std::io::{Read as _, Write as _};
        let (mut conn, _) = tcp_listener.accept().unwrap();
        conn.write_all(b"HTTP/1.0 200 OK\r\n\r\nhello\n").unwrap();
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
        drop(conn);
        let mut buf = [0u8; 1500];
        let (n, from) = udp_socket.recv_from(&mut buf).unwrap();
        udp_socket.send_to(&buf[..n], from).unwrap();
    });

    // The sensor connects out, exchanges data, closes; then queries over UDP.
    let sensor = &live.net.sensor;
    let got = live::in_netns(sensor, || {
        use std::io::{Read as _, Write as _};
        let mut conn =
            std::net::TcpStream::connect_timeout(&tcp_server, Duration::from_secs(3)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        conn.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply).unwrap();
        reply
    });
    assert!(got.ends_with("hello\n"), "{got:?}");
    let reply = live::udp_query_from(sensor, TestNet::SENSOR_IP, udp_server).unwrap();
    assert_eq!(reply, b"tsusen-test query");
    servers.join().unwrap();

    // A control attempt, so "no rows" cannot mean "not recording".
    live::syns_from(peer, TestNet::SENSOR_IP, &[9]);
    let out = live.out_dir();
    assert_eq!(live::wait_rows(&out, 1, Duration::from_secs(10)), 1);
    daemon.wait_two_flushes(Duration::from_secs(5));
    let text = live::fetch_metrics(sensor, METRICS).expect("metrics");
    daemon.terminate_cleanly();

    let rows = live::all_rows(&out);
    let expected: HashSet<_> = [live::tuple(
        "TCP",
        Some(9),
        TestNet::PEER_IP,
        TestNet::SENSOR_IP,
    )]
    .into();
    live::assert_tuples(&rows, &expected, "only the control SYN");
    // The SYN-ACK, ACKs and FIN from the server were seen and skipped.
    let not_syn = live::metric(
        &text,
        "tsusen_skipped_packets_total{reason=\"tcp_not_syn\"}",
    );
    assert!(
        not_syn.is_some_and(|n| n >= 2.0),
        "tsusen_skipped_packets_total{{reason=\"tcp_not_syn\"}} = {not_syn:?}; metrics:\n{text}"
    );
}

#[test]
fn an_address_added_while_running_is_local_from_then_on() {
    let live = live_test!(&[]);
    let net = &live.net;
    let mut daemon = live.start("sensor", &[]);
    let new_ip = "198.18.0.77";
    // Frames for 198.18.0.77 go to the sensor's MAC; until the address is
    // the sensor's, its kernel drops them (and nothing answers).
    net.peer.exec(
        "ip",
        &[
            "neigh",
            "add",
            new_ip,
            "lladdr",
            &net.sensor_mac(),
            "dev",
            &net.peer_if,
        ],
    );
    let to = |port: u16| format!("{new_ip}:{port}").parse().unwrap();
    let before = live::if_counters(&net.sensor, &net.sensor_if).rx_packets;
    let first = live::connect_from(&net.peer, to(7001), Duration::from_millis(300));
    assert!(first.is_err(), "nothing answers for {new_ip} yet");
    assert!(
        live::if_counters(&net.sensor, &net.sensor_if).rx_packets > before,
        "the SYN reached the sensor"
    );
    daemon.wait_two_flushes(Duration::from_secs(5));
    assert_eq!(
        live::count_rows(&live.out_dir()),
        0,
        "not local yet: no row"
    );

    net.sensor.exec(
        "ip",
        &[
            "addr",
            "add",
            &format!("{new_ip}/32"),
            "dev",
            &net.sensor_if,
        ],
    );
    thread::sleep(Duration::from_secs(2));
    live::syns_from(&net.peer, new_ip, &[7002]);
    let out = live.out_dir();
    live::wait_rows(&out, 1, Duration::from_secs(10));
    daemon.wait_two_flushes(Duration::from_secs(5));
    daemon.terminate_cleanly();
    let expected: HashSet<_> = [live::tuple("TCP", Some(7002), TestNet::PEER_IP, new_ip)].into();
    live::assert_tuples(
        &live::all_rows(&out),
        &expected,
        "after the address was added",
    );
}

#[test]
fn include_multicast_records_datagrams_to_groups_on_the_link() {
    let live = live_test!(&[]);
    let mut daemon = live.start("sensor", &["--include-multicast"]);
    let net = &live.net;

    // Datagrams from the peer to link-local groups: bytes on our own veth,
    // never routed. The IPv4 one leaves by a route for the groups on the
    // peer's end; the IPv6 one by the scope id of ff02::1.
    net.peer
        .exec("ip", &["route", "add", "224.0.0.0/4", "dev", &net.peer_if]);
    let peer_if = std::ffi::CString::new(net.peer_if.clone()).unwrap();
    live::in_netns(&net.peer, || {
        let v4 = std::net::UdpSocket::bind((TestNet::PEER_IP, 0)).unwrap();
        v4.send_to(b"tsusen-test", "224.0.0.251:5353").unwrap();
        // SAFETY: a valid C string.
        let index = unsafe { libc::if_nametoindex(peer_if.as_ptr()) };
        assert_ne!(index, 0, "no index for {peer_if:?}");
        let v6 = std::net::UdpSocket::bind((TestNet::PEER_IP6, 0)).unwrap();
        let group = std::net::SocketAddrV6::new("ff02::1".parse().unwrap(), 5353, 0, index);
        v6.send_to(b"tsusen-test", group).unwrap();
    });
    // A control attempt: once its row is there, the datagrams were judged.
    live::syns_from(&net.peer, TestNet::SENSOR_IP, &[9]);
    let out = live.out_dir();
    live::wait_rows(&out, 3, Duration::from_secs(10));
    daemon.wait_two_flushes(Duration::from_secs(5));
    daemon.terminate_cleanly();

    let rows = live::all_rows(&out);
    let got: HashSet<_> = rows
        .iter()
        .map(tsusen::testing::live::DayRow::tuple)
        .collect();
    for want in [
        live::tuple("UDP", Some(5353), TestNet::PEER_IP, "224.0.0.251"),
        live::tuple("UDP", Some(5353), TestNet::PEER_IP6, "ff02::1"),
        live::tuple("TCP", Some(9), TestNet::PEER_IP, TestNet::SENSOR_IP),
    ] {
        assert!(got.contains(&want), "{want:?} missing from {rows:?}");
    }
    // Anything else the peer's kernel sent on its own (an IGMP report, say)
    // went to a group too: nothing to a non-local unicast address.
    let sensor: std::net::IpAddr = TestNet::SENSOR_IP.parse().unwrap();
    for row in &rows {
        let group = match row.dst {
            std::net::IpAddr::V4(v4) => v4.is_multicast() || v4.is_broadcast(),
            std::net::IpAddr::V6(v6) => v6.is_multicast(),
        };
        assert!(group || row.dst == sensor, "unexpected row {row:?}");
    }
}
