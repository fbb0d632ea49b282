//! Batched map reads and deletes: BPF_MAP_LOOKUP_BATCH and
//! BPF_MAP_DELETE_BATCH (kernel 5.6), which aya 0.14 does not offer for hash
//! maps. A drain of a million entries takes two thousand syscalls instead of
//! three million. On older kernels the caller falls back to per-key calls.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
};

use bytemuck::Pod;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn bpf(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: attr is a valid bpf_attr prefix of the size passed; the
    // pointers in it point into live buffers of the sizes given in `count`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut::<BatchAttr>(attr),
            size_of::<BatchAttr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The kernel's ENOTSUPP (not in libc): "this map has no batch operations".
const ENOTSUPP: i32 = 524;

/// Whether the kernel lacks batch operations (before 5.6 the command is
/// unknown: EINVAL); then the caller uses per-key calls.
pub(super) fn unsupported(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP)
    )
}

/// Read every entry of a hash map, `chunk` at a time.
pub(super) fn lookup_all<K: Pod, V: Pod>(
    map: BorrowedFd<'_>,
    chunk: usize,
) -> io::Result<Vec<(K, V)>> {
    let mut out = Vec::new();
    let mut chunk = chunk.max(1);
    // For hash maps the batch token is a bucket index (u32).
    let mut token_in: u32 = 0;
    let mut token_out: u32 = 0;
    let mut first = true;
    loop {
        let mut keys = vec![K::zeroed(); chunk];
        let mut values = vec![V::zeroed(); chunk];
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                (&raw const token_in) as u64
            },
            out_batch: (&raw mut token_out) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: map.as_raw_fd().cast_unsigned(),
            ..BatchAttr::default()
        };
        let result = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let n = attr.count as usize;
        out.extend(keys.into_iter().zip(values).take(n));
        match result {
            Ok(()) => {}
            // The end of the map (the last entries came with it).
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            // A bucket holds more entries than fit: a bigger buffer, same place.
            Err(err) if err.raw_os_error() == Some(libc::ENOSPC) && n == 0 => {
                chunk *= 2;
                continue;
            }
            Err(err) => return Err(err),
        }
        token_in = token_out;
        first = false;
    }
}

/// Delete these keys; keys already gone (evicted) are skipped. Returns how
/// many were deleted.
pub(super) fn delete_all<K: Pod>(map: BorrowedFd<'_>, keys: &[K]) -> io::Result<usize> {
    let mut deleted = 0;
    let mut rest = keys;
    while !rest.is_empty() {
        let mut attr = BatchAttr {
            keys: rest.as_ptr() as u64,
            count: rest.len().min(u32::MAX as usize) as u32,
            map_fd: map.as_raw_fd().cast_unsigned(),
            ..BatchAttr::default()
        };
        let result = bpf(BPF_MAP_DELETE_BATCH, &mut attr);
        let done = attr.count as usize;
        deleted += done;
        match result {
            Ok(()) => rest = &rest[done..],
            // The key at `done` is gone already: skip it, go on.
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => rest = &rest[done + 1..],
            Err(err) => return Err(err),
        }
    }
    Ok(deleted)
}
