//! Generated captures for the replay benchmark: a mass scan's worth of packets.
#![expect(
    clippy::cast_possible_truncation,
    reason = "generated captures: short packets, counts and times within their fields"
)]

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

/// Write `count` TCP SYNs to `dst` (frames to `dst_mac`), each from a random
/// source in 198.18.1.0 - 198.19.255.255 to a random port, no two the same
/// tuple: a spoofed SYN flood, every packet a new tuple. Deterministic. The
/// TCP checksum is left wrong, so the target's stack drops them after XDP
/// instead of answering each with a RST (XDP and tsusen do not check it).
pub fn write_flood_pcap(path: &Path, count: u32, dst: &str, dst_mac: [u8; 6]) -> Result<()> {
    let mut writer = PcapWriter::with_header(
        BufWriter::with_capacity(1 << 20, File::create(path)?),
        PcapHeader::default(),
    )?;
    let mut frame = Pkt::syn("198.19.0.2", dst, 1).bytes();
    frame[..6].copy_from_slice(&dst_mac);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut seen = std::collections::HashSet::with_capacity(count as usize);
    let mut written = 0;
    while written < count {
        // xorshift64: reproducible, no dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let host = 256 + (state as u32) % (131_072 - 256);
        let port = ((state >> 32) as u16).max(1);
        if !seen.insert((host, port)) {
            continue;
        }
        let src = [198, 18 + (host >> 16) as u8, (host >> 8) as u8, host as u8];
        frame[26..30].copy_from_slice(&src);
        frame[36..38].copy_from_slice(&port.to_be_bytes());
        frame[24..26].copy_from_slice(&[0, 0]);
        let sum = ipv4_checksum(&frame[14..34]);
        frame[24..26].copy_from_slice(&sum.to_be_bytes());
        writer.write_packet(&PcapPacket::new(Duration::ZERO, frame.len() as u32, &frame))?;
        written += 1;
    }
    Ok(())
}

/// Write `count` copies of one TCP SYN from `src` to `dst` (frames to
/// `dst_mac`): one tuple repeated. The TCP checksum is left wrong, as above.
pub fn write_repeat_pcap(
    path: &Path,
    count: u32,
    src: &str,
    dst: &str,
    dst_mac: [u8; 6],
) -> Result<()> {
    let mut writer = PcapWriter::with_header(
        BufWriter::with_capacity(1 << 20, File::create(path)?),
        PcapHeader::default(),
    )?;
    let mut frame = Pkt::syn(src, dst, 443).bytes();
    frame[..6].copy_from_slice(&dst_mac);
    frame[50..52].copy_from_slice(&[0xde, 0xad]);
    for _ in 0..count {
        writer.write_packet(&PcapPacket::new(Duration::ZERO, frame.len() as u32, &frame))?;
    }
    Ok(())
}

/// The IPv4 header checksum of `header` (its checksum field zeroed).
fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// `aa:bb:cc:dd:ee:ff` as bytes.
pub fn parse_mac(text: &str) -> [u8; 6] {
    let mut mac = [0; 6];
    for (byte, part) in mac.iter_mut().zip(text.trim().split(':')) {
        *byte = u8::from_str_radix(part, 16).expect("a MAC address");
    }
    mac
}
