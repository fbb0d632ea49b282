//! `--force`: take an interface from whatever XDP program holds it, and the
//! kernel's view of XDP links (which interface, which program).
//!
//! aya can detach only what it attached, so this walks the kernel's links
//! with the bpf() commands libbpf uses (BPF_LINK_GET_NEXT_ID and
//! BPF_LINK_GET_FD_BY_ID, kernel 5.8; BPF_OBJ_GET_INFO_BY_FD on a link, 5.8;
//! BPF_LINK_DETACH, 5.9) and detaches the XDP link on the interface. A
//! link's info names an ifindex only, and interfaces in different network
//! namespaces often share one (fresh veths get 2, 3, ...): a link is ours to
//! detach only when its program is the one this namespace's interface runs
//! (netlink's answer, [`super::iface::xdp_prog_ids`]). A program attached
//! through netlink (no link) is removed with `ip link`.

use std::{
    io,
    os::fd::{AsFd, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    process::Command,
};

use anyhow::{Result, bail};
use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_link_info, bpf_link_type};
use log::warn;

use super::iface;

/// The bpf() syscall with a whole `bpf_attr` (for the commands aya does not
/// offer; the test helpers use it too).
pub fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<i64> {
    // SAFETY: attr is a valid, zero-initialised bpf_attr of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_mut::<bpf_attr>(attr),
            size_of::<bpf_attr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a C union of plain integers: all-zero is valid
    // (and what the kernel requires of the unused bytes).
    unsafe { std::mem::zeroed() }
}

/// An XDP link as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpTarget {
    /// The program the link runs.
    pub prog_id: u32,
    /// The interface it is attached to, in *some* namespace; 0 once the
    /// interface is gone (the link is "severed": defunct, kernel >= 5.9).
    pub ifindex: u32,
}

/// What an XDP link runs and where; `None` for a link of another type.
pub fn xdp_target(link: BorrowedFd<'_>) -> io::Result<Option<XdpTarget>> {
    // SAFETY: plain integers and unions of them: all-zero is valid.
    let mut info: bpf_link_info = unsafe { std::mem::zeroed() };
    let mut attr = zeroed_attr();
    attr.info.bpf_fd = link.as_raw_fd().cast_unsigned();
    attr.info.info_len = size_of::<bpf_link_info>() as u32;
    attr.info.info = (&raw mut info) as u64;
    bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    if info.type_ != bpf_link_type::BPF_LINK_TYPE_XDP as u32 {
        return Ok(None);
    }
    Ok(Some(XdpTarget {
        prog_id: info.prog_id,
        // SAFETY: the kernel filled the xdp member for an XDP link.
        ifindex: unsafe { info.__bindgen_anon_1.xdp.ifindex },
    }))
}

/// What the link pinned at `path` runs and where (BPF_OBJ_GET, kernel 4.4);
/// `None` for a link of another type.
pub fn pinned_xdp_target(path: &std::path::Path) -> io::Result<Option<XdpTarget>> {
    use std::os::unix::ffi::OsStrExt as _;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_4.pathname = c_path.as_ptr() as u64;
    let fd = bpf(bpf_cmd::BPF_OBJ_GET, &mut attr)?;
    // SAFETY: the kernel just gave us this fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    xdp_target(fd.as_fd())
}

/// Every XDP link on an interface numbered `ifindex` (in any namespace),
/// with its fd.
fn xdp_links_on(ifindex: u32) -> io::Result<Vec<(OwnedFd, XdpTarget)>> {
    let mut found = Vec::new();
    let mut id = 0u32;
    loop {
        let mut attr = zeroed_attr();
        attr.__bindgen_anon_6.__bindgen_anon_1.start_id = id;
        match bpf(bpf_cmd::BPF_LINK_GET_NEXT_ID, &mut attr) {
            // SAFETY: the kernel wrote next_id.
            Ok(_) => id = unsafe { attr.__bindgen_anon_6.next_id },
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => return Ok(found),
            Err(err) => return Err(err),
        }
        let mut attr = zeroed_attr();
        attr.__bindgen_anon_6.__bindgen_anon_1.link_id = id;
        let Ok(fd) = bpf(bpf_cmd::BPF_LINK_GET_FD_BY_ID, &mut attr) else {
            continue; // gone meanwhile
        };
        // SAFETY: the kernel just gave us this fd.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        if let Ok(Some(target)) = xdp_target(fd.as_fd())
            && target.ifindex == ifindex
        {
            found.push((fd, target));
        }
    }
}

/// Detach any XDP program from `iface` (an interface of this namespace).
pub fn detach_xdp(iface: &str) -> Result<()> {
    let ifindex = iface::require(iface)?;
    let running = iface::xdp_prog_ids(ifindex).map_err(|err| {
        anyhow::anyhow!("--force: cannot ask which XDP program {iface} runs: {err}")
    })?;
    if running.is_empty() {
        return Ok(());
    }
    // Only the link whose program this interface runs: a link on the same
    // ifindex with another program belongs to another namespace.
    for (link, target) in xdp_links_on(ifindex)? {
        if !running.contains(&target.prog_id) {
            continue;
        }
        let mut attr = zeroed_attr();
        attr.link_detach.link_fd = link.as_raw_fd().cast_unsigned();
        if let Err(err) = bpf(bpf_cmd::BPF_LINK_DETACH, &mut attr) {
            bail!("--force: cannot detach the XDP link on {iface}: {err}");
        }
        warn!("--force: detached the XDP program that held {iface}");
        return Ok(());
    }
    // No link: a netlink attachment (ip link set ... xdp obj ...).
    for mode in ["xdpgeneric", "xdpdrv"] {
        let _ = Command::new("ip")
            .args(["link", "set", "dev", iface, mode, "off"])
            .output();
    }
    warn!("--force: removed the XDP program that held {iface}");
    Ok(())
}
