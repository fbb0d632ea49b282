//! The man pages and shell completions of the Debian package, generated from
//! the clap definitions (`tsusen::cli::Cli`) so they never drift from
//! `--help`. `cargo xtask deb` runs it:
//! `cargo run --example gen_docs -- OUT_DIR` writes OUT_DIR/man/*.1 (tsusen(1)
//! and one page per subcommand) and OUT_DIR/completions/{tsusen.bash,_tsusen,tsusen.fish}.

use std::{fs, path::PathBuf};

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;
use clap_complete::Shell;
use tsusen::cli::Cli;

fn main() -> Result<()> {
    let out: PathBuf = std::env::args_os()
        .nth(1)
        .context("usage: gen_docs OUT_DIR")?
        .into();
    let man = out.join("man");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    clap_mangen::generate_to(Cli::command(), &man).context("writing the man pages")?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut Cli::command(), "tsusen", &completions)
            .with_context(|| format!("writing the {shell} completion"))?;
    }
    Ok(())
}
