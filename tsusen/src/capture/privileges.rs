//! Which capabilities tsusen needs, and which of them this process lacks.

use std::fs;

use nix::errno::Errno;

// Capability numbers from linux/capability.h.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capability set of this process.
fn effective() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Whether this process may mount filesystems (bpffs) itself.
pub fn can_mount() -> bool {
    effective() & (1 << CAP_SYS_ADMIN) != 0
}

/// Capabilities missing to load and attach: CAP_BPF + CAP_PERFMON (5.8+) or
/// CAP_SYS_ADMIN (older kernels), and CAP_NET_ADMIN to attach XDP/TC.
pub fn missing() -> Vec<&'static str> {
    let caps = effective();
    let has = |cap: u32| caps & (1 << cap) != 0;
    let mut missing = Vec::new();
    let can_load = has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON));
    if !can_load {
        if !has(CAP_BPF) {
            missing.push("CAP_BPF");
        }
        if !has(CAP_PERFMON) {
            missing.push("CAP_PERFMON");
        }
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    missing
}

/// Turn a permission error into the line a person needs; pass others through.
pub fn explain(err: anyhow::Error, doing: &str) -> anyhow::Error {
    let denied = is_denied(&err);
    let missing = missing();
    if denied && !missing.is_empty() {
        anyhow::anyhow!(
            "missing privileges for {doing}: tsusen needs {} (run as root, e.g. with sudo)",
            missing.join(", ")
        )
    } else {
        err.context(doing.to_owned())
    }
}

/// Whether the kernel refused a call for lack of permission (EPERM, EACCES).
pub fn is_denied(err: &anyhow::Error) -> bool {
    matches!(
        crate::sys::errno(err.as_ref()),
        Some(Errno::EPERM | Errno::EACCES)
    )
}

#[cfg(test)]
mod tests {
    use aya::{EbpfError, maps::MapError};

    use super::*;

    /// aya's errors carry the syscall's errno as their source, through
    /// anyhow's context too: no need to read the message.
    #[test]
    fn a_refused_bpf_call_is_told_by_its_errno() {
        let refused = |code: Errno| {
            anyhow::anyhow!(EbpfError::MapError(MapError::CreateError {
                name: "FIRST_SEEN".into(),
                io_error: std::io::Error::from_raw_os_error(code as i32),
            }))
            .context("loading the eBPF maps")
        };
        assert!(is_denied(&refused(Errno::EPERM)));
        assert!(is_denied(&refused(Errno::EACCES)));
        assert!(!is_denied(&refused(Errno::E2BIG)));
        assert!(!is_denied(&anyhow::anyhow!("Operation not permitted")));
    }
}
