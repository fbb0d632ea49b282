//! Batched map reads and deletes: BPF_MAP_LOOKUP_BATCH and
//! BPF_MAP_DELETE_BATCH (kernel 5.6), which aya 0.14 does not offer for hash
//! maps. A drain of a million entries takes about 120 syscalls instead of
//! three million. On older kernels the caller falls back to per-key calls.

use std::{io, os::fd::BorrowedFd, sync::mpsc};

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

/// Read every entry of a hash map, `chunk` at a time, handing each chunk to
/// `each` (keys and values) on the calling thread while a helper thread
/// reads the next one: the kernel's walk of the map and the caller's work
/// on what it read overlap on two cores. A failure can come after some
/// chunks were handed over.
pub(super) fn lookup_each<K: Pod + Send, V: Pod + Send>(
    map: BorrowedFd<'_>,
    chunk: usize,
    mut each: impl FnMut(&[K], &[V]),
) -> io::Result<()> {
    let batches = MapBatches::<K>::new(map)?;
    // Chunks read and not yet handled, and buffers to read into again: two
    // chunks in flight bound the memory to three buffers.
    let (full, read) = mpsc::sync_channel::<(Vec<K>, Vec<V>, usize)>(1);
    let (empty, reuse) = mpsc::channel::<(Vec<K>, Vec<V>)>();
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> io::Result<()> {
            let mut chunk = chunk.max(1);
            // For hash maps the batch token is a bucket index (u32).
            let mut token_in: u32 = 0;
            let mut token_out: u32 = 0;
            let mut first = true;
            loop {
                let (mut keys, mut values) = reuse.try_recv().unwrap_or_default();
                // Grown only when a bucket needs it.
                keys.resize(chunk, K::zeroed());
                values.resize(chunk, V::zeroed());
                let (n, result) = batches.lookup(
                    (!first).then_some(&token_in),
                    &mut token_out,
                    &mut keys,
                    &mut values,
                );
                let end = match result {
                    Ok(()) => false,
                    // The end of the map (the last entries came with it).
                    Err(err) if err.raw_os_error() == Some(Errno::ENOENT as i32) => true,
                    // A bucket holds more entries than fit: a bigger buffer,
                    // same place.
                    Err(err) if err.raw_os_error() == Some(Errno::ENOSPC as i32) && n == 0 => {
                        chunk *= 2;
                        continue;
                    }
                    Err(err) => return Err(err),
                };
                if n > 0 && full.send((keys, values, n)).is_err() {
                    return Ok(()); // the caller is gone: nothing to do
                }
                if end {
                    return Ok(());
                }
                token_in = token_out;
                first = false;
            }
        });
        for (keys, values, n) in read {
            each(&keys[..n], &values[..n]);
            // The reader may have finished: then the buffer is just freed.
            let _ = empty.send((keys, values));
        }
        reader.join().expect("the map reader does not panic")
    })
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
