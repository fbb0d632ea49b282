//! One sensor per pin directory and per out-dir.
//!
//! Two sensors sharing a pin directory would share (and unpin) each other's
//! maps and links; two sharing an out-dir would append to the same day
//! files. Each takes an exclusive `flock` that the kernel drops when the
//! process ends, `kill -9` included, so a stale lock never blocks a restart.
//!
//! bpffs holds no regular files, but a directory's own descriptor can be
//! locked there; the out-dir gets a lock file (`.tsusen.lock`, holding the
//! PID for people to read). Who holds a lock is read from `/proc/locks`.

use std::{
    fs::{self, File, OpenOptions},
    io::Write as _,
    os::unix::fs::MetadataExt as _,
    path::Path,
};

use anyhow::{Context as _, Result, bail};
use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
};

/// The lock file in the out-dir.
pub const OUT_DIR_LOCK: &str = ".tsusen.lock";

/// An exclusive lock, released when dropped (or when the process ends).
pub struct Lock {
    held: Flock<File>,
}

/// Lock the directory `dir` itself (for the pin directory on bpffs).
pub fn directory(dir: &Path, what: &str) -> Result<Lock> {
    let file = File::open(dir).with_context(|| format!("cannot open {what} {}", dir.display()))?;
    take(file, dir, what)
}

/// Lock `dir` through a lock file in it that names our PID.
pub fn out_dir(dir: &Path) -> Result<Lock> {
    let path = dir.join(OUT_DIR_LOCK);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot create the lock file {}", path.display()))?;
    let mut lock = take(file, dir, "out-dir")?;
    // Only the holder writes: a second start never touches the file.
    let pid = format!("{}\n", std::process::id());
    lock.held
        .set_len(0)
        .and_then(|()| lock.held.write_all(pid.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(lock)
}

fn take(file: File, dir: &Path, what: &str) -> Result<Lock> {
    let meta = file.metadata()?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(flock) => Ok(Lock { held: flock }),
        Err((_, Errno::EWOULDBLOCK)) => {
            let holder = holder(&meta).map_or_else(
                || "a process this one cannot see".to_owned(),
                |pid| format!("pid {pid}"),
            );
            bail!(
                "{what} {} is in use by another tsusen ({holder}); stop it first, or give this \
                 one its own --pin-dir and --out-dir",
                dir.display()
            )
        }
        Err((_, errno)) => {
            Err(std::io::Error::from(errno)).with_context(|| format!("locking {}", dir.display()))
        }
    }
}

/// The PID holding a flock on the file `meta` describes, from /proc/locks
/// (`1: FLOCK  ADVISORY  WRITE 1234 00:29:41236 0 EOF`: the device as
/// major:minor in hex, then the inode).
fn holder(meta: &fs::Metadata) -> Option<u32> {
    let dev = meta.dev();
    let id = format!(
        "{:02x}:{:02x}:{}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev),
        meta.ino()
    );
    let locks = fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Blocked waiters are listed as `1: -> FLOCK ...`; they hold nothing.
        match fields[..] {
            [_, "FLOCK", _, _, pid, file, ..] if file == id => pid.parse().ok(),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder() {
        let dir = std::env::temp_dir().join(format!("tsusen-lock-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let first = out_dir(&dir).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join(OUT_DIR_LOCK)).unwrap(),
            format!("{}\n", std::process::id())
        );
        // flock locks belong to the open file: a second open conflicts even
        // within one process.
        let err = out_dir(&dir).err().expect("the second lock fails");
        let pid = std::process::id().to_string();
        assert!(err.to_string().contains(&format!("pid {pid}")), "{err:#}");
        assert!(directory(&dir, "pin directory").is_ok(), "another inode");
        drop(first);
        assert!(out_dir(&dir).is_ok(), "free again once dropped");
        fs::remove_dir_all(&dir).unwrap();
    }
}
