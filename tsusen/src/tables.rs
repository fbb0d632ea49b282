//! The tables the rules consult: local networks (L), ignore lists, outbound
//! UDP flows.
//!
//! On the host (`tsusen replay`, tests) they answer `classify::Tables` from
//! memory; for the live sensor `capture` writes the same tables into the
//! kernel's maps (`capture::write_tables`), so both sides decide alike. Plain data: nothing here talks to the kernel.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
    str::FromStr,
};

use anyhow::{Context as _, Result, bail};
use ipnet::IpNet;
use tsusen_common::{FlowKey, IGNORED_PORT_WORDS, classify, config::flags, tuple::ipv4_mapped};

/// A set of prefixes, matched by longest prefix on IPv4-mapped addresses.
#[derive(Clone, Debug, Default)]
pub struct Networks {
    /// Masked address by prefix length (in the 128-bit mapped form).
    by_len: BTreeMap<u8, HashSet<u128, foldhash::fast::RandomState>>,
    /// The same, for lookups (every packet makes a few): per prefix length
    /// its mask and, while there are few, the addresses in a list, compared
    /// in a line instead of hashed.
    lookup: Vec<Lookup>,
}

#[derive(Clone, Debug)]
struct Lookup {
    len: u8,
    mask: u128,
    /// Every address of this length while there are at most [`FEW`]; empty
    /// (and `by_len` asked) beyond.
    few: Vec<u128>,
}

/// Up to this many prefixes of one length are compared in a line.
const FEW: usize = 8;

/// A prefix in the mapped form: (address, prefix length out of 128).
fn mapped_prefix(net: &IpNet) -> ([u8; 16], u8) {
    match net {
        IpNet::V4(v4) => (ipv4_mapped(v4.network().octets()), 96 + v4.prefix_len()),
        IpNet::V6(v6) => (v6.network().octets(), v6.prefix_len()),
    }
}

fn mask(addr: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        addr & (u128::MAX << (128 - u32::from(len)))
    }
}

impl Networks {
    pub fn insert(&mut self, net: IpNet) {
        let (addr, len) = mapped_prefix(&net);
        self.by_len
            .entry(len)
            .or_default()
            .insert(mask(u128::from_be_bytes(addr), len));
        self.lookup = self
            .by_len
            .iter()
            .map(|(&len, set)| Lookup {
                len,
                mask: mask(u128::MAX, len),
                few: if set.len() <= FEW {
                    set.iter().copied().collect()
                } else {
                    Vec::new()
                },
            })
            .collect();
    }

    pub fn is_empty(&self) -> bool {
        self.by_len.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_len.values().map(HashSet::len).sum()
    }

    pub fn contains(&self, ip: &[u8; 16]) -> bool {
        let addr = u128::from_be_bytes(*ip);
        self.lookup.iter().any(|lookup| {
            let masked = addr & lookup.mask;
            if lookup.few.is_empty() {
                self.by_len[&lookup.len].contains(&masked)
            } else {
                lookup.few.contains(&masked)
            }
        })
    }

    /// Every prefix, in the mapped form.
    pub fn prefixes(&self) -> impl Iterator<Item = ([u8; 16], u8)> + '_ {
        self.by_len
            .iter()
            .flat_map(|(&len, set)| set.iter().map(move |&a| (a.to_be_bytes(), len)))
    }
}

/// Parse `198.51.100.0/24`, `2001:db8::/32` or a bare address (a /32 or /128).
pub fn parse_net(text: &str) -> Result<IpNet> {
    if let Ok(net) = IpNet::from_str(text) {
        // 198.51.100.7/24 means the network it is in.
        return Ok(net.trunc());
    }
    match IpAddr::from_str(text) {
        Ok(ip) => Ok(IpNet::from(ip)),
        Err(_) => {
            bail!("invalid network {text:?} (expected e.g. 198.51.100.0/24 or 2001:db8::/32)")
        }
    }
}

/// Parse a port, or an inclusive range `1000-2000`.
pub fn parse_ports(text: &str) -> Result<std::ops::RangeInclusive<u16>> {
    let parse = |p: &str| {
        p.trim().parse::<u16>().with_context(|| {
            format!("invalid port {text:?} (expected 0-65535 or a range like 6000-6010)")
        })
    };
    if let Some((lo, hi)) = text.split_once('-') {
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if lo > hi {
            bail!("invalid port range {text:?}: {lo} > {hi}");
        }
        Ok(lo..=hi)
    } else {
        let port = parse(text)?;
        Ok(port..=port)
    }
}

/// Everything the rules look up, plus the one switch they read.
#[derive(Clone, Debug)]
pub struct Tables {
    pub local: Networks,
    pub ignored_nets: Networks,
    /// Bit `p % 64` of word `p / 64`: the kernel's layout.
    pub ignored_ports: Vec<u64>,
    /// Outbound UDP flows and when this host last sent on each (wall ns).
    pub udp_flows: HashMap<FlowKey, u64>,
    pub include_multicast: bool,
}

impl Default for Tables {
    fn default() -> Self {
        Tables {
            local: Networks::default(),
            ignored_nets: Networks::default(),
            ignored_ports: vec![0; IGNORED_PORT_WORDS as usize],
            udp_flows: HashMap::new(),
            include_multicast: false,
        }
    }
}

impl Tables {
    pub fn ignore_port(&mut self, port: u16) {
        self.ignored_ports[usize::from(port / 64)] |= 1 << (port % 64);
    }

    /// The flag bits of `Config` these tables call for.
    pub fn config_flags(&self) -> u32 {
        let mut bits = 0;
        if !self.local.is_empty() {
            bits |= flags::HAS_LOCAL_NETS;
        }
        if !self.ignored_nets.is_empty() {
            bits |= flags::HAS_IGNORED_NETS;
        }
        if self.ignored_ports.iter().any(|&w| w != 0) {
            bits |= flags::HAS_IGNORED_PORTS;
        }
        if self.include_multicast {
            bits |= flags::INCLUDE_MULTICAST;
        }
        bits
    }
}

impl classify::Tables for Tables {
    fn has_local(&self) -> bool {
        !self.local.is_empty()
    }

    fn is_local(&self, ip: &[u8; 16]) -> bool {
        self.local.contains(ip)
    }

    fn is_ignored_port(&self, port: u16) -> bool {
        self.ignored_ports[usize::from(port / 64)] & (1 << (port % 64)) != 0
    }

    fn is_ignored_net(&self, ip: &[u8; 16]) -> bool {
        self.ignored_nets.contains(ip)
    }

    fn udp_flow_seen(&self, flow: &FlowKey) -> Option<u64> {
        self.udp_flows.get(flow).copied()
    }

    fn expire_udp_flow(&mut self, flow: &FlowKey) {
        self.udp_flows.remove(flow);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> [u8; 16] {
        tsusen_common::tuple::mapped(s.parse().unwrap())
    }

    #[test]
    fn prefixes_match_by_prefix_never_by_substring() {
        let mut nets = Networks::default();
        nets.insert(parse_net("198.51.100.0/25").unwrap());
        nets.insert(parse_net("2001:db8:1::/48").unwrap());
        nets.insert(parse_net("192.0.2.7").unwrap());
        nets.insert(parse_net("198.18.0.0/16").unwrap());
        assert!(nets.contains(&ip("198.51.100.127")));
        assert!(!nets.contains(&ip("198.51.100.128")));
        assert!(nets.contains(&ip("198.18.255.255")));
        assert!(!nets.contains(&ip("198.19.0.0")));
        assert!(nets.contains(&ip("192.0.2.7")));
        assert!(!nets.contains(&ip("192.0.2.70")));
        assert!(nets.contains(&ip("2001:db8:1:ffff::1")));
        assert!(!nets.contains(&ip("2001:db8:2::1")));
        // An IPv4 prefix never matches IPv6 addresses and vice versa.
        assert!(!nets.contains(&ip("::c633:6401")));
    }

    #[test]
    fn many_prefixes_of_one_length_are_found_as_a_few_are() {
        // Past FEW prefixes of a length, lookups go through the hash set.
        for count in [1u8, 8, 9, 40] {
            let mut nets = Networks::default();
            for i in 0..count {
                nets.insert(parse_net(&format!("198.51.{i}.0/24")).unwrap());
            }
            nets.insert(parse_net("2001:db8::/32").unwrap());
            for i in 0..count {
                assert!(nets.contains(&ipv4_mapped([198, 51, i, 7])), "{count}: {i}");
            }
            assert!(!nets.contains(&ipv4_mapped([198, 51, count, 7])), "{count}");
            assert!(
                nets.contains(
                    &"2001:db8:5::1"
                        .parse::<std::net::Ipv6Addr>()
                        .unwrap()
                        .octets()
                )
            );
            assert!(
                !nets.contains(
                    &"2001:db9::1"
                        .parse::<std::net::Ipv6Addr>()
                        .unwrap()
                        .octets()
                )
            );
            assert_eq!(nets.len(), usize::from(count) + 1);
        }
    }

    #[test]
    fn host_bits_in_a_prefix_mean_its_network() {
        assert_eq!(
            parse_net("198.51.100.7/24").unwrap().to_string(),
            "198.51.100.0/24"
        );
    }

    #[test]
    fn bad_networks_and_ports_are_one_clear_error() {
        for bad in ["198.51.100.0/33", "300.1.1.1", "example.com", ""] {
            let err = parse_net(bad).unwrap_err().to_string();
            assert!(err.contains("invalid network"), "{err}");
        }
        for bad in ["65536", "-1", "http", "10-5", ""] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_ports("80").unwrap(), 80..=80);
        assert_eq!(parse_ports("6000-6010").unwrap(), 6000..=6010);
    }

    #[test]
    fn ignored_ports_are_exact() {
        let mut tables = Tables::default();
        tables.ignore_port(3);
        tables.ignore_port(65535);
        use classify::Tables as _;
        assert!(tables.is_ignored_port(3));
        assert!(tables.is_ignored_port(65535));
        for port in [0, 2, 4, 8, 33, 38, 39, 83, 338, 339, 3389] {
            assert!(!tables.is_ignored_port(port), "{port}");
        }
        assert_ne!(tables.config_flags() & flags::HAS_IGNORED_PORTS, 0);
    }
}
