use std::process::ExitCode;

use clap::Parser as _;
use tsusen::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    let result = match cli.command {
        Command::Run(args) => tsusen::run::run(args),
        Command::Replay(args) => tsusen::replay::run(args),
        Command::Report(args) => tsusen::report::report(args),
        Command::Serve(args) => tsusen::report::serve::serve(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line a person can act on: the chain of causes, joined.
            eprintln!("tsusen: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
