//! tsusen: who is scanning your hosts, on which ports, and when that changes.
//!
//! The data path, one module per step: `capture` (the XDP program and its
//! maps) -> `drain` (kernel map to rows) -> `store` (daily CSV files) ->
//! `report` (trends and spikes).

mod capture;
mod cli;
mod run;
mod store;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    let result = match cli.command {
        cli::Command::Run(args) => run::run(args),
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
