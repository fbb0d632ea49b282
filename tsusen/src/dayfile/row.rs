//! One row of a day file: `proto dst_port src_ip dst_ip timestamp`.
//!
//! - `proto`: `TCP`, `UDP`, `ICMP`, `ICMPV6`, else the IANA keyword or number;
//! - `dst_port`: decimal for TCP and UDP, `-` otherwise;
//! - `src_ip`, `dst_ip`: IPv4 dotted quad, IPv6 per RFC 5952;
//! - `timestamp`: Unix seconds of the tuple's first packet that UTC day.
//!
//! A file in another [`Format`] is read, and appended to, in its own format:
//! [`Format::parse`] reads a line's columns, [`Row::write_line_as`] writes one.

use std::{fmt, net::IpAddr, str::FromStr};

use anyhow::{Context as _, Result, bail};
use tsusen_common::{
    FirstSeen, TupleKey,
    classify::has_ports,
    proto,
    tuple::{mapped, unmapped},
};

use super::{Format, day_of};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Row {
    pub proto: u8,
    /// 0 for protocols without ports.
    pub dst_port: u16,
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    /// Unix seconds.
    pub timestamp: i64,
}

impl Row {
    /// The row for a first-seen map entry.
    pub fn from_entry(key: &TupleKey, seen: &FirstSeen) -> Self {
        Row {
            proto: key.proto,
            dst_port: key.dst_port,
            src_ip: unmapped(&key.src_ip),
            dst_ip: unmapped(&key.dst_ip),
            timestamp: (seen.wall_ns / 1_000_000_000).cast_signed(),
        }
    }

    /// The UTC day (days since 1970-01-01) this row belongs to.
    pub fn day(&self) -> u16 {
        day_of(self.timestamp)
    }

    /// The map key of this row's tuple on its day.
    pub fn key(&self) -> TupleKey {
        TupleKey {
            src_ip: mapped(self.src_ip),
            dst_ip: mapped(self.dst_ip),
            dst_port: self.dst_port,
            day: self.day(),
            proto: self.proto,
            _pad: 0,
        }
    }

    /// The `proto` column.
    pub fn proto_column(&self) -> ProtoColumn {
        ProtoColumn(self.proto)
    }

    /// Parse the five columns of a day-file line.
    pub fn parse_columns(columns: &[&str]) -> Result<Self> {
        let [proto, port, src, dst, ts] = columns else {
            bail!("expected 5 columns, found {}", columns.len());
        };
        let proto =
            proto::from_column(proto).with_context(|| format!("unknown protocol {proto:?}"))?;
        let dst_port = match *port {
            "-" if !has_ports(proto) => 0,
            port if has_ports(proto) => {
                port.parse().with_context(|| format!("bad port {port:?}"))?
            }
            port => bail!("port {port:?} on a protocol without ports"),
        };
        Ok(Row {
            proto,
            dst_port,
            src_ip: IpAddr::from_str(src).with_context(|| format!("bad source address {src:?}"))?,
            dst_ip: IpAddr::from_str(dst)
                .with_context(|| format!("bad destination address {dst:?}"))?,
            timestamp: ts
                .parse()
                .with_context(|| format!("bad timestamp {ts:?}"))?,
        })
    }
}

impl FromStr for Row {
    type Err = anyhow::Error;

    fn from_str(line: &str) -> Result<Self> {
        let columns: Vec<&str> = line.split(' ').collect();
        Row::parse_columns(&columns)
    }
}

/// Writes the protocol's keyword, or its number.
pub struct ProtoColumn(pub u8);

impl fmt::Display for ProtoColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match proto::keyword(self.0) {
            Some(keyword) => f.write_str(keyword),
            None => write!(f, "{}", self.0),
        }
    }
}

impl Row {
    /// Append the row and a newline to `out`: the same text as `Display`,
    /// without the formatting machinery (this is the write path's hot loop).
    pub fn write_line(&self, out: &mut Vec<u8>) {
        let mut num = itoa::Buffer::new();
        match proto::keyword(self.proto) {
            Some(keyword) => out.extend_from_slice(keyword.as_bytes()),
            None => out.extend_from_slice(num.format(self.proto).as_bytes()),
        }
        out.push(b' ');
        if has_ports(self.proto) {
            out.extend_from_slice(num.format(self.dst_port).as_bytes());
        } else {
            out.push(b'-');
        }
        for ip in [self.src_ip, self.dst_ip] {
            out.push(b' ');
            match ip {
                IpAddr::V4(v4) => write_dotted_quad(v4.octets(), out),
                IpAddr::V6(v6) => {
                    use std::io::Write as _;
                    write!(out, "{v6}").expect("writing to a Vec");
                }
            }
        }
        out.push(b' ');
        out.extend_from_slice(num.format(self.timestamp).as_bytes());
        out.push(b'\n');
    }
}

/// Each octet's decimal digits, then their count: a dotted quad is four
/// table lookups instead of four integer formattings.
static OCTETS: [[u8; 4]; 256] = {
    let mut table = [[0u8; 4]; 256];
    let mut i = 0;
    while i < 256 {
        #[expect(clippy::cast_possible_truncation, reason = "i < 256")]
        let n = i as u8;
        table[i] = if n >= 100 {
            [b'0' + n / 100, b'0' + n / 10 % 10, b'0' + n % 10, 3]
        } else if n >= 10 {
            [b'0' + n / 10, b'0' + n % 10, 0, 2]
        } else {
            [b'0' + n, 0, 0, 1]
        };
        i += 1;
    }
    table
};

/// Append `a.b.c.d`, as `Ipv4Addr`'s `Display` writes it.
fn write_dotted_quad(octets: [u8; 4], out: &mut Vec<u8>) {
    // Four octets of at most three digits and three dots: 15 bytes.
    let mut text = [0u8; 16];
    let mut len = 0;
    for (i, octet) in octets.into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        let digits = &OCTETS[usize::from(octet)];
        // Copy all three (the table pads with zeros): no loop over the count.
        text[len..len + 3].copy_from_slice(&digits[..3]);
        len += usize::from(digits[3]);
    }
    out.extend_from_slice(&text[..len]);
}

impl Row {
    /// Append the row in `format` and a newline to `out`. In the original's
    /// format the sensor knows the first sighting only: `last_seen` is that
    /// time too and `count` is 1 (the report reads neither).
    pub fn write_line_as(&self, format: Format, out: &mut Vec<u8>) {
        match format {
            Format::Tsusen | Format::OriginalFirst => self.write_line(out),
            Format::OriginalLater => {
                use std::io::Write as _;
                let port = if has_ports(self.proto) {
                    self.dst_port.to_string()
                } else {
                    "-".to_owned()
                };
                writeln!(
                    out,
                    "{} {port} {} {} {ts} {ts} 1",
                    self.proto_column(),
                    self.dst_ip,
                    self.src_ip,
                    ts = self.timestamp
                )
                .expect("writing to a Vec");
            }
        }
    }
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.proto_column())?;
        if has_ports(self.proto) {
            write!(f, "{}", self.dst_port)?;
        } else {
            f.write_str("-")?;
        }
        write!(f, " {} {} {}", self.src_ip, self.dst_ip, self.timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dayfile::{HEADER, ORIGINAL_FIRST_HEADER, ORIGINAL_LATER_HEADER};

    #[test]
    fn formats_the_documented_examples() {
        let tcp: Row = "TCP 8080 198.51.100.40 192.0.2.46 1446042553"
            .parse()
            .unwrap();
        assert_eq!(
            tcp.to_string(),
            "TCP 8080 198.51.100.40 192.0.2.46 1446042553"
        );
        let icmp: Row = "ICMP - 198.51.100.3 192.0.2.46 1446042324".parse().unwrap();
        assert_eq!(
            icmp.to_string(),
            "ICMP - 198.51.100.3 192.0.2.46 1446042324"
        );
        assert_eq!(icmp.dst_port, 0);
    }

    #[test]
    fn ipv6_is_rfc5952_and_other_protocols_have_no_port() {
        let row = Row {
            proto: 47,
            dst_port: 0,
            src_ip: "2001:0db8:0000:0000:0000:0000:0000:0001".parse().unwrap(),
            dst_ip: "2001:db8:0:1:0:0:0:2".parse().unwrap(),
            timestamp: 1,
        };
        assert_eq!(row.to_string(), "GRE - 2001:db8::1 2001:db8:0:1::2 1");
        let unnamed = Row { proto: 253, ..row };
        assert_eq!(unnamed.to_string(), "253 - 2001:db8::1 2001:db8:0:1::2 1");
        assert_eq!(unnamed.to_string().parse::<Row>().unwrap(), unnamed);
    }

    #[test]
    fn key_and_entry_round_trip() {
        let row: Row = "UDP 53 203.0.113.9 192.0.2.1 1764000000".parse().unwrap();
        let key = row.key();
        assert_eq!(key.day, 20_416);
        let seen = FirstSeen {
            wall_ns: 1_764_000_000_123_456_789,
        };
        assert_eq!(Row::from_entry(&key, &seen), row);
    }

    #[test]
    fn write_line_is_display_plus_newline() {
        for text in [
            "TCP 8080 198.51.100.40 192.0.2.46 1446042553",
            "ICMP - 0.0.0.0 255.255.255.255 0",
            "UDP 0 2001:db8::1 ::ffff:c000:201 -5",
            "253 - 2001:db8:0:1::2 192.0.2.1 1",
        ] {
            let row: Row = text.parse().unwrap();
            let mut out = Vec::new();
            row.write_line(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), format!("{row}\n"));
        }
    }

    #[test]
    fn every_octet_is_written_as_display_writes_it() {
        for n in 0..=255u8 {
            for quad in [
                [n, 0, 9, 10],
                [255, n, 99, 100],
                [1, 22, n, 200],
                [0, 0, 0, n],
            ] {
                let mut out = Vec::new();
                write_dotted_quad(quad, &mut out);
                assert_eq!(out, std::net::Ipv4Addr::from(quad).to_string().as_bytes());
            }
        }
    }

    #[test]
    fn rejects_what_is_not_a_row() {
        for bad in [
            "",
            "TCP 80 198.51.100.1 192.0.2.1",
            "TCP - 198.51.100.1 192.0.2.1 5",
            "ICMP 7 198.51.100.1 192.0.2.1 5",
            "TCP 70000 198.51.100.1 192.0.2.1 5",
            "TCP 80 198.51.100.300 192.0.2.1 5",
            "BOGUS 80 198.51.100.1 192.0.2.1 5",
            "TCP 80 198.51.100.1 192.0.2.1 soon",
        ] {
            assert!(bad.parse::<Row>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_original_format_round_trips_with_destination_first() {
        let row: Row = "TCP 23 198.51.100.7 192.0.2.1 1795499777".parse().unwrap();
        let mut out = Vec::new();
        row.write_line_as(Format::OriginalLater, &mut out);
        let line = String::from_utf8(out).unwrap();
        assert_eq!(
            line,
            "TCP 23 192.0.2.1 198.51.100.7 1795499777 1795499777 1\n"
        );
        let columns: Vec<&str> = line.trim_end().split(' ').collect();
        assert_eq!(Format::of_row(&columns), Some(Format::OriginalLater));
        assert_eq!(Format::OriginalLater.parse(&columns).unwrap(), row);
        let icmp: Row = "ICMP - 198.51.100.7 192.0.2.1 5".parse().unwrap();
        let mut out = Vec::new();
        icmp.write_line_as(Format::OriginalLater, &mut out);
        assert_eq!(out, b"ICMP - 192.0.2.1 198.51.100.7 5 5 1\n");
        assert_eq!(
            Format::of_header(ORIGINAL_LATER_HEADER),
            Some(Format::OriginalLater)
        );
        assert_eq!(Format::of_header(HEADER), Some(Format::Tsusen));
    }

    #[test]
    fn a_row_in_the_original_first_format_is_ours() {
        let row: Row = "UDP 53 198.51.100.7 192.0.2.1 1446040782".parse().unwrap();
        let (mut ours, mut first) = (Vec::new(), Vec::new());
        row.write_line_as(Format::Tsusen, &mut ours);
        row.write_line_as(Format::OriginalFirst, &mut first);
        assert_eq!(first, ours);
        assert_eq!(
            Format::of_header(ORIGINAL_FIRST_HEADER),
            Some(Format::OriginalFirst)
        );
    }
}
