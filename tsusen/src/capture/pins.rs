//! The pin directory on bpffs: where maps and links outlive the daemon.
//!
//! While a map or link is pinned, the kernel keeps it (and the XDP program
//! keeps recording) even when the daemon dies, `kill -9` included; the next
//! start finds the pins and adopts them. A clean shutdown removes them.
//!
//! The directory may be shared (the root of a bpffs holds the kernel's
//! `maps.debug` and `progs.debug`; other tools pin there too): tsusen only
//! ever looks at, adopts and removes the names it creates itself, its maps
//! and its `link_<program>_<iface>` pins.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use log::info;
use tsusen_common::maps;

use crate::lock::{self, Lock};

/// bpffs's magic number (`statfs` f_type).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The maps tsusen pins, by their names in the eBPF object.
pub const MAPS: [&str; 7] = [
    maps::FIRST_SEEN,
    maps::STATS,
    maps::CONFIG,
    maps::LOCAL_NETS,
    maps::IGNORED_NETS,
    maps::IGNORED_PORTS,
    maps::UDP_FLOWS,
];

pub struct Pins {
    pub dir: PathBuf,
    /// Whether this start created the directory: only then does a clean
    /// stop remove it (once empty).
    created: bool,
    /// Held while the sensor runs: one sensor per pin directory.
    _lock: Lock,
}

impl Pins {
    /// Make `dir` usable for pins: mount bpffs at `/sys/fs/bpf` when the
    /// directory lives there and nothing is mounted yet, then create it and
    /// lock it (another sensor on it is refused, naming its PID).
    pub fn prepare(dir: &Path) -> Result<Self> {
        let fs_root = Path::new("/sys/fs/bpf");
        if dir.starts_with(fs_root) && !is_bpffs(fs_root) {
            mount_bpffs(fs_root)?;
        }
        let created = !dir.exists();
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create pin directory {}", dir.display()))?;
        if !is_bpffs(dir) {
            bail!(
                "pin directory {} is not on a bpf filesystem (mount one: mount -t bpf bpf {})",
                dir.display(),
                dir.display()
            );
        }
        let lock = lock::directory(dir, "pin directory")?;
        Ok(Pins {
            dir: dir.to_path_buf(),
            created,
            _lock: lock,
        })
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The pin of the link attaching `program` to `iface`.
    pub fn link(&self, program: &str, iface: &str) -> PathBuf {
        self.dir.join(format!("link_{program}_{iface}"))
    }

    /// Whether an earlier run left its maps here to adopt (the first-seen
    /// map holds what it recorded). Anything else in the directory is not
    /// ours and says nothing.
    pub fn earlier_run(&self) -> bool {
        self.map(maps::FIRST_SEEN).exists()
    }

    /// Unpin tsusen's maps and any link pin of its naming left (a clean
    /// shutdown, or a failed fresh start), and remove the directory when
    /// this start created it and it is now empty. Other names are left
    /// alone. The links this run holds are unpinned by the sensor first.
    ///
    /// A leftover link pin is an earlier run's, on an interface this run
    /// does not watch: its program wrote into the same pinned maps, which
    /// were drained, so it goes too (it would record into maps no one
    /// drains).
    pub fn remove_own(&self) -> Result<()> {
        let prefixes = [super::XDP_PROGRAM, super::EGRESS_PROGRAM].map(|p| format!("link_{p}_"));
        let links = fs::read_dir(&self.dir)
            .with_context(|| format!("reading {}", self.dir.display()))?
            .flatten()
            .map(|entry| entry.file_name())
            .filter(|name| {
                let name = name.to_string_lossy();
                prefixes.iter().any(|p| name.starts_with(p.as_str()))
            })
            .map(|name| self.dir.join(name));
        let maps = MAPS.iter().map(|name| self.map(name));
        for path in maps.chain(links.collect::<Vec<_>>()) {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(err).with_context(|| format!("unpinning {}", path.display()));
                }
            }
        }
        if self.created {
            // Fails (and is meant to) when anything else is in it.
            let _ = fs::remove_dir(&self.dir);
        }
        Ok(())
    }
}

#[expect(
    clippy::unnecessary_cast,
    reason = "f_type is i64 on x86_64 but narrower on other architectures"
)]
fn is_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 as i64 == BPF_FS_MAGIC)
}

fn mount_bpffs(at: &Path) -> Result<()> {
    info!("mounting bpffs at {}", at.display());
    nix::mount::mount(
        Some("bpf"),
        at,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| format!("cannot mount bpffs at {}", at.display()))
}
