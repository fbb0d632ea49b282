//! The kernel and the host must not drift: every packet of a corpus (the
//! hand-made cases below plus generated ones) goes through the loaded XDP
//! program (BPF_PROG_TEST_RUN) and the host sensor, and their verdicts —
//! skip reason, or the exact tuple key recorded — must be equal.

use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use tsusen::{
    replay::{Link, sensor::HostSensor},
    skip_unless,
    tables::{Tables, parse_net},
    testing::{
        is_root,
        kernel::{KernelSensor, TEST_WALL_NS},
        packet::{Ext, L4, Pkt},
    },
};
use tsusen_common::{FlowKey, NS_PER_DAY, tuple::mapped};

/// Generated packets per table set; two sets, so 2 x 6,000 in all.
const GENERATED_PER_TABLES: u32 = 6_000;

/// Tables with every rule switched on: local networks, ignore lists, a flow.
fn busy_tables() -> Tables {
    let mut t = Tables::default();
    t.local.insert(parse_net("192.0.2.0/24").unwrap());
    t.local.insert(parse_net("2001:db8:1::/48").unwrap());
    t.ignored_nets.insert(parse_net("203.0.113.0/25").unwrap());
    t.ignored_nets
        .insert(parse_net("2001:db8:bad:1::/64").unwrap());
    t.ignore_port(23);
    t.ignore_port(3);
    // One live flow, one that timed out a day ago: both sides expire it.
    t.udp_flows.insert(
        FlowKey {
            remote_ip: mapped("198.51.100.7".parse().unwrap()),
            local_ip: mapped("192.0.2.1".parse().unwrap()),
            remote_port: 53,
            local_port: 40_001,
        },
        TEST_WALL_NS - 10 * 1_000_000_000,
    );
    t.udp_flows.insert(
        FlowKey {
            remote_ip: mapped("2001:db8:bad::7".parse().unwrap()),
            local_ip: mapped("2001:db8:1::1".parse().unwrap()),
            remote_port: 53,
            local_port: 40_001,
        },
        TEST_WALL_NS - NS_PER_DAY,
    );
    t
}

const V4: &[&str] = &[
    "198.51.100.7",
    "192.0.2.1",
    "192.0.2.9",
    "203.0.113.5",
    "203.0.113.200",
    "198.18.0.3",
    "224.0.0.251",
    "239.255.255.250",
    "255.255.255.255",
];
const V6: &[&str] = &[
    "2001:db8:bad::7",
    "2001:db8:bad:1::7",
    "2001:db8:1::1",
    "2001:db8:1::9",
    "ff02::1",
    "ff05::2",
];

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(22u16),
        Just(23),
        Just(3),
        Just(33),
        Just(53),
        Just(40_001),
        any::<u16>()
    ]
}

fn l4() -> impl Strategy<Value = L4> {
    prop_oneof![
        3 => (port(), port(), any::<u8>()).prop_map(|(sport, dport, flags)| L4::Tcp { sport, dport, flags }),
        2 => (port(), port()).prop_map(|(sport, dport)| L4::Udp { sport, dport }),
        1 => prop_oneof![0u8..=20, any::<u8>()].prop_map(|kind| L4::Icmp { kind }),
        1 => prop_oneof![Just(128u8), Just(129), Just(135), Just(1), any::<u8>()].prop_map(|kind| L4::Icmpv6 { kind }),
        1 => (any::<u8>(), prop::collection::vec(any::<u8>(), 0..12)).prop_map(|(proto, payload)| L4::Other { proto, payload }),
    ]
}

fn ext() -> impl Strategy<Value = Ext> {
    prop_oneof![
        Just(Ext::HopByHop),
        Just(Ext::Routing),
        Just(Ext::DestOpts),
        Just(Ext::Ah),
        (prop_oneof![Just(0u16), Just(0), Just(3)], any::<bool>())
            .prop_map(|(offset, more)| Ext::Fragment { offset, more }),
    ]
}

/// A packet spec, then its bytes, sometimes cut short or with a byte changed.
fn packet() -> impl Strategy<Value = Vec<u8>> {
    let vlans = prop::collection::vec(
        (prop_oneof![Just(0x8100u16), Just(0x88a8)], 0u16..4096),
        0..=3,
    );
    let v6 = any::<bool>();
    (
        vlans,
        v6,
        0usize..V4.len().max(V6.len()),
        0usize..V4.len().max(V6.len()),
        l4(),
        prop_oneof![Just(0usize), Just(0), (1usize..=10).prop_map(|n| n * 4)],
        (
            prop_oneof![Just(0u16), Just(0), Just(0), Just(1), Just(185)],
            any::<bool>(),
        ),
        prop::collection::vec(ext(), 0..=7),
        0usize..16,
    )
        .prop_flat_map(|(vlans, v6, s, d, l4, options, fragment, exts, payload)| {
            let pool = if v6 { V6 } else { V4 };
            let mut pkt = Pkt::syn(pool[s % pool.len()], pool[d % pool.len()], 0);
            pkt.l4 = l4;
            pkt.vlans = vlans;
            pkt.payload = payload;
            if v6 {
                pkt.ipv6_ext = exts;
            } else {
                pkt.ipv4_options = options;
                pkt.ipv4_fragment = fragment;
            }
            let bytes = pkt.bytes();
            let len = bytes.len();
            (
                Just(bytes),
                prop_oneof![3 => Just(None), 1 => (14..=len).prop_map(Some)],
                prop_oneof![3 => Just(None), 1 => (0..len, any::<u8>()).prop_map(Some)],
            )
        })
        .prop_map(|(mut bytes, cut, flip)| {
            if let Some((at, value)) = flip {
                bytes[at] = value;
            }
            if let Some(len) = cut {
                bytes.truncate(len);
            }
            bytes
        })
}

struct Pair {
    kernel: KernelSensor,
    host: HostSensor,
    compared: u64,
}

impl Pair {
    fn new(tables: Tables) -> Self {
        Pair {
            kernel: KernelSensor::load(&tables).expect("load the XDP program"),
            host: HostSensor::new(tables),
            compared: 0,
        }
    }

    /// Both decide `bytes` from a clean slate; returns (kernel, host).
    fn decide(&mut self, bytes: &[u8]) -> (String, String) {
        self.kernel.clear().unwrap();
        self.host.clear_seen();
        self.compared += 1;
        let kernel = self.kernel.verdict(bytes).unwrap();
        let host = self
            .host
            .inbound(bytes, Link::Ethernet.network(bytes), TEST_WALL_NS)
            .unwrap();
        (format!("{kernel:?}"), format!("{host:?}"))
    }

    fn generated(&mut self, cases: u32) {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        // The runner wants an Fn closure; the pair is mutated through a cell.
        let pair = std::cell::RefCell::new(&mut *self);
        let result = runner.run(&packet(), |bytes| {
            let (kernel, host) = pair.borrow_mut().decide(&bytes);
            if kernel == host {
                Ok(())
            } else {
                Err(TestCaseError::fail(format!(
                    "kernel {kernel} != host {host}"
                )))
            }
        });
        if let Err(err) = result {
            panic!("the kernel and the host disagree: {err}");
        }
    }
}

fn corpus() -> Vec<Pkt> {
    let mut pkts = Vec::new();
    for (src, dst) in [
        ("198.51.100.7", "192.0.2.1"),
        ("2001:db8:bad::7", "2001:db8:1::1"),
    ] {
        for flags in 0..=255u8 {
            pkts.push(Pkt::tcp(src, dst, 8080, flags));
        }
        for port in [0, 3, 23, 53, 40_001, 65_535] {
            pkts.push(Pkt::udp(src, dst, 53, port));
        }
        pkts.push(Pkt::syn(src, dst, 22).vlan(0x8100, 1));
        pkts.push(Pkt::syn(src, dst, 22).vlan(0x88a8, 1).vlan(0x8100, 2));
        for proto in 0..=255u8 {
            pkts.push(Pkt::other(src, dst, proto));
        }
    }
    for kind in 0..=255u8 {
        pkts.push(Pkt::icmp("198.51.100.7", "192.0.2.1", kind));
        pkts.push(Pkt::icmpv6("2001:db8:bad::7", "2001:db8:1::1", kind));
    }
    pkts.push(Pkt::syn("198.51.100.7", "192.0.2.1", 22).fragment(0, true));
    pkts.push(Pkt::syn("198.51.100.7", "192.0.2.1", 22).fragment(1, false));
    pkts.push(Pkt::syn("198.51.100.7", "192.0.2.1", 22).ipv4_options(40));
    pkts.push(Pkt::syn("192.0.2.9", "192.0.2.1", 22));
    pkts.push(Pkt::syn("198.51.100.7", "203.0.113.5", 22));
    pkts.push(Pkt::udp("198.51.100.7", "255.255.255.255", 68, 67));
    pkts.push(Pkt::udp("198.51.100.7", "192.0.2.1", 53, 40_001));
    pkts
}

#[test]
fn kernel_and_host_agree_on_every_packet() {
    skip_unless!(is_root(), "needs root to load the XDP program");
    let mut compared = 0;
    for tables in [Tables::default(), busy_tables()] {
        let mut pair = Pair::new(tables);
        for pkt in corpus() {
            let bytes = pkt.bytes();
            let (kernel, host) = pair.decide(&bytes);
            assert_eq!(kernel, host, "{pkt:?}");
        }
        pair.generated(GENERATED_PER_TABLES);
        compared += pair.compared;
    }
    assert!(compared >= 10_000, "only {compared} packets compared");
    eprintln!("differential: {compared} packets, kernel and host agree");
}

#[test]
fn a_repeated_tuple_is_recorded_once_on_both_sides() {
    skip_unless!(is_root(), "needs root to load the XDP program");
    let mut pair = Pair::new(busy_tables());
    let syn = Pkt::syn("198.51.100.7", "192.0.2.1", 443).bytes();
    let (kernel, host) = pair.decide(&syn);
    assert_eq!(kernel, host);
    assert!(kernel.starts_with("New"), "{kernel}");
    // Again, without clearing: both call it a repeat.
    let kernel = pair.kernel.verdict(&syn).unwrap();
    let host = pair
        .host
        .inbound(&syn, Link::Ethernet.network(&syn), TEST_WALL_NS)
        .unwrap();
    assert!(
        matches!(host, tsusen::replay::sensor::Verdict::Repeat(_)),
        "{host:?}"
    );
    assert!(format!("{kernel:?}").starts_with("Repeat"), "{kernel:?}");
    assert_eq!(pair.kernel.recorded().unwrap().len(), 1);
}
