//! `tsusen check`: is this host ready for `tsusen run`?
//!
//! One line per check — `ok`, `warning` (works, with less) or `MISSING`
//! (`tsusen run` would fail) — each with what to do about it. Nothing is
//! attached and nothing is written: the eBPF program is loaded into the
//! kernel (which proves the verifier accepts it) and dropped at once, the
//! out-dir gets a probe file that is removed again, and a missing out-dir or
//! pin directory is not created.

use std::{
    fmt, fs,
    io::Write as _,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
};

use anyhow::{Result, bail};
use nix::unistd::{AccessFlags, access, getegid, geteuid};

use crate::{
    capture::{self, LoadOptions, privileges},
    config::{self, RunFlags, Settings},
    sys,
};

/// What a check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// `tsusen run` works, with less (a degraded feature, a risk).
    Warning,
    /// `tsusen run` would fail.
    Missing,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Missing => "MISSING",
        })
    }
}

/// One line of the report.
#[derive(Clone, Debug)]
pub struct Check {
    pub status: Status,
    pub what: String,
    pub detail: String,
    /// What to do about it (empty when ok).
    pub fix: String,
}

impl Check {
    fn new(status: Status, what: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            status,
            what: what.into(),
            detail: detail.into(),
            fix: String::new(),
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = fix.into();
        self
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<8} {}: {}", self.status, self.what, self.detail)?;
        if !self.fix.is_empty() {
            write!(f, "; fix: {}", self.fix)?;
        }
        Ok(())
    }
}

/// `tsusen check`: the checks for the run these flags describe.
pub fn run(flags: RunFlags) -> Result<()> {
    let checks = checks(flags);
    let mut out = std::io::stdout().lock();
    for check in &checks {
        writeln!(out, "{check}")?;
    }
    let missing: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == Status::Missing)
        .map(|c| c.what.as_str())
        .collect();
    if missing.is_empty() {
        writeln!(out, "ready: tsusen run can start here")?;
        Ok(())
    } else {
        out.flush()?;
        bail!("not ready for tsusen run: missing {}", missing.join(", "))
    }
}

/// Every check, in the order a person would fix them.
pub fn checks(flags: RunFlags) -> Vec<Check> {
    let mut checks = vec![kernel(&kernel_release())];
    let no_default_route = flags.ifaces.is_empty() && config::default_route_iface().is_err();
    let resolved = Settings::resolve(flags.clone()).or_else(|err| {
        if no_default_route {
            // Neither flags nor the file name an interface, and there is no
            // default route: check the rest, report the interface below.
            Settings::resolve(RunFlags {
                ifaces: vec![String::new()],
                ..flags
            })
        } else {
            Err(err)
        }
    });
    let settings = match resolved {
        Ok(settings) => settings,
        Err(err) => {
            checks.push(
                Check::new(Status::Missing, "settings", format!("{err:#}"))
                    .fix("correct the flags or the config file"),
            );
            return checks;
        }
    };
    let privileges = privileges_check();
    let privileged = privileges.status == Status::Ok;
    checks.push(privileges);
    checks.push(bpf_load(privileged));
    for iface in &settings.ifaces {
        checks.push(interface(iface));
    }
    checks.push(bpffs(&settings.pin_dir));
    checks.push(out_dir(&settings.out_dir));
    checks
}

/// The running kernel's release (`uname -r`).
fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|uts| uts.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `major.minor` of a release like `6.1.0-13-amd64`.
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The kernel against the README's Requirements table.
pub fn kernel(release: &str) -> Check {
    let Some(version) = parse_release(release) else {
        return Check::new(
            Status::Warning,
            "kernel",
            format!("cannot read the version of {release:?}; tsusen needs 5.4 or newer"),
        );
    };
    if version < (5, 4) {
        return Check::new(
            Status::Missing,
            "kernel",
            format!("{release} is older than 5.4, the oldest tsusen runs on"),
        )
        .fix("upgrade the kernel to 5.4 or newer (6.6+ for every feature)");
    }
    let mut degraded = Vec::new();
    if version < (5, 6) {
        degraded.push("no batch map syscalls before 5.6 (drains take one syscall per entry)");
    }
    if version < (5, 8) {
        degraded.push("no CAP_BPF/CAP_PERFMON before 5.8 (needs CAP_SYS_ADMIN)");
    }
    if version < (5, 9) {
        degraded
            .push("no BPF links for XDP before 5.9 (netlink attach, re-attached at each restart)");
    }
    if version < (5, 11) {
        degraded.push("maps are charged to RLIMIT_MEMLOCK before 5.11 (tsusen raises it)");
    }
    if version < (6, 6) {
        degraded.push("no TCX before 6.6 (TC egress through a netlink clsact filter)");
    }
    if degraded.is_empty() {
        Check::new(
            Status::Ok,
            "kernel",
            format!("{release} (5.4+ needed; every feature available)"),
        )
    } else {
        Check::new(
            Status::Warning,
            "kernel",
            format!("{release} works, with less: {}", degraded.join("; ")),
        )
        .fix("none needed; a 6.6+ kernel has every feature")
    }
}

fn privileges_check() -> Check {
    let missing = privileges::missing();
    if missing.is_empty() {
        Check::new(
            Status::Ok,
            "privileges",
            "root or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN",
        )
    } else {
        Check::new(
            Status::Missing,
            "privileges",
            format!("this process lacks {}", missing.join(", ")),
        )
        .fix(
            "run as root (sudo), or grant CAP_BPF CAP_PERFMON CAP_NET_ADMIN \
             (CAP_SYS_ADMIN before 5.8), e.g. AmbientCapabilities= in the systemd unit",
        )
    }
}

/// Load the program (the verifier checks it) and drop it at once.
fn bpf_load(privileged: bool) -> Check {
    // Kernels before 5.11 charge maps to RLIMIT_MEMLOCK, as `run` knows.
    if privileged && parse_release(&kernel_release()).is_some_and(|v| v < (5, 11)) {
        capture::raise_memlock_limit();
    }
    match capture::load(&LoadOptions::default()) {
        Ok(ebpf) => {
            drop(ebpf);
            Check::new(
                Status::Ok,
                "bpf",
                "the XDP program loads and the verifier accepts it",
            )
        }
        Err(err) if !privileged => Check::new(
            Status::Missing,
            "bpf",
            format!("cannot load the XDP program without privileges ({err:#})"),
        )
        .fix("see privileges above"),
        // EPERM only: the verifier rejects with EACCES too.
        Err(err) if sys::errno(err.as_ref()) == Some(nix::errno::Errno::EPERM) => Check::new(
            Status::Missing,
            "bpf",
            format!("the capabilities are there but bpf() is refused: {err:#}"),
        )
        .fix(
            "lift the seccomp profile or LSM policy that blocks bpf() \
             (a container: --security-opt seccomp=unconfined, or a profile allowing bpf)",
        ),
        Err(err) => Check::new(
            Status::Missing,
            "bpf",
            format!("the kernel refused the XDP program: {err:#}"),
        )
        .fix("a 5.4+ kernel built with CONFIG_BPF_SYSCALL; the verifier's log above says what it rejected"),
    }
}

fn interface(name: &str) -> Check {
    if name.is_empty() {
        return Check::new(
            Status::Missing,
            "interface",
            "no default route to take the interface from",
        )
        .fix("name one with --iface (or iface = [...] in the config file)");
    }
    if capture::iface::index(name).is_none() {
        return Check::new(
            Status::Missing,
            format!("interface {name}"),
            format!(
                "no interface named {name:?}; interfaces here: {}",
                capture::iface::list().join(", ")
            ),
        )
        .fix("pass --iface with one of them");
    }
    if let Some(xdp) = attached_xdp(name) {
        return attached_check(name, &xdp);
    }
    let driver = fs::read_link(format!("/sys/class/net/{name}/device/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let kind = capture::iface::index(name)
        .and_then(|index| capture::iface::link_kind(index).ok().flatten());
    let detail = match (driver, kind) {
        (_, Some(kind)) if capture::auto_mode(Some(&kind)) == capture::XdpMode::Generic => format!(
            "exists, a {kind} device (--xdp-mode auto attaches in generic mode: faster than native XDP on a {kind})"
        ),
        (Some(driver), _) => format!(
            "exists, driver {driver} (--xdp-mode auto attaches natively if {driver} supports XDP, else generic)"
        ),
        (None, _) => "exists, a virtual interface (--xdp-mode auto attaches natively if its type supports XDP, else generic)".to_owned(),
    };
    Check::new(Status::Ok, format!("interface {name}"), detail)
}

/// An XDP program the kernel reports on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachedXdp {
    pub prog_id: u32,
    /// How: `driver`, `generic`, `offloaded` or `several`.
    pub mode: &'static str,
    /// The program's name, when this process may look it up (CAP_SYS_ADMIN).
    pub name: Option<String>,
}

/// Another XDP program on the interface: `tsusen run` refuses to replace it
/// without `--force` (a tsusen program pinned by an earlier run is adopted).
fn attached_check(iface: &str, xdp: &AttachedXdp) -> Check {
    let what = format!("interface {iface}");
    let program = match &xdp.name {
        Some(name) => format!(
            "XDP program {name:?} (id {}, {} mode)",
            xdp.prog_id, xdp.mode
        ),
        None => format!("XDP program (id {}, {} mode)", xdp.prog_id, xdp.mode),
    };
    if xdp.name.as_deref() == Some(capture::XDP_PROGRAM) {
        return Check::new(
            Status::Warning,
            what,
            format!("a tsusen {program} is attached already"),
        )
        .fix(
            "none if it is this sensor's (tsusen run adopts what an earlier run pinned in its --pin-dir);              another tsusen's is refused unless --force",
        );
    }
    Check::new(
        Status::Warning,
        what,
        format!("another {program} is attached; tsusen run refuses to replace it"),
    )
    .fix(format!(
        "stop the tool that attached it (`ip link show {iface}`), or pass --force to replace it"
    ))
}

/// The XDP program attached to `iface` in this network namespace, asked of
/// the kernel over rtnetlink ([`capture::iface::xdp_query`]; no privileges
/// needed).
pub fn attached_xdp(iface: &str) -> Option<AttachedXdp> {
    let index = capture::iface::index(iface)?;
    let query = capture::iface::xdp_query(index).ok()?;
    if query.mode == 0 {
        return None;
    }
    let prog_id = query.prog_id.unwrap_or(0);
    Some(AttachedXdp {
        prog_id,
        mode: match query.mode {
            1 => "driver",
            2 => "generic",
            3 => "offloaded",
            _ => "several",
        },
        name: prog_name(prog_id),
    })
}

/// A BPF program's name by id (BPF_PROG_GET_FD_BY_ID needs CAP_SYS_ADMIN).
fn prog_name(id: u32) -> Option<String> {
    let prog = sys::prog_fd_by_id(id).ok()?;
    sys::prog_name(prog.as_fd()).ok()
}

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[expect(
    clippy::unnecessary_cast,
    reason = "f_type is i64 on x86_64 but narrower on other architectures"
)]
fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 as i64 == BPF_FS_MAGIC)
}

/// `path` itself or its nearest existing ancestor.
fn nearest_existing(path: &Path) -> PathBuf {
    let mut at = path.to_path_buf();
    while !at.exists() {
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent.to_path_buf(),
            _ => return PathBuf::from("."),
        }
    }
    at
}

/// access(2) W_OK: honours read-only mounts, and for root always passes
/// elsewhere (as creating the file would).
fn writable(path: &Path) -> bool {
    access(path, AccessFlags::W_OK).is_ok()
}

/// access(2) X_OK on a directory: whether this user may enter it.
fn searchable(path: &Path) -> bool {
    access(path, AccessFlags::X_OK).is_ok()
}

/// The first existing directory on the way to `path` (itself included) that
/// this user cannot enter: systemd mounts /sys/fs/bpf with mode 0700, so for
/// any user but root nothing below it can be created or even reached.
fn closed_on_the_way(path: &Path) -> Option<PathBuf> {
    let mut ancestors: Vec<&Path> = path.ancestors().collect();
    ancestors.reverse();
    for dir in ancestors {
        if dir.as_os_str().is_empty() || !dir.is_dir() {
            return None;
        }
        if !searchable(dir) {
            return Some(dir.to_path_buf());
        }
    }
    None
}

/// What makes `dir` a pin directory this user owns: a bpffs of its own there
/// (what the package's run-tsusen-bpf.mount and the unit's chown do).
fn own_bpffs_fix(dir: &Path) -> String {
    let (uid, gid) = (geteuid(), getegid());
    format!(
        "give this user a bpffs of its own: mkdir -p {dir} && mount -t bpf -o mode=0700 bpf {dir} \
         && chown {uid}:{gid} {dir}, and run with --pin-dir {dir} (the package's tsusen.service \
         does this with run-tsusen-bpf.mount at /run/tsusen/bpf)",
        dir = dir.display()
    )
}

/// The pin directory: on a bpffs (or under /sys/fs/bpf, which `run` mounts
/// when it can), reachable and writable.
fn bpffs(pin_dir: &Path) -> Check {
    let what = format!("pin-dir {}", pin_dir.display());
    let fs_root = Path::new("/sys/fs/bpf");
    if pin_dir.starts_with(fs_root) && !is_bpffs(fs_root) {
        return if crate::capture::privileges::can_mount() {
            Check::new(
                Status::Warning,
                what,
                "no bpffs at /sys/fs/bpf yet; tsusen run mounts one",
            )
            .fix("optional: mount it at boot (bpf /sys/fs/bpf bpf defaults 0 0 in /etc/fstab)")
        } else {
            Check::new(
                Status::Missing,
                what,
                "no bpffs at /sys/fs/bpf, and this process cannot mount one (CAP_SYS_ADMIN)",
            )
            .fix(own_bpffs_fix(Path::new("/run/tsusen/bpf")))
        };
    }
    if let Some(closed) = closed_on_the_way(pin_dir).filter(|c| c != pin_dir) {
        // A chown of the pin directory cannot help: the way to it is closed.
        let mode = fs::metadata(&closed)
            .map(|m| {
                format!(
                    "mode {:o}",
                    std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777
                )
            })
            .unwrap_or_default();
        return Check::new(
            Status::Missing,
            what,
            format!(
                "this user cannot enter {} ({mode}; systemd mounts /sys/fs/bpf so)",
                closed.display()
            ),
        )
        .fix(own_bpffs_fix(Path::new("/run/tsusen/bpf")));
    }
    let existing = nearest_existing(pin_dir);
    if !is_bpffs(&existing) {
        return Check::new(
            Status::Missing,
            what,
            format!("{} is not on a bpf filesystem", existing.display()),
        )
        .fix(own_bpffs_fix(pin_dir));
    }
    if !writable(&existing) {
        let (uid, gid) = (geteuid(), getegid());
        return Check::new(
            Status::Missing,
            what,
            format!(
                "{} is on bpffs but not writable by this user",
                existing.display()
            ),
        )
        .fix(if existing == pin_dir {
            format!("chown {uid}:{gid} {}", pin_dir.display())
        } else {
            format!(
                "mkdir -p {dir} && chown {uid}:{gid} {dir}",
                dir = pin_dir.display()
            )
        });
    }
    let detail = if existing == pin_dir {
        "on bpffs, writable".to_owned()
    } else {
        format!("on bpffs, will be created in {}", existing.display())
    };
    Check::new(Status::Ok, what, detail)
}

#[expect(
    clippy::unnecessary_cast,
    reason = "statvfs's field types are u64 on x86_64 but narrower on other architectures"
)]
fn free_bytes(path: &Path) -> Option<u64> {
    nix::sys::statvfs::statvfs(path)
        .ok()
        .map(|s| s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// The out-dir: writable (a probe file, removed again; no day file), or
/// creatable; and how much room is left.
fn out_dir(dir: &Path) -> Check {
    let what = format!("out-dir {}", dir.display());
    let existing = nearest_existing(dir);
    let created = existing != dir;
    let ok = if created {
        writable(&existing)
    } else {
        let probe = dir.join(format!(".tsusen-check-{}", std::process::id()));
        let result = fs::File::create(&probe).and_then(|mut f| f.write_all(b"x"));
        let _ = fs::remove_file(&probe);
        result.is_ok()
    };
    if !ok {
        let target = if created { &existing } else { dir };
        return Check::new(
            Status::Missing,
            what,
            format!("{} is not writable by this user", target.display()),
        )
        .fix(format!(
            "create {} owned by the user tsusen runs as (mkdir -p, chown), or pass another --out-dir",
            dir.display()
        ));
    }
    let free = free_bytes(&existing);
    let mut detail = if created {
        format!("will be created in {}", existing.display())
    } else {
        "writable".to_owned()
    };
    if let Some(free) = free {
        detail = format!("{detail}, {} MiB free", free >> 20);
        if free < 100 << 20 {
            return Check::new(Status::Warning, what, detail + " (less than 100 MiB)")
                .fix("free space or pick another --out-dir: a busy day file takes tens of MiB");
        }
    }
    Check::new(Status::Ok, what, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_against_the_requirements_table() {
        let old = kernel("4.19.0-25-amd64");
        assert_eq!(old.status, Status::Missing, "{old}");
        assert!(old.to_string().contains("older than 5.4"), "{old}");

        let k54 = kernel("5.4.0-150-generic").to_string();
        assert!(k54.starts_with("warning"), "{k54}");
        for degraded in ["5.6", "5.8", "5.9", "5.11", "6.6"] {
            assert!(k54.contains(&format!("before {degraded}")), "{k54}");
        }

        let k510 = kernel("5.10.0-28-amd64").to_string();
        assert!(
            k510.starts_with("warning") && !k510.contains("before 5.9"),
            "{k510}"
        );
        assert!(k510.contains("before 6.6"), "{k510}");

        let k66 = kernel("6.6.30");
        assert_eq!(k66.status, Status::Ok, "{k66}");
        assert_eq!(kernel("6.18.44-fc-v782").status, Status::Ok);
        assert_eq!(kernel("garbage").status, Status::Warning);
    }

    #[test]
    fn a_missing_out_dir_is_not_created() {
        let dir = std::env::temp_dir()
            .join(crate::testing::unique_name("chk"))
            .join("out");
        let check = out_dir(&dir);
        assert_eq!(check.status, Status::Ok, "{check}");
        assert!(check.detail.contains("will be created"), "{check}");
        assert!(!dir.parent().unwrap().exists(), "check created a directory");
    }
}
