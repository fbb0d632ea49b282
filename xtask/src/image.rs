//! `cargo xtask image`: the container image, with podman or docker.
//!
//! - default: `packaging/Containerfile`, a multi-stage build that installs
//!   the toolchain from Debian and rustup (needs the internet), from a clean
//!   copy of the sources (no `target/` in the context).
//! - `--local`: no registry at all: the static binary built here, in the
//!   Containerfile's run stage (`FROM scratch`, the same labels, stop signal
//!   and entry point), for machines that cannot reach a registry.
//!
//! Both pass the version and git commit for the OCI labels.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{cargo, status, workspace_root};

/// The Rust target of the static binary.
pub(crate) const TARGET: &str = "x86_64-unknown-linux-gnu";

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
pub(crate) fn engine() -> Result<&'static str> {
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

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// Build the static release binary; returns its path.
pub(crate) fn build_static(toolchain: &str) -> Result<PathBuf> {
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

/// The run stage of packaging/Containerfile (from its last `FROM`), taking
/// the binary from the build context instead of the build stage.
pub(crate) fn run_stage(containerfile: &str) -> Result<String> {
    let start = containerfile
        .rfind("\nFROM ")
        .context("packaging/Containerfile has no run stage")?;
    let copy = "COPY --from=build /tsusen /tsusen";
    let stage = &containerfile[start + 1..];
    if !stage.contains(copy) {
        bail!("packaging/Containerfile's run stage has no `{copy}`");
    }
    Ok(stage.replace(copy, "COPY tsusen /tsusen"))
}

/// `--build-arg`s for the OCI labels: the version and the git commit.
fn label_args() -> Vec<String> {
    let revision = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        );
    vec![
        "--build-arg".to_owned(),
        format!("VERSION={}", env!("CARGO_PKG_VERSION")),
        "--build-arg".to_owned(),
        format!("REVISION={revision}"),
    ]
}

/// The run stage holding `binary` as `/tsusen`.
pub(crate) fn build_local(engine: &str, binary: &Path, tag: &str) -> Result<()> {
    let context = std::env::temp_dir().join(format!("tsusen-image-{}", std::process::id()));
    let _ = fs::remove_dir_all(&context);
    fs::create_dir_all(&context)?;
    let result = (|| {
        fs::copy(binary, context.join("tsusen"))
            .with_context(|| format!("copying {}", binary.display()))?;
        let containerfile = fs::read_to_string(workspace_root().join("packaging/Containerfile"))?;
        fs::write(context.join("Containerfile"), run_stage(&containerfile)?)?;
        status(
            Command::new(engine)
                .args(["build", "--tag", tag])
                .args(label_args())
                .arg("--file")
                .arg(context.join("Containerfile"))
                .arg(&context),
        )
    })();
    let _ = fs::remove_dir_all(&context);
    result
}

/// The full multi-stage build from a clean copy of the sources. podman and
/// buildah also apply packaging/Containerfile.containerignore (read beside
/// the Containerfile), which keeps any nested `target/` or `.git` out.
pub(crate) fn build_full(engine: &str, tag: &str) -> Result<()> {
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
                .args(["build", "--tag", tag])
                .args(label_args())
                .arg("--file")
                .arg(root.join("packaging/Containerfile"))
                .arg(&context),
        )
    })();
    let _ = fs::remove_dir_all(&context);
    result
}

pub(crate) fn run(local: bool, tag: &str) -> Result<()> {
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
