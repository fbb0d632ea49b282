//! `cargo xtask image`: the container image, with podman or docker.
//!
//! - default: `packaging/Containerfile`, a multi-stage build that installs
//!   the toolchain from Debian and rustup (needs the internet), from a clean
//!   copy of the sources (no `target/` in the context).
//! - `--local`: no registry at all: the static binary built here, in a
//!   `FROM scratch` image (for machines that cannot reach one, and tests).

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, status, workspace_root};

/// The Rust target of the static binary.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// What the context of the full build holds (everything else, `target/`
/// above all, stays out).
const SOURCES: &[&str] = &[
    "Cargo.toml",
    "Cargo.lock",
    "rust-toolchain.toml",
    ".cargo",
    "tsusen",
    "tsusen-common",
    "tsusen-ebpf",
    "xtask",
];

/// podman if present, else docker.
pub fn engine() -> Result<&'static str> {
    for engine in ["podman", "docker"] {
        if Command::new(engine)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(engine);
        }
    }
    bail!("neither podman nor docker is installed (apt-get install podman runc)")
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Build the static release binary; returns its path.
pub fn build_static(toolchain: &str) -> Result<PathBuf> {
    let var = format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        TARGET.to_uppercase().replace('-', "_")
    );
    status(
        cargo(toolchain)
            .args([
                "build",
                "--release",
                "--package",
                "tsusen",
                "--target",
                TARGET,
            ])
            .env(var, "-C target-feature=+crt-static"),
    )?;
    Ok(target_dir().join(TARGET).join("release").join("tsusen"))
}

/// A `FROM scratch` image holding `binary` as `/tsusen`.
pub fn build_local(engine: &str, binary: &Path, tag: &str) -> Result<()> {
    let context = std::env::temp_dir().join(format!("tsusen-image-{}", std::process::id()));
    let _ = fs::remove_dir_all(&context);
    fs::create_dir_all(&context)?;
    let result = (|| {
        fs::copy(binary, context.join("tsusen"))
            .with_context(|| format!("copying {}", binary.display()))?;
        fs::write(
            context.join("Containerfile"),
            "FROM scratch\nCOPY tsusen /tsusen\nENTRYPOINT [\"/tsusen\"]\nCMD [\"run\"]\n",
        )?;
        status(
            Command::new(engine)
                .args(["build", "--tag", tag, "--file"])
                .arg(context.join("Containerfile"))
                .arg(&context),
        )
    })();
    let _ = fs::remove_dir_all(&context);
    result
}

/// The full multi-stage build from a clean copy of the sources.
pub fn build_full(engine: &str, tag: &str) -> Result<()> {
    let root = workspace_root();
    let context = std::env::temp_dir().join(format!("tsusen-src-{}", std::process::id()));
    let _ = fs::remove_dir_all(&context);
    fs::create_dir_all(&context)?;
    let result = (|| {
        for item in SOURCES {
            let from = root.join(item);
            if from.exists() {
                status(Command::new("cp").arg("-a").arg(&from).arg(&context))?;
            }
        }
        status(
            Command::new(engine)
                .args(["build", "--tag", tag, "--file"])
                .arg(root.join("packaging/Containerfile"))
                .arg(&context),
        )
    })();
    let _ = fs::remove_dir_all(&context);
    result
}

pub fn run(local: bool, tag: &str) -> Result<()> {
    let engine = engine()?;
    if local {
        let toolchain = crate::setup::run(false)?;
        let binary = build_static(&toolchain)?;
        build_local(engine, &binary, tag)?;
    } else {
        build_full(engine, tag)?;
    }
    println!("image: {tag} ({engine})");
    Ok(())
}
