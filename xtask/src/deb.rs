//! `cargo xtask deb`: the Debian package, built by cargo-deb from
//! `[package.metadata.deb]` in tsusen/Cargo.toml.
//!
//! - the static release binary (`image::build_static`), so one package runs
//!   on any amd64 Debian or Ubuntu whatever its glibc;
//! - man pages and completions generated from the clap definitions
//!   (tsusen/examples/gen_docs.rs);
//! - the unit, the bpffs mount, sysusers.d and tmpfiles.d entries from
//!   packaging/, with the maintainer scripts cargo-deb writes for them.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, image, status};

/// The cargo-deb release `setup` installs (its rust-version is 1.85).
pub(crate) const CARGO_DEB_VERSION: &str = "3.8.0";

/// Build the package; returns the path of the .deb.
pub(crate) fn build(toolchain: &str) -> Result<PathBuf> {
    ensure_cargo_deb()?;
    let binary = image::build_static(toolchain)?;
    let release_dir = binary.parent().context("binary without a directory")?;
    status(
        cargo(toolchain)
            .args([
                "run",
                "--quiet",
                "--package",
                "tsusen",
                "--example",
                "gen_docs",
                "--",
            ])
            .arg(release_dir.join("gen-docs")),
    )?;
    // Debian installs man pages compressed (policy 12.1); -n keeps the
    // archive reproducible (no name or time stamp in it).
    let man = release_dir.join("gen-docs").join("man");
    for page in std::fs::read_dir(&man).with_context(|| format!("reading {}", man.display()))? {
        let page = page?.path();
        if page.extension().is_some_and(|e| e == "1") {
            status(Command::new("gzip").args(["-9nf"]).arg(&page))?;
        }
    }
    let out_dir = image::target_dir().join("debian");
    let out = cargo(toolchain)
        .args([
            "deb",
            "--package",
            "tsusen",
            "--no-build",
            "--target",
            image::TARGET,
        ])
        .arg("--output")
        .arg(&out_dir)
        .output()
        .context("failed to start cargo deb")?;
    if !out.status.success() {
        bail!("cargo deb failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    // cargo-deb prints the path of the package as its last line.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let deb = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| Path::new(l).extension().is_some_and(|e| e == "deb"))
        .map(PathBuf::from)
        .with_context(|| format!("cargo deb printed no package path: {stdout}"))?;
    Ok(deb)
}

fn ensure_cargo_deb() -> Result<()> {
    let installed = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(CARGO_DEB_VERSION)
        });
    if installed {
        return Ok(());
    }
    println!("setup: cargo install cargo-deb {CARGO_DEB_VERSION} (about two minutes)");
    status(Command::new("cargo").args([
        "install",
        "cargo-deb",
        "--version",
        CARGO_DEB_VERSION,
        "--locked",
    ]))
}
