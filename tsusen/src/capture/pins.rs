//! The pin directory on bpffs: where maps and links outlive the daemon.
//!
//! While a map or link is pinned, the kernel keeps it (and the XDP program
//! keeps recording) even when the daemon dies, `kill -9` included; the next
//! start finds the pins and adopts them. A clean shutdown removes them.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};
use log::info;

/// bpffs's magic number (`statfs` f_type).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

pub struct Pins {
    pub dir: PathBuf,
}

impl Pins {
    /// Make `dir` usable for pins: mount bpffs at `/sys/fs/bpf` when the
    /// directory lives there and nothing is mounted yet, then create it.
    pub fn prepare(dir: &Path) -> Result<Self> {
        let fs_root = Path::new("/sys/fs/bpf");
        if dir.starts_with(fs_root) && !is_bpffs(fs_root) {
            mount_bpffs(fs_root)?;
        }
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create pin directory {}", dir.display()))?;
        if !is_bpffs(dir) {
            bail!(
                "pin directory {} is not on a bpf filesystem (mount one: mount -t bpf bpf {})",
                dir.display(),
                dir.display()
            );
        }
        Ok(Pins {
            dir: dir.to_path_buf(),
        })
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The pin of the link attaching `program` to `iface`.
    pub fn link(&self, program: &str, iface: &str) -> PathBuf {
        self.dir.join(format!("link_{program}_{iface}"))
    }

    /// Whether an earlier run left anything here to adopt.
    pub fn any(&self) -> bool {
        fs::read_dir(&self.dir).is_ok_and(|mut d| d.next().is_some())
    }

    /// Remove every pin and the directory (a clean shutdown).
    pub fn remove_all(&self) -> Result<()> {
        for entry in fs::read_dir(&self.dir)?.flatten() {
            fs::remove_file(entry.path())
                .with_context(|| format!("unpinning {}", entry.path().display()))?;
        }
        let _ = fs::remove_dir(&self.dir);
        Ok(())
    }
}

#[allow(
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
