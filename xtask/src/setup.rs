//! `cargo xtask setup`: make the eBPF build possible on this machine.
//!
//! Two routes build `bpfel-unknown-none`, a tier-3 target with no prebuilt
//! `core` from rustup:
//! - Debian: `rustc-web` with its prebuilt BPF `core` (`libstd-rust-web-dev-bpf`),
//!   linked into rustup as the toolchain `debian`, and bpf-linker built against
//!   Debian's LLVM 22. Works where only Debian's archive and crates.io are reachable.
//! - Upstream: rustup `nightly` with `rust-src` (`-Z build-std=core`) and bpf-linker.
//!
//! Setup takes whichever the machine has, installs what is missing when it can,
//! and otherwise says exactly what to install.

use std::{
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Result, bail};

const DEBIAN_PACKAGES: &[&str] = &[
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
];

/// Debian packages the live tests drive (real scanners, a second decoder).
const TEST_TOOL_PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "ip"),
    ("iputils-ping", "ping"),
    ("podman", "podman"),
    ("runc", "runc"),
    ("masscan", "masscan"),
    ("nmap", "nmap"),
    ("tshark", "tshark"),
    ("tcpdump", "tcpdump"),
    ("tcpreplay", "tcpreplay"),
    ("nftables", "nft"),
    ("hping3", "hping3"),
    ("python3-scapy", "scapy"),
    ("dnsutils", "dig"),
    ("netcat-openbsd", "nc"),
    ("chromium", "chromium"),
    ("prometheus", "promtool"),
    ("catatonit", "catatonit"),
    // tests/deploy_systemd_real.rs: a Debian 12 rootfs booted under systemd.
    ("mmdebstrap", "mmdebstrap"),
    ("systemd-container", "systemd-nspawn"),
    // tests/ship_*.rs, fleet_cluster.rs, report_clickhouse.rs: real ClickHouse
    // nodes and ZooKeeper (libraries and jars: found by dpkg, not on PATH).
    ("clickhouse-server", "clickhouse-server"),
    ("clickhouse-client", "clickhouse-client"),
    ("zookeeper", "zookeeper"),
    // tests/report_who.rs: test .mmdb files written in Perl, read back in Python.
    ("libmaxmind-db-writer-perl", "libmaxmind-db-writer-perl"),
    ("python3-maxminddb", "python3-maxminddb"),
];

const BPF_LINKER_VERSION: &str = "0.13.0";

/// Make the eBPF build possible; returns the rustup toolchain to build it with.
pub(crate) fn run(test_tools: bool) -> Result<String> {
    if test_tools {
        install_test_tools()?;
    }
    if let Ok(toolchain) = std::env::var("TSUSEN_EBPF_TOOLCHAIN") {
        return Ok(toolchain);
    }
    if !debian_core_present() && !nightly_with_rust_src() {
        if can_apt() && apt_has_candidate("libstd-rust-web-dev-bpf") {
            apt_install(DEBIAN_PACKAGES)?;
        } else if which("rustup") {
            println!("setup: installing rustup nightly with rust-src");
            let _ = run_quiet(Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--component",
                "rust-src",
            ]));
        }
    }
    if debian_core_present() {
        setup_debian()?;
        Ok("debian".into())
    } else if nightly_with_rust_src() {
        ensure_bpf_linker(false)?;
        Ok("nightly".into())
    } else {
        bail!(
            "no toolchain can build the eBPF program. Either:\n  \
             Debian 12 (bookworm-security): sudo apt-get install -y {}\n  \
             or upstream: rustup toolchain install nightly --component rust-src && cargo install bpf-linker\n\
             then run `cargo xtask setup` again",
            DEBIAN_PACKAGES.join(" ")
        )
    }
}

pub(crate) fn is_root() -> bool {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

pub(crate) fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run_quiet(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn debian_core_present() -> bool {
    std::fs::read_dir("/usr/lib/rustlib/bpfel-unknown-none/lib").is_ok_and(|dir| {
        dir.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
    }) && Path::new("/usr/bin/rustc").exists()
}

fn nightly_with_rust_src() -> bool {
    let Ok(out) = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
    else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    out.status.success()
        && Path::new(&sysroot)
            .join("lib/rustlib/src/rust/library/core")
            .exists()
}

fn setup_debian() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if !missing.is_empty() {
        apt_install(&missing)?;
    }
    let linked = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.starts_with("debian"))
        });
    if !linked {
        println!("setup: rustup toolchain link debian /usr");
        crate::status(Command::new("rustup").args(["toolchain", "link", "debian", "/usr"]))?;
    }
    ensure_bpf_linker(true)
}

fn ensure_bpf_linker(debian_llvm: bool) -> Result<()> {
    if run_quiet(Command::new("bpf-linker").arg("--version")) {
        return Ok(());
    }
    println!("setup: building bpf-linker {BPF_LINKER_VERSION} (about a minute)");
    let mut cmd = Command::new("cargo");
    cmd.args([
        "install",
        "bpf-linker",
        "--version",
        BPF_LINKER_VERSION,
        "--locked",
    ]);
    if debian_llvm {
        // Its build script looks for libLLVM under LLVM_PREFIX.
        cmd.env("LLVM_PREFIX", "/usr/lib/llvm-22").args([
            "--no-default-features",
            "--features",
            "llvm-22",
        ]);
    }
    crate::status(&mut cmd)
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn can_apt() -> bool {
    is_root() && which("apt-get")
}

fn apt_has_candidate(package: &str) -> bool {
    let policy = |pkg: &str| {
        Command::new("apt-cache")
            .args(["policy", pkg])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let has = |out: &str| out.contains("Candidate:") && !out.contains("Candidate: (none)");
    if has(&policy(package)) {
        return true;
    }
    // The package lists may be missing or stale on a fresh machine.
    let _ = run_quiet(Command::new("apt-get").arg("update"));
    has(&policy(package))
}

pub(crate) fn apt_install(packages: &[&str]) -> Result<()> {
    if !can_apt() {
        bail!(
            "missing Debian packages; install them with: sudo apt-get install -y {}",
            packages.join(" ")
        );
    }
    println!("setup: apt-get install {}", packages.join(" "));
    if !apt_has_candidate(packages[0]) {
        bail!("apt has no package {}", packages[0]);
    }
    crate::status(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn install_test_tools() -> Result<()> {
    let missing: Vec<&str> = TEST_TOOL_PACKAGES
        .iter()
        .filter(|(package, program)| !which(program) && !dpkg_installed(package))
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if can_apt() {
        apt_install(&missing)
    } else {
        println!(
            "note: live tests that need {} will skip; install with: sudo apt-get install -y {}",
            missing.join(", "),
            missing.join(" ")
        );
        Ok(())
    }
}
