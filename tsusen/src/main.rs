use std::process::ExitCode;

use clap::{Parser as _, error::ErrorKind};
use tsusen::{
    cli::{Cli, Command},
    exit, logging,
};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    logging::init();
    let result = match cli.command {
        Command::Run(args) => tsusen::run::run((*args).into()),
        Command::Replay(args) => {
            tsusen::replay::run(&args.pcaps, &args.out_dir, &args.rules.into())
        }
        Command::Report(args) => tsusen::report::report(&args),
        Command::Serve(args) => tsusen::report::serve::serve(&args),
        Command::Check(args) => tsusen::check::run(args.into()),
        Command::Ship(args) => tsusen::ship::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            logging::fatal(&err);
            exit::code(&err)
        }
    }
}

/// A command line clap rejects: clap's whole message (what is wrong, its
/// tips, the usage line) and exit status 2. Help and version print as usual.
fn usage_error(err: &clap::Error) -> ExitCode {
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        err.exit();
    }
    logging::usage_error(err);
    ExitCode::from(exit::CONFIG)
}
