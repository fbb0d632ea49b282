//! Generated captures for the replay benchmark: a mass scan's worth of packets.

use std::{fs::File, io::BufWriter, path::Path, time::Duration};

use anyhow::Result;
use pcap_file::{
    DataLink,
    pcap::{PcapHeader, PcapPacket, PcapWriter},
};

use super::packet::{ACK, Pkt};

/// Write `count` packets to `path`: SYNs from many sources to many ports
/// (60%), ACKs (25%), UDP (10%) and IPv6 SYNs (5%), over one hour of a day.
/// Deterministic: the same count gives the same file.
pub fn write_scan_pcap(path: &Path, count: u32, start_unix: u64) -> Result<()> {
    let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(file, header)?;
    // A small LCG: reproducible, no dependency.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (state >> 33) as u32
    };
    for i in 0..count {
        let r = next();
        let src = format!(
            "198.{}.{}.{}",
            18 + (r & 1),
            (r >> 1) & 0xff,
            (r >> 9) & 0xff
        );
        let port = (next() % 1024) as u16 + 1;
        let pkt = match i % 20 {
            0..12 => Pkt::syn(&src, "192.0.2.1", port),
            12..17 => Pkt::tcp(&src, "192.0.2.1", port, ACK),
            17..19 => Pkt::udp(&src, "192.0.2.1", 40_000, port),
            _ => Pkt::syn(
                &format!("2001:db8:{:x}::{:x}", r & 0xffff, r >> 16),
                "2001:db8:1::1",
                port,
            ),
        };
        let data = pkt.bytes();
        let at = Duration::from_nanos(
            start_unix * 1_000_000_000 + u64::from(i) * 3_600_000_000_000 / u64::from(count.max(1)),
        );
        writer.write_packet(&PcapPacket::new(at, data.len() as u32, &data))?;
    }
    Ok(())
}

/// A little-endian pcapng file written byte by byte (not through pcap-file,
/// so replay's reader is checked against the format, not against itself):
/// for captures with odd but valid blocks and options.
#[derive(Default)]
pub struct PcapNg {
    bytes: Vec<u8>,
}

/// `if_tsresol` for 2^-n seconds.
pub const fn binary_resolution(n: u8) -> u8 {
    0x80 | n
}

impl PcapNg {
    /// A file with one section header.
    pub fn new() -> Self {
        let mut ng = PcapNg::default();
        ng.section();
        ng
    }

    fn block(&mut self, kind: u32, body: &[u8]) {
        let padded = body.len().div_ceil(4) * 4;
        let len = (12 + padded) as u32;
        self.bytes.extend_from_slice(&kind.to_le_bytes());
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(body);
        self.bytes.resize(self.bytes.len() + padded - body.len(), 0);
        self.bytes.extend_from_slice(&len.to_le_bytes());
    }

    /// A new section: interfaces start again from 0.
    pub fn section(&mut self) -> &mut Self {
        let mut body = 0x1a2b_3c4du32.to_le_bytes().to_vec();
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&(-1i64).to_le_bytes());
        self.block(0x0a0d_0d0a, &body);
        self
    }

    /// An Ethernet interface with these `if_tsresol` and `if_tsoffset`
    /// (seconds) options, when given.
    pub fn interface(&mut self, tsresol: Option<u8>, tsoffset: Option<i64>) -> &mut Self {
        let mut body = 1u16.to_le_bytes().to_vec(); // LINKTYPE_ETHERNET
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes()); // no snap length
        if let Some(r) = tsresol {
            body.extend_from_slice(&9u16.to_le_bytes());
            body.extend_from_slice(&1u16.to_le_bytes());
            body.extend_from_slice(&[r, 0, 0, 0]);
        }
        if let Some(offset) = tsoffset {
            body.extend_from_slice(&14u16.to_le_bytes());
            body.extend_from_slice(&8u16.to_le_bytes());
            body.extend_from_slice(&offset.to_le_bytes());
        }
        body.extend_from_slice(&[0; 4]); // opt_endofopt
        self.block(1, &body);
        self
    }

    fn timed(body: &mut Vec<u8>, ticks: u64, data: &[u8]) {
        body.extend_from_slice(&((ticks >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(ticks as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
    }

    /// An Enhanced Packet Block on `interface`, `ticks` of its resolution.
    pub fn packet(&mut self, interface: u32, ticks: u64, data: &[u8]) -> &mut Self {
        let mut body = interface.to_le_bytes().to_vec();
        Self::timed(&mut body, ticks, data);
        self.block(6, &body);
        self
    }

    /// An obsolete Packet Block (type 2) on `interface`.
    pub fn obsolete_packet(&mut self, interface: u16, ticks: u64, data: &[u8]) -> &mut Self {
        let mut body = interface.to_le_bytes().to_vec();
        body.extend_from_slice(&0u16.to_le_bytes()); // drops
        Self::timed(&mut body, ticks, data);
        self.block(2, &body);
        self
    }

    /// A Simple Packet Block: interface 0, no timestamp.
    pub fn simple_packet(&mut self, data: &[u8]) -> &mut Self {
        let mut body = (data.len() as u32).to_le_bytes().to_vec();
        body.extend_from_slice(data);
        self.block(3, &body);
        self
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, &self.bytes)?;
        Ok(())
    }
}

/// Write `days` x `per_day` SYNs, in time order, spread evenly over each UTC
/// day from `first_day_unix` (a midnight): distinct sources within a day, the
/// same ones every day. One row per packet.
pub fn write_days_pcap(path: &Path, days: u32, per_day: u32, first_day_unix: u64) -> Result<()> {
    let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(file, header)?;
    for day in 0..days {
        for i in 0..per_day {
            let src = format!("198.{}.{}.{}", 18 + (i >> 16), (i >> 8) & 0xff, i & 0xff);
            let data = Pkt::syn(&src, "192.0.2.1", 22).bytes();
            let at = Duration::from_nanos(
                (first_day_unix + u64::from(day) * 86_400) * 1_000_000_000
                    + u64::from(i) * 86_400_000_000_000 / u64::from(per_day),
            );
            writer.write_packet(&PcapPacket::new(at, data.len() as u32, &data))?;
        }
    }
    Ok(())
}
