//! The bpf() commands aya 0.14 does not offer, behind one door: the only
//! place tsusen calls bpf() itself, and the `unsafe` that takes. Also
//! [`errno`], how the rest of the crate tells a failed call's cause.
//!
//! Everything here fills aya's generated `bpf_attr` (aya_obj::generated,
//! the kernel's own layout) rather than hand-computed offsets, and every
//! public function is safe: the pointers it hands the kernel come from the
//! references it takes. Other system calls go through nix; aya does the rest
//! (loading, maps, attaching).
//!
//! Minimum kernels: BPF_OBJ_GET 4.4, BPF_PROG_GET_FD_BY_ID and
//! BPF_OBJ_GET_INFO_BY_FD 4.13, the batch commands 5.6, BPF_LINK_GET_NEXT_ID,
//! BPF_LINK_GET_FD_BY_ID and link info 5.8, BPF_LINK_DETACH 5.9.

use std::{
    ffi::CString,
    io,
    marker::PhantomData,
    os::{
        fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

use aya_obj::generated::{
    bpf_attr, bpf_attr__bindgen_ty_3 as BatchAttr, bpf_cmd, bpf_link_info, bpf_link_type,
    bpf_map_info, bpf_map_type, bpf_prog_info,
};
use bytemuck::Pod;
use nix::errno::Errno;

/// The bpf() syscall with a whole `bpf_attr`; its non-negative result.
/// Private: every command below fills the attr's pointers from references
/// it holds, which is what makes the functions safe to call.
fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<i64> {
    // SAFETY: attr is a whole bpf_attr of the size passed, its unused bytes
    // zero (see `zeroed_attr`); the pointers in it come from references the
    // calling function holds for the call, to buffers of the sizes it gives
    // (checked against the map's sizes for the batch commands).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            std::ptr::from_mut::<bpf_attr>(attr),
            size_of::<bpf_attr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A bpf() command whose result is a new file descriptor, owned.
fn bpf_fd(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("bpf() returned no fd"))?;
    // SAFETY: the kernel just created this descriptor for us; nothing else
    // owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An all-zero `bpf_attr`, as the kernel requires of the bytes a command
/// does not use.
fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is a C union of plain integers and arrays of them:
    // all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// The errno a failed system call left somewhere in an error's chain
/// (aya's errors carry the syscall's `io::Error` as their source), so
/// failures are told apart by number, never by message text.
pub fn errno(err: &(dyn std::error::Error + 'static)) -> Option<Errno> {
    let mut at = Some(err);
    while let Some(e) = at {
        if let Some(code) = e
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
        {
            return Some(Errno::from_raw(code));
        }
        at = e.source();
    }
    None
}

/// BPF_OBJ_GET: the object (map, program, link) pinned at `path`.
pub fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_4.pathname = c_path.as_ptr() as u64;
    bpf_fd(bpf_cmd::BPF_OBJ_GET, &mut attr)
}

/// BPF_PROG_GET_FD_BY_ID (CAP_SYS_ADMIN).
pub fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_6.__bindgen_anon_1.prog_id = id;
    bpf_fd(bpf_cmd::BPF_PROG_GET_FD_BY_ID, &mut attr)
}

/// BPF_LINK_GET_FD_BY_ID.
pub fn link_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_6.__bindgen_anon_1.link_id = id;
    bpf_fd(bpf_cmd::BPF_LINK_GET_FD_BY_ID, &mut attr)
}

/// BPF_LINK_GET_NEXT_ID: the id of the next link after `id`; `None` after
/// the last.
pub fn next_link_id(id: u32) -> io::Result<Option<u32>> {
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_6.__bindgen_anon_1.start_id = id;
    match bpf(bpf_cmd::BPF_LINK_GET_NEXT_ID, &mut attr) {
        // SAFETY: the kernel wrote next_id, a u32 of this member.
        Ok(_) => Ok(Some(unsafe { attr.__bindgen_anon_6.next_id })),
        Err(err) if err.raw_os_error() == Some(Errno::ENOENT as i32) => Ok(None),
        Err(err) => Err(err),
    }
}

/// BPF_LINK_DETACH: the link stops running its program.
pub fn link_detach(link: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = zeroed_attr();
    attr.link_detach.link_fd = link.as_raw_fd().cast_unsigned();
    bpf(bpf_cmd::BPF_LINK_DETACH, &mut attr).map(drop)
}

/// The info structs BPF_OBJ_GET_INFO_BY_FD fills.
trait ObjInfo: Copy {}
impl ObjInfo for bpf_prog_info {}
impl ObjInfo for bpf_link_info {}
impl ObjInfo for bpf_map_info {}

/// BPF_OBJ_GET_INFO_BY_FD on a program or link.
fn obj_info<T: ObjInfo>(fd: BorrowedFd<'_>) -> io::Result<T> {
    // SAFETY: `ObjInfo` types are C structs of integers, arrays and unions
    // of them: all-zero is valid (and the kernel wants it of unused bytes).
    let mut info: T = unsafe { std::mem::zeroed() };
    let mut attr = zeroed_attr();
    attr.info.bpf_fd = fd.as_raw_fd().cast_unsigned();
    attr.info.info_len =
        u32::try_from(size_of::<T>()).expect("an info struct of a few hundred bytes");
    attr.info.info = (&raw mut info) as u64;
    bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info)
}

/// A program's name (the first 15 bytes the kernel keeps of it).
pub fn prog_name(prog: BorrowedFd<'_>) -> io::Result<String> {
    let info: bpf_prog_info = obj_info(prog)?;
    let name: Vec<u8> = info
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c.cast_unsigned())
        .collect();
    Ok(String::from_utf8_lossy(&name).into_owned())
}

/// An XDP link as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpLink {
    /// The program the link runs.
    pub prog_id: u32,
    /// The interface it is attached to, in *some* namespace; 0 once the
    /// interface is gone (the link is "severed": defunct, kernel >= 5.9).
    pub ifindex: u32,
}

/// What an XDP link runs and where; `None` for a link of another type.
pub fn xdp_link(link: BorrowedFd<'_>) -> io::Result<Option<XdpLink>> {
    let info: bpf_link_info = obj_info(link)?;
    if info.type_ != bpf_link_type::BPF_LINK_TYPE_XDP as u32 {
        return Ok(None);
    }
    Ok(Some(XdpLink {
        prog_id: info.prog_id,
        // SAFETY: the kernel fills the xdp member for an XDP link.
        ifindex: unsafe { info.__bindgen_anon_1.xdp.ifindex },
    }))
}

/// A map's batch commands (kernel 5.6), for keys of type `K`.
pub struct MapBatches<'a, K> {
    map: BorrowedFd<'a>,
    /// The map's value size, which value buffers must match.
    value_size: usize,
    keys: PhantomData<K>,
}

impl<'a, K: Pod> MapBatches<'a, K> {
    /// Batches on `map`, whose keys must be `K` in size: the kernel writes
    /// and reads whole entries of its own size in the buffers.
    pub fn new(map: BorrowedFd<'a>) -> io::Result<Self> {
        let info: bpf_map_info = obj_info(map)?;
        if info.key_size as usize != size_of::<K>() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the map's keys are {} bytes, not {}",
                    info.key_size,
                    size_of::<K>()
                ),
            ));
        }
        Ok(MapBatches {
            map,
            value_size: info.value_size as usize,
            keys: PhantomData,
        })
    }

    /// BPF_MAP_LOOKUP_BATCH on a hash map: up to `keys.len()` entries (as
    /// many values) from the bucket `token_in` names (`None`: the first),
    /// and in `token_out` where the next call goes on. Returns the entries
    /// read, which the kernel reports also when it stops part way (ENOENT:
    /// the map's end, with its last entries; ENOSPC: a bucket does not fit).
    pub fn lookup<V: Pod>(
        &self,
        token_in: Option<&u32>,
        token_out: &mut u32,
        keys: &mut [K],
        values: &mut [V],
    ) -> (usize, io::Result<()>) {
        if size_of::<V>() != self.value_size {
            let err = format!(
                "the map's values are {} bytes, not {}",
                self.value_size,
                size_of::<V>()
            );
            return (0, Err(io::Error::new(io::ErrorKind::InvalidInput, err)));
        }
        Self::run(
            bpf_cmd::BPF_MAP_LOOKUP_BATCH,
            BatchAttr {
                in_batch: token_in.map_or(0, |t| std::ptr::from_ref(t) as u64),
                out_batch: std::ptr::from_mut(token_out) as u64,
                keys: keys.as_mut_ptr() as u64,
                values: values.as_mut_ptr() as u64,
                count: u32::try_from(keys.len().min(values.len())).unwrap_or(u32::MAX),
                map_fd: self.map.as_raw_fd().cast_unsigned(),
                elem_flags: 0,
                flags: 0,
            },
        )
    }

    /// BPF_MAP_DELETE_BATCH: delete `keys` in order. Returns how many were
    /// deleted (ENOENT: the key after them is gone).
    pub fn delete(&self, keys: &[K]) -> (usize, io::Result<()>) {
        Self::run(
            bpf_cmd::BPF_MAP_DELETE_BATCH,
            BatchAttr {
                in_batch: 0,
                out_batch: 0,
                keys: keys.as_ptr() as u64,
                values: 0,
                count: u32::try_from(keys.len()).unwrap_or(u32::MAX),
                map_fd: self.map.as_raw_fd().cast_unsigned(),
                elem_flags: 0,
                flags: 0,
            },
        )
    }

    fn run(cmd: bpf_cmd, batch: BatchAttr) -> (usize, io::Result<()>) {
        let mut attr = zeroed_attr();
        attr.batch = batch;
        let result = bpf(cmd, &mut attr).map(drop);
        // SAFETY: the batch member is the one written above; the kernel
        // updates its count.
        let done = unsafe { attr.batch.count } as usize;
        (done, result)
    }
}

/// BPF_MAP_CREATE of an array map (for tests: a foreign map to pin).
pub fn array_map_create(value_size: u32, max_entries: u32) -> io::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_1.map_type = bpf_map_type::BPF_MAP_TYPE_ARRAY as u32;
    attr.__bindgen_anon_1.key_size = 4;
    attr.__bindgen_anon_1.value_size = value_size;
    attr.__bindgen_anon_1.max_entries = max_entries;
    bpf_fd(bpf_cmd::BPF_MAP_CREATE, &mut attr)
}

/// BPF_OBJ_PIN: pin the object `fd` at `path` on a bpffs.
pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_4.pathname = c_path.as_ptr() as u64;
    attr.__bindgen_anon_4.bpf_fd = fd.as_raw_fd().cast_unsigned();
    bpf(bpf_cmd::BPF_OBJ_PIN, &mut attr).map(drop)
}
