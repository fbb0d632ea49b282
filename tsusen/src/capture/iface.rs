//! Network interfaces: does the one named exist, and which do.

use std::{
    ffi::CString,
    fs, io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use anyhow::{Result, bail};
use aya_obj::generated::{
    IFLA_XDP_DRV_PROG_ID, IFLA_XDP_HW_PROG_ID, IFLA_XDP_PROG_ID, IFLA_XDP_SKB_PROG_ID,
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
    let c_name = CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    (index != 0).then_some(index)
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

/// The ids of the XDP programs attached to interface `ifindex` of *this*
/// network namespace, in any mode: what `ip link show` and libbpf's
/// `bpf_xdp_query` read (RTM_GETLINK, IFLA_XDP; the per-mode ids since
/// kernel 4.18). A bpf_link only knows an ifindex, which another namespace
/// may use for another interface; this answer is about ours.
pub fn xdp_prog_ids(ifindex: u32) -> io::Result<Vec<u32>> {
    // SAFETY: plain socket(2); the fd is owned from here on.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };

    #[repr(C)]
    struct Request {
        header: libc::nlmsghdr,
        info: libc::ifinfomsg,
    }
    // SAFETY: both are plain C structs; all-zero is a valid value.
    let mut request: Request = unsafe { std::mem::zeroed() };
    request.header.nlmsg_len = size_of::<Request>() as u32;
    request.header.nlmsg_type = libc::RTM_GETLINK;
    request.header.nlmsg_flags = libc::NLM_F_REQUEST as u16;
    request.header.nlmsg_seq = 1;
    request.info.ifi_family = libc::AF_UNSPEC as u8;
    request.info.ifi_index = ifindex.cast_signed();
    // SAFETY: sends the bytes of a valid request of the size given.
    let sent = unsafe {
        libc::send(
            socket.as_raw_fd(),
            (&raw const request).cast(),
            size_of::<Request>(),
            0,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    // One answer: the link's message (a few kB) or an error.
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: receives into a buffer of the length given.
    let got = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    parse_xdp_prog_ids(&buf[..got.cast_unsigned()])
}

/// The XDP program ids in a netlink answer to RTM_GETLINK.
fn parse_xdp_prog_ids(answer: &[u8]) -> io::Result<Vec<u32>> {
    let u16_at = |b: &[u8], at: usize| u16::from_ne_bytes([b[at], b[at + 1]]);
    let u32_at = |b: &[u8], at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
    let malformed = || io::Error::other("malformed netlink answer");
    let header = size_of::<libc::nlmsghdr>();
    if answer.len() < header {
        return Err(malformed());
    }
    let len = (u32_at(answer, 0) as usize).min(answer.len());
    let kind = u16_at(answer, 4);
    if kind == libc::NLMSG_ERROR as u16 {
        let errno = answer
            .get(header..header + 4)
            .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
            .ok_or_else(malformed)?;
        return Err(io::Error::from_raw_os_error(-errno));
    }
    if kind != libc::RTM_NEWLINK {
        return Err(malformed());
    }
    // Attributes: {u16 len, u16 type, value}, each 4-aligned.
    let attrs = |from: usize, to: usize| {
        let mut at = from;
        std::iter::from_fn(move || {
            if at + 4 > to {
                return None;
            }
            let len = u16_at(answer, at) as usize;
            if len < 4 || at + len > to {
                return None;
            }
            let item = (u16_at(answer, at + 2) & NLA_TYPE_MASK, at + 4, at + len);
            at += len.next_multiple_of(4);
            Some(item)
        })
    };
    let mut ids = Vec::new();
    let first = header + size_of::<libc::ifinfomsg>();
    for (kind, from, to) in attrs(first, len) {
        if kind != IFLA_XDP {
            continue;
        }
        for (kind, from, to) in attrs(from, to) {
            let per_mode = [
                IFLA_XDP_PROG_ID,
                IFLA_XDP_DRV_PROG_ID,
                IFLA_XDP_SKB_PROG_ID,
                IFLA_XDP_HW_PROG_ID,
            ];
            if per_mode.contains(&u32::from(kind)) && to - from >= 4 {
                let id = u32_at(answer, from);
                if id != 0 && !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }
    Ok(ids)
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
    fn loopback_has_no_xdp_program_and_a_missing_index_is_an_error() {
        assert_eq!(
            xdp_prog_ids(index("lo").unwrap()).unwrap(),
            Vec::<u32>::new()
        );
        let err = xdp_prog_ids(999_999).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENODEV), "{err}");
    }
}
