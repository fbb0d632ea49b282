//! Replay: pcap and pcapng files through the same rules as the XDP program,
//! on the host, into the same day files. Each packet's capture time decides
//! its day and its row's timestamp. Needs no privileges.
//!
//! Rows are written as the capture goes: every [`FLUSH_ROWS`] new rows (at
//! the next change of second, so a file's order is what one write at the end
//! would give) and whenever the day moves on, after which earlier days are
//! dropped from memory (a late packet of an earlier day reloads that day's
//! file, so nothing is written twice). A time-ordered capture of any length
//! needs one day's tuples in memory.

pub mod sensor;

use std::{
    fs::File,
    io::{BufReader, Read},
    path::{Path, PathBuf},
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
    NS_PER_DAY, Stat,
    classify::{self, ETH_P_IPV4, ETH_P_IPV6, Skip},
    stats::StatKind,
};

use crate::{config::Rules, store::DayStore, tables::Tables};

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

/// New rows held before they are written (at the next change of second).
pub const FLUSH_ROWS: usize = 1 << 16;

/// Capture times from here on have no day file: a day number is 16 bits,
/// and its last day is 2149-06-06.
pub const END_WALL_NS: u64 = (u16::MAX as u64 + 1) * NS_PER_DAY;

/// What a replay did.
#[derive(Debug, Default)]
pub struct Summary {
    pub files: usize,
    pub packets: u64,
    pub rows: u64,
    /// Packets dated after 2149-06-06: skipped.
    pub beyond_last_day: u64,
    /// pcapng Simple Packet Blocks with no earlier timed packet in their
    /// section to take the time of: skipped.
    pub untimed: u64,
}

/// The day store remembers what the host sensor recorded: a new tuple is a
/// row queued for its day file, and what the files hold already is known.
impl sensor::Recorded for DayStore {
    fn contains(&mut self, key: &tsusen_common::TupleKey) -> Result<bool> {
        DayStore::contains(self, key)
    }

    fn insert(&mut self, key: tsusen_common::TupleKey, wall_ns: u64) -> Result<()> {
        self.record_keyed(key, sensor::row(&key, wall_ns)).map(drop)
    }

    fn clear(&mut self) {}
}

/// Feeds packets from capture files through the host sensor into the store.
pub struct Replay {
    pub sensor: HostSensor<DayStore>,
    pub summary: Summary,
    /// The second and the day of the latest packet: writes happen when
    /// they change.
    second: u64,
    day: u64,
}

impl Replay {
    pub fn new(tables: Tables, store: DayStore) -> Self {
        Replay {
            sensor: HostSensor::with_recorded(tables, store),
            summary: Summary::default(),
            second: 0,
            day: 0,
        }
    }

    pub fn store(&mut self) -> &mut DayStore {
        &mut self.sensor.recorded
    }

    /// One packet of link type `link`, captured at `wall_ns`.
    #[inline]
    pub fn packet(&mut self, link: Link, data: &[u8], wall_ns: u64) -> Result<()> {
        self.summary.packets += 1;
        if wall_ns >= END_WALL_NS {
            self.summary.beyond_last_day += 1;
            return Ok(());
        }
        let second = wall_ns / 1_000_000_000;
        if second != self.second {
            self.next_second(second, wall_ns / NS_PER_DAY)?;
        }
        let network = link.network(data);
        // A capture holds both directions: what the TC egress program sees
        // live comes first, then what XDP sees.
        self.sensor.outbound(data, network, wall_ns);
        if let Verdict::New(_) = self.sensor.inbound(data, network, wall_ns)? {
            self.summary.rows += 1;
        }
        Ok(())
    }

    /// Time moved on to another second: write what is held when it is a lot
    /// or when the day moved on; then forget the earlier days.
    /// Every row held is from an earlier second (in a time-ordered capture),
    /// so the files' order is the order of one write at the end.
    fn next_second(&mut self, second: u64, day: u64) -> Result<()> {
        self.second = second;
        let new_day = day > self.day;
        if new_day || self.store().pending() >= FLUSH_ROWS {
            self.store().flush()?;
        }
        if new_day {
            self.day = day;
            // Below END_WALL_NS: a day number fits.
            self.store()
                .forget_days_before(u16::try_from(day).unwrap_or(u16::MAX));
        }
        Ok(())
    }

    /// Write every row still held.
    pub fn finish(&mut self) -> Result<()> {
        self.store().flush().map(drop)
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
                    // Past the year 2554 a time saturates; the day check refuses it.
                    let wall_ns = u64::try_from(packet.timestamp.as_nanos()).unwrap_or(u64::MAX);
                    self.packet(link, &packet.data, wall_ns)?;
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
        // Per interface of the current section: link type and time scale.
        let mut interfaces: Vec<Result<(Link, Clock), String>> = Vec::new();
        // The latest timed packet's time in this section: Simple Packet
        // Blocks have none of their own and take it.
        let mut latest: Option<u64> = None;
        // The reader takes the first section header itself; later ones come as blocks.
        let mut endianness = pcapng.section().endianness;
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
                Block::SectionHeader(shb) => {
                    interfaces.clear();
                    latest = None;
                    endianness = shb.endianness;
                }
                Block::InterfaceDescription(idb) => {
                    let link = Link::from_datalink(idb.linktype).map_err(|e| e.to_string());
                    let clock = Clock::of(&idb.options);
                    interfaces.push(link.and_then(|l| Ok((l, clock?))));
                }
                Block::EnhancedPacket(epb) => {
                    let (link, clock) = interface(&interfaces, epb.interface_id, path)?;
                    // pcap-file hands over raw ticks as nanoseconds.
                    let wall_ns =
                        clock.wall_ns(u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX));
                    latest = Some(wall_ns);
                    self.packet(link, &epb.data, wall_ns)?;
                    count += 1;
                }
                Block::Packet(pb) => {
                    let (link, clock) = interface(&interfaces, u32::from(pb.interface_id), path)?;
                    let wall_ns = clock.wall_ns(obsolete_ticks(pb.timestamp, endianness));
                    latest = Some(wall_ns);
                    self.packet(link, &pb.data, wall_ns)?;
                    count += 1;
                }
                Block::SimplePacket(spb) => {
                    // Always interface 0; the data is padded to 4 bytes.
                    let (link, _) = interface(&interfaces, 0, path)?;
                    let len = (spb.original_len as usize).min(spb.data.len());
                    if let Some(wall_ns) = latest {
                        self.packet(link, &spb.data[..len], wall_ns)?;
                    } else {
                        self.summary.packets += 1;
                        self.summary.untimed += 1;
                    }
                    count += 1;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn interface(
    interfaces: &[Result<(Link, Clock), String>],
    id: u32,
    path: &Path,
) -> Result<(Link, Clock)> {
    match interfaces.get(id as usize) {
        Some(Ok(found)) => Ok(*found),
        Some(Err(err)) => bail!("{}: {err}", path.display()),
        None => bail!("{}: packet on undeclared interface {id}", path.display()),
    }
}

/// How an interface's timestamps become wall-clock nanoseconds: ticks of
/// `if_tsresol` (10^-r s, or 2^-r s with the top bit set; µs by default),
/// plus `if_tsoffset` seconds. Exact: `ticks * 10^9 / ticks_per_second`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    ticks_per_second: u128,
    offset_ns: u128,
}

impl Clock {
    fn of(options: &[InterfaceDescriptionOption]) -> Result<Clock, String> {
        let mut clock = Clock::tsresol(None).expect("µs");
        for option in options {
            match option {
                InterfaceDescriptionOption::IfTsResol(r) => {
                    clock.ticks_per_second = Clock::tsresol(Some(*r))?.ticks_per_second;
                }
                // Seconds, signed in the spec; pcap-file reads them unsigned.
                // A negative offset would date packets before 1970: refused.
                InterfaceDescriptionOption::IfTsOffset(secs) => {
                    if *secs > i64::MAX as u64 {
                        return Err(format!(
                            "if_tsoffset {} s is negative, which tsusen does not support",
                            (*secs).cast_signed()
                        ));
                    }
                    clock.offset_ns = u128::from(*secs) * 1_000_000_000;
                }
                _ => {}
            }
        }
        Ok(clock)
    }

    /// The clock of an `if_tsresol` value (µs without one).
    pub fn tsresol(tsresol: Option<u8>) -> Result<Clock, String> {
        let r = tsresol.unwrap_or(6);
        let ticks_per_second = if r & 0x80 == 0 {
            10u128.checked_pow(u32::from(r))
        } else {
            2u128.checked_pow(u32::from(r & 0x7f))
        };
        match ticks_per_second {
            Some(ticks_per_second) => Ok(Clock {
                ticks_per_second,
                offset_ns: 0,
            }),
            None => Err(format!(
                "unsupported if_tsresol {r:#04x} (finer than 10^-38 s)"
            )),
        }
    }

    /// Wall-clock nanoseconds of `ticks`; `u64::MAX` when past what a u64
    /// holds (far past the last day a day file can hold).
    pub fn wall_ns(self, ticks: u64) -> u64 {
        let ns = u128::from(ticks) * 1_000_000_000 / self.ticks_per_second + self.offset_ns;
        u64::try_from(ns).unwrap_or(u64::MAX)
    }
}

/// The ticks of an obsolete Packet Block: its two 32-bit halves (high
/// first) are each in the section's byte order, but pcap-file reads them as
/// one 64-bit number, which swaps the halves in a little-endian section.
fn obsolete_ticks(timestamp: u64, endianness: pcap_file::Endianness) -> u64 {
    match endianness {
        pcap_file::Endianness::Little => timestamp.rotate_left(32),
        pcap_file::Endianness::Big => timestamp,
    }
}

/// `tsusen replay`: `pcaps` in order through `rules` into day files in `out_dir`.
pub fn run(pcaps: &[PathBuf], out_dir: &Path, rules: &Rules) -> Result<()> {
    let tables = rules.tables()?;
    for pcap in pcaps {
        if !pcap.exists() {
            bail!("cannot open {}: no such file", pcap.display());
        }
    }
    let store = DayStore::open(out_dir, usize::MAX)?;
    let mut replay = Replay::new(tables, store);
    let started = Instant::now();
    for pcap in pcaps {
        replay.file(pcap)?;
    }
    replay.finish()?;
    let elapsed = started.elapsed();
    let summary = &replay.summary;
    if summary.beyond_last_day > 0 {
        warn!(
            "skipped {} packets dated after 2149-06-06, the last day a day file can hold",
            summary.beyond_last_day
        );
    }
    if summary.untimed > 0 {
        warn!(
            "skipped {} pcapng Simple Packet Blocks that came before any timed packet of their section \
             (a Simple Packet Block has no time of its own and takes the time of the packet before it)",
            summary.untimed
        );
    }
    let stats = replay.sensor.stats();
    let skipped: Vec<String> = Stat::ALL
        .iter()
        .filter(|s| s.kind() == StatKind::Skipped && stats[**s as usize] > 0)
        .map(|s| format!("{}={}", s.label(), stats[*s as usize]))
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
#[expect(
    clippy::decimal_bitwise_operands,
    reason = "if_tsresol is a flag bit with a decimal exponent: 0x80 | 10 reads as pcapng defines it"
)]
mod tests {
    use super::*;

    #[test]
    fn pcapng_resolutions_are_exact() {
        let wall = |r: Option<u8>, ticks: u64| Clock::tsresol(r).unwrap().wall_ns(ticks);
        assert_eq!(wall(None, 1), 1_000);
        assert_eq!(wall(Some(6), 1), 1_000);
        assert_eq!(wall(Some(9), 1), 1);
        assert_eq!(wall(Some(3), 1), 1_000_000);
        assert_eq!(wall(Some(12), 1_000), 1);
        // 2^-10 s and 2^-30 s: 1,024 and 2^30 ticks make one second.
        assert_eq!(wall(Some(0x80 | 10), 1_024), 1_000_000_000);
        assert_eq!(wall(Some(0x80 | 30), 1 << 30), 1_000_000_000);
        // 2026-11-24 12:00:00 in 2^-20 s ticks.
        let t = 1_795_521_600u64;
        assert_eq!(wall(Some(0x80 | 20), t << 20), t * 1_000_000_000);
        assert_eq!(wall(Some(0x80 | 64), u64::MAX), 999_999_999);
        assert!(Clock::tsresol(Some(127)).is_err());
        assert_eq!(wall(Some(0), u64::MAX), u64::MAX);
    }

    #[test]
    fn unsupported_link_types_are_named() {
        let err = Link::from_datalink(DataLink::IEEE802_11_RADIOTAP)
            .unwrap_err()
            .to_string();
        assert!(err.contains("IEEE802_11_RADIOTAP (127)"), "{err}");
    }
}
