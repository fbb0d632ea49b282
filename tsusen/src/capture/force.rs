//! `--force`: take an interface from whatever XDP program holds it.
//!
//! aya can detach only what it attached, so this walks the kernel's links
//! with the bpf() commands libbpf uses (BPF_LINK_GET_NEXT_ID, 5.8;
//! BPF_LINK_DETACH, 5.9) and detaches the XDP link on the interface. A
//! program attached through netlink (no link) is removed with `ip link`.

use std::{io, process::Command};

use anyhow::{Result, bail};
use log::warn;

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;
const BPF_LINK_DETACH: libc::c_long = 34;
const BPF_LINK_TYPE_XDP: u32 = 6;

/// `union bpf_attr`, as large as any command here needs (zero-filled).
#[repr(C, align(8))]
struct Attr([u32; 16]);

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: attr is a valid, zero-padded bpf_attr of the size passed.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut Attr, size_of::<Attr>()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The fd of the XDP link on `ifindex`, if one exists.
fn xdp_link_on(ifindex: u32) -> io::Result<Option<std::os::fd::OwnedFd>> {
    use std::os::fd::FromRawFd as _;
    let mut id = 0u32;
    loop {
        let mut attr = Attr([0; 16]);
        attr.0[0] = id; // start_id
        match bpf(BPF_LINK_GET_NEXT_ID, &mut attr) {
            Ok(_) => id = attr.0[1], // next_id
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(err) => return Err(err),
        }
        let mut attr = Attr([0; 16]);
        attr.0[0] = id; // link_id
        let Ok(fd) = bpf(BPF_LINK_GET_FD_BY_ID, &mut attr) else {
            continue; // gone meanwhile
        };
        // SAFETY: the kernel just gave us this fd.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) };
        // struct bpf_link_info: type, id, prog_id, then the per-type union
        // (8-aligned) whose xdp member starts with ifindex.
        let mut info = [0u32; 16];
        let mut attr = Attr([0; 16]);
        use std::os::fd::AsRawFd as _;
        attr.0[0] = fd.as_raw_fd() as u32; // bpf_fd
        attr.0[1] = size_of_val(&info) as u32; // info_len
        let ptr = info.as_mut_ptr() as u64;
        attr.0[2] = ptr as u32; // info (u64, little-endian halves)
        attr.0[3] = (ptr >> 32) as u32;
        if bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).is_ok()
            && info[0] == BPF_LINK_TYPE_XDP
            && info[4] == ifindex
        {
            return Ok(Some(fd));
        }
    }
}

/// Detach any XDP program from `iface`.
pub fn detach_xdp(iface: &str) -> Result<()> {
    let ifindex = super::iface::require(iface)?;
    if let Some(link) = xdp_link_on(ifindex)? {
        use std::os::fd::AsRawFd as _;
        let mut attr = Attr([0; 16]);
        attr.0[0] = link.as_raw_fd() as u32;
        if let Err(err) = bpf(BPF_LINK_DETACH, &mut attr) {
            bail!("--force: cannot detach the XDP link on {iface}: {err}");
        }
        warn!("--force: detached the XDP program that held {iface}");
        return Ok(());
    }
    // No link: possibly a netlink attachment (ip link set ... xdp obj ...).
    for mode in ["xdpgeneric", "xdpdrv"] {
        let _ = Command::new("ip")
            .args(["link", "set", "dev", iface, mode, "off"])
            .output();
    }
    Ok(())
}
