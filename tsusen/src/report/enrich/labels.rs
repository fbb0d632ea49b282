//! Label lists (`--labels FILE`): lines `CIDR label`, `#` comments. An
//! address gets every label whose network contains it, most specific
//! (longest prefix) first: a source can be both in a partner's range and a
//! known research scanner, and the analyst should see both.

use std::{collections::BTreeMap, net::IpAddr, path::Path};

use anyhow::{Context as _, Result, bail};
use ipnet::IpNet;
use rustc_hash::FxHashMap;
use tsusen_common::tuple::ipv4_mapped;

/// Networks and their labels, looked up by prefix length (in the IPv4-mapped
/// 128-bit form, as `tables::Networks`).
#[derive(Clone, Debug, Default)]
pub struct Labels {
    /// Label names, by id.
    pub names: Vec<String>,
    /// Longest prefix first: (length, masked address -> label ids).
    by_len: Vec<(u8, FxHashMap<u128, Vec<u16>>)>,
}

fn mapped(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from_be_bytes(ipv4_mapped(v4.octets())),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

fn mask(addr: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        addr & (u128::MAX << (128 - u32::from(len)))
    }
}

impl Labels {
    pub fn is_empty(&self) -> bool {
        self.by_len.is_empty()
    }

    /// Read one list and add its lines.
    pub fn read(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --labels {}", path.display()))?;
        let mut by_len: BTreeMap<u8, FxHashMap<u128, Vec<u16>>> =
            std::mem::take(&mut self.by_len).into_iter().collect();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let Some((net, label)) = line.split_once(char::is_whitespace) else {
                bail!(
                    "--labels {}:{}: expected `CIDR label`, got {line:?}",
                    path.display(),
                    n + 1
                );
            };
            let label = label.trim();
            let net: IpNet = net
                .parse()
                .or_else(|_| net.parse::<IpAddr>().map(IpNet::from))
                .with_context(|| {
                    format!(
                        "--labels {}:{}: bad network {net:?} (expected a CIDR like 198.51.100.0/24)",
                        path.display(),
                        n + 1
                    )
                })?;
            let id = self
                .names
                .iter()
                .position(|l| l == label)
                .unwrap_or_else(|| {
                    self.names.push(label.to_owned());
                    self.names.len() - 1
                });
            let id = u16::try_from(id).context("more than 65535 distinct labels")?;
            let len = match net {
                IpNet::V4(v4) => 96 + v4.prefix_len(),
                IpNet::V6(v6) => v6.prefix_len(),
            };
            let ids = by_len
                .entry(len)
                .or_default()
                .entry(mask(mapped(net.network()), len))
                .or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        self.by_len = by_len.into_iter().rev().collect();
        Ok(())
    }

    /// Every label of `ip`, most specific first, each once.
    pub fn of(&self, ip: IpAddr) -> Vec<u16> {
        let addr = mapped(ip);
        let mut out = Vec::new();
        for (len, nets) in &self.by_len {
            if let Some(ids) = nets.get(&mask(addr, *len)) {
                for id in ids {
                    if !out.contains(id) {
                        out.push(*id);
                    }
                }
            }
        }
        out
    }
}
