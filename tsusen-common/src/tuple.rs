//! The keys and values of the kernel's maps.

/// One connection attempt, as counted: a row of the day file.
///
/// Addresses are 16 bytes; IPv4 is stored IPv4-mapped (`::ffff:a.b.c.d`) so one
/// map and one prefix trie serve both families. The UTC day is part of the key,
/// so the kernel records a tuple once per day on its own and a day's entries can
/// be drained and removed after midnight without racing the new day's.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, PartialOrd, Ord)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct TupleKey {
    pub src_ip: [u8; 16],
    pub dst_ip: [u8; 16],
    /// Destination port for TCP and UDP, 0 for every other protocol.
    pub dst_port: u16,
    /// UTC day number since 1970-01-01 (until the year 2149).
    pub day: u16,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...).
    pub proto: u8,
    pub _pad: u8,
}

/// When a tuple was first seen on its day.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct FirstSeen {
    /// Wall-clock time, nanoseconds since the Unix epoch (kernel monotonic time
    /// plus the offset userspace keeps current in [`crate::Config`]).
    pub wall_ns: u64,
}

/// An outbound UDP flow, seen from this host: replies to it are not attempts.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[cfg_attr(feature = "user", derive(bytemuck::Pod, bytemuck::Zeroable))]
pub struct FlowKey {
    pub remote_ip: [u8; 16],
    pub local_ip: [u8; 16],
    pub remote_port: u16,
    pub local_port: u16,
}

/// `::ffff:a.b.c.d`, the form IPv4 addresses take in keys.
#[inline(always)]
pub const fn ipv4_mapped(v4: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
    ]
}

/// An address in the 16-byte form keys use: IPv4 mapped, IPv6 as it is.
#[inline(always)]
pub const fn mapped(ip: core::net::IpAddr) -> [u8; 16] {
    match ip {
        core::net::IpAddr::V4(v4) => ipv4_mapped(v4.octets()),
        core::net::IpAddr::V6(v6) => v6.octets(),
    }
}

/// The address a key's 16 bytes stand for: the inverse of [`mapped`].
#[inline(always)]
pub fn unmapped(ip: &[u8; 16]) -> core::net::IpAddr {
    match as_ipv4(ip) {
        Some(v4) => core::net::IpAddr::from(v4),
        None => core::net::IpAddr::from(*ip),
    }
}

/// The IPv4 address inside an IPv4-mapped key address, if it is one.
#[inline(always)]
pub fn as_ipv4(ip: &[u8; 16]) -> Option<[u8; 4]> {
    if ip[..10] == [0; 10] && ip[10] == 0xff && ip[11] == 0xff {
        Some([ip[12], ip[13], ip[14], ip[15]])
    } else {
        None
    }
}

#[cfg(feature = "user")]
crate::aya_pod!(TupleKey, FirstSeen, FlowKey);

// The kernel hashes keys byte for byte: implicit padding would make equal
// tuples different keys. These sizes are the sums of the fields.
const _: () = assert!(core::mem::size_of::<TupleKey>() == 16 + 16 + 2 + 2 + 1 + 1);
const _: () = assert!(core::mem::size_of::<FirstSeen>() == 8);
const _: () = assert!(core::mem::size_of::<FlowKey>() == 16 + 16 + 2 + 2);
