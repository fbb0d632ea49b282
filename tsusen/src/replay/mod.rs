//! Replay: pcap and pcapng files through the same rules as the XDP program,
//! on the host, into the same day files. Each packet's capture time decides
//! its day and its row's timestamp. Needs no privileges.

pub mod sensor;

use std::{
    fs::File,
    io::{BufReader, Read},
    path::Path,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use log::{info, warn};
use pcap_file::{
    DataLink,
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader, blocks::interface_description::InterfaceDescriptionOption},
};
use sensor::{HostSensor, Verdict};
use tsusen_common::{
    Stat,
    classify::{self, ETH_P_IPV4, ETH_P_IPV6, Skip},
};

use crate::{cli::ReplayArgs, store::DayStore, tables::Tables};

/// Link layers tsusen reads, and where each puts the network header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Ethernet,
    /// Linux cooked capture v1 (`tcpdump -i any`): 16-byte header, ethertype at 14.
    LinuxSll,
    /// Linux cooked capture v2: 20-byte header, ethertype at 0.
    LinuxSll2,
    /// Raw IP: the version nibble tells IPv4 from IPv6.
    RawIp,
}

impl Link {
    pub fn from_datalink(datalink: DataLink) -> Result<Self> {
        Ok(match datalink {
            DataLink::ETHERNET => Link::Ethernet,
            DataLink::LINUX_SLL => Link::LinuxSll,
            DataLink::LINUX_SLL2 => Link::LinuxSll2,
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Link::RawIp,
            other => bail!(
                "unsupported link type {other:?} ({}); tsusen reads Ethernet, Linux cooked (SLL, SLL2) and raw IP",
                u32::from(other)
            ),
        })
    }

    /// Rule 1: the offset and ethertype of the network header.
    #[inline]
    pub fn network(self, pkt: &[u8]) -> Result<(usize, u16), Skip> {
        match self {
            Link::Ethernet => classify::ethernet(pkt),
            Link::LinuxSll => classify::link(pkt, 14, 16),
            Link::LinuxSll2 => classify::link(pkt, 0, 20),
            Link::RawIp => match pkt.first().map(|b| b >> 4) {
                Some(4) => Ok((0, ETH_P_IPV4)),
                Some(6) => Ok((0, ETH_P_IPV6)),
                Some(_) => Err(Skip::NotIp),
                None => Err(Skip::Malformed),
            },
        }
    }
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct Summary {
    pub files: usize,
    pub packets: u64,
    pub rows: u64,
}

/// The day store remembers what the host sensor recorded: a new tuple is a
/// row queued for its day file, and what the files hold already is known.
impl sensor::Recorded for DayStore {
    fn contains(&mut self, key: &tsusen_common::TupleKey) -> Result<bool> {
        DayStore::contains(self, key)
    }

    fn insert(&mut self, key: tsusen_common::TupleKey, wall_ns: u64) -> Result<()> {
        self.record(sensor::row(&key, wall_ns)).map(drop)
    }

    fn clear(&mut self) {}
}

/// Feeds packets from capture files through the host sensor into the store.
pub struct Replay {
    pub sensor: HostSensor<DayStore>,
    pub summary: Summary,
}

impl Replay {
    pub fn new(tables: Tables, store: DayStore) -> Self {
        Replay {
            sensor: HostSensor::with_recorded(tables, store),
            summary: Summary::default(),
        }
    }

    pub fn store(&mut self) -> &mut DayStore {
        &mut self.sensor.recorded
    }

    /// One packet of link type `link`, captured at `wall_ns`.
    #[inline]
    pub fn packet(&mut self, link: Link, data: &[u8], wall_ns: u64) -> Result<()> {
        self.summary.packets += 1;
        let network = link.network(data);
        // A capture holds both directions: what the TC egress program sees
        // live comes first, then what XDP sees.
        self.sensor.outbound(data, network, wall_ns);
        if let Verdict::New(_) = self.sensor.inbound(data, network, wall_ns)? {
            self.summary.rows += 1;
        }
        Ok(())
    }

    /// Every packet of a pcap or pcapng file.
    pub fn file(&mut self, path: &Path) -> Result<()> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut magic = [0u8; 4];
        reader.read_exact(&mut magic).map_err(|_| {
            anyhow::anyhow!(
                "{} is not a pcap or pcapng file (too short)",
                path.display()
            )
        })?;
        let reader = magic.as_slice().chain(reader);
        self.summary.files += 1;
        match magic {
            [0x0a, 0x0d, 0x0d, 0x0a] => self.pcapng(path, reader),
            [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0x4d, 0x3c, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d] => self.pcap(path, reader),
            _ => bail!("{} is not a pcap or pcapng file", path.display()),
        }
    }

    fn pcap<R: Read>(&mut self, path: &Path, reader: R) -> Result<()> {
        let mut pcap = PcapReader::new(reader)
            .with_context(|| format!("{}: not a valid pcap file", path.display()))?;
        let link = Link::from_datalink(pcap.header().datalink)
            .with_context(|| path.display().to_string())?;
        let mut count = 0u64;
        while let Some(packet) = pcap.next_packet() {
            match packet {
                Ok(packet) => {
                    self.packet(link, &packet.data, packet.timestamp.as_nanos() as u64)?;
                    count += 1;
                }
                Err(err) => {
                    warn!("{}: stopped after {count} packets: {err}", path.display());
                    break;
                }
            }
        }
        Ok(())
    }

    fn pcapng<R: Read>(&mut self, path: &Path, reader: R) -> Result<()> {
        let mut pcapng = PcapNgReader::new(reader)
            .with_context(|| format!("{}: not a valid pcapng file", path.display()))?;
        // Per interface of the current section: link type and ns per tick.
        let mut interfaces: Vec<Result<(Link, u64), String>> = Vec::new();
        let mut count = 0u64;
        while let Some(block) = pcapng.next_block() {
            let block = match block {
                Ok(block) => block,
                Err(err) => {
                    warn!("{}: stopped after {count} packets: {err}", path.display());
                    break;
                }
            };
            match block {
                Block::SectionHeader(_) => interfaces.clear(),
                Block::InterfaceDescription(idb) => {
                    let link = Link::from_datalink(idb.linktype).map_err(|e| e.to_string());
                    let tsresol = idb.options.iter().find_map(|o| match o {
                        InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                        _ => None,
                    });
                    interfaces.push(link.map(|l| (l, ns_per_tick(tsresol))));
                }
                Block::EnhancedPacket(epb) => {
                    let (link, ns) = interface(&interfaces, epb.interface_id, path)?;
                    // pcap-file hands over raw ticks; scale by the interface's resolution.
                    let wall_ns = (epb.timestamp.as_nanos() as u64).saturating_mul(ns);
                    self.packet(link, &epb.data, wall_ns)?;
                    count += 1;
                }
                Block::Packet(pb) => {
                    let (link, ns) = interface(&interfaces, u32::from(pb.interface_id), path)?;
                    self.packet(link, &pb.data, pb.timestamp.saturating_mul(ns))?;
                    count += 1;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn interface(
    interfaces: &[Result<(Link, u64), String>],
    id: u32,
    path: &Path,
) -> Result<(Link, u64)> {
    match interfaces.get(id as usize) {
        Some(Ok(found)) => Ok(*found),
        Some(Err(err)) => bail!("{}: {err}", path.display()),
        None => bail!("{}: packet on undeclared interface {id}", path.display()),
    }
}

/// Nanoseconds per timestamp tick for a pcapng `if_tsresol` (default: µs).
fn ns_per_tick(tsresol: Option<u8>) -> u64 {
    match tsresol {
        None => 1_000,
        Some(r) if r & 0x80 == 0 => 10u64
            .checked_pow(9u32.saturating_sub(u32::from(r)))
            .unwrap_or(1)
            .max(1),
        // Binary resolutions (2^-n s): approximate to whole nanoseconds.
        Some(r) => (1_000_000_000u64 >> (r & 0x7f).min(30)).max(1),
    }
}

/// `tsusen replay`.
pub fn run(args: ReplayArgs) -> Result<()> {
    let tables = args.rules.tables()?;
    for pcap in &args.pcaps {
        if !pcap.exists() {
            bail!("cannot open {}: no such file", pcap.display());
        }
    }
    let store = DayStore::open(&args.out_dir, usize::MAX)?;
    let mut replay = Replay::new(tables, store);
    let started = Instant::now();
    for pcap in &args.pcaps {
        replay.file(pcap)?;
    }
    replay.store().flush()?;
    let elapsed = started.elapsed();
    let stats = replay.sensor.stats();
    let skipped: Vec<String> = Stat::ALL
        .iter()
        .filter(|s| s.name().starts_with("skipped_") && stats[**s as usize] > 0)
        .map(|s| format!("{}={}", &s.name()["skipped_".len()..], stats[*s as usize]))
        .collect();
    info!(
        "replayed {} packets from {} files in {:.2?}: {} new rows in {}; skipped: {}",
        replay.summary.packets,
        replay.summary.files,
        elapsed,
        replay.summary.rows,
        replay.sensor.recorded.dir().display(),
        if skipped.is_empty() {
            "none".into()
        } else {
            skipped.join(" ")
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcapng_resolutions() {
        assert_eq!(ns_per_tick(None), 1_000);
        assert_eq!(ns_per_tick(Some(6)), 1_000);
        assert_eq!(ns_per_tick(Some(9)), 1);
        assert_eq!(ns_per_tick(Some(3)), 1_000_000);
        assert_eq!(ns_per_tick(Some(0x80 | 10)), 976_562);
    }

    #[test]
    fn unsupported_link_types_are_named() {
        let err = Link::from_datalink(DataLink::IEEE802_11_RADIOTAP)
            .unwrap_err()
            .to_string();
        assert!(err.contains("IEEE802_11_RADIOTAP (127)"), "{err}");
    }
}
