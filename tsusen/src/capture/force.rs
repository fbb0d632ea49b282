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
    os::fd::{AsFd, OwnedFd},
    path::Path,
    process::Command,
};

use anyhow::{Result, bail};
use log::warn;

use super::iface;
use crate::sys::{self, XdpLink};

/// What the link pinned at `path` runs and where (BPF_OBJ_GET, kernel 4.4);
/// `None` for a link of another type.
pub fn pinned_xdp_link(path: &Path) -> io::Result<Option<XdpLink>> {
    sys::xdp_link(sys::obj_get(path)?.as_fd())
}

/// Every XDP link on an interface numbered `ifindex` (in any namespace),
/// with its fd.
fn xdp_links_on(ifindex: u32) -> io::Result<Vec<(OwnedFd, XdpLink)>> {
    let mut found = Vec::new();
    let mut id = 0u32;
    while let Some(next) = sys::next_link_id(id)? {
        id = next;
        let Ok(fd) = sys::link_fd_by_id(id) else {
            continue; // gone meanwhile
        };
        if let Ok(Some(link)) = sys::xdp_link(fd.as_fd())
            && link.ifindex == ifindex
        {
            found.push((fd, link));
        }
    }
    Ok(found)
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
    for (fd, link) in xdp_links_on(ifindex)? {
        if !running.contains(&link.prog_id) {
            continue;
        }
        if let Err(err) = sys::link_detach(fd.as_fd()) {
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
