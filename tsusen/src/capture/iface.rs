//! Network interfaces: does the one named exist, and which do.

use std::{fs, io, os::fd::AsRawFd as _};

use anyhow::{Result, bail};
use aya_obj::generated::{
    IFLA_XDP_ATTACHED, IFLA_XDP_DRV_PROG_ID, IFLA_XDP_HW_PROG_ID, IFLA_XDP_PROG_ID,
    IFLA_XDP_SKB_PROG_ID,
};
use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, recv, send, socket,
};

/// The interfaces of this network namespace, sorted.
pub fn list() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir("/sys/class/net")
        .map(|dir| {
            dir.filter_map(std::result::Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The kernel's index of `name`, if it exists.
pub fn index(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

/// Fail with the list of real interfaces when `name` does not exist.
pub fn require(name: &str) -> Result<u32> {
    match index(name) {
        Some(index) => Ok(index),
        None => bail!(
            "no interface named {name:?}; interfaces here: {}",
            list().join(", ")
        ),
    }
}

/// `IFLA_XDP`, the nested attribute of a link message that describes its XDP
/// programs (linux/if_link.h; not in the libc crate).
const IFLA_XDP: u16 = 43;
/// The attribute-type bits of `nla_type` (without NLA_F_NESTED and
/// NLA_F_NET_BYTEORDER).
const NLA_TYPE_MASK: u16 = 0x3fff;

/// The XDP programs attached to an interface, as rtnetlink reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XdpQuery {
    /// IFLA_XDP_ATTACHED: 0 none, 1 driver, 2 generic, 3 offloaded, 4 several.
    pub mode: u8,
    /// IFLA_XDP_PROG_ID: the program, when one mode is attached.
    pub prog_id: Option<u32>,
    /// Every program id, in any mode (IFLA_XDP_PROG_ID and the per-mode ids).
    pub prog_ids: Vec<u32>,
}

/// The XDP programs attached to interface `ifindex` of *this* network
/// namespace, in any mode: what `ip link show` and libbpf's
/// `bpf_xdp_query` read (RTM_GETLINK, IFLA_XDP; the per-mode ids since
/// kernel 4.18; no privileges needed). A bpf_link only knows an ifindex,
/// which another namespace may use for another interface; this answer is
/// about ours.
pub fn xdp_query(ifindex: u32) -> io::Result<XdpQuery> {
    parse_xdp_query(&getlink(ifindex)?)
}

/// The kind of interface `ifindex` of this network namespace is, as
/// rtnetlink names it (IFLA_LINKINFO's IFLA_INFO_KIND: `veth`, `bridge`,
/// `macvlan`, ...); `None` for a device without one (a real NIC).
pub fn link_kind(ifindex: u32) -> io::Result<Option<String>> {
    parse_link_kind(&getlink(ifindex)?)
}

/// RTM_GETLINK for interface `ifindex`: the kernel's answer (the link's
/// message, a few kB, or an error message).
fn getlink(ifindex: u32) -> io::Result<Vec<u8>> {
    let socket = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    send(
        socket.as_raw_fd(),
        &getlink_request(ifindex),
        MsgFlags::empty(),
    )?;
    let mut buf = vec![0u8; 64 * 1024];
    let got = recv(socket.as_raw_fd(), &mut buf, MsgFlags::empty())?;
    buf.truncate(got);
    Ok(buf)
}

/// The ids of the XDP programs attached to interface `ifindex` of this
/// network namespace, in any mode (see [`xdp_query`]).
pub fn xdp_prog_ids(ifindex: u32) -> io::Result<Vec<u32>> {
    xdp_query(ifindex).map(|query| query.prog_ids)
}

/// Size of `struct nlmsghdr` and of `struct ifinfomsg`.
const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const _: () = assert!(
    NLMSG_HDRLEN == size_of::<libc::nlmsghdr>() && IFINFOMSG_LEN == size_of::<libc::ifinfomsg>()
);

/// RTM_GETLINK for one interface: nlmsghdr then ifinfomsg, in the host's
/// byte order.
fn getlink_request(ifindex: u32) -> Vec<u8> {
    let mut request = Vec::with_capacity(NLMSG_HDRLEN + IFINFOMSG_LEN);
    // nlmsghdr: len, type, flags, seq, pid (the kernel's: 0).
    let len = u32::try_from(NLMSG_HDRLEN + IFINFOMSG_LEN).expect("a fixed, small size");
    request.extend(len.to_ne_bytes());
    request.extend(libc::RTM_GETLINK.to_ne_bytes());
    request.extend(
        u16::try_from(libc::NLM_F_REQUEST)
            .expect("a u16 flag")
            .to_ne_bytes(),
    );
    request.extend(1u32.to_ne_bytes());
    request.extend(0u32.to_ne_bytes());
    // ifinfomsg: family (AF_UNSPEC), pad, type, index, flags, change.
    request.extend([u8::try_from(libc::AF_UNSPEC).expect("a u8 family"), 0]);
    request.extend(0u16.to_ne_bytes());
    request.extend(ifindex.to_ne_bytes());
    request.extend(0u32.to_ne_bytes());
    request.extend(0u32.to_ne_bytes());
    request
}

/// The top-level attributes of a netlink answer to RTM_GETLINK, each as
/// (type, value), or the error the answer carries.
fn link_attrs(answer: &[u8]) -> io::Result<Vec<(u16, &[u8])>> {
    let u16_at = |b: &[u8], at: usize| u16::from_ne_bytes([b[at], b[at + 1]]);
    let u32_at = |b: &[u8], at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
    let malformed = || io::Error::other("malformed netlink answer");
    let header = NLMSG_HDRLEN;
    if answer.len() < header {
        return Err(malformed());
    }
    let len = (u32_at(answer, 0) as usize).min(answer.len());
    let kind = u16_at(answer, 4);
    if i32::from(kind) == libc::NLMSG_ERROR {
        let errno = answer
            .get(header..header + 4)
            .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
            .ok_or_else(malformed)?;
        return Err(io::Error::from_raw_os_error(-errno));
    }
    if kind != libc::RTM_NEWLINK {
        return Err(malformed());
    }
    Ok(nested_attrs(
        answer.get(header + IFINFOMSG_LEN..len).unwrap_or_default(),
    ))
}

/// Attributes: {u16 len, u16 type, value}, each 4-aligned; as (type without
/// the flag bits, value).
fn nested_attrs(mut bytes: &[u8]) -> Vec<(u16, &[u8])> {
    let mut attrs = Vec::new();
    while bytes.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([bytes[0], bytes[1]]));
        if len < 4 || len > bytes.len() {
            break;
        }
        let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & NLA_TYPE_MASK;
        attrs.push((kind, &bytes[4..len]));
        bytes = &bytes[len.next_multiple_of(4).min(bytes.len())..];
    }
    attrs
}

/// The XDP programs in a netlink answer to RTM_GETLINK.
fn parse_xdp_query(answer: &[u8]) -> io::Result<XdpQuery> {
    let u32_of = |v: &[u8]| {
        v.get(..4)
            .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
    };
    let mut query = XdpQuery::default();
    for (kind, value) in link_attrs(answer)? {
        if kind != IFLA_XDP {
            continue;
        }
        for (kind, value) in nested_attrs(value) {
            let kind = u32::from(kind);
            if kind == IFLA_XDP_ATTACHED
                && let Some(&mode) = value.first()
            {
                query.mode = mode;
            }
            if kind == IFLA_XDP_PROG_ID {
                query.prog_id = u32_of(value).or(query.prog_id);
            }
            let per_mode = [
                IFLA_XDP_PROG_ID,
                IFLA_XDP_DRV_PROG_ID,
                IFLA_XDP_SKB_PROG_ID,
                IFLA_XDP_HW_PROG_ID,
            ];
            if per_mode.contains(&kind)
                && let Some(id) = u32_of(value)
                && id != 0
                && !query.prog_ids.contains(&id)
            {
                query.prog_ids.push(id);
            }
        }
    }
    Ok(query)
}

/// `IFLA_LINKINFO` and its nested `IFLA_INFO_KIND` (linux/if_link.h).
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;

/// The link kind in a netlink answer to RTM_GETLINK (a NUL-terminated
/// string inside IFLA_LINKINFO).
fn parse_link_kind(answer: &[u8]) -> io::Result<Option<String>> {
    Ok(link_attrs(answer)?
        .into_iter()
        .filter(|&(kind, _)| kind == IFLA_LINKINFO)
        .flat_map(|(_, value)| nested_attrs(value))
        .find(|&(kind, _)| kind == IFLA_INFO_KIND)
        .map(|(_, name)| {
            let name = name.split(|&b| b == 0).next().unwrap_or_default();
            String::from_utf8_lossy(name).into_owned()
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_exists_and_a_made_up_name_does_not() {
        assert!(require("lo").is_ok());
        let err = require("tsusen-no-such0").unwrap_err().to_string();
        assert!(
            err.contains("no interface named \"tsusen-no-such0\""),
            "{err}"
        );
        assert!(err.contains("lo"), "the error lists real interfaces: {err}");
    }

    #[test]
    fn loopback_has_no_link_kind() {
        assert_eq!(link_kind(index("lo").unwrap()).unwrap(), None);
        assert!(link_kind(999_999).is_err());
    }

    #[test]
    fn loopback_has_no_xdp_program_and_a_missing_index_is_an_error() {
        assert_eq!(
            xdp_prog_ids(index("lo").unwrap()).unwrap(),
            Vec::<u32>::new()
        );
        let err = xdp_prog_ids(999_999).unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(nix::errno::Errno::ENODEV as i32),
            "{err}"
        );
    }
}
