//! Reading a small text file the user named (`--config`, credentials).

use std::{fs, io::Read as _, os::unix::fs::OpenOptionsExt as _, path::Path};

use anyhow::{Context as _, Result, bail};

/// The largest file read for `--config` or credentials.
pub const MAX_NAMED_FILE: u64 = 1 << 20;

/// Read a small text file the user named (`--config`, credentials): a
/// regular file of at most [`MAX_NAMED_FILE`] bytes, so `/dev/zero` or a FIFO
/// is one clear error instead of a read that never ends. `what` names it in
/// errors, e.g. `config file /etc/tsusen/tsusen.toml`.
pub fn read_named_file(path: &Path, what: &str) -> Result<String> {
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .with_context(|| format!("cannot read {what}"))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {what}"))?;
    if !meta.is_file() {
        bail!("cannot read {what}: not a regular file");
    }
    let mut bytes = Vec::new();
    file.take(MAX_NAMED_FILE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what}"))?;
    if bytes.len() as u64 > MAX_NAMED_FILE {
        bail!("cannot read {what}: larger than 1 MiB");
    }
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("cannot read {what}: not UTF-8 text"))
}
