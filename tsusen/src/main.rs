use std::process::ExitCode;

use clap::{Parser as _, error::ErrorKind};
use tsusen::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_target(false)
        .init();
    let result = match cli.command {
        Command::Run(args) => tsusen::run::run(args),
        Command::Replay(args) => tsusen::replay::run(args),
        Command::Report(args) => tsusen::report::report(args),
        Command::Serve(args) => tsusen::report::serve::serve(args),
        Command::Check(args) => tsusen::check::run(args),
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

/// A command line clap rejects: one line, like every other user error
/// (help and version print as usual).
fn usage_error(err: clap::Error) -> ExitCode {
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        err.exit();
    }
    let text = err.render().to_string();
    let first = text.lines().next().unwrap_or("invalid command line");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("tsusen: error: {first} (see tsusen --help)");
    ExitCode::from(2)
}
