//! The local networks L: this host's own addresses, kept current.
//!
//! A netlink socket subscribed to address changes (RTMGRP_IPV4_IFADDR,
//! RTMGRP_IPV6_IFADDR) says *when* to look; getifaddrs says *what* is there.
//! The messages themselves are not parsed: any change means "look again".

use std::{
    io,
    net::IpAddr,
    os::fd::{AsRawFd as _, OwnedFd},
};

use anyhow::{Context as _, Result};
use ipnet::IpNet;
use nix::{
    errno::Errno,
    sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, socket,
    },
};
use tokio::io::unix::AsyncFd;

use crate::tables::Networks;

/// This host's addresses, each as a /32 or /128.
pub fn host_addresses() -> Result<Vec<IpNet>> {
    let mut nets: Vec<IpNet> = nix::ifaddrs::getifaddrs()
        .context("listing this host's addresses")?
        .filter_map(|ifa| ifa.address)
        .filter_map(|addr| {
            if let Some(v4) = addr.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                addr.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .map(IpNet::from)
        .collect();
    nets.sort();
    nets.dedup();
    Ok(nets)
}

/// L: the host's addresses plus the `--local` networks.
pub fn local_networks(extra: &[IpNet]) -> Result<(Networks, Vec<IpNet>)> {
    let mut all = host_addresses()?;
    all.extend_from_slice(extra);
    all.sort();
    all.dedup();
    let mut nets = Networks::default();
    for net in &all {
        nets.insert(*net);
    }
    Ok((nets, all))
}

/// Wakes up when an address is added or removed in this network namespace.
pub struct AddressWatch {
    socket: AsyncFd<OwnedFd>,
}

impl AddressWatch {
    pub fn new() -> Result<Self> {
        let socket = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .map_err(io::Error::from)
        .context("opening a netlink socket")?;
        let groups = (libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR) as u32;
        bind(socket.as_raw_fd(), &NetlinkAddr::new(0, groups))
            .map_err(io::Error::from)
            .context("subscribing to address changes")?;
        // SAFETY: the socket is owned by the AsyncFd for as long as it is
        // registered, and nothing else closes or reuses its fd.
        let socket = unsafe { AsyncFd::register(socket) }
            .map_err(|e| anyhow::anyhow!("watching address changes: {e}"))?;
        Ok(AddressWatch { socket })
    }

    /// Wait for the next change (and swallow the burst of messages it came in).
    pub async fn changed(&mut self) -> Result<()> {
        let mut buf = [0u8; 8192];
        loop {
            let mut guard = self.socket.readable().await?;
            let mut got = false;
            loop {
                match recv(
                    self.socket.get_ref().as_raw_fd(),
                    &mut buf,
                    MsgFlags::MSG_DONTWAIT,
                ) {
                    Ok(n) if n > 0 => got = true,
                    Err(Errno::EAGAIN) => {
                        guard.clear_ready();
                        break;
                    }
                    // Overflowed: changes were missed, so look again.
                    Err(Errno::ENOBUFS) => got = true,
                    Ok(_) => {
                        return Err(io::Error::from(io::ErrorKind::UnexpectedEof))
                            .context("reading address changes");
                    }
                    Err(err) => {
                        return Err(io::Error::from(err)).context("reading address changes");
                    }
                }
            }
            if got {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_local() {
        let (nets, all) = local_networks(&["203.0.113.0/24".parse().unwrap()]).unwrap();
        assert!(
            all.iter().any(|n| n.addr() == IpAddr::from([127, 0, 0, 1])),
            "{all:?}"
        );
        assert!(nets.contains(&tsusen_common::tuple::mapped("127.0.0.1".parse().unwrap())));
        assert!(nets.contains(&tsusen_common::tuple::mapped(
            "203.0.113.9".parse().unwrap()
        )));
    }
}
