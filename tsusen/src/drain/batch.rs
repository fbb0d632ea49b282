//! Batched map reads and deletes: BPF_MAP_LOOKUP_BATCH and
//! BPF_MAP_DELETE_BATCH (kernel 5.6), which aya 0.14 does not offer for hash
//! maps. A drain of a million entries takes a few dozen syscalls instead of
//! three million. On older kernels the caller falls back to per-key calls.

use std::{io, os::fd::BorrowedFd};

use bytemuck::Pod;
use nix::errno::Errno;

use crate::sys::MapBatches;

/// The kernel's ENOTSUPP (not in libc): "this map has no batch operations".
const ENOTSUPP: i32 = 524;

/// Whether the kernel lacks batch operations (before 5.6 the command is
/// unknown: EINVAL); then the caller uses per-key calls.
pub(super) fn unsupported(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(code) if code == Errno::EINVAL as i32 || code == Errno::EOPNOTSUPP as i32 || code == ENOTSUPP
    )
}

/// Read every entry of a hash map, `chunk` at a time, into a vector of
/// `capacity` (it grows if the map holds more).
pub(super) fn lookup_all<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    chunk: usize,
    capacity: usize,
) -> io::Result<Vec<(K, V)>> {
    let batches = MapBatches::<K>::new(map)?;
    let mut out = Vec::with_capacity(capacity);
    let mut chunk = chunk.max(1);
    // For hash maps the batch token is a bucket index (u32).
    let mut token_in: u32 = 0;
    let mut token_out: u32 = 0;
    let mut first = true;
    let mut keys = Vec::new();
    let mut values = Vec::new();
    loop {
        // One buffer for every chunk (grown only when a bucket needs it).
        keys.resize(chunk, K::zeroed());
        values.resize(chunk, V::zeroed());
        let (n, result) = batches.lookup(
            (!first).then_some(&token_in),
            &mut token_out,
            &mut keys,
            &mut values,
        );
        out.extend(keys[..n].iter().copied().zip(values[..n].iter().copied()));
        match result {
            Ok(()) => {}
            // The end of the map (the last entries came with it).
            Err(err) if err.raw_os_error() == Some(Errno::ENOENT as i32) => return Ok(out),
            // A bucket holds more entries than fit: a bigger buffer, same place.
            Err(err) if err.raw_os_error() == Some(Errno::ENOSPC as i32) && n == 0 => {
                chunk *= 2;
                continue;
            }
            Err(err) => return Err(err),
        }
        token_in = token_out;
        first = false;
    }
}

/// Delete the keys of these entries, `chunk` at a time; keys already gone
/// (evicted) are skipped. Returns how many were deleted.
pub(super) fn delete_all<K: Pod, V>(
    map: BorrowedFd<'_>,
    entries: &[(K, V)],
    chunk: usize,
) -> io::Result<usize> {
    let batches = MapBatches::<K>::new(map)?;
    let mut deleted = 0;
    let mut keys = Vec::with_capacity(chunk.min(entries.len()));
    for part in entries.chunks(chunk.max(1)) {
        keys.clear();
        keys.extend(part.iter().map(|(key, _)| *key));
        let mut rest = &keys[..];
        while !rest.is_empty() {
            let (done, result) = batches.delete(rest);
            deleted += done;
            match result {
                Ok(()) => rest = &rest[done..],
                // The key at `done` is gone already: skip it, go on.
                Err(err) if err.raw_os_error() == Some(Errno::ENOENT as i32) => {
                    rest = &rest[done + 1..];
                }
                Err(err) => return Err(err),
            }
        }
    }
    Ok(deleted)
}
