//! `cargo xtask vm-test`: load and run tsusen on the kernels it targets.
//!
//! Boots Debian's own kernels under qemu, one VM each: Debian 11's 5.10 (the
//! oldest line obtainable here; no BPF links for TC, batch map calls, ...)
//! and Debian 12's 6.1. Each VM gets a minimal initramfs: a static busybox,
//! the static tsusen binary (the eBPF object is embedded in it), `vm-udp`
//! (the UDP busybox cannot send, compiled from `vm_udp.rs`), the veth,
//! clsact and cls_bpf modules with what they depend on, and `vm_init.sh` as
//! `/init`. The init script runs the sensor's life on a veth pair (see its
//! head) and prints `VM-TEST ok: ...` for each step that passed and `VM-TEST
//! PASS` at the end; the host checks every step, the rows, and what `tsusen
//! check` says the kernel lacks. The VM has no network device: nothing
//! leaves it.
//!
//! Everything downloaded (the kernel and busybox-static packages, extracted,
//! never installed) is cached under `target/vm/`; only qemu is installed on
//! the host (with apt-get, when root). The 5.10 kernel comes from bullseye
//! through a private apt configuration under `target/vm/apt-bullseye/` (its
//! own sources list, package lists and cache, made from the mirrors the
//! host's apt already uses): nothing is added to the host's apt sources.

use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use std::fmt::Write as _;

use anyhow::{Context as _, Result, bail};

use crate::{setup, status, workspace_root};

/// The `/init` script of the initramfs.
const INIT: &str = include_str!("vm_init.sh");

/// The source of `/bin/vm-udp`, compiled on its own (not a module of xtask).
const VM_UDP: &str = include_str!("vm_udp.rs");

/// Kernel modules the test needs where Debian builds them as modules: the
/// veth pair, the clsact qdisc and the BPF classifier (TC egress on kernels
/// without TCX). What they depend on comes from each module's `depends=`.
const MODULES: &[&str] = &["veth", "sch_ingress", "cls_bpf"];

/// The steps `/init` must report (`VM-TEST ok: STEP`), in order.
const STEPS: &[&str] = &[
    "check: ready",
    "native: attached in native mode",
    "native: a SYN, a UDP probe, a ping and an IPv6 SYN recorded",
    "native: the reply to the host's own UDP query not recorded (TC egress)",
    "native: /metrics answers",
    "native: kill -9 leaves the pins",
    "native: SIGTERM exits 0",
    "native: restart adopted the pinned program and maps (the SYN sent after kill -9 recorded)",
    "native: SIGTERM drained",
    "native: nothing lost or written twice across kill -9 and restart",
    "native: SIGTERM unpinned",
    "generic: attached in generic mode",
    "generic: a SYN, a UDP probe, a ping and an IPv6 SYN recorded",
    "generic: the reply to the host's own UDP query not recorded (TC egress)",
    "generic: drained one key at a time",
];

/// Rows the day files must hold (`VM-TEST csv ROUND: proto dst_port src_ip
/// dst_ip`), checked here too, not only by `/init`.
const EXPECTED_ROWS: &[&str] = &[
    "VM-TEST csv native: TCP 4242 198.18.0.2 198.18.0.1 ",
    "VM-TEST csv native: TCP 4242 2001:db8::2 2001:db8::1 ",
    "VM-TEST csv native: UDP 4242 198.18.0.2 198.18.0.1 ",
    "VM-TEST csv native: ICMP - 198.18.0.2 198.18.0.1 ",
    "VM-TEST csv native: TCP 4250 198.18.0.2 198.18.0.1 ",
    "VM-TEST csv native: TCP 4251 198.18.0.2 198.18.0.1 ",
    "VM-TEST csv native: TCP 4251 2001:db8::2 2001:db8::1 ",
    "VM-TEST csv generic: TCP 4243 198.18.0.2 198.18.0.1 ",
    "VM-TEST csv generic: TCP 4243 2001:db8::2 2001:db8::1 ",
    "VM-TEST csv generic: UDP 4243 198.18.0.2 198.18.0.1 ",
    "VM-TEST csv generic: ICMP - 198.18.0.2 198.18.0.1 ",
];

/// A line of Debian kernels the test boots.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub(crate) enum KernelLine {
    /// Debian 11 (bullseye): linux-image-5.10.0-N-amd64-unsigned.
    #[value(name = "5.10")]
    V5_10,
    /// Debian 12 (bookworm): linux-image-6.1.0-N-amd64-unsigned.
    #[value(name = "6.1")]
    V6_1,
}

impl KernelLine {
    /// Every line, in the order `vm-test` boots them.
    pub(crate) const ALL: &[KernelLine] = &[KernelLine::V5_10, KernelLine::V6_1];

    fn name(self) -> &'static str {
        match self {
            KernelLine::V5_10 => "5.10",
            KernelLine::V6_1 => "6.1",
        }
    }

    /// The package name before the ABI number.
    fn package_prefix(self) -> &'static str {
        match self {
            KernelLine::V5_10 => "linux-image-5.10.0-",
            KernelLine::V6_1 => "linux-image-6.1.0-",
        }
    }

    /// The Debian release whose archive has it: `None` for the host's own
    /// (Debian 12), else a release reached through a private apt configuration.
    fn suite(self) -> Option<&'static str> {
        match self {
            KernelLine::V5_10 => Some("bullseye"),
            KernelLine::V6_1 => None,
        }
    }

    /// The line of a package named with `--kernel-package`.
    fn of_package(package: &str) -> KernelLine {
        if package.starts_with("linux-image-5.") {
            KernelLine::V5_10
        } else {
            KernelLine::V6_1
        }
    }

    /// What `tsusen check` must say this kernel lacks, as the README's
    /// Requirements table has it (`before X`), and what it must not.
    fn lacks(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            KernelLine::V5_10 => (
                &["before 5.11", "before 6.6"],
                &["before 5.6", "before 5.8", "before 5.9"],
            ),
            KernelLine::V6_1 => (
                &["before 6.6"],
                &["before 5.6", "before 5.8", "before 5.9", "before 5.11"],
            ),
        }
    }
}

/// Options of `cargo xtask vm-test`.
pub(crate) struct Options {
    /// The kernel lines to boot, one VM each.
    pub kernels: Vec<KernelLine>,
    /// A Debian kernel image package, e.g. `linux-image-6.1.0-56-amd64-unsigned`,
    /// booted instead of `kernels`; default: for each line, the newest one
    /// already in `target/vm/`, else the newest in apt.
    pub kernel_package: Option<String>,
    /// Give up on each VM after this long.
    pub timeout: Duration,
    /// KVM, TCG, or KVM falling back to TCG.
    pub accel: Accel,
    /// Print the whole serial console as it comes.
    pub verbose: bool,
}

pub(crate) fn run(toolchain: &str, options: &Options) -> Result<()> {
    let started = Instant::now();
    let vm_dir = workspace_root().join("target").join("vm");
    fs::create_dir_all(&vm_dir).with_context(|| format!("creating {}", vm_dir.display()))?;

    ensure_qemu()?;
    let host_apt = Apt::host();
    let busybox = busybox(&vm_dir, &host_apt)?;
    let t = Instant::now();
    let tsusen = build_static(toolchain)?;
    let vm_udp = build_vm_udp(&vm_dir)?;
    println!("vm-test: static tsusen built in {:.1?}", t.elapsed());

    let wanted: Vec<(KernelLine, Option<&str>)> = match options.kernel_package.as_deref() {
        Some(package) => vec![(KernelLine::of_package(package), Some(package))],
        None => options.kernels.iter().map(|&line| (line, None)).collect(),
    };
    let mut failed = Vec::new();
    for (line, package) in wanted {
        let t = Instant::now();
        let result = (|| {
            let apt = match line.suite() {
                None => host_apt.clone(),
                Some(suite) => Apt::private(&vm_dir, suite)?,
            };
            let kernel = kernel(&vm_dir, line, package, &apt)?;
            println!(
                "vm-test: {} kernel {} ({})",
                line.name(),
                kernel.release,
                kernel.vmlinuz.display()
            );
            let initramfs = vm_dir.join(format!("initramfs-{}.cpio", kernel.release));
            write_initramfs(&initramfs, &busybox, &tsusen, &vm_udp, &kernel)?;
            let booted = Instant::now();
            let result = boot(line, &kernel.vmlinuz, &initramfs, options);
            println!(
                "vm-test: the {} VM ran {:.1?}",
                kernel.release,
                booted.elapsed()
            );
            result
        })();
        println!(
            "vm-test: {} round took {:.1?} (download and initramfs included)",
            line.name(),
            t.elapsed()
        );
        if let Err(err) = result {
            eprintln!("vm-test: {} FAILED: {err:#}", line.name());
            failed.push(line.name());
        }
    }
    println!("vm-test took {:.1?} in all", started.elapsed());
    if !failed.is_empty() {
        bail!("vm-test failed on {}", failed.join(" and "));
    }
    Ok(())
}

fn ensure_qemu() -> Result<()> {
    if setup::which("qemu-system-x86_64") {
        return Ok(());
    }
    setup::apt_install(&["qemu-system-x86"])
}

/// apt-get and apt-cache, with the host's configuration or a private one.
#[derive(Clone, Default)]
struct Apt {
    /// `-o` options (empty: the host's own sources and lists).
    options: Vec<String>,
    /// Whether the lists are ours (under `target/vm/`): then `update` needs no root.
    private: bool,
}

impl Apt {
    fn host() -> Apt {
        Apt::default()
    }

    /// apt for Debian release `suite` (main and its security updates) from
    /// the mirrors the host's apt uses, with its own sources list, package
    /// lists and cache under `target/vm/apt-SUITE/`. The host's sources and
    /// lists are not touched.
    fn private(vm_dir: &Path, suite: &str) -> Result<Apt> {
        let dir = vm_dir.join(format!("apt-{suite}"));
        for sub in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        let sources = private_sources(suite, &host_mirrors()?);
        let list = dir.join("sources.list");
        if fs::read_to_string(&list).ok().as_deref() != Some(sources.as_str()) {
            fs::write(&list, &sources)?;
            // Lists of other sources would mislead apt-cache.
            let _ = fs::remove_dir_all(dir.join("lists"));
            fs::create_dir_all(dir.join("lists/partial"))?;
        }
        let path = |p: &str| dir.join(p).to_string_lossy().into_owned();
        let options = [
            format!("Dir::Etc::SourceList={}", path("sources.list")),
            "Dir::Etc::SourceParts=/dev/null".to_owned(),
            format!("Dir::State::Lists={}", path("lists")),
            format!("Dir::Cache={}", path("cache")),
            // Only the package lists: no AppStream metadata.
            "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".to_owned(),
        ];
        Ok(Apt {
            options: options
                .into_iter()
                .flat_map(|o| ["-o".to_owned(), o])
                .collect(),
            private: true,
        })
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        if setup::is_root() {
            // Else apt warns that its _apt user cannot write to our directories.
            cmd.args(["-o", "APT::Sandbox::User=root"]);
        }
        cmd.args(&self.options);
        cmd
    }

    /// `apt-get update`, when allowed: always for private lists, as root for the host's.
    fn update(&self) -> bool {
        if !self.private && !setup::is_root() {
            return false;
        }
        println!(
            "vm-test: apt-get update{}",
            if self.private { " (private lists)" } else { "" }
        );
        self.command("apt-get")
            .args(["update", "-q"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Package names matching `regex`.
    fn search(&self, regex: &str) -> Result<Vec<String>> {
        let search = || -> Result<Vec<String>> {
            let out = self
                .command("apt-cache")
                .args(["search", "--names-only", regex])
                .output()
                .context("running apt-cache (vm-test needs a Debian host)")?;
            Ok(String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(str::to_owned)
                .collect())
        };
        let found = search()?;
        // The package lists may be missing on a fresh machine.
        if found.is_empty() && self.update() {
            return search();
        }
        Ok(found)
    }

    /// `apt-get download PACKAGE` into `dir`; returns the .deb.
    fn download(&self, package: &str, dir: &Path) -> Result<PathBuf> {
        let download = || {
            self.command("apt-get")
                .args(["download", "-q", package])
                .current_dir(dir)
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let downloaded = download() || (self.update() && download());
        if !downloaded {
            bail!("apt-get download {package} failed");
        }
        fs::read_dir(dir)?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with(&format!("{package}_")) && n.ends_with(".deb")
                })
            })
            .with_context(|| {
                format!(
                    "apt-get download {package} left no .deb in {}",
                    dir.display()
                )
            })
    }
}

/// The Debian archive and security mirrors (URIs) the host's apt uses.
#[derive(Debug, PartialEq, Eq)]
struct Mirrors {
    archive: String,
    security: Option<String>,
}

fn host_mirrors() -> Result<Mirrors> {
    let out = Command::new("apt-get")
        .args([
            "indextargets",
            "--format",
            "$(REPO_URI) $(RELEASE) $(IDENTIFIER)",
        ])
        .output()
        .context("running apt-get (vm-test needs a Debian host)")?;
    parse_mirrors(&String::from_utf8_lossy(&out.stdout)).context(
        "the host's apt has no Debian archive (a `main` source for a release like bookworm); \
         name a kernel with --kernel-package",
    )
}

/// From `apt-get indextargets` lines `URI RELEASE IDENTIFIER`: the archive
/// is the source of a plain release (`bookworm`), security that of `*-security`.
fn parse_mirrors(indextargets: &str) -> Option<Mirrors> {
    let mut archive = None;
    let mut security = None;
    for line in indextargets.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [uri, release, "Packages"] = fields.as_slice() else {
            continue;
        };
        if release.ends_with("-security") {
            security.get_or_insert_with(|| uri.to_string());
        } else if !release.contains('-') {
            archive.get_or_insert_with(|| uri.to_string());
        }
    }
    Some(Mirrors {
        archive: archive?,
        security,
    })
}

/// A one-line-style sources list for `suite` on `mirrors`.
fn private_sources(suite: &str, mirrors: &Mirrors) -> String {
    let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
    let signed = if Path::new(keyring).exists() {
        format!("[signed-by={keyring}] ")
    } else {
        String::new()
    };
    let mut sources = format!("deb {signed}{} {suite} main\n", mirrors.archive);
    if let Some(security) = &mirrors.security {
        writeln!(sources, "deb {signed}{security} {suite}-security main")
            .expect("a String takes any write");
    }
    sources
}

/// A kernel extracted from a Debian package: what the VM boots and loads.
struct Kernel {
    release: String,
    vmlinuz: PathBuf,
    /// The modules [`MODULES`] needs, uncompressed, each after what it depends on.
    modules: Vec<PathBuf>,
}

fn kernel(vm_dir: &Path, line: KernelLine, package: Option<&str>, apt: &Apt) -> Result<Kernel> {
    let kernels = vm_dir.join("kernels");
    let package = match package {
        Some(package) => package.to_owned(),
        None => match newest_kernel_package(line, cached_packages(&kernels)) {
            Some(cached) => cached,
            None => newest_kernel_package(
                line,
                apt.search(&format!(
                    "^{}[0-9]+-amd64",
                    line.package_prefix().replace('.', r"\.")
                ))?,
            )
            .with_context(|| {
                format!(
                    "apt knows no {}N-amd64-unsigned package; name one with --kernel-package",
                    line.package_prefix()
                )
            })?,
        },
    };
    let dir = kernels.join(&package);
    if let Some(kernel) = extracted(&dir).ok().flatten() {
        return Ok(kernel);
    }
    println!("vm-test: downloading {package}");
    let deb = apt.download(&package, vm_dir)?;
    let partial = dir.with_extension("partial");
    let _ = fs::remove_dir_all(&partial);
    fs::create_dir_all(&partial)?;
    let patterns = ["./boot/vmlinuz-*", "*/modules.builtin"];
    extract(&deb, &partial, &patterns.map(str::to_owned))?;
    let release = release_of(&partial)?;
    extract_modules(&deb, &partial, &release)
        .with_context(|| format!("the modules of {package}"))?;
    let _ = fs::remove_file(&deb);
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&partial, &dir)?;
    extracted(&dir)?.with_context(|| format!("{} is incomplete", dir.display()))
}

/// The release of the kernel extracted in `dir` (`boot/vmlinuz-RELEASE`).
fn release_of(dir: &Path) -> Result<String> {
    fs::read_dir(dir.join("boot"))
        .with_context(|| format!("no boot/ in {}", dir.display()))?
        .flatten()
        .find_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("vmlinuz-")
                .map(str::to_owned)
        })
        .with_context(|| format!("no vmlinuz in {}", dir.display()))
}

/// The kernel extracted in `dir`, if it is there with every module the test
/// needs (`None`: extract it again, e.g. after [`MODULES`] grew).
fn extracted(dir: &Path) -> Result<Option<Kernel>> {
    let Ok(release) = release_of(dir) else {
        return Ok(None);
    };
    let module_dir = dir.join("lib/modules").join(&release);
    let Ok(dep) = fs::read_to_string(module_dir.join(VM_MODULES_DEP)) else {
        return Ok(None);
    };
    let builtin = fs::read_to_string(module_dir.join("modules.builtin")).unwrap_or_default();
    let Ok(needed) = modules_needed(MODULES, &dep, &builtin) else {
        return Ok(None);
    };
    let mut modules = Vec::new();
    for module in needed {
        let path = module_dir.join(&module);
        if !path.exists() {
            return Ok(None);
        }
        modules.push(uncompressed_module(&path)?);
    }
    Ok(Some(Kernel {
        vmlinuz: dir.join("boot").join(format!("vmlinuz-{release}")),
        release,
        modules,
    }))
}

/// What [`extract_modules`] found, in `modules.dep`'s format.
const VM_MODULES_DEP: &str = "vm-modules.dep";

/// Extract the modules [`MODULES`] needs from `deb` into `dir`, following
/// each module's `depends=` (a .deb ships no `modules.dep`: depmod makes it
/// at install), and write what they need as [`VM_MODULES_DEP`].
fn extract_modules(deb: &Path, dir: &Path, release: &str) -> Result<()> {
    let prefix = format!("./lib/modules/{release}/");
    let module_dir = dir.join(&prefix);
    fs::create_dir_all(&module_dir)?;
    let listing = Command::new("sh")
        .args(["-c", "dpkg-deb --fsys-tarfile \"$0\" | tar -t"])
        .arg(deb)
        .output()
        .with_context(|| format!("listing {}", deb.display()))?;
    // Module paths relative to the module directory, e.g. kernel/drivers/net/veth.ko.
    let paths: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter(|p| p.contains(".ko"))
        .map(str::to_owned)
        .collect();
    let builtin = fs::read_to_string(module_dir.join("modules.builtin")).unwrap_or_default();
    let normal = |name: &str| name.replace('-', "_");
    let find = |module: &str| -> Option<String> {
        paths
            .iter()
            .find(|p| normal(module_name(p)) == normal(module))
            .cloned()
    };
    let is_builtin = |module: &str| {
        builtin
            .lines()
            .any(|l| normal(module_name(l)) == normal(module))
    };
    let mut lines = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut todo: Vec<String> = MODULES
        .iter()
        .filter(|m| !is_builtin(m))
        .map(std::string::ToString::to_string)
        .collect();
    while !todo.is_empty() {
        let mut batch = Vec::new();
        for module in todo.drain(..) {
            if seen.contains(&normal(&module)) {
                continue;
            }
            seen.push(normal(&module));
            batch.push(find(&module).with_context(|| {
                format!("{module} is neither built in nor a module in the package")
            })?);
        }
        if batch.is_empty() {
            break;
        }
        let patterns: Vec<String> = batch.iter().map(|p| format!("{prefix}{p}")).collect();
        extract(deb, dir, &patterns)?;
        for path in batch {
            let depends = module_depends(&uncompressed_module(&module_dir.join(&path))?)?;
            let mut deps = Vec::new();
            for dep in depends.iter().filter(|d| !is_builtin(d)) {
                deps.push(
                    find(dep).with_context(|| format!("{path} needs {dep}, not in the package"))?,
                );
                todo.push(dep.clone());
            }
            lines.push(format!("{path}: {}\n", deps.join(" ")));
        }
    }
    fs::write(module_dir.join(VM_MODULES_DEP), lines.concat())?;
    Ok(())
}

/// The module name of a path: `kernel/net/sched/cls_bpf.ko.xz` -> `cls_bpf`.
fn module_name(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file)
}

/// The depends= field of a kernel module's `.modinfo`.
fn module_depends(module: &Path) -> Result<Vec<String>> {
    let data = fs::read(module).with_context(|| format!("reading {}", module.display()))?;
    let key = b"\0depends=";
    let Some(start) = data.windows(key.len()).position(|w| w == key) else {
        return Ok(Vec::new());
    };
    let value = &data[start + key.len()..];
    let value = &value[..value.iter().position(|&b| b == 0).unwrap_or(value.len())];
    Ok(String::from_utf8_lossy(value)
        .split(',')
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect())
}

/// The paths (as in `modules.dep`) of the modules `wanted` needs that are
/// not built in, each after the modules it depends on.
fn modules_needed(wanted: &[&str], modules_dep: &str, builtin: &str) -> Result<Vec<String>> {
    let name = module_name;
    let deps: Vec<(&str, Vec<&str>)> = modules_dep
        .lines()
        .filter_map(|line| {
            let (module, deps) = line.split_once(':')?;
            Some((module.trim(), deps.split_whitespace().collect()))
        })
        .collect();
    fn visit<'a>(
        path: &'a str,
        deps: &[(&'a str, Vec<&'a str>)],
        order: &mut Vec<String>,
        depth: usize,
    ) -> Result<()> {
        if depth > 64 {
            bail!("modules.dep loops at {path}");
        }
        if order.iter().any(|p| p == path) {
            return Ok(());
        }
        if let Some((_, needs)) = deps.iter().find(|(p, _)| *p == path) {
            for dep in needs {
                visit(dep, deps, order, depth + 1)?;
            }
        }
        order.push(path.to_owned());
        Ok(())
    }
    let mut order = Vec::new();
    for &module in wanted {
        if builtin.lines().any(|l| name(l) == module) {
            continue;
        }
        let (path, _) = deps
            .iter()
            .find(|(path, _)| name(path) == module)
            .with_context(|| format!("{module} is neither a module nor built in"))?;
        visit(path, &deps, &mut order, 0)?;
    }
    Ok(order)
}

/// Kernel packages already extracted under `kernels`.
fn cached_packages(kernels: &Path) -> Vec<String> {
    fs::read_dir(kernels)
        .map(|dir| {
            dir.flatten()
                .filter(|e| e.path().join("boot").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The highest ABI among `linux-image-X.Y.0-N-amd64-unsigned` of `line` (the
/// plain kernel; the signed package holds the same kernel, -dbg only symbols).
fn newest_kernel_package(line: KernelLine, names: Vec<String>) -> Option<String> {
    names
        .into_iter()
        .filter_map(|name| {
            let abi = name
                .strip_prefix(line.package_prefix())?
                .strip_suffix("-amd64-unsigned")?
                .parse::<u32>()
                .ok()?;
            Some((abi, name))
        })
        .max()
        .map(|(_, name)| name)
}

/// A static busybox from Debian's busybox-static package, extracted into `vm_dir`.
fn busybox(vm_dir: &Path, apt: &Apt) -> Result<PathBuf> {
    let dir = vm_dir.join("busybox-static");
    let busybox = dir.join("bin/busybox");
    if !busybox.exists() {
        println!("vm-test: downloading busybox-static");
        let deb = apt.download("busybox-static", vm_dir)?;
        let partial = dir.with_extension("partial");
        let _ = fs::remove_dir_all(&partial);
        fs::create_dir_all(&partial)?;
        extract(&deb, &partial, &["./bin/busybox".to_owned()])?;
        let _ = fs::remove_file(&deb);
        let _ = fs::remove_dir_all(&dir);
        fs::rename(&partial, &dir)?;
    }
    if !is_static_elf(&busybox)? {
        bail!("{} is not statically linked", busybox.display());
    }
    Ok(busybox)
}

/// Extract the files of `deb` matching `patterns` into `dir`.
fn extract(deb: &Path, dir: &Path, patterns: &[String]) -> Result<()> {
    let script = format!(
        "dpkg-deb --fsys-tarfile \"$0\" | tar -x -C \"$1\" --wildcards {}",
        patterns
            .iter()
            .map(|p| format!("'{p}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    status(Command::new("sh").args(["-c", &script]).arg(deb).arg(dir))
        .with_context(|| format!("extracting {}", deb.display()))
}

/// busybox insmod reads plain `.ko` files only: decompress `.ko.xz`/`.ko.zst` next to it.
fn uncompressed_module(path: &Path) -> Result<PathBuf> {
    let name = path.to_string_lossy();
    let (plain, tool) = if let Some(stem) = name.strip_suffix(".xz") {
        (PathBuf::from(stem), "xz")
    } else if let Some(stem) = name.strip_suffix(".zst") {
        (PathBuf::from(stem), "zstd")
    } else if let Some(stem) = name.strip_suffix(".gz") {
        (PathBuf::from(stem), "gzip")
    } else {
        return Ok(path.to_path_buf());
    };
    if !plain.exists() {
        let out = Command::new(tool)
            .args(["-d", "-c"])
            .arg(path)
            .output()
            .with_context(|| format!("running {tool} to decompress {name}"))?;
        if !out.status.success() {
            bail!("{tool} -d {name} failed");
        }
        fs::write(&plain, out.stdout)?;
    }
    Ok(plain)
}

/// Whether `path` is an x86-64 ELF executable without a program interpreter.
fn is_static_elf(path: &Path) -> Result<bool> {
    let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        data.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        data.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    if !data.starts_with(b"\x7fELF\x02\x01") || u16_at(0x12) != Some(62) {
        bail!("{} is not an x86-64 ELF file", path.display());
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        bail!("{}: truncated ELF header", path.display());
    };
    for i in 0..usize::from(phnum) {
        const PT_INTERP: u32 = 3;
        let offset = usize::try_from(phoff)
            .unwrap_or(usize::MAX)
            .saturating_add(i * usize::from(phentsize));
        match u32_at(offset) {
            Some(PT_INTERP) => return Ok(false),
            Some(_) => {}
            None => bail!("{}: truncated program headers", path.display()),
        }
    }
    Ok(true)
}

/// tsusen statically linked (glibc, `+crt-static`), built as the container
/// image's binary is, and checked to be static: the VM has no libraries.
fn build_static(toolchain: &str) -> Result<PathBuf> {
    let binary = crate::image::build_static(toolchain)?;
    if !is_static_elf(&binary)? {
        bail!("{} is not statically linked", binary.display());
    }
    Ok(binary)
}

/// `/bin/vm-udp`: `vm_udp.rs` compiled by rustc into a static binary
/// (a few seconds), again only when the source changed.
fn build_vm_udp(vm_dir: &Path) -> Result<PathBuf> {
    let source = vm_dir.join("vm_udp.rs");
    let binary = vm_dir.join("vm-udp");
    let fresh = fs::read_to_string(&source).ok().as_deref() == Some(VM_UDP) && binary.exists();
    if !fresh {
        let _ = fs::remove_file(&binary);
        fs::write(&source, VM_UDP)?;
        status(
            Command::new("rustc")
                .current_dir(workspace_root())
                .args(["--edition", "2021", "-O", "--crate-name", "vm_udp"])
                .args([
                    "--target",
                    crate::image::TARGET,
                    "-C",
                    "target-feature=+crt-static",
                ])
                .arg(&source)
                .arg("-o")
                .arg(&binary),
        )
        .context("compiling vm_udp.rs")?;
    }
    if !is_static_elf(&binary)? {
        bail!("{} is not statically linked", binary.display());
    }
    Ok(binary)
}

fn write_initramfs(
    path: &Path,
    busybox: &Path,
    tsusen: &Path,
    vm_udp: &Path,
    kernel: &Kernel,
) -> Result<()> {
    let mut cpio = Cpio::default();
    for dir in [
        "bin",
        "dev",
        "proc",
        "sys",
        "out",
        "tmp",
        "lib",
        "lib/modules",
    ] {
        cpio.entry(dir, 0o040_755, &[], 0);
    }
    // The kernel opens /dev/console for init before anything is mounted.
    cpio.entry("dev/console", 0o020_600, &[], makedev(5, 1));
    cpio.entry("init", 0o100_755, INIT.as_bytes(), 0);
    cpio.entry("bin/busybox", 0o100_755, &fs::read(busybox)?, 0);
    cpio.entry("bin/tsusen", 0o100_755, &fs::read(tsusen)?, 0);
    cpio.entry("bin/vm-udp", 0o100_755, &fs::read(vm_udp)?, 0);
    // `/init` loads them in the order of their names: dependencies first.
    for (i, module) in kernel.modules.iter().enumerate() {
        let name = module.file_name().unwrap_or_default().to_string_lossy();
        cpio.entry(
            &format!("lib/modules/{i:02}-{name}"),
            0o100_644,
            &fs::read(module)?,
            0,
        );
    }
    fs::write(path, cpio.finish()).with_context(|| format!("writing {}", path.display()))
}

fn makedev(major: u32, minor: u32) -> u64 {
    (u64::from(major) << 32) | u64::from(minor)
}

/// An uncompressed cpio archive in the "newc" format the kernel unpacks.
#[derive(Default)]
struct Cpio {
    data: Vec<u8>,
    inode: u32,
}

impl Cpio {
    /// Add an entry; `rdev` (from [`makedev`]) only matters for device nodes.
    fn entry(&mut self, name: &str, mode: u32, content: &[u8], rdev: u64) {
        self.inode += 1;
        let fields = [
            self.inode,
            mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime
            u32::try_from(content.len()).expect("initramfs files are < 4 GiB"),
            0, // devmajor
            0, // devminor
            u32::try_from(rdev >> 32).expect("the high half of a u64"),
            u32::try_from(rdev & 0xffff_ffff).expect("the low half of a u64"),
            u32::try_from(name.len() + 1).expect("short names"),
            0, // check
        ];
        self.data.extend_from_slice(b"070701");
        for field in fields {
            let _ = write!(self.data, "{field:08X}");
        }
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(content);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], 0);
        self.data
    }
}

/// Boot the VM, follow its serial console, and decide.
///
/// With KVM usable (as far as opening /dev/kvm tells) it boots with KVM
/// first; if that VM does not reach `/init` within [`KVM_BOOT_PROBE`] (nested
/// KVM in some sandboxes aborts on `-cpu host` or hangs in early boot), it
/// boots again with TCG.
fn boot(line: KernelLine, vmlinuz: &Path, initramfs: &Path, options: &Options) -> Result<()> {
    let kvm_usable = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let run = match options.accel {
        Accel::Tcg => boot_once(vmlinuz, initramfs, Accel::Tcg, options)?,
        Accel::Kvm => boot_once(vmlinuz, initramfs, Accel::Kvm, options)?,
        Accel::Auto if !kvm_usable => {
            println!("vm-test: /dev/kvm is not usable here");
            boot_once(vmlinuz, initramfs, Accel::Tcg, options)?
        }
        Accel::Auto => {
            let run = boot_once(vmlinuz, initramfs, Accel::Kvm, options)?;
            if run.reached_init {
                run
            } else {
                println!(
                    "vm-test: the KVM guest did not reach /init ({}); falling back to TCG",
                    run.why_not_booted()
                );
                boot_once(vmlinuz, initramfs, Accel::Tcg, options)?
            }
        }
    };

    let problems = verdict(line, &run.console);
    if problems.is_empty() && !run.timed_out {
        let kernel = run
            .console
            .iter()
            .find_map(|l| l.strip_prefix("VM-TEST kernel "))
            .unwrap_or("?");
        println!("vm-test: PASS on {kernel}: every step of /init");
        if let Some(check) = kernel_check_line(&run.console) {
            println!("vm-test: tsusen check there: {check}");
        }
        return Ok(());
    }
    let tail = run.console.len().saturating_sub(60);
    eprintln!("vm-test: last {} console lines:", run.console.len() - tail);
    for line in &run.console[tail..] {
        eprintln!("  {line}");
    }
    if !run.stderr.trim().is_empty() {
        eprintln!("vm-test: qemu's stderr:\n{}", run.stderr.trim_end());
    }
    for problem in &problems {
        eprintln!("vm-test: {problem}");
    }
    if run.timed_out {
        bail!("the VM did not finish within {:?}", options.timeout);
    }
    bail!("VM test failed (qemu: {})", run.exit);
}

/// The `kernel` line of `tsusen check` as `/init` printed it.
fn kernel_check_line(console: &[String]) -> Option<&str> {
    console
        .iter()
        .filter_map(|l| l.strip_prefix("VM-TEST check: "))
        .find(|l| l.split_whitespace().nth(1) == Some("kernel:"))
}

/// What the console of a run on a `line` kernel lacks (empty: it passed).
fn verdict(line: KernelLine, console: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    for step in STEPS {
        let ok = format!("VM-TEST ok: {step}");
        if !console.contains(&ok) {
            problems.push(format!("step not passed: {step}"));
        }
    }
    for row in EXPECTED_ROWS {
        if !console.iter().any(|l| l.starts_with(row)) {
            problems.push(format!("row missing: {row}"));
        }
    }
    match kernel_check_line(console) {
        None => problems.push("`tsusen check` printed no kernel line".to_owned()),
        Some(check) => {
            let (lacks, has) = line.lacks();
            if !check.starts_with("warning") {
                problems.push(format!(
                    "`tsusen check` should warn about a {} kernel: {check}",
                    line.name()
                ));
            }
            for missing in lacks {
                if !check.contains(missing) {
                    problems.push(format!("`tsusen check` does not say `{missing}`: {check}"));
                }
            }
            for present in has {
                if check.contains(present) {
                    problems.push(format!(
                        "`tsusen check` says `{present}` of a {} kernel: {check}",
                        line.name()
                    ));
                }
            }
        }
    }
    if !console.iter().any(|l| l == "VM-TEST PASS") {
        problems.push("no VM-TEST PASS".to_owned());
    }
    problems
}

/// How long a KVM guest gets to print its first `VM-TEST` line (about 2 s
/// on a working KVM host) before `--accel auto` gives up on KVM.
const KVM_BOOT_PROBE: Duration = Duration::from_secs(30);

/// What `--accel` chooses.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub(crate) enum Accel {
    /// KVM if it works, else TCG.
    Auto,
    Kvm,
    Tcg,
}

/// One qemu run.
struct Run {
    console: Vec<String>,
    /// Whether `/init` printed its first line.
    reached_init: bool,
    timed_out: bool,
    exit: std::process::ExitStatus,
    stderr: String,
}

impl Run {
    fn why_not_booted(&self) -> String {
        let stderr = self.stderr.lines().next().unwrap_or("").trim();
        if self.timed_out {
            format!("nothing after {KVM_BOOT_PROBE:?}")
        } else if !stderr.is_empty() {
            format!("qemu: {stderr}")
        } else {
            format!("qemu: {}", self.exit)
        }
    }
}

fn boot_once(vmlinuz: &Path, initramfs: &Path, accel: Accel, options: &Options) -> Result<Run> {
    let kvm = accel == Accel::Kvm;
    let mut cmd = Command::new("qemu-system-x86_64");
    if kvm {
        cmd.args(["-accel", "kvm", "-cpu", "host"]);
    } else {
        cmd.args(["-accel", "tcg", "-cpu", "max"]);
    }
    cmd.arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initramfs)
        // no_timer_check: on a loaded host TCG is so slow that the kernel's
        // IO-APIC timer check fails ("MP-BIOS bug: 8254 timer not connected")
        // and the serial port's interrupts then never come: init's output
        // was lost while the kernel's own (polled) messages still showed.
        .args(["-append", "console=ttyS0 panic=-1 quiet no_timer_check"])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .args(["-m", "1024", "-smp", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    println!(
        "vm-test: booting with {} (timeout {:?})",
        if kvm { "KVM" } else { "TCG software emulation" },
        options.timeout
    );
    let mut child = cmd.spawn().context("starting qemu-system-x86_64")?;

    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = Vec::new();
        while stdout.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line);
            if lines_tx.send(text.trim_end().to_owned()).is_err() {
                break;
            }
            line.clear();
        }
    });
    let mut stderr = child.stderr.take().expect("piped");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let started = Instant::now();
    let deadline = started + options.timeout;
    let probe_deadline = started + KVM_BOOT_PROBE;
    let mut console: Vec<String> = Vec::new();
    let mut reached_init = false;
    let mut timed_out = false;
    loop {
        let until = if kvm && options.accel == Accel::Auto && !reached_init {
            probe_deadline.min(deadline)
        } else {
            deadline
        };
        match lines.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                // The firmware's terminal escapes may precede the first line.
                let line = match line.find("VM-TEST") {
                    Some(start) => line[start..].to_owned(),
                    None => line,
                };
                if options.verbose || line.starts_with("VM-TEST") {
                    println!("vm| {line}");
                }
                reached_init |= line.starts_with("VM-TEST");
                console.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                timed_out = true;
                let _ = child.kill();
                break;
            }
        }
    }
    let exit = child.wait()?;
    let _ = reader.join();
    Ok(Run {
        console,
        reached_init,
        timed_out,
        exit,
        stderr: stderr_reader.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_newest_unsigned_kernel_of_its_line() {
        let names: Vec<String> = [
            "linux-image-6.1.0-9-amd64-unsigned",
            "linux-image-6.1.0-56-amd64-unsigned",
            "linux-image-6.1.0-56-amd64-dbg",
            "linux-image-6.1.0-57-amd64",
            "linux-image-6.1.0-57-cloud-amd64-unsigned",
            "linux-image-6.1.0-10-amd64-unsigned",
            "linux-image-5.10.0-32-amd64-unsigned",
            "linux-image-5.10.0-46-amd64-unsigned",
            "linux-image-5.10.0-47-amd64",
        ]
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
        assert_eq!(
            newest_kernel_package(KernelLine::V6_1, names.clone()).as_deref(),
            Some("linux-image-6.1.0-56-amd64-unsigned")
        );
        assert_eq!(
            newest_kernel_package(KernelLine::V5_10, names).as_deref(),
            Some("linux-image-5.10.0-46-amd64-unsigned")
        );
        assert_eq!(newest_kernel_package(KernelLine::V6_1, Vec::new()), None);
        assert_eq!(
            KernelLine::of_package("linux-image-5.10.0-32-amd64-unsigned"),
            KernelLine::V5_10
        );
    }

    #[test]
    fn modules_come_after_what_they_depend_on() {
        let dep = "\
kernel/drivers/net/veth.ko.xz:
kernel/net/sched/cls_bpf.ko: kernel/net/sched/sch_x.ko kernel/lib/y.ko
kernel/net/sched/sch_x.ko: kernel/lib/y.ko
kernel/lib/y.ko:
kernel/net/sched/sch_ingress.ko:
";
        assert_eq!(
            modules_needed(MODULES, dep, "").unwrap(),
            [
                "kernel/drivers/net/veth.ko.xz",
                "kernel/net/sched/sch_ingress.ko",
                "kernel/lib/y.ko",
                "kernel/net/sched/sch_x.ko",
                "kernel/net/sched/cls_bpf.ko",
            ]
        );
        // Built in: nothing to load.
        assert_eq!(
            modules_needed(&["veth"], dep, "kernel/drivers/net/veth.ko\n").unwrap(),
            Vec::<String>::new()
        );
        assert!(modules_needed(&["nope"], dep, "").is_err());
        let looping = "a.ko: b.ko\nb.ko: a.ko\n";
        assert!(modules_needed(&["a"], looping, "").is_err());
    }

    #[test]
    fn mirrors_from_the_hosts_apt() {
        let targets = "\
http://mirror.example/debian-security/ bookworm-security Packages
http://mirror.example/debian/ bookworm DEP-11
http://mirror.example/debian/ bookworm Packages
http://mirror.example/debian/ bookworm-updates Packages
";
        let mirrors = parse_mirrors(targets).unwrap();
        assert_eq!(
            mirrors,
            Mirrors {
                archive: "http://mirror.example/debian/".into(),
                security: Some("http://mirror.example/debian-security/".into()),
            }
        );
        let sources = private_sources("bullseye", &mirrors);
        assert!(sources.contains("http://mirror.example/debian/ bullseye main\n"));
        assert!(
            sources.contains("http://mirror.example/debian-security/ bullseye-security main\n")
        );
        assert_eq!(
            parse_mirrors("http://x/ bookworm-security Packages\n"),
            None
        );
    }

    /// A console that passed on a `line` kernel, with `check` as the kernel line.
    fn passing_console(check: &str) -> Vec<String> {
        let mut console = vec![format!("VM-TEST check: {check}")];
        console.extend(STEPS.iter().map(|s| format!("VM-TEST ok: {s}")));
        console.extend(EXPECTED_ROWS.iter().map(|r| format!("{r}1795499777")));
        console.push("VM-TEST PASS".into());
        console
    }

    #[test]
    fn verdict_needs_every_step_row_and_the_kernels_degradations() {
        let check_510 = "warning  kernel: 5.10.0-46-amd64 works, with less: maps are charged to \
            RLIMIT_MEMLOCK before 5.11 (tsusen raises it); no TCX before 6.6 (TC egress ...)";
        let check_61 = "warning  kernel: 6.1.0-56-amd64 works, with less: no TCX before 6.6 (...)";
        assert!(verdict(KernelLine::V5_10, &passing_console(check_510)).is_empty());
        assert!(verdict(KernelLine::V6_1, &passing_console(check_61)).is_empty());
        // 6.1 lacks less than 5.10, and 5.10 more than 6.1.
        assert!(!verdict(KernelLine::V6_1, &passing_console(check_510)).is_empty());
        assert!(!verdict(KernelLine::V5_10, &passing_console(check_61)).is_empty());
        for skipped in 0..STEPS.len() + EXPECTED_ROWS.len() {
            let mut console = passing_console(check_61);
            console.remove(1 + skipped);
            assert_eq!(verdict(KernelLine::V6_1, &console).len(), 1, "{skipped}");
        }
        let mut console = passing_console(check_61);
        console.pop();
        assert_eq!(verdict(KernelLine::V6_1, &console), ["no VM-TEST PASS"]);
    }

    #[test]
    fn cpio_newc_layout() {
        let mut cpio = Cpio::default();
        cpio.entry("init", 0o100_755, b"#!", 0);
        cpio.entry("dev/console", 0o020_600, &[], makedev(5, 1));
        let data = cpio.finish();
        assert!(data.starts_with(b"070701"));
        assert_eq!(&data[110..115], b"init\0");
        // Header and name padded to 4, then the content, padded to 4.
        assert_eq!(&data[116..118], b"#!");
        assert_eq!(data.len() % 4, 0);
        let console = 120;
        let header = std::str::from_utf8(&data[console..console + 110]).unwrap();
        assert_eq!(&header[6 + 9 * 8..6 + 10 * 8], "00000005"); // rdevmajor
        assert_eq!(&header[6 + 10 * 8..6 + 11 * 8], "00000001"); // rdevminor
        assert!(
            data.windows(b"TRAILER!!!\0".len())
                .any(|w| w == b"TRAILER!!!\0")
        );
    }
}
