//! Network interfaces: does the one named exist, and which do.

use std::{ffi::CString, fs};

use anyhow::{Result, bail};

/// The interfaces of this network namespace, sorted.
pub fn list() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir("/sys/class/net")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The kernel's index of `name`, if it exists.
pub fn index(name: &str) -> Option<u32> {
    let c_name = CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Fail with the list of real interfaces when `name` does not exist.
pub fn require(name: &str) -> Result<u32> {
    match index(name) {
        Some(index) => Ok(index),
        None => bail!(
            "no interface named {name:?}; interfaces here: {}",
            list().join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_exists_and_a_made_up_name_does_not() {
        assert!(require("lo").is_ok());
        let err = require("tsusen-no-such0").unwrap_err().to_string();
        assert!(
            err.contains("no interface named \"tsusen-no-such0\""),
            "{err}"
        );
        assert!(err.contains("lo"), "the error lists real interfaces: {err}");
    }
}
