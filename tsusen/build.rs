//! Builds the eBPF object (tsusen-ebpf) into OUT_DIR, where main.rs embeds it.
//!
//! The toolchain comes from TSUSEN_EBPF_TOOLCHAIN (set by `cargo xtask`), or is
//! guessed: the rustup toolchain `debian` (Debian's rustc-web with its prebuilt
//! BPF core, linked by `cargo xtask setup`) when it exists, else `nightly`.
use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=TSUSEN_EBPF_TOOLCHAIN");
    let toolchain = std::env::var("TSUSEN_EBPF_TOOLCHAIN").unwrap_or_else(|_| guess_toolchain());
    if toolchain != "nightly" {
        // aya-ebpf needs `asm_experimental_arch`; on a stable toolchain allow it
        // for that one crate. aya-build then builds against the prebuilt core.
        // SAFETY: build scripts are single-threaded here.
        unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "aya_ebpf") };
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tsusen-ebpf");
    let root = root.to_str().context("non-UTF-8 path")?;
    if let Err(err) = aya_build::build_ebpf(
        [Package {
            name: "tsusen-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        Toolchain::Custom(&toolchain),
    ) {
        bail!(
            "building the eBPF program with toolchain `{toolchain}` failed (run `cargo xtask setup`): {err:#}"
        );
    }
    Ok(())
}

fn guess_toolchain() -> String {
    let has = |name: &str| {
        Command::new("rustup")
            .args(["run", name, "rustc", "--version"])
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if has("debian") { "debian" } else { "nightly" }.to_owned()
}
