//! Protocol names as they appear in the `proto` column of day files.
//!
//! `TCP`, `UDP`, `ICMP`, `ICMPV6`, and for every other IP protocol its IANA
//! keyword (protocol-numbers registry) in upper case, with spaces turned into
//! `-` because the day files are space-separated; protocols without a keyword
//! (61, 63, 68, 99, 114, the unassigned and experimental numbers) are written
//! as their decimal number.

/// The `proto` column for an IP protocol number, when it has a keyword.
pub const fn keyword(proto: u8) -> Option<&'static str> {
    Some(match proto {
        0 => "HOPOPT",
        1 => "ICMP",
        2 => "IGMP",
        3 => "GGP",
        4 => "IPV4",
        5 => "ST",
        6 => "TCP",
        7 => "CBT",
        8 => "EGP",
        9 => "IGP",
        10 => "BBN-RCC-MON",
        11 => "NVP-II",
        12 => "PUP",
        13 => "ARGUS",
        14 => "EMCON",
        15 => "XNET",
        16 => "CHAOS",
        17 => "UDP",
        18 => "MUX",
        19 => "DCN-MEAS",
        20 => "HMP",
        21 => "PRM",
        22 => "XNS-IDP",
        23 => "TRUNK-1",
        24 => "TRUNK-2",
        25 => "LEAF-1",
        26 => "LEAF-2",
        27 => "RDP",
        28 => "IRTP",
        29 => "ISO-TP4",
        30 => "NETBLT",
        31 => "MFE-NSP",
        32 => "MERIT-INP",
        33 => "DCCP",
        34 => "3PC",
        35 => "IDPR",
        36 => "XTP",
        37 => "DDP",
        38 => "IDPR-CMTP",
        39 => "TP++",
        40 => "IL",
        41 => "IPV6",
        42 => "SDRP",
        43 => "IPV6-ROUTE",
        44 => "IPV6-FRAG",
        45 => "IDRP",
        46 => "RSVP",
        47 => "GRE",
        48 => "DSR",
        49 => "BNA",
        50 => "ESP",
        51 => "AH",
        52 => "I-NLSP",
        53 => "SWIPE",
        54 => "NARP",
        55 => "MIN-IPV4",
        56 => "TLSP",
        57 => "SKIP",
        58 => "ICMPV6",
        59 => "IPV6-NONXT",
        60 => "IPV6-OPTS",
        62 => "CFTP",
        64 => "SAT-EXPAK",
        65 => "KRYPTOLAN",
        66 => "RVD",
        67 => "IPPC",
        69 => "SAT-MON",
        70 => "VISA",
        71 => "IPCV",
        72 => "CPNX",
        73 => "CPHB",
        74 => "WSN",
        75 => "PVP",
        76 => "BR-SAT-MON",
        77 => "SUN-ND",
        78 => "WB-MON",
        79 => "WB-EXPAK",
        80 => "ISO-IP",
        81 => "VMTP",
        82 => "SECURE-VMTP",
        83 => "VINES",
        84 => "TTP",
        85 => "NSFNET-IGP",
        86 => "DGP",
        87 => "TCF",
        88 => "EIGRP",
        89 => "OSPFIGP",
        90 => "SPRITE-RPC",
        91 => "LARP",
        92 => "MTP",
        93 => "AX.25",
        94 => "IPIP",
        95 => "MICP",
        96 => "SCC-SP",
        97 => "ETHERIP",
        98 => "ENCAP",
        100 => "GMTP",
        101 => "IFMP",
        102 => "PNNI",
        103 => "PIM",
        104 => "ARIS",
        105 => "SCPS",
        106 => "QNX",
        107 => "A/N",
        108 => "IPCOMP",
        109 => "SNP",
        110 => "COMPAQ-PEER",
        111 => "IPX-IN-IP",
        112 => "VRRP",
        113 => "PGM",
        115 => "L2TP",
        116 => "DDX",
        117 => "IATP",
        118 => "STP",
        119 => "SRP",
        120 => "UTI",
        121 => "SMP",
        122 => "SM",
        123 => "PTP",
        124 => "ISIS-OVER-IPV4",
        125 => "FIRE",
        126 => "CRTP",
        127 => "CRUDP",
        128 => "SSCOPMCE",
        129 => "IPLT",
        130 => "SPS",
        131 => "PIPE",
        132 => "SCTP",
        133 => "FC",
        134 => "RSVP-E2E-IGNORE",
        135 => "MOBILITY-HEADER",
        136 => "UDPLITE",
        137 => "MPLS-IN-IP",
        138 => "MANET",
        139 => "HIP",
        140 => "SHIM6",
        141 => "WESP",
        142 => "ROHC",
        143 => "ETHERNET",
        144 => "AGGFRAG",
        145 => "NSH",
        _ => return None,
    })
}

/// The protocol number a `proto` column names: a keyword (any case) or a decimal number.
pub fn from_column(column: &str) -> Option<u8> {
    if let Ok(n) = column.parse::<u8>() {
        return Some(n);
    }
    // The original tsusen wrote IPv6-ICMP's keyword in places; accept it too.
    if column.eq_ignore_ascii_case("IPV6-ICMP") {
        return Some(58);
    }
    (0..=255u8).find(|&n| matches!(keyword(n), Some(k) if k.eq_ignore_ascii_case(column)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_keyword_reads_back_to_its_number() {
        for n in 0..=255u8 {
            if let Some(k) = keyword(n) {
                assert_eq!(from_column(k), Some(n), "{k}");
                assert!(
                    !k.contains(' ') && k == k.to_ascii_uppercase().as_str(),
                    "{k}"
                );
            } else {
                assert_eq!(from_column(&n.to_string()), Some(n));
            }
        }
    }

    #[test]
    fn the_common_ones() {
        assert_eq!(keyword(6), Some("TCP"));
        assert_eq!(keyword(17), Some("UDP"));
        assert_eq!(keyword(1), Some("ICMP"));
        assert_eq!(keyword(58), Some("ICMPV6"));
        assert_eq!(keyword(47), Some("GRE"));
        assert_eq!(keyword(132), Some("SCTP"));
        assert_eq!(keyword(61), None);
        assert_eq!(keyword(253), None);
        assert_eq!(from_column("tcp"), Some(6));
        assert_eq!(from_column("IPv6-ICMP"), Some(58));
        assert_eq!(from_column("NOPE"), None);
    }
}
