//! `cargo xtask`: the developer's entry point.
//!
//! - `setup`: install what building the eBPF program needs, for the route this
//!   machine can take (idempotent; seconds when everything is there).
//! - `build`, `test`, `run`, `bench`, `screenshot`, `image`, `deb`, `vm-test`: call `setup`
//!   where they build, then do the thing.

mod deb;
mod image;
mod setup;
mod vm;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the eBPF build needs (and, with --test-tools, the test tools).
    Setup {
        /// Also install the traffic tools the live tests use (masscan, nmap, tshark, ...).
        #[arg(long)]
        test_tools: bool,
    },
    /// Build the eBPF object and the tsusen binary.
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Run every test: fmt, clippy, unit, kernel (BPF_PROG_TEST_RUN), live
    /// (namespaces), deployment, then the sensor on 5.10 and 6.1 kernels (vm-test).
    Test {
        /// Arguments passed to `cargo test` after `--` (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Measure: the XDP program per packet (as ratios to an empty program),
    /// replay throughput, the live sensor (drain, memory, a masscan sweep) and
    /// the report on 30 x 1,000,000 rows. Needs root for the kernel parts.
    Bench,
    /// The README's screenshot of the report: generated days with a spike,
    /// enrichment on, `tsusen serve` photographed by headless Chromium
    /// (tsusen/examples/report_screenshot.rs). Needs chromium and
    /// libmaxmind-db-writer-perl.
    Screenshot {
        /// Where the PNG goes.
        #[arg(default_value = "docs/report.png")]
        out: PathBuf,
    },
    /// Build the container image (podman or docker): packaging/Containerfile,
    /// or with --local a FROM scratch image of a static binary built here.
    Image {
        /// Use only local files: no registry, no download.
        #[arg(long)]
        local: bool,
        /// The image's tag.
        #[arg(long, default_value = "tsusen")]
        tag: String,
    },
    /// Build the Debian package (cargo-deb; installs it when missing): the
    /// static binary in /usr/bin, the systemd unit and bpffs mount, sysusers.d
    /// and tmpfiles.d entries, /etc/tsusen/tsusen.toml, man pages, completions.
    Deb,
    /// Build in release mode and run the sensor (with sudo when not root).
    Run {
        /// Arguments for `tsusen`, e.g. `-- run --iface eth0`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Boot Debian's 5.10 and 6.1 kernels under qemu (KVM when usable) with a
    /// static tsusen in a minimal initramfs, and run the sensor's life in each:
    /// native and generic XDP, real probes, TC egress, kill -9 and restart on
    /// the pins, SIGTERM, /metrics, `tsusen check`.
    VmTest {
        /// Kernel line to boot (repeatable; default: 5.10, then 6.1).
        #[arg(long = "kernel", value_enum)]
        kernels: Vec<vm::KernelLine>,
        /// Debian kernel package to boot instead (default: for each line the
        /// newest linux-image-X.Y.0-N-amd64-unsigned already in target/vm, else in apt).
        #[arg(long, conflicts_with = "kernels")]
        kernel_package: Option<String>,
        /// Seconds to wait for each VM before failing.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Accelerator: auto (KVM, falling back to TCG if the guest does not boot), kvm or tcg.
        #[arg(long, value_enum, default_value_t = vm::Accel::Auto)]
        accel: vm::Accel,
        /// Print the whole serial console.
        #[arg(long, short)]
        verbose: bool,
    },
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Setup { test_tools } => {
            let toolchain = setup::run(test_tools)?;
            println!("eBPF toolchain: {toolchain}");
        }
        Cmd::Build { release } => {
            let toolchain = setup::run(false)?;
            let binary = build(&toolchain, release)?;
            let object = ebpf_object(release)?;
            println!("tsusen binary: {}", binary.display());
            println!("eBPF object:   {}", object.display());
        }
        Cmd::Test { args } => test(&args)?,
        Cmd::Bench => {
            let toolchain = setup::run(false)?;
            // The classifier, the live sensor and the day-file format
            // (benches/: hand-written against the csv crate), then the report
            // on 30 days of 1,000,000 rows (writes about 1.3 GB to the temp dir).
            status(cargo(&toolchain).args(["bench", "--package", "tsusen", "--quiet"]))?;
            status(
                cargo(&toolchain)
                    .args(["test", "--release", "--quiet", "--package", "tsusen"])
                    // One thread: the timings must not share the cores.
                    .args(["--test", "report_perf", "--", "--ignored", "--nocapture"])
                    .arg("--test-threads=1")
                    .env("TSUSEN_REPORT_ROWS", "1000000"),
            )?;
        }
        Cmd::VmTest {
            kernels,
            kernel_package,
            timeout,
            accel,
            verbose,
        } => {
            let toolchain = setup::run(false)?;
            vm::run(
                &toolchain,
                &vm::Options {
                    kernels: if kernels.is_empty() {
                        vm::KernelLine::ALL.to_vec()
                    } else {
                        kernels
                    },
                    kernel_package,
                    timeout: std::time::Duration::from_secs(timeout),
                    accel,
                    verbose,
                },
            )?;
        }
        Cmd::Screenshot { out } => {
            let toolchain = setup::run(false)?;
            let binary = build(&toolchain, false)?;
            status(
                cargo(&toolchain)
                    .args(["run", "--quiet", "--package", "tsusen"])
                    .args(["--example", "report_screenshot", "--"])
                    .arg(&binary)
                    .arg(workspace_root().join(out)),
            )?;
        }
        Cmd::Image { local, tag } => image::run(local, &tag)?,
        Cmd::Deb => {
            let toolchain = setup::run(false)?;
            let deb = deb::build(&toolchain)?;
            println!("package: {}", deb.display());
        }
        Cmd::Run { args } => {
            let toolchain = setup::run(false)?;
            let binary = build(&toolchain, true)?;
            run_binary(&binary, &args)?;
        }
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// A `cargo` command in the workspace, with the eBPF toolchain chosen.
fn cargo(toolchain: &str) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root())
        .env("TSUSEN_EBPF_TOOLCHAIN", toolchain);
    cmd
}

fn status(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("failed to start {cmd:?}"))?;
    if !status.success() {
        bail!("{} failed ({status})", cmd.get_program().display());
    }
    Ok(())
}

fn build(toolchain: &str, release: bool) -> Result<PathBuf> {
    let mut cmd = cargo(toolchain);
    cmd.args(["build", "--package", "tsusen"]);
    if release {
        cmd.arg("--release");
    }
    status(&mut cmd)?;
    let profile = if release { "release" } else { "debug" };
    Ok(workspace_root().join("target").join(profile).join("tsusen"))
}

/// The newest eBPF object build.rs produced for this profile.
fn ebpf_object(release: bool) -> Result<PathBuf> {
    let profile = if release { "release" } else { "debug" };
    let build_dir = workspace_root().join("target").join(profile).join("build");
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(&build_dir)?.flatten() {
        let object = entry.path().join("out").join("tsusen");
        if !entry.file_name().to_string_lossy().starts_with("tsusen-") {
            continue;
        }
        if let Ok(modified) = object.metadata().and_then(|m| m.modified())
            && newest.as_ref().is_none_or(|(t, _)| modified > *t)
        {
            newest = Some((modified, object));
        }
    }
    newest
        .map(|(_, path)| path)
        .context("no eBPF object found after the build")
}

fn test(args: &[String]) -> Result<()> {
    let toolchain = setup::run(true)?;
    let root = setup::is_root();
    if !root {
        println!(
            "note: not root, so the kernel and live tests will skip (each says why); \
             run `sudo -E cargo xtask test` to run them"
        );
    }
    status(cargo(&toolchain).args(["fmt", "--all", "--check"]))?;
    status(cargo(&toolchain).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--quiet",
        "--",
        "-D",
        "warnings",
    ]))?;
    let mut cmd = cargo(&toolchain);
    cmd.args(["test", "--workspace"]);
    // tests/deploy_systemd_real.rs installs the package into a container
    // booted under systemd: build it first (root only, as that test is).
    let filter_wants_deb = args.is_empty() || args.iter().any(|a| a.contains("systemd"));
    if root && filter_wants_deb {
        let deb = deb::build(&toolchain)?;
        cmd.env("TSUSEN_DEB", deb);
    }
    // In CI (root) a kernel test that skips is a failure: it must run.
    if std::env::var_os("CI").is_some() {
        cmd.env("TSUSEN_REQUIRE_ROOT_TESTS", "1");
    }
    if !args.is_empty() {
        cmd.arg("--").args(args);
        // A filtered run is for a developer's loop: no VM.
        return status(&mut cmd);
    }
    status(&mut cmd)?;
    // The same sensor on Debian 11's 5.10 and Debian 12's 6.1 kernels, under
    // qemu. It needs qemu, which setup installs only as root.
    if root || setup::which("qemu-system-x86_64") {
        vm::run(
            &toolchain,
            &vm::Options {
                kernels: vm::KernelLine::ALL.to_vec(),
                kernel_package: None,
                timeout: std::time::Duration::from_secs(300),
                accel: vm::Accel::Auto,
                verbose: false,
            },
        )
    } else if std::env::var_os("CI").is_some() {
        bail!("the 5.10 and 6.1 kernel tests need qemu-system-x86_64 (or root to install it)")
    } else {
        println!(
            "SKIPPED vm-test: needs qemu-system-x86_64 (apt-get install qemu-system-x86) or root"
        );
        Ok(())
    }
}

fn run_binary(binary: &Path, args: &[String]) -> Result<()> {
    let mut cmd = if setup::is_root() {
        Command::new(binary)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-E", "--"]).arg(binary);
        sudo
    };
    cmd.args(args);
    let status = cmd
        .status()
        .with_context(|| format!("failed to start {}", binary.display()))?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}
