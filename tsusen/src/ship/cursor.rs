//! Where shipping stands in each day file, kept on disk so a restart (or a
//! `kill -9`) goes on from there: per file, the byte offset after the last
//! row ClickHouse acknowledged, what identifies the file (inode and its first
//! bytes, so a file truncated or replaced under the shipper is noticed), and
//! the batch in flight (its byte range, written before it is sent, so after
//! a crash exactly the same bytes are sent again).
//!
//! Written atomically: a temporary file, fsync, rename, fsync of the
//! directory. A crash leaves the old cursor or the new one, never half of one.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::{Read as _, Write as _},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::dayfile::Format;

/// Bytes at the start of a file that identify it (its header and first row).
pub const HEAD_BYTES: usize = 128;

/// The cursor file of a sensor in a directory of day files: hidden, and
/// named `.tsusen…` so the day-file listing passes over it.
pub fn path(dir: &Path, sensor: &str) -> PathBuf {
    dir.join(format!(".tsusen-ship-{sensor}.json"))
}

/// One shipper per directory and sensor: a second one would ship the same
/// rows on its own cursor. Held (an flock, which the kernel drops when the
/// process ends, `kill -9` included) until dropped.
pub fn lock(dir: &Path, sensor: &str) -> Result<nix::fcntl::Flock<File>> {
    let path = dir.join(format!(".tsusen-ship-{sensor}.lock"));
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |(_, errno)| {
            if errno == nix::errno::Errno::EWOULDBLOCK {
                anyhow::anyhow!(
                    "{} is shipped as sensor {sensor} by another tsusen already (tsusen ship, \
                     or run --clickhouse on it); stop that one first",
                    dir.display()
                )
            } else {
                anyhow::Error::new(std::io::Error::from(errno))
                    .context(format!("locking {}", path.display()))
            }
        },
    )
}

/// Where shipping stands in every day file of a directory.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cursor {
    /// The table (`database.name`) the offsets are for: shipping to another
    /// one starts over (absent in cursors written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// By file name (`YYYY-MM-DD.csv`).
    pub files: BTreeMap<String, FileCursor>,
}

/// Where shipping stands in one day file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCursor {
    /// The file's inode when shipping began.
    pub inode: u64,
    /// Its first bytes (up to [`HEAD_BYTES`], and only bytes shipped), hex:
    /// a file replaced by another one on the same inode differs here.
    pub head: String,
    /// Bytes shipped: the end of the last row ClickHouse acknowledged.
    pub offset: u64,
    /// Lines before `offset` (warnings name line numbers).
    pub line_no: u64,
    /// The file's format as its header said (`None` before it was read).
    pub format: Option<String>,
    /// The batch being sent: bytes `offset..end`. Set before it is sent,
    /// cleared when it is acknowledged; found set at start, it is sent again.
    pub in_flight: Option<u64>,
}

impl FileCursor {
    /// A cursor at the start of a file (its first bytes are learned as
    /// they are shipped).
    pub fn start(inode: u64) -> Self {
        FileCursor {
            inode,
            ..FileCursor::default()
        }
    }

    pub fn format(&self) -> Option<Format> {
        self.format.as_deref().and_then(Format::of_header)
    }

    pub fn set_format(&mut self, format: Option<Format>) {
        self.format = format.map(|f| f.header().to_owned());
    }

    /// Why the file at `path` is no longer the one this cursor is about
    /// (replaced, or truncated below what was shipped), if it is not.
    pub fn changed(&self, inode: u64, len: u64, head: &[u8]) -> Option<&'static str> {
        if inode != self.inode {
            return Some("replaced (another inode)");
        }
        if len < self.offset || len < self.in_flight.unwrap_or(0) {
            return Some("truncated");
        }
        let known = self.head.len() / 2;
        if head.len() < known || hex(&head[..known]) != self.head {
            return Some("rewritten (its first bytes changed)");
        }
        None
    }

    /// Remember more of the file's first bytes once more of them are shipped.
    pub fn learn_head(&mut self, head: &[u8]) {
        if head.len() * 2 > self.head.len() {
            self.head = hex(head);
        }
    }
}

/// A file's inode, size and first bytes.
pub fn identify(path: &Path) -> std::io::Result<(u64, u64, Vec<u8>)> {
    let mut file = File::open(path)?;
    let meta = file.metadata()?;
    let mut head = Vec::with_capacity(HEAD_BYTES);
    (&mut file).take(HEAD_BYTES as u64).read_to_end(&mut head)?;
    Ok((meta.ino(), meta.len(), head))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl Cursor {
    /// The cursor at `path`, or an empty one if there is none yet.
    pub fn load(path: &Path) -> Result<Self> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "shipping cursor {} is damaged; remove it to ship every day file again \
                     (rows sent twice are stored once)",
                    path.display()
                )
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Cursor::default()),
            Err(err) => {
                Err(err).with_context(|| format!("cannot read shipping cursor {}", path.display()))
            }
        }
    }

    /// Write it to `path` atomically and durably.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec(self).expect("a cursor serializes");
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(&text)?;
            file.sync_all()?;
            fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().with_context(|| format!("cannot write shipping cursor {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_replaced_or_truncated_is_noticed() {
        let mut cursor = FileCursor::start(7);
        cursor.learn_head(b"proto dst_port");
        cursor.offset = 100;
        assert_eq!(cursor.changed(7, 120, b"proto dst_port src_ip"), None);
        assert!(cursor.changed(8, 120, b"proto dst_port").is_some());
        assert!(cursor.changed(7, 99, b"proto dst_port").is_some());
        assert!(cursor.changed(7, 120, b"PROTO dst_port").is_some());
        cursor.learn_head(b"proto dst_port src_ip");
        assert!(cursor.changed(7, 120, b"proto dst_port src_IP").is_some());
    }

    #[test]
    fn saved_and_loaded() {
        let dir = std::env::temp_dir().join(format!("tsusen-cursor-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = path(&dir, "s1");
        assert!(Cursor::load(&path).unwrap().files.is_empty());
        let mut cursor = Cursor::default();
        let mut file = FileCursor::start(1);
        file.set_format(Some(Format::OriginalLater));
        file.in_flight = Some(40);
        cursor.files.insert("2026-11-24.csv".into(), file.clone());
        cursor.save(&path).unwrap();
        let loaded = Cursor::load(&path).unwrap();
        assert_eq!(loaded.files["2026-11-24.csv"], file);
        assert_eq!(
            loaded.files["2026-11-24.csv"].format(),
            Some(Format::OriginalLater)
        );
        fs::write(&path, b"{").unwrap();
        assert!(
            Cursor::load(&path)
                .unwrap_err()
                .to_string()
                .contains("remove it")
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
