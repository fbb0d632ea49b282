//! `cargo xtask vm-test`: load and run tsusen on a second kernel.
//!
//! Boots Debian's linux-image-6.1 (the oldest kernel line the project
//! targets; the dev machines run much newer ones) under qemu with a minimal
//! initramfs: a static busybox, the static tsusen binary (the eBPF object is
//! embedded in it), the veth/clsact/cls_bpf modules and `vm_init.sh` as
//! `/init`. The init script attaches tsusen to one end of a veth pair (native
//! XDP, then generic), sends a TCP SYN and a ping from the other end (in its
//! own network namespace), and prints `VM-TEST PASS` if the day file holds
//! their rows. The VM has no network device: nothing leaves it.
//!
//! Everything downloaded (the kernel and busybox-static packages, extracted,
//! never installed) is cached under `target/vm/`; only qemu is installed on
//! the host (with apt-get, when root).

use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{setup, status, workspace_root};

/// The `/init` script of the initramfs.
const INIT: &str = include_str!("vm_init.sh");

/// Kernel modules the test needs that Debian builds as modules (none of them
/// depends on another module in 6.1): the veth pair, the clsact qdisc and the
/// BPF classifier (TC egress on kernels without TCX).
const MODULES: &[&str] = &["veth", "sch_ingress", "cls_bpf"];

/// What `/init` must print: the rows of the SYNs (port 4242 with native XDP,
/// 4243 with generic XDP) and the pings sent in the VM (`proto dst_port
/// src_ip dst_ip`), and that both rounds passed.
const EXPECTED_ROWS: &[&str] = &[
    "VM-TEST csv: TCP 4242 198.18.0.2 198.18.0.1 ",
    "VM-TEST csv: TCP 4243 198.18.0.2 198.18.0.1 ",
    "VM-TEST csv: ICMP - 198.18.0.2 198.18.0.1 ",
    "VM-TEST round auto ok",
    "VM-TEST round generic ok",
];

/// Options of `cargo xtask vm-test`.
pub(crate) struct Options {
    /// A Debian kernel image package, e.g. `linux-image-6.1.0-56-amd64-unsigned`;
    /// default: the newest one already in `target/vm/`, else the newest 6.1 in apt.
    pub kernel_package: Option<String>,
    /// Give up on the VM after this long.
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
    let kernel = kernel(&vm_dir, options.kernel_package.as_deref())?;
    let busybox = busybox(&vm_dir)?;
    println!(
        "vm-test: kernel {} ({})",
        kernel.release,
        kernel.vmlinuz.display()
    );
    let t = Instant::now();
    let tsusen = build_static(toolchain)?;
    println!("vm-test: static tsusen built in {:.1?}", t.elapsed());

    let initramfs = vm_dir.join("initramfs.cpio");
    write_initramfs(&initramfs, &busybox, &tsusen, &kernel)?;

    let t = Instant::now();
    let result = boot(&kernel.vmlinuz, &initramfs, options);
    println!(
        "vm-test: VM ran {:.1?}; vm-test took {:.1?} in all",
        t.elapsed(),
        started.elapsed()
    );
    result
}

fn ensure_qemu() -> Result<()> {
    if setup::which("qemu-system-x86_64") {
        return Ok(());
    }
    setup::apt_install(&["qemu-system-x86"])
}

/// A kernel extracted from a Debian package: what the VM boots and loads.
struct Kernel {
    release: String,
    vmlinuz: PathBuf,
    /// The modules in [`MODULES`], uncompressed, in that order.
    modules: Vec<PathBuf>,
}

fn kernel(vm_dir: &Path, package: Option<&str>) -> Result<Kernel> {
    let kernels = vm_dir.join("kernels");
    let package = match package {
        Some(package) => package.to_owned(),
        None => match newest_kernel_package(cached_packages(&kernels)) {
            Some(cached) => cached,
            None => newest_kernel_package(apt_kernel_packages()?).context(
                "apt knows no linux-image-6.1.0-N-amd64 package (is Debian 12's archive in \
                 the apt sources?); name one with --kernel-package",
            )?,
        },
    };
    let dir = kernels.join(&package);
    if !dir.join("boot").exists() {
        println!("vm-test: downloading {package}");
        let deb = apt_download(&package, vm_dir)?;
        let patterns: Vec<String> = std::iter::once("./boot/vmlinuz-*".to_owned())
            .chain(MODULES.iter().map(|m| format!("*/{m}.ko*")))
            .chain(std::iter::once("*/modules.builtin".to_owned()))
            .collect();
        extract(&deb, &dir, &patterns)?;
        let _ = fs::remove_file(&deb);
    }
    let vmlinuz = fs::read_dir(dir.join("boot"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .with_context(|| format!("no vmlinuz in {}", dir.display()))?;
    let release =
        vmlinuz.file_name().unwrap_or_default().to_string_lossy()["vmlinuz-".len()..].to_owned();
    let module_dir = dir.join("lib/modules").join(&release);
    // Another kernel package (--kernel-package) may build some of them in.
    let builtin = fs::read_to_string(module_dir.join("modules.builtin")).unwrap_or_default();
    let mut modules = Vec::new();
    for module in MODULES {
        if builtin
            .lines()
            .any(|l| l.ends_with(&format!("/{module}.ko")))
        {
            continue;
        }
        let found = find_file(&module_dir, &|name| {
            name == format!("{module}.ko") || name.starts_with(&format!("{module}.ko."))
        })
        .with_context(|| format!("{module}.ko is not in {}", module_dir.display()))?;
        let found = uncompressed_module(&found)?;
        let depends = module_depends(&found)?;
        if !depends.is_empty() {
            bail!(
                "{module}.ko of {package} needs the modules {}: add them to MODULES in {}",
                depends.join(", "),
                file!()
            );
        }
        modules.push(found);
    }
    Ok(Kernel {
        release,
        vmlinuz,
        modules,
    })
}

/// The `depends=` field of a kernel module's `.modinfo`.
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

/// Debian's 6.1 kernel image packages for amd64 that apt can download.
fn apt_kernel_packages() -> Result<Vec<String>> {
    let search = || -> Result<Vec<String>> {
        let out = Command::new("apt-cache")
            .args([
                "search",
                "--names-only",
                r"^linux-image-6\.1\.0-[0-9]+-amd64",
            ])
            .output()
            .context("running apt-cache (vm-test needs a Debian host)")?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect())
    };
    let found = search()?;
    if found.is_empty() && setup::is_root() {
        // The package lists may be missing on a fresh machine.
        let _ = Command::new("apt-get").arg("update").status();
        return search();
    }
    Ok(found)
}

/// The highest ABI among `linux-image-6.1.0-N-amd64-unsigned` (the plain
/// kernel; the signed package holds the same kernel, -dbg only symbols).
fn newest_kernel_package(names: Vec<String>) -> Option<String> {
    names
        .into_iter()
        .filter_map(|name| {
            let abi = name
                .strip_prefix("linux-image-6.1.0-")?
                .strip_suffix("-amd64-unsigned")?
                .parse::<u32>()
                .ok()?;
            Some((abi, name))
        })
        .max()
        .map(|(_, name)| name)
}

/// A static busybox from Debian's busybox-static package, extracted into `vm_dir`.
fn busybox(vm_dir: &Path) -> Result<PathBuf> {
    let dir = vm_dir.join("busybox-static");
    let busybox = dir.join("bin/busybox");
    if !busybox.exists() {
        println!("vm-test: downloading busybox-static");
        let deb = apt_download("busybox-static", vm_dir)?;
        extract(&deb, &dir, &["./bin/busybox".to_owned()])?;
        let _ = fs::remove_file(&deb);
    }
    if !is_static_elf(&busybox)? {
        bail!("{} is not statically linked", busybox.display());
    }
    Ok(busybox)
}

/// `apt-get download PACKAGE` into `dir` (no root needed); returns the .deb.
fn apt_download(package: &str, dir: &Path) -> Result<PathBuf> {
    let download = || {
        let mut cmd = Command::new("apt-get");
        if setup::is_root() {
            // Else apt warns that its _apt user cannot write to `dir`.
            cmd.args(["-o", "APT::Sandbox::User=root"]);
        }
        cmd.args(["download", "-q", package])
            .current_dir(dir)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !download() {
        if !setup::is_root() {
            bail!("apt-get download {package} failed");
        }
        let _ = Command::new("apt-get").arg("update").status();
        if !download() {
            bail!("apt-get download {package} failed");
        }
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

/// Extract the files of `deb` matching `patterns` into `dir` (created afresh).
fn extract(deb: &Path, dir: &Path, patterns: &[String]) -> Result<()> {
    let partial = dir.with_extension("partial");
    let _ = fs::remove_dir_all(&partial);
    fs::create_dir_all(&partial)?;
    let script = format!(
        "dpkg-deb --fsys-tarfile \"$0\" | tar -x -C \"$1\" --wildcards {}",
        patterns
            .iter()
            .map(|p| format!("'{p}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    status(
        Command::new("sh")
            .args(["-c", &script])
            .arg(deb)
            .arg(&partial),
    )
    .with_context(|| format!("extracting {}", deb.display()))?;
    let _ = fs::remove_dir_all(dir);
    fs::rename(&partial, dir)?;
    Ok(())
}

fn find_file(dir: &Path, matches: &dyn Fn(&str) -> bool) -> Option<PathBuf> {
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, matches) {
                return Some(found);
            }
        } else if matches(&entry.file_name().to_string_lossy()) {
            return Some(path);
        }
    }
    None
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
        let offset = phoff as usize + i * usize::from(phentsize);
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

fn write_initramfs(path: &Path, busybox: &Path, tsusen: &Path, kernel: &Kernel) -> Result<()> {
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
            (rdev >> 32) as u32,
            rdev as u32,
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
/// boots again with TCG, which takes about 10 s more for this test.
fn boot(vmlinuz: &Path, initramfs: &Path, options: &Options) -> Result<()> {
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

    let passed = run.console.iter().any(|l| l.contains("VM-TEST PASS"));
    let rows = EXPECTED_ROWS
        .iter()
        .all(|row| run.console.iter().any(|l| l.starts_with(row)));
    if passed && rows && !run.timed_out {
        println!(
            "vm-test: PASS: with native and generic XDP, tsusen recorded the SYN and the ping on that kernel"
        );
        return Ok(());
    }
    let tail = run.console.len().saturating_sub(40);
    eprintln!("vm-test: last {} console lines:", run.console.len() - tail);
    for line in &run.console[tail..] {
        eprintln!("  {line}");
    }
    if !run.stderr.trim().is_empty() {
        eprintln!("vm-test: qemu's stderr:\n{}", run.stderr.trim_end());
    }
    if run.timed_out {
        bail!("the VM did not finish within {:?}", options.timeout);
    }
    bail!("VM test failed (qemu: {})", run.exit);
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
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
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
    fn picks_the_newest_unsigned_6_1_kernel() {
        let names = [
            "linux-image-6.1.0-9-amd64-unsigned",
            "linux-image-6.1.0-56-amd64-unsigned",
            "linux-image-6.1.0-56-amd64-dbg",
            "linux-image-6.1.0-57-amd64",
            "linux-image-6.1.0-57-cloud-amd64-unsigned",
            "linux-image-6.1.0-10-amd64-unsigned",
        ];
        assert_eq!(
            newest_kernel_package(names.iter().map(|n| n.to_string()).collect()).as_deref(),
            Some("linux-image-6.1.0-56-amd64-unsigned")
        );
        assert_eq!(newest_kernel_package(Vec::new()), None);
    }

    #[test]
    fn reads_module_depends() {
        let dir = std::env::temp_dir().join(format!("xtask-vm-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let with = dir.join("with.ko");
        fs::write(
            &with,
            b"\x7fELF..\0license=GPL\0depends=mii,libphy\0name=x\0",
        )
        .unwrap();
        let without = dir.join("without.ko");
        fs::write(&without, b"\x7fELF..\0depends=\0retpoline=Y\0").unwrap();
        assert_eq!(module_depends(&with).unwrap(), ["mii", "libphy"]);
        assert!(module_depends(&without).unwrap().is_empty());
        fs::remove_dir_all(&dir).unwrap();
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
