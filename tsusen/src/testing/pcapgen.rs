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
