//! One day file on disk: opened so that a FIFO or a directory in its place
//! can neither hang nor fool the sensor, locked (`flock`) while it is read or
//! appended, so tsusen processes sharing an out-dir (a second `run`, a
//! `replay`) take turns, and known by its identity (device and inode), so a
//! file moved, replaced or cut under the sensor is noticed before a write.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read as _, Seek as _, SeekFrom},
    os::{
        fd::AsRawFd as _,
        unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _},
    },
    path::Path,
    thread,
    time::{Duration, Instant},
};

/// Which file a path named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    fn of(meta: &fs::Metadata) -> Self {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// An open day file, locked until dropped.
pub(super) struct Locked {
    pub file: File,
    pub id: Identity,
    /// Its length once locked.
    pub len: u64,
}

/// How long to wait for another tsusen process to finish its write before
/// giving up on this flush (the rows wait for the next one).
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Open and lock the day file at `path` for reading, or for appending
/// (created if missing). `None`: there is no file and `append` is false.
pub(super) fn open(path: &Path, append: bool) -> io::Result<Option<Locked>> {
    // A file replaced between the open and the lock is opened again.
    for _ in 0..3 {
        let options = || {
            let mut options = OpenOptions::new();
            // O_NONBLOCK: opening a FIFO does not wait for a peer.
            options
                .read(true)
                .append(append)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
            options
        };
        let file = match options().open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound && !append => return Ok(None),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                match options().create_new(true).open(path) {
                    Ok(file) => file,
                    Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(err) => return Err(err),
                }
            }
            Err(err) => return Err(err),
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::other(format!(
                "not a regular file ({})",
                kind(&meta)
            )));
        }
        lock(&file)?;
        match fs::metadata(path) {
            Ok(now) if Identity::of(&now) == Identity::of(&meta) => {}
            _ => continue,
        }
        let len = file.metadata()?.len();
        return Ok(Some(Locked {
            file,
            id: Identity::of(&meta),
            len,
        }));
    }
    Err(io::Error::other(
        "replaced again and again while being opened",
    ))
}

fn kind(meta: &fs::Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "something else"
    }
}

fn lock(file: &File) -> io::Result<()> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        // SAFETY: flock(2) on a descriptor this function borrows.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::WouldBlock {
            return Err(err);
        }
        if Instant::now() >= deadline {
            return Err(io::Error::other(format!(
                "locked by another process for more than {LOCK_WAIT:?}"
            )));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Cut the locked file at `path` to `len` (it must still be the same file).
pub(super) fn cut(path: &Path, locked: &Locked, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    if Identity::of(&file.metadata()?) != locked.id {
        return Err(io::Error::other("replaced while being repaired"));
    }
    file.set_len(len)?;
    file.sync_data()
}

/// The end of the last complete line in `from..len`, or `from` if there is
/// none.
pub(super) fn complete_len(file: &mut File, from: u64, len: u64) -> io::Result<u64> {
    let mut end = len;
    let mut buf = [0u8; 4096];
    while end > from {
        let start = end.saturating_sub(buf.len() as u64).max(from);
        let chunk = &mut buf[..usize::try_from(end - start).expect("at most one buffer")];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(pos) = memchr::memrchr(b'\n', chunk) {
            return Ok(start + pos as u64 + 1);
        }
        end = start;
    }
    Ok(from)
}
