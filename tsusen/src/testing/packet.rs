//! Packets as bytes, for tests and benchmarks: every header the rules look at,
//! built field by field so a test can break exactly one thing.
//! Addresses come from the documentation and benchmarking ranges.
#![expect(
    clippy::cast_possible_truncation,
    reason = "test packets are far shorter than 64 KiB, their header fields within range"
)]

use std::net::IpAddr;

pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
pub const FIN: u8 = 0x01;
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

/// An IPv6 extension header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ext {
    HopByHop,
    Routing,
    DestOpts,
    /// A fragment header with this offset (in 8-byte units) and more-fragments flag.
    Fragment {
        offset: u16,
        more: bool,
    },
    Ah,
}

/// The transport part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    Icmp {
        kind: u8,
    },
    Icmpv6 {
        kind: u8,
    },
    /// Any other protocol number, with a few payload bytes.
    Other {
        proto: u8,
        payload: Vec<u8>,
    },
}

#[derive(Clone, Debug)]
pub struct Pkt {
    /// VLAN tags, outermost first: (TPID, VLAN id).
    pub vlans: Vec<(u16, u16)>,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 options, in bytes (a multiple of 4, at most 40).
    pub ipv4_options: usize,
    /// IPv4 fragment offset (8-byte units) and more-fragments flag.
    pub ipv4_fragment: (u16, bool),
    pub ipv6_ext: Vec<Ext>,
    pub l4: L4,
    pub payload: usize,
    /// Cut the packet after this many bytes.
    pub truncate: Option<usize>,
    /// Overwrite bytes after building: (offset, bytes).
    pub patches: Vec<(usize, Vec<u8>)>,
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("a valid address")
}

impl Pkt {
    fn new(src: &str, dst: &str, l4: L4) -> Self {
        Pkt {
            vlans: Vec::new(),
            src: ip(src),
            dst: ip(dst),
            ipv4_options: 0,
            ipv4_fragment: (0, false),
            ipv6_ext: Vec::new(),
            l4,
            payload: 0,
            truncate: None,
            patches: Vec::new(),
        }
    }

    pub fn tcp(src: &str, dst: &str, dport: u16, flags: u8) -> Self {
        Self::new(
            src,
            dst,
            L4::Tcp {
                sport: 40_000,
                dport,
                flags,
            },
        )
    }

    pub fn syn(src: &str, dst: &str, dport: u16) -> Self {
        Self::tcp(src, dst, dport, SYN)
    }

    pub fn udp(src: &str, dst: &str, sport: u16, dport: u16) -> Self {
        Self::new(src, dst, L4::Udp { sport, dport })
    }

    pub fn icmp(src: &str, dst: &str, kind: u8) -> Self {
        Self::new(src, dst, L4::Icmp { kind })
    }

    pub fn icmpv6(src: &str, dst: &str, kind: u8) -> Self {
        Self::new(src, dst, L4::Icmpv6 { kind })
    }

    pub fn other(src: &str, dst: &str, proto: u8) -> Self {
        Self::new(
            src,
            dst,
            L4::Other {
                proto,
                payload: vec![0; 8],
            },
        )
    }

    pub fn vlan(mut self, tpid: u16, id: u16) -> Self {
        self.vlans.push((tpid, id));
        self
    }

    pub fn ext(mut self, ext: Ext) -> Self {
        self.ipv6_ext.push(ext);
        self
    }

    pub fn ipv4_options(mut self, bytes: usize) -> Self {
        self.ipv4_options = bytes;
        self
    }

    pub fn fragment(mut self, offset: u16, more: bool) -> Self {
        self.ipv4_fragment = (offset, more);
        self
    }

    pub fn payload(mut self, bytes: usize) -> Self {
        self.payload = bytes;
        self
    }

    pub fn truncate(mut self, len: usize) -> Self {
        self.truncate = Some(len);
        self
    }

    pub fn patch(mut self, offset: usize, bytes: &[u8]) -> Self {
        self.patches.push((offset, bytes.to_vec()));
        self
    }

    /// Offsets of each header boundary: after Ethernet+VLANs, after IP (and
    /// extension headers), after the transport header.
    pub fn boundaries(&self) -> Vec<usize> {
        let full = Pkt {
            truncate: None,
            payload: 0,
            ..self.clone()
        }
        .bytes();
        let l2 = 14 + 4 * self.vlans.len();
        let l4_len = match &self.l4 {
            L4::Tcp { .. } => 20,
            L4::Udp { .. } | L4::Icmp { .. } | L4::Icmpv6 { .. } => 8,
            L4::Other { payload, .. } => payload.len(),
        };
        vec![l2, full.len() - l4_len, full.len()]
    }

    pub fn proto(&self) -> u8 {
        match &self.l4 {
            L4::Tcp { .. } => 6,
            L4::Udp { .. } => 17,
            L4::Icmp { .. } => 1,
            L4::Icmpv6 { .. } => 58,
            L4::Other { proto, .. } => *proto,
        }
    }

    /// The Ethernet frame.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02]);
        let ethertype: u16 = if self.src.is_ipv4() { 0x0800 } else { 0x86dd };
        for &(tpid, id) in &self.vlans {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&id.to_be_bytes());
        }
        out.extend_from_slice(&ethertype.to_be_bytes());

        let l4 = self.l4_bytes();
        match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let ihl = 20 + self.ipv4_options;
                let total = (ihl + l4.len()) as u16;
                out.push(0x40 | (ihl / 4) as u8);
                out.push(0);
                out.extend_from_slice(&total.to_be_bytes());
                out.extend_from_slice(&[0x12, 0x34]);
                let (offset, more) = self.ipv4_fragment;
                let frag = offset | if more { 0x2000 } else { 0 };
                out.extend_from_slice(&frag.to_be_bytes());
                out.push(64);
                out.push(self.proto());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&src.octets());
                out.extend_from_slice(&dst.octets());
                // NOP options.
                out.extend(std::iter::repeat_n(1u8, self.ipv4_options));
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let mut ext = Vec::new();
                let mut nexts: Vec<u8> = self.ipv6_ext.iter().map(|e| ext_proto(*e)).collect();
                nexts.push(self.proto());
                for (i, e) in self.ipv6_ext.iter().enumerate() {
                    let next = nexts[i + 1];
                    match e {
                        Ext::HopByHop | Ext::Routing | Ext::DestOpts => {
                            ext.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
                        }
                        Ext::Fragment { offset, more } => {
                            let field = (offset << 3) | u16::from(*more);
                            ext.extend_from_slice(&[next, 0]);
                            ext.extend_from_slice(&field.to_be_bytes());
                            ext.extend_from_slice(&[0, 0, 0x12, 0x34]);
                        }
                        Ext::Ah => {
                            ext.extend_from_slice(&[next, 1, 0, 0]);
                            ext.extend_from_slice(&[0; 8]);
                        }
                    }
                }
                let payload_len = (ext.len() + l4.len()) as u16;
                out.extend_from_slice(&[0x60, 0, 0, 0]);
                out.extend_from_slice(&payload_len.to_be_bytes());
                out.push(nexts[0]);
                out.push(64);
                out.extend_from_slice(&src.octets());
                out.extend_from_slice(&dst.octets());
                out.extend_from_slice(&ext);
            }
            _ => panic!("source and destination of different families"),
        }
        out.extend_from_slice(&l4);
        for (offset, bytes) in &self.patches {
            out[*offset..*offset + bytes.len()].copy_from_slice(bytes);
        }
        if let Some(len) = self.truncate {
            out.truncate(len);
        }
        out
    }

    fn l4_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match &self.l4 {
            L4::Tcp {
                sport,
                dport,
                flags,
            } => {
                out.extend_from_slice(&sport.to_be_bytes());
                out.extend_from_slice(&dport.to_be_bytes());
                out.extend_from_slice(&[
                    0, 0, 0, 1, 0, 0, 0, 0, 0x50, *flags, 0xff, 0xff, 0, 0, 0, 0,
                ]);
            }
            L4::Udp { sport, dport } => {
                out.extend_from_slice(&sport.to_be_bytes());
                out.extend_from_slice(&dport.to_be_bytes());
                out.extend_from_slice(&((8 + self.payload) as u16).to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            L4::Icmp { kind } | L4::Icmpv6 { kind } => {
                out.extend_from_slice(&[*kind, 0, 0, 0, 0x12, 0x34, 0, 1]);
            }
            L4::Other { payload, .. } => out.extend_from_slice(payload),
        }
        out.extend(std::iter::repeat_n(0u8, self.payload));
        out
    }
}

fn ext_proto(ext: Ext) -> u8 {
    match ext {
        Ext::HopByHop => 0,
        Ext::Routing => 43,
        Ext::DestOpts => 60,
        Ext::Fragment { .. } => 44,
        Ext::Ah => 51,
    }
}
